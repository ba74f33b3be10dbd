//! The lexical pieces of IMAP (RFC 9051 section 4 and the ABNF of section 9): tags, atoms,
//! quoted strings, literals and the string forms built from them.
//!
//! Each type holds what the client wrote, in the form it chose (atom, quoted string, literal),
//! so nothing is lost between the wire and the command AST; `as_bytes` gives the value.

use std::fmt;

/// `ATOM-CHAR = <any CHAR except atom-specials>`, where
/// `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials`.
pub(crate) const fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials` (`]`).
pub(crate) const fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">`.
pub(crate) const fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `list-char = ATOM-CHAR / list-wildcards / resp-specials`.
pub(crate) const fn is_list_char(b: u8) -> bool {
    is_atom_char(b) || matches!(b, b'%' | b'*' | b']')
}

/// Why a string is not a valid [`Tag`], [`Atom`] or [`Quoted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    Empty,
    /// The octet at `offset` is not allowed in this token.
    InvalidOctet {
        offset: usize,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the token is empty"),
            Self::InvalidOctet { offset } => write!(f, "the octet at offset {offset} is not allowed in this token"),
        }
    }
}

impl std::error::Error for TokenError {}

fn check(value: &str, allowed: fn(u8) -> bool) -> Result<(), TokenError> {
    if value.is_empty() {
        return Err(TokenError::Empty);
    }
    match value.bytes().position(|b| !allowed(b)) {
        Some(offset) => Err(TokenError::InvalidOctet { offset }),
        None => Ok(()),
    }
}

/// A command tag, echoed in the tagged response.
///
/// ```text
/// tag = 1*<any ASTRING-CHAR except "+">
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn new(value: &str) -> Result<Self, TokenError> {
        check(value, is_tag_char)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An atom: a keyword, a flag keyword, a capability name, a SASL mechanism name.
///
/// ```text
/// atom = 1*ATOM-CHAR
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Atom(String);

impl Atom {
    pub fn new(value: &str) -> Result<Self, TokenError> {
        check(value, is_atom_char)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// ASCII case-insensitive comparison, as IMAP compares keywords and capability names.
    pub fn eq_ignore_ascii_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The content of a quoted string, unescaped.
///
/// ```text
/// quoted      = DQUOTE *QUOTED-CHAR DQUOTE
/// QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4
/// ```
/// Invariant: UTF-8 without NUL, CR or LF (RFC 9051 allows UTF-8 in quoted strings; RFC 3501
/// clients only send ASCII, which is a subset).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quoted(String);

impl Quoted {
    pub fn new(value: &str) -> Result<Self, TokenError> {
        match value.bytes().position(|b| matches!(b, 0 | b'\r' | b'\n')) {
            Some(offset) => Err(TokenError::InvalidOctet { offset }),
            None => Ok(Self(value.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether the client waits for a continuation request before sending a literal's octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiteralMode {
    /// `{n}`: the client waits for `+` (RFC 9051 section 4.3).
    Sync,
    /// `{n+}`: LITERAL+ / LITERAL- (RFC 7888); the octets follow at once.
    NonSync,
}

/// Why octets cannot be a [`Literal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiteralError {
    /// A plain literal (`{n}`) holds `CHAR8` (any octet but NUL); NUL needs a `literal8`.
    Nul { offset: usize },
}

impl fmt::Display for LiteralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nul { offset } => write!(f, "a literal contains NUL at offset {offset} (only literal8 may)"),
        }
    }
}

impl std::error::Error for LiteralError {}

/// A literal: an octet count and that many octets.
///
/// ```text
/// literal  = "{" number64 ["+"] "}" CRLF *CHAR8     ; RFC 9051, RFC 7888
/// literal8 = "~{" number64 ["+"] "}" CRLF *OCTET    ; RFC 3516 (BINARY)
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Literal {
    data: Vec<u8>,
    mode: LiteralMode,
    binary: bool,
}

impl Literal {
    /// A plain literal: no NUL.
    pub fn new(data: Vec<u8>, mode: LiteralMode) -> Result<Self, LiteralError> {
        match data.iter().position(|&b| b == 0) {
            Some(offset) => Err(LiteralError::Nul { offset }),
            None => Ok(Self { data, mode, binary: false }),
        }
    }

    /// A `literal8`: any octets.
    pub fn binary(data: Vec<u8>, mode: LiteralMode) -> Self {
        Self { data, mode, binary: true }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    pub fn mode(&self) -> LiteralMode {
        self.mode
    }

    /// Sent as `literal8` (`~{n}`).
    pub fn is_binary(&self) -> bool {
        self.binary
    }
}

/// Literals can be whole messages: their `Debug` shows the length and a short prefix.
impl fmt::Debug for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let shown = &self.data[..self.data.len().min(SHOWN)];
        f.debug_struct("Literal")
            .field("len", &self.data.len())
            .field("mode", &self.mode)
            .field("binary", &self.binary)
            .field("data", &String::from_utf8_lossy(shown))
            .finish()
    }
}

/// A string: quoted or literal.
///
/// ```text
/// string = quoted / literal
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IString {
    Quoted(Quoted),
    Literal(Literal),
}

impl IString {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Quoted(q) => q.as_str().as_bytes(),
            Self::Literal(l) => l.data(),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Quoted(q) => q.0.into_bytes(),
            Self::Literal(l) => l.into_data(),
        }
    }

    /// The value as UTF-8, if it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

/// An atom-like token or a string.
///
/// ```text
/// astring = 1*ASTRING-CHAR / string
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AString {
    /// `1*ASTRING-CHAR`: an atom that may also contain `]`. Invariant: non-empty, ASTRING-CHARs.
    Atom(String),
    String(IString),
}

impl AString {
    /// The value in the simplest form that can carry it: an atom if it is one, else a quoted
    /// string, else a synchronizing literal. Octets no literal may carry (NUL) become
    /// a `literal8`.
    pub fn from_bytes(value: &[u8]) -> Self {
        if !value.is_empty() && value.iter().all(|&b| is_astring_char(b)) {
            // ASTRING-CHARs are ASCII.
            return Self::Atom(String::from_utf8_lossy(value).into_owned());
        }
        if let Ok(text) = std::str::from_utf8(value)
            && let Ok(quoted) = Quoted::new(text)
        {
            return Self::String(IString::Quoted(quoted));
        }
        let literal = Literal::new(value.to_vec(), LiteralMode::Sync)
            .unwrap_or_else(|_| Literal::binary(value.to_vec(), LiteralMode::Sync));
        Self::String(IString::Literal(literal))
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Atom(a) => a.as_bytes(),
            Self::String(s) => s.as_bytes(),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Atom(a) => a.into_bytes(),
            Self::String(s) => s.into_bytes(),
        }
    }

    /// The value as UTF-8, if it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

/// A string or `NIL`.
///
/// ```text
/// nstring = string / nil
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NString {
    Nil,
    String(IString),
}

impl NString {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Nil => None,
            Self::String(s) => Some(s.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_classes_follow_the_abnf() {
        for b in [b'(', b')', b'{', b' ', b'%', b'*', b'"', b'\\', b']', 0x00, 0x1f, 0x7f, 0x80, 0xff] {
            assert!(!is_atom_char(b), "{b:#x}");
        }
        for b in [b'a', b'Z', b'0', b'.', b'[', b'+', b'$', b'~', b'&', b'}'] {
            assert!(is_atom_char(b), "{b:#x}");
        }
        assert!(is_astring_char(b']') && !is_atom_char(b']'));
        assert!(!is_tag_char(b'+') && is_astring_char(b'+'));
        assert!(is_list_char(b'%') && is_list_char(b'*') && is_list_char(b']') && !is_list_char(b'('));
    }

    #[test]
    fn tags_and_atoms_are_validated() {
        assert_eq!(Tag::new("A001").map(|t| t.to_string()), Ok("A001".to_string()));
        assert_eq!(Tag::new("a]b").map(|t| t.to_string()), Ok("a]b".to_string()));
        assert_eq!(Tag::new(""), Err(TokenError::Empty));
        assert_eq!(Tag::new("a+b"), Err(TokenError::InvalidOctet { offset: 1 }));
        assert_eq!(Tag::new("*"), Err(TokenError::InvalidOctet { offset: 0 }));
        assert_eq!(Atom::new("a]"), Err(TokenError::InvalidOctet { offset: 1 }));
        assert!(Atom::new("$Forwarded").is_ok_and(|a| a.eq_ignore_ascii_case("$forwarded")));
        assert_eq!(Quoted::new("a\r"), Err(TokenError::InvalidOctet { offset: 1 }));
        assert!(Quoted::new("").is_ok());
    }

    #[test]
    fn literals_refuse_nul_unless_binary() {
        assert_eq!(Literal::new(b"a\0".to_vec(), LiteralMode::Sync), Err(LiteralError::Nul { offset: 1 }));
        let binary = Literal::binary(b"a\0".to_vec(), LiteralMode::NonSync);
        assert!(binary.is_binary());
        assert_eq!(binary.data(), b"a\0");
        assert_eq!(binary.mode(), LiteralMode::NonSync);
        let debug = format!("{:?}", Literal::binary(vec![b'x'; 1000], LiteralMode::Sync));
        assert!(debug.contains("len: 1000") && debug.len() < 200, "{debug}");
    }

    #[test]
    fn astring_from_bytes_picks_the_simplest_form() {
        assert_eq!(AString::from_bytes(b"INBOX"), AString::Atom("INBOX".into()));
        assert!(matches!(AString::from_bytes(b"a b"), AString::String(IString::Quoted(_))));
        assert!(matches!(AString::from_bytes(b""), AString::String(IString::Quoted(_))));
        assert!(matches!(AString::from_bytes(b"a\r\nb"), AString::String(IString::Literal(l)) if !l.is_binary()));
        assert!(matches!(AString::from_bytes(b"a\0b"), AString::String(IString::Literal(l)) if l.is_binary()));
        assert!(matches!(AString::from_bytes(&[0xff]), AString::String(IString::Literal(_))));
        for value in [&b"x"[..], b"a b", b"", b"a\r\nb", b"a\0b", &[0xff]] {
            assert_eq!(AString::from_bytes(value).as_bytes(), value);
        }
    }
}
