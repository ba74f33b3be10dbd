//! IMAP end to end: the real `postlog serve` on loopback, driven by Python's imaplib (and a
//! raw socket for IDLE) in `clients/imap_clients.py`, with mail delivered over SMTP.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Server, postlog, s, text};

fn setup(dir: &Path) {
    let data = dir.join("data");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = postlog();
        c.args(args).args(["--data", s(&data)]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "postlog {args:?}: {}", text(&out.stderr));
    };
    run(&["domain", "add", "example.test"], None);
    run(&["user", "add", "alice@example.test", "--password-stdin"], Some("alice-secret"));
    run(&["user", "add", "bob@example.test", "--password-stdin"], Some("bob-secret"));
}

fn python(server: &Server, scenario: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/imap_clients.py");
    let ports: HashMap<&str, u16> = server.ports.iter().map(|(k, v)| (*k, *v)).collect();
    let out = Command::new("python3")
        .args([script, scenario, "127.0.0.1", &serde_json::to_string(&ports).unwrap()])
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

#[test]
fn imaplib_reads_flags_searches_moves_and_appends() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let server = Server::start(tmp.path(), "");
    python(&server, "basics");
    python(&server, "authorization");
    python(&server, "qresync");
    let idle = python(&server, "idle");
    eprintln!("{}", idle.trim());
    let (status, log) = server.stop();
    assert_eq!(status.code(), Some(0), "{log:?}");
}
