//! Transcript tests: the example sessions of RFC 1939, 2449, 2595, 5034 and 6856 as `C:`/`S:`
//! files (`tests/pop3/*.txt`), replayed against the sans-IO POP3 session.
//!
//! A file is a list of exchanges: consecutive `C:` lines are sent together (so a group is a
//! pipelined batch), and the `S:` lines after them must be exactly what the session writes
//! back. `! tls` says a STLS handshake happened since the last exchange, `! deleted N...` the
//! message numbers the server was asked to delete at `QUIT`, `! closed` that the session ended.
//!
//! The server side is a fixture: `mrose`/`tanstaaf` (also `jörg`/`tanstaaf`) log in;
//! `mrose` with another password finds the maildrop locked; anyone else is refused. The
//! maildrop is `message1.eml` (LF line endings, 120 octets as sent) and `message2.eml` (CRLF,
//! 200 octets) with the unique ids of RFC 1939's UIDL example.

use std::path::Path;

use postlog_protocol::pop3::{
    Event, Maildrop, MaildropMessage, Reply, ResponseCode, Session, SessionConfig, crlf_size,
};

struct Fixture {
    messages: Vec<Vec<u8>>,
    tls_handshakes: usize,
    deleted: Option<Vec<u64>>,
    closed: bool,
}

impl Fixture {
    fn maildrop(&self) -> Maildrop {
        let uidls = ["whqtswO00WBw418f9t5JxYwZ", "QhdPYR:00WBw1Ph7x7"];
        Maildrop {
            messages: self
                .messages
                .iter()
                .zip(uidls)
                .enumerate()
                .map(|(i, (m, u))| MaildropMessage { key: i as u64 + 1, size: crlf_size(m), uidl: u.into() })
                .collect(),
        }
    }

    fn login(&self, user: &str, password: &str) -> Result<Maildrop, Reply> {
        match (user, password) {
            ("mrose" | "jörg", "tanstaaf") => Ok(self.maildrop()),
            ("mrose", _) => Err(Reply::err_with(ResponseCode::InUse, "maildrop already locked")),
            _ => Err(Reply::err_with(ResponseCode::Auth, "invalid password")),
        }
    }

    /// Feeds the client's lines and answers events until the session needs input.
    fn exchange(&mut self, s: &mut Session, input: &[u8]) -> String {
        s.input(input);
        let mut out = Vec::new();
        loop {
            match s.poll() {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::Login { user, password } => {
                    let r = self.login(&user, password.expose_secret());
                    s.answer_login(r);
                }
                Event::Auth { initial_response: Some(r), .. } | Event::AuthResponse(r) => {
                    let r = plain(&r).map_or(Err(Reply::err("malformed PLAIN")), |(u, p)| self.login(&u, &p));
                    s.auth_done(r);
                }
                Event::Auth { initial_response: None, .. } => s.auth_challenge(b""),
                Event::StartTls => {
                    out.extend(s.take_output());
                    self.tls_handshakes += 1;
                    s.tls_started(vec!["PLAIN".into(), "SCRAM-SHA-256".into()], true);
                }
                Event::Retrieve { key, .. } => {
                    let m = self.messages[key as usize - 1].clone();
                    s.answer_retrieve(Ok(&m));
                }
                Event::Quit { delete, .. } => {
                    self.deleted = Some(delete);
                    s.answer_quit(Ok(()));
                }
            }
        }
        out.extend(s.take_output());
        String::from_utf8(out).expect("UTF-8 output")
    }
}

fn plain(r: &[u8]) -> Option<(String, String)> {
    let mut parts = r.split(|&b| b == 0);
    let (_authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    Some((String::from_utf8(user.to_vec()).ok()?, String::from_utf8(pass.to_vec()).ok()?))
}

fn replay(path: &Path, messages: &[Vec<u8>]) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = SessionConfig {
        plaintext: true,
        stls: true,
        mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
        ..SessionConfig::new("pop.example.test")
    };
    let mut session = Session::new(cfg);
    let mut fx = Fixture { messages: messages.to_vec(), tls_handshakes: 0, deleted: None, closed: false };
    let mut client = Vec::new();
    let mut expected = String::new();
    let mut got = String::from_utf8(session.take_output()).unwrap();
    let mut checked_tls = 0;
    let flush = |fx: &mut Fixture, session: &mut Session, client: &mut Vec<u8>, got: &mut String| {
        if !client.is_empty() {
            got.push_str(&fx.exchange(session, client));
            client.clear();
        }
    };
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        if let Some(c) = line.strip_prefix("C: ") {
            if !expected.is_empty() {
                assert_eq!(got, expected, "{at}: the replies before this line differ");
                got.clear();
                expected.clear();
            }
            client.extend_from_slice(c.as_bytes());
            client.extend_from_slice(b"\r\n");
        } else if let Some(s) = line.strip_prefix("S: ").or((line == "S:").then_some("")) {
            flush(&mut fx, &mut session, &mut client, &mut got);
            expected.push_str(s);
            expected.push_str("\r\n");
        } else if let Some(directive) = line.strip_prefix("! ") {
            flush(&mut fx, &mut session, &mut client, &mut got);
            assert_eq!(got, expected, "{at}: the replies before this line differ");
            got.clear();
            expected.clear();
            let mut words = directive.split_whitespace();
            match words.next() {
                Some("tls") => {
                    checked_tls += 1;
                    assert_eq!(fx.tls_handshakes, checked_tls, "{at}: no STLS handshake");
                }
                Some("deleted") => {
                    let want: Vec<u64> = words.map(|w| w.parse().unwrap()).collect();
                    assert_eq!(fx.deleted.as_deref(), Some(&want[..]), "{at}: deletions at QUIT");
                }
                Some("closed") => assert!(fx.closed, "{at}: the session did not end"),
                other => panic!("{at}: unknown directive {other:?}"),
            }
        } else {
            assert!(line.is_empty() || line.starts_with('#'), "{at}: not a transcript line: {line:?}");
        }
    }
    flush(&mut fx, &mut session, &mut client, &mut got);
    assert_eq!(got, expected, "{name}: the last replies differ");
    assert_eq!(fx.tls_handshakes, checked_tls, "{name}: a handshake not noted with `! tls`");
}

#[test]
fn rfc_example_sessions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pop3");
    let messages: Vec<Vec<u8>> =
        ["message1.eml", "message2.eml"].iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    assert!(!messages[0].contains(&b'\r'), "message 1 is stored with LF line endings");
    assert_eq!(messages.iter().map(|m| crlf_size(m)).collect::<Vec<_>>(), [120, 200]);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    for f in files {
        replay(&f, &messages);
    }
}
