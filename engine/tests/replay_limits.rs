//! Records whose ids sit at the top of their range are refused by replay instead of making the
//! next-id counters wrap (found by the `segment_scan` fuzz target: with overflow checks a panic,
//! without them a UIDNEXT of 0, an append of UID 0 that replay then rejects, and a store that
//! no longer opens). The planner never hands out such ids. Likewise a BLOB's raw length: the
//! usage counters sum it. And thread ids: 0 and the top one.

use postlog_engine::record::Record;
use postlog_engine::state::{DataLoc, Loc, MAX_RAW_LEN, State};

fn data() -> Option<DataLoc> {
    Some(DataLoc { loc: Loc { segment: 1, offset: 100, len: 5 }, codec: 0 })
}

fn mailbox(mailbox: u32) -> Record {
    Record::MailboxCreate {
        account: 1,
        mailbox,
        name: format!("m{mailbox}"),
        uidvalidity: 1,
        special_use: 0,
        modseq: 2,
    }
}

fn append(uid: u32) -> Record {
    append_in_thread(uid, 1)
}

fn append_in_thread(uid: u32, thread: u32) -> Record {
    append_sized(1, uid, thread, 5)
}

fn append_sized(mailbox: u32, uid: u32, thread: u32, size: u64) -> Record {
    Record::MessageAppend {
        account: 1,
        mailbox,
        uid,
        modseq: 3,
        blob: 1,
        size,
        flags: 0,
        keywords: vec![],
        internal_date: 0,
        save_date: 0,
        thread,
        links: vec![],
    }
}

#[test]
fn ids_at_the_top_of_their_range_are_refused() {
    let mut st = State::default();
    assert!(st.apply(&Record::AccountCreate { account: u32::MAX, name: "max".into() }, None).is_err());
    st.apply(&Record::AccountCreate { account: 1, name: "a".into() }, None).unwrap();
    assert!(st.apply(&mailbox(u32::MAX), None).is_err());
    st.apply(&mailbox(1), None).unwrap();
    st.apply(&mailbox(2), None).unwrap();
    assert!(st.apply(&Record::Blob { blob: u64::MAX, hash: [1; 32], raw_len: 5 }, data()).is_err());
    // A plain body is exactly its data; a compressed one claims at most MAX_RAW_LEN.
    assert!(st.apply(&Record::Blob { blob: 1, hash: [2; 32], raw_len: 6 }, data()).is_err());
    let zstd = Some(DataLoc { codec: 1, ..data().unwrap() });
    assert!(st.apply(&Record::Blob { blob: 1, hash: [2; 32], raw_len: MAX_RAW_LEN + 1 }, zstd).is_err());
    st.apply(&Record::Blob { blob: 2, hash: [3; 32], raw_len: MAX_RAW_LEN }, zstd).unwrap();
    st.apply(&Record::Blob { blob: 1, hash: [2; 32], raw_len: 5 }, data()).unwrap();

    assert!(st.apply(&append(u32::MAX), None).is_err());
    // Thread ids: 0 is no thread, and the top one would make the account's counter wrap.
    assert!(st.apply(&append_in_thread(5, 0), None).is_err());
    assert!(st.apply(&append_in_thread(5, u32::MAX), None).is_err());
    st.apply(&append(7), None).unwrap();
    st.apply(&append(u32::MAX - 1), None).unwrap();
    let copy = |first_uid| Record::Copy {
        account: 1,
        from: 1,
        to: 2,
        modseq: 4,
        save_date: 0,
        first_uid,
        uids: vec![(7, 7), (u32::MAX - 1, u32::MAX - 1)],
    };
    assert!(st.apply(&copy(u32::MAX - 1), None).is_err());
    st.apply(&copy(u32::MAX - 2), None).unwrap();
    assert_eq!(st.mailbox(1, 2).unwrap().uidnext, u32::MAX);
}

/// Message sizes that would make a mailbox's or account's usage overflow are refused (found by
/// the `segment_scan` fuzz target: an append of a size near `u64::MAX` panicked on the add).
#[test]
fn sizes_that_overflow_the_usage_counters_are_refused() {
    let mut st = State::default();
    st.apply(&Record::AccountCreate { account: 1, name: "a".into() }, None).unwrap();
    st.apply(&mailbox(1), None).unwrap();
    st.apply(&mailbox(2), None).unwrap();
    st.apply(&Record::Blob { blob: 1, hash: [2; 32], raw_len: 5 }, data()).unwrap();
    let sized = |mailbox, uid, size| append_sized(mailbox, uid, 1, size);
    st.apply(&sized(1, 1, u64::MAX - 10), None).unwrap();
    // The same mailbox, and another mailbox of the same account.
    assert!(st.apply(&sized(1, 2, 11), None).is_err());
    assert!(st.apply(&sized(2, 1, 11), None).is_err());
    st.apply(&sized(2, 1, 10), None).unwrap();
    assert_eq!(st.mailbox(1, 1).unwrap().messages.len(), 1, "a refused append leaves no message behind");
    // A copy that would overflow them.
    let copy = Record::Copy { account: 1, from: 2, to: 2, modseq: 4, save_date: 0, first_uid: 2, uids: vec![(1, 1)] };
    assert!(st.apply(&copy, None).is_err());
}
