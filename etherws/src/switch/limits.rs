//! The limits that protect the switch from hostile or broken ports: frame size, storm
//! control, rate limits, the loop guard and the MAC limits' warnings.
//!
//! [`Limits`] are the switch's settings; a [`Policer`] is one port's share of them — its token
//! buckets, the moves the loop guard counts, and the clocks of its warnings. Each check counts
//! what it drops in the port's [`PortStat`] and says so in the log, at most every
//! [`WARN_EVERY`] per port and limit, with how many frames the warning stands for.

use std::time::{Duration, Instant};

use crate::switch::fdb::{MacLimits, PortNo};
use crate::switch::policy::{Policy, Rate};
use crate::switch::ports::PortStat;

/// Protection against hostile or broken ports; each limit counts what it drops and says so
/// in the log (at most every [`WARN_EVERY`] per port and limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) macs: MacLimits,
    /// Broadcast and multicast frames a port may send per second (bursts of up to one
    /// second's worth); 0 turns storm control off.
    pub(crate) storm_pps: u32,
    /// Largest frame switched, in bytes (Ethernet header and 802.1Q tag included).
    pub(crate) max_frame: usize,
    /// Loop guard: a port onto which stations move this many times within a second brings
    /// looping frames, and is blocked for `loop_block`; 0 turns the guard off.
    pub(crate) loop_moves: u32,
    pub(crate) loop_block: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            macs: MacLimits::default(),
            storm_pps: 5000,
            max_frame: 9216,
            loop_moves: 100,
            loop_block: Duration::from_secs(30),
        }
    }
}

/// Events counted over fixed one-second windows.
#[derive(Debug)]
struct PerSecond {
    start: Instant,
    n: u32,
}

impl PerSecond {
    /// Counts one event; returns the count in the current second.
    fn hit(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.n = 0;
        }
        self.n += 1;
        self.n
    }
}

/// Quiet period between two warnings about the same limit on the same port.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// A token bucket: `per_sec` tokens a second, holding at most `capacity`. Storm control counts
/// frames in it (one second's worth), rate limits count bytes (their burst).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            last: now,
        }
    }

    /// Takes `cost` tokens if there are; false (and nothing taken) if not.
    fn take(&mut self, per_sec: f64, capacity: f64, cost: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Storm control: one frame of `pps` a second.
    fn take_frame(&mut self, pps: u32, now: Instant) -> bool {
        self.take(f64::from(pps), f64::from(pps), 1.0, now)
    }

    /// A rate limit: `len` bytes of `rate`.
    fn take_bytes(&mut self, rate: &Rate, len: usize, now: Instant) -> bool {
        self.take(rate.bytes_per_sec(), rate.burst as f64, len as f64, now)
    }
}

/// Rate-limits a warning and says how many events it stood for.
#[derive(Debug, Default)]
struct Warn {
    last: Option<Instant>,
    since: u64,
}

impl Warn {
    /// Counts one event; returns how many to report if it is time to warn again.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        match self.last {
            Some(t) if now.saturating_duration_since(t) < WARN_EVERY => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.since))
            }
        }
    }
}

/// One port's share of the [`Limits`]: its buckets, the moves the loop guard counts and the
/// clocks of its warnings.
#[derive(Debug)]
pub(crate) struct Policer {
    storm: Bucket,
    rate_in: Option<Bucket>,
    rate_out: Option<Bucket>,
    /// Stations that moved onto this port, for the loop guard.
    moves_in: PerSecond,
    warn_storm: Warn,
    warn_macs: Warn,
    warn_oversize: Warn,
    warn_evict: Warn,
    warn_vlan: Warn,
    warn_truncated: Warn,
}

impl Policer {
    /// A new port's: storm control's bucket full, no rate limits.
    pub(crate) fn new(limits: &Limits, now: Instant) -> Self {
        Policer {
            storm: Bucket::full(f64::from(limits.storm_pps), now),
            rate_in: None,
            rate_out: None,
            moves_in: PerSecond { start: now, n: 0 },
            warn_storm: Warn::default(),
            warn_macs: Warn::default(),
            warn_oversize: Warn::default(),
            warn_evict: Warn::default(),
            warn_vlan: Warn::default(),
            warn_truncated: Warn::default(),
        }
    }

    /// Follows the port's policy from `old` to `new`: a rate that changed starts with a full
    /// bucket (none if the rate is gone).
    pub(crate) fn set_rates(&mut self, old: &Policy, new: &Policy, now: Instant) {
        let full = |r: Rate| Bucket::full(r.burst as f64, now);
        if old.rate_in != new.rate_in {
            self.rate_in = new.rate_in.map(full);
        }
        if old.rate_out != new.rate_out {
            self.rate_out = new.rate_out.map(full);
        }
    }

    /// Frame size: false (counted, warned) if a frame of `len` bytes on the wire is larger
    /// than `max`.
    pub(crate) fn fits(
        &mut self,
        stat: &mut PortStat,
        len: usize,
        max: usize,
        now: Instant,
    ) -> bool {
        if len <= max {
            return true;
        }
        stat.rx_oversize += 1;
        if let Some(n) = self.warn_oversize.hit(now) {
            tracing::warn!(
                port = stat.port,
                len,
                max,
                dropped = n,
                "frames larger than the maximum frame size dropped"
            );
        }
        false
    }

    /// Counts (and warns about) an IP frame of `len` bytes whose IP header says it ends at
    /// `ip_end`, beyond its end: its sender cut it short, reading less from its device than
    /// the device's MTU lets through. It is forwarded all the same, as etherws 1.3 did (the
    /// receiver's stack drops it).
    pub(crate) fn truncated(
        &mut self,
        stat: &mut PortStat,
        len: usize,
        ip_end: usize,
        now: Instant,
    ) {
        stat.rx_truncated += 1;
        if let Some(n) = self.warn_truncated.hit(now) {
            tracing::warn!(
                port = stat.port,
                len,
                ip_end,
                frames = n,
                "frames shorter than their IP length says received (forwarded): the sender's MTU \
                 is larger than what it reads from its device (vpn-ws-client reads at most 1,500 \
                 bytes a frame: its MTU must be at most 1486)"
            );
        }
    }

    /// Counts (and warns about) a tagged frame received on an access port: it is dropped.
    pub(crate) fn tagged_on_access(&mut self, stat: &mut PortStat, now: Instant) {
        stat.vlan_dropped += 1;
        if let Some(n) = self.warn_vlan.hit(now) {
            tracing::warn!(
                port = stat.port,
                dropped = n,
                "tagged frames received on an access port dropped"
            );
        }
    }

    /// Storm control: false (counted, warned) if a frame that is `flooded` (to a broadcast or
    /// multicast address, or to a unicast address the switch does not know) is over `pps`
    /// frames a second (0: no limit). Checked before learning, so a storm of made-up sources
    /// teaches nothing.
    pub(crate) fn storm(
        &mut self,
        stat: &mut PortStat,
        pps: u32,
        flooded: bool,
        now: Instant,
    ) -> bool {
        if pps == 0 || !flooded || self.storm.take_frame(pps, now) {
            return true;
        }
        stat.storm_dropped += 1;
        if let Some(n) = self.warn_storm.hit(now) {
            tracing::warn!(
                port = stat.port,
                pps,
                dropped = n,
                "storm control: flooded frames (broadcast, multicast, unknown unicast) above the limit dropped"
            );
        }
        false
    }

    /// Spends `len` bytes of the port's `rate_in`; false (counted) if over it.
    pub(crate) fn rate_in(&mut self, stat: &mut PortStat, len: usize, now: Instant) -> bool {
        let ok = spend(stat.policy.rate_in, self.rate_in.as_mut(), len, now);
        if !ok {
            stat.rate_in_dropped += 1;
        }
        ok
    }

    /// Spends `len` bytes of the port's `rate_out`; false (counted) if over it.
    pub(crate) fn rate_out(&mut self, stat: &mut PortStat, len: usize, now: Instant) -> bool {
        let ok = spend(stat.policy.rate_out, self.rate_out.as_mut(), len, now);
        if !ok {
            stat.rate_out_dropped += 1;
        }
        ok
    }

    /// The loop guard: counts a station moving onto the port; true if `limit` of them did
    /// within the current second (0: never).
    pub(crate) fn loop_suspected(&mut self, limit: u32, now: Instant) -> bool {
        limit > 0 && self.moves_in.hit(now) >= limit
    }

    /// The loop guard blocked another port: the moves counted here so far were most likely
    /// the same loop's, which that block broke; count afresh (a second loop still shows).
    pub(crate) fn loop_broken(&mut self, now: Instant) {
        self.moves_in = PerSecond { start: now, n: 0 };
    }

    /// Warns that a station of the port was learned in a full table in place of one of the
    /// biggest holder's (on port `from`).
    pub(crate) fn evicted(&mut self, stat: &PortStat, from: PortNo, now: Instant) {
        if let Some(n) = self.warn_evict.hit(now) {
            tracing::warn!(
                port = stat.port,
                evicted_from = from,
                learned = n,
                "forwarding table full: stations learned in place of the biggest holder's"
            );
        }
    }

    /// Counts (and warns about) a source address not learned because of the MAC limits.
    pub(crate) fn refused(&mut self, stat: &mut PortStat, macs: &MacLimits, now: Instant) {
        stat.macs_refused += 1;
        if let Some(n) = self.warn_macs.hit(now) {
            tracing::warn!(
                port = stat.port,
                per_port = macs.per_port,
                total = macs.total,
                refused = n,
                "MAC limit reached: addresses not learned, frames to them flooded"
            );
        }
    }
}

/// Spends `len` bytes of `rate` from `bucket`; true if there is no limit or they were there.
fn spend(rate: Option<Rate>, bucket: Option<&mut Bucket>, len: usize, now: Instant) -> bool {
    match (rate, bucket) {
        (Some(rate), Some(bucket)) => bucket.take_bytes(&rate, len, now),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_warning_comes_at_most_every_warn_every_and_says_how_many_it_stands_for() {
        let t0 = Instant::now();
        let mut w = Warn::default();
        assert_eq!(w.hit(t0), Some(1));
        assert_eq!(w.hit(t0 + SEC), None);
        assert_eq!(w.hit(t0 + 2 * SEC), None);
        assert_eq!(w.hit(t0 + WARN_EVERY), Some(3));
        assert_eq!(w.hit(t0 + WARN_EVERY), None);
    }

    #[test]
    fn buckets_refill_with_time_up_to_their_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10.0, t0);
        assert!((0..10).all(|_| b.take_frame(10, t0)));
        assert!(!b.take_frame(10, t0));
        // Half a second: five frames' worth; a minute: no more than the capacity.
        let half = t0 + SEC / 2;
        assert_eq!((0..20).filter(|_| b.take_frame(10, half)).count(), 5);
        let later = t0 + 60 * SEC;
        assert_eq!((0..20).filter(|_| b.take_frame(10, later)).count(), 10);
        // Bytes: 8,000 bit/s is 1,000 bytes a second.
        let rate = Rate::new(8000, 1500);
        let mut b = Bucket::full(1500.0, t0);
        assert!(b.take_bytes(&rate, 1500, t0));
        assert!(!b.take_bytes(&rate, 1000, t0));
        assert!(b.take_bytes(&rate, 1000, t0 + SEC));
    }

    #[test]
    fn the_loop_guard_counts_moves_within_a_second() {
        let t0 = Instant::now();
        let mut p = Policer::new(&Limits::default(), t0);
        assert!(!p.loop_suspected(3, t0));
        assert!(!p.loop_suspected(3, t0));
        assert!(p.loop_suspected(3, t0 + SEC / 2));
        // A new second starts afresh; 0 turns the guard off.
        assert!(!p.loop_suspected(3, t0 + 2 * SEC));
        assert!((0..100).all(|_| !p.loop_suspected(0, t0 + 2 * SEC)));
    }
}
