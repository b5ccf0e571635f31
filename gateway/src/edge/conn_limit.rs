//! Caps on open connections, per process and per client IP: a flood of idle sockets must not
//! use up the file descriptors that `/healthz` and real callers need. The IP is the socket's
//! (a trusted proxy's `X-Forwarded-For` is for rate limits, not for the connection count).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

/// Why a connection was refused (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The process holds `MAX_CONNECTIONS` already.
    Total,
    /// This IP holds `MAX_CONNECTIONS_PER_IP` already.
    PerIp,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The open-connection counts; [`ConnectionLimits::try_acquire`] hands out a guard that
/// gives its place back when the connection ends.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            counts: Arc::default(),
        }
    }

    /// A place for one more connection from `ip`, or why there is none.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionGuard, Refused> {
        let ip = canonical(ip);
        // The counts stay consistent even if a holder panicked: every change is one step.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Refused::Total);
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        metrics::gauge!("gateway_connections_open").set(counts.total as f64);
        Ok(ConnectionGuard {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionGuard {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        // Forget an IP with no connections left, so the map is bounded by the open ones.
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("gateway_connections_open").set(counts.total as f64);
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`: count it as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_refuses_the_next_and_frees_on_drop() {
        let limits = ConnectionLimits::new(100, 2);
        let a = limits.try_acquire(ip("10.0.0.1")).unwrap();
        let _b = limits.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.try_acquire(ip("10.0.0.1")).unwrap_err(), Refused::PerIp);
        // Another IP is not affected.
        let _c = limits.try_acquire(ip("10.0.0.2")).unwrap();
        drop(a);
        assert!(limits.try_acquire(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn total_cap_refuses_any_ip() {
        let limits = ConnectionLimits::new(2, 10);
        let _a = limits.try_acquire(ip("10.0.0.1")).unwrap();
        let b = limits.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.try_acquire(ip("10.0.0.3")).unwrap_err(), Refused::Total);
        assert_eq!(limits.open(), 2);
        drop(b);
        assert_eq!(limits.open(), 1);
        assert!(limits.try_acquire(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let limits = ConnectionLimits::new(10, 1);
        let _a = limits.try_acquire(ip("127.0.0.1")).unwrap();
        assert_eq!(
            limits.try_acquire(ip("::ffff:127.0.0.1")).unwrap_err(),
            Refused::PerIp
        );
    }

    #[test]
    fn map_is_emptied_when_connections_close() {
        let limits = ConnectionLimits::new(10, 10);
        let guards: Vec<_> = (0..5)
            .map(|i| limits.try_acquire(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        drop(guards);
        let counts = limits.counts.lock().unwrap();
        assert_eq!(counts.total, 0);
        assert!(counts.per_ip.is_empty());
    }
}
