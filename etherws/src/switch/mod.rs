//! The switch core: ports, counters and the forwarding decision.
//!
//! It knows nothing about sockets. A port is a number, a description and an [`Egress`] — a
//! non-blocking "offer this frame" — so a slow or dead peer can only ever fill its own queue:
//! when the offer is refused the frame is dropped and counted against that port alone. The
//! core is driven by whoever owns it (one `Mutex` in the daemon, plain calls in the tests).

pub(crate) mod fdb;
pub(crate) mod frame;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::switch::fdb::{Fdb, FdbRow, Learned, MacLimits, PortNo};
use crate::switch::frame::{Frame, FrameError, Header, Mac};

/// Where a port's outgoing frames go. `offer` must not block: it queues the frame or refuses.
///
/// The switch decides where a frame goes under its lock and offers it after: an egress is
/// cloned into the decision, and counts what it was offered itself.
pub(crate) trait Egress: Clone {
    /// Queues `frame` (received at `now`) for transmission; false if it had to be dropped
    /// (queue full or closed). Counts either outcome.
    fn offer(&self, frame: &Frame, now: Instant) -> bool;
    /// What was offered so far.
    fn counters(&self) -> TxCounters;
}

/// A port's transmit counters, kept by its [`Egress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TxCounters {
    /// Frames queued for transmission.
    pub(crate) tx: u64,
    /// Frames refused: the port's queue or the switch's queue budget was full.
    pub(crate) dropped: u64,
    /// Frames queued but dropped because they waited too long to be sent.
    pub(crate) expired: u64,
    /// Bytes in the queue now.
    pub(crate) queued_bytes: u64,
}

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

/// The kinds of port etherws 1.3 knows; the names are those of its JSON-RPC `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PortKind::Server => "server",
            PortKind::Client => "client",
            PortKind::Tap => "tap",
            PortKind::Netdev => "netdev",
        }
    }

    /// Only ports backed by a kernel interface have an address, netmask and MTU to set.
    pub(crate) fn has_interface(self) -> bool {
        matches!(self, PortKind::Tap | PortKind::Netdev)
    }
}

/// A port's counters and state as `listPort` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortStat {
    pub(crate) port: PortNo,
    pub(crate) kind: PortKind,
    /// TAP or interface name, WebSocket URL, or the peer's `address:port`.
    pub(crate) target: Arc<str>,
    pub(crate) shut: bool,
    /// False while the port's link is down (a client port reconnecting): nothing is sent to it.
    pub(crate) link_up: bool,
    /// Frames received from this port and switched.
    pub(crate) rx: u64,
    /// Frames queued for transmission on this port.
    pub(crate) tx: u64,
    /// Frames received from this port that were not Ethernet frames (runts).
    pub(crate) rx_invalid: u64,
    /// Frames received from this port that were larger than the switch allows.
    pub(crate) rx_oversize: u64,
    /// Broadcast/multicast frames from this port dropped by storm control.
    pub(crate) storm_dropped: u64,
    /// Frames whose source address was not learned because of the MAC limits.
    pub(crate) macs_refused: u64,
    /// Frames meant for this port but dropped because its queue (or the switch's budget for
    /// all queues) was full.
    pub(crate) tx_dropped: u64,
    /// Frames queued for this port but dropped because they waited too long in the queue.
    pub(crate) tx_expired: u64,
    /// Bytes waiting in this port's queue.
    pub(crate) queued_bytes: u64,
    /// The port exchanges super-frames with its device or peer (offloads negotiated).
    pub(crate) super_frames: bool,
    /// The client address of an incoming WebSocket connection (its stations count against it).
    pub(crate) addr: Option<IpAddr>,
    /// Who authenticated the port's peer: htpasswd user or client certificate name.
    pub(crate) user: Option<Arc<str>>,
    /// Blocked by the loop guard until then: it neither receives nor sends meanwhile.
    pub(crate) loop_blocked_until: Option<Instant>,
    /// Times the loop guard blocked this port.
    pub(crate) loop_blocks: u64,
    /// Frames received from this port and dropped while it was blocked.
    pub(crate) loop_dropped: u64,
    /// VLAN, isolation, mesh, mirror and rate limits.
    pub(crate) policy: Policy,
    /// The WebSocket path a server port's client came in on.
    pub(crate) path: Option<Arc<str>>,
    /// Tagged frames received on an access port, dropped.
    pub(crate) vlan_dropped: u64,
    /// Frames received from this port over its `rate_in`, dropped.
    pub(crate) rate_in_dropped: u64,
    /// Frames meant for this port over its `rate_out`, dropped.
    pub(crate) rate_out_dropped: u64,
}

impl PortStat {
    /// True while the loop guard blocks the port.
    pub(crate) fn loop_blocked(&self, now: Instant) -> bool {
        self.loop_blocked_until.is_some_and(|t| now < t)
    }
}

/// Who connected a port and what it starts with: the client's address, its name if it
/// authenticated, the WebSocket path it came in on, and the policy those give it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) addr: Option<IpAddr>,
    pub(crate) user: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) policy: Policy,
}

/// How a port takes part in switching beyond 1.3's `shut`: its VLAN, whom it may talk to, where
/// copies of its frames go and how fast it may send and receive. Set by `setPort`, by the
/// WebSocket path a client came in on, by the user it authenticated as, or in the
/// configuration file; all off by default (a trunk that talks to everyone, as in 1.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Access VLAN: untagged frames in belong to it, frames out leave untagged, tagged frames in
    /// are dropped. `None`: a trunk (tags kept as they are).
    pub(crate) vlan: Option<u16>,
    /// Exchanges frames only with ports that are not isolated (private VLAN: the clients of a
    /// shared relay reach its gateway, never each other).
    pub(crate) isolated: bool,
    /// A frame that came in on a mesh port is never sent out of another one (split horizon):
    /// switches joined in a full mesh are one segment without a loop.
    pub(crate) mesh: bool,
    /// Every frame into and out of this port is copied to that port too.
    pub(crate) mirror: Option<PortNo>,
    /// Limit on the frames received from the port.
    pub(crate) rate_in: Option<Rate>,
    /// Limit on the frames sent out of the port.
    pub(crate) rate_out: Option<Rate>,
}

impl Policy {
    /// True when the port's frames must all pass the switch core: the kernel's datapath
    /// (eBPF offload) knows none of these rules.
    pub(crate) fn needs_core(&self) -> bool {
        *self != Policy::default()
    }
}

/// Why a [`Policy`] cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    #[error("no such port: {0}")]
    NoPort(PortNo),
    #[error("VLAN must be 1 to 4094 (0 for a trunk), not {0}")]
    Vlan(u16),
    #[error("no such port to mirror to: {0} (another existing port)")]
    Mirror(PortNo),
}

/// A byte-rate limit: a token bucket refilled at `bits_per_sec`, holding `burst` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) bits_per_sec: u64,
    /// Bytes that may pass at once after a quiet period; at least one largest frame.
    pub(crate) burst: u64,
}

impl Rate {
    /// The smallest default burst: two of the largest super-frames, so that they pass at all.
    pub(crate) const MIN_BURST: u64 = 128 * 1024;

    /// A limit of `bits_per_sec` with `burst` bytes (0: a quarter of a second's worth, at least
    /// [`Rate::MIN_BURST`]: a policer with less makes TCP back off to about half the rate; with
    /// this, iperf3 over TCP gets within 10 % of it).
    pub(crate) fn new(bits_per_sec: u64, burst: u64) -> Rate {
        let burst = if burst == 0 {
            (bits_per_sec / 8 / 4).max(Rate::MIN_BURST)
        } else {
            burst
        };
        Rate {
            bits_per_sec,
            burst,
        }
    }

    fn bytes_per_sec(&self) -> f64 {
        self.bits_per_sec as f64 / 8.0
    }
}

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

struct Port<E> {
    stat: PortStat,
    egress: E,
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

    /// Whether a frame in VLAN `vid` from a port with policy `from` may leave by this port,
    /// and how: VLAN membership, isolation and split horizon.
    fn edit_for(&self, from: &Policy, vid: u16) -> Option<Edit> {
        let to = &self.stat.policy;
        if (from.isolated && to.isolated) || (from.mesh && to.mesh) {
            return None;
        }
        match (to.vlan, from.vlan) {
            (Some(v), _) if v != vid => None,
            // Into an access port: untagged (a trunk's frame loses its tag).
            (Some(_), Some(_)) => Some(Edit::AsIs),
            (Some(_), None) => Some(Edit::Untag),
            // From an access port into a trunk: tagged with the access VLAN.
            (None, Some(v)) => Some(Edit::Tag(v)),
            (None, None) => Some(Edit::AsIs),
        }
    }

    /// Spends `len` bytes of the port's `rate_out`; false (counted) if over it.
    fn allow_out(&mut self, len: usize, now: Instant) -> bool {
        let (Some(rate), Some(bucket)) = (self.stat.policy.rate_out, self.rate_out.as_mut()) else {
            return true;
        };
        if bucket.take_bytes(&rate, len, now) {
            true
        } else {
            self.stat.rate_out_dropped += 1;
            false
        }
    }
}

/// What a frame needs before it leaves by one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    AsIs,
    /// Push a VLAN tag (from an access port into a trunk).
    Tag(u16),
    /// Pop the VLAN tag (from a trunk into an access port).
    Untag,
}

/// Where one received frame goes: decided under the switch's lock, carried out after it by
/// [`Forward::emit`], so the lock is never held while frames are offered to queues.
#[must_use = "a decision does nothing until emitted"]
pub(crate) struct Forward<E> {
    frame: Frame,
    now: Instant,
    to: Targets<E>,
}

enum Targets<E> {
    Nowhere,
    One(PortNo, E, Edit),
    Many(Vec<(PortNo, E, Edit)>),
}

impl<E: Egress> Forward<E> {
    /// How many ports the frame goes to.
    pub(crate) fn fanout(&self) -> usize {
        match &self.to {
            Targets::Nowhere => 0,
            Targets::One(..) => 1,
            Targets::Many(list) => list.len(),
        }
    }

    /// Offers the frame to each chosen port's egress (which counts what it takes or drops),
    /// tagged or untagged as that port wants: each variant is made once, after the lock.
    pub(crate) fn emit(self) {
        let (frame, now) = (&self.frame, self.now);
        match &self.to {
            Targets::Nowhere => {}
            Targets::One(_, e, edit) => {
                e.offer(&edited(frame, *edit), now);
            }
            Targets::Many(es) => {
                let (mut tagged, mut untagged) = (None, None);
                for (_, e, edit) in es {
                    let f = match edit {
                        Edit::AsIs => frame,
                        Edit::Tag(v) => &*tagged.get_or_insert_with(|| frame.with_tag(*v)),
                        Edit::Untag => &*untagged.get_or_insert_with(|| frame.without_tag()),
                    };
                    e.offer(f, now);
                }
            }
        }
    }
}

/// `frame` as one port wants it.
fn edited(frame: &Frame, edit: Edit) -> std::borrow::Cow<'_, Frame> {
    match edit {
        Edit::AsIs => std::borrow::Cow::Borrowed(frame),
        Edit::Tag(v) => std::borrow::Cow::Owned(frame.with_tag(v)),
        Edit::Untag => std::borrow::Cow::Owned(frame.without_tag()),
    }
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
        }
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
        let Origin {
            addr,
            user,
            path,
            policy,
        } = origin;
        if let Some(addr) = addr {
            self.fdb.set_owner(port, addr);
        }
        let stat = PortStat {
            port,
            kind,
            target: target.into(),
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
            user: user.map(Into::into),
            loop_blocked_until: None,
            loop_blocks: 0,
            loop_dropped: 0,
            policy: Policy::default(),
            path: path.map(Into::into),
            vlan_dropped: 0,
            rate_in_dropped: 0,
            rate_out_dropped: 0,
        };
        let now = Instant::now();
        self.ports.insert(
            port,
            Port {
                stat,
                egress,
                storm: Bucket::full(f64::from(self.limits.storm_pps), now),
                rate_in: None,
                rate_out: None,
                moves_in: PerSecond { start: now, n: 0 },
                warn_storm: Warn::default(),
                warn_macs: Warn::default(),
                warn_oversize: Warn::default(),
                warn_evict: Warn::default(),
                warn_vlan: Warn::default(),
            },
        );
        if policy != Policy::default() {
            if let Err(e) = self.set_policy(port, policy) {
                tracing::warn!(port, "port policy not applied: {e}");
            }
        }
        port
    }

    /// Sets a port's [`Policy`]. Changing the VLAN forgets the stations learned on the port
    /// (they were learned in the old one); a mirror must name another existing port.
    pub(crate) fn set_policy(
        &mut self,
        port: PortNo,
        policy: Policy,
    ) -> Result<PortStat, PolicyError> {
        if let Some(v) = policy.vlan {
            if !(1..=4094).contains(&v) {
                return Err(PolicyError::Vlan(v));
            }
        }
        if let Some(m) = policy.mirror {
            if m == port || !self.ports.contains_key(&m) {
                return Err(PolicyError::Mirror(m));
            }
        }
        let now = Instant::now();
        let p = self.ports.get_mut(&port).ok_or(PolicyError::NoPort(port))?;
        let old = p.stat.policy;
        p.stat.policy = policy;
        if old.rate_in != policy.rate_in {
            p.rate_in = policy.rate_in.map(|r| Bucket::full(r.burst as f64, now));
        }
        if old.rate_out != policy.rate_out {
            p.rate_out = policy.rate_out.map(|r| Bucket::full(r.burst as f64, now));
        }
        let stat = p.stat();
        self.mirroring = self.mirroring + usize::from(policy.mirror.is_some())
            - usize::from(old.mirror.is_some());
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
        for p in self.ports.values_mut() {
            if p.stat.policy.mirror == Some(port) {
                p.stat.policy.mirror = None;
                self.mirroring -= 1;
            }
        }
        self.flushed(port);
        self.fdb.forget_port(port);
        Some(removed.stat)
    }

    /// Shuts a port (it neither receives nor sends, its counters stop) or brings it back.
    pub(crate) fn set_shut(&mut self, port: PortNo, shut: bool) -> Option<PortStat> {
        let p = self.ports.get_mut(&port)?;
        p.stat.shut = shut;
        Some(p.stat.clone())
    }

    /// Records whether a port exchanges super-frames with its device or peer.
    pub(crate) fn set_super_frames(&mut self, port: PortNo, on: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stat.super_frames = on;
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

    /// Entries in the FDB (aged ones not yet swept included).
    pub(crate) fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    pub(crate) fn fdb_rows(&self, now: Instant) -> Vec<FdbRow> {
        self.fdb.rows(now)
    }

    /// Drops aged-out FDB entries for good; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
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
    pub(crate) fn receive(
        &mut self,
        from: PortNo,
        frame: &Bytes,
        now: Instant,
    ) -> Result<(), FrameError> {
        self.decide(from, Frame::from(frame.clone()), now)
            .map(Forward::emit)
    }

    /// Decides where one frame received on `from` goes.
    ///
    /// Learns the source, then chooses the one port the destination is known on, or floods
    /// to every other port for broadcast, multicast and unknown unicast. Never sends a frame
    /// back out of the port it came in on. Frames from unknown or shut ports go nowhere.
    pub(crate) fn decide(
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
        // The frame's VLAN: an access port's own (its frames come untagged), the tag's on a trunk.
        let policy = src_port.stat.policy;
        let vid = match policy.vlan {
            Some(_) if hdr.tagged => {
                src_port.stat.vlan_dropped += 1;
                if let Some(n) = src_port.warn_vlan.hit(now) {
                    tracing::warn!(
                        port = from,
                        dropped = n,
                        "tagged frames received on an access port dropped"
                    );
                }
                return Ok(nowhere);
            }
            Some(v) => v,
            None => hdr.vid,
        };
        // Storm control: before learning, so a storm of made-up sources teaches nothing.
        let rate = self.limits.storm_pps;
        if rate > 0 && hdr.dst.is_multicast() && !src_port.storm.take_frame(rate, now) {
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
        let len = frame.data.len();
        if let (Some(rate), Some(bucket)) = (policy.rate_in, src_port.rate_in.as_mut()) {
            if !bucket.take_bytes(&rate, len, now) {
                src_port.stat.rate_in_dropped += 1;
                return Ok(nowhere);
            }
        }
        src_port.stat.rx += 1;

        if !hdr.src.is_multicast() {
            match self.fdb.learn(vid, hdr.src, from, now) {
                Learned::Refreshed => {}
                Learned::New => {
                    tracing::debug!(port = from, vid = vid, mac = %hdr.src, "fdb learned");
                    if let Some(o) = self.observer.as_mut() {
                        o.learned(vid, hdr.src, from);
                    }
                }
                Learned::Moved { from: old } => {
                    tracing::debug!(port = from, old, vid = vid, mac = %hdr.src, "fdb moved");
                    if let Some(o) = self.observer.as_mut() {
                        o.learned(vid, hdr.src, from);
                    }
                    let limit = self.limits.loop_moves;
                    if limit > 0 && src_port.moves_in.hit(now) >= limit {
                        self.block_looping(from, old, vid, hdr.src, now);
                        return Ok(nowhere);
                    }
                }
                Learned::Evicted {
                    victim,
                    from: owner,
                } => {
                    if let Some(o) = self.observer.as_mut() {
                        o.forgotten(victim.0, victim.1);
                        o.learned(vid, hdr.src, from);
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
                        o.forgotten(vid, hdr.src);
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
            self.fdb.lookup(vid, hdr.dst, now)
        };
        let to = match known {
            // The destination sits behind the port the frame came from: filter it.
            Some(to) if to == from => Targets::Nowhere,
            Some(to) => match self.ports.get_mut(&to) {
                Some(p) if p.open(now) => match p.edit_for(&policy, vid) {
                    Some(edit) if p.allow_out(len, now) => Targets::One(to, p.egress.clone(), edit),
                    _ => Targets::Nowhere,
                },
                _ => Targets::Nowhere,
            },
            None => Targets::Many(
                self.ports
                    .iter_mut()
                    .filter(|(n, p)| **n != from && p.open(now))
                    .filter_map(|(n, p)| {
                        let edit = p.edit_for(&policy, vid)?;
                        p.allow_out(len, now).then(|| (*n, p.egress.clone(), edit))
                    })
                    .collect(),
            ),
        };
        let to = if self.mirroring > 0 {
            self.with_mirrors(from, &policy, to, now)
        } else {
            to
        };
        Ok(Forward { to, ..nowhere })
    }

    /// Adds the mirror ports' copies to a decision: the frame as it came in for the source
    /// port's mirror, as it goes out for each destination's. A port that gets the frame anyway
    /// does not get it twice.
    fn with_mirrors(
        &self,
        from: PortNo,
        policy: &Policy,
        to: Targets<E>,
        now: Instant,
    ) -> Targets<E> {
        let mut list = match to {
            Targets::Nowhere => Vec::new(),
            Targets::One(n, e, edit) => vec![(n, e, edit)],
            Targets::Many(list) => list,
        };
        let mut copies: Vec<(PortNo, Edit)> = Vec::new();
        if let Some(m) = policy.mirror {
            copies.push((m, Edit::AsIs));
        }
        for (n, _, edit) in &list {
            if let Some(m) = self.ports.get(n).and_then(|p| p.stat.policy.mirror) {
                copies.push((m, *edit));
            }
        }
        for (m, edit) in copies {
            if m == from || list.iter().any(|(n, _, _)| *n == m) {
                continue;
            }
            if let Some(p) = self.ports.get(&m).filter(|p| p.open(now)) {
                list.push((m, p.egress.clone(), edit));
            }
        }
        Targets::Many(list)
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
        self.flushed(port);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::switch::frame::tests::frame;

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
