//! `SEARCH` keys and result options (RFC 9051 section 6.4.4, RFC 3501 section 6.4.4, ESEARCH
//! RFC 4731, SEARCHRES RFC 5182, CONDSTORE RFC 7162, WITHIN RFC 5032, OBJECTID RFC 8474,
//! SAVEDATE RFC 8514), and `SORT`/`THREAD` (RFC 5256, ESORT RFC 5267, DISPLAY RFC 5957).

use std::fmt;
use std::num::NonZeroU32;

use super::core::{AString, Atom};
use super::datetime::Date;
use super::flag::Flag;
use super::sequence::SequenceSet;

/// A search charset (`CHARSET x` of `SEARCH`, the mandatory charset of `SORT` and `THREAD`).
///
/// ```text
/// charset = atom / quoted
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Charset(pub String);

impl Charset {
    /// `UTF-8` or `US-ASCII`, ignoring case: the charsets every server supports (ASCII being a
    /// subset of UTF-8).
    pub fn is_utf8_compatible(&self) -> bool {
        self.0.eq_ignore_ascii_case("UTF-8") || self.0.eq_ignore_ascii_case("US-ASCII")
    }
}

/// One search criterion. A list of keys means all of them (AND).
///
/// ```text
/// search-key = "ALL" / "ANSWERED" / "BCC" SP astring / "BEFORE" SP date / "BODY" SP astring /
///              "CC" SP astring / "DELETED" / "FLAGGED" / "FROM" SP astring / "KEYWORD" SP flag-keyword /
///              "NEW" / "OLD" / "ON" SP date / "RECENT" / "SEEN" / "SINCE" SP date / "SUBJECT" SP astring /
///              "TEXT" SP astring / "TO" SP astring / "UNANSWERED" / "UNDELETED" / "UNFLAGGED" /
///              "UNKEYWORD" SP flag-keyword / "UNSEEN" / "DRAFT" / "HEADER" SP header-fld-name SP astring /
///              "LARGER" SP number64 / "NOT" SP search-key / "OR" SP search-key SP search-key /
///              "SENTBEFORE" SP date / "SENTON" SP date / "SENTSINCE" SP date / "SMALLER" SP number64 /
///              "UID" SP sequence-set / "UNDRAFT" / sequence-set / "(" search-key *(SP search-key) ")" /
///              "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer /
///              "OLDER" SP nz-number / "YOUNGER" SP nz-number / "EMAILID" SP objectid / "THREADID" SP objectid /
///              "SAVEDBEFORE" SP date / "SAVEDON" SP date / "SAVEDSINCE" SP date / "SAVEDATESUPPORTED"
/// ```
/// `NEW`, `OLD`, `RECENT` are IMAP4rev1 only (RFC 9051 dropped `\Recent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(AString),
    Before(Date),
    Body(AString),
    Cc(AString),
    Deleted,
    Draft,
    Flagged,
    From(AString),
    /// `HEADER name value`; an empty value matches every message that has the field.
    Header(AString, AString),
    Keyword(Atom),
    /// Size in octets above this.
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(AString),
    Text(AString),
    To(AString),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(Atom),
    Unseen,
    /// Message sequence numbers (or `$`).
    SequenceSet(SequenceSet),
    /// A parenthesised list: all of the keys. Never empty.
    And(Vec<SearchKey>),
    /// `MODSEQ` (RFC 7162): mod-sequence at least `modseq`, optionally of one flag's metadata.
    ModSeq {
        entry: Option<ModSeqEntry>,
        modseq: u64,
    },
    /// `OLDER n` (RFC 5032): internal date more than `n` seconds ago.
    Older(NonZeroU32),
    /// `YOUNGER n` (RFC 5032): internal date at most `n` seconds ago.
    Younger(NonZeroU32),
    /// `EMAILID` (RFC 8474).
    EmailId(ObjectId),
    /// `THREADID` (RFC 8474).
    ThreadId(ObjectId),
    /// `SAVEDBEFORE` (RFC 8514).
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    /// `SAVEDATESUPPORTED` (RFC 8514): the mailbox keeps save dates.
    SaveDateSupported,
}

/// The per-flag metadata item of `SEARCH MODSEQ` (RFC 7162 section 3.1.5).
///
/// ```text
/// entry-name     = DQUOTE "/flags/" attr-flag DQUOTE
/// entry-type-req = "priv" / "shared" / "all"
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModSeqEntry {
    pub flag: Flag,
    pub kind: EntryType,
}

/// Private, shared or either metadata of `SEARCH MODSEQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    Private,
    Shared,
    All,
}

/// An object id (RFC 8474): `1*255(ALPHA / DIGIT / "_" / "-")`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId(String);

impl ObjectId {
    pub const MAX_LEN: usize = 255;

    pub fn new(value: &str) -> Option<Self> {
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A result option of `SEARCH RETURN (...)` (ESEARCH RFC 4731, SEARCHRES RFC 5182) or
/// `SORT RETURN (...)` (ESORT RFC 5267).
///
/// ```text
/// search-return-opt = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    /// Keep the result for `$`.
    Save,
}

/// `SORT` keys (RFC 5256 section 3, DISPLAYFROM/DISPLAYTO RFC 5957).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// One `SORT` criterion.
///
/// ```text
/// sort-criterion = ["REVERSE" SP] sort-key
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// `THREAD` algorithms (RFC 5256 section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_validated() {
        assert!(ObjectId::new("M6d99ac3275bb4e").is_some());
        assert!(ObjectId::new("a_b-c").is_some());
        assert!(ObjectId::new("").is_none());
        assert!(ObjectId::new("a b").is_none());
        assert!(ObjectId::new(&"x".repeat(256)).is_none());
        assert!(ObjectId::new(&"x".repeat(255)).is_some_and(|id| id.as_str().len() == 255));
    }

    #[test]
    fn utf8_compatible_charsets() {
        assert!(Charset("utf-8".into()).is_utf8_compatible());
        assert!(Charset("US-ASCII".into()).is_utf8_compatible());
        assert!(!Charset("ISO-8859-1".into()).is_utf8_compatible());
    }
}
