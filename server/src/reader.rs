//! Reading a store without the engine's `Store`: recovery in read-only mode (no lock, nothing
//! changed on disk), so the tools work on a store a running server holds, and message bodies
//! and metadata read straight from the segment files.

use std::path::Path;

use postlog_engine::OpenError;
use postlog_engine::backend::FileBackend;

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

// Reading blobs and metadata straight from segment files is the engine's `read` module.
pub use postlog_engine::read::{read_body, read_meta};
