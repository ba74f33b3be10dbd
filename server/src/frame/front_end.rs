//! [`FrontEnd`]: the protocol that serves one listener, and [`FrontEnds`], which front end
//! serves which `[listen]` key.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::admission::Refusal;
use super::connection::Connection;
use super::context::ServerContext;
use crate::config::{ListenerKey, Protocol};

/// A session's future: runs until the conversation ends.
pub type SessionFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A protocol front end (SMTP, submission, LMTP, IMAP, POP3, HTTP/JMAP).
///
/// The frame accepts, applies the connection limits, does the TLS handshake on implicit-TLS
/// listeners, logs connect and disconnect, counts, and calls [`serve`](Self::serve) once per
/// connection in its own task. The session should:
/// - read with [`Connection::next_input`] or [`Connection::read_idle`] (or
///   [`with_idle_timeout`](super::with_idle_timeout))
///   so idle clients are dropped after the protocol's `[timeouts]` value;
/// - select on [`Connection::shutdown_signal`] and say goodbye when it fires; sessions still
///   running after `timeouts.shutdown_grace` are cut;
/// - upgrade with [`Connection::start_tls`] for STARTTLS/STLS (read its doc: no buffered input);
/// - never panic on peer input (a panic ends only that session, but is a bug).
pub trait FrontEnd: Send + Sync + 'static {
    fn serve(&self, ctx: Arc<ServerContext>, conn: Connection) -> SessionFuture;

    /// What to send on a plain-text connection refused by a connection limit, before it is
    /// closed (sent without waiting: if the socket cannot take it at once, it is dropped).
    /// Implicit-TLS connections are refused by closing them: a handshake costs more than a
    /// reply is worth to an over-limit client.
    fn refusal(&self, ctx: &ServerContext, key: ListenerKey, why: Refusal) -> Option<Vec<u8>> {
        refusal_reply(key.protocol(), ctx.hostname(), why)
    }
}

/// The protocol's "too many connections" reply.
pub fn refusal_reply(protocol: Protocol, hostname: &str, why: Refusal) -> Option<Vec<u8>> {
    let line = match (protocol, why) {
        // RFC 3463: 4.3.2 "system not accepting network messages"; 4.7.0 a policy refusal.
        (Protocol::Smtp | Protocol::Lmtp, Refusal::Total) => {
            format!("421 4.3.2 {hostname} Too many connections, try again later\r\n")
        }
        (Protocol::Smtp | Protocol::Lmtp, Refusal::PerIp) => {
            format!("421 4.7.0 {hostname} Too many connections from your address, try again later\r\n")
        }
        // RFC 5530 response code UNAVAILABLE.
        (Protocol::Imap, Refusal::Total) => "* BYE [UNAVAILABLE] Too many connections, try again later\r\n".into(),
        (Protocol::Imap, Refusal::PerIp) => {
            "* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n".into()
        }
        // RFC 3206 SYS/TEMP.
        (Protocol::Pop3, Refusal::Total) => "-ERR [SYS/TEMP] Too many connections, try again later\r\n".into(),
        (Protocol::Pop3, Refusal::PerIp) => {
            "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n".into()
        }
        // An HTTP client has not sent its request yet; just close.
        (Protocol::Http, _) => return None,
    };
    Some(line.into_bytes())
}

/// Which front end serves which listener.
#[derive(Clone)]
pub struct FrontEnds {
    by_key: HashMap<ListenerKey, Arc<dyn FrontEnd>>,
}

impl FrontEnds {
    /// What serves each listener until the protocol front ends exist: every mail listener
    /// answers that its service is not available yet ([`NotAvailable`]); `http` serves
    /// `/metrics` and `/health` ([`super::http::Http`]).
    pub fn until_front_ends_exist() -> FrontEnds {
        let mut by_key: HashMap<ListenerKey, Arc<dyn FrontEnd>> = HashMap::new();
        for key in ListenerKey::ALL {
            let fe: Arc<dyn FrontEnd> = match key.protocol() {
                Protocol::Http => Arc::new(super::http::Http),
                protocol => Arc::new(NotAvailable { protocol }),
            };
            by_key.insert(key, fe);
        }
        FrontEnds { by_key }
    }

    /// Makes `front_end` serve the listener `key` (replacing what served it).
    pub fn set(&mut self, key: ListenerKey, front_end: Arc<dyn FrontEnd>) {
        self.by_key.insert(key, front_end);
    }

    pub fn get(&self, key: ListenerKey) -> Arc<dyn FrontEnd> {
        self.by_key.get(&key).cloned().expect("every listener key has a front end")
    }
}

/// The honest placeholder: a real protocol reply saying the service is not available yet,
/// then close. Replaced by each protocol's front end as it lands.
#[derive(Debug, Clone, Copy)]
pub struct NotAvailable {
    pub protocol: Protocol,
}

impl NotAvailable {
    pub fn reply(&self, hostname: &str) -> String {
        match self.protocol {
            // RFC 5321 §3.1: a server that cannot serve may answer 421 instead of 220.
            Protocol::Smtp | Protocol::Lmtp => format!("421 4.3.0 {hostname} service not available yet\r\n"),
            // RFC 9051 §7.1.5: BYE as greeting, then close.
            Protocol::Imap => "* BYE IMAP service not available yet\r\n".into(),
            // RFC 2449 / RFC 3206: -ERR greeting with SYS/TEMP.
            Protocol::Pop3 => "-ERR [SYS/TEMP] POP3 service not available yet\r\n".into(),
            Protocol::Http => {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            }
        }
    }
}

impl FrontEnd for NotAvailable {
    fn serve(&self, ctx: Arc<ServerContext>, mut conn: Connection) -> SessionFuture {
        let reply = self.reply(ctx.hostname());
        Box::pin(async move {
            let limit = conn.idle_timeout();
            let _ = super::with_idle_timeout(limit, conn.write_all(reply.as_bytes())).await;
            conn.close().await;
        })
    }
}
