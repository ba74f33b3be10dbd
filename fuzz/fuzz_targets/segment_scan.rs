//! A data directory built from arbitrary bytes: scanning and recovery never panic (errors
//! are fine), and a store that opens keeps working.
//!
//! Input layout (what `examples/gen_seeds.rs` writes from real stores):
//! ```text
//! [records of segment 1] ( "PLOGSEG\0" [id step u8] [base LSN u64 LE] [records] )* [index.snap]
//! ```
//! Every part becomes a segment file with a valid 64-byte segment header in front: the first
//! part is segment 1 with base LSN 1 (skipped if empty and more follow); each later part is
//! segment `previous + 1 + step`. If the input contains "PLOGSNAP", the bytes from there
//! on are the snapshot file `index.snap` (it starts with that magic).
//!
//! Each input is tried twice: as given, and with the CRCs of its frames recomputed (walking
//! frame by frame from the segment header while the magic and lengths hold), so mutations of
//! record contents get past the checksums and reach replay. CHECKPOINT records keep their CRC:
//! like snapshots, their contents are trusted once the CRC holds.
//!
//! Checked: `log::scan` and `find_later_commit` on every segment; read-only recovery and
//! `Store::open_backend` (recovery that cuts torn tails) agree on failure and on the state;
//! every message of an opened store can be asked for (errors allowed); an append into it
//! commits, and the store then closes and reopens with the message in place.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::format::{
    MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, RECORD_MAGIC, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SegmentHeader, crc32c,
    frame_len,
};
use postlog_engine::log::{ScanEnd, find_later_commit, parse_segment_file_name, scan, segment_file_name};
use postlog_engine::record::kind;
use postlog_engine::recovery::recover;
use postlog_engine::snapshot::{SNAPSHOT_FILE, SNAPSHOT_MAGIC};
use postlog_engine::store::state_of;
use postlog_engine::{AppendTarget, Options, Store};

const MAX_SEGMENTS: usize = 8;

fn find(hay: &[u8], needle: &[u8; 8]) -> Option<usize> {
    // Candidates by first byte, so the comparison (traced by libFuzzer) runs rarely.
    (0..hay.len().saturating_sub(7)).find(|&i| hay[i] == needle[0] && hay[i..i + 8] == needle[..])
}

fn put(mem: &MemBackend, name: &str, bytes: &[u8]) {
    let f = mem.create(name).expect("create in memory");
    f.write_all_at(bytes, 0).expect("write in memory");
    f.sync_data().expect("sync in memory");
}

/// Recomputes the payload and header CRCs of the frames of a segment file, in place.
fn fix_crcs(file: &mut [u8]) {
    let mut off = SEGMENT_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= file.len() && file[off..off + 4] == RECORD_MAGIC {
        let len = u32::from_le_bytes(file[off + 8..off + 12].try_into().expect("4 bytes"));
        let end = off + RECORD_HEADER_LEN + len as usize;
        if len > MAX_PAYLOAD_LEN || end > file.len() {
            break;
        }
        // A CHECKPOINT carries the whole state and is trusted once its CRC holds (like a
        // snapshot): mutated ones keep their stale CRC, as random corruption would.
        if file[off + 12] == kind::CHECKPOINT {
            off += frame_len(len as usize);
            continue;
        }
        let crc = crc32c(&file[off + RECORD_HEADER_LEN..end]);
        file[off + 28..off + 32].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32c(&file[off + 8..off + 32]);
        file[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off += frame_len(len as usize);
    }
}

fn build(data: &[u8], fix: bool) -> MemBackend {
    let mem = MemBackend::new();
    let (log, snap) = match find(data, &SNAPSHOT_MAGIC) {
        Some(at) => (&data[..at], Some(&data[at..])),
        None => (data, None),
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = log;
    while let Some(at) = find(rest, &SEGMENT_MAGIC) {
        parts.push(&rest[..at]);
        rest = &rest[at + SEGMENT_MAGIC.len()..];
    }
    parts.push(rest);
    let mut id = 0u64;
    for (i, part) in parts.into_iter().enumerate().take(MAX_SEGMENTS) {
        let (seg, base, body) = if i == 0 {
            if part.is_empty() && !log.is_empty() {
                continue;
            }
            (1, 1, part)
        } else {
            let step = u64::from(part.first().copied().unwrap_or(0));
            let mut b = [0u8; 8];
            let lsn = part.get(1..).unwrap_or(&[]);
            let n = lsn.len().min(8);
            b[..n].copy_from_slice(&lsn[..n]);
            (id + 1 + step, u64::from_le_bytes(b), part.get(9..).unwrap_or(&[]))
        };
        id = seg;
        let mut file = SegmentHeader { segment_id: seg, base_lsn: base, created_unix: 0 }.encode().to_vec();
        file.extend_from_slice(body);
        if fix {
            fix_crcs(&mut file);
        }
        put(&mem, &segment_file_name(seg), &file);
    }
    if let Some(s) = snap {
        put(&mem, SNAPSHOT_FILE, s);
    }
    mem.sync_dir().expect("sync in memory");
    mem
}

fn check_scans(mem: &MemBackend) {
    for name in mem.list().expect("list") {
        if parse_segment_file_name(&name).is_none() {
            continue;
        }
        let f = mem.open(&name).expect("open");
        let len = f.len().expect("len");
        let start = SEGMENT_HEADER_LEN as u64;
        let (records, end) = scan(&*f, start).expect("scan of a file in memory");
        let mut off = start;
        for r in &records {
            assert_eq!(r.offset, off, "records are contiguous");
            assert!(r.payload_crc_ok);
            off += frame_len(r.frame.payload_len as usize) as u64;
            assert!(off <= len);
        }
        match end {
            ScanEnd::Clean { offset } | ScanEnd::Bad { offset, .. } => {
                assert_eq!(offset, off, "the scan ends after its last record")
            }
        }
        if let Some(at) = find_later_commit(&*f, start, 0).expect("find_later_commit") {
            assert!(at >= start && at + RECORD_HEADER_LEN as u64 <= len && at % 8 == 0);
        }
    }
}

/// Asks an opened store for everything it holds; errors are fine, panics are not.
fn walk(store: &Store) -> Option<(u32, u32)> {
    let mut target = None;
    for (account, _) in store.accounts() {
        let _ = store.usage(account);
        let _ = store.subscriptions(account);
        let Ok(boxes) = store.mailboxes(account) else { continue };
        for mb in boxes {
            target.get_or_insert((account, mb.id));
            // `changes_since` lists every vanished UID: a crafted checkpoint can claim a range
            // of billions (the checkpoint is trusted once its CRC holds), so skip those.
            let vanished: u64 = store
                .with_mailbox(account, mb.id, |m| {
                    m.vanished.iter().map(|v| u64::from(v.1.saturating_sub(v.0)) + 1).sum()
                })
                .unwrap_or(0);
            if vanished <= 100_000 {
                let _ = store.changes_since(account, mb.id, 0);
            }
            let Ok(messages) = store.messages(account, mb.id) else { continue };
            for m in messages.iter().take(64) {
                let _ = store.read_message(account, mb.id, m.uid);
                let _ = store.read_range(account, mb.id, m.uid, 1, 20);
                let _ = store.meta(account, mb.id, m.uid);
            }
        }
    }
    target
}

const PROBE: &[u8] = b"From: fuzz@example.test\r\nSubject: after recovery\r\n\r\nstill writable\r\n";

fuzz_target!(|data: &[u8]| {
    run(data, false);
    run(data, true);
});

fn run(data: &[u8], fix: bool) {
    let mem = build(data, fix);
    check_scans(&mem);

    let read_only = recover(&build(data, fix), true);
    let store = match Store::open_backend(Arc::new(mem.clone()), Options::default()) {
        Ok(s) => s,
        Err(e) => {
            assert!(read_only.is_err(), "read-only recovery succeeded where opening failed with: {e}");
            return;
        }
    };
    match read_only {
        Ok(r) => assert!(r.state == state_of(&store), "read-only recovery and open disagree on the state"),
        Err(e) => panic!("read-only recovery failed ({e}) where opening succeeded"),
    }

    // Still writable, and what it writes survives a reopen.
    let target = walk(&store).or_else(|| {
        let a = store.create_account("fuzz@example.test", &[]).ok()?;
        Some((a, 1))
    });
    let appended = target.and_then(|(account, mailbox)| {
        let t = AppendTarget { account, mailbox, flags: 0, keywords: Vec::new(), internal_date: 0 };
        store.append(PROBE, &[t]).ok().map(|v| (account, mailbox, v[0].uid))
    });
    let _ = store.close();
    drop(store);
    let store = Store::open_backend(Arc::new(mem), Options::default())
        .unwrap_or_else(|e| panic!("a store that opened and was written to does not reopen: {e}"));
    if let Some((account, mailbox, uid)) = appended {
        let raw = store.read_message(account, mailbox, uid).expect("the appended message reads after reopening");
        assert_eq!(raw, PROBE);
    }
}
