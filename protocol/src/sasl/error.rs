//! Why a SASL exchange failed.

use std::fmt;

/// A part of a client's SASL message, named in [`SaslError`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The authorization identity: PLAIN's authzid, SCRAM's `a=`.
    Authzid,
    /// The authentication identity: PLAIN's authcid, LOGIN's user name, SCRAM's `n=`.
    Authcid,
    /// PLAIN's passwd, LOGIN's password.
    Password,
    /// SCRAM's GS2 header: channel-binding flag and authzid, `n,,`.
    Gs2Header,
    /// SCRAM's `r=` nonce.
    Nonce,
    /// SCRAM's `c=` channel-binding data.
    ChannelBinding,
    /// SCRAM's `p=` client proof.
    Proof,
    /// An optional SCRAM extension attribute.
    Extension,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authzid => "authorization identity",
            Self::Authcid => "authentication identity",
            Self::Password => "password",
            Self::Gs2Header => "GS2 header",
            Self::Nonce => "nonce",
            Self::ChannelBinding => "channel binding",
            Self::Proof => "client proof",
            Self::Extension => "extension attribute",
        })
    }
}

/// Why a SASL exchange failed. Every failure ends the exchange.
///
/// Whatever the client sends, it ends up here and never in a panic. None of these says
/// whether the user exists: an unknown SCRAM user fails with [`SaslError::InvalidProof`],
/// exactly like a wrong password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client cancelled the exchange with `*`.
    Cancelled,
    /// A response line is not base64.
    InvalidBase64,
    /// A response is larger than the limit; `len_bytes` and `max_bytes` are both encoded
    /// (from [`decode_response`](super::decode_response)) or both decoded (from the session).
    InputTooLong { len_bytes: usize, max_bytes: usize },
    /// A required part of the message is absent (e.g. PLAIN without its NUL separators).
    MissingField(Field),
    /// A part that must not be empty is empty.
    EmptyField(Field),
    /// A part is longer than its limit.
    FieldTooLong { field: Field, max_bytes: usize },
    /// A part that must be UTF-8 is not.
    InvalidUtf8(Field),
    /// A part contains a character SASLprep (RFC 4013) prohibits, such as a control character.
    ProhibitedCharacter(Field),
    /// A part does not follow the mechanism's grammar.
    InvalidSyntax(Field),
    /// SCRAM: the client sent a mandatory extension (`m=`), and none is supported.
    ExtensionNotSupported,
    /// SCRAM: the client asked for channel binding (`p=`); no `-PLUS` mechanism is offered.
    ChannelBindingNotSupported,
    /// SCRAM: the client-final `c=` does not repeat the client-first GS2 header.
    ChannelBindingMismatch,
    /// SCRAM: the client-final `r=` is not the nonce the server sent.
    NonceMismatch,
    /// SCRAM: the proof does not match the stored key, or the user is unknown.
    InvalidProof,
    /// PLAIN/LOGIN: the caller rejected the password, or the user is unknown.
    AuthenticationFailed,
    /// A [`ServerSession`](super::ServerSession) method was called in a state that does not
    /// take it (a front-end bug, or input after the exchange ended).
    OutOfSequence,
}

/// How a front end should answer a [`SaslError`], whatever the mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The client cancelled: SMTP `501`, IMAP `BAD`, POP3 `-ERR`.
    Cancelled,
    /// The client broke the protocol: SMTP `501`, IMAP `BAD`, POP3 `-ERR`.
    Malformed,
    /// Wrong credentials or unknown user: SMTP `535 5.7.8`, IMAP `NO [AUTHENTICATIONFAILED]`,
    /// POP3 `-ERR [AUTH]`.
    Rejected,
}

impl SaslError {
    /// How a front end should answer this failure.
    pub const fn class(&self) -> ErrorClass {
        match self {
            Self::Cancelled => ErrorClass::Cancelled,
            Self::InvalidProof | Self::AuthenticationFailed => ErrorClass::Rejected,
            _ => ErrorClass::Malformed,
        }
    }

    /// The RFC 5802 `server-error-value` for a SCRAM failure, for protocols or logs that carry
    /// it as `e=<value>`. `None` for failures that are not SCRAM's own.
    pub const fn scram_error_value(&self) -> Option<&'static str> {
        Some(match self {
            Self::ExtensionNotSupported => "extensions-not-supported",
            Self::ChannelBindingNotSupported => "channel-binding-not-supported",
            Self::ChannelBindingMismatch => "channel-bindings-dont-match",
            Self::InvalidProof => "invalid-proof",
            Self::NonceMismatch => "other-error",
            Self::MissingField(Field::Authcid)
            | Self::EmptyField(Field::Authcid)
            | Self::FieldTooLong { field: Field::Authcid, .. }
            | Self::InvalidUtf8(Field::Authcid)
            | Self::ProhibitedCharacter(Field::Authcid)
            | Self::InvalidSyntax(Field::Authcid) => "invalid-username-encoding",
            Self::MissingField(_)
            | Self::EmptyField(_)
            | Self::FieldTooLong { .. }
            | Self::InvalidUtf8(_)
            | Self::ProhibitedCharacter(_)
            | Self::InvalidSyntax(_) => "invalid-encoding",
            Self::Cancelled
            | Self::InvalidBase64
            | Self::InputTooLong { .. }
            | Self::AuthenticationFailed
            | Self::OutOfSequence => return None,
        })
    }
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("the client cancelled the authentication exchange"),
            Self::InvalidBase64 => f.write_str("the client's response is not valid base64"),
            Self::InputTooLong { len_bytes, max_bytes } => {
                write!(f, "the client's response is {len_bytes} bytes long, over the limit of {max_bytes} bytes")
            }
            Self::MissingField(field) => write!(f, "the client's message lacks the {field}"),
            Self::EmptyField(field) => write!(f, "the {field} in the client's message is empty"),
            Self::FieldTooLong { field, max_bytes } => {
                write!(f, "the {field} in the client's message is longer than {max_bytes} bytes")
            }
            Self::InvalidUtf8(field) => write!(f, "the {field} in the client's message is not UTF-8"),
            Self::ProhibitedCharacter(field) => {
                write!(f, "the {field} in the client's message contains a character SASLprep prohibits")
            }
            Self::InvalidSyntax(field) => write!(f, "the {field} in the client's message is malformed"),
            Self::ExtensionNotSupported => f.write_str("the client requires a SCRAM extension that is not supported"),
            Self::ChannelBindingNotSupported => {
                f.write_str("the client requires channel binding, which this server does not offer")
            }
            Self::ChannelBindingMismatch => {
                f.write_str("the client's channel-binding data does not match its first message")
            }
            Self::NonceMismatch => f.write_str("the client's final message does not carry the server's nonce"),
            Self::InvalidProof => f.write_str("authentication failed: the client proof is not valid"),
            Self::AuthenticationFailed => f.write_str("authentication failed: invalid credentials"),
            Self::OutOfSequence => {
                f.write_str("the authentication exchange received input it did not expect at this point")
            }
        }
    }
}

impl std::error::Error for SaslError {}

/// The client named a SASL mechanism this crate does not implement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMechanism {
    /// The name as the client sent it, cut to [`UnknownMechanism::MAX_NAME_CHARS`] characters.
    pub name: String,
}

impl UnknownMechanism {
    /// Mechanism names have at most 20 characters (RFC 4422 section 3.1); a few more are kept
    /// so that a log shows the name was too long.
    pub const MAX_NAME_CHARS: usize = 24;

    pub(crate) fn new(name: &str) -> Self {
        Self { name: name.chars().take(Self::MAX_NAME_CHARS).collect() }
    }
}

impl fmt::Display for UnknownMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown SASL mechanism {:?}", self.name)
    }
}

impl std::error::Error for UnknownMechanism {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(SaslError::Cancelled.class(), ErrorClass::Cancelled);
        assert_eq!(SaslError::InvalidProof.class(), ErrorClass::Rejected);
        assert_eq!(SaslError::AuthenticationFailed.class(), ErrorClass::Rejected);
        assert_eq!(SaslError::InvalidBase64.class(), ErrorClass::Malformed);
        assert_eq!(SaslError::ChannelBindingNotSupported.class(), ErrorClass::Malformed);
    }

    #[test]
    fn scram_error_values() {
        assert_eq!(SaslError::ChannelBindingNotSupported.scram_error_value(), Some("channel-binding-not-supported"));
        assert_eq!(SaslError::InvalidProof.scram_error_value(), Some("invalid-proof"));
        assert_eq!(SaslError::InvalidSyntax(Field::Authcid).scram_error_value(), Some("invalid-username-encoding"));
        assert_eq!(SaslError::InvalidSyntax(Field::Proof).scram_error_value(), Some("invalid-encoding"));
        assert_eq!(SaslError::AuthenticationFailed.scram_error_value(), None);
    }

    #[test]
    fn unknown_mechanism_name_is_cut() {
        let long = "X".repeat(10_000);
        let error = UnknownMechanism::new(&long);
        assert_eq!(error.name.len(), UnknownMechanism::MAX_NAME_CHARS);
        assert_eq!(UnknownMechanism::new("CRAM-MD5").to_string(), "unknown SASL mechanism \"CRAM-MD5\"");
    }
}
