//! Mailbox names as the client sends them, and their decoding to UTF-8: modified UTF-7
//! (RFC 3501 section 5.1.3) for IMAP4rev1 sessions, UTF-8 as is once the client enabled
//! `UTF8=ACCEPT` (RFC 6855) or `IMAP4rev2` (RFC 9051 section 5.1).

use std::fmt;

use super::core::{AString, IString};

/// A mailbox name. `INBOX` in any case is [`Mailbox::Inbox`] (RFC 9051 section 5.1: "the case-
/// insensitive name INBOX is a special name reserved to mean the primary mailbox").
///
/// ```text
/// mailbox = "INBOX" / astring
/// ```
/// Only the whole name is folded: `inbox/sub` is an [`Other`](Mailbox::Other) name, whose
/// first component the server may fold as it wishes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mailbox {
    Inbox,
    /// Any other name, as sent. Invariant: not `INBOX` in any case.
    Other(AString),
}

impl Mailbox {
    /// `INBOX` in any case becomes [`Mailbox::Inbox`].
    pub fn from_astring(name: AString) -> Self {
        if name.as_bytes().eq_ignore_ascii_case(b"INBOX") { Self::Inbox } else { Self::Other(name) }
    }

    /// The name as sent, `INBOX` for [`Mailbox::Inbox`].
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inbox => b"INBOX",
            Self::Other(name) => name.as_bytes(),
        }
    }

    /// The name in UTF-8: `INBOX`, or the name as sent decoded from modified UTF-7 (`utf8`
    /// false: an IMAP4rev1 session) or checked to be UTF-8 (`utf8` true: `UTF8=ACCEPT` or
    /// `IMAP4rev2` enabled). Control characters are refused in both.
    pub fn decode(&self, utf8: bool) -> Result<String, MailboxNameError> {
        match self {
            Self::Inbox => Ok("INBOX".to_owned()),
            Self::Other(name) => decode_name(name.as_bytes(), utf8),
        }
    }
}

/// A `LIST`/`LSUB` pattern (or one of the patterns of LIST-EXTENDED): a name in which `%` and
/// `*` are wildcards (RFC 9051 section 6.3.9).
///
/// ```text
/// list-mailbox = 1*list-char / string
/// list-char    = ATOM-CHAR / list-wildcards / resp-specials
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListMailbox {
    /// `1*list-char`. Invariant: non-empty, list-chars only.
    Token(String),
    String(IString),
}

impl ListMailbox {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Token(t) => t.as_bytes(),
            Self::String(s) => s.as_bytes(),
        }
    }

    /// The pattern in UTF-8, decoded as [`Mailbox::decode`] does (the wildcards are ASCII and
    /// pass through modified UTF-7 unchanged).
    pub fn decode(&self, utf8: bool) -> Result<String, MailboxNameError> {
        decode_name(self.as_bytes(), utf8)
    }
}

/// Why a mailbox name cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxNameError {
    /// A control character (C0 or DEL) at `offset`.
    ControlCharacter { offset: usize },
    /// An octet above 0x7F in an IMAP4rev1 session, where names are 7-bit modified UTF-7.
    EightBit { offset: usize },
    /// `UTF8=ACCEPT`/`IMAP4rev2`: the name is not UTF-8.
    InvalidUtf8,
    /// Malformed modified UTF-7: the `&` shift at `offset` is unterminated, holds characters
    /// outside modified base64, encodes printable ASCII or a broken UTF-16 sequence, or ends
    /// with bits that are not zero.
    InvalidModifiedUtf7 { offset: usize },
}

impl fmt::Display for MailboxNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ControlCharacter { offset } => {
                write!(f, "the mailbox name contains a control character at offset {offset}")
            }
            Self::EightBit { offset } => write!(
                f,
                "the mailbox name contains an 8-bit octet at offset {offset}; without UTF8=ACCEPT names are modified UTF-7"
            ),
            Self::InvalidUtf8 => f.write_str("the mailbox name is not UTF-8"),
            Self::InvalidModifiedUtf7 { offset } => {
                write!(f, "the mailbox name has malformed modified UTF-7 at offset {offset}")
            }
        }
    }
}

impl std::error::Error for MailboxNameError {}

fn decode_name(name: &[u8], utf8: bool) -> Result<String, MailboxNameError> {
    if let Some(offset) = name.iter().position(|&b| b < 0x20 || b == 0x7f) {
        return Err(MailboxNameError::ControlCharacter { offset });
    }
    if utf8 {
        return String::from_utf8(name.to_vec()).map_err(|_| MailboxNameError::InvalidUtf8);
    }
    decode_modified_utf7(name)
}

/// Decodes modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII stands for itself, `&-` is
/// `&`, and `&...-` holds UTF-16 in base64 with `,` for `/` and no padding. Strict: a shift
/// that encodes printable ASCII, leaves non-zero bits, or directly follows another shift (two
/// runs where the encoder writes one) is an error, so each name has one encoding and odd
/// spellings cannot alias another name.
pub fn decode_modified_utf7(name: &[u8]) -> Result<String, MailboxNameError> {
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Where the last non-empty shifted run ended.
    let mut shift_end: Option<usize> = None;
    while i < name.len() {
        let b = name[i];
        if b >= 0x80 {
            return Err(MailboxNameError::EightBit { offset: i });
        }
        if b < 0x20 || b == 0x7f {
            return Err(MailboxNameError::ControlCharacter { offset: i });
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let bad = MailboxNameError::InvalidModifiedUtf7 { offset: i };
        let Some(len) = name[i + 1..].iter().position(|&c| c == b'-') else {
            return Err(bad);
        };
        let shifted = &name[i + 1..i + 1 + len];
        if shifted.is_empty() {
            out.push('&');
        } else {
            if shift_end == Some(i) {
                return Err(bad);
            }
            decode_shifted(shifted, &mut out).map_err(|()| bad)?;
            shift_end = Some(i + len + 2);
        }
        i += len + 2;
    }
    Ok(out)
}

fn base64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

const BASE64_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// One `&...-` run: modified base64 of UTF-16BE.
fn decode_shifted(shifted: &[u8], out: &mut String) -> Result<(), ()> {
    let mut units = Vec::with_capacity(shifted.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for &c in shifted {
        bits = (bits << 6) | base64_value(c).ok_or(())?;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push((bits >> nbits) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits are padding: fewer than six, and zero.
    if nbits >= 6 || bits != 0 || units.is_empty() {
        return Err(());
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| ())?;
        if (' '..='~').contains(&c) {
            return Err(());
        }
        out.push(c);
    }
    Ok(())
}

/// Encodes a UTF-8 name in modified UTF-7, for an IMAP4rev1 client (`LIST` responses).
pub fn encode_modified_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush_shifted(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_shifted(&mut pending, &mut out);
    out
}

fn flush_shifted(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in units.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(BASE64_CHARS[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(BASE64_CHARS[((bits << (6 - nbits)) & 0x3f) as usize]));
    }
    out.push('-');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(name: &str) -> Mailbox {
        Mailbox::from_astring(AString::from_bytes(name.as_bytes()))
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(other("inbox"), Mailbox::Inbox);
        assert_eq!(other("InBoX"), Mailbox::Inbox);
        assert_eq!(other("INBOX").as_bytes(), b"INBOX");
        assert!(matches!(other("inbox/sub"), Mailbox::Other(_)));
        assert!(matches!(other("INBOX."), Mailbox::Other(_)));
        assert_eq!(other("inbox").decode(false).as_deref(), Ok("INBOX"));
    }

    #[test]
    fn rfc3501_example_decodes() {
        // RFC 3501 section 5.1.3: "~peter/mail/台北/日本語".
        let name = b"~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(decode_modified_utf7(name).as_deref(), Ok("~peter/mail/台北/日本語"));
        assert_eq!(encode_modified_utf7("~peter/mail/台北/日本語").as_bytes(), name);
    }

    #[test]
    fn ampersand_and_astral_characters_round_trip() {
        for name in ["a&b", "&", "Entwürfe", "Gesendete Objekte", "😀 mail", "Ω", "ÄÖÜ/äöü", "&&-", ""] {
            let encoded = encode_modified_utf7(name);
            assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)), "{encoded}");
            assert_eq!(decode_modified_utf7(encoded.as_bytes()).as_deref(), Ok(name), "{encoded}");
        }
        assert_eq!(encode_modified_utf7("a&b"), "a&-b");
        assert_eq!(encode_modified_utf7("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn malformed_modified_utf7_is_refused() {
        let bad = |name: &[u8]| decode_modified_utf7(name).unwrap_err();
        assert_eq!(bad(b"a&Jjo"), MailboxNameError::InvalidModifiedUtf7 { offset: 1 });
        assert_eq!(bad(b"&AGE-"), MailboxNameError::InvalidModifiedUtf7 { offset: 0 }, "encodes 'a'");
        assert_eq!(bad(b"&Jj/-"), MailboxNameError::InvalidModifiedUtf7 { offset: 0 }, "'/' is not modified base64");
        assert_eq!(bad(b"&APw-&A-"), MailboxNameError::InvalidModifiedUtf7 { offset: 5 }, "too few bits");
        assert_eq!(bad(b"&APz-"), MailboxNameError::InvalidModifiedUtf7 { offset: 0 }, "non-zero padding bits");
        assert_eq!(bad(b"&2D0-"), MailboxNameError::InvalidModifiedUtf7 { offset: 0 }, "lone surrogate");
        assert_eq!(bad("Entwürfe".as_bytes()), MailboxNameError::EightBit { offset: 4 });
        assert_eq!(bad(b"a\tb"), MailboxNameError::ControlCharacter { offset: 1 });
    }

    #[test]
    fn utf8_mode_takes_names_as_they_are() {
        assert_eq!(other("Entwürfe").decode(true).as_deref(), Ok("Entwürfe"));
        assert_eq!(other("a&b").decode(true).as_deref(), Ok("a&b"));
        assert_eq!(other("a&b").decode(false), Err(MailboxNameError::InvalidModifiedUtf7 { offset: 1 }));
        let latin1 = Mailbox::Other(AString::from_bytes(b"Entw\xfcrfe"));
        assert_eq!(latin1.decode(true), Err(MailboxNameError::InvalidUtf8));
        assert_eq!(other("a\u{7f}").decode(true), Err(MailboxNameError::ControlCharacter { offset: 1 }));
        let pattern = ListMailbox::Token("&ZeVnLIqe-/%".into());
        assert_eq!(pattern.decode(false).as_deref(), Ok("日本語/%"));
    }
}
