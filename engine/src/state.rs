//! The in-memory state of the store: accounts, mailboxes, message entries and the blob table.
//!
//! It is derived from the log alone: [`State::apply`] folds one committed record into it, both
//! when a commit becomes durable and when recovery replays the log. Snapshots (see
//! `snapshot.rs`) are this structure archived with rkyv.
//!
//! Per account it also holds the thread table ([`crate::thread::Threads`]): links from
//! message-id hashes to thread ids, and live messages per thread; every message entry carries
//! the thread id its MESSAGE_APPEND record gave it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::record::{FlagOp, Record, ranges_iter, to_ranges};
use crate::thread::{ThreadId, Threads};

pub type AccountId = u32;
pub type MailboxId = u32;
pub type Uid = u32;
pub type BlobId = u64;

/// System flags as bits of [`MessageEntry::flags`].
pub mod flag {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
    pub const ALL: u8 = SEEN | ANSWERED | FLAGGED | DELETED | DRAFT;
    pub const NAMES: [(u8, &str); 5] = [
        (SEEN, "\\Seen"),
        (ANSWERED, "\\Answered"),
        (FLAGGED, "\\Flagged"),
        (DELETED, "\\Deleted"),
        (DRAFT, "\\Draft"),
    ];
}

/// Special-use attributes (RFC 6154) as bits of [`Mailbox::special_use`].
pub mod special_use {
    pub const DRAFTS: u8 = 1;
    pub const SENT: u8 = 2;
    pub const JUNK: u8 = 4;
    pub const TRASH: u8 = 8;
    pub const ARCHIVE: u8 = 16;
    pub const ALL: u8 = 32;
    pub const FLAGGED: u8 = 64;
    pub const IMPORTANT: u8 = 128;
    pub const NAMES: [(u8, &str); 8] = [
        (DRAFTS, "\\Drafts"),
        (SENT, "\\Sent"),
        (JUNK, "\\Junk"),
        (TRASH, "\\Trash"),
        (ARCHIVE, "\\Archive"),
        (ALL, "\\All"),
        (FLAGGED, "\\Flagged"),
        (IMPORTANT, "\\Important"),
    ];
}

/// Expunge records a mailbox keeps before neighbouring ones are merged (see
/// [`Mailbox::coalesce_vanished`]).
pub const MAX_VANISHED_RANGES: usize = 4096;

/// Most keywords a mailbox can hold (they are a bitmap per message).
pub const MAX_KEYWORDS_PER_MAILBOX: usize = 64;

/// Largest raw message length a BLOB record may claim (1 TiB): far above any message, low
/// enough that byte counters summed over messages cannot overflow.
pub const MAX_RAW_LEN: u64 = 1 << 40;

/// Where bytes live in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Loc {
    pub segment: u64,
    /// Offset of the first byte in the segment file.
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BlobEntry {
    pub hash: [u8; 32],
    pub raw_len: u64,
    pub codec: u8,
    pub data: Loc,
    pub meta: Option<Loc>,
    /// Message entries referring to this blob (derived, recomputed by `check`).
    pub refs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageEntry {
    pub uid: Uid,
    pub modseq: u64,
    pub flags: u8,
    /// Bit i set: keyword `Mailbox::keywords[i]`.
    pub keywords: u64,
    pub internal_date: i64,
    pub save_date: i64,
    pub size: u64,
    pub blob: BlobId,
    /// The message's thread in its account (RFC 8474 THREADID), given at append, kept by copies.
    pub thread: ThreadId,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Mailbox {
    pub id: MailboxId,
    pub name: String,
    pub special_use: u8,
    pub uidvalidity: u32,
    pub uidnext: Uid,
    pub highest_modseq: u64,
    /// Sorted by UID; a message's sequence number is its index + 1.
    pub messages: Vec<MessageEntry>,
    pub keywords: Vec<String>,
    /// Expunged UID ranges with the MODSEQ of their expunge, for QRESYNC and JMAP changes.
    pub vanished: Vec<(Uid, Uid, u64)>,
    pub unseen: u32,
    pub bytes: u64,
}

impl Mailbox {
    pub fn position(&self, uid: Uid) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn message(&self, uid: Uid) -> Option<&MessageEntry> {
        self.position(uid).map(|i| &self.messages[i])
    }

    /// Bounds the memory of expunge records: merges ranges that no live message separates,
    /// keeping the later MODSEQ. Every UID below UIDNEXT was given to a message once, so a gap
    /// between two such ranges holds only expunged UIDs and the merged range stays exact as a
    /// set; a UID may then be reported as expunged later than it was, which QRESYNC and JMAP
    /// clients tolerate (they drop UIDs they do not know). Deterministic, so replay agrees.
    pub fn coalesce_vanished(&mut self) {
        self.vanished.sort_unstable_by_key(|v| v.0);
        let mut out: Vec<(Uid, Uid, u64)> = Vec::with_capacity(self.vanished.len());
        for &(a, b, m) in &self.vanished {
            if let Some(last) = out.last_mut() {
                let between_live = {
                    let i = self.messages.partition_point(|msg| msg.uid <= last.1);
                    self.messages.get(i).is_some_and(|msg| msg.uid < a)
                };
                if !between_live {
                    last.1 = last.1.max(b);
                    last.2 = last.2.max(m);
                    continue;
                }
            }
            out.push((a, b, m));
        }
        self.vanished = out;
    }

    pub fn keyword_names(&self, bits: u64) -> Vec<String> {
        self.keywords.iter().enumerate().filter(|(i, _)| bits & (1u64 << i) != 0).map(|(_, k)| k.clone()).collect()
    }

    /// Keyword bits for `names`, adding unknown names to the table. `None` when the table
    /// would grow past [`MAX_KEYWORDS_PER_MAILBOX`].
    fn keyword_bits_adding(&mut self, names: &[String]) -> Option<u64> {
        let mut bits = 0u64;
        for name in names {
            let i = match self.keywords.iter().position(|k| k.eq_ignore_ascii_case(name)) {
                Some(i) => i,
                None => {
                    if self.keywords.len() >= MAX_KEYWORDS_PER_MAILBOX {
                        return None;
                    }
                    self.keywords.push(name.clone());
                    self.keywords.len() - 1
                }
            };
            bits |= 1u64 << i;
        }
        Some(bits)
    }

    /// Keyword bits for names already in the table, and whether all were known.
    pub fn keyword_bits_known(&self, names: &[String]) -> (u64, bool) {
        let mut bits = 0u64;
        let mut all = true;
        for name in names {
            match self.keywords.iter().position(|k| k.eq_ignore_ascii_case(name)) {
                Some(i) => bits |= 1u64 << i,
                None => all = false,
            }
        }
        (bits, all)
    }

    /// How many keyword names are not yet in the table.
    pub fn new_keyword_count(&self, names: &[String]) -> usize {
        let mut seen: Vec<&str> = Vec::new();
        for n in names {
            if !self.keywords.iter().any(|k| k.eq_ignore_ascii_case(n))
                && !seen.iter().any(|s| s.eq_ignore_ascii_case(n))
            {
                seen.push(n);
            }
        }
        seen.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    /// The account's change counter: every change in any of its mailboxes takes the next value.
    pub modseq: u64,
    pub mailboxes: BTreeMap<MailboxId, Mailbox>,
    pub by_name: BTreeMap<String, MailboxId>,
    pub subscriptions: BTreeSet<String>,
    pub next_mailbox: MailboxId,
    pub bytes: u64,
    pub messages: u64,
    pub threads: Threads,
}

impl Account {
    pub fn mailbox_by_name(&self, name: &str) -> Option<&Mailbox> {
        self.by_name.get(name).and_then(|id| self.mailboxes.get(id))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct State {
    pub accounts: BTreeMap<AccountId, Account>,
    pub account_names: HashMap<String, AccountId>,
    pub next_account: AccountId,
    pub blobs: HashMap<BlobId, BlobEntry>,
    pub blob_by_hash: HashMap<[u8; 32], BlobId>,
    pub next_blob: BlobId,
    pub last_uidvalidity: u32,
    /// Segments compacted away.
    pub dropped_segments: BTreeSet<u64>,
    /// Segment holding the latest CHECKPOINT record (0: none yet).
    pub checkpoint_segment: u64,
    /// The small key-value directory (KV_PUT / KV_DELETE records).
    pub kv: BTreeMap<String, Vec<u8>>,
    /// During replay after a CHECKPOINT: references to blobs whose (relocated) BLOB record
    /// comes later in the log. Compaction writes its checkpoint before copying blobs forward,
    /// so such references are expected there; a BLOB record takes its count over. `None` in
    /// normal operation, where a reference to an unknown blob is an error.
    pub replay_refs: Option<HashMap<BlobId, u32>>,
}

/// A committed record that does not fit the state it is applied to: the log is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(pub String);

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(msg: String) -> Result<T, ApplyError> {
    Err(ApplyError(msg))
}

/// Where a record's variable data sits, for BLOB and META records.
#[derive(Debug, Clone, Copy)]
pub struct DataLoc {
    pub loc: Loc,
    pub codec: u8,
}

impl State {
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn mailbox(&self, account: AccountId, mailbox: MailboxId) -> Option<&Mailbox> {
        self.accounts.get(&account)?.mailboxes.get(&mailbox)
    }

    fn account_mut(&mut self, id: AccountId) -> Result<&mut Account, ApplyError> {
        match self.accounts.get_mut(&id) {
            Some(a) => Ok(a),
            None => bad(format!("record names account {id}, which does not exist")),
        }
    }

    fn unref(&mut self, blob: BlobId) -> Result<(), ApplyError> {
        match self.blobs.get_mut(&blob) {
            Some(b) if b.refs > 0 => {
                b.refs -= 1;
                Ok(())
            }
            None if self.replay_refs.as_ref().is_some_and(|m| m.get(&blob).is_some_and(|&n| n > 0)) => {
                if let Some(n) = self.replay_refs.as_mut().and_then(|m| m.get_mut(&blob)) {
                    *n -= 1;
                }
                Ok(())
            }
            _ => bad(format!("blob {blob} released more often than referenced")),
        }
    }

    fn add_ref(&mut self, blob: BlobId) -> Result<(), ApplyError> {
        match (self.blobs.get_mut(&blob), self.replay_refs.as_mut()) {
            (Some(b), _) => {
                b.refs += 1;
                Ok(())
            }
            (None, Some(pending)) => {
                *pending.entry(blob).or_insert(0) += 1;
                Ok(())
            }
            (None, None) => bad(format!("message refers to blob {blob}, which is not in the log")),
        }
    }

    /// Ends replay: references to blobs no record brought are corruption from here on.
    pub fn finish_replay(&mut self) -> Result<(), ApplyError> {
        self.replay_refs = None;
        self.recount_refs()
    }

    /// Folds one committed record into the state. `data` is given for BLOB and META records.
    pub fn apply(&mut self, rec: &Record, data: Option<DataLoc>) -> Result<(), ApplyError> {
        match rec {
            Record::AccountCreate { account, name } => {
                // Ids at the top of their range would make the next-id counters wrap.
                if *account == AccountId::MAX {
                    return bad(format!("account id {account} is out of range"));
                }
                if self.accounts.contains_key(account) || self.account_names.contains_key(name) {
                    return bad(format!("account {account} ({name}) created twice"));
                }
                self.accounts.insert(
                    *account,
                    Account {
                        id: *account,
                        name: name.clone(),
                        modseq: 1,
                        mailboxes: BTreeMap::new(),
                        by_name: BTreeMap::new(),
                        subscriptions: BTreeSet::new(),
                        next_mailbox: 1,
                        bytes: 0,
                        messages: 0,
                        threads: Threads::default(),
                    },
                );
                self.account_names.insert(name.clone(), *account);
                self.next_account = self.next_account.max(account + 1);
            }
            Record::AccountDelete { account } => {
                let acc = match self.accounts.remove(account) {
                    Some(a) => a,
                    None => return bad(format!("account {account} deleted but does not exist")),
                };
                self.account_names.remove(&acc.name);
                for mb in acc.mailboxes.values() {
                    for m in &mb.messages {
                        self.unref(m.blob)?;
                    }
                }
            }
            Record::MailboxCreate { account, mailbox, name, uidvalidity, special_use, modseq } => {
                let acc = self.account_mut(*account)?;
                if *mailbox == MailboxId::MAX {
                    return bad(format!("mailbox id {mailbox} is out of range"));
                }
                if acc.mailboxes.contains_key(mailbox) || acc.by_name.contains_key(name) {
                    return bad(format!("mailbox {mailbox} ({name}) of account {account} created twice"));
                }
                acc.modseq = acc.modseq.max(*modseq);
                acc.next_mailbox = acc.next_mailbox.max(mailbox + 1);
                acc.by_name.insert(name.clone(), *mailbox);
                acc.mailboxes.insert(
                    *mailbox,
                    Mailbox {
                        id: *mailbox,
                        name: name.clone(),
                        special_use: *special_use,
                        uidvalidity: *uidvalidity,
                        uidnext: 1,
                        highest_modseq: *modseq,
                        messages: Vec::new(),
                        keywords: Vec::new(),
                        vanished: Vec::new(),
                        unseen: 0,
                        bytes: 0,
                    },
                );
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
            }
            Record::MailboxRename { account, modseq, renames } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                for (id, _) in renames {
                    match acc.mailboxes.get(id) {
                        Some(mb) => {
                            let old = mb.name.clone();
                            acc.by_name.remove(&old);
                        }
                        None => return bad(format!("rename of missing mailbox {id} in account {account}")),
                    }
                }
                for (id, name) in renames {
                    if acc.by_name.contains_key(name) {
                        return bad(format!("rename onto existing mailbox name {name} in account {account}"));
                    }
                    acc.by_name.insert(name.clone(), *id);
                    if let Some(mb) = acc.mailboxes.get_mut(id) {
                        mb.name = name.clone();
                        mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    }
                }
            }
            Record::MailboxDelete { account, mailbox, modseq } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                let mb = match acc.mailboxes.remove(mailbox) {
                    Some(mb) => mb,
                    None => return bad(format!("delete of missing mailbox {mailbox} in account {account}")),
                };
                acc.by_name.remove(&mb.name);
                acc.bytes -= mb.bytes;
                acc.messages -= mb.messages.len() as u64;
                for m in &mb.messages {
                    acc.threads.release(m.thread);
                }
                for m in &mb.messages {
                    self.unref(m.blob)?;
                }
            }
            Record::Subscribe { account, name, subscribed } => {
                let acc = self.account_mut(*account)?;
                if *subscribed {
                    acc.subscriptions.insert(name.clone());
                } else {
                    acc.subscriptions.remove(name);
                }
            }
            Record::Blob { blob, hash, raw_len } => {
                let Some(d) = data else { return bad(format!("blob {blob} without data location")) };
                if *blob == BlobId::MAX {
                    return bad(format!("blob id {blob} is out of range"));
                }
                // The raw length feeds the usage counters and the read path's buffer: a plain
                // body is exactly its data; a compressed one is bounded so sums cannot wrap.
                let plain = d.codec == crate::format::Codec::None as u8;
                if (plain && *raw_len != u64::from(d.loc.len)) || *raw_len > MAX_RAW_LEN {
                    return bad(format!("blob {blob} claims {raw_len} bytes for {} stored", d.loc.len));
                }
                match self.blobs.get_mut(blob) {
                    // A later copy of the same blob (compaction moved it): follow it.
                    Some(existing) if existing.hash == *hash => {
                        existing.data = d.loc;
                        existing.codec = d.codec;
                    }
                    Some(_) => return bad(format!("blob id {blob} reused for different content")),
                    None => {
                        if self.blob_by_hash.contains_key(hash) {
                            return bad(format!("blob {blob} duplicates the content of another blob"));
                        }
                        // References replayed before this (relocated) record, see `replay_refs`.
                        let refs = self.replay_refs.as_mut().and_then(|m| m.remove(blob)).unwrap_or(0);
                        self.blobs.insert(
                            *blob,
                            BlobEntry { hash: *hash, raw_len: *raw_len, codec: d.codec, data: d.loc, meta: None, refs },
                        );
                        self.blob_by_hash.insert(*hash, *blob);
                        self.next_blob = self.next_blob.max(blob + 1);
                    }
                }
            }
            Record::Meta { blob } => {
                let Some(d) = data else { return bad(format!("meta of blob {blob} without data location")) };
                match self.blobs.get_mut(blob) {
                    Some(b) => b.meta = Some(d.loc),
                    None => return bad(format!("meta for unknown blob {blob}")),
                }
            }
            Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                blob,
                size,
                flags,
                keywords,
                internal_date,
                save_date,
                thread,
                links,
            } => {
                let size = *size;
                let acc = self.account_mut(*account)?;
                let Some(mb) = acc.mailboxes.get_mut(mailbox) else {
                    return bad(format!("append to missing mailbox {mailbox} of account {account}"));
                };
                if *uid < mb.uidnext || *uid == 0 || *uid == Uid::MAX {
                    return bad(format!("append of UID {uid} below UIDNEXT {} in mailbox {mailbox}", mb.uidnext));
                }
                // Thread ids at the top of their range would make the account's counter wrap.
                if *thread == 0 || *thread == ThreadId::MAX {
                    return bad(format!("append of UID {uid} in mailbox {mailbox} with thread id {thread}"));
                }
                // The usage counters sum sizes a damaged log may make huge: refuse what would
                // overflow them rather than wrap.
                let (Some(mb_bytes), Some(acc_bytes)) = (mb.bytes.checked_add(size), acc.bytes.checked_add(size))
                else {
                    return bad(format!(
                        "append of UID {uid} of {size} bytes overflows the usage of mailbox {mailbox}"
                    ));
                };
                let Some(kw) = mb.keyword_bits_adding(keywords) else {
                    return bad(format!("too many keywords in mailbox {mailbox}"));
                };
                mb.messages.push(MessageEntry {
                    uid: *uid,
                    modseq: *modseq,
                    flags: *flags & flag::ALL,
                    keywords: kw,
                    internal_date: *internal_date,
                    save_date: *save_date,
                    size,
                    blob: *blob,
                    thread: *thread,
                });
                mb.uidnext = uid + 1;
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                mb.bytes = mb_bytes;
                if flags & flag::SEEN == 0 {
                    mb.unseen += 1;
                }
                acc.modseq = acc.modseq.max(*modseq);
                acc.bytes = acc_bytes;
                acc.messages += 1;
                acc.threads.join(*thread, links);
                self.add_ref(*blob)?;
            }
            Record::Flags { account, mailbox, modseq, op, flags, keywords, uids } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                let Some(mb) = acc.mailboxes.get_mut(mailbox) else {
                    return bad(format!("flags for missing mailbox {mailbox} of account {account}"));
                };
                let kw = match op {
                    FlagOp::Remove => mb.keyword_bits_known(keywords).0,
                    _ => match mb.keyword_bits_adding(keywords) {
                        Some(k) => k,
                        None => return bad(format!("too many keywords in mailbox {mailbox}")),
                    },
                };
                for uid in ranges_iter(uids) {
                    let Some(i) = mb.position(uid) else {
                        return bad(format!("flags for missing UID {uid} in mailbox {mailbox}"));
                    };
                    let m = &mut mb.messages[i];
                    let was_seen = m.flags & flag::SEEN != 0;
                    match op {
                        FlagOp::Add => {
                            m.flags |= flags;
                            m.keywords |= kw;
                        }
                        FlagOp::Remove => {
                            m.flags &= !flags;
                            m.keywords &= !kw;
                        }
                        FlagOp::Replace => {
                            m.flags = *flags & flag::ALL;
                            m.keywords = kw;
                        }
                    }
                    m.modseq = *modseq;
                    let now_seen = m.flags & flag::SEEN != 0;
                    match (was_seen, now_seen) {
                        (false, true) => mb.unseen -= 1,
                        (true, false) => mb.unseen += 1,
                        _ => {}
                    }
                }
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
            }
            Record::Expunge { account, mailbox, modseq, uids } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                let Some(mb) = acc.mailboxes.get_mut(mailbox) else {
                    return bad(format!("expunge in missing mailbox {mailbox} of account {account}"));
                };
                let mut removed = Vec::new();
                let mut gone = Vec::new();
                let mut wanted = ranges_iter(uids).peekable();
                mb.messages.retain(|m| {
                    while wanted.peek().is_some_and(|&u| u < m.uid) {
                        wanted.next();
                    }
                    if wanted.peek() == Some(&m.uid) {
                        removed.push(*m);
                        gone.push(m.uid);
                        false
                    } else {
                        true
                    }
                });
                let mut freed = 0u64;
                for m in &removed {
                    freed += m.size;
                    if m.flags & flag::SEEN == 0 {
                        mb.unseen -= 1;
                    }
                }
                mb.bytes -= freed;
                for (a, b) in to_ranges(gone) {
                    mb.vanished.push((a, b, *modseq));
                }
                if mb.vanished.len() > MAX_VANISHED_RANGES {
                    mb.coalesce_vanished();
                }
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                acc.bytes -= freed;
                acc.messages -= removed.len() as u64;
                for m in &removed {
                    acc.threads.release(m.thread);
                }
                for m in &removed {
                    self.unref(m.blob)?;
                }
            }
            Record::Copy { account, from, to, modseq, save_date, first_uid, uids } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                let Some(src) = acc.mailboxes.get(from) else {
                    return bad(format!("copy from missing mailbox {from} of account {account}"));
                };
                let mut copied = Vec::new();
                for uid in ranges_iter(uids) {
                    match src.message(uid) {
                        Some(m) => copied.push((*m, src.keyword_names(m.keywords))),
                        None => return bad(format!("copy of missing UID {uid} from mailbox {from}")),
                    }
                }
                let Some(dst) = acc.mailboxes.get_mut(to) else {
                    return bad(format!("copy into missing mailbox {to} of account {account}"));
                };
                if *first_uid < dst.uidnext || *first_uid == 0 {
                    return bad(format!("copy to UID {first_uid} below UIDNEXT {} in mailbox {to}", dst.uidnext));
                }
                if u64::from(*first_uid) + copied.len() as u64 > u64::from(Uid::MAX) {
                    return bad(format!("copy of {} messages from UID {first_uid} runs out of UIDs", copied.len()));
                }
                let added = copied.iter().try_fold(0u64, |n, (m, _)| n.checked_add(m.size));
                let (Some(dst_bytes), Some(acc_bytes)) =
                    (added.and_then(|a| dst.bytes.checked_add(a)), added.and_then(|a| acc.bytes.checked_add(a)))
                else {
                    return bad(format!("copy of {} messages overflows the usage of mailbox {to}", copied.len()));
                };
                let mut next = *first_uid;
                let mut blobs = Vec::with_capacity(copied.len());
                let mut threads = Vec::with_capacity(copied.len());
                for (m, kws) in copied {
                    let Some(kw) = dst.keyword_bits_adding(&kws) else {
                        return bad(format!("too many keywords in mailbox {to}"));
                    };
                    dst.messages.push(MessageEntry {
                        uid: next,
                        modseq: *modseq,
                        keywords: kw,
                        save_date: *save_date,
                        ..m
                    });
                    if m.flags & flag::SEEN == 0 {
                        dst.unseen += 1;
                    }
                    blobs.push(m.blob);
                    threads.push(m.thread);
                    next += 1;
                }
                dst.uidnext = dst.uidnext.max(next);
                dst.highest_modseq = dst.highest_modseq.max(*modseq);
                dst.bytes = dst_bytes;
                acc.bytes = acc_bytes;
                acc.messages += blobs.len() as u64;
                for t in threads {
                    acc.threads.add(t);
                }
                for b in blobs {
                    self.add_ref(b)?;
                }
            }
            Record::SpecialUse { account, mailbox, special_use, modseq } => {
                let acc = self.account_mut(*account)?;
                acc.modseq = acc.modseq.max(*modseq);
                match acc.mailboxes.get_mut(mailbox) {
                    Some(mb) => {
                        mb.special_use = *special_use;
                        mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    }
                    None => return bad(format!("special-use for missing mailbox {mailbox}")),
                }
            }
            Record::Checkpoint(c) => {
                let logical = crate::snapshot::decode_logical(&c.state)
                    .map_err(|e| ApplyError(format!("checkpoint does not decode: {e}")))?;
                // Before the reset: after compacted segments, recovery tolerates the reset's
                // complaint about blobs not replayed yet, and the checkpoint still counts.
                if let Some(d) = data {
                    self.checkpoint_segment = d.loc.segment;
                }
                self.reset_logical(logical)?;
            }
            Record::SegmentDrop { segment } => {
                if let Some((id, _)) = self.blobs.iter().find(|(_, b)| b.data.segment == *segment && b.refs > 0) {
                    return bad(format!("segment {segment} dropped while live blob {id} is in it"));
                }
                let dead: Vec<BlobId> = self
                    .blobs
                    .iter()
                    .filter(|(_, b)| b.data.segment == *segment || b.meta.is_some_and(|m| m.segment == *segment))
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    if let Some(b) = self.blobs.remove(&id) {
                        self.blob_by_hash.remove(&b.hash);
                    }
                }
                self.dropped_segments.insert(*segment);
            }
            Record::KvPut { key, value } => {
                self.kv.insert(key.clone(), value.clone());
            }
            Record::KvDelete { key } => {
                self.kv.remove(key);
            }
            Record::Commit { .. } | Record::Seal { .. } => {}
        }
        Ok(())
    }

    /// Replaces accounts with those of a checkpoint, keeping the blob table and recomputing
    /// reference counts.
    pub fn reset_logical(&mut self, logical: crate::snapshot::Logical) -> Result<(), ApplyError> {
        validate_accounts(&logical.accounts, logical.next_account)?;
        self.accounts = logical.accounts;
        self.recount_usage();
        self.account_names = self.accounts.values().map(|a| (a.name.clone(), a.id)).collect();
        self.next_account = self.next_account.max(logical.next_account);
        self.last_uidvalidity = self.last_uidvalidity.max(logical.last_uidvalidity);
        self.kv = logical.kv;
        // Blobs a checkpoint's messages refer to may be replayed after it (compaction copies
        // them forward after writing the checkpoint): count what is known now, keep the rest
        // pending for their BLOB records; recovery makes the strict count at the end.
        let mut pending: HashMap<BlobId, u32> = HashMap::new();
        for b in self.blobs.values_mut() {
            b.refs = 0;
        }
        for acc in self.accounts.values() {
            for mb in acc.mailboxes.values() {
                for m in &mb.messages {
                    match self.blobs.get_mut(&m.blob) {
                        Some(b) => b.refs += 1,
                        None => *pending.entry(m.blob).or_insert(0) += 1,
                    }
                }
            }
        }
        self.replay_refs = Some(pending);
        Ok(())
    }

    /// Recomputes the counters derived from the message entries (per mailbox: bytes, unseen;
    /// per account: bytes, messages, live messages per thread), so a loaded snapshot or
    /// checkpoint is never trusted for them (a wrong one would make later subtractions
    /// underflow).
    pub fn recount_usage(&mut self) {
        for acc in self.accounts.values_mut() {
            acc.threads.recount(acc.mailboxes.values().flat_map(|mb| mb.messages.iter().map(|m| m.thread)));
            let (mut bytes, mut messages) = (0u64, 0u64);
            for mb in acc.mailboxes.values_mut() {
                // Saturating: sizes come from loaded bytes (validated, but never trusted to sum).
                mb.bytes = mb.messages.iter().fold(0u64, |n, m| n.saturating_add(m.size));
                mb.unseen = mb.messages.iter().filter(|m| m.flags & flag::SEEN == 0).count() as u32;
                bytes = bytes.saturating_add(mb.bytes);
                messages += mb.messages.len() as u64;
            }
            acc.bytes = bytes;
            acc.messages = messages;
        }
    }

    /// Recomputes every blob's reference count from the message entries.
    pub fn recount_refs(&mut self) -> Result<(), ApplyError> {
        for b in self.blobs.values_mut() {
            b.refs = 0;
        }
        let mut missing = None;
        for acc in self.accounts.values() {
            for mb in acc.mailboxes.values() {
                for m in &mb.messages {
                    match self.blobs.get_mut(&m.blob) {
                        Some(b) => b.refs += 1,
                        None => missing = Some((acc.id, mb.id, m.uid, m.blob)),
                    }
                }
            }
        }
        if let Some((a, mb, uid, blob)) = missing {
            return bad(format!(
                "message UID {uid} of mailbox {mb}, account {a} refers to blob {blob}, which is not in the log"
            ));
        }
        Ok(())
    }

    /// Counts each blob's references from scratch, for `check`.
    pub fn counted_refs(&self) -> HashMap<BlobId, u32> {
        let mut out = HashMap::new();
        for acc in self.accounts.values() {
            for mb in acc.mailboxes.values() {
                for m in &mb.messages {
                    *out.entry(m.blob).or_insert(0) += 1;
                }
            }
        }
        out
    }
}

/// Checks the invariants replay relies on in a loaded state (a checkpoint's or a snapshot's:
/// a CRC only proves the bytes are as written, and they could come from a damaged or crafted
/// file).
pub fn validate_accounts(accounts: &BTreeMap<AccountId, Account>, next_account: AccountId) -> Result<(), ApplyError> {
    for (id, acc) in accounts {
        if acc.id != *id || *id == 0 || *id >= next_account.max(1) || *id == AccountId::MAX {
            return bad(format!("checkpoint: account {id} is inconsistent"));
        }
        if acc.by_name.len() != acc.mailboxes.len() {
            return bad(format!("checkpoint: mailbox names of account {id} do not match its mailboxes"));
        }
        if acc.threads.last == ThreadId::MAX || acc.threads.links.values().any(|&t| t == 0 || t > acc.threads.last) {
            return bad(format!("checkpoint: thread links of account {id} are out of range"));
        }
        // The usage counters are recomputed from the sizes: they must sum without overflow.
        let mut usage = Some(0u64);
        for (mid, mb) in &acc.mailboxes {
            let ctx = || format!("checkpoint: mailbox {mid} of account {id}");
            if mb.id != *mid || *mid >= acc.next_mailbox || acc.by_name.get(&mb.name) != Some(mid) {
                return bad(format!("{} is inconsistent", ctx()));
            }
            if mb.uidnext == 0 || mb.uidnext == Uid::MAX {
                return bad(format!("{} has UIDNEXT {}", ctx(), mb.uidnext));
            }
            let mut prev = 0;
            for m in &mb.messages {
                if m.uid <= prev || m.uid >= mb.uidnext || m.modseq > mb.highest_modseq || m.size > MAX_RAW_LEN {
                    return bad(format!("{}: message UID {} out of order or range", ctx(), m.uid));
                }
                if m.thread == 0 || m.thread > acc.threads.last {
                    return bad(format!("{}: message UID {} has thread id {} out of range", ctx(), m.uid, m.thread));
                }
                prev = m.uid;
                usage = usage.and_then(|u| u.checked_add(m.size));
            }
            if usage.is_none() {
                return bad(format!("{}: message sizes add up past the usage counters' range", ctx()));
            }
            let mut span = 0u64;
            for &(a, b, _) in &mb.vanished {
                if a == 0 || b < a || b >= mb.uidnext {
                    return bad(format!("{}: expunged range {a}:{b} out of range", ctx()));
                }
                span += u64::from(b - a) + 1;
            }
            if span > u64::from(mb.uidnext) {
                return bad(format!("{}: expunged ranges cover more UIDs than were given", ctx()));
            }
        }
    }
    Ok(())
}
