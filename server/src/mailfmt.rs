//! Reading and writing the formats people move mail in and out with:
//! Maildir (Maildir++ and the "fs" layout), mbox (mboxrd, also CRLF files)
//! and directories of `.eml` files, plus a Maildir++ writer.
//!
//! The module knows nothing about the store. Readers yield plain
//! [`MailMessage`]s, one at a time, as `Result<MailMessage, ImportError>`:
//! a bad file is an `Err` item naming the path, and iteration goes on.
//! Every reader implements [`MailSource`], which adds a cheap up-front
//! [`Estimate`] and a running [`MailSource::bytes_read`] for progress bars,
//! so the import command can hold any of them as `Box<dyn MailSource>`.
//!
//! Memory: the readers hold one message at a time. The mbox reader streams
//! the file line by line through a `BufRead`; it never loads the whole file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod eml;
mod maildir;
mod mbox;
mod utf7;
mod writer;

pub use eml::EmlDir;
pub use maildir::Maildir;
pub use mbox::{DEFAULT_MAX_MESSAGE_SIZE, Mbox};
pub use utf7::{utf7_imap_decode, utf7_imap_encode};
pub use writer::{ExportError, MaildirWriter, Written};

/// IMAP system flag `\Seen`.
pub const SEEN: &str = "\\Seen";
/// IMAP system flag `\Answered`.
pub const ANSWERED: &str = "\\Answered";
/// IMAP system flag `\Flagged`.
pub const FLAGGED: &str = "\\Flagged";
/// IMAP system flag `\Deleted`.
pub const DELETED: &str = "\\Deleted";
/// IMAP system flag `\Draft`.
pub const DRAFT: &str = "\\Draft";
/// The keyword Maildir's `P` ("passed") flag maps to.
pub const FORWARDED: &str = "$Forwarded";

/// One message as a mail format carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailMessage {
    /// IMAP-style mailbox name, hierarchy separator '/', "INBOX" for the Maildir root.
    pub folder: String,
    /// IMAP system flags as text: "\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft".
    /// Readers emit them in that canonical order, without duplicates.
    pub flags: Vec<String>,
    /// Other keywords (e.g. "$Forwarded", "$Junk"), when the format carries them.
    pub keywords: Vec<String>,
    /// Unix seconds.
    pub internal_date: i64,
    /// The message exactly as stored in the source (mbox: without the From_
    /// line and the separating blank line, with `>From ` unescaped).
    pub bytes: Vec<u8>,
}

/// A cheap up-front size estimate of a source, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    /// Number of messages, when it is known without reading the data
    /// (Maildir, eml directory); `None` for mbox, where only a full scan
    /// would tell.
    pub messages: Option<u64>,
    /// Total bytes the reader will go through (file sizes; for mbox the
    /// file length). Compare with [`MailSource::bytes_read`].
    pub bytes: u64,
}

/// What every reader offers besides being an iterator of messages.
pub trait MailSource: Iterator<Item = Result<MailMessage, ImportError>> {
    /// The estimate computed when the source was opened (no further IO).
    fn estimate(&self) -> Estimate;
    /// Bytes consumed so far, on the same scale as [`Estimate::bytes`].
    fn bytes_read(&self) -> u64;
    /// Every folder the source holds, including empty ones, so an importer
    /// can create them even when no message lands in them.
    fn folders(&self) -> Vec<String>;
}

/// A problem with one file, directory or message of an import source.
#[derive(Debug)]
pub enum ImportError {
    /// An I/O operation failed; `action` says what was being done
    /// ("read message file", "list directory", ...).
    Io { path: PathBuf, action: &'static str, source: io::Error },
    /// Something that should be a regular file is not (a directory named
    /// like a message, a socket, ...). `expected` is e.g. "a message file".
    NotAFile { path: PathBuf, is_dir: bool, expected: &'static str },
    /// The data is not in the expected format; `detail` is a sentence
    /// fragment saying what is wrong.
    Format { path: PathBuf, detail: String },
}

impl ImportError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ImportError::Io { path, .. } | ImportError::NotAFile { path, .. } | ImportError::Format { path, .. } => {
                path
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        ImportError::Io { path: path.into(), action, source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        ImportError::Format { path: path.into(), detail: detail.into() }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, action, source } => write!(f, "could not {action} {}: {source}", path.display()),
            ImportError::NotAFile { path, is_dir: true, expected } => {
                write!(f, "{} is a directory, not {expected}", path.display())
            }
            ImportError::NotAFile { path, is_dir: false, expected } => {
                write!(f, "{} is not a regular file, so it is not {expected}", path.display())
            }
            ImportError::Format { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The five IMAP system flags as a bit set, emitted in canonical order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlagSet(u8);

impl FlagSet {
    pub(crate) const ANSWERED: u8 = 1;
    pub(crate) const FLAGGED: u8 = 2;
    pub(crate) const DELETED: u8 = 4;
    pub(crate) const SEEN: u8 = 8;
    pub(crate) const DRAFT: u8 = 16;

    const ORDER: [(u8, &'static str); 5] = [
        (Self::ANSWERED, ANSWERED),
        (Self::FLAGGED, FLAGGED),
        (Self::DELETED, DELETED),
        (Self::SEEN, SEEN),
        (Self::DRAFT, DRAFT),
    ];

    pub(crate) fn set(&mut self, bit: u8) {
        self.0 |= bit;
    }

    pub(crate) fn clear(&mut self, bit: u8) {
        self.0 &= !bit;
    }

    /// The bit for a flag name (case-insensitive), if it is one of the five.
    pub(crate) fn bit_of(name: &str) -> Option<u8> {
        Self::ORDER.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(b, _)| *b)
    }

    pub(crate) fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub(crate) fn to_vec(self) -> Vec<String> {
        Self::ORDER.iter().filter(|(b, _)| self.contains(*b)).map(|(_, n)| (*n).to_string()).collect()
    }
}

/// Adds `kw` to `list` unless an equal keyword (case-insensitively) is there.
pub(crate) fn push_keyword(list: &mut Vec<String>, kw: &str) {
    if !list.iter().any(|k| k.eq_ignore_ascii_case(kw)) {
        list.push(kw.to_string());
    }
}

/// Whether `kw` can be an IMAP keyword (an atom, not a `\` system flag).
pub(crate) fn is_valid_keyword(kw: &str) -> bool {
    !kw.is_empty()
        && kw
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']'))
}

/// Normalises a folder name: a first component equal to "inbox" in any
/// case becomes "INBOX" (IMAP treats INBOX case-insensitively).
pub(crate) fn normalize_folder(name: &str) -> String {
    let (first, rest) = match name.find('/') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    if first.eq_ignore_ascii_case("INBOX") { format!("INBOX{rest}") } else { name.to_string() }
}

/// Unix seconds of a file time (negative before 1970).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            // Round towards minus infinity so that a round trip through
            // `system_time` gives the same second.
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 { -secs - 1 } else { -secs }
        }
    }
}

/// The file time for Unix seconds.
pub(crate) fn system_time(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 { UNIX_EPOCH.checked_add(d) } else { UNIX_EPOCH.checked_sub(d) };
    t.unwrap_or(UNIX_EPOCH)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Calls `f(name, raw_value)` for each header field of a message, up to the
/// blank line ending the header. Folded continuation lines are part of the
/// raw value (line breaks included).
pub(crate) fn for_each_header(msg: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    let mut current: Option<(usize, usize, usize)> = None; // name end, value start, value end
    let mut start_of_field = 0;
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..].iter().position(|&b| b == b'\n').map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        let content = trim_eol(line);
        if content.is_empty() {
            break;
        }
        if matches!(content[0], b' ' | b'\t') {
            if let Some((_, _, vend)) = current.as_mut() {
                *vend = end;
            }
        } else {
            if let Some((nend, vstart, vend)) = current.take() {
                f(&msg[start_of_field..nend], &msg[vstart..vend]);
            }
            if let Some(colon) = content.iter().position(|&b| b == b':') {
                start_of_field = pos;
                current = Some((pos + colon, pos + colon + 1, end));
            }
        }
        pos = end;
    }
    if let Some((nend, vstart, vend)) = current {
        f(&msg[start_of_field..nend], &msg[vstart..vend]);
    }
}

/// A line without its trailing "\n" or "\r\n".
pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The Date header as Unix seconds, if present and parseable (mail-parser).
pub(crate) fn date_header(msg: &[u8]) -> Option<i64> {
    let parsed = mail_parser::MessageParser::new().parse_headers(msg)?;
    let date = parsed.date()?;
    date.is_valid().then(|| date.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // 2026-11-27 14:00:00 UTC
        assert_eq!(days_from_civil(2026, 11, 27) * 86_400 + 14 * 3600, 1_795_788_000);
    }

    #[test]
    fn headers_are_unfolded_and_stop_at_blank_line() {
        let msg = b"Subject: a\r\n b\r\nStatus: RO\r\n\r\nX-Status: A\r\n";
        let mut seen = Vec::new();
        for_each_header(msg, |n, v| {
            seen.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        });
        assert_eq!(
            seen,
            vec![("Subject".to_string(), " a\r\n b\r\n".to_string()), ("Status".to_string(), " RO\r\n".to_string()),]
        );
    }

    #[test]
    fn date_header_parses() {
        let msg = b"Date: Fri, 27 Nov 2026 15:00:00 +0100\r\nSubject: x\r\n\r\nbody";
        assert_eq!(date_header(msg), Some(1_795_788_000));
        assert_eq!(date_header(b"Subject: x\r\n\r\nbody"), None);
    }

    #[test]
    fn time_round_trip() {
        for s in [0, 1, -1, 1_795_788_000, -86_401] {
            assert_eq!(unix_seconds(system_time(s)), s);
        }
    }

    #[test]
    fn folder_normalisation() {
        assert_eq!(normalize_folder("inbox"), "INBOX");
        assert_eq!(normalize_folder("Inbox/Sub"), "INBOX/Sub");
        assert_eq!(normalize_folder("Inboxes"), "Inboxes");
    }

    #[test]
    fn keywords() {
        assert!(is_valid_keyword("$Junk"));
        assert!(!is_valid_keyword("\\Seen"));
        assert!(!is_valid_keyword("two words"));
        assert!(!is_valid_keyword(""));
    }
}
