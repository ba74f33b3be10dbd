//! Brute-force protection for logins: failures counted per client address and per account
//! name in a sliding window; answers to failed attempts slowed down; past a limit, the
//! address (or account) refused for a while.
//!
//! ```text
//!  attempt ─► check(ip, name) ── locked? ──► Refused { retry_after }   (credentials not even checked)
//!                  │ no
//!                  ▼
//!        credentials right? ── yes ─► record_success: answer at once, forget the name's failures
//!                  │ no
//!                  ▼
//!        record_failure ─► delay = delay_step × earlier failures in the window (at most delay_max)
//!                          failures in the window reach max_failures ─► locked for `lockout`
//! ```
//! Account names are counted whether or not the account exists (as the name was typed, in
//! lower case), so the limiter's answers never tell the two apart. A successful login clears
//! its account's failures but not its address's, so that an attacker with one working
//! account cannot reset the count of the address it guesses others' passwords from.
//! IPv6 clients are counted per /64, the block one host usually gets.
//!
//! Memory is bounded: at most [`Limiter::DEFAULT_MAX_TRACKED`] addresses and as many names;
//! past that, idle entries and then the least recently seen ones are evicted.
//!
//! The clock is injectable ([`Clock`]), so tests move time by hand.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The limiter's policy: `[auth]` of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Failures from one client address within `failure_window` that lock it out; 0: never.
    pub max_failures_per_ip: u32,
    /// Failures for one account name within `failure_window` that lock it out; 0: never.
    /// Anyone can lock an account out this way, so keep it above the per-address limit.
    pub max_failures_per_account: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    /// Added to the answer of a failed attempt for each earlier failure in the window.
    pub delay_step: Duration,
    pub delay_max: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            max_failures_per_ip: 10,
            max_failures_per_account: 20,
            failure_window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            delay_step: Duration::from_millis(500),
            delay_max: Duration::from_secs(5),
        }
    }
}

/// What is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Address,
    Account,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refuse without checking the credentials.
    Refused {
        what: Locked,
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct Entry {
    /// Times of failures within the window, oldest first; at most `Table::max_kept`.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    /// Forgets failures older than the window and a lockout that has ended. Returns whether
    /// anything is left worth keeping.
    fn prune(&mut self, now: Instant, window: Duration) -> bool {
        if self.locked_until.is_some_and(|t| t <= now) {
            self.locked_until = None;
            self.failures.clear();
        }
        while self.failures.front().is_some_and(|&t| now.saturating_duration_since(t) >= window) {
            self.failures.pop_front();
        }
        self.locked_until.is_some() || !self.failures.is_empty()
    }
}

struct Table<K> {
    entries: HashMap<K, Entry>,
    max_failures: u32,
    /// Failure times kept per entry: enough for the lockout and for the longest delay.
    max_kept: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(max_failures: u32, settings: &LimiterSettings, capacity: usize) -> Self {
        let for_delay = if settings.delay_step.is_zero() {
            0
        } else {
            (settings.delay_max.as_nanos() / settings.delay_step.as_nanos()).saturating_add(1).min(1024) as usize
        };
        Table {
            entries: HashMap::new(),
            max_failures,
            max_kept: (max_failures as usize).max(for_delay).max(1),
            capacity,
        }
    }

    fn locked(&mut self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let entry = self.entries.get_mut(key)?;
        if !entry.prune(now, window) {
            self.entries.remove(key);
            return None;
        }
        entry.locked_until.map(|t| t.saturating_duration_since(now))
    }

    /// Failures within the window before now.
    fn recent(&mut self, key: &K, now: Instant, window: Duration) -> usize {
        self.entries.get_mut(key).map_or(0, |e| {
            e.prune(now, window);
            e.failures.len()
        })
    }

    /// Records a failure; returns the failures now in the window and whether this one locked
    /// the key out.
    fn fail(&mut self, key: &K, now: Instant, window: Duration, lockout: Duration) -> (usize, bool) {
        if !self.entries.contains_key(key) {
            self.make_room(now, window);
        }
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            failures: VecDeque::new(),
            locked_until: None,
            last_seen: now,
        });
        entry.prune(now, window);
        entry.last_seen = now;
        if entry.failures.len() >= self.max_kept {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        let count = entry.failures.len();
        if self.max_failures > 0 && count >= self.max_failures as usize && entry.locked_until.is_none() {
            entry.locked_until = Some(now + lockout);
            return (count, true);
        }
        (count, false)
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Keeps the table under its capacity: drops idle entries, then the least recently seen
    /// eighth (unlocked ones first), so that eviction costs O(log n) per insertion on average.
    fn make_room(&mut self, now: Instant, window: Duration) {
        if self.entries.len() < self.capacity {
            return;
        }
        self.entries.retain(|_, e| e.prune(now, window));
        if self.entries.len() < self.capacity {
            return;
        }
        let mut order: Vec<(bool, Instant, K)> =
            self.entries.iter().map(|(k, e)| (e.locked_until.is_some(), e.last_seen, k.clone())).collect();
        order.sort_by_key(|a| (a.0, a.1));
        let evict = (self.capacity / 8).max(1);
        for (_, _, key) in order.into_iter().take(evict) {
            self.entries.remove(&key);
        }
        tracing::warn!("login limiter: tracking {} entries, evicted the {evict} least recently seen", self.capacity);
    }
}

struct Tables {
    by_ip: Table<IpAddr>,
    by_account: Table<String>,
}

/// The brute-force limiter, shared by every front end. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    settings: Arc<LimiterSettings>,
    clock: Arc<dyn Clock>,
    tables: Arc<Mutex<Tables>>,
}

impl Limiter {
    /// Addresses (and, separately, account names) tracked at most.
    pub const DEFAULT_MAX_TRACKED: usize = 65_536;

    pub fn new(settings: LimiterSettings) -> Limiter {
        Self::with_clock(settings, Arc::new(SystemClock), Self::DEFAULT_MAX_TRACKED)
    }

    pub fn with_clock(settings: LimiterSettings, clock: Arc<dyn Clock>, max_tracked: usize) -> Limiter {
        let tables = Tables {
            by_ip: Table::new(settings.max_failures_per_ip, &settings, max_tracked.max(1)),
            by_account: Table::new(settings.max_failures_per_account, &settings, max_tracked.max(1)),
        };
        Limiter { settings: Arc::new(settings), clock, tables: Arc::new(Mutex::new(tables)) }
    }

    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt from `ip` (for `account`, once the client has named it) may go
    /// ahead.
    pub fn check(&self, ip: IpAddr, account: Option<&str>) -> Admission {
        let now = self.clock.now();
        let window = self.settings.failure_window;
        let ip = ip_key(ip);
        let mut t = self.tables();
        if let Some(retry_after) = t.by_ip.locked(&ip, now, window) {
            tracing::info!("login from {ip} refused: the address is locked out for {}s more", retry_after.as_secs());
            return Admission::Refused { what: Locked::Address, retry_after };
        }
        if let Some(name) = account {
            let name = account_key(name);
            if let Some(retry_after) = t.by_account.locked(&name, now, window) {
                tracing::info!(
                    "login from {ip} for {name} refused: the account is locked out for {}s more",
                    retry_after.as_secs()
                );
                return Admission::Refused { what: Locked::Account, retry_after };
            }
        }
        Admission::Allowed
    }

    /// Records a failed attempt; returns how long to wait before answering it:
    /// `delay_step` for each earlier failure of the address or the account (whichever has
    /// more) within the window, at most `delay_max`.
    pub fn record_failure(&self, ip: IpAddr, account: Option<&str>) -> Duration {
        let now = self.clock.now();
        let s = &*self.settings;
        let ip = ip_key(ip);
        let name = account.map(account_key);
        let mut t = self.tables();
        let earlier_ip = t.by_ip.recent(&ip, now, s.failure_window);
        let earlier_account = name.as_ref().map_or(0, |n| t.by_account.recent(n, now, s.failure_window));
        let earlier = earlier_ip.max(earlier_account);
        let delay = s.delay_step.saturating_mul(earlier.min(u32::MAX as usize) as u32).min(s.delay_max);
        let (ip_count, ip_locked) = t.by_ip.fail(&ip, now, s.failure_window, s.lockout);
        let (account_count, account_locked) = match &name {
            Some(n) => t.by_account.fail(n, now, s.failure_window, s.lockout),
            None => (0, false),
        };
        let who = name.as_deref().unwrap_or("(no name given)");
        tracing::info!(
            "login failure from {ip} for {who}: {ip_count} recent failure(s) from the address, {account_count} for \
             the name; answering in {} ms",
            delay.as_millis()
        );
        if ip_locked {
            tracing::warn!(
                "locking out {ip} for {}s after {ip_count} failed logins within {}s",
                s.lockout.as_secs(),
                s.failure_window.as_secs()
            );
        }
        if account_locked {
            tracing::warn!(
                "locking out logins as {who} for {}s after {account_count} failures within {}s (last from {ip})",
                s.lockout.as_secs(),
                s.failure_window.as_secs()
            );
        }
        delay
    }

    /// Records a successful login: the account's failures are forgotten (the address's are
    /// not). Never delays.
    pub fn record_success(&self, ip: IpAddr, account: &str) {
        let name = account_key(account);
        tracing::debug!("login success from {} for {name}", ip_key(ip));
        self.tables().by_account.forget(&name);
    }

    /// Entries tracked (addresses, account names), for tests and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.tables();
        (t.by_ip.entries.len(), t.by_account.entries.len())
    }
}

/// IPv4 as is (also when mapped into IPv6); IPv6 cut to its /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

/// The name as typed, in lower case, at most 255 characters (SASL's identity limit).
fn account_key(name: &str) -> String {
    name.chars().take(255).collect::<String>().to_lowercase()
}

/// A clock tests move by hand.
#[cfg(test)]
pub(crate) struct FakeClock(pub(crate) Mutex<Instant>);

#[cfg(test)]
impl FakeClock {
    pub(crate) fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings() -> LimiterSettings {
        LimiterSettings {
            max_failures_per_ip: 5,
            max_failures_per_account: 8,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            delay_step: 100 * MS,
            delay_max: 350 * MS,
        }
    }

    fn limiter(s: LimiterSettings, capacity: usize) -> (Limiter, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        (Limiter::with_clock(s, clock.clone(), capacity), clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_grow_up_to_the_maximum_then_the_address_is_locked_out() {
        let (l, clock) = limiter(settings(), 100);
        let a = ip("192.0.2.1");
        let mut delays = Vec::new();
        for _ in 0..5 {
            assert_eq!(l.check(a, Some("alice@example.test")), Admission::Allowed);
            delays.push(l.record_failure(a, Some("alice@example.test")));
            clock.advance(MS);
        }
        assert_eq!(delays, [Duration::ZERO, 100 * MS, 200 * MS, 300 * MS, 350 * MS]);
        match l.check(a, Some("bob@example.test")) {
            Admission::Refused { what: Locked::Address, retry_after } => {
                assert_eq!(retry_after, Duration::from_secs(300) - MS)
            }
            other => panic!("expected the address locked out, got {other:?}"),
        }
        // Another address is not affected; the name has 5 failures of 8.
        assert_eq!(l.check(ip("192.0.2.2"), Some("alice@example.test")), Admission::Allowed);
        // The lockout ends, and with it the count.
        clock.advance(Duration::from_secs(300));
        assert_eq!(l.check(a, None), Admission::Allowed);
        assert_eq!(l.record_failure(a, None), Duration::ZERO);
    }

    #[test]
    fn success_is_not_delayed_and_clears_the_account_but_not_the_address() {
        let (l, _clock) = limiter(settings(), 100);
        let a = ip("198.51.100.7");
        for _ in 0..3 {
            let _ = l.record_failure(a, Some("Alice@Example.test"));
        }
        // A success has no delay to apply; afterwards the account's count is gone...
        l.record_success(a, "alice@example.test");
        assert_eq!(l.tracked(), (1, 0));
        // ...but the address's is not: the next failure still waits for 3 earlier ones.
        assert_eq!(l.record_failure(a, Some("alice@example.test")), 300 * MS);
        let _ = l.record_failure(a, None);
        assert!(matches!(l.check(a, None), Admission::Refused { what: Locked::Address, .. }));
    }

    #[test]
    fn failures_leave_the_window() {
        let (l, clock) = limiter(settings(), 100);
        let a = ip("203.0.113.9");
        for _ in 0..4 {
            let _ = l.record_failure(a, None);
            clock.advance(Duration::from_secs(10));
        }
        // Now 40 s after the first: all four are in the 60 s window.
        assert_eq!(l.record_failure(a, None), 350 * MS, "4 earlier failures, capped");
        assert!(matches!(l.check(a, None), Admission::Refused { .. }), "the fifth locks out");
        let (l, clock) = limiter(settings(), 100);
        for _ in 0..4 {
            let _ = l.record_failure(a, None);
            clock.advance(Duration::from_secs(20));
        }
        // At 80 s the failures at 0 s and 20 s have left the window: two remain.
        assert_eq!(l.record_failure(a, None), 200 * MS);
        assert_eq!(l.check(a, None), Admission::Allowed);
        clock.advance(Duration::from_secs(61));
        assert_eq!(l.record_failure(a, None), Duration::ZERO);
    }

    #[test]
    fn accounts_are_locked_out_across_addresses() {
        let (l, clock) = limiter(settings(), 100);
        for i in 0..8 {
            let from = ip(&format!("192.0.2.{}", 10 + i));
            assert_eq!(l.check(from, Some("carol@example.test")), Admission::Allowed);
            let delay = l.record_failure(from, Some("CAROL@example.test"));
            assert_eq!(delay, (100 * MS * i).min(350 * MS), "the account's count sets the delay");
            clock.advance(MS);
        }
        let fresh = ip("192.0.2.200");
        assert!(matches!(l.check(fresh, Some("carol@example.test")), Admission::Refused { what: Locked::Account, .. }));
        assert_eq!(l.check(fresh, Some("dave@example.test")), Admission::Allowed);
        assert_eq!(l.check(fresh, None), Admission::Allowed);
    }

    #[test]
    fn zero_disables_lockout_but_not_delays() {
        let (l, _clock) =
            limiter(LimiterSettings { max_failures_per_ip: 0, max_failures_per_account: 0, ..settings() }, 100);
        let a = ip("192.0.2.1");
        for _ in 0..50 {
            let _ = l.record_failure(a, Some("x@example.test"));
        }
        assert_eq!(l.check(a, Some("x@example.test")), Admission::Allowed);
        assert_eq!(l.record_failure(a, None), 350 * MS);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let (l, _clock) = limiter(settings(), 100);
        for i in 0..5 {
            let _ = l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), None);
        }
        assert!(matches!(l.check(ip("2001:db8:1:2:ffff::1"), None), Admission::Refused { .. }));
        assert_eq!(l.check(ip("2001:db8:1:3::1"), None), Admission::Allowed);
        for _ in 0..5 {
            let _ = l.record_failure(ip("::ffff:192.0.2.77"), None);
        }
        assert!(matches!(l.check(ip("192.0.2.77"), None), Admission::Refused { .. }));
    }

    #[test]
    fn memory_stays_bounded() {
        let (l, clock) = limiter(settings(), 64);
        // A locked-out address survives a flood of one-off addresses better than they do.
        let attacker = ip("192.0.2.1");
        for _ in 0..5 {
            let _ = l.record_failure(attacker, None);
        }
        for i in 0..10_000u32 {
            let from = IpAddr::V4((0x0a00_0000 + i).into());
            let _ = l.record_failure(from, Some(&format!("user{i}@example.test")));
            clock.advance(MS);
        }
        let (ips, names) = l.tracked();
        assert!(ips <= 64 && names <= 64, "{ips} addresses, {names} names");
        assert!(matches!(l.check(attacker, None), Admission::Refused { .. }));
        // Once the window has passed, the next time the table fills, every idle entry goes.
        clock.advance(Duration::from_secs(3600));
        for i in 0..10 {
            let _ = l.record_failure(ip(&format!("192.0.2.{}", 100 + i)), None);
        }
        assert_eq!(l.tracked().0, 10);
    }
}
