//! Shared helpers of the store benchmarks (`storebench` and the criterion benches): the test
//! corpus, message generators that defeat deduplication, a small PRNG and percentiles.

use std::io;
use std::path::{Path, PathBuf};

/// `testdata/corpus` of the workspace this crate was built from.
pub fn default_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("testdata").join("corpus")
}

/// Every `*.eml` of `dir/ham` and `dir/spam`, in name order.
pub fn load_corpus(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut paths = Vec::new();
    for sub in ["ham", "spam"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "eml") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no *.eml under {}", dir.display())));
    }
    paths.into_iter().map(std::fs::read).collect()
}

/// The line ending `raw` uses (from its first line).
fn line_ending(raw: &[u8]) -> &'static str {
    match raw.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && raw[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// `raw` with a `Received:` line naming `tag` prepended, so that every variant has its own
/// content hash (the store deduplicates identical bodies).
pub fn unique_variant(raw: &[u8], tag: u64) -> Vec<u8> {
    let nl = line_ending(raw);
    let line = format!(
        "Received: from storebench.invalid by postlog.invalid with LMTP id sb{tag:016x};{nl}\tThu, 1 Jan 2026 00:00:00 +0000{nl}"
    );
    let mut out = Vec::with_capacity(line.len() + raw.len());
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(raw);
    out
}

/// A small (about 300 bytes, below the compression threshold) unique message.
pub fn small_message(i: u64) -> Vec<u8> {
    format!(
        "Received: from storebench.invalid by postlog.invalid with LMTP id sm{i:016x};\r\n\
         \tThu, 1 Jan 2026 00:00:00 +0000\r\n\
         From: Sender {s} <sender{s}@example.com>\r\n\
         To: <user{u}@example.org>\r\n\
         Subject: small message {i}\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
         Message-ID: <{i}.small@storebench.invalid>\r\n\
         \r\n\
         Hello, this is small message number {i}.\r\n",
        s = i % 997,
        u = i % 101,
    )
    .into_bytes()
}

/// xorshift64*: fast, deterministic, good enough for benchmark data and random picks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const WORDS: [&str; 64] = [
    "the", "mail", "server", "store", "message", "account", "mailbox", "delivery", "queue", "report", "meeting",
    "project", "please", "find", "attached", "regards", "thanks", "schedule", "review", "update", "budget", "team",
    "customer", "order", "invoice", "payment", "shipping", "week", "monday", "friday", "office", "question", "answer",
    "problem", "solution", "version", "release", "build", "test", "result", "number", "total", "and", "for", "with",
    "from", "this", "that", "will", "have", "about", "into", "over", "after", "before", "again", "network", "security",
    "password", "reset", "link", "click", "here", "today",
];

/// A valid MIME message of about `size` bytes. Incompressible: a base64 attachment of random
/// bytes (what real attachments, already compressed, look like); compressible: plain text of
/// random English words (zstd gets it to roughly a third).
pub fn big_message(size: usize, compressible: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 200);
    out.extend_from_slice(
        b"From: Big Sender <big@example.com>\r\n\
          To: <user@example.org>\r\n\
          Subject: a large message\r\n\
          Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
          MIME-Version: 1.0\r\n",
    );
    if compressible {
        out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        let mut line = String::new();
        while out.len() + 80 < size {
            line.clear();
            while line.len() < 70 {
                line.push_str(WORDS[rng.below(64) as usize]);
                line.push(' ');
            }
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
        }
    } else {
        out.extend_from_slice(
            b"Content-Type: multipart/mixed; boundary=\"sb-boundary\"\r\n\r\n\
              --sb-boundary\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
              --sb-boundary\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
              Content-Transfer-Encoding: base64\r\n\r\n",
        );
        while out.len() + 100 < size {
            for _ in 0..76 {
                out.push(B64[rng.below(64) as usize]);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--sb-boundary--\r\n");
    }
    out
}

/// The `p`-th percentile (0..=100) of sorted values (nearest rank); 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// RFC 5322 date-time in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_and_keep_the_message() {
        let raw = b"From: a@b\nSubject: x\n\nbody\n";
        let a = unique_variant(raw, 1);
        let b = unique_variant(raw, 2);
        assert_ne!(a, b);
        assert!(a.ends_with(raw));
        assert!(a.starts_with(b"Received: "));
        assert!(!a.windows(2).any(|w| w == b"\r\n"));
    }

    #[test]
    fn big_messages_have_the_asked_size() {
        for c in [false, true] {
            let m = big_message(1 << 20, c, 7);
            assert!(m.len() <= (1 << 20) + 200 && m.len() > (1 << 20) - 200, "{}", m.len());
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
