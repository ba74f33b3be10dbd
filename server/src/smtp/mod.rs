//! The SMTP, submission and LMTP front ends: the protocol crate's [`Session`] driven over a
//! [`Connection`], with the directory deciding senders and recipients, the authenticator
//! doing AUTH, the [`filter`] pipeline checking each message, and [`deliver`] storing it.
//!
//! ```text
//!  Connection ─bytes─► Session (protocol::smtp) ─Event─► driver (this module)
//!                                                        Mail/Rcpt ─► deliver::Policy (directory)
//!                                                        Auth ──────► auth::Authenticator (blocking pool)
//!                                                        StartTls ──► Connection::start_tls
//!                                                        Deliver ───► filter::Pipeline ─► trace fields
//!                                                                     ─► PreparedMessage + Store::append_prepared
//!                                                                        (blocking pool; returns once durable)
//!  replies ◄── take_output ◄──────────────────────────── answer_* (250 only after the commit)
//! ```

pub mod deliver;
pub mod filter;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postlog_engine::PreparedMessage;
use postlog_protocol::smtp::{Event, ForwardPath, Mode, Reply, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::deliver::{Policy, RecipientResult, Resolved};
use self::filter::{Inspection, Pipeline, Verdict};
use crate::auth::{AuthFailure, AuthOutcome, AuthStep, Exchange, Peer};
use crate::config::ListenerKey;
use crate::directory::LocalUser;
use crate::frame::{Connection, Counter, FrontEnd, Input, ServerContext, SessionFuture, with_idle_timeout};
use crate::util::now_unix;
use postlog_protocol::smtp::command::encode_xtext;

/// One SMTP-family listener: `smtp`, `submission`, `submissions` or `lmtp`.
pub struct SmtpFrontEnd {
    inner: Arc<Inner>,
}

struct Inner {
    key: ListenerKey,
    mode: Mode,
    pipeline: Pipeline,
    delivered: Counter,
    rejected: Counter,
    deferred: Counter,
    recipients: Counter,
}

/// Messages up to this size are prepared (hashed, parsed, compressed) on the session's own
/// worker thread; bigger ones on the blocking pool.
const INLINE_PREPARE_MAX: usize = 256 * 1024;

/// Unique enough message ids for logs and replies: start time, then a counter.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl SmtpFrontEnd {
    pub fn new(ctx: &ServerContext, key: ListenerKey) -> SmtpFrontEnd {
        let mode = match key {
            ListenerKey::Smtp => Mode::Smtp,
            ListenerKey::Submission | ListenerKey::Submissions => Mode::Submission,
            ListenerKey::Lmtp => Mode::Lmtp,
            other => panic!("{other} is not an SMTP listener"),
        };
        let m = &ctx.metrics;
        let count = |result| {
            m.counter(
                "postlog_smtp_messages_total",
                "Messages at the end of DATA/BDAT, per listener and result (delivered, rejected, deferred).",
                &[("listener", key.as_str()), ("result", result)],
            )
        };
        let inner = Inner {
            key,
            mode,
            pipeline: Pipeline::standard(&ctx.config.smtp),
            delivered: count("delivered"),
            rejected: count("rejected"),
            deferred: count("deferred"),
            recipients: m.counter(
                "postlog_smtp_recipients_delivered_total",
                "Recipients a message was stored for, per listener.",
                &[("listener", key.as_str())],
            ),
        };
        SmtpFrontEnd { inner: Arc::new(inner) }
    }
}

impl FrontEnd for SmtpFrontEnd {
    fn serve(&self, ctx: Arc<ServerContext>, conn: Connection) -> SessionFuture {
        let inner = self.inner.clone();
        Box::pin(async move { run(ctx, inner, conn).await })
    }
}

/// What the driver remembers beside the protocol session.
#[derive(Default)]
struct Driver {
    user: Option<LocalUser>,
    /// `SIZE=` of the current transaction.
    declared_size: u64,
    /// The local users behind each accepted recipient, in order.
    resolved: Vec<Resolved>,
    exchange: Option<Exchange>,
    /// The mechanism of the AUTH in progress, as the client named it (for logs and metrics).
    mechanism: String,
}

fn session_config(ctx: &ServerContext, mode: Mode, conn: &Connection) -> SessionConfig {
    let s = &ctx.config.smtp;
    let mut cfg = SessionConfig::new(ctx.hostname(), mode);
    cfg.max_message_size = s.max_message_size;
    cfg.max_recipients = s.max_recipients as usize;
    cfg.max_errors = s.max_errors;
    cfg.max_line = s.max_line_length as usize;
    cfg.newlines = s.bare_newlines;
    cfg.vrfy = s.vrfy;
    cfg.forbid_unauth_pipelining = s.forbid_unauth_pipelining && mode != Mode::Lmtp;
    cfg.tls = conn.is_tls();
    cfg.starttls = !conn.is_tls();
    cfg.mechanisms = mechanisms(ctx, mode, conn);
    cfg
}

fn peer_of(conn: &Connection) -> Peer {
    Peer { ip: conn.peer_ip(), tls: conn.is_tls() }
}

fn mechanisms(ctx: &ServerContext, mode: Mode, conn: &Connection) -> Vec<String> {
    if mode != Mode::Submission {
        return Vec::new();
    }
    ctx.services.auth.mechanisms(&peer_of(conn)).into_iter().map(|m| m.name().to_string()).collect()
}

async fn write_out(conn: &mut Connection, session: &mut Session) -> std::io::Result<()> {
    if !session.has_output() {
        return Ok(());
    }
    let out = session.take_output();
    let limit = conn.idle_timeout();
    with_idle_timeout(limit, async {
        conn.write_all(&out).await?;
        conn.flush().await
    })
    .await
}

async fn run(ctx: Arc<ServerContext>, fe: Arc<Inner>, mut conn: Connection) {
    let session_id = conn.session_id();
    if fe.key == ListenerKey::Smtp && !ctx.config.smtp.greet_pause.is_zero() && talks_first(&ctx, &mut conn).await {
        tracing::info!(session = session_id, listener = %fe.key, peer = %conn.peer(), "refused: client talked before the greeting");
        let _ = conn.write_all(b"554 5.5.0 Error: SMTP protocol synchronization\r\n").await;
        conn.close().await;
        return;
    }
    let mut session = Session::new(session_config(&ctx, fe.mode, &conn));
    let policy = Policy {
        directory: ctx.services.directory.clone(),
        mode: fe.mode,
        quota_reply: ctx.config.smtp.quota_reply,
        queue_available: ctx.services.queue.is_some(),
    };
    let mut d = Driver::default();
    // Big enough for a typical message in a few reads; not zeroed per connection more than once.
    let mut buf = vec![0u8; 16 * 1024];
    let mut shutdown = conn.shutdown_signal();
    loop {
        match session.poll() {
            Event::NeedInput => {
                account_refusals(&fe, &conn, &mut session);
                if write_out(&mut conn, &mut session).await.is_err() {
                    break;
                }
                match conn.next_input(&mut buf, &mut shutdown).await {
                    Input::Bytes(n) => session.input(&buf[..n]),
                    Input::Closed => break,
                    Input::TimedOut => session.timed_out(),
                    Input::Shutdown => session.shutdown(),
                }
            }
            Event::Close => {
                account_refusals(&fe, &conn, &mut session);
                let _ = write_out(&mut conn, &mut session).await;
                break;
            }
            Event::Mail { from, params } => {
                let verdict = policy.check_sender(from.as_ref(), d.user.as_ref());
                if verdict.is_ok() {
                    d.declared_size = params.size.unwrap_or(0);
                    d.resolved.clear();
                }
                session.answer_mail(verdict);
            }
            Event::Rcpt { to, params } => match policy.check_recipient(&to, d.user.is_some(), d.declared_size) {
                Ok(mut r) => {
                    r.notify = params.notify;
                    r.orcpt = params.orcpt;
                    d.resolved.push(r);
                    session.answer_rcpt(Ok(()));
                }
                Err(reply) => {
                    let shown = match &to {
                        ForwardPath::Mailbox(m) => m.to_string(),
                        ForwardPath::Postmaster => "Postmaster".into(),
                    };
                    tracing::info!(session = session_id, listener = %fe.key, rcpt = %shown, reply = %reply, "recipient refused");
                    session.answer_rcpt(Err(reply));
                }
            },
            Event::Vrfy(what) => session.answer_vrfy(policy.vrfy(&what)),
            Event::Auth { mechanism, initial_response } => {
                // A metrics label: known names only, never the client's free text.
                let mechanism_name = postlog_protocol::sasl::Mechanism::from_name(&mechanism)
                    .map_or_else(|_| "unsupported".to_string(), |m| m.name().to_string());
                let auth = ctx.services.auth.clone();
                let peer = peer_of(&conn);
                let started = tokio::task::spawn_blocking(move || match auth.begin(&mechanism, peer) {
                    Ok(mut exchange) => {
                        let step = exchange.start(initial_response.as_deref());
                        (Some(exchange), step)
                    }
                    Err(outcome) => (None, AuthStep::Done(outcome)),
                })
                .await;
                let (exchange, step) = match started {
                    Ok(x) => x,
                    Err(_) => (None, AuthStep::Done(unavailable())),
                };
                d.exchange = exchange;
                d.mechanism = mechanism_name;
                auth_step(&ctx, &fe, &conn, &mut session, &mut d, step).await;
            }
            Event::AuthResponse(response) => {
                let step = match d.exchange.take() {
                    Some(mut exchange) => {
                        let stepped = tokio::task::spawn_blocking(move || {
                            let step = exchange.step(&response);
                            (exchange, step)
                        })
                        .await;
                        match stepped {
                            Ok((exchange, step)) => {
                                d.exchange = Some(exchange);
                                step
                            }
                            Err(_) => AuthStep::Done(unavailable()),
                        }
                    }
                    None => AuthStep::Done(unavailable()),
                };
                auth_step(&ctx, &fe, &conn, &mut session, &mut d, step).await;
            }
            Event::StartTls => {
                if write_out(&mut conn, &mut session).await.is_err() {
                    break;
                }
                if session.discarded_at_starttls() > 0 {
                    tracing::warn!(session = session_id, listener = %fe.key, peer = %conn.peer(), octets = session.discarded_at_starttls(), "discarded input pipelined after STARTTLS");
                }
                d.user = None;
                conn = match conn.start_tls().await {
                    Ok(c) => c,
                    // Logged and counted by the frame; the connection is gone.
                    Err(_) => return,
                };
                let mechs = mechanisms(&ctx, fe.mode, &conn);
                session.tls_started(mechs);
            }
            Event::Deliver => {
                let replies = deliver_message(&ctx, &fe, &conn, &mut session, &mut d).await;
                session.answer_delivery(replies);
            }
        }
    }
    conn.close().await;
}

/// Logs and counts the messages the session refused by itself (too big, bare newlines).
fn account_refusals(fe: &Inner, conn: &Connection, session: &mut Session) {
    for reply in session.take_refusals() {
        if reply.is_permanent() { &fe.rejected } else { &fe.deferred }.inc();
        tracing::info!(session = conn.session_id(), listener = %fe.key, reply = %reply, "message refused");
    }
}

/// Waits `smtp.greet_pause`; true if the client sent something meanwhile (or closed).
async fn talks_first(ctx: &ServerContext, conn: &mut Connection) -> bool {
    let mut byte = [0u8; 1];
    let pause = ctx.config.smtp.greet_pause;
    !matches!(tokio::time::timeout(pause, conn.read(&mut byte)).await, Err(_elapsed))
}

fn unavailable() -> AuthOutcome {
    AuthOutcome { result: Err(AuthFailure::Unavailable), delay: Duration::ZERO }
}

async fn auth_step(
    ctx: &ServerContext,
    fe: &Inner,
    conn: &Connection,
    session: &mut Session,
    d: &mut Driver,
    step: AuthStep,
) {
    let outcome = match step {
        AuthStep::Challenge(challenge) => {
            session.auth_challenge(&challenge);
            return;
        }
        AuthStep::Done(outcome) => outcome,
    };
    d.exchange = None;
    let mechanism = d.mechanism.clone();
    match outcome.result {
        Ok(a) => {
            tracing::info!(session = conn.session_id(), listener = %fe.key, peer = %conn.peer(), user = %a.address, %mechanism, "authenticated");
            d.user = Some(LocalUser { address: a.address.clone(), account: a.account });
            session.auth_done(Ok(a.address));
        }
        Err(failure) => {
            ctx.metrics.auth_failure(&mechanism);
            tracing::info!(session = conn.session_id(), listener = %fe.key, peer = %conn.peer(), %mechanism, reason = %failure, "authentication failed");
            if !outcome.delay.is_zero() {
                tokio::time::sleep(outcome.delay).await;
            }
            session.auth_done(Err(auth_failure_reply(&failure)));
        }
    }
}

/// RFC 4954 replies for each failure.
pub fn auth_failure_reply(f: &AuthFailure) -> Reply {
    match f {
        AuthFailure::Rejected | AuthFailure::AuthorizationFailed => {
            Reply::new(535, "5.7.8", "Error: authentication failed")
        }
        AuthFailure::TooManyFailures { retry_after } => Reply::new(
            454,
            "4.7.0",
            format!("Too many failed logins; try again in {} seconds", retry_after.as_secs().max(1)),
        ),
        AuthFailure::EncryptionRequired => {
            Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism")
        }
        AuthFailure::UnsupportedMechanism(_) => Reply::new(504, "5.5.4", "Unsupported authentication mechanism"),
        AuthFailure::Protocol(e) => Reply::new(501, "5.5.2", format!("Error: {e}")),
        AuthFailure::Unavailable => Reply::new(454, "4.7.0", "Temporary authentication failure"),
    }
}

/// Hashing, parsing and compressing: on this worker for usual sizes (about 100 µs), on the
/// blocking pool for big messages. `None` if the blocking task failed.
async fn prepare(ctx: &ServerContext, message: Vec<u8>) -> Option<PreparedMessage> {
    if message.len() <= INLINE_PREPARE_MAX {
        Some(ctx.store.prepare(&message))
    } else {
        let store = ctx.store.clone();
        tokio::task::spawn_blocking(move || store.prepare(&message)).await.ok()
    }
}

fn notify_set(n: postlog_protocol::smtp::Notify) -> crate::queue::NotifySet {
    crate::queue::NotifySet { never: n.never, success: n.success, failure: n.failure, delay: n.delay }
}

fn new_message_id() -> String {
    // Microseconds at the first message of this process, then a counter.
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64));
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{start:X}{n:06X}")
}

/// Characters of a client-supplied name that may appear in a trace field.
fn clean(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(255)
        .map(|c| if c.is_ascii_alphanumeric() || ".-_:[]@".contains(c) { c } else { '?' })
        .collect();
    if cleaned.is_empty() { "unknown".into() } else { cleaned }
}

fn ip_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// `Return-Path`, `Delivered-To` (one local user only) and `Received` (RFC 5321 section 4.4).
fn trace_fields(
    ctx: &ServerContext,
    conn: &Connection,
    session: &Session,
    resolved: &[Resolved],
    id: &str,
    now: i64,
) -> String {
    let tx = session.transaction().expect("delivering a transaction");
    let mut out = String::with_capacity(512);
    let from = tx.from.as_ref().map_or_else(String::new, |m| m.to_string());
    out.push_str(&format!("Return-Path: <{from}>\r\n"));
    let mut users = resolved.iter().flat_map(|r| r.users.iter().map(|u| u.account));
    if let (Some(first), true) = (users.next(), resolved.len() == 1)
        && users.all(|a| a == first)
    {
        let user = &resolved[0].users[0];
        out.push_str(&format!("Delivered-To: {}\r\n", user.address));
    }
    out.push_str(&received_field(ctx, conn, session, resolved, id, now));
    out
}

/// The `Received:` field alone: what a message passed on to another server carries.
fn received_field(
    ctx: &ServerContext,
    conn: &Connection,
    session: &Session,
    resolved: &[Resolved],
    id: &str,
    now: i64,
) -> String {
    let mut out = String::with_capacity(256);
    let helo = clean(session.helo().unwrap_or("unknown"));
    out.push_str(&format!("Received: from {helo} (unknown {})\r\n", ip_literal(conn.peer_ip())));
    if let Some(tls) = conn.tls_info() {
        out.push_str(&format!("\t({})\r\n", tls.received_clause()));
    }
    out.push_str(&format!("\tby {} (Postlog) with {} id {id}", ctx.hostname(), session.protocol_name()));
    if resolved.len() == 1 {
        out.push_str(&format!("\r\n\tfor <{}>", resolved[0].address));
    }
    out.push_str(&format!("; {}\r\n", crate::util::rfc5322_date(now)));
    out
}

/// Runs the filters and stores the message; returns the replies (one, or one per recipient
/// for LMTP).
async fn deliver_message(
    ctx: &Arc<ServerContext>,
    fe: &Inner,
    conn: &Connection,
    session: &mut Session,
    d: &mut Driver,
) -> Vec<Reply> {
    let lmtp = fe.mode == Mode::Lmtp;
    let content = session.take_content();
    let tx = session.transaction().expect("Deliver has a transaction");
    let resolved = std::mem::take(&mut d.resolved);
    assert_eq!(resolved.len(), tx.recipients.len(), "one resolution per accepted recipient");
    let n_replies = if lmtp { resolved.len() } else { 1 };
    let sender = tx.from.as_ref().map_or_else(|| "<>".to_string(), |m| m.to_string());
    let inspection = Inspection {
        message: &content,
        header_len: filter::header_len(&content),
        sender: tx.from.as_ref(),
        recipients: resolved.iter().map(|r| r.address.clone()).collect(),
        client_ip: conn.peer_ip(),
        helo: session.helo().unwrap_or(""),
        tls: conn.is_tls(),
        authenticated: session.authenticated(),
    };
    let outcome = fe.pipeline.run(&inspection).await;
    drop(inspection);
    let log_refusal = |reply: &Reply, by: &str| {
        tracing::info!(session = conn.session_id(), listener = %fe.key, from = %sender, size = content.len(), filter = by, reply = %reply, "message refused");
    };
    match &outcome.verdict {
        Verdict::Accept => {}
        Verdict::Reject(r) | Verdict::Defer(r) => {
            log_refusal(r, outcome.decided_by.unwrap_or(""));
            if r.is_permanent() { &fe.rejected } else { &fe.deferred }.inc();
            return vec![r.clone(); n_replies];
        }
    }
    let id = new_message_id();
    let now = now_unix();
    let mut message = trace_fields(ctx, conn, session, &resolved, &id, now).into_bytes();
    for (name, value) in &outcome.add_headers {
        message.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    message.extend_from_slice(&content);
    let params = tx.params.clone();
    let sender_plain = tx.from.as_ref().map_or_else(String::new, |m| m.to_string());
    // The content is kept only when some of it goes to the queue.
    let content_for_queue = if resolved.iter().any(|r| !r.remote.is_empty()) { content } else { Vec::new() };

    // Who gets a copy, then the copies prepared (`prepare`), then the commit, awaited: the 250
    // waits for it.
    let plan = deliver::plan_delivery(
        &ctx.store,
        &ctx.services.directory,
        message.len() as u64,
        &resolved,
        outcome.file_into.as_ref(),
        lmtp,
        now,
    );
    // The local copy is prepared only when some local user gets it.
    let local = if plan.targets.is_empty() {
        Vec::new()
    } else {
        match prepare(ctx, message).await {
            Some(prepared) => vec![(Arc::new(prepared), plan.targets)],
            None => {
                let r = Reply::new(451, "4.3.0", "Error: internal error while storing, try again later");
                fe.deferred.inc();
                return vec![r; n_replies];
            }
        }
    };
    let results = plan.results;
    // Remote recipients (submission to other domains, forwarding aliases) of the recipients
    // accepted: queued in the same commit as the local copies.
    let remote: Vec<(String, Option<String>, Option<crate::queue::NotifySet>)> = resolved
        .iter()
        .zip(&results)
        .filter(|(_, res)| **res == RecipientResult::Delivered)
        .flat_map(|(r, _)| {
            r.remote.iter().map(|to| {
                // A forwarded copy names the address it was sent to (RFC 3461 section 4.2).
                let orcpt = r.orcpt.clone().or_else(|| {
                    (!to.eq_ignore_ascii_case(&r.address))
                        .then(|| format!("rfc822;{}", encode_xtext(r.address.as_bytes())))
                });
                (to.clone(), orcpt, r.notify.map(notify_set))
            })
        })
        .collect();
    let mut queued_as = None;
    let error = if remote.is_empty() {
        match local.is_empty() {
            true => None,
            false => ctx.store.append_many_async(local).await.err(),
        }
    } else {
        let handle = ctx.services.queue.as_ref().expect("remote recipients are accepted only with a queue");
        let mut outbound = received_field(ctx, conn, session, &resolved, &id, now).into_bytes();
        for (name, value) in &outcome.add_headers {
            outbound.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        outbound.extend_from_slice(&content_for_queue);
        // Signed once, as queued, with the key of the sender's domain (if it has one).
        if let Some(signature) = crate::dkim::sign(&ctx.store, &sender_plain, &outbound) {
            outbound.splice(0..0, signature.into_bytes());
        }
        let Some(outbound) = prepare(ctx, outbound).await else {
            let r = Reply::new(451, "4.3.0", "Error: internal error while queueing, try again later");
            fe.deferred.inc();
            return vec![r; n_replies];
        };
        let outbound = Arc::new(outbound);
        let new = crate::queue::NewMessage {
            from: sender_plain.clone(),
            envid: params.envid.clone(),
            ret_headers: params.ret == Some(postlog_protocol::smtp::Ret::Headers),
            body: match params.body {
                postlog_protocol::smtp::BodyType::SevenBit => "7bit",
                postlog_protocol::smtp::BodyType::EightBitMime => "8bitmime",
                postlog_protocol::smtp::BodyType::BinaryMime => "binarymime",
            }
            .into(),
            smtputf8: params.smtputf8,
            recipients: remote,
            message: outbound,
        };
        match handle.queue.enqueue(new, local, now).await {
            Ok(entry) => {
                queued_as = Some(entry.id.clone());
                handle.scheduler.send(crate::queue::scheduler::Command::Enqueued(entry));
                None
            }
            Err(e) => Some(e),
        }
    };
    let queued_as_shown = queued_as.is_some();
    let id = queued_as.unwrap_or(id);
    let policy_reply = |r: &Resolved, result: &RecipientResult| -> Reply {
        match (result, &error) {
            (RecipientResult::Delivered, None) => {
                let how = if queued_as_shown { "queued" } else { "delivered" };
                if lmtp {
                    Reply::new(250, "2.0.0", format!("<{}> Ok: {how} as {id}", r.address))
                } else {
                    Reply::new(250, "2.0.0", format!("Ok: {how} as {id}"))
                }
            }
            (RecipientResult::Delivered, Some(e)) => deliver::commit_error_reply(e),
            (RecipientResult::OverQuota, _) => deliver::quota_refusal(ctx.config.smtp.quota_reply, &r.address),
            (RecipientResult::Failed(reply), _) => reply.clone(),
        }
    };
    let replies: Vec<Reply> = if lmtp {
        resolved.iter().zip(&results).map(|(r, res)| policy_reply(r, res)).collect()
    } else {
        // One answer for all: delivered if any copy was stored, else the first failure.
        let first_ok = results.iter().position(|r| *r == RecipientResult::Delivered);
        let pick = first_ok.unwrap_or(0);
        vec![policy_reply(&resolved[pick], &results[pick])]
    };
    let delivered: Vec<&str> = resolved
        .iter()
        .zip(&results)
        .filter(|(_, res)| **res == RecipientResult::Delivered && error.is_none())
        .map(|(r, _)| r.address.as_str())
        .collect();
    if let Some(e) = &error {
        tracing::error!(session = conn.session_id(), listener = %fe.key, from = %sender, error = %e, "storing failed");
    }
    if !delivered.is_empty() {
        fe.delivered.inc();
        fe.recipients.add(delivered.len() as u64);
        tracing::info!(
            session = conn.session_id(),
            listener = %fe.key,
            id = %id,
            from = %sender,
            to = %delivered.join(","),
            folder = %deliver::folder_name(outcome.file_into.as_ref()),
            "delivered"
        );
    } else {
        let r = &replies[0];
        if r.is_permanent() { &fe.rejected } else { &fe.deferred }.inc();
    }
    replies
}
