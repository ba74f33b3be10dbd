//! `postlog serve`: open (and recover) the store, set up TLS, bind every configured listener,
//! serve until SIGTERM or SIGINT, then stop accepting, give sessions `timeouts.shutdown_grace`
//! to finish, and close the store cleanly (snapshot written).
//!
//! Start-up order: signal handlers (so a signal during a long recovery still ends in a clean
//! close), the store (its lock: a second server on the same data fails here), TLS, the
//! listeners (all bound before any accepts: a port in use stops the start naming the key),
//! the services, the accept loops. The protocol front ends plug in at [`front_ends`]; the
//! directory, authenticator and limiter at [`build_services`]; the control socket at
//! [`start_control`].

use std::sync::Arc;
use std::time::Duration;

use postlog_engine::Store;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;
use crate::frame::listener::{accept_loop, bind_all};
use crate::frame::shutdown::{self, Sessions};
use crate::frame::{FrontEnds, Metrics, ServerContext, Services, tls};
use crate::util::{CmdError, exit};

pub fn run(config: &Config) -> Result<i32, CmdError> {
    crate::frame::logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("postlog-worker")
        .build()
        .map_err(|e| CmdError::new(format!("cannot start the async runtime: {e}")))?;
    let signals = runtime
        .block_on(async { Signals::new() })
        .map_err(|e| CmdError::new(format!("cannot set up signal handling: {e}")))?;

    let store = Store::open(&config.data_dir, config.store_options()).map_err(|e| CmdError::new(e.to_string()))?;
    // Opening a big store needs about as much memory again as the store keeps (the snapshot
    // read and decoded); mimalloc would hand it back only on later purges.
    crate::util::release_free_memory();
    log_recovery(config, &store);

    let served = runtime.block_on(serve(config.clone(), store.clone(), signals));
    // Sessions still running after the grace period are cut here (their tasks are dropped).
    runtime.shutdown_timeout(Duration::from_secs(1));
    let closed = store.close();
    match (served, closed) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(())) => {
            tracing::info!("store closed cleanly (snapshot written)");
            Ok(exit::OK)
        }
        (Ok(()), Err(e)) => Err(CmdError { code: exit::FINDINGS, message: format!("closing the store failed: {e}") }),
    }
}

/// The line operators (and tests) read to see what recovery did.
fn log_recovery(config: &Config, store: &Store) {
    let dir = &config.data_dir;
    let r = store.recovery_report();
    // User accounts: system accounts (the outbound queue's `#queue`) are not counted.
    let accounts: Vec<_> = store.accounts().into_iter().filter(|(_, name)| !name.starts_with('#')).collect();
    let messages: u64 = accounts.iter().filter_map(|(id, _)| store.usage(*id)).map(|u| u.messages).sum();
    let torn = match r.torn_cut {
        Some((seg, off, bytes)) => format!("cut {bytes} bytes of a torn final batch in segment {seg} at offset {off}"),
        None => "no torn tail".into(),
    };
    let snapshot = if r.snapshot_used {
        "snapshot used".to_string()
    } else {
        format!("no snapshot used ({})", r.snapshot_problem.as_deref().unwrap_or("none"))
    };
    let removed =
        if r.removed_files.is_empty() { String::new() } else { format!(", removed {}", r.removed_files.join(" ")) };
    tracing::info!(
        "store open in {}: {snapshot}, replayed {} records ({} bytes), {torn}{removed}; {} accounts, {messages} \
         messages; hostname {}; waiting for SIGTERM or SIGINT",
        dir.display(),
        r.records_replayed,
        r.bytes_replayed,
        accounts.len(),
        config.hostname,
    );
    log_dictionary(store);
}

/// Which zstd dictionary the store compresses with, and any dictionary file it cannot use
/// (the messages compressed with it cannot be read until it is restored).
fn log_dictionary(store: &Store) {
    use postlog_engine::dict::TrainingState;
    for f in store.dictionaries().files() {
        if let Some(p) = &f.problem {
            tracing::warn!("dictionary {:#x} ({}) is unusable: {p}; run `postlog check`", f.id, f.name);
        }
    }
    let o = store.options();
    match store.dictionary_state() {
        TrainingState::Ready(id) => {
            tracing::info!("store dictionary {id:#x} in use (zstd level {})", o.dictionary_zstd_level)
        }
        TrainingState::Sampling { .. } => tracing::info!(
            "store has no dictionary yet: one is trained from the next {} messages ({} bytes)",
            o.dictionary_min_samples,
            o.dictionary_min_bytes
        ),
        TrainingState::Off(why) if o.dictionary => tracing::warn!("store dictionary: {why}"),
        TrainingState::Off(_) => {}
        TrainingState::Training => tracing::info!("store dictionary: training"),
        TrainingState::Failed(why) => tracing::warn!("store dictionary: {why}"),
    }
}

/// Store maintenance while serving: every `store.compact_interval`, compacts the sealed
/// segments of which at least `store.compact_dead_percent` is dead (expunged messages, and the
/// first copies of bodies compressed in the background), on a blocking thread.
async fn maintain(store: Store, settings: crate::config::StoreSettings) {
    if settings.compact_interval.is_zero() {
        return std::future::pending().await;
    }
    let ratio = f64::from(settings.compact_dead_percent) / 100.0;
    loop {
        tokio::time::sleep(settings.compact_interval).await;
        let store = store.clone();
        let done = tokio::task::spawn_blocking(move || {
            if !postlog_engine::compaction::worth_running(&store, ratio) {
                return None;
            }
            Some(store.compact(ratio))
        })
        .await;
        match done {
            Ok(None) => {}
            Ok(Some(Ok(r))) => tracing::info!(
                "compaction: dropped segments {:?}, freed {} bytes, moved {} blobs ({} bytes)",
                r.segments_dropped,
                r.bytes_freed,
                r.blobs_moved,
                r.bytes_moved
            ),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "compaction failed; the store goes on, the next run retries")
            }
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }
}

async fn serve(config: Config, store: Store, mut signals: Signals) -> Result<(), CmdError> {
    let tls = tls::setup(&config).map_err(|e| CmdError::new(format!("TLS: {e}")))?;
    tracing::info!("tls: {}", tls.origin);
    let bound = bind_all(&config.listen).map_err(|e| CmdError::new(e.to_string()))?;
    let metrics = Metrics::new();
    let (services, scheduler) = build_services(&config, &store, &metrics)?;
    let (trigger, shutdown) = shutdown::channel();
    let ctx = Arc::new(ServerContext::new(config, store, metrics, tls, services, shutdown));
    let scheduler = {
        let mut stop = ctx.shutdown_signal();
        tokio::spawn(scheduler.run(async move { stop.triggered().await }))
    };
    let maintenance = {
        let (store, settings, mut stop) = (ctx.store.clone(), ctx.config.store, ctx.shutdown_signal());
        tokio::spawn(async move {
            tokio::select! {
                () = maintain(store, settings) => {}
                () = stop.triggered() => {}
            }
        })
    };
    let front_ends = front_ends(&ctx);
    let control = start_control(&ctx)?;

    let sessions = Arc::new(Sessions::default());
    let mut loops = Vec::new();
    let mut listening = Vec::new();
    for b in bound {
        listening.push(format!("{} {}", b.key, b.addr));
        let key = b.key;
        let task = accept_loop(ctx.clone(), b, front_ends.get(key), sessions.clone());
        loops.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(listener = %key, error = %e, "listener stopped");
            }
        }));
    }
    let listening = if listening.is_empty() { "no listeners (all off)".to_string() } else { listening.join(", ") };
    tracing::info!("ready: listening on {listening}");

    let name = signals.next().await;
    let grace = ctx.config.timeouts.shutdown_grace;
    tracing::info!(
        "received {name}: no new connections; {} sessions get up to {} s to finish",
        sessions.live(),
        grace.as_secs()
    );
    trigger.trigger();
    for l in loops {
        let _ = l.await;
    }
    if tokio::time::timeout(grace, sessions.none_left()).await.is_err() {
        tracing::warn!("{} sessions still open after {} s: closing them", sessions.live(), grace.as_secs());
    }
    // Stopped after the sessions and before the store closes.
    drop(control);
    let _ = scheduler.await;
    let _ = maintenance.await;
    tracing::info!("closing the store");
    Ok(())
}

/// Builds the directory and the authenticator (with its brute-force limiter); runs before any
/// listener accepts. An error stops the start (exit 2).
fn build_services(
    config: &Config,
    store: &Store,
    metrics: &Metrics,
) -> Result<(Services, crate::queue::scheduler::Scheduler), CmdError> {
    let directory = crate::directory::Directory::new(store.clone(), config.quota.default_bytes);
    let auth = crate::auth::Authenticator::new(directory.clone(), config.auth.clone())
        .map_err(|e| CmdError::new(format!("cannot set up authentication: {e}")))?;
    let queue = crate::queue::Queue::open(store.clone(), config.queue.clone())
        .map_err(|e| CmdError::new(format!("cannot open the outbound queue: {e}")))?;
    let router = Arc::new(crate::queue::route::Router::new(config).map_err(CmdError::new)?);
    let deliver = crate::queue::client::connector(config, queue.clone(), router.clone())
        .map_err(|e| CmdError::new(format!("cannot set up outbound delivery: {e}")))?;
    let bounce = crate::queue::bounce::maker(config, directory.clone());
    let (scheduler, handle) = crate::queue::scheduler::Scheduler::new(queue.clone(), router, deliver, bounce);
    let scheduler = scheduler.with_metrics(crate::queue::scheduler::QueueMetrics::new(metrics));
    let queue = Some(crate::queue::QueueHandle { queue, scheduler: handle });
    Ok((Services { directory, auth, queue }, scheduler))
}

/// Which front end serves which listener. Each protocol's front end replaces the
/// not-yet-available placeholder here (every mail listener has its front end now).
fn front_ends(ctx: &Arc<ServerContext>) -> FrontEnds {
    use crate::config::ListenerKey;
    let mut f = FrontEnds::until_front_ends_exist();
    for key in [ListenerKey::Smtp, ListenerKey::Submission, ListenerKey::Submissions, ListenerKey::Lmtp] {
        f.set(key, Arc::new(crate::smtp::SmtpFrontEnd::new(ctx, key)));
    }
    for key in [ListenerKey::Imap, ListenerKey::Imaps] {
        f.set(key, Arc::new(crate::imap::session::ImapFrontEnd));
    }
    for (key, fe) in crate::pop3::Pop3FrontEnd::pair(ctx) {
        f.set(key, Arc::new(fe));
    }
    f
}

/// Something started beside the listeners that stops when dropped (e.g. the control socket's
/// handle). [`serve`] drops it after the sessions have ended and before the store closes.
type StopOnDrop = Box<dyn Send>;

/// Starts the control socket (`<data_dir>/control.sock`) through which `postlog domain|user|
/// alias` reach the running server. An error (e.g. the socket served by another process) stops
/// the start (exit 2).
fn start_control(ctx: &Arc<ServerContext>) -> Result<Option<StopOnDrop>, CmdError> {
    let path = crate::control::socket_path(&ctx.config.data_dir);
    let handle =
        crate::control::spawn_control_server(ctx.services.directory.clone(), ctx.services.queue.clone(), &path)
            .map_err(|e| CmdError::new(format!("cannot serve the control socket {}: {e}", path.display())))?;
    Ok(Some(Box::new(handle)))
}

/// SIGTERM and SIGINT, registered early so a signal during start-up is not lost.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
