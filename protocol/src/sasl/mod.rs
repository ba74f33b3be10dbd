//! SASL (RFC 4422), server side: one layer under SMTP `AUTH` (RFC 4954), IMAP `AUTHENTICATE`
//! (RFC 9051, SASL-IR RFC 4959) and POP3 `AUTH` (RFC 5034).
//!
//! Mechanisms: `PLAIN` (RFC 4616), `LOGIN` (the de-facto `Username:`/`Password:` exchange)
//! and `SCRAM-SHA-256` (RFC 5802, RFC 7677) without channel binding. The front ends know
//! none of them: they move base64 lines and answer two kinds of question.
//!
//! ```text
//!  client line ──decode_response──► ServerSession::step ──► Step::Challenge ──encode_challenge──► "334 "/"+ "
//!  "AUTH X <b64>" ─decode_initial_response─► start(Some)        Step::NeedCredentials ─► store: SCRAM keys
//!                                            provide_credentials ◄──────────────────────────┘
//!                                                                Step::Verify ─► store: check password
//!                                            provide_verdict ◄──────────────────────────────┘
//!                                                                Step::Success / Step::Failure
//! ```
//!
//! Deliberately not here: which mechanisms to advertise (the front end decides, e.g. no
//! cleartext ones before TLS: [`Mechanism::sends_password_in_clear`]), password storage and
//! checking, authorization of an authzid, rate limiting, randomness (the caller supplies nonces
//! and salts), channel binding (`-PLUS`), security layers (none of these mechanisms has one).
//!
//! # Driving a session
//!
//! ```
//! use postlog_protocol::sasl::{
//!     decode_initial_response, decode_response, encode_challenge, ScramCredentials, ServerConfig,
//!     ServerNonce, ServerSession, Step,
//! };
//!
//! let config = ServerConfig::new([42; 32]); // a stable, random server secret
//! let mut rng = |buf: &mut [u8]| buf.fill(7); // a CSPRNG in real life
//! let mut session = ServerSession::new("plain", &config, ServerNonce::generate(&mut rng)).unwrap();
//!
//! // C: AUTH PLAIN AHRpbQB0YW5zdGFhZg==
//! let mut step = match decode_initial_response(b"AHRpbQB0YW5zdGFhZg==") {
//!     Ok(response) => session.start(Some(&response)),
//!     Err(error) => Step::Failure(error),
//! };
//! let outcome = loop {
//!     step = match step {
//!         Step::Challenge(challenge) => {
//!             let _line = format!("334 {}", encode_challenge(&challenge));
//!             // ...send it, read the client's line...
//!             match decode_response(b"*") {
//!                 Ok(response) => session.step(&response),
//!                 Err(error) => Step::Failure(error),
//!             }
//!         }
//!         Step::NeedCredentials { authcid, .. } => {
//!             let stored = (authcid == "tim").then(|| ScramCredentials::generate("tanstaaf", &mut rng).unwrap());
//!             session.provide_credentials(stored)
//!         }
//!         Step::Verify { authcid, password, .. } => {
//!             session.provide_verdict(authcid == "tim" && password.expose_secret() == "tanstaaf")
//!         }
//!         done @ (Step::Success { .. } | Step::Failure(_)) => break done,
//!     };
//! };
//! assert!(matches!(outcome, Step::Success { authcid, authzid: None, final_data: None } if authcid == "tim"));
//! ```

mod error;
mod plain;
pub mod saslprep;
pub mod scram;
mod session;

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub use error::{ErrorClass, Field, SaslError, UnknownMechanism};
pub use plain::{PlainMessage, decode_plain};
pub use scram::{CredentialsError, ScramCredentials, ServerNonce, decode_client_final, decode_client_first};
pub use session::{ServerConfig, ServerSession, Step};

use crate::secret::Secret;

/// Largest decoded client response a session takes: far above any real PLAIN or SCRAM message.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024;
/// Largest base64 response line [`decode_response`] takes: [`MAX_RESPONSE_BYTES`], encoded.
pub const MAX_ENCODED_RESPONSE_BYTES: usize = MAX_RESPONSE_BYTES.div_ceil(3) * 4;

/// Standard alphabet; encodes with padding, decodes with or without it (clients differ).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a client's response line to a challenge (without its CRLF, though a trailing CRLF
/// or LF is tolerated). `*` cancels the exchange: [`SaslError::Cancelled`]. An empty line is an
/// empty response. An error here ends the exchange as a [`Step::Failure`] would: drop the
/// session.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = strip_line_end(line);
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    decode_base64(line)
}

/// Decodes an initial response given with the command (SMTP `AUTH PLAIN <b64>`, IMAP SASL-IR,
/// POP3 `AUTH PLAIN <b64>`): `=` is an empty response. Pass `None` to
/// [`ServerSession::start`] when there is no argument at all.
pub fn decode_initial_response(argument: &[u8]) -> Result<Vec<u8>, SaslError> {
    match strip_line_end(argument) {
        b"=" => Ok(Vec::new()),
        argument => decode_base64(argument),
    }
}

/// Base64 of a challenge, for `334 <b64>` (SMTP) or `+ <b64>` (IMAP, POP3); empty for an empty
/// challenge.
pub fn encode_challenge(challenge: &[u8]) -> String {
    BASE64.encode(challenge)
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
        None => line,
    }
}

fn decode_base64(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    if text.len() > MAX_ENCODED_RESPONSE_BYTES {
        return Err(SaslError::InputTooLong { len_bytes: text.len(), max_bytes: MAX_ENCODED_RESPONSE_BYTES });
    }
    BASE64.decode(text).map_err(|_| SaslError::InvalidBase64)
}

/// A SASL mechanism this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`, RFC 4616.
    Plain,
    /// `LOGIN`, draft-murchison-sasl-login.
    Login,
    /// `SCRAM-SHA-256`, RFC 7677.
    ScramSha256,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order to advertise them in.
    pub const ALL: [Self; 3] = [Self::ScramSha256, Self::Plain, Self::Login];

    /// Parses a mechanism name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Result<Self, UnknownMechanism> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name)).ok_or_else(|| UnknownMechanism::new(name))
    }

    /// The registered name, upper case.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Whether the password crosses the wire as is (only base64-encoded): such mechanisms
    /// belong only on TLS connections.
    pub const fn sends_password_in_clear(self) -> bool {
        matches!(self, Self::Plain | Self::Login)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = UnknownMechanism;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
    }
}

/// An authentication or authorization identity, prepared with SASLprep.
///
/// Invariants: valid UTF-8, 1 to [`Identity::MAX_BYTES`] bytes after SASLprep, no character
/// SASLprep prohibits (so no control characters). Compared byte for byte: whether
/// `Tim@Example.org` is `tim@example.org` is the account store's business.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    /// RFC 4616 section 2 requires servers to take identities of up to 255 bytes; longer ones
    /// are no real user name.
    pub const MAX_BYTES: usize = 255;

    pub fn new(name: &str) -> Result<Self, IdentityError> {
        let prepared = saslprep::prepare(name).map_err(|_| IdentityError::ProhibitedCharacter)?;
        if prepared.is_empty() {
            return Err(IdentityError::Empty);
        }
        if prepared.len() > Self::MAX_BYTES {
            return Err(IdentityError::TooLong { len_bytes: prepared.len() });
        }
        Ok(Self(prepared.into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Identity {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Identity {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Why a string is not an [`Identity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityError {
    Empty,
    TooLong { len_bytes: usize },
    ProhibitedCharacter,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the identity is empty"),
            Self::TooLong { len_bytes } => {
                write!(f, "the identity is {len_bytes} bytes long, over the limit of {} bytes", Identity::MAX_BYTES)
            }
            Self::ProhibitedCharacter => f.write_str("the identity contains a character SASLprep prohibits"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Bytes from a client message as an [`Identity`], with the error naming `field`.
fn identity(field: Field, bytes: &[u8]) -> Result<Identity, SaslError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SaslError::InvalidUtf8(field))?;
    Identity::new(text).map_err(|error| match error {
        IdentityError::Empty => SaslError::EmptyField(field),
        IdentityError::TooLong { .. } => SaslError::FieldTooLong { field, max_bytes: Identity::MAX_BYTES },
        IdentityError::ProhibitedCharacter => SaslError::ProhibitedCharacter(field),
    })
}

/// Bytes from a client message as a SASLprep-ed, non-empty password.
fn password(bytes: &[u8]) -> Result<Secret<String>, SaslError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SaslError::InvalidUtf8(Field::Password))?;
    let prepared = saslprep::prepare(text).map_err(|_| SaslError::ProhibitedCharacter(Field::Password))?;
    if prepared.is_empty() {
        return Err(SaslError::EmptyField(Field::Password));
    }
    Ok(Secret::new(prepared.into_owned()))
}

/// An authzid equal to the authcid asks for nothing: report it as absent.
fn authzid_unless_same(authzid: Option<Identity>, authcid: &Identity) -> Option<Identity> {
    authzid.filter(|authzid| authzid != authcid)
}

#[cfg(test)]
mod tests;
