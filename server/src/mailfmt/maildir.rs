//! Maildir reader: Maildir++ (`.Sent`, `.Lists.rust`) and the "fs" layout
//! (`Lists/rust/{cur,new,tmp}`), with Dovecot's `dovecot-keywords`.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{
    Estimate, FORWARDED, FlagSet, ImportError, MailMessage, MailSource, normalize_folder, push_keyword, unix_seconds,
    utf7_imap_decode,
};

/// How deep the "fs" layout walk goes (guards against symlink loops).
const MAX_DEPTH: usize = 32;

/// Name of Dovecot's per-folder keyword table.
pub(crate) const KEYWORDS_FILE: &str = "dovecot-keywords";

/// A Maildir tree read as a stream of messages.
///
/// Folders: the root's `cur/` and `new/` are "INBOX"; Maildir++ folders
/// `.A.B` are "A/B"; plain subdirectories holding `cur/` or `new/` (the
/// "fs" layout) are named by their path. Names are decoded from modified
/// UTF-7 when valid (otherwise used as they are). `tmp/` is ignored, and so
/// are hidden files.
///
/// Within a folder, messages come in file name order (which for Maildir is
/// delivery order), `cur/` and `new/` merged.
///
/// Flags come from the `:2,` info letters (D F R S T; P is the keyword
/// `$Forwarded`; a..z through the folder's `dovecot-keywords`); `new/`
/// messages are never `\Seen`. The internal date is the earlier of the
/// file name's leading Unix time and the file's mtime (just the mtime when
/// the name has none): Dovecot keeps INTERNALDATE in the mtime, which
/// APPEND makes older than the name, while a copy that lost the mtimes
/// makes it newer.
pub struct Maildir {
    dirs: Vec<FolderDir>,
    entries: std::vec::IntoIter<Entry>,
    pending: VecDeque<ImportError>,
    estimate: Estimate,
    bytes_read: u64,
}

struct FolderDir {
    name: String,
    /// Keyword for each lowercase info letter, from `dovecot-keywords`.
    keywords: [Option<String>; 26],
}

struct Entry {
    path: PathBuf,
    dir: usize,
    in_new: bool,
    size: u64,
}

impl Maildir {
    /// Scans the tree: folders, `dovecot-keywords` files and the names of
    /// all message files (no message is read yet). Fails only if `dir` is
    /// unusable or holds no Maildir at all; problems with single
    /// subdirectories become `Err` items of the iteration.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ImportError> {
        let root = dir.as_ref();
        let meta = fs::metadata(root).map_err(|e| ImportError::io(root, "open Maildir directory", e))?;
        if !meta.is_dir() {
            return Err(ImportError::format(root, "is not a directory, so it cannot be a Maildir"));
        }
        let mut pending = VecDeque::new();
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        // Directories already walked, by (device, inode): symlink loops end.
        let mut visited = HashSet::from([(meta.dev(), meta.ino())]);
        if has_maildir(root) {
            found.push(("INBOX".to_string(), root.to_path_buf()));
        }
        for (name, path) in subdirs(root, &mut pending) {
            if matches!(name.as_str(), "cur" | "new" | "tmp") {
                continue;
            }
            if let Some(plus) = name.strip_prefix('.') {
                if !plus.is_empty() && has_maildir(&path) {
                    let folder: Vec<String> = plus.split('.').map(decode_component).collect();
                    found.push((normalize_folder(&folder.join("/")), path));
                }
            } else {
                let mut components = vec![decode_component(&name)];
                walk_fs(&path, &mut components, &mut visited, &mut found, &mut pending);
            }
        }
        if found.is_empty() {
            return Err(pending.pop_front().unwrap_or_else(|| {
                ImportError::format(
                    root,
                    "is not a Maildir: neither it nor any subdirectory has a cur/ or new/ directory",
                )
            }));
        }
        // INBOX first, then by name; the sort is stable for duplicates.
        found.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));

        let mut dirs = Vec::with_capacity(found.len());
        let mut entries = Vec::new();
        let mut total_bytes = 0;
        for (index, (name, path)) in found.into_iter().enumerate() {
            let keywords = read_keywords(&path, &mut pending);
            let mut dir_entries = Vec::new();
            for sub in ["cur", "new"] {
                list_messages(&path.join(sub), index, sub == "new", &mut dir_entries, &mut pending);
            }
            dir_entries.sort_by_cached_key(|e: &Entry| {
                let name = file_name(&e.path);
                (name_date(&name).unwrap_or(i64::MAX), name)
            });
            total_bytes += dir_entries.iter().map(|e| e.size).sum::<u64>();
            entries.extend(dir_entries);
            dirs.push(FolderDir { name, keywords });
        }
        Ok(Maildir {
            dirs,
            estimate: Estimate { messages: Some(entries.len() as u64), bytes: total_bytes },
            entries: entries.into_iter(),
            pending,
            bytes_read: 0,
        })
    }

    fn read_entry(&mut self, entry: Entry) -> Result<MailMessage, ImportError> {
        self.bytes_read += entry.size;
        let path = &entry.path;
        let meta = fs::metadata(path).map_err(|e| ImportError::io(path, "inspect message file", e))?;
        if !meta.is_file() {
            return Err(ImportError::NotAFile {
                path: path.clone(),
                is_dir: meta.is_dir(),
                expected: "a message file",
            });
        }
        let bytes = fs::read(path).map_err(|e| ImportError::io(path, "read message file", e))?;
        if bytes.is_empty() {
            return Err(ImportError::format(path, "the message file is empty"));
        }
        let dir = &self.dirs[entry.dir];
        let name = file_name(path);
        let (flags, keywords) = info_flags(&name, &dir.keywords, entry.in_new);
        let mtime = meta.modified().ok().map(unix_seconds);
        // Dovecot keeps INTERNALDATE in the mtime, and IMAP APPEND/COPY make
        // it older than the delivery time in the name; a copy that did not
        // keep mtimes makes it newer. The earlier of the two is right in
        // both cases.
        let internal_date = match (name_date(&name), mtime) {
            (Some(n), Some(m)) => n.min(m),
            (Some(n), None) => n,
            (None, Some(m)) => m,
            (None, None) => 0,
        };
        Ok(MailMessage { folder: dir.name.clone(), flags, keywords, internal_date, bytes })
    }
}

impl Iterator for Maildir {
    type Item = Result<MailMessage, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(err) = self.pending.pop_front() {
            return Some(Err(err));
        }
        let entry = self.entries.next()?;
        Some(self.read_entry(entry))
    }
}

impl MailSource for Maildir {
    fn estimate(&self) -> Estimate {
        self.estimate
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn folders(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for d in &self.dirs {
            if !names.contains(&d.name) {
                names.push(d.name.clone());
            }
        }
        names
    }
}

fn has_maildir(path: &Path) -> bool {
    path.join("cur").is_dir() || path.join("new").is_dir()
}

/// A folder name component: modified UTF-7 decoded when valid, else as is.
fn decode_component(raw: &str) -> String {
    utf7_imap_decode(raw).unwrap_or_else(|| raw.to_string())
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Subdirectories of `dir` (symlinks followed), sorted by name.
fn subdirs(dir: &Path, pending: &mut VecDeque<ImportError>) -> Vec<(String, PathBuf)> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            pending.push_back(ImportError::io(dir, "list directory", e));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                pending.push_back(ImportError::io(dir, "list directory", e));
                continue;
            }
        };
        let path = entry.path();
        if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            out.push((file_name(&path), path));
        }
    }
    out.sort();
    out
}

/// The "fs" layout: `path` is folder `components` if it holds cur/ or new/;
/// its non-hidden subdirectories are child folders.
fn walk_fs(
    path: &Path,
    components: &mut Vec<String>,
    visited: &mut HashSet<(u64, u64)>,
    found: &mut Vec<(String, PathBuf)>,
    pending: &mut VecDeque<ImportError>,
) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    if components.len() > MAX_DEPTH || !visited.insert((meta.dev(), meta.ino())) {
        return;
    }
    if has_maildir(path) {
        found.push((normalize_folder(&components.join("/")), path.to_path_buf()));
    }
    for (name, child) in subdirs(path, pending) {
        if name.starts_with('.') || matches!(name.as_str(), "cur" | "new" | "tmp") {
            continue;
        }
        components.push(decode_component(&name));
        walk_fs(&child, components, visited, found, pending);
        components.pop();
    }
}

/// Parses `dovecot-keywords` ("N name" lines) of a folder directory.
fn read_keywords(dir: &Path, pending: &mut VecDeque<ImportError>) -> [Option<String>; 26] {
    let mut table: [Option<String>; 26] = Default::default();
    let path = dir.join(KEYWORDS_FILE);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return table,
        Err(e) => {
            pending.push_back(ImportError::io(&path, "read keyword file", e));
            return table;
        }
    };
    parse_keywords(&String::from_utf8_lossy(&data), &mut table);
    table
}

pub(crate) fn parse_keywords(text: &str, table: &mut [Option<String>; 26]) {
    for line in text.lines() {
        let Some((n, name)) = line.trim().split_once(' ') else {
            continue;
        };
        let name = name.trim();
        if let Ok(n) = n.parse::<usize>()
            && n < table.len()
            && !name.is_empty()
        {
            table[n] = Some(name.to_string());
        }
    }
}

fn list_messages(dir: &Path, index: usize, in_new: bool, out: &mut Vec<Entry>, pending: &mut VecDeque<ImportError>) {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            pending.push_back(ImportError::io(dir, "list directory", e));
            return;
        }
    };
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
        if name.starts_with('.') {
            continue;
        }
        let size = size_from_name(&name).or_else(|| entry.metadata().ok().map(|m| m.len())).unwrap_or(0);
        out.push(Entry { path: entry.path(), dir: index, in_new, size });
    }
}

/// Splits "base:2,FLAGS" into base and flag letters (also with `;` or `!`
/// as the separator, as some tools on other systems write).
pub(crate) fn split_info(name: &str) -> (&str, Option<&str>) {
    for sep in [":2,", ";2,", "!2,"] {
        if let Some(i) = name.rfind(sep) {
            return (&name[..i], Some(&name[i + sep.len()..]));
        }
    }
    (name, None)
}

/// The leading Unix time of a name like "1234567890.M1P2.host".
pub(crate) fn name_date(name: &str) -> Option<i64> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 12 || name.as_bytes().get(digits) != Some(&b'.') {
        return None;
    }
    name[..digits].parse().ok()
}

/// The `S=<size>` field of a Maildir file name.
fn size_from_name(name: &str) -> Option<u64> {
    let (base, _) = split_info(name);
    let at = base.find(",S=")? + 3;
    let digits = base[at..].bytes().take_while(u8::is_ascii_digit).count();
    base[at..at + digits].parse().ok()
}

/// Flags and keywords from a file name's info suffix. Messages in `new/`
/// are never `\Seen`.
fn info_flags(name: &str, table: &[Option<String>; 26], in_new: bool) -> (Vec<String>, Vec<String>) {
    let mut flags = FlagSet::default();
    let mut keywords = Vec::new();
    if let (_, Some(letters)) = split_info(name) {
        for c in letters.bytes() {
            match c {
                b'D' => flags.set(FlagSet::DRAFT),
                b'F' => flags.set(FlagSet::FLAGGED),
                b'P' => push_keyword(&mut keywords, FORWARDED),
                b'R' => flags.set(FlagSet::ANSWERED),
                b'S' => flags.set(FlagSet::SEEN),
                b'T' => flags.set(FlagSet::DELETED),
                b'a'..=b'z' => {
                    if let Some(kw) = &table[usize::from(c - b'a')] {
                        push_keyword(&mut keywords, kw);
                    }
                }
                _ => {}
            }
        }
    }
    if in_new {
        flags.clear(FlagSet::SEEN);
    }
    (flags.to_vec(), keywords)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = "1700000000.M1P2.host,S=1234,W=1260:2,FRSab";
        assert_eq!(name_date(n), Some(1_700_000_000));
        assert_eq!(size_from_name(n), Some(1234));
        assert_eq!(split_info(n), ("1700000000.M1P2.host,S=1234,W=1260", Some("FRSab")));
        assert_eq!(name_date("msg.eml"), None);
        assert_eq!(name_date("1700000000"), None);
        assert_eq!(split_info("1.x.host"), ("1.x.host", None));
        assert_eq!(size_from_name("1.x.host"), None);
    }

    #[test]
    fn flags_and_keywords() {
        let mut table: [Option<String>; 26] = Default::default();
        parse_keywords("0 $Junk\n1 Work\n\n27 Bad\nx Bad\n", &mut table);
        assert_eq!(table[0].as_deref(), Some("$Junk"));
        assert_eq!(table[1].as_deref(), Some("Work"));
        let (flags, kws) = info_flags("1.x:2,DFPRSTabz", &table, false);
        assert_eq!(flags, ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]);
        assert_eq!(kws, ["$Forwarded", "$Junk", "Work"]);
        let (flags, _) = info_flags("1.x:2,S", &table, true);
        assert!(flags.is_empty());
    }
}
