//! `postlog import`: mail from a Maildir, an mbox file or a directory of .eml files into an
//! account. Several threads prepare messages (hash, parse, compress); one appends them in the
//! source's order, many per commit, so UIDs follow the source.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use postlog_engine::store::canonical_mailbox_name;
use postlog_engine::{AccountId, AppendTarget, CommitError, MailboxId, PreparedMessage, Store};

use crate::account::{DEFAULT_MAILBOXES, open_store};
use crate::cli::ImportArgs;
use crate::config::Config;
use crate::mailfmt::{EmlDir, MailMessage, MailSource, Maildir, Mbox};
use crate::util::{CmdError, exit, flag_bits, human_bytes, validate_address};

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub per_mailbox: BTreeMap<String, u64>,
}

struct Shared<'a> {
    store: &'a Store,
    account: AccountId,
    /// Source folder name to destination mailbox name.
    root: Option<String>,
    is_maildir: bool,
    mailboxes: Mutex<HashMap<String, MailboxId>>,
    imported: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    per_mailbox: Mutex<BTreeMap<String, u64>>,
    fatal: Mutex<Option<String>>,
    abort: AtomicBool,
    bar: ProgressBar,
    count_mode: bool,
}

impl Shared<'_> {
    fn destination(&self, folder: &str) -> String {
        match (&self.root, self.is_maildir) {
            (Some(root), true) if folder.eq_ignore_ascii_case("INBOX") => root.clone(),
            (Some(root), true) => format!("{root}/{folder}"),
            _ => folder.to_string(),
        }
    }

    fn mailbox(&self, name: &str) -> Result<MailboxId, CommitError> {
        let name = canonical_mailbox_name(name)?;
        let mut map = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = map.get(&name) {
            return Ok(*id);
        }
        let id = match self.store.create_mailbox(self.account, &name, 0) {
            Ok(id) => id,
            Err(CommitError::MailboxExists(_)) => {
                self.store
                    .mailbox_by_name(self.account, &name)
                    .map_err(|e| CommitError::NoSuchMailbox(format!("{name}: {e}")))?
                    .id
            }
            Err(e) => return Err(e),
        };
        map.insert(name, id);
        Ok(id)
    }

    fn report(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.bar.suspend(|| eprintln!("postlog import: skipped {what}"));
    }

    /// Resolves the destination and prepares the message (hash, parse, compress) on the
    /// calling worker thread. `None`: reported and skipped.
    fn prepare(&self, ordinal: u64, msg: MailMessage) -> Option<Ready> {
        let dest = self.destination(&msg.folder);
        let describe = format!("message #{ordinal} of folder {:?}", msg.folder);
        let mailbox = match self.mailbox(&dest) {
            Ok(id) => id,
            Err(e) => {
                self.report(format!("{describe}: mailbox {dest:?}: {e}"));
                return None;
            }
        };
        let (flags, unknown) = flag_bits(&msg.flags);
        if !unknown.is_empty() {
            self.bar.suspend(|| eprintln!("postlog import: {describe}: dropped unknown flags {unknown:?}"));
        }
        // The store trains its compression dictionary from the first messages, on a thread of
        // its own: an import waits for it (a second or so, once) instead of compressing the
        // thousands of messages it reads meanwhile without it, worse and slower to read back.
        // (At most a minute: past that, the import goes on without it.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(self.store.dictionary_state(), postlog_engine::dict::TrainingState::Training)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let prepared = Arc::new(self.store.prepare(&msg.bytes));
        let target = AppendTarget {
            account: self.account,
            mailbox,
            flags,
            keywords: msg.keywords,
            internal_date: msg.internal_date,
        };
        Some(Ready { prepared, target, dest, describe, bytes: msg.bytes.len() as u64 })
    }

    /// Appends a run of prepared messages in source order, in one commit. If the store refuses
    /// the run for one message's sake (its keywords), they go one by one so only that one is
    /// affected.
    fn commit(&self, run: Vec<Ready>) {
        if run.is_empty() {
            return;
        }
        let items = run.iter().map(|r| (r.prepared.clone(), vec![r.target.clone()])).collect();
        match self.store.append_many(items) {
            Ok(_) => run.into_iter().for_each(|r| self.done(r)),
            Err(CommitError::TooManyKeywords | CommitError::NotAllowed(_)) if run.len() > 1 => {
                run.into_iter().for_each(|r| self.commit_one(r));
            }
            Err(_) => run.into_iter().for_each(|r| self.commit_one(r)),
        }
    }

    fn commit_one(&self, mut r: Ready) {
        let mut result = self.store.append_prepared(r.prepared.clone(), std::slice::from_ref(&r.target));
        if matches!(result, Err(CommitError::TooManyKeywords) | Err(CommitError::NotAllowed(_)))
            && !r.target.keywords.is_empty()
        {
            let why = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
            self.bar.suspend(|| {
                eprintln!("postlog import: {}: keywords {:?} dropped: {why}", r.describe, r.target.keywords)
            });
            r.target.keywords.clear();
            result = self.store.append_prepared(r.prepared.clone(), std::slice::from_ref(&r.target));
        }
        match result {
            Ok(_) => self.done(r),
            Err(e @ (CommitError::DiskFull | CommitError::Stopped(_) | CommitError::Closed | CommitError::Io(_))) => {
                self.abort.store(true, Ordering::Relaxed);
                self.fatal.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
            }
            Err(e) => self.report(format!("{}: {e}", r.describe)),
        }
    }

    fn done(&self, r: Ready) {
        self.imported.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        *self.per_mailbox.lock().unwrap_or_else(|e| e.into_inner()).entry(r.dest).or_insert(0) += 1;
    }
}

/// A message prepared for appending.
struct Ready {
    prepared: Arc<PreparedMessage>,
    target: AppendTarget,
    dest: String,
    describe: String,
    bytes: u64,
}

/// Most messages (and bytes) one commit of an import carries.
const RUN_MESSAGES: usize = 256;
const RUN_BYTES: u64 = 16 << 20;

fn progress_bar(source: &dyn MailSource) -> (ProgressBar, bool) {
    let est = source.estimate();
    let hidden = !std::io::stderr().is_terminal();
    let (bar, count_mode) = match est.messages {
        Some(n) => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (bar, true)
        }
        None => {
            let bar = ProgressBar::new(est.bytes);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (bar, false)
        }
    };
    if hidden {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    (bar, count_mode)
}

pub fn run(config: &Config, args: &ImportArgs) -> Result<i32, CmdError> {
    validate_address(&args.account)?;
    let root = match &args.mailbox {
        Some(m) => Some(canonical_mailbox_name(m).map_err(|e| CmdError::new(format!("--mailbox: {e}")))?),
        None => None,
    };
    let dest = root.clone().unwrap_or_else(|| "INBOX".to_string());
    let open_err = |e: crate::mailfmt::ImportError| CmdError::new(e.to_string());
    let mut source: Box<dyn MailSource> = if let Some(dir) = &args.maildir {
        Box::new(Maildir::open(dir).map_err(open_err)?)
    } else if let Some(file) = &args.mbox {
        Box::new(Mbox::open(file).map_err(open_err)?.with_folder(dest))
    } else if let Some(dir) = &args.eml_dir {
        Box::new(EmlDir::open(dir).map_err(open_err)?.with_folder(dest))
    } else {
        return Err(CmdError::new("give one of --maildir, --mbox, --eml-dir"));
    };

    let store = open_store(config)?;
    let account = match store.account_id(&args.account) {
        Some(id) => id,
        None if args.create_account => store
            .create_account(&args.account, &DEFAULT_MAILBOXES)
            .map_err(|e| CmdError::new(format!("cannot create account {}: {e}", args.account)))?,
        None => {
            return Err(CmdError::new(format!(
                "no account {} in {}; add --create-account or run `postlog account add {}`",
                args.account,
                config.data_dir.display(),
                args.account
            )));
        }
    };
    let existing: HashMap<String, MailboxId> = store
        .mailboxes(account)
        .map_err(|e| CmdError::new(e.to_string()))?
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect();
    let (bar, count_mode) = progress_bar(&*source);
    let shared = Shared {
        store: &store,
        account,
        root,
        is_maildir: args.maildir.is_some(),
        mailboxes: Mutex::new(existing),
        imported: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        per_mailbox: Mutex::new(BTreeMap::new()),
        fatal: Mutex::new(None),
        abort: AtomicBool::new(false),
        bar,
        count_mode,
    };
    // Every folder of the source, even empty ones.
    for folder in source.folders() {
        let dest = shared.destination(&folder);
        if let Err(e) = shared.mailbox(&dest) {
            shared.report(format!("folder {folder:?}: cannot create mailbox {dest:?}: {e}"));
        }
    }

    let started = Instant::now();
    // Workers prepare messages in parallel; one committer appends them in source order, many
    // per commit, so UIDs follow the source's order and a commit carries many messages.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, MailMessage)>(args.threads as usize * 4);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(u64, Option<Ready>)>();
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            let ready_tx = ready_tx.clone();
            let (rx, shared) = (&rx, &shared);
            s.spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((ordinal, msg)) = job else { break };
                    let ready = if shared.abort.load(Ordering::Relaxed) { None } else { shared.prepare(ordinal, msg) };
                    if ready_tx.send((ordinal, ready)).is_err() {
                        break;
                    }
                }
            });
        }
        let shared_ref = &shared;
        s.spawn(move || {
            let mut pending: BTreeMap<u64, Option<Ready>> = BTreeMap::new();
            let mut next = 1u64;
            let mut run: Vec<Ready> = Vec::new();
            let mut run_bytes = 0u64;
            loop {
                // Wait for something when nothing is ready in order; else take what is there.
                let got = if pending.contains_key(&next) { ready_rx.try_recv().ok() } else { ready_rx.recv().ok() };
                let finished = got.is_none() && !pending.contains_key(&next);
                if let Some((ordinal, r)) = got {
                    pending.insert(ordinal, r);
                }
                while let Some(r) = pending.remove(&next) {
                    next += 1;
                    if let Some(r) = r {
                        run_bytes += r.bytes;
                        run.push(r);
                    }
                    if shared_ref.count_mode {
                        shared_ref.bar.inc(1);
                    }
                    if run.len() >= RUN_MESSAGES || run_bytes >= RUN_BYTES {
                        shared_ref.commit(std::mem::take(&mut run));
                        run_bytes = 0;
                    }
                }
                // Nothing more in order right now: commit what we have rather than wait.
                if !pending.contains_key(&next) || finished {
                    shared_ref.commit(std::mem::take(&mut run));
                    run_bytes = 0;
                }
                if finished {
                    break;
                }
            }
        });
        let mut ordinal = 0u64;
        while let Some(item) = source.next() {
            ordinal += 1;
            if shared.abort.load(Ordering::Relaxed) {
                break;
            }
            match item {
                Ok(msg) => {
                    if tx.send((ordinal, msg)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    shared.report(e.to_string());
                    if ready_tx.send((ordinal, None)).is_err() {
                        break;
                    }
                }
            }
            if !count_mode {
                shared.bar.set_position(source.bytes_read());
            }
        }
        drop(tx);
        drop(ready_tx);
    });
    shared.bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = Summary {
        messages: shared.imported.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        per_mailbox: shared.per_mailbox.into_inner().unwrap_or_else(|e| e.into_inner()),
    };
    let fatal = shared.fatal.into_inner().unwrap_or_else(|e| e.into_inner());
    let close = store.close();
    println!(
        "imported {} messages ({}) into {} in {:.1} s ({:.0} messages/s); {} errors",
        summary.messages,
        human_bytes(summary.bytes),
        args.account,
        elapsed,
        summary.messages as f64 / elapsed.max(1e-3),
        summary.errors
    );
    for (mb, n) in &summary.per_mailbox {
        println!("  {mb}: {n}");
    }
    if let Some(f) = fatal {
        return Err(CmdError::new(format!("the store stopped accepting messages: {f}; the import is incomplete")));
    }
    close.map_err(|e| CmdError::new(format!("closing the store: {e}")))?;
    Ok(if summary.errors == 0 { exit::OK } else { exit::FINDINGS })
}
