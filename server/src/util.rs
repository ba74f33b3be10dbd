//! Small helpers shared by the commands: errors with exit codes, dates, flag names.

use postlog_engine::{flag, special_use};

/// Exit codes shared by the tools.
pub mod exit {
    /// Success; for `check`, a clean store.
    pub const OK: i32 = 0;
    /// The command ran and found (or left) problems: findings, skipped messages, repairs needed.
    pub const FINDINGS: i32 = 1;
    /// The command could not run: bad arguments or configuration, store locked or unreadable.
    pub const CANNOT_RUN: i32 = 2;
}

/// A command that could not do its work. Printed as `postlog: error: ...`, exit code 2
/// unless `code` says otherwise.
#[derive(Debug)]
pub struct CmdError {
    pub code: i32,
    pub message: String,
}

impl CmdError {
    pub fn new(message: impl Into<String>) -> CmdError {
        CmdError { code: exit::CANNOT_RUN, message: message.into() }
    }
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CmdError {}

impl From<crate::config::ConfigError> for CmdError {
    fn from(e: crate::config::ConfigError) -> Self {
        CmdError::new(e.0)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds as `2002-08-22T18:26:25Z`.
pub fn fmt_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// IMAP names of system flag bits, in the engine's order.
pub fn flag_names(bits: u8) -> Vec<String> {
    flag::NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| (*n).to_string()).collect()
}

/// Flag bits of IMAP flag names (case-insensitive); names that are not system flags are
/// returned apart (`\Recent` is dropped silently).
pub fn flag_bits(names: &[String]) -> (u8, Vec<String>) {
    let mut bits = 0;
    let mut unknown = Vec::new();
    for n in names {
        match flag::NAMES.iter().find(|(_, name)| name.eq_ignore_ascii_case(n)) {
            Some((b, _)) => bits |= b,
            None if n.eq_ignore_ascii_case("\\Recent") => {}
            None => unknown.push(n.clone()),
        }
    }
    (bits, unknown)
}

/// RFC 6154 names of special-use bits.
pub fn special_use_names(bits: u8) -> Vec<String> {
    special_use::NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| (*n).to_string()).collect()
}

/// Checks that an account name is an email address (`local@domain`).
pub fn validate_address(addr: &str) -> Result<(), CmdError> {
    let bad = |why: &str| Err(CmdError::new(format!("{addr:?} is not an account address: {why}")));
    let Some((local, domain)) = addr.rsplit_once('@') else { return bad("it has no '@'") };
    if local.is_empty() || domain.is_empty() {
        return bad("it needs a local part and a domain around the '@'");
    }
    if addr.len() > 320 || addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it is too long or contains spaces or control characters");
    }
    if domain.split('.').any(|l| l.is_empty()) || domain.contains(['@', '/']) {
        return bad("its domain is malformed");
    }
    Ok(())
}

/// Bytes for people: `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_795_788_000), "2026-11-27T14:00:00Z");
        assert_eq!(fmt_time(-1), "1969-12-31T23:59:59Z");
        assert_eq!(fmt_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn flags_round_trip() {
        let names = flag_names(flag::SEEN | flag::DRAFT);
        assert_eq!(names, ["\\Seen", "\\Draft"]);
        assert_eq!(flag_bits(&names), (flag::SEEN | flag::DRAFT, vec![]));
        assert_eq!(flag_bits(&["\\seen".into(), "\\Recent".into(), "\\X".into()]), (flag::SEEN, vec!["\\X".into()]));
    }

    #[test]
    fn addresses() {
        assert!(validate_address("alice@example.test").is_ok());
        for bad in ["alice", "@x", "a@", "a b@x", "a@x..y"] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }
}

/// Returns the allocator's free memory to the system now (the `postlog` binary runs on
/// mimalloc, see `main.rs`; with another global allocator this only trims mimalloc's own
/// empty heaps).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `mi_collect` has no preconditions; it frees nothing that is in use.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// The clock, in Unix seconds (0 if it is before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as an RFC 5322 date in UTC: `Fri, 27 Nov 2026 17:08:37 +0000` (the protocol
/// crate's, which DSNs use too).
pub fn rfc5322_date(secs: i64) -> String {
    postlog_protocol::smtp::dsn::rfc5322_date(secs)
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn rfc5322_dates() {
        assert_eq!(super::rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(super::rfc5322_date(1_795_799_317), "Fri, 27 Nov 2026 17:08:37 +0000");
        assert_eq!(super::rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
