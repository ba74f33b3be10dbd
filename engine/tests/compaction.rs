//! Online compaction: space of expunged messages comes back while readers and writers go on,
//! and what stays is intact across restarts, with or without the snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use postlog_engine::{AppendTarget, Options, Store};

fn body(n: u32) -> Vec<u8> {
    // Incompressible-ish so segment sizes are predictable.
    let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(1);
    let noise: String = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    format!("Subject: {n}\r\n\r\n{noise}\r\n").into_bytes()
}

fn opts() -> Options {
    Options { max_segment_bytes: 256 * 1024, ..Options::default() }
}

#[test]
fn compaction_reclaims_space_online_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let acc = store.create_account("c@x", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let t = move |n| AppendTarget { account: acc, mailbox: inbox, flags: 0, keywords: vec![], internal_date: n };
    for n in 1..=400u32 {
        store.append(&body(n), &[t(n as i64)]).unwrap();
    }
    // Keep every tenth message.
    let gone: Vec<u32> = (1..=400).filter(|n| n % 10 != 0).collect();
    store.expunge(acc, inbox, Some(&gone)).unwrap();
    let before: u64 = store.segment_sizes().iter().map(|s| s.1).sum();

    // Readers and a writer run during compaction.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for uid in (10..=400).step_by(10) {
                    assert_eq!(store.read_message(acc, inbox, uid).unwrap(), body(uid));
                    reads += 1;
                }
            }
            reads
        })
    };
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1000u32;
            while !stop.load(Ordering::Relaxed) && n < 1100 {
                store.append(&body(n), &[t(n as i64)]).unwrap();
                n += 1;
            }
            n
        })
    };
    let report = store.compact(0.5).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let last = writer.join().unwrap();
    assert!(!report.segments_dropped.is_empty(), "{report:?}");
    let after: u64 = store.segment_sizes().iter().map(|s| s.1).sum();
    assert!(after + report.bytes_freed / 2 < before + (last as u64 - 1000) * 4096, "before {before} after {after}");
    assert!(after < before, "space came back: before {before} after {after}");

    let check = |store: &Store| {
        let msgs = store.messages(acc, inbox).unwrap();
        let kept: Vec<u32> = msgs.iter().map(|m| m.uid).filter(|&u| u <= 400).collect();
        assert_eq!(kept, (1..=40).map(|i| i * 10).collect::<Vec<_>>());
        for m in &msgs {
            let raw = store.read_message(acc, inbox, m.uid).unwrap();
            assert_eq!(raw.len() as u64, m.size);
            store.meta(acc, inbox, m.uid).unwrap();
        }
        for uid in (10..=400).step_by(10) {
            assert_eq!(store.read_message(acc, inbox, uid).unwrap(), body(uid));
        }
    };
    check(&store);
    let state = postlog_engine::store::state_of(&store);
    store.close().unwrap();
    drop(store);

    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.recovery_report().snapshot_used);
    check(&store);
    store.close().unwrap();
    drop(store);

    // Without the snapshot: the log alone (with its checkpoint) rebuilds the same state.
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(!store.recovery_report().snapshot_used);
    check(&store);
    let rebuilt = postlog_engine::store::state_of(&store);
    assert_eq!(rebuilt.accounts, state.accounts);
    assert_eq!(rebuilt.blobs, state.blobs);
    // And it keeps working: UIDs go on from where they were.
    let r = store.append(&body(5000), &[t(0)]).unwrap();
    assert!(r[0].uid > 400);
}
