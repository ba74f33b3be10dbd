//! Reports are parsed back with mail-parser: structure, content types, the delivery-status
//! fields per recipient, the returned original, the SMTPUTF8 forms, the line limit.

use mail_parser::{MessageParser, MimeHeaders};

use super::*;

const ORIGINAL: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@example.net\r\nSubject: lunch?\r\n\
    Message-ID: <orig-1@example.test>\r\n\r\nAre you free at noon?\r\n.\r\n";

fn mailbox(address: &str) -> Mailbox {
    let (local, domain) = address.rsplit_once('@').expect("an address");
    Mailbox { local: local.into(), domain: domain.into() }
}

fn recipient(address: &str, action: Action, status: &str) -> RecipientReport {
    RecipientReport {
        recipient: mailbox(address),
        orcpt: None,
        action,
        status: status.into(),
        remote_mta: None,
        remote_reply: None,
        reason: None,
        last_attempt: Some(1_795_772_000),
        will_retry_until: None,
    }
}

fn dsn(recipients: Vec<RecipientReport>) -> Dsn {
    Dsn {
        reporting_mta: "mx.example.test".into(),
        from_address: "MAILER-DAEMON@mx.example.test".into(),
        sender: mailbox("alice@example.test"),
        envid: None,
        ret: None,
        smtputf8: false,
        arrival_date: 1_795_770_000,
        date: 1_795_772_096,
        message_id: "20261127093456.AB12CD".into(),
        max_original_bytes: 1 << 20,
        recipients,
    }
}

fn failed_bob() -> RecipientReport {
    RecipientReport {
        orcpt: Some("rfc822;Bob+2Bx@example.net".into()),
        remote_mta: Some("mx1.example.net".into()),
        remote_reply: Some(Reply {
            code: 550,
            status: "5.1.1".into(),
            lines: vec!["<bob@example.net>: Recipient address rejected:".into(), "User unknown".into()],
        }),
        ..recipient("bob@example.net", Action::Failed, "5.1.1")
    }
}

/// The delivery-status body split into field groups: per-message first, then per recipient.
/// Folded lines are unfolded.
fn field_groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    for block in body.split("\r\n\r\n").filter(|b| !b.trim().is_empty()) {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.split("\r\n").filter(|l| !l.is_empty()) {
            if line.starts_with(' ') {
                fields.last_mut().expect("a field before its continuation").1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').expect("name: value");
                fields.push((name.to_string(), value.trim().to_string()));
            }
        }
        groups.push(fields);
    }
    groups
}

fn get<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Every line ends in CRLF and has at most 998 octets.
fn assert_lines_ok(message: &[u8]) {
    assert!(message.ends_with(b"\r\n"));
    for line in message.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_LINE_OCTETS + 1, "a line of {} octets", line.len());
        assert!(line.is_empty() || line.ends_with(b"\r") || line == message.rsplit(|&b| b == b'\n').next().unwrap());
        assert!(!line[..line.len().saturating_sub(1)].contains(&b'\r'), "a bare CR");
    }
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    let ct = part.content_type().expect("a content type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

#[test]
fn failure_report_structure_fields_and_original() {
    let report = dsn(vec![
        failed_bob(),
        RecipientReport {
            reason: Some("The message is bigger than the server accepts (10240 octets).".into()),
            ..recipient("carol@example.net", Action::Failed, "5.3.4")
        },
    ]);
    let n = build(&report, ORIGINAL);
    assert_eq!((n.body, n.smtputf8, n.returned), (BodyType::SevenBit, false, Returned::Message));
    assert_lines_ok(&n.message);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");

    assert_eq!(m.subject(), Some("Undelivered Mail Returned to Sender"));
    let from = m.from().and_then(|a| a.first()).expect("From");
    assert_eq!((from.name(), from.address()), (Some("Mail Delivery System"), Some("MAILER-DAEMON@mx.example.test")));
    assert_eq!(m.to().and_then(|a| a.first()).and_then(|a| a.address()), Some("alice@example.test"));
    assert_eq!(m.message_id(), Some("20261127093456.AB12CD@mx.example.test"));
    assert_eq!(m.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(m.date().map(|d| d.to_timestamp()), Some(1_795_772_096));
    let ct = m.content_type().expect("a content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    assert_eq!(parts.len(), 3);
    let (text, status, original) =
        (&m.parts[parts[0] as usize], &m.parts[parts[1] as usize], &m.parts[parts[2] as usize]);
    assert_eq!(content_type(text), "text/plain");
    assert_eq!(content_type(status), "message/delivery-status");
    assert_eq!(content_type(original), "message/rfc822");

    let words = text.text_contents().expect("text");
    assert!(words.contains("could not be delivered"), "{words}");
    assert!(words.contains("<bob@example.net>: delivery failed (status 5.1.1)."), "{words}");
    assert!(words.contains("The server mx1.example.net said:"), "{words}");
    assert!(words.contains("550 5.1.1 <bob@example.net>: Recipient address rejected:"), "{words}");
    assert!(words.contains("550 5.1.1 User unknown"), "{words}");
    assert!(words.contains("bigger than the server accepts"), "{words}");

    let groups = field_groups(status.text_contents().expect("ASCII fields"));
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(
        groups[0],
        [
            ("Reporting-MTA".to_string(), "dns; mx.example.test".to_string()),
            ("Arrival-Date".to_string(), "Fri, 27 Nov 2026 09:00:00 +0000".to_string()),
        ]
    );
    let bob = &groups[1];
    let names: Vec<&str> = bob.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );
    assert_eq!(get(bob, "Original-Recipient"), Some("rfc822; Bob+x@example.net"));
    assert_eq!(get(bob, "Final-Recipient"), Some("rfc822; bob@example.net"));
    assert_eq!(get(bob, "Action"), Some("failed"));
    assert_eq!(get(bob, "Status"), Some("5.1.1"));
    assert_eq!(get(bob, "Remote-MTA"), Some("dns; mx1.example.net"));
    assert_eq!(
        get(bob, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown")
    );
    assert_eq!(get(bob, "Last-Attempt-Date"), Some("Fri, 27 Nov 2026 09:33:20 +0000"));
    let carol = &groups[2];
    assert_eq!(get(carol, "Status"), Some("5.3.4"));
    assert_eq!(get(carol, "Remote-MTA"), None);
    assert_eq!(get(carol, "Diagnostic-Code"), None);
    assert_eq!(get(carol, "Will-Retry-Until"), None);

    let returned = original.message().expect("the original, parsed");
    assert_eq!(returned.subject(), Some("lunch?"));
    assert_eq!(returned.message_id(), Some("orig-1@example.test"));
    assert_eq!(returned.raw_message(), ORIGINAL);
}

#[test]
fn headers_only_for_ret_hdrs_a_big_original_delays_and_successes() {
    let header = b"From: Alice <alice@example.test>\r\nTo: bob@example.net\r\nSubject: lunch?\r\n\
        Message-ID: <orig-1@example.test>\r\n";
    let mut hdrs = dsn(vec![failed_bob()]);
    hdrs.ret = Some(Ret::Headers);
    let mut big = dsn(vec![failed_bob()]);
    big.max_original_bytes = ORIGINAL.len() - 1;
    let mut delayed = dsn(vec![RecipientReport {
        will_retry_until: Some(1_796_200_000),
        remote_mta: Some("mx1.example.net".into()),
        remote_reply: Some(Reply::new(451, "4.7.1", "greylisted")),
        ..recipient("bob@example.net", Action::Delayed, "4.7.1")
    }]);
    delayed.recipients[0].orcpt = Some("rfc822;bob@example.net".into());
    let delivered = dsn(vec![
        recipient("bob@example.net", Action::Delivered, "2.0.0"),
        recipient("carol@example.net", Action::Relayed, "2.0.0"),
    ]);
    for (report, subject) in [
        (&hdrs, "Undelivered Mail Returned to Sender"),
        (&big, "Undelivered Mail Returned to Sender"),
        (&delayed, "Delayed Mail (still being retried)"),
        (&delivered, "Successful Mail Delivery Report"),
    ] {
        let n = build(report, ORIGINAL);
        assert_eq!(n.returned, Returned::Headers, "{subject}");
        assert_lines_ok(&n.message);
        let m = MessageParser::default().parse(&n.message).expect("the report parses");
        assert_eq!(m.subject(), Some(subject));
        let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
        let returned = &m.parts[parts[2] as usize];
        assert_eq!(content_type(returned), "text/rfc822-headers");
        assert_eq!(returned.contents(), header);
    }
    let n = build(&delayed, ORIGINAL);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    let groups = field_groups(m.parts[parts[1] as usize].text_contents().expect("fields"));
    assert_eq!(get(&groups[1], "Action"), Some("delayed"));
    assert_eq!(get(&groups[1], "Will-Retry-Until"), Some(rfc5322_date(1_796_200_000).as_str()));
    assert_eq!(get(&groups[1], "Original-Recipient"), Some("rfc822; bob@example.net"));
    let words = m.parts[parts[0] as usize].text_contents().expect("text");
    assert!(words.contains("not been delivered"), "{words}");
    assert!(words.contains("trying until"), "{words}");
    // Will-Retry-Until only in delay reports, even when set.
    let mut failed = dsn(vec![RecipientReport { will_retry_until: Some(1), ..failed_bob() }]);
    failed.ret = Some(Ret::Full);
    let n = build(&failed, ORIGINAL);
    assert!(!String::from_utf8_lossy(&n.message).contains("Will-Retry-Until"));
    let n = build(&delivered, ORIGINAL);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    let groups = field_groups(m.parts[parts[1] as usize].text_contents().expect("fields"));
    let actions: Vec<_> = groups[1..].iter().map(|g| get(g, "Action")).collect();
    assert_eq!(actions, [Some("delivered"), Some("relayed")]);
}

#[test]
fn envelope_id_is_decoded() {
    let mut report = dsn(vec![failed_bob()]);
    report.envid = Some("QQ+2B314+3D".into());
    let n = build(&report, ORIGINAL);
    let text = String::from_utf8_lossy(&n.message);
    assert!(text.contains("Original-Envelope-Id: QQ+314=\r\n"), "{text}");
    // Not printable once decoded: kept in xtext.
    report.envid = Some("A+0AB".into());
    let text = String::from_utf8_lossy(&build(&report, ORIGINAL).message).into_owned();
    assert!(text.contains("Original-Envelope-Id: A+0AB\r\n"), "{text}");
}

#[test]
fn smtputf8_reports_use_the_global_forms() {
    let original = "From: José <josé@bücher.test>\r\nSubject: ¿comida?\r\n\r\n¡Hola!\r\n".as_bytes();
    let mut report = dsn(vec![RecipientReport {
        orcpt: Some("utf-8;søren@example.net".into()),
        remote_mta: Some("mx.example.net".into()),
        remote_reply: Some(Reply::new(550, "5.1.1", "søren: no such user")),
        ..recipient("søren@example.net", Action::Failed, "5.1.1")
    }]);
    report.smtputf8 = true;
    report.sender = mailbox("josé@bücher.test");
    let n = build(&report, original);
    assert_eq!((n.body, n.smtputf8, n.returned), (BodyType::EightBitMime, true, Returned::Message));
    assert_lines_ok(&n.message);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    assert_eq!(m.content_type().and_then(|c| c.attribute("report-type")), Some("global-delivery-status"));
    assert_eq!(m.to().and_then(|a| a.first()).and_then(|a| a.address()), Some("josé@bücher.test"));
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    let (text, status, returned) =
        (&m.parts[parts[0] as usize], &m.parts[parts[1] as usize], &m.parts[parts[2] as usize]);
    assert_eq!(content_type(status), "message/global-delivery-status");
    assert_eq!(content_type(returned), "message/global");
    assert!(text.text_contents().expect("text").contains("<søren@example.net>: delivery failed"));
    let groups = field_groups(std::str::from_utf8(status.contents()).expect("UTF-8 fields"));
    assert_eq!(get(&groups[1], "Final-Recipient"), Some("utf-8; søren@example.net"));
    assert_eq!(get(&groups[1], "Original-Recipient"), Some("utf-8; søren@example.net"));
    assert_eq!(get(&groups[1], "Diagnostic-Code"), Some("smtp; 550 5.1.1 søren: no such user"));
    assert_eq!(returned.message().expect("the original").subject(), Some("¿comida?"));

    // Headers only: message/global-headers.
    report.ret = Some(Ret::Headers);
    let n = build(&report, original);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    assert_eq!(content_type(&m.parts[parts[2] as usize]), "message/global-headers");
    assert_eq!(n.returned, Returned::Headers);
}

#[test]
fn ascii_reports_escape_what_is_not_ascii() {
    // A UTF-8 recipient of an ASCII message (its address was rewritten, say) and a remote
    // answering in UTF-8.
    let report = dsn(vec![RecipientReport {
        orcpt: Some("utf-8;søren@example.net".into()),
        remote_reply: Some(Reply::new(550, "5.1.1", "søren: unbekannt")),
        ..recipient("søren@example.net", Action::Failed, "5.1.1")
    }]);
    let n = build(&report, ORIGINAL);
    assert_eq!((n.body, n.smtputf8), (BodyType::SevenBit, false));
    assert!(n.message.is_ascii());
    assert_lines_ok(&n.message);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    let text = &m.parts[parts[0] as usize];
    assert_eq!(text.content_transfer_encoding(), Some("quoted-printable"));
    // mail-parser decodes the quoted-printable text back to the UTF-8 words.
    assert!(text.text_contents().expect("text").contains("550 5.1.1 søren: unbekannt"));
    let groups = field_groups(m.parts[parts[1] as usize].text_contents().expect("fields"));
    assert_eq!(get(&groups[1], "Final-Recipient"), Some("utf-8; s\\x{F8}ren@example.net"));
    assert_eq!(get(&groups[1], "Original-Recipient"), Some("utf-8; s\\x{F8}ren@example.net"));
    assert_eq!(get(&groups[1], "Diagnostic-Code"), Some("smtp; 550 5.1.1 s\\x{F8}ren: unbekannt"));
    // An 8-bit original makes an 8-bit report.
    let eight_bit = "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes();
    let n = build(&dsn(vec![failed_bob()]), eight_bit);
    assert_eq!((n.body, n.smtputf8, n.returned), (BodyType::EightBitMime, false, Returned::Message));
    assert!(String::from_utf8_lossy(&n.message).contains("Content-Transfer-Encoding: 8bit\r\n"));
}

#[test]
fn lines_stay_within_998_octets_whatever_the_input() {
    let long_word = "x".repeat(5000);
    let long_text = vec!["word".repeat(3); 400].join(" ");
    let report = dsn(vec![RecipientReport {
        remote_mta: Some(format!("{long_word}.example.net")),
        remote_reply: Some(Reply {
            code: 550,
            status: "5.7.1".into(),
            lines: vec![long_word.clone(), long_text.clone(), "tab\tand\r\nCRLF\u{0} inside".into()],
        }),
        reason: Some(format!("{long_text} ü {long_word}")),
        orcpt: Some(format!("rfc822;{long_word}@example.net")),
        ..recipient(&format!("{}@example.net", "ü".repeat(300)), Action::Failed, "5.7.1")
    }]);
    // An original with a line over the limit is not returned whole; its header is.
    let mut original = b"Subject: long\r\n\r\n".to_vec();
    original.extend_from_slice(long_word.as_bytes());
    original.extend_from_slice(b"\r\n");
    let n = build(&report, &original);
    assert_eq!(n.returned, Returned::Headers);
    assert_lines_ok(&n.message);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    assert_eq!(parts.len(), 3);
    let groups = field_groups(m.parts[parts[1] as usize].text_contents().expect("fields"));
    let diagnostic = get(&groups[1], "Diagnostic-Code").expect("a diagnostic");
    assert!(diagnostic.ends_with("tab and CRLF inside"), "{diagnostic}");
    // A header line over the limit: nothing returned.
    let mut original = b"Subject: ".to_vec();
    original.extend_from_slice(long_word.as_bytes());
    original.extend_from_slice(b"\r\n\r\nbody\r\n");
    let n = build(&report, &original);
    assert_eq!(n.returned, Returned::Nothing);
    assert_lines_ok(&n.message);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    assert_eq!(m.parts[0].sub_parts().expect("a multipart").len(), 2);
}

#[test]
fn boundary_avoids_the_content() {
    let token = "20261127093456.AB12CD";
    let mut original = ORIGINAL.to_vec();
    original.extend_from_slice(format!("--=_postlog_dsn_{}_0\r\n", token.replace('.', "")).as_bytes());
    let n = build(&dsn(vec![failed_bob()]), &original);
    let m = MessageParser::default().parse(&n.message).expect("the report parses");
    assert_eq!(m.content_type().and_then(|c| c.attribute("boundary")), Some("=_postlog_dsn_20261127093456AB12CD_1"));
    let parts = m.parts[0].sub_parts().expect("a multipart").to_vec();
    assert_eq!(m.parts[parts[2] as usize].message().expect("the original").raw_message(), original);
}

#[test]
fn dates() {
    for (t, want) in [
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        (1_795_772_096, "Fri, 27 Nov 2026 09:34:56 +0000"),
        (-86_401, "Tue, 30 Dec 1969 23:59:59 +0000"),
        (4_102_444_800, "Fri, 1 Jan 2100 00:00:00 +0000"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 +0000"),
    ] {
        assert_eq!(rfc5322_date(t), want);
    }
}

#[test]
fn notify_rules() {
    let n = |success, failure, delay| Notify { never: false, success, failure, delay };
    let never = Notify { never: true, ..Notify::default() };
    for (notify, action, want) in [
        (None, Action::Failed, true),
        (None, Action::Delayed, false),
        (None, Action::Delivered, false),
        (None, Action::Relayed, false),
        (Some(never), Action::Failed, false),
        (Some(never), Action::Delayed, false),
        (Some(n(true, false, false)), Action::Delivered, true),
        (Some(n(true, false, false)), Action::Relayed, true),
        (Some(n(true, false, false)), Action::Expanded, true),
        (Some(n(true, false, false)), Action::Failed, false),
        (Some(n(false, true, false)), Action::Failed, true),
        (Some(n(false, true, false)), Action::Delayed, false),
        (Some(n(false, false, true)), Action::Delayed, true),
        (Some(n(false, true, true)), Action::Delivered, false),
    ] {
        assert_eq!(notify_requested(notify.as_ref(), action), want, "{notify:?} {action:?}");
    }
}

#[test]
fn suppression_rules() {
    let alice = mailbox("alice@example.test");
    let plain = b"From: alice@example.test\r\nSubject: hi\r\n\r\nAuto-Submitted: auto-replied\r\n";
    assert_eq!(suppression(None, plain), Some(Suppression::NullSender));
    assert_eq!(suppression(Some(&alice), plain), None, "only the header counts");
    for header in [
        &b"Auto-Submitted: auto-replied\r\n\r\n"[..],
        b"auto-submitted:Auto-Replied (vacation)\r\n\r\n",
        b"Subject: x\r\nAuto-Submitted:\r\n auto-replied; owner-email=x@y\r\n\r\n",
    ] {
        assert_eq!(suppression(Some(&alice), header), Some(Suppression::AutoReplied), "{header:?}");
    }
    for header in [
        &b"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"x\"\r\n\r\n"[..],
        b"Content-Type: Multipart/Report; boundary=x; report-type=\"global-delivery-status\"\r\n\r\n",
    ] {
        assert_eq!(suppression(Some(&alice), header), Some(Suppression::DeliveryReport), "{header:?}");
    }
    for header in [
        &b"Auto-Submitted: no\r\n\r\n"[..],
        b"Auto-Submitted: auto-generated\r\n\r\n",
        b"Auto-Submitted: auto-notified\r\n\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
    ] {
        assert_eq!(suppression(Some(&alice), header), None, "{header:?}");
    }
    assert!(should_report(Some(&alice), None, Action::Failed, b"Subject: x\r\n\r\n"));
    assert!(!should_report(None, None, Action::Failed, b"Subject: x\r\n\r\n"));
    assert!(!should_report(Some(&alice), None, Action::Delayed, b"Subject: x\r\n\r\n"));
    // Our own reports are never reported on: null sender and auto-replied both.
    let ours = build(&dsn(vec![failed_bob()]), ORIGINAL).message;
    assert_eq!(suppression(Some(&alice), &ours), Some(Suppression::AutoReplied));
}

#[test]
fn quoted_printable_keeps_lines_short_and_round_trips() {
    let text = format!("{}\r\nend with space \r\n={}\r\n", "é".repeat(100), "a".repeat(200));
    let qp = quoted_printable(text.as_bytes());
    assert!(qp.is_ascii());
    for line in qp.split(|&b| b == b'\n') {
        assert!(line.len() <= 77, "{}", String::from_utf8_lossy(line));
    }
    let wrapped = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
        String::from_utf8(qp).unwrap()
    );
    let m = MessageParser::default().parse(wrapped.as_bytes()).expect("parses");
    assert_eq!(m.body_text(0).as_deref(), Some(text.as_str()));
}

#[test]
fn fields_fold_at_spaces_and_unfold_to_the_same_words() {
    let value = format!("smtp; 550 5.7.1 {} {}", "word ".repeat(60).trim_end(), "y".repeat(1200));
    let mut out = String::new();
    field(&mut out, "Diagnostic-Code", &value);
    let lines: Vec<&str> = out.strip_suffix("\r\n").expect("CRLF at the end").split("\r\n").collect();
    assert!(lines[0].starts_with("Diagnostic-Code: smtp;"));
    assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
    assert!(lines.iter().all(|l| l.len() <= MAX_LINE_OCTETS));
    assert!(lines.iter().filter(|l| !l.contains('y')).all(|l| l.len() <= 78), "{lines:?}");
    let unfolded = out.replace("\r\n", "");
    let words: Vec<&str> = unfolded["Diagnostic-Code:".len()..].split(' ').filter(|w| !w.is_empty()).collect();
    // The 1,200-octet word was cut once to fit a line.
    assert_eq!(words.len(), value.split(' ').count() + 1);
    assert_eq!(words.concat(), value.replace(' ', ""));
    // A first word too long for one line is cut on the field's own line, not moved below it.
    let mut out = String::new();
    field(&mut out, "X", &"z".repeat(2000));
    assert!(out.starts_with("X: zzz"));
    assert!(out.split("\r\n").all(|l| l.len() <= MAX_LINE_OCTETS));
}
