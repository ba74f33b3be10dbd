//! postlog-protocol: Postlog's protocol codecs and session state machines, sans IO.
//!
//! Everything here is a pure function of its input: decoders take bytes the server read,
//! state machines take decoded client messages and answers to their questions (a password
//! check, a credential lookup), and say what to send or ask next. So every conversation can
//! be tested, replayed and fuzzed without a socket.
//!
//! ```text
//!  server (sockets, TLS, account store)          this crate
//!  bytes from the client ───────────────────────► decoder ──► session state machine
//!  bytes to the client   ◄─────────────────────── encoder ◄──┤
//!  store lookups, checks ◄───── questions (Step) ────────────┘
//!                        ─────── answers ──────────────────► session state machine
//! ```
//! - [`sasl`]: SASL server side (PLAIN, LOGIN, SCRAM-SHA-256), shared by SMTP `AUTH`,
//!   IMAP `AUTHENTICATE` and POP3 `AUTH`.
//! - [`smtp`]: SMTP, submission and LMTP server sessions; the SMTP client session for
//!   outbound mail and the delivery status notifications it leads to.
//! - [`imap`]: the IMAP4rev2/IMAP4rev1 command codec: framing with literal limits, parser,
//!   response encoding.
//! - [`pop3`]: the POP3 codec and server session (RFC 1939 with CAPA, STLS, AUTH, UTF8).
//! - [`secret`]: [`Secret`](secret::Secret), for credentials that must not reach a log.
//!
//! Deliberately not here: sockets, TLS, timers, async runtimes, randomness (callers pass
//! nonces and random bytes in), the mailbox store (`postlog-engine`), and any policy about
//! accounts or passwords. Peer input never panics: it ends up in a typed error.

pub mod imap;
pub mod pop3;
pub mod sasl;
pub mod secret;
pub mod smtp;
