//! SMTP commands (RFC 5321 section 4.1) and their parameters, parsed from one line.
//!
//! [`parse_command`] takes a command line without its CRLF and returns a [`Command`] or the
//! [`Reply`] that explains what is wrong with it. It is lenient where Postfix is (a space
//! after `MAIL FROM:`, a path without angle brackets, dots in odd places of a local part) and
//! strict where it matters: unknown parameters, malformed domains, control characters.

use super::reply::Reply;

/// Longest address (local part, `@`, domain) accepted. RFC 5321 allows 256 octets of path;
/// real senders (VERP, SRS) exceed the 64-octet local part, so only the sum is bounded.
pub const MAX_ADDRESS_LEN: usize = 320;
/// Longest domain (RFC 1035: 255 octets).
pub const MAX_DOMAIN_LEN: usize = 255;

/// An address as given in `MAIL FROM` or `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// As written: a dot-string, or a quoted string with its quotes.
    pub local: String,
    /// A domain name (ASCII, or UTF-8 U-labels under SMTPUTF8) or an address literal `[...]`.
    pub domain: String,
}

impl Mailbox {
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The `RCPT TO` path: a mailbox, or the bare `<Postmaster>` every server must accept
/// (RFC 5321 section 4.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    Mailbox(Mailbox),
    Postmaster,
}

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// `RET=` of DSN (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

/// `NOTIFY=` of DSN (RFC 3461): `NEVER`, or any of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// Parameters of `MAIL FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870): the client's estimate.
    pub size: Option<u64>,
    pub body: BodyType,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// `ENVID=`, still xtext-encoded as received.
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954 section 5), still xtext-encoded; `<>` for none.
    pub auth: Option<String>,
}

/// Parameters of `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext`, as received.
    pub orcpt: Option<String>,
}

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// LMTP's EHLO (RFC 2033).
    Lhlo(String),
    /// `None` is the null reverse path `<>`.
    Mail {
        from: Option<Mailbox>,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Data,
    /// RFC 3030: `size` octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help,
    StartTls,
    Auth {
        mechanism: String,
        /// As received: base64, or `=` for an empty response.
        initial_response: Option<String>,
    },
}

impl Command {
    /// The verb, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// RFC 2920 section 3.1: commands that may only end a pipelined group (the client must
    /// wait for their reply before sending more). HELO and the TLS and AUTH commands are
    /// added, as Postfix does.
    pub fn ends_group(&self) -> bool {
        matches!(
            self,
            Command::Ehlo(_)
                | Command::Helo(_)
                | Command::Lhlo(_)
                | Command::Data
                | Command::Vrfy(_)
                | Command::Expn(_)
                | Command::Noop
                | Command::Quit
                | Command::StartTls
                | Command::Auth { .. }
        )
    }
}

fn syntax(status: &str, text: &str) -> Reply {
    Reply::new(501, status, text)
}

/// Parses one command line (without its line ending).
pub fn parse_command(line: &[u8]) -> Result<Command, Reply> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(Reply::new(500, "5.5.2", "Error: command contains bytes that are not UTF-8"));
    };
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Reply::new(500, "5.5.2", "Error: command contains control characters"));
    }
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if rest.is_empty() { Ok(cmd) } else { Err(syntax("5.5.4", &format!("Syntax: {}", cmd.verb()))) }
    };
    match verb.as_str() {
        "EHLO" | "HELO" | "LHLO" => {
            if rest.is_empty() {
                return Err(syntax("5.5.4", &format!("Syntax: {verb} hostname")));
            }
            let name = rest.to_string();
            Ok(match verb.as_str() {
                "EHLO" => Command::Ehlo(name),
                "HELO" => Command::Helo(name),
                _ => Command::Lhlo(name),
            })
        }
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(Command::Rset),
        // RFC 5321 section 4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" if !rest.is_empty() => Ok(Command::Vrfy(rest.to_string())),
        "EXPN" if !rest.is_empty() => Ok(Command::Expn(rest.to_string())),
        "VRFY" | "EXPN" => Err(syntax("5.5.4", &format!("Syntax: {verb} address"))),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => parse_auth(rest),
        "" => Err(Reply::new(500, "5.5.2", "Error: bad syntax")),
        _ => Err(Reply::new(500, "5.5.2", "Error: command not recognized")),
    }
}

/// Strips a case-insensitive `prefix` (e.g. `FROM:`).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Splits `<path> params` (or a path without brackets) into the path text and the rest.
fn split_path(s: &str) -> Result<(&str, &str), ()> {
    let s = s.trim_start_matches([' ', '\t']);
    if let Some(inner) = s.strip_prefix('<') {
        // The closing bracket, not counting one inside a quoted local part.
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => return Ok((&inner[..i], &inner[i + 1..])),
                _ => {}
            }
        }
        Err(())
    } else {
        let end = s.find([' ', '\t']).unwrap_or(s.len());
        Ok((&s[..end], &s[end..]))
    }
}

fn parse_mail(rest: &str) -> Result<Command, Reply> {
    let Some(after) = strip_prefix_ci(rest, "FROM:") else {
        return Err(syntax("5.5.4", "Syntax: MAIL FROM:<address>"));
    };
    let Ok((path, params)) = split_path(after) else {
        return Err(syntax("5.1.7", "Bad sender address syntax"));
    };
    let from = if path.is_empty() {
        None
    } else {
        Some(parse_path(path).map_err(|why| syntax("5.1.7", &format!("Bad sender address syntax: {why}")))?)
    };
    let mut p = MailParams::default();
    let mut seen = Vec::new();
    for (key, value) in split_params(params)? {
        if !first_time(&mut seen, &key, value)? {
            continue;
        }
        let bad = || syntax("5.5.4", &format!("Bad {key} parameter value"));
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                p.size = Some(parse_decimal(v).ok_or_else(|| syntax("5.5.4", "Bad SIZE parameter value"))?);
            }
            ("BODY", Some(v)) => {
                p.body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    "BINARYMIME" => BodyType::BinaryMime,
                    _ => return Err(bad()),
                }
            }
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("RET", Some(v)) => {
                p.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Headers,
                    _ => return Err(bad()),
                })
            }
            ("ENVID", Some(v)) if is_xtext(v) && v.len() <= 100 => p.envid = Some(v.to_string()),
            ("AUTH", Some(v)) if v == "<>" || is_xtext(v) => p.auth = Some(v.to_string()),
            ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH" | "SMTPUTF8", _) => return Err(bad()),
            _ => return Err(Reply::new(555, "5.5.4", format!("Unsupported option: {key}"))),
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn parse_rcpt(rest: &str) -> Result<Command, Reply> {
    let Some(after) = strip_prefix_ci(rest, "TO:") else {
        return Err(syntax("5.5.4", "Syntax: RCPT TO:<address>"));
    };
    let Ok((path, params)) = split_path(after) else {
        return Err(syntax("5.1.3", "Bad recipient address syntax"));
    };
    let to = if path.eq_ignore_ascii_case("postmaster") {
        ForwardPath::Postmaster
    } else if path.is_empty() {
        return Err(syntax("5.1.3", "Bad recipient address syntax: empty address"));
    } else {
        ForwardPath::Mailbox(
            parse_path(path).map_err(|why| syntax("5.1.3", &format!("Bad recipient address syntax: {why}")))?,
        )
    };
    let mut p = RcptParams::default();
    let mut seen = Vec::new();
    for (key, value) in split_params(params)? {
        if !first_time(&mut seen, &key, value)? {
            continue;
        }
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                p.notify = Some(parse_notify(v).ok_or_else(|| syntax("5.5.4", "Bad NOTIFY parameter value"))?)
            }
            ("ORCPT", Some(v)) if is_orcpt(v) => p.orcpt = Some(v.to_string()),
            ("NOTIFY" | "ORCPT", _) => return Err(syntax("5.5.4", &format!("Bad {key} parameter value"))),
            _ => return Err(Reply::new(555, "5.5.4", format!("Unsupported option: {key}"))),
        }
    }
    Ok(Command::Rcpt { to, params: p })
}

/// Whether a parameter is new. The same parameter twice with the same value is taken once
/// (Python's smtplib adds `SMTPUTF8` itself, even when the caller passed it); with another
/// value it is an error.
fn first_time<'a>(seen: &mut Vec<(String, Option<&'a str>)>, key: &str, value: Option<&'a str>) -> Result<bool, Reply> {
    match seen.iter().find(|(k, _)| k == key) {
        Some((_, v)) if *v == value => Ok(false),
        Some(_) => Err(syntax("5.5.4", &format!("Duplicate parameter {key}"))),
        None => {
            seen.push((key.to_string(), value));
            Ok(true)
        }
    }
}

fn parse_bdat(rest: &str) -> Result<Command, Reply> {
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let usage = || syntax("5.5.4", "Syntax: BDAT size [LAST]");
    let size = words.next().and_then(parse_decimal).ok_or_else(usage)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(usage()),
    };
    if words.next().is_some() {
        return Err(usage());
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, Reply> {
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let Some(mechanism) = words.next() else {
        return Err(syntax("5.5.4", "Syntax: AUTH mechanism [initial-response]"));
    };
    let initial_response = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(syntax("5.5.4", "Syntax: AUTH mechanism [initial-response]"));
    }
    Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial_response })
}

/// `KEY[=VALUE]` words; keys upper-cased.
fn split_params(s: &str) -> Result<Vec<(String, Option<&str>)>, Reply> {
    let mut out = Vec::new();
    for word in s.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(syntax("5.5.4", &format!("Bad parameter syntax: {word}")));
        }
        out.push((key.to_ascii_uppercase(), value));
    }
    Ok(out)
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_notify(v: &str) -> Option<Notify> {
    let mut n = Notify::default();
    for word in v.split(',') {
        match word.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => return None,
        }
    }
    // NEVER stands alone (RFC 3461 section 4.1).
    if n.never && (n.success || n.failure || n.delay) {
        return None;
    }
    Some(n)
}

/// RFC 3461 section 4: xtext is printable ASCII except `+` and `=`, with `+XX` hex escapes.
pub fn is_xtext(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    !v.is_empty()
}

/// Encodes octets as xtext (RFC 3461 section 4): printable ASCII other than `+` and `=` as is,
/// everything else as `+XX` (upper-case hex).
pub fn encode_xtext(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes xtext (RFC 3461 section 4) to the octets it stands for; `None` if it is not xtext.
pub fn decode_xtext(value: &str) -> Option<Vec<u8>> {
    if !is_xtext(value) {
        return None;
    }
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            // is_xtext checked that two hex digits follow.
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Encodes an address as `utf-8-addr-xtext` (RFC 6533 section 3), the ASCII form of the
/// `utf-8` address type: printable ASCII other than `+`, `=` and `\` as is, every other
/// character as `\x{HEX}` (its code point in upper-case hex, no leading zeros).
pub fn encode_utf8_addr_xtext(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        if matches!(c, '!'..='~') && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// Decodes a `utf-8` address (RFC 6533 section 3: `utf-8-addr-xtext`, `utf-8-addr-unitext` or
/// plain UTF-8): every `\x{HEX}` becomes its character. `None` for a malformed escape, a
/// code point that is not a character, or a control character.
pub fn decode_utf8_addr(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = rest[i..].strip_prefix("\\x{")?;
        let end = after.find('}')?;
        let hex = &after[..end];
        if hex.is_empty() || hex.len() > 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.is_empty() || out.chars().any(char::is_control) {
        return None;
    }
    Some(out)
}

/// `addr-type ";" xtext`; with SMTPUTF8 (RFC 6533) the `utf-8` type carries utf-8-addr-xtext,
/// which is accepted as any non-control UTF-8.
fn is_orcpt(v: &str) -> bool {
    match v.split_once(';') {
        Some((kind, addr)) => {
            !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !addr.is_empty()
                && (is_xtext(addr) || (kind.eq_ignore_ascii_case("utf-8") && !addr.chars().any(char::is_control)))
        }
        None => false,
    }
}

/// Parses a path's text (inside the angle brackets): an optional source route, then a
/// mailbox.
pub fn parse_path(path: &str) -> Result<Mailbox, &'static str> {
    // RFC 5321 section 4.1.2: `@one,@two:user@domain`; the route is ignored (section 3.3).
    let path = if path.starts_with('@') {
        match path.find(':') {
            Some(i) => &path[i + 1..],
            None => return Err("source route without a mailbox"),
        }
    } else {
        path
    };
    if path.len() > MAX_ADDRESS_LEN {
        return Err("address too long");
    }
    let at = local_part_end(path)?;
    let (local, domain) = (&path[..at], &path[at + 1..]);
    check_domain(domain)?;
    Ok(Mailbox { local: local.to_string(), domain: domain.to_string() })
}

/// The index of the `@` that ends the local part.
fn local_part_end(path: &str) -> Result<usize, &'static str> {
    if let Some(rest) = path.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let after = i + 2;
                    return if path[after..].starts_with('@') {
                        Ok(after)
                    } else {
                        Err("text after a quoted local part")
                    };
                }
                _ => {}
            }
        }
        return Err("unterminated quoted local part");
    }
    let at = path.rfind('@').ok_or("no @ in the address")?;
    let local = &path[..at];
    if local.is_empty() {
        return Err("empty local part");
    }
    if !local.chars().all(|c| is_atext(c) || c == '.') {
        return Err("invalid character in the local part");
    }
    Ok(at)
}

/// RFC 5322 atext, plus any non-ASCII character (RFC 6531 UTF8-non-ascii).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err("domain too long");
    }
    if let Some(lit) = domain.strip_prefix('[') {
        let Some(inner) = lit.strip_suffix(']') else {
            return Err("unterminated address literal");
        };
        let ok = inner.parse::<std::net::Ipv4Addr>().is_ok()
            || inner
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("IPv6:") && inner[5..].parse::<std::net::Ipv6Addr>().is_ok());
        return if ok { Ok(()) } else { Err("invalid address literal") };
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("invalid domain");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("invalid domain");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())) {
            return Err("invalid character in the domain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox { local: local.into(), domain: domain.into() }
    }

    #[test]
    fn verbs_are_case_insensitive_and_take_their_arguments() {
        assert_eq!(parse_command(b"ehlo client.example").unwrap(), Command::Ehlo("client.example".into()));
        assert_eq!(parse_command(b"HELO x").unwrap(), Command::Helo("x".into()));
        assert_eq!(parse_command(b"LHLO x").unwrap(), Command::Lhlo("x".into()));
        assert_eq!(parse_command(b"data").unwrap(), Command::Data);
        assert_eq!(parse_command(b"NOOP anything").unwrap(), Command::Noop);
        assert_eq!(parse_command(b"QUIT ").unwrap(), Command::Quit);
        assert_eq!(parse_command(b"STARTTLS").unwrap(), Command::StartTls);
        assert_eq!(parse_command(b"HELP me").unwrap(), Command::Help);
        assert_eq!(parse_command(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse_command(b"DATA now").unwrap_err().code, 501);
        assert_eq!(parse_command(b"STARTTLS x").unwrap_err().code, 501);
        assert_eq!(parse_command(b"XYZZY").unwrap_err().to_string(), "500 5.5.2 Error: command not recognized");
        assert_eq!(parse_command(b"").unwrap_err().code, 500);
        assert_eq!(parse_command(b"MAIL FROM:<a@b\x00>").unwrap_err().code, 500);
        assert_eq!(parse_command(b"MAIL FROM:<\xff@b>").unwrap_err().code, 500);
    }

    #[test]
    fn mail_paths_and_parameters() {
        let c = parse_command(b"MAIL FROM:<alice@example.test> SIZE=1000 BODY=8BITMIME").unwrap();
        let Command::Mail { from, params } = c else { panic!() };
        assert_eq!(from, Some(mb("alice", "example.test")));
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, BodyType::EightBitMime);
        let Command::Mail { from, params } = parse_command(b"MAIL FROM:<>").unwrap() else { panic!() };
        assert_eq!((from, params), (None, MailParams::default()));
        // Postfix-style leniency: a space after the colon, no angle brackets.
        let Command::Mail { from, .. } = parse_command(b"mail from: <a@b.c>").unwrap() else { panic!() };
        assert_eq!(from, Some(mb("a", "b.c")));
        let Command::Mail { from, .. } = parse_command(b"MAIL FROM:a@b.c").unwrap() else { panic!() };
        assert_eq!(from, Some(mb("a", "b.c")));
        let Command::Mail { from, params } =
            parse_command(b"MAIL FROM:<\"odd >\\\"name\"@example.test> RET=HDRS ENVID=QQ+2B1 SMTPUTF8 AUTH=<>")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(from, Some(mb("\"odd >\\\"name\"", "example.test")));
        assert_eq!(params.ret, Some(Ret::Headers));
        assert_eq!(params.envid.as_deref(), Some("QQ+2B1"));
        assert!(params.smtputf8);
        assert!(parse_command(b"MAIL FROM:<a@b.c> SMTPUTF8 smtputf8 SIZE=1 SIZE=1").is_ok());
        let Command::Mail { from, .. } = parse_command(b"MAIL FROM:<@relay.test,@b.test:x@y.test>").unwrap() else {
            panic!()
        };
        assert_eq!(from, Some(mb("x", "y.test")));
        let Command::Mail { from, .. } = parse_command("MAIL FROM:<jösé@bücher.test> SMTPUTF8".as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(!from.unwrap().is_ascii());
        let Command::Mail { from, .. } = parse_command(b"MAIL FROM:<a@[192.0.2.1]>").unwrap() else { panic!() };
        assert_eq!(from.unwrap().domain, "[192.0.2.1]");
        for (line, code, status) in [
            (&b"MAIL TO:<a@b>"[..], 501, "5.5.4"),
            (b"MAIL FROM:<a@b", 501, "5.1.7"),
            (b"MAIL FROM:<ab>", 501, "5.1.7"),
            (b"MAIL FROM:<a@-b.c>", 501, "5.1.7"),
            (b"MAIL FROM:<a@b..c>", 501, "5.1.7"),
            (b"MAIL FROM:<a@[1.2.3]>", 501, "5.1.7"),
            (b"MAIL FROM:<a b@c>", 501, "5.1.7"),
            (b"MAIL FROM:<a@b> SIZE=x", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> SIZE=99999999999999999999", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> BODY=9BIT", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8=x", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> ENVID=a=b", 501, "5.5.4"),
            (b"MAIL FROM:<a@b> XFOO=1", 555, "5.5.4"),
        ] {
            let r = parse_command(line).unwrap_err();
            assert_eq!((r.code, r.status.as_str()), (code, status), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn rcpt_paths_and_dsn_parameters() {
        let Command::Rcpt { to, params } =
            parse_command(b"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test").unwrap()
        else {
            panic!()
        };
        assert_eq!(to, ForwardPath::Mailbox(mb("bob", "example.test")));
        assert_eq!(params.notify, Some(Notify { success: true, failure: true, ..Default::default() }));
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;bob@example.test"));
        assert_eq!(
            parse_command(b"RCPT TO:<Postmaster>").unwrap(),
            Command::Rcpt { to: ForwardPath::Postmaster, params: RcptParams::default() }
        );
        for line in [&b"RCPT TO:<>"[..], b"RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", b"RCPT TO:<a@b> ORCPT=x", b"RCPT <a@b>"]
        {
            assert_eq!(parse_command(line).unwrap_err().code, 501, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(parse_command(b"RCPT TO:<a@b> FOO").unwrap_err().code, 555);
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(parse_command(b"BDAT 100").unwrap(), Command::Bdat { size: 100, last: false });
        assert_eq!(parse_command(b"bdat 0 last").unwrap(), Command::Bdat { size: 0, last: true });
        for bad in [&b"BDAT"[..], b"BDAT x", b"BDAT 1 FIRST", b"BDAT 1 LAST x", b"BDAT -1"] {
            assert_eq!(parse_command(bad).unwrap_err().code, 501);
        }
        assert_eq!(
            parse_command(b"AUTH plain AGFsaWNlAHNlY3JldA==").unwrap(),
            Command::Auth { mechanism: "PLAIN".into(), initial_response: Some("AGFsaWNlAHNlY3JldA==".into()) }
        );
        assert_eq!(
            parse_command(b"AUTH LOGIN").unwrap(),
            Command::Auth { mechanism: "LOGIN".into(), initial_response: None }
        );
        assert_eq!(parse_command(b"AUTH").unwrap_err().code, 501);
    }

    #[test]
    fn xtext_round_trips() {
        assert_eq!(encode_xtext(b"a+b=c d\xff"), "a+2Bb+3Dc+20d+FF");
        assert_eq!(decode_xtext("a+2Bb+3Dc+20d+FF").unwrap(), b"a+b=c d\xff");
        assert_eq!(decode_xtext("a+zz"), None);
        for s in [&b""[..], b"plain", b"+=+=", b"\x00\r\n", "jösé".as_bytes()] {
            let e = encode_xtext(s);
            assert!(s.is_empty() || is_xtext(&e), "{e}");
            if !s.is_empty() {
                assert_eq!(decode_xtext(&e).unwrap(), s);
            }
        }
        assert_eq!(
            encode_utf8_addr_xtext("jösé+x=y\\@bü.test"),
            "j\\x{F6}s\\x{E9}\\x{2B}x\\x{3D}y\\x{5C}@b\\x{FC}.test"
        );
        assert_eq!(decode_utf8_addr("j\\x{F6}s\\x{E9}\\x{2B}x@b\\x{FC}.test").unwrap(), "jösé+x@bü.test");
        assert_eq!(decode_utf8_addr("jösé@bücher.test").unwrap(), "jösé@bücher.test");
        for bad in ["a\\x{}", "a\\x{D800}", "a\\x{110000}", "a\\y", "a\\x{41", "a\\x{0}", ""] {
            assert_eq!(decode_utf8_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn xtext() {
        assert!(is_xtext("abc+2B+3D"));
        assert!(!is_xtext("a+2"));
        assert!(!is_xtext("a+"));
        assert!(!is_xtext("a+zz"));
        assert!(!is_xtext("a=b"));
        assert!(!is_xtext(""));
    }
}
