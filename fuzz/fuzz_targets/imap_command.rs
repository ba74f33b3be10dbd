//! The IMAP command framer and parser on hostile input, fed in pieces (chunks end at 0xFE),
//! with a tiny server around them (IDLE, AUTHENTICATE lines, LOGIN switching to the
//! authenticated limits). Nothing may panic or loop; framed commands end in LF and stay
//! within the command limit; every error response is one well-formed line; after a close no
//! frame comes out. Round trips: an astring written by `encode_astring` parses back to the
//! same octets; modified UTF-7 written by `encode_modified_utf7` decodes back.
//!
//! The first byte chooses the setup: bit 0 starts authenticated, bit 1 LITERAL-, bit 2 tiny
//! limits (so the limit paths are reached with short inputs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::imap::encode::encode_astring;
use postlog_protocol::imap::mailbox::{decode_modified_utf7, encode_modified_utf7};
use postlog_protocol::imap::{
    CommandBody, CommandFramer, Frame, FramerConfig, Limits, Status, parse_command, parse_command_with,
};

fn well_formed(status: &Status) {
    let line = status.encode();
    assert!(line.ends_with(b"\r\n"), "{line:?}");
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "{line:?}");
    assert!(!line.contains(&0), "{line:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let mut config = FramerConfig { literal_minus: flags & 2 != 0, ..FramerConfig::default() };
    if flags & 4 != 0 {
        let tiny = Limits { max_line_bytes: 64, max_literal_bytes: 32, max_command_bytes: 128, max_depth: 4 };
        config.authenticated = tiny;
        config.unauthenticated = Limits { max_depth: 2, ..tiny };
    }
    let mut framer = CommandFramer::new(config);
    framer.set_authenticated(flags & 1 != 0);

    'chunks: for chunk in input.split(|&b| b == 0xFE) {
        framer.handle_bytes(chunk);
        for _ in 0..1_000_000 {
            let limits = framer.limits();
            let Some(frame) = framer.poll() else { continue 'chunks };
            match frame {
                Frame::Command(bytes) => {
                    assert!(bytes.ends_with(b"\n"));
                    assert!(bytes.len() as u64 <= limits.max_command_bytes);
                    match parse_command_with(&bytes, limits.max_depth) {
                        Ok(command) => match command.body {
                            CommandBody::Idle => framer.expect_done(),
                            CommandBody::Authenticate { initial_response: None, .. } => {
                                framer.expect_authenticate_line()
                            }
                            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                                framer.set_authenticated(true)
                            }
                            CommandBody::Logout => break 'chunks,
                            _ => {}
                        },
                        Err(error) => well_formed(&error.status()),
                    }
                }
                Frame::Continue | Frame::Done => {}
                Frame::AuthenticateLine(line) => {
                    assert!(!line.expose_secret().contains(&b'\n'));
                    if line.expose_secret().len() % 2 == 1 {
                        framer.expect_authenticate_line();
                    }
                }
                Frame::Rejected { tag, error } => well_formed(&error.status(tag)),
                Frame::Close { error, .. } => {
                    well_formed(&error.bye());
                    assert!(framer.is_closed());
                    framer.handle_bytes(b"a NOOP\r\n");
                    assert!(framer.poll().is_none());
                    break 'chunks;
                }
            }
        }
        panic!("the framer kept yielding frames");
    }

    // The whole input as one command.
    if let Err(error) = parse_command(input) {
        well_formed(&error.status());
    }

    // Round trips of the encoders.
    let value = &input[..input.len().min(300)];
    for utf8 in [false, true] {
        let mut line = b"t LOGIN ".to_vec();
        encode_astring(&mut line, value, utf8);
        line.extend_from_slice(b" p\r\n");
        match parse_command(&line) {
            Ok(command) => {
                let CommandBody::Login { username, .. } = command.body else { panic!("not LOGIN: {line:?}") };
                let expected: Vec<u8> = value.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
                assert_eq!(username.as_bytes(), expected.as_slice());
            }
            Err(error) => panic!("encoded astring does not parse: {error}: {line:?}"),
        }
    }
    if let Ok(text) = std::str::from_utf8(value) {
        let encoded = encode_modified_utf7(text);
        assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(decode_modified_utf7(encoded.as_bytes()).as_deref(), Ok(text));
    }
    if let Ok(decoded) = decode_modified_utf7(value) {
        assert_eq!(decode_modified_utf7(encode_modified_utf7(&decoded).as_bytes()).as_deref(), Ok(decoded.as_str()));
    }
});
