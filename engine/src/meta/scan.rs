//! The MIME structure of a message, found without decoding any body.
//!
//! mail-parser's `MessageParser::parse` splits a message into parts *and* decodes every
//! body (base64, quoted-printable, charset conversion of text). The metadata needs only the
//! split: the header fields of each part, parsed by mail-parser, and the byte offsets of each
//! part. Decoding was most of the cost of an append of a message with an attachment (47% of
//! the preparation of a 1 MiB base64 attachment) and a fifth of a corpus message's, all of
//! it thrown away.
//!
//! [`scan`] walks the message with mail-parser's own stream primitives (header parser,
//! boundary search, end-of-multipart test), so parts begin and end exactly where
//! mail-parser's full parse puts them, and returns a `mail_parser::Message` whose parts carry
//! headers, offsets and the multipart/encapsulation tree, with empty bodies. The engine's
//! tests compare the metadata built from it with the metadata built from a full parse, for
//! the whole corpus and for fuzzed input ([`super::parse_with_full_decode`]).
//!
//! How a part's end is found, for every kind of leaf part: the next delimiter line of the
//! innermost enclosing multipart (`--boundary`, the line break before it belonging to the
//! delimiter), or the end of the message when there is no enclosing multipart. When the
//! delimiter never comes, the part runs to the end of the message and the multipart's
//! boundary is forgotten, so that the enclosing parts end there too. This is what
//! mail-parser does on its fallback path for a body it cannot decode, and where its decoders
//! stop when they can.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{
    Encoding, GetHeader, Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, PartType,
};

/// What a frame of the scan is reading.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The root part of a message: the top-level one, or one encapsulated in a
    /// `message/rfc822` (or `message/global`) part.
    Message,
    /// The parts of a multipart; `digest` for `multipart/digest`, whose parts default to
    /// `message/rfc822` (RFC 2046 section 5.1.5).
    Multipart { digest: bool },
}

/// One level of the scan.
struct Frame {
    reading: Reading,
    /// The delimiter that ends the part being read: the innermost enclosing multipart's.
    boundary: Option<Vec<u8>>,
    /// The part this frame fills, an index into the parts of the message it belongs to: the
    /// multipart part, or for an encapsulated message the `message/rfc822` part of the
    /// enclosing message.
    container: usize,
    /// Indexes of the parts read at this level.
    children: Vec<u32>,
}

impl Frame {
    fn message(boundary: Option<Vec<u8>>, container: usize) -> Frame {
        Frame { reading: Reading::Message, boundary, container, children: Vec::new() }
    }
}

/// A frame set aside while a deeper one is read, with the message it belongs to when the
/// deeper frame is an encapsulated message (whose parts go into a new `Message`).
type Saved<'x> = (Frame, Option<Message<'x>>);

fn new_message<'x>() -> Message<'x> {
    Message {
        html_body: Vec::new(),
        text_body: Vec::new(),
        attachments: Vec::new(),
        parts: Vec::new(),
        raw_message: Cow::Borrowed(&[]),
    }
}

fn part<'x>(headers: Vec<Header<'x>>, header: usize, body: usize, end: usize) -> MessagePart<'x> {
    MessagePart {
        headers,
        is_encoding_problem: false,
        body: PartType::Binary(Cow::Borrowed(&[])),
        encoding: Encoding::None,
        offset_header: offset(header),
        offset_body: offset(body),
        offset_end: offset(end),
    }
}

/// Offsets fit: the caller refuses messages of 4 GiB or more.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// How a part is to be read, from its `Content-Type` and the frame it is in.
enum Shape<'h> {
    Multipart { boundary: Option<&'h str>, digest: bool },
    Message,
    Leaf,
}

fn shape<'h>(headers: &'h [Header<'_>], within: Reading) -> Shape<'h> {
    // mail-parser lowercases the type, subtype and parameter names it parses.
    let ct = headers.iter().rev().find(|h| h.name == HeaderName::ContentType).and_then(|h| h.value.as_content_type());
    match ct {
        Some(ct) if ct.ctype() == "multipart" => {
            Shape::Multipart { boundary: ct.attribute("boundary"), digest: ct.subtype() == Some("digest") }
        }
        Some(ct) if ct.ctype() == "message" && matches!(ct.subtype(), Some("rfc822" | "global")) => Shape::Message,
        Some(_) => Shape::Leaf,
        None if within == Reading::Multipart { digest: true } => Shape::Message,
        None => Shape::Leaf,
    }
}

/// Whether a part's body is transfer-encoded (base64 or quoted-printable), in which case an
/// encapsulated message in it cannot be indexed in place.
fn is_encoded(headers: &Vec<Header<'_>>) -> bool {
    matches!(
        headers.header_value(&HeaderName::ContentTransferEncoding),
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") || e.eq_ignore_ascii_case("quoted-printable")
    )
}

/// Where an encapsulated message ends when its enclosing multipart's delimiter has just
/// been read (the stream is after `--boundary`): before the line break that precedes the
/// delimiter.
fn end_before_delimiter(raw: &[u8], after: usize, boundary: &[u8]) -> usize {
    let dashes = after.saturating_sub(boundary.len() + 2);
    match dashes.checked_sub(2).and_then(|i| raw.get(i)) {
        Some(b'\r') => dashes - 2,
        _ => dashes.saturating_sub(1),
    }
}

/// The parts of `raw` with their headers and offsets, bodies left empty. `None` when the
/// input has no header at all (as mail-parser's `parse`).
/// mail-parser's `MessageStream::seek_part_end`, with the delimiter found by `memmem` rather
/// than a loop over every byte (a 1 MiB attachment took a millisecond): the same result, the
/// first `--boundary` anywhere after the position (at a line start or not), the part ending
/// before the line break in front of it, or at the dashes when it is not at a line start (a
/// position at the start of the search counts as a line start). `raw` is the stream's data.
fn seek_part_end(stream: &mut MessageStream<'_>, raw: &[u8], boundary: Option<&[u8]>) -> (usize, bool) {
    let start = stream.offset();
    let Some(boundary) = boundary else {
        stream.skip_bytes(raw.len() - start);
        return (raw.len(), true);
    };
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let Some(found) = memchr::memmem::find(&raw[start..], &delimiter) else {
        stream.skip_bytes(raw.len() - start);
        return (raw.len(), false);
    };
    let at = start + found;
    let end = if at == start {
        start
    } else if raw[at - 1] != b'\n' {
        at
    } else if at - 1 > start && raw[at - 2] == b'\r' {
        at - 2
    } else {
        at - 1
    };
    stream.skip_bytes(at + delimiter.len() - start);
    (end, true)
}

pub(super) fn scan<'x>(parser: &MessageParser, raw: &'x [u8]) -> Option<Message<'x>> {
    let mut stream = MessageStream::new(raw);
    let mut message = new_message();
    let mut frame = Frame::message(None, 0);
    let mut stack: Vec<Saved<'x>> = Vec::new();
    let mut headers = Vec::new();

    'parts: loop {
        let header_start = stream.offset();
        if !stream.parse_headers(parser, &mut headers) {
            break;
        }
        let body_start = stream.offset();
        let index = message.parts.len();
        frame.children.push(offset(index));

        let mut shape = shape(&headers, frame.reading);
        if let Shape::Multipart { boundary, digest } = shape {
            match boundary.map(|b| b.as_bytes().to_vec()) {
                Some(boundary) if stream.seek_next_part(&boundary) => {
                    message.parts.push(part(std::mem::take(&mut headers), header_start, body_start, 0));
                    let inner = Frame {
                        reading: Reading::Multipart { digest },
                        boundary: Some(boundary),
                        container: index,
                        children: Vec::new(),
                    };
                    stack.push((std::mem::replace(&mut frame, inner), None));
                    stream.skip_crlf();
                    continue;
                }
                // No boundary, or it never occurs: the multipart is read as one text part.
                _ => shape = Shape::Leaf,
            }
        }
        if matches!(shape, Shape::Message) && !is_encoded(&headers) {
            // An encapsulated message, indexed in place: its parts go into a new message,
            // and it ends where the enclosing part would (it inherits the boundary).
            message.parts.push(part(std::mem::take(&mut headers), header_start, body_start, 0));
            let inner = Frame::message(frame.boundary.take(), index);
            stack.push((std::mem::replace(&mut frame, inner), Some(std::mem::replace(&mut message, new_message()))));
            continue;
        }

        // A leaf part: it ends at the next delimiter, or at the end of the message.
        let (end, found) = seek_part_end(&mut stream, raw, frame.boundary.as_deref());
        if !found {
            frame.boundary = None;
        }
        message.parts.push(part(std::mem::take(&mut headers), header_start, body_start, end));

        let Some(_) = frame.boundary else {
            if stream.offset() >= raw.len() {
                break;
            }
            continue;
        };
        // A delimiter was just read: close what it ends, then read the next part's headers.
        loop {
            // An encapsulated message open at this level (its root part just ended, or a
            // multipart that was its root did) ends at its enclosing multipart's delimiter
            // too, and so does a message encapsulated directly in it. (mail-parser closes
            // only the innermost one, then loses the enclosing message when the multipart
            // ends; its debug build asserts there.)
            while frame.reading == Reading::Message {
                let (mut outer, mut enclosing) = match stack.pop() {
                    Some((outer, Some(enclosing))) => (outer, enclosing),
                    other => {
                        // Only an encapsulated message inherits a delimiter, so one encloses
                        // this frame. Should that ever not hold, what is open is closed at
                        // the end of the input below.
                        debug_assert!(false, "a message frame under a delimiter without an enclosing message");
                        stack.extend(other);
                        break 'parts;
                    }
                };
                let boundary = frame.boundary.as_deref().unwrap_or_default();
                let end = end_before_delimiter(raw, stream.offset(), boundary);
                close_message(&mut enclosing, frame.container, message, end);
                message = enclosing;
                outer.boundary = frame.boundary.take();
                frame = outer;
            }
            if !stream.is_multipart_end() {
                continue 'parts;
            }
            // `--boundary--`: the multipart is complete. It ends at the next delimiter of
            // the level above, if there is one.
            let container = frame.container;
            let children = std::mem::take(&mut frame.children);
            set_children(&mut message, container, children);
            let next = match stack.pop() {
                Some((outer, _)) => {
                    frame = outer;
                    frame.boundary.as_deref().and_then(|b| stream.seek_next_part_offset(b))
                }
                None => None,
            };
            if let Some(p) = message.parts.get_mut(container) {
                p.offset_end = offset(next.unwrap_or(stream.offset()));
            }
            if next.is_none() {
                break 'parts;
            }
        }
    }

    // Input that ended inside open multiparts or encapsulated messages: close them all at
    // the end of the input.
    let at = stream.offset();
    while let Some((outer, enclosing)) = stack.pop() {
        match enclosing {
            Some(mut enclosing) => {
                close_message(&mut enclosing, frame.container, message, at);
                message = enclosing;
            }
            None => {
                set_children(&mut message, frame.container, std::mem::take(&mut frame.children));
                if let Some(p) = message.parts.get_mut(frame.container) {
                    p.offset_end = offset(at);
                }
            }
        }
        frame = outer;
    }

    message.raw_message = Cow::Borrowed(raw);
    if let Some(root) = message.parts.first_mut() {
        root.offset_end = offset(raw.len());
        Some(message)
    } else if !headers.is_empty() {
        // Header fields and no blank line after them: a message without a body.
        message.parts.push(part(headers, 0, raw.len(), raw.len()));
        Some(message)
    } else {
        None
    }
}

/// Makes part `container` of `message` a multipart of `children`. A message-level frame
/// (whose only child is the root part, index 0) has no multipart to fill.
fn set_children(message: &mut Message<'_>, container: usize, children: Vec<u32>) {
    if children.as_slice() == [0] {
        return;
    }
    if let Some(p) = message.parts.get_mut(container) {
        p.body = PartType::Multipart(children);
    }
}

/// Puts the finished encapsulated `inner` message into its `message/rfc822` part
/// (`container`) of `enclosing`, which ends at `end`. A message in which no header was
/// found stays a plain part.
fn close_message<'x>(enclosing: &mut Message<'x>, container: usize, mut inner: Message<'x>, end: usize) {
    let Some(p) = enclosing.parts.get_mut(container) else { return };
    p.offset_end = offset(end);
    if inner.parts.is_empty() {
        p.is_encoding_problem = true;
    } else {
        inner.raw_message = enclosing.raw_message.clone();
        p.body = PartType::Message(inner);
    }
}

#[cfg(test)]
mod seek_tests {
    use super::*;

    /// The memmem search gives what mail-parser's byte loop gives, from every start position.
    #[test]
    fn seek_part_end_matches_mail_parser() {
        let cases: &[&[u8]] = &[
            b"abc\r\n--b\r\nrest",
            b"abc\n--b\nrest",
            b"--b at once",
            b"\n--b after a newline",
            b"\r\n--b after crlf",
            b"x--b in a line",
            b"x---b three dashes",
            b"no delimiter here",
            b"-",
            b"",
            b"a\r\n\r\n--bb\r\n--b\r\n",
            b"--\n--b",
        ];
        for case in cases {
            for boundary in [Some(&b"b"[..]), Some(&b"bb"[..]), None] {
                for start in 0..=case.len() {
                    let mut theirs = MessageStream::new(case);
                    theirs.skip_bytes(start);
                    let expected = theirs.seek_part_end(boundary);
                    let mut ours = MessageStream::new(case);
                    ours.skip_bytes(start);
                    let got = seek_part_end(&mut ours, case, boundary);
                    let ctx = format!("{:?} boundary {boundary:?} from {start}", String::from_utf8_lossy(case));
                    assert_eq!(got, expected, "{ctx}");
                    assert_eq!(ours.offset(), theirs.offset(), "{ctx}: position after");
                }
            }
        }
    }
}
