//! The SMTP command parser on hostile lines: never panics; a reply it returns is well formed
//! (three digits, a 4xx/5xx code, no CR or LF inside its text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_protocol::smtp::parse_command;

fuzz_target!(|data: &[u8]| {
    match parse_command(data) {
        Ok(cmd) => {
            let _ = cmd.verb();
        }
        Err(reply) => {
            assert!((500..600).contains(&reply.code), "{reply}");
            let wire = reply.encode();
            assert!(wire.ends_with(b"\r\n"));
            assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), reply.lines.len());
        }
    }
});
