//! Runs the `smtpload` binary against a small SMTP/LMTP sink on loopback and checks that what
//! the sink received is what the JSON line reports: counts, sizes, unique Message-IDs, DATA or
//! BDAT, pipelined groups, per-recipient LMTP replies, rejections, dropped connections and
//! AUTH PLAIN.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// How the sink behaves.
#[derive(Clone, Copy, Default)]
struct SinkOptions {
    lmtp: bool,
    /// Reply 451 to the content of every n-th message.
    reject_every: Option<u64>,
    /// Close the connection instead of replying to the content of every n-th message.
    drop_every: Option<u64>,
    /// Advertise AUTH PLAIN and take mail only after a login as alice@example.test, password
    /// `se:cret`.
    auth: bool,
}

/// `AUTH PLAIN` with the initial response for alice@example.test / `se:cret`.
const ALICE: &str = "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZTpjcmV0";

/// What the sink saw.
#[derive(Default)]
struct SinkLog {
    messages: AtomicU64,
    data_commands: AtomicU64,
    bdat_commands: AtomicU64,
    /// MAIL commands that arrived with more commands already behind them in the same read.
    pipelined_groups: AtomicU64,
    rcpts: AtomicU64,
    connections: AtomicU64,
    /// Successful and refused AUTH commands.
    logins: AtomicU64,
    refused_logins: AtomicU64,
    contents: Mutex<Vec<Vec<u8>>>,
}

struct Sink {
    /// Serves the sink until the test ends.
    _runtime: Runtime,
    addr: SocketAddr,
    log: Arc<SinkLog>,
}

impl Sink {
    fn start(options: SinkOptions) -> Sink {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(SinkLog::default());
        let accept_log = Arc::clone(&log);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                accept_log.connections.fetch_add(1, Ordering::Relaxed);
                let log = Arc::clone(&accept_log);
                tokio::spawn(async move {
                    let _ = serve(stream, options, &log).await;
                });
            }
        });
        Sink { _runtime: runtime, addr, log }
    }

    /// Runs smtpload against the sink with `--json --quiet` and `args`; returns its exit code
    /// and JSON line.
    fn run(&self, args: &[&str]) -> (i32, Value) {
        let output = smtpload(&[&["--server", &self.addr.to_string(), "--json", "--quiet"], args].concat());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", stderr(&output)));
        let json = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        (output.status.code().expect("smtpload exited by a signal"), json)
    }

    fn count(&self, counter: impl Fn(&SinkLog) -> &AtomicU64) -> u64 {
        counter(&self.log).load(Ordering::Relaxed)
    }

    fn contents(&self) -> Vec<Vec<u8>> {
        self.log.contents.lock().unwrap().clone()
    }
}

fn smtpload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtpload")).args(args).output().expect("cannot run smtpload")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn serve(stream: TcpStream, options: SinkOptions, log: &SinkLog) -> std::io::Result<()> {
    // Replies are written one by one; Nagle would hold each second one for the client's ACK.
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = Vec::new();
    let mut rcpts = 0;
    let mut chunks = Vec::new();
    let mut logged_in = false;
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        assert!(line.ends_with(b"\r\n"), "command without CRLF: {line:?}");
        let command = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let mut words = command.split(' ');
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let content = match verb.as_str() {
            "EHLO" | "LHLO" => {
                assert_eq!(verb == "LHLO", options.lmtp, "greeting verb {verb}");
                if options.auth {
                    write.write_all(b"250-sink.test\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n").await?;
                } else {
                    write
                        .write_all(b"250-sink.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 100000000\r\n")
                        .await?;
                }
                continue;
            }
            "AUTH" => {
                assert!(read.buffer().is_empty(), "AUTH is never pipelined");
                if options.auth && command == ALICE && !logged_in {
                    logged_in = true;
                    log.logins.fetch_add(1, Ordering::Relaxed);
                    write.write_all(b"235 2.7.0 Authentication successful\r\n").await?;
                } else {
                    log.refused_logins.fetch_add(1, Ordering::Relaxed);
                    write.write_all(b"535 5.7.8 Error: authentication failed\r\n").await?;
                }
                continue;
            }
            "MAIL" if options.auth && !logged_in => {
                write.write_all(b"530 5.7.0 Authentication required\r\n").await?;
                continue;
            }
            "MAIL" => {
                if !read.buffer().is_empty() {
                    log.pipelined_groups.fetch_add(1, Ordering::Relaxed);
                }
                rcpts = 0;
                chunks.clear();
                write.write_all(b"250 2.1.0 ok\r\n").await?;
                continue;
            }
            "RCPT" => {
                rcpts += 1;
                log.rcpts.fetch_add(1, Ordering::Relaxed);
                write.write_all(b"250 2.1.5 ok\r\n").await?;
                continue;
            }
            "DATA" => {
                log.data_commands.fetch_add(1, Ordering::Relaxed);
                write.write_all(b"354 go ahead\r\n").await?;
                read_data(&mut read).await?
            }
            "BDAT" => {
                log.bdat_commands.fetch_add(1, Ordering::Relaxed);
                let size: usize = words.next().and_then(|w| w.parse().ok()).expect("BDAT size");
                let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
                let start = chunks.len();
                chunks.resize(start + size, 0);
                read.read_exact(&mut chunks[start..]).await?;
                if !last {
                    write.write_all(b"250 2.0.0 chunk ok\r\n").await?;
                    continue;
                }
                std::mem::take(&mut chunks)
            }
            "RSET" | "NOOP" => {
                write.write_all(b"250 2.0.0 ok\r\n").await?;
                continue;
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => {
                write.write_all(b"500 5.5.1 unknown command\r\n").await?;
                continue;
            }
        };
        log.contents.lock().unwrap().push(content);
        let n = log.messages.fetch_add(1, Ordering::Relaxed) + 1;
        if options.drop_every.is_some_and(|k| n.is_multiple_of(k)) {
            return Ok(());
        }
        let reply: &[u8] = if options.reject_every.is_some_and(|k| n.is_multiple_of(k)) {
            b"451 4.3.0 try again later\r\n"
        } else {
            b"250 2.0.0 queued\r\n"
        };
        for _ in 0..if options.lmtp { rcpts } else { 1 } {
            write.write_all(reply).await?;
        }
    }
}

/// The lines after DATA up to the `.` line, un-dot-stuffed.
async fn read_data(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<Vec<u8>> {
    let mut content = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(content);
        }
        let unstuffed = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        content.extend_from_slice(unstuffed);
    }
}

fn message_ids(contents: &[Vec<u8>]) -> HashSet<String> {
    contents
        .iter()
        .filter_map(|c| {
            let text = String::from_utf8_lossy(c);
            text.lines().find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned))
        })
        .collect()
}

/// Every line of every content ends in CRLF, with no bare CR or LF anywhere.
fn assert_crlf(contents: &[Vec<u8>]) {
    for content in contents {
        assert!(content.ends_with(b"\r\n"));
        for (i, &b) in content.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR"),
                b'\n' => assert_eq!(content.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF"),
                _ => {}
            }
        }
    }
}

/// 200 generated messages over 4 sessions with `flags`: all accepted and received intact.
fn check_generated_run(flags: &[&str]) -> Sink {
    let sink = Sink::start(SinkOptions::default());
    let (code, json) = sink.run(&[&["-n", "200", "-c", "4"], flags].concat());
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["messages_ok"], 200, "{json}");
    assert_eq!(json["messages_failed"], 0, "{json}");
    assert_eq!(json["connection_errors"], 0, "{json}");
    assert_eq!(json["connections"], 4);
    assert_eq!(json["size"], 4096);
    assert!(json["msgs_per_s"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["latency_ms"]["max"].as_f64().unwrap() >= json["latency_ms"]["p50"].as_f64().unwrap());
    assert_eq!(sink.count(|l| &l.messages), 200);
    let contents = sink.contents();
    assert!(contents.iter().all(|c| c.len() == 4096), "every message is --size bytes");
    assert_crlf(&contents);
    assert_eq!(message_ids(&contents).len(), 200, "Message-IDs are unique");
    // 100 messages per connection by default: 200 messages over 4 sessions need at least 4.
    assert!(sink.count(|l| &l.connections) >= 4);
    sink
}

#[test]
fn data_one_command_at_a_time() {
    let sink = check_generated_run(&[]);
    assert_eq!(sink.count(|l| &l.data_commands), 200);
    assert_eq!(sink.count(|l| &l.pipelined_groups), 0);
}

#[test]
fn data_pipelined() {
    let sink = check_generated_run(&["--pipelining"]);
    assert_eq!(sink.count(|l| &l.data_commands), 200);
    assert_eq!(sink.count(|l| &l.pipelined_groups), 200);
}

#[test]
fn bdat_one_command_at_a_time() {
    let sink = check_generated_run(&["--bdat"]);
    assert_eq!(sink.count(|l| &l.bdat_commands), 200);
    assert_eq!(sink.count(|l| &l.data_commands), 0);
    assert_eq!(sink.count(|l| &l.pipelined_groups), 0);
}

#[test]
fn bdat_pipelined() {
    let sink = check_generated_run(&["--bdat", "--pipelining"]);
    assert_eq!(sink.count(|l| &l.bdat_commands), 200);
    assert_eq!(sink.count(|l| &l.pipelined_groups), 200);
}

#[test]
fn lmtp_reads_one_reply_per_recipient() {
    let sink = Sink::start(SinkOptions { lmtp: true, ..SinkOptions::default() });
    let args = ["-n", "200", "-c", "4", "--lmtp", "--pipelining", "--rcpts-per-message", "3", "--recipients", "10"];
    let (code, json) = sink.run(&args);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["messages_ok"], 200, "{json}");
    assert_eq!(json["lmtp"], true);
    assert_eq!(sink.count(|l| &l.messages), 200);
    assert_eq!(sink.count(|l| &l.rcpts), 600);
    let contents = sink.contents();
    let to_lines: HashSet<String> = contents
        .iter()
        .filter_map(|c| String::from_utf8_lossy(c).lines().find_map(|l| l.strip_prefix("To: ").map(str::to_owned)))
        .collect();
    assert!(to_lines.contains("user1@example.test, user2@example.test, user3@example.test"), "{to_lines:?}");
    assert!(to_lines.contains("user10@example.test, user1@example.test, user2@example.test"), "{to_lines:?}");
}

#[test]
fn rejected_messages_are_counted_by_code() {
    let sink = Sink::start(SinkOptions { reject_every: Some(10), ..SinkOptions::default() });
    let (code, json) = sink.run(&["-n", "200", "-c", "4", "--pipelining"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["messages_ok"], 180, "{json}");
    assert_eq!(json["messages_failed"], 20, "{json}");
    assert_eq!(json["errors"], serde_json::json!({"451": 20}));
    assert_eq!(json["connection_errors"], 0);
    assert_eq!(sink.count(|l| &l.messages), 200);
}

#[test]
fn lost_connections_are_replaced() {
    let sink = Sink::start(SinkOptions { drop_every: Some(50), ..SinkOptions::default() });
    let (code, json) = sink.run(&["-n", "200", "-c", "4"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["messages_ok"], 196, "{json}");
    assert_eq!(json["messages_failed"], 4, "{json}");
    assert_eq!(json["connection_errors"], 4, "{json}");
    assert_eq!(json["errors"], serde_json::json!({}));
    assert_eq!(json["gave_up"], false);
}

#[test]
fn eml_files_are_sent_with_crlf_and_dot_stuffing() {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 3] = [
        ("a.eml", b"Subject: a\n\n.leading dot\nbody\n"),
        ("b.eml", b"Subject: b\r\n\r\n..two dots\r\n.\r\nend"),
        ("sub/c.eml", b"Subject: c\r\rold mac\r"),
    ];
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a message").unwrap();
    let expected: [&[u8]; 3] = [
        b"Subject: a\r\n\r\n.leading dot\r\nbody\r\n",
        b"Subject: b\r\n\r\n..two dots\r\n.\r\nend\r\n",
        b"Subject: c\r\n\r\nold mac\r\n",
    ];
    for flags in [&[][..], &["--bdat", "--pipelining"][..]] {
        let sink = Sink::start(SinkOptions::default());
        let dir_arg = dir.path().to_str().unwrap();
        let (code, json) = sink.run(&[&["-n", "30", "-c", "1", "--eml-dir", dir_arg], flags].concat());
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["messages_ok"], 30);
        let contents = sink.contents();
        assert_eq!(contents.len(), 30);
        for (i, content) in contents.iter().enumerate() {
            assert_eq!(content, expected[i % 3], "message {i} with {flags:?}");
        }
    }
}

#[test]
fn generated_sizes_follow_size() {
    let sink = Sink::start(SinkOptions::default());
    let (code, json) =
        sink.run(&["-n", "20", "-c", "2", "--size", "1K", "--rcpts-per-message", "2", "--recipients", "5"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["size"], 1024);
    assert!(sink.contents().iter().all(|c| c.len() == 1024));
    let (code, json) = sink.run(&["-n", "3", "-c", "1", "--size", "1M", "--bdat"]);
    assert_eq!(code, 0, "{json}");
    assert!(sink.contents().iter().skip(20).all(|c| c.len() == 1 << 20));
    assert!(json["mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn duration_runs_until_time_is_up() {
    let sink = Sink::start(SinkOptions::default());
    let (code, json) = sink.run(&["--duration", "1", "-c", "2", "--pipelining"]);
    assert_eq!(code, 0, "{json}");
    let ok = json["messages_ok"].as_u64().unwrap();
    assert!(ok > 0);
    assert_eq!(sink.count(|l| &l.messages), ok);
    let elapsed = json["elapsed_s"].as_f64().unwrap();
    assert!((1.0..5.0).contains(&elapsed), "{json}");
}

#[test]
fn a_dead_server_ends_the_run_with_status_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("127.0.0.1:{port}");
    let output = smtpload(&["--server", &server, "-n", "10", "-c", "4", "--json", "--quiet"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(json["messages_ok"], 0);
    assert_eq!(json["gave_up"], true);
    assert!(json["connection_errors"].as_u64().unwrap() >= 8, "{json}");
}

#[test]
fn auth_plain_logs_in_once_per_session() {
    let sink = Sink::start(SinkOptions { auth: true, ..SinkOptions::default() });
    let args = ["-n", "50", "-c", "2", "--messages-per-connection", "10", "--pipelining", "--auth"];
    let (code, json) = sink.run(&[&args[..], &["alice@example.test:se:cret"]].concat());
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["messages_ok"], 50, "{json}");
    assert_eq!(json["auth"], true);
    assert_eq!(json["pipelining"], true);
    assert_eq!(sink.count(|l| &l.messages), 50);
    // At most 10 messages per connection: 5 sessions or more (the two workers take messages in
    // turn), each logged in once.
    assert!(sink.count(|l| &l.connections) >= 5);
    assert_eq!(sink.count(|l| &l.logins), sink.count(|l| &l.connections));
    assert_eq!(sink.count(|l| &l.refused_logins), 0);

    // Without --auth the sink refuses MAIL; a wrong password or a server that does not offer
    // AUTH PLAIN ends the run.
    let (code, json) = sink.run(&["-n", "5", "-c", "1"]);
    assert_eq!((code, json["messages_failed"].as_u64(), json["auth"].as_bool()), (1, Some(5), Some(false)), "{json}");
    assert_eq!(json["errors"], serde_json::json!({"530": 5}));
    let (code, json) = sink.run(&["-n", "5", "-c", "1", "--auth", "alice@example.test:wrong"]);
    assert_eq!((code, json["messages_ok"].as_u64(), json["gave_up"].as_bool()), (1, Some(0), Some(true)), "{json}");
    assert!(json["last_connection_error"].as_str().unwrap().contains("refused the AUTH: 535"), "{json}");
    assert!(sink.count(|l| &l.refused_logins) >= 3);
    let plain = Sink::start(SinkOptions::default());
    let (code, json) = plain.run(&["-n", "5", "-c", "1", "--auth", "alice@example.test:se:cret"]);
    assert_eq!((code, json["gave_up"].as_bool()), (1, Some(true)), "{json}");
    assert!(json["last_connection_error"].as_str().unwrap().contains("AUTH PLAIN"), "{json}");
    assert_eq!(plain.count(|l| &l.messages), 0);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["--rcpts-per-message", "2", "--to", "a@example.test"][..],
        &["--to-pattern", "nobody@example.test"],
        &["--size", "4X"],
        &["-c", "0"],
        &["-n", "5", "--duration", "5"],
        &["--eml-dir", "/nonexistent/smtpload"],
        &["--auth", "alice@example.test"],
        &["--auth", ":secret"],
    ] {
        let output = smtpload(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty());
    }
}
