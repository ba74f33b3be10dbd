//! Transcript tests of the session state machine: scripted client input, a fake server
//! answering the session's questions, and the exact bytes the session sends back.

use super::*;

/// Answers like a small server: domain example.test with users alice and bob; everything
/// else is relaying. AUTH PLAIN accepts alice / secret.
#[derive(Default)]
struct Fake {
    delivered: Vec<Transaction>,
    closed: bool,
    starttls: usize,
}

impl Fake {
    fn plain_ok(response: &[u8]) -> Result<String, Reply> {
        if response == b"\0alice\0secret" {
            Ok("alice@example.test".into())
        } else {
            Err(Reply::new(535, "5.7.8", "Error: authentication failed"))
        }
    }

    /// Feeds `input` and answers events until the session needs more input or closes;
    /// returns what the session sent.
    fn run(&mut self, s: &mut Session, input: &[u8]) -> String {
        s.input(input);
        let mut out = Vec::new();
        loop {
            match s.poll() {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::Mail { .. } => s.answer_mail(Ok(())),
                Event::Rcpt { to, .. } => {
                    let verdict = match to {
                        ForwardPath::Postmaster => Ok(()),
                        ForwardPath::Mailbox(m) if m.domain == "example.test" => {
                            if m.local == "alice" || m.local == "bob" {
                                Ok(())
                            } else {
                                Err(Reply::new(550, "5.1.1", format!("<{m}>: Recipient address rejected")))
                            }
                        }
                        ForwardPath::Mailbox(_) => Err(Reply::new(554, "5.7.1", "Relay access denied")),
                    };
                    s.answer_rcpt(verdict);
                }
                Event::Vrfy(_) => s.answer_vrfy(Reply::new(252, "2.0.0", "Will try")),
                Event::Auth { mechanism, initial_response } => match (mechanism.as_str(), initial_response) {
                    ("PLAIN", Some(ir)) => s.auth_done(Fake::plain_ok(&ir)),
                    ("PLAIN", None) => s.auth_challenge(b""),
                    _ => s.auth_done(Err(Reply::new(504, "5.5.4", "Unsupported mechanism"))),
                },
                Event::AuthResponse(r) => s.auth_done(Fake::plain_ok(&r)),
                Event::StartTls => {
                    self.starttls += 1;
                    out.extend(s.take_output());
                    s.tls_started(vec!["PLAIN".into(), "LOGIN".into()]);
                }
                Event::Deliver => {
                    let tx = s.transaction().unwrap().clone();
                    let n = if s.mode() == Mode::Lmtp { tx.recipients.len() } else { 1 };
                    self.delivered.push(tx);
                    s.answer_delivery(vec![Reply::new(250, "2.0.0", "Ok: queued"); n]);
                }
            }
        }
        out.extend(s.take_output());
        String::from_utf8(out).unwrap()
    }
}

fn config(mode: Mode) -> SessionConfig {
    let mut c = SessionConfig::new("mx.example.test", mode);
    c.newlines = Newlines::Reject;
    c.starttls = true;
    c.mechanisms = vec!["SCRAM-SHA-256".into()];
    c
}

/// A session past its greeting and EHLO.
fn ready(mode: Mode, cfg: impl FnOnce(&mut SessionConfig)) -> (Session, Fake) {
    let mut c = config(mode);
    cfg(&mut c);
    let mut s = Session::new(c);
    let mut f = Fake::default();
    let greeting = f.run(&mut s, b"");
    assert!(greeting.starts_with("220 mx.example.test "), "{greeting}");
    let hello = if mode == Mode::Lmtp { &b"LHLO client.test\r\n"[..] } else { b"EHLO client.test\r\n" };
    let ehlo = f.run(&mut s, hello);
    assert!(ehlo.starts_with("250-mx.example.test\r\n250-PIPELINING\r\n"), "{ehlo}");
    (s, f)
}

#[test]
fn a_whole_conversation() {
    let mut s = Session::new(config(Mode::Smtp));
    let mut f = Fake::default();
    assert_eq!(f.run(&mut s, b""), "220 mx.example.test ESMTP Postlog\r\n");
    assert_eq!(
        f.run(&mut s, b"EHLO client.test\r\n"),
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n\
         250 DSN\r\n"
    );
    assert_eq!(f.run(&mut s, b"MAIL FROM:<sender@remote.test> SIZE=100\r\n"), "250 2.1.0 Ok\r\n");
    assert_eq!(f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        f.run(&mut s, b"RCPT TO:<carol@example.test>\r\n"),
        "550 5.1.1 <carol@example.test>: Recipient address rejected\r\n"
    );
    assert_eq!(f.run(&mut s, b"RCPT TO:<x@elsewhere.test>\r\n"), "554 5.7.1 Relay access denied\r\n");
    assert_eq!(f.run(&mut s, b"DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(f.run(&mut s, b"Subject: hi\r\n\r\n..dot\r\nbody\r\n"), "");
    assert_eq!(f.run(&mut s, b".\r\n"), "250 2.0.0 Ok: queued\r\n");
    assert_eq!(s.protocol_name(), "ESMTP");
    assert_eq!(f.run(&mut s, b"QUIT\r\n"), "221 2.0.0 Bye\r\n");
    assert!(f.closed);
    let tx = &f.delivered[0];
    assert_eq!(tx.from.as_ref().unwrap().to_string(), "sender@remote.test");
    assert_eq!(tx.recipients.len(), 1);
    assert_eq!(tx.content, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    // Two errors, forgiven by the delivery (as Postfix's smtpd_hard_error_limit).
    assert_eq!(s.errors(), 0);
}

#[test]
fn order_of_commands_is_checked() {
    let mut s = Session::new(config(Mode::Smtp));
    let mut f = Fake::default();
    f.run(&mut s, b"");
    assert_eq!(f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
    f.run(&mut s, b"EHLO c\r\n");
    assert_eq!(f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
    assert_eq!(f.run(&mut s, b"DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    assert_eq!(f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
    assert_eq!(f.run(&mut s, b"DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
    assert_eq!(f.run(&mut s, b"RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
    assert_eq!(f.run(&mut s, b"LHLO x\r\n"), "500 5.5.1 Error: command not recognized\r\n");
    assert_eq!(f.run(&mut s, b"VRFY alice\r\n"), "502 5.5.1 VRFY command is disabled\r\n");
    assert_eq!(f.run(&mut s, b"NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert!(f.run(&mut s, b"HELP\r\n").starts_with("214-2.0.0 Commands:"));
    assert_eq!(f.run(&mut s, b"AUTH PLAIN\r\n"), "503 5.5.1 Error: authentication not enabled\r\n");
    assert!(f.delivered.is_empty() && !f.closed);
}

#[test]
fn pipelined_group_gets_its_replies_in_one_write() {
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    let out = f.run(
        &mut s,
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\nDATA\r\n",
    );
    assert_eq!(
        out,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <nobody@example.test>: Recipient address rejected\r\n\
         250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    // The end of data and the next transaction may come together.
    let out = f.run(&mut s, b"x\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n");
    assert_eq!(
        out,
        "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(f.delivered[0].recipients.len(), 2);
}

#[test]
fn byte_at_a_time_equals_all_at_once() {
    let script: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
        line one\r\n..two\r\n.\r\nBDAT 5\r\nhello";
    let mut outputs = Vec::new();
    for whole in [true, false] {
        let mut c = config(Mode::Smtp);
        c.forbid_unauth_pipelining = false;
        let mut s = Session::new(c);
        let mut f = Fake::default();
        let mut out = f.run(&mut s, b"");
        if whole {
            out += &f.run(&mut s, script);
        } else {
            for b in script {
                out += &f.run(&mut s, &[*b]);
            }
        }
        out += &f.run(&mut s, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 3 LAST\r\n!\r\n");
        assert_eq!(f.delivered.len(), 2);
        assert_eq!(f.delivered[0].content, b"line one\r\n.two\r\n");
        outputs.push((out, f.delivered[1].content.clone()));
    }
    assert_eq!(outputs[0], outputs[1]);
    // "BDAT 5\r\nhello" needs no transaction of its own: it was refused (read, then 503).
    assert!(outputs[0].0.contains("503 5.5.1 Error: need MAIL command\r\n"), "{}", outputs[0].0);
}

#[test]
fn unauthenticated_pipelining_where_not_allowed_ends_the_session() {
    // After EHLO the client must wait.
    let mut s = Session::new(config(Mode::Smtp));
    let mut f = Fake::default();
    f.run(&mut s, b"");
    let out = f.run(&mut s, b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    assert_eq!(out, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
    assert!(f.closed);
    // After DATA the client must wait for 354.
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    let out = f.run(&mut s, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n");
    assert_eq!(out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n");
    assert!(f.closed && f.delivered.is_empty());
    // Without PIPELINING (HELO) nothing may be pipelined.
    let mut s = Session::new(config(Mode::Smtp));
    let mut f = Fake::default();
    f.run(&mut s, b"");
    f.run(&mut s, b"HELO c\r\n");
    let out = f.run(&mut s, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\n");
    assert_eq!(out, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
    // LMTP clients are trusted MTAs: not checked.
    let (mut s, mut f) = ready(Mode::Lmtp, |_| {});
    let out = f.run(&mut s, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n");
    assert!(out.ends_with("250 2.0.0 Ok: queued\r\n"), "{out}");
}

#[test]
fn starttls_discards_what_was_pipelined_after_it() {
    let (mut s, mut f) = ready(Mode::Smtp, |c| c.forbid_unauth_pipelining = false);
    let out = f.run(&mut s, b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<alice@example.test>\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(f.starttls, 1);
    assert_eq!(s.discarded_at_starttls(), 55);
    assert!(s.is_tls());
    // The injected MAIL was not kept: the TLS session starts over and needs EHLO.
    assert_eq!(f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
    let ehlo = f.run(&mut s, b"EHLO c\r\n");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(f.run(&mut s, b"STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
    // With the pipelining check on (the default), the injection ends the session at once.
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    let out = f.run(&mut s, b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    assert_eq!(out, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
    assert_eq!(f.starttls, 0);
    // Not offered on a listener without a certificate.
    let (mut s, mut f) = ready(Mode::Smtp, |c| c.starttls = false);
    assert_eq!(f.run(&mut s, b"STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
}

#[test]
fn bare_newlines_are_refused_or_normalised() {
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    f.run(&mut s, b"DATA\r\n");
    let out = f.run(&mut s, b"a\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n.\r\n");
    assert_eq!(out, "550 5.5.2 Error: bare <CR> or <LF> in the message; lines must end with <CR><LF>\r\n");
    assert!(f.delivered.is_empty());
    assert_eq!(f.run(&mut s, b"NOOP\n"), "500 5.5.2 Error: bare <LF> received; lines must end with <CR><LF>\r\n");

    let (mut s, mut f) = ready(Mode::Smtp, |c| c.newlines = Newlines::Normalize);
    f.run(&mut s, b"MAIL FROM:<a@b.test>\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    f.run(&mut s, b"DATA\r\n");
    let out = f.run(&mut s, b"a\n.\nb\r\n.\r\n");
    assert_eq!(out, "250 2.0.0 Ok: queued\r\n");
    assert_eq!(f.delivered[0].content, b"a\r\n\r\nb\r\n");
}

#[test]
fn chunking_and_binarymime() {
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    f.run(&mut s, b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    assert_eq!(f.run(&mut s, b"DATA\r\n"), "503 5.5.1 Error: BODY=BINARYMIME needs BDAT\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 4\r\n\0\n\r."), "250 2.0.0 4 octets received\r\n");
    assert_eq!(f.run(&mut s, b"RCPT TO:<bob@example.test>\r\n"), "503 5.5.1 Error: RCPT after BDAT\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 2 LAST\r\n\r\n"), "250 2.0.0 Ok: queued\r\n");
    assert_eq!(f.delivered[0].content, b"\0\n\r.\r\n");
    // A text body in chunks: CRLF split over two chunks is one line ending.
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 2\r\na\r"), "250 2.0.0 2 octets received\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 1 LAST\r\n\n"), "250 2.0.0 Ok: queued\r\n");
    assert_eq!(f.delivered[1].content, b"a\r\n");
    // A bare CR inside a text chunk is refused like in DATA.
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 3\r\na\rb"), "250 2.0.0 3 octets received\r\n");
    let out = f.run(&mut s, b"BDAT 0 LAST\r\n");
    assert_eq!(out, "550 5.5.2 Error: bare <CR> or <LF> in the message; lines must end with <CR><LF>\r\n");
    // A refused chunk is still read in full (it is not taken for commands), and fails the
    // transaction.
    let out = f.run(&mut s, b"BDAT 10 LAST\r\nMAIL FROM:NOOP\r\n");
    assert_eq!(out, "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n");
    assert_eq!(f.delivered.len(), 2);
}

#[test]
fn size_limits_and_recipient_limits() {
    let (mut s, mut f) = ready(Mode::Smtp, |c| {
        c.max_message_size = 10;
        c.max_recipients = 2;
    });
    assert_eq!(f.run(&mut s, b"MAIL FROM:<a@b.test> SIZE=11\r\n"), "552 5.3.4 Message size exceeds fixed limit\r\n");
    f.run(&mut s, b"MAIL FROM:<a@b.test> SIZE=10\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    f.run(&mut s, b"RCPT TO:<bob@example.test>\r\n");
    assert_eq!(f.run(&mut s, b"RCPT TO:<Postmaster>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
    f.run(&mut s, b"DATA\r\n");
    assert_eq!(f.run(&mut s, b"0123456789\r\n.\r\n"), "552 5.3.4 Error: message too big\r\n");
    assert!(f.delivered.is_empty());
    assert_eq!(s.take_refusals(), vec![Reply::new(552, "5.3.4", "Error: message too big")]);
    assert!(s.take_refusals().is_empty());
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    f.run(&mut s, b"RCPT TO:<bob@example.test>\r\n");
    assert_eq!(f.run(&mut s, b"BDAT 11 LAST\r\n0123456789\n"), "552 5.3.4 Error: message too big\r\n");
    // An over-long command line is refused, the session goes on.
    let (mut s, mut f) = ready(Mode::Smtp, |c| c.max_line = 32);
    let mut long = vec![b'N'; 100];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(f.run(&mut s, &long[..40]), "");
    assert_eq!(f.run(&mut s, &long[40..]), "500 5.5.0 Error: line too long\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn too_many_errors_close_the_session() {
    let (mut s, mut f) = ready(Mode::Smtp, |c| c.max_errors = 3);
    f.run(&mut s, b"FOO\r\n");
    f.run(&mut s, b"BAR\r\n");
    let out = f.run(&mut s, b"BAZ\r\n");
    assert_eq!(out, "500 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.example.test Error: too many errors\r\n");
    assert!(f.closed);
}

#[test]
fn submission_needs_auth_and_offers_it() {
    let (mut s, mut f) = ready(Mode::Submission, |c| c.mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-256".into()]);
    assert_eq!(f.run(&mut s, b"MAIL FROM:<alice@example.test>\r\n"), "530 5.7.0 Authentication required\r\n");
    assert_eq!(f.run(&mut s, b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n"), "535 5.7.8 Error: authentication failed\r\n");
    assert_eq!(f.run(&mut s, b"AUTH PLAIN !!\r\n"), "501 5.5.2 Cannot decode the initial response\r\n");
    assert_eq!(f.run(&mut s, b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(f.run(&mut s, b"*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(f.run(&mut s, b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(f.run(&mut s, b"AGFsaWNlAHNlY3JldA==\r\n"), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.authenticated(), Some("alice@example.test"));
    assert_eq!(f.run(&mut s, b"AUTH PLAIN\r\n"), "503 5.5.1 Error: already authenticated\r\n");
    assert_eq!(s.protocol_name(), "ESMTPA");
    // Authenticated clients may pipeline freely.
    let out = f.run(&mut s, b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n");
    let ehlo = f.run(&mut s, b"EHLO again\r\n");
    assert!(ehlo.contains("250-AUTH PLAIN SCRAM-SHA-256\r\n"), "{ehlo}");
    // A login made before TLS does not carry into a TLS session: STARTTLS is refused after it.
    assert_eq!(f.run(&mut s, b"STARTTLS\r\n"), "503 5.5.1 Error: STARTTLS after AUTH\r\n");
}

#[test]
fn lmtp_answers_each_recipient() {
    let (mut s, mut f) = ready(Mode::Lmtp, |c| c.max_message_size = 20);
    assert_eq!(f.run(&mut s, b"EHLO x\r\n"), "500 5.5.1 Error: command not recognized\r\n");
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    f.run(&mut s, b"RCPT TO:<alice@example.test>\r\n");
    f.run(&mut s, b"RCPT TO:<bob@example.test>\r\n");
    f.run(&mut s, b"DATA\r\n");
    assert_eq!(f.run(&mut s, b"hi\r\n.\r\n"), "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued\r\n");
    assert_eq!(s.protocol_name(), "LMTP");
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    let out = f.run(&mut s, b"0123456789012345678901234\r\n.\r\n");
    assert_eq!(out, "552 5.3.4 Error: message too big\r\n552 5.3.4 Error: message too big\r\n");
}

#[test]
fn smtputf8_addresses_need_the_parameter() {
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    let out = f.run(&mut s, "MAIL FROM:<jörg@b.test>\r\n".as_bytes());
    assert_eq!(out, "553 5.6.7 Non-ASCII sender address needs the SMTPUTF8 parameter\r\n");
    f.run(&mut s, b"MAIL FROM:<a@b.test>\r\n");
    let out = f.run(&mut s, "RCPT TO:<jörg@example.test>\r\n".as_bytes());
    assert_eq!(out, "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8 in MAIL\r\n");
    f.run(&mut s, b"RSET\r\n");
    assert_eq!(f.run(&mut s, "MAIL FROM:<jörg@b.test> SMTPUTF8\r\n".as_bytes()), "250 2.1.0 Ok\r\n");
    assert_eq!(s.protocol_name(), "UTF8SMTP");
}

#[test]
fn shutdown_and_timeout_say_goodbye() {
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    s.shutdown();
    assert_eq!(f.run(&mut s, b""), "421 4.3.2 mx.example.test Service shutting down, closing transmission channel\r\n");
    assert!(f.closed);
    let (mut s, mut f) = ready(Mode::Smtp, |_| {});
    s.timed_out();
    assert_eq!(f.run(&mut s, b""), "421 4.4.2 mx.example.test Error: timeout exceeded\r\n");
}
