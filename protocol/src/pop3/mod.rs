//! POP3 server side, sans IO: RFC 1939 with CAPA and RESP-CODES (RFC 2449), STLS (RFC
//! 2595), AUTH (RFC 5034, through [`crate::sasl`]), the AUTH response code (RFC 3206) and
//! UTF8 (RFC 6856).
//!
//! ```text
//!  bytes ─► Session::input ─► lines (limit) ─► parse_command ─► Command
//!                                 │                              │ state checks, numbering,
//!                                 │                              │ deletion marks
//!  Session::take_output ◄── Reply / encode_lines / encode_message ◄┘
//!  Session::poll ─► Event (Login, Auth, StartTls, Retrieve, Quit) ─► the server's answer
//! ```
//!
//! - [`command`]: [`parse_command`], one line to a [`Command`] or a [`ParseError`] whose text
//!   is the `-ERR`.
//! - [`reply`]: [`Reply`] (`+OK`/`-ERR [CODE] text`), [`encode_message`] (CRLF line endings,
//!   dot-stuffing, `TOP`), [`crlf_size`] (the size `LIST` and `STAT` report).
//! - [`session`]: [`Session`], the state machine of one conversation (AUTHORIZATION,
//!   TRANSACTION, and the UPDATE state as [`Event::Quit`]). The server answers its events
//!   from the store and the authentication service.
//!
//! Not here: where the maildrop comes from, how unique ids are made, locking, the login
//! delay's bookkeeping (the server's, `postlog_server::pop3`). `APOP` is refused by name.

pub mod command;
pub mod reply;
pub mod session;

pub use command::{Command, MessageNumber, ParseError, parse_command};
pub use reply::{Reply, ResponseCode, crlf_size, encode_lines, encode_message};
pub use session::{Event, Maildrop, MaildropMessage, Session, SessionConfig};

#[cfg(test)]
mod tests;
