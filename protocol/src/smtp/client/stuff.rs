//! [`DotStuffer`]: message content as it goes after `DATA` (RFC 5321 section 4.5.2).
//!
//! A line that starts with `.` gets a second one; the content ends with `CRLF.CRLF` (a CRLF is
//! added first when the content does not end with one). Line endings go out as CRLF only: a
//! bare LF or bare CR in the content becomes CRLF, so what this client sends can never carry
//! an end-of-data sequence a server might read differently (SMTP smuggling), and it is what
//! our own server stores under its `Normalize` policy. The input may be fed in any pieces;
//! each octet is copied once, into the caller's buffer.

/// Encodes content for `DATA`, in pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DotStuffer {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// At the start of a line (or of the content).
    #[default]
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR whose LF may still come in the next piece.
    Cr,
}

impl DotStuffer {
    pub fn new() -> DotStuffer {
        DotStuffer::default()
    }

    /// Appends the encoded form of `input` (the next piece of content) to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 4);
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Cr => {
                    // CRLF, or a bare CR that ends the line by itself.
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                    if input[i] == b'\n' {
                        i += 1;
                    }
                }
                State::LineStart if input[i] == b'.' => {
                    out.extend_from_slice(b"..");
                    self.state = State::Mid;
                    i += 1;
                }
                State::LineStart | State::Mid => {
                    let run = input[i..].iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(input.len() - i);
                    out.extend_from_slice(&input[i..i + run]);
                    i += run;
                    self.state = State::Mid;
                    if let Some(&b) = input.get(i) {
                        i += 1;
                        if b == b'\r' {
                            self.state = State::Cr;
                        } else {
                            out.extend_from_slice(b"\r\n");
                            self.state = State::LineStart;
                        }
                    }
                }
            }
        }
    }

    /// Ends the content: the last line's CRLF if it has none yet, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state != State::LineStart {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.state = State::LineStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::{ContentDecoder, Framing, Newlines};

    fn stuff(input: &[u8], step: usize) -> Vec<u8> {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            s.encode(piece, &mut out);
        }
        s.finish(&mut out);
        out
    }

    /// What the content is after a round trip: line endings made CRLF, a final CRLF added.
    fn canonical(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' if input.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Decodes with the server's decoder, strictly: a bare line ending would be flagged.
    fn server_reads(wire: &[u8], step: usize) -> Vec<u8> {
        let mut d = ContentDecoder::new(Framing::Data, Newlines::Reject, u64::MAX);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in wire.chunks(step.max(1)) {
            used += d.feed(piece, &mut out);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "no end marker in {wire:?}");
        assert_eq!(used, wire.len(), "the end marker came early in {wire:?}");
        assert!(!d.saw_bare_newline(), "a bare line ending went out in {wire:?}");
        out
    }

    #[test]
    fn stuffs_and_ends() {
        assert_eq!(stuff(b"", 1), b".\r\n");
        assert_eq!(stuff(b"a\r\n.b\r\n..\r\n.\r\n", 1), b"a\r\n..b\r\n...\r\n..\r\n.\r\n");
        assert_eq!(stuff(b"no end", 2), b"no end\r\n.\r\n");
        assert_eq!(stuff(b"a\nb\rc\r", 1), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(stuff(b".", 1), b"..\r\n.\r\n");
        assert_eq!(stuff(b"\r\n.\n.\r.", 3), b"\r\n..\r\n..\r\n..\r\n.\r\n");
    }

    /// Every string up to 8 octets over the alphabet that matters, fed whole and one octet at
    /// a time, round-trips through the server's decoder.
    #[test]
    fn exhaustive_round_trip_with_the_server_decoder() {
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut input = Vec::with_capacity(8);
        for len in 0..=8u32 {
            for n in 0..4usize.pow(len) {
                input.clear();
                let mut k = n;
                for _ in 0..len {
                    input.push(alphabet[k % 4]);
                    k /= 4;
                }
                let whole = stuff(&input, usize::MAX);
                assert_eq!(stuff(&input, 1), whole, "{input:?}");
                assert_eq!(server_reads(&whole, usize::MAX), canonical(&input), "{input:?}");
            }
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn content() -> impl Strategy<Value = Vec<u8>> {
            let octet = prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'x'), any::<u8>()];
            proptest::collection::vec(octet, 0..600)
        }

        proptest! {
            #[test]
            fn round_trip_in_random_pieces(input in content(), step in 1usize..50, read_step in 1usize..50) {
                let wire = stuff(&input, step);
                prop_assert_eq!(&wire, &stuff(&input, usize::MAX));
                prop_assert_eq!(server_reads(&wire, read_step), canonical(&input));
            }
        }
    }
}
