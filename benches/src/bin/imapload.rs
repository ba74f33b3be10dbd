//! imapload: an IMAP load generator for any server, Postlog or not.
//!
//! ```sh
//! cargo run --release -p postlog-benches --bin imapload -- --server 127.0.0.1:2143 -c 4 \
//!     --user-pattern 'testuser{n}@example.test' --users 4 --password secret \
//!     --workload sync,download,search,store,qresync
//! ```
//! `-c` clients connect over plain TCP and log in with LOGIN. Then each client runs the
//! workloads in the order given, the whole list `--repeat` times. The clients start each
//! workload together (a barrier), so each workload is timed on its own: its elapsed time runs
//! from that start to the end of the slowest client's part. A client whose connection is lost
//! counts a connection error and connects again at its next workload.
//!
//! Every command's responses are read to the end through a buffered, sans-IO decoder
//! ([`Decoder`]): untagged lines, the tagged completion, and literals (`{n}`, `{n+}`, `~{n}`)
//! anywhere in a line, whose n bytes are skipped without ever being taken for lines. The
//! summary goes to stdout; with `--json` one JSON line goes to stdout and the summary to
//! stderr. Exit status: 0 when every operation succeeded, 1 otherwise, 2 for a usage error.
//! See docs/benchmarks.md.
//!
//! ```text
//!  client task (x -c)                                Shared
//!  connect -> greeting -> LOGIN                      barrier: one workload at a time
//!  barrier -> workload (timed commands) --record-->  ops / errors counters (progress bar)
//!  ... --repeat x workloads, LOGOUT                  Stats per workload merged at the end
//!                                                    --server-pid sampler (PSS, CPU)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use postlog_benches::{percentile, rfc5322_date};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Barrier;

/// Longest response accepted, without its literals (a `SEARCH` of a million messages is ~8 MB).
const MAX_LINE_BYTES: usize = 64 << 20;
/// Size of each read from the server.
const READ_BUFFER: usize = 64 * 1024;
/// How often `--server-pid` processes are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    name = "imapload",
    about = "IMAP load generator: concurrent clients run sync, download, search, store, QRESYNC, IDLE and EXPUNGE \
             workloads and report latency and throughput",
    after_help = "Exit status: 0 when every operation succeeded, 1 when any failed, 2 for a usage error."
)]
struct Args {
    /// Server to connect to (HOST:PORT), plain TCP (no TLS).
    #[arg(long, default_value = "127.0.0.1:2143", value_name = "HOST:PORT")]
    server: String,
    /// Clients running at once, each on its own connection.
    #[arg(short = 'c', long, default_value_t = 4, value_name = "N")]
    connections: usize,
    /// Log every client in as this user.
    #[arg(long, value_name = "NAME", conflicts_with = "user_pattern")]
    user: Option<String>,
    /// Users made from a pattern such as testuser{N}@example.test: {N}, in either case, becomes
    /// 1..=--users, and client i logs in as user (i mod U) + 1 [default: user{N}@example.test].
    // (clap shows a lower-case n in braces as a line break, hence the capital in this help.)
    #[arg(long, value_name = "PATTERN")]
    user_pattern: Option<String>,
    /// How many users --user-pattern makes.
    #[arg(long, default_value_t = 1, value_name = "U", conflicts_with = "user")]
    users: u64,
    /// The password of every user.
    #[arg(long, value_name = "P")]
    password: String,
    /// The mailbox the workloads work on.
    #[arg(long, default_value = "INBOX", value_name = "NAME")]
    mailbox: String,
    /// Workloads, run in this order: sync, download, search, store, qresync, idle, expunge
    /// (repeat the flag or separate with commas) [default: sync,download,search].
    #[arg(short = 'w', long = "workload", value_name = "LIST", value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Run the list of workloads this many times per client.
    #[arg(long, default_value_t = 1, value_name = "R")]
    repeat: u32,
    /// download: UIDs per `UID FETCH ... (BODY.PEEK[])`.
    #[arg(long, default_value_t = 500, value_name = "UIDS")]
    batch: usize,
    /// search: the word of `SEARCH TEXT`.
    #[arg(long, default_value = "zwiebelkuchen", value_name = "WORD")]
    search_word: String,
    /// search: the string of `SEARCH FROM`.
    #[arg(long, default_value = "example.com", value_name = "TEXT")]
    search_from: String,
    /// store: `UID STORE 1:N +FLAGS.SILENT (\Flagged)`, then `-FLAGS.SILENT`.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    store_count: u32,
    /// qresync: messages whose flags change (from a second connection) before the resync.
    #[arg(long, default_value_t = 100, value_name = "N")]
    qresync_changes: u32,
    /// idle: an SMTP server that delivers to the users; one message per round goes to the
    /// client's user, and the time until its EXISTS arrives is measured.
    #[arg(long, value_name = "HOST:PORT")]
    idle_trigger_smtp: Option<String>,
    /// idle: rounds per client and repetition.
    #[arg(long, default_value_t = 10, value_name = "N")]
    idle_rounds: u32,
    /// idle: the envelope sender of the messages sent to trigger EXISTS.
    #[arg(long, default_value = "imapload@loadgen.test", value_name = "ADDR")]
    idle_from: String,
    /// expunge: how many of the last messages are marked \Deleted and expunged (destructive).
    #[arg(long, default_value_t = 10, value_name = "N")]
    expunge_count: u32,
    /// A server process to watch (repeat for several); its descendants count too. Reports
    /// the peak summed PSS and the CPU time used during the run.
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Seconds to wait for a connection, a write or a read before the connection counts as
    /// lost (and for an EXISTS in `idle`).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Print one JSON line of the results on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress bar, and with --json no summary either.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
enum Workload {
    Sync,
    Download,
    Search,
    Store,
    Qresync,
    Idle,
    Expunge,
}

impl Workload {
    const ALL: [Workload; 7] = [
        Workload::Sync,
        Workload::Download,
        Workload::Search,
        Workload::Store,
        Workload::Qresync,
        Workload::Idle,
        Workload::Expunge,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Sync => "sync",
            Workload::Download => "download",
            Workload::Search => "search",
            Workload::Store => "store",
            Workload::Qresync => "qresync",
            Workload::Idle => "idle",
            Workload::Expunge => "expunge",
        }
    }

    /// What `Stats::messages` counts for this workload, and whether a rate of it means
    /// anything.
    fn unit(self) -> (&'static str, bool) {
        match self {
            Workload::Sync | Workload::Download | Workload::Store => ("messages", true),
            Workload::Search => ("matches", false),
            Workload::Qresync => ("changes reported", false),
            Workload::Idle => ("deliveries seen", false),
            Workload::Expunge => ("messages expunged", true),
        }
    }

    /// Whether bytes are counted (and MB/s reported).
    fn counts_bytes(self) -> bool {
        matches!(self, Workload::Sync | Workload::Download)
    }
}

// ---------------------------------------------------------------------------------------------
// Responses (sans IO)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `tag OK|NO|BAD text`.
    Tagged { tag: String, status: Status },
    /// `* ...`.
    Untagged,
    /// `+ ...`.
    Continuation,
}

/// One server response: a line, or several joined by literals.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    kind: Kind,
    /// After `* `, `+ ` or the tag and status, without the final CRLF. Each literal keeps its
    /// `{n}` announcement, but its content and the CRLF before it are left out, so the text
    /// after a literal follows its `{n}` at once: `1 FETCH (UID 5 BODY[] {120})`.
    text: String,
    /// The length of each literal, in order.
    literals: Vec<u64>,
    /// Bytes the response took on the wire, literals and line endings included.
    wire_bytes: u64,
}

impl Response {
    /// `* 12 EXISTS` gives `(12, "EXISTS")`.
    fn numbered(&self) -> Option<(u32, &str)> {
        if self.kind != Kind::Untagged {
            return None;
        }
        let (number, rest) = self.text.split_once(' ')?;
        let number = number.parse().ok()?;
        Some((number, rest.split(' ').next().unwrap_or("")))
    }

    /// `* n KEYWORD ...`, the keyword in any case.
    fn is(&self, keyword: &str) -> bool {
        self.numbered().is_some_and(|(_, k)| k.eq_ignore_ascii_case(keyword))
    }

    /// The first word of an untagged response (`OK`, `BYE`, `SEARCH`, ...).
    fn word(&self) -> Option<&str> {
        (self.kind == Kind::Untagged).then(|| self.text.split(' ').next().unwrap_or(""))
    }

    /// The response code of `* OK [CODE args] text`: `("CODE", "args")`.
    fn code(&self) -> Option<(&str, &str)> {
        let (_, rest) = self.text.split_once(' ')?;
        let inner = rest.strip_prefix('[')?;
        let inner = &inner[..inner.find(']')?];
        Some(inner.split_once(' ').unwrap_or((inner, "")))
    }

    /// The numbers of `* SEARCH 1 2 3` (without a trailing `(MODSEQ n)`); `None` for other
    /// responses.
    fn search_numbers(&self) -> Option<impl Iterator<Item = u32> + '_> {
        let word = self.word()?;
        if !word.eq_ignore_ascii_case("SEARCH") {
            return None;
        }
        Some(self.text[word.len()..].split(' ').take_while(|w| !w.starts_with('(')).filter_map(|w| w.parse().ok()))
    }

    /// `* VANISHED [(EARLIER)] set`: whether EARLIER, and how many UIDs.
    fn vanished(&self) -> Option<(bool, u64)> {
        let word = self.word()?;
        if !word.eq_ignore_ascii_case("VANISHED") {
            return None;
        }
        let rest = self.text[word.len()..].trim_start();
        match rest.get(..10) {
            Some(earlier) if earlier.eq_ignore_ascii_case("(EARLIER) ") => Some((true, count_set(&rest[10..]))),
            _ => Some((false, count_set(rest))),
        }
    }
}

/// How many numbers a sequence set such as `1:3,7,10:8` holds (`*` counts as one).
fn count_set(set: &str) -> u64 {
    set.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once(':') {
            Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) => a.abs_diff(b) + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DecodeError {
    /// Not `* ...`, `+ ...` or `tag OK|NO|BAD ...`.
    Malformed(String),
    /// A response (without its literals) longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// A literal announcement whose number does not fit in 64 bits.
    BadLiteral(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(line) => write!(f, "the server sent a malformed response: {line:?}"),
            DecodeError::TooLong => write!(f, "the server sent a response longer than {MAX_LINE_BYTES} bytes"),
            DecodeError::BadLiteral(text) => write!(f, "the server announced a literal of {text} bytes"),
        }
    }
}

/// Cuts responses out of the bytes the server sends, whatever pieces they arrive in. Literals
/// are counted and skipped as they stream by, so a large message never sits in memory, and a
/// CRLF inside a literal never ends a line.
#[derive(Debug, Default)]
struct Decoder {
    /// The response so far, literal contents left out.
    line: Vec<u8>,
    literals: Vec<u64>,
    /// Bytes of the current literal still to skip.
    literal_left: u64,
    wire: u64,
}

impl Decoder {
    /// Consumes `input` up to the end of the first complete response, or all of it:
    /// `(bytes used, the response if one completed)`. What was used is remembered, so the
    /// rest of a response may come in the next call.
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), DecodeError> {
        let mut pos = 0;
        loop {
            if self.literal_left > 0 {
                let take = self.literal_left.min((input.len() - pos) as u64);
                pos += take as usize;
                self.literal_left -= take;
                self.wire += take;
                if self.literal_left > 0 {
                    return Ok((pos, None));
                }
            }
            let rest = &input[pos..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                self.extend_line(rest)?;
                self.wire += rest.len() as u64;
                return Ok((input.len(), None));
            };
            self.extend_line(&rest[..newline])?;
            self.wire += newline as u64 + 1;
            pos += newline + 1;
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if let Some(len) = literal_at_end(&self.line)? {
                self.literals.push(len);
                self.literal_left = len;
                continue;
            }
            let response = parse_response(&self.line, std::mem::take(&mut self.literals), self.wire);
            self.line.clear();
            self.wire = 0;
            return response.map(|r| (pos, Some(r)));
        }
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(DecodeError::TooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }
}

/// The length of the literal `line` announces at its end: `{n}`, `{n+}` (LITERAL+), `~{n}`
/// (BINARY, the `~` is just text here).
fn literal_at_end(line: &[u8]) -> Result<Option<u64>, DecodeError> {
    let Some(inner) = line.strip_suffix(b"}") else { return Ok(None) };
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let digits = inner.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || inner.len() == digits || inner[inner.len() - digits - 1] != b'{' {
        return Ok(None);
    }
    let number = String::from_utf8_lossy(&inner[inner.len() - digits..]).into_owned();
    number.parse().map(Some).map_err(|_| DecodeError::BadLiteral(number))
}

fn parse_response(line: &[u8], literals: Vec<u64>, wire_bytes: u64) -> Result<Response, DecodeError> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let malformed = || DecodeError::Malformed(text(&line[..line.len().min(200)]));
    let (kind, rest) = if let Some(rest) = line.strip_prefix(b"+") {
        (Kind::Continuation, rest.strip_prefix(b" ").unwrap_or(rest))
    } else if let Some(rest) = line.strip_prefix(b"* ") {
        (Kind::Untagged, rest)
    } else {
        let space = line.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let (tag, after) = (&line[..space], &line[space + 1..]);
        if tag.is_empty() || tag == b"*" {
            return Err(malformed());
        }
        let (word, rest) = match after.iter().position(|&b| b == b' ') {
            Some(i) => (&after[..i], &after[i + 1..]),
            None => (after, &[][..]),
        };
        let status = [Status::Ok, Status::No, Status::Bad]
            .into_iter()
            .find(|s| word.eq_ignore_ascii_case(s.name().as_bytes()))
            .ok_or_else(malformed)?;
        (Kind::Tagged { tag: text(tag), status }, rest)
    };
    Ok(Response { kind, text: text(rest), literals, wire_bytes })
}

/// `value` as an IMAP quoted string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Values sent as quoted strings must be printable ASCII (no literals, no charsets).
fn check_quotable(flag: &str, value: &str) -> Result<(), String> {
    if value.bytes().any(|b| !(b' '..=b'~').contains(&b)) {
        return Err(format!("{flag} `{value}`: only printable ASCII is sent (no control or non-ASCII characters)"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The plan of a run

enum Users {
    One(String),
    Pattern { pattern: String, count: u64 },
}

impl Users {
    /// Client `i`'s user: its index among the users the run uses, and its name.
    fn for_client(&self, i: usize) -> (usize, String) {
        match self {
            Users::One(user) => (0, user.clone()),
            Users::Pattern { pattern, count } => {
                let n = i as u64 % count;
                (n as usize, pattern.replace("{n}", &(n + 1).to_string()))
            }
        }
    }

    fn count(&self) -> u64 {
        match self {
            Users::One(_) => 1,
            Users::Pattern { count, .. } => *count,
        }
    }
}

struct Plan {
    server: SocketAddr,
    connections: usize,
    users: Users,
    password: String,
    mailbox: String,
    workloads: Vec<Workload>,
    repeat: u32,
    batch: usize,
    search_word: String,
    search_from: String,
    store_count: u32,
    qresync_changes: u32,
    idle_trigger: Option<SocketAddr>,
    idle_rounds: u32,
    idle_from: String,
    expunge_count: u32,
    server_pids: Vec<u32>,
    timeout: Duration,
}

fn resolve(flag: &str, address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("{flag} {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} {address}: no address"))
}

impl Plan {
    fn from_args(args: &Args) -> Result<Plan, String> {
        let server = resolve("--server", &args.server)?;
        if args.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let users = match &args.user {
            Some(user) => {
                check_quotable("--user", user)?;
                if user.is_empty() {
                    return Err("--user may not be empty".into());
                }
                Users::One(user.clone())
            }
            None => {
                let pattern = args.user_pattern.clone().unwrap_or_else(|| "user{n}@example.test".into());
                let pattern = pattern.replace("{N}", "{n}");
                if !pattern.contains("{n}") {
                    return Err(format!("--user-pattern `{pattern}` has no {{n}}"));
                }
                check_quotable("--user-pattern", &pattern)?;
                if args.users == 0 {
                    return Err("--users must be at least 1".into());
                }
                Users::Pattern { pattern, count: args.users }
            }
        };
        check_quotable("--password", &args.password)?;
        check_quotable("--mailbox", &args.mailbox)?;
        check_quotable("--search-word", &args.search_word)?;
        check_quotable("--search-from", &args.search_from)?;
        if args.mailbox.is_empty() {
            return Err("--mailbox may not be empty".into());
        }
        let workloads = if args.workloads.is_empty() {
            vec![Workload::Sync, Workload::Download, Workload::Search]
        } else {
            args.workloads.clone()
        };
        for (flag, value) in [
            ("--repeat", args.repeat as u64),
            ("--batch", args.batch as u64),
            ("--store-count", args.store_count as u64),
            ("--qresync-changes", args.qresync_changes as u64),
            ("--idle-rounds", args.idle_rounds as u64),
            ("--expunge-count", args.expunge_count as u64),
            ("--timeout", args.timeout),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        let idle_trigger = match &args.idle_trigger_smtp {
            Some(address) => Some(resolve("--idle-trigger-smtp", address)?),
            None if workloads.contains(&Workload::Idle) => {
                return Err("the idle workload needs --idle-trigger-smtp HOST:PORT to deliver the messages".into());
            }
            None => None,
        };
        if args.idle_from.bytes().any(|b| !(b'!'..=b'~').contains(&b) || b == b'<' || b == b'>') {
            return Err(format!(
                "--idle-from `{}`: an address may not hold spaces, control characters, < or >",
                args.idle_from
            ));
        }
        for pid in &args.server_pids {
            if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
                return Err(format!("--server-pid {pid}: no such process"));
            }
        }
        Ok(Plan {
            server,
            connections: args.connections,
            users,
            password: args.password.clone(),
            mailbox: args.mailbox.clone(),
            workloads,
            repeat: args.repeat,
            batch: args.batch,
            search_word: args.search_word.clone(),
            search_from: args.search_from.clone(),
            store_count: args.store_count,
            qresync_changes: args.qresync_changes,
            idle_trigger,
            idle_rounds: args.idle_rounds,
            idle_from: args.idle_from.clone(),
            expunge_count: args.expunge_count,
            server_pids: args.server_pids.clone(),
            timeout: Duration::from_secs(args.timeout),
        })
    }

    /// The workloads in the order they first appear.
    fn distinct_workloads(&self) -> Vec<Workload> {
        let mut seen = Vec::new();
        for &w in &self.workloads {
            if !seen.contains(&w) {
                seen.push(w);
            }
        }
        seen
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Why a connection is lost or unusable.
#[derive(Debug)]
enum ConnError {
    Connect(std::io::Error),
    Io(std::io::Error),
    Timeout(&'static str),
    /// With the text of the server's BYE, if it sent one.
    Closed(Option<String>),
    Protocol(String),
    /// The greeting was not `* OK` or `* PREAUTH`.
    Greeting(String),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "cannot connect: {e}"),
            ConnError::Io(e) => write!(f, "connection failed: {e}"),
            ConnError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            ConnError::Closed(None) => write!(f, "the server closed the connection"),
            ConnError::Closed(Some(bye)) => write!(f, "the server closed the connection (BYE {bye})"),
            ConnError::Protocol(e) => write!(f, "{e}"),
            ConnError::Greeting(text) => write!(f, "the server refused the connection: {text}"),
        }
    }
}

/// Why an operation failed.
#[derive(Debug)]
enum Failure {
    /// The command completed with NO or BAD; the connection goes on.
    Status { command: &'static str, status: Status, text: String },
    /// The client's connection is lost.
    Lost(ConnError),
    /// An extra connection (qresync) is lost; the client's own goes on.
    Aux(ConnError),
    /// Anything else (the SMTP trigger, a missing extension, no EXISTS in time).
    Other { key: &'static str, message: String },
}

impl Failure {
    /// The error counter this failure goes to.
    fn key(&self) -> &'static str {
        match self {
            Failure::Status { status, .. } => status.name(),
            Failure::Lost(_) | Failure::Aux(_) => "connection",
            Failure::Other { key, .. } => key,
        }
    }

    /// The same failure on an extra connection.
    fn aux(self) -> Failure {
        match self {
            Failure::Lost(e) => Failure::Aux(e),
            other => other,
        }
    }
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Failure {
        Failure::Lost(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status { command, status, text } => write!(f, "{command}: {} {text}", status.name()),
            Failure::Lost(e) | Failure::Aux(e) => e.fmt(f),
            Failure::Other { message, .. } => write!(f, "{message}"),
        }
    }
}

/// A command's tagged completion.
struct Completion {
    status: Status,
    text: String,
}

impl Completion {
    fn check(self, command: &'static str) -> Result<Completion, Failure> {
        match self.status {
            Status::Ok => Ok(self),
            status => Err(Failure::Status { command, status, text: self.text }),
        }
    }
}

/// What a SELECT told.
#[derive(Debug, Default)]
struct SelectInfo {
    uidvalidity: Option<u32>,
    highest_modseq: Option<u64>,
    /// FETCH responses (changed messages, with QRESYNC).
    fetches: u64,
    /// UIDs in `VANISHED (EARLIER)` responses.
    vanished: u64,
}

/// One logged-in IMAP connection.
struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    decoder: Decoder,
    timeout: Duration,
    next_tag: u32,
    /// The message count of the selected mailbox, as the server told it.
    exists: u32,
    selected: bool,
    bye: Option<String>,
}

impl Conn {
    /// Connects, reads the greeting and logs in.
    async fn open(plan: &Plan, user: &str) -> Result<Conn, Failure> {
        let stream = match tokio::time::timeout(plan.timeout, TcpStream::connect(plan.server)).await {
            Err(_) => return Err(ConnError::Timeout("the connection").into()),
            Ok(Err(e)) => return Err(ConnError::Connect(e).into()),
            Ok(Ok(stream)) => stream,
        };
        stream.set_nodelay(true).map_err(ConnError::Io)?;
        let (read, write) = stream.into_split();
        let mut conn = Conn {
            read,
            write,
            buf: vec![0; READ_BUFFER],
            pos: 0,
            len: 0,
            decoder: Decoder::default(),
            timeout: plan.timeout,
            next_tag: 0,
            exists: 0,
            selected: false,
            bye: None,
        };
        let greeting = conn.next().await?;
        match greeting.word() {
            Some(w) if w.eq_ignore_ascii_case("OK") => {}
            Some(w) if w.eq_ignore_ascii_case("PREAUTH") => return Ok(conn),
            _ => return Err(ConnError::Greeting(greeting.text).into()),
        }
        let login = format!("LOGIN {} {}", quoted(user), quoted(&plan.password));
        conn.command(&login, |_| {}).await?.check("LOGIN")?;
        Ok(conn)
    }

    /// The next response, reading as needed.
    async fn next(&mut self) -> Result<Response, ConnError> {
        loop {
            if self.pos < self.len {
                let (used, response) = self
                    .decoder
                    .decode(&self.buf[self.pos..self.len])
                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
                self.pos += used;
                if let Some(response) = response {
                    return Ok(response);
                }
            }
            // The decoder took everything it was given.
            self.pos = 0;
            self.len = 0;
            match tokio::time::timeout(self.timeout, self.read.read(&mut self.buf)).await {
                Err(_) => return Err(ConnError::Timeout("a response")),
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Ok(Ok(0)) => return Err(ConnError::Closed(self.bye.take())),
                Ok(Ok(n)) => self.len = n,
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match tokio::time::timeout(self.timeout, self.write.write_all(bytes)).await {
            Err(_) => Err(ConnError::Timeout("a write")),
            Ok(Err(e)) => Err(ConnError::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends `tag command`; returns the tag.
    async fn send_command(&mut self, command: &str) -> Result<String, ConnError> {
        self.next_tag += 1;
        let tag = format!("a{}", self.next_tag);
        self.send(format!("{tag} {command}\r\n").as_bytes()).await?;
        Ok(tag)
    }

    /// Sends `command` and reads every response up to its completion, showing each untagged
    /// one to `each`.
    async fn command(&mut self, command: &str, mut each: impl FnMut(&Response)) -> Result<Completion, ConnError> {
        let tag = self.send_command(command).await?;
        self.complete(&tag, &mut each).await
    }

    async fn complete(&mut self, tag: &str, each: &mut impl FnMut(&Response)) -> Result<Completion, ConnError> {
        loop {
            let response = self.next().await?;
            match response.kind {
                Kind::Tagged { tag: ref t, status } if t == tag => {
                    return Ok(Completion { status, text: response.text });
                }
                Kind::Tagged { tag: t, .. } => {
                    return Err(ConnError::Protocol(format!("a response to unknown tag {t}")));
                }
                Kind::Continuation => {
                    return Err(ConnError::Protocol(format!("an unexpected continuation: + {}", response.text)));
                }
                Kind::Untagged => {
                    self.track(&response);
                    each(&response);
                }
            }
        }
    }

    /// Follows the message count and notes a BYE.
    fn track(&mut self, response: &Response) {
        if let Some((n, keyword)) = response.numbered() {
            if keyword.eq_ignore_ascii_case("EXISTS") {
                self.exists = n;
            } else if keyword.eq_ignore_ascii_case("EXPUNGE") {
                self.exists = self.exists.saturating_sub(1);
            }
        } else if let Some((false, n)) = response.vanished() {
            self.exists = self.exists.saturating_sub(n.try_into().unwrap_or(u32::MAX));
        } else if response.word().is_some_and(|w| w.eq_ignore_ascii_case("BYE")) {
            self.bye = Some(response.text[3..].trim_start().to_owned());
        }
    }

    /// `SELECT mailbox`, with `(QRESYNC (uidvalidity modseq))` when given.
    async fn select(&mut self, mailbox: &str, qresync: Option<(u32, u64)>) -> Result<SelectInfo, Failure> {
        let mut command = format!("SELECT {}", quoted(mailbox));
        if let Some((uidvalidity, modseq)) = qresync {
            let _ = write!(command, " (QRESYNC ({uidvalidity} {modseq}))");
        }
        self.selected = false;
        self.exists = 0;
        let mut info = SelectInfo::default();
        let done = self
            .command(&command, |r| {
                if let Some((code, args)) = r.code() {
                    if code.eq_ignore_ascii_case("UIDVALIDITY") {
                        info.uidvalidity = args.parse().ok();
                    } else if code.eq_ignore_ascii_case("HIGHESTMODSEQ") {
                        info.highest_modseq = args.parse().ok();
                    }
                }
                if r.is("FETCH") {
                    info.fetches += 1;
                }
                if let Some((_, n)) = r.vanished() {
                    info.vanished += n;
                }
            })
            .await?;
        done.check("SELECT")?;
        self.selected = true;
        Ok(info)
    }

    async fn ensure_selected(&mut self, plan: &Plan) -> Result<(), Failure> {
        if !self.selected {
            self.select(&plan.mailbox, None).await?;
        }
        Ok(())
    }

    /// `ENABLE QRESYNC`, which must be answered by `* ENABLED ... QRESYNC`.
    async fn enable_qresync(&mut self) -> Result<(), Failure> {
        let mut enabled = false;
        self.command("ENABLE QRESYNC", |r| {
            if r.word().is_some_and(|w| w.eq_ignore_ascii_case("ENABLED")) {
                enabled |= r.text.split(' ').any(|w| w.eq_ignore_ascii_case("QRESYNC"));
            }
        })
        .await?
        .check("ENABLE")?;
        if !enabled {
            return Err(Failure::Other { key: "unsupported", message: "the server did not enable QRESYNC".into() });
        }
        Ok(())
    }

    /// Ends an IDLE started with `tag`.
    async fn end_idle(&mut self, tag: &str) -> Result<(), Failure> {
        self.send(b"DONE\r\n").await?;
        self.complete(tag, &mut |_| {}).await?.check("IDLE")?;
        Ok(())
    }

    /// Says goodbye; errors do not matter any more.
    async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.command("LOGOUT", |_| {})).await;
        let _ = self.write.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP, to make the server deliver during `idle`

/// A small message to `to`, unique to this run and `number`.
fn probe_message(from: &str, to: &str, run_id: &str, number: u64) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: imapload idle probe {number}\r\nDate: {}\r\n\
         Message-ID: <{run_id}.{number}@imapload.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\nSent by imapload to time IDLE.\r\n",
        rfc5322_date(now)
    )
    .into_bytes()
}

struct Smtp {
    stream: BufReader<TcpStream>,
    timeout: Duration,
}

impl Smtp {
    /// Sends `command` (if any) and reads its reply, which must be of class `class` (2 or 3).
    async fn exchange(&mut self, command: Option<&[u8]>, class: u8, what: &str) -> Result<(), String> {
        if let Some(command) = command {
            match tokio::time::timeout(self.timeout, self.stream.get_mut().write_all(command)).await {
                Err(_) => return Err(format!("SMTP: timed out sending {what}")),
                Ok(Err(e)) => return Err(format!("SMTP: sending {what}: {e}")),
                Ok(Ok(())) => {}
            }
        }
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout(self.timeout, self.stream.read_line(&mut line)).await {
                Err(_) => return Err(format!("SMTP: timed out waiting for the reply to {what}")),
                Ok(Err(e)) => return Err(format!("SMTP: reading the reply to {what}: {e}")),
                Ok(Ok(0)) => return Err(format!("SMTP: the server closed the connection after {what}")),
                Ok(Ok(_)) => {}
            }
            let bytes = line.as_bytes();
            if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("SMTP: a malformed reply to {what}: {:?}", line.trim_end()));
            }
            if bytes[3] == b'-' {
                continue;
            }
            if bytes[0] - b'0' != class {
                return Err(format!("SMTP: the server refused {what}: {}", line.trim_end()));
            }
            return Ok(());
        }
    }
}

/// Delivers `message` to `to` through the SMTP server; returns when the end of the data
/// (the final `.`) was written.
async fn send_probe(
    server: SocketAddr,
    from: String,
    to: String,
    message: Vec<u8>,
    timeout: Duration,
) -> Result<Instant, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(server)).await {
        Err(_) => return Err(format!("SMTP: timed out connecting to {server}")),
        Ok(Err(e)) => return Err(format!("SMTP: cannot connect to {server}: {e}")),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let mut smtp = Smtp { stream: BufReader::new(stream), timeout };
    smtp.exchange(None, 2, "the connection").await?;
    smtp.exchange(Some(b"EHLO imapload.test\r\n"), 2, "EHLO").await?;
    smtp.exchange(Some(format!("MAIL FROM:<{from}>\r\n").as_bytes()), 2, "MAIL").await?;
    smtp.exchange(Some(format!("RCPT TO:<{to}>\r\n").as_bytes()), 2, "RCPT").await?;
    smtp.exchange(Some(b"DATA\r\n"), 3, "DATA").await?;
    let mut data = message;
    data.extend_from_slice(b".\r\n");
    match tokio::time::timeout(timeout, smtp.stream.get_mut().write_all(&data)).await {
        Err(_) => return Err("SMTP: timed out sending the message".into()),
        Ok(Err(e)) => return Err(format!("SMTP: sending the message: {e}")),
        Ok(Ok(())) => {}
    }
    let sent_at = Instant::now();
    smtp.exchange(None, 2, "the message").await?;
    let _ = smtp.exchange(Some(b"QUIT\r\n"), 2, "QUIT").await;
    Ok(sent_at)
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// What one client measured in one workload; merged at the end.
#[derive(Default)]
struct Stats {
    /// Operations that succeeded, and their latencies.
    ops: u64,
    latencies_us: Vec<u64>,
    /// Latencies of the timed commands, by name, in the order first seen.
    commands: Vec<(&'static str, Vec<u64>)>,
    messages: u64,
    bytes: u64,
    errors: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn op(&mut self, shared: &Shared, latency: Duration) {
        self.ops += 1;
        self.latencies_us.push(latency.as_micros() as u64);
        shared.ops.fetch_add(1, Ordering::Relaxed);
    }

    fn command(&mut self, name: &'static str, latency: Duration) {
        let us = latency.as_micros() as u64;
        match self.commands.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(us),
            None => self.commands.push((name, vec![us])),
        }
    }

    fn merge(&mut self, other: Stats) {
        self.ops += other.ops;
        self.latencies_us.extend(other.latencies_us);
        for (name, list) in other.commands {
            match self.commands.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => mine.extend(list),
                None => self.commands.push((name, list)),
            }
        }
        self.messages += other.messages;
        self.bytes += other.bytes;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
    }
}

/// The client's own connection is gone (already counted).
struct Lost;

/// What every client shares while the run goes on.
struct Shared {
    plan: Arc<Plan>,
    barrier: Barrier,
    /// Workload phases started (barriers passed).
    phase: AtomicUsize,
    /// Client steps (one workload of one repetition) finished.
    steps: AtomicU64,
    ops: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    interrupted: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Per user (index): the message count after the last `idle` round of any client of that
    /// user. A round holds the lock, so deliveries to one user are timed one at a time.
    idle_counts: Vec<tokio::sync::Mutex<u32>>,
    probes: AtomicU64,
    run_id: String,
    /// With --server-pid: sampled once every client has logged in.
    monitor: Option<MonitorMark>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts a failed operation; `Err(Lost)` when the client's connection is gone.
    fn settle(&self, stats: &mut Stats, workload: Workload, result: Result<(), Failure>) -> Result<(), Lost> {
        let Err(failure) = result else { return Ok(()) };
        *stats.errors.entry(failure.key()).or_default() += 1;
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{}: {failure}", workload.name()));
        if matches!(failure, Failure::Lost(_)) { Err(Lost) } else { Ok(()) }
    }
}

/// One client's view of the run.
struct Client<'a> {
    shared: &'a Shared,
    plan: &'a Plan,
    user_index: usize,
    user: String,
}

impl Client<'_> {
    async fn run_workload(&self, workload: Workload, conn: &mut Conn, stats: &mut Stats) -> Result<(), Lost> {
        let shared = self.shared;
        match workload {
            Workload::Sync => {
                let result = self.sync(conn, stats).await;
                shared.settle(stats, workload, result)
            }
            Workload::Download => self.download(conn, stats).await,
            Workload::Search => {
                let word = format!("SEARCH TEXT {}", quoted(&self.plan.search_word));
                let result = self.search(conn, stats, "SEARCH TEXT", &word).await;
                shared.settle(stats, workload, result)?;
                let from = format!("SEARCH FROM {}", quoted(&self.plan.search_from));
                let result = self.search(conn, stats, "SEARCH FROM", &from).await;
                shared.settle(stats, workload, result)
            }
            Workload::Store => self.store(conn, stats).await,
            Workload::Qresync => self.qresync(conn, stats).await,
            Workload::Idle => {
                for _ in 0..self.plan.idle_rounds {
                    if shared.stopped() {
                        break;
                    }
                    let result = self.idle_round(conn, stats).await;
                    shared.settle(stats, workload, result)?;
                }
                Ok(())
            }
            Workload::Expunge => {
                let result = self.expunge(conn, stats).await;
                shared.settle(stats, workload, result)
            }
        }
    }

    /// SELECT, then the first sync's FETCH of every message; one operation.
    async fn sync(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Failure> {
        let start = Instant::now();
        conn.select(&self.plan.mailbox, None).await?;
        stats.command("SELECT", start.elapsed());
        let fetch_start = Instant::now();
        let (mut messages, mut bytes) = (0, 0);
        conn.command("UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)", |r| {
            if r.is("FETCH") && r.text.contains("ENVELOPE") {
                messages += 1;
                bytes += r.wire_bytes;
            }
        })
        .await?
        .check("UID FETCH")?;
        stats.command("UID FETCH", fetch_start.elapsed());
        stats.op(self.shared, start.elapsed());
        stats.messages += messages;
        stats.bytes += bytes;
        Ok(())
    }

    /// The UIDs of the mailbox, from `UID SEARCH ALL` (not timed).
    async fn uids(&self, conn: &mut Conn, search: &str) -> Result<Vec<u32>, Failure> {
        conn.ensure_selected(self.plan).await?;
        let mut uids = Vec::new();
        conn.command(search, |r| {
            if let Some(numbers) = r.search_numbers() {
                uids.extend(numbers);
            }
        })
        .await?
        .check("UID SEARCH")?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Every message's content, `--batch` UIDs per command; one operation per command.
    async fn download(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Lost> {
        let uids = match self.uids(conn, "UID SEARCH ALL").await {
            Ok(uids) => uids,
            Err(failure) => return self.shared.settle(stats, Workload::Download, Err(failure)),
        };
        for batch in uids.chunks(self.plan.batch) {
            if self.shared.stopped() {
                break;
            }
            let result = self.download_batch(conn, stats, batch).await;
            self.shared.settle(stats, Workload::Download, result)?;
        }
        Ok(())
    }

    async fn download_batch(&self, conn: &mut Conn, stats: &mut Stats, batch: &[u32]) -> Result<(), Failure> {
        let (first, last) = (batch[0], batch[batch.len() - 1]);
        let start = Instant::now();
        let (mut messages, mut bytes) = (0, 0);
        conn.command(&format!("UID FETCH {first}:{last} (BODY.PEEK[])"), |r| {
            if r.is("FETCH") && r.text.contains("BODY[") {
                messages += 1;
                bytes += r.literals.iter().sum::<u64>();
            }
        })
        .await?
        .check("UID FETCH")?;
        let took = start.elapsed();
        stats.command("UID FETCH (BODY.PEEK[])", took);
        stats.op(self.shared, took);
        stats.messages += messages;
        stats.bytes += bytes;
        Ok(())
    }

    async fn search(
        &self,
        conn: &mut Conn,
        stats: &mut Stats,
        name: &'static str,
        command: &str,
    ) -> Result<(), Failure> {
        conn.ensure_selected(self.plan).await?;
        let start = Instant::now();
        let mut matches = 0;
        conn.command(command, |r| {
            if let Some(numbers) = r.search_numbers() {
                matches += numbers.count() as u64;
            }
        })
        .await?
        .check("SEARCH")?;
        let took = start.elapsed();
        stats.command(name, took);
        stats.op(self.shared, took);
        stats.messages += matches;
        Ok(())
    }

    /// `UID STORE 1:N +FLAGS.SILENT (\Flagged)` then `-FLAGS.SILENT`: two operations, each
    /// counting the messages of 1:N (from an untimed `UID SEARCH UID 1:N`).
    async fn store(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Lost> {
        let range = format!("1:{}", self.plan.store_count);
        let matched = match self.uids(conn, &format!("UID SEARCH UID {range}")).await {
            Ok(uids) => uids.len() as u64,
            Err(failure) => return self.shared.settle(stats, Workload::Store, Err(failure)),
        };
        for (name, sign) in [("UID STORE +FLAGS", '+'), ("UID STORE -FLAGS", '-')] {
            let command = format!("UID STORE {range} {sign}FLAGS.SILENT (\\Flagged)");
            let result = async {
                let start = Instant::now();
                conn.command(&command, |_| {}).await?.check("UID STORE")?;
                let took = start.elapsed();
                stats.command(name, took);
                stats.op(self.shared, took);
                stats.messages += matched;
                Ok(())
            }
            .await;
            self.shared.settle(stats, Workload::Store, result)?;
        }
        Ok(())
    }

    /// A fresh connection learns UIDVALIDITY and HIGHESTMODSEQ; the client's own connection
    /// changes the flags of the last `--qresync-changes` messages; a new connection resyncs
    /// with `SELECT ... (QRESYNC (v m))`, the timed operation.
    async fn qresync(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Lost> {
        let shared = self.shared;
        let state = match self.qresync_learn().await {
            Ok(state) => state,
            Err(failure) => return shared.settle(stats, Workload::Qresync, Err(failure.aux())),
        };
        let result = self.qresync_change(conn).await;
        shared.settle(stats, Workload::Qresync, result)?;
        let result = self.qresync_resync(stats, state).await.map_err(Failure::aux);
        shared.settle(stats, Workload::Qresync, result)
    }

    async fn qresync_learn(&self) -> Result<(u32, u64), Failure> {
        let mut aux = Conn::open(self.plan, &self.user).await?;
        aux.enable_qresync().await?;
        let info = aux.select(&self.plan.mailbox, None).await?;
        aux.logout().await;
        match (info.uidvalidity, info.highest_modseq) {
            (Some(v), Some(m)) => Ok((v, m)),
            _ => Err(Failure::Other {
                key: "unsupported",
                message: "SELECT after ENABLE QRESYNC gave no UIDVALIDITY or HIGHESTMODSEQ".into(),
            }),
        }
    }

    async fn qresync_change(&self, conn: &mut Conn) -> Result<(), Failure> {
        conn.ensure_selected(self.plan).await?;
        let last = conn.exists;
        if last == 0 {
            return Ok(());
        }
        let first = last.saturating_sub(self.plan.qresync_changes - 1).max(1);
        for sign in ['+', '-'] {
            let command = format!("STORE {first}:{last} {sign}FLAGS.SILENT (\\Flagged)");
            conn.command(&command, |_| {}).await?.check("STORE")?;
        }
        Ok(())
    }

    async fn qresync_resync(&self, stats: &mut Stats, (uidvalidity, modseq): (u32, u64)) -> Result<(), Failure> {
        let start = Instant::now();
        let mut aux = Conn::open(self.plan, &self.user).await?;
        aux.enable_qresync().await?;
        stats.command("connect, LOGIN, ENABLE QRESYNC", start.elapsed());
        let select_start = Instant::now();
        let info = aux.select(&self.plan.mailbox, Some((uidvalidity, modseq))).await?;
        let took = select_start.elapsed();
        stats.command("SELECT (QRESYNC)", took);
        stats.op(self.shared, took);
        stats.messages += info.fetches + info.vanished;
        aux.logout().await;
        Ok(())
    }

    /// IDLE, deliver one message to the user over SMTP, and time the end of its data to the
    /// EXISTS that announces it.
    async fn idle_round(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Failure> {
        let Some(trigger) = self.plan.idle_trigger else {
            return Err(Failure::Other { key: "usage", message: "no --idle-trigger-smtp".into() });
        };
        conn.ensure_selected(self.plan).await?;
        let mut last_count = self.shared.idle_counts[self.user_index].lock().await;
        conn.command("NOOP", |_| {}).await?.check("NOOP")?;
        // An EXISTS of another client's delivery may still be on its way; only a count beyond
        // the last one any client of this user saw announces this round's message.
        let mut expected = conn.exists.max(*last_count).saturating_add(1);
        let tag = conn.send_command("IDLE").await?;
        loop {
            let response = conn.next().await?;
            match response.kind {
                Kind::Continuation => break,
                Kind::Untagged => conn.track(&response),
                Kind::Tagged { tag: t, status } if t == tag => {
                    return Err(Failure::Status { command: "IDLE", status, text: response.text });
                }
                Kind::Tagged { tag: t, .. } => {
                    return Err(ConnError::Protocol(format!("a response to unknown tag {t}")).into());
                }
            }
        }
        expected = expected.max(conn.exists.saturating_add(1));
        let number = self.shared.probes.fetch_add(1, Ordering::Relaxed) + 1;
        let message = probe_message(&self.plan.idle_from, &self.user, &self.shared.run_id, number);
        let mut smtp = tokio::spawn(send_probe(
            trigger,
            self.plan.idle_from.clone(),
            self.user.clone(),
            message,
            self.plan.timeout,
        ));
        let deadline = tokio::time::Instant::now() + self.plan.timeout;
        let mut sent: Option<Instant> = None;
        enum Event {
            Response(Result<Response, ConnError>),
            Smtp(Result<Instant, String>),
            Deadline,
        }
        let arrived = loop {
            let event = tokio::select! {
                response = conn.next() => Event::Response(response),
                result = &mut smtp, if sent.is_none() => {
                    Event::Smtp(result.unwrap_or_else(|e| Err(format!("SMTP: the task failed: {e}"))))
                }
                () = tokio::time::sleep_until(deadline) => Event::Deadline,
            };
            match event {
                Event::Response(response) => {
                    let response = response?;
                    match response.kind {
                        Kind::Untagged => {
                            conn.track(&response);
                            if conn.exists >= expected {
                                break Instant::now();
                            }
                        }
                        Kind::Continuation => {}
                        Kind::Tagged { tag: t, status } if t == tag => {
                            return Err(Failure::Status { command: "IDLE", status, text: response.text });
                        }
                        Kind::Tagged { tag: t, .. } => {
                            return Err(ConnError::Protocol(format!("a response to unknown tag {t}")).into());
                        }
                    }
                }
                Event::Smtp(Ok(at)) => sent = Some(at),
                Event::Smtp(Err(message)) => {
                    conn.end_idle(&tag).await?;
                    return Err(Failure::Other { key: "SMTP", message });
                }
                Event::Deadline => {
                    smtp.abort();
                    conn.end_idle(&tag).await?;
                    let secs = self.plan.timeout.as_secs();
                    return Err(Failure::Other {
                        key: "timeout",
                        message: format!("no EXISTS within {secs} s of sending a message to {}", self.user),
                    });
                }
            }
        };
        let sent = match sent {
            Some(at) => Ok(at),
            None => smtp.await.unwrap_or_else(|e| Err(format!("SMTP: the task failed: {e}"))),
        };
        conn.end_idle(&tag).await?;
        *last_count = (*last_count).max(conn.exists);
        let sent = sent.map_err(|message| Failure::Other { key: "SMTP", message })?;
        let latency = arrived.saturating_duration_since(sent);
        stats.command("end of DATA to EXISTS", latency);
        stats.op(self.shared, latency);
        stats.messages += 1;
        Ok(())
    }

    /// Mark the last `--expunge-count` messages \Deleted and EXPUNGE; one operation.
    async fn expunge(&self, conn: &mut Conn, stats: &mut Stats) -> Result<(), Failure> {
        conn.ensure_selected(self.plan).await?;
        let last = conn.exists;
        if last == 0 {
            return Ok(());
        }
        let first = last.saturating_sub(self.plan.expunge_count - 1).max(1);
        let start = Instant::now();
        conn.command(&format!("STORE {first}:{last} +FLAGS.SILENT (\\Deleted)"), |_| {}).await?.check("STORE")?;
        stats.command("STORE +FLAGS (\\Deleted)", start.elapsed());
        let expunge_start = Instant::now();
        let mut expunged = 0;
        conn.command("EXPUNGE", |r| {
            if r.is("EXPUNGE") {
                expunged += 1;
            } else if let Some((false, n)) = r.vanished() {
                expunged += n;
            }
        })
        .await?
        .check("EXPUNGE")?;
        stats.command("EXPUNGE", expunge_start.elapsed());
        stats.op(self.shared, start.elapsed());
        stats.messages += expunged;
        Ok(())
    }
}

/// What one client task measured: per workload (indexed as [`Workload::ALL`]), and the start
/// and end of each of its steps.
struct ClientResult {
    stats: Vec<Stats>,
    steps: Vec<(Instant, Instant)>,
}

async fn client_task(shared: Arc<Shared>, index: usize) -> ClientResult {
    let plan = Arc::clone(&shared.plan);
    let (user_index, user) = plan.users.for_client(index);
    let client = Client { shared: &shared, plan: &plan, user_index, user };
    let mut stats: Vec<Stats> = Workload::ALL.iter().map(|_| Stats::default()).collect();
    let mut steps = Vec::with_capacity(plan.repeat as usize * plan.workloads.len());
    // Logging in is not part of any workload; a failure here is counted when the first
    // workload tries again.
    let mut session = Conn::open(&plan, &client.user).await.ok();
    // Every client has logged in (or failed to): the server's memory is sampled while they
    // all wait, before the first workload.
    if shared.barrier.wait().await.is_leader()
        && let Some(mark) = &shared.monitor
    {
        mark.logged_in();
    }
    for _ in 0..plan.repeat {
        for &workload in &plan.workloads {
            if shared.barrier.wait().await.is_leader() {
                shared.phase.fetch_add(1, Ordering::Relaxed);
            }
            let start = Instant::now();
            if !shared.stopped() {
                let slot = &mut stats[Workload::ALL.iter().position(|&w| w == workload).unwrap_or(0)];
                let conn = match session.take() {
                    Some(conn) => Ok(conn),
                    None => Conn::open(&plan, &client.user).await,
                };
                match conn {
                    Ok(mut conn) => {
                        if client.run_workload(workload, &mut conn, slot).await.is_ok() {
                            session = Some(conn);
                        }
                    }
                    // A refused LOGIN (NO) leaves no usable connection either.
                    Err(failure) => {
                        let _ = shared.settle(slot, workload, Err(failure));
                    }
                }
            }
            steps.push((start, Instant::now()));
            shared.steps.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(conn) = session {
        conn.logout().await;
    }
    ClientResult { stats, steps }
}

// ---------------------------------------------------------------------------------------------
// Server processes (--server-pid)

/// The fields of /proc/PID/stat this tool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    ppid: u32,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// In clock ticks after boot; with the pid, it names a process even when pids are reused.
    start_time: u64,
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat { ppid: u32::try_from(field(4)?).ok()?, cpu_ticks: field(14)? + field(15)?, start_time: field(22)? })
}

/// The `Pss:` of /proc/PID/smaps_rollup, in KiB.
fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    let line = smaps_rollup.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The processes `roots` and their descendants, now.
#[derive(Debug, Default)]
struct ProcSample {
    pss_kib: u64,
    processes: usize,
    /// Processes whose smaps_rollup could not be read (another user's, without root).
    unreadable: usize,
    /// CPU ticks by (pid, start time).
    cpu: Vec<((u32, u64), u64)>,
}

fn sample_processes(roots: &[u32]) -> ProcSample {
    let mut stats = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse_stat) {
            stats.insert(pid, stat);
        }
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, stat) in &stats {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut seen = HashSet::new();
    let mut pending: Vec<u32> = roots.iter().copied().filter(|pid| stats.contains_key(pid)).collect();
    let mut sample = ProcSample::default();
    while let Some(pid) = pending.pop() {
        if !seen.insert(pid) {
            continue;
        }
        pending.extend(children.get(&pid).into_iter().flatten());
        sample.processes += 1;
        let stat = stats[&pid];
        sample.cpu.push(((pid, stat.start_time), stat.cpu_ticks));
        match std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok().as_deref().and_then(parse_pss_kib) {
            Some(kib) => sample.pss_kib += kib,
            None => sample.unreadable += 1,
        }
    }
    sample
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// What the watched processes used during the run.
#[derive(Debug, Default, Clone)]
struct ServerUsage {
    pids: Vec<u32>,
    /// Before any client connects.
    pss_baseline_kib: u64,
    /// Once every client has logged in, before the first workload (all clients wait).
    pss_logged_in_kib: Option<u64>,
    /// The peak while the workloads ran (after the logins).
    pss_peak_kib: u64,
    /// The peak over the whole run, logins included (password hashing can dominate it).
    pss_peak_all_kib: u64,
    processes_baseline: usize,
    processes_peak: usize,
    /// utime + stime used during the whole run by the processes seen (those that started
    /// during the run count from zero; one that ended between two samples loses its last
    /// <100 ms), and during the workloads only.
    cpu_secs: f64,
    cpu_workloads_secs: f64,
    unreadable: usize,
    samples: u64,
}

/// The running figures, shared by the sampling thread and the mark taken at the first
/// workload.
struct MonitorState {
    usage: ServerUsage,
    /// CPU ticks by process at the start, at the mark, and at the last sample.
    cpu_start: HashMap<(u32, u64), u64>,
    cpu_mark: Option<HashMap<(u32, u64), u64>>,
    cpu_last: HashMap<(u32, u64), u64>,
}

impl MonitorState {
    fn record(&mut self, sample: ProcSample) {
        let usage = &mut self.usage;
        usage.samples += 1;
        usage.pss_peak_all_kib = usage.pss_peak_all_kib.max(sample.pss_kib);
        if usage.pss_logged_in_kib.is_some() {
            usage.pss_peak_kib = usage.pss_peak_kib.max(sample.pss_kib);
        }
        usage.processes_peak = usage.processes_peak.max(sample.processes);
        usage.unreadable = usage.unreadable.max(sample.unreadable);
        self.cpu_last.extend(sample.cpu);
    }

    /// Ticks used since `since` (a process not in it counts from zero).
    fn ticks_since(&self, since: &HashMap<(u32, u64), u64>) -> u64 {
        self.cpu_last.iter().map(|(key, &now)| now.saturating_sub(since.get(key).copied().unwrap_or(0))).sum()
    }
}

/// Marks the moment every client has logged in; shared with the client tasks.
#[derive(Clone)]
struct MonitorMark {
    roots: Arc<[u32]>,
    state: Arc<Mutex<MonitorState>>,
}

impl MonitorMark {
    /// Samples at once (blocking for a few milliseconds while every client waits).
    fn logged_in(&self) {
        let sample = sample_processes(&self.roots);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.usage.pss_logged_in_kib = Some(sample.pss_kib);
        state.usage.pss_peak_kib = sample.pss_kib;
        state.record(sample);
        state.cpu_mark = Some(state.cpu_last.clone());
    }
}

/// Samples the server's processes every [`SAMPLE_EVERY`] on a thread of its own.
struct Monitor {
    mark: MonitorMark,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Monitor {
    /// Takes the baseline sample at once, before any client connects.
    fn start(roots: Vec<u32>) -> Monitor {
        let first = sample_processes(&roots);
        let cpu_start: HashMap<(u32, u64), u64> = first.cpu.iter().copied().collect();
        let state = MonitorState {
            usage: ServerUsage {
                pids: roots.clone(),
                pss_baseline_kib: first.pss_kib,
                pss_peak_kib: first.pss_kib,
                pss_peak_all_kib: first.pss_kib,
                processes_baseline: first.processes,
                processes_peak: first.processes,
                unreadable: first.unreadable,
                samples: 1,
                ..ServerUsage::default()
            },
            cpu_last: cpu_start.clone(),
            cpu_start,
            cpu_mark: None,
        };
        let mark = MonitorMark { roots: roots.into(), state: Arc::new(Mutex::new(state)) };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, mark) = (Arc::clone(&stop), mark.clone());
            std::thread::spawn(move || {
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    if !stopping {
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                    let sample = sample_processes(&mark.roots);
                    mark.state.lock().unwrap_or_else(|e| e.into_inner()).record(sample);
                    if stopping {
                        break;
                    }
                }
            })
        };
        Monitor { mark, stop, thread }
    }

    fn finish(self) -> ServerUsage {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let state = self.mark.state.lock().unwrap_or_else(|e| e.into_inner());
        let hz = clock_ticks_per_second();
        let mut usage = state.usage.clone();
        usage.cpu_secs = state.ticks_since(&state.cpu_start) as f64 / hz;
        usage.cpu_workloads_secs = state.cpu_mark.as_ref().map_or(0.0, |mark| state.ticks_since(mark) as f64 / hz);
        if usage.pss_logged_in_kib.is_none() {
            // Interrupted before the first workload: there was no time after the logins.
            usage.pss_peak_kib = usage.pss_peak_all_kib;
        }
        usage
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Report {
    /// Per workload, in the order they first appear: the merged stats (latencies sorted) and
    /// the time the workload took (summed over repetitions).
    workloads: Vec<(Workload, Stats, Duration)>,
    elapsed: Duration,
    interrupted: bool,
    last_error: Option<String>,
    server: Option<ServerUsage>,
}

async fn run(plan: Arc<Plan>, show_progress: bool) -> Report {
    let monitor = (!plan.server_pids.is_empty()).then(|| Monitor::start(plan.server_pids.clone()));
    let mark = monitor.as_ref().map(|m| m.mark.clone());
    let started = Instant::now();
    let users_used = plan.users.count().min(plan.connections as u64) as usize;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        barrier: Barrier::new(plan.connections),
        phase: AtomicUsize::new(0),
        steps: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        last_error: Mutex::new(None),
        idle_counts: (0..users_used).map(|_| tokio::sync::Mutex::new(0)).collect(),
        probes: AtomicU64::new(0),
        run_id: format!("{:x}.{:x}", now.as_micros(), std::process::id()),
        monitor: mark,
    });

    // Ctrl-C once: skip what is left and report; twice: leave at once.
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

    let tasks: Vec<_> = (0..plan.connections).map(|i| tokio::spawn(client_task(Arc::clone(&shared), i))).collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(e) => eprintln!("imapload: a client task failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    signals.abort();
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let server = monitor.map(Monitor::finish);

    // Each phase (one workload of one repetition) lasts from its first client's start to its
    // last client's end.
    let mut walls: HashMap<Workload, Duration> = HashMap::new();
    for (phase, &workload) in
        plan.workloads.iter().cycle().take(plan.workloads.len() * plan.repeat as usize).enumerate()
    {
        let spans = results.iter().filter_map(|r| r.steps.get(phase));
        let start = spans.clone().map(|s| s.0).min();
        let end = spans.map(|s| s.1).max();
        if let (Some(start), Some(end)) = (start, end) {
            *walls.entry(workload).or_default() += end.saturating_duration_since(start);
        }
    }
    let mut merged: Vec<Stats> = Workload::ALL.iter().map(|_| Stats::default()).collect();
    for result in results {
        for (slot, stats) in merged.iter_mut().zip(result.stats) {
            slot.merge(stats);
        }
    }
    let workloads = plan
        .distinct_workloads()
        .into_iter()
        .map(|w| {
            let i = Workload::ALL.iter().position(|&x| x == w).unwrap_or(0);
            let mut stats = std::mem::take(&mut merged[i]);
            stats.latencies_us.sort_unstable();
            for (_, list) in &mut stats.commands {
                list.sort_unstable();
            }
            (w, stats, walls.get(&w).copied().unwrap_or_default())
        })
        .collect();
    let last_error = shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Report { workloads, elapsed, interrupted: shared.interrupted.load(Ordering::Relaxed), last_error, server }
}

fn spawn_progress(shared: Arc<Shared>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let plan = &shared.plan;
    let phases = plan.workloads.len() * plan.repeat as usize;
    let bar = ProgressBar::new((phases * plan.connections) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let plan = &shared.plan;
                let phase = shared.phase.load(Ordering::Relaxed);
                let workload = plan.workloads[phase.saturating_sub(1) % plan.workloads.len()];
                bar.set_position(shared.steps.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} ({phase}/{phases}), {} ops, {} errors",
                    workload.name(),
                    shared.ops.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed)
                ));
            }
        })
    };
    (bar, ticker)
}

// ---------------------------------------------------------------------------------------------
// Output

#[derive(Serialize, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

/// p50, p99 and max in milliseconds of sorted microseconds.
fn latency(sorted: &[u64]) -> Latency {
    let ms = |us: u64| round(us as f64 / 1000.0, 3);
    Latency {
        p50: ms(percentile(sorted, 50.0)),
        p99: ms(percentile(sorted, 99.0)),
        max: ms(sorted.last().copied().unwrap_or(0)),
    }
}

fn round(x: f64, places: i32) -> f64 {
    (x * 10f64.powi(places)).round() / 10f64.powi(places)
}

/// The figures of one workload, as the summary and the JSON line give them.
#[derive(Serialize)]
struct WorkloadFigures<'a> {
    /// Operations that succeeded.
    ops: u64,
    elapsed_s: f64,
    ops_per_s: f64,
    latency_ms: Latency,
    messages: u64,
    msgs_per_s: Option<f64>,
    bytes: u64,
    mb_per_s: Option<f64>,
    /// Failed operations by kind: NO, BAD, connection, ...
    errors: &'a BTreeMap<&'static str, u64>,
    commands: BTreeMap<&'static str, CommandFigures>,
}

#[derive(Serialize)]
struct CommandFigures {
    count: usize,
    latency_ms: Latency,
}

impl<'a> WorkloadFigures<'a> {
    fn new(workload: Workload, stats: &'a Stats, wall: Duration) -> WorkloadFigures<'a> {
        let secs = wall.as_secs_f64().max(1e-9);
        let (_, rate) = workload.unit();
        WorkloadFigures {
            ops: stats.ops,
            elapsed_s: round(wall.as_secs_f64(), 6),
            ops_per_s: round(stats.ops as f64 / secs, 1),
            latency_ms: latency(&stats.latencies_us),
            messages: stats.messages,
            msgs_per_s: rate.then(|| round(stats.messages as f64 / secs, 1)),
            bytes: stats.bytes,
            mb_per_s: workload.counts_bytes().then(|| round(stats.bytes as f64 / 1e6 / secs, 3)),
            errors: &stats.errors,
            commands: stats
                .commands
                .iter()
                .map(|(name, list)| (*name, CommandFigures { count: list.len(), latency_ms: latency(list) }))
                .collect(),
        }
    }
}

fn total_errors(report: &Report) -> BTreeMap<&'static str, u64> {
    let mut errors = BTreeMap::new();
    for (_, stats, _) in &report.workloads {
        for (key, n) in &stats.errors {
            *errors.entry(*key).or_default() += n;
        }
    }
    errors
}

fn error_list(errors: &BTreeMap<&'static str, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors.iter().map(|(key, n)| format!("{key}: {n}")).collect::<Vec<_>>().join(", ")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn summary(plan: &Plan, report: &Report) -> String {
    let mut out = String::new();
    let users = match &plan.users {
        Users::One(user) => format!("as {user}"),
        Users::Pattern { pattern, count } => format!("as {pattern} (n = 1..{})", (*count).min(plan.connections as u64)),
    };
    let names: Vec<&str> = plan.workloads.iter().map(|w| w.name()).collect();
    let _ = writeln!(
        out,
        "imapload: {}, {} clients {users}, mailbox {}, workloads {} x{}",
        plan.server,
        plan.connections,
        plan.mailbox,
        names.join(","),
        plan.repeat
    );
    for (workload, stats, wall) in &report.workloads {
        let f = WorkloadFigures::new(*workload, stats, *wall);
        let (unit, _) = workload.unit();
        let _ = writeln!(out, "  {}: {} ops in {:.3} s ({:.1}/s)", workload.name(), f.ops, f.elapsed_s, f.ops_per_s);
        let l = f.latency_ms;
        let _ = writeln!(out, "    latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", l.p50, l.p99, l.max);
        let mut volume = format!("{} {unit}", f.messages);
        if let Some(rate) = f.msgs_per_s {
            let _ = write!(volume, " ({rate:.1}/s)");
        }
        if let Some(rate) = f.mb_per_s {
            let _ = write!(volume, ", {:.2} MB ({rate:.2} MB/s)", f.bytes as f64 / 1e6);
        }
        let _ = writeln!(out, "    {volume}");
        for (name, list) in &stats.commands {
            let l = latency(list);
            let _ = writeln!(
                out,
                "    {name}: {} x, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                list.len(),
                l.p50,
                l.p99,
                l.max
            );
        }
        let _ = writeln!(out, "    errors: {}", error_list(&stats.errors));
    }
    let _ = write!(out, "  errors: {}", error_list(&total_errors(report)));
    if let Some(last) = &report.last_error {
        let _ = write!(out, " (last: {last})");
    }
    out.push('\n');
    if let Some(server) = &report.server {
        let per_session = |kib: u64| per_session_mib(server, kib, plan.connections);
        let logged_in = match server.pss_logged_in_kib {
            Some(kib) => format!(
                "{:.1} MiB with the {} sessions logged in (+{:.2} MiB per session), ",
                mib(kib),
                plan.connections,
                per_session(kib)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  server: PSS {:.1} MiB before the logins, {logged_in}peak {:.1} MiB during the workloads \
             (+{:.2} MiB per session), {:.1} MiB counting the logins",
            mib(server.pss_baseline_kib),
            mib(server.pss_peak_kib),
            per_session(server.pss_peak_kib),
            mib(server.pss_peak_all_kib),
        );
        let _ = writeln!(
            out,
            "  server: CPU {:.2} s ({:.2} s during the workloads) over {:.2} s, {} -> {} processes",
            server.cpu_secs,
            server.cpu_workloads_secs,
            report.elapsed.as_secs_f64(),
            server.processes_baseline,
            server.processes_peak
        );
        if server.unreadable > 0 {
            let _ = writeln!(
                out,
                "  server: the PSS of {} process(es) could not be read (run as root or as the server's user)",
                server.unreadable
            );
        }
    }
    let _ = writeln!(out, "  elapsed: {:.2} s", report.elapsed.as_secs_f64());
    if report.interrupted {
        out.push_str("  interrupted\n");
    }
    out
}

/// The `--json` line; fields are written in this order.
#[derive(Serialize)]
struct JsonReport<'a> {
    workloads: BTreeMap<&'static str, WorkloadFigures<'a>>,
    ops: u64,
    errors: BTreeMap<&'static str, u64>,
    elapsed_s: f64,
    connections: usize,
    users: u64,
    repeat: u32,
    mailbox: &'a str,
    server: Option<JsonServer<'a>>,
    interrupted: bool,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonServer<'a> {
    pids: &'a [u32],
    processes_baseline: usize,
    processes_peak: usize,
    pss_baseline_mib: f64,
    pss_logged_in_mib: Option<f64>,
    pss_peak_mib: f64,
    pss_peak_with_logins_mib: f64,
    /// (logged in - baseline) / connections: what an idle session costs.
    pss_per_session_mib: Option<f64>,
    /// (peak during the workloads - baseline) / connections.
    pss_per_session_peak_mib: f64,
    cpu_s: f64,
    cpu_workloads_s: f64,
    pss_unreadable: usize,
}

/// `(kib - baseline) / connections`, in MiB.
fn per_session_mib(server: &ServerUsage, kib: u64, connections: usize) -> f64 {
    mib(kib.saturating_sub(server.pss_baseline_kib)) / connections as f64
}

fn json_line(plan: &Plan, report: &Report) -> String {
    let line = JsonReport {
        workloads: report
            .workloads
            .iter()
            .map(|(w, stats, wall)| (w.name(), WorkloadFigures::new(*w, stats, *wall)))
            .collect(),
        ops: report.workloads.iter().map(|(_, s, _)| s.ops).sum(),
        errors: total_errors(report),
        elapsed_s: round(report.elapsed.as_secs_f64(), 3),
        connections: plan.connections,
        users: plan.users.count().min(plan.connections as u64),
        repeat: plan.repeat,
        mailbox: &plan.mailbox,
        server: report.server.as_ref().map(|s| JsonServer {
            pids: &s.pids,
            processes_baseline: s.processes_baseline,
            processes_peak: s.processes_peak,
            pss_baseline_mib: round(mib(s.pss_baseline_kib), 2),
            pss_logged_in_mib: s.pss_logged_in_kib.map(|kib| round(mib(kib), 2)),
            pss_peak_mib: round(mib(s.pss_peak_kib), 2),
            pss_peak_with_logins_mib: round(mib(s.pss_peak_all_kib), 2),
            pss_per_session_mib: s.pss_logged_in_kib.map(|kib| round(per_session_mib(s, kib, plan.connections), 3)),
            pss_per_session_peak_mib: round(per_session_mib(s, s.pss_peak_kib, plan.connections), 3),
            cpu_s: round(s.cpu_secs, 2),
            cpu_workloads_s: round(s.cpu_workloads_secs, 2),
            pss_unreadable: s.unreadable,
        }),
        interrupted: report.interrupted,
        last_error: report.last_error.as_deref(),
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
            eprintln!("imapload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = Arc::new(plan);
    let report = runtime.block_on(run(Arc::clone(&plan), show_progress));
    let text = summary(&plan, &report);
    if args.json {
        if !args.quiet {
            eprint!("{text}");
        }
        println!("{}", json_line(&plan, &report));
    } else {
        print!("{text}");
    }
    let ops: u64 = report.workloads.iter().map(|(_, s, _)| s.ops).sum();
    let all_ok = total_errors(&report).is_empty() && ops > 0 && !report.interrupted;
    if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a decoder in pieces of `piece` bytes; returns every response.
    fn decode_all(input: &[u8], piece: usize) -> Result<Vec<Response>, DecodeError> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            let mut pos = 0;
            while pos < chunk.len() {
                let (used, response) = decoder.decode(&chunk[pos..])?;
                pos += used;
                out.extend(response);
            }
        }
        assert_eq!(decoder.line, b"", "nothing left over");
        assert_eq!(decoder.literal_left, 0);
        Ok(out)
    }

    fn untagged(text: &str) -> Response {
        Response { kind: Kind::Untagged, text: text.into(), literals: vec![], wire_bytes: text.len() as u64 + 4 }
    }

    #[test]
    fn decodes_untagged_tagged_and_continuation() {
        let input = b"* OK [CAPABILITY IMAP4rev1] ready\r\n+ idling\r\n+\r\na1 OK LOGIN done\r\na2 no [AUTHENTICATIONFAILED] nope\r\nx.3 BAD\r\n";
        let responses = decode_all(input, input.len()).unwrap();
        assert_eq!(responses.len(), 6);
        assert_eq!(responses[0], untagged("OK [CAPABILITY IMAP4rev1] ready"));
        assert_eq!(responses[0].code(), Some(("CAPABILITY", "IMAP4rev1")));
        assert_eq!(responses[1].kind, Kind::Continuation);
        assert_eq!(responses[1].text, "idling");
        assert_eq!((&responses[2].kind, responses[2].text.as_str()), (&Kind::Continuation, ""));
        assert_eq!(responses[3].kind, Kind::Tagged { tag: "a1".into(), status: Status::Ok });
        assert_eq!(responses[3].text, "LOGIN done");
        assert_eq!(responses[4].kind, Kind::Tagged { tag: "a2".into(), status: Status::No });
        assert_eq!(responses[4].text, "[AUTHENTICATIONFAILED] nope");
        assert_eq!(responses[5].kind, Kind::Tagged { tag: "x.3".into(), status: Status::Bad });
        assert_eq!(responses[5].text, "");
        let wire: u64 = responses.iter().map(|r| r.wire_bytes).sum();
        assert_eq!(wire, input.len() as u64);
    }

    #[test]
    fn literals_are_skipped_wherever_they_are_and_however_the_bytes_arrive() {
        // Two literals in one response, one holding CRLFs, a tagged line, a `{3}` and what
        // looks like an EXISTS; a zero-length literal; a binary literal; a LITERAL+ form.
        let mut input = Vec::new();
        input.extend_from_slice(b"* 1 FETCH (UID 7 ENVELOPE (\"d\" {29}\r\n");
        input.extend_from_slice(b"subj\r\n* 3 EXISTS\r\na1 OK {3}\r\n");
        input.extend_from_slice(b" NIL) BODY[] {5}\r\nab\r\nc)\r\n");
        input.extend_from_slice(b"* 2 FETCH (BODY[1] {0}\r\n)\r\n");
        input.extend_from_slice(b"* 3 FETCH (BINARY[] ~{4}\r\n\x00\r\n\xff FLAGS ())\r\n");
        input.extend_from_slice(b"* 4 FETCH (BODY[] {2+}\r\n}\n)\r\n");
        input.extend_from_slice(b"a1 OK done\r\n");
        for piece in [1, 2, 3, 7, 64, input.len()] {
            let responses = decode_all(&input, piece).unwrap();
            let texts: Vec<&str> = responses.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(
                texts,
                [
                    "1 FETCH (UID 7 ENVELOPE (\"d\" {29} NIL) BODY[] {5})",
                    "2 FETCH (BODY[1] {0})",
                    "3 FETCH (BINARY[] ~{4} FLAGS ())",
                    "4 FETCH (BODY[] {2+})",
                    "done",
                ],
                "pieces of {piece}"
            );
            assert_eq!(responses[0].literals, [29, 5]);
            assert_eq!(responses[1].literals, [0]);
            assert_eq!(responses[2].literals, [4]);
            assert_eq!(responses[3].literals, [2]);
            assert!(responses[..4].iter().all(|r| r.is("FETCH")));
            assert_eq!(responses.iter().map(|r| r.wire_bytes).sum::<u64>(), input.len() as u64);
        }
    }

    #[test]
    fn a_literal_split_across_reads_is_resumed() {
        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode(b"* 9 FETCH (BODY[] {10}\r").unwrap(), (23, None));
        assert_eq!(decoder.decode(b"\n0123").unwrap(), (5, None));
        assert_eq!(decoder.literal_left, 6);
        assert_eq!(decoder.decode(b"4\r\n* 1").unwrap(), (6, None), "all of it is literal");
        assert_eq!(decoder.literal_left, 0);
        // The end of the line and the next response at once.
        let (used, response) = decoder.decode(b")\r\n* 10 EXISTS\r\n").unwrap();
        assert_eq!(used, 3);
        let response = response.unwrap();
        assert_eq!(response.text, "9 FETCH (BODY[] {10})");
        assert_eq!(response.wire_bytes, 23 + 5 + 6 + 3);
        let (_, next) = decoder.decode(b"* 10 EXISTS\r\n").unwrap();
        assert_eq!(next.unwrap().numbered(), Some((10, "EXISTS")));
    }

    #[test]
    fn bare_lf_ends_a_line_and_braces_elsewhere_are_text() {
        let responses = decode_all(b"* OK hi\n* OK {x}\r\n* OK {}\r\n* OK a}\r\n* OK \"{5}\"\r\n", 4).unwrap();
        let texts: Vec<&str> = responses.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["OK hi", "OK {x}", "OK {}", "OK a}", "OK \"{5}\""]);
        assert!(responses.iter().all(|r| r.literals.is_empty()));
    }

    #[test]
    fn bye_no_bad_and_malformed() {
        let responses =
            decode_all(b"* BYE shutting down\r\na7 NO [TRYCREATE] no mailbox\r\na8 BAD parse\r\n", 5).unwrap();
        assert_eq!(responses[0].word(), Some("BYE"));
        assert_eq!(responses[1].kind, Kind::Tagged { tag: "a7".into(), status: Status::No });
        assert_eq!(responses[2].kind, Kind::Tagged { tag: "a8".into(), status: Status::Bad });
        for bad in [&b"hello\r\n"[..], b"a1 MAYBE x\r\n", b"\r\n", b"*\r\n", b" OK x\r\n"] {
            assert!(matches!(decode_all(bad, 3), Err(DecodeError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(decode_all(b"* 1 FETCH {99999999999999999999}\r\n", 100), Err(DecodeError::BadLiteral(_))));
    }

    #[test]
    fn a_response_too_long_is_refused() {
        let mut decoder = Decoder::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut result = decoder.decode(b"* SEARCH ");
        for _ in 0..=(MAX_LINE_BYTES >> 20) {
            result = decoder.decode(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DecodeError::TooLong));
        // Literal bytes do not count: a 100 MB literal streams through.
        let mut decoder = Decoder::default();
        decoder.decode(b"* 1 FETCH (BODY[] {104857600}\r\n").unwrap();
        for _ in 0..100 {
            assert_eq!(decoder.decode(&chunk).unwrap(), (chunk.len(), None));
        }
        assert_eq!(decoder.decode(b")\r\n").unwrap().1.unwrap().literals, [100 << 20]);
    }

    #[test]
    fn reads_numbers_codes_searches_and_vanished() {
        assert_eq!(untagged("23 EXISTS").numbered(), Some((23, "EXISTS")));
        assert!(untagged("4 expunge").is("EXPUNGE"));
        assert_eq!(untagged("OK [UIDVALIDITY 3857529045] UIDs valid").code(), Some(("UIDVALIDITY", "3857529045")));
        assert_eq!(untagged("OK [NOMODSEQ] sorry").code(), Some(("NOMODSEQ", "")));
        assert_eq!(untagged("FLAGS (\\Seen)").code(), None);
        let numbers = |r: Response| r.search_numbers().map(|n| n.collect::<Vec<_>>());
        assert_eq!(numbers(untagged("SEARCH 2 84 882")), Some(vec![2, 84, 882]));
        assert_eq!(numbers(untagged("SEARCH")), Some(vec![]));
        assert_eq!(numbers(untagged("SEARCH 1 5 (MODSEQ 917162500)")), Some(vec![1, 5]));
        assert_eq!(numbers(untagged("ESEARCH (TAG \"a\") ALL 1:3")), None);
        assert_eq!(untagged("VANISHED (EARLIER) 41,43:116,120").vanished(), Some((true, 76)));
        assert_eq!(untagged("VANISHED 405,407").vanished(), Some((false, 2)));
        assert_eq!(count_set("5:1,7,*"), 7);
    }

    #[test]
    fn quotes_strings() {
        assert_eq!(quoted("INBOX"), "\"INBOX\"");
        assert_eq!(quoted(r#"pa"ss\word"#), r#""pa\"ss\\word""#);
        assert!(check_quotable("--password", "s3cret !").is_ok());
        assert!(check_quotable("--password", "caf\u{e9}").is_err());
        assert!(check_quotable("--password", "a\r\nb").is_err());
    }

    #[test]
    fn clients_pick_users_in_turn() {
        let users = Users::Pattern { pattern: "testuser{n}@example.test".into(), count: 3 };
        let picks: Vec<_> = (0..5).map(|i| users.for_client(i)).collect();
        assert_eq!(picks[0], (0, "testuser1@example.test".into()));
        assert_eq!(picks[2], (2, "testuser3@example.test".into()));
        assert_eq!(picks[3], (0, "testuser1@example.test".into()));
        assert_eq!(Users::One("a@b".into()).for_client(7), (0, "a@b".into()));
    }

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (imap (x) y) S 17 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(parse_stat(stat), Some(ProcStat { ppid: 17, cpu_ticks: 168, start_time: 98765 }));
        assert_eq!(parse_stat("1 (init) S"), None);
        let rollup =
            "00400000-7ffd [rollup]\nRss:               10240 kB\nPss:                4096 kB\nPss_Anon: 1 kB\n";
        assert_eq!(parse_pss_kib(rollup), Some(4096));
        // This process, and its parent as a root.
        let me = std::process::id();
        let sample = sample_processes(&[me]);
        assert!(sample.processes >= 1);
        assert!(sample.cpu.iter().any(|((pid, _), _)| *pid == me));
        assert!(sample.pss_kib > 0);
    }

    #[test]
    fn formats_dates_and_probes() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        let message = String::from_utf8(probe_message("a@x.test", "b@y.test", "run", 3)).unwrap();
        assert!(message.starts_with("From: <a@x.test>\r\nTo: <b@y.test>\r\nSubject: imapload idle probe 3\r\n"));
        assert!(message.contains("\r\nMessage-ID: <run.3@imapload.test>\r\n"));
        assert!(message.ends_with("\r\n\r\nSent by imapload to time IDLE.\r\n"));
    }

    #[test]
    fn stats_merge_by_command_name() {
        let mut a = Stats::default();
        a.command("SELECT", Duration::from_millis(1));
        a.errors.insert("NO", 1);
        let mut b = Stats::default();
        b.command("UID FETCH", Duration::from_millis(2));
        b.command("SELECT", Duration::from_millis(3));
        b.errors.insert("NO", 2);
        b.errors.insert("connection", 1);
        a.merge(b);
        assert_eq!(a.commands, vec![("SELECT", vec![1000, 3000]), ("UID FETCH", vec![2000])]);
        assert_eq!(a.errors, BTreeMap::from([("NO", 3), ("connection", 1)]));
    }
}
