//! SASLprep (RFC 4013), the stringprep profile for user names and passwords — as far as this
//! crate goes without Unicode data tables.
//!
//! Done, in the RFC's order:
//! 1. Mapping: non-ASCII spaces (RFC 3454 C.1.2) become U+0020; "commonly mapped to nothing"
//!    characters (B.1: soft hyphen, zero-width joiners, variation selectors, ...) are removed.
//! 2. Normalization: NFKC leaves ASCII unchanged, so ASCII strings come out exactly as the RFC
//!    prescribes. Non-ASCII characters are passed through *without* NFKC.
//! 3. Prohibited output: ASCII and non-ASCII control characters, private use, non-characters,
//!    characters inappropriate for plain text or canonical representation, display-changing
//!    and tagging characters (C.1.2 through C.9) are refused.
//!
//! Left out, because each needs Unicode tables this crate does not carry:
//! - NFKC for non-ASCII: `"\u{2168}"` (ROMAN NUMERAL NINE) is not turned into `"IX"`, and a
//!   password typed in decomposed form does not match one stored precomposed.
//! - The bidirectional-text check (RFC 3454 section 6).
//! - Refusing unassigned code points (A.1) in stored strings.

use std::borrow::Cow;
use std::fmt;

/// The input holds a character that SASLprep prohibits. Which one is not said: the input may
/// be a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProhibitedCharacter;

impl fmt::Display for ProhibitedCharacter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the string contains a character that SASLprep (RFC 4013) prohibits")
    }
}

impl std::error::Error for ProhibitedCharacter {}

/// Prepares `input` with SASLprep (see the module doc for what is left out).
///
/// ASCII input without control characters is returned borrowed and unchanged. An empty result
/// is not an error here; callers that need a non-empty string check for it.
pub fn prepare(input: &str) -> Result<Cow<'_, str>, ProhibitedCharacter> {
    if input.is_ascii() {
        return if input.bytes().any(|b| b.is_ascii_control()) { Err(ProhibitedCharacter) } else { Ok(input.into()) };
    }
    let mut prepared = String::with_capacity(input.len());
    for c in input.chars() {
        if is_mapped_to_nothing(c) {
            continue;
        }
        let c = if is_non_ascii_space(c) { ' ' } else { c };
        if is_prohibited(c) {
            return Err(ProhibitedCharacter);
        }
        prepared.push(c);
    }
    Ok(prepared.into())
}

/// RFC 3454 table B.1.
fn is_mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180D}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
}

/// RFC 3454 table C.1.2.
fn is_non_ascii_space(c: char) -> bool {
    matches!(c, '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200B}' | '\u{202F}' | '\u{205F}' | '\u{3000}')
}

/// RFC 3454 tables C.2.1 through C.9 (C.1.2 is mapped away before this check, and C.5,
/// surrogates, cannot occur in a `char`).
fn is_prohibited(c: char) -> bool {
    let cp = u32::from(c);
    c.is_ascii_control() // C.2.1
        || matches!(
            c,
            // C.2.2 non-ASCII control characters
            '\u{0080}'..='\u{009F}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{180E}'
                | '\u{200C}'
                | '\u{200D}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2063}'
                | '\u{206A}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFC}'
                | '\u{1D173}'..='\u{1D17A}'
                // C.3 private use
                | '\u{E000}'..='\u{F8FF}'
                | '\u{F0000}'..='\u{FFFFD}'
                | '\u{100000}'..='\u{10FFFD}'
                // C.4 non-character code points (the nFFFE/nFFFF ones are tested below)
                | '\u{FDD0}'..='\u{FDEF}'
                // C.6 inappropriate for plain text
                | '\u{FFFD}'
                // C.7 inappropriate for canonical representation
                | '\u{2FF0}'..='\u{2FFB}'
                // C.8 change display properties or deprecated
                | '\u{0340}'
                | '\u{0341}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                // C.9 tagging characters
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
        || cp & 0xFFFE == 0xFFFE // C.4: U+FFFE, U+FFFF, U+1FFFE, ... U+10FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4013_examples_that_need_no_tables() {
        // RFC 4013 section 3, examples 1, 2, 3 and 6.
        assert_eq!(prepare("I\u{00AD}X").unwrap(), "IX");
        assert_eq!(prepare("user").unwrap(), "user");
        assert_eq!(prepare("USER").unwrap(), "USER");
        assert_eq!(prepare("\u{0007}"), Err(ProhibitedCharacter));
    }

    #[test]
    fn ascii_is_borrowed_unchanged() {
        assert!(matches!(prepare("pencil ~!").unwrap(), Cow::Borrowed("pencil ~!")));
        assert_eq!(prepare("").unwrap(), "");
    }

    #[test]
    fn ascii_controls_are_refused() {
        for b in (0u8..0x20).chain([0x7F]) {
            let s = format!("a{}b", char::from(b));
            assert_eq!(prepare(&s), Err(ProhibitedCharacter), "{b:#x}");
        }
    }

    #[test]
    fn non_ascii_spaces_map_to_space_and_b1_to_nothing() {
        assert_eq!(prepare("a\u{00A0}b\u{3000}c").unwrap(), "a b c");
        assert_eq!(prepare("a\u{200B}b\u{FEFF}c\u{FE0F}").unwrap(), "abc");
        assert_eq!(prepare("\u{00AD}").unwrap(), "");
    }

    #[test]
    fn prohibited_non_ascii_is_refused() {
        for c in [
            '\u{0085}',
            '\u{2028}',
            '\u{E000}',
            '\u{FDD0}',
            '\u{FFFE}',
            '\u{10FFFF}',
            '\u{FFFD}',
            '\u{202E}',
            '\u{E0041}',
        ] {
            assert_eq!(prepare(&format!("x{c}")), Err(ProhibitedCharacter), "{:#x}", u32::from(c));
        }
    }

    #[test]
    fn other_non_ascii_passes_through() {
        assert_eq!(prepare("Jürgen").unwrap(), "Jürgen");
        assert_eq!(prepare("пароль").unwrap(), "пароль");
        // Left out: NFKC would turn U+2168 into "IX" (RFC 4013 example 5).
        assert_eq!(prepare("\u{2168}").unwrap(), "\u{2168}");
    }
}
