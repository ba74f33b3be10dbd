//! IMAP's modified UTF-7 mailbox name encoding (RFC 3501 section 5.1.3), for Maildir folder
//! names: the IMAP codec's encoder and decoder (`postlog_protocol::imap::mailbox`).
//!
//! Printable US-ASCII other than `&` stands for itself, `&` is `&-`, and
//! runs of other characters are UTF-16BE in a base64 variant (`,` for `/`,
//! no padding) between `&` and `-`.

use postlog_protocol::imap::mailbox::{decode_modified_utf7, encode_modified_utf7};

/// Encodes a UTF-8 mailbox name in modified UTF-7.
pub fn utf7_imap_encode(name: &str) -> String {
    encode_modified_utf7(name)
}

/// Decodes a modified UTF-7 name; `None` if it is not valid modified UTF-7.
pub fn utf7_imap_decode(name: &str) -> Option<String> {
    decode_modified_utf7(name.as_bytes()).ok()
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
