//! IMAP server side, sans IO: the command codec (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1).
//!
//! The grammar is written down as types ("grammar as types", after imap-codec): every
//! command and argument the client can send is a Rust type whose doc comment carries its ABNF,
//! and the parser produces nothing else. The session (commands allowed per state, mailbox
//! selection, untagged updates) is the server's: `postlog_server::imap::session`.
//!
//! ```text
//!  bytes ─► CommandFramer ─► Frame::Command(bytes) ─► parse_command ─► Command { tag, body }
//!           (lines, literals,  Frame::Continue ──────► "+ Ready for literal data"
//!            limits)           Frame::Rejected/Close ► FrameError::status / bye
//!                              Frame::Done / AuthenticateLine (after expect_done / expect_authenticate_line)
//!  responses ◄── encode: strings (atom/quoted/literal/literal8), lists, Status, continuations
//! ```
//!
//! - [`frame`]: [`CommandFramer`] splits the byte stream into whole commands. It knows
//!   literals (`{n}`, `{n+}`, `~{n}`) and nothing else of the grammar, and enforces the
//!   [`Limits`]: line length, literal size, command size, tighter before authentication. A
//!   literal over the limit is refused when announced, before any of its octets are read.
//! - [`parse`]: [`parse_command`] turns one framed command into a [`Command`], or a
//!   [`ParseError`] with the tag (if readable) and a precise message for the `BAD` response.
//!   Search-key nesting is bounded ([`Limits::max_depth`]); no input panics it.
//! - [`command`], [`fetch`], [`search`]: the command AST. [`core`]: tags, atoms, strings,
//!   literals. [`mailbox`]: mailbox names and modified UTF-7. [`sequence`]: sequence sets and
//!   `$`. [`flag`]: flags and special-use attributes. [`datetime`]: `date` and `date-time`.
//! - [`encode`]: what every response needs: strings in the right form, `NIL`, lists,
//!   `Status` lines with response codes, continuation requests.
//!
//! # What the server must do around the codec
//!
//! - **Continuations.** On [`Frame::Continue`], send `+ Ready for literal data` at once (the
//!   client waits for it). On `IDLE`, send `+ idling` and call
//!   [`CommandFramer::expect_done`]; on each SASL challenge of `AUTHENTICATE`, send
//!   `+ <base64>` ([`encode::encode_challenge`]) and call
//!   [`CommandFramer::expect_authenticate_line`]. Each mode covers the next line only.
//! - **Limits.** Call [`CommandFramer::set_authenticated`] after a successful login; pass
//!   [`CommandFramer::limits`]`().max_depth` to [`parse_command_with`].
//! - **Errors.** [`Frame::Rejected`]: answer [`FrameError::status`] and go on.
//!   [`Frame::Close`]: send [`FrameError::bye`] and close (non-synchronizing literal octets
//!   the server refused are on the wire). [`ParseError::status`]: `tag BAD ...` or `* BAD ...`.
//! - **Mailbox names.** [`Mailbox::decode`] with `utf8` true once the client enabled
//!   `UTF8=ACCEPT` or `IMAP4rev2` (names are then UTF-8), false before (modified UTF-7);
//!   [`encode::encode_mailbox`] the other way.
//! - **State.** Which commands are allowed in which state, and which extensions the
//!   client enabled (`VANISHED` needs QRESYNC enabled, `RECENT` is rev1 only), is the session's
//!   check: the parser accepts every command form it knows.
//!
//! Extensions parsed: LITERAL+/LITERAL- (RFC 7888), SASL-IR (RFC 4959), ENABLE (RFC 5161),
//! ID (RFC 2971), IDLE (RFC 2177), NAMESPACE (RFC 2342), UNSELECT (RFC 3691), UIDPLUS (RFC
//! 4315), MOVE (RFC 6851), CONDSTORE/QRESYNC (RFC 7162), ESEARCH (RFC 4731), SEARCHRES (RFC
//! 5182), WITHIN (RFC 5032), SORT/THREAD (RFC 5256), ESORT (RFC 5267), SORT=DISPLAY (RFC
//! 5957), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and
//! CREATE-SPECIAL-USE (RFC 6154), MULTIAPPEND (RFC 3502), BINARY (RFC 3516), STATUS=SIZE (RFC
//! 8438), QUOTA (RFC 9208), APPENDLIMIT (RFC 7889), OBJECTID (RFC 8474), SAVEDATE (RFC
//! 8514), UTF8=ACCEPT (RFC 6855), COMPRESS=DEFLATE (RFC 4978).

pub mod command;
pub mod core;
pub mod datetime;
pub mod encode;
pub mod fetch;
pub mod flag;
pub mod frame;
pub mod mailbox;
pub mod parse;
pub mod search;
pub mod sequence;

pub use command::{
    AppendMessage, Command, CommandBody, CompressAlgorithm, List, ListReturn, ListSelection, QResync, QuotaResource,
    SelectParams, StatusItem, StoreAction,
};
pub use core::{AString, Atom, IString, Literal, LiteralMode, NString, Quoted, Tag};
pub use datetime::{Date, DateTime};
pub use encode::{Code, Status, StatusKind};
pub use fetch::{FetchAttribute, FetchItems, FetchModifiers, Partial, Section, SectionText};
pub use flag::{Flag, FlagPerm, SpecialUse};
pub use frame::{CommandFramer, Frame, FrameError, FramerConfig, Limits};
pub use mailbox::{ListMailbox, Mailbox, MailboxNameError};
pub use parse::{ParseError, ParseErrorKind, parse_command, parse_command_with};
pub use search::{
    Charset, EntryType, ModSeqEntry, ObjectId, SearchKey, SearchReturn, SortCriterion, SortKey, ThreadAlgorithm,
};
pub use sequence::{SeqNumber, Sequence, SequenceSet};

#[cfg(test)]
mod tests;
