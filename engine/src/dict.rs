//! Per-store zstd dictionaries (store format version 3): the `dict-*.zdict` files, the
//! registry readers decode codec-2 blobs with, and the sampler that trains a store's
//! dictionary from its own mail.
//!
//! Mail is many small messages, and zstd without a dictionary has little to learn from in a
//! 4 KB frame. A dictionary built into the binary would be trained on our test corpus; each
//! store trains its own instead, once, from the first messages it stores (see
//! [`Sampler`]), writes it durably, and only then compresses with it.
//!
//! ```text
//! dict-XXXXXXXX.zdict (8 lowercase hex digits: the dictionary id)
//!   0   8  magic "PLOGDICT"
//!   8   4  format version u32 (3)
//!  12   4  dictionary id u32 (equal to the id in the file name and in the zstd dictionary)
//!  16   4  body length u32
//!  20   4  CRC-32C of the body
//!  24   4  reserved, zero
//!  28   4  CRC-32C of bytes 0..28
//!  32   …  body: a zstd dictionary (magic 0xEC30A437 LE, then its Dictionary_ID LE = the id)
//! ```
//! Files are immutable and never deleted. Every frame compressed with a dictionary names it
//! in its frame header, so a blob finds its dictionary whatever the store's current one is.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use zstd::zstd_safe;

use crate::backend::Backend;
use crate::format::{FORMAT_VERSION, crc32c, le_u32};

pub const DICT_MAGIC: [u8; 8] = *b"PLOGDICT";
pub const DICT_HEADER_LEN: usize = 32;
/// The first id this store gives. RFC 8878 keeps dictionary ids below 2^15 for a registrar
/// (shared, public dictionaries); ours are private to one store.
pub const FIRST_DICT_ID: u32 = 0x8001;
/// Size of a trained dictionary. 32 KiB measured best per byte of mail on our corpus; larger
/// ones gain little for 4 KB messages and cost memory in every context that loads them.
pub const DICT_BYTES: usize = 32 << 10;
/// Largest dictionary body a file may announce: a damaged length cannot make a reader
/// allocate more.
pub const MAX_DICT_BODY: u32 = 1 << 20;
/// The zstd dictionary format's magic number (RFC 8878, section 5).
const ZSTD_DICT_MAGIC: u32 = 0xEC30_A437;

/// Messages sampled for training: at least this long (shorter ones teach nothing)...
pub const SAMPLE_MIN_MESSAGE: usize = 64;
/// ...at most this long (a big attachment is not what small mail looks like)...
pub const SAMPLE_MAX_MESSAGE: usize = 1 << 20;
/// ...and only their first 16 KiB kept (headers and the start of the text, the parts mail
/// shares).
pub const SAMPLE_PREFIX: usize = 16 << 10;

pub fn dict_file_name(id: u32) -> String {
    format!("dict-{id:08x}.zdict")
}

pub fn parse_dict_file_name(name: &str) -> Option<u32> {
    let hex = name.strip_prefix("dict-")?.strip_suffix(".zdict")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Encodes a dictionary file: header and body.
pub fn encode_file(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DICT_HEADER_LEN + body.len());
    out.extend_from_slice(&DICT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(body).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    let crc = crc32c(&out[0..28]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks a dictionary file named for `id` and returns its body (the zstd dictionary).
pub fn decode_file(bytes: &[u8], id: u32) -> Result<&[u8], String> {
    let h = bytes.get(..DICT_HEADER_LEN).ok_or("file is shorter than the 32-byte header")?;
    if h[0..8] != DICT_MAGIC {
        return Err("file does not start with the dictionary magic".into());
    }
    if crc32c(&h[0..28]) != le_u32(&h[28..32]) {
        return Err("header checksum mismatch".into());
    }
    let version = le_u32(&h[8..12]);
    if version != FORMAT_VERSION {
        return Err(format!("dictionary file of format version {version}, not {FORMAT_VERSION}"));
    }
    if le_u32(&h[12..16]) != id {
        return Err(format!("header names dictionary {:#x}", le_u32(&h[12..16])));
    }
    if h[24..28] != [0; 4] {
        return Err("reserved header bytes are not zero".into());
    }
    let len = le_u32(&h[16..20]);
    if len > MAX_DICT_BODY || bytes.len() - DICT_HEADER_LEN != len as usize {
        return Err(format!("body is {} bytes, the header says {len}", bytes.len() - DICT_HEADER_LEN));
    }
    let body = &bytes[DICT_HEADER_LEN..];
    if crc32c(body) != le_u32(&h[20..24]) {
        return Err("body checksum (CRC-32C) mismatch".into());
    }
    if body.len() < 8 || le_u32(&body[0..4]) != ZSTD_DICT_MAGIC {
        return Err("body is not a zstd dictionary".into());
    }
    if le_u32(&body[4..8]) != id {
        return Err(format!("the zstd dictionary inside names id {:#x}", le_u32(&body[4..8])));
    }
    Ok(body)
}

/// The dictionary id a zstd frame header names, if any.
pub fn frame_dict_id(frame: &[u8]) -> Option<u32> {
    zstd_safe::get_dict_id_from_frame(frame).map(|id| id.get())
}

/// Writes our id into a trained zstd dictionary's own header, so every frame compressed with
/// it names it (zstd writes the dictionary's Dictionary_ID into each frame header).
pub fn set_dict_id(body: &mut [u8], id: u32) -> Result<(), String> {
    if body.len() < 8 || le_u32(&body[0..4]) != ZSTD_DICT_MAGIC {
        return Err("trainer output is not a zstd dictionary".into());
    }
    body[4..8].copy_from_slice(&id.to_le_bytes());
    Ok(())
}

/// Writes a dictionary file durably: a temporary file, written and synced, renamed, the
/// directory synced. Only after this returns may any blob be compressed with it.
pub fn write_file(backend: &dyn Backend, id: u32, body: &[u8]) -> io::Result<()> {
    let name = dict_file_name(id);
    let tmp = format!("{name}.tmp");
    // A leftover from a failed attempt (recovery removes them at open too).
    let _ = backend.remove(&tmp);
    let f = backend.create(&tmp)?;
    f.write_all_at(&encode_file(id, body), 0)?;
    f.sync_data()?;
    backend.rename(&tmp, &name)?;
    backend.sync_dir()
}

/// One `dict-*.zdict` file as found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictFile {
    pub id: u32,
    pub name: String,
    /// Size of the whole file.
    pub file_bytes: u64,
    /// Why it cannot be used (bad checksum, not a zstd dictionary...); `None` when it loaded.
    pub problem: Option<String>,
}

/// A dictionary prepared for decompression.
pub struct Decoder {
    pub id: u32,
    pub ddict: zstd_safe::DDict<'static>,
}

/// A dictionary prepared for compression at one level.
pub struct Encoder {
    pub id: u32,
    pub level: i32,
    pub cdict: zstd_safe::CDict<'static>,
}

impl Encoder {
    pub fn new(id: u32, body: &[u8], level: i32) -> Option<Encoder> {
        zstd_safe::CDict::try_create(body, level).map(|cdict| Encoder { id, level, cdict })
    }
}

/// The dictionaries of a store, for every reader of its blobs: loaded from the data directory
/// at open (also by the read-only operator tools), and added to when the store trains one.
#[derive(Default)]
pub struct Dictionaries {
    inner: RwLock<DictsInner>,
}

#[derive(Default)]
struct DictsInner {
    decoders: BTreeMap<u32, Arc<Decoder>>,
    /// The body of each usable dictionary (the store prepares its encoder from it).
    bodies: BTreeMap<u32, Arc<[u8]>>,
    files: BTreeMap<u32, DictFile>,
}

impl Dictionaries {
    /// Loads every `dict-*.zdict` file of the directory. Never fails: a file that cannot be
    /// used is listed with its problem, and the blobs naming it fail to read, alone.
    pub fn load(&self, backend: &dyn Backend) -> io::Result<()> {
        for name in backend.list()? {
            let Some(id) = parse_dict_file_name(&name) else { continue };
            let loaded = backend.open(&name).and_then(|f| {
                let len = f.len()?;
                if len > u64::from(MAX_DICT_BODY) + DICT_HEADER_LEN as u64 {
                    return Ok((len, Err(format!("file is {len} bytes, larger than any dictionary"))));
                }
                Ok((len, Ok(f.view(0, len as usize)?.to_vec())))
            });
            let (file_bytes, problem) = match loaded {
                Err(e) => (0, Some(format!("cannot be read: {e}"))),
                Ok((len, Err(p))) => (len, Some(p)),
                Ok((len, Ok(bytes))) => match decode_file(&bytes, id) {
                    Err(p) => (len, Some(p)),
                    Ok(body) => match zstd_safe::DDict::try_create(body) {
                        None => (len, Some("zstd does not load the dictionary".into())),
                        Some(ddict) => {
                            self.add(id, Arc::new(Decoder { id, ddict }), body.into());
                            (len, None)
                        }
                    },
                },
            };
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            inner.files.insert(id, DictFile { id, name, file_bytes, problem });
        }
        Ok(())
    }

    /// Makes a dictionary available to readers (after its file is durable).
    pub(crate) fn add(&self, id: u32, decoder: Arc<Decoder>, body: Arc<[u8]>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.decoders.insert(id, decoder);
        let file_bytes = (DICT_HEADER_LEN + body.len()) as u64;
        inner.bodies.insert(id, body);
        inner.files.entry(id).or_insert(DictFile { id, name: dict_file_name(id), file_bytes, problem: None });
    }

    pub fn decoder(&self, id: u32) -> Option<Arc<Decoder>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).decoders.get(&id).cloned()
    }

    /// The body of a usable dictionary.
    pub fn body(&self, id: u32) -> Option<Arc<[u8]>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).bodies.get(&id).cloned()
    }

    /// Every dictionary file found (and every one written since), by id.
    pub fn files(&self) -> Vec<DictFile> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).files.values().cloned().collect()
    }

    /// The highest usable dictionary id: the one a store compresses with.
    pub fn newest_usable(&self) -> Option<u32> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).decoders.keys().next_back().copied()
    }

    /// The id the next trained dictionary gets: above every file found, usable or not, so an
    /// id is never given twice (a blob naming an id always means that one dictionary).
    pub fn next_id(&self) -> u32 {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.files.keys().next_back().map_or(FIRST_DICT_ID, |&id| id.saturating_add(1).max(FIRST_DICT_ID))
    }

    /// Why the dictionary `id` cannot be used, in words for an error message.
    pub fn why_unusable(&self, id: u32) -> String {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        match inner.files.get(&id) {
            Some(DictFile { name, problem: Some(p), .. }) => {
                format!("the body is compressed with dictionary {id:#x}, whose file {name} is unusable: {p}")
            }
            _ => {
                format!("the body is compressed with dictionary {id:#x}, whose file {} is missing", dict_file_name(id))
            }
        }
    }
}

/// Where a store's sampler stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainingState {
    /// Dictionaries are off (`Options::dictionary = false`), or the store found dictionary
    /// files it cannot use, or blobs naming a dictionary it lacks: it does not train (a new
    /// dictionary must never take the id of one that blobs may name).
    Off(String),
    /// Collecting samples.
    Sampling { samples: usize, bytes: usize },
    /// Training on a background thread.
    Training,
    /// The store compresses with this dictionary.
    Ready(u32),
    /// Every attempt failed; the store keeps compressing without a dictionary.
    Failed(String),
}

/// Training attempts per open: a failure (too few distinct samples, an I/O error) is retried
/// with fresh samples, then given up until the next open.
pub const MAX_TRAINING_ATTEMPTS: u32 = 3;

/// The samples a store collects while it has no dictionary.
pub struct Sampler {
    pub samples: Vec<Box<[u8]>>,
    pub bytes: usize,
    pub attempts: u32,
    pub state: TrainingState,
}

impl Sampler {
    pub fn new(state: TrainingState) -> Sampler {
        Sampler { samples: Vec::new(), bytes: 0, attempts: 0, state }
    }
}

/// Trains a dictionary from samples, with `id` written into it.
pub fn train(samples: &[Box<[u8]>], id: u32) -> Result<Vec<u8>, String> {
    let mut body = zstd::dict::from_samples(samples, DICT_BYTES).map_err(|e| format!("zstd training failed: {e}"))?;
    set_dict_id(&mut body, id)?;
    Ok(body)
}

/// The encoder a store compresses with, once it has one; shared by every thread preparing
/// messages.
#[derive(Default)]
pub struct Current {
    pub encoder: RwLock<Option<Arc<Encoder>>>,
    pub sampler: Mutex<Option<Sampler>>,
}

thread_local! {
    /// One compression context per thread, reused across messages and dictionaries.
    static CCTX: std::cell::RefCell<Option<zstd_safe::CCtx<'static>>> = const { std::cell::RefCell::new(None) };
    /// One decompression context per thread, for codec-2 blobs.
    static DCTX: std::cell::RefCell<Option<zstd_safe::DCtx<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses `raw` with a prepared dictionary (one zstd frame naming the dictionary).
pub fn compress(raw: &[u8], encoder: &Encoder) -> Result<Vec<u8>, String> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd_safe::CCtx::try_create();
        }
        let cctx = slot.as_mut().ok_or("zstd could not create a compression context")?;
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(raw.len()));
        cctx.compress_using_cdict(&mut out, raw, &encoder.cdict)
            .map_err(|code| format!("zstd compression failed: {}", zstd_safe::get_error_name(code)))?;
        Ok(out)
    })
}

/// Decompresses a frame compressed with `decoder`'s dictionary into `out` (a `Vec`'s spare
/// capacity, or a slice exactly as long as the body should be: a frame that decodes to more
/// fails), with this thread's context; returns the bytes written.
pub fn decompress_into<C: zstd_safe::WriteBuf + ?Sized>(
    data: &[u8],
    out: &mut C,
    decoder: &Decoder,
) -> Result<usize, String> {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd_safe::DCtx::try_create();
        }
        let dctx = slot.as_mut().ok_or("zstd could not create a decompression context")?;
        dctx.decompress_using_ddict(out, data, &decoder.ddict)
            .map_err(|code| format!("zstd data does not decompress: {}", zstd_safe::get_error_name(code)))
    })
}

/// Decompresses a codec-2 blob that must come out `raw_len` bytes long. Memory is bounded by
/// `raw_len` up to `bulk_max`, and grows with the output actually produced beyond.
pub fn decompress(data: &[u8], raw_len: u64, decoder: &Decoder, bulk_max: u64) -> Result<Vec<u8>, String> {
    let wrong_len = |got: usize| format!("zstd data decompresses to {got} bytes, not the {raw_len} recorded");
    if raw_len <= bulk_max {
        // One more byte of room than recorded: a longer output is then caught below.
        let mut out = Vec::with_capacity(raw_len as usize + 1);
        decompress_into(data, &mut out, decoder)?;
        if out.len() as u64 != raw_len {
            return Err(wrong_len(out.len()));
        }
        return Ok(out);
    }
    // Past the bulk limit: a streaming context with the dictionary, so a damaged length cannot
    // make this allocate more than the frame really holds.
    let mut dctx = zstd_safe::DCtx::try_create().ok_or("zstd could not create a decompression context")?;
    dctx.ref_ddict(&decoder.ddict)
        .map_err(|code| format!("zstd does not take the dictionary: {}", zstd_safe::get_error_name(code)))?;
    let mut out: Vec<u8> = Vec::with_capacity(raw_len.min(16 << 20) as usize);
    let mut input = zstd_safe::InBuffer::around(data);
    let mut chunk = vec![0u8; zstd_safe::DCtx::out_size()];
    loop {
        let mut output = zstd_safe::OutBuffer::around(&mut chunk[..]);
        let hint = dctx
            .decompress_stream(&mut output, &mut input)
            .map_err(|code| format!("zstd data does not decompress: {}", zstd_safe::get_error_name(code)))?;
        let produced = output.pos();
        out.extend_from_slice(&chunk[..produced]);
        if out.len() as u64 > raw_len {
            return Err(format!("zstd data decompresses to more than the {raw_len} bytes recorded"));
        }
        if hint == 0 {
            break;
        }
        if produced == 0 && input.pos() == data.len() {
            return Err("zstd data ends before its frame does".into());
        }
    }
    if input.pos() != data.len() {
        return Err("bytes after the zstd frame".into());
    }
    if out.len() as u64 != raw_len {
        return Err(wrong_len(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(dict_file_name(0x8001), "dict-00008001.zdict");
        assert_eq!(parse_dict_file_name("dict-00008001.zdict"), Some(0x8001));
        assert_eq!(parse_dict_file_name("dict-8001.zdict"), None);
        assert_eq!(parse_dict_file_name("dict-00008001.zdict.tmp"), None);
    }

    fn fake_body(id: u32) -> Vec<u8> {
        let mut b = ZSTD_DICT_MAGIC.to_le_bytes().to_vec();
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&[7u8; 100]);
        b
    }

    #[test]
    fn file_round_trip_and_every_check() {
        let body = fake_body(0x8001);
        let file = encode_file(0x8001, &body);
        assert_eq!(file.len(), DICT_HEADER_LEN + body.len());
        assert_eq!(decode_file(&file, 0x8001), Ok(&body[..]));
        assert!(decode_file(&file, 0x8002).unwrap_err().contains("names dictionary"));
        let mut bad = file.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decode_file(&bad, 0x8001).unwrap_err().contains("CRC-32C"));
        let mut bad = file.clone();
        bad[16] ^= 1;
        assert!(decode_file(&bad, 0x8001).unwrap_err().contains("header checksum"));
        assert!(decode_file(&file[..20], 0x8001).is_err());
        assert!(decode_file(&file[..file.len() - 1], 0x8001).is_err());
        let other = encode_file(0x8001, &fake_body(0x9999));
        assert!(decode_file(&other, 0x8001).unwrap_err().contains("inside names"));
    }

    #[test]
    fn next_id_is_above_every_file() {
        let d = Dictionaries::default();
        assert_eq!(d.next_id(), FIRST_DICT_ID);
        d.inner.write().unwrap().files.insert(
            0x8005,
            DictFile { id: 0x8005, name: dict_file_name(0x8005), file_bytes: 1, problem: Some("bad".into()) },
        );
        assert_eq!(d.next_id(), 0x8006);
        assert!(d.why_unusable(0x8005).contains("unusable: bad"));
        assert!(
            d.why_unusable(0x8001).contains("dict-00008001.zdict, is missing")
                || d.why_unusable(0x8001).contains("missing")
        );
    }
}
