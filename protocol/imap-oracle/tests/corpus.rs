//! The differential corpus: a few hundred IMAP4rev1 command lines, hand-written and generated,
//! through Postlog's parser and imap-codec's. Every line must be agreed on (both accept with
//! the same essentials, or both reject) or differ only as a rule of `ALLOWED` says; each rule
//! must be needed by some line (no stale allowances); and Postlog must accept the lines
//! written as valid and reject those written as invalid.

use postlog_imap_oracle::{ALLOWED, Outcome, Verdict, compare, ours};

/// A command line: `\r\n` inside stands for the CRLF before literal data; the final CRLF is
/// added.
fn line(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

/// IMAP4rev1 commands (RFC 3501 and the extensions imap-codec 1.0 also parses: IDLE, ENABLE,
/// UNSELECT, MOVE, COMPRESS, QUOTA, LITERAL+, SASL-IR), valid.
const VALID: &[&str] = &[
    "a CAPABILITY",
    "a1 NOOP",
    "A.2 LOGOUT",
    "tag-with-many.chars!#$&'~ NOOP",
    "a noop",
    "a STARTTLS",
    "a AUTHENTICATE PLAIN",
    "a AUTHENTICATE plain AGFsaWNlAHNlY3JldA==",
    "a AUTHENTICATE PLAIN =",
    "a AUTHENTICATE X-UNKNOWN-MECH",
    "a AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM",
    "a LOGIN alice secret",
    "a LOGIN \"alice@example.org\" \"pass word\"",
    "a LOGIN \"quote\\\"d\" \"back\\\\slash\"",
    "a LOGIN {5}\r\nalice {6}\r\nsecret",
    "a LOGIN {5+}\r\nalice {6+}\r\nsecret",
    "a LOGIN {5}\nalice secret",
    "a LOGIN alice \"\"",
    "a LOGIN {0}\r\n {0+}\r\n",
    "a LOGIN alice]bracket pass",
    "a LOGIN \"\" \"\"",
    "a LOGIN NIL secret",
    "a SELECT INBOX",
    "a SELECT inbox",
    "a SELECT \"INBOX\"",
    "a SELECT {5}\r\nInBoX",
    "a SELECT INBOX/sub",
    "a EXAMINE \"Sent Items\"",
    "a CREATE Projects/2024",
    "a CREATE \"with space\"",
    "a CREATE &AMk-t&AOk-",
    "a DELETE Trash",
    "a RENAME Old New",
    "a RENAME \"a b\" {3}\r\nc d",
    "a SUBSCRIBE news",
    "a UNSUBSCRIBE \"news\"",
    "a LIST \"\" *",
    "a LIST \"\" %",
    "a LIST \"\" \"\"",
    "a LIST ~/Mail/ %",
    "a LIST \"#news.\" \"comp.mail.*\"",
    "a LIST \"\" \"a b*\"",
    "a LIST \"\" {3}\r\na%b",
    "a LIST \"\" INBOX",
    "a LIST \"\" foo]bar",
    "a LIST \"\" a*b%c",
    "a LIST INBOX *",
    "a LSUB \"\" *",
    "a LSUB \"#news.\" \"comp.%\"",
    "a STATUS INBOX (MESSAGES)",
    "a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
    "a STATUS \"x y\" (unseen)",
    "a STATUS blurdybloop (UIDNEXT MESSAGES)",
    "a APPEND INBOX {11}\r\nHello World",
    "a APPEND Drafts (\\Draft) {5}\r\nhello",
    "a APPEND Drafts (\\Seen \\Flagged $Label) \"05-Jan-2024 10:11:12 +0100\" {5}\r\nhello",
    "a APPEND Drafts \" 5-Jan-2024 10:11:12 -0800\" {2}\r\nhi",
    "a APPEND Drafts () {0}\r\n",
    "a APPEND INBOX {5+}\r\nhello",
    "a APPEND saved-messages (\\Seen) {23}\r\nFrom: a\r\nSubject: b\r\n\r\n",
    "a CHECK",
    "a CLOSE",
    "a EXPUNGE",
    "a UNSELECT",
    "a IDLE",
    "a ENABLE UTF8=ACCEPT",
    "a ENABLE X-FOO X-BAR",
    "a COMPRESS DEFLATE",
    "a GETQUOTA \"\"",
    "a GETQUOTA root",
    "a GETQUOTAROOT INBOX",
    "a SETQUOTA \"\" (STORAGE 512)",
    "a SETQUOTA \"\" ()",
    "a STORE 1 +FLAGS (\\Seen)",
    "a STORE 1:3 -FLAGS.SILENT \\Deleted \\Seen",
    "a STORE 2 FLAGS ()",
    "a STORE 2 FLAGS.SILENT ($Forwarded \\Answered)",
    "a STORE * +flags \\Flagged",
    "a COPY 1:3 Archive",
    "a COPY 2:4 \"Saved Mail\"",
    "a MOVE 1 Trash",
    "a UID FETCH 1:* (UID FLAGS)",
    "a UID STORE 4827313:4828442 +FLAGS.SILENT (\\Deleted)",
    "a UID COPY 1,3:5 INBOX",
    "a UID MOVE 42 Archive",
    "a UID SEARCH ALL",
    "a uid search uid 1:10 unseen",
    "a FETCH 12 FULL",
    "a FETCH 12 FAST",
    "a FETCH 12 ALL",
    "a FETCH 12 BODY[HEADER]",
    "a FETCH 12 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
    "a FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
    "a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS.NOT (\"X-Spam\" {4}\r\nX-Ab)]<0.2048>)",
    "a FETCH 1 BODY[4.2.2.1.MIME]",
    "a FETCH 1 body.peek[text]<10.20>",
    "a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
    "a SEARCH TEXT \"string not in mailbox\"",
    "a SEARCH CHARSET UTF-8 SUBJECT {4}\r\ntest",
    "a SEARCH CHARSET \"US-ASCII\" BODY hello",
    "a SEARCH OR (SEEN FLAGGED) (NOT DELETED)",
    "a SEARCH (OR SEEN FLAGGED) 1:5",
    "a SEARCH HEADER X-Priority 1",
    "a SEARCH HEADER \"Message-ID\" \"<abc@def>\"",
    "a SEARCH LARGER 1024 SMALLER 4294967295",
    "a SEARCH KEYWORD $Junk UNKEYWORD $NotJunk",
    "a SEARCH SENTBEFORE 01-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000",
    "a SEARCH BEFORE 31-Dec-1999 ON 1-Jan-2000 SINCE 29-Feb-2000",
    "a SEARCH NEW OLD RECENT ANSWERED UNANSWERED DRAFT UNDRAFT DELETED UNDELETED SEEN UNSEEN FLAGGED UNFLAGGED",
    "a SEARCH BCC a CC b TO c FROM d SUBJECT e BODY f TEXT g",
    "a SEARCH 1,3,5:7 UID 2:*",
    "a SEARCH *",
    "a SEARCH NOT NOT NOT ALL",
];

/// Commands of the extensions and IMAP4rev2 forms Postlog parses and imap-codec 1.0 does not:
/// each must be accepted by Postlog and be one of the allowed differences.
const EXTENSIONS: &[&str] = &[
    "a ID NIL",
    "a ID (\"name\" \"sodr\" \"version\" \"19.34\")",
    "a NAMESPACE",
    "a UID EXPUNGE 3000:3002",
    "a SORT (DATE) UTF-8 ALL",
    "a UID SORT (REVERSE SUBJECT) US-ASCII SEEN",
    "a THREAD REFERENCES UTF-8 ALL",
    "a SELECT INBOX (CONDSTORE)",
    "a EXAMINE INBOX (CONDSTORE)",
    "a LIST (SUBSCRIBED) \"\" *",
    "a LIST \"\" * RETURN (CHILDREN)",
    "a LIST \"\" (INBOX Drafts)",
    "a CREATE x (USE (\\Sent))",
    "a STATUS INBOX (SIZE)",
    "a STATUS INBOX (HIGHESTMODSEQ)",
    "a SEARCH RETURN (MIN MAX) ALL",
    "a SEARCH MODSEQ 5",
    "a SEARCH YOUNGER 3600",
    "a SEARCH EMAILID M6d99ac3275bb4e",
    "a SEARCH LARGER 5000000000",
    "a FETCH 1 (MODSEQ)",
    "a FETCH 1 (FLAGS) (CHANGEDSINCE 5)",
    "a FETCH 1 BINARY[1]",
    "a FETCH 1 (BINARY.SIZE[1] EMAILID THREADID SAVEDATE)",
    "a FETCH 1 BODY[]<0.5000000000>",
    "a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)",
    "a COPY $ Trash",
    "a UID MOVE $ Trash",
    "a SEARCH $",
    "a APPEND INBOX ~{3}\r\nabc",
    "a APPEND INBOX {1}\r\na {1}\r\nb",
    "a APPEND INBOX UTF8 (~{2}\r\nhi)",
    // The allowed laxness and limits.
    "a SEARCH NOT NOT NOT NOT NOT NOT NOT NOT NOT NOT ALL",
    "a SEARCH (((((((((((ALL)))))))))))",
    "a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA",
    "a LOGIN \"jörg\" \"pässwörd\"",
    "a SELECT \"Entwürfe\"",
    "a APPEND Drafts \" 5-Jan-2024 10:11:12 -8000\" {2}\r\nhi",
    "a APPEND Drafts \"31-Dec-2016 23:59:60 +0000\" {2}\r\nhi",
];

/// Lines imap-codec 1.0 accepts and Postlog rejects, as allowed.
const LAX: &[&str] = &[
    "a STATUS INBOX ()",
    "a FETCH 1 ()",
    "a UID FETCH 1:* ()",
    "a APPEND Drafts \" 5-Jan-2024 10:11:12 -0880\" {2}\r\nhi",
    "a AUTHENTICATE PLAIN ",
];

/// Lines Postlog must reject (and imap-codec too, or as allowed).
const INVALID: &[&str] = &[
    "",
    "a",
    "a ",
    "* NOOP",
    "+ NOOP",
    "a+ NOOP",
    "a{ NOOP",
    "a% NOOP",
    "(a) NOOP",
    "a BOGUS",
    "a XAPPLEPUSHSERVICE",
    "a  NOOP",
    "a NOOP ",
    "a NOOP extra",
    "a UID NOOP",
    "a UID",
    "a EXPUNGE 1",
    "a FETCH 0 FLAGS",
    "a FETCH 1: FLAGS",
    "a FETCH :1 FLAGS",
    "a FETCH 1,,2 FLAGS",
    "a FETCH 1, FLAGS",
    "a FETCH 4294967296 FLAGS",
    "a FETCH -1 FLAGS",
    "a FETCH 1 FLAGS EXTRA",
    "a FETCH 1 (FLAGS",
    "a FETCH 1 FLAGS)",
    "a FETCH 1 ( FLAGS)",
    "a FETCH 1 (FLAGS )",
    "a FETCH 1  FLAGS",
    "a FETCH 1 BODY[",
    "a FETCH 1 BODY[0]",
    "a FETCH 1 BODY[1.0]",
    "a FETCH 1 BODY[MIME]",
    "a FETCH 1 BODY[HEADER.FIELDS ()]",
    "a FETCH 1 BODY[HEADER.FIELDS]",
    "a FETCH 1 BODY[]<0.0>",
    "a FETCH 1 BODY[]<0>",
    "a FETCH 1 BODY[]<.5>",
    "a FETCH 1 BODY.PEEK",
    "a FETCH 1 RFC822.PEEK",
    "a FETCH 1 (ALL)",
    "a FETCH 1 NOTANITEM",
    "a SEARCH",
    "a SEARCH FOO",
    "a SEARCH BEFORE 32-Jan-2024",
    "a SEARCH BEFORE 29-Feb-2023",
    "a SEARCH ON 1-Jan-24",
    "a SEARCH ON 1-jann-2024",
    "a SEARCH SINCE \"1-Jan-2024",
    "a SEARCH OR SEEN",
    "a SEARCH NOT",
    "a SEARCH ()",
    "a SEARCH (SEEN",
    "a SEARCH SEEN)",
    "a SEARCH LARGER",
    "a SEARCH LARGER x",
    "a SEARCH HEADER Subject",
    "a SEARCH UID",
    "a SEARCH 0",
    "a SEARCH CHARSET",
    "a SEARCH CHARSET UTF-8",
    "a SEARCH  ALL",
    "a SEARCH ALL ",
    "a LOGIN alice",
    "a LOGIN alice secret extra",
    "a LOGIN \"unterminated secret",
    "a LOGIN \"bad\\xescape\" secret",
    "a LOGIN jörg secret",
    "a LOGIN {5}\r\nali secret",
    "a LOGIN {x}\r\nalice secret",
    "a LOGIN (alice) secret",
    "a LOGIN al%ice secret",
    "a LOGIN al*ice secret",
    "a AUTHENTICATE",
    "a AUTHENTICATE PLAIN not*base64",
    "a AUTHENTICATE PLAIN AGFsaWNl=",
    "a SELECT",
    "a SELECT INBOX EXTRA",
    "a SELECT (INBOX)",
    "a CREATE",
    "a RENAME Old",
    "a LIST \"\"",
    "a LIST *",
    "a LIST \"\" (",
    "a LSUB \"\"",
    "a STATUS INBOX",
    "a STATUS INBOX (BOGUS)",
    "a STATUS INBOX MESSAGES",
    "a STORE 1 FLAGS",
    "a STORE 1 +FLAG (\\Seen)",
    "a STORE 1 *FLAGS (\\Seen)",
    "a STORE 1 FLAGS (\\Seen",
    "a STORE 1 FLAGS (\\*)",
    "a COPY 1",
    "a COPY Trash",
    "a MOVE 1",
    "a APPEND INBOX",
    "a APPEND INBOX (\\Seen)",
    "a APPEND INBOX (\\Seen) \"32-Jan-2024 00:00:00 +0000\" {1}\r\na",
    "a APPEND INBOX (\\Seen) \"1-Jan-2024 24:00:00 +0000\" {1}\r\na",
    "a APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 0000\" {1}\r\na",
    "a APPEND INBOX (\\Seen) \"01-Jan-2024 00:00:00 +0000\"",
    "a APPEND INBOX hello",
    "a ENABLE",
    "a COMPRESS",
    "a COMPRESS GZIP",
    "a IDLE now",
    "a CHECK 1",
    "a GETQUOTAROOT",
    // RFC 3501 reads a SEARCH charset as an astring; RFC 9051 narrowed it to `atom / quoted`,
    // and both parsers follow RFC 9051.
    "a SEARCH CHARSET {5}\r\nUTF-8 ALL",
    // RFC 3501 section 9: literals are `*CHAR8`, no NUL (literal8 of RFC 3516 takes it).
    "a APPEND INBOX {3}\r\na\0b",
    "a LOGIN {3}\r\na\0b secret",
];

/// Generated lines: fetch attributes, search keys, sequence sets, strings, spacing.
fn generated() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut add = |s: String| out.push(line(&s));
    let simple = [
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
    ];
    for (i, a) in simple.iter().enumerate() {
        add(format!("f{i} FETCH 1 {a}"));
        add(format!("f{i} FETCH 1:* ({a})"));
        add(format!("f{i} UID FETCH 1,2 ({a} {})", simple[(i + 3) % simple.len()]));
        add(format!("f{i} fetch 1 {}", a.to_ascii_lowercase()));
    }
    let sections = [
        "",
        "HEADER",
        "TEXT",
        "1",
        "1.2",
        "1.MIME",
        "1.HEADER",
        "2.TEXT",
        "3.4.5",
        "HEADER.FIELDS (From To)",
        "HEADER.FIELDS.NOT (Subject)",
        "2.HEADER.FIELDS (\"X-A\" x-b)",
        "header.fields (DATE)",
    ];
    for (i, s) in sections.iter().enumerate() {
        for peek in ["BODY", "BODY.PEEK"] {
            add(format!("s{i} FETCH 7 {peek}[{s}]"));
            add(format!("s{i} FETCH 7 ({peek}[{s}]<0.100> FLAGS)"));
            add(format!("s{i} UID FETCH 7 {peek}[{s}]<4294967295.1>"));
        }
    }
    let sets = ["1", "*", "1:*", "*:1", "1,2,3", "1:3,5,7:*", "4294967295", "2:2", "10:1", "1:2,*"];
    for (i, set) in sets.iter().enumerate() {
        add(format!("q{i} FETCH {set} UID"));
        add(format!("q{i} STORE {set} +FLAGS (\\Seen)"));
        add(format!("q{i} COPY {set} Trash"));
        add(format!("q{i} SEARCH UID {set}"));
        add(format!("q{i} SEARCH {set} SEEN"));
    }
    let strings = [
        "atom",
        "\"quoted\"",
        "\"with space\"",
        "\"esc\\\\aped\"",
        "\"q\\\"uote\"",
        "\"\"",
        "{4}\r\nlit!",
        "{0}\r\n",
        "{3+}\r\na b",
        "\"]\"",
        "x]y",
    ];
    let text_keys = ["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"];
    for (i, s) in strings.iter().enumerate() {
        add(format!("l{i} LOGIN {s} {s}"));
        add(format!("l{i} SELECT {s}"));
        add(format!("l{i} LIST {s} {s}"));
        add(format!("l{i} SEARCH {} {s}", text_keys[i % text_keys.len()]));
        add(format!("l{i} SEARCH HEADER {s} {s}"));
        add(format!("l{i} RENAME {s} {s}"));
    }
    let flag_keys =
        ["ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN", "UNANSWERED", "UNDELETED"];
    for (i, k) in flag_keys.iter().enumerate() {
        add(format!("k{i} SEARCH {k}"));
        add(format!("k{i} SEARCH NOT {k}"));
        add(format!("k{i} SEARCH OR {k} {}", flag_keys[(i + 1) % flag_keys.len()]));
        add(format!("k{i} SEARCH ({k} UNSEEN) {}", k.to_ascii_lowercase()));
    }
    for (i, d) in ["1-Jan-2024", "01-Feb-1999", "29-Feb-2024", "31-Dec-9999", "\"7-Mar-2001\""].iter().enumerate() {
        for k in ["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"] {
            add(format!("d{i} SEARCH {k} {d}"));
        }
        add(format!("d{i} APPEND INBOX \"{} 23:59:59 +1400\" {{1}}\r\nx", d.trim_matches('"')));
    }
    for (i, f) in ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "$Junk", "Keyword", "\\Extension"]
        .iter()
        .enumerate()
    {
        add(format!("g{i} STORE 1 FLAGS ({f})"));
        add(format!("g{i} STORE 1 -FLAGS {f}"));
        add(format!("g{i} APPEND INBOX ({f}) {{1}}\r\nx"));
    }
    for (i, spaced) in [
        "a FETCH 1  (FLAGS)",
        "a STORE 1 +FLAGS  (\\Seen)",
        "a STORE 1 +FLAGS (\\Seen  \\Deleted)",
        "a SEARCH SEEN  UNSEEN",
        "a LOGIN  alice secret",
        "a LOGIN alice  secret",
        "a SELECT  INBOX",
        "a STATUS INBOX (MESSAGES  UNSEEN)",
        "a STATUS INBOX  (MESSAGES)",
        "a LIST \"\"  *",
        "a APPEND INBOX  {1}\r\nx",
        "a APPEND INBOX (\\Seen)  {1}\r\nx",
        "a UID  FETCH 1 FLAGS",
        "\ta NOOP",
        "a\tNOOP",
    ]
    .iter()
    .enumerate()
    {
        add(format!("w{i}{}", spaced.strip_prefix('a').unwrap_or(spaced)));
    }
    out
}

#[test]
fn both_parsers_agree_on_the_corpus() {
    let mut lines: Vec<(Vec<u8>, Option<bool>)> = Vec::new();
    lines.extend(VALID.iter().map(|l| (line(l), Some(true))));
    lines.extend(EXTENSIONS.iter().map(|l| (line(l), Some(true))));
    lines.extend(INVALID.iter().map(|l| (line(l), Some(false))));
    lines.extend(LAX.iter().map(|l| (line(l), Some(false))));
    lines.extend(generated().into_iter().map(|l| (l, None)));
    // Without a line end both reject; a bare LF is taken for CRLF by both (imap-codec with
    // `quirk_crlf_relaxed`, as Postlog's parser is lenient there).
    lines.push((b"a NOOP".to_vec(), Some(false)));
    lines.push((b"a NOOP\n".to_vec(), Some(true)));
    lines.push((b"a APPEND INBOX {3}\r\nab\r\n".to_vec(), Some(true)));
    lines.push((b"a NOOP\r\na NOOP\r\n".to_vec(), Some(false)));
    assert!(lines.len() >= 500, "{} lines", lines.len());

    let mut problems = Vec::new();
    let mut used = vec![0; ALLOWED.len()];
    let (mut agreed_accepts, mut agreed_rejects) = (0, 0);
    for (input, valid) in &lines {
        let shown = input.escape_ascii().to_string();
        let accepted = matches!(ours(input).outcome, Outcome::Accepted(_));
        if let Some(valid) = valid
            && accepted != *valid
        {
            problems.push(format!("Postlog {} {shown}", if accepted { "accepts" } else { "rejects" }));
        }
        match compare(input) {
            Verdict::Agree if accepted => agreed_accepts += 1,
            Verdict::Agree => agreed_rejects += 1,
            Verdict::Allowed(rule) => {
                used[ALLOWED.iter().position(|r| std::ptr::eq(r, rule)).expect("a rule of ALLOWED")] += 1;
                if EXTENSIONS.iter().chain(LAX).all(|e| line(e) != *input) {
                    problems.push(format!("allowed as {:?} but not listed in EXTENSIONS or LAX: {shown}", rule.name));
                }
            }
            Verdict::Disagree { ours, theirs } => {
                problems.push(format!("disagree on {shown}\n   ours:   {ours:?}\n   theirs: {theirs:?}"))
            }
        }
    }
    for (rule, n) in ALLOWED.iter().zip(&used) {
        if *n == 0 {
            problems.push(format!("the allowed difference {:?} is needed by no line of the corpus", rule.name));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    eprintln!(
        "{} lines: {agreed_accepts} accepted by both, {agreed_rejects} rejected by both, allowed {used:?}",
        lines.len()
    );
    assert!(agreed_accepts >= 300 && agreed_rejects >= 100, "{agreed_accepts} {agreed_rejects}");
}
