//! Online compaction: reclaim the space of expunged messages while readers and writers go on.
//!
//! 1. A CHECKPOINT record captures the whole logical state in the active segment `C`, so no
//!    segment before `C` holds a state record anyone still needs.
//! 2. For each segment before `C` whose dead share is high enough, every blob still referenced
//!    is copied forward (a new BLOB + META record with the same blob id; replay follows the
//!    latest copy).
//! 3. A SEGMENT_DROP record commits the removal; the file is unlinked after it is durable.
//!    Readers that already hold a map of it keep valid memory (unlink never changes mapped
//!    pages), and a reader that finds the segment gone looks the blob up again.
//! 4. A snapshot is written so the next start does not replay what was copied.

use crate::error::CommitError;
use crate::format::{Codec, SEGMENT_HEADER_LEN};
use crate::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN};
use crate::state::BlobId;
use crate::store::{Relocation, Store};

/// Blobs are copied forward in transactions of about this size.
const RELOCATION_CHUNK_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_dropped: Vec<u64>,
    pub bytes_freed: u64,
    pub blobs_moved: u64,
    pub bytes_moved: u64,
}

/// Live bytes (blob data and metadata still referenced) per segment.
pub fn live_bytes(store: &Store) -> std::collections::BTreeMap<u64, u64> {
    let st = store.state();
    let mut out = std::collections::BTreeMap::new();
    for b in st.blobs.values().filter(|b| b.refs > 0) {
        *out.entry(b.data.segment).or_insert(0) += u64::from(b.data.len) + BLOB_PREFIX_LEN as u64 + 32;
        if let Some(m) = b.meta {
            *out.entry(m.segment).or_insert(0) += u64::from(m.len) + META_PREFIX_LEN as u64 + 32;
        }
    }
    out
}

/// The share of a segment of `size` bytes that is dead when `live` of its bytes are live.
fn dead_ratio(size: u64, live: u64) -> f64 {
    let payload = size.saturating_sub(SEGMENT_HEADER_LEN as u64).max(1);
    1.0 - (live as f64 / payload as f64).min(1.0)
}

/// Whether [`run`] would compact anything: a segment other than the one being written that
/// is at least `min_dead_ratio` dead. Cheap next to `run`, which first writes a checkpoint of
/// the whole state.
pub fn worth_running(store: &Store, min_dead_ratio: f64) -> bool {
    let live = live_bytes(store);
    let sizes = store.segment_sizes();
    let active = sizes.iter().map(|s| s.0).max();
    sizes
        .iter()
        .filter(|(id, _)| Some(*id) != active)
        .any(|(id, size)| dead_ratio(*size, live.get(id).copied().unwrap_or(0)) >= min_dead_ratio)
}

pub fn run(store: &Store, min_dead_ratio: f64) -> Result<CompactionReport, CommitError> {
    store.checkpoint()?;
    let checkpoint_segment = store.state().checkpoint_segment;
    let live = live_bytes(store);
    let mut report = CompactionReport::default();
    for (segment, size) in store.segment_sizes() {
        if segment >= checkpoint_segment {
            continue;
        }
        if dead_ratio(size, live.get(&segment).copied().unwrap_or(0)) < min_dead_ratio {
            continue;
        }
        // A blob may be revived by a new delivery of the same content between the copy and
        // the drop; then copy again.
        let mut dropped = false;
        for _attempt in 0..3 {
            let movers: Vec<(BlobId, crate::state::BlobEntry)> = {
                let st = store.state();
                st.blobs
                    .iter()
                    .filter(|(_, b)| {
                        b.refs > 0 && (b.data.segment == segment || b.meta.is_some_and(|m| m.segment == segment))
                    })
                    .map(|(id, b)| (*id, b.clone()))
                    .collect()
            };
            let mut chunk: Vec<Relocation> = Vec::new();
            let mut chunk_bytes = 0usize;
            for (id, b) in movers {
                let data = match store.raw_data(b.data, BLOB_PREFIX_LEN) {
                    Ok(d) => d,
                    Err(e) => return Err(CommitError::Io(format!("compaction cannot read blob {id}: {e}"))),
                };
                let meta =
                    match b.meta {
                        Some(loc) => Some(store.raw_data(loc, META_PREFIX_LEN).map_err(|e| {
                            CommitError::Io(format!("compaction cannot read metadata of blob {id}: {e}"))
                        })?),
                        None => None,
                    };
                let codec = Codec::from_u8(b.codec).unwrap_or(Codec::None);
                report.bytes_moved += data.len() as u64;
                report.blobs_moved += 1;
                chunk_bytes += data.len() + meta.as_ref().map_or(0, Vec::len);
                chunk.push(Relocation { blob: id, data: data.into(), codec, meta: meta.map(Into::into) });
                if chunk_bytes >= RELOCATION_CHUNK_BYTES {
                    store.relocate(segment, std::mem::take(&mut chunk))?;
                    chunk_bytes = 0;
                }
            }
            if !chunk.is_empty() {
                store.relocate(segment, chunk)?;
            }
            match store.drop_segment(segment) {
                Ok(()) => {
                    dropped = true;
                    break;
                }
                Err(CommitError::NotAllowed(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if dropped {
            report.segments_dropped.push(segment);
            report.bytes_freed += size;
        }
    }
    if !report.segments_dropped.is_empty() {
        store.snapshot()?;
    }
    Ok(report)
}
