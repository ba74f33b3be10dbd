//! Message flags (RFC 9051 section 2.3.2) and special-use mailbox attributes (RFC 6154).

use std::fmt;

use super::core::Atom;

/// A message flag as a client names it in `STORE`, `APPEND` and `SEARCH KEYWORD`.
///
/// ```text
/// flag           = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword / flag-extension
/// flag-keyword   = "$MDNSent" / "$Forwarded" / "$Junk" / "$NotJunk" / "$Phishing" / atom
/// flag-extension = "\" atom
/// ```
/// System flags are matched without regard to case and printed in their RFC spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Answered,
    Flagged,
    Deleted,
    Seen,
    Draft,
    /// A keyword such as `$Forwarded` or `$Junk`, as sent.
    Keyword(Atom),
    /// `\` and an atom that is not a system flag, such as `\Recent` (an IMAP4rev1 flag a
    /// client cannot set) or a future extension. Holds the atom without the backslash.
    Extension(Atom),
}

impl Flag {
    /// A system flag from its name without the backslash, ignoring case; otherwise an
    /// extension flag.
    pub fn from_backslashed(atom: Atom) -> Self {
        match atom.as_str().to_ascii_lowercase().as_str() {
            "answered" => Self::Answered,
            "flagged" => Self::Flagged,
            "deleted" => Self::Deleted,
            "seen" => Self::Seen,
            "draft" => Self::Draft,
            _ => Self::Extension(atom),
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered => f.write_str("\\Answered"),
            Self::Flagged => f.write_str("\\Flagged"),
            Self::Deleted => f.write_str("\\Deleted"),
            Self::Seen => f.write_str("\\Seen"),
            Self::Draft => f.write_str("\\Draft"),
            Self::Keyword(atom) => f.write_str(atom.as_str()),
            Self::Extension(atom) => write!(f, "\\{atom}"),
        }
    }
}

/// A flag of a `PERMANENTFLAGS` response code: a flag, or `\*` (clients may create keywords).
///
/// ```text
/// flag-perm = flag / "\*"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FlagPerm {
    Flag(Flag),
    /// `\*`.
    Any,
}

impl fmt::Display for FlagPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => flag.fmt(f),
            Self::Any => f.write_str("\\*"),
        }
    }
}

/// A special-use attribute of `CREATE ... (USE (...))` (RFC 6154 section 6).
///
/// ```text
/// use-attr     = "\All" / "\Archive" / "\Drafts" / "\Flagged" / "\Junk" / "\Sent" / "\Trash" / use-attr-ext
/// use-attr-ext = "\" atom
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
    /// Another `\` atom, without the backslash; the server answers `NO [USEATTR]`.
    Other(Atom),
}

impl SpecialUse {
    /// From the name without the backslash, ignoring case.
    pub fn from_backslashed(atom: Atom) -> Self {
        match atom.as_str().to_ascii_lowercase().as_str() {
            "all" => Self::All,
            "archive" => Self::Archive,
            "drafts" => Self::Drafts,
            "flagged" => Self::Flagged,
            "junk" => Self::Junk,
            "sent" => Self::Sent,
            "trash" => Self::Trash,
            _ => Self::Other(atom),
        }
    }
}

impl fmt::Display for SpecialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("\\All"),
            Self::Archive => f.write_str("\\Archive"),
            Self::Drafts => f.write_str("\\Drafts"),
            Self::Flagged => f.write_str("\\Flagged"),
            Self::Junk => f.write_str("\\Junk"),
            Self::Sent => f.write_str("\\Sent"),
            Self::Trash => f.write_str("\\Trash"),
            Self::Other(atom) => write!(f, "\\{atom}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::new(s).expect("valid atom in tests")
    }

    #[test]
    fn system_flags_ignore_case() {
        assert_eq!(Flag::from_backslashed(atom("SEEN")), Flag::Seen);
        assert_eq!(Flag::from_backslashed(atom("draft")), Flag::Draft);
        assert_eq!(Flag::from_backslashed(atom("Recent")), Flag::Extension(atom("Recent")));
        assert_eq!(Flag::Seen.to_string(), "\\Seen");
        assert_eq!(Flag::Extension(atom("Recent")).to_string(), "\\Recent");
        assert_eq!(Flag::Keyword(atom("$Junk")).to_string(), "$Junk");
        assert_eq!(FlagPerm::Any.to_string(), "\\*");
        assert_eq!(FlagPerm::Flag(Flag::Deleted).to_string(), "\\Deleted");
    }

    #[test]
    fn special_use_attributes() {
        assert_eq!(SpecialUse::from_backslashed(atom("drafts")), SpecialUse::Drafts);
        assert_eq!(SpecialUse::from_backslashed(atom("Important")).to_string(), "\\Important");
        assert_eq!(SpecialUse::Junk.to_string(), "\\Junk");
    }
}
