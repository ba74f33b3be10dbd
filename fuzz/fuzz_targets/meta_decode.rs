//! Message metadata from arbitrary bytes.
//!
//! - `MessageMeta::decode` never panics; what decodes re-encodes to the same bytes and decodes
//!   again to the same value.
//! - `meta::parse` of the input as a message never panics, keeps the offset invariants the
//!   module documents (root spans the message; every part's offsets ordered and inside its
//!   parent's body), and its encoding decodes back to an equal value (the round-trip oracle).
//! - `meta::parse` (the structure scan, no body decoded) gives the same metadata as
//!   `meta::parse_with_full_decode` (mail-parser's full parse), wherever the full parse ran
//!   without tripping one of mail-parser's own `debug_assert!`s: a differential oracle.
//!
//! mail-parser has `debug_assert!`s that malformed input reaches (fuzz builds enable debug
//! assertions); `meta::parse` catches such panics by design and degrades to a `text/plain`
//! body. libFuzzer's panic hook would abort on them, so panics raised inside mail-parser are
//! let through to that `catch_unwind`; any other panic still aborts.

#![no_main]

use std::sync::atomic::{AtomicBool, Ordering};

use libfuzzer_sys::fuzz_target;
use postlog_engine::meta::{self, BodyPart, MessageMeta, PartKind};

/// Checks the documented offset invariants of a parsed tree within `start..end`.
fn check_part(p: &BodyPart, start: u32, end: u32, depth: usize) {
    assert!(depth <= meta::MAX_PART_DEPTH, "parse nested deeper than MAX_PART_DEPTH");
    assert!(start <= p.header_start && p.header_start <= p.body_start, "{p:?}");
    assert!(p.body_start <= p.body_end && p.body_end <= end, "{p:?} outside {start}..{end}");
    match &p.kind {
        PartKind::Single => {}
        PartKind::Multipart(children) => {
            assert_eq!(p.content_type, "multipart");
            for c in children {
                check_part(c, p.body_start, p.body_end, depth + 1);
            }
        }
        PartKind::Message { body, .. } => {
            assert_eq!(p.content_type, "message");
            assert_eq!(body.header_start, p.body_start, "an encapsulated message starts at its part's body");
            assert_eq!(body.body_end, p.body_end, "an encapsulated message ends with its part");
            check_part(body, p.body_start, p.body_end, depth + 1);
        }
    }
}

/// Whether some `message/rfc822` part of the tree holds a message whose root part is one
/// too.
fn has_message_in_message(p: &BodyPart) -> bool {
    match &p.kind {
        PartKind::Single => false,
        PartKind::Multipart(children) => children.iter().any(has_message_in_message),
        PartKind::Message { body, .. } => matches!(body.kind, PartKind::Message { .. }) || has_message_in_message(body),
    }
}

/// Set when mail-parser panicked (a `debug_assert!`, fuzz builds only) since last cleared.
static MAIL_PARSER_PANICKED: AtomicBool = AtomicBool::new(false);

/// Lets panics from mail-parser unwind to `meta::parse`'s `catch_unwind`; everything else
/// goes to libFuzzer's hook, which aborts.
fn let_mail_parser_panics_unwind() {
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("/mail-parser-")) {
            MAIL_PARSER_PANICKED.store(true, Ordering::Relaxed);
            return;
        }
        abort_hook(info);
    }));
}

fuzz_target!(init: let_mail_parser_panics_unwind(), |data: &[u8]| {
    if let Ok(m) = MessageMeta::decode(data) {
        let encoded = m.encode();
        assert_eq!(MessageMeta::decode(&encoded).as_ref(), Ok(&m), "decode(encode(decode(x))) differs");
        assert_eq!(encoded, data, "a decoded metadata does not re-encode to its bytes");
    }

    let m = meta::parse(data);
    let len = u32::try_from(data.len()).expect("fuzz inputs are small");
    assert_eq!(m.body.header_start, 0);
    assert_eq!(m.body.body_start, m.header_len);
    assert_eq!(m.body.body_end, len, "the root part ends at the end of the message");
    check_part(&m.body, 0, len, 1);
    let encoded = m.encode();
    match MessageMeta::decode(&encoded) {
        Ok(back) => assert_eq!(back, m, "parse -> encode -> decode is not the identity"),
        Err(e) => panic!("the encoding of a parsed message does not decode: {e}"),
    }
    // The reference is only meaningful where mail-parser's full parse ran to its end: on
    // input that trips one of its `debug_assert!`s it degrades to the fallback (and in a
    // release build it would have gone on with a state it asserts cannot happen).
    MAIL_PARSER_PANICKED.store(false, Ordering::Relaxed);
    let reference = meta::parse_with_full_decode(data);
    // Where they differ by design: an encapsulated message whose root part is itself an
    // encapsulated message, inside a multipart. The scan ends both at the multipart's next
    // delimiter; mail-parser ends only the inner one there and reads on inside the outer.
    if !MAIL_PARSER_PANICKED.load(Ordering::Relaxed) && !has_message_in_message(&m.body) {
        assert_eq!(m, reference, "the structure scan and the full parse differ");
    }
    // Section lookups and cached fields answer without panicking.
    for path in [&[1u32][..], &[1, 1], &[2], &[1, 2, 1], &[0]] {
        let _ = m.section(path);
    }
    for name in ["Subject", "From", "Message-ID", "X-Unknown"] {
        let _ = m.cached_field(name).count();
    }
});
