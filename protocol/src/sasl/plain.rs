//! PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`.

use super::{Field, Identity, SaslError, authzid_unless_same, identity, password};
use crate::secret::Secret;

/// A decoded PLAIN message.
#[derive(Clone, Debug)]
pub struct PlainMessage {
    /// The identity whose password this is.
    pub authcid: Identity,
    /// The identity to act as, when the client named one other than `authcid`; an empty
    /// authzid or one equal to `authcid` is `None`.
    pub authzid: Option<Identity>,
    /// The password, SASLprep-ed.
    pub password: Secret<String>,
}

/// Decodes a PLAIN message (the client's decoded response).
///
/// ```text
/// message = [authzid] UTF8NUL authcid UTF8NUL passwd    ; RFC 4616 section 2
/// ```
pub fn decode_plain(message: &[u8]) -> Result<PlainMessage, SaslError> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let authzid = parts.next().unwrap_or_default();
    let authcid = parts.next().ok_or(SaslError::MissingField(Field::Authcid))?;
    // A NUL inside passwd stays in this last part, and SASLprep refuses it as a control character.
    let passwd = parts.next().ok_or(SaslError::MissingField(Field::Password))?;
    let authcid = identity(Field::Authcid, authcid)?;
    let authzid = if authzid.is_empty() { None } else { Some(identity(Field::Authzid, authzid)?) };
    let password = password(passwd)?;
    Ok(PlainMessage { authzid: authzid_unless_same(authzid, &authcid), authcid, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_authzid() {
        let m = decode_plain(b"\0tim\0tanstaaftanstaaf").unwrap();
        assert_eq!(m.authcid, "tim");
        assert_eq!(m.authzid, None);
        assert_eq!(m.password.expose_secret(), "tanstaaftanstaaf");
    }

    #[test]
    fn authzid_equal_to_authcid_is_dropped() {
        let m = decode_plain(b"tim\0tim\0pw").unwrap();
        assert_eq!(m.authzid, None);
    }

    #[test]
    fn other_authzid_is_kept() {
        // RFC 4616 section 4 example.
        let m = decode_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(m.authcid, "Kurt");
        assert_eq!(m.authzid.as_ref().map(Identity::as_str), Some("Ursel"));
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_plain(b"").unwrap_err(), SaslError::MissingField(Field::Authcid));
        assert_eq!(decode_plain(b"tim").unwrap_err(), SaslError::MissingField(Field::Authcid));
        assert_eq!(decode_plain(b"\0tim").unwrap_err(), SaslError::MissingField(Field::Password));
        assert_eq!(decode_plain(b"\0\0pw").unwrap_err(), SaslError::EmptyField(Field::Authcid));
        assert_eq!(decode_plain(b"\0tim\0").unwrap_err(), SaslError::EmptyField(Field::Password));
        assert_eq!(decode_plain(b"\0tim\0pw\0x").unwrap_err(), SaslError::ProhibitedCharacter(Field::Password));
        assert_eq!(decode_plain(b"\0t\xffm\0pw").unwrap_err(), SaslError::InvalidUtf8(Field::Authcid));
        assert_eq!(decode_plain(b"\x80\0tim\0pw").unwrap_err(), SaslError::InvalidUtf8(Field::Authzid));
        assert_eq!(decode_plain(b"\0tim\0p\xc3").unwrap_err(), SaslError::InvalidUtf8(Field::Password));
        assert_eq!(decode_plain(b"\0t\tm\0pw").unwrap_err(), SaslError::ProhibitedCharacter(Field::Authcid));
        let long = [&b"\0"[..], &[b'a'; 256], b"\0pw"].concat();
        assert_eq!(
            decode_plain(&long).unwrap_err(),
            SaslError::FieldTooLong { field: Field::Authcid, max_bytes: Identity::MAX_BYTES }
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let m = decode_plain(b"\0tim\0tanstaaf").unwrap();
        assert!(!format!("{m:?}").contains("tanstaaf"));
    }
}
