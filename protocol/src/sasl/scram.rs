//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, without channel binding.
//!
//! ```text
//! C: n,,n=user,r=<client nonce>                          client-first  -> decode_client_first
//! S: r=<client nonce><server nonce>,s=<salt>,i=<count>   server-first
//! C: c=biws,r=<both nonces>,p=<proof>                    client-final  -> decode_client_final
//! S: v=<server signature>                                server-final
//! ```
//! The server stores [`ScramCredentials`] (StoredKey and ServerKey), never the password.
//! For an unknown user it answers with credentials derived from the user name and a server
//! secret, so that the server-first message looks the same whether the user exists or not,
//! and the exchange fails at the proof like a wrong password.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{BASE64, Field, Identity, SaslError, authzid_unless_same, identity};
use crate::secret::Secret;

/// Length of SHA-256 output, and so of StoredKey, ServerKey, proofs and signatures.
pub const KEY_BYTES: usize = 32;

/// The scheme name in [`ScramCredentials::encode`]'s RFC 5803 form.
pub const SCHEME: &str = "SCRAM-SHA-256";

// ---------------------------------------------------------------------------------------------
// Stored credentials

/// What the server stores to check SCRAM-SHA-256 logins: salt, iteration count, StoredKey and
/// ServerKey (RFC 5802 section 3). The password is not recoverable from it; `Debug` redacts
/// both keys (either one lets an attacker who saw an exchange, or the client, impersonate
/// the other side).
///
/// Invariants: 1 to [`Self::MAX_SALT_BYTES`] bytes of salt, 1 to [`Self::MAX_ITERATIONS`]
/// iterations.
#[derive(Clone)]
pub struct ScramCredentials {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Secret<[u8; KEY_BYTES]>,
    server_key: Secret<[u8; KEY_BYTES]>,
}

impl ScramCredentials {
    /// Iterations for new credentials: RFC 7677's minimum.
    pub const DEFAULT_ITERATIONS: u32 = 4096;
    /// [`Self::derive`] refuses fewer iterations (RFC 7677 section 4: at least 4096).
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Every client computes PBKDF2 with this count at each login; more would only stall them.
    pub const MAX_ITERATIONS: u32 = 10_000_000;
    /// Salt length that [`Self::generate`] uses, and that unknown users get.
    pub const SALT_BYTES: usize = 16;
    /// The salt goes into every server-first message; keep it short.
    pub const MAX_SALT_BYTES: usize = 128;

    /// Derives credentials from a password: SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password),
    /// salt, iterations), then ClientKey, StoredKey and ServerKey as RFC 5802 section 3 says.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Result<Self, CredentialsError> {
        if !(Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialsError::IterationsOutOfRange { iterations });
        }
        check_salt(salt)?;
        let password = super::saslprep::prepare(password).map_err(|_| CredentialsError::ProhibitedCharacter)?;
        if password.is_empty() {
            return Err(CredentialsError::EmptyPassword);
        }
        let salted = Secret::new(pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_BYTES>(password.as_bytes(), salt, iterations));
        let client_key = Secret::new(hmac_sha256(salted.expose_secret(), &[b"Client Key"]));
        let server_key = hmac_sha256(salted.expose_secret(), &[b"Server Key"]);
        Ok(Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Secret::new(Sha256::digest(client_key.expose_secret()).into()),
            server_key: Secret::new(server_key),
        })
    }

    /// [`Self::derive`] with a fresh [`Self::SALT_BYTES`]-byte salt from `fill_random` (which
    /// must be a CSPRNG) and [`Self::DEFAULT_ITERATIONS`].
    pub fn generate(password: &str, fill_random: &mut dyn FnMut(&mut [u8])) -> Result<Self, CredentialsError> {
        let mut salt = [0; Self::SALT_BYTES];
        fill_random(&mut salt);
        Self::derive(password, &salt, Self::DEFAULT_ITERATIONS)
    }

    /// Credentials from their parts, as another server stored them. Accepts fewer iterations
    /// than [`Self::MIN_ITERATIONS`] (imports may have them); check [`Self::iterations`] and
    /// re-derive when the password is next seen in clear, if that matters.
    pub fn from_keys(
        salt: &[u8],
        iterations: u32,
        stored_key: [u8; KEY_BYTES],
        server_key: [u8; KEY_BYTES],
    ) -> Result<Self, CredentialsError> {
        if !(1..=Self::MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialsError::IterationsOutOfRange { iterations });
        }
        check_salt(salt)?;
        Ok(Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Secret::new(stored_key),
            server_key: Secret::new(server_key),
        })
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn stored_key(&self) -> &[u8; KEY_BYTES] {
        self.stored_key.expose_secret()
    }

    pub fn server_key(&self) -> &[u8; KEY_BYTES] {
        self.server_key.expose_secret()
    }

    /// The RFC 5803 storage form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// each binary part in padded base64. Treat the string as a secret.
    pub fn encode(&self) -> String {
        format!(
            "{SCHEME}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key.expose_secret()),
            BASE64.encode(self.server_key.expose_secret())
        )
    }

    /// Parses [`Self::encode`]'s form. The scheme name is matched case-insensitively.
    pub fn decode(encoded: &str) -> Result<Self, CredentialsError> {
        let (scheme, rest) = encoded.split_once('$').ok_or(CredentialsError::InvalidLayout)?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(CredentialsError::UnknownScheme);
        }
        let (params, keys) = rest.split_once('$').ok_or(CredentialsError::InvalidLayout)?;
        let (iterations, salt) = params.split_once(':').ok_or(CredentialsError::InvalidLayout)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(CredentialsError::InvalidLayout)?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CredentialsError::Malformed(CredentialPart::Iterations));
        }
        let iterations = iterations.parse().map_err(|_| CredentialsError::Malformed(CredentialPart::Iterations))?;
        let salt = BASE64.decode(salt).map_err(|_| CredentialsError::Malformed(CredentialPart::Salt))?;
        let key = |text: &str, part| -> Result<[u8; KEY_BYTES], CredentialsError> {
            let bytes = BASE64.decode(text).map_err(|_| CredentialsError::Malformed(part))?;
            bytes.try_into().map_err(|_| CredentialsError::Malformed(part))
        };
        let stored_key = key(stored_key, CredentialPart::StoredKey)?;
        let server_key = key(server_key, CredentialPart::ServerKey)?;
        Self::from_keys(&salt, iterations, stored_key, server_key)
    }

    /// Credentials for a user that does not exist: a salt derived from the user name and the
    /// server secret (stable across attempts, as a real user's is), keys nobody knows.
    pub(crate) fn fake(server_secret: &[u8; KEY_BYTES], username: &Identity, iterations: u32) -> Self {
        let name = username.as_str().as_bytes();
        let salt = hmac_sha256(server_secret, &[b"postlog scram fake salt\0", name]);
        Self {
            salt: salt[..Self::SALT_BYTES].to_vec(),
            iterations,
            stored_key: Secret::new(hmac_sha256(server_secret, &[b"postlog scram fake stored key\0", name])),
            server_key: Secret::new(hmac_sha256(server_secret, &[b"postlog scram fake server key\0", name])),
        }
    }
}

fn check_salt(salt: &[u8]) -> Result<(), CredentialsError> {
    if salt.is_empty() || salt.len() > ScramCredentials::MAX_SALT_BYTES {
        return Err(CredentialsError::SaltLength { len_bytes: salt.len() });
    }
    Ok(())
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("salt", &BASE64.encode(&self.salt))
            .field("iterations", &self.iterations)
            .field("stored_key", &self.stored_key)
            .field("server_key", &self.server_key)
            .finish()
    }
}

impl FromStr for ScramCredentials {
    type Err = CredentialsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s)
    }
}

/// A part of the stored credential string, named in [`CredentialsError::Malformed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialPart {
    Iterations,
    Salt,
    StoredKey,
    ServerKey,
}

impl fmt::Display for CredentialPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Iterations => "iteration count",
            Self::Salt => "salt",
            Self::StoredKey => "StoredKey",
            Self::ServerKey => "ServerKey",
        })
    }
}

/// Why [`ScramCredentials`] could not be derived or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsError {
    /// The password is empty (after SASLprep).
    EmptyPassword,
    /// The password holds a character SASLprep prohibits.
    ProhibitedCharacter,
    /// The salt is empty or longer than [`ScramCredentials::MAX_SALT_BYTES`].
    SaltLength { len_bytes: usize },
    /// The iteration count is outside the accepted range.
    IterationsOutOfRange { iterations: u32 },
    /// The stored string names a scheme other than `SCRAM-SHA-256`.
    UnknownScheme,
    /// The stored string is not `SCHEME$iterations:salt$StoredKey:ServerKey`.
    InvalidLayout,
    /// A part of the stored string is not what it should be (digits, base64, 32-byte keys).
    Malformed(CredentialPart),
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyPassword => f.write_str("the password is empty"),
            Self::ProhibitedCharacter => f.write_str("the password contains a character SASLprep prohibits"),
            Self::SaltLength { len_bytes } => write!(
                f,
                "the salt is {len_bytes} bytes long; it must have 1 to {} bytes",
                ScramCredentials::MAX_SALT_BYTES
            ),
            Self::IterationsOutOfRange { iterations } => write!(
                f,
                "{iterations} iterations is outside the accepted range ({} to {} for new credentials)",
                ScramCredentials::MIN_ITERATIONS,
                ScramCredentials::MAX_ITERATIONS
            ),
            Self::UnknownScheme => write!(f, "the stored credentials are not {SCHEME}"),
            Self::InvalidLayout => {
                write!(
                    f,
                    "the stored credentials are not of the form {SCHEME}$<iterations>:<salt>$<StoredKey>:<ServerKey>"
                )
            }
            Self::Malformed(part) => write!(f, "the {part} in the stored credentials is malformed"),
        }
    }
}

impl std::error::Error for CredentialsError {}

// ---------------------------------------------------------------------------------------------
// Nonces

/// The server's part of the SCRAM nonce. Taken by every [`ServerSession`](super::ServerSession),
/// so that this crate draws no randomness of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerNonce(String);

impl ServerNonce {
    /// Random bytes in a [`Self::generate`]d nonce.
    pub const RANDOM_BYTES: usize = 24;
    /// Shortest nonce [`Self::from_printable`] accepts.
    pub const MIN_CHARS: usize = 24;

    /// A nonce of [`Self::RANDOM_BYTES`] bytes from `fill_random`, which must be a CSPRNG,
    /// in base64 (32 characters).
    pub fn generate(fill_random: &mut dyn FnMut(&mut [u8])) -> Self {
        let mut bytes = [0; Self::RANDOM_BYTES];
        fill_random(&mut bytes);
        Self(BASE64.encode(bytes))
    }

    /// A nonce given as text, as in RFC test vectors: at least [`Self::MIN_CHARS`] printable
    /// ASCII characters other than `,`.
    pub fn from_printable(nonce: &str) -> Result<Self, InvalidNonce> {
        if nonce.len() < Self::MIN_CHARS || !nonce.bytes().all(is_nonce_byte) {
            return Err(InvalidNonce);
        }
        Ok(Self(nonce.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server nonce that is too short or holds a character a SCRAM nonce cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidNonce;

impl fmt::Display for InvalidNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a SCRAM server nonce needs at least {} printable ASCII characters other than ','",
            ServerNonce::MIN_CHARS
        )
    }
}

impl std::error::Error for InvalidNonce {}

/// `printable = %x21-2B / %x2D-7E` (RFC 5802 section 7).
fn is_nonce_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x2B | 0x2D..=0x7E)
}

// ---------------------------------------------------------------------------------------------
// Client messages

/// The GS2 channel-binding flag of a client-first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBindingFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not. Accepted: this server does
    /// not offer `SCRAM-SHA-256-PLUS`, so no downgrade happened.
    ClientSupported,
}

/// A decoded client-first message.
///
/// ```text
/// client-first-message = gs2-header client-first-message-bare     ; RFC 5802 section 7
/// gs2-header           = gs2-cbind-flag "," [ authzid ] ","
/// gs2-cbind-flag       = ("p=" cb-name) / "n" / "y"               ; "p=" is refused
/// authzid              = "a=" saslname
/// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
/// username             = "n=" saslname                           ; "=2C" is ",", "=3D" is "="
/// nonce                = "r=" 1*printable                        ; printable: %x21-2B / %x2D-7E
/// ```
#[derive(Clone, Debug)]
pub struct ClientFirst {
    channel_binding: ChannelBindingFlag,
    authzid: Option<Identity>,
    username: Identity,
    client_nonce: String,
    gs2_header: Vec<u8>,
    bare: Vec<u8>,
}

impl ClientFirst {
    pub fn channel_binding(&self) -> ChannelBindingFlag {
        self.channel_binding
    }

    /// The `a=` identity, as sent (SASLprep-ed), even when equal to the user name.
    pub fn authzid(&self) -> Option<&Identity> {
        self.authzid.as_ref()
    }

    /// The `n=` user name, unescaped and SASLprep-ed.
    pub fn username(&self) -> &Identity {
        &self.username
    }

    pub fn client_nonce(&self) -> &str {
        &self.client_nonce
    }

    /// The GS2 header with its final comma, e.g. `n,,`; `c=` must repeat it.
    pub fn gs2_header(&self) -> &[u8] {
        &self.gs2_header
    }

    /// The client-first-message-bare, the first part of the AuthMessage.
    pub fn bare(&self) -> &[u8] {
        &self.bare
    }
}

/// Decodes a client-first message (see [`ClientFirst`] for the grammar).
pub fn decode_client_first(message: &[u8]) -> Result<ClientFirst, SaslError> {
    let mut gs2 = message.splitn(3, |&b| b == b',');
    let flag = gs2.next().unwrap_or_default();
    let channel_binding = match flag {
        b"n" => ChannelBindingFlag::NotSupported,
        b"y" => ChannelBindingFlag::ClientSupported,
        b"" => return Err(SaslError::MissingField(Field::Gs2Header)),
        _ if flag.starts_with(b"p=") => return Err(SaslError::ChannelBindingNotSupported),
        _ => return Err(SaslError::InvalidSyntax(Field::Gs2Header)),
    };
    let (Some(authzid), Some(bare)) = (gs2.next(), gs2.next()) else {
        return Err(SaslError::InvalidSyntax(Field::Gs2Header));
    };
    let authzid = match authzid {
        b"" => None,
        a => {
            let name = a.strip_prefix(b"a=").ok_or(SaslError::InvalidSyntax(Field::Authzid))?;
            Some(saslname(Field::Authzid, name)?)
        }
    };
    let gs2_header = message[..message.len() - bare.len()].to_vec();

    let mut attributes = bare.split(|&b| b == b',');
    let first = attributes.next().unwrap_or_default();
    if first.starts_with(b"m=") {
        return Err(SaslError::ExtensionNotSupported);
    }
    let username = first.strip_prefix(b"n=").ok_or(SaslError::MissingField(Field::Authcid))?;
    let username = saslname(Field::Authcid, username)?;
    let nonce = attributes.next().and_then(|a| a.strip_prefix(b"r=")).ok_or(SaslError::MissingField(Field::Nonce))?;
    let client_nonce = nonce_text(nonce)?;
    attributes.try_for_each(extension)?;
    Ok(ClientFirst { channel_binding, authzid, username, client_nonce, gs2_header, bare: bare.to_vec() })
}

/// A decoded client-final message.
///
/// ```text
/// client-final-message = client-final-message-without-proof "," proof   ; RFC 5802 section 7
/// client-final-message-without-proof = channel-binding "," nonce ["," extensions]
/// channel-binding      = "c=" base64                                     ; of gs2-header here
/// proof                = "p=" base64                                     ; 32 bytes for SHA-256
/// ```
#[derive(Clone, Debug)]
pub struct ClientFinal {
    channel_binding: Vec<u8>,
    nonce: String,
    proof: [u8; KEY_BYTES],
    without_proof: Vec<u8>,
}

impl ClientFinal {
    /// The decoded `c=` data.
    pub fn channel_binding(&self) -> &[u8] {
        &self.channel_binding
    }

    /// The `r=` nonce: client's and server's parts together.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    pub fn proof(&self) -> &[u8; KEY_BYTES] {
        &self.proof
    }

    /// The client-final-message-without-proof, the last part of the AuthMessage.
    pub fn without_proof(&self) -> &[u8] {
        &self.without_proof
    }
}

/// Decodes a client-final message (see [`ClientFinal`] for the grammar).
pub fn decode_client_final(message: &[u8]) -> Result<ClientFinal, SaslError> {
    if !message.starts_with(b"c=") {
        return Err(SaslError::MissingField(Field::ChannelBinding));
    }
    let comma = message.iter().rposition(|&b| b == b',').ok_or(SaslError::MissingField(Field::Nonce))?;
    let (without_proof, proof) = (&message[..comma], &message[comma + 1..]);
    let proof = proof.strip_prefix(b"p=").ok_or(SaslError::MissingField(Field::Proof))?;

    let mut attributes = without_proof.split(|&b| b == b',');
    let channel_binding = attributes.next().and_then(|a| a.strip_prefix(b"c=")).unwrap_or_default();
    if channel_binding.is_empty() {
        return Err(SaslError::EmptyField(Field::ChannelBinding));
    }
    let channel_binding =
        BASE64.decode(channel_binding).map_err(|_| SaslError::InvalidSyntax(Field::ChannelBinding))?;
    let nonce = attributes.next().and_then(|a| a.strip_prefix(b"r=")).ok_or(SaslError::MissingField(Field::Nonce))?;
    let nonce = nonce_text(nonce)?;
    attributes.try_for_each(extension)?;

    if proof.is_empty() {
        return Err(SaslError::EmptyField(Field::Proof));
    }
    let proof = BASE64.decode(proof).map_err(|_| SaslError::InvalidSyntax(Field::Proof))?;
    let proof = proof.try_into().map_err(|_| SaslError::InvalidSyntax(Field::Proof))?;
    Ok(ClientFinal { channel_binding, nonce, proof, without_proof: without_proof.to_vec() })
}

/// `saslname = 1*(value-safe-char / "=2C" / "=3D")`, unescaped and made an [`Identity`].
fn saslname(field: Field, name: &[u8]) -> Result<Identity, SaslError> {
    let mut unescaped = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let (escape, tail) = tail.split_at_checked(2).ok_or(SaslError::InvalidSyntax(field))?;
            unescaped.push(match escape {
                b"2C" | b"2c" => b',',
                b"3D" | b"3d" => b'=',
                _ => return Err(SaslError::InvalidSyntax(field)),
            });
            rest = tail;
        } else {
            unescaped.push(b);
            rest = tail;
        }
    }
    identity(field, &unescaped)
}

fn nonce_text(nonce: &[u8]) -> Result<String, SaslError> {
    if nonce.is_empty() {
        return Err(SaslError::EmptyField(Field::Nonce));
    }
    if !nonce.iter().copied().all(is_nonce_byte) {
        return Err(SaslError::InvalidSyntax(Field::Nonce));
    }
    // All bytes are printable ASCII, so this is UTF-8.
    String::from_utf8(nonce.to_vec()).map_err(|_| SaslError::InvalidSyntax(Field::Nonce))
}

/// `attr-val = ALPHA "=" value`; optional extensions are checked for shape and ignored.
fn extension(attribute: &[u8]) -> Result<(), SaslError> {
    match attribute {
        [name, b'=', value @ ..] if name.is_ascii_alphabetic() && !value.is_empty() => {
            std::str::from_utf8(value).map(drop).map_err(|_| SaslError::InvalidUtf8(Field::Extension))
        }
        _ => Err(SaslError::InvalidSyntax(Field::Extension)),
    }
}

// ---------------------------------------------------------------------------------------------
// The server's side of one exchange

/// An exchange after the server-first message: what the client-final message is checked against.
#[derive(Debug)]
pub(crate) struct Exchange {
    client_first: ClientFirst,
    server_first: String,
    nonce: String,
    credentials: ScramCredentials,
    known_user: bool,
}

impl Exchange {
    /// Builds the server-first message. `None` credentials (unknown user) are replaced by fake
    /// ones, so the message has the same shape.
    pub(crate) fn new(
        client_first: ClientFirst,
        server_nonce: &ServerNonce,
        credentials: Option<ScramCredentials>,
        fake_salt_key: &[u8; KEY_BYTES],
        fake_iterations: u32,
    ) -> Self {
        let known_user = credentials.is_some();
        let credentials = credentials
            .unwrap_or_else(|| ScramCredentials::fake(fake_salt_key, client_first.username(), fake_iterations));
        let nonce = format!("{}{}", client_first.client_nonce, server_nonce.as_str());
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credentials.salt), credentials.iterations);
        Self { client_first, server_first, nonce, credentials, known_user }
    }

    pub(crate) fn server_first(&self) -> &[u8] {
        self.server_first.as_bytes()
    }

    pub(crate) fn client_first(&self) -> &ClientFirst {
        &self.client_first
    }

    /// Checks the client-final message; on success returns the server-final message
    /// `v=<ServerSignature>`.
    pub(crate) fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, SaslError> {
        let client_final = decode_client_final(client_final)?;
        // Without channel binding, c= is the base64 of the GS2 header itself.
        if client_final.channel_binding != self.client_first.gs2_header {
            return Err(SaslError::ChannelBindingMismatch);
        }
        if client_final.nonce != self.nonce {
            return Err(SaslError::NonceMismatch);
        }
        let auth_message: [&[u8]; 5] =
            [&self.client_first.bare, b",", self.server_first.as_bytes(), b",", &client_final.without_proof];
        let client_signature = hmac_sha256(self.credentials.stored_key.expose_secret(), &auth_message);
        let mut client_key = client_final.proof;
        client_key.iter_mut().zip(client_signature).for_each(|(k, s)| *k ^= s);
        let stored_key: [u8; KEY_BYTES] = Sha256::digest(client_key).into();
        let proof_ok = stored_key.ct_eq(self.credentials.stored_key.expose_secret());
        if !bool::from(proof_ok & subtle::Choice::from(u8::from(self.known_user))) {
            return Err(SaslError::InvalidProof);
        }
        let server_signature = hmac_sha256(self.credentials.server_key.expose_secret(), &auth_message);
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }

    /// The authzid to report: `None` when absent or equal to the user name.
    pub(crate) fn authzid(&self) -> Option<Identity> {
        authzid_unless_same(self.client_first.authzid.clone(), &self.client_first.username)
    }
}

fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; KEY_BYTES] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    message.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        BASE64.decode(s).unwrap()
    }

    #[test]
    fn derive_matches_rfc_7677() {
        // RFC 7677 section 3: the keys follow from "pencil", the salt and 4096 iterations;
        // checked here through the proof and signature of the test exchange.
        let credentials = ScramCredentials::derive("pencil", &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096).unwrap();
        let client_first = decode_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let nonce = ServerNonce::from_printable("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        let exchange = Exchange::new(client_first, &nonce, Some(credentials), &[7; KEY_BYTES], 4096);
        assert_eq!(
            exchange.server_first(),
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = exchange
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn derive_refuses_weak_or_bad_input() {
        assert_eq!(
            ScramCredentials::derive("pencil", b"salt", 4095).unwrap_err(),
            CredentialsError::IterationsOutOfRange { iterations: 4095 }
        );
        assert_eq!(
            ScramCredentials::derive("pencil", b"", 4096).unwrap_err(),
            CredentialsError::SaltLength { len_bytes: 0 }
        );
        assert_eq!(ScramCredentials::derive("", b"salt", 4096).unwrap_err(), CredentialsError::EmptyPassword);
        assert_eq!(ScramCredentials::derive("\u{00AD}", b"salt", 4096).unwrap_err(), CredentialsError::EmptyPassword);
        assert_eq!(
            ScramCredentials::derive("pen\ncil", b"salt", 4096).unwrap_err(),
            CredentialsError::ProhibitedCharacter
        );
    }

    #[test]
    fn saslprep_applies_to_the_password() {
        let a = ScramCredentials::derive("pen\u{00AD}cil", b"salt", 4096).unwrap();
        let b = ScramCredentials::derive("pencil", b"salt", 4096).unwrap();
        assert_eq!(a.stored_key(), b.stored_key());
    }

    #[test]
    fn storage_form_round_trips() {
        let credentials = ScramCredentials::derive("pencil", &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096).unwrap();
        let encoded = credentials.encode();
        assert!(encoded.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"), "{encoded}");
        let decoded: ScramCredentials = encoded.parse().unwrap();
        assert_eq!(decoded.encode(), encoded);
        assert_eq!(decoded.salt(), credentials.salt());
        assert_eq!(decoded.iterations(), 4096);
        assert_eq!(decoded.stored_key(), credentials.stored_key());
        assert_eq!(decoded.server_key(), credentials.server_key());
    }

    #[test]
    fn storage_form_errors() {
        let key = BASE64.encode([1; KEY_BYTES]);
        let short = BASE64.encode([1; 31]);
        let cases = [
            ("", CredentialsError::InvalidLayout),
            ("SCRAM-SHA-1$4096:c2FsdA==$a:b", CredentialsError::UnknownScheme),
            ("SCRAM-SHA-256$4096:c2FsdA==", CredentialsError::InvalidLayout),
            ("SCRAM-SHA-256$4096c2FsdA==$a:b", CredentialsError::InvalidLayout),
            (
                &format!("SCRAM-SHA-256$+4096:c2FsdA==${key}:{key}"),
                CredentialsError::Malformed(CredentialPart::Iterations),
            ),
            (
                &format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
                CredentialsError::Malformed(CredentialPart::Iterations),
            ),
            (
                &format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
                CredentialsError::IterationsOutOfRange { iterations: 0 },
            ),
            (&format!("SCRAM-SHA-256$4096:c2F!dA==${key}:{key}"), CredentialsError::Malformed(CredentialPart::Salt)),
            (&format!("SCRAM-SHA-256$4096:${key}:{key}"), CredentialsError::SaltLength { len_bytes: 0 }),
            (
                &format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
                CredentialsError::Malformed(CredentialPart::StoredKey),
            ),
            (
                &format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
                CredentialsError::Malformed(CredentialPart::ServerKey),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(ScramCredentials::decode(input).unwrap_err(), expected, "{input}");
        }
        // Imported credentials may have fewer iterations than new ones.
        assert_eq!(ScramCredentials::decode(&format!("scram-sha-256$1:c2FsdA==${key}:{key}")).unwrap().iterations(), 1);
    }

    #[test]
    fn debug_redacts_keys() {
        let credentials = ScramCredentials::derive("pencil", b"salt", 4096).unwrap();
        let debug = format!("{credentials:?}");
        assert!(!debug.contains(&BASE64.encode(credentials.stored_key())), "{debug}");
        assert!(!debug.contains(&BASE64.encode(credentials.server_key())), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn nonces() {
        let mut counter = 0u8;
        let nonce = ServerNonce::generate(&mut |buf: &mut [u8]| {
            buf.iter_mut().for_each(|b| {
                *b = counter;
                counter = counter.wrapping_add(1);
            })
        });
        assert_eq!(nonce.as_str().len(), 32);
        assert_eq!(BASE64.decode(nonce.as_str()).unwrap(), (0..24).collect::<Vec<u8>>());
        assert_eq!(ServerNonce::from_printable("short"), Err(InvalidNonce));
        assert_eq!(ServerNonce::from_printable("abcdefghijklmnopqrstuvwx,z"), Err(InvalidNonce));
        assert!(ServerNonce::from_printable("abcdefghijklmnopqrstuvwx").is_ok());
    }

    #[test]
    fn client_first_fields() {
        let m = decode_client_first(b"y,a=ad=2Cmin,n=us=3Der,r=abc,x=ext").unwrap();
        assert_eq!(m.channel_binding(), ChannelBindingFlag::ClientSupported);
        assert_eq!(m.authzid().map(Identity::as_str), Some("ad,min"));
        assert_eq!(m.username(), "us=er");
        assert_eq!(m.client_nonce(), "abc");
        assert_eq!(m.gs2_header(), b"y,a=ad=2Cmin,");
        assert_eq!(m.bare(), b"n=us=3Der,r=abc,x=ext");
    }

    #[test]
    fn client_first_errors() {
        use SaslError::*;
        let cases: [(&[u8], SaslError); 19] = [
            (b"", MissingField(Field::Gs2Header)),
            (b"x,,n=user,r=abc", InvalidSyntax(Field::Gs2Header)),
            (b"nn,,n=user,r=abc", InvalidSyntax(Field::Gs2Header)),
            (b"p=tls-unique,,n=user,r=abc", ChannelBindingNotSupported),
            (b"n", InvalidSyntax(Field::Gs2Header)),
            (b"n,", InvalidSyntax(Field::Gs2Header)),
            (b"n,b=x,n=user,r=abc", InvalidSyntax(Field::Authzid)),
            (b"n,a=,n=user,r=abc", EmptyField(Field::Authzid)),
            (b"n,,", MissingField(Field::Authcid)),
            (b"n,,m=x,n=user,r=abc", ExtensionNotSupported),
            (b"n,,r=abc,n=user", MissingField(Field::Authcid)),
            (b"n,,n=user", MissingField(Field::Nonce)),
            (b"n,,n=user,r=", EmptyField(Field::Nonce)),
            (b"n,,n=user,r=a\x7fc", InvalidSyntax(Field::Nonce)),
            (b"n,,n=us=2,r=abc", InvalidSyntax(Field::Authcid)),
            (b"n,,n=us=41er,r=abc", InvalidSyntax(Field::Authcid)),
            (b"n,,n=\xff,r=abc", InvalidUtf8(Field::Authcid)),
            (b"n,,n=user,r=abc,=x", InvalidSyntax(Field::Extension)),
            (b"n,,n=user,r=abc,x=\xff", InvalidUtf8(Field::Extension)),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_client_first(input).unwrap_err(), expected, "{}", input.escape_ascii());
        }
    }

    #[test]
    fn client_final_errors() {
        use SaslError::*;
        let proof = BASE64.encode([0; KEY_BYTES]);
        let short = BASE64.encode([0; 31]);
        let cases: [(Vec<u8>, SaslError); 10] = [
            (b"".to_vec(), MissingField(Field::ChannelBinding)),
            (b"r=abc,c=biws,p=x".to_vec(), MissingField(Field::ChannelBinding)),
            (b"c=biws".to_vec(), MissingField(Field::Nonce)),
            (format!("c=biws,p={proof}").into_bytes(), MissingField(Field::Nonce)),
            (b"c=biws,r=abc".to_vec(), MissingField(Field::Proof)),
            (format!("c=,r=abc,p={proof}").into_bytes(), EmptyField(Field::ChannelBinding)),
            (format!("c=bi!s,r=abc,p={proof}").into_bytes(), InvalidSyntax(Field::ChannelBinding)),
            (b"c=biws,r=abc,p=".to_vec(), EmptyField(Field::Proof)),
            (b"c=biws,r=abc,p=!!!!".to_vec(), InvalidSyntax(Field::Proof)),
            (format!("c=biws,r=abc,p={short}").into_bytes(), InvalidSyntax(Field::Proof)),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_client_final(&input).unwrap_err(), expected, "{}", input.escape_ascii());
        }
        let ok = decode_client_final(format!("c=biws,r=abc,x=1,p={proof}").as_bytes()).unwrap();
        assert_eq!(ok.channel_binding(), b"n,,");
        assert_eq!(ok.nonce(), "abc");
        assert_eq!(ok.without_proof(), b"c=biws,r=abc,x=1");
    }

    #[test]
    fn fake_credentials_are_stable_per_user_and_secret() {
        let user = Identity::new("nobody").unwrap();
        let other = Identity::new("nobody2").unwrap();
        let a = ScramCredentials::fake(&[1; KEY_BYTES], &user, 4096);
        assert_eq!(a.salt(), ScramCredentials::fake(&[1; KEY_BYTES], &user, 4096).salt());
        assert_ne!(a.salt(), ScramCredentials::fake(&[2; KEY_BYTES], &user, 4096).salt());
        assert_ne!(a.salt(), ScramCredentials::fake(&[1; KEY_BYTES], &other, 4096).salt());
        assert_eq!(a.salt().len(), ScramCredentials::SALT_BYTES);
    }
}
