//! Unit tests of the directory on an in-memory store.

use std::sync::{Arc, OnceLock};

use postlog_engine::backend::MemBackend;
use postlog_engine::{Options, special_use};

use super::*;

fn store() -> Store {
    Store::open_backend(Arc::new(MemBackend::new()), Options::default()).unwrap()
}

fn directory(quota_default_bytes: u64) -> Directory {
    Directory::new(store(), quota_default_bytes)
}

/// Credentials of the password "secret", derived once (Argon2 is slow on purpose).
fn secret() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials::derive("secret").unwrap())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// example.test with alice and bob.
fn populated() -> Directory {
    let d = directory(0);
    d.add_domain("example.test").unwrap();
    d.add_user("alice@example.test", secret()).unwrap();
    d.add_user("bob@example.test", secret()).unwrap();
    d
}

fn user(d: &Directory, address: &str) -> LocalUser {
    d.local_user(address).unwrap_or_else(|| panic!("{address} is a user"))
}

fn put_alias(d: &Directory, source: &str, targets: &[&str]) {
    let record = AliasRecord { targets: s(targets), created: 0 };
    d.store().kv_write(vec![(format!("alias/{source}"), Some(to_json(&record)))], vec![]).unwrap();
}

#[test]
fn names_are_parsed_and_normalized() {
    let a = Address::parse("Alice.Smith@Example.TEST").unwrap();
    assert_eq!(a.to_string(), "Alice.Smith@example.test");
    assert_eq!(a.canonical(), "alice.smith@example.test");
    assert_eq!(Address::parse("jörg@example.test").unwrap().canonical(), "jörg@example.test");
    for bad in ["alice", "@example.test", "alice@", "a b@example.test", ".a@x.test", "a..b@x.test", "a@-x.test"] {
        assert!(matches!(Address::parse(bad), Err(DirectoryError::InvalidAddress { .. })), "{bad}");
    }
    assert!(Address::parse(&format!("{}@x.test", "a".repeat(65))).is_err());
    assert_eq!(Domain::parse("Mail.Example.TEST").unwrap().as_str(), "mail.example.test");
    for bad in ["", "exa mple.test", "exämple.test", "a..test", "-a.test", &"a".repeat(64)] {
        assert!(matches!(Domain::parse(bad), Err(DirectoryError::InvalidDomain { .. })), "{bad:?}");
    }
    assert_eq!(AliasSource::parse("@Example.test").unwrap(), AliasSource::CatchAll(Domain("example.test".into())));
}

#[test]
fn domains_add_list_and_delete() {
    let d = directory(0);
    assert_eq!(d.add_domain("Example.TEST").unwrap().as_str(), "example.test");
    assert_eq!(d.add_domain("example.test"), Err(DirectoryError::DomainExists("example.test".into())));
    d.add_domain("other.test").unwrap();
    assert!(d.is_local_domain("EXAMPLE.test"));
    assert!(!d.is_local_domain("nowhere.test"));
    let names: Vec<String> = d.domains().unwrap().into_iter().map(|e| e.domain).collect();
    assert_eq!(names, ["example.test", "other.test"]);
    assert_eq!(d.delete_domain("other.test", false), Ok(DomainDeletion::default()));
    assert_eq!(d.delete_domain("other.test", false), Err(DirectoryError::NoSuchDomain("other.test".into())));
    assert!(!d.is_local_domain("other.test"));
}

#[test]
fn a_domain_in_use_is_deleted_only_with_force_and_takes_its_users_mail() {
    let d = populated();
    d.add_alias("postmaster@example.test", &s(&["alice@example.test"])).unwrap();
    assert_eq!(
        d.domains().unwrap(),
        [DomainEntry { domain: "example.test".into(), users: 2, aliases: 1 }],
        "the domain counts its users and aliases"
    );
    assert_eq!(
        d.delete_domain("example.test", false),
        Err(DirectoryError::DomainInUse { domain: "example.test".into(), users: 2, aliases: 1 })
    );
    let alice = user(&d, "alice@example.test");
    let deleted = d.delete_domain("example.test", true).unwrap();
    assert_eq!(deleted.users, ["alice@example.test", "bob@example.test"]);
    assert_eq!(deleted.aliases, ["postmaster@example.test"]);
    assert!(d.domains().unwrap().is_empty());
    assert!(d.store().usage(alice.account).is_none(), "the account is gone");
    assert!(d.store().kv_scan("").iter().all(|(k, _)| !k.starts_with("user/") && !k.starts_with("alias/")));
}

#[test]
fn users_need_their_domain_and_get_the_standard_mailboxes() {
    let d = directory(0);
    assert_eq!(d.add_user("alice@example.test", secret()), Err(DirectoryError::NoSuchDomain("example.test".into())));
    d.add_domain("example.test").unwrap();
    let alice = d.add_user("Alice@Example.TEST", secret()).unwrap();
    assert_eq!(alice.address, "Alice@example.test", "local part as typed, domain in lower case");
    assert_eq!(d.store().account_id("alice@example.test"), Some(alice.account), "the account has the lower-case name");
    let mailboxes: Vec<(String, u8)> =
        d.store().mailboxes(alice.account).unwrap().into_iter().map(|m| (m.name, m.special_use)).collect();
    for expected in [
        ("INBOX", 0),
        ("Drafts", special_use::DRAFTS),
        ("Sent", special_use::SENT),
        ("Junk", special_use::JUNK),
        ("Trash", special_use::TRASH),
        ("Archive", special_use::ARCHIVE),
    ] {
        assert!(mailboxes.contains(&(expected.0.to_string(), expected.1)), "{expected:?} in {mailboxes:?}");
    }
    assert_eq!(mailboxes.len(), 6);
}

#[test]
fn lookups_ignore_case_and_duplicates_in_another_case_are_refused() {
    let d = directory(0);
    d.add_domain("example.test").unwrap();
    let alice = d.add_user("Alice@example.test", secret()).unwrap();
    assert_eq!(
        d.add_user("ALICE@EXAMPLE.TEST", secret()),
        Err(DirectoryError::UserExists("Alice@example.test".into()))
    );
    for form in ["alice@example.test", "ALICE@Example.Test", "Alice@example.test"] {
        assert_eq!(d.local_user(form), Some(alice.clone()), "{form}");
        assert!(d.verify_password(form, "secret"), "{form}");
        assert!(d.scram_credentials(form).is_some(), "{form}");
        assert_eq!(d.resolve(form), Ok(Resolution::User(alice.clone())), "{form}");
    }
}

#[test]
fn passwords_are_stored_hashed_and_checked() {
    let d = populated();
    let raw = d.store().kv_get("user/alice@example.test").unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(!text.contains("secret"), "no plain password in {text}");
    let record: UserRecord = serde_json::from_str(&text).unwrap();
    assert!(record.password.starts_with("$argon2id$v=19$"), "{}", record.password);
    assert!(record.scram_sha256.starts_with("SCRAM-SHA-256$4096:"), "{}", record.scram_sha256);
    assert!(d.verify_password("alice@example.test", "secret"));
    assert!(!d.verify_password("alice@example.test", "Secret"));
    assert!(!d.verify_password("alice@example.test", ""));
    assert!(!d.verify_password("nobody@example.test", "secret"));
    assert!(!d.verify_password("not an address", "secret"));
    assert!(d.scram_credentials("nobody@example.test").is_none());
    let scram = d.scram_credentials("alice@example.test").unwrap();
    let expected = ScramCredentials::derive("secret", scram.salt(), scram.iterations()).unwrap();
    assert_eq!(scram.stored_key(), expected.stored_key());

    // SASLprep: the same password whatever mechanism carries it (U+00A0 is mapped to a space).
    d.set_credentials("bob@example.test", &Credentials::derive("pass\u{a0}word").unwrap()).unwrap();
    assert!(d.verify_password("bob@example.test", "pass word"));
    assert!(!d.verify_password("bob@example.test", "secret"), "the old password no longer works");
    assert!(matches!(Credentials::derive("bad\u{7}"), Err(DirectoryError::InvalidPassword(_))));
    assert!(matches!(Credentials::derive(""), Err(DirectoryError::InvalidPassword(_))));
    assert_eq!(
        d.set_credentials("nobody@example.test", secret()),
        Err(DirectoryError::NoSuchUser("nobody@example.test".into()))
    );
}

#[test]
fn credentials_from_outside_are_checked() {
    let good = secret().clone();
    assert!(good.validate().is_ok());
    let plain = Credentials { password_phc: "secret".into(), ..good.clone() };
    assert!(plain.validate().is_err(), "a plain password is no PHC string");
    let weak_algorithm = Credentials {
        password_phc: "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        ..good.clone()
    };
    assert!(weak_algorithm.validate().is_err());
    let scram = ScramCredentials::from_keys(b"salt", 100, [1; 32], [2; 32]).unwrap().encode();
    assert!(Credentials { scram_sha256: scram, ..good }.validate().is_err(), "too few iterations");
}

#[test]
fn deleting_a_user_deletes_its_account() {
    let d = populated();
    let alice = user(&d, "alice@example.test");
    d.store()
        .append(
            b"Subject: hi\r\n\r\nhello\r\n",
            &[postlog_engine::AppendTarget {
                account: alice.account,
                mailbox: d.store().mailbox_by_name(alice.account, "INBOX").unwrap().id,
                flags: 0,
                keywords: vec![],
                internal_date: 0,
            }],
        )
        .unwrap();
    d.delete_user("ALICE@example.test").unwrap();
    assert!(d.local_user("alice@example.test").is_none());
    assert!(d.store().account_id("alice@example.test").is_none());
    assert!(d.store().usage(alice.account).is_none());
    assert_eq!(d.resolve("alice@example.test"), Ok(Resolution::Unknown));
    assert_eq!(d.delete_user("alice@example.test"), Err(DirectoryError::NoSuchUser("alice@example.test".into())));
    let listed: Vec<String> = d.users(None).unwrap().into_iter().map(|u| u.address).collect();
    assert_eq!(listed, ["bob@example.test"]);
    assert_eq!(d.domains().unwrap()[0].users, 1);
}

#[test]
fn an_account_left_without_its_record_is_adopted() {
    let d = directory(0);
    d.add_domain("example.test").unwrap();
    // As if `user add` crashed between creating the account and writing the record.
    let orphan = d.store().create_account("carol@example.test", &DEFAULT_MAILBOXES).unwrap();
    let carol = d.add_user("Carol@example.test", secret()).unwrap();
    assert_eq!(carol.account, orphan);
    assert_eq!(d.store().accounts().len(), 1);
    assert_eq!(d.domains().unwrap()[0].users, 1);
}

#[test]
fn a_record_whose_account_is_gone_counts_as_absent() {
    let d = populated();
    let bob = user(&d, "bob@example.test");
    // As if `user del` crashed between deleting the account and deleting the record.
    d.store().delete_account(bob.account).unwrap();
    assert!(d.local_user("bob@example.test").is_none());
    assert!(!d.verify_password("bob@example.test", "secret"));
    assert!(d.scram_credentials("bob@example.test").is_none());
    assert_eq!(d.resolve("bob@example.test"), Ok(Resolution::Unknown));
    let listed = d.users(Some("example.test")).unwrap();
    assert_eq!(listed[1].account, None, "listed as missing its account: {listed:?}");
    // Adding again replaces the record without counting the user twice.
    let bob2 = d.add_user("bob@example.test", secret()).unwrap();
    assert_ne!(bob2.account, bob.account);
    assert_eq!(d.domains().unwrap()[0].users, 2);
    // Deleting a stale record works too.
    d.store().delete_account(bob2.account).unwrap();
    d.delete_user("bob@example.test").unwrap();
    assert_eq!(d.domains().unwrap()[0].users, 1);
}

#[test]
fn aliases_expand_recursively_without_duplicates() {
    let d = populated();
    d.add_domain("lists.test").unwrap();
    d.add_alias("team@example.test", &s(&["alice@example.test", "bob@example.test"])).unwrap();
    d.add_alias("all@lists.test", &s(&["team@example.test", "Alice@Example.test", "carol@remote.test"])).unwrap();
    let alice = user(&d, "alice@example.test");
    let bob = user(&d, "bob@example.test");
    assert_eq!(
        d.resolve("ALL@lists.test"),
        Ok(Resolution::Expanded {
            users: vec![alice.clone(), bob.clone()],
            remote: s(&["carol@remote.test"]),
            catch_all: false
        })
    );
    // Adding targets merges; the same target twice is kept once.
    let entry = d.add_alias("team@example.test", &s(&["BOB@example.test", "dave@remote.test"])).unwrap();
    assert_eq!(entry.targets, ["alice@example.test", "bob@example.test", "dave@remote.test"]);
    // A diamond (two ways to the same alias) is no loop.
    d.add_alias("both@example.test", &s(&["team@example.test", "all@lists.test"])).unwrap();
    assert_eq!(
        d.resolve("both@example.test"),
        Ok(Resolution::Expanded {
            users: vec![alice, bob],
            remote: s(&["dave@remote.test", "carol@remote.test"]),
            catch_all: false
        })
    );
    assert_eq!(d.resolve("x@remote.test"), Ok(Resolution::NotLocal));
    assert_eq!(d.resolve("nobody@example.test"), Ok(Resolution::Unknown));
    assert!(matches!(d.resolve("not an address"), Err(ResolveError::InvalidAddress(_))));
    let listed: Vec<String> = d.aliases(Some("lists.test")).unwrap().into_iter().map(|a| a.source).collect();
    assert_eq!(listed, ["all@lists.test"]);
}

#[test]
fn alias_loops_are_refused_when_added_and_caught_when_resolving() {
    let d = populated();
    d.add_alias("a@example.test", &s(&["alice@example.test"])).unwrap();
    d.add_alias("b@example.test", &s(&["a@example.test"])).unwrap();
    match d.add_alias("a@example.test", &s(&["b@example.test"])) {
        Err(DirectoryError::AliasLoop { chain }) => {
            assert_eq!(chain, ["a@example.test", "b@example.test", "a@example.test"])
        }
        other => panic!("expected a loop, got {other:?}"),
    }
    assert!(matches!(d.add_alias("c@example.test", &s(&["c@example.test"])), Err(DirectoryError::AliasLoop { .. })));
    assert_eq!(d.aliases(None).unwrap().len(), 2, "nothing was written");
    // A loop made behind the directory's back (or by two concurrent changes) is caught.
    put_alias(&d, "a@example.test", &["b@example.test", "alice@example.test"]);
    assert!(matches!(d.resolve("b@example.test"), Err(ResolveError::Loop { .. })));
    // Too deep: a chain of 12 aliases.
    for i in 0..12 {
        put_alias(&d, &format!("d{i}@example.test"), &[&format!("d{}@example.test", i + 1)]);
    }
    put_alias(&d, "d12@example.test", &["alice@example.test"]);
    assert_eq!(d.resolve("d0@example.test"), Err(ResolveError::TooDeep));
    assert!(matches!(d.resolve("d5@example.test"), Ok(Resolution::Expanded { .. })), "8 deep is fine");
}

#[test]
fn catch_all_takes_only_unknown_addresses() {
    let d = populated();
    d.add_alias("sales@example.test", &s(&["bob@example.test"])).unwrap();
    d.add_alias("@Example.test", &s(&["alice@example.test"])).unwrap();
    let alice = user(&d, "alice@example.test");
    let bob = user(&d, "bob@example.test");
    assert_eq!(
        d.resolve("whoever@example.test"),
        Ok(Resolution::Expanded { users: vec![alice.clone()], remote: vec![], catch_all: true })
    );
    assert_eq!(d.resolve("bob@example.test"), Ok(Resolution::User(bob.clone())));
    assert_eq!(
        d.resolve("sales@example.test"),
        Ok(Resolution::Expanded { users: vec![bob], remote: vec![], catch_all: false })
    );
    // An alias target in the domain that is nobody goes to the catch-all too...
    d.add_alias("typo@example.test", &s(&["alcie@example.test"])).unwrap();
    assert_eq!(
        d.resolve("typo@example.test"),
        Ok(Resolution::Expanded { users: vec![alice], remote: vec![], catch_all: false })
    );
    // ...but a catch-all onto its own domain's unknown addresses would loop.
    assert!(matches!(
        d.add_alias("@example.test", &s(&["nobody@example.test"])),
        Err(DirectoryError::AliasLoop { .. })
    ));
    let sources: Vec<String> = d.aliases(None).unwrap().into_iter().map(|a| a.source).collect();
    assert_eq!(sources, ["@example.test", "sales@example.test", "typo@example.test"]);
    assert_eq!(d.delete_alias("@example.test", &[]), Ok(AliasDeletion::Deleted));
    assert_eq!(d.resolve("whoever@example.test"), Ok(Resolution::Unknown));
}

#[test]
fn alias_rules() {
    let d = populated();
    // Only under a local domain; never over a user; local targets must exist.
    assert_eq!(
        d.add_alias("x@elsewhere.test", &s(&["alice@example.test"])),
        Err(DirectoryError::NoSuchDomain("elsewhere.test".into()))
    );
    assert_eq!(
        d.add_alias("Alice@example.test", &s(&["bob@example.test"])),
        Err(DirectoryError::AddressTaken { address: "Alice@example.test".into(), by: "a user" })
    );
    assert_eq!(
        d.add_alias("x@example.test", &s(&["nobody@example.test"])),
        Err(DirectoryError::UnknownLocalTarget {
            alias: "x@example.test".into(),
            target: "nobody@example.test".into()
        })
    );
    assert!(matches!(d.add_alias("x@example.test", &s(&["@other.test"])), Err(DirectoryError::InvalidAddress { .. })));
    assert!(matches!(d.add_alias("x@example.test", &[]), Err(DirectoryError::InvalidAddress { .. })));
    // And a user cannot be added over an alias.
    d.add_alias("x@example.test", &s(&["alice@example.test", "bob@example.test"])).unwrap();
    assert_eq!(
        d.add_user("X@example.test", secret()),
        Err(DirectoryError::AddressTaken { address: "X@example.test".into(), by: "an alias" })
    );
    // Removing targets one by one; the last one removes the alias.
    assert_eq!(
        d.delete_alias("x@example.test", &s(&["ALICE@example.test"])),
        Ok(AliasDeletion::Remaining(s(&["bob@example.test"])))
    );
    assert_eq!(
        d.delete_alias("x@example.test", &s(&["carol@example.test"])),
        Err(DirectoryError::NoSuchTarget { alias: "x@example.test".into(), target: "carol@example.test".into() })
    );
    assert_eq!(d.delete_alias("x@example.test", &s(&["bob@example.test"])), Ok(AliasDeletion::Deleted));
    assert_eq!(d.delete_alias("x@example.test", &[]), Err(DirectoryError::NoSuchAlias("x@example.test".into())));
    assert_eq!(d.domains().unwrap()[0].aliases, 0);
}

#[test]
fn quota_is_the_override_or_the_configured_default() {
    let d = Directory::new(store(), 1000);
    d.add_domain("example.test").unwrap();
    let alice = d.add_user("alice@example.test", secret()).unwrap();
    let q = d.quota("alice@example.test").unwrap();
    assert_eq!((q.limit_bytes, q.overridden, q.used_bytes), (Some(1000), false, 0));
    let inbox = d.store().mailbox_by_name(alice.account, "INBOX").unwrap().id;
    let message = vec![b'x'; 600];
    let target = postlog_engine::AppendTarget {
        account: alice.account,
        mailbox: inbox,
        flags: 0,
        keywords: vec![],
        internal_date: 0,
    };
    d.store().append(&message, &[target]).unwrap();
    let q = d.quota("ALICE@example.test").unwrap();
    assert_eq!((q.used_bytes, q.messages), (600, 1));
    assert!(q.allows(400) && !q.allows(401));

    d.set_quota("alice@example.test", Some(5000)).unwrap();
    let q = d.quota("alice@example.test").unwrap();
    assert_eq!((q.limit_bytes, q.overridden), (Some(5000), true));
    d.set_quota("alice@example.test", Some(0)).unwrap();
    let q = d.quota("alice@example.test").unwrap();
    assert_eq!((q.limit_bytes, q.overridden), (None, true));
    assert!(q.allows(u64::MAX));
    d.set_quota("alice@example.test", None).unwrap();
    assert_eq!(d.users(None).unwrap()[0].quota.limit_bytes, Some(1000));
    // Unlimited by default when the configuration says 0.
    let d0 = Directory::new(d.store().clone(), 0);
    assert_eq!(d0.quota("alice@example.test").unwrap().limit_bytes, None);
    assert_eq!(d.quota("nobody@example.test"), None);
    assert_eq!(d.set_quota("nobody@example.test", None), Err(DirectoryError::NoSuchUser("nobody@example.test".into())));
}

#[test]
fn the_sasl_secret_is_made_once_and_kept() {
    let d = directory(0);
    let first = d.sasl_secret().unwrap();
    assert_ne!(first, [0; 32]);
    assert_eq!(d.sasl_secret().unwrap(), first);
    assert_eq!(Directory::new(d.store().clone(), 0).sasl_secret().unwrap(), first);
}

#[test]
fn damaged_records_are_errors_not_panics() {
    let d = populated();
    d.store().kv_write(vec![("user/alice@example.test".into(), Some(b"{not json".to_vec()))], vec![]).unwrap();
    assert!(matches!(d.resolve("alice@example.test"), Err(ResolveError::Corrupt(_))));
    assert!(!d.verify_password("alice@example.test", "secret"));
    assert!(d.scram_credentials("alice@example.test").is_none());
    assert!(matches!(d.users(None), Err(DirectoryError::Corrupt { .. })));
    assert!(matches!(d.add_user("alice@example.test", secret()), Err(DirectoryError::Corrupt { .. })));
}
