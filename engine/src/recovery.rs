//! Opening a store: load the snapshot if it is good, replay the log after it, cut a torn
//! final batch, and refuse (with the segment and offset) anything else that is wrong.

use std::sync::Arc;

use crate::backend::{Backend, BackendFile};
use crate::error::OpenError;
use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentHeaderError, version_is_read};
use crate::log::{ScanEnd, Segments, find_later_commit, parse_segment_file_name, scan};
use crate::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN, Record, kind};
use crate::snapshot::{self, Position, SNAPSHOT_FILE};
use crate::state::{DataLoc, Loc, State};

/// What recovery found and did, for logs and `postlog dump`.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub snapshot_used: bool,
    pub snapshot_problem: Option<String>,
    pub records_replayed: u64,
    pub bytes_replayed: u64,
    /// A torn final batch was cut: (segment, offset, bytes cut).
    pub torn_cut: Option<(u64, u64, u64)>,
    pub removed_files: Vec<String>,
}

/// The last segment as recovery left it.
pub struct ActiveSegment {
    pub id: u64,
    pub file: Arc<dyn BackendFile>,
    /// Where the next record goes.
    pub end: u64,
    pub sealed: bool,
    pub records: u64,
    /// The format version in its header (an older one is sealed at open, see `Store::open`).
    pub version: u32,
}

pub struct Recovered {
    pub state: State,
    pub segments: Arc<Segments>,
    pub active: Option<ActiveSegment>,
    pub next_lsn: u64,
    pub batch_seq: u64,
    pub report: RecoveryReport,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpenError {
    let what = what.into();
    move |source| OpenError::Io { what, source }
}

/// Loads the snapshot, or `None` with the reason it was not usable.
pub fn load_snapshot(backend: &dyn Backend) -> Result<snapshot::Snapshot, String> {
    let file = backend.open(SNAPSHOT_FILE).map_err(|e| format!("no snapshot: {e}"))?;
    let bytes = snapshot::read_aligned(&*file).map_err(|e| e.to_string())?;
    snapshot::decode(&bytes).map_err(|e| e.to_string())
}

/// Whether any byte of `file` from `offset` to its end is not zero.
fn nonzero_after(file: &dyn BackendFile, offset: u64) -> std::io::Result<bool> {
    let len = file.len()?;
    let mut at = offset;
    while at < len {
        let n = (len - at).min(1 << 20);
        if file.view(at, n as usize)?.iter().any(|&b| b != 0) {
            return Ok(true);
        }
        at += n;
    }
    Ok(false)
}

pub fn recover(backend: &dyn Backend, read_only: bool) -> Result<Recovered, OpenError> {
    recover_inner(backend, read_only, true)
}

/// Like [`recover`], but ignores the snapshot and replays the whole log, so `postlog check`
/// can compare the snapshot's state with the log's.
pub fn recover_ignoring_snapshot(backend: &dyn Backend, read_only: bool) -> Result<Recovered, OpenError> {
    recover_inner(backend, read_only, false)
}

fn recover_inner(backend: &dyn Backend, read_only: bool, use_snapshot: bool) -> Result<Recovered, OpenError> {
    let mut report = RecoveryReport::default();
    let names = backend.list().map_err(io_err("list the data directory"))?;
    let mut ids: Vec<u64> = Vec::new();
    for name in &names {
        if name.ends_with(".tmp") && !read_only {
            backend.remove(name).map_err(io_err(format!("remove leftover {name}")))?;
            report.removed_files.push(name.clone());
        } else if let Some(id) = parse_segment_file_name(name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();

    let segments = Arc::new(Segments::default());
    // Dictionaries first: nothing in replay decompresses, but every reader after it may.
    segments.dictionaries().load(backend).map_err(io_err("read the dictionary files"))?;
    for &id in &ids {
        let file = backend.open(&crate::log::segment_file_name(id)).map_err(io_err(format!("open segment {id}")))?;
        segments.insert(id, file);
    }

    // Snapshot, if usable.
    let mut state = State::default();
    let mut start: Option<Position> = None;
    let loaded = if use_snapshot { load_snapshot(backend) } else { Err("snapshot ignored on request".to_string()) };
    match loaded {
        Ok(snap) => {
            let pos = snap.position;
            let ok = segments.get(pos.segment).is_some_and(|f| f.len().is_ok_and(|l| l >= pos.offset));
            // Segments after the snapshot's were compacted away since it was written: the
            // records they held are not in the snapshot, so it cannot be the base of replay.
            let later_gap = ids
                .iter()
                .skip_while(|&&id| id < pos.segment)
                .zip(ids.iter().skip_while(|&&id| id < pos.segment).skip(1))
                .any(|(a, b)| a + 1 != *b);
            if ok && later_gap {
                report.snapshot_problem = Some(format!(
                    "segments after the snapshot's segment {} were removed since it was written",
                    pos.segment
                ));
            } else if ok && let Err(e) = crate::state::validate_accounts(&snap.state.accounts, snap.state.next_account)
            {
                report.snapshot_problem = Some(format!("snapshot state is inconsistent: {e}"));
            } else if ok {
                state = snap.state;
                state.recount_usage();
                start = Some(pos);
                report.snapshot_used = true;
            } else {
                report.snapshot_problem =
                    Some(format!("snapshot points at segment {} which is missing or short", pos.segment));
            }
        }
        Err(e) => report.snapshot_problem = Some(e),
    }

    let mut next_lsn = start.map_or(0, |p| p.next_lsn);
    let mut batch_seq = start.map_or(0, |p| p.last_batch_seq);
    let mut last_batch_end = true;
    // Before the first checkpoint of a log whose oldest segments were compacted away,
    // records may refer to what those segments held: they are superseded by the checkpoint.
    // (Tolerance lasts until a checkpoint in or after the segment that follows the last gap.)
    let last_gap_after = {
        let mut expect = 1u64;
        let mut after = None;
        for &id in &ids {
            if id != expect {
                after = Some(id);
            }
            expect = id + 1;
        }
        after
    };
    let mut tolerant = start.is_none() && last_gap_after.is_some();
    let mut checkpoint_replayed = false;
    let mut active = None;

    let first_index = match start {
        Some(p) => ids.iter().position(|&id| id == p.segment).unwrap_or(0),
        None => 0,
    };
    let mut prev_id: Option<u64> = None;
    let mut i = first_index;
    while i < ids.len() {
        let id = ids[i];
        let file = segments.get(id).ok_or_else(|| OpenError::Corrupt {
            segment: id,
            offset: 0,
            reason: "segment vanished during recovery".into(),
        })?;
        let hv = file.view(0, SEGMENT_HEADER_LEN).map_err(|_| OpenError::Corrupt {
            segment: id,
            offset: 0,
            reason: "segment file is shorter than its header".into(),
        })?;
        let header = SegmentHeader::decode(&hv).map_err(|e| match e {
            SegmentHeaderError::UnsupportedVersion(version) if !version_is_read(version) => {
                OpenError::UnsupportedFormat { segment: id, version }
            }
            e => OpenError::Corrupt { segment: id, offset: 0, reason: format!("bad segment header: {e:?}") },
        })?;
        let version = crate::format::le_u32(&hv[8..12]);
        if header.segment_id != id {
            return Err(OpenError::Corrupt {
                segment: id,
                offset: 0,
                reason: format!("header names segment {}", header.segment_id),
            });
        }
        let resume = match start {
            Some(p) if p.segment == id => p.offset,
            _ => {
                // Starting this segment from its beginning: LSNs must continue from the previous
                // segment unless that one was compacted away.
                let contiguous = prev_id.is_some_and(|p| p + 1 == id);
                if contiguous && header.base_lsn != next_lsn {
                    return Err(OpenError::Corrupt {
                        segment: id,
                        offset: 0,
                        reason: format!(
                            "segment starts at LSN {} but the log continues at {next_lsn}",
                            header.base_lsn
                        ),
                    });
                }
                if !contiguous && prev_id.is_none() && start.is_none() {
                    next_lsn = header.base_lsn;
                } else if !contiguous {
                    next_lsn = header.base_lsn.max(next_lsn);
                }
                SEGMENT_HEADER_LEN as u64
            }
        };
        let (records, end) = scan(&*file, resume).map_err(io_err(format!("read segment {id}")))?;
        let mut pending: Vec<(Record, Option<DataLoc>, u64)> = Vec::new();
        let mut committed_end = resume;
        let mut sealed = false;
        let mut bad: Option<(u64, String)> = None;
        for r in &records {
            if sealed {
                bad = Some((r.offset, "record after the segment's seal".into()));
                break;
            }
            if r.frame.lsn != next_lsn {
                bad = Some((r.offset, format!("LSN {} where {next_lsn} was expected", r.frame.lsn)));
                break;
            }
            let payload = file
                .view(r.offset + crate::format::RECORD_HEADER_LEN as u64, r.frame.payload_len as usize)
                .map_err(io_err(format!("read segment {id}")))?;
            let (rec, data_start) = match Record::decode(r.frame.kind, &payload) {
                Ok(x) => x,
                Err(e) => {
                    bad = Some((r.offset, format!("{} record does not decode: {e}", kind::name(r.frame.kind))));
                    break;
                }
            };
            next_lsn += 1;
            report.records_replayed += 1;
            report.bytes_replayed += crate::format::frame_len(r.frame.payload_len as usize) as u64;
            let data = match r.frame.kind {
                kind::BLOB | kind::META | kind::CHECKPOINT => {
                    let prefix = match r.frame.kind {
                        kind::BLOB => BLOB_PREFIX_LEN,
                        kind::META => META_PREFIX_LEN,
                        _ => 0,
                    };
                    debug_assert_eq!(prefix, data_start.min(prefix));
                    Some(DataLoc {
                        loc: Loc {
                            segment: id,
                            offset: r.offset + crate::format::RECORD_HEADER_LEN as u64 + prefix as u64,
                            len: r.frame.payload_len - prefix as u32,
                        },
                        codec: r.frame.codec,
                    })
                }
                _ => None,
            };
            match rec {
                Record::Commit { first_lsn, count, batch_seq: seq, batch_end } => {
                    let expected_first = pending.first().map_or(r.frame.lsn, |p| p.2);
                    if first_lsn != expected_first || count as usize != pending.len() || seq < batch_seq {
                        bad = Some((r.offset, "commit does not match the records before it".into()));
                        break;
                    }
                    for (rec, data, _) in pending.drain(..) {
                        let is_checkpoint = matches!(rec, Record::Checkpoint(_));
                        checkpoint_replayed |= is_checkpoint;
                        match state.apply(&rec, data) {
                            Ok(()) => {}
                            Err(_) if tolerant && !matches!(rec, Record::Blob { .. } | Record::Meta { .. }) => {}
                            Err(e) => {
                                return Err(OpenError::Corrupt { segment: id, offset: r.offset, reason: e.0 });
                            }
                        }
                        if is_checkpoint && last_gap_after.is_none_or(|g| id >= g) {
                            tolerant = false;
                        }
                    }
                    batch_seq = seq;
                    last_batch_end = batch_end;
                    committed_end = r.offset + crate::format::frame_len(r.frame.payload_len as usize) as u64;
                }
                Record::Seal { .. } => {
                    if !pending.is_empty() {
                        bad = Some((r.offset, "seal inside an open transaction".into()));
                        break;
                    }
                    sealed = true;
                    committed_end = r.offset + crate::format::frame_len(r.frame.payload_len as usize) as u64;
                }
                rec => pending.push((rec, data, r.frame.lsn)),
            }
        }
        if bad.is_none() {
            // Zeros end the log, but only if nothing follows them: data after a zero hole is an
            // unsynced batch that was partly written back (a torn tail, to cut before new
            // records overwrite part of it), or synced data that lost bytes (corruption).
            let data_after_zeros = match &end {
                ScanEnd::Clean { offset } if !sealed => {
                    nonzero_after(&*file, *offset).map_err(io_err(format!("read segment {id}")))?
                }
                _ => false,
            };
            match &end {
                ScanEnd::Bad { offset, reason } => bad = Some((*offset, reason.clone())),
                ScanEnd::Clean { offset } if data_after_zeros => {
                    bad = Some((*offset, "data after zeros at the end of the log".into()))
                }
                ScanEnd::Clean { offset } if !pending.is_empty() => {
                    bad = Some((*offset, "transaction without commit at the end of the log".into()))
                }
                ScanEnd::Clean { offset } if !sealed && i + 1 < ids.len() => {
                    bad = Some((*offset, "segment ends without a seal but later segments exist".into()))
                }
                ScanEnd::Clean { .. } => {}
            }
        }
        if let Some((offset, reason)) = bad {
            // Torn final batch, or corruption? Any commit of a later batch after this point
            // means the bytes here were synced once: corruption.
            let threshold = batch_seq + u64::from(last_batch_end);
            let mut later = find_later_commit(&*file, offset + 8, threshold).map_err(io_err("scan for commits"))?;
            if later.is_none() {
                for &later_id in &ids[i + 1..] {
                    if let Some(f) = segments.get(later_id)
                        && find_later_commit(&*f, SEGMENT_HEADER_LEN as u64, threshold)
                            .map_err(io_err("scan for commits"))?
                            .is_some()
                    {
                        later = Some(0);
                        break;
                    }
                }
            }
            if later.is_some() {
                return Err(OpenError::Corrupt { segment: id, offset, reason });
            }
            // Torn: drop everything after the last commit.
            let len = file.len().map_err(io_err("stat segment"))?;
            if !read_only {
                file.set_len(committed_end).map_err(io_err(format!("cut the torn tail of segment {id}")))?;
                file.sync_data().map_err(io_err(format!("sync segment {id}")))?;
                for &later_id in &ids[i + 1..] {
                    let name = crate::log::segment_file_name(later_id);
                    backend.remove(&name).map_err(io_err(format!("remove {name}")))?;
                    segments.remove(later_id);
                    report.removed_files.push(name);
                }
                if i + 1 < ids.len() {
                    backend.sync_dir().map_err(io_err("sync the data directory"))?;
                }
            }
            report.torn_cut = Some((id, committed_end, len.saturating_sub(committed_end)));
            next_lsn -= pending.len() as u64;
            // Cut after a SEAL: the segment stays sealed, so the writer starts the next one.
            active = Some(ActiveSegment { id, file, end: committed_end, sealed, records: 0, version });
            ids.truncate(i + 1);
            break;
        }
        let end_off = match end {
            ScanEnd::Clean { offset } => offset,
            ScanEnd::Bad { offset, .. } => offset,
        };
        // A file longer than its records (space reserved ahead) is fine: the rest is zeros.
        active = Some(ActiveSegment {
            id,
            file,
            end: end_off.max(committed_end),
            sealed,
            records: records.len() as u64,
            version,
        });
        prev_id = Some(id);
        i += 1;
    }
    if tolerant {
        // Replay began after compacted segments but met no checkpoint.
        return Err(OpenError::Corrupt {
            segment: ids.first().copied().unwrap_or(0),
            offset: 0,
            reason: "older segments are missing and no checkpoint follows them".into(),
        });
    }
    // Reference counts are kept by every apply and stored in the snapshot; they need counting
    // afresh only when replay began from nothing or passed a checkpoint (which counts leniently).
    if !report.snapshot_used || checkpoint_replayed {
        state.finish_replay().map_err(|e| OpenError::Corrupt { segment: 0, offset: 0, reason: e.0 })?;
    }
    // Compaction only drops segments before the one being written; a drop of that one or of
    // a later one (whose id the writer would reuse) cannot come from this store.
    if let Some(a) = &active
        && let Some(&seg) = state.dropped_segments.iter().find(|&&s| s >= a.id)
    {
        return Err(OpenError::Corrupt {
            segment: a.id,
            offset: 0,
            reason: format!(
                "the log says segment {seg} was compacted away, but segment {} is the one being written",
                a.id
            ),
        });
    }
    // Segments whose drop was committed but whose file survived a crash.
    for seg in state.dropped_segments.clone() {
        if segments.get(seg).is_some() && !read_only {
            let name = crate::log::segment_file_name(seg);
            backend.remove(&name).map_err(io_err(format!("remove {name}")))?;
            segments.remove(seg);
            report.removed_files.push(name);
        }
    }
    Ok(Recovered { state, segments, active, next_lsn, batch_seq, report })
}
