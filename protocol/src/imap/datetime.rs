//! Dates of `SEARCH` (`date`: `1-Feb-1994`) and `date-time` of `APPEND` and `INTERNALDATE`
//! (`" 7-Feb-1994 22:43:04 -0800"`), as numbers (RFC 9051 section 9). No calendar crate: the
//! proleptic Gregorian calendar and the conversion to Unix time are a few lines.

use std::fmt;

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Why a date or date-time is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateError {
    /// Not `d-Mon-yyyy` (or, for a date-time, not `dd-Mon-yyyy hh:mm:ss +zzzz`).
    Syntax,
    /// The month is not one of `Jan` ... `Dec`.
    Month,
    /// The day does not exist in that month.
    Day,
    /// Hour over 23, minute over 59 or second over 60.
    Time,
    /// The zone's minutes are over 59.
    Zone,
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "the date is not written as d-Mon-yyyy (date-time: dd-Mon-yyyy hh:mm:ss +zzzz)",
            Self::Month => "the month is not one of Jan, Feb, ..., Dec",
            Self::Day => "the day does not exist in that month",
            Self::Time => "the time of day is out of range",
            Self::Zone => "the time zone is out of range",
        })
    }
}

impl std::error::Error for DateError {}

/// A calendar date.
///
/// ```text
/// date       = date-text / DQUOTE date-text DQUOTE
/// date-text  = date-day "-" date-month "-" date-year
/// date-day   = 1*2DIGIT
/// date-month = "Jan" / "Feb" / "Mar" / "Apr" / "May" / "Jun" / "Jul" / "Aug" / "Sep" / "Oct" / "Nov" / "Dec"
/// date-year  = 4DIGIT
/// ```
/// Invariant: a day that exists (1 to 28..=31 by month and leap year), year 0 to 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `y-m-d` (negative before), proleptic Gregorian.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Date {
    /// `month` 1 to 12, `day` 1 to the month's length.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, DateError> {
        if year > 9999 {
            return Err(DateError::Syntax);
        }
        if !(1..=12).contains(&month) {
            return Err(DateError::Month);
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(DateError::Day);
        }
        Ok(Self { year, month, day })
    }

    pub fn year(self) -> u16 {
        self.year
    }

    /// 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(i64::from(self.year), i64::from(self.month), i64::from(self.day))
    }

    fn month_name(self) -> &'static str {
        MONTHS[usize::from(self.month - 1)]
    }
}

/// `1-Feb-1994`: the `date-text` form.
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:04}", self.day, self.month_name(), self.year)
    }
}

/// A date, a time of day and a zone.
///
/// ```text
/// date-time      = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
/// date-day-fixed = (SP DIGIT) / 2DIGIT
/// time           = 2DIGIT ":" 2DIGIT ":" 2DIGIT
/// zone           = ("+" / "-") 4DIGIT
/// ```
/// Invariant: hour 0 to 23, minute 0 to 59, second 0 to 60 (a leap second), zone offset with
/// minutes 0 to 59 and hours 0 to 99.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    date: Date,
    hour: u8,
    minute: u8,
    second: u8,
    zone_minutes: i16,
}

impl DateTime {
    /// `zone_minutes`: the offset from UTC, `-0800` is -480.
    pub fn new(date: Date, hour: u8, minute: u8, second: u8, zone_minutes: i16) -> Result<Self, DateError> {
        if hour > 23 || minute > 59 || second > 60 {
            return Err(DateError::Time);
        }
        if zone_minutes.unsigned_abs() > 99 * 60 + 59 {
            return Err(DateError::Zone);
        }
        Ok(Self { date, hour, minute, second, zone_minutes })
    }

    /// The time at `unix_seconds` (UTC) as seen in a zone `zone_minutes` east of UTC; `None`
    /// outside years 0 to 9999 or for an out-of-range zone.
    pub fn from_unix_seconds(unix_seconds: i64, zone_minutes: i16) -> Option<Self> {
        if zone_minutes.unsigned_abs() > 99 * 60 + 59 {
            return None;
        }
        let local = unix_seconds.checked_add(i64::from(zone_minutes) * 60)?;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let date = Date::new(u16::try_from(year).ok()?, u8::try_from(month).ok()?, u8::try_from(day).ok()?).ok()?;
        // The remainder is below 86,400, so every field fits in a u8.
        let (hour, minute, second) = ((secs / 3600) as u8, (secs / 60 % 60) as u8, (secs % 60) as u8);
        Self::new(date, hour, minute, second, zone_minutes).ok()
    }

    pub fn date(self) -> Date {
        self.date
    }

    pub fn hour(self) -> u8 {
        self.hour
    }

    pub fn minute(self) -> u8 {
        self.minute
    }

    pub fn second(self) -> u8 {
        self.second
    }

    /// Offset from UTC in minutes, east positive.
    pub fn zone_minutes(self) -> i16 {
        self.zone_minutes
    }

    /// Seconds since 1970-01-01T00:00:00Z (a leap second counts as the next second).
    pub fn unix_seconds(self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }
}

/// ` 7-Feb-1994 22:43:04 -0800`: the `date-time` form without its quotes.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let zone = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.date.day,
            self.date.month_name(),
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            zone / 60,
            zone % 60
        )
    }
}

fn digits(input: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = input.get(at..at + len)?;
    field.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

fn month(input: &[u8]) -> Result<u8, DateError> {
    let name = input.get(..3).ok_or(DateError::Syntax)?;
    let index = MONTHS.iter().position(|m| m.as_bytes().eq_ignore_ascii_case(name)).ok_or(DateError::Month)?;
    // At most 12.
    Ok(index as u8 + 1)
}

/// Parses `date-text` at the start of `input`; returns the date and the octets used.
pub(crate) fn parse_date_text(input: &[u8]) -> Result<(Date, usize), DateError> {
    let day_len = match input {
        [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => 2,
        [a, ..] if a.is_ascii_digit() => 1,
        _ => return Err(DateError::Syntax),
    };
    let day = digits(input, 0, day_len).ok_or(DateError::Syntax)?;
    if input.get(day_len) != Some(&b'-') {
        return Err(DateError::Syntax);
    }
    let month = month(&input[day_len + 1..])?;
    if input.get(day_len + 4) != Some(&b'-') {
        return Err(DateError::Syntax);
    }
    let year = digits(input, day_len + 5, 4).ok_or(DateError::Syntax)?;
    // Two digits and four digits: both fit.
    let date = Date::new(year as u16, month, day as u8)?;
    Ok((date, day_len + 9))
}

/// Parses the 26 octets between the quotes of a `date-time`.
pub(crate) fn parse_date_time(input: &[u8]) -> Result<DateTime, DateError> {
    if input.len() != 26 {
        return Err(DateError::Syntax);
    }
    let day = match input[0] {
        b' ' => digits(input, 1, 1),
        _ => digits(input, 0, 2),
    }
    .ok_or(DateError::Syntax)?;
    let punctuation = [(2, b'-'), (6, b'-'), (11, b' '), (14, b':'), (17, b':'), (20, b' ')];
    if punctuation.iter().any(|&(at, c)| input[at] != c) {
        return Err(DateError::Syntax);
    }
    let month = month(&input[3..6])?;
    let year = digits(input, 7, 4).ok_or(DateError::Syntax)?;
    let hour = digits(input, 12, 2).ok_or(DateError::Syntax)?;
    let minute = digits(input, 15, 2).ok_or(DateError::Syntax)?;
    let second = digits(input, 18, 2).ok_or(DateError::Syntax)?;
    let sign: i16 = match input[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(DateError::Syntax),
    };
    let zone_hours = digits(input, 22, 2).ok_or(DateError::Syntax)?;
    let zone_mins = digits(input, 24, 2).ok_or(DateError::Syntax)?;
    if zone_mins > 59 {
        return Err(DateError::Zone);
    }
    // Every field is at most four digits: the casts cannot truncate.
    let date = Date::new(year as u16, month, day as u8)?;
    DateTime::new(date, hour as u8, minute as u8, second as u8, sign * (zone_hours * 60 + zone_mins) as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_print() {
        assert_eq!(parse_date_text(b"1-Feb-1994"), Ok((Date { year: 1994, month: 2, day: 1 }, 10)));
        assert_eq!(parse_date_text(b"01-feb-1994 rest"), Ok((Date { year: 1994, month: 2, day: 1 }, 11)));
        assert_eq!(parse_date_text(b"29-Feb-2000"), Ok((Date { year: 2000, month: 2, day: 29 }, 11)));
        assert_eq!(parse_date_text(b"29-Feb-1900"), Err(DateError::Day));
        assert_eq!(parse_date_text(b"31-Apr-2024"), Err(DateError::Day));
        assert_eq!(parse_date_text(b"0-Jan-2024"), Err(DateError::Day));
        assert_eq!(parse_date_text(b"1-Fev-2024"), Err(DateError::Month));
        assert_eq!(parse_date_text(b"1-Feb-94"), Err(DateError::Syntax));
        assert_eq!(parse_date_text(b"123-Feb-1994"), Err(DateError::Syntax));
        assert_eq!(parse_date_text(b"1-Fe"), Err(DateError::Syntax));
        assert_eq!(parse_date_text(b""), Err(DateError::Syntax));
        assert_eq!(Date::new(1994, 2, 1).map(|d| d.to_string()), Ok("1-Feb-1994".to_string()));
    }

    #[test]
    fn date_times_parse_and_print() {
        let dt = parse_date_time(b" 7-Feb-1994 22:43:04 -0800").expect("RFC 3502 example");
        assert_eq!((dt.date().day(), dt.date().month(), dt.date().year()), (7, 2, 1994));
        assert_eq!((dt.hour(), dt.minute(), dt.second(), dt.zone_minutes()), (22, 43, 4, -480));
        assert_eq!(dt.to_string(), " 7-Feb-1994 22:43:04 -0800");
        assert_eq!(dt.unix_seconds(), 760_689_784);
        assert_eq!(
            parse_date_time(b"17-Jul-1996 02:44:25 -0700").map(|d| d.to_string()).as_deref(),
            Ok("17-Jul-1996 02:44:25 -0700")
        );
        assert_eq!(parse_date_time(b"07-Feb-1994 22:43:04 +0130").map(|d| d.zone_minutes()), Ok(90));
        assert_eq!(parse_date_time(b"7-Feb-1994 22:43:04 -0800"), Err(DateError::Syntax));
        assert_eq!(parse_date_time(b" 7-Feb-1994 24:00:00 -0800"), Err(DateError::Time));
        assert_eq!(parse_date_time(b" 7-Feb-1994 23:00:00 -0860"), Err(DateError::Zone));
        assert_eq!(parse_date_time(b" 7-Feb-1994 23:00:00 0800 "), Err(DateError::Syntax));
        assert_eq!(parse_date_time(b" 7-Xyz-1994 23:00:00 +0800"), Err(DateError::Month));
    }

    #[test]
    fn unix_time_round_trips() {
        for secs in [0, 1, 86_399, 86_400, 951_782_400, 760_689_784, -1, -86_401, 4_102_444_800, 253_401_000_000] {
            for zone in [0, -480, 90, 5999, -5999] {
                let dt = DateTime::from_unix_seconds(secs, zone).expect("in range");
                assert_eq!(dt.unix_seconds(), secs, "{secs} {zone} {dt}");
                assert_eq!(dt.zone_minutes(), zone);
            }
        }
        let epoch = DateTime::from_unix_seconds(0, 0).expect("epoch");
        assert_eq!(epoch.to_string(), " 1-Jan-1970 00:00:00 +0000");
        assert_eq!(DateTime::from_unix_seconds(253_402_300_800, 0), None, "year 10000");
        assert_eq!(DateTime::from_unix_seconds(0, 6000), None);
        assert_eq!(DateTime::from_unix_seconds(i64::MAX, 60), None);
        assert_eq!(Date::new(2000, 3, 1).map(Date::days_since_epoch), Ok(11_017));
    }
}
