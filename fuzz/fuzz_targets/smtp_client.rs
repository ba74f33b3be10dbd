//! The SMTP client session against a hostile server: arbitrary reply bytes, fed in pieces
//! (split at 0xFE; a piece that is just 0xFD is a timeout, just 0xFC an EOF), while a driver
//! hands it three messages (DATA with dots and bare newlines, 8BITMIME with DSN parameters,
//! BINARYMIME) and completes STARTTLS. The first byte picks the configuration. Nothing may
//! panic or loop; everything written has CRLF line ends; each message given gets exactly one
//! report with one outcome per recipient, and "delivered" only after all its content was
//! written; `Closed` comes once and last, and nothing is written after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::secret::Secret;
use postlog_protocol::smtp::client::{
    BdatPolicy, ClientConfig, ClientEvent, ClientSession, Credentials, Message, Outcome, TlsPolicy,
};
use postlog_protocol::smtp::{BodyType, ForwardPath, MailParams, Mailbox, Notify, RcptParams, Recipient, Ret};

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox { local: local.into(), domain: domain.into() }
}

fn messages() -> Vec<Message> {
    let to = |local: &str, params: RcptParams| Recipient {
        path: ForwardPath::Mailbox(mailbox(local, "example.net")),
        params,
    };
    let dsn = RcptParams {
        notify: Some(Notify { success: true, failure: true, ..Notify::default() }),
        orcpt: Some("utf-8;b\u{f8}b@example.net".into()),
    };
    vec![
        Message {
            from: Some(mailbox("alice", "example.test")),
            params: MailParams::default(),
            recipients: vec![to("x", RcptParams::default()), to("y", RcptParams::default())],
            content: Box::new(b"Subject: a\r\n\r\n.dot\nbare\rcr\r\n.\r\nend".to_vec()),
        },
        Message {
            from: None,
            params: MailParams {
                body: BodyType::EightBitMime,
                ret: Some(Ret::Full),
                envid: Some("ID+2B1".into()),
                ..MailParams::default()
            },
            recipients: vec![to("z", dsn)],
            content: Box::new("Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes().to_vec()),
        },
        Message {
            from: Some(mailbox("carol", "example.test")),
            params: MailParams { body: BodyType::BinaryMime, ..MailParams::default() },
            recipients: vec![
                to("w", RcptParams::default()),
                to("v", RcptParams::default()),
                to("u", RcptParams::default()),
            ],
            content: Box::new(b"\x00\x01\x02 binary, no bare newlines\r\n".repeat(3)),
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let mut cfg = ClientConfig::new("out.example.test");
    cfg.pipelining = flags & 1 != 0;
    cfg.tls = [TlsPolicy::Disabled, TlsPolicy::Opportunistic, TlsPolicy::Required][usize::from(flags >> 1 & 3) % 3];
    if flags & 8 != 0 {
        cfg.credentials = Some(Credentials { username: "relay".into(), password: Secret::new("pw".into()) });
        cfg.auth_without_tls = flags & 16 != 0;
    }
    let bdat_always = flags & 32 != 0;
    cfg.bdat = if bdat_always { BdatPolicy::WhenOffered } else { BdatPolicy::BinaryOnly };
    cfg.bdat_chunk_bytes = if flags & 64 != 0 { 7 } else { 1 << 20 };
    let fail_tls = flags & 128 != 0;

    let mut s = ClientSession::new(cfg);
    let mut d = Driver { queue: messages().into_iter(), fail_tls, ..Driver::default() };
    d.pump(&mut s);
    for piece in input.split(|&b| b == 0xFE) {
        match piece {
            [0xFD] => s.handle_timeout(),
            [0xFC] => s.handle_eof(),
            _ => s.handle_input(piece),
        }
        d.pump(&mut s);
        if d.closed_at.is_some() {
            break;
        }
    }
    if d.closed_at.is_none() {
        s.handle_eof();
        d.pump(&mut s);
    }
    let Some(at) = d.closed_at else { panic!("no Closed after EOF") };
    assert_eq!(d.reports, d.given.len(), "a message without its report");
    d.pump(&mut s);
    assert_eq!(d.written.len(), at, "written after Closed");
    // BDAT for every message sends the first one's bare newlines as they are.
    if !bdat_always {
        let w = &d.written;
        for (i, &b) in w.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && w[i - 1] == b'\r', "a bare LF went out");
            }
            if b == b'\r' {
                assert_eq!(w.get(i + 1), Some(&b'\n'), "a bare CR went out");
            }
        }
    }
});

#[derive(Default)]
struct Driver {
    queue: std::vec::IntoIter<Message>,
    fail_tls: bool,
    /// Recipients of each message the session took.
    given: Vec<usize>,
    reports: usize,
    written: Vec<u8>,
    /// `written.len()` when Closed came.
    closed_at: Option<usize>,
}

impl Driver {
    fn pump(&mut self, s: &mut ClientSession) {
        for _ in 0..10_000 {
            let n = s.poll_transmit(&mut self.written);
            let Some(event) = s.poll_event() else {
                if n == 0 {
                    return;
                }
                continue;
            };
            assert!(self.closed_at.is_none(), "an event after Closed: {event:?}");
            match event {
                ClientEvent::Ready => loop {
                    let Some(m) = self.queue.next() else {
                        s.quit();
                        break;
                    };
                    let n = m.recipients.len();
                    if s.send_message(m).is_ok() {
                        self.given.push(n);
                        break;
                    }
                },
                ClientEvent::StartTls => {
                    if self.fail_tls {
                        s.handle_tls_failed();
                    } else {
                        s.handle_tls_established();
                    }
                }
                ClientEvent::MessageDone(report) => {
                    assert_eq!(
                        Some(&report.recipients.len()),
                        self.given.get(self.reports),
                        "one outcome per recipient"
                    );
                    self.reports += 1;
                    if report.recipients.iter().any(|o| matches!(o, Outcome::Delivered(_))) {
                        assert!(report.content_sent, "delivered before the content was written");
                    }
                }
                ClientEvent::Closed(_) => {
                    // The QUIT of a polite ending is already in `written`.
                    assert_eq!(s.poll_transmit(&mut self.written), 0);
                    self.closed_at = Some(self.written.len());
                }
            }
        }
        panic!("the session keeps producing output or events");
    }
}
