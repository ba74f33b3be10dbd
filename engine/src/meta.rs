//! Parsed metadata of a message, computed once when the message is appended.
//!
//! The store parses every message exactly once, at append time, with [`parse`], and keeps
//! the [`MessageMeta::encode`]d result beside the message bytes. IMAP `FETCH ENVELOPE`,
//! `BODY`/`BODYSTRUCTURE`, `BODY[HEADER.FIELDS (...)]` of the common fields, `BODY[n.m]`
//! section lookups, JMAP `Email/get` and `SORT` then work from this metadata and never
//! re-parse message bodies.
//!
//! # What the metadata holds
//!
//! * [`MessageMeta::header_len`]: the byte length of the top-level header block, the blank
//!   line included, so the body starts at that offset.
//! * [`MessageMeta::sent_date`]: the `Date:` header as Unix seconds (UTC), if it parses.
//! * [`MessageMeta::envelope`]: the IMAP `ENVELOPE` fields (RFC 9051 section 7.5.2), see
//!   [`Envelope`] and [`Address`]. No defaults are applied: an absent `Sender:` or
//!   `Reply-To:` stays empty here, and the protocol layer substitutes `From:` as RFC 9051
//!   requires.
//! * [`MessageMeta::references`]: the message-ids of the `References:` header, in order,
//!   **without** their angle brackets (`<a@b>` is stored as `a@b`).
//! * [`MessageMeta::cached_fields`]: the raw field lines of the header fields named in
//!   [`CACHED_FIELDS`], byte-exact, so `BODY[HEADER.FIELDS (...)]` over those fields can be
//!   answered without reading the message.
//! * [`MessageMeta::body`]: the MIME body structure tree ([`BodyPart`]), with the byte
//!   offsets of every part.
//!
//! When a header field occurs more than once, the envelope, `sent_date` and `references`
//! use its **first** occurrence, while the MIME fields of a part (`Content-Type`,
//! `Content-Transfer-Encoding`, `Content-Disposition`, ...) use the **last** occurrence,
//! because that is the one mail-parser uses to split the body, and the structure must agree
//! with the offsets.
//!
//! # Offsets
//!
//! Every offset (`header_len`, [`BodyPart::header_start`], [`BodyPart::body_start`],
//! [`BodyPart::body_end`]) is a byte index into the message **exactly as stored**: the store
//! keeps the appended bytes unchanged (no line-ending conversion), so the offsets index
//! those bytes directly, LF or CRLF alike. `parse` guarantees, for every part,
//! `header_start <= body_start <= body_end <= message length`, that the children of a
//! multipart and the encapsulated message of a `message/rfc822` part lie within their
//! parent's `body_start..body_end`, that the root has `header_start == 0`,
//! `body_start == header_len` and `body_end ==` the message length, and that the root of an
//! encapsulated message ends where its enclosing `message/rfc822` part ends. `decode`
//! checks the same ordering and nesting (it cannot check against the message length,
//! which it does not know).
//!
//! Messages of 4 GiB (`u32::MAX` bytes) or more are not supported: they get a degraded
//! metadata (one `text/plain` part, offsets saturated at `u32::MAX`).
//!
//! # Structure rules
//!
//! [`parse`] splits the message with mail-parser's stream primitives without decoding any
//! body (`scan.rs`: the same parts and offsets as mail-parser's full `MessageParser::parse`,
//! which [`parse_with_full_decode`] keeps as the tested reference), parses header fields with
//! mail-parser, and degrades, never
//! panics, on malformed input. The tree keeps these invariants, so the protocol layer can
//! write `BODYSTRUCTURE` from the kind alone:
//!
//! * [`PartKind::Multipart`] ⇔ `content_type == "multipart"`. Its child list may be empty
//!   when the boundary was found but no part followed; IMAP requires at least one body
//!   there, so the protocol layer writes a synthetic empty `text/plain` part (as Dovecot
//!   does). A `multipart/*` whose boundary is missing or never found is a
//!   [`PartKind::Single`] `text/plain; charset=us-ascii` part.
//! * [`PartKind::Message`] ⇔ `content_type == "message"` and subtype `rfc822` or `global`.
//!   A `message/rfc822` that mail-parser could not parse in place (a base64 or
//!   quoted-printable encoded one, whose inner offsets would index the decoded bytes, or
//!   one without any header) is a [`PartKind::Single`] `application/octet-stream` part
//!   that keeps the header's parameters.
//! * A part without `Content-Type` is `text/plain; charset=us-ascii` (RFC 2045), or
//!   `message/rfc822` inside a `multipart/digest` (RFC 2046); a syntactically invalid
//!   `Content-Type` (no subtype) is `text/plain; charset=us-ascii` too.
//! * Nesting is limited to [`MAX_PART_DEPTH`] levels (the root is level 1, each multipart
//!   child or encapsulated message adds one). A multipart or message part at the last level
//!   becomes a [`PartKind::Single`] following the two rules above.
//!
//! # Encoding (format version 1)
//!
//! [`MessageMeta::encode`] writes a compact binary form; [`MessageMeta::decode`] reads it
//! back. All integers are little-endian. Notation:
//!
//! | notation | encoding |
//! | --- | --- |
//! | `u8` | 1 byte |
//! | `u32` | 4 bytes, unsigned, little-endian |
//! | `i64` | 8 bytes, two's complement, little-endian |
//! | `str` | `u32` byte length N, then N bytes of UTF-8 (the decoder rejects invalid UTF-8) |
//! | `bytes` | `u32` byte length N, then N bytes |
//! | `opt<T>` | `u8` tag: 0 = absent (nothing follows), 1 = present (one `T` follows); any other tag is an error |
//! | `vec<T>` | `u32` count N, then N values of `T`, one after the other |
//!
//! The encoding is one `meta`, and nothing after it:
//!
//! ```text
//! meta      = u8 version (= 1, META_FORMAT_VERSION)
//!             u32 header_len
//!             opt<i64> sent_date            Unix seconds, UTC
//!             envelope
//!             vec<str> references           message-ids without angle brackets
//!             vec<field> cached_fields      in message order
//!             part body                     the root part
//! field     = str name                      the CACHED_FIELDS spelling, e.g. "Message-ID"
//!             bytes line                    raw field line: name, colon, value, folding, line ending
//! envelope  = opt<str> date
//!             opt<str> subject
//!             vec<address> from
//!             vec<address> sender
//!             vec<address> reply_to
//!             vec<address> to
//!             vec<address> cc
//!             vec<address> bcc
//!             opt<str> in_reply_to
//!             opt<str> message_id
//! address   = opt<str> name
//!             opt<str> mailbox
//!             opt<str> host
//! part      = str content_type              lowercase
//!             str subtype                   lowercase
//!             vec<param> params
//!             opt<str> id                   Content-ID, raw
//!             opt<str> description          Content-Description, raw
//!             opt<str> encoding             Content-Transfer-Encoding, as written
//!             opt<str> md5                  Content-MD5, raw
//!             opt<disposition> disposition
//!             vec<str> language             Content-Language tags
//!             opt<str> location             Content-Location, raw
//!             u32 header_start
//!             u32 body_start
//!             u32 body_end
//!             u32 lines
//!             u8 kind tag, then:
//!                 0 = Single     nothing more
//!                 1 = Multipart  vec<part> children
//!                 2 = Message    envelope (of the encapsulated message), then
//!                                part (the encapsulated message's root part)
//!                 any other tag is an error
//! param     = str name                      lowercase
//!             str value                     decoded (RFC 2231), UTF-8
//! disposition = str type                    lowercase, e.g. "attachment"
//!             vec<param> params
//! ```
//!
//! A decoder must also enforce, and this one does (each failure is a [`MetaDecodeError`]
//! naming the byte offset):
//!
//! * the version byte is 1;
//! * every length or count fits in the bytes that remain: a `vec<T>` count N is rejected
//!   unless N × (minimum encoded size of `T`) ≤ remaining bytes, with minimum sizes
//!   `str` 4, `address` 3, `param` 8, `field` 8, `part` 39, so a hostile count never
//!   makes the decoder allocate more than a small multiple of its input;
//! * parts nest at most 64 levels deep (the root part is level 1; each `Multipart` child and
//!   each `Message`'s inner part is one level deeper);
//! * in every part `header_start <= body_start <= body_end`; every child part, and the inner
//!   part of a `Message`, lies within its parent's `body_start..=body_end`; the root part has
//!   `header_start == 0` and `body_start == header_len`;
//! * no bytes follow the root part.

mod scan;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;

use mail_parser::{
    ContentType, Encoding as TransferEncoding, Header, HeaderName, HeaderValue, Message, MessageParser, PartType,
};

/// Version of the binary encoding, written as its first byte.
pub const META_FORMAT_VERSION: u8 = 1;

/// Deepest nesting of body parts kept by [`parse`] and accepted by [`MessageMeta::decode`];
/// the root part is level 1.
pub const MAX_PART_DEPTH: usize = 64;

/// Header fields whose raw lines are kept in [`MessageMeta::cached_fields`]. Names compare
/// case-insensitively; the spelling here is the one stored.
pub const CACHED_FIELDS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Reply-To",
    "Sender",
    "Content-Type",
    "Priority",
    "X-Priority",
    "Importance",
    "List-Id",
    "List-Unsubscribe",
    "Newsgroups",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "Return-Path",
    "Delivered-To",
    "X-Mailer",
    "User-Agent",
];

/// Whether `name` (compared case-insensitively) is one of [`CACHED_FIELDS`], so that every
/// occurrence of it is in [`MessageMeta::cached_fields`].
pub fn is_cached_field(name: &str) -> bool {
    CACHED_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// Everything the protocol layers need to know about a message without re-parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Byte length of the top-level header block including the blank line that ends it
    /// (the whole message if it has no blank line); the body starts at this offset.
    pub header_len: u32,
    /// The first `Date:` header as Unix seconds (UTC), if it parses as a valid date.
    pub sent_date: Option<i64>,
    /// The IMAP ENVELOPE fields of the message.
    pub envelope: Envelope,
    /// Message-ids of the first `References:` header, in order, without angle brackets.
    pub references: Vec<String>,
    /// For each top-level header field named in [`CACHED_FIELDS`], in message order, every
    /// occurrence: the name spelt as in [`CACHED_FIELDS`], and the raw field exactly as in
    /// the message (name as written, colon, value, folding and line ending).
    pub cached_fields: Vec<(String, Vec<u8>)>,
    /// The root of the body structure; it spans the whole message (`header_start == 0`,
    /// `body_start == header_len`, `body_end ==` message length).
    pub body: BodyPart,
}

/// The IMAP ENVELOPE fields (RFC 9051 section 7.5.2) of a message or encapsulated message.
///
/// Strings (`date`, `subject`, `in_reply_to`, `message_id`) are the raw header values of
/// the first occurrence of the field: unfolded (a line break followed by a space or tab is
/// removed, the space or tab kept, as RFC 5322 unfolds), trimmed of leading and trailing
/// whitespace, converted lossily to UTF-8, and **not** RFC 2047 decoded. `None` means the
/// field is absent; a present but empty field is `Some("")`.
///
/// Address lists hold what the first occurrence of the field says; no defaults are
/// applied (an absent `Sender:` is an empty list here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// An address of an [`Envelope`], or a group marker, as IMAP encodes them.
///
/// * A mailbox: `host` is `Some` (the part after the last `@`, or `""` when the address
///   has no `@`), `mailbox` is `Some` (the part before it, `""` when only a display name
///   was given), `name` is the display name, RFC 2047 decoded to UTF-8 (the protocol layer
///   re-encodes it when needed), or `None`.
/// * The start of a group: `Address { name: None, mailbox: Some(group name), host: None }`,
///   followed by the group's members, then the end of the group:
///   `Address { name: None, mailbox: None, host: None }`.
///
/// So `host.is_none()` exactly for group markers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// One MIME part of the body structure, with what IMAP `BODYSTRUCTURE` (with extension
/// data) and JMAP need, and the byte offsets to fetch it without re-parsing.
///
/// The raw string fields (`id`, `description`, `encoding`, `md5`, `location`) are the
/// unfolded, trimmed header values of the last occurrence of their field, not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// Media type, lowercase (`"text"`, `"multipart"`, ...).
    pub content_type: String,
    /// Media subtype, lowercase (`"plain"`, `"mixed"`, ...).
    pub subtype: String,
    /// `Content-Type` parameters in header order: names lowercase, values decoded (RFC 2231
    /// continuations and charsets), quotes removed.
    pub params: Vec<(String, String)>,
    /// `Content-ID`, raw (angle brackets kept).
    pub id: Option<String>,
    /// `Content-Description`, raw.
    pub description: Option<String>,
    /// `Content-Transfer-Encoding` as written (`None` if absent: IMAP then says `7BIT`).
    pub encoding: Option<String>,
    /// `Content-MD5`, raw.
    pub md5: Option<String>,
    /// `Content-Disposition`: type (lowercase) and parameters like `params`.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// `Content-Language` tags.
    pub language: Vec<String>,
    /// `Content-Location`, raw.
    pub location: Option<String>,
    /// Offset of the part's MIME header in the stored message (for the root, 0; for the
    /// inner part of a `message/rfc822`, the start of the encapsulated message's header).
    pub header_start: u32,
    /// Offset of the part's body: the end of its header, blank line included.
    pub body_start: u32,
    /// Offset just past the part's body. In a multipart, that is before the line break that
    /// precedes the next boundary delimiter line (RFC 2046: that line break belongs to the
    /// delimiter). The IMAP size of the part is `body_end - body_start`.
    pub body_end: u32,
    /// Number of lines of the body (`body_start..body_end`): its LFs, plus one if it is not
    /// empty and does not end with LF. Computed for `text/*` parts and
    /// [`PartKind::Message`] parts, as IMAP needs it; 0 for every other part.
    pub lines: u32,
    /// Whether the part is a leaf, a multipart or an encapsulated message.
    pub kind: PartKind,
}

/// What a [`BodyPart`] contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// A leaf part (including `message/*` parts that are not parsed in place).
    Single,
    /// A `multipart/*` part with its children in order (possibly none, see the module doc).
    Multipart(Vec<BodyPart>),
    /// A `message/rfc822` or `message/global` part: the encapsulated message's envelope and
    /// its root part, whose `header_start` is this part's `body_start` and whose `body_end`
    /// is this part's `body_end`.
    Message { envelope: Box<Envelope>, body: Box<BodyPart> },
}

impl BodyPart {
    /// Size of the part's body in bytes, as IMAP reports it.
    pub fn size(&self) -> u32 {
        self.body_end.saturating_sub(self.body_start)
    }

    /// The parts numbered `1..` under this part for IMAP section numbers: a multipart's
    /// children; for an encapsulated message, the children of its body if that is a
    /// multipart, else its body alone; nothing for a leaf.
    pub fn subparts(&self) -> &[BodyPart] {
        match &self.kind {
            PartKind::Single => &[],
            PartKind::Multipart(children) => children,
            PartKind::Message { body, .. } => message_parts(body),
        }
    }
}

/// Parts numbered `1..` of a message whose root part is `root` (RFC 9051 section 6.4.5).
fn message_parts(root: &BodyPart) -> &[BodyPart] {
    match &root.kind {
        PartKind::Multipart(children) => children,
        _ => std::slice::from_ref(root),
    }
}

impl MessageMeta {
    /// The part named by an IMAP section part number (RFC 9051 section 6.4.5), given as its
    /// numbers: `[1]` is the first part of a multipart message or the body of any other
    /// message, `[2, 1]` is the first part of part 2, and so on. `None` if there is no such
    /// part (or `path` is empty or holds a 0).
    pub fn section(&self, path: &[u32]) -> Option<&BodyPart> {
        let mut parts = message_parts(&self.body);
        let mut found = None;
        for &n in path {
            let index = usize::try_from(n.checked_sub(1)?).ok()?;
            let part = parts.get(index)?;
            parts = part.subparts();
            found = Some(part);
        }
        found
    }

    /// The raw lines of every occurrence of the cached field `name` (compared
    /// case-insensitively), in message order. Only meaningful for names for which
    /// [`is_cached_field`] is true.
    pub fn cached_field<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.cached_fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, line)| line.as_slice())
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// mail-parser configured to parse only the header fields this module reads as structured
/// values; every other field is skipped (its offsets are still recorded), which spares the
/// costly `Received:` parsing.
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .header_text(HeaderName::ContentTransferEncoding)
        .header_comma_separated(HeaderName::ContentLanguage)
        .header_date(HeaderName::Date)
        .header_address(HeaderName::From)
        .header_address(HeaderName::Sender)
        .header_address(HeaderName::ReplyTo)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_address(HeaderName::Bcc)
        .header_id(HeaderName::References)
        .default_header_ignore()
});

/// Parses a message as stored (any bytes: LF or CRLF, 8-bit, malformed, empty) into its
/// metadata. Never panics: whatever mail-parser cannot make sense of degrades to a
/// `text/plain` body (see the module documentation).
pub fn parse(raw: &[u8]) -> MessageMeta {
    parse_by(raw, |raw| scan::scan(&PARSER, raw))
}

/// [`parse`] built from mail-parser's full parse, which also decodes every body, instead of
/// the structure scan (`scan.rs`). Kept as the reference the scan is tested against (engine
/// tests over the corpus, and a fuzz target); the store does not use it.
#[doc(hidden)]
pub fn parse_with_full_decode(raw: &[u8]) -> MessageMeta {
    parse_by(raw, |raw| PARSER.parse(raw))
}

fn parse_by<'x>(raw: &'x [u8], split: impl FnOnce(&'x [u8]) -> Option<Message<'x>>) -> MessageMeta {
    if u32::try_from(raw.len()).is_err() {
        return fallback(raw);
    }
    // mail-parser is written not to panic, but it carries `debug_assert!`s on paths that
    // malformed input can reach; a panic there must not take an append down with it.
    catch_unwind(AssertUnwindSafe(|| {
        let message = split(raw)?;
        let meta = build(raw, &message);
        drop_message(message);
        meta
    }))
    .ok()
    .flatten()
    .unwrap_or_else(|| fallback(raw))
}

/// Drops a parsed message without recursion: mail-parser nests encapsulated messages
/// inline, and a hostile message nesting tens of thousands of them would overflow the
/// stack in the compiler-generated recursive drop.
fn drop_message(message: Message<'_>) {
    let mut stack = vec![message];
    while let Some(mut message) = stack.pop() {
        for part in &mut message.parts {
            if let PartType::Message(inner) = &mut part.body {
                stack.push(std::mem::take(inner));
            }
        }
    }
}

/// Metadata for input mail-parser found no header in (or could not handle): no header,
/// the whole input a `text/plain` body.
fn fallback(raw: &[u8]) -> MessageMeta {
    let len = u32::try_from(raw.len()).unwrap_or(u32::MAX);
    let body = raw.get(..len as usize).unwrap_or(raw);
    MessageMeta {
        header_len: 0,
        sent_date: None,
        envelope: Envelope::default(),
        references: Vec::new(),
        cached_fields: Vec::new(),
        body: BodyPart { lines: count_lines(body), ..leaf_part("text", "plain", default_params(), 0, 0, len) },
    }
}

fn default_params() -> Vec<(String, String)> {
    vec![("charset".to_owned(), "us-ascii".to_owned())]
}

fn leaf_part(
    content_type: &str,
    subtype: &str,
    params: Vec<(String, String)>,
    header_start: u32,
    body_start: u32,
    body_end: u32,
) -> BodyPart {
    BodyPart {
        content_type: content_type.to_owned(),
        subtype: subtype.to_owned(),
        params,
        id: None,
        description: None,
        encoding: None,
        md5: None,
        disposition: None,
        language: Vec::new(),
        location: None,
        header_start,
        body_start,
        body_end,
        lines: 0,
        kind: PartKind::Single,
    }
}

fn build(raw: &[u8], message: &Message<'_>) -> Option<MessageMeta> {
    let root = message.parts.first()?;
    let len = u32::try_from(raw.len()).ok()?;
    let walker = Walker { raw };
    let bounds = Bounds { lo: 0, hi: len, to_end: true };
    let mut body = walker.part(message, 0, 1, bounds, false)?;
    body.header_start = 0;

    let headers = &root.headers;
    let fields = Fields::of(headers);
    let sent_date = fields.first("Date").and_then(|h| match &h.value {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(dt.to_timestamp()),
        _ => None,
    });
    let references = fields.first("References").map(|h| text_list(&h.value)).unwrap_or_default();
    let cached_fields = headers
        .iter()
        .filter_map(|h| {
            let name = h.name.as_str();
            let name = CACHED_FIELDS.iter().find(|f| f.len() == name.len() && f.eq_ignore_ascii_case(name))?;
            Some(((*name).to_owned(), walker.bytes(h.offset_field, h.offset_end).to_vec()))
        })
        .collect();

    Some(MessageMeta {
        header_len: body.body_start,
        sent_date,
        envelope: walker.envelope(&fields),
        references,
        cached_fields,
        body,
    })
}

/// Where a part may lie: within `lo..=hi`; `to_end` makes it end at `hi` (the root of a
/// message, top-level or encapsulated).
#[derive(Clone, Copy)]
struct Bounds {
    lo: u32,
    hi: u32,
    to_end: bool,
}

struct Walker<'r> {
    raw: &'r [u8],
}

impl<'r> Walker<'r> {
    fn bytes(&self, start: u32, end: u32) -> &'r [u8] {
        let start = (start as usize).min(self.raw.len());
        let end = (end as usize).clamp(start, self.raw.len());
        self.raw.get(start..end).unwrap_or_default()
    }

    /// The raw value of a header field: unfolded, trimmed, lossily UTF-8.
    fn value(&self, header: &Header<'_>) -> String {
        unfold_trim(self.bytes(header.offset_start, header.offset_end))
    }

    fn envelope(&self, fields: &Fields<'_, '_>) -> Envelope {
        let text = |name: &str| fields.first(name).map(|h| self.value(h));
        let addrs = |name: &str| fields.first(name).map(|h| addresses(&h.value)).unwrap_or_default();
        Envelope {
            date: text("Date"),
            subject: text("Subject"),
            from: addrs("From"),
            sender: addrs("Sender"),
            reply_to: addrs("Reply-To"),
            to: addrs("To"),
            cc: addrs("Cc"),
            bcc: addrs("Bcc"),
            in_reply_to: text("In-Reply-To"),
            message_id: text("Message-ID"),
        }
    }

    /// Converts `message.parts[index]` at nesting level `depth`.
    fn part(
        &self,
        message: &Message<'_>,
        index: usize,
        depth: usize,
        bounds: Bounds,
        in_digest: bool,
    ) -> Option<BodyPart> {
        let part = message.parts.get(index)?;
        let header_start = part.offset_header.clamp(bounds.lo, bounds.hi);
        let body_start = part.offset_body.clamp(header_start, bounds.hi);
        let body_end = if bounds.to_end { bounds.hi } else { part.offset_end.clamp(body_start, bounds.hi) };
        let fields = Fields::of(&part.headers);
        let ct = fields.last("Content-Type").and_then(|h| h.value.as_content_type());
        let can_nest = depth < MAX_PART_DEPTH;
        let inner = Bounds { lo: body_start, hi: body_end, to_end: false };

        let kind = match &part.body {
            PartType::Multipart(ids) if can_nest && ct.is_some_and(|c| is(c.ctype(), "multipart")) => {
                let digest = ct.and_then(|c| c.subtype()).is_some_and(|s| is(s, "digest"));
                PartKind::Multipart(
                    ids.iter()
                        .filter_map(|&id| {
                            let id = usize::try_from(id).ok()?;
                            self.part(message, id, depth + 1, inner, digest)
                        })
                        .collect(),
                )
            }
            PartType::Message(nested) if can_nest && part.encoding == TransferEncoding::None => {
                let to_end = Bounds { to_end: true, ..inner };
                match (nested.parts.first(), self.part(nested, 0, depth + 1, to_end, false)) {
                    (Some(root), Some(mut body)) => {
                        // The encapsulated message starts where this part's body does.
                        body.header_start = body_start;
                        PartKind::Message {
                            envelope: Box::new(self.envelope(&Fields::of(&root.headers))),
                            body: Box::new(body),
                        }
                    }
                    _ => PartKind::Single,
                }
            }
            _ => PartKind::Single,
        };

        let (content_type, subtype, params) = media_type(ct, &kind, in_digest);
        let lines = if matches!(kind, PartKind::Message { .. }) || content_type == "text" {
            count_lines(self.bytes(body_start, body_end))
        } else {
            0
        };
        let text = |name: &str| fields.last(name).map(|h| self.value(h));
        Some(BodyPart {
            content_type,
            subtype,
            params,
            id: text("Content-ID"),
            description: text("Content-Description"),
            encoding: text("Content-Transfer-Encoding"),
            md5: text("Content-MD5"),
            disposition: fields
                .last("Content-Disposition")
                .and_then(|h| h.value.as_content_type())
                .map(|d| (d.ctype().to_ascii_lowercase(), attributes(d))),
            language: fields.last("Content-Language").map(|h| text_list(&h.value)).unwrap_or_default(),
            location: text("Content-Location"),
            header_start,
            body_start,
            body_end,
            lines,
            kind,
        })
    }
}

/// The media type of a part as stored, following the structure rules of the module doc.
fn media_type(
    ct: Option<&ContentType<'_>>,
    kind: &PartKind,
    in_digest: bool,
) -> (String, String, Vec<(String, String)>) {
    let owned = |t: &str, s: &str, p: Vec<(String, String)>| (t.to_owned(), s.to_owned(), p);
    let params = ct.map(attributes).unwrap_or_default();
    match kind {
        PartKind::Multipart(_) => {
            let subtype = ct.and_then(|c| c.subtype()).unwrap_or("mixed");
            owned("multipart", &subtype.to_ascii_lowercase(), params)
        }
        PartKind::Message { .. } => {
            let subtype = match ct.and_then(|c| c.subtype()) {
                Some(s) if is(s, "global") => "global",
                _ => "rfc822",
            };
            owned("message", subtype, params)
        }
        PartKind::Single => match ct {
            None if in_digest => owned("message", "rfc822", Vec::new()),
            None => owned("text", "plain", default_params()),
            Some(c) => match c.subtype() {
                _ if is(c.ctype(), "multipart") => owned("text", "plain", default_params()),
                Some(s) if is(c.ctype(), "message") && (is(s, "rfc822") || is(s, "global")) => {
                    owned("application", "octet-stream", params)
                }
                Some(s) if !c.ctype().is_empty() && !s.is_empty() => {
                    (c.ctype().to_ascii_lowercase(), s.to_ascii_lowercase(), params)
                }
                _ => owned("text", "plain", default_params()),
            },
        },
    }
}

fn is(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn attributes(ct: &ContentType<'_>) -> Vec<(String, String)> {
    ct.attributes().unwrap_or_default().iter().map(|a| (a.name.to_ascii_lowercase(), a.value.to_string())).collect()
}

/// The header fields `parse` looks up, found in one pass over a header block (a lookup per
/// field and header was a measurable share of an append's CPU time).
const LOOKED_UP: [&str; 19] = [
    "Date",
    "References",
    "Subject",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "In-Reply-To",
    "Message-ID",
    "Content-Type",
    "Content-ID",
    "Content-Description",
    "Content-Transfer-Encoding",
    "Content-MD5",
    "Content-Disposition",
    "Content-Language",
    "Content-Location",
];

/// The first and last occurrence of each of [`LOOKED_UP`] in one header block.
struct Fields<'a, 'x> {
    first: [Option<&'a Header<'x>>; LOOKED_UP.len()],
    last: [Option<&'a Header<'x>>; LOOKED_UP.len()],
}

impl<'a, 'x> Fields<'a, 'x> {
    fn of(headers: &'a [Header<'x>]) -> Self {
        let mut fields = Fields { first: [None; LOOKED_UP.len()], last: [None; LOOKED_UP.len()] };
        for h in headers {
            let name = h.name.as_str();
            if let Some(i) = LOOKED_UP.iter().position(|f| f.len() == name.len() && f.eq_ignore_ascii_case(name)) {
                fields.first[i].get_or_insert(h);
                fields.last[i] = Some(h);
            }
        }
        fields
    }

    fn slot(name: &str) -> usize {
        let slot = LOOKED_UP.iter().position(|f| *f == name);
        slot.expect("only names listed in LOOKED_UP are looked up")
    }

    fn first(&self, name: &str) -> Option<&'a Header<'x>> {
        self.first[Self::slot(name)]
    }

    fn last(&self, name: &str) -> Option<&'a Header<'x>> {
        self.last[Self::slot(name)]
    }
}

fn text_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn addresses(value: &HeaderValue<'_>) -> Vec<Address> {
    let mut out = Vec::new();
    match value {
        HeaderValue::Address(mail_parser::Address::List(list)) => {
            out.extend(list.iter().filter_map(mailbox));
        }
        HeaderValue::Address(mail_parser::Address::Group(groups)) => {
            for group in groups {
                match &group.name {
                    Some(name) => {
                        out.push(Address { name: None, mailbox: Some(name.to_string()), host: None });
                        out.extend(group.addresses.iter().filter_map(mailbox));
                        out.push(Address::default());
                    }
                    None => out.extend(group.addresses.iter().filter_map(mailbox)),
                }
            }
        }
        _ => {}
    }
    out
}

fn mailbox(addr: &mail_parser::Addr<'_>) -> Option<Address> {
    let name = addr.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let address = addr.address.as_deref().map(str::trim).filter(|a| !a.is_empty());
    if name.is_none() && address.is_none() {
        return None;
    }
    let (local, host) = match address {
        Some(a) => a.rsplit_once('@').unwrap_or((a, "")),
        None => ("", ""),
    };
    Some(Address { name: name.map(str::to_owned), mailbox: Some(local.to_owned()), host: Some(host.to_owned()) })
}

/// RFC 5322 unfolding (a CRLF or LF followed by a space or tab is removed), then trimming
/// of whitespace, then lossy UTF-8.
fn unfold_trim(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        let fold = match (b, value.get(i + 1), value.get(i + 2)) {
            (b'\r', Some(b'\n'), Some(b' ' | b'\t')) => 2,
            (b'\n', Some(b' ' | b'\t'), _) => 1,
            _ => 0,
        };
        if fold == 0 {
            out.push(b);
            i += 1;
        } else {
            i += fold;
        }
    }
    String::from_utf8_lossy(out.trim_ascii()).into_owned()
}

fn count_lines(body: &[u8]) -> u32 {
    // Counted in byte-sized sums over chunks of 255 bytes, which the compiler turns into
    // vector adds (a plain filter-and-count went byte by byte: a millisecond per MiB of text).
    let newlines: usize =
        body.chunks(255).map(|c| usize::from(c.iter().fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n'))))).sum();
    let unterminated = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    u32::try_from(newlines + unterminated).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

const KIND_SINGLE: u8 = 0;
const KIND_MULTIPART: u8 = 1;
const KIND_MESSAGE: u8 = 2;

const MIN_STR: usize = 4;
const MIN_ADDRESS: usize = 3;
const MIN_PARAM: usize = 8;
const MIN_FIELD: usize = 8;
/// content_type, subtype, params (4 each), 5 option tags, language (4), location tag,
/// 4 offsets (16), kind tag.
const MIN_PART: usize = 4 + 4 + 4 + 5 + 4 + 1 + 16 + 1;

impl MessageMeta {
    /// Encodes the metadata in the binary format described in the module documentation.
    /// A tree nested deeper than [`MAX_PART_DEPTH`] (which [`parse`] never builds) encodes,
    /// but does not decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(512));
        w.u8(META_FORMAT_VERSION);
        w.u32(self.header_len);
        match self.sent_date {
            None => w.u8(0),
            Some(date) => {
                w.u8(1);
                w.0.extend_from_slice(&date.to_le_bytes());
            }
        }
        w.envelope(&self.envelope);
        w.vec(&self.references, |w, r| w.str(r));
        w.vec(&self.cached_fields, |w, (name, line)| {
            w.str(name);
            w.bytes(line);
        });
        w.part(&self.body);
        w.0
    }

    /// Decodes what [`MessageMeta::encode`] wrote. Never panics, whatever the input; rejects
    /// truncated input, unknown versions and tags, invalid UTF-8, counts that cannot fit,
    /// nesting deeper than [`MAX_PART_DEPTH`], inconsistent offsets and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<MessageMeta, MetaDecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.u8("the format version")?;
        if version != META_FORMAT_VERSION {
            return Err(MetaDecodeError::new(0, ErrorKind::Version(version)));
        }
        let header_len = r.u32("the header length")?;
        let sent_date = match r.tag("the sent date")? {
            false => None,
            true => Some(i64::from_le_bytes(r.array("the sent date")?)),
        };
        let envelope = r.envelope()?;
        let references = r.vec("references", MIN_STR, |r| r.string("a reference"))?;
        let cached_fields = r.vec("cached fields", MIN_FIELD, |r| {
            let name = r.string("a cached field name")?;
            let line = r.bytes("a cached field line")?.to_vec();
            Ok((name, line))
        })?;
        let body_at = r.pos;
        let body = r.part(1)?;
        if body.header_start != 0 || body.body_start != header_len {
            return Err(MetaDecodeError::new(
                body_at,
                ErrorKind::Offsets("the root part must start at 0 and its body at header_len"),
            ));
        }
        if r.remaining() != 0 {
            return Err(MetaDecodeError::new(r.pos, ErrorKind::Trailing(r.remaining())));
        }
        Ok(MessageMeta { header_len, sent_date, envelope, references, cached_fields, body })
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a length (saturated at `u32::MAX`) and returns it.
    fn len(&mut self, len: usize) -> usize {
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        self.u32(n);
        n as usize
    }

    fn bytes(&mut self, b: &[u8]) {
        let n = self.len(b.len());
        self.0.extend_from_slice(b.get(..n).unwrap_or(b));
    }

    fn str(&mut self, s: &str) {
        let mut n = s.len().min(u32::MAX as usize);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes(s.get(..n).unwrap_or_default().as_bytes());
    }

    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    fn vec<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        let n = self.len(items.len());
        for item in items.iter().take(n) {
            f(self, item);
        }
    }

    fn params(&mut self, params: &[(String, String)]) {
        self.vec(params, |w, (name, value)| {
            w.str(name);
            w.str(value);
        });
    }

    fn addresses(&mut self, addrs: &[Address]) {
        self.vec(addrs, |w, a| {
            w.opt_str(&a.name);
            w.opt_str(&a.mailbox);
            w.opt_str(&a.host);
        });
    }

    fn envelope(&mut self, e: &Envelope) {
        self.opt_str(&e.date);
        self.opt_str(&e.subject);
        self.addresses(&e.from);
        self.addresses(&e.sender);
        self.addresses(&e.reply_to);
        self.addresses(&e.to);
        self.addresses(&e.cc);
        self.addresses(&e.bcc);
        self.opt_str(&e.in_reply_to);
        self.opt_str(&e.message_id);
    }

    fn part(&mut self, p: &BodyPart) {
        self.str(&p.content_type);
        self.str(&p.subtype);
        self.params(&p.params);
        self.opt_str(&p.id);
        self.opt_str(&p.description);
        self.opt_str(&p.encoding);
        self.opt_str(&p.md5);
        match &p.disposition {
            None => self.u8(0),
            Some((kind, params)) => {
                self.u8(1);
                self.str(kind);
                self.params(params);
            }
        }
        self.vec(&p.language, |w, l| w.str(l));
        self.opt_str(&p.location);
        self.u32(p.header_start);
        self.u32(p.body_start);
        self.u32(p.body_end);
        self.u32(p.lines);
        match &p.kind {
            PartKind::Single => self.u8(KIND_SINGLE),
            PartKind::Multipart(children) => {
                self.u8(KIND_MULTIPART);
                self.vec(children, |w, c| w.part(c));
            }
            PartKind::Message { envelope, body } => {
                self.u8(KIND_MESSAGE);
                self.envelope(envelope);
                self.part(body);
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn err(&self, kind: ErrorKind) -> MetaDecodeError {
        MetaDecodeError::new(self.pos, kind)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MetaDecodeError> {
        let slice = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(ErrorKind::Truncated { what, needed: n, remaining: self.remaining() })),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], MetaDecodeError> {
        let mut out = [0u8; N];
        for (dst, src) in out.iter_mut().zip(self.take(N, what)?) {
            *dst = *src;
        }
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MetaDecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, MetaDecodeError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// An option tag: `false` for absent, `true` for present.
    fn tag(&mut self, what: &'static str) -> Result<bool, MetaDecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(MetaDecodeError::new(at, ErrorKind::Tag { what, tag })),
        }
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], MetaDecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len, what)
    }

    fn string(&mut self, what: &'static str) -> Result<String, MetaDecodeError> {
        let at = self.pos;
        let b = self.bytes(what)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(MetaDecodeError::new(at + 4 + e.valid_up_to(), ErrorKind::Utf8(what))),
        }
    }

    fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, MetaDecodeError> {
        match self.tag(what)? {
            false => Ok(None),
            true => self.string(what).map(Some),
        }
    }

    fn vec<T>(
        &mut self,
        what: &'static str,
        min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, MetaDecodeError>,
    ) -> Result<Vec<T>, MetaDecodeError> {
        let at = self.pos;
        let count = self.u32(what)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let remaining = self.remaining();
        if count.saturating_mul(min_size) > remaining {
            return Err(MetaDecodeError::new(at, ErrorKind::Count { what, count, remaining }));
        }
        let mut items = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            items.push(f(self)?);
        }
        Ok(items)
    }

    fn params(&mut self, what: &'static str) -> Result<Vec<(String, String)>, MetaDecodeError> {
        self.vec(what, MIN_PARAM, |r| Ok((r.string("a parameter name")?, r.string("a parameter value")?)))
    }

    fn addresses(&mut self, what: &'static str) -> Result<Vec<Address>, MetaDecodeError> {
        self.vec(what, MIN_ADDRESS, |r| {
            Ok(Address {
                name: r.opt_string("an address name")?,
                mailbox: r.opt_string("an address mailbox")?,
                host: r.opt_string("an address host")?,
            })
        })
    }

    fn envelope(&mut self) -> Result<Envelope, MetaDecodeError> {
        Ok(Envelope {
            date: self.opt_string("the envelope date")?,
            subject: self.opt_string("the envelope subject")?,
            from: self.addresses("the From addresses")?,
            sender: self.addresses("the Sender addresses")?,
            reply_to: self.addresses("the Reply-To addresses")?,
            to: self.addresses("the To addresses")?,
            cc: self.addresses("the Cc addresses")?,
            bcc: self.addresses("the Bcc addresses")?,
            in_reply_to: self.opt_string("the envelope In-Reply-To")?,
            message_id: self.opt_string("the envelope Message-ID")?,
        })
    }

    fn part(&mut self, depth: usize) -> Result<BodyPart, MetaDecodeError> {
        let at = self.pos;
        if depth > MAX_PART_DEPTH {
            return Err(self.err(ErrorKind::Depth));
        }
        let content_type = self.string("a part's content type")?;
        let subtype = self.string("a part's subtype")?;
        let params = self.params("a part's parameters")?;
        let id = self.opt_string("a part's Content-ID")?;
        let description = self.opt_string("a part's Content-Description")?;
        let encoding = self.opt_string("a part's Content-Transfer-Encoding")?;
        let md5 = self.opt_string("a part's Content-MD5")?;
        let disposition = match self.tag("a part's Content-Disposition")? {
            false => None,
            true => Some((self.string("a part's disposition type")?, self.params("a part's disposition parameters")?)),
        };
        let language = self.vec("a part's languages", MIN_STR, |r| r.string("a part's language"))?;
        let location = self.opt_string("a part's Content-Location")?;
        let header_start = self.u32("a part's header offset")?;
        let body_start = self.u32("a part's body offset")?;
        let body_end = self.u32("a part's end offset")?;
        let lines = self.u32("a part's line count")?;
        if header_start > body_start || body_start > body_end {
            return Err(MetaDecodeError::new(
                at,
                ErrorKind::Offsets("header_start <= body_start <= body_end does not hold"),
            ));
        }
        let within = |child: &BodyPart| child.header_start >= body_start && child.body_end <= body_end;
        let tag_at = self.pos;
        let kind = match self.u8("a part's kind")? {
            KIND_SINGLE => PartKind::Single,
            KIND_MULTIPART => {
                let children = self.vec("a multipart's children", MIN_PART, |r| {
                    let child_at = r.pos;
                    let child = r.part(depth + 1)?;
                    if within(&child) {
                        Ok(child)
                    } else {
                        Err(MetaDecodeError::new(
                            child_at,
                            ErrorKind::Offsets("a child part lies outside its parent's body"),
                        ))
                    }
                })?;
                PartKind::Multipart(children)
            }
            KIND_MESSAGE => {
                let envelope = Box::new(self.envelope()?);
                let inner_at = self.pos;
                let body = self.part(depth + 1)?;
                if !within(&body) {
                    return Err(MetaDecodeError::new(
                        inner_at,
                        ErrorKind::Offsets("an encapsulated message lies outside its part's body"),
                    ));
                }
                PartKind::Message { envelope, body: Box::new(body) }
            }
            tag => {
                return Err(MetaDecodeError::new(tag_at, ErrorKind::Tag { what: "a part's kind", tag }));
            }
        };
        Ok(BodyPart {
            content_type,
            subtype,
            params,
            id,
            description,
            encoding,
            md5,
            disposition,
            language,
            location,
            header_start,
            body_start,
            body_end,
            lines,
            kind,
        })
    }
}

/// Why [`MessageMeta::decode`] rejected its input, and at which byte offset of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDecodeError {
    offset: usize,
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Version(u8),
    Truncated { what: &'static str, needed: usize, remaining: usize },
    Tag { what: &'static str, tag: u8 },
    Utf8(&'static str),
    Count { what: &'static str, count: usize, remaining: usize },
    Depth,
    Offsets(&'static str),
    Trailing(usize),
}

impl MetaDecodeError {
    fn new(offset: usize, kind: ErrorKind) -> Self {
        MetaDecodeError { offset, kind }
    }

    /// Byte offset in the decoded input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for MetaDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match &self.kind {
            ErrorKind::Version(v) => write!(
                f,
                "message metadata has format version {v} at byte offset {at}, \
                 but only version {META_FORMAT_VERSION} is supported"
            ),
            ErrorKind::Truncated { what, needed, remaining } => write!(
                f,
                "message metadata is truncated: {what} at byte offset {at} needs {needed} bytes, \
                 but only {remaining} remain"
            ),
            ErrorKind::Tag { what, tag } => {
                write!(f, "message metadata has an invalid tag byte {tag} for {what} at byte offset {at}")
            }
            ErrorKind::Utf8(what) => write!(f, "message metadata has invalid UTF-8 in {what} at byte offset {at}"),
            ErrorKind::Count { what, count, remaining } => write!(
                f,
                "message metadata claims {count} entries for {what} at byte offset {at}, \
                 more than the {remaining} remaining bytes can hold"
            ),
            ErrorKind::Depth => write!(
                f,
                "message metadata nests body parts deeper than {MAX_PART_DEPTH} levels \
                 at byte offset {at}"
            ),
            ErrorKind::Offsets(detail) => {
                write!(f, "message metadata has inconsistent part offsets at byte offset {at}: {detail}")
            }
            ErrorKind::Trailing(n) => {
                write!(f, "message metadata has {n} unexpected trailing bytes at byte offset {at}")
            }
        }
    }
}

impl std::error::Error for MetaDecodeError {}

#[cfg(test)]
mod tests {
    #[test]
    fn count_lines_counts_like_the_plain_loop() {
        let naive = |b: &[u8]| {
            let n = b.iter().filter(|&&c| c == b'\n').count() + usize::from(b.last().is_some_and(|&c| c != b'\n'));
            n as u32
        };
        let mut x: u64 = 7;
        for len in [0, 1, 2, 254, 255, 256, 511, 1000, 70_000] {
            for density in [1u64, 2, 9, 80] {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x.is_multiple_of(density) { b'\n' } else { b'a' }
                    })
                    .collect();
                assert_eq!(super::count_lines(&body), naive(&body), "len {len}, density {density}");
            }
        }
        assert_eq!(super::count_lines(&[b'\n'; 1000]), 1000);
    }
    use super::*;

    /// Like [`parse_checked`], and checks that every multipart child lies exactly between
    /// its delimiter lines (only true of well-formed messages).
    fn parse_well_formed(raw: &[u8]) -> MessageMeta {
        let meta = parse_checked(raw);
        check_boundaries(raw, &meta.body);
        meta
    }

    fn check_boundaries(raw: &[u8], p: &BodyPart) {
        match &p.kind {
            PartKind::Single => {}
            PartKind::Multipart(children) => {
                let (_, boundary) = p.params.iter().find(|(n, _)| n == "boundary").unwrap();
                for child in children {
                    assert_between_boundaries(raw, child, boundary);
                    check_boundaries(raw, child);
                }
            }
            PartKind::Message { body, .. } => check_boundaries(raw, body),
        }
    }

    /// Parses, checks the offset invariants, and checks that the encoding round-trips and
    /// that no truncation of it decodes.
    fn parse_checked(raw: &[u8]) -> MessageMeta {
        let meta = parse(raw);
        let len = u32::try_from(raw.len()).unwrap();
        assert_eq!(meta.body.header_start, 0);
        assert_eq!(meta.body.body_start, meta.header_len);
        assert_eq!(meta.body.body_end, len);
        check_part(raw, &meta.body, 0, len, 1);
        let encoded = meta.encode();
        assert_eq!(encoded[0], META_FORMAT_VERSION);
        assert_eq!(MessageMeta::decode(&encoded).as_ref(), Ok(&meta));
        for cut in 0..encoded.len() {
            assert!(MessageMeta::decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        meta
    }

    fn check_part(raw: &[u8], p: &BodyPart, lo: u32, hi: u32, depth: usize) {
        assert!(depth <= MAX_PART_DEPTH);
        assert!(lo <= p.header_start, "{p:?}");
        assert!(p.header_start <= p.body_start, "{p:?}");
        assert!(p.body_start <= p.body_end, "{p:?}");
        assert!(p.body_end <= hi, "{p:?}");
        let body = &raw[p.body_start as usize..p.body_end as usize];
        if p.content_type == "text" || matches!(p.kind, PartKind::Message { .. }) {
            assert_eq!(p.lines, count_lines(body));
        }
        match &p.kind {
            PartKind::Single => {}
            PartKind::Multipart(children) => {
                assert_eq!(p.content_type, "multipart");
                for child in children {
                    check_part(raw, child, p.body_start, p.body_end, depth + 1);
                }
            }
            PartKind::Message { body: inner, .. } => {
                assert_eq!(p.content_type, "message");
                assert_eq!(inner.header_start, p.body_start);
                assert_eq!(inner.body_end, p.body_end);
                check_part(raw, inner, p.body_start, p.body_end, depth + 1);
            }
        }
    }

    /// A multipart child's header starts right after a delimiter line and its body ends
    /// right before the line break that precedes the next delimiter.
    fn assert_between_boundaries(raw: &[u8], child: &BodyPart, boundary: &str) {
        let before = &raw[..child.header_start as usize];
        let delimiter = format!("--{boundary}");
        let before = before.strip_suffix(b"\r\n").or_else(|| before.strip_suffix(b"\n")).unwrap();
        assert!(before.ends_with(delimiter.as_bytes()), "{child:?}");
        let after = &raw[child.body_end as usize..];
        let after = after.strip_prefix(b"\r\n").or_else(|| after.strip_prefix(b"\n")).unwrap();
        assert!(after.starts_with(delimiter.as_bytes()), "{child:?}");
    }

    fn crlf(lf: &str) -> Vec<u8> {
        lf.replace('\n', "\r\n").into_bytes()
    }

    fn mailbox(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address { name: name.map(str::to_owned), mailbox: Some(mailbox.to_owned()), host: Some(host.to_owned()) }
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    const SIMPLE: &str = "From: Alice Example <alice@example.org>\n\
        To: bob@example.net, \"Carol C.\" <carol@example.net>\n\
        Subject: Hello\n  world\n\
        Date: Tue, 1 Jul 2003 10:52:37 +0200\n\
        Message-ID: <m1@example.org>\n\
        In-Reply-To: <m0@example.org>\n\
        References: <a@example.org> <m0@example.org>\n\
        X-Other: not cached\n\
        \n\
        Hi Bob,\n\
        second line\n";

    #[test]
    fn simple_single_part() {
        let raw = SIMPLE.as_bytes();
        let meta = parse_well_formed(raw);
        let body_at = SIMPLE.find("\n\n").unwrap() + 2;
        assert_eq!(meta.header_len as usize, body_at);
        assert_eq!(meta.sent_date, Some(1_057_049_557));
        assert_eq!(meta.references, ["a@example.org", "m0@example.org"]);

        let env = &meta.envelope;
        assert_eq!(env.date, s("Tue, 1 Jul 2003 10:52:37 +0200"));
        assert_eq!(env.subject, s("Hello  world"));
        assert_eq!(env.message_id, s("<m1@example.org>"));
        assert_eq!(env.in_reply_to, s("<m0@example.org>"));
        assert_eq!(env.from, [mailbox(Some("Alice Example"), "alice", "example.org")]);
        assert_eq!(env.to, [mailbox(None, "bob", "example.net"), mailbox(Some("Carol C."), "carol", "example.net")]);
        assert!(env.sender.is_empty() && env.reply_to.is_empty());
        assert!(env.cc.is_empty() && env.bcc.is_empty());

        let names: Vec<&str> = meta.cached_fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References"]);
        assert_eq!(meta.cached_field("subject").collect::<Vec<_>>(), [b"Subject: Hello\n  world\n".as_slice()]);
        assert_eq!(meta.cached_field("X-Other").count(), 0);
        assert!(is_cached_field("message-id") && !is_cached_field("X-Other"));

        let body = &meta.body;
        assert_eq!((body.content_type.as_str(), body.subtype.as_str()), ("text", "plain"));
        assert_eq!(body.params, params(&[("charset", "us-ascii")]));
        assert_eq!(body.kind, PartKind::Single);
        assert_eq!(&raw[body.body_start as usize..body.body_end as usize], b"Hi Bob,\nsecond line\n");
        assert_eq!(body.size(), 20);
        assert_eq!(body.lines, 2);
        assert_eq!(meta.section(&[1]), Some(body));
        assert_eq!(meta.section(&[2]), None);
        assert_eq!(meta.section(&[1, 1]), None);
        assert_eq!(meta.section(&[0]), None);
        assert_eq!(meta.section(&[]), None);
    }

    const NESTED: &str = "From: a@b.example\n\
        Subject: nested\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/alternative; boundary=\"outer\"\n\
        \n\
        preamble\n\
        --outer\n\
        Content-Type: text/plain; charset=utf-8\n\
        \n\
        plain text\n\
        --outer\n\
        Content-Type: multipart/mixed; boundary=inner\n\
        \n\
        --inner\n\
        Content-Type: text/html; charset=\"iso-8859-1\"\n\
        Content-Transfer-Encoding: quoted-printable\n\
        Content-ID: <html@x>\n\
        Content-Description: The HTML\n\
        Content-Language: en, de\n\
        Content-Location: http://x.example/y\n\
        \n\
        <p>hi</p>\n\
        --inner\n\
        Content-Type: application/pdf; name=\"doc.pdf\"\n\
        Content-Disposition: attachment; filename=\"doc.pdf\"; size=3\n\
        Content-Transfer-Encoding: base64\n\
        Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
        \n\
        AAAA\n\
        --inner--\n\
        --outer--\n\
        epilogue\n";

    #[test]
    fn multipart_alternative_with_nested_mixed_and_attachment() {
        let raw = NESTED.as_bytes();
        let meta = parse_well_formed(raw);
        let root = &meta.body;
        assert_eq!((root.content_type.as_str(), root.subtype.as_str()), ("multipart", "alternative"));
        assert_eq!(root.params, params(&[("boundary", "outer")]));
        let PartKind::Multipart(children) = &root.kind else { panic!("{root:?}") };
        assert_eq!(children.len(), 2);

        let plain = &children[0];
        assert_eq!((plain.content_type.as_str(), plain.subtype.as_str()), ("text", "plain"));
        assert_eq!(plain.params, params(&[("charset", "utf-8")]));
        assert_eq!(&raw[plain.body_start as usize..plain.body_end as usize], b"plain text");
        assert_eq!(plain.lines, 1);

        let mixed = &children[1];
        assert_eq!((mixed.content_type.as_str(), mixed.subtype.as_str()), ("multipart", "mixed"));
        let PartKind::Multipart(inner) = &mixed.kind else { panic!("{mixed:?}") };
        assert_eq!(inner.len(), 2);

        let html = &inner[0];
        assert_eq!((html.content_type.as_str(), html.subtype.as_str()), ("text", "html"));
        assert_eq!(html.params, params(&[("charset", "iso-8859-1")]));
        assert_eq!(html.encoding, s("quoted-printable"));
        assert_eq!(html.id, s("<html@x>"));
        assert_eq!(html.description, s("The HTML"));
        assert_eq!(html.language, ["en", "de"]);
        assert_eq!(html.location, s("http://x.example/y"));
        assert_eq!(html.disposition, None);
        assert_eq!(&raw[html.body_start as usize..html.body_end as usize], b"<p>hi</p>");
        assert!(raw[html.header_start as usize..].starts_with(b"Content-Type: text/html"));

        let pdf = &inner[1];
        assert_eq!((pdf.content_type.as_str(), pdf.subtype.as_str()), ("application", "pdf"));
        assert_eq!(pdf.params, params(&[("name", "doc.pdf")]));
        assert_eq!(pdf.disposition, Some(("attachment".to_owned(), params(&[("filename", "doc.pdf"), ("size", "3")]))));
        assert_eq!(pdf.encoding, s("base64"));
        assert_eq!(pdf.md5, s("Q2hlY2sgSW50ZWdyaXR5IQ=="));
        assert_eq!(pdf.lines, 0);
        assert_eq!(&raw[pdf.body_start as usize..pdf.body_end as usize], b"AAAA");
        // The multipart/mixed ends before the line break preceding the outer delimiter.
        assert_eq!(&raw[mixed.body_end as usize..][..9], b"\n--outer-");

        assert_eq!(meta.section(&[1]), Some(plain));
        assert_eq!(meta.section(&[2]), Some(mixed));
        assert_eq!(meta.section(&[2, 2]), Some(pdf));
        assert_eq!(meta.section(&[2, 3]), None);
        assert_eq!(meta.section(&[2, 2, 1]), None);
    }

    const RFC822: &str = "From: outer@example.org\n\
        Subject: fwd\n\
        Content-Type: multipart/mixed; boundary=b1\n\
        \n\
        --b1\n\
        \n\
        see attached\n\
        --b1\n\
        Content-Type: message/rfc822\n\
        Content-Disposition: inline\n\
        \n\
        From: Inner Person <inner@example.net>\n\
        Sender: secretary@example.net\n\
        Reply-To: list@example.net\n\
        Subject: the original\n\
        Date: Mon, 2 Jun 2003 01:02:03 -0000\n\
        Message-ID: <orig@example.net>\n\
        Content-Type: multipart/alternative; boundary=b2\n\
        \n\
        --b2\n\
        Content-Type: text/plain\n\
        \n\
        inner plain\n\
        --b2\n\
        Content-Type: text/html\n\
        \n\
        <b>inner</b>\n\
        --b2--\n\
        \n\
        --b1--\n";

    #[test]
    fn message_rfc822_attachment() {
        let raw = RFC822.as_bytes();
        let meta = parse_well_formed(raw);
        assert_eq!(meta.envelope.subject, s("fwd"));
        let PartKind::Multipart(children) = &meta.body.kind else { panic!("{:?}", meta.body) };
        let note = &children[0];
        // An empty MIME header: just the blank line.
        assert_eq!(note.header_start + 1, note.body_start);
        assert_eq!(note.params, params(&[("charset", "us-ascii")]));
        assert_eq!(&raw[note.body_start as usize..note.body_end as usize], b"see attached");

        let msg = &children[1];
        assert_eq!((msg.content_type.as_str(), msg.subtype.as_str()), ("message", "rfc822"));
        assert_eq!(msg.disposition, Some(("inline".to_owned(), Vec::new())));
        let PartKind::Message { envelope, body } = &msg.kind else { panic!("{msg:?}") };
        assert_eq!(envelope.subject, s("the original"));
        assert_eq!(envelope.date, s("Mon, 2 Jun 2003 01:02:03 -0000"));
        assert_eq!(envelope.message_id, s("<orig@example.net>"));
        assert_eq!(envelope.from, [mailbox(Some("Inner Person"), "inner", "example.net")]);
        assert_eq!(envelope.sender, [mailbox(None, "secretary", "example.net")]);
        assert_eq!(envelope.reply_to, [mailbox(None, "list", "example.net")]);

        let inner_header = &raw[body.header_start as usize..body.body_start as usize];
        assert!(inner_header.starts_with(b"From: Inner Person"));
        assert!(inner_header.ends_with(b"boundary=b2\n\n"));
        let text = &raw[msg.body_start as usize..msg.body_end as usize];
        assert!(text.starts_with(b"From: Inner Person") && text.ends_with(b"--b2--\n"));
        assert_eq!(msg.lines, count_lines(text));
        assert_eq!((body.content_type.as_str(), body.subtype.as_str()), ("multipart", "alternative"));

        let inner_plain = meta.section(&[2, 1]).unwrap();
        assert_eq!(&raw[inner_plain.body_start as usize..inner_plain.body_end as usize], b"inner plain");
        let inner_html = meta.section(&[2, 2]).unwrap();
        assert_eq!(inner_html.subtype, "html");
        assert_eq!(meta.section(&[2, 3]), None);
    }

    #[test]
    fn single_part_encapsulated_message_is_its_own_part_one() {
        let raw = b"Content-Type: message/rfc822\n\nSubject: inner\n\nhello\n";
        let meta = parse_well_formed(raw);
        let PartKind::Message { envelope, body } = &meta.body.kind else { panic!("{:?}", meta.body) };
        assert_eq!(envelope.subject, s("inner"));
        assert_eq!(meta.section(&[1]), Some(&meta.body));
        assert_eq!(meta.section(&[1, 1]), Some(&**body));
        assert_eq!(&raw[body.body_start as usize..body.body_end as usize], b"hello\n");
    }

    #[test]
    fn group_addresses() {
        let raw = b"From: me@example.org\n\
            To: A Group:Ed Jones <c@a.test>,joe@where.test;, Mary <mary@x.test>\n\
            Cc: undisclosed-recipients:;\n\
            Bcc: root\n\
            \n\
            body\n";
        let meta = parse_well_formed(raw);
        let start = |name: &str| Address { name: None, mailbox: s(name), host: None };
        assert_eq!(
            meta.envelope.to,
            [
                start("A Group"),
                mailbox(Some("Ed Jones"), "c", "a.test"),
                mailbox(None, "joe", "where.test"),
                Address::default(),
                mailbox(Some("Mary"), "mary", "x.test"),
            ]
        );
        assert_eq!(meta.envelope.cc, [start("undisclosed-recipients"), Address::default()]);
        // A bare word is taken as a display name; the host stays Some("") so it cannot be
        // mistaken for a group marker.
        assert_eq!(meta.envelope.bcc, [mailbox(Some("root"), "", "")]);
    }

    #[test]
    fn encoded_word_subject_and_name() {
        let raw = "From: =?iso-8859-1?q?Andr=E9?= <andre@example.org>\n\
            Subject: =?utf-8?q?caf=C3=A9?=\n =?utf-8?b?w6k=?=\n\
            \n\
            x\n";
        let meta = parse_checked(raw.as_bytes());
        assert_eq!(meta.envelope.subject, s("=?utf-8?q?caf=C3=A9?= =?utf-8?b?w6k=?="));
        assert_eq!(meta.envelope.from, [mailbox(Some("André"), "andre", "example.org")]);
    }

    #[test]
    fn eight_bit_headers_are_lossy_utf8() {
        let raw = b"Subject: caf\xe9\nFrom: Jos\xe9 <j@example.org>\n\nbody \xff\n";
        let meta = parse_checked(raw);
        assert_eq!(meta.envelope.subject, s("caf\u{fffd}"));
        assert_eq!(meta.cached_field("Subject").next(), Some(&b"Subject: caf\xe9\n"[..]));
        assert_eq!(meta.envelope.from.len(), 1);
    }

    #[test]
    fn crlf_and_lf_versions_agree() {
        for lf in [SIMPLE, NESTED, RFC822] {
            let crlf = crlf(lf);
            let a = parse_well_formed(lf.as_bytes());
            let b = parse_well_formed(&crlf);
            assert_eq!(a.envelope, b.envelope);
            assert_eq!(a.references, b.references);
            assert_eq!(a.sent_date, b.sent_date);
            let header_lines = lf.as_bytes()[..a.header_len as usize].iter().filter(|&&c| c == b'\n').count();
            assert_eq!(b.header_len as usize, a.header_len as usize + header_lines);
            assert_eq!(a.cached_fields.len(), b.cached_fields.len());
            for ((na, la), (nb, lb)) in a.cached_fields.iter().zip(&b.cached_fields) {
                assert_eq!(na, nb);
                assert_eq!(la.replace_crlf(), lb.replace_crlf());
                assert!(lb.ends_with(b"\r\n"));
            }
            same_shape(lf.as_bytes(), &a.body, &crlf, &b.body);
        }
    }

    trait ReplaceCrlf {
        fn replace_crlf(&self) -> Vec<u8>;
    }

    impl ReplaceCrlf for [u8] {
        fn replace_crlf(&self) -> Vec<u8> {
            self.iter().copied().filter(|&c| c != b'\r').collect()
        }
    }

    fn same_shape(raw_a: &[u8], a: &BodyPart, raw_b: &[u8], b: &BodyPart) {
        assert_eq!(a.content_type, b.content_type);
        assert_eq!(a.subtype, b.subtype);
        assert_eq!(a.params, b.params);
        assert_eq!(a.disposition, b.disposition);
        assert_eq!(a.lines, b.lines);
        let body_a = &raw_a[a.body_start as usize..a.body_end as usize];
        let body_b = &raw_b[b.body_start as usize..b.body_end as usize];
        assert_eq!(body_a, body_b.replace_crlf());
        match (&a.kind, &b.kind) {
            (PartKind::Single, PartKind::Single) => {}
            (PartKind::Multipart(ca), PartKind::Multipart(cb)) => {
                assert_eq!(ca.len(), cb.len());
                for (x, y) in ca.iter().zip(cb) {
                    same_shape(raw_a, x, raw_b, y);
                }
            }
            (PartKind::Message { envelope: ea, body: ba }, PartKind::Message { envelope: eb, body: bb }) => {
                assert_eq!(ea, eb);
                same_shape(raw_a, ba, raw_b, bb);
            }
            (x, y) => panic!("kinds differ: {x:?} / {y:?}"),
        }
    }

    #[test]
    fn empty_input() {
        let meta = parse_checked(b"");
        assert_eq!(meta.header_len, 0);
        assert_eq!(meta.envelope, Envelope::default());
        assert_eq!((meta.body.content_type.as_str(), meta.body.subtype.as_str()), ("text", "plain"));
        assert_eq!((meta.body.body_start, meta.body.body_end, meta.body.lines), (0, 0, 0));
        assert_eq!(meta.section(&[1]), Some(&meta.body));
    }

    #[test]
    fn header_only_without_body() {
        for raw in [
            &b"Subject: only a header\nFrom: a@b.example\n"[..],
            b"Subject: only a header\r\nFrom: a@b.example\r\n",
            b"Subject: no line ending",
        ] {
            let meta = parse_checked(raw);
            assert_eq!(meta.header_len as usize, raw.len(), "{raw:?}");
            assert_eq!(meta.body.size(), 0);
            assert_eq!(meta.body.lines, 0);
            assert!(
                meta.envelope.subject.as_deref().unwrap().ends_with("header")
                    || meta.envelope.subject == s("no line ending")
            );
        }
        let meta = parse_checked(b"Subject: x\n\n");
        assert_eq!(meta.header_len, 12);
        assert_eq!(meta.body.size(), 0);
        assert_eq!(meta.cached_field("Subject").next(), Some(&b"Subject: x\n"[..]));
    }

    #[test]
    fn dates() {
        let meta = parse_checked(b"Date: not a date\n\nx");
        assert_eq!(meta.sent_date, None);
        assert_eq!(meta.envelope.date, s("not a date"));
        let meta = parse_checked(b"Date: Thu, 01 Jan 1970 00:00:00 -0100\n\nx");
        assert_eq!(meta.sent_date, Some(3600));
        let meta = parse_checked(b"Subject: none\n\nx");
        assert_eq!((meta.sent_date, meta.envelope.date), (None, None));
    }

    #[test]
    fn references_and_repeated_fields() {
        let raw = b"References: <a@x> <b@x>\n\t<c@x>\n\
            Subject: first\n\
            Subject: second\n\
            Received: from a by b; Mon, 2 Jun 2003 01:02:03 -0000\n\
            X-Priority: 1\n\
            x-priority: 2\n\
            \n";
        let meta = parse_checked(raw);
        assert_eq!(meta.references, ["a@x", "b@x", "c@x"]);
        assert_eq!(meta.envelope.subject, s("first"));
        assert_eq!(meta.cached_field("X-PRIORITY").collect::<Vec<_>>(), [&b"X-Priority: 1\n"[..], b"x-priority: 2\n"]);
        assert_eq!(meta.cached_field("subject").count(), 2);
        assert_eq!(meta.cached_fields[0].1, b"References: <a@x> <b@x>\n\t<c@x>\n");
    }

    #[test]
    fn malformed_mime_degrades() {
        // multipart without a boundary parameter: a text/plain leaf.
        let meta = parse_checked(b"Content-Type: multipart/mixed\n\nbody\n");
        assert_eq!((meta.body.content_type.as_str(), meta.body.subtype.as_str()), ("text", "plain"));
        assert_eq!(meta.body.kind, PartKind::Single);
        // boundary never found: a text/plain leaf too.
        let meta = parse_checked(b"Content-Type: multipart/mixed; boundary=zz\n\nno parts\n");
        assert_eq!(meta.body.kind, PartKind::Single);
        assert_eq!(meta.body.content_type, "text");
        // boundary found, no part after it: an empty multipart.
        let meta = parse_checked(b"Content-Type: multipart/mixed; boundary=zz\n\n--zz--\n");
        assert_eq!(meta.body.kind, PartKind::Multipart(Vec::new()));
        // last boundary missing: the parts found are kept.
        let meta = parse_checked(b"Content-Type: multipart/mixed; boundary=zz\n\n--zz\n\none\n--zz\n\ntwo\n");
        let PartKind::Multipart(children) = &meta.body.kind else { panic!("{:?}", meta.body) };
        assert_eq!(children.len(), 2);
        // an encoded message/rfc822 cannot be indexed in place: application/octet-stream.
        let meta = parse_checked(
            b"Content-Type: message/rfc822; x=y\nContent-Transfer-Encoding: base64\n\n\
              U3ViamVjdDogaGkKCmJvZHkK\n",
        );
        assert_eq!(meta.body.kind, PartKind::Single);
        assert_eq!((meta.body.content_type.as_str(), meta.body.subtype.as_str()), ("application", "octet-stream"));
        assert_eq!(meta.body.params, params(&[("x", "y")]));
        // a Content-Type without subtype is invalid: text/plain.
        let meta = parse_checked(b"Content-Type: image\n\nx");
        assert_eq!(meta.body.params, params(&[("charset", "us-ascii")]));
        assert_eq!(meta.body.subtype, "plain");
        // A line without a colon and no blank line: mail-parser takes it as a header.
        let meta = parse_checked(b"just some text without a colon");
        assert_eq!(meta.header_len, 30);
        assert_eq!(meta.body.size(), 0);
        // Nothing mail-parser can take as a header: all body.
        let meta = parse_checked(b" \t ");
        assert_eq!(meta.header_len, 0);
        assert_eq!(meta.body.size(), 3);
        assert_eq!(meta.body.lines, 1);
        // No header, then a body.
        let meta = parse_checked(b"\nbody\n");
        assert_eq!(meta.header_len, 1);
        assert_eq!(meta.envelope, Envelope::default());
        assert_eq!(meta.body.lines, 1);
    }

    #[test]
    fn digest_parts_default_to_message_rfc822() {
        let raw = b"Content-Type: multipart/digest; boundary=zz\n\n\
            --zz\n\nSubject: a\n\nbody a\n\
            --zz\n\nSubject: b\n\nbody b\n\
            --zz--\n";
        let meta = parse_well_formed(raw);
        let PartKind::Multipart(children) = &meta.body.kind else { panic!("{:?}", meta.body) };
        assert_eq!(children.len(), 2);
        for (child, subject) in children.iter().zip(["a", "b"]) {
            assert_eq!((child.content_type.as_str(), child.subtype.as_str()), ("message", "rfc822"));
            assert!(child.params.is_empty());
            let PartKind::Message { envelope, .. } = &child.kind else { panic!("{child:?}") };
            assert_eq!(envelope.subject, s(subject));
        }
    }

    #[test]
    fn message_in_a_message_in_a_multipart_ends_at_the_delimiter() {
        // A message/rfc822 part whose message is itself only a message/rfc822: both
        // encapsulated messages end at the multipart's next delimiter, and the part after
        // it is the multipart's second part (mail-parser's full parse closes only the inner
        // message there and loses the outer one).
        let raw = b"Subject: top\nContent-Type: multipart/mixed; boundary=b\n\n\
            --b\nContent-Type: message/rfc822\n\n\
            Subject: middle\nContent-Type: message/rfc822\n\n\
            Subject: inner\n\ninner body\n\
            --b\nContent-Type: text/plain\n\nafter\n\
            --b--\n";
        let meta = parse_well_formed(raw);
        assert_eq!(meta.envelope.subject, s("top"));
        let PartKind::Multipart(children) = &meta.body.kind else { panic!("{:?}", meta.body) };
        assert_eq!(children.len(), 2, "{children:?}");
        let PartKind::Message { envelope, body } = &children[0].kind else { panic!("{:?}", children[0]) };
        assert_eq!(envelope.subject, s("middle"));
        let PartKind::Message { envelope: inner, body: inner_body } = &body.kind else { panic!("{body:?}") };
        assert_eq!(inner.subject, s("inner"));
        let text = &raw[inner_body.body_start as usize..inner_body.body_end as usize];
        assert_eq!(text, b"inner body");
        assert_eq!(children[0].body_end, inner_body.body_end);
        assert_eq!(&raw[children[1].body_start as usize..children[1].body_end as usize], b"after");
    }

    #[test]
    fn deep_nesting_is_capped() {
        // Far deeper than MAX_PART_DEPTH, in both kinds of nesting; mail-parser nests
        // encapsulated messages inline, which must not overflow the stack either.
        let mut deep = "Subject: x\nContent-Type: message/rfc822\n\n".repeat(50_000);
        deep.push_str("Subject: end\n\nbody\n");
        let meta = parse_checked(deep.as_bytes());
        let mut depth = 1;
        let mut part = &meta.body;
        while let PartKind::Message { body, .. } = &part.kind {
            part = body;
            depth += 1;
        }
        assert_eq!(depth, MAX_PART_DEPTH);
        assert_eq!((part.content_type.as_str(), part.subtype.as_str()), ("application", "octet-stream"));

        let mut deep = String::new();
        for i in 0..2_000 {
            deep.push_str(&format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"));
        }
        deep.push_str("\nleaf\n");
        let meta = parse_checked(deep.as_bytes());
        let mut depth = 1;
        let mut part = &meta.body;
        while let PartKind::Multipart(children) = &part.kind {
            part = &children[0];
            depth += 1;
        }
        assert_eq!(depth, MAX_PART_DEPTH);
        assert_eq!(part.content_type, "text");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"\r\n\n :;-=\"<>@abcContent-Type: multipart/mixed; boundary=\n--\xff\x00\t";
        for len in 0..300 {
            let raw: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            parse_checked(&raw);
        }
        // Mutations of a real multipart message.
        let base = NESTED.as_bytes();
        for _ in 0..300 {
            let mut raw = base.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(raw.len());
                raw[at] = alphabet[rng.below(alphabet.len())];
            }
            let cut = rng.below(raw.len() + 1);
            parse_checked(&raw[..cut]);
            parse_checked(&raw);
        }
    }

    /// A tiny deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn decode_never_panics_on_flipped_bytes() {
        let mut rng = XorShift(42);
        for raw in [SIMPLE, NESTED, RFC822] {
            let encoded = parse(raw.as_bytes()).encode();
            for _ in 0..3_000 {
                let mut bytes = encoded.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
                if let Err(e) = MessageMeta::decode(&bytes) {
                    assert!(e.offset() <= bytes.len());
                    assert!(e.to_string().contains("byte offset"));
                }
            }
        }
    }

    #[test]
    fn decode_errors_say_what_and_where() {
        let encoded = parse(SIMPLE.as_bytes()).encode();

        let e = MessageMeta::decode(&[]).unwrap_err();
        assert_eq!(e.offset(), 0);
        assert_eq!(
            e.to_string(),
            "message metadata is truncated: the format version at byte offset 0 needs 1 bytes, \
             but only 0 remain"
        );

        let mut bad = encoded.clone();
        bad[0] = 9;
        assert_eq!(
            MessageMeta::decode(&bad).unwrap_err().to_string(),
            "message metadata has format version 9 at byte offset 0, \
             but only version 1 is supported"
        );

        let mut trailing = encoded.clone();
        trailing.extend_from_slice(b"xyz");
        let e = MessageMeta::decode(&trailing).unwrap_err();
        assert_eq!(e.offset(), encoded.len());
        assert_eq!(
            e.to_string(),
            format!("message metadata has 3 unexpected trailing bytes at byte offset {}", encoded.len())
        );

        // sent_date tag at offset 5.
        let mut bad = encoded.clone();
        bad[5] = 7;
        let e = MessageMeta::decode(&bad).unwrap_err();
        assert_eq!(e.offset(), 5);
        assert!(e.to_string().contains("invalid tag byte 7 for the sent date"));

        // A hostile count: the references vector claims u32::MAX entries.
        let mut hostile = vec![META_FORMAT_VERSION, 0, 0, 0, 0, 0];
        hostile.extend_from_slice(&Envelope::default().encoded());
        let at = hostile.len();
        hostile.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = MessageMeta::decode(&hostile).unwrap_err();
        assert_eq!(e.offset(), at);
        assert!(e.to_string().contains("claims 4294967295 entries for references"));

        // A hostile string length.
        let mut hostile = vec![META_FORMAT_VERSION, 0, 0, 0, 0, 0, 1];
        hostile.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = MessageMeta::decode(&hostile).unwrap_err();
        assert_eq!(e.offset(), 11);
        assert!(e.to_string().contains("needs 4294967295 bytes"));

        // Invalid UTF-8 in the envelope date.
        let mut bad = vec![META_FORMAT_VERSION, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, b'a', 0xff];
        bad.extend_from_slice(&[0; 40]);
        let e = MessageMeta::decode(&bad).unwrap_err();
        assert_eq!(e.offset(), 12);
        assert!(e.to_string().contains("invalid UTF-8 in the envelope date"));
    }

    impl Envelope {
        fn encoded(&self) -> Vec<u8> {
            let mut w = Writer(Vec::new());
            w.envelope(self);
            w.0
        }
    }

    #[test]
    fn decode_rejects_inconsistent_offsets_and_depth() {
        let mut meta = parse(NESTED.as_bytes());
        let PartKind::Multipart(children) = &mut meta.body.kind else { panic!() };
        children[0].body_end = meta.body.body_end + 1;
        let e = MessageMeta::decode(&meta.encode()).unwrap_err();
        assert!(e.to_string().contains("a child part lies outside its parent's body"), "{e}");

        let mut meta = parse(SIMPLE.as_bytes());
        meta.body.body_start = meta.body.body_end + 1;
        let e = MessageMeta::decode(&meta.encode()).unwrap_err();
        assert!(e.to_string().contains("header_start <= body_start <= body_end"), "{e}");

        let mut meta = parse(SIMPLE.as_bytes());
        meta.header_len += 1;
        let e = MessageMeta::decode(&meta.encode()).unwrap_err();
        assert!(e.to_string().contains("root part"), "{e}");

        // MAX_PART_DEPTH levels decode, one more does not.
        let leaf = leaf_part("text", "plain", Vec::new(), 0, 0, 0);
        let nest = |levels: usize| {
            let mut part = leaf.clone();
            for _ in 1..levels {
                part = BodyPart {
                    kind: PartKind::Multipart(vec![part]),
                    ..leaf_part("multipart", "mixed", Vec::new(), 0, 0, 0)
                };
            }
            MessageMeta {
                header_len: 0,
                sent_date: None,
                envelope: Envelope::default(),
                references: Vec::new(),
                cached_fields: Vec::new(),
                body: part,
            }
        };
        let ok = nest(MAX_PART_DEPTH);
        assert_eq!(MessageMeta::decode(&ok.encode()), Ok(ok));
        let e = MessageMeta::decode(&nest(MAX_PART_DEPTH + 1).encode()).unwrap_err();
        assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
    }
}
