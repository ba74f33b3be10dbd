//! [`Reply`]: an SMTP reply (RFC 5321 section 4.2) with its enhanced status code (RFC 3463).

use std::fmt;

/// One SMTP reply: a three-digit code, an enhanced status code (`"5.1.1"`, or empty for the
/// greeting and the EHLO list, which carry none), and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail` (RFC 3463), or empty.
    pub status: String,
    /// At least one line; each is sent as `code-status text` (`code status text` for the last).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. Line breaks in `text` become separate lines of a multi-line reply.
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Reply {
        debug_assert!((200..=599).contains(&code), "reply code {code}");
        debug_assert!(status.is_empty() || is_status(status), "enhanced status {status:?}");
        let text = text.into();
        let lines = text.split('\n').map(|l| l.trim_end_matches('\r').to_string()).collect();
        Reply { code, status: status.to_string(), lines }
    }

    /// A reply of several lines (the EHLO list, HELP).
    pub fn multi(code: u16, status: &str, lines: Vec<String>) -> Reply {
        let lines = if lines.is_empty() { vec![String::new()] } else { lines };
        Reply { code, status: status.to_string(), lines }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: the client may try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as sent: every line ends in CRLF; CR and LF inside text are dropped so that
    /// text from elsewhere (an address, a filter's reason) cannot forge a reply.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            if !self.status.is_empty() {
                out.extend_from_slice(self.status.as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend(line.bytes().filter(|&b| b != b'\r' && b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    /// The reply on one line, for logs: `550 5.1.1 text / more text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.status.is_empty() {
            write!(f, " {}", self.status)?;
        }
        for (i, line) in self.lines.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " / " })?;
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// `class.subject.detail`: class 2, 4 or 5, subject and detail 0 to 999.
fn is_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_many_lines() {
        assert_eq!(Reply::new(250, "2.1.0", "Ok").encode(), b"250 2.1.0 Ok\r\n");
        assert_eq!(Reply::new(220, "", "mx ESMTP").encode(), b"220 mx ESMTP\r\n");
        let r = Reply::multi(250, "", vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(r.encode(), b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        assert_eq!(r.to_string(), "250 mx / PIPELINING / SIZE 10");
        let two = Reply::new(550, "5.7.1", "first\nsecond");
        assert_eq!(two.encode(), b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
    }

    #[test]
    fn text_cannot_forge_replies() {
        let r = Reply { code: 550, status: "5.1.1".into(), lines: vec!["a\r\n250 ok".into()] };
        assert_eq!(r.encode(), b"550 5.1.1 a250 ok\r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::new(354, "", "go").is_positive());
        assert!(Reply::new(452, "4.2.2", "full").is_transient());
        assert!(Reply::new(552, "5.2.2", "full").is_permanent());
        assert!(is_status("5.1.10") && !is_status("3.1.1") && !is_status("5.1") && !is_status("5.x.1"));
    }
}
