//! The switch core: ports, counters and the forwarding decision.
//!
//! It knows nothing about sockets. A port is a number, a description and an [`Egress`] — a
//! non-blocking "offer this frame" — so a slow or dead peer can only ever fill its own queue:
//! when the offer is refused the frame is dropped and counted against that port alone. The
//! core is driven by whoever owns it (one `Mutex` in the daemon, plain calls in the tests).
//!
//! One frame's way through [`Switch::decide`], in four stages:
//!
//! 1. **admit** — the port is known, open and not blocked by the loop guard; the frame is an
//!    Ethernet frame within the [`limits`] (size, VLAN, storm control, `rate_in`);
//! 2. **learn** — its source address is learned in the forwarding database ([`fdb`]), within
//!    the MAC limits and port security (an untrusted port takes over no other port's station);
//!    the loop guard watches stations moving; then port security looks past the Ethernet
//!    header ([`guard`]: DHCP snooping, ARP/ND inspection, no DHCP server or RA from an
//!    untrusted port);
//! 3. **choose egress** — the port its destination is known on, or every other port, each
//!    allowed by the [`policy`] (VLAN, isolation, split horizon) and its `rate_out`;
//! 4. **mirror** — copies for the mirror ports of the ports it comes from and goes to.
//!
//! The stages run under the switch's lock and add to [`Decisions`], which the caller emits
//! once the lock is released: decide under the lock, offer to the queues after it.
//!
//! | module | holds |
//! |---|---|
//! | [`frame`] | frames and the header fields the switch reads |
//! | [`fdb`] | the forwarding database and its MAC limits |
//! | [`guard`] | port security past the Ethernet header |
//! | [`ports`] | what the switch knows of a port: counters, origin, egress |
//! | [`policy`] | a port's VLAN, isolation, mesh, mirror and rates |
//! | [`limits`] | the switch's limits and each port's share of them |
//! | [`forward`] | the decisions, and how they are emitted |

pub(crate) mod fdb;
pub(crate) mod forward;
pub(crate) mod frame;
pub(crate) mod guard;
pub(crate) mod limits;
pub(crate) mod policy;
pub(crate) mod ports;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::switch::fdb::{Fdb, FdbRow, Learned, Learning, PortNo};
pub(crate) use crate::switch::forward::Decisions;
use crate::switch::forward::Target;
use crate::switch::frame::{Frame, FrameError, Header, Mac};
use crate::switch::guard::{Guard, Rule};
pub(crate) use crate::switch::limits::Limits;
use crate::switch::limits::Policer;
use crate::switch::policy::Edit;
pub(crate) use crate::switch::policy::{Policy, PolicyError, Rate};
pub(crate) use crate::switch::ports::{Egress, Origin, PortKind, PortStat, QuicStat, TxCounters};
use crate::wire;

/// Follows the forwarding database's changes, so a copy of it elsewhere (the kernel's, for
/// eBPF-offloaded ports) never disagrees with it. Called with the switch locked, only when
/// something changes (a plain refresh of a known station costs nothing), and before an entry
/// ages out.
pub(crate) trait FdbObserver: Send {
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

/// A port as the switch holds it: its state and counters, its queue, its share of the limits.
struct Port<E> {
    stat: PortStat,
    egress: E,
    policer: Policer,
}

impl<E: Egress> Port<E> {
    /// The port's state with the counters its egress keeps.
    fn stat(&self) -> PortStat {
        self.stat.with_tx(self.egress.counters())
    }

    /// Whether a frame admitted as `rx` may leave by this port (number `port`) now, and how:
    /// the port is open, the policies allow it, and it is within the port's `rate_out`
    /// (spent if so).
    fn target(&mut self, port: PortNo, rx: &Admitted, now: Instant) -> Option<Target<E>> {
        if !self.stat.open(now) {
            return None;
        }
        let edit = self.stat.policy.edit_from(&rx.policy, rx.vid)?;
        // The bytes that leave: a super-frame whole, or its segments.
        let len = if self.stat.super_frames {
            rx.len
        } else {
            rx.plain_len
        };
        self.policer
            .rate_out(&mut self.stat, len, now)
            .then(|| Target {
                port,
                egress: self.egress.clone(),
                edit,
            })
    }
}

/// Where the payload of a frame with one VLAN tag starts: the most an untrusted port's frames
/// may carry (an access port's carry none: tagged frames are dropped on admission).
const INNERMOST_ALLOWED: usize = wire::ethernet::HEADER_LEN + wire::vlan::HEADER_LEN;

/// What the admit stage found out about a frame, for the stages after it.
struct Admitted {
    hdr: Header,
    /// The frame's VLAN: an access port's own, the tag's on a trunk.
    vid: u16,
    /// The policy of the port it came in on.
    policy: Policy,
    /// Its length in bytes, as it crosses to a port that takes super-frames whole.
    len: usize,
    /// Its length once cut into plain frames, as it crosses to any other port.
    plain_len: usize,
}

/// The switch: ports and their FDB.
pub(crate) struct Switch<E> {
    ports: BTreeMap<PortNo, Port<E>>,
    next: PortNo,
    fdb: Fdb,
    limits: Limits,
    observer: Option<Box<dyn FdbObserver>>,
    /// Ports with a mirror set: while there are none, decisions skip looking for them.
    mirroring: usize,
    /// Port security's view of who holds which address (DHCP snooping, ARP/ND claims).
    guard: Guard,
    /// Untrusted ports: while there are none, port security has nothing to watch.
    untrusted: usize,
}

impl<E: Egress> Switch<E> {
    pub(crate) fn new(ageout: Duration) -> Self {
        Self::with_limits(ageout, Limits::default())
    }

    pub(crate) fn with_limits(ageout: Duration, limits: Limits) -> Self {
        Switch {
            ports: BTreeMap::new(),
            next: 1,
            fdb: Fdb::with_limits(ageout, limits.macs),
            limits,
            observer: None,
            mirroring: 0,
            guard: Guard::new(ageout),
            untrusted: 0,
        }
    }

    /// Takes new limits (a reload), for every frame from now on: sizes, storm control, the
    /// loop guard, and the MAC limits of what is learned next.
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.fdb.set_limits(limits.macs);
        self.limits = limits;
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Installs the observer of FDB changes and tells it every live entry.
    pub(crate) fn set_fdb_observer(&mut self, mut observer: Box<dyn FdbObserver>) {
        for r in self.fdb.rows(Instant::now()) {
            observer.learned(r.vid, r.mac, r.port);
        }
        self.observer = Some(observer);
    }

    /// Tells the observer every live entry again (its copy was lost or just created).
    pub(crate) fn replay_fdb(&mut self) {
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

    /// Adds a port and returns its number; numbers are never reused while the switch runs.
    pub(crate) fn add_port(&mut self, kind: PortKind, target: String, egress: E) -> PortNo {
        self.add_port_from(kind, target, Origin::default(), egress)
    }

    /// Adds a port a client connected: its stations count against the client's address,
    /// whatever connection they come through.
    pub(crate) fn add_port_from(
        &mut self,
        kind: PortKind,
        target: String,
        origin: Origin,
        egress: E,
    ) -> PortNo {
        let port = self.next;
        self.next += 1;
        if let Some(addr) = origin.addr {
            self.fdb.set_owner(port, addr);
        }
        let now = Instant::now();
        let port_record = Port {
            stat: PortStat::new(port, kind, target.into(), &origin),
            egress,
            policer: Policer::new(&self.limits, now),
        };
        self.ports.insert(port, port_record);
        if origin.policy != Policy::default() {
            if let Err(e) = self.set_policy(port, origin.policy) {
                tracing::warn!(port, "port policy not applied: {e}");
            }
        }
        port
    }

    /// Sets a port's [`Policy`]. Changing the VLAN forgets the stations learned on the port
    /// (they were learned in the old one); a mirror must name another existing port.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for a VLAN out of range, a mirror that is not another existing port, or
    /// no port `port`; nothing is changed then.
    pub(crate) fn set_policy(
        &mut self,
        port: PortNo,
        policy: Policy,
    ) -> Result<PortStat, PolicyError> {
        policy.check(port, |m| self.ports.contains_key(&m))?;
        let now = Instant::now();
        let p = self.ports.get_mut(&port).ok_or(PolicyError::NoPort(port))?;
        let old = p.stat.policy;
        p.stat.policy = policy;
        p.policer.set_rates(&old, &policy, now);
        let stat = p.stat();
        self.mirroring = self.mirroring + usize::from(policy.mirror.is_some())
            - usize::from(old.mirror.is_some());
        if old.is_trusted() != policy.is_trusted() {
            self.untrusted =
                self.untrusted + usize::from(!policy.is_trusted()) - usize::from(!old.is_trusted());
            // What it claimed or took over as one kind of port is not the other's: it learns
            // its stations again under the new rules (its first one sticky if untrusted).
            self.guard.forget_port(port);
            self.flushed(port);
        }
        if old.vlan != policy.vlan {
            self.flushed(port);
        }
        Ok(stat)
    }

    /// Removes a port and forgets its FDB entries; returns the port as it was.
    ///
    /// Dropping its [`Egress`] is what tells the port's driver to close.
    pub(crate) fn remove_port(&mut self, port: PortNo) -> Option<PortStat> {
        let removed = self.ports.remove(&port)?;
        if removed.stat.policy.mirror.is_some() {
            self.mirroring -= 1;
        }
        if !removed.stat.policy.is_trusted() {
            self.untrusted -= 1;
        }
        self.guard.forget_port(port);
        for p in self.ports.values_mut() {
            if p.stat.policy.mirror == Some(port) {
                p.stat.policy.mirror = None;
                self.mirroring -= 1;
            }
        }
        self.flushed(port);
        self.fdb.forget_port(port);
        Some(removed.stat())
    }

    /// Shuts a port (it neither receives nor sends, its counters stop) or brings it back.
    pub(crate) fn set_shut(&mut self, port: PortNo, shut: bool) -> Option<PortStat> {
        let p = self.ports.get_mut(&port)?;
        p.stat.shut = shut;
        Some(p.stat())
    }

    /// Records whether a port exchanges super-frames with its device or peer.
    pub(crate) fn set_super_frames(&mut self, port: PortNo, on: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.super_frames = on;
        }
    }

    /// Records the TCP congestion control algorithm of a WebSocket port's connection.
    pub(crate) fn set_congestion(&mut self, port: PortNo, congestion: Option<Arc<str>>) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.congestion = congestion;
        }
    }

    /// Records a QUIC port's connection state (`listPort` shows it).
    pub(crate) fn set_quic(&mut self, port: PortNo, quic: QuicStat) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.quic = Some(quic);
        }
    }

    /// Records that a port's link went down or came back. Going down forgets the stations
    /// learned on it: they may be anywhere by the time it returns.
    pub(crate) fn set_link(&mut self, port: PortNo, up: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.link_up = up;
            if !up {
                self.flushed(port);
            }
        }
    }

    /// Counts `n` TCP segments of a port that software GRO appended to an earlier one.
    pub(crate) fn count_gro_merged(&mut self, port: PortNo, n: u64) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.rx_gro_merged = p.stat.rx_gro_merged.saturating_add(n);
        }
    }

    /// Counts `n` frames a port's device or socket dropped before the switch read them.
    pub(crate) fn count_rx_dropped(&mut self, port: PortNo, n: u64) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.rx_dropped = p.stat.rx_dropped.saturating_add(n);
        }
    }

    /// A port's state and counters.
    pub(crate) fn port(&self, port: PortNo) -> Option<PortStat> {
        self.ports.get(&port).map(Port::stat)
    }

    /// All ports in number order.
    pub(crate) fn ports(&self) -> impl Iterator<Item = PortStat> + '_ {
        self.ports.values().map(Port::stat)
    }

    /// The port numbers in order.
    pub(crate) fn port_numbers(&self) -> impl Iterator<Item = PortNo> + '_ {
        self.ports.keys().copied()
    }

    /// Addresses port security binds to ports (expired ones not yet swept included).
    pub(crate) fn guard_len(&self) -> usize {
        self.guard.len()
    }

    /// Entries in the FDB (aged ones not yet swept included).
    pub(crate) fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    pub(crate) fn fdb_rows(&self, now: Instant) -> Vec<FdbRow> {
        self.fdb.rows(now)
    }

    /// Live FDB entries on `ports`, at most `max`, in no order (see [`Fdb::rows_of`]).
    pub(crate) fn fdb_rows_of(&self, ports: &[PortNo], max: usize, now: Instant) -> Vec<FdbRow> {
        self.fdb.rows_of(ports, max, now)
    }

    /// Drops aged-out FDB entries for good; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        self.guard.expire(now);
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
    ///
    /// # Errors
    ///
    /// As [`decide`](Self::decide).
    pub(crate) fn receive(
        &mut self,
        from: PortNo,
        frame: &Bytes,
        now: Instant,
    ) -> Result<(), FrameError> {
        let mut decisions = Decisions::default();
        self.decide(from, Frame::from(frame.clone()), now, &mut decisions)?;
        decisions.emit();
        Ok(())
    }

    /// Decides where one frame received on `from` goes, adding the decision to `out`.
    ///
    /// Learns the source, then chooses the one port the destination is known on, or floods
    /// to every other port for broadcast, multicast and unknown unicast. Never sends a frame
    /// back out of the port it came in on. Frames from unknown or shut ports go nowhere; a
    /// frame that is no Ethernet frame is an error (counted).
    ///
    /// # Errors
    ///
    /// [`FrameError`] if `frame` is too short for an Ethernet header (counted in the port's
    /// `rx_invalid`; nothing is decided).
    pub(crate) fn decide(
        &mut self,
        from: PortNo,
        frame: Frame,
        now: Instant,
        out: &mut Decisions<E>,
    ) -> Result<(), FrameError> {
        let Some(rx) = self.admit(from, &frame, now)? else {
            return Ok(());
        };
        if !self.learn(from, &rx, now) || !self.inspect(from, &rx, &frame, now) {
            return Ok(());
        }
        let start = out.start();
        self.choose_egress(from, &rx, now, out);
        if self.mirroring > 0 {
            self.mirror(from, &rx.policy, start, now, out);
        }
        out.decided(frame, now, start);
        Ok(())
    }

    /// Stage 1, admit: whether a frame received on `from` enters the switch — the port is
    /// known, not shut and not blocked by the loop guard; the frame is an Ethernet frame
    /// (else an error), within the maximum size, of the port's VLAN, within storm control and
    /// the port's `rate_in`. Counts it as received if so, and what it drops otherwise.
    fn admit(
        &mut self,
        from: PortNo,
        frame: &Frame,
        now: Instant,
    ) -> Result<Option<Admitted>, FrameError> {
        let Some(Port { stat, policer, .. }) = self.ports.get_mut(&from) else {
            return Ok(None);
        };
        if stat.shut {
            return Ok(None);
        }
        if stat.loop_blocked(now) {
            stat.loop_dropped += 1;
            return Ok(None);
        }
        let hdr = Header::parse(&frame.data).inspect_err(|_| stat.rx_invalid += 1)?;
        let finished = frame.finished_len();
        if !policer.fits(stat, finished.largest, self.limits.max_frame, now) {
            return Ok(None);
        }
        let vid = match stat.policy.vlan {
            Some(_) if hdr.tagged => {
                policer.tagged_on_access(stat, now);
                return Ok(None);
            }
            Some(v) => v,
            None => hdr.vid,
        };
        let len = frame.data.len();
        let pps = self.limits.storm_pps;
        // A unicast frame to a station the switch does not know is flooded like a broadcast.
        let flooded =
            pps != 0 && (hdr.dst.is_multicast() || self.fdb.lookup(vid, hdr.dst, now).is_none());
        if !policer.storm(stat, pps, flooded, now) || !policer.rate_in(stat, len, now) {
            return Ok(None);
        }
        stat.rx += 1;
        stat.rx_bytes += len as u64;
        // Cut short by its sender? Only plain frames: a super-frame's IP length is its
        // segments' business, and may be stale.
        if !frame.offload.is_gso()
            && let Ok(h) = wire::walk(&frame.data)
            && let Some(end) = h.ip_end()
            && end > len
        {
            policer.truncated(stat, len, end, now);
        }
        let policy = stat.policy;
        Ok(Some(Admitted {
            hdr,
            vid,
            policy,
            len,
            plain_len: finished.total,
        }))
    }

    /// Stage 2, learn: the frame's source address now lives on `from` (unless it is a group
    /// address, or the MAC limits refuse it); the observer hears of every change. False if
    /// the frame goes nowhere: port security dropped it (an untrusted port sent another
    /// port's station, or a station over its own limit), or the station's move tripped the
    /// loop guard and the port is blocked.
    fn learn(&mut self, from: PortNo, rx: &Admitted, now: Instant) -> bool {
        let (vid, mac) = (rx.vid, rx.hdr.src);
        if mac.is_multicast() {
            return true;
        }
        let how = rx.policy.learning();
        let mut learned = self.fdb.learn_as(vid, mac, from, how, now);
        if let Learned::Spoofed { owner } = learned
            && self.same_client(from, owner)
        {
            // The same client, connected again before its old connection timed out.
            let how = Learning {
                successor_of: Some(owner),
                ..how
            };
            learned = self.fdb.learn_as(vid, mac, from, how, now);
            self.guard.hand_over(mac, owner, from);
        }
        self.tell_observer(learned, vid, mac, from);
        let Some(Port { stat, policer, .. }) = self.ports.get_mut(&from) else {
            return true;
        };
        match learned {
            Learned::Refreshed => {}
            Learned::New => tracing::debug!(port = from, vid, %mac, "fdb learned"),
            Learned::Moved { from: old, home } => {
                tracing::debug!(port = from, old, vid, %mac, "fdb moved");
                // A station coming home is no sign of a loop through its home port: the
                // port it left, which took it over, is the one to suspect.
                if !home && policer.loop_suspected(self.limits.loop_moves, now) {
                    self.block_looping(from, old, vid, mac, now);
                    return false;
                }
            }
            Learned::Evicted { from: owner, .. } => policer.evicted(stat, owner, now),
            // It may have left another port on the way: forgotten there too (above).
            Learned::Refused => policer.refused(stat, &self.limits.macs, now),
            Learned::Spoofed { owner } => {
                tracing::debug!(port = from, owner, vid, %mac, "port security: station of another port");
                stat.guard.add(Rule::MacSpoof);
                return false;
            }
            Learned::OverPortLimit => {
                stat.guard.add(Rule::MaxMacs);
                return false;
            }
        }
        true
    }

    /// Stage 2b, port security past the Ethernet header ([`guard`]): a frame from an
    /// untrusted port is checked against its rules (false, counted, if one drops it); a frame
    /// from a trusted one is watched for the addresses it hands out or uses. Nothing to do
    /// while no port is untrusted.
    fn inspect(&mut self, from: PortNo, rx: &Admitted, frame: &Frame, now: Instant) -> bool {
        if self.untrusted == 0 {
            return true;
        }
        if rx.policy.is_trusted() {
            let fdb = &self.fdb;
            let locate = |vid, mac| fdb.lookup(vid, mac, now);
            self.guard
                .observe_trusted(from, rx.vid, &frame.data, locate, now);
            return true;
        }
        // A tag behind the port's own VLAN's (or behind the trunk's tag) would be judged in
        // one VLAN and take effect in another wherever the outer tag comes off.
        if wire::ethernet::inner(&frame.data).is_some_and(|(_, l3)| l3 > INNERMOST_ALLOWED) {
            if let Some(p) = self.ports.get_mut(&from) {
                p.stat.vlan_dropped += 1;
            }
            return false;
        }
        let Err(rule) = self
            .guard
            .check_untrusted(from, rx.vid, rx.hdr.src, &frame.data, now)
        else {
            return true;
        };
        if let Some(p) = self.ports.get_mut(&from) {
            p.stat.guard.add(rule);
        }
        tracing::debug!(
            port = from,
            rule = rule.as_str(),
            "port security dropped a frame"
        );
        false
    }

    /// Whether ports `a` and `b` are the same client's: the same address, and the same user
    /// proved by authentication (an anonymous client is nobody's: strangers share addresses
    /// behind a NAT).
    fn same_client(&self, a: PortNo, b: PortNo) -> bool {
        let (Some(a), Some(b)) = (self.ports.get(&a), self.ports.get(&b)) else {
            return false;
        };
        let (a, b) = (&a.stat, &b.stat);
        a.addr.is_some() && a.addr == b.addr && a.user.is_some() && a.user == b.user
    }

    /// Tells the observer of FDB changes what `learn` did with `mac` in `vid` on `port`.
    fn tell_observer(&mut self, learned: Learned, vid: u16, mac: Mac, port: PortNo) {
        let Some(o) = self.observer.as_mut() else {
            return;
        };
        match learned {
            Learned::Refreshed => {}
            Learned::New | Learned::Moved { .. } => o.learned(vid, mac, port),
            Learned::Evicted { victim, .. } => {
                o.forgotten(victim.0, victim.1);
                o.learned(vid, mac, port);
            }
            Learned::Refused => o.forgotten(vid, mac),
            // Nothing changed.
            Learned::Spoofed { .. } | Learned::OverPortLimit => {}
        }
    }

    /// Stage 3, choose egress: the port the destination is known on in the frame's VLAN
    /// (nowhere if that is `from`), or every port but `from` for broadcast, multicast and
    /// unknown unicast — each only if it takes the frame (see [`Port::target`]).
    fn choose_egress(&mut self, from: PortNo, rx: &Admitted, now: Instant, out: &mut Decisions<E>) {
        let known = if rx.hdr.dst.is_multicast() {
            None
        } else {
            self.fdb.lookup(rx.vid, rx.hdr.dst, now)
        };
        match known {
            // The destination sits behind the port the frame came from: filter it.
            Some(to) if to == from => {}
            Some(to) => {
                if let Some(t) = self.ports.get_mut(&to).and_then(|p| p.target(to, rx, now)) {
                    out.add(t);
                }
            }
            None => {
                for (&n, p) in &mut self.ports {
                    if n == from {
                        continue;
                    }
                    if let Some(t) = p.target(n, rx, now) {
                        out.add(t);
                    }
                }
            }
        }
    }

    /// Stage 4, mirror: adds the mirror ports' copies to the targets chosen since `start` —
    /// the frame as it came in for the mirror of `from` (whose policy is `policy`), as it
    /// goes out for each target's. A port that gets the frame anyway does not get it twice,
    /// and a frame never goes back to `from`.
    fn mirror(
        &self,
        from: PortNo,
        policy: &Policy,
        start: usize,
        now: Instant,
        out: &mut Decisions<E>,
    ) {
        // The ports chosen before any copy is added: the copies' own mirrors get none.
        let chosen = out.since(start).len();
        if let Some(m) = policy.mirror {
            self.add_copy(from, m, Edit::AsIs, start, now, out);
        }
        for i in 0..chosen {
            let chosen = &out.since(start)[i];
            let (port, edit) = (chosen.port, chosen.edit);
            if let Some(m) = self.ports.get(&port).and_then(|p| p.stat.policy.mirror) {
                self.add_copy(from, m, edit, start, now, out);
            }
        }
    }

    /// Adds mirror port `m` with `edit` to the targets chosen since `start`, unless it is
    /// `from`, among them already, or not open.
    fn add_copy(
        &self,
        from: PortNo,
        m: PortNo,
        edit: Edit,
        start: usize,
        now: Instant,
        out: &mut Decisions<E>,
    ) {
        if m == from || out.since(start).iter().any(|t| t.port == m) {
            return;
        }
        if let Some(p) = self.ports.get(&m).filter(|p| p.stat.open(now)) {
            out.add(Target {
                port: m,
                egress: p.egress.clone(),
                edit,
            });
        }
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
                target = %crate::base::escape::Esc(&p.stat.target),
                vid,
                %mac,
                from = old,
                moves_per_sec = self.limits.loop_moves,
                block_secs = block.as_secs(),
                "loop suspected: stations keep moving onto this port; port blocked for a while"
            );
        }
        // The loop's other ports saw the same moves: blocking one port broke it, so the
        // frames still on their way round must not block a second one.
        for (n, p) in self.ports.iter_mut() {
            if *n != port {
                p.policer.loop_broken(now);
            }
        }
        self.flushed(port);
    }
}
#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::switch::fdb::MacLimits;
    use crate::switch::frame::tests::frame;
    use crate::switch::guard::GuardCounters;
    use crate::wire::gso::VnetHdr;

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

    fn policy(sw: &mut Switch<Sink>, port: PortNo, f: impl FnOnce(&mut Policy)) {
        let mut p = sw.port(port).unwrap().policy;
        f(&mut p);
        sw.set_policy(port, p).unwrap();
    }

    /// The VLAN tag of the last frame port `i` (0-based) got, if tagged; its length.
    fn last(sinks: &[Sink], i: usize) -> (Option<u16>, usize) {
        let got = sinks[i].got.borrow();
        let f = got.last().expect("a frame");
        let h = Header::parse(f).unwrap();
        (h.tagged.then_some(h.vid), f.len())
    }

    #[test]
    fn access_ports_tag_into_trunks_and_untag_out_of_them() {
        // Ports 1 and 2: access VLAN 10; 3: access VLAN 20; 4: trunk.
        let (mut sw, sinks) = switch(4);
        policy(&mut sw, 1, |p| p.vlan = Some(10));
        policy(&mut sw, 2, |p| p.vlan = Some(10));
        policy(&mut sw, 3, |p| p.vlan = Some(20));
        let plain = frame(BCAST, A, None).len();
        rx(&mut sw, 1, frame(BCAST, A, None));
        // VLAN 10 only: port 2 untagged, the trunk tagged 10; never VLAN 20's port.
        assert_eq!(counts(&sinks), vec![0, 1, 0, 1]);
        assert_eq!(last(&sinks, 1), (None, plain));
        assert_eq!(last(&sinks, 3), (Some(10), plain + 4));
        assert_eq!(sw.fdb_rows(Instant::now())[0].vid, 10);
        // From the trunk, tagged 20: port 3 gets it untagged.
        rx(&mut sw, 4, frame(BCAST, B, Some(20)));
        assert_eq!(counts(&sinks), vec![0, 1, 1, 1]);
        assert_eq!(last(&sinks, 2), (None, plain));
        // Known unicast from the trunk in VLAN 10 to A: only port 1, untagged.
        rx(&mut sw, 4, frame(A, B, Some(10)));
        assert_eq!(counts(&sinks), vec![1, 1, 1, 1]);
        assert_eq!(last(&sinks, 0), (None, plain));
        // Untagged from the trunk (VLAN 0) reaches no access port.
        rx(&mut sw, 4, frame(BCAST, C, None));
        assert_eq!(counts(&sinks), vec![1, 1, 1, 1]);
        // Tagged frames on an access port are dropped and counted.
        rx(&mut sw, 1, frame(BCAST, A, Some(10)));
        assert_eq!(counts(&sinks), vec![1, 1, 1, 1]);
        assert_eq!(sw.port(1).unwrap().vlan_dropped, 1);
        // Trunk to trunk keeps the tag as it is.
        let (mut sw, sinks) = switch(2);
        rx(&mut sw, 1, frame(BCAST, A, Some(30)));
        assert_eq!(last(&sinks, 1), (Some(30), plain + 4));
    }

    #[test]
    fn vlan_out_of_range_and_bad_mirror_are_refused() {
        let (mut sw, _) = switch(2);
        for bad in [0, 4095] {
            let p = Policy {
                vlan: Some(bad),
                ..Policy::default()
            };
            assert_eq!(sw.set_policy(1, p), Err(PolicyError::Vlan(bad)));
        }
        for m in [1, 3] {
            let p = Policy {
                mirror: Some(m),
                ..Policy::default()
            };
            assert_eq!(sw.set_policy(1, p), Err(PolicyError::Mirror(m)));
        }
        assert_eq!(
            sw.set_policy(9, Policy::default()),
            Err(PolicyError::NoPort(9))
        );
    }

    #[test]
    fn isolated_ports_reach_only_the_others() {
        // 1 and 2 isolated clients, 3 the gateway.
        let (mut sw, sinks) = switch(3);
        policy(&mut sw, 1, |p| p.isolated = true);
        policy(&mut sw, 2, |p| p.isolated = true);
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 0, 1]);
        rx(&mut sw, 2, frame(BCAST, B, None));
        assert_eq!(counts(&sinks), vec![0, 0, 2]);
        // Known unicast between isolated ports goes nowhere; the gateway reaches both.
        rx(&mut sw, 1, frame(B, A, None));
        assert_eq!(counts(&sinks), vec![0, 0, 2]);
        rx(&mut sw, 3, frame(BCAST, C, None));
        assert_eq!(counts(&sinks), vec![1, 1, 2]);
        rx(&mut sw, 1, frame(C, A, None));
        assert_eq!(counts(&sinks), vec![1, 1, 3]);
    }

    #[test]
    fn split_horizon_between_mesh_ports() {
        // 1, 2: mesh links to other switches; 3: a local TAP.
        let (mut sw, sinks) = switch(3);
        policy(&mut sw, 1, |p| p.mesh = true);
        policy(&mut sw, 2, |p| p.mesh = true);
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 0, 1]);
        rx(&mut sw, 3, frame(BCAST, C, None));
        assert_eq!(counts(&sinks), vec![1, 1, 1]);
        // A known station behind one mesh port is not reached from the other.
        rx(&mut sw, 2, frame(A, B, None));
        assert_eq!(counts(&sinks), vec![1, 1, 1]);
    }

    #[test]
    fn mirror_gets_both_directions_once() {
        // Port 3 mirrors port 1; port 4 is a trunk.
        let (mut sw, sinks) = switch(4);
        policy(&mut sw, 1, |p| {
            p.mirror = Some(3);
            p.vlan = Some(10);
        });
        // Into port 1 (a flood that port 3 gets anyway: once, not twice).
        rx(&mut sw, 1, frame(BCAST, A, None));
        assert_eq!(counts(&sinks), vec![0, 1, 1, 1]);
        // Learn B on 2 (VLAN 0 from a trunk: not for port 1).
        rx(&mut sw, 2, frame(BCAST, B, Some(10)));
        assert_eq!(counts(&sinks), vec![1, 1, 2, 2]);
        // Unicast out of port 1: the mirror gets it as port 1 does (untagged).
        rx(&mut sw, 4, frame(A, C, Some(10)));
        assert_eq!(counts(&sinks), vec![2, 1, 3, 2]);
        assert_eq!(last(&sinks, 2), (None, frame(A, C, None).len()));
        // Unicast into port 1: the mirror gets it as it came.
        rx(&mut sw, 1, frame(B, A, None));
        assert_eq!(counts(&sinks), vec![2, 2, 4, 2]);
        assert_eq!(last(&sinks, 2), (None, frame(B, A, None).len()));
        // Mirror off; removing the mirror port clears it too.
        policy(&mut sw, 1, |p| p.mirror = None);
        rx(&mut sw, 1, frame(B, A, None));
        assert_eq!(counts(&sinks), vec![2, 3, 4, 2]);
        policy(&mut sw, 1, |p| p.mirror = Some(3));
        sw.remove_port(3);
        assert_eq!(sw.port(1).unwrap().policy.mirror, None);
        assert_eq!(sw.mirroring, 0);
    }

    /// A TCP/IPv4 super-frame: 54 bytes of headers, `payload` bytes in segments of `mss`.
    fn super_frame(payload: usize, mss: u16) -> Frame {
        let mut f = frame(BCAST, A, None);
        f.truncate(12);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&[
            0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f.resize(54 + payload, 0x5a);
        let offload = crate::wire::gso::VnetHdr {
            flags: crate::wire::gso::F_NEEDS_CSUM,
            gso_type: wire::gso::GSO_TCPV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        };
        Frame::new(Bytes::from(f), offload)
    }

    #[test]
    fn rate_out_counts_a_super_frame_as_the_segments_a_plain_port_gets() {
        let (mut sw, sinks) = switch(3);
        // 10 segments: 14,534 bytes whole, 10 × 54 + 14,480 = 15,020 once cut up.
        let sf = super_frame(14_480, 1448);
        assert_eq!(sf.finished_len().total, 15_020);
        // A burst between the two; nothing refills within the test.
        let rate = Some(Rate::new(8, 14_600));
        policy(&mut sw, 2, |p| p.rate_out = rate);
        policy(&mut sw, 3, |p| p.rate_out = rate);
        sw.set_super_frames(3, true);
        let mut out = Decisions::default();
        sw.decide(1, sf, Instant::now(), &mut out).unwrap();
        out.emit();
        // Port 2 takes plain frames: over its burst. Port 3 takes the super-frame whole.
        assert_eq!(counts(&sinks), vec![0, 0, 1]);
        assert_eq!(sw.port(2).unwrap().rate_out_dropped, 1);
        assert_eq!(sw.port(3).unwrap().rate_out_dropped, 0);
    }

    #[test]
    fn rate_limits_drop_and_count_over_the_burst() {
        let (mut sw, sinks) = switch(2);
        let len = frame(BCAST, A, None).len() as u64;
        // 8 bit/s: nothing refills within the test; a burst of 10 frames.
        let rate = Some(Rate::new(8, 10 * len));
        policy(&mut sw, 1, |p| p.rate_in = rate);
        let now = Instant::now();
        for _ in 0..15 {
            sw.receive(1, &Bytes::from(frame(BCAST, A, None)), now)
                .unwrap();
        }
        assert_eq!(counts(&sinks), vec![0, 10]);
        assert_eq!(sw.port(1).unwrap().rate_in_dropped, 5);
        policy(&mut sw, 1, |p| p.rate_in = None);
        policy(&mut sw, 2, |p| p.rate_out = rate);
        for _ in 0..15 {
            sw.receive(1, &Bytes::from(frame(BCAST, A, None)), now)
                .unwrap();
        }
        assert_eq!(counts(&sinks), vec![0, 20]);
        assert_eq!(sw.port(2).unwrap().rate_out_dropped, 5);
        // A second later the bucket holds one more byte: still not a frame.
        let later = now + Duration::from_secs(1);
        sw.receive(1, &Bytes::from(frame(BCAST, A, None)), later)
            .unwrap();
        assert_eq!(counts(&sinks), vec![0, 20]);
        // The default burst passes two of the largest super-frames.
        assert_eq!(Rate::new(1_000_000, 0).burst, Rate::MIN_BURST);
        assert_eq!(Rate::new(10_000_000_000, 0).burst, 312_500_000);
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
    fn storm_control_caps_flooding_per_port() {
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
        // …known unicast is not limited…
        rx(&mut sw, 2, frame(BCAST, B, None));
        for _ in 0..50 {
            sw.receive(1, &Bytes::from(frame(B, A, None)), t0).unwrap();
        }
        assert_eq!(counts(&sinks)[1], 60);
        // …unicast to a station nobody knows is flooded, so it is (the bucket is empty)…
        for _ in 0..20 {
            sw.receive(1, &Bytes::from(frame(C, A, None)), t0).unwrap();
        }
        assert_eq!(counts(&sinks)[1], 60);
        assert_eq!(sw.port(1).unwrap().storm_dropped, 110);
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
    fn truncated_ip_frames_are_counted_and_still_forwarded() {
        let mut sw = Switch::new(Duration::from_secs(300));
        let sink = Sink::default();
        sw.add_port(PortKind::Tap, "t".into(), Sink::default());
        sw.add_port(PortKind::Tap, "t".into(), sink.clone());
        // An IPv4 header whose total length is `total`, in a 60-byte frame.
        let ipv4 = |total: u16| {
            let mut f = frame(BCAST, A, None);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            Bytes::from(f)
        };
        let now = Instant::now();
        // 1,500 bytes said, 46 there: cut short, counted, forwarded.
        sw.receive(1, &ipv4(1500), now).unwrap();
        // 28 said, 46 there (Ethernet padding): whole.
        sw.receive(1, &ipv4(28), now).unwrap();
        // Not IP at all (a zero version): not looked at.
        rx(&mut sw, 1, frame(BCAST, A, None));
        // A super-frame's IP length is its segments' business.
        let gso = VnetHdr {
            gso_type: wire::gso::GSO_TCPV4,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let mut out = Decisions::default();
        sw.decide(1, Frame::new(ipv4(3000), gso), now, &mut out)
            .unwrap();
        out.emit();
        assert_eq!(sink.got.borrow().len(), 4);
        assert_eq!(sw.port(1).unwrap().rx_truncated, 1);
        assert_eq!(sw.port(1).unwrap().rx, 4);
    }

    #[test]
    fn drops_before_the_switch_add_up_per_port_and_a_gone_port_is_ignored() {
        let (mut sw, _sinks) = switch(2);
        sw.count_rx_dropped(1, 3);
        sw.count_rx_dropped(1, 4);
        sw.count_rx_dropped(9, 5);
        let got: Vec<u64> = sw.ports().map(|p| p.rx_dropped).collect();
        assert_eq!(got, [7, 0]);
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
        // Frames still on their way round the broken loop (here B's, moving onto the other
        // port) do not block that one too: its count started again.
        let other = 5 - b;
        let from_b = Bytes::from(frame(BCAST, B, None));
        for _ in 0..3 {
            sw.receive(1, &from_b, t0 + Duration::from_secs(3)).unwrap();
            sw.receive(other, &from_b, t0 + Duration::from_secs(3))
                .unwrap();
        }
        assert!(
            !sw.port(other)
                .unwrap()
                .loop_blocked(t0 + Duration::from_secs(3))
        );
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
    fn the_loop_guard_blames_the_port_that_takes_a_station_over() {
        let limits = Limits {
            loop_moves: 3,
            loop_block: Duration::from_secs(30),
            ..Limits::default()
        };
        let mut sw = Switch::with_limits(Duration::from_secs(300), limits);
        let sinks: Vec<Sink> = (0..7).map(|_| Sink::default()).collect();
        for s in &sinks {
            sw.add_port(PortKind::Server, "s".into(), s.clone());
        }
        let t0 = Instant::now();
        let from_a = Bytes::from(frame(BCAST, A, None));
        sw.receive(1, &from_a, t0).unwrap();
        // Six ports each claim A once, and A's own port takes it back every time.
        for port in 2..=7 {
            sw.receive(port, &from_a, t0).unwrap();
            sw.receive(1, &from_a, t0).unwrap();
        }
        assert!(sw.ports().all(|p| p.loop_blocks == 0));
        assert_eq!(sw.fdb.lookup(0, Mac(A), t0), Some(1));
    }

    fn isolated() -> Policy {
        Policy {
            isolated: true,
            ..Policy::default()
        }
    }

    #[test]
    fn an_untrusted_port_cannot_take_over_a_station() {
        let (mut sw, sinks) = switch(3);
        sw.set_policy(2, isolated()).unwrap();
        sw.set_policy(3, isolated()).unwrap();
        let t0 = Instant::now();
        sw.receive(1, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        sw.receive(3, &Bytes::from(frame(BCAST, C, None)), t0)
            .unwrap();
        let before = counts(&sinks);
        // Port 2 claims the trusted port's station, then the other client's.
        for src in [A, C] {
            sw.receive(2, &Bytes::from(frame(B, src, None)), t0)
                .unwrap();
        }
        assert_eq!(counts(&sinks), before, "dropped");
        assert_eq!(sw.port(2).unwrap().guard.get(Rule::MacSpoof), 2);
        assert_eq!(sw.fdb.lookup(0, Mac(A), t0), Some(1));
        assert_eq!(sw.fdb.lookup(0, Mac(C), t0), Some(3));
        // Unless told to trust it.
        let trusted = Policy {
            trusted: Some(true),
            ..isolated()
        };
        sw.set_policy(2, trusted).unwrap();
        sw.receive(2, &Bytes::from(frame(B, A, None)), t0).unwrap();
        assert_eq!(sw.fdb.lookup(0, Mac(A), t0), Some(2));
    }

    #[test]
    fn an_untrusted_port_has_few_stations_unless_told_otherwise() {
        let (mut sw, sinks) = switch(2);
        sw.set_policy(2, isolated()).unwrap();
        let t0 = Instant::now();
        let n = Policy::UNTRUSTED_MAX_MACS as u8;
        for i in 0..n + 3 {
            let src = [2, 0, 0, 0, 1, i];
            sw.receive(2, &Bytes::from(frame(BCAST, src, None)), t0)
                .unwrap();
        }
        assert_eq!(counts(&sinks)[0], usize::from(n));
        assert_eq!(sw.port(2).unwrap().guard.get(Rule::MaxMacs), 3);
        // `max_macs: 0` lifts the port's own limit.
        let open = Policy {
            max_macs: Some(0),
            ..isolated()
        };
        sw.set_policy(2, open).unwrap();
        sw.receive(2, &Bytes::from(frame(BCAST, [2, 0, 0, 0, 2, 0], None)), t0)
            .unwrap();
        assert_eq!(counts(&sinks)[0], usize::from(n) + 1);
    }

    #[test]
    fn an_untrusted_port_claims_only_its_own_leased_address() {
        use crate::switch::guard::tests::{ack, arp};
        let (mut sw, sinks) = switch(3);
        sw.set_policy(2, isolated()).unwrap();
        sw.set_policy(3, isolated()).unwrap();
        let t0 = Instant::now();
        let (vm1, vm2) = (Mac(A), Mac(C));
        // Both VMs speak; the gateway (port 1) leases 192.0.2.10 to vm1.
        sw.receive(2, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        sw.receive(3, &Bytes::from(frame(BCAST, C, None)), t0)
            .unwrap();
        sw.receive(1, &Bytes::from(ack(vm1, [192, 0, 2, 10], &[])), t0)
            .unwrap();
        let gw = counts(&sinks)[0];
        // vm2 says 192.0.2.10 is at vm2: dropped; vm1 says it: passes.
        sw.receive(3, &Bytes::from(arp(vm2, false, vm2, [192, 0, 2, 10])), t0)
            .unwrap();
        assert_eq!(counts(&sinks)[0], gw);
        assert_eq!(sw.port(3).unwrap().guard.get(Rule::Arp), 1);
        sw.receive(2, &Bytes::from(arp(vm1, false, vm1, [192, 0, 2, 10])), t0)
            .unwrap();
        assert_eq!(counts(&sinks)[0], gw + 1);
        assert_eq!(sw.guard_len(), 1);
        // Gone with vm1's port.
        sw.remove_port(2);
        assert_eq!(sw.guard_len(), 0);
    }

    #[test]
    fn the_same_client_connected_again_takes_its_station_and_lease() {
        use crate::switch::guard::tests::{ack, arp};
        let mut sw = Switch::new(Duration::from_secs(300));
        let sinks: Vec<Sink> = (0..4).map(|_| Sink::default()).collect();
        let client = |user: &str| Origin {
            addr: Some("192.0.2.50".parse().unwrap()),
            user: Some(user.into()),
            path: None,
            policy: isolated(),
        };
        sw.add_port(PortKind::Tap, "gw".into(), sinks[0].clone());
        let old = sw.add_port_from(
            PortKind::Server,
            "c".into(),
            client("alice"),
            sinks[1].clone(),
        );
        let again = sw.add_port_from(
            PortKind::Server,
            "c".into(),
            client("alice"),
            sinks[2].clone(),
        );
        let other = sw.add_port_from(
            PortKind::Server,
            "c".into(),
            client("bob"),
            sinks[3].clone(),
        );
        let t0 = Instant::now();
        sw.receive(old, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        sw.receive(1, &Bytes::from(ack(Mac(A), [192, 0, 2, 10], &[])), t0)
            .unwrap();
        // Bob, from the same address, may not; alice, connected again, may.
        sw.receive(other, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        assert_eq!(sw.port(other).unwrap().guard.get(Rule::MacSpoof), 1);
        sw.receive(again, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        assert_eq!(sw.fdb.lookup(0, Mac(A), t0), Some(again));
        let announce = Bytes::from(arp(Mac(A), false, Mac(A), [192, 0, 2, 10]));
        sw.receive(again, &announce, t0).unwrap();
        assert_eq!(sw.port(again).unwrap().guard, GuardCounters::default());
    }

    #[test]
    fn an_untrusted_trunk_takes_one_tag_not_two() {
        let (mut sw, sinks) = switch(2);
        sw.set_policy(2, isolated()).unwrap();
        let t0 = Instant::now();
        let one = frame(BCAST, A, Some(10));
        let mut two = one.clone();
        two.splice(16..16, [0x81, 0x00, 0x00, 20]);
        sw.receive(2, &Bytes::from(one), t0).unwrap();
        sw.receive(2, &Bytes::from(two), t0).unwrap();
        assert_eq!(counts(&sinks)[0], 1);
        assert_eq!(sw.port(2).unwrap().vlan_dropped, 1);
    }

    #[test]
    fn new_limits_apply_to_the_next_frame() {
        let (mut sw, sinks) = switch(2);
        let t0 = Instant::now();
        sw.receive(1, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        sw.set_limits(Limits {
            max_frame: 20,
            ..sw.limits()
        });
        sw.receive(1, &Bytes::from(frame(BCAST, A, None)), t0)
            .unwrap();
        assert_eq!(counts(&sinks)[1], 1);
        assert_eq!(sw.port(1).unwrap().rx_oversize, 1);
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

    /// Ports 1, 2: access VLAN 10, port 1 mirrored to 4; 3: trunk; 4: a plain port.
    fn mixed() -> (Switch<Sink>, Vec<Sink>) {
        let (mut sw, sinks) = switch(4);
        policy(&mut sw, 1, |p| {
            p.vlan = Some(10);
            p.mirror = Some(4);
        });
        policy(&mut sw, 2, |p| p.vlan = Some(10));
        (sw, sinks)
    }

    #[test]
    fn a_batch_decided_at_once_goes_where_its_frames_go_one_by_one() {
        let traffic = [
            (1, frame(BCAST, A, None)),
            (3, frame(A, B, Some(10))),
            (3, frame(BCAST, C, Some(10))),
            (1, frame(C, A, None)),
            (2, frame([2, 0, 0, 0, 0, 0xd], [2, 0, 0, 0, 0, 0xe], None)),
            (4, frame(BCAST, [2, 0, 0, 0, 0, 0xf], None)),
            (1, vec![0; 10]),
            (1, frame(BCAST, A, Some(10))),
        ];
        let now = Instant::now();
        let (mut one_by_one, expected) = mixed();
        for (port, f) in &traffic {
            let _ = one_by_one.receive(*port, &Bytes::from(f.clone()), now);
        }
        let (mut batched, got) = mixed();
        // The same buffer for two batches: the first one's emission leaves it empty.
        let mut decisions = Decisions::default();
        for half in traffic.chunks(4) {
            for (port, f) in half {
                let _ = batched.decide(
                    *port,
                    Frame::from(Bytes::from(f.clone())),
                    now,
                    &mut decisions,
                );
            }
            assert!(decisions.fanout() > 0);
            decisions.emit();
            assert_eq!(decisions.fanout(), 0);
        }
        for (e, g) in expected.iter().zip(&got) {
            assert_eq!(*e.got.borrow(), *g.got.borrow());
        }
        assert_eq!(counts(&got), vec![3, 2, 4, 5]);
        let stats = |sw: &Switch<Sink>| sw.ports().collect::<Vec<_>>();
        assert_eq!(stats(&one_by_one), stats(&batched));
    }
}
