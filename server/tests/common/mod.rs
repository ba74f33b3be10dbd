//! Helpers shared by the tests that run the real `postlog` binary.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;

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
