//! Response encoding: the string forms (atom, quoted, literal, literal8, `NIL`),
//! parenthesised lists, and status responses (`tag OK [CODE] text`, `* BYE ...`, `+ ...`).
//!
//! Only what every response needs; the server adds the data responses (FETCH, LIST, ...) on
//! top of these. Everything appends to a `Vec<u8>` the server then writes.
//!
//! `utf8` parameters say whether the client enabled `UTF8=ACCEPT` or `IMAP4rev2`: only then
//! may a quoted string carry 8-bit (UTF-8) text; otherwise such values go out as literals.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use super::core::{Atom, Tag, is_astring_char, is_atom_char};
use super::datetime::DateTime;
use super::fetch::{Section, SectionText};
use super::flag::FlagPerm;
use super::mailbox::encode_modified_utf7;
use super::search::ObjectId;
use super::sequence::SequenceSet;

/// Longest value written as a quoted string; longer ones go out as literals, which clients
/// read without scanning for escapes.
pub const MAX_QUOTED_BYTES: usize = 1024;

/// Whether `value` can be a quoted string: short, no NUL/CR/LF, 7-bit unless `utf8`.
fn quotable(value: &[u8], utf8: bool) -> bool {
    value.len() <= MAX_QUOTED_BYTES
        && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && (value.is_ascii() || (utf8 && std::str::from_utf8(value).is_ok()))
}

fn encode_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Whether `value` holds a NUL octet (memchr's vector search: message bodies are long).
fn has_nul(value: &[u8]) -> bool {
    memchr::memchr(0, value).is_some()
}

/// A synchronizing-form literal, `{n}\r\n` and the octets. A literal cannot carry NUL (RFC
/// 9051: `CHAR8`); like Dovecot, NUL octets are sent as 0x80. Use [`encode_binary`] where
/// `literal8` is allowed.
pub fn encode_literal(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", value.len()).as_bytes());
    // Bodies rarely hold NUL: one fast scan, then a plain copy.
    if has_nul(value) {
        out.extend(value.iter().map(|&b| if b == 0 { 0x80 } else { b }));
    } else {
        out.extend_from_slice(value);
    }
}

/// An IMAP `string`: quoted if it can be ([`MAX_QUOTED_BYTES`], no CR/LF/NUL, 8-bit only
/// when `utf8`), a literal otherwise.
pub fn encode_string(out: &mut Vec<u8>, value: &[u8], utf8: bool) {
    if quotable(value, utf8) { encode_quoted(out, value) } else { encode_literal(out, value) }
}

/// An `astring`: an atom when every octet is an ASTRING-CHAR, else as [`encode_string`].
pub fn encode_astring(out: &mut Vec<u8>, value: &[u8], utf8: bool) {
    if !value.is_empty() && value.iter().all(|&b| is_astring_char(b)) {
        out.extend_from_slice(value);
    } else {
        encode_string(out, value, utf8);
    }
}

/// `NIL`.
pub fn encode_nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"NIL");
}

/// An `nstring`: `NIL` for `None`, else as [`encode_string`] (never an atom, so a value
/// `NIL` is quoted).
pub fn encode_nstring(out: &mut Vec<u8>, value: Option<&[u8]>, utf8: bool) {
    match value {
        None => encode_nil(out),
        Some(value) => encode_string(out, value, utf8),
    }
}

/// The value of a `BINARY[...]` response (RFC 3516): a `literal8` (`~{n}`) if it holds NUL,
/// else a literal; `NIL` for `None`.
pub fn encode_binary(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => encode_nil(out),
        Some(value) if value.contains(&0) => {
            out.extend_from_slice(format!("~{{{}}}\r\n", value.len()).as_bytes());
            out.extend_from_slice(value);
        }
        Some(value) => encode_literal(out, value),
    }
}

/// A mailbox name given in UTF-8: modified UTF-7 unless `utf8`, then as an astring (`INBOX`
/// stays an atom).
pub fn encode_mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        encode_astring(out, name.as_bytes(), true);
    } else {
        encode_astring(out, encode_modified_utf7(name).as_bytes(), false);
    }
}

/// `"(" item *(SP item) ")"`, each item written by `each`; `()` when empty.
pub fn encode_list<T>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>, mut each: impl FnMut(&mut Vec<u8>, T)) {
    out.push(b'(');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        each(out, item);
    }
    out.push(b')');
}

/// A `date-time` in quotes (`INTERNALDATE`, `SAVEDATE`).
pub fn encode_date_time(out: &mut Vec<u8>, date_time: &DateTime) {
    out.extend_from_slice(format!("\"{date_time}\"").as_bytes());
}

/// A body section as echoed in a FETCH response: `[1.2.HEADER.FIELDS (DATE FROM)]`.
pub fn encode_section(out: &mut Vec<u8>, section: &Section) {
    out.push(b'[');
    let part = section.part.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(".");
    out.extend_from_slice(part.as_bytes());
    if let Some(text) = &section.text {
        if !section.part.is_empty() {
            out.push(b'.');
        }
        let (name, fields) = match text {
            SectionText::Header => ("HEADER", None),
            SectionText::HeaderFields(fields) => ("HEADER.FIELDS", Some(fields)),
            SectionText::HeaderFieldsNot(fields) => ("HEADER.FIELDS.NOT", Some(fields)),
            SectionText::Text => ("TEXT", None),
            SectionText::Mime => ("MIME", None),
        };
        out.extend_from_slice(name.as_bytes());
        if let Some(fields) = fields {
            out.push(b' ');
            encode_list(out, fields, |out, field| encode_astring(out, field.as_bytes(), false));
        }
    }
    out.push(b']');
}

/// A continuation request with text: `+ text` (e.g. `+ Ready for literal data`, `+ idling`).
pub fn encode_continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// A SASL challenge: `+ <base64>` (`+ ` alone for an empty challenge).
pub fn encode_challenge(out: &mut Vec<u8>, challenge: &[u8]) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(crate::sasl::encode_challenge(challenge).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Human-readable text: CR, LF and NUL dropped, so that text from elsewhere (an error, a
/// mailbox name) cannot end the line and forge a response.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| !matches!(b, 0 | b'\r' | b'\n')));
}

/// The condition of a status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    /// Greeting of a connection that is already authenticated; always untagged.
    PreAuth,
    /// The server is closing the connection; always untagged.
    Bye,
}

impl StatusKind {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bad => "BAD",
            Self::PreAuth => "PREAUTH",
            Self::Bye => "BYE",
        }
    }
}

/// A response code: the bracketed part of `tag NO [TRYCREATE] ...` (RFC 9051 section 7.1,
/// RFC 5530, and the extensions').
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Alert,
    AlreadyExists,
    /// `APPENDUID uidvalidity uids` (UIDPLUS).
    AppendUid {
        uidvalidity: NonZeroU32,
        uids: SequenceSet,
    },
    AuthenticationFailed,
    AuthorizationFailed,
    /// `BADCHARSET (charsets)`: the charsets the server supports.
    BadCharset(Vec<String>),
    Cannot,
    Capability(Vec<String>),
    ClientBug,
    Closed,
    /// `COMPRESSIONACTIVE` (RFC 4978).
    CompressionActive,
    ContactAdmin,
    /// `COPYUID uidvalidity source-uids destination-uids` (UIDPLUS).
    CopyUid {
        uidvalidity: NonZeroU32,
        source: SequenceSet,
        destination: SequenceSet,
    },
    Corruption,
    Expired,
    ExpungeIssued,
    HasChildren,
    /// CONDSTORE.
    HighestModSeq(NonZeroU64),
    InUse,
    Limit,
    /// OBJECTID.
    MailboxId(ObjectId),
    /// `MODIFIED set` (CONDSTORE): messages `STORE ... UNCHANGEDSINCE` did not change.
    Modified(SequenceSet),
    NoModSeq,
    NonExistent,
    NoPerm,
    OverQuota,
    Parse,
    PermanentFlags(Vec<FlagPerm>),
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    ServerBug,
    /// `TOOBIG` (RFC 4469, RFC 7888): a literal or message over the limit.
    TooBig,
    TryCreate,
    UidNext(NonZeroU32),
    UidNotSticky,
    UidValidity(NonZeroU32),
    Unavailable,
    UnknownCte,
    /// IMAP4rev1's `UNSEEN n`.
    Unseen(NonZeroU32),
    UseAttr,
    /// Any other code, with optional text (CR, LF and `]` are dropped from it).
    Other {
        atom: Atom,
        text: Option<String>,
    },
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = |f: &mut fmt::Formatter<'_>, name: &str, words: &[String]| {
            write!(f, "{name} (")?;
            for (i, word) in words.iter().enumerate() {
                let word: String = word.chars().filter(|&c| c.is_ascii() && is_atom_char(c as u8)).collect();
                write!(f, "{}{word}", if i > 0 { " " } else { "" })?;
            }
            f.write_str(")")
        };
        match self {
            Self::Alert => f.write_str("ALERT"),
            Self::AlreadyExists => f.write_str("ALREADYEXISTS"),
            Self::AppendUid { uidvalidity, uids } => write!(f, "APPENDUID {uidvalidity} {uids}"),
            Self::AuthenticationFailed => f.write_str("AUTHENTICATIONFAILED"),
            Self::AuthorizationFailed => f.write_str("AUTHORIZATIONFAILED"),
            Self::BadCharset(charsets) => words(f, "BADCHARSET", charsets),
            Self::Cannot => f.write_str("CANNOT"),
            Self::Capability(capabilities) => {
                f.write_str("CAPABILITY")?;
                for capability in capabilities {
                    let capability: String =
                        capability.chars().filter(|&c| c.is_ascii() && is_atom_char(c as u8)).collect();
                    write!(f, " {capability}")?;
                }
                Ok(())
            }
            Self::ClientBug => f.write_str("CLIENTBUG"),
            Self::Closed => f.write_str("CLOSED"),
            Self::CompressionActive => f.write_str("COMPRESSIONACTIVE"),
            Self::ContactAdmin => f.write_str("CONTACTADMIN"),
            Self::CopyUid { uidvalidity, source, destination } => {
                write!(f, "COPYUID {uidvalidity} {source} {destination}")
            }
            Self::Corruption => f.write_str("CORRUPTION"),
            Self::Expired => f.write_str("EXPIRED"),
            Self::ExpungeIssued => f.write_str("EXPUNGEISSUED"),
            Self::HasChildren => f.write_str("HASCHILDREN"),
            Self::HighestModSeq(modseq) => write!(f, "HIGHESTMODSEQ {modseq}"),
            Self::InUse => f.write_str("INUSE"),
            Self::Limit => f.write_str("LIMIT"),
            Self::MailboxId(id) => write!(f, "MAILBOXID ({id})"),
            Self::Modified(set) => write!(f, "MODIFIED {set}"),
            Self::NoModSeq => f.write_str("NOMODSEQ"),
            Self::NonExistent => f.write_str("NONEXISTENT"),
            Self::NoPerm => f.write_str("NOPERM"),
            Self::OverQuota => f.write_str("OVERQUOTA"),
            Self::Parse => f.write_str("PARSE"),
            Self::PermanentFlags(flags) => {
                f.write_str("PERMANENTFLAGS (")?;
                for (i, flag) in flags.iter().enumerate() {
                    write!(f, "{}{flag}", if i > 0 { " " } else { "" })?;
                }
                f.write_str(")")
            }
            Self::PrivacyRequired => f.write_str("PRIVACYREQUIRED"),
            Self::ReadOnly => f.write_str("READ-ONLY"),
            Self::ReadWrite => f.write_str("READ-WRITE"),
            Self::ServerBug => f.write_str("SERVERBUG"),
            Self::TooBig => f.write_str("TOOBIG"),
            Self::TryCreate => f.write_str("TRYCREATE"),
            Self::UidNext(n) => write!(f, "UIDNEXT {n}"),
            Self::UidNotSticky => f.write_str("UIDNOTSTICKY"),
            Self::UidValidity(n) => write!(f, "UIDVALIDITY {n}"),
            Self::Unavailable => f.write_str("UNAVAILABLE"),
            Self::UnknownCte => f.write_str("UNKNOWN-CTE"),
            Self::Unseen(n) => write!(f, "UNSEEN {n}"),
            Self::UseAttr => f.write_str("USEATTR"),
            Self::Other { atom, text } => {
                f.write_str(atom.as_str())?;
                if let Some(text) = text {
                    let text: String = text.chars().filter(|&c| !matches!(c, '\r' | '\n' | '\0' | ']')).collect();
                    write!(f, " {text}")?;
                }
                Ok(())
            }
        }
    }
}

/// A status response: `tag OK [CODE] text`, `* NO text`, `* BYE text`, ...
///
/// ```text
/// response-tagged = tag SP resp-cond-state CRLF
/// resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
/// resp-cond-bye   = "BYE" SP resp-text
/// resp-text       = ["[" resp-text-code "]" SP] [text]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `None`: untagged (`*`). Ignored for [`StatusKind::Bye`] and [`StatusKind::PreAuth`],
    /// which are always untagged.
    pub tag: Option<Tag>,
    pub kind: StatusKind,
    pub code: Option<Code>,
    /// CR, LF and NUL are dropped when encoding.
    pub text: String,
}

impl Status {
    /// `tag <kind> text`.
    pub fn tagged(tag: Tag, kind: StatusKind, text: impl Into<String>) -> Self {
        Self { tag: Some(tag), kind, code: None, text: text.into() }
    }

    /// `* <kind> text`.
    pub fn untagged(kind: StatusKind, text: impl Into<String>) -> Self {
        Self { tag: None, kind, code: None, text: text.into() }
    }

    /// `* BYE text`.
    pub fn bye(text: impl Into<String>) -> Self {
        Self::untagged(StatusKind::Bye, text)
    }

    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code);
        self
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match (&self.tag, self.kind) {
            (Some(tag), StatusKind::Ok | StatusKind::No | StatusKind::Bad) => {
                out.extend_from_slice(tag.as_str().as_bytes())
            }
            _ => out.push(b'*'),
        }
        out.push(b' ');
        out.extend_from_slice(self.kind.name().as_bytes());
        if let Some(code) = &self.code {
            out.extend_from_slice(b" [");
            push_text(out, &code.to_string());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            // Text after no code must not start with "[", or it would read as one.
            let text = if self.code.is_none() { self.text.trim_start_matches('[') } else { &self.text };
            push_text(out, text);
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::imap::core::AString;
    use crate::imap::flag::Flag;
    use crate::imap::sequence::{SeqNumber, Sequence};

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    fn tag(s: &str) -> Tag {
        Tag::new(s).expect("valid tag in tests")
    }

    #[test]
    fn literals_send_nul_as_0x80_wherever_it_is() {
        for len in [0usize, 1, 255, 256, 257, 1000] {
            assert!(!has_nul(&vec![b'a'; len]));
            for at in [0, len / 2, len.saturating_sub(1)].into_iter().filter(|&at| at < len) {
                let mut value = vec![b'a'; len];
                value[at] = 0;
                assert!(has_nul(&value), "NUL at {at} of {len}");
                let out = written(|o| encode_literal(o, &value));
                let body = &out[out.iter().position(|&b| b == b'\n').unwrap() + 1..];
                assert_eq!(body.len(), len);
                assert_eq!(body[at], 0x80);
                assert!(!body.contains(&0));
            }
        }
    }

    #[test]
    fn strings_take_the_simplest_safe_form() {
        assert_eq!(written(|o| encode_astring(o, b"INBOX", false)), b"INBOX");
        assert_eq!(written(|o| encode_astring(o, b"", false)), b"\"\"");
        assert_eq!(written(|o| encode_astring(o, b"a b", false)), b"\"a b\"");
        assert_eq!(written(|o| encode_string(o, b"say \"hi\" \\o/", false)), b"\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(written(|o| encode_string(o, b"a\r\nb", false)), b"{4}\r\na\r\nb");
        assert_eq!(written(|o| encode_string(o, "Grüße".as_bytes(), false)), "{7}\r\nGrüße".as_bytes());
        assert_eq!(written(|o| encode_string(o, "Grüße".as_bytes(), true)), "\"Grüße\"".as_bytes());
        assert_eq!(written(|o| encode_string(o, b"\xff", true)), b"{1}\r\n\xff");
        let long = vec![b'a'; MAX_QUOTED_BYTES + 1];
        assert!(written(|o| encode_string(o, &long, false)).starts_with(b"{1025}\r\n"));
        assert_eq!(written(|o| encode_string(o, b"a\0b", false)), b"{3}\r\na\x80b", "NUL cannot be in a literal");
        assert_eq!(written(|o| encode_nstring(o, None, false)), b"NIL");
        assert_eq!(written(|o| encode_nstring(o, Some(b"NIL"), false)), b"\"NIL\"");
        assert_eq!(written(encode_nil), b"NIL");
    }

    #[test]
    fn encoded_strings_parse_back() {
        use crate::imap::parse::parse_command;
        for value in [&b"x"[..], b"", b"a b", b"\"\\", b"a\r\nb", "Grüße".as_bytes(), b"{5}", b"NIL", b"a]"] {
            for utf8 in [false, true] {
                let mut line = b"t LOGIN ".to_vec();
                encode_astring(&mut line, value, utf8);
                line.extend_from_slice(b" p\r\n");
                let command = parse_command(&line).expect("encoded astring parses");
                let crate::imap::command::CommandBody::Login { username, .. } = command.body else {
                    panic!("LOGIN");
                };
                assert_eq!(username.as_bytes(), value, "{}", String::from_utf8_lossy(&line));
            }
        }
    }

    #[test]
    fn binary_values_use_literal8_only_for_nul() {
        assert_eq!(written(|o| encode_binary(o, Some(b"a\0b"))), b"~{3}\r\na\0b");
        assert_eq!(written(|o| encode_binary(o, Some(b"ab"))), b"{2}\r\nab");
        assert_eq!(written(|o| encode_binary(o, None)), b"NIL");
    }

    #[test]
    fn mailboxes_lists_dates_and_sections() {
        assert_eq!(written(|o| encode_mailbox(o, "Entwürfe", false)), b"Entw&APw-rfe");
        assert_eq!(written(|o| encode_mailbox(o, "Entwürfe", true)), "\"Entwürfe\"".as_bytes());
        assert_eq!(written(|o| encode_mailbox(o, "Sent Items", false)), b"\"Sent Items\"");
        assert_eq!(
            written(|o| encode_list(o, ["\\Seen", "$Junk"], |o, f| o.extend_from_slice(f.as_bytes()))),
            b"(\\Seen $Junk)"
        );
        assert_eq!(written(|o| encode_list(o, Vec::<&str>::new(), |_, _| {})), b"()");
        let date = DateTime::from_unix_seconds(760_689_784, -480).expect("valid");
        assert_eq!(written(|o| encode_date_time(o, &date)), b"\" 7-Feb-1994 22:43:04 -0800\"");
        let one_two = vec![NonZeroU32::MIN, NonZeroU32::MIN.saturating_add(1)];
        let fields = vec![AString::from_bytes(b"DATE"), AString::from_bytes(b"X Weird")];
        let section = Section { part: one_two.clone(), text: Some(SectionText::HeaderFields(fields)) };
        assert_eq!(written(|o| encode_section(o, &section)), b"[1.2.HEADER.FIELDS (DATE \"X Weird\")]");
        assert_eq!(written(|o| encode_section(o, &Section::default())), b"[]");
        assert_eq!(written(|o| encode_section(o, &Section { part: one_two, text: None })), b"[1.2]");
        let text = Section { part: vec![], text: Some(SectionText::Text) };
        assert_eq!(written(|o| encode_section(o, &text)), b"[TEXT]");
    }

    #[test]
    fn status_lines() {
        let ok = Status::tagged(tag("a1"), StatusKind::Ok, "LOGIN completed");
        assert_eq!(ok.encode(), b"a1 OK LOGIN completed\r\n");
        let no = Status::tagged(tag("A003"), StatusKind::No, "Mailbox does not exist").with_code(Code::TryCreate);
        assert_eq!(no.encode(), b"A003 NO [TRYCREATE] Mailbox does not exist\r\n");
        assert_eq!(Status::bye("Logging out").encode(), b"* BYE Logging out\r\n");
        let mut bye = Status::bye("x");
        bye.tag = Some(tag("a"));
        assert_eq!(bye.encode(), b"* BYE x\r\n", "BYE is never tagged");
        let forged = Status::untagged(StatusKind::Ok, "[ALERT] hi\r\na2 OK forged");
        assert_eq!(forged.encode(), b"* OK ALERT] hia2 OK forged\r\n");
        let n = |v| NonZeroU32::new(v).expect("non-zero");
        let uids = SequenceSet::Ranges(vec![Sequence::Range(SeqNumber::Value(n(1)), SeqNumber::Value(n(3)))]);
        let append =
            Status::tagged(tag("A"), StatusKind::Ok, "done").with_code(Code::AppendUid { uidvalidity: n(38505), uids });
        assert_eq!(append.encode(), b"A OK [APPENDUID 38505 1:3] done\r\n");
        let flags = Code::PermanentFlags(vec![FlagPerm::Flag(Flag::Deleted), FlagPerm::Any]);
        assert_eq!(
            Status::untagged(StatusKind::Ok, "Limited").with_code(flags).encode(),
            b"* OK [PERMANENTFLAGS (\\Deleted \\*)] Limited\r\n"
        );
        let caps = Code::Capability(vec!["IMAP4rev2".into(), "AUTH=PLAIN".into(), "bad]\r\n".into()]);
        assert_eq!(
            Status::untagged(StatusKind::Ok, "hi").with_code(caps).encode(),
            b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN bad] hi\r\n"
        );
        let other = Code::Other { atom: Atom::new("X-FOO").expect("atom"), text: Some("a]b\r\n".into()) };
        assert_eq!(Status::untagged(StatusKind::No, "").with_code(other).encode(), b"* NO [X-FOO ab]\r\n");
        assert_eq!(Status::untagged(StatusKind::PreAuth, "welcome").encode(), b"* PREAUTH welcome\r\n");
        assert_eq!(
            Status::untagged(StatusKind::No, "x").with_code(Code::BadCharset(vec!["UTF-8".into()])).encode(),
            b"* NO [BADCHARSET (UTF-8)] x\r\n"
        );
    }

    #[test]
    fn continuations() {
        assert_eq!(written(|o| encode_continuation(o, "Ready for literal data")), b"+ Ready for literal data\r\n");
        assert_eq!(written(|o| encode_challenge(o, b"")), b"+ \r\n");
        assert_eq!(written(|o| encode_challenge(o, b"hi")), b"+ aGk=\r\n");
    }
}
