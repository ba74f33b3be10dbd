//! Every command form, mostly with the examples of RFC 9051, RFC 3501 and the extension
//! RFCs, through [`parse_command`]; framer and parser together; hostile input.

use std::num::{NonZeroU32, NonZeroU64};

use super::*;

fn parse(input: &[u8]) -> CommandBody {
    match parse_command(input) {
        Ok(command) => command.body,
        Err(error) => panic!("{}: {error}", String::from_utf8_lossy(input).escape_debug()),
    }
}

fn bad(input: &[u8]) -> ParseError {
    match parse_command(input) {
        Ok(command) => panic!("{} parsed as {command:?}", String::from_utf8_lossy(input).escape_debug()),
        Err(error) => error,
    }
}

/// Asserts the body matches a pattern, then runs the checks.
macro_rules! assert_body {
    ($input:expr, $pat:pat => $check:expr) => {
        match parse($input) {
            $pat => $check,
            other => panic!("{}: parsed as {other:?}", String::from_utf8_lossy($input).escape_debug()),
        }
    };
    ($input:expr, $pat:pat) => {
        assert_body!($input, $pat => ())
    };
}

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("non-zero in tests")
}

fn n64(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).expect("non-zero in tests")
}

fn num(v: u32) -> SeqNumber {
    SeqNumber::Value(n(v))
}

/// A sequence set written as in a command.
fn set(text: &str) -> SequenceSet {
    match parse(format!("t UID EXPUNGE {text}\r\n").as_bytes()) {
        CommandBody::UidExpunge { uids } => uids,
        other => panic!("{other:?}"),
    }
}

fn date(day: u8, month: u8, year: u16) -> Date {
    Date::new(year, month, day).expect("valid date in tests")
}

fn atom(s: &str) -> Atom {
    Atom::new(s).expect("valid atom in tests")
}

/// The astring as a quoted string.
fn quoted(s: &str) -> AString {
    AString::String(IString::Quoted(Quoted::new(s).expect("valid quoted in tests")))
}

fn bytes(value: &AString) -> &str {
    value.to_str().expect("UTF-8 in tests")
}

fn name(value: &Mailbox) -> String {
    value.decode(true).expect("valid name in tests")
}

// ---- any state ----

#[test]
fn capability_noop_logout() {
    // RFC 9051 section 6.1.
    assert_body!(b"abcd CAPABILITY\r\n", CommandBody::Capability);
    assert_body!(b"a002 NOOP\r\n", CommandBody::Noop);
    assert_body!(b"A023 LOGOUT\r\n", CommandBody::Logout);
    assert_body!(b"a1 capability\r\n", CommandBody::Capability);
    let command = parse_command(b"a.b]c CAPABILITY\r\n").expect("tags may hold ]");
    assert_eq!(command.tag.as_str(), "a.b]c");
    assert_eq!(bad(b"a NOOP x\r\n").kind, ParseErrorKind::Expected("end of the command (CRLF)"));
}

#[test]
fn id() {
    // RFC 2971 section 3.
    assert_body!(
        b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")\r\n",
        CommandBody::Id { parameters: Some(pairs) } => {
            assert_eq!(pairs.len(), 3);
            assert_eq!(pairs[2].0.as_bytes(), b"vendor");
            assert_eq!(pairs[2].1.as_bytes(), Some(&b"Pink Floyd Music Limited"[..]));
        }
    );
    assert_body!(b"a ID NIL\r\n", CommandBody::Id { parameters: None });
    assert_body!(b"a ID ()\r\n", CommandBody::Id { parameters: Some(pairs) } => assert!(pairs.is_empty()));
    assert_body!(b"a ID (\"os\" NIL)\r\n", CommandBody::Id { parameters: Some(pairs) } => {
        assert_eq!(pairs[0].1, NString::Nil);
    });
    assert!(parse_command(b"a ID (name \"x\")\r\n").is_err(), "field names are strings");
    assert!(parse_command(b"a ID (\"name\")\r\n").is_err());
}

// ---- not authenticated ----

#[test]
fn starttls_and_authenticate() {
    assert_body!(b"a002 STARTTLS\r\n", CommandBody::StartTls);
    // RFC 9051 section 6.2.2.
    assert_body!(b"A001 AUTHENTICATE GSSAPI\r\n", CommandBody::Authenticate { mechanism, initial_response: None } => {
        assert_eq!(mechanism.as_str(), "GSSAPI");
    });
    // RFC 4959 section 3 (SASL-IR).
    assert_body!(
        b"a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
        CommandBody::Authenticate { initial_response: Some(response), .. } => {
            assert_eq!(response.expose_secret(), b"test\0test\0test");
        }
    );
    assert_body!(b"a AUTHENTICATE EXTERNAL =\r\n", CommandBody::Authenticate { initial_response: Some(r), .. } => {
        assert!(r.expose_secret().is_empty());
    });
    assert_eq!(
        bad(b"a AUTHENTICATE PLAIN dGVzd===x\r\n").kind,
        ParseErrorKind::Invalid("an initial response that is not base64")
    );
    assert!(parse_command(b"a AUTHENTICATE PLAIN \r\n").is_err());
    assert!(parse_command(b"a AUTHENTICATE\r\n").is_err());
    let debug = format!("{:?}", parse(b"a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n"));
    assert!(!debug.contains("116, 101, 115, 116") && debug.contains("redacted"), "{debug}");
}

#[test]
fn login() {
    // RFC 9051 section 6.2.3.
    assert_body!(b"a001 LOGIN SMITHJ SECRETPASSWORD\r\n", CommandBody::Login { username, password } => {
        assert_eq!(bytes(&username), "SMITHJ");
        assert_eq!(bytes(password.expose_secret()), "SECRETPASSWORD");
    });
    assert_body!(b"a LOGIN \"fred\" \"foo \\\"bar\\\\\"\r\n", CommandBody::Login { username, password } => {
        assert_eq!(bytes(&username), "fred");
        assert_eq!(bytes(password.expose_secret()), "foo \"bar\\");
    });
    // RFC 7888 section 3, and the same with synchronizing literals.
    for input in [
        &b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"[..],
        b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
    ] {
        assert_body!(input, CommandBody::Login { username, password } => {
            assert_eq!(bytes(&username), "FRED FOOBAR");
            assert_eq!(bytes(password.expose_secret()), "fat man");
        });
    }
    let debug = format!("{:?}", parse(b"a LOGIN alice hunter2\r\n"));
    assert!(!debug.contains("hunter2"), "{debug}");
    assert_body!("a LOGIN \"jöran\" \"pässword\"\r\n".as_bytes(), CommandBody::Login { username, .. } => {
        assert_eq!(bytes(&username), "jöran");
    });
    assert!(parse_command(b"a LOGIN alice\r\n").is_err());
    assert!(parse_command(b"a LOGIN \"al\r\nice\" x\r\n").is_err());
    assert!(parse_command(b"a LOGIN \"al\\ice\" x\r\n").is_err(), "\\i is no escape");
    assert!(parse_command(b"a LOGIN \"\xff\" x\r\n").is_err(), "quoted strings are UTF-8");
}

// ---- authenticated ----

#[test]
fn enable() {
    // RFC 5161 section 3.1.
    assert_body!(b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n", CommandBody::Enable { capabilities } => {
        assert_eq!(capabilities, [atom("CONDSTORE"), atom("X-GOOD-IDEA")]);
    });
    assert_body!(b"a ENABLE IMAP4rev2 UTF8=ACCEPT\r\n", CommandBody::Enable { capabilities } => {
        assert_eq!(capabilities[1].as_str(), "UTF8=ACCEPT");
    });
    assert!(parse_command(b"a ENABLE\r\n").is_err());
}

#[test]
fn select_and_examine() {
    // RFC 9051 sections 6.3.2 and 6.3.3.
    assert_body!(b"A142 SELECT INBOX\r\n", CommandBody::Select { mailbox: Mailbox::Inbox, params } => {
        assert_eq!(params, SelectParams::default());
    });
    assert_body!(b"A142 SELECT \"inbox\"\r\n", CommandBody::Select { mailbox: Mailbox::Inbox, .. });
    assert_body!(b"A932 EXAMINE blurdybloop\r\n", CommandBody::Examine { mailbox, .. } => {
        assert_eq!(name(&mailbox), "blurdybloop");
    });
    // RFC 7162 section 3.1.8.
    assert_body!(b"A142 SELECT INBOX (CONDSTORE)\r\n", CommandBody::Select { params, .. } => {
        assert!(params.condstore && params.qresync.is_none());
    });
    // RFC 7162 section 3.2.5.
    assert_body!(
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        CommandBody::Select { params: SelectParams { condstore: false, qresync: Some(q) }, .. } => {
            assert_eq!(q.uidvalidity, n(67890007));
            assert_eq!(q.modseq, n64(20050715194045000));
            assert_eq!(q.known_uids, Some(set("41,43:211,214:541")));
            assert_eq!(q.seq_match, None);
        }
    );
    assert_body!(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
        CommandBody::Select { params: SelectParams { qresync: Some(q), .. }, .. } => {
            assert_eq!(q.known_uids, Some(set("1:29997")));
            let (sequences, uids) = q.seq_match.expect("seq-match-data");
            assert_eq!(sequences, set("5000,7500,9000,9990:9999"));
            assert_eq!(uids.to_ranges(0).map(|r| r.len()), Some(13));
        }
    );
    assert_body!(
        b"a EXAMINE INBOX (CONDSTORE QRESYNC (1 2 (1:2 5:6)))\r\n",
        CommandBody::Examine { params: SelectParams { condstore: true, qresync: Some(q) }, .. } => {
            assert_eq!((q.known_uids, q.seq_match), (None, Some((set("1:2"), set("5:6")))));
        }
    );
    for wrong in [
        &b"a SELECT INBOX (QRESYNC (0 1))\r\n"[..],
        b"a SELECT INBOX (QRESYNC (1 0))\r\n",
        b"a SELECT INBOX (QRESYNC (1 2 1:*))\r\n",
        b"a SELECT INBOX (QRESYNC (1 2 $))\r\n",
        b"a SELECT INBOX (QRESYNC (1 2 1:5(1 2)))\r\n",
        b"a SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))\r\n",
        b"a SELECT INBOX (FOO)\r\n",
        b"a SELECT INBOX ()\r\n",
        b"a SELECT\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
    }
    assert_eq!(bad(b"a SELECT INBOX (FOO)\r\n").to_string(), "SELECT: an unknown SELECT parameter at octet 16");
}

#[test]
fn create_delete_rename_subscribe() {
    // RFC 9051 sections 6.3.4 to 6.3.8.
    assert_body!(b"A003 CREATE owatagusiam/\r\n", CommandBody::Create { mailbox, special_use: None } => {
        assert_eq!(name(&mailbox), "owatagusiam/");
    });
    // RFC 6154 section 5.2.
    assert_body!(b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n", CommandBody::Create { special_use: Some(uses), .. } => {
        assert_eq!(uses, [SpecialUse::Drafts, SpecialUse::Sent]);
    });
    assert_body!(b"t3 CREATE Everything (USE (\\All \\Important))\r\n", CommandBody::Create { special_use: Some(uses), .. } => {
        assert_eq!(uses, [SpecialUse::All, SpecialUse::Other(atom("Important"))]);
    });
    assert_body!(b"a CREATE x (USE ())\r\n", CommandBody::Create { special_use: Some(uses), .. } => assert!(uses.is_empty()));
    assert!(parse_command(b"a CREATE x (USE (Drafts))\r\n").is_err());
    assert!(parse_command(b"a CREATE x (FOO)\r\n").is_err());
    assert!(parse_command(b"a CREATE x (USE (\\Sent) USE (\\Sent))\r\n").is_err());
    assert_body!(b"A683 DELETE blurdybloop\r\n", CommandBody::Delete { .. });
    assert_body!(b"A683 RENAME blurdybloop sarasoop\r\n", CommandBody::Rename { from, to } => {
        assert_eq!((name(&from), name(&to)), ("blurdybloop".into(), "sarasoop".into()));
    });
    assert_body!(b"A685 RENAME INBOX \"old-mail\"\r\n", CommandBody::Rename { from: Mailbox::Inbox, .. });
    assert_body!(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n", CommandBody::Subscribe { mailbox } => {
        assert_eq!(name(&mailbox), "#news.comp.mail.mime");
    });
    assert_body!(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", CommandBody::Unsubscribe { .. });
    // A name in a literal, and one in modified UTF-7.
    assert_body!("a CREATE {9}\r\nEntwürfe\r\n".as_bytes(), CommandBody::Create { mailbox, .. } => {
        assert_eq!(mailbox.decode(true).as_deref(), Ok("Entwürfe"));
        assert_eq!(mailbox.decode(false), Err(MailboxNameError::EightBit { offset: 4 }));
    });
    assert_body!(b"a CREATE Entw&APw-rfe\r\n", CommandBody::Create { mailbox, .. } => {
        assert_eq!(mailbox.decode(false).as_deref(), Ok("Entwürfe"));
    });
}

#[test]
fn list_basic() {
    // RFC 9051 section 6.3.9.
    for (input, reference, pattern) in [
        (&b"A101 LIST \"\" \"\"\r\n"[..], "", ""),
        (b"A102 LIST #news.comp.mail.misc \"\"\r\n", "#news.comp.mail.misc", ""),
        (b"A103 LIST /usr/staff/jones \"\"\r\n", "/usr/staff/jones", ""),
        (b"A202 LIST ~/Mail/ %\r\n", "~/Mail/", "%"),
        (b"A203 LIST \"\" *]\r\n", "", "*]"),
    ] {
        assert_body!(input, CommandBody::List(list) => {
            assert!(!list.is_extended());
            assert_eq!(list.reference.as_bytes(), reference.as_bytes());
            assert_eq!(list.patterns.len(), 1);
            assert_eq!(list.patterns[0].as_bytes(), pattern.as_bytes());
        });
    }
    // RFC 3501 section 6.3.9.
    assert_body!(b"A002 LSUB \"#news.\" \"comp.mail.*\"\r\n", CommandBody::Lsub { reference, pattern } => {
        assert_eq!((reference.as_bytes(), pattern.as_bytes()), (&b"#news."[..], &b"comp.mail.*"[..]));
    });
    assert!(parse_command(b"a LIST \"\"\r\n").is_err());
    assert!(parse_command(b"a LIST \"\" (a\r\n").is_err());
}

#[test]
fn list_extended() {
    // RFC 5258 section 5.
    assert_body!(b"A02 LIST (SUBSCRIBED) \"\" \"*\"\r\n", CommandBody::List(list) => {
        assert_eq!(list.selection, Some(ListSelection { subscribed: true, ..Default::default() }));
        assert!(list.is_extended());
    });
    assert_body!(b"A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n", CommandBody::List(list) => {
        assert_eq!(list.selection, Some(ListSelection::default()));
        assert_eq!(list.return_options, Some(vec![ListReturn::Children]));
    });
    assert_body!(b"A05 LIST (REMOTE SUBSCRIBED) \"/\" \"*\"\r\n", CommandBody::List(list) => {
        assert_eq!(list.selection, Some(ListSelection { subscribed: true, remote: true, ..Default::default() }));
    });
    assert_body!(b"C04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"\r\n", CommandBody::List(list) => {
        assert!(list.selection.is_some_and(|s| s.recursive_match && s.subscribed));
    });
    assert_body!(b"A01 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n", CommandBody::List(list) => {
        assert_eq!(list.patterns.iter().map(|p| p.as_bytes()).collect::<Vec<_>>(), [&b"INBOX"[..], b"Drafts", b"Sent/%"]);
    });
    // RFC 5819 section 5.
    assert_body!(b"A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n", CommandBody::List(list) => {
        assert_eq!(list.return_options, Some(vec![ListReturn::Status(vec![StatusItem::Messages, StatusItem::Unseen])]));
    });
    // RFC 6154 section 5.1.
    assert_body!(b"t1 LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n", CommandBody::List(list) => {
        assert_eq!(list.return_options, Some(vec![ListReturn::SpecialUse]));
    });
    assert_body!(b"t1 LIST (SPECIAL-USE) \"\" \"*\"\r\n", CommandBody::List(list) => {
        assert!(list.selection.is_some_and(|s| s.special_use));
    });
    assert_body!(
        b"a list (special-use recursivematch) \"\" * return (subscribed children special-use status (size))\r\n",
        CommandBody::List(list) => assert_eq!(list.return_options.map(|r| r.len()), Some(4))
    );
    assert_body!(b"a LIST \"\" % RETURN ()\r\n", CommandBody::List(list) => assert_eq!(list.return_options, Some(vec![])));
    assert_eq!(
        bad(b"a LIST (RECURSIVEMATCH) \"\" %\r\n").kind,
        ParseErrorKind::Invalid("RECURSIVEMATCH without SUBSCRIBED or SPECIAL-USE")
    );
    assert!(parse_command(b"a LIST (REMOTE RECURSIVEMATCH) \"\" %\r\n").is_err());
    assert!(parse_command(b"a LIST (BOGUS) \"\" %\r\n").is_err());
    assert!(parse_command(b"a LIST \"\" % RETURN (BOGUS)\r\n").is_err());
    assert!(parse_command(b"a LIST \"\" % RETURN\r\n").is_err());
    assert!(parse_command(b"a LIST \"\" () \r\n").is_err());
    assert!(parse_command(b"a LIST \"\" % RETURN (STATUS ())\r\n").is_err());
}

#[test]
fn namespace_status_idle_and_selected_state_commands() {
    assert_body!(b"A001 NAMESPACE\r\n", CommandBody::Namespace);
    // RFC 9051 section 6.3.11.
    assert_body!(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", CommandBody::Status { items, .. } => {
        assert_eq!(items, [StatusItem::UidNext, StatusItem::Messages]);
    });
    assert_body!(
        b"a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID DELETED-STORAGE)\r\n",
        CommandBody::Status { mailbox: Mailbox::Inbox, items } => assert_eq!(items, StatusItem::ALL)
    );
    assert!(parse_command(b"a STATUS INBOX ()\r\n").is_err());
    assert_eq!(bad(b"a STATUS INBOX (MESSAGES BOGUS)\r\n").kind, ParseErrorKind::Invalid("an unknown STATUS item"));
    // RFC 2177 section 3; RFC 9051 sections 6.4.
    assert_body!(b"A001 IDLE\r\n", CommandBody::Idle);
    assert_body!(b"FXXZ CHECK\r\n", CommandBody::Check);
    assert_body!(b"A341 CLOSE\r\n", CommandBody::Close);
    assert_body!(b"A342 UNSELECT\r\n", CommandBody::Unselect);
    assert_body!(b"A202 EXPUNGE\r\n", CommandBody::Expunge);
    // RFC 4315 section 2.1.
    assert_body!(b"A003 UID EXPUNGE 3000:3002\r\n", CommandBody::UidExpunge { uids } => {
        assert_eq!(uids, SequenceSet::single(Sequence::Range(num(3000), num(3002))));
    });
    assert!(parse_command(b"a UID EXPUNGE\r\n").is_err());
    // RFC 4978 section 3.
    assert_body!(b"a COMPRESS DEFLATE\r\n", CommandBody::Compress { algorithm: CompressAlgorithm::Deflate });
    assert_body!(b"a compress deflate\r\n", CommandBody::Compress { .. });
    assert!(parse_command(b"a COMPRESS LZ4\r\n").is_err());
}

#[test]
fn quota() {
    // RFC 9208 sections 4.2 and 4.3.
    assert_body!(b"G0001 GETQUOTA \"!partition/sda4\"\r\n", CommandBody::GetQuota { root } => {
        assert_eq!(bytes(&root), "!partition/sda4");
    });
    assert_body!(b"A003 GETQUOTAROOT INBOX\r\n", CommandBody::GetQuotaRoot { mailbox: Mailbox::Inbox });
    assert_body!(b"S0000 SETQUOTA \"#user/alice\" (STORAGE 510)\r\n", CommandBody::SetQuota { root, limits } => {
        assert_eq!(bytes(&root), "#user/alice");
        assert_eq!(limits, [(QuotaResource::Storage, 510)]);
    });
    assert_body!(
        b"a SETQUOTA \"\" (storage 512 MESSAGE 1000 MAILBOX 5 ANNOTATION-STORAGE 1 X-FOO 2)\r\n",
        CommandBody::SetQuota { limits, .. } => {
            assert_eq!(limits[1], (QuotaResource::Message, 1000));
            assert_eq!(limits[4], (QuotaResource::Other(atom("X-FOO")), 2));
        }
    );
    assert_body!(b"a SETQUOTA x ()\r\n", CommandBody::SetQuota { limits, .. } => assert!(limits.is_empty()));
    assert!(parse_command(b"a SETQUOTA x (STORAGE)\r\n").is_err());
}

// ---- APPEND ----

const RFC3501_MESSAGE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.COM>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu\r\n\
Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

fn literal(prefix: &str, data: &[u8]) -> Vec<u8> {
    [format!("{prefix}{{{}}}\r\n", data.len()).as_bytes(), data].concat()
}

#[test]
fn append() {
    // RFC 9051 section 6.3.12 (the message is 310 octets, as the RFC says).
    assert_eq!(RFC3501_MESSAGE.len(), 310);
    let input = [literal("A003 APPEND saved-messages (\\Seen) ", RFC3501_MESSAGE), b"\r\n".to_vec()].concat();
    assert_body!(&input, CommandBody::Append { mailbox, messages } => {
        assert_eq!(name(&mailbox), "saved-messages");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].flags, [Flag::Seen]);
        assert_eq!(messages[0].date, None);
        assert_eq!(messages[0].message.data(), RFC3501_MESSAGE);
        assert!(!messages[0].utf8 && !messages[0].message.is_binary());
    });
    // RFC 3502 section 6.3.11 (MULTIAPPEND).
    let input = [
        literal("A003 APPEND saved-messages (\\Seen) ", RFC3501_MESSAGE),
        literal(" (\\Seen $MDNSent) \" 7-Feb-1994 22:43:04 -0800\" ", b"Subject: second\r\n\r\nhi\r\n"),
        b"\r\n".to_vec(),
    ]
    .concat();
    assert_body!(&input, CommandBody::Append { messages, .. } => {
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].flags, [Flag::Seen, Flag::Keyword(atom("$MDNSent"))]);
        let time = messages[1].date.expect("date-time");
        assert_eq!((time.date(), time.hour(), time.zone_minutes()), (date(7, 2, 1994), 22, -480));
        assert_eq!(messages[1].message.data(), b"Subject: second\r\n\r\nhi\r\n");
    });
    // A date and no flags; a non-synchronizing literal.
    assert_body!(b"a APPEND INBOX \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello\r\n", CommandBody::Append { messages, .. } => {
        assert!(messages[0].flags.is_empty() && messages[0].date.is_some());
        assert_eq!(messages[0].message.mode(), LiteralMode::NonSync);
    });
    // RFC 3516 section 4.4: literal8 for binary content.
    assert_body!(b"A003 APPEND Drafts (\\Seen $MDNSent) ~{7}\r\nab\0\r\n\xffz\r\n", CommandBody::Append { messages, .. } => {
        assert!(messages[0].message.is_binary());
        assert_eq!(messages[0].message.data(), b"ab\0\r\n\xffz");
    });
    // RFC 6855 section 4: UTF8 (literal8).
    assert_body!("a APPEND INBOX () UTF8 (~{10+}\r\nSubj: ü\r\n)\r\n".as_bytes(), CommandBody::Append { messages, .. } => {
        assert!(messages[0].utf8);
        assert_eq!(messages[0].message.data(), "Subj: ü\r\n".as_bytes());
    });
    assert_eq!(
        bad(b"a APPEND INBOX {3}\r\na\0b\r\n").kind,
        ParseErrorKind::Invalid("a literal contains NUL (only literal8 ~{n} may)")
    );
    for wrong in [
        &b"a APPEND INBOX\r\n"[..],
        b"a APPEND INBOX (\\Seen)\r\n",
        b"a APPEND INBOX UTF8 ({5}\r\nhello)\r\n",
        b"a APPEND INBOX (\\Seen) \"7-Feb-1994 22:43:04 -0800\" {1}\r\nx\r\n",
        b"a APPEND INBOX (\\Seen) \" 7-Feb-1994 22:43:04\" {1}\r\nx\r\n",
        b"a APPEND INBOX (\\*) {1}\r\nx\r\n",
        b"a APPEND INBOX {1}\r\nx \r\n",
        b"a APPEND INBOX {5}\r\nx\r\n",
        b"a APPEND INBOX \"x\"\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong).escape_debug());
    }
}

// ---- SEARCH, SORT, THREAD ----

#[test]
fn search_rfc_examples() {
    // RFC 9051 section 6.4.4.
    assert_body!(
        b"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        CommandBody::Search { uid: false, return_options: None, charset: None, criteria } => {
            assert_eq!(criteria.len(), 3);
            assert_eq!(criteria[0], SearchKey::Flagged);
            assert_eq!(criteria[1], SearchKey::Since(date(1, 2, 1994)));
            assert!(matches!(&criteria[2], SearchKey::Not(key) if matches!(&**key, SearchKey::From(s) if bytes(s) == "Smith")));
        }
    );
    assert_body!(b"A283 SEARCH TEXT \"string not in mailbox\"\r\n", CommandBody::Search { criteria, .. } => {
        assert!(matches!(&criteria[0], SearchKey::Text(s) if bytes(s) == "string not in mailbox"));
    });
    let input = literal("A284 SEARCH CHARSET UTF-8 TEXT ", "Поиск".as_bytes());
    let input = [input, b"\r\n".to_vec()].concat();
    assert_body!(&input, CommandBody::Search { charset: Some(charset), criteria, .. } => {
        assert!(charset.is_utf8_compatible());
        assert!(matches!(&criteria[0], SearchKey::Text(s) if bytes(s) == "Поиск"));
    });
    assert_body!(b"a SEARCH CHARSET \"US-ASCII\" ALL\r\n", CommandBody::Search { charset: Some(c), .. } => assert_eq!(c.0, "US-ASCII"));
    // RFC 4731 section 3.1 (ESEARCH).
    assert_body!(
        b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        CommandBody::Search { return_options: Some(r), criteria, .. } => {
            assert_eq!(r, [SearchReturn::Min, SearchReturn::Count]);
            assert_eq!(criteria.len(), 3);
        }
    );
    assert_body!(b"A283 SEARCH RETURN () FLAGGED\r\n", CommandBody::Search { return_options: Some(r), .. } => assert!(r.is_empty()));
    assert_body!(b"a UID SEARCH RETURN (MAX ALL) CHARSET UTF-8 UNSEEN\r\n", CommandBody::Search { uid: true, return_options: Some(r), charset: Some(_), .. } => {
        assert_eq!(r, [SearchReturn::Max, SearchReturn::All]);
    });
    // RFC 5182 section 2.4 (SEARCHRES).
    assert_body!(b"A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", CommandBody::Search { return_options: Some(r), .. } => {
        assert_eq!(r, [SearchReturn::Save]);
    });
    assert_body!(
        b"A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.HEADER)\r\n",
        CommandBody::Fetch { sequence_set: SequenceSet::Saved, .. }
    );
    assert_body!(b"a UID SEARCH UID $ SMALLER 4096\r\n", CommandBody::Search { criteria, .. } => {
        assert_eq!(criteria, [SearchKey::Uid(SequenceSet::Saved), SearchKey::Smaller(4096)]);
    });
    assert_body!(b"a SEARCH $\r\n", CommandBody::Search { criteria, .. } => assert_eq!(criteria, [SearchKey::SequenceSet(SequenceSet::Saved)]));
    // RFC 7162 section 3.1.5.
    assert_body!(b"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n", CommandBody::Search { criteria, .. } => {
        assert_eq!(criteria, [SearchKey::ModSeq {
            entry: Some(ModSeqEntry { flag: Flag::Draft, kind: EntryType::All }),
            modseq: 620162338,
        }]);
    });
    assert_body!(b"a SEARCH MODSEQ \"/flags/$Junk\" priv 0\r\n", CommandBody::Search { criteria, .. } => {
        assert_eq!(criteria, [SearchKey::ModSeq {
            entry: Some(ModSeqEntry { flag: Flag::Keyword(atom("$Junk")), kind: EntryType::Private }),
            modseq: 0,
        }]);
    });
    assert!(parse_command(b"a SEARCH MODSEQ 5 SHARED\r\n").is_err());
    assert!(parse_command(b"a SEARCH MODSEQ \"/flags/\\\\seen\"\r\n").is_err());
}

#[test]
fn search_every_key() {
    let input = b"a SEARCH ALL ANSWERED BCC x BEFORE 1-Feb-1994 BODY \"y z\" CC x DELETED DRAFT FLAGGED FROM x \
HEADER Message-ID <x@y> KEYWORD $Junk LARGER 100 NEW OLD ON \"1-Feb-1994\" RECENT SEEN SENTBEFORE 1-Feb-1994 \
SENTON 1-Feb-1994 SENTSINCE 1-Feb-1994 SINCE 1-Feb-1994 SMALLER 5 SUBJECT x TEXT x TO x UID 1:* UNANSWERED \
UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN 1,3:5 * $ MODSEQ 5 OLDER 3600 YOUNGER 60 \
EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9 SAVEDBEFORE 1-Feb-1994 SAVEDON 1-Feb-1994 \
SAVEDSINCE 1-Feb-1994 SAVEDATESUPPORTED\r\n";
    let d = date(1, 2, 1994);
    let x = || AString::Atom("x".into());
    let expected = vec![
        SearchKey::All,
        SearchKey::Answered,
        SearchKey::Bcc(x()),
        SearchKey::Before(d),
        SearchKey::Body(AString::from_bytes(b"y z")),
        SearchKey::Cc(x()),
        SearchKey::Deleted,
        SearchKey::Draft,
        SearchKey::Flagged,
        SearchKey::From(x()),
        SearchKey::Header(AString::Atom("Message-ID".into()), AString::Atom("<x@y>".into())),
        SearchKey::Keyword(atom("$Junk")),
        SearchKey::Larger(100),
        SearchKey::New,
        SearchKey::Old,
        SearchKey::On(d),
        SearchKey::Recent,
        SearchKey::Seen,
        SearchKey::SentBefore(d),
        SearchKey::SentOn(d),
        SearchKey::SentSince(d),
        SearchKey::Since(d),
        SearchKey::Smaller(5),
        SearchKey::Subject(x()),
        SearchKey::Text(x()),
        SearchKey::To(x()),
        SearchKey::Uid(SequenceSet::single(Sequence::Range(num(1), SeqNumber::Largest))),
        SearchKey::Unanswered,
        SearchKey::Undeleted,
        SearchKey::Undraft,
        SearchKey::Unflagged,
        SearchKey::Unkeyword(atom("$Junk")),
        SearchKey::Unseen,
        SearchKey::SequenceSet(SequenceSet::Ranges(vec![Sequence::Single(num(1)), Sequence::Range(num(3), num(5))])),
        SearchKey::SequenceSet(SequenceSet::single(Sequence::Single(SeqNumber::Largest))),
        SearchKey::SequenceSet(SequenceSet::Saved),
        SearchKey::ModSeq { entry: None, modseq: 5 },
        SearchKey::Older(n(3600)),
        SearchKey::Younger(n(60)),
        SearchKey::EmailId(ObjectId::new("M6d99ac3275bb4e").expect("id")),
        SearchKey::ThreadId(ObjectId::new("T64b478a75b7ea9").expect("id")),
        SearchKey::SavedBefore(d),
        SearchKey::SavedOn(d),
        SearchKey::SavedSince(d),
        SearchKey::SaveDateSupported,
    ];
    assert_body!(input, CommandBody::Search { criteria, .. } => assert_eq!(criteria, expected));
    // Keys ignore case.
    assert_body!(b"a search unseen since 1-feb-1994 header \"X-A\" \"\"\r\n", CommandBody::Search { criteria, .. } => {
        assert_eq!(criteria[2], SearchKey::Header(quoted("X-A"), quoted("")));
    });
}

#[test]
fn search_nesting() {
    assert_body!(
        b"a SEARCH OR (FROM alice SUBJECT \"hi\") NOT (SEEN OR DELETED DRAFT)\r\n",
        CommandBody::Search { criteria, .. } => {
            let [SearchKey::Or(left, right)] = criteria.as_slice() else { panic!("{criteria:?}") };
            assert!(matches!(&**left, SearchKey::And(keys) if keys.len() == 2));
            let SearchKey::Not(inner) = &**right else { panic!("{right:?}") };
            let SearchKey::And(keys) = &**inner else { panic!("{inner:?}") };
            assert_eq!(keys[0], SearchKey::Seen);
            assert_eq!(keys[1], SearchKey::Or(Box::new(SearchKey::Deleted), Box::new(SearchKey::Draft)));
        }
    );
    assert_body!(b"a SEARCH ((SEEN))\r\n", CommandBody::Search { criteria, .. } => {
        assert_eq!(criteria, [SearchKey::And(vec![SearchKey::And(vec![SearchKey::Seen])])]);
    });
    for wrong in [
        &b"a SEARCH\r\n"[..],
        b"a SEARCH \r\n",
        b"a SEARCH ()\r\n",
        b"a SEARCH (SEEN\r\n",
        b"a SEARCH SEEN)\r\n",
        b"a SEARCH OR SEEN\r\n",
        b"a SEARCH NOT\r\n",
        b"a SEARCH FOO\r\n",
        b"a SEARCH SINCE 1-Foo-2000\r\n",
        b"a SEARCH SINCE 1-Feb-94\r\n",
        b"a SEARCH LARGER x\r\n",
        b"a SEARCH UID\r\n",
        b"a SEARCH 0\r\n",
        b"a SEARCH 1:\r\n",
        b"a SEARCH 1,\r\n",
        b"a SEARCH KEYWORD \\Seen\r\n",
        b"a SEARCH OLDER 0\r\n",
        b"a SEARCH EMAILID a.b\r\n",
        b"a SEARCH MODSEQ \"/flags/\\\\seen\" mine 5\r\n",
        b"a SEARCH MODSEQ \"/other/x\" all 5\r\n",
        b"a SEARCH RETURN (PARTIAL 1:5) ALL\r\n",
        b"a SEARCH RETURN (MIN\r\n",
        b"a SEARCH CHARSET\r\n",
        b"a SEARCH CHARSET UTF-8\r\n",
        b"a SEARCH SEEN  UNSEEN\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong).escape_debug());
    }
    assert_eq!(bad(b"a SEARCH FOO\r\n").to_string(), "SEARCH: an unknown search key at octet 9");
}

#[test]
fn sort_and_thread() {
    // RFC 5256 section 3.
    assert_body!(
        b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
        CommandBody::Sort { uid: false, return_options: None, sort, charset, criteria } => {
            assert_eq!(sort, [SortCriterion { reverse: false, key: SortKey::Subject }]);
            assert_eq!(charset.0, "UTF-8");
            assert_eq!(criteria, [SearchKey::Since(date(1, 2, 1994))]);
        }
    );
    assert_body!(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n", CommandBody::Sort { sort, .. } => {
        assert_eq!(sort[1], SortCriterion { reverse: true, key: SortKey::Date });
    });
    assert_body!(b"A284 SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"\r\n", CommandBody::Sort { .. });
    // RFC 5957 section 3.
    assert_body!(
        b"a UID SORT (DISPLAYFROM REVERSE DISPLAYTO ARRIVAL CC FROM SIZE TO) UTF-8 ALL\r\n",
        CommandBody::Sort { uid: true, sort, .. } => {
            let keys: Vec<_> = sort.iter().map(|c| c.key).collect();
            assert_eq!(keys, [SortKey::DisplayFrom, SortKey::DisplayTo, SortKey::Arrival, SortKey::Cc, SortKey::From, SortKey::Size, SortKey::To]);
        }
    );
    // RFC 5267 section 3.2 (ESORT).
    assert_body!(b"A283 SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 UNDELETED UNKEYWORD $Junk\r\n", CommandBody::Sort { return_options: Some(r), criteria, .. } => {
        assert_eq!(r, [SearchReturn::Min, SearchReturn::Max, SearchReturn::Count]);
        assert_eq!(criteria.len(), 2);
    });
    // RFC 5256 section 3.
    assert_body!(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n", CommandBody::Thread { uid: false, algorithm: ThreadAlgorithm::OrderedSubject, criteria, .. } => {
        assert_eq!(criteria, [SearchKey::Since(date(5, 3, 2000))]);
    });
    assert_body!(
        b"A284 THREAD REFERENCES US-ASCII TEXT \"gewp\"\r\n",
        CommandBody::Thread { algorithm: ThreadAlgorithm::References, .. }
    );
    assert_body!(b"a UID THREAD REFERENCES UTF-8 ALL\r\n", CommandBody::Thread { uid: true, .. });
    for wrong in [
        &b"a SORT () UTF-8 ALL\r\n"[..],
        b"a SORT (SUBJECT) ALL\r\n",
        b"a SORT (REVERSE) UTF-8 ALL\r\n",
        b"a SORT (SENDER) UTF-8 ALL\r\n",
        b"a SORT SUBJECT UTF-8 ALL\r\n",
        b"a THREAD REFS UTF-8 ALL\r\n",
        b"a THREAD REFERENCES UTF-8\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
    }
}

// ---- FETCH, STORE, COPY, MOVE ----

fn body_section(peek: bool, part: &[u32], text: Option<SectionText>, partial: Option<(u64, u64)>) -> FetchAttribute {
    FetchAttribute::BodySection {
        peek,
        section: Section { part: part.iter().map(|&p| n(p)).collect(), text },
        partial: partial.map(|(offset, length)| Partial { offset, length: n64(length) }),
    }
}

#[test]
fn fetch_rfc_examples() {
    // RFC 9051 section 6.4.5.
    assert_body!(
        b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
        CommandBody::Fetch { uid: false, sequence_set, items: FetchItems::Attributes(attributes), modifiers } => {
            assert_eq!(sequence_set, set("2:4"));
            let fields = vec![AString::Atom("DATE".into()), AString::Atom("FROM".into())];
            assert_eq!(attributes, [FetchAttribute::Flags, body_section(false, &[], Some(SectionText::HeaderFields(fields)), None)]);
            assert_eq!(modifiers, FetchModifiers::default());
        }
    );
    // RFC 9051 section 6.4.9.
    assert_body!(b"A999 UID FETCH 4827313:4828442 FLAGS\r\n", CommandBody::Fetch { uid: true, items: FetchItems::Attributes(a), .. } => {
        assert_eq!(a, [FetchAttribute::Flags]);
    });
    assert_body!(b"a FETCH 1:* ALL\r\n", CommandBody::Fetch { items: FetchItems::All, .. });
    assert_body!(b"a FETCH 1 fast\r\n", CommandBody::Fetch { items: FetchItems::Fast, .. });
    assert_body!(b"a FETCH * FULL\r\n", CommandBody::Fetch { items: FetchItems::Full, .. });
    // The first sync of the load test.
    assert_body!(
        b"a UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)\r\n",
        CommandBody::Fetch { items: FetchItems::Attributes(a), .. } => assert_eq!(a.len(), 5)
    );
}

#[test]
fn fetch_every_attribute() {
    assert_body!(
        b"a FETCH 1 (RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT ENVELOPE BODY BODYSTRUCTURE UID INTERNALDATE MODSEQ EMAILID THREADID SAVEDATE flags)\r\n",
        CommandBody::Fetch { items: FetchItems::Attributes(a), .. } => {
            use FetchAttribute::*;
            assert_eq!(a, [Rfc822, Rfc822Header, Rfc822Size, Rfc822Text, Envelope, Body, BodyStructure, Uid, InternalDate, ModSeq, EmailId, ThreadId, SaveDate, Flags]);
        }
    );
    assert_body!(
        b"a FETCH 1 (BODY[] BODY.PEEK[1.2.MIME] BODY[1.2.3] BODY[TEXT]<0.2048> BODY.PEEK[HEADER.FIELDS.NOT (Received \"X-Spam\")] BODY[2.HEADER] BODY[3.TEXT] body.peek[header]<5.1>)\r\n",
        CommandBody::Fetch { items: FetchItems::Attributes(a), .. } => {
            let not = SectionText::HeaderFieldsNot(vec![AString::Atom("Received".into()), quoted("X-Spam")]);
            assert_eq!(a, [
                body_section(false, &[], None, None),
                body_section(true, &[1, 2], Some(SectionText::Mime), None),
                body_section(false, &[1, 2, 3], None, None),
                body_section(false, &[], Some(SectionText::Text), Some((0, 2048))),
                body_section(true, &[], Some(not), None),
                body_section(false, &[2], Some(SectionText::Header), None),
                body_section(false, &[3], Some(SectionText::Text), None),
                body_section(true, &[], Some(SectionText::Header), Some((5, 1))),
            ]);
            assert!(a[0].sets_seen() && !a[1].sets_seen());
        }
    );
    // RFC 3516 section 4.
    assert_body!(
        b"a FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[1] BINARY[])\r\n",
        CommandBody::Fetch { items: FetchItems::Attributes(a), .. } => {
            assert_eq!(a, [
                FetchAttribute::Binary { peek: false, part: vec![n(1)], partial: None },
                FetchAttribute::Binary { peek: true, part: vec![n(1), n(2)], partial: Some(Partial { offset: 0, length: n64(100) }) },
                FetchAttribute::BinarySize { part: vec![n(1)] },
                FetchAttribute::Binary { peek: false, part: vec![], partial: None },
            ]);
        }
    );
    for wrong in [
        &b"a FETCH 1 ()\r\n"[..],
        b"a FETCH 1 FOO\r\n",
        b"a FETCH 1 (FLAGS\r\n",
        b"a FETCH 1 (FLAGS )\r\n",
        b"a FETCH 1 BODY[MIME]\r\n",
        b"a FETCH 1 BODY[1.0]\r\n",
        b"a FETCH 1 BODY[1.]\r\n",
        b"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
        b"a FETCH 1 BODY[HEADER.FIELDS]\r\n",
        b"a FETCH 1 BODY[FOO]\r\n",
        b"a FETCH 1 BODY[]<1.0>\r\n",
        b"a FETCH 1 BODY[]<1>\r\n",
        b"a FETCH 1 BODY.PEEK\r\n",
        b"a FETCH 1 BODY[\r\n",
        b"a FETCH 1 BINARY[TEXT]\r\n",
        b"a FETCH 1 BINARY.SIZE[1]<0.5>\r\n",
        b"a FETCH 1 RFC822.FOO\r\n",
        b"a FETCH FLAGS\r\n",
        b"a FETCH 1\r\n",
        b"a FETCH 1 FLAGS \r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
    }
}

#[test]
fn fetch_modifiers() {
    // RFC 7162 sections 3.1.4.2 and 3.2.6.
    assert_body!(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n", CommandBody::Fetch { modifiers, .. } => {
        assert_eq!(modifiers, FetchModifiers { changed_since: Some(n64(12345)), vanished: false });
    });
    assert_body!(b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n", CommandBody::Fetch { uid: true, modifiers, .. } => {
        assert_eq!(modifiers, FetchModifiers { changed_since: Some(n64(12345)), vanished: true });
    });
    assert_body!(b"a UID FETCH 1:* FLAGS (VANISHED CHANGEDSINCE 1)\r\n", CommandBody::Fetch { modifiers, .. } => assert!(modifiers.vanished));
    assert_eq!(
        bad(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n").kind,
        ParseErrorKind::Invalid("VANISHED in FETCH (only UID FETCH takes it)")
    );
    assert_eq!(
        bad(b"a UID FETCH 1:* (FLAGS) (VANISHED)\r\n").kind,
        ParseErrorKind::Invalid("VANISHED without CHANGEDSINCE")
    );
    for wrong in [
        &b"a FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n"[..],
        b"a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)\r\n",
        b"a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)\r\n",
        b"a FETCH 1 FLAGS ()\r\n",
        b"a FETCH 1 FLAGS (PARTIAL 1:5)\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
    }
}

#[test]
fn store() {
    // RFC 9051 section 6.4.6.
    assert_body!(
        b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
        CommandBody::Store { uid: false, sequence_set, unchanged_since: None, action: StoreAction::Add, silent: false, flags } => {
            assert_eq!(sequence_set, set("2:4"));
            assert_eq!(flags, [Flag::Deleted]);
        }
    );
    assert_body!(b"a STORE 1 FLAGS.SILENT \\Seen $Junk\r\n", CommandBody::Store { action: StoreAction::Replace, silent: true, flags, .. } => {
        assert_eq!(flags, [Flag::Seen, Flag::Keyword(atom("$Junk"))]);
    });
    assert_body!(b"a STORE 1 -flags ()\r\n", CommandBody::Store { action: StoreAction::Remove, flags, .. } => assert!(flags.is_empty()));
    // RFC 7162 section 3.1.3.
    assert_body!(
        b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n",
        CommandBody::Store { uid: true, unchanged_since: Some(12121230045), silent: true, .. }
    );
    assert_body!(b"a UID STORE $ +FLAGS (\\Seen \\Answered \\Flagged \\Draft \\Recent)\r\n", CommandBody::Store { flags, .. } => {
        assert_eq!(flags[4], Flag::Extension(atom("Recent")));
    });
    assert_body!(b"a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()\r\n", CommandBody::Store { unchanged_since: Some(0), .. });
    for wrong in [
        &b"a STORE 1 FLAGS (\\*)\r\n"[..],
        b"a STORE 1 +FLAG (\\Seen)\r\n",
        b"a STORE 1 FLAGS\r\n",
        b"a STORE 1 FLAGS \r\n",
        b"a STORE 1 FLAGS (UNCHANGEDSINCE 0) ()\r\n",
        b"a STORE 1 (CHANGEDSINCE 5) FLAGS ()\r\n",
        b"a STORE 1 (UNCHANGEDSINCE 5)FLAGS ()\r\n",
        b"a STORE 1 *FLAGS (\\Seen)\r\n",
        b"a STORE 1 FLAGS.LOUD (\\Seen)\r\n",
        b"a STORE 1 FLAGS (\\Seen\r\n",
    ] {
        assert!(parse_command(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
    }
}

#[test]
fn copy_and_move() {
    // RFC 9051 section 6.4.7; RFC 6851 section 4.
    assert_body!(b"A003 COPY 2:4 MEETING\r\n", CommandBody::Copy { uid: false, sequence_set, mailbox } => {
        assert_eq!((sequence_set, name(&mailbox)), (set("2:4"), "MEETING".into()));
    });
    assert_body!(b"a UID COPY 1:* \"Sent Items\"\r\n", CommandBody::Copy { uid: true, .. });
    assert_body!(b"a UID MOVE 42:69 foo\r\n", CommandBody::Move { uid: true, .. });
    assert_body!(b"a MOVE 1 Trash\r\n", CommandBody::Move { uid: false, .. });
    assert!(parse_command(b"a MOVE 1\r\n").is_err());
    assert!(parse_command(b"a COPY Trash\r\n").is_err());
}

// ---- framer and parser together ----

/// Feeds `input` through a framer (authenticated) and parses every command.
fn frame_and_parse(framer: &mut CommandFramer, input: &[u8]) -> Vec<Result<Command, String>> {
    framer.handle_bytes(input);
    let mut out = Vec::new();
    while let Some(frame) = framer.poll() {
        match frame {
            Frame::Command(bytes) => {
                out.push(parse_command_with(&bytes, framer.limits().max_depth).map_err(|e| e.to_string()))
            }
            Frame::Continue => {}
            other => out.push(Err(format!("{other:?}"))),
        }
    }
    out
}

#[test]
fn pipelined_session_through_framer_and_parser() {
    let session = [
        &b"A1 CAPABILITY\r\n"[..],
        b"A2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
        b"A3 SELECT INBOX (CONDSTORE)\r\n",
        b"A4 APPEND Drafts (\\Seen) \" 7-Feb-1994 22:43:04 -0800\" {12}\r\nSubject: x\r\n (\\Draft) ~{3+}\r\na\0b\r\n",
        b"A5 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) (CHANGEDSINCE 7 VANISHED)\r\n",
        b"A6 UID SEARCH RETURN (SAVE) CHARSET UTF-8 SUBJECT {4}\r\n\xc3\xbc\xc3\xbc\r\n",
        b"A7 UID MOVE $ Trash\r\n",
        b"A8 LOGOUT\r\n",
    ]
    .concat();
    let names = ["CAPABILITY", "LOGIN", "SELECT", "APPEND", "UID FETCH", "UID SEARCH", "UID MOVE", "LOGOUT"];
    for split in 0..=session.len() {
        let mut framer = CommandFramer::new(FramerConfig::default());
        framer.set_authenticated(true);
        let mut got = frame_and_parse(&mut framer, &session[..split]);
        got.extend(frame_and_parse(&mut framer, &session[split..]));
        let got: Vec<_> = got.into_iter().map(|r| r.map(|c| (c.tag.to_string(), c.body.name()))).collect();
        let expected: Vec<_> = names.iter().enumerate().map(|(i, name)| Ok((format!("A{}", i + 1), *name))).collect();
        assert_eq!(got, expected, "split at {split}");
    }
}

#[test]
fn refused_literal_leaves_the_session_usable() {
    let mut framer = CommandFramer::new(FramerConfig::default());
    let got = frame_and_parse(&mut framer, b"a LOGIN {100000}\r\nb LOGIN alice secret\r\n");
    assert_eq!(got.len(), 2);
    assert!(got[0].as_ref().is_err_and(|e| e.contains("LiteralTooBig")), "{got:?}");
    assert!(got[1].as_ref().is_ok_and(|c| c.body.name() == "LOGIN"), "{got:?}");
}

#[test]
fn pre_auth_depth_limit_applies_through_the_framer() {
    let mut framer = CommandFramer::new(FramerConfig::default());
    let deep = [b"a SEARCH ".to_vec(), b"NOT ".repeat(9), b"SEEN\r\n".to_vec()].concat();
    let got = frame_and_parse(&mut framer, &deep);
    assert!(got[0].as_ref().is_err_and(|e| e.contains("nested deeper than 8")), "{got:?}");
    framer.set_authenticated(true);
    assert!(frame_and_parse(&mut framer, &deep)[0].is_ok());
}

// ---- hostile input ----

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"a SEARCH OR (FROM alice SUBJECT \"hi\") NOT (SEEN OR DELETED DRAFT) MODSEQ \"/flags/\\\\draft\" all 5\r\n",
    b"a FETCH 1:*,$ (BODY.PEEK[1.2.HEADER.FIELDS.NOT (A \"B\")]<0.10> BINARY[1]<5.5> BINARY.SIZE[2]) (CHANGEDSINCE 3)\r\n",
    b"a APPEND x (\\Seen) \" 7-Feb-1994 22:43:04 -0800\" {3}\r\nabc ~{2+}\r\n\0\0 UTF8 (~{1}\r\nx)\r\n",
    b"a SELECT INBOX (QRESYNC (1 2 1:5 (1:2 3:4)) CONDSTORE)\r\n",
    b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% \"x/*\") RETURN (STATUS (MESSAGES SIZE) CHILDREN)\r\n",
    b"a UID STORE 1:3 (UNCHANGEDSINCE 4) -FLAGS.SILENT (\\Seen $Junk)\r\n",
    b"a SORT RETURN (COUNT) (REVERSE DATE) UTF-8 SINCE 1-Feb-1994\r\n",
    b"a ID (\"name\" NIL) \r\n",
    b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"a CREATE {3}\r\nx&- (USE (\\Drafts))\r\n",
];

#[test]
fn garbage_and_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 4 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let mut input = SEEDS[rng.below(SEEDS.len())].to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len() + 1);
                match rng.below(4) {
                    0 if at < input.len() => input[at] = rng.next() as u8,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    2 => input.insert(at, b" ()[]{}<>\"\\*$:,.+~0123456789\r\nA"[rng.below(31)]),
                    _ => input.truncate(at),
                }
            }
            input
        };
        if let Err(error) = parse_command(&input) {
            let text = error.status().encode();
            assert!(text.ends_with(b"\r\n") && !text[..text.len() - 2].contains(&b'\n'), "{}", error);
        }
        let mut framer = CommandFramer::new(FramerConfig::default());
        framer.set_authenticated(round % 2 == 0);
        for chunk in input.chunks(1 + rng.below(16)) {
            framer.handle_bytes(chunk);
            while let Some(frame) = framer.poll() {
                if let Frame::Command(bytes) = frame {
                    let _ = parse_command_with(&bytes, framer.limits().max_depth);
                }
            }
        }
    }
}
