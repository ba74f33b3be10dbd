//! Maildir++ writer.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::maildir::{KEYWORDS_FILE, parse_keywords};
use super::{FORWARDED, FlagSet, MailMessage, is_valid_keyword, normalize_folder, system_time, utf7_imap_encode};

/// Unique-name counter shared by all writers of the process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A problem writing a Maildir.
#[derive(Debug)]
pub enum ExportError {
    /// An I/O operation failed; `action` says what was being done.
    Io { path: PathBuf, action: &'static str, source: io::Error },
    /// The folder name cannot be written as a Maildir++ directory.
    InvalidFolder { folder: String, reason: &'static str },
    /// A `\`-flag other than the five system flags (and `\Recent`, which is
    /// silently skipped).
    InvalidFlag { flag: String },
}

impl ExportError {
    fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        ExportError::Io { path: path.into(), action, source }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Io { path, action, source } => write!(f, "could not {action} {}: {source}", path.display()),
            ExportError::InvalidFolder { folder, reason } => {
                write!(f, "cannot write folder \"{folder}\" as a Maildir++ folder: {reason}")
            }
            ExportError::InvalidFlag { flag } => {
                write!(f, "cannot write flag {flag}: Maildir has no letter for it")
            }
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where [`MaildirWriter::append`] put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The message file in the folder's `cur/`.
    pub path: PathBuf,
    /// Keywords that could not be written: not valid IMAP atoms, or the
    /// folder already uses all 26 keyword letters Dovecot's scheme has.
    pub dropped_keywords: Vec<String>,
}

struct Folder {
    dir: PathBuf,
    keywords: [Option<String>; 26],
}

/// Writes messages as a Maildir++ tree that [`super::Maildir`] (and
/// Dovecot) read back: the root is INBOX, folder "Lists/rust" is
/// `.Lists.rust` (components in modified UTF-7) with a `maildirfolder`
/// file; messages go to `cur/` as
/// `<internal_date>.P<pid>Q<counter>_<n>.<host>,S=<size>:2,<flags>`, with
/// the mtime set to the internal date; keywords go through the folder's
/// `dovecot-keywords`. Each message is written to `tmp/`, fsynced and
/// renamed into `cur/`. Writing into an existing Maildir adds to it.
pub struct MaildirWriter {
    root: PathBuf,
    host: String,
    folders: HashMap<String, Folder>,
    /// Directories whose entries changed, fsynced by [`MaildirWriter::finish`].
    touched: BTreeSet<PathBuf>,
}

impl MaildirWriter {
    /// Creates the root Maildir (and its parents) if needed.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, ExportError> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|e| ExportError::io(&root, "create directory", e))?;
        let mut writer = MaildirWriter { root, host: host_name(), folders: HashMap::new(), touched: BTreeSet::new() };
        writer.folder("INBOX")?;
        Ok(writer)
    }

    /// The Maildir root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a folder (which may stay empty) and returns its directory.
    pub fn create_folder(&mut self, folder: &str) -> Result<PathBuf, ExportError> {
        Ok(self.folder(folder)?.dir.clone())
    }

    fn folder(&mut self, name: &str) -> Result<&mut Folder, ExportError> {
        let name = normalize_folder(name);
        match self.folders.entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let dir = match folder_dir_name(v.key())? {
                    None => self.root.clone(),
                    Some(sub) => self.root.join(sub),
                };
                let created = make_maildir(&dir, &mut self.touched)?;
                if created && dir != self.root {
                    self.touched.insert(self.root.clone());
                }
                if dir != self.root {
                    let marker = dir.join("maildirfolder");
                    OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&marker)
                        .map_err(|e| ExportError::io(&marker, "create file", e))?;
                }
                let mut keywords: [Option<String>; 26] = Default::default();
                let kw_path = dir.join(KEYWORDS_FILE);
                match fs::read(&kw_path) {
                    Ok(data) => parse_keywords(&String::from_utf8_lossy(&data), &mut keywords),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ExportError::io(&kw_path, "read keyword file", e)),
                }
                Ok(v.insert(Folder { dir, keywords }))
            }
        }
    }

    /// Writes one message into its folder (created on first use).
    pub fn append(&mut self, msg: &MailMessage) -> Result<Written, ExportError> {
        let mut letters: Vec<u8> = Vec::new();
        for flag in &msg.flags {
            match FlagSet::bit_of(flag) {
                Some(FlagSet::ANSWERED) => letters.push(b'R'),
                Some(FlagSet::FLAGGED) => letters.push(b'F'),
                Some(FlagSet::DELETED) => letters.push(b'T'),
                Some(FlagSet::SEEN) => letters.push(b'S'),
                Some(_) => letters.push(b'D'),
                None if flag.eq_ignore_ascii_case("\\Recent") => {}
                None => return Err(ExportError::InvalidFlag { flag: flag.clone() }),
            }
        }
        let host = self.host.clone();
        let folder = self.folder(&msg.folder)?;
        let mut dropped_keywords = Vec::new();
        let mut table_changed = false;
        for kw in &msg.keywords {
            if kw.eq_ignore_ascii_case(FORWARDED) {
                letters.push(b'P');
                continue;
            }
            if !is_valid_keyword(kw) {
                dropped_keywords.push(kw.clone());
                continue;
            }
            let known = folder.keywords.iter().position(|k| k.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(kw)));
            let index = match known {
                Some(i) => i,
                None => match folder.keywords.iter().position(Option::is_none) {
                    Some(i) => {
                        folder.keywords[i] = Some(kw.clone());
                        table_changed = true;
                        i
                    }
                    None => {
                        dropped_keywords.push(kw.clone());
                        continue;
                    }
                },
            };
            letters.push(b'a' + index as u8);
        }
        letters.sort_unstable();
        letters.dedup();
        let letters = String::from_utf8_lossy(&letters).into_owned();
        let dir = folder.dir.clone();
        let table = table_changed.then(|| folder.keywords.clone());
        if let Some(table) = table {
            write_keywords(&dir, &table, &mut self.touched)?;
        }

        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let size = msg.bytes.len();
        for n in 0..1000u32 {
            let base = format!("{}.P{pid}Q{seq}_{n}.{host},S={size}", msg.internal_date);
            let tmp = dir.join("tmp").join(&base);
            let path = dir.join("cur").join(format!("{base}:2,{letters}"));
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            let file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ExportError::io(&tmp, "create file", e)),
            };
            if let Err(err) = fill(file, &tmp, msg)
                .and_then(|()| fs::rename(&tmp, &path).map_err(|e| ExportError::io(&path, "rename into", e)))
            {
                let _ = fs::remove_file(&tmp);
                return Err(err);
            }
            self.touched.insert(dir.join("cur"));
            return Ok(Written { path, dropped_keywords });
        }
        Err(ExportError::io(dir.join("tmp"), "find a free file name in", io::Error::from(io::ErrorKind::AlreadyExists)))
    }

    /// Fsyncs every directory the writer changed, so that the renames are
    /// durable. Message files themselves are fsynced before their rename.
    pub fn finish(self) -> Result<(), ExportError> {
        for dir in &self.touched {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ExportError::io(dir, "sync directory", e))?;
        }
        Ok(())
    }
}

/// Writes the message, sets its times, fsyncs.
fn fill(mut file: File, path: &Path, msg: &MailMessage) -> Result<(), ExportError> {
    file.write_all(&msg.bytes).map_err(|e| ExportError::io(path, "write", e))?;
    let t = system_time(msg.internal_date);
    file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(|e| ExportError::io(path, "set the modification time of", e))?;
    file.sync_all().map_err(|e| ExportError::io(path, "sync", e))
}

/// The Maildir++ directory name of a folder; `None` for INBOX (the root).
fn folder_dir_name(folder: &str) -> Result<Option<String>, ExportError> {
    if folder == "INBOX" {
        return Ok(None);
    }
    let invalid = |reason| ExportError::InvalidFolder { folder: folder.to_string(), reason };
    let mut dir = String::new();
    for component in folder.split('/') {
        if component.is_empty() {
            return Err(invalid("it has an empty hierarchy level"));
        }
        if component.contains('.') {
            return Err(invalid("it contains '.', which Maildir++ uses as its hierarchy separator"));
        }
        dir.push('.');
        dir.push_str(&utf7_imap_encode(component));
    }
    Ok(Some(dir))
}

/// Creates `dir` with cur/, new/ and tmp/; true if `dir` did not exist.
fn make_maildir(dir: &Path, touched: &mut BTreeSet<PathBuf>) -> Result<bool, ExportError> {
    let created = !dir.is_dir();
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        if !path.is_dir() {
            fs::create_dir_all(&path).map_err(|e| ExportError::io(&path, "create directory", e))?;
            touched.insert(dir.to_path_buf());
        }
    }
    Ok(created)
}

/// Rewrites `dovecot-keywords` atomically (tmp/, fsync, rename).
fn write_keywords(
    dir: &Path,
    table: &[Option<String>; 26],
    touched: &mut BTreeSet<PathBuf>,
) -> Result<(), ExportError> {
    let mut text = String::new();
    for (i, kw) in table.iter().enumerate() {
        if let Some(kw) = kw {
            text.push_str(&format!("{i} {kw}\n"));
        }
    }
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join("tmp").join(format!("{KEYWORDS_FILE}.P{}Q{seq}", std::process::id()));
    let result = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| ExportError::io(&tmp, "write", e))
        .and_then(|()| {
            let path = dir.join(KEYWORDS_FILE);
            fs::rename(&tmp, &path).map_err(|e| ExportError::io(&path, "rename into", e))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    touched.insert(dir.to_path_buf());
    result
}

/// The host part of Maildir file names, with the characters Maildir
/// reserves escaped as octal (`/` `\057`, `:` `\072`, and `,` `;` `!`).
fn host_name() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let mut host = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' | ':' | ',' | ';' | '!' => host.push_str(&format!("\\{:03o}", c as u32)),
            c if c.is_ascii_graphic() => host.push(c),
            _ => host.push('_'),
        }
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_dirs() {
        assert_eq!(folder_dir_name("INBOX").unwrap(), None);
        assert_eq!(folder_dir_name("Sent").unwrap().as_deref(), Some(".Sent"));
        assert_eq!(folder_dir_name("Lists/rust").unwrap().as_deref(), Some(".Lists.rust"));
        assert_eq!(folder_dir_name("INBOX/Entwürfe").unwrap().as_deref(), Some(".INBOX.Entw&APw-rfe"));
        assert!(folder_dir_name("v1.2").is_err());
        assert!(folder_dir_name("a//b").is_err());
        assert!(folder_dir_name("").is_err());
        let err = folder_dir_name("v1.2").unwrap_err().to_string();
        assert!(err.contains("\"v1.2\"") && err.contains("'.'"), "{err}");
    }

    #[test]
    fn host_is_safe() {
        let h = host_name();
        assert!(!h.is_empty());
        assert!(!h.contains(['/', ':', ',', ';', '!']), "{h}");
    }
}
