//! Whole SMTP/LMTP sessions driven by hostile input: the command framer, DATA and BDAT
//! framing, AUTH lines and STARTTLS, fed in pieces. Nothing may panic or loop; every reply
//! line is well formed; content handed over for delivery has CRLF line endings only (DATA and
//! text BDAT under the normalize policy) and never more octets than the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::smtp::{BodyType, Event, Mode, Newlines, Reply, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let mode = [Mode::Smtp, Mode::Submission, Mode::Lmtp][usize::from(flags & 3) % 3];
    let mut cfg = SessionConfig::new("mx.example.test", mode);
    cfg.newlines = if flags & 4 != 0 { Newlines::Reject } else { Newlines::Normalize };
    cfg.forbid_unauth_pipelining = flags & 8 != 0;
    cfg.starttls = flags & 16 != 0;
    cfg.vrfy = flags & 32 != 0;
    cfg.max_message_size = 4096;
    cfg.max_line = 512;
    cfg.mechanisms = vec!["PLAIN".into()];
    let max = cfg.max_message_size;
    let normalize = cfg.newlines == Newlines::Normalize;
    let mut s = Session::new(cfg);
    // Chunks end at 0xFE bytes, so that inputs can model what arrives per read.
    let mut output = Vec::new();
    'chunks: for chunk in input.split(|&b| b == 0xFE) {
        s.input(chunk);
        for _ in 0..100_000 {
            match s.poll() {
                Event::NeedInput => break,
                Event::Close => break 'chunks,
                Event::Mail { .. } => s.answer_mail(Ok(())),
                Event::Rcpt { .. } => s.answer_rcpt(Ok(())),
                Event::Vrfy(_) => s.answer_vrfy(Reply::new(252, "2.0.0", "maybe")),
                Event::Auth { initial_response, .. } => match initial_response {
                    Some(r) if r.len() % 2 == 0 => s.auth_done(Ok("user@example.test".into())),
                    Some(_) => s.auth_done(Err(Reply::new(535, "5.7.8", "no"))),
                    None => s.auth_challenge(b""),
                },
                Event::AuthResponse(r) => {
                    if r.is_empty() {
                        s.auth_challenge(b"again");
                    } else {
                        s.auth_done(Err(Reply::new(535, "5.7.8", "no")));
                    }
                }
                Event::StartTls => s.tls_started(vec!["PLAIN".into()]),
                Event::Deliver => {
                    let tx = s.transaction().expect("a transaction is delivered");
                    assert!(tx.content.len() as u64 <= max);
                    assert!(!tx.recipients.is_empty());
                    if normalize && tx.params.body != BodyType::BinaryMime {
                        let c = &tx.content;
                        for (i, &b) in c.iter().enumerate() {
                            if b == b'\n' {
                                assert!(i > 0 && c[i - 1] == b'\r', "bare LF delivered");
                            }
                            if b == b'\r' && i + 1 < c.len() {
                                assert_eq!(c[i + 1], b'\n', "bare CR delivered");
                            }
                        }
                    }
                    let n = if s.mode() == Mode::Lmtp { tx.recipients.len() } else { 1 };
                    s.answer_delivery(vec![Reply::new(250, "2.0.0", "ok"); n]);
                }
            }
        }
        output.extend(s.take_output());
    }
    output.extend(s.take_output());
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r"), "reply line without CRLF");
        assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-' || line.len() == 4, "{line:?}");
    }
});
