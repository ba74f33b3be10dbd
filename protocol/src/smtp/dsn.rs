//! Delivery status notifications (RFC 3464, RFC 3461; RFC 6533 for SMTPUTF8 mail): the
//! rules for when one is due, and the message itself, built as bytes by [`build`].
//!
//! # The message
//!
//! ```text
//!  Date, From: Mail Delivery System <MAILER-DAEMON@host>, To: <original sender>,
//!  Subject, Message-ID: <token@host>, Auto-Submitted: auto-replied, MIME-Version
//!  Content-Type: multipart/report; report-type=delivery-status      (global-delivery-status)
//!  ├─ text/plain; charset=utf-8         what happened, per recipient, the remote's own words
//!  ├─ message/delivery-status           (message/global-delivery-status)
//!  │    per-message fields  Reporting-MTA, Original-Envelope-Id, Arrival-Date
//!  │    (blank line, then per recipient)
//!  │                        Original-Recipient, Final-Recipient, Action, Status,
//!  │                        Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until
//!  └─ message/rfc822                    the original, for failures unless RET=HDRS
//!     or text/rfc822-headers            its header: RET=HDRS, delays, successes, or too big
//!     (message/global, message/global-headers for SMTPUTF8 mail)
//! ```
//! The envelope of the notification is the caller's: the null reverse path `<>` (RFC 5321
//! section 4.5.5), sent to the original sender, with `BODY=8BITMIME` when
//! [`Notification::body`] says so and `SMTPUTF8` when [`Notification::smtputf8`] does.
//!
//! Every line ends in CRLF and is at most 998 octets: fields are folded, the text is wrapped,
//! the original is returned only if its own lines are within the limit (otherwise its header
//! alone, or nothing). The ASCII forms (RFC 3464) escape non-ASCII text of the remote as
//! `\x{HEX}` (RFC 6533's notation) and carry non-ASCII addresses as `utf-8` addresses in
//! `utf-8-addr-xtext`; the text part is then quoted-printable. The global forms (RFC 6533,
//! chosen when the original needs SMTPUTF8) carry UTF-8 as it is, with `8bit` parts.
//!
//! No clock and no randomness: the caller passes the times (seconds since the Unix epoch,
//! written in UTC) and a token unique to this notification (for its Message-ID; the MIME
//! boundary is derived from it).
//!
//! # When a notification is due
//!
//! [`notify_requested`]: per recipient, from its `NOTIFY` parameter (RFC 3461 section 4.1):
//! `NEVER`, none; without the parameter, only failures (the default RFC 3461 allows; a delay
//! report is sent only when asked for). Success covers `delivered`, `relayed` and `expanded`.
//!
//! [`suppression`]: per message, never to
//! - the null reverse path (RFC 5321 section 4.5.5, RFC 3461 section 6.2): every bounce,
//!   ours included, has it, so bounces never bounce;
//! - a message that is itself a delivery report (`multipart/report` with `report-type`
//!   `delivery-status` or `global-delivery-status`) that a broken system sent with a sender:
//!   reporting on a report is how loops start;
//! - a message with `Auto-Submitted: auto-replied` (RFC 3834): an automatic reply (vacation
//!   notice, our own reports) answered by another automaton ping-pongs.
//!
//! Deliberately still sent for `Auto-Submitted: auto-generated` (and `auto-notified`): mail
//! from cron jobs, monitoring and mailing lists has a person or a bounce processor behind its
//! sender who needs to know (RFC 5321 section 6.1 asks for a notification whenever the
//! reverse path is not null). Those senders do not answer our report automatically (it has
//! the null sender and `Auto-Submitted: auto-replied`), so no loop can form.

use std::fmt::Write as _;

use super::command::{BodyType, Mailbox, Notify, Ret, decode_utf8_addr, decode_xtext, encode_utf8_addr_xtext};
use super::reply::Reply;

/// The longest line allowed in a message (RFC 5322 section 2.1.1), CRLF excluded.
pub const MAX_LINE_OCTETS: usize = 998;

/// What became of the message for one recipient (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up: the message will not be delivered.
    Failed,
    /// Not delivered yet; still being tried.
    Delayed,
    Delivered,
    /// Passed to a system that does not report success (a server without DSN).
    Relayed,
    /// Delivered to an alias and forwarded to several addresses.
    Expanded,
}

impl Action {
    /// As written in the `Action:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// One recipient's part of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address delivery was tried to (`Final-Recipient`).
    pub recipient: Mailbox,
    /// The `ORCPT` parameter as received (`addr-type;xtext`), if there was one.
    pub orcpt: Option<String>,
    pub action: Action,
    /// The RFC 3463 status code, e.g. `5.1.1`.
    pub status: String,
    /// The remote server that answered (`Remote-MTA: dns; name`), if one did.
    pub remote_mta: Option<String>,
    /// The remote server's reply (`Diagnostic-Code: smtp; ...`), quoted in the text too.
    pub remote_reply: Option<Reply>,
    /// Our own explanation when no remote reply tells the story (too big for the server, no
    /// mail server for the domain, connection timed out ...). Text part only.
    pub reason: Option<String>,
    /// Seconds since the Unix epoch.
    pub last_attempt: Option<i64>,
    /// `delayed` only: when the system gives up (seconds since the Unix epoch).
    pub will_retry_until: Option<i64>,
}

/// Everything a report says besides the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Our host name (`Reporting-MTA: dns; name`, the Message-ID's domain).
    pub reporting_mta: String,
    /// The address in the `From:` field, e.g. `MAILER-DAEMON@mx.example.org`.
    pub from_address: String,
    /// The original envelope sender: the report goes to it (`To:`).
    pub sender: Mailbox,
    /// The original `ENVID` as received (xtext).
    pub envid: Option<String>,
    /// The original `RET`.
    pub ret: Option<Ret>,
    /// The original needs SMTPUTF8 (it was received with it): global forms (RFC 6533).
    pub smtputf8: bool,
    /// When the original arrived (seconds since the Unix epoch).
    pub arrival_date: i64,
    /// Now (seconds since the Unix epoch): the report's `Date:`.
    pub date: i64,
    /// A token unique to this report (the Message-ID is `<token@reporting_mta>`).
    pub message_id: String,
    /// The original is returned whole only up to this size; beyond, its header only.
    pub max_original_bytes: usize,
    /// At least one.
    pub recipients: Vec<RecipientReport>,
}

/// A report, ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The whole message: header and body, CRLF line ends.
    pub message: Vec<u8>,
    /// `EightBitMime` when a part is 8-bit (send with `BODY=8BITMIME`).
    pub body: BodyType,
    /// The report's own header is not ASCII (a non-ASCII sender): send with `SMTPUTF8`.
    pub smtputf8: bool,
    /// How much of the original it returns.
    pub returned: Returned,
}

/// The third part of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The whole original (`message/rfc822`, `message/global`).
    Message,
    /// Its header (`text/rfc822-headers`, `message/global-headers`).
    Headers,
    /// Nothing: even the header has lines longer than 998 octets or is too big.
    Nothing,
}

/// Why no report is sent for a message, whatever its recipients asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The reverse path is `<>`.
    NullSender,
    /// The message is a delivery report itself.
    DeliveryReport,
    /// `Auto-Submitted: auto-replied`.
    AutoReplied,
}

/// Whether a recipient's `NOTIFY` asks for a report of this action (see the module
/// documentation: without `NOTIFY`, failures only).
pub fn notify_requested(notify: Option<&Notify>, action: Action) -> bool {
    let Some(n) = notify else { return action == Action::Failed };
    if n.never {
        return false;
    }
    match action {
        Action::Failed => n.failure,
        Action::Delayed => n.delay,
        Action::Delivered | Action::Relayed | Action::Expanded => n.success,
    }
}

/// Why no report may go out for this message at all, if so. `header` is the original's
/// header block (or the whole message: reading stops at the first empty line).
pub fn suppression(sender: Option<&Mailbox>, header: &[u8]) -> Option<Suppression> {
    if sender.is_none() {
        return Some(Suppression::NullSender);
    }
    for (name, value) in header_fields(header) {
        let value = value.to_ascii_lowercase();
        if name.eq_ignore_ascii_case("Auto-Submitted") {
            let keyword = value.split([';', '(', ' ', '\t']).find(|w| !w.is_empty()).unwrap_or("");
            if keyword == "auto-replied" {
                return Some(Suppression::AutoReplied);
            }
        } else if name.eq_ignore_ascii_case("Content-Type") {
            let compact: String = value.chars().filter(|c| !c.is_whitespace() && *c != '"').collect();
            let is_report = compact.starts_with("multipart/report")
                && compact
                    .split(';')
                    .any(|p| p == "report-type=delivery-status" || p == "report-type=global-delivery-status");
            if is_report {
                return Some(Suppression::DeliveryReport);
            }
        }
    }
    None
}

/// [`suppression`] and [`notify_requested`] together: whether this recipient's outcome
/// gets a report.
pub fn should_report(sender: Option<&Mailbox>, notify: Option<&Notify>, action: Action, header: &[u8]) -> bool {
    notify_requested(notify, action) && suppression(sender, header).is_none()
}

/// Builds the report for `dsn` about the message `original` (as stored: CRLF line ends).
///
/// Panics if `dsn.recipients` is empty (a caller bug).
pub fn build(dsn: &Dsn, original: &[u8]) -> Notification {
    assert!(!dsn.recipients.is_empty(), "a delivery report about no recipient");
    let global = dsn.smtputf8;
    let failed = dsn.recipients.iter().any(|r| r.action == Action::Failed);
    let delayed = dsn.recipients.iter().any(|r| r.action == Action::Delayed);

    let text = human_text(dsn, failed, delayed);
    let (text_encoding, text_body) = if text.is_ascii() {
        ("7bit", text.into_bytes())
    } else if global {
        ("8bit", text.into_bytes())
    } else {
        ("quoted-printable", quoted_printable(text.as_bytes()))
    };
    let status = delivery_status(dsn, global);
    let (returned, included) = returned_part(dsn, original, failed);

    let mut eight_bit = text_encoding == "8bit" || !status.is_ascii();
    let mut parts: Vec<(String, &[u8])> = Vec::with_capacity(3);
    parts.push((
        format!(
            "Content-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: {text_encoding}\r\n"
        ),
        &text_body,
    ));
    let (status_type, status_encoding) = match (global, status.is_ascii()) {
        (true, true) => ("message/global-delivery-status", "7bit"),
        (true, false) => ("message/global-delivery-status", "8bit"),
        (false, _) => ("message/delivery-status", "7bit"),
    };
    parts.push((
        format!(
            "Content-Description: Delivery report\r\nContent-Type: {status_type}\r\n\
             Content-Transfer-Encoding: {status_encoding}\r\n"
        ),
        status.as_bytes(),
    ));
    if let Some(included) = included {
        let (description, content_type) = match (returned, global) {
            (Returned::Message, false) => ("Undelivered Message", "message/rfc822"),
            (Returned::Message, true) => ("Undelivered Message", "message/global"),
            (_, false) => ("Undelivered Message Headers", "text/rfc822-headers"),
            (_, true) => ("Undelivered Message Headers", "message/global-headers"),
        };
        let encoding = if included.is_ascii() { "7bit" } else { "8bit" };
        eight_bit |= encoding == "8bit";
        parts.push((
            format!(
                "Content-Description: {description}\r\nContent-Type: {content_type}\r\n\
                 Content-Transfer-Encoding: {encoding}\r\n"
            ),
            included,
        ));
    }

    let boundary = boundary(&dsn.message_id, &parts);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let report_type = if global { "global-delivery-status" } else { "delivery-status" };
    let mut out = Vec::with_capacity(original.len().min(dsn.max_original_bytes) + 4096);
    let mut header = String::new();
    let _ = write!(
        header,
        "Date: {}\r\nFrom: Mail Delivery System <{}>\r\nTo: <{}>\r\nSubject: {subject}\r\n\
         Message-ID: <{}@{}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type={report_type};\r\n\tboundary=\"{boundary}\"\r\n",
        rfc5322_date(dsn.date),
        dsn.from_address,
        dsn.sender,
        id_token(&dsn.message_id),
        dsn.reporting_mta,
    );
    if eight_bit {
        header.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(b"\r\nThis is a MIME-encapsulated message: a delivery status notification.\r\n");
    for (part_header, body) in &parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n{part_header}\r\n").as_bytes());
        out.extend_from_slice(body);
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    debug_assert!(lines_within_limit(&out), "a line over {MAX_LINE_OCTETS} octets");
    Notification {
        message: out,
        body: if eight_bit { BodyType::EightBitMime } else { BodyType::SevenBit },
        smtputf8: !header.is_ascii(),
        returned,
    }
}

/// `Thu, 27 Nov 2026 10:00:00 +0000` (RFC 5322 section 3.3), in UTC.
pub fn rfc5322_date(unix_seconds: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar:
/// count in 400-year eras of 146,097 days, with years starting in March so that the leap
/// day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The text part: what happened, in words, with the remote servers' replies.
fn human_text(dsn: &Dsn, failed: bool, delayed: bool) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "This is the mail system at {}.\n", dsn.reporting_mta);
    let intro = if failed {
        "Your message could not be delivered to one or more of its recipients. The reasons are \
         below; the message, or its header, is attached."
    } else if delayed {
        "Your message has not been delivered to one or more of its recipients yet. The mail \
         system keeps trying; you do not need to send it again. The reasons for the delay are below."
    } else {
        "Your message was delivered to the recipients below; you asked to be told."
    };
    wrap_into(&mut t, intro, "");
    t.push('\n');
    wrap_into(&mut t, "For help, write to the postmaster of this mail system and include this report.", "");
    t.push('\n');
    for r in &dsn.recipients {
        let what = match r.action {
            Action::Failed => "delivery failed".to_string(),
            Action::Delayed => match r.will_retry_until {
                Some(until) => format!("delivery delayed; trying until {}", rfc5322_date(until)),
                None => "delivery delayed; still trying".to_string(),
            },
            Action::Delivered => "delivered".to_string(),
            Action::Relayed => "passed on to a mail system that does not send delivery reports".to_string(),
            Action::Expanded => "delivered, and forwarded to further addresses".to_string(),
        };
        wrap_into(&mut t, &format!("<{}>: {what} (status {}).", r.recipient, printable(&r.status)), "");
        if let Some(reason) = &r.reason {
            wrap_into(&mut t, &printable(reason), "    ");
        }
        if let Some(reply) = &r.remote_reply {
            let server = r
                .remote_mta
                .as_deref()
                .map_or_else(|| "The remote server".to_string(), |m| format!("The server {}", printable(m)));
            wrap_into(&mut t, &format!("{server} said:"), "    ");
            let status = if reply.status.is_empty() { String::new() } else { format!(" {}", reply.status) };
            for line in &reply.lines {
                wrap_into(&mut t, &format!("{}{status} {}", reply.code, printable(line)), "        ");
            }
        }
        t.push('\n');
    }
    t.replace('\n', "\r\n")
}

/// The `message/delivery-status` body (RFC 3464 section 2.1): per-message fields, then a
/// group of fields per recipient, each group after an empty line.
fn delivery_status(dsn: &Dsn, global: bool) -> String {
    let mut s = String::new();
    field(&mut s, "Reporting-MTA", &format!("dns; {}", text_value(&dsn.reporting_mta, global)));
    if let Some(envid) = &dsn.envid {
        // RFC 3461 section 6.3: the decoded ENVID; kept in xtext if it decodes to something
        // that is not printable ASCII.
        let decoded = decode_xtext(envid).filter(|d| d.iter().all(|b| (0x20..0x7f).contains(b)));
        let value = decoded.map_or_else(|| envid.clone(), |d| String::from_utf8_lossy(&d).into_owned());
        field(&mut s, "Original-Envelope-Id", &value);
    }
    field(&mut s, "Arrival-Date", &rfc5322_date(dsn.arrival_date));
    for r in &dsn.recipients {
        s.push_str("\r\n");
        if let Some(orcpt) = r.orcpt.as_deref().and_then(|o| original_recipient(o, global)) {
            field(&mut s, "Original-Recipient", &orcpt);
        }
        field(&mut s, "Final-Recipient", &address_field(&r.recipient.to_string(), global));
        field(&mut s, "Action", r.action.as_str());
        field(&mut s, "Status", &printable(&r.status));
        if let Some(mta) = &r.remote_mta {
            field(&mut s, "Remote-MTA", &format!("dns; {}", text_value(mta, global)));
        }
        if let Some(reply) = &r.remote_reply {
            let mut diagnostic = format!("smtp; {}", reply.code);
            if !reply.status.is_empty() {
                let _ = write!(diagnostic, " {}", reply.status);
            }
            for line in &reply.lines {
                diagnostic.push(' ');
                diagnostic.push_str(&text_value(line, global));
            }
            field(&mut s, "Diagnostic-Code", diagnostic.trim_end());
        }
        if let Some(at) = r.last_attempt {
            field(&mut s, "Last-Attempt-Date", &rfc5322_date(at));
        }
        // RFC 3464 section 2.3.9: only in "delayed" reports.
        if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            field(&mut s, "Will-Retry-Until", &rfc5322_date(until));
        }
    }
    s
}

/// `rfc822; addr` for an ASCII address; `utf-8; addr` otherwise, with the address raw in
/// the global form and in `utf-8-addr-xtext` in the ASCII one (RFC 6533 section 3).
fn address_field(address: &str, global: bool) -> String {
    let address = printable(address);
    if address.is_ascii() {
        format!("rfc822; {address}")
    } else if global {
        format!("utf-8; {address}")
    } else {
        format!("utf-8; {}", encode_utf8_addr_xtext(&address))
    }
}

/// The `Original-Recipient` value from an ORCPT parameter: its type and the decoded address
/// (RFC 3461 section 6.3). `None` when it does not decode.
fn original_recipient(orcpt: &str, global: bool) -> Option<String> {
    let (kind, encoded) = orcpt.split_once(';')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    if kind.eq_ignore_ascii_case("utf-8") {
        let address = decode_utf8_addr(encoded)?;
        return Some(if global {
            format!("utf-8; {address}")
        } else {
            format!("utf-8; {}", encode_utf8_addr_xtext(&address))
        });
    }
    let address = decode_xtext(encoded)?;
    let address = String::from_utf8(address).ok()?;
    if address.chars().any(char::is_control) {
        return None;
    }
    if address.is_ascii() { Some(format!("{kind}; {address}")) } else { Some(address_field(&address, global)) }
}

/// Text for a field: control characters made spaces; in the ASCII form non-ASCII characters
/// as `\x{HEX}`.
fn text_value(s: &str, global: bool) -> String {
    let s = printable(s);
    if global || s.is_ascii() {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
    }
    out
}

/// Control characters (CR and LF included) become spaces: text from elsewhere cannot add
/// lines or fields.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Appends `Name: value` CRLF, folded at spaces to lines of about 78 octets; a word too long
/// for one line is cut (unfolding then adds a space inside it: the price of the line limit).
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut line_len = name.len() + 1;
    // Folding goes before a word, never right after the field name.
    let mut may_fold = false;
    for mut word in value.split(' ').filter(|w| !w.is_empty()) {
        loop {
            if may_fold && line_len + 1 + word.len() > 78 {
                out.push_str("\r\n");
                line_len = 0;
            }
            let room = MAX_LINE_OCTETS.saturating_sub(line_len + 1);
            let cut = if word.len() <= room { word.len() } else { floor_char_boundary(word, room) };
            out.push(' ');
            out.push_str(&word[..cut]);
            line_len += 1 + cut;
            may_fold = true;
            word = &word[cut..];
            if word.is_empty() {
                break;
            }
        }
    }
    out.push_str("\r\n");
}

/// Appends `text` wrapped at 76 columns, each line starting with `indent`, then LF.
fn wrap_into(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line.len() > indent.len() && line.len() + 1 + word.len() > 76 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        let mut word = word;
        while line.len() + word.len() > 900 {
            let cut = floor_char_boundary(word, 900 - line.len());
            line.push_str(&word[..cut]);
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
            word = &word[cut..];
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The largest index ≤ `at` that is a character boundary of `s` (and > 0 when `s` is not
/// empty and `at` > 0, so that cutting always progresses).
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    if i == 0 { s.chars().next().map_or(0, char::len_utf8) } else { i }
}

/// Quoted-printable (RFC 2045 section 6.7) for text with CRLF line ends: lines of at most 76
/// characters with soft breaks; `=`, non-ASCII, and spaces before a line end encoded.
fn quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 2);
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let plain = (b == b' ' || b == b'\t') && !last || (b'!'..=b'~').contains(&b) && b != b'=';
            let width = if plain { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if plain {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
            col += width;
        }
    }
    out
}

/// What of the original to return, and those octets.
fn returned_part<'a>(dsn: &Dsn, original: &'a [u8], failed: bool) -> (Returned, Option<&'a [u8]>) {
    let whole_wanted = failed && dsn.ret != Some(Ret::Headers);
    let returnable =
        |part: &[u8]| part.len() <= dsn.max_original_bytes && !part.contains(&0) && lines_within_limit(part);
    if whole_wanted && returnable(original) {
        return (Returned::Message, Some(original));
    }
    let header = header_block(original);
    if !header.is_empty() && returnable(header) {
        return (Returned::Headers, Some(header));
    }
    (Returned::Nothing, None)
}

/// The header block of a message: up to and including the CRLF before the empty line.
fn header_block(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// Every line ends in CRLF (or is the last, unterminated) and has at most 998 octets.
fn lines_within_limit(bytes: &[u8]) -> bool {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => {
                if i == 0 || bytes[i - 1] != b'\r' || i - 1 - start > MAX_LINE_OCTETS {
                    return false;
                }
                start = i + 1;
            }
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => return false,
            _ => {}
        }
    }
    bytes.len() - start <= MAX_LINE_OCTETS
}

/// The header fields of a message's header block, unfolded: (name, value).
fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

/// The token as the left side of a Message-ID: atext and dots only.
fn id_token(token: &str) -> String {
    let t: String =
        token.chars().filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(*c)).take(64).collect();
    if t.is_empty() { "dsn".to_string() } else { t.trim_matches('.').replace("..", ".") }
}

/// A MIME boundary that occurs in no part: derived from the token, with a counter if needed.
fn boundary(token: &str, parts: &[(String, &[u8])]) -> String {
    let base: String = token.chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect();
    (0u32..)
        .map(|n| format!("=_postlog_dsn_{base}_{n}"))
        .find(|b| {
            let marker = format!("--{b}");
            parts.iter().all(|(h, body)| !h.contains(&marker) && !contains(body, marker.as_bytes()))
        })
        .expect("some boundary is free")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
