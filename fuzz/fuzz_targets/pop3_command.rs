//! The POP3 command parser and session on hostile input, fed in pieces (chunks end at 0xFE),
//! with a tiny server around the session (logins succeed for even-length passwords; a maildrop
//! of three messages made from the input; QUIT deletes what was marked). Nothing may panic or
//! loop; every line written ends in CRLF; a message sent by RETR/TOP reads back (dots
//! unstuffed) as the message with CRLF line endings, and never contains the terminating `.`
//! line before its end; `LIST` sizes are those of what RETR sends.
//!
//! The first byte chooses the setup: bit 0 plain-text logins allowed, bit 1 STLS offered,
//! bit 2 tiny limits (line length, error counts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::pop3::{
    Event, Maildrop, MaildropMessage, Reply, ResponseCode, Session, SessionConfig, crlf_size, encode_message,
    parse_command,
};

/// The message with every line break as CRLF and a CRLF after a last line without one.
fn normalized(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out
}

/// Reads the data of a multi-line response back: unstuffed, CRLF lines, up to the `.` line.
fn read_back(data: &[u8]) -> Vec<u8> {
    let body = data.strip_suffix(b".\r\n").expect("terminated by the . line");
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "a line without CRLF: {line:?}");
        assert_ne!(line, b".\r\n", "the terminator inside the data");
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    for line in input.split(|&b| b == b'\n') {
        let _ = parse_command(line).map_err(|e| e.to_string());
    }
    // The encoder on the input as a message.
    let mut sent = Vec::new();
    encode_message(&mut sent, input, None);
    let back = read_back(&sent);
    assert_eq!(back, normalized(input));
    // The line break added after a last line without one (a CR left at the very end is taken
    // as the first half of it).
    let added = match input.last() {
        None | Some(b'\n') => 0,
        Some(b'\r') => 1,
        Some(_) => 2,
    };
    assert_eq!(crlf_size(input) as usize + added, back.len());

    let mut cfg = SessionConfig::new("pop.example.test");
    cfg.plaintext = flags & 1 != 0;
    cfg.stls = flags & 2 != 0;
    cfg.mechanisms = vec!["PLAIN".into()];
    if flags & 4 != 0 {
        cfg.max_line = 16;
        cfg.max_errors_unauthenticated = 2;
        cfg.max_bad_commands = 3;
    }
    let messages: Vec<Vec<u8>> = input.chunks(input.len() / 3 + 1).map(<[u8]>::to_vec).collect();
    let maildrop = Maildrop {
        messages: messages
            .iter()
            .enumerate()
            .map(|(i, m)| MaildropMessage { key: i as u64, size: crlf_size(m), uidl: format!("U{i}") })
            .collect(),
    };
    let answer = |ok: bool| if ok { Ok(maildrop.clone()) } else { Err(Reply::err_with(ResponseCode::Auth, "no")) };
    let mut s = Session::new(cfg);
    let mut output = s.take_output();
    'chunks: for chunk in input.split(|&b| b == 0xFE) {
        s.input(chunk);
        for _ in 0..100_000 {
            match s.poll() {
                Event::NeedInput => break,
                Event::Close => break 'chunks,
                Event::Login { password, .. } => s.answer_login(answer(password.expose_secret().len() % 2 == 0)),
                Event::Auth { initial_response: None, .. } => s.auth_challenge(b""),
                Event::Auth { initial_response: Some(r), .. } | Event::AuthResponse(r) => {
                    s.auth_done(answer(r.len() % 2 == 0))
                }
                Event::StartTls => s.tls_started(vec!["PLAIN".into()], true),
                Event::Retrieve { key, top, .. } => {
                    let raw = &messages[key as usize];
                    output.extend(s.take_output());
                    s.answer_retrieve(Ok(raw));
                    let reply = s.take_output();
                    let head_end = reply.iter().position(|&b| b == b'\n').expect("a status line") + 1;
                    let back = read_back(&reply[head_end..]);
                    if top.is_none() {
                        assert_eq!(back, normalized(raw));
                        assert_eq!(&reply[..head_end], format!("+OK {} octets\r\n", crlf_size(raw)).as_bytes());
                    } else {
                        assert!(normalized(raw).starts_with(&back));
                    }
                    output.extend(reply);
                }
                Event::Quit { delete, seen } => {
                    assert!(delete.iter().all(|&k| (k as usize) < messages.len()));
                    assert!(seen.iter().all(|k| !delete.contains(k)));
                    s.answer_quit(Ok(()));
                }
            }
        }
        output.extend(s.take_output());
    }
    output.extend(s.take_output());
    for line in output.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "a line without CRLF: {line:?}");
    }
});
