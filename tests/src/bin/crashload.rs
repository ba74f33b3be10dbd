//! `postlog-crashload DIR [--threads N] [--seed S] [--run R] [--max-seconds S] [--compact-ms MS]
//! [--early-ack-ms MS]`: writes into the store in DIR until killed, printing what the store
//! acknowledged (see `postlog_tests::crashload` for the lines). Used by `tests/kill9.rs`.
//!
//! Each writer thread appends messages (some into two mailboxes at once), changes the flags
//! of messages it appended and expunges some of them. A compaction thread runs now and then.
//! `--early-ack-ms` is a deliberate fault for the test's self-check: flag changes and
//! expunges are acknowledged first and carried out that many milliseconds later.

use std::io::Write;
use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;

use postlog_engine::{AccountId, AppendTarget, FlagOp, MailboxId, Options, Store, flag};
use postlog_tests::crashload::{ACCOUNT, BodyId, KEYWORDS, Line, MAILBOXES, Op, XorShift, message};

struct Config {
    dir: PathBuf,
    threads: u32,
    seed: u64,
    run: u32,
    max_seconds: u64,
    compact_ms: u64,
    early_ack_ms: u64,
}

fn usage(msg: &str) -> ! {
    eprintln!("postlog-crashload: {msg}");
    eprintln!(
        "usage: postlog-crashload DIR [--threads N] [--seed S] [--run R] [--max-seconds S] [--compact-ms MS] \
         [--early-ack-ms MS]"
    );
    exit(64);
}

fn parse_args() -> Config {
    let mut args = std::env::args().skip(1);
    let mut cfg =
        Config { dir: PathBuf::new(), threads: 4, seed: 1, run: 0, max_seconds: 60, compact_ms: 150, early_ack_ms: 0 };
    let mut dir = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            let v = args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
            v.parse().unwrap_or_else(|_| usage(&format!("{name}: not a number: {v}")))
        };
        match a.as_str() {
            "--threads" => cfg.threads = num("--threads") as u32,
            "--seed" => cfg.seed = num("--seed"),
            "--run" => cfg.run = num("--run") as u32,
            "--max-seconds" => cfg.max_seconds = num("--max-seconds"),
            "--compact-ms" => cfg.compact_ms = num("--compact-ms"),
            "--early-ack-ms" => cfg.early_ack_ms = num("--early-ack-ms"),
            s if s.starts_with('-') => usage(&format!("unknown option {s}")),
            s => dir = Some(PathBuf::from(s)),
        }
    }
    cfg.dir = dir.unwrap_or_else(|| usage("no data directory given"));
    cfg
}

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("postlog-crashload: {what}");
    exit(2);
}

/// Prints one whole line and flushes it, so a kill never loses a line that was printed.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
        // The test went away.
        exit(3);
    }
}

/// Options that make segments roll and snapshots get written during a short run.
fn options() -> Options {
    Options { max_segment_bytes: 2 << 20, snapshot_every_bytes: 1 << 20, ..Options::default() }
}

fn main() {
    let cfg = parse_args();
    let store = Store::open(&cfg.dir, options()).unwrap_or_else(|e| fail(format!("open: {e}")));
    let account = match store.account_id(ACCOUNT) {
        Some(a) => a,
        None => store.create_account(ACCOUNT, &[("A", 0), ("B", 0)]).unwrap_or_else(|e| fail(e)),
    };
    let mut ids = [0 as MailboxId; 3];
    for (i, name) in MAILBOXES.iter().enumerate() {
        ids[i] = match store.mailbox_by_name(account, name) {
            Ok(info) => info.id,
            Err(_) => store.create_mailbox(account, name, 0).unwrap_or_else(|e| fail(e)),
        };
    }
    say("READY");
    let cfg = std::sync::Arc::new(cfg);
    for thread in 0..cfg.threads {
        let (store, cfg) = (store.clone(), cfg.clone());
        std::thread::spawn(move || writer(&store, account, ids, &cfg, thread));
    }
    if cfg.compact_ms > 0 {
        let (store, cfg) = (store.clone(), cfg.clone());
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(cfg.compact_ms));
                match store.compact(0.3) {
                    Ok(r) if !r.segments_dropped.is_empty() => {
                        say(&format!("NOTE compacted segments {:?}, {} bytes freed", r.segments_dropped, r.bytes_freed))
                    }
                    Ok(_) => {}
                    Err(e) => fail(format!("compaction: {e}")),
                }
            }
        });
    }
    // A safety net: the test kills us long before this.
    std::thread::sleep(Duration::from_secs(cfg.max_seconds));
    say("NOTE max time reached");
    exit(0);
}

/// A message copy this thread appended and still has.
struct Owned {
    mailbox: usize,
    uid: u32,
    flags: u8,
    keywords: Vec<String>,
}

fn random_keywords(rng: &mut XorShift) -> Vec<String> {
    KEYWORDS.iter().filter(|_| rng.below(4) == 0).map(|k| k.to_string()).collect()
}

fn random_flags(rng: &mut XorShift) -> u8 {
    if rng.below(2) == 0 { 0 } else { rng.below(u64::from(flag::ALL) + 1) as u8 }
}

/// Keywords in `KEYWORDS` order.
fn sorted(mut k: Vec<String>) -> Vec<String> {
    k.sort_by_key(|x| KEYWORDS.iter().position(|y| y == x));
    k.dedup();
    k
}

fn writer(store: &Store, account: AccountId, ids: [MailboxId; 3], cfg: &Config, thread: u32) {
    let mut rng = XorShift::new(cfg.seed ^ (u64::from(thread) + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut own: Vec<Owned> = Vec::new();
    for n in 1u64.. {
        let r = rng.below(100);
        if r < 62 || own.is_empty() {
            // Append, into one mailbox or (one in five) into A and B at once.
            let len = match rng.below(100) {
                0..70 => rng.range(0, 4_000),
                70..96 => rng.range(4_000, 64_000),
                _ => rng.range(64_000, 400_000),
            } as u32;
            let id = BodyId { run: cfg.run, thread, seq: n, len };
            let boxes: Vec<usize> = if rng.below(5) == 0 { vec![1, 2] } else { vec![rng.below(3) as usize] };
            let flags = random_flags(&mut rng);
            let keywords = sorted(random_keywords(&mut rng));
            let targets: Vec<AppendTarget> = boxes
                .iter()
                .map(|&b| AppendTarget {
                    account,
                    mailbox: ids[b],
                    flags,
                    keywords: keywords.clone(),
                    internal_date: 1_700_000_000 + n as i64,
                })
                .collect();
            let names = |uids: Option<&[u32]>| -> Vec<(String, Option<u32>)> {
                boxes.iter().enumerate().map(|(i, &b)| (MAILBOXES[b].to_string(), uids.map(|u| u[i]))).collect()
            };
            let op = Op::Append { id, flags, keywords: keywords.clone(), targets: names(None) };
            say(&Line { ack: false, thread, n, op }.to_string());
            let raw = message(&id);
            let appended = store.append(&raw, &targets).unwrap_or_else(|e| fail(format!("append {id}: {e}")));
            let uids: Vec<u32> = appended.iter().map(|a| a.uid).collect();
            if uids.len() != boxes.len() {
                fail(format!("append {id} gave {} copies for {} targets", uids.len(), boxes.len()));
            }
            let op = Op::Append { id, flags, keywords: keywords.clone(), targets: names(Some(&uids)) };
            say(&Line { ack: true, thread, n, op }.to_string());
            for (&b, &uid) in boxes.iter().zip(&uids) {
                own.push(Owned { mailbox: b, uid, flags, keywords: keywords.clone() });
            }
        } else if r < 88 && own.len() < 300 {
            // Change the flags of one of our messages.
            let i = rng.below(own.len() as u64) as usize;
            let (op, f, k) = (rng.below(3), random_flags(&mut rng), random_keywords(&mut rng));
            let m = &own[i];
            let (op, new_flags, new_kw) = match op {
                0 => {
                    let kw = m.keywords.iter().chain(&k).cloned().collect();
                    (FlagOp::Add, m.flags | f, sorted(kw))
                }
                1 => {
                    let kw = m.keywords.iter().filter(|x| !k.contains(x)).cloned().collect();
                    (FlagOp::Remove, m.flags & !f, sorted(kw))
                }
                _ => (FlagOp::Replace, f, sorted(k.clone())),
            };
            let mailbox = MAILBOXES[m.mailbox].to_string();
            let line = |ack| Line {
                ack,
                thread,
                n,
                op: Op::Flags { mailbox: mailbox.clone(), uid: m.uid, flags: new_flags, keywords: new_kw.clone() },
            };
            say(&line(false).to_string());
            if cfg.early_ack_ms > 0 {
                say(&line(true).to_string());
                std::thread::sleep(Duration::from_millis(cfg.early_ack_ms));
            }
            let out = store
                .store_flags(account, ids[m.mailbox], &[m.uid], op, f, &k, None)
                .unwrap_or_else(|e| fail(format!("flags {mailbox} {}: {e}", m.uid)));
            let changes = new_flags != m.flags || new_kw != m.keywords;
            if out.changed.is_empty() == changes || !out.failed.is_empty() {
                fail(format!(
                    "flags {mailbox} {}: {op:?} {f} {k:?} on {} {:?} gave {out:?}",
                    m.uid, m.flags, m.keywords
                ));
            }
            if cfg.early_ack_ms == 0 {
                say(&line(true).to_string());
            }
            let m = &mut own[i];
            m.flags = new_flags;
            m.keywords = new_kw;
        } else {
            // Expunge one of our messages.
            let m = own.swap_remove(rng.below(own.len() as u64) as usize);
            let mailbox = MAILBOXES[m.mailbox].to_string();
            let line = |ack| Line { ack, thread, n, op: Op::Expunge { mailbox: mailbox.clone(), uid: m.uid } };
            say(&line(false).to_string());
            if cfg.early_ack_ms > 0 {
                say(&line(true).to_string());
                std::thread::sleep(Duration::from_millis(cfg.early_ack_ms));
            }
            let (gone, _) = store
                .expunge(account, ids[m.mailbox], Some(&[m.uid]))
                .unwrap_or_else(|e| fail(format!("expunge {mailbox} {}: {e}", m.uid)));
            if gone != [m.uid] {
                fail(format!("expunge {mailbox} {} expunged {gone:?}", m.uid));
            }
            if cfg.early_ack_ms == 0 {
                say(&line(true).to_string());
            }
        }
    }
}
