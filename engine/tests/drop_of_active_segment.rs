//! A SEGMENT_DROP naming the segment being written (or a later one) cannot come from this
//! store: opening must refuse it as corruption, not unlink the file it is about to append to
//! (found by the `segment_scan` fuzz target: an acknowledged append then vanished).

use std::sync::Arc;

use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::format::{Codec, RECORD_HEADER_LEN, encode_frame};
use postlog_engine::log::scan;
use postlog_engine::record::{Record, kind};
use postlog_engine::{OpenError, Options, Store};

const SEGMENT: &str = "seg-0000000000000001.log";

#[test]
fn a_drop_of_the_active_segment_is_corruption() {
    let mem = MemBackend::new();
    let store = Store::open_backend(Arc::new(mem.clone()), Options::default()).unwrap();
    store.create_account("a@example.test", &[]).unwrap();
    drop(store);
    let _ = mem.remove("index.snap");

    // Append a well-formed transaction [SEGMENT_DROP 1, COMMIT] after the last record.
    let file = mem.open(SEGMENT).unwrap();
    let (records, _) = scan(&*file, 64).unwrap();
    let last = records.last().unwrap();
    let mut batch_seq = 0;
    for r in &records {
        if r.frame.kind == kind::COMMIT {
            let payload = file.view(r.offset + RECORD_HEADER_LEN as u64, r.frame.payload_len as usize).unwrap();
            if let Ok((Record::Commit { batch_seq: b, .. }, _)) = Record::decode(kind::COMMIT, &payload) {
                batch_seq = b;
            }
        }
    }
    let lsn = last.frame.lsn + 1;
    let mut bytes = mem.file_bytes(SEGMENT).unwrap();
    let mut txn = Vec::new();
    for (i, rec) in [
        Record::SegmentDrop { segment: 1 },
        Record::Commit { first_lsn: lsn, count: 1, batch_seq: batch_seq + 1, batch_end: true },
    ]
    .iter()
    .enumerate()
    {
        let mut payload = Vec::new();
        rec.encode_payload(&mut payload);
        encode_frame(&mut txn, rec.kind(), Codec::None, lsn + i as u64, 0, &[&payload]);
    }
    bytes.extend_from_slice(&txn);
    mem.set_file_bytes(SEGMENT, bytes);

    match Store::open_backend(Arc::new(mem.clone()), Options::default()) {
        Err(OpenError::Corrupt { segment, reason, .. }) => {
            assert_eq!(segment, 1);
            assert!(reason.contains("being written"), "{reason}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a log dropping its own active segment opened"),
    }
    assert!(mem.file_bytes(SEGMENT).is_some(), "the segment file is still there");
}
