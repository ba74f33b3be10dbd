//! SMTP, submission and LMTP, sans IO (RFC 5321, RFC 6409, RFC 2033): the server side, and
//! the client side that delivers outbound mail to other servers.
//!
//! - [`command`]: one command line to a [`Command`] (paths, ESMTP parameters), or the reply
//!   explaining what is wrong with it.
//! - [`data`]: the content after `DATA` or in `BDAT` chunks: dot-unstuffing, the `CRLF.CRLF`
//!   end, the size limit and the bare-newline policy against SMTP smuggling.
//! - [`session`]: the conversation's state machine: it frames lines, checks the order of
//!   commands, queues replies, and asks the server (through [`Event`]s) about senders,
//!   recipients, authentication, TLS and delivery.
//! - [`reply`]: replies with enhanced status codes (RFC 3463).
//! - [`client`]: the client's conversation for outbound mail: reply parsing, EHLO
//!   capabilities, STARTTLS, AUTH to a relay, pipelined MAIL/RCPT/DATA or BDAT, dot-stuffing,
//!   one result per recipient.
//! - [`dsn`]: delivery status notifications (bounces, delay and success reports) and the
//!   rules for when one is due.
//!
//! Extensions: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, BINARYMIME, STARTTLS, AUTH,
//! ENHANCEDSTATUSCODES, DSN (parameters parsed and handed over with the envelope).

pub mod client;
pub mod command;
pub mod data;
pub mod dsn;
pub mod reply;
pub mod session;

pub use command::{BodyType, Command, ForwardPath, MailParams, Mailbox, Notify, RcptParams, Ret, parse_command};
pub use data::{ContentDecoder, Framing, Newlines};
pub use reply::Reply;
pub use session::{Event, Mode, Recipient, Session, SessionConfig, Transaction};

#[cfg(test)]
mod tests;
