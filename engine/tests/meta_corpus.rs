//! Parses every message of the test corpus (`testdata/corpus`, real SpamAssassin mail, see
//! its README) into [`MessageMeta`] and checks offsets, cached fields and the encoding.

use std::fs;
use std::path::{Path, PathBuf};

use postlog_engine::meta::{BodyPart, CACHED_FIELDS, MAX_PART_DEPTH, MessageMeta, PartKind, is_cached_field, parse};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus")
}

/// Every message file of the corpus, sorted by path.
fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for folder in ["ham", "spam"] {
        let dir = corpus_dir().join(folder);
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let raw = fs::read(&path).unwrap();
            (path, raw)
        })
        .collect()
}

fn count_lines(body: &[u8]) -> u32 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count();
    let unterminated = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    u32::try_from(newlines + unterminated).unwrap()
}

#[derive(Default, Debug)]
struct Stats {
    parts: usize,
    multiparts: usize,
    messages: usize,
    max_depth: usize,
}

/// Checks the offset invariants of `part` (at nesting level `depth`) within `lo..=hi`.
fn check_part(raw: &[u8], part: &BodyPart, lo: u32, hi: u32, depth: usize, stats: &mut Stats) {
    stats.parts += 1;
    stats.max_depth = stats.max_depth.max(depth);
    assert!(depth <= MAX_PART_DEPTH);
    assert!(lo <= part.header_start, "{part:?} before {lo}");
    assert!(part.header_start <= part.body_start, "{part:?}");
    assert!(part.body_start <= part.body_end, "{part:?}");
    assert!(part.body_end <= hi, "{part:?} after {hi}");
    assert_eq!(part.size(), part.body_end - part.body_start);
    assert!(!part.content_type.is_empty() && !part.subtype.is_empty());
    assert_eq!(part.content_type, part.content_type.to_ascii_lowercase());
    assert_eq!(part.subtype, part.subtype.to_ascii_lowercase());
    let body = &raw[part.body_start as usize..part.body_end as usize];
    match &part.kind {
        PartKind::Single => {
            assert_ne!(part.content_type, "multipart");
            if part.content_type == "text" {
                assert_eq!(part.lines, count_lines(body));
            }
        }
        PartKind::Multipart(children) => {
            stats.multiparts += 1;
            assert_eq!(part.content_type, "multipart");
            let mut previous_end = part.body_start;
            for child in children {
                check_part(raw, child, part.body_start, part.body_end, depth + 1, stats);
                // Children come in order and do not overlap.
                assert!(child.header_start >= previous_end, "{child:?}");
                previous_end = child.body_end;
            }
        }
        PartKind::Message { body: inner, envelope: _ } => {
            stats.messages += 1;
            assert_eq!(part.content_type, "message");
            assert_eq!(part.lines, count_lines(body));
            assert_eq!(inner.header_start, part.body_start);
            assert_eq!(inner.body_end, part.body_end);
            check_part(raw, inner, part.body_start, part.body_end, depth + 1, stats);
        }
    }
}

/// Each cached field is a field line of the top-level header, in message order, and its
/// name is the one it is filed under.
fn check_cached_fields(raw: &[u8], meta: &MessageMeta) {
    let header = &raw[..meta.header_len as usize];
    let mut from = 0;
    for (name, line) in &meta.cached_fields {
        assert!(CACHED_FIELDS.contains(&name.as_str()), "{name}");
        assert!(is_cached_field(name));
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let written = String::from_utf8_lossy(&line[..colon]);
        assert!(written.trim_end().eq_ignore_ascii_case(name), "{written:?} {name}");
        // The first occurrence after the previous field that starts a line of the header.
        let start = (from..=header.len().saturating_sub(line.len()))
            .find(|&at| header[at..].starts_with(line) && (at == 0 || header[at - 1] == b'\n'))
            .unwrap_or_else(|| panic!("{:?} not in the header", String::from_utf8_lossy(line)));
        from = start + line.len();
        assert!(line.ends_with(b"\n") || from == raw.len());
    }
}

#[test]
fn corpus_parses_with_consistent_offsets_and_round_trips() {
    let corpus = corpus();
    assert_eq!(corpus.len(), 300, "the corpus has 250 ham and 50 spam messages");
    let mut stats = Stats::default();
    let mut with_sent_date = 0;
    let mut with_from = 0;
    for (path, raw) in &corpus {
        let meta = parse(raw);
        let len = u32::try_from(raw.len()).unwrap();
        assert_eq!(meta.body.header_start, 0, "{}", path.display());
        assert_eq!(meta.body.body_start, meta.header_len, "{}", path.display());
        assert_eq!(meta.body.body_end, len, "{}", path.display());
        check_part(raw, &meta.body, 0, len, 1, &mut stats);
        check_cached_fields(raw, &meta);
        if meta.body.kind == PartKind::Single {
            assert_eq!(
                &raw[meta.body.body_start as usize..meta.body.body_end as usize],
                &raw[meta.header_len as usize..]
            );
        }
        with_sent_date += usize::from(meta.sent_date.is_some());
        with_from += usize::from(!meta.envelope.from.is_empty());

        let encoded = meta.encode();
        let decoded = MessageMeta::decode(&encoded).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(decoded, meta, "{}", path.display());
    }
    // The corpus is real mail: make sure the interesting paths were taken.
    assert!(stats.multiparts >= 10, "{stats:?}");
    assert!(with_sent_date >= 290, "{with_sent_date}");
    assert!(with_from >= 295, "{with_from}");
}

/// `raw` with every bare LF made CRLF.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut crlf = Vec::with_capacity(raw.len() * 11 / 10);
    for &b in raw {
        if b == b'\n' && crlf.last() != Some(&b'\r') {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    crlf
}

#[test]
fn corpus_crlf_versions_have_the_same_structure() {
    for (path, raw) in corpus() {
        let crlf = to_crlf(&raw);
        let a = parse(&raw);
        let b = parse(&crlf);
        assert_eq!(a.envelope, b.envelope, "{}", path.display());
        assert_eq!(a.references, b.references, "{}", path.display());
        assert_eq!(a.sent_date, b.sent_date, "{}", path.display());
        assert_eq!(a.cached_fields.len(), b.cached_fields.len(), "{}", path.display());
        same_shape(&a.body, &b.body, &path);
        let mut stats = Stats::default();
        check_part(&crlf, &b.body, 0, u32::try_from(crlf.len()).unwrap(), 1, &mut stats);
    }
}

fn same_shape(a: &BodyPart, b: &BodyPart, path: &Path) {
    let at = path.display();
    assert_eq!((&a.content_type, &a.subtype, &a.params), (&b.content_type, &b.subtype, &b.params), "{at}");
    assert_eq!(a.disposition, b.disposition, "{at}");
    assert_eq!(a.encoding, b.encoding, "{at}");
    match (&a.kind, &b.kind) {
        (PartKind::Single, PartKind::Single) => {}
        (PartKind::Multipart(x), PartKind::Multipart(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (x, y) in x.iter().zip(y) {
                same_shape(x, y, path);
            }
        }
        (PartKind::Message { envelope: ea, body: ba }, PartKind::Message { envelope: eb, body: bb }) => {
            assert_eq!(ea, eb, "{at}");
            same_shape(ba, bb, path);
        }
        (x, y) => panic!("{at}: kinds differ: {x:?} / {y:?}"),
    }
}

/// A tiny deterministic xorshift64 generator, for reproducible mutations.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Encodings of a few structurally varied corpus messages: the largest multipart ones.
fn sample_encodings() -> Vec<Vec<u8>> {
    let mut metas: Vec<MessageMeta> = corpus().iter().map(|(_, raw)| parse(raw)).collect();
    metas.sort_by_key(|m| std::cmp::Reverse(m.encode().len()));
    let mut sample: Vec<Vec<u8>> = metas
        .iter()
        .filter(|m| matches!(m.body.kind, PartKind::Multipart(_)))
        .take(3)
        .map(MessageMeta::encode)
        .collect();
    sample.push(metas.last().unwrap().encode());
    sample
}

#[test]
fn truncated_encodings_are_rejected() {
    for encoded in sample_encodings() {
        for cut in 0..encoded.len() {
            let err = MessageMeta::decode(&encoded[..cut]).unwrap_err();
            assert!(err.offset() <= cut);
        }
        assert!(MessageMeta::decode(&encoded).is_ok());
    }
}

#[test]
fn mutated_encodings_never_panic() {
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let mut accepted = 0;
    for encoded in sample_encodings() {
        for round in 0..2_000 {
            let mut bytes = encoded.clone();
            if round % 4 == 0 {
                // Overwrite a 4-byte window: hits lengths and counts hard.
                let at = rng.below(bytes.len().saturating_sub(4));
                let value = [0xff, 0xff, 0xff, 0x7f];
                bytes[at..at + 4].copy_from_slice(&value);
            } else {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            match MessageMeta::decode(&bytes) {
                Ok(meta) => {
                    accepted += 1;
                    // Whatever decodes, re-encodes to the same bytes.
                    assert_eq!(meta.encode(), bytes);
                }
                Err(e) => assert!(e.to_string().contains("byte offset")),
            }
        }
    }
    // Flips inside strings decode fine; the test must not only see errors or only success.
    assert!(accepted > 0 && accepted < 8_000, "{accepted}");
}

/// The store's structure scan (no body decoded) gives exactly the metadata mail-parser's
/// full parse gives, for every corpus message, as stored (LF) and with CRLF line ends, and for
/// messages cut short at many points (unterminated multiparts and encapsulated messages).
#[test]
fn structure_scan_agrees_with_the_full_parse() {
    let mut compared = 0;
    for (path, raw) in corpus() {
        let crlf = to_crlf(&raw);
        for message in [&raw, &crlf] {
            let cuts = (1..8).map(|k| message.len() * k / 8);
            for cut in cuts.chain([message.len()]) {
                let m = &message[..cut];
                assert_eq!(
                    postlog_engine::meta::parse(m),
                    postlog_engine::meta::parse_with_full_decode(m),
                    "{} cut at {cut} of {}",
                    path.display(),
                    message.len()
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 300 * 2 * 8);
}
