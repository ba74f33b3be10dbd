//! The frame every protocol front end shares: listeners, TLS, connection limits, idle
//! timeouts, graceful shutdown, session logs and metrics.
//!
//! ```text
//!  [listen] ──bind_all──► accept_loop (one per listener)
//!                           │ limits (Admission) ── refused: protocol's "too many" reply, close
//!                           │ implicit TLS handshake (submissions, imaps, pop3s)
//!                           ▼
//!                     Connection ──► FrontEnds[key].serve(ctx, conn)   one task per session
//!                           │          SMTP/LMTP/IMAP/POP3: NotAvailable until they land
//!                           │          http: /metrics, /health (JMAP later)
//!  ServerContext (Arc): config, store, metrics, TLS, services (directory/auth/limiter: see
//!                       context::Services), shutdown signal
//! ```
//!
//! What a front end uses: [`FrontEnd`] (implement it, register it in [`FrontEnds`]),
//! [`Connection`] (read/write, `read_idle`, `start_tls`, `is_secured`, `tls_info`,
//! `shutdown_signal`, `close`), [`ServerContext`] (`store`, `config`, `metrics`, `services`).
//! Deliberately not here: protocol parsing (the `protocol` crate), accounts and
//! authentication (`directory`, `auth`, `limiter`).

pub mod admission;
pub mod connection;
pub mod context;
pub mod front_end;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod shutdown;
pub mod tls;

pub use admission::Refusal;
pub use connection::{Connection, Input, Stream, TLS_HANDSHAKE_TIMEOUT, with_idle_timeout};
pub use context::{ServerContext, Services};
pub use front_end::{FrontEnd, FrontEnds, NotAvailable, SessionFuture};
pub use metrics::{Counter, Gauge, Metrics};
pub use shutdown::ShutdownSignal;
pub use tls::TlsInfo;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::connection::{ConnectionFacts, TlsSide};
    use super::*;
    use crate::config::ListenerKey;

    struct Pki {
        acceptor: tokio_rustls::TlsAcceptor,
        connector: tokio_rustls::TlsConnector,
    }

    fn pki() -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        }
    }

    async fn pair(pki: &Pki, plaintext_on_loopback: bool) -> (Connection, TcpStream, Counter) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (tcp, peer) = l.accept().await.unwrap();
        let metrics = Metrics::new();
        let failures = metrics.counter("postlog_test_tls_failures_total", "", &[]);
        let (_trigger, shutdown) = shutdown::channel();
        let facts = ConnectionFacts {
            peer,
            local: tcp.local_addr().unwrap(),
            listener: ListenerKey::Imap,
            session_id: 7,
            plaintext_on_loopback,
            idle_timeout: Duration::from_millis(300),
            tls_side: TlsSide { acceptor: pki.acceptor.clone(), failures: failures.clone() },
            shutdown,
        };
        (Connection::new(Stream::Plain(tcp), facts), client, failures)
    }

    #[tokio::test]
    async fn start_tls_upgrades_and_keeps_the_facts() {
        let pki = pki();
        let (mut conn, mut client, failures) = pair(&pki, false).await;
        assert!(!conn.is_tls());
        assert!(!conn.is_secured(), "loopback does not count when plaintext_on_loopback is off");
        assert_eq!(conn.tls_info(), None);
        conn.write_all(b"a OK Begin TLS negotiation now\r\n").await.unwrap();
        let mut line = [0u8; 32];
        client.read_exact(&mut line).await.unwrap();
        let connector = pki.connector.clone();
        let client_side = tokio::spawn(async move {
            let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), client).await.unwrap();
            tls.write_all(b"b CAPABILITY\r\n").await.unwrap();
            let mut got = [0u8; 5];
            tls.read_exact(&mut got).await.unwrap();
            got
        });
        let mut conn = conn.start_tls().await.unwrap();
        assert!(conn.is_tls() && conn.is_secured());
        let info = conn.tls_info().unwrap().clone();
        assert_eq!(info.version, "TLSv1.3");
        assert!(info.cipher.starts_with("TLS_") && !info.cipher.starts_with("TLS13"), "{info:?}");
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
        assert_eq!(info.received_clause(), format!("using TLSv1.3 with cipher {}", info.cipher));
        assert_eq!((conn.session_id(), conn.listener()), (7, ListenerKey::Imap));
        let mut buf = [0u8; 14];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"b CAPABILITY\r\n");
        conn.write_all(b"hello").await.unwrap();
        conn.flush().await.unwrap();
        assert_eq!(&client_side.await.unwrap(), b"hello");
        assert_eq!(failures.value(), 0);
        let err = conn.start_tls().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn failed_start_tls_is_counted_and_idle_reads_time_out() {
        let pki = pki();
        let (mut conn, mut client, failures) = pair(&pki, true).await;
        assert!(conn.is_secured(), "loopback counts as secured when plaintext_on_loopback is on");
        let started = std::time::Instant::now();
        let err = conn.read_idle(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        // A client that answers the go-ahead with garbage instead of a ClientHello.
        client.write_all(b"EHLO not a handshake\r\n\r\n").await.unwrap();
        assert!(conn.start_tls().await.is_err());
        assert_eq!(failures.value(), 1);
    }

    #[tokio::test]
    async fn close_sends_fin_after_the_reply() {
        let pki = pki();
        let (mut conn, mut client, _) = pair(&pki, true).await;
        conn.write_all(b"* BYE bye\r\n").await.unwrap();
        let closing = tokio::spawn(conn.close());
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"* BYE bye\r\n");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), closing).await.unwrap().unwrap();
    }
}
