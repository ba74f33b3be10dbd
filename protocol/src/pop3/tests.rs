//! The session state machine without a socket: a tiny server answers its events.

use super::*;
use crate::secret::Secret;

const M1: &[u8] = b"Subject: one\n\nfirst\n.dot\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";

fn maildrop() -> Maildrop {
    Maildrop {
        messages: vec![
            MaildropMessage { key: 11, size: crlf_size(M1), uidl: "0000000B00000001".into() },
            MaildropMessage { key: 12, size: crlf_size(M2), uidl: "0000000C00000001".into() },
        ],
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        stls: true,
        plaintext: true,
        mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
        ..SessionConfig::new("pop.example.test")
    }
}

/// What the tiny server saw and did.
#[derive(Default, Debug)]
struct Seen {
    logins: Vec<(String, String)>,
    retrieved: Vec<(u64, Option<u64>)>,
    quit: Option<Vec<u64>>,
    seen: Vec<u64>,
    starttls: usize,
    closed: bool,
}

/// Feeds `input`, answering events like a server with user `u`/`p` and messages M1, M2
/// (key 12 "expunged" when `expunged` is set); returns the output.
fn drive(s: &mut Session, input: &[u8], seen: &mut Seen, expunged: bool) -> String {
    s.input(input);
    let mut out = Vec::new();
    loop {
        match s.poll() {
            Event::NeedInput => break,
            Event::Close => {
                seen.closed = true;
                break;
            }
            Event::Login { user, password } => {
                let ok = user == "u" && password.expose_secret() == "p";
                seen.logins.push((user, password.expose_secret().clone()));
                s.answer_login(if ok { Ok(maildrop()) } else { Err(Reply::err_with(ResponseCode::Auth, "no")) });
            }
            Event::Auth { mechanism, initial_response } => {
                assert_eq!(mechanism, "PLAIN");
                match initial_response {
                    Some(r) if r == b"\0u\0p" => s.auth_done(Ok(maildrop())),
                    Some(_) => s.auth_done(Err(Reply::err_with(ResponseCode::Auth, "no"))),
                    None => s.auth_challenge(b""),
                }
            }
            Event::AuthResponse(r) => {
                if r == b"\0u\0p" {
                    s.auth_done(Ok(maildrop()))
                } else {
                    s.auth_done(Err(Reply::err_with(ResponseCode::Auth, "no")))
                }
            }
            Event::StartTls => {
                seen.starttls += 1;
                out.extend(s.take_output());
                s.tls_started(vec!["PLAIN".into()], true);
            }
            Event::Retrieve { key, top, .. } => {
                seen.retrieved.push((key, top));
                match key {
                    11 => s.answer_retrieve(Ok(M1)),
                    12 if expunged => s.answer_retrieve(Err(Reply::err("message 2 was expunged"))),
                    12 => s.answer_retrieve(Ok(M2)),
                    _ => unreachable!(),
                }
            }
            Event::Quit { delete, seen: read } => {
                seen.quit = Some(delete);
                seen.seen = read;
                s.answer_quit(Ok(()));
            }
        }
    }
    out.extend(s.take_output());
    String::from_utf8(out).unwrap()
}

fn session() -> (Session, Seen) {
    let mut s = Session::new(config());
    let greeting = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(greeting, "+OK pop.example.test Postlog POP3 server ready\r\n");
    (s, Seen::default())
}

fn logged_in() -> (Session, Seen) {
    let (mut s, mut seen) = session();
    let out = drive(&mut s, b"USER u\r\nPASS p\r\n", &mut seen, false);
    assert_eq!(out, "+OK Send PASS\r\n+OK maildrop has 2 messages (53 octets)\r\n");
    (s, seen)
}

#[test]
fn sizes_are_those_sent() {
    assert_eq!(crlf_size(M1), 29);
    assert_eq!(crlf_size(M2), 24);
}

#[test]
fn pipelined_transaction_and_update() {
    let (mut s, mut seen) = logged_in();
    let out = drive(
        &mut s,
        b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nDELE 1\r\nSTAT\r\nLIST 1\r\nRETR 1\r\nUIDL 2\r\nQUIT\r\n",
        &mut seen,
        false,
    );
    assert_eq!(
        out,
        "+OK 2 53\r\n\
         +OK 2 messages (53 octets)\r\n1 29\r\n2 24\r\n.\r\n\
         +OK\r\n1 0000000B00000001\r\n2 0000000C00000001\r\n.\r\n\
         +OK 29 octets\r\nSubject: one\r\n\r\nfirst\r\n..dot\r\n.\r\n\
         +OK\r\nSubject: two\r\n\r\n.\r\n\
         +OK message 1 deleted\r\n\
         -ERR message 1 already deleted\r\n\
         +OK 1 24\r\n\
         -ERR message 1 is deleted\r\n\
         -ERR message 1 is deleted\r\n\
         +OK 2 0000000C00000001\r\n\
         +OK pop.example.test POP3 server signing off (1 message left)\r\n"
    );
    assert_eq!(seen.retrieved, [(11, None), (12, Some(0))]);
    assert_eq!(seen.quit, Some(vec![11]));
    // RETR 1 sent it whole but it is deleted; TOP 2 does not count as read.
    assert!(seen.seen.is_empty());
    assert!(seen.closed);
}

#[test]
fn rset_unmarks_and_quit_deletes_nothing() {
    let (mut s, mut seen) = logged_in();
    let out = drive(&mut s, b"RETR 2\r\nTOP 1 1\r\nDELE 1\r\nDELE 2\r\nSTAT\r\nRSET\r\nQUIT\r\n", &mut seen, false);
    assert!(out.contains("+OK 0 0\r\n+OK maildrop has 2 messages (53 octets)\r\n"), "{out}");
    assert!(out.ends_with("signing off (2 messages left)\r\n"), "{out}");
    assert_eq!(seen.quit, Some(vec![]));
    assert_eq!(seen.seen, [12]);
}

#[test]
fn a_session_that_ends_without_quit_deletes_nothing() {
    for end in [Session::shutdown as fn(&mut Session), Session::timed_out] {
        let (mut s, mut seen) = logged_in();
        drive(&mut s, b"DELE 1\r\nDELE 2\r\nRETR", &mut seen, false);
        assert_eq!(s.marked_deleted(), 2);
        end(&mut s);
        let out = drive(&mut s, b"", &mut seen, false);
        assert!(out.starts_with("-ERR") && out.contains("no messages deleted"), "{out}");
        assert!(seen.closed && seen.quit.is_none());
    }
}

#[test]
fn numbers_out_of_range() {
    let (mut s, mut seen) = logged_in();
    let out =
        drive(&mut s, b"LIST 0\r\nLIST 3\r\nRETR 4294967295\r\nDELE 3\r\nUIDL 9\r\nTOP 0 1\r\n", &mut seen, false);
    assert_eq!(out.matches("-ERR no such message, only 2 messages in maildrop\r\n").count(), 6, "{out}");
    assert!(seen.retrieved.is_empty());
}

#[test]
fn an_expunged_message_is_an_error_not_the_end() {
    let (mut s, mut seen) = logged_in();
    let out = drive(&mut s, b"RETR 2\r\nRETR 1\r\nNOOP\r\n", &mut seen, true);
    assert!(out.starts_with("-ERR message 2 was expunged\r\n+OK 29 octets\r\n"), "{out}");
    assert!(out.ends_with(".\r\n+OK\r\n"), "{out}");
    assert!(!seen.closed);
}

#[test]
fn authorization_state_rules() {
    let (mut s, mut seen) = session();
    let out = drive(
        &mut s,
        b"STAT\r\nPASS p\r\nUSER u\r\nNOOP\r\nPASS p\r\nAPOP u x\r\nUSER u\r\nPASS bad\r\n",
        &mut seen,
        false,
    );
    assert_eq!(
        out,
        "-ERR Log in first (USER and PASS, or AUTH)\r\n\
         -ERR Send USER first\r\n\
         +OK Send PASS\r\n\
         -ERR Log in first (USER and PASS, or AUTH)\r\n\
         -ERR Send USER first\r\n\
         -ERR APOP is not supported; use USER and PASS, or AUTH\r\n\
         +OK Send PASS\r\n\
         -ERR [AUTH] no\r\n"
    );
    assert_eq!(seen.logins, [("u".to_string(), "bad".to_string())]);
    // After login these are refused.
    let out = drive(&mut s, b"USER u\r\nPASS p\r\nUSER u\r\nSTLS\r\nUTF8\r\nAUTH PLAIN\r\n", &mut seen, false);
    assert!(out.ends_with(
        "-ERR Already logged in\r\n-ERR STLS is valid only before logging in\r\n\
         -ERR UTF8 is valid only before logging in\r\n-ERR Already logged in\r\n"
    ));
}

#[test]
fn errors_before_login_are_bounded() {
    let (mut s, mut seen) = session();
    let out = drive(&mut s, &b"USER u\r\nPASS x\r\n".repeat(20), &mut seen, false);
    assert_eq!(seen.logins.len(), 10, "{out}");
    assert!(out.ends_with("-ERR [AUTH] no\r\n-ERR Too many errors; closing the connection\r\n"), "{out}");
    assert!(seen.closed);
}

#[test]
fn bad_commands_are_bounded_after_login_too() {
    let (mut s, mut seen) = logged_in();
    let out = drive(&mut s, &b"XYZZY\r\n".repeat(30), &mut seen, false);
    assert_eq!(out.matches("-ERR Unknown command: XYZZY\r\n").count(), 20, "{out}");
    assert!(out.ends_with("-ERR Too many bad commands; closing the connection\r\n"));
    assert!(seen.closed && seen.quit.is_none());
}

#[test]
fn long_lines_are_refused_whole() {
    let (mut s, mut seen) = logged_in();
    let mut input = b"NOOP ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 5000));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    // In pieces, as a socket would deliver them.
    let mut out = String::new();
    for chunk in input.chunks(700) {
        out.push_str(&drive(&mut s, chunk, &mut seen, false));
    }
    assert_eq!(out, "-ERR Line too long (at most 1024 octets)\r\n+OK\r\n");
}

#[test]
fn plain_text_needs_a_secured_connection() {
    let cfg = SessionConfig { plaintext: false, mechanisms: vec!["SCRAM-SHA-256".into()], ..config() };
    let mut s = Session::new(cfg);
    s.take_output();
    let mut seen = Seen::default();
    let out = drive(&mut s, b"CAPA\r\nUSER u\r\n", &mut seen, false);
    assert!(!out.contains("\r\nUSER\r\n") && out.contains("\r\nSTLS\r\n"), "{out}");
    assert!(out.contains("\r\nSASL SCRAM-SHA-256\r\n"), "{out}");
    assert!(
        out.ends_with(
            "-ERR [AUTH] Plain-text authentication needs TLS; send STLS first (or use AUTH SCRAM-SHA-256)\r\n"
        )
    );
    // STLS drops what was pipelined after it; then USER is offered and taken.
    let out = drive(&mut s, b"STLS\r\nUSER u\r\nPASS p\r\n", &mut seen, false);
    assert_eq!(out, "+OK Begin TLS negotiation\r\n");
    assert_eq!(s.discarded_at_stls(), 16);
    assert!(s.is_tls() && !s.is_logged_in());
    let out = drive(&mut s, b"CAPA\r\nSTLS\r\nUSER u\r\nPASS p\r\n", &mut seen, false);
    assert!(out.contains("\r\nUSER\r\n") && !out.contains("\r\nSTLS\r\n"), "{out}");
    assert!(out.ends_with("-ERR Already using TLS\r\n+OK Send PASS\r\n+OK maildrop has 2 messages (53 octets)\r\n"));
    assert_eq!(seen.starttls, 1);
}

#[test]
fn capa_before_and_after_login() {
    let mut s = Session::new(SessionConfig { login_delay: Some(300), ..config() });
    s.take_output();
    let mut seen = Seen::default();
    let out = drive(&mut s, b"CAPA\r\n", &mut seen, false);
    assert_eq!(
        out,
        "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN SCRAM-SHA-256\r\nSTLS\r\n\
         RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nLOGIN-DELAY 300\r\nIMPLEMENTATION Postlog\r\n.\r\n"
    );
    let out = drive(&mut s, b"UTF8\r\nUSER u\r\nPASS p\r\nCAPA\r\n", &mut seen, false);
    assert!(s.utf8());
    assert!(out.starts_with("+OK UTF8 enabled\r\n"), "{out}");
    assert!(out.ends_with(
        "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n\
         UTF8 USER\r\nLOGIN-DELAY 300\r\nIMPLEMENTATION Postlog\r\n.\r\n"
    ));
}

#[test]
fn sasl_exchanges() {
    // Initial response; "=" for an empty one goes to the server as empty.
    let (mut s, mut seen) = session();
    let out = drive(&mut s, b"AUTH PLAIN AHUAcA==\r\nSTAT\r\n", &mut seen, false);
    assert_eq!(out, "+OK maildrop has 2 messages (53 octets)\r\n+OK 2 53\r\n");
    // A challenge, then the answer; a cancel; bad base64; AUTH alone lists.
    let (mut s, mut seen) = session();
    let out = drive(&mut s, b"AUTH\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!\r\nAUTH PLAIN !!\r\n", &mut seen, false);
    assert_eq!(
        out,
        "+OK Supported SASL mechanisms follow\r\nPLAIN\r\nSCRAM-SHA-256\r\n.\r\n\
         + \r\n-ERR Authentication cancelled\r\n\
         + \r\n-ERR Cannot decode the response (base64 expected)\r\n\
         -ERR Cannot decode the initial response (base64 expected)\r\n"
    );
    let out = drive(&mut s, b"AUTH PLAIN\r\nAHUAcA==\r\nLIST 2\r\n", &mut seen, false);
    assert_eq!(out, "+ \r\n+OK maildrop has 2 messages (53 octets)\r\n+OK 2 24\r\n");
}

#[test]
fn quit_before_login() {
    let (mut s, mut seen) = session();
    let out = drive(&mut s, b"QUIT\r\nSTAT\r\n", &mut seen, false);
    assert_eq!(out, "+OK pop.example.test POP3 server signing off\r\n");
    assert!(seen.closed && seen.quit.is_none());
}

#[test]
fn password_is_redacted_in_debug() {
    let e = Event::Login { user: "u".into(), password: Secret::new("hunter2".into()) };
    assert!(!format!("{e:?}").contains("hunter2"));
}
