//! postlog-engine: Postlog's log-structured mailbox store.
//!
//! It stores accounts, mailboxes, messages (bodies once per content, with their parsed
//! metadata), flags, UIDs and MODSEQs, and answers queries about them. It knows nothing of
//! SMTP, IMAP or any network: protocol front ends call [`Store`].
//!
//! ```text
//!  Store (store.rs) ── plan ──► committer ── records ──► log.rs ──► Backend (backend.rs)
//!     │                              │ apply after fdatasync           segment files
//!     └── reads ◄── State (state.rs) ◄┘                               index.snap (snapshot.rs)
//! ```
//! - `format.rs`: bytes of segment headers and record frames; `record.rs`: what records mean.
//! - `recovery.rs`: snapshot + replay, torn-tail cut, typed corruption errors.
//! - `compaction.rs`: online reclamation of expunged messages' space.
//! - `dict.rs`: per-store zstd dictionaries, trained from the store's first messages.
//! - `meta.rs`: metadata parsed once at append (envelope, body structure, cached headers).
//! - `thread.rs`: which thread a message joins (message-id hashes linked per account), decided
//!   once when the append is planned and written in its record.
//!
//! Deliberately not here: quotas policy (the store reports usage; callers decide), message
//! parsing beyond what is cached, network IO, authentication.

pub mod backend;
mod background;
mod cache;
mod codec;
pub mod compaction;
pub mod dict;
pub mod error;
pub mod format;
pub mod log;
pub mod meta;
pub mod read;
pub mod record;
pub mod recovery;
pub mod salvage;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod thread;

pub use codec::Truncated;
pub use error::{CommitError, OpenError, ReadError};
pub use record::FlagOp;
pub use state::{AccountId, MailboxId, MessageEntry, Uid, flag, special_use};
pub use store::{
    AppendTarget, Appended, Changes, Compression, CopyOutcome, MailboxInfo, Options, PreparedMessage, SideWrites,
    Store, StoreOutcome, Usage,
};
pub use thread::ThreadId;
