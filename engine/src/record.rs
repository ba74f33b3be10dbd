//! Logical records: what each record of the log means, and its payload encoding.
//!
//! A record is a fact about the store ("message 7 of mailbox 3 now has these flags"). The
//! same [`crate::state::State::apply`] runs when a commit becomes durable and when recovery
//! replays the log, so the in-memory state is always a pure function of the committed log.

use crate::codec::{Put, Take, Truncated};

/// Record kinds, the `kind` byte of a frame.
pub mod kind {
    pub const ACCOUNT_CREATE: u8 = 1;
    pub const ACCOUNT_DELETE: u8 = 2;
    pub const MAILBOX_CREATE: u8 = 3;
    pub const MAILBOX_RENAME: u8 = 4;
    pub const MAILBOX_DELETE: u8 = 5;
    pub const SUBSCRIBE: u8 = 6;
    pub const BLOB: u8 = 7;
    pub const META: u8 = 8;
    pub const MESSAGE_APPEND: u8 = 9;
    pub const FLAGS: u8 = 10;
    pub const EXPUNGE: u8 = 11;
    pub const COPY: u8 = 12;
    pub const SPECIAL_USE: u8 = 13;
    pub const CHECKPOINT: u8 = 14;
    pub const SEGMENT_DROP: u8 = 15;
    pub const KV_PUT: u8 = 16;
    pub const KV_DELETE: u8 = 17;
    pub const COMMIT: u8 = 20;
    pub const SEAL: u8 = 21;

    pub fn name(kind: u8) -> &'static str {
        match kind {
            ACCOUNT_CREATE => "account-create",
            ACCOUNT_DELETE => "account-delete",
            MAILBOX_CREATE => "mailbox-create",
            MAILBOX_RENAME => "mailbox-rename",
            MAILBOX_DELETE => "mailbox-delete",
            SUBSCRIBE => "subscribe",
            BLOB => "blob",
            META => "meta",
            MESSAGE_APPEND => "message-append",
            FLAGS => "flags",
            EXPUNGE => "expunge",
            COPY => "copy",
            SPECIAL_USE => "special-use",
            CHECKPOINT => "checkpoint",
            SEGMENT_DROP => "segment-drop",
            KV_PUT => "kv-put",
            KV_DELETE => "kv-delete",
            COMMIT => "commit",
            SEAL => "seal",
            _ => "unknown",
        }
    }
}

/// How a FLAGS record changes the flags of the messages it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add = 0,
    Remove = 1,
    Replace = 2,
}

impl FlagOp {
    fn from_u8(v: u8) -> Option<FlagOp> {
        match v {
            0 => Some(FlagOp::Add),
            1 => Some(FlagOp::Remove),
            2 => Some(FlagOp::Replace),
            _ => None,
        }
    }
}

/// Inclusive UID ranges, ascending and non-overlapping.
pub type UidRanges = Vec<(u32, u32)>;

/// Compresses ascending UIDs into inclusive runs.
pub fn to_ranges(uids: impl IntoIterator<Item = u32>) -> UidRanges {
    let mut out: UidRanges = Vec::new();
    for uid in uids {
        match out.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => out.push((uid, uid)),
        }
    }
    out
}

pub fn ranges_iter(ranges: &[(u32, u32)]) -> impl Iterator<Item = u32> + '_ {
    ranges.iter().flat_map(|&(a, b)| a..=b)
}

pub fn ranges_len(ranges: &[(u32, u32)]) -> u64 {
    ranges.iter().map(|&(a, b)| u64::from(b.saturating_sub(a)) + 1).sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The state, encoded as in `crate::state::State::encode_logical`.
    pub state: Vec<u8>,
}

/// A decoded record. Blob and meta data are not part of the value: they stay in the log
/// and are located by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    AccountCreate {
        account: u32,
        name: String,
    },
    AccountDelete {
        account: u32,
    },
    MailboxCreate {
        account: u32,
        mailbox: u32,
        name: String,
        uidvalidity: u32,
        special_use: u8,
        modseq: u64,
    },
    MailboxRename {
        account: u32,
        modseq: u64,
        renames: Vec<(u32, String)>,
    },
    MailboxDelete {
        account: u32,
        mailbox: u32,
        modseq: u64,
    },
    Subscribe {
        account: u32,
        name: String,
        subscribed: bool,
    },
    /// A message body. `data` (not held here) follows the fixed prefix, encoded per the
    /// frame's codec.
    Blob {
        blob: u64,
        hash: [u8; 32],
        raw_len: u64,
    },
    /// Parsed metadata of a blob; the encoded [`crate::meta::MessageMeta`] follows.
    Meta {
        blob: u64,
    },
    MessageAppend {
        account: u32,
        mailbox: u32,
        uid: u32,
        modseq: u64,
        blob: u64,
        /// The message's size (the blob's raw length), so replay never needs the blob first.
        size: u64,
        flags: u8,
        keywords: Vec<String>,
        internal_date: i64,
        save_date: i64,
        /// The message's thread in the account (see `crate::thread`): decided when the append
        /// is planned, never recomputed.
        thread: u32,
        /// Thread keys (message-id hashes) this append links to `thread`.
        links: Vec<u64>,
    },
    Flags {
        account: u32,
        mailbox: u32,
        modseq: u64,
        op: FlagOp,
        flags: u8,
        keywords: Vec<String>,
        uids: UidRanges,
    },
    Expunge {
        account: u32,
        mailbox: u32,
        modseq: u64,
        uids: UidRanges,
    },
    /// Copies the messages `uids` of `from` into `to`, giving them consecutive UIDs from
    /// `first_uid` in ascending source order, flags and internal dates kept.
    Copy {
        account: u32,
        from: u32,
        to: u32,
        modseq: u64,
        save_date: i64,
        first_uid: u32,
        uids: UidRanges,
    },
    SpecialUse {
        account: u32,
        mailbox: u32,
        special_use: u8,
        modseq: u64,
    },
    /// The whole logical state at this point; replay resets to it.
    Checkpoint(Checkpoint),
    /// A segment has been compacted away; every blob it held lives in a later segment.
    /// Sets a key of the store's small key-value directory (domains, users, aliases...).
    KvPut {
        key: String,
        value: Vec<u8>,
    },
    KvDelete {
        key: String,
    },
    SegmentDrop {
        segment: u64,
    },
    /// Closes a transaction: the `count` records from `first_lsn` (this record excluded)
    /// become visible together. `batch_seq` numbers group-commit batches; `batch_end` marks
    /// the last commit of a batch.
    Commit {
        first_lsn: u64,
        count: u32,
        batch_seq: u64,
        batch_end: bool,
    },
    /// Last record of a sealed segment.
    Seal {
        records: u64,
        last_lsn: u64,
    },
}

/// Fixed prefix of a BLOB payload before its data.
pub const BLOB_PREFIX_LEN: usize = 8 + 32 + 8;
/// Fixed prefix of a META payload before its data.
pub const META_PREFIX_LEN: usize = 8;

impl Record {
    pub fn kind(&self) -> u8 {
        match self {
            Record::AccountCreate { .. } => kind::ACCOUNT_CREATE,
            Record::AccountDelete { .. } => kind::ACCOUNT_DELETE,
            Record::MailboxCreate { .. } => kind::MAILBOX_CREATE,
            Record::MailboxRename { .. } => kind::MAILBOX_RENAME,
            Record::MailboxDelete { .. } => kind::MAILBOX_DELETE,
            Record::Subscribe { .. } => kind::SUBSCRIBE,
            Record::Blob { .. } => kind::BLOB,
            Record::Meta { .. } => kind::META,
            Record::MessageAppend { .. } => kind::MESSAGE_APPEND,
            Record::Flags { .. } => kind::FLAGS,
            Record::Expunge { .. } => kind::EXPUNGE,
            Record::Copy { .. } => kind::COPY,
            Record::SpecialUse { .. } => kind::SPECIAL_USE,
            Record::Checkpoint(_) => kind::CHECKPOINT,
            Record::SegmentDrop { .. } => kind::SEGMENT_DROP,
            Record::KvPut { .. } => kind::KV_PUT,
            Record::KvDelete { .. } => kind::KV_DELETE,
            Record::Commit { .. } => kind::COMMIT,
            Record::Seal { .. } => kind::SEAL,
        }
    }

    /// The account a record belongs to, 0 for store-wide records.
    pub fn account(&self) -> u32 {
        match self {
            Record::AccountCreate { account, .. }
            | Record::AccountDelete { account }
            | Record::MailboxCreate { account, .. }
            | Record::MailboxRename { account, .. }
            | Record::MailboxDelete { account, .. }
            | Record::Subscribe { account, .. }
            | Record::MessageAppend { account, .. }
            | Record::Flags { account, .. }
            | Record::Expunge { account, .. }
            | Record::Copy { account, .. }
            | Record::SpecialUse { account, .. } => *account,
            _ => 0,
        }
    }

    /// Encodes the payload (for BLOB and META: the prefix only; the caller appends data).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::AccountCreate { account, name } => {
                out.put_u32(*account);
                out.put_str(name);
            }
            Record::AccountDelete { account } => out.put_u32(*account),
            Record::MailboxCreate { account, mailbox, name, uidvalidity, special_use, modseq } => {
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_str(name);
                out.put_u32(*uidvalidity);
                out.put_u8(*special_use);
                out.put_u64(*modseq);
            }
            Record::MailboxRename { account, modseq, renames } => {
                out.put_u32(*account);
                out.put_u64(*modseq);
                out.put_u32(renames.len() as u32);
                for (id, name) in renames {
                    out.put_u32(*id);
                    out.put_str(name);
                }
            }
            Record::MailboxDelete { account, mailbox, modseq } => {
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_u64(*modseq);
            }
            Record::Subscribe { account, name, subscribed } => {
                out.put_u32(*account);
                out.put_str(name);
                out.put_u8(u8::from(*subscribed));
            }
            Record::Blob { blob, hash, raw_len } => {
                out.put_u64(*blob);
                out.extend_from_slice(hash);
                out.put_u64(*raw_len);
            }
            Record::Meta { blob } => out.put_u64(*blob),
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
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_u32(*uid);
                out.put_u64(*modseq);
                out.put_u64(*blob);
                out.put_u64(*size);
                out.put_u8(*flags);
                put_strings(out, keywords);
                out.put_i64(*internal_date);
                out.put_i64(*save_date);
                out.put_u32(*thread);
                out.put_u32(links.len() as u32);
                for k in links {
                    out.put_u64(*k);
                }
            }
            Record::Flags { account, mailbox, modseq, op, flags, keywords, uids } => {
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_u64(*modseq);
                out.put_u8(*op as u8);
                out.put_u8(*flags);
                put_strings(out, keywords);
                put_ranges(out, uids);
            }
            Record::Expunge { account, mailbox, modseq, uids } => {
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_u64(*modseq);
                put_ranges(out, uids);
            }
            Record::Copy { account, from, to, modseq, save_date, first_uid, uids } => {
                out.put_u32(*account);
                out.put_u32(*from);
                out.put_u32(*to);
                out.put_u64(*modseq);
                out.put_i64(*save_date);
                out.put_u32(*first_uid);
                put_ranges(out, uids);
            }
            Record::SpecialUse { account, mailbox, special_use, modseq } => {
                out.put_u32(*account);
                out.put_u32(*mailbox);
                out.put_u8(*special_use);
                out.put_u64(*modseq);
            }
            Record::Checkpoint(c) => out.extend_from_slice(&c.state),
            Record::SegmentDrop { segment } => out.put_u64(*segment),
            Record::KvPut { key, value } => {
                out.put_str(key);
                out.put_bytes(value);
            }
            Record::KvDelete { key } => out.put_str(key),
            Record::Commit { first_lsn, count, batch_seq, batch_end } => {
                out.put_u64(*first_lsn);
                out.put_u32(*count);
                out.put_u64(*batch_seq);
                out.put_u8(u8::from(*batch_end));
            }
            Record::Seal { records, last_lsn } => {
                out.put_u64(*records);
                out.put_u64(*last_lsn);
            }
        }
    }

    /// Decodes a payload. For BLOB and META only the prefix is read; the returned `usize` is
    /// where their data starts within the payload (for other kinds it is the payload length).
    pub fn decode(kind: u8, payload: &[u8]) -> Result<(Record, usize), Truncated> {
        let mut t = Take::new(payload);
        let rec = match kind {
            kind::ACCOUNT_CREATE => Record::AccountCreate { account: t.u32("account")?, name: t.string("name")? },
            kind::ACCOUNT_DELETE => Record::AccountDelete { account: t.u32("account")? },
            kind::MAILBOX_CREATE => Record::MailboxCreate {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                name: t.string("name")?,
                uidvalidity: t.u32("uidvalidity")?,
                special_use: t.u8("special-use")?,
                modseq: t.u64("modseq")?,
            },
            kind::MAILBOX_RENAME => {
                let account = t.u32("account")?;
                let modseq = t.u64("modseq")?;
                let n = t.count(8, "rename count")?;
                let mut renames = Vec::with_capacity(n);
                for _ in 0..n {
                    renames.push((t.u32("mailbox")?, t.string("name")?));
                }
                Record::MailboxRename { account, modseq, renames }
            }
            kind::MAILBOX_DELETE => Record::MailboxDelete {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                modseq: t.u64("modseq")?,
            },
            kind::SUBSCRIBE => Record::Subscribe {
                account: t.u32("account")?,
                name: t.string("name")?,
                subscribed: bool_of(&mut t, "subscribed")?,
            },
            kind::BLOB => {
                let rec = Record::Blob { blob: t.u64("blob")?, hash: t.array("hash")?, raw_len: t.u64("raw length")? };
                return Ok((rec, t.position()));
            }
            kind::META => {
                let rec = Record::Meta { blob: t.u64("blob")? };
                return Ok((rec, t.position()));
            }
            kind::MESSAGE_APPEND => Record::MessageAppend {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                uid: t.u32("uid")?,
                modseq: t.u64("modseq")?,
                blob: t.u64("blob")?,
                size: t.u64("size")?,
                flags: t.u8("flags")?,
                keywords: take_strings(&mut t)?,
                internal_date: t.i64("internal date")?,
                save_date: t.i64("save date")?,
                thread: t.u32("thread")?,
                links: {
                    let n = t.count(8, "thread link count")?;
                    (0..n).map(|_| t.u64("thread link")).collect::<Result<_, _>>()?
                },
            },
            kind::FLAGS => Record::Flags {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                modseq: t.u64("modseq")?,
                op: FlagOp::from_u8(t.u8("flag op")?).ok_or_else(|| t.err("flag op"))?,
                flags: t.u8("flags")?,
                keywords: take_strings(&mut t)?,
                uids: take_ranges(&mut t)?,
            },
            kind::EXPUNGE => Record::Expunge {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                modseq: t.u64("modseq")?,
                uids: take_ranges(&mut t)?,
            },
            kind::COPY => Record::Copy {
                account: t.u32("account")?,
                from: t.u32("from")?,
                to: t.u32("to")?,
                modseq: t.u64("modseq")?,
                save_date: t.i64("save date")?,
                first_uid: t.u32("first uid")?,
                uids: take_ranges(&mut t)?,
            },
            kind::SPECIAL_USE => Record::SpecialUse {
                account: t.u32("account")?,
                mailbox: t.u32("mailbox")?,
                special_use: t.u8("special-use")?,
                modseq: t.u64("modseq")?,
            },
            kind::CHECKPOINT => {
                let state = t.slice(t.remaining(), "checkpoint")?.to_vec();
                Record::Checkpoint(Checkpoint { state })
            }
            kind::SEGMENT_DROP => Record::SegmentDrop { segment: t.u64("segment")? },
            kind::KV_PUT => Record::KvPut { key: t.string("key")?, value: t.bytes("value")?.to_vec() },
            kind::KV_DELETE => Record::KvDelete { key: t.string("key")? },
            kind::COMMIT => Record::Commit {
                first_lsn: t.u64("first lsn")?,
                count: t.u32("count")?,
                batch_seq: t.u64("batch seq")?,
                batch_end: bool_of(&mut t, "batch end")?,
            },
            kind::SEAL => Record::Seal { records: t.u64("records")?, last_lsn: t.u64("last lsn")? },
            _ => return Err(t.err("record kind")),
        };
        let end = t.position();
        t.finish("end of record")?;
        Ok((rec, end))
    }
}

fn bool_of(t: &mut Take<'_>, what: &'static str) -> Result<bool, Truncated> {
    match t.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(t.err(what)),
    }
}

fn put_strings(out: &mut Vec<u8>, v: &[String]) {
    out.put_u32(v.len() as u32);
    for s in v {
        out.put_str(s);
    }
}

fn take_strings(t: &mut Take<'_>) -> Result<Vec<String>, Truncated> {
    let n = t.count(4, "keyword count")?;
    (0..n).map(|_| t.string("keyword")).collect()
}

fn put_ranges(out: &mut Vec<u8>, v: &[(u32, u32)]) {
    out.put_u32(v.len() as u32);
    for (a, b) in v {
        out.put_u32(*a);
        out.put_u32(*b);
    }
}

fn take_ranges(t: &mut Take<'_>) -> Result<UidRanges, Truncated> {
    let n = t.count(8, "range count")?;
    let mut out = Vec::with_capacity(n);
    let mut prev: Option<u32> = None;
    for _ in 0..n {
        let a = t.u32("range start")?;
        let b = t.u32("range end")?;
        if a == 0 || b < a || prev.is_some_and(|p| a <= p) {
            return Err(t.err("uid range"));
        }
        prev = Some(b);
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::AccountCreate { account: 1, name: "alice@example.test".into() },
            Record::AccountDelete { account: 1 },
            Record::MailboxCreate {
                account: 1,
                mailbox: 2,
                name: "Lists/rust".into(),
                uidvalidity: 9,
                special_use: 4,
                modseq: 3,
            },
            Record::MailboxRename { account: 1, modseq: 4, renames: vec![(2, "A".into()), (3, "A/B".into())] },
            Record::MailboxDelete { account: 1, mailbox: 2, modseq: 5 },
            Record::Subscribe { account: 1, name: "X".into(), subscribed: true },
            Record::MessageAppend {
                account: 1,
                mailbox: 2,
                uid: 3,
                modseq: 4,
                blob: 5,
                size: 77,
                flags: 6,
                keywords: vec!["$Forwarded".into()],
                internal_date: -7,
                save_date: 8,
                thread: 9,
                links: vec![0x0123_4567_89ab_cdef, 42],
            },
            Record::Flags {
                account: 1,
                mailbox: 2,
                modseq: 3,
                op: FlagOp::Remove,
                flags: 1,
                keywords: vec![],
                uids: vec![(1, 3), (7, 7)],
            },
            Record::Expunge { account: 1, mailbox: 2, modseq: 3, uids: vec![(4, 9)] },
            Record::Copy { account: 1, from: 2, to: 3, modseq: 4, save_date: 5, first_uid: 6, uids: vec![(1, 2)] },
            Record::SpecialUse { account: 1, mailbox: 2, special_use: 1, modseq: 9 },
            Record::SegmentDrop { segment: 3 },
            Record::KvPut { key: "user/a@x".into(), value: b"v".to_vec() },
            Record::KvDelete { key: "user/a@x".into() },
            Record::Commit { first_lsn: 10, count: 2, batch_seq: 5, batch_end: true },
            Record::Seal { records: 10, last_lsn: 20 },
        ]
    }

    #[test]
    fn round_trip_every_kind() {
        for rec in samples() {
            let mut buf = Vec::new();
            rec.encode_payload(&mut buf);
            let (back, end) = Record::decode(rec.kind(), &buf).unwrap();
            assert_eq!(back, rec);
            assert_eq!(end, buf.len());
            // Every strict prefix is rejected, never a panic.
            for cut in 0..buf.len() {
                assert!(Record::decode(rec.kind(), &buf[..cut]).is_err(), "{rec:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(to_ranges([1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert_eq!(ranges_iter(&[(1, 3), (5, 5)]).collect::<Vec<_>>(), vec![1, 2, 3, 5]);
        assert_eq!(ranges_len(&[(1, 3), (5, 5)]), 4);
    }
}
