//! SMTP, submission and LMTP end to end: the real `postlog serve` on loopback, driven by real
//! clients (Python's smtplib and raw sockets in `clients/smtp_clients.py`, swaks), then the
//! store opened to check what was stored, and how.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{Server, run_ok, s, text};
use postlog_engine::{Options, Store};

/// Creates example.test with alice and bob, and team@ for both, before the server starts.
fn setup(dir: &Path) {
    let data = dir.join("data");
    let run = |args: &[&str], stdin: Option<&str>| run_ok(&data, args, stdin);
    run(&["domain", "add", "example.test"], None);
    run(&["user", "add", "alice@example.test", "--password-stdin"], Some("alice-secret"));
    run(&["user", "add", "bob@example.test", "--password-stdin"], Some("bob-secret"));
    run(&["alias", "add", "team@example.test", "alice@example.test", "bob@example.test"], None);
    run(&["alias", "add", "postmaster@example.test", "alice@example.test"], None);
}

/// Runs one scenario of `clients/smtp_clients.py`.
fn python(server: &Server, scenario: &str) {
    common::python_scenario("smtp_clients.py", server, scenario);
}

/// Every message of `user`'s INBOX, oldest first.
fn inbox(store: &Store, user: &str) -> Vec<String> {
    let account = store.account_id(user).unwrap();
    let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
    let messages = store.messages(account, mailbox).unwrap();
    messages.iter().map(|m| text(&store.read_message(account, mailbox, m.uid).unwrap())).collect()
}

fn with_subject<'a>(messages: &'a [String], subject: &str) -> Vec<&'a String> {
    let needle = format!("Subject: {subject}\r\n");
    messages.iter().filter(|m| m.contains(&needle)).collect()
}

#[test]
fn real_clients_deliver_over_every_listener() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    // The submission scenario queues a message for elsewhere.test: its route leads to a closed
    // port, so it stays queued (deferred) rather than depending on this machine's DNS.
    let closed = common::free_ports(1)[0];
    let server = Server::start(tmp.path(), &format!("[routes]\n\"elsewhere.test\" = \"127.0.0.1:{closed}\"\n"));
    for scenario in ["mx", "submission", "pipelined", "chunking", "lmtp", "smuggling", "bare_lf_bytes"] {
        python(&server, scenario);
    }
    let data = server.data.clone();
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");

    let store = Store::open(&data, Options::default()).unwrap();
    let alice = inbox(&store, "alice@example.test");
    let bob = inbox(&store, "bob@example.test");

    // Trace fields: Return-Path, Delivered-To (one recipient), Received with protocol and TLS.
    let plain = with_subject(&alice, "mx plain");
    assert_eq!(plain.len(), 1, "{alice:#?}");
    let m = plain[0];
    assert!(m.starts_with("Return-Path: <sender@remote.test>\r\nDelivered-To: alice@example.test\r\nReceived: from client.remote.test (unknown [127.0.0.1])\r\n\tby mail.example.test (Postlog) with ESMTP id "), "{m}");
    assert!(m.contains("\r\n\tfor <alice@example.test>; "), "{m}");
    let tls = with_subject(&alice, "mx over tls")[0];
    assert!(tls.contains("\t(using TLSv1.3 with cipher TLS_") && tls.contains(" with ESMTPS id "), "{tls}");
    let submitted = with_subject(&bob, "submitted")[0];
    assert!(submitted.contains(" with ESMTPSA id "), "{submitted}");
    assert!(submitted.starts_with("Return-Path: <alice@example.test>\r\n"), "{submitted}");
    assert_eq!(with_subject(&bob, "from the alias").len(), 1);
    assert_eq!(with_subject(&alice, "implicit tls").len(), 1);
    assert!(with_subject(&alice, "implicit tls")[0].contains(" with ESMTPSA id "));

    // The alias: one copy each, one stored body (no Delivered-To: two users).
    let (a, b) = (with_subject(&alice, "to the team"), with_subject(&bob, "to the team"));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(a[0], b[0], "the same stored message");
    assert!(!a[0].contains("Delivered-To:"), "{}", a[0]);
    assert!(a[0].contains("\tfor <team@example.test>; "), "{}", a[0]);
    let blob_of = |user: &str, subject: &str| {
        let account = store.account_id(user).unwrap();
        let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
        let entries = store.messages(account, mailbox).unwrap();
        let all = inbox(&store, user);
        let i = all.iter().position(|m| m.contains(&format!("Subject: {subject}\r\n"))).unwrap();
        entries[i].blob
    };
    assert_eq!(blob_of("alice@example.test", "to the team"), blob_of("bob@example.test", "to the team"));

    // SMTPUTF8, DSN parameters, pipelining, chunking, LMTP.
    assert_eq!(with_subject(&alice, "=?utf-8?q?gr=C3=BC=C3=9Fe?=").len() + with_subject(&alice, "grüße").len(), 1);
    assert_eq!(with_subject(&bob, "dsn").len(), 1);
    let pipelined: Vec<&String> = bob.iter().filter(|m| m.contains("Subject: pipelined ")).collect();
    assert_eq!(pipelined.len(), 50);
    assert!(pipelined.iter().all(|m| m.ends_with("\r\n\r\n.dot-stuffed line\r\n")), "{}", pipelined[0]);
    let chunked = with_subject(&alice, "chunked")[0];
    assert!(chunked.ends_with("\r\n\r\nfirst part, second part\r\n"), "{chunked}");
    let binary = with_subject(&alice, "binary")[0];
    assert!(binary.as_bytes().ends_with(b"\r\n\r\n\x00\x01\n\r\xef\xbf\xbd.\r\n"), "{binary:?}");
    assert!(with_subject(&alice, "over lmtp")[0].contains(" with LMTP id "));
    assert_eq!(with_subject(&bob, "over lmtp").len(), 1);
    assert_eq!(with_subject(&alice, "lmtp via smtplib").len(), 1);
    // Smuggling shapes: one message each, the would-be second message is its content.
    let carriers = with_subject(&alice, "carrier");
    assert_eq!(carriers.len(), 4);
    assert!(
        carriers.iter().all(|m| m.contains("\r\nSubject: smuggled\r\n") && m.ends_with("evil\r\n")),
        "{carriers:#?}"
    );
    // Bare LF lines, normalised to CRLF and unstuffed.
    let bare = with_subject(&bob, "bare lf")[0];
    // (smtplib ends the LF-terminated data with one more CRLF of its own.)
    assert!(bare.ends_with("Subject: bare lf\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n\r\n"), "{bare:?}");
    // Nothing refused was stored: no forged, relayed, unauthenticated or smuggled mail.
    for subject in ["relay", "no auth", "forged", "out", "smuggled"] {
        assert!(with_subject(&bob, subject).is_empty(), "{subject}");
        let for_alice = with_subject(&alice, subject);
        assert!(for_alice.iter().all(|m| m.contains("Subject: carrier\r\n")), "{subject}");
    }
    assert_eq!(
        alice.len(),
        13,
        "{:#?}",
        alice.iter().map(|m| m.lines().find(|l| l.starts_with("Subject:"))).collect::<Vec<_>>()
    );
    assert_eq!(bob.len(), 56);
    let delivered = log.iter().filter(|l| l.contains(" delivered ") || l.ends_with(" delivered")).count();
    assert!(delivered >= 60, "one log line per delivered message: {delivered}");
}

#[test]
fn bare_newlines_can_be_refused() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "[smtp]\nbare_newlines = \"reject\"\n");
    python(&server, "smuggling_rejected");
    let data = server.data.clone();
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    let store = Store::open(&data, Options::default()).unwrap();
    assert!(inbox(&store, "alice@example.test").is_empty());
    assert!(inbox(&store, "bob@example.test").is_empty());
}

/// Runs swaks against the server; returns (exit code, transcript).
fn swaks(server: &Server, listener: &str, args: &[&str]) -> (i32, String) {
    let port = server.ports[listener].to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "--timeout", "30", "--helo", "swaks.client.test"])
        .args(args)
        .output()
        .expect("swaks runs (scripts/test.sh installs it)");
    (out.status.code().unwrap_or(-1), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn swaks_auth_tls_pipelining_and_broken_input() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    let ok = |listener: &str, args: &[&str]| {
        let (code, transcript) = swaks(&server, listener, args);
        assert_eq!(code, 0, "swaks {args:?}:\n{transcript}");
        transcript
    };
    let alice_auth = ["--auth-user", "alice@example.test", "--auth-password", "alice-secret"];
    ok("smtp", &["--from", "x@remote.test", "--to", "alice@example.test", "--header", "Subject: swaks plain"]);
    let t = ok(
        "smtp",
        &[
            "--pipeline",
            "--from",
            "x@remote.test",
            "--to",
            "alice@example.test,bob@example.test",
            "--header",
            "Subject: swaks pipelined",
        ],
    );
    assert!(t.contains("PIPELINING"), "{t}");
    for mech in ["PLAIN", "LOGIN"] {
        let subject = format!("Subject: swaks auth {mech}");
        let mut args =
            vec!["--auth", mech, "--from", "alice@example.test", "--to", "bob@example.test", "--header", &subject];
        args.extend(alice_auth);
        let t = ok("submission", &args);
        assert!(t.contains("235 2.7.0 Authentication successful"), "{t}");
    }
    // STARTTLS then AUTH on 587, implicit TLS on 465.
    let mut args = vec![
        "--tls",
        "--auth",
        "PLAIN",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--header",
        "Subject: swaks starttls",
    ];
    args.extend(alice_auth);
    let t = ok("submission", &args);
    assert!(t.contains("220 2.0.0 Ready to start TLS") && t.contains("TLS started"), "{t}");
    let mut args = vec![
        "--tls-on-connect",
        "--auth",
        "LOGIN",
        "--from",
        "alice@example.test",
        "--to",
        "alice@example.test",
        "--header",
        "Subject: swaks smtps",
    ];
    args.extend(alice_auth);
    ok("submissions", &args);

    // Failures, with swaks' exit codes: 24 = RCPT refused, 28 = AUTH refused, 26 = message refused.
    let (code, t) = swaks(&server, "smtp", &["--from", "x@remote.test", "--to", "nobody@example.test"]);
    assert_eq!(code, 24, "{t}");
    assert!(t.contains("550 5.1.1 <nobody@example.test>"), "{t}");
    let (code, t) = swaks(&server, "smtp", &["--from", "x@remote.test", "--to", "x@elsewhere.test"]);
    assert_eq!(code, 24, "{t}");
    assert!(t.contains("554 5.7.1"), "{t}");
    let (code, t) = swaks(
        &server,
        "submission",
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.test",
            "--auth-password",
            "wrong",
            "--to",
            "bob@example.test",
        ],
    );
    assert_eq!(code, 28, "{t}");
    assert!(t.contains("535 5.7.8"), "{t}");
    // Broken input: an oversized header section, a loop of Received fields, a NUL in a header.
    let received = "Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\n".repeat(60);
    let looping = format!("{received}Subject: swaks loop\n\nbody\n");
    let (code, t) =
        swaks(&server, "smtp", &["--from", "x@remote.test", "--to", "alice@example.test", "--data", &looping]);
    assert_eq!(code, 26, "{t}");
    assert!(t.contains("554 5.4.6"), "{t}");
    let big = format!("Subject: swaks big\nX-Filler: {}\n\nbody\n", "x".repeat(1 << 20));
    let data_file = tmp.path().join("big.eml");
    std::fs::write(&data_file, big).unwrap();
    let (code, t) =
        swaks(&server, "smtp", &["--from", "x@remote.test", "--to", "alice@example.test", "--data", s(&data_file)]);
    assert_eq!(code, 26, "{}", &t[..t.len().min(2000)]);
    assert!(t.contains("552 5.3.4 Error: message header too big"), "{}", &t[t.len().saturating_sub(2000)..]);
    // Raw data with a smuggling attempt (no fix-ups by swaks): one message, content kept.
    let (code, t) = swaks(
        &server,
        "smtp",
        &[
            "--from",
            "x@remote.test",
            "--to",
            "alice@example.test",
            "--no-data-fixup",
            "--data",
            "Subject: swaks raw\r\n\r\nhi\n.\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: evil\r\n\r\n.\r\n",
        ],
    );
    assert_eq!(code, 0, "{t}");

    let data = server.data.clone();
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    let store = Store::open(&data, Options::default()).unwrap();
    let alice = inbox(&store, "alice@example.test");
    let bob = inbox(&store, "bob@example.test");
    for subject in ["swaks plain", "swaks pipelined", "swaks smtps", "swaks raw"] {
        assert_eq!(with_subject(&alice, subject).len(), 1, "{subject}");
    }
    for subject in ["swaks pipelined", "swaks auth PLAIN", "swaks auth LOGIN", "swaks starttls"] {
        assert_eq!(with_subject(&bob, subject).len(), 1, "{subject}");
    }
    assert!(with_subject(&bob, "swaks starttls")[0].contains(" with ESMTPSA id "));
    assert!(with_subject(&bob, "evil").is_empty());
    assert_eq!((alice.len(), bob.len()), (4, 4));
}

/// One SMTP client thread of the kill test: sends messages until the connection breaks;
/// returns the subjects that got their `250`.
fn send_until_killed(port: u16, thread: usize) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut acked = Vec::new();
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return acked };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut reply = || -> Option<u16> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.get(..3)?.parse().ok();
            }
        }
    };
    let ok = reply() == Some(220) && w.write_all(b"EHLO killer\r\n").is_ok() && reply() == Some(250);
    if !ok {
        return acked;
    }
    let rcpt = if thread.is_multiple_of(2) { "alice@example.test" } else { "team@example.test" };
    for i in 0.. {
        let subject = format!("kill-{thread}-{i}");
        let envelope = format!("MAIL FROM:<load@remote.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        if w.write_all(envelope.as_bytes()).is_err() {
            break;
        }
        // MAIL and RCPT may be pipelined, DATA ends the group: wait for its 354.
        if (reply(), reply(), reply()) != (Some(250), Some(250), Some(354)) {
            break;
        }
        let body = format!("Subject: {subject}\r\n\r\n{}\r\n.\r\n", "load line\r\n".repeat(40));
        if w.write_all(body.as_bytes()).is_err() || reply() != Some(250) {
            break;
        }
        acked.push(subject);
    }
    acked
}

#[test]
fn a_kill_during_a_load_run_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let mut server = Server::start(tmp.path(), "[smtp]\nforbid_unauth_pipelining = false\n");
    let port = server.ports["smtp"];
    let threads: Vec<_> = (0..8).map(|t| std::thread::spawn(move || send_until_killed(port, t))).collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut child = server.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(acked.len() >= 50, "the load ran before the kill: {} acknowledged", acked.len());

    let store = Store::open(&server.data, Options::default()).unwrap();
    let alice = inbox(&store, "alice@example.test");
    let bob = inbox(&store, "bob@example.test");
    for subject in &acked {
        let thread: usize = subject.split('-').nth(1).unwrap().parse().unwrap();
        assert_eq!(with_subject(&alice, subject).len(), 1, "acknowledged {subject} is missing for alice");
        if !thread.is_multiple_of(2) {
            assert_eq!(with_subject(&bob, subject).len(), 1, "acknowledged {subject} is missing for bob");
        }
    }
    // At most the one message per connection that was in flight is there unacknowledged.
    assert!(alice.len() <= acked.len() + 8, "{} stored, {} acknowledged", alice.len(), acked.len());
    drop(store);

    // The server starts again on the same data and takes mail.
    let server = Server::start(tmp.path(), "");
    python(&server, "lmtp");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

/// A minimal line client for the tests below.
struct Client {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        Client { w: s.try_clone().unwrap(), r: std::io::BufReader::new(s) }
    }

    /// One whole reply, lines joined with `\n`.
    fn reply(&mut self) -> String {
        use std::io::BufRead;
        let mut all = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                all.push("<closed>".to_string());
                break;
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            all.push(line.trim_end().to_string());
            if done {
                break;
            }
        }
        all.join("\n")
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

#[test]
fn quotas_are_enforced_per_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    run_ok(&tmp.path().join("data"), &["user", "quota", "bob@example.test", "1K"], None);
    let server = Server::start(tmp.path(), "");
    let body = format!("Subject: big\r\n\r\n{}\r\n.", "x".repeat(2000));

    // SMTP with SIZE: refused at RCPT for bob only.
    let mut c = Client::connect(server.ports["smtp"]);
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO q").starts_with("250-"));
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test> SIZE=2100"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>"), "452 4.2.2 <bob@example.test>: Mailbox full, try again later");
    assert_eq!(c.cmd("RCPT TO:<alice@example.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert!(c.cmd(&body).starts_with("250 2.0.0 Ok: delivered as "));
    // Without SIZE the RCPT check passes and the message is stored (one message of grace)...
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert!(c.cmd(&body).starts_with("250 2.0.0 Ok: delivered as "));
    // ...after which bob is over quota.
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>"), "452 4.2.2 <bob@example.test>: Mailbox full, try again later");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");

    // LMTP answers each recipient with the real size.
    let mut c = Client::connect(server.ports["lmtp"]);
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("LHLO mta").starts_with("250-"));
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<alice@example.test>"), "250 2.1.5 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<carol@example.test>"),
        "550 5.1.1 <carol@example.test>: Recipient address rejected: no such user here"
    );
    assert_eq!(c.cmd("RCPT TO:<team@example.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    let first = c.cmd(&body);
    let second = c.reply();
    assert!(first.starts_with("250 2.0.0 <alice@example.test> Ok: delivered as "), "{first}");
    // team@ is alice and bob: alice has room, so the alias is delivered (to alice once).
    assert!(second.starts_with("250 2.0.0 <team@example.test> Ok: delivered as "), "{second}");
    assert_eq!(c.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>"), "452 4.2.2 <bob@example.test>: Mailbox full, try again later");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");

    let data = server.data.clone();
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    let store = Store::open(&data, Options::default()).unwrap();
    assert_eq!(inbox(&store, "alice@example.test").len(), 2);
    assert_eq!(inbox(&store, "bob@example.test").len(), 1);
}

#[test]
fn clients_that_talk_before_the_greeting_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "[smtp]\ngreet_pause_ms = 700\n");
    // Talks first: refused, and nothing it said is taken as a command.
    let mut c = Client::connect(server.ports["smtp"]);
    c.w.write_all(b"EHLO eager\r\nMAIL FROM:<spam@remote.test>\r\n").unwrap();
    assert_eq!(c.reply(), "554 5.5.0 Error: SMTP protocol synchronization");
    assert_eq!(c.reply(), "<closed>");
    // Waits for the greeting: served.
    let mut c = Client::connect(server.ports["smtp"]);
    let started = std::time::Instant::now();
    assert_eq!(c.reply(), "220 mail.example.test ESMTP Postlog");
    assert!(started.elapsed() >= std::time::Duration::from_millis(600), "{:?}", started.elapsed());
    assert!(c.cmd("EHLO patient").starts_with("250-"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    // The pause is the MX listener's only: submission greets at once.
    let mut c = Client::connect(server.ports["submission"]);
    let started = std::time::Instant::now();
    assert_eq!(c.reply(), "220 mail.example.test ESMTP Postlog");
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0));
    assert!(log.iter().any(|l| l.contains("refused: client talked before the greeting")), "{log:?}");
}

#[test]
fn failed_logins_lock_the_address_out_and_are_counted() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let config = "[auth]\nmax_failures_per_ip = 3\ndelay_step_ms = 0\nlockout = 600\n";
    let server = Server::start(tmp.path(), config);
    let plain = |user: &str, pass: &str| base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
    let mut c = Client::connect(server.ports["submission"]);
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO brute").contains("250-AUTH SCRAM-SHA-256 PLAIN LOGIN"));
    for _ in 0..3 {
        let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", "guess")));
        assert_eq!(r, "535 5.7.8 Error: authentication failed");
    }
    // Locked out: even the right password is refused without being checked.
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", "alice-secret")));
    assert!(r.starts_with("454 4.7.0 Too many failed logins; try again in "), "{r}");
    // Plain-text mechanisms need TLS unless the client is on loopback (it is here): a
    // mechanism the server does not know is refused as such.
    assert_eq!(c.cmd("AUTH CRAM-MD5"), "504 5.5.4 Unsupported authentication mechanism");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.ports["http"])).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut page).unwrap();
    assert!(page.contains("postlog_auth_failures_total{mechanism=\"PLAIN\"} 4"), "{page}");
    assert!(page.contains("postlog_auth_failures_total{mechanism=\"unsupported\"} 1"), "{page}");
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0));
    assert_eq!(log.iter().filter(|l| l.contains("authentication failed session=")).count(), 5, "{log:?}");
}

/// `store.compression = "background"` (the default) with small segments and a compaction
/// every second: mail delivered over SMTP is stored as it came, compressed once the server is
/// quiet, and the first copies' segments are compacted away while it serves; every message
/// reads back whole, also after a restart.
#[test]
fn delivered_bodies_are_compressed_and_compacted_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let mut server = Server::start(tmp.path(), "[store]\nsegment_size = \"1M\"\ncompact_interval = \"1s\"\n");
    let mut c = Client::connect(server.port("smtp"));
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO sender.test").starts_with("250"));
    let body = |i: usize| {
        format!("Subject: maint-{i}\r\n\r\n{}", format!("line {i} of a rather plain message\r\n").repeat(80))
    };
    for i in 0..700 {
        assert!(c.cmd("MAIL FROM:<x@remote.test>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        let reply = c.cmd(&format!("{}\r\n.", body(i)));
        assert!(reply.starts_with("250"), "message {i}: {reply}");
    }
    c.cmd("QUIT");
    let line = server.wait_for_log("compaction: dropped segments", std::time::Duration::from_secs(60));
    assert!(!line.contains("dropped segments []"), "{line}");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));

    let data = tmp.path().join("data");
    assert!(!data.join("seg-0000000000000001.log").exists(), "the first segment was not compacted away");
    let store = Store::open(&data, Options::default()).unwrap();
    let st = postlog_engine::store::state_of(&store);
    let raw = st.blobs.values().filter(|b| b.refs > 0 && b.codec == 0).count();
    assert_eq!(raw, 0, "bodies still stored as they came");
    let alice = inbox(&store, "alice@example.test");
    assert_eq!(alice.len(), 700);
    for i in (0..700).step_by(37) {
        let m = with_subject(&alice, &format!("maint-{i}"));
        assert_eq!(m.len(), 1, "maint-{i}");
        let lines = body(i).split_once("\r\n\r\n").unwrap().1.to_string();
        assert!(m[0].ends_with(&format!("\r\n\r\n{lines}\r\n")), "maint-{i} body");
    }
}
