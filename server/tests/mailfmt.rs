//! Integration tests of `postlog_server::mailfmt`: every tree and file is
//! built here in a temporary directory.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use postlog_server::mailfmt::{
    EmlDir, Estimate, ExportError, ImportError, MailMessage, MailSource, Maildir, MaildirWriter, Mbox,
    utf7_imap_decode, utf7_imap_encode,
};

/// 2026-11-27 14:00:00 UTC.
const NOV27: i64 = 1_795_788_000;

fn write(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> PathBuf {
    let path = path.as_ref();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    path.to_path_buf()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

fn maildir_folder(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

fn all_ok<I: Iterator<Item = Result<MailMessage, ImportError>>>(it: I) -> Vec<MailMessage> {
    it.map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}"))).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn find<'a>(msgs: &'a [MailMessage], needle: &str) -> &'a MailMessage {
    msgs.iter()
        .find(|m| String::from_utf8_lossy(&m.bytes).contains(needle))
        .unwrap_or_else(|| panic!("no message containing {needle:?}"))
}

// ---------------------------------------------------------------- Maildir

#[test]
fn maildir_plus_plus_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("Maildir");
    maildir_folder(&root);
    write(root.join("dovecot-keywords"), "0 $Junk\n1 Work\n");
    // Name date 1700000000, mtime later (a copy without -p): the name wins.
    let a = write(root.join("cur/1700000000.M1P1.host,S=27:2,S"), "Subject: a\r\n\r\nseen inbox\r\n");
    set_mtime(&a, 1_800_000_000);
    // mtime earlier than the name (IMAP APPEND into Dovecot): mtime wins.
    let b = write(root.join("cur/1700000100.M2P1.host:2,FRab"), "Subject: b\n\nflagged answered junk work\n");
    set_mtime(&b, 1_600_000_000);
    // No date in the name: mtime.
    let c = write(root.join("cur/message-c:2,T"), "Subject: c\n\ndeleted\n");
    set_mtime(&c, 1_650_000_000);
    // new/ is unseen, even with a stray S.
    write(root.join("new/1700000200.M3P1.host"), "Subject: d\n\nnew one\n");
    write(root.join("new/1700000201.M4P1.host:2,S"), "Subject: e\n\nnew two\n");
    // tmp/ and hidden files are ignored.
    write(root.join("tmp/1700000300.M5P1.host"), "Subject: f\n\nin tmp\n");
    write(root.join("cur/.hidden"), "Subject: g\n\nhidden\n");

    let sent = root.join(".Sent");
    maildir_folder(&sent);
    write(sent.join("maildirfolder"), "");
    write(sent.join("cur/1700000400.M6P1.host:2,PS"), "Subject: s\n\nforwarded sent\n");

    let rust = root.join(".Lists.rust");
    maildir_folder(&rust);
    write(rust.join("dovecot-keywords"), "0 $Important\n");
    write(rust.join("cur/1700000500.M7P1.host:2,Sa"), "Subject: r\n\nrust list\n");

    // Modified UTF-7 names; an invalid one is kept as it is.
    let drafts = root.join(".Entw&APw-rfe.&U,BTFw-");
    maildir_folder(&drafts);
    write(drafts.join("cur/1700000600.M8P1.host:2,D"), "Subject: u\n\ndraft\n");
    let raw = root.join(".R&D");
    maildir_folder(&raw);
    write(raw.join("cur/1700000700.M9P1.host:2,"), "Subject: rd\n\nr and d\n");

    // A directory without cur/new is no folder; a dot directory without
    // cur/new neither.
    fs::create_dir_all(root.join("courierimapkeywords")).unwrap();
    fs::create_dir_all(root.join(".Empty-not-a-folder")).unwrap();

    let md = Maildir::open(&root).unwrap();
    assert_eq!(md.folders(), ["INBOX", "Entwürfe/台北", "Lists/rust", "R&D", "Sent"]);
    let est = md.estimate();
    assert_eq!(est.messages, Some(9));
    let total: u64 = est.bytes;
    assert!(total > 0);

    let mut md = md;
    let mut msgs = Vec::new();
    for item in md.by_ref() {
        msgs.push(item.unwrap());
    }
    assert_eq!(md.bytes_read(), total);
    assert_eq!(msgs.len(), 9);

    // INBOX comes first, in file-name (delivery) order.
    let inbox: Vec<&MailMessage> = msgs.iter().filter(|m| m.folder == "INBOX").collect();
    assert_eq!(inbox.len(), 5);
    assert_eq!(inbox[0].bytes, b"Subject: a\r\n\r\nseen inbox\r\n");
    assert!(msgs[..5].iter().all(|m| m.folder == "INBOX"));

    let m = find(&msgs, "seen inbox");
    assert_eq!(strs(&m.flags), ["\\Seen"]);
    assert!(m.keywords.is_empty());
    assert_eq!(m.internal_date, 1_700_000_000);

    let m = find(&msgs, "flagged answered");
    assert_eq!(strs(&m.flags), ["\\Answered", "\\Flagged"]);
    assert_eq!(strs(&m.keywords), ["$Junk", "Work"]);
    assert_eq!(m.internal_date, 1_600_000_000);

    let m = find(&msgs, "deleted");
    assert_eq!(strs(&m.flags), ["\\Deleted"]);
    assert_eq!(m.internal_date, 1_650_000_000);

    for needle in ["new one", "new two"] {
        let m = find(&msgs, needle);
        assert!(m.flags.is_empty(), "{needle}: {:?}", m.flags);
        assert_eq!(m.folder, "INBOX");
    }

    let m = find(&msgs, "forwarded sent");
    assert_eq!(m.folder, "Sent");
    assert_eq!(strs(&m.flags), ["\\Seen"]);
    assert_eq!(strs(&m.keywords), ["$Forwarded"]);

    let m = find(&msgs, "rust list");
    assert_eq!(m.folder, "Lists/rust");
    assert_eq!(strs(&m.keywords), ["$Important"]);

    let m = find(&msgs, "draft");
    assert_eq!(m.folder, "Entwürfe/台北");
    assert_eq!(strs(&m.flags), ["\\Draft"]);

    assert_eq!(find(&msgs, "r and d").folder, "R&D");
    assert!(!msgs.iter().any(|m| {
        let s = String::from_utf8_lossy(&m.bytes);
        s.contains("in tmp") || s.contains("hidden")
    }));
}

#[test]
fn maildir_fs_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // No INBOX at the root; "fs" layout folders, one nested in another,
    // one below a plain directory.
    maildir_folder(&root.join("INBOX"));
    write(root.join("INBOX/cur/1700000000.a.h:2,S"), "Subject: 1\n\ninbox\n");
    maildir_folder(&root.join("Archive"));
    write(root.join("Archive/cur/1700000001.a.h:2,"), "Subject: 2\n\narchive\n");
    maildir_folder(&root.join("Archive/2024"));
    write(root.join("Archive/2024/new/1700000002.a.h"), "Subject: 3\n\narchive 2024\n");
    maildir_folder(&root.join("Lists/rust"));
    write(root.join("Lists/rust/cur/1700000003.a.h:2,F"), "Subject: 4\n\nrust\n");
    maildir_folder(&root.join("Ent&APw-rfe"));
    // Symlink loops end.
    std::os::unix::fs::symlink(root, root.join("Archive/up")).unwrap();
    std::os::unix::fs::symlink(root.join("Archive"), root.join("Archive/2024/back")).unwrap();

    let md = Maildir::open(root).unwrap();
    assert_eq!(md.folders(), ["INBOX", "Archive", "Archive/2024", "Entürfe", "Lists/rust"]);
    let msgs = all_ok(md);
    assert_eq!(msgs.len(), 4);
    assert_eq!(find(&msgs, "archive 2024").folder, "Archive/2024");
    assert_eq!(find(&msgs, "\nrust").folder, "Lists/rust");
    assert_eq!(strs(&find(&msgs, "\nrust").flags), ["\\Flagged"]);
    assert_eq!(find(&msgs, "inbox").folder, "INBOX");
}

#[test]
fn maildir_bad_entries_are_err_items_and_iteration_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    maildir_folder(root);
    write(root.join("cur/1700000000.a.h:2,S"), "Subject: 1\n\nfirst\n");
    // A directory named like a message.
    let dir_msg = root.join("cur/1700000001.b.h:2,S");
    fs::create_dir(&dir_msg).unwrap();
    // An empty file.
    let empty = write(root.join("cur/1700000002.c.h:2,S"), "");
    // An unreadable file (only effective when not running as root).
    let locked = write(root.join("cur/1700000003.d.h:2,S"), "Subject: 4\n\nlocked\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let locked_is_unreadable = fs::read(&locked).is_err();
    // A dangling symlink: unreadable even for root.
    let dangling = root.join("cur/1700000004.e.h:2,S");
    std::os::unix::fs::symlink(root.join("gone"), &dangling).unwrap();
    write(root.join("cur/1700000005.f.h:2,S"), "Subject: 6\n\nlast\n");

    let items: Vec<_> = Maildir::open(root).unwrap().collect();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(items.len(), 6);

    let Err(err) = &items[1] else { panic!("directory gave {:?}", items[1]) };
    assert!(matches!(err, ImportError::NotAFile { is_dir: true, .. }));
    assert_eq!(err.path(), dir_msg);
    let text = err.to_string();
    assert!(text.contains(&dir_msg.display().to_string()) && text.contains("is a directory"), "{text}");

    let Err(err) = &items[2] else { panic!("empty file gave {:?}", items[2]) };
    assert_eq!(err.path(), empty);
    assert!(err.to_string().contains("empty"), "{err}");

    if locked_is_unreadable {
        let Err(err) = &items[3] else { panic!("unreadable file gave {:?}", items[3]) };
        assert!(matches!(err, ImportError::Io { .. }));
        assert_eq!(err.path(), locked);
        assert!(err.to_string().starts_with("could not read message file "), "{err}");
    }
    assert!(items[0].as_ref().is_ok_and(|m| m.bytes.ends_with(b"first\n")));
    let Err(err) = &items[4] else { panic!("dangling symlink gave {:?}", items[4]) };
    assert!(matches!(err, ImportError::Io { .. }));
    assert_eq!(err.path(), dangling);
    let expected = format!("could not inspect message file {}: ", dangling.display());
    assert!(err.to_string().starts_with(&expected), "{err}");
    assert!(items[5].as_ref().is_ok_and(|m| m.bytes.ends_with(b"last\n")));
}

#[test]
fn maildir_open_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = Maildir::open(&missing).err().unwrap();
    assert_eq!(err.path(), missing);
    assert!(err.to_string().contains("nope"), "{err}");

    fs::create_dir(tmp.path().join("plain")).unwrap();
    let err = Maildir::open(tmp.path().join("plain")).err().unwrap();
    assert!(err.to_string().contains("is not a Maildir"), "{err}");
}

// ---------------------------------------------------------------- mbox

const MBOX: &str = "\
From alice@example.com Fri Nov 27 14:00:00 2026
Status: RO
X-Status: AF
Subject: one

Hello
>From here
>>From there
From here on, a body line without a date stays
>not a From line

From bob@example.com Sat Nov 28 14:00:00 2026
Subject: two
X-Status: TD
Date: Sat, 01 Jan 2000 00:00:00 +0000

body two
From carol@example.com Sun Nov 29 14:00:00 2026
Subject: three
Status: O

body three ends with blank line in the body


";

fn lf_to_crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn check_mbox_messages(msgs: &[MailMessage], eol: &str) {
    let e = |s: &str| s.replace('\n', eol);
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m.folder == "INBOX"));

    assert_eq!(
        String::from_utf8_lossy(&msgs[0].bytes),
        e("Status: RO\nX-Status: AF\nSubject: one\n\nHello\nFrom here\n>From there\n\
           From here on, a body line without a date stays\n>not a From line\n")
    );
    assert_eq!(strs(&msgs[0].flags), ["\\Answered", "\\Flagged", "\\Seen"]);
    assert_eq!(msgs[0].internal_date, NOV27);

    // No separating blank line before the next From_: nothing dropped.
    assert_eq!(
        String::from_utf8_lossy(&msgs[1].bytes),
        e("Subject: two\nX-Status: TD\nDate: Sat, 01 Jan 2000 00:00:00 +0000\n\nbody two\n")
    );
    assert_eq!(strs(&msgs[1].flags), ["\\Deleted", "\\Draft"]);
    // The From_ line's date wins over the Date header.
    assert_eq!(msgs[1].internal_date, NOV27 + 86_400);

    // Only the one separating blank line is dropped.
    assert_eq!(
        String::from_utf8_lossy(&msgs[2].bytes),
        e("Subject: three\nStatus: O\n\nbody three ends with blank line in the body\n\n")
    );
    assert!(msgs[2].flags.is_empty());
    assert_eq!(msgs[2].internal_date, NOV27 + 2 * 86_400);
}

#[test]
fn mbox_lf() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path().join("inbox.mbox"), MBOX);
    let mbox = Mbox::open(&path).unwrap();
    assert_eq!(mbox.estimate(), Estimate { messages: None, bytes: MBOX.len() as u64 });
    let mut mbox = mbox;
    let msgs: Vec<_> = mbox.by_ref().map(Result::unwrap).collect();
    check_mbox_messages(&msgs, "\n");
    assert_eq!(mbox.bytes_read(), MBOX.len() as u64);
}

#[test]
fn mbox_crlf() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path().join("inbox.mbox"), lf_to_crlf(MBOX));
    let msgs = all_ok(Mbox::open(&path).unwrap());
    check_mbox_messages(&msgs, "\r\n");
}

#[test]
fn mbox_dates_keywords_and_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = "\
From someone
Date: Fri, 27 Nov 2026 15:00:00 +0100
X-Keywords: $Junk Work
X-Mozilla-Status: 1003

no date on the From_ line

From nobody Fri Nov 27 14:00:00 2026
Subject: zone

body
";
    let path = write(tmp.path().join("Sent"), data);
    let msgs = all_ok(Mbox::open(&path).unwrap().with_folder("Sent"));
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].internal_date, NOV27);
    assert_eq!(msgs[0].folder, "Sent");
    assert_eq!(strs(&msgs[0].flags), ["\\Answered", "\\Seen"]);
    assert_eq!(strs(&msgs[0].keywords), ["$Junk", "Work", "$Forwarded"]);

    // Neither a From_ date nor a Date header: 0.
    let path = write(tmp.path().join("nodate"), "From x\nSubject: none\n\nbody\n");
    let msgs = all_ok(Mbox::open(&path).unwrap());
    assert_eq!(msgs[0].internal_date, 0);
}

#[test]
fn mbox_skips_folder_internal_data_and_reports_junk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = "\
garbage line
more garbage
From MAILER-DAEMON Fri Nov 27 14:00:00 2026
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA
X-IMAP: 1234567890 0000000002

This text is part of the internal format of your mail folder.

From a@b Fri Nov 27 14:00:00 2026
Subject: real

real

From c@d Fri Nov 27 14:00:00 2026

From e@f Fri Nov 27 14:00:00 2026
Subject: after empty

after
";
    let path = write(tmp.path().join("mbox"), data);
    let items: Vec<_> = Mbox::open(&path).unwrap().collect();
    assert_eq!(items.len(), 4, "{items:?}");
    let Err(err) = &items[0] else { panic!() };
    assert_eq!(err.path(), path);
    assert!(err.to_string().contains("26 bytes before the first"), "{err}");
    assert!(items[1].as_ref().unwrap().bytes.ends_with(b"\n\nreal\n"));
    let Err(err) = &items[2] else { panic!() };
    assert!(err.to_string().contains("message 3") && err.to_string().contains("empty"), "{err}");
    assert!(items[3].as_ref().unwrap().bytes.ends_with(b"\n\nafter\n"));

    // Not an mbox at all.
    let path = write(tmp.path().join("not-mbox"), "Subject: x\n\nbody\n");
    let items: Vec<_> = Mbox::open(&path).unwrap().collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().unwrap_err().to_string().contains("is not an mbox file"));

    // An empty file is an empty mbox.
    let path = write(tmp.path().join("empty"), "");
    assert_eq!(Mbox::open(&path).unwrap().count(), 0);

    // A directory is not an mbox file.
    let err = Mbox::open(tmp.path()).err().unwrap();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

/// An endless mbox, generated on the fly; it counts the bytes handed out.
struct EndlessMbox {
    message: Vec<u8>,
    offset: usize,
    served: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for EndlessMbox {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let chunk = &self.message[self.offset..];
            let take = chunk.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&chunk[..take]);
            n += take;
            self.offset = (self.offset + take) % self.message.len();
        }
        self.served.set(self.served.get() + n as u64);
        Ok(n)
    }
}

/// The reader pulls data as it goes: from an endless source it yields
/// messages after reading only about as much as they hold (whole-file
/// reading would never return), and it never holds more than one message.
#[test]
fn mbox_streams_and_never_reads_the_whole_file() {
    let message = b"From a@b Fri Nov 27 14:00:00 2026\nSubject: s\n\n>From body\nline\n\n".to_vec();
    let served = std::rc::Rc::new(std::cell::Cell::new(0));
    let source = EndlessMbox { message: message.clone(), offset: 0, served: served.clone() };
    const BUF: usize = 8 * 1024;
    let mut mbox = Mbox::from_reader("endless", BufReader::with_capacity(BUF, source), u64::MAX);
    for _ in 0..10_000 {
        let m = mbox.next().unwrap().unwrap();
        assert_eq!(m.bytes, b"Subject: s\n\nFrom body\nline\n");
        assert_eq!(m.internal_date, NOV27);
    }
    let consumed = 10_000 * message.len() as u64;
    assert!(mbox.bytes_read() >= consumed && mbox.bytes_read() <= consumed + message.len() as u64);
    assert!(served.get() <= mbox.bytes_read() + BUF as u64, "read {} bytes ahead", served.get() - mbox.bytes_read());
}

#[test]
fn mbox_long_lines_and_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // A body line of 200 000 bytes whose second 64 KiB piece begins with
    // something that would be a From_ line at a line start.
    let mut long = "x".repeat(64 * 1024);
    long.push_str("From a@b Fri Nov 27 14:00:00 2026 ");
    long.push_str(&"y".repeat(200_000 - long.len()));
    let data = format!(
        "From a@b Fri Nov 27 14:00:00 2026\nSubject: long\n\n{long}\n>From x\n\n\
         From a@b Fri Nov 27 14:00:00 2026\nSubject: small\n\nsmall\n"
    );
    let path = write(tmp.path().join("long"), &data);
    let msgs = all_ok(Mbox::open(&path).unwrap());
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].bytes, format!("Subject: long\n\n{long}\nFrom x\n").into_bytes());
    assert_eq!(msgs[1].bytes, b"Subject: small\n\nsmall\n");

    // Over the limit: an Err item, and the next message still comes.
    let items: Vec<_> = Mbox::open(&path).unwrap().with_max_message_size(1000).collect();
    assert_eq!(items.len(), 2);
    let err = items[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("message 1 (From_ line at byte 0) is larger than the limit of 1000 bytes"), "{err}");
    assert_eq!(items[1].as_ref().unwrap().bytes, b"Subject: small\n\nsmall\n");

    // The limit counts the message, not the separating blank line.
    let small = b"Subject: small\r\n\r\nsmall\r\n";
    let mut exact = b"From a@b Fri Nov 27 14:00:00 2026\r\n".to_vec();
    exact.extend_from_slice(small);
    exact.extend_from_slice(b"\r\n");
    let path = write(tmp.path().join("exact"), exact.repeat(2));
    let limit = small.len() as u64;
    let msgs = all_ok(Mbox::open(&path).unwrap().with_max_message_size(limit));
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].bytes, small);
    let items: Vec<_> = Mbox::open(&path).unwrap().with_max_message_size(limit - 1).collect();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.is_err()), "{items:?}");
}

// ---------------------------------------------------------------- eml

#[test]
fn eml_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir.join("b.eml"), "Date: Fri, 27 Nov 2026 14:00:00 +0000\r\nSubject: b\r\n\r\nbee\r\n");
    let a = write(dir.join("a.EML"), "Subject: a\n\nno date header\n");
    set_mtime(&a, 1_234_567_890);
    let c = write(dir.join("c.eml"), "Date: not a date\nSubject: c\n\nbad date\n");
    set_mtime(&c, 1_111_111_111);
    write(dir.join("notes.txt"), "not mail");
    write(dir.join("._b.eml"), "AppleDouble junk");
    fs::create_dir(dir.join("d.eml")).unwrap();
    write(dir.join("sub/e.eml"), "Subject: e\n\nnot recursive\n");

    let eml = EmlDir::open(dir).unwrap();
    assert_eq!(eml.estimate().messages, Some(4));
    let items: Vec<_> = eml.with_folder("Imported").collect();
    assert_eq!(items.len(), 4);
    let msgs: Vec<&MailMessage> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].bytes, b"Subject: a\n\nno date header\n");
    assert_eq!(msgs[0].internal_date, 1_234_567_890);
    assert_eq!(msgs[1].internal_date, NOV27);
    assert_eq!(msgs[2].internal_date, 1_111_111_111);
    assert!(msgs.iter().all(|m| m.flags.is_empty() && m.keywords.is_empty() && m.folder == "Imported"));
    let Err(err) = &items[3] else { panic!() };
    assert_eq!(err.path(), dir.join("d.eml"));
    assert!(err.to_string().contains("is a directory, not a message file"), "{err}");
}

// ---------------------------------------------------------------- writer

fn sample_messages() -> Vec<MailMessage> {
    let msg = |folder: &str, flags: &[&str], keywords: &[&str], date: i64, body: &str| MailMessage {
        folder: folder.to_string(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
        internal_date: date,
        bytes: body.as_bytes().to_vec(),
    };
    vec![
        msg("INBOX", &["\\Seen"], &[], 1_700_000_000, "Subject: 1\r\n\r\none\r\n"),
        msg("INBOX", &[], &[], 1_700_000_001, "Subject: 2\n\nunseen\n"),
        msg(
            "INBOX",
            &["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"],
            &["$Forwarded", "$Junk", "Work"],
            1_700_000_002,
            "Subject: 3\n\nall flags\n",
        ),
        msg("Sent", &["\\Seen"], &["$Forwarded"], 0, "Subject: 4\n\nepoch\n"),
        msg("Lists/rust", &["\\Seen"], &["Work"], NOV27, "Subject: 5\n\nFrom here\n"),
        msg("Lists/rust", &[], &["$Junk", "Rust"], NOV27 + 1, "Subject: 6\n\nbinary \u{0}\u{1}\n"),
        msg("Entwürfe/台北", &["\\Draft"], &[], 1_000_000_000, "Subject: 7\n\nnon-ascii folder\n"),
        msg("R&D", &[], &[], 1_700_000_003, "Subject: 8\n\nampersand\n"),
        msg("INBOX/Sub", &[], &[], 1_700_000_004, "Subject: 9\n\ninbox child\n"),
    ]
}

fn normalized(mut msgs: Vec<MailMessage>) -> Vec<MailMessage> {
    for m in &mut msgs {
        m.flags.sort();
        m.keywords.sort();
    }
    msgs.sort_by(|a, b| (&a.folder, &a.bytes).cmp(&(&b.folder, &b.bytes)));
    msgs
}

#[test]
fn writer_reader_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("export");
    let mut writer = MaildirWriter::create(&root).unwrap();
    writer.create_folder("Empty").unwrap();
    let originals = sample_messages();
    let mut written = Vec::new();
    for m in &originals {
        let w = writer.append(m).unwrap();
        assert!(w.dropped_keywords.is_empty());
        written.push(w.path);
    }
    writer.finish().unwrap();

    // Layout.
    for d in ["cur", "new", "tmp", ".Sent/cur", ".Lists.rust/tmp", ".Entw&APw-rfe.&U,BTFw-/new"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    for d in [".Sent", ".Lists.rust", ".Entw&APw-rfe.&U,BTFw-", ".R&-D", ".INBOX.Sub", ".Empty"] {
        assert!(root.join(d).join("maildirfolder").is_file(), "{d}");
    }
    assert!(!root.join("maildirfolder").exists());
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join(".Lists.rust/tmp")).unwrap().count(), 0);
    let kw = fs::read_to_string(root.join("dovecot-keywords")).unwrap();
    assert_eq!(kw, "0 $Junk\n1 Work\n");
    let kw = fs::read_to_string(root.join(".Lists.rust/dovecot-keywords")).unwrap();
    assert_eq!(kw, "0 Work\n1 $Junk\n2 Rust\n");

    // File names and mtimes.
    let name = written[2].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("1700000002."), "{name}");
    assert!(name.ends_with(&format!(",S={}:2,DFPRSTab", originals[2].bytes.len())), "{name}");
    assert_eq!(written[2].parent().unwrap(), root.join("cur"));
    for (path, m) in written.iter().zip(&originals) {
        let mtime = fs::metadata(path).unwrap().modified().unwrap();
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(m.internal_date as u64));
        assert_eq!(fs::read(path).unwrap(), m.bytes);
    }
    assert!(written[1].to_str().unwrap().ends_with(":2,"));

    // Read back.
    let md = Maildir::open(&root).unwrap();
    assert_eq!(md.folders(), ["INBOX", "Empty", "Entwürfe/台北", "INBOX/Sub", "Lists/rust", "R&D", "Sent"]);
    assert_eq!(md.estimate().messages, Some(originals.len() as u64));
    let back = all_ok(md);
    assert_eq!(normalized(back), normalized(originals.clone()));

    // Appending to an existing export keeps the keyword table.
    let mut writer = MaildirWriter::create(&root).unwrap();
    let mut extra = originals[5].clone();
    extra.keywords = vec!["rust".into(), "New".into()];
    extra.bytes = b"Subject: 10\n\nappended\n".to_vec();
    writer.append(&extra).unwrap();
    writer.finish().unwrap();
    let kw = fs::read_to_string(root.join(".Lists.rust/dovecot-keywords")).unwrap();
    assert_eq!(kw, "0 Work\n1 $Junk\n2 Rust\n3 New\n");
    let back = all_ok(Maildir::open(&root).unwrap());
    assert_eq!(back.len(), originals.len() + 1);
    let m = find(&back, "appended");
    assert_eq!(strs(&m.keywords), ["Rust", "New"]);
}

#[test]
fn writer_rejects_what_maildir_cannot_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let mut writer = MaildirWriter::create(tmp.path()).unwrap();
    let mut m = MailMessage { folder: "v1.2".into(), bytes: b"Subject: x\n\nx\n".to_vec(), ..MailMessage::default() };
    let err = writer.append(&m).unwrap_err();
    assert!(matches!(err, ExportError::InvalidFolder { .. }));
    assert!(err.to_string().contains("\"v1.2\""), "{err}");

    m.folder = "INBOX".into();
    m.flags = vec!["\\Bogus".into()];
    let err = writer.append(&m).unwrap_err();
    assert_eq!(err.to_string(), "cannot write flag \\Bogus: Maildir has no letter for it");

    // \Recent is skipped; invalid keywords and the 27th keyword are dropped.
    m.flags = vec!["\\Recent".into(), "\\seen".into()];
    m.keywords = (0..27).map(|i| format!("k{i}")).collect();
    m.keywords.push("bad keyword".into());
    let w = writer.append(&m).unwrap();
    assert_eq!(w.dropped_keywords, ["k26", "bad keyword"]);
    let back = all_ok(Maildir::open(tmp.path()).unwrap());
    assert_eq!(back.len(), 1);
    assert_eq!(strs(&back[0].flags), ["\\Seen"]);
    assert_eq!(back[0].keywords.len(), 26);
}

#[test]
fn mbox_to_maildir_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path().join("inbox.mbox"), lf_to_crlf(MBOX));
    let from_mbox = all_ok(Mbox::open(&path).unwrap());
    let mut writer = MaildirWriter::create(tmp.path().join("md")).unwrap();
    for m in &from_mbox {
        writer.append(m).unwrap();
    }
    writer.finish().unwrap();
    let back = all_ok(Maildir::open(tmp.path().join("md")).unwrap());
    assert_eq!(normalized(back), normalized(from_mbox));
}

// ---------------------------------------------------------------- names

#[test]
fn modified_utf7_rfc3501() {
    let utf8 = "~peter/mail/台北/日本語";
    let utf7 = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
    assert_eq!(utf7_imap_encode(utf8), utf7);
    assert_eq!(utf7_imap_decode(utf7).as_deref(), Some(utf8));
    assert_eq!(utf7_imap_decode("&Jjo!"), None);
    assert_eq!(utf7_imap_decode("&U,BTFw-&ZeVnLIqe-"), None);
    assert_eq!(utf7_imap_encode("&&x&&"), "&-&-x&-&-");
}

#[test]
fn errors_are_sentences_with_paths() {
    let err = ImportError::Io {
        path: "/x/cur/1.a".into(),
        action: "read message file",
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    assert_eq!(err.to_string(), "could not read message file /x/cur/1.a: permission denied");
}
