//! Unit tests of the session state machine and the line helpers.

use super::*;

fn config() -> ServerConfig {
    ServerConfig::new([9; 32])
}

fn nonce() -> ServerNonce {
    ServerNonce::from_printable("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap()
}

fn session(name: &str) -> ServerSession {
    ServerSession::new(name, &config(), nonce()).unwrap()
}

fn failure(step: Step) -> SaslError {
    match step {
        Step::Failure(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(challenge) => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

#[test]
fn mechanism_names() {
    assert_eq!(Mechanism::from_name("plain").unwrap(), Mechanism::Plain);
    assert_eq!(Mechanism::from_name("Scram-Sha-256").unwrap(), Mechanism::ScramSha256);
    assert_eq!("LOGIN".parse::<Mechanism>().unwrap(), Mechanism::Login);
    assert_eq!(Mechanism::from_name("SCRAM-SHA-256-PLUS").unwrap_err().name, "SCRAM-SHA-256-PLUS");
    assert!(Mechanism::from_name("").is_err());
    assert!(Mechanism::Plain.sends_password_in_clear());
    assert!(!Mechanism::ScramSha256.sends_password_in_clear());
    assert_eq!(Mechanism::ALL.map(Mechanism::name), ["SCRAM-SHA-256", "PLAIN", "LOGIN"]);
    assert!(ServerSession::new("CRAM-MD5", &config(), nonce()).is_err());
}

#[test]
fn response_lines() {
    assert_eq!(decode_response(b"dGlt").unwrap(), b"tim");
    assert_eq!(decode_response(b"dGlt\r\n").unwrap(), b"tim");
    assert_eq!(decode_response(b"dA").unwrap(), b"t", "padding is optional");
    assert_eq!(decode_response(b"").unwrap(), b"");
    assert_eq!(decode_response(b"*"), Err(SaslError::Cancelled));
    assert_eq!(decode_response(b"*\r\n"), Err(SaslError::Cancelled));
    assert_eq!(decode_response(b"dGlt!"), Err(SaslError::InvalidBase64));
    assert_eq!(decode_response(b"dG lt"), Err(SaslError::InvalidBase64));
    assert_eq!(decode_response(b"="), Err(SaslError::InvalidBase64));
    let long = vec![b'A'; MAX_ENCODED_RESPONSE_BYTES + 4];
    assert_eq!(
        decode_response(&long),
        Err(SaslError::InputTooLong { len_bytes: long.len(), max_bytes: MAX_ENCODED_RESPONSE_BYTES })
    );
    assert_eq!(decode_response(&vec![b'A'; MAX_ENCODED_RESPONSE_BYTES]).unwrap().len(), MAX_RESPONSE_BYTES + 1);

    assert_eq!(decode_initial_response(b"=").unwrap(), b"");
    assert_eq!(decode_initial_response(b"dGlt").unwrap(), b"tim");
    assert_eq!(decode_initial_response(b"*"), Err(SaslError::InvalidBase64));

    assert_eq!(encode_challenge(b""), "");
    assert_eq!(encode_challenge(b"Username:"), "VXNlcm5hbWU6");
}

#[test]
fn identities() {
    assert_eq!(Identity::new("tim").unwrap(), "tim");
    assert_eq!(Identity::new("ti\u{00AD}m").unwrap().as_str(), "tim");
    assert_eq!(Identity::new(""), Err(IdentityError::Empty));
    assert_eq!(Identity::new("\u{200B}"), Err(IdentityError::Empty));
    assert_eq!(Identity::new("a\u{0}b"), Err(IdentityError::ProhibitedCharacter));
    assert_eq!(Identity::new(&"x".repeat(256)), Err(IdentityError::TooLong { len_bytes: 256 }));
    assert!(Identity::new(&"x".repeat(255)).is_ok());
}

#[test]
fn plain_without_initial_response() {
    let mut s = session("PLAIN");
    assert_eq!(challenge(s.start(None)), b"");
    let Step::Verify { authcid, authzid, password } = s.step(b"\0tim\0tanstaaf") else { panic!() };
    assert_eq!((authcid.as_str(), authzid, password.expose_secret().as_str()), ("tim", None, "tanstaaf"));
    let Step::Success { authcid, authzid: None, final_data: None } = s.provide_verdict(true) else { panic!() };
    assert_eq!(authcid, "tim");
    assert!(s.is_finished());
    assert_eq!(failure(s.step(b"")), SaslError::OutOfSequence);
}

#[test]
fn plain_rejected_password() {
    let mut s = session("PLAIN");
    assert!(matches!(s.start(Some(b"\0tim\0wrong")), Step::Verify { .. }));
    assert_eq!(failure(s.provide_verdict(false)), SaslError::AuthenticationFailed);
    assert!(s.is_finished());
}

#[test]
fn plain_empty_initial_response_is_not_absent() {
    let mut s = session("PLAIN");
    assert_eq!(failure(s.start(Some(b""))), SaslError::MissingField(Field::Authcid));
}

#[test]
fn login_two_steps_and_initial_user_name() {
    let mut s = session("LOGIN");
    assert_eq!(challenge(s.start(None)), b"Username:");
    assert_eq!(challenge(s.step(b"tim")), b"Password:");
    let Step::Verify { authcid, authzid: None, password } = s.step(b"tanstaaf") else { panic!() };
    assert_eq!((authcid.as_str(), password.expose_secret().as_str()), ("tim", "tanstaaf"));
    assert!(matches!(s.provide_verdict(true), Step::Success { final_data: None, .. }));

    let mut s = session("login");
    assert_eq!(challenge(s.start(Some(b"tim"))), b"Password:");
    assert!(matches!(s.step(b"tanstaaf"), Step::Verify { .. }));
}

#[test]
fn login_malformed() {
    let mut s = session("LOGIN");
    let _ = s.start(None);
    assert_eq!(failure(s.step(b"")), SaslError::EmptyField(Field::Authcid));
    let mut s = session("LOGIN");
    let _ = s.start(None);
    let _ = s.step(b"tim");
    assert_eq!(failure(s.step(b"")), SaslError::EmptyField(Field::Password));
    let mut s = session("LOGIN");
    let _ = s.start(None);
    let _ = s.step(b"tim");
    assert_eq!(failure(s.step(b"pass\x01word")), SaslError::ProhibitedCharacter(Field::Password));
}

#[test]
fn calls_out_of_sequence_fail() {
    let mut s = session("PLAIN");
    assert_eq!(failure(s.step(b"\0tim\0pw")), SaslError::OutOfSequence, "step before start");
    let mut s = session("PLAIN");
    let _ = s.start(None);
    assert_eq!(failure(s.provide_credentials(None)), SaslError::OutOfSequence);
    let mut s = session("PLAIN");
    let _ = s.start(None);
    assert_eq!(failure(s.start(None)), SaslError::OutOfSequence);
    let mut s = session("SCRAM-SHA-256");
    let _ = s.start(None);
    assert_eq!(failure(s.provide_verdict(true)), SaslError::OutOfSequence);
    let mut s = session("SCRAM-SHA-256");
    assert!(matches!(s.start(Some(b"n,,n=user,r=abc")), Step::NeedCredentials { .. }));
    assert_eq!(failure(s.step(b"c=biws")), SaslError::OutOfSequence, "step while awaiting credentials");
}

#[test]
fn oversized_input_fails_in_any_state() {
    let big = vec![b'a'; MAX_RESPONSE_BYTES + 1];
    for name in ["PLAIN", "LOGIN", "SCRAM-SHA-256"] {
        let mut s = session(name);
        assert_eq!(
            failure(s.start(Some(&big))),
            SaslError::InputTooLong { len_bytes: big.len(), max_bytes: MAX_RESPONSE_BYTES }
        );
        let mut s = session(name);
        let _ = s.start(None);
        assert!(matches!(failure(s.step(&big)), SaslError::InputTooLong { .. }));
    }
}

#[test]
fn scram_authzid_equal_to_username_is_dropped() {
    let mut s = session("SCRAM-SHA-256");
    let Step::NeedCredentials { authcid, authzid } = s.start(Some(b"n,a=user,n=user,r=abc")) else { panic!() };
    assert_eq!((authcid.as_str(), authzid), ("user", None));
    let mut s = session("SCRAM-SHA-256");
    let Step::NeedCredentials { authzid: Some(authzid), .. } = s.start(Some(b"n,a=admin,n=user,r=abc")) else {
        panic!()
    };
    assert_eq!(authzid, "admin");
}

#[test]
fn session_debug_has_no_secrets() {
    let mut s = ServerSession::new("SCRAM-SHA-256", &ServerConfig::new([0xAB; 32]), nonce()).unwrap();
    let _ = s.start(Some(b"n,,n=user,r=abc"));
    let credentials = ScramCredentials::derive("pencil", b"salt", 4096).unwrap();
    let stored = BASE64.encode(credentials.stored_key());
    let _ = s.provide_credentials(Some(credentials));
    let debug = format!("{s:?}");
    assert!(!debug.contains(&stored), "{debug}");
    assert!(!debug.contains("171, 171"), "server secret in {debug}");
    assert!(!format!("{:?}", config()).contains("9, 9"));
}
