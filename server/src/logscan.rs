//! Frame-by-frame reading of segment files for the operator tools.
//!
//! Unlike the engine's scan (which stops at the first bad frame, as recovery must), this one
//! goes on: a record whose payload fails its checksum is kept and marked, and after an
//! unreadable header it skips forward in 8-byte steps to the next frame whose header and
//! payload checksums are right, reporting the bytes it skipped.

use std::io;

use postlog_engine::backend::Backend;
use postlog_engine::format::{
    FrameError, FrameHeader, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader, crc32c, frame_len,
};
use postlog_engine::log::{parse_segment_file_name, segment_file_name};
use postlog_engine::record::{Record, kind};

/// One record as read.
#[derive(Debug, Clone)]
pub struct ScannedRecord {
    pub offset: u64,
    pub frame: FrameHeader,
    /// The payload matches the frame's checksum.
    pub crc_ok: bool,
    /// The payload decoded (from damaged bytes when `crc_ok` is false: then do not trust it).
    pub decoded: Result<Record, String>,
}

impl ScannedRecord {
    /// Offset just past the record's frame.
    pub fn end(&self) -> u64 {
        self.offset + frame_len(self.frame.payload_len as usize) as u64
    }
}

/// Bytes that are not records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ScannedSegment {
    pub id: u64,
    pub file: String,
    pub size: u64,
    pub header: Result<SegmentHeader, String>,
    pub records: Vec<ScannedRecord>,
    pub damage: Vec<Damage>,
    /// Offset just past the last readable record (the header's end if none).
    pub end: u64,
}

/// Segment ids in the directory, ascending.
pub fn segment_ids(backend: &dyn Backend) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = backend.list()?.iter().filter_map(|n| parse_segment_file_name(n)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Leftover temporary files (`*.tmp`), which recovery removes.
pub fn tmp_files(backend: &dyn Backend) -> io::Result<Vec<String>> {
    Ok(backend.list()?.into_iter().filter(|n| n.ends_with(".tmp")).collect())
}

/// Whether the frame at `off` has a valid header and payload checksum and fits the file.
fn valid_frame_at(bytes: &[u8], off: usize) -> bool {
    let Some(hb) = bytes.get(off..off + RECORD_HEADER_LEN) else { return false };
    let mut h = [0u8; RECORD_HEADER_LEN];
    h.copy_from_slice(hb);
    let Ok(frame) = FrameHeader::decode(&h) else { return false };
    let start = off + RECORD_HEADER_LEN;
    match bytes.get(start..start + frame.payload_len as usize) {
        Some(p) => off + frame_len(frame.payload_len as usize) <= bytes.len() && crc32c(p) == frame.payload_crc,
        None => false,
    }
}

/// The next offset at or after `from` (8-byte aligned) where a valid frame starts.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let mut off = from.next_multiple_of(RECORD_ALIGN);
    while off + RECORD_HEADER_LEN <= bytes.len() {
        if bytes[off..off + 4] == postlog_engine::format::RECORD_MAGIC && valid_frame_at(bytes, off) {
            return Some(off);
        }
        off += RECORD_ALIGN;
    }
    None
}

/// Reads every frame of segment `id`.
pub fn scan_segment(backend: &dyn Backend, id: u64) -> io::Result<ScannedSegment> {
    let name = segment_file_name(id);
    let file = backend.open(&name)?;
    let size = file.len()?;
    let view = if size > 0 { Some(file.view(0, size as usize)?) } else { None };
    let bytes: &[u8] = view.as_deref().unwrap_or(&[]);
    let header = match bytes.get(..SEGMENT_HEADER_LEN) {
        None => Err("the file is shorter than a segment header".to_string()),
        Some(h) => match SegmentHeader::decode(h) {
            Ok(h) if h.segment_id != id => Err(format!("the header names segment {}", h.segment_id)),
            Ok(h) => Ok(h),
            Err(e) => Err(format!("bad segment header: {e:?}")),
        },
    };
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    let mut end = SEGMENT_HEADER_LEN as u64;
    let len = bytes.len();
    while off < len {
        if off + RECORD_HEADER_LEN > len {
            if bytes[off..].iter().any(|&b| b != 0) {
                damage.push(Damage {
                    offset: off as u64,
                    len: (len - off) as u64,
                    reason: "partial record header at the end of the file".into(),
                });
            }
            break;
        }
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&bytes[off..off + RECORD_HEADER_LEN]);
        match FrameHeader::decode(&hb) {
            Ok(frame) => {
                let total = frame_len(frame.payload_len as usize);
                if off + total > len {
                    damage.push(Damage {
                        offset: off as u64,
                        len: (len - off) as u64,
                        reason: format!(
                            "{} record (LSN {}) runs past the end of the file",
                            kind::name(frame.kind),
                            frame.lsn
                        ),
                    });
                    break;
                }
                let payload = &bytes[off + RECORD_HEADER_LEN..off + RECORD_HEADER_LEN + frame.payload_len as usize];
                let crc_ok = crc32c(payload) == frame.payload_crc;
                let decoded = Record::decode(frame.kind, payload).map(|(r, _)| r).map_err(|e| e.to_string());
                records.push(ScannedRecord { offset: off as u64, frame, crc_ok, decoded });
                off += total;
                end = off as u64;
            }
            Err(e) => {
                let zero = e == FrameError::Zero;
                if zero && bytes[off..].iter().all(|&b| b == 0) {
                    // The end of the written log (the rest is reserved space).
                    break;
                }
                let reason =
                    if zero { "zeros where a record should be".to_string() } else { format!("{e:?} in record header") };
                match resync(bytes, off + RECORD_ALIGN) {
                    Some(next) => {
                        damage.push(Damage { offset: off as u64, len: (next - off) as u64, reason });
                        off = next;
                    }
                    None => {
                        let last_nonzero = bytes.iter().rposition(|&b| b != 0).map_or(off, |p| p + 1).max(off + 1);
                        damage.push(Damage {
                            offset: off as u64,
                            len: (last_nonzero - off) as u64,
                            reason: format!("{reason}; no readable record follows"),
                        });
                        break;
                    }
                }
            }
        }
    }
    Ok(ScannedSegment { id, file: name, size, header, records, damage, end })
}

/// A short description of a record's content, for people.
pub fn describe(rec: &Record) -> String {
    fn uids(r: &[(u32, u32)]) -> String {
        r.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") }).collect::<Vec<_>>().join(",")
    }
    match rec {
        Record::AccountCreate { account, name } => format!("account {account} {name:?}"),
        Record::AccountDelete { account } => format!("account {account}"),
        Record::MailboxCreate { mailbox, name, uidvalidity, special_use, modseq, .. } => {
            format!("mailbox {mailbox} {name:?} uidvalidity {uidvalidity} special-use {special_use} modseq {modseq}")
        }
        Record::MailboxRename { modseq, renames, .. } => {
            let r: Vec<String> = renames.iter().map(|(id, n)| format!("{id}->{n:?}")).collect();
            format!("{} modseq {modseq}", r.join(" "))
        }
        Record::MailboxDelete { mailbox, modseq, .. } => format!("mailbox {mailbox} modseq {modseq}"),
        Record::Subscribe { name, subscribed, .. } => format!("{name:?} {}", if *subscribed { "on" } else { "off" }),
        Record::Blob { blob, raw_len, .. } => format!("blob {blob} raw {raw_len} bytes"),
        Record::Meta { blob } => format!("blob {blob}"),
        Record::MessageAppend { mailbox, uid, modseq, blob, flags, keywords, thread, links, .. } => {
            let mut s = format!("mailbox {mailbox} uid {uid} modseq {modseq} blob {blob} flags {flags:#x}");
            if !keywords.is_empty() {
                s.push_str(&format!(" keywords {}", keywords.join(" ")));
            }
            s.push_str(&format!(" thread {thread}"));
            if !links.is_empty() {
                let keys: Vec<String> = links.iter().map(|k| format!("{k:016x}")).collect();
                s.push_str(&format!(" links {}", keys.join(",")));
            }
            s
        }
        Record::Flags { mailbox, modseq, op, flags, keywords, uids: u, .. } => {
            format!("mailbox {mailbox} uids {} {op:?} {flags:#x} {} modseq {modseq}", uids(u), keywords.join(" "))
        }
        Record::Expunge { mailbox, modseq, uids: u, .. } => {
            format!("mailbox {mailbox} uids {} modseq {modseq}", uids(u))
        }
        Record::Copy { from, to, modseq, first_uid, uids: u, .. } => {
            format!("mailbox {from} uids {} -> mailbox {to} from uid {first_uid} modseq {modseq}", uids(u))
        }
        Record::SpecialUse { mailbox, special_use, modseq, .. } => {
            format!("mailbox {mailbox} special-use {special_use} modseq {modseq}")
        }
        Record::Checkpoint(c) => format!("{} bytes of state", c.state.len()),
        Record::SegmentDrop { segment } => format!("segment {segment}"),
        Record::Commit { first_lsn, count, batch_seq, batch_end } => {
            format!("LSN {first_lsn}+{count} batch {batch_seq}{}", if *batch_end { " end" } else { "" })
        }
        Record::Seal { records, last_lsn } => format!("{records} records, last LSN {last_lsn}"),
        #[allow(unreachable_patterns)]
        other => kind::name(other.kind()).to_string(),
    }
}
