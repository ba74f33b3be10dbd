//! A small metrics registry: counters and gauges with labels, rendered in the Prometheus text
//! format (version 0.0.4) by `GET /metrics` on the `http` listener.
//!
//! Anything holding the [`ServerContext`](super::ServerContext) can count:
//! `ctx.metrics.counter(name, help, &[("label", "value")]).inc()`. Handles are cheap clones of
//! one atomic; hot paths resolve them once and keep them (see [`ListenerMetrics`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use postlog_engine::store::Stats;

use crate::config::ListenerKey;

/// Metric names the frame defines. Front ends add their own families with
/// [`Metrics::counter`] / [`Metrics::gauge`]; keep the `postlog_` prefix and the `_total`
/// suffix on counters.
pub mod names {
    pub const CONNECTIONS_ACCEPTED: &str = "postlog_connections_accepted_total";
    pub const CONNECTIONS_ACTIVE: &str = "postlog_connections_active";
    pub const CONNECTIONS_REFUSED: &str = "postlog_connections_refused_total";
    pub const SESSIONS: &str = "postlog_sessions_total";
    pub const TLS_HANDSHAKE_FAILURES: &str = "postlog_tls_handshake_failures_total";
    pub const AUTH_FAILURES: &str = "postlog_auth_failures_total";
    pub const STORE_COMMIT_BATCHES: &str = "postlog_store_commit_batches_total";
    pub const STORE_COMMIT_TRANSACTIONS: &str = "postlog_store_commit_transactions_total";
    pub const STORE_WRITTEN_BYTES: &str = "postlog_store_written_bytes_total";
    pub const STORE_SYNC_SECONDS: &str = "postlog_store_sync_seconds_total";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

#[derive(Debug)]
enum Series {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicI64>),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label set (`{a="x",b="y"}`, or empty) to its value.
    series: BTreeMap<String, Series>,
}

/// The registry. One per server, in the context.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Increments now and decrements when the guard drops (also on panic or cancellation).
    pub fn track(&self) -> GaugeGuard {
        self.inc();
        GaugeGuard(self.clone())
    }
}

/// See [`Gauge::track`].
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics::default();
        m.describe(names::CONNECTIONS_ACCEPTED, "TCP connections accepted, per listener.", Kind::Counter);
        m.describe(names::CONNECTIONS_ACTIVE, "Connections admitted and not yet closed, per listener.", Kind::Gauge);
        m.describe(
            names::CONNECTIONS_REFUSED,
            "Connections refused by a connection limit, per listener and reason (total, per_ip).",
            Kind::Counter,
        );
        m.describe(
            names::SESSIONS,
            "Sessions handed to a front end (after the TLS handshake on implicit-TLS listeners), per listener.",
            Kind::Counter,
        );
        m.describe(
            names::TLS_HANDSHAKE_FAILURES,
            "Failed TLS handshakes (implicit or STARTTLS), per listener.",
            Kind::Counter,
        );
        m.describe(names::AUTH_FAILURES, "Failed authentication attempts, per SASL mechanism.", Kind::Counter);
        m
    }

    fn describe(&self, name: &'static str, help: &'static str, kind: Kind) {
        assert!(valid_name(name), "metric name {name:?}");
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let f = families.entry(name).or_insert(Family { help, kind, series: BTreeMap::new() });
        assert_eq!(f.kind, kind, "metric {name} registered as both counter and gauge");
    }

    /// The counter `name{labels}`, created at zero on first use. `help` is used when the family
    /// is new. Registering one name as both a counter and a gauge is a programmer error (panics).
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, Kind::Counter, labels) {
            Series::Counter(c) => Counter(c),
            Series::Gauge(_) => unreachable!("kind checked in series()"),
        }
    }

    /// The gauge `name{labels}`, created at zero on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, Kind::Gauge, labels) {
            Series::Gauge(g) => Gauge(g),
            Series::Counter(_) => unreachable!("kind checked in series()"),
        }
    }

    fn series(&self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&str, &str)]) -> Series {
        assert!(valid_name(name), "metric name {name:?}");
        let key = render_labels(labels);
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let f = families.entry(name).or_insert(Family { help, kind, series: BTreeMap::new() });
        assert_eq!(f.kind, kind, "metric {name} registered as both counter and gauge");
        let s = f.series.entry(key).or_insert_with(|| match kind {
            Kind::Counter => Series::Counter(Arc::default()),
            Kind::Gauge => Series::Gauge(Arc::default()),
        });
        match s {
            Series::Counter(c) => Series::Counter(c.clone()),
            Series::Gauge(g) => Series::Gauge(g.clone()),
        }
    }

    /// Counts one failed authentication with `mechanism` (`PLAIN`, `LOGIN`, `SCRAM-SHA-256`,
    /// or `USER` / `LOGIN-COMMAND` for POP3 USER/PASS and IMAP LOGIN).
    pub fn auth_failure(&self, mechanism: &str) {
        self.counter(names::AUTH_FAILURES, "", &[("mechanism", mechanism)]).inc();
    }

    /// Appends every family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        for (name, f) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            for (labels, s) in &f.series {
                let _ = match s {
                    Series::Counter(c) => writeln!(out, "{name}{labels} {}", c.load(Ordering::Relaxed)),
                    Series::Gauge(g) => writeln!(out, "{name}{labels} {}", g.load(Ordering::Relaxed)),
                };
            }
        }
    }
}

/// Appends the store's commit counters (read from [`Stats`] at scrape time).
pub fn render_store(stats: &Stats, out: &mut String) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rows: [(&str, &str, String); 4] = [
        (
            names::STORE_COMMIT_BATCHES,
            "Group commits (one write and one fdatasync each).",
            get(&stats.batches).to_string(),
        ),
        (
            names::STORE_COMMIT_TRANSACTIONS,
            "Transactions committed; divided by batches: the mean batch size.",
            get(&stats.transactions).to_string(),
        ),
        (names::STORE_WRITTEN_BYTES, "Bytes of log records written.", get(&stats.bytes_written).to_string()),
        (
            names::STORE_SYNC_SECONDS,
            "Time spent in fdatasync; divided by batches: the mean commit latency on disk.",
            format!("{:.9}", get(&stats.sync_nanos) as f64 / 1e9),
        ),
    ];
    for (name, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The frame's per-listener series, resolved once per listener.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    pub accepted: Counter,
    pub active: Gauge,
    pub sessions: Counter,
    pub refused_total: Counter,
    pub refused_per_ip: Counter,
    pub tls_failures: Counter,
}

impl ListenerMetrics {
    pub fn new(m: &Metrics, key: ListenerKey) -> ListenerMetrics {
        let l = [("listener", key.as_str())];
        ListenerMetrics {
            accepted: m.counter(names::CONNECTIONS_ACCEPTED, "", &l),
            active: m.gauge(names::CONNECTIONS_ACTIVE, "", &l),
            sessions: m.counter(names::SESSIONS, "", &l),
            refused_total: m.counter(names::CONNECTIONS_REFUSED, "", &[l[0], ("reason", "total")]),
            refused_per_ip: m.counter(names::CONNECTIONS_REFUSED, "", &[l[0], ("reason", "per_ip")]),
            tls_failures: m.counter(names::TLS_HANDSHAKE_FAILURES, "", &l),
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        assert!(valid_name(k) && !k.contains(':'), "label name {k:?}");
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        let c = m.counter("postlog_test_total", "A test.", &[("listener", "imap")]);
        c.inc();
        c.add(2);
        m.counter("postlog_test_total", "", &[("listener", "imap")]).inc();
        let g = m.gauge("postlog_test_active", "Active.", &[]);
        {
            let _guard = g.track();
            assert_eq!(g.value(), 1);
        }
        g.inc();
        m.auth_failure("PLAIN");
        m.auth_failure("we\"ird\\");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("# TYPE postlog_test_total counter\npostlog_test_total{listener=\"imap\"} 4\n"), "{out}");
        assert!(
            out.contains(
                "# HELP postlog_test_active Active.\n# TYPE postlog_test_active gauge\npostlog_test_active 1\n"
            )
        );
        assert!(out.contains("postlog_auth_failures_total{mechanism=\"PLAIN\"} 1\n"));
        assert!(out.contains("postlog_auth_failures_total{mechanism=\"we\\\"ird\\\\\"} 1\n"), "{out}");
        // Families the frame defines are described even before anything counts.
        assert!(out.contains("# TYPE postlog_tls_handshake_failures_total counter\n"));
    }

    #[test]
    #[should_panic(expected = "both counter and gauge")]
    fn one_name_one_kind() {
        let m = Metrics::new();
        m.counter("postlog_x_total", "", &[]);
        m.gauge("postlog_x_total", "", &[]);
    }

    #[test]
    fn store_stats() {
        let stats = Stats::default();
        stats.batches.store(3, Ordering::Relaxed);
        stats.sync_nanos.store(1_500_000_000, Ordering::Relaxed);
        let mut out = String::new();
        render_store(&stats, &mut out);
        assert!(out.contains("postlog_store_commit_batches_total 3\n"));
        assert!(out.contains("postlog_store_sync_seconds_total 1.500000000\n"));
    }
}
