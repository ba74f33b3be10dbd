//! Helpers shared by the engine's test files.

/// A message of `head` (header lines and the blank line) and then random base64 lines of 76
/// characters until it is at least `min_len` bytes long: an attachment zstd can squeeze only
/// by entropy coding. The same every time (a fixed xorshift seed).
pub fn base64_body(head: &[u8], min_len: usize) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = head.to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while raw.len() < min_len {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            raw.push(B64[(x % 64) as usize]);
        }
        raw.extend_from_slice(b"\r\n");
    }
    raw
}
