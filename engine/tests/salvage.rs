//! Salvage and rebuild of a log damaged in the middle.

use std::sync::Arc;

use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::format::{FrameHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, frame_len};
use postlog_engine::record::kind;
use postlog_engine::{AppendTarget, OpenError, Options, Store};

fn msg(n: usize) -> Vec<u8> {
    format!("Subject: m{n}\r\nMessage-ID: <{n}@x>\r\n\r\n{}\r\n", "line of text\r\n".repeat(n * 7 % 90)).into_bytes()
}

/// Offsets of every record of a segment's bytes: (offset, kind).
fn records(bytes: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= bytes.len() {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h.copy_from_slice(&bytes[off..off + RECORD_HEADER_LEN]);
        let Ok(f) = FrameHeader::decode(&h) else { break };
        out.push((off, f.kind));
        off += frame_len(f.payload_len as usize);
    }
    out
}

#[test]
fn damaged_middle_is_reported_then_salvaged_and_rebuilt() {
    let mem = MemBackend::new();
    let store = Store::open_backend(Arc::new(mem.clone()), Options::default()).unwrap();
    let acc = store.create_account("a@x", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    for n in 0..20 {
        store
            .append(
                &msg(n),
                &[AppendTarget { account: acc, mailbox: inbox, flags: 0, keywords: vec![], internal_date: 0 }],
            )
            .unwrap();
    }
    let uidvalidity = store.mailbox(acc, inbox).unwrap().uidvalidity;
    drop(store);

    // Damage the body of the 5th message (its BLOB record's payload).
    let name = "seg-0000000000000001.log";
    let mut bytes = mem.file_bytes(name).unwrap();
    let blobs: Vec<usize> = records(&bytes).into_iter().filter(|r| r.1 == kind::BLOB).map(|r| r.0).collect();
    let victim = blobs[4];
    bytes[victim + RECORD_HEADER_LEN + 60] ^= 0x40;
    mem.set_file_bytes(name, bytes);

    match Store::open_backend(Arc::new(mem.clone()), Options::default()) {
        Err(OpenError::Corrupt { segment, offset, .. }) => {
            assert_eq!(segment, 1);
            assert_eq!(offset, victim as u64);
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("a damaged log opened"),
    }

    let salvaged = postlog_engine::salvage::salvage(&mem);
    assert!(!salvaged.problems.is_empty());
    let mb = &salvaged.state.accounts[&acc].mailboxes[&inbox];
    assert_eq!(mb.messages.len(), 19, "only the damaged message is lost");
    assert!(mb.messages.iter().all(|m| m.uid != 5));

    let target = MemBackend::new();
    let copied = postlog_engine::salvage::rebuild(&salvaged, &target).unwrap();
    assert_eq!(copied, 19);
    let _ = target.list().unwrap();
    let store = Store::open_backend(Arc::new(target), Options::default()).unwrap();
    let info = store.mailbox(acc, inbox).unwrap();
    assert_eq!(info.uidvalidity, uidvalidity, "UIDVALIDITY kept");
    assert_eq!(info.uidnext, 21, "UIDNEXT kept: UIDs are never reused");
    for m in store.messages(acc, inbox).unwrap() {
        assert_eq!(store.read_message(acc, inbox, m.uid).unwrap(), msg(m.uid as usize - 1));
    }
    // The rebuilt store keeps working.
    let r = store
        .append(
            &msg(99),
            &[AppendTarget { account: acc, mailbox: inbox, flags: 0, keywords: vec![], internal_date: 0 }],
        )
        .unwrap();
    assert_eq!(r[0].uid, 21);
}
