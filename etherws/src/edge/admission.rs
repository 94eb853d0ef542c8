//! Who may connect: limits on concurrent WebSocket connections, overall and per source
//! address, and throttling of addresses that keep failing authentication.
//!
//! Both protect the switch from one misbehaving or hostile host: without them, a single
//! address could hold every file descriptor, or try passwords as fast as bcrypt allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Limits on concurrent WebSocket connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    pub(crate) total: usize,
    pub(crate) per_addr: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            total: 4096,
            per_addr: 64,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<IpAddr, usize>,
}

/// Counts live connections; a [`ConnPermit`] is one of them.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    limits: ConnLimits,
    counts: Mutex<Counts>,
    refused: AtomicU64,
}

/// A connection slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    owner: Arc<Connections>,
    /// None: counted against the total only.
    addr: Option<IpAddr>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("too many connections ({0} at most)")]
    Total(usize),
    #[error("too many connections from one address ({0} at most)")]
    PerAddr(usize),
}

impl Connections {
    pub(crate) fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            counts: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// Takes a slot for a connection from `addr`, if the limits allow.
    pub(crate) fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<ConnPermit, Refused> {
        let mut c = lock(&self.counts);
        if c.total >= self.limits.total {
            self.refused.fetch_add(1, Relaxed);
            return Err(Refused::Total(self.limits.total));
        }
        if c.per_addr.get(&addr).copied().unwrap_or(0) >= self.limits.per_addr {
            self.refused.fetch_add(1, Relaxed);
            return Err(Refused::PerAddr(self.limits.per_addr));
        }
        *c.per_addr.entry(addr).or_insert(0) += 1;
        c.total += 1;
        Ok(ConnPermit {
            owner: self.clone(),
            addr: Some(addr),
        })
    }

    /// Takes a slot counted against the total only: for a connection from a trusted proxy,
    /// which speaks for many clients.
    pub(crate) fn admit_overall(self: &Arc<Self>) -> Result<ConnPermit, Refused> {
        let mut c = lock(&self.counts);
        if c.total >= self.limits.total {
            self.refused.fetch_add(1, Relaxed);
            return Err(Refused::Total(self.limits.total));
        }
        c.total += 1;
        Ok(ConnPermit {
            owner: self.clone(),
            addr: None,
        })
    }

    /// Connections refused by the limits since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Live connections overall.
    pub(crate) fn total(&self) -> usize {
        lock(&self.counts).total
    }

    #[cfg(test)]
    /// Live connections: overall, and from `addr`.
    pub(crate) fn count(&self, addr: IpAddr) -> (usize, usize) {
        let c = lock(&self.counts);
        (c.total, c.per_addr.get(&addr).copied().unwrap_or(0))
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = lock(&self.owner.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(addr) = self.addr {
            if let Some(n) = c.per_addr.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    c.per_addr.remove(&addr);
                }
            }
        }
    }
}

/// Throttling of failed authentication: an address that fails `max_failures` times within
/// `window` is refused outright for `window`, without its password being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthLimits {
    pub(crate) max_failures: u32,
    pub(crate) window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Attempts that did not (or not yet) succeed since `since`.
    failures: u32,
    since: Instant,
    blocked_until: Option<Instant>,
    /// Verifications of this address's credentials under way.
    in_flight: u32,
}

/// Addresses tracked at most; past that, stale records are swept first (and, under a flood
/// of distinct addresses, the oldest are forgotten) so memory stays bounded.
const MAX_TRACKED: usize = 16384;

/// Verifications one address may have under way at once; more are refused with `429` at once
/// rather than queued, so one address cannot hold the hashing threads.
pub(crate) const MAX_IN_FLIGHT_PER_ADDR: u32 = 4;

/// Why an authentication attempt was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Throttled {
    #[error("too many failed authentications")]
    Blocked,
    #[error("too many authentications under way from one address")]
    Busy,
}

/// Throttling of password guessing for one listener.
///
/// An attempt counts as a failure from the moment it *starts* and is forgiven when it
/// succeeds: counting at the end let 200 simultaneous guesses all be checked before the first
/// failure was recorded.
#[derive(Debug, Default)]
pub(crate) struct AuthThrottle {
    limits: AuthLimits,
    records: Mutex<HashMap<IpAddr, Record>>,
    failures: AtomicU64,
    throttled: AtomicU64,
}

/// One authentication attempt under way; ends with [`Attempt::succeeded`] or
/// [`Attempt::failed`] (or counts as failed if dropped).
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    throttle: &'a AuthThrottle,
    addr: IpAddr,
    /// This attempt reached the limit: the address is blocked unless it succeeds.
    pub(crate) blocks: bool,
}

impl AuthThrottle {
    pub(crate) fn new(limits: AuthLimits) -> Self {
        AuthThrottle {
            limits,
            ..Default::default()
        }
    }

    /// Starts an attempt from `addr`, counting it as failed until it succeeds; refused while
    /// the address is blocked or has too many attempts under way.
    pub(crate) fn begin(&self, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Throttled> {
        let mut records = lock(&self.records);
        let window = self.limits.window;
        if records.len() >= MAX_TRACKED && !records.contains_key(&addr) {
            records.retain(|_, r| {
                r.in_flight > 0
                    || now.saturating_duration_since(r.since) < window
                    || r.blocked_until.is_some_and(|t| now < t)
            });
            if records.len() >= MAX_TRACKED {
                records.retain(|_, r| r.in_flight > 0);
            }
        }
        let r = records.entry(addr).or_insert(Record {
            failures: 0,
            since: now,
            blocked_until: None,
            in_flight: 0,
        });
        match r.blocked_until {
            Some(t) if now < t => {
                self.throttled.fetch_add(1, Relaxed);
                return Err(Throttled::Blocked);
            }
            Some(_) => {
                r.failures = 0;
                r.since = now;
                r.blocked_until = None;
            }
            None if now.saturating_duration_since(r.since) >= window => {
                r.failures = 0;
                r.since = now;
            }
            None => {}
        }
        if r.in_flight >= MAX_IN_FLIGHT_PER_ADDR {
            self.throttled.fetch_add(1, Relaxed);
            return Err(Throttled::Busy);
        }
        r.in_flight += 1;
        r.failures += 1;
        let blocks = r.failures >= self.limits.max_failures;
        if blocks {
            r.blocked_until = Some(now + window);
        }
        Ok(Attempt {
            throttle: self,
            addr,
            blocks,
        })
    }

    /// How long a blocked address stays blocked.
    pub(crate) fn window(&self) -> Duration {
        self.limits.window
    }

    /// Failed authentications since start.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Requests refused because their address was throttled, since start.
    pub(crate) fn throttled(&self) -> u64 {
        self.throttled.load(Relaxed)
    }
}

impl Attempt<'_> {
    /// The credentials were right: the address's failures are forgiven.
    pub(crate) fn succeeded(self) {
        if let Some(r) = lock(&self.throttle.records).get_mut(&self.addr) {
            r.failures = 0;
            r.blocked_until = None;
        }
    }

    /// The credentials were wrong (already counted when the attempt began).
    pub(crate) fn failed(self) {
        self.throttle.failures.fetch_add(1, Relaxed);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut records = lock(&self.throttle.records);
        if let Some(r) = records.get_mut(&self.addr) {
            r.in_flight = r.in_flight.saturating_sub(1);
            if r.in_flight == 0 && r.failures == 0 && r.blocked_until.is_none() {
                records.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, n])
    }

    #[test]
    fn per_address_and_total_limits() {
        let c = Connections::new(ConnLimits {
            total: 3,
            per_addr: 2,
        });
        let a1 = c.admit(ip(1)).unwrap();
        let _a2 = c.admit(ip(1)).unwrap();
        assert_eq!(c.admit(ip(1)).unwrap_err(), Refused::PerAddr(2));
        let _b1 = c.admit(ip(2)).unwrap();
        assert_eq!(c.admit(ip(3)).unwrap_err(), Refused::Total(3));
        drop(a1);
        assert_eq!(c.count(ip(1)), (2, 1));
        assert!(c.admit(ip(1)).is_ok());
    }

    #[test]
    fn failures_block_then_expire() {
        let t = AuthThrottle::new(AuthLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            let a = t.begin(ip(1), t0).unwrap();
            assert!(!a.blocks);
            a.failed();
        }
        let a = t.begin(ip(1), t0).unwrap();
        assert!(a.blocks);
        a.failed();
        assert_eq!(t.failures(), 3);
        let s59 = t0 + Duration::from_secs(59);
        assert_eq!(t.begin(ip(1), s59).unwrap_err(), Throttled::Blocked);
        assert!(t.begin(ip(2), t0).is_ok());
        // A fresh window after the block.
        let a = t.begin(ip(1), t0 + Duration::from_secs(61)).unwrap();
        assert!(!a.blocks);
    }

    #[test]
    fn attempts_count_when_they_start() {
        let t = AuthThrottle::new(AuthLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        // Simultaneous guesses: at most MAX_IN_FLIGHT_PER_ADDR are checked at once…
        let mut under_way: Vec<_> = (0..MAX_IN_FLIGHT_PER_ADDR)
            .map(|_| t.begin(ip(1), t0).unwrap())
            .collect();
        assert_eq!(t.begin(ip(1), t0).unwrap_err(), Throttled::Busy);
        // …and, finished or not, ten of them block the address.
        let mut checked = under_way.len();
        while let Some(a) = under_way.pop() {
            a.failed();
            if let Ok(a) = t.begin(ip(1), t0) {
                checked += 1;
                under_way.push(a);
            }
        }
        assert_eq!(checked, 10);
        assert_eq!(t.begin(ip(1), t0).unwrap_err(), Throttled::Blocked);
    }

    #[test]
    fn success_forgives_and_memory_is_bounded() {
        let t = AuthThrottle::new(AuthLimits::default());
        let t0 = Instant::now();
        t.begin(ip(1), t0).unwrap().failed();
        t.begin(ip(1), t0).unwrap().succeeded();
        assert!(lock(&t.records).is_empty());
        for i in 0..(MAX_TRACKED as u32 + 100) {
            t.begin(IpAddr::from(i.to_be_bytes()), t0).unwrap().failed();
        }
        assert!(lock(&t.records).len() <= MAX_TRACKED);
    }
}
