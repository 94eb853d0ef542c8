//! The switch core: ports, counters and the forwarding decision.
//!
//! It knows nothing about sockets. A port is a number, a description and an [`Egress`] — a
//! non-blocking "offer this frame" — so a slow or dead peer can only ever fill its own queue:
//! when the offer is refused the frame is dropped and counted against that port alone. The
//! core is driven by whoever owns it (one `Mutex` in the daemon, plain calls in the tests).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::fdb::{Fdb, FdbRow, Learned, MacLimits, PortNo};
use crate::frame::{Frame, FrameError, Header, Mac};

/// Where a port's outgoing frames go. `offer` must not block: it queues the frame or refuses.
///
/// The switch decides where a frame goes under its lock and offers it after: an egress is
/// cloned into the decision, and counts what it was offered itself.
pub trait Egress: Clone {
    /// Queues `frame` (received at `now`) for transmission; false if it had to be dropped
    /// (queue full or closed). Counts either outcome.
    fn offer(&self, frame: &Frame, now: Instant) -> bool;
    /// What was offered so far.
    fn counters(&self) -> TxCounters;
}

/// A port's transmit counters, kept by its [`Egress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounters {
    /// Frames queued for transmission.
    pub tx: u64,
    /// Frames refused: the port's queue or the switch's queue budget was full.
    pub dropped: u64,
    /// Frames queued but dropped because they waited too long to be sent.
    pub expired: u64,
    /// Bytes in the queue now.
    pub queued_bytes: u64,
}

/// Follows the forwarding database's changes, so a copy of it elsewhere (the kernel's, for
/// eBPF-offloaded ports) never disagrees with it. Called with the switch locked, only when
/// something changes (a plain refresh of a known station costs nothing), and before an entry
/// ages out.
pub trait FdbObserver: Send {
    /// `mac` in `vid` now lives on `port`: new, moved, or relearned after ageing out.
    fn learned(&mut self, vid: u16, mac: Mac, port: PortNo);
    /// `mac` in `vid` is forgotten (aged out, or left its port and could not be relearned).
    fn forgotten(&mut self, vid: u16, mac: Mac);
    /// Every entry on `port` is forgotten (port removed, or its link went down).
    fn port_flushed(&mut self, port: PortNo);
    /// The last time `mac` on `port` was seen by someone else than the switch (the kernel's
    /// datapath), if known: consulted before the entry ages out.
    fn seen_elsewhere(&mut self, vid: u16, mac: Mac, port: PortNo, now: Instant)
    -> Option<Instant>;
}

/// The kinds of port etherws 1.3 knows; the names are those of its JSON-RPC `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// An incoming WebSocket connection.
    Server,
    /// An outgoing WebSocket connection.
    Client,
    /// A TAP device.
    Tap,
    /// An existing network interface.
    Netdev,
}

impl PortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Server => "server",
            PortKind::Client => "client",
            PortKind::Tap => "tap",
            PortKind::Netdev => "netdev",
        }
    }

    /// Only ports backed by a kernel interface have an address, netmask and MTU to set.
    pub fn has_interface(self) -> bool {
        matches!(self, PortKind::Tap | PortKind::Netdev)
    }
}

/// A port's counters and state as `listPort` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStat {
    pub port: PortNo,
    pub kind: PortKind,
    /// TAP or interface name, WebSocket URL, or the peer's `address:port`.
    pub target: String,
    pub shut: bool,
    /// False while the port's link is down (a client port reconnecting): nothing is sent to it.
    pub link_up: bool,
    /// Frames received from this port and switched.
    pub rx: u64,
    /// Frames queued for transmission on this port.
    pub tx: u64,
    /// Frames received from this port that were not Ethernet frames (runts).
    pub rx_invalid: u64,
    /// Frames received from this port that were larger than the switch allows.
    pub rx_oversize: u64,
    /// Broadcast/multicast frames from this port dropped by storm control.
    pub storm_dropped: u64,
    /// Frames whose source address was not learned because of the MAC limits.
    pub macs_refused: u64,
    /// Frames meant for this port but dropped because its queue (or the switch's budget for
    /// all queues) was full.
    pub tx_dropped: u64,
    /// Frames queued for this port but dropped because they waited too long in the queue.
    pub tx_expired: u64,
    /// Bytes waiting in this port's queue.
    pub queued_bytes: u64,
    /// The port exchanges super-frames with its device or peer (offloads negotiated).
    pub super_frames: bool,
    /// The client address of an incoming WebSocket connection (its stations count against it).
    pub addr: Option<IpAddr>,
    /// Who authenticated the port's peer: htpasswd user or client certificate name.
    pub user: Option<String>,
    /// Blocked by the loop guard until then: it neither receives nor sends meanwhile.
    pub loop_blocked_until: Option<Instant>,
    /// Times the loop guard blocked this port.
    pub loop_blocks: u64,
    /// Frames received from this port and dropped while it was blocked.
    pub loop_dropped: u64,
}

impl PortStat {
    /// True while the loop guard blocks the port.
    pub fn loop_blocked(&self, now: Instant) -> bool {
        self.loop_blocked_until.is_some_and(|t| now < t)
    }
}

/// Who connected a port: the client's address and, if it authenticated, its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub addr: Option<IpAddr>,
    pub user: Option<String>,
}

/// Protection against hostile or broken ports; each limit counts what it drops and says so
/// in the log (at most every [`WARN_EVERY`] per port and limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub macs: MacLimits,
    /// Broadcast and multicast frames a port may send per second (bursts of up to one
    /// second's worth); 0 turns storm control off.
    pub storm_pps: u32,
    /// Largest frame switched, in bytes (Ethernet header and 802.1Q tag included).
    pub max_frame: usize,
    /// Loop guard: a port onto which stations move this many times within a second brings
    /// looping frames, and is blocked for `loop_block`; 0 turns the guard off.
    pub loop_moves: u32,
    pub loop_block: Duration,
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
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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

struct Port<E> {
    stat: PortStat,
    egress: E,
    storm: Bucket,
    /// Stations that moved onto this port, for the loop guard.
    moves_in: PerSecond,
    warn_storm: Warn,
    warn_macs: Warn,
    warn_oversize: Warn,
    warn_evict: Warn,
}

impl<E: Egress> Port<E> {
    /// The port's state with the counters its egress keeps.
    fn stat(&self) -> PortStat {
        let c = self.egress.counters();
        PortStat {
            tx: c.tx,
            tx_dropped: c.dropped,
            tx_expired: c.expired,
            queued_bytes: c.queued_bytes,
            ..self.stat.clone()
        }
    }

    /// True if frames may be sent out of this port now.
    fn open(&self, now: Instant) -> bool {
        !self.stat.shut && self.stat.link_up && !self.stat.loop_blocked(now)
    }
}

/// Where one received frame goes: decided under the switch's lock, carried out after it by
/// [`Forward::emit`], so the lock is never held while frames are offered to queues.
#[must_use = "a decision does nothing until emitted"]
pub struct Forward<E> {
    frame: Frame,
    now: Instant,
    to: Targets<E>,
}

enum Targets<E> {
    Nowhere,
    One(E),
    Many(Vec<E>),
}

impl<E: Egress> Forward<E> {
    /// Offers the frame to each chosen port's egress (which counts what it takes or drops).
    pub fn emit(self) {
        match &self.to {
            Targets::Nowhere => {}
            Targets::One(e) => {
                e.offer(&self.frame, self.now);
            }
            Targets::Many(es) => {
                for e in es {
                    e.offer(&self.frame, self.now);
                }
            }
        }
    }
}

/// The switch: ports and their FDB.
pub struct Switch<E> {
    ports: BTreeMap<PortNo, Port<E>>,
    next: PortNo,
    fdb: Fdb,
    limits: Limits,
    observer: Option<Box<dyn FdbObserver>>,
}

impl<E: Egress> Switch<E> {
    pub fn new(ageout: Duration) -> Self {
        Self::with_limits(ageout, Limits::default())
    }

    pub fn with_limits(ageout: Duration, limits: Limits) -> Self {
        Switch {
            ports: BTreeMap::new(),
            next: 1,
            fdb: Fdb::with_limits(ageout, limits.macs),
            limits,
            observer: None,
        }
    }

    /// Installs the observer of FDB changes and tells it every live entry.
    pub fn set_fdb_observer(&mut self, mut observer: Box<dyn FdbObserver>) {
        for r in self.fdb.rows(Instant::now()) {
            observer.learned(r.vid, r.mac, r.port);
        }
        self.observer = Some(observer);
    }

    /// Tells the observer every live entry again (its copy was lost or just created).
    pub fn replay_fdb(&mut self) {
        if let Some(o) = self.observer.as_mut() {
            for r in self.fdb.rows(Instant::now()) {
                o.learned(r.vid, r.mac, r.port);
            }
        }
    }

    fn flushed(&mut self, port: PortNo) {
        self.fdb.flush_port(port);
        if let Some(o) = self.observer.as_mut() {
            o.port_flushed(port);
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds a port and returns its number; numbers are never reused while the switch runs.
    pub fn add_port(&mut self, kind: PortKind, target: String, egress: E) -> PortNo {
        self.add_port_from(kind, target, Origin::default(), egress)
    }

    /// Adds a port a client connected: its stations count against the client's address,
    /// whatever connection they come through.
    pub fn add_port_from(
        &mut self,
        kind: PortKind,
        target: String,
        origin: Origin,
        egress: E,
    ) -> PortNo {
        let port = self.next;
        self.next += 1;
        let Origin { addr, user } = origin;
        if let Some(addr) = addr {
            self.fdb.set_owner(port, addr);
        }
        let stat = PortStat {
            port,
            kind,
            target,
            shut: false,
            link_up: true,
            rx: 0,
            tx: 0,
            rx_invalid: 0,
            rx_oversize: 0,
            storm_dropped: 0,
            macs_refused: 0,
            tx_dropped: 0,
            tx_expired: 0,
            queued_bytes: 0,
            super_frames: false,
            addr,
            user,
            loop_blocked_until: None,
            loop_blocks: 0,
            loop_dropped: 0,
        };
        let now = Instant::now();
        self.ports.insert(
            port,
            Port {
                stat,
                egress,
                storm: Bucket::new(self.limits.storm_pps, now),
                moves_in: PerSecond { start: now, n: 0 },
                warn_storm: Warn::default(),
                warn_macs: Warn::default(),
                warn_oversize: Warn::default(),
                warn_evict: Warn::default(),
            },
        );
        port
    }

    /// Removes a port and forgets its FDB entries; returns the port as it was.
    ///
    /// Dropping its [`Egress`] is what tells the port's driver to close.
    pub fn remove_port(&mut self, port: PortNo) -> Option<PortStat> {
        let removed = self.ports.remove(&port)?;
        self.flushed(port);
        self.fdb.forget_port(port);
        Some(removed.stat)
    }

    /// Shuts a port (it neither receives nor sends, its counters stop) or brings it back.
    pub fn set_shut(&mut self, port: PortNo, shut: bool) -> Option<PortStat> {
        let p = self.ports.get_mut(&port)?;
        p.stat.shut = shut;
        Some(p.stat.clone())
    }

    /// Records whether a port exchanges super-frames with its device or peer.
    pub fn set_super_frames(&mut self, port: PortNo, on: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.super_frames = on;
        }
    }

    /// Records that a port's link went down or came back. Going down forgets the stations
    /// learned on it: they may be anywhere by the time it returns.
    pub fn set_link(&mut self, port: PortNo, up: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.link_up = up;
            if !up {
                self.flushed(port);
            }
        }
    }

    /// A port's state and counters.
    pub fn port(&self, port: PortNo) -> Option<PortStat> {
        self.ports.get(&port).map(Port::stat)
    }

    /// All ports in number order.
    pub fn ports(&self) -> impl Iterator<Item = PortStat> + '_ {
        self.ports.values().map(Port::stat)
    }

    /// The port numbers in order.
    pub fn port_numbers(&self) -> impl Iterator<Item = PortNo> + '_ {
        self.ports.keys().copied()
    }

    /// Entries in the FDB (aged ones not yet swept included).
    pub fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    pub fn fdb_rows(&self, now: Instant) -> Vec<FdbRow> {
        self.fdb.rows(now)
    }

    /// Drops aged-out FDB entries for good; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let Some(o) = self.observer.as_mut() else {
            return self.fdb.expire(now);
        };
        let gone = self
            .fdb
            .expire_with(now, |vid, mac, port| o.seen_elsewhere(vid, mac, port, now));
        for &(vid, mac) in &gone {
            o.forgotten(vid, mac);
        }
        gone.len()
    }

    /// Switches one plain frame received on `from`: [`decide`](Self::decide), then emit.
    pub fn receive(&mut self, from: PortNo, frame: &Bytes, now: Instant) -> Result<(), FrameError> {
        self.decide(from, Frame::from(frame.clone()), now)
            .map(Forward::emit)
    }

    /// Decides where one frame received on `from` goes.
    ///
    /// Learns the source, then chooses the one port the destination is known on, or floods
    /// to every other port for broadcast, multicast and unknown unicast. Never sends a frame
    /// back out of the port it came in on. Frames from unknown or shut ports go nowhere.
    pub fn decide(
        &mut self,
        from: PortNo,
        frame: Frame,
        now: Instant,
    ) -> Result<Forward<E>, FrameError> {
        // The decision carries the frame; until a destination is chosen it goes nowhere.
        let nowhere = Forward {
            frame,
            now,
            to: Targets::Nowhere,
        };
        let frame = &nowhere.frame;
        let Some(src_port) = self.ports.get_mut(&from) else {
            return Ok(nowhere);
        };
        if src_port.stat.shut {
            return Ok(nowhere);
        }
        if src_port.stat.loop_blocked(now) {
            src_port.stat.loop_dropped += 1;
            return Ok(nowhere);
        }
        let hdr = match Header::parse(&frame.data) {
            Ok(h) => h,
            Err(e) => {
                src_port.stat.rx_invalid += 1;
                return Err(e);
            }
        };
        if frame.wire_len() > self.limits.max_frame {
            src_port.stat.rx_oversize += 1;
            if let Some(n) = src_port.warn_oversize.hit(now) {
                tracing::warn!(
                    port = from,
                    len = frame.wire_len(),
                    max = self.limits.max_frame,
                    dropped = n,
                    "frames larger than the maximum frame size dropped"
                );
            }
            return Ok(nowhere);
        }
        // Storm control: before learning, so a storm of made-up sources teaches nothing.
        let rate = self.limits.storm_pps;
        if rate > 0 && hdr.dst.is_multicast() && !src_port.storm.take(rate, now) {
            src_port.stat.storm_dropped += 1;
            if let Some(n) = src_port.warn_storm.hit(now) {
                tracing::warn!(
                    port = from,
                    pps = rate,
                    dropped = n,
                    "storm control: broadcast/multicast above the limit dropped"
                );
            }
            return Ok(nowhere);
        }
        src_port.stat.rx += 1;

        if !hdr.src.is_multicast() {
            match self.fdb.learn(hdr.vid, hdr.src, from, now) {
                Learned::Refreshed => {}
                Learned::New => {
                    tracing::debug!(port = from, vid = hdr.vid, mac = %hdr.src, "fdb learned");
                    if let Some(o) = self.observer.as_mut() {
                        o.learned(hdr.vid, hdr.src, from);
                    }
                }
                Learned::Moved { from: old } => {
                    tracing::debug!(port = from, old, vid = hdr.vid, mac = %hdr.src, "fdb moved");
                    if let Some(o) = self.observer.as_mut() {
                        o.learned(hdr.vid, hdr.src, from);
                    }
                    let limit = self.limits.loop_moves;
                    if limit > 0 && src_port.moves_in.hit(now) >= limit {
                        self.block_looping(from, old, hdr.vid, hdr.src, now);
                        return Ok(nowhere);
                    }
                }
                Learned::Evicted {
                    victim,
                    from: owner,
                } => {
                    if let Some(o) = self.observer.as_mut() {
                        o.forgotten(victim.0, victim.1);
                        o.learned(hdr.vid, hdr.src, from);
                    }
                    if let Some(n) = src_port.warn_evict.hit(now) {
                        tracing::warn!(
                            port = from,
                            evicted_from = owner,
                            learned = n,
                            "forwarding table full: stations learned in place of the biggest holder's"
                        );
                    }
                }
                Learned::Refused => {
                    // It may have left another port on the way: forgotten there too.
                    if let Some(o) = self.observer.as_mut() {
                        o.forgotten(hdr.vid, hdr.src);
                    }
                    src_port.stat.macs_refused += 1;
                    if let Some(n) = src_port.warn_macs.hit(now) {
                        let l = self.limits.macs;
                        tracing::warn!(
                            port = from,
                            per_port = l.per_port,
                            total = l.total,
                            refused = n,
                            "MAC limit reached: addresses not learned, frames to them flooded"
                        );
                    }
                }
            }
        }

        let known = if hdr.dst.is_multicast() {
            None
        } else {
            self.fdb.lookup(hdr.vid, hdr.dst, now)
        };
        let to = match known {
            // The destination sits behind the port the frame came from: filter it.
            Some(to) if to == from => Targets::Nowhere,
            Some(to) => match self.ports.get(&to) {
                Some(p) if p.open(now) => Targets::One(p.egress.clone()),
                _ => Targets::Nowhere,
            },
            None => Targets::Many(
                self.ports
                    .iter()
                    .filter(|(n, p)| **n != from && p.open(now))
                    .map(|(_, p)| p.egress.clone())
                    .collect(),
            ),
        };
        Ok(Forward { to, ..nowhere })
    }

    /// The loop guard: stations keep moving onto `port` (last `mac`, from `old`), so frames
    /// are going round a loop through it. Block it for a while — it neither receives nor
    /// sends — and forget its stations: whoever is really behind it is relearned afterwards.
    fn block_looping(&mut self, port: PortNo, old: PortNo, vid: u16, mac: Mac, now: Instant) {
        let block = self.limits.loop_block;
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.loop_blocked_until = Some(now + block);
            p.stat.loop_blocks += 1;
            tracing::warn!(
                port,
                target = %crate::escape::Esc(&p.stat.target),
                vid,
                %mac,
                from = old,
                moves_per_sec = self.limits.loop_moves,
                block_secs = block.as_secs(),
                "loop suspected: stations keep moving onto this port; port blocked for a while"
            );
        }
        self.flushed(port);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::frame::tests::frame;

    /// A port queue that records what was offered, optionally refusing everything.
    #[derive(Clone, Default)]
    struct Sink {
        got: Rc<RefCell<Vec<Bytes>>>,
        refused: Rc<RefCell<u64>>,
        full: bool,
    }

    impl Egress for Sink {
        fn counters(&self) -> TxCounters {
            TxCounters {
                tx: self.got.borrow().len() as u64,
                dropped: *self.refused.borrow(),
                ..TxCounters::default()
            }
        }

        fn offer(&self, frame: &Frame, _now: Instant) -> bool {
            if self.full {
                *self.refused.borrow_mut() += 1;
            } else {
                self.got.borrow_mut().push(frame.data.clone());
            }
            !self.full
        }
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];

    fn switch(n: usize) -> (Switch<Sink>, Vec<Sink>) {
        let mut sw = Switch::new(Duration::from_secs(300));
        let sinks: Vec<Sink> = (0..n).map(|_| Sink::default()).collect();
        for s in &sinks {
            sw.add_port(PortKind::Tap, "t".into(), s.clone());
        }
        (sw, sinks)
    }

    fn counts(sinks: &[Sink]) -> Vec<usize> {
        sinks.iter().map(|s| s.got.borrow().len()).collect()
    }

    fn rx(sw: &mut Switch<Sink>, port: PortNo, f: Vec<u8>) {
        sw.receive(port, &Bytes::from(f), Instant::now()).unwrap();
    }

    #[test]
    fn floods_unknown_then_forwards_known() {
        let (mut sw, sinks) = switch(3);
        rx(&mut sw, 1, frame(B, A, None)); // B unknown: flood to 2 and 3
        assert_eq!(counts(&sinks), vec![0, 1, 1]);
        rx(&mut sw, 2, frame(A, B, None)); // A known on 1: only there
        assert_eq!(counts(&sinks), vec![1, 1, 1]);
        rx(&mut sw, 1, frame(B, A, None)); // B now known on 2
        assert_eq!(counts(&sinks), vec![1, 2, 1]);
        let s: Vec<_> = sw.ports().map(|p| (p.rx, p.tx)).collect();
        assert_eq!(s, vec![(2, 1), (1, 2), (0, 1)]);
    }

    #[test]
    fn broadcast_and_multicast_flood_and_are_not_learned() {
        let (mut sw, sinks) = switch(3);
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 1, 1]);
        // A multicast source is not learned…
        rx(&mut sw, 2, frame(B, [1, 0, 0x5e, 0, 0, 1], None));
        assert!(sw.fdb_rows(Instant::now()).iter().all(|r| r.port != 2));
        // …and a multicast destination floods even if "learned" somehow.
        rx(&mut sw, 3, frame([1, 0, 0x5e, 0, 0, 1], C, None));
        assert_eq!(counts(&sinks), vec![2, 2, 2]);
    }

    #[test]
    fn never_back_out_of_the_ingress_port() {
        let (mut sw, sinks) = switch(2);
        rx(&mut sw, 1, frame(BCAST, A, None));
        rx(&mut sw, 1, frame(BCAST, B, None)); // A and B both behind port 1
        rx(&mut sw, 1, frame(B, A, None)); // local to port 1: filtered
        assert_eq!(counts(&sinks), vec![0, 2]);
    }

    #[test]
    fn vlans_do_not_leak_known_unicast() {
        let (mut sw, sinks) = switch(3);
        rx(&mut sw, 1, frame(BCAST, A, Some(10)));
        // To A in VLAN 20: A is unknown there, so flooded (not sent to port 1 only).
        rx(&mut sw, 2, frame(A, B, Some(20)));
        assert_eq!(counts(&sinks), vec![1, 1, 2]);
        // To A in VLAN 10: known on port 1.
        rx(&mut sw, 3, frame(A, C, Some(10)));
        assert_eq!(counts(&sinks), vec![2, 1, 2]);
    }

    #[test]
    fn shut_port_neither_receives_nor_sends() {
        let (mut sw, sinks) = switch(3);
        sw.set_shut(2, true).unwrap();
        rx(&mut sw, 1, frame(BCAST, A, None));
        rx(&mut sw, 2, frame(BCAST, B, None));
        assert_eq!(counts(&sinks), vec![0, 0, 1]);
        let p2 = sw.port(2).unwrap();
        assert_eq!((p2.rx, p2.tx), (0, 0));
        // Its stations were not learned either.
        assert!(sw.fdb_rows(Instant::now()).iter().all(|r| r.port != 2));
        sw.set_shut(2, false).unwrap();
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 1, 2]);
    }

    #[test]
    fn full_queue_drops_and_counts_without_stalling_others() {
        let mut sw = Switch::new(Duration::from_secs(300));
        let ok = Sink::default();
        let slow = Sink {
            full: true,
            ..Default::default()
        };
        sw.add_port(PortKind::Client, "ws://a/".into(), Sink::default());
        sw.add_port(PortKind::Client, "ws://b/".into(), slow);
        sw.add_port(PortKind::Client, "ws://c/".into(), ok.clone());
        for _ in 0..5 {
            rx(&mut sw, 1, frame(BCAST, A, None));
        }
        assert_eq!(ok.got.borrow().len(), 5);
        let slow = sw.port(2).unwrap();
        assert_eq!((slow.tx, slow.tx_dropped), (0, 5));
    }

    #[test]
    fn port_numbers_are_never_reused_and_removal_flushes_fdb() {
        let (mut sw, _sinks) = switch(2);
        rx(&mut sw, 2, frame(BCAST, B, None));
        assert_eq!(sw.fdb_rows(Instant::now()).len(), 1);
        let gone = sw.remove_port(2).unwrap();
        assert_eq!(gone.rx, 1);
        assert!(sw.fdb_rows(Instant::now()).is_empty());
        assert!(sw.remove_port(2).is_none());
        let n = sw.add_port(PortKind::Tap, "t".into(), Sink::default());
        assert_eq!(n, 3);
        let nums: Vec<_> = sw.ports().map(|p| p.port).collect();
        assert_eq!(nums, vec![1, 3]);
    }

    #[test]
    fn link_down_port_gets_nothing_and_forgets_its_stations() {
        let (mut sw, sinks) = switch(3);
        rx(&mut sw, 2, frame(BCAST, B, None));
        sw.set_link(2, false);
        assert!(sw.fdb_rows(Instant::now()).is_empty());
        rx(&mut sw, 1, frame(B, A, None));
        assert_eq!(counts(&sinks), vec![1, 0, 2]);
        assert_eq!(sw.port(2).unwrap().tx, 0);
        sw.set_link(2, true);
        rx(&mut sw, 1, frame(B, A, None));
        assert_eq!(counts(&sinks), vec![1, 1, 3]);
    }

    #[test]
    fn storm_control_caps_broadcast_per_port() {
        let limits = Limits {
            storm_pps: 10,
            ..Limits::default()
        };
        let mut sw = Switch::with_limits(Duration::from_secs(300), limits);
        let sinks: Vec<Sink> = (0..2).map(|_| Sink::default()).collect();
        for s in &sinks {
            sw.add_port(PortKind::Tap, "t".into(), s.clone());
        }
        let t0 = Instant::now();
        let bcast = Bytes::from(frame(BCAST, A, None));
        for _ in 0..100 {
            sw.receive(1, &bcast, t0).unwrap();
        }
        // One second's burst passes, the rest is dropped and counted…
        assert_eq!(counts(&sinks), vec![0, 10]);
        assert_eq!(sw.port(1).unwrap().storm_dropped, 90);
        // …unicast is not limited…
        rx(&mut sw, 2, frame(BCAST, B, None));
        for _ in 0..50 {
            sw.receive(1, &Bytes::from(frame(B, A, None)), t0).unwrap();
        }
        assert_eq!(counts(&sinks)[1], 60);
        // …and the bucket refills with time.
        sw.receive(1, &bcast, t0 + Duration::from_millis(500))
            .unwrap();
        assert_eq!(counts(&sinks)[1], 61);
    }

    #[test]
    fn oversize_frames_are_dropped_and_counted() {
        let limits = Limits {
            max_frame: 100,
            ..Limits::default()
        };
        let mut sw = Switch::with_limits(Duration::from_secs(300), limits);
        let sink = Sink::default();
        sw.add_port(PortKind::Tap, "t".into(), Sink::default());
        sw.add_port(PortKind::Tap, "t".into(), sink.clone());
        let mut big = frame(BCAST, A, None);
        big.resize(101, 0);
        sw.receive(1, &Bytes::from(big), Instant::now()).unwrap();
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(sink.got.borrow().len(), 1);
        assert_eq!(sw.port(1).unwrap().rx_oversize, 1);
    }

    #[test]
    fn mac_flood_is_bounded_and_still_forwarded() {
        let limits = Limits {
            macs: MacLimits {
                per_port: 8,
                per_addr: 8,
                total: 100,
            },
            ..Limits::default()
        };
        let mut sw = Switch::with_limits(Duration::from_secs(300), limits);
        let sinks: Vec<Sink> = (0..2).map(|_| Sink::default()).collect();
        for s in &sinks {
            sw.add_port(PortKind::Tap, "t".into(), s.clone());
        }
        for i in 0..1000u32 {
            let b = i.to_be_bytes();
            rx(&mut sw, 1, frame(B, [2, 0, b[0], b[1], b[2], b[3]], None));
        }
        assert_eq!(sw.fdb_rows(Instant::now()).len(), 8);
        assert_eq!(sw.port(1).unwrap().macs_refused, 992);
        assert_eq!(counts(&sinks), vec![0, 1000]);
    }

    #[test]
    fn loop_guard_blocks_the_port_stations_keep_moving_onto() {
        let limits = Limits {
            loop_moves: 10,
            loop_block: Duration::from_secs(30),
            ..Limits::default()
        };
        let mut sw = Switch::with_limits(Duration::from_secs(300), limits);
        let sinks: Vec<Sink> = (0..3).map(|_| Sink::default()).collect();
        for s in &sinks {
            sw.add_port(PortKind::Netdev, "n".into(), s.clone());
        }
        let t0 = Instant::now();
        let from_a = Bytes::from(frame(BCAST, A, None));
        // A station that moves now and then (a VM migrating) is fine…
        sw.receive(1, &from_a, t0).unwrap();
        sw.receive(2, &from_a, t0).unwrap();
        sw.receive(1, &from_a, t0 + Duration::from_secs(2)).unwrap();
        assert!(sw.ports().all(|p| p.loop_blocks == 0));
        // …but A's frames coming back round a loop through ports 2 and 3 are not.
        for i in 0..20 {
            let port = 2 + (i % 2);
            sw.receive(port, &from_a, t0 + Duration::from_secs(3))
                .unwrap();
        }
        let blocked: Vec<_> = sw
            .ports()
            .filter(|p| p.loop_blocked(t0 + Duration::from_secs(3)))
            .map(|p| p.port)
            .collect();
        assert_eq!(blocked.len(), 1, "one port of the loop is blocked");
        let b = blocked[0];
        assert!(b == 2 || b == 3);
        // A blocked port neither sends nor receives; its frames are counted.
        let t1 = t0 + Duration::from_secs(4);
        let before = counts(&sinks);
        sw.receive(b, &from_a, t1).unwrap();
        assert_eq!(counts(&sinks), before);
        sw.receive(1, &Bytes::from(frame(BCAST, B, None)), t1)
            .unwrap();
        assert_eq!(counts(&sinks)[b as usize - 1], before[b as usize - 1]);
        let p = sw.port(b).unwrap();
        assert_eq!((p.loop_blocks, p.loop_dropped), (1, 1));
        // Afterwards it comes back by itself.
        let later = t0 + Duration::from_secs(40);
        assert!(!sw.port(b).unwrap().loop_blocked(later));
        sw.receive(1, &Bytes::from(frame(BCAST, B, None)), later)
            .unwrap();
        assert_eq!(counts(&sinks)[b as usize - 1], before[b as usize - 1] + 1);
    }

    #[test]
    fn runts_are_counted_not_switched() {
        let (mut sw, sinks) = switch(2);
        let err = sw.receive(1, &Bytes::from_static(&[0; 10]), Instant::now());
        assert!(err.is_err());
        assert_eq!(counts(&sinks), vec![0, 0]);
        let p = sw.port(1).unwrap();
        assert_eq!((p.rx, p.rx_invalid), (0, 1));
    }

    #[test]
    fn frames_from_unknown_ports_are_ignored() {
        let (mut sw, sinks) = switch(2);
        rx(&mut sw, 9, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 0]);
    }
}
