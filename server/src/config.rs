//! The configuration file (TOML) and its embedded defaults.
//!
//! Every key is optional in a file: what a file leaves out keeps its default. Unknown keys
//! and bad values are errors that name the key. Every key is documented, with its default, in
//! `docs/configuration.md`; `postlog.example.toml` at the repository root sets them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The defaults used without `--config`, and for every key a file leaves out. `hostname` is
/// not here: without one, the system's host name is used (see [`Config::defaults`]).
pub const DEFAULT_CONFIG: &str = r#"# Postlog's embedded defaults.
data_dir = "./postlog-data"

[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
submissions = "127.0.0.1:2465"
lmtp = "127.0.0.1:2424"
imap = "127.0.0.1:2143"
imaps = "127.0.0.1:2993"
pop3 = "127.0.0.1:2110"
pop3s = "127.0.0.1:2995"
http = "127.0.0.1:8080"

[limits]
max_connections = 1000
max_connections_per_ip = 50

[timeouts]
smtp = 300
imap = 1800
pop3 = 600
http = 60
shutdown_grace = 10

[auth]
plaintext_on_loopback = true
max_failures_per_ip = 10
max_failures_per_account = 20
failure_window = 900
lockout = 900
delay_step_ms = 500
delay_max_ms = 5000

[quota]
default = "0"

[smtp]
max_message_size = "50M"
max_recipients = 1000
max_errors = 20
max_line_length = 4096
bare_newlines = "normalize"
vrfy = false
forbid_unauth_pipelining = true
greet_pause_ms = 0
quota_reply = "temporary"
max_hops = 50
max_header_size = "1M"

[queue]
lifetime = "5d"
delay_notice = "4h"
min_backoff = "5m"
max_backoff = "1h"
max_connections = 50
max_connections_per_domain = 10
max_messages_per_connection = 100
mx_port = 25
connect_timeout = 30
tls = "opportunistic"
ca_file = ""

[pop3]
lock_session = true
login_delay = 0

[store]
zstd_level = 1
dictionary = true
dictionary_min_samples = 1000
dictionary_min_bytes = "2M"
dictionary_zstd_level = -1
compression = "background"
compression_backlog = "1G"
segment_size = "256M"
compact_interval = "10m"
compact_dead_percent = 50
body_cache = "64M"

[log]
level = "info"
format = "text"
"#;

/// The keys of the `[listen]` table, in the order they are documented.
pub const LISTENERS: [&str; 9] =
    ["smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http"];

/// Every key the loader knows, as `table.key` (top-level keys bare). Tests check that each is
/// documented and set in the example file.
pub const KEYS: [&str; 82] = [
    "hostname",
    "data_dir",
    "resolver",
    "listen.smtp",
    "listen.submission",
    "listen.submissions",
    "listen.lmtp",
    "listen.imap",
    "listen.imaps",
    "listen.pop3",
    "listen.pop3s",
    "listen.http",
    "tls.cert",
    "tls.key",
    "limits.max_connections",
    "limits.max_connections_per_ip",
    "timeouts.smtp",
    "timeouts.imap",
    "timeouts.pop3",
    "timeouts.http",
    "timeouts.shutdown_grace",
    "auth.plaintext_on_loopback",
    "auth.max_failures_per_ip",
    "auth.max_failures_per_account",
    "auth.failure_window",
    "auth.lockout",
    "auth.delay_step_ms",
    "auth.delay_max_ms",
    "quota.default",
    "smtp.max_message_size",
    "smtp.max_recipients",
    "smtp.max_errors",
    "smtp.max_line_length",
    "smtp.bare_newlines",
    "smtp.vrfy",
    "smtp.forbid_unauth_pipelining",
    "smtp.greet_pause_ms",
    "smtp.quota_reply",
    "smtp.max_hops",
    "smtp.max_header_size",
    "queue.lifetime",
    "queue.delay_notice",
    "queue.min_backoff",
    "queue.max_backoff",
    "queue.max_connections",
    "queue.max_connections_per_domain",
    "queue.max_messages_per_connection",
    "queue.mx_port",
    "queue.connect_timeout",
    "queue.tls",
    "queue.ca_file",
    "relay.host",
    "relay.username",
    "relay.password",
    "relay.tls",
    "pop3.lock_session",
    "pop3.login_delay",
    "store.zstd_level",
    "store.dictionary",
    "store.dictionary_min_samples",
    "store.dictionary_min_bytes",
    "store.dictionary_zstd_level",
    "store.compression",
    "store.compression_backlog",
    "store.segment_size",
    "store.compact_interval",
    "store.compact_dead_percent",
    "store.body_cache",
    "log.level",
    "log.format",
    // Tables themselves, so that the docs name each one.
    "[listen]",
    "[tls]",
    "[limits]",
    "[timeouts]",
    "[auth]",
    "[quota]",
    "[smtp]",
    "[queue]",
    "[relay]",
    "[routes]",
    "[pop3]",
    "[store]",
];

/// The longest duration any key accepts: one year. Larger values would overflow timers.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<toml::Value>,
    data_dir: Option<toml::Value>,
    listen: Option<RawListen>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    timeouts: Option<RawTimeouts>,
    auth: Option<RawAuth>,
    quota: Option<RawQuota>,
    smtp: Option<RawSmtp>,
    resolver: Option<toml::Value>,
    queue: Option<RawQueue>,
    relay: Option<RawRelay>,
    routes: Option<toml::Table>,
    pop3: Option<RawPop3>,
    store: Option<RawStore>,
    log: Option<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    zstd_level: Option<toml::Value>,
    dictionary: Option<toml::Value>,
    dictionary_min_samples: Option<toml::Value>,
    dictionary_min_bytes: Option<toml::Value>,
    dictionary_zstd_level: Option<toml::Value>,
    compression: Option<toml::Value>,
    compression_backlog: Option<toml::Value>,
    segment_size: Option<toml::Value>,
    compact_interval: Option<toml::Value>,
    compact_dead_percent: Option<toml::Value>,
    body_cache: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    lifetime: Option<toml::Value>,
    delay_notice: Option<toml::Value>,
    min_backoff: Option<toml::Value>,
    max_backoff: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    max_connections_per_domain: Option<toml::Value>,
    max_messages_per_connection: Option<toml::Value>,
    mx_port: Option<toml::Value>,
    connect_timeout: Option<toml::Value>,
    tls: Option<toml::Value>,
    ca_file: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    host: Option<toml::Value>,
    username: Option<toml::Value>,
    password: Option<toml::Value>,
    tls: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPop3 {
    lock_session: Option<toml::Value>,
    login_delay: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    max_message_size: Option<toml::Value>,
    max_recipients: Option<toml::Value>,
    max_errors: Option<toml::Value>,
    max_line_length: Option<toml::Value>,
    bare_newlines: Option<toml::Value>,
    vrfy: Option<toml::Value>,
    forbid_unauth_pipelining: Option<toml::Value>,
    greet_pause_ms: Option<toml::Value>,
    quota_reply: Option<toml::Value>,
    max_hops: Option<toml::Value>,
    max_header_size: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    smtp: Option<toml::Value>,
    submission: Option<toml::Value>,
    submissions: Option<toml::Value>,
    lmtp: Option<toml::Value>,
    imap: Option<toml::Value>,
    imaps: Option<toml::Value>,
    pop3: Option<toml::Value>,
    pop3s: Option<toml::Value>,
    http: Option<toml::Value>,
}

impl RawListen {
    fn get(&self, key: ListenerKey) -> Option<&toml::Value> {
        match key {
            ListenerKey::Smtp => self.smtp.as_ref(),
            ListenerKey::Submission => self.submission.as_ref(),
            ListenerKey::Submissions => self.submissions.as_ref(),
            ListenerKey::Lmtp => self.lmtp.as_ref(),
            ListenerKey::Imap => self.imap.as_ref(),
            ListenerKey::Imaps => self.imaps.as_ref(),
            ListenerKey::Pop3 => self.pop3.as_ref(),
            ListenerKey::Pop3s => self.pop3s.as_ref(),
            ListenerKey::Http => self.http.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<toml::Value>,
    key: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<toml::Value>,
    max_connections_per_ip: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    smtp: Option<toml::Value>,
    imap: Option<toml::Value>,
    pop3: Option<toml::Value>,
    http: Option<toml::Value>,
    shutdown_grace: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    plaintext_on_loopback: Option<toml::Value>,
    max_failures_per_ip: Option<toml::Value>,
    max_failures_per_account: Option<toml::Value>,
    failure_window: Option<toml::Value>,
    lockout: Option<toml::Value>,
    delay_step_ms: Option<toml::Value>,
    delay_max_ms: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    default: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<toml::Value>,
    format: Option<toml::Value>,
}

/// One listener of the `[listen]` table: which protocol it speaks and whether TLS starts
/// before the first byte (implicit TLS) or by STARTTLS/STLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerKey {
    Smtp,
    Submission,
    Submissions,
    Lmtp,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
    Http,
}

/// The protocol a listener speaks; idle timeouts are per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Smtp,
    Lmtp,
    Imap,
    Pop3,
    Http,
}

impl ListenerKey {
    /// All listeners, in documented order.
    pub const ALL: [ListenerKey; 9] = [
        ListenerKey::Smtp,
        ListenerKey::Submission,
        ListenerKey::Submissions,
        ListenerKey::Lmtp,
        ListenerKey::Imap,
        ListenerKey::Imaps,
        ListenerKey::Pop3,
        ListenerKey::Pop3s,
        ListenerKey::Http,
    ];

    /// The key's name in `[listen]` (and the `listener` label in metrics and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKey::Smtp => "smtp",
            ListenerKey::Submission => "submission",
            ListenerKey::Submissions => "submissions",
            ListenerKey::Lmtp => "lmtp",
            ListenerKey::Imap => "imap",
            ListenerKey::Imaps => "imaps",
            ListenerKey::Pop3 => "pop3",
            ListenerKey::Pop3s => "pop3s",
            ListenerKey::Http => "http",
        }
    }

    /// Whether the TLS handshake comes first (RFC 8314 ports: submissions, imaps, pop3s).
    pub fn implicit_tls(self) -> bool {
        matches!(self, ListenerKey::Submissions | ListenerKey::Imaps | ListenerKey::Pop3s)
    }

    pub fn protocol(self) -> Protocol {
        match self {
            ListenerKey::Smtp | ListenerKey::Submission | ListenerKey::Submissions => Protocol::Smtp,
            ListenerKey::Lmtp => Protocol::Lmtp,
            ListenerKey::Imap | ListenerKey::Imaps => Protocol::Imap,
            ListenerKey::Pop3 | ListenerKey::Pop3s => Protocol::Pop3,
            ListenerKey::Http => Protocol::Http,
        }
    }
}

impl std::fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each front end listens; `None`: that listener is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub smtp: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub lmtp: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl Listen {
    /// The address of one listener (`None`: off).
    pub fn get(&self, key: ListenerKey) -> Option<SocketAddr> {
        match key {
            ListenerKey::Smtp => self.smtp,
            ListenerKey::Submission => self.submission,
            ListenerKey::Submissions => self.submissions,
            ListenerKey::Lmtp => self.lmtp,
            ListenerKey::Imap => self.imap,
            ListenerKey::Imaps => self.imaps,
            ListenerKey::Pop3 => self.pop3,
            ListenerKey::Pop3s => self.pop3s,
            ListenerKey::Http => self.http,
        }
    }

    /// The listeners that are on, in documented order.
    pub fn enabled(&self) -> impl Iterator<Item = (ListenerKey, SocketAddr)> + '_ {
        ListenerKey::ALL.into_iter().filter_map(|k| self.get(k).map(|a| (k, a)))
    }

    fn slot(&mut self, key: ListenerKey) -> &mut Option<SocketAddr> {
        match key {
            ListenerKey::Smtp => &mut self.smtp,
            ListenerKey::Submission => &mut self.submission,
            ListenerKey::Submissions => &mut self.submissions,
            ListenerKey::Lmtp => &mut self.lmtp,
            ListenerKey::Imap => &mut self.imap,
            ListenerKey::Imaps => &mut self.imaps,
            ListenerKey::Pop3 => &mut self.pop3,
            ListenerKey::Pop3s => &mut self.pop3s,
            ListenerKey::Http => &mut self.http,
        }
    }
}

/// The certificate chain and private key files (PEM) of `[tls]`. Both or neither: without
/// them, a self-signed certificate generated on first start in `<data_dir>/tls/` is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[limits]`: connections admitted at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Over all listeners.
    pub max_connections: u32,
    /// From one client address (IPv4-mapped IPv6 counts as the IPv4 address), over all listeners.
    pub max_connections_per_ip: u32,
}

/// `[timeouts]`: idle timeouts per protocol, and the shutdown grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// SMTP, submission(s) and LMTP.
    pub smtp: Duration,
    pub imap: Duration,
    pub pop3: Duration,
    pub http: Duration,
    /// How long sessions get to finish after SIGTERM/SIGINT before they are cut.
    pub shutdown_grace: Duration,
}

impl Timeouts {
    /// The idle timeout of a protocol.
    pub fn idle(&self, protocol: Protocol) -> Duration {
        match protocol {
            Protocol::Smtp | Protocol::Lmtp => self.smtp,
            Protocol::Imap => self.imap,
            Protocol::Pop3 => self.pop3,
            Protocol::Http => self.http,
        }
    }
}

/// `[quota]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Per-user storage quota in bytes for users without their own; 0 means unlimited.
    pub default_bytes: u64,
}

impl Quota {
    /// The default quota as a limit: `None` when unlimited.
    pub fn default_limit(&self) -> Option<u64> {
        (self.default_bytes > 0).then_some(self.default_bytes)
    }
}

/// How a recipient over quota is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaReply {
    /// `452 4.2.2`: the sender keeps the message and retries (the user may make room).
    Temporary,
    /// `552 5.2.2`: the sender bounces it at once.
    Permanent,
}

/// `[smtp]`: the SMTP, submission and LMTP front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smtp {
    /// Largest message accepted, in bytes (advertised as `SIZE`).
    pub max_message_size: u64,
    pub max_recipients: u32,
    /// Error replies after which a session is closed with `421`.
    pub max_errors: u32,
    /// Longest command line, CRLF included.
    pub max_line_length: u32,
    pub bare_newlines: postlog_protocol::smtp::Newlines,
    pub vrfy: bool,
    pub forbid_unauth_pipelining: bool,
    /// How long the `smtp` listener waits before its greeting; a client that talks first is
    /// refused. Zero: greet at once.
    pub greet_pause: Duration,
    pub quota_reply: QuotaReply,
    /// Messages with more `Received:` fields than this are refused as looping (`554 5.4.6`).
    pub max_hops: u32,
    /// Largest header section accepted, in bytes.
    pub max_header_size: u64,
}

/// How outbound SMTP uses TLS with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Plain text only (for test rigs and broken peers).
    Off,
    /// STARTTLS when offered, without checking the certificate (RFC 7435); plain text
    /// otherwise, and also when the handshake fails.
    Opportunistic,
    /// STARTTLS required, with the certificate checked against the trusted roots and the
    /// destination's host name; otherwise the delivery is deferred.
    Require,
}

impl TlsPolicy {
    fn parse(s: &str) -> Result<TlsPolicy, String> {
        match s {
            "off" => Ok(TlsPolicy::Off),
            "opportunistic" => Ok(TlsPolicy::Opportunistic),
            "require" => Ok(TlsPolicy::Require),
            _ => Err(format!("{s:?} is not one of off, opportunistic, require")),
        }
    }
}

/// Where mail goes instead of the MX hosts: a `[routes]` entry or the `[relay]` host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// A host name or an IP address.
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
}

/// `[relay]`: a smarthost that takes all outbound mail not routed by `[routes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub hop: NextHop,
    /// AUTH PLAIN (or LOGIN) with these, after TLS.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `[queue]`: outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// How long a message is retried before it bounces.
    pub lifetime: Duration,
    /// After this long undelivered, the sender gets a "delayed" notice (once).
    pub delay_notice: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_connections: u32,
    pub max_connections_per_domain: u32,
    pub max_messages_per_connection: u32,
    /// The port MX hosts (and A/AAAA fallbacks) are reached on.
    pub mx_port: u16,
    pub connect_timeout: Duration,
    pub tls: TlsPolicy,
    /// Extra trusted roots (PEM) for `tls = "require"`, besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// `[store]`: how the store writes what it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// zstd level of message bodies written from now on without a dictionary (bodies already
    /// stored keep theirs; every level reads back alike). Negative levels are zstd's fast ones.
    pub zstd_level: i32,
    /// Train a zstd dictionary from the store's first messages and compress with it.
    pub dictionary: bool,
    /// Messages sampled before training...
    pub dictionary_min_samples: u64,
    /// ...and bytes.
    pub dictionary_min_bytes: u64,
    /// zstd level of bodies compressed with the dictionary.
    pub dictionary_zstd_level: i32,
    /// Bodies compressed after their commit by an idle-priority thread (true), or before it.
    pub background_compression: bool,
    /// With background compression: raw bytes waiting past which bodies are compressed
    /// before their commit again.
    pub compression_backlog: u64,
    /// Segment files are sealed and a new one started past this size.
    pub segment_size: u64,
    /// How often `serve` looks for sealed segments worth compacting (zero: never).
    pub compact_interval: Duration,
    /// A sealed segment is compacted when at least this share (percent) of it is dead.
    pub compact_dead_percent: u8,
    /// Bytes of decoded bodies kept for sessions reading the same messages.
    pub body_cache: u64,
}

/// The most and least a `store.zstd_level` may be: zstd's fast levels down to -7, its
/// strongest 19 (20 and up need much more memory to decompress).
const ZSTD_LEVELS: std::ops::RangeInclusive<i64> = -7..=19;

/// `[pop3]`: the POP3 front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pop3 {
    /// One POP3 session per account at a time (RFC 1939's maildrop lock): a second login gets
    /// `-ERR [IN-USE]`. IMAP sessions are never locked out.
    pub lock_session: bool,
    /// Shortest time between two POP3 logins of one account (RFC 2449 `LOGIN-DELAY`); zero:
    /// none, and not advertised.
    pub login_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: what `serve` logs on stderr (`RUST_LOG`, when set, overrides `level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server's host name (SMTP greeting, Received headers, the generated certificate).
    pub hostname: String,
    /// The store's directory.
    pub data_dir: PathBuf,
    pub listen: Listen,
    /// `None`: the generated self-signed certificate.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub auth: crate::auth::AuthSettings,
    pub quota: Quota,
    pub smtp: Smtp,
    /// The DNS server for outbound lookups; `None`: the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    pub queue: Queue,
    pub relay: Option<Relay>,
    /// Per recipient domain (lower case), where its mail goes instead of its MX hosts.
    pub routes: std::collections::BTreeMap<String, NextHop>,
    pub pop3: Pop3,
    pub store: StoreSettings,
    pub log: Log,
}

/// A configuration problem; the message names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The store's options as configured (`[store]`), the engine's defaults otherwise.
    pub fn store_options(&self) -> postlog_engine::Options {
        let st = &self.store;
        postlog_engine::Options {
            zstd_level: st.zstd_level,
            dictionary: st.dictionary,
            dictionary_min_samples: st.dictionary_min_samples as usize,
            dictionary_min_bytes: st.dictionary_min_bytes as usize,
            dictionary_zstd_level: st.dictionary_zstd_level,
            compression: if st.background_compression {
                postlog_engine::Compression::Background
            } else {
                postlog_engine::Compression::Inline
            },
            compress_backlog_max_bytes: st.compression_backlog,
            max_segment_bytes: st.segment_size,
            body_cache_bytes: usize::try_from(st.body_cache).unwrap_or(usize::MAX),
            ..postlog_engine::Options::default()
        }
    }

    /// The embedded defaults, with the system's host name (`gethostname`), or `localhost` when
    /// the system's name is not a valid host name.
    pub fn defaults() -> Config {
        let zero = Duration::ZERO;
        let mut cfg = Config {
            hostname: system_hostname().unwrap_or_else(|| "localhost".to_string()),
            data_dir: PathBuf::new(),
            listen: Listen {
                smtp: None,
                submission: None,
                submissions: None,
                lmtp: None,
                imap: None,
                imaps: None,
                pop3: None,
                pop3s: None,
                http: None,
            },
            tls: None,
            limits: Limits { max_connections: 0, max_connections_per_ip: 0 },
            timeouts: Timeouts { smtp: zero, imap: zero, pop3: zero, http: zero, shutdown_grace: zero },
            auth: crate::auth::AuthSettings {
                plaintext_on_loopback: false,
                limiter: crate::limiter::LimiterSettings {
                    max_failures_per_ip: 0,
                    max_failures_per_account: 0,
                    failure_window: zero,
                    lockout: zero,
                    delay_step: zero,
                    delay_max: zero,
                },
            },
            quota: Quota { default_bytes: 0 },
            smtp: Smtp {
                max_message_size: 0,
                max_recipients: 0,
                max_errors: 0,
                max_line_length: 0,
                bare_newlines: postlog_protocol::smtp::Newlines::Reject,
                vrfy: false,
                forbid_unauth_pipelining: false,
                greet_pause: zero,
                quota_reply: QuotaReply::Temporary,
                max_hops: 0,
                max_header_size: 0,
            },
            resolver: None,
            queue: Queue {
                lifetime: zero,
                delay_notice: zero,
                min_backoff: zero,
                max_backoff: zero,
                max_connections: 0,
                max_connections_per_domain: 0,
                max_messages_per_connection: 0,
                mx_port: 0,
                connect_timeout: zero,
                tls: TlsPolicy::Opportunistic,
                ca_file: None,
            },
            relay: None,
            routes: std::collections::BTreeMap::new(),
            pop3: Pop3 { lock_session: false, login_delay: zero },
            store: StoreSettings {
                zstd_level: 0,
                dictionary: false,
                dictionary_min_samples: 0,
                dictionary_min_bytes: 0,
                dictionary_zstd_level: 0,
                background_compression: false,
                compression_backlog: 0,
                segment_size: 0,
                compact_interval: zero,
                compact_dead_percent: 0,
                body_cache: 0,
            },
            log: Log { level: LogLevel::Info, format: LogFormat::Text },
        };
        cfg.merge_str(DEFAULT_CONFIG, "the embedded defaults").expect("the embedded defaults are valid");
        cfg
    }

    /// The defaults overridden by the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read the config file {}: {e}", path.display())))?;
        let mut cfg = Config::defaults();
        cfg.merge_str(&text, &format!("config file {}", path.display()))?;
        Ok(cfg)
    }

    /// `--config` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::defaults()),
        }
    }

    /// Overrides what `text` sets. `origin` names the text in messages.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            // toml's message names the unknown or mistyped key; add where it is.
            let place = e
                .span()
                .map(|s| {
                    let start = s.start.min(text.len());
                    let line = text[..start].matches('\n').count() + 1;
                    let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
                    if line_text.is_empty() || line_text.len() > 80 {
                        format!(" (line {line})")
                    } else {
                        format!(" (line {line}: `{line_text}`)")
                    }
                })
                .unwrap_or_default();
            ConfigError(format!("{origin}{place}: {msg}"))
        })?;
        let v = Values { origin };
        if let Some(x) = &raw.hostname {
            let s = v.string(x, "hostname")?;
            validate_hostname(s).map_err(|w| v.err("hostname", w))?;
            self.hostname = s.to_string();
        }
        if let Some(x) = &raw.data_dir {
            let s = v.string(x, "data_dir")?;
            if s.is_empty() {
                return Err(v.err("data_dir", "must not be empty".into()));
            }
            self.data_dir = PathBuf::from(s);
        }
        if let Some(listen) = &raw.listen {
            for key in ListenerKey::ALL {
                let Some(x) = listen.get(key) else { continue };
                let full = format!("listen.{key}");
                let s = x.as_str().ok_or_else(|| {
                    v.err(&full, format!("must be a string such as \"0.0.0.0:25\" or \"off\", not {}", x.type_str()))
                })?;
                *self.listen.slot(key) = parse_listen(s).map_err(|w| v.err(&full, w))?;
            }
        }
        if let Some(tls) = &raw.tls {
            let path = |x: &Option<toml::Value>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
                let Some(x) = x else { return Ok(None) };
                let s = v.string(x, key)?;
                if s.is_empty() {
                    return Err(v.err(key, "must not be empty (leave out both tls.cert and tls.key instead)".into()));
                }
                Ok(Some(PathBuf::from(s)))
            };
            let cert = path(&tls.cert, "tls.cert")?.or_else(|| self.tls.as_ref().map(|t| t.cert.clone()));
            let key = path(&tls.key, "tls.key")?.or_else(|| self.tls.as_ref().map(|t| t.key.clone()));
            self.tls = match (cert, key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                (Some(_), None) => return Err(v.err("tls.key", both_tls_files("tls.cert"))),
                (None, Some(_)) => return Err(v.err("tls.cert", both_tls_files("tls.key"))),
            };
        }
        if let Some(l) = &raw.limits {
            if let Some(x) = &l.max_connections {
                self.limits.max_connections = v.int(x, "limits.max_connections", 1, 1_000_000)? as u32;
            }
            if let Some(x) = &l.max_connections_per_ip {
                self.limits.max_connections_per_ip = v.int(x, "limits.max_connections_per_ip", 1, 1_000_000)? as u32;
            }
        }
        if let Some(t) = &raw.timeouts {
            let slots = [
                (&t.smtp, "timeouts.smtp", &mut self.timeouts.smtp, 1),
                (&t.imap, "timeouts.imap", &mut self.timeouts.imap, 1),
                (&t.pop3, "timeouts.pop3", &mut self.timeouts.pop3, 1),
                (&t.http, "timeouts.http", &mut self.timeouts.http, 1),
                (&t.shutdown_grace, "timeouts.shutdown_grace", &mut self.timeouts.shutdown_grace, 0),
            ];
            for (x, key, slot, min) in slots {
                if let Some(x) = x {
                    *slot = Duration::from_secs(v.int(x, key, min, MAX_SECONDS)?);
                }
            }
        }
        if let Some(a) = &raw.auth {
            if let Some(x) = &a.plaintext_on_loopback {
                self.auth.plaintext_on_loopback = x.as_bool().ok_or_else(|| {
                    v.err("auth.plaintext_on_loopback", format!("must be true or false, not {}", x.type_str()))
                })?;
            }
            let counts = [
                (&a.max_failures_per_ip, "auth.max_failures_per_ip", &mut self.auth.limiter.max_failures_per_ip),
                (
                    &a.max_failures_per_account,
                    "auth.max_failures_per_account",
                    &mut self.auth.limiter.max_failures_per_account,
                ),
            ];
            for (x, key, slot) in counts {
                if let Some(x) = x {
                    *slot = v.int(x, key, 1, 1_000_000)? as u32;
                }
            }
            let times = [
                (&a.failure_window, "auth.failure_window", &mut self.auth.limiter.failure_window, 1, 1000),
                (&a.lockout, "auth.lockout", &mut self.auth.limiter.lockout, 0, 1000),
                (&a.delay_step_ms, "auth.delay_step_ms", &mut self.auth.limiter.delay_step, 0, 1),
                (&a.delay_max_ms, "auth.delay_max_ms", &mut self.auth.limiter.delay_max, 0, 1),
            ];
            for (x, key, slot, min, millis_per_unit) in times {
                if let Some(x) = x {
                    *slot = Duration::from_millis(v.int(x, key, min, MAX_SECONDS)? * millis_per_unit);
                }
            }
        }
        if let Some(q) = &raw.quota
            && let Some(x) = &q.default
        {
            self.quota.default_bytes = match x {
                toml::Value::String(s) => parse_size(s).map_err(|w| v.err("quota.default", w))?,
                toml::Value::Integer(n) if *n >= 0 => *n as u64,
                other => {
                    return Err(v.err(
                        "quota.default",
                        format!("must be a size such as \"0\", \"500M\" or \"2G\", not {}", describe(other)),
                    ));
                }
            };
        }
        if let Some(m) = &raw.smtp {
            self.merge_smtp(m, &v)?;
        }
        if let Some(x) = &raw.resolver {
            let s = v.string(x, "resolver")?;
            self.resolver =
                if s == "system" { None } else { Some(parse_resolver(s).map_err(|w| v.err("resolver", w))?) };
        }
        if let Some(q) = &raw.queue {
            self.merge_queue(q, &v)?;
        }
        if let Some(r) = &raw.relay {
            self.merge_relay(r, &v)?;
        }
        if let Some(routes) = &raw.routes {
            for (domain, x) in routes {
                let key = format!("routes.{domain:?}");
                let name = domain.trim_end_matches('.').to_ascii_lowercase();
                validate_hostname(&name).map_err(|w| v.err(&key, w))?;
                let hop = match x {
                    toml::Value::String(s) => {
                        let (host, port) = parse_host_port(s, 25).map_err(|w| v.err(&key, w))?;
                        NextHop { host, port, tls: self.queue.tls }
                    }
                    toml::Value::Table(t) => {
                        let mut host = None;
                        let mut tls = self.queue.tls;
                        for (k, x) in t {
                            let full = format!("{key}.{k}");
                            match k.as_str() {
                                "host" => {
                                    host = Some(parse_host_port(v.string(x, &full)?, 25).map_err(|w| v.err(&full, w))?)
                                }
                                "tls" => tls = TlsPolicy::parse(v.string(x, &full)?).map_err(|w| v.err(&full, w))?,
                                _ => return Err(v.err(&full, "unknown key (a route takes host and tls)".into())),
                            }
                        }
                        let (host, port) = host.ok_or_else(|| v.err(&key, "a route table needs `host`".into()))?;
                        NextHop { host, port, tls }
                    }
                    other => {
                        return Err(v.err(
                            &key,
                            format!(
                                "must be \"host:port\" or {{ host = \"host:port\", tls = \"require\" }}, not {}",
                                describe(other)
                            ),
                        ));
                    }
                };
                self.routes.insert(name, hop);
            }
        }
        if let Some(p) = &raw.pop3 {
            if let Some(x) = &p.lock_session {
                self.pop3.lock_session = x
                    .as_bool()
                    .ok_or_else(|| v.err("pop3.lock_session", format!("must be true or false, not {}", describe(x))))?;
            }
            if let Some(x) = &p.login_delay {
                self.pop3.login_delay = Duration::from_secs(v.int(x, "pop3.login_delay", 0, 86_400)?);
            }
        }
        if let Some(st) = &raw.store {
            let level = |x: &toml::Value, key: &str| -> Result<i32, ConfigError> {
                let level = x.as_integer().filter(|l| ZSTD_LEVELS.contains(l)).ok_or_else(|| {
                    v.err(
                        key,
                        format!(
                            "must be a whole number from {} to {}, not {}",
                            ZSTD_LEVELS.start(),
                            ZSTD_LEVELS.end(),
                            describe(x)
                        ),
                    )
                })?;
                Ok(i32::try_from(level).expect("in ZSTD_LEVELS"))
            };
            if let Some(x) = &st.zstd_level {
                self.store.zstd_level = level(x, "store.zstd_level")?;
            }
            if let Some(x) = &st.dictionary_zstd_level {
                self.store.dictionary_zstd_level = level(x, "store.dictionary_zstd_level")?;
            }
            if let Some(x) = &st.dictionary {
                self.store.dictionary = x
                    .as_bool()
                    .ok_or_else(|| v.err("store.dictionary", format!("must be true or false, not {}", describe(x))))?;
            }
            // zstd's trainer wants a few samples at least; more than a million would hold
            // gigabytes of samples in memory.
            if let Some(x) = &st.dictionary_min_samples {
                self.store.dictionary_min_samples = v.int(x, "store.dictionary_min_samples", 10, 1_000_000)?;
            }
            if let Some(x) = &st.dictionary_min_bytes {
                self.store.dictionary_min_bytes = v.size(x, "store.dictionary_min_bytes", 64 << 10, 1 << 30)?;
            }
            if let Some(x) = &st.compression {
                self.store.background_compression = match v.string(x, "store.compression")? {
                    "background" => true,
                    "inline" => false,
                    other => {
                        return Err(
                            v.err("store.compression", format!("must be \"background\" or \"inline\", not {other:?}"))
                        );
                    }
                };
            }
            if let Some(x) = &st.compression_backlog {
                self.store.compression_backlog = v.size(x, "store.compression_backlog", 0, 1 << 40)?;
            }
            if let Some(x) = &st.segment_size {
                self.store.segment_size = v.size(x, "store.segment_size", 1 << 20, 1 << 40)?;
            }
            if let Some(x) = &st.compact_interval {
                self.store.compact_interval = v.duration(x, "store.compact_interval", 0)?;
            }
            if let Some(x) = &st.body_cache {
                self.store.body_cache = v.size(x, "store.body_cache", 0, 1 << 40)?;
            }
            if let Some(x) = &st.compact_dead_percent {
                self.store.compact_dead_percent = v.int(x, "store.compact_dead_percent", 1, 100)? as u8;
            }
        }
        if let Some(l) = &raw.log {
            if let Some(x) = &l.level {
                self.log.level = match v.string(x, "log.level")? {
                    "trace" => LogLevel::Trace,
                    "debug" => LogLevel::Debug,
                    "info" => LogLevel::Info,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    s => return Err(v.err("log.level", format!("{s:?} is not one of trace, debug, info, warn, error"))),
                };
            }
            if let Some(x) = &l.format {
                self.log.format = match v.string(x, "log.format")? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    s => return Err(v.err("log.format", format!("{s:?} is not one of text, json"))),
                };
            }
        }
        Ok(())
    }
}

impl Config {
    fn merge_smtp(&mut self, m: &RawSmtp, v: &Values) -> Result<(), ConfigError> {
        let smtp = &mut self.smtp;
        let size = |x: &toml::Value, key: &str, min: u64| -> Result<u64, ConfigError> {
            let n = match x {
                toml::Value::String(s) => parse_size(s).map_err(|w| v.err(key, w))?,
                toml::Value::Integer(n) if *n >= 0 => *n as u64,
                other => return Err(v.err(key, format!("must be a size such as \"50M\", not {}", describe(other)))),
            };
            if n < min || n > 1 << 40 {
                return Err(v.err(key, format!("{n} is out of range ({min} to {})", 1u64 << 40)));
            }
            Ok(n)
        };
        let boolean = |x: &toml::Value, key: &str| -> Result<bool, ConfigError> {
            x.as_bool().ok_or_else(|| v.err(key, format!("must be true or false, not {}", describe(x))))
        };
        if let Some(x) = &m.max_message_size {
            smtp.max_message_size = size(x, "smtp.max_message_size", 1024)?;
        }
        if let Some(x) = &m.max_header_size {
            smtp.max_header_size = size(x, "smtp.max_header_size", 1024)?;
        }
        if let Some(x) = &m.max_recipients {
            smtp.max_recipients = v.int(x, "smtp.max_recipients", 1, 100_000)? as u32;
        }
        if let Some(x) = &m.max_errors {
            smtp.max_errors = v.int(x, "smtp.max_errors", 1, 10_000)? as u32;
        }
        if let Some(x) = &m.max_line_length {
            smtp.max_line_length = v.int(x, "smtp.max_line_length", 512, 1 << 20)? as u32;
        }
        if let Some(x) = &m.max_hops {
            smtp.max_hops = v.int(x, "smtp.max_hops", 1, 1000)? as u32;
        }
        if let Some(x) = &m.greet_pause_ms {
            smtp.greet_pause = Duration::from_millis(v.int(x, "smtp.greet_pause_ms", 0, 60_000)?);
        }
        if let Some(x) = &m.vrfy {
            smtp.vrfy = boolean(x, "smtp.vrfy")?;
        }
        if let Some(x) = &m.forbid_unauth_pipelining {
            smtp.forbid_unauth_pipelining = boolean(x, "smtp.forbid_unauth_pipelining")?;
        }
        if let Some(x) = &m.bare_newlines {
            smtp.bare_newlines = match v.string(x, "smtp.bare_newlines")? {
                "reject" => postlog_protocol::smtp::Newlines::Reject,
                "normalize" => postlog_protocol::smtp::Newlines::Normalize,
                s => return Err(v.err("smtp.bare_newlines", format!("{s:?} is not one of reject, normalize"))),
            };
        }
        if let Some(x) = &m.quota_reply {
            smtp.quota_reply = match v.string(x, "smtp.quota_reply")? {
                "temporary" => QuotaReply::Temporary,
                "permanent" => QuotaReply::Permanent,
                s => return Err(v.err("smtp.quota_reply", format!("{s:?} is not one of temporary, permanent"))),
            };
        }
        Ok(())
    }
}

impl Config {
    fn merge_queue(&mut self, m: &RawQueue, v: &Values) -> Result<(), ConfigError> {
        let q = &mut self.queue;
        let durations = [
            (&m.lifetime, "queue.lifetime", &mut q.lifetime, 1),
            (&m.delay_notice, "queue.delay_notice", &mut q.delay_notice, 0),
            (&m.min_backoff, "queue.min_backoff", &mut q.min_backoff, 1),
            (&m.max_backoff, "queue.max_backoff", &mut q.max_backoff, 1),
            (&m.connect_timeout, "queue.connect_timeout", &mut q.connect_timeout, 1),
        ];
        for (x, key, slot, min) in durations {
            if let Some(x) = x {
                *slot = v.duration(x, key, min)?;
            }
        }
        if q.max_backoff < q.min_backoff {
            return Err(v.err("queue.max_backoff", "must not be less than queue.min_backoff".into()));
        }
        let counts = [
            (&m.max_connections, "queue.max_connections", &mut q.max_connections),
            (&m.max_connections_per_domain, "queue.max_connections_per_domain", &mut q.max_connections_per_domain),
            (&m.max_messages_per_connection, "queue.max_messages_per_connection", &mut q.max_messages_per_connection),
        ];
        for (x, key, slot) in counts {
            if let Some(x) = x {
                *slot = v.int(x, key, 1, 100_000)? as u32;
            }
        }
        if let Some(x) = &m.mx_port {
            q.mx_port = v.int(x, "queue.mx_port", 1, 65535)? as u16;
        }
        if let Some(x) = &m.tls {
            q.tls = TlsPolicy::parse(v.string(x, "queue.tls")?).map_err(|w| v.err("queue.tls", w))?;
        }
        if let Some(x) = &m.ca_file {
            let s = v.string(x, "queue.ca_file")?;
            q.ca_file = (!s.is_empty()).then(|| PathBuf::from(s));
        }
        Ok(())
    }

    fn merge_relay(&mut self, m: &RawRelay, v: &Values) -> Result<(), ConfigError> {
        let text = |x: &Option<toml::Value>, key: &str| -> Result<Option<String>, ConfigError> {
            match x {
                Some(x) => Ok(Some(v.string(x, key)?.to_string()).filter(|s| !s.is_empty())),
                None => Ok(None),
            }
        };
        let host = text(&m.host, "relay.host")?;
        let username = text(&m.username, "relay.username")?;
        let password = text(&m.password, "relay.password")?;
        let tls = match &m.tls {
            Some(x) => Some(TlsPolicy::parse(v.string(x, "relay.tls")?).map_err(|w| v.err("relay.tls", w))?),
            None => None,
        };
        let Some(host) = host else {
            if username.is_some() || password.is_some() || tls.is_some() {
                return Err(v.err("relay.host", "must be set when other [relay] keys are".into()));
            }
            self.relay = None;
            return Ok(());
        };
        if username.is_some() != password.is_some() {
            return Err(v.err("relay.password", "relay.username and relay.password go together".into()));
        }
        let (host, port) = parse_host_port(&host, 25).map_err(|w| v.err("relay.host", w))?;
        // Credentials never cross the network in clear text.
        let tls = tls.unwrap_or(if username.is_some() { TlsPolicy::Require } else { self.queue.tls });
        if username.is_some() && tls != TlsPolicy::Require {
            return Err(v.err("relay.tls", "must be \"require\" when the relay takes a password".into()));
        }
        self.relay = Some(Relay { hop: NextHop { host, port, tls }, username, password });
        Ok(())
    }
}

/// "host:port", "host" (the default port), "[v6]:port", "v4:port".
fn parse_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("{s:?} is not a host such as \"mx.example.com\", \"mx.example.com:2525\" or \"127.0.0.1:25\"");
    if let Ok(a) = s.parse::<SocketAddr>() {
        return if a.port() == 0 { Err(format!("{s:?} has port 0")) } else { Ok((a.ip().to_string(), a.port())) };
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok((s.to_string(), default_port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?),
        None => (s, default_port),
    };
    validate_hostname(host.trim_end_matches('.')).map_err(|_| bad())?;
    Ok((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

/// A DNS server: "IP:port" or "IP" (port 53).
fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => Err(format!("{s:?} is not \"system\" or a DNS server address such as \"127.0.0.1:53\"")),
    }
}

/// A duration: whole seconds, or a number with a suffix `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 30, \"90s\", \"5m\", \"4h\" or \"5d\"");
    let t = s.trim();
    let (digits, unit) = match t.as_bytes().last() {
        Some(b's') => (&t[..t.len() - 1], 1),
        Some(b'm') => (&t[..t.len() - 1], 60),
        Some(b'h') => (&t[..t.len() - 1], 3600),
        Some(b'd') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(unit)
        .filter(|n| *n <= MAX_SECONDS)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn both_tls_files(given: &str) -> String {
    format!(
        "must be set together with `{given}`: give both the certificate chain and the private key (PEM), or \
         neither for a self-signed certificate generated in <data_dir>/tls/"
    )
}

/// Reads typed values, naming the key in errors.
struct Values<'a> {
    origin: &'a str,
}

impl Values<'_> {
    fn err(&self, key: &str, what: String) -> ConfigError {
        ConfigError(format!("{}: key `{key}`: {what}", self.origin))
    }

    fn string<'v>(&self, x: &'v toml::Value, key: &str) -> Result<&'v str, ConfigError> {
        x.as_str().ok_or_else(|| self.err(key, format!("must be a string, not {}", describe(x))))
    }

    /// A duration of at least `min` seconds: whole seconds, or a string with a unit.
    fn duration(&self, x: &toml::Value, key: &str, min: u64) -> Result<Duration, ConfigError> {
        let d = match x {
            toml::Value::Integer(n) if *n >= 0 => Duration::from_secs((*n as u64).min(MAX_SECONDS + 1)),
            toml::Value::String(s) => parse_duration(s).map_err(|w| self.err(key, w))?,
            other => {
                return Err(self.err(key, format!("must be a duration such as 300 or \"5m\", not {}", describe(other))));
            }
        };
        if d.as_secs() < min || d.as_secs() > MAX_SECONDS {
            return Err(self.err(key, format!("{}s is out of range ({min}s to {MAX_SECONDS}s)", d.as_secs())));
        }
        Ok(d)
    }

    /// A size in `min..=max` bytes: whole bytes, or a string with a binary suffix.
    fn size(&self, x: &toml::Value, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = match x {
            toml::Value::String(s) => parse_size(s).map_err(|w| self.err(key, w))?,
            toml::Value::Integer(n) if *n >= 0 => *n as u64,
            other => return Err(self.err(key, format!("must be a size such as \"256M\", not {}", describe(other)))),
        };
        if !(min..=max).contains(&n) {
            return Err(self.err(key, format!("{n} is out of range ({} to {})", show_size(min), show_size(max))));
        }
        Ok(n)
    }

    /// A whole number in `min..=max`.
    fn int(&self, x: &toml::Value, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        match x.as_integer() {
            Some(n) if n >= 0 && (min..=max).contains(&(n as u64)) => Ok(n as u64),
            Some(n) => Err(self.err(key, format!("{n} is out of range ({min} to {max})"))),
            None => Err(self.err(key, format!("must be a whole number ({min} to {max}), not {}", describe(x)))),
        }
    }
}

/// A value for messages: its type, and the value itself when short.
fn describe(x: &toml::Value) -> String {
    match x {
        toml::Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        toml::Value::Float(f) => format!("the float {f}"),
        other => other.type_str().to_string(),
    }
}

/// A size as the configuration writes it: with the largest binary suffix that divides it.
fn show_size(n: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// A size: bytes, or a number with a binary suffix `K`, `M`, `G` or `T` (1K = 1024 bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size such as \"0\", \"1048576\", \"500M\" or \"2G\" (suffixes K, M, G, T)");
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 30),
        Some(b't' | b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// An address to listen on ("IP:PORT", "[IPv6]:PORT"), or "off".
fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("{s:?} has port 0")),
        Ok(a) => Ok(Some(a)),
        Err(_) => Err(format!(
            "{s:?} is not an address such as \"0.0.0.0:25\" or \"[::]:25\" with a port from 1 to 65535 (or \"off\")"
        )),
    }
}

pub fn validate_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{s:?} is not a host name (1 to 253 characters)"));
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a host name (letters, digits and '-' in dot-separated labels)"));
        }
    }
    Ok(())
}

/// The system's host name (`gethostname(2)`), if it is a valid host name.
#[allow(unsafe_code)]
fn system_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer we own; the length
    // passed is that buffer's.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    validate_hostname(name).ok()?;
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::defaults();
        assert_eq!(c.data_dir, PathBuf::from("./postlog-data"));
        assert_eq!(c.hostname, system_hostname().unwrap_or_else(|| "localhost".into()));
        assert!(validate_hostname(&c.hostname).is_ok());
        let ports: Vec<(ListenerKey, u16)> = c.listen.enabled().map(|(k, a)| (k, a.port())).collect();
        assert_eq!(
            ports,
            [
                (ListenerKey::Smtp, 2525),
                (ListenerKey::Submission, 2587),
                (ListenerKey::Submissions, 2465),
                (ListenerKey::Lmtp, 2424),
                (ListenerKey::Imap, 2143),
                (ListenerKey::Imaps, 2993),
                (ListenerKey::Pop3, 2110),
                (ListenerKey::Pop3s, 2995),
                (ListenerKey::Http, 8080),
            ]
        );
        assert!(c.listen.enabled().all(|(_, a)| a.ip().is_loopback() && a.port() > 1024));
        assert_eq!(c.tls, None);
        assert_eq!(c.limits, Limits { max_connections: 1000, max_connections_per_ip: 50 });
        assert_eq!(c.timeouts.smtp, Duration::from_secs(300));
        assert_eq!(c.timeouts.imap, Duration::from_secs(1800));
        assert_eq!(c.timeouts.pop3, Duration::from_secs(600));
        assert_eq!(c.timeouts.http, Duration::from_secs(60));
        assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(10));
        assert_eq!(
            c.auth,
            crate::auth::AuthSettings {
                plaintext_on_loopback: true,
                limiter: crate::limiter::LimiterSettings {
                    max_failures_per_ip: 10,
                    max_failures_per_account: 20,
                    failure_window: Duration::from_secs(900),
                    lockout: Duration::from_secs(900),
                    delay_step: Duration::from_millis(500),
                    delay_max: Duration::from_millis(5000),
                },
            }
        );
        assert_eq!(c.quota.default_limit(), None);
        assert_eq!(c.pop3, Pop3 { lock_session: true, login_delay: Duration::ZERO });
        assert_eq!(
            c.store,
            StoreSettings {
                zstd_level: 1,
                dictionary: true,
                dictionary_min_samples: 1000,
                dictionary_min_bytes: 2 << 20,
                dictionary_zstd_level: -1,
                background_compression: true,
                compression_backlog: 1 << 30,
                segment_size: 256 << 20,
                compact_interval: Duration::from_secs(600),
                compact_dead_percent: 50,
                body_cache: 64 << 20,
            }
        );
        assert_eq!(c.store_options().zstd_level, 1);
        assert_eq!(c.store_options().dictionary_zstd_level, -1);
        assert!(c.store_options().dictionary);
        let mut off = Config::defaults();
        off.merge_str(
            "[store]\ndictionary = false\ndictionary_min_samples = 50\ndictionary_min_bytes = \"128K\"\n\
             dictionary_zstd_level = 3\n",
            "t",
        )
        .unwrap();
        let o = off.store_options();
        assert_eq!(
            (o.dictionary, o.dictionary_min_samples, o.dictionary_min_bytes, o.dictionary_zstd_level),
            (false, 50, 128 << 10, 3)
        );
        let mut fast = Config::defaults();
        fast.merge_str("[store]\nzstd_level = -3\n", "t").unwrap();
        assert_eq!(fast.store_options().zstd_level, -3);
        assert_eq!(c.log, Log { level: LogLevel::Info, format: LogFormat::Text });
    }

    #[test]
    fn file_overrides_some_keys() {
        let mut c = Config::defaults();
        c.merge_str(
            "data_dir = \"/srv/mail\"\n[listen]\nimap = \"[::]:1143\"\npop3 = \"off\"\n[timeouts]\nimap = 60\n\
             [auth]\nplaintext_on_loopback = false\ndelay_step_ms = 250\n[quota]\ndefault = \"2G\"\n\
             [log]\nformat = \"json\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/mail"));
        assert_eq!(c.listen.imap, Some("[::]:1143".parse().unwrap()));
        assert_eq!(c.listen.pop3, None);
        assert_eq!(c.listen.smtp, Some("127.0.0.1:2525".parse().unwrap()));
        assert_eq!(c.timeouts.imap, Duration::from_secs(60));
        assert_eq!(c.timeouts.smtp, Duration::from_secs(300));
        assert!(!c.auth.plaintext_on_loopback);
        assert_eq!(c.auth.limiter.delay_step, Duration::from_millis(250));
        assert_eq!(c.quota.default_bytes, 2 << 30);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.tls, Some(TlsFiles { cert: "c.pem".into(), key: "k.pem".into() }));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("500m"), Ok(500 << 20));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        for bad in ["", "M", "1.5G", "-1", "12X", "1 G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("datadir = \"x\"\n", "datadir"),
            ("[listen]\nsmtpp = \"0.0.0.0:25\"\n", "smtpp"),
            ("[listen]\nimap = \"localhost:143\"\n", "listen.imap"),
            ("[listen]\nimap = \"127.0.0.1:70000\"\n", "listen.imap"),
            ("[listen]\nsmtp = 25\n", "listen.smtp"),
            ("hostname = \"bad host\"\n", "hostname"),
            ("data_dir = 3\n", "data_dir"),
            ("[other]\n", "other"),
            ("[tls]\ncert = \"c.pem\"\n", "tls.key"),
            ("[tls]\nkey = \"k.pem\"\n", "tls.cert"),
            ("[tls]\ncert = 1\nkey = \"k\"\n", "tls.cert"),
            ("[tls]\ncertificate = \"c\"\n", "certificate"),
            ("[limits]\nmax_connections = 0\n", "limits.max_connections"),
            ("[limits]\nmax_connections_per_ip = \"5\"\n", "limits.max_connections_per_ip"),
            ("[limits]\nmax_conections = 5\n", "max_conections"),
            ("[timeouts]\nsmtp = \"5m\"\n", "timeouts.smtp"),
            ("[timeouts]\nimap = 0\n", "timeouts.imap"),
            ("[timeouts]\npop3 = -1\n", "timeouts.pop3"),
            ("[timeouts]\nhttp = 1.5\n", "timeouts.http"),
            ("[timeouts]\nshutdown_grace = 99999999999\n", "timeouts.shutdown_grace"),
            ("[auth]\nplaintext_on_loopback = \"yes\"\n", "auth.plaintext_on_loopback"),
            ("[auth]\nmax_failures_per_ip = 0\n", "auth.max_failures_per_ip"),
            ("[auth]\nmax_failures_per_account = true\n", "auth.max_failures_per_account"),
            ("[auth]\nfailure_window = 0\n", "auth.failure_window"),
            ("[auth]\nlockout = -5\n", "auth.lockout"),
            ("[auth]\ndelay_step_ms = \"1s\"\n", "auth.delay_step_ms"),
            ("[auth]\ndelay_max_ms = 1e3\n", "auth.delay_max_ms"),
            ("[quota]\ndefault = \"12X\"\n", "quota.default"),
            ("[quota]\ndefault = -1\n", "quota.default"),
            ("[quota]\nmax = 1\n", "max"),
            ("[pop3]\nlock_session = 1\n", "pop3.lock_session"),
            ("[pop3]\nlogin_delay = -1\n", "pop3.login_delay"),
            ("[pop3]\nlogin_delay = 100000\n", "pop3.login_delay"),
            ("[pop3]\nlock = true\n", "lock"),
            ("[store]\nzstd_level = 20\n", "store.zstd_level"),
            ("[store]\nzstd_level = -8\n", "store.zstd_level"),
            ("[store]\nzstd_level = \"fast\"\n", "store.zstd_level"),
            ("[store]\nlevel = 1\n", "level"),
            ("[store]\ndictionary = \"yes\"\n", "store.dictionary"),
            ("[store]\ndictionary_min_samples = 5\n", "store.dictionary_min_samples"),
            ("[store]\ndictionary_min_bytes = \"1K\"\n", "store.dictionary_min_bytes"),
            ("[store]\ndictionary_zstd_level = 22\n", "store.dictionary_zstd_level"),
            ("[log]\nlevel = \"verbose\"\n", "log.level"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("tls = 3\n", "tls"),
        ];
        for (text, key) in cases {
            let e = Config::defaults().merge_str(text, "t").unwrap_err().0;
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn listener_keys_match_the_table() {
        let names: Vec<&str> = ListenerKey::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, LISTENERS);
        let implicit: Vec<&str> = ListenerKey::ALL.iter().filter(|k| k.implicit_tls()).map(|k| k.as_str()).collect();
        assert_eq!(implicit, ["submissions", "imaps", "pop3s"]);
    }
}
