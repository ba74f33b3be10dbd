//! The SASL layer driven as a front end would: base64 lines in, steps out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use postlog_protocol::sasl::{
    ErrorClass, Field, Mechanism, SaslError, ScramCredentials, ServerConfig, ServerNonce, ServerSession, Step,
    decode_client_final, decode_client_first, decode_initial_response, decode_plain, decode_response, encode_challenge,
};
use sha2::{Digest, Sha256};

const RFC7677_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC7677_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn config() -> ServerConfig {
    ServerConfig::new(*b"a stable secret of 32 bytes.....")
}

fn rfc_nonce() -> ServerNonce {
    ServerNonce::from_printable(RFC7677_SERVER_NONCE).unwrap()
}

fn pencil() -> ScramCredentials {
    ScramCredentials::derive("pencil", &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(), 4096).unwrap()
}

/// Feeds a base64 line as a front end does.
fn line(session: &mut ServerSession, text: &str) -> Step {
    match decode_response(B64.encode(text).as_bytes()) {
        Ok(response) => session.step(&response),
        Err(error) => Step::Failure(error),
    }
}

fn challenge_text(step: Step) -> String {
    match step {
        Step::Challenge(challenge) => String::from_utf8(challenge).unwrap(),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn failure(step: Step) -> SaslError {
    match step {
        Step::Failure(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The SCRAM client's side, for exchanges beyond the RFC vector.
fn client_final(password: &str, client_first_bare: &str, server_first: &str, gs2_header: &str) -> (String, String) {
    let attribute = |name: &str| {
        server_first.split(',').find_map(|a| a.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {server_first}"))
    };
    let salt = B64.decode(attribute("s=")).unwrap();
    let iterations = attribute("i=").parse().unwrap();
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, iterations);
    let hmac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c={},r={}", B64.encode(gs2_header), attribute("r="));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    (format!("{without_proof},p={}", B64.encode(proof)), format!("v={}", B64.encode(server_signature)))
}

#[test]
fn scram_rfc_7677_end_to_end() {
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    assert_eq!(challenge_text(session.start(None)), "");
    let Step::NeedCredentials { authcid, authzid } = line(&mut session, RFC7677_CLIENT_FIRST) else { panic!() };
    assert_eq!((authcid.as_str(), authzid), ("user", None));
    // Through the storage form, as the server would keep it.
    let stored = ScramCredentials::decode(&pencil().encode()).unwrap();
    assert_eq!(challenge_text(session.provide_credentials(Some(stored))), RFC7677_SERVER_FIRST);
    let Step::Success { authcid, authzid, final_data } = line(&mut session, RFC7677_CLIENT_FINAL) else { panic!() };
    assert_eq!(authcid, "user");
    assert_eq!(authzid, None);
    assert_eq!(final_data.as_deref(), Some(RFC7677_SERVER_FINAL.as_bytes()));
    assert!(session.is_finished());
}

#[test]
fn scram_rfc_7677_with_initial_response() {
    let mut session = ServerSession::new("scram-sha-256", &config(), rfc_nonce()).unwrap();
    // IMAP: A1 AUTHENTICATE SCRAM-SHA-256 <base64 client-first>
    let ir = decode_initial_response(B64.encode(RFC7677_CLIENT_FIRST).as_bytes()).unwrap();
    assert!(matches!(session.start(Some(&ir)), Step::NeedCredentials { .. }));
    let server_first = challenge_text(session.provide_credentials(Some(pencil())));
    assert_eq!(server_first, RFC7677_SERVER_FIRST);
    assert!(matches!(line(&mut session, RFC7677_CLIENT_FINAL), Step::Success { final_data: Some(_), .. }));
}

#[test]
fn scram_with_y_flag_and_authzid() {
    let nonce = ServerNonce::generate(&mut |buf: &mut [u8]| buf.fill(0x5A));
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), nonce).unwrap();
    let Step::NeedCredentials { authcid, authzid } =
        session.start(Some(b"y,a=admin,n=us=2Cer,r=fyko+d2lbbFgONRv9qkxdawL"))
    else {
        panic!()
    };
    assert_eq!(authcid, "us,er");
    assert_eq!(authzid.unwrap(), "admin");
    let credentials = ScramCredentials::generate("s3cr3t", &mut |buf: &mut [u8]| buf.fill(1)).unwrap();
    let server_first = challenge_text(session.provide_credentials(Some(credentials)));
    assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawLWlpa"), "{server_first}");
    let (final_message, expected) =
        client_final("s3cr3t", "n=us=2Cer,r=fyko+d2lbbFgONRv9qkxdawL", &server_first, "y,a=admin,");
    let Step::Success { authcid, authzid, final_data } = session.step(final_message.as_bytes()) else { panic!() };
    assert_eq!(authcid, "us,er");
    assert_eq!(authzid.unwrap(), "admin");
    assert_eq!(final_data.unwrap(), expected.as_bytes());
}

#[test]
fn scram_channel_binding_request_is_refused_with_the_rfc_error() {
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    let error = failure(session.start(Some(b"p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO")));
    assert_eq!(error, SaslError::ChannelBindingNotSupported);
    assert_eq!(error.scram_error_value(), Some("channel-binding-not-supported"));
    assert!(session.is_finished());
}

/// Runs the RFC exchange up to the client-final message, which the test supplies.
fn scram_final(client_final_message: &str) -> SaslError {
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    let _ = session.start(Some(RFC7677_CLIENT_FIRST.as_bytes()));
    let _ = session.provide_credentials(Some(pencil()));
    failure(session.step(client_final_message.as_bytes()))
}

#[test]
fn scram_final_message_errors() {
    let bad_proof = RFC7677_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(scram_final(&bad_proof), SaslError::InvalidProof);
    assert_eq!(SaslError::InvalidProof.class(), ErrorClass::Rejected);
    let wrong_nonce = RFC7677_CLIENT_FINAL.replace("hNlF$k0", "hNlF$k1");
    assert_eq!(scram_final(&wrong_nonce), SaslError::NonceMismatch);
    let client_nonce_only = "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(scram_final(client_nonce_only), SaslError::NonceMismatch);
    let y_flag = RFC7677_CLIENT_FINAL.replace("c=biws", "c=eSws");
    assert_eq!(scram_final(&y_flag), SaslError::ChannelBindingMismatch);
    let no_proof = RFC7677_CLIENT_FINAL.split(",p=").next().unwrap().to_owned();
    assert_eq!(scram_final(&no_proof), SaslError::MissingField(Field::Proof));
    let short_proof = RFC7677_CLIENT_FINAL.replace("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "p=dHzb");
    assert_eq!(scram_final(&short_proof), SaslError::InvalidSyntax(Field::Proof));
    assert_eq!(scram_final(""), SaslError::MissingField(Field::ChannelBinding));
}

#[test]
fn scram_wrong_password_is_invalid_proof() {
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    let _ = session.start(Some(RFC7677_CLIENT_FIRST.as_bytes()));
    let server_first = challenge_text(session.provide_credentials(Some(pencil())));
    let (final_message, _) = client_final("crayon", "n=user,r=rOprNGfwEbeRWgbNEkqO", &server_first, "n,,");
    assert_eq!(failure(session.step(final_message.as_bytes())), SaslError::InvalidProof);
}

/// The server-first message for `user`, who does or does not exist.
fn server_first_for(user: &str, credentials: Option<ScramCredentials>) -> (ServerSession, String) {
    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    let Step::NeedCredentials { authcid, .. } = session.start(Some(format!("n,,n={user},r=abcdef").as_bytes())) else {
        panic!()
    };
    assert_eq!(authcid, user);
    let server_first = challenge_text(session.provide_credentials(credentials));
    (session, server_first)
}

/// `r=...,s=<salt>,i=<n>` with every character class replaced, to compare shapes.
fn shape(server_first: &str) -> String {
    server_first.chars().map(|c| if c.is_ascii_alphanumeric() || "+/".contains(c) { 'x' } else { c }).collect()
}

#[test]
fn scram_unknown_user_looks_like_a_known_one() {
    let real = ScramCredentials::generate("pencil", &mut |buf: &mut [u8]| buf.fill(0x33)).unwrap();
    let (_, known) = server_first_for("alice", Some(real));
    let (mut session, unknown) = server_first_for("mallory", None);
    assert_eq!(shape(&known), shape(&unknown), "{known} vs {unknown}");
    assert!(unknown.starts_with(&format!("r=abcdef{RFC7677_SERVER_NONCE},s=")), "{unknown}");
    assert!(unknown.ends_with(",i=4096"), "{unknown}");

    // The fake salt is stable for a name, like a real one, and differs between names.
    assert_eq!(server_first_for("mallory", None).1, unknown);
    assert_ne!(server_first_for("mallory2", None).1, unknown);

    // Whatever the client proves, an unknown user fails like a wrong password.
    let (final_message, _) = client_final("anything", "n=mallory,r=abcdef", &unknown, "n,,");
    assert_eq!(failure(session.step(final_message.as_bytes())), SaslError::InvalidProof);
}

#[test]
fn plain_with_and_without_authzid() {
    // SMTP: AUTH PLAIN <base64>, the RFC 4616 examples.
    let mut session = ServerSession::new("PLAIN", &config(), rfc_nonce()).unwrap();
    let ir = decode_initial_response(B64.encode("\0tim\0tanstaaftanstaaf").as_bytes()).unwrap();
    let Step::Verify { authcid, authzid, password } = session.start(Some(&ir)) else { panic!() };
    assert_eq!((authcid.as_str(), authzid, password.expose_secret().as_str()), ("tim", None, "tanstaaftanstaaf"));
    let Step::Success { authcid, authzid: None, final_data: None } = session.provide_verdict(true) else { panic!() };
    assert_eq!(authcid, "tim");

    let mut session = ServerSession::new("PLAIN", &config(), rfc_nonce()).unwrap();
    assert_eq!(challenge_text(session.start(None)), "");
    let Step::Verify { authcid, authzid, .. } = line(&mut session, "Ursel\0Kurt\0xipj3plmq") else { panic!() };
    assert_eq!(authcid, "Kurt");
    assert_eq!(authzid.as_ref().unwrap(), "Ursel");
    let Step::Success { authzid: Some(authzid), .. } = session.provide_verdict(true) else { panic!() };
    assert_eq!(authzid, "Ursel", "a different authzid is the caller's to decide");

    let mut session = ServerSession::new("PLAIN", &config(), rfc_nonce()).unwrap();
    let Step::Verify { authzid, .. } = session.start(Some(b"Kurt\0Kurt\0xipj3plmq")) else { panic!() };
    assert_eq!(authzid, None, "authzid equal to authcid");
}

#[test]
fn login_two_steps_with_base64_challenges() {
    let mut session = ServerSession::new("LOGIN", &config(), rfc_nonce()).unwrap();
    let Step::Challenge(c) = session.start(None) else { panic!() };
    assert_eq!(encode_challenge(&c), "VXNlcm5hbWU6");
    let Step::Challenge(c) = line(&mut session, "tim") else { panic!() };
    assert_eq!(encode_challenge(&c), "UGFzc3dvcmQ6");
    let Step::Verify { authcid, authzid: None, password } = line(&mut session, "tanstaaf") else { panic!() };
    assert_eq!((authcid.as_str(), password.expose_secret().as_str()), ("tim", "tanstaaf"));
    assert_eq!(failure(session.provide_verdict(false)), SaslError::AuthenticationFailed);
}

#[test]
fn empty_initial_responses() {
    // "=" is an empty initial response, which is not the same as none.
    let empty = decode_initial_response(b"=").unwrap();
    let cases = [
        ("PLAIN", SaslError::MissingField(Field::Authcid)),
        ("LOGIN", SaslError::EmptyField(Field::Authcid)),
        ("SCRAM-SHA-256", SaslError::MissingField(Field::Gs2Header)),
    ];
    for (name, expected) in cases {
        let mut session = ServerSession::new(name, &config(), rfc_nonce()).unwrap();
        assert_eq!(failure(session.start(Some(&empty))), expected, "{name}");
    }
}

#[test]
fn cancel() {
    let mut session = ServerSession::new("LOGIN", &config(), rfc_nonce()).unwrap();
    let _ = session.start(None);
    let error = decode_response(b"*").unwrap_err();
    assert_eq!(error, SaslError::Cancelled);
    assert_eq!(error.class(), ErrorClass::Cancelled);
}

#[test]
fn malformed_lines_and_messages() {
    assert_eq!(decode_response(b"not base64!"), Err(SaslError::InvalidBase64));
    assert_eq!(decode_initial_response(b"AHRpbQ B0"), Err(SaslError::InvalidBase64));
    assert!(matches!(decode_response(&vec![b'A'; 20_000]), Err(SaslError::InputTooLong { .. })));
    assert_eq!(decode_plain(b"tim").unwrap_err(), SaslError::MissingField(Field::Authcid));
    assert_eq!(decode_client_first(b"n,,r=abc").unwrap_err(), SaslError::MissingField(Field::Authcid));
    assert_eq!(decode_client_first(b"n,,n=user").unwrap_err(), SaslError::MissingField(Field::Nonce));
    assert_eq!(decode_client_final(b"c=biws,r=abc").unwrap_err(), SaslError::MissingField(Field::Proof));

    let mut session = ServerSession::new("SCRAM-SHA-256", &config(), rfc_nonce()).unwrap();
    let _ = session.start(None);
    let error = failure(line(&mut session, "n,,n=user"));
    assert_eq!(error, SaslError::MissingField(Field::Nonce));
    assert_eq!(error.class(), ErrorClass::Malformed);
}

#[test]
fn unknown_mechanism() {
    let error = ServerSession::new("DIGEST-MD5", &config(), rfc_nonce()).unwrap_err();
    assert_eq!(error.name, "DIGEST-MD5");
    assert_eq!(error.to_string(), "unknown SASL mechanism \"DIGEST-MD5\"");
}

#[test]
fn debug_output_redacts_secrets() {
    let mut session = ServerSession::new("PLAIN", &config(), rfc_nonce()).unwrap();
    let step = session.start(Some(b"\0tim\0tanstaaftanstaaf"));
    let debug = format!("{step:?} {step:#?} {session:?}");
    assert!(!debug.contains("tanstaaf"), "{debug}");
    assert!(debug.contains("tim"), "identities are not secret: {debug}");

    let credentials = pencil();
    let debug = format!("{credentials:?}");
    assert!(!debug.contains(&B64.encode(credentials.stored_key())), "{debug}");
    assert!(!debug.contains(&B64.encode(credentials.server_key())), "{debug}");

    let debug = format!("{:?}", config());
    assert!(!debug.contains("stable secret"), "{debug}");
    let debug = format!("{:?}", config().fake_iterations());
    assert_eq!(debug, "4096");
}

/// A small deterministic generator, so that this sweep needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutated valid messages and random bytes, fed in every state: failures, never panics.
#[test]
fn arbitrary_input_never_panics() {
    let seeds: [&[u8]; 5] = [
        RFC7677_CLIENT_FIRST.as_bytes(),
        RFC7677_CLIENT_FINAL.as_bytes(),
        b"Ursel\0Kurt\0xipj3plmq",
        b"y,a=ad=2Cmin,n=us=3Der,r=abc,x=ext",
        "n,,n=\u{00AD}j\u{00FC}rgen\u{3000},r=abc".as_bytes(),
    ];
    let alphabet = b",=\0\xff\xc3nrcpyamsi2C3D";
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..3_000 {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..rng.below(4) + 1 {
            let at = rng.below(input.len() + 1);
            match rng.below(3) {
                0 if at < input.len() => drop(input.remove(at)),
                1 => input.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => input.insert(at, rng.next() as u8),
            }
        }
        let _ = decode_plain(&input);
        let _ = decode_client_first(&input);
        let _ = decode_client_final(&input);
        let _ = decode_response(&input);
        for mechanism in Mechanism::ALL {
            let mut session = ServerSession::with_mechanism(mechanism, &config(), rfc_nonce());
            let mut step = session.start(Some(&input));
            for _ in 0..3 {
                step = match step {
                    Step::Challenge(_) => session.step(&input),
                    Step::NeedCredentials { .. } => session.provide_credentials((round % 2 == 0).then(pencil)),
                    Step::Verify { .. } => session.provide_verdict(round % 2 == 0),
                    done => done,
                };
            }
            let _ = session.step(&input);
        }
    }
}
