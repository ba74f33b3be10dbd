//! The store: the public API, the committer (group commit) and the planning of operations.
//!
//! ```text
//!  caller threads                      committer thread                      disk
//!  ───────────────                     ─────────────────                     ────
//!  append(): hash, parse, compress ─┐
//!  store_flags() ───────────────────┼─► queue ─► plan batch against state ─► one write
//!  expunge() ───────────────────────┘            (+ overlay of the batch)     one fdatasync
//!        ▲                                                  │
//!        └──────── reply ◄── apply records to state ◄───────┘ (only after the sync)
//! ```
//! Readers take the state's read lock and read bodies from segment files (memory maps);
//! they never wait for the committer. A change becomes visible only once it is durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use sha2::Digest;

use crate::backend::{Backend, FileBackend};
use crate::error::{CommitError, OpenError, ReadError};
use crate::format::{Codec, RECORD_HEADER_LEN, encode_frame, frame_len};
use crate::log::{Segments, WriteFailure, Writer};
use crate::meta::MessageMeta;
use crate::record::{BLOB_PREFIX_LEN, FlagOp, META_PREFIX_LEN, Record, kind, ranges_iter, to_ranges};
use crate::recovery::{RecoveryReport, recover};
use crate::snapshot::{self, Position, SNAPSHOT_FILE};
use crate::state::{AccountId, BlobEntry, BlobId, DataLoc, Loc, Mailbox, MailboxId, MessageEntry, State, Uid, flag};
use crate::thread::ThreadId;

/// Tunables of a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Segments are sealed and a new one started past this size.
    pub max_segment_bytes: u64,
    /// Bodies at least this long are zstd-compressed (when that makes them smaller).
    pub compress_min_bytes: usize,
    /// The zstd level of bodies compressed without a dictionary (codec 1).
    pub zstd_level: i32,
    /// When bodies are compressed: on the caller's thread before the commit, or later by a
    /// background thread of low priority (see [`Compression`]).
    pub compression: Compression,
    /// With [`Compression::Background`]: once bodies waiting for compression add up to this
    /// many raw bytes, new ones are compressed before their commit again, which bounds the
    /// disk space the backlog takes.
    pub compress_backlog_max_bytes: u64,
    /// With [`Compression::Background`]: whether the store runs its compression thread. Off,
    /// the backlog is compressed only by [`Store::compress_backlog_now`] (tests, tools).
    pub compression_thread: bool,
    /// Bytes of decoded (decompressed) bodies kept for readers that read the same messages
    /// soon after each other (0: none).
    pub body_cache_bytes: usize,
    /// Train a dictionary from the store's first messages and compress with it (codec 2).
    /// Off, the store compresses without one; blobs already written with one still read.
    pub dictionary: bool,
    /// Train once this many messages were sampled...
    pub dictionary_min_samples: usize,
    /// ...holding at least this many bytes.
    pub dictionary_min_bytes: usize,
    /// The zstd level of bodies compressed with the dictionary (codec 2). With a dictionary,
    /// level -1 is faster than level 1 without one, both ways, and smaller (docs/configuration.md).
    pub dictionary_zstd_level: i32,
    /// Write a snapshot after this many bytes of log since the last one.
    pub snapshot_every_bytes: u64,
    /// Most bytes of records one group commit gathers.
    pub max_batch_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_segment_bytes: 256 << 20,
            compress_min_bytes: 512,
            zstd_level: 1,
            compression: Compression::Inline,
            compress_backlog_max_bytes: 1 << 30,
            compression_thread: true,
            body_cache_bytes: 64 << 20,
            dictionary: true,
            dictionary_min_samples: 1000,
            dictionary_min_bytes: 2 << 20,
            dictionary_zstd_level: -1,
            snapshot_every_bytes: 512 << 20,
            max_batch_bytes: 32 << 20,
        }
    }
}

/// When message bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// On the appending thread, before the commit: the body is stored compressed at once.
    Inline,
    /// After the commit: the body is stored as it came and a background thread (at the lowest
    /// CPU priority, so it runs when the cores are not busy with appends) writes a compressed
    /// copy later (a BLOB record for the same blob), which compaction then makes the only one.
    /// Appends cost less CPU and wait less; the log writes the body twice. Bodies waiting are
    /// found again at open.
    Background,
}

/// Where one appended copy of a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub uidvalidity: u32,
    pub uid: Uid,
    pub modseq: u64,
    /// The thread the message joined or started in that account.
    pub thread: ThreadId,
}

/// One destination of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendTarget {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub flags: u8,
    pub keywords: Vec<String>,
    /// Unix seconds.
    pub internal_date: i64,
}

/// A message made ready for the committer: hashed, parsed and compressed on the caller's
/// thread, so the committer only copies bytes (and looks its thread keys up).
pub struct PreparedMessage {
    hash: [u8; 32],
    raw_len: u64,
    codec: Codec,
    stored: Arc<[u8]>,
    meta: Arc<[u8]>,
    /// Hashes of the message-ids it names (`crate::thread::keys`), own id first.
    thread_keys: Box<[u64]>,
}

impl PreparedMessage {
    /// Prepares a message without a dictionary (codec 1 or 0), for callers without a store.
    /// With a store, [`Store::prepare`] uses (and trains) the store's dictionary.
    pub fn new(raw: &[u8], options: &Options) -> PreparedMessage {
        PreparedMessage::build(raw, options, None)
    }

    fn build(raw: &[u8], options: &Options, encoder: Option<&crate::dict::Encoder>) -> PreparedMessage {
        let hash: [u8; 32] = sha2::Sha256::digest(raw).into();
        let parsed = crate::meta::parse(raw);
        let thread_keys = crate::thread::keys(&parsed).into_boxed_slice();
        let meta = parsed.encode();
        let deferred = options.compression == Compression::Background;
        let compressed = if deferred { None } else { compress_body(raw, options, encoder) };
        let (codec, stored) = compressed.unwrap_or_else(|| (Codec::None, raw.to_vec()));
        PreparedMessage {
            hash,
            raw_len: raw.len() as u64,
            codec,
            stored: stored.into(),
            meta: meta.into(),
            thread_keys,
        }
    }

    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// The thread keys of the message (see `crate::thread`).
    pub fn thread_keys(&self) -> &[u64] {
        &self.thread_keys
    }

    /// How the body is stored: 0 as is, 1 zstd, 2 zstd with the store's dictionary.
    pub fn codec(&self) -> u8 {
        self.codec as u8
    }

    /// Bytes the body takes in its BLOB record.
    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }
}

/// Bodies up to this size are compressed with the store's dictionary (at its level, -1 by
/// default); larger ones without it, at `zstd_level`. A dictionary helps small messages, and
/// zstd's negative levels do not entropy-code literals, which left base64 attachments (the
/// bulk of large mail) as big as they came.
const DICTIONARY_MAX_BODY: usize = 64 << 10;

/// A body compressed as the store stores it: with the dictionary up to
/// [`DICTIONARY_MAX_BODY`], else at `zstd_level`; `None` when it is too small to compress or
/// zstd does not make it smaller (it is then stored as it came). Used at append and by the
/// background compression, so both write the same.
fn compress_body(raw: &[u8], options: &Options, encoder: Option<&crate::dict::Encoder>) -> Option<(Codec, Vec<u8>)> {
    if raw.len() < options.compress_min_bytes {
        return None;
    }
    let compressed = match encoder.filter(|_| raw.len() <= DICTIONARY_MAX_BODY) {
        Some(e) => crate::dict::compress(raw, e).ok().map(|c| (Codec::ZstdDict, c)),
        None => compress(raw, options.zstd_level).ok().map(|c| (Codec::Zstd, c)),
    };
    compressed.filter(|(_, c)| c.len() < raw.len())
}

/// A blob copied forward by compaction, its bytes exactly as stored.
pub(crate) struct Relocation {
    pub blob: BlobId,
    pub data: Arc<[u8]>,
    pub codec: Codec,
    pub meta: Option<Arc<[u8]>>,
}

thread_local! {
    /// One zstd context per thread (and level), reused across messages.
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
}

pub(crate) fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("set above");
        c.compress(raw)
    })
}

/// Result of a flag change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// MODSEQ given to the changed messages (0 if nothing changed).
    pub modseq: u64,
    /// UIDs whose flags changed.
    pub changed: Vec<Uid>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE.
    pub failed: Vec<Uid>,
}

/// Result of a copy or move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOutcome {
    pub uidvalidity: u32,
    /// (source UID, new UID) in ascending source order.
    pub pairs: Vec<(Uid, Uid)>,
    pub modseq: u64,
}

/// What changed in a mailbox since a MODSEQ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub highest_modseq: u64,
    /// Messages (still present) whose MODSEQ is above the one asked about.
    pub changed: Vec<MessageEntry>,
    /// UIDs expunged after the MODSEQ asked about.
    pub expunged: Vec<Uid>,
}

/// A mailbox as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: MailboxId,
    pub name: String,
    pub special_use: u8,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: Uid,
    pub highest_modseq: u64,
    pub messages: u32,
    pub unseen: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub transactions: AtomicU64,
    pub bytes_written: AtomicU64,
    pub sync_nanos: AtomicU64,
    /// Reads of compressed bodies answered from the cache of decoded bodies, and not.
    pub body_cache_hits: AtomicU64,
    pub body_cache_misses: AtomicU64,
}

enum Op {
    CreateAccount {
        name: String,
        mailboxes: Vec<(String, u8)>,
    },
    DeleteAccount {
        account: AccountId,
    },
    CreateMailbox {
        account: AccountId,
        name: String,
        special_use: u8,
    },
    RenameMailbox {
        account: AccountId,
        from: String,
        to: String,
    },
    DeleteMailbox {
        account: AccountId,
        name: String,
    },
    Subscribe {
        account: AccountId,
        name: String,
        on: bool,
    },
    SetSpecialUse {
        account: AccountId,
        name: String,
        special_use: u8,
    },
    /// One or many messages, each to one or many mailboxes, in one transaction (with the
    /// key-value writes of `side`, if any).
    Append {
        items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)>,
        save_date: i64,
        side: Option<SideWrites>,
    },
    Store {
        account: AccountId,
        mailbox: MailboxId,
        uids: Vec<Uid>,
        op: FlagOp,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Expunge {
        account: AccountId,
        mailbox: MailboxId,
        uids: Option<Vec<Uid>>,
    },
    Copy {
        account: AccountId,
        from: MailboxId,
        to: MailboxId,
        uids: Vec<Uid>,
        is_move: bool,
        save_date: i64,
    },
    /// Sets (`Some`) or deletes (`None`) keys, all or nothing. With `expect`, each key must
    /// currently hold the given value (`None`: must be absent), else `Conflict`.
    Kv {
        writes: Vec<(String, Option<Vec<u8>>)>,
        expect: Vec<(String, Option<Vec<u8>>)>,
    },
    Checkpoint,
    Relocate {
        from_segment: u64,
        blobs: Vec<Relocation>,
    },
    DropSegment {
        segment: u64,
    },
    /// Compressed copies of blobs stored as they came (`Compression::Background`).
    Recompress {
        blobs: Vec<crate::background::Compressed>,
    },
    Snapshot,
}

/// Key-value writes committed in the same transaction as an append, whose values may name
/// where the appended copies went (the outbound queue records the UID of its copy this way).
pub struct SideWrites {
    /// The keys written, known before the commit (they are claimed like [`Store::kv_write`]'s).
    pub keys: Vec<String>,
    /// Given, per message, where its copies went (as [`Store::append_many`] returns it), the
    /// value of each key in `keys` order (`None` deletes the key). Called once, on the
    /// committer thread, while the transaction is built: keep it short.
    #[allow(clippy::type_complexity)]
    pub values: Box<dyn Fn(&[Vec<Appended>]) -> Vec<Option<Vec<u8>>> + Send + Sync>,
}

impl fmt::Debug for SideWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideWrites").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// What an operation returns.
#[derive(Debug, Clone)]
enum Outcome {
    Account(AccountId),
    Mailbox(MailboxId),
    Unit,
    Appended(Vec<Vec<Appended>>),
    Stored(StoreOutcome),
    Expunged(Vec<Uid>, u64),
    Copied(CopyOutcome),
    /// Compressed copies committed (told apart from the store's other work).
    Recompressed,
}

/// Where the committer sends an operation's result: a blocked thread, or an awaiting task.
enum Reply {
    Blocking(std::sync::mpsc::SyncSender<Result<Outcome, CommitError>>),
    Async(tokio::sync::oneshot::Sender<Result<Outcome, CommitError>>),
}

impl Reply {
    /// Hands the result over; `Err` if the caller is gone (nothing to do then).
    fn send(self, result: Result<Outcome, CommitError>) -> Result<(), ()> {
        match self {
            Reply::Blocking(tx) => tx.send(result).map_err(|_| ()),
            Reply::Async(tx) => tx.send(result).map_err(|_| ()),
        }
    }
}

struct Request {
    op: Op,
    reply: Reply,
}

/// The records of one planned transaction.
/// A record and, for BLOB and META records, the data that follows its payload prefix.
type RecordWithData = (Record, Option<(Codec, Arc<[u8]>)>);

struct Txn {
    records: Vec<RecordWithData>,
    outcome: Outcome,
    /// Segment files to unlink once the transaction is durable.
    unlink: Vec<u64>,
}

struct Queue {
    requests: VecDeque<Request>,
    closing: bool,
}

struct Inner {
    backend: Arc<dyn Backend>,
    options: Options,
    state: RwLock<State>,
    segments: Arc<Segments>,
    queue: Mutex<Queue>,
    wake: Condvar,
    stopped: Mutex<Option<String>>,
    watchers: Mutex<HashMap<AccountId, tokio::sync::watch::Sender<u64>>>,
    stats: Stats,
    recovery: RecoveryReport,
    /// Blobs stored as they came, waiting for background compression.
    backlog: crate::background::Backlog,
    /// The last decoded bodies.
    bodies: crate::cache::BodyCache,
    /// When the store was opened, and nanoseconds after it of the last commit of anything
    /// but compressed copies: background compression waits for a quiet moment.
    opened: std::time::Instant,
    last_foreground_commit: AtomicU64,
    dict: Arc<DictShared>,
}

impl Inner {
    fn submit(&self, op: Op) -> Result<Outcome, CommitError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.enqueue(op, Reply::Blocking(tx))?;
        rx.recv().unwrap_or(Err(CommitError::Closed))
    }

    fn enqueue(&self, op: Op, reply: Reply) -> Result<(), CommitError> {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.closing {
                return Err(CommitError::Closed);
            }
            q.requests.push_back(Request { op, reply });
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Compresses one chunk of the backlog and commits the copies. `Ok(false)` when the
    /// backlog was empty.
    fn compress_chunk(&self, wait: bool) -> Result<bool, CommitError> {
        let Some(chunk) = self.backlog.take(wait) else { return Ok(false) };
        // With the store's dictionary once it has one, as an append would.
        let encoder = self.dict.encoder.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::new();
        for &(blob, _) in &chunk {
            let from = {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                match st.blobs.get(&blob) {
                    Some(b) if b.refs > 0 && b.codec == Codec::None as u8 => b.data,
                    _ => continue,
                }
            };
            // A segment compacted away meanwhile: the blob was queued again where it went.
            let Ok(raw) = crate::read::read_data(&self.segments, from, crate::record::BLOB_PREFIX_LEN) else {
                continue;
            };
            if let Some((codec, c)) = compress_body(&raw, &self.options, encoder.as_deref()) {
                out.push(crate::background::Compressed { blob, from, codec, data: c.into() });
            }
        }
        let result = if out.is_empty() { Ok(Outcome::Unit) } else { self.submit(Op::Recompress { blobs: out }) };
        match result {
            Ok(_) => {
                self.backlog.finished(&chunk);
                Ok(true)
            }
            Err(e @ CommitError::DiskFull) | Err(e @ CommitError::Io(_)) => {
                self.backlog.give_back(chunk);
                Err(e)
            }
            Err(e) => {
                self.backlog.finished(&chunk);
                Err(e)
            }
        }
    }
}

/// How long the store must have committed nothing but compressed copies before the
/// background thread compresses (more): bursts of appends then run without it, and the bodies
/// they leave are compressed in the next pause.
const COMPRESS_AFTER_QUIET: std::time::Duration = std::time::Duration::from_millis(200);

/// The background compression thread: compresses the backlog while the store is open, in
/// quiet moments, on the lowest CPU priority.
fn compressor(inner: Arc<Inner>) {
    crate::background::lower_priority();
    loop {
        let since = inner
            .opened
            .elapsed()
            .saturating_sub(std::time::Duration::from_nanos(inner.last_foreground_commit.load(Ordering::Relaxed)));
        if since < COMPRESS_AFTER_QUIET && !inner.backlog.is_closing() {
            std::thread::sleep(COMPRESS_AFTER_QUIET - since);
            continue;
        }
        match inner.compress_chunk(true) {
            Ok(true) => {}
            Ok(false) => return,
            // A full disk, say: try again a little later.
            Err(CommitError::DiskFull) | Err(CommitError::Io(_)) => {
                std::thread::sleep(std::time::Duration::from_secs(1))
            }
            Err(_) => return,
        }
    }
}

/// The store's dictionary as the preparing threads and the trainer share it.
struct DictShared {
    backend: Arc<dyn Backend>,
    segments: Arc<Segments>,
    min_samples: usize,
    min_bytes: usize,
    level: i32,
    /// The encoder of the current dictionary, once its file is durable.
    encoder: RwLock<Option<Arc<crate::dict::Encoder>>>,
    sampler: Mutex<crate::dict::Sampler>,
    trainer: Mutex<Option<JoinHandle<()>>>,
    /// Set when the store closes: no training starts after (it would write into a directory
    /// whose lock is let go).
    closed: std::sync::atomic::AtomicBool,
}

impl DictShared {
    fn state(&self) -> crate::dict::TrainingState {
        self.sampler.lock().unwrap_or_else(|e| e.into_inner()).state.clone()
    }

    /// Keeps a copy of the start of `raw` while the store has no dictionary; past the
    /// threshold, hands the samples to a training thread.
    fn offer(self: &Arc<Self>, raw: &[u8]) {
        use crate::dict::{SAMPLE_MAX_MESSAGE, SAMPLE_MIN_MESSAGE, SAMPLE_PREFIX, TrainingState};
        if !(SAMPLE_MIN_MESSAGE..=SAMPLE_MAX_MESSAGE).contains(&raw.len()) {
            return;
        }
        let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(sampler.state, TrainingState::Sampling { .. }) || self.closed.load(Ordering::Acquire) {
            return;
        }
        let sample: Box<[u8]> = raw[..raw.len().min(SAMPLE_PREFIX)].into();
        sampler.bytes += sample.len();
        sampler.samples.push(sample);
        sampler.state = TrainingState::Sampling { samples: sampler.samples.len(), bytes: sampler.bytes };
        if sampler.samples.len() < self.min_samples || sampler.bytes < self.min_bytes {
            return;
        }
        let samples = std::mem::take(&mut sampler.samples);
        sampler.bytes = 0;
        sampler.attempts += 1;
        sampler.state = TrainingState::Training;
        // The sampler's lock is held until the thread's handle is stored, so a closing store
        // (which sets `closed` under it) either stops this or finds the handle to join.
        let shared = self.clone();
        let spawned = std::thread::Builder::new().name("postlog-dict-train".into()).spawn(move || {
            let outcome = shared.train_and_publish(samples);
            let mut sampler = shared.sampler.lock().unwrap_or_else(|e| e.into_inner());
            sampler.state = match outcome {
                Ok(id) => TrainingState::Ready(id),
                Err(_) if sampler.attempts < crate::dict::MAX_TRAINING_ATTEMPTS => {
                    TrainingState::Sampling { samples: 0, bytes: 0 }
                }
                Err(e) => TrainingState::Failed(e),
            };
        });
        let mut trainer = self.trainer.lock().unwrap_or_else(|e| e.into_inner());
        match spawned {
            // The previous attempt's thread is past its last use of the sampler (it set the
            // state that let this attempt start), so joining it cannot wait on this lock.
            Ok(handle) => {
                if let Some(old) = trainer.replace(handle) {
                    let _ = old.join();
                }
            }
            Err(e) => sampler.state = TrainingState::Failed(format!("cannot start the training thread: {e}")),
        }
    }

    /// Trains, writes the file durably, makes it readable, and only then lets appends use it:
    /// no blob is compressed with a dictionary whose file could be lost in a crash.
    fn train_and_publish(&self, samples: Vec<Box<[u8]>>) -> Result<u32, String> {
        let dicts = self.segments.dictionaries();
        let id = dicts.next_id();
        let body = crate::dict::train(&samples, id)?;
        drop(samples);
        let decoder = zstd::zstd_safe::DDict::try_create(&body).ok_or("zstd does not load the trained dictionary")?;
        let encoder =
            crate::dict::Encoder::new(id, &body, self.level).ok_or("zstd does not load the trained dictionary")?;
        crate::dict::write_file(&*self.backend, id, &body)
            .map_err(|e| format!("cannot write {}: {e}", crate::dict::dict_file_name(id)))?;
        dicts.add(id, Arc::new(crate::dict::Decoder { id, ddict: decoder }), body.into());
        *self.encoder.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(encoder));
        Ok(id)
    }

    fn join_trainer(&self) {
        {
            // Under the sampler's lock, so no training starts between this and the join.
            let _sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Release);
        }
        let handle = self.trainer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// A mailbox store. Cheap to clone; all clones share one committer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    committer: Arc<CommitterHandle>,
}

/// Stops the committer when the last handle of a store goes away.
struct CommitterHandle {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
    compressor: Mutex<Option<JoinHandle<()>>>,
}

impl CommitterHandle {
    /// Stops the background compression (what it has not done is queued again at open).
    fn stop_compressor(&self) {
        self.inner.backlog.close();
        if let Some(h) = self.compressor.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }

    fn stop(&self) {
        self.stop_compressor();
        {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.closing = true;
        }
        self.inner.wake.notify_all();
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        // A dictionary being trained is written before the directory's lock is let go.
        self.inner.dict.join_trainer();
    }
}

impl Drop for CommitterHandle {
    fn drop(&mut self) {
        self.stop();
        self.inner.backend.unlock();
    }
}

/// The store's dictionary at open: the newest usable one, or a sampler to train one.
fn dictionary_at_open(
    backend: &Arc<dyn Backend>,
    segments: &Arc<Segments>,
    state: &State,
    options: &Options,
) -> DictShared {
    use crate::dict::{Sampler, TrainingState};
    let dicts = segments.dictionaries();
    let mut encoder = None;
    let training = if !options.dictionary {
        TrainingState::Off("dictionaries are turned off".into())
    } else if let Some(id) = dicts.newest_usable() {
        encoder = dicts.body(id).and_then(|body| crate::dict::Encoder::new(id, &body, options.dictionary_zstd_level));
        match encoder {
            Some(_) => TrainingState::Ready(id),
            None => TrainingState::Failed(format!("zstd does not load dictionary {id:#x} for compression")),
        }
    } else if let Some(f) = dicts.files().into_iter().find(|f| f.problem.is_some()) {
        // Its blobs fail to read until the file is restored; a new dictionary meanwhile would
        // only add to what depends on files.
        TrainingState::Off(format!(
            "dictionary file {} is unusable ({}); not training another",
            f.name,
            f.problem.unwrap_or_default()
        ))
    } else if state.blobs.values().any(|b| b.codec == Codec::ZstdDict as u8) {
        TrainingState::Off("blobs are compressed with a dictionary whose file is missing; not training another".into())
    } else {
        TrainingState::Sampling { samples: 0, bytes: 0 }
    };
    DictShared {
        backend: backend.clone(),
        segments: segments.clone(),
        min_samples: options.dictionary_min_samples,
        min_bytes: options.dictionary_min_bytes,
        level: options.dictionary_zstd_level,
        encoder: RwLock::new(encoder.map(Arc::new)),
        sampler: Mutex::new(Sampler::new(training)),
        trainer: Mutex::new(None),
        closed: std::sync::atomic::AtomicBool::new(false),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Checks a mailbox name: UTF-8, '/'-separated, no empty components, no control characters.
/// Returns the canonical form ("INBOX" whatever its case).
pub fn canonical_mailbox_name(name: &str) -> Result<String, CommitError> {
    let bad = || CommitError::BadMailboxName(name.chars().take(100).collect());
    if name.is_empty() || name.len() > 1024 {
        return Err(bad());
    }
    if name.split('/').any(|c| c.is_empty() || c.len() > 255) {
        return Err(bad());
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(bad());
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    if let Some(rest) = name.get(..6).filter(|p| p.eq_ignore_ascii_case("INBOX/")) {
        let _ = rest;
        return Ok(format!("INBOX/{}", &name[6..]));
    }
    Ok(name.to_string())
}

fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(i, _)| &name[..i])
}

impl Store {
    /// Opens the store in `dir`, creating it if empty, recovering after a crash if needed.
    pub fn open(dir: &Path, options: Options) -> Result<Store, OpenError> {
        let backend = match FileBackend::open(dir) {
            Ok(Ok(b)) => b,
            Ok(Err(locked)) => return Err(OpenError::Locked { dir: locked.0.display().to_string() }),
            Err(source) => {
                return Err(OpenError::Io { what: format!("open the data directory {}", dir.display()), source });
            }
        };
        Self::open_backend(Arc::new(backend), options)
    }

    pub fn open_backend(backend: Arc<dyn Backend>, options: Options) -> Result<Store, OpenError> {
        let rec = recover(&*backend, false)?;
        let io = |what: &str| {
            let what = what.to_string();
            move |source| OpenError::Io { what, source }
        };
        let (segment, file, end, sealed, records, version) = match rec.active {
            Some(a) => (a.id, a.file, a.end, a.sealed, a.records, a.version),
            None => {
                let file = Writer::create_segment(&*backend, 1, 1).map_err(io("create the first segment"))?;
                rec.segments.insert(1, file.clone());
                (1, file, crate::format::SEGMENT_HEADER_LEN as u64, false, 0, crate::format::FORMAT_VERSION)
            }
        };
        let next_lsn = rec.next_lsn.max(1);
        let mut writer = Writer::new(
            backend.clone(),
            rec.segments.clone(),
            segment,
            file,
            end,
            next_lsn,
            rec.batch_seq,
            options.max_segment_bytes,
            records,
        );
        if sealed {
            // The last segment was sealed: start a fresh one.
            writer.max_segment_bytes = 0;
            writer.roll_after_seal().map_err(io("start a new segment"))?;
            writer.max_segment_bytes = options.max_segment_bytes;
        } else if version < crate::format::FORMAT_VERSION {
            // A segment of an older version (a version 2 store) gets no record of this one:
            // its header would not describe them (codec 2 is unknown to version 2).
            writer.seal_and_roll().map_err(|e| match e {
                crate::log::WriteFailure::Clean(source) | crate::log::WriteFailure::Fatal(source) => {
                    OpenError::Io { what: "seal the version 2 segment and start a new one".into(), source }
                }
            })?;
        }
        let dict = Arc::new(dictionary_at_open(&backend, &rec.segments, &rec.state, &options));
        let body_cache_bytes = options.body_cache_bytes;
        let inner = Arc::new(Inner {
            backend,
            dict,
            options,
            state: RwLock::new(rec.state),
            segments: rec.segments,
            queue: Mutex::new(Queue { requests: VecDeque::new(), closing: false }),
            wake: Condvar::new(),
            stopped: Mutex::new(None),
            watchers: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            recovery: rec.report,
            backlog: Default::default(),
            bodies: crate::cache::BodyCache::new(body_cache_bytes),
            opened: std::time::Instant::now(),
            last_foreground_commit: AtomicU64::new(0),
        });
        let background = inner.options.compression == Compression::Background;
        if background {
            // Bodies left waiting by the last run.
            let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
            let mut waiting: Vec<(&BlobId, &BlobEntry)> = st
                .blobs
                .iter()
                .filter(|(_, b)| {
                    b.refs > 0 && b.codec == Codec::None as u8 && b.raw_len >= inner.options.compress_min_bytes as u64
                })
                .collect();
            waiting.sort_unstable_by_key(|(id, _)| **id);
            for (id, b) in waiting {
                inner.backlog.push(*id, b.raw_len);
            }
        }
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("postlog-committer".into())
            .spawn(move || committer(worker, writer))
            .map_err(io("start the committer thread"))?;
        let compressor = if background && inner.options.compression_thread {
            let worker = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("postlog-compress".into())
                    .spawn(move || compressor(worker))
                    .map_err(io("start the compression thread"))?,
            )
        } else {
            None
        };
        let committer = Arc::new(CommitterHandle {
            inner: inner.clone(),
            thread: Mutex::new(Some(handle)),
            compressor: Mutex::new(compressor),
        });
        Ok(Store { inner, committer })
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Prepares a message for [`append_prepared`](Self::append_prepared) and the other
    /// appends: hashed, parsed, and compressed with the store's dictionary when it has one
    /// (codec 2), else without (codec 1, as [`PreparedMessage::new`]). While the store has
    /// no dictionary, the message is also sampled for training one (see `dict.rs`).
    ///
    /// With [`Compression::Background`] the body stays as it came (the compression thread
    /// does the rest after the commit), unless the backlog has reached
    /// `compress_backlog_max_bytes`: then it is compressed here.
    pub fn prepare(&self, raw: &[u8]) -> PreparedMessage {
        let encoder = self.inner.dict.encoder.read().unwrap_or_else(|e| e.into_inner()).clone();
        if encoder.is_none() {
            self.inner.dict.offer(raw);
        }
        let o = &self.inner.options;
        if o.compression == Compression::Background && self.inner.backlog.bytes() >= o.compress_backlog_max_bytes {
            let inline = Options { compression: Compression::Inline, ..o.clone() };
            return PreparedMessage::build(raw, &inline, encoder.as_deref());
        }
        PreparedMessage::build(raw, o, encoder.as_deref())
    }

    /// Where the store's dictionary stands (sampling, training, ready, off, failed).
    pub fn dictionary_state(&self) -> crate::dict::TrainingState {
        self.inner.dict.state()
    }

    /// The dictionaries the store reads with (their files, and problems found with them).
    pub fn dictionaries(&self) -> &crate::dict::Dictionaries {
        self.inner.segments.dictionaries()
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Writes a snapshot and stops the committer. Further writes fail with `Closed`.
    pub fn close(&self) -> Result<(), CommitError> {
        // First, so that no compressed copy is committed after the snapshot (it would be
        // replayed at every open).
        self.committer.stop_compressor();
        let snap = self.submit(Op::Snapshot).map(|_| ());
        self.committer.stop();
        self.inner.backend.unlock();
        snap
    }

    fn submit(&self, op: Op) -> Result<Outcome, CommitError> {
        self.inner.submit(op)
    }

    /// Blobs, and their raw bytes, waiting for background compression.
    pub fn compression_backlog(&self) -> (usize, u64) {
        (self.inner.backlog.len(), self.inner.backlog.bytes())
    }

    /// Compresses the whole backlog on the calling thread (tests, benchmarks, tools); the
    /// background thread may take part of it meanwhile. Returns when nothing is left waiting.
    pub fn compress_backlog_now(&self) -> Result<(), CommitError> {
        while self.inner.compress_chunk(false)? {}
        self.inner.backlog.wait_empty(std::time::Duration::from_secs(3600));
        Ok(())
    }

    /// Waits until the background compression has nothing left, at most `timeout`.
    pub fn wait_compressed(&self, timeout: std::time::Duration) -> bool {
        self.inner.backlog.wait_empty(timeout)
    }

    /// [`submit`](Self::submit) for async callers: the task awaits the commit instead of
    /// blocking a thread.
    async fn submit_async(&self, op: Op) -> Result<Outcome, CommitError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(op, Reply::Async(tx))?;
        rx.await.unwrap_or(Err(CommitError::Closed))
    }

    fn enqueue(&self, op: Op, reply: Reply) -> Result<(), CommitError> {
        self.inner.enqueue(op, reply)
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    // ----- accounts -----------------------------------------------------------------

    /// Creates an account with an INBOX and the given extra mailboxes (name, special-use).
    pub fn create_account(&self, name: &str, mailboxes: &[(&str, u8)]) -> Result<AccountId, CommitError> {
        let mailboxes = mailboxes.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        match self.submit(Op::CreateAccount { name: name.to_string(), mailboxes })? {
            Outcome::Account(id) => Ok(id),
            o => unreachable!("create_account answered {o:?}"),
        }
    }

    pub fn delete_account(&self, account: AccountId) -> Result<(), CommitError> {
        self.submit(Op::DeleteAccount { account }).map(|_| ())
    }

    pub fn account_id(&self, name: &str) -> Option<AccountId> {
        self.read_state().account_names.get(name).copied()
    }

    /// (id, name) of every account.
    pub fn accounts(&self) -> Vec<(AccountId, String)> {
        self.read_state().accounts.values().map(|a| (a.id, a.name.clone())).collect()
    }

    pub fn usage(&self, account: AccountId) -> Option<Usage> {
        self.read_state().account(account).map(|a| Usage { bytes: a.bytes, messages: a.messages })
    }

    /// The account's change counter (the highest MODSEQ given in any of its mailboxes).
    pub fn account_modseq(&self, account: AccountId) -> Option<u64> {
        self.read_state().account(account).map(|a| a.modseq)
    }

    // ----- mailboxes ----------------------------------------------------------------

    pub fn create_mailbox(&self, account: AccountId, name: &str, special_use: u8) -> Result<MailboxId, CommitError> {
        match self.submit(Op::CreateMailbox { account, name: name.to_string(), special_use })? {
            Outcome::Mailbox(id) => Ok(id),
            o => unreachable!("create_mailbox answered {o:?}"),
        }
    }

    /// Renames a mailbox and every mailbox below it.
    pub fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<(), CommitError> {
        self.submit(Op::RenameMailbox { account, from: from.to_string(), to: to.to_string() }).map(|_| ())
    }

    /// Deletes a mailbox and its messages (not the mailboxes below it).
    pub fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<(), CommitError> {
        self.submit(Op::DeleteMailbox { account, name: name.to_string() }).map(|_| ())
    }

    pub fn subscribe(&self, account: AccountId, name: &str, on: bool) -> Result<(), CommitError> {
        self.submit(Op::Subscribe { account, name: name.to_string(), on }).map(|_| ())
    }

    pub fn set_special_use(&self, account: AccountId, name: &str, special_use: u8) -> Result<(), CommitError> {
        self.submit(Op::SetSpecialUse { account, name: name.to_string(), special_use }).map(|_| ())
    }

    pub fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxInfo>, ReadError> {
        let st = self.read_state();
        let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
        Ok(acc
            .by_name
            .values()
            .filter_map(|id| acc.mailboxes.get(id))
            .map(|mb| info(mb, acc.subscriptions.contains(&mb.name)))
            .collect())
    }

    pub fn subscriptions(&self, account: AccountId) -> Result<Vec<String>, ReadError> {
        let st = self.read_state();
        Ok(st.account(account).ok_or(ReadError::NoSuchAccount)?.subscriptions.iter().cloned().collect())
    }

    pub fn mailbox_by_name(&self, account: AccountId, name: &str) -> Result<MailboxInfo, ReadError> {
        let name = canonical_mailbox_name(name).map_err(|_| ReadError::NoSuchMailbox)?;
        let st = self.read_state();
        let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
        let mb = acc.mailbox_by_name(&name).ok_or(ReadError::NoSuchMailbox)?;
        Ok(info(mb, acc.subscriptions.contains(&mb.name)))
    }

    pub fn mailbox(&self, account: AccountId, mailbox: MailboxId) -> Result<MailboxInfo, ReadError> {
        let st = self.read_state();
        let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
        let mb = acc.mailboxes.get(&mailbox).ok_or(ReadError::NoSuchMailbox)?;
        Ok(info(mb, acc.subscriptions.contains(&mb.name)))
    }

    /// Runs `f` on a mailbox under the state's read lock (keep it short: writers wait).
    pub fn with_mailbox<R>(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        f: impl FnOnce(&Mailbox) -> R,
    ) -> Result<R, ReadError> {
        let st = self.read_state();
        let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
        let mb = acc.mailboxes.get(&mailbox).ok_or(ReadError::NoSuchMailbox)?;
        Ok(f(mb))
    }

    /// Every message entry of a mailbox, in UID order.
    pub fn messages(&self, account: AccountId, mailbox: MailboxId) -> Result<Vec<MessageEntry>, ReadError> {
        self.with_mailbox(account, mailbox, |mb| mb.messages.clone())
    }

    /// The UIDs of the messages of `thread` in a mailbox, ascending (a walk over the
    /// mailbox's entries in memory; no index).
    pub fn thread_messages(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        thread: ThreadId,
    ) -> Result<Vec<Uid>, ReadError> {
        self.with_mailbox(account, mailbox, |mb| {
            mb.messages.iter().filter(|m| m.thread == thread).map(|m| m.uid).collect()
        })
    }

    /// Whether `thread` has a message in any mailbox of the account.
    pub fn thread_exists(&self, account: AccountId, thread: ThreadId) -> Result<bool, ReadError> {
        let st = self.read_state();
        Ok(st.account(account).ok_or(ReadError::NoSuchAccount)?.threads.is_live(thread))
    }

    // ----- messages -----------------------------------------------------------------

    /// Appends one message to one or many mailboxes (of one or many accounts) in one atomic
    /// commit; the body is stored once. Returns after the commit is durable.
    pub fn append(&self, raw: &[u8], targets: &[AppendTarget]) -> Result<Vec<Appended>, CommitError> {
        let message = self.prepare(raw);
        self.append_prepared(Arc::new(message), targets)
    }

    pub fn append_prepared(
        &self,
        message: Arc<PreparedMessage>,
        targets: &[AppendTarget],
    ) -> Result<Vec<Appended>, CommitError> {
        let mut all = self.append_many(vec![(message, targets.to_vec())])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Appends several messages in one atomic commit, giving them UIDs in the order given
    /// (imports keep their source's order this way, with one sync for the lot). Returns, per
    /// message, where its copies went.
    pub fn append_many(
        &self,
        items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)>,
    ) -> Result<Vec<Vec<Appended>>, CommitError> {
        match self.submit(Op::Append { items, save_date: now_unix(), side: None })? {
            Outcome::Appended(v) => Ok(v),
            o => unreachable!("append answered {o:?}"),
        }
    }

    /// [`append_many`](Self::append_many) with key-value writes in the same transaction: all
    /// of it is durable, or none of it.
    pub fn append_many_with(
        &self,
        items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)>,
        side: SideWrites,
    ) -> Result<Vec<Vec<Appended>>, CommitError> {
        match self.submit(Op::Append { items, save_date: now_unix(), side: Some(side) })? {
            Outcome::Appended(v) => Ok(v),
            o => unreachable!("append answered {o:?}"),
        }
    }

    /// [`append_many_with`](Self::append_many_with) for async callers.
    pub async fn append_many_with_async(
        &self,
        items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)>,
        side: SideWrites,
    ) -> Result<Vec<Vec<Appended>>, CommitError> {
        match self.submit_async(Op::Append { items, save_date: now_unix(), side: Some(side) }).await? {
            Outcome::Appended(v) => Ok(v),
            o => unreachable!("append answered {o:?}"),
        }
    }

    /// [`append_many`](Self::append_many) for async callers: the same commit, awaited rather
    /// than blocking the calling thread (prepare the messages first; that is CPU work).
    pub async fn append_many_async(
        &self,
        items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)>,
    ) -> Result<Vec<Vec<Appended>>, CommitError> {
        match self.submit_async(Op::Append { items, save_date: now_unix(), side: None }).await? {
            Outcome::Appended(v) => Ok(v),
            o => unreachable!("append answered {o:?}"),
        }
    }

    /// Changes flags of the messages `uids` (those that exist). With `unchanged_since`,
    /// messages whose MODSEQ is above it are left alone and reported in `failed` (RFC 7162).
    #[allow(clippy::too_many_arguments)]
    pub fn store_flags(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: u8,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, CommitError> {
        let op = Op::Store {
            account,
            mailbox,
            uids: uids.to_vec(),
            op,
            flags,
            keywords: keywords.to_vec(),
            unchanged_since,
        };
        match self.submit(op)? {
            Outcome::Stored(s) => Ok(s),
            o => unreachable!("store answered {o:?}"),
        }
    }

    /// Expunges `uids`, or with `None` every message flagged \Deleted. Returns the UIDs
    /// expunged and the MODSEQ of the expunge.
    pub fn expunge(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: Option<&[Uid]>,
    ) -> Result<(Vec<Uid>, u64), CommitError> {
        match self.submit(Op::Expunge { account, mailbox, uids: uids.map(|u| u.to_vec()) })? {
            Outcome::Expunged(v, m) => Ok((v, m)),
            o => unreachable!("expunge answered {o:?}"),
        }
    }

    pub fn copy(
        &self,
        account: AccountId,
        from: MailboxId,
        to: MailboxId,
        uids: &[Uid],
    ) -> Result<CopyOutcome, CommitError> {
        self.copy_or_move(account, from, to, uids, false)
    }

    /// Copy and expunge in one atomic commit.
    pub fn move_messages(
        &self,
        account: AccountId,
        from: MailboxId,
        to: MailboxId,
        uids: &[Uid],
    ) -> Result<CopyOutcome, CommitError> {
        self.copy_or_move(account, from, to, uids, true)
    }

    fn copy_or_move(
        &self,
        account: AccountId,
        from: MailboxId,
        to: MailboxId,
        uids: &[Uid],
        is_move: bool,
    ) -> Result<CopyOutcome, CommitError> {
        match self.submit(Op::Copy { account, from, to, uids: uids.to_vec(), is_move, save_date: now_unix() })? {
            Outcome::Copied(c) => Ok(c),
            o => unreachable!("copy answered {o:?}"),
        }
    }

    fn blob_of(&self, account: AccountId, mailbox: MailboxId, uid: Uid) -> Result<(BlobId, BlobEntry), ReadError> {
        let st = self.read_state();
        let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
        let mb = acc.mailboxes.get(&mailbox).ok_or(ReadError::NoSuchMailbox)?;
        blob_in(&st, mb, uid)
    }

    /// The blob of a message, looked up again if its segment was compacted away between the
    /// lookup and the read (the blob then lives in a later segment).
    fn read_blob<T>(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: Uid,
        read: impl Fn(&Segments, BlobId, &BlobEntry) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let found = self.blob_of(account, mailbox, uid)?;
        self.read_found(account, mailbox, uid, found, read)
    }

    /// `read` on a blob looked up already, looked up again as `read_blob` does.
    fn read_found<T>(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: Uid,
        (id, blob): (BlobId, BlobEntry),
        read: impl Fn(&Segments, BlobId, &BlobEntry) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        match read(&self.inner.segments, id, &blob) {
            Err(ReadError::Corrupt { segment, .. }) if self.inner.segments.get(segment).is_none() => {
                let (id, blob) = self.blob_of(account, mailbox, uid)?;
                read(&self.inner.segments, id, &blob)
            }
            r => r,
        }
    }

    /// The whole message as appended.
    pub fn read_message(&self, account: AccountId, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>, ReadError> {
        self.read_blob(account, mailbox, uid, |segments, id, blob| {
            if blob.codec == Codec::None as u8 {
                return crate::read::read_body(segments, blob);
            }
            Ok(self.decoded(segments, id, blob)?.to_vec())
        })
    }

    /// The whole message as appended, shared with the cache of decoded bodies: for readers
    /// that only look at it (an IMAP FETCH renders from it), without the copy `read_message`
    /// makes.
    pub fn read_message_shared(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: Uid,
    ) -> Result<Arc<[u8]>, ReadError> {
        self.read_blob(account, mailbox, uid, |segments, id, blob| self.shared_body(segments, id, blob))
    }

    /// `read_message_shared` for several messages of one mailbox, with one look at the
    /// state for all of them (a FETCH decoding ahead reads them a chunk at a time).
    pub fn read_messages_shared(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> Vec<Result<Arc<[u8]>, ReadError>> {
        let found: Vec<Result<(BlobId, BlobEntry), ReadError>> = {
            let st = self.read_state();
            let Some(acc) = st.account(account) else {
                return uids.iter().map(|_| Err(ReadError::NoSuchAccount)).collect();
            };
            let Some(mb) = acc.mailboxes.get(&mailbox) else {
                return uids.iter().map(|_| Err(ReadError::NoSuchMailbox)).collect();
            };
            uids.iter().map(|&uid| blob_in(&st, mb, uid)).collect()
        };
        found
            .into_iter()
            .zip(uids)
            .map(|(found, &uid)| {
                self.read_found(account, mailbox, uid, found?, |segments, id, blob| {
                    self.shared_body(segments, id, blob)
                })
            })
            .collect()
    }

    /// A body in a shared buffer: a stored-as-is one read out (the cache is for decoding), a
    /// compressed one through the cache of decoded bodies.
    fn shared_body(&self, segments: &Segments, id: BlobId, blob: &BlobEntry) -> Result<Arc<[u8]>, ReadError> {
        if blob.codec == Codec::None as u8 {
            return crate::read::read_body_shared(segments, blob);
        }
        self.decoded(segments, id, blob)
    }

    /// A compressed body decoded: from the cache of decoded bodies, or decoded now (and kept
    /// there).
    fn decoded(&self, segments: &Segments, id: BlobId, blob: &BlobEntry) -> Result<Arc<[u8]>, ReadError> {
        if let Some(body) = self.inner.bodies.get(&(id, blob.hash)) {
            self.inner.stats.body_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(body);
        }
        let body = crate::read::read_body_shared(segments, blob)?;
        self.inner.stats.body_cache_misses.fetch_add(1, Ordering::Relaxed);
        self.inner.bodies.insert((id, blob.hash), &body);
        Ok(body)
    }

    /// Bytes `[start, end)` of a message (clamped to its size).
    pub fn read_range(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: Uid,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, ReadError> {
        self.read_blob(account, mailbox, uid, |segments, id, blob| {
            let end = end.min(blob.raw_len);
            let start = start.min(end);
            if blob.codec == Codec::None as u8 {
                let data = crate::read::read_data(segments, blob.data, BLOB_PREFIX_LEN)?;
                return Ok(data[start as usize..end as usize].to_vec());
            }
            Ok(self.decoded(segments, id, blob)?[start as usize..end as usize].to_vec())
        })
    }

    /// The metadata parsed at append.
    pub fn meta(&self, account: AccountId, mailbox: MailboxId, uid: Uid) -> Result<MessageMeta, ReadError> {
        self.read_blob(account, mailbox, uid, |segments, _, blob| crate::read::read_meta(segments, blob))
    }

    /// Calls `f` with the encoded metadata (`MessageMeta::decode` reads it) of every message of
    /// a mailbox, in UID order, straight from the log (checksum verified, no copy, no
    /// decoding): the fast path for a client's first sync, which decodes only what it sends.
    /// An `Err` from `f` (the bytes do not decode) stops the walk as `ReadError::Corrupt`
    /// naming the record.
    pub fn for_each_meta(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        mut f: impl FnMut(Uid, &[u8]) -> Result<(), String>,
    ) -> Result<(), ReadError> {
        let locs: Vec<(Uid, Option<Loc>)> = {
            let st = self.read_state();
            let acc = st.account(account).ok_or(ReadError::NoSuchAccount)?;
            let mb = acc.mailboxes.get(&mailbox).ok_or(ReadError::NoSuchMailbox)?;
            mb.messages.iter().map(|m| (m.uid, st.blobs.get(&m.blob).and_then(|b| b.meta))).collect()
        };
        for (uid, loc) in locs {
            let loc = loc.ok_or(ReadError::NoSuchMessage(uid))?;
            let bytes = match crate::read::read_data(&self.inner.segments, loc, META_PREFIX_LEN) {
                Err(ReadError::Corrupt { .. }) if self.inner.segments.get(loc.segment).is_none() => {
                    // Compacted away meanwhile: the blob was copied forward first.
                    let (_, blob) = self.blob_of(account, mailbox, uid)?;
                    let loc = blob.meta.ok_or(ReadError::NoSuchMessage(uid))?;
                    crate::read::read_data(&self.inner.segments, loc, META_PREFIX_LEN)?
                }
                r => r?,
            };
            f(uid, &bytes).map_err(|reason| ReadError::Corrupt { segment: loc.segment, offset: loc.offset, reason })?;
        }
        Ok(())
    }

    /// Metadata of every message of a mailbox, in UID order.
    pub fn metas(&self, account: AccountId, mailbox: MailboxId) -> Result<Vec<(Uid, MessageMeta)>, ReadError> {
        let mut out = Vec::new();
        self.for_each_meta(account, mailbox, |uid, bytes| {
            out.push((uid, MessageMeta::decode(bytes).map_err(|e| e.to_string())?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Everything that changed in a mailbox after `since` (what CONDSTORE/QRESYNC and JMAP
    /// `/changes` need).
    pub fn changes_since(&self, account: AccountId, mailbox: MailboxId, since: u64) -> Result<Changes, ReadError> {
        self.with_mailbox(account, mailbox, |mb| Changes {
            highest_modseq: mb.highest_modseq,
            changed: mb.messages.iter().filter(|m| m.modseq > since).copied().collect(),
            expunged: mb.vanished.iter().filter(|v| v.2 > since).flat_map(|&(a, b, _)| a..=b).collect(),
        })
    }

    /// A receiver that sees the account's change counter each time a change to the account
    /// becomes durable (for IMAP IDLE and JMAP push).
    pub fn watch(&self, account: AccountId) -> tokio::sync::watch::Receiver<u64> {
        let current = self.account_modseq(account).unwrap_or(0);
        let mut w = self.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(account).or_insert_with(|| tokio::sync::watch::channel(current).0).subscribe()
    }

    // ----- key-value directory ----------------------------------------------------

    /// The value of a key of the store's key-value directory (used for domains, users,
    /// aliases: small records with the same durability as mail).
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.read_state().kv.get(key).cloned()
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn kv_scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let st = self.read_state();
        st.kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Applies `writes` (value `None` deletes) atomically and durably, if every key in `expect`
    /// currently holds the expected value (`None`: absent); otherwise `CommitError::Conflict`.
    pub fn kv_write(
        &self,
        writes: Vec<(String, Option<Vec<u8>>)>,
        expect: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), CommitError> {
        self.submit(Op::Kv { writes, expect }).map(|_| ())
    }

    // ----- maintenance --------------------------------------------------------------

    /// Writes an index snapshot now.
    pub fn snapshot(&self) -> Result<(), CommitError> {
        self.submit(Op::Snapshot).map(|_| ())
    }

    /// Reclaims the space of expunged messages: writes a checkpoint of the state into the
    /// log, copies the live blobs of old segments forward, and drops those segments.
    /// Readers and writers go on meanwhile. Returns the bytes of segment files removed.
    pub fn compact(&self, min_dead_ratio: f64) -> Result<CompactionReport, CommitError> {
        crate::compaction::run(self, min_dead_ratio)
    }

    pub(crate) fn checkpoint(&self) -> Result<(), CommitError> {
        self.submit(Op::Checkpoint).map(|_| ())
    }

    /// Copies blobs (data and metadata, as stored) out of `from_segment` in one transaction.
    pub(crate) fn relocate(&self, from_segment: u64, blobs: Vec<Relocation>) -> Result<(), CommitError> {
        self.submit(Op::Relocate { from_segment, blobs }).map(|_| ())
    }

    pub(crate) fn drop_segment(&self, segment: u64) -> Result<(), CommitError> {
        self.submit(Op::DropSegment { segment }).map(|_| ())
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.read_state()
    }

    pub(crate) fn raw_data(&self, loc: Loc, prefix: usize) -> Result<Vec<u8>, ReadError> {
        crate::read::read_data(&self.inner.segments, loc, prefix).map(|v| v.to_vec())
    }

    /// Segment ids and sizes on disk.
    pub fn segment_sizes(&self) -> Vec<(u64, u64)> {
        let segs = &self.inner.segments;
        segs.ids().into_iter().filter_map(|id| segs.get(id).and_then(|f| f.len().ok()).map(|l| (id, l))).collect()
    }
}

pub use crate::compaction::CompactionReport;

fn info(mb: &Mailbox, subscribed: bool) -> MailboxInfo {
    MailboxInfo {
        id: mb.id,
        name: mb.name.clone(),
        special_use: mb.special_use,
        subscribed,
        uidvalidity: mb.uidvalidity,
        uidnext: mb.uidnext,
        highest_modseq: mb.highest_modseq,
        messages: mb.messages.len() as u32,
        unseen: mb.unseen,
        bytes: mb.bytes,
    }
}

// ---------------------------------------------------------------------------------------
// The committer.

/// What one batch's planning has claimed, so that two operations in a batch never depend on
/// each other's effects (those are applied only after the batch is durable).
#[derive(Default)]
struct Overlay {
    modseq: HashMap<AccountId, u64>,
    uidnext: HashMap<(AccountId, MailboxId), Uid>,
    new_blobs: HashMap<[u8; 32], BlobId>,
    next_blob: Option<BlobId>,
    next_account: Option<AccountId>,
    last_uidvalidity: Option<u32>,
    /// Thread links given in this batch (they are live: their thread got a message), and the
    /// last thread id handed out per account.
    thread_links: HashMap<(AccountId, u64), ThreadId>,
    last_thread: HashMap<AccountId, ThreadId>,
    /// Accounts touched by any operation, and those changed structurally (mailbox set).
    touched: HashSet<AccountId>,
    structural: HashSet<AccountId>,
    /// Mailboxes whose message state (flags, expunges, keyword table) an operation read.
    message_locked: HashSet<(AccountId, MailboxId)>,
    /// Mailboxes appended into.
    appended: HashSet<(AccountId, MailboxId)>,
    account_created: bool,
    keys: HashSet<String>,
    nonempty: bool,
    exclusive: bool,
}

enum Claim {
    Account(AccountId),
    Message(AccountId, MailboxId),
    Append(AccountId, MailboxId),
    Store,
    Key(String),
    Exclusive,
}

impl Overlay {
    /// Takes the claims if none conflicts with what the batch holds.
    fn claim(&mut self, claims: &[Claim]) -> bool {
        if self.exclusive {
            return false;
        }
        for c in claims {
            let conflict = match c {
                Claim::Account(a) => self.touched.contains(a),
                Claim::Message(a, m) => self.structural.contains(a) || self.message_locked.contains(&(*a, *m)),
                Claim::Append(a, _) => self.structural.contains(a),
                Claim::Store => self.account_created,
                Claim::Key(k) => self.keys.contains(k),
                Claim::Exclusive => self.nonempty,
            };
            if conflict {
                return false;
            }
        }
        for c in claims {
            match c {
                Claim::Account(a) => {
                    self.touched.insert(*a);
                    self.structural.insert(*a);
                }
                Claim::Message(a, m) => {
                    self.touched.insert(*a);
                    self.message_locked.insert((*a, *m));
                }
                Claim::Append(a, m) => {
                    self.touched.insert(*a);
                    self.appended.insert((*a, *m));
                }
                Claim::Store => self.account_created = true,
                Claim::Key(k) => {
                    self.keys.insert(k.clone());
                }
                Claim::Exclusive => self.exclusive = true,
            }
        }
        self.nonempty = true;
        true
    }

    fn next_modseq(&mut self, st: &State, account: AccountId) -> u64 {
        let base = st.account(account).map_or(0, |a| a.modseq);
        let v = self.modseq.get(&account).copied().unwrap_or(base).max(base) + 1;
        self.modseq.insert(account, v);
        v
    }

    fn alloc_uids(&mut self, mb: &Mailbox, account: AccountId, n: u32) -> Result<Uid, CommitError> {
        let key = (account, mb.id);
        let first = self.uidnext.get(&key).copied().unwrap_or(mb.uidnext).max(mb.uidnext);
        let next = first.checked_add(n).filter(|&n| n < u32::MAX).ok_or(CommitError::UidsExhausted)?;
        self.uidnext.insert(key, next);
        Ok(first)
    }

    /// The thread of a message appended into `account` with thread `keys`, and the keys it
    /// links (those not linked to a live thread): see `crate::thread` for the rule.
    fn thread_for(
        &mut self,
        st: &State,
        account: AccountId,
        keys: &[u64],
    ) -> Result<(ThreadId, Vec<u64>), CommitError> {
        let threads = &account_of(st, account)?.threads;
        let mut found: Option<ThreadId> = None;
        let mut unlinked = Vec::new();
        for &k in keys {
            match self.thread_links.get(&(account, k)).copied().or_else(|| threads.lookup(k)) {
                Some(t) => found = Some(found.map_or(t, |f| f.min(t))),
                None => unlinked.push(k),
            }
        }
        let thread = match found {
            Some(t) => t,
            None => {
                let last = self.last_thread.get(&account).copied().unwrap_or(threads.last).max(threads.last);
                let t = last
                    .checked_add(1)
                    .filter(|&t| t < ThreadId::MAX)
                    .ok_or_else(|| CommitError::NotAllowed("the account has used up its thread ids".into()))?;
                self.last_thread.insert(account, t);
                t
            }
        };
        for &k in &unlinked {
            self.thread_links.insert((account, k), thread);
        }
        Ok((thread, unlinked))
    }

    fn next_uidvalidity(&mut self, st: &State) -> u32 {
        let last = self.last_uidvalidity.unwrap_or(st.last_uidvalidity).max(st.last_uidvalidity);
        let v = (now_unix().clamp(1, u32::MAX as i64 - 1) as u32).max(last.saturating_add(1));
        self.last_uidvalidity = Some(v);
        v
    }
}

enum Planned {
    Ready(Txn),
    Failed(CommitError),
    /// Conflicts with an earlier operation of this batch: retry in the next batch.
    Defer,
}

fn plan(op: &Op, st: &State, ov: &mut Overlay, writer: &Writer) -> Planned {
    match plan_inner(op, st, ov, writer) {
        Ok(Some(t)) => Planned::Ready(t),
        Ok(None) => Planned::Defer,
        Err(e) => Planned::Failed(e),
    }
}

fn account_of(st: &State, account: AccountId) -> Result<&crate::state::Account, CommitError> {
    st.account(account).ok_or_else(|| CommitError::NoSuchAccount(account.to_string()))
}

fn mailbox_of(st: &State, account: AccountId, mailbox: MailboxId) -> Result<&Mailbox, CommitError> {
    account_of(st, account)?.mailboxes.get(&mailbox).ok_or_else(|| CommitError::NoSuchMailbox(mailbox.to_string()))
}

fn check_keywords(keywords: &[String]) -> Result<(), CommitError> {
    // RFC 9051 flag-keyword = atom: no specials, no control characters, no backslash.
    for k in keywords {
        let ok =
            !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b));
        if !ok {
            return Err(CommitError::NotAllowed(format!("invalid keyword {k:?}")));
        }
    }
    Ok(())
}

fn txn(records: Vec<RecordWithData>, outcome: Outcome) -> Txn {
    Txn { records, outcome, unlink: Vec::new() }
}

fn plan_inner(op: &Op, st: &State, ov: &mut Overlay, writer: &Writer) -> Result<Option<Txn>, CommitError> {
    match op {
        Op::CreateAccount { name, mailboxes } => {
            if !ov.claim(&[Claim::Store]) {
                return Ok(None);
            }
            if name.is_empty() || name.len() > 320 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(CommitError::NotAllowed(format!("invalid account name {name:?}")));
            }
            if st.account_names.contains_key(name) {
                return Err(CommitError::AccountExists(name.clone()));
            }
            let id = ov.next_account.unwrap_or(st.next_account).max(st.next_account).max(1);
            ov.next_account = Some(id + 1);
            let mut records = vec![(Record::AccountCreate { account: id, name: name.clone() }, None)];
            let mut names: Vec<(String, u8)> = vec![("INBOX".into(), 0)];
            for (n, s) in mailboxes {
                let n = canonical_mailbox_name(n)?;
                if let Some(e) = names.iter_mut().find(|(x, _)| *x == n) {
                    e.1 |= s;
                } else {
                    names.push((n, *s));
                }
            }
            for (i, (n, s)) in names.into_iter().enumerate() {
                // A new account's change counter starts at 1; each mailbox creation counts.
                let modseq = i as u64 + 2;
                let uidvalidity = ov.next_uidvalidity(st);
                records.push((
                    Record::MailboxCreate {
                        account: id,
                        mailbox: i as u32 + 1,
                        name: n,
                        uidvalidity,
                        special_use: s,
                        modseq,
                    },
                    None,
                ));
            }
            Ok(Some(txn(records, Outcome::Account(id))))
        }
        Op::DeleteAccount { account } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            account_of(st, *account)?;
            Ok(Some(txn(vec![(Record::AccountDelete { account: *account }, None)], Outcome::Unit)))
        }
        Op::CreateMailbox { account, name, special_use } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            let acc = account_of(st, *account)?;
            let name = canonical_mailbox_name(name)?;
            if acc.by_name.contains_key(&name) {
                return Err(CommitError::MailboxExists(name));
            }
            let modseq = ov.next_modseq(st, *account);
            let mut records = Vec::new();
            let mut id = acc.next_mailbox;
            for parent in ancestors(&name).chain(std::iter::once(name.as_str())) {
                if acc.by_name.contains_key(parent) {
                    continue;
                }
                let su = if parent == name { *special_use } else { 0 };
                let uidvalidity = ov.next_uidvalidity(st);
                records.push((
                    Record::MailboxCreate {
                        account: *account,
                        mailbox: id,
                        name: parent.to_string(),
                        uidvalidity,
                        special_use: su,
                        modseq,
                    },
                    None,
                ));
                id += 1;
            }
            Ok(Some(txn(records, Outcome::Mailbox(id - 1))))
        }
        Op::RenameMailbox { account, from, to } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            let acc = account_of(st, *account)?;
            let from = canonical_mailbox_name(from)?;
            let to = canonical_mailbox_name(to)?;
            if from == "INBOX" {
                return Err(CommitError::NotAllowed(
                    "INBOX cannot be renamed by the store; move its messages instead".into(),
                ));
            }
            let Some(&from_id) = acc.by_name.get(&from) else { return Err(CommitError::NoSuchMailbox(from)) };
            if to == from || to.starts_with(&format!("{from}/")) {
                return Err(CommitError::NotAllowed(format!("cannot rename {from} into itself")));
            }
            if acc.by_name.contains_key(&to) {
                return Err(CommitError::MailboxExists(to));
            }
            let prefix = format!("{from}/");
            let mut renames = vec![(from_id, to.clone())];
            for (name, id) in acc.by_name.range(prefix.clone()..) {
                let Some(rest) = name.strip_prefix(&prefix) else { break };
                let new = format!("{to}/{rest}");
                // A name freed by this rename (`from` or below it) may be taken again by it
                // ("A/B" -> "A" moves "A/B/B" to "A/B").
                if new != from && !new.starts_with(&prefix) && acc.by_name.contains_key(&new) {
                    return Err(CommitError::MailboxExists(new));
                }
                renames.push((*id, new));
            }
            let modseq = ov.next_modseq(st, *account);
            let mut records = Vec::new();
            let mut id = acc.next_mailbox;
            // Missing parents of the new name are created. None of them can be in the renamed
            // subtree: renaming a mailbox below itself was refused above.
            for parent in ancestors(&to) {
                if acc.by_name.contains_key(parent) {
                    continue;
                }
                let uidvalidity = ov.next_uidvalidity(st);
                records.push((
                    Record::MailboxCreate {
                        account: *account,
                        mailbox: id,
                        name: parent.to_string(),
                        uidvalidity,
                        special_use: 0,
                        modseq,
                    },
                    None,
                ));
                id += 1;
            }
            records.push((Record::MailboxRename { account: *account, modseq, renames }, None));
            Ok(Some(txn(records, Outcome::Unit)))
        }
        Op::DeleteMailbox { account, name } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            let acc = account_of(st, *account)?;
            let name = canonical_mailbox_name(name)?;
            if name == "INBOX" {
                return Err(CommitError::NotAllowed("INBOX cannot be deleted".into()));
            }
            let Some(&id) = acc.by_name.get(&name) else { return Err(CommitError::NoSuchMailbox(name)) };
            let modseq = ov.next_modseq(st, *account);
            Ok(Some(txn(vec![(Record::MailboxDelete { account: *account, mailbox: id, modseq }, None)], Outcome::Unit)))
        }
        Op::Subscribe { account, name, on } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            account_of(st, *account)?;
            let name = canonical_mailbox_name(name)?;
            Ok(Some(txn(vec![(Record::Subscribe { account: *account, name, subscribed: *on }, None)], Outcome::Unit)))
        }
        Op::SetSpecialUse { account, name, special_use } => {
            if !ov.claim(&[Claim::Account(*account)]) {
                return Ok(None);
            }
            let acc = account_of(st, *account)?;
            let name = canonical_mailbox_name(name)?;
            let Some(&id) = acc.by_name.get(&name) else { return Err(CommitError::NoSuchMailbox(name)) };
            let modseq = ov.next_modseq(st, *account);
            Ok(Some(txn(
                vec![(Record::SpecialUse { account: *account, mailbox: id, special_use: *special_use, modseq }, None)],
                Outcome::Unit,
            )))
        }
        Op::Append { items, save_date, side } => {
            if items.is_empty() || items.iter().any(|(_, targets)| targets.is_empty()) {
                return Err(CommitError::NotAllowed("append without a destination".into()));
            }
            let mut claims = Vec::new();
            for k in side.iter().flat_map(|s| &s.keys) {
                if k.is_empty() || k.len() > 1024 {
                    return Err(CommitError::NotAllowed(format!("invalid key {k:?}")));
                }
                claims.push(Claim::Key(k.clone()));
            }
            // Keywords of all the targets in one mailbox: they all join its table.
            let mut brought: HashMap<(AccountId, MailboxId), Vec<String>> = HashMap::new();
            for t in items.iter().flat_map(|(_, targets)| targets) {
                let mb = mailbox_of(st, t.account, t.mailbox)?;
                check_keywords(&t.keywords)?;
                let names = brought.entry((t.account, t.mailbox)).or_default();
                names.extend(t.keywords.iter().cloned());
                if mb.keywords.len() + mb.new_keyword_count(names) > crate::state::MAX_KEYWORDS_PER_MAILBOX {
                    return Err(CommitError::TooManyKeywords);
                }
                if mb.new_keyword_count(&t.keywords) > 0 {
                    claims.push(Claim::Message(t.account, t.mailbox));
                } else {
                    claims.push(Claim::Append(t.account, t.mailbox));
                }
            }
            if !ov.claim(&claims) {
                return Ok(None);
            }
            let mut records = Vec::new();
            let mut modseqs: HashMap<AccountId, u64> = HashMap::new();
            let mut out = Vec::with_capacity(items.len());
            for (message, targets) in items {
                let existing = st
                    .blob_by_hash
                    .get(&message.hash)
                    .copied()
                    .filter(|id| {
                        st.blobs
                            .get(id)
                            .is_some_and(|b| b.meta.is_some() && !st.dropped_segments.contains(&b.data.segment))
                    })
                    .or_else(|| ov.new_blobs.get(&message.hash).copied());
                let blob = match existing {
                    Some(id) => id,
                    None => {
                        let id = ov.next_blob.unwrap_or(st.next_blob).max(st.next_blob).max(1);
                        ov.next_blob = Some(id + 1);
                        ov.new_blobs.insert(message.hash, id);
                        records.push((
                            Record::Blob { blob: id, hash: message.hash, raw_len: message.raw_len },
                            Some((message.codec, message.stored.clone())),
                        ));
                        records.push((Record::Meta { blob: id }, Some((Codec::None, message.meta.clone()))));
                        id
                    }
                };
                let mut done = Vec::with_capacity(targets.len());
                // One thread per account for all the copies of this message there; the first
                // copy brings the links.
                let mut threads: Vec<(AccountId, ThreadId)> = Vec::new();
                for t in targets {
                    let modseq = match modseqs.get(&t.account) {
                        Some(m) => *m,
                        None => {
                            let m = ov.next_modseq(st, t.account);
                            modseqs.insert(t.account, m);
                            m
                        }
                    };
                    let mb = mailbox_of(st, t.account, t.mailbox)?;
                    let uid = ov.alloc_uids(mb, t.account, 1)?;
                    let (thread, links) = match threads.iter().find(|(a, _)| *a == t.account) {
                        Some(&(_, thread)) => (thread, Vec::new()),
                        None => {
                            let (thread, links) = ov.thread_for(st, t.account, &message.thread_keys)?;
                            threads.push((t.account, thread));
                            (thread, links)
                        }
                    };
                    records.push((
                        Record::MessageAppend {
                            account: t.account,
                            mailbox: t.mailbox,
                            uid,
                            modseq,
                            blob,
                            size: message.raw_len,
                            flags: t.flags & flag::ALL,
                            keywords: t.keywords.clone(),
                            internal_date: t.internal_date,
                            save_date: *save_date,
                            thread,
                            links,
                        },
                        None,
                    ));
                    done.push(Appended {
                        account: t.account,
                        mailbox: t.mailbox,
                        uidvalidity: mb.uidvalidity,
                        uid,
                        modseq,
                        thread,
                    });
                }
                out.push(done);
            }
            if let Some(side) = side {
                let values = (side.values)(&out);
                assert_eq!(values.len(), side.keys.len(), "one value per side key");
                for (key, v) in side.keys.iter().zip(values) {
                    records.push(match v {
                        Some(value) => (Record::KvPut { key: key.clone(), value }, None),
                        None => (Record::KvDelete { key: key.clone() }, None),
                    });
                }
            }
            Ok(Some(txn(records, Outcome::Appended(out))))
        }
        Op::Store { account, mailbox, uids, op, flags, keywords, unchanged_since } => {
            let mb = mailbox_of(st, *account, *mailbox)?;
            check_keywords(keywords)?;
            if *op != FlagOp::Remove
                && mb.keywords.len() + mb.new_keyword_count(keywords) > crate::state::MAX_KEYWORDS_PER_MAILBOX
            {
                return Err(CommitError::TooManyKeywords);
            }
            if !ov.claim(&[Claim::Message(*account, *mailbox)]) {
                return Ok(None);
            }
            let flags = flags & flag::ALL;
            let (known_kw, all_known) = mb.keyword_bits_known(keywords);
            let mut sorted: Vec<Uid> = uids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let mut changed = Vec::new();
            let mut failed = Vec::new();
            for uid in sorted {
                let Some(m) = mb.message(uid) else { continue };
                if unchanged_since.is_some_and(|u| m.modseq > u) {
                    failed.push(uid);
                    continue;
                }
                let differs = match op {
                    FlagOp::Add => m.flags & flags != flags || m.keywords & known_kw != known_kw || !all_known,
                    FlagOp::Remove => m.flags & flags != 0 || m.keywords & known_kw != 0,
                    FlagOp::Replace => m.flags != flags || m.keywords != known_kw || !all_known,
                };
                if differs {
                    changed.push(uid);
                }
            }
            if changed.is_empty() {
                return Ok(Some(txn(Vec::new(), Outcome::Stored(StoreOutcome { modseq: 0, changed, failed }))));
            }
            let modseq = ov.next_modseq(st, *account);
            let rec = Record::Flags {
                account: *account,
                mailbox: *mailbox,
                modseq,
                op: *op,
                flags,
                keywords: keywords.clone(),
                uids: to_ranges(changed.iter().copied()),
            };
            Ok(Some(txn(vec![(rec, None)], Outcome::Stored(StoreOutcome { modseq, changed, failed }))))
        }
        Op::Expunge { account, mailbox, uids } => {
            let mb = mailbox_of(st, *account, *mailbox)?;
            if !ov.claim(&[Claim::Message(*account, *mailbox)]) {
                return Ok(None);
            }
            let gone: Vec<Uid> = match uids {
                None => mb.messages.iter().filter(|m| m.flags & flag::DELETED != 0).map(|m| m.uid).collect(),
                Some(list) => {
                    let mut v: Vec<Uid> = list.iter().copied().filter(|u| mb.position(*u).is_some()).collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                }
            };
            if gone.is_empty() {
                return Ok(Some(txn(Vec::new(), Outcome::Expunged(gone, 0))));
            }
            let modseq = ov.next_modseq(st, *account);
            let rec =
                Record::Expunge { account: *account, mailbox: *mailbox, modseq, uids: to_ranges(gone.iter().copied()) };
            Ok(Some(txn(vec![(rec, None)], Outcome::Expunged(gone, modseq))))
        }
        Op::Copy { account, from, to, uids, is_move, save_date } => {
            let src = mailbox_of(st, *account, *from)?;
            let dst = mailbox_of(st, *account, *to)?;
            let mut sorted: Vec<Uid> = uids.iter().copied().filter(|u| src.position(*u).is_some()).collect();
            sorted.sort_unstable();
            sorted.dedup();
            let names: Vec<String> = {
                let mut bits = 0u64;
                for u in &sorted {
                    bits |= src.message(*u).map_or(0, |m| m.keywords);
                }
                src.keyword_names(bits)
            };
            let new_kw = dst.new_keyword_count(&names);
            if dst.keywords.len() + new_kw > crate::state::MAX_KEYWORDS_PER_MAILBOX {
                return Err(CommitError::TooManyKeywords);
            }
            let mut claims = vec![Claim::Message(*account, *from)];
            if new_kw > 0 || *from == *to {
                if *from != *to {
                    claims.push(Claim::Message(*account, *to));
                }
            } else {
                claims.push(Claim::Append(*account, *to));
            }
            if !ov.claim(&claims) {
                return Ok(None);
            }
            if sorted.is_empty() {
                return Ok(Some(txn(
                    Vec::new(),
                    Outcome::Copied(CopyOutcome { uidvalidity: dst.uidvalidity, pairs: vec![], modseq: 0 }),
                )));
            }
            let modseq = ov.next_modseq(st, *account);
            let first_uid = ov.alloc_uids(dst, *account, sorted.len() as u32)?;
            let ranges = to_ranges(sorted.iter().copied());
            let mut records = vec![(
                Record::Copy {
                    account: *account,
                    from: *from,
                    to: *to,
                    modseq,
                    save_date: *save_date,
                    first_uid,
                    uids: ranges.clone(),
                },
                None,
            )];
            if *is_move {
                records.push((Record::Expunge { account: *account, mailbox: *from, modseq, uids: ranges }, None));
            }
            let pairs = sorted.iter().enumerate().map(|(i, &u)| (u, first_uid + i as u32)).collect();
            Ok(Some(txn(records, Outcome::Copied(CopyOutcome { uidvalidity: dst.uidvalidity, pairs, modseq }))))
        }
        Op::Kv { writes, expect } => {
            let mut claims: Vec<Claim> = Vec::new();
            for (k, _) in writes.iter().chain(expect) {
                if k.is_empty() || k.len() > 1024 {
                    return Err(CommitError::NotAllowed(format!("invalid key {k:?}")));
                }
                claims.push(Claim::Key(k.clone()));
            }
            if !ov.claim(&claims) {
                return Ok(None);
            }
            for (k, want) in expect {
                if st.kv.get(k) != want.as_ref() {
                    return Err(CommitError::Conflict(k.clone()));
                }
            }
            let records = writes
                .iter()
                .map(|(key, v)| match v {
                    Some(value) => (Record::KvPut { key: key.clone(), value: value.clone() }, None),
                    None => (Record::KvDelete { key: key.clone() }, None),
                })
                .collect();
            Ok(Some(txn(records, Outcome::Unit)))
        }
        Op::Checkpoint => {
            if !ov.claim(&[Claim::Exclusive]) {
                return Ok(None);
            }
            let state = snapshot::encode_logical(st);
            Ok(Some(txn(vec![(Record::Checkpoint(crate::record::Checkpoint { state }), None)], Outcome::Unit)))
        }
        Op::Relocate { from_segment, blobs } => {
            // Relocations conflict with nothing but exclusive operations.
            if !ov.claim(&[]) {
                return Ok(None);
            }
            let mut records = Vec::new();
            for r in blobs {
                let Some(entry) = st.blobs.get(&r.blob) else { continue };
                if entry.data.segment != *from_segment && entry.meta.is_none_or(|m| m.segment != *from_segment) {
                    continue;
                }
                records.push((
                    Record::Blob { blob: r.blob, hash: entry.hash, raw_len: entry.raw_len },
                    Some((r.codec, r.data.clone())),
                ));
                if let Some(m) = &r.meta {
                    records.push((Record::Meta { blob: r.blob }, Some((Codec::None, m.clone()))));
                }
            }
            Ok(Some(txn(records, Outcome::Unit)))
        }
        Op::Recompress { blobs } => {
            // Like relocations: a new location for bytes nobody else changes.
            if !ov.claim(&[]) {
                return Ok(None);
            }
            let mut records = Vec::new();
            for c in blobs {
                // Only if the blob is still where (and as) it was read: compaction may have
                // moved it meanwhile, or a delivery added it again.
                let Some(entry) = st.blobs.get(&c.blob) else { continue };
                if entry.data != c.from || entry.codec != Codec::None as u8 {
                    continue;
                }
                records.push((
                    Record::Blob { blob: c.blob, hash: entry.hash, raw_len: entry.raw_len },
                    Some((c.codec, c.data.clone())),
                ));
            }
            Ok(Some(txn(records, Outcome::Recompressed)))
        }
        Op::DropSegment { segment } => {
            if !ov.claim(&[Claim::Exclusive]) {
                return Ok(None);
            }
            if *segment >= writer.segment || *segment >= st.checkpoint_segment {
                return Err(CommitError::NotAllowed(format!("segment {segment} is not before the last checkpoint")));
            }
            if st
                .blobs
                .values()
                .any(|b| b.refs > 0 && (b.data.segment == *segment || b.meta.is_some_and(|m| m.segment == *segment)))
            {
                return Err(CommitError::NotAllowed(format!("segment {segment} still holds live blobs")));
            }
            let mut t = txn(vec![(Record::SegmentDrop { segment: *segment }, None)], Outcome::Unit);
            t.unlink.push(*segment);
            Ok(Some(t))
        }
        Op::Snapshot => Ok(None),
    }
}

/// Encodes a transaction's records followed by its COMMIT. Returns, per record, where its
/// data landed.
fn encode_txn(
    buf: &mut Vec<u8>,
    base: u64,
    segment: u64,
    writer_lsn: &mut u64,
    t: &Txn,
    batch_seq: u64,
    batch_end: bool,
) -> Vec<Option<DataLoc>> {
    let first_lsn = *writer_lsn;
    let mut locs = Vec::with_capacity(t.records.len());
    let mut payload = Vec::new();
    for (rec, data) in &t.records {
        payload.clear();
        rec.encode_payload(&mut payload);
        let lsn = *writer_lsn;
        *writer_lsn += 1;
        let rec_off = base + buf.len() as u64;
        let (codec, data_bytes): (Codec, &[u8]) = match data {
            Some((c, d)) => (*c, d),
            None => (Codec::None, &[]),
        };
        encode_frame(buf, rec.kind(), codec, lsn, rec.account(), &[&payload, data_bytes]);
        let has_data = matches!(rec.kind(), kind::BLOB | kind::META | kind::CHECKPOINT);
        locs.push(has_data.then(|| {
            let prefix = if rec.kind() == kind::CHECKPOINT { 0 } else { payload.len() };
            DataLoc {
                loc: Loc {
                    segment,
                    offset: rec_off + (RECORD_HEADER_LEN + prefix) as u64,
                    len: (payload.len() - prefix + data_bytes.len()) as u32,
                },
                codec: codec as u8,
            }
        }));
    }
    let commit = Record::Commit { first_lsn, count: t.records.len() as u32, batch_seq, batch_end };
    payload.clear();
    commit.encode_payload(&mut payload);
    let lsn = *writer_lsn;
    *writer_lsn += 1;
    encode_frame(buf, kind::COMMIT, Codec::None, lsn, 0, &[&payload]);
    locs
}

fn estimate_len(t: &Txn) -> u64 {
    let mut n = frame_len(32) as u64;
    for (_, data) in &t.records {
        n += frame_len(256 + data.as_ref().map_or(0, |d| d.1.len())) as u64;
    }
    n
}

fn committer(inner: Arc<Inner>, mut writer: Writer) {
    let mut since_snapshot: u64 = 0;
    loop {
        let mut requests: Vec<Request> = {
            let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.requests.is_empty() && !q.closing {
                q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.requests.is_empty() && q.closing {
                return;
            }
            q.requests.drain(..).collect()
        };
        let stopped = inner.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(reason) = stopped {
            for r in requests {
                let _ = r.reply.send(Err(CommitError::Stopped(reason.clone())));
            }
            continue;
        }

        // Plan.
        let mut ready: Vec<(Txn, Reply)> = Vec::new();
        let mut deferred: Vec<Request> = Vec::new();
        let mut snapshot_requests: Vec<Reply> = Vec::new();
        let mut batch_bytes = 0usize;
        {
            let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
            let mut ov = Overlay::default();
            for req in requests.drain(..) {
                if matches!(req.op, Op::Snapshot) {
                    snapshot_requests.push(req.reply);
                    continue;
                }
                if batch_bytes > inner.options.max_batch_bytes {
                    deferred.push(req);
                    continue;
                }
                match plan(&req.op, &st, &mut ov, &writer) {
                    Planned::Ready(t) => {
                        if t.records.is_empty() {
                            let _ = req.reply.send(Ok(t.outcome));
                        } else {
                            batch_bytes += estimate_len(&t) as usize;
                            ready.push((t, req.reply));
                        }
                    }
                    Planned::Failed(e) => {
                        let _ = req.reply.send(Err(e));
                    }
                    Planned::Defer => deferred.push(req),
                }
            }
        }
        if !deferred.is_empty() {
            let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            for r in deferred.into_iter().rev() {
                q.requests.push_front(r);
            }
        }

        if !ready.is_empty() {
            commit_batch(&inner, &mut writer, ready, &mut since_snapshot);
        }

        if !snapshot_requests.is_empty() || since_snapshot >= inner.options.snapshot_every_bytes {
            let result = write_snapshot(&inner, &writer);
            since_snapshot = 0;
            for r in snapshot_requests {
                let _ = r.send(result.clone());
            }
        }
    }
}

fn commit_batch(inner: &Inner, writer: &mut Writer, ready: Vec<(Txn, Reply)>, since_snapshot: &mut u64) {
    let fail_all = |ready: Vec<(Txn, Reply)>, e: CommitError| {
        for (_, r) in ready {
            let _ = r.send(Err(e.clone()));
        }
    };
    let estimate: u64 = ready.iter().map(|(t, _)| estimate_len(t)).sum();
    if let Err(e) = writer.roll_if_full(estimate) {
        let err = stop_or_clean(inner, e);
        fail_all(ready, err);
        return;
    }
    let batch_seq = writer.batch_seq + 1;
    let mut lsn = writer.next_lsn;
    let mut buf = Vec::with_capacity(estimate as usize);
    let mut all_locs = Vec::with_capacity(ready.len());
    let n = ready.len();
    let mut records = 0u64;
    for (i, (t, _)) in ready.iter().enumerate() {
        let locs = encode_txn(&mut buf, writer.end, writer.segment, &mut lsn, t, batch_seq, i + 1 == n);
        records += t.records.len() as u64 + 1;
        all_locs.push(locs);
    }
    let started = std::time::Instant::now();
    if let Err(e) = writer.write_and_sync(&buf) {
        let err = stop_or_clean(inner, e);
        fail_all(ready, err);
        return;
    }
    inner.stats.sync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    inner.stats.batches.fetch_add(1, Ordering::Relaxed);
    inner.stats.transactions.fetch_add(n as u64, Ordering::Relaxed);
    inner.stats.bytes_written.fetch_add(buf.len() as u64, Ordering::Relaxed);
    writer.next_lsn = lsn;
    writer.batch_seq = batch_seq;
    writer.records_in_segment += records;
    *since_snapshot += buf.len() as u64;

    // Durable: make it visible.
    let background = inner.options.compression == Compression::Background;
    if background && ready.iter().any(|(t, _)| !matches!(t.outcome, Outcome::Recompressed)) {
        let now = inner.opened.elapsed().as_nanos() as u64;
        inner.last_foreground_commit.store(now, Ordering::Relaxed);
    }
    let mut touched: HashSet<AccountId> = HashSet::new();
    let mut unlink = Vec::new();
    let mut failed: HashSet<usize> = HashSet::new();
    {
        let mut st = inner.state.write().unwrap_or_else(|e| e.into_inner());
        for (i, ((t, _), locs)) in ready.iter().zip(&all_locs).enumerate() {
            for ((rec, _), loc) in t.records.iter().zip(locs) {
                if let Record::Checkpoint(_) = rec {
                    st.checkpoint_segment = writer.segment;
                    continue;
                }
                if let (Record::Blob { blob, raw_len, .. }, Some(d)) = (rec, loc)
                    && background
                    && d.codec == Codec::None as u8
                    && *raw_len >= inner.options.compress_min_bytes as u64
                {
                    inner.backlog.push(*blob, *raw_len);
                }
                if let Err(e) = st.apply(rec, *loc) {
                    // Planning checked everything apply checks: this is a bug (or a state
                    // loaded from damaged bytes). Stop writing rather than let memory and log
                    // disagree, and do not report this transaction as done.
                    let reason = format!("internal error applying a committed record: {e}");
                    *inner.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    failed.insert(i);
                }
                let a = rec.account();
                if a != 0 {
                    touched.insert(a);
                }
            }
            unlink.extend(t.unlink.iter().copied());
        }
        let watchers = inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for a in &touched {
            if let (Some(w), Some(acc)) = (watchers.get(a), st.account(*a)) {
                w.send_replace(acc.modseq);
            }
        }
    }
    for seg in unlink {
        inner.segments.remove(seg);
        let _ = inner.backend.remove(&crate::log::segment_file_name(seg));
        let _ = inner.backend.sync_dir();
    }
    for (i, ((t, reply), _)) in ready.into_iter().zip(all_locs).enumerate() {
        if failed.contains(&i) {
            let reason = inner.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
            let _ = reply.send(Err(CommitError::Stopped(reason)));
        } else {
            let _ = reply.send(Ok(t.outcome));
        }
    }
}

fn stop_or_clean(inner: &Inner, e: WriteFailure) -> CommitError {
    match e {
        WriteFailure::Clean(e) if e.raw_os_error() == Some(libc::ENOSPC) => CommitError::DiskFull,
        WriteFailure::Clean(e) => CommitError::Io(e.to_string()),
        WriteFailure::Fatal(e) => {
            let reason = e.to_string();
            *inner.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            CommitError::Stopped(reason)
        }
    }
}

fn write_snapshot(inner: &Inner, writer: &Writer) -> Result<Outcome, CommitError> {
    let bytes = {
        let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
        let snap = snapshot::Snapshot {
            position: Position {
                segment: writer.segment,
                offset: writer.end,
                next_lsn: writer.next_lsn,
                last_batch_seq: writer.batch_seq,
            },
            state: st.clone(),
        };
        snapshot::encode(&snap)
    };
    let tmp = format!("{SNAPSHOT_FILE}.tmp");
    let b = &inner.backend;
    let _ = b.remove(&tmp);
    let res = (|| -> std::io::Result<()> {
        let f = b.create(&tmp)?;
        f.write_all_at(&bytes, 0)?;
        f.sync_data()?;
        b.rename(&tmp, SNAPSHOT_FILE)?;
        b.sync_dir()
    })();
    // A failed snapshot loses nothing: the log is the truth and replay covers it.
    res.map(|()| Outcome::Unit).map_err(|e| CommitError::Io(format!("snapshot not written: {e}")))
}

/// Used by tests: the whole state, for comparing with a model.
#[doc(hidden)]
pub fn state_of(store: &Store) -> State {
    store.read_state().clone()
}

/// The blob of message `uid` of `mb`, with its id.
fn blob_in(st: &State, mb: &Mailbox, uid: Uid) -> Result<(BlobId, BlobEntry), ReadError> {
    let m = mb.message(uid).ok_or(ReadError::NoSuchMessage(uid))?;
    let blob = st.blobs.get(&m.blob).cloned().ok_or(ReadError::NoSuchMessage(uid))?;
    Ok((m.blob, blob))
}

/// Yields every record of a range list, for callers building UID lists.
pub fn uids_of(ranges: &[(u32, u32)]) -> Vec<Uid> {
    ranges_iter(ranges).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemBackend;

    /// Two blobs of a damaged or crafted log may claim one content hash (replay cannot check
    /// it without decoding every body). Each must still read as its own body: the cache of
    /// decoded bodies once keyed by hash alone handed the first one's bytes to the second, and
    /// a range past the shorter body's end panicked (found by the `segment_scan` fuzz target).
    #[test]
    fn blobs_claiming_one_hash_read_as_their_own_bodies() {
        let store = Store::open_backend(Arc::new(MemBackend::new()), Options::default()).unwrap();
        let account = store.create_account("a@example.test", &[]).unwrap();
        let short = b"Subject: short\r\n\r\nhello\r\n".repeat(40);
        let long = b"Subject: long\r\n\r\nworld of words\r\n".repeat(200);
        let target = AppendTarget { account, mailbox: 1, flags: 0, keywords: Vec::new(), internal_date: 0 };
        let a = store.append(&short, std::slice::from_ref(&target)).unwrap()[0].uid;
        let b = store.append(&long, std::slice::from_ref(&target)).unwrap()[0].uid;
        {
            let mut st = store.inner.state.write().unwrap();
            let hashes: Vec<[u8; 32]> = st.blobs.values().map(|e| e.hash).collect();
            assert_eq!(hashes.len(), 2);
            assert!(st.blobs.values().all(|e| e.codec != Codec::None as u8), "both bodies are compressed");
            for e in st.blobs.values_mut() {
                e.hash = hashes[0];
            }
        }
        assert_eq!(store.read_message(account, 1, a).unwrap(), short);
        assert_eq!(store.read_range(account, 1, b, 1000, 1020).unwrap(), long[1000..1020]);
        assert_eq!(store.read_message(account, 1, b).unwrap(), long);
        assert_eq!(store.read_range(account, 1, a, 0, 10).unwrap(), short[..10]);
    }
}
