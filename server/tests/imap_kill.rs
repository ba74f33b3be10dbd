//! IMAP writes under SIGKILL: four kinds of clients (APPEND, STORE, MOVE, EXPUNGE) run
//! against the real `postlog serve` until it is killed; the store is then opened and every
//! write whose tagged `OK` a client got must be there, whole, and nothing half-done may be
//! (a moved message is in exactly one of its two mailboxes).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, run_ok, s, text};
use postlog_engine::state::flag;
use postlog_engine::{Options, Store};

const USER: &str = "alice@example.test";
const SEEDED: usize = 1500;
/// Each client has this many operations acknowledged when the server is killed (well below
/// SEEDED, so none has run out).
const KILL_AFTER: usize = 100;

/// A minimal IMAP client: one command at a time, no literals in what it reads.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    n: u32,
}

impl Imap {
    fn login(port: u16) -> Option<Imap> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let mut c = Imap { w: s.try_clone().ok()?, r: BufReader::new(s), n: 0 };
        c.line()?;
        let (ok, _) = c.cmd(&format!("LOGIN {USER} alice-secret"))?;
        ok.then_some(c)
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        (self.r.read_line(&mut line).ok()? > 0).then_some(line)
    }

    /// Sends one command (`extra` is written right after its line: a LITERAL+ literal);
    /// returns whether it ended `OK`, and the tagged line. `None` once the connection broke.
    fn send(&mut self, command: &str, extra: &[u8]) -> Option<(bool, String)> {
        self.n += 1;
        let tag = format!("k{}", self.n);
        let mut out = format!("{tag} {command}\r\n").into_bytes();
        out.extend_from_slice(extra);
        self.w.write_all(&out).ok()?;
        loop {
            let line = self.line()?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return Some((rest.starts_with("OK"), line));
            }
        }
    }

    fn cmd(&mut self, command: &str) -> Option<(bool, String)> {
        self.send(command, b"")
    }

    /// The UIDs of the selected mailbox, ascending.
    fn uids(&mut self) -> Vec<u32> {
        self.n += 1;
        let tag = format!("k{}", self.n);
        self.w.write_all(format!("{tag} UID SEARCH ALL\r\n").as_bytes()).unwrap();
        let mut uids = Vec::new();
        loop {
            let line = self.line().unwrap();
            if let Some(rest) = line.strip_prefix("* SEARCH") {
                uids.extend(rest.split_whitespace().map(|u| u.parse::<u32>().unwrap()));
            }
            if line.starts_with(&tag) {
                assert!(line.contains(" OK"), "{line}");
                return uids;
            }
        }
    }
}

/// The number after `name ` in a response code such as `[APPENDUID 1 2]` (the last one).
fn last_number(line: &str) -> u32 {
    let code = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    code.split_whitespace().last().unwrap().parse().unwrap()
}

/// What each client got acknowledged before the kill.
#[derive(Default)]
struct Acked {
    /// Appended subject -> UID in INBOX.
    appended: HashMap<String, u32>,
    /// UIDs flagged in `store`.
    flagged: Vec<u32>,
    /// UIDs moved from `move` to `moved`.
    moved: Vec<u32>,
    /// UIDs expunged from `expunge`.
    expunged: Vec<u32>,
}

fn appender(port: u16, progress: &AtomicUsize) -> Acked {
    let mut acked = Acked::default();
    let Some(mut c) = Imap::login(port) else { return acked };
    for i in 0.. {
        let subject = format!("appended-{i}");
        let message = format!("Subject: {subject}\r\nFrom: a@example.test\r\n\r\n{}", "appended line\r\n".repeat(30));
        let mut literal = message.into_bytes();
        literal.extend_from_slice(b"\r\n");
        let command = format!("APPEND INBOX (\\Seen) {{{}+}}", literal.len() - 2);
        match c.send(&command, &literal) {
            Some((true, line)) => {
                acked.appended.insert(subject, last_number(&line));
                progress.fetch_add(1, Ordering::Relaxed);
            }
            _ => break,
        }
    }
    acked
}

/// Selects `mailbox` and runs `op` on each of its UIDs in turn, keeping those acknowledged.
fn each_uid(port: u16, mailbox: &str, progress: &AtomicUsize, op: impl Fn(&mut Imap, u32) -> Option<bool>) -> Vec<u32> {
    let mut done = Vec::new();
    let Some(mut c) = Imap::login(port) else { return done };
    if c.cmd(&format!("SELECT {mailbox}")).is_none_or(|(ok, _)| !ok) {
        return done;
    }
    for uid in c.uids() {
        match op(&mut c, uid) {
            Some(true) => {
                done.push(uid);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Some(false) => panic!("{mailbox}: UID {uid} refused"),
            None => break,
        }
    }
    done
}

fn seed(dir: &Path, data: &Path, mailbox: &str) {
    let eml = dir.join(format!("seed-{mailbox}"));
    std::fs::create_dir_all(&eml).unwrap();
    for i in 0..SEEDED {
        let body = format!("Subject: {mailbox}-{i}\r\nFrom: seed@example.test\r\n\r\n{}", "seed line\r\n".repeat(20));
        std::fs::write(eml.join(format!("{i:05}.eml")), body).unwrap();
    }
    run_ok(data, &["import", "--account", USER, "--eml-dir", s(&eml), "--mailbox", mailbox], None);
}

/// Subject of each message of `mailbox`, by UID, with its flags.
fn contents(store: &Store, mailbox: &str) -> HashMap<u32, (String, u8)> {
    let account = store.account_id(USER).unwrap();
    let mailbox = store.mailbox_by_name(account, mailbox).unwrap().id;
    let mut out = HashMap::new();
    for m in store.messages(account, mailbox).unwrap() {
        let raw = text(&store.read_message(account, mailbox, m.uid).unwrap());
        let subject = raw.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string();
        out.insert(m.uid, (subject, m.flags));
    }
    out
}

#[test]
fn a_kill_during_imap_writes_loses_no_acknowledged_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok(&data, &["domain", "add", "example.test"], None);
    run_ok(&data, &["user", "add", USER, "--password-stdin"], Some("alice-secret"));
    for mailbox in ["store", "move", "expunge"] {
        seed(tmp.path(), &data, mailbox);
    }

    let mut server = Server::start(tmp.path(), "");
    let port = server.ports["imap"];
    let (created, _) = Imap::login(port).expect("login").cmd("CREATE moved").unwrap();
    assert!(created, "CREATE moved");
    // Acknowledged operations per client, so the kill lands while all four are busy, whatever
    // the machine's speed.
    let progress: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let p = progress.clone();
    let appending = std::thread::spawn(move || appender(port, &p[0]));
    let p = progress.clone();
    let storing = std::thread::spawn(move || {
        each_uid(port, "store", &p[1], |c, uid| Some(c.cmd(&format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"))?.0))
    });
    let p = progress.clone();
    let moving = std::thread::spawn(move || {
        each_uid(port, "move", &p[2], |c, uid| Some(c.cmd(&format!("UID MOVE {uid} moved"))?.0))
    });
    let p = progress.clone();
    let expunging = std::thread::spawn(move || {
        each_uid(port, "expunge", &p[3], |c, uid| {
            let (ok, _) = c.cmd(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
            if !ok {
                return Some(false);
            }
            Some(c.cmd(&format!("UID EXPUNGE {uid}"))?.0)
        })
    });
    let started = Instant::now();
    while progress.iter().any(|n| n.load(Ordering::Relaxed) < KILL_AFTER) {
        assert!(started.elapsed() < Duration::from_secs(60), "the clients did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut child = server.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = Acked {
        appended: appending.join().unwrap().appended,
        flagged: storing.join().unwrap(),
        moved: moving.join().unwrap(),
        expunged: expunging.join().unwrap(),
    };
    eprintln!(
        "acknowledged before the kill: {} appends, {} stores, {} moves, {} expunges",
        acked.appended.len(),
        acked.flagged.len(),
        acked.moved.len(),
        acked.expunged.len()
    );
    for (what, n) in [
        ("appends", acked.appended.len()),
        ("stores", acked.flagged.len()),
        ("moves", acked.moved.len()),
        ("expunges", acked.expunged.len()),
    ] {
        assert!(n >= 10, "the load ran before the kill: {n} {what} acknowledged");
    }

    // `postlog check` finds the store clean, and every acknowledged change is there.
    let check = common::postlog().args(["check", "--data", s(&data)]).output().unwrap();
    assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
    let store = Store::open(&data, Options::default()).unwrap();

    let inbox = contents(&store, "INBOX");
    for (subject, uid) in &acked.appended {
        let (stored, flags) =
            inbox.get(uid).unwrap_or_else(|| panic!("acknowledged append {subject} (UID {uid}) lost"));
        assert_eq!(stored, subject, "UID {uid} holds another message");
        assert_eq!(*flags & flag::SEEN, flag::SEEN, "{subject} lost its \\Seen");
    }
    assert!(inbox.len() <= acked.appended.len() + 1, "{} in INBOX, {} acknowledged", inbox.len(), acked.appended.len());

    let store_box = contents(&store, "store");
    assert_eq!(store_box.len(), SEEDED);
    for uid in &acked.flagged {
        assert_eq!(store_box[uid].1 & flag::FLAGGED, flag::FLAGGED, "acknowledged STORE on UID {uid} lost");
    }
    let flagged = store_box.values().filter(|(_, f)| f & flag::FLAGGED != 0).count();
    assert!(flagged <= acked.flagged.len() + 1, "{flagged} flagged, {} acknowledged", acked.flagged.len());

    // Every message of `move` is in exactly one of `move` and `moved`, and the acknowledged
    // moves are in `moved`.
    let source = contents(&store, "move");
    let target = contents(&store, "moved");
    for uid in &acked.moved {
        assert!(!source.contains_key(uid), "acknowledged MOVE of UID {uid} still in the source");
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (subject, _) in source.values().chain(target.values()) {
        *seen.entry(subject.as_str()).or_default() += 1;
    }
    for i in 0..SEEDED {
        let subject = format!("move-{i}");
        assert_eq!(seen.get(subject.as_str()), Some(&1), "{subject} is not in exactly one mailbox");
    }
    let moved_in_target = target.len();
    assert!(
        moved_in_target >= acked.moved.len(),
        "{moved_in_target} in the target, {} acknowledged",
        acked.moved.len()
    );
    assert!(moved_in_target <= acked.moved.len() + 1);

    let expunge = contents(&store, "expunge");
    for uid in &acked.expunged {
        assert!(!expunge.contains_key(uid), "acknowledged EXPUNGE of UID {uid} undone");
    }
    let gone = SEEDED - expunge.len();
    assert!(
        gone == acked.expunged.len() || gone == acked.expunged.len() + 1,
        "{gone} gone, {} acknowledged",
        acked.expunged.len()
    );
    drop(store);

    // The server starts again on the same data and serves what is there.
    let server = Server::start(tmp.path(), "");
    let mut c = Imap::login(server.ports["imap"]).expect("login after the restart");
    let (ok, _) = c.cmd("SELECT INBOX").unwrap();
    assert!(ok);
    assert_eq!(c.uids().len(), inbox.len());
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}
