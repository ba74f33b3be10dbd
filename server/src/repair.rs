//! `postlog repair [--apply]`: fixes what `postlog check` finds.
//!
//! - leftover `*.tmp` files: removed;
//! - a snapshot that is corrupt, stale (points at a log position that does not exist) or
//!   disagrees with a replay of the whole log: removed (a new one is written from the log);
//! - a torn final batch: cut, as recovery does;
//! - damage in the middle of the log: the engine's salvage reads everything still readable
//!   and writes it as a new log; the damaged files are kept in `damaged-<unix time>/` in
//!   the data directory.
//!
//! Without `--apply` nothing changes (and no lock is taken): it says what it would do.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use postlog_engine::backend::{Backend, FileBackend};
use postlog_engine::log::{parse_segment_file_name, segment_file_name};
use postlog_engine::record::{Record, kind};
use postlog_engine::recovery::{load_snapshot, recover, recover_ignoring_snapshot};
use postlog_engine::snapshot::SNAPSHOT_FILE;
use postlog_engine::state::State;
use postlog_engine::{OpenError, Options, Store};

use crate::check::state_differences;
use crate::config::Config;
use crate::inspect::snapshot_present;
use crate::logscan::{ScannedRecord, scan_segment, segment_ids, tmp_files};
use crate::util::{CmdError, exit};

/// One repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    RemoveTmp(String),
    RemoveSnapshot { why: String },
    CutTornTail { segment: u64, offset: u64, bytes: u64, later_segments: Vec<u64> },
    Salvage(SalvagePlan),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvagePlan {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
    /// What the log tells about the damaged transactions.
    pub damage: Vec<String>,
    pub problems: Vec<String>,
    pub lost_messages: Vec<String>,
    pub accounts: usize,
    pub messages: u64,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RemoveTmp(n) => write!(f, "remove the leftover temporary file {n}"),
            Action::RemoveSnapshot { why } => {
                write!(f, "remove the snapshot {SNAPSHOT_FILE} ({why}); a new one is written from the log")
            }
            Action::CutTornTail { segment, offset, bytes, later_segments } => {
                write!(f, "cut the torn final batch: {bytes} bytes of segment {segment} from offset {offset}")?;
                if !later_segments.is_empty() {
                    write!(f, ", and remove the later segments {later_segments:?}")?;
                }
                Ok(())
            }
            Action::Salvage(p) => {
                writeln!(f, "the log is corrupt in segment {} at offset {}: {}", p.segment, p.offset, p.reason)?;
                for d in &p.damage {
                    writeln!(f, "    damaged: {d}")?;
                }
                for d in &p.problems {
                    writeln!(f, "    salvage: {d}")?;
                }
                for d in &p.lost_messages {
                    writeln!(f, "    lost: {d}")?;
                }
                write!(
                    f,
                    "  salvage: rewrite the log from what still reads ({} accounts, {} messages kept, {} messages lost); \
                     the damaged files are kept in damaged-<time>/",
                    p.accounts,
                    p.messages,
                    p.lost_messages.len()
                )
            }
        }
    }
}

fn mailbox_name(state: &State, account: u32, mailbox: u32) -> String {
    state.mailbox(account, mailbox).map(|m| format!("{:?}", m.name)).unwrap_or_else(|| format!("{mailbox}"))
}

fn account_name(state: &State, account: u32) -> String {
    state.account(account).map(|a| a.name.clone()).unwrap_or_else(|| format!("#{account}"))
}

/// What a record touches, in words.
fn touches(state: &State, r: &ScannedRecord) -> String {
    let uids = |v: &[(u32, u32)]| {
        v.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") }).collect::<Vec<_>>().join(",")
    };
    let trust = if r.crc_ok { "" } else { " (read from damaged bytes)" };
    let acc = |a: u32| format!("account {}", account_name(state, a));
    let s = match &r.decoded {
        Err(_) => format!(
            "an unreadable {} record (LSN {}) of {}",
            kind::name(r.frame.kind),
            r.frame.lsn,
            if r.frame.account == 0 { "no account".to_string() } else { acc(r.frame.account) }
        ),
        Ok(rec) => match rec {
            Record::MessageAppend { account, mailbox, uid, blob, .. } => {
                format!(
                    "{} mailbox {}: UID {uid} appended (blob {blob})",
                    acc(*account),
                    mailbox_name(state, *account, *mailbox)
                )
            }
            Record::Flags { account, mailbox, uids: u, .. } => {
                format!(
                    "{} mailbox {}: flags of UIDs {}",
                    acc(*account),
                    mailbox_name(state, *account, *mailbox),
                    uids(u)
                )
            }
            Record::Expunge { account, mailbox, uids: u, .. } => {
                format!(
                    "{} mailbox {}: expunge of UIDs {}",
                    acc(*account),
                    mailbox_name(state, *account, *mailbox),
                    uids(u)
                )
            }
            Record::Copy { account, from, to, first_uid, uids: u, .. } => format!(
                "{} mailbox {}: UIDs {} copied to mailbox {} as UIDs from {first_uid}",
                acc(*account),
                mailbox_name(state, *account, *from),
                uids(u),
                mailbox_name(state, *account, *to)
            ),
            Record::MailboxCreate { account, name, .. } => format!("{}: creation of mailbox {name:?}", acc(*account)),
            Record::MailboxRename { account, renames, .. } => format!("{}: rename to {renames:?}", acc(*account)),
            Record::MailboxDelete { account, mailbox, .. } => {
                format!("{}: deletion of mailbox {}", acc(*account), mailbox_name(state, *account, *mailbox))
            }
            Record::AccountCreate { name, .. } => format!("creation of account {name}"),
            Record::AccountDelete { account } => format!("deletion of {}", acc(*account)),
            Record::Subscribe { account, name, .. } => format!("{}: subscription of {name:?}", acc(*account)),
            Record::SpecialUse { account, mailbox, .. } => {
                format!("{}: special-use of mailbox {}", acc(*account), mailbox_name(state, *account, *mailbox))
            }
            Record::Blob { blob, raw_len, .. } => format!("message body blob {blob} ({raw_len} bytes)"),
            Record::Meta { blob } => format!("metadata of blob {blob}"),
            Record::Checkpoint(_) => "a checkpoint (the whole state)".into(),
            Record::SegmentDrop { segment } => format!("the drop of segment {segment}"),
            #[allow(unreachable_patterns)]
            _ => format!("a {} record", kind::name(r.frame.kind)),
        },
    };
    format!("{s}{trust}")
}

/// The damaged transactions of the log, as far as the log tells: where, which LSNs, and
/// what they touch (accounts, mailboxes, UIDs; names from `state`).
pub fn damage_report(backend: &dyn Backend, state: &State) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut txn: Vec<ScannedRecord> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for id in segment_ids(backend)? {
        let scan = scan_segment(backend, id)?;
        if let Err(e) = &scan.header {
            bad.push(format!("segment {id} header: {e}"));
        }
        let mut damage = scan.damage.iter().peekable();
        for r in scan.records {
            while let Some(d) = damage.next_if(|d| d.offset < r.offset) {
                bad.push(format!("segment {id} offset {}: {} unreadable bytes ({})", d.offset, d.len, d.reason));
            }
            if !r.crc_ok {
                bad.push(format!(
                    "segment {id} offset {}: {} record LSN {} fails its checksum",
                    r.offset,
                    kind::name(r.frame.kind),
                    r.frame.lsn
                ));
            } else if let Err(e) = &r.decoded {
                bad.push(format!("segment {id} offset {}: record LSN {} does not decode: {e}", r.offset, r.frame.lsn));
            }
            match (&r.decoded, r.crc_ok) {
                (Ok(Record::Commit { first_lsn, count, batch_seq, .. }), true) => {
                    if !bad.is_empty() {
                        let last = first_lsn + u64::from(*count);
                        let present: Vec<u64> = txn.iter().map(|t| t.frame.lsn).collect();
                        let missing: Vec<u64> = (*first_lsn..last).filter(|l| !present.contains(l)).collect();
                        let mut s = format!(
                            "transaction LSNs {first_lsn}..{} (batch {batch_seq}, committed in segment {id} at offset {}): {}",
                            last.saturating_sub(1),
                            r.offset,
                            bad.join("; ")
                        );
                        if !missing.is_empty() {
                            s.push_str(&format!("; LSNs {missing:?} unreadable"));
                        }
                        let orphans: Vec<&ScannedRecord> = txn.iter().filter(|t| t.frame.lsn < *first_lsn).collect();
                        if !orphans.is_empty() {
                            s.push_str(&format!(
                                "; {} records of an earlier transaction lost their commit",
                                orphans.len()
                            ));
                        }
                        let what: Vec<String> = txn.iter().map(|t| touches(state, t)).collect();
                        if !what.is_empty() {
                            s.push_str(&format!("; it touches: {}", what.join(", ")));
                        }
                        out.push(s);
                    }
                    txn.clear();
                    bad.clear();
                }
                (Ok(Record::Seal { .. }), true) => {
                    if !bad.is_empty() || !txn.is_empty() {
                        let what: Vec<String> = txn.iter().map(|t| touches(state, t)).collect();
                        out.push(format!(
                            "before the seal of segment {id}: {}; uncommitted records: {}",
                            bad.join("; "),
                            what.join(", ")
                        ));
                    }
                    txn.clear();
                    bad.clear();
                }
                _ => txn.push(r),
            }
        }
        for d in damage {
            bad.push(format!("segment {id} offset {}: {} unreadable bytes ({})", d.offset, d.len, d.reason));
        }
    }
    if !bad.is_empty() || !txn.is_empty() {
        let what: Vec<String> = txn.iter().map(|t| touches(state, t)).collect();
        out.push(format!(
            "at the end of the log, without a commit: {}{}",
            bad.join("; "),
            if what.is_empty() { String::new() } else { format!("; records: {}", what.join(", ")) }
        ));
    }
    Ok(out)
}

/// Works out what to do. Reads only.
pub fn plan(backend: &FileBackend) -> Result<Vec<Action>, CmdError> {
    let io = |e: std::io::Error| CmdError::new(format!("cannot read the data directory: {e}"));
    let mut actions: Vec<Action> = tmp_files(backend).map_err(io)?.into_iter().map(Action::RemoveTmp).collect();
    let mut corrupt: Option<(u64, u64, String)> = None;
    let mut drop_snapshot = false;
    if snapshot_present(backend) {
        match load_snapshot(backend) {
            Err(e) => actions.push(Action::RemoveSnapshot { why: format!("it is unusable: {e}") }),
            Ok(snap) => {
                let counted = snap.state.counted_refs();
                let refs_wrong = snap.state.blobs.iter().any(|(id, b)| counted.get(id).copied().unwrap_or(0) != b.refs);
                match recover(backend, true) {
                    Ok(rec) if !rec.report.snapshot_used => actions.push(Action::RemoveSnapshot {
                        why: format!("it is stale: {}", rec.report.snapshot_problem.unwrap_or_default()),
                    }),
                    Ok(rec) => match recover_ignoring_snapshot(backend, true) {
                        Ok(full) => {
                            let diffs = state_differences(&rec.state, &full.state);
                            if !diffs.is_empty() {
                                actions.push(Action::RemoveSnapshot {
                                    why: format!("it disagrees with the log: {}", diffs[0]),
                                });
                            } else if refs_wrong {
                                actions.push(Action::RemoveSnapshot { why: "its reference counts are wrong".into() });
                            }
                        }
                        Err(OpenError::Corrupt { segment, offset, reason }) => {
                            // The snapshot hides damage in the log before it.
                            corrupt = Some((segment, offset, reason));
                        }
                        Err(e) => return Err(CmdError::new(e.to_string())),
                    },
                    Err(OpenError::Corrupt { .. }) => {}
                    Err(e) => return Err(CmdError::new(e.to_string())),
                }
            }
        }
        drop_snapshot = actions.iter().any(|a| matches!(a, Action::RemoveSnapshot { .. }));
    }
    if corrupt.is_none() {
        let rec = if drop_snapshot { recover_ignoring_snapshot(backend, true) } else { recover(backend, true) };
        match rec {
            Ok(rec) => {
                if let Some((segment, offset, bytes)) = rec.report.torn_cut {
                    let later_segments =
                        segment_ids(backend).map_err(io)?.into_iter().filter(|&s| s > segment).collect();
                    actions.push(Action::CutTornTail { segment, offset, bytes, later_segments });
                }
            }
            Err(OpenError::Corrupt { segment, offset, reason }) => corrupt = Some((segment, offset, reason)),
            Err(e) => return Err(CmdError::new(e.to_string())),
        }
    }
    if let Some((segment, offset, reason)) = corrupt {
        let s = postlog_engine::salvage::salvage(backend);
        let damage = damage_report(backend, &s.state).map_err(io)?;
        let lost_messages = s
            .lost_messages
            .iter()
            .map(|&(a, m, uid)| {
                format!("account {} mailbox {} UID {uid}", account_name(&s.state, a), mailbox_name(&s.state, a, m))
            })
            .collect();
        actions.push(Action::Salvage(SalvagePlan {
            segment,
            offset,
            reason,
            damage,
            problems: s.problems.iter().map(|p| p.to_string()).collect(),
            lost_messages,
            accounts: s.state.accounts.len(),
            messages: s.state.accounts.values().map(|a| a.messages).sum(),
        }));
    }
    Ok(actions)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Salvages the log of the (locked) store in `dir` into a new log; the old files go to
/// `dir/damaged-<time>/`. Returns that directory.
fn salvage_into_new_log(backend: &FileBackend, dir: &Path) -> Result<std::path::PathBuf, CmdError> {
    let err = |what: &str, e: std::io::Error| CmdError::new(format!("salvage: cannot {what}: {e}"));
    let salvaged = postlog_engine::salvage::salvage(backend);
    let rebuild_dir = dir.join("salvage-rebuild");
    if rebuild_dir.exists() {
        fs::remove_dir_all(&rebuild_dir).map_err(|e| err("clear salvage-rebuild/", e))?;
    }
    {
        let target = match FileBackend::open(&rebuild_dir) {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return Err(CmdError::new("salvage: salvage-rebuild/ is locked by another process")),
            Err(e) => return Err(err("create salvage-rebuild/", e)),
        };
        postlog_engine::salvage::rebuild(&salvaged, &target).map_err(|e| err("write the new log", e))?;
    }
    drop(salvaged);
    let backup = dir.join(format!("damaged-{}", now_unix()));
    fs::create_dir(&backup).map_err(|e| err("create the backup directory", e))?;
    let names = backend.list().map_err(|e| err("list the data directory", e))?;
    for name in names.iter().filter(|n| parse_segment_file_name(n).is_some() || *n == SNAPSHOT_FILE) {
        fs::rename(dir.join(name), backup.join(name)).map_err(|e| err(&format!("move {name} aside"), e))?;
    }
    sync_dir(&backup).map_err(|e| err("sync the backup directory", e))?;
    let first = segment_file_name(1);
    fs::rename(rebuild_dir.join(&first), dir.join(&first)).map_err(|e| err("move the new log in", e))?;
    sync_dir(dir).map_err(|e| err("sync the data directory", e))?;
    let _ = fs::remove_dir_all(&rebuild_dir);
    Ok(backup)
}

pub fn run(config: &Config, apply: bool) -> Result<i32, CmdError> {
    let dir = &config.data_dir;
    // --apply takes the lock first, so that nothing changes between planning and doing.
    let backend = if apply { crate::reader::open_locked(dir)? } else { crate::reader::open_read_only(dir)? };
    let actions = plan(&backend)?;
    if actions.is_empty() {
        println!("repair: nothing to repair in {}", dir.display());
        return Ok(exit::OK);
    }
    let verb = if apply { "doing" } else { "would" };
    for a in &actions {
        println!("{verb}: {a}");
    }
    if !apply {
        println!("repair: dry run, nothing changed; run `postlog repair --apply` to do it");
        return Ok(exit::FINDINGS);
    }
    let fail = |what: String| CmdError::new(format!("repair: {what}"));
    let mut lost = 0usize;
    let mut salvaged = false;
    for a in &actions {
        match a {
            Action::RemoveTmp(name) => {
                let path = dir.join(name);
                let r = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                r.map_err(|e| fail(format!("cannot remove {name}: {e}")))?;
            }
            Action::RemoveSnapshot { .. } => {
                backend.remove(SNAPSHOT_FILE).map_err(|e| fail(format!("cannot remove {SNAPSHOT_FILE}: {e}")))?;
            }
            Action::CutTornTail { .. } => {} // done by the recovery below
            Action::Salvage(p) => {
                lost += p.lost_messages.len();
                salvaged = true;
                let backup = salvage_into_new_log(&backend, dir)?;
                println!("salvaged: the damaged files are in {}", backup.display());
            }
        }
    }
    backend.sync_dir().map_err(|e| fail(format!("cannot sync {}: {e}", dir.display())))?;
    // Recovery cuts a torn tail; closing writes a fresh snapshot.
    let store = Store::open_backend(Arc::new(backend), Options::default()).map_err(|e| CmdError {
        code: exit::FINDINGS,
        message: format!("repair: the store still does not open: {e}"),
    })?;
    let report = store.recovery_report().clone();
    store.close().map_err(|e| fail(format!("cannot write a snapshot: {e}")))?;
    println!(
        "repair: done; the store opens cleanly ({} records replayed{})",
        report.records_replayed,
        report.torn_cut.map(|(s, o, n)| format!(", cut {n} bytes of segment {s} at offset {o}")).unwrap_or_default()
    );
    if salvaged {
        println!(
            "repair: the log was rewritten from what could be read; {lost} unreadable messages were dropped and the \
             damaged transactions listed above are lost"
        );
        return Ok(exit::FINDINGS);
    }
    Ok(exit::OK)
}
