//! Connection tasks: deliver a destination's jobs over SMTP, driving the sans-IO
//! [`ClientSession`] of `postlog-protocol` over TCP and TLS.
//!
//! One task: resolve the destination's hosts ([`Router::resolve`]), connect to the first
//! address that answers, then take jobs from the destination's list one after another on that
//! connection (up to `queue.max_messages_per_connection`), report each job's outcome, and
//! `QUIT`. When a host cannot be reached or refuses the session before any message went
//! through it, the next address or MX host is tried. When none works, every job waiting for
//! the destination gets that failure (temporary unless the last host refused with a 5xx).
//!
//! TLS: `opportunistic` uses STARTTLS when offered without checking the certificate (RFC
//! 7435); when the handshake fails the same host is tried again in plain text, as Postfix
//! does. `require` checks the certificate against the trusted roots and the host name, and
//! defers when TLS is not offered or does not verify.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postlog_protocol::smtp::client::{
    BdatPolicy, ClientConfig, ClientEvent, ClientSession, Credentials, Message, Outcome as SmtpOutcome, SessionError,
    TlsPolicy as Tls,
};
use postlog_protocol::smtp::command::parse_path;
use postlog_protocol::smtp::{BodyType, ForwardPath, MailParams, Notify, RcptParams, Recipient, Ret};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::route::{Destination, HopKey, Router};
use super::scheduler::{Deliver, Job, JobDone, JobList, Outcome, Report};
use super::{Queue, Status};
use crate::config::{Config, TlsPolicy};

/// What every connection task shares.
struct Shared {
    queue: Queue,
    router: Arc<Router>,
    helo: String,
    max_messages: u32,
    connect_timeout: Duration,
    /// Certificates not checked (opportunistic TLS).
    any_cert: Arc<rustls::ClientConfig>,
    /// Certificates checked against the system's roots and `queue.ca_file`.
    verified: Arc<rustls::ClientConfig>,
}

/// The [`Deliver`] function the scheduler starts connection tasks with.
pub fn connector(config: &Config, queue: Queue, router: Arc<Router>) -> Result<Deliver, String> {
    let shared = Arc::new(Shared {
        queue,
        router,
        helo: config.hostname.clone(),
        max_messages: config.queue.max_messages_per_connection,
        connect_timeout: config.queue.connect_timeout,
        any_cert: Arc::new(tls_any_cert()?),
        verified: Arc::new(tls_verified(config.queue.ca_file.as_deref())?),
    });
    Ok(Arc::new(move |key: HopKey, jobs: JobList, reports: mpsc::UnboundedSender<Report>| {
        let shared = shared.clone();
        tokio::spawn(async move {
            run(&shared, &key, &jobs, &reports).await;
            let _ = reports.send(Report::Closed(key));
        })
    }))
}

/// How long a connection with nothing to send waits for another job before it says QUIT (as
/// Postfix's connection cache, `smtp_connection_cache_time_limit`): mail trickling to one
/// destination reuses the connection instead of opening one per message.
const CONNECTION_IDLE: Duration = Duration::from_secs(2);

/// The next job, waiting up to `limit` for one to come.
async fn take_or_wait(jobs: &JobList, limit: Duration) -> Option<Job> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(job) = take(jobs) {
            return Some(job);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn take(jobs: &JobList) -> Option<Job> {
    jobs.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
}

/// Gives every job still waiting `outcome`.
fn fail_waiting(jobs: &JobList, reports: &mpsc::UnboundedSender<Report>, outcome: &Outcome) {
    while let Some(job) = take(jobs) {
        let outcomes = job.recipients.iter().map(|&i| (i, outcome.clone())).collect();
        let _ = reports.send(Report::Done(JobDone { id: job.entry.id.clone(), outcomes }));
    }
}

async fn run(shared: &Shared, key: &HopKey, jobs: &JobList, reports: &mpsc::UnboundedSender<Report>) {
    let destinations = match shared.router.resolve(key).await {
        Ok(d) => d,
        Err(e) => {
            let o = if e.permanent { Outcome::permanent(e.code, e.text) } else { Outcome::temporary(e.code, e.text) };
            fail_waiting(jobs, reports, &o);
            return;
        }
    };
    let mut last = Outcome::temporary("4.4.1", format!("no host of {key} could be reached"));
    for dest in &destinations {
        for &addr in &dest.addrs {
            if jobs.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                return;
            }
            let mut tls = dest.tls;
            loop {
                match attempt(shared, dest, addr, tls, jobs, reports).await {
                    Attempt::Finished => return,
                    Attempt::NextHost(o) => {
                        last = o;
                        break;
                    }
                    // Opportunistic TLS whose handshake failed: the same host in plain text.
                    Attempt::RetryWithoutTls if tls == TlsPolicy::Opportunistic => tls = TlsPolicy::Off,
                    Attempt::RetryWithoutTls => break,
                }
            }
        }
    }
    fail_waiting(jobs, reports, &last);
}

enum Attempt {
    /// The session ended after delivering what it could; jobs left wait for another task.
    Finished,
    /// Nothing went through this host: try the next one.
    NextHost(Outcome),
    RetryWithoutTls,
}

/// A plain or TLS stream.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(buf).await,
            Io::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
        };
    }
}

fn host_label(dest: &Destination, addr: SocketAddr) -> String {
    if dest.host == addr.ip().to_string() {
        format!("[{}]:{}", addr.ip(), addr.port())
    } else {
        format!("{}[{}]:{}", dest.host, addr.ip(), addr.port())
    }
}

/// One connection to one address, delivering jobs until none is left.
async fn attempt(
    shared: &Shared,
    dest: &Destination,
    addr: SocketAddr,
    tls: TlsPolicy,
    jobs: &JobList,
    reports: &mpsc::UnboundedSender<Report>,
) -> Attempt {
    let label = host_label(dest, addr);
    let stream = match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Attempt::NextHost(Outcome::temporary("4.4.1", format!("connect to {label}: {e}"))),
        Err(_) => return Attempt::NextHost(Outcome::temporary("4.4.1", format!("connect to {label}: timed out"))),
    };
    let _ = stream.set_nodelay(true);
    let mut io = Io::Plain(stream);
    let mut config = ClientConfig::new(&shared.helo);
    config.tls = match tls {
        TlsPolicy::Off => Tls::Disabled,
        TlsPolicy::Opportunistic => Tls::Opportunistic,
        TlsPolicy::Require => Tls::Required,
    };
    // CHUNKING where offered (RFC 3030): no dot-stuffing, one round trip like DATA.
    config.bdat = BdatPolicy::WhenOffered;
    config.credentials =
        dest.auth.as_ref().map(|(u, p)| Credentials { username: u.clone(), password: p.clone().into() });
    let mut session = ClientSession::new(config);
    let mut current: Option<Job> = None;
    let mut sent = 0u32;
    let mut any_done = false;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if flush(&mut session, &mut io, &mut out).await.is_err() {
            session.handle_eof();
        }
        let mut acted = false;
        while let Some(event) = session.poll_event() {
            acted = true;
            match event {
                ClientEvent::Ready => {
                    // The next job this connection can take; jobs it cannot send are failed.
                    loop {
                        if sent >= shared.max_messages {
                            session.quit();
                            break;
                        }
                        let Some(job) = take_or_wait(jobs, CONNECTION_IDLE).await else {
                            session.quit();
                            break;
                        };
                        match message_for(shared, &job) {
                            Err(o) => report(reports, &job, |_| (*o).clone()),
                            Ok(m) => match session.send_message(m) {
                                Ok(()) => {
                                    sent += 1;
                                    current = Some(job);
                                    break;
                                }
                                Err(refused) => {
                                    let o = Outcome {
                                        remote: Some(label.clone()),
                                        ..Outcome::permanent(refused.reason.status(), refused.reason.to_string())
                                    };
                                    report(reports, &job, |_| o.clone());
                                }
                            },
                        }
                    }
                }
                ClientEvent::StartTls => {
                    let _ = flush(&mut session, &mut io, &mut out).await;
                    let Io::Plain(tcp) = io else { unreachable!("STARTTLS on a TLS connection") };
                    let (client, verify) = match tls {
                        TlsPolicy::Require => (shared.verified.clone(), true),
                        _ => (shared.any_cert.clone(), false),
                    };
                    let name = match server_name(&dest.host, addr, verify) {
                        Some(n) => n,
                        None => {
                            return Attempt::NextHost(Outcome::temporary("4.7.5", format!("{label}: bad TLS name")));
                        }
                    };
                    let connector = tokio_rustls::TlsConnector::from(client);
                    match tokio::time::timeout(Duration::from_secs(60), connector.connect(name, tcp)).await {
                        Ok(Ok(s)) => {
                            io = Io::Tls(Box::new(s));
                            session.handle_tls_established();
                        }
                        Ok(Err(e)) => {
                            tracing::info!(host = %label, error = %e, "queue: TLS handshake failed");
                            if tls == TlsPolicy::Opportunistic {
                                return Attempt::RetryWithoutTls;
                            }
                            return Attempt::NextHost(Outcome::temporary(
                                "4.7.5",
                                format!("TLS with {label} failed (TLS is required): {e}"),
                            ));
                        }
                        Err(_) => {
                            return Attempt::NextHost(Outcome::temporary(
                                "4.7.5",
                                format!("TLS with {label} timed out"),
                            ));
                        }
                    }
                }
                ClientEvent::MessageDone(r) => {
                    let job = current.take().expect("a message was in flight");
                    any_done = true;
                    let outcomes: Vec<(usize, Outcome)> =
                        job.recipients.iter().zip(r.recipients).map(|(&i, o)| (i, outcome(o, &label))).collect();
                    let _ = reports.send(Report::Done(JobDone { id: job.entry.id.clone(), outcomes }));
                }
                ClientEvent::Closed(result) => {
                    let _ = flush(&mut session, &mut io, &mut out).await;
                    io.shutdown().await;
                    return match result {
                        Ok(()) => Attempt::Finished,
                        Err(e) => {
                            tracing::info!(host = %label, error = %e, "queue: session ended");
                            if any_done { Attempt::Finished } else { Attempt::NextHost(session_outcome(&e, &label)) }
                        }
                    };
                }
            }
        }
        if acted {
            continue;
        }
        let wait = session.phase().rfc5321_timeout().unwrap_or(Duration::from_secs(300));
        match tokio::time::timeout(wait, io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => session.handle_eof(),
            Ok(Ok(n)) => session.handle_input(&buf[..n]),
            Err(_) => session.handle_timeout(),
        }
    }
}

/// Writes everything the session has to send now.
async fn flush(session: &mut ClientSession, io: &mut Io, out: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        out.clear();
        if session.poll_transmit(out) == 0 {
            return Ok(());
        }
        io.write_all(out).await?;
    }
}

fn report(reports: &mpsc::UnboundedSender<Report>, job: &Job, f: impl Fn(usize) -> Outcome) {
    let outcomes = job.recipients.iter().map(|&i| (i, f(i))).collect();
    let _ = reports.send(Report::Done(JobDone { id: job.entry.id.clone(), outcomes }));
}

/// The outcome of a session that ended before any message: what to tell the recipients if no
/// other host does better.
fn session_outcome(e: &SessionError, label: &str) -> Outcome {
    let (status, code) = match e.reply() {
        Some(r) if e.is_permanent() => {
            (Status::Failed, if r.status.is_empty() { "5.0.0".into() } else { r.status.clone() })
        }
        Some(r) => (Status::Pending, if r.status.is_empty() { "4.0.0".into() } else { r.status.clone() }),
        None => (Status::Pending, "4.4.2".into()),
    };
    Outcome {
        status,
        code,
        diagnostic: format!("{label}: {e}"),
        remote: Some(label.to_string()),
        reply: e.reply().map(super::RemoteReply::from_reply),
    }
}

fn outcome(o: SmtpOutcome, label: &str) -> Outcome {
    let (status, answer) = match o {
        SmtpOutcome::Delivered(a) => (Status::Delivered, a),
        SmtpOutcome::Deferred(a) => (Status::Pending, a),
        SmtpOutcome::Failed(a) => (Status::Failed, a),
        SmtpOutcome::Unanswered => {
            return Outcome {
                remote: Some(label.to_string()),
                ..Outcome::temporary("4.4.2", format!("lost connection with {label} before the final answer"))
            };
        }
    };
    Outcome {
        status,
        code: answer.status(),
        diagnostic: format!("{} (in reply to {})", answer.reply.to_string().trim_end(), answer.stage.command()),
        remote: Some(label.to_string()),
        reply: Some(super::RemoteReply::from_reply(&answer.reply)),
    }
}

/// The protocol message for a job, or the outcome for all its recipients when it cannot be
/// built.
fn message_for(shared: &Shared, job: &Job) -> Result<Message, Box<Outcome>> {
    let e = &job.entry;
    let content = shared
        .queue
        .read(e)
        .map_err(|err| Box::new(Outcome::temporary("4.3.0", format!("the queued message cannot be read: {err}"))))?;
    let from = if e.from.is_empty() {
        None
    } else {
        let bad = |w| Box::new(Outcome::permanent("5.1.7", format!("bad sender <{}>: {w}", e.from)));
        Some(parse_path(&e.from).map_err(bad)?)
    };
    let mut recipients = Vec::new();
    for &i in &job.recipients {
        let r = &e.recipients[i];
        let path = parse_path(&r.address)
            .map_err(|w| Box::new(Outcome::permanent("5.1.3", format!("bad recipient <{}>: {w}", r.address))))?;
        let notify =
            r.notify.map(|n| Notify { never: n.never, success: n.success, failure: n.failure, delay: n.delay });
        recipients.push(Recipient {
            path: ForwardPath::Mailbox(path),
            params: RcptParams { notify, orcpt: r.orcpt.clone() },
        });
    }
    let params = MailParams {
        size: None,
        body: match e.body.as_str() {
            "8bitmime" => BodyType::EightBitMime,
            "binarymime" => BodyType::BinaryMime,
            _ => BodyType::SevenBit,
        },
        smtputf8: e.smtputf8,
        ret: e.ret_headers.then_some(Ret::Headers),
        envid: e.envid.clone(),
        auth: None,
    };
    Ok(Message { from, params, recipients, content: Box::new(content) })
}

fn server_name(host: &str, addr: SocketAddr, verify: bool) -> Option<ServerName<'static>> {
    if let Ok(n) = ServerName::try_from(host.to_string()) {
        return Some(n);
    }
    if verify { None } else { Some(ServerName::IpAddress(addr.ip().into())) }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates are checked against the system's roots and the extra file.
fn tls_verified(extra: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in ["/etc/ssl/certs/ca-certificates.crt"].iter().map(std::path::Path::new) {
        if let Ok(iter) = CertificateDer::pem_file_iter(path) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    if let Some(path) = extra {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("key `queue.ca_file`: cannot read {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("key `queue.ca_file`: {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("key `queue.ca_file`: {}: {e}", path.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Opportunistic TLS: any certificate (RFC 7435; unauthenticated encryption beats none).
fn tls_any_cert() -> Result<rustls::ClientConfig, String> {
    let p = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.dangerous().set_certificate_verifier(Arc::new(AnyCert(p)));
    Ok(config)
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
