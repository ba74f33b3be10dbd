//! storebench: measures the store against the disk it runs on.
//!
//! ```sh
//! cargo run --release -p postlog-benches --bin storebench -- [--dir DIR] [--quick] [--json]
//! ```
//! Everything happens in a fresh temporary directory made inside DIR (default: the current
//! directory, so that the disk measured is the one holding the work tree, not a tmpfs /tmp).
//! The report names the filesystem measured. Without `--json` the report goes to stdout; with
//! it the report goes to stderr and stdout gets one JSON line of all figures.
//! See docs/benchmarks.md for what each figure means and the targets.

/// The allocator the `postlog` binary runs with (server/src/main.rs), so the store is measured
/// as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use postlog_benches::{Rng, big_message, default_corpus_dir, load_corpus, percentile, small_message, unique_variant};
use postlog_engine::store::Stats;
use postlog_engine::{AccountId, AppendTarget, Compression, MailboxId, Options, PreparedMessage, Store};
use serde_json::{Value, json};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: usize = 1 << 20;
const SECTIONS: [&str; 7] = ["disk", "cpu", "append", "big", "mailbox", "startup", "space"];

#[derive(Parser, Debug)]
#[command(about = "Benchmarks the Postlog store on the disk holding --dir")]
struct Args {
    /// Directory on the disk to measure; a temporary directory is made (and removed) inside
    /// it. Default: the current directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Small sizes (about a minute), for CI smoke runs.
    #[arg(long)]
    quick: bool,
    /// Print one JSON line of all figures on stdout (the readable report goes to stderr).
    #[arg(long)]
    json: bool,
    /// The corpus directory (with ham/ and spam/ of *.eml). Default: the workspace's
    /// testdata/corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Run only these sections (comma-separated): disk, cpu, append, big, mailbox, startup,
    /// space.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep the temporary directory (its path is printed) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// When the store compresses bodies in the append and big sections: `background` (as
    /// `postlog serve` does by default: after the commit, on an idle-priority thread, whose
    /// leftover backlog is then compressed and timed after each run) or `inline` (before the
    /// commit, on the appending thread).
    #[arg(long, default_value = "background", value_parser = ["background", "inline"])]
    compression: String,
    /// Internal: open the store in this directory, print open time and memory as JSON, exit.
    #[arg(long, hide = true)]
    probe_open: Option<PathBuf>,
}

static COMPRESSION: std::sync::OnceLock<Compression> = std::sync::OnceLock::new();

/// The store options of the append and big sections (`--compression`).
fn append_options() -> Options {
    Options {
        compression: *COMPRESSION.get().unwrap_or(&Compression::Background),
        compression_thread: std::env::var_os("NOTHREAD").is_none(),
        ..Options::default()
    }
}

/// Brings a new store to its steady state before a timed run: appends corpus messages (to an
/// account of their own) until the store has trained its dictionary, which a store does once
/// in its life, and compresses what that left waiting. Returns the seconds it took.
fn warm_up(store: &Store, corpus: &[Vec<u8>]) -> Res<f64> {
    use postlog_engine::dict::TrainingState;
    let started = Instant::now();
    let t = make_accounts(store, "warmup", 1)?.remove(0);
    let mut i = 0u64;
    loop {
        match store.dictionary_state() {
            TrainingState::Sampling { .. } => {
                let m = &corpus[(i % corpus.len() as u64) as usize];
                store.append(&unique_variant(m, 1 << 40 | i), std::slice::from_ref(&t))?;
                i += 1;
            }
            TrainingState::Training => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the store did not train its dictionary within 2 minutes".into());
        }
    }
    store.compress_backlog_now()?;
    Ok(started.elapsed().as_secs_f64())
}

/// After a run with background compression: the backlog left, compressed now and timed.
/// Returns (blobs left, raw MB left, seconds, CPU seconds) and says it.
fn drain_backlog(store: &Store, out: &Out) -> Res<Value> {
    if store.options().compression != Compression::Background {
        return Ok(Value::Null);
    }
    let (blobs, bytes) = store.compression_backlog();
    let (t0, cpu0) = (Instant::now(), process_cpu());
    store.compress_backlog_now()?;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), (process_cpu() - cpu0).as_secs_f64());
    out.say(format!(
        "        then compressed the {blobs} bodies ({:.1} MB raw) left waiting in {secs:.2} s ({cpu:.2} s of CPU)",
        bytes as f64 / 1e6
    ));
    Ok(
        json!({"backlog_blobs": blobs, "backlog_raw_bytes": bytes, "drain_s": round(secs, 3), "drain_cpu_s": round(cpu, 3)}),
    )
}

/// Sizes of one run.
struct Sizes {
    fsync_secs: f64,
    seq_bytes: u64,
    append_secs: f64,
    big_secs: f64,
    mailbox_messages: u64,
    metas_runs: usize,
    reads: usize,
    recovery_log_bytes: u64,
    startup_messages: u64,
    startup_probes: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                fsync_secs: 1.0,
                seq_bytes: 128 << 20,
                append_secs: 1.5,
                big_secs: 1.5,
                mailbox_messages: 100_000,
                metas_runs: 3,
                reads: 5_000,
                recovery_log_bytes: 256 << 20,
                startup_messages: 100_000,
                startup_probes: 1,
            }
        } else {
            Sizes {
                fsync_secs: 2.0,
                seq_bytes: 1 << 30,
                append_secs: 10.0,
                big_secs: 8.0,
                mailbox_messages: 100_000,
                metas_runs: 7,
                reads: 50_000,
                recovery_log_bytes: 1 << 30,
                startup_messages: 1_000_000,
                startup_probes: 3,
            }
        }
    }
}

/// Where the readable report goes.
struct Out {
    json: bool,
}

impl Out {
    fn say(&self, s: impl Display) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

fn progress(s: impl Display) {
    eprintln!("  .. {s}");
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.probe_open {
        probe_open(dir);
        return;
    }
    if let Err(e) = run(args) {
        eprintln!("storebench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Res<()> {
    for s in &args.only {
        if !SECTIONS.contains(&s.as_str()) {
            return Err(format!("unknown section {s:?} (known: {})", SECTIONS.join(", ")).into());
        }
    }
    KEEP.store(args.keep, Ordering::Relaxed);
    let compression = if args.compression == "inline" { Compression::Inline } else { Compression::Background };
    let _ = COMPRESSION.set(compression);
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let sizes = Sizes::new(args.quick);
    let out = Out { json: args.json };
    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new().prefix("storebench-").tempdir_in(&parent)?;
    let root = tmp.path().to_path_buf();
    let corpus_dir = args.corpus.clone().unwrap_or_else(default_corpus_dir);
    let corpus = load_corpus(&corpus_dir).map_err(|e| format!("corpus {}: {e}", corpus_dir.display()))?;
    let started = Instant::now();

    let machine = machine_info(&root);
    out.say(format!(
        "storebench ({} run) — {}",
        if args.quick { "quick" } else { "full" },
        machine["date"].as_str().unwrap_or("?")
    ));
    out.say(format!(
        "machine: {} cores, {:.1} GiB RAM, {}; kernel {}",
        machine["cores"],
        machine["mem_bytes"].as_f64().unwrap_or(0.0) / GIB,
        machine["cpu"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?")
    ));
    out.say(format!("load average at start: {}", machine["loadavg_at_start"].as_str().unwrap_or("?")));
    out.say(format!(
        "measured: {} — filesystem {} on {} mounted at {}",
        root.display(),
        machine["fs_type"].as_str().unwrap_or("?"),
        machine["fs_source"].as_str().unwrap_or("?"),
        machine["fs_mount"].as_str().unwrap_or("?"),
    ));
    if machine["fs_type"] == "tmpfs" || machine["fs_type"] == "ramfs" {
        out.say("WARNING: this directory is on a memory filesystem: fdatasync is free and the figures mean nothing");
    }
    let corpus_bytes: usize = corpus.iter().map(Vec::len).sum();
    out.say(format!(
        "corpus: {} messages, {} bytes (mean {} bytes) from {}",
        corpus.len(),
        corpus_bytes,
        corpus_bytes / corpus.len(),
        corpus_dir.display()
    ));
    out.say(format!(
        "compression in the append and big sections: {} (--compression)",
        if compression == Compression::Inline {
            "inline, before each commit"
        } else {
            "background, after the commit on an idle-priority thread, as `postlog serve` does"
        }
    ));

    let mut report = serde_json::Map::new();
    report.insert("quick".into(), json!(args.quick));
    report.insert("compression".into(), json!(args.compression));
    report.insert("machine".into(), machine);
    report.insert(
        "corpus".into(),
        json!({"messages": corpus.len(), "bytes": corpus_bytes, "mean_bytes": corpus_bytes / corpus.len()}),
    );

    let mut disk = None;
    if want("disk") {
        let d = disk_limits(&root, &sizes, &out)?;
        report.insert("disk".into(), d.clone());
        disk = Some(d);
    }
    let fsync_rate = disk.as_ref().and_then(|d| d["fdatasync_4k_per_s"].as_f64());
    let seq_mb_s = disk.as_ref().and_then(|d| d["seq_write_mb_s"].as_f64());
    if want("cpu") {
        report.insert("cpu".into(), cpu_costs(&corpus, &out));
    }
    if want("append") {
        out.say("\n== durable appends of corpus-sized messages (each waits for its fdatasync) ==");
        out.say(format!(
            "{:>7} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9} {:>13} {:>9} {:>11} {:>14}",
            "writers",
            "appends/s",
            "x fdatasync",
            "avg batch",
            "p50 ms",
            "p99 ms",
            "cpu used",
            "committer cpu",
            "in sync",
            "others cpu",
            "cpu µs/append"
        ));
        let mut rows = Vec::new();
        for writers in [1, 16, 64] {
            rows.push(append_corpus(&root, &corpus, writers, &sizes, fsync_rate, &out)?);
        }
        for r in &rows {
            out.say(format!(
                "  {:>2} writers: {:.0} µs of CPU per append => all {} cores of an idle machine could do at most {:.0} appends/s",
                r["writers"],
                r["cpu_us_per_append"].as_f64().unwrap_or(0.0),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                r["cpu_ceiling_per_s"].as_f64().unwrap_or(0.0)
            ));
        }
        report.insert("append_corpus".into(), Value::Array(rows));
    }
    if want("big") {
        report.insert("append_1mib".into(), append_big(&root, &corpus, &sizes, seq_mb_s, &out)?);
    }
    if want("mailbox") {
        let (m, r, rec) = mailbox_and_recovery(&root, &corpus, &sizes, &out)?;
        report.insert("metas".into(), m);
        report.insert("read_message".into(), r);
        report.insert("recovery".into(), rec);
    }
    if want("startup") {
        report.insert("startup".into(), startup(&root, &sizes, &out)?);
    }
    if want("space") {
        report.insert("space".into(), space(&root, &corpus, &out)?);
    }
    if want("disk") {
        // The disk is shared: measure its sync rate again to show how much it moved.
        let (rate, _) = fdatasync_appends(&root, sizes.fsync_secs)?;
        out.say(format!("\nfdatasync'd 4 KiB appends again at the end of the run: {rate:.0} /s"));
        if let Some(Value::Object(d)) = report.get_mut("disk") {
            d.insert("fdatasync_4k_per_s_at_end".into(), json!(round(rate, 1)));
        }
    }
    let targets = judge(&report, args.quick);
    out.say("\n== targets ==");
    for t in targets.as_array().into_iter().flatten() {
        let verdict = match t["met"].as_bool() {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "(no target)",
        };
        out.say(format!(
            "{:<52} {:>16}  target {:<22} {}",
            t["what"].as_str().unwrap_or(""),
            t["observed"].as_str().unwrap_or(""),
            t["target"].as_str().unwrap_or("-"),
            verdict
        ));
    }
    report.insert("targets".into(), targets);
    let total = started.elapsed().as_secs_f64();
    report.insert("run_seconds".into(), json!(round(total, 1)));
    report.insert("loadavg_at_end".into(), json!(loadavg()));
    out.say(format!("\n(run took {total:.1} s; load average at the end {})", loadavg()));
    if args.keep {
        out.say(format!("kept {}", tmp.keep().display()));
    } else {
        drop(tmp);
    }
    if args.json {
        println!("{}", Value::Object(report));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The machine and the filesystem.

fn machine_info(dir: &Path) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:")).and_then(kib_field))
        .unwrap_or(0)
        * 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (mount, fstype, source) = filesystem_of(dir).unwrap_or_default();
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json!({
        "date": utc_date(secs),
        "cores": cores,
        "mem_bytes": mem,
        "cpu": cpu,
        "kernel": kernel,
        "dir": dir.display().to_string(),
        "fs_mount": mount,
        "fs_type": fstype,
        "fs_source": source,
        "loadavg_at_start": loadavg(),
    })
}

/// The 1, 5 and 15 minute load averages (the machine may be shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

fn kib_field(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (mount point, filesystem type, source) of the mount holding `path`, from
/// /proc/self/mountinfo (the longest mount point that contains the path).
fn filesystem_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, (String, String, String))> = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mount = unescape_mount(left.split(' ').nth(4)?);
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?.to_string(), r.next()?.to_string());
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), (mount, fstype, source)));
        }
    }
    best.map(|b| b.1)
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time.
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

// ---------------------------------------------------------------------------------------
// Process and thread measurements.

/// (VmRSS, VmHWM) of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(kib_field).unwrap_or(0) * 1024;
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of the whole process, finished threads included.
fn process_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct we pass; we read it only when it reports success.
    #[allow(unsafe_code)]
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the store's committer threads alive now (from /proc/self/task/*/schedstat).
fn committer_cpu() -> Duration {
    let mut ns = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let p = entry.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        // comm is cut to 15 bytes: "postlog-committ".
        if comm.starts_with("postlog-commit") {
            let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            ns += sched.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// Drops the page cache of every file in `dir`, so the next reads come from the disk (as
/// after a reboot). Only this benchmark's files are touched.
fn evict(dir: &Path) -> Res<()> {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let f = File::open(&path)?;
        f.sync_all()?;
        // SAFETY: plain syscall on a descriptor we own; no memory is passed.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(format!("posix_fadvise {}: error {rc}", path.display()).into());
        }
    }
    Ok(())
}

static KEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Removes a section's directory, unless `--keep`.
fn done_with(dir: &Path) -> Res<()> {
    if !KEEP.load(Ordering::Relaxed) {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

/// CPU time all processes of the machine spent busy (from /proc/stat, in USER_HZ = 100 ticks).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return Duration::ZERO };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let busy: u64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    Duration::from_millis(busy * 10)
}

/// Counters of a store at one moment.
#[derive(Clone, Copy, Default)]
struct Snap {
    batches: u64,
    txns: u64,
    bytes: u64,
    sync: Duration,
    cpu: Duration,
    committer: Duration,
    machine: Duration,
    at: Option<Instant>,
}

impl Snap {
    fn of(stats: &Stats) -> Snap {
        Snap {
            batches: stats.batches.load(Ordering::Relaxed),
            txns: stats.transactions.load(Ordering::Relaxed),
            bytes: stats.bytes_written.load(Ordering::Relaxed),
            sync: Duration::from_nanos(stats.sync_nanos.load(Ordering::Relaxed)),
            cpu: process_cpu(),
            committer: committer_cpu(),
            machine: machine_busy(),
            at: Some(Instant::now()),
        }
    }

    /// Batch figures between `self` (earlier) and `later`.
    fn delta(&self, later: &Snap) -> Value {
        let wall = match (self.at, later.at) {
            (Some(a), Some(b)) => (b - a).as_secs_f64().max(1e-9),
            _ => 1e-9,
        };
        let batches = later.batches - self.batches;
        let txns = later.txns - self.txns;
        json!({
            "batches": batches,
            "transactions": txns,
            "avg_batch": round(txns as f64 / batches.max(1) as f64, 2),
            "log_bytes_written": later.bytes - self.bytes,
            "mean_write_sync_ms": round((later.sync - self.sync).as_secs_f64() * 1e3 / batches.max(1) as f64, 3),
            "sync_share": round((later.sync - self.sync).as_secs_f64() / wall, 3),
            "cpu_cores_used": round((later.cpu - self.cpu).as_secs_f64() / wall, 2),
            "committer_cpu_share": round((later.committer - self.committer).as_secs_f64() / wall, 3),
            "others_cpu_cores": round(
                ((later.machine - self.machine).as_secs_f64() - (later.cpu - self.cpu).as_secs_f64()).max(0.0) / wall,
                2
            ),
        })
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

// ---------------------------------------------------------------------------------------
// Writers.

/// What a set of writer threads did.
struct Run {
    count: u64,
    bytes: u64,
    elapsed: Duration,
    /// Append latencies in nanoseconds, sorted.
    lat: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, p: f64) -> f64 {
        round(percentile(&self.lat, p) as f64 / 1e6, 3)
    }
}

/// Runs `writers` threads that append until `stop(i)` says so for the next index `i`; each
/// append of the message `make(thread, i)` waits for its durable reply.
fn run_writers(
    store: &Store,
    writers: usize,
    stop: &(dyn Fn(u64) -> bool + Sync),
    make: &(dyn Fn(usize, u64) -> (Vec<u8>, AppendTarget) + Sync),
) -> Res<Run> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    /// Per writer: appends, bytes, latencies.
    type WriterResult = Result<(u64, u64, Vec<u64>), String>;
    let results: Vec<WriterResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let next = &next;
                std::thread::Builder::new()
                    .stack_size(1 << 20)
                    .spawn_scoped(s, move || {
                        let (mut n, mut bytes, mut lat) = (0u64, 0u64, Vec::new());
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if stop(i) {
                                break;
                            }
                            let (raw, target) = make(t, i);
                            let t0 = Instant::now();
                            store.append(&raw, std::slice::from_ref(&target)).map_err(|e| e.to_string())?;
                            lat.push(t0.elapsed().as_nanos() as u64);
                            n += 1;
                            bytes += raw.len() as u64;
                        }
                        Ok((n, bytes, lat))
                    })
                    .expect("spawn a writer thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into()))).collect()
    });
    let elapsed = started.elapsed();
    let mut run = Run { count: 0, bytes: 0, elapsed, lat: Vec::new() };
    for r in results {
        let (n, b, l) = r.map_err(|e| format!("append failed: {e}"))?;
        run.count += n;
        run.bytes += b;
        run.lat.extend(l);
    }
    run.lat.sort_unstable();
    Ok(run)
}

fn target(account: AccountId, mailbox: MailboxId) -> AppendTarget {
    AppendTarget { account, mailbox, flags: 0, keywords: Vec::new(), internal_date: 1_767_225_600 }
}

/// Creates `n` accounts and returns their INBOX targets.
fn make_accounts(store: &Store, prefix: &str, n: usize) -> Res<Vec<AppendTarget>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = store.create_account(&format!("{prefix}{i}"), &[])?;
        out.push(target(a, store.mailbox_by_name(a, "INBOX")?.id));
    }
    Ok(out)
}

fn deadline_after(secs: f64) -> impl Fn(u64) -> bool + Sync {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    move |_| Instant::now() >= end
}

/// Sum of the lengths (and of the allocated bytes) of the files in `dir` named like `prefix*`.
fn file_bytes(dir: &Path, prefix: &str) -> Res<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut alloc) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let m = entry.metadata()?;
            len += m.len();
            alloc += m.blocks() * 512;
        }
    }
    Ok((len, alloc))
}

// ---------------------------------------------------------------------------------------
// Sections.

/// The disk's own limits: fdatasync'd 4 KiB appends, and sequential write bandwidth.
fn disk_limits(root: &Path, sizes: &Sizes, out: &Out) -> Res<Value> {
    out.say("\n== the disk's own limits ==");
    let mut rng = Rng::new(1);

    // Plain appends: every fdatasync also commits the new file size.
    let (rate, lat) = fdatasync_appends(root, sizes.fsync_secs)?;
    out.say(format!(
        "fdatasync'd 4 KiB appends:          {rate:>9.0} /s   (p50 {:.3} ms, p99 {:.3} ms)",
        percentile(&lat, 50.0) as f64 / 1e6,
        percentile(&lat, 99.0) as f64 / 1e6
    ));

    // The store's pattern: space reserved ahead with fallocate(KEEP_SIZE), then appends.
    let path = root.join("fsync-prealloc.bin");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    fallocate_keep_size(&f, 256 << 20)?;
    let (rate_pre, lat_pre) = sync_loop(&mut f, sizes.fsync_secs)?;
    drop(f);
    std::fs::remove_file(&path)?;
    out.say(format!(
        "  same into fallocated space:       {rate_pre:>9.0} /s   (p50 {:.3} ms; the store reserves ahead like this)",
        percentile(&lat_pre, 50.0) as f64 / 1e6
    ));

    // Sequential bandwidth: 1 MiB writes, then one fdatasync.
    let mut chunk = vec![0u8; MIB];
    chunk.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    let path = root.join("seq.bin");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let started = Instant::now();
    for i in 0..sizes.seq_bytes / MIB as u64 {
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&chunk)?;
    }
    let written = started.elapsed();
    f.sync_data()?;
    let total = started.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    let mb_s = sizes.seq_bytes as f64 / total.as_secs_f64() / 1e6;
    out.say(format!(
        "sequential write ({} MiB, 1 MiB writes + fdatasync): {mb_s:.0} MB/s   (writes {:.2} s, final sync {:.2} s)",
        sizes.seq_bytes >> 20,
        written.as_secs_f64(),
        (total - written).as_secs_f64()
    ));
    Ok(json!({
        "fdatasync_4k_per_s": round(rate, 1),
        "fdatasync_4k_p50_ms": round(percentile(&lat, 50.0) as f64 / 1e6, 3),
        "fdatasync_4k_p99_ms": round(percentile(&lat, 99.0) as f64 / 1e6, 3),
        "fdatasync_4k_prealloc_per_s": round(rate_pre, 1),
        "seq_write_bytes": sizes.seq_bytes,
        "seq_write_mb_s": round(mb_s, 1),
        "seq_write_final_sync_s": round((total - written).as_secs_f64(), 3),
    }))
}

/// Writes 4 KiB and fdatasyncs, again and again for `secs`: (rate per second, sorted
/// latencies in nanoseconds).
fn sync_loop(f: &mut File, secs: f64) -> Res<(f64, Vec<u64>)> {
    let mut buf = vec![0u8; 4096];
    let mut rng = Rng::new(1);
    buf.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    let mut lat = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs {
        let t0 = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok((rate, lat))
}

/// [`sync_loop`] appending to a new file.
fn fdatasync_appends(root: &Path, secs: f64) -> Res<(f64, Vec<u64>)> {
    let path = root.join("fsync-append.bin");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let r = sync_loop(&mut f, secs)?;
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(r)
}

fn fallocate_keep_size(f: &File, len: i64) -> Res<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if rc != 0 {
        return Err(format!("fallocate: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// CPU microseconds per call of `f` on every corpus message in turn, over about `ms` of
/// wall time. CPU time, not wall time, so that other load on the machine matters less (the
/// caller must be the only busy thread of the process).
fn per_message_us(corpus: &[Vec<u8>], ms: u64, mut f: impl FnMut(&[u8])) -> f64 {
    let started = Instant::now();
    let cpu = process_cpu();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_millis(ms) {
        for m in corpus {
            f(m);
        }
        n += corpus.len();
    }
    (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64
}

/// Caller-thread CPU cost of an append of a corpus message, by part, on one thread.
fn cpu_costs(corpus: &[Vec<u8>], out: &Out) -> Value {
    use sha2::Digest;
    use std::hint::black_box;
    out.say("\n== CPU cost per corpus message (CPU time, one thread) ==");
    let options = Options::default();
    let cpu0 = process_cpu();
    let wall0 = Instant::now();
    let prepare = per_message_us(corpus, 400, |m| drop(black_box(PreparedMessage::new(m, &options))));
    let sha = per_message_us(corpus, 200, |m| {
        black_box(sha2::Sha256::digest(m));
    });
    let parse = per_message_us(corpus, 400, |m| drop(black_box(postlog_engine::meta::parse(m).encode())));
    // The same from mail-parser's full parse (every body decoded), which the structure scan
    // replaced: what the scan saves.
    let parse_full =
        per_message_us(corpus, 400, |m| drop(black_box(postlog_engine::meta::parse_with_full_decode(m).encode())));
    let compressible = |m: &[u8]| m.len() >= options.compress_min_bytes;
    // As the engine does it: a new zstd context per message.
    let zstd_new = per_message_us(corpus, 300, |m| {
        if compressible(m) {
            drop(black_box(zstd::bulk::compress(m, options.zstd_level)));
        }
    });
    let mut reused = zstd::bulk::Compressor::new(options.zstd_level).expect("zstd context");
    let zstd_reused = per_message_us(corpus, 300, |m| {
        if compressible(m) {
            drop(black_box(reused.compress(m)));
        }
    });
    let mut fast = zstd::bulk::Compressor::new(1).expect("zstd context");
    let zstd_1 = per_message_us(corpus, 300, |m| {
        if compressible(m) {
            drop(black_box(fast.compress(m)));
        }
    });
    let size = |level: i32| -> usize {
        let mut c = zstd::bulk::Compressor::new(level).expect("zstd context");
        corpus.iter().map(|m| c.compress(m).map_or(m.len(), |z| z.len().min(m.len()))).sum()
    };
    let (size3, size1) = (size(options.zstd_level), size(1));
    // The speed/size trade of other levels, negative ("fast") levels included.
    let raw_total: usize = corpus.iter().map(Vec::len).sum();
    let mut sweep = Vec::new();
    for level in [3, 1, -1, -3, -5, -10] {
        let mut c = zstd::bulk::Compressor::new(level).expect("zstd context");
        let us = per_message_us(corpus, 200, |m| {
            if compressible(m) {
                drop(black_box(c.compress(m)));
            }
        });
        let ratio = size(level) as f64 / raw_total as f64;
        out.say(format!("  zstd level {level:>3}: {us:5.1} µs per message, size {ratio:.3} of raw"));
        sweep.push(json!({"level": level, "us": round(us, 2), "size_ratio": round(ratio, 4)}));
    }
    let encoded: Vec<Vec<u8>> = corpus.iter().map(|m| postlog_engine::meta::parse(m).encode()).collect();
    let decode = per_message_us(&encoded, 300, |e| {
        drop(black_box(postlog_engine::meta::MessageMeta::decode(e)));
    });
    // How much of a core this thread got (the machine is shared).
    let got = (process_cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    let raw: usize = corpus.iter().map(Vec::len).sum();
    out.say(format!(
        "PreparedMessage::new: {prepare:.1} µs = sha256 {sha:.1} + meta parse+encode {parse:.1} + zstd level {} {zstd_new:.1} (new context per call, as now)",
        options.zstd_level
    ));
    out.say(format!("  meta parse+encode from mail-parser's full parse (bodies decoded): {parse_full:.1} µs"));
    out.say(format!(
        "  zstd level {} with a reused context: {zstd_reused:.1} µs; level 1 reused: {zstd_1:.1} µs (sizes: {:.3} vs {:.3} of raw)",
        options.zstd_level,
        size3 as f64 / raw as f64,
        size1 as f64 / raw as f64
    ));
    out.say(format!(
        "MessageMeta::decode: {decode:.2} µs per message (=> {:.0} ms for 100,000)",
        decode * 100_000.0 / 1e3
    ));
    out.say(format!(
        "=> preparation alone caps appends at {:.0}/s per core; this thread got {got:.2} of a core",
        1e6 / prepare
    ));
    let dictionary = dictionary_costs(corpus, out);
    json!({
        "dictionary": dictionary,
        "prepare_us": round(prepare, 2),
        "sha256_us": round(sha, 2),
        "meta_parse_encode_us": round(parse, 2),
        "meta_parse_full_decode_us": round(parse_full, 2),
        "zstd_new_context_us": round(zstd_new, 2),
        "zstd_reused_context_us": round(zstd_reused, 2),
        "zstd_level1_us": round(zstd_1, 2),
        "zstd_size_ratio": round(size3 as f64 / raw as f64, 4),
        "zstd_level1_size_ratio": round(size1 as f64 / raw as f64, 4),
        "zstd_levels": sweep,
        "meta_decode_us": round(decode, 3),
        "prepare_cap_per_core": round(1e6 / prepare, 0),
        "core_share_got": round(got, 2),
    })
}

/// zstd with a dictionary as the store trains one (its sampler's first 16 KiB of each message,
/// 32 KiB dictionary), trained on the even-numbered half of the corpus and measured on the
/// other half (a dictionary measured on its own samples would flatter it), against plain zstd
/// on the same half: compression and decompression CPU per message, size.
fn dictionary_costs(corpus: &[Vec<u8>], out: &Out) -> Value {
    use postlog_engine::dict;
    use std::hint::black_box;
    let options = Options::default();
    let sample = |m: &Vec<u8>| -> Box<[u8]> { m[..m.len().min(dict::SAMPLE_PREFIX)].into() };
    let train: Vec<Box<[u8]>> = corpus.iter().step_by(2).map(sample).collect();
    let measure: Vec<Vec<u8>> =
        corpus.iter().skip(1).step_by(2).filter(|m| m.len() >= options.compress_min_bytes).cloned().collect();
    out.say(format!(
        "zstd with a dictionary trained on {} corpus messages (the even-numbered half), measured on the other {} (those of {} bytes or more):",
        train.len(),
        measure.len(),
        options.compress_min_bytes
    ));
    let started = Instant::now();
    let body = match dict::train(&train, dict::FIRST_DICT_ID) {
        Ok(b) => b,
        Err(e) => {
            out.say(format!("  training failed: {e}"));
            return json!({"error": e});
        }
    };
    let train_ms = started.elapsed().as_secs_f64() * 1e3;
    let decoder = dict::Decoder {
        id: dict::FIRST_DICT_ID,
        ddict: zstd::zstd_safe::DDict::try_create(&body).expect("zstd loads the dictionary"),
    };
    let raw: usize = measure.iter().map(Vec::len).sum();
    out.say(format!("  trained in {train_ms:.0} ms, {} bytes", body.len()));
    let mut rows = Vec::new();
    for level in [1, -1, -3] {
        // Plain zstd at this level, then with the dictionary, as the store's read path does it.
        let mut c = zstd::bulk::Compressor::new(level).expect("zstd context");
        let plain: Vec<Vec<u8>> = measure.iter().map(|m| c.compress(m).expect("zstd compresses")).collect();
        let plain_c = per_message_us(&measure, 300, |m| drop(black_box(c.compress(m))));
        let plain_d = per_pair_us(&plain, &measure, |z, m| {
            drop(black_box(postlog_engine::read::decompress(z, m.len() as u64)));
        });
        let enc = dict::Encoder::new(dict::FIRST_DICT_ID, &body, level).expect("zstd loads the dictionary");
        let with: Vec<Vec<u8>> = measure.iter().map(|m| dict::compress(m, &enc).expect("zstd compresses")).collect();
        let dict_c = per_message_us(&measure, 300, |m| drop(black_box(dict::compress(m, &enc))));
        let dict_d = per_pair_us(&with, &measure, |z, m| {
            drop(black_box(dict::decompress(z, m.len() as u64, &decoder, u64::MAX)));
        });
        let size = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / raw as f64;
        let (plain_size, dict_size) = (size(&plain), size(&with));
        out.say(format!(
            "  level {level:>2}: plain {plain_c:5.1} µs compress, {plain_d:5.1} µs decompress, {plain_size:.3} of raw; with the dictionary {dict_c:5.1} / {dict_d:5.1} µs, {dict_size:.3} of raw"
        ));
        rows.push(json!({
            "level": level,
            "plain_compress_us": round(plain_c, 2),
            "plain_decompress_us": round(plain_d, 2),
            "plain_size_ratio": round(plain_size, 4),
            "dict_compress_us": round(dict_c, 2),
            "dict_decompress_us": round(dict_d, 2),
            "dict_size_ratio": round(dict_size, 4),
        }));
    }
    json!({
        "train_messages": train.len(),
        "measured_messages": measure.len(),
        "dictionary_bytes": body.len(),
        "train_ms": round(train_ms, 0),
        "levels": rows,
    })
}

/// CPU µs per call of `f` over pairs (compressed, raw), for about 300 ms.
fn per_pair_us(zs: &[Vec<u8>], raws: &[Vec<u8>], mut f: impl FnMut(&[u8], &[u8])) -> f64 {
    let started = Instant::now();
    let cpu = process_cpu();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_millis(300) {
        for (z, m) in zs.iter().zip(raws) {
            f(z, m);
        }
        n += zs.len();
    }
    (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64
}

/// Durable appends of corpus messages (each made unique) with `writers` threads.
fn append_corpus(
    root: &Path,
    corpus: &[Vec<u8>],
    writers: usize,
    sizes: &Sizes,
    fsync_rate: Option<f64>,
    out: &Out,
) -> Res<Value> {
    let dir = root.join(format!("append-{writers}"));
    let store = Store::open(&dir, append_options())?;
    warm_up(&store, corpus)?;
    let targets = make_accounts(&store, "user", writers)?;
    let before = Snap::of(store.stats());
    let n = corpus.len() as u64;
    let run = run_writers(&store, writers, &deadline_after(sizes.append_secs), &|t, i| {
        (unique_variant(&corpus[(i % n) as usize], i), targets[t].clone())
    })?;
    let d = before.delta(&Snap::of(store.stats()));
    let stored_now = file_bytes(&dir, "seg-")?.0;
    let rate = run.rate();
    let ratio = fsync_rate.map(|f| round(rate / f, 2));
    // CPU time of the whole process per append, and the rate all cores of an otherwise idle
    // machine could sustain at that cost.
    let cpu_us =
        d["cpu_cores_used"].as_f64().unwrap_or(0.0) * run.elapsed.as_secs_f64() * 1e6 / run.count.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    out.say(format!(
        "{writers:>7} {rate:>10.0} {:>12} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>13.2} {:>9.2} {:>11.2} {cpu_us:>14.0}",
        ratio.map_or("-".into(), |r| format!("{r:.1}x")),
        d["avg_batch"].as_f64().unwrap_or(0.0),
        run.ms(50.0),
        run.ms(99.0),
        d["cpu_cores_used"].as_f64().unwrap_or(0.0),
        d["committer_cpu_share"].as_f64().unwrap_or(0.0),
        d["sync_share"].as_f64().unwrap_or(0.0),
        d["others_cpu_cores"].as_f64().unwrap_or(0.0),
    ));
    let drained = drain_backlog(&store, out)?;
    drop(store);
    done_with(&dir)?;
    let mut v = json!({
        "writers": writers,
        "segment_bytes_after_run": stored_now,
        "background_compression": drained,
        "appends": run.count,
        "seconds": round(run.elapsed.as_secs_f64(), 3),
        "appends_per_s": round(rate, 1),
        "ratio_to_fdatasync": ratio,
        "raw_mb_s": round(run.bytes as f64 / run.elapsed.as_secs_f64() / 1e6, 2),
        "p50_ms": run.ms(50.0),
        "p99_ms": run.ms(99.0),
        "cpu_us_per_append": round(cpu_us, 1),
        "cpu_ceiling_per_s": round(cores * 1e6 / cpu_us, 0),
    });
    merge(&mut v, d);
    Ok(v)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// Appends of 1 MiB messages, incompressible and compressible, with 1 and 4 writers.
fn append_big(root: &Path, corpus: &[Vec<u8>], sizes: &Sizes, seq_mb_s: Option<f64>, out: &Out) -> Res<Value> {
    out.say("\n== durable appends of 1 MiB messages ==");
    out.say(format!(
        "{:<15} {:>7} {:>8} {:>9} {:>10} {:>8} {:>9} {:>9} {:>13} {:>8} {:>11}",
        "variant",
        "writers",
        "MB/s",
        "x seq bw",
        "stored/raw",
        "batch",
        "p50 ms",
        "cpu used",
        "committer cpu",
        "in sync",
        "others cpu"
    ));
    let mut rows = Vec::new();
    let mut prep = serde_json::Map::new();
    for (name, compressible) in [("incompressible", false), ("compressible", true)] {
        let body = big_message(MIB, compressible, 42);
        // Caller-thread work alone (hash + parse + compress), one thread.
        let options = Options::default();
        // CPU time, not wall time: the machine may be shared.
        let (t0, cpu0) = (Instant::now(), process_cpu());
        let mut k = 0u64;
        while t0.elapsed() < Duration::from_millis(500) {
            std::hint::black_box(PreparedMessage::new(&unique_variant(&body, k), &options));
            k += 1;
        }
        let prep_mb_s = (k * body.len() as u64) as f64 / (process_cpu() - cpu0).as_secs_f64() / 1e6;
        prep.insert(name.into(), json!(round(prep_mb_s, 1)));
        for writers in [1, 4] {
            let dir = root.join(format!("big-{name}-{writers}"));
            let store = Store::open(&dir, append_options())?;
            warm_up(&store, corpus)?;
            let targets = make_accounts(&store, "big", writers)?;
            let before = Snap::of(store.stats());
            let run = run_writers(&store, writers, &deadline_after(sizes.big_secs), &|t, i| {
                (unique_variant(&body, i), targets[t].clone())
            })?;
            let d = before.delta(&Snap::of(store.stats()));
            let mb_s = run.bytes as f64 / run.elapsed.as_secs_f64() / 1e6;
            let ratio = seq_mb_s.map(|s| round(mb_s / s, 3));
            let stored = d["log_bytes_written"].as_f64().unwrap_or(0.0) / run.bytes.max(1) as f64;
            out.say(format!(
                "{name:<15} {writers:>7} {mb_s:>8.1} {:>9} {stored:>10.2} {:>8.1} {:>9.1} {:>9.2} {:>13.2} {:>8.2} {:>11.2}",
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                d["avg_batch"].as_f64().unwrap_or(0.0),
                run.ms(50.0),
                d["cpu_cores_used"].as_f64().unwrap_or(0.0),
                d["committer_cpu_share"].as_f64().unwrap_or(0.0),
                d["sync_share"].as_f64().unwrap_or(0.0),
                d["others_cpu_cores"].as_f64().unwrap_or(0.0),
            ));
            let drained = drain_backlog(&store, out)?;
            drop(store);
            done_with(&dir)?;
            let mut v = json!({
                "background_compression": drained,
                "variant": name,
                "writers": writers,
                "appends": run.count,
                "seconds": round(run.elapsed.as_secs_f64(), 3),
                "raw_mb_s": round(mb_s, 1),
                "ratio_to_seq_write": ratio,
                "stored_per_raw": round(stored, 3),
                "p50_ms": run.ms(50.0),
                "p99_ms": run.ms(99.0),
            });
            merge(&mut v, d);
            rows.push(v);
        }
    }
    out.say(format!(
        "caller-side preparation (sha256 + parse + zstd) of a 1 MiB message: {:.0} MB/s incompressible, {:.0} MB/s compressible per core of CPU time",
        prep["incompressible"].as_f64().unwrap_or(0.0),
        prep["compressible"].as_f64().unwrap_or(0.0)
    ));
    Ok(json!({"runs": rows, "prepare_mb_s_one_thread": prep}))
}

/// A 100,000-message mailbox (metadata of all, body reads by UID), then more log up to the
/// recovery size, a crash (drop without close, no snapshot) and the timed recovery.
fn mailbox_and_recovery(root: &Path, corpus: &[Vec<u8>], sizes: &Sizes, out: &Out) -> Res<(Value, Value, Value)> {
    out.say("\n== a 100,000-message mailbox ==");
    let dir = root.join("mailbox");
    // No automatic snapshot: recovery below must replay the whole log.
    let options = Options { snapshot_every_bytes: u64::MAX, ..Options::default() };
    let store = Store::open(&dir, options.clone())?;
    let account = store.create_account("big", &[("Archive", 0)])?;
    let inbox = target(account, store.mailbox_by_name(account, "INBOX")?.id);
    let archive = target(account, store.mailbox_by_name(account, "Archive")?.id);
    let n = corpus.len() as u64;
    let total = sizes.mailbox_messages;
    progress(format!("filling INBOX with {total} corpus messages, 64 writers"));
    let before = Snap::of(store.stats());
    let fill = run_writers(&store, 64, &|i| i >= total, &|_, i| {
        (unique_variant(&corpus[(i % n) as usize], i), inbox.clone())
    })?;
    let fill_stats = before.delta(&Snap::of(store.stats()));
    out.say(format!(
        "fill: {} messages in {:.1} s ({:.0} appends/s, avg batch {:.1})",
        fill.count,
        fill.elapsed.as_secs_f64(),
        fill.rate(),
        fill_stats["avg_batch"].as_f64().unwrap_or(0.0)
    ));

    // Metadata of every message.
    let mut times = Vec::new();
    let mut result_bytes = 0;
    for run in 0..sizes.metas_runs {
        let rss = memory().0;
        let t0 = Instant::now();
        let metas = store.metas(account, inbox.mailbox)?;
        times.push(t0.elapsed().as_nanos() as u64);
        if run == 0 {
            result_bytes = memory().0.saturating_sub(rss);
        }
        if metas.len() as u64 != total {
            return Err(format!("metas returned {} of {total}", metas.len()).into());
        }
        drop(std::hint::black_box(metas));
    }
    let first_ms = times[0] as f64 / 1e6;
    times.sort_unstable();
    let median_ms = percentile(&times, 50.0) as f64 / 1e6;
    let min_ms = times[0] as f64 / 1e6;
    out.say(format!(
        "metas() of {total} messages: median {median_ms:.1} ms, min {min_ms:.1} ms, first {first_ms:.1} ms ({:.2} µs per message); the result holds {} MiB",
        median_ms * 1e3 / total as f64,
        result_bytes >> 20
    ));

    // The same metadata read in place (checksums verified, nothing decoded or copied): what a
    // first sync starts from before it decodes only the fields it sends.
    let mut raw_times = Vec::new();
    for _ in 0..sizes.metas_runs {
        let t0 = Instant::now();
        let mut n = 0u64;
        let mut bytes = 0usize;
        store.for_each_meta(account, inbox.mailbox, |_, b| {
            n += 1;
            bytes += b.len();
            Ok(())
        })?;
        raw_times.push(t0.elapsed().as_nanos() as u64);
        if n != total {
            return Err(format!("for_each_meta gave {n} of {total}").into());
        }
        std::hint::black_box(bytes);
    }
    raw_times.sort_unstable();
    let raw_median_ms = percentile(&raw_times, 50.0) as f64 / 1e6;
    out.say(format!(
        "for_each_meta() of {total} messages (read in place, not decoded): median {raw_median_ms:.1} ms ({:.2} µs per message)",
        raw_median_ms * 1e3 / total as f64
    ));

    // Bodies by random UID.
    let uids: Vec<u32> = store.messages(account, inbox.mailbox)?.iter().map(|m| m.uid).collect();
    let mut rng = Rng::new(7);
    let mut lat = Vec::with_capacity(sizes.reads);
    let mut bytes = 0usize;
    for _ in 0..sizes.reads {
        let uid = uids[rng.below(uids.len() as u64) as usize];
        let t0 = Instant::now();
        let body = store.read_message(account, inbox.mailbox, uid)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        bytes += body.len();
    }
    lat.sort_unstable();
    let mean_us = lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1e3;
    let (p50_us, p99_us) = (percentile(&lat, 50.0) as f64 / 1e3, percentile(&lat, 99.0) as f64 / 1e3);
    out.say(format!(
        "read_message() of {} random UIDs: mean {mean_us:.1} µs, p50 {p50_us:.1} µs, p99 {p99_us:.1} µs (mean body {} bytes, warm page cache)",
        sizes.reads,
        bytes / sizes.reads
    ));
    let metas = json!({
        "messages": total,
        "fill_seconds": round(fill.elapsed.as_secs_f64(), 2),
        "fill_appends_per_s": round(fill.rate(), 1),
        "fill_avg_batch": fill_stats["avg_batch"],
        "median_ms": round(median_ms, 2),
        "raw_median_ms": round(raw_median_ms, 2),
        "min_ms": round(min_ms, 2),
        "first_ms": round(first_ms, 2),
        "result_rss_bytes": result_bytes,
    });
    let reads = json!({
        "reads": sizes.reads,
        "mean_us": round(mean_us, 2),
        "p50_us": round(p50_us, 2),
        "p99_us": round(p99_us, 2),
        "mean_body_bytes": bytes / sizes.reads,
    });

    // More log, then a crash.
    out.say("\n== recovery after a crash ==");
    let goal = sizes.recovery_log_bytes;
    let stats = store.stats();
    let more = run_writers(&store, 64, &|_| stats.bytes_written.load(Ordering::Relaxed) >= goal, &|_, i| {
        (unique_variant(&corpus[(i % n) as usize], total + i), archive.clone())
    })?;
    progress(format!(
        "filled the log to {} MiB ({} more messages)",
        stats.bytes_written.load(Ordering::Relaxed) >> 20,
        more.count
    ));
    let messages = total + more.count;
    drop(store); // no close(): no snapshot, like a crash after the last durable commit
    let snap = dir.join("index.snap");
    let had_snapshot = snap.exists();
    if had_snapshot {
        std::fs::remove_file(&snap)?;
    }
    let (log_bytes, _) = file_bytes(&dir, "seg-")?;
    let gib = log_bytes as f64 / GIB;

    evict(&dir)?;
    let t0 = Instant::now();
    let store = Store::open(&dir, options.clone())?;
    let cold = t0.elapsed().as_secs_f64();
    let rep = store.recovery_report().clone();
    if rep.snapshot_used {
        return Err("recovery used a snapshot; expected a full replay".into());
    }
    let t0 = Instant::now();
    let m = store.metas(account, inbox.mailbox)?;
    let metas_after_cold_open_ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(m);
    drop(store);
    let t0 = Instant::now();
    let store = Store::open(&dir, options)?;
    let warm = t0.elapsed().as_secs_f64();
    drop(store);
    done_with(&dir)?;
    out.say(format!(
        "log of {:.2} GiB ({messages} messages, {} records replayed): open {cold:.2} s with a cold page cache = {:.2} s/GiB; {warm:.2} s warm = {:.2} s/GiB",
        gib,
        rep.records_replayed,
        cold / gib,
        warm / gib
    ));
    out.say(format!(
        "metas() of the {total}-message INBOX right after the cold recovery: {metas_after_cold_open_ms:.1} ms"
    ));
    let recovery = json!({
        "log_bytes": log_bytes,
        "messages": messages,
        "records_replayed": rep.records_replayed,
        "bytes_replayed": rep.bytes_replayed,
        "snapshot_deleted": had_snapshot,
        "open_cold_s": round(cold, 3),
        "open_warm_s": round(warm, 3),
        "s_per_gib_cold": round(cold / gib, 3),
        "s_per_gib_warm": round(warm / gib, 3),
        "metas_after_cold_open_ms": round(metas_after_cold_open_ms, 2),
    });
    Ok((metas, reads, recovery))
}

/// Startup of a cleanly closed store of many small messages, and its memory, each measured
/// in a fresh process.
fn startup(root: &Path, sizes: &Sizes, out: &Out) -> Res<Value> {
    let total = sizes.startup_messages;
    out.say(format!("\n== startup of a clean store of {total} messages ({total} small messages in 100 INBOXes) =="));
    let dir = root.join("startup");
    let store = Store::open(&dir, Options::default())?;
    let targets = make_accounts(&store, "u", 100)?;
    let writers = 128;
    progress(format!("filling {total} small messages, {writers} writers"));
    let before = Snap::of(store.stats());
    let fill =
        run_writers(&store, writers, &|i| i >= total, &|_, i| (small_message(i), targets[(i % 100) as usize].clone()))?;
    let d = before.delta(&Snap::of(store.stats()));
    let t0 = Instant::now();
    store.close()?;
    let close_s = t0.elapsed().as_secs_f64();
    drop(store);
    let (log_bytes, _) = file_bytes(&dir, "seg-")?;
    let (snap_bytes, _) = file_bytes(&dir, "index.snap")?;
    out.say(format!(
        "fill: {:.1} s ({:.0} appends/s, avg batch {:.1}, {:.2} cores busy); close (snapshot) {close_s:.2} s; log {} MiB, snapshot {} MiB",
        fill.elapsed.as_secs_f64(),
        fill.rate(),
        d["avg_batch"].as_f64().unwrap_or(0.0),
        d["cpu_cores_used"].as_f64().unwrap_or(0.0),
        log_bytes >> 20,
        snap_bytes >> 20
    ));

    let mut warm = Vec::new();
    for _ in 0..sizes.startup_probes {
        warm.push(run_probe(&dir)?);
    }
    evict(&dir)?;
    let cold = run_probe(&dir)?;
    done_with(&dir)?;
    for p in warm.iter().chain([&cold]) {
        if p["messages"].as_u64() != Some(total) || p["snapshot_used"] != json!(true) {
            return Err(format!("probe saw {p}").into());
        }
    }
    let mut opens: Vec<f64> = warm.iter().filter_map(|p| p["open_s"].as_f64()).collect();
    opens.sort_by(f64::total_cmp);
    let open_warm = opens[opens.len() / 2];
    let open_cold = cold["open_s"].as_f64().unwrap_or(0.0);
    let rss_growth = warm.iter().filter_map(|p| p["rss_growth_bytes"].as_f64()).fold(0.0, f64::max);
    let peak_growth = warm.iter().filter_map(|p| p["peak_growth_bytes"].as_f64()).fold(0.0, f64::max);
    let per_1m = 1e6 / total as f64;
    out.say(format!(
        "open (fresh process): {open_warm:.3} s warm (median of {}), {open_cold:.3} s with a cold page cache; per 1M messages: {:.2} s warm, {:.2} s cold",
        warm.len(),
        open_warm * per_1m,
        open_cold * per_1m
    ));
    if let Some(p) = warm.last() {
        let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
        out.say(format!(
            "  of an open (timed again piece by piece, warm): reading index.snap {:.3} s; load_snapshot (read + copy + validate + deserialize) {:.3} s; State::recount_refs {:.3} s",
            f("breakdown_read_snapshot_file_s"),
            f("breakdown_load_snapshot_s"),
            f("breakdown_recount_refs_s")
        ));
    }
    out.say(format!(
        "resident memory after open: +{:.0} MiB (peak during open +{:.0} MiB) = {:.0} MiB per 1M messages ({:.0} bytes per message)",
        rss_growth / MIB as f64,
        peak_growth / MIB as f64,
        rss_growth * per_1m / MIB as f64,
        rss_growth / total as f64
    ));
    let mut v = json!({
        "messages": total,
        "fill_seconds": round(fill.elapsed.as_secs_f64(), 2),
        "fill_appends_per_s": round(fill.rate(), 1),
        "close_s": round(close_s, 3),
        "log_bytes": log_bytes,
        "snapshot_bytes": snap_bytes,
        "open_warm_s": round(open_warm, 3),
        "open_cold_s": round(open_cold, 3),
        "open_warm_s_per_1m": round(open_warm * per_1m, 3),
        "open_cold_s_per_1m": round(open_cold * per_1m, 3),
        "rss_growth_bytes": rss_growth,
        "peak_growth_bytes": peak_growth,
        "rss_per_1m_messages_bytes": round(rss_growth * per_1m, 0),
        "rss_bytes_per_message": round(rss_growth / total as f64, 1),
        "probes": warm,
        "probe_cold": cold,
    });
    merge(&mut v, json!({"fill": d}));
    Ok(v)
}

fn run_probe(dir: &Path) -> Res<Value> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe).arg("--probe-open").arg(dir).output()?;
    if !output.status.success() {
        return Err(format!("probe failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(serde_json::from_str(text.trim())?)
}

#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it only returns free memory to the system.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// The child side of [`run_probe`]: open, measure, print, exit.
fn probe_open(dir: &Path) {
    let (rss0, _) = memory();
    let t0 = Instant::now();
    let store = match Store::open(dir, Options::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let open_s = t0.elapsed().as_secs_f64();
    // As `postlog serve` does after opening the store: hand the open's temporary memory back
    // to the system now rather than on mimalloc's later purges.
    release_free_memory();
    let (rss1, hwm1) = memory();
    let messages: u64 = store.accounts().iter().filter_map(|(a, _)| store.usage(*a)).map(|u| u.messages).sum();
    // Where the open's time goes, measured again piece by piece (warm page cache now).
    let t0 = Instant::now();
    let snap_bytes = std::fs::read(dir.join("index.snap")).map_or(0, |b| b.len());
    let read_s = t0.elapsed().as_secs_f64();
    let (mut load_s, mut recount_s) = (0.0, 0.0);
    if let Ok(backend) = postlog_engine::backend::FileBackend::open_read_only(dir) {
        let t0 = Instant::now();
        if let Ok(mut snap) = postlog_engine::recovery::load_snapshot(&backend) {
            load_s = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let _ = snap.state.recount_refs();
            recount_s = t0.elapsed().as_secs_f64();
            // Leak rather than drop: only the timings matter, and the process exits now.
            std::mem::forget(snap);
        }
    }
    println!(
        "{}",
        json!({
            "open_s": open_s,
            "rss_before_bytes": rss0,
            "rss_after_bytes": rss1,
            "rss_growth_bytes": rss1.saturating_sub(rss0),
            "peak_growth_bytes": hwm1.saturating_sub(rss0),
            "messages": messages,
            "snapshot_used": store.recovery_report().snapshot_used,
            "records_replayed": store.recovery_report().records_replayed,
            "snapshot_bytes": snap_bytes,
            "breakdown_read_snapshot_file_s": read_s,
            "breakdown_load_snapshot_s": load_s,
            "breakdown_recount_refs_s": recount_s,
        })
    );
    // Exit without tearing the state down: only the open was to be measured.
    std::process::exit(0);
}

/// Bytes on disk per message for the corpus, once and with every message twice (dedup).
fn space(root: &Path, corpus: &[Vec<u8>], out: &Out) -> Res<Value> {
    out.say("\n== bytes on disk for the corpus ==");
    let raw: u64 = corpus.iter().map(|m| m.len() as u64).sum();
    let distinct = corpus.iter().collect::<HashSet<_>>().len();
    let options = Options::default();
    // What the records carry: bodies compressed like the store does, and encoded metadata.
    let (mut bodies, mut metas, mut metas_zstd) = (0u64, 0u64, 0u64);
    for m in corpus.iter().collect::<HashSet<_>>() {
        let c = if m.len() >= options.compress_min_bytes {
            zstd::bulk::compress(m, options.zstd_level).ok().filter(|c| c.len() < m.len()).map_or(m.len(), |c| c.len())
        } else {
            m.len()
        };
        bodies += c as u64;
        let encoded = postlog_engine::meta::parse(m).encode();
        metas += encoded.len() as u64;
        metas_zstd += zstd::bulk::compress(&encoded, options.zstd_level).map_or(encoded.len(), |z| z.len()) as u64;
    }
    let mut rows = Vec::new();
    for copies in [1u64, 2] {
        let dir = root.join(format!("space-{copies}"));
        let store = Store::open(&dir, options.clone())?;
        let t = make_accounts(&store, "space", 1)?.remove(0);
        let n = corpus.len() as u64;
        let count = n * copies;
        run_writers(&store, 16, &|i| i >= count, &|_, i| (corpus[(i % n) as usize].clone(), t.clone()))?;
        store.close()?;
        drop(store);
        let (seg_len, seg_alloc) = file_bytes(&dir, "seg-")?;
        let (snap_len, _) = file_bytes(&dir, "index.snap")?;
        done_with(&dir)?;
        let raw_total = raw * copies;
        let ratio = seg_len as f64 / raw_total as f64;
        out.say(format!(
            "each message {}: raw {raw_total} bytes, segment files {seg_len} bytes = {ratio:.3} bytes on disk per raw byte, {:.0} bytes per stored message (raw mean {:.0}); allocated {} KiB (reserve-ahead included), snapshot {snap_len} bytes",
            if copies == 1 { "once " } else { "twice" },
            seg_len as f64 / count as f64,
            raw_total as f64 / count as f64,
            seg_alloc >> 10,
        ));
        rows.push(json!({
            "copies": copies,
            "messages": count,
            "raw_bytes": raw_total,
            "segment_bytes": seg_len,
            "segment_allocated_bytes": seg_alloc,
            "snapshot_bytes": snap_len,
            "bytes_per_raw_byte": round(ratio, 4),
            "bytes_per_message": round(seg_len as f64 / count as f64, 1),
        }));
    }
    out.say(format!(
        "of which: {distinct} distinct messages; zstd bodies {bodies} bytes ({:.3} of raw), encoded metadata {metas} bytes ({:.3} of raw, stored uncompressed; zstd would make it {metas_zstd}), the rest framing and index records",
        bodies as f64 / raw as f64,
        metas as f64 / raw as f64
    ));
    let dictionary = space_with_dictionary(root, corpus, out)?;
    Ok(json!({
        "distinct_messages": distinct,
        "compressed_body_bytes": bodies,
        "meta_bytes": metas,
        "meta_bytes_if_zstd": metas_zstd,
        "runs": rows,
        "dictionary": dictionary,
    }))
}

/// Bytes on disk per raw byte of the second half of the corpus in a store that trained its
/// dictionary (default thresholds) on variants of the first half (each with a unique
/// `Received:` line), against the same store without a dictionary.
fn space_with_dictionary(root: &Path, corpus: &[Vec<u8>], out: &Out) -> Res<Value> {
    use postlog_engine::dict::TrainingState;
    let (first, second) = corpus.split_at(corpus.len() / 2);
    let mut rows = Vec::new();
    for dictionary in [false, true] {
        let dir = root.join(format!("space-dictionary-{dictionary}"));
        let options = Options { dictionary, ..Options::default() };
        let store = Store::open(&dir, options.clone())?;
        let t = make_accounts(&store, "space", 1)?.remove(0);
        // Past the sampling threshold (messages and bytes), in whole rounds of the first half.
        let (n, mean) = (first.len() as u64, first.iter().map(Vec::len).sum::<usize>() / first.len().max(1));
        let need = (options.dictionary_min_samples as u64).max((options.dictionary_min_bytes / mean.max(1)) as u64);
        let count = need.div_ceil(n) * n + n;
        run_writers(&store, 16, &|i| i >= count, &|_, i| (unique_variant(&first[(i % n) as usize], i), t.clone()))?;
        let started = Instant::now();
        let state = loop {
            match store.dictionary_state() {
                TrainingState::Sampling { .. } | TrainingState::Training if dictionary => {
                    if started.elapsed() > Duration::from_secs(120) {
                        break store.dictionary_state();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                s => break s,
            }
        };
        let (before, _) = file_bytes(&dir, "seg-")?;
        let m = second.len() as u64;
        run_writers(&store, 16, &|i| i >= m, &|_, i| (unique_variant(&second[i as usize], count + i), t.clone()))?;
        store.close()?;
        drop(store);
        let (after, _) = file_bytes(&dir, "seg-")?;
        done_with(&dir)?;
        // The unique line is part of what is stored: count it in the raw bytes.
        let raw_stored: u64 = (0..m).map(|i| unique_variant(&second[i as usize], count + i).len() as u64).sum();
        let ratio = (after - before) as f64 / raw_stored as f64;
        let state = match state {
            TrainingState::Ready(id) => format!("dictionary {id:#x}"),
            other => format!("{other:?}"),
        };
        out.say(format!(
            "second half of the corpus ({m} messages, {raw_stored} bytes with their Received: lines) after {count} appends of the first half, {}: {ratio:.3} bytes on disk per raw byte ({state})",
            if dictionary { "with the dictionary the store trained" } else { "without a dictionary" },
        ));
        rows.push(json!({
            "dictionary": dictionary,
            "state": state,
            "training_appends": count,
            "messages": m,
            "raw_bytes": raw_stored,
            "segment_bytes": after - before,
            "bytes_per_raw_byte": round(ratio, 4),
        }));
    }
    Ok(Value::Array(rows))
}

// ---------------------------------------------------------------------------------------
// Targets.

fn judge(r: &serde_json::Map<String, Value>, quick: bool) -> Value {
    let mut t = Vec::new();
    let mut add = |what: &str, observed: String, target: Option<&str>, met: Option<bool>| {
        t.push(json!({"what": what, "observed": observed, "target": target, "met": met}));
    };
    if let Some(rows) = r.get("append_corpus").and_then(Value::as_array)
        && let Some(row) = rows.iter().find(|x| x["writers"] == 16)
    {
        let rate = row["appends_per_s"].as_f64().unwrap_or(0.0);
        add("corpus appends/s, 16 writers", format!("{rate:.0}/s"), Some(">= 20,000/s"), Some(rate >= 20_000.0));
        if let Some(x) = row["ratio_to_fdatasync"].as_f64() {
            add("  same, x fdatasync'd 4 KiB appends/s", format!("{x:.1}x"), Some(">= ~50x"), Some(x >= 50.0));
        }
    }
    if let Some(rows) = r.get("append_1mib").and_then(|b| b["runs"].as_array()) {
        for row in rows {
            if let Some(x) = row["ratio_to_seq_write"].as_f64() {
                let what = format!(
                    "1 MiB appends, {}, {} writer{}",
                    row["variant"].as_str().unwrap_or(""),
                    row["writers"],
                    if row["writers"] == 1 { "" } else { "s" }
                );
                add(&what, format!("{x:.2}x seq bw"), Some(">= 0.5x seq bw"), Some(x >= 0.5));
            }
        }
    }
    if let Some(m) = r.get("metas") {
        let ms = m["median_ms"].as_f64().unwrap_or(f64::MAX);
        add("metas() of a 100k-message mailbox (warm)", format!("{ms:.1} ms"), Some("< 100 ms"), Some(ms < 100.0));
        let raw = m["raw_median_ms"].as_f64().unwrap_or(f64::MAX);
        add(
            "  same read in place, not decoded (for_each_meta)",
            format!("{raw:.1} ms"),
            Some("< 100 ms"),
            Some(raw < 100.0),
        );
    }
    if let Some(m) = r.get("read_message") {
        let p99 = m["p99_us"].as_f64().unwrap_or(f64::MAX);
        add(
            "read_message() by UID, mean / p99",
            format!("{:.0} / {p99:.0} µs", m["mean_us"].as_f64().unwrap_or(0.0)),
            Some("microseconds (< 1 ms)"),
            Some(p99 < 1000.0),
        );
    }
    if let Some(m) = r.get("recovery") {
        add(
            "recovery after a crash, cold / warm cache",
            format!(
                "{:.2} / {:.2} s/GiB",
                m["s_per_gib_cold"].as_f64().unwrap_or(0.0),
                m["s_per_gib_warm"].as_f64().unwrap_or(0.0)
            ),
            None,
            None,
        );
    }
    if let Some(m) = r.get("startup") {
        let s = m["open_warm_s_per_1m"].as_f64().unwrap_or(f64::MAX);
        let what =
            if quick { "startup, clean store (scaled to 1M messages)" } else { "startup, clean store of 1M messages" };
        add(what, format!("{s:.2} s"), Some("< 2 s"), Some(s < 2.0));
        let c = m["open_cold_s_per_1m"].as_f64().unwrap_or(f64::MAX);
        add("  same with a cold page cache", format!("{c:.2} s"), Some("< 2 s"), Some(c < 2.0));
        let rss = m["rss_per_1m_messages_bytes"].as_f64().unwrap_or(0.0);
        add("resident memory per 1M messages", format!("{:.0} MiB", rss / MIB as f64), None, None);
    }
    if let Some(rows) = r.get("space").and_then(|s| s["runs"].as_array()) {
        for row in rows {
            let what = if row["copies"] == 1 {
                "bytes on disk per raw byte, corpus once"
            } else {
                "bytes on disk per raw byte, corpus twice"
            };
            add(what, format!("{:.3}", row["bytes_per_raw_byte"].as_f64().unwrap_or(0.0)), None, None);
        }
    }
    Value::Array(t)
}
