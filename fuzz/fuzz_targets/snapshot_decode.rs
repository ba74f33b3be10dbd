//! Index snapshots from arbitrary bytes: `snapshot::decode` (and `decode_logical`, the
//! CHECKPOINT payload) never panic, and what decodes re-encodes to an equal value.
//!
//! Each input is used three ways:
//! 1. as a whole snapshot file;
//! 2. as the archive of a snapshot whose header (magic, version, length, CRC) is right, so
//!    the bytes reach rkyv's validation instead of failing the CRC;
//! 3. as edits of a valid snapshot of a small store (3 bytes each: offset u16 LE into the
//!    archive, byte to XOR in), again behind a correct header, so validation meets archives
//!    that are almost right.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postlog_engine::format::{FORMAT_VERSION, crc32c};
use postlog_engine::snapshot::{self, Position, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, Snapshot};
use postlog_engine::state::flag;
use postlog_engine::store::state_of;
use postlog_engine::{AppendTarget, FlagOp, Options, Store};

fn wrap(archive: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + archive.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32c(archive).to_le_bytes());
    out.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    out.extend_from_slice(archive);
    out
}

/// The archive part of a valid snapshot of a small store.
static BASE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mem = postlog_engine::backend::MemBackend::new();
    let store = Store::open_backend(std::sync::Arc::new(mem), Options::default()).expect("open in memory");
    let a = store.create_account("snap@example.test", &[("Sent", 2), ("Lists/rust", 0)]).expect("account");
    let inbox =
        AppendTarget { account: a, mailbox: 1, flags: flag::SEEN, keywords: vec!["$x".into()], internal_date: 5 };
    let sent = AppendTarget { mailbox: 2, flags: 0, keywords: vec![], ..inbox.clone() };
    for i in 0..4 {
        let raw = format!("Subject: {i}\r\nFrom: a@b.test\r\n\r\nbody {i}\r\n");
        store.append(raw.as_bytes(), &[inbox.clone(), sent.clone()]).expect("append");
    }
    store.store_flags(a, 1, &[2, 3], FlagOp::Add, flag::FLAGGED, &["$y".into()], None).expect("flags");
    store.expunge(a, 2, Some(&[1])).expect("expunge");
    store.subscribe(a, "Sent", true).expect("subscribe");
    let snap = Snapshot {
        position: Position { segment: 1, offset: 4096, next_lsn: 40, last_batch_seq: 9 },
        state: state_of(&store),
    };
    let bytes = snapshot::encode(&snap);
    assert_eq!(snapshot::decode(&bytes).as_ref(), Ok(&snap));
    bytes[SNAPSHOT_HEADER_LEN..].to_vec()
});

fn check(bytes: &[u8]) {
    if let Ok(snap) = snapshot::decode(bytes) {
        let again = snapshot::encode(&snap);
        assert_eq!(snapshot::decode(&again).as_ref(), Ok(&snap), "a decoded snapshot does not round-trip");
        // Recovery recounts blob references of a loaded snapshot: errors are fine.
        let mut state = snap.state;
        let _ = state.recount_refs();
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(logical) = snapshot::decode_logical(data) {
        let mut state = postlog_engine::state::State::default();
        let _ = state.reset_logical(logical);
    }
    check(&wrap(data));

    let mut archive = BASE.clone();
    for edit in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % archive.len();
        archive[at] ^= edit[2];
    }
    check(&wrap(&archive));
});
