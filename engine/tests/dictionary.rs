//! Per-store dictionaries (format version 3): training from the store's own mail, codec-2
//! blobs, the dictionary files and what happens when one is missing or damaged.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::dict::{FIRST_DICT_ID, TrainingState, dict_file_name};
use postlog_engine::format::SegmentHeader;
use postlog_engine::store::state_of;
use postlog_engine::{AppendTarget, OpenError, Options, ReadError, Store};

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus");
    let mut files: Vec<PathBuf> = Vec::new();
    for folder in ["ham", "spam"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The `i`-th message of a stream made from the corpus, unique through its first line.
fn message(corpus: &[Vec<u8>], i: usize) -> Vec<u8> {
    let mut m = format!("Received: from relay{i}.example.test by mx.example.test; id {i}\r\n").into_bytes();
    m.extend_from_slice(&corpus[i % corpus.len()]);
    m
}

/// Options that train after 200 messages (the corpus holds 300).
fn options() -> Options {
    Options { dictionary_min_samples: 200, dictionary_min_bytes: 256 << 10, ..Options::default() }
}

fn target(account: u32, mailbox: u32) -> AppendTarget {
    AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 1_700_000_000 }
}

fn wait_ready(store: &Store) -> u32 {
    let started = Instant::now();
    loop {
        match store.dictionary_state() {
            TrainingState::Ready(id) => return id,
            TrainingState::Failed(e) | TrainingState::Off(e) => panic!("no dictionary: {e}"),
            _ if started.elapsed() > Duration::from_secs(60) => panic!("training took over 60 s"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A store that trained: (store, account, inbox, the appended messages by UID - 1).
fn trained(dir: &Path, options: Options, n: usize) -> (Store, u32, u32, Vec<Vec<u8>>) {
    let corpus = corpus();
    let store = Store::open(dir, options).unwrap();
    let acc = store.create_account("alice@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let mut sent = Vec::new();
    for i in 0..n {
        if i == 250 {
            wait_ready(&store);
        }
        let m = message(&corpus, i);
        store.append(&m, &[target(acc, inbox)]).unwrap();
        sent.push(m);
    }
    (store, acc, inbox, sent)
}

fn codec_of(store: &Store, acc: u32, inbox: u32, uid: u32) -> u8 {
    let st = state_of(store);
    let m = st.mailbox(acc, inbox).unwrap().message(uid).unwrap().blob;
    st.blobs[&m].codec
}

fn assert_all_read_back(store: &Store, acc: u32, inbox: u32, sent: &[Vec<u8>], ctx: &str) {
    for (i, m) in sent.iter().enumerate() {
        let uid = i as u32 + 1;
        let got = store.read_message(acc, inbox, uid).unwrap_or_else(|e| panic!("{ctx}: UID {uid}: {e}"));
        assert!(got == *m, "{ctx}: UID {uid} reads back different bytes");
    }
}

#[test]
fn a_store_trains_after_the_threshold_and_later_appends_use_the_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let (store, acc, inbox, sent) = trained(dir.path(), options(), 400);
    assert_eq!(store.dictionary_state(), TrainingState::Ready(FIRST_DICT_ID));
    // Before training: plain zstd; after: codec 2, naming dictionary 0x8001.
    assert_eq!(codec_of(&store, acc, inbox, 1), 1);
    let late: Vec<u8> = (251..=400).map(|uid| codec_of(&store, acc, inbox, uid)).collect();
    assert!(late.iter().filter(|&&c| c == 2).count() > 140, "later appends are codec 2: {late:?}");
    assert!(!late.contains(&1), "no plain zstd once the dictionary is ready");
    let file = dir.path().join(dict_file_name(FIRST_DICT_ID));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"PLOGDICT");
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), FIRST_DICT_ID);
    assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), FIRST_DICT_ID, "id inside the zstd dictionary");
    assert!(bytes.len() > 16 << 10 && bytes.len() <= 32 + (32 << 10), "{} bytes", bytes.len());
    // Smaller than plain zstd at the default level.
    let st = state_of(&store);
    let (mut with, mut raw_with) = (0u64, 0u64);
    for b in st.blobs.values().filter(|b| b.codec == 2) {
        with += u64::from(b.data.len);
        raw_with += b.raw_len;
    }
    let ratio = with as f64 / raw_with as f64;
    assert!(ratio < 0.45, "codec 2 stores {ratio:.3} of raw");
    assert_all_read_back(&store, acc, inbox, &sent, "live");
    let third = store.read_range(acc, inbox, 300, 10, 60).unwrap();
    assert_eq!(third, sent[299][10..60]);
    drop(store);

    // Reopened: the dictionary is loaded from its file, and appends go on using it.
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.dictionary_state(), TrainingState::Ready(FIRST_DICT_ID));
    let files = store.dictionaries().files();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].id, files[0].problem.clone()), (FIRST_DICT_ID, None));
    assert_all_read_back(&store, acc, inbox, &sent, "reopened");
    let m = message(&corpus(), 1000);
    let done = store.append(&m, &[target(acc, inbox)]).unwrap();
    assert_eq!(codec_of(&store, acc, inbox, done[0].uid), 2);
    assert_eq!(store.read_message(acc, inbox, done[0].uid).unwrap(), m);
    // Without the snapshot, from the log alone.
    store.close().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(!store.recovery_report().snapshot_used);
    assert_all_read_back(&store, acc, inbox, &sent, "replayed");
}

#[test]
fn dictionaries_off_or_below_the_threshold_never_train() {
    let dir = tempfile::tempdir().unwrap();
    let (store, acc, inbox, _) = trained(dir.path(), Options { dictionary: false, ..options() }, 240);
    assert!(matches!(store.dictionary_state(), TrainingState::Off(_)));
    assert_eq!(codec_of(&store, acc, inbox, 240), 1);
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let (store, ..) = trained(dir.path(), Options { dictionary_min_samples: 10_000, ..options() }, 240);
    assert!(matches!(store.dictionary_state(), TrainingState::Sampling { samples: 240, .. }));
    assert!(store.dictionaries().files().is_empty());
    // Prepared messages without a store never use a dictionary.
    let m = message(&corpus(), 1);
    assert_eq!(postlog_engine::PreparedMessage::new(&m, &options()).codec(), 1);
}

#[test]
fn a_missing_dictionary_fails_only_its_messages_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, acc, inbox, sent) = trained(dir.path(), options(), 300);
    drop(store);
    std::fs::remove_file(dir.path().join(dict_file_name(FIRST_DICT_ID))).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    // It does not train another: blobs name the lost one.
    match store.dictionary_state() {
        TrainingState::Off(why) => assert!(why.contains("missing"), "{why}"),
        other => panic!("{other:?}"),
    }
    let (mut ok, mut failed) = (0, 0);
    for (i, m) in sent.iter().enumerate() {
        let uid = i as u32 + 1;
        match (codec_of(&store, acc, inbox, uid), store.read_message(acc, inbox, uid)) {
            (2, Err(ReadError::Corrupt { reason, .. })) => {
                assert!(reason.contains("0x8001") && reason.contains("dict-00008001.zdict is missing"), "{reason}");
                failed += 1;
            }
            (2, other) => panic!("UID {uid}: {:?}", other.map(|b| b.len())),
            (_, got) => {
                assert!(got.unwrap() == *m, "UID {uid}");
                ok += 1;
            }
        }
    }
    assert!(ok >= 200 && failed >= 40, "{ok} readable, {failed} not");
    // Appends go on, without a dictionary.
    let m = message(&corpus(), 5000);
    let done = store.append(&m, &[target(acc, inbox)]).unwrap();
    assert_eq!(codec_of(&store, acc, inbox, done[0].uid), 1);
    assert_eq!(store.read_message(acc, inbox, done[0].uid).unwrap(), m);
}

#[test]
fn a_corrupt_dictionary_file_is_detected_by_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (store, acc, inbox, sent) = trained(dir.path(), options(), 300);
    drop(store);
    let path = dir.path().join(dict_file_name(FIRST_DICT_ID));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let files = store.dictionaries().files();
    let problem = files[0].problem.clone().expect("a problem");
    assert!(problem.contains("CRC-32C"), "{problem}");
    assert!(matches!(store.dictionary_state(), TrainingState::Off(_)));
    let uid = (1..=300).find(|&u| codec_of(&store, acc, inbox, u) == 2).unwrap();
    match store.read_message(acc, inbox, uid) {
        Err(e @ ReadError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains("0x8001") && text.contains("unusable") && text.contains("CRC"), "{text}");
        }
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    assert_eq!(store.read_message(acc, inbox, 1).unwrap(), sent[0]);
}

#[test]
fn compaction_moves_codec_2_blobs_and_they_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { max_segment_bytes: 256 << 10, ..options() };
    let (store, acc, inbox, sent) = trained(dir.path(), opts.clone(), 400);
    let segments_before = store.segment_sizes().len();
    assert!(segments_before > 3);
    // Expunge every other message, then compact everything that has dead bytes.
    let odd: Vec<u32> = (1..=400).filter(|u| u % 2 == 1).collect();
    store.expunge(acc, inbox, Some(&odd)).unwrap();
    let report = store.compact(0.1).unwrap();
    assert!(report.blobs_moved > 50 && !report.segments_dropped.is_empty(), "{report:?}");
    let st = state_of(&store);
    let moved_codec_2 = st.blobs.values().filter(|b| b.codec == 2 && b.refs > 0).count();
    assert!(moved_codec_2 > 50);
    for uid in (2..=400).step_by(2) {
        assert!(store.read_message(acc, inbox, uid).unwrap() == sent[uid as usize - 1], "UID {uid}");
    }
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    for uid in (2..=400).step_by(2) {
        assert!(store.read_message(acc, inbox, uid).unwrap() == sent[uid as usize - 1], "UID {uid} reopened");
    }
}

#[test]
fn dedup_works_across_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, acc, inbox, sent) = trained(dir.path(), options(), 300);
    // Message 3 was stored with plain zstd before training; the same bytes again now.
    assert_eq!(codec_of(&store, acc, inbox, 3), 1);
    let blobs = state_of(&store).blobs.len();
    let done = store.append(&sent[2], &[target(acc, inbox)]).unwrap();
    let st = state_of(&store);
    assert_eq!(st.blobs.len(), blobs, "stored once");
    let mb = st.mailbox(acc, inbox).unwrap();
    assert_eq!(mb.message(done[0].uid).unwrap().blob, mb.message(3).unwrap().blob);
    // And a message first stored with the dictionary, appended again.
    assert_eq!(codec_of(&store, acc, inbox, 280), 2);
    let again = store.append(&sent[279], &[target(acc, inbox)]).unwrap();
    assert_eq!(state_of(&store).blobs.len(), blobs);
    assert_eq!(store.read_message(acc, inbox, again[0].uid).unwrap(), sent[279]);
}

#[test]
fn a_version_2_store_opens_and_gains_a_dictionary() {
    let corpus = corpus();
    let mem = MemBackend::new();
    let old = Options { dictionary: false, max_segment_bytes: 128 << 10, ..options() };
    let store = Store::open_backend(Arc::new(mem.clone()), old).unwrap();
    let acc = store.create_account("alice@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let mut sent = Vec::new();
    for i in 0..100 {
        let m = message(&corpus, i);
        store.append(&m, &[target(acc, inbox)]).unwrap();
        sent.push(m);
    }
    store.close().unwrap();
    drop(store);
    // Make it what a version 2 Postlog wrote: segment and snapshot headers say 2.
    for name in mem.list().unwrap() {
        let Some(mut bytes) = mem.file_bytes(&name) else { continue };
        if name.starts_with("seg-") {
            bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
            let crc = postlog_engine::format::crc32c(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        } else if name == "index.snap" {
            bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        }
        mem.set_file_bytes(&name, bytes);
    }
    let segs_v2: Vec<String> = mem.list().unwrap().into_iter().filter(|n| n.starts_with("seg-")).collect();
    let store = Store::open_backend(Arc::new(mem.clone()), options()).unwrap();
    assert!(store.recovery_report().snapshot_used, "a version 2 snapshot is used");
    assert_all_read_back(&store, acc, inbox, &sent, "version 2 store");
    // Its last segment was sealed at open: this version writes into a version 3 segment.
    let segs: Vec<String> = mem.list().unwrap().into_iter().filter(|n| n.starts_with("seg-")).collect();
    let newest = mem.file_bytes(segs.last().unwrap()).unwrap();
    assert!(!segs_v2.contains(segs.last().unwrap()));
    assert_eq!(u32::from_le_bytes(newest[8..12].try_into().unwrap()), 3);
    assert!(SegmentHeader::decode(&newest).is_ok());
    // Sampling starts with this open: 200 samples are reached at message 300.
    for i in 100..400 {
        if i == 350 {
            wait_ready(&store);
        }
        let m = message(&corpus, i);
        store.append(&m, &[target(acc, inbox)]).unwrap();
        sent.push(m);
    }
    assert_eq!(codec_of(&store, acc, inbox, 400), 2);
    drop(store);
    let store = Store::open_backend(Arc::new(mem.crash_image(|_, _| None)), options()).unwrap();
    assert_all_read_back(&store, acc, inbox, &sent, "version 2 store with a dictionary, reopened");
}

#[test]
fn a_store_with_a_segment_of_version_1_is_still_refused() {
    let mem = MemBackend::new();
    drop(Store::open_backend(Arc::new(mem.clone()), options()).unwrap());
    let name = "seg-0000000000000001.log";
    let mut bytes = mem.file_bytes(name).unwrap();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = postlog_engine::format::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    mem.set_file_bytes(name, bytes);
    match Store::open_backend(Arc::new(mem), options()) {
        Err(e @ OpenError::UnsupportedFormat { version: 1, .. }) => {
            assert!(e.to_string().contains("versions 2 to 3"), "{e}")
        }
        other => panic!("{:?}", other.err()),
    }
}

/// A training that fails (here: 6 samples, of which zstd's trainer keeps 4 to train on, below
/// the 5 it needs)
/// never fails an append; it is retried with fresh samples, then given up until the next open.
#[test]
fn a_failed_training_never_fails_an_append() {
    let mem = MemBackend::new();
    let opts = Options { dictionary_min_samples: 6, dictionary_min_bytes: 0, ..Options::default() };
    let store = Store::open_backend(Arc::new(mem.clone()), opts).unwrap();
    let acc = store.create_account("alice@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let mut failed = None;
    for i in 0..200u32 {
        let m = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(60));
        let done = store.append(m.as_bytes(), &[target(acc, inbox)]).unwrap();
        assert_eq!(store.read_message(acc, inbox, done[0].uid).unwrap(), m.as_bytes());
        // Let each attempt finish before the next six samples arrive.
        if i % 6 == 5 {
            let started = Instant::now();
            while store.dictionary_state() == TrainingState::Training && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let TrainingState::Failed(e) = store.dictionary_state() {
            failed = Some((i, e));
            break;
        }
    }
    let (at, why) = failed.expect("training gave up");
    assert!(why.contains("zstd training failed"), "{why}");
    // Three attempts of six samples each.
    assert_eq!(at, 17, "gave up after message {at}");
    assert!(mem.list().unwrap().iter().all(|f| !f.contains("zdict")));
    let done = store.append(b"Subject: after\r\n\r\nstill fine\r\n", &[target(acc, inbox)]).unwrap();
    assert_eq!(store.read_message(acc, inbox, done[0].uid).unwrap(), b"Subject: after\r\n\r\nstill fine\r\n");
}

/// Large bodies (base64 attachments above all) are compressed without the dictionary, at
/// `zstd_level`: the dictionary's default level -1 does not entropy-code literals and left
/// them as big as they came.
#[test]
fn large_bodies_are_compressed_without_the_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { dictionary_min_samples: 10, dictionary_min_bytes: 1, ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    for i in 0..40 {
        let m = format!("Subject: small {i}\r\nFrom: a@example.test\r\n\r\n{}\r\n", "some text of mail\r\n".repeat(30));
        store
            .append(
                m.as_bytes(),
                &[AppendTarget { account: acc, mailbox: inbox, flags: 0, keywords: vec![], internal_date: 0 }],
            )
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !matches!(store.dictionary_state(), postlog_engine::dict::TrainingState::Ready(_)) {
        assert!(std::time::Instant::now() < deadline, "no dictionary: {:?}", store.dictionary_state());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let raw = common::base64_body(b"Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n", 300_000);
    let small = store.prepare(b"Subject: s\r\n\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\nsome text of mail\r\n");
    assert_eq!(small.codec(), 2, "a small body uses the dictionary");
    let big = store.prepare(&raw);
    assert_eq!(big.codec(), 1, "a large body is compressed without the dictionary");
    assert!(big.stored_len() < raw.len() * 80 / 100, "base64 stored at {} of {} bytes", big.stored_len(), raw.len());
}
