//! The IMAP front end's server-side pieces.
//!
//! - [`session`]: the driver of one connection (commands, IDLE, STARTTLS, AUTHENTICATE).
//! - [`list`]: which names LIST and LSUB show, with which attributes (LIST-EXTENDED,
//!   RECURSIVEMATCH, SPECIAL-USE), as a pure function.
//! - [`view`]: a selected mailbox as one session sees it (sequence numbers, updates).
//! - [`render`]: the FETCH data items built from a message's stored metadata and bytes
//!   (`ENVELOPE`, `BODY`/`BODYSTRUCTURE`, `BODY[section]<partial>`, `BINARY[part]` and
//!   `BINARY.SIZE`), as pure functions.
//!
//! Commands are parsed by the protocol crate (`postlog_protocol::imap`).

pub mod list;
pub mod render;
pub mod session;
pub mod sort;
pub mod view;
