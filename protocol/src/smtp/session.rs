//! [`Session`]: the server side of one SMTP, submission or LMTP conversation, sans IO.
//!
//! ```text
//!  server                                   Session
//!  bytes read ───────── input(bytes) ──────► line framing ─► parse_command ─► state checks
//!  write take_output() ◄── replies queued ◄──┤
//!  poll() ◄──────────────── Event ───────────┘  NeedInput | Mail | Rcpt | Vrfy | Auth |
//!                                               AuthResponse | StartTls | Deliver | Close
//!  answer_mail / answer_rcpt / answer_vrfy / auth_challenge / auth_done / tls_started /
//!  answer_delivery ─────────────────────────► the reply, next state
//! ```
//! The server calls [`poll`](Session::poll) until it returns [`Event::NeedInput`] (write the
//! queued output, read, call [`input`](Session::input)) or [`Event::Close`] (write the output,
//! close). Every other event is a question that must be answered with its method before the
//! next `poll`. Replies are queued, not written, so pipelined commands get their replies in
//! one write (RFC 2920).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::command::{BodyType, Command, ForwardPath, MailParams, Mailbox, RcptParams, parse_command};
use super::data::{ContentDecoder, Framing, Newlines};
use super::reply::Reply;

/// Which protocol the listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from other servers (port 25).
    Smtp,
    /// Mail from users (587 with STARTTLS, 465 with implicit TLS): AUTH first.
    Submission,
    /// LMTP from a local MTA (RFC 2033): LHLO, one reply per recipient after the data.
    Lmtp,
}

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub mode: Mode,
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// Replies 4xx/5xx to commands after which the session is closed with `421` (the count
    /// starts over when a message is delivered).
    pub max_errors: u32,
    /// Longest command line, CRLF included.
    pub max_line: usize,
    pub newlines: Newlines,
    /// STARTTLS may be offered (a certificate is there and the connection is not TLS yet).
    pub starttls: bool,
    /// The connection is TLS already (implicit TLS).
    pub tls: bool,
    /// AUTH is offered (submission).
    pub auth: bool,
    /// MAIL needs a successful AUTH first (submission).
    pub require_auth: bool,
    /// The SASL mechanisms to advertise now (they change after STARTTLS).
    pub mechanisms: Vec<String>,
    pub vrfy: bool,
    /// Refuse unauthenticated clients that send more after a command that ends a pipelined
    /// group, or any pipelining without having seen `PIPELINING` (Postfix's
    /// `smtpd_forbid_unauth_pipelining`).
    pub forbid_unauth_pipelining: bool,
}

impl SessionConfig {
    pub fn new(hostname: &str, mode: Mode) -> SessionConfig {
        SessionConfig {
            hostname: hostname.to_string(),
            mode,
            max_message_size: 50 << 20,
            max_recipients: 1000,
            max_errors: 20,
            max_line: 4096,
            newlines: Newlines::default(),
            starttls: false,
            tls: false,
            auth: mode == Mode::Submission,
            require_auth: mode == Mode::Submission,
            mechanisms: Vec::new(),
            vrfy: false,
            forbid_unauth_pipelining: mode != Mode::Lmtp,
        }
    }
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub path: ForwardPath,
    pub params: RcptParams,
}

/// The mail transaction being built: envelope, then content.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// `None`: the null sender `<>`.
    pub from: Option<Mailbox>,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
    /// The content as received: dot-unstuffed, CRLF line endings (normalised per policy).
    pub content: Vec<u8>,
    decoder: Option<ContentDecoder>,
    /// A BDAT chunk has been received (DATA and more RCPTs are out of sequence).
    chunked: bool,
    /// Octets received in BDAT chunks.
    chunk_octets: u64,
}

/// What the server must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write [`Session::take_output`], read, pass the bytes to [`Session::input`].
    NeedInput,
    /// Decide on the sender: [`Session::answer_mail`].
    Mail { from: Option<Mailbox>, params: MailParams },
    /// Decide on a recipient: [`Session::answer_rcpt`].
    Rcpt { to: ForwardPath, params: RcptParams },
    /// VRFY (only when enabled): [`Session::answer_vrfy`].
    Vrfy(String),
    /// Start a SASL exchange with the decoded initial response: answer with
    /// [`Session::auth_challenge`] or [`Session::auth_done`].
    Auth { mechanism: String, initial_response: Option<Vec<u8>> },
    /// The client's decoded answer to the last challenge: [`Session::auth_challenge`] or
    /// [`Session::auth_done`].
    AuthResponse(Vec<u8>),
    /// The `220` go-ahead is queued and buffered input was discarded: write the output,
    /// do the handshake, then [`Session::tls_started`] (or close if it failed).
    StartTls,
    /// The message is complete ([`Session::transaction`]): run checks, store it, then
    /// [`Session::answer_delivery`] (one reply; LMTP: one per recipient).
    Deliver,
    /// Write the output and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    /// Reading content after `DATA`.
    Data,
    /// Reading the `remaining` octets of a BDAT chunk.
    Chunk {
        remaining: u64,
        last: bool,
    },
    /// Waiting for the client's line of a SASL exchange.
    AuthLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Mail,
    Rcpt,
    Vrfy,
    Auth,
    Deliver,
    StartTls,
}

enum Line {
    Text(Vec<u8>),
    TooLong,
    BareNewline,
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
    /// A BDAT chunk is being discarded after an error: its reply.
    chunk_refusal: Option<Reply>,
    /// The MAIL or RCPT being decided.
    pending_mail: Option<(Option<Mailbox>, MailParams)>,
    pending_rcpt: Option<Recipient>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    authenticated: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    /// Inside an over-long line: dropping input up to its end.
    skipping: bool,
    closing: bool,
    /// Octets of plain-text input thrown away at STARTTLS (for the log).
    discarded_at_starttls: usize,
    /// Messages the session refused by itself at the end of their content (too big, bare
    /// newlines), not yet taken by the server (for its logs and metrics).
    refused: Vec<Reply>,
}

impl Session {
    /// A new session; the greeting is queued.
    pub fn new(cfg: SessionConfig) -> Session {
        let greeting = match cfg.mode {
            Mode::Lmtp => format!("{} LMTP Postlog", cfg.hostname),
            _ => format!("{} ESMTP Postlog", cfg.hostname),
        };
        let tls = cfg.tls;
        let mut s = Session {
            cfg,
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
            state: State::Command,
            pending: Pending::None,
            chunk_refusal: None,
            pending_mail: None,
            pending_rcpt: None,
            helo: None,
            esmtp: false,
            tls,
            authenticated: None,
            tx: None,
            errors: 0,
            skipping: false,
            closing: false,
            discarded_at_starttls: 0,
            refused: Vec::new(),
        };
        s.send(Reply::new(220, "", greeting));
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

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The name the client gave in HELO/EHLO/LHLO.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// Who logged in with AUTH.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Octets the client sent after STARTTLS, before the handshake, that were discarded.
    pub fn discarded_at_starttls(&self) -> usize {
        self.discarded_at_starttls
    }

    /// The messages refused by the session itself at the end of their content (too big, bare
    /// newlines) since the last call: their replies, for the server's logs and metrics.
    pub fn take_refusals(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.refused)
    }

    /// The protocol for the `with` clause of `Received:` (RFC 3848, RFC 6531).
    pub fn protocol_name(&self) -> String {
        let utf8 = self.tx.as_ref().is_some_and(|t| t.params.smtputf8);
        let mut name = match (self.cfg.mode, self.esmtp, utf8) {
            (Mode::Lmtp, _, false) => "LMTP".to_string(),
            (Mode::Lmtp, _, true) => "UTF8LMTP".to_string(),
            (_, false, _) => return "SMTP".to_string(),
            (_, true, false) => "ESMTP".to_string(),
            (_, true, true) => "UTF8SMTP".to_string(),
        };
        if self.tls {
            name.push('S');
        }
        if self.authenticated.is_some() {
            name.push('A');
        }
        name
    }

    /// The transaction being delivered (after [`Event::Deliver`]) or built.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// Moves the content out of the transaction being delivered (saves a copy).
    pub fn take_content(&mut self) -> Vec<u8> {
        self.tx.as_mut().map(|t| std::mem::take(&mut t.content)).unwrap_or_default()
    }

    /// The server is shutting down: `421`, then close.
    pub fn shutdown(&mut self) {
        let r = Reply::new(
            421,
            "4.3.2",
            format!("{} Service shutting down, closing transmission channel", self.cfg.hostname),
        );
        self.send(r);
        self.closing = true;
    }

    /// The client was idle too long: `421`, then close.
    pub fn timed_out(&mut self) {
        let r = Reply::new(421, "4.4.2", format!("{} Error: timeout exceeded", self.cfg.hostname));
        self.send(r);
        self.closing = true;
    }

    /// The next thing to do. Panics if the last question was not answered (a server bug).
    pub fn poll(&mut self) -> Event {
        assert_eq!(self.pending, Pending::None, "the last event was not answered");
        loop {
            if self.closing {
                return Event::Close;
            }
            let event = match self.state {
                State::Command | State::AuthLine => match self.next_line() {
                    None => {
                        self.compact();
                        return Event::NeedInput;
                    }
                    Some(Line::TooLong) => {
                        self.refuse(Reply::new(500, "5.5.0", "Error: line too long"));
                        self.state = State::Command;
                        None
                    }
                    Some(Line::BareNewline) => {
                        self.refuse(Reply::new(
                            500,
                            "5.5.2",
                            "Error: bare <LF> received; lines must end with <CR><LF>",
                        ));
                        self.state = State::Command;
                        None
                    }
                    Some(Line::Text(line)) if self.state == State::AuthLine => self.auth_line(&line),
                    Some(Line::Text(line)) => self.command_line(&line),
                },
                State::Data => self.data(),
                State::Chunk { .. } => self.chunk(),
            };
            if let Some(event) = event {
                return event;
            }
            let starved = match self.state {
                State::Data => true,
                State::Chunk { remaining, .. } => remaining > 0,
                State::Command | State::AuthLine => false,
            };
            if starved && self.pos == self.input.len() {
                self.compact();
                return Event::NeedInput;
            }
        }
    }

    // ----- answers -----------------------------------------------------------------

    /// The server's decision on the sender of [`Event::Mail`].
    pub fn answer_mail(&mut self, verdict: Result<(), Reply>) {
        assert_eq!(self.pending, Pending::Mail);
        self.pending = Pending::None;
        let (from, params) = self.pending_mail.take().expect("set with the event");
        match verdict {
            Ok(()) => {
                self.tx = Some(Transaction { from, params, ..Transaction::default() });
                self.send(Reply::new(250, "2.1.0", "Ok"));
            }
            Err(r) => self.refuse(r),
        }
    }

    /// The server's decision on the recipient of [`Event::Rcpt`].
    pub fn answer_rcpt(&mut self, verdict: Result<(), Reply>) {
        assert_eq!(self.pending, Pending::Rcpt);
        self.pending = Pending::None;
        let rcpt = self.pending_rcpt.take().expect("set with the event");
        match verdict {
            Ok(()) => {
                self.tx.as_mut().expect("RCPT needs a transaction").recipients.push(rcpt);
                self.send(Reply::new(250, "2.1.5", "Ok"));
            }
            Err(r) => self.refuse(r),
        }
    }

    pub fn answer_vrfy(&mut self, reply: Reply) {
        assert_eq!(self.pending, Pending::Vrfy);
        self.pending = Pending::None;
        self.reply(reply);
    }

    /// Sends a SASL challenge (`334 base64`) and waits for the client's line.
    pub fn auth_challenge(&mut self, challenge: &[u8]) {
        assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        let text = B64.encode(challenge);
        self.send(Reply { code: 334, status: String::new(), lines: vec![text] });
        self.state = State::AuthLine;
    }

    /// Ends the SASL exchange: `Ok(identity)` (`235`) or the failure reply.
    pub fn auth_done(&mut self, result: Result<String, Reply>) {
        assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        self.state = State::Command;
        match result {
            Ok(who) => {
                self.authenticated = Some(who);
                self.send(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(r) => self.refuse(r),
        }
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded; `mechanisms` are those to offer
    /// now. The session starts over (RFC 3207 section 4.2: the client sends EHLO again).
    pub fn tls_started(&mut self, mechanisms: Vec<String>) {
        assert_eq!(self.pending, Pending::StartTls);
        self.pending = Pending::None;
        self.tls = true;
        self.cfg.mechanisms = mechanisms;
        self.authenticated = None;
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        self.state = State::Command;
    }

    /// The outcome of [`Event::Deliver`]: one reply, or for LMTP one per recipient in order.
    pub fn answer_delivery(&mut self, replies: Vec<Reply>) {
        assert_eq!(self.pending, Pending::Deliver);
        self.pending = Pending::None;
        let expected = match self.cfg.mode {
            Mode::Lmtp => self.tx.as_ref().map_or(0, |t| t.recipients.len()),
            _ => 1,
        };
        assert_eq!(replies.len(), expected, "one reply per recipient for LMTP, else one");
        // As Postfix's smtpd_hard_error_limit: errors count "without delivering mail".
        if replies.iter().any(Reply::is_positive) {
            self.errors = 0;
        }
        for r in replies {
            self.send(r);
        }
        self.tx = None;
        self.state = State::Command;
    }

    // ----- framing -----------------------------------------------------------------

    fn compact(&mut self) {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
    }

    fn next_line(&mut self) -> Option<Line> {
        let rest = &self.input[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > self.cfg.max_line {
                // Drop what we have of the over-long line; say so when its end arrives.
                self.skipping = true;
                self.pos = self.input.len();
            }
            return None;
        };
        let start = self.pos;
        self.pos += nl + 1;
        if std::mem::take(&mut self.skipping) || nl + 1 > self.cfg.max_line {
            return Some(Line::TooLong);
        }
        let line = &self.input[start..start + nl];
        match line.strip_suffix(b"\r") {
            Some(text) => Some(Line::Text(text.to_vec())),
            None if self.cfg.newlines == Newlines::Normalize => Some(Line::Text(line.to_vec())),
            None => Some(Line::BareNewline),
        }
    }

    // ----- replies -----------------------------------------------------------------

    fn send(&mut self, r: Reply) {
        r.encode_into(&mut self.output);
    }

    /// Sends a reply to a command; an error reply counts toward `max_errors`.
    fn reply(&mut self, r: Reply) {
        let error = r.code >= 400;
        self.send(r);
        if error {
            self.count_error();
        }
    }

    fn refuse(&mut self, r: Reply) {
        debug_assert!(r.code >= 400, "{r}");
        self.reply(r);
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors && !self.closing {
            let r = Reply::new(421, "4.7.0", format!("{} Error: too many errors", self.cfg.hostname));
            self.send(r);
            self.closing = true;
        }
    }

    fn ok(&mut self) {
        self.send(Reply::new(250, "2.0.0", "Ok"));
    }

    // ----- commands ----------------------------------------------------------------

    fn command_line(&mut self, line: &[u8]) -> Option<Event> {
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(r) => {
                self.refuse(r);
                return None;
            }
        };
        if self.pipelining_violation(&cmd) {
            let r = Reply::new(554, "5.5.0", "Error: SMTP protocol synchronization");
            self.send(r);
            self.closing = true;
            return None;
        }
        self.command(cmd)
    }

    /// More input is already here after a command the client had to wait on.
    fn pipelining_violation(&self, cmd: &Command) -> bool {
        self.cfg.forbid_unauth_pipelining
            && self.authenticated.is_none()
            && self.pos < self.input.len()
            && !matches!(cmd, Command::Quit)
            && (cmd.ends_group() || !self.esmtp)
    }

    fn command(&mut self, cmd: Command) -> Option<Event> {
        let lmtp = self.cfg.mode == Mode::Lmtp;
        match cmd {
            Command::Ehlo(name) if !lmtp => self.greet(name, true),
            Command::Helo(name) if !lmtp => self.greet(name, false),
            Command::Lhlo(name) if lmtp => self.greet(name, true),
            Command::Ehlo(_) | Command::Helo(_) | Command::Lhlo(_) => {
                self.refuse(Reply::new(500, "5.5.1", "Error: command not recognized"))
            }
            Command::Mail { from, params } => return self.mail(from, params),
            Command::Rcpt { to, params } => return self.rcpt(to, params),
            Command::Data => self.data_command(),
            Command::Bdat { size, last } => self.bdat_command(size, last),
            Command::Rset => {
                self.tx = None;
                self.ok();
            }
            Command::Noop => self.ok(),
            Command::Quit => {
                self.send(Reply::new(221, "2.0.0", "Bye"));
                self.closing = true;
            }
            Command::Vrfy(what) => {
                if self.cfg.vrfy {
                    self.pending = Pending::Vrfy;
                    return Some(Event::Vrfy(what));
                }
                self.refuse(Reply::new(502, "5.5.1", "VRFY command is disabled"));
            }
            Command::Expn(_) => self.refuse(Reply::new(502, "5.5.1", "EXPN command is disabled")),
            Command::Help => self.send(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP STARTTLS AUTH VRFY\n\
                 See RFC 5321 and https://www.rfc-editor.org/",
            )),
            Command::StartTls => return self.starttls(),
            Command::Auth { mechanism, initial_response } => return self.auth(mechanism, initial_response),
        }
        None
    }

    fn need_helo(&mut self) -> bool {
        if self.helo.is_some() {
            return true;
        }
        let text = if self.cfg.mode == Mode::Lmtp { "Error: send LHLO first" } else { "Error: send HELO/EHLO first" };
        self.refuse(Reply::new(503, "5.5.1", text));
        false
    }

    fn greet(&mut self, name: String, extended: bool) {
        self.tx = None;
        self.helo = Some(name);
        self.esmtp = extended;
        if !extended {
            self.send(Reply::new(250, "", self.cfg.hostname.clone()));
            return;
        }
        let mut lines = vec![self.cfg.hostname.clone(), "PIPELINING".into()];
        lines.push(format!("SIZE {}", self.cfg.max_message_size));
        if self.cfg.vrfy {
            lines.push("VRFY".into());
        }
        if self.cfg.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.cfg.auth && !self.cfg.mechanisms.is_empty() {
            lines.push(format!("AUTH {}", self.cfg.mechanisms.join(" ")));
        }
        for ext in ["ENHANCEDSTATUSCODES", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8", "DSN"] {
            lines.push(ext.into());
        }
        self.send(Reply::multi(250, "", lines));
    }

    fn mail(&mut self, from: Option<Mailbox>, params: MailParams) -> Option<Event> {
        if !self.need_helo() {
            return None;
        }
        let refusal = if self.tx.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: nested MAIL command"))
        } else if self.cfg.require_auth && self.authenticated.is_none() {
            Some(Reply::new(530, "5.7.0", "Authentication required"))
        } else if !self.esmtp && (params != MailParams::default()) {
            Some(Reply::new(555, "5.5.4", "Error: MAIL parameters need EHLO"))
        } else if params.size.is_some_and(|s| s > self.cfg.max_message_size) {
            Some(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"))
        } else if from.as_ref().is_some_and(|m| !m.is_ascii()) && !params.smtputf8 {
            // RFC 6531 section 3.5.
            Some(Reply::new(553, "5.6.7", "Non-ASCII sender address needs the SMTPUTF8 parameter"))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refuse(r);
            return None;
        }
        self.pending = Pending::Mail;
        self.pending_mail = Some((from.clone(), params.clone()));
        Some(Event::Mail { from, params })
    }

    fn rcpt(&mut self, to: ForwardPath, params: RcptParams) -> Option<Event> {
        if !self.need_helo() {
            return None;
        }
        let refusal = match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
            Some(t) if t.chunked => Some(Reply::new(503, "5.5.1", "Error: RCPT after BDAT")),
            Some(t) if t.recipients.len() >= self.cfg.max_recipients => {
                Some(Reply::new(452, "4.5.3", "Error: too many recipients"))
            }
            Some(t) if matches!(&to, ForwardPath::Mailbox(m) if !m.is_ascii()) && !t.params.smtputf8 => {
                Some(Reply::new(553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8 in MAIL"))
            }
            Some(_) if !self.esmtp && params != RcptParams::default() => {
                Some(Reply::new(555, "5.5.4", "Error: RCPT parameters need EHLO"))
            }
            Some(_) => None,
        };
        if let Some(r) = refusal {
            self.refuse(r);
            return None;
        }
        self.pending = Pending::Rcpt;
        self.pending_rcpt = Some(Recipient { path: to.clone(), params: params.clone() });
        Some(Event::Rcpt { to, params })
    }

    fn data_command(&mut self) {
        if !self.need_helo() {
            return;
        }
        let refusal = match &self.tx {
            None => Some("Error: need MAIL command"),
            Some(t) if t.recipients.is_empty() => Some("Error: need RCPT command"),
            Some(t) if t.chunked => Some("Error: DATA after BDAT"),
            // RFC 3030 section 3: BINARYMIME content only travels in BDAT.
            Some(t) if t.params.body == BodyType::BinaryMime => Some("Error: BODY=BINARYMIME needs BDAT"),
            Some(_) => None,
        };
        if let Some(text) = refusal {
            self.refuse(Reply::new(503, "5.5.1", text));
            return;
        }
        let tx = self.tx.as_mut().expect("checked");
        tx.decoder = Some(ContentDecoder::new(Framing::Data, self.cfg.newlines, self.cfg.max_message_size));
        self.send(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.state = State::Data;
    }

    fn bdat_command(&mut self, size: u64, last: bool) {
        // RFC 3030 section 2: the chunk is read whatever the answer, so the client and the
        // server stay in step.
        let refusal = if self.helo.is_none() {
            Some(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"))
        } else {
            match &self.tx {
                None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
                Some(t) if t.recipients.is_empty() => Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
                Some(_) => None,
            }
        };
        if refusal.is_none() {
            let framing = self.chunk_framing();
            let (newlines, max) = (self.cfg.newlines, self.cfg.max_message_size);
            let tx = self.tx.as_mut().expect("checked");
            tx.chunked = true;
            match &mut tx.decoder {
                Some(d) => d.continue_with(framing),
                None => tx.decoder = Some(ContentDecoder::new(framing, newlines, max)),
            }
        }
        self.chunk_refusal = refusal;
        self.state = State::Chunk { remaining: size, last };
    }

    fn chunk_framing(&self) -> Framing {
        match self.tx.as_ref().map(|t| t.params.body) {
            Some(BodyType::BinaryMime) => Framing::Binary,
            _ => Framing::Chunk,
        }
    }

    fn starttls(&mut self) -> Option<Event> {
        let refusal = if self.tls {
            Some(Reply::new(503, "5.5.1", "Error: TLS already active"))
        } else if self.authenticated.is_some() {
            // RFC 3207 section 4.2: what was learned before TLS must be forgotten after it; a
            // login made in plain text does not carry into the TLS session, so refuse instead.
            Some(Reply::new(503, "5.5.1", "Error: STARTTLS after AUTH"))
        } else if !self.cfg.starttls {
            Some(Reply::new(502, "5.5.1", "Error: command not implemented"))
        } else if self.tx.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: MAIL transaction in progress"))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refuse(r);
            return None;
        }
        self.send(Reply::new(220, "2.0.0", "Ready to start TLS"));
        // Anything the client sent after STARTTLS came in plain text; it must never be taken
        // as a command of the TLS session (CVE-2011-0411, CVE-2021-33515).
        self.discarded_at_starttls = self.input.len() - self.pos;
        self.input.clear();
        self.pos = 0;
        self.pending = Pending::StartTls;
        Some(Event::StartTls)
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>) -> Option<Event> {
        let refusal = if !self.cfg.auth {
            Some(Reply::new(503, "5.5.1", "Error: authentication not enabled"))
        } else if self.authenticated.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: already authenticated"))
        } else if self.tx.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: MAIL transaction in progress"))
        } else if !self.esmtp {
            Some(Reply::new(503, "5.5.1", "Error: send EHLO first"))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refuse(r);
            return None;
        }
        let initial_response = match initial.as_deref() {
            None => None,
            // RFC 4954 section 4: `=` is an empty initial response.
            Some("=") => Some(Vec::new()),
            Some(b64) => match B64.decode(b64) {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    self.refuse(Reply::new(501, "5.5.2", "Cannot decode the initial response"));
                    return None;
                }
            },
        };
        self.pending = Pending::Auth;
        Some(Event::Auth { mechanism, initial_response })
    }

    fn auth_line(&mut self, line: &[u8]) -> Option<Event> {
        self.state = State::Command;
        if line == b"*" {
            self.refuse(Reply::new(501, "5.0.0", "Authentication cancelled"));
            return None;
        }
        match B64.decode(line) {
            Ok(bytes) => {
                self.pending = Pending::Auth;
                Some(Event::AuthResponse(bytes))
            }
            Err(_) => {
                self.refuse(Reply::new(501, "5.5.2", "Cannot decode the response"));
                None
            }
        }
    }

    // ----- content -----------------------------------------------------------------

    fn data(&mut self) -> Option<Event> {
        let tx = self.tx.as_mut().expect("DATA state has a transaction");
        let decoder = tx.decoder.as_mut().expect("DATA state has a decoder");
        let used = decoder.feed(&self.input[self.pos..], &mut tx.content);
        self.pos += used;
        if !decoder.is_done() {
            return None;
        }
        self.state = State::Command;
        self.end_of_content()
    }

    fn chunk(&mut self) -> Option<Event> {
        let State::Chunk { remaining, last } = self.state else { unreachable!() };
        let available = (self.input.len() - self.pos) as u64;
        let take = remaining.min(available) as usize;
        let bytes = &self.input[self.pos..self.pos + take];
        if self.chunk_refusal.is_none() {
            let tx = self.tx.as_mut().expect("accepted chunks have a transaction");
            let decoder = tx.decoder.as_mut().expect("set at BDAT");
            decoder.feed(bytes, &mut tx.content);
            tx.chunk_octets += take as u64;
        }
        self.pos += take;
        let remaining = remaining - take as u64;
        if remaining > 0 {
            self.state = State::Chunk { remaining, last };
            return None;
        }
        self.state = State::Command;
        if let Some(r) = self.chunk_refusal.take() {
            // RFC 3030 section 4.2: a failed chunk fails the transaction.
            self.tx = None;
            self.refuse(r);
            return None;
        }
        if !last {
            let size = self.tx.as_ref().map_or(0, |t| t.chunk_octets);
            self.send(Reply::new(250, "2.0.0", format!("{size} octets received")));
            return None;
        }
        let tx = self.tx.as_mut().expect("checked");
        if let Some(d) = tx.decoder.as_mut() {
            d.finish_chunks(&mut tx.content);
        }
        self.end_of_content()
    }

    /// The content is complete: refuse it (too big, bare newlines) or ask for delivery.
    fn end_of_content(&mut self) -> Option<Event> {
        let tx = self.tx.as_ref().expect("content belongs to a transaction");
        let decoder = tx.decoder.as_ref().expect("content has a decoder");
        let refusal = if decoder.too_big() {
            Some(Reply::new(552, "5.3.4", "Error: message too big"))
        } else if decoder.saw_bare_newline() {
            Some(Reply::new(550, "5.5.2", "Error: bare <CR> or <LF> in the message; lines must end with <CR><LF>"))
        } else {
            None
        };
        if let Some(r) = refusal {
            // LMTP answers the end of the data once per recipient (RFC 2033 section 4.2).
            let n = if self.cfg.mode == Mode::Lmtp { tx.recipients.len() } else { 1 };
            for _ in 0..n {
                self.send(r.clone());
            }
            self.refused.push(r);
            self.tx = None;
            self.count_error();
            return None;
        }
        self.pending = Pending::Deliver;
        Some(Event::Deliver)
    }
}
