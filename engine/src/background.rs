//! Background compression ([`Compression::Background`](crate::store::Compression)).
//!
//! An append then stores the body as it came, which takes the compression (about a third of
//! an append's CPU for mail-sized messages, and most of it for large ones) off the path to the
//! durable reply. The committer queues every such blob in the [`Backlog`] once it is durable;
//! a thread at the lowest CPU priority (`SCHED_IDLE`, else nice 19) takes them in chunks,
//! reads each body, compresses it and commits the compressed copy as a new BLOB record for the
//! same blob (`Op::Recompress`), which is from then on where the blob is read. The first copy
//! becomes dead bytes that compaction reclaims. A blob moved or dropped meanwhile is skipped
//! by the plan; one left waiting at a crash or shutdown is queued again at open.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::format::Codec;
use crate::state::{BlobId, Loc};

/// A compressed copy of a blob that was stored as it came.
pub(crate) struct Compressed {
    pub blob: BlobId,
    /// Where the uncompressed bytes were read: the copy is committed only if the blob is
    /// still there.
    pub from: Loc,
    pub codec: Codec,
    pub data: Arc<[u8]>,
}

/// Blobs waiting to be compressed, with their raw sizes.
#[derive(Default)]
pub(crate) struct Backlog {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Raw bytes queued or being compressed.
    bytes: AtomicU64,
}

#[derive(Default)]
struct Queue {
    blobs: VecDeque<(BlobId, u64)>,
    /// Chunks taken and not yet finished.
    busy: usize,
    closing: bool,
}

/// At most this many blobs, or about this many raw bytes, per commit of compressed copies.
const CHUNK_BLOBS: usize = 256;
const CHUNK_BYTES: u64 = 8 << 20;

impl Backlog {
    pub fn push(&self, blob: BlobId, raw_len: u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.blobs.push_back((blob, raw_len));
        self.bytes.fetch_add(raw_len, Ordering::Relaxed);
        drop(q);
        self.wake.notify_all();
    }

    /// Raw bytes waiting for compression.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Blobs waiting for compression.
    pub fn len(&self) -> usize {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.blobs.len()
    }

    pub fn is_closing(&self) -> bool {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closing
    }

    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closing = true;
        self.wake.notify_all();
    }

    /// The next chunk; with `wait`, blocks until there is one (`None`: closing). Without,
    /// `None` when the queue is empty.
    pub fn take(&self, wait: bool) -> Option<Vec<(BlobId, u64)>> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.blobs.is_empty() {
            if q.closing || !wait {
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.closing && wait {
            return None;
        }
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while let Some(&(blob, len)) = q.blobs.front() {
            if chunk.len() >= CHUNK_BLOBS || (bytes >= CHUNK_BYTES && !chunk.is_empty()) {
                break;
            }
            q.blobs.pop_front();
            chunk.push((blob, len));
            bytes += len;
        }
        q.busy += 1;
        Some(chunk)
    }

    /// A chunk from [`take`](Self::take) is done (committed, skipped or given back).
    pub fn finished(&self, chunk: &[(BlobId, u64)]) {
        let bytes: u64 = chunk.iter().map(|c| c.1).sum();
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.busy -= 1;
        drop(q);
        self.wake.notify_all();
    }

    /// Puts a chunk back at the front (its commit failed for a reason that may pass).
    pub fn give_back(&self, chunk: Vec<(BlobId, u64)>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for c in chunk.into_iter().rev() {
            q.blobs.push_front(c);
        }
        q.busy -= 1;
        drop(q);
        self.wake.notify_all();
    }

    /// Waits until nothing is queued or being compressed, at most `timeout`. True if so.
    pub fn wait_empty(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while !q.blobs.is_empty() || q.busy > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            q = self.wake.wait_timeout(q, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// Asks the scheduler to run the calling thread only when a core is otherwise idle
/// (`SCHED_IDLE`), or failing that at the lowest nice level.
#[allow(unsafe_code)]
pub(crate) fn lower_priority() {
    // SAFETY: sched_setscheduler and setpriority read only the struct we pass and act on the
    // calling thread (pid 0 / its tid); they have no memory-safety preconditions.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
        }
    }
}
