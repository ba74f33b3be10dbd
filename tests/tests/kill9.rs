//! kill -9 test: a writer process is killed at random moments, over and over, on the same
//! data directory; after each kill the store must open (a torn tail is cut, never reported as
//! corruption) and hold exactly what was acknowledged.
//!
//! Each iteration starts `postlog-crashload` (see `src/bin/crashload.rs`), lets it write for a
//! random 20–300 ms (deterministic seed), sends it SIGKILL, reads the lines it printed and then
//! opens the store in this process and checks, against a model carried across iterations:
//! - the store opens (no `Corrupt`, no IO error);
//! - every acknowledged append is there, in every mailbox it went to, with the exact UID and
//!   the exact bytes (regenerated from the id in the message), and its metadata reads;
//! - acknowledged expunges are gone; acknowledged flag and keyword changes are in effect
//!   unless a later acknowledged change superseded them;
//! - no UID appears twice, UIDs of a mailbox strictly increase (a new message never gets a UID
//!   at or below one seen before), UIDNEXT is above every UID, UIDVALIDITY never changes;
//! - nothing else is there: the only difference allowed is the one operation per writer
//!   thread that was in flight when the kill came (printed `TRY` without `ACK`), which is
//!   either wholly there or wholly absent (a two-mailbox append lands in both or neither).
//!
//! Then the store is closed (every other iteration without a snapshot) and the next iteration
//! goes on with the same directory, so the store grows and recovery covers snapshots, sealed
//! segments, compacted segments and torn tails. Every seventh iteration kills the writer while
//! it is still opening (recovering) the store.
//!
//! `POSTLOG_KILL9_ITERATIONS` (default 25) and `POSTLOG_KILL9_SEED` change the run. Two more
//! tests check that the checks can fail: a writer that acknowledges before writing, and a log
//! rolled back after the kill (what acknowledging before durability would lose in a power cut).
//!
//! A kill -9 keeps what reached the page cache, so it tests the process-crash path (nothing
//! acknowledged before it is written, torn tails cut); power-cut durability (fdatasync before
//! acknowledging) is covered by the engine's `MemBackend::crash_image` tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postlog_engine::{Options, Store};
use postlog_tests::crashload::{ACCOUNT, BodyId, Line, MAILBOXES, Op, XorShift, id_of_message, message};

const BIN: &str = env!("CARGO_BIN_EXE_postlog-crashload");

/// What one stored message copy must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    id: BodyId,
    flags: u8,
    keywords: BTreeSet<String>,
}

/// What the store held after the last check.
#[derive(Default)]
struct Model {
    /// Per mailbox (index into `MAILBOXES`): UID -> message.
    boxes: [BTreeMap<u32, Expect>; 3],
    /// Per mailbox: UIDNEXT at the last check. Every later UID is at least this.
    uid_floor: [u32; 3],
    uidvalidity: Option<[u32; 3]>,
}

/// A deliberate fault, to see the checks fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The writer acknowledges flag changes and expunges before doing them.
    EarlyAck,
    /// After the kill, every segment is cut back to its length before the run (and segments
    /// the run created are removed): the run's writes are lost.
    Rollback,
}

#[derive(Default, Debug)]
struct Tally {
    iterations: u64,
    acks: u64,
    in_flight_landed: u64,
    torn_cuts: u64,
    opens_killed: u64,
    messages: u64,
}

struct Harness {
    dir: tempfile::TempDir,
    model: Model,
    rng: XorShift,
    threads: u32,
    tally: Tally,
}

/// Kills the child on drop, so a failing test leaves no writer behind.
struct Killer(Option<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sigkill(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it cannot have been
    // reused); no memory is passed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

fn mailbox_index(name: &str) -> Result<usize, String> {
    MAILBOXES.iter().position(|m| *m == name).ok_or_else(|| format!("unknown mailbox {name:?}"))
}

/// Lengths of the segment files (and which exist), for the rollback fault.
fn segment_lengths(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read data dir") {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("seg-") && name.ends_with(".log") {
            out.insert(name, e.metadata().expect("stat").len());
        }
    }
    out
}

impl Harness {
    fn new(seed: u64, threads: u32) -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            model: Model::default(),
            rng: XorShift::new(seed),
            threads,
            tally: Tally::default(),
        }
    }

    /// One start-write-kill-check round. `Err` lists what the check found wrong.
    fn iteration(&mut self, run: u32, fault: Fault) -> Result<(), String> {
        let kill_while_opening = run % 7 == 6 && fault == Fault::None;
        let delay_ms = if kill_while_opening { self.rng.range(0, 15) } else { self.rng.range(20, 300) };
        let child_seed = self.rng.next_u64();
        let before = segment_lengths(self.dir.path());

        let mut cmd = Command::new(BIN);
        cmd.arg(self.dir.path())
            .args(["--threads", &self.threads.to_string()])
            .args(["--seed", &child_seed.to_string()])
            .args(["--run", &run.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if fault == Fault::EarlyAck {
            cmd.args(["--early-ack-ms", "20"]);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {BIN}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut killer = Killer(Some(child));

        // Read stdout as it comes (a full pipe would block the writer), tell when READY shows.
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut by the kill has no newline: it was not printed whole, ignore it.
                if buf.last() != Some(&b'\n') {
                    break;
                }
                let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                if line == "READY" {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
            s
        });

        if !kill_while_opening {
            ready_rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "the writer never got READY".to_string())?;
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let child = killer.0.as_mut().expect("child");
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let lines = reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            return Err(format!(
                "the writer exited by itself with {status} before the kill; stderr:\n{err}\nlast lines: {:?}",
                &lines[lines.len().saturating_sub(5)..]
            ));
        }
        sigkill(child);
        let status = child.wait().map_err(|e| e.to_string())?;
        killer.0 = None;
        let lines = reader.join().map_err(|_| "stdout reader panicked".to_string())?;
        let err = err_reader.join().unwrap_or_default();
        if status.signal() != Some(libc::SIGKILL) {
            return Err(format!("the writer ended with {status}, not by SIGKILL; stderr:\n{err}"));
        }
        if !lines.iter().any(|l| l == "READY") {
            self.tally.opens_killed += 1;
        }

        if fault == Fault::Rollback {
            let after = segment_lengths(self.dir.path());
            for (name, len) in &after {
                let path = self.dir.path().join(name);
                match before.get(name) {
                    Some(old) if old < len => {
                        let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open segment");
                        f.set_len(*old).expect("truncate segment");
                    }
                    Some(_) => {}
                    None => std::fs::remove_file(&path).expect("remove segment"),
                }
            }
        }

        let result = self.check(&lines);
        self.tally.iterations += 1;
        result.map_err(|e| format!("run {run} (killed after {delay_ms} ms, {} lines printed): {e}", lines.len()))
    }

    /// Opens the store and compares it with the model plus what the writer printed.
    fn check(&mut self, lines: &[String]) -> Result<(), String> {
        // Parse: acknowledged operations in order, and per thread the one left in flight.
        let mut acked: Vec<Line> = Vec::new();
        let mut tried: HashMap<u32, Line> = HashMap::new();
        for l in lines {
            if l == "READY" || l.starts_with("NOTE ") {
                continue;
            }
            let line = Line::parse(l).ok_or_else(|| format!("unparsable line from the writer: {l:?}"))?;
            if line.ack {
                if tried.get(&line.thread).is_some_and(|t| t.n == line.n) {
                    tried.remove(&line.thread);
                }
                acked.push(line);
            } else {
                tried.insert(line.thread, line);
            }
        }
        let in_flight: Vec<Line> = tried.into_values().collect();
        self.tally.acks += acked.len() as u64;

        // Expected contents: the model plus the acknowledged operations.
        let mut expect = self.model.boxes.clone();
        let mut new_uids: HashSet<(usize, u32)> = HashSet::new();
        let mut last_uid: HashMap<(u32, usize), u32> = HashMap::new();
        for l in &acked {
            match &l.op {
                Op::Append { id, flags, keywords, targets } => {
                    for (mb, uid) in targets {
                        let b = mailbox_index(mb)?;
                        let uid = uid.ok_or("ACK append without UID")?;
                        if uid < self.model.uid_floor[b] || uid == 0 {
                            return Err(format!(
                                "{mb} UID {uid} given to {id}, but UIDNEXT was already {} before this run",
                                self.model.uid_floor[b]
                            ));
                        }
                        if !new_uids.insert((b, uid)) {
                            return Err(format!("{mb} UID {uid} acknowledged twice"));
                        }
                        if let Some(prev) = last_uid.insert((l.thread, b), uid)
                            && prev >= uid
                        {
                            return Err(format!("thread {} got {mb} UID {uid} after UID {prev}", l.thread));
                        }
                        let keywords = keywords.iter().cloned().collect();
                        expect[b].insert(uid, Expect { id: *id, flags: *flags, keywords });
                    }
                }
                Op::Flags { mailbox, uid, flags, keywords } => {
                    let b = mailbox_index(mailbox)?;
                    let e = expect[b].get_mut(uid).ok_or_else(|| format!("ACK flags of unknown {mailbox} {uid}"))?;
                    e.flags = *flags;
                    e.keywords = keywords.iter().cloned().collect();
                }
                Op::Expunge { mailbox, uid } => {
                    let b = mailbox_index(mailbox)?;
                    expect[b].remove(uid).ok_or_else(|| format!("ACK expunge of unknown {mailbox} {uid}"))?;
                }
            }
        }

        // What the store holds.
        let store = Store::open(self.dir.path(), Options::default())
            .map_err(|e| format!("the store does not open after the kill: {e}"))?;
        if store.recovery_report().torn_cut.is_some() {
            self.tally.torn_cuts += 1;
        }
        let account = store.account_id(ACCOUNT);
        let mut problems: Vec<String> = Vec::new();
        let mut actual: [BTreeMap<u32, Expect>; 3] = Default::default();
        let mut uidnext = [0u32; 3];
        let mut uidvalidity = [0u32; 3];
        let mut found_in_flight: HashMap<u32, Vec<(usize, u32)>> = HashMap::new();
        for (b, name) in MAILBOXES.iter().enumerate() {
            let Some(account) = account else {
                if !expect[b].is_empty() {
                    problems.push(format!("account {ACCOUNT} is missing"));
                }
                continue;
            };
            let Ok(info) = store.mailbox_by_name(account, name) else {
                if !expect[b].is_empty() {
                    problems.push(format!("mailbox {name} is missing"));
                }
                continue;
            };
            uidnext[b] = info.uidnext;
            uidvalidity[b] = info.uidvalidity;
            let entries = store
                .with_mailbox(account, info.id, |mb| {
                    mb.messages
                        .iter()
                        .map(|m| (m.uid, m.flags, mb.keyword_names(m.keywords), m.size))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| format!("{name}: {e}"))?;
            if entries.len() != info.messages as usize {
                problems.push(format!("{name}: {} entries but the mailbox counts {}", entries.len(), info.messages));
            }
            let mut prev = 0;
            for (uid, flags, keywords, size) in entries {
                if uid <= prev {
                    problems.push(format!("{name}: UID {uid} after UID {prev} (duplicate or out of order)"));
                }
                prev = uid;
                if uid >= info.uidnext {
                    problems.push(format!("{name}: UID {uid} is not below UIDNEXT {}", info.uidnext));
                }
                let raw = match store.read_message(account, info.id, uid) {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("{name} {uid}: unreadable: {e}"));
                        continue;
                    }
                };
                let Some(id) = id_of_message(&raw) else {
                    problems.push(format!("{name} {uid}: a message without an id ({} bytes)", raw.len()));
                    continue;
                };
                if raw != message(&id) {
                    problems.push(format!("{name} {uid}: the bytes of {id} differ from what was appended"));
                }
                if size != raw.len() as u64 {
                    problems.push(format!("{name} {uid}: size {size} but {} bytes", raw.len()));
                }
                match store.meta(account, info.id, uid) {
                    Ok(m) if m.body.body_end as usize == raw.len() => {}
                    Ok(m) => problems.push(format!("{name} {uid}: metadata ends at {}", m.body.body_end)),
                    Err(e) => problems.push(format!("{name} {uid}: metadata unreadable: {e}")),
                }
                let got = Expect { id, flags, keywords: keywords.into_iter().collect() };
                match expect[b].get(&uid) {
                    Some(want) if *want == got => {}
                    Some(want) if want.id != got.id => {
                        problems.push(format!("{name} {uid}: holds {} where {} was acknowledged", got.id, want.id))
                    }
                    Some(want) => {
                        // Flags differ: fine only if an unacknowledged change of them was in flight.
                        let ok = in_flight.iter().any(|l| match &l.op {
                            Op::Flags { mailbox, uid: u, flags, keywords } => {
                                mailbox == name
                                    && *u == uid
                                    && *flags == got.flags
                                    && keywords.iter().cloned().collect::<BTreeSet<_>>() == got.keywords
                            }
                            _ => false,
                        });
                        if !ok {
                            problems.push(format!(
                                "{name} {uid}: flags {} {:?}, but {} {:?} were acknowledged last",
                                got.flags, got.keywords, want.flags, want.keywords
                            ));
                        }
                    }
                    None => {
                        // Not acknowledged: fine only as the in-flight append of its thread.
                        let owner = in_flight.iter().find(|l| match &l.op {
                            Op::Append { id, targets, .. } => *id == got.id && targets.iter().any(|(m, _)| m == name),
                            _ => false,
                        });
                        match owner {
                            Some(l) if uid >= self.model.uid_floor[b] && !new_uids.contains(&(b, uid)) => {
                                found_in_flight.entry(l.thread).or_default().push((b, uid));
                                let Op::Append { flags, keywords, .. } = &l.op else { unreachable!() };
                                if got.flags != *flags || got.keywords != keywords.iter().cloned().collect() {
                                    problems.push(format!("{name} {uid}: in-flight {id} has the wrong flags"));
                                }
                            }
                            _ => problems.push(format!("{name} {uid}: {id} is there but was never acknowledged")),
                        }
                    }
                }
                actual[b].insert(uid, got);
            }
            for (uid, want) in &expect[b] {
                if actual[b].contains_key(uid) {
                    continue;
                }
                let expunging = in_flight
                    .iter()
                    .any(|l| matches!(&l.op, Op::Expunge { mailbox, uid: u } if mailbox == name && u == uid));
                if !expunging {
                    problems.push(format!("{name} {uid}: acknowledged {} is missing", want.id));
                }
            }
        }
        // An in-flight append is all there or not at all.
        for l in &in_flight {
            if let Op::Append { id, targets, .. } = &l.op {
                let n = found_in_flight.get(&l.thread).map_or(0, |v| v.len());
                if n != 0 && n != targets.len() {
                    problems.push(format!("in-flight {id} landed in {n} of its {} mailboxes", targets.len()));
                }
                if n != 0 {
                    self.tally.in_flight_landed += 1;
                }
            }
        }
        for (b, name) in MAILBOXES.iter().enumerate() {
            if uidnext[b] < self.model.uid_floor[b] {
                problems.push(format!("{name}: UIDNEXT went back from {} to {}", self.model.uid_floor[b], uidnext[b]));
            }
        }
        if let Some(v) = self.model.uidvalidity
            && v != uidvalidity
            && account.is_some()
        {
            problems.push(format!("UIDVALIDITY changed from {v:?} to {uidvalidity:?}"));
        }

        // Every other time close cleanly (snapshot), else just drop the store.
        if self.tally.iterations.is_multiple_of(2) {
            store.close().map_err(|e| format!("close: {e}"))?;
        }
        drop(store);

        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(12);
            return Err(format!("{n} problems:\n  {}", problems.join("\n  ")));
        }
        self.tally.messages = actual.iter().map(|m| m.len() as u64).sum();
        self.model.boxes = actual;
        self.model.uid_floor = uidnext;
        if account.is_some() {
            self.model.uidvalidity = Some(uidvalidity);
        }
        Ok(())
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn kill9_acknowledged_writes_survive() {
    let iterations = env_u64("POSTLOG_KILL9_ITERATIONS", 25);
    let seed = env_u64("POSTLOG_KILL9_SEED", 0x5eed_0009);
    let mut h = Harness::new(seed, 4);
    let started = Instant::now();
    for run in 0..iterations as u32 {
        if let Err(e) = h.iteration(run, Fault::None) {
            panic!("kill -9 check failed (seed {seed:#x}, data in {}):\n{e}", h.dir.keep().display());
        }
    }
    eprintln!("kill9: {:?} in {:.1} s", h.tally, started.elapsed().as_secs_f64());
    assert!(h.tally.acks > iterations, "the writer acknowledged almost nothing: {:?}", h.tally);
}

#[test]
fn kill9_detects_acks_before_writes() {
    let mut h = Harness::new(0xbad_0ac4, 2);
    for run in 0..8 {
        if let Err(e) = h.iteration(run, Fault::EarlyAck) {
            assert!(e.contains("acknowledged"), "unexpected failure: {e}");
            eprintln!("caught, as it should be: {e}");
            return;
        }
    }
    panic!("8 runs acknowledging before writing went unnoticed: {:?}", h.tally);
}

#[test]
fn kill9_detects_lost_writes() {
    let mut h = Harness::new(0x105e_0001, 2);
    h.iteration(0, Fault::None).expect("a clean run passes");
    for run in 1..4 {
        let acks_before = h.tally.acks;
        match h.iteration(run, Fault::Rollback) {
            Err(e) => {
                assert!(e.contains("is missing") || e.contains("UIDNEXT went back"), "unexpected failure: {e}");
                eprintln!("caught, as it should be: {e}");
                return;
            }
            // Nothing was acknowledged in this run, so nothing was lost: try again.
            Ok(()) => assert_eq!(h.tally.acks, acks_before, "a rolled-back run passed the check"),
        }
    }
    panic!("rolled-back runs went unnoticed: {:?}", h.tally);
}
