//! Reading a store without the engine's `Store`: recovery in read-only mode (no lock, nothing
//! changed on disk), so the tools work on a store a running server holds, and message bodies
//! and metadata read straight from the segment files.

use std::path::Path;

use postlog_engine::backend::FileBackend;
use postlog_engine::format::{Codec, FrameHeader, RECORD_HEADER_LEN, crc32c};
use postlog_engine::log::Segments;
use postlog_engine::meta::MessageMeta;
use postlog_engine::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN};
use postlog_engine::state::{BlobEntry, Loc};
use postlog_engine::{OpenError, ReadError};

use crate::util::CmdError;

/// Opens a data directory for reading only. It must exist.
pub fn open_read_only(dir: &Path) -> Result<FileBackend, CmdError> {
    if !dir.is_dir() {
        return Err(CmdError::new(format!("the data directory {} does not exist", dir.display())));
    }
    FileBackend::open_read_only(dir)
        .map_err(|e| CmdError::new(format!("cannot open the data directory {}: {e}", dir.display())))
}

/// Opens a data directory with its lock, for tools that change it. A running server holds
/// the lock: then this fails with the engine's sentence.
pub fn open_locked(dir: &Path) -> Result<FileBackend, CmdError> {
    if !dir.is_dir() {
        return Err(CmdError::new(format!("the data directory {} does not exist", dir.display())));
    }
    match FileBackend::open(dir) {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(locked)) => Err(CmdError::new(format!(
            "{}; stop the server first",
            OpenError::Locked { dir: locked.0.display().to_string() }
        ))),
        Err(e) => Err(CmdError::new(format!("cannot open the data directory {}: {e}", dir.display()))),
    }
}

/// Reads the data part of a BLOB or META record at `loc`, checking the record's checksums.
pub fn read_data(segments: &Segments, loc: Loc, prefix: usize) -> Result<Vec<u8>, ReadError> {
    let corrupt = |offset: u64, reason: String| ReadError::Corrupt { segment: loc.segment, offset, reason };
    let file = segments.get(loc.segment).ok_or_else(|| corrupt(loc.offset, "segment file is missing".into()))?;
    let rec_start = loc
        .offset
        .checked_sub((RECORD_HEADER_LEN + prefix) as u64)
        .ok_or_else(|| corrupt(loc.offset, "data location is before any record".into()))?;
    let hv = file.view(rec_start, RECORD_HEADER_LEN).map_err(ReadError::Io)?;
    let mut hb = [0u8; RECORD_HEADER_LEN];
    hb.copy_from_slice(&hv);
    let frame = FrameHeader::decode(&hb).map_err(|e| corrupt(rec_start, format!("{e:?} in record header")))?;
    if frame.payload_len as usize != prefix + loc.len as usize {
        return Err(corrupt(rec_start, "record length differs from the index".into()));
    }
    let payload = file.view(rec_start + RECORD_HEADER_LEN as u64, frame.payload_len as usize).map_err(ReadError::Io)?;
    if crc32c(&payload) != frame.payload_crc {
        return Err(corrupt(rec_start, "payload checksum mismatch".into()));
    }
    Ok(payload[prefix..].to_vec())
}

/// A message body, decompressed.
pub fn read_body(segments: &Segments, blob: &BlobEntry) -> Result<Vec<u8>, ReadError> {
    let data = read_data(segments, blob.data, BLOB_PREFIX_LEN)?;
    let corrupt = |reason: String| ReadError::Corrupt { segment: blob.data.segment, offset: blob.data.offset, reason };
    match Codec::from_u8(blob.codec) {
        Some(Codec::None) => Ok(data),
        Some(Codec::Zstd) => postlog_engine::store::decompress(&data, blob.raw_len).map_err(corrupt),
        None => Err(corrupt(format!("unknown codec {}", blob.codec))),
    }
}

/// A message's metadata, decoded.
pub fn read_meta(segments: &Segments, blob: &BlobEntry) -> Result<MessageMeta, ReadError> {
    let loc = blob.meta.ok_or_else(|| ReadError::Corrupt {
        segment: blob.data.segment,
        offset: blob.data.offset,
        reason: "the message has no metadata record".into(),
    })?;
    let bytes = read_data(segments, loc, META_PREFIX_LEN)?;
    MessageMeta::decode(&bytes).map_err(|e| ReadError::Corrupt {
        segment: loc.segment,
        offset: loc.offset,
        reason: format!("metadata does not decode: {e}"),
    })
}
