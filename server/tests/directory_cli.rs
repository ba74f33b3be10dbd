#![allow(unsafe_code)] // kill(2) to stop the server under test
//! `postlog domain|user|alias` run as an operator runs them: first on a stopped store, then
//! while a server holds the store (the commands then go through its control socket).
//!
//! The "server" here is this test process: it opens the store, which takes its lock, and
//! serves the control socket with `spawn_control_server`, as `postlog serve` does.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postlog_engine::{Options, Store};
use postlog_server::control::{socket_path, spawn_control_server};
use postlog_server::directory::{Directory, Resolution};

const PASSWORD: &str = "s3cr3t-Pa55word";

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("postlog.toml");
    fs::write(&config, format!("data_dir = {:?}\n", data.to_str().unwrap())).unwrap();
    Env { _tmp: tmp, data, config }
}

use common::text;

fn postlog(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_postlog"));
    c.env_remove("RUST_LOG").args(args).arg("--config").arg(&env.config);
    c
}

/// Runs with `stdin` as standard input and checks the exit code.
fn run_with(env: &Env, args: &[&str], stdin: &[u8], code: i32) -> Output {
    let mut child =
        postlog(env, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    common::assert_exit(args, &out, code);
    out
}

fn run(env: &Env, args: &[&str], code: i32) -> Output {
    run_with(env, args, b"", code)
}

fn stdout(env: &Env, args: &[&str]) -> String {
    text(&run(env, args, 0).stdout)
}

fn stderr_of_failure(env: &Env, args: &[&str]) -> String {
    text(&run(env, args, 2).stderr)
}

fn add_user(env: &Env, address: &str, password: &str) -> String {
    text(&run_with(env, &["user", "add", address, "--password-stdin"], password.as_bytes(), 0).stdout)
}

/// Every byte the store keeps on disk.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn directory_commands_on_a_stopped_store() {
    let env = env();
    assert_eq!(stdout(&env, &["domain", "add", "Example.TEST"]).trim(), "added the domain example.test");
    let e = stderr_of_failure(&env, &["domain", "add", "example.test"]);
    assert!(e.contains("postlog domain: error: the domain example.test already exists"), "{e}");
    let e = stderr_of_failure(&env, &["domain", "add", "bad domain"]);
    assert!(e.contains("is not a valid domain"), "{e}");

    let out = add_user(&env, "Alice@example.test", PASSWORD);
    assert!(out.starts_with("added the user Alice@example.test (account "), "{out}");
    // `echo` adds a line end; it is not part of the password.
    add_user(&env, "bob@example.test", &format!("{PASSWORD}\n"));
    let e = text(&run_with(&env, &["user", "add", "ALICE@example.test", "--password-stdin"], b"x", 2).stderr);
    assert!(e.contains("the user Alice@example.test already exists"), "{e}");
    let e = text(&run_with(&env, &["user", "add", "carol@nowhere.test", "--password-stdin"], b"x", 2).stderr);
    assert!(e.contains("nowhere.test is not a local domain"), "{e}");
    let e = text(&run_with(&env, &["user", "add", "carol@example.test", "--password-stdin"], b"", 2).stderr);
    assert!(e.contains("the password on standard input is empty"), "{e}");

    run(&env, &["alias", "add", "postmaster@example.test", "alice@example.test", "bob@example.test"], 0);
    run(&env, &["alias", "add", "@example.test", "alice@example.test"], 0);
    // typo@ goes to the catch-all; nowhere.test is a remote domain.
    run(&env, &["alias", "add", "abuse@example.test", "nobody@nowhere.test", "typo@example.test"], 0);
    let e = stderr_of_failure(&env, &["alias", "add", "abuse2@example.test", "@example.test"]);
    assert!(e.contains("a target is an address, not a whole domain"), "{e}");
    run(&env, &["alias", "del", "abuse@example.test"], 0);
    let e = stderr_of_failure(&env, &["alias", "add", "alice@example.test", "bob@example.test"]);
    assert!(e.contains("alice@example.test is already a user"), "{e}");
    assert_eq!(
        stdout(&env, &["alias", "list"]),
        "@example.test\talice@example.test\npostmaster@example.test\talice@example.test, bob@example.test\n"
    );

    run(&env, &["user", "quota", "alice@example.test", "2G"], 0);
    let e = stderr_of_failure(&env, &["user", "quota", "alice@example.test", "lots"]);
    assert!(e.contains("\"lots\" is not a size"), "{e}");
    let users = stdout(&env, &["user", "list", "example.test"]);
    let lines: Vec<&str> = users.lines().collect();
    assert_eq!(lines.len(), 2, "{users}");
    assert!(lines[0].starts_with("Alice@example.test\taccount ") && lines[0].ends_with("of 2.0 GiB (own)"), "{users}");
    assert!(lines[1].starts_with("bob@example.test\taccount ") && lines[1].ends_with("of unlimited"), "{users}");
    assert_eq!(stdout(&env, &["domain", "list"]), "example.test\t2 users\t2 aliases\n");
    let e = stderr_of_failure(&env, &["domain", "del", "example.test"]);
    assert!(e.contains("still has 2 user(s) and 2 alias(es)") && e.contains("--force"), "{e}");

    // What is stored: an Argon2id PHC string and SCRAM keys, never the password.
    assert!(!contains(&all_bytes(&env.data), PASSWORD.as_bytes()), "the plain password is somewhere in the store");
    let store = Store::open(&env.data, Options::default()).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&store.kv_get("user/alice@example.test").unwrap()).unwrap();
    assert!(record["password"].as_str().unwrap().starts_with("$argon2id$v=19$m="), "{record}");
    assert!(record["scram_sha256"].as_str().unwrap().starts_with("SCRAM-SHA-256$4096:"), "{record}");
    let directory = Directory::new(store.clone(), 0);
    assert!(directory.verify_password("alice@example.test", PASSWORD));
    assert!(directory.verify_password("bob@example.test", PASSWORD));
    assert!(matches!(directory.resolve("anyone@example.test"), Ok(Resolution::Expanded { catch_all: true, .. })));
    drop(directory);
    store.close().unwrap();

    // --data overrides the configuration's data_dir; --force takes users and their mail.
    let out = stdout(&env, &["domain", "del", "example.test", "--force", "--data", env.data.to_str().unwrap()]);
    assert!(out.contains("deleted the domain example.test, its users Alice@example.test, bob@example.test"), "{out}");
    assert_eq!(stdout(&env, &["domain", "list"]), "");
    assert_eq!(stdout(&env, &["account", "list", "--data", env.data.to_str().unwrap()]), "", "accounts deleted");
}

#[test]
fn directory_commands_reach_a_running_server() {
    let env = env();
    run(&env, &["domain", "add", "example.test"], 0);
    add_user(&env, "alice@example.test", PASSWORD);

    // The server holds the store (and its lock) and serves the control socket.
    let store = Store::open(&env.data, Options::default()).unwrap();
    let directory = Directory::new(store.clone(), 1 << 30);
    let socket = socket_path(&env.data);
    let control = spawn_control_server(directory.clone(), None, &socket).unwrap();

    let out = add_user(&env, "Bob@example.test", "bobs password");
    assert!(out.starts_with("added the user Bob@example.test"), "{out}");
    let bob = directory.local_user("bob@example.test").expect("the server sees the new user at once");
    assert!(directory.verify_password("BOB@example.test", "bobs password"));

    run_with(&env, &["user", "passwd", "alice@example.test", "--password-stdin"], b"new password", 0);
    assert!(directory.verify_password("alice@example.test", "new password"));
    assert!(!directory.verify_password("alice@example.test", PASSWORD));

    run(&env, &["alias", "add", "team@example.test", "alice@example.test", "bob@example.test", "x@remote.test"], 0);
    match directory.resolve("team@example.test").unwrap() {
        Resolution::Expanded { users, remote, .. } => {
            assert_eq!(users.len(), 2);
            assert_eq!(remote, ["x@remote.test"]);
        }
        other => panic!("expected an expansion, got {other:?}"),
    }
    let out = stdout(&env, &["alias", "del", "team@example.test", "x@remote.test"]);
    assert_eq!(out.trim(), "the alias team@example.test now delivers to alice@example.test, bob@example.test");

    // Listings come from the server, with its configured default quota (1 GiB).
    let users = stdout(&env, &["user", "list"]);
    assert!(users.contains("Bob@example.test\taccount") && users.contains("of 1.0 GiB\n"), "{users}");
    run(&env, &["user", "quota", "bob@example.test", "unlimited"], 0);
    assert_eq!(directory.quota("bob@example.test").unwrap().limit_bytes, None);
    run(&env, &["user", "quota", "bob@example.test", "default"], 0);
    assert_eq!(directory.quota("bob@example.test").unwrap().limit_bytes, Some(1 << 30));
    assert_eq!(stdout(&env, &["domain", "list"]), "example.test\t2 users\t1 aliases\n");

    // Errors come back through the socket with their message and exit code.
    let e = text(&run_with(&env, &["user", "add", "ALICE@example.test", "--password-stdin"], b"x", 2).stderr);
    assert!(e.contains("the user alice@example.test already exists"), "{e}");
    let e = stderr_of_failure(&env, &["user", "del", "nobody@example.test"]);
    assert!(e.contains("there is no user nobody@example.test"), "{e}");

    run(&env, &["alias", "del", "team@example.test"], 0);
    let out = stdout(&env, &["user", "del", "bob@example.test"]);
    assert!(out.contains("deleted the user bob@example.test and all its mail"), "{out}");
    assert!(directory.local_user("bob@example.test").is_none());
    assert!(store.usage(bob.account).is_none(), "the account is gone");

    // The plain passwords are nowhere in the store's files.
    for password in [PASSWORD, "bobs password", "new password"] {
        assert!(!contains(&all_bytes(&env.data), password.as_bytes()), "{password:?} is stored in clear");
    }

    // Without a control socket, a locked store is reported as such.
    control.shutdown();
    assert!(!socket.exists());
    let e = stderr_of_failure(&env, &["domain", "list"]);
    assert!(e.contains("in use by another process") && e.contains("control.sock"), "{e}");
    drop(directory);
    store.close().unwrap();
    drop(store);
    assert_eq!(stdout(&env, &["domain", "list"]), "example.test\t1 users\t0 aliases\n");
}

#[test]
fn user_add_without_a_terminal_asks_for_password_stdin() {
    let env = env();
    run(&env, &["domain", "add", "example.test"], 0);
    // setsid: a new session without a controlling terminal, as under cron or CI.
    let out = Command::new("setsid")
        .arg("--wait")
        .arg(env!("CARGO_BIN_EXE_postlog"))
        .args(["user", "add", "alice@example.test", "--config"])
        .arg(&env.config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(e.contains("there is no terminal to ask for the password on") && e.contains("--password-stdin"), "{e}");
    assert_eq!(stdout(&env, &["user", "list"]), "", "nothing was added");
}

/// `postlog serve` serves the control socket: directory commands run while it holds the
/// store reach it, and it sees their changes without a restart.
#[test]
fn directory_commands_reach_postlog_serve() {
    let env = env();
    let off: String = postlog_server::config::LISTENERS.iter().map(|k| format!("{k} = \"off\"\n")).collect();
    fs::write(&env.config, format!("data_dir = {:?}\n[listen]\n{off}", env.data.to_str().unwrap())).unwrap();
    run(&env, &["domain", "add", "example.test"], 0);

    let mut server =
        postlog(&env, &["serve"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let socket = socket_path(&env.data);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "serve did not open its control socket");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = add_user(&env, "carol@example.test", PASSWORD);
    assert!(out.starts_with("added the user carol@example.test"), "{out}");
    assert!(stdout(&env, &["user", "list"]).contains("carol@example.test"));
    assert_eq!(stdout(&env, &["domain", "list"]), "example.test\t1 users\t0 aliases\n");

    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    assert_eq!(server.wait().unwrap().code(), Some(0));
    assert!(!socket.exists(), "the socket is removed at shutdown");

    // What the server committed is in the store.
    let store = Store::open(&env.data, Options::default()).unwrap();
    let directory = Directory::new(store.clone(), 0);
    assert!(directory.verify_password("carol@example.test", PASSWORD));
}
