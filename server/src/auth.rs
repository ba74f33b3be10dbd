//! Authentication, shared by every front end (SMTP `AUTH`, IMAP `AUTHENTICATE`/`LOGIN`, POP3
//! `AUTH`/`USER`+`PASS`): which mechanisms to offer, the SASL exchange against the
//! [`Directory`], the [`Limiter`] before and after, and a typed outcome that each front end
//! maps to its own reply.
//!
//! ```text
//!  front end                               Authenticator
//!  "AUTH PLAIN <b64>" ─ begin(name, peer) ─► mechanism offered on this connection? address locked out?
//!                     ─ exchange.start(ir) ─► ServerSession ─► Step::Verify ─► limiter.check(name)
//!                                                                             directory.verify_password
//!  "334 <b64>"        ◄── AuthStep::Challenge                  Step::NeedCredentials ─► directory.scram_credentials
//!  client line        ─ exchange.step(resp) ─►
//!  sleep(delay), reply ◄── AuthStep::Done(AuthOutcome { result, delay })
//! ```
//! No sockets and no timers here: the front end passes the peer's address and whether the
//! connection is secured, and applies the returned delay itself before answering a failure
//! (a success is never delayed). `begin`, `start`, `step` and `login` may run Argon2 (tens of
//! milliseconds of CPU): async front ends call them in `tokio::task::spawn_blocking`.
//!
//! Plain-text mechanisms (PLAIN, LOGIN, and IMAP `LOGIN`, POP3 `USER`/`PASS`) are offered and
//! taken only on a secured connection: TLS, or a loopback address when
//! `plaintext_on_loopback` is set (as in Dovecot). SCRAM-SHA-256 is offered everywhere.
//!
//! A client may authenticate only as itself: an authorization identity other than its own
//! address is refused ([`AuthFailure::AuthorizationFailed`]); there are no master users.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postlog_engine::AccountId;
use postlog_protocol::sasl::{
    ErrorClass, Identity, Mechanism, SaslError, ServerConfig, ServerNonce, ServerSession, Step,
};

use crate::directory::{Address, Directory, DirectoryError};
use crate::limiter::{Admission, Clock, Limiter, LimiterSettings, Locked, SystemClock};

/// `[auth]` of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Loopback connections count as secured for plain-text mechanisms.
    pub plaintext_on_loopback: bool,
    pub limiter: LimiterSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { plaintext_on_loopback: true, limiter: LimiterSettings::default() }
    }
}

/// The client side of a connection, as authentication needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub ip: IpAddr,
    /// The connection runs over TLS (implicit, or after STARTTLS/STLS).
    pub tls: bool,
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user's address as added (local part as typed, domain in lower case).
    pub address: String,
    pub account: AccountId,
    pub mechanism: Option<Mechanism>,
}

/// Why a login did not succeed. Each front end answers as noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong password or unknown user, deliberately indistinguishable. SMTP `535 5.7.8`,
    /// IMAP `NO [AUTHENTICATIONFAILED]`, POP3 `-ERR [AUTH]`.
    Rejected,
    /// Too many failures from this address or for this account: refused without checking,
    /// try again after `retry_after`. SMTP `454 4.7.0`, IMAP `NO [UNAVAILABLE]`,
    /// POP3 `-ERR [SYS/TEMP]`.
    TooManyFailures { retry_after: Duration },
    /// A plain-text mechanism (or IMAP LOGIN, POP3 USER/PASS) on a connection that is not
    /// secured. SMTP `538 5.7.11`, IMAP `NO [PRIVACYREQUIRED]`, POP3 `-ERR [AUTH]`.
    EncryptionRequired,
    /// A mechanism this server does not implement. SMTP `504 5.5.4`, IMAP `NO`, POP3 `-ERR`.
    UnsupportedMechanism(String),
    /// Right credentials, but the client asked to act as someone else. SMTP `535 5.7.8`,
    /// IMAP `NO [AUTHORIZATIONFAILED]`, POP3 `-ERR [AUTH]`.
    AuthorizationFailed,
    /// The client cancelled (`*`) or broke the exchange. SMTP `501 5.5.2`, IMAP `BAD`,
    /// POP3 `-ERR`.
    Protocol(SaslError),
    /// The server could not check (damaged directory, no randomness). SMTP `454 4.7.0`,
    /// IMAP `NO [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`.
    Unavailable,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Rejected => f.write_str("authentication failed"),
            AuthFailure::TooManyFailures { retry_after } => {
                write!(f, "too many failed logins; try again in {} seconds", retry_after.as_secs().max(1))
            }
            AuthFailure::EncryptionRequired => f.write_str("plain-text authentication needs TLS"),
            AuthFailure::UnsupportedMechanism(m) => write!(f, "unsupported mechanism {m:?}"),
            AuthFailure::AuthorizationFailed => f.write_str("not authorized to act as that identity"),
            AuthFailure::Protocol(e) => e.fmt(f),
            AuthFailure::Unavailable => f.write_str("authentication is temporarily unavailable"),
        }
    }
}

/// The end of an attempt: the result, and how long the front end waits before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AuthOutcome {
    pub result: Result<Authenticated, AuthFailure>,
    /// Zero for a success.
    pub delay: Duration,
}

impl AuthOutcome {
    fn failed(failure: AuthFailure, delay: Duration) -> AuthOutcome {
        AuthOutcome { result: Err(failure), delay }
    }
}

/// What the front end does next in an exchange.
#[derive(Debug)]
#[must_use]
pub enum AuthStep {
    /// Send this challenge (base64, `334 `/`+ `), then pass the client's decoded answer to
    /// [`Exchange::step`] (or a decoding error to [`Exchange::fail`]).
    Challenge(Vec<u8>),
    Done(AuthOutcome),
}

struct Shared {
    directory: Directory,
    limiter: Limiter,
    sasl: ServerConfig,
    plaintext_on_loopback: bool,
}

/// The authentication service. Cheap to clone; one per server.
#[derive(Clone)]
pub struct Authenticator {
    shared: Arc<Shared>,
}

impl Authenticator {
    /// Reads (or, the first time, creates) the server's SASL secret from the directory.
    pub fn new(directory: Directory, settings: AuthSettings) -> Result<Authenticator, DirectoryError> {
        Self::with_clock(directory, settings, Arc::new(SystemClock))
    }

    pub fn with_clock(
        directory: Directory,
        settings: AuthSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Authenticator, DirectoryError> {
        let sasl = ServerConfig::new(directory.sasl_secret()?);
        let limiter = Limiter::with_clock(settings.limiter, clock, Limiter::DEFAULT_MAX_TRACKED);
        Ok(Authenticator {
            shared: Arc::new(Shared {
                directory,
                limiter,
                sasl,
                plaintext_on_loopback: settings.plaintext_on_loopback,
            }),
        })
    }

    pub fn limiter(&self) -> &Limiter {
        &self.shared.limiter
    }

    /// Whether passwords may travel in the clear on this connection.
    pub fn is_secured(&self, peer: &Peer) -> bool {
        peer.tls || (self.shared.plaintext_on_loopback && peer.ip.to_canonical().is_loopback())
    }

    /// The mechanisms to advertise on this connection, strongest first.
    pub fn mechanisms(&self, peer: &Peer) -> Vec<Mechanism> {
        let secured = self.is_secured(peer);
        Mechanism::ALL.into_iter().filter(|m| secured || !m.sends_password_in_clear()).collect()
    }

    /// Begins a SASL exchange for the mechanism the client named.
    pub fn begin(&self, mechanism: &str, peer: Peer) -> Result<Exchange, AuthOutcome> {
        let mechanism = Mechanism::from_name(mechanism)
            .map_err(|e| AuthOutcome::failed(AuthFailure::UnsupportedMechanism(e.name), Duration::ZERO))?;
        if mechanism.sends_password_in_clear() && !self.is_secured(&peer) {
            tracing::info!("{mechanism} refused from {}: the connection is not secured", peer.ip);
            return Err(AuthOutcome::failed(AuthFailure::EncryptionRequired, Duration::ZERO));
        }
        if let Some(refused) = self.refusal(peer.ip, None) {
            return Err(refused);
        }
        let mut random = [0u8; ServerNonce::RANDOM_BYTES];
        if let Err(e) = getrandom::fill(&mut random) {
            tracing::error!("no SCRAM nonce: the system's random number generator failed: {e}");
            return Err(AuthOutcome::failed(AuthFailure::Unavailable, Duration::ZERO));
        }
        let nonce = ServerNonce::generate(&mut |buf: &mut [u8]| buf.copy_from_slice(&random[..buf.len()]));
        let session = ServerSession::with_mechanism(mechanism, &self.shared.sasl, nonce);
        Ok(Exchange { shared: self.shared.clone(), session, peer, name: None, proven: None })
    }

    /// IMAP `LOGIN` and POP3 `USER`+`PASS`: the same policy as a PLAIN exchange.
    pub fn login(&self, user: &str, password: &str, peer: Peer) -> AuthOutcome {
        if !self.is_secured(&peer) {
            tracing::info!("plain-text login refused from {}: the connection is not secured", peer.ip);
            return AuthOutcome::failed(AuthFailure::EncryptionRequired, Duration::ZERO);
        }
        if let Some(refused) = self.refusal(peer.ip, Some(user)) {
            return refused;
        }
        let shared = &self.shared;
        if shared.directory.verify_password(user, password)
            && let Some(user) = shared.directory.local_user(user)
        {
            shared.limiter.record_success(peer.ip, &user.address);
            tracing::info!("login from {} as {} (plain-text login)", peer.ip, user.address);
            return AuthOutcome {
                result: Ok(Authenticated { address: user.address, account: user.account, mechanism: None }),
                delay: Duration::ZERO,
            };
        }
        AuthOutcome::failed(AuthFailure::Rejected, shared.limiter.record_failure(peer.ip, Some(user)))
    }

    fn refusal(&self, ip: IpAddr, name: Option<&str>) -> Option<AuthOutcome> {
        refusal(&self.shared, ip, name)
    }
}

/// A refusal by the limiter, answered after `delay_max` so that hammering a locked-out
/// address costs the client time too.
fn refusal(shared: &Shared, ip: IpAddr, name: Option<&str>) -> Option<AuthOutcome> {
    match shared.limiter.check(ip, name) {
        Admission::Allowed => None,
        Admission::Refused { what, retry_after } => {
            let what = match what {
                Locked::Address => "address",
                Locked::Account => "account",
            };
            tracing::debug!("authentication from {ip} refused: {what} locked out");
            Some(AuthOutcome::failed(AuthFailure::TooManyFailures { retry_after }, shared.limiter.settings().delay_max))
        }
    }
}

// Front ends move these into `spawn_blocking` and share them between connections.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Authenticator>();
    send_sync::<Exchange>();
    send_sync::<Directory>();
};

/// One SASL exchange (one `AUTH`/`AUTHENTICATE` command).
pub struct Exchange {
    shared: Arc<Shared>,
    session: ServerSession,
    peer: Peer,
    /// The authentication identity, once the client has sent it.
    name: Option<String>,
    /// SCRAM: the proof was right; the server-final message went out as a challenge and the
    /// client's empty answer is awaited.
    proven: Option<Authenticated>,
}

impl Exchange {
    pub fn mechanism(&self) -> Mechanism {
        self.session.mechanism()
    }

    /// Starts with the client's decoded initial response, if it sent one.
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> AuthStep {
        let step = self.session.start(initial_response);
        self.drive(step)
    }

    /// Takes the client's decoded answer to the last challenge.
    pub fn step(&mut self, response: &[u8]) -> AuthStep {
        if let Some(authenticated) = self.proven.take() {
            // RFC 4954 section 4: after the server-final data comes an empty response.
            if response.is_empty() {
                return AuthStep::Done(AuthOutcome { result: Ok(authenticated), delay: Duration::ZERO });
            }
            return AuthStep::Done(AuthOutcome::failed(
                AuthFailure::Protocol(SaslError::OutOfSequence),
                Duration::ZERO,
            ));
        }
        let step = self.session.step(response);
        self.drive(step)
    }

    /// Ends the exchange because the client's line did not decode (or was `*`).
    pub fn fail(&mut self, error: SaslError) -> AuthOutcome {
        self.proven = None;
        AuthOutcome::failed(AuthFailure::Protocol(error), Duration::ZERO)
    }

    fn drive(&mut self, mut step: Step) -> AuthStep {
        let shared = self.shared.clone();
        let ip = self.peer.ip;
        loop {
            step = match step {
                Step::Challenge(challenge) => return AuthStep::Challenge(challenge),
                Step::NeedCredentials { authcid, .. } => {
                    self.name = Some(authcid.as_str().to_string());
                    if let Some(refused) = refusal(&shared, ip, Some(authcid.as_str())) {
                        return AuthStep::Done(refused);
                    }
                    self.session.provide_credentials(shared.directory.scram_credentials(authcid.as_str()))
                }
                Step::Verify { authcid, password, .. } => {
                    self.name = Some(authcid.as_str().to_string());
                    if let Some(refused) = refusal(&shared, ip, Some(authcid.as_str())) {
                        return AuthStep::Done(refused);
                    }
                    let valid = shared.directory.verify_password(authcid.as_str(), password.expose_secret());
                    self.session.provide_verdict(valid)
                }
                Step::Success { authcid, authzid, final_data } => {
                    return match self.succeeded(&authcid, authzid.as_ref()) {
                        Ok(authenticated) => match final_data {
                            Some(data) => {
                                self.proven = Some(authenticated);
                                AuthStep::Challenge(data)
                            }
                            None => AuthStep::Done(AuthOutcome { result: Ok(authenticated), delay: Duration::ZERO }),
                        },
                        Err(outcome) => AuthStep::Done(outcome),
                    };
                }
                Step::Failure(error) => return AuthStep::Done(self.failed(error)),
            };
        }
    }

    fn succeeded(&mut self, authcid: &Identity, authzid: Option<&Identity>) -> Result<Authenticated, AuthOutcome> {
        let shared = &self.shared;
        let Some(user) = shared.directory.local_user(authcid.as_str()) else {
            // Deleted in the middle of the exchange.
            return Err(self.failed(SaslError::AuthenticationFailed));
        };
        let same = |z: &Identity| {
            let canonical = |s: &str| Address::parse(s).map(|a| a.canonical()).ok();
            canonical(z.as_str()).is_some_and(|z| Some(z) == canonical(authcid.as_str()))
        };
        if let Some(z) = authzid.filter(|z| !same(z)) {
            tracing::info!(
                "{} from {} authenticated as {authcid} but asked to act as {z}: refused",
                self.mechanism(),
                self.peer.ip
            );
            return Err(AuthOutcome::failed(AuthFailure::AuthorizationFailed, Duration::ZERO));
        }
        shared.limiter.record_success(self.peer.ip, authcid.as_str());
        tracing::info!("login from {} as {} ({})", self.peer.ip, user.address, self.mechanism());
        Ok(Authenticated { address: user.address, account: user.account, mechanism: Some(self.mechanism()) })
    }

    fn failed(&self, error: SaslError) -> AuthOutcome {
        match error.class() {
            ErrorClass::Rejected => {
                let delay = self.shared.limiter.record_failure(self.peer.ip, self.name.as_deref());
                tracing::info!(
                    "{} from {} for {} failed: {error}",
                    self.mechanism(),
                    self.peer.ip,
                    self.name.as_deref().unwrap_or("(no name)")
                );
                AuthOutcome::failed(AuthFailure::Rejected, delay)
            }
            ErrorClass::Cancelled | ErrorClass::Malformed => {
                tracing::debug!("{} from {} ended: {error}", self.mechanism(), self.peer.ip);
                AuthOutcome::failed(AuthFailure::Protocol(error), Duration::ZERO)
            }
        }
    }
}

#[cfg(test)]
mod tests;
