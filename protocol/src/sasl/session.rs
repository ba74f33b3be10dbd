//! The server's SASL state machine: one per `AUTH`/`AUTHENTICATE` command.

use std::num::NonZeroU32;

use super::scram::{self, Exchange, KEY_BYTES, ScramCredentials, ServerNonce};
use super::{
    Field, Identity, MAX_RESPONSE_BYTES, Mechanism, SaslError, UnknownMechanism, decode_plain, identity, password,
};
use crate::secret::Secret;

/// What a SCRAM session needs from the server beyond the client's messages. One per server,
/// shared by all sessions.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    fake_salt_key: Secret<[u8; KEY_BYTES]>,
    fake_iterations: u32,
}

impl ServerConfig {
    /// `server_secret` keys the fake salts of unknown SCRAM users. It must be random, kept
    /// secret and stable across restarts: a salt that changes with each restart betrays a
    /// user that does not exist.
    pub fn new(server_secret: [u8; KEY_BYTES]) -> Self {
        Self { fake_salt_key: Secret::new(server_secret), fake_iterations: ScramCredentials::DEFAULT_ITERATIONS }
    }

    /// The iteration count announced for unknown users; set it to what real users' credentials
    /// have (default [`ScramCredentials::DEFAULT_ITERATIONS`]), or the count gives them away.
    pub fn with_fake_iterations(mut self, iterations: NonZeroU32) -> Self {
        self.fake_iterations = iterations.get();
        self
    }

    pub fn fake_iterations(&self) -> u32 {
        self.fake_iterations
    }
}

/// What the front end does next. Every variant is mechanism-independent.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Send this challenge (base64-encode it with [`encode_challenge`](super::encode_challenge);
    /// it may be empty) and pass the client's decoded answer to [`ServerSession::step`].
    Challenge(Vec<u8>),
    /// SCRAM: look up `authcid`'s stored [`ScramCredentials`] and call
    /// [`ServerSession::provide_credentials`] — with `None` if the user does not exist, which
    /// the session hides from the client.
    NeedCredentials { authcid: Identity, authzid: Option<Identity> },
    /// PLAIN/LOGIN: check `password` for `authcid` and call [`ServerSession::provide_verdict`].
    /// An unknown user is simply a rejected password.
    Verify { authcid: Identity, authzid: Option<Identity>, password: Secret<String> },
    /// The client proved it is `authcid`. If `authzid` is `Some`, the client asks to act as
    /// that other identity: the front end decides whether `authcid` may, and answers with
    /// its authorization failure (IMAP `NO [AUTHORIZATIONFAILED]`, SMTP `535`) if not.
    ///
    /// `final_data` (SCRAM's server-final `v=...`) goes to the client before the success
    /// reply. SMTP, IMAP and POP3 have no room for data in their success reply, so they send
    /// it as one more challenge, wait for an empty response (anything else, or `*`, fails
    /// the exchange) and only then reply with success.
    Success { authcid: Identity, authzid: Option<Identity>, final_data: Option<Vec<u8>> },
    /// The exchange failed; [`SaslError::class`] says how to answer. The session is over.
    Failure(SaslError),
}

#[derive(Debug)]
enum State {
    /// Before [`ServerSession::start`].
    Start,
    /// PLAIN, after an empty challenge.
    PlainMessage,
    LoginUsername,
    LoginPassword {
        authcid: Identity,
    },
    AwaitVerdict {
        authcid: Identity,
        authzid: Option<Identity>,
    },
    ScramClientFirst,
    ScramCredentials {
        client_first: scram::ClientFirst,
    },
    ScramClientFinal(Box<Exchange>),
    Finished,
}

/// The server side of one SASL exchange, sans IO.
///
/// ```text
/// new ─► start(initial response?) ─► Challenge ─► step(response) ─► ... ─► Success | Failure
///                                    NeedCredentials ─► provide_credentials(..) ─► Challenge
///                                    Verify ─► provide_verdict(..) ─► Success | Failure
/// ```
/// Each call returns the next [`Step`]. After `Success` or `Failure` the session is over:
/// further calls give `Failure(SaslError::OutOfSequence)`. Responses longer than
/// [`MAX_RESPONSE_BYTES`] fail with [`SaslError::InputTooLong`].
#[derive(Debug)]
pub struct ServerSession {
    mechanism: Mechanism,
    fake_salt_key: Secret<[u8; KEY_BYTES]>,
    fake_iterations: u32,
    nonce: ServerNonce,
    state: State,
}

/// LOGIN's challenges: not in any RFC, but what every client expects.
const LOGIN_USERNAME: &[u8] = b"Username:";
const LOGIN_PASSWORD: &[u8] = b"Password:";

impl ServerSession {
    /// A session for the mechanism the client named (ASCII case-insensitive). `nonce` is used
    /// by SCRAM only; draw a fresh one per session with [`ServerNonce::generate`].
    pub fn new(mechanism_name: &str, config: &ServerConfig, nonce: ServerNonce) -> Result<Self, UnknownMechanism> {
        Ok(Self::with_mechanism(Mechanism::from_name(mechanism_name)?, config, nonce))
    }

    /// A session for a mechanism already parsed.
    pub fn with_mechanism(mechanism: Mechanism, config: &ServerConfig, nonce: ServerNonce) -> Self {
        Self {
            mechanism,
            fake_salt_key: config.fake_salt_key.clone(),
            fake_iterations: config.fake_iterations,
            nonce,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange has ended (after `Success` or `Failure`).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Begins the exchange. `initial_response` is the client's decoded initial response
    /// (SMTP `AUTH PLAIN <base64>`, IMAP SASL-IR; see
    /// [`decode_initial_response`](super::decode_initial_response)), `None` if it sent none —
    /// which is not the same as an empty one (`=`).
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> Step {
        if !matches!(self.state, State::Start) {
            return self.fail(SaslError::OutOfSequence);
        }
        match (self.mechanism, initial_response) {
            (Mechanism::Plain, None) => self.challenge(State::PlainMessage, Vec::new()),
            (Mechanism::Login, None) => self.challenge(State::LoginUsername, LOGIN_USERNAME.to_vec()),
            (Mechanism::ScramSha256, None) => self.challenge(State::ScramClientFirst, Vec::new()),
            (_, Some(response)) => {
                self.state = match self.mechanism {
                    Mechanism::Plain => State::PlainMessage,
                    // `AUTH LOGIN <base64 user name>`, as many SMTP clients send it.
                    Mechanism::Login => State::LoginUsername,
                    Mechanism::ScramSha256 => State::ScramClientFirst,
                };
                self.step(response)
            }
        }
    }

    /// Takes the client's decoded response to the last challenge.
    pub fn step(&mut self, response: &[u8]) -> Step {
        if response.len() > MAX_RESPONSE_BYTES {
            return self.fail(SaslError::InputTooLong { len_bytes: response.len(), max_bytes: MAX_RESPONSE_BYTES });
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainMessage => match decode_plain(response) {
                Ok(m) => self.verify(m.authcid, m.authzid, m.password),
                Err(error) => self.fail(error),
            },
            State::LoginUsername => match identity(Field::Authcid, response) {
                Ok(authcid) => self.challenge(State::LoginPassword { authcid }, LOGIN_PASSWORD.to_vec()),
                Err(error) => self.fail(error),
            },
            State::LoginPassword { authcid } => match password(response) {
                Ok(password) => self.verify(authcid, None, password),
                Err(error) => self.fail(error),
            },
            State::ScramClientFirst => match scram::decode_client_first(response) {
                Ok(client_first) => {
                    let authcid = client_first.username().clone();
                    let authzid = super::authzid_unless_same(client_first.authzid().cloned(), &authcid);
                    self.state = State::ScramCredentials { client_first };
                    Step::NeedCredentials { authcid, authzid }
                }
                Err(error) => self.fail(error),
            },
            State::ScramClientFinal(exchange) => match exchange.finish(response) {
                Ok(server_final) => {
                    let authcid = exchange.client_first().username().clone();
                    Step::Success { authcid, authzid: exchange.authzid(), final_data: Some(server_final) }
                }
                Err(error) => self.fail(error),
            },
            State::Start | State::AwaitVerdict { .. } | State::ScramCredentials { .. } | State::Finished => {
                self.fail(SaslError::OutOfSequence)
            }
        }
    }

    /// Answers [`Step::NeedCredentials`]: the user's stored SCRAM credentials, or `None` if
    /// the user does not exist (or has no SCRAM credentials). Returns the server-first
    /// challenge either way.
    pub fn provide_credentials(&mut self, credentials: Option<ScramCredentials>) -> Step {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::ScramCredentials { client_first } => {
                let exchange = Exchange::new(
                    client_first,
                    &self.nonce,
                    credentials,
                    self.fake_salt_key.expose_secret(),
                    self.fake_iterations,
                );
                let server_first = exchange.server_first().to_vec();
                self.challenge(State::ScramClientFinal(Box::new(exchange)), server_first)
            }
            _ => self.fail(SaslError::OutOfSequence),
        }
    }

    /// Answers [`Step::Verify`]: whether the password is right for the user (`false` also
    /// for an unknown user).
    pub fn provide_verdict(&mut self, password_valid: bool) -> Step {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitVerdict { authcid, authzid } if password_valid => {
                Step::Success { authcid, authzid, final_data: None }
            }
            State::AwaitVerdict { .. } => self.fail(SaslError::AuthenticationFailed),
            _ => self.fail(SaslError::OutOfSequence),
        }
    }

    fn challenge(&mut self, next: State, challenge: Vec<u8>) -> Step {
        self.state = next;
        Step::Challenge(challenge)
    }

    fn verify(&mut self, authcid: Identity, authzid: Option<Identity>, password: Secret<String>) -> Step {
        self.state = State::AwaitVerdict { authcid: authcid.clone(), authzid: authzid.clone() };
        Step::Verify { authcid, authzid, password }
    }

    fn fail(&mut self, error: SaslError) -> Step {
        self.state = State::Finished;
        Step::Failure(error)
    }
}
