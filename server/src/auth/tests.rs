//! Unit tests of the authentication service: mechanism policy, PLAIN/LOGIN/SCRAM exchanges
//! against a real directory, and the limiter in the loop (with a fake clock).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use postlog_engine::backend::MemBackend;
use postlog_engine::{Options, Store};
use sha2::{Digest, Sha256};

use super::*;
use crate::directory::Credentials;

use crate::limiter::FakeClock;

const MS: Duration = Duration::from_millis(1);
const ALICE: &str = "alice@example.test";

fn secret() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials::derive("correct horse").unwrap())
}

fn settings() -> AuthSettings {
    AuthSettings {
        plaintext_on_loopback: true,
        limiter: LimiterSettings {
            max_failures_per_ip: 4,
            max_failures_per_account: 6,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(120),
            delay_step: 100 * MS,
            delay_max: 1000 * MS,
        },
    }
}

fn service(settings: AuthSettings) -> (Authenticator, Arc<FakeClock>) {
    let store = Store::open_backend(Arc::new(MemBackend::new()), Options::default()).unwrap();
    let directory = Directory::new(store, 0);
    directory.add_domain("example.test").unwrap();
    directory.add_user("Alice@example.test", secret()).unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
    (Authenticator::with_clock(directory, settings, clock.clone()).unwrap(), clock)
}

fn remote(tls: bool) -> Peer {
    Peer { ip: "203.0.113.5".parse().unwrap(), tls }
}

fn loopback() -> Peer {
    Peer { ip: "127.0.0.1".parse().unwrap(), tls: false }
}

fn done(step: AuthStep) -> AuthOutcome {
    match step {
        AuthStep::Done(outcome) => outcome,
        AuthStep::Challenge(c) => panic!("expected the end, got a challenge {:?}", String::from_utf8_lossy(&c)),
    }
}

fn challenge(step: AuthStep) -> Vec<u8> {
    match step {
        AuthStep::Challenge(c) => c,
        AuthStep::Done(outcome) => panic!("expected a challenge, got {outcome:?}"),
    }
}

fn rejected(outcome: &AuthOutcome) -> bool {
    outcome.result == Err(AuthFailure::Rejected)
}

fn plain(auth: &Authenticator, peer: Peer, authzid: &str, user: &str, password: &str) -> AuthOutcome {
    let mut exchange = match auth.begin("PLAIN", peer) {
        Ok(x) => x,
        Err(outcome) => return outcome,
    };
    let message = format!("{authzid}\0{user}\0{password}");
    done(exchange.start(Some(message.as_bytes())))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A SCRAM-SHA-256 client (RFC 5802 section 3, RFC 7677): runs the exchange and checks the
/// server's signature when the server gets that far.
fn scram(auth: &Authenticator, peer: Peer, user: &str, password: &str) -> (AuthOutcome, Option<String>) {
    let mut exchange = auth.begin("SCRAM-SHA-256", peer).unwrap();
    assert!(challenge(exchange.start(None)).is_empty(), "SCRAM starts with an empty challenge");
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let client_first_bare = format!("n={user},r={client_nonce}");
    let server_first = challenge(exchange.step(format!("n,,{client_first_bare}").as_bytes()));
    let server_first = String::from_utf8(server_first).unwrap();
    let attr = |name: &str| {
        server_first.split(',').find_map(|a| a.strip_prefix(name)).map(str::to_string).expect("attribute present")
    };
    let nonce = attr("r=");
    assert!(nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len() + 20, "{nonce}");
    let salt = B64.decode(attr("s=")).unwrap();
    let iterations: u32 = attr("i=").parse().unwrap();
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, iterations);
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
    let client_final = format!("{without_proof},p={}", B64.encode(proof));
    match exchange.step(client_final.as_bytes()) {
        AuthStep::Challenge(server_final) => {
            let server_key = hmac(&salted, &[b"Server Key"]);
            let expected = format!("v={}", B64.encode(hmac(&server_key, &[auth_message.as_bytes()])));
            assert_eq!(String::from_utf8(server_final).unwrap(), expected, "the server proves it knows the keys");
            (done(exchange.step(b"")), Some(server_first))
        }
        AuthStep::Done(outcome) => (outcome, Some(server_first)),
    }
}

#[test]
fn plain_text_mechanisms_only_on_secured_connections() {
    let (auth, _) = service(settings());
    let all = Mechanism::ALL.to_vec();
    assert_eq!(auth.mechanisms(&remote(false)), [Mechanism::ScramSha256]);
    assert_eq!(auth.mechanisms(&remote(true)), all);
    assert_eq!(auth.mechanisms(&loopback()), all);
    assert_eq!(auth.mechanisms(&Peer { ip: "::1".parse().unwrap(), tls: false }), all);
    assert_eq!(auth.mechanisms(&Peer { ip: "::ffff:127.0.0.1".parse().unwrap(), tls: false }), all);

    for mechanism in ["PLAIN", "login"] {
        let refused = auth.begin(mechanism, remote(false)).err().expect("refused");
        assert_eq!(refused.result, Err(AuthFailure::EncryptionRequired));
        assert!(auth.begin(mechanism, remote(true)).is_ok());
        assert!(auth.begin(mechanism, loopback()).is_ok());
    }
    assert_eq!(auth.login(ALICE, "correct horse", remote(false)).result, Err(AuthFailure::EncryptionRequired));
    assert!(auth.login(ALICE, "correct horse", loopback()).result.is_ok());
    assert!(auth.begin("SCRAM-SHA-256", remote(false)).is_ok());
    assert_eq!(
        auth.begin("CRAM-MD5", remote(true)).err().unwrap().result,
        Err(AuthFailure::UnsupportedMechanism("CRAM-MD5".into()))
    );

    // With the loopback exception switched off, loopback is like anywhere else.
    let (strict, _) = service(AuthSettings { plaintext_on_loopback: false, ..settings() });
    assert_eq!(strict.mechanisms(&loopback()), [Mechanism::ScramSha256]);
    assert_eq!(strict.begin("PLAIN", loopback()).err().unwrap().result, Err(AuthFailure::EncryptionRequired));
    assert_eq!(strict.login(ALICE, "correct horse", loopback()).result, Err(AuthFailure::EncryptionRequired));
    assert!(strict.begin("PLAIN", Peer { tls: true, ..loopback() }).is_ok());
}

#[test]
fn plain_and_login_log_in() {
    let (auth, _) = service(settings());
    let outcome = plain(&auth, remote(true), "", "ALICE@Example.test", "correct horse");
    let alice = outcome.result.expect("logged in");
    assert_eq!(alice.address, "Alice@example.test");
    assert_eq!(alice.mechanism, Some(Mechanism::Plain));
    assert_eq!(outcome.delay, Duration::ZERO);

    let mut exchange = auth.begin("LOGIN", remote(true)).unwrap();
    assert_eq!(challenge(exchange.start(None)), b"Username:");
    assert_eq!(challenge(exchange.step(ALICE.as_bytes())), b"Password:");
    let outcome = done(exchange.step(b"correct horse"));
    assert_eq!(outcome.result.unwrap().account, alice.account);

    let outcome = auth.login("alice@EXAMPLE.test", "correct horse", remote(true));
    assert_eq!(outcome.result.unwrap().mechanism, None);
}

#[test]
fn scram_logs_in_without_tls() {
    let (auth, _) = service(settings());
    let (outcome, _) = scram(&auth, remote(false), "alice@example.test", "correct horse");
    let alice = outcome.result.expect("logged in");
    assert_eq!(alice.address, "Alice@example.test");
    assert_eq!(alice.mechanism, Some(Mechanism::ScramSha256));
    assert_eq!(outcome.delay, Duration::ZERO);

    // The server-final message must be answered with an empty response.
    let mut exchange = auth.begin("SCRAM-SHA-256", remote(false)).unwrap();
    let _ = challenge(exchange.start(None));
    let _ = challenge(exchange.step(b"n,,n=alice@example.test,r=abcdefghijklmnop"));
    let outcome = exchange.fail(SaslError::Cancelled);
    assert_eq!(outcome.result, Err(AuthFailure::Protocol(SaslError::Cancelled)));
}

#[test]
fn unknown_users_and_wrong_passwords_look_the_same() {
    let (auth, clock) = service(settings());
    // PLAIN: the same failure and the same delay for the same history.
    let wrong = plain(&auth, remote(true), "", ALICE, "wrong");
    clock.advance(Duration::from_secs(61));
    let unknown = plain(&auth, remote(true), "", "nobody@example.test", "wrong");
    assert!(rejected(&wrong) && rejected(&unknown), "{wrong:?} {unknown:?}");
    assert_eq!(wrong, unknown);
    clock.advance(Duration::from_secs(61));
    // SCRAM: the server-first message has the same shape, and the proof fails the same way.
    let (wrong, first_known) = scram(&auth, remote(false), ALICE, "wrong");
    clock.advance(Duration::from_secs(61));
    let (unknown, first_unknown) = scram(&auth, remote(false), "nobody@example.test", "wrong");
    assert!(rejected(&wrong) && rejected(&unknown), "{wrong:?} {unknown:?}");
    assert_eq!(wrong, unknown);
    let shape = |first: &str| first.split(',').map(|a| (a[..2].to_string(), a.len())).collect::<Vec<_>>();
    assert_eq!(shape(&first_known.unwrap()), shape(&first_unknown.unwrap()));
    // An unknown user's fake salt is stable, as a real salt is.
    let (_, again) = scram(&auth, remote(false), "nobody@example.test", "wrong");
    let salt = |first: &str| first.split(',').find(|a| a.starts_with("s=")).unwrap().to_string();
    assert_eq!(salt(&again.unwrap()), salt(&scram(&auth, remote(false), "nobody@example.test", "x").1.unwrap()));
}

#[test]
fn failures_slow_down_then_lock_out_while_success_is_never_delayed() {
    let (auth, clock) = service(settings());
    let peer = remote(true);
    let delays: Vec<Duration> = (0..3)
        .map(|_| {
            let o = plain(&auth, peer, "", ALICE, "wrong");
            assert!(rejected(&o));
            clock.advance(MS);
            o.delay
        })
        .collect();
    assert_eq!(delays, [Duration::ZERO, 100 * MS, 200 * MS]);
    let ok = plain(&auth, peer, "", ALICE, "correct horse");
    assert!(ok.result.is_ok());
    assert_eq!(ok.delay, Duration::ZERO, "a success is not delayed");
    // The address keeps its three failures: the fourth locks it out...
    assert_eq!(auth.login("nobody@example.test", "x", peer).delay, 300 * MS);
    let refused = plain(&auth, peer, "", ALICE, "correct horse");
    assert!(matches!(refused.result, Err(AuthFailure::TooManyFailures { .. })), "{refused:?}");
    let (refused, _) = scram_refused(&auth, peer);
    assert!(matches!(refused.result, Err(AuthFailure::TooManyFailures { .. })), "{refused:?}");
    assert!(matches!(auth.login(ALICE, "correct horse", peer).result, Err(AuthFailure::TooManyFailures { .. })));
    // ...another address is fine...
    assert!(plain(&auth, remote_at("198.51.100.1"), "", ALICE, "correct horse").result.is_ok());
    // ...and after the lockout, so is this one.
    clock.advance(Duration::from_secs(121));
    assert!(plain(&auth, peer, "", ALICE, "correct horse").result.is_ok());
}

fn remote_at(ip: &str) -> Peer {
    Peer { ip: ip.parse().unwrap(), tls: true }
}

fn scram_refused(auth: &Authenticator, peer: Peer) -> (AuthOutcome, ()) {
    match auth.begin("SCRAM-SHA-256", peer) {
        Err(outcome) => (outcome, ()),
        Ok(_) => panic!("a locked-out address may not even begin"),
    }
}

#[test]
fn an_account_is_locked_out_across_addresses() {
    let (auth, _clock) = service(settings());
    for i in 0..6 {
        let o = plain(&auth, remote_at(&format!("192.0.2.{i}")), "", "ALICE@example.test", "wrong");
        assert!(rejected(&o));
    }
    let fresh = remote_at("192.0.2.100");
    assert!(matches!(plain(&auth, fresh, "", ALICE, "correct horse").result, Err(AuthFailure::TooManyFailures { .. })));
    // SCRAM is refused once the name is known.
    let mut exchange = auth.begin("SCRAM-SHA-256", fresh).unwrap();
    let _ = challenge(exchange.start(None));
    let outcome = done(exchange.step(b"n,,n=alice@example.test,r=abcdefghijklmnop"));
    assert!(matches!(outcome.result, Err(AuthFailure::TooManyFailures { .. })));
    // Other accounts from the same address are not affected.
    assert!(rejected(&plain(&auth, fresh, "", "bob@example.test", "wrong")));
}

#[test]
fn a_client_may_act_only_as_itself() {
    let (auth, _) = service(settings());
    let o = plain(&auth, remote(true), "bob@example.test", ALICE, "correct horse");
    assert_eq!(o.result, Err(AuthFailure::AuthorizationFailed));
    let o = plain(&auth, remote(true), "ALICE@example.test", ALICE, "correct horse");
    assert!(o.result.is_ok(), "the same address in another case is the same identity: {o:?}");
}

#[test]
fn broken_exchanges_are_protocol_errors_and_not_counted() {
    let (auth, _) = service(settings());
    for _ in 0..10 {
        let mut exchange = auth.begin("PLAIN", remote(true)).unwrap();
        let o = done(exchange.start(Some(b"no separators")));
        assert!(matches!(o.result, Err(AuthFailure::Protocol(_))), "{o:?}");
        assert_eq!(o.delay, Duration::ZERO);
    }
    assert_eq!(auth.limiter().tracked(), (0, 0));
    assert!(plain(&auth, remote(true), "", ALICE, "correct horse").result.is_ok());
}
