//! Outbound mail end to end: the real `postlog serve` taking mail on submission for remote
//! recipients, queueing it, and delivering it to real remotes on loopback: Postfix's
//! `smtp-sink` (accepting, deferring or refusing on command), a remote that drops the
//! connection in the middle of the data, and a second Postlog found through MX records served
//! by dnsmasq. Bounces are parsed; a crash with a full queue loses nothing.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_ports, postlog, run_ok, s, text};
use postlog_engine::{Options, Store};

/// example.test with alice and bob.
fn setup(dir: &Path) {
    let data = dir.join("data");
    run_ok(&data, &["domain", "add", "example.test"], None);
    run_ok(&data, &["user", "add", "alice@example.test", "--password-stdin"], Some("alice-secret"));
    run_ok(&data, &["user", "add", "bob@example.test", "--password-stdin"], Some("bob-secret"));
}

/// Quick retries for tests.
const FAST: &str = "[queue]\nmin_backoff = 1\nmax_backoff = 2\nconnect_timeout = 5\n";

/// `smtp-sink` on a free port, writing each message to a file in `dir`. Killed on drop.
struct Sink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sink {
    fn start(dir: &Path, port: Option<u16>, extra: &[&str]) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let port = port.unwrap_or_else(|| free_ports(1)[0]);
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
        let child = Command::new("smtp-sink")
            .args(["-u", &user, "-d", &format!("{}/%M.", s(dir))])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink runs (postfix package; scripts/test.sh installs it)");
        let sink = Sink { child, port, dir: dir.to_path_buf() };
        wait_listening(port);
        sink
    }

    /// The messages received so far. (smtp-sink opens a dump file per transaction and leaves
    /// it empty while a refused one's session lasts: those are not messages.)
    fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter(|b| !b.is_empty())
            .map(|b| text(&b))
            .collect();
        out.sort();
        out
    }

    fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            // A file is complete once its final empty line is written.
            let m = self.messages();
            if m.len() >= n && m.iter().all(|x| x.ends_with("\n\n") || x.ends_with("\r\n\r\n")) {
                return m;
            }
            assert!(Instant::now() < deadline, "smtp-sink got {} of {n} messages", m.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// swaks on submission, as alice.
fn submit(server: &Server, to: &str, subject: &str) -> String {
    let port = server.port("submission").to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "--timeout", "30", "--helo", "laptop.example.test"])
        .args(["--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-secret"])
        .args(["--from", "alice@example.test", "--to", to, "--header", &format!("Subject: {subject}")])
        .args(["--body", "Hello over there.\n.dot line stays\n"])
        .output()
        .expect("swaks runs (scripts/test.sh installs it)");
    let transcript = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    transcript
}

/// The queue id from swaks' transcript ("250 2.0.0 Ok: queued as ID").
fn queue_id(transcript: &str) -> String {
    let line = transcript.lines().find(|l| l.contains("queued as")).unwrap_or_else(|| panic!("{transcript}"));
    line.rsplit(' ').next().unwrap().trim().to_string()
}

fn queue_cmd(data: &Path, args: &[&str]) -> Output {
    postlog().arg("queue").args(args).args(["--data", s(data)]).output().unwrap()
}

fn queue_ok(data: &Path, args: &[&str]) -> String {
    let out = queue_cmd(data, args);
    assert!(out.status.success(), "postlog queue {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Waits until `postlog queue list` satisfies `ok`.
fn queue_until(data: &Path, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let list = queue_ok(data, &["list"]);
        if ok(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "the queue never matched; last list:\n{list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn inbox(store: &Store, user: &str) -> Vec<String> {
    let account = store.account_id(user).unwrap();
    let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
    let messages = store.messages(account, mailbox).unwrap();
    messages.iter().map(|m| text(&store.read_message(account, mailbox, m.uid).unwrap())).collect()
}

#[test]
fn submission_to_a_remote_domain_is_queued_and_delivered_to_the_route() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let sink = Sink::start(&tmp.path().join("sink"), None, &[]);
    let server = Server::start(tmp.path(), &format!("{FAST}[routes]\n\"remote.test\" = \"127.0.0.1:{}\"\n", sink.port));
    let t = submit(&server, "carol@remote.test,bob@example.test,dave@Remote.TEST", "over the wall");
    assert!(t.contains("queued as"), "{t}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "one message, both remote recipients in one transaction");
    let m = &got[0];
    assert!(m.contains("X-Rcpt-Args: <carol@remote.test>"), "{m}");
    assert!(m.contains("X-Rcpt-Args: <dave@Remote.TEST>"), "{m}");
    assert!(m.contains("X-Mail-Args: <alice@example.test>"), "{m}");
    assert!(m.contains("Subject: over the wall"), "{m}");
    // Dot-stuffing made the round trip, and the remote copy carries our Received line only.
    assert!(m.contains("\n.dot line stays"), "{m}");
    assert!(m.contains("by mail.example.test (Postlog) with ESMTPA"), "{m}");
    assert!(!m.contains("Delivered-To:") && !m.contains("Return-Path:"), "{m}");
    queue_until(&server.data, Duration::from_secs(10), |l| l.contains("the queue is empty"));
    let metrics = http_get(server.port("http"), "/metrics");
    for line in [
        "postlog_queue_recipients_total{outcome=\"queued\"} 2",
        "postlog_queue_recipients_total{outcome=\"sent\"} 2",
        "postlog_queue_messages 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0));
    assert!(log.iter().any(|l| l.contains("queue: sent") && l.contains("carol@remote.test")), "{log:#?}");
    let store = Store::open(&tmp.path().join("data"), Options::default()).unwrap();
    let bob = inbox(&store, "bob@example.test");
    assert_eq!(bob.len(), 1, "the local recipient got the same message in the same commit");
    assert!(bob[0].contains("Subject: over the wall"), "{}", bob[0]);
    let q = store.account_id("#queue").unwrap();
    let qbox = store.mailbox_by_name(q, "INBOX").unwrap().id;
    assert!(store.messages(q, qbox).unwrap().is_empty(), "the delivered message left the queue");
}

#[test]
fn a_deferring_remote_keeps_the_message_and_the_operator_commands_work() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    // Soft refusals of RCPT: 450 4.3.0.
    let sink = Sink::start(&tmp.path().join("sink"), None, &["-r", "RCPT"]);
    let config = format!("{FAST}[routes]\n\"remote.test\" = \"127.0.0.1:{}\"\n", sink.port);
    let server = Server::start(tmp.path(), &config);
    let id = queue_id(&submit(&server, "carol@remote.test", "deferred"));
    let list = queue_until(&data, Duration::from_secs(20), |l| l.contains(&id) && !l.contains("0 pending"));
    assert!(list.contains("carol@remote.test"), "{list}");
    // Wait for an attempt's answer to show.
    let deadline = Instant::now() + Duration::from_secs(20);
    let show = loop {
        let show = queue_ok(&data, &["show", &id]);
        if show.contains("450") {
            break show;
        }
        assert!(Instant::now() < deadline, "no attempt recorded:\n{show}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(show.contains("recipient: carol@remote.test\tpending\t4.3.0"), "{show}");
    assert!(show.contains("in reply to RCPT TO"), "{show}");
    assert!(queue_ok(&data, &["flush"]).contains("will be attempted now"));
    assert!(queue_ok(&data, &["retry", &id]).contains("will be attempted now"));
    let missing = queue_cmd(&data, &["show", "NOSUCHID"]);
    assert!(!missing.status.success() && text(&missing.stderr).contains("no queued message NOSUCHID"));
    assert!(queue_ok(&data, &["delete", &id]).contains("deleted"));
    queue_until(&data, Duration::from_secs(5), |l| l.contains("the queue is empty"));
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    // The commands work without a server too.
    assert!(queue_ok(&data, &["list"]).contains("the queue is empty"));
}

/// A remote that takes the envelope, answers DATA with 354, reads a little and hangs up.
fn dropping_remote(listener: TcpListener) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut sessions = 0;
        listener.set_nonblocking(false).unwrap();
        if let Ok((stream, _)) = listener.accept() {
            sessions += 1;
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"220 dropper.test ESMTP\r\n").unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("EHLO") {
                    w.write_all(b"250-dropper.test\r\n250 8BITMIME\r\n").unwrap();
                } else if cmd.starts_with("DATA") {
                    w.write_all(b"354 go ahead\r\n").unwrap();
                    let mut some = [0u8; 64];
                    let _ = r.read(&mut some);
                    break;
                } else {
                    w.write_all(b"250 2.0.0 ok\r\n").unwrap();
                }
            }
        }
        sessions
    })
}

#[test]
fn a_connection_dropped_mid_data_is_retried_and_delivered_once_the_remote_works() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dropper = dropping_remote(listener);
    let config =
        format!("[queue]\nmin_backoff = 2\nmax_backoff = 2\n[routes]\n\"remote.test\" = \"127.0.0.1:{port}\"\n");
    let mut server = Server::start(tmp.path(), &config);
    let id = queue_id(&submit(&server, "carol@remote.test", "dropped"));
    assert_eq!(dropper.join().unwrap(), 1);
    server.wait_for_log("queue: deferred", Duration::from_secs(20));
    let show = queue_ok(&data, &["show", &id]);
    assert!(show.contains("pending\t4.4.2") && show.contains("lost connection"), "{show}");
    // The remote comes back (the same port, now smtp-sink): the retry delivers.
    let sink = Sink::start(&tmp.path().join("sink"), Some(port), &[]);
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert!(got[0].contains("Subject: dropped"), "{}", got[0]);
    queue_until(&data, Duration::from_secs(10), |l| l.contains("the queue is empty"));
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_crash_with_a_full_queue_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    // Nothing listens on the route's port yet: every attempt is deferred.
    let port = free_ports(1)[0];
    let config = format!("{FAST}[routes]\n\"remote.test\" = \"127.0.0.1:{port}\"\n");
    let server = Server::start(tmp.path(), &config);
    let n = 20;
    let ids: Vec<String> =
        (0..n).map(|i| queue_id(&submit(&server, "carol@remote.test", &format!("crash {i}")))).collect();
    let (status, _) = server.stop_with(libc::SIGKILL);
    assert_eq!(status.code(), None, "killed");
    let listed = queue_ok(&data, &["list"]);
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{id} was acknowledged, so it must still be queued:\n{listed}");
    }
    let sink = Sink::start(&tmp.path().join("sink"), Some(port), &[]);
    let server = Server::start(tmp.path(), &config);
    let got = sink.wait_for(n, Duration::from_secs(60));
    assert_eq!(got.len(), n, "each acknowledged message delivered once");
    for i in 0..n {
        let subject = format!("Subject: crash {i}");
        let copies = got.iter().filter(|m| m.lines().any(|l| l.trim_end() == subject)).count();
        assert_eq!(copies, 1, "{subject}");
    }
    queue_until(&data, Duration::from_secs(10), |l| l.contains("the queue is empty"));
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

/// The parts of a DSN: (content type, body text), parsed with mail-parser.
fn report_parts(raw: &str) -> Vec<(String, String)> {
    use mail_parser::MimeHeaders;
    let m = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("the report parses");
    let root = m.parts[0].content_type().expect("a content type");
    assert_eq!(
        (root.ctype(), root.subtype(), root.attribute("report-type")),
        ("multipart", Some("report"), Some("delivery-status")),
        "{raw}"
    );
    m.parts
        .iter()
        .skip(1)
        .filter_map(|p| {
            let ct = p.content_type()?;
            let name = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
            let start = p.raw_body_offset() as usize;
            let end = p.raw_end_offset() as usize;
            Some((name, raw.get(start..end).unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn a_refused_recipient_bounces_to_the_local_sender_with_a_parsable_report() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    // Hard refusals of RCPT: 500 5.3.0.
    let sink = Sink::start(&tmp.path().join("sink"), None, &["-f", "RCPT"]);
    let server = Server::start(tmp.path(), &format!("{FAST}[routes]\n\"remote.test\" = \"127.0.0.1:{}\"\n", sink.port));
    submit(&server, "carol@remote.test", "will bounce");
    queue_until(&server.data, Duration::from_secs(20), |l| l.contains("the queue is empty"));
    let (_, log) = server.stop();
    assert!(log.iter().any(|l| l.contains("queue: bounced") && l.contains("carol@remote.test")), "{log:#?}");
    let store = Store::open(&tmp.path().join("data"), Options::default()).unwrap();
    let alice = inbox(&store, "alice@example.test");
    assert_eq!(alice.len(), 1, "the bounce, in the sender's INBOX");
    let dsn = &alice[0];
    assert!(dsn.contains("From: Mail Delivery System <MAILER-DAEMON@mail.example.test>"), "{dsn}");
    assert!(dsn.contains("Auto-Submitted: auto-replied"), "{dsn}");
    let parts = report_parts(dsn);
    let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "message/delivery-status", "message/rfc822"], "{dsn}");
    let status = &parts[1].1;
    for field in [
        "Reporting-MTA: dns; mail.example.test",
        "Final-Recipient: rfc822; carol@remote.test",
        "Action: failed",
        "Status: 5.3.0",
        "Remote-MTA: dns; 127.0.0.1",
        "Diagnostic-Code: smtp; 500 5.3.0",
    ] {
        assert!(status.contains(field), "{field} missing in:\n{status}");
    }
    assert!(parts[2].1.contains("Subject: will bounce"), "the original is returned");
}

#[test]
fn an_unreachable_destination_gets_a_delay_notice_then_expires_into_a_bounce() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let port = free_ports(1)[0];
    let config = format!(
        "[queue]\nmin_backoff = 1\nmax_backoff = 1\nlifetime = 4\ndelay_notice = 1\n[routes]\n\"remote.test\" = \"127.0.0.1:{port}\"\n"
    );
    let server = Server::start(tmp.path(), &config);
    submit(&server, "carol@remote.test", "nobody home");
    queue_until(&server.data, Duration::from_secs(30), |l| l.contains("the queue is empty"));
    server.stop();
    let store = Store::open(&tmp.path().join("data"), Options::default()).unwrap();
    let alice = inbox(&store, "alice@example.test");
    assert_eq!(alice.len(), 2, "a delay notice, then the bounce");
    let delayed = report_parts(&alice[0]);
    assert!(delayed[1].1.contains("Action: delayed") && delayed[1].1.contains("Will-Retry-Until:"), "{}", alice[0]);
    assert_eq!(delayed[2].0, "text/rfc822-headers", "a delay notice returns the header only");
    let failed = report_parts(&alice[1]);
    assert!(failed[1].1.contains("Action: failed"), "{}", alice[1]);
    assert!(failed[1].1.contains("Status: 5.4.1"), "the last temporary code, made permanent: {}", alice[1]);
    assert!(failed[0].1.contains("expired"), "{}", failed[0].1);
}

/// dnsmasq on a free loopback port serving only the given records. Killed on drop.
struct Dns {
    child: Child,
    port: u16,
}

impl Dns {
    fn start(records: &[String]) -> Dns {
        let port = free_ports(1)[0];
        let child = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--conf-file=/dev/null"])
            .args(["--listen-address=127.0.0.1", &format!("--port={port}"), "--user=root", "--pid-file="])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq runs (dnsmasq-base package; scripts/test.sh installs it)");
        // Ready once it answers over TCP.
        wait_listening(port);
        Dns { child, port }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The quoted strings of the record `postlog dkim` printed, for dnsmasq's --txt-record.
fn txt_strings(printed: &str) -> Vec<String> {
    let record = printed.lines().find(|l| l.contains("IN TXT")).unwrap_or_else(|| panic!("{printed}"));
    record.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn two_postlogs_exchange_mail_through_mx_records_with_tls_dkim_and_a_bounce() {
    let tmp = tempfile::tempdir().unwrap();
    // The receiving side: remote.test with bob.
    let rdir = tmp.path().join("remote");
    let rdata = rdir.join("data");
    run_ok(&rdata, &["domain", "add", "remote.test"], None);
    run_ok(&rdata, &["user", "add", "bob@remote.test", "--password-stdin"], Some("bob-secret"));
    let receiver = Server::start(&rdir, "");
    // The sending side, with a DKIM key for example.test.
    let sdir = tmp.path().join("sender");
    setup(&sdir);
    let sdata = sdir.join("data");
    let out = postlog().args(["dkim", "generate", "example.test", "--data", s(&sdata)]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("postlog._domainkey.example.test. IN TXT"), "{printed}");
    let txt = txt_strings(&printed);
    assert!(txt[0].starts_with("v=DKIM1; k=rsa; p="), "{txt:?}");
    let dns = Dns::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
        // A null MX (RFC 7505): the domain takes no mail.
        "--mx-host=nullmx.test,.,0".into(),
        // Arguments go to dnsmasq without a shell: quotes would be kept; strings split at commas.
        format!("--txt-record=postlog._domainkey.example.test,{}", txt.join(",")),
    ]);
    let top = format!("resolver = \"127.0.0.1:{}\"", dns.port);
    let extra = format!("{FAST}mx_port = {}\n", receiver.port("smtp"));
    let sender = Server::start_with_top(&sdir, &top, &extra);
    submit(&sender, "bob@remote.test,nobody@remote.test", "across the net");
    submit(&sender, "someone@nullmx.test", "to a null mx");
    queue_until(&sdata, Duration::from_secs(30), |l| l.contains("the queue is empty"));
    let (_, slog) = sender.stop();
    let (_, _) = receiver.stop();
    assert!(slog.iter().any(|l| l.contains("queue: sent") && l.contains("bob@remote.test")), "{slog:#?}");

    // bob got it over TLS, signed.
    let rstore = Store::open(&rdata, Options::default()).unwrap();
    let bob = inbox(&rstore, "bob@remote.test");
    assert_eq!(bob.len(), 1);
    let m = &bob[0];
    assert!(m.contains("Subject: across the net"), "{m}");
    assert!(m.contains("with ESMTPS"), "delivered over STARTTLS: {m}");
    assert!(m.contains("DKIM-Signature: ") && m.contains("d=example.test") && m.contains("s=postlog"), "{m}");
    // mail-auth checks the signature against the key in DNS.
    let verdicts = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
        let mut udp = ConnectionConfig::udp();
        udp.port = dns.port;
        let ns = NameServerConfig::new("127.0.0.1".parse().unwrap(), true, vec![udp]);
        let auth =
            mail_auth::MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), ResolverOpts::default())
                .unwrap();
        let parsed = mail_auth::AuthenticatedMessage::parse(m.as_bytes()).unwrap();
        auth.verify_dkim(&parsed).await.iter().map(|o| o.result().clone()).collect::<Vec<_>>()
    });
    assert_eq!(verdicts, vec![mail_auth::DkimResult::Pass], "{m}");

    // nobody@remote.test was refused by the receiver at RCPT: alice has the bounce.
    drop(rstore);
    let sstore = Store::open(&sdata, Options::default()).unwrap();
    let alice = inbox(&sstore, "alice@example.test");
    assert_eq!(alice.len(), 2, "one bounce for nobody only, one for the null MX");
    let (nullmx, nobody): (Vec<&String>, Vec<&String>) = alice.iter().partition(|m| m.contains("nullmx.test"));
    let null_status = &report_parts(nullmx[0])[1].1;
    assert!(null_status.contains("Status: 5.1.10"), "{null_status}");
    let parts = report_parts(nobody[0]);
    let status = &parts[1].1;
    assert!(status.contains("Final-Recipient: rfc822; nobody@remote.test"), "{status}");
    assert!(!status.contains("bob@remote.test"), "{status}");
    assert!(status.contains("Status: 5.1.1") && status.contains("Remote-MTA: dns; mx.remote.test"), "{status}");
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{status}");
}

#[test]
fn a_relay_host_with_auth_over_verified_tls_and_dns_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    // The relay: another Postlog where alice has an account too (submission checks that she
    // owns the sender address), and bob@remote.test receives.
    let rdir = tmp.path().join("relay");
    let rdata = rdir.join("data");
    for args in [&["domain", "add", "example.test"][..], &["domain", "add", "remote.test"]] {
        run_ok(&rdata, args, None);
    }
    run_ok(&rdata, &["user", "add", "alice@example.test", "--password-stdin"], Some("relay-secret"));
    run_ok(&rdata, &["user", "add", "bob@remote.test", "--password-stdin"], Some("bob-secret"));
    let relay = Server::start(&rdir, "");
    // nx.test does not exist (NXDOMAIN): a permanent failure, bounced at once.
    let dns = Dns::start(&["--address=/nx.test/".into()]);
    let sdir = tmp.path().join("sender");
    setup(&sdir);
    let sdata = sdir.join("data");
    let ca = rdata.join("tls/cert.pem");
    let top = format!("resolver = \"127.0.0.1:{}\"", dns.port);
    let extra = format!(
        "{FAST}ca_file = {:?}\n[relay]\nhost = \"127.0.0.1:{}\"\nusername = \"alice@example.test\"\npassword = \"relay-secret\"\ntls = \"require\"\n[routes]\n\"nx.test\" = \"nx.test:25\"\n",
        s(&ca),
        relay.port("submission")
    );
    let sender = Server::start_with_top(&sdir, &top, &extra);
    submit(&sender, "bob@remote.test", "via the relay");
    submit(&sender, "someone@nx.test", "to nowhere");
    queue_until(&sdata, Duration::from_secs(30), |l| l.contains("the queue is empty"));
    sender.stop();
    relay.stop();
    let rstore = Store::open(&rdata, Options::default()).unwrap();
    let bob = inbox(&rstore, "bob@remote.test");
    assert_eq!(bob.len(), 1);
    assert!(bob[0].contains("Subject: via the relay"), "{}", bob[0]);
    assert!(bob[0].contains("with ESMTPSA"), "authenticated over TLS at the relay: {}", bob[0]);
    drop(rstore);
    let sstore = Store::open(&sdata, Options::default()).unwrap();
    let alice = inbox(&sstore, "alice@example.test");
    assert_eq!(alice.len(), 1, "the bounce for nx.test");
    let status = &report_parts(&alice[0])[1].1;
    assert!(
        status.contains("Final-Recipient: rfc822; someone@nx.test") && status.contains("Status: 5.4.4"),
        "{status}"
    );
    assert!(report_parts(&alice[0])[0].1.contains("Host not found"), "{}", alice[0]);
}

#[test]
fn an_alias_forwarding_to_a_remote_address_queues_a_copy_with_the_original_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    run_ok(&data, &["alias", "add", "team@example.test", "bob@example.test", "carol@remote.test"], None);
    let sink = Sink::start(&tmp.path().join("sink"), None, &[]);
    let server = Server::start(tmp.path(), &format!("{FAST}[routes]\n\"remote.test\" = \"127.0.0.1:{}\"\n", sink.port));
    // From the world, on the MX listener: no authentication needed for a local alias.
    let port = server.port("smtp").to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "--helo", "mx.sender.test"])
        .args(["--from", "dora@sender.test", "--to", "team@example.test", "--header", "Subject: for the team"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stdout));
    let got = sink.wait_for(1, Duration::from_secs(30));
    let m = &got[0];
    assert!(m.contains("X-Rcpt-Args: <carol@remote.test>"), "{m}");
    assert!(m.contains("ORCPT=rfc822;team@example.test"), "the alias is the original recipient: {m}");
    assert!(m.contains("X-Mail-Args: <dora@sender.test>"), "the original envelope sender: {m}");
    queue_until(&data, Duration::from_secs(10), |l| l.contains("the queue is empty"));
    server.stop();
    let store = Store::open(&data, Options::default()).unwrap();
    assert_eq!(inbox(&store, "bob@example.test").len(), 1, "the local member got it too");
}

#[test]
fn dkim_keys_are_listed_shown_replaced_and_deleted_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let data = tmp.path().join("data");
    let dkim = |args: &[&str]| postlog().arg("dkim").args(args).args(["--data", s(&data)]).output().unwrap();
    let out = dkim(&["generate", "example.test", "--algorithm", "ed25519", "--selector", "s2026"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record = text(&out.stdout);
    assert!(record.contains("s2026._domainkey.example.test. IN TXT ( \"v=DKIM1; k=ed25519; p="), "{record}");
    assert_eq!(text(&dkim(&["show", "example.test"]).stdout), record, "show prints the same record");
    assert!(text(&dkim(&["list"]).stdout).contains("example.test selector s2026 (ed25519-sha256)"));
    // Only local domains, and only known algorithms.
    let out = dkim(&["generate", "elsewhere.test"]);
    assert!(!out.status.success() && text(&out.stderr).contains("elsewhere.test is not a local domain"));
    let out = dkim(&["generate", "example.test", "--algorithm", "dsa"]);
    assert!(!out.status.success() && text(&out.stderr).contains("is not an algorithm"));
    // While the server runs, through its control socket; a new key replaces the old.
    let server = Server::start(tmp.path(), "");
    let out = dkim(&["generate", "example.test"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&dkim(&["list"]).stdout).contains("example.test selector postlog (rsa-sha256)"));
    assert!(dkim(&["del", "example.test"]).status.success());
    let out = dkim(&["show", "example.test"]);
    assert!(!out.status.success() && text(&out.stderr).contains("example.test has no DKIM key"));
    server.stop();
}
