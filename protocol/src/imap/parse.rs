//! [`parse_command`]: one whole command, as the [`CommandFramer`](super::frame::CommandFramer)
//! yields it (lines and literal octets in wire order, final CRLF included), to a [`Command`].
//!
//! A recursive-descent parser over the ABNF of RFC 9051 section 9 and the extensions' ABNF,
//! one function per rule. It is strict where the grammar is (single spaces, no trailing
//! space, known keywords only) and lenient in two places real clients need: a bare LF is
//! taken for CRLF, and numbers may have leading zeros. Only search keys recurse, and only to
//! `max_depth` levels; every other list is flat. No input makes it panic.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use super::command::{
    AppendMessage, Command, CommandBody, CompressAlgorithm, List, ListReturn, ListSelection, QResync, QuotaResource,
    SelectParams, StatusItem, StoreAction,
};
use super::core::{
    AString, Atom, IString, Literal, LiteralMode, NString, Quoted, Tag, is_astring_char, is_atom_char, is_list_char,
    is_tag_char,
};
use super::datetime::{Date, DateTime, parse_date_text};
use super::encode::{Status, StatusKind};
use super::fetch::{FetchAttribute, FetchItems, FetchModifiers, Partial, Section, SectionText};
use super::flag::{Flag, SpecialUse};
use super::mailbox::{ListMailbox, Mailbox};
use super::search::{
    Charset, EntryType, ModSeqEntry, ObjectId, SearchKey, SearchReturn, SortCriterion, SortKey, ThreadAlgorithm,
};
use super::sequence::{SeqNumber, Sequence, SequenceSet};
use crate::sasl::{SaslError, decode_initial_response};
use crate::secret::Secret;

/// Deepest nesting of search keys (parentheses, `NOT`, `OR`) [`parse_command`] accepts.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// The largest `number64` (RFC 9051: "unsigned 63-bit integer") and mod-sequence.
const MAX_NUMBER64: u64 = i64::MAX as u64;

/// Why a command was refused. The server answers `tag BAD <Display>` when [`tag`] is known,
/// else `* BAD <Display>` ([`ParseError::status`]).
///
/// [`tag`]: ParseError::tag
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The command's tag, if the input started with a valid one.
    pub tag: Option<Tag>,
    /// The command, once its name was read (`UID FETCH`).
    pub command: Option<&'static str>,
    /// Offset in the input where the problem is.
    pub offset: usize,
    pub kind: ParseErrorKind,
}

/// What is wrong with a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The input does not start with a tag and a space.
    InvalidTag,
    /// Nothing, or no command name, after the tag.
    MissingCommand,
    /// A command name this parser does not know. `name` is printable ASCII, at most 32
    /// characters (it is echoed to the client).
    UnknownCommand { name: String },
    /// The grammar wanted this here ("SP", "a sequence set", ...).
    Expected(&'static str),
    /// A value in the right place but out of range or unsupported ("a date that exists",
    /// "an unknown STATUS item", ...).
    Invalid(&'static str),
    /// Search keys nested deeper than `max_depth`.
    TooDeep { max_depth: usize },
    /// The input ends inside the command: no final CRLF, or a literal shorter than announced.
    Incomplete,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(command) = self.command {
            write!(f, "{command}: ")?;
        }
        match &self.kind {
            ParseErrorKind::InvalidTag => f.write_str("the command does not start with a valid tag and a space"),
            ParseErrorKind::MissingCommand => f.write_str("a command name must follow the tag"),
            ParseErrorKind::UnknownCommand { name } => write!(f, "unknown command {name}"),
            ParseErrorKind::Expected(what) => write!(f, "expected {what} at octet {}", self.offset),
            ParseErrorKind::Invalid(what) => write!(f, "{what} at octet {}", self.offset),
            ParseErrorKind::TooDeep { max_depth } => {
                write!(f, "search keys nested deeper than {max_depth} levels at octet {}", self.offset)
            }
            ParseErrorKind::Incomplete => f.write_str("the command ends early (a short literal, or no CRLF)"),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The response to send: `tag BAD ...` or, without a tag, `* BAD ...`.
    pub fn status(&self) -> Status {
        Status { tag: self.tag.clone(), kind: StatusKind::Bad, code: None, text: self.to_string() }
    }
}

/// Parses one whole command (wire bytes, literals inline, final CRLF included), allowing
/// [`DEFAULT_MAX_DEPTH`] levels of search-key nesting.
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    parse_command_with(input, DEFAULT_MAX_DEPTH)
}

/// [`parse_command`] with a nesting limit for search keys (`max_depth` 0 allows only flat
/// keys).
pub fn parse_command_with(input: &[u8], max_depth: usize) -> Result<Command, ParseError> {
    let mut parser = Parser { input, pos: 0, max_depth, tag: None, command: None };
    parser.command()
}

type PResult<T> = Result<T, ParseError>;

/// Keyword characters: command names, fetch attributes, search keys (`BODY.PEEK`,
/// `HEADER.FIELDS.NOT`, `DELETED-STORAGE`).
fn is_keyword_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    max_depth: usize,
    tag: Option<Tag>,
    command: Option<&'static str>,
}

impl<'a> Parser<'a> {
    // ---- errors and low-level helpers ----

    fn error(&self, kind: ParseErrorKind) -> ParseError {
        ParseError { tag: self.tag.clone(), command: self.command, offset: self.pos, kind }
    }

    /// `Expected(what)`, or `Incomplete` when the input ran out.
    fn expected(&self, what: &'static str) -> ParseError {
        if self.pos >= self.input.len() {
            self.error(ParseErrorKind::Incomplete)
        } else {
            self.error(ParseErrorKind::Expected(what))
        }
    }

    fn invalid(&self, what: &'static str) -> ParseError {
        self.error(ParseErrorKind::Invalid(what))
    }

    fn invalid_at(&self, offset: usize, what: &'static str) -> ParseError {
        ParseError { offset, ..self.invalid(what) }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) { Ok(()) } else { Err(self.expected(what)) }
    }

    fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "SP")
    }

    fn open(&mut self) -> PResult<()> {
        self.expect(b'(', "\"(\"")
    }

    fn close(&mut self) -> PResult<()> {
        self.expect(b')', "\")\"")
    }

    fn at_line_end(&self) -> bool {
        matches!(self.input.get(self.pos..), Some([b'\r', b'\n', ..] | [b'\n', ..]))
    }

    /// CRLF (or a bare LF) inside a command: after a literal announcement.
    fn line_end(&mut self) -> PResult<()> {
        if self.input[self.pos..].starts_with(b"\r\n") {
            self.pos += 2;
        } else if !self.eat(b'\n') {
            return Err(self.expected("CRLF"));
        }
        Ok(())
    }

    /// The end of the command: CRLF (or LF) and nothing after it.
    fn end(&mut self) -> PResult<()> {
        if self.pos >= self.input.len() {
            return Err(self.error(ParseErrorKind::Incomplete));
        }
        self.line_end().map_err(|_| self.error(ParseErrorKind::Expected("end of the command (CRLF)")))?;
        if self.pos != self.input.len() {
            return Err(self.invalid("more input after the command's CRLF"));
        }
        Ok(())
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// A keyword, upper-cased (empty if none is here).
    fn keyword(&mut self) -> Vec<u8> {
        self.take_while(is_keyword_char).to_ascii_uppercase()
    }

    /// Consumes `kw` (ignoring case) if it is the whole keyword at this point.
    fn try_keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        let matches = self.input.get(self.pos..end).is_some_and(|s| s.eq_ignore_ascii_case(kw.as_bytes()))
            && !self.input.get(end).is_some_and(|&b| is_keyword_char(b));
        if matches {
            self.pos = end;
        }
        matches
    }

    fn expect_keyword(&mut self, kw: &str, what: &'static str) -> PResult<()> {
        if self.try_keyword(kw) { Ok(()) } else { Err(self.expected(what)) }
    }

    // ---- numbers ----

    fn digits(&mut self, what: &'static str, max: u64) -> PResult<u64> {
        let start = self.pos;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.expected(what));
        }
        digits
            .iter()
            .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .filter(|&n| n <= max)
            .ok_or_else(|| self.invalid_at(start, "a number out of range"))
    }

    /// `number`: 32 bits.
    fn number(&mut self) -> PResult<u32> {
        // At most u32::MAX.
        self.digits("a number", u64::from(u32::MAX)).map(|n| n as u32)
    }

    fn nz_number(&mut self) -> PResult<NonZeroU32> {
        let start = self.pos;
        let n = self.number()?;
        NonZeroU32::new(n).ok_or_else(|| self.invalid_at(start, "zero where a non-zero number is required"))
    }

    /// `number64`: 63 bits.
    fn number64(&mut self) -> PResult<u64> {
        self.digits("a number", MAX_NUMBER64)
    }

    /// `nz-number64`, `mod-sequence-value`.
    fn nz_number64(&mut self) -> PResult<NonZeroU64> {
        let start = self.pos;
        let n = self.number64()?;
        NonZeroU64::new(n).ok_or_else(|| self.invalid_at(start, "zero where a non-zero number is required"))
    }

    // ---- strings ----

    fn quoted(&mut self) -> PResult<Quoted> {
        let start = self.pos;
        self.expect(b'"', "a quoted string")?;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error(ParseErrorKind::Incomplete)),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => value.push(c),
                        _ => return Err(self.invalid("a backslash in a quoted string not before \" or \\")),
                    }
                    self.pos += 1;
                }
                Some(0 | b'\r' | b'\n') => {
                    return Err(self.invalid("a quoted string contains NUL, CR or LF (use a literal)"));
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
        let text = String::from_utf8(value).map_err(|_| self.invalid_at(start, "a quoted string that is not UTF-8"))?;
        // NUL, CR and LF were refused above.
        Quoted::new(&text).map_err(|_| self.invalid_at(start, "a quoted string contains NUL, CR or LF"))
    }

    /// `literal` (and, if `binary_allowed`, `literal8`).
    fn literal(&mut self, binary_allowed: bool) -> PResult<Literal> {
        let start = self.pos;
        let binary = self.eat(b'~');
        if binary && !binary_allowed {
            return Err(self.invalid_at(start, "a literal8 (~{n}) where only a literal is allowed"));
        }
        self.expect(b'{', "a literal")?;
        let len = self.number64()?;
        let mode = if self.eat(b'+') { LiteralMode::NonSync } else { LiteralMode::Sync };
        self.expect(b'}', "\"}\" closing the literal's length")?;
        self.line_end()?;
        let available = (self.input.len() - self.pos) as u64;
        if len > available {
            return Err(self.error(ParseErrorKind::Incomplete));
        }
        // len <= available, which is a usize.
        let data = self.input[self.pos..self.pos + len as usize].to_vec();
        let data_start = self.pos;
        self.pos += len as usize;
        if binary {
            return Ok(Literal::binary(data, mode));
        }
        Literal::new(data, mode).map_err(|error| {
            let super::core::LiteralError::Nul { offset } = error;
            self.invalid_at(data_start + offset, "a literal contains NUL (only literal8 ~{n} may)")
        })
    }

    fn string(&mut self) -> PResult<IString> {
        match self.peek() {
            Some(b'"') => self.quoted().map(IString::Quoted),
            Some(b'{') => self.literal(false).map(IString::Literal),
            _ => Err(self.expected("a string")),
        }
    }

    fn astring(&mut self) -> PResult<AString> {
        match self.peek() {
            Some(b'"' | b'{') => self.string().map(AString::String),
            _ => {
                let atom = self.take_while(is_astring_char);
                if atom.is_empty() {
                    return Err(self.expected("an atom or a string"));
                }
                // ASTRING-CHARs are ASCII.
                Ok(AString::Atom(String::from_utf8_lossy(atom).into_owned()))
            }
        }
    }

    fn nstring(&mut self) -> PResult<NString> {
        if self.try_keyword("NIL") { Ok(NString::Nil) } else { self.string().map(NString::String) }
    }

    fn atom(&mut self, what: &'static str) -> PResult<Atom> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(self.expected(what));
        }
        // ATOM-CHARs are ASCII and non-empty: a valid atom.
        Atom::new(&String::from_utf8_lossy(atom)).map_err(|_| self.expected(what))
    }

    fn mailbox(&mut self) -> PResult<Mailbox> {
        self.astring().map(Mailbox::from_astring).map_err(|e| self.rename_expected(e, "a mailbox name"))
    }

    fn list_mailbox(&mut self) -> PResult<ListMailbox> {
        match self.peek() {
            Some(b'"' | b'{') => self.string().map(ListMailbox::String),
            _ => {
                let token = self.take_while(is_list_char);
                if token.is_empty() {
                    return Err(self.expected("a mailbox name or pattern"));
                }
                Ok(ListMailbox::Token(String::from_utf8_lossy(token).into_owned()))
            }
        }
    }

    /// Replaces a generic "expected" with a more telling one.
    fn rename_expected(&self, error: ParseError, what: &'static str) -> ParseError {
        match error.kind {
            ParseErrorKind::Expected(_) => ParseError { kind: ParseErrorKind::Expected(what), ..error },
            _ => error,
        }
    }

    /// `"(" [item *(SP item)] ")"`, or with `non_empty` `"(" item *(SP item) ")"`.
    fn paren_list<T>(&mut self, non_empty: bool, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        self.open()?;
        let mut items = Vec::new();
        if !non_empty && self.eat(b')') {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(b')') {
                return Ok(items);
            }
            if !self.eat(b' ') {
                return Err(self.expected("SP or \")\""));
            }
        }
    }

    // ---- shared productions ----

    fn seq_number(&mut self) -> PResult<SeqNumber> {
        if self.eat(b'*') {
            return Ok(SeqNumber::Largest);
        }
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.expected("a sequence set"));
        }
        self.nz_number().map(SeqNumber::Value)
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let first = self.seq_number()?;
            let sequence =
                if self.eat(b':') { Sequence::Range(first, self.seq_number()?) } else { Sequence::Single(first) };
            ranges.push(sequence);
            if !self.eat(b',') {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    /// A set of UIDs a client knows (QRESYNC): no `*`, no `$`.
    fn known_set(&mut self) -> PResult<SequenceSet> {
        let start = self.pos;
        let set = self.sequence_set()?;
        if set == SequenceSet::Saved || set.uses_largest() {
            return Err(self.invalid_at(start, "\"*\" or \"$\" in a QRESYNC set"));
        }
        Ok(set)
    }

    fn date(&mut self) -> PResult<Date> {
        let quoted = self.eat(b'"');
        let start = self.pos;
        let (date, used) = parse_date_text(&self.input[self.pos..]).map_err(|error| match error {
            super::datetime::DateError::Syntax => self.expected("a date such as 1-Feb-1994"),
            _ => self.invalid("a date that does not exist"),
        })?;
        self.pos = start + used;
        if quoted {
            self.expect(b'"', "'\"' closing the date")?;
        }
        Ok(date)
    }

    fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"', "a date-time")?;
        let start = self.pos;
        let body = self.input.get(start..start + 26).ok_or_else(|| self.expected("a date-time"))?;
        let date_time = super::datetime::parse_date_time(body)
            .map_err(|_| self.invalid("a date-time not written as \"dd-Mon-yyyy hh:mm:ss +zzzz\""))?;
        self.pos += 26;
        self.expect(b'"', "'\"' closing the date-time")?;
        Ok(date_time)
    }

    fn flag(&mut self) -> PResult<Flag> {
        if self.eat(b'\\') {
            if self.peek() == Some(b'*') {
                return Err(self.invalid("\\* where a flag is required"));
            }
            return self.atom("a flag").map(Flag::from_backslashed);
        }
        self.atom("a flag").map(Flag::Keyword)
    }

    fn flag_list(&mut self) -> PResult<Vec<Flag>> {
        self.paren_list(false, Self::flag)
    }

    fn charset(&mut self) -> PResult<Charset> {
        if self.peek() == Some(b'"') {
            return self.quoted().map(|q| Charset(q.as_str().to_owned()));
        }
        self.atom("a charset").map(|a| Charset(a.as_str().to_owned()))
    }

    fn status_item(&mut self) -> PResult<StatusItem> {
        let start = self.pos;
        let word = self.keyword();
        if word.is_empty() {
            return Err(self.expected("a STATUS item"));
        }
        StatusItem::ALL
            .into_iter()
            .find(|item| item.name().as_bytes() == word)
            .ok_or_else(|| self.invalid_at(start, "an unknown STATUS item"))
    }

    // ---- commands ----

    fn command(&mut self) -> PResult<Command> {
        let tag = self.take_while(is_tag_char);
        // Tag characters are ASCII.
        let tag = Tag::new(&String::from_utf8_lossy(tag)).map_err(|_| self.error(ParseErrorKind::InvalidTag))?;
        if !self.eat(b' ') {
            // "tag\r\n": a tag and no command; anything else is no valid tag at all.
            return Err(if self.at_line_end() || self.pos == self.input.len() {
                ParseError { tag: Some(tag), ..self.error(ParseErrorKind::MissingCommand) }
            } else {
                self.error(ParseErrorKind::InvalidTag)
            });
        }
        self.tag = Some(tag.clone());
        let name_start = self.pos;
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if name.is_empty() {
            return Err(self.error(ParseErrorKind::MissingCommand));
        }
        let body = self.command_body(&name.to_ascii_uppercase(), name_start)?;
        self.end()?;
        Ok(Command { tag, body })
    }

    fn unknown_command(&self, start: usize) -> ParseError {
        let name: String = self.input[start..self.pos]
            .iter()
            .map(|&b| if b.is_ascii_graphic() || b == b' ' { char::from(b) } else { '?' })
            .take(32)
            .collect();
        ParseError { offset: start, ..self.error(ParseErrorKind::UnknownCommand { name }) }
    }

    fn command_body(&mut self, name: &[u8], name_start: usize) -> PResult<CommandBody> {
        let command: &'static str = match name {
            b"CAPABILITY" => "CAPABILITY",
            b"NOOP" => "NOOP",
            b"LOGOUT" => "LOGOUT",
            b"ID" => "ID",
            b"STARTTLS" => "STARTTLS",
            b"AUTHENTICATE" => "AUTHENTICATE",
            b"LOGIN" => "LOGIN",
            b"ENABLE" => "ENABLE",
            b"SELECT" => "SELECT",
            b"EXAMINE" => "EXAMINE",
            b"CREATE" => "CREATE",
            b"DELETE" => "DELETE",
            b"RENAME" => "RENAME",
            b"SUBSCRIBE" => "SUBSCRIBE",
            b"UNSUBSCRIBE" => "UNSUBSCRIBE",
            b"LIST" => "LIST",
            b"LSUB" => "LSUB",
            b"NAMESPACE" => "NAMESPACE",
            b"STATUS" => "STATUS",
            b"APPEND" => "APPEND",
            b"IDLE" => "IDLE",
            b"COMPRESS" => "COMPRESS",
            b"GETQUOTA" => "GETQUOTA",
            b"GETQUOTAROOT" => "GETQUOTAROOT",
            b"SETQUOTA" => "SETQUOTA",
            b"CHECK" => "CHECK",
            b"CLOSE" => "CLOSE",
            b"UNSELECT" => "UNSELECT",
            b"EXPUNGE" => "EXPUNGE",
            b"SEARCH" => "SEARCH",
            b"SORT" => "SORT",
            b"THREAD" => "THREAD",
            b"FETCH" => "FETCH",
            b"STORE" => "STORE",
            b"COPY" => "COPY",
            b"MOVE" => "MOVE",
            b"UID" => return self.uid_command(name_start),
            _ => return Err(self.unknown_command(name_start)),
        };
        self.command = Some(command);
        Ok(match command {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge,
            "ID" => self.id()?,
            "AUTHENTICATE" => self.authenticate()?,
            "LOGIN" => {
                self.sp()?;
                let username = self.astring().map_err(|e| self.rename_expected(e, "a user name"))?;
                self.sp()?;
                let password = self.astring().map_err(|e| self.rename_expected(e, "a password"))?;
                CommandBody::Login { username, password: Secret::new(password) }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.eat(b' ') {
                    capabilities.push(self.atom("a capability name")?);
                }
                if capabilities.is_empty() {
                    return Err(self.expected("SP and a capability name"));
                }
                CommandBody::Enable { capabilities }
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let params = if self.eat(b' ') { self.select_params()? } else { SelectParams::default() };
                if command == "SELECT" {
                    CommandBody::Select { mailbox, params }
                } else {
                    CommandBody::Examine { mailbox, params }
                }
            }
            "CREATE" => self.create()?,
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                match command {
                    "DELETE" => CommandBody::Delete { mailbox },
                    "SUBSCRIBE" => CommandBody::Subscribe { mailbox },
                    "UNSUBSCRIBE" => CommandBody::Unsubscribe { mailbox },
                    _ => CommandBody::GetQuotaRoot { mailbox },
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                CommandBody::Rename { from, to }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                CommandBody::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.paren_list(true, Self::status_item)?;
                CommandBody::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "COMPRESS" => {
                self.sp()?;
                let start = self.pos;
                let algorithm = self.atom("a compression algorithm")?;
                if !algorithm.eq_ignore_ascii_case("DEFLATE") {
                    return Err(self.invalid_at(start, "an unknown compression algorithm (only DEFLATE is)"));
                }
                CommandBody::Compress { algorithm: CompressAlgorithm::Deflate }
            }
            "GETQUOTA" => {
                self.sp()?;
                CommandBody::GetQuota { root: self.astring().map_err(|e| self.rename_expected(e, "a quota root"))? }
            }
            "SETQUOTA" => self.setquota()?,
            "SEARCH" => self.search(false)?,
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_or_move(command == "MOVE", false)?,
            _ => return Err(self.unknown_command(name_start)),
        })
    }

    fn uid_command(&mut self, name_start: usize) -> PResult<CommandBody> {
        self.command = Some("UID");
        self.sp()?;
        let sub = self.take_while(|b| b.is_ascii_alphanumeric()).to_ascii_uppercase();
        let command = match sub.as_slice() {
            b"COPY" => "UID COPY",
            b"MOVE" => "UID MOVE",
            b"FETCH" => "UID FETCH",
            b"SEARCH" => "UID SEARCH",
            b"STORE" => "UID STORE",
            b"EXPUNGE" => "UID EXPUNGE",
            b"SORT" => "UID SORT",
            b"THREAD" => "UID THREAD",
            _ => return Err(self.unknown_command(name_start)),
        };
        self.command = Some(command);
        match command {
            "UID COPY" => self.copy_or_move(false, true),
            "UID MOVE" => self.copy_or_move(true, true),
            "UID FETCH" => self.fetch(true),
            "UID SEARCH" => self.search(true),
            "UID STORE" => self.store(true),
            "UID SORT" => self.sort(true),
            "UID THREAD" => self.thread(true),
            _ => {
                self.sp()?;
                Ok(CommandBody::UidExpunge { uids: self.sequence_set()? })
            }
        }
    }

    fn id(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        if self.try_keyword("NIL") {
            return Ok(CommandBody::Id { parameters: None });
        }
        let parameters = self.paren_list(false, |p| {
            let field = p.string()?;
            p.sp()?;
            let value = p.nstring()?;
            Ok((field, value))
        })?;
        Ok(CommandBody::Id { parameters: Some(parameters) })
    }

    fn authenticate(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let mechanism = self.atom("a SASL mechanism name")?;
        let initial_response = if self.eat(b' ') {
            let start = self.pos;
            let token = self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if token.is_empty() {
                return Err(self.expected("a base64 initial response or \"=\""));
            }
            let response = decode_initial_response(token).map_err(|error| match error {
                SaslError::InputTooLong { .. } => self.invalid_at(start, "an initial response over the size limit"),
                _ => self.invalid_at(start, "an initial response that is not base64"),
            })?;
            Some(Secret::new(response))
        } else {
            None
        };
        Ok(CommandBody::Authenticate { mechanism, initial_response })
    }

    fn select_params(&mut self) -> PResult<SelectParams> {
        let mut params = SelectParams::default();
        self.paren_list(true, |p| {
            let start = p.pos;
            match p.keyword().as_slice() {
                b"CONDSTORE" => params.condstore = true,
                b"QRESYNC" if params.qresync.is_some() => return Err(p.invalid_at(start, "QRESYNC given twice")),
                b"QRESYNC" => params.qresync = Some(p.qresync()?),
                b"" => return Err(p.expected("a SELECT parameter")),
                _ => return Err(p.invalid_at(start, "an unknown SELECT parameter")),
            }
            Ok(())
        })?;
        Ok(params)
    }

    fn qresync(&mut self) -> PResult<QResync> {
        self.sp()?;
        self.open()?;
        let uidvalidity = self.nz_number()?;
        self.sp()?;
        let modseq = self.nz_number64()?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.eat(b' ') {
            let mut seq_match_follows = true;
            if self.peek() != Some(b'(') {
                known_uids = Some(self.known_set()?);
                seq_match_follows = self.eat(b' ');
            }
            if seq_match_follows {
                self.open()?;
                let sequences = self.known_set()?;
                self.sp()?;
                let uids = self.known_set()?;
                self.close()?;
                seq_match = Some((sequences, uids));
            }
        }
        self.close()?;
        Ok(QResync { uidvalidity, modseq, known_uids, seq_match })
    }

    fn create(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut special_use = None;
        if self.eat(b' ') {
            self.paren_list(true, |p| {
                let start = p.pos;
                if !p.try_keyword("USE") {
                    return Err(if p.keyword().is_empty() {
                        p.expected("a CREATE parameter")
                    } else {
                        p.invalid_at(start, "an unknown CREATE parameter")
                    });
                }
                if special_use.is_some() {
                    return Err(p.invalid_at(start, "USE given twice"));
                }
                p.sp()?;
                special_use = Some(p.paren_list(false, |p| {
                    p.expect(b'\\', "a special-use attribute such as \\Drafts")?;
                    p.atom("a special-use attribute").map(SpecialUse::from_backslashed)
                })?);
                Ok(())
            })?;
        }
        Ok(CommandBody::Create { mailbox, special_use })
    }

    fn list(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let selection = if self.peek() == Some(b'(') {
            let start = self.pos;
            let mut selection = ListSelection::default();
            self.paren_list(false, |p| {
                let start = p.pos;
                match p.keyword().as_slice() {
                    b"SUBSCRIBED" => selection.subscribed = true,
                    b"REMOTE" => selection.remote = true,
                    b"RECURSIVEMATCH" => selection.recursive_match = true,
                    b"SPECIAL-USE" => selection.special_use = true,
                    b"" => return Err(p.expected("a LIST selection option")),
                    _ => return Err(p.invalid_at(start, "an unknown LIST selection option")),
                }
                Ok(())
            })?;
            if selection.recursive_match && !selection.subscribed && !selection.special_use {
                return Err(self.invalid_at(start, "RECURSIVEMATCH without SUBSCRIBED or SPECIAL-USE"));
            }
            self.sp()?;
            Some(selection)
        } else {
            None
        };
        let reference = self.mailbox().map_err(|e| self.rename_expected(e, "a reference name"))?;
        self.sp()?;
        let patterns = if self.peek() == Some(b'(') {
            self.paren_list(true, Self::list_mailbox)?
        } else {
            vec![self.list_mailbox()?]
        };
        let return_options = if self.eat(b' ') {
            self.expect_keyword("RETURN", "RETURN")?;
            self.sp()?;
            Some(self.paren_list(false, |p| {
                let start = p.pos;
                Ok(match p.keyword().as_slice() {
                    b"SUBSCRIBED" => ListReturn::Subscribed,
                    b"CHILDREN" => ListReturn::Children,
                    b"SPECIAL-USE" => ListReturn::SpecialUse,
                    b"STATUS" => {
                        p.sp()?;
                        ListReturn::Status(p.paren_list(true, Self::status_item)?)
                    }
                    b"" => return Err(p.expected("a LIST return option")),
                    _ => return Err(p.invalid_at(start, "an unknown LIST return option")),
                })
            })?)
        } else {
            None
        };
        Ok(CommandBody::List(List { selection, reference, patterns, return_options }))
    }

    fn append(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while self.eat(b' ') {
            let flags = if self.peek() == Some(b'(') {
                let flags = self.flag_list()?;
                self.sp()?;
                flags
            } else {
                Vec::new()
            };
            let date = if self.peek() == Some(b'"') {
                let date = self.date_time()?;
                self.sp()?;
                Some(date)
            } else {
                None
            };
            let (message, utf8) = if self.try_keyword("UTF8") {
                self.sp()?;
                self.open()?;
                if self.peek() != Some(b'~') {
                    return Err(self.expected("a literal8 (~{n}) inside UTF8 (...)"));
                }
                let message = self.literal(true)?;
                self.close()?;
                (message, true)
            } else if matches!(self.peek(), Some(b'{' | b'~')) {
                (self.literal(true)?, false)
            } else {
                return Err(self.expected("the message as a literal"));
            };
            messages.push(AppendMessage { flags, date, message, utf8 });
        }
        if messages.is_empty() {
            return Err(self.expected("SP and a message"));
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    fn setquota(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let root = self.astring().map_err(|e| self.rename_expected(e, "a quota root"))?;
        self.sp()?;
        let limits = self.paren_list(false, |p| {
            let resource = p.atom("a quota resource name")?;
            let resource = match resource.as_str().to_ascii_uppercase().as_str() {
                "STORAGE" => QuotaResource::Storage,
                "MESSAGE" => QuotaResource::Message,
                "MAILBOX" => QuotaResource::Mailbox,
                "ANNOTATION-STORAGE" => QuotaResource::AnnotationStorage,
                _ => QuotaResource::Other(resource),
            };
            p.sp()?;
            Ok((resource, p.number64()?))
        })?;
        Ok(CommandBody::SetQuota { root, limits })
    }

    fn copy_or_move(&mut self, is_move: bool, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let sequence_set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if is_move {
            CommandBody::Move { uid, sequence_set, mailbox }
        } else {
            CommandBody::Copy { uid, sequence_set, mailbox }
        })
    }

    // ---- SEARCH, SORT, THREAD ----

    /// `[SP "RETURN" SP "(" [opt *(SP opt)] ")"]`.
    fn search_return(&mut self) -> PResult<Option<Vec<SearchReturn>>> {
        let save = self.pos;
        if !(self.eat(b' ') && self.try_keyword("RETURN")) {
            self.pos = save;
            return Ok(None);
        }
        self.sp()?;
        let options = self.paren_list(false, |p| {
            let start = p.pos;
            Ok(match p.keyword().as_slice() {
                b"MIN" => SearchReturn::Min,
                b"MAX" => SearchReturn::Max,
                b"ALL" => SearchReturn::All,
                b"COUNT" => SearchReturn::Count,
                b"SAVE" => SearchReturn::Save,
                b"" => return Err(p.expected("a RETURN option (MIN MAX ALL COUNT SAVE)")),
                _ => return Err(p.invalid_at(start, "an unknown RETURN option")),
            })
        })?;
        Ok(Some(options))
    }

    /// `search-key *(SP search-key)` up to the end of the line.
    fn search_keys(&mut self) -> PResult<Vec<SearchKey>> {
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
        }
        Ok(keys)
    }

    fn search(&mut self, uid: bool) -> PResult<CommandBody> {
        let return_options = self.search_return()?;
        self.sp()?;
        let charset = if self.try_keyword("CHARSET") {
            self.sp()?;
            let charset = self.charset()?;
            self.sp()?;
            Some(charset)
        } else {
            None
        };
        let criteria = self.search_keys()?;
        Ok(CommandBody::Search { uid, return_options, charset, criteria })
    }

    fn sort(&mut self, uid: bool) -> PResult<CommandBody> {
        let return_options = self.search_return()?;
        self.sp()?;
        let sort = self.paren_list(true, |p| {
            let reverse = p.try_keyword("REVERSE");
            if reverse {
                p.sp()?;
            }
            let start = p.pos;
            let key = match p.keyword().as_slice() {
                b"ARRIVAL" => SortKey::Arrival,
                b"CC" => SortKey::Cc,
                b"DATE" => SortKey::Date,
                b"FROM" => SortKey::From,
                b"SIZE" => SortKey::Size,
                b"SUBJECT" => SortKey::Subject,
                b"TO" => SortKey::To,
                b"DISPLAYFROM" => SortKey::DisplayFrom,
                b"DISPLAYTO" => SortKey::DisplayTo,
                b"" => return Err(p.expected("a sort key")),
                _ => return Err(p.invalid_at(start, "an unknown sort key")),
            };
            Ok(SortCriterion { reverse, key })
        })?;
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let criteria = self.search_keys()?;
        Ok(CommandBody::Sort { uid, return_options, sort, charset, criteria })
    }

    fn thread(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let start = self.pos;
        let algorithm = match self.keyword().as_slice() {
            b"ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            b"REFERENCES" => ThreadAlgorithm::References,
            b"" => return Err(self.expected("a threading algorithm")),
            _ => return Err(self.invalid_at(start, "an unknown threading algorithm")),
        };
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let criteria = self.search_keys()?;
        Ok(CommandBody::Thread { uid, algorithm, charset, criteria })
    }

    fn search_key(&mut self, depth: usize) -> PResult<SearchKey> {
        if depth > self.max_depth {
            return Err(self.error(ParseErrorKind::TooDeep { max_depth: self.max_depth }));
        }
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut keys = vec![self.search_key(depth + 1)?];
                while self.eat(b' ') {
                    keys.push(self.search_key(depth + 1)?);
                }
                self.close()?;
                return Ok(SearchKey::And(keys));
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return self.sequence_set().map(SearchKey::SequenceSet),
            _ => {}
        }
        let start = self.pos;
        let word = self.keyword();
        Ok(match word.as_slice() {
            b"ALL" => SearchKey::All,
            b"ANSWERED" => SearchKey::Answered,
            b"BCC" => SearchKey::Bcc(self.arg(Self::astring)?),
            b"BEFORE" => SearchKey::Before(self.arg(Self::date)?),
            b"BODY" => SearchKey::Body(self.arg(Self::astring)?),
            b"CC" => SearchKey::Cc(self.arg(Self::astring)?),
            b"DELETED" => SearchKey::Deleted,
            b"DRAFT" => SearchKey::Draft,
            b"FLAGGED" => SearchKey::Flagged,
            b"FROM" => SearchKey::From(self.arg(Self::astring)?),
            b"HEADER" => {
                let name = self.arg(Self::astring)?;
                SearchKey::Header(name, self.arg(Self::astring)?)
            }
            b"KEYWORD" => {
                self.sp()?;
                SearchKey::Keyword(self.atom("a keyword")?)
            }
            b"LARGER" => SearchKey::Larger(self.arg(Self::number64)?),
            b"NEW" => SearchKey::New,
            b"NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.search_key(depth + 1)?))
            }
            b"OLD" => SearchKey::Old,
            b"ON" => SearchKey::On(self.arg(Self::date)?),
            b"OR" => {
                self.sp()?;
                let left = self.search_key(depth + 1)?;
                self.sp()?;
                let right = self.search_key(depth + 1)?;
                SearchKey::Or(Box::new(left), Box::new(right))
            }
            b"RECENT" => SearchKey::Recent,
            b"SEEN" => SearchKey::Seen,
            b"SENTBEFORE" => SearchKey::SentBefore(self.arg(Self::date)?),
            b"SENTON" => SearchKey::SentOn(self.arg(Self::date)?),
            b"SENTSINCE" => SearchKey::SentSince(self.arg(Self::date)?),
            b"SINCE" => SearchKey::Since(self.arg(Self::date)?),
            b"SMALLER" => SearchKey::Smaller(self.arg(Self::number64)?),
            b"SUBJECT" => SearchKey::Subject(self.arg(Self::astring)?),
            b"TEXT" => SearchKey::Text(self.arg(Self::astring)?),
            b"TO" => SearchKey::To(self.arg(Self::astring)?),
            b"UID" => SearchKey::Uid(self.arg(Self::sequence_set)?),
            b"UNANSWERED" => SearchKey::Unanswered,
            b"UNDELETED" => SearchKey::Undeleted,
            b"UNDRAFT" => SearchKey::Undraft,
            b"UNFLAGGED" => SearchKey::Unflagged,
            b"UNKEYWORD" => {
                self.sp()?;
                SearchKey::Unkeyword(self.atom("a keyword")?)
            }
            b"UNSEEN" => SearchKey::Unseen,
            b"MODSEQ" => self.search_modseq()?,
            b"OLDER" => SearchKey::Older(self.arg(Self::nz_number)?),
            b"YOUNGER" => SearchKey::Younger(self.arg(Self::nz_number)?),
            b"EMAILID" => SearchKey::EmailId(self.arg(Self::object_id)?),
            b"THREADID" => SearchKey::ThreadId(self.arg(Self::object_id)?),
            b"SAVEDBEFORE" => SearchKey::SavedBefore(self.arg(Self::date)?),
            b"SAVEDON" => SearchKey::SavedOn(self.arg(Self::date)?),
            b"SAVEDSINCE" => SearchKey::SavedSince(self.arg(Self::date)?),
            b"SAVEDATESUPPORTED" => SearchKey::SaveDateSupported,
            b"" => return Err(self.expected("a search key")),
            _ => return Err(self.invalid_at(start, "an unknown search key")),
        })
    }

    /// `SP` and an argument.
    fn arg<T>(&mut self, argument: fn(&mut Self) -> PResult<T>) -> PResult<T> {
        self.sp()?;
        argument(self)
    }

    fn object_id(&mut self) -> PResult<ObjectId> {
        let start = self.pos;
        let id = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if id.is_empty() {
            return Err(self.expected("an object id"));
        }
        ObjectId::new(&String::from_utf8_lossy(id))
            .ok_or_else(|| self.invalid_at(start, "an object id over 255 characters"))
    }

    /// `"MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer`, after `MODSEQ`.
    fn search_modseq(&mut self) -> PResult<SearchKey> {
        self.sp()?;
        let entry = if self.peek() == Some(b'"') {
            let start = self.pos;
            let name = self.quoted()?;
            let flag = name
                .as_str()
                .get(..7)
                .filter(|prefix| prefix.eq_ignore_ascii_case("/flags/"))
                .and_then(|_| {
                    let flag = &name.as_str()[7..];
                    match flag.strip_prefix('\\') {
                        Some(system) => Atom::new(system).ok().map(Flag::from_backslashed),
                        None => Atom::new(flag).ok().map(Flag::Keyword),
                    }
                })
                .ok_or_else(|| self.invalid_at(start, "an entry name that is not \"/flags/<flag>\""))?;
            self.sp()?;
            let start = self.pos;
            let kind = match self.keyword().as_slice() {
                b"PRIV" => EntryType::Private,
                b"SHARED" => EntryType::Shared,
                b"ALL" => EntryType::All,
                _ => return Err(self.invalid_at(start, "an entry type that is not priv, shared or all")),
            };
            self.sp()?;
            Some(ModSeqEntry { flag, kind })
        } else {
            None
        };
        let modseq = self.number64()?;
        Ok(SearchKey::ModSeq { entry, modseq })
    }

    // ---- FETCH, STORE ----

    fn fetch(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let sequence_set = self.sequence_set()?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            FetchItems::Attributes(self.paren_list(true, Self::fetch_attribute)?)
        } else if self.try_keyword("ALL") {
            FetchItems::All
        } else if self.try_keyword("FAST") {
            FetchItems::Fast
        } else if self.try_keyword("FULL") {
            FetchItems::Full
        } else {
            FetchItems::Attributes(vec![self.fetch_attribute()?])
        };
        let mut modifiers = FetchModifiers::default();
        if self.eat(b' ') {
            let start = self.pos;
            self.paren_list(true, |p| {
                let start = p.pos;
                match p.keyword().as_slice() {
                    b"CHANGEDSINCE" if modifiers.changed_since.is_none() => {
                        p.sp()?;
                        modifiers.changed_since = Some(p.nz_number64()?);
                    }
                    b"VANISHED" if !modifiers.vanished => modifiers.vanished = true,
                    b"CHANGEDSINCE" | b"VANISHED" => return Err(p.invalid_at(start, "a FETCH modifier given twice")),
                    b"" => return Err(p.expected("a FETCH modifier")),
                    _ => return Err(p.invalid_at(start, "an unknown FETCH modifier")),
                }
                Ok(())
            })?;
            if modifiers.vanished && !uid {
                return Err(self.invalid_at(start, "VANISHED in FETCH (only UID FETCH takes it)"));
            }
            if modifiers.vanished && modifiers.changed_since.is_none() {
                return Err(self.invalid_at(start, "VANISHED without CHANGEDSINCE"));
            }
        }
        Ok(CommandBody::Fetch { uid, sequence_set, items, modifiers })
    }

    fn fetch_attribute(&mut self) -> PResult<FetchAttribute> {
        let start = self.pos;
        let word = self.keyword();
        Ok(match word.as_slice() {
            b"ENVELOPE" => FetchAttribute::Envelope,
            b"FLAGS" => FetchAttribute::Flags,
            b"INTERNALDATE" => FetchAttribute::InternalDate,
            b"RFC822" => FetchAttribute::Rfc822,
            b"RFC822.HEADER" => FetchAttribute::Rfc822Header,
            b"RFC822.SIZE" => FetchAttribute::Rfc822Size,
            b"RFC822.TEXT" => FetchAttribute::Rfc822Text,
            b"BODYSTRUCTURE" => FetchAttribute::BodyStructure,
            b"UID" => FetchAttribute::Uid,
            b"MODSEQ" => FetchAttribute::ModSeq,
            b"EMAILID" => FetchAttribute::EmailId,
            b"THREADID" => FetchAttribute::ThreadId,
            b"SAVEDATE" => FetchAttribute::SaveDate,
            b"BODY" if self.peek() != Some(b'[') => FetchAttribute::Body,
            b"BODY" | b"BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAttribute::BodySection { peek: word == b"BODY.PEEK", section, partial }
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let part = self.section_binary()?;
                let partial = self.partial()?;
                FetchAttribute::Binary { peek: word == b"BINARY.PEEK", part, partial }
            }
            b"BINARY.SIZE" => FetchAttribute::BinarySize { part: self.section_binary()? },
            b"" => return Err(self.expected("a fetch attribute")),
            _ => return Err(self.invalid_at(start, "an unknown fetch attribute")),
        })
    }

    /// `section-part`: `nz-number *("." nz-number)`, stopping before `.` and a letter.
    fn section_part(&mut self) -> PResult<Vec<NonZeroU32>> {
        let mut part = vec![self.nz_number()?];
        while self.peek() == Some(b'.') && self.input.get(self.pos + 1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            part.push(self.nz_number()?);
        }
        Ok(part)
    }

    fn section(&mut self) -> PResult<Section> {
        self.expect(b'[', "\"[\" and a section")?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part = self.section_part()?;
            if self.eat(b']') {
                return Ok(section);
            }
            self.expect(b'.', "\".\" or \"]\" after the part number")?;
        }
        let start = self.pos;
        section.text = Some(match self.keyword().as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !section.part.is_empty() => SectionText::Mime,
            b"MIME" => return Err(self.invalid_at(start, "MIME without a part number")),
            b"HEADER.FIELDS" => SectionText::HeaderFields(self.header_list()?),
            b"HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(self.header_list()?),
            b"" => return Err(self.expected("a section (HEADER, HEADER.FIELDS, TEXT, MIME or a part number)")),
            _ => return Err(self.invalid_at(start, "an unknown section")),
        });
        self.expect(b']', "\"]\" closing the section")?;
        Ok(section)
    }

    fn header_list(&mut self) -> PResult<Vec<AString>> {
        self.sp()?;
        self.paren_list(true, |p| p.astring().map_err(|e| p.rename_expected(e, "a header field name")))
    }

    fn section_binary(&mut self) -> PResult<Vec<NonZeroU32>> {
        self.expect(b'[', "\"[\" and a part number")?;
        if self.eat(b']') {
            return Ok(Vec::new());
        }
        let part = self.section_part()?;
        self.expect(b']', "\"]\" closing the part number")?;
        Ok(part)
    }

    fn partial(&mut self) -> PResult<Option<Partial>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number64()?;
        self.expect(b'.', "\".\" and the length of the partial")?;
        let length = self.nz_number64()?;
        self.expect(b'>', "\">\" closing the partial")?;
        Ok(Some(Partial { offset, length }))
    }

    fn store(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let sequence_set = self.sequence_set()?;
        self.sp()?;
        let unchanged_since = if self.peek() == Some(b'(') {
            self.open()?;
            self.expect_keyword("UNCHANGEDSINCE", "UNCHANGEDSINCE")?;
            self.sp()?;
            let modseq = self.number64()?;
            self.close()?;
            self.sp()?;
            Some(modseq)
        } else {
            None
        };
        let action = if self.eat(b'+') {
            StoreAction::Add
        } else if self.eat(b'-') {
            StoreAction::Remove
        } else {
            StoreAction::Replace
        };
        let silent = if self.try_keyword("FLAGS") {
            false
        } else if self.try_keyword("FLAGS.SILENT") {
            true
        } else {
            return Err(self.expected("FLAGS, +FLAGS or -FLAGS (with .SILENT)"));
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.eat(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandBody::Store { uid, sequence_set, unchanged_since, action, silent, flags })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(input: &[u8]) -> ParseError {
        parse_command(input).expect_err("must not parse")
    }

    #[test]
    fn tags_are_reported_when_readable() {
        let e = error(b"a1 FOO\r\n");
        assert_eq!(e.tag.as_ref().map(Tag::as_str), Some("a1"));
        assert_eq!(e.kind, ParseErrorKind::UnknownCommand { name: "FOO".into() });
        assert_eq!(e.status().encode(), b"a1 BAD unknown command FOO\r\n");

        let e = error(b"+ NOOP\r\n");
        assert_eq!((e.tag.clone(), e.kind.clone()), (None, ParseErrorKind::InvalidTag));
        assert_eq!(e.status().encode(), b"* BAD the command does not start with a valid tag and a space\r\n");
        assert_eq!(error(b"\r\n").kind, ParseErrorKind::InvalidTag);
        assert_eq!(error(b"a{1}\r\n").kind, ParseErrorKind::InvalidTag);
        let e = error(b"a1\r\n");
        assert_eq!((e.tag.is_some(), e.kind), (true, ParseErrorKind::MissingCommand));
        assert_eq!(error(b"a1 \r\n").kind, ParseErrorKind::MissingCommand);
    }

    #[test]
    fn errors_name_the_command_and_the_offset() {
        let e = error(b"a FETCH 1:* (FLAGS BODY[HEADER.FIELDS DATE])\r\n");
        assert_eq!(e.command, Some("FETCH"));
        assert_eq!(e.to_string(), "FETCH: expected \"(\" at octet 38");
        let e = error(b"a UID FETCH 0 FLAGS\r\n");
        assert_eq!(e.to_string(), "UID FETCH: zero where a non-zero number is required at octet 12");
        let e = error(b"a SEARCH SINCE 30-Feb-2024\r\n");
        assert_eq!(e.to_string(), "SEARCH: a date that does not exist at octet 15");
        let e = error(b"a NOOP \r\n");
        assert_eq!(e.to_string(), "NOOP: expected end of the command (CRLF) at octet 6");
        let e = error(b"a NOOP\r\nb NOOP\r\n");
        assert_eq!(e.kind, ParseErrorKind::Invalid("more input after the command's CRLF"));
        assert_eq!(error(b"a NOOP").kind, ParseErrorKind::Incomplete);
        assert_eq!(error(b"a LOGIN {5}\r\nab").kind, ParseErrorKind::Incomplete);
    }

    #[test]
    fn unknown_command_names_are_sanitised() {
        let e = error(b"a X-\xff\xfe\r\n");
        assert_eq!(e.kind, ParseErrorKind::UnknownCommand { name: "X-".into() });
        let long = [b"a ".as_slice(), &[b'X'; 100], b"\r\n"].concat();
        let ParseErrorKind::UnknownCommand { name } = error(&long).kind else { panic!("unknown command") };
        assert_eq!(name.len(), 32);
        let e = error(b"a UID NOPE 1\r\n");
        assert_eq!(e.kind, ParseErrorKind::UnknownCommand { name: "UID NOPE".into() });
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(error(b"a FETCH 4294967296 FLAGS\r\n").kind, ParseErrorKind::Invalid("a number out of range"));
        assert!(parse_command(b"a FETCH 4294967295 FLAGS\r\n").is_ok());
        assert!(parse_command(b"a SEARCH LARGER 9223372036854775807\r\n").is_ok());
        assert!(parse_command(b"a SEARCH LARGER 9223372036854775808\r\n").is_err());
        assert!(parse_command(b"a SEARCH LARGER 99999999999999999999999999999\r\n").is_err());
        assert!(parse_command(b"a FETCH 007 FLAGS\r\n").is_ok(), "leading zeros are tolerated");
    }

    #[test]
    fn depth_is_bounded() {
        let nested = |n: usize| {
            [b"a SEARCH ".to_vec(), b"(".repeat(n), b"ALL".to_vec(), b")".repeat(n), b"\r\n".to_vec()].concat()
        };
        assert!(parse_command(&nested(DEFAULT_MAX_DEPTH)).is_ok());
        assert_eq!(
            error(&nested(DEFAULT_MAX_DEPTH + 1)).kind,
            ParseErrorKind::TooDeep { max_depth: DEFAULT_MAX_DEPTH }
        );
        let nots = |n: usize| [b"a SEARCH ".to_vec(), b"NOT ".repeat(n), b"SEEN\r\n".to_vec()].concat();
        assert!(parse_command(&nots(DEFAULT_MAX_DEPTH)).is_ok());
        assert!(matches!(error(&nots(DEFAULT_MAX_DEPTH + 1)).kind, ParseErrorKind::TooDeep { .. }));
        let ors = |n: usize| [b"a SEARCH ".to_vec(), b"OR SEEN ".repeat(n), b"SEEN\r\n".to_vec()].concat();
        assert!(parse_command(&ors(DEFAULT_MAX_DEPTH)).is_ok());
        assert!(matches!(error(&ors(DEFAULT_MAX_DEPTH + 1)).kind, ParseErrorKind::TooDeep { .. }));
        assert!(parse_command_with(b"a SEARCH NOT SEEN\r\n", 0).is_err());
        assert!(parse_command_with(b"a SEARCH SEEN\r\n", 0).is_ok());
        // Far past the limit: refused without exhausting the stack.
        assert!(matches!(error(&nested(100_000)).kind, ParseErrorKind::TooDeep { .. }));
    }

    #[test]
    fn bare_lf_ends_lines() {
        assert!(parse_command(b"a NOOP\n").is_ok());
        assert!(parse_command(b"a LOGIN {5}\nalice x\n").is_ok());
        assert_eq!(error(b"a NOOP\r").kind, ParseErrorKind::Expected("end of the command (CRLF)"));
    }
}
