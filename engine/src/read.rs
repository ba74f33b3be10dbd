//! Reading blob and metadata records back from segment files, checksum-verified.
//!
//! The store's read path and the operator tools (which read a store without opening it as a
//! `Store`, e.g. while a server holds it) both go through here.

use crate::backend::View;
use crate::error::ReadError;
use crate::format::{Codec, FrameHeader, RECORD_HEADER_LEN, crc32c};
use crate::log::Segments;
use crate::meta::MessageMeta;
use crate::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN};
use crate::state::{BlobEntry, Loc};

/// The data part of the BLOB or META record (whose fixed prefix is `prefix` bytes) at `loc`,
/// after checking the record's header and payload checksums. One view of the whole record,
/// no copy for memory-mapped segments.
pub fn read_data(segments: &Segments, loc: Loc, prefix: usize) -> Result<View, ReadError> {
    let corrupt =
        |offset: u64, reason: &str| ReadError::Corrupt { segment: loc.segment, offset, reason: reason.into() };
    let file = segments.get(loc.segment).ok_or_else(|| corrupt(loc.offset, "segment is gone"))?;
    let rec_start = loc
        .offset
        .checked_sub((RECORD_HEADER_LEN + prefix) as u64)
        .ok_or_else(|| corrupt(loc.offset, "data location is before any record"))?;
    let whole = RECORD_HEADER_LEN + prefix + loc.len as usize;
    let record = file.view(rec_start, whole).map_err(ReadError::Io)?;
    let mut hb = [0u8; RECORD_HEADER_LEN];
    hb.copy_from_slice(&record[..RECORD_HEADER_LEN]);
    let frame = FrameHeader::decode(&hb).map_err(|e| corrupt(rec_start, &format!("{e:?} in record header")))?;
    if frame.payload_len as usize != prefix + loc.len as usize {
        return Err(corrupt(rec_start, "record length differs from the index"));
    }
    if crc32c(&record[RECORD_HEADER_LEN..]) != frame.payload_crc {
        return Err(corrupt(rec_start, "payload checksum mismatch"));
    }
    Ok(record.narrow(RECORD_HEADER_LEN + prefix, whole))
}

/// A message body as appended (decompressed).
pub fn read_body(segments: &Segments, blob: &BlobEntry) -> Result<Vec<u8>, ReadError> {
    let data = read_data(segments, blob.data, BLOB_PREFIX_LEN)?;
    let corrupt = |reason: String| ReadError::Corrupt { segment: blob.data.segment, offset: blob.data.offset, reason };
    match Codec::from_u8(blob.codec) {
        Some(Codec::None) => Ok(data.to_vec()),
        Some(Codec::Zstd) => decompress(&data, blob.raw_len).map_err(corrupt),
        Some(Codec::ZstdDict) => {
            let decoder = dictionary_of(segments, &data).map_err(corrupt)?;
            crate::dict::decompress(&data, blob.raw_len, &decoder, BULK_MAX).map_err(corrupt)
        }
        None => Err(corrupt(format!("unknown codec {}", blob.codec))),
    }
}

/// A message body as appended (decompressed), in a shared buffer: what the cache of decoded
/// bodies keeps and readers render from, without a copy between them. A compressed body up to
/// the bulk limit is decoded straight into it.
pub fn read_body_shared(segments: &Segments, blob: &BlobEntry) -> Result<std::sync::Arc<[u8]>, ReadError> {
    if blob.raw_len > BULK_MAX || !matches!(Codec::from_u8(blob.codec), Some(Codec::Zstd | Codec::ZstdDict)) {
        return read_body(segments, blob).map(std::sync::Arc::from);
    }
    let data = read_data(segments, blob.data, BLOB_PREFIX_LEN)?;
    let corrupt = |reason: String| ReadError::Corrupt { segment: blob.data.segment, offset: blob.data.offset, reason };
    let mut body: std::sync::Arc<[u8]> = std::iter::repeat_n(0u8, blob.raw_len as usize).collect();
    let out = std::sync::Arc::get_mut(&mut body).expect("a buffer just made has no other owner");
    let written = if blob.codec == Codec::ZstdDict as u8 {
        let decoder = dictionary_of(segments, &data).map_err(corrupt)?;
        crate::dict::decompress_into(&data, out, &decoder)
    } else {
        with_dctx(|d| d.decompress_to_buffer(&data[..], out).map_err(|e| format!("zstd data does not decompress: {e}")))
            .unwrap_or_else(|| Err("zstd could not create a decompression context".into()))
    }
    .map_err(corrupt)?;
    if written as u64 != blob.raw_len {
        return Err(corrupt(format!("zstd data decompresses to {written} bytes, not the {} recorded", blob.raw_len)));
    }
    Ok(body)
}

/// The dictionary a codec-2 frame names in its header, or why it cannot be had.
pub fn dictionary_of(segments: &Segments, frame: &[u8]) -> Result<std::sync::Arc<crate::dict::Decoder>, String> {
    let id = crate::dict::frame_dict_id(frame)
        .ok_or("the body's codec says dictionary, but its zstd frame names no dictionary")?;
    segments.dictionaries().decoder(id).ok_or_else(|| segments.dictionaries().why_unusable(id))
}

/// The metadata record of a blob, decoded.
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

/// Up to this size, blobs are decompressed in one call with a reused per-thread context
/// (creating a zstd context costs more than decompressing a small message); larger ones
/// stream, so memory grows with the output actually produced.
const BULK_MAX: u64 = 64 << 20;

thread_local! {
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// `f` with this thread's decompression context (made on first use); `None` if zstd could
/// not make one.
fn with_dctx<T>(f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> T) -> Option<T> {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        slot.as_mut().map(f)
    })
}

/// Decompresses a zstd blob that must come out `raw_len` bytes long. Memory is bounded by
/// `raw_len` up to 64 MiB and grows with the output actually produced beyond (a damaged length
/// cannot make it allocate more).
pub fn decompress(data: &[u8], raw_len: u64) -> Result<Vec<u8>, String> {
    if raw_len <= BULK_MAX {
        // One more byte of room than recorded: a longer output is then caught below.
        if let Some(result) = with_dctx(|d| d.decompress(data, raw_len as usize + 1)) {
            let out = result.map_err(|e| format!("zstd data does not decompress: {e}"))?;
            if out.len() as u64 != raw_len {
                return Err(format!("zstd data decompresses to {} bytes, not the {raw_len} recorded", out.len()));
            }
            return Ok(out);
        }
    }
    use std::io::Read;
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|e| format!("zstd data does not decompress: {e}"))?;
    let mut out = Vec::with_capacity(raw_len.min(16 << 20) as usize);
    (&mut decoder)
        .take(raw_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd data does not decompress: {e}"))?;
    if out.len() as u64 != raw_len {
        return Err(format!("zstd data decompresses to {} bytes, not the {raw_len} recorded", out.len()));
    }
    Ok(out)
}
