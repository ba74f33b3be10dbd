//! The bytes on disk: segment headers and record frames.
//!
//! See `docs/store-format.md` for the byte-by-byte description; the constants here are the
//! single source of truth for it and are asserted at compile time.
//!
//! ```text
//! segment file:  [segment header 64 B][record][record]...        (records 8-byte aligned)
//! record:        [frame header 32 B][payload (len B)][zero pad to 8]
//! ```

/// Version of the on-disk format, written into new segments, snapshots and dictionary files.
/// Bumped on any incompatible change. Version 2: message appends carry their thread id and
/// thread links; snapshots and checkpoints hold the thread tables. Version 3: blobs may be
/// compressed with a store dictionary (codec 2, `dict-*.zdict` files); records, snapshots
/// and checkpoints are laid out as in version 2 (see `docs/store-format.md`).
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version still read. A version 2 segment holds nothing a version 3 reader
/// would misread (version 3 only added codec 2 and the dictionary files), so a version 2
/// store opens as it is, writes version 3 segments from then on, and gains a dictionary later.
pub const MIN_READ_VERSION: u32 = 2;

/// Whether segments and snapshots of `version` are read.
pub const fn version_is_read(version: u32) -> bool {
    version >= MIN_READ_VERSION && version <= FORMAT_VERSION
}

pub const SEGMENT_MAGIC: [u8; 8] = *b"PLOGSEG\0";
pub const SEGMENT_HEADER_LEN: usize = 64;
pub const RECORD_MAGIC: [u8; 4] = *b"PLR1";
pub const RECORD_HEADER_LEN: usize = 32;
pub const RECORD_ALIGN: usize = 8;
/// Largest payload a record may carry. A frame announcing more is corrupt, whatever its CRC.
pub const MAX_PAYLOAD_LEN: u32 = 1 << 30;

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(RECORD_HEADER_LEN.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(RECORD_ALIGN.is_power_of_two());

/// CRC-32C (Castagnoli), the checksum of every header and payload.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Size of a whole record frame (header, payload, padding) for a payload of `len` bytes.
pub const fn frame_len(payload_len: usize) -> usize {
    let raw = RECORD_HEADER_LEN + payload_len;
    (raw + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    /// LSN of the first record written into this segment.
    pub base_lsn: u64,
    pub created_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderError {
    Short,
    BadMagic,
    BadCrc,
    UnsupportedVersion(u32),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_unix.to_le_bytes());
        let crc = crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        let b = b.get(..SEGMENT_HEADER_LEN).ok_or(SegmentHeaderError::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        if crc32c(&b[0..60]) != le_u32(&b[60..64]) {
            return Err(SegmentHeaderError::BadCrc);
        }
        let version = le_u32(&b[8..12]);
        if !version_is_read(version) || le_u32(&b[12..16]) as usize != SEGMENT_HEADER_LEN {
            return Err(SegmentHeaderError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            segment_id: le_u64(&b[16..24]),
            base_lsn: le_u64(&b[24..32]),
            created_unix: le_u64(&b[32..40]),
        })
    }
}

/// How a record's payload (or, for blobs, its data part) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Zstd = 1,
    /// zstd with one of the store's trained dictionaries (format version 3). The zstd frame
    /// header names the dictionary (its Dictionary_ID, equal to the id of a `dict-*.zdict`
    /// file): one codec value for every dictionary.
    ZstdDict = 2,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdDict),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
            Codec::ZstdDict => "zstd-dict",
        }
    }
}

/// The frame header of one record, as decoded from its 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub kind: u8,
    pub codec: u8,
    pub lsn: u64,
    pub account: u32,
    pub payload_crc: u32,
}

/// Why 32 bytes are not a valid frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// All zero: the end of the written log (or a hole a torn write left).
    Zero,
    BadMagic,
    BadHeaderCrc,
    /// Header CRC is right but a field is out of range.
    BadField,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        b[12] = self.kind;
        b[13] = self.codec;
        // b[14..16] reserved, zero.
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..28].copy_from_slice(&self.account.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c(&b[8..32]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> Result<FrameHeader, FrameError> {
        if b.iter().all(|&x| x == 0) {
            return Err(FrameError::Zero);
        }
        if b[0..4] != RECORD_MAGIC {
            return Err(FrameError::BadMagic);
        }
        if crc32c(&b[8..32]) != le_u32(&b[4..8]) {
            return Err(FrameError::BadHeaderCrc);
        }
        let h = FrameHeader {
            payload_len: le_u32(&b[8..12]),
            kind: b[12],
            codec: b[13],
            lsn: le_u64(&b[16..24]),
            account: le_u32(&b[24..28]),
            payload_crc: le_u32(&b[28..32]),
        };
        if h.payload_len > MAX_PAYLOAD_LEN || Codec::from_u8(h.codec).is_none() || b[14] != 0 || b[15] != 0 {
            return Err(FrameError::BadField);
        }
        Ok(h)
    }
}

/// Appends one framed record to `out`, which must already be 8-byte aligned in the file.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, codec: Codec, lsn: u64, account: u32, payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    let payload_len = u32::try_from(len).ok().filter(|&l| l <= MAX_PAYLOAD_LEN).expect("payload over MAX_PAYLOAD_LEN");
    let mut hasher = 0u32;
    for part in payload {
        hasher = crc32c::crc32c_append(hasher, part);
    }
    let header = FrameHeader { payload_len, kind, codec: codec as u8, lsn, account, payload_crc: hasher };
    let start = out.len();
    out.extend_from_slice(&header.encode());
    for part in payload {
        out.extend_from_slice(part);
    }
    out.resize(start + frame_len(len), 0);
}

pub fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trip_and_crc() {
        let h = SegmentHeader { segment_id: 7, base_lsn: 1234, created_unix: 99 };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(SegmentHeaderError::BadCrc));
    }

    /// Version 3 writes, versions 2 and 3 read, version 1 (and anything newer) is refused.
    #[test]
    fn segment_header_versions() {
        let h = SegmentHeader { segment_id: 7, base_lsn: 1234, created_unix: 99 };
        let b = h.encode();
        assert_eq!(le_u32(&b[8..12]), 3);
        let with_version = |v: u32| {
            let mut b = b;
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c(&b[0..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            SegmentHeader::decode(&b)
        };
        assert_eq!(with_version(2), Ok(h));
        assert_eq!(with_version(3), Ok(h));
        assert_eq!(with_version(1), Err(SegmentHeaderError::UnsupportedVersion(1)));
        assert_eq!(with_version(4), Err(SegmentHeaderError::UnsupportedVersion(4)));
    }

    #[test]
    fn frame_round_trip_and_padding() {
        let mut out = Vec::new();
        encode_frame(&mut out, 5, Codec::None, 42, 3, &[b"hello", b" world"]);
        assert_eq!(out.len(), frame_len(11));
        assert_eq!(out.len() % RECORD_ALIGN, 0);
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&out[..RECORD_HEADER_LEN]);
        let h = FrameHeader::decode(&hb).unwrap();
        assert_eq!((h.kind, h.lsn, h.account, h.payload_len), (5, 42, 3, 11));
        assert_eq!(h.payload_crc, crc32c(b"hello world"));
        hb[17] ^= 0x10;
        assert_eq!(FrameHeader::decode(&hb), Err(FrameError::BadHeaderCrc));
        assert_eq!(FrameHeader::decode(&[0u8; RECORD_HEADER_LEN]), Err(FrameError::Zero));
    }

    #[test]
    fn codecs_known_and_unknown() {
        assert_eq!(Codec::from_u8(2), Some(Codec::ZstdDict));
        assert_eq!(Codec::ZstdDict.name(), "zstd-dict");
        assert_eq!(Codec::from_u8(3), None);
        let mut out = Vec::new();
        encode_frame(&mut out, 7, Codec::ZstdDict, 1, 0, &[b"x"]);
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&out[..RECORD_HEADER_LEN]);
        assert_eq!(FrameHeader::decode(&hb).unwrap().codec, 2);
        // Codec 3 under a valid header CRC: a field out of range.
        hb[13] = 3;
        let crc = crc32c(&hb[8..32]);
        hb[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(FrameHeader::decode(&hb), Err(FrameError::BadField));
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
