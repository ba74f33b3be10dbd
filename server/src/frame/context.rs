//! [`ServerContext`]: what every front end and service shares, behind one `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postlog_engine::Store;

use super::admission::Admission;
use super::metrics::{self, Metrics};
use super::shutdown::ShutdownSignal;
use super::tls::TlsSetup;
use crate::config::Config;

/// The services built once at start and shared by every front end: the directory (domains,
/// users, aliases, quotas) and the authenticator (SASL, password checks, brute-force limiter,
/// plain-text policy). Front ends reach them as `ctx.services.auth`; the authenticator counts
/// nothing in metrics itself: front ends call `ctx.metrics.auth_failure(mechanism)`.
#[derive(Clone)]
pub struct Services {
    pub directory: crate::directory::Directory,
    pub auth: crate::auth::Authenticator,
    /// The outbound queue (`None` in tools and tests that run without one).
    pub queue: Option<crate::queue::QueueHandle>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Shared by every connection of one server process.
pub struct ServerContext {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub tls: TlsSetup,
    /// See [`Services`]: where the directory, authenticator and limiter are wired.
    pub services: Services,
    pub(crate) admission: Arc<Admission>,
    shutdown: ShutdownSignal,
    next_session: AtomicU64,
}

impl ServerContext {
    pub fn new(
        config: Config,
        store: Store,
        metrics: Metrics,
        tls: TlsSetup,
        services: Services,
        shutdown: ShutdownSignal,
    ) -> ServerContext {
        let admission = Admission::new(config.limits);
        ServerContext { config, store, metrics, tls, services, admission, shutdown, next_session: AtomicU64::new(1) }
    }

    /// The server's host name (greetings, `Received:` headers).
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// Fires when the server begins to shut down (for long-running tasks besides sessions,
    /// e.g. the control socket or a delivery queue).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// The `/metrics` page: the registry, then the store's commit counters.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.metrics.render(&mut out);
        metrics::render_store(self.store.stats(), &mut out);
        out
    }
}
