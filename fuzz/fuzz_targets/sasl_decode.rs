//! The SASL layer on hostile client input: the line and message decoders, and whole server
//! sessions of every mechanism driven by the input. Nothing may panic; a session must end in
//! success or failure within its steps, never loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::sasl::{
    self, Mechanism, ScramCredentials, ServerConfig, ServerNonce, ServerSession, Step, decode_client_final,
    decode_client_first, decode_initial_response, decode_plain, decode_response,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_response(data);
    let _ = decode_initial_response(data);
    let _ = decode_plain(data);
    let _ = decode_client_first(data);
    let _ = decode_client_final(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ScramCredentials::decode(s);
    }

    // Split the input into client messages at 0xFF bytes; the first byte picks the mechanism.
    let Some((&pick, rest)) = data.split_first() else { return };
    let mechanism = [Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256][usize::from(pick) % 3];
    let config = ServerConfig::new([7u8; 32]);
    let nonce = ServerNonce::from_printable("fuzzfuzzfuzzfuzzfuzzfuzzfuzz").expect("a valid nonce");
    let mut session = ServerSession::with_mechanism(mechanism, &config, nonce);
    // PBKDF2 with 4096 rounds is slow: derive once.
    static CREDENTIALS: std::sync::OnceLock<ScramCredentials> = std::sync::OnceLock::new();
    let credentials = CREDENTIALS
        .get_or_init(|| ScramCredentials::derive("pencil", b"saltsaltsalt", 4096).expect("valid parameters"));
    let mut messages = rest.split(|&b| b == 0xFF);
    let mut step = session.start(messages.next().filter(|_| pick & 0x80 != 0));
    for _ in 0..16 {
        step = match step {
            Step::Challenge(_) => match messages.next() {
                Some(m) => session.step(m),
                None => return,
            },
            Step::NeedCredentials { .. } => {
                session.provide_credentials(if pick & 0x40 != 0 { Some(credentials.clone()) } else { None })
            }
            Step::Verify { .. } => session.provide_verdict(pick & 0x20 != 0),
            Step::Success { .. } | Step::Failure(_) => {
                assert!(session.is_finished());
                return;
            }
        };
    }
    let _ = sasl::encode_challenge(rest);
});
