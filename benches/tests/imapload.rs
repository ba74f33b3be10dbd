//! Runs the `imapload` binary against a small fake IMAP server (and a fake SMTP server that
//! delivers into it, for `idle`) on loopback, and checks that the JSON line reports what the
//! fake server served: operations, messages, bytes, errors by status, lost connections,
//! reconnections and exit statuses. The fake server sends literals in awkward places (CRLFs,
//! tagged-looking lines and `{n}` inside them) and writes its FETCH answers in small pieces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;

const PASSWORD: &str = "secret";
/// What `SELECT ... (QRESYNC ...)` reports: three vanished UIDs and two changed messages.
const QRESYNC_CHANGES: u64 = 5;

/// A message of the fake mailbox: a body that looks like IMAP responses inside.
fn body(uid: u32) -> String {
    format!(
        "Subject: message {uid}\r\nFrom: a@x.test\r\n\r\nline one\r\n* {uid} EXISTS\r\na1 OK tricky\r\n{{5}}\r\n)\r\n"
    )
}

#[derive(Default)]
struct Mailbox {
    uids: Vec<u32>,
    next_uid: u32,
    deleted: Vec<u32>,
}

/// What the fake server saw.
#[derive(Default)]
struct Log {
    logins: Mutex<BTreeMap<String, u64>>,
    connections: AtomicU64,
    syncs: AtomicU64,
    body_fetches: AtomicU64,
    searches: AtomicU64,
    uid_stores: AtomicU64,
    seq_stores: AtomicU64,
    qresync_selects: AtomicU64,
    expunges: AtomicU64,
    idles: AtomicU64,
    deliveries: AtomicU64,
}

struct State {
    mailbox: Mutex<Mailbox>,
    log: Log,
    /// The new message count after each delivery, for sessions in IDLE.
    delivered: broadcast::Sender<u32>,
}

struct Fake {
    /// Serves the fake servers until the test ends.
    _runtime: Runtime,
    imap: SocketAddr,
    smtp: SocketAddr,
    state: Arc<State>,
}

impl Fake {
    fn start(messages: u32) -> Fake {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let imap_listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let smtp_listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let (imap, smtp) = (imap_listener.local_addr().unwrap(), smtp_listener.local_addr().unwrap());
        let mailbox = Mailbox { uids: (1..=messages).collect(), next_uid: messages + 1, deleted: vec![] };
        let state =
            Arc::new(State { mailbox: Mutex::new(mailbox), log: Log::default(), delivered: broadcast::channel(64).0 });
        let imap_state = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = imap_listener.accept().await else { return };
                imap_state.log.connections.fetch_add(1, Ordering::Relaxed);
                let state = Arc::clone(&imap_state);
                tokio::spawn(async move {
                    let _ = serve_imap(stream, &state).await;
                });
            }
        });
        let smtp_state = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = smtp_listener.accept().await else { return };
                let state = Arc::clone(&smtp_state);
                tokio::spawn(async move {
                    let _ = serve_smtp(stream, &state).await;
                });
            }
        });
        Fake { _runtime: runtime, imap, smtp, state }
    }

    /// Runs imapload against the fake with `--json --quiet`, the password and `args`; returns
    /// its exit code and JSON line.
    fn run(&self, args: &[&str]) -> (i32, Value) {
        let server = self.imap.to_string();
        let output = imapload(&[&["--server", &server, "--password", PASSWORD, "--json", "--quiet"], args].concat());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", stderr(&output)));
        let json = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        (output.status.code().expect("imapload exited by a signal"), json)
    }

    fn count(&self, counter: impl Fn(&Log) -> &AtomicU64) -> u64 {
        counter(&self.state.log).load(Ordering::Relaxed)
    }

    fn logins(&self) -> BTreeMap<String, u64> {
        self.state.log.logins.lock().unwrap().clone()
    }

    fn messages(&self) -> usize {
        self.state.mailbox.lock().unwrap().uids.len()
    }
}

fn imapload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imapload")).args(args).output().expect("cannot run imapload")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The quoted strings of a command line, unescaped.
fn quoted_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.push(value);
    }
    out
}

/// `a:b`, `a`, `a:*` against the highest value `max`.
fn parse_range(set: &str, max: u32) -> (u32, u32) {
    let bound = |s: &str| if s == "*" { max } else { s.parse().unwrap() };
    let (a, b) = set.split_once(':').map_or_else(|| (bound(set), bound(set)), |(a, b)| (bound(a), bound(b)));
    (a.min(b), a.max(b))
}

/// Writes `bytes` in pieces of 61 bytes, so that responses and literals cross reads.
async fn write_in_pieces(write: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    for piece in bytes.chunks(61) {
        write.write_all(piece).await?;
        write.flush().await?;
    }
    Ok(())
}

async fn serve_imap(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE ENABLE QRESYNC] fake ready\r\n").await?;
    let mut line = String::new();
    let mut qresync = false;
    // The message count this session was told.
    let mut told = 0;
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        assert!(line.ends_with("\r\n"), "command without CRLF: {line:?}");
        let command = line.trim_end().to_owned();
        let (tag, rest) = command.split_once(' ').expect("a tag");
        let upper = rest.to_ascii_uppercase();
        let words: Vec<&str> = rest.split(' ').collect();
        let mut out = String::new();
        if upper.starts_with("LOGIN ") {
            let args = quoted_args(rest);
            if args.get(1).map(String::as_str) == Some(PASSWORD) {
                *state.log.logins.lock().unwrap().entry(args[0].clone()).or_default() += 1;
                out = format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] LOGIN done\r\n");
            } else {
                out = format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
            }
        } else if upper.starts_with("SELECT ") {
            if quoted_args(rest).first().map(String::as_str) != Some("INBOX") {
                out = format!("{tag} NO [NONEXISTENT] no such mailbox\r\n");
            } else {
                told = state.mailbox.lock().unwrap().uids.len();
                out += &format!("* FLAGS (\\Seen \\Flagged \\Deleted)\r\n* {told} EXISTS\r\n");
                out += "* OK [UIDVALIDITY 7] UIDs valid\r\n* OK [HIGHESTMODSEQ 99] modseq\r\n";
                if upper.contains("(QRESYNC (7 99))") {
                    assert!(qresync, "SELECT with QRESYNC before ENABLE QRESYNC");
                    state.log.qresync_selects.fetch_add(1, Ordering::Relaxed);
                    out += "* VANISHED (EARLIER) 1:3\r\n* 1 FETCH (UID 4 FLAGS () MODSEQ (100))\r\n";
                    out += "* 2 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (101))\r\n";
                }
                out += &format!("{tag} OK [READ-WRITE] SELECT done\r\n");
            }
        } else if upper == "ENABLE QRESYNC" {
            qresync = true;
            out = format!("* ENABLED QRESYNC\r\n{tag} OK ENABLE done\r\n");
        } else if upper.starts_with("UID FETCH ") {
            let uids = state.mailbox.lock().unwrap().uids.clone();
            let (lo, hi) = parse_range(words[2], uids.last().copied().unwrap_or(0));
            let bodies = upper.contains("BODY.PEEK[]");
            if bodies {
                state.log.body_fetches.fetch_add(1, Ordering::Relaxed);
            } else {
                state.log.syncs.fetch_add(1, Ordering::Relaxed);
            }
            for (i, &uid) in uids.iter().enumerate().filter(|(_, u)| (lo..=hi).contains(*u)) {
                let (seq, body) = (i + 1, body(uid));
                if bodies {
                    out += &format!("* {seq} FETCH (UID {uid} BODY[] {{{}}}\r\n{body})\r\n", body.len());
                } else {
                    // A subject literal with a CRLF, a tagged-looking line and a `{3}` in it.
                    let subject = format!("message {uid}\r\n{tag} OK not yet {{3}}");
                    out += &format!(
                        "* {seq} FETCH (UID {uid} FLAGS () RFC822.SIZE {} INTERNALDATE \"01-Jan-2026 00:00:00 +0000\" \
                         ENVELOPE (\"Thu, 1 Jan 2026 00:00:00 +0000\" {{{}}}\r\n{subject} ((\"A\" NIL \"a\" \"x.test\")) \
                         NIL NIL NIL NIL NIL NIL \"<{uid}@x.test>\") BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" {} 3))\r\n",
                        body.len(),
                        subject.len(),
                        body.len()
                    );
                }
            }
            out += &format!("{tag} OK UID FETCH done\r\n");
            write_in_pieces(&mut write, out.as_bytes()).await?;
            continue;
        } else if upper.starts_with("UID SEARCH ") {
            let uids = state.mailbox.lock().unwrap().uids.clone();
            let max = uids.last().copied().unwrap_or(0);
            let (lo, hi) = if upper == "UID SEARCH ALL" { (1, max) } else { parse_range(words[3], max) };
            let found: Vec<String> = uids.iter().filter(|u| (lo..=hi).contains(*u)).map(u32::to_string).collect();
            out = format!("* SEARCH {}\r\n{tag} OK UID SEARCH done\r\n", found.join(" "));
        } else if upper.starts_with("SEARCH TEXT ") {
            state.log.searches.fetch_add(1, Ordering::Relaxed);
            out = format!("* SEARCH 2 5\r\n{tag} OK SEARCH done\r\n");
        } else if upper.starts_with("SEARCH FROM ") {
            state.log.searches.fetch_add(1, Ordering::Relaxed);
            match quoted_args(rest)[0].as_str() {
                "bad" => out = format!("{tag} BAD [CLIENTBUG] cannot search that\r\n"),
                "drop" => {
                    write.write_all(b"* BYE going away\r\n").await?;
                    return Ok(());
                }
                _ => out = format!("* SEARCH 1\r\n{tag} OK SEARCH done\r\n"),
            }
        } else if upper.starts_with("UID STORE ") {
            assert!(upper.ends_with("FLAGS.SILENT (\\FLAGGED)"), "{command}");
            state.log.uid_stores.fetch_add(1, Ordering::Relaxed);
            out = format!("{tag} OK UID STORE done\r\n");
        } else if upper.starts_with("STORE ") {
            state.log.seq_stores.fetch_add(1, Ordering::Relaxed);
            let mut mailbox = state.mailbox.lock().unwrap();
            let (lo, hi) = parse_range(words[1], mailbox.uids.len() as u32);
            assert!(lo >= 1 && hi as usize <= mailbox.uids.len(), "sequence numbers beyond the mailbox: {command}");
            if upper.contains("\\DELETED") {
                let marked: Vec<u32> = mailbox.uids[lo as usize - 1..hi as usize].to_vec();
                mailbox.deleted.extend(marked);
            }
            out = format!("{tag} OK STORE done\r\n");
        } else if upper == "EXPUNGE" {
            let mut mailbox = state.mailbox.lock().unwrap();
            let deleted = std::mem::take(&mut mailbox.deleted);
            // From the highest sequence number down, so that each number is still right.
            for seq in (1..=mailbox.uids.len()).rev() {
                if deleted.contains(&mailbox.uids[seq - 1]) {
                    mailbox.uids.remove(seq - 1);
                    out += &format!("* {seq} EXPUNGE\r\n");
                    state.log.expunges.fetch_add(1, Ordering::Relaxed);
                }
            }
            told = mailbox.uids.len();
            out += &format!("{tag} OK EXPUNGE done\r\n");
        } else if upper == "NOOP" {
            let now = state.mailbox.lock().unwrap().uids.len();
            if now != told {
                told = now;
                out += &format!("* {now} EXISTS\r\n");
            }
            out += &format!("{tag} OK NOOP done\r\n");
        } else if upper == "IDLE" {
            state.log.idles.fetch_add(1, Ordering::Relaxed);
            idle(tag, state, &mut read, &mut write, &mut told).await?;
            continue;
        } else if upper == "LOGOUT" {
            write.write_all(format!("* BYE logging out\r\n{tag} OK LOGOUT done\r\n").as_bytes()).await?;
            return Ok(());
        } else {
            out = format!("{tag} BAD unknown command\r\n");
        }
        write.write_all(out.as_bytes()).await?;
    }
}

/// IDLE until DONE, sending EXISTS as messages are delivered.
async fn idle(
    tag: &str,
    state: &State,
    read: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    told: &mut usize,
) -> std::io::Result<()> {
    let mut deliveries = state.delivered.subscribe();
    write.write_all(b"+ idling\r\n").await?;
    let mut line = String::new();
    loop {
        let now = state.mailbox.lock().unwrap().uids.len();
        if now != *told {
            *told = now;
            write.write_all(format!("* {now} EXISTS\r\n").as_bytes()).await?;
        }
        tokio::select! {
            read = read.read_line(&mut line) => {
                assert!(read? > 0, "connection closed in IDLE");
                assert_eq!(line, "DONE\r\n");
                return write.write_all(format!("{tag} OK IDLE done\r\n").as_bytes()).await;
            }
            _ = deliveries.recv() => {}
        }
    }
}

async fn serve_smtp(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.split([' ', '\r']).next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
            "MAIL" | "RCPT" => b"250 ok\r\n",
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                loop {
                    line.clear();
                    if read.read_line(&mut line).await? == 0 || line == ".\r\n" {
                        break;
                    }
                }
                let count = {
                    let mut mailbox = state.mailbox.lock().unwrap();
                    let uid = mailbox.next_uid;
                    mailbox.next_uid += 1;
                    mailbox.uids.push(uid);
                    mailbox.uids.len() as u32
                };
                state.log.deliveries.fetch_add(1, Ordering::Relaxed);
                let _ = state.delivered.send(count);
                b"250 delivered\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 what\r\n",
        };
        write.write_all(reply).await?;
    }
}

#[test]
fn sync_search_store_with_four_clients() {
    let fake = Fake::start(50);
    let me = std::process::id().to_string();
    let (code, json) = fake.run(&[
        "-c",
        "4",
        "--user-pattern",
        "testuser{n}@example.test",
        "--users",
        "2",
        "--workload",
        "sync,search",
        "--workload",
        "store",
        "--store-count",
        "30",
        "--server-pid",
        &me,
    ]);
    assert_eq!(code, 0, "{json}");
    let w = &json["workloads"];
    assert_eq!(w["sync"]["ops"], 4, "{json}");
    assert_eq!(w["sync"]["messages"], 200, "every FETCH of every client, literals and all");
    assert_eq!(w["sync"]["commands"]["SELECT"]["count"], 4);
    assert_eq!(w["sync"]["commands"]["UID FETCH"]["count"], 4);
    assert!(w["sync"]["bytes"].as_u64().unwrap() > 200 * 250, "{json}");
    assert!(w["sync"]["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(w["sync"]["latency_ms"]["max"].as_f64().unwrap() >= w["sync"]["latency_ms"]["p50"].as_f64().unwrap());
    assert_eq!(w["search"]["ops"], 8, "SEARCH TEXT and SEARCH FROM per client");
    assert_eq!(w["search"]["messages"], 4 * 3, "2 + 1 matches per client");
    assert_eq!(w["search"]["commands"]["SEARCH TEXT"]["count"], 4);
    assert_eq!(w["search"]["commands"]["SEARCH FROM"]["count"], 4);
    assert_eq!(w["search"]["msgs_per_s"], Value::Null, "no rate for matches");
    assert_eq!(w["store"]["ops"], 8, "+FLAGS and -FLAGS per client");
    assert_eq!(w["store"]["messages"], 8 * 30, "UIDs 1:30 each time");
    for name in ["sync", "search", "store"] {
        assert_eq!(w[name]["errors"], json!({}), "{name}");
        assert!(w[name]["elapsed_s"].as_f64().unwrap() > 0.0, "{name}");
    }
    assert_eq!(json["ops"], 20);
    assert_eq!(json["errors"], json!({}));
    assert_eq!(json["connections"], 4);
    assert_eq!(json["users"], 2);
    assert_eq!(json["last_error"], Value::Null);
    // The fake server runs in this test process: --server-pid watched it.
    let server = &json["server"];
    assert!(server["pss_peak_mib"].as_f64().unwrap() > 0.0, "{json}");
    let mib = |key: &str| server[key].as_f64().unwrap_or_else(|| panic!("{key} in {json}"));
    assert!(mib("pss_logged_in_mib") > 0.0);
    assert!(mib("pss_peak_mib") >= mib("pss_logged_in_mib"));
    assert!(mib("pss_peak_with_logins_mib") >= mib("pss_peak_mib"));
    assert!(mib("pss_per_session_mib") >= 0.0 && mib("pss_per_session_peak_mib") >= 0.0);
    assert!(mib("cpu_s") >= mib("cpu_workloads_s"));
    assert!(server["processes_peak"].as_u64().unwrap() >= 1);
    assert!(server["cpu_s"].as_f64().unwrap() >= 0.0);
    // What the server saw.
    let logins = BTreeMap::from([("testuser1@example.test".to_owned(), 2), ("testuser2@example.test".to_owned(), 2)]);
    assert_eq!(fake.logins(), logins, "client i logs in as user (i mod 2) + 1");
    assert_eq!(fake.count(|l| &l.connections), 4, "one connection per client");
    assert_eq!(fake.count(|l| &l.syncs), 4);
    assert_eq!(fake.count(|l| &l.searches), 8);
    assert_eq!(fake.count(|l| &l.uid_stores), 8);
}

#[test]
fn download_counts_every_body_byte_in_batches() {
    let fake = Fake::start(50);
    let (code, json) = fake.run(&["-c", "2", "--workload", "download", "--batch", "16", "--repeat", "2"]);
    assert_eq!(code, 0, "{json}");
    let download = &json["workloads"]["download"];
    // 50 UIDs in batches of 16: 4 commands per client and repetition.
    assert_eq!(download["ops"], 2 * 2 * 4, "{json}");
    assert_eq!(fake.count(|l| &l.body_fetches), 16);
    assert_eq!(download["messages"], 2 * 2 * 50);
    let bytes: u64 = (1..=50).map(|uid| body(uid).len() as u64).sum();
    assert_eq!(download["bytes"], 2 * 2 * bytes, "literal bytes, exactly");
    assert!(download["mb_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(fake.logins(), BTreeMap::from([("user1@example.test".to_owned(), 2)]), "the default pattern");
}

#[test]
fn qresync_resyncs_on_a_new_connection() {
    let fake = Fake::start(50);
    let (code, json) = fake.run(&["-c", "2", "--workload", "qresync", "--qresync-changes", "10"]);
    assert_eq!(code, 0, "{json}");
    let qresync = &json["workloads"]["qresync"];
    assert_eq!(qresync["ops"], 2, "{json}");
    assert_eq!(qresync["messages"], 2 * QRESYNC_CHANGES, "VANISHED UIDs and FETCHes");
    assert_eq!(qresync["commands"]["SELECT (QRESYNC)"]["count"], 2);
    assert_eq!(qresync["commands"]["connect, LOGIN, ENABLE QRESYNC"]["count"], 2);
    assert_eq!(fake.count(|l| &l.qresync_selects), 2);
    assert_eq!(fake.count(|l| &l.seq_stores), 4, "+FLAGS and -FLAGS on the client's own connection");
    // Each client: its own connection, one to learn the state, one to resync.
    assert_eq!(fake.count(|l| &l.connections), 6);
}

#[test]
fn idle_times_deliveries_even_with_one_shared_user() {
    let fake = Fake::start(50);
    let smtp = fake.smtp.to_string();
    let args = ["-c", "3", "--workload", "idle", "--idle-rounds", "4", "--idle-trigger-smtp", &smtp, "--timeout", "10"];
    let (code, json) = fake.run(&args);
    assert_eq!(code, 0, "{json}");
    let idle = &json["workloads"]["idle"];
    assert_eq!(idle["ops"], 12, "{json}");
    assert_eq!(idle["messages"], 12);
    assert_eq!(idle["errors"], json!({}));
    assert_eq!(fake.count(|l| &l.deliveries), 12);
    assert_eq!(fake.count(|l| &l.idles), 12);
    assert_eq!(fake.messages(), 62);
    let latency = &idle["latency_ms"];
    assert!(latency["p99"].as_f64().unwrap() >= latency["p50"].as_f64().unwrap());
    assert!(latency["max"].as_f64().unwrap() < 10_000.0);
}

#[test]
fn expunge_removes_the_last_messages() {
    let fake = Fake::start(50);
    let (code, json) = fake.run(&["-c", "1", "--workload", "expunge", "--expunge-count", "5", "--repeat", "2"]);
    assert_eq!(code, 0, "{json}");
    let expunge = &json["workloads"]["expunge"];
    assert_eq!(expunge["ops"], 2, "{json}");
    assert_eq!(expunge["messages"], 10);
    assert_eq!(fake.count(|l| &l.expunges), 10);
    assert_eq!(fake.messages(), 40);
}

#[test]
fn no_and_bad_are_counted_by_status() {
    let fake = Fake::start(10);
    // A refused LOGIN: every workload of every client fails with NO.
    let output = imapload(&[
        "--server",
        &fake.imap.to_string(),
        "--password",
        "wrong",
        "-c",
        "2",
        "--workload",
        "sync,search",
        "--json",
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(json["ops"], 0);
    assert_eq!(json["errors"], json!({"NO": 4}), "{json}");
    assert!(json["last_error"].as_str().unwrap().contains("LOGIN: NO [AUTHENTICATIONFAILED]"), "{json}");
    // A mailbox that does not exist, and a SEARCH the server calls BAD.
    let (code, json) = fake.run(&["-c", "2", "--mailbox", "Nope", "--workload", "sync"]);
    assert_eq!(code, 1);
    assert_eq!(json["workloads"]["sync"]["errors"], json!({"NO": 2}), "{json}");
    let (code, json) = fake.run(&["-c", "2", "--workload", "search", "--search-from", "bad"]);
    assert_eq!(code, 1);
    assert_eq!(json["workloads"]["search"]["ops"], 2, "SEARCH TEXT still works: {json}");
    assert_eq!(json["workloads"]["search"]["errors"], json!({"BAD": 2}));
}

#[test]
fn a_lost_connection_is_counted_and_replaced() {
    let fake = Fake::start(10);
    let (code, json) = fake.run(&["-c", "1", "--workload", "search,sync", "--search-from", "drop"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["workloads"]["search"]["ops"], 1);
    assert_eq!(json["workloads"]["search"]["errors"], json!({"connection": 1}));
    assert_eq!(json["workloads"]["sync"]["ops"], 1, "the next workload connects again");
    assert_eq!(json["workloads"]["sync"]["messages"], 10);
    assert!(json["last_error"].as_str().unwrap().contains("BYE going away"), "{json}");
    assert_eq!(fake.count(|l| &l.connections), 2);
}

#[test]
fn a_dead_server_ends_the_run_with_status_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("127.0.0.1:{port}");
    let output =
        imapload(&["--server", &server, "--password", "x", "-c", "3", "-w", "sync,store", "--json", "--quiet"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(json["ops"], 0);
    assert_eq!(json["errors"], json!({"connection": 6}), "{json}");
}

#[test]
fn the_summary_names_every_workload() {
    let fake = Fake::start(20);
    let output = imapload(&["--server", &fake.imap.to_string(), "--password", PASSWORD, "-w", "sync,store"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for needle in ["imapload: ", "  sync: 4 ops in ", "80 messages", "UID FETCH: 4 x", "  store: 8 ops", "errors: none"]
    {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["--password", "x", "-c", "0"][..],
        &["-c", "1"],
        &["--password", "x", "--workload", "idle"],
        &["--password", "x", "--workload", "sync,bogus"],
        &["--password", "x", "--user-pattern", "nobody@example.test"],
        &["--password", "x", "--user", "a@b", "--user-pattern", "u{n}@b"],
        &["--password", "caf\u{e9}"],
        &["--password", "x", "--batch", "0"],
        &["--password", "x", "--server-pid", "4000000000"],
    ] {
        let output = imapload(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty());
    }
}
