//! [`Session`]: the server side of one POP3 conversation (RFC 1939), sans IO.
//!
//! ```text
//!  server                                   Session
//!  bytes read ───────── input(bytes) ──────► line framing ─► parse_command ─► state checks
//!  write take_output() ◄── replies queued ◄──┤                               (AUTHORIZATION,
//!  poll() ◄──────────────── Event ───────────┘                                TRANSACTION)
//!    NeedInput | Login | Auth | AuthResponse | StartTls | Retrieve | Quit | Close
//!  answer_login / auth_challenge / auth_done / tls_started / answer_retrieve / answer_quit
//!                           ─────────────────► the reply, next state
//! ```
//! The server calls [`poll`](Session::poll) until it returns [`Event::NeedInput`] (write the
//! queued output, read, call [`input`](Session::input)) or [`Event::Close`] (write the output,
//! close). Every other event is a question to answer with its method before the next `poll`.
//! Replies are queued, not written, so pipelined commands (RFC 2449 `PIPELINING`) get their
//! replies in one write.
//!
//! The maildrop is what the server hands over at login ([`Maildrop`]: each message's key,
//! size and unique id): the session numbers the messages, keeps the deletion marks and
//! answers `STAT`, `LIST`, `UIDL`, `DELE`, `RSET` and `NOOP` by itself. It asks for the
//! message bytes ([`Event::Retrieve`]) and, on `QUIT` after login, for the deletions
//! ([`Event::Quit`], the UPDATE state). A session that ends any other way (the connection
//! drops, the idle timeout, a shutdown, too many errors) never asks: nothing is deleted.

use super::command::{Command, MessageNumber, parse_command};
use super::reply::{Reply, ResponseCode, encode_lines, encode_message};
use crate::sasl::{decode_initial_response, decode_response, encode_challenge};
use crate::secret::Secret;

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Named in the greeting and the `QUIT` reply.
    pub hostname: String,
    /// The connection is TLS (implicit TLS, or after `STLS`).
    pub tls: bool,
    /// `STLS` may be offered: a certificate is there and the connection is not TLS yet.
    pub stls: bool,
    /// Plain-text logins (`USER`/`PASS`) may be taken now: TLS, or a connection the server
    /// counts as secured (loopback, by configuration).
    pub plaintext: bool,
    /// The SASL mechanisms to advertise now (`CAPA`'s `SASL` line, `AUTH` alone).
    pub mechanisms: Vec<String>,
    /// `LOGIN-DELAY` to advertise (RFC 2449), in seconds; the server enforces it.
    pub login_delay: Option<u32>,
    /// Longest command line, CRLF included (RFC 2449 allows 255 octets; we take more).
    pub max_line: usize,
    /// `-ERR` replies before login after which the connection is closed.
    pub max_errors_unauthenticated: u32,
    /// Unknown, malformed or over-long commands (in any state) after which the connection is
    /// closed.
    pub max_bad_commands: u32,
}

impl SessionConfig {
    pub fn new(hostname: &str) -> SessionConfig {
        SessionConfig {
            hostname: hostname.to_string(),
            tls: false,
            stls: false,
            plaintext: false,
            mechanisms: Vec::new(),
            login_delay: None,
            max_line: 1024,
            max_errors_unauthenticated: 10,
            max_bad_commands: 20,
        }
    }
}

/// Longest line of a SASL exchange: the largest response the SASL layer takes, in base64.
const MAX_AUTH_LINE: usize = crate::sasl::MAX_ENCODED_RESPONSE_BYTES + 2;

/// One message of the maildrop as the server lists it at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropMessage {
    /// The server's name for the message (the store's UID), passed back in events.
    pub key: u64,
    /// Its size as sent (CRLF line endings, before dot-stuffing).
    pub size: u64,
    /// Its unique id (`UIDL`): 1 to 70 characters from 0x21 to 0x7E, stable across sessions.
    pub uidl: String,
}

/// The maildrop at login: the messages in the order they are numbered (1 is the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maildrop {
    pub messages: Vec<MaildropMessage>,
}

/// What the server must do next.
#[derive(Debug)]
pub enum Event {
    /// Write [`Session::take_output`], read, pass the bytes to [`Session::input`].
    NeedInput,
    /// `USER` and `PASS`: check the password and open the maildrop, then
    /// [`Session::answer_login`].
    Login { user: String, password: Secret<String> },
    /// `AUTH mechanism`: start a SASL exchange with the decoded initial response, then
    /// [`Session::auth_challenge`] or [`Session::auth_done`].
    Auth { mechanism: String, initial_response: Option<Vec<u8>> },
    /// The client's decoded answer to the last challenge: [`Session::auth_challenge`] or
    /// [`Session::auth_done`].
    AuthResponse(Vec<u8>),
    /// The `+OK` of `STLS` is queued and buffered input was discarded: write the output, do
    /// the handshake, then [`Session::tls_started`] (or close if it failed).
    StartTls,
    /// `RETR` (`top: None`) or `TOP`: read the message with this key and pass its bytes to
    /// [`Session::answer_retrieve`] (or the `-ERR` saying why not).
    Retrieve { key: u64, number: MessageNumber, top: Option<u64> },
    /// `QUIT` after login (the UPDATE state): delete these messages (and, as Dovecot does,
    /// mark those in `seen` as read: sent whole by `RETR`, not deleted), then
    /// [`Session::answer_quit`]. The session closes after the answer.
    Quit { delete: Vec<u64>, seen: Vec<u64> },
    /// Write the output and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before login; `user` is set by `USER` until `PASS` or another command.
    Authorization,
    /// Waiting for the client's line of a SASL exchange.
    AuthLine,
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Login,
    Auth,
    StartTls,
    Retrieve,
    Quit,
}

#[derive(Debug)]
struct Message {
    key: u64,
    size: u64,
    uidl: String,
    deleted: bool,
    /// Sent whole by `RETR`.
    retrieved: bool,
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// One conversation. See the module documentation for the calling pattern.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    state: State,
    pending: Pending,
    /// The name given by `USER`, waiting for `PASS`.
    user: Option<String>,
    utf8: bool,
    messages: Vec<Message>,
    /// The index, size and line count (`TOP`) of the message being retrieved.
    retrieving: Option<(usize, u64, Option<u64>)>,
    errors: u32,
    bad_commands: u32,
    /// Inside an over-long line: dropping input up to its end.
    skipping: bool,
    closing: bool,
    /// Octets of plain-text input thrown away at `STLS` (for the log).
    discarded_at_stls: usize,
}

impl Session {
    /// A new session; the greeting is queued.
    pub fn new(cfg: SessionConfig) -> Session {
        let greeting = Reply::ok(format!("{} Postlog POP3 server ready", cfg.hostname));
        let mut s = Session {
            cfg,
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
            state: State::Authorization,
            pending: Pending::None,
            user: None,
            utf8: false,
            messages: Vec::new(),
            retrieving: None,
            errors: 0,
            bad_commands: 0,
            skipping: false,
            closing: false,
            discarded_at_stls: 0,
        };
        s.send(greeting);
        s
    }

    /// Bytes read from the client.
    pub fn input(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The replies queued so far (to be written now).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Octets queued and not yet taken (the server writes early when this grows).
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Logged in: the TRANSACTION state.
    pub fn is_logged_in(&self) -> bool {
        self.state == State::Transaction
    }

    /// The client enabled UTF-8 mode (RFC 6856 `UTF8`).
    pub fn utf8(&self) -> bool {
        self.utf8
    }

    pub fn is_tls(&self) -> bool {
        self.cfg.tls
    }

    /// Messages marked deleted now (deleted only if the client sends `QUIT`).
    pub fn marked_deleted(&self) -> usize {
        self.messages.iter().filter(|m| m.deleted).count()
    }

    /// Octets the client sent after `STLS`, before the handshake, that were discarded.
    pub fn discarded_at_stls(&self) -> usize {
        self.discarded_at_stls
    }

    /// The server is shutting down: `-ERR [SYS/TEMP]`, then close (nothing is deleted).
    pub fn shutdown(&mut self) {
        self.send(Reply::err_with(ResponseCode::SysTemp, "Server shutting down; no messages deleted"));
        self.closing = true;
    }

    /// The client was idle too long: `-ERR`, then close (nothing is deleted).
    pub fn timed_out(&mut self) {
        self.send(Reply::err("Disconnected for inactivity; no messages deleted"));
        self.closing = true;
    }

    /// The next thing to do. Panics if the last question was not answered (a server bug).
    pub fn poll(&mut self) -> Event {
        assert_eq!(self.pending, Pending::None, "the last event was not answered");
        loop {
            if self.closing {
                return Event::Close;
            }
            let limit = if self.state == State::AuthLine { MAX_AUTH_LINE } else { self.cfg.max_line };
            let event = match self.next_line(limit) {
                None => {
                    self.compact();
                    return Event::NeedInput;
                }
                Some(Line::TooLong) => {
                    self.state = self.settled_state();
                    self.bad(Reply::err(format!("Line too long (at most {limit} octets)")));
                    None
                }
                Some(Line::Text(line)) if self.state == State::AuthLine => self.auth_line(&line),
                Some(Line::Text(line)) => self.command_line(&line),
            };
            if let Some(event) = event {
                return event;
            }
        }
    }

    // ----- answers -----------------------------------------------------------------

    /// The outcome of [`Event::Login`]: the maildrop, or the `-ERR` to send (`[AUTH]` for
    /// wrong credentials, `[IN-USE]`, `[LOGIN-DELAY]`, `[SYS/TEMP]`).
    pub fn answer_login(&mut self, result: Result<Maildrop, Reply>) {
        assert_eq!(self.pending, Pending::Login);
        self.pending = Pending::None;
        self.logged_in(result);
    }

    /// Sends a SASL challenge (`+ base64`) and waits for the client's line.
    pub fn auth_challenge(&mut self, challenge: &[u8]) {
        assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        self.output.extend_from_slice(b"+ ");
        self.output.extend_from_slice(encode_challenge(challenge).as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.state = State::AuthLine;
    }

    /// Ends the SASL exchange: the maildrop, or the `-ERR` to send.
    pub fn auth_done(&mut self, result: Result<Maildrop, Reply>) {
        assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        self.state = State::Authorization;
        self.logged_in(result);
    }

    /// The handshake after [`Event::StartTls`] succeeded; `mechanisms` and `plaintext` are
    /// what the TLS connection allows. The client starts over in the AUTHORIZATION state.
    pub fn tls_started(&mut self, mechanisms: Vec<String>, plaintext: bool) {
        assert_eq!(self.pending, Pending::StartTls);
        self.pending = Pending::None;
        self.cfg.tls = true;
        self.cfg.stls = false;
        self.cfg.mechanisms = mechanisms;
        self.cfg.plaintext = plaintext;
        self.user = None;
    }

    /// The bytes of the message asked for by [`Event::Retrieve`] (as stored; the session
    /// converts line endings and stuffs dots), or the `-ERR` to send (e.g. the message was
    /// expunged by another session since login: the session goes on).
    pub fn answer_retrieve(&mut self, result: Result<&[u8], Reply>) {
        assert_eq!(self.pending, Pending::Retrieve);
        self.pending = Pending::None;
        let (index, size, top) = self.retrieving.take().expect("set with the event");
        match result {
            Ok(raw) => {
                if top.is_none() {
                    self.messages[index].retrieved = true;
                }
                let head = if top.is_some() { Reply::ok("") } else { Reply::ok(format!("{size} octets")) };
                head.encode_into(&mut self.output);
                encode_message(&mut self.output, raw, top);
            }
            Err(r) => self.send(r),
        }
    }

    /// The outcome of [`Event::Quit`]: `Ok` (the deletions are done) or the `-ERR` to send
    /// (RFC 1939: some deleted messages were not removed). Then the session closes.
    pub fn answer_quit(&mut self, result: Result<(), Reply>) {
        assert_eq!(self.pending, Pending::Quit);
        self.pending = Pending::None;
        match result {
            Ok(()) => {
                let left = self.messages.iter().filter(|m| !m.deleted).count();
                let what = match left {
                    0 => "maildrop empty".to_string(),
                    1 => "1 message left".to_string(),
                    n => format!("{n} messages left"),
                };
                self.send(Reply::ok(format!("{} POP3 server signing off ({what})", self.cfg.hostname)));
            }
            Err(r) => self.send(r),
        }
        self.closing = true;
    }

    // ----- framing -----------------------------------------------------------------

    fn compact(&mut self) {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
    }

    fn next_line(&mut self, limit: usize) -> Option<Line> {
        let rest = &self.input[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > limit {
                // Drop what we have of the over-long line; say so when its end arrives.
                self.skipping = true;
                self.pos = self.input.len();
            }
            return None;
        };
        let start = self.pos;
        self.pos += nl + 1;
        if std::mem::take(&mut self.skipping) || nl + 1 > limit {
            return Some(Line::TooLong);
        }
        let line = &self.input[start..start + nl];
        // A bare LF ends a line too (lenient, as Dovecot is).
        Some(Line::Text(line.strip_suffix(b"\r").unwrap_or(line).to_vec()))
    }

    /// The state to go back to when an exchange is cut short.
    fn settled_state(&self) -> State {
        if self.state == State::AuthLine { State::Authorization } else { self.state }
    }

    // ----- replies -----------------------------------------------------------------

    fn send(&mut self, r: Reply) {
        r.encode_into(&mut self.output);
    }

    /// Sends a reply to a command; an `-ERR` before login counts toward the limit.
    fn reply(&mut self, r: Reply) {
        let error = !r.ok;
        self.send(r);
        if error && self.state != State::Transaction {
            self.errors += 1;
            if self.errors >= self.cfg.max_errors_unauthenticated && !self.closing {
                self.send(Reply::err("Too many errors; closing the connection"));
                self.closing = true;
            }
        }
    }

    /// A command that is not one: unknown, malformed, too long.
    fn bad(&mut self, r: Reply) {
        self.reply(r);
        self.bad_commands += 1;
        if self.bad_commands >= self.cfg.max_bad_commands && !self.closing {
            self.send(Reply::err("Too many bad commands; closing the connection"));
            self.closing = true;
        }
    }

    fn logged_in(&mut self, result: Result<Maildrop, Reply>) {
        match result {
            Ok(maildrop) => {
                self.messages = maildrop
                    .messages
                    .into_iter()
                    .map(|m| Message { key: m.key, size: m.size, uidl: m.uidl, deleted: false, retrieved: false })
                    .collect();
                self.state = State::Transaction;
                let summary = self.summary();
                self.send(Reply::ok(format!("maildrop has {summary}")));
            }
            Err(r) => self.reply(r),
        }
    }

    /// `N messages (M octets)` of the messages not marked deleted.
    fn summary(&self) -> String {
        let (n, octets) = self.totals();
        let noun = if n == 1 { "message" } else { "messages" };
        format!("{n} {noun} ({octets} octets)")
    }

    fn totals(&self) -> (usize, u64) {
        self.messages.iter().filter(|m| !m.deleted).fold((0, 0), |(n, o), m| (n + 1, o + m.size))
    }

    // ----- commands ----------------------------------------------------------------

    fn command_line(&mut self, line: &[u8]) -> Option<Event> {
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                self.bad(Reply::err(e.to_string()));
                return None;
            }
        };
        // `USER` must be followed by `PASS`; anything else forgets the name.
        let user = self.user.take();
        match (self.state, command) {
            (_, Command::Capa) => {
                self.capa();
                None
            }
            (State::Authorization, Command::Quit) => {
                self.send(Reply::ok(format!("{} POP3 server signing off", self.cfg.hostname)));
                self.closing = true;
                None
            }
            (State::Authorization, Command::User(name)) => {
                if !self.cfg.plaintext {
                    self.reply(Reply::err_with(
                        ResponseCode::Auth,
                        "Plain-text authentication needs TLS; send STLS first (or use AUTH SCRAM-SHA-256)",
                    ));
                } else {
                    self.user = Some(name);
                    self.send(Reply::ok("Send PASS"));
                }
                None
            }
            (State::Authorization, Command::Pass(password)) => match user {
                Some(user) => {
                    self.pending = Pending::Login;
                    Some(Event::Login { user, password })
                }
                None => {
                    self.reply(Reply::err("Send USER first"));
                    None
                }
            },
            (State::Authorization, Command::Auth { mechanism: None, .. }) => {
                self.send(Reply::ok("Supported SASL mechanisms follow"));
                let mechanisms = self.cfg.mechanisms.clone();
                encode_lines(&mut self.output, mechanisms.iter().map(String::as_str));
                None
            }
            (State::Authorization, Command::Auth { mechanism: Some(mechanism), initial_response }) => {
                let initial_response = match initial_response.map(|r| decode_initial_response(&r)).transpose() {
                    Ok(r) => r,
                    Err(_) => {
                        self.reply(Reply::err("Cannot decode the initial response (base64 expected)"));
                        return None;
                    }
                };
                self.pending = Pending::Auth;
                Some(Event::Auth { mechanism, initial_response })
            }
            (State::Authorization, Command::Stls) => {
                if self.cfg.tls {
                    self.reply(Reply::err("Already using TLS"));
                    return None;
                }
                if !self.cfg.stls {
                    self.reply(Reply::err("STLS is not available"));
                    return None;
                }
                self.send(Reply::ok("Begin TLS negotiation"));
                // RFC 2595 section 4 (and CVE-2011-0411): nothing sent before the handshake
                // may count as a command of the TLS session.
                self.discarded_at_stls = self.input.len() - self.pos;
                self.input.clear();
                self.pos = 0;
                self.pending = Pending::StartTls;
                Some(Event::StartTls)
            }
            (State::Authorization, Command::Utf8) => {
                self.utf8 = true;
                self.send(Reply::ok("UTF8 enabled"));
                None
            }
            (State::Authorization, Command::Apop) => {
                self.reply(Reply::err("APOP is not supported; use USER and PASS, or AUTH"));
                None
            }
            (State::Authorization, _) => {
                self.reply(Reply::err("Log in first (USER and PASS, or AUTH)"));
                None
            }
            (State::Transaction, command) => self.transaction(command),
            (State::AuthLine, _) => unreachable!("lines of an exchange go to auth_line"),
        }
    }

    fn transaction(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Stat => {
                let (n, octets) = self.totals();
                self.send(Reply::ok(format!("{n} {octets}")));
            }
            Command::List(None) => {
                let summary = self.summary();
                self.send(Reply::ok(summary));
                let lines: Vec<String> = self.live().map(|(n, m)| format!("{n} {}", m.size)).collect();
                encode_lines(&mut self.output, lines.iter().map(String::as_str));
            }
            Command::List(Some(n)) => {
                if let Some(m) = self.message(n) {
                    let size = m.size;
                    self.send(Reply::ok(format!("{n} {size}")));
                }
            }
            Command::Uidl(None) => {
                self.send(Reply::ok(""));
                let lines: Vec<String> = self.live().map(|(n, m)| format!("{n} {}", m.uidl)).collect();
                encode_lines(&mut self.output, lines.iter().map(String::as_str));
            }
            Command::Uidl(Some(n)) => {
                if let Some(m) = self.message(n) {
                    let line = format!("{n} {}", m.uidl);
                    self.send(Reply::ok(line));
                }
            }
            Command::Retr(n) | Command::Top(n, _) => {
                let top = match command {
                    Command::Top(_, lines) => Some(lines),
                    _ => None,
                };
                let (key, size) = self.message(n).map(|m| (m.key, m.size))?;
                self.retrieving = Some((n as usize - 1, size, top));
                self.pending = Pending::Retrieve;
                return Some(Event::Retrieve { key, number: n, top });
            }
            Command::Dele(n) => {
                let index = (n as usize).wrapping_sub(1);
                match self.messages.get_mut(index) {
                    Some(m) if m.deleted => self.send(Reply::err(format!("message {n} already deleted"))),
                    Some(m) => {
                        m.deleted = true;
                        self.send(Reply::ok(format!("message {n} deleted")));
                    }
                    None => self.no_such_message(),
                }
            }
            Command::Noop => self.send(Reply::ok("")),
            Command::Rset => {
                for m in &mut self.messages {
                    m.deleted = false;
                }
                let summary = self.summary();
                self.send(Reply::ok(format!("maildrop has {summary}")));
            }
            Command::Quit => {
                let delete: Vec<u64> = self.messages.iter().filter(|m| m.deleted).map(|m| m.key).collect();
                let seen = self.messages.iter().filter(|m| m.retrieved && !m.deleted).map(|m| m.key).collect();
                self.pending = Pending::Quit;
                return Some(Event::Quit { delete, seen });
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop => {
                self.send(Reply::err("Already logged in"));
            }
            Command::Stls => self.send(Reply::err("STLS is valid only before logging in")),
            Command::Utf8 => self.send(Reply::err("UTF8 is valid only before logging in")),
            Command::Capa => self.capa(),
        }
        None
    }

    /// The messages not marked deleted, with their numbers.
    fn live(&self) -> impl Iterator<Item = (usize, &Message)> {
        self.messages.iter().enumerate().filter(|(_, m)| !m.deleted).map(|(i, m)| (i + 1, m))
    }

    /// Message `n` if it exists and is not marked deleted; otherwise the `-ERR` is sent.
    fn message(&mut self, n: MessageNumber) -> Option<&Message> {
        let index = (n as usize).wrapping_sub(1);
        match self.messages.get(index) {
            Some(m) if m.deleted => {
                self.send(Reply::err(format!("message {n} is deleted")));
                None
            }
            Some(_) => self.messages.get(index),
            None => {
                self.no_such_message();
                None
            }
        }
    }

    fn no_such_message(&mut self) {
        let n = self.messages.len();
        let noun = if n == 1 { "message" } else { "messages" };
        self.send(Reply::err(format!("no such message, only {n} {noun} in maildrop")));
    }

    /// RFC 2449 `CAPA`: what this session offers now.
    fn capa(&mut self) {
        let mut caps: Vec<String> = vec!["CAPA".into(), "TOP".into(), "UIDL".into()];
        if self.state != State::Transaction {
            if self.cfg.plaintext {
                caps.push("USER".into());
            }
            if !self.cfg.mechanisms.is_empty() {
                caps.push(format!("SASL {}", self.cfg.mechanisms.join(" ")));
            }
            if self.cfg.stls && !self.cfg.tls {
                caps.push("STLS".into());
            }
        }
        caps.extend(["RESP-CODES".into(), "AUTH-RESP-CODE".into(), "PIPELINING".into(), "UTF8 USER".into()]);
        if let Some(delay) = self.cfg.login_delay {
            caps.push(format!("LOGIN-DELAY {delay}"));
        }
        caps.push("IMPLEMENTATION Postlog".into());
        self.send(Reply::ok("Capability list follows"));
        encode_lines(&mut self.output, caps.iter().map(String::as_str));
    }

    fn auth_line(&mut self, line: &[u8]) -> Option<Event> {
        self.state = State::Authorization;
        match decode_response(line) {
            Ok(bytes) => {
                self.pending = Pending::Auth;
                Some(Event::AuthResponse(bytes))
            }
            Err(crate::sasl::SaslError::Cancelled) => {
                self.reply(Reply::err("Authentication cancelled"));
                None
            }
            Err(_) => {
                self.reply(Reply::err("Cannot decode the response (base64 expected)"));
                None
            }
        }
    }
}
