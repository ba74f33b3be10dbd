//! smtpload: an SMTP (or LMTP) load generator for any server, Postlog or not.
//!
//! ```sh
//! cargo run --release -p postlog-benches --bin smtpload -- --server 127.0.0.1:2525 -c 16 -n 20000 \
//!     --size 4K --to-pattern 'user{n}@example.test' --recipients 100 --pipelining
//! ```
//! `-c` sessions run at once. Each one connects, reads the greeting, says EHLO (LHLO with
//! `--lmtp`), logs in with `AUTH PLAIN` when `--auth` is given (a submission port), sends up to
//! `--messages-per-connection` messages, says QUIT and connects again,
//! until `-n` messages have been sent or `--duration` has passed. A failed connection is counted
//! and replaced; the run gives up only when every attempt keeps failing.
//!
//! The latency of a message is the time from the last byte of its content (the final `.` line,
//! or the `BDAT ... LAST` chunk) to its reply, or to its last reply with `--lmtp`. A message is
//! accepted when every reply of its transaction is positive. The summary goes to stdout; with
//! `--json` one JSON line goes to stdout and the summary to stderr. Exit status: 0 when every
//! message was accepted, 1 otherwise, 2 for a usage error. See docs/benchmarks.md.
//!
//! ```text
//!  worker task (x connections)                      Shared (atomics)
//!  connect -> 220 -> EHLO -> caps  ---claim()--->   next message index, stop flag
//!  MAIL / RCPT.. / DATA or BDAT    ---record--->    ok / failed counts (progress bar)
//!  ... QUIT, reconnect                               Totals merged at the end -> report
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use postlog_benches::{percentile, rfc5322_date};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest reply accepted (all lines of one reply together); a longer one is a protocol error.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Longest generated body line, without its CRLF (RFC 5322 recommends 78 with it).
const MAX_LINE_CHARS: usize = 76;
/// Largest `--size`: every session holds one generated message in memory.
const MAX_SIZE_BYTES: usize = 1 << 30;
/// Once a session has worked, the run survives outages shorter than this (a server restart).
const OUTAGE_TOLERANCE: Duration = Duration::from_secs(10);
/// The longest pause of a session between two failed connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "smtpload",
    about = "SMTP/LMTP load generator: sends messages over concurrent sessions and reports throughput and latency",
    after_help = "Exit status: 0 when every message was accepted, 1 when any failed, 2 for a usage error."
)]
struct Args {
    /// Server to connect to (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:2525", value_name = "HOST:PORT")]
    server: String,
    /// Sessions running at once.
    #[arg(short = 'c', long, default_value_t = 16, value_name = "N")]
    connections: usize,
    /// Messages to send in all [default: 10000 unless --duration is given].
    #[arg(short = 'n', long, value_name = "M", conflicts_with = "duration")]
    messages: Option<u64>,
    /// Send for this many seconds instead of a number of messages.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Size of each generated message, headers included (suffixes K and M: 1024 and 1024²).
    #[arg(long, default_value = "4096", value_name = "BYTES", value_parser = parse_size)]
    size: usize,
    /// Send the *.eml files under DIR (searched recursively, in name order, cycled) instead of
    /// generated messages. Line endings become CRLF.
    #[arg(long, value_name = "DIR", conflicts_with = "size")]
    eml_dir: Option<PathBuf>,
    /// Envelope sender (MAIL FROM); an empty value sends the null reverse-path <>.
    #[arg(long, default_value = "load@loadgen.test", value_name = "ADDR")]
    from: String,
    /// Envelope recipient; repeat for several, used in turn.
    #[arg(long = "to", value_name = "ADDR", conflicts_with = "to_pattern")]
    to: Vec<String>,
    /// Recipients made from a pattern such as user{N}@example.test (the default without --to):
    /// {N}, in either case, becomes 1..=--recipients, used in turn.
    // (clap shows a lower-case n in braces as a line break, hence the capital in this help.)
    #[arg(long, value_name = "PATTERN")]
    to_pattern: Option<String>,
    /// How many addresses --to-pattern makes.
    #[arg(long, default_value_t = 1, value_name = "R", conflicts_with = "to")]
    recipients: u64,
    /// RCPT TO commands per message (distinct addresses).
    #[arg(long, default_value_t = 1, value_name = "K")]
    rcpts_per_message: usize,
    /// Messages per session before QUIT and a new connection (0: never reconnect).
    #[arg(long, default_value_t = 100, value_name = "P")]
    messages_per_connection: u64,
    /// Send MAIL, RCPT and DATA (or BDAT) as one group when the server advertises PIPELINING.
    #[arg(long)]
    pipelining: bool,
    /// Send each message as one BDAT ... LAST chunk when the server advertises CHUNKING.
    #[arg(long)]
    bdat: bool,
    /// Name given in EHLO/LHLO.
    #[arg(long, default_value = "loadgen.test", value_name = "NAME")]
    helo: String,
    /// Log in after EHLO with AUTH PLAIN (initial response, no TLS: for servers that allow plain
    /// text on loopback) as USER with PASSWORD, split at the first colon.
    #[arg(long, value_name = "USER:PASSWORD")]
    auth: Option<String>,
    /// Speak LMTP: LHLO instead of EHLO, and one reply per accepted recipient after the content.
    #[arg(long)]
    lmtp: bool,
    /// Seconds to wait for a connection, a write or a reply before the session counts as failed.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Print one JSON line of the results on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress bar, no notes, and with --json no summary either.
    #[arg(short, long)]
    quiet: bool,
}

/// `4096`, `4K`, `4KiB`, `1M`: K is 1024 and M 1024².
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: usize = number.parse().map_err(|_| format!("`{text}` is not a size (examples: 4096, 4K, 1M)"))?;
    let unit: usize = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        _ => return Err(format!("unknown size suffix in `{text}` (use K or M)")),
    };
    match number.checked_mul(unit) {
        Some(bytes) if bytes <= MAX_SIZE_BYTES => Ok(bytes),
        _ => Err(format!("`{text}` is larger than the 1 GiB this tool generates")),
    }
}

// ---------------------------------------------------------------------------------------------
// Replies (sans IO)

/// One server reply: the code and the text of each line (without the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.last().map_or("", String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplyError {
    /// A line that is not `NNN`, `NNN text`, or `NNN-text`, or a code that changes mid-reply.
    Malformed(String),
    TooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(line) => write!(f, "the server sent a malformed reply line: {line:?}"),
            ReplyError::TooLong => write!(f, "the server sent a reply longer than {MAX_REPLY_BYTES} bytes"),
        }
    }
}

/// Decodes the first complete reply in `input`: `Ok(Some((reply, bytes used)))`, or `Ok(None)`
/// when more bytes are needed. Lines end in CRLF; a bare LF is accepted too.
fn decode_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut lines = Vec::new();
    let mut first_code = None;
    loop {
        let Some(newline) = input[pos..].iter().position(|&b| b == b'\n') else {
            return if input.len() > MAX_REPLY_BYTES { Err(ReplyError::TooLong) } else { Ok(None) };
        };
        let raw = &input[pos..pos + newline];
        pos += newline + 1;
        if pos > MAX_REPLY_BYTES {
            return Err(ReplyError::TooLong);
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
        let code = match line.get(..3) {
            Some(digits) if digits.iter().all(u8::is_ascii_digit) && (b'1'..=b'5').contains(&digits[0]) => {
                digits.iter().fold(0u16, |code, d| code * 10 + u16::from(d - b'0'))
            }
            _ => return Err(malformed()),
        };
        if first_code.is_some_and(|first| first != code) {
            return Err(malformed());
        }
        first_code = Some(code);
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(malformed()),
        };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Some((Reply { code, lines }, pos)));
        }
    }
}

/// What the EHLO/LHLO reply advertised, of what this tool uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Capabilities {
    pipelining: bool,
    chunking: bool,
    size: bool,
    eight_bit_mime: bool,
    /// `AUTH` lists `PLAIN` (or the old `AUTH=PLAIN` form does).
    auth_plain: bool,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        // The first line is the server's greeting name; each further line is one extension.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "AUTH" => caps.auth_plain |= words.any(|m| m.eq_ignore_ascii_case("PLAIN")),
                // Pre-RFC 4954 servers (and some today, for old clients) say `AUTH=PLAIN LOGIN`.
                k if k.starts_with("AUTH=") => {
                    caps.auth_plain |= k == "AUTH=PLAIN" || words.any(|m| m.eq_ignore_ascii_case("PLAIN"))
                }
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "SIZE" => caps.size = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                _ => {}
            }
        }
        caps
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// One message ready to send: its CRLF content, and the same dot-stuffed with the final `.` line.
struct Message {
    /// The content followed by `.\r\n` when it needs no dot-stuffing, else the content alone.
    bytes: Vec<u8>,
    content_len: usize,
    stuffed: Option<Vec<u8>>,
    eight_bit: bool,
}

impl Message {
    /// `content` has CRLF line endings and ends with CRLF (or is empty).
    fn new(mut content: Vec<u8>) -> Message {
        let content_len = content.len();
        let eight_bit = content.iter().any(|&b| b >= 0x80);
        let stuffed = if needs_dot_stuffing(&content) {
            let mut stuffed = dot_stuff(&content);
            stuffed.extend_from_slice(b".\r\n");
            Some(stuffed)
        } else {
            content.extend_from_slice(b".\r\n");
            None
        };
        Message { bytes: content, content_len, stuffed, eight_bit }
    }

    /// The content as BDAT sends it.
    fn content(&self) -> &[u8] {
        &self.bytes[..self.content_len]
    }

    /// What follows a 354 reply: the dot-stuffed content and the final `.` line.
    fn data(&self) -> &[u8] {
        self.stuffed.as_deref().unwrap_or(&self.bytes)
    }
}

/// Every line ending (CRLF, LF, or a lone CR) becomes CRLF, and a last line without an ending
/// gets one.
fn normalise_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn needs_dot_stuffing(content: &[u8]) -> bool {
    content.first() == Some(&b'.') || content.windows(3).any(|w| w == b"\r\n.")
}

/// RFC 5321 4.5.2: a line starting with `.` gets one more `.` in front.
fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 64);
    let mut line_start = true;
    for &b in content {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// Makes unique, valid RFC 5322 text messages of an exact size.
struct Generator {
    size: usize,
    from: String,
    /// Right-hand side of the Message-IDs.
    domain: String,
    /// Distinguishes the Message-IDs of this run from those of other runs.
    run_id: String,
    /// Printable text the body lines are cut from.
    filler: Vec<u8>,
}

impl Generator {
    fn new(size: usize, from: &str, helo: &str) -> Generator {
        let domain = match from.rsplit_once('@') {
            Some((_, domain)) if !domain.is_empty() => domain.to_owned(),
            _ => helo.to_owned(),
        };
        // The From: header needs an addr-spec even when the envelope sender is <> or a bare
        // local part.
        let from = match from {
            "" => format!("MAILER-DAEMON@{domain}"),
            local if !local.contains('@') => format!("{local}@{domain}"),
            address => address.to_owned(),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let run_id = format!("{:x}.{:x}", now.as_micros(), std::process::id());
        Generator { size, from, domain, run_id, filler: filler_text(8192) }
    }

    /// Message number `index + 1` to `rcpts`, dated `date`. It is `size` bytes long unless the
    /// headers alone are longer.
    fn message(&self, index: u64, rcpts: &[String], date: &str) -> Vec<u8> {
        let number = index + 1;
        let mut out = Vec::with_capacity(self.size.max(512) + 3);
        push_header(&mut out, "From", &self.from);
        push_header(&mut out, "To", &rcpts.join(", "));
        push_header(&mut out, "Subject", &format!("smtpload message {number}"));
        push_header(&mut out, "Date", date);
        push_header(&mut out, "Message-ID", &format!("<{}.{number}@{}>", self.run_id, self.domain));
        push_header(&mut out, "MIME-Version", "1.0");
        push_header(&mut out, "Content-Type", "text/plain; charset=us-ascii");
        out.extend_from_slice(b"\r\n");
        let body_len = self.size.saturating_sub(out.len());
        push_body(&mut out, body_len, &self.filler, index as usize);
        out
    }
}

/// Appends `name: value` CRLF, folding the value at ", " so that lines stay within 78 bytes
/// where the value allows it.
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    for (i, part) in value.split(", ").enumerate() {
        let sep = if i == 0 { "" } else { "," };
        out.extend_from_slice(sep.as_bytes());
        if i > 0 && line_len + sep.len() + 1 + part.len() > 78 {
            out.extend_from_slice(b"\r\n");
            line_len = 0;
        }
        out.push(b' ');
        out.extend_from_slice(part.as_bytes());
        line_len += sep.len() + 1 + part.len();
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends exactly `len` bytes of text lines (at most 76 characters and CRLF each), cut from
/// `filler` starting at a place chosen by `seed`. A `len` of 1 gives one empty line (2 bytes).
fn push_body(out: &mut Vec<u8>, len: usize, filler: &[u8], seed: usize) {
    const FULL: usize = MAX_LINE_CHARS + 2;
    let window = filler.len() - MAX_LINE_CHARS;
    let mut offset = seed.wrapping_mul(7919) % window;
    let mut left = if len == 1 { 2 } else { len };
    let mut line_no = seed;
    while left > 0 {
        let line_bytes = if left <= FULL {
            left
        } else if left <= 2 * FULL {
            left / 2
        } else {
            // 60 to 76 characters, so that the text looks like prose rather than a block.
            62 + (line_no * 7) % 17
        };
        let chars = line_bytes - 2;
        out.extend_from_slice(&filler[offset..offset + chars]);
        out.extend_from_slice(b"\r\n");
        left -= line_bytes;
        offset = (offset + chars + 1) % window;
        line_no += 1;
    }
}

/// `len` bytes of lower-case words separated by single spaces, from a fixed pseudo-random
/// sequence (never starting a line with `.` and never containing `From `).
fn filler_text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "enim",
        "ad",
        "minim",
        "veniam",
        "quis",
    ];
    let mut state: u32 = 0x9e37_79b9;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(WORDS[state as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// Every `*.eml` file under `dir` (recursively), in path order, as CRLF messages.
fn load_eml_dir(dir: &Path) -> Result<Vec<Message>, String> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| format!("cannot read {}: {e}", current.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", current.display()))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml")) {
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        return Err(format!("no *.eml files under {}", dir.display()));
    }
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Message::new(normalise_crlf(&raw)))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The plan of a run

enum Source {
    Generated(Generator),
    Eml(Vec<Message>),
}

enum Recipients {
    List(Vec<String>),
    Pattern { pattern: String, count: u64 },
}

impl Recipients {
    fn count(&self) -> u64 {
        match self {
            Recipients::List(list) => list.len() as u64,
            Recipients::Pattern { count, .. } => *count,
        }
    }

    /// The `k` recipients of message `index`: the addresses are used in turn, so that every
    /// one gets the same share of the mail.
    fn pick(&self, index: u64, k: usize, out: &mut Vec<String>) {
        out.clear();
        let count = self.count();
        for j in 0..k as u64 {
            let n = (index.wrapping_mul(k as u64).wrapping_add(j)) % count;
            out.push(match self {
                Recipients::List(list) => list[n as usize].clone(),
                Recipients::Pattern { pattern, .. } => pattern.replace("{n}", &(n + 1).to_string()),
            });
        }
    }
}

enum Limit {
    Messages(u64),
    Duration(Duration),
}

struct Plan {
    server: SocketAddr,
    connections: usize,
    limit: Limit,
    source: Source,
    from: String,
    recipients: Recipients,
    rcpts_per_message: usize,
    messages_per_connection: u64,
    pipelining: bool,
    bdat: bool,
    lmtp: bool,
    helo: String,
    /// `--auth`: the user (for the summary) and the whole `AUTH PLAIN ...` command line.
    auth: Option<(String, String)>,
    timeout: Duration,
}

/// An envelope address as this tool sends it between `<` and `>`.
fn check_address(flag: &str, address: &str) -> Result<(), String> {
    if address.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'<' || b == b'>') {
        return Err(format!("{flag} `{address}`: an address may not hold spaces, control characters, < or >"));
    }
    Ok(())
}

/// `--auth USER:PASSWORD`, split at the first colon (a password may hold colons, a user name
/// may not).
fn parse_auth(text: &str) -> Result<(&str, &str), String> {
    let Some((user, password)) = text.split_once(':') else {
        return Err("--auth takes USER:PASSWORD (no colon found)".into());
    };
    if user.is_empty() {
        return Err("--auth: the user name is empty".into());
    }
    if text.contains('\0') {
        return Err("--auth: a user name or password may not hold a NUL byte".into());
    }
    Ok((user, password))
}

/// `AUTH PLAIN` with its initial response (RFC 4954, RFC 4616): base64 of
/// `authzid NUL authcid NUL password`, with an empty authzid (act as the user who logs in).
fn auth_plain_command(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let response = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!("AUTH PLAIN {response}\r\n")
}

impl Plan {
    fn from_args(args: &Args) -> Result<Plan, String> {
        let server = args
            .server
            .to_socket_addrs()
            .map_err(|e| format!("--server {}: {e}", args.server))?
            .next()
            .ok_or_else(|| format!("--server {}: no address", args.server))?;
        if args.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let limit = match (args.messages, args.duration) {
            (_, Some(0)) => return Err("--duration must be at least 1 second".into()),
            (_, Some(secs)) => Limit::Duration(Duration::from_secs(secs)),
            (Some(0), None) => return Err("--messages must be at least 1".into()),
            (Some(n), None) => Limit::Messages(n),
            (None, None) => Limit::Messages(10_000),
        };
        if args.timeout == 0 {
            return Err("--timeout must be at least 1 second".into());
        }
        if !args.from.is_empty() {
            check_address("--from", &args.from)?;
        }
        let recipients = if args.to.is_empty() {
            let pattern = args.to_pattern.clone().unwrap_or_else(|| "user{n}@example.test".into());
            let pattern = pattern.replace("{N}", "{n}");
            if !pattern.contains("{n}") {
                return Err(format!("--to-pattern `{pattern}` has no {{n}}"));
            }
            check_address("--to-pattern", &pattern.replace("{n}", "1"))?;
            if args.recipients == 0 {
                return Err("--recipients must be at least 1".into());
            }
            Recipients::Pattern { pattern, count: args.recipients }
        } else {
            for to in &args.to {
                check_address("--to", to)?;
                if to.is_empty() {
                    return Err("--to may not be empty".into());
                }
            }
            Recipients::List(args.to.clone())
        };
        if args.rcpts_per_message == 0 {
            return Err("--rcpts-per-message must be at least 1".into());
        }
        if args.rcpts_per_message as u64 > recipients.count() {
            return Err(format!(
                "--rcpts-per-message {} needs at least as many recipients, but there are {} (see --to, --recipients)",
                args.rcpts_per_message,
                recipients.count()
            ));
        }
        if args.helo.is_empty() || args.helo.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("--helo `{}` is not a name", args.helo));
        }
        let auth = match &args.auth {
            None => None,
            Some(text) => {
                let (user, password) = parse_auth(text)?;
                Some((user.to_owned(), auth_plain_command(user, password)))
            }
        };
        let source = match &args.eml_dir {
            Some(dir) => Source::Eml(load_eml_dir(dir)?),
            None => Source::Generated(Generator::new(args.size, &args.from, &args.helo)),
        };
        // More sessions than messages would only open connections to close them.
        let connections = match limit {
            Limit::Messages(n) => args.connections.min(usize::try_from(n).unwrap_or(usize::MAX)),
            Limit::Duration(_) => args.connections,
        };
        Ok(Plan {
            server,
            connections,
            limit,
            source,
            from: args.from.clone(),
            recipients,
            rcpts_per_message: args.rcpts_per_message,
            messages_per_connection: args.messages_per_connection,
            pipelining: args.pipelining,
            bdat: args.bdat,
            lmtp: args.lmtp,
            helo: args.helo.clone(),
            auth,
            timeout: Duration::from_secs(args.timeout),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Why a session ended early. Each one is a connection error.
#[derive(Debug)]
enum SessionError {
    Connect(std::io::Error),
    Io(std::io::Error),
    Timeout(&'static str),
    Closed,
    Protocol(ReplyError),
    /// The greeting, EHLO/LHLO or AUTH was refused.
    Refused {
        stage: &'static str,
        reply: Reply,
    },
    /// `--auth` was given, but the server does not offer AUTH PLAIN.
    NoAuthPlain,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Connect(e) => write!(f, "cannot connect: {e}"),
            SessionError::Io(e) => write!(f, "connection failed: {e}"),
            SessionError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            SessionError::Closed => write!(f, "the server closed the connection"),
            SessionError::Protocol(e) => e.fmt(f),
            SessionError::Refused { stage, reply } => write!(f, "the server refused the {stage}: {reply}"),
            SessionError::NoAuthPlain => {
                write!(
                    f,
                    "the server does not advertise AUTH PLAIN (some offer it only over TLS, which this tool lacks)"
                )
            }
        }
    }
}

/// Reads replies from a connection through a buffer; a reply may arrive in pieces or several
/// replies in one read (pipelining).
struct ReplyReader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    timeout: Duration,
}

impl ReplyReader {
    async fn read_reply(&mut self) -> Result<Reply, SessionError> {
        loop {
            if let Some((reply, used)) = decode_reply(&self.buf[self.start..]).map_err(SessionError::Protocol)? {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(reply);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(4096);
            let read = tokio::time::timeout(self.timeout, self.half.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(SessionError::Timeout("a reply")),
                Ok(Err(e)) => return Err(SessionError::Io(e)),
                Ok(Ok(0)) => return Err(SessionError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// The result of one mail transaction that kept the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// The code of the first negative reply; `None` when the message was accepted.
    failure: Option<u16>,
    /// From the end of the content to its (last) reply, when the content was sent.
    latency: Option<Duration>,
    /// The server said 421: it is closing the connection.
    closing: bool,
}

/// The replies of one transaction so far.
#[derive(Default)]
struct Tally {
    failure: Option<u16>,
    closing: bool,
}

impl Tally {
    /// Notes a reply; `expected` is the code class (2 or 3) that means success here.
    fn note(&mut self, reply: &Reply, expected: u16) -> bool {
        let good = reply.code / 100 == expected;
        if !good && self.failure.is_none() {
            self.failure = Some(reply.code);
        }
        if reply.code == 421 {
            self.closing = true;
        }
        good
    }

    fn outcome(&self, latency: Option<Duration>) -> Outcome {
        Outcome { failure: self.failure, latency, closing: self.closing }
    }
}

struct Session {
    reader: ReplyReader,
    writer: OwnedWriteHalf,
    caps: Capabilities,
    pipelining: bool,
    bdat: bool,
    timeout: Duration,
}

impl Session {
    async fn open(plan: &Plan) -> Result<Session, SessionError> {
        let stream = match tokio::time::timeout(plan.timeout, TcpStream::connect(plan.server)).await {
            Err(_) => return Err(SessionError::Timeout("the connection")),
            Ok(Err(e)) => return Err(SessionError::Connect(e)),
            Ok(Ok(stream)) => stream,
        };
        // Commands and content go out in as few writes as possible; Nagle would only delay them.
        stream.set_nodelay(true).map_err(SessionError::Io)?;
        let (half, writer) = stream.into_split();
        let reader = ReplyReader { half, buf: Vec::with_capacity(4096), start: 0, timeout: plan.timeout };
        let mut session = Session {
            reader,
            writer,
            caps: Capabilities::default(),
            pipelining: false,
            bdat: false,
            timeout: plan.timeout,
        };
        let greeting = session.reader.read_reply().await?;
        if greeting.code != 220 {
            return Err(SessionError::Refused { stage: "connection", reply: greeting });
        }
        let verb = if plan.lmtp { "LHLO" } else { "EHLO" };
        session.write(format!("{verb} {}\r\n", plan.helo).as_bytes()).await?;
        let reply = session.reader.read_reply().await?;
        if reply.is_positive() {
            session.caps = Capabilities::from_ehlo(&reply);
        } else if plan.lmtp || reply.code == 421 {
            return Err(SessionError::Refused { stage: verb, reply });
        } else {
            // An old server: plain SMTP, no extensions.
            session.write(format!("HELO {}\r\n", plan.helo).as_bytes()).await?;
            let reply = session.reader.read_reply().await?;
            if !reply.is_positive() {
                return Err(SessionError::Refused { stage: "HELO", reply });
            }
        }
        if let Some((_, command)) = &plan.auth {
            // Never pipelined: the server must answer before the first MAIL.
            if !session.caps.auth_plain {
                return Err(SessionError::NoAuthPlain);
            }
            session.write(command.as_bytes()).await?;
            let reply = session.reader.read_reply().await?;
            if reply.code != 235 {
                return Err(SessionError::Refused { stage: "AUTH", reply });
            }
        }
        session.pipelining = plan.pipelining && session.caps.pipelining;
        session.bdat = plan.bdat && session.caps.chunking;
        Ok(session)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        match tokio::time::timeout(self.timeout, self.writer.write_all(bytes)).await {
            Err(_) => Err(SessionError::Timeout("the server to take our data")),
            Ok(Err(e)) => Err(SessionError::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one message. An `Err` means the connection is lost (the message too).
    async fn send(&mut self, message: &Message, rcpts: &[String], plan: &Plan) -> Result<Outcome, SessionError> {
        let mut commands = format!("MAIL FROM:<{}>", plan.from);
        if self.caps.size {
            let _ = write!(commands, " SIZE={}", message.content().len());
        }
        if message.eight_bit && self.caps.eight_bit_mime {
            commands.push_str(" BODY=8BITMIME");
        }
        commands.push_str("\r\n");
        let mail_len = commands.len();
        for rcpt in rcpts {
            let _ = write!(commands, "RCPT TO:<{rcpt}>\r\n");
        }
        let mut tally = Tally::default();
        if self.pipelining {
            // RFC 2920: the whole envelope and DATA (or the BDAT chunk) in one go, then the replies.
            let sent_at = if self.bdat {
                let _ = write!(commands, "BDAT {} LAST\r\n", message.content().len());
                self.write(commands.as_bytes()).await?;
                self.write(message.content()).await?;
                Some(Instant::now())
            } else {
                commands.push_str("DATA\r\n");
                self.write(commands.as_bytes()).await?;
                None
            };
            let reply = self.reader.read_reply().await?;
            let mail_ok = tally.note(&reply, 2);
            if tally.closing {
                return Ok(tally.outcome(None));
            }
            let mut accepted = 0;
            for _ in rcpts {
                let reply = self.reader.read_reply().await?;
                accepted += usize::from(tally.note(&reply, 2) && mail_ok);
                if tally.closing {
                    return Ok(tally.outcome(None));
                }
            }
            let sent_at = match sent_at {
                Some(at) => at,
                None => {
                    let reply = self.reader.read_reply().await?;
                    if !tally.note(&reply, 3) {
                        return Ok(tally.outcome(None));
                    }
                    self.write(message.data()).await?;
                    Instant::now()
                }
            };
            self.read_final_replies(&mut tally, accepted, plan.lmtp, sent_at).await
        } else {
            let (mail, rcpt_commands) = commands.split_at(mail_len);
            self.write(mail.as_bytes()).await?;
            let reply = self.reader.read_reply().await?;
            if !tally.note(&reply, 2) {
                return Ok(tally.outcome(None));
            }
            let mut accepted = 0;
            for rcpt in rcpt_commands.split_inclusive("\r\n") {
                self.write(rcpt.as_bytes()).await?;
                let reply = self.reader.read_reply().await?;
                accepted += usize::from(tally.note(&reply, 2));
                if tally.closing {
                    return Ok(tally.outcome(None));
                }
            }
            if accepted == 0 {
                return Ok(tally.outcome(None));
            }
            let sent_at = if self.bdat {
                self.write(format!("BDAT {} LAST\r\n", message.content().len()).as_bytes()).await?;
                self.write(message.content()).await?;
                Instant::now()
            } else {
                self.write(b"DATA\r\n").await?;
                let reply = self.reader.read_reply().await?;
                if !tally.note(&reply, 3) {
                    return Ok(tally.outcome(None));
                }
                self.write(message.data()).await?;
                Instant::now()
            };
            self.read_final_replies(&mut tally, accepted, plan.lmtp, sent_at).await
        }
    }

    /// The reply to the content: one, or with LMTP one per accepted recipient (RFC 2033 4.2),
    /// and one when none was accepted.
    async fn read_final_replies(
        &mut self,
        tally: &mut Tally,
        accepted: usize,
        lmtp: bool,
        sent_at: Instant,
    ) -> Result<Outcome, SessionError> {
        let replies = if lmtp { accepted.max(1) } else { 1 };
        for _ in 0..replies {
            let reply = self.reader.read_reply().await?;
            tally.note(&reply, 2);
            if tally.closing {
                break;
            }
        }
        Ok(tally.outcome(Some(sent_at.elapsed())))
    }

    /// Ends an unfinished or refused transaction; `false` when the session cannot go on.
    async fn reset(&mut self) -> Result<bool, SessionError> {
        self.write(b"RSET\r\n").await?;
        Ok(self.reader.read_reply().await?.is_positive())
    }

    /// Says goodbye; errors do not matter any more.
    async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.reader.read_reply()).await;
        }
        let _ = self.writer.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// What every session shares while the run goes on.
struct Shared {
    plan: Arc<Plan>,
    started: Instant,
    deadline: Option<Instant>,
    next_index: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    interrupted: AtomicBool,
    gave_up: AtomicBool,
    consecutive_connect_failures: AtomicU64,
    /// Milliseconds since `started` of the last session that opened; `u64::MAX`: none yet.
    last_open_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    quiet: bool,
    noted_fallback: AtomicBool,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The index of the next message to send, or `None` when the run is over.
    fn claim(&self) -> Option<u64> {
        if self.stopped() || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        match self.plan.limit {
            Limit::Messages(n) if index >= n => None,
            _ => Some(index),
        }
    }

    fn session_opened(&self, session: &Session) {
        self.consecutive_connect_failures.store(0, Ordering::Relaxed);
        self.last_open_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let missing = (self.plan.pipelining && !session.pipelining, self.plan.bdat && !session.bdat);
        if (missing.0 || missing.1) && !self.quiet && !self.noted_fallback.swap(true, Ordering::Relaxed) {
            if missing.0 {
                eprintln!("smtpload: the server does not advertise PIPELINING; waiting for each reply");
            }
            if missing.1 {
                eprintln!("smtpload: the server does not advertise CHUNKING; sending DATA instead of BDAT");
            }
        }
    }

    /// Counts a lost or refused connection, and stops the run when connections keep failing:
    /// at least twice per session in a row, with none opening for a while (at once if none
    /// ever opened).
    fn connection_failed(&self, totals: &mut Totals, error: &SessionError) {
        totals.connection_errors += 1;
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        let failures = self.consecutive_connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let last_open = self.last_open_ms.load(Ordering::Relaxed);
        let outage_long = last_open == u64::MAX
            || self.started.elapsed().saturating_sub(Duration::from_millis(last_open)) >= OUTAGE_TOLERANCE;
        if failures >= (2 * self.plan.connections as u64).max(3) && outage_long {
            self.gave_up.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What one session task measured; merged at the end.
#[derive(Default)]
struct Totals {
    ok: u64,
    failed: u64,
    ok_bytes: u64,
    latencies_us: Vec<u64>,
    errors: BTreeMap<u16, u64>,
    connection_errors: u64,
    sessions: u64,
    pipelined_sessions: u64,
    bdat_sessions: u64,
}

impl Totals {
    fn merge(&mut self, other: Totals) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.ok_bytes += other.ok_bytes;
        self.latencies_us.extend(other.latencies_us);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.connection_errors += other.connection_errors;
        self.sessions += other.sessions;
        self.pipelined_sessions += other.pipelined_sessions;
        self.bdat_sessions += other.bdat_sessions;
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64 << failures.min(5)).min(MAX_BACKOFF)
}

async fn run_session_task(shared: Arc<Shared>) -> Totals {
    let plan = &shared.plan;
    let mut totals = Totals::default();
    let mut failures_in_a_row = 0u32;
    let mut rcpts = Vec::with_capacity(plan.rcpts_per_message);
    let mut date = (0, String::new());
    // The message claimed before connecting, so that no session opens only to find nothing
    // left to send; kept over a failed connection attempt.
    let mut pending = None;
    'connect: while let Some(mut index) = pending.take().or_else(|| shared.claim()) {
        if failures_in_a_row > 0 {
            tokio::time::sleep(backoff(failures_in_a_row - 1)).await;
            if shared.stopped() {
                break;
            }
        }
        let mut session = match Session::open(plan).await {
            Ok(session) => session,
            Err(error) => {
                shared.connection_failed(&mut totals, &error);
                failures_in_a_row += 1;
                pending = Some(index);
                continue;
            }
        };
        shared.session_opened(&session);
        failures_in_a_row = 0;
        totals.sessions += 1;
        totals.pipelined_sessions += u64::from(session.pipelining);
        totals.bdat_sessions += u64::from(session.bdat);
        let mut sent = 0;
        loop {
            sent += 1;
            plan.recipients.pick(index, plan.rcpts_per_message, &mut rcpts);
            let generated;
            let message = match &plan.source {
                Source::Eml(messages) => &messages[(index % messages.len() as u64) as usize],
                Source::Generated(generator) => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                    if date.0 != now {
                        date = (now, rfc5322_date(now));
                    }
                    generated = Message::new(generator.message(index, &rcpts, &date.1));
                    &generated
                }
            };
            let outcome = match session.send(message, &rcpts, plan).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    totals.failed += 1;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    shared.connection_failed(&mut totals, &error);
                    failures_in_a_row += 1;
                    continue 'connect;
                }
            };
            if let Some(latency) = outcome.latency {
                totals.latencies_us.push(latency.as_micros() as u64);
            }
            match outcome.failure {
                None => {
                    totals.ok += 1;
                    totals.ok_bytes += message.content().len() as u64;
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                }
                Some(code) => {
                    totals.failed += 1;
                    *totals.errors.entry(code).or_default() += 1;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    if outcome.closing {
                        continue 'connect;
                    }
                    match session.reset().await {
                        Ok(true) => {}
                        Ok(false) => continue 'connect,
                        Err(error) => {
                            shared.connection_failed(&mut totals, &error);
                            failures_in_a_row += 1;
                            continue 'connect;
                        }
                    }
                }
            }
            if sent == plan.messages_per_connection {
                break;
            }
            match shared.claim() {
                Some(next) => index = next,
                None => break,
            }
        }
        session.quit().await;
    }
    totals
}

/// The figures of a finished run.
struct Report {
    totals: Totals,
    elapsed: Duration,
    interrupted: bool,
    gave_up: bool,
    last_error: Option<String>,
}

async fn run(plan: Arc<Plan>, quiet: bool, show_progress: bool) -> Report {
    let started = Instant::now();
    let deadline = match plan.limit {
        Limit::Duration(d) => Some(started + d),
        Limit::Messages(_) => None,
    };
    let shared = Arc::new(Shared {
        plan,
        started,
        deadline,
        next_index: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        gave_up: AtomicBool::new(false),
        consecutive_connect_failures: AtomicU64::new(0),
        last_open_ms: AtomicU64::new(u64::MAX),
        last_error: Mutex::new(None),
        quiet,
        noted_fallback: AtomicBool::new(false),
    });

    // Ctrl-C once: stop starting messages and report; twice: leave at once.
    let signals = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.interrupted.store(true, Ordering::Relaxed);
                shared.stop.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let progress = show_progress.then(|| spawn_progress(Arc::clone(&shared)));

    let tasks: Vec<_> =
        (0..shared.plan.connections).map(|_| tokio::spawn(run_session_task(Arc::clone(&shared)))).collect();
    let mut totals = Totals::default();
    for task in tasks {
        match task.await {
            Ok(part) => totals.merge(part),
            Err(e) => eprintln!("smtpload: a session task failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    signals.abort();
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let last_error = shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Report {
        totals,
        elapsed,
        interrupted: shared.interrupted.load(Ordering::Relaxed),
        gave_up: shared.gave_up.load(Ordering::Relaxed),
        last_error,
    }
}

fn spawn_progress(shared: Arc<Shared>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let (len, template) = match shared.plan.limit {
        Limit::Messages(n) => (n, "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}"),
        Limit::Duration(d) => (d.as_secs(), "{elapsed_precise} [{wide_bar}] {msg}"),
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let ok = shared.ok.load(Ordering::Relaxed);
                let failed = shared.failed.load(Ordering::Relaxed);
                let secs = shared.started.elapsed().as_secs_f64();
                match shared.plan.limit {
                    Limit::Messages(_) => bar.set_position(ok + failed),
                    Limit::Duration(_) => bar.set_position(secs as u64),
                }
                let rate = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
                bar.set_message(format!("{ok} ok, {failed} failed, {rate:.0}/s"));
            }
        })
    };
    (bar, ticker)
}

// ---------------------------------------------------------------------------------------------
// Output

struct Figures {
    secs: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Figures {
    fn new(report: &mut Report) -> Figures {
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        report.totals.latencies_us.sort_unstable();
        let sorted = &report.totals.latencies_us;
        let ms = |us: u64| us as f64 / 1000.0;
        Figures {
            secs,
            msgs_per_s: report.totals.ok as f64 / secs,
            mb_per_s: report.totals.ok_bytes as f64 / 1e6 / secs,
            p50_ms: ms(percentile(sorted, 50.0)),
            p99_ms: ms(percentile(sorted, 99.0)),
            max_ms: ms(sorted.last().copied().unwrap_or(0)),
        }
    }
}

/// The mean message size: the generated size, or the mean of the .eml files.
fn message_size(plan: &Plan) -> u64 {
    match &plan.source {
        Source::Generated(generator) => generator.size as u64,
        Source::Eml(messages) => {
            messages.iter().map(|m| m.content_len as u64).sum::<u64>() / messages.len().max(1) as u64
        }
    }
}

/// "all", "none", or "3 of 5" sessions.
fn share(part: u64, whole: u64) -> String {
    match part {
        0 => "no".into(),
        _ if part == whole => "yes".into(),
        _ => format!("{part} of {whole} sessions"),
    }
}

fn summary(plan: &Plan, report: &Report, figures: &Figures) -> String {
    let t = &report.totals;
    let source = match &plan.source {
        Source::Generated(g) => format!("generated {}-byte messages", g.size),
        Source::Eml(m) => format!("{} .eml files (mean {} bytes)", m.len(), message_size(plan)),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "smtpload: {} ({}), {} connections, {source}, {} recipient(s) each from {} address(es)",
        plan.server,
        if plan.lmtp { "LMTP" } else { "SMTP" },
        plan.connections,
        plan.rcpts_per_message,
        plan.recipients.count()
    );
    let _ = writeln!(
        out,
        "  pipelining: {}, BDAT: {}",
        share(t.pipelined_sessions, t.sessions),
        share(t.bdat_sessions, t.sessions)
    );
    if let Some((user, _)) = &plan.auth {
        let _ = writeln!(out, "  AUTH PLAIN as {user}");
    }
    let _ = writeln!(out, "  messages:    {} sent, {} ok, {} failed", t.ok + t.failed, t.ok, t.failed);
    let _ = writeln!(out, "  elapsed:     {:.2} s", figures.secs);
    let _ = writeln!(out, "  throughput:  {:.1} msg/s, {:.2} MB/s", figures.msgs_per_s, figures.mb_per_s);
    let _ = writeln!(
        out,
        "  latency:     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} replies to content)",
        figures.p50_ms,
        figures.p99_ms,
        figures.max_ms,
        t.latencies_us.len()
    );
    let errors = if t.errors.is_empty() {
        "none".to_owned()
    } else {
        t.errors.iter().map(|(code, n)| format!("{code}: {n}")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(out, "  errors:      {errors}");
    let _ = write!(out, "  connection errors: {}", t.connection_errors);
    if let Some(last) = &report.last_error {
        let _ = write!(out, " (last: {last})");
    }
    out.push('\n');
    if report.gave_up {
        out.push_str("  gave up: every connection attempt kept failing\n");
    }
    if report.interrupted {
        out.push_str("  interrupted\n");
    }
    out
}

/// The `--json` line; fields are written in this order.
#[derive(Serialize)]
struct JsonReport<'a> {
    messages_sent: u64,
    messages_ok: u64,
    messages_failed: u64,
    elapsed_s: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    latency_ms: JsonLatency,
    /// Failed messages by the code of their first negative reply.
    errors: BTreeMap<String, u64>,
    connection_errors: u64,
    connections: usize,
    size: u64,
    rcpts_per_message: usize,
    lmtp: bool,
    /// Whether every session used it (the server advertised it and it was asked for).
    pipelining: bool,
    bdat: bool,
    /// `--auth` was given (every session that sent mail logged in).
    auth: bool,
    interrupted: bool,
    gave_up: bool,
    last_connection_error: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonLatency {
    p50: f64,
    p99: f64,
    max: f64,
}

fn json_line(plan: &Plan, report: &Report, figures: &Figures) -> String {
    let t = &report.totals;
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let line = JsonReport {
        messages_sent: t.ok + t.failed,
        messages_ok: t.ok,
        messages_failed: t.failed,
        elapsed_s: round(figures.secs, 3),
        msgs_per_s: round(figures.msgs_per_s, 1),
        mb_per_s: round(figures.mb_per_s, 3),
        latency_ms: JsonLatency {
            p50: round(figures.p50_ms, 3),
            p99: round(figures.p99_ms, 3),
            max: round(figures.max_ms, 3),
        },
        errors: t.errors.iter().map(|(code, n)| (code.to_string(), *n)).collect(),
        connection_errors: t.connection_errors,
        connections: plan.connections,
        size: message_size(plan),
        rcpts_per_message: plan.rcpts_per_message,
        lmtp: plan.lmtp,
        pipelining: t.sessions > 0 && t.pipelined_sessions == t.sessions,
        bdat: t.sessions > 0 && t.bdat_sessions == t.sessions,
        auth: plan.auth.is_some(),
        interrupted: report.interrupted,
        gave_up: report.gave_up,
        last_connection_error: report.last_error.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_else(|e| unreachable!("a report always serializes: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(message) => Args::command().error(ErrorKind::InvalidValue, message).exit(),
    };
    let show_progress = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("smtpload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let expected = match plan.limit {
        Limit::Messages(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let plan = Arc::new(plan);
    let mut report = runtime.block_on(run(Arc::clone(&plan), args.quiet, show_progress));
    let figures = Figures::new(&mut report);
    let text = summary(&plan, &report, &figures);
    if args.json {
        if !args.quiet {
            eprint!("{text}");
        }
        println!("{}", json_line(&plan, &report, &figures));
    } else {
        print!("{text}");
    }
    let t = &report.totals;
    let all_ok = t.failed == 0 && t.ok > 0 && !report.gave_up && expected.is_none_or(|n| t.ok == n);
    if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply { code, lines: lines.iter().map(|l| (*l).to_owned()).collect() }
    }

    #[test]
    fn decodes_single_and_multi_line_replies() {
        assert_eq!(decode_reply(b"250 ok\r\n"), Ok(Some((reply(250, &["ok"]), 8))));
        assert_eq!(decode_reply(b"354\r\n"), Ok(Some((reply(354, &[""]), 5))));
        let ehlo = b"250-mx.test greets you\r\n250-PIPELINING\r\n250 CHUNKING\r\n221 bye\r\n";
        let (decoded, used) = decode_reply(ehlo).unwrap().unwrap();
        assert_eq!(decoded, reply(250, &["mx.test greets you", "PIPELINING", "CHUNKING"]));
        assert_eq!(&ehlo[used..], b"221 bye\r\n", "the next reply stays in the buffer");
        // A bare LF ends a line too.
        assert_eq!(decode_reply(b"451 later\n"), Ok(Some((reply(451, &["later"]), 10))));
    }

    #[test]
    fn waits_for_the_whole_reply() {
        for partial in [&b""[..], b"25", b"250 ok", b"250 ok\r", b"250-one\r\n", b"250-one\r\n250 tw"] {
            assert_eq!(decode_reply(partial), Ok(None), "{partial:?}");
        }
        // Byte by byte, the reply completes exactly at its last LF.
        let whole = b"250-a\r\n250 b\r\n";
        for end in 0..whole.len() {
            assert_eq!(decode_reply(&whole[..end]), Ok(None));
        }
        assert!(decode_reply(whole).unwrap().is_some());
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in [&b"hello\r\n"[..], b"25\r\n", b"2x0 ok\r\n", b"250_ok\r\n", b"250-a\r\n251 b\r\n", b"650 x\r\n"] {
            assert!(matches!(decode_reply(bad), Err(ReplyError::Malformed(_))), "{bad:?}");
        }
        let mut long = b"250-".to_vec();
        long.resize(MAX_REPLY_BYTES + 10, b'x');
        assert_eq!(decode_reply(&long), Err(ReplyError::TooLong));
    }

    #[test]
    fn reads_capabilities_from_ehlo() {
        let caps = Capabilities::from_ehlo(&reply(250, &["mx", "pipelining", "SIZE 1000", "CHUNKING", "8BITMIME"]));
        assert_eq!(
            caps,
            Capabilities { pipelining: true, chunking: true, size: true, eight_bit_mime: true, auth_plain: false }
        );
        // The greeting line is a name, never a capability.
        assert_eq!(Capabilities::from_ehlo(&reply(250, &["PIPELINING"])), Capabilities::default());
        let auth = |line: &str| Capabilities::from_ehlo(&reply(250, &["mx", line])).auth_plain;
        assert!(auth("AUTH PLAIN LOGIN") && auth("auth login plain") && auth("AUTH=PLAIN") && auth("AUTH=LOGIN PLAIN"));
        assert!(!auth("AUTH LOGIN SCRAM-SHA-256") && !auth("AUTH") && !auth("AUTHPLAIN") && !auth("X-PLAIN"));
    }

    #[test]
    fn auth_plain_sends_the_credentials_as_one_initial_response() {
        assert_eq!(parse_auth("alice@example.test:secret"), Ok(("alice@example.test", "secret")));
        // Split at the first colon: the password keeps the rest, and may be empty.
        assert_eq!(parse_auth("bob:a:b:"), Ok(("bob", "a:b:")));
        assert_eq!(parse_auth("bob:"), Ok(("bob", "")));
        for bad in ["alice", ":secret", "", "al\0ice:x", "alice:se\0cret"] {
            assert!(parse_auth(bad).is_err(), "{bad:?}");
        }
        // base64 of "\0alice@example.test\0secret".
        let command = auth_plain_command("alice@example.test", "secret");
        assert_eq!(command, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n");
        use base64::Engine as _;
        let response = command.trim_end().strip_prefix("AUTH PLAIN ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(response).unwrap();
        assert_eq!(decoded, b"\0alice@example.test\0secret");
        // Non-ASCII passwords go as their UTF-8 bytes.
        let decoded = |c: String| {
            base64::engine::general_purpose::STANDARD.decode(c.trim_end().rsplit(' ').next().unwrap()).unwrap()
        };
        assert_eq!(decoded(auth_plain_command("u", "pässwörd")), "\0u\0pässwörd".as_bytes());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        for bad in ["", "K", "4X", "-1", "2G", "4096M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    fn generator(size: usize) -> Generator {
        Generator::new(size, "load@loadgen.test", "loadgen.test")
    }

    fn lines(message: &[u8]) -> Vec<&[u8]> {
        let (last, lines) =
            message.split(|&b| b == b'\n').collect::<Vec<_>>().split_last().map(|(l, r)| (*l, r.to_vec())).unwrap();
        assert!(last.is_empty(), "ends with a line ending");
        lines.into_iter().map(|l| l.strip_suffix(b"\r").expect("CRLF")).collect()
    }

    #[test]
    fn generated_messages_have_the_size_and_headers_asked_for() {
        let rcpts = vec!["user1@example.test".to_owned(), "user2@example.test".to_owned()];
        let date = rfc5322_date(1_700_000_000);
        for size in [300, 400, 512, 1000, 4096, 4097, 65_536, 100_003] {
            let g = generator(size);
            for index in [0, 1, 99, 123_456_789] {
                let message = g.message(index, &rcpts, &date);
                assert_eq!(message.len(), size, "size {size} index {index}");
                let lines = lines(&message);
                assert!(lines.iter().all(|l| l.len() <= 78 && !l.contains(&b'\r')), "short CRLF lines");
                assert!(message.iter().all(|&b| b == b'\r' || b == b'\n' || (b' '..=b'~').contains(&b)));
                assert!(!needs_dot_stuffing(&message));
                let text = String::from_utf8(message).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with("From: load@loadgen.test\r\nTo: user1@example.test, user2@example.test\r\n"));
                assert!(head.contains(&format!("\r\nSubject: smtpload message {}\r\n", index + 1)));
                assert!(head.contains("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
                assert!(head.contains(&format!(".{}@loadgen.test>\r\n", index + 1)));
                assert!(body.lines().all(|l| l.len() <= MAX_LINE_CHARS));
            }
        }
        // Headers longer than --size: the message is just the headers and an empty body.
        let small = generator(10).message(0, &rcpts, &date);
        assert!(small.ends_with(b"\r\n\r\n"));
        let bounce = Generator::new(1000, "", "mx.test").message(0, &rcpts, &date);
        assert!(bounce.starts_with(b"From: MAILER-DAEMON@mx.test\r\n"));
    }

    #[test]
    fn message_ids_differ_between_messages_and_runs() {
        let rcpts = vec!["a@example.test".to_owned()];
        let id = |m: Vec<u8>| {
            let text = String::from_utf8(m).unwrap();
            text.lines().find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned)).unwrap()
        };
        let g = generator(1000);
        assert_ne!(id(g.message(1, &rcpts, "d")), id(g.message(2, &rcpts, "d")));
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(id(g.message(1, &rcpts, "d")), id(generator(1000).message(1, &rcpts, "d")));
    }

    #[test]
    fn long_recipient_lists_are_folded() {
        let rcpts: Vec<String> = (1..=20).map(|n| format!("user{n}@example.test")).collect();
        let message = generator(4096).message(0, &rcpts, "d");
        assert_eq!(message.len(), 4096);
        assert!(lines(&message).iter().all(|l| l.len() <= 78));
        let text = String::from_utf8(message).unwrap();
        let to = &text[text.find("\r\nTo: ").unwrap() + 2..text.find("\r\nSubject: ").unwrap()];
        assert!(to.contains(",\r\n user"), "folded: {to}");
        assert_eq!(to.replace("\r\n", ""), format!("To: {}", rcpts.join(", ")), "unfolds to the list");
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc5322_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn normalises_line_endings_and_stuffs_dots() {
        assert_eq!(normalise_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(normalise_crlf(b""), b"");
        assert_eq!(normalise_crlf(b"\r\n\n"), b"\r\n\r\n");
        assert_eq!(dot_stuff(b".a\r\nb.\r\n..c\r\n.\r\n"), b"..a\r\nb.\r\n...c\r\n..\r\n");
        let plain = Message::new(b"a\r\nb\r\n".to_vec());
        assert_eq!(plain.content(), b"a\r\nb\r\n");
        assert_eq!(plain.data(), b"a\r\nb\r\n.\r\n");
        let dotted = Message::new(normalise_crlf(b"Subject: x\n\n.\n"));
        assert_eq!(dotted.content(), b"Subject: x\r\n\r\n.\r\n");
        assert_eq!(dotted.data(), b"Subject: x\r\n\r\n..\r\n.\r\n");
        assert!(!dotted.eight_bit && Message::new("caf\u{e9}\r\n".into()).eight_bit);
    }

    #[test]
    fn recipients_are_used_in_turn() {
        let mut out = Vec::new();
        let pattern = Recipients::Pattern { pattern: "u{n}@x.test".into(), count: 5 };
        pattern.pick(0, 2, &mut out);
        assert_eq!(out, ["u1@x.test", "u2@x.test"]);
        pattern.pick(2, 2, &mut out);
        assert_eq!(out, ["u5@x.test", "u1@x.test"]);
        let list = Recipients::List(vec!["a@x".into(), "b@x".into(), "c@x".into()]);
        list.pick(4, 1, &mut out);
        assert_eq!(out, ["b@x"]);
    }
}
