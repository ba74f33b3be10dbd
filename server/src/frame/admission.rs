//! Connection limits (`[limits]`): in total and per client address, over all listeners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_connections` connections are open.
    Total,
    /// `limits.max_connections_per_ip` connections from this address are open.
    PerIp,
}

impl Refusal {
    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission { limits, open: Mutex::new(Open::default()) })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Admits a connection from `ip` if both limits allow it. IPv4-mapped IPv6 addresses count
    /// as their IPv4 address.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Permit { admission: self.clone(), ip })
    }

    /// Open connections: (total, from `ip`).
    pub fn open(&self, ip: IpAddr) -> (u32, u32) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.total, open.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_address() {
        let a = Admission::new(Limits { max_connections: 3, max_connections_per_ip: 2 });
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let x_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let y: IpAddr = "2001:db8::1".parse().unwrap();
        let z: IpAddr = "198.51.100.7".parse().unwrap();
        let p1 = a.admit(x).unwrap();
        let p2 = a.admit(x_mapped).unwrap();
        assert_eq!(a.admit(x).unwrap_err(), Refusal::PerIp);
        let p3 = a.admit(y).unwrap();
        assert_eq!(a.admit(z).unwrap_err(), Refusal::Total);
        assert_eq!(a.open(x), (3, 2));
        drop(p1);
        assert_eq!(a.open(x), (2, 1));
        let p4 = a.admit(z).unwrap();
        drop((p2, p3, p4));
        assert_eq!(a.open(x), (0, 0));
        assert!(a.open.lock().unwrap().per_ip.is_empty(), "no entries left behind");
    }
}
