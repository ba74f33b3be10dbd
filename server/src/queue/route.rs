//! Where mail for a domain goes: a static route (`[routes]`), the relay host (`[relay]`), or
//! the domain's MX hosts (RFC 5321 section 5.1), looked up with hickory-resolver.
//!
//! MX rules: hosts in preference order (equal preferences shuffled); no MX records but the
//! name exists: the domain itself (its A/AAAA records, the "implicit MX"); a null MX (RFC
//! 7505, a single MX with the root as exchange): the domain takes no mail, a permanent
//! failure; the domain does not exist (NXDOMAIN): permanent; any other DNS failure
//! (time-out, SERVFAIL, REFUSED): temporary, retried later.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::{Config, NextHop, TlsPolicy};

/// One host to try, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host name (certificate checks, logs); an IP literal for address routes.
    pub host: String,
    pub addrs: Vec<SocketAddr>,
    pub tls: TlsPolicy,
    /// Credentials for AUTH (the relay host only).
    pub auth: Option<(String, String)>,
}

/// Why no destination could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub permanent: bool,
    /// Enhanced status code, e.g. `5.1.2`.
    pub code: &'static str,
    pub text: String,
}

/// What groups deliveries on shared connections: the same key, the same destination hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HopKey {
    Route(String),
    Relay,
    Mx(String),
}

impl std::fmt::Display for HopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HopKey::Route(d) => write!(f, "route:{d}"),
            HopKey::Relay => f.write_str("relay"),
            HopKey::Mx(d) => f.write_str(d),
        }
    }
}

pub struct Router {
    resolver: TokioResolver,
    routes: std::collections::BTreeMap<String, NextHop>,
    relay: Option<crate::config::Relay>,
    mx_port: u16,
    tls: TlsPolicy,
}

impl Router {
    /// A router on the configured DNS server (or the system's). Call inside the runtime.
    pub fn new(config: &Config) -> Result<Router, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match config.resolver {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), provider)
            }
            None => {
                TokioResolver::builder(provider).map_err(|e| format!("reading the system's DNS configuration: {e}"))?
            }
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // Names are absolute: never append search domains to a recipient's domain.
        opts.ndots = 0;
        let resolver = builder.build().map_err(|e| format!("setting up the DNS resolver: {e}"))?;
        Ok(Router {
            resolver,
            routes: config.routes.clone(),
            relay: config.relay.clone(),
            mx_port: config.queue.mx_port,
            tls: config.queue.tls,
        })
    }

    /// Which connections mail for `domain` shares.
    pub fn hop_key(&self, domain: &str) -> HopKey {
        if self.routes.contains_key(domain) {
            HopKey::Route(domain.to_string())
        } else if self.relay.is_some() {
            HopKey::Relay
        } else {
            HopKey::Mx(domain.to_string())
        }
    }

    /// The hosts to try for `key`, best first.
    pub async fn resolve(&self, key: &HopKey) -> Result<Vec<Destination>, RouteError> {
        match key {
            HopKey::Route(domain) => {
                let hop = self.routes.get(domain).expect("a route key names a route");
                Ok(vec![self.hop_destination(hop, None).await?])
            }
            HopKey::Relay => {
                let relay = self.relay.as_ref().expect("a relay key with a relay");
                let auth = relay.username.clone().zip(relay.password.clone());
                Ok(vec![self.hop_destination(&relay.hop, auth).await?])
            }
            HopKey::Mx(domain) => self.mx(domain).await,
        }
    }

    async fn hop_destination(&self, hop: &NextHop, auth: Option<(String, String)>) -> Result<Destination, RouteError> {
        let addrs = match hop.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, hop.port)],
            Err(_) => self.addresses(&hop.host, hop.port).await?,
        };
        Ok(Destination { host: hop.host.clone(), addrs, tls: hop.tls, auth })
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, RouteError> {
        match self.resolver.lookup_ip(absolute(host)).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                if addrs.is_empty() {
                    Err(RouteError { permanent: false, code: "4.4.3", text: format!("{host} has no address") })
                } else {
                    Ok(addrs)
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(RouteError {
                permanent: e.is_nx_domain(),
                code: if e.is_nx_domain() { "5.4.4" } else { "4.4.3" },
                text: format!("Host not found: {host} (no A/AAAA records)"),
            }),
            Err(e) => {
                Err(RouteError { permanent: false, code: "4.4.3", text: format!("DNS lookup of {host} failed: {e}") })
            }
        }
    }

    async fn mx(&self, domain: &str) -> Result<Vec<Destination>, RouteError> {
        let records = match self.resolver.mx_lookup(absolute(domain)).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_nx_domain() => {
                return Err(RouteError {
                    permanent: true,
                    code: "5.1.2",
                    text: format!("Host or domain name not found: {domain} does not exist"),
                });
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => {
                return Err(RouteError {
                    permanent: false,
                    code: "4.4.3",
                    text: format!("DNS MX lookup of {domain} failed: {e}"),
                });
            }
        };
        let hosts = order_mx(records, rand_u64()).map_err(|NullMx| RouteError {
            permanent: true,
            code: "5.1.10",
            text: format!("{domain} does not accept mail (null MX, RFC 7505)"),
        })?;
        // No MX: the domain itself is the host (RFC 5321 section 5.1).
        let hosts = if hosts.is_empty() { vec![domain.to_string()] } else { hosts };
        let mut out = Vec::new();
        let mut last_error = None;
        for host in hosts {
            match self.addresses(&host, self.mx_port).await {
                Ok(addrs) => out.push(Destination { host, addrs, tls: self.tls, auth: None }),
                Err(e) => last_error = Some(e),
            }
        }
        if out.is_empty() {
            return Err(last_error.expect("at least one host was tried"));
        }
        Ok(out)
    }
}

/// A null MX (RFC 7505): the domain takes no mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullMx;

/// MX records to host names in the order to try: by preference, equal preferences in a random
/// order (RFC 5321 section 5.1).
pub fn order_mx(mut records: Vec<(u16, String)>, random: u64) -> Result<Vec<String>, NullMx> {
    let is_root = |h: &str| h.is_empty() || h == ".";
    if records.len() == 1 && is_root(&records[0].1) {
        return Err(NullMx);
    }
    records.retain(|(_, h)| !is_root(h));
    // A cheap shuffle keyed by `random`, then a stable sort by preference.
    let mut seed = random | 1;
    let mut keyed: Vec<(u16, u64, String)> = records
        .into_iter()
        .map(|(p, h)| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (p, seed, h.trim_end_matches('.').to_ascii_lowercase())
        })
        .collect();
    keyed.sort_by_key(|(p, k, _)| (*p, *k));
    let mut seen = std::collections::HashSet::new();
    Ok(keyed.into_iter().map(|(_, _, h)| h).filter(|h| seen.insert(h.clone())).collect())
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// A random number for shuffles and jitter.
pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_order_is_by_preference_and_a_null_mx_refuses() {
        let recs = vec![(20, "b.example.".to_string()), (10, "A.example.".to_string()), (30, "c.example".to_string())];
        assert_eq!(order_mx(recs, 42).unwrap(), ["a.example", "b.example", "c.example"]);
        assert_eq!(order_mx(vec![(0, ".".to_string())], 1), Err(NullMx));
        assert_eq!(order_mx(vec![(0, String::new())], 1), Err(NullMx));
        assert!(order_mx(Vec::new(), 1).unwrap().is_empty());
        // Equal preferences: both orders happen.
        let recs = vec![(10, "x.example".to_string()), (10, "y.example".to_string())];
        let firsts: std::collections::HashSet<String> = (0..64u64)
            .map(|r| order_mx(recs.clone(), r.wrapping_mul(0x9E37_79B9_7F4A_7C15)).unwrap()[0].clone())
            .collect();
        assert_eq!(firsts.len(), 2);
    }
}
