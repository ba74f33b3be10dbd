//! The store's public API, end to end on real files.

use postlog_engine::{AppendTarget, CommitError, FlagOp, OpenError, Options, Store, flag, special_use};

fn msg(n: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: test {n}\r\nMessage-ID: <{n}@example.test>\r\n\r\nHello number {n}.\r\n{}\r\n",
        "body text ".repeat(n % 50)
    )
    .into_bytes()
}

fn target(account: u32, mailbox: u32) -> AppendTarget {
    AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 1_700_000_000 }
}

#[test]
fn accounts_mailboxes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let alice = store
        .create_account("alice@example.test", &[("Sent", special_use::SENT), ("Trash", special_use::TRASH)])
        .unwrap();
    let bob = store.create_account("bob@example.test", &[]).unwrap();
    assert!(matches!(store.create_account("alice@example.test", &[]), Err(CommitError::AccountExists(_))));

    let boxes = store.mailboxes(alice).unwrap();
    let names: Vec<_> = boxes.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["INBOX", "Sent", "Trash"]);
    assert_eq!(boxes[1].special_use, special_use::SENT);
    let inbox_a = store.mailbox_by_name(alice, "inbox").unwrap().id;
    let inbox_b = store.mailbox_by_name(bob, "INBOX").unwrap().id;

    // One message to two accounts: one commit, one blob.
    let raw = msg(1);
    let done = store.append(&raw, &[target(alice, inbox_a), target(bob, inbox_b)]).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].uid, done[1].uid), (1, 1));
    assert_eq!(store.read_message(alice, inbox_a, 1).unwrap(), raw);
    assert_eq!(store.read_message(bob, inbox_b, 1).unwrap(), raw);
    assert_eq!(postlog_engine::store::state_of(&store).blobs.len(), 1);
    assert_eq!(store.read_range(alice, inbox_a, 1, 6, 11).unwrap(), b"Alice");
    let meta = store.meta(alice, inbox_a, 1).unwrap();
    assert_eq!(meta.envelope.subject.as_deref(), Some("test 1"));

    for n in 2..=10 {
        store.append(&msg(n), &[target(alice, inbox_a)]).unwrap();
    }
    let info = store.mailbox(alice, inbox_a).unwrap();
    assert_eq!((info.messages, info.uidnext, info.unseen), (10, 11, 10));
    assert_eq!(store.usage(alice).unwrap().messages, 10);

    // Flags with MODSEQ and UNCHANGEDSINCE.
    let before = store.mailbox(alice, inbox_a).unwrap().highest_modseq;
    let s =
        store.store_flags(alice, inbox_a, &[1, 2, 3], FlagOp::Add, flag::SEEN, &["$Forwarded".into()], None).unwrap();
    assert_eq!(s.changed, vec![1, 2, 3]);
    assert!(s.modseq > before);
    let again = store.store_flags(alice, inbox_a, &[1, 2, 3], FlagOp::Add, flag::SEEN, &[], None).unwrap();
    assert!(again.changed.is_empty(), "no change, no new modseq");
    let cond = store.store_flags(alice, inbox_a, &[1, 4], FlagOp::Add, flag::FLAGGED, &[], Some(before)).unwrap();
    assert_eq!(cond.failed, vec![1]);
    assert_eq!(cond.changed, vec![4]);
    let m1 = store.messages(alice, inbox_a).unwrap()[0];
    assert_eq!(m1.flags, flag::SEEN);
    assert_eq!(store.mailbox(alice, inbox_a).unwrap().unseen, 7);

    // Changes since a MODSEQ include expunges.
    store.store_flags(alice, inbox_a, &[5, 6], FlagOp::Add, flag::DELETED, &[], None).unwrap();
    let mark = store.mailbox(alice, inbox_a).unwrap().highest_modseq;
    let (gone, xmodseq) = store.expunge(alice, inbox_a, None).unwrap();
    assert_eq!(gone, vec![5, 6]);
    assert!(xmodseq > mark);
    let ch = store.changes_since(alice, inbox_a, mark).unwrap();
    assert_eq!(ch.expunged, vec![5, 6]);
    assert!(ch.changed.is_empty());

    // Copy and move.
    let trash = store.mailbox_by_name(alice, "Trash").unwrap().id;
    let c = store.copy(alice, inbox_a, trash, &[1, 2, 99]).unwrap();
    assert_eq!(c.pairs, vec![(1, 1), (2, 2)]);
    let m = store.move_messages(alice, inbox_a, trash, &[3, 4]).unwrap();
    assert_eq!(m.pairs, vec![(3, 3), (4, 4)]);
    let trash_msgs = store.messages(alice, trash).unwrap();
    assert_eq!(trash_msgs.len(), 4);
    assert_eq!(trash_msgs[0].flags, flag::SEEN, "flags travel with copies");
    assert_eq!(store.read_message(alice, trash, 3).unwrap(), msg(3));
    assert!(store.messages(alice, inbox_a).unwrap().iter().all(|m| m.uid != 3 && m.uid != 4));

    // Rename with children keeps ids; delete.
    let a = store.create_mailbox(alice, "Projects/2026/Q1", 0).unwrap();
    let parent = store.mailbox_by_name(alice, "Projects").unwrap().id;
    store.rename_mailbox(alice, "Projects", "Archive/Old").unwrap();
    assert_eq!(store.mailbox_by_name(alice, "Archive/Old/2026/Q1").unwrap().id, a);
    assert_eq!(store.mailbox_by_name(alice, "Archive/Old").unwrap().id, parent);
    assert!(store.mailbox_by_name(alice, "Archive").is_ok(), "missing parent created");
    assert!(matches!(store.rename_mailbox(alice, "Archive", "Archive/Old/x"), Err(CommitError::NotAllowed(_))));
    assert!(matches!(store.delete_mailbox(alice, "INBOX"), Err(CommitError::NotAllowed(_))));
    store.delete_mailbox(alice, "Trash").unwrap();
    assert!(store.mailbox_by_name(alice, "Trash").is_err());
    assert_eq!(store.usage(alice).unwrap().messages, 6);
    store.subscribe(alice, "Sent", true).unwrap();
    assert_eq!(store.subscriptions(alice).unwrap(), vec!["Sent".to_string()]);

    // Everything survives a restart (with and without the snapshot).
    let state = postlog_engine::store::state_of(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert!(store.recovery_report().snapshot_used);
    assert_eq!(postlog_engine::store::state_of(&store), state);
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert!(!store.recovery_report().snapshot_used);
    assert_eq!(postlog_engine::store::state_of(&store), state);
    assert_eq!(store.read_message(alice, inbox_a, 7).unwrap(), msg(7));
}

#[test]
fn second_open_of_the_same_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), Options::default()).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(e @ OpenError::Locked { .. }) => assert!(e.to_string().contains("already in use")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[test]
fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut uids = Vec::new();
                for i in 0..50 {
                    let r = store.append(&msg(t * 1000 + i), &[target(acc, inbox)]).unwrap();
                    uids.push(r[0].uid);
                }
                uids
            })
        })
        .collect();
    let mut all: Vec<u32> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>(), "every UID given once");
    let stats = store.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches < 400, "group commit batched {batches} syncs for 400 appends");
}

#[test]
fn watch_sees_durable_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let mut rx = store.watch(acc);
    let first = *rx.borrow_and_update();
    let s2 = store.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        s2.append(&msg(1), &[target(acc, inbox)]).unwrap();
    });
    let rt = tokio_rt();
    rt.block_on(async { rx.changed().await.unwrap() });
    assert!(*rx.borrow() > first);
    h.join().unwrap();
}

fn tokio_rt() -> SimpleRt {
    SimpleRt
}

/// A minimal executor for one future (the engine depends on tokio's sync types only).
struct SimpleRt;
impl SimpleRt {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        use std::sync::Arc;
        use std::task::{Context, Poll, Wake, Waker};
        struct ThreadWaker(std::thread::Thread);
        impl Wake for ThreadWaker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn key_value_directory_is_durable_and_conditional() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.kv_write(vec![("domain/example.test".into(), Some(b"{}".to_vec()))], vec![]).unwrap();
    store
        .kv_write(
            vec![
                ("user/a@example.test".into(), Some(b"hash-a".to_vec())),
                ("user/b@example.test".into(), Some(b"hash-b".to_vec())),
            ],
            vec![("user/a@example.test".into(), None)],
        )
        .unwrap();
    // Conditional write that does not hold changes nothing.
    let err = store
        .kv_write(
            vec![("user/a@example.test".into(), Some(b"other".to_vec()))],
            vec![("user/a@example.test".into(), None)],
        )
        .unwrap_err();
    assert!(matches!(err, CommitError::Conflict(_)));
    assert_eq!(store.kv_get("user/a@example.test").unwrap(), b"hash-a");
    store.kv_write(vec![("user/b@example.test".into(), None)], vec![]).unwrap();
    let users: Vec<String> = store.kv_scan("user/").into_iter().map(|(k, _)| k).collect();
    assert_eq!(users, ["user/a@example.test"]);
    store.close().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.kv_get("user/a@example.test").unwrap(), b"hash-a");
    assert_eq!(store.kv_get("domain/example.test").unwrap(), b"{}");
    assert!(store.kv_get("user/b@example.test").is_none());
    // Compaction's checkpoint carries the directory.
    store.compact(0.0).unwrap();
    store.close().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.kv_scan("").len(), 2);
}

#[test]
fn append_many_commits_in_order_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let acc = store.create_account("m@example.test", &[("Sent", special_use::SENT)]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let sent = store.mailbox_by_name(acc, "Sent").unwrap().id;
    let prepared: Vec<_> =
        (1..=5).map(|n| std::sync::Arc::new(postlog_engine::PreparedMessage::new(&msg(n), store.options()))).collect();
    let before = store.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
    let items = prepared.iter().enumerate().map(|(i, p)| {
        let mut targets = vec![target(acc, inbox)];
        if i == 2 {
            targets.push(target(acc, sent));
        }
        (p.clone(), targets)
    });
    let done = store.append_many(items.collect()).unwrap();
    assert_eq!(store.stats().batches.load(std::sync::atomic::Ordering::Relaxed), before + 1, "one commit");
    let uids: Vec<u32> = done.iter().map(|d| d[0].uid).collect();
    assert_eq!(uids, [1, 2, 3, 4, 5], "UIDs in the order given");
    assert_eq!(done[2][1].mailbox, sent);
    for n in 1..=5u32 {
        assert_eq!(store.read_message(acc, inbox, n).unwrap(), msg(n as usize));
    }
    // All or nothing: one bad destination refuses the whole lot.
    let err = store.append_many(vec![
        (prepared[0].clone(), vec![target(acc, inbox)]),
        (prepared[1].clone(), vec![target(acc, 999)]),
    ]);
    assert!(matches!(err, Err(CommitError::NoSuchMailbox(_))));
    assert_eq!(store.mailbox(acc, inbox).unwrap().messages, 5);
}

#[test]
fn metadata_read_in_place_matches_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let acc = store.create_account("r@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    for n in 1..=20 {
        store.append(&msg(n), &[target(acc, inbox)]).unwrap();
    }
    let decoded = store.metas(acc, inbox).unwrap();
    let mut seen = Vec::new();
    store
        .for_each_meta(acc, inbox, |uid, bytes| {
            let meta = postlog_engine::meta::MessageMeta::decode(bytes).map_err(|e| e.to_string())?;
            seen.push((uid, meta));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, decoded);
    assert_eq!(seen[4].1.envelope.subject.as_deref(), Some("test 5"));
    // A callback error stops the walk and names the record.
    let err = store.for_each_meta(acc, inbox, |uid, _| if uid == 3 { Err("no".into()) } else { Ok(()) }).unwrap_err();
    assert!(matches!(err, postlog_engine::ReadError::Corrupt { .. }), "{err}");
}

#[test]
fn expunge_records_stay_bounded_and_exact() {
    let mem = postlog_engine::backend::MemBackend::new();
    let store = Store::open_backend(std::sync::Arc::new(mem.clone()), Options::default()).unwrap();
    let acc = store.create_account("v@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let body = std::sync::Arc::new(postlog_engine::PreparedMessage::new(&msg(1), store.options()));
    for _ in 0..10 {
        let items = (0..600).map(|_| (body.clone(), vec![target(acc, inbox)])).collect();
        store.append_many(items).unwrap();
    }
    // Expunge 1..=5000 one UID per commit, evens first, so no two records are adjacent.
    for uid in (2..=5000).step_by(2).chain((1..=5000).step_by(2)) {
        store.expunge(acc, inbox, Some(&[uid])).unwrap();
    }
    let ranges = store.with_mailbox(acc, inbox, |mb| mb.vanished.len()).unwrap();
    assert!(ranges <= postlog_engine::state::MAX_VANISHED_RANGES, "{ranges} expunge records kept");
    let mut gone = store.changes_since(acc, inbox, 0).unwrap().expunged;
    gone.sort_unstable();
    gone.dedup();
    assert_eq!(gone, (1..=5000).collect::<Vec<_>>(), "exactly the expunged UIDs, no live one");
    let live: Vec<u32> = store.messages(acc, inbox).unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(live, (5001..=6000).collect::<Vec<_>>());
    // Replaying the log (no snapshot) reaches the same records.
    let state = postlog_engine::store::state_of(&store);
    drop(store);
    let image = mem.crash_image(|_, _| None);
    let _ = postlog_engine::backend::Backend::remove(&image, "index.snap");
    let store = Store::open_backend(std::sync::Arc::new(image), Options::default()).unwrap();
    assert!(!store.recovery_report().snapshot_used);
    assert_eq!(postlog_engine::store::state_of(&store).accounts, state.accounts);
}

#[test]
fn an_append_with_side_writes_commits_both_and_the_values_see_the_uids() {
    use postlog_engine::{PreparedMessage, SideWrites};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let queue = store.create_account("#queue", &[]).unwrap();
    let inbox = store.mailbox_by_name(queue, "INBOX").unwrap().id;
    store.append(&msg(1), &[target(queue, inbox)]).unwrap();
    let prepared = Arc::new(PreparedMessage::new(&msg(2), store.options()));
    let side = SideWrites {
        keys: vec!["queue/a".into(), "queue/gone".into()],
        values: Box::new(|out| vec![Some(format!("uid {}", out[0][0].uid).into_bytes()), None]),
    };
    store.kv_write(vec![("queue/gone".into(), Some(b"x".to_vec()))], vec![]).unwrap();
    let done = store.append_many_with(vec![(prepared, vec![target(queue, inbox)])], side).unwrap();
    assert_eq!(done[0][0].uid, 2);
    assert_eq!(store.kv_get("queue/a").unwrap(), b"uid 2");
    assert!(store.kv_get("queue/gone").is_none());
    // A refused append writes no side key either.
    let prepared = Arc::new(PreparedMessage::new(&msg(3), store.options()));
    let side = SideWrites { keys: vec!["queue/b".into()], values: Box::new(|_| vec![Some(b"b".to_vec())]) };
    assert!(store.append_many_with(vec![(prepared, vec![target(queue, 999)])], side).is_err());
    assert!(store.kv_get("queue/b").is_none());
    // Both survive a replay without a snapshot.
    drop(store);
    let _ = std::fs::remove_file(dir.path().join("index.snap"));
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.kv_get("queue/a").unwrap(), b"uid 2");
    assert_eq!(store.read_message(queue, inbox, 2).unwrap(), msg(2));
}

/// Decoded bodies are kept for the next reader: the second read of a compressed body (whole
/// or a range) comes from the cache, and gives the same bytes.
#[test]
fn decoded_bodies_are_shared_by_later_reads() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let raw = msg(49);
    store.append(&raw, &[target(acc, inbox)]).unwrap();
    let stats = store.stats();
    assert_eq!(store.read_message(acc, inbox, 1).unwrap(), raw);
    assert_eq!((stats.body_cache_hits.load(Relaxed), stats.body_cache_misses.load(Relaxed)), (0, 1));
    assert_eq!(store.read_message(acc, inbox, 1).unwrap(), raw);
    assert_eq!(store.read_range(acc, inbox, 1, 6, 11).unwrap(), b"Alice");
    assert_eq!((stats.body_cache_hits.load(Relaxed), stats.body_cache_misses.load(Relaxed)), (2, 1));
    // Without a cache every read decodes.
    drop(store);
    let store = Store::open(dir.path(), Options { body_cache_bytes: 0, ..Options::default() }).unwrap();
    for _ in 0..3 {
        assert_eq!(store.read_message(acc, inbox, 1).unwrap(), raw);
    }
    let stats = store.stats();
    assert_eq!((stats.body_cache_hits.load(Relaxed), stats.body_cache_misses.load(Relaxed)), (0, 3));
}

/// The shared reads (what an IMAP FETCH renders from) give the same bytes as `read_message`,
/// one at a time or several in one call, for bodies stored plain, compressed and compressed
/// with the store's dictionary, and say which messages are gone.
#[test]
fn shared_reads_match_read_message() {
    use postlog_engine::ReadError;
    let dir = tempfile::tempdir().unwrap();
    // A dictionary trained from the first 20 messages; bodies under 512 bytes stay plain.
    let options = Options { dictionary_min_samples: 20, dictionary_min_bytes: 1, ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    let acc = store.create_account("a@example.test", &[]).unwrap();
    let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
    let body = |i: usize| -> Vec<u8> {
        let text = format!("line {i} of a message that repeats itself\r\n").repeat(i % 40 + 1);
        format!("From: a@example.test\r\nSubject: {i}\r\n\r\n{text}").into_bytes()
    };
    let mut uids = Vec::new();
    for i in 0..60 {
        while matches!(store.dictionary_state(), postlog_engine::dict::TrainingState::Training) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        uids.push(store.append(&body(i), &[target(acc, inbox)]).unwrap()[0].uid);
    }
    let codecs: std::collections::BTreeSet<u8> =
        postlog_engine::store::state_of(&store).blobs.values().map(|b| b.codec).collect();
    assert_eq!(codecs.into_iter().collect::<Vec<_>>(), [0, 1, 2], "plain, zstd and zstd with the dictionary");
    for (i, &uid) in uids.iter().enumerate() {
        assert_eq!(&store.read_message_shared(acc, inbox, uid).unwrap()[..], &body(i)[..]);
    }
    let mut asked = uids.clone();
    asked.insert(3, 9999);
    let read = store.read_messages_shared(acc, inbox, &asked);
    assert_eq!(read.len(), asked.len());
    for (uid, r) in asked.iter().zip(read) {
        match r {
            Ok(b) => assert_eq!(&b[..], &store.read_message(acc, inbox, *uid).unwrap()[..]),
            Err(e) => assert!(*uid == 9999 && matches!(e, ReadError::NoSuchMessage(9999)), "{e}"),
        }
    }
    assert!(store.read_messages_shared(acc, 77, &uids[..2]).iter().all(|r| matches!(r, Err(ReadError::NoSuchMailbox))));
    assert!(matches!(store.dictionary_state(), postlog_engine::dict::TrainingState::Ready(_)));
}
