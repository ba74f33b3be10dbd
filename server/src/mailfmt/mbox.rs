//! mbox reader (mboxrd, tolerant of mboxo; LF or CRLF line endings).
//!
//! The file is streamed line by line through a `BufRead`; only the message
//! being assembled is held in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{
    Estimate, FORWARDED, FlagSet, ImportError, MailMessage, MailSource, date_header, days_from_civil, for_each_header,
    is_valid_keyword, push_keyword, trim_eol,
};

const READ_BUFFER: usize = 64 * 1024;

/// Longest piece of a line read at once: longer lines are read in pieces,
/// so a file without line breaks cannot fill memory.
const MAX_PIECE: u64 = 64 * 1024;

/// Default for [`Mbox::with_max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 256 * 1024 * 1024;

/// Reads an mbox file as a stream of messages.
///
/// Messages start at lines beginning with `From ` that carry an asctime
/// date (`From sender Tue Nov 27 14:00:00 2026`), like mutt and Dovecot
/// do; the very first `From ` line of the file is accepted without one.
/// Body lines `>From `, `>>From `, ... lose one `>` (mboxrd). The blank
/// line before the next From_ line (or at the end of the file) is dropped.
///
/// Memory: the file is read through the `BufRead` in pieces of at most one
/// line (64 KiB at most); only the message being assembled is held, and a
/// message over the size limit is skipped (an `Err` item) without being
/// held.
pub struct Mbox<R = BufReader<File>> {
    path: PathBuf,
    reader: R,
    folder: String,
    total_bytes: u64,
    max_message_size: u64,
    pos: u64,
    /// The current piece: a whole line, or part of a long one.
    line: Vec<u8>,
    /// Whether `line` starts a line.
    line_start: bool,
    /// Whether the next piece starts a line.
    next_line_start: bool,
    /// The From_ line that starts the next message and its byte offset.
    next_from: Option<(Vec<u8>, u64)>,
    started: bool,
    done: bool,
    /// Ordinal of the next message, for error messages (1-based).
    ordinal: u64,
}

impl Mbox {
    /// Opens an mbox file. Messages go to folder "INBOX" unless
    /// [`Mbox::with_folder`] says otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| ImportError::io(path, "open mbox file", e))?;
        let meta = file.metadata().map_err(|e| ImportError::io(path, "inspect mbox file", e))?;
        if !meta.is_file() {
            return Err(ImportError::NotAFile {
                path: path.to_path_buf(),
                is_dir: meta.is_dir(),
                expected: "an mbox file",
            });
        }
        Ok(Self::from_reader(path, BufReader::with_capacity(READ_BUFFER, file), meta.len()))
    }
}

impl<R: BufRead> Mbox<R> {
    /// Reads an mbox from any buffered reader. `path` only names the source
    /// in errors; `total_bytes` is the size reported by [`MailSource::estimate`].
    pub fn from_reader(path: impl Into<PathBuf>, reader: R, total_bytes: u64) -> Self {
        Mbox {
            path: path.into(),
            reader,
            folder: "INBOX".to_string(),
            total_bytes,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            pos: 0,
            line: Vec::new(),
            line_start: true,
            next_line_start: true,
            next_from: None,
            started: false,
            done: false,
            ordinal: 1,
        }
    }

    /// Puts the messages in `folder` instead of "INBOX".
    pub fn with_folder(mut self, folder: impl Into<String>) -> Self {
        self.folder = folder.into();
        self
    }

    /// Messages larger than `bytes` are skipped with an `Err` item instead
    /// of being assembled in memory (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn with_max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Reads the next piece (a line, or at most [`MAX_PIECE`] bytes of
    /// one) into `self.line`; `Ok(false)` at end of file.
    fn read_piece(&mut self) -> Result<bool, ImportError> {
        self.line.clear();
        self.line_start = self.next_line_start;
        match (&mut self.reader).take(MAX_PIECE).read_until(b'\n', &mut self.line) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.pos += n as u64;
                self.next_line_start = self.line.ends_with(b"\n");
                Ok(true)
            }
            Err(e) => {
                self.done = true;
                Err(ImportError::io(&self.path, "read mbox file", e))
            }
        }
    }

    /// Reads the rest of an overlong line and forgets it.
    fn skip_rest_of_line(&mut self) -> Result<(), ImportError> {
        while !self.next_line_start {
            if !self.read_piece()? {
                break;
            }
        }
        Ok(())
    }

    /// Whether the current piece is a From_ line starting a new message.
    fn at_separator(&self) -> bool {
        self.line_start && self.line.starts_with(b"From ") && from_line_date(&self.line).is_some()
    }

    /// Finds the first From_ line. Returns an error item if something other
    /// than blank lines precedes it (the junk is skipped).
    fn find_first(&mut self) -> Option<ImportError> {
        let mut junk: u64 = 0;
        loop {
            let offset = self.pos;
            match self.read_piece() {
                Err(e) => return Some(e),
                Ok(false) => {
                    self.done = true;
                    return (junk > 0).then(|| {
                        ImportError::format(&self.path, "is not an mbox file: no line starts with \"From \"")
                    });
                }
                Ok(true) => {}
            }
            let first_from = junk == 0 && self.line_start && self.line.starts_with(b"From ");
            if first_from || self.at_separator() {
                self.next_from = Some((self.line.clone(), offset));
                if let Err(e) = self.skip_rest_of_line() {
                    return Some(e);
                }
                return (junk > 0).then(|| {
                    ImportError::format(
                        &self.path,
                        format!(
                            "{junk} bytes before the first \"From \" line are not part of any \
                             message and were skipped"
                        ),
                    )
                });
            }
            if junk > 0 || !trim_eol(&self.line).is_empty() {
                junk += self.line.len() as u64;
            }
        }
    }

    fn next_message(&mut self) -> Option<Result<MailMessage, ImportError>> {
        loop {
            if self.done {
                return None;
            }
            if !self.started {
                self.started = true;
                if let Some(err) = self.find_first() {
                    return Some(Err(err));
                }
                continue;
            }
            let Some((from_line, offset)) = self.next_from.take() else {
                self.done = true;
                return None;
            };
            let ordinal = self.ordinal;
            self.ordinal += 1;

            let mut bytes = Vec::new();
            let mut size: u64 = 0;
            let mut last_line_start = 0;
            let mut last_line_blank = false;
            loop {
                match self.read_piece() {
                    Err(e) => return Some(Err(e)),
                    Ok(false) => break,
                    Ok(true) => {}
                }
                if self.at_separator() {
                    let at = self.pos - self.line.len() as u64;
                    self.next_from = Some((self.line.clone(), at));
                    if let Err(e) = self.skip_rest_of_line() {
                        return Some(Err(e));
                    }
                    break;
                }
                let line = &self.line;
                let mut piece: &[u8] = line;
                if self.line_start {
                    last_line_start = bytes.len();
                    last_line_blank = trim_eol(line).is_empty();
                    let quotes = line.iter().take_while(|&&b| b == b'>').count();
                    if quotes > 0 && line[quotes..].starts_with(b"From ") {
                        piece = &line[1..];
                    }
                } else {
                    last_line_blank = false;
                }
                size += piece.len() as u64;
                // Room for the separating blank line, which is dropped below.
                if size <= self.max_message_size.saturating_add(2) {
                    bytes.extend_from_slice(piece);
                } else if !bytes.is_empty() {
                    bytes = Vec::new();
                }
            }
            if last_line_blank && size <= self.max_message_size.saturating_add(2) {
                bytes.truncate(last_line_start);
            }
            if size > self.max_message_size.saturating_add(2) || bytes.len() as u64 > self.max_message_size {
                return Some(Err(ImportError::format(
                    &self.path,
                    format!(
                        "message {ordinal} (From_ line at byte {offset}) is larger than the \
                         limit of {} bytes and was skipped",
                        self.max_message_size
                    ),
                )));
            }
            if bytes.is_empty() {
                return Some(Err(ImportError::format(
                    &self.path,
                    format!("message {ordinal} (From_ line at byte {offset}) is empty"),
                )));
            }
            let mut flags = FlagSet::default();
            let mut keywords = Vec::new();
            let mut pseudo = false;
            for_each_header(&bytes, |name, value| header_flags(name, value, &mut flags, &mut keywords, &mut pseudo));
            if pseudo && ordinal == 1 {
                // UW-IMAP/Dovecot "DON'T DELETE THIS MESSAGE -- FOLDER
                // INTERNAL DATA": folder metadata, not mail.
                continue;
            }
            let internal_date = from_line_date(&from_line).or_else(|| date_header(&bytes)).unwrap_or(0);
            return Some(Ok(MailMessage {
                folder: self.folder.clone(),
                flags: flags.to_vec(),
                keywords,
                internal_date,
                bytes,
            }));
        }
    }
}

/// Flags from the Status, X-Status, X-Keywords (Dovecot), X-Mozilla-Status
/// and X-Mozilla-Keys (Thunderbird) headers.
fn header_flags(name: &[u8], value: &[u8], flags: &mut FlagSet, keywords: &mut Vec<String>, pseudo: &mut bool) {
    let value_str = String::from_utf8_lossy(value);
    let value_str = value_str.trim();
    if name.eq_ignore_ascii_case(b"Status") {
        for c in value_str.chars() {
            if c == 'R' {
                flags.set(FlagSet::SEEN);
            }
            // 'O' (old, not recent) has no counterpart in MailMessage.
        }
    } else if name.eq_ignore_ascii_case(b"X-Status") {
        for c in value_str.chars() {
            match c {
                'A' => flags.set(FlagSet::ANSWERED),
                'F' => flags.set(FlagSet::FLAGGED),
                'T' => flags.set(FlagSet::DRAFT),
                'D' => flags.set(FlagSet::DELETED),
                _ => {}
            }
        }
    } else if name.eq_ignore_ascii_case(b"X-Keywords") || name.eq_ignore_ascii_case(b"X-Mozilla-Keys") {
        for kw in value_str.split(|c: char| c.is_ascii_whitespace() || c == ',') {
            if is_valid_keyword(kw) {
                push_keyword(keywords, kw);
            }
        }
    } else if name.eq_ignore_ascii_case(b"X-Mozilla-Status") {
        if let Ok(bits) = u32::from_str_radix(value_str.trim_start_matches("0x"), 16) {
            for (bit, flag) in [
                (0x0001, FlagSet::SEEN),
                (0x0002, FlagSet::ANSWERED),
                (0x0004, FlagSet::FLAGGED),
                (0x0008, FlagSet::DELETED),
            ] {
                if bits & bit != 0 {
                    flags.set(flag);
                }
            }
            if bits & 0x1000 != 0 {
                push_keyword(keywords, FORWARDED);
            }
        }
    } else if name.eq_ignore_ascii_case(b"X-IMAP") {
        *pseudo = true;
    }
}

fn month_number(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s)).map(|i| i as u32 + 1)
}

fn is_weekday(s: &str) -> bool {
    ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].iter().any(|d| d.eq_ignore_ascii_case(s))
}

/// "HH:MM:SS" or "HH:MM" as seconds of the day.
fn time_of_day(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec)
}

/// "+hhmm" / "-hhmm" as seconds east of UTC.
fn numeric_zone(s: &str) -> Option<i64> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(sign * ((n / 100) * 3600 + (n % 100) * 60))
}

/// The asctime date of a From_ line as Unix seconds:
/// `From sender Tue Nov 27 14:00:00 2026`, also with the sender missing,
/// seconds missing, or a zone (`+0100`, `CET`) before or after the year.
/// Without a numeric zone the time is taken as UTC.
pub(crate) fn from_line_date(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"From ")?;
    let text = String::from_utf8_lossy(trim_eol(rest));
    let tokens: Vec<&str> = text.split_ascii_whitespace().take(16).collect();
    for i in 1..tokens.len() {
        let Some(month) = month_number(tokens[i]) else {
            continue;
        };
        if !is_weekday(tokens[i - 1]) || i + 2 >= tokens.len() {
            continue;
        }
        let Ok(day) = tokens[i + 1].parse::<u32>() else {
            continue;
        };
        let Some(secs) = time_of_day(tokens[i + 2]) else {
            continue;
        };
        if !(1..=31).contains(&day) {
            continue;
        }
        let mut year = None;
        let mut zone = 0;
        for t in tokens.iter().skip(i + 3).take(3) {
            if let Some(z) = numeric_zone(t) {
                zone = z;
            } else if year.is_none() && t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
                year = t.parse::<i64>().ok();
            }
        }
        let year = year?;
        return Some(days_from_civil(year, month, day) * 86_400 + secs - zone);
    }
    None
}

impl<R: BufRead> Iterator for Mbox<R> {
    type Item = Result<MailMessage, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message()
    }
}

impl<R: BufRead> MailSource for Mbox<R> {
    fn estimate(&self) -> Estimate {
        Estimate { messages: None, bytes: self.total_bytes }
    }

    fn bytes_read(&self) -> u64 {
        self.pos
    }

    fn folders(&self) -> Vec<String> {
        vec![self.folder.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_dates() {
        let t = 1_795_788_000; // 2026-11-27 14:00:00 UTC
        assert_eq!(from_line_date(b"From sender Tue Nov 27 14:00:00 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From sender Tue Nov 27 14:00:00 2026\r\n"), Some(t));
        assert_eq!(from_line_date(b"From - Tue Nov 27 14:00:00 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From Tue Nov 27 14:00:00 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From a@b  Tue Nov 27 14:00 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From a@b Tue Nov 27 15:00:00 +0100 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From a@b Tue Nov 27 14:00:00 2026 +0000\n"), Some(t));
        assert_eq!(from_line_date(b"From a@b Tue Nov 27 14:00:00 CET 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From \"a b\"@c Tue Nov 27 14:00:00 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"), Some(0));
        assert_eq!(from_line_date(b"From here to eternity\n"), None);
        assert_eq!(from_line_date(b"From Jan 5 12:00 2020 onwards\n"), None);
        assert_eq!(from_line_date(b"From a@b\n"), None);
        assert_eq!(from_line_date(b">From a@b Tue Nov 27 14:00:00 2026\n"), None);
    }
}
