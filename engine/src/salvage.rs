//! Salvage: read whatever a damaged log still holds, and write it into a fresh log.
//!
//! Normal recovery refuses a log that is damaged anywhere but its torn tail, because carrying
//! on would silently lose acknowledged data. `postlog repair --apply` and `postlog export`
//! on a damaged store use this module instead: every problem is reported, every record that
//! still reads back is used.
//!
//! [`salvage`] replays every segment from the start. At a damaged frame it skips forward in
//! 8-byte steps to the next frame whose header and payload checksums are right, dropping the
//! transaction that was open; records that do not apply to the state are skipped and
//! reported; messages whose body cannot be read are dropped and reported.
//!
//! [`rebuild`] writes a new log holding exactly the salvaged state: each live blob (copied
//! byte for byte, same blob id) with its metadata, then one CHECKPOINT record with the
//! accounts, mailboxes, UIDs, MODSEQs and flags. UIDVALIDITY and UIDs are kept, so clients'
//! caches stay valid for every message that survived.

use std::collections::HashSet;
use std::sync::Arc;

use crate::backend::{Backend, BackendFile};
use crate::format::{
    Codec, FORMAT_VERSION, FrameHeader, MIN_READ_VERSION, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, SegmentHeaderError, crc32c, encode_frame, frame_len,
};
use crate::log::{Segments, Writer, parse_segment_file_name, segment_file_name};
use crate::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN, Record, kind};
use crate::state::{DataLoc, Loc, State};

/// Something salvage could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub segment: u64,
    pub offset: u64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} offset {}: {}", self.segment, self.offset, self.what)
    }
}

pub struct Salvaged {
    pub state: State,
    pub segments: Arc<Segments>,
    pub problems: Vec<Problem>,
    /// Messages dropped because their body or metadata is unreadable: (account, mailbox, uid).
    pub lost_messages: Vec<(u32, u32, u32)>,
}

fn read_frame(file: &dyn BackendFile, off: u64, len: u64) -> Option<(FrameHeader, Vec<u8>)> {
    if off + RECORD_HEADER_LEN as u64 > len {
        return None;
    }
    let hv = file.view(off, RECORD_HEADER_LEN).ok()?;
    let mut hb = [0u8; RECORD_HEADER_LEN];
    hb.copy_from_slice(&hv);
    let frame = FrameHeader::decode(&hb).ok()?;
    if off + frame_len(frame.payload_len as usize) as u64 > len {
        return None;
    }
    let payload = file.view(off + RECORD_HEADER_LEN as u64, frame.payload_len as usize).ok()?;
    (crc32c(&payload) == frame.payload_crc).then(|| (frame, payload.to_vec()))
}

/// Reads everything still readable. Never fails: what it cannot use is in `problems`.
pub fn salvage(backend: &dyn Backend) -> Salvaged {
    let mut problems = Vec::new();
    let segments = Arc::new(Segments::default());
    if let Err(e) = segments.dictionaries().load(backend) {
        problems.push(Problem { segment: 0, offset: 0, what: format!("cannot read the dictionary files: {e}") });
    }
    let mut ids: Vec<u64> =
        backend.list().unwrap_or_default().iter().filter_map(|n| parse_segment_file_name(n)).collect();
    ids.sort_unstable();
    let mut state = State::default();
    for &id in &ids {
        let file = match backend.open(&segment_file_name(id)) {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem { segment: id, offset: 0, what: format!("cannot open: {e}") });
                continue;
            }
        };
        segments.insert(id, file.clone());
        let len = file.len().unwrap_or(0);
        match file.view(0, SEGMENT_HEADER_LEN).ok().map(|h| SegmentHeader::decode(&h)) {
            Some(Ok(h)) if h.segment_id == id => {}
            // An intact header of another format version: its records mean something else.
            Some(Err(SegmentHeaderError::UnsupportedVersion(v))) if !crate::format::version_is_read(v) => {
                problems.push(Problem {
                    segment: id,
                    offset: 0,
                    what: format!(
                        "segment is in store format version {v}, not {MIN_READ_VERSION} to {FORMAT_VERSION}; not read"
                    ),
                });
                continue;
            }
            other => problems.push(Problem {
                segment: id,
                offset: 0,
                what: format!("bad segment header ({other:?}); reading records anyway"),
            }),
        }
        let mut off = SEGMENT_HEADER_LEN as u64;
        let mut pending: Vec<(Record, Option<DataLoc>, u64)> = Vec::new();
        let mut skipping_from: Option<u64> = None;
        // Records of the open transaction were lost to damage: what it adds is kept, what it
        // removes is not (applying half a MOVE's expunge without its copy would lose mail).
        let mut damaged = false;
        while off + RECORD_HEADER_LEN as u64 <= len {
            let Some((frame, payload)) = read_frame(&*file, off, len) else {
                if file.view(off, RECORD_HEADER_LEN).is_ok_and(|h| h.iter().all(|&b| b == 0)) && skipping_from.is_none()
                {
                    // Zeros: maybe the clean end, maybe a hole; look for more records after it.
                }
                skipping_from.get_or_insert(off);
                off += RECORD_ALIGN as u64;
                continue;
            };
            if let Some(from) = skipping_from.take() {
                let zeros = (from..off)
                    .step_by(RECORD_ALIGN)
                    .all(|o| file.view(o, RECORD_ALIGN).is_ok_and(|b| b.iter().all(|&x| x == 0)));
                if !zeros || !pending.is_empty() {
                    problems.push(Problem {
                        segment: id,
                        offset: from,
                        what: format!(
                            "{} unreadable bytes skipped inside a transaction; its readable records that add \
                             data are kept, those that remove data are dropped",
                            off - from,
                        ),
                    });
                    damaged = true;
                }
            }
            let total = frame_len(frame.payload_len as usize) as u64;
            match Record::decode(frame.kind, &payload) {
                Ok((Record::Commit { .. }, _)) => {
                    for (rec, data, lsn) in pending.drain(..) {
                        if damaged && removes(&rec) {
                            problems.push(Problem {
                                segment: id,
                                offset: off,
                                what: format!(
                                    "{} record (LSN {lsn}) of a damaged transaction not applied",
                                    kind::name(rec.kind())
                                ),
                            });
                            continue;
                        }
                        if let Err(e) = state.apply(&rec, data) {
                            problems.push(Problem {
                                segment: id,
                                offset: off,
                                what: format!("{} record (LSN {lsn}) skipped: {e}", kind::name(rec.kind())),
                            });
                        }
                    }
                    damaged = false;
                }
                Ok((Record::Seal { .. }, _)) => pending.clear(),
                Ok((rec, _)) => {
                    let prefix = match frame.kind {
                        kind::BLOB => Some(BLOB_PREFIX_LEN),
                        kind::META => Some(META_PREFIX_LEN),
                        kind::CHECKPOINT => Some(0),
                        _ => None,
                    };
                    let data = prefix.map(|p| DataLoc {
                        loc: Loc {
                            segment: id,
                            offset: off + (RECORD_HEADER_LEN + p) as u64,
                            len: frame.payload_len - p as u32,
                        },
                        codec: frame.codec,
                    });
                    pending.push((rec, data, frame.lsn));
                }
                Err(e) => {
                    problems.push(Problem {
                        segment: id,
                        offset: off,
                        what: format!("record does not decode ({e}); skipped"),
                    });
                    damaged = true;
                }
            }
            off += total;
        }
        if let Some(from) = skipping_from {
            let zeros = (from..len).step_by(RECORD_ALIGN).all(|o| {
                let n = RECORD_ALIGN.min((len - o) as usize);
                file.view(o, n).is_ok_and(|b| b.iter().all(|&x| x == 0))
            });
            if !zeros {
                problems.push(Problem {
                    segment: id,
                    offset: from,
                    what: format!("{} unreadable bytes at the end", len - from),
                });
            }
        }
        if !pending.is_empty() {
            problems.push(Problem {
                segment: id,
                offset: len,
                what: format!("{} records without a commit at the end of the segment dropped", pending.len()),
            });
        }
    }

    // Messages whose blob is missing or unreadable cannot be kept.
    let mut bad_blobs: HashSet<u64> = HashSet::new();
    for (id, b) in &state.blobs {
        // A body compressed with a dictionary the store lacks cannot be read back either.
        let ok_data = crate::read::read_data(&segments, b.data, BLOB_PREFIX_LEN)
            .is_ok_and(|data| b.codec != Codec::ZstdDict as u8 || crate::read::dictionary_of(&segments, &data).is_ok());
        let ok_meta = b.meta.is_some_and(|m| crate::read::read_data(&segments, m, META_PREFIX_LEN).is_ok());
        if !ok_data || !ok_meta {
            bad_blobs.insert(*id);
        }
    }
    let mut lost = Vec::new();
    for acc in state.accounts.values_mut() {
        for mb in acc.mailboxes.values_mut() {
            let known = &state.blobs;
            mb.messages.retain(|m| {
                let keep = known.contains_key(&m.blob) && !bad_blobs.contains(&m.blob);
                if !keep {
                    lost.push((acc.id, mb.id, m.uid));
                }
                keep
            });
        }
    }
    // Usage and live threads of what is left.
    state.recount_usage();
    for (a, m, uid) in &lost {
        problems.push(Problem {
            segment: 0,
            offset: 0,
            what: format!("message UID {uid} of mailbox {m}, account {a} is unreadable and was dropped"),
        });
    }
    for id in &bad_blobs {
        if let Some(b) = state.blobs.remove(id) {
            state.blob_by_hash.remove(&b.hash);
        }
    }
    let _ = state.recount_refs();
    Salvaged { state, segments, problems, lost_messages: lost }
}

/// Records that take data away (not applied from a damaged transaction).
fn removes(rec: &Record) -> bool {
    matches!(
        rec,
        Record::AccountDelete { .. }
            | Record::MailboxDelete { .. }
            | Record::Expunge { .. }
            | Record::KvDelete { .. }
            | Record::SegmentDrop { .. }
            | Record::Checkpoint(_)
    )
}

/// Writes the salvaged state as a new log into `target` (an empty directory), with the
/// dictionary files its blobs may need. Returns the number of blobs copied.
pub fn rebuild(salvaged: &Salvaged, target: &dyn Backend) -> std::io::Result<u64> {
    // The dictionaries the copied blobs may name, durable before any log that uses them.
    let dicts = salvaged.segments.dictionaries();
    let present = target.list()?;
    for f in dicts.files() {
        if let Some(body) = dicts.body(f.id)
            && !present.contains(&f.name)
        {
            crate::dict::write_file(target, f.id, &body)?;
        }
    }
    let file = Writer::create_segment(target, 1, 1)?;
    let mut end = SEGMENT_HEADER_LEN as u64;
    let mut lsn = 1u64;
    let mut batch = 0u64;
    let mut buf = Vec::new();
    let mut copied = 0u64;
    let mut payload = Vec::new();
    let mut push_txn = |buf: &mut Vec<u8>, recs: Vec<(Record, Codec, Vec<u8>)>, lsn: &mut u64, batch: &mut u64| {
        let first = *lsn;
        let n = recs.len() as u32;
        for (rec, codec, data) in recs {
            payload.clear();
            rec.encode_payload(&mut payload);
            encode_frame(buf, rec.kind(), codec, *lsn, rec.account(), &[&payload, &data]);
            *lsn += 1;
        }
        *batch += 1;
        payload.clear();
        Record::Commit { first_lsn: first, count: n, batch_seq: *batch, batch_end: true }.encode_payload(&mut payload);
        encode_frame(buf, kind::COMMIT, Codec::None, *lsn, 0, &[&payload]);
        *lsn += 1;
    };
    let mut ids: Vec<&u64> = salvaged.state.blobs.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let b = &salvaged.state.blobs[id];
        if b.refs == 0 {
            continue;
        }
        let read = |loc: Loc, prefix: usize| -> std::io::Result<Vec<u8>> {
            let f = salvaged.segments.get(loc.segment).ok_or_else(|| std::io::Error::other("segment missing"))?;
            let _ = prefix;
            Ok(f.view(loc.offset, loc.len as usize)?.to_vec())
        };
        let data = read(b.data, BLOB_PREFIX_LEN)?;
        let meta = match b.meta {
            Some(m) => read(m, META_PREFIX_LEN)?,
            None => continue,
        };
        let codec = Codec::from_u8(b.codec).unwrap_or(Codec::None);
        push_txn(
            &mut buf,
            vec![
                (Record::Blob { blob: *id, hash: b.hash, raw_len: b.raw_len }, codec, data),
                (Record::Meta { blob: *id }, Codec::None, meta),
            ],
            &mut lsn,
            &mut batch,
        );
        copied += 1;
        if buf.len() > 8 << 20 {
            file.write_all_at(&buf, end)?;
            end += buf.len() as u64;
            buf.clear();
        }
    }
    let state = crate::snapshot::encode_logical(&salvaged.state);
    push_txn(
        &mut buf,
        vec![(Record::Checkpoint(crate::record::Checkpoint { state }), Codec::None, Vec::new())],
        &mut lsn,
        &mut batch,
    );
    file.write_all_at(&buf, end)?;
    file.sync_data()?;
    target.sync_dir()?;
    Ok(copied)
}
