//! One POP3 command line to a [`Command`] (RFC 1939, RFC 2449 `CAPA`, RFC 2595 `STLS`, RFC
//! 5034 `AUTH`, RFC 6856 `UTF8`), or a [`ParseError`] whose text goes back as `-ERR`.
//!
//! ```text
//! command  = keyword *(SP argument)      ; RFC 1939 section 3: keywords are case-insensitive
//! keyword  = 3*4VCHAR
//! msg      = 1*DIGIT                     ; a message number, 1 is the first
//! USER name | PASS string                ; PASS takes the rest of the line, spaces included
//! STAT | LIST [msg] | RETR msg | DELE msg | NOOP | RSET | QUIT | TOP msg n | UIDL [msg]
//! CAPA | STLS | UTF8 | AUTH [mechanism [initial-response]] | APOP name digest
//! ```
//! Trailing spaces are ignored; more arguments than a command takes are an error.

use std::fmt;

use crate::secret::Secret;

/// A message number as the client sent it (1 is the first message; 0 or one past the end
/// names no message, which is for the session to say).
pub type MessageNumber = u32;

#[derive(Debug, Clone)]
pub enum Command {
    /// `USER name`: the name, as UTF-8 (RFC 6856 allows UTF-8 names).
    User(String),
    /// `PASS string`: everything after `PASS `, spaces included.
    Pass(Secret<String>),
    Stat,
    List(Option<MessageNumber>),
    Retr(MessageNumber),
    Dele(MessageNumber),
    Noop,
    Rset,
    Quit,
    /// `TOP msg n`: the header and the first `n` lines of the body.
    Top(MessageNumber, u64),
    Uidl(Option<MessageNumber>),
    Capa,
    Stls,
    Utf8,
    /// `AUTH` alone lists the mechanisms (the RFC 1734 form clients still send); with a
    /// mechanism, starts a SASL exchange. The initial response is still base64 here.
    Auth {
        mechanism: Option<String>,
        initial_response: Option<Vec<u8>>,
    },
    /// `APOP`: recognised so that it can be refused by name.
    Apop,
}

impl Command {
    /// The command's keyword, upper case (for logs and errors).
    pub fn name(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Utf8 => "UTF8",
            Command::Auth { .. } => "AUTH",
            Command::Apop => "APOP",
        }
    }
}

/// Why a line is not a command; `Display` is the text of the `-ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// An empty line.
    Empty,
    /// A keyword this server does not know (shown as sent, at most 20 characters).
    Unknown(String),
    /// The line is not valid UTF-8 where text is expected.
    NotUtf8(&'static str),
    /// An argument is missing.
    Missing { command: &'static str, what: &'static str },
    /// More arguments than the command takes.
    TooMany(&'static str),
    /// A message number or line count that is not a decimal number in range.
    BadNumber { what: &'static str, value: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("Empty command line"),
            ParseError::Unknown(k) => write!(f, "Unknown command: {k}"),
            ParseError::NotUtf8(what) => write!(f, "The {what} is not valid UTF-8"),
            ParseError::Missing { command, what } => write!(f, "{command} needs {what}"),
            ParseError::TooMany(command) => write!(f, "Too many arguments for {command}"),
            ParseError::BadNumber { what, value } => write!(f, "Invalid {what}: {value}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one command line (without its line ending; a trailing CR or CRLF is tolerated).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    if keyword.is_empty() {
        return Err(ParseError::Empty);
    }
    let upper = keyword.to_ascii_uppercase();
    // PASS keeps its argument whole (passwords may hold spaces, even at the end).
    if upper == b"PASS" {
        let password = std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8("password"))?;
        if password.is_empty() {
            return Err(ParseError::Missing { command: "PASS", what: "a password" });
        }
        return Ok(Command::Pass(Secret::new(password.to_string())));
    }
    let rest = trim_end(rest);
    let mut args = rest.split(|&b| b == b' ').filter(|a| !a.is_empty());
    let command = match upper.as_slice() {
        b"USER" => {
            let name = args.next().ok_or(ParseError::Missing { command: "USER", what: "a user name" })?;
            let name = std::str::from_utf8(name).map_err(|_| ParseError::NotUtf8("user name"))?;
            Command::User(name.to_string())
        }
        b"STAT" => Command::Stat,
        b"LIST" => Command::List(args.next().map(message_number).transpose()?),
        b"RETR" => Command::Retr(required_number(args.next(), "RETR")?),
        b"DELE" => Command::Dele(required_number(args.next(), "DELE")?),
        b"NOOP" => Command::Noop,
        b"RSET" => Command::Rset,
        b"QUIT" => Command::Quit,
        b"TOP" => {
            let msg = required_number(args.next(), "TOP")?;
            let n = args.next().ok_or(ParseError::Missing { command: "TOP", what: "a number of lines" })?;
            Command::Top(msg, number(n, "number of lines")?)
        }
        b"UIDL" => Command::Uidl(args.next().map(message_number).transpose()?),
        b"CAPA" => Command::Capa,
        b"STLS" => Command::Stls,
        b"UTF8" => Command::Utf8,
        b"AUTH" => {
            let mechanism = args
                .next()
                .map(|m| std::str::from_utf8(m).map(str::to_string).map_err(|_| ParseError::NotUtf8("mechanism")))
                .transpose()?;
            let initial_response = args.next().map(<[u8]>::to_vec);
            Command::Auth { mechanism, initial_response }
        }
        b"APOP" => {
            // Never checked: refused by name whatever its arguments.
            return Ok(Command::Apop);
        }
        _ => {
            let shown: String = String::from_utf8_lossy(keyword).chars().take(20).collect();
            return Err(ParseError::Unknown(shown));
        }
    };
    if args.next().is_some() {
        return Err(ParseError::TooMany(command.name()));
    }
    Ok(command)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_suffix(b" ").or_else(|| s.strip_suffix(b"\t")) {
        s = rest;
    }
    s
}

fn required_number(arg: Option<&[u8]>, command: &'static str) -> Result<MessageNumber, ParseError> {
    message_number(arg.ok_or(ParseError::Missing { command, what: "a message number" })?)
}

fn message_number(arg: &[u8]) -> Result<MessageNumber, ParseError> {
    let n = number(arg, "message number")?;
    MessageNumber::try_from(n).map_err(|_| bad("message number", arg))
}

fn number(arg: &[u8], what: &'static str) -> Result<u64, ParseError> {
    if arg.is_empty() || arg.len() > 19 || !arg.iter().all(u8::is_ascii_digit) {
        return Err(bad(what, arg));
    }
    arg.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0'))).ok_or_else(|| bad(what, arg))
}

fn bad(what: &'static str, arg: &[u8]) -> ParseError {
    ParseError::BadNumber { what, value: String::from_utf8_lossy(arg).chars().take(20).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &[u8]) -> String {
        parse_command(line).expect_err("an error").to_string()
    }

    #[test]
    fn rfc_1939_commands() {
        assert!(matches!(ok("STAT"), Command::Stat));
        assert!(matches!(ok("stat\r\n"), Command::Stat));
        assert!(matches!(ok("LIST"), Command::List(None)));
        assert!(matches!(ok("LIST 2"), Command::List(Some(2))));
        assert!(matches!(ok("list 2 "), Command::List(Some(2))));
        assert!(matches!(ok("RETR 1"), Command::Retr(1)));
        assert!(matches!(ok("DELE 0"), Command::Dele(0)));
        assert!(matches!(ok("NOOP"), Command::Noop));
        assert!(matches!(ok("RSET"), Command::Rset));
        assert!(matches!(ok("QUIT"), Command::Quit));
        assert!(matches!(ok("TOP 1 10"), Command::Top(1, 10)));
        assert!(matches!(ok("UIDL"), Command::Uidl(None)));
        assert!(matches!(ok("UIDL 3"), Command::Uidl(Some(3))));
        assert!(matches!(ok("USER mrose"), Command::User(u) if u == "mrose"));
        assert!(matches!(ok("USER jörg@example.test"), Command::User(u) if u == "jörg@example.test"));
        match ok("PASS  secret with spaces ") {
            Command::Pass(p) => assert_eq!(p.expose_secret(), " secret with spaces "),
            c => panic!("{c:?}"),
        }
        assert!(matches!(ok("APOP mrose c4c9334bac560ecc979e58001b3e22fb"), Command::Apop));
    }

    #[test]
    fn extensions() {
        assert!(matches!(ok("CAPA"), Command::Capa));
        assert!(matches!(ok("STLS"), Command::Stls));
        assert!(matches!(ok("UTF8"), Command::Utf8));
        assert!(matches!(ok("AUTH"), Command::Auth { mechanism: None, initial_response: None }));
        match ok("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=") {
            Command::Auth { mechanism: Some(m), initial_response: Some(ir) } => {
                assert_eq!(m, "PLAIN");
                assert_eq!(ir, b"dGVzdAB0ZXN0AHRlc3Q=");
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(err(b""), "Empty command line");
        assert_eq!(err(b"XTND XLST"), "Unknown command: XTND");
        assert_eq!(err(b"RETR"), "RETR needs a message number");
        assert_eq!(err(b"RETR x"), "Invalid message number: x");
        assert_eq!(err(b"RETR -1"), "Invalid message number: -1");
        assert_eq!(err(b"RETR 4294967296"), "Invalid message number: 4294967296");
        assert_eq!(err(b"RETR 99999999999999999999999"), "Invalid message number: 99999999999999999999");
        assert_eq!(err(b"TOP 1"), "TOP needs a number of lines");
        assert_eq!(err(b"TOP 1 x"), "Invalid number of lines: x");
        assert_eq!(err(b"STAT 1"), "Too many arguments for STAT");
        assert_eq!(err(b"LIST 1 2"), "Too many arguments for LIST");
        assert_eq!(err(b"USER"), "USER needs a user name");
        assert_eq!(err(b"USER \xff"), "The user name is not valid UTF-8");
        assert_eq!(err(b"PASS"), "PASS needs a password");
        assert_eq!(err(b"PASS \xff"), "The password is not valid UTF-8");
        assert_eq!(err(b"AUTH PLAIN x y"), "Too many arguments for AUTH");
    }
}
