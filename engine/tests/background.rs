//! Background compression (`Compression::Background`): bodies are committed as they came and
//! compressed later; reads, replay, compaction and crashes must not tell the difference.

mod common;

use std::sync::Arc;

use postlog_engine::backend::MemBackend;
use postlog_engine::store::state_of;
use postlog_engine::{AppendTarget, Compression, FlagOp, Options, Store, flag};

fn body(i: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: background {i}\r\n\
         Message-ID: <{i}@background.test>\r\n\r\nHello number {i}.\r\n{}\r\n",
        "some fairly compressible body text, line after line\r\n".repeat(20 + i % 30)
    )
    .into_bytes()
}

fn target(account: u32, mailbox: u32) -> AppendTarget {
    AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 1_700_000_000 }
}

fn options() -> Options {
    Options { compression: Compression::Background, ..Options::default() }
}

/// (raw blobs, compressed blobs) among those still referenced.
fn codecs(store: &Store) -> (usize, usize) {
    let st = state_of(store);
    let live = st.blobs.values().filter(|b| b.refs > 0);
    let raw = live.clone().filter(|b| b.codec == 0).count();
    (raw, live.count() - raw)
}

#[test]
fn bodies_are_compressed_after_the_commit_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    // The background thread runs only on idle cores; on a busy machine some bodies may be
    // compressed already, and the rest below.
    for i in 0..200 {
        store.append(&body(i), &[target(acc, inbox)]).unwrap();
    }
    store.compress_backlog_now().unwrap();
    assert_eq!(store.compression_backlog(), (0, 0));
    assert_eq!(codecs(&store), (0, 200), "every body compressed");
    for i in 0..200 {
        assert_eq!(store.read_message(acc, inbox, i as u32 + 1).unwrap(), body(i), "body {i}");
    }
    let live = state_of(&store);
    // Replay from the log alone gives the same state: the compressed copies are where the
    // blobs are read.
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).ok();
    let again = Store::open(dir.path(), options()).unwrap();
    assert!(state_of(&again) == live, "replay differs");
    assert_eq!(again.compression_backlog(), (0, 0), "nothing left to compress after a replay");
    for i in (0..200).step_by(17) {
        assert_eq!(again.read_message(acc, inbox, i as u32 + 1).unwrap(), body(i));
    }
}

#[test]
fn small_and_incompressible_bodies_stay_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let small = b"Subject: s\r\n\r\nhi\r\n".to_vec();
    let mut noise = b"Subject: noise\r\n\r\n".to_vec();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x >> 24) as u8);
    }
    store.append(&small, &[target(acc, inbox)]).unwrap();
    store.append(&noise, &[target(acc, inbox)]).unwrap();
    store.compress_backlog_now().unwrap();
    assert_eq!(codecs(&store), (2, 0));
    assert_eq!(store.read_message(acc, inbox, 1).unwrap(), small);
    assert_eq!(store.read_message(acc, inbox, 2).unwrap(), noise);
}

#[test]
fn the_backlog_is_bounded_then_bodies_are_compressed_before_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    // A backlog of at most 20 KB, and no compression thread to drain it meanwhile.
    let options = Options { compress_backlog_max_bytes: 20_000, compression_thread: false, ..options() };
    let store = Store::open(dir.path(), options).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let mut inline = 0;
    for i in 0..100 {
        let before = store.compression_backlog().1;
        let prepared = Arc::new(store.prepare(&body(i)));
        let expected = if before >= 20_000 { 1 } else { 0 };
        assert_eq!(prepared.codec(), expected, "message {i}: backlog {before} bytes");
        inline += expected as usize;
        store.append_prepared(prepared, &[target(acc, inbox)]).unwrap();
    }
    assert!(inline > 80, "only {inline} of 100 compressed before their commit");
    assert!(store.compression_backlog().1 < 20_000 + 3000, "backlog grew past its bound");
    store.compress_backlog_now().unwrap();
    assert_eq!(codecs(&store).0, 0);
}

#[test]
fn compaction_keeps_only_the_compressed_copies() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_segment_bytes: 64 << 10, ..options() };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    for i in 0..300 {
        store.append(&body(i), &[target(acc, inbox)]).unwrap();
    }
    store.compress_backlog_now().unwrap();
    let before: u64 = store.segment_sizes().iter().map(|s| s.1).sum();
    let report = store.compact(0.5).unwrap();
    let after: u64 = store.segment_sizes().iter().map(|s| s.1).sum();
    assert!(!report.segments_dropped.is_empty(), "{report:?}");
    assert!(after < before, "compaction freed nothing: {before} -> {after}");
    for i in 0..300 {
        assert_eq!(store.read_message(acc, inbox, i as u32 + 1).unwrap(), body(i), "body {i}");
    }
    assert_eq!(codecs(&store), (0, 300));
    let live = state_of(&store);
    drop(store);
    let again = Store::open(dir.path(), options).unwrap();
    assert!(state_of(&again) == live);
}

#[test]
fn a_crash_leaves_bodies_readable_and_queued_again() {
    // Every sync point of a run that appends, compresses and changes flags: a crash there
    // keeps every acknowledged body readable, and what was not compressed yet is queued
    // again at open.
    let run = |fail_from: Option<u64>| -> (MemBackend, usize) {
        let mem = MemBackend::new();
        mem.fail_syncs_from(fail_from);
        let Ok(store) = Store::open_backend(Arc::new(mem.clone()), options()) else { return (mem, 0) };
        let mut acked = 0;
        let result = (|| {
            let acc = store.create_account("a@example.test", &[])?;
            let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
            for i in 0..12 {
                store.append(&body(i), &[target(acc, inbox)])?;
                acked += 1;
                if i % 4 == 3 {
                    store.compress_backlog_now()?;
                    store.store_flags(acc, inbox, &[i as u32], FlagOp::Add, flag::SEEN, &[], None)?;
                }
            }
            store.compress_backlog_now()
        })();
        let _ = result;
        drop(store);
        (mem, acked)
    };
    let (mem, acked) = run(None);
    assert_eq!(acked, 12);
    let total = mem.sync_count();
    for n in 1..=total {
        let (mem, acked) = run(Some(n));
        let image = mem.crash_image(|_, _| None);
        let store = Store::open_backend(Arc::new(image), options()).unwrap_or_else(|e| panic!("sync {n}: {e}"));
        if acked == 0 {
            continue;
        }
        let acc = store.account_id("a@example.test").unwrap();
        let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
        for i in 0..acked {
            let got =
                store.read_message(acc, inbox, i as u32 + 1).unwrap_or_else(|e| panic!("sync {n}, body {i}: {e}"));
            assert_eq!(got, body(i), "sync {n}, body {i}");
        }
        // Bodies left raw are queued again at open: compressing the backlog leaves none.
        store.compress_backlog_now().unwrap();
        assert_eq!(codecs(&store).0, 0, "sync {n}: raw bodies not queued again");
        for i in 0..acked {
            assert_eq!(store.read_message(acc, inbox, i as u32 + 1).unwrap(), body(i), "sync {n}, body {i} after");
        }
    }
}

#[test]
fn a_large_base64_body_is_compressed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { compression_thread: false, ..options() }).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let raw = common::base64_body(
        b"Subject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        1 << 20,
    );
    store.append(&raw, &[target(acc, inbox)]).unwrap();
    assert_eq!(codecs(&store), (1, 0));
    store.compress_backlog_now().unwrap();
    assert_eq!(codecs(&store), (0, 1), "the 1 MiB body was not compressed");
    assert_eq!(store.read_message(acc, inbox, 1).unwrap(), raw);
}
