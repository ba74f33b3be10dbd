//! Errors, typed per operation. `Display` says what happened in a sentence an operator can act on.

use std::io;

/// Opening (and recovering) a store failed.
#[derive(Debug)]
pub enum OpenError {
    /// Another process holds the data directory.
    Locked {
        dir: String,
    },
    Io {
        what: String,
        source: io::Error,
    },
    /// The log is damaged somewhere other than a torn final batch. `postlog check` and
    /// `postlog repair` say more; nothing has been changed on disk.
    Corrupt {
        segment: u64,
        offset: u64,
        reason: String,
    },
    /// A segment was written in another version of the store format (its header is intact).
    /// Nothing has been changed on disk.
    UnsupportedFormat {
        segment: u64,
        version: u32,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked { dir } => {
                write!(f, "the store in {dir} is already in use by another process (its LOCK file is held)")
            }
            OpenError::Io { what, source } => write!(f, "could not {what}: {source}"),
            OpenError::Corrupt { segment, offset, reason } => write!(
                f,
                "the log is corrupt in segment {segment} at offset {offset}: {reason}; run `postlog check` and `postlog repair`"
            ),
            OpenError::UnsupportedFormat { segment, version } => write!(
                f,
                "segment {segment} is in store format version {version}, and this Postlog reads versions {} to {} \
                 only; export the mail with the Postlog that wrote it (`postlog export`) and import it here",
                crate::format::MIN_READ_VERSION,
                crate::format::FORMAT_VERSION
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A write (append, flag change, expunge, mailbox change...) was not committed. Nothing of it
/// is visible or on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    NoSuchAccount(String),
    AccountExists(String),
    NoSuchMailbox(String),
    MailboxExists(String),
    /// The name is not a valid mailbox name (empty component, too long, control characters...).
    BadMailboxName(String),
    /// Operation not allowed on this mailbox (deleting or renaming INBOX, renaming into itself).
    NotAllowed(String),
    TooManyKeywords,
    /// A UID given does not exist (for operations that require all of them).
    NoSuchMessage(u32),
    /// UIDs of the mailbox are exhausted; a new UIDVALIDITY is needed.
    UidsExhausted,
    /// The disk is full; nothing was written, earlier data is intact. Retry later.
    DiskFull,
    /// The write failed cleanly for another IO reason; nothing was written.
    Io(String),
    /// An earlier sync failed, so the store no longer accepts writes until it is restarted
    /// (and recovers from the log).
    Stopped(String),
    /// A conditional write found a value other than the one expected.
    Conflict(String),
    /// The store is shutting down.
    Closed,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::NoSuchAccount(a) => write!(f, "no such account: {a}"),
            CommitError::AccountExists(a) => write!(f, "account already exists: {a}"),
            CommitError::NoSuchMailbox(m) => write!(f, "no such mailbox: {m}"),
            CommitError::MailboxExists(m) => write!(f, "mailbox already exists: {m}"),
            CommitError::BadMailboxName(m) => write!(f, "invalid mailbox name: {m}"),
            CommitError::NotAllowed(m) => write!(f, "not allowed: {m}"),
            CommitError::TooManyKeywords => write!(f, "too many keywords in this mailbox"),
            CommitError::NoSuchMessage(uid) => write!(f, "no message with UID {uid}"),
            CommitError::UidsExhausted => write!(f, "the mailbox has used up its UIDs"),
            CommitError::DiskFull => write!(f, "the disk is full; nothing was written"),
            CommitError::Io(e) => write!(f, "write failed, nothing was written: {e}"),
            CommitError::Stopped(e) => {
                write!(f, "the store stopped accepting writes after a failed sync ({e}); restart it")
            }
            CommitError::Conflict(k) => write!(f, "{k} was changed concurrently; nothing was written"),
            CommitError::Closed => write!(f, "the store is closing"),
        }
    }
}

impl std::error::Error for CommitError {}

/// Reading a message or its metadata failed.
#[derive(Debug)]
pub enum ReadError {
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage(u32),
    /// The stored bytes fail their checksum or do not decode.
    Corrupt {
        segment: u64,
        offset: u64,
        reason: String,
    },
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NoSuchAccount => f.write_str("no such account"),
            ReadError::NoSuchMailbox => f.write_str("no such mailbox"),
            ReadError::NoSuchMessage(uid) => write!(f, "no message with UID {uid}"),
            ReadError::Corrupt { segment, offset, reason } => {
                write!(f, "stored data is corrupt in segment {segment} at offset {offset}: {reason}")
            }
            ReadError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}
