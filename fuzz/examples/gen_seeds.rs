//! Writes the seed inputs of the fuzz targets under `fuzz/seeds/<target>/`:
//! `cd fuzz && cargo run --example gen_seeds`. Deterministic apart from the dates stores put
//! into their records; small (a few KB per file) so they can be committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::format::{Codec, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SegmentHeader, encode_frame};
use postlog_engine::log::parse_segment_file_name;
use postlog_engine::meta;
use postlog_engine::record::{Checkpoint, FlagOp, Record};
use postlog_engine::snapshot::{self, SNAPSHOT_FILE};
use postlog_engine::state::flag;
use postlog_engine::store::state_of;
use postlog_engine::{AppendTarget, Options, Store};

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create seeds dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(seeds_dir(target).join(name), bytes).expect("write seed");
}

fn record_samples() -> Vec<(&'static str, Record)> {
    vec![
        ("account-create", Record::AccountCreate { account: 1, name: "alice@example.test".into() }),
        ("account-delete", Record::AccountDelete { account: 1 }),
        (
            "mailbox-create",
            Record::MailboxCreate {
                account: 1,
                mailbox: 2,
                name: "Lists/rust".into(),
                uidvalidity: 9,
                special_use: 4,
                modseq: 3,
            },
        ),
        (
            "mailbox-rename",
            Record::MailboxRename { account: 1, modseq: 4, renames: vec![(2, "A".into()), (3, "A/B".into())] },
        ),
        ("mailbox-delete", Record::MailboxDelete { account: 1, mailbox: 2, modseq: 5 }),
        ("subscribe", Record::Subscribe { account: 1, name: "X".into(), subscribed: true }),
        ("blob", Record::Blob { blob: 5, hash: [7; 32], raw_len: 11 }),
        ("meta", Record::Meta { blob: 5 }),
        (
            "message-append",
            Record::MessageAppend {
                account: 1,
                mailbox: 2,
                uid: 3,
                modseq: 4,
                blob: 5,
                size: 11,
                flags: 6,
                keywords: vec!["$Forwarded".into()],
                internal_date: -7,
                save_date: 8,
                thread: 9,
                links: vec![0x0123_4567_89ab_cdef, 42],
            },
        ),
        (
            "flags",
            Record::Flags {
                account: 1,
                mailbox: 2,
                modseq: 3,
                op: FlagOp::Remove,
                flags: 1,
                keywords: vec!["$Junk".into()],
                uids: vec![(1, 3), (7, 7)],
            },
        ),
        ("expunge", Record::Expunge { account: 1, mailbox: 2, modseq: 3, uids: vec![(4, 9)] }),
        (
            "copy",
            Record::Copy { account: 1, from: 2, to: 3, modseq: 4, save_date: 5, first_uid: 6, uids: vec![(1, 2)] },
        ),
        ("special-use", Record::SpecialUse { account: 1, mailbox: 2, special_use: 1, modseq: 9 }),
        ("checkpoint", Record::Checkpoint(Checkpoint { state: snapshot::encode_logical(&Default::default()) })),
        ("segment-drop", Record::SegmentDrop { segment: 3 }),
        ("commit", Record::Commit { first_lsn: 10, count: 2, batch_seq: 5, batch_end: true }),
        ("seal", Record::Seal { records: 10, last_lsn: 20 }),
    ]
}

fn record_seeds() {
    for (name, rec) in record_samples() {
        let mut payload = Vec::new();
        rec.encode_payload(&mut payload);
        if matches!(rec, Record::Blob { .. }) {
            payload.extend_from_slice(b"hello world");
        }
        write("record_decode", &format!("payload-{name}"), &payload);
        let mut frame = Vec::new();
        encode_frame(&mut frame, rec.kind(), Codec::None, 42, rec.account(), &[&payload]);
        write("record_decode", &format!("frame-{name}"), &frame);
    }
}

/// Seed message `i`; odd ones reply to the one before (so appends carry thread links).
fn msg(i: usize, extra: &str) -> Vec<u8> {
    let reply = if i % 2 == 1 { format!("In-Reply-To: <seed{}@example.test>\r\n", i - 1) } else { String::new() };
    format!(
        "From: \"Seed {i}\" <seed{i}@example.test>\r\nTo: box@example.test\r\nSubject: seed {i}{extra}\r\n\
         Message-ID: <seed{i}@example.test>\r\n{reply}\r\nbody of seed message {i}\r\n"
    )
    .into_bytes()
}

/// A store that has seen every kind of operation.
fn busy_store(options: Options) -> (MemBackend, Store) {
    let mem = MemBackend::new();
    let store = Store::open_backend(Arc::new(mem.clone()), options).expect("open in memory");
    let a = store.create_account("seed@example.test", &[("Sent", 2), ("Archive", 16)]).expect("account");
    let lists = store.create_mailbox(a, "Lists/rust", 0).expect("mailbox");
    let t = |mailbox, flags| AppendTarget { account: a, mailbox, flags, keywords: vec![], internal_date: 1_000 };
    for i in 0..6 {
        let mut targets = vec![t(1, 0)];
        if i % 2 == 0 {
            targets.push(t(lists, flag::SEEN));
        }
        store.append(&msg(i, ""), &targets).expect("append");
    }
    store.store_flags(a, 1, &[1, 2, 3], FlagOp::Add, flag::FLAGGED, &["$Seed".into()], None).expect("flags");
    store.store_flags(a, 1, &[2], FlagOp::Replace, flag::DELETED, &[], None).expect("flags");
    store.expunge(a, 1, None).expect("expunge");
    store.copy(a, 1, 2, &[1, 3]).expect("copy");
    store.move_messages(a, 1, 3, &[4]).expect("move");
    store.rename_mailbox(a, "Lists/rust", "Lists/Rust").expect("rename");
    store.subscribe(a, "Sent", true).expect("subscribe");
    store.set_special_use(a, "Archive", 8).expect("special use");
    let b = store.create_account("other@example.test", &[]).expect("account");
    store.append(&msg(0, ""), &[AppendTarget { account: b, ..t(1, 0) }]).expect("append");
    store.delete_mailbox(a, "Archive").expect("delete mailbox");
    (mem, store)
}

/// The input `segment_scan` reads (see its doc comment) for a data directory.
fn encode_dir(mem: &MemBackend, with_snapshot: bool) -> Vec<u8> {
    let mut ids: Vec<(u64, String)> =
        mem.list().expect("list").into_iter().filter_map(|n| parse_segment_file_name(&n).map(|id| (id, n))).collect();
    ids.sort();
    let mut out = Vec::new();
    let mut prev = 0u64;
    for (i, (id, name)) in ids.iter().enumerate() {
        let bytes = mem.file_bytes(name).expect("segment bytes");
        let header = SegmentHeader::decode(&bytes).expect("segment header");
        if i == 0 && *id == 1 && header.base_lsn == 1 {
            out.extend_from_slice(&bytes[SEGMENT_HEADER_LEN..]);
        } else {
            out.extend_from_slice(&SEGMENT_MAGIC);
            out.push(u8::try_from(id - prev - 1).expect("small gap"));
            out.extend_from_slice(&header.base_lsn.to_le_bytes());
            out.extend_from_slice(&bytes[SEGMENT_HEADER_LEN..]);
        }
        prev = *id;
    }
    if with_snapshot && let Some(s) = mem.file_bytes(SNAPSHOT_FILE) {
        out.extend_from_slice(&s);
    }
    out
}

fn segment_and_snapshot_seeds() {
    write("segment_scan", "empty", b"");

    let (mem, store) = busy_store(Options::default());
    let log = encode_dir(&mem, false);
    write("segment_scan", "busy", &log);
    // Torn: the last record cut in half; and garbage after the last commit.
    write("segment_scan", "busy-torn", &log[..log.len() - 20]);
    let mut garbage = log.clone();
    garbage.extend_from_slice(b"PLR1 not a record at all");
    write("segment_scan", "busy-garbage-tail", &garbage);
    store.close().expect("close");
    drop(store);
    write("segment_scan", "busy-snapshot", &encode_dir(&mem, true));
    let snap = mem.file_bytes(SNAPSHOT_FILE).expect("snapshot");
    write("snapshot_decode", "busy", &snap);

    // Several segments, compacted (the first ones dropped), with a checkpoint and snapshot.
    let options = Options { max_segment_bytes: 1536, ..Options::default() };
    let (mem, store) = busy_store(options);
    store.expunge(1, 1, None).expect("expunge");
    let all: Vec<u32> = store.messages(1, 2).expect("messages").iter().map(|m| m.uid).collect();
    store.expunge(1, 2, Some(&all)).expect("expunge");
    let report = store.compact(0.0).expect("compact");
    assert!(!report.segments_dropped.is_empty(), "compaction dropped nothing: {report:?}");
    store
        .append(
            &msg(99, " after compaction"),
            &[AppendTarget { account: 1, mailbox: 1, flags: 0, keywords: vec![], internal_date: 0 }],
        )
        .expect("append");
    write("segment_scan", "compacted", &encode_dir(&mem, false));
    store.close().expect("close");
    drop(store);
    write("segment_scan", "compacted-snapshot", &encode_dir(&mem, true));
    write("snapshot_decode", "compacted", &mem.file_bytes(SNAPSHOT_FILE).expect("snapshot"));

    let (_mem, store) = busy_store(Options::default());
    write("snapshot_decode", "logical", &snapshot::encode_logical(&state_of(&store)));
    // Edits (offset, xor) for the built-in snapshot of the target.
    write("snapshot_decode", "edits", &[0, 0, 1, 40, 0, 0x80, 7, 1, 0xff]);
}

const NESTED: &str = "From: a@example.test\r\nTo: b@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nhello\r\n--outer\r\n\
Content-Type: message/rfc822\r\n\r\nFrom: c@example.test\r\nSubject: inner\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n\r\n--outer\r\n\
Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--outer--\r\nepilogue\r\n";

fn meta_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus");
    let mut messages: Vec<(String, Vec<u8>)> = vec![("nested".into(), NESTED.as_bytes().to_vec())];
    for name in [
        "ham/00143.4cae4623140fc349a57dac7ffd863227.eml",
        "ham/00062.009f5a1a8fa88f0b38299ad01562bb37.eml",
        "spam/00023.b6d27c684f5fc803cfa1060adb2d0805.eml",
    ] {
        let raw = std::fs::read(corpus.join(name)).expect("corpus message");
        messages.push((name.replace('/', "-").chars().take(9).collect(), raw));
    }
    for (name, raw) in messages {
        write("meta_decode", &format!("raw-{name}"), &raw);
        write("meta_decode", &format!("encoded-{name}"), &meta::parse(&raw).encode());
    }
}

fn main() {
    record_seeds();
    segment_and_snapshot_seeds();
    meta_seeds();
    println!("seeds written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").display());
}
