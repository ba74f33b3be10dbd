//! Message threads: which conversation a message belongs to (IMAP `THREADID`, RFC 8474; JMAP
//! `threadId`).
//!
//! A thread id is a number per account (1, 2, ...), given to a message once, when it is
//! appended, and never changed: it is written in the message's MESSAGE_APPEND record, so
//! replay, snapshots, checkpoints and compaction carry it as they carry the UID. A copy or a
//! move within the account keeps it (COPY copies the source entry).
//!
//! # The rule
//!
//! At append, the message's **thread keys** are computed from its metadata ([`keys`]): a
//! 64-bit hash of each message-id it names (its own `Message-ID`, then `In-Reply-To`, then
//! `References`). Each account keeps **links** from such keys to the thread of the message
//! that brought them ([`Threads`]). The new message:
//! - joins the thread linked to any of its keys, as long as that thread still has a message
//!   in the account; when several do, the lowest (oldest) thread id wins. This covers a reply
//!   to a stored message (its `References` name the parent's `Message-ID`), a parent arriving
//!   after its reply (the reply's `References` linked the parent's id), two replies to a
//!   message the account does not have (they share that key), and the same message stored
//!   twice;
//! - otherwise starts a new thread (the account's last thread id + 1).
//!
//! Its keys that were not linked to a live thread are then linked to its thread. Threads are
//! never merged: a key already linked to another live thread stays with it, so a message that
//! names two threads joins one of them and both keep their ids. Subjects are not compared.
//!
//! # Memory, and what a collision does
//!
//! Per account: one link (a `u64` key and a `u32` thread) per distinct message-id seen, and a
//! count of live messages per thread; per message, the 4-byte thread id. A message brings at
//! most [`MAX_THREAD_KEYS`] keys (its own id, its `In-Reply-To`, the first and then the
//! latest `References`). Links of threads whose last message was expunged are ignored
//! at once and removed when the link table has grown past twice its size after the last
//! sweep (plus [`SWEEP_SLACK`]): the table stays within about twice the live links,
//! deterministically, so replay builds the same table. On the 300 messages of
//! `testdata/corpus` (235 threads, 394 links) the tables take about 40 bytes per message, and
//! the thread id grows a message entry from 56 to 64 bytes.
//!
//! The keys are the first 8 bytes of the SHA-256 of the normalised message-id (angle
//! brackets and white space removed, case kept). Two different message-ids with the same key
//! (about one chance in 10^7 for an account with ten million ids; a sender cannot aim at a
//! given id without knowing it) make a message join a thread it does not belong to; nothing
//! else. The ids of existing messages never change because of it.

use std::collections::HashMap;

use sha2::Digest;

use crate::meta::MessageMeta;

/// A thread, numbered per account from 1 (0 is never a thread).
pub type ThreadId = u32;

/// Most thread keys one message brings.
pub const MAX_THREAD_KEYS: usize = 16;

/// Links of dead threads are swept when the link table holds more than twice the links it
/// kept at the last sweep plus this many.
pub const SWEEP_SLACK: u64 = 4096;

/// The threads of one account: links from thread keys to threads, and live messages per thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Threads {
    /// The highest thread id given so far (0: none).
    pub last: ThreadId,
    /// Thread key → the thread it was linked to. May hold links of dead threads (see
    /// `swept_len`); [`Threads::lookup`] ignores those.
    pub links: HashMap<u64, ThreadId>,
    /// Messages (entries in any mailbox of the account) per live thread. Derived from the
    /// message entries and recounted whenever a state is loaded.
    pub live: HashMap<ThreadId, u32>,
    /// Links kept by the last sweep of dead threads' links.
    pub swept_len: u64,
}

impl Threads {
    /// The live thread `key` is linked to.
    pub fn lookup(&self, key: u64) -> Option<ThreadId> {
        self.links.get(&key).copied().filter(|t| self.live.contains_key(t))
    }

    /// Whether the thread has a message in the account.
    pub fn is_live(&self, thread: ThreadId) -> bool {
        self.live.contains_key(&thread)
    }

    /// Number of threads with a message in the account.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// A message joins `thread` (new or not) and links `links` to it (MESSAGE_APPEND).
    pub(crate) fn join(&mut self, thread: ThreadId, links: &[u64]) {
        self.last = self.last.max(thread);
        self.add(thread);
        for &k in links {
            self.links.insert(k, thread);
        }
        if !links.is_empty() && self.links.len() as u64 > self.swept_len.saturating_mul(2) + SWEEP_SLACK {
            self.sweep();
        }
    }

    /// One more message in `thread` (a copy).
    pub(crate) fn add(&mut self, thread: ThreadId) {
        *self.live.entry(thread).or_insert(0) += 1;
    }

    /// One message of `thread` gone (expunge, mailbox deletion).
    pub(crate) fn release(&mut self, thread: ThreadId) {
        if let Some(n) = self.live.get_mut(&thread) {
            *n -= 1;
            if *n == 0 {
                self.live.remove(&thread);
            }
        }
    }

    /// Drops the links of dead threads.
    fn sweep(&mut self) {
        let live = &self.live;
        self.links.retain(|_, t| live.contains_key(t));
        self.swept_len = self.links.len() as u64;
        if self.links.capacity() > 4 * self.links.len() + 1024 {
            self.links.shrink_to_fit();
        }
    }

    /// Recomputes the live counts from the threads of every message of the account.
    pub(crate) fn recount(&mut self, threads: impl Iterator<Item = ThreadId>) {
        self.live.clear();
        for t in threads {
            self.add(t);
        }
    }
}

/// The canonical form of one message-id: without angle brackets and white space (folding),
/// case kept. `None` when nothing is left.
pub fn normalize(id: &str) -> Option<String> {
    let s: String = id.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.strip_prefix('<').unwrap_or(&s);
    let s = s.strip_suffix('>').unwrap_or(s);
    (!s.is_empty()).then(|| s.to_string())
}

/// The thread key of a message-id (normalised first): the first 8 bytes of its SHA-256,
/// little-endian.
pub fn key(id: &str) -> Option<u64> {
    let n = normalize(id)?;
    let digest = sha2::Sha256::digest(n.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    Some(u64::from_le_bytes(b))
}

/// The message-ids of a raw header value (`Message-ID`, `In-Reply-To`): each `<...>`, or,
/// when there is no `<`, the whole value if it is one word (some mailers drop the brackets).
pub fn ids_in(value: &str) -> Vec<&str> {
    if !value.contains('<') {
        let v = value.trim();
        return if v.is_empty() || v.contains(char::is_whitespace) { Vec::new() } else { vec![v] };
    }
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// The thread keys of a message, its own `Message-ID` first, then `In-Reply-To`, then the
/// first `References` id (the root) and the others from the latest back; without duplicates,
/// at most [`MAX_THREAD_KEYS`].
pub fn keys(meta: &MessageMeta) -> Vec<u64> {
    let env = &meta.envelope;
    let own = env.message_id.as_deref().map(ids_in).unwrap_or_default().into_iter().take(1);
    let replied = env.in_reply_to.as_deref().map(ids_in).unwrap_or_default();
    let refs = meta.references.first().into_iter().chain(meta.references.iter().rev()).map(String::as_str);
    let mut out: Vec<u64> = Vec::new();
    for id in own.chain(replied).chain(refs) {
        if out.len() == MAX_THREAD_KEYS {
            break;
        }
        if let Some(k) = key(id)
            && !out.contains(&k)
        {
            out.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_ids() {
        assert_eq!(normalize("<a@b.example>").as_deref(), Some("a@b.example"));
        assert_eq!(normalize(" <a@b.\r\n example> ").as_deref(), Some("a@b.example"));
        assert_eq!(normalize("A@B").as_deref(), Some("A@B"));
        assert_eq!(normalize("<>"), None);
        assert_eq!(key("<a@b>"), key("a@b"));
        assert_ne!(key("a@b"), key("A@b"));
    }

    #[test]
    fn ids_of_header_values() {
        assert_eq!(ids_in("<a@b>"), ["a@b"]);
        assert_eq!(ids_in("<a@b> (comment) <c@d>"), ["a@b", "c@d"]);
        assert_eq!(ids_in("Your message of Monday <x@y>"), ["x@y"]);
        assert_eq!(ids_in("bare@id"), ["bare@id"]);
        assert!(ids_in("two words").is_empty());
        assert!(ids_in("<unclosed").is_empty());
        assert!(ids_in("").is_empty());
    }

    #[test]
    fn keys_of_a_reply() {
        let raw = b"Message-ID: <3@x>\r\nIn-Reply-To: <2@x>\r\nReferences: <1@x> <2@x>\r\n\r\nbody\r\n";
        let meta = crate::meta::parse(raw);
        let want: Vec<u64> = ["3@x", "2@x", "1@x"].iter().map(|i| key(i).unwrap()).collect();
        assert_eq!(keys(&meta), want);
        // No ids at all: no keys.
        assert!(keys(&crate::meta::parse(b"Subject: x\r\n\r\nbody\r\n")).is_empty());
    }

    #[test]
    fn keys_are_bounded_and_keep_the_root_and_the_parent() {
        let refs: Vec<String> = (0..40).map(|i| format!("<r{i}@x>")).collect();
        let raw = format!("Message-ID: <me@x>\r\nReferences: {}\r\n\r\n", refs.join(" "));
        let k = keys(&crate::meta::parse(raw.as_bytes()));
        assert_eq!(k.len(), MAX_THREAD_KEYS);
        assert_eq!(k[0], key("me@x").unwrap());
        assert_eq!(k[1], key("r0@x").unwrap());
        assert_eq!(k[2], key("r39@x").unwrap());
    }

    #[test]
    fn dead_threads_links_are_ignored_then_swept() {
        let mut t = Threads::default();
        t.join(1, &[10, 11]);
        t.join(2, &[20]);
        assert_eq!(t.lookup(10), Some(1));
        t.release(1);
        assert_eq!(t.lookup(10), None);
        assert!(!t.is_live(1) && t.is_live(2));
        assert_eq!(t.links.len(), 3, "not swept yet");
        let many: Vec<u64> = (1000..1000 + SWEEP_SLACK).collect();
        t.join(3, &many);
        assert!(!t.links.contains_key(&10) && t.links.contains_key(&20), "swept");
        assert_eq!(t.swept_len, t.links.len() as u64);
        assert_eq!(t.last, 3);
    }
}
