//! [`CommandFramer`]: client bytes to whole commands, literals included, within limits.
//!
//! IMAP commands are lines, except that a line ending in a literal announcement (`{n}`,
//! `{n+}`, `~{n}`, `~{n+}`) is followed by `n` octets of literal data and then the rest of
//! the command, which is again a line (RFC 9051 section 4.3, RFC 7888, RFC 3516). The framer
//! finds those boundaries without parsing the command and yields each command as one buffer
//! for [`parse_command`](super::parse::parse_command).
//!
//! It checks the limits as soon as it can: a literal's size when it is announced, before any
//! of its octets are read. A synchronizing literal over the limit is refused without the
//! continuation request, so the client never sends it ([`Frame::Rejected`]); a
//! non-synchronizing literal over the limit is already on its way and cannot be skipped
//! safely, so the connection must be closed ([`Frame::Close`], RFC 7888 section 4). Before
//! authentication the limits are much tighter ([`Limits::unauthenticated`]): memory
//! exhaustion by unauthenticated literals is a known class of IMAP server bugs
//! (CVE-2024-34055, CVE-2025-61600). The framer never allocates in advance for an announced
//! size; buffers grow with the octets that actually arrive.

use super::core::{Tag, is_tag_char};
use super::encode::{Code, Status, StatusKind};
use crate::secret::Secret;

/// LITERAL-'s largest non-synchronizing literal (RFC 7888 section 4).
pub const LITERAL_MINUS_MAX_BYTES: u64 = 4096;

/// Size limits for one session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, line ending included: the command line, or each piece of it between
    /// literals.
    pub max_line_bytes: usize,
    /// Largest literal (for APPEND: the largest message, what `APPENDLIMIT` advertises).
    pub max_literal_bytes: u64,
    /// Largest whole command: lines and literals together.
    pub max_command_bytes: u64,
    /// Deepest nesting of search keys, for
    /// [`parse_command_with`](super::parse::parse_command_with).
    pub max_depth: usize,
}

impl Limits {
    /// After login: Dovecot's 64 KiB lines, 64 MiB messages.
    pub const fn authenticated() -> Self {
        Self { max_line_bytes: 64 * 1024, max_literal_bytes: 64 << 20, max_command_bytes: 80 << 20, max_depth: 64 }
    }

    /// Before login: enough for `LOGIN` with literals, `AUTHENTICATE` with a SASL-IR, `ID`;
    /// nothing more.
    pub const fn unauthenticated() -> Self {
        Self { max_line_bytes: 8 * 1024, max_literal_bytes: 8 * 1024, max_command_bytes: 16 * 1024, max_depth: 8 }
    }
}

/// The framer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramerConfig {
    pub authenticated: Limits,
    pub unauthenticated: Limits,
    /// The server advertises `LITERAL-` rather than `LITERAL+`: non-synchronizing literals
    /// over [`LITERAL_MINUS_MAX_BYTES`] close the connection.
    pub literal_minus: bool,
}

impl Default for FramerConfig {
    fn default() -> Self {
        Self {
            authenticated: Limits::authenticated(),
            unauthenticated: Limits::unauthenticated(),
            literal_minus: false,
        }
    }
}

/// Why the framer refused a command or must close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A line over [`Limits::max_line_bytes`]; it was discarded up to its end.
    LineTooLong { max_bytes: usize },
    /// A literal announced over [`Limits::max_literal_bytes`] (`len_bytes` saturates).
    LiteralTooBig { len_bytes: u64, max_bytes: u64 },
    /// The command would exceed [`Limits::max_command_bytes`].
    CommandTooBig { max_bytes: u64 },
    /// LITERAL-: a non-synchronizing literal over [`LITERAL_MINUS_MAX_BYTES`].
    NonSyncLiteralTooBig { len_bytes: u64 },
    /// In IDLE, a line other than `DONE`.
    ExpectedDone,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LineTooLong { max_bytes } => write!(f, "line longer than {max_bytes} octets"),
            Self::LiteralTooBig { len_bytes, max_bytes } => {
                write!(f, "literal of {len_bytes} octets over the limit of {max_bytes}")
            }
            Self::CommandTooBig { max_bytes } => write!(f, "command longer than {max_bytes} octets"),
            Self::NonSyncLiteralTooBig { len_bytes } => write!(
                f,
                "non-synchronizing literal of {len_bytes} octets over the LITERAL- limit of {LITERAL_MINUS_MAX_BYTES}"
            ),
            Self::ExpectedDone => f.write_str("expected DONE"),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// The response to a [`Frame::Rejected`]: `tag NO [TOOBIG] ...` for a literal or command
    /// over the limit (the client may retry smaller), `tag BAD [TOOBIG] ...` for an over-long
    /// line, `tag BAD expected DONE`; `*` instead of the tag when there is none (for
    /// [`FrameError::ExpectedDone`], pass the IDLE command's tag).
    pub fn status(&self, tag: Option<Tag>) -> Status {
        let (kind, code) = match self {
            Self::LiteralTooBig { .. } | Self::CommandTooBig { .. } if tag.is_some() => {
                (StatusKind::No, Some(Code::TooBig))
            }
            Self::ExpectedDone => (StatusKind::Bad, None),
            _ => (StatusKind::Bad, Some(Code::TooBig)),
        };
        Status { tag, kind, code, text: self.to_string() }
    }

    /// The response to a [`Frame::Close`]: `* BYE [TOOBIG] ...`.
    pub fn bye(&self) -> Status {
        Status::bye(self.to_string()).with_code(Code::TooBig)
    }
}

/// What the framer found in the input.
#[derive(Debug)]
pub enum Frame {
    /// A whole command: its lines and literal octets as received, final line ending
    /// included. Pass it to [`parse_command`](super::parse::parse_command).
    Command(Vec<u8>),
    /// The client announced a synchronizing literal within the limits and waits: send
    /// `+ Ready for literal data` ([`encode_continuation`](super::encode::encode_continuation)).
    Continue,
    /// After [`CommandFramer::expect_done`]: the client ended IDLE.
    Done,
    /// After [`CommandFramer::expect_authenticate_line`]: the client's SASL response line,
    /// without its line ending (base64, or `*` to cancel): give it to
    /// [`sasl::decode_response`](crate::sasl::decode_response).
    AuthenticateLine(Secret<Vec<u8>>),
    /// The command (or IDLE/AUTHENTICATE line) was discarded: answer with
    /// [`FrameError::status`] and carry on. The tag is the command's, if it had a valid one.
    Rejected { tag: Option<Tag>, error: FrameError },
    /// Literal octets the server will not read are on their way: send [`FrameError::bye`]
    /// and close. The framer takes no more input.
    Close { tag: Option<Tag>, error: FrameError },
}

/// What the next line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Command,
    Done,
    AuthenticateLine,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Reading a line (of a command, or the DONE/SASL line).
    Line,
    /// Copying the octets of a literal.
    Literal {
        remaining: u64,
    },
    /// Dropping the rest of an over-long line; `tail` keeps its last octets to see whether it
    /// announced a non-synchronizing literal.
    Discard {
        tag: Option<Tag>,
        error: FrameError,
        tail: Vec<u8>,
    },
    Closed,
}

/// Octets of an over-long line kept to recognise a literal announcement at its end.
const TAIL_BYTES: usize = 32;

/// A literal announced at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Announcement {
    /// Saturates at `u64::MAX`.
    len: u64,
    non_sync: bool,
}

/// The literal announcement at the end of `line` (without its LF; a CR is allowed).
fn announcement(line: &[u8]) -> Option<Announcement> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, non_sync) = match line.strip_suffix(b"+") {
        Some(line) => (line, true),
        None => (line, false),
    };
    let digits_start = line.iter().rposition(|b| !b.is_ascii_digit()).map_or(0, |i| i + 1);
    let digits = &line[digits_start..];
    if digits.is_empty() || line[..digits_start].last() != Some(&b'{') {
        return None;
    }
    let len = digits.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    Some(Announcement { len, non_sync })
}

/// The tag at the start of a command, if it has a valid one followed by a space.
fn tag_of(command: &[u8]) -> Option<Tag> {
    let end = command.iter().position(|&b| !is_tag_char(b))?;
    if command[end] != b' ' {
        return None;
    }
    // Tag characters are ASCII.
    Tag::new(std::str::from_utf8(&command[..end]).ok()?).ok()
}

/// Splits client input into commands; see the module documentation.
///
/// ```text
/// server                                    CommandFramer
/// bytes read ──────── handle_bytes ────────► buffer
/// loop { poll() } ◄── Frame ─────────────── lines, literals, limits
///   Command(bytes) ─► parse_command ─► run, answer
///   Continue ──────► write "+ Ready for literal data"
///   Rejected ──────► write error.status(tag)
///   Close ─────────► write error.bye(), close
/// ```
/// Call [`poll`](Self::poll) until it returns `None` after each
/// [`handle_bytes`](Self::handle_bytes): then every byte handed over has been consumed and
/// the framer holds at most one partial command.
#[derive(Debug)]
pub struct CommandFramer {
    config: FramerConfig,
    authenticated: bool,
    expect: Expect,
    input: Vec<u8>,
    pos: usize,
    /// The command so far.
    command: Vec<u8>,
    /// Where the current line starts in `command`.
    line_start: usize,
    state: State,
}

impl CommandFramer {
    /// A framer for a new, unauthenticated connection.
    pub fn new(config: FramerConfig) -> Self {
        Self {
            config,
            authenticated: false,
            expect: Expect::Command,
            input: Vec::new(),
            pos: 0,
            command: Vec::new(),
            line_start: 0,
            state: State::Line,
        }
    }

    /// Switches between the unauthenticated and authenticated limits (after LOGIN or
    /// AUTHENTICATE succeeded). Applies to literals announced from now on.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        if self.authenticated { self.config.authenticated } else { self.config.unauthenticated }
    }

    /// The next line is IDLE's `DONE` ([`Frame::Done`], or [`Frame::Rejected`] with
    /// [`FrameError::ExpectedDone`]). Call it when the `+ idling` continuation is sent.
    pub fn expect_done(&mut self) {
        self.expect = Expect::Done;
    }

    /// The next line is a SASL response ([`Frame::AuthenticateLine`]). Call it each time a
    /// `+ <challenge>` is sent.
    pub fn expect_authenticate_line(&mut self) {
        self.expect = Expect::AuthenticateLine;
    }

    /// Whether [`Frame::Close`] was returned: no more input is taken.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bytes read from the client.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.state != State::Closed {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The next frame, or `None` when more input is needed.
    pub fn poll(&mut self) -> Option<Frame> {
        let frame = self.step();
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        frame
    }

    fn step(&mut self) -> Option<Frame> {
        loop {
            match &mut self.state {
                State::Closed => {
                    self.pos = self.input.len();
                    return None;
                }
                State::Literal { remaining } => {
                    let available = self.input.len() - self.pos;
                    if available == 0 {
                        return None;
                    }
                    // At most `available`, a usize.
                    let n = (*remaining).min(available as u64) as usize;
                    self.command.extend_from_slice(&self.input[self.pos..self.pos + n]);
                    self.pos += n;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = State::Line;
                        self.line_start = self.command.len();
                    }
                }
                State::Discard { tail, .. } => {
                    let rest = &self.input[self.pos..];
                    let lf = rest.iter().position(|&b| b == b'\n');
                    let dropped = &rest[..lf.unwrap_or(rest.len())];
                    tail.extend_from_slice(&dropped[dropped.len().saturating_sub(TAIL_BYTES)..]);
                    let excess = tail.len().saturating_sub(TAIL_BYTES);
                    tail.drain(..excess);
                    let Some(lf) = lf else {
                        self.pos = self.input.len();
                        return None;
                    };
                    self.pos += lf + 1;
                    if let State::Discard { tag, error, tail } = std::mem::replace(&mut self.state, State::Line) {
                        return Some(self.after_discard(tag, error, &tail));
                    }
                }
                State::Line => {
                    if let Some(frame) = self.line() {
                        return Some(frame);
                    }
                    if self.pos == self.input.len() && self.state == State::Line {
                        return None;
                    }
                }
            }
        }
    }

    /// Ends a discarded line: closes if it announced a non-synchronizing literal (its octets
    /// follow and would be taken for commands), else rejects the command.
    fn after_discard(&mut self, tag: Option<Tag>, error: FrameError, tail: &[u8]) -> Frame {
        self.reset();
        let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
        if tail.ends_with(b"+}") {
            self.state = State::Closed;
            return Frame::Close { tag, error };
        }
        Frame::Rejected { tag, error }
    }

    fn reset(&mut self) {
        self.command.clear();
        self.line_start = 0;
        self.expect = Expect::Command;
        self.state = State::Line;
    }

    /// Starts discarding the current line after `error`.
    fn discard(&mut self, error: FrameError) {
        let tag = if self.expect == Expect::Command { tag_of(&self.command) } else { None };
        let line = &self.command[self.line_start..];
        let tail = line[line.len().saturating_sub(TAIL_BYTES)..].to_vec();
        self.command.clear();
        self.line_start = 0;
        self.state = State::Discard { tag, error, tail };
    }

    /// Moves input into the current line up to its LF; returns a frame when the line ends one.
    fn line(&mut self) -> Option<Frame> {
        let limits = self.limits();
        let rest = &self.input[self.pos..];
        // Octets the line may still take, its LF included; none beyond are copied.
        let room = limits.max_line_bytes.saturating_sub(self.command.len() - self.line_start);
        let window = &rest[..rest.len().min(room)];
        let lf = window.iter().position(|&b| b == b'\n');
        let take = lf.map_or(window.len(), |i| i + 1);
        self.command.extend_from_slice(&rest[..take]);
        self.pos += take;
        if lf.is_none() && rest.len() >= room {
            // `room` octets and no LF: the line cannot end within the limit.
            self.discard(FrameError::LineTooLong { max_bytes: limits.max_line_bytes });
            return None;
        }
        if self.command.len() as u64 > limits.max_command_bytes {
            let error = FrameError::CommandTooBig { max_bytes: limits.max_command_bytes };
            if lf.is_none() {
                self.discard(error);
                return None;
            }
            // The line is complete: refuse now, closing if it announced literal octets.
            let line = &self.command[self.line_start..self.command.len() - 1];
            let non_sync = self.expect == Expect::Command && announcement(line).is_some_and(|a| a.non_sync);
            let tag = if self.expect == Expect::Command { tag_of(&self.command) } else { None };
            return Some(self.refuse(tag, error, non_sync));
        }
        lf?;
        let line_end = self.command.len() - 1;
        let content = &self.command[self.line_start..line_end];
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        match self.expect {
            Expect::Done => {
                let done = content.eq_ignore_ascii_case(b"DONE");
                self.reset();
                return Some(if done {
                    Frame::Done
                } else {
                    Frame::Rejected { tag: None, error: FrameError::ExpectedDone }
                });
            }
            Expect::AuthenticateLine => {
                let line = content.to_vec();
                self.reset();
                return Some(Frame::AuthenticateLine(Secret::new(line)));
            }
            Expect::Command => {}
        }
        if self.line_start == 0 && content.is_empty() {
            // A blank line between commands: ignored, as clients sometimes send them.
            self.reset();
            return None;
        }
        let Some(literal) = announcement(content) else {
            let command = std::mem::take(&mut self.command);
            self.reset();
            return Some(Frame::Command(command));
        };
        let tag = tag_of(&self.command);
        if self.config.literal_minus && literal.non_sync && literal.len > LITERAL_MINUS_MAX_BYTES {
            return Some(self.refuse(tag, FrameError::NonSyncLiteralTooBig { len_bytes: literal.len }, true));
        }
        if literal.len > limits.max_literal_bytes {
            let error = FrameError::LiteralTooBig { len_bytes: literal.len, max_bytes: limits.max_literal_bytes };
            return Some(self.refuse(tag, error, literal.non_sync));
        }
        if (self.command.len() as u64).saturating_add(literal.len) > limits.max_command_bytes {
            let error = FrameError::CommandTooBig { max_bytes: limits.max_command_bytes };
            return Some(self.refuse(tag, error, literal.non_sync));
        }
        if literal.len == 0 {
            self.line_start = self.command.len();
        } else {
            self.state = State::Literal { remaining: literal.len };
        }
        (!literal.non_sync).then_some(Frame::Continue)
    }

    /// Refuses a literal before reading any of it: the client waits for a synchronizing
    /// literal's continuation, which it will not get; a non-synchronizing one is coming, so
    /// the connection closes.
    fn refuse(&mut self, tag: Option<Tag>, error: FrameError, non_sync: bool) -> Frame {
        self.reset();
        if non_sync {
            self.state = State::Closed;
            self.pos = self.input.len();
            Frame::Close { tag, error }
        } else {
            Frame::Rejected { tag, error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame until the framer needs input, with commands and lines as text.
    fn frames(framer: &mut CommandFramer, input: &[u8]) -> Vec<String> {
        framer.handle_bytes(input);
        std::iter::from_fn(|| framer.poll()).map(describe).collect()
    }

    fn describe(frame: Frame) -> String {
        match frame {
            Frame::Command(c) => format!("command {}", String::from_utf8_lossy(&c).escape_debug()),
            Frame::Continue => "continue".into(),
            Frame::Done => "done".into(),
            Frame::AuthenticateLine(l) => format!("auth {}", String::from_utf8_lossy(l.expose_secret())),
            Frame::Rejected { tag, error } => format!("rejected {tag:?} {error}"),
            Frame::Close { tag, error } => format!("close {tag:?} {error}"),
        }
    }

    fn authenticated() -> CommandFramer {
        let mut framer = CommandFramer::new(FramerConfig::default());
        framer.set_authenticated(true);
        framer
    }

    #[test]
    fn announcements() {
        let a = |s: &[u8]| announcement(s);
        assert_eq!(a(b"a LOGIN {5}"), Some(Announcement { len: 5, non_sync: false }));
        assert_eq!(a(b"a LOGIN {5+}\r"), Some(Announcement { len: 5, non_sync: true }));
        assert_eq!(a(b"a APPEND x ~{10}"), Some(Announcement { len: 10, non_sync: false }));
        assert_eq!(a(b"{99999999999999999999999}"), Some(Announcement { len: u64::MAX, non_sync: false }));
        for none in [&b"a NOOP"[..], b"{}", b"{+}", b"5}", b"{5 }", b"{5}x", b"{-5}", b""] {
            assert_eq!(a(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn pipelined_commands_come_out_in_order() {
        let mut f = authenticated();
        assert_eq!(
            frames(&mut f, b"a NOOP\r\nb CAPABILITY\n\r\nc LOGOUT\r\nd"),
            ["command a NOOP\\r\\n", "command b CAPABILITY\\n", "command c LOGOUT\\r\\n"]
        );
        assert_eq!(frames(&mut f, b" NOOP\r\n"), ["command d NOOP\\r\\n"]);
    }

    #[test]
    fn sync_literal_waits_for_continuation() {
        let mut f = authenticated();
        assert_eq!(frames(&mut f, b"a LOGIN {5}\r\n"), ["continue"]);
        assert_eq!(frames(&mut f, b"alice {6}\r\n"), ["continue"]);
        assert_eq!(frames(&mut f, b"sec"), Vec::<String>::new());
        assert_eq!(frames(&mut f, b"ret\r\n"), ["command a LOGIN {5}\\r\\nalice {6}\\r\\nsecret\\r\\n"]);
    }

    #[test]
    fn non_sync_literals_need_no_continuation() {
        // RFC 7888 section 3 example.
        let mut f = authenticated();
        assert_eq!(
            frames(&mut f, b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"),
            ["command A001 LOGIN {11+}\\r\\nFRED FOOBAR {7+}\\r\\nfat man\\r\\n"]
        );
        // A literal may hold CRLF and "{n}" text that is not an announcement.
        assert_eq!(
            frames(&mut f, b"a SEARCH TEXT {7+}\r\n{3}\r\nab\r\n"),
            ["command a SEARCH TEXT {7+}\\r\\n{3}\\r\\nab\\r\\n"]
        );
        assert_eq!(frames(&mut f, b"a APPEND x {0}\r\n\r\n"), ["continue", "command a APPEND x {0}\\r\\n\\r\\n"]);
    }

    #[test]
    fn literals_survive_every_split() {
        let input: &[u8] =
            b"A1 LOGIN {5}\r\nalice {6+}\r\nse\ncr\r\nA2 APPEND Drafts (\\Seen) ~{4}\r\n\0a}\n UTF8 (~{2+}\r\nxy)\r\nA3 NOOP\r\n";
        let whole = frames(&mut authenticated(), input);
        assert_eq!(
            whole,
            [
                "continue",
                "command A1 LOGIN {5}\\r\\nalice {6+}\\r\\nse\\ncr\\r\\n",
                "continue",
                "command A2 APPEND Drafts (\\\\Seen) ~{4}\\r\\n\\0a}\\n UTF8 (~{2+}\\r\\nxy)\\r\\n",
                "command A3 NOOP\\r\\n",
            ]
        );
        for split in 0..=input.len() {
            let mut f = authenticated();
            let mut got = frames(&mut f, &input[..split]);
            got.extend(frames(&mut f, &input[split..]));
            assert_eq!(got, whole, "split at {split}");
        }
        // Byte by byte.
        let mut f = authenticated();
        let got: Vec<String> = input.iter().flat_map(|b| frames(&mut f, std::slice::from_ref(b))).collect();
        assert_eq!(got, whole);
    }

    #[test]
    fn sync_literal_over_the_limit_is_refused_before_reading() {
        let mut f = authenticated();
        let limit = Limits::authenticated().max_literal_bytes;
        let announce = format!("A003 APPEND INBOX {{{}}}\r\n", limit + 1);
        let got = frames(&mut f, announce.as_bytes());
        assert_eq!(
            got,
            [format!("rejected Some(Tag(\"A003\")) literal of {} octets over the limit of {limit}", limit + 1)]
        );
        // No continuation was sent, so the client's next line is a new command.
        assert_eq!(frames(&mut f, b"A004 NOOP\r\n"), ["command A004 NOOP\\r\\n"]);
        let status = FrameError::LiteralTooBig { len_bytes: 9, max_bytes: 8 }.status(Tag::new("A003").ok());
        assert_eq!(status.encode(), b"A003 NO [TOOBIG] literal of 9 octets over the limit of 8\r\n");
    }

    #[test]
    fn non_sync_literal_over_the_limit_closes() {
        let mut f = authenticated();
        let got = frames(&mut f, b"A003 APPEND INBOX {99999999999+}\r\nFrom: x\r\n");
        assert_eq!(got, ["close Some(Tag(\"A003\")) literal of 99999999999 octets over the limit of 67108864"]);
        assert!(f.is_closed());
        assert_eq!(frames(&mut f, b"A004 NOOP\r\n"), Vec::<String>::new());
        let bye = FrameError::LiteralTooBig { len_bytes: 9, max_bytes: 8 }.bye();
        assert_eq!(bye.encode(), b"* BYE [TOOBIG] literal of 9 octets over the limit of 8\r\n");
    }

    #[test]
    fn literal_minus_caps_non_sync_literals() {
        let mut f = CommandFramer::new(FramerConfig { literal_minus: true, ..FramerConfig::default() });
        f.set_authenticated(true);
        assert_eq!(frames(&mut f, b"a LOGIN {4096+}\r\n"), Vec::<String>::new());
        let mut f = CommandFramer::new(FramerConfig { literal_minus: true, ..FramerConfig::default() });
        f.set_authenticated(true);
        assert_eq!(
            frames(&mut f, b"a APPEND x {4097+}\r\n"),
            ["close Some(Tag(\"a\")) non-synchronizing literal of 4097 octets over the LITERAL- limit of 4096"]
        );
        // A synchronizing literal of the same size is fine.
        let mut f = CommandFramer::new(FramerConfig { literal_minus: true, ..FramerConfig::default() });
        f.set_authenticated(true);
        assert_eq!(frames(&mut f, b"a APPEND x {4097}\r\n"), ["continue"]);
    }

    #[test]
    fn unauthenticated_limits_are_tight() {
        let mut f = CommandFramer::new(FramerConfig::default());
        assert_eq!(f.limits(), Limits::unauthenticated());
        assert_eq!(frames(&mut f, b"a LOGIN {8192}\r\n"), ["continue"]);
        let mut f = CommandFramer::new(FramerConfig::default());
        assert_eq!(
            frames(&mut f, b"a LOGIN {8193}\r\n"),
            ["rejected Some(Tag(\"a\")) literal of 8193 octets over the limit of 8192"]
        );
        // Several literals, each within the literal limit, over the command limit.
        let mut f = CommandFramer::new(FramerConfig::default());
        let mut got = frames(&mut f, b"a LOGIN {8000+}\r\n");
        got.extend(frames(&mut f, &[b'u'; 8000]));
        got.extend(frames(&mut f, b" {8000+}\r\n"));
        got.extend(frames(&mut f, &[b'p'; 8000]));
        got.extend(frames(&mut f, b" {8000+}\r\n"));
        assert_eq!(got, ["close Some(Tag(\"a\")) command longer than 16384 octets"]);
        // After login, the same literal passes.
        let mut f = CommandFramer::new(FramerConfig::default());
        f.set_authenticated(true);
        assert_eq!(frames(&mut f, b"a APPEND INBOX {8193}\r\n"), ["continue"]);
    }

    #[test]
    fn long_lines_are_discarded_to_their_end() {
        let mut f = CommandFramer::new(FramerConfig::default());
        let mut got = frames(&mut f, b"a1 SEARCH TEXT ");
        for _ in 0..100 {
            got.extend(frames(&mut f, &[b'x'; 1000]));
        }
        got.extend(frames(&mut f, b"\r\na2 NOOP\r\n"));
        assert_eq!(got, ["rejected Some(Tag(\"a1\")) line longer than 8192 octets", "command a2 NOOP\\r\\n"]);
        let status = FrameError::LineTooLong { max_bytes: 8192 }.status(Tag::new("a1").ok());
        assert_eq!(status.encode(), b"a1 BAD [TOOBIG] line longer than 8192 octets\r\n");
        // The framer holds at most one line's worth of input meanwhile.
        assert!(f.command.capacity() < 64 * 1024, "{}", f.command.capacity());
    }

    #[test]
    fn long_line_announcing_a_non_sync_literal_closes() {
        let mut f = CommandFramer::new(FramerConfig::default());
        let mut line = b"a1 LOGIN ".to_vec();
        line.extend_from_slice(&[b'x'; 9000]);
        line.extend_from_slice(b" {5+}\r\nhello\r\n");
        assert_eq!(frames(&mut f, &line), ["close Some(Tag(\"a1\")) line longer than 8192 octets"]);
        let mut f = CommandFramer::new(FramerConfig::default());
        line.truncate(line.len() - 13);
        line.extend_from_slice(b" {5}\r\n");
        assert_eq!(frames(&mut f, &line), ["rejected Some(Tag(\"a1\")) line longer than 8192 octets"]);
    }

    #[test]
    fn idle_done_and_authenticate_lines() {
        let mut f = authenticated();
        assert_eq!(frames(&mut f, b"a IDLE\r\n"), ["command a IDLE\\r\\n"]);
        f.expect_done();
        assert_eq!(frames(&mut f, b"done\r\nb NOOP\r\n"), ["done", "command b NOOP\\r\\n"]);
        f.expect_done();
        assert_eq!(frames(&mut f, b"DONE now\r\n"), ["rejected None expected DONE"]);
        assert_eq!(FrameError::ExpectedDone.status(Tag::new("a").ok()).encode(), b"a BAD expected DONE\r\n");

        let mut f = CommandFramer::new(FramerConfig::default());
        assert_eq!(frames(&mut f, b"a AUTHENTICATE PLAIN\r\n"), ["command a AUTHENTICATE PLAIN\\r\\n"]);
        f.expect_authenticate_line();
        // A SASL line is never a literal announcement and never a command.
        assert_eq!(frames(&mut f, b"AGFsaWNlAHNlY3JldA== {5}\r\n"), ["auth AGFsaWNlAHNlY3JldA== {5}"]);
        f.expect_authenticate_line();
        assert_eq!(frames(&mut f, b"*\n"), ["auth *"]);
        f.expect_authenticate_line();
        let mut got = frames(&mut f, &[b'A'; 9000]);
        got.extend(frames(&mut f, b"\r\nb NOOP\r\n"));
        assert_eq!(got, ["rejected None line longer than 8192 octets", "command b NOOP\\r\\n"]);
    }

    #[test]
    fn blank_lines_are_skipped_and_buffers_reset() {
        let mut f = authenticated();
        assert_eq!(frames(&mut f, b"\r\n\n\r\na NOOP\r\n"), ["command a NOOP\\r\\n"]);
        assert!(f.input.is_empty() && f.command.is_empty());
    }
}
