//! The outbound queue: messages for remote recipients, kept in the store until each recipient
//! has a final answer.
//!
//! # How a queued message is kept
//! - Its bytes are a message in the INBOX of the store's system account [`QUEUE_ACCOUNT`]
//!   (a name no login can have). The store keeps it like any mail: durable, compressed, copied
//!   forward by compaction.
//! - Its envelope and delivery state are an [`Entry`], JSON in the store's key-value directory
//!   under `queue/<id>`. The entry names the message's UID.
//! - Both are written in **one** commit ([`postlog_engine::SideWrites`]), together with the
//!   copies for local recipients of the same message: a message is queued and stored for its
//!   local recipients at once, or not at all, and the SMTP `250` waits for that commit.
//! - Every delivery attempt's outcome is a rewrite of the entry. When every recipient has its
//!   final answer, the entry is deleted (in the same commit as the bounce, if one is due) and
//!   then its message expunged. A crash between the two leaves a message no entry names;
//!   the scheduler expunges such orphans when it starts ([`Queue::expunge_orphans`]).
//!
//! So a queued message survives any crash and is delivered at least once; it is delivered
//! twice only if the server dies between a remote `250` and the commit that records it.
//!
//! The [`scheduler`] owns the entries while the server runs (the only writer); the `postlog
//! queue` commands reach it through the control socket, or work on the store directly when no
//! server runs.

pub mod bounce;
pub mod client;
pub mod control;
pub mod route;
pub mod scheduler;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postlog_engine::{AccountId, AppendTarget, CommitError, MailboxId, PreparedMessage, SideWrites, Store};
use serde::{Deserialize, Serialize};

/// The store account whose INBOX holds queued messages. `#` cannot start a login address.
pub const QUEUE_ACCOUNT: &str = "#queue";
/// Key prefix of the entries in the store's key-value directory.
pub const KEY_PREFIX: &str = "queue/";

/// A recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not delivered yet; tried again at the entry's `next_attempt`.
    Pending,
    /// A remote server took it (`250`).
    Delivered,
    /// Given up: a permanent refusal, or the lifetime ran out.
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// `ORCPT=` as received (`rfc822;...`, xtext), for the DSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// `NOTIFY=`: `None` is the default (failures, and delays, are reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySet>,
    pub status: Status,
    /// The enhanced status code of the last answer (or of our own decision), e.g. `4.4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened last, for `postlog queue show` and the DSN: the remote's reply, or why
    /// no remote was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    /// The host that gave the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The remote's reply, when the last answer was one (rather than DNS or a connection
    /// failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<RemoteReply>,
}

/// An SMTP reply as the remote sent it, kept for the DSN's `Diagnostic-Code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReply {
    pub code: u16,
    /// Enhanced status code, or empty.
    pub status: String,
    pub lines: Vec<String>,
}

impl RemoteReply {
    pub fn from_reply(r: &postlog_protocol::smtp::Reply) -> RemoteReply {
        RemoteReply { code: r.code, status: r.status.clone(), lines: r.lines.clone() }
    }

    pub fn to_reply(&self) -> postlog_protocol::smtp::Reply {
        postlog_protocol::smtp::Reply { code: self.code, status: self.status.clone(), lines: self.lines.clone() }
    }
}

/// `NOTIFY=` of RFC 3461.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotifySet {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// The envelope and delivery state of one queued message (`queue/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// The message's UID in the queue account's INBOX.
    pub uid: u32,
    /// The envelope sender; empty for the null sender `<>` (bounces).
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// `RET=HDRS` was asked for.
    #[serde(default)]
    pub ret_headers: bool,
    /// `BODY=`: "7bit", "8bitmime" or "binarymime".
    pub body: String,
    #[serde(default)]
    pub smtputf8: bool,
    pub size: u64,
    /// Unix seconds.
    pub arrived: i64,
    pub expires: i64,
    /// When the "delayed" notice is due (0: never).
    pub delay_notice_at: i64,
    #[serde(default)]
    pub delay_notified: bool,
    pub next_attempt: i64,
    pub attempts: u32,
    pub recipients: Vec<Recipient>,
}

impl Entry {
    pub fn key(&self) -> String {
        format!("{KEY_PREFIX}{}", self.id)
    }

    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.status == Status::Pending)
    }

    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }

    pub fn sender_display(&self) -> String {
        format!("<{}>", self.from)
    }
}

/// The domain of an address (after the last `@`), lower case.
pub fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map_or("", |(_, d)| d).trim_end_matches('.').to_ascii_lowercase()
}

/// What the SMTP front end hands to [`Queue::enqueue`].
pub struct NewMessage {
    pub from: String,
    pub envid: Option<String>,
    pub ret_headers: bool,
    pub body: String,
    pub smtputf8: bool,
    pub recipients: Vec<(String, Option<String>, Option<NotifySet>)>,
    /// The bytes to send (trace fields included).
    pub message: Arc<PreparedMessage>,
}

/// What the server's sessions and control socket hold: the queue and its scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    pub queue: Queue,
    pub scheduler: scheduler::SchedulerHandle,
}

/// A message and where its copies go, as [`Store::append_many`] takes them.
pub type Item = (Arc<PreparedMessage>, Vec<AppendTarget>);

/// One queueing commit, planned.
struct Planned {
    entry: Entry,
    items: Vec<Item>,
    side: SideWrites,
    /// Where the queued message is in `items`.
    index: usize,
}

/// A handle on the queue in the store.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    pub account: AccountId,
    pub mailbox: MailboxId,
    settings: crate::config::Queue,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new queue id: microseconds since the epoch and a per-process counter, in hex, so ids
/// sort by arrival.
pub fn new_id(now_micros: u64) -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xfff;
    format!("{now_micros:013X}{n:03X}")
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub use crate::util::now_unix;

impl Queue {
    /// The queue in `store`: creates the queue account on first use.
    pub fn open(store: Store, settings: crate::config::Queue) -> Result<Queue, CommitError> {
        let account = match store.account_id(QUEUE_ACCOUNT) {
            Some(a) => a,
            None => match store.create_account(QUEUE_ACCOUNT, &[]) {
                Ok(a) => a,
                Err(CommitError::AccountExists(_)) => {
                    store.account_id(QUEUE_ACCOUNT).ok_or_else(|| CommitError::NotAllowed("queue account".into()))?
                }
                Err(e) => return Err(e),
            },
        };
        let mailbox = store
            .mailbox_by_name(account, "INBOX")
            .map_err(|e| CommitError::NotAllowed(format!("the queue account has no INBOX: {e}")))?
            .id;
        Ok(Queue { store, account, mailbox, settings })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &crate::config::Queue {
        &self.settings
    }

    /// Expunges the queue's messages that no entry of `entries` (all of them) names: what a
    /// crash between an entry's deletion and its message's expunge leaves.
    pub fn expunge_orphans(&self, entries: &[Entry]) -> Result<(), CommitError> {
        let named: HashSet<u32> = entries.iter().map(|e| e.uid).collect();
        let orphans: Vec<u32> = self
            .store
            .messages(self.account, self.mailbox)
            .map_err(|e| CommitError::NotAllowed(e.to_string()))?
            .iter()
            .map(|m| m.uid)
            .filter(|uid| !named.contains(uid))
            .collect();
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "queue: expunging messages left without an entry");
            self.store.expunge(self.account, self.mailbox, Some(&orphans))?;
        }
        Ok(())
    }

    /// Every entry, oldest first. Entries that do not parse are logged and left alone.
    pub fn entries(&self) -> Vec<Entry> {
        self.store
            .kv_scan(KEY_PREFIX)
            .into_iter()
            .filter_map(|(key, value)| match serde_json::from_slice::<Entry>(&value) {
                Ok(e) => Some(e),
                Err(err) => {
                    tracing::error!(%key, error = %err, "queue: unreadable entry left alone");
                    None
                }
            })
            .collect()
    }

    pub fn entry(&self, id: &str) -> Option<Entry> {
        let raw = self.store.kv_get(&format!("{KEY_PREFIX}{id}"))?;
        serde_json::from_slice(&raw).ok()
    }

    /// The entry for `new`, not yet committed: its message's UID is filled in by the commit.
    pub fn new_entry(&self, new: &NewMessage, now: i64) -> Entry {
        let s = &self.settings;
        let delay = s.delay_notice.as_secs() as i64;
        Entry {
            id: new_id(now_micros()),
            uid: 0,
            from: new.from.clone(),
            envid: new.envid.clone(),
            ret_headers: new.ret_headers,
            body: new.body.clone(),
            smtputf8: new.smtputf8,
            size: new.message.raw_len(),
            arrived: now,
            expires: now + s.lifetime.as_secs() as i64,
            delay_notice_at: if delay > 0 { now + delay } else { 0 },
            delay_notified: false,
            next_attempt: now,
            attempts: 0,
            recipients: new
                .recipients
                .iter()
                .map(|(address, orcpt, notify)| Recipient {
                    address: address.clone(),
                    orcpt: orcpt.clone(),
                    notify: *notify,
                    status: Status::Pending,
                    code: None,
                    diagnostic: None,
                    remote: None,
                    reply: None,
                })
                .collect(),
        }
    }

    /// Queues `new` and stores `local` (other messages, or the same one, for local
    /// recipients) in one commit. Returns the committed entry.
    pub async fn enqueue(&self, new: NewMessage, local: Vec<Item>, now: i64) -> Result<Entry, CommitError> {
        let p = self.plan(new, local, now, None);
        let done = self.store.append_many_with_async(p.items, p.side).await?;
        Ok(Entry { uid: done[p.index][0].uid, ..p.entry })
    }

    /// [`enqueue`](Self::enqueue) for threads outside the runtime (the scheduler's notices).
    pub fn enqueue_blocking(&self, new: NewMessage, local: Vec<Item>, now: i64) -> Result<Entry, CommitError> {
        let p = self.plan(new, local, now, None);
        let done = self.store.append_many_with(p.items, p.side)?;
        Ok(Entry { uid: done[p.index][0].uid, ..p.entry })
    }

    /// The commit that queues `new` (its message in the queue's INBOX, its entry written once
    /// the UID is known) with the `local` copies, deleting the entry `delete` in it too.
    fn plan(&self, new: NewMessage, mut items: Vec<Item>, now: i64, delete: Option<String>) -> Planned {
        let entry = self.new_entry(&new, now);
        let target = AppendTarget {
            account: self.account,
            mailbox: self.mailbox,
            flags: 0,
            keywords: vec![],
            internal_date: now,
        };
        let index = items.len();
        items.push((new.message, vec![target]));
        let written = entry.clone();
        let mut keys = vec![entry.key()];
        keys.extend(delete.clone());
        let side = SideWrites {
            keys,
            values: Box::new(move |done| {
                let e = Entry { uid: done[index][0].uid, ..written.clone() };
                let mut values = vec![Some(serde_json::to_vec(&e).expect("queue entries serialize"))];
                if delete.is_some() {
                    values.push(None);
                }
                values
            }),
        };
        Planned { entry, items, side, index }
    }

    /// Writes the entry's new state.
    pub fn save(&self, entry: &Entry) -> Result<(), CommitError> {
        let value = serde_json::to_vec(entry).expect("queue entries serialize");
        self.store.kv_write(vec![(entry.key(), Some(value))], vec![])
    }

    /// Deletes the entry, then its message. With `bounce`, the bounce is stored or queued in
    /// the same commit as the deletion.
    pub fn finish(&self, entry: &Entry, bounce: Option<Bounce>) -> Result<Option<Entry>, CommitError> {
        let queued = match bounce {
            None => {
                self.store.kv_write(vec![(entry.key(), None)], vec![])?;
                None
            }
            Some(Bounce::Local { message, targets }) => {
                let key = entry.key();
                let side = SideWrites { keys: vec![key], values: Box::new(|_| vec![None]) };
                self.store.append_many_with(vec![(message, targets)], side)?;
                None
            }
            Some(Bounce::Remote(new)) => {
                let p = self.plan(new, Vec::new(), now_unix(), Some(entry.key()));
                let done = self.store.append_many_with(p.items, p.side)?;
                Some(Entry { uid: done[p.index][0].uid, ..p.entry })
            }
        };
        if let Err(e) = self.store.expunge(self.account, self.mailbox, Some(&[entry.uid])) {
            // The entry is gone; the scheduler's next start expunges the orphan.
            tracing::warn!(id = %entry.id, error = %e, "queue: expunging a finished message failed");
        }
        Ok(queued)
    }

    /// The queued message's bytes.
    pub fn read(&self, entry: &Entry) -> Result<Vec<u8>, postlog_engine::ReadError> {
        self.store.read_message(self.account, self.mailbox, entry.uid)
    }
}

/// Where a bounce goes.
pub enum Bounce {
    /// To local users' mailboxes (the sender is local).
    Local { message: Arc<PreparedMessage>, targets: Vec<AppendTarget> },
    /// Queued with the null sender.
    Remote(NewMessage),
}

/// The delay before attempt `attempts + 1`: doubling from `min` up to `max`, with up to a
/// quarter of random jitter subtracted so that retries of one outage spread out.
pub fn backoff(settings: &crate::config::Queue, attempts: u32, random: u64) -> i64 {
    let min = settings.min_backoff.as_secs().max(1);
    let max = settings.max_backoff.as_secs().max(min);
    let base = min.saturating_mul(1u64 << attempts.saturating_sub(1).min(30)).min(max);
    let jitter = if base >= 4 { random % (base / 4) } else { 0 };
    (base - jitter) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> crate::config::Queue {
        crate::config::Config::defaults().queue
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_below() {
        let mut s = settings();
        s.min_backoff = Duration::from_secs(300);
        s.max_backoff = Duration::from_secs(3600);
        assert_eq!(backoff(&s, 1, 0), 300);
        assert_eq!(backoff(&s, 2, 0), 600);
        assert_eq!(backoff(&s, 3, 0), 1200);
        assert_eq!(backoff(&s, 5, 0), 3600);
        assert_eq!(backoff(&s, 60, 0), 3600);
        for r in [1, 7, 74, 1000, u64::MAX] {
            let b = backoff(&s, 2, r);
            assert!((450..=600).contains(&b), "{b}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_id(1_700_000_000_000_000);
        let b = new_id(1_700_000_000_000_000);
        let c = new_id(1_700_000_000_000_001);
        assert_ne!(a, b);
        assert!(a < c && b < c);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn domains_are_lower_case() {
        assert_eq!(domain_of("Bob@Remote.TEST"), "remote.test");
        assert_eq!(domain_of("bob@remote.test."), "remote.test");
    }

    #[test]
    fn entries_round_trip_and_orphans_are_expunged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), postlog_engine::Options::default()).unwrap();
        let queue = Queue::open(store.clone(), settings()).unwrap();
        let raw = b"From: a@local.test\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let message = Arc::new(PreparedMessage::new(raw, store.options()));
        let new = NewMessage {
            from: "a@local.test".into(),
            envid: Some("xyz".into()),
            ret_headers: true,
            body: "8bitmime".into(),
            smtputf8: false,
            recipients: vec![("b@remote.test".into(), Some("rfc822;b@remote.test".into()), None)],
            message,
        };
        let entry = queue.enqueue_blocking(new, Vec::new(), 1_700_000_000).unwrap();
        assert_eq!(entry.uid, 1);
        assert_eq!(queue.entries(), vec![entry.clone()]);
        assert_eq!(queue.read(&entry).unwrap(), raw);
        assert_eq!(entry.expires - entry.arrived, 5 * 86400);
        // An orphan (as after a crash between an entry's deletion and the expunge).
        store.kv_write(vec![(entry.key(), None)], vec![]).unwrap();
        drop(queue);
        // What the scheduler does at start.
        let queue = Queue::open(store.clone(), settings()).unwrap();
        let entries = queue.entries();
        queue.expunge_orphans(&entries).unwrap();
        assert!(entries.is_empty());
        assert!(store.messages(queue.account, queue.mailbox).unwrap().is_empty());
    }
}
