//! [`ReplyParser`]: server replies (RFC 5321 section 4.2) from bytes split anywhere.
//!
//! ```text
//!  reply      = *( code "-" [ text ] CRLF ) code [ SP [ text ] ] CRLF
//!  code       = %x32-35 DIGIT DIGIT         ; 2yz to 5yz, the same on every line
//!  text       = [ enhanced SP ] *( any octet but CR and LF )
//!  enhanced   = class "." 1*3DIGIT "." 1*3DIGIT   ; RFC 3463, class = the code's first digit
//! ```
//! A line is at most [`MAX_REPLY_LINE_BYTES`] octets (CRLF included; RFC 5321 asks for 512,
//! real servers send longer ones), a reply at most [`MAX_REPLY_LINES`] lines. Everything else
//! is an error that ends the session: a line without a valid code, a multi-line reply whose
//! lines carry different codes, a line ended by LF alone or holding a bare CR. Text that is
//! not UTF-8 is kept with replacement characters: it is only quoted, never interpreted.

use std::fmt;

use crate::smtp::reply::Reply;

/// Longest reply line accepted, CRLF included.
pub const MAX_REPLY_LINE_BYTES: usize = 4096;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 512;

/// Why the server's bytes are not a reply. Whoever sent them is at fault; the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The line does not start with a code from 200 to 599.
    BadCode { line: String },
    /// After the code comes something other than a space, a hyphen or the line end.
    BadSeparator { line: String },
    /// A line of a multi-line reply carries another code than the first.
    MixedCodes { first: u16, then: u16 },
    /// A line is longer than [`MAX_REPLY_LINE_BYTES`].
    LineTooLong,
    /// A reply has more than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
    /// A line ends in LF without CR, or holds a CR that is not followed by LF.
    NotCrlf { line: String },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BadCode { line } => write!(f, "the server sent a reply line without a valid code: {line:?}"),
            ReplyError::BadSeparator { line } => {
                write!(f, "the server sent a reply line with a bad character after the code: {line:?}")
            }
            ReplyError::MixedCodes { first, then } => {
                write!(f, "the server mixed reply codes {first} and {then} in one multi-line reply")
            }
            ReplyError::LineTooLong => {
                write!(f, "the server sent a reply line longer than {MAX_REPLY_LINE_BYTES} octets")
            }
            ReplyError::TooManyLines => write!(f, "the server sent a reply of more than {MAX_REPLY_LINES} lines"),
            ReplyError::NotCrlf { line } => {
                write!(f, "the server sent a reply line not ended by CRLF or holding a bare CR: {line:?}")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Collects replies from bytes fed in any pieces. After an error it stays failed.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Where the next unread line starts in `buf`.
    pos: usize,
    /// The reply being read: its code (0: none yet), enhanced status and lines so far.
    code: u16,
    status: String,
    lines: Vec<String>,
    failed: Option<ReplyError>,
}

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Bytes read from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Some bytes received are not part of a reply returned so far.
    pub fn has_pending_input(&self) -> bool {
        self.pos < self.buf.len() || self.code != 0
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.read() {
            Ok(reply) => {
                // Keep the buffer small: drop what was read (a few hundred octets per reply).
                if self.pos > 0 && (reply.is_some() || self.pos == self.buf.len()) {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                }
                Ok(reply)
            }
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.pos = 0;
                Err(e)
            }
        }
    }

    fn read(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() >= MAX_REPLY_LINE_BYTES {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if lf + 1 > MAX_REPLY_LINE_BYTES {
                return Err(ReplyError::LineTooLong);
            }
            let raw = &rest[..lf];
            self.pos += lf + 1;
            let Some(line) = raw.strip_suffix(b"\r").filter(|l| !l.contains(&b'\r')) else {
                return Err(ReplyError::NotCrlf { line: quote(raw) });
            };
            let (code, last, text) = split_line(line)?;
            if self.code == 0 {
                self.code = code;
                self.status = enhanced_status(code, text).unwrap_or_default().to_string();
            } else if code != self.code {
                return Err(ReplyError::MixedCodes { first: self.code, then: code });
            }
            if self.lines.len() == MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            // RFC 2034: every line carries the status; it is kept once, in `status`.
            let text = match text.strip_prefix(self.status.as_bytes()) {
                Some(after) if !self.status.is_empty() && (after.is_empty() || after[0] == b' ') => {
                    after.strip_prefix(b" ").unwrap_or(after)
                }
                _ => text,
            };
            self.lines.push(String::from_utf8_lossy(text).into_owned());
            if last {
                let reply = Reply {
                    code: self.code,
                    status: std::mem::take(&mut self.status),
                    lines: std::mem::take(&mut self.lines),
                };
                self.code = 0;
                return Ok(Some(reply));
            }
        }
    }
}

/// `(code, is the last line, text)` of one line without its CRLF.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let valid_code =
        line.len() >= 3 && (b'2'..=b'5').contains(&line[0]) && line[1].is_ascii_digit() && line[2].is_ascii_digit();
    if !valid_code {
        return Err(ReplyError::BadCode { line: quote(line) });
    }
    let code = line[..3].iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(ReplyError::BadSeparator { line: quote(line) }),
    }
}

/// The RFC 3463 code at the start of `text` if its class is the reply code's.
fn enhanced_status(code: u16, text: &[u8]) -> Option<&str> {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let word = std::str::from_utf8(&text[..end]).ok()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let numbers_ok = (0..2)
        .all(|_| parts.next().is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())));
    let class_ok = class.len() == 1 && u16::from(class.as_bytes()[0]).wrapping_sub(u16::from(b'0')) == code / 100;
    (numbers_ok && class_ok && parts.next().is_none()).then_some(word)
}

/// At most 80 characters of a line, for an error message.
fn quote(line: &[u8]) -> String {
    let end = line.len().min(80);
    String::from_utf8_lossy(&line[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], step: usize) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            p.push(piece);
            while let Some(r) = p.next_reply()? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line_replies_with_enhanced_codes() {
        let input = b"220 mx.example.test ESMTP\r\n250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n\
            550 5.1.1 <bob@example.test>: no such user\r\n451-4.3.0 first\r\n451-4.3.0\r\n451 4.3.0 third\r\n354\r\n";
        for step in [1, 2, 3, 5, 1000] {
            let replies = parse_all(input, step).unwrap();
            assert_eq!(replies.len(), 5);
            assert_eq!(
                replies[0],
                Reply { code: 220, status: String::new(), lines: vec!["mx.example.test ESMTP".into()] }
            );
            assert_eq!(replies[1].lines, ["mx.example.test", "PIPELINING", "SIZE 1000"]);
            assert_eq!((replies[2].code, replies[2].status.as_str()), (550, "5.1.1"));
            assert_eq!(replies[2].lines, ["<bob@example.test>: no such user"]);
            assert_eq!(replies[3].status, "4.3.0");
            assert_eq!(replies[3].lines, ["first", "", "third"]);
            assert_eq!((replies[4].code, replies[4].lines.as_slice()), (354, &[String::new()][..]));
        }
    }

    #[test]
    fn status_only_when_it_matches_the_class() {
        let r = parse_all(b"550 4.1.1 odd\r\n250 2.1.0.1 Ok\r\n250 2.1000.0 Ok\r\n250 2.1.0\r\n", 1).unwrap();
        assert_eq!((r[0].status.as_str(), r[0].lines[0].as_str()), ("", "4.1.1 odd"));
        assert_eq!(r[1].status, "");
        assert_eq!(r[2].status, "");
        assert_eq!((r[3].status.as_str(), r[3].lines[0].as_str()), ("2.1.0", ""));
        // Not UTF-8: kept with replacement characters.
        let r = parse_all(b"550 5.7.1 caf\xe9\r\n", 1).unwrap();
        assert_eq!(r[0].lines[0], "caf\u{fffd}");
    }

    #[test]
    fn malformed_replies_are_precise_errors() {
        for (input, want) in [
            (&b"2500 x\r\n"[..], "BadSeparator"),
            (b"25 x\r\n", "BadCode"),
            (b"abc x\r\n", "BadCode"),
            (b"150 x\r\n", "BadCode"),
            (b"650 x\r\n", "BadCode"),
            (b"\r\n", "BadCode"),
            (b"250-a\r\n251 b\r\n", "MixedCodes"),
            (b"250 a\n", "NotCrlf"),
            (b"250 a\rb\r\n", "NotCrlf"),
            (b"250 a\r\r\n", "NotCrlf"),
        ] {
            for step in [1, 3, 100] {
                let err = parse_all(input, step).unwrap_err();
                assert!(format!("{err:?}").starts_with(want), "{input:?}: {err:?}");
                assert!(!err.to_string().is_empty());
            }
        }
        let mut long = b"250 ".to_vec();
        long.resize(MAX_REPLY_LINE_BYTES - 2, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&long, 7).unwrap().len(), 1);
        long.insert(5, b'x');
        assert_eq!(parse_all(&long, 7).unwrap_err(), ReplyError::LineTooLong);
        // Also without a line end: the limit is enforced before the LF arrives.
        let endless = vec![b'2'; MAX_REPLY_LINE_BYTES * 3];
        assert_eq!(parse_all(&endless, 100).unwrap_err(), ReplyError::LineTooLong);
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(parse_all(&many, 64).unwrap_err(), ReplyError::TooManyLines);
        let ok = [b"250-x\r\n".repeat(MAX_REPLY_LINES - 1), b"250 x\r\n".to_vec()].concat();
        assert_eq!(parse_all(&ok, 64).unwrap()[0].lines.len(), MAX_REPLY_LINES);
    }

    #[test]
    fn stays_failed_and_tells_of_pending_input() {
        let mut p = ReplyParser::new();
        p.push(b"250 ok\r\n220 re");
        assert!(p.next_reply().unwrap().is_some());
        assert!(p.has_pending_input());
        assert_eq!(p.next_reply().unwrap(), None);
        p.push(b"ady\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().lines, ["ready"]);
        assert!(!p.has_pending_input());
        p.push(b"250-a\r\n");
        assert_eq!(p.next_reply().unwrap(), None);
        assert!(p.has_pending_input());
        p.push(b"bad\r\n");
        assert!(p.next_reply().is_err());
        p.push(b"250 ok\r\n");
        assert!(p.next_reply().is_err());
    }
}
