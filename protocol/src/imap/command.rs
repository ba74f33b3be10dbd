//! The command AST: one [`Command`] per tagged client command, every command of RFC 9051
//! and RFC 3501 and of the extensions Postlog offers, with its arguments as types.

use std::num::{NonZeroU32, NonZeroU64};

use super::core::{AString, Atom, IString, Literal, NString, Tag};
use super::datetime::DateTime;
use super::fetch::{FetchItems, FetchModifiers};
use super::flag::{Flag, SpecialUse};
use super::mailbox::{ListMailbox, Mailbox};
use super::search::{Charset, SearchKey, SearchReturn, SortCriterion, ThreadAlgorithm};
use super::sequence::SequenceSet;
use crate::secret::Secret;

/// A tagged command.
///
/// ```text
/// command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
/// ```
/// No `PartialEq`: LOGIN and AUTHENTICATE carry [`Secret`]s.
#[derive(Clone, Debug)]
pub struct Command {
    pub tag: Tag,
    pub body: CommandBody,
}

/// A command and its arguments. Whether it is allowed in the session's state (not
/// authenticated, authenticated, selected) is the session's business, not the parser's.
#[derive(Clone, Debug)]
pub enum CommandBody {
    // Any state.
    Capability,
    Noop,
    Logout,
    /// `ID` (RFC 2971): `None` for `ID NIL`, else the field/value pairs as sent.
    Id {
        parameters: Option<Vec<(IString, NString)>>,
    },
    // Not authenticated.
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (SASL-IR, RFC 4959).
    Authenticate {
        mechanism: Atom,
        /// The decoded initial response: `=` is an empty one; `None` when absent.
        initial_response: Option<Secret<Vec<u8>>>,
    },
    Login {
        username: AString,
        password: Secret<AString>,
    },
    // Authenticated.
    /// `ENABLE cap...` (RFC 5161): the capability names, never empty.
    Enable {
        capabilities: Vec<Atom>,
    },
    Select {
        mailbox: Mailbox,
        params: SelectParams,
    },
    Examine {
        mailbox: Mailbox,
        params: SelectParams,
    },
    /// `CREATE name [(USE (\Drafts ...))]` (CREATE-SPECIAL-USE, RFC 6154).
    Create {
        mailbox: Mailbox,
        /// `None` without `USE`; `Some(vec![])` for `(USE ())`.
        special_use: Option<Vec<SpecialUse>>,
    },
    Delete {
        mailbox: Mailbox,
    },
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe {
        mailbox: Mailbox,
    },
    Unsubscribe {
        mailbox: Mailbox,
    },
    List(List),
    /// `LSUB reference pattern` (IMAP4rev1).
    Lsub {
        reference: Mailbox,
        pattern: ListMailbox,
    },
    /// `NAMESPACE` (RFC 2342).
    Namespace,
    Status {
        mailbox: Mailbox,
        /// Never empty.
        items: Vec<StatusItem>,
    },
    /// `APPEND`, with MULTIAPPEND (RFC 3502): one or more messages.
    Append {
        mailbox: Mailbox,
        /// Never empty.
        messages: Vec<AppendMessage>,
    },
    /// `IDLE` (RFC 2177): the server answers `+ idling`, then switches the framer to
    /// [`CommandFramer::expect_done`](super::frame::CommandFramer::expect_done).
    Idle,
    /// `COMPRESS DEFLATE` (RFC 4978).
    Compress {
        algorithm: CompressAlgorithm,
    },
    /// `GETQUOTA root` (RFC 9208).
    GetQuota {
        root: AString,
    },
    /// `GETQUOTAROOT mailbox` (RFC 9208).
    GetQuotaRoot {
        mailbox: Mailbox,
    },
    /// `SETQUOTA root (resource limit ...)` (RFC 9208).
    SetQuota {
        root: AString,
        limits: Vec<(QuotaResource, u64)>,
    },
    // Selected.
    /// `CHECK` (IMAP4rev1).
    Check,
    Close,
    /// `UNSELECT` (RFC 3691).
    Unselect,
    Expunge,
    /// `UID EXPUNGE uids` (UIDPLUS, RFC 4315).
    UidExpunge {
        uids: SequenceSet,
    },
    /// `[UID] SEARCH [RETURN (...)] [CHARSET x] key...`.
    Search {
        uid: bool,
        /// `None` without `RETURN`; `Some(vec![])` for `RETURN ()`, which means `ALL`.
        return_options: Option<Vec<SearchReturn>>,
        charset: Option<Charset>,
        /// All must match; never empty.
        criteria: Vec<SearchKey>,
    },
    /// `[UID] SORT [RETURN (...)] (criteria) charset key...` (RFC 5256, ESORT RFC 5267).
    Sort {
        uid: bool,
        return_options: Option<Vec<SearchReturn>>,
        /// Never empty.
        sort: Vec<SortCriterion>,
        charset: Charset,
        criteria: Vec<SearchKey>,
    },
    /// `[UID] THREAD algorithm charset key...` (RFC 5256).
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: Charset,
        criteria: Vec<SearchKey>,
    },
    Fetch {
        uid: bool,
        sequence_set: SequenceSet,
        items: FetchItems,
        modifiers: FetchModifiers,
    },
    Store {
        uid: bool,
        sequence_set: SequenceSet,
        /// `UNCHANGEDSINCE n` (CONDSTORE); `0` is allowed and fails for every message.
        unchanged_since: Option<u64>,
        action: StoreAction,
        /// `.SILENT`: no untagged FETCH for the new flags.
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        sequence_set: SequenceSet,
        mailbox: Mailbox,
    },
    /// `MOVE` (RFC 6851).
    Move {
        uid: bool,
        sequence_set: SequenceSet,
        mailbox: Mailbox,
    },
}

impl CommandBody {
    /// The command name as a client writes it (`UID FETCH`, not `FETCH`), for logs.
    pub fn name(&self) -> &'static str {
        let pick = |uid: bool, with: &'static str, without: &'static str| if uid { with } else { without };
        match self {
            Self::Capability => "CAPABILITY",
            Self::Noop => "NOOP",
            Self::Logout => "LOGOUT",
            Self::Id { .. } => "ID",
            Self::StartTls => "STARTTLS",
            Self::Authenticate { .. } => "AUTHENTICATE",
            Self::Login { .. } => "LOGIN",
            Self::Enable { .. } => "ENABLE",
            Self::Select { .. } => "SELECT",
            Self::Examine { .. } => "EXAMINE",
            Self::Create { .. } => "CREATE",
            Self::Delete { .. } => "DELETE",
            Self::Rename { .. } => "RENAME",
            Self::Subscribe { .. } => "SUBSCRIBE",
            Self::Unsubscribe { .. } => "UNSUBSCRIBE",
            Self::List(_) => "LIST",
            Self::Lsub { .. } => "LSUB",
            Self::Namespace => "NAMESPACE",
            Self::Status { .. } => "STATUS",
            Self::Append { .. } => "APPEND",
            Self::Idle => "IDLE",
            Self::Compress { .. } => "COMPRESS",
            Self::GetQuota { .. } => "GETQUOTA",
            Self::GetQuotaRoot { .. } => "GETQUOTAROOT",
            Self::SetQuota { .. } => "SETQUOTA",
            Self::Check => "CHECK",
            Self::Close => "CLOSE",
            Self::Unselect => "UNSELECT",
            Self::Expunge => "EXPUNGE",
            Self::UidExpunge { .. } => "UID EXPUNGE",
            Self::Search { uid, .. } => pick(*uid, "UID SEARCH", "SEARCH"),
            Self::Sort { uid, .. } => pick(*uid, "UID SORT", "SORT"),
            Self::Thread { uid, .. } => pick(*uid, "UID THREAD", "THREAD"),
            Self::Fetch { uid, .. } => pick(*uid, "UID FETCH", "FETCH"),
            Self::Store { uid, .. } => pick(*uid, "UID STORE", "STORE"),
            Self::Copy { uid, .. } => pick(*uid, "UID COPY", "COPY"),
            Self::Move { uid, .. } => pick(*uid, "UID MOVE", "MOVE"),
        }
    }
}

/// Parameters of `SELECT`/`EXAMINE` (RFC 4466 section 2.1).
///
/// ```text
/// select-params = SP "(" select-param *(SP select-param) ")"
/// select-param  = "CONDSTORE" / "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectParams {
    /// `CONDSTORE` (RFC 7162 section 3.1.8).
    pub condstore: bool,
    /// `QRESYNC (...)` (RFC 7162 section 3.2.5).
    pub qresync: Option<QResync>,
}

/// What a client knew of a mailbox, for a quick resynchronisation (RFC 7162 section 3.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QResync {
    pub uidvalidity: NonZeroU32,
    /// The highest mod-sequence the client saw.
    pub modseq: NonZeroU64,
    /// The UIDs the client knows (no `*`, no `$`).
    pub known_uids: Option<SequenceSet>,
    /// `(known-sequence-set known-uid-set)`: message numbers and the UIDs the client has for
    /// them, so the server can tell which of them vanished.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// `LIST`, basic (RFC 9051 section 6.3.9) or extended (RFC 5258, LIST-STATUS RFC 5819,
/// SPECIAL-USE RFC 6154).
///
/// ```text
/// list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    /// `None` without selection options; `Some(default)` for `()`.
    pub selection: Option<ListSelection>,
    pub reference: Mailbox,
    /// One pattern, or several in parentheses; never empty.
    pub patterns: Vec<ListMailbox>,
    /// `None` without `RETURN`.
    pub return_options: Option<Vec<ListReturn>>,
}

impl List {
    /// Whether the client used the LIST-EXTENDED syntax (selection options, several
    /// patterns or return options), which changes what the server sends (RFC 5258 section 3).
    pub fn is_extended(&self) -> bool {
        self.selection.is_some() || self.patterns.len() > 1 || self.return_options.is_some()
    }
}

/// Selection options of LIST-EXTENDED.
///
/// ```text
/// list-select-opt = "SUBSCRIBED" / "REMOTE" / "RECURSIVEMATCH" / "SPECIAL-USE"
/// ```
/// Invariant: `recursive_match` only with `subscribed` or `special_use` (RFC 5258: it needs
/// a base option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListSelection {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    /// RFC 6154: only mailboxes with a special use.
    pub special_use: bool,
}

/// Return options of LIST-EXTENDED.
///
/// ```text
/// return-option = "SUBSCRIBED" / "CHILDREN" / "SPECIAL-USE" / "STATUS" SP "(" status-att *(SP status-att) ")"
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    /// LIST-STATUS (RFC 5819): a STATUS response for each listed mailbox.
    Status(Vec<StatusItem>),
}

/// A `STATUS` data item.
///
/// ```text
/// status-att = "MESSAGES" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" / "DELETED" / "SIZE" / "RECENT" /
///              "HIGHESTMODSEQ" / "APPENDLIMIT" / "MAILBOXID" / "DELETED-STORAGE"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    /// Messages with `\Deleted` (RFC 9051).
    Deleted,
    /// Total size in octets (RFC 9051, STATUS=SIZE RFC 8438).
    Size,
    /// IMAP4rev1 only.
    Recent,
    /// RFC 7162.
    HighestModSeq,
    /// RFC 7889.
    AppendLimit,
    /// RFC 8474.
    MailboxId,
    /// RFC 9208.
    DeletedStorage,
}

impl StatusItem {
    /// The name as written in commands and responses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Messages => "MESSAGES",
            Self::UidNext => "UIDNEXT",
            Self::UidValidity => "UIDVALIDITY",
            Self::Unseen => "UNSEEN",
            Self::Deleted => "DELETED",
            Self::Size => "SIZE",
            Self::Recent => "RECENT",
            Self::HighestModSeq => "HIGHESTMODSEQ",
            Self::AppendLimit => "APPENDLIMIT",
            Self::MailboxId => "MAILBOXID",
            Self::DeletedStorage => "DELETED-STORAGE",
        }
    }

    pub(crate) const ALL: [Self; 11] = [
        Self::Messages,
        Self::UidNext,
        Self::UidValidity,
        Self::Unseen,
        Self::Deleted,
        Self::Size,
        Self::Recent,
        Self::HighestModSeq,
        Self::AppendLimit,
        Self::MailboxId,
        Self::DeletedStorage,
    ];
}

/// One message of `APPEND`.
///
/// ```text
/// append-message = append-opts SP append-data
/// append-opts    = [SP flag-list] [SP date-time]
/// append-data    = literal / literal8 / "UTF8" SP "(" literal8 ")"
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    /// The internal date to give the message; `None`: now.
    pub date: Option<DateTime>,
    /// The message; a `literal8` ([`Literal::is_binary`]) may hold NUL and unencoded binary
    /// parts (RFC 3516).
    pub message: Literal,
    /// Sent as `UTF8 (~{n}...)` (RFC 6855 section 4): the message has UTF-8 headers.
    pub utf8: bool,
}

/// How `STORE` changes the flags.
///
/// ```text
/// store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAction {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
}

/// A quota resource (RFC 9208 section 5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuotaResource {
    /// In units of 1024 octets.
    Storage,
    Message,
    Mailbox,
    AnnotationStorage,
    Other(Atom),
}

/// `COMPRESS` algorithms (RFC 4978): only `DEFLATE` is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressAlgorithm {
    Deflate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::core::AString;
    use crate::imap::mailbox::ListMailbox;

    #[test]
    fn names_say_uid() {
        let set = SequenceSet::Saved;
        let fetch = |uid| CommandBody::Fetch {
            uid,
            sequence_set: set.clone(),
            items: FetchItems::Fast,
            modifiers: FetchModifiers::default(),
        };
        assert_eq!(fetch(true).name(), "UID FETCH");
        assert_eq!(fetch(false).name(), "FETCH");
        assert_eq!(CommandBody::UidExpunge { uids: set }.name(), "UID EXPUNGE");
    }

    #[test]
    fn extended_list_is_recognised() {
        let pattern = ListMailbox::Token("%".into());
        let mut list = List {
            selection: None,
            reference: Mailbox::Other(AString::from_bytes(b"")),
            patterns: vec![pattern.clone()],
            return_options: None,
        };
        assert!(!list.is_extended());
        list.patterns.push(pattern);
        assert!(list.is_extended());
        list.patterns.pop();
        list.return_options = Some(vec![]);
        assert!(list.is_extended());
    }

    #[test]
    fn status_item_names_are_distinct() {
        let names: std::collections::HashSet<_> = StatusItem::ALL.iter().map(|i| i.name()).collect();
        assert_eq!(names.len(), StatusItem::ALL.len());
    }
}
