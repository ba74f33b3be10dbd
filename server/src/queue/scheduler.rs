//! The scheduler: the one task that owns the queue's entries while the server runs.
//!
//! ```text
//!  SMTP sessions ──Enqueued──►┐
//!  control socket ──List/Retry/Delete──►  Scheduler  ──Job──► per-destination job list
//!                             └◄──JobDone── connection tasks ◄──┘ (several messages each)
//! ```
//! Due entries are split by destination ([`HopKey`]: the same route, relay or recipient
//! domain); each destination has a list of jobs that its connection tasks take in turn, so
//! messages to one domain share connections. Connection tasks are started while a
//! destination has jobs waiting, up to `queue.max_connections_per_domain` per destination and
//! `queue.max_connections` in all. Each job's outcome comes back here and is written to the
//! entry; an entry whose recipients all have a final answer is finished (and bounced, if any
//! failed and the sender asked for it). Retries back off exponentially with jitter; at
//! `expires` the pending recipients fail, and at `delay_notice_at` the sender is told once
//! that the message is delayed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::route::{HopKey, Router};
use super::{Entry, Queue, Status, domain_of, now_unix};

/// Where the scheduler answers a command: the control socket's threads wait on it with a
/// time-out (they are outside the runtime).
pub type Answer<T> = std::sync::mpsc::Sender<T>;

/// What the scheduler is asked to do.
pub enum Command {
    /// A new entry was committed: schedule it.
    Enqueued(Entry),
    List(Answer<Vec<Entry>>),
    /// Attempt now: one entry, or all (`flush`). Answers how many were rescheduled.
    Retry(Option<String>, Answer<usize>),
    /// Drop an entry without a bounce. Answers whether it existed.
    Delete(String, Answer<Result<bool, String>>),
}

/// A handle to send the scheduler commands.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SchedulerHandle {
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }
}

/// The answer for one recipient from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub code: String,
    pub diagnostic: String,
    pub remote: Option<String>,
    pub reply: Option<super::RemoteReply>,
}

impl Outcome {
    pub fn temporary(code: &str, diagnostic: impl Into<String>) -> Outcome {
        Outcome { status: Status::Pending, code: code.into(), diagnostic: diagnostic.into(), remote: None, reply: None }
    }

    pub fn permanent(code: &str, diagnostic: impl Into<String>) -> Outcome {
        Outcome { status: Status::Failed, code: code.into(), diagnostic: diagnostic.into(), remote: None, reply: None }
    }
}

/// One message for one destination: the entry's pending recipients there.
#[derive(Debug, Clone)]
pub struct Job {
    pub entry: Entry,
    /// Indexes into `entry.recipients`.
    pub recipients: Vec<usize>,
}

/// What a connection task reports for one job.
pub struct JobDone {
    pub id: String,
    pub outcomes: Vec<(usize, Outcome)>,
}

/// The jobs waiting for one destination, shared with its connection tasks.
pub type JobList = Arc<Mutex<VecDeque<Job>>>;

/// Messages from connection tasks.
pub enum Report {
    Done(JobDone),
    /// A connection task ended.
    Closed(HopKey),
}

/// How a connection task is run: `deliver(key, jobs, reports)` takes jobs from `jobs` until
/// none are left (or its own limit), sends a [`Report::Done`] per job, and
/// [`Report::Closed`] last.
pub type Deliver =
    Arc<dyn Fn(HopKey, JobList, mpsc::UnboundedSender<Report>) -> tokio::task::JoinHandle<()> + Send + Sync>;

struct Hop {
    jobs: JobList,
    connections: u32,
}

/// The queue's `/metrics` series.
#[derive(Clone)]
pub struct QueueMetrics {
    pub queued: crate::frame::metrics::Counter,
    pub sent: crate::frame::metrics::Counter,
    pub deferred: crate::frame::metrics::Counter,
    pub bounced: crate::frame::metrics::Counter,
    pub messages: crate::frame::metrics::Gauge,
    pub connections: crate::frame::metrics::Gauge,
}

impl QueueMetrics {
    pub fn new(m: &crate::frame::Metrics) -> QueueMetrics {
        const RCPTS: &str = "postlog_queue_recipients_total";
        const HELP: &str = "Outbound recipient attempts by outcome (queued counts recipients as queued).";
        QueueMetrics {
            queued: m.counter(RCPTS, HELP, &[("outcome", "queued")]),
            sent: m.counter(RCPTS, HELP, &[("outcome", "sent")]),
            deferred: m.counter(RCPTS, HELP, &[("outcome", "deferred")]),
            bounced: m.counter(RCPTS, HELP, &[("outcome", "bounced")]),
            messages: m.gauge("postlog_queue_messages", "Messages in the outbound queue.", &[]),
            connections: m.gauge("postlog_queue_connections", "Outbound SMTP connections open or being opened.", &[]),
        }
    }
}

pub struct Scheduler {
    metrics: Option<QueueMetrics>,
    queue: Queue,
    router: Arc<Router>,
    deliver: Deliver,
    entries: HashMap<String, Entry>,
    /// (next attempt, id) of entries not in flight.
    due: BTreeSet<(i64, String)>,
    /// Jobs not yet reported, per entry in flight.
    in_flight: HashMap<String, (usize, Vec<(usize, Outcome)>)>,
    hops: HashMap<HopKey, Hop>,
    connections: u32,
    commands: mpsc::UnboundedReceiver<Command>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    bounce: super::bounce::Maker,
}

impl Scheduler {
    /// The scheduler over the entries in the store, and its handle.
    pub fn new(
        queue: Queue,
        router: Arc<Router>,
        deliver: Deliver,
        bounce: super::bounce::Maker,
    ) -> (Scheduler, SchedulerHandle) {
        let (tx, commands) = mpsc::unbounded_channel();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let mut s = Scheduler {
            metrics: None,
            queue,
            router,
            deliver,
            entries: HashMap::new(),
            due: BTreeSet::new(),
            in_flight: HashMap::new(),
            hops: HashMap::new(),
            connections: 0,
            commands,
            reports_tx,
            reports,
            bounce,
        };
        let entries = s.queue.entries();
        if let Err(e) = s.queue.expunge_orphans(&entries) {
            tracing::error!(error = %e, "queue: expunging messages left without an entry failed; tried again at the next start");
        }
        for e in entries {
            s.insert(e);
        }
        (s, SchedulerHandle { tx })
    }

    /// Counts into `metrics` from now on.
    pub fn with_metrics(mut self, metrics: QueueMetrics) -> Scheduler {
        metrics.messages.set(self.entries.len() as i64);
        self.metrics = Some(metrics);
        self
    }

    fn insert(&mut self, e: Entry) {
        self.due.insert((e.next_attempt, e.id.clone()));
        self.entries.insert(e.id.clone(), e);
        self.count_messages();
    }

    fn count_messages(&self) {
        if let Some(m) = &self.metrics {
            m.messages.set(self.entries.len() as i64);
            m.connections.set(i64::from(self.connections));
        }
    }

    /// Runs until `stop` resolves.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        tracing::info!(entries = self.entries.len(), "queue: scheduler started");
        loop {
            let now = now_unix();
            self.dispatch(now);
            let wait = self.due.first().map_or(Duration::from_secs(60), |(t, _)| {
                Duration::from_millis(((t - now).max(0) as u64).saturating_mul(1000).clamp(50, 60_000))
            });
            tokio::select! {
                Some(c) = self.commands.recv() => self.command(c),
                Some(r) = self.reports.recv() => self.report(r),
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => break,
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Enqueued(e) => {
                tracing::info!(id = %e.id, from = %e.sender_display(), rcpts = e.recipients.len(), size = e.size, "queue: queued");
                if let Some(m) = &self.metrics {
                    m.queued.add(e.recipients.len() as u64);
                }
                self.insert(e);
            }
            Command::List(reply) => {
                let mut all: Vec<Entry> = self.entries.values().cloned().collect();
                all.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(all);
            }
            Command::Retry(id, reply) => {
                let now = now_unix();
                let ids: Vec<String> = match id {
                    Some(id) => vec![id],
                    None => self.entries.keys().cloned().collect(),
                };
                let mut n = 0;
                for id in ids {
                    if self.in_flight.contains_key(&id) {
                        n += usize::from(self.entries.contains_key(&id));
                        continue;
                    }
                    if let Some(e) = self.entries.get_mut(&id) {
                        self.due.remove(&(e.next_attempt, id.clone()));
                        e.next_attempt = now;
                        self.due.insert((now, id));
                        n += 1;
                    }
                }
                let _ = reply.send(n);
            }
            Command::Delete(id, reply) => {
                let Some(e) = self.entries.get(&id).cloned() else {
                    let _ = reply.send(Ok(false));
                    return;
                };
                match self.queue.finish(&e, None) {
                    Ok(_) => {
                        tracing::info!(id = %id, "queue: deleted by the operator");
                        self.due.remove(&(e.next_attempt, id.clone()));
                        self.entries.remove(&id);
                        self.count_messages();
                        let _ = reply.send(Ok(true));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.to_string()));
                    }
                }
            }
        }
    }

    /// Expires, notifies and splits into jobs every entry that is due.
    fn dispatch(&mut self, now: i64) {
        while let Some((t, id)) = self.due.first().cloned() {
            if t > now {
                break;
            }
            self.due.pop_first();
            let Some(entry) = self.entries.get(&id).cloned() else { continue };
            if entry.expires <= now {
                self.expire(entry, now);
                continue;
            }
            let mut by_hop: HashMap<HopKey, Vec<usize>> = HashMap::new();
            for (i, r) in entry.recipients.iter().enumerate() {
                if r.status == Status::Pending {
                    by_hop.entry(self.router.hop_key(&domain_of(&r.address))).or_default().push(i);
                }
            }
            if by_hop.is_empty() {
                self.complete(entry);
                continue;
            }
            self.in_flight.insert(id.clone(), (by_hop.len(), Vec::new()));
            for (key, recipients) in by_hop {
                let hop = self.hops.entry(key).or_insert_with(|| Hop { jobs: Arc::default(), connections: 0 });
                hop.jobs.lock().unwrap_or_else(|e| e.into_inner()).push_back(Job { entry: entry.clone(), recipients });
            }
        }
        self.start_connections();
    }

    fn start_connections(&mut self) {
        let settings = self.queue.settings().clone();
        let mut keys: Vec<HopKey> = self.hops.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let hop = self.hops.get_mut(&key).expect("listed above");
            let waiting = hop.jobs.lock().unwrap_or_else(|e| e.into_inner()).len() as u32;
            // One connection per batch of waiting jobs, within the limits.
            let per_conn = settings.max_messages_per_connection.max(1);
            let wanted = waiting.div_ceil(per_conn).min(settings.max_connections_per_domain);
            while hop.connections < wanted && self.connections < settings.max_connections {
                hop.connections += 1;
                self.connections += 1;
                (self.deliver)(key.clone(), hop.jobs.clone(), self.reports_tx.clone());
            }
        }
        self.count_messages();
    }

    fn report(&mut self, r: Report) {
        match r {
            Report::Closed(key) => {
                self.connections = self.connections.saturating_sub(1);
                if let Some(hop) = self.hops.get_mut(&key) {
                    hop.connections = hop.connections.saturating_sub(1);
                    let empty = hop.jobs.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                    if empty && hop.connections == 0 {
                        self.hops.remove(&key);
                    }
                }
                self.start_connections();
            }
            Report::Done(done) => {
                let Some((left, outcomes)) = self.in_flight.get_mut(&done.id) else { return };
                outcomes.extend(done.outcomes);
                *left -= 1;
                if *left > 0 {
                    return;
                }
                let (_, outcomes) = self.in_flight.remove(&done.id).expect("present above");
                if let Some(entry) = self.entries.get(&done.id).cloned() {
                    self.apply(entry, outcomes);
                }
            }
        }
    }

    /// Writes one attempt's outcomes into the entry; finishes it or schedules the next try.
    fn apply(&mut self, mut entry: Entry, outcomes: Vec<(usize, Outcome)>) {
        let now = now_unix();
        entry.attempts += 1;
        for (i, o) in outcomes {
            let Some(r) = entry.recipients.get_mut(i) else { continue };
            r.status = o.status;
            r.code = Some(o.code.clone());
            r.diagnostic = Some(o.diagnostic.clone());
            r.remote = o.remote.clone();
            r.reply = o.reply.clone();
            let what = match o.status {
                Status::Delivered => "sent",
                Status::Pending => "deferred",
                Status::Failed => "bounced",
            };
            if let Some(m) = &self.metrics {
                match o.status {
                    Status::Delivered => &m.sent,
                    Status::Pending => &m.deferred,
                    Status::Failed => &m.bounced,
                }
                .inc();
            }
            tracing::info!(
                id = %entry.id,
                to = %r.address,
                relay = %o.remote.as_deref().unwrap_or("none"),
                attempt = entry.attempts,
                status = what,
                dsn = %o.code,
                "queue: {what} ({})", o.diagnostic
            );
        }
        if entry.is_done() {
            self.complete(entry);
            return;
        }
        let delay = super::backoff(self.queue.settings(), entry.attempts, super::route::rand_u64());
        entry.next_attempt = (now + delay).min(entry.expires);
        if entry.delay_notice_at > 0 && now >= entry.delay_notice_at && !entry.delay_notified {
            entry.delay_notified = true;
            if let Some(b) = (self.bounce)(&self.queue, &entry, super::bounce::Kind::Delayed) {
                self.send_notice(&entry, b);
            }
        }
        if let Err(e) = self.queue.save(&entry) {
            tracing::error!(id = %entry.id, error = %e, "queue: saving the entry failed; retrying from the last saved state");
        }
        self.insert(entry);
    }

    /// A delay notice: stored or queued on its own (the entry stays).
    fn send_notice(&mut self, entry: &Entry, b: super::Bounce) {
        let now = now_unix();
        let result = match b {
            super::Bounce::Local { message, targets } => {
                self.queue.store().append_many(vec![(message, targets)]).map(|_| None)
            }
            super::Bounce::Remote(new) => self.queue.enqueue_blocking(new, Vec::new(), now).map(Some),
        };
        match result {
            Ok(Some(queued)) => self.insert(queued),
            Ok(None) => {}
            Err(e) => tracing::error!(id = %entry.id, error = %e, "queue: the delay notice could not be stored"),
        }
    }

    fn expire(&mut self, mut entry: Entry, now: i64) {
        let days = (now - entry.arrived) as f64 / 86400.0;
        for r in entry.recipients.iter_mut().filter(|r| r.status == Status::Pending) {
            r.status = Status::Failed;
            let last = r.diagnostic.clone().unwrap_or_else(|| "no attempt succeeded".into());
            r.diagnostic = Some(format!("message expired after {days:.1} days in the queue; last error: {last}"));
            r.code = Some(match r.code.as_deref() {
                Some(c) if c.starts_with('4') => format!("5{}", &c[1..]),
                _ => "5.4.7".into(),
            });
            tracing::info!(id = %entry.id, to = %r.address, status = "expired", "queue: expired");
            if let Some(m) = &self.metrics {
                m.bounced.inc();
            }
        }
        self.complete(entry);
    }

    /// Every recipient has its final answer: bounce the failures (if asked) and drop the entry.
    fn complete(&mut self, entry: Entry) {
        self.due.remove(&(entry.next_attempt, entry.id.clone()));
        let bounce = (self.bounce)(&self.queue, &entry, super::bounce::Kind::Final);
        match self.queue.finish(&entry, bounce) {
            Ok(queued) => {
                self.entries.remove(&entry.id);
                self.count_messages();
                tracing::info!(id = %entry.id, "queue: removed");
                if let Some(q) = queued {
                    tracing::info!(id = %q.id, about = %entry.id, "queue: bounce queued");
                    self.insert(q);
                }
            }
            Err(e) => {
                // Kept (with its outcomes) and tried again later.
                tracing::error!(id = %entry.id, error = %e, "queue: finishing the entry failed");
                let mut entry = entry;
                entry.next_attempt = now_unix() + 60;
                self.insert(entry);
            }
        }
    }
}
