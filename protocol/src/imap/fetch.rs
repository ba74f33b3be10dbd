//! What `FETCH` asks for (RFC 9051 section 6.4.5, RFC 3501 section 6.4.5, BINARY RFC 3516,
//! CONDSTORE/QRESYNC RFC 7162, OBJECTID RFC 8474, SAVEDATE RFC 8514).

use std::num::{NonZeroU32, NonZeroU64};

use super::core::AString;

/// The items of a `FETCH`: a macro or a list of attributes.
///
/// ```text
/// fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItems {
    /// `ALL`: `FLAGS INTERNALDATE RFC822.SIZE ENVELOPE`.
    All,
    /// `FAST`: `FLAGS INTERNALDATE RFC822.SIZE`.
    Fast,
    /// `FULL`: `FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY`.
    Full,
    /// One attribute, or a parenthesised list (in the order sent; never empty).
    Attributes(Vec<FetchAttribute>),
}

impl FetchItems {
    /// The attributes, macros expanded.
    pub fn expand(&self) -> Vec<FetchAttribute> {
        use FetchAttribute::*;
        match self {
            Self::All => vec![Flags, InternalDate, Rfc822Size, Envelope],
            Self::Fast => vec![Flags, InternalDate, Rfc822Size],
            Self::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
            Self::Attributes(attributes) => attributes.clone(),
        }
    }
}

/// One message data item to fetch.
///
/// ```text
/// fetch-att = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822" [".HEADER" / ".SIZE" / ".TEXT"] /
///             "BODY" ["STRUCTURE"] / "UID" / "BODY" section [partial] / "BODY.PEEK" section [partial] /
///             "BINARY" [".PEEK"] section-binary [partial] / "BINARY.SIZE" section-binary /
///             "MODSEQ" / "EMAILID" / "THREADID" / "SAVEDATE"
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttribute {
    Envelope,
    Flags,
    InternalDate,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `BODY`: the body structure without extension data.
    Body,
    BodyStructure,
    Uid,
    /// `RFC822` (IMAP4rev1): `BODY[]`, and sets `\Seen`.
    Rfc822,
    /// `RFC822.HEADER` (IMAP4rev1): `BODY.PEEK[HEADER]`.
    Rfc822Header,
    /// `RFC822.TEXT` (IMAP4rev1): `BODY[TEXT]`, and sets `\Seen`.
    Rfc822Text,
    /// `MODSEQ` (RFC 7162).
    ModSeq,
    /// `EMAILID` (RFC 8474).
    EmailId,
    /// `THREADID` (RFC 8474).
    ThreadId,
    /// `SAVEDATE` (RFC 8514).
    SaveDate,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516): the part with its
    /// content-transfer-encoding undone. An empty `part` is the whole message.
    Binary {
        peek: bool,
        part: Vec<NonZeroU32>,
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]` (RFC 3516).
    BinarySize {
        part: Vec<NonZeroU32>,
    },
}

impl FetchAttribute {
    /// Whether fetching this sets `\Seen` on the message (RFC 9051 section 6.4.5: `BODY[...]`
    /// and `BINARY[...]` without `.PEEK`, and IMAP4rev1's `RFC822` and `RFC822.TEXT`).
    pub fn sets_seen(&self) -> bool {
        match self {
            Self::Rfc822 | Self::Rfc822Text => true,
            Self::BodySection { peek, .. } | Self::Binary { peek, .. } => !peek,
            _ => false,
        }
    }
}

/// A body section: a part path and what of it.
///
/// ```text
/// section          = "[" [section-spec] "]"
/// section-spec     = section-msgtext / (section-part ["." section-text])
/// section-msgtext  = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
/// section-part     = nz-number *("." nz-number)
/// section-text     = section-msgtext / "MIME"
/// ```
/// `BODY[]` is an empty part and no text. Invariant: [`SectionText::Mime`] only with a part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// `1.2.3`; empty for the message itself.
    pub part: Vec<NonZeroU32>,
    pub text: Option<SectionText>,
}

/// What of a part a section names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// `HEADER.FIELDS (name ...)`: the field names, never empty.
    HeaderFields(Vec<AString>),
    /// `HEADER.FIELDS.NOT (name ...)`.
    HeaderFieldsNot(Vec<AString>),
    Text,
    /// The MIME header of a part.
    Mime,
}

/// `<offset.length>`: a substring of the section.
///
/// ```text
/// partial = "<" number64 "." nz-number64 ">"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partial {
    pub offset: u64,
    pub length: NonZeroU64,
}

/// `FETCH` modifiers (RFC 7162).
///
/// ```text
/// fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"
/// fetch-modifier  = "CHANGEDSINCE" SP mod-sequence-value / "VANISHED"
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchModifiers {
    /// `CHANGEDSINCE n`: only messages whose mod-sequence is above `n`.
    pub changed_since: Option<NonZeroU64>,
    /// `VANISHED` (QRESYNC, `UID FETCH` only, with `CHANGEDSINCE`): report expunged UIDs.
    pub vanished: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_expand() {
        assert_eq!(FetchItems::Fast.expand().len(), 3);
        assert_eq!(FetchItems::All.expand().last(), Some(&FetchAttribute::Envelope));
        assert_eq!(FetchItems::Full.expand().last(), Some(&FetchAttribute::Body));
        assert_eq!(FetchItems::Attributes(vec![FetchAttribute::Uid]).expand(), vec![FetchAttribute::Uid]);
    }

    #[test]
    fn only_non_peek_content_sets_seen() {
        let body = |peek| FetchAttribute::BodySection { peek, section: Section::default(), partial: None };
        assert!(body(false).sets_seen());
        assert!(!body(true).sets_seen());
        assert!(FetchAttribute::Binary { peek: false, part: vec![], partial: None }.sets_seen());
        assert!(FetchAttribute::Rfc822.sets_seen() && FetchAttribute::Rfc822Text.sets_seen());
        assert!(!FetchAttribute::Rfc822Header.sets_seen());
        assert!(!FetchAttribute::BinarySize { part: vec![] }.sets_seen());
    }
}
