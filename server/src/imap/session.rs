//! The IMAP session driver: the protocol crate's [`CommandFramer`] and [`parse_command_with`]
//! over a [`Connection`], the store behind each command, [`View`] for sequence numbers and
//! untagged updates, [`render`] for FETCH data.
//!
//! This is the first cut of the front end (issue 5): the commands a client needs to log in,
//! list, select, read, flag, move, search, append and wait (IDLE). What it advertises in
//! CAPABILITY is exactly what it implements; everything else answers `BAD`/`NO` honestly.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use postlog_engine::meta::MessageMeta;
use postlog_engine::{AccountId, AppendTarget, FlagOp, MailboxId, MessageEntry, ThreadId, Uid, flag};
use postlog_protocol::imap::encode::{encode_challenge, encode_continuation, encode_mailbox, encode_nstring};
use postlog_protocol::imap::{
    Code, Command, CommandBody, CommandFramer, DateTime, FetchAttribute, Flag, Frame, FramerConfig, ListMailbox,
    Mailbox, ObjectId, SearchKey, SearchReturn, SectionText, SequenceSet, Status, StatusItem, StatusKind, StoreAction,
    Tag, parse_command_with,
};
use tokio::io::AsyncWriteExt;

use super::list::{DELIMITER, Request as ListRequest};
use super::render;
use super::view::{Update, View, ranges};
use crate::auth::{AuthFailure, AuthOutcome, AuthStep, Exchange, Peer};
use crate::directory::LocalUser;
use crate::frame::{Connection, FrontEnd, ServerContext, SessionFuture, with_idle_timeout};
use crate::util::now_unix;

/// The largest message APPEND takes: the framer's literal limit after login.
const APPEND_LIMIT: u64 = 64 << 20;

/// The IMAP front end (`imap`, `imaps`).
pub struct ImapFrontEnd;

impl FrontEnd for ImapFrontEnd {
    fn serve(&self, ctx: Arc<ServerContext>, conn: Connection) -> SessionFuture {
        Box::pin(run(ctx, conn))
    }
}

struct Session {
    ctx: Arc<ServerContext>,
    user: Option<LocalUser>,
    selected: Option<View>,
    /// UTF8=ACCEPT or IMAP4rev2 enabled: names and strings in UTF-8.
    utf8: bool,
    rev2: bool,
    condstore: bool,
    /// QRESYNC enabled: expunges are reported as VANISHED.
    qresync: bool,
    out: Vec<u8>,
    logout: bool,
    /// An AUTHENTICATE waiting for the client's next line.
    auth: Option<(Tag, Exchange, String)>,
    /// IDLE in progress (its tag).
    idling: Option<Tag>,
    /// The result saved by `SEARCH RETURN (SAVE)` for `$` (RFC 5182), as UIDs.
    saved: Vec<Uid>,
    /// The client's address and whether the connection is TLS (for the mechanisms offered,
    /// STARTTLS).
    peer: Peer,
    /// COMPRESS=DEFLATE (RFC 4978) is active: both directions are raw deflate streams.
    deflate: Option<Deflate>,
    /// The COMPRESS command's OK is queued: compression starts after it is written.
    start_deflate: bool,
}

/// The two halves of a COMPRESS=DEFLATE stream.
struct Deflate {
    inflate: flate2::Decompress,
    deflate: flate2::Compress,
}

impl Deflate {
    fn new() -> Deflate {
        Deflate {
            inflate: flate2::Decompress::new(false),
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
        }
    }

    /// Inflates what the client sent; `Err` on a broken stream.
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, flate2::DecompressError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            let before_in = self.inflate.total_in();
            if out.capacity() - out.len() < 4096 {
                out.reserve(out.capacity().max(4096));
            }
            let before_out = out.len();
            self.inflate.decompress_vec(&input[pos..], &mut out, flate2::FlushDecompress::Sync)?;
            let used = (self.inflate.total_in() - before_in) as usize;
            pos += used;
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                // The stream ended and bytes follow it: not a COMPRESS stream any more.
                return Err(flate2::Decompress::new(false)
                    .decompress(&[0xff, 0xff], &mut [0u8; 8], flate2::FlushDecompress::Finish)
                    .expect_err("an invalid block is an error"));
            }
        }
    }

    /// Deflates a response, flushed so the client can read it whole.
    fn deflate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            let before_in = self.deflate.total_in();
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let _ = self.deflate.compress_vec(&input[pos..], &mut out, flate2::FlushCompress::Sync);
            pos += (self.deflate.total_in() - before_in) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn capabilities(s: &Session) -> String {
    let mut caps = vec!["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE"];
    caps.extend(["UNSELECT", "UIDPLUS", "MOVE", "MULTIAPPEND", "CHILDREN", "SPECIAL-USE", "CONDSTORE", "QRESYNC"]);
    caps.push("ESEARCH");
    caps.extend(["LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "QUOTA", "QUOTA=RES-STORAGE"]);
    caps.extend(["UTF8=ACCEPT", "SEARCHRES", "OBJECTID", "SAVEDATE", "CREATE-SPECIAL-USE"]);
    caps.extend(["SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "COMPRESS=DEFLATE"]);
    let mut out = caps.join(" ");
    out.push_str(&format!(" APPENDLIMIT={APPEND_LIMIT}"));
    if s.user.is_none() {
        if !s.peer.tls {
            out.push_str(" STARTTLS");
        }
        for m in s.ctx.services.auth.mechanisms(&s.peer) {
            out.push_str(" AUTH=");
            out.push_str(m.name());
        }
        if !s.ctx.services.auth.is_secured(&s.peer) {
            out.push_str(" LOGINDISABLED");
        }
    }
    out
}

impl Session {
    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn status(&mut self, s: Status) {
        s.encode_into(&mut self.out);
    }

    /// `tag OK text`; a text of ours that starts with `[CODE args]` is sent with that
    /// response code.
    fn ok(&mut self, tag: &Tag, text: &str) {
        self.tagged(tag, "OK", StatusKind::Ok, text);
    }

    fn no(&mut self, tag: &Tag, text: &str) {
        self.tagged(tag, "NO", StatusKind::No, text);
    }

    fn tagged(&mut self, tag: &Tag, word: &str, kind: StatusKind, text: &str) {
        let coded = text.strip_prefix('[').and_then(|rest| rest.split_once("] "));
        match coded {
            Some((code, rest)) if !code.contains(['\r', '\n', ']']) && !rest.contains(['\r', '\n']) => {
                self.line(&format!("{} {word} [{code}] {rest}", tag.as_str()));
            }
            _ => self.status(Status::tagged(tag.clone(), kind, text)),
        }
    }

    fn bad(&mut self, tag: &Tag, text: &str) {
        self.status(Status::tagged(tag.clone(), StatusKind::Bad, text));
    }

    fn account(&self) -> Option<AccountId> {
        self.user.as_ref().map(|u| u.account)
    }

    fn mailbox_name(&self, m: &Mailbox) -> Result<String, String> {
        let name = m.decode(self.utf8).map_err(|e| format!("bad mailbox name: {e}"))?;
        Ok(if name.eq_ignore_ascii_case("INBOX") { "INBOX".into() } else { name })
    }

    fn encode_name(&self, name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode_mailbox(&mut v, name, self.utf8);
        v
    }

    /// Sends the view's pending updates.
    fn updates(&mut self, expunges_allowed: bool) {
        self.updates_except(expunges_allowed, &[]);
    }

    /// Sends the view's pending updates, leaving out flag updates of `own`: messages whose
    /// flags this session just changed and has already shown (or was told not to, .SILENT).
    fn updates_except(&mut self, expunges_allowed: bool, own: &[Uid]) {
        let Some(view) = self.selected.as_mut() else { return };
        let Ok(updates) = view.refresh(&self.ctx.store, expunges_allowed, self.qresync) else { return };
        let keywords =
            self.ctx.store.with_mailbox(view.account, view.mailbox, |mb| mb.keywords.clone()).unwrap_or_default();
        let condstore = self.condstore;
        let own: std::collections::HashSet<Uid> = own.iter().copied().collect();
        for u in updates {
            match u {
                Update::Exists(n) => self.line(&format!("* {n} EXISTS")),
                Update::Expunge(seq) => self.line(&format!("* {seq} EXPUNGE")),
                Update::Vanished(r) => self.line(&format!("* VANISHED {}", set_string(&r))),
                Update::Flags { uid, .. } if own.contains(&uid) => {}
                Update::Flags { seq, uid, flags, keywords: kw, modseq } => {
                    let mut l = format!("* {seq} FETCH (UID {uid} FLAGS ({})", flag_list(flags, kw, &keywords));
                    if condstore {
                        l.push_str(&format!(" MODSEQ ({modseq})"));
                    }
                    l.push(')');
                    self.line(&l);
                }
            }
        }
    }
}

fn set_string(r: &[(u32, u32)]) -> String {
    r.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") }).collect::<Vec<_>>().join(",")
}

fn flag_list(bits: u8, kw: u64, names: &[String]) -> String {
    let mut v: Vec<String> = crate::util::flag_names(bits);
    for (i, n) in names.iter().enumerate().take(64) {
        if kw & (1 << i) != 0 {
            v.push(n.clone());
        }
    }
    v.join(" ")
}

/// Flags of a command as engine bits and keywords.
fn flag_bits(flags: &[Flag]) -> (u8, Vec<String>) {
    let mut bits = 0;
    let mut kws = Vec::new();
    for f in flags {
        match f {
            Flag::Answered => bits |= flag::ANSWERED,
            Flag::Flagged => bits |= flag::FLAGGED,
            Flag::Deleted => bits |= flag::DELETED,
            Flag::Seen => bits |= flag::SEEN,
            Flag::Draft => bits |= flag::DRAFT,
            Flag::Keyword(a) => kws.push(a.as_str().to_string()),
            Flag::Extension(_) => {}
        }
    }
    (bits, kws)
}

/// RFC 8474 EMAILID: `M` and the message's blob id in lowercase hex. The same stored message
/// has the same id in every mailbox (one body, single-instance), and keeps it through COPY
/// and MOVE.
fn email_id(blob: u64) -> String {
    format!("M{blob:x}")
}

/// RFC 8474 THREADID: `T` and the message's thread id in its account, lowercase hex. Threads
/// are the store's (`postlog_engine::thread`): given at append, never changed.
fn thread_id(thread: ThreadId) -> String {
    format!("T{thread:x}")
}

/// The number in an object id written by [`email_id`] or [`thread_id`] (`prefix`, then
/// lowercase hex without leading zeros); `None` for any other spelling, which then matches
/// nothing (ids are compared as strings).
fn object_number(id: &ObjectId, prefix: char) -> Option<u64> {
    let hex = id.as_str().strip_prefix(prefix)?;
    let n = u64::from_str_radix(hex, 16).ok()?;
    (format!("{n:x}") == hex).then_some(n)
}

fn internal_date(secs: i64) -> String {
    let mut v = Vec::new();
    if let Some(dt) = DateTime::from_unix_seconds(secs, 0) {
        postlog_protocol::imap::encode::encode_date_time(&mut v, &dt);
    }
    String::from_utf8_lossy(&v).into_owned()
}

async fn run(ctx: Arc<ServerContext>, mut conn: Connection) {
    let mut framer = CommandFramer::new(FramerConfig::default());
    let mut s = Session {
        ctx: ctx.clone(),
        user: None,
        selected: None,
        utf8: false,
        rev2: false,
        condstore: false,
        qresync: false,
        out: Vec::new(),
        logout: false,
        auth: None,
        idling: None,
        saved: Vec::new(),
        peer: peer(&conn),
        deflate: None,
        start_deflate: false,
    };
    let caps = capabilities(&s);
    s.line(&format!("* OK [CAPABILITY {caps}] {} Postlog IMAP ready", ctx.hostname()));
    let mut buf = vec![0u8; 16 * 1024];
    let mut shutdown = conn.shutdown_signal();
    let mut watch: Option<tokio::sync::watch::Receiver<u64>> = None;
    loop {
        while let Some(frame) = framer.poll() {
            match frame {
                Frame::Continue => {
                    encode_continuation(&mut s.out, "Ready for literal data");
                    if flush(&mut conn, &mut s).await.is_err() {
                        return conn.close().await;
                    }
                }
                Frame::Command(bytes) => match parse_command_with(&bytes, framer.limits().max_depth) {
                    Ok(cmd) => {
                        if matches!(cmd.body, CommandBody::StartTls) && s.user.is_none() && !s.peer.tls {
                            s.ok(&cmd.tag, "Begin TLS negotiation now");
                            if flush(&mut conn, &mut s).await.is_err() {
                                return conn.close().await;
                            }
                            // Input pipelined after STARTTLS is dropped with the framer.
                            framer = CommandFramer::new(FramerConfig::default());
                            conn = match conn.start_tls().await {
                                Ok(c) => c,
                                Err(_) => return,
                            };
                            s.peer = peer(&conn);
                            break;
                        }
                        if matches!(cmd.body, CommandBody::Idle)
                            && let Some(w) = watch.as_mut()
                        {
                            // Seen now: a commit after this point wakes the IDLE.
                            w.borrow_and_update();
                        }
                        command(&mut s, cmd, &mut conn).await;
                        if let (Some(a), None) = (s.account(), watch.as_ref()) {
                            watch = Some(ctx.store.watch(a));
                        }
                        if s.user.is_some() {
                            framer.set_authenticated(true);
                        }
                        if s.auth.is_some() {
                            framer.expect_authenticate_line();
                        }
                        if s.idling.is_some() {
                            framer.expect_done();
                        }
                    }
                    Err(e) => s.status(e.status()),
                },
                Frame::AuthenticateLine(line) => {
                    if let Some((tag, mut exchange, mech)) = s.auth.take() {
                        let response = line.expose_secret().clone();
                        let stepped = tokio::task::spawn_blocking(move || {
                            let step = if response == b"*" {
                                AuthStep::Done(exchange.fail(postlog_protocol::sasl::SaslError::Cancelled))
                            } else {
                                match base64_decode(&response) {
                                    Some(bytes) => exchange.step(&bytes),
                                    None => {
                                        AuthStep::Done(exchange.fail(postlog_protocol::sasl::SaslError::InvalidBase64))
                                    }
                                }
                            };
                            (exchange, step)
                        })
                        .await;
                        match stepped {
                            Ok((exchange, step)) => auth_step(&mut s, &conn, tag, exchange, mech, step).await,
                            Err(_) => s.no(&tag, "[UNAVAILABLE] authentication failed"),
                        }
                        if s.auth.is_some() {
                            framer.expect_authenticate_line();
                        }
                        if s.user.is_some() {
                            framer.set_authenticated(true);
                        }
                    }
                }
                Frame::Done => {
                    if let Some(tag) = s.idling.take() {
                        s.updates(true);
                        s.ok(&tag, "IDLE terminated");
                    }
                }
                Frame::Rejected { tag, error } => match s.idling.take() {
                    // RFC 2177: anything but DONE ends the IDLE with a BAD for it.
                    Some(idle_tag) => s.bad(&idle_tag, "Expected DONE"),
                    None => s.status(error.status(tag)),
                },
                Frame::Close { error, .. } => {
                    s.status(error.bye());
                    let _ = flush(&mut conn, &mut s).await;
                    return conn.close().await;
                }
            }
            if s.logout {
                let _ = flush(&mut conn, &mut s).await;
                return conn.close().await;
            }
        }
        if flush(&mut conn, &mut s).await.is_err() {
            break;
        }
        if s.out.capacity() > IDLE_OUT_CAPACITY {
            s.out = Vec::new();
        }
        let idling = s.idling.is_some();
        let changed = async {
            match watch.as_mut() {
                Some(w) if idling => w.changed().await.is_ok(),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.read_idle(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => match s.deflate.as_mut() {
                    None => framer.handle_bytes(&buf[..n]),
                    Some(d) => match d.inflate(&buf[..n]) {
                        Ok(plain) => framer.handle_bytes(&plain),
                        Err(_) => {
                            tracing::info!(session = conn.session_id(), "broken COMPRESS stream; closing");
                            break;
                        }
                    },
                },
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    s.status(Status::bye("Autologout; idle for too long"));
                    let _ = flush(&mut conn, &mut s).await;
                    break;
                }
                Err(_) => break,
            },
            _ = shutdown.triggered() => {
                s.status(Status::bye("Server shutting down").with_code(Code::Unavailable));
                let _ = flush(&mut conn, &mut s).await;
                break;
            }
            ok = changed => {
                if ok && s.idling.is_some() {
                    s.updates(true);
                } else if !ok {
                    watch = None;
                }
            }
        }
    }
    conn.close().await;
}

fn base64_decode(b: &[u8]) -> Option<Vec<u8>> {
    postlog_protocol::sasl::decode_response(b).ok()
}

async fn flush(conn: &mut Connection, s: &mut Session) -> std::io::Result<()> {
    if s.out.is_empty() {
        return Ok(());
    }
    let deflated = s.deflate.as_mut().map(|d| d.deflate(&s.out));
    if std::mem::take(&mut s.start_deflate) {
        // The COMPRESS OK itself goes out uncompressed; everything after it is compressed.
        s.deflate = Some(Deflate::new());
    }
    let limit = conn.idle_timeout();
    let written = with_idle_timeout(limit, async {
        conn.write_all(deflated.as_deref().unwrap_or(&s.out)).await?;
        conn.flush().await
    })
    .await;
    // The buffer is kept for the rest of the command (a FETCH streams through it); the
    // session drops a big one when it goes back to waiting for input.
    s.out.clear();
    written
}

/// Capacity of the output buffer a session keeps while it waits for input: a FETCH that
/// streamed megabytes through it does not leave each idle session holding them.
const IDLE_OUT_CAPACITY: usize = 16 << 10;

fn peer(conn: &Connection) -> Peer {
    Peer { ip: conn.peer_ip(), tls: conn.is_tls() }
}

async fn auth_step(s: &mut Session, conn: &Connection, tag: Tag, exchange: Exchange, mech: String, step: AuthStep) {
    match step {
        AuthStep::Challenge(c) => {
            encode_challenge(&mut s.out, &c);
            s.auth = Some((tag, exchange, mech));
        }
        AuthStep::Done(outcome) => finish_login(s, conn, &tag, &mech, outcome).await,
    }
}

async fn finish_login(s: &mut Session, conn: &Connection, tag: &Tag, mech: &str, outcome: AuthOutcome) {
    match outcome.result {
        Ok(a) => {
            tracing::info!(session = conn.session_id(), listener = %conn.listener(), user = %a.address, mechanism = mech, "authenticated");
            s.user = Some(LocalUser { address: a.address, account: a.account });
            let caps = capabilities(s);
            s.ok(tag, &format!("[CAPABILITY {caps}] Logged in"));
        }
        Err(f) => {
            s.ctx.metrics.auth_failure(mech);
            tracing::info!(session = conn.session_id(), listener = %conn.listener(), mechanism = mech, reason = %f, "authentication failed");
            if !outcome.delay.is_zero() {
                tokio::time::sleep(outcome.delay).await;
            }
            let (kind, code, text) = match f {
                AuthFailure::Rejected => {
                    (StatusKind::No, Code::AuthenticationFailed, "Authentication failed".to_string())
                }
                AuthFailure::AuthorizationFailed => {
                    (StatusKind::No, Code::AuthorizationFailed, "Not authorized to act as that user".to_string())
                }
                AuthFailure::TooManyFailures { .. } | AuthFailure::Unavailable => {
                    (StatusKind::No, Code::Unavailable, f.to_string())
                }
                AuthFailure::EncryptionRequired => {
                    (StatusKind::No, Code::PrivacyRequired, "Plain-text login needs TLS".to_string())
                }
                AuthFailure::UnsupportedMechanism(_) => (StatusKind::No, Code::Cannot, f.to_string()),
                AuthFailure::Protocol(_) => (StatusKind::Bad, Code::ClientBug, f.to_string()),
            };
            s.status(Status::tagged(tag.clone(), kind, text).with_code(code));
        }
    }
}

async fn command(s: &mut Session, cmd: Command, conn: &mut Connection) {
    let Command { tag, body } = cmd;
    let body_kind = if matches!(body, CommandBody::Examine { .. }) { BodyKind::Examine } else { BodyKind::Other };
    let authed = s.user.is_some();
    let selected = s.selected.is_some();
    match body {
        CommandBody::Capability => {
            let caps = capabilities(s);
            s.line(&format!("* CAPABILITY {caps}"));
            s.ok(&tag, "CAPABILITY completed");
        }
        CommandBody::Noop | CommandBody::Check => {
            s.updates(true);
            s.ok(&tag, "NOOP completed");
        }
        CommandBody::Logout => {
            s.status(Status::bye("Logging out"));
            s.ok(&tag, "LOGOUT completed");
            s.logout = true;
        }
        CommandBody::Id { .. } => {
            s.line("* ID (\"name\" \"Postlog\" \"vendor\" \"Postlog\")");
            s.ok(&tag, "ID completed");
        }
        CommandBody::StartTls => s.bad(&tag, "STARTTLS is not available now"),
        CommandBody::Login { username, password } => {
            if authed {
                return s.bad(&tag, "Already logged in");
            }
            let user = String::from_utf8_lossy(username.as_bytes()).into_owned();
            let pass = String::from_utf8_lossy(password.expose_secret().as_bytes()).into_owned();
            let auth = s.ctx.services.auth.clone();
            let p = peer(conn);
            let outcome = tokio::task::spawn_blocking(move || auth.login(&user, &pass, p)).await;
            let outcome =
                outcome.unwrap_or(AuthOutcome { result: Err(AuthFailure::Unavailable), delay: Duration::ZERO });
            finish_login(s, conn, &tag, "LOGIN-COMMAND", outcome).await;
        }
        CommandBody::Authenticate { mechanism, initial_response } => {
            if authed {
                return s.bad(&tag, "Already logged in");
            }
            let auth = s.ctx.services.auth.clone();
            let p = peer(conn);
            let name = mechanism.as_str().to_ascii_uppercase();
            let mech = postlog_protocol::sasl::Mechanism::from_name(&name)
                .map_or_else(|_| "unsupported".to_string(), |m| m.name().to_string());
            let ir = initial_response.map(|r| r.expose_secret().clone());
            let started = tokio::task::spawn_blocking(move || match auth.begin(&name, p) {
                Ok(mut ex) => {
                    let step = ex.start(ir.as_deref());
                    Ok((ex, step))
                }
                Err(outcome) => Err(outcome),
            })
            .await;
            match started {
                Ok(Ok((ex, step))) => auth_step(s, conn, tag, ex, mech, step).await,
                Ok(Err(outcome)) => finish_login(s, conn, &tag, &mech, outcome).await,
                Err(_) => s.no(&tag, "[UNAVAILABLE] authentication failed"),
            }
        }
        _ if !authed => s.bad(&tag, "Log in first"),
        CommandBody::Enable { capabilities } => {
            let mut enabled = Vec::new();
            for c in capabilities {
                let c = c.as_str().to_ascii_uppercase();
                match c.as_str() {
                    "IMAP4REV2" => {
                        s.rev2 = true;
                        s.utf8 = true;
                        enabled.push("IMAP4rev2");
                    }
                    "UTF8=ACCEPT" => {
                        s.utf8 = true;
                        enabled.push("UTF8=ACCEPT");
                    }
                    "CONDSTORE" => {
                        s.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                    "QRESYNC" => {
                        s.condstore = true;
                        s.qresync = true;
                        enabled.push("QRESYNC");
                    }
                    _ => {}
                }
            }
            s.line(format!("* ENABLED {}", enabled.join(" ")).trim_end());
            s.ok(&tag, "ENABLE completed");
        }
        CommandBody::Namespace => {
            s.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
            s.ok(&tag, "NAMESPACE completed");
        }
        CommandBody::List(list) => {
            list_command(s, &list);
            s.ok(&tag, "LIST completed");
        }
        CommandBody::Lsub { reference, pattern } => {
            let request = ListRequest { lsub: true, ..ListRequest::default() };
            list_names(s, &reference, &[pattern], request, None);
            s.ok(&tag, "LSUB completed");
        }
        CommandBody::Status { mailbox, items } => status(s, &tag, &mailbox, &items),
        CommandBody::Select { mailbox, params } | CommandBody::Examine { mailbox, params } => {
            let read_only = matches!(body_kind, BodyKind::Examine);
            if params.condstore {
                s.condstore = true;
            }
            if params.qresync.is_some() && !s.qresync {
                return s.bad(&tag, "QRESYNC is not enabled");
            }
            select(s, &tag, &mailbox, read_only, params.qresync.as_ref())
        }
        CommandBody::Create { mailbox, special_use } => {
            let account = s.account().expect("authenticated");
            let bits = special_use.unwrap_or_default().iter().map(special_use_bit).fold(0, |a, b| a | b);
            let result = s.mailbox_name(&mailbox).map_err(|e| e.to_string()).and_then(|name| {
                let name = name.trim_end_matches(DELIMITER).to_string();
                s.ctx.store.create_mailbox(account, &name, bits).map(|_| ()).map_err(|e| e.to_string())
            });
            match result {
                Ok(()) => s.ok(&tag, "CREATE completed"),
                Err(e) if e.contains("exists") => s.status(
                    Status::tagged(tag, StatusKind::No, "Mailbox already exists").with_code(Code::AlreadyExists),
                ),
                Err(e) => s.no(&tag, &e),
            }
        }
        CommandBody::Delete { mailbox } => {
            let account = s.account().expect("authenticated");
            match s.mailbox_name(&mailbox) {
                Ok(name) => match s.ctx.store.delete_mailbox(account, &name) {
                    Ok(()) => s.ok(&tag, "DELETE completed"),
                    Err(e) => s.no(&tag, &e.to_string()),
                },
                Err(e) => s.no(&tag, &e),
            }
        }
        CommandBody::Rename { from, to } => {
            let account = s.account().expect("authenticated");
            match (s.mailbox_name(&from), s.mailbox_name(&to)) {
                (Ok(a), Ok(b)) => match s.ctx.store.rename_mailbox(account, &a, &b) {
                    Ok(()) => s.ok(&tag, "RENAME completed"),
                    Err(e) => s.no(&tag, &e.to_string()),
                },
                (Err(e), _) | (_, Err(e)) => s.no(&tag, &e),
            }
        }
        CommandBody::Subscribe { mailbox } => subscribe(s, &tag, &mailbox, true),
        CommandBody::Unsubscribe { mailbox } => subscribe(s, &tag, &mailbox, false),
        CommandBody::Append { mailbox, messages } => append(s, &tag, &mailbox, messages).await,
        CommandBody::GetQuotaRoot { mailbox } => {
            // One quota root per user (RFC 9208): "", over every mailbox of the account.
            let name = s.mailbox_name(&mailbox).unwrap_or_default();
            let exists = s.ctx.store.mailbox_by_name(s.account().expect("authenticated"), &name).is_ok();
            if !exists {
                return s.status(Status::tagged(tag, StatusKind::No, "No such mailbox").with_code(Code::NonExistent));
            }
            let mut l = b"* QUOTAROOT ".to_vec();
            l.extend(s.encode_name(&name));
            l.extend_from_slice(b" \"\"\r\n");
            s.out.extend(l);
            quota_line(s);
            s.ok(&tag, "GETQUOTAROOT completed");
        }
        CommandBody::GetQuota { root } => {
            if !root.as_bytes().is_empty() {
                return s
                    .status(Status::tagged(tag, StatusKind::No, "No such quota root").with_code(Code::NonExistent));
            }
            quota_line(s);
            s.ok(&tag, "GETQUOTA completed");
        }
        CommandBody::SetQuota { .. } => {
            s.status(
                Status::tagged(tag, StatusKind::No, "Quotas are set by the administrator").with_code(Code::NoPerm),
            );
        }
        CommandBody::Idle => {
            s.updates(true);
            encode_continuation(&mut s.out, "idling");
            s.idling = Some(tag);
        }
        CommandBody::Compress { .. } => {
            if s.deflate.is_some() || s.start_deflate {
                s.status(
                    Status::tagged(tag, StatusKind::No, "Compression is already active")
                        .with_code(Code::CompressionActive),
                );
            } else {
                s.ok(&tag, "DEFLATE active");
                s.start_deflate = true;
            }
        }
        _ if !selected => s.bad(&tag, "No mailbox selected"),
        CommandBody::Fetch { uid: false, sequence_set: set, .. }
        | CommandBody::Store { uid: false, sequence_set: set, .. }
        | CommandBody::Copy { uid: false, sequence_set: set, .. }
        | CommandBody::Move { uid: false, sequence_set: set, .. }
            if beyond(s.selected.as_ref().expect("selected"), &set) =>
        {
            s.bad(&tag, "Invalid sequence set: no such message")
        }
        CommandBody::Close | CommandBody::Unselect => {
            let close = matches!(body, CommandBody::Close);
            let view = s.selected.take().expect("selected");
            if close && !view.read_only {
                let _ = s.ctx.store.expunge(view.account, view.mailbox, None);
            }
            s.ok(&tag, if close { "CLOSE completed" } else { "UNSELECT completed" });
        }
        CommandBody::Expunge | CommandBody::UidExpunge { .. } => {
            let view = s.selected.as_ref().expect("selected");
            if view.read_only {
                return s.no(&tag, "[READ-ONLY] Mailbox is read-only");
            }
            let only = match &body {
                CommandBody::UidExpunge { uids } => Some(uid_set(view, uids, &s.saved)),
                _ => None,
            };
            let (account, mailbox) = (view.account, view.mailbox);
            let deleted: Option<Vec<Uid>> = only.map(|set| {
                s.ctx
                    .store
                    .with_mailbox(account, mailbox, |mb| {
                        set.into_iter()
                            .filter(|u| mb.message(*u).is_some_and(|m| m.flags & flag::DELETED != 0))
                            .collect()
                    })
                    .unwrap_or_default()
            });
            match s.ctx.store.expunge(account, mailbox, deleted.as_deref()) {
                Ok(_) => {
                    s.updates(true);
                    s.ok(&tag, "EXPUNGE completed");
                }
                Err(e) => s.no(&tag, &e.to_string()),
            }
        }
        CommandBody::Fetch { uid, sequence_set, items, modifiers } => {
            let view = s.selected.as_ref().expect("selected");
            let mut uids =
                if uid { uid_set(view, &sequence_set, &s.saved) } else { seq_set(view, &sequence_set, &s.saved) };
            let mut attrs = items.expand();
            if let Some(since) = modifiers.changed_since {
                // RFC 7162 section 3.1.4: only messages changed since, with their MODSEQ.
                let since = since.get();
                let (account, mailbox) = (view.account, view.mailbox);
                if modifiers.vanished && s.qresync {
                    let largest = view.last_uid();
                    if let Ok(ch) = s.ctx.store.changes_since(account, mailbox, since) {
                        let gone: std::collections::BTreeSet<Uid> =
                            ch.expunged.iter().copied().filter(|u| sequence_set.contains(*u, largest)).collect();
                        if !gone.is_empty() {
                            s.line(&format!("* VANISHED (EARLIER) {}", set_string(&ranges(gone))));
                        }
                    }
                }
                let changed: std::collections::HashSet<Uid> = s
                    .ctx
                    .store
                    .with_mailbox(account, mailbox, |mb| {
                        uids.iter().copied().filter(|u| mb.message(*u).is_some_and(|m| m.modseq > since)).collect()
                    })
                    .unwrap_or_default();
                uids.retain(|u| changed.contains(u));
                if !attrs.contains(&FetchAttribute::ModSeq) {
                    attrs.push(FetchAttribute::ModSeq);
                }
            }
            if uid && !attrs.contains(&FetchAttribute::Uid) {
                attrs.insert(0, FetchAttribute::Uid);
            }
            let Ok(trouble) = fetch_streamed(s, conn, &uids, &attrs).await else {
                // The connection broke while the answer was written: the session ends at its
                // next read or write.
                return;
            };
            s.updates_except(false, &trouble.seen_set);
            if trouble.unknown_cte {
                s.no(&tag, "[UNKNOWN-CTE] A part is in an unknown transfer encoding");
            } else if trouble.unreadable {
                s.no(&tag, "[SERVERBUG] Some messages could not be read");
            } else if trouble.expunged {
                s.no(&tag, "[EXPUNGEISSUED] Some messages were expunged");
            } else {
                s.ok(&tag, if uid { "UID FETCH completed" } else { "FETCH completed" });
            }
        }
        CommandBody::Store { uid, sequence_set, unchanged_since, action, silent, flags } => {
            let view = s.selected.as_ref().expect("selected");
            if view.read_only {
                return s.no(&tag, "[READ-ONLY] Mailbox is read-only");
            }
            let uids =
                if uid { uid_set(view, &sequence_set, &s.saved) } else { seq_set(view, &sequence_set, &s.saved) };
            let (account, mailbox) = (view.account, view.mailbox);
            let (bits, kws) = flag_bits(&flags);
            let op = match action {
                StoreAction::Add => FlagOp::Add,
                StoreAction::Remove => FlagOp::Remove,
                StoreAction::Replace => FlagOp::Replace,
            };
            match s.ctx.store.store_flags(account, mailbox, &uids, op, bits, &kws, unchanged_since) {
                Ok(outcome) => {
                    if !silent {
                        let attrs = [FetchAttribute::Uid, FetchAttribute::Flags];
                        let _ = fetch(s, &uids, &attrs);
                    }
                    // Our own changes were just shown (or silenced); not again as updates.
                    s.updates_except(false, &outcome.changed);
                    if outcome.failed.is_empty() {
                        s.ok(&tag, "STORE completed");
                    } else {
                        let set = set_string(&ranges(outcome.failed.iter().copied()));
                        s.ok(&tag, &format!("[MODIFIED {set}] Conditional STORE failed for some messages"));
                    }
                }
                Err(e) => s.no(&tag, &e.to_string()),
            }
        }
        CommandBody::Copy { uid, sequence_set, mailbox } => copy(s, &tag, uid, &sequence_set, &mailbox, false),
        CommandBody::Move { uid, sequence_set, mailbox } => copy(s, &tag, uid, &sequence_set, &mailbox, true),
        // Searches read and decode messages: long CPU work, off the async worker's queue.
        CommandBody::Search { uid, return_options, criteria, .. } => {
            tokio::task::block_in_place(|| search(s, &tag, uid, return_options, &criteria));
        }
        CommandBody::Sort { uid, sort, criteria, .. } => {
            tokio::task::block_in_place(|| sort_or_thread(s, &tag, uid, &criteria, SortOrThread::Sort(sort)));
        }
        CommandBody::Thread { uid, algorithm, criteria, .. } => {
            tokio::task::block_in_place(|| sort_or_thread(s, &tag, uid, &criteria, SortOrThread::Thread(algorithm)));
        }
    }
}

/// `* QUOTA "" (STORAGE used limit)` in KiB, or no resource when unlimited.
fn quota_line(s: &mut Session) {
    let user = s.user.clone().expect("authenticated");
    let q = s.ctx.services.directory.quota(&user.address);
    match q.and_then(|q| q.limit_bytes.map(|l| (q.used_bytes, l))) {
        Some((used, limit)) => s.line(&format!("* QUOTA \"\" (STORAGE {} {})", used.div_ceil(1024), limit / 1024)),
        None => s.line("* QUOTA \"\" ()"),
    }
}

enum BodyKind {
    Examine,
    Other,
}

fn special_use_bit(u: &postlog_protocol::imap::SpecialUse) -> u8 {
    use postlog_engine::special_use as su;
    use postlog_protocol::imap::SpecialUse as S;
    match u {
        S::Drafts => su::DRAFTS,
        S::Sent => su::SENT,
        S::Junk => su::JUNK,
        S::Trash => su::TRASH,
        S::Archive => su::ARCHIVE,
        S::All => su::ALL,
        S::Flagged => su::FLAGGED,
        _ => 0,
    }
}

/// Whether a sequence-number set names a message beyond the mailbox (`*` never does):
/// RFC 9051 section 6.4.5 wants a BAD for it.
fn beyond(view: &View, set: &SequenceSet) -> bool {
    if view.is_empty() && set.uses_largest() {
        // `1:*` in an empty mailbox names nothing; answered OK, as clients expect.
        return false;
    }
    set.to_ranges(view.len().max(1)).is_some_and(|r| r.iter().any(|&(_, hi)| hi > view.len()))
}

/// UIDs of a sequence-number set, in order (`$`: the saved result).
fn seq_set(view: &View, set: &SequenceSet, saved: &[Uid]) -> Vec<Uid> {
    if matches!(set, SequenceSet::Saved) {
        return known_of(view, saved);
    }
    let mut out = Vec::new();
    for (lo, hi) in set.to_ranges(view.len()).unwrap_or_default() {
        for seq in lo.max(1)..=hi.min(view.len()) {
            if let Some(u) = view.uid(seq) {
                out.push(u);
            }
        }
    }
    out
}

/// UIDs of a UID set that the session knows, in order (`$`: the saved result).
fn uid_set(view: &View, set: &SequenceSet, saved: &[Uid]) -> Vec<Uid> {
    let Some(ranges) = set.to_ranges(view.last_uid()) else {
        return known_of(view, saved);
    };
    // The view's UIDs are in ascending order: each range is found by binary search, so a
    // `UID FETCH 99001:100000` costs what it returns, not the size of the mailbox. The ranges
    // come sorted and merged (`to_ranges`), so the answer is in order and without repeats.
    let uids = view.uids();
    let mut out = Vec::new();
    let mut from = 0;
    for (lo, hi) in ranges {
        let start = from + uids[from..].partition_point(|&u| u < lo);
        let end = start + uids[start..].partition_point(|&u| u <= hi);
        out.extend_from_slice(&uids[start..end]);
        from = end;
    }
    out
}

/// The UIDs of `saved` (a SEARCHRES result) that the session knows, in order.
fn known_of(view: &View, saved: &[Uid]) -> Vec<Uid> {
    let mut saved = saved.to_vec();
    saved.sort_unstable();
    view.uids().iter().copied().filter(|u| saved.binary_search(u).is_ok()).collect()
}

/// LIST, basic or extended (RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154).
fn list_command(s: &mut Session, list: &postlog_protocol::imap::List) {
    use postlog_protocol::imap::ListReturn;
    let mut request = ListRequest {
        extended: list.is_extended(),
        selection: list.selection.unwrap_or_default(),
        ..ListRequest::default()
    };
    let mut status_items = None;
    for option in list.return_options.iter().flatten() {
        match option {
            ListReturn::Subscribed => request.return_subscribed = true,
            ListReturn::Children => request.return_children = true,
            ListReturn::SpecialUse => request.return_special_use = true,
            ListReturn::Status(items) => status_items = Some(items.as_slice()),
        }
    }
    list_names(s, &list.reference, &list.patterns, request, status_items);
}

/// The untagged LIST or LSUB responses (and LIST-STATUS's STATUS responses) for the patterns.
fn list_names(
    s: &mut Session,
    reference: &Mailbox,
    patterns: &[ListMailbox],
    mut request: ListRequest,
    status_items: Option<&[StatusItem]>,
) {
    let account = s.account().expect("authenticated");
    let reference = s.mailbox_name(reference).unwrap_or_default();
    request.rev2 = s.rev2;
    let mut root = false;
    for p in patterns {
        // A pattern that cannot be decoded matches nothing.
        match p.decode(s.utf8) {
            Ok(p) if p.is_empty() => root = true,
            Ok(p) => request.patterns.push(format!("{reference}{p}")),
            Err(_) => {}
        }
    }
    if root && !request.lsub {
        // RFC 9051 section 6.3.9: an empty pattern asks for the delimiter and the root.
        s.line(&format!("* LIST (\\Noselect) \"{DELIMITER}\" \"\""));
    }
    if request.patterns.is_empty() {
        return;
    }
    let Ok(boxes) = s.ctx.store.mailboxes(account) else { return };
    let Ok(subscriptions) = s.ctx.store.subscriptions(account) else { return };
    let mailboxes = boxes.into_iter().map(|mb| (mb.name, mb.special_use)).collect();
    let subscriptions = subscriptions.into_iter().collect();
    let kind = if request.lsub { "LSUB" } else { "LIST" };
    for entry in super::list::list(&mailboxes, &subscriptions, &request) {
        let mut l = format!("* {kind} ({}) \"{DELIMITER}\" ", entry.attributes.join(" ")).into_bytes();
        l.extend(s.encode_name(&entry.name));
        if !entry.child_info.is_empty() {
            let items: Vec<String> = entry.child_info.iter().map(|c| format!("\"{c}\"")).collect();
            l.extend(format!(" (\"CHILDINFO\" ({}))", items.join(" ")).into_bytes());
        }
        l.extend_from_slice(b"\r\n");
        s.out.extend(l);
        if let Some(items) = status_items.filter(|_| entry.selectable) {
            // LIST-STATUS (RFC 5819): the STATUS of each listed mailbox that can be selected.
            if let Some(line) = status_line(s, account, &entry.name, items) {
                s.out.extend(line);
            }
        }
    }
}

fn status(s: &mut Session, tag: &Tag, mailbox: &Mailbox, items: &[StatusItem]) {
    let account = s.account().expect("authenticated");
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return s.no(tag, &e),
    };
    match status_line(s, account, &name, items) {
        Some(line) => {
            s.out.extend(line);
            s.ok(tag, "STATUS completed");
        }
        None => s.status(Status::tagged(tag.clone(), StatusKind::No, "No such mailbox").with_code(Code::NonExistent)),
    }
}

/// `* STATUS name (items)`, or `None` if there is no such mailbox.
fn status_line(s: &Session, account: AccountId, name: &str, items: &[StatusItem]) -> Option<Vec<u8>> {
    let info = s.ctx.store.mailbox_by_name(account, name).ok()?;
    let mut parts = Vec::new();
    for i in items {
        match i {
            StatusItem::Messages => parts.push(format!("MESSAGES {}", info.messages)),
            StatusItem::UidNext => parts.push(format!("UIDNEXT {}", info.uidnext)),
            StatusItem::UidValidity => parts.push(format!("UIDVALIDITY {}", info.uidvalidity)),
            StatusItem::Unseen => parts.push(format!("UNSEEN {}", info.unseen)),
            StatusItem::Deleted => {
                // Only counted when asked: it scans the mailbox's messages.
                let deleted = s
                    .ctx
                    .store
                    .with_mailbox(account, info.id, |mb| {
                        mb.messages.iter().filter(|m| m.flags & flag::DELETED != 0).count()
                    })
                    .unwrap_or(0);
                parts.push(format!("DELETED {deleted}"));
            }
            StatusItem::Size => parts.push(format!("SIZE {}", info.bytes)),
            StatusItem::Recent => parts.push("RECENT 0".into()),
            StatusItem::HighestModSeq => parts.push(format!("HIGHESTMODSEQ {}", info.highest_modseq)),
            StatusItem::MailboxId => parts.push(format!("MAILBOXID (F{})", info.id)),
            StatusItem::AppendLimit => parts.push(format!("APPENDLIMIT {APPEND_LIMIT}")),
            _ => {}
        }
    }
    let mut l = b"* STATUS ".to_vec();
    l.extend(s.encode_name(name));
    l.extend(format!(" ({})\r\n", parts.join(" ")).into_bytes());
    Some(l)
}

fn select(
    s: &mut Session,
    tag: &Tag,
    mailbox: &Mailbox,
    read_only: bool,
    qresync: Option<&postlog_protocol::imap::QResync>,
) {
    if s.selected.take().is_some() && (s.qresync || s.rev2) {
        // RFC 7162 section 3.2.11, RFC 9051: the end of the previous mailbox's updates.
        s.line("* OK [CLOSED] Previous mailbox closed");
    }
    s.saved.clear();
    let account = s.account().expect("authenticated");
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return s.no(tag, &e),
    };
    let Ok(info) = s.ctx.store.mailbox_by_name(account, &name) else {
        return s.status(Status::tagged(tag.clone(), StatusKind::No, "No such mailbox").with_code(Code::NonExistent));
    };
    let view = match View::open(&s.ctx.store, account, info.id, read_only) {
        Ok(v) => v,
        Err(e) => return s.no(tag, &e.to_string()),
    };
    let keywords = s.ctx.store.with_mailbox(account, info.id, |mb| mb.keywords.clone()).unwrap_or_default();
    let first_unseen = s
        .ctx
        .store
        .with_mailbox(account, info.id, |mb| mb.messages.iter().position(|m| m.flags & flag::SEEN == 0))
        .ok()
        .flatten();
    let flags = format!(
        "\\Answered \\Flagged \\Deleted \\Seen \\Draft{}",
        keywords.iter().map(|k| format!(" {k}")).collect::<String>()
    );
    s.line(&format!("* {} EXISTS", view.len()));
    if !s.rev2 {
        s.line("* 0 RECENT");
        if let Some(i) = first_unseen {
            s.line(&format!("* OK [UNSEEN {}] First unseen", i + 1));
        }
    }
    s.line(&format!("* FLAGS ({flags})"));
    s.line(&format!("* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted"));
    s.line(&format!("* OK [UIDVALIDITY {}] UIDs valid", info.uidvalidity));
    s.line(&format!("* OK [UIDNEXT {}] Predicted next UID", info.uidnext));
    s.line(&format!("* OK [HIGHESTMODSEQ {}] Highest", view.modseq()));
    s.line(&format!("* OK [MAILBOXID (F{})] Ok", info.id));
    s.line(&format!("* LIST () \"{DELIMITER}\" {}", String::from_utf8_lossy(&s.encode_name(&name))));
    // RFC 7162 section 3.2.5: what changed since the client's state, if it is of this
    // UIDVALIDITY.
    if let Some(q) = qresync.filter(|q| q.uidvalidity.get() == info.uidvalidity) {
        let known = q.known_uids.as_ref();
        if let Ok(changes) = s.ctx.store.changes_since(account, info.id, q.modseq.get()) {
            let vanished: Vec<Uid> = changes
                .expunged
                .iter()
                .copied()
                .filter(|u| known.is_none_or(|k| k.contains(*u, u32::MAX)))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !vanished.is_empty() {
                s.line(&format!("* VANISHED (EARLIER) {}", set_string(&ranges(vanished))));
            }
            let changed: Vec<Uid> = changes.changed.iter().map(|m| m.uid).collect();
            s.selected = Some(view.clone());
            let _ = fetch(s, &changed, &[FetchAttribute::Uid, FetchAttribute::Flags, FetchAttribute::ModSeq]);
        }
    }
    s.selected = Some(view);
    let what = if read_only { "[READ-ONLY] EXAMINE completed" } else { "[READ-WRITE] SELECT completed" };
    s.ok(tag, what);
}

fn subscribe(s: &mut Session, tag: &Tag, mailbox: &Mailbox, on: bool) {
    let account = s.account().expect("authenticated");
    let result =
        s.mailbox_name(mailbox).and_then(|n| s.ctx.store.subscribe(account, &n, on).map_err(|e| e.to_string()));
    match result {
        Ok(()) => s.ok(tag, if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }),
        Err(e) => s.no(tag, &e),
    }
}

async fn append(s: &mut Session, tag: &Tag, mailbox: &Mailbox, messages: Vec<postlog_protocol::imap::AppendMessage>) {
    let user = s.user.clone().expect("authenticated");
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return s.no(tag, &e),
    };
    let Ok(info) = s.ctx.store.mailbox_by_name(user.account, &name) else {
        return s.status(Status::tagged(tag.clone(), StatusKind::No, "No such mailbox").with_code(Code::TryCreate));
    };
    let total: u64 = messages.iter().map(|m| m.message.data().len() as u64).sum();
    if s.ctx.services.directory.quota(&user.address).is_some_and(|q| !q.allows(total)) {
        return s.status(Status::tagged(tag.clone(), StatusKind::No, "Over quota").with_code(Code::OverQuota));
    }
    let store = s.ctx.store.clone();
    let mut items = Vec::new();
    for m in messages {
        let (bits, kws) = flag_bits(&m.flags);
        let date = m.date.map_or_else(now_unix, |d| d.unix_seconds());
        let raw = m.message.into_data();
        let prepared = if raw.len() <= 256 * 1024 {
            store.prepare(&raw)
        } else {
            let st = store.clone();
            match tokio::task::spawn_blocking(move || st.prepare(&raw)).await {
                Ok(p) => p,
                Err(_) => return s.no(tag, "[SERVERBUG] Could not store the message"),
            }
        };
        let prepared = Arc::new(prepared);
        let target =
            AppendTarget { account: user.account, mailbox: info.id, flags: bits, keywords: kws, internal_date: date };
        items.push((prepared, vec![target]));
    }
    match store.append_many_async(items).await {
        Ok(done) => {
            let uids: Vec<Uid> = done.iter().filter_map(|v| v.first().map(|a| a.uid)).collect();
            let validity = done.first().and_then(|v| v.first()).map_or(info.uidvalidity, |a| a.uidvalidity);
            s.updates(true);
            let set = set_string(&ranges(uids));
            s.ok(tag, &format!("[APPENDUID {validity} {set}] APPEND completed"));
        }
        Err(e) => s.no(tag, &e.to_string()),
    }
}

fn copy(s: &mut Session, tag: &Tag, uid: bool, set: &SequenceSet, mailbox: &Mailbox, is_move: bool) {
    let view = s.selected.as_ref().expect("selected");
    if is_move && view.read_only {
        return s.no(tag, "[READ-ONLY] Mailbox is read-only");
    }
    let uids = if uid { uid_set(view, set, &s.saved) } else { seq_set(view, set, &s.saved) };
    let (account, from) = (view.account, view.mailbox);
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return s.no(tag, &e),
    };
    let Ok(info) = s.ctx.store.mailbox_by_name(account, &name) else {
        return s.status(Status::tagged(tag.clone(), StatusKind::No, "No such mailbox").with_code(Code::TryCreate));
    };
    let result = if is_move {
        s.ctx.store.move_messages(account, from, info.id, &uids)
    } else {
        s.ctx.store.copy(account, from, info.id, &uids)
    };
    match result {
        Ok(outcome) if outcome.pairs.is_empty() => s.ok(tag, "Nothing to do"),
        Ok(outcome) => {
            let src = set_string(&ranges(outcome.pairs.iter().map(|p| p.0)));
            let dst = set_string(&ranges(outcome.pairs.iter().map(|p| p.1)));
            let code = format!("COPYUID {} {src} {dst}", outcome.uidvalidity);
            if is_move {
                s.line(&format!("* OK [{code}] Moved"));
                s.updates(true);
                s.ok(tag, "MOVE completed");
            } else {
                s.ok(tag, &format!("[{code}] COPY completed"));
            }
        }
        Err(e) => s.no(tag, &e.to_string()),
    }
}

/// What a FETCH could not do.
#[derive(Default)]
struct FetchTrouble {
    /// Messages expunged by another session, not yet reported to this one.
    expunged: bool,
    /// A message whose bytes or metadata could not be read (logged).
    unreadable: bool,
    /// BINARY of a part in an unknown transfer encoding.
    unknown_cte: bool,
    /// Messages this FETCH set \Seen on (their FLAGS were shown).
    seen_set: Vec<Uid>,
}

/// Messages rendered between two looks at the output buffer during a FETCH.
const FETCH_CHUNK: usize = 64;

/// Output a FETCH lets pile up before it is written: the response goes out in pieces of
/// about this size instead of whole (a first sync of 100,000 messages is ~56 MB, per client).
const FETCH_FLUSH_BYTES: usize = 256 << 10;

/// What a FETCH reads once, before its messages are rendered (in chunks).
struct FetchPlan {
    view: View,
    store: postlog_engine::Store,
    show_flags: bool,
    msgs: HashMap<Uid, MessageEntry>,
    keywords: Vec<String>,
}

/// A whole FETCH of `uids`, answered into the session's output at once.
fn fetch(s: &mut Session, uids: &[Uid], attrs: &[FetchAttribute]) -> FetchTrouble {
    let (plan, mut trouble) = fetch_start(s, uids, attrs);
    fetch_some(s, &plan, uids, attrs, &mut trouble, None);
    trouble
}

/// A FETCH of `uids` written out as it goes (`FETCH_FLUSH_BYTES` at a time), so a session's
/// memory does not grow with the size of the answer. `Err` when the connection broke.
async fn fetch_streamed(
    s: &mut Session,
    conn: &mut Connection,
    uids: &[Uid],
    attrs: &[FetchAttribute],
) -> std::io::Result<FetchTrouble> {
    let (plan, mut trouble) = fetch_start(s, uids, attrs);
    // Bodies are decoded (decompressed) on blocking threads, `DECODE_AHEAD_CHUNKS` chunks
    // ahead of the one this task renders and writes: a big download uses every core for the
    // decoding, which is most of its cost. The first chunk is decoded here.
    let decode = reads_bodies(attrs) && uids.len() > 1;
    let chunks = if decode { body_chunks(&plan, uids) } else { uids.chunks(FETCH_CHUNK).collect() };
    let later = if decode { &chunks[1..] } else { &[][..] };
    let mut ahead: std::collections::VecDeque<tokio::task::JoinHandle<Prefetched>> =
        later.iter().take(DECODE_AHEAD_CHUNKS).map(|c| decode_ahead(&plan, c)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let handle = if i > 0 { ahead.pop_front() } else { None };
        let mut bodies = match handle {
            Some(handle) => handle.await.ok(),
            None => None,
        };
        if let Some(next) = later.get(i + DECODE_AHEAD_CHUNKS) {
            ahead.push_back(decode_ahead(&plan, next));
        }
        fetch_some(s, &plan, chunk, attrs, &mut trouble, bodies.as_mut());
        if s.out.len() >= FETCH_FLUSH_BYTES {
            flush(conn, s).await?;
        }
    }
    Ok(trouble)
}

/// Bodies of the messages of a FETCH chunk, decoded ahead of their rendering.
type Prefetched = HashMap<Uid, Result<Arc<[u8]>, Unread>>;

/// The bodies of a chunk of a FETCH decoded ahead: at most `FETCH_CHUNK` messages, and
/// about this many bytes unless one message is bigger.
const DECODE_AHEAD_BYTES: u64 = 1 << 20;

/// Chunks a FETCH decodes ahead of the one it renders, each on its own blocking thread: two,
/// so that a download's decompression (most of its cost) runs on two cores while the
/// session's task only copies and writes.
const DECODE_AHEAD_CHUNKS: usize = 2;

/// Whether a FETCH reads message bodies (rather than only what the index and the parsed
/// metadata answer). Top-level HEADER.FIELDS are mostly answered from the metadata.
fn reads_bodies(attrs: &[FetchAttribute]) -> bool {
    attrs.iter().any(|a| match a {
        FetchAttribute::Rfc822
        | FetchAttribute::Rfc822Text
        | FetchAttribute::Rfc822Header
        | FetchAttribute::Binary { .. }
        | FetchAttribute::BinarySize { .. } => true,
        FetchAttribute::BodySection { section, .. } => {
            !(section.part.is_empty() && matches!(section.text, Some(SectionText::HeaderFields(_))))
        }
        _ => false,
    })
}

/// `uids` cut into chunks of at most `FETCH_CHUNK` messages and about `DECODE_AHEAD_BYTES`.
/// The first chunk, decoded before anything can be written, is smaller (an eighth), so the
/// answer starts sooner and the decoding ahead sooner.
fn body_chunks<'a>(plan: &FetchPlan, uids: &'a [Uid]) -> Vec<&'a [Uid]> {
    let mut chunks: Vec<&[Uid]> = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, uid) in uids.iter().enumerate() {
        let size = plan.msgs.get(uid).map_or(0, |m| m.size);
        let first = chunks.is_empty();
        let (max_count, max_bytes) =
            if first { (FETCH_CHUNK / 8, DECODE_AHEAD_BYTES / 8) } else { (FETCH_CHUNK, DECODE_AHEAD_BYTES) };
        if i > start && (i - start == max_count || bytes + size > max_bytes) {
            chunks.push(&uids[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < uids.len() {
        chunks.push(&uids[start..]);
    }
    chunks
}

/// Starts decoding the bodies of `uids` on a blocking thread.
fn decode_ahead(plan: &FetchPlan, uids: &[Uid]) -> tokio::task::JoinHandle<Prefetched> {
    let store = plan.store.clone();
    let (account, mailbox) = (plan.view.account, plan.view.mailbox);
    let uids = uids.to_vec();
    tokio::task::spawn_blocking(move || {
        let read = store.read_messages_shared(account, mailbox, &uids);
        uids.into_iter().zip(read).map(|(uid, r)| (uid, r.map_err(|e| unread(account, mailbox, uid, e)))).collect()
    })
}

/// Sets \Seen where the FETCH asks for it and reads the flags to show, once for the whole
/// FETCH.
fn fetch_start(s: &mut Session, uids: &[Uid], attrs: &[FetchAttribute]) -> (FetchPlan, FetchTrouble) {
    let mut trouble = FetchTrouble::default();
    let view = s.selected.as_ref().expect("selected").clone();
    let store = s.ctx.store.clone();
    let needs_seen = !view.read_only && attrs.iter().any(FetchAttribute::sets_seen);
    if needs_seen {
        let unseen: Vec<Uid> = store
            .with_mailbox(view.account, view.mailbox, |mb| {
                uids.iter().copied().filter(|u| mb.message(*u).is_some_and(|m| m.flags & flag::SEEN == 0)).collect()
            })
            .unwrap_or_default();
        if !unseen.is_empty() {
            let _ = store.store_flags(view.account, view.mailbox, &unseen, FlagOp::Add, flag::SEEN, &[], None);
        }
        trouble.seen_set = unseen;
    }
    let show_flags = needs_seen && !attrs.contains(&FetchAttribute::Flags);
    // Read after \Seen was set above: these flags are the ones to show.
    let (msgs, keywords): (HashMap<Uid, MessageEntry>, Vec<String>) = store
        .with_mailbox(view.account, view.mailbox, |mb| {
            let msgs = uids.iter().filter_map(|u| mb.message(*u).map(|e| (*u, *e))).collect();
            (msgs, mb.keywords.clone())
        })
        .unwrap_or_default();
    (FetchPlan { view, store, show_flags, msgs, keywords }, trouble)
}

/// Renders the FETCH responses of `uids` (a chunk of the FETCH `plan` was made for).
fn fetch_some(
    s: &mut Session,
    plan: &FetchPlan,
    uids: &[Uid],
    attrs: &[FetchAttribute],
    trouble: &mut FetchTrouble,
    mut prefetched: Option<&mut Prefetched>,
) {
    let FetchPlan { view, store, show_flags, msgs, keywords } = plan;
    let show_flags = *show_flags;
    // Rendered straight into the session's output; a message that cannot be rendered whole
    // is cut back off it.
    let mut out = std::mem::take(&mut s.out);
    'messages: for &uid in uids {
        let Some(seq) = view.seq(uid) else { continue };
        let Some(m) = msgs.get(&uid) else {
            // Expunged meanwhile: RFC 9051 section 7.4.1 lets the FETCH answer NO for it.
            trouble.expunged = true;
            continue;
        };
        let mut raw: Option<Arc<[u8]>> = None;
        let mut meta: Option<MessageMeta> = None;
        let mark = out.len();
        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b' ');
            }
            first = false;
        };
        let mut items: Vec<FetchAttribute> = attrs.to_vec();
        if show_flags {
            items.push(FetchAttribute::Flags);
        }
        if s.condstore && !items.contains(&FetchAttribute::ModSeq) {
            items.push(FetchAttribute::ModSeq);
        }
        for a in &items {
            // Top-level HEADER.FIELDS of cached fields (what Thunderbird asks for on a first
            // sync) come from the metadata alone when it can answer them.
            let cached_fields = match a {
                FetchAttribute::BodySection { section, .. } if section.part.is_empty() => match &section.text {
                    Some(SectionText::HeaderFields(f)) => Some(names(f)),
                    _ => None,
                },
                _ => None,
            };
            if cached_fields.is_some() && meta.is_none() && raw.is_none() {
                let mm = match read_meta(store, view, uid) {
                    Ok(v) => v,
                    Err(why) => {
                        why.note(trouble);
                        out.truncate(mark);
                        continue 'messages;
                    }
                };
                meta = Some(mm);
            }
            let from_cache = match (&cached_fields, &meta) {
                (Some(f), Some(mm)) if raw.is_none() => render::header_fields_from_cache(mm, f, false),
                _ => None,
            };
            let need_raw = from_cache.is_none()
                && matches!(
                    a,
                    FetchAttribute::Rfc822
                        | FetchAttribute::Rfc822Text
                        | FetchAttribute::Rfc822Header
                        | FetchAttribute::BodySection { .. }
                        | FetchAttribute::Binary { .. }
                        | FetchAttribute::BinarySize { .. }
                );
            // The whole message (BODY[], RFC822) is the stored bytes: no metadata needed.
            let whole = match a {
                FetchAttribute::Rfc822 => true,
                FetchAttribute::BodySection { section, .. } => section.part.is_empty() && section.text.is_none(),
                _ => false,
            };
            let need_meta = (need_raw && !whole)
                || matches!(a, FetchAttribute::Envelope | FetchAttribute::Body | FetchAttribute::BodyStructure);
            if need_raw && raw.is_none() {
                let ahead = prefetched.as_mut().and_then(|d| d.remove(&uid));
                let r = match ahead.unwrap_or_else(|| read_raw(store, view, uid)) {
                    Ok(v) => v,
                    Err(why) => {
                        why.note(trouble);
                        out.truncate(mark);
                        continue 'messages;
                    }
                };
                raw = Some(r);
            }
            if need_meta && meta.is_none() {
                let mm = match read_meta(store, view, uid) {
                    Ok(v) => v,
                    Err(why) => {
                        why.note(trouble);
                        out.truncate(mark);
                        continue 'messages;
                    }
                };
                meta = Some(mm);
            }
            sep(&mut out);
            let e = m;
            match a {
                FetchAttribute::Uid => out.extend(format!("UID {uid}").bytes()),
                FetchAttribute::Flags => {
                    out.extend(format!("FLAGS ({})", flag_list(e.flags, e.keywords, keywords)).bytes())
                }
                FetchAttribute::InternalDate => {
                    out.extend(format!("INTERNALDATE {}", internal_date(e.internal_date)).bytes())
                }
                FetchAttribute::Rfc822Size => out.extend(format!("RFC822.SIZE {}", e.size).bytes()),
                FetchAttribute::ModSeq => out.extend(format!("MODSEQ ({})", e.modseq).bytes()),
                FetchAttribute::SaveDate => out.extend(format!("SAVEDATE {}", internal_date(e.save_date)).bytes()),
                FetchAttribute::EmailId => out.extend(format!("EMAILID ({})", email_id(e.blob)).bytes()),
                FetchAttribute::ThreadId => out.extend(format!("THREADID ({})", thread_id(e.thread)).bytes()),
                FetchAttribute::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    match &meta {
                        Some(mm) => out.extend(render::envelope(&mm.envelope, s.utf8)),
                        None => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
                    }
                }
                FetchAttribute::Body | FetchAttribute::BodyStructure => {
                    let ext = matches!(a, FetchAttribute::BodyStructure);
                    out.extend_from_slice(if ext { b"BODYSTRUCTURE " } else { b"BODY " });
                    if let Some(mm) = &meta {
                        out.extend(render::bodystructure(&mm.body, ext, s.utf8));
                    }
                }
                FetchAttribute::Rfc822 | FetchAttribute::Rfc822Header | FetchAttribute::Rfc822Text => {
                    let (name, text) = match a {
                        FetchAttribute::Rfc822 => ("RFC822", render::SectionText::Full),
                        FetchAttribute::Rfc822Header => ("RFC822.HEADER", render::SectionText::Header),
                        _ => ("RFC822.TEXT", render::SectionText::Text),
                    };
                    out.extend(format!("{name} ").bytes());
                    match (&raw, &meta) {
                        (Some(r), _) if whole => encode_nstring(&mut out, Some(r), false),
                        (Some(r), Some(mm)) => {
                            let section = render::section(r, mm, &render::SectionSpec { part: vec![], text });
                            encode_nstring(&mut out, Some(&section), false)
                        }
                        _ => encode_nstring(&mut out, Some(b""), false),
                    }
                }
                FetchAttribute::BodySection { section, partial, .. } => {
                    let spec = render::SectionSpec {
                        part: section.part.iter().map(|n| n.get()).collect(),
                        text: match &section.text {
                            None => render::SectionText::Full,
                            Some(SectionText::Header) => render::SectionText::Header,
                            Some(SectionText::Text) => render::SectionText::Text,
                            Some(SectionText::Mime) => render::SectionText::Mime,
                            Some(SectionText::HeaderFields(f)) => render::SectionText::HeaderFields(names(f)),
                            Some(SectionText::HeaderFieldsNot(f)) => render::SectionText::HeaderFieldsNot(names(f)),
                        },
                    };
                    let partial = partial.map(|p| render::Partial { offset: p.offset, len: Some(p.length.get()) });
                    out.extend(render::section_item_name(&spec, partial));
                    out.push(b' ');
                    match (&from_cache, &raw, &meta) {
                        (Some(cached), _, _) => {
                            encode_nstring(&mut out, Some(render::apply_partial(cached, partial)), false)
                        }
                        (None, Some(r), _) if whole => {
                            encode_nstring(&mut out, Some(render::apply_partial(r, partial)), false)
                        }
                        (None, Some(r), Some(mm)) => {
                            let section = render::section(r, mm, &spec);
                            encode_nstring(&mut out, Some(render::apply_partial(&section, partial)), false)
                        }
                        _ => encode_nstring(&mut out, Some(b""), false),
                    }
                }
                FetchAttribute::Binary { part, partial, .. } => {
                    let p: Vec<u32> = part.iter().map(|n: &NonZeroU32| n.get()).collect();
                    let partial = partial.map(|x| render::Partial { offset: x.offset, len: Some(x.length.get()) });
                    out.extend(render::binary_item_name(&p, partial));
                    out.push(b' ');
                    match (&raw, &meta) {
                        (Some(r), Some(mm)) => match render::binary(r, mm, &p, partial) {
                            Ok(b) => postlog_protocol::imap::encode::encode_binary(&mut out, Some(&b)),
                            Err(_) => {
                                trouble.unknown_cte = true;
                                out.truncate(mark);
                                continue 'messages;
                            }
                        },
                        _ => out.extend_from_slice(b"NIL"),
                    }
                }
                FetchAttribute::BinarySize { part } => {
                    let p: Vec<u32> = part.iter().map(|n| n.get()).collect();
                    out.extend(render::binary_size_item_name(&p));
                    let size = match (&raw, &meta) {
                        (Some(r), Some(mm)) => render::binary_size(r, mm, &p).unwrap_or(0),
                        _ => 0,
                    };
                    out.extend(format!(" {size}").bytes());
                }
            }
        }
        out.extend_from_slice(b")\r\n");
    }
    s.out = out;
}

/// Why a message of a FETCH could not be read.
enum Unread {
    /// Expunged (by another session) since the FETCH began: `[EXPUNGEISSUED]`.
    Gone,
    /// A read error, logged: `[SERVERBUG]`.
    Failed,
}

impl Unread {
    fn of(e: &postlog_engine::ReadError) -> Unread {
        use postlog_engine::ReadError::{NoSuchAccount, NoSuchMailbox, NoSuchMessage};
        if matches!(e, NoSuchMessage(_) | NoSuchMailbox | NoSuchAccount) { Unread::Gone } else { Unread::Failed }
    }

    fn note(self, trouble: &mut FetchTrouble) {
        match self {
            Unread::Gone => trouble.expunged = true,
            Unread::Failed => trouble.unreadable = true,
        }
    }
}

/// The message's bytes; a read error other than the message being gone is logged.
fn read_raw(store: &postlog_engine::Store, view: &View, uid: Uid) -> Result<Arc<[u8]>, Unread> {
    store.read_message_shared(view.account, view.mailbox, uid).map_err(|e| unread(view.account, view.mailbox, uid, e))
}

/// Why a message could not be read; a read error other than the message being gone is logged.
fn unread(account: AccountId, mailbox: MailboxId, uid: Uid, e: postlog_engine::ReadError) -> Unread {
    let why = Unread::of(&e);
    if matches!(why, Unread::Failed) {
        tracing::error!(account, mailbox, uid, error = %e, "cannot read a message");
    }
    why
}

/// The message's metadata; a read error other than the message being gone is logged.
fn read_meta(store: &postlog_engine::Store, view: &View, uid: Uid) -> Result<MessageMeta, Unread> {
    store.meta(view.account, view.mailbox, uid).map_err(|e| {
        let why = Unread::of(&e);
        if matches!(why, Unread::Failed) {
            tracing::error!(account = view.account, mailbox = view.mailbox, uid, error = %e, "cannot read a message's metadata");
        }
        why
    })
}

fn names(f: &[postlog_protocol::imap::AString]) -> Vec<String> {
    f.iter().map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()).collect()
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        return contains_ascii_ci(hay.as_bytes(), needle.as_bytes());
    }
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// Case-insensitive (ASCII) substring search without allocating.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let first = needle[0].to_ascii_lowercase();
    let upper = needle[0].to_ascii_uppercase();
    let last = hay.len().saturating_sub(needle.len());
    let mut i = 0;
    while i <= last && hay.len() >= needle.len() {
        let b = hay[i];
        if (b == first || b == upper) && hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether the stored bytes are already the decoded text: no encoded words in the header, no
/// part in base64 or quoted-printable, no charset but ASCII or UTF-8. Then text searches
/// compare with the bytes as they are and skip decoding.
fn is_plain(meta: &MessageMeta, raw: &[u8]) -> bool {
    fn part_plain(p: &postlog_engine::meta::BodyPart) -> bool {
        let enc_ok = p.encoding.as_deref().is_none_or(|e| {
            let e = e.trim();
            e.eq_ignore_ascii_case("7bit") || e.eq_ignore_ascii_case("8bit") || e.eq_ignore_ascii_case("binary")
        });
        let charset_ok = p.params.iter().filter(|(k, _)| k == "charset").all(|(_, v)| {
            v.eq_ignore_ascii_case("us-ascii") || v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        });
        let text = p.content_type == "text" || p.content_type == "multipart" || p.content_type == "message";
        let html = p.content_type == "text" && p.subtype == "html";
        enc_ok && charset_ok && text && !html && p.subparts().iter().all(part_plain)
    }
    let header = &raw[..(meta.header_len as usize).min(raw.len())];
    !header.windows(2).any(|w| w == b"=?") && part_plain(&meta.body)
}

fn astr(a: &postlog_protocol::imap::AString) -> String {
    String::from_utf8_lossy(a.as_bytes()).into_owned()
}

fn day(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// Evaluates a search key on one message.
fn eval(
    s: &Session,
    view: &View,
    seq: u32,
    e: &MessageEntry,
    key: &SearchKey,
    kws: &[String],
    lazy: &mut Lazy,
) -> bool {
    let has = |bit: u8| e.flags & bit != 0;
    let kw = |k: &postlog_protocol::imap::Atom| {
        kws.iter().position(|n| n.eq_ignore_ascii_case(k.as_str())).is_some_and(|i| e.keywords & (1 << i) != 0)
    };
    match key {
        SearchKey::All => true,
        SearchKey::Answered => has(flag::ANSWERED),
        SearchKey::Unanswered => !has(flag::ANSWERED),
        SearchKey::Deleted => has(flag::DELETED),
        SearchKey::Undeleted => !has(flag::DELETED),
        SearchKey::Draft => has(flag::DRAFT),
        SearchKey::Undraft => !has(flag::DRAFT),
        SearchKey::Flagged => has(flag::FLAGGED),
        SearchKey::Unflagged => !has(flag::FLAGGED),
        SearchKey::Seen => has(flag::SEEN),
        SearchKey::Unseen => !has(flag::SEEN),
        // No message is \Recent here (IMAP4rev2 dropped it): OLD is every message, NEW none.
        SearchKey::Old => true,
        SearchKey::Recent | SearchKey::New => false,
        SearchKey::Keyword(k) => kw(k),
        SearchKey::Unkeyword(k) => !kw(k),
        SearchKey::Larger(n) => e.size > *n,
        SearchKey::Smaller(n) => e.size < *n,
        SearchKey::Before(d) => day(e.internal_date) < d.days_since_epoch(),
        SearchKey::On(d) => day(e.internal_date) == d.days_since_epoch(),
        SearchKey::Since(d) => day(e.internal_date) >= d.days_since_epoch(),
        SearchKey::SavedBefore(d) => day(e.save_date) < d.days_since_epoch(),
        SearchKey::SavedOn(d) => day(e.save_date) == d.days_since_epoch(),
        SearchKey::SavedSince(d) => day(e.save_date) >= d.days_since_epoch(),
        SearchKey::SaveDateSupported => true,
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            let Some(sent) = lazy.meta(s, view, e.uid).and_then(|m| m.sent_date) else { return false };
            let (sd, dd) = (day(sent), d.days_since_epoch());
            match key {
                SearchKey::SentBefore(_) => sd < dd,
                SearchKey::SentOn(_) => sd == dd,
                _ => sd >= dd,
            }
        }
        SearchKey::Subject(x) => lazy.decoded(s, view, e.uid).is_some_and(|d| contains_ci(&d.subject, &astr(x))),
        SearchKey::From(x) => lazy.decoded(s, view, e.uid).is_some_and(|d| contains_ci(&d.from, &astr(x))),
        SearchKey::To(x) => lazy.decoded(s, view, e.uid).is_some_and(|d| contains_ci(&d.to, &astr(x))),
        SearchKey::Cc(x) => lazy.decoded(s, view, e.uid).is_some_and(|d| contains_ci(&d.cc, &astr(x))),
        SearchKey::Bcc(x) => lazy.decoded(s, view, e.uid).is_some_and(|d| contains_ci(&d.bcc, &astr(x))),
        SearchKey::Header(name, value) => {
            let (name, value) = (astr(name), astr(value));
            let header_len = lazy.header_len(s, view, e.uid);
            lazy.raw(s, view, e.uid).is_some_and(|r| {
                let header = &r[..header_len.min(r.len())];
                String::from_utf8_lossy(header).lines().any(|l| {
                    l.split_once(':')
                        .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(&name) && contains_ci(v, &value))
                })
            })
        }
        SearchKey::Body(x) | SearchKey::Text(x) => {
            let needle = astr(x);
            let body_only = matches!(key, SearchKey::Body(_));
            if lazy.plain(s, view, e.uid) {
                // The bytes are the text: search them as they are.
                let header_len = lazy.header_len(s, view, e.uid);
                let raw = lazy.raw(s, view, e.uid).expect("plain implies readable");
                let from = if body_only { header_len.min(raw.len()) } else { 0 };
                return match std::str::from_utf8(&raw[from..]) {
                    Ok(text) => contains_ci(text, &needle),
                    Err(_) => contains_ci(&String::from_utf8_lossy(&raw[from..]), &needle),
                };
            }
            lazy.decoded(s, view, e.uid)
                .is_some_and(|d| contains_ci(&d.body, &needle) || (!body_only && contains_ci(&d.header, &needle)))
        }
        SearchKey::Uid(SequenceSet::Saved) | SearchKey::SequenceSet(SequenceSet::Saved) => {
            s.saved.binary_search(&e.uid).is_ok()
        }
        SearchKey::Uid(set) => set.contains(e.uid, view.last_uid()),
        SearchKey::SequenceSet(set) => set.contains(seq, view.len()),
        SearchKey::And(keys) => keys.iter().all(|k| eval(s, view, seq, e, k, kws, lazy)),
        SearchKey::Or(a, b) => eval(s, view, seq, e, a, kws, lazy) || eval(s, view, seq, e, b, kws, lazy),
        SearchKey::Not(k) => !eval(s, view, seq, e, k, kws, lazy),
        SearchKey::ModSeq { modseq, .. } => e.modseq >= *modseq,
        SearchKey::Older(n) => now_unix() - e.internal_date >= i64::from(n.get()),
        SearchKey::Younger(n) => now_unix() - e.internal_date <= i64::from(n.get()),
        // An id that is not one of ours (or names nothing here) matches no message.
        SearchKey::EmailId(id) => object_number(id, 'M') == Some(e.blob),
        SearchKey::ThreadId(id) => object_number(id, 'T') == Some(u64::from(e.thread)),
    }
}

/// What text searches compare against: header values and body text decoded (RFC 2047
/// encoded words, MIME transfer encodings and charsets), as RFC 9051 section 6.4.4 asks.
#[derive(Default)]
struct Decoded {
    subject: String,
    from: String,
    to: String,
    cc: String,
    bcc: String,
    /// The header section, and the decoded values of the fields above.
    header: String,
    /// Every text part, decoded (HTML as text).
    body: String,
}

/// `header_len`: where the header section ends (the metadata's `header_len`).
fn decode_for_search(raw: &[u8], header_len: usize) -> Decoded {
    let Some(m) = mail_parser::MessageParser::default().parse(raw) else { return Decoded::default() };
    let addrs = |a: Option<&mail_parser::Address>| -> String {
        a.map(|a| {
            a.iter()
                .map(|x| format!("{} <{}>", x.name().unwrap_or(""), x.address().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut d = Decoded {
        subject: m.subject().unwrap_or("").to_string(),
        from: addrs(m.from()),
        to: addrs(m.to()),
        cc: addrs(m.cc()),
        bcc: addrs(m.bcc()),
        ..Decoded::default()
    };
    let header_end = header_len.min(raw.len());
    d.header = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        String::from_utf8_lossy(&raw[..header_end]),
        d.subject,
        d.from,
        d.to,
        d.cc,
        d.bcc
    );
    d.body = (0..m.text_body_count()).filter_map(|i| m.body_text(i)).collect::<Vec<_>>().join("\n");
    d
}

/// Message bytes, metadata and decoded text, read when a search key needs them.
#[derive(Default)]
struct Lazy {
    uid: Uid,
    raw: Option<Option<Vec<u8>>>,
    meta: Option<Option<MessageMeta>>,
    decoded: Option<Option<Decoded>>,
}

impl Lazy {
    fn reset(&mut self, uid: Uid) {
        if self.uid != uid {
            *self = Lazy { uid, ..Lazy::default() };
        }
    }

    fn raw(&mut self, s: &Session, view: &View, uid: Uid) -> Option<&Vec<u8>> {
        self.reset(uid);
        self.raw.get_or_insert_with(|| s.ctx.store.read_message(view.account, view.mailbox, uid).ok()).as_ref()
    }

    /// Whether the message needs no decoding for text searches (see [`is_plain`]).
    fn plain(&mut self, s: &Session, view: &View, uid: Uid) -> bool {
        self.meta(s, view, uid);
        self.raw(s, view, uid);
        matches!((&self.meta, &self.raw), (Some(Some(m)), Some(Some(r))) if is_plain(m, r))
    }

    fn decoded(&mut self, s: &Session, view: &View, uid: Uid) -> Option<&Decoded> {
        if self.uid != uid || self.decoded.is_none() {
            let header_len = self.header_len(s, view, uid);
            let d = self.raw(s, view, uid).map(|r| decode_for_search(r, header_len));
            self.decoded = Some(d);
        }
        self.decoded.as_ref().and_then(Option::as_ref)
    }

    /// Where the message's header section ends, from its stored metadata (0 if unreadable).
    fn header_len(&mut self, s: &Session, view: &View, uid: Uid) -> usize {
        self.meta(s, view, uid).map_or(0, |m| m.header_len as usize)
    }

    fn meta(&mut self, s: &Session, view: &View, uid: Uid) -> Option<&MessageMeta> {
        self.reset(uid);
        self.meta.get_or_insert_with(|| s.ctx.store.meta(view.account, view.mailbox, uid).ok()).as_ref()
    }
}

/// The messages of the selected mailbox that match `criteria`, in sequence order.
fn search_hits(s: &Session, criteria: &[SearchKey]) -> Vec<(u32, MessageEntry)> {
    let view = s.selected.as_ref().expect("selected");
    let (entries, kws) = s
        .ctx
        .store
        .with_mailbox(view.account, view.mailbox, |mb| {
            let e: Vec<MessageEntry> = view.uids().iter().filter_map(|u| mb.message(*u).copied()).collect();
            (e, mb.keywords.clone())
        })
        .unwrap_or_default();
    let key = SearchKey::And(criteria.to_vec());
    let run = |chunk: &[MessageEntry]| {
        let mut lazy = Lazy::default();
        let mut hits = Vec::new();
        for e in chunk {
            let Some(seq) = view.seq(e.uid) else { continue };
            if eval(s, view, seq, e, &key, &kws, &mut lazy) {
                hits.push((seq, *e));
            }
        }
        hits
    };
    // Big mailboxes are searched on every core (each message is read and maybe decoded).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if entries.len() < 2000 || threads < 2 {
        return run(&entries);
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries.chunks(chunk).map(|c| scope.spawn(move || run(c))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

fn sort_or_thread(s: &mut Session, tag: &Tag, uid: bool, criteria: &[SearchKey], how: SortOrThread) {
    let view = s.selected.as_ref().expect("selected").clone();
    let items: Vec<super::sort::Item> = search_hits(s, criteria)
        .into_iter()
        .map(|(seq, e)| super::sort::Item {
            id: if uid { e.uid } else { seq },
            seq,
            internal_date: e.internal_date,
            size: e.size,
            meta: s.ctx.store.meta(view.account, view.mailbox, e.uid).ok(),
        })
        .collect();
    let label = match how {
        SortOrThread::Sort(_) => "SORT",
        SortOrThread::Thread(_) => "THREAD",
    };
    match how {
        SortOrThread::Sort(criteria) => {
            let ids = super::sort::sort(items, &criteria);
            let list: String = ids.iter().map(|n| format!(" {n}")).collect();
            s.line(&format!("* SORT{list}"));
        }
        SortOrThread::Thread(algorithm) => {
            let threads = match algorithm {
                postlog_protocol::imap::ThreadAlgorithm::OrderedSubject => super::sort::ordered_subject(&items),
                postlog_protocol::imap::ThreadAlgorithm::References => super::sort::references(&items),
            };
            let text = super::sort::encode_threads(&threads);
            s.line(&format!("* THREAD{}{text}", if text.is_empty() { "" } else { " " }));
        }
    }
    s.updates(false);
    s.ok(tag, &format!("{}{label} completed", if uid { "UID " } else { "" }));
}

enum SortOrThread {
    Sort(Vec<postlog_protocol::imap::SortCriterion>),
    Thread(postlog_protocol::imap::ThreadAlgorithm),
}

fn search(s: &mut Session, tag: &Tag, uid: bool, returns: Option<Vec<SearchReturn>>, criteria: &[SearchKey]) {
    let view = s.selected.as_ref().expect("selected").clone();
    let found = search_hits(s, criteria);
    let hits: Vec<u32> = found.iter().map(|(seq, e)| if uid { e.uid } else { *seq }).collect();
    // What SAVE keeps: the hits' UIDs (each hit is a message of the view; no lookup in `hits`
    // per message, which made `SEARCH ALL` on 100,000 messages take half a second).
    let uids_hit: Vec<Uid> = found.iter().filter(|(_, e)| view.seq(e.uid).is_some()).map(|(_, e)| e.uid).collect();
    // IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 section 7.3.4).
    let returns = if returns.is_none() && s.rev2 { Some(vec![SearchReturn::All]) } else { returns };
    match returns {
        None => {
            let list: String = hits.iter().map(|n| format!(" {n}")).collect();
            s.line(&format!("* SEARCH{list}"));
        }
        Some(opts) => {
            let opts = if opts.is_empty() { vec![SearchReturn::All] } else { opts };
            if opts.contains(&SearchReturn::Save) {
                // RFC 5182 section 2.4: with MIN and/or MAX alone, only those are saved.
                let only_min_max = !opts.contains(&SearchReturn::All) && !opts.contains(&SearchReturn::Count);
                s.saved = if only_min_max && (opts.contains(&SearchReturn::Min) || opts.contains(&SearchReturn::Max)) {
                    let mut v = Vec::new();
                    if opts.contains(&SearchReturn::Min) {
                        v.extend(uids_hit.first());
                    }
                    if opts.contains(&SearchReturn::Max) {
                        v.extend(uids_hit.last());
                    }
                    v
                } else {
                    uids_hit.clone()
                };
                // Sorted (and without repeats), so `$` in a later SEARCH is a binary search.
                s.saved.sort_unstable();
                s.saved.dedup();
            }
            if opts.iter().any(|o| *o != SearchReturn::Save) {
                let mut l = format!("* ESEARCH (TAG \"{}\")", tag.as_str());
                if uid {
                    l.push_str(" UID");
                }
                for o in &opts {
                    match o {
                        SearchReturn::Min if !hits.is_empty() => l.push_str(&format!(" MIN {}", hits[0])),
                        SearchReturn::Max if !hits.is_empty() => l.push_str(&format!(" MAX {}", hits[hits.len() - 1])),
                        SearchReturn::Count => l.push_str(&format!(" COUNT {}", hits.len())),
                        SearchReturn::All if !hits.is_empty() => {
                            l.push_str(&format!(" ALL {}", set_string(&ranges(hits.iter().copied()))));
                        }
                        _ => {}
                    }
                }
                s.line(&l);
            }
        }
    }
    s.updates(false);
    s.ok(tag, if uid { "UID SEARCH completed" } else { "SEARCH completed" });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `uid_set` finds each range by binary search; it answers what filtering every UID of the
    /// view would, in order and without repeats, with gaps, `*`, overlapping and reversed
    /// ranges, and ranges past the end.
    #[test]
    fn uid_sets_resolve_like_a_filter_over_the_view() {
        use postlog_protocol::imap::{SeqNumber, Sequence};
        let dir = tempfile::tempdir().unwrap();
        let store = postlog_engine::Store::open(dir.path(), postlog_engine::Options::default()).unwrap();
        let account = store.create_account("a@example.test", &[("INBOX", 0)]).unwrap();
        let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
        let target = AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 0 };
        for i in 0..60 {
            store.append(format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes(), std::slice::from_ref(&target)).unwrap();
        }
        let gone: Vec<Uid> = (1..=60).filter(|u| u % 7 == 0 || (20..=30).contains(u)).collect();
        store.expunge(account, mailbox, Some(&gone)).unwrap();
        let view = View::open(&store, account, mailbox, false).unwrap();
        let n = |v: u32| SeqNumber::Value(NonZeroU32::new(v).unwrap());
        let sets = [
            vec![Sequence::Range(n(1), SeqNumber::Largest)],
            vec![Sequence::Range(n(15), n(35))],
            vec![Sequence::Range(n(40), n(10)), Sequence::Single(n(12)), Sequence::Range(n(11), n(13))],
            vec![Sequence::Single(n(21)), Sequence::Range(n(58), n(99))],
            vec![Sequence::Range(n(61), n(70))],
            vec![Sequence::Single(SeqNumber::Largest), Sequence::Single(n(1))],
        ];
        for ranges in sets {
            let set = SequenceSet::Ranges(ranges);
            let r = set.to_ranges(view.last_uid()).unwrap();
            let naive: Vec<Uid> =
                view.uids().iter().copied().filter(|u| r.iter().any(|&(lo, hi)| (lo..=hi).contains(u))).collect();
            assert_eq!(uid_set(&view, &set, &[]), naive, "{set}");
        }
        assert_eq!(uid_set(&view, &SequenceSet::Saved, &[59, 3, 4, 21, 1000]), [3, 4, 59]);
    }

    #[test]
    fn object_ids_round_trip_and_other_spellings_match_nothing() {
        let id = |s: &str| ObjectId::new(s).expect("valid objectid");
        assert_eq!(object_number(&id(&thread_id(0x1a)), 'T'), Some(0x1a));
        assert_eq!(object_number(&id(&email_id(u64::MAX)), 'M'), Some(u64::MAX));
        for other in ["T01a", "T1A", "t1a", "T", "M1a", "T10000000000000000", "Tz", "T-1"] {
            assert_eq!(object_number(&id(other), 'T'), None, "{other}");
        }
    }
}
