//! End-to-end tests of the `postlog` binary's commands, each on its own temporary data
//! directory.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

const ALICE: &str = "alice@example.test";
/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000;

use common::postlog;

fn run(args: &[&str]) -> Output {
    postlog().args(args).stdin(Stdio::null()).output().expect("run postlog")
}

use common::text;

/// Runs and checks the exit code, showing the output when it differs.
fn run_code(args: &[&str], code: i32) -> Output {
    let out = run(args);
    common::assert_exit(args, &out, code);
    out
}

fn ham() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/ham")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn dump_json(data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["dump", "--data", s(data), "--json"];
    args.extend_from_slice(extra);
    let out = run_code(&args, 0);
    serde_json::from_slice(&out.stdout).expect("dump --json is one JSON document")
}

fn import_ham(data: &Path) {
    let out =
        run_code(&["import", "--data", s(data), "--account", ALICE, "--eml-dir", s(&ham()), "--create-account"], 0);
    assert!(text(&out.stdout).contains("imported 250 messages"), "{}", text(&out.stdout));
}

fn segment(data: &Path, id: u64) -> PathBuf {
    data.join(format!("seg-{id:016x}.log"))
}

fn set_mtime(path: &Path, secs: i64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
    fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

fn message(subject: &str) -> String {
    format!("From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nBody of {subject}.\r\n")
}

/// A Maildir++ tree: INBOX (one seen, one new), Sent (answered+flagged), Lists/rust
/// (keyword $Junk through dovecot-keywords, and the P flag: $Forwarded).
fn build_maildir(root: &Path) {
    let put = |dir: &Path, sub: &str, name: &str, body: &str, secs: i64| {
        for d in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let p = dir.join(sub).join(name);
        fs::write(&p, body).unwrap();
        set_mtime(&p, secs);
    };
    put(root, "cur", &format!("{T0}.M1.host:2,S"), &message("one"), T0);
    put(root, "new", &format!("{}.M2.host", T0 + 10), &message("two"), T0 + 10);
    put(&root.join(".Sent"), "cur", &format!("{}.M3.host:2,FRS", T0 + 20), &message("three"), T0 + 20);
    let lists = root.join(".Lists.rust");
    put(&lists, "cur", &format!("{}.M4.host:2,PSa", T0 + 30), &message("four"), T0 + 30);
    fs::write(lists.join("dovecot-keywords"), "0 $Junk\n").unwrap();
    fs::write(lists.join("maildirfolder"), "").unwrap();
    fs::write(root.join(".Sent").join("maildirfolder"), "").unwrap();
}

/// Mailbox name -> its messages as (flags+keywords sorted, internal date, sha256 of body).
fn mailbox_contents(dump: &Value, account: &str) -> BTreeMap<String, Vec<(Vec<String>, i64, String)>> {
    let sha: BTreeMap<u64, String> = dump["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_u64().unwrap(), b["sha256"].as_str().unwrap().to_string()))
        .collect();
    let acc = dump["accounts"].as_array().unwrap().iter().find(|a| a["name"] == account).expect("account in dump");
    let mut out = BTreeMap::new();
    for mb in acc["mailboxes"].as_array().unwrap() {
        let mut msgs: Vec<(Vec<String>, i64, String)> = mb["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut f: Vec<String> = m["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .chain(m["keywords"].as_array().unwrap())
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                f.sort();
                (f, m["internal_date"].as_i64().unwrap(), sha[&m["blob"].as_u64().unwrap()].clone())
            })
            .collect();
        msgs.sort();
        out.insert(mb["name"].as_str().unwrap().to_string(), msgs);
    }
    out
}

fn mailbox<'a>(dump: &'a Value, account: &str, name: &str) -> &'a Value {
    let acc = dump["accounts"].as_array().unwrap().iter().find(|a| a["name"] == account).expect("account");
    acc["mailboxes"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn import_eml_dir_and_dump_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import_ham(&data);

    let d = dump_json(&data, &[]);
    assert_eq!(d["recovery"]["outcome"], "clean");
    assert_eq!(d["recovery"]["state_source"], "recovery");
    let accounts = d["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["name"], ALICE);
    assert_eq!(accounts[0]["message_count"], 250);
    let names: Vec<&str> =
        accounts[0]["mailboxes"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for n in ["INBOX", "Drafts", "Sent", "Junk", "Trash", "Archive"] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert_eq!(mailbox(&d, ALICE, "Sent")["special_use"], serde_json::json!(["\\Sent"]));
    let inbox = mailbox(&d, ALICE, "INBOX");
    assert_eq!(inbox["message_count"], 250);
    let msgs = inbox["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 250);
    assert_eq!(inbox["uidnext"], 251);
    assert!(inbox["uidvalidity"].as_u64().unwrap() > 0);
    assert!(
        msgs.iter().enumerate().all(|(i, m)| m["uid"] == i as u64 + 1 && m["flags"].as_array().unwrap().is_empty())
    );

    // One blob per distinct body; reference counts add up to the messages.
    let distinct: HashSet<Vec<u8>> =
        fs::read_dir(ham()).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    let blobs = d["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), distinct.len());
    assert_eq!(blobs.iter().map(|b| b["refcount"].as_u64().unwrap()).sum::<u64>(), 250);
    assert!(blobs.iter().all(|b| b["sha256"].as_str().unwrap().len() == 64));
    assert!(blobs.iter().any(|b| b["codec"] == "zstd"));

    // The first message's date is its Date header (Thu, 22 Aug 2002 18:26:25 +0700 style).
    let sizes: u64 = msgs.iter().map(|m| m["size"].as_u64().unwrap()).sum();
    let file_sizes: u64 = fs::read_dir(ham()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(sizes, file_sizes);

    // Threads: every message has one; the corpus' replies share some; nothing was expunged,
    // so every thread given is live.
    let last = accounts[0]["last_thread"].as_u64().unwrap();
    assert_eq!(accounts[0]["live_threads"].as_u64().unwrap(), last);
    assert!(last > 100 && last < 250, "{last} threads");
    assert!(accounts[0]["thread_links"].as_u64().unwrap() >= last);
    let threads: HashSet<u64> = msgs.iter().map(|m| m["thread"].as_u64().unwrap()).collect();
    assert_eq!(threads, (1..=last).collect::<HashSet<u64>>());

    // Segments: every record reads, commits close transactions of the records before them.
    let segs = d["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0]["header"]["segment_id"], 1);
    assert_eq!(segs[0]["header"]["base_lsn"], 1);
    let recs = segs[0]["records"].as_array().unwrap();
    assert!(recs.iter().all(|r| r["crc_ok"] == true));
    let appends = recs.iter().filter(|r| r["kind_name"] == "message-append").count();
    assert_eq!(appends, 250);
    let commits: Vec<&Value> = recs.iter().filter(|r| r["kind_name"] == "commit").collect();
    assert!(!commits.is_empty());
    let committed: u64 = commits.iter().map(|c| c["commit"]["count"].as_u64().unwrap()).sum();
    assert_eq!(committed as usize + commits.len(), recs.len());
    assert!(segs[0]["live_bytes"].as_u64().unwrap() > 0);
    assert!(recs.iter().all(|r| r["kind_name"] == "blob"
        || r["kind_name"] == "meta"
        || r["kind_name"] == "commit"
        || r["account"] == 1));

    // Filters.
    let one = dump_json(&data, &["--mailbox", &format!("{ALICE}/Sent")]);
    assert_eq!(one["accounts"][0]["mailboxes"].as_array().unwrap().len(), 1);
    assert_eq!(one["blobs"].as_array().unwrap().len(), 0);
    let seg = dump_json(&data, &["--segment", "7"]);
    assert!(seg["segments"].as_array().unwrap().is_empty());
    run_code(&["dump", "--data", s(&data), "--account", "nobody@example.test"], 2);

    // Text.
    let t = text(&run_code(&["dump", "--data", s(&data)], 0).stdout);
    for needle in [
        "recovery: clean",
        "segment 1 (seg-0000000000000001.log): base LSN 1",
        "account-create",
        "commit  LSNs 1..7 (7 records) batch 1",
        "account 1 alice@example.test",
        "mailbox 3 \"Sent\" \\Sent",
        "UID 250",
        "blobs: ",
        " thread 1 links ",
        " threads (last id ",
    ] {
        assert!(t.contains(needle), "text dump lacks {needle:?}");
    }
}

#[test]
fn import_maildir_keeps_folders_flags_and_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let md = tmp.path().join("Maildir");
    build_maildir(&md);
    // Without --create-account the account must exist.
    let out = run_code(&["import", "--data", s(&data), "--account", ALICE, "--maildir", s(&md)], 2);
    assert!(text(&out.stderr).contains("--create-account"), "{}", text(&out.stderr));
    run_code(&["account", "add", ALICE, "--data", s(&data)], 0);
    let out = run_code(&["import", "--data", s(&data), "--account", ALICE, "--maildir", s(&md), "--threads", "3"], 0);
    assert!(text(&out.stdout).contains("imported 4 messages"), "{}", text(&out.stdout));

    let d = dump_json(&data, &[]);
    let c = mailbox_contents(&d, ALICE);
    let flags = |mb: &str| c[mb].iter().map(|m| (m.0.clone(), m.1)).collect::<Vec<_>>();
    assert_eq!(flags("INBOX"), vec![(vec![], T0 + 10), (vec!["\\Seen".to_string()], T0)]);
    assert_eq!(flags("Sent"), vec![(vec!["\\Answered".into(), "\\Flagged".into(), "\\Seen".into()], T0 + 20)]);
    assert_eq!(flags("Lists/rust"), vec![(vec!["$Forwarded".into(), "$Junk".into(), "\\Seen".into()], T0 + 30)]);
    assert!(c.contains_key("Lists"), "parent mailbox created: {:?}", c.keys());

    // --mailbox is the root for a Maildir: its INBOX becomes that mailbox.
    let bob = "bob@example.test";
    run_code(
        &["import", "--data", s(&data), "--account", bob, "--maildir", s(&md), "--mailbox", "Old", "--create-account"],
        0,
    );
    let c = mailbox_contents(&dump_json(&data, &[]), bob);
    assert_eq!(c["Old"].len(), 2);
    assert_eq!(c["Old/Sent"].len(), 1);
    assert_eq!(c["Old/Lists/rust"].len(), 1);
    assert_eq!(c["INBOX"].len(), 0);
}

#[test]
fn import_mbox_and_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mbox = tmp.path().join("mail.mbox");
    let mut m = String::new();
    m.push_str("From bob@example.test Tue Nov 14 22:13:20 2023\n");
    m.push_str("Date: Tue, 14 Nov 2023 22:13:20 +0000\nSubject: a\nStatus: RO\n\nfirst\n\n");
    m.push_str("From bob@example.test Tue Nov 14 22:13:30 2023\n");
    m.push_str("Date: Tue, 14 Nov 2023 22:13:30 +0000\nSubject: b\nX-Status: F\n\n>From the body\n\n");
    m.push_str("From bob@example.test Tue Nov 14 22:13:40 2023\n");
    m.push_str("Date: Tue, 14 Nov 2023 22:13:40 +0000\nSubject: c\n\nthird\n");
    fs::write(&mbox, m).unwrap();
    run_code(
        &[
            "import",
            "--data",
            s(&data),
            "--account",
            ALICE,
            "--mbox",
            s(&mbox),
            "--mailbox",
            "Archive/2023",
            "--create-account",
        ],
        0,
    );
    let d = dump_json(&data, &[]);
    let c = mailbox_contents(&d, ALICE);
    let got: Vec<(Vec<String>, i64)> = c["Archive/2023"].iter().map(|m| (m.0.clone(), m.1)).collect();
    assert_eq!(
        got,
        vec![(vec![], T0 + 20), (vec!["\\Flagged".to_string()], T0 + 10), (vec!["\\Seen".to_string()], T0)]
    );
    assert_eq!(
        mailbox(&d, ALICE, "Archive/2023")["messages"][1]["size"],
        "Date: Tue, 14 Nov 2023 22:13:30 +0000\nSubject: b\nX-Status: F\n\nFrom the body\n".len() as u64
    );

    // Bad files are reported and skipped; the rest is imported; exit 1.
    let eml = tmp.path().join("eml");
    fs::create_dir(&eml).unwrap();
    fs::write(eml.join("1.eml"), message("good one")).unwrap();
    fs::write(eml.join("2.eml"), "").unwrap();
    fs::create_dir(eml.join("3.eml")).unwrap();
    fs::write(eml.join("4.eml"), message("good two")).unwrap();
    let out = run_code(&["import", "--data", s(&data), "--account", ALICE, "--eml-dir", s(&eml)], 1);
    let err = text(&out.stderr);
    assert!(err.contains("2.eml") && err.contains("3.eml"), "{err}");
    assert!(text(&out.stdout).contains("imported 2 messages") && text(&out.stdout).contains("2 errors"));
    let d = dump_json(&data, &[]);
    assert_eq!(mailbox(&d, ALICE, "INBOX")["message_count"], 2);
}

/// Flips one byte in the payload of a blob record in the middle of segment 1; returns the
/// record's offset.
fn flip_middle_blob(data: &Path) -> u64 {
    let d = dump_json(data, &[]);
    let recs = d["segments"][0]["records"].as_array().unwrap();
    let blobs: Vec<&Value> = recs.iter().filter(|r| r["kind_name"] == "blob").collect();
    let rec = blobs[blobs.len() / 2];
    let off = rec["offset"].as_u64().unwrap();
    let path = segment(data, 1);
    let mut bytes = fs::read(&path).unwrap();
    bytes[off as usize + 32 + 60] ^= 0x5a;
    fs::write(&path, bytes).unwrap();
    off
}

#[test]
fn check_clean_then_finds_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import_ham(&data);
    let out = run_code(&["check", "--data", s(&data)], 0);
    assert!(text(&out.stdout).contains("check: clean"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("250 messages"), "{}", text(&out.stdout));

    let off = flip_middle_blob(&data);
    let out = run_code(&["check", "--data", s(&data)], 1);
    let o = text(&out.stdout);
    assert!(o.contains(&format!("segment 1 offset {off}: payload checksum mismatch in blob record")), "{o}");
    assert!(o.contains("UID"), "names the affected message: {o}");

    // The snapshot covers the damaged record, so recovery would not see it; without the
    // snapshot, dump reports the corruption recovery would refuse, and reads the rest via
    // salvage.
    assert_eq!(dump_json(&data, &[])["recovery"]["outcome"], "clean");
    fs::remove_file(data.join("index.snap")).unwrap();
    let out = run_code(&["check", "--data", s(&data)], 1);
    assert!(
        text(&out.stdout).contains(&format!("segment 1 offset {off}: the log does not replay")),
        "{}",
        text(&out.stdout)
    );
    let d = dump_json(&data, &[]);
    assert_eq!(d["recovery"]["outcome"], "corrupt");
    assert_eq!(d["recovery"]["corruption"]["segment"], 1);
    assert_eq!(d["recovery"]["corruption"]["offset"], off);
    let bad: Vec<&Value> =
        d["segments"][0]["records"].as_array().unwrap().iter().filter(|r| r["crc_ok"] == false).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["offset"], off);

    // A missing data directory: could not run.
    run_code(&["check", "--data", s(&tmp.path().join("nope"))], 2);
}

#[test]
fn repair_snapshot_and_torn_tail_dry_run_then_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import_ham(&data);
    let seg = segment(&data, 1);
    let good_len = fs::metadata(&seg).unwrap().len();
    let snap = data.join("index.snap");
    let mut sb = fs::read(&snap).unwrap();
    let mid = sb.len() / 2;
    sb[mid] ^= 0xff;
    fs::write(&snap, &sb).unwrap();
    let mut lb = fs::read(&seg).unwrap();
    lb.extend_from_slice(b"PLR1 this is not a record, it is what a torn write left behind");
    fs::write(&seg, &lb).unwrap();
    fs::write(data.join("seg-0000000000000002.log.tmp"), b"half").unwrap();

    run_code(&["check", "--data", s(&data)], 1);
    let out = run_code(&["repair", "--data", s(&data)], 1);
    let o = text(&out.stdout);
    assert!(o.contains("would: remove the snapshot index.snap"), "{o}");
    assert!(
        o.contains(&format!(
            "would: cut the torn final batch: {} bytes of segment 1 from offset {good_len}",
            lb.len() as u64 - good_len
        )),
        "{o}"
    );
    assert!(o.contains("would: remove the leftover temporary file seg-0000000000000002.log.tmp"), "{o}");
    // The dry run changed nothing.
    assert_eq!(fs::read(&seg).unwrap(), lb);
    assert_eq!(fs::read(&snap).unwrap(), sb);
    assert!(data.join("seg-0000000000000002.log.tmp").exists());

    let out = run_code(&["repair", "--data", s(&data), "--apply"], 0);
    assert!(text(&out.stdout).contains("the store opens cleanly"), "{}", text(&out.stdout));
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    assert!(!data.join("seg-0000000000000002.log.tmp").exists());
    assert_ne!(fs::read(&snap).unwrap(), sb);
    run_code(&["check", "--data", s(&data)], 0);
    let out = run_code(&["repair", "--data", s(&data)], 0);
    assert!(text(&out.stdout).contains("nothing to repair"));
    let d = dump_json(&data, &[]);
    assert_eq!(d["recovery"]["snapshot_used"], true);
    assert_eq!(d["accounts"][0]["message_count"], 250);
}

#[test]
fn repair_salvages_damage_in_the_middle_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import_ham(&data);
    fs::remove_file(data.join("index.snap")).unwrap();
    let off = flip_middle_blob(&data);
    let out = run_code(&["repair", "--data", s(&data)], 1);
    let o = text(&out.stdout);
    assert!(o.contains(&format!("the log is corrupt in segment 1 at offset {off}")), "{o}");
    assert!(o.contains("damaged: transaction LSNs") && o.contains("mailbox \"INBOX\": UID"), "{o}");
    assert!(o.contains("249 messages kept"), "{o}");

    // Export from the damaged store: what reads, exit 1.
    let out_dir = tmp.path().join("export");
    run_code(&["export", "--data", s(&data), "--account", ALICE, "--maildir", s(&out_dir)], 1);
    assert_eq!(fs::read_dir(out_dir.join("cur")).unwrap().count(), 249);

    let out = run_code(&["repair", "--data", s(&data), "--apply"], 1);
    assert!(text(&out.stdout).contains("salvaged: the damaged files are in"), "{}", text(&out.stdout));
    run_code(&["check", "--data", s(&data)], 0);
    let d = dump_json(&data, &[]);
    assert_eq!(d["accounts"][0]["message_count"], 249);
    assert!(fs::read_dir(&data).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("damaged-")));
}

#[test]
fn export_and_reimport_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let md = tmp.path().join("Maildir");
    build_maildir(&md);
    run_code(&["import", "--data", s(&data), "--account", ALICE, "--maildir", s(&md), "--create-account"], 0);
    run_code(&["import", "--data", s(&data), "--account", ALICE, "--eml-dir", s(&ham()), "--mailbox", "Ham"], 0);
    let before = mailbox_contents(&dump_json(&data, &[]), ALICE);

    let out_dir = tmp.path().join("export");
    let out = run_code(&["export", "--data", s(&data), "--account", ALICE, "--maildir", s(&out_dir)], 0);
    assert!(text(&out.stdout).contains("exported 254 messages"), "{}", text(&out.stdout));
    assert!(out_dir.join(".Lists.rust").join("cur").is_dir());
    assert!(out_dir.join(".Drafts").is_dir(), "empty mailboxes are exported too");

    let bob = "bob@example.test";
    run_code(&["import", "--data", s(&data), "--account", bob, "--maildir", s(&out_dir), "--create-account"], 0);
    let after = mailbox_contents(&dump_json(&data, &[]), bob);
    assert_eq!(before, after);
    // Same bodies: stored once.
    let d = dump_json(&data, &[]);
    assert!(d["blobs"].as_array().unwrap().iter().all(|b| b["refcount"].as_u64().unwrap() % 2 == 0));
}

#[test]
#[allow(unsafe_code)]
fn serve_holds_the_lock_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import_ham(&data);
    fs::remove_file(data.join("index.snap")).unwrap();
    let config = tmp.path().join("postlog.toml");
    // Every listener off: this test is about the store, and fixed ports could be taken.
    let off: String = postlog_server::config::LISTENERS.iter().map(|k| format!("{k} = \"off\"\n")).collect();
    fs::write(&config, format!("hostname = \"mail.example.test\"\ndata_dir = {:?}\n[listen]\n{off}", s(&data)))
        .unwrap();

    let (mut child, rx) = common::spawn_serve(&config);
    let ready = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("serve did not start")
    });
    assert!(ready.contains("store open") && ready.contains("waiting for SIGTERM"), "{ready}");
    assert!(ready.contains("replayed") && ready.contains("1 accounts, 250 messages"), "{ready}");

    // A second server on the same directory fails at once.
    let second = run(&["serve", "--data", s(&data)]);
    assert_ne!(second.status.code(), Some(0));
    assert!(text(&second.stderr).contains("already in use by another process"), "{}", text(&second.stderr));
    // Read-only tools work meanwhile.
    run_code(&["check", "--data", s(&data)], 0);

    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l.contains("received SIGTERM")), "{rest:?}");

    let store = postlog_engine::Store::open(&data, postlog_engine::Options::default()).unwrap();
    assert!(store.recovery_report().snapshot_used);
    assert_eq!(store.recovery_report().records_replayed, 0);
    // The outbound queue's system account (#queue) aside.
    assert_eq!(store.accounts().iter().filter(|(_, name)| !name.starts_with('#')).count(), 1);
}

#[test]
fn config_keys_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("data_dir = \"x\"\nlisten_imap = \"0.0.0.0:143\"\n", "listen_imap"),
        ("[listen]\nimapp = \"0.0.0.0:143\"\n", "imapp"),
        ("[listen]\nsmtp = \"everywhere:25\"\n", "listen.smtp"),
        ("[listen]\npop3 = 110\n", "listen.pop3"),
        ("hostname = \"no spaces allowed\"\n", "hostname"),
        // The outbound keys name themselves too.
        ("resolver = \"my dns\"\n", "resolver"),
        ("[queue]\nmin_backoff = \"5 parsecs\"\n", "queue.min_backoff"),
        ("[queue]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"\n", "queue.max_backoff"),
        ("[queue]\ntls = \"sometimes\"\n", "queue.tls"),
        (
            "[relay]\nhost = \"smtp.example.net\"\nusername = \"u\"\npassword = \"p\"\ntls = \"opportunistic\"\n",
            "relay.tls",
        ),
        ("[routes]\n\"remote.test\" = { host = \"127.0.0.1:0\" }\n", "routes.\"remote.test\".host"),
        ("[routes]\n\"bad domain\" = \"127.0.0.1:25\"\n", "routes.\"bad domain\""),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("{i}.toml"));
        fs::write(&path, toml).unwrap();
        let out = run_code(&["check", "--config", s(&path)], 2);
        assert!(text(&out.stderr).contains(key), "{toml:?}: {}", text(&out.stderr));
    }
    // A good file: its data_dir is used, and --data overrides it.
    let data = tmp.path().join("from-config");
    let path = tmp.path().join("good.toml");
    fs::write(&path, format!("data_dir = {:?}\n[listen]\nhttp = \"off\"\n", s(&data))).unwrap();
    run_code(&["account", "add", ALICE, "--config", s(&path)], 0);
    assert!(segment(&data, 1).exists());
    let other = tmp.path().join("other");
    run_code(&["account", "add", ALICE, "--config", s(&path), "--data", s(&other)], 0);
    assert!(segment(&other, 1).exists());
    run_code(&["account", "add", "not-an-address", "--data", s(&other)], 2);
}

#[test]
fn check_accepts_a_compacted_store_and_catches_a_snapshot_that_disagrees() {
    use postlog_engine::{AppendTarget, Options, Store};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let options = Options { max_segment_bytes: 64 << 10, ..Options::default() };
        let store = Store::open(&data, options).unwrap();
        let acc = store.create_account(ALICE, &[("Sent", postlog_engine::special_use::SENT)]).unwrap();
        let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
        let mut files: Vec<PathBuf> = fs::read_dir(ham()).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().take(120) {
            let target = AppendTarget { account: acc, mailbox: inbox, flags: 0, keywords: vec![], internal_date: T0 };
            store.append(&fs::read(f).unwrap(), &[target]).unwrap();
        }
        let uids: Vec<u32> = (1..=80).collect();
        store.expunge(acc, inbox, Some(&uids)).unwrap();
        let report = store.compact(0.3).unwrap();
        assert!(!report.segments_dropped.is_empty(), "{report:?}");
        store.close().unwrap();
    }
    assert!(!segment(&data, 1).exists());
    let out = run_code(&["check", "--data", s(&data)], 0);
    assert!(text(&out.stdout).contains("40 messages"), "{}", text(&out.stdout));

    // A snapshot that reads fine but says something the log does not.
    let snap_path = data.join(postlog_engine::snapshot::SNAPSHOT_FILE);
    let mut snap = postlog_engine::snapshot::decode(&fs::read(&snap_path).unwrap()).unwrap();
    let acc = snap.state.accounts.values_mut().next().unwrap();
    let mb = acc.mailboxes.values_mut().find(|m| m.name == "INBOX").unwrap();
    mb.messages[0].flags |= postlog_engine::flag::FLAGGED;
    fs::write(&snap_path, postlog_engine::snapshot::encode(&snap)).unwrap();
    let out = run_code(&["check", "--data", s(&data)], 1);
    assert!(text(&out.stdout).contains("snapshot disagrees with a replay of the whole log"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("UIDs differing: [81]"), "{}", text(&out.stdout));
    let out = run_code(&["repair", "--data", s(&data)], 1);
    assert!(text(&out.stdout).contains("would: remove the snapshot index.snap (it disagrees with the log"));
    run_code(&["repair", "--data", s(&data), "--apply"], 0);
    run_code(&["check", "--data", s(&data)], 0);

    // A snapshot whose thread links are not the log's.
    {
        let store = Store::open(&data, Options::default()).unwrap();
        store.close().unwrap();
    }
    let mut snap = postlog_engine::snapshot::decode(&fs::read(&snap_path).unwrap()).unwrap();
    let acc = snap.state.accounts.values_mut().next().unwrap();
    assert!(acc.threads.last > 0);
    acc.threads.links.insert(42, 1);
    fs::write(&snap_path, postlog_engine::snapshot::encode(&snap)).unwrap();
    let out = run_code(&["check", "--data", s(&data)], 1);
    assert!(text(&out.stdout).contains("thread tables differ"), "{}", text(&out.stdout));
}

/// `store.zstd_level` is what `import` writes with: the same 250 messages take more room at
/// zstd's fastest level than at its strongest, and read back the same.
#[test]
fn import_compresses_at_the_configured_zstd_level() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    let mut dumps = Vec::new();
    for level in [-7, 19] {
        let dir = tmp.path().join(format!("level{level}"));
        let data = dir.join("data");
        let config = dir.join("postlog.toml");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&config, format!("data_dir = {:?}\n[store]\nzstd_level = {level}\n", s(&data))).unwrap();
        let out = run_code(
            &["import", "--config", s(&config), "--account", ALICE, "--eml-dir", s(&ham()), "--create-account"],
            0,
        );
        assert!(text(&out.stdout).contains("imported 250 messages"), "{}", text(&out.stdout));
        sizes.push(fs::metadata(segment(&data, 1)).unwrap().len());
        let export = dir.join("export");
        run_code(&["export", "--data", s(&data), "--account", ALICE, "--maildir", s(&export)], 0);
        // The INBOX of an export is the Maildir root (`cur/`).
        let mut bodies: Vec<Vec<u8>> =
            fs::read_dir(export.join("cur")).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
        bodies.sort();
        dumps.push(bodies);
    }
    assert!(sizes[0] > sizes[1] * 5 / 4, "level -7 wrote {} bytes, level 19 {}", sizes[0], sizes[1]);
    assert_eq!(dumps[0].len(), 250);
    assert_eq!(dumps[0], dumps[1], "the two stores read back differently");
}

/// A store that trained its zstd dictionary: `dump --json` lists it with the blobs that use
/// it, `check` is clean; with its file damaged, `check` reports it and exits non-zero, and
/// `export` skips (and names) exactly the messages compressed with it.
#[test]
fn dictionary_in_dump_check_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("postlog.toml");
    let spam = ham().parent().unwrap().join("spam");
    fs::write(
        &config,
        format!("data_dir = {:?}\n[store]\ndictionary_min_samples = 100\ndictionary_min_bytes = \"64K\"\n", s(&data)),
    )
    .unwrap();
    // The first import trains after 100 messages (the file is written before it ends); the
    // second opens the store with the dictionary and compresses every body with it.
    for dir in [ham(), spam] {
        let out = run_code(
            &["import", "--config", s(&config), "--account", ALICE, "--eml-dir", s(&dir), "--create-account"],
            0,
        );
        assert!(text(&out.stdout).contains("imported"), "{}", text(&out.stdout));
    }
    let dict = data.join("dict-00008001.zdict");
    assert!(dict.exists());
    let dump = dump_json(&data, &[]);
    let dicts = dump["dictionaries"].as_array().unwrap();
    assert_eq!(dicts.len(), 1, "{dicts:?}");
    let d = &dicts[0];
    assert_eq!((d["id"].as_u64(), d["id_hex"].as_str()), (Some(0x8001), Some("0x8001")));
    assert_eq!(d["file"], "dict-00008001.zdict");
    assert_eq!(d["crc_ok"], true);
    assert_eq!(d["bytes"].as_u64(), Some(fs::metadata(&dict).unwrap().len()));
    let with_dict = dump["blobs"].as_array().unwrap().iter().filter(|b| b["codec"] == "zstd-dict").count() as u64;
    assert!(with_dict >= 45, "{with_dict} blobs with the dictionary");
    assert_eq!(d["blobs"].as_u64(), Some(with_dict));
    let text_dump = run_code(&["dump", "--data", s(&data)], 0);
    assert!(text(&text_dump.stdout).contains("dictionary 0x8001 (dict-00008001.zdict)"), "{}", text(&text_dump.stdout));
    run_code(&["check", "--data", s(&data)], 0);
    let export = tmp.path().join("export");
    let out = run_code(&["export", "--data", s(&data), "--account", ALICE, "--maildir", s(&export)], 0);
    assert!(text(&out.stdout).contains("exported 300 messages"), "{}", text(&out.stdout));

    // A flipped byte in the dictionary's body.
    let mut bytes = fs::read(&dict).unwrap();
    let n = bytes.len();
    bytes[n - 1000] ^= 0x01;
    fs::write(&dict, &bytes).unwrap();
    let out = run_code(&["check", "--data", s(&data)], 1);
    let report = text(&out.stdout);
    assert!(report.contains("dictionary 0x8001 (dict-00008001.zdict) is unusable: body checksum"), "{report}");
    assert!(report.contains("body unreadable") && report.contains("dictionary 0x8001"), "{report}");
    let dump = dump_json(&data, &[]);
    assert_eq!(dump["dictionaries"][0]["crc_ok"], false);
    assert!(dump["dictionaries"][0]["problem"].as_str().unwrap().contains("CRC-32C"));
    let export = tmp.path().join("export2");
    let out = run_code(&["export", "--data", s(&data), "--account", ALICE, "--maildir", s(&export)], 1);
    let skipped =
        text(&out.stderr).lines().filter(|l| l.contains("skipped") && l.contains("dictionary 0x8001")).count();
    assert_eq!(skipped as u64, with_dict, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("exported {} messages", 300 - with_dict))
            && text(&out.stdout).contains(&format!("{with_dict} skipped")),
        "{}",
        text(&out.stdout)
    );
}
