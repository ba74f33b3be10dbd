//! Helpers shared by the tests that run the real `postlog` binary.
#![allow(dead_code)] // each test file uses a part

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary under test, without a `RUST_LOG` from the environment.
pub fn postlog() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_postlog"));
    c.env_remove("RUST_LOG");
    c
}

/// Starts `postlog serve --config CONFIG` and returns it with its stderr lines as they come.
pub fn spawn_serve(config: &Path) -> (Child, Receiver<String>) {
    let mut child = postlog()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postlog serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Output bytes as text, for messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks a finished `postlog ARGS`'s exit code, showing its output when it differs.
pub fn assert_exit(args: &[&str], out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "postlog {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub const HOST: &str = "mail.example.test";
pub const LISTENERS: [&str; 9] =
    ["smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http"];

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Ports free right now on 127.0.0.1 (bound to port 0 together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A running `postlog serve`; killed if the test ends without stopping it.
pub struct Server {
    pub child: Option<Child>,
    pub lines: Receiver<String>,
    pub log: Vec<String>,
    pub ports: HashMap<&'static str, u16>,
    pub data: PathBuf,
}

impl Server {
    /// Starts a server with every listener on a fresh port, `extra` appended to the config
    /// (tables other than `[listen]`), and waits until it is ready.
    pub fn start(dir: &Path, extra: &str) -> Server {
        Server::start_with_top(dir, "", extra)
    }

    /// [`start`](Self::start) with top-level keys `top` (before the first table).
    pub fn start_with_top(dir: &Path, top: &str, extra: &str) -> Server {
        fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        // A port found free can be taken before the server binds it (by another test's client
        // connection, say): start again on other ports then. The log keeps every attempt's lines
        // (the first attempt may have done one-time work, such as generating the certificate).
        let mut earlier: Vec<String> = Vec::new();
        for attempt in 1.. {
            let ports: HashMap<&'static str, u16> = LISTENERS.into_iter().zip(free_ports(LISTENERS.len())).collect();
            let mut config = format!("hostname = \"{HOST}\"\ndata_dir = {:?}\n{top}\n[listen]\n", s(&data));
            for key in LISTENERS {
                config.push_str(&format!("{key} = \"127.0.0.1:{}\"\n", ports[key]));
            }
            config.push_str(extra);
            let path = dir.join("postlog.toml");
            fs::write(&path, config).unwrap();
            let (child, lines) = spawn_serve(&path);
            let log = std::mem::take(&mut earlier);
            let mut server = Server { child: Some(child), lines, log, ports, data: data.clone() };
            let deadline = Instant::now() + Duration::from_secs(60);
            while let Ok(line) = server.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                let ready = line.contains("ready: listening on");
                server.log.push(line);
                if ready {
                    return server;
                }
            }
            let in_use = server.log.iter().any(|l| l.contains("Address already in use"));
            if !in_use || attempt >= 5 {
                panic!("the server did not start; log:\n{}", server.log.join("\n"));
            }
            earlier = std::mem::take(&mut server.log);
        }
        unreachable!()
    }

    /// Waits until `count` log lines satisfy `pred`.
    pub fn wait_for_lines(&mut self, count: usize, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.iter().filter(|l| pred(l)).count() < count {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!("fewer than {count} matching log lines:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Waits until the server has logged `n` connects on `listener` (text log format).
    pub fn wait_for_connects(&mut self, listener: &str, n: usize) {
        let needle = format!("listener={listener} ");
        self.wait_for_lines(n, |l| l.contains("connect session=") && l.contains(&needle));
    }

    pub fn port(&self, key: &str) -> u16 {
        self.ports[key]
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    if let Some(mut c) = self.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    let rest: Vec<String> = self.lines.try_iter().collect();
                    panic!("no log line with {needle:?}; log so far:\n{}\n{}", self.log.join("\n"), rest.join("\n"));
                }
            }
        }
    }

    /// Sends `signal` and waits for the exit; returns the status and the whole log.
    #[allow(unsafe_code)]
    pub fn stop_with(mut self, signal: libc::c_int) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within 30 s of the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = std::mem::take(&mut self.log);
        // The reader thread ends at EOF once the process is gone.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            log.push(l);
        }
        (status, log)
    }

    pub fn stop(self) -> (ExitStatus, Vec<String>) {
        self.stop_with(libc::SIGTERM)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `postlog ARGS --data DATA` with `stdin`, and checks that it succeeds.
pub fn run_ok(data: &Path, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut c = postlog();
    c.args(args).args(["--data", s(data)]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "postlog {args:?}: {}", text(&out.stderr));
}

/// Runs `scenario` of the Python client script `tests/clients/<script>` against `server`'s
/// ports, checks that it succeeds and says `<scenario> ok`; returns its standard output.
pub fn python_scenario(script: &str, server: &Server, scenario: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let ports: HashMap<&str, u16> = server.ports.iter().map(|(k, v)| (*k, *v)).collect();
    let out = Command::new("python3")
        .args([s(&path), scenario, "127.0.0.1", &serde_json::to_string(&ports).unwrap()])
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("{scenario} ok")), "{stdout}");
    stdout
}
