//! IMAP's modified UTF-7 mailbox name encoding (RFC 3501 section 5.1.3).
//!
//! Printable US-ASCII other than `&` stands for itself, `&` is `&-`, and
//! runs of other characters are UTF-16BE in a base64 variant (`,` for `/`,
//! no padding) between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Encodes a UTF-8 mailbox name in modified UTF-7.
pub fn utf7_imap_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if is_printable(u32::from(ch)) {
            flush_run(&mut out, &mut run);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for &unit in run.iter() {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out.push('-');
    run.clear();
}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|i| i as u32)
}

/// Decodes a modified UTF-7 mailbox name to UTF-8.
///
/// Strict: returns `None` for raw non-ASCII or control characters, an
/// unterminated or malformed `&...-` section, non-zero padding bits,
/// unpaired surrogates, or printable ASCII hidden in base64.
pub fn utf7_imap_decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Set right after a base64 section: two adjacent sections ("-&" null
    // shift) are not canonical and RFC 3501 forbids them.
    let mut after_section = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'&' {
            let end = i + 1 + bytes[i + 1..].iter().position(|&c| c == b'-')?;
            if end == i + 1 {
                out.push('&');
                after_section = false;
            } else {
                if after_section {
                    return None;
                }
                after_section = true;
                let mut units = Vec::new();
                let mut bits: u32 = 0;
                let mut nbits = 0u32;
                for &c in &bytes[i + 1..end] {
                    bits = (bits << 6) | sextet(c)?;
                    nbits += 6;
                    if nbits >= 16 {
                        nbits -= 16;
                        units.push((bits >> nbits) as u16);
                        bits &= (1 << nbits) - 1;
                    }
                }
                if nbits >= 6 || bits != 0 || units.is_empty() {
                    return None;
                }
                for ch in char::decode_utf16(units) {
                    let ch = ch.ok()?;
                    if is_printable(u32::from(ch)) {
                        return None;
                    }
                    out.push(ch);
                }
            }
            i = end + 1;
        } else if is_printable(u32::from(b)) {
            out.push(b as char);
            after_section = false;
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        let utf8 = "~peter/mail/台北/日本語";
        let utf7 = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(utf7_imap_encode(utf8), utf7);
        assert_eq!(utf7_imap_decode(utf7).as_deref(), Some(utf8));
    }

    #[test]
    fn ampersand_and_ascii() {
        assert_eq!(utf7_imap_encode("R&D"), "R&-D");
        assert_eq!(utf7_imap_decode("R&-D").as_deref(), Some("R&D"));
        assert_eq!(utf7_imap_encode("&&x&&"), "&-&-x&-&-");
        assert_eq!(utf7_imap_decode("&-&-x&-&-").as_deref(), Some("&&x&&"));
        assert_eq!(utf7_imap_encode("INBOX"), "INBOX");
        assert_eq!(utf7_imap_decode("").as_deref(), Some(""));
    }

    #[test]
    fn common_names() {
        for (utf8, utf7) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
            ("Входящие", "&BBIERQQ+BDQETwRJBDgENQ-"),
            ("😀", "&2D3eAA-"),
            ("a\tb", "a&AAk-b"),
        ] {
            assert_eq!(utf7_imap_encode(utf8), utf7, "{utf8}");
            assert_eq!(utf7_imap_decode(utf7).as_deref(), Some(utf8), "{utf7}");
        }
    }

    #[test]
    fn rejects_malformed() {
        // RFC 3501: "&Jjo!" is not valid, nor is the name unterminated.
        assert_eq!(utf7_imap_decode("&Jjo!"), None);
        assert_eq!(utf7_imap_decode("&Jjo"), None);
        assert_eq!(utf7_imap_decode("&"), None);
        assert_eq!(utf7_imap_decode("&U,BTFw"), None);
        // Two adjacent base64 sections must be one.
        assert_eq!(utf7_imap_decode("&U,BTFw-&ZeVnLIqe-"), None);
        assert_eq!(utf7_imap_decode("&U,BTF2XlZyyKng-").as_deref(), Some("台北日本語"));
        assert_eq!(utf7_imap_encode("台北日本語"), "&U,BTF2XlZyyKng-");
        // A section followed by a literal '&' is fine.
        assert_eq!(utf7_imap_decode("&AOk-&-").as_deref(), Some("é&"));
        // Printable ASCII must not be base64-encoded ("&AGE-" is "a").
        assert_eq!(utf7_imap_decode("&AGE-"), None);
        // Raw UTF-8 is not modified UTF-7.
        assert_eq!(utf7_imap_decode("台北"), None);
        // Leftover bits must be zero and fewer than six.
        assert_eq!(utf7_imap_decode("&U,BTFx-"), None);
        assert_eq!(utf7_imap_decode("&A-"), None);
        // Unpaired surrogate.
        assert_eq!(utf7_imap_decode("&2D0-"), None);
    }

    #[test]
    fn round_trip_many() {
        let samples = ["", "a", "é", "éé", "ééé", "a&b&", "x😀y🎉", "日本語&台北", "~", "\u{7f}"];
        for s in samples {
            let enc = utf7_imap_encode(s);
            assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{enc}");
            assert_eq!(utf7_imap_decode(&enc).as_deref(), Some(s), "{enc}");
        }
    }
}
