//! [`ContentDecoder`]: message content after `DATA` (dot-stuffed, ended by `CRLF.CRLF`) or in
//! `BDAT` chunks, with the line-ending policy that keeps SMTP smuggling out.
//!
//! Only `<CR><LF>.<CR><LF>` ends `DATA` (RFC 5321 section 4.1.1.4). A bare LF or bare CR
//! (one not part of a CRLF pair) is what SMTP smuggling (CVE-2023-51764/5/6) rides on: a
//! server that takes `<LF>.<LF>` or `<LF>.<CR><LF>` for the end of data lets a second,
//! forged message through. Here a bare line ending never ends the data and a dot after it is
//! not unstuffed, and by [`Newlines`] policy the message is either refused or stored with the
//! bare ending turned into CRLF, so what is stored (and relayed later) has only CRLF lines.

/// What to do with a bare CR or bare LF in content (and in command lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Newlines {
    /// Refuse the message (`550 5.5.2`) or the command (`500 5.5.2`).
    Reject,
    /// Take it as a line ending and store CRLF instead (Postfix's default since 3.9).
    #[default]
    Normalize,
}

/// How the content is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After `DATA`: dot-stuffed, ends at `CRLF.CRLF`.
    Data,
    /// A `BDAT` chunk of a text body (7BIT, 8BITMIME): no dots, no end marker; line endings
    /// checked as for `DATA`.
    Chunk,
    /// A `BDAT` chunk of a `BODY=BINARYMIME` message: copied as is.
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line that followed a real CRLF (or the start of the content).
    LineStart,
    /// At the start of a line that followed a bare CR or LF: no dot handling here.
    LooseLineStart,
    /// Inside a line.
    Mid,
    /// Saw a CR inside a line.
    Cr,
    /// Saw a dot at the start of a line; `loose`: a line after a bare CR or LF.
    Dot {
        loose: bool,
    },
    /// Saw `.` CR at the start of a line.
    DotCr {
        loose: bool,
    },
    Done,
}

/// Decodes content incrementally into a buffer, up to a size limit (beyond it, bytes are
/// counted and dropped, so the end can still be found and the client answered `552`).
#[derive(Debug, Clone)]
pub struct ContentDecoder {
    framing: Framing,
    policy: Newlines,
    max: u64,
    state: State,
    /// Decoded octets, including those dropped over the limit.
    size: u64,
    bare: bool,
}

impl ContentDecoder {
    pub fn new(framing: Framing, policy: Newlines, max: u64) -> ContentDecoder {
        ContentDecoder { framing, policy, max, state: State::LineStart, size: 0, bare: false }
    }

    /// Takes over the line state of the previous chunk (a CR at the end of one `BDAT` chunk
    /// and an LF at the start of the next are one CRLF).
    pub fn continue_with(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// Octets of content so far (after unstuffing and normalising), counting those over the
    /// limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content is over the size limit.
    pub fn too_big(&self) -> bool {
        self.size > self.max
    }

    /// A bare CR or LF was seen under [`Newlines::Reject`].
    pub fn saw_bare_newline(&self) -> bool {
        self.bare
    }

    /// `DATA` only: the end marker was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// `BDAT` only: the last chunk ended; a CR left pending at its end is kept as content.
    pub fn finish_chunks(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Cr {
            self.bare_newline(out);
            self.state = State::LooseLineStart;
        }
    }

    /// Decodes from `input`, appending content to `out`. Returns how many input octets were
    /// used: all of them, or (for `DATA`) up to and including the end marker.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        if self.framing == Framing::Binary {
            self.emit(out, input);
            return input.len();
        }
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return i,
                State::LineStart | State::LooseLineStart if b == b'.' && self.framing == Framing::Data => {
                    // Unstuffed after a bare line ending too (clients that dot-stuff lines ending
                    // in LF, such as Python's smtplib given bytes), but such a line never ends
                    // the data.
                    self.state = State::Dot { loose: self.state == State::LooseLineStart };
                    i += 1;
                }
                State::LineStart | State::LooseLineStart => self.state = State::Mid,
                State::Mid => {
                    let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                    self.emit(out, &input[i..i + run]);
                    i += run;
                    if i < input.len() {
                        if input[i] == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.bare_newline(out);
                            self.state = State::LooseLineStart;
                        }
                        i += 1;
                    }
                }
                State::Cr => {
                    if b == b'\n' {
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // A bare CR; the octet after it starts a new (loose) line.
                        self.bare_newline(out);
                        self.state = State::LooseLineStart;
                    }
                }
                State::Dot { loose } => match b {
                    b'\r' => {
                        self.state = State::DotCr { loose };
                        i += 1;
                    }
                    b'\n' => {
                        // `.` LF: not the end. The line is the unstuffed (empty) line.
                        self.bare_newline(out);
                        self.state = State::LooseLineStart;
                        i += 1;
                    }
                    // A stuffed dot: dropped; the rest of the line follows.
                    _ => self.state = State::Mid,
                },
                State::DotCr { loose } => {
                    if b == b'\n' && loose {
                        // `<LF>.<CR><LF>`: the smuggling shape. Content: an (unstuffed) empty line.
                        self.bare_newline_seen();
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                        continue;
                    }
                    if b == b'\n' {
                        self.state = State::Done;
                        return i + 1;
                    }
                    // `.` CR then something else: a bare CR ends the (empty) line.
                    self.bare_newline(out);
                    self.state = State::LooseLineStart;
                }
            }
        }
        i
    }

    fn bare_newline(&mut self, out: &mut Vec<u8>) {
        self.bare_newline_seen();
        self.emit(out, b"\r\n");
    }

    fn bare_newline_seen(&mut self) {
        if self.policy == Newlines::Reject {
            self.bare = true;
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let new = self.size.saturating_add(bytes.len() as u64);
        if new <= self.max {
            out.extend_from_slice(bytes);
        } else if self.size < self.max {
            // Keep what fits: the buffer never holds more than the limit.
            let fits = (self.max - self.size) as usize;
            out.extend_from_slice(&bytes[..fits]);
        }
        self.size = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` octets; returns (content, used, done, bare).
    fn decode(input: &[u8], policy: Newlines, step: usize) -> (Vec<u8>, usize, bool, bool) {
        let mut d = ContentDecoder::new(Framing::Data, policy, 1 << 20);
        let mut out = Vec::new();
        let mut used = 0;
        while used < input.len() {
            let end = (used + step).min(input.len());
            used += d.feed(&input[used..end], &mut out);
            if d.is_done() {
                break;
            }
        }
        (out, used, d.is_done(), d.saw_bare_newline())
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        for step in [1, 2, 3, 7, 1000] {
            let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<next@x>\r\n";
            let (out, used, done, bare) = decode(input, Newlines::Reject, step);
            assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n", "step {step}");
            assert_eq!(&input[used..], b"MAIL FROM:<next@x>\r\n");
            assert!(done && !bare);
        }
        // An empty message.
        let (out, used, done, _) = decode(b".\r\n", Newlines::Reject, 1);
        assert_eq!((out.as_slice(), used, done), (&b""[..], 3, true));
    }

    #[test]
    fn smuggling_sequences_never_end_the_data() {
        for (input, policy) in [
            (&b"a\n.\nMAIL FROM:<evil>\r\n"[..], Newlines::Reject),
            (b"a\n.\r\nMAIL FROM:<evil>\r\n", Newlines::Reject),
            (b"a\r.\r\nMAIL FROM:<evil>\r\n", Newlines::Reject),
            (b"a\r\n.\nMAIL FROM:<evil>\r\n", Newlines::Reject),
            (b"a\r\n.\rMAIL FROM:<evil>\r\n", Newlines::Reject),
            (b"a\n.\r\nMAIL FROM:<evil>\r\n", Newlines::Normalize),
            (b"a\r\n.\nMAIL FROM:<evil>\r\n", Newlines::Normalize),
        ] {
            for step in [1, 3, 1000] {
                let (out, used, done, bare) = decode(input, policy, step);
                assert!(!done, "{:?} ended the data", String::from_utf8_lossy(input));
                assert_eq!(used, input.len());
                assert_eq!(bare, policy == Newlines::Reject);
                assert!(out.windows(2).all(|w| (w[1] == b'\n') == (w[0] == b'\r')), "{out:?}");
                assert!(!out.contains(&b'\n') || out.ends_with(b"\r\n"));
            }
        }
        // Normalised, the smuggled line stays content (an empty line once unstuffed).
        let (out, ..) = decode(b"a\n.\r\nb\r\n.\r\n", Newlines::Normalize, 1);
        assert_eq!(out, b"a\r\n\r\nb\r\n");
        // Lines ending in LF alone, dot-stuffed (what smtplib sends for bytes): unstuffed.
        let (out, _, done, _) = decode(b"a\n..b\n.c\n\r\n.\r\n", Newlines::Normalize, 1);
        assert_eq!(out, b"a\r\n.b\r\nc\r\n\r\n");
        assert!(done);
    }

    #[test]
    fn size_limit_keeps_counting_to_the_end() {
        let mut d = ContentDecoder::new(Framing::Data, Newlines::Reject, 10);
        let mut out = Vec::new();
        let input = b"0123456789abcdef\r\n.\r\nQUIT\r\n";
        let n = d.feed(input, &mut out);
        assert!(d.is_done() && d.too_big());
        assert_eq!(out, b"0123456789");
        assert_eq!(d.size(), 18);
        assert_eq!(&input[n..], b"QUIT\r\n");
    }

    #[test]
    fn chunks_keep_dots_and_join_crlf_across_chunks() {
        let mut d = ContentDecoder::new(Framing::Chunk, Newlines::Reject, 1000);
        let mut out = Vec::new();
        assert_eq!(d.feed(b".x\r", &mut out), 3);
        d.continue_with(Framing::Chunk);
        assert_eq!(d.feed(b"\n.\r\n", &mut out), 4);
        d.finish_chunks(&mut out);
        assert_eq!(out, b".x\r\n.\r\n");
        assert!(!d.saw_bare_newline() && !d.is_done());
        let mut d = ContentDecoder::new(Framing::Chunk, Newlines::Reject, 1000);
        let mut out = Vec::new();
        d.feed(b"x\r", &mut out);
        d.finish_chunks(&mut out);
        assert!(d.saw_bare_newline());
        let mut d = ContentDecoder::new(Framing::Binary, Newlines::Reject, 1000);
        let mut out = Vec::new();
        d.feed(b"\0\r\n.\r\n\n\r", &mut out);
        assert_eq!(out, b"\0\r\n.\r\n\n\r");
        assert!(!d.saw_bare_newline());
    }
}
