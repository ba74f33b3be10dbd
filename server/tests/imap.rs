//! IMAP end to end: the real `postlog serve` on loopback, driven by Python's imaplib (and a
//! raw socket for IDLE) in `clients/imap_clients.py`, with mail delivered over SMTP.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{Server, run_ok, s, text};

fn setup(dir: &Path) {
    let data = dir.join("data");
    let run = |args: &[&str], stdin: Option<&str>| run_ok(&data, args, stdin);
    run(&["domain", "add", "example.test"], None);
    run(&["user", "add", "alice@example.test", "--password-stdin"], Some("alice-secret"));
    run(&["user", "add", "bob@example.test", "--password-stdin"], Some("bob-secret"));
    run(&["user", "add", "carol@example.test", "--password-stdin"], Some("carol-secret"));
}

fn python(server: &Server, scenario: &str) -> String {
    common::python_scenario("imap_clients.py", server, scenario)
}

#[test]
fn imaplib_reads_flags_searches_moves_and_appends() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    run_ok(&tmp.path().join("data"), &["user", "quota", "alice@example.test", "1M"], None);
    let server = Server::start(tmp.path(), "");
    python(&server, "basics");
    python(&server, "authorization");
    python(&server, "qresync");
    python(&server, "sort_thread");
    python(&server, "compress");
    eprintln!("{}", python(&server, "model").trim());
    let idle = python(&server, "idle");
    eprintln!("{}", idle.trim());
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

/// OBJECTID (RFC 8474): a thread of three appended messages and an unrelated one get their
/// THREADIDs from the store; SEARCH THREADID and EMAILID find them, COPY and MOVE keep them,
/// and a reply delivered later over SMTP joins the thread.
#[test]
fn threadid_and_emailid_fetch_and_search() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    python(&server, "threadid");
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

/// A FETCH answer of about 700 KB (written out in pieces as it is rendered) reaches Python's
/// imaplib whole and in order, PEEK and non-PEEK.
#[test]
fn a_big_fetch_arrives_whole() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    python(&server, "big_fetch");
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

/// LIST-EXTENDED, RECURSIVEMATCH, LIST-STATUS, SPECIAL-USE and LSUB: the exact untagged lines
/// of the RFC 5258 section 5 examples (and RFC 3501's LSUB example) on a fresh account.
#[test]
fn list_extended_answers_the_rfc_5258_examples() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    run_ok(&tmp.path().join("data"), &["user", "add", "dave@example.test", "--password-stdin"], Some("dave-secret"));
    let server = Server::start(tmp.path(), "");
    python(&server, "list_extended");
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

/// imapclient (PyPI): login, capabilities, folders and special uses, CONDSTORE, APPEND, FETCH
/// (ENVELOPE, BODYSTRUCTURE, BODY.PEEK[], MODSEQ, CHANGEDSINCE), SEARCH with CHARSET UTF-8, SORT,
/// THREAD, IDLE woken by a delivery, COPY, MOVE, UID EXPUNGE, QUOTA, NAMESPACE, ID, ENABLE,
/// UNSELECT, in `clients/imapclient_clients.py`.
#[test]
fn imapclient_does_everything_it_offers() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    run_ok(&data, &["user", "add", "erin@example.test", "--password-stdin"], Some("erin-secret"));
    run_ok(&data, &["user", "quota", "erin@example.test", "10M"], None);
    let server = Server::start(tmp.path(), "");
    common::python_scenario("imapclient_clients.py", &server, "everything");
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

/// Maildir files of a folder, sorted.
fn maildir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("cur"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("new")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn mbsync(config: &Path, debug: bool) -> String {
    let mut c = Command::new("mbsync");
    c.arg("-c").arg(config).arg("-a");
    if debug {
        c.arg("-D");
    }
    let out = c.output().expect("mbsync runs (scripts/test.sh installs isync)");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "mbsync failed:\n{all}");
    assert!(!all.contains("IMAP error") && !all.contains("Error:"), "{all}");
    all
}

fn server_state(server: &Server) -> serde_json::Value {
    let out = python(server, "mbsync_server_state");
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

#[test]
fn mbsync_two_way_sync_with_changes_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    // A local Maildir with the test corpus.
    let inbox = tmp.path().join("mail/INBOX");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(inbox.join(sub)).unwrap();
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus");
    let mut n = 0;
    for kind in ["ham", "spam"] {
        for e in std::fs::read_dir(corpus.join(kind)).unwrap() {
            n += 1;
            std::fs::copy(e.unwrap().path(), inbox.join(format!("cur/1700000000.{n}.host:2,"))).unwrap();
        }
    }
    assert_eq!(n, 300);
    let config = tmp.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount postlog\nHost 127.0.0.1\nPort {}\nUser alice@example.test\nPass alice-secret\n\
             SSLType None\nAuthMechs PLAIN\n\nIMAPStore remote\nAccount postlog\n\nMaildirStore local\n\
             Path {}/\nInbox {}\nSubFolders Verbatim\n\nChannel sync\nFar :remote:\nNear :local:\n\
             Patterns *\nCreate Both\nSyncState *\nSync All\nExpunge Both\n",
            server.ports["imap"],
            s(&tmp.path().join("mail")),
            s(&inbox),
        ),
    )
    .unwrap();

    // First run: everything goes up.
    mbsync(&config, false);
    assert_eq!(server_state(&server)["count"], 300);
    assert_eq!(maildir(&inbox).len(), 300);

    // Changes on both sides: the server flags 10, expunges 5, gets 5 new; locally 20 are
    // read and 5 deleted.
    python(&server, "mbsync_server_changes");
    let files = maildir(&inbox);
    for f in &files[100..120] {
        let name = f.to_str().unwrap();
        assert!(name.ends_with(":2,"), "{name}");
        std::fs::rename(f, format!("{name}S")).unwrap();
    }
    for f in &files[200..205] {
        std::fs::remove_file(f).unwrap();
    }
    mbsync(&config, false);
    let state = server_state(&server);
    assert_eq!(state["count"], 295, "{state}");
    assert_eq!(state["seen"], 20, "{state}");
    assert_eq!(state["flagged"], 10, "{state}");
    let local = maildir(&inbox);
    assert_eq!(local.len(), 295);
    let flagged = local.iter().filter(|p| p.to_str().unwrap().rsplit(":2,").next().unwrap().contains('F')).count();
    assert_eq!(flagged, 10);

    // Third run: nothing to transfer.
    let log = mbsync(&config, true);
    for needle in ["UID STORE", " APPEND ", "BODY.PEEK[]", " EXPUNGE"] {
        assert!(!log.contains(needle), "{needle} in a run that should transfer nothing:\n{log}");
    }
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn plain_text_logins_need_tls_when_loopback_does_not_count() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "[auth]\nplaintext_on_loopback = false\n");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", server.ports["imap"])).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.contains(" LOGINDISABLED") && greeting.contains(" STARTTLS"), "{greeting}");
    assert!(!greeting.contains("AUTH=PLAIN") && greeting.contains("AUTH=SCRAM-SHA-256"), "{greeting}");
    w.write_all(b"a LOGIN alice@example.test alice-secret\r\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("a NO [PRIVACYREQUIRED]"), "{line}");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

fn deliver_corpus(server: &Server, to: &str, n: usize) {
    let script = format!(
        "import smtplib, glob, sys\nfiles = sorted(glob.glob('{}/*/*'))[:{n}]\n\
         s = smtplib.SMTP('127.0.0.1', {})\nfor f in files:\n    s.sendmail('x@remote.test', ['{to}'], open(f, 'rb').read().replace(b'\\r\\n', b'\\n').replace(b'\\n', b'\\r\\n'))\ns.quit()\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/corpus"),
        server.ports["smtp"],
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn offlineimap_and_fetchmail_retrieve_the_mail() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    deliver_corpus(&server, "alice@example.test", 120);
    deliver_corpus(&server, "bob@example.test", 80);
    let port = server.ports["imap"];

    // offlineimap: a one-shot sync of alice's folders into a Maildir.
    let mail = tmp.path().join("offlineimap-mail");
    let config = tmp.path().join("offlineimaprc");
    std::fs::write(
        &config,
        format!(
            "[general]\naccounts = A\nmetadata = {meta}\n\n[Account A]\nlocalrepository = L\nremoterepository = R\n\n\
             [Repository L]\ntype = Maildir\nlocalfolders = {mail}\n\n[Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\n\
             remoteport = {port}\nremoteuser = alice@example.test\nremotepass = alice-secret\nssl = no\nstarttls = no\n",
            meta = s(&tmp.path().join("offlineimap-meta")),
            mail = s(&mail),
        ),
    )
    .unwrap();
    let out = Command::new("offlineimap")
        .args(["-c", s(&config), "-o", "-u", "basic"])
        .output()
        .expect("offlineimap runs (scripts/test.sh installs offlineimap3)");
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && !log.contains("ERROR"), "{log}");
    let count = |dir: &Path| {
        ["cur", "new"].iter().map(|d| std::fs::read_dir(dir.join(d)).map_or(0, |r| r.count())).sum::<usize>()
    };
    assert_eq!(count(&mail.join("INBOX")), 120, "{log}");
    for folder in ["Drafts", "Sent", "Junk", "Trash", "Archive"] {
        assert!(mail.join(folder).is_dir(), "{folder} synced: {log}");
    }

    // fetchmail: bob's mail fetched over IMAP and deleted from the server.
    let rc = tmp.path().join("fetchmailrc");
    let bsmtp = tmp.path().join("fetched.bsmtp");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\npoll 127.0.0.1 protocol IMAP port {port} user \"bob@example.test\" password \"bob-secret\" \
             options fetchall nokeep sslproto ''\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .args(["-f", s(&rc), "--bsmtp", s(&bsmtp), "--nodetach", "--nosyslog"])
        .env("HOME", tmp.path())
        .output()
        .expect("fetchmail runs (scripts/test.sh installs it)");
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{log}");
    let fetched = text(&std::fs::read(&bsmtp).unwrap());
    assert_eq!(fetched.matches("\nMAIL FROM:").count() + usize::from(fetched.starts_with("MAIL FROM:")), 80, "{log}");
    let state = {
        let script = format!(
            "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {port})\nm.login('bob@example.test', 'bob-secret')\nprint(m.select('INBOX')[1][0].decode())\n"
        );
        let out = Command::new("python3").args(["-c", &script]).output().unwrap();
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(state, "0", "fetchmail deleted what it fetched");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

/// Runs `tmux` with a private socket under `dir`.
fn tmux(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(dir.join("tmux.sock"))
        .args(args)
        .output()
        .expect("tmux runs (scripts/test.sh installs it)");
    text(&out.stdout)
}

#[test]
fn neomutt_under_tmux_lists_reads_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    deliver_corpus(&server, "alice@example.test", 5);
    let muttrc = tmp.path().join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set folder = \"imap://alice%40example.test@127.0.0.1:{port}/\"\nset imap_pass = \"alice-secret\"\n\
             set spoolfile = \"+INBOX\"\nset ssl_starttls = no\nset ssl_force_tls = no\nset sort = date\n\
             set mail_check = 1\nset timeout = 1\nset confirmappend = no\nset delete = yes\nset quit = yes\n\
             set header_cache = \"\"\nset message_cachedir = \"\"\nset index_format = \"%4C %-20.20F %s\"\n",
            port = server.ports["imap"]
        ),
    )
    .unwrap();
    let cmd = format!("neomutt -n -F {}", s(&muttrc));
    tmux(tmp.path(), &["new-session", "-d", "-x", "160", "-y", "40", &cmd]);
    let screen = |stage: &str, pred: &dyn Fn(&str) -> bool| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let shown = tmux(tmp.path(), &["capture-pane", "-p"]);
            if pred(&shown) {
                return shown;
            }
            assert!(std::time::Instant::now() < deadline, "neomutt never showed {stage}; screen:\n{shown}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    // The index lists the five messages.
    let listed = |s: &str| s.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count();
    let shown = screen("the index", &|s| listed(s) >= 5 && s.contains("New Sequences Window"));
    assert!(shown.contains("INBOX"), "{shown}");
    // Open the first message, back to the index, delete it, sync ($).
    tmux(tmp.path(), &["send-keys", "Enter"]);
    screen("a message", &|s| s.contains("Subject:") || s.contains("From:"));
    tmux(tmp.path(), &["send-keys", "q"]);
    screen("the index again", &|s| listed(s) >= 5);
    tmux(tmp.path(), &["send-keys", "d", "$"]);
    // The first message (by date) is gone from the index once neomutt synced.
    screen("the index after the delete", &|s| !s.contains("New Sequences Window") && s.contains("Moscow bomber"));
    tmux(tmp.path(), &["send-keys", "q"]);
    tmux(tmp.path(), &["kill-server"]);
    let script = format!(
        "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {})\nm.login('alice@example.test', 'alice-secret')\n\
         print(m.select('INBOX')[1][0].decode(), m.search(None, 'SEEN')[1][0].decode())\n",
        server.ports["imap"]
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "4", "the deletion reached the server: {}", text(&out.stderr));
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0));
    assert!(log.iter().any(|l| l.contains("authenticated") && l.contains("alice@example.test")), "{log:?}");
}
