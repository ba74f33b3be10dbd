//! [`View`]: a mailbox as one IMAP session sees it. Sequence numbers belong to the session:
//! they change only when the session is told (EXPUNGE or VANISHED, EXISTS), at the points
//! RFC 9051 allows, whatever other sessions and SMTP deliveries do meanwhile.
//!
//! The store keeps, per mailbox, a MODSEQ per message and the UIDs expunged with their
//! MODSEQ (`Store::changes_since`). A view remembers the UIDs it has announced, in order, and
//! the HIGHESTMODSEQ it has caught up to; [`View::refresh`] turns what changed since into the
//! untagged updates to send.

use std::collections::BTreeSet;

use postlog_engine::{AccountId, MailboxId, ReadError, Store, Uid};

/// An untagged update for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `* n EXPUNGE`: the message at sequence number `n` is gone (later numbers move down).
    Expunge(u32),
    /// `* VANISHED uid-set` (QRESYNC sessions): these UIDs are gone.
    Vanished(Vec<(Uid, Uid)>),
    /// `* n EXISTS`: the mailbox now has `n` messages.
    Exists(u32),
    /// `* seq FETCH (UID uid FLAGS (...) MODSEQ (m))`: a message's flags changed.
    Flags { seq: u32, uid: Uid, flags: u8, keywords: u64, modseq: u64 },
}

/// One selected mailbox of one session.
#[derive(Debug, Clone)]
pub struct View {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub uidvalidity: u32,
    pub read_only: bool,
    /// The UIDs announced to the client, in sequence order: sequence number `n` is `uids[n-1]`.
    uids: Vec<Uid>,
    /// Expunged in the store, not yet reported (reporting was not allowed when seen).
    pending_expunges: BTreeSet<Uid>,
    /// The HIGHESTMODSEQ the view has caught up to.
    modseq: u64,
}

impl View {
    /// Opens `mailbox` as the store has it now.
    pub fn open(store: &Store, account: AccountId, mailbox: MailboxId, read_only: bool) -> Result<View, ReadError> {
        let (uids, modseq, uidvalidity) = store.with_mailbox(account, mailbox, |mb| {
            (mb.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), mb.highest_modseq, mb.uidvalidity)
        })?;
        debug_assert!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs of a mailbox increase");
        Ok(View { account, mailbox, uidvalidity, read_only, uids, pending_expunges: BTreeSet::new(), modseq })
    }

    /// Messages as the client knows them (`EXISTS`).
    pub fn len(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    /// The HIGHESTMODSEQ the session has been brought up to.
    pub fn modseq(&self) -> u64 {
        self.modseq
    }

    /// The UID of sequence number `seq` (1-based).
    pub fn uid(&self, seq: u32) -> Option<Uid> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    /// The sequence number of `uid`, if the client knows the message.
    pub fn seq(&self, uid: Uid) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The UIDs the client knows, in sequence order.
    pub fn uids(&self) -> &[Uid] {
        &self.uids
    }

    /// The highest UID the client knows (0 if none), for resolving `*` in UID sets.
    pub fn last_uid(&self) -> Uid {
        self.uids.last().copied().unwrap_or(0)
    }

    /// Whether the message was expunged in the store but the client has not been told yet
    /// (FETCH of it answers what is known; STORE to it does nothing).
    pub fn is_expunged(&self, uid: Uid) -> bool {
        self.pending_expunges.contains(&uid)
    }

    /// Catches up with the store: what changed since the last refresh becomes updates, in the
    /// order to send them. `expunges_allowed`: false while answering FETCH, STORE and SEARCH
    /// (RFC 9051 section 7.4.1: no EXPUNGE then); seen expunges wait for the next refresh
    /// that allows them. `vanished`: report expunges as VANISHED (QRESYNC) rather than
    /// EXPUNGE.
    pub fn refresh(&mut self, store: &Store, expunges_allowed: bool, vanished: bool) -> Result<Vec<Update>, ReadError> {
        // Every command ends with a refresh: when the mailbox's HIGHESTMODSEQ has not moved,
        // answer without scanning its messages.
        let current = store.with_mailbox(self.account, self.mailbox, |mb| mb.highest_modseq)?;
        if current == self.modseq && (self.pending_expunges.is_empty() || !expunges_allowed) {
            return Ok(Vec::new());
        }
        let changes = store.changes_since(self.account, self.mailbox, self.modseq)?;
        let mut out = Vec::new();
        for uid in &changes.expunged {
            if self.seq(*uid).is_some() {
                self.pending_expunges.insert(*uid);
            }
        }
        if expunges_allowed && !self.pending_expunges.is_empty() {
            let gone = std::mem::take(&mut self.pending_expunges);
            if vanished {
                out.push(Update::Vanished(ranges(gone.iter().copied())));
                self.uids.retain(|u| !gone.contains(u));
            } else {
                // Highest first: each EXPUNGE's number is right at the moment it is read.
                for uid in gone.iter().rev() {
                    let seq = self.seq(*uid).expect("pending expunges are known UIDs");
                    out.push(Update::Expunge(seq));
                    self.uids.remove(seq as usize - 1);
                }
            }
        }
        let last = self.last_uid();
        let before = self.uids.len();
        let mut flags = Vec::new();
        for m in &changes.changed {
            if m.uid > last {
                self.uids.push(m.uid);
            } else if let Some(seq) = self.seq(m.uid)
                && !self.pending_expunges.contains(&m.uid)
            {
                flags.push(Update::Flags { seq, uid: m.uid, flags: m.flags, keywords: m.keywords, modseq: m.modseq });
            }
        }
        if self.uids.len() != before {
            self.uids.sort_unstable();
            out.push(Update::Exists(self.len()));
        }
        out.extend(flags);
        self.modseq = changes.highest_modseq;
        Ok(out)
    }
}

/// Sorted UIDs as ranges `(first, last)`.
pub fn ranges(uids: impl IntoIterator<Item = Uid>) -> Vec<(Uid, Uid)> {
    let mut out: Vec<(Uid, Uid)> = Vec::new();
    for u in uids {
        match out.last_mut() {
            Some((_, hi)) if u == *hi + 1 => *hi = u,
            _ => out.push((u, u)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use postlog_engine::{AppendTarget, Options};

    use super::*;

    fn store() -> (tempfile::TempDir, Store, AccountId, MailboxId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let account = store.create_account("a@example.test", &[("INBOX", 0)]).unwrap();
        let mailbox = store.mailbox_by_name(account, "INBOX").unwrap().id;
        (dir, store, account, mailbox)
    }

    fn append(store: &Store, account: AccountId, mailbox: MailboxId, n: usize) -> Vec<Uid> {
        (0..n)
            .map(|i| {
                let raw = format!("Subject: {i}\r\n\r\nbody\r\n");
                let t = AppendTarget { account, mailbox, flags: 0, keywords: vec![], internal_date: 0 };
                store.append(raw.as_bytes(), &[t]).unwrap()[0].uid
            })
            .collect()
    }

    #[test]
    fn new_messages_flag_changes_and_expunges_become_updates() {
        let (_d, store, account, mailbox) = store();
        let uids = append(&store, account, mailbox, 5);
        let mut view = View::open(&store, account, mailbox, false).unwrap();
        assert_eq!((view.len(), view.uid(1), view.seq(uids[4])), (5, Some(uids[0]), Some(5)));
        assert!(view.refresh(&store, true, false).unwrap().is_empty());

        let more = append(&store, account, mailbox, 2);
        store.store_flags(account, mailbox, &[uids[1]], postlog_engine::FlagOp::Add, 1, &[], None).unwrap();
        store.expunge(account, mailbox, Some(&[uids[2], uids[3]])).unwrap();
        // Not allowed to expunge now: only EXISTS and the flag change; numbers unchanged.
        let u = view.refresh(&store, false, false).unwrap();
        assert_eq!(u[0], Update::Exists(7));
        assert!(matches!(u[1], Update::Flags { seq: 2, flags: 1, .. }), "{u:?}");
        assert_eq!(u.len(), 2);
        assert!(view.is_expunged(uids[2]) && view.seq(uids[3]) == Some(4));
        // Now allowed: EXPUNGE highest first.
        let u = view.refresh(&store, true, false).unwrap();
        assert_eq!(u, vec![Update::Expunge(4), Update::Expunge(3)]);
        assert_eq!(view.uids(), &[uids[0], uids[1], uids[4], more[0], more[1]]);
        // QRESYNC sessions get VANISHED.
        store.expunge(account, mailbox, Some(&[more[0], more[1]])).unwrap();
        let u = view.refresh(&store, true, true).unwrap();
        assert_eq!(u, vec![Update::Vanished(vec![(more[0], more[1])])]);
        assert_eq!(view.len(), 3);
    }

    #[test]
    fn ranges_of_uids() {
        assert_eq!(ranges([1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert!(ranges([]).is_empty());
    }
}
