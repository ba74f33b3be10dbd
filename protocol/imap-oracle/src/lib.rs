//! A differential check of Postlog's IMAP command parser (`postlog_protocol::imap`) against
//! imap-codec 1.0, the reference "grammar as types" codec, on IMAP4rev1 input.
//!
//! Both parsers get the same bytes (one whole command: literals inline, the final CRLF
//! included) and must agree on accepting or rejecting them, and on the essentials of what
//! they accept: the tag, the command name and, for the commands that carry data a server acts
//! on (LOGIN, AUTHENTICATE, the mailbox commands, LIST/LSUB, STATUS, APPEND, FETCH, STORE,
//! SEARCH, COPY/MOVE, ENABLE), the arguments in a canonical form ([`Essentials`]).
//!
//! ```text
//!  bytes ─┬─► postlog_protocol::imap::parse_command ─► Outcome ─┐
//!         └─► imap_codec::CommandCodec::decode ───────► Outcome ─┴─► compare ─► Verdict
//!                                                                     (ALLOWED: known,
//!                                                                      reasoned differences)
//! ```
//!
//! Where the two legitimately differ (Postlog parses IMAP4rev2 and extensions imap-codec 1.0
//! does not know; imap-codec is laxer than RFC 3501 in a few places), [`ALLOWED`] says so, one
//! rule per difference with its RFC reason. Everything else is a [`Verdict::Disagree`]: a bug
//! on one side. The corpus test (`tests/corpus.rs`) and the `imap_differential` fuzz target
//! both run [`compare`].
//!
//! Not a dependency of the server: only tests and fuzzing link imap-codec.

use std::fmt::Write as _;

use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::CommandBody as TheirBody;
use imap_codec::imap_types::core::{AString as TheirAString, Charset as TheirCharset};
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part as TheirPart, Section as TheirSection,
};
use imap_codec::imap_types::flag::{StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox as TheirListMailbox, Mailbox as TheirMailbox};
use imap_codec::imap_types::search::SearchKey as TheirKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence as TheirSequence, SequenceSet as TheirSet};
use imap_codec::imap_types::status::StatusDataItemName;
use postlog_protocol::imap::{
    AString, Command, CommandBody, Date, FetchAttribute, FetchItems, FetchModifiers, Flag, Mailbox, Partial, SearchKey,
    SectionText, SeqNumber, Sequence, SequenceSet, StatusItem, StoreAction, parse_command,
};

/// What a parser made of the input: accepted with these essentials, or rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Essentials),
    Rejected,
}

/// The parts of a command both parsers must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Essentials {
    pub tag: String,
    /// As a client writes it: `UID FETCH`, not `FETCH`.
    pub name: &'static str,
    /// The arguments in a canonical form (mailboxes with `INBOX` folded, strings as escaped
    /// octets, sequence sets as written, fetch items and search keys spelled out); empty for
    /// commands whose arguments are not compared.
    pub arguments: String,
}

/// Our parser's view of the input: the outcome and, when accepted, the extension beyond
/// IMAP4rev1 (as imap-codec 1.0 parses it) the command uses.
#[derive(Clone, Debug)]
pub struct Ours {
    pub outcome: Outcome,
    pub extension: Option<&'static str>,
    /// The deepest nesting of search keys (parentheses, NOT, OR).
    pub search_depth: usize,
}

/// The result of one comparison.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Both accept with the same essentials, or both reject.
    Agree,
    /// They differ as the rule in [`ALLOWED`] says they may.
    Allowed(&'static Difference),
    Disagree {
        ours: Outcome,
        theirs: Outcome,
    },
}

/// A known, legitimate difference between the parsers.
pub struct Difference {
    pub name: &'static str,
    /// Why (the RFC text or the implementation limit).
    pub reason: &'static str,
    applies: fn(&[u8], &Ours, &Outcome) -> bool,
}

impl std::fmt::Debug for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The allow-list: every known difference, with its reason.
pub static ALLOWED: [Difference; 8] = [
    Difference {
        name: "extension",
        reason: "Postlog parses IMAP4rev2 (RFC 9051) and extensions imap-codec 1.0 does not know: ID (RFC 2971), \
                 NAMESPACE (RFC 2342), UID EXPUNGE (RFC 4315), SORT/THREAD (RFC 5256), CONDSTORE/QRESYNC (RFC 7162), \
                 ESEARCH (RFC 4731), SEARCHRES (RFC 5182), LIST-EXTENDED (RFC 5258), CREATE-SPECIAL-USE (RFC 6154), \
                 MULTIAPPEND (RFC 3502), BINARY (RFC 3516), OBJECTID (RFC 8474), SAVEDATE (RFC 8514), WITHIN \
                 (RFC 5032), the STATUS items SIZE, HIGHESTMODSEQ, APPENDLIMIT, MAILBOXID, and RFC 9051's 63-bit \
                 numbers in LARGER, SMALLER and partial fetches",
        applies: |_, ours, theirs| {
            matches!(ours.outcome, Outcome::Accepted(_)) && ours.extension.is_some() && *theirs == Outcome::Rejected
        },
    },
    Difference {
        name: "empty list",
        reason: "imap-codec 1.0 accepts `STATUS m ()` and `FETCH s ()`; RFC 3501 section 9 wants at least one \
                 item: `\"(\" status-att *(SP status-att) \")\"`, `\"(\" fetch-att *(SP fetch-att) \")\"`",
        applies: |input, ours, theirs| {
            ours.outcome == Outcome::Rejected
                && matches!(theirs, Outcome::Accepted(e) if matches!(e.name, "STATUS" | "FETCH" | "UID FETCH"))
                && contains(input, b"()")
        },
    },
    Difference {
        name: "search depth",
        reason: "implementation limits: imap-codec 1.0 stops at 9 levels of nested search keys, Postlog at \
                 parse::DEFAULT_MAX_DEPTH (64); RFC 3501 sets no limit and both are bounded against stack exhaustion",
        applies: |_, ours, theirs| {
            matches!(ours.outcome, Outcome::Accepted(_)) && ours.search_depth >= 9 && *theirs == Outcome::Rejected
        },
    },
    Difference {
        name: "unpadded base64",
        reason: "RFC 3501/9051 `base64` (SASL-IR's initial response) is padded to a multiple of 4; Postlog's \
                 SASL layer decodes with or without the padding, as clients differ (sasl::BASE64), and \
                 imap-codec wants it",
        applies: |input, ours, theirs| {
            let Outcome::Accepted(e) = &ours.outcome else { return false };
            e.name == "AUTHENTICATE" && *theirs == Outcome::Rejected && self::theirs(&padded(input)) == ours.outcome
        },
    },
    Difference {
        name: "date-time beyond chrono",
        reason: "RFC 3501/9051 `time = 2DIGIT \":\" 2DIGIT \":\" 2DIGIT` and `zone = (\"+\" / \"-\") 4DIGIT` (hhmm): \
                 Postlog takes a leap second (60) and zone hours up to 99 (datetime.rs); imap-codec keeps dates \
                 in chrono's FixedOffset, which stops below 24 hours, and refuses second 60",
        applies: |input, ours, theirs| {
            let Outcome::Accepted(e) = &ours.outcome else { return false };
            let zone = |w: &[u8]| matches!(w, [b' ', b'+' | b'-', h1 @ b'0'..=b'9', h2 @ b'0'..=b'9', b'0'..=b'9', b'0'..=b'9', b'"'] if (h1 - b'0') * 10 + (h2 - b'0') >= 24);
            e.name == "APPEND"
                && *theirs == Outcome::Rejected
                && (input.windows(7).any(zone) || contains(input, b":60 "))
        },
    },
    Difference {
        name: "zone minutes",
        reason: "RFC 3501/9051 `zone` is hhmm, hours and minutes: Postlog refuses minutes 60 to 99 (`-0880`), \
                 imap-codec 1.0 takes them as more hours",
        applies: |input, ours, theirs| {
            let zone = |w: &[u8]| matches!(w, [b' ', b'+' | b'-', b'0'..=b'9', b'0'..=b'9', m @ b'6'..=b'9', b'0'..=b'9', b'"'] if *m >= b'6');
            ours.outcome == Outcome::Rejected
                && matches!(theirs, Outcome::Accepted(e) if e.name == "APPEND")
                && input.windows(7).any(zone)
        },
    },
    Difference {
        name: "UTF-8 in quoted strings",
        reason: "RFC 9051 (and RFC 6855 UTF8=ACCEPT) let a quoted string hold UTF-8 (`QUOTED-CHAR =/ UTF8-2 / \
                 UTF8-3 / UTF8-4`); RFC 3501's, which imap-codec 1.0 follows, is 7-bit",
        applies: |input, ours, theirs| {
            let ascii: Vec<u8> = input.iter().map(|&b| if b >= 0x80 { b'x' } else { b }).collect();
            matches!(ours.outcome, Outcome::Accepted(_))
                && *theirs == Outcome::Rejected
                && eight_bit_only_in_quoted(input)
                && matches!(self::theirs(&ascii), Outcome::Accepted(_))
        },
    },
    Difference {
        name: "empty initial response",
        reason: "RFC 4959 section 3: a zero-length initial response is sent as `=`; imap-codec 1.0 also takes \
                 `AUTHENTICATE PLAIN ` (an empty `base64` after the space) for it, Postlog refuses it",
        applies: |input, ours, theirs| {
            let end = input.iter().rposition(|&b| b != b'\r' && b != b'\n').map_or(0, |i| i + 1);
            ours.outcome == Outcome::Rejected
                && matches!(theirs, Outcome::Accepted(e) if e.name == "AUTHENTICATE")
                && input[..end].ends_with(b" ")
        },
    },
];

/// Whether every octet above 0x7F outside literal data is inside a quoted string.
fn eight_bit_only_in_quoted(input: &[u8]) -> bool {
    let (mut i, mut quoted) = (0, false);
    while i < input.len() {
        let b = input[i];
        if quoted {
            match b {
                b'\\' => i += 1,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b >= 0x80 {
            return false;
        } else if b == b'{' {
            // `{n}` or `{n+}` then CRLF: skip the literal's octets.
            let digits = input[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
            let n: Option<usize> = std::str::from_utf8(&input[i + 1..i + 1 + digits]).ok().and_then(|n| n.parse().ok());
            let mut j = i + 1 + digits;
            if input.get(j) == Some(&b'+') {
                j += 1;
            }
            if let (Some(n), Some(b'}')) = (n, input.get(j)) {
                j += 1;
                if input.get(j) == Some(&b'\r') {
                    j += 1;
                }
                if input.get(j) == Some(&b'\n') {
                    i = j + n;
                }
            }
        }
        i += 1;
    }
    true
}

/// An AUTHENTICATE line with its initial response padded with `=` to a multiple of 4.
fn padded(input: &[u8]) -> Vec<u8> {
    let end = input.iter().rposition(|&b| b != b'\r' && b != b'\n').map_or(0, |i| i + 1);
    let start = input[..end].iter().rposition(|&b| b == b' ').map_or(end, |i| i + 1);
    let mut out = input[..end].to_vec();
    out.extend(std::iter::repeat_n(b'=', (4 - (end - start) % 4) % 4));
    out.extend_from_slice(&input[end..]);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs both parsers on `input` and compares.
pub fn compare(input: &[u8]) -> Verdict {
    let ours = ours(input);
    let theirs = theirs(input);
    if ours.outcome == theirs {
        return Verdict::Agree;
    }
    if let Some(rule) = ALLOWED.iter().find(|d| (d.applies)(input, &ours, &theirs)) {
        return Verdict::Allowed(rule);
    }
    Verdict::Disagree { ours: ours.outcome, theirs }
}

/// Postlog's parser.
pub fn ours(input: &[u8]) -> Ours {
    match parse_command(input) {
        Ok(command) => {
            let extension = extension(&command.body);
            let search_depth = match &command.body {
                CommandBody::Search { criteria, .. } => criteria.iter().map(depth).max().unwrap_or(0),
                _ => 0,
            };
            Ours { outcome: Outcome::Accepted(our_essentials(&command)), extension, search_depth }
        }
        Err(_) => Ours { outcome: Outcome::Rejected, extension: None, search_depth: 0 },
    }
}

/// imap-codec's parser; a command must use all the input (ours gets exactly one).
pub fn theirs(input: &[u8]) -> Outcome {
    match CommandCodec::default().decode(input) {
        Ok(([], command)) => {
            let (name, arguments) = their_body(&command.body);
            Outcome::Accepted(Essentials { tag: command.tag.as_ref().to_string(), name, arguments })
        }
        Ok(_) | Err(CommandDecodeError::Incomplete | CommandDecodeError::LiteralFound { .. }) => Outcome::Rejected,
        Err(CommandDecodeError::Failed) => Outcome::Rejected,
    }
}

// ----- canonical pieces -----

fn octets(out: &mut String, bytes: &[u8]) {
    out.push('"');
    out.push_str(&bytes.escape_ascii().to_string());
    out.push('"');
}

fn mailbox_bytes(out: &mut String, bytes: &[u8]) {
    if bytes.eq_ignore_ascii_case(b"INBOX") { out.push_str("INBOX") } else { octets(out, bytes) }
}

fn date(out: &mut String, year: i32, month: u32, day: u32) {
    let _ = write!(out, "{year:04}-{month:02}-{day:02}");
}

// ----- ours -----

fn our_essentials(command: &Command) -> Essentials {
    let mut a = String::new();
    let out = &mut a;
    match &command.body {
        CommandBody::Login { username, password } => {
            octets(out, username.as_bytes());
            out.push(' ');
            octets(out, password.expose_secret().as_bytes());
        }
        CommandBody::Authenticate { mechanism, initial_response } => {
            out.push_str(&mechanism.as_str().to_ascii_uppercase());
            if let Some(ir) = initial_response {
                out.push(' ');
                octets(out, ir.expose_secret());
            }
        }
        CommandBody::Select { mailbox, .. }
        | CommandBody::Examine { mailbox, .. }
        | CommandBody::Create { mailbox, .. }
        | CommandBody::Delete { mailbox }
        | CommandBody::Subscribe { mailbox }
        | CommandBody::Unsubscribe { mailbox }
        | CommandBody::GetQuotaRoot { mailbox } => our_mailbox(out, mailbox),
        CommandBody::Rename { from, to } => {
            our_mailbox(out, from);
            out.push(' ');
            our_mailbox(out, to);
        }
        CommandBody::List(list) => {
            our_mailbox(out, &list.reference);
            for p in &list.patterns {
                out.push(' ');
                octets(out, p.as_bytes());
            }
        }
        CommandBody::Lsub { reference, pattern } => {
            our_mailbox(out, reference);
            out.push(' ');
            octets(out, pattern.as_bytes());
        }
        CommandBody::Status { mailbox, items } => {
            our_mailbox(out, mailbox);
            for i in items {
                out.push(' ');
                out.push_str(i.name());
            }
        }
        CommandBody::Append { mailbox, messages } => {
            our_mailbox(out, mailbox);
            for m in messages {
                out.push_str(" (");
                our_flags(out, &m.flags);
                out.push(')');
                if let Some(d) = m.date {
                    let _ = write!(out, " @{}", d.unix_seconds());
                }
                out.push(' ');
                octets(out, m.message.data());
            }
        }
        CommandBody::Enable { capabilities } => {
            let caps: Vec<String> = capabilities.iter().map(|c| c.as_str().to_ascii_uppercase()).collect();
            out.push_str(&caps.join(" "));
        }
        CommandBody::Search { charset, criteria, .. } => {
            if let Some(c) = charset {
                let _ = write!(out, "CHARSET {} ", c.0.to_ascii_uppercase());
            }
            match criteria.as_slice() {
                [one] => our_key(out, one),
                all => our_key(out, &SearchKey::And(all.to_vec())),
            }
        }
        CommandBody::Fetch { sequence_set, items, .. } => {
            our_set(out, sequence_set);
            match items {
                FetchItems::All => out.push_str(" ALL"),
                FetchItems::Fast => out.push_str(" FAST"),
                FetchItems::Full => out.push_str(" FULL"),
                FetchItems::Attributes(attributes) => {
                    for attribute in attributes {
                        out.push(' ');
                        our_attribute(out, attribute);
                    }
                }
            }
        }
        CommandBody::Store { sequence_set, action, silent, flags, .. } => {
            our_set(out, sequence_set);
            let action = match action {
                StoreAction::Replace => "",
                StoreAction::Add => "+",
                StoreAction::Remove => "-",
            };
            let _ = write!(out, " {action}FLAGS{} (", if *silent { ".SILENT" } else { "" });
            our_flags(out, flags);
            out.push(')');
        }
        CommandBody::Copy { sequence_set, mailbox, .. } | CommandBody::Move { sequence_set, mailbox, .. } => {
            our_set(out, sequence_set);
            out.push(' ');
            our_mailbox(out, mailbox);
        }
        _ => {}
    }
    Essentials { tag: command.tag.as_str().to_string(), name: command.body.name(), arguments: a }
}

fn our_mailbox(out: &mut String, m: &Mailbox) {
    mailbox_bytes(out, m.as_bytes());
}

fn our_flags(out: &mut String, flags: &[Flag]) {
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    out.push_str(&flags.join(" "));
}

fn our_set(out: &mut String, set: &SequenceSet) {
    let SequenceSet::Ranges(ranges) = set else {
        out.push('$');
        return;
    };
    let n = |n: &SeqNumber| match n {
        SeqNumber::Value(v) => v.to_string(),
        SeqNumber::Largest => "*".into(),
    };
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| match r {
            Sequence::Single(a) => n(a),
            Sequence::Range(a, b) => format!("{}:{}", n(a), n(b)),
        })
        .collect();
    out.push_str(&parts.join(","));
}

fn our_date(out: &mut String, d: &Date) {
    date(out, i32::from(d.year()), u32::from(d.month()), u32::from(d.day()));
}

fn our_partial(out: &mut String, p: &Option<Partial>) {
    if let Some(p) = p {
        let _ = write!(out, "<{}.{}>", p.offset, p.length);
    }
}

fn our_attribute(out: &mut String, a: &FetchAttribute) {
    let simple = match a {
        FetchAttribute::Envelope => "ENVELOPE",
        FetchAttribute::Flags => "FLAGS",
        FetchAttribute::InternalDate => "INTERNALDATE",
        FetchAttribute::Rfc822Size => "RFC822.SIZE",
        FetchAttribute::Body => "BODY",
        FetchAttribute::BodyStructure => "BODYSTRUCTURE",
        FetchAttribute::Uid => "UID",
        FetchAttribute::Rfc822 => "RFC822",
        FetchAttribute::Rfc822Header => "RFC822.HEADER",
        FetchAttribute::Rfc822Text => "RFC822.TEXT",
        FetchAttribute::ModSeq => "MODSEQ",
        FetchAttribute::EmailId => "EMAILID",
        FetchAttribute::ThreadId => "THREADID",
        FetchAttribute::SaveDate => "SAVEDATE",
        FetchAttribute::BodySection { peek, section, partial } => {
            out.push_str(if *peek { "BODY.PEEK[" } else { "BODY[" });
            let mut parts: Vec<String> = section.part.iter().map(|p| p.to_string()).collect();
            match &section.text {
                None => {}
                Some(SectionText::Header) => parts.push("HEADER".into()),
                Some(SectionText::Text) => parts.push("TEXT".into()),
                Some(SectionText::Mime) => parts.push("MIME".into()),
                Some(SectionText::HeaderFields(f)) => parts.push(format!("HEADER.FIELDS ({})", our_fields(f))),
                Some(SectionText::HeaderFieldsNot(f)) => parts.push(format!("HEADER.FIELDS.NOT ({})", our_fields(f))),
            }
            out.push_str(&parts.join("."));
            out.push(']');
            our_partial(out, partial);
            return;
        }
        FetchAttribute::Binary { .. } => "BINARY",
        FetchAttribute::BinarySize { .. } => "BINARY.SIZE",
    };
    out.push_str(simple);
}

fn our_fields(fields: &[AString]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        octets(&mut out, f.as_bytes());
    }
    out
}

fn our_key(out: &mut String, key: &SearchKey) {
    let text = |out: &mut String, name: &str, v: &AString| {
        out.push_str(name);
        out.push(' ');
        octets(out, v.as_bytes());
    };
    let on = |out: &mut String, name: &str, d: &Date| {
        out.push_str(name);
        out.push(' ');
        our_date(out, d);
    };
    match key {
        SearchKey::All => out.push_str("ALL"),
        SearchKey::Answered => out.push_str("ANSWERED"),
        SearchKey::Bcc(v) => text(out, "BCC", v),
        SearchKey::Before(d) => on(out, "BEFORE", d),
        SearchKey::Body(v) => text(out, "BODY", v),
        SearchKey::Cc(v) => text(out, "CC", v),
        SearchKey::Deleted => out.push_str("DELETED"),
        SearchKey::Draft => out.push_str("DRAFT"),
        SearchKey::Flagged => out.push_str("FLAGGED"),
        SearchKey::From(v) => text(out, "FROM", v),
        SearchKey::Header(k, v) => {
            text(out, "HEADER", k);
            out.push(' ');
            octets(out, v.as_bytes());
        }
        SearchKey::Keyword(k) => {
            let _ = write!(out, "KEYWORD {}", k.as_str());
        }
        SearchKey::Larger(n) => {
            let _ = write!(out, "LARGER {n}");
        }
        SearchKey::New => out.push_str("NEW"),
        SearchKey::Not(k) => {
            out.push_str("NOT(");
            our_key(out, k);
            out.push(')');
        }
        SearchKey::Old => out.push_str("OLD"),
        SearchKey::On(d) => on(out, "ON", d),
        SearchKey::Or(a, b) => {
            out.push_str("OR(");
            our_key(out, a);
            out.push_str(", ");
            our_key(out, b);
            out.push(')');
        }
        SearchKey::Recent => out.push_str("RECENT"),
        SearchKey::Seen => out.push_str("SEEN"),
        SearchKey::SentBefore(d) => on(out, "SENTBEFORE", d),
        SearchKey::SentOn(d) => on(out, "SENTON", d),
        SearchKey::SentSince(d) => on(out, "SENTSINCE", d),
        SearchKey::Since(d) => on(out, "SINCE", d),
        SearchKey::Smaller(n) => {
            let _ = write!(out, "SMALLER {n}");
        }
        SearchKey::Subject(v) => text(out, "SUBJECT", v),
        SearchKey::Text(v) => text(out, "TEXT", v),
        SearchKey::To(v) => text(out, "TO", v),
        SearchKey::Uid(set) => {
            out.push_str("UID ");
            our_set(out, set);
        }
        SearchKey::Unanswered => out.push_str("UNANSWERED"),
        SearchKey::Undeleted => out.push_str("UNDELETED"),
        SearchKey::Undraft => out.push_str("UNDRAFT"),
        SearchKey::Unflagged => out.push_str("UNFLAGGED"),
        SearchKey::Unkeyword(k) => {
            let _ = write!(out, "UNKEYWORD {}", k.as_str());
        }
        SearchKey::Unseen => out.push_str("UNSEEN"),
        SearchKey::SequenceSet(set) => our_set(out, set),
        SearchKey::And(keys) => match keys.as_slice() {
            [one] => our_key(out, one),
            keys => {
                out.push_str("AND(");
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    our_key(out, k);
                }
                out.push(')');
            }
        },
        // Extensions: never compared (imap-codec 1.0 rejects them; see `extension`).
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

fn depth(key: &SearchKey) -> usize {
    match key {
        SearchKey::Not(k) => 1 + depth(k),
        SearchKey::Or(a, b) => 1 + depth(a).max(depth(b)),
        SearchKey::And(keys) => 1 + keys.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The extension beyond what imap-codec 1.0 parses that an accepted command uses, if any.
fn extension(body: &CommandBody) -> Option<&'static str> {
    let set_ext = |s: &SequenceSet| matches!(s, SequenceSet::Saved).then_some("SEARCHRES");
    match body {
        CommandBody::Id { .. } => Some("ID"),
        CommandBody::Namespace => Some("NAMESPACE"),
        CommandBody::UidExpunge { .. } => Some("UIDPLUS"),
        CommandBody::Sort { .. } | CommandBody::Thread { .. } => Some("SORT/THREAD"),
        CommandBody::Select { params, .. } | CommandBody::Examine { params, .. } => {
            (*params != Default::default()).then_some("CONDSTORE/QRESYNC")
        }
        CommandBody::Create { special_use, .. } => special_use.is_some().then_some("CREATE-SPECIAL-USE"),
        CommandBody::List(list) => list.is_extended().then_some("LIST-EXTENDED"),
        CommandBody::Status { items, .. } => items
            .iter()
            .any(|i| {
                matches!(
                    i,
                    StatusItem::Size | StatusItem::HighestModSeq | StatusItem::AppendLimit | StatusItem::MailboxId
                )
            })
            .then_some("STATUS items"),
        CommandBody::Append { messages, .. } => {
            if messages.len() > 1 {
                Some("MULTIAPPEND")
            } else if messages.iter().any(|m| m.utf8 || m.message.is_binary()) {
                Some("BINARY/UTF8")
            } else {
                None
            }
        }
        CommandBody::Search { return_options, criteria, .. } => {
            if return_options.is_some() {
                return Some("ESEARCH");
            }
            criteria.iter().find_map(key_extension)
        }
        CommandBody::Fetch { sequence_set, items, modifiers, .. } => {
            if *modifiers != FetchModifiers::default() {
                return Some("CONDSTORE/QRESYNC");
            }
            let FetchItems::Attributes(attributes) = items else { return set_ext(sequence_set) };
            attributes
                .iter()
                .find_map(|a| match a {
                    FetchAttribute::ModSeq => Some("CONDSTORE"),
                    FetchAttribute::EmailId | FetchAttribute::ThreadId => Some("OBJECTID"),
                    FetchAttribute::SaveDate => Some("SAVEDATE"),
                    FetchAttribute::Binary { .. } | FetchAttribute::BinarySize { .. } => Some("BINARY"),
                    FetchAttribute::BodySection { partial: Some(p), .. }
                        if p.offset > u64::from(u32::MAX) || p.length.get() > u64::from(u32::MAX) =>
                    {
                        Some("number64")
                    }
                    _ => None,
                })
                .or_else(|| set_ext(sequence_set))
        }
        CommandBody::Store { unchanged_since, sequence_set, .. } => {
            unchanged_since.map(|_| "CONDSTORE").or_else(|| set_ext(sequence_set))
        }
        CommandBody::Copy { sequence_set, .. } | CommandBody::Move { sequence_set, .. } => set_ext(sequence_set),
        _ => None,
    }
}

fn key_extension(key: &SearchKey) -> Option<&'static str> {
    match key {
        SearchKey::ModSeq { .. } => Some("CONDSTORE"),
        SearchKey::Older(_) | SearchKey::Younger(_) => Some("WITHIN"),
        SearchKey::EmailId(_) | SearchKey::ThreadId(_) => Some("OBJECTID"),
        SearchKey::SavedBefore(_) | SearchKey::SavedOn(_) | SearchKey::SavedSince(_) | SearchKey::SaveDateSupported => {
            Some("SAVEDATE")
        }
        SearchKey::Larger(n) | SearchKey::Smaller(n) if *n > u64::from(u32::MAX) => Some("number64"),
        SearchKey::Uid(SequenceSet::Saved) | SearchKey::SequenceSet(SequenceSet::Saved) => Some("SEARCHRES"),
        SearchKey::Not(k) => key_extension(k),
        SearchKey::Or(a, b) => key_extension(a).or_else(|| key_extension(b)),
        SearchKey::And(keys) => keys.iter().find_map(key_extension),
        _ => None,
    }
}

// ----- theirs -----

fn their_body(body: &TheirBody) -> (&'static str, String) {
    let mut a = String::new();
    let out = &mut a;
    let pick = |uid: bool, with: &'static str, without: &'static str| if uid { with } else { without };
    let name = match body {
        TheirBody::Capability => "CAPABILITY",
        TheirBody::Noop => "NOOP",
        TheirBody::Logout => "LOGOUT",
        TheirBody::StartTLS => "STARTTLS",
        TheirBody::Authenticate { mechanism, initial_response } => {
            out.push_str(&mechanism.to_string().to_ascii_uppercase());
            if let Some(ir) = initial_response {
                out.push(' ');
                octets(out, ir.declassify());
            }
            "AUTHENTICATE"
        }
        TheirBody::Login { username, password } => {
            octets(out, username.as_ref());
            out.push(' ');
            octets(out, password.declassify().as_ref());
            "LOGIN"
        }
        TheirBody::Select { mailbox } => {
            their_mailbox(out, mailbox);
            "SELECT"
        }
        TheirBody::Unselect => "UNSELECT",
        TheirBody::Examine { mailbox } => {
            their_mailbox(out, mailbox);
            "EXAMINE"
        }
        TheirBody::Create { mailbox } => {
            their_mailbox(out, mailbox);
            "CREATE"
        }
        TheirBody::Delete { mailbox } => {
            their_mailbox(out, mailbox);
            "DELETE"
        }
        TheirBody::Rename { from, to } => {
            their_mailbox(out, from);
            out.push(' ');
            their_mailbox(out, to);
            "RENAME"
        }
        TheirBody::Subscribe { mailbox } => {
            their_mailbox(out, mailbox);
            "SUBSCRIBE"
        }
        TheirBody::Unsubscribe { mailbox } => {
            their_mailbox(out, mailbox);
            "UNSUBSCRIBE"
        }
        TheirBody::List { reference, mailbox_wildcard } => {
            their_mailbox(out, reference);
            out.push(' ');
            their_pattern(out, mailbox_wildcard);
            "LIST"
        }
        TheirBody::Lsub { reference, mailbox_wildcard } => {
            their_mailbox(out, reference);
            out.push(' ');
            their_pattern(out, mailbox_wildcard);
            "LSUB"
        }
        TheirBody::Status { mailbox, item_names } => {
            their_mailbox(out, mailbox);
            for i in item_names.iter() {
                out.push(' ');
                out.push_str(match i {
                    StatusDataItemName::Messages => "MESSAGES",
                    StatusDataItemName::Recent => "RECENT",
                    StatusDataItemName::UidNext => "UIDNEXT",
                    StatusDataItemName::UidValidity => "UIDVALIDITY",
                    StatusDataItemName::Unseen => "UNSEEN",
                    StatusDataItemName::Deleted => "DELETED",
                    StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
                });
            }
            "STATUS"
        }
        TheirBody::Append { mailbox, flags, date, message } => {
            their_mailbox(out, mailbox);
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            let _ = write!(out, " ({})", flags.join(" "));
            if let Some(d) = date {
                let _ = write!(out, " @{}", d.as_ref().timestamp());
            }
            out.push(' ');
            octets(out, message.data());
            "APPEND"
        }
        TheirBody::Check => "CHECK",
        TheirBody::Close => "CLOSE",
        TheirBody::Expunge => "EXPUNGE",
        TheirBody::Search { charset, criteria, uid } => {
            if let Some(c) = charset {
                let c: &str = match c {
                    TheirCharset::Atom(a) => a.as_ref(),
                    TheirCharset::Quoted(q) => q.as_ref(),
                };
                let _ = write!(out, "CHARSET {} ", c.to_ascii_uppercase());
            }
            their_key(out, criteria);
            pick(*uid, "UID SEARCH", "SEARCH")
        }
        TheirBody::Fetch { sequence_set, macro_or_item_names, uid } => {
            their_set(out, sequence_set);
            match macro_or_item_names {
                MacroOrMessageDataItemNames::Macro(Macro::All) => out.push_str(" ALL"),
                MacroOrMessageDataItemNames::Macro(Macro::Fast) => out.push_str(" FAST"),
                MacroOrMessageDataItemNames::Macro(Macro::Full) => out.push_str(" FULL"),
                MacroOrMessageDataItemNames::Macro(other) => {
                    let _ = write!(out, " {other:?}");
                }
                MacroOrMessageDataItemNames::MessageDataItemNames(items) => {
                    for item in items {
                        out.push(' ');
                        their_item(out, item);
                    }
                }
            }
            pick(*uid, "UID FETCH", "FETCH")
        }
        TheirBody::Store { sequence_set, kind, response, flags, uid } => {
            their_set(out, sequence_set);
            let kind = match kind {
                StoreType::Replace => "",
                StoreType::Add => "+",
                StoreType::Remove => "-",
            };
            let silent = if *response == StoreResponse::Silent { ".SILENT" } else { "" };
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            let _ = write!(out, " {kind}FLAGS{silent} ({})", flags.join(" "));
            pick(*uid, "UID STORE", "STORE")
        }
        TheirBody::Copy { sequence_set, mailbox, uid } => {
            their_set(out, sequence_set);
            out.push(' ');
            their_mailbox(out, mailbox);
            pick(*uid, "UID COPY", "COPY")
        }
        TheirBody::Move { sequence_set, mailbox, uid } => {
            their_set(out, sequence_set);
            out.push(' ');
            their_mailbox(out, mailbox);
            pick(*uid, "UID MOVE", "MOVE")
        }
        TheirBody::Idle => "IDLE",
        TheirBody::Enable { capabilities } => {
            let caps: Vec<String> = capabilities.as_ref().iter().map(|c| c.to_string().to_ascii_uppercase()).collect();
            out.push_str(&caps.join(" "));
            "ENABLE"
        }
        TheirBody::Compress { .. } => "COMPRESS",
        TheirBody::GetQuota { .. } => "GETQUOTA",
        TheirBody::GetQuotaRoot { mailbox } => {
            their_mailbox(out, mailbox);
            "GETQUOTAROOT"
        }
        TheirBody::SetQuota { .. } => "SETQUOTA",
    };
    (name, a)
}

fn their_mailbox(out: &mut String, m: &TheirMailbox) {
    match m {
        TheirMailbox::Inbox => out.push_str("INBOX"),
        TheirMailbox::Other(other) => mailbox_bytes(out, other.as_ref()),
    }
}

fn their_pattern(out: &mut String, p: &TheirListMailbox) {
    match p {
        TheirListMailbox::Token(t) => octets(out, t.as_ref()),
        TheirListMailbox::String(s) => octets(out, s.as_ref()),
    }
}

fn their_set(out: &mut String, set: &TheirSet) {
    let n = |n: &SeqOrUid| match n {
        SeqOrUid::Value(v) => v.to_string(),
        SeqOrUid::Asterisk => "*".into(),
    };
    let parts: Vec<String> = set
        .0
        .as_ref()
        .iter()
        .map(|s| match s {
            TheirSequence::Single(a) => n(a),
            TheirSequence::Range(a, b) => format!("{}:{}", n(a), n(b)),
        })
        .collect();
    out.push_str(&parts.join(","));
}

fn their_item(out: &mut String, item: &MessageDataItemName) {
    let simple = match item {
        MessageDataItemName::Body => "BODY",
        MessageDataItemName::BodyStructure => "BODYSTRUCTURE",
        MessageDataItemName::Envelope => "ENVELOPE",
        MessageDataItemName::Flags => "FLAGS",
        MessageDataItemName::InternalDate => "INTERNALDATE",
        MessageDataItemName::Rfc822 => "RFC822",
        MessageDataItemName::Rfc822Header => "RFC822.HEADER",
        MessageDataItemName::Rfc822Size => "RFC822.SIZE",
        MessageDataItemName::Rfc822Text => "RFC822.TEXT",
        MessageDataItemName::Uid => "UID",
        MessageDataItemName::BodyExt { section, partial, peek } => {
            out.push_str(if *peek { "BODY.PEEK[" } else { "BODY[" });
            let part = |p: &Option<TheirPart>| -> Vec<String> {
                p.iter().flat_map(|p| p.0.as_ref().iter().map(|n| n.to_string())).collect()
            };
            let parts = match section {
                None => vec![],
                Some(TheirSection::Part(p)) => part(&Some(p.clone())),
                Some(TheirSection::Header(p)) => [part(p), vec!["HEADER".into()]].concat(),
                Some(TheirSection::Text(p)) => [part(p), vec!["TEXT".into()]].concat(),
                Some(TheirSection::Mime(p)) => [part(&Some(p.clone())), vec!["MIME".into()]].concat(),
                Some(TheirSection::HeaderFields(p, f)) => {
                    [part(p), vec![format!("HEADER.FIELDS ({})", their_fields(f.as_ref()))]].concat()
                }
                Some(TheirSection::HeaderFieldsNot(p, f)) => {
                    [part(p), vec![format!("HEADER.FIELDS.NOT ({})", their_fields(f.as_ref()))]].concat()
                }
            };
            out.push_str(&parts.join("."));
            out.push(']');
            if let Some((offset, length)) = partial {
                let _ = write!(out, "<{offset}.{length}>");
            }
            return;
        }
    };
    out.push_str(simple);
}

fn their_fields(fields: &[TheirAString]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        octets(&mut out, f.as_ref());
    }
    out
}

fn their_key(out: &mut String, key: &TheirKey) {
    use chrono::Datelike;
    let text = |out: &mut String, name: &str, v: &TheirAString| {
        out.push_str(name);
        out.push(' ');
        octets(out, v.as_ref());
    };
    let on = |out: &mut String, name: &str, d: &imap_codec::imap_types::datetime::NaiveDate| {
        out.push_str(name);
        out.push(' ');
        let d = d.as_ref();
        date(out, d.year(), d.month(), d.day());
    };
    match key {
        TheirKey::All => out.push_str("ALL"),
        TheirKey::Answered => out.push_str("ANSWERED"),
        TheirKey::Bcc(v) => text(out, "BCC", v),
        TheirKey::Before(d) => on(out, "BEFORE", d),
        TheirKey::Body(v) => text(out, "BODY", v),
        TheirKey::Cc(v) => text(out, "CC", v),
        TheirKey::Deleted => out.push_str("DELETED"),
        TheirKey::Draft => out.push_str("DRAFT"),
        TheirKey::Flagged => out.push_str("FLAGGED"),
        TheirKey::From(v) => text(out, "FROM", v),
        TheirKey::Header(k, v) => {
            text(out, "HEADER", k);
            out.push(' ');
            octets(out, v.as_ref());
        }
        TheirKey::Keyword(k) => {
            let _ = write!(out, "KEYWORD {}", k.as_ref());
        }
        TheirKey::Larger(n) => {
            let _ = write!(out, "LARGER {n}");
        }
        TheirKey::New => out.push_str("NEW"),
        TheirKey::Not(k) => {
            out.push_str("NOT(");
            their_key(out, k);
            out.push(')');
        }
        TheirKey::Old => out.push_str("OLD"),
        TheirKey::On(d) => on(out, "ON", d),
        TheirKey::Or(a, b) => {
            out.push_str("OR(");
            their_key(out, a);
            out.push_str(", ");
            their_key(out, b);
            out.push(')');
        }
        TheirKey::Recent => out.push_str("RECENT"),
        TheirKey::Seen => out.push_str("SEEN"),
        TheirKey::SentBefore(d) => on(out, "SENTBEFORE", d),
        TheirKey::SentOn(d) => on(out, "SENTON", d),
        TheirKey::SentSince(d) => on(out, "SENTSINCE", d),
        TheirKey::Since(d) => on(out, "SINCE", d),
        TheirKey::Smaller(n) => {
            let _ = write!(out, "SMALLER {n}");
        }
        TheirKey::Subject(v) => text(out, "SUBJECT", v),
        TheirKey::Text(v) => text(out, "TEXT", v),
        TheirKey::To(v) => text(out, "TO", v),
        TheirKey::Uid(set) => {
            out.push_str("UID ");
            their_set(out, set);
        }
        TheirKey::Unanswered => out.push_str("UNANSWERED"),
        TheirKey::Undeleted => out.push_str("UNDELETED"),
        TheirKey::Undraft => out.push_str("UNDRAFT"),
        TheirKey::Unflagged => out.push_str("UNFLAGGED"),
        TheirKey::Unkeyword(k) => {
            let _ = write!(out, "UNKEYWORD {}", k.as_ref());
        }
        TheirKey::Unseen => out.push_str("UNSEEN"),
        TheirKey::SequenceSet(set) => their_set(out, set),
        TheirKey::And(keys) => match keys.as_ref() {
            [one] => their_key(out, one),
            keys => {
                out.push_str("AND(");
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    their_key(out, k);
                }
                out.push(')');
            }
        },
    }
}
