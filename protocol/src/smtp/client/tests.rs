//! Transcript tests of the client session: `S:` lines are what the server sends, `C:` lines
//! what the session must have written by then. Every transcript runs with the server's bytes
//! fed whole and in pieces of 1, 2, 3 and 7 octets; the results must be the same.

use super::*;
use crate::smtp::command::RcptParams;

/// What a run produced: everything written and every event, in order.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    written: String,
    events: Vec<ClientEvent>,
    refused: Vec<Unsendable>,
    /// The phase before each server block was fed.
    phases: Vec<Phase>,
}

impl Run {
    fn reports(&self) -> Vec<&MessageReport> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::MessageDone(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> &Result<(), SessionError> {
        let closes: Vec<_> = self
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Closed(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(closes.len(), 1, "one Closed event: {:?}", self.events);
        assert!(matches!(self.events.last(), Some(ClientEvent::Closed(_))), "Closed comes last: {:?}", self.events);
        closes[0]
    }
}

fn mailbox(address: &str) -> Mailbox {
    let (local, domain) = address.rsplit_once('@').expect("an address");
    Mailbox { local: local.into(), domain: domain.into() }
}

fn rcpt(address: &str) -> Recipient {
    Recipient { path: ForwardPath::Mailbox(mailbox(address)), params: RcptParams::default() }
}

fn message(from: &str, to: &[&str], content: &[u8]) -> Message {
    Message {
        from: (!from.is_empty()).then(|| mailbox(from)),
        params: MailParams::default(),
        recipients: to.iter().map(|t| rcpt(t)).collect(),
        content: Box::new(content.to_vec()),
    }
}

fn config() -> ClientConfig {
    ClientConfig::new("out.example.test")
}

/// Drives the session like a driver: writes, hands out the messages in turn on `Ready`
/// (then QUIT), completes TLS handshakes at once.
fn pump(
    s: &mut ClientSession,
    messages: &mut std::vec::IntoIter<Message>,
    written: &mut Vec<u8>,
    events: &mut Vec<ClientEvent>,
    refused: &mut Vec<Unsendable>,
) {
    loop {
        let n = s.poll_transmit(written);
        let Some(event) = s.poll_event() else {
            if n == 0 {
                return;
            }
            continue;
        };
        events.push(event.clone());
        match event {
            ClientEvent::Ready => loop {
                let Some(m) = messages.next() else {
                    s.quit();
                    break;
                };
                match s.send_message(m) {
                    Ok(()) => break,
                    Err(r) => refused.push(r.reason),
                }
            },
            ClientEvent::StartTls => s.handle_tls_established(),
            ClientEvent::MessageDone(_) | ClientEvent::Closed(_) => {}
        }
    }
}

/// Runs `transcript` once, feeding each block of consecutive `S:` lines in pieces of `step`
/// octets. `EOF` and `TIMEOUT` lines end the connection that way.
fn run_once(cfg: ClientConfig, messages: Vec<Message>, transcript: &str, step: usize) -> Run {
    let mut s = ClientSession::new(cfg);
    let mut messages = messages.into_iter();
    let (mut written, mut events, mut refused, mut phases) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut expected = String::new();
    let mut server = String::new();
    let lines: Vec<&str> = transcript.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        pump(&mut s, &mut messages, &mut written, &mut events, &mut refused);
        if let Some(c) = line.strip_prefix("C:") {
            expected.push_str(c.strip_prefix(' ').unwrap_or(c));
            expected.push_str("\r\n");
            continue;
        }
        if let Some(srv) = line.strip_prefix("S:") {
            server.push_str(srv.strip_prefix(' ').unwrap_or(srv));
            server.push_str("\r\n");
            if lines.get(i + 1).is_some_and(|next| next.starts_with("S:")) {
                continue;
            }
        }
        assert_eq!(String::from_utf8_lossy(&written), expected, "client output before {line:?} (step {step})");
        phases.push(s.phase());
        match *line {
            "EOF" => s.handle_eof(),
            "TIMEOUT" => s.handle_timeout(),
            _ if line.starts_with("S:") => {
                for piece in std::mem::take(&mut server).as_bytes().chunks(step) {
                    s.handle_input(piece);
                    pump(&mut s, &mut messages, &mut written, &mut events, &mut refused);
                }
            }
            _ => panic!("bad transcript line {line:?}"),
        }
    }
    pump(&mut s, &mut messages, &mut written, &mut events, &mut refused);
    assert_eq!(String::from_utf8_lossy(&written), expected, "client output at the end (step {step})");
    assert!(messages.next().is_none(), "messages left over");
    Run { written: String::from_utf8_lossy(&written).into_owned(), events, refused, phases }
}

/// Runs `transcript` with the server's bytes whole and split; all runs must agree.
fn run(cfg: ClientConfig, messages: impl Fn() -> Vec<Message>, transcript: &str) -> Run {
    let whole = run_once(cfg.clone(), messages(), transcript, usize::MAX);
    for step in [1, 2, 3, 7] {
        let split = run_once(cfg.clone(), messages(), transcript, step);
        assert_eq!(split, whole, "feeding {step} octets at a time changed the result");
    }
    whole
}

fn answer(code: u16, status: &str, text: &str, stage: Stage) -> Answer {
    Answer { reply: Reply::new(code, status, text), stage }
}

const EHLO_PLAIN: &str = "S: 220 mx.example.net ESMTP
    C: EHLO out.example.test
    S: 250-mx.example.net
    S: 250 8BITMIME";

#[test]
fn one_message_one_command_at_a_time() {
    let r = run(
        config(),
        || vec![message("alice@example.test", &["bob@example.net"], b"Subject: hi\r\n\r\n.leading dot\r\nend")],
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 250 2.1.0 Ok
            C: RCPT TO:<bob@example.net>
            S: 250 2.1.5 Ok
            C: DATA
            S: 354 End data with <CR><LF>.<CR><LF>
            C: Subject: hi
            C:
            C: ..leading dot
            C: end
            C: .
            S: 250 2.0.0 Ok: queued as 12345
            C: QUIT
            S: 221 2.0.0 Bye"
        ),
    );
    assert_eq!(
        r.reports(),
        [&MessageReport {
            recipients: vec![Outcome::Delivered(answer(250, "2.0.0", "Ok: queued as 12345", Stage::Content))],
            content_sent: true,
        }]
    );
    assert_eq!(r.closed(), &Ok(()));
    assert_eq!(
        r.phases,
        [Phase::Greeting, Phase::Ehlo, Phase::Mail, Phase::Rcpt, Phase::Data, Phase::DataEnd, Phase::Quit]
    );
    assert_eq!(r.events.first(), Some(&ClientEvent::Ready));
}

const EHLO_PIPELINING: &str = "S: 220 mx.example.net ESMTP
    C: EHLO out.example.test
    S: 250-mx.example.net Hello
    S: 250-PIPELINING
    S: 250-SIZE 10240000
    S: 250-8BITMIME
    S: 250-DSN
    S: 250 ENHANCEDSTATUSCODES";

fn dsn_message() -> Message {
    let mut m = message(
        "alice@example.test",
        &["bob@example.net", "nobody@example.net", "busy@example.net", "carol@example.net"],
        b"Subject: caf\xc3\xa9\r\n\r\n8-bit body\r\n",
    );
    m.params = MailParams {
        body: BodyType::EightBitMime,
        ret: Some(Ret::Headers),
        envid: Some("QQ314159".into()),
        size: Some(1),
        ..MailParams::default()
    };
    m.recipients[0].params = RcptParams {
        notify: Some(Notify { success: true, failure: true, ..Notify::default() }),
        orcpt: Some("rfc822;bob@example.net".into()),
    };
    m.recipients[1].params = RcptParams { notify: Some(Notify { never: true, ..Notify::default() }), orcpt: None };
    m
}

#[test]
fn pipelined_group_with_partial_recipient_failure() {
    let r = run(
        config(),
        || vec![dsn_message()],
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=30 BODY=8BITMIME RET=HDRS ENVID=QQ314159
            C: RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net
            C: RCPT TO:<nobody@example.net> NOTIFY=NEVER
            C: RCPT TO:<busy@example.net>
            C: RCPT TO:<carol@example.net>
            C: DATA
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 550-5.1.1 <nobody@example.net>: Recipient address rejected:
            S: 550 5.1.1 User unknown in virtual mailbox table
            S: 451 4.2.0 <busy@example.net>: greylisted, try again later
            S: 250 2.1.5 Ok
            S: 354 End data with <CR><LF>.<CR><LF>
            C: Subject: café
            C:
            C: 8-bit body
            C: .
            S: 250 2.0.0 Ok: queued as ABC
            C: QUIT
            S: 221 2.0.0 Bye"
        ),
    );
    let delivered = Outcome::Delivered(answer(250, "2.0.0", "Ok: queued as ABC", Stage::Content));
    let rejected = Reply {
        code: 550,
        status: "5.1.1".into(),
        lines: vec![
            "<nobody@example.net>: Recipient address rejected:".into(),
            "User unknown in virtual mailbox table".into(),
        ],
    };
    assert_eq!(
        r.reports()[0].recipients,
        [
            delivered.clone(),
            Outcome::Failed(Answer { reply: rejected, stage: Stage::Rcpt }),
            Outcome::Deferred(answer(451, "4.2.0", "<busy@example.net>: greylisted, try again later", Stage::Rcpt)),
            delivered,
        ]
    );
    assert_eq!(r.reports()[0].recipients[2].answer().unwrap().status(), "4.2.0");
    assert_eq!(r.closed(), &Ok(()));
}

#[test]
fn pipelined_all_recipients_refused_and_data_accepted_sends_a_lone_dot() {
    let r = run(
        config(),
        || {
            vec![
                message("alice@example.test", &["x@example.net", "y@example.net"], b"first\r\n"),
                message("alice@example.test", &["z@example.net"], b"second\r\n"),
            ]
        },
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=7
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            C: DATA
            S: 250 2.1.0 Ok
            S: 550 5.1.1 no x
            S: 550 5.1.1 no y
            S: 354 go ahead
            C: .
            S: 554 5.5.1 Error: no valid recipients
            C: MAIL FROM:<alice@example.test> SIZE=8
            C: RCPT TO:<z@example.net>
            C: DATA
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 354 go ahead
            C: second
            C: .
            S: 250 2.0.0 Ok
            C: QUIT
            S: 221 2.0.0 Bye"
        ),
    );
    let reports = r.reports();
    assert_eq!(
        reports[0].recipients,
        [
            Outcome::Failed(answer(550, "5.1.1", "no x", Stage::Rcpt)),
            Outcome::Failed(answer(550, "5.1.1", "no y", Stage::Rcpt)),
        ]
    );
    assert!(!reports[0].content_sent);
    assert!(matches!(reports[1].recipients[0], Outcome::Delivered(_)));
}

#[test]
fn pipelined_all_recipients_refused_and_data_refused_resets_before_the_next_message() {
    let r = run(
        config(),
        || {
            vec![
                message("alice@example.test", &["x@example.net"], b"first\r\n"),
                message("alice@example.test", &["z@example.net"], b"second\r\n"),
            ]
        },
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=7
            C: RCPT TO:<x@example.net>
            C: DATA
            S: 250 2.1.0 Ok
            S: 450 4.1.1 mailbox busy
            S: 554 5.5.1 Error: no valid recipients
            C: RSET
            C: MAIL FROM:<alice@example.test> SIZE=8
            C: RCPT TO:<z@example.net>
            C: DATA
            S: 250 2.0.0 Ok
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 354 go ahead
            C: second
            C: .
            S: 250 2.0.0 Ok
            C: QUIT
            S: 221 2.0.0 Bye"
        ),
    );
    assert_eq!(r.reports()[0].recipients, [Outcome::Deferred(answer(450, "4.1.1", "mailbox busy", Stage::Rcpt))]);
    assert!(matches!(r.reports()[1].recipients[0], Outcome::Delivered(_)));
    assert_eq!(r.phases[3], Phase::Rset);
}

#[test]
fn without_pipelining_no_data_when_no_recipient_and_rset_waits_for_its_reply() {
    let r = run(
        config(),
        || {
            vec![
                message("alice@example.test", &["x@example.net", "y@example.net"], b"first\r\n"),
                message("alice@example.test", &["z@example.net"], b"second\r\n"),
            ]
        },
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 250 2.1.0 Ok
            C: RCPT TO:<x@example.net>
            S: 550 5.1.1 no x
            C: RCPT TO:<y@example.net>
            S: 550 5.1.1 no y
            C: RSET
            S: 250 2.0.0 Ok
            C: MAIL FROM:<alice@example.test>
            S: 250 2.1.0 Ok
            C: RCPT TO:<z@example.net>
            S: 250 2.1.5 Ok
            C: DATA
            S: 354 go ahead
            C: second
            C: .
            S: 250 2.0.0 Ok
            C: QUIT
            S: 221 2.0.0 Bye"
        ),
    );
    assert!(r.reports()[0].recipients.iter().all(|o| matches!(o, Outcome::Failed(a) if a.stage == Stage::Rcpt)));
    assert!(matches!(r.reports()[1].recipients[0], Outcome::Delivered(_)));
}

#[test]
fn mail_refused_applies_to_every_recipient() {
    // One command at a time: nothing after the refused MAIL.
    let r = run(
        config(),
        || vec![message("alice@example.test", &["x@example.net", "y@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 553 5.7.1 sender rejected
            C: QUIT
            S: 221 Bye"
        ),
    );
    let refused = Outcome::Failed(answer(553, "5.7.1", "sender rejected", Stage::Mail));
    assert_eq!(r.reports()[0].recipients, [refused.clone(), refused.clone()]);
    // Pipelined: the RCPT and DATA replies are read and ignored.
    let r = run(
        config(),
        || vec![message("alice@example.test", &["x@example.net", "y@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=3
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            C: DATA
            S: 553 5.7.1 sender rejected
            S: 503 5.5.1 Error: need MAIL command
            S: 250 2.1.5 Ok (odd but harmless)
            S: 503 5.5.1 Error: need RCPT command
            C: QUIT
            S: 221 Bye"
        ),
    );
    assert_eq!(r.reports()[0].recipients, [refused.clone(), refused]);
    assert_eq!(r.closed(), &Ok(()));
}

#[test]
fn data_refused_and_content_refused() {
    let r = run(
        config(),
        || {
            vec![
                message("alice@example.test", &["x@example.net", "y@example.net"], b"m\r\n"),
                message("alice@example.test", &["z@example.net"], b"spam\r\n"),
            ]
        },
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 250 Ok
            C: RCPT TO:<x@example.net>
            S: 250 Ok
            C: RCPT TO:<y@example.net>
            S: 550 5.1.1 no y
            C: DATA
            S: 451 4.3.0 try later
            C: RSET
            S: 250 Ok
            C: MAIL FROM:<alice@example.test>
            S: 250 Ok
            C: RCPT TO:<z@example.net>
            S: 250 Ok
            C: DATA
            S: 354 go
            C: spam
            C: .
            S: 554 5.7.1 looks like spam
            C: QUIT
            S: 221 Bye"
        ),
    );
    let reports = r.reports();
    assert_eq!(
        reports[0].recipients,
        [
            Outcome::Deferred(answer(451, "4.3.0", "try later", Stage::Data)),
            Outcome::Failed(answer(550, "5.1.1", "no y", Stage::Rcpt)),
        ]
    );
    assert_eq!(reports[1].recipients, [Outcome::Failed(answer(554, "5.7.1", "looks like spam", Stage::Content))]);
    assert!(reports[1].content_sent);
    // No enhanced code from the server: the class stands in.
    assert_eq!(answer(554, "", "no", Stage::Content).status(), "5.0.0");
}

#[test]
fn starttls_then_ehlo_again_then_auth() {
    let mut cfg = config();
    cfg.credentials = Some(Credentials { username: "relay".into(), password: Secret::new("s3cret".into()) });
    let r = run(
        cfg,
        || vec![message("alice@example.test", &["bob@example.net"], b"m\r\n")],
        "S: 220 relay.example.net ESMTP
        C: EHLO out.example.test
        S: 250-relay.example.net
        S: 250-PIPELINING
        S: 250-SIZE 100
        S: 250 STARTTLS
        C: STARTTLS
        S: 220 2.0.0 Ready to start TLS
        C: EHLO out.example.test
        S: 250-relay.example.net
        S: 250-PIPELINING
        S: 250 AUTH LOGIN PLAIN
        C: AUTH PLAIN AHJlbGF5AHMzY3JldA==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.test> AUTH=<>
        C: RCPT TO:<bob@example.net>
        C: DATA
        S: 250 Ok
        S: 250 Ok
        S: 354 go
        C: m
        C: .
        S: 250 Ok
        C: QUIT
        S: 221 Bye",
    );
    // Capabilities from before TLS (SIZE) are forgotten: no SIZE= after the second EHLO.
    assert_eq!(r.events[0], ClientEvent::StartTls);
    assert!(r.phases.contains(&Phase::Auth));
    assert!(matches!(r.reports()[0].recipients[0], Outcome::Delivered(_)));
    assert_eq!(r.closed(), &Ok(()));
}

#[test]
fn auth_login_and_auth_refused() {
    let mut cfg = config();
    cfg.tls_active = true;
    cfg.credentials = Some(Credentials { username: "relay".into(), password: Secret::new("s3cret".into()) });
    let r = run(
        cfg.clone(),
        Vec::new,
        "S: 220 relay.example.net ESMTP
        C: EHLO out.example.test
        S: 250-relay.example.net
        S: 250-STARTTLS
        S: 250 AUTH=LOGIN
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: cmVsYXk=
        S: 334 UGFzc3dvcmQ6
        C: czNjcmV0
        S: 235 2.7.0 Authentication successful
        C: QUIT
        S: 221 Bye",
    );
    assert_eq!(r.closed(), &Ok(()));
    let r = run(
        cfg,
        Vec::new,
        "S: 220 relay.example.net ESMTP
        C: EHLO out.example.test
        S: 250-relay.example.net
        S: 250 AUTH PLAIN
        C: AUTH PLAIN AHJlbGF5AHMzY3JldA==
        S: 535 5.7.8 Error: authentication failed
        C: QUIT",
    );
    let err = r.closed().clone().unwrap_err();
    assert_eq!(
        err,
        SessionError::Refused { reply: Reply::new(535, "5.7.8", "Error: authentication failed"), phase: Phase::Auth }
    );
    assert!(err.is_permanent());
}

#[test]
fn auth_needs_tls_and_a_mechanism() {
    let mut cfg = config();
    cfg.tls = TlsPolicy::Disabled;
    cfg.credentials = Some(Credentials { username: "u".into(), password: Secret::new("p".into()) });
    let r = run(
        cfg.clone(),
        Vec::new,
        "S: 220 relay ESMTP
        C: EHLO out.example.test
        S: 250-relay
        S: 250-STARTTLS
        S: 250 AUTH PLAIN
        C: QUIT",
    );
    assert_eq!(r.closed(), &Err(SessionError::AuthNeedsTls));
    cfg.auth_without_tls = true;
    let r = run(
        cfg,
        Vec::new,
        "S: 220 relay ESMTP
        C: EHLO out.example.test
        S: 250-relay
        S: 250 AUTH CRAM-MD5
        C: QUIT",
    );
    assert_eq!(r.closed(), &Err(SessionError::AuthNotOffered));
}

#[test]
fn starttls_required_opportunistic_and_refused() {
    let mut cfg = config();
    cfg.tls = TlsPolicy::Required;
    let r = run(
        cfg.clone(),
        Vec::new,
        "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250 PIPELINING
        C: QUIT",
    );
    assert_eq!(r.closed(), &Err(SessionError::TlsNotOffered));
    let refusing = "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250 STARTTLS
        C: STARTTLS
        S: 454 4.7.0 TLS not available due to local problem
        C: QUIT";
    let r = run(cfg, Vec::new, refusing);
    assert_eq!(
        r.closed(),
        &Err(SessionError::Refused {
            reply: Reply::new(454, "4.7.0", "TLS not available due to local problem"),
            phase: Phase::StartTls
        })
    );
    assert!(!r.closed().as_ref().unwrap_err().is_permanent());
    // Opportunistic: refused, so on in plain text.
    let r = run(config(), Vec::new, &format!("{refusing}\nS: 221 Bye"));
    assert_eq!(r.closed(), &Ok(()));
    assert_eq!(r.events[0], ClientEvent::Ready);
    // Disabled: not even tried.
    let mut cfg = config();
    cfg.tls = TlsPolicy::Disabled;
    let r = run(
        cfg,
        Vec::new,
        "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250 STARTTLS
        C: QUIT
        S: 221 Bye",
    );
    assert_eq!(r.closed(), &Ok(()));
}

#[test]
fn plain_text_after_the_starttls_reply_ends_the_session() {
    // In one read with the 220: caught before the handshake starts.
    let transcript = "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250 STARTTLS
        C: STARTTLS
        S: 220 go ahead
        S: 250-mx
        S: 250 AUTH PLAIN";
    let r = run_once(config(), Vec::new(), transcript, usize::MAX);
    assert_eq!(r.closed(), &Err(SessionError::InputAfterStartTls));
    assert!(!r.events.contains(&ClientEvent::StartTls));
    // In a later read, before the driver finished the handshake: caught too.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n");
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert_eq!(out, b"EHLO out.example.test\r\nSTARTTLS\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::StartTls));
    assert_eq!(s.phase(), Phase::TlsHandshake);
    s.handle_input(b"250 fake\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Closed(Err(SessionError::InputAfterStartTls))));
    // A failed handshake ends it too.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::StartTls));
    s.handle_tls_failed();
    assert_eq!(s.poll_event(), Some(ClientEvent::Closed(Err(SessionError::TlsFailed))));
}

#[test]
fn helo_fallback_has_no_extensions() {
    let r = run(
        config(),
        || {
            let mut eight_bit = message("alice@example.test", &["bob@example.net"], b"caf\xc3\xa9\r\n");
            eight_bit.params.body = BodyType::EightBitMime;
            vec![eight_bit, message("alice@example.test", &["bob@example.net"], b"plain\r\n")]
        },
        "S: 220 old.example.net SMTP
        C: EHLO out.example.test
        S: 502 5.5.2 Error: command not recognized
        C: HELO out.example.test
        S: 250 old.example.net
        C: MAIL FROM:<alice@example.test>
        S: 250 Ok
        C: RCPT TO:<bob@example.net>
        S: 250 Ok
        C: DATA
        S: 354 go
        C: plain
        C: .
        S: 250 Ok
        C: QUIT
        S: 221 Bye",
    );
    assert_eq!(r.refused, [Unsendable::NeedsEightBitMime]);
    assert_eq!(Unsendable::NeedsEightBitMime.status(), "5.6.3");
    assert_eq!(r.reports().len(), 1);
    // HELO refused too: the session ends.
    let r = run(
        config(),
        Vec::new,
        "S: 220 old.example.net SMTP
        C: EHLO out.example.test
        S: 500 what
        C: HELO out.example.test
        S: 550 go away
        C: QUIT",
    );
    assert!(matches!(r.closed(), Err(SessionError::Refused { phase: Phase::Ehlo, .. })));
}

#[test]
fn greeting_refused() {
    let r = run(
        config(),
        Vec::new,
        "S: 554 5.7.1 mx.example.net: no SMTP service here
        C: QUIT",
    );
    let err = r.closed().clone().unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.reply().unwrap().code, 554);
    assert!(err.to_string().contains("no SMTP service here"), "{err}");
    assert!(r.reports().is_empty());
    let r = run_once(config(), Vec::new(), "S: 421 4.3.2 busy", usize::MAX);
    assert!(matches!(r.closed(), Err(SessionError::Refused { phase: Phase::Greeting, .. })));
}

#[test]
fn a_421_mid_session_leaves_recipients_unanswered() {
    let r = run(
        config(),
        || vec![message("alice@example.test", &["x@example.net", "y@example.net", "z@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=3
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            C: RCPT TO:<z@example.net>
            C: DATA
            S: 250 2.1.0 Ok
            S: 550 5.1.1 no x
            S: 250 2.1.5 Ok
            S: 421 4.7.0 mx.example.net Error: too many errors"
        ),
    );
    assert_eq!(
        r.reports()[0].recipients,
        [Outcome::Failed(answer(550, "5.1.1", "no x", Stage::Rcpt)), Outcome::Unanswered, Outcome::Unanswered]
    );
    assert_eq!(
        r.closed(),
        &Err(SessionError::Refused {
            reply: Reply::new(421, "4.7.0", "mx.example.net Error: too many errors"),
            phase: Phase::Rcpt
        })
    );
    // No QUIT after a 421 (the transcript would have failed on it).
    assert!(!r.written.contains("QUIT"));
    // In reply to MAIL, without pipelining.
    let r = run_once(
        config(),
        vec![message("alice@example.test", &["x@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 421 4.4.2 timeout exceeded"
        ),
        usize::MAX,
    );
    assert_eq!(r.reports()[0].recipients, [Outcome::Unanswered]);
    // Between messages: the server closes an idle connection.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250 mx\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    s.handle_input(b"421 4.4.2 mx Error: timeout exceeded\r\n");
    assert_eq!(
        s.poll_event(),
        Some(ClientEvent::Closed(Err(SessionError::Refused {
            reply: Reply::new(421, "4.4.2", "mx Error: timeout exceeded"),
            phase: Phase::Ready
        })))
    );
    assert_eq!(s.phase(), Phase::Closed);
}

#[test]
fn eof_and_timeout_leave_recipients_unanswered() {
    let r = run(
        config(),
        || vec![message("alice@example.test", &["x@example.net", "y@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 250 Ok
            C: RCPT TO:<x@example.net>
            S: 250 Ok
            C: RCPT TO:<y@example.net>
            S: 250 Ok
            C: DATA
            S: 354 go
            C: m
            C: .
            EOF"
        ),
    );
    assert_eq!(r.reports()[0], &MessageReport { recipients: vec![Outcome::Unanswered; 2], content_sent: true });
    assert_eq!(r.closed(), &Err(SessionError::ConnectionClosed { phase: Phase::DataEnd }));
    let r = run(
        config(),
        || vec![message("alice@example.test", &["x@example.net", "y@example.net"], b"m\r\n")],
        &format!(
            "{EHLO_PLAIN}
            C: MAIL FROM:<alice@example.test>
            S: 250 Ok
            C: RCPT TO:<x@example.net>
            S: 550 no
            C: RCPT TO:<y@example.net>
            TIMEOUT"
        ),
    );
    assert_eq!(r.reports()[0].recipients[1], Outcome::Unanswered);
    assert!(matches!(r.reports()[0].recipients[0], Outcome::Failed(_)));
    assert_eq!(r.closed(), &Err(SessionError::Timeout { phase: Phase::Rcpt }));
    // EOF after QUIT is the normal end.
    let r = run(
        config(),
        Vec::new,
        &format!(
            "{EHLO_PLAIN}
            C: QUIT
            EOF"
        ),
    );
    assert_eq!(r.closed(), &Ok(()));
}

#[test]
fn malformed_and_unexpected_replies_end_the_session() {
    for (bad, expect_malformed) in [
        ("S: 25O Ok", true),
        ("S: 250-2.1.0 Ok\nS: 251 2.1.0 Ok", true),
        ("S: 354 go ahead", false),
        ("S: 150 what", true),
    ] {
        let r = run(
            config(),
            || vec![message("alice@example.test", &["x@example.net"], b"m\r\n")],
            &format!(
                "{EHLO_PLAIN}
                C: MAIL FROM:<alice@example.test>
                {bad}"
            ),
        );
        assert_eq!(r.reports()[0].recipients, [Outcome::Unanswered], "{bad}");
        let err = r.closed().clone().unwrap_err();
        assert_eq!(matches!(err, SessionError::Malformed(_)), expect_malformed, "{bad}: {err:?}");
        assert!(!r.written.ends_with("QUIT\r\n"));
    }
    // A bare LF line end.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\n");
    assert!(matches!(
        s.poll_event(),
        Some(ClientEvent::Closed(Err(SessionError::Malformed(ReplyError::NotCrlf { .. }))))
    ));
    // A reply nobody asked for.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250 mx\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    s.handle_input(b"250 surprise\r\n");
    assert_eq!(
        s.poll_event(),
        Some(ClientEvent::Closed(Err(SessionError::UnexpectedReply {
            reply: Reply::new(250, "", "surprise"),
            phase: Phase::Ready
        })))
    );
    // A final reply while the content is still being written.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250 mx\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    let big = vec![b'x'; TRANSMIT_CHUNK_BYTES * 3];
    let mut m = message("a@example.test", &["b@example.net"], b"");
    m.content = Box::new(big);
    s.send_message(m).unwrap();
    s.handle_input(b"250 Ok\r\n250 Ok\r\n354 go\r\n");
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert_eq!(s.phase(), Phase::DataBlock);
    s.handle_input(b"552 5.3.4 too big\r\n");
    let report = s.poll_event();
    assert_eq!(
        report,
        Some(ClientEvent::MessageDone(MessageReport {
            recipients: vec![Outcome::Failed(answer(552, "5.3.4", "too big", Stage::Content))],
            content_sent: false
        }))
    );
    assert!(matches!(s.poll_event(), Some(ClientEvent::Closed(Err(SessionError::UnexpectedReply { .. })))));
    assert_eq!(s.poll_transmit(&mut out), 0);
}

#[test]
fn messages_refused_before_mail() {
    let r = run(
        config(),
        || {
            let big = message("alice@example.test", &["bob@example.net"], &[b'x'; 101]);
            let utf8_address = message("jösé@example.test", &["bob@example.net"], b"m\r\n");
            let mut utf8_header = message("alice@example.test", &["bob@example.net"], b"m\r\n");
            utf8_header.params.smtputf8 = true;
            let mut binary = message("alice@example.test", &["bob@example.net"], b"\x00\x01");
            binary.params.body = BodyType::BinaryMime;
            let none = message("alice@example.test", &[], b"m\r\n");
            let broken = message("alice@example.test", &["bob\r\nDATA@example.net"], b"m\r\n");
            let mut bad_orcpt = message("alice@example.test", &["bob@example.net"], b"m\r\n");
            bad_orcpt.recipients[0].params.orcpt = Some("rfc822;a b".into());
            let mut bad_envid = message("alice@example.test", &["bob@example.net"], b"m\r\n");
            bad_envid.params.envid = Some("a=b".into());
            vec![big, utf8_address, utf8_header, binary, none, broken, bad_orcpt, bad_envid]
        },
        "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250-CHUNKING
        S: 250 SIZE 100
        C: QUIT
        S: 221 Bye",
    );
    assert_eq!(
        r.refused,
        [
            Unsendable::TooBig { size: 101, limit: 100 },
            Unsendable::NeedsSmtpUtf8 { addresses: true },
            Unsendable::NeedsSmtpUtf8 { addresses: false },
            Unsendable::NeedsBinaryMime,
            Unsendable::NoRecipients,
            Unsendable::InvalidEnvelope { what: "recipient address" },
            Unsendable::InvalidEnvelope { what: "ORCPT parameter" },
            Unsendable::InvalidEnvelope { what: "ENVID parameter" },
        ]
    );
    let statuses: Vec<&str> = r.refused.iter().map(Unsendable::status).collect();
    assert_eq!(statuses, ["5.3.4", "5.6.7", "5.6.9", "5.6.3", "5.5.1", "5.5.4", "5.5.4", "5.5.4"]);
    assert!(r.refused.iter().all(|u| !u.to_string().is_empty()));
    assert!(r.reports().is_empty());
}

#[test]
fn smtputf8_is_declared_and_orcpt_follows_it() {
    let make = || {
        let mut m = message("jösé@example.test", &["bob@example.net"], "Subject: ¡hola!\r\n\r\nx\r\n".as_bytes());
        m.recipients[0].params.orcpt = Some("utf-8;bøb@example.net".into());
        m.params.body = BodyType::EightBitMime;
        vec![m]
    };
    let r = run(
        config(),
        make,
        "S: 220 mx ESMTP
        C: EHLO out.example.test
        S: 250-mx
        S: 250-8BITMIME
        S: 250-DSN
        S: 250 SMTPUTF8
        C: MAIL FROM:<jösé@example.test> BODY=8BITMIME SMTPUTF8
        S: 250 Ok
        C: RCPT TO:<bob@example.net> ORCPT=utf-8;bøb@example.net
        S: 250 Ok
        C: DATA
        S: 354 go
        C: Subject: ¡hola!
        C:
        C: x
        C: .
        S: 250 Ok
        C: QUIT
        S: 221 Bye",
    );
    assert!(matches!(r.reports()[0].recipients[0], Outcome::Delivered(_)));
    // Without SMTPUTF8 in the transaction a UTF-8 ORCPT goes in its ASCII form.
    assert_eq!(orcpt_param("utf-8;bøb@example.net", false).unwrap(), "utf-8;b\\x{F8}b@example.net");
    assert_eq!(orcpt_param("utf-8;bøb@example.net", true).unwrap(), "utf-8;bøb@example.net");
    assert_eq!(orcpt_param("rfc822;bob+x@example.net", false).unwrap(), "rfc822;bob+x@example.net");
    assert_eq!(orcpt_param("rfc822;bøb@example.net", true), None);
    assert_eq!(orcpt_param("utf-8;bø\\x{zz}", false), None);
    assert_eq!(notify_param(Notify::default()), None);
    assert_eq!(notify_param(Notify { delay: true, failure: true, ..Notify::default() }).unwrap(), "FAILURE,DELAY");
}

#[test]
fn several_messages_on_one_connection() {
    let r = run(
        config(),
        || {
            vec![
                message("alice@example.test", &["x@example.net"], b"one\r\n"),
                message("", &["y@example.net"], b"two\r\n"),
                message("carol@example.test", &["z@example.net"], b"three\r\n"),
            ]
        },
        &format!(
            "{EHLO_PIPELINING}
            C: MAIL FROM:<alice@example.test> SIZE=5
            C: RCPT TO:<x@example.net>
            C: DATA
            S: 250 Ok
            S: 250 Ok
            S: 354 go
            C: one
            C: .
            S: 250 Ok 1
            C: MAIL FROM:<> SIZE=5
            C: RCPT TO:<y@example.net>
            C: DATA
            S: 250 Ok
            S: 250 Ok
            S: 354 go
            C: two
            C: .
            S: 250 Ok 2
            C: MAIL FROM:<carol@example.test> SIZE=7
            C: RCPT TO:<z@example.net>
            C: DATA
            S: 250 Ok
            S: 250 Ok
            S: 354 go
            C: three
            C: .
            S: 250 Ok 3
            C: QUIT
            S: 221 Bye"
        ),
    );
    let texts: Vec<&str> =
        r.reports().iter().map(|m| m.recipients[0].answer().unwrap().reply.lines[0].as_str()).collect();
    assert_eq!(texts, ["Ok 1", "Ok 2", "Ok 3"]);
    let readies = r.events.iter().filter(|e| **e == ClientEvent::Ready).count();
    assert_eq!(readies, 4);
}

const EHLO_CHUNKING: &str = "S: 220 mx ESMTP
    C: EHLO out.example.test
    S: 250-mx
    S: 250-PIPELINING
    S: 250-CHUNKING
    S: 250-BINARYMIME
    S: 250 8BITMIME";

fn binary(content: &[u8]) -> Message {
    let mut m = message("alice@example.test", &["x@example.net", "y@example.net"], content);
    m.params.body = BodyType::BinaryMime;
    m
}

fn chunked(bytes: usize) -> ClientConfig {
    let mut cfg = config();
    cfg.bdat_chunk_bytes = bytes;
    cfg
}

#[test]
fn bdat_chunks_pipelined() {
    let r = run(
        chunked(6),
        || vec![binary(b".aaa\r\n.bbb\r\ncc\r\n")],
        &format!(
            "{EHLO_CHUNKING}
            C: MAIL FROM:<alice@example.test> BODY=BINARYMIME
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            S: 250 Ok
            S: 550 5.1.1 no x
            S: 250 Ok
            C: BDAT 6
            C: .aaa
            C: BDAT 6
            C: .bbb
            C: BDAT 4 LAST
            C: cc
            S: 250 2.0.0 6 octets
            S: 250 2.0.0 12 octets
            S: 250 2.0.0 Ok: queued
            C: QUIT
            S: 221 Bye"
        ),
    );
    assert_eq!(
        r.reports()[0].recipients,
        [
            Outcome::Failed(answer(550, "5.1.1", "no x", Stage::Rcpt)),
            Outcome::Delivered(answer(250, "2.0.0", "Ok: queued", Stage::Content)),
        ]
    );
    assert!(r.reports()[0].content_sent);
    assert_eq!(r.phases[3], Phase::DataBlock);
}

#[test]
fn bdat_without_pipelining_waits_for_each_chunk() {
    let mut cfg = chunked(6);
    cfg.bdat = BdatPolicy::WhenOffered;
    cfg.pipelining = false;
    let r = run(
        cfg,
        || vec![message("alice@example.test", &["x@example.net"], b"aaaa\r\nbbbb\r\n")],
        &format!(
            "{EHLO_CHUNKING}
            C: MAIL FROM:<alice@example.test>
            S: 250 Ok
            C: RCPT TO:<x@example.net>
            S: 250 Ok
            C: BDAT 6
            C: aaaa
            S: 250 2.0.0 6 octets
            C: BDAT 6 LAST
            C: bbbb
            S: 250 2.0.0 Ok
            C: QUIT
            S: 221 Bye"
        ),
    );
    assert!(matches!(r.reports()[0].recipients[0], Outcome::Delivered(_)));
    assert_eq!(r.phases[4], Phase::DataBlock);
    assert_eq!(r.phases[5], Phase::DataEnd);
}

#[test]
fn bdat_chunk_refused_ends_the_transaction_and_rsets() {
    let r = run(
        chunked(6),
        || vec![binary(b"aaaa\r\nbbbb\r\ncc\r\n"), message("alice@example.test", &["z@example.net"], b"n\r\n")],
        &format!(
            "{EHLO_CHUNKING}
            C: MAIL FROM:<alice@example.test> BODY=BINARYMIME
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            S: 250 Ok
            S: 250 Ok
            S: 250 Ok
            C: BDAT 6
            C: aaaa
            C: BDAT 6
            C: bbbb
            C: BDAT 4 LAST
            C: cc
            S: 250 2.0.0 6 octets
            S: 552 5.3.4 message too big
            S: 503 5.5.1 no transaction
            C: RSET
            C: MAIL FROM:<alice@example.test>
            C: RCPT TO:<z@example.net>
            C: DATA
            S: 250 Ok
            S: 250 Ok
            S: 250 Ok
            S: 354 go
            C: n
            C: .
            S: 250 Ok
            C: QUIT
            S: 221 Bye"
        ),
    );
    let too_big = Outcome::Failed(answer(552, "5.3.4", "message too big", Stage::Content));
    assert_eq!(r.reports()[0].recipients, [too_big.clone(), too_big]);
    assert!(matches!(r.reports()[1].recipients[0], Outcome::Delivered(_)));
    // No recipient: no chunk at all.
    let r = run(
        chunked(6),
        || vec![binary(b"aaaa\r\n")],
        &format!(
            "{EHLO_CHUNKING}
            C: MAIL FROM:<alice@example.test> BODY=BINARYMIME
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            S: 250 Ok
            S: 550 no
            S: 550 no
            C: QUIT
            S: 221 Bye"
        ),
    );
    assert!(r.reports()[0].recipients.iter().all(|o| matches!(o, Outcome::Failed(_))));
}

#[test]
fn empty_content_and_big_content() {
    let r = run(
        chunked(6),
        || vec![binary(b"")],
        &format!(
            "{EHLO_CHUNKING}
            C: MAIL FROM:<alice@example.test> BODY=BINARYMIME
            C: RCPT TO:<x@example.net>
            C: RCPT TO:<y@example.net>
            S: 250 Ok
            S: 250 Ok
            S: 250 Ok
            C: BDAT 0 LAST
            S: 250 Ok
            C: QUIT
            S: 221 Bye"
        ),
    );
    assert!(r.reports()[0].recipients.iter().all(|o| matches!(o, Outcome::Delivered(_))));
    // A big message comes out in pieces of bounded size, and decodes back whole.
    let mut content = Vec::new();
    for i in 0..40_000 {
        content.extend_from_slice(format!("{}line {i}\r\n", if i % 7 == 0 { "." } else { "" }).as_bytes());
    }
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    let mut m = message("a@example.test", &["b@example.net"], b"");
    m.content = Box::new(std::sync::Arc::<[u8]>::from(content.clone()));
    s.send_message(m).unwrap();
    let mut head = Vec::new();
    s.poll_transmit(&mut head);
    assert_eq!(s.poll_transmit(&mut head), 0);
    s.handle_input(b"250 Ok\r\n250 Ok\r\n354 go\r\n");
    let mut wire = Vec::new();
    let mut pieces = 0;
    loop {
        let mut piece = Vec::new();
        if s.poll_transmit(&mut piece) == 0 {
            break;
        }
        assert!(piece.len() <= TRANSMIT_CHUNK_BYTES * 2 + 5, "{}", piece.len());
        wire.extend_from_slice(&piece);
        pieces += 1;
    }
    assert!(pieces > 5, "{pieces}");
    let mut decoder = crate::smtp::data::ContentDecoder::new(
        crate::smtp::data::Framing::Data,
        crate::smtp::data::Newlines::Reject,
        u64::MAX,
    );
    let mut decoded = Vec::new();
    assert_eq!(decoder.feed(&wire, &mut decoded), wire.len());
    assert!(decoder.is_done());
    assert_eq!(decoded, content);
    assert_eq!(s.phase(), Phase::DataEnd);
}

#[test]
fn phases_have_rfc5321_timeouts() {
    assert_eq!(Phase::Greeting.rfc5321_timeout(), Some(Duration::from_secs(300)));
    assert_eq!(Phase::Data.rfc5321_timeout(), Some(Duration::from_secs(120)));
    assert_eq!(Phase::DataBlock.rfc5321_timeout(), Some(Duration::from_secs(180)));
    assert_eq!(Phase::DataEnd.rfc5321_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(Phase::Ready.rfc5321_timeout(), None);
    for e in [
        SessionError::TlsNotOffered,
        SessionError::TlsFailed,
        SessionError::AuthNotOffered,
        SessionError::AuthNeedsTls,
        SessionError::InputAfterStartTls,
        SessionError::ConnectionClosed { phase: Phase::Mail },
        SessionError::Timeout { phase: Phase::DataEnd },
        SessionError::Malformed(ReplyError::LineTooLong),
    ] {
        assert!(!e.to_string().is_empty());
        assert!(!e.is_permanent());
        assert!(e.reply().is_none());
    }
}

#[test]
#[should_panic(expected = "not ready")]
fn a_message_before_ready_is_a_driver_bug() {
    let mut s = ClientSession::new(config());
    let _ = s.send_message(message("a@example.test", &["b@example.net"], b"m\r\n"));
}

#[test]
fn accessors_and_redacted_debug() {
    let mut cfg = config();
    cfg.tls_active = true;
    cfg.credentials = Some(Credentials { username: "relay".into(), password: Secret::new("pencil".into()) });
    assert!(!format!("{cfg:?}").contains("pencil"));
    let mut s = ClientSession::new(cfg);
    assert!(s.is_tls() && !s.is_authenticated());
    s.handle_input(b"220 relay\r\n250-relay\r\n250-SIZE 1000\r\n250 AUTH PLAIN\r\n");
    assert_eq!(s.phase(), Phase::Auth);
    assert_eq!(s.capabilities().max_size, Some(1000));
    s.handle_input(b"235 2.7.0 ok\r\n");
    assert!(s.is_authenticated());
    assert_eq!((s.poll_event(), s.phase()), (Some(ClientEvent::Ready), Phase::Ready));
    let m = message("a@example.test", &["b@example.net"], b"secret content\r\n");
    let debug = format!("{m:?}");
    assert!(debug.contains("content_len: 16") && !debug.contains("secret content"), "{debug}");
    s.send_message(m).unwrap();
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("MAIL FROM:<a@example.test> SIZE=16 AUTH=<>\r\n"));
    // After the end, quitting and a late handshake are no-ops.
    s.handle_eof();
    s.quit();
    s.handle_tls_established();
    assert_eq!(s.poll_transmit(&mut out), 0);
    assert!(matches!(s.poll_event(), Some(ClientEvent::MessageDone(_))));
    assert!(matches!(
        s.poll_event(),
        Some(ClientEvent::Closed(Err(SessionError::ConnectionClosed { phase: Phase::Mail })))
    ));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn no_stale_ready_after_the_end() {
    // One read holds the reply that ends a message and a 421: the driver must not be asked
    // for the next message.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250 mx\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    s.send_message(message("a@example.test", &["b@example.net"], b"m\r\n")).unwrap();
    s.handle_input(b"250 Ok\r\n250 Ok\r\n354 go\r\n");
    let mut out = Vec::new();
    while s.poll_transmit(&mut out) > 0 {}
    s.handle_input(b"250 Ok\r\n421 4.3.2 bye\r\n");
    assert!(
        matches!(s.poll_event(), Some(ClientEvent::MessageDone(r)) if matches!(r.recipients[0], Outcome::Delivered(_)))
    );
    assert!(matches!(
        s.poll_event(),
        Some(ClientEvent::Closed(Err(SessionError::Refused { phase: Phase::Ready, .. })))
    ));
    assert_eq!(s.poll_event(), None);
    // The same with STARTTLS: its 220 and plain text in one read.
    let mut s = ClientSession::new(config());
    s.handle_input(b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n421 bye\r\n");
    assert_eq!(s.poll_event(), Some(ClientEvent::Closed(Err(SessionError::InputAfterStartTls))));
}
