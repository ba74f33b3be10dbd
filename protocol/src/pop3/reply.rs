//! What the server sends: status lines ([`Reply`], with the response codes of RFC 2449 and
//! RFC 3206) and multi-line data (message bytes dot-stuffed with CRLF line endings,
//! [`encode_message`]; lists, [`encode_lines`]).

use std::fmt;

/// A response code (RFC 2449 section 8, RFC 3206), sent in brackets after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// `[IN-USE]`: the maildrop is locked by another POP3 session.
    InUse,
    /// `[LOGIN-DELAY]`: the user logged in again sooner than the `LOGIN-DELAY` allows.
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary problem of the server; try again later.
    SysTemp,
    /// `[SYS/PERM]`: a problem of the server that will not go away by trying again.
    SysPerm,
    /// `[AUTH]`: a problem with the credentials or the way they were sent (RFC 3206).
    Auth,
}

impl ResponseCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::InUse => "IN-USE",
            ResponseCode::LoginDelay => "LOGIN-DELAY",
            ResponseCode::SysTemp => "SYS/TEMP",
            ResponseCode::SysPerm => "SYS/PERM",
            ResponseCode::Auth => "AUTH",
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status line: `+OK text` or `-ERR [CODE] text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub code: Option<ResponseCode>,
    pub text: String,
}

impl Reply {
    /// `+OK text` (`+OK` alone when `text` is empty).
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply { ok: true, code: None, text: text.into() }
    }

    /// `-ERR text`.
    pub fn err(text: impl Into<String>) -> Reply {
        Reply { ok: false, code: None, text: text.into() }
    }

    /// `-ERR [code] text`.
    pub fn err_with(code: ResponseCode, text: impl Into<String>) -> Reply {
        Reply { ok: false, code: Some(code), text: text.into() }
    }

    /// The line as sent, CRLF included. CR, LF and NUL inside the text are dropped, so text
    /// from elsewhere (a user name, an error message) cannot forge a line.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.ok { b"+OK" } else { b"-ERR" });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            out.extend(self.text.bytes().filter(|&b| b != b'\r' && b != b'\n' && b != 0));
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.encode().strip_suffix(b"\r\n").unwrap_or_default()))
    }
}

/// The lines of a multi-line response (after its `+OK` line), each dot-stuffed, then the
/// terminating `.` line.
pub fn encode_lines<'a>(out: &mut Vec<u8>, lines: impl IntoIterator<Item = &'a str>) {
    for line in lines {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend(line.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The size of a message as POP3 sends it: every line break a CRLF, so each LF not preceded
/// by a CR counts one octet more. Dot-stuffing and the terminating line are not counted (RFC
/// 1939 section 11); nor is the CRLF added after a last line without one.
pub fn crlf_size(raw: &[u8]) -> u64 {
    let mut bare = 0u64;
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            bare += 1;
        }
        prev = b;
    }
    raw.len() as u64 + bare
}

/// Writes a message (or with `top = Some(n)`, its header, the blank line and the first `n`
/// lines of its body: `TOP`) as the data of a multi-line response: line breaks as CRLF (a
/// bare LF becomes CRLF; a CR not followed by LF is content), a `.` doubled at the start of
/// a line, a CRLF after a last line without one, then the terminating `.` line.
pub fn encode_message(out: &mut Vec<u8>, raw: &[u8], top: Option<u64>) {
    out.reserve(raw.len() + raw.len() / 32 + 8);
    let mut rest = raw;
    let mut in_header = true;
    let mut body_lines = 0u64;
    while !rest.is_empty() {
        if let Some(n) = top
            && !in_header
            && body_lines >= n
        {
            break;
        }
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if in_header {
            in_header = !line.is_empty();
        } else {
            body_lines += 1;
        }
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(raw: &[u8], top: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(&mut out, raw, top);
        out
    }

    #[test]
    fn status_lines() {
        assert_eq!(Reply::ok("").encode(), b"+OK\r\n");
        assert_eq!(Reply::ok("2 320").encode(), b"+OK 2 320\r\n");
        assert_eq!(Reply::err("no such message").encode(), b"-ERR no such message\r\n");
        assert_eq!(Reply::err_with(ResponseCode::InUse, "locked").encode(), b"-ERR [IN-USE] locked\r\n".to_vec());
        assert_eq!(Reply::err("a\r\n+OK b\0").encode(), b"-ERR a+OK b\r\n");
        assert_eq!(Reply::err_with(ResponseCode::SysTemp, "x").to_string(), "-ERR [SYS/TEMP] x");
    }

    #[test]
    fn sizes_count_line_breaks_as_crlf() {
        assert_eq!(crlf_size(b""), 0);
        assert_eq!(crlf_size(b"a\r\nb\r\n"), 6);
        assert_eq!(crlf_size(b"a\nb\n"), 6);
        assert_eq!(crlf_size(b"a\r\nb\nc"), 7);
        assert_eq!(crlf_size(b"\n\n"), 4);
        assert_eq!(crlf_size(b"a\rb"), 3);
    }

    #[test]
    fn messages_are_stuffed_and_end_in_crlf() {
        assert_eq!(message(b"A: b\r\n\r\nbody\r\n", None), b"A: b\r\n\r\nbody\r\n.\r\n");
        assert_eq!(message(b"A: b\n\n.hidden\n..two\n.\n", None), b"A: b\r\n\r\n..hidden\r\n...two\r\n..\r\n.\r\n");
        assert_eq!(message(b"A: b\n\nno end", None), b"A: b\r\n\r\nno end\r\n.\r\n");
        assert_eq!(message(b"", None), b".\r\n");
        assert_eq!(message(b"x\ry\r\n", None), b"x\ry\r\n.\r\n");
        // A CR at the very end is taken as the start of the missing line break.
        assert_eq!(message(b"a\r", None), b"a\r\n.\r\n");
        assert_eq!(crlf_size(b"a\r"), 2);
        // The size announced is that of the message as sent, before stuffing.
        let raw = b"A: b\n\n.x\n";
        let sent = message(raw, None);
        assert_eq!(crlf_size(raw) + 1 + 3, sent.len() as u64);
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let raw = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n.l3\r\n";
        assert_eq!(message(raw, Some(0)), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(message(raw, Some(1)), b"A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n");
        assert_eq!(message(raw, Some(3)), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n..l3\r\n.\r\n");
        assert_eq!(message(raw, Some(99)), message(raw, None));
        // Without a blank line the whole message is header.
        assert_eq!(message(b"A: 1\nB: 2\n", Some(0)), b"A: 1\r\nB: 2\r\n.\r\n");
    }

    #[test]
    fn list_lines_are_stuffed() {
        let mut out = Vec::new();
        encode_lines(&mut out, ["TOP", ".odd"]);
        assert_eq!(out, b"TOP\r\n..odd\r\n.\r\n");
    }
}
