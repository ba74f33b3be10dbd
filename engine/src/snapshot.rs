//! Index snapshots: the state archived with rkyv, so startup need not replay the whole log.
//!
//! ```text
//! snapshot file "index.snap":
//!   0  magic   "PLOGSNAP"
//!   8  version u32 (FORMAT_VERSION when written; 2 and 3 are read, their archives are alike)
//!  12  crc32c  u32 of the archive bytes
//!  16  length  u64 of the archive bytes
//!  24  reserved, 8 zero bytes (so the archive starts 16-byte aligned)
//!  32  archive (rkyv, validated with bytecheck before use)
//! ```
//! A snapshot is written to a temp file, synced, renamed over the old one, and the directory
//! synced. A snapshot that is missing, fails its CRC or validation, or points at a log
//! position that does not exist is ignored and the state is rebuilt from the log.

use crate::state::{Account, AccountId, State};
use std::collections::BTreeMap;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PLOGSNAP";
pub const SNAPSHOT_FILE: &str = "index.snap";
pub const SNAPSHOT_HEADER_LEN: usize = 32;

/// Where replay resumes after a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Position {
    pub segment: u64,
    /// Offset just past the last record the snapshot covers.
    pub offset: u64,
    pub next_lsn: u64,
    pub last_batch_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Snapshot {
    pub position: Position,
    pub state: State,
}

/// The logical part of the state, as carried by a CHECKPOINT record.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Logical {
    pub accounts: BTreeMap<AccountId, Account>,
    pub next_account: AccountId,
    pub last_uidvalidity: u32,
    pub kv: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    Short,
    BadMagic,
    UnsupportedVersion(u32),
    BadCrc,
    ReservedNotZero,
    Invalid(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Short => f.write_str("snapshot is shorter than its header says"),
            SnapshotError::BadMagic => f.write_str("snapshot does not start with the snapshot magic"),
            SnapshotError::UnsupportedVersion(v) => write!(f, "snapshot has unsupported format version {v}"),
            SnapshotError::BadCrc => f.write_str("snapshot checksum does not match"),
            SnapshotError::ReservedNotZero => f.write_str("snapshot header has non-zero reserved bytes"),
            SnapshotError::Invalid(e) => write!(f, "snapshot archive failed validation: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(snapshot).expect("snapshot serialization cannot fail");
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + archive.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&crate::format::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crate::format::crc32c(&archive).to_le_bytes());
    out.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&archive);
    out
}

/// Decodes a snapshot file's bytes. The archive is validated where it lies when `bytes` is
/// 16-byte aligned (as [`read_aligned`] returns them), else from an aligned copy.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let header = bytes.get(..SNAPSHOT_HEADER_LEN).ok_or(SnapshotError::Short)?;
    if header[0..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = crate::format::le_u32(&header[8..12]);
    if !crate::format::version_is_read(version) {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    if header[24..32].iter().any(|&b| b != 0) {
        return Err(SnapshotError::ReservedNotZero);
    }
    let crc = crate::format::le_u32(&header[12..16]);
    let len = usize::try_from(crate::format::le_u64(&header[16..24])).map_err(|_| SnapshotError::Short)?;
    let body = SNAPSHOT_HEADER_LEN
        .checked_add(len)
        .and_then(|end| bytes.get(SNAPSHOT_HEADER_LEN..end))
        .ok_or(SnapshotError::Short)?;
    if crate::format::crc32c(body) != crc {
        return Err(SnapshotError::BadCrc);
    }
    if (body.as_ptr() as usize).is_multiple_of(16) {
        return rkyv::from_bytes::<Snapshot, rkyv::rancor::Error>(body)
            .map_err(|e| SnapshotError::Invalid(e.to_string()));
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<Snapshot, rkyv::rancor::Error>(&aligned).map_err(|e| SnapshotError::Invalid(e.to_string()))
}

/// Reads a whole file into a 16-byte-aligned buffer, so a snapshot in it is validated in place.
pub fn read_aligned(file: &dyn crate::backend::BackendFile) -> std::io::Result<rkyv::util::AlignedVec<16>> {
    let len = usize::try_from(file.len()?).map_err(|_| std::io::Error::other("snapshot too large"))?;
    let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(len);
    buf.resize(len, 0);
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

pub fn encode_logical(state: &State) -> Vec<u8> {
    let logical = Logical {
        accounts: state.accounts.clone(),
        next_account: state.next_account,
        last_uidvalidity: state.last_uidvalidity,
        kv: state.kv.clone(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&logical).expect("checkpoint serialization cannot fail").to_vec()
}

pub fn decode_logical(bytes: &[u8]) -> Result<Logical, SnapshotError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Logical, rkyv::rancor::Error>(&aligned).map_err(|e| SnapshotError::Invalid(e.to_string()))
}
