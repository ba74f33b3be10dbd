//! End-to-end tests of the server frame: the real `postlog serve` on 127.0.0.1 ports the test
//! picks, real TLS handshakes (rustls on the client side), limits, /metrics, config errors,
//! shutdown.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

use common::{HOST, LISTENERS, Server, postlog, s};

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp
}

/// Reads one CRLF-terminated line.
fn read_line(r: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("reading a line: {e} (so far {:?})", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8(line).unwrap()
}

/// Whether the peer closes (EOF, or a reset) without sending more.
fn closes_without_more(r: &mut impl Read) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof) && rest.is_empty(),
    }
}

fn tls_client(trusted: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn certs_of(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().unwrap()
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects with TLS from the first byte and completes the handshake.
fn tls_connect(port: u16, config: &Arc<rustls::ClientConfig>, name: &str) -> Result<TlsStream, std::io::Error> {
    let conn = rustls::ClientConnection::new(config.clone(), ServerName::try_from(name.to_string()).unwrap())
        .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, connect(port));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The first line each listener sends (every mail listener has its front end now: each greets
/// and then waits for the client's goodbye).
fn greeting(key: &str) -> String {
    match key {
        "smtp" | "submission" | "submissions" => format!("220 {HOST} ESMTP Postlog\r\n"),
        "lmtp" => format!("220 {HOST} LMTP Postlog\r\n"),
        "imap" | "imaps" => format!("* OK [CAPABILITY IMAP4rev1 ... ] {HOST} Postlog IMAP ready\r\n"),
        "pop3" | "pop3s" => format!("+OK {HOST} Postlog POP3 server ready\r\n"),
        _ => unreachable!(),
    }
}

/// Checks a listener's first line (IMAP's greeting lists capabilities: compared by its ends).
fn assert_greeting(key: &str, line: &str) {
    let expected = greeting(key);
    if key.starts_with("imap") {
        assert!(line.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{key}: {line}");
        assert!(line.ends_with(&format!("] {HOST} Postlog IMAP ready\r\n")), "{key}: {line}");
    } else {
        assert_eq!(line, expected, "{key}");
    }
}

/// SMTP, IMAP and POP3 sessions stay open after the greeting: say goodbye and read the answer.
fn say_goodbye(key: &str, stream: &mut (impl Read + Write)) {
    if matches!(key, "smtp" | "submission" | "submissions" | "lmtp") {
        stream.write_all(b"QUIT\r\n").unwrap();
        stream.flush().unwrap();
        assert_eq!(read_line(stream), "221 2.0.0 Bye\r\n", "{key}");
    }
    if key.starts_with("imap") {
        stream.write_all(b"a LOGOUT\r\n").unwrap();
        stream.flush().unwrap();
        assert_eq!(read_line(stream), "* BYE Logging out\r\n", "{key}");
        assert_eq!(read_line(stream), "a OK LOGOUT completed\r\n", "{key}");
    }
    if key.starts_with("pop3") {
        stream.write_all(b"QUIT\r\n").unwrap();
        stream.flush().unwrap();
        assert_eq!(read_line(stream), format!("+OK {HOST} POP3 server signing off\r\n"), "{key}");
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`: (status, body); status 0 when the
/// connection failed (e.g. refused by a limit).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut tcp = connect(port);
    let mut response = String::new();
    let sent = write!(tcp, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if sent.is_err() || tcp.read_to_string(&mut response).is_err() {
        return (0, String::new());
    }
    let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of one series in a Prometheus text page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls /metrics until `ok` holds (the server counts asynchronously); returns the page.
fn metrics_until(port: u16, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = http_get(port, "/metrics");
        if status == 200 && ok(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "metrics never matched; last page ({status}):\n{page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_listener_greets_over_tls_with_the_generated_kept_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), "");
    let (cert_path, key_path) = (server.data.join("tls/cert.pem"), server.data.join("tls/key.pem"));
    let cert_pem = fs::read(&cert_path).expect("the certificate is generated in <data_dir>/tls/");
    let key_pem = fs::read(&key_path).unwrap();
    assert!(server.log.iter().any(|l| l.contains("self-signed certificate generated now")), "{:?}", server.log);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&key_path).unwrap().permissions().mode() & 0o077, 0, "the key is private");
    let trusted = tls_client(&certs_of(&cert_pem));

    for key in ["submissions", "imaps", "pop3s"] {
        let mut tls = tls_connect(server.port(key), &trusted, "localhost").unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let presented = tls.conn.peer_certificates().unwrap()[0].clone();
        assert_eq!(presented, certs_of(&cert_pem)[0], "{key} presents the generated certificate");
        assert_greeting(key, &read_line(&mut tls));
        say_goodbye(key, &mut tls);
        assert!(closes_without_more(&mut tls), "{key} closes after its reply");
    }
    for key in ["smtp", "submission", "lmtp", "imap", "pop3"] {
        let mut tcp = connect(server.port(key));
        assert_greeting(key, &read_line(&mut tcp));
        say_goodbye(key, &mut tcp);
        assert!(closes_without_more(&mut tcp), "{key} closes after its reply");
    }
    // A client that does not trust the certificate fails the handshake.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let distrusting = tls_client(&[other.cert.der().clone()]);
    assert!(tls_connect(server.port("imaps"), &distrusting, "localhost").is_err());

    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));

    // Restarted: the same certificate and key, served again.
    let server = Server::start(tmp.path(), "");
    assert!(server.log.iter().any(|l| l.contains("generated on first start")), "{:?}", server.log);
    assert_eq!(fs::read(&cert_path).unwrap(), cert_pem, "the certificate is kept across restarts");
    assert_eq!(fs::read(&key_path).unwrap(), key_pem, "the key is kept across restarts");
    let mut tls = tls_connect(server.port("pop3s"), &trusted, "localhost").unwrap();
    assert_greeting("pop3s", &read_line(&mut tls));
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_configured_certificate_and_key_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let own = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
    let (cert, key) = (tmp.path().join("own-cert.pem"), tmp.path().join("own-key.pem"));
    fs::write(&cert, own.cert.pem()).unwrap();
    fs::write(&key, own.signing_key.serialize_pem()).unwrap();
    let server = Server::start(tmp.path(), &format!("[tls]\ncert = {:?}\nkey = {:?}\n", s(&cert), s(&key)));
    assert!(server.log.iter().any(|l| l.contains("(tls.cert)")), "{:?}", server.log);

    let trusted = tls_client(&[own.cert.der().clone()]);
    for key in ["imaps", "pop3s", "submissions"] {
        let mut tls = tls_connect(server.port(key), &trusted, HOST).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_greeting(key, &read_line(&mut tls));
    }
    // The certificate is for mail.example.test only.
    assert!(tls_connect(server.port("imaps"), &trusted, "other.example.test").is_err());
    assert!(!server.data.join("tls").exists(), "no certificate is generated when one is configured");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn metrics_count_connections_and_logs_are_json_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), "[log]\nformat = \"json\"\n");
    let (imap, imaps, http) = (server.port("imap"), server.port("imaps"), server.port("http"));
    let (status, body) = http_get(http, "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(http, "/nothing-here").0, 404);

    for _ in 0..3 {
        let mut tcp = connect(imap);
        assert_greeting("imap", &read_line(&mut tcp));
    }
    let cert = fs::read(server.data.join("tls/cert.pem")).unwrap();
    let mut tls = tls_connect(imaps, &tls_client(&certs_of(&cert)), "localhost").unwrap();
    assert_greeting("imaps", &read_line(&mut tls));
    // Plain text on the implicit-TLS port: a failed handshake.
    let mut bad = connect(imaps);
    bad.write_all(b"a001 CAPABILITY\r\n").unwrap();
    let _ = bad.read(&mut [0u8; 64]);

    let page = metrics_until(http, |p| {
        metric(p, "postlog_tls_handshake_failures_total{listener=\"imaps\"}") == Some(1.0)
            && metric(p, "postlog_connections_active{listener=\"imap\"}") == Some(0.0)
            // Earlier HTTP connections may still be closing on a busy machine.
            && metric(p, "postlog_connections_active{listener=\"http\"}") == Some(1.0)
    });
    assert_eq!(metric(&page, "postlog_connections_accepted_total{listener=\"imap\"}"), Some(3.0), "{page}");
    assert_eq!(metric(&page, "postlog_sessions_total{listener=\"imap\"}"), Some(3.0));
    assert_eq!(metric(&page, "postlog_connections_accepted_total{listener=\"imaps\"}"), Some(2.0));
    assert_eq!(metric(&page, "postlog_sessions_total{listener=\"imaps\"}"), Some(1.0));
    assert_eq!(metric(&page, "postlog_connections_accepted_total{listener=\"smtp\"}"), Some(0.0));
    assert!(metric(&page, "postlog_connections_accepted_total{listener=\"http\"}").unwrap() >= 3.0);
    assert_eq!(metric(&page, "postlog_connections_active{listener=\"http\"}"), Some(1.0), "this request");
    assert_eq!(metric(&page, "postlog_connections_refused_total{listener=\"imap\",reason=\"per_ip\"}"), Some(0.0));
    for family in [
        "postlog_store_commit_batches_total",
        "postlog_store_commit_transactions_total",
        "postlog_store_written_bytes_total",
        "postlog_store_sync_seconds_total",
    ] {
        assert!(page.contains(&format!("# TYPE {family} counter\n")), "{family}:\n{page}");
        assert!(metric(&page, family).is_some(), "{family}:\n{page}");
    }
    assert!(page.contains("# TYPE postlog_auth_failures_total counter\n"));

    server.wait_for_log("tls handshake failed", Duration::from_secs(10));
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0));
    let events: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let connects: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["message"] == "connect" && e["listener"] == "imap").collect();
    assert_eq!(connects.len(), 3, "{log:?}");
    assert_eq!(connects[0]["level"], "INFO");
    assert_eq!(connects[0]["tls"], "none");
    assert!(connects[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let tls_connect =
        events.iter().find(|e| e["message"] == "connect" && e["listener"] == "imaps").expect("an imaps connect");
    assert_eq!(tls_connect["tls"], "TLSv1.3");
    assert!(tls_connect["cipher"].as_str().unwrap().starts_with("TLS_"));
    let disconnects = events.iter().filter(|e| e["message"] == "disconnect" && e["listener"] == "imap").count();
    assert_eq!(disconnects, 3);
    assert!(events.iter().any(|e| e["message"] == "tls handshake failed" && e["level"] == "WARN"));
}

#[test]
fn connection_limits_refuse_with_the_protocols_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "[limits]\nmax_connections_per_ip = 2\n[timeouts]\nhttp = 60\n";
    let mut server = Server::start(&tmp.path().join("a"), extra);
    let http = server.port("http");
    // Two idle HTTP connections fill this address's places.
    let held: Vec<TcpStream> = (0..2).map(|_| connect(http)).collect();
    server.wait_for_connects("http", 2);
    let refused = [
        ("imap", "* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n".to_string()),
        ("smtp", format!("421 4.7.0 {HOST} Too many connections from your address, try again later\r\n")),
        ("lmtp", format!("421 4.7.0 {HOST} Too many connections from your address, try again later\r\n")),
        ("pop3", "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n".to_string()),
    ];
    for (key, reply) in &refused {
        let mut tcp = connect(server.port(key));
        assert_eq!(&read_line(&mut tcp), reply, "{key}");
        assert!(closes_without_more(&mut tcp), "{key}");
    }
    // On an implicit-TLS port the refusal is a close, not a handshake.
    let mut tcp = connect(server.port("imaps"));
    assert!(closes_without_more(&mut tcp));

    drop(held);
    let page = metrics_until(http, |p| metric(p, "postlog_connections_active{listener=\"http\"}") == Some(1.0));
    for key in ["imap", "smtp", "lmtp", "pop3", "imaps"] {
        let series = format!("postlog_connections_refused_total{{listener=\"{key}\",reason=\"per_ip\"}}");
        assert_eq!(metric(&page, &series), Some(1.0), "{series}\n{page}");
    }
    assert_eq!(metric(&page, "postlog_sessions_total{listener=\"imap\"}"), Some(0.0));
    // The places are free again.
    let mut tcp = connect(server.port("imap"));
    assert_greeting("imap", &read_line(&mut tcp));
    let (status, log) = server.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "SIGINT stops cleanly too");
    assert!(log.iter().any(|l| l.contains("received SIGINT")), "{log:?}");
    let refusals = log
        .iter()
        .filter(|l| l.contains("refused: too many connections from this address") && !l.contains("listener=http"))
        .count();
    assert_eq!(refusals, 5, "{log:?}");

    // The total limit, with its own reply.
    let mut server = Server::start(&tmp.path().join("b"), "[limits]\nmax_connections = 1\n");
    let held = connect(server.port("http"));
    server.wait_for_connects("http", 1);
    let mut tcp = connect(server.port("smtp"));
    assert_eq!(read_line(&mut tcp), format!("421 4.3.2 {HOST} Too many connections, try again later\r\n"));
    let mut tcp = connect(server.port("imap"));
    assert_eq!(read_line(&mut tcp), "* BYE [UNAVAILABLE] Too many connections, try again later\r\n");
    drop(held);
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn idle_connections_are_closed_after_the_protocols_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), "[timeouts]\nhttp = 1\n");
    let mut tcp = connect(server.port("http"));
    let started = Instant::now();
    assert!(closes_without_more(&mut tcp));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    // A connection that keeps talking is not idle: two requests 600 ms apart on one connection.
    let mut tcp = connect(server.port("http"));
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(600));
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn config_errors_stop_the_start_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let all_off: String = LISTENERS.iter().map(|k| format!("{k} = \"off\"\n")).collect();
    let missing = tmp.path().join("missing.pem");
    let cases: Vec<(String, Vec<String>)> = vec![
        ("[limits]\nmax_conections = 5\n".into(), vec!["max_conections".into()]),
        ("[listen]\nimap = \"127.0.0.1:70000\"\n".into(), vec!["listen.imap".into()]),
        ("[listen]\nimap = \"127.0.0.1:0\"\n".into(), vec!["listen.imap".into()]),
        ("[tls]\ncert = \"/etc/ssl/some.pem\"\n".into(), vec!["tls.key".into()]),
        ("[tls]\nkey = \"/etc/ssl/some.key\"\n".into(), vec!["tls.cert".into()]),
        (
            format!("[listen]\n{all_off}[tls]\ncert = {:?}\nkey = {:?}\n", s(&missing), s(&missing)),
            vec!["tls.cert".into(), s(&missing).into()],
        ),
        ("[timeouts]\nsmtp = \"5m\"\n".into(), vec!["timeouts.smtp".into()]),
        ("[quota]\ndefault = \"lots\"\n".into(), vec!["quota.default".into()]),
        ("[auth]\nplaintext_on_loopback = 1\n".into(), vec!["auth.plaintext_on_loopback".into()]),
        ("[log]\nlevel = \"loud\"\n".into(), vec!["log.level".into()]),
        ("[store]\nzstd_level = 22\n".into(), vec!["store.zstd_level".into(), "-7 to 19".into()]),
        (
            format!("[listen]\n{}", all_off.replace("pop3 = \"off\"", &format!("pop3 = \"127.0.0.1:{taken_port}\""))),
            vec!["listen.pop3".into(), format!("127.0.0.1:{taken_port}"), "in use".into()],
        ),
    ];
    for (i, (body, needles)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("{i}.toml"));
        fs::write(&path, format!("data_dir = {:?}\n{body}", s(&data))).unwrap();
        let out = postlog().args(["serve", "--config", s(&path)]).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body:?}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle.as_str()), "{body:?}: {needle:?} not in: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    drop(taken);
}

#[test]
fn sigterm_stops_accepting_closes_the_store_with_a_snapshot_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = postlog().args(["account", "add", "alice@example.test", "--data", s(&data)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Recovery must replay something, so that a snapshot at close is visible.
    fs::remove_file(data.join("index.snap")).unwrap();

    let mut server = Server::start(tmp.path(), "[timeouts]\nshutdown_grace = 20\n");
    let first = server.log[0].clone();
    assert!(first.contains("store open in") && first.contains("1 accounts"), "{first}");
    assert!(first.contains("replayed") && !first.contains("replayed 0 records"), "{first}");
    let http = server.port("http");
    // An idle keep-alive HTTP connection does not hold the shutdown up.
    let idle = connect(http);
    server.wait_for_connects("http", 1);
    let imap = server.port("imap");
    let started = Instant::now();
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "idle sessions end at once: {:?}", started.elapsed());
    drop(idle);
    for needle in ["received SIGTERM: no new connections; 1 sessions", "store closed cleanly (snapshot written)"] {
        assert!(log.iter().any(|l| l.contains(needle)), "{needle}: {log:?}");
    }
    assert!(TcpStream::connect(("127.0.0.1", imap)).is_err(), "nothing listens after the exit");

    let store = postlog_engine::Store::open(&data, postlog_engine::Options::default()).unwrap();
    assert!(store.recovery_report().snapshot_used, "the clean close wrote a snapshot");
    assert_eq!(store.recovery_report().records_replayed, 0);
    // The outbound queue's system account (#queue) aside.
    assert_eq!(store.accounts().iter().filter(|(_, name)| !name.starts_with('#')).count(), 1);
}

#[test]
fn the_example_config_loads_and_documents_every_key() {
    use postlog_server::config::{Config, KEYS};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example_path = root.join("postlog.example.toml");
    let example = Config::load(&example_path).unwrap_or_else(|e| panic!("{e}"));
    let defaults = Config::defaults();
    assert_eq!(example.hostname, HOST);
    // The example shows the defaults, so it doubles as their reference.
    assert_eq!(example.listen, defaults.listen);
    assert_eq!(example.tls, defaults.tls);
    assert_eq!(example.limits, defaults.limits);
    assert_eq!(example.timeouts, defaults.timeouts);
    assert_eq!(example.auth, defaults.auth);
    assert_eq!(example.quota, defaults.quota);
    assert_eq!(example.log, defaults.log);
    assert_eq!(example.queue, defaults.queue);
    assert_eq!(example.store, defaults.store);
    assert_eq!((example.resolver, &example.relay, example.routes.len()), (None, &None, 0));

    let example_text = fs::read_to_string(&example_path).unwrap();
    let docs = fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    for key in KEYS {
        let (table, name) = match key.split_once('.') {
            Some((t, n)) => (Some(t), n),
            None => (None, key),
        };
        if let Some(t) = table {
            assert!(example_text.contains(&format!("[{t}]")), "example lacks [{t}]");
        }
        let in_example = example_text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{name} =")) || l.starts_with(name) && name.starts_with('[')
        });
        assert!(in_example, "postlog.example.toml does not show {key}");
        assert!(docs.contains(&format!("`{key}`")), "docs/configuration.md does not document `{key}`");
    }
}
