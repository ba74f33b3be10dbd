//! [`ClientSession`]: the client side of one SMTP connection, delivering messages to another
//! server (RFC 5321), sans IO.
//!
//! ```text
//!  driver (socket, TLS, timers, queue)             ClientSession
//!  bytes read ────────── handle_input(bytes) ────► ReplyParser ─► replies matched in order
//!  EOF / timeout ─────── handle_eof / handle_timeout          to the commands sent
//!  write ◄────────────── poll_transmit(&mut buf) ◄─ commands; content (dot-stuffed or BDAT)
//!  act on ◄───────────── poll_event() ◄─────────── Ready | StartTls | MessageDone | Closed
//!  send_message(msg) / quit() / handle_tls_established() ──► next commands
//! ```
//! The driver loops: write everything [`poll_transmit`](ClientSession::poll_transmit) gives,
//! handle every [`poll_event`](ClientSession::poll_event) in order (answering `Ready` and
//! `StartTls` before it reads again), and when both are empty read (with the timeout
//! [`phase`](ClientSession::phase) calls for) and pass the bytes in. A `Ready` or `StartTls`
//! still queued when the session ends is withdrawn, so `Closed` is never preceded by a
//! question that can no longer be answered.
//!
//! # The conversation
//!
//! ```text
//!  Greeting ─220─► EHLO ─250─► [STARTTLS ─220─► (TLS) ─► EHLO again] ─► [AUTH] ─► Ready
//!                   └─4xx/5xx─► HELO ─250─┘ (no extensions)
//!  Ready ─send_message─► [RSET] MAIL ─► RCPT × n ─► DATA ─354─► content . ─► MessageDone ─► Ready
//!                                                 └─ BDAT chunks ──────────┘
//!  Ready ─quit─► QUIT ─► Closed(Ok)
//! ```
//! - **Greeting**: anything but 2xx ends the session (after a polite QUIT).
//! - **EHLO**: a 4xx or 5xx other than 421 falls back to HELO, as Postfix does; the session
//!   then has no extensions.
//! - **STARTTLS** ([`TlsPolicy`]): when wanted and offered, the session sends STARTTLS and on
//!   `220` emits [`ClientEvent::StartTls`]; the driver does the handshake and calls
//!   [`handle_tls_established`](ClientSession::handle_tls_established), which forgets the
//!   capabilities and sends EHLO again. Bytes the server sent after its `220`, before the
//!   handshake, end the session (they would be read as if TLS had protected them: the
//!   STARTTLS response injection attack). `Required` and not offered, or refused: the session
//!   ends. `Opportunistic` and refused: the session goes on in plain text.
//! - **AUTH** ([`Credentials`], for a relay host): PLAIN with an initial response if offered,
//!   else LOGIN; never over plain text unless the configuration allows it. A refusal ends the
//!   session.
//! - **Per message** ([`send_message`](ClientSession::send_message)): first the checks that
//!   need no round trip (see [`Unsendable`]): SMTPUTF8 needed and not offered, BINARYMIME
//!   without CHUNKING and BINARYMIME, 8-bit content without 8BITMIME (the driver may downgrade
//!   and send again, or bounce with 5.6.3), over the advertised SIZE. Then `MAIL FROM` with
//!   the parameters the server offers (`SIZE=`, `BODY=`, `SMTPUTF8`, DSN's `RET=`/`ENVID=`,
//!   `AUTH=<>` after AUTH), `RCPT TO` per recipient (`NOTIFY=`/`ORCPT=` with DSN), then the
//!   content.
//! - **PIPELINING** (RFC 2920): `[RSET] MAIL RCPT… DATA` go as one group and the replies are
//!   matched in order; without it, one command at a time. With BDAT the group is `MAIL RCPT…`
//!   and the chunks follow once a recipient was accepted (the same number of round trips as
//!   `DATA`, and no content is sent for nothing).
//! - **No recipient accepted**: without pipelining no DATA is sent. With pipelining DATA was
//!   sent; if the server still answers `354`, a lone `.` ends the empty transaction and its
//!   reply is ignored (RFC 2920 section 3.1; Postfix does the same).
//! - **Content**: after `354`, dot-stuffed with CRLF line ends ([`DotStuffer`]), produced in
//!   pieces as the driver writes, so the message is copied once (into the write buffer). With
//!   BDAT ([`BdatPolicy`]: only for BINARYMIME, or whenever CHUNKING is offered) the octets go
//!   as they are in chunks of [`ClientConfig::bdat_chunk_bytes`]; without PIPELINING each
//!   chunk waits for its reply (RFC 3030).
//! - **Between messages**: after a transaction that did not end with the reply to its content
//!   (MAIL refused, no recipient, DATA refused, a BDAT chunk refused), `RSET` goes first in
//!   the next message's group.
//!
//! # Results
//!
//! [`ClientEvent::MessageDone`] gives one [`Outcome`] per recipient, in order: delivered,
//! deferred (4xx) or failed (5xx) with the server's reply and the command it answered ([`Answer`]), or
//! [`Outcome::Unanswered`] when the session ended before a final answer. A 4xx/5xx to MAIL or
//! DATA, or to the content, applies to all recipients still waiting for one. The session ends
//! ([`ClientEvent::Closed`] with a [`SessionError`]) on a refused greeting, EHLO/HELO, STARTTLS
//! (when required) or AUTH, on a 421 at any time, on EOF, on a timeout and on a malformed or
//! unexpected reply; a message in flight then gets its `MessageDone` first, with `Unanswered`
//! for the recipients to retry.
//!
//! # Timeouts
//!
//! The driver keeps the clock. [`ClientSession::phase`] says what the session waits for;
//! [`Phase::rfc5321_timeout`] gives the timeouts of RFC 5321 section 4.5.3.2 for it, and the
//! driver calls [`handle_timeout`](ClientSession::handle_timeout) when one expires.

mod ehlo;
mod parse;
mod stuff;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

pub use ehlo::Capabilities;
pub use parse::{MAX_REPLY_LINE_BYTES, MAX_REPLY_LINES, ReplyError, ReplyParser};
pub use stuff::DotStuffer;

use super::command::{
    BodyType, ForwardPath, MailParams, Mailbox, Notify, Ret, decode_utf8_addr, encode_utf8_addr_xtext, is_xtext,
};
use super::reply::Reply;
use super::session::Recipient;
use crate::secret::Secret;

/// Content octets produced per [`ClientSession::poll_transmit`] call at most (plus what
/// dot-stuffing adds): the write buffer stays small however big the message is.
pub const TRANSMIT_CHUNK_BYTES: usize = 64 * 1024;

/// Whether to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never send STARTTLS.
    Disabled,
    /// STARTTLS when offered; go on in plain text when it is not offered or refused.
    Opportunistic,
    /// STARTTLS or nothing: the session ends when it is not offered or refused.
    Required,
}

/// When to send the content with BDAT (RFC 3030) instead of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdatPolicy {
    /// Only for `BODY=BINARYMIME`, which needs it.
    BinaryOnly,
    /// Whenever the server offers CHUNKING.
    WhenOffered,
}

/// Credentials for AUTH to a relay host.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret<String>,
}

/// The settings of one connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO (a domain or an address literal).
    pub helo_name: String,
    pub tls: TlsPolicy,
    /// The connection is TLS already (implicit TLS, port 465): no STARTTLS.
    pub tls_active: bool,
    /// AUTH with these when set (relay hosts).
    pub credentials: Option<Credentials>,
    /// Allow AUTH without TLS (only for a relay on a trusted network).
    pub auth_without_tls: bool,
    /// Use PIPELINING when the server offers it.
    pub pipelining: bool,
    pub bdat: BdatPolicy,
    /// Size of each BDAT chunk, in octets.
    pub bdat_chunk_bytes: usize,
}

impl ClientConfig {
    /// Opportunistic TLS, pipelining, BDAT only for BINARYMIME, 1 MiB chunks, no AUTH.
    pub fn new(helo_name: &str) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.to_string(),
            tls: TlsPolicy::Opportunistic,
            tls_active: false,
            credentials: None,
            auth_without_tls: false,
            pipelining: true,
            bdat: BdatPolicy::BinaryOnly,
            bdat_chunk_bytes: 1 << 20,
        }
    }
}

/// The content of a message: anything that holds its octets (a `Vec<u8>`, an `Arc<[u8]>`
/// shared with other deliveries, a memory map). Sent as it is, with CRLF line ends.
pub type Content = Box<dyn AsRef<[u8]> + Send + Sync>;

/// One message to deliver on this connection.
pub struct Message {
    /// The reverse path; `None` is `<>` (bounces).
    pub from: Option<Mailbox>,
    /// The parameters as received. `body`, `smtputf8`, `ret` and `envid` (xtext) are passed on
    /// as the server allows; `size` is ignored (the content's length is declared), and so is
    /// `auth` (`AUTH=<>` is sent after our own AUTH).
    pub params: MailParams,
    /// At least one; `NOTIFY` and `ORCPT` (as received) are passed on when the server offers
    /// DSN.
    pub recipients: Vec<Recipient>,
    pub content: Content,
}

impl Message {
    /// The content's octets.
    pub fn content_bytes(&self) -> &[u8] {
        (*self.content).as_ref()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("from", &self.from)
            .field("params", &self.params)
            .field("recipients", &self.recipients)
            .field("content_len", &self.content_bytes().len())
            .finish()
    }
}

/// Why a message cannot go to this server; found before anything was sent for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// The message has no recipients (a bug of the caller).
    NoRecipients,
    /// A path or parameter holds a control character or space where none may be; `what` names
    /// it. Sending it would break the command line.
    InvalidEnvelope { what: &'static str },
    /// The message needs SMTPUTF8 and the server does not offer it. `addresses`: because of a
    /// non-ASCII address (5.6.7), otherwise because of its header (5.6.9).
    NeedsSmtpUtf8 { addresses: bool },
    /// `BODY=BINARYMIME` and the server lacks BINARYMIME or CHUNKING. Not converted here.
    NeedsBinaryMime,
    /// `BODY=8BITMIME` and the server lacks 8BITMIME: the driver may convert the message to
    /// 7 bit and send it again (declared `BODY=7BIT`), or bounce it with 5.6.3. Not converted
    /// here.
    NeedsEightBitMime,
    /// Bigger than the server's SIZE limit.
    TooBig { size: u64, limit: u64 },
}

impl Unsendable {
    /// The enhanced status code for the DSN (all permanent for this server).
    pub fn status(&self) -> &'static str {
        match self {
            Unsendable::NoRecipients => "5.5.1",
            Unsendable::InvalidEnvelope { .. } => "5.5.4",
            Unsendable::NeedsSmtpUtf8 { addresses: true } => "5.6.7",
            Unsendable::NeedsSmtpUtf8 { addresses: false } => "5.6.9",
            Unsendable::NeedsBinaryMime | Unsendable::NeedsEightBitMime => "5.6.3",
            Unsendable::TooBig { .. } => "5.3.4",
        }
    }
}

impl fmt::Display for Unsendable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsendable::NoRecipients => f.write_str("the message has no recipients"),
            Unsendable::InvalidEnvelope { what } => write!(f, "the {what} holds characters not allowed in SMTP"),
            Unsendable::NeedsSmtpUtf8 { addresses: true } => {
                f.write_str("the message has non-ASCII addresses and the server does not support SMTPUTF8")
            }
            Unsendable::NeedsSmtpUtf8 { addresses: false } => {
                f.write_str("the message has a non-ASCII header and the server does not support SMTPUTF8")
            }
            Unsendable::NeedsBinaryMime => {
                f.write_str("the message is binary and the server does not support BINARYMIME with CHUNKING")
            }
            Unsendable::NeedsEightBitMime => {
                f.write_str("the message is 8-bit and the server does not support 8BITMIME")
            }
            Unsendable::TooBig { size, limit } => {
                write!(f, "the message ({size} octets) is bigger than the server accepts ({limit} octets)")
            }
        }
    }
}

impl std::error::Error for Unsendable {}

/// [`ClientSession::send_message`] refused a message; it is given back untouched.
#[derive(Debug)]
pub struct Refused {
    pub reason: Unsendable,
    pub message: Message,
}

/// The command a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    /// The `DATA` command (its `354` or refusal).
    Data,
    /// The content: the reply after `.`, or to a `BDAT` chunk.
    Content,
}

impl Stage {
    /// As bounce texts say it: "in reply to the RCPT TO command".
    pub fn command(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Content => "end of data",
        }
    }
}

/// The server's reply that decided a recipient's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply: Reply,
    pub stage: Stage,
}

impl Answer {
    /// The enhanced status code: the server's, or `X.0.0` from the reply's class.
    pub fn status(&self) -> String {
        if self.reply.status.is_empty() { format!("{}.0.0", self.reply.code / 100) } else { self.reply.status.clone() }
    }
}

/// What became of one recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took responsibility (2xx to the content).
    Delivered(Answer),
    /// 4xx: try again later.
    Deferred(Answer),
    /// 5xx: give up (bounce).
    Failed(Answer),
    /// The session ended before a final answer: try again (the reason is in the
    /// [`SessionError`] of [`ClientEvent::Closed`]).
    Unanswered,
}

impl Outcome {
    fn from_reply(reply: Reply, stage: Stage) -> Outcome {
        let answer = Answer { reply, stage };
        match answer.reply.code / 100 {
            2 => Outcome::Delivered(answer),
            4 => Outcome::Deferred(answer),
            _ => Outcome::Failed(answer),
        }
    }

    /// The server's reply, if there was one.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Outcome::Delivered(a) | Outcome::Deferred(a) | Outcome::Failed(a) => Some(a),
            Outcome::Unanswered => None,
        }
    }
}

/// The result of one message: one outcome per recipient, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    pub recipients: Vec<Outcome>,
    /// All of the content was written (for the "may have been delivered twice" warning when
    /// the end-of-data reply never came: RFC 1047).
    pub content_sent: bool,
}

/// What the session is doing, for the driver's timeouts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the `220` greeting.
    Greeting,
    /// EHLO or HELO sent.
    Ehlo,
    /// STARTTLS sent.
    StartTls,
    /// The driver is doing the TLS handshake.
    TlsHandshake,
    /// AUTH exchange.
    Auth,
    /// Waiting for the driver: a message or QUIT.
    Ready,
    /// RSET sent.
    Rset,
    /// MAIL sent.
    Mail,
    /// RCPT sent.
    Rcpt,
    /// DATA sent, waiting for `354`.
    Data,
    /// Content being written (or a BDAT chunk's reply awaited).
    DataBlock,
    /// Content written, waiting for the final reply.
    DataEnd,
    /// QUIT sent.
    Quit,
    Closed,
}

impl Phase {
    /// The timeout RFC 5321 section 4.5.3.2 gives for this phase (5 minutes where it gives
    /// none); `None` when nothing is awaited from the server.
    pub fn rfc5321_timeout(self) -> Option<Duration> {
        let minutes = match self {
            Phase::Data => 2,
            Phase::DataBlock => 3,
            Phase::DataEnd => 10,
            Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Auth
            | Phase::Rset
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Quit => 5,
            Phase::TlsHandshake | Phase::Ready | Phase::Closed => return None,
        };
        Some(Duration::from_secs(minutes * 60))
    }
}

/// Why the session ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The server refused or ended the session with this reply in `phase`: a greeting other
    /// than 2xx, EHLO and HELO refused, STARTTLS refused when required, AUTH refused, RSET
    /// refused, or a `421` at any time.
    Refused { reply: Reply, phase: Phase },
    /// TLS is required and the server does not offer STARTTLS.
    TlsNotOffered,
    /// The driver's TLS handshake failed.
    TlsFailed,
    /// Credentials are set and the server offers neither PLAIN nor LOGIN.
    AuthNotOffered,
    /// Credentials are set, the connection is not TLS and AUTH without TLS is not allowed.
    AuthNeedsTls,
    /// The server's bytes are not a reply.
    Malformed(ReplyError),
    /// A reply that cannot come here (a code the command does not have, a reply to nothing,
    /// the final reply before the content was written).
    UnexpectedReply { reply: Reply, phase: Phase },
    /// The server sent more after its `220` to STARTTLS, before the TLS handshake.
    InputAfterStartTls,
    /// The server closed the connection.
    ConnectionClosed { phase: Phase },
    /// The driver's timeout for `phase` expired.
    Timeout { phase: Phase },
}

impl SessionError {
    /// The server's reply, for "the server said ..." in bounces.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SessionError::Refused { reply, .. } | SessionError::UnexpectedReply { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The server said no with a 5xx reply (not 421): retrying the same server will not help.
    /// Everything else is worth another try (later, or at another MX).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SessionError::Refused { reply, .. } if reply.is_permanent())
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Refused { reply, phase } => write!(f, "the server said {reply} ({})", phase_text(*phase)),
            SessionError::TlsNotOffered => f.write_str("TLS is required but the server does not offer STARTTLS"),
            SessionError::TlsFailed => f.write_str("the TLS handshake failed"),
            SessionError::AuthNotOffered => f.write_str("the server offers neither AUTH PLAIN nor AUTH LOGIN"),
            SessionError::AuthNeedsTls => f.write_str("AUTH would go over a connection without TLS"),
            SessionError::Malformed(e) => e.fmt(f),
            SessionError::UnexpectedReply { reply, phase } => {
                write!(f, "the server sent an unexpected reply {reply} ({})", phase_text(*phase))
            }
            SessionError::InputAfterStartTls => {
                f.write_str("the server sent data after its STARTTLS reply, before the TLS handshake")
            }
            SessionError::ConnectionClosed { phase } => {
                write!(f, "the server closed the connection ({})", phase_text(*phase))
            }
            SessionError::Timeout { phase } => write!(f, "the server did not answer in time ({})", phase_text(*phase)),
        }
    }
}

impl std::error::Error for SessionError {}

fn phase_text(phase: Phase) -> &'static str {
    match phase {
        Phase::Greeting => "waiting for the greeting",
        Phase::Ehlo => "in reply to EHLO/HELO",
        Phase::StartTls => "in reply to STARTTLS",
        Phase::TlsHandshake => "during the TLS handshake",
        Phase::Auth => "in reply to AUTH",
        Phase::Ready => "between messages",
        Phase::Rset => "in reply to RSET",
        Phase::Mail => "in reply to MAIL FROM",
        Phase::Rcpt => "in reply to RCPT TO",
        Phase::Data => "in reply to DATA",
        Phase::DataBlock => "while sending the message",
        Phase::DataEnd => "in reply to the end of data",
        Phase::Quit => "in reply to QUIT",
        Phase::Closed => "after the end of the session",
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The connection is ready for a message: [`ClientSession::send_message`] or
    /// [`ClientSession::quit`].
    Ready,
    /// Write what [`ClientSession::poll_transmit`] still gives, do the TLS handshake, then
    /// [`ClientSession::handle_tls_established`] (or [`ClientSession::handle_tls_failed`]).
    StartTls,
    /// The message given last is done.
    MessageDone(MessageReport),
    /// The session is over: write what `poll_transmit` still gives (perhaps a QUIT), then
    /// close. `Ok` after QUIT.
    Closed(Result<(), SessionError>),
}

/// A command sent whose reply is awaited, in the order sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    /// `AUTH LOGIN` sent; its 334 asks for the user name.
    AuthLoginUser,
    /// The user name sent; 334 asks for the password.
    AuthLoginPassword,
    /// The password sent.
    AuthLoginDone,
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    /// The end of the content; `empty`: the lone `.` ending a transaction without recipients.
    DataEnd {
        empty: bool,
    },
    Bdat {
        last: bool,
    },
    Quit,
}

impl Expect {
    fn phase(self) -> Phase {
        match self {
            Expect::Greeting => Phase::Greeting,
            Expect::Ehlo | Expect::Helo => Phase::Ehlo,
            Expect::StartTls => Phase::StartTls,
            Expect::AuthPlain | Expect::AuthLoginUser | Expect::AuthLoginPassword | Expect::AuthLoginDone => {
                Phase::Auth
            }
            Expect::Rset => Phase::Rset,
            Expect::Mail => Phase::Mail,
            Expect::Rcpt(_) => Phase::Rcpt,
            Expect::Data => Phase::Data,
            Expect::DataEnd { .. } | Expect::Bdat { last: true } => Phase::DataEnd,
            Expect::Bdat { last: false } => Phase::DataBlock,
            Expect::Quit => Phase::Quit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Greeting, EHLO, STARTTLS, AUTH.
    Opening,
    /// Waiting for the driver's TLS handshake.
    TlsHandshake,
    /// Waiting for a message or QUIT.
    Ready,
    /// A message is in flight.
    Transaction,
    /// QUIT sent.
    Quitting,
    Closed,
}

/// The content being written.
#[derive(Debug)]
enum Body {
    Data {
        pos: usize,
        stuffer: DotStuffer,
    },
    Bdat {
        pos: usize,
        /// Octets of the current chunk still to write.
        chunk_left: usize,
        /// The `LAST` chunk was announced.
        last_sent: bool,
        /// Without PIPELINING: the chunk is written and its reply awaited.
        paused: bool,
        /// A chunk was refused: finish the current one, start no other.
        stop: bool,
    },
}

/// The message in flight.
#[derive(Debug)]
struct Transaction {
    message: Message,
    /// Final outcomes; `None` while a recipient waits for one.
    outcomes: Vec<Option<Outcome>>,
    /// The server accepted the recipient at RCPT; its outcome comes with the content.
    accepted: Vec<bool>,
    /// The reply to MAIL was 2xx (`None`: not yet known).
    mail_ok: Option<bool>,
    smtputf8: bool,
    bdat: bool,
    body: Option<Body>,
    content_sent: bool,
    /// A BDAT chunk was refused; the other chunk replies are ignored.
    chunk_failed: bool,
}

impl Transaction {
    fn accepted_count(&self) -> usize {
        self.accepted.iter().filter(|&&a| a).count()
    }

    /// Gives every accepted recipient still waiting the same outcome.
    fn settle_accepted(&mut self, reply: &Reply, stage: Stage) {
        for (outcome, _) in self.outcomes.iter_mut().zip(&self.accepted).filter(|(o, a)| o.is_none() && **a) {
            *outcome = Some(Outcome::from_reply(reply.clone(), stage));
        }
    }

    /// Content octets are still to be written.
    fn writing(&self) -> bool {
        match &self.body {
            None => false,
            Some(Body::Data { .. }) => true,
            Some(Body::Bdat { chunk_left, last_sent, paused, stop, .. }) => {
                *chunk_left > 0 || !(*last_sent || *paused || *stop)
            }
        }
    }
}

/// The client side of one SMTP connection. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    parser: ReplyParser,
    output: Vec<u8>,
    expect: VecDeque<Expect>,
    events: VecDeque<ClientEvent>,
    state: State,
    caps: Capabilities,
    tls_active: bool,
    authenticated: bool,
    /// The last transaction did not end with the reply to its content.
    needs_rset: bool,
    tx: Option<Transaction>,
}

impl ClientSession {
    /// A session on a connection just opened: it waits for the greeting.
    ///
    /// Panics if `helo_name` is empty or holds whitespace or control characters, or the BDAT
    /// chunk size is 0 (configuration errors).
    pub fn new(config: ClientConfig) -> ClientSession {
        assert!(
            !config.helo_name.is_empty() && !config.helo_name.chars().any(|c| c.is_whitespace() || c.is_control()),
            "bad EHLO name {:?}",
            config.helo_name
        );
        assert!(config.bdat_chunk_bytes > 0, "BDAT chunks of 0 octets");
        let tls_active = config.tls_active;
        ClientSession {
            config,
            parser: ReplyParser::new(),
            output: Vec::new(),
            expect: VecDeque::from([Expect::Greeting]),
            events: VecDeque::new(),
            state: State::Opening,
            caps: Capabilities::default(),
            tls_active,
            authenticated: false,
            needs_rset: false,
            tx: None,
        }
    }

    /// Bytes read from the server.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        match self.state {
            State::Closed => return,
            State::TlsHandshake => {
                if !bytes.is_empty() {
                    self.fail(SessionError::InputAfterStartTls, false);
                }
                return;
            }
            _ => {}
        }
        self.parser.push(bytes);
        while self.state != State::Closed && self.state != State::TlsHandshake {
            match self.parser.next_reply() {
                Ok(Some(reply)) => self.handle_reply(reply),
                Ok(None) => break,
                Err(_) if self.state == State::Quitting => self.close(Ok(())),
                Err(e) => self.fail(SessionError::Malformed(e), false),
            }
        }
    }

    /// The server closed the connection (read returned 0).
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Closed => {}
            State::Quitting => self.close(Ok(())),
            _ => self.fail(SessionError::ConnectionClosed { phase: self.phase() }, false),
        }
    }

    /// The driver's timeout for the current [`phase`](Self::phase) expired.
    pub fn handle_timeout(&mut self) {
        match self.state {
            State::Closed => {}
            State::Quitting => self.close(Ok(())),
            _ => self.fail(SessionError::Timeout { phase: self.phase() }, false),
        }
    }

    /// After [`ClientEvent::StartTls`]: the handshake is done; EHLO goes again. Does nothing
    /// once the session is closed.
    ///
    /// Panics if no handshake was asked for (a driver bug).
    pub fn handle_tls_established(&mut self) {
        if self.state == State::Closed {
            return;
        }
        assert_eq!(self.state, State::TlsHandshake, "no TLS handshake was asked for");
        self.tls_active = true;
        self.parser = ReplyParser::new();
        self.caps = Capabilities::default();
        self.state = State::Opening;
        self.command(&format!("EHLO {}", self.config.helo_name), Expect::Ehlo);
    }

    /// After [`ClientEvent::StartTls`]: the handshake failed; the session ends.
    pub fn handle_tls_failed(&mut self) {
        if self.state != State::Closed {
            self.fail(SessionError::TlsFailed, false);
        }
    }

    /// Appends the bytes to write now to `out` and returns how many; 0 when there is nothing
    /// to write until the server answers. Content comes in pieces of about
    /// [`TRANSMIT_CHUNK_BYTES`]: call again until it returns 0.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.append(&mut self.output);
        if self.state == State::Transaction {
            self.write_content(out);
        }
        out.len() - start
    }

    /// The next thing the driver must act on.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// After [`ClientEvent::Ready`]: delivers `message` next. Nothing is sent when it is
    /// refused; the session stays ready.
    ///
    /// Panics if the session is not ready (a driver bug).
    pub fn send_message(&mut self, message: Message) -> Result<(), Box<Refused>> {
        assert_eq!(self.state, State::Ready, "send_message while the session is not ready");
        let smtputf8 = match self.check(&message) {
            Ok(smtputf8) => smtputf8,
            Err(reason) => return Err(Box::new(Refused { reason, message })),
        };
        let n = message.recipients.len();
        let bdat = self.caps.chunking
            && (message.params.body == BodyType::BinaryMime || self.config.bdat == BdatPolicy::WhenOffered);
        let tx = Transaction {
            message,
            outcomes: vec![None; n],
            accepted: vec![false; n],
            mail_ok: None,
            smtputf8,
            bdat,
            body: None,
            content_sent: false,
            chunk_failed: false,
        };
        self.tx = Some(tx);
        self.state = State::Transaction;
        if std::mem::take(&mut self.needs_rset) {
            self.command("RSET", Expect::Rset);
            if !self.pipelining() {
                // MAIL follows RSET's reply.
                return Ok(());
            }
        }
        self.start_mail();
        Ok(())
    }

    /// Queues MAIL, and with PIPELINING the RCPTs and DATA of the same group.
    fn start_mail(&mut self) {
        let tx = self.tx.as_ref().expect("MAIL is sent with a transaction");
        let mail = self.mail_command(tx);
        let group: Vec<String> = if self.pipelining() {
            (0..tx.outcomes.len()).map(|i| self.rcpt_command(tx, i)).collect()
        } else {
            Vec::new()
        };
        let data = self.pipelining() && !tx.bdat;
        self.command(&mail, Expect::Mail);
        for (i, rcpt) in group.iter().enumerate() {
            self.command(rcpt, Expect::Rcpt(i));
        }
        if data {
            self.command("DATA", Expect::Data);
        }
    }

    /// After [`ClientEvent::Ready`]: no more messages; QUIT. Does nothing once the session is
    /// closed.
    ///
    /// Panics if the session is not ready (a driver bug).
    pub fn quit(&mut self) {
        if self.state == State::Closed {
            return;
        }
        assert_eq!(self.state, State::Ready, "quit while the session is not ready");
        self.command("QUIT", Expect::Quit);
        self.state = State::Quitting;
    }

    /// What the session waits for.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Closed => Phase::Closed,
            State::TlsHandshake => Phase::TlsHandshake,
            State::Ready => Phase::Ready,
            State::Transaction if self.tx.as_ref().is_some_and(Transaction::writing) => Phase::DataBlock,
            _ => self.expect.front().map_or(Phase::Ready, |e| e.phase()),
        }
    }

    /// What the server offers (after EHLO; empty after HELO, and again after STARTTLS until
    /// the new EHLO is answered).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The connection is TLS (implicit, or STARTTLS done).
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    fn pipelining(&self) -> bool {
        self.config.pipelining && self.caps.pipelining
    }

    /// Queues one command line.
    fn command(&mut self, line: &str, expect: Expect) {
        debug_assert!(!line.contains(['\r', '\n']), "line break in a command: {line:?}");
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.expect.push_back(expect);
    }

    /// The checks before MAIL. Returns whether the transaction uses SMTPUTF8.
    fn check(&self, m: &Message) -> Result<bool, Unsendable> {
        if m.recipients.is_empty() {
            return Err(Unsendable::NoRecipients);
        }
        // A quoted local part may hold spaces and angle brackets; nothing may hold a control
        // character (CR or LF would end the command line early).
        let bad_part = |s: &str| s.is_empty() || s.chars().any(char::is_control);
        let bad_mailbox = |m: &Mailbox| bad_part(&m.local) || bad_part(&m.domain);
        if m.from.as_ref().is_some_and(bad_mailbox) {
            return Err(Unsendable::InvalidEnvelope { what: "sender address" });
        }
        if m.recipients.iter().any(|r| matches!(&r.path, ForwardPath::Mailbox(to) if bad_mailbox(to))) {
            return Err(Unsendable::InvalidEnvelope { what: "recipient address" });
        }
        if m.params.envid.as_deref().is_some_and(|e| !is_xtext(e)) {
            return Err(Unsendable::InvalidEnvelope { what: "ENVID parameter" });
        }
        let bad_orcpt = |o: &str| !o.contains(';') || o.chars().any(|c| c.is_control() || c.is_whitespace());
        if m.recipients.iter().any(|r| r.params.orcpt.as_deref().is_some_and(bad_orcpt)) {
            return Err(Unsendable::InvalidEnvelope { what: "ORCPT parameter" });
        }
        let ascii_addresses = m.from.as_ref().is_none_or(Mailbox::is_ascii)
            && m.recipients.iter().all(|r| match &r.path {
                ForwardPath::Mailbox(to) => to.is_ascii(),
                ForwardPath::Postmaster => true,
            });
        let smtputf8 = m.params.smtputf8 || !ascii_addresses;
        if smtputf8 && !self.caps.smtputf8 {
            return Err(Unsendable::NeedsSmtpUtf8 { addresses: !ascii_addresses });
        }
        match m.params.body {
            BodyType::BinaryMime if !(self.caps.binary_mime && self.caps.chunking) => {
                return Err(Unsendable::NeedsBinaryMime);
            }
            BodyType::EightBitMime if !self.caps.eight_bit_mime => return Err(Unsendable::NeedsEightBitMime),
            _ => {}
        }
        let size = m.content_bytes().len() as u64;
        if let Some(limit) = self.caps.max_size.filter(|&limit| size > limit) {
            return Err(Unsendable::TooBig { size, limit });
        }
        Ok(smtputf8)
    }

    fn mail_command(&self, tx: &Transaction) -> String {
        let m = &tx.message;
        let size = m.content_bytes().len();
        let mut line = match &m.from {
            Some(from) => format!("MAIL FROM:<{from}>"),
            None => "MAIL FROM:<>".to_string(),
        };
        if self.caps.size {
            line.push_str(&format!(" SIZE={size}"));
        }
        match m.params.body {
            BodyType::EightBitMime => line.push_str(" BODY=8BITMIME"),
            BodyType::BinaryMime => line.push_str(" BODY=BINARYMIME"),
            BodyType::SevenBit => {}
        }
        if tx.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            match m.params.ret {
                Some(Ret::Full) => line.push_str(" RET=FULL"),
                Some(Ret::Headers) => line.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = &m.params.envid {
                line.push_str(&format!(" ENVID={envid}"));
            }
        }
        if self.authenticated && !self.caps.auth.is_empty() {
            line.push_str(" AUTH=<>");
        }
        line
    }

    fn rcpt_command(&self, tx: &Transaction, i: usize) -> String {
        let r = &tx.message.recipients[i];
        let mut line = match &r.path {
            ForwardPath::Mailbox(to) => format!("RCPT TO:<{to}>"),
            ForwardPath::Postmaster => "RCPT TO:<Postmaster>".to_string(),
        };
        if self.caps.dsn {
            if let Some(notify) = r.params.notify.and_then(notify_param) {
                line.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some(orcpt) = r.params.orcpt.as_deref().and_then(|o| orcpt_param(o, tx.smtputf8)) {
                line.push_str(&format!(" ORCPT={orcpt}"));
            }
        }
        line
    }

    fn handle_reply(&mut self, reply: Reply) {
        let Some(expect) = self.expect.pop_front() else {
            // Servers say 421 before closing an idle connection; anything else is a reply
            // to nothing.
            let phase = self.phase();
            if reply.code == 421 {
                self.fail(SessionError::Refused { reply, phase }, false);
            } else {
                self.fail(SessionError::UnexpectedReply { reply, phase }, false);
            }
            return;
        };
        if expect == Expect::Quit {
            self.close(Ok(()));
            return;
        }
        if reply.code == 421 {
            self.fail(SessionError::Refused { reply, phase: expect.phase() }, false);
            return;
        }
        let class = reply.code / 100;
        match expect {
            Expect::Greeting => match class {
                2 => self.command(&format!("EHLO {}", self.config.helo_name), Expect::Ehlo),
                _ => self.fail(SessionError::Refused { reply, phase: Phase::Greeting }, true),
            },
            Expect::Ehlo => match class {
                2 => {
                    self.caps = Capabilities::from_ehlo(&reply);
                    self.after_hello();
                }
                4 | 5 => self.command(&format!("HELO {}", self.config.helo_name), Expect::Helo),
                _ => self.unexpected(reply, expect),
            },
            Expect::Helo => match class {
                2 => {
                    self.caps = Capabilities::default();
                    self.after_hello();
                }
                _ => self.fail(SessionError::Refused { reply, phase: Phase::Ehlo }, true),
            },
            Expect::StartTls => match class {
                2 if self.parser.has_pending_input() => self.fail(SessionError::InputAfterStartTls, false),
                2 => {
                    self.state = State::TlsHandshake;
                    self.events.push_back(ClientEvent::StartTls);
                }
                3 => self.unexpected(reply, expect),
                _ if self.config.tls == TlsPolicy::Required => {
                    self.fail(SessionError::Refused { reply, phase: Phase::StartTls }, true)
                }
                // Opportunistic: on in plain text, without asking again.
                _ => self.authenticate(),
            },
            Expect::AuthPlain | Expect::AuthLoginDone => match class {
                2 => {
                    self.authenticated = true;
                    self.ready();
                }
                3 => self.unexpected(reply, expect),
                _ => self.fail(SessionError::Refused { reply, phase: Phase::Auth }, true),
            },
            Expect::AuthLoginUser | Expect::AuthLoginPassword => match class {
                3 => {
                    let credentials = self.config.credentials.as_ref().expect("AUTH is sent only with credentials");
                    let (value, next) = if expect == Expect::AuthLoginUser {
                        (B64.encode(credentials.username.as_bytes()), Expect::AuthLoginPassword)
                    } else {
                        (B64.encode(credentials.password.expose_secret().as_bytes()), Expect::AuthLoginDone)
                    };
                    self.command(&value, next);
                }
                2 => self.unexpected(reply, expect),
                _ => self.fail(SessionError::Refused { reply, phase: Phase::Auth }, true),
            },
            Expect::Rset => match class {
                2 if !self.pipelining() => self.start_mail(),
                2 => {}
                _ => self.fail(SessionError::Refused { reply, phase: Phase::Rset }, true),
            },
            Expect::Mail => self.on_mail(reply, expect),
            Expect::Rcpt(i) => self.on_rcpt(reply, expect, i),
            Expect::Data => self.on_data(reply, expect),
            Expect::DataEnd { empty } => self.on_data_end(reply, expect, empty),
            Expect::Bdat { last } => self.on_bdat(reply, expect, last),
            Expect::Quit => unreachable!("handled above"),
        }
    }

    fn after_hello(&mut self) {
        let wants_tls = !self.tls_active && self.config.tls != TlsPolicy::Disabled;
        if wants_tls && self.caps.starttls {
            self.command("STARTTLS", Expect::StartTls);
        } else if wants_tls && self.config.tls == TlsPolicy::Required {
            self.fail(SessionError::TlsNotOffered, true);
        } else {
            self.authenticate();
        }
    }

    fn authenticate(&mut self) {
        let Some(credentials) = &self.config.credentials else {
            self.ready();
            return;
        };
        if !self.tls_active && !self.config.auth_without_tls {
            self.fail(SessionError::AuthNeedsTls, true);
        } else if self.caps.offers_auth("PLAIN") {
            let mut token = Vec::with_capacity(credentials.username.len() + 32);
            token.push(0);
            token.extend_from_slice(credentials.username.as_bytes());
            token.push(0);
            token.extend_from_slice(credentials.password.expose_secret().as_bytes());
            let token = B64.encode(token);
            self.command(&format!("AUTH PLAIN {token}"), Expect::AuthPlain);
        } else if self.caps.offers_auth("LOGIN") {
            self.command("AUTH LOGIN", Expect::AuthLoginUser);
        } else {
            self.fail(SessionError::AuthNotOffered, true);
        }
    }

    fn ready(&mut self) {
        self.state = State::Ready;
        self.events.push_back(ClientEvent::Ready);
    }

    fn on_mail(&mut self, reply: Reply, expect: Expect) {
        let tx = self.tx.as_mut().expect("MAIL is sent with a transaction");
        match reply.code / 100 {
            2 => {
                tx.mail_ok = Some(true);
                if !self.pipelining() {
                    let rcpt = self.rcpt_command(self.tx.as_ref().expect("in a transaction"), 0);
                    self.command(&rcpt, Expect::Rcpt(0));
                }
            }
            4 | 5 => {
                tx.mail_ok = Some(false);
                for outcome in &mut tx.outcomes {
                    *outcome = Some(Outcome::from_reply(reply.clone(), Stage::Mail));
                }
                // Pipelined, the replies to RCPT and DATA are still to come (and ignored).
                if !self.pipelining() {
                    self.finish(true);
                }
            }
            _ => self.unexpected(reply, expect),
        }
    }

    fn on_rcpt(&mut self, reply: Reply, expect: Expect, i: usize) {
        let pipelining = self.pipelining();
        let tx = self.tx.as_mut().expect("RCPT is sent with a transaction");
        let last = i + 1 == tx.outcomes.len();
        if tx.mail_ok == Some(true) {
            match reply.code / 100 {
                2 => tx.accepted[i] = true,
                4 | 5 => tx.outcomes[i] = Some(Outcome::from_reply(reply, Stage::Rcpt)),
                _ => return self.unexpected(reply, expect),
            }
        }
        let accepted = tx.accepted_count();
        if !last {
            if !pipelining {
                let rcpt = self.rcpt_command(self.tx.as_ref().expect("in a transaction"), i + 1);
                self.command(&rcpt, Expect::Rcpt(i + 1));
            }
        } else if tx.bdat {
            if accepted > 0 {
                tx.body = Some(Body::Bdat { pos: 0, chunk_left: 0, last_sent: false, paused: false, stop: false });
            } else {
                self.finish(true);
            }
        } else if !pipelining {
            if accepted > 0 {
                self.command("DATA", Expect::Data);
            } else {
                self.finish(true);
            }
        }
        // Pipelined DATA: its reply comes next.
    }

    fn on_data(&mut self, reply: Reply, expect: Expect) {
        let tx = self.tx.as_mut().expect("DATA is sent with a transaction");
        match reply.code / 100 {
            3 if tx.mail_ok == Some(true) && tx.accepted_count() > 0 => {
                tx.body = Some(Body::Data { pos: 0, stuffer: DotStuffer::new() });
                self.expect.push_back(Expect::DataEnd { empty: false });
            }
            3 => {
                // Pipelined DATA accepted although no recipient was: end the empty transaction.
                self.output.extend_from_slice(b".\r\n");
                self.expect.push_back(Expect::DataEnd { empty: true });
            }
            4 | 5 => {
                tx.settle_accepted(&reply, Stage::Data);
                self.finish(true);
            }
            _ => self.unexpected(reply, expect),
        }
    }

    fn on_data_end(&mut self, reply: Reply, expect: Expect, empty: bool) {
        let tx = self.tx.as_mut().expect("content is sent with a transaction");
        if empty {
            self.finish(false);
            return;
        }
        if tx.body.is_some() {
            // The final reply before the whole content was written: the server gave up on
            // the message (a 4xx/5xx is its answer to it); the connection cannot be trusted.
            if reply.code >= 400 {
                tx.settle_accepted(&reply, Stage::Content);
            }
            self.unexpected(reply, expect);
            return;
        }
        match reply.code / 100 {
            2 | 4 | 5 => {
                tx.settle_accepted(&reply, Stage::Content);
                self.finish(false);
            }
            _ => self.unexpected(reply, expect),
        }
    }

    fn on_bdat(&mut self, reply: Reply, expect: Expect, last: bool) {
        let tx = self.tx.as_mut().expect("BDAT is sent with a transaction");
        let in_chunk = matches!(tx.body, Some(Body::Bdat { chunk_left, .. }) if chunk_left > 0);
        if in_chunk && !self.expect.iter().any(|e| matches!(e, Expect::Bdat { .. })) {
            // The reply to the chunk still being written: the server did not read it all, so
            // the connection cannot be trusted (as for an early reply to DATA content).
            if reply.code >= 400 && !tx.chunk_failed {
                tx.settle_accepted(&reply, Stage::Content);
            }
            return self.unexpected(reply, expect);
        }
        match reply.code / 100 {
            2 | 4 | 5 if tx.chunk_failed => {}
            2 if last => {
                tx.settle_accepted(&reply, Stage::Content);
                self.finish(false);
                return;
            }
            2 => {
                if let Some(Body::Bdat { paused, .. }) = &mut tx.body {
                    *paused = false;
                }
            }
            4 | 5 => {
                tx.chunk_failed = true;
                tx.settle_accepted(&reply, Stage::Content);
                if let Some(Body::Bdat { stop, paused, .. }) = &mut tx.body {
                    *stop = true;
                    *paused = false;
                }
            }
            _ => return self.unexpected(reply, expect),
        }
        self.finish_failed_chunks();
    }

    /// After a refused chunk: the transaction is over once the chunk being written is done and
    /// every chunk sent has its reply.
    fn finish_failed_chunks(&mut self) {
        let Some(tx) = &self.tx else { return };
        let writing = matches!(tx.body, Some(Body::Bdat { chunk_left, .. }) if chunk_left > 0);
        if tx.chunk_failed && !writing && !self.expect.iter().any(|e| matches!(e, Expect::Bdat { .. })) {
            self.finish(true);
        }
    }

    /// Writes the next piece of content, if any is due.
    fn write_content(&mut self, out: &mut Vec<u8>) {
        let pipelining = self.pipelining();
        let chunk_bytes = self.config.bdat_chunk_bytes;
        let Some(tx) = self.tx.as_mut() else { return };
        let content = tx.message.content_bytes();
        match &mut tx.body {
            None => {}
            Some(Body::Data { pos, stuffer }) => {
                let end = content.len().min(*pos + TRANSMIT_CHUNK_BYTES);
                stuffer.encode(&content[*pos..end], out);
                *pos = end;
                if end == content.len() {
                    stuffer.finish(out);
                    tx.body = None;
                    tx.content_sent = true;
                }
            }
            Some(Body::Bdat { pos, chunk_left, last_sent, paused, stop }) => {
                let mut budget = TRANSMIT_CHUNK_BYTES;
                loop {
                    if *chunk_left == 0 {
                        if *last_sent || *paused || *stop || budget == 0 {
                            break;
                        }
                        let n = chunk_bytes.min(content.len() - *pos);
                        let last = *pos + n == content.len();
                        out.extend_from_slice(format!("BDAT {n}{}\r\n", if last { " LAST" } else { "" }).as_bytes());
                        self.expect.push_back(Expect::Bdat { last });
                        *chunk_left = n;
                        *last_sent = last;
                    }
                    let n = (*chunk_left).min(budget);
                    out.extend_from_slice(&content[*pos..*pos + n]);
                    *pos += n;
                    *chunk_left -= n;
                    budget -= n;
                    if *chunk_left == 0 {
                        if *last_sent {
                            tx.content_sent = true;
                            break;
                        }
                        if !pipelining {
                            *paused = true;
                        }
                    }
                    if budget == 0 {
                        break;
                    }
                }
                if *chunk_left == 0 && (*last_sent || *stop) {
                    tx.body = None;
                }
            }
        }
        self.finish_failed_chunks();
    }

    /// The message is done: report it and get ready for the next.
    fn finish(&mut self, needs_rset: bool) {
        let tx = self.tx.take().expect("finishing a transaction");
        debug_assert!(tx.outcomes.iter().all(Option::is_some), "a recipient without outcome: {tx:?}");
        let recipients = tx.outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Unanswered)).collect();
        self.events.push_back(ClientEvent::MessageDone(MessageReport { recipients, content_sent: tx.content_sent }));
        self.needs_rset = needs_rset;
        self.ready();
    }

    fn unexpected(&mut self, reply: Reply, expect: Expect) {
        self.fail(SessionError::UnexpectedReply { reply, phase: expect.phase() }, false);
    }

    /// Ends the session early. `quit`: the server is sane, say QUIT before closing.
    fn fail(&mut self, error: SessionError, quit: bool) {
        if self.state == State::Closed {
            return;
        }
        if let Some(tx) = self.tx.take() {
            let recipients = tx.outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Unanswered)).collect();
            self.events
                .push_back(ClientEvent::MessageDone(MessageReport { recipients, content_sent: tx.content_sent }));
        }
        self.output.clear();
        if quit {
            self.output.extend_from_slice(b"QUIT\r\n");
        }
        self.close(Err(error));
    }

    fn close(&mut self, result: Result<(), SessionError>) {
        debug_assert!(self.tx.is_none() || result.is_err());
        self.tx = None;
        self.expect.clear();
        self.state = State::Closed;
        // A `Ready` or `StartTls` queued before the end (the same read held the reply that
        // made the session ready and the one that ended it) asks for what can no longer be.
        self.events.retain(|e| !matches!(e, ClientEvent::Ready | ClientEvent::StartTls));
        self.events.push_back(ClientEvent::Closed(result));
    }
}

/// `NOTIFY=` value; `None` when nothing is set.
fn notify_param(n: Notify) -> Option<String> {
    if n.never {
        return Some("NEVER".to_string());
    }
    let words: Vec<&str> = [(n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
    (!words.is_empty()).then(|| words.join(","))
}

/// `ORCPT=` value from the one received. Non-ASCII is allowed only in the `utf-8` type and
/// only with SMTPUTF8 (`utf-8-addr-unitext`); without, it is turned into `utf-8-addr-xtext`
/// (RFC 6533 section 3). A value that cannot be passed on is dropped (the parameter is
/// optional).
fn orcpt_param(orcpt: &str, smtputf8: bool) -> Option<String> {
    let (kind, address) = orcpt.split_once(';')?;
    if orcpt.is_ascii() || (smtputf8 && kind.eq_ignore_ascii_case("utf-8")) {
        return Some(orcpt.to_string());
    }
    if !kind.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    Some(format!("{kind};{}", encode_utf8_addr_xtext(&decode_utf8_addr(address)?)))
}
