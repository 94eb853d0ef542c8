//! What the switch knows of a port: its kind, its state and counters ([`PortStat`]), who
//! connected it ([`Origin`]), and where its outgoing frames go ([`Egress`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::switch::fdb::PortNo;
use crate::switch::frame::Frame;
use crate::switch::guard::GuardCounters;
use crate::switch::policy::Policy;

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
    /// Frames refused: the port's queue or the switch's queue budget was full (with flow
    /// queues, also frames of the fattest flow dropped to make room).
    pub(crate) dropped: u64,
    /// Frames queued but dropped because they waited too long to be sent.
    pub(crate) expired: u64,
    /// Frames queued but dropped by the queue's CoDel (flow queues), to keep it short.
    pub(crate) aqm_dropped: u64,
    /// Bytes in the queue now.
    pub(crate) queued_bytes: u64,
    /// Bytes of the frames queued for transmission (`tx`'s bytes).
    pub(crate) tx_bytes: u64,
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
    /// Bytes of the frames received from this port and switched (`rx`'s bytes).
    pub(crate) rx_bytes: u64,
    /// Bytes of the frames queued for transmission on this port (`tx`'s bytes).
    pub(crate) tx_bytes: u64,
    /// Frames the port's device or socket dropped before the switch read them (a packet
    /// socket's full receive buffer, a TAP's full queue), as the port last read the kernel's
    /// count.
    pub(crate) rx_dropped: u64,
    /// Frames received from this port that were not Ethernet frames (runts).
    pub(crate) rx_invalid: u64,
    /// Frames received from this port that were larger than the switch allows.
    pub(crate) rx_oversize: u64,
    /// IP frames received from this port shorter than their IP header says (IPv4 total
    /// length, IPv6 payload length): cut short by a sender that reads less than its MTU.
    /// Forwarded all the same.
    pub(crate) rx_truncated: u64,
    /// TCP segments received from this port that software GRO appended to an earlier one of
    /// their flow (an offloaded port's AF_XDP frames, `wire/gro.rs`): frames saved.
    pub(crate) rx_gro_merged: u64,
    /// Broadcast/multicast frames from this port dropped by storm control.
    pub(crate) storm_dropped: u64,
    /// Frames whose source address was not learned because of the MAC limits.
    pub(crate) macs_refused: u64,
    /// Frames meant for this port but dropped because its queue (or the switch's budget for
    /// all queues) was full.
    pub(crate) tx_dropped: u64,
    /// Frames queued for this port but dropped because they waited too long in the queue.
    pub(crate) tx_expired: u64,
    /// Frames queued for this port but dropped by CoDel to keep its queue short
    /// (`--queue-discipline fq-codel`).
    pub(crate) tx_aqm_dropped: u64,
    /// Bytes waiting in this port's queue.
    pub(crate) queued_bytes: u64,
    /// The port exchanges super-frames with its device or peer (offloads negotiated).
    pub(crate) super_frames: bool,
    /// The TCP congestion control algorithm of a WebSocket port's connection (its last one,
    /// for a client port that is down).
    pub(crate) congestion: Option<Arc<str>>,
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
    /// Frames from this port that port security dropped, per rule.
    pub(crate) guard: GuardCounters,
    /// A QUIC port's connection state (none: not a QUIC port).
    pub(crate) quic: Option<QuicStat>,
}

/// What a QUIC port reports of its connection, published by its session about once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QuicStat {
    /// The connection's smoothed round-trip time, in milliseconds.
    pub(crate) rtt_ms: u64,
    /// The largest datagram the path takes now (0: none, or not connected).
    pub(crate) max_datagram: u64,
    /// Packets the connection declared lost.
    pub(crate) lost_packets: u64,
    /// Datagrams received that were not this session's frames (a bad prefix), dropped.
    pub(crate) rx_errors: u64,
    /// Frames too large for one datagram, dropped.
    pub(crate) tx_dropped_oversize: u64,
}

impl PortStat {
    /// A new port's state: up, open, every counter at zero.
    pub(crate) fn new(port: PortNo, kind: PortKind, target: Arc<str>, origin: &Origin) -> Self {
        PortStat {
            port,
            kind,
            target,
            shut: false,
            link_up: true,
            rx: 0,
            tx: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_dropped: 0,
            rx_invalid: 0,
            rx_oversize: 0,
            rx_truncated: 0,
            rx_gro_merged: 0,
            storm_dropped: 0,
            macs_refused: 0,
            tx_dropped: 0,
            tx_expired: 0,
            tx_aqm_dropped: 0,
            queued_bytes: 0,
            super_frames: false,
            congestion: None,
            addr: origin.addr,
            user: origin.user.as_deref().map(Into::into),
            loop_blocked_until: None,
            loop_blocks: 0,
            loop_dropped: 0,
            policy: Policy::default(),
            path: origin.path.as_deref().map(Into::into),
            vlan_dropped: 0,
            rate_in_dropped: 0,
            rate_out_dropped: 0,
            guard: GuardCounters::default(),
            quic: None,
        }
    }

    /// True while the loop guard blocks the port.
    pub(crate) fn loop_blocked(&self, now: Instant) -> bool {
        self.loop_blocked_until.is_some_and(|t| now < t)
    }

    /// True if frames may be sent out of this port now.
    pub(crate) fn open(&self, now: Instant) -> bool {
        !self.shut && self.link_up && !self.loop_blocked(now)
    }

    /// The state with the counters its egress keeps.
    pub(crate) fn with_tx(&self, c: TxCounters) -> PortStat {
        PortStat {
            tx: c.tx,
            tx_bytes: c.tx_bytes,
            tx_dropped: c.dropped,
            tx_expired: c.expired,
            tx_aqm_dropped: c.aqm_dropped,
            queued_bytes: c.queued_bytes,
            ..self.clone()
        }
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
