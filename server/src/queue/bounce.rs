//! Bounces and delay notices: delivery status notifications (RFC 3464) to a queued message's
//! sender.
//!
//! Who is told what (RFC 3461):
//! - a recipient that failed is reported unless its `NOTIFY=` is `NEVER` or leaves out
//!   `FAILURE`; a delivered one only with `NOTIFY=SUCCESS` (`Action: relayed` when the remote
//!   does not pass on DSNs is not tracked: `delivered` is reported); a delayed one (the
//!   "delayed" notice, once per message) when `NOTIFY=` is absent or includes `DELAY`;
//! - never for the null sender `<>` (a bounce is not bounced: no loops);
//! - a sender in one of our domains gets it straight in their INBOX (one commit with the
//!   queue entry's deletion); anyone else through the queue, with the null sender.

use std::sync::Arc;

use postlog_engine::AppendTarget;
use postlog_protocol::smtp::command::parse_path;
use postlog_protocol::smtp::dsn::{self, Action, Dsn, RecipientReport};
use postlog_protocol::smtp::{Notify, Ret};

use super::{Bounce, Entry, NewMessage, Queue, Status, now_unix};
use crate::config::Config;
use crate::directory::{Directory, Resolution};

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every recipient has its final answer: report failures (and successes asked for).
    Final,
    /// The message is still being retried: report the delay.
    Delayed,
}

/// What the scheduler calls when an entry is finished or delayed: the notice to store or
/// queue, if one is due.
pub type Maker = Arc<dyn Fn(&Queue, &Entry, Kind) -> Option<Bounce> + Send + Sync>;

pub fn maker(config: &Config, directory: Directory) -> Maker {
    let hostname = config.hostname.clone();
    let max_original = config.smtp.max_message_size.min(10 << 20);
    Arc::new(move |queue, entry, kind| make(queue, entry, kind, &hostname, &directory, max_original))
}

/// The recipients a notice reports, by index: the protocol crate's NOTIFY rule
/// (`dsn::notify_requested`), except that without `NOTIFY=` a delay is reported too (the
/// "delayed" notice `queue.delay_notice` promises; RFC 3461 section 4.1 leaves it to us).
pub fn reported(entry: &Entry, kind: Kind) -> Vec<usize> {
    if entry.from.is_empty() {
        return Vec::new();
    }
    let wanted = |r: &super::Recipient| {
        let notify =
            r.notify.map(|n| Notify { never: n.never, success: n.success, failure: n.failure, delay: n.delay });
        match (kind, r.status) {
            (Kind::Final, Status::Failed) => dsn::notify_requested(notify.as_ref(), Action::Failed),
            (Kind::Final, Status::Delivered) => dsn::notify_requested(notify.as_ref(), Action::Delivered),
            (Kind::Delayed, Status::Pending) => {
                notify.is_none() || dsn::notify_requested(notify.as_ref(), Action::Delayed)
            }
            _ => false,
        }
    };
    entry.recipients.iter().enumerate().filter(|(_, r)| wanted(r)).map(|(i, _)| i).collect()
}

fn make(
    queue: &Queue,
    entry: &Entry,
    kind: Kind,
    hostname: &str,
    directory: &Directory,
    max_original: u64,
) -> Option<Bounce> {
    let which = reported(entry, kind);
    if which.is_empty() {
        return None;
    }
    let original = match queue.read(entry) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(id = %entry.id, error = %e, "queue: the original cannot be read for the bounce");
            Vec::new()
        }
    };
    // Never about a message that is itself a report or an automatic reply (no loops).
    if let Ok(sender) = parse_path(&entry.from)
        && let Some(why) = dsn::suppression(Some(&sender), &original)
    {
        tracing::info!(id = %entry.id, reason = ?why, "queue: no delivery report for this message");
        return None;
    }
    let now = now_unix();
    let notification = dsn_bytes(entry, &which, kind, hostname, &original, max_original, now)?;
    let bytes = notification.message;
    let message = Arc::new(queue.store().prepare(&bytes));
    // A local sender: straight into their INBOX (every local user behind the address).
    let local = match directory.resolve(&entry.from) {
        Ok(Resolution::User(u)) => vec![u],
        Ok(Resolution::Expanded { users, .. }) => users,
        _ => Vec::new(),
    };
    let targets: Vec<AppendTarget> = local
        .iter()
        .filter_map(|u| {
            let inbox = queue.store().mailbox_by_name(u.account, "INBOX").ok()?;
            Some(AppendTarget { account: u.account, mailbox: inbox.id, flags: 0, keywords: vec![], internal_date: now })
        })
        .collect();
    if !targets.is_empty() {
        return Some(Bounce::Local { message, targets });
    }
    Some(Bounce::Remote(NewMessage {
        from: String::new(),
        envid: None,
        ret_headers: false,
        body: match notification.body {
            postlog_protocol::smtp::BodyType::SevenBit => "7bit",
            postlog_protocol::smtp::BodyType::EightBitMime => "8bitmime",
            postlog_protocol::smtp::BodyType::BinaryMime => "binarymime",
        }
        .into(),
        smtputf8: notification.smtputf8,
        recipients: vec![(entry.from.clone(), None, None)],
        message,
    }))
}

fn dsn_bytes(
    entry: &Entry,
    which: &[usize],
    kind: Kind,
    hostname: &str,
    original: &[u8],
    max_original: u64,
    now: i64,
) -> Option<dsn::Notification> {
    let sender = parse_path(&entry.from).ok()?;
    let recipients: Vec<RecipientReport> = which
        .iter()
        .filter_map(|&i| {
            let r = &entry.recipients[i];
            let recipient = parse_path(&r.address).ok()?;
            let action = match (kind, r.status) {
                (Kind::Delayed, _) => Action::Delayed,
                (_, Status::Delivered) => Action::Delivered,
                _ => Action::Failed,
            };
            let status =
                r.code.clone().unwrap_or_else(|| if action == Action::Failed { "5.0.0" } else { "4.0.0" }.into());
            Some(RecipientReport {
                recipient,
                orcpt: r.orcpt.clone(),
                action,
                status,
                remote_mta: r.remote.as_deref().map(mta_name),
                remote_reply: r.reply.as_ref().map(|x| x.to_reply()),
                reason: if r.reply.is_some() { None } else { r.diagnostic.clone() },
                last_attempt: (entry.attempts > 0).then_some(now),
                will_retry_until: (action == Action::Delayed).then_some(entry.expires),
            })
        })
        .collect();
    if recipients.is_empty() {
        return None;
    }
    let report = Dsn {
        reporting_mta: hostname.to_string(),
        from_address: format!("MAILER-DAEMON@{hostname}"),
        sender,
        envid: entry.envid.clone(),
        ret: entry.ret_headers.then_some(Ret::Headers),
        smtputf8: entry.smtputf8,
        arrival_date: entry.arrived,
        date: now,
        message_id: super::new_id(now as u64 * 1_000_000),
        max_original_bytes: max_original as usize,
        recipients,
    };
    Some(dsn::build(&report, original))
}

/// The host of a connection label (`mx.example.com[192.0.2.1]:25`, `[192.0.2.1]:25`).
fn mta_name(label: &str) -> String {
    match label.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest).to_string(),
        None => label.split('[').next().unwrap_or(label).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NotifySet, Recipient};

    fn entry(from: &str, rcpts: Vec<(Status, Option<NotifySet>)>) -> Entry {
        Entry {
            id: "X".into(),
            uid: 1,
            from: from.into(),
            envid: None,
            ret_headers: false,
            body: "7bit".into(),
            smtputf8: false,
            size: 10,
            arrived: 0,
            expires: 10,
            delay_notice_at: 0,
            delay_notified: false,
            next_attempt: 0,
            attempts: 1,
            recipients: rcpts
                .into_iter()
                .enumerate()
                .map(|(i, (status, notify))| Recipient {
                    address: format!("r{i}@remote.test"),
                    orcpt: None,
                    notify,
                    status,
                    code: None,
                    diagnostic: None,
                    remote: None,
                    reply: None,
                })
                .collect(),
        }
    }

    #[test]
    fn who_is_reported_follows_notify() {
        let never = Some(NotifySet { never: true, ..Default::default() });
        let success = Some(NotifySet { success: true, ..Default::default() });
        let delay_only = Some(NotifySet { delay: true, ..Default::default() });
        let e = entry(
            "a@local.test",
            vec![
                (Status::Failed, None),
                (Status::Failed, never),
                (Status::Delivered, None),
                (Status::Delivered, success),
                (Status::Failed, delay_only),
            ],
        );
        assert_eq!(reported(&e, Kind::Final), [0, 3]);
        let e = entry(
            "a@local.test",
            vec![(Status::Pending, None), (Status::Pending, success), (Status::Pending, delay_only)],
        );
        assert_eq!(reported(&e, Kind::Delayed), [0, 2]);
        // Never to the null sender.
        let e = entry("", vec![(Status::Failed, None)]);
        assert!(reported(&e, Kind::Final).is_empty());
    }
}
