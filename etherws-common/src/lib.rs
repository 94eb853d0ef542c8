//! Types shared by the userspace switch and the eBPF programs.
//!
//! Everything here is `no_std` and `#[repr(C)]` so the same definitions describe BPF map keys and
//! values on both sides of the kernel boundary. Every struct spells its padding out as a named
//! field (and a compile-time assertion pins its size), so the userspace and the BPF compilers can
//! never lay one out differently, and no uninitialised padding byte ever reaches the kernel.
//!
//! The contract of the XDP program (which map holds what, and what it decides per frame) is
//! described in `etherws-ebpf/README.md`.
//!
//! With the `user` feature (userspace only: it pulls in `aya`), the map types implement
//! [`aya::Pod`] so they can be read from and written to aya's typed maps.
#![no_std]

/// Length of an Ethernet MAC address.
pub const ETH_ALEN: usize = 6;

/// Ethernet header length without a VLAN tag.
pub const ETH_HLEN: usize = 14;

/// Length of an 802.1Q tag (TPID + TCI).
pub const VLAN_HLEN: usize = 4;

/// TPID of an IEEE 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;

/// Mask of the VLAN id within an 802.1Q TCI (the upper four bits are PCP and DEI).
pub const VLAN_VID_MASK: u16 = 0x0fff;

/// Name of the XDP program in the object built by `cargo xtask build-ebpf`.
pub const XDP_PROGRAM: &str = "etherws_xdp";

/// Name of the TC (`sched_cls`, direct action) program in the same object: the GSO-preserving
/// in-kernel path of `--offload tc` ports, attached at TC ingress.
pub const TC_PROGRAM: &str = "etherws_tc";

/// Name of the socket filter in the same object, attached to a TC port's packet socket: it
/// drops the frames the TC program forwards or drops, so userspace does not get them too.
pub const SOCK_PROGRAM: &str = "etherws_sock";

/// File name of that object under `target/bpf/`.
pub const XDP_OBJECT: &str = "etherws-xdp.o";

/// Map `FdbKey` → [`FdbValue`]: the kernel's mirror of the switch's forwarding database.
pub const MAP_FDB: &str = "ETHERWS_FDB";
/// Map ingress ifindex (`u32`) → [`PortConf`]: the offloaded netdev ports.
pub const MAP_PORTS: &str = "ETHERWS_PORTS";
/// `DEVMAP_HASH` ifindex (`u32`) → egress device (ifindex): in-kernel forwarding targets.
pub const MAP_DEVMAP: &str = "ETHERWS_DEVMAP";
/// `XSKMAP` index (`PortConf::xsk_base` + RX queue) → AF_XDP socket.
pub const MAP_XSKS: &str = "ETHERWS_XSKS";
/// Per-CPU hash ifindex (`u32`) → [`PortCounters`].
pub const MAP_COUNTERS: &str = "ETHERWS_COUNTERS";

/// Capacity of [`MAP_FDB`].
pub const FDB_MAX_ENTRIES: u32 = 65536;
/// Capacity of [`MAP_PORTS`], [`MAP_DEVMAP`] and [`MAP_COUNTERS`]: offloaded ports at most.
pub const PORTS_MAX_ENTRIES: u32 = 256;
/// Capacity of [`MAP_XSKS`]: sum of the RX queue counts of all offloaded ports at most.
pub const XSKS_MAX_ENTRIES: u32 = 1024;

/// [`PortConf::flags`]: the port is shut; the XDP program drops everything it receives.
pub const PORT_F_SHUT: u32 = 1 << 0;
/// [`PortConf::flags`]: the program is attached in generic (SKB) mode. Frames it cannot forward
/// in the kernel for checksum reasons then go to the stack (and the port's packet socket, which
/// gets the checksum metadata and super-frames whole) rather than to the AF_XDP socket.
pub const PORT_F_GENERIC: u32 = 1 << 1;
/// The port has rules only userspace applies (an access VLAN, isolation, a mesh flag, a mirror
/// or a rate limit): its frames all go to userspace, and none are forwarded into it in the
/// kernel.
pub const PORT_F_USER: u32 = 1 << 2;

/// The port is served by the TC program (`--offload tc`): the TC program forwards only into
/// ports with this flag (whose packet sockets carry the socket filter that hides the
/// redirected frames' copies from userspace).
pub const PORT_F_TC: u32 = 1 << 3;

/// The mark (`SO_MARK`, `skb->mark`) of every frame a netdev port's packet socket sends. A
/// super-frame the kernel cuts into segments for a device without TSO gives its socket to the
/// last segment only, so the packet taps hand the others back to the sending socket as
/// outgoing frames; the mark, which every segment keeps, lets the socket's filter (classic BPF,
/// or `etherws_sock` on TC ports) drop them.
pub const TX_MARK: u32 = 0x4557_5331;

/// The XDP program rewrites [`FdbValue::seen_ns`] only when the stored value is at least this
/// old, so a busy station does not make every CPU write the same cache line for every frame.
/// Userspace ageing has a resolution of seconds, so this loses nothing.
pub const SEEN_REFRESH_NS: u64 = 1_000_000_000;

/// Key of the in-kernel forwarding database: a MAC address within a VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FdbKey {
    /// VLAN id (0 for untagged frames): TCI & [`VLAN_VID_MASK`] of the first 802.1Q tag.
    pub vid: u16,
    /// The MAC address.
    pub mac: [u8; ETH_ALEN],
}

/// Where a MAC address of the forwarding database lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FdbValue {
    /// Ifindex of the offloaded netdev port the address is on, or 0 when it lives on a port the
    /// kernel cannot reach (WebSocket, tap, non-offloaded netdev): frames to it go to userspace.
    pub ifindex: u32,
    /// The switch's port number (for every kind of port).
    pub port: u32,
    /// `CLOCK_MONOTONIC` time (`bpf_ktime_get_ns()`) the address was last seen as a source by the
    /// XDP program; 0 if never. Userspace ages an entry out from the later of this and its own
    /// last sighting.
    pub seen_ns: u64,
}

/// An offloaded netdev port, keyed by its ifindex in [`MAP_PORTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortConf {
    /// The switch's port number.
    pub port: u32,
    /// `PORT_F_*` bits.
    pub flags: u32,
    /// First index of this port's AF_XDP sockets in [`MAP_XSKS`]: the socket of RX queue `q` is
    /// at `xsk_base + q`.
    pub xsk_base: u32,
    /// The interface's own MAC address: frames to it are for the host's stack (all zeroes:
    /// none).
    pub mac: [u8; ETH_ALEN],
    /// Explicit padding (keep 0).
    pub _pad: [u8; 2],
}

/// Per-port, per-CPU counters kept by the XDP program; sum the CPUs' values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortCounters {
    /// Frames received on the port (every frame XDP saw on it).
    pub rx_frames: u64,
    /// Bytes of those frames (Ethernet header included, no FCS).
    pub rx_bytes: u64,
    /// Frames forwarded in the kernel out of this port (redirected into [`MAP_DEVMAP`]).
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames received on the port and redirected to its AF_XDP socket.
    pub to_user: u64,
    /// Frames received on the port and dropped (shut port, runt, destination on the same port).
    pub dropped: u64,
    /// Frames received on the port and passed to the kernel's stack because no AF_XDP socket was
    /// bound for their RX queue.
    pub passed: u64,
    /// Frames received on the port and passed to the kernel's stack because the host may want
    /// them: broadcast, multicast, or addressed to the interface itself. (XDP cannot copy a
    /// frame; the port's packet socket hands these to the switch as well.)
    pub host: u64,
    /// Frames for another offloaded port that were not forwarded in the kernel because their
    /// TCP/UDP checksum looked left to the hardware (a local sender with checksum offload; XDP
    /// redirection would deliver it unfinished). Userspace finishes and forwards them.
    pub csum_partial: u64,
}

impl core::ops::AddAssign for PortCounters {
    fn add_assign(&mut self, o: Self) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_bytes += o.tx_bytes;
        self.to_user += o.to_user;
        self.dropped += o.dropped;
        self.passed += o.passed;
        self.host += o.host;
        self.csum_partial += o.csum_partial;
    }
}

// The layouts both sides rely on: no implicit padding anywhere.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<FdbKey>() == 8 && align_of::<FdbKey>() == 2);
    assert!(size_of::<FdbValue>() == 16 && align_of::<FdbValue>() == 8);
    assert!(size_of::<PortConf>() == 20 && align_of::<PortConf>() == 4);
    assert!(size_of::<PortCounters>() == 72 && align_of::<PortCounters>() == 8);
};

#[cfg(feature = "user")]
pub mod object;

#[cfg(feature = "user")]
mod user {
    // SAFETY: here and below, plain `#[repr(C)]` data of integers and byte arrays without
    // implicit padding (see the size assertions above): every bit pattern is valid and no byte is
    // uninitialised. `FdbKey`: u16 + [u8; 6], 8 bytes.
    unsafe impl aya::Pod for super::FdbKey {}
    // SAFETY: as above; `FdbValue`: u32 + u32 + u64, 16 bytes.
    unsafe impl aya::Pod for super::FdbValue {}
    // SAFETY: as above; `PortConf`: three u32s + [u8; 6] + an explicit [u8; 2] pad, 20 bytes.
    unsafe impl aya::Pod for super::PortConf {}
    // SAFETY: as above; `PortCounters`: nine u64s, 72 bytes.
    unsafe impl aya::Pod for super::PortCounters {}
}
