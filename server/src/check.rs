//! `postlog check`: verifies a store without changing it (works while a server runs).
//!
//! 1. every record's header and payload checksums, in every segment;
//! 2. that the log replays (what recovery would do, read-only);
//! 3. that the snapshot, if present, is readable and agrees with a replay of the whole log;
//! 4. that each blob's reference count equals the references counted from messages, and
//!    that each account's thread table agrees with its messages (every message's thread id
//!    given, live counts as counted, links to given ids);
//! 5. that every dictionary file is intact (checksums, a zstd dictionary), and that every
//!    referenced blob reads back, decompresses (with the dictionary its frame names, if any)
//!    and hashes to its recorded SHA-256, and that its metadata decodes.

use std::collections::{BTreeSet, HashMap};

use sha2::Digest;

use postlog_engine::OpenError;
use postlog_engine::backend::FileBackend;
use postlog_engine::record::kind;
use postlog_engine::recovery::{load_snapshot, recover, recover_ignoring_snapshot};
use postlog_engine::snapshot::SNAPSHOT_FILE;
use postlog_engine::state::{BlobEntry, State};

use crate::config::Config;
use crate::inspect::snapshot_present;
use crate::logscan::{scan_segment, segment_ids, tmp_files};
use crate::reader::{read_body, read_meta};
use crate::util::{CmdError, exit, hex};

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub segment: Option<u64>,
    pub offset: Option<u64>,
    pub what: String,
}

impl Finding {
    fn at(segment: u64, offset: u64, what: impl Into<String>) -> Finding {
        Finding { segment: Some(segment), offset: Some(offset), what: what.into() }
    }
    fn general(what: impl Into<String>) -> Finding {
        Finding { segment: None, offset: None, what: what.into() }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.segment, self.offset) {
            (Some(s), Some(o)) => write!(f, "segment {s} offset {o}: {}", self.what),
            (Some(s), None) => write!(f, "segment {s}: {}", self.what),
            _ => f.write_str(&self.what),
        }
    }
}

/// What was looked at.
#[derive(Debug, Default, Clone)]
pub struct Checked {
    pub segments: u64,
    pub records: u64,
    pub blobs: u64,
    pub accounts: u64,
    pub messages: u64,
}

/// Runs every check. Errors only when the store cannot be read at all.
pub fn check(backend: &FileBackend) -> Result<(Vec<Finding>, Checked), CmdError> {
    let io = |e: std::io::Error| CmdError::new(format!("cannot read the data directory: {e}"));
    let mut findings = Vec::new();
    let mut checked = Checked::default();

    for f in tmp_files(backend).map_err(io)? {
        findings.push(Finding::general(format!("leftover temporary file {f} (recovery and repair remove it)")));
    }

    let recovered = match recover(backend, true) {
        Ok(r) => Ok(r),
        Err(OpenError::Corrupt { segment, offset, reason }) => Err((segment, offset, reason)),
        Err(e) => return Err(CmdError::new(e.to_string())),
    };
    let torn = recovered.as_ref().ok().and_then(|r| r.report.torn_cut);

    // 1. Checksums, frame by frame.
    for id in segment_ids(backend).map_err(io)? {
        checked.segments += 1;
        let scan = scan_segment(backend, id).map_err(io)?;
        if let Err(e) = &scan.header {
            findings.push(Finding::at(id, 0, e.clone()));
        }
        let in_torn_tail = |off: u64| torn.is_some_and(|(s, o, _)| s == id && off >= o);
        for r in &scan.records {
            checked.records += 1;
            if in_torn_tail(r.offset) {
                continue;
            }
            let account = if r.frame.account == 0 { String::new() } else { format!(", account {}", r.frame.account) };
            let what = format!("{} record (LSN {}{account})", kind::name(r.frame.kind), r.frame.lsn);
            if !r.crc_ok {
                findings.push(Finding::at(id, r.offset, format!("payload checksum mismatch in {what}")));
            } else if let Err(e) = &r.decoded {
                findings.push(Finding::at(id, r.offset, format!("{what} does not decode: {e}")));
            }
        }
        for d in &scan.damage {
            if !in_torn_tail(d.offset) {
                findings.push(Finding::at(id, d.offset, format!("{} unreadable bytes: {}", d.len, d.reason)));
            }
        }
    }

    // 2. Replay.
    let (state, segments) = match recovered {
        Ok(rec) => {
            if let Some((s, o, n)) = rec.report.torn_cut {
                findings.push(Finding::at(
                    s,
                    o,
                    format!(
                        "torn final batch: {n} bytes would be cut (the next start or `postlog repair --apply` does it)"
                    ),
                ));
            }
            // 3. Snapshot.
            check_snapshot(backend, &rec, &mut findings);
            (rec.state, rec.segments)
        }
        Err((segment, offset, reason)) => {
            findings.push(Finding::at(segment, offset, format!("the log does not replay: {reason}")));
            let s = postlog_engine::salvage::salvage(backend);
            if snapshot_present(backend)
                && let Err(e) = load_snapshot(backend)
            {
                findings.push(Finding::general(format!("snapshot {SNAPSHOT_FILE} is unusable: {e}")));
            }
            (s.state, s.segments)
        }
    };

    // Dictionary files: one that is damaged makes every blob compressed with it unreadable
    // (those blobs are reported one by one below).
    for f in segments.dictionaries().files() {
        if let Some(p) = &f.problem {
            findings.push(Finding::general(format!("dictionary {:#x} ({}) is unusable: {p}", f.id, f.name)));
        }
    }

    // 4. Reference counts and threads.
    check_refs(&state, "", &mut findings);
    check_threads(&state, "", &mut findings);

    // 5. Every referenced blob.
    let mut users: HashMap<u64, (String, usize)> = HashMap::new();
    for acc in state.accounts.values() {
        checked.accounts += 1;
        for mb in acc.mailboxes.values() {
            for m in &mb.messages {
                checked.messages += 1;
                let e = users
                    .entry(m.blob)
                    .or_insert_with(|| (format!("account {} mailbox {:?} UID {}", acc.name, mb.name, m.uid), 0));
                e.1 += 1;
                if let Some(b) = state.blobs.get(&m.blob)
                    && b.raw_len != m.size
                {
                    findings.push(Finding::general(format!(
                        "account {} mailbox {:?} UID {}: size {} differs from its blob's {}",
                        acc.name, mb.name, m.uid, m.size, b.raw_len
                    )));
                }
            }
        }
    }
    let mut referenced: Vec<(u64, &BlobEntry)> =
        state.blobs.iter().filter(|(id, _)| users.contains_key(id)).map(|(id, b)| (*id, b)).collect();
    referenced.sort_unstable_by_key(|(id, _)| *id);
    checked.blobs = referenced.len() as u64;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let chunk = referenced.len().div_ceil(threads).max(1);
    let blob_findings: Vec<Finding> = std::thread::scope(|s| {
        let handles: Vec<_> = referenced
            .chunks(chunk)
            .map(|part| {
                let segments = &segments;
                let users = &users;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (id, b) in part {
                        let who = users.get(id).map(|(first, n)| {
                            if *n > 1 { format!("{first} and {} more", n - 1) } else { first.clone() }
                        });
                        let who = who.unwrap_or_default();
                        for problem in verify_blob(segments, b) {
                            out.push(Finding::at(
                                b.data.segment,
                                b.data.offset,
                                format!("blob {id} ({who}): {problem}"),
                            ));
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    findings.extend(blob_findings);
    Ok((findings, checked))
}

/// Problems of one blob: data checksum, decompression, length, hash, metadata.
pub fn verify_blob(segments: &postlog_engine::log::Segments, b: &BlobEntry) -> Vec<String> {
    let mut out = Vec::new();
    match read_body(segments, b) {
        Ok(body) => {
            if body.len() as u64 != b.raw_len {
                out.push(format!("body is {} bytes, {} recorded", body.len(), b.raw_len));
            }
            let hash: [u8; 32] = sha2::Sha256::digest(&body).into();
            if hash != b.hash {
                out.push(format!("body hashes to {}, {} recorded", hex(&hash), hex(&b.hash)));
            }
        }
        Err(e) => out.push(format!("body unreadable: {e}")),
    }
    if let Err(e) = read_meta(segments, b) {
        out.push(format!("metadata unreadable: {e}"));
    }
    out
}

/// Each blob's stored reference count against the references counted from messages.
fn check_refs(state: &State, prefix: &str, findings: &mut Vec<Finding>) {
    let counted = state.counted_refs();
    let mut ids: Vec<&u64> = state.blobs.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let stored = state.blobs[id].refs;
        let n = counted.get(id).copied().unwrap_or(0);
        if stored != n {
            findings.push(Finding::general(format!(
                "{prefix}blob {id} has reference count {stored} but {n} messages refer to it"
            )));
        }
    }
    let mut missing: Vec<&u64> = counted.keys().filter(|id| !state.blobs.contains_key(id)).collect();
    missing.sort_unstable();
    for id in missing {
        findings.push(Finding::general(format!("{prefix}messages refer to blob {id}, which is not in the blob table")));
    }
}

/// Each account's thread table against its messages: thread ids given (1 ..= the last), the
/// live count of each thread as counted from the messages, links only to given ids.
fn check_threads(state: &State, prefix: &str, findings: &mut Vec<Finding>) {
    for acc in state.accounts.values() {
        let t = &acc.threads;
        let mut counted: HashMap<u32, u32> = HashMap::new();
        for mb in acc.mailboxes.values() {
            for m in &mb.messages {
                *counted.entry(m.thread).or_insert(0) += 1;
                if m.thread == 0 || m.thread > t.last {
                    findings.push(Finding::general(format!(
                        "{prefix}account {} mailbox {:?} UID {}: thread id {} was never given (last is {})",
                        acc.name, mb.name, m.uid, m.thread, t.last
                    )));
                }
            }
        }
        if counted != t.live {
            let mut differing: Vec<u32> = counted
                .keys()
                .chain(t.live.keys())
                .filter(|id| counted.get(id) != t.live.get(id))
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            differing.truncate(20);
            findings.push(Finding::general(format!(
                "{prefix}account {}: live message counts of threads {differing:?} differ from the messages",
                acc.name
            )));
        }
        let bad_links = t.links.values().filter(|&&id| id == 0 || id > t.last).count();
        if bad_links > 0 {
            findings.push(Finding::general(format!(
                "{prefix}account {}: {bad_links} thread links name thread ids never given (last is {})",
                acc.name, t.last
            )));
        }
    }
}

fn check_snapshot(backend: &FileBackend, rec: &postlog_engine::recovery::Recovered, findings: &mut Vec<Finding>) {
    if !snapshot_present(backend) {
        return;
    }
    match load_snapshot(backend) {
        Err(e) => findings.push(Finding::general(format!(
            "snapshot {SNAPSHOT_FILE} is unusable: {e} (recovery ignores it; `postlog repair --apply` removes it)"
        ))),
        Ok(snap) => {
            check_refs(&snap.state, "snapshot: ", findings);
            check_threads(&snap.state, "snapshot: ", findings);
            if !rec.report.snapshot_used {
                findings.push(Finding::general(format!(
                    "snapshot {SNAPSHOT_FILE} is stale: {} (`postlog repair --apply` removes it)",
                    rec.report.snapshot_problem.as_deref().unwrap_or("not used by recovery")
                )));
                return;
            }
            match recover_ignoring_snapshot(backend, true) {
                Ok(full) => {
                    for d in state_differences(&rec.state, &full.state) {
                        findings
                            .push(Finding::general(format!("snapshot disagrees with a replay of the whole log: {d}")));
                    }
                }
                Err(e) => findings.push(Finding::general(format!(
                    "the log does not replay without the snapshot (the snapshot hides it): {e}"
                ))),
            }
        }
    }
}

/// Describes how two states differ (empty when equal). At most a few dozen lines.
pub fn state_differences(a: &State, b: &State) -> Vec<String> {
    let mut out = Vec::new();
    if a == b {
        return out;
    }
    let acc_ids: BTreeSet<u32> = a.accounts.keys().chain(b.accounts.keys()).copied().collect();
    for id in acc_ids {
        match (a.accounts.get(&id), b.accounts.get(&id)) {
            (Some(x), None) => out.push(format!("account {id} ({}) only in the snapshot", x.name)),
            (None, Some(y)) => out.push(format!("account {id} ({}) only in the log", y.name)),
            (Some(x), Some(y)) if x != y => {
                if x.name != y.name || x.modseq != y.modseq || x.messages != y.messages || x.bytes != y.bytes {
                    out.push(format!(
                        "account {id}: snapshot has {:?} modseq {} {} messages {} bytes, the log {:?} modseq {} {} messages {} bytes",
                        x.name, x.modseq, x.messages, x.bytes, y.name, y.modseq, y.messages, y.bytes
                    ));
                }
                let mb_ids: BTreeSet<u32> = x.mailboxes.keys().chain(y.mailboxes.keys()).copied().collect();
                for m in mb_ids {
                    match (x.mailboxes.get(&m), y.mailboxes.get(&m)) {
                        (Some(p), Some(q)) if p != q => {
                            let uids = |mb: &postlog_engine::state::Mailbox| {
                                mb.messages.iter().map(|e| (e.uid, *e)).collect::<HashMap<_, _>>()
                            };
                            let (pu, qu) = (uids(p), uids(q));
                            let mut differing: Vec<u32> = pu
                                .keys()
                                .chain(qu.keys())
                                .filter(|u| pu.get(u) != qu.get(u))
                                .copied()
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect();
                            differing.truncate(20);
                            out.push(format!(
                                "account {id} mailbox {m} ({:?}): snapshot UIDNEXT {} HIGHESTMODSEQ {} {} messages, the log {:?} UIDNEXT {} HIGHESTMODSEQ {} {} messages; UIDs differing: {differing:?}",
                                p.name, p.uidnext, p.highest_modseq, p.messages.len(), q.name, q.uidnext, q.highest_modseq, q.messages.len()
                            ));
                        }
                        (Some(p), None) => {
                            out.push(format!("account {id} mailbox {m} ({:?}) only in the snapshot", p.name))
                        }
                        (None, Some(q)) => out.push(format!("account {id} mailbox {m} ({:?}) only in the log", q.name)),
                        _ => {}
                    }
                }
                if x.subscriptions != y.subscriptions || x.by_name != y.by_name || x.next_mailbox != y.next_mailbox {
                    out.push(format!("account {id}: subscriptions or mailbox names differ"));
                }
                let (p, q) = (&x.threads, &y.threads);
                if p != q {
                    out.push(format!(
                        "account {id}: thread tables differ: snapshot last id {} {} links {} live threads, the log last id {} {} links {} live threads",
                        p.last,
                        p.links.len(),
                        p.live.len(),
                        q.last,
                        q.links.len(),
                        q.live.len()
                    ));
                }
            }
            _ => {}
        }
    }
    let blob_ids: BTreeSet<u64> = a.blobs.keys().chain(b.blobs.keys()).copied().collect();
    let mut blob_diffs = 0;
    for id in blob_ids {
        let (x, y) = (a.blobs.get(&id), b.blobs.get(&id));
        if x != y {
            blob_diffs += 1;
            if blob_diffs <= 10 {
                out.push(match (x, y) {
                    (Some(_), None) => format!("blob {id} only in the snapshot"),
                    (None, Some(_)) => format!("blob {id} only in the log"),
                    (Some(x), Some(y)) => format!(
                        "blob {id}: snapshot has segment {} offset {} refs {}, the log segment {} offset {} refs {}",
                        x.data.segment, x.data.offset, x.refs, y.data.segment, y.data.offset, y.refs
                    ),
                    (None, None) => unreachable!(),
                });
            }
        }
    }
    if blob_diffs > 10 {
        out.push(format!("{} more blobs differ", blob_diffs - 10));
    }
    let scalars = [
        ("next account id", u64::from(a.next_account), u64::from(b.next_account)),
        ("next blob id", a.next_blob, b.next_blob),
        ("last UIDVALIDITY", u64::from(a.last_uidvalidity), u64::from(b.last_uidvalidity)),
        ("checkpoint segment", a.checkpoint_segment, b.checkpoint_segment),
    ];
    for (what, x, y) in scalars {
        if x != y {
            out.push(format!("{what}: snapshot {x}, the log {y}"));
        }
    }
    if a.dropped_segments != b.dropped_segments {
        out.push(format!("dropped segments: snapshot {:?}, the log {:?}", a.dropped_segments, b.dropped_segments));
    }
    if a.kv != b.kv {
        let keys: BTreeSet<&String> = a.kv.keys().chain(b.kv.keys()).filter(|k| a.kv.get(*k) != b.kv.get(*k)).collect();
        out.push(format!("key-value directory entries differ: {keys:?}"));
    }
    if out.is_empty() {
        out.push("the states differ (name or hash indexes)".into());
    }
    out
}

pub fn run(config: &Config) -> Result<i32, CmdError> {
    let backend = crate::reader::open_read_only(&config.data_dir)?;
    let (findings, c) = check(&backend)?;
    for f in &findings {
        println!("{f}");
    }
    let summary = format!(
        "{} segments, {} records, {} accounts, {} messages, {} blobs verified",
        c.segments, c.records, c.accounts, c.messages, c.blobs
    );
    if findings.is_empty() {
        println!("check: clean: {summary}");
        Ok(exit::OK)
    } else {
        println!("check: {} findings ({summary})", findings.len());
        Ok(exit::FINDINGS)
    }
}
