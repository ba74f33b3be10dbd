//! [`Connection`]: what a front end gets for one admitted client connection.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::metrics::Counter;

/// What [`Connection::next_input`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// This many bytes were read into the buffer.
    Bytes(usize),
    /// The client closed the connection, or reading failed.
    Closed,
    /// Nothing came for the protocol's idle timeout.
    TimedOut,
    /// The server is shutting down: say goodbye.
    Shutdown,
}
use super::shutdown::ShutdownSignal;
use super::tls::TlsInfo;
use crate::config::ListenerKey;

/// The longest a TLS handshake (implicit or STARTTLS) may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// [`Connection::close`] waits at most this long for the peer to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// A plain TCP stream or a TLS stream over one, behind one `AsyncRead + AsyncWrite` type.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// For TLS: sends close_notify, then shuts the TCP write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the frame hands the TLS side of a connection: the acceptor for STARTTLS and the
/// counter of failed handshakes.
#[derive(Clone)]
pub(crate) struct TlsSide {
    pub acceptor: TlsAcceptor,
    pub failures: Counter,
}

/// One client connection, admitted by the limits, given to the listener's front end.
///
/// It reads and writes like a socket (`AsyncRead + AsyncWrite`; use `AsyncReadExt` /
/// `AsyncWriteExt`), plain or TLS alike. The frame has already logged the connect, holds the
/// connection-limit place, and logs the disconnect when the front end's future ends.
pub struct Connection {
    stream: Stream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: ListenerKey,
    session_id: u64,
    tls: Option<TlsInfo>,
    plaintext_on_loopback: bool,
    idle_timeout: Duration,
    tls_side: TlsSide,
    shutdown: ShutdownSignal,
}

/// Fixed facts of a connection the frame sets when it accepts one.
pub(crate) struct ConnectionFacts {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: ListenerKey,
    pub session_id: u64,
    pub plaintext_on_loopback: bool,
    pub idle_timeout: Duration,
    pub tls_side: TlsSide,
    pub shutdown: ShutdownSignal,
}

impl Connection {
    pub(crate) fn new(stream: Stream, facts: ConnectionFacts) -> Connection {
        let tls = match &stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => Some(TlsInfo::of(s.get_ref().1)),
        };
        Connection {
            stream,
            tls,
            peer: facts.peer,
            local: facts.local,
            listener: facts.listener,
            session_id: facts.session_id,
            plaintext_on_loopback: facts.plaintext_on_loopback,
            idle_timeout: facts.idle_timeout,
            tls_side: facts.tls_side,
            shutdown: facts.shutdown,
        }
    }

    /// The client's address (IPv4-mapped IPv6 shown as IPv4).
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.peer.ip().to_canonical(), self.peer.port())
    }

    pub fn peer_ip(&self) -> IpAddr {
        self.peer.ip().to_canonical()
    }

    /// Our address of this connection (the listener's, or the interface it came in on).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The `[listen]` key this connection came in on.
    pub fn listener(&self) -> ListenerKey {
        self.listener
    }

    /// A number unique within this server process, for log lines (`session=N`).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether plain-text credentials may be accepted: over TLS, or from a loopback address
    /// when `auth.plaintext_on_loopback` is on (as in Dovecot).
    pub fn is_secured(&self) -> bool {
        self.is_tls() || (self.plaintext_on_loopback && self.peer_ip().is_loopback())
    }

    /// Protocol version and cipher of the TLS session (for `Received:` headers and logs).
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The idle timeout of this listener's protocol (`[timeouts]`).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Fires when the server begins to shut down: answer the client with the protocol's
    /// goodbye (`421`, `* BYE`, `-ERR`) at the next command boundary and return.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// Reads like `AsyncReadExt::read`, failing with `ErrorKind::TimedOut` when the client
    /// sends nothing for [`idle_timeout`](Self::idle_timeout).
    pub async fn read_idle(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = self.idle_timeout;
        with_idle_timeout(limit, self.stream.read(buf)).await
    }

    /// The next thing a line-protocol session (SMTP, POP3) reacts to while it waits for input:
    /// bytes, the client closing or failing, the idle timeout, or the server shutting down.
    pub async fn next_input(&mut self, buf: &mut [u8], shutdown: &mut super::shutdown::ShutdownSignal) -> Input {
        tokio::select! {
            r = self.read_idle(buf) => match r {
                Ok(0) => Input::Closed,
                Ok(n) => Input::Bytes(n),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => Input::TimedOut,
                Err(_) => Input::Closed,
            },
            _ = shutdown.triggered() => Input::Shutdown,
        }
    }

    /// Upgrades a plain connection to TLS (STARTTLS, STLS), after the front end has sent its
    /// "go ahead" reply (`220`, `OK`, `+OK`) and flushed it.
    ///
    /// It discards nothing itself: the handshake reads from the socket, so the front end must
    /// hold no buffered input when it calls this. Bytes a client pipelined after the STARTTLS
    /// command arrived in plain text; they must be dropped by the front end (and the client
    /// answered with an error), never fed to the TLS session as commands (CVE-2011-0411).
    ///
    /// Fails with `InvalidInput` on a connection that is already TLS, `TimedOut` after
    /// [`TLS_HANDSHAKE_TIMEOUT`], or the handshake's error; the connection is gone then.
    /// Failures are counted in `postlog_tls_handshake_failures_total` and logged.
    pub async fn start_tls(self) -> io::Result<Connection> {
        let Connection {
            stream,
            peer,
            local,
            listener,
            session_id,
            tls: _,
            plaintext_on_loopback,
            idle_timeout,
            tls_side,
            shutdown,
        } = self;
        let tcp = match stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "the connection is already TLS")),
        };
        let facts = ConnectionFacts {
            peer,
            local,
            listener,
            session_id,
            plaintext_on_loopback,
            idle_timeout,
            tls_side: tls_side.clone(),
            shutdown,
        };
        match handshake(&tls_side.acceptor, tcp).await {
            Ok(tls) => {
                let conn = Connection::new(Stream::Tls(Box::new(tls)), facts);
                if let Some(info) = &conn.tls {
                    let (tls, cipher) = (info.version, &info.cipher);
                    tracing::info!(session = session_id, %listener, peer = %conn.peer(), tls = %tls, %cipher, "starttls");
                }
                Ok(conn)
            }
            Err(e) => {
                tls_side.failures.inc();
                tracing::warn!(session = session_id, %listener, peer = %peer, error = %e, "tls handshake failed");
                Err(e)
            }
        }
    }

    /// Ends the connection politely: flushes, sends TLS close_notify and FIN, then reads and
    /// drops what the client still sends until it closes (at most 2 s), so that unread input
    /// does not turn the close into a reset that could destroy the last reply in flight.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            let _ = self.stream.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut buf = [0u8; 2048];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// The underlying stream, e.g. to hand it to a library that takes ownership.
    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

pub(crate) async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out")),
    }
}

/// Runs `io` with an idle limit: `ErrorKind::TimedOut` if it does not complete in `limit`.
/// For front ends that read through their own buffering around a [`Connection`].
pub async fn with_idle_timeout<T>(limit: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(limit, io).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("idle for {} s", limit.as_secs()))),
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session_id", &self.session_id)
            .field("listener", &self.listener)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
