//! [`Capabilities`]: what a server offers, read from its EHLO reply (RFC 5321 section 4.1.1.1).
//!
//! The first line is the server's name; each further line is `keyword *(SP param)`. Keywords
//! are matched without regard to case; unknown ones are ignored (and listed in `other`, for
//! logs). The old `AUTH=MECH ...` form some servers still send besides `AUTH MECH ...` is
//! read too.

use crate::smtp::reply::Reply;

/// Extensions offered by the server. All off after HELO (no extensions there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (not HELO).
    pub esmtp: bool,
    /// The name the server gave on the first line of its EHLO reply.
    pub server_name: String,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): `SIZE=` may be sent.
    pub size: bool,
    /// The server's message size limit in octets, if it declared one (`SIZE 0` means none).
    pub max_size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// CHUNKING: BDAT (RFC 3030).
    pub chunking: bool,
    /// BINARYMIME (RFC 3030).
    pub binary_mime: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// DSN (RFC 3461): NOTIFY, ORCPT, RET, ENVID may be sent.
    pub dsn: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms (RFC 4954), upper case, each once.
    pub auth: Vec<String>,
    /// Keywords not known here, upper case (for logs).
    pub other: Vec<String>,
}

impl Capabilities {
    /// Reads a positive EHLO reply.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities { esmtp: true, ..Capabilities::default() };
        let mut lines = reply.lines.iter();
        caps.server_name = lines.next().and_then(|l| l.split_whitespace().next()).unwrap_or_default().to_string();
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let (keyword, inline) = match first.split_once('=') {
                Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
                None => (first.to_ascii_uppercase(), None),
            };
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = true;
                    // A limit that does not parse is ignored, as if none was given.
                    caps.max_size = words.next().and_then(|w| w.parse::<u64>().ok()).filter(|&n| n > 0);
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "BINARYMIME" => caps.binary_mime = true,
                "STARTTLS" => caps.starttls = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in inline.into_iter().chain(words) {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !mechanism.is_empty() && !caps.auth.contains(&mechanism) {
                            caps.auth.push(mechanism);
                        }
                    }
                }
                _ => caps.other.push(keyword),
            }
        }
        caps
    }

    /// The server offers this SASL mechanism.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::multi(250, "", lines.iter().map(|l| l.to_string()).collect()))
    }

    #[test]
    fn every_extension_case_insensitive() {
        let c = ehlo(&[
            "mx.example.test Hello client",
            "pipelining",
            "Size 35882577",
            "8BITMIME",
            "smtputf8",
            "CHUNKING",
            "BinaryMime",
            "STARTTLS",
            "DSN",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN login",
            "AUTH=LOGIN CRAM-MD5",
            "X-FUTURE-THING 1 2",
            "VRFY",
            "",
        ]);
        assert!(c.esmtp && c.pipelining && c.size && c.eight_bit_mime && c.smtputf8 && c.chunking);
        assert!(c.binary_mime && c.starttls && c.dsn && c.enhanced_status_codes);
        assert_eq!(c.server_name, "mx.example.test");
        assert_eq!(c.max_size, Some(35882577));
        assert_eq!(c.auth, ["PLAIN", "LOGIN", "CRAM-MD5"]);
        assert!(c.offers_auth("plain") && !c.offers_auth("XOAUTH2"));
        assert_eq!(c.other, ["X-FUTURE-THING", "VRFY"]);
    }

    #[test]
    fn size_without_a_usable_limit() {
        for line in ["SIZE", "SIZE 0", "SIZE lots", "SIZE 99999999999999999999999"] {
            let c = ehlo(&["mx", line]);
            assert!(c.size, "{line}");
            assert_eq!(c.max_size, None, "{line}");
        }
        let c = ehlo(&["mx"]);
        assert!(c.esmtp && !c.size && !c.pipelining && c.auth.is_empty());
    }
}
