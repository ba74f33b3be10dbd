//! The POP3 front end (`pop3`, `pop3s`): the protocol crate's [`Session`] over a
//! [`Connection`], answered from the authentication service and the store.
//!
//! ```text
//!  Connection ─ bytes ─► Session ─ Event::Login/Auth ─► auth (blocking pool) ─► login delay,
//!                                                        maildrop lock ─► snapshot of INBOX
//!                        Session ─ Event::Retrieve ───► Store::read_message ─► answer_retrieve
//!                        Session ─ Event::Quit ───────► Store::expunge (one commit) ─► answer_quit
//! ```
//!
//! # The maildrop
//!
//! - **A snapshot at login.** The INBOX's messages at the moment of login, in UID order, are
//!   the maildrop: numbers, sizes and unique ids do not change during the session. Mail
//!   delivered later waits for the next session. A message expunged by another session (IMAP,
//!   or a second POP3 session when `pop3.lock_session` is off) after the snapshot is still
//!   listed; `RETR`/`TOP` of it answers `-ERR` and the session goes on (as Dovecot does).
//! - **Unique ids** are Dovecot's default format (`pop3_uidl_format = %08Xu%08Xv`): the UID
//!   then the INBOX's UIDVALIDITY, each as 8 upper-case hex digits (`0000002A65F1C0DE`).
//!   UIDs are never reused and survive compaction, so a UIDL names the same message in every
//!   session for as long as it exists; a deleted and re-created INBOX has a new UIDVALIDITY,
//!   hence new ids, as it must.
//! - **Sizes** are of the message as sent: line breaks as CRLF ([`crlf_size`]). Messages
//!   received over SMTP are stored with CRLF already; imported ones may have bare LFs and are
//!   one octet longer per such line. The size needs the bytes once per stored message body:
//!   it is kept in memory by blob id (bodies never change) so later logins do not read again.
//! - **Deletion** happens only at `QUIT` after login (the UPDATE state): the messages marked
//!   with `DELE` are expunged through the store in one commit, so IMAP sessions see them go
//!   (`EXPUNGE`/`VANISHED`). The messages `RETR` sent whole and not deleted get `\Seen` then
//!   too (Dovecot's default; `TOP` does not count). A session that ends in any other way
//!   changes nothing.
//! - **Locking.** With `pop3.lock_session` (the default) one POP3 session per account holds
//!   the maildrop; a second gets `-ERR [IN-USE]`. IMAP sessions are never locked out and
//!   never lock POP3 out (Dovecot's behaviour); what they do meanwhile is handled above.
//!
//! Plain-text logins follow the same policy as IMAP `LOGIN` (`auth.plaintext_on_loopback`):
//! `USER` is refused with `-ERR [AUTH]` on a connection that is not secured, and is not
//! advertised there. Every failure goes through the shared brute-force limiter and
//! `postlog_auth_failures_total`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postlog_engine::state::BlobId;
use postlog_engine::{AccountId, FlagOp, MailboxId, ReadError, Uid, flag};
use postlog_protocol::pop3::{
    Event, Maildrop, MaildropMessage, Reply, ResponseCode, Session, SessionConfig, crlf_size,
};
use tokio::io::AsyncWriteExt;

use crate::auth::{AuthFailure, AuthOutcome, AuthStep, Authenticated, Exchange, Peer};
use crate::config::ListenerKey;
use crate::frame::{Connection, Counter, FrontEnd, Input, ServerContext, SessionFuture, with_idle_timeout};

/// Output queued beyond this is written before the next command is read (pipelined RETRs).
const WRITE_EARLY_BYTES: usize = 256 * 1024;
/// Messages up to this size are read on the session's worker; bigger ones off it.
const READ_INLINE_MAX: u64 = 256 * 1024;
/// Sizes remembered by blob id; past this the memory is dropped and sizes are read again.
const SIZE_CACHE_ENTRIES: usize = 1 << 20;

/// What the `pop3` and `pop3s` listeners share: the maildrop locks, the login times (for
/// `LOGIN-DELAY`) and the size cache.
struct Shared {
    lock_session: bool,
    login_delay: Duration,
    locked: Mutex<HashSet<AccountId>>,
    last_login: Mutex<HashMap<AccountId, Instant>>,
    sizes: Mutex<HashMap<BlobId, u64>>,
}

/// The POP3 front end of one listener.
pub struct Pop3FrontEnd {
    shared: Arc<Shared>,
    key: ListenerKey,
    logins: Counter,
    retrieved: Counter,
    deleted: Counter,
    in_use: Counter,
    login_delay: Counter,
}

impl Pop3FrontEnd {
    /// One front end per listener (`pop3`, `pop3s`), sharing locks and caches.
    pub fn pair(ctx: &ServerContext) -> [(ListenerKey, Pop3FrontEnd); 2] {
        let shared = Arc::new(Shared {
            lock_session: ctx.config.pop3.lock_session,
            login_delay: ctx.config.pop3.login_delay,
            locked: Mutex::new(HashSet::new()),
            last_login: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        });
        [ListenerKey::Pop3, ListenerKey::Pop3s].map(|key| {
            let m = &ctx.metrics;
            let l = [("listener", key.as_str())];
            let refused = |code| {
                m.counter(
                    "postlog_pop3_refused_total",
                    "POP3 logins with the right credentials refused, per listener and response code.",
                    &[("listener", key.as_str()), ("code", code)],
                )
            };
            let fe = Pop3FrontEnd {
                shared: shared.clone(),
                key,
                logins: m.counter("postlog_pop3_logins_total", "Successful POP3 logins, per listener.", &l),
                retrieved: m.counter("postlog_pop3_retrieved_total", "Messages sent by POP3 RETR, per listener.", &l),
                deleted: m.counter("postlog_pop3_deleted_total", "Messages expunged at POP3 QUIT, per listener.", &l),
                in_use: refused("IN-USE"),
                login_delay: refused("LOGIN-DELAY"),
            };
            (key, fe)
        })
    }
}

impl FrontEnd for Pop3FrontEnd {
    fn serve(&self, ctx: Arc<ServerContext>, conn: Connection) -> SessionFuture {
        let fe = Pop3FrontEnd {
            shared: self.shared.clone(),
            key: self.key,
            logins: self.logins.clone(),
            retrieved: self.retrieved.clone(),
            deleted: self.deleted.clone(),
            in_use: self.in_use.clone(),
            login_delay: self.login_delay.clone(),
        };
        Box::pin(run(ctx, fe, conn))
    }
}

/// The maildrop lock of one session; released when dropped (however the session ends).
struct MaildropLock {
    shared: Arc<Shared>,
    account: AccountId,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.shared.locked.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.account);
    }
}

/// The logged-in side of a session.
struct Opened {
    address: String,
    account: AccountId,
    mailbox: MailboxId,
    _lock: Option<MaildropLock>,
}

fn peer(conn: &Connection) -> Peer {
    Peer { ip: conn.peer_ip(), tls: conn.is_tls() }
}

fn mechanisms(ctx: &ServerContext, peer: &Peer) -> Vec<String> {
    ctx.services.auth.mechanisms(peer).iter().map(|m| m.name().to_string()).collect()
}

fn session_config(ctx: &ServerContext, fe: &Pop3FrontEnd, conn: &Connection) -> SessionConfig {
    let p = peer(conn);
    SessionConfig {
        tls: conn.is_tls(),
        stls: !conn.is_tls(),
        plaintext: ctx.services.auth.is_secured(&p),
        mechanisms: mechanisms(ctx, &p),
        login_delay: (!fe.shared.login_delay.is_zero()).then(|| fe.shared.login_delay.as_secs() as u32),
        ..SessionConfig::new(ctx.hostname())
    }
}

async fn write_out(conn: &mut Connection, session: &mut Session) -> std::io::Result<()> {
    let out = session.take_output();
    if out.is_empty() {
        return Ok(());
    }
    let limit = conn.idle_timeout();
    with_idle_timeout(limit, async {
        conn.write_all(&out).await?;
        conn.flush().await
    })
    .await
}

async fn run(ctx: Arc<ServerContext>, fe: Pop3FrontEnd, mut conn: Connection) {
    let mut session = Session::new(session_config(&ctx, &fe, &conn));
    let mut opened: Option<Opened> = None;
    let mut exchange: Option<Exchange> = None;
    let mut mechanism = String::new();
    let mut retrieved = 0u64;
    let mut shutdown = conn.shutdown_signal();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match session.poll() {
            Event::NeedInput => {
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
                let _ = write_out(&mut conn, &mut session).await;
                break;
            }
            Event::Login { user, password } => {
                mechanism = "USER".into();
                let auth = ctx.services.auth.clone();
                let p = peer(&conn);
                let outcome = tokio::task::spawn_blocking(move || auth.login(&user, password.expose_secret(), p)).await;
                let outcome = outcome.unwrap_or_else(|_| unavailable());
                let result = finish_login(&ctx, &fe, &conn, &mechanism, outcome, &mut opened).await;
                session.answer_login(result);
            }
            Event::Auth { mechanism: name, initial_response } => {
                // A metrics label: known names only, never the client's free text.
                mechanism = postlog_protocol::sasl::Mechanism::from_name(&name)
                    .map_or_else(|_| "unsupported".to_string(), |m| m.name().to_string());
                let auth = ctx.services.auth.clone();
                let p = peer(&conn);
                let started = tokio::task::spawn_blocking(move || match auth.begin(&name, p) {
                    Ok(mut ex) => {
                        let step = ex.start(initial_response.as_deref());
                        (Some(ex), step)
                    }
                    Err(outcome) => (None, AuthStep::Done(outcome)),
                })
                .await;
                let (ex, step) = started.unwrap_or_else(|_| (None, AuthStep::Done(unavailable())));
                exchange = ex;
                auth_step(&ctx, &fe, &conn, &mut session, &mechanism, step, &mut opened).await;
            }
            Event::AuthResponse(response) => {
                let step = match exchange.take() {
                    Some(mut ex) => {
                        let stepped = tokio::task::spawn_blocking(move || {
                            let step = ex.step(&response);
                            (ex, step)
                        })
                        .await;
                        match stepped {
                            Ok((ex, step)) => {
                                exchange = Some(ex);
                                step
                            }
                            Err(_) => AuthStep::Done(unavailable()),
                        }
                    }
                    None => AuthStep::Done(unavailable()),
                };
                auth_step(&ctx, &fe, &conn, &mut session, &mechanism, step, &mut opened).await;
            }
            Event::StartTls => {
                if write_out(&mut conn, &mut session).await.is_err() {
                    break;
                }
                if session.discarded_at_stls() > 0 {
                    tracing::warn!(session = conn.session_id(), listener = %fe.key, peer = %conn.peer(), octets = session.discarded_at_stls(), "discarded input pipelined after STLS");
                }
                conn = match conn.start_tls().await {
                    Ok(c) => c,
                    // Logged and counted by the frame; the connection is gone.
                    Err(_) => return,
                };
                let p = peer(&conn);
                session.tls_started(mechanisms(&ctx, &p), ctx.services.auth.is_secured(&p));
            }
            Event::Retrieve { key, number, top } => {
                let o = opened.as_ref().expect("logged in");
                let uid = key as Uid;
                let read = || ctx.store.read_message(o.account, o.mailbox, uid);
                let big = ctx
                    .store
                    .with_mailbox(o.account, o.mailbox, |mb| mb.message(uid).map(|m| m.size))
                    .ok()
                    .flatten()
                    .is_some_and(|size| size > READ_INLINE_MAX);
                let bytes = if big { tokio::task::block_in_place(read) } else { read() };
                match bytes {
                    Ok(raw) => {
                        if top.is_none() {
                            retrieved += 1;
                            fe.retrieved.inc();
                        }
                        session.answer_retrieve(Ok(&raw));
                    }
                    Err(ReadError::NoSuchMessage(_)) => {
                        session.answer_retrieve(Err(Reply::err(format!(
                            "message {number} was expunged by another session since login"
                        ))));
                    }
                    Err(e) => {
                        tracing::error!(session = conn.session_id(), account = o.account, mailbox = o.mailbox, uid, error = %e, "cannot read a message");
                        session.answer_retrieve(Err(Reply::err_with(
                            ResponseCode::SysTemp,
                            format!("message {number} cannot be read now"),
                        )));
                    }
                }
            }
            Event::Quit { delete, seen } => {
                let o = opened.as_ref().expect("logged in");
                let uids: Vec<Uid> = delete.iter().map(|&k| k as Uid).collect();
                let read: Vec<Uid> = seen.iter().map(|&k| k as Uid).collect();
                let (store, account, mailbox) = (ctx.store.clone(), o.account, o.mailbox);
                let to_expunge = uids.clone();
                let result = tokio::task::spawn_blocking(move || update(&store, account, mailbox, &to_expunge, &read))
                    .await
                    .unwrap_or_else(|e| Err(postlog_engine::CommitError::Io(e.to_string())));
                match result {
                    Ok((gone, _)) => {
                        fe.deleted.add(gone.len() as u64);
                        tracing::info!(session = conn.session_id(), listener = %fe.key, user = %o.address, retrieved, marked = uids.len(), expunged = gone.len(), "pop3 quit");
                        session.answer_quit(Ok(()));
                    }
                    Err(e) => {
                        tracing::error!(session = conn.session_id(), listener = %fe.key, user = %o.address, error = %e, "pop3 quit: the deletions failed");
                        session.answer_quit(Err(Reply::err_with(
                            ResponseCode::SysTemp,
                            "Some deleted messages not removed; try again later",
                        )));
                    }
                }
            }
        }
        if session.output_len() > WRITE_EARLY_BYTES && write_out(&mut conn, &mut session).await.is_err() {
            break;
        }
    }
    // The maildrop lock goes with `opened`; nothing was deleted unless QUIT said so.
    drop(opened);
    conn.close().await;
}

/// The UPDATE state: the messages sent whole get `\Seen` (as Dovecot does, unless already
/// set), then the marked ones are expunged, each in one commit.
fn update(
    store: &postlog_engine::Store,
    account: AccountId,
    mailbox: MailboxId,
    delete: &[Uid],
    read: &[Uid],
) -> Result<(Vec<Uid>, u64), postlog_engine::CommitError> {
    let unseen: Vec<Uid> = store
        .with_mailbox(account, mailbox, |mb| {
            read.iter().copied().filter(|&u| mb.message(u).is_some_and(|m| m.flags & flag::SEEN == 0)).collect()
        })
        .unwrap_or_default();
    if !unseen.is_empty() {
        store.store_flags(account, mailbox, &unseen, FlagOp::Add, flag::SEEN, &[], None)?;
    }
    if delete.is_empty() {
        return Ok((Vec::new(), 0));
    }
    store.expunge(account, mailbox, Some(delete))
}

fn unavailable() -> AuthOutcome {
    AuthOutcome { result: Err(AuthFailure::Unavailable), delay: Duration::ZERO }
}

async fn auth_step(
    ctx: &Arc<ServerContext>,
    fe: &Pop3FrontEnd,
    conn: &Connection,
    session: &mut Session,
    mechanism: &str,
    step: AuthStep,
    opened: &mut Option<Opened>,
) {
    match step {
        AuthStep::Challenge(c) => session.auth_challenge(&c),
        AuthStep::Done(outcome) => {
            let result = finish_login(ctx, fe, conn, mechanism, outcome, opened).await;
            session.auth_done(result);
        }
    }
}

/// After the credentials were checked: the failure reply (after the limiter's delay), or the
/// login delay, the lock and the snapshot of the INBOX.
async fn finish_login(
    ctx: &Arc<ServerContext>,
    fe: &Pop3FrontEnd,
    conn: &Connection,
    mechanism: &str,
    outcome: AuthOutcome,
    opened: &mut Option<Opened>,
) -> Result<Maildrop, Reply> {
    let who = match outcome.result {
        Ok(who) => who,
        Err(f) => {
            ctx.metrics.auth_failure(mechanism);
            tracing::info!(session = conn.session_id(), listener = %fe.key, mechanism, reason = %f, "authentication failed");
            if !outcome.delay.is_zero() {
                tokio::time::sleep(outcome.delay).await;
            }
            return Err(failure_reply(&f));
        }
    };
    let Authenticated { address, account, .. } = who;
    if let Some(wait) = login_too_soon(&fe.shared, account) {
        fe.login_delay.inc();
        tracing::info!(session = conn.session_id(), listener = %fe.key, user = %address, wait_s = wait.as_secs(), "pop3 login refused: login delay");
        return Err(Reply::err_with(
            ResponseCode::LoginDelay,
            format!("Logged in too recently; wait {} more seconds", wait.as_secs().max(1)),
        ));
    }
    let lock = if fe.shared.lock_session {
        let mut locked = fe.shared.locked.lock().unwrap_or_else(|e| e.into_inner());
        if !locked.insert(account) {
            drop(locked);
            fe.in_use.inc();
            tracing::info!(session = conn.session_id(), listener = %fe.key, user = %address, "pop3 login refused: maildrop in use");
            return Err(Reply::err_with(ResponseCode::InUse, "Mailbox is locked by another POP3 session"));
        }
        Some(MaildropLock { shared: fe.shared.clone(), account })
    } else {
        None
    };
    let (store, shared) = (ctx.store.clone(), fe.shared.clone());
    let snapshot = tokio::task::spawn_blocking(move || snapshot(&store, &shared, account)).await;
    let (mailbox, maildrop) = match snapshot {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::error!(session = conn.session_id(), listener = %fe.key, user = %address, error = %e, "cannot open the maildrop");
            return Err(Reply::err_with(ResponseCode::SysTemp, "Cannot open the maildrop now; try again later"));
        }
        Err(_) => return Err(Reply::err_with(ResponseCode::SysTemp, "Cannot open the maildrop now; try again later")),
    };
    if !fe.shared.login_delay.is_zero() {
        fe.shared.last_login.lock().unwrap_or_else(|e| e.into_inner()).insert(account, Instant::now());
    }
    fe.logins.inc();
    tracing::info!(session = conn.session_id(), listener = %fe.key, user = %address, mechanism, messages = maildrop.messages.len(), "authenticated");
    *opened = Some(Opened { address, account, mailbox, _lock: lock });
    Ok(maildrop)
}

/// How long the account must still wait, if its last POP3 login was too recent.
fn login_too_soon(shared: &Shared, account: AccountId) -> Option<Duration> {
    if shared.login_delay.is_zero() {
        return None;
    }
    let last = shared.last_login.lock().unwrap_or_else(|e| e.into_inner()).get(&account).copied()?;
    let since = last.elapsed();
    (since < shared.login_delay).then(|| shared.login_delay - since)
}

/// The reply to a failed login (the mapping `auth::AuthFailure` documents).
fn failure_reply(f: &AuthFailure) -> Reply {
    match f {
        AuthFailure::Rejected => Reply::err_with(ResponseCode::Auth, "Authentication failed"),
        AuthFailure::AuthorizationFailed => Reply::err_with(ResponseCode::Auth, "Not authorized to act as that user"),
        AuthFailure::EncryptionRequired => {
            Reply::err_with(ResponseCode::Auth, "Plain-text authentication needs TLS; send STLS first")
        }
        AuthFailure::TooManyFailures { .. } | AuthFailure::Unavailable => {
            Reply::err_with(ResponseCode::SysTemp, capitalized(&f.to_string()))
        }
        AuthFailure::UnsupportedMechanism(_) | AuthFailure::Protocol(_) => Reply::err(capitalized(&f.to_string())),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().collect::<String>() + c.as_str())
}

/// The INBOX as the maildrop: every message's UID, size as sent and unique id, in UID order.
/// Sizes not in the cache are computed from the stored bytes (once per stored body).
fn snapshot(
    store: &postlog_engine::Store,
    shared: &Shared,
    account: AccountId,
) -> Result<(MailboxId, Maildrop), ReadError> {
    let info = store.mailbox_by_name(account, "INBOX")?;
    let entries: Vec<(Uid, BlobId, u64)> =
        store.with_mailbox(account, info.id, |mb| mb.messages.iter().map(|m| (m.uid, m.blob, m.size)).collect())?;
    let known: Vec<Option<u64>> = {
        let sizes = shared.sizes.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|(_, blob, _)| sizes.get(blob).copied()).collect()
    };
    let mut learned = Vec::new();
    let mut messages = Vec::with_capacity(entries.len());
    for ((uid, blob, stored), known) in entries.into_iter().zip(known) {
        let size = match known {
            Some(s) => s,
            None => match store.read_message(account, info.id, uid) {
                Ok(raw) => {
                    let s = crlf_size(&raw);
                    learned.push((blob, s));
                    s
                }
                // Expunged meanwhile: listed with its stored size; RETR will say it is gone.
                Err(ReadError::NoSuchMessage(_)) => stored,
                Err(e) => return Err(e),
            },
        };
        messages.push(MaildropMessage { key: u64::from(uid), size, uidl: uidl(uid, info.uidvalidity) });
    }
    if !learned.is_empty() {
        let mut sizes = shared.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() + learned.len() > SIZE_CACHE_ENTRIES {
            sizes.clear();
        }
        sizes.extend(learned);
    }
    Ok((info.id, Maildrop { messages }))
}

/// Dovecot's default unique id, `%08Xu%08Xv`: UID, then UIDVALIDITY, in upper-case hex.
pub fn uidl(uid: Uid, uidvalidity: u32) -> String {
    format!("{uid:08X}{uidvalidity:08X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidl_is_dovecots_default_format() {
        assert_eq!(uidl(1, 0x65F1C0DE), "0000000165F1C0DE");
        assert_eq!(uidl(0xABCDEF12, 7), "ABCDEF1200000007");
    }

    fn shared() -> Shared {
        Shared {
            lock_session: true,
            login_delay: Duration::ZERO,
            locked: Mutex::new(HashSet::new()),
            last_login: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    /// Unique ids and sizes name the same messages after expunges, a compaction that moves
    /// every live body, and a restart of the store; bare-LF messages count CRLF sizes.
    #[test]
    fn maildrop_is_stable_across_compaction_and_restart() {
        use postlog_engine::{AppendTarget, Options, Store};
        let dir = tempfile::tempdir().unwrap();
        let options = Options { max_segment_bytes: 4096, ..Options::default() };
        let store = Store::open(dir.path(), options.clone()).unwrap();
        let account = store.create_account("alice@example.test", &[]).unwrap();
        let inbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
        let target = AppendTarget { account, mailbox: inbox, flags: 0, keywords: Vec::new(), internal_date: 0 };
        for i in 0..40 {
            let body = if i % 2 == 0 {
                format!("Subject: {i}\n\nlf body {i}\n.dot\n")
            } else {
                format!("Subject: {i}\r\n\r\ncrlf body {i}\r\n").repeat(50)
            };
            store.append(body.as_bytes(), std::slice::from_ref(&target)).unwrap();
        }
        let (_, first) = snapshot(&store, &shared(), account).unwrap();
        assert_eq!(first.messages.len(), 40);
        let lf = &first.messages[0];
        let stored = store.with_mailbox(account, inbox, |mb| mb.messages[0].size).unwrap();
        assert_eq!(lf.size, stored + 4, "four bare LFs count as CRLF");
        // Expunge most, compact everything, reopen.
        let gone: Vec<Uid> = (1..=30).collect();
        store.expunge(account, inbox, Some(&gone)).unwrap();
        let report = store.compact(0.0).unwrap();
        assert!(report.blobs_moved > 0, "{report:?}");
        let (_, after) = snapshot(&store, &shared(), account).unwrap();
        assert_eq!(after.messages, first.messages[30..]);
        store.close().unwrap();
        drop(store);
        let store = Store::open(dir.path(), options).unwrap();
        let (_, reopened) = snapshot(&store, &shared(), account).unwrap();
        assert_eq!(reopened.messages, first.messages[30..]);
    }

    #[test]
    fn failures_carry_the_rfc_3206_codes() {
        assert_eq!(failure_reply(&AuthFailure::Rejected).to_string(), "-ERR [AUTH] Authentication failed");
        let r = failure_reply(&AuthFailure::TooManyFailures { retry_after: Duration::from_secs(60) });
        assert_eq!(r.to_string(), "-ERR [SYS/TEMP] Too many failed logins; try again in 60 seconds");
        assert_eq!(failure_reply(&AuthFailure::EncryptionRequired).code, Some(ResponseCode::Auth));
        assert_eq!(failure_reply(&AuthFailure::UnsupportedMechanism("X".into())).code, None);
    }
}
