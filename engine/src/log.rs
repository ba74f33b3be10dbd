//! Segment files: naming, creation, scanning and recovery, and the append path.
//!
//! This is the only module that calls `sync_data`/`sync_dir` for segments (snapshots, the
//! dictionary files of `dict.rs` and salvage's rebuild sync their own files).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

use crate::backend::{Backend, BackendFile};
use crate::format::{
    FrameError, FrameHeader, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader, crc32c, frame_len,
};
use crate::record::{Record, kind};

pub fn segment_file_name(id: u64) -> String {
    format!("seg-{id:016x}.log")
}

pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One record as found by a scan.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub offset: u64,
    pub frame: FrameHeader,
    pub payload_crc_ok: bool,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// End of file, or zeros where the next record would be.
    Clean { offset: u64 },
    /// Bytes that are not a valid record.
    Bad { offset: u64, reason: String },
}

/// Reads framed records from `start` until the end of the file or the first invalid frame.
/// Records with a bad payload CRC stop the scan too (they are reported as `Bad`).
pub fn scan(file: &dyn BackendFile, start: u64) -> io::Result<(Vec<Scanned>, ScanEnd)> {
    let len = file.len()?;
    let mut out = Vec::new();
    let mut off = start;
    loop {
        if off + RECORD_HEADER_LEN as u64 > len {
            if off < len {
                let rest = file.view(off, (len - off) as usize)?;
                if rest.iter().any(|&b| b != 0) {
                    return Ok((
                        out,
                        ScanEnd::Bad { offset: off, reason: "partial record header at end of file".into() },
                    ));
                }
            }
            return Ok((out, ScanEnd::Clean { offset: off }));
        }
        let hv = file.view(off, RECORD_HEADER_LEN)?;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&hv);
        let frame = match FrameHeader::decode(&hb) {
            Ok(f) => f,
            Err(FrameError::Zero) => return Ok((out, ScanEnd::Clean { offset: off })),
            Err(e) => return Ok((out, ScanEnd::Bad { offset: off, reason: format!("{e:?} in record header") })),
        };
        let total = frame_len(frame.payload_len as usize) as u64;
        if off + total > len {
            return Ok((out, ScanEnd::Bad { offset: off, reason: "record runs past the end of the file".into() }));
        }
        let payload = file.view(off + RECORD_HEADER_LEN as u64, frame.payload_len as usize)?;
        let ok = crc32c(&payload) == frame.payload_crc;
        if !ok {
            return Ok((out, ScanEnd::Bad { offset: off, reason: "payload checksum mismatch".into() }));
        }
        out.push(Scanned { offset: off, frame, payload_crc_ok: ok });
        off += total;
    }
}

/// Looks for a valid COMMIT record of a batch later than `threshold` anywhere at or after
/// `from` (8-byte steps), in this file. Finding one proves that bytes before it were synced,
/// so a bad record before it is corruption, not a torn write.
pub fn find_later_commit(file: &dyn BackendFile, from: u64, threshold: u64) -> io::Result<Option<u64>> {
    let len = file.len()?;
    let mut off = from.next_multiple_of(RECORD_ALIGN as u64);
    while off + RECORD_HEADER_LEN as u64 <= len {
        let hv = file.view(off, RECORD_HEADER_LEN)?;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&hv);
        if let Ok(frame) = FrameHeader::decode(&hb)
            && frame.kind == kind::COMMIT
            && off + frame_len(frame.payload_len as usize) as u64 <= len
        {
            let payload = file.view(off + RECORD_HEADER_LEN as u64, frame.payload_len as usize)?;
            if crc32c(&payload) == frame.payload_crc
                && let Ok((Record::Commit { batch_seq, .. }, _)) = Record::decode(kind::COMMIT, &payload)
                && batch_seq > threshold
            {
                return Ok(Some(off));
            }
        }
        off += RECORD_ALIGN as u64;
    }
    Ok(None)
}

/// Open segment files, shared by the writer and readers, and the store's dictionaries: what
/// a reader needs to turn a blob's location into its bytes.
#[derive(Default)]
pub struct Segments {
    files: RwLock<BTreeMap<u64, Arc<dyn BackendFile>>>,
    dictionaries: crate::dict::Dictionaries,
}

impl Segments {
    /// The dictionaries codec-2 blobs are decompressed with.
    pub fn dictionaries(&self) -> &crate::dict::Dictionaries {
        &self.dictionaries
    }
    pub fn get(&self, id: u64) -> Option<Arc<dyn BackendFile>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
    pub fn insert(&self, id: u64, file: Arc<dyn BackendFile>) {
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(id, file);
    }
    pub fn remove(&self, id: u64) {
        self.files.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
    pub fn ids(&self) -> Vec<u64> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }
}

/// The writer's end of the log. Owned by the committer.
pub struct Writer {
    backend: Arc<dyn Backend>,
    pub segments: Arc<Segments>,
    pub segment: u64,
    file: Arc<dyn BackendFile>,
    /// Offset where the next record goes.
    pub end: u64,
    /// Reserved (fallocated) up to here.
    reserved: u64,
    pub next_lsn: u64,
    pub batch_seq: u64,
    pub max_segment_bytes: u64,
    /// Records in the active segment (for its SEAL).
    pub records_in_segment: u64,
    /// The active segment is sealed and the next one not yet created.
    sealed: bool,
}

/// Bytes reserved ahead of the write position, so a full disk shows up as a failed
/// reservation before any byte of a batch is written, not as a failing fsync.
const RESERVE_CHUNK: u64 = 8 << 20;

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: Arc<dyn Backend>,
        segments: Arc<Segments>,
        segment: u64,
        file: Arc<dyn BackendFile>,
        end: u64,
        next_lsn: u64,
        batch_seq: u64,
        max_segment_bytes: u64,
        records_in_segment: u64,
    ) -> Writer {
        Writer {
            backend,
            segments,
            segment,
            file,
            end,
            reserved: end,
            next_lsn,
            batch_seq,
            max_segment_bytes,
            records_in_segment,
            sealed: false,
        }
    }

    /// Creates segment `id` durably: temp file, header, sync, rename, directory sync.
    pub fn create_segment(backend: &dyn Backend, id: u64, base_lsn: u64) -> io::Result<Arc<dyn BackendFile>> {
        let tmp = format!("{}.tmp", segment_file_name(id));
        let _ = backend.remove(&tmp);
        let file = backend.create(&tmp)?;
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let header = SegmentHeader { segment_id: id, base_lsn, created_unix };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        backend.rename(&tmp, &segment_file_name(id))?;
        backend.sync_dir()?;
        Ok(file)
    }

    /// Seals the active segment and starts the next one, if the active one is full.
    pub fn roll_if_full(&mut self, incoming: u64) -> Result<(), WriteFailure> {
        if self.sealed {
            // An earlier roll sealed the segment but could not start the next one.
            return self.finish_roll();
        }
        let used = self.end - SEGMENT_HEADER_LEN as u64;
        if used == 0 || self.end + incoming <= self.max_segment_bytes {
            return Ok(());
        }
        self.seal_and_roll()
    }

    /// Seals the active segment, whatever it holds, and starts the next one. Opening a store
    /// whose active segment is of an older format version does this, so every record written
    /// by this version lands in a segment whose header says so.
    pub fn seal_and_roll(&mut self) -> Result<(), WriteFailure> {
        let mut seal = Vec::new();
        let lsn = self.next_lsn;
        let rec = Record::Seal { records: self.records_in_segment + 1, last_lsn: lsn };
        let mut payload = Vec::new();
        rec.encode_payload(&mut payload);
        crate::format::encode_frame(&mut seal, kind::SEAL, crate::format::Codec::None, lsn, 0, &[&payload]);
        self.write_and_sync(&seal)?;
        self.next_lsn += 1;
        self.records_in_segment += 1;
        self.sealed = true;
        self.finish_roll()
    }

    /// Starts the next segment; a full disk fails cleanly and the next batch tries again
    /// (nothing is ever written after the seal).
    fn finish_roll(&mut self) -> Result<(), WriteFailure> {
        match self.roll_after_seal() {
            Ok(()) => {
                self.sealed = false;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(WriteFailure::Clean(e)),
            Err(e) => Err(WriteFailure::Fatal(e)),
        }
    }

    /// Starts the next segment after the active one was sealed.
    pub fn roll_after_seal(&mut self) -> io::Result<()> {
        let id = self.segment + 1;
        let file = Self::create_segment(&*self.backend, id, self.next_lsn)?;
        self.segments.insert(id, file.clone());
        self.segment = id;
        self.file = file;
        self.end = SEGMENT_HEADER_LEN as u64;
        self.reserved = self.end;
        self.records_in_segment = 0;
        Ok(())
    }

    /// Appends `bytes` (whole records) at the end and makes them durable. On failure the
    /// file is cut back to where it was, so no partial batch stays behind to be mistaken
    /// for records later; if even that fails the caller must stop writing.
    pub fn write_and_sync(&mut self, bytes: &[u8]) -> Result<(), WriteFailure> {
        let need = self.end + bytes.len() as u64;
        if need > self.reserved {
            let want = (need - self.reserved).max(RESERVE_CHUNK);
            match self.file.reserve(self.reserved, want) {
                Ok(()) => self.reserved += want,
                Err(e) => return Err(WriteFailure::Clean(e)),
            }
        }
        if let Err(e) = self.file.write_all_at(bytes, self.end) {
            return match self.file.set_len(self.end).and_then(|()| self.file.sync_data()) {
                Ok(()) => Err(WriteFailure::Clean(e)),
                Err(_) => Err(WriteFailure::Fatal(e)),
            };
        }
        if let Err(e) = self.file.sync_data() {
            return Err(WriteFailure::Fatal(e));
        }
        self.end += bytes.len() as u64;
        Ok(())
    }

    pub fn file(&self) -> &Arc<dyn BackendFile> {
        &self.file
    }
}

/// How a write failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// Nothing of the batch is on disk (full disk, say); later writes may succeed.
    Clean(io::Error),
    /// The state of the disk is unknown (fsync failed): stop accepting writes.
    Fatal(io::Error),
}

impl From<io::Error> for WriteFailure {
    fn from(e: io::Error) -> Self {
        WriteFailure::Fatal(e)
    }
}
