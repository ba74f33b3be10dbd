//! Zeros in the middle of the active segment, with data after them (found by the
//! `segment_scan` fuzz target). Zeros end the log only when nothing follows: a zeroed block
//! followed by synced commits is corruption (opening must refuse, not drop the acknowledged
//! messages after the hole and then overwrite them), and a zeroed block followed by bytes of an
//! unsynced batch is a torn tail, cut so new records never sit in front of stale ones.

use std::sync::Arc;

use postlog_engine::backend::MemBackend;
use postlog_engine::{AppendTarget, OpenError, Options, Store};

const SEGMENT: &str = "seg-0000000000000001.log";

fn open(mem: &MemBackend) -> Result<Store, OpenError> {
    Store::open_backend(Arc::new(mem.clone()), Options::default())
}

fn append(store: &Store, account: u32, body: &str) -> u32 {
    let raw = format!("Subject: {body}\r\n\r\n{body}\r\n");
    let t = AppendTarget { account, mailbox: 1, flags: 0, keywords: vec![], internal_date: 0 };
    store.append(raw.as_bytes(), &[t]).expect("append")[0].uid
}

fn uids(store: &Store, account: u32) -> Vec<u32> {
    store.messages(account, 1).expect("INBOX").iter().map(|m| m.uid).collect()
}

#[test]
fn zeroed_block_before_synced_commits_is_corruption() {
    let mem = MemBackend::new();
    let store = open(&mem).expect("open");
    let a = store.create_account("hole@example.test", &[]).expect("account");
    append(&store, a, "one");
    let hole_at = mem.file_bytes(SEGMENT).expect("segment").len();
    append(&store, a, "two");
    append(&store, a, "three");
    drop(store);

    // The frame header of message two's first record is lost; everything after it was synced.
    let mut bytes = mem.file_bytes(SEGMENT).expect("segment");
    bytes[hole_at..hole_at + 32].fill(0);
    mem.set_file_bytes(SEGMENT, bytes);
    match open(&mem) {
        Err(OpenError::Corrupt { segment: 1, offset, .. }) => assert_eq!(offset, hole_at as u64),
        Err(e) => panic!("expected corruption at {hole_at}, got {e}"),
        Ok(s) => panic!("opened with messages {:?}, dropping the acknowledged ones after the hole", uids(&s, a)),
    }
}

#[test]
fn zeros_then_unsynced_bytes_are_a_torn_tail() {
    let mem = MemBackend::new();
    let store = open(&mem).expect("open");
    let a = store.create_account("torn@example.test", &[]).expect("account");
    append(&store, a, "one");
    drop(store);

    // An unsynced batch whose first block never reached the disk but a later one did.
    let mut bytes = mem.file_bytes(SEGMENT).expect("segment");
    let end = bytes.len() as u64;
    bytes.extend_from_slice(&[0u8; 4096]);
    bytes.extend_from_slice(b"PLR1 the rest of a batch that was never synced");
    mem.set_file_bytes(SEGMENT, bytes);

    let store = open(&mem).expect("a torn tail is cut, not reported");
    let cut = store.recovery_report().torn_cut.expect("the torn tail is reported");
    assert_eq!((cut.0, cut.1), (1, end));
    assert_eq!(mem.file_bytes(SEGMENT).expect("segment").len() as u64, end, "cut back to the last commit");
    let two = append(&store, a, "two");
    drop(store);
    let store = open(&mem).expect("reopens after writing past the cut");
    assert_eq!(uids(&store, a), vec![1, two]);
}
