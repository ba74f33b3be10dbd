//! A directory of `.eml` files, one message each.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Estimate, ImportError, MailMessage, MailSource, date_header, unix_seconds};

/// Every `*.eml` file (case-insensitive extension, hidden files such as
/// macOS `._x.eml` skipped) directly in a directory, in file name order.
/// No flags; the internal date is the Date header if parseable, else the
/// file's mtime. Messages go to folder "INBOX" unless
/// [`EmlDir::with_folder`] says otherwise.
pub struct EmlDir {
    folder: String,
    entries: std::vec::IntoIter<(PathBuf, u64)>,
    pending: VecDeque<ImportError>,
    estimate: Estimate,
    bytes_read: u64,
}

impl EmlDir {
    /// Lists the directory (no message is read yet).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ImportError> {
        let dir = dir.as_ref();
        let rd = fs::read_dir(dir).map_err(|e| ImportError::io(dir, "list directory", e))?;
        let mut pending = VecDeque::new();
        let mut entries = Vec::new();
        for entry in rd {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    pending.push_back(ImportError::io(dir, "list directory", e));
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_eml = name.len() > 4
                && name.is_char_boundary(name.len() - 4)
                && name[name.len() - 4..].eq_ignore_ascii_case(".eml");
            if !is_eml || name.starts_with('.') {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            entries.push((entry.path(), size));
        }
        entries.sort();
        Ok(EmlDir {
            folder: "INBOX".to_string(),
            estimate: Estimate { messages: Some(entries.len() as u64), bytes: entries.iter().map(|e| e.1).sum() },
            entries: entries.into_iter(),
            pending,
            bytes_read: 0,
        })
    }

    /// Puts the messages in `folder` instead of "INBOX".
    pub fn with_folder(mut self, folder: impl Into<String>) -> Self {
        self.folder = folder.into();
        self
    }

    fn read(&mut self, path: PathBuf, size: u64) -> Result<MailMessage, ImportError> {
        self.bytes_read += size;
        let meta = fs::metadata(&path).map_err(|e| ImportError::io(&path, "inspect message file", e))?;
        if !meta.is_file() {
            return Err(ImportError::NotAFile { is_dir: meta.is_dir(), path, expected: "a message file" });
        }
        let bytes = fs::read(&path).map_err(|e| ImportError::io(&path, "read message file", e))?;
        if bytes.is_empty() {
            return Err(ImportError::format(&path, "the message file is empty"));
        }
        let internal_date = date_header(&bytes).or_else(|| meta.modified().ok().map(unix_seconds)).unwrap_or(0);
        Ok(MailMessage { folder: self.folder.clone(), flags: Vec::new(), keywords: Vec::new(), internal_date, bytes })
    }
}

impl Iterator for EmlDir {
    type Item = Result<MailMessage, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(err) = self.pending.pop_front() {
            return Some(Err(err));
        }
        let (path, size) = self.entries.next()?;
        Some(self.read(path, size))
    }
}

impl MailSource for EmlDir {
    fn estimate(&self) -> Estimate {
        self.estimate
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn folders(&self) -> Vec<String> {
        vec![self.folder.clone()]
    }
}
