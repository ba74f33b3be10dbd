//! Who may send, who receives, and storing a message for its local recipients in one commit.
//!
//! Recipients are checked and resolved to local users at `RCPT` ([`Policy::check_recipient`]);
//! quotas are checked again with the real size at the end of the data. All the
//! local users of one message get it in one store commit: one stored body, one `fdatasync`,
//! shared with whatever other sessions commit at the same moment (group commit). The `250`
//! goes out only after that commit returned.

use std::collections::HashSet;

use postlog_engine::{AccountId, AppendTarget, CommitError, MailboxId, Store, special_use};
use postlog_protocol::smtp::{ForwardPath, Mailbox, Mode, Reply};

use super::filter::Folder;
use crate::config::QuotaReply;
use crate::directory::{Directory, LocalUser, Resolution, ResolveError};

/// What the SMTP front ends decide about senders and recipients.
#[derive(Clone)]
pub struct Policy {
    pub directory: Directory,
    pub mode: Mode,
    pub quota_reply: QuotaReply,
    /// The outbound queue runs: remote recipients (submission) and forwarding aliases are
    /// accepted and queued.
    pub queue_available: bool,
}

/// The local users and remote addresses one recipient resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// As the client gave it, for logs and `for <...>`.
    pub address: String,
    pub users: Vec<LocalUser>,
    /// Addresses the message is passed on to through the outbound queue: the recipient itself
    /// (submission to another domain), or an alias' remote targets.
    pub remote: Vec<String>,
    /// `NOTIFY=` and `ORCPT=` as given at `RCPT`, kept for the outbound side.
    pub notify: Option<postlog_protocol::smtp::Notify>,
    pub orcpt: Option<String>,
}

impl Policy {
    /// `MAIL FROM`. On submission the sender must be the user's own address or an alias that
    /// delivers to them (and not the null sender).
    pub fn check_sender(&self, from: Option<&Mailbox>, authenticated: Option<&LocalUser>) -> Result<(), Reply> {
        if self.mode != Mode::Submission {
            return Ok(());
        }
        let Some(user) = authenticated else {
            return Err(Reply::new(530, "5.7.0", "Authentication required"));
        };
        let owned = from.is_some_and(|m| match self.directory.resolve(&m.to_string()) {
            Ok(Resolution::User(u)) => u.account == user.account,
            Ok(Resolution::Expanded { users, .. }) => users.iter().any(|u| u.account == user.account),
            _ => false,
        });
        if owned {
            return Ok(());
        }
        let shown = from.map_or_else(|| "<>".to_string(), |m| format!("<{m}>"));
        Err(Reply::new(553, "5.7.1", format!("{shown}: Sender address rejected: not owned by user {}", user.address)))
    }

    /// `RCPT TO`, with the size the client declared (`SIZE=`) for the quota check.
    pub fn check_recipient(
        &self,
        to: &ForwardPath,
        authenticated: bool,
        declared_size: u64,
    ) -> Result<Resolved, Reply> {
        let address = match to {
            ForwardPath::Mailbox(m) => m.to_string(),
            ForwardPath::Postmaster => return self.postmaster(),
        };
        let resolution = self.directory.resolve(&address).map_err(|e| resolve_error(&address, &e))?;
        let resolved = |users, remote| Resolved { address: address.clone(), users, remote, notify: None, orcpt: None };
        match resolution {
            Resolution::User(user) => {
                self.quota_check(&address, std::slice::from_ref(&user), declared_size)?;
                Ok(resolved(vec![user], Vec::new()))
            }
            Resolution::Expanded { users, remote, .. } => {
                // An alias forwarding to other domains: those copies go through the queue.
                if !remote.is_empty() && !self.queue_available {
                    return Err(Reply::new(
                        451,
                        "4.4.3",
                        format!("<{address}>: forwarding to remote addresses is not available; try again later"),
                    ));
                }
                self.quota_check(&address, &users, declared_size)?;
                Ok(resolved(users, remote))
            }
            Resolution::Unknown => {
                Err(Reply::new(550, "5.1.1", format!("<{address}>: Recipient address rejected: no such user here")))
            }
            Resolution::NotLocal if self.mode == Mode::Submission && authenticated && self.queue_available => {
                Ok(resolved(Vec::new(), vec![address.clone()]))
            }
            Resolution::NotLocal if self.mode == Mode::Submission && authenticated => Err(Reply::new(
                451,
                "4.4.3",
                format!("<{address}>: delivery to remote domains is not available; try again later"),
            )),
            Resolution::NotLocal if self.mode == Mode::Lmtp => {
                Err(Reply::new(550, "5.1.1", format!("<{address}>: Recipient address rejected: not a local domain")))
            }
            Resolution::NotLocal => Err(Reply::new(554, "5.7.1", format!("<{address}>: Relay access denied"))),
        }
    }

    /// `<Postmaster>` without a domain (RFC 5321 section 4.5.1): the first local domain whose
    /// `postmaster@` reaches someone.
    fn postmaster(&self) -> Result<Resolved, Reply> {
        for d in self.directory.domains().unwrap_or_default() {
            let address = format!("postmaster@{}", d.domain);
            match self.directory.resolve(&address) {
                Ok(Resolution::User(u)) => {
                    return Ok(Resolved { address, users: vec![u], remote: Vec::new(), notify: None, orcpt: None });
                }
                Ok(Resolution::Expanded { users, remote, .. }) if remote.is_empty() && !users.is_empty() => {
                    return Ok(Resolved { address, users, remote: Vec::new(), notify: None, orcpt: None });
                }
                _ => {}
            }
        }
        Err(Reply::new(550, "5.1.1", "<Postmaster>: no postmaster address is set up here (add an alias)"))
    }

    /// Refuses when every user behind the address is over quota with `size` more.
    fn quota_check(&self, address: &str, users: &[LocalUser], size: u64) -> Result<(), Reply> {
        let over = |u: &LocalUser| self.directory.quota(&u.address).is_some_and(|q| !q.allows(size));
        if !users.is_empty() && users.iter().all(over) {
            return Err(self.over_quota(address));
        }
        Ok(())
    }

    pub fn over_quota(&self, address: &str) -> Reply {
        quota_refusal(self.quota_reply, address)
    }

    /// The VRFY answer (when enabled).
    pub fn vrfy(&self, what: &str) -> Reply {
        let address = what.trim().trim_start_matches('<').trim_end_matches('>');
        match self.directory.resolve(address) {
            Ok(Resolution::User(u)) => Reply::new(250, "2.0.0", format!("<{}>", u.address)),
            Ok(Resolution::Expanded { .. }) => Reply::new(250, "2.0.0", format!("<{address}>")),
            Ok(Resolution::NotLocal) => Reply::new(252, "2.0.0", format!("<{address}>: Cannot VRFY user")),
            Ok(Resolution::Unknown) => {
                Reply::new(550, "5.1.1", format!("<{address}>: Recipient address rejected: no such user here"))
            }
            Err(e) => resolve_error(address, &e),
        }
    }
}

/// The answer for a recipient over quota, per `smtp.quota_reply`.
pub fn quota_refusal(quota_reply: QuotaReply, address: &str) -> Reply {
    match quota_reply {
        QuotaReply::Temporary => Reply::new(452, "4.2.2", format!("<{address}>: Mailbox full, try again later")),
        QuotaReply::Permanent => Reply::new(552, "5.2.2", format!("<{address}>: Mailbox full")),
    }
}

fn resolve_error(address: &str, e: &ResolveError) -> Reply {
    match e {
        ResolveError::InvalidAddress(why) => Reply::new(501, "5.1.3", format!("<{address}>: bad address: {why}")),
        ResolveError::Loop { .. } | ResolveError::TooDeep => {
            Reply::new(550, "5.4.6", format!("<{address}>: alias loop or too deep"))
        }
        ResolveError::TooManyRecipients => {
            Reply::new(550, "5.5.3", format!("<{address}>: expands to too many recipients"))
        }
        ResolveError::Corrupt(_) => {
            Reply::new(451, "4.3.0", format!("<{address}>: temporary lookup failure, try again later"))
        }
    }
}

/// One stored copy: the account and mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Copy {
    account: AccountId,
    mailbox: MailboxId,
}

/// The mailbox a message goes to in `account`: the filter's folder if it exists, else INBOX.
fn target_mailbox(store: &Store, account: AccountId, folder: Option<&Folder>) -> Option<MailboxId> {
    let Some(folder) = folder else {
        return store.mailbox_by_name(account, "INBOX").ok().map(|m| m.id);
    };
    let boxes = store.mailboxes(account).ok()?;
    let found = match folder {
        Folder::SpecialUse(bit) => boxes.iter().find(|m| m.special_use & bit != 0),
        Folder::Named(name) => boxes.iter().find(|m| &m.name == name),
    };
    found.or_else(|| boxes.iter().find(|m| m.name == "INBOX")).map(|m| m.id)
}

/// What happens for each recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    Delivered,
    /// Every user behind the recipient is over quota (answered per `smtp.quota_reply`).
    OverQuota,
    /// The recipient no longer resolves, or its account has no INBOX.
    Failed(Reply),
}

/// What [`plan_delivery`] decided: per recipient what happens, and the copies to store (in
/// one commit, by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub results: Vec<RecipientResult>,
    pub targets: Vec<AppendTarget>,
}

/// Decides, for a message of `size` octets, which users behind `recipients` get a copy and
/// where (one copy per account, in the filter's folder or INBOX).
///
/// Over quota: with `strict_quota` (LMTP, which answers per recipient) a recipient whose users
/// are all over quota with the message's real size is left out. Otherwise (SMTP, one answer for
/// all recipients) the `RCPT` check, made with the size the client declared, decided: a message
/// that passed it is stored even if its real size takes the user over (one message of grace,
/// as Dovecot's `quota_grace`). Without `strict_quota` a message is stored for all recipients
/// or for none.
pub fn plan_delivery(
    store: &Store,
    directory: &Directory,
    size: u64,
    recipients: &[Resolved],
    folder: Option<&Folder>,
    strict_quota: bool,
    now: i64,
) -> Plan {
    let over = |u: &LocalUser| directory.quota(&u.address).is_some_and(|q| !q.allows(size));
    let mut results: Vec<RecipientResult> = recipients
        .iter()
        .map(|r| {
            // Without strict_quota the RCPT check (with the declared SIZE) was the quota check.
            if strict_quota && !r.users.is_empty() && r.users.iter().all(over) {
                RecipientResult::OverQuota
            } else {
                RecipientResult::Delivered
            }
        })
        .collect();
    let mut copies: Vec<Copy> = Vec::new();
    let mut seen = HashSet::new();
    for (r, result) in recipients.iter().zip(results.iter_mut()) {
        if *result != RecipientResult::Delivered {
            continue;
        }
        for u in &r.users {
            // An alias reaching several users: those over quota are left out (LMTP).
            if (strict_quota && over(u)) || !seen.insert(u.account) {
                continue;
            }
            match target_mailbox(store, u.account, folder) {
                Some(mailbox) => copies.push(Copy { account: u.account, mailbox }),
                None => {
                    tracing::error!(account = %u.address, "account has no INBOX; cannot deliver");
                    *result = RecipientResult::Failed(Reply::new(
                        451,
                        "4.3.0",
                        format!("<{}>: mailbox unavailable, try again later", r.address),
                    ));
                }
            }
        }
    }
    if !strict_quota {
        // One answer for all recipients: a message is stored for all of them or for none.
        let failed = results.iter().find(|r| matches!(r, RecipientResult::Failed(_))).cloned();
        if let Some(failed) = failed {
            return Plan { results: vec![failed; recipients.len()], targets: Vec::new() };
        }
    }
    let targets = copies
        .iter()
        .map(|c| AppendTarget {
            account: c.account,
            mailbox: c.mailbox,
            flags: 0,
            keywords: Vec::new(),
            internal_date: now,
        })
        .collect();
    Plan { results, targets }
}

/// The reply for a failed commit.
pub fn commit_error_reply(e: &CommitError) -> Reply {
    match e {
        CommitError::DiskFull => Reply::new(452, "4.3.1", "Insufficient system storage, try again later"),
        _ => Reply::new(451, "4.3.0", "Error: the message could not be stored, try again later"),
    }
}

/// The folder a message is filed in, for logs.
pub fn folder_name(f: Option<&Folder>) -> String {
    match f {
        None => "INBOX".into(),
        Some(Folder::SpecialUse(b)) if *b == special_use::JUNK => "\\Junk".into(),
        Some(Folder::SpecialUse(b)) => format!("special-use {b}"),
        Some(Folder::Named(n)) => n.clone(),
    }
}
