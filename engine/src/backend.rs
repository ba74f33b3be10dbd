//! The one narrow door to the disk.
//!
//! Every byte the store reads or writes goes through [`Backend`] (a directory) and
//! [`BackendFile`] (a file in it). Three implementations:
//! - [`FileBackend`]: real files, with reads served from read-only memory maps;
//! - [`MemBackend`]: in memory, for tests; it keeps for every file what was written ("live")
//!   and what was synced ("durable"), and for the directory which names were synced, so a
//!   test can take the image a power cut at any moment would leave ([`MemBackend::crash_image`])
//!   and inject failing syncs or a full disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::{Deref, Range};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A directory of files. Names are plain file names, no separators.
pub trait Backend: Send + Sync + 'static {
    fn list(&self) -> io::Result<Vec<String>>;
    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>>;
    /// Creates a new empty file; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Where the data lives, for messages to operators.
    fn describe(&self) -> String;
    /// Gives up the exclusive hold on the directory (after a clean close).
    fn unlock(&self) {}
}

#[allow(clippy::len_without_is_empty)]
pub trait BackendFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
    /// Allocates disk space for `[offset, offset+len)` without changing the file's length, so
    /// later writes there cannot fail for lack of space. Backends without the notion succeed.
    fn reserve(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Bytes `[offset, offset+len)`, which must already be written. Real files answer from a
    /// memory map, without a copy.
    fn view(&self, offset: u64, len: usize) -> io::Result<View> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(View(ViewInner::Owned(buf)))
    }
}

/// Bytes read from a file: borrowed from a memory map or owned.
pub struct View(ViewInner);

enum ViewInner {
    Owned(Vec<u8>),
    Mapped(Arc<memmap2::Mmap>, Range<usize>),
}

impl View {
    /// The bytes `[start, end)` of this view (offsets within it), without a copy for maps.
    pub fn narrow(self, start: usize, end: usize) -> View {
        match self.0 {
            ViewInner::Owned(mut v) => {
                v.truncate(end);
                v.drain(..start);
                View(ViewInner::Owned(v))
            }
            ViewInner::Mapped(m, r) => View(ViewInner::Mapped(m, r.start + start..r.start + end)),
        }
    }
}

impl Deref for View {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            ViewInner::Owned(v) => v,
            ViewInner::Mapped(m, r) => &m[r.clone()],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real files.

pub struct FileBackend {
    dir: PathBuf,
    lock: Mutex<Option<File>>,
    read_only: bool,
}

/// Another process holds the store.
#[derive(Debug)]
pub struct LockedError(pub PathBuf);

impl FileBackend {
    /// Opens (creating if needed) the data directory and takes its exclusive lock.
    pub fn open(dir: &Path) -> io::Result<Result<FileBackend, LockedError>> {
        fs::create_dir_all(dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Err(LockedError(dir.to_path_buf()))),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Ok(FileBackend { dir: dir.to_path_buf(), lock: Mutex::new(Some(lock)), read_only: false }))
    }
}

impl FileBackend {
    /// Opens the data directory for reading only, without its lock, so operator tools can
    /// inspect a store a running server holds. Every change fails. What a concurrent writer is
    /// in the middle of writing may look like a torn tail.
    pub fn open_read_only(dir: &Path) -> io::Result<FileBackend> {
        if !dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory", dir.display())));
        }
        Ok(FileBackend { dir: dir.to_path_buf(), lock: Mutex::new(None), read_only: true })
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "store opened read-only"));
        }
        Ok(())
    }
}

impl Backend for FileBackend {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let f = OpenOptions::new().read(true).write(!self.read_only).open(self.dir.join(name))?;
        Ok(Arc::new(RealFile::new(f)))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        self.writable()?;
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(self.dir.join(name))?;
        Ok(Arc::new(RealFile::new(f)))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.writable()?;
        fs::rename(self.dir.join(from), self.dir.join(to))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.writable()?;
        fs::remove_file(self.dir.join(name))
    }
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn unlock(&self) {
        // Closing the descriptor releases the lock.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

struct RealFile {
    file: File,
    /// A read-only map of a prefix of the file. Records are never rewritten once written and a
    /// mapped file is never truncated (recovery cuts a torn tail before anything maps it), so
    /// the mapped bytes never change under a reader.
    map: RwLock<Option<Arc<memmap2::Mmap>>>,
}

impl RealFile {
    fn new(file: File) -> RealFile {
        RealFile { file, map: RwLock::new(None) }
    }

    fn mapping_covering(&self, end: usize) -> io::Result<Arc<memmap2::Mmap>> {
        if let Some(m) = self.map.read().unwrap_or_else(|e| e.into_inner()).as_ref()
            && m.len() >= end
        {
            return Ok(m.clone());
        }
        let mut guard = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = guard.as_ref()
            && m.len() >= end
        {
            return Ok(m.clone());
        }
        let len = self.file.metadata()?.len() as usize;
        if len < end {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of a segment"));
        }
        // SAFETY: the store never truncates or rewrites bytes of a file below a length that may
        // be mapped (see the field comment), so the mapped memory is never changed under us;
        // another process cannot touch the files because the directory lock is exclusive.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        let map = Arc::new(map);
        *guard = Some(map.clone());
        Ok(map)
    }
}

impl BackendFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::other("reservation out of range"));
        };
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Filesystems without fallocate: writes will allocate as they go.
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
            _ => Err(err),
        }
    }
    fn view(&self, offset: u64, len: usize) -> io::Result<View> {
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset out of range"))?;
        let end = start.checked_add(len).ok_or_else(|| io::Error::other("offset out of range"))?;
        let map = self.mapping_covering(end)?;
        Ok(View(ViewInner::Mapped(map, start..end)))
    }
}

// ---------------------------------------------------------------------------------------
// In memory, with crash images and injected faults.

struct MemFileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync (`usize::MAX` when clean); bytes below it
    /// are equal in `live` and `durable`, so a sync copies only the rest.
    dirty_from: usize,
}

impl MemFileData {
    fn new(bytes: Vec<u8>) -> MemFileData {
        MemFileData { live: bytes.clone(), durable: bytes, dirty_from: usize::MAX }
    }
}

#[derive(Default)]
struct MemDir {
    next_id: u64,
    files: HashMap<u64, Arc<Mutex<MemFileData>>>,
    live_names: HashMap<String, u64>,
    durable_names: HashMap<String, u64>,
    syncs: u64,
    /// Sync number (1-based) from which every sync fails.
    fail_sync_from: Option<u64>,
    /// Writes fail with "no space left" while set.
    disk_full: bool,
}

/// In-memory backend for tests. Clones share the same directory.
#[derive(Clone, Default)]
pub struct MemBackend {
    dir: Arc<Mutex<MemDir>>,
}

impl MemBackend {
    pub fn new() -> MemBackend {
        MemBackend::default()
    }

    /// Number of syncs (file or directory) so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Makes sync number `n` (1-based) and every later one fail with an IO error.
    pub fn fail_syncs_from(&self, n: Option<u64>) {
        self.lock().fail_sync_from = n;
    }

    pub fn set_disk_full(&self, full: bool) {
        self.lock().disk_full = full;
    }

    /// What a power cut now would leave: durable contents under durable names. `torn` is
    /// called for every file whose live bytes differ from its durable ones and returns how
    /// many bytes of the unsynced tail survive (a torn write), or `None` to keep none.
    pub fn crash_image(&self, mut torn: impl FnMut(&str, usize) -> Option<usize>) -> MemBackend {
        let dir = self.lock();
        let mut out = MemDir::default();
        for (name, id) in &dir.durable_names {
            let data = dir.files[id].lock().unwrap_or_else(|e| e.into_inner());
            let mut bytes = data.durable.clone();
            if data.live.len() > bytes.len() && data.live.starts_with(&bytes) {
                let extra = data.live.len() - bytes.len();
                if let Some(keep) = torn(name, extra) {
                    let keep = keep.min(extra);
                    bytes.extend_from_slice(&data.live[data.durable.len()..data.durable.len() + keep]);
                }
            }
            out.next_id += 1;
            let nid = out.next_id;
            out.files.insert(nid, Arc::new(Mutex::new(MemFileData::new(bytes))));
            out.live_names.insert(name.clone(), nid);
            out.durable_names.insert(name.clone(), nid);
        }
        MemBackend { dir: Arc::new(Mutex::new(out)) }
    }

    /// The live contents of a file, for tests that corrupt or inspect it.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let dir = self.lock();
        let id = dir.live_names.get(name)?;
        Some(dir.files[id].lock().unwrap_or_else(|e| e.into_inner()).live.clone())
    }

    /// Replaces a file's contents (live and durable), for corruption tests.
    pub fn set_file_bytes(&self, name: &str, bytes: Vec<u8>) {
        let dir = self.lock();
        if let Some(id) = dir.live_names.get(name) {
            let mut f = dir.files[id].lock().unwrap_or_else(|e| e.into_inner());
            *f = MemFileData::new(bytes);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemDir> {
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_sync(&self) -> io::Result<()> {
        let mut dir = self.lock();
        dir.syncs += 1;
        if dir.fail_sync_from.is_some_and(|n| dir.syncs >= n) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

impl Backend for MemBackend {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = self.lock().live_names.keys().cloned().collect();
        v.sort();
        Ok(v)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let dir = self.lock();
        let id = *dir.live_names.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Arc::new(MemFile { data: dir.files[&id].clone(), backend: self.clone() }))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let mut dir = self.lock();
        if dir.live_names.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        dir.next_id += 1;
        let id = dir.next_id;
        let data = Arc::new(Mutex::new(MemFileData::new(Vec::new())));
        dir.files.insert(id, data.clone());
        dir.live_names.insert(name.to_string(), id);
        Ok(Arc::new(MemFile { data, backend: self.clone() }))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut dir = self.lock();
        let id = dir.live_names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        dir.live_names.insert(to.to_string(), id);
        Ok(())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        let mut dir = self.lock();
        dir.live_names.remove(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.count_sync()?;
        let mut dir = self.lock();
        dir.durable_names = dir.live_names.clone();
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".to_string()
    }
}

struct MemFile {
    data: Arc<Mutex<MemFileData>>,
    backend: MemBackend,
}

impl MemFile {
    fn data(&self) -> std::sync::MutexGuard<'_, MemFileData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BackendFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data().live.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data();
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| d.live.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.backend.lock().disk_full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let mut d = self.data();
        let start = offset as usize;
        d.dirty_from = d.dirty_from.min(start);
        if d.live.len() < start + buf.len() {
            d.live.resize(start + buf.len(), 0);
        }
        d.live[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = self.data();
        d.dirty_from = d.dirty_from.min(len as usize);
        d.live.resize(len as usize, 0);
        Ok(())
    }
    fn reserve(&self, _offset: u64, _len: u64) -> io::Result<()> {
        if self.backend.lock().disk_full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.backend.count_sync()?;
        let mut d = self.data();
        let keep = d.dirty_from.min(d.durable.len()).min(d.live.len());
        d.durable.truncate(keep);
        let tail = d.live[keep..].to_vec();
        d.durable.extend_from_slice(&tail);
        d.dirty_from = usize::MAX;
        Ok(())
    }
}
