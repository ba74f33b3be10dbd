//! Binding the `[listen]` addresses and the accept loop: limits, implicit TLS, one task per
//! session, the session log lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use super::admission::{Permit, Refusal};
use super::connection::{Connection, ConnectionFacts, Stream, TlsSide, handshake};
use super::context::ServerContext;
use super::front_end::FrontEnd;
use super::metrics::ListenerMetrics;
use super::shutdown::{Sessions, ShutdownSignal};
use crate::config::{Listen, ListenerKey};

/// A listener bound at start.
#[derive(Debug)]
pub struct Bound {
    pub key: ListenerKey,
    pub addr: SocketAddr,
    listener: std::net::TcpListener,
}

/// A listener that could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub key: ListenerKey,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {} (key `listen.{}`): {}", self.addr, self.key, self.source)?;
        match self.source.kind() {
            std::io::ErrorKind::AddrInUse => {
                f.write_str("; another program (or another postlog) uses this port: stop it, or set another address")
            }
            std::io::ErrorKind::PermissionDenied if self.addr.port() < 1024 => {
                f.write_str("; ports below 1024 need root or CAP_NET_BIND_SERVICE")
            }
            std::io::ErrorKind::AddrNotAvailable => f.write_str("; this machine has no such address"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for BindError {}

/// Binds every configured listener, in documented order; the first failure stops it (the
/// sockets bound so far close when dropped).
pub fn bind_all(listen: &Listen) -> Result<Vec<Bound>, BindError> {
    listen
        .enabled()
        .map(|(key, addr)| {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| BindError { key, addr, source })?;
            Ok(Bound { key, addr, listener })
        })
        .collect()
}

/// Accepts on one listener until shutdown. Needs a tokio runtime.
pub async fn accept_loop(
    ctx: Arc<ServerContext>,
    bound: Bound,
    front_end: Arc<dyn FrontEnd>,
    sessions: Arc<Sessions>,
) -> std::io::Result<()> {
    let key = bound.key;
    let listener = TcpListener::from_std(bound.listener)?;
    let metrics = ListenerMetrics::new(&ctx.metrics, key);
    let mut shutdown = ctx.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.triggered() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: log, breathe, go on.
                tracing::warn!(listener = %key, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        metrics.accepted.inc();
        let _ = tcp.set_nodelay(true);
        let permit = match ctx.admission.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                refuse(&ctx, &*front_end, key, tcp, peer, why, &metrics);
                continue;
            }
        };
        let session = SessionStart {
            ctx: ctx.clone(),
            key,
            front_end: front_end.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        let guard = sessions.enter();
        tokio::spawn(async move {
            session.run(tcp, peer, permit).await;
            drop(guard);
        });
    }
    Ok(())
}

fn refuse(
    ctx: &ServerContext,
    front_end: &dyn FrontEnd,
    key: ListenerKey,
    tcp: TcpStream,
    peer: SocketAddr,
    why: Refusal,
    metrics: &ListenerMetrics,
) {
    let limits = ctx.admission.limits();
    let (counter, what, limit) = match why {
        Refusal::Total => (&metrics.refused_total, "too many connections", limits.max_connections),
        Refusal::PerIp => {
            (&metrics.refused_per_ip, "too many connections from this address", limits.max_connections_per_ip)
        }
    };
    counter.inc();
    tracing::warn!(listener = %key, peer = %canonical(peer), reason = %why.label(), limit, "refused: {what}");
    if !key.implicit_tls()
        && let Some(reply) = front_end.refusal(ctx, key, why)
    {
        // Never wait on an over-limit client: what the socket buffer takes now, or nothing.
        let _ = tcp.try_write(&reply);
    }
}

struct SessionStart {
    ctx: Arc<ServerContext>,
    key: ListenerKey,
    front_end: Arc<dyn FrontEnd>,
    metrics: ListenerMetrics,
    shutdown: ShutdownSignal,
}

impl SessionStart {
    async fn run(self, tcp: TcpStream, peer: SocketAddr, permit: Permit) {
        let _permit = permit;
        let _active = self.metrics.active.track();
        let started = Instant::now();
        let key = self.key;
        let session = self.ctx.next_session_id();
        let peer = canonical(peer);
        let local = tcp.local_addr().unwrap_or(peer);
        let tls_side = TlsSide { acceptor: self.ctx.tls.acceptor.clone(), failures: self.metrics.tls_failures.clone() };
        let stream = if key.implicit_tls() {
            match handshake(&tls_side.acceptor, tcp).await {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(e) => {
                    tls_side.failures.inc();
                    tracing::warn!(session, listener = %key, %peer, error = %e, "tls handshake failed");
                    return;
                }
            }
        } else {
            Stream::Plain(tcp)
        };
        let facts = ConnectionFacts {
            peer,
            local,
            listener: key,
            session_id: session,
            plaintext_on_loopback: self.ctx.config.auth.plaintext_on_loopback,
            idle_timeout: self.ctx.config.timeouts.idle(key.protocol()),
            tls_side,
            shutdown: self.shutdown,
        };
        let conn = Connection::new(stream, facts);
        match conn.tls_info() {
            Some(tls) => {
                tracing::info!(session, listener = %key, %peer, tls = %tls.version, cipher = %tls.cipher, "connect")
            }
            None => tracing::info!(session, listener = %key, %peer, tls = %"none", "connect"),
        }
        self.metrics.sessions.inc();
        self.front_end.serve(self.ctx.clone(), conn).await;
        tracing::info!(session, listener = %key, %peer, duration_ms = started.elapsed().as_millis() as u64, "disconnect");
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}
