//! Postfix against Postlog: a real Postfix instance (its own config and queue directories, on a
//! loopback port; the system's Postfix is not touched) relaying to Postlog over SMTP (with
//! STARTTLS) and over LMTP, and Postfix's `smtp-source` sending at volume; every message is
//! then counted in the store.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, free_ports, postlog, s, text};
use postlog_engine::{Options, Store};

fn run(args: &[&str], data: &Path, stdin: Option<&str>) {
    let mut c = postlog();
    c.args(args).args(["--data", s(data)]);
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "postlog {args:?}: {}", text(&out.stderr));
}

/// example.test (alice, bob) and second.test (carol).
fn setup(dir: &Path) {
    let data = dir.join("data");
    run(&["domain", "add", "example.test"], &data, None);
    run(&["domain", "add", "second.test"], &data, None);
    for user in ["alice@example.test", "bob@example.test", "carol@second.test"] {
        run(&["user", "add", user, "--password-stdin"], &data, Some("secret"));
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs postfix)"));
    assert!(out.status.success(), "{cmd:?}:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A Postfix instance of its own: config in `dir/etc`, queue in `dir/spool`, log in
/// `dir/maillog`, smtpd on 127.0.0.1:`port`.
struct Postfix {
    etc: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Postfix {
    fn start(dir: &Path, port: u16, settings: &[String]) -> Postfix {
        // Postfix's daemons run as the postfix user: they must reach the queue directory
        // (temporary directories are created 0700).
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        for p in dir.ancestors() {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            if mode & 0o001 != 0 {
                break;
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        }
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for f in ["main.cf", "master.cf"] {
            std::fs::copy(Path::new("/etc/postfix").join(f), etc.join(f)).unwrap();
        }
        let master = std::fs::read_to_string(etc.join("master.cf")).unwrap();
        let master: String = master
            .lines()
            .map(|l| {
                if l.starts_with("smtp      inet") {
                    format!("127.0.0.1:{port} inet n - n - - smtpd")
                } else {
                    l.to_string()
                }
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(etc.join("master.cf"), master).unwrap();
        let log = dir.join("maillog");
        let mut params = vec![
            format!("queue_directory={}", s(&dir.join("spool"))),
            format!("data_directory={}", s(&dir.join("lib"))),
            format!("maillog_file={}", s(&log)),
            format!("maillog_file_prefixes={}", s(dir)),
            "compatibility_level=3.6".into(),
            "inet_interfaces=127.0.0.1".into(),
            "inet_protocols=ipv4".into(),
            "myhostname=relay.postfix.test".into(),
            "mydestination=".into(),
            "mynetworks=127.0.0.0/8".into(),
            "alias_maps=".into(),
            "alias_database=".into(),
            "smtp_host_lookup=native".into(),
            "disable_dns_lookups=yes".into(),
            "smtputf8_enable=yes".into(),
        ];
        params.extend(settings.iter().cloned());
        let mut c = Command::new("postconf");
        c.arg("-c").arg(&etc).arg("-e").args(&params);
        sh(&mut c);
        sh(Command::new("postconf").arg("-c").arg(&etc).args(["-F", "*/*/chroot = n"]));
        // The queue directory (root's; Postfix makes its subdirectories) and the data directory
        // (the postfix user's) must exist.
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        sh(Command::new("chown").arg("postfix").arg(dir.join("lib")));
        sh(Command::new("postfix").arg("-c").arg(&etc).arg("start"));
        let pf = Postfix { etc, log, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "postfix did not start listening:\n{}", pf.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix").arg("-c").arg(&self.etc).arg("abort").output();
    }
}

/// Sends one message over SMTP; panics on any refusal.
fn send(port: u16, from: &str, to: &[&str], subject: &str) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut expect = |code: &str| {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("220");
    w.write_all(b"EHLO tester\r\n").unwrap();
    expect("250");
    w.write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes()).unwrap();
    expect("250");
    for rcpt in to {
        w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).unwrap();
        expect("250");
    }
    w.write_all(b"DATA\r\n").unwrap();
    expect("354");
    let body = format!("From: {from}\r\nTo: {}\r\nSubject: {subject}\r\n\r\nThrough Postfix.\r\n.\r\n", to.join(", "));
    w.write_all(body.as_bytes()).unwrap();
    expect("250");
    w.write_all(b"QUIT\r\n").unwrap();
    expect("221");
}

/// A counter of Postlog's /metrics page.
fn metric(server: &Server, series: &str) -> f64 {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", server.ports["http"])) else { return -1.0 };
    let _ = write!(tcp, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut page = String::new();
    let _ = tcp.read_to_string(&mut page);
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

fn wait_for(server: &Server, series: &str, n: f64, pf: &Postfix) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(server, series) < n {
        assert!(Instant::now() < deadline, "{series} never reached {n}; postfix log:\n{}", pf.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inbox_subjects(store: &Store, user: &str) -> Vec<String> {
    let account = store.account_id(user).unwrap();
    let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
    store
        .messages(account, mailbox)
        .unwrap()
        .iter()
        .map(|m| text(&store.read_message(account, mailbox, m.uid).unwrap()))
        .collect()
}

#[test]
fn postfix_relays_over_smtp_and_lmtp() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    let vmailbox = tmp.path().join("vmailbox");
    std::fs::write(&vmailbox, "alice@example.test x\nbob@example.test x\n").unwrap();
    let port = free_ports(1)[0];
    let pf = Postfix::start(
        &tmp.path().join("postfix"),
        port,
        &[
            // example.test: LMTP into Postlog; everything else: relayed over SMTP, STARTTLS if offered.
            "virtual_mailbox_domains=example.test".into(),
            format!("virtual_mailbox_maps=texthash:{}", s(&vmailbox)),
            format!("virtual_transport=lmtp:inet:127.0.0.1:{}", server.ports["lmtp"]),
            format!("relayhost=[127.0.0.1]:{}", server.ports["smtp"]),
            "smtp_tls_security_level=may".into(),
            "smtp_tls_loglevel=1".into(),
        ],
    );
    for i in 0..10 {
        send(pf.port, "sender@outside.test", &["alice@example.test", "bob@example.test"], &format!("via lmtp {i}"));
        send(pf.port, "sender@outside.test", &["carol@second.test"], &format!("via smtp {i}"));
    }
    wait_for(&server, "postlog_smtp_messages_total{listener=\"lmtp\",result=\"delivered\"}", 10.0, &pf);
    wait_for(&server, "postlog_smtp_messages_total{listener=\"smtp\",result=\"delivered\"}", 10.0, &pf);
    let log = pf.log();
    assert!(log.contains("status=sent (250 2.0.0 <alice@example.test> Ok: delivered as "), "{log}");
    assert!(
        log.contains("Anonymous TLS connection established to 127.0.0.1")
            || log.contains("TLS connection established to 127.0.0.1"),
        "{log}"
    );
    drop(pf);

    let data = server.data.clone();
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    let store = Store::open(&data, Options::default()).unwrap();
    let (alice, bob, carol) = (
        inbox_subjects(&store, "alice@example.test"),
        inbox_subjects(&store, "bob@example.test"),
        inbox_subjects(&store, "carol@second.test"),
    );
    assert_eq!((alice.len(), bob.len(), carol.len()), (10, 10, 10));
    assert!(alice.iter().all(|m| m.contains("Subject: via lmtp ") && m.contains(" with LMTP id ")));
    assert!(carol.iter().all(|m| m.contains("Subject: via smtp ") && m.contains(" with ESMTPS id ")), "{}", carol[0]);
    assert!(carol[0].contains("\r\n\t(using TLSv1.3 with cipher "), "{}", carol[0]);
    // Postfix's own Received field is below ours.
    assert!(carol[0].contains("by relay.postfix.test (Postfix) with ESMTP"), "{}", carol[0]);
}

#[test]
fn smtp_source_at_volume_every_message_counted() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    let target = format!("127.0.0.1:{}", server.ports["smtp"]);
    for (sessions, messages, size, rcpt) in
        [("16", "1000", "4096", "alice@example.test"), ("4", "200", "65536", "bob@example.test")]
    {
        let out = Command::new("smtp-source")
            .args(["-s", sessions, "-m", messages, "-l", size, "-f", "load@outside.test", "-t", rcpt, "-d", &target])
            .output()
            .expect("smtp-source runs (scripts/test.sh installs postfix)");
        assert!(out.status.success(), "smtp-source: {}{}", text(&out.stdout), text(&out.stderr));
    }
    let data = server.data.clone();
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
    let store = Store::open(&data, Options::default()).unwrap();
    let count = |user: &str| {
        let account = store.account_id(user).unwrap();
        let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
        store.messages(account, mailbox).unwrap()
    };
    let (alice, bob) = (count("alice@example.test"), count("bob@example.test"));
    assert_eq!((alice.len(), bob.len()), (1000, 200));
    assert!(bob.iter().all(|m| m.size > 65536), "trace fields added to every message");
}
