//! Message threads (RFC 8474 THREADID): assigned once at append from Message-ID, In-Reply-To
//! and References, per account, and kept through restarts, replay, compaction, copy and move.

use std::sync::Arc;

use postlog_engine::backend::{Backend, MemBackend};
use postlog_engine::format::SegmentHeader;
use postlog_engine::store::state_of;
use postlog_engine::{AccountId, AppendTarget, MailboxId, OpenError, Options, PreparedMessage, Store, ThreadId, Uid};

/// A message with the given Message-ID (none when empty), In-Reply-To and References.
fn mail(id: &str, in_reply_to: &str, references: &str) -> Vec<u8> {
    let mut m = String::from("From: a@example.test\r\nSubject: thread test\r\n");
    if !id.is_empty() {
        m.push_str(&format!("Message-ID: <{id}>\r\n"));
    }
    if !in_reply_to.is_empty() {
        m.push_str(&format!("In-Reply-To: <{in_reply_to}>\r\n"));
    }
    if !references.is_empty() {
        let refs: Vec<String> = references.split(' ').map(|r| format!("<{r}>")).collect();
        m.push_str(&format!("References: {}\r\n", refs.join("\r\n ")));
    }
    m.push_str("\r\nbody\r\n");
    m.into_bytes()
}

fn target(account: AccountId, mailbox: MailboxId) -> AppendTarget {
    AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 1_700_000_000 }
}

/// Small segments, so compaction has whole segments to drop.
fn mem_store(mem: &MemBackend) -> Store {
    Store::open_backend(Arc::new(mem.clone()), Options { max_segment_bytes: 4 << 10, ..Options::default() }).unwrap()
}

struct Fixture {
    mem: MemBackend,
    store: Store,
    acc: AccountId,
    inbox: MailboxId,
}

impl Fixture {
    fn new() -> Fixture {
        let mem = MemBackend::new();
        let store = mem_store(&mem);
        let acc = store.create_account("alice@example.test", &[("Archive", 0)]).unwrap();
        let inbox = store.mailbox_by_name(acc, "INBOX").unwrap().id;
        Fixture { mem, store, acc, inbox }
    }

    /// Appends to INBOX; returns (UID, thread).
    fn add(&self, raw: &[u8]) -> (Uid, ThreadId) {
        let done = self.store.append(raw, &[target(self.acc, self.inbox)]).unwrap();
        (done[0].uid, done[0].thread)
    }

    /// (UID, thread) of every message of a mailbox.
    fn threads(&self, mailbox: MailboxId) -> Vec<(Uid, ThreadId)> {
        self.store.messages(self.acc, mailbox).unwrap().iter().map(|m| (m.uid, m.thread)).collect()
    }

    fn reopen(&mut self, drop_snapshot: bool) {
        self.store.close().unwrap();
        if drop_snapshot {
            let _ = self.mem.remove("index.snap");
        }
        self.store = mem_store(&self.mem);
        assert_eq!(self.store.recovery_report().snapshot_used, !drop_snapshot);
    }
}

#[test]
fn a_reply_chain_is_one_thread_and_unrelated_messages_are_not() {
    let f = Fixture::new();
    let (_, a) = f.add(&mail("a@x", "", ""));
    let (_, b) = f.add(&mail("b@x", "a@x", "a@x"));
    let (_, c) = f.add(&mail("c@x", "b@x", "a@x b@x"));
    // Only In-Reply-To, only References: both enough.
    let (_, d) = f.add(&mail("d@x", "c@x", ""));
    let (_, e) = f.add(&mail("e@x", "", "a@x"));
    assert_eq!((a, b, c, d, e), (1, 1, 1, 1, 1));
    let (_, other) = f.add(&mail("z@x", "", ""));
    let (_, no_id) = f.add(&mail("", "", ""));
    let (_, no_id_again) = f.add(&mail("", "", ""));
    assert_eq!((other, no_id, no_id_again), (2, 3, 4), "each unrelated message starts a thread");
    assert_eq!(f.store.thread_messages(f.acc, f.inbox, 1).unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(f.store.thread_messages(f.acc, f.inbox, 2).unwrap(), vec![6]);
    assert!(f.store.thread_messages(f.acc, f.inbox, 99).unwrap().is_empty());
    assert!(f.store.thread_exists(f.acc, 1).unwrap() && !f.store.thread_exists(f.acc, 99).unwrap());
}

#[test]
fn children_before_their_parent_siblings_and_duplicates() {
    let f = Fixture::new();
    // The grandchild first, then its parent, then the root: one thread.
    let (_, c) = f.add(&mail("c@x", "b@x", "a@x b@x"));
    let (_, b) = f.add(&mail("b@x", "a@x", "a@x"));
    let (_, a) = f.add(&mail("a@x", "", ""));
    assert_eq!((c, b, a), (1, 1, 1));
    // Two replies to a message the account never had share a thread.
    let (_, s1) = f.add(&mail("s1@x", "missing@x", "missing@x"));
    let (_, s2) = f.add(&mail("s2@x", "missing@x", ""));
    assert_eq!((s1, s2), (2, 2));
    // The same message stored again (a Bcc copy of a sent message) joins its thread.
    let (_, dup) = f.add(&mail("s1@x", "", ""));
    assert_eq!(dup, 2);
    // A message naming two threads joins the older; neither thread changes.
    let (_, both) = f.add(&mail("m@x", "s2@x", "c@x s2@x"));
    assert_eq!(both, 1);
    assert_eq!(f.threads(f.inbox), vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (7, 1)]);
    // The links of thread 2 stayed with it: a reply to s2 joins 2.
    assert_eq!(f.add(&mail("r@x", "s2@x", "")).1, 2);
}

#[test]
fn accounts_thread_independently() {
    let f = Fixture::new();
    let bob = f.store.create_account("bob@example.test", &[]).unwrap();
    let bob_inbox = f.store.mailbox_by_name(bob, "INBOX").unwrap().id;
    // Bob has one thread already, so his numbers differ from Alice's.
    f.store.append(&mail("bob-own@x", "", ""), &[target(bob, bob_inbox)]).unwrap();
    let both = f.store.append(&mail("a@x", "", ""), &[target(f.acc, f.inbox), target(bob, bob_inbox)]).unwrap();
    assert_eq!((both[0].thread, both[1].thread), (1, 2));
    // A reply only Alice gets joins her thread; Bob's thread is untouched.
    assert_eq!(f.add(&mail("b@x", "a@x", "")).1, 1);
    // A reply Bob gets joins his thread 2, not Alice's numbering.
    let done = f.store.append(&mail("c@x", "a@x", ""), &[target(bob, bob_inbox)]).unwrap();
    assert_eq!(done[0].thread, 2);
    // Alice's keys are not Bob's: a reply to Alice's b@x at Bob starts a thread there.
    let done = f.store.append(&mail("d@x", "b@x", ""), &[target(bob, bob_inbox)]).unwrap();
    assert_eq!(done[0].thread, 3);
}

#[test]
fn one_commit_of_a_whole_conversation_threads_it() {
    let f = Fixture::new();
    let archive = f.store.mailbox_by_name(f.acc, "Archive").unwrap().id;
    let items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)> =
        [mail("a@x", "", ""), mail("b@x", "a@x", "a@x"), mail("other@x", "", ""), mail("c@x", "b@x", "a@x b@x")]
            .iter()
            .map(|raw| {
                (
                    Arc::new(PreparedMessage::new(raw, f.store.options())),
                    vec![target(f.acc, f.inbox), target(f.acc, archive)],
                )
            })
            .collect();
    let done = f.store.append_many(items).unwrap();
    let threads: Vec<Vec<ThreadId>> = done.iter().map(|d| d.iter().map(|a| a.thread).collect()).collect();
    assert_eq!(threads, vec![vec![1, 1], vec![1, 1], vec![2, 2], vec![1, 1]]);
    assert_eq!(f.threads(archive), f.threads(f.inbox));
}

#[test]
fn copy_and_move_keep_the_thread_and_a_dead_thread_is_not_joined() {
    let f = Fixture::new();
    let archive = f.store.mailbox_by_name(f.acc, "Archive").unwrap().id;
    f.add(&mail("a@x", "", ""));
    f.add(&mail("b@x", "a@x", ""));
    f.add(&mail("z@x", "", ""));
    let copied = f.store.copy(f.acc, f.inbox, archive, &[1, 3]).unwrap();
    assert_eq!(copied.pairs, vec![(1, 1), (3, 2)]);
    f.store.move_messages(f.acc, f.inbox, archive, &[2]).unwrap();
    assert_eq!(f.threads(archive), vec![(1, 1), (2, 2), (3, 1)]);
    assert_eq!(f.store.thread_messages(f.acc, archive, 1).unwrap(), vec![1, 3]);
    // Thread 1 lives on in Archive after INBOX loses it: a reply still joins it.
    f.store.expunge(f.acc, f.inbox, Some(&[1])).unwrap();
    assert_eq!(f.add(&mail("c@x", "b@x", "")).1, 1);
    // Thread 2 gone everywhere: a reply to it starts a new thread.
    f.store.expunge(f.acc, f.inbox, Some(&[3])).unwrap();
    f.store.expunge(f.acc, archive, Some(&[2])).unwrap();
    assert!(!f.store.thread_exists(f.acc, 2).unwrap());
    assert_eq!(f.add(&mail("y@x", "z@x", "")).1, 3);
    // A deleted mailbox's messages leave their threads too.
    f.store.create_mailbox(f.acc, "Tmp", 0).unwrap();
    let tmp = f.store.mailbox_by_name(f.acc, "Tmp").unwrap().id;
    let done = f.store.append(&mail("t@x", "", ""), &[target(f.acc, tmp)]).unwrap();
    assert_eq!(done[0].thread, 4);
    f.store.delete_mailbox(f.acc, "Tmp").unwrap();
    assert!(!f.store.thread_exists(f.acc, 4).unwrap());
    assert_eq!(f.add(&mail("t2@x", "t@x", "")).1, 5);
}

#[test]
fn thread_ids_survive_restarts_replay_and_compaction() {
    let mut f = Fixture::new();
    let archive = f.store.mailbox_by_name(f.acc, "Archive").unwrap().id;
    for i in 0..20 {
        let parent = if i % 3 == 0 { String::new() } else { format!("m{}@x", i - 1) };
        f.add(&mail(&format!("m{i}@x"), &parent, &parent));
    }
    f.store.copy(f.acc, f.inbox, archive, &[2, 5, 9]).unwrap();
    f.store.move_messages(f.acc, f.inbox, archive, &[12]).unwrap();
    f.store.expunge(f.acc, f.inbox, Some(&[1, 4, 7])).unwrap();
    let want_inbox = f.threads(f.inbox);
    let want_archive = f.threads(archive);
    let want_state = state_of(&f.store).accounts;
    let check = |f: &Fixture, what: &str| {
        assert_eq!(f.threads(f.inbox), want_inbox, "{what}: INBOX");
        assert_eq!(f.threads(archive), want_archive, "{what}: Archive");
        assert_eq!(state_of(&f.store).accounts, want_state, "{what}: the accounts' state, thread tables included");
    };
    f.reopen(false);
    check(&f, "restart from the snapshot");
    f.reopen(true);
    check(&f, "replay of the log alone");
    let report = f.store.compact(0.0).unwrap();
    assert!(!report.segments_dropped.is_empty(), "{report:?}");
    check(&f, "compaction");
    f.reopen(true);
    check(&f, "replay after compaction (from its checkpoint)");
    f.reopen(false);
    check(&f, "restart after compaction");
    // And the thread links came through too: a late reply joins its thread.
    let (_, t) = f.add(&mail("late@x", "m13@x", ""));
    assert_eq!(t, want_inbox.iter().find(|(u, _)| *u == 14).unwrap().1);
}

#[test]
fn links_of_dead_threads_are_swept_the_same_way_in_replay() {
    let mut f = Fixture::new();
    let batch = |from: usize, n: usize, f: &Fixture| {
        let items: Vec<(Arc<PreparedMessage>, Vec<AppendTarget>)> = (from..from + n)
            .map(|i| {
                let raw = mail(&format!("n{i}@x"), &format!("p{i}@x"), "");
                (Arc::new(PreparedMessage::new(&raw, f.store.options())), vec![target(f.acc, f.inbox)])
            })
            .collect();
        f.store.append_many(items).unwrap();
    };
    // 1,000 threads of two links each, all expunged, then 1,100 more: the table passes 4,096
    // links (the slack above twice the 0 links of the last sweep) and drops the dead ones.
    batch(0, 1000, &f);
    let uids: Vec<Uid> = f.store.messages(f.acc, f.inbox).unwrap().iter().map(|m| m.uid).collect();
    f.store.expunge(f.acc, f.inbox, Some(&uids)).unwrap();
    batch(1000, 1100, &f);
    let threads = state_of(&f.store).accounts[&f.acc].threads.clone();
    assert_eq!((threads.last, threads.live.len()), (2100, 1100));
    assert_eq!(threads.links.len(), 2200, "the dead threads' links are gone");
    assert!(threads.swept_len > 0);
    // A reply to an expunged message starts a thread; one to a live message joins it.
    assert_eq!(f.add(&mail("x@x", "n5@x", "")).1, 2101);
    assert_eq!(f.add(&mail("y@x", "n1005@x", "")).1, 1006);
    let want = state_of(&f.store).accounts;
    f.reopen(true);
    assert_eq!(state_of(&f.store).accounts, want, "replay swept at the same point");
}

#[test]
fn a_store_of_format_version_1_is_refused_with_a_clear_error() {
    let mem = MemBackend::new();
    let mut header = SegmentHeader { segment_id: 1, base_lsn: 1, created_unix: 0 }.encode();
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = postlog_engine::format::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    let f = mem.create("seg-0000000000000001.log").unwrap();
    f.write_all_at(&header, 0).unwrap();
    match Store::open_backend(Arc::new(mem), Options::default()) {
        Err(e @ OpenError::UnsupportedFormat { segment: 1, version: 1 }) => {
            assert!(e.to_string().contains("format version 1"), "{e}");
        }
        other => panic!("opened a version 1 store: {:?}", other.err()),
    }
}
