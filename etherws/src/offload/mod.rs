//! eBPF offload of `netdev` ports: the XDP program of `etherws-ebpf` on the interface, AF_XDP
//! sockets to userspace, and in-kernel forwarding (DEVMAP) between offloaded ports.
//!
//! What runs where (the per-frame contract is `etherws-ebpf/README.md`):
//! - the XDP program sees every frame arriving on an offloaded port. Known unicast between two
//!   offloaded ports is redirected in the kernel and never reaches userspace; frames the host
//!   may want (broadcast, multicast, its own address) go to the stack; everything else (new or
//!   moved sources, unknown unicast, stations behind other ports, checksums left to the
//!   hardware) goes to the port's AF_XDP sockets (one per RX queue), whose frames the switch
//!   handles as it would an AF_PACKET port's;
//! - a packet socket on the interface (the AF_PACKET port's receive half) hands the switch what
//!   reached the stack and what the host sends out of the interface: the port carries every
//!   frame in and out, as a plain netdev port does;
//! - every second a port re-reads its device's XDP features ([`features`]): a device that does
//!   not take redirected frames is kept out of the DEVMAP and served through userspace;
//! - the switch core stays the authority. Its FDB changes reach the kernel's `ETHERWS_FDB`
//!   through [`FdbObserver`] (learned, moved, forgotten, port flushed); a plain refresh costs
//!   nothing, and before an entry on an offloaded port ages out the kernel's `seen_ns` is read;
//! - one [`aya::Ebpf`] (program + maps) is loaded with the first offloaded port and dropped
//!   with the last. Programs are attached with bpf_link (`BPF_LINK_CREATE`): the link lives
//!   as long as its descriptor, so a removed port, an exit, SIGTERM or a crash all detach it;
//!   nothing is pinned.
//!
//! Where XDP cannot serve (program rejected, attach refused, no AF_XDP), the port falls back
//! to the AF_PACKET path with the reason logged; only a build without the object is an error.

pub(crate) mod choose;
mod error;
pub(crate) mod features;
pub(crate) mod tc;
pub(crate) mod xsk;

pub(crate) use choose::{Facts, Program, Requested, choose};
pub(crate) use error::{InvalidMode, OffloadError};

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aya::maps::MapError;
use aya::programs::{XdpMode, tc::SchedClassifierLinkId, xdp::XdpLinkId};
use bytes::{Bytes, BytesMut};
use etherws_common::object::XdpObject;
use etherws_common::{
    FdbKey, FdbValue, PORT_F_GENERIC, PORT_F_SHUT, PORT_F_TC, PORT_F_USER, PortConf, PortCounters,
    XSKS_MAX_ENTRIES,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

use crate::port::netdev::Netdev;
use crate::port::{EgressRx, Ingress, MAX_FRAME, Port, PortIo};
use crate::switch::FdbObserver;
use crate::switch::fdb::PortNo;
use crate::switch::frame::{Frame, Mac};
use crate::sys::netif::{Hardware, Netif, Peer};
use crate::sys::{self, SyscallError};
use crate::wire::gro;
use crate::wire::gso::{self, F_NEEDS_CSUM, VnetHdr};
use crate::wire::{self, ip_protocol, tcp, udp};

/// What `--offload` says when this build has no XDP object.
pub(crate) const NO_OBJECT: &str = "eBPF offload is not available in this build: the XDP object was \
     missing when etherws was built; run `cargo xtask build-ebpf`, then rebuild etherws";

#[cfg(etherws_xdp_object)]
fn object() -> Option<&'static [u8]> {
    // The ELF parser wants the object aligned like the file it normally reads.
    #[repr(C, align(8))]
    struct Aligned<T: ?Sized>(T);
    static OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("ETHERWS_XDP_OBJECT_PATH")));
    Some(&OBJ.0)
}

#[cfg(not(etherws_xdp_object))]
fn object() -> Option<&'static [u8]> {
    None
}

/// Whether this build embeds the XDP object.
pub(crate) fn available() -> bool {
    object().is_some()
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum AttachMode {
    /// Native (in the driver) if the device allows, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

impl FromStr for AttachMode {
    type Err = InvalidMode;
    fn from_str(s: &str) -> Result<Self, InvalidMode> {
        match s {
            "auto" | "" => Ok(AttachMode::Auto),
            "native" | "drv" | "driver" => Ok(AttachMode::Native),
            "generic" | "skb" => Ok(AttachMode::Generic),
            other => Err(InvalidMode(other.to_string())),
        }
    }
}

/// The loaded object: program and maps.
type Loaded = XdpObject;

/// Loads the object built into this binary.
fn load_object() -> Result<Loaded, OffloadError> {
    XdpObject::load(object().ok_or(OffloadError::NoObject)?).map_err(OffloadError::Load)
}

/// An offloaded port, as the offload state knows it.
struct PortInfo {
    xsk_base: u32,
    queues: u32,
    link: Option<XdpLinkId>,
    /// The TC program's link (TC ports).
    tc_link: Option<SchedClassifierLinkId>,
    /// XDP or TC.
    program: Program,
    /// Why that program ([`choose`]), and for TC how it is attached if not plainly.
    why: String,
    /// The attach mode: `native`, `generic` (XDP), `tcx` or `netlink` (TC).
    mode: &'static str,
    shut: bool,
    /// Every frame goes through userspace (the port has a policy the kernel cannot apply).
    user_only: bool,
    /// Switch port number, once attached.
    port: Option<PortNo>,
    /// The interface's MAC address, as the program knows it.
    mac: Mac,
    /// Interface name (for sysfs and log lines).
    name: String,
    /// Whether the port is in the DEVMAP: other ports' frames can be forwarded into it in the
    /// kernel (see [`Offload::refresh`]); `None` until first decided.
    kernel_tx: Option<bool>,
    /// Why it is not in the DEVMAP, in words an operator can act on.
    kernel_tx_why: Option<OffloadError>,
    /// The other end of the interface if it is a veth (whose GRO decides whether it takes
    /// redirected frames): what [`Offload::set_peer`] was told.
    peer: Option<Peer>,
}

impl PortInfo {
    /// A port of `program` on interface `name` (`hw`), attached in `mode` for reason `why`;
    /// open, not yet numbered, nothing decided about the DEVMAP. XDP ports add their link and
    /// sockets, TC ports their link.
    fn new(name: &str, hw: Hardware, program: Program, why: String, mode: &'static str) -> Self {
        PortInfo {
            xsk_base: 0,
            queues: 0,
            link: None,
            tc_link: None,
            program,
            why,
            mode,
            shut: false,
            user_only: false,
            port: None,
            mac: Mac(hw.mac),
            name: name.to_string(),
            kernel_tx: None,
            kernel_tx_why: None,
            peer: None,
        }
    }

    /// The port's entry in the kernel's port table.
    fn conf(&self, port: PortNo) -> PortConf {
        PortConf {
            port,
            flags: if self.shut { PORT_F_SHUT } else { 0 }
                | if self.user_only { PORT_F_USER } else { 0 }
                | if self.mode == "generic" {
                    PORT_F_GENERIC
                } else {
                    0
                }
                | if self.program == Program::Tc {
                    PORT_F_TC
                } else {
                    0
                },
            xsk_base: self.xsk_base,
            mac: self.mac.0,
            _pad: [0; 2],
        }
    }
}

#[derive(Default)]
struct Inner {
    loaded: Option<Loaded>,
    /// Offloaded ports by ifindex.
    ports: HashMap<u32, PortInfo>,
    /// Switch port number → ifindex of the offloaded ports.
    by_port: HashMap<PortNo, u32>,
    /// Netdev ports that asked for offload and fell back, with the reason.
    fallback: BTreeMap<PortNo, OffloadError>,
    /// FDB entries written to the kernel's map, and their port.
    mirrored: HashMap<(u16, Mac), PortNo>,
}

/// The offload state of a switch: shared by the control API, the offloaded ports and the
/// switch core (as its [`FdbObserver`]).
#[derive(Clone, Default)]
pub(crate) struct Offload {
    inner: Arc<Mutex<Inner>>,
    /// Asks devices' XDP features; its own lock, so no netlink round trip is made while the
    /// switch may be waiting for `inner` (the FDB mirror takes it from the switch core).
    genl: Arc<Mutex<Option<features::Genl>>>,
}

/// What `listPort` adds for a netdev port.
#[derive(Debug, Clone)]
pub(crate) struct PortView {
    /// Offloaded (XDP or TC), not fallen back.
    pub(crate) xdp: bool,
    /// `xdp` or `tc` (offloaded ports).
    pub(crate) program: &'static str,
    /// Why that program.
    pub(crate) why: String,
    pub(crate) mode: &'static str,
    /// Frames from other offloaded ports are forwarded into this one in the kernel.
    pub(crate) kernel_tx: bool,
    pub(crate) fallback: Option<String>,
    /// Why frames of this offloaded port go through userspace, if they do.
    pub(crate) userspace_why: Option<String>,
    pub(crate) kernel: PortCounters,
}

impl Inner {
    /// The loaded object and offloaded port `ifindex`, if both are there.
    fn port_mut(&mut self, ifindex: u32) -> Option<(&mut Loaded, &mut PortInfo)> {
        Some((self.loaded.as_mut()?, self.ports.get_mut(&ifindex)?))
    }
}

/// Handles the result of removing an entry from one of the kernel's maps: an entry that was
/// not there (`ENOENT`) is what removing wants; anything else is logged, and the entry is
/// left to go with the maps.
fn removed(r: Result<(), MapError>, what: &str) {
    match r {
        Ok(()) => {}
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => tracing::debug!("cannot remove {what} from the kernel's maps: {e}"),
    }
}

impl Offload {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches the program to `name` (whose index and MAC `hw` says, with `queues` receive
    /// queues in use) and opens its AF_XDP sockets. The port is not switched in the kernel
    /// until [`Offload::activate`] gives it its number; `netif` is how it keeps its MAC current.
    ///
    /// # Errors
    ///
    /// An [`OffloadError`] saying why XDP cannot serve the port (the caller falls back to
    /// AF_PACKET); nothing of the attempt is left behind.
    pub(crate) fn prepare(
        &self,
        name: &str,
        hw: Hardware,
        queues: u32,
        mode: AttachMode,
        netif: Netif,
        why: &str,
    ) -> Result<XdpPort, OffloadError> {
        let ifindex = hw.index;
        // What XDP passes to the stack (frames for the host) and what the host sends out of the
        // interface reach the switch through a packet socket; it also makes the interface
        // promiscuous, which XDP on a real NIC needs as much as AF_PACKET does.
        let companion = Netdev::open_index(name, ifindex).map_err(OffloadError::Companion)?;
        // A TC filter a crashed switch left on the interface would switch frames too.
        tc::remove_stale_filters(name);
        let mut inner = self.lock();
        if inner.ports.contains_key(&ifindex) {
            return Err(OffloadError::Offloaded(name.to_string()));
        }
        let fresh = inner.loaded.is_none();
        if fresh {
            inner.loaded = Some(load_object()?);
        }
        let r = prepare_locked(&mut inner, ifindex, queues, mode);
        if r.is_err() && inner.ports.is_empty() {
            inner.loaded = None;
        }
        let (queues, xsk_base, link, mode_name, socks) = r?;
        inner.ports.insert(
            ifindex,
            PortInfo {
                xsk_base,
                queues,
                link: Some(link),
                ..PortInfo::new(name, hw, Program::Xdp, why.to_string(), mode_name)
            },
        );
        drop(inner);
        let zc = socks.iter().any(|s| s.0.zerocopy);
        tracing::info!(
            interface = name,
            xdp_mode = mode_name,
            queues,
            af_xdp = if zc { "zero-copy" } else { "copy" },
            "XDP program attached"
        );
        Ok(XdpPort {
            name: name.to_string(),
            socks,
            companion,
            netif,
            guard: Guard {
                offload: self.clone(),
                ifindex,
            },
        })
    }

    /// Makes the prepared port `ifindex` switch port `port`: from now on the program switches
    /// its frames (PORTS and DEVMAP entries).
    pub(crate) fn activate(&self, ifindex: u32, port: PortNo) {
        let mut inner = self.lock();
        let Some((l, p)) = inner.port_mut(ifindex) else {
            return;
        };
        p.port = Some(port);
        if let Err(e) = l.ports.insert(ifindex, p.conf(port), 0) {
            tracing::warn!(port, "cannot enable in-kernel switching: {e}");
        }
        inner.by_port.insert(port, ifindex);
        drop(inner);
        // A native port joining may change what the others can take.
        self.refresh_all();
    }

    /// [`Offload::refresh`] for every port (their MACs as known), on the blocking pool: the
    /// netlink round trips must not hold up an async worker.
    fn refresh_all(&self) {
        let all: Vec<u32> = self.lock().ports.keys().copied().collect();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                drop(rt.spawn_blocking(move || {
                    for ifindex in all {
                        this.refresh(ifindex, None);
                    }
                }));
            }
            // Shutting down, off the runtime: nothing to hold up.
            Err(_) => all.into_iter().for_each(|i| self.refresh(i, None)),
        }
    }

    /// Keeps the kernel's view of port `ifindex` true (run every second by the port, and for
    /// all ports when one comes or goes):
    /// - its MAC address (frames to it are for the host), which may be changed at any time;
    /// - its DEVMAP entry. A port is a kernel forwarding target only if it takes XDP-redirected
    ///   frames: its device says so (`NDO_XMIT`), or every offloaded port is in generic mode
    ///   (the kernel then forwards socket buffers through the normal transmit path). Otherwise
    ///   the kernel would drop them without a trace, so the port is left out and its frames go
    ///   through userspace and its AF_XDP socket, which any device takes; the change is logged
    ///   both ways. Without the netdev netlink family (Linux < 6.3) nothing can be known: the
    ///   port stays in.
    ///
    /// `mac` is the device's address as just read (None: as last known). Blocking (a generic
    /// netlink round trip): call it on the blocking pool.
    pub(crate) fn refresh(&self, ifindex: u32, mac: Option<Mac>) {
        if !self.lock().ports.contains_key(&ifindex) {
            return;
        }
        // Ask the kernel without holding the state's lock.
        let xmit = self.takes_redirected(ifindex);
        let mut inner = self.lock();
        apply_refresh(&mut inner, ifindex, mac, xmit);
    }

    /// Whether device `ifindex` takes frames redirected into it by XDP, as its features say
    /// (a generic netlink round trip; the socket is opened on first use, and again after it
    /// could not be).
    fn takes_redirected(&self, ifindex: u32) -> Result<bool, features::FeaturesError> {
        let mut genl = self.genl.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = match genl.take() {
            Some(g) => g,
            None => features::Genl::open()?,
        };
        let features = g.xdp_features(ifindex);
        *genl = Some(g);
        Ok(features? & features::XDP_ACT_NDO_XMIT != 0)
    }

    /// Records the veth peer of offloaded interface `ifindex` (`None`: not a veth), for the
    /// reason [`Offload::refresh`] gives when the device does not take redirected frames.
    pub(crate) fn set_peer(&self, ifindex: u32, peer: Option<Peer>) {
        if let Some(p) = self.lock().ports.get_mut(&ifindex) {
            p.peer = peer;
        }
    }

    /// Records that netdev port `port` asked for offload and fell back, and why.
    pub(crate) fn note_fallback(&self, port: PortNo, reason: OffloadError) {
        self.lock().fallback.insert(port, reason);
    }

    /// Makes the kernel hand every frame of `port` to userspace and never forward into it
    /// (true), or switch it in the kernel again (false): a port with a VLAN, isolation, mesh
    /// flag, mirror or rate limit has rules only the switch core applies.
    pub(crate) fn set_user_only(&self, port: PortNo, user_only: bool) {
        self.update_conf(port, |p| p.user_only = user_only);
    }

    /// Mirrors a port's shut state into the kernel.
    pub(crate) fn set_shut(&self, port: PortNo, shut: bool) {
        self.update_conf(port, |p| p.shut = shut);
    }

    /// Changes an offloaded port's entry in the kernel's port table.
    fn update_conf(&self, port: PortNo, change: impl FnOnce(&mut PortInfo)) {
        let mut inner = self.lock();
        let Some(ifindex) = inner.by_port.get(&port).copied() else {
            return;
        };
        let Some((l, p)) = inner.port_mut(ifindex) else {
            return;
        };
        change(p);
        if let Err(e) = l.ports.insert(ifindex, p.conf(port), 0) {
            tracing::warn!(port, "cannot update the kernel's port table: {e}");
        }
    }

    /// What `listPort` shows about `port`, if it is (or asked to be) offloaded.
    pub(crate) fn view(&self, port: PortNo) -> Option<PortView> {
        let inner = self.lock();
        if let Some(ifindex) = inner.by_port.get(&port) {
            let p = &inner.ports[ifindex];
            let mut kernel = PortCounters::default();
            if let Some(l) = inner.loaded.as_ref() {
                // No entry yet (no frame counted): zeroes.
                if let Ok(per_cpu) = l.counters.get(ifindex, 0) {
                    per_cpu.iter().for_each(|c| kernel += *c);
                }
            }
            let tc = p.program == Program::Tc;
            let userspace_why = if p.user_only {
                Some(
                    "the port has a VLAN, isolation, mesh, mirror or rate setting, which only \
                     userspace applies"
                        .to_string(),
                )
            } else if tc {
                // The TC program forwards into any TC port (no DEVMAP involved).
                None
            } else if p.kernel_tx != Some(true) {
                Some(
                    p.kernel_tx_why
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| {
                            "not decided yet (the port's device is being checked)".into()
                        }),
                )
            } else {
                None
            };
            return Some(PortView {
                xdp: true,
                program: p.program.name(),
                why: p.why.clone(),
                mode: p.mode,
                kernel_tx: if tc {
                    !p.user_only
                } else {
                    p.kernel_tx.unwrap_or(false)
                },
                fallback: None,
                userspace_why,
                kernel,
            });
        }
        inner.fallback.get(&port).map(|r| PortView {
            xdp: false,
            program: "",
            why: String::new(),
            mode: "",
            kernel_tx: false,
            fallback: Some(r.to_string()),
            userspace_why: None,
            kernel: PortCounters::default(),
        })
    }

    /// Forgets a removed port's fallback note.
    pub(crate) fn forget(&self, port: PortNo) {
        self.lock().fallback.remove(&port);
    }

    /// Whether interface `ifindex` is still held by an offloaded port (one being deleted lets go
    /// when its task ends, just after `delPort` answers).
    pub(crate) fn holds(&self, ifindex: u32) -> bool {
        self.lock().ports.contains_key(&ifindex)
    }

    /// Whether the program and maps are loaded (some port is offloaded).
    pub(crate) fn loaded(&self) -> bool {
        self.lock().loaded.is_some()
    }

    fn release(&self, ifindex: u32) {
        let mut inner = self.lock();
        let Some(p) = inner.ports.remove(&ifindex) else {
            return;
        };
        if let Some(port) = p.port {
            inner.by_port.remove(&port);
            // Its entries were flushed by the switch; anything left over goes too.
            let stale: Vec<_> = inner
                .mirrored
                .iter()
                .filter(|(_, v)| **v == port)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                inner.mirrored.remove(&k);
                if let Some(l) = inner.loaded.as_mut() {
                    let key = FdbKey {
                        vid: k.0,
                        mac: k.1.0,
                    };
                    removed(l.fdb.remove(&key), "an FDB entry");
                }
            }
        }
        let last = inner.ports.is_empty();
        if let Some(l) = inner.loaded.as_mut() {
            removed(l.ports.remove(&ifindex), "the port");
            removed(l.devmap.remove(ifindex), "the port's DEVMAP entry");
            for q in 0..p.queues {
                removed(l.xsks.unset(p.xsk_base + q), "an XSKMAP entry");
            }
            removed(l.counters.remove(&ifindex), "the port's counters");
            if let Some(link) = p.link {
                if let Err(e) = l.program().detach(link) {
                    tracing::warn!(ifindex, "cannot detach the XDP program: {e}");
                }
            }
            if let Some(link) = p.tc_link {
                tc::detach(l, link, ifindex);
            }
        }
        if last {
            // The last offloaded port: program and maps go.
            inner.loaded = None;
            inner.mirrored.clear();
        }
        drop(inner);
        match p.program {
            Program::Xdp => tracing::info!(ifindex, "XDP program detached"),
            Program::Tc => tracing::info!(ifindex, "TC program detached"),
        }
        self.refresh_all();
    }
}

/// Applies what [`Offload::refresh`] found out about port `ifindex`.
fn apply_refresh(
    inner: &mut Inner,
    ifindex: u32,
    mac: Option<Mac>,
    xmit: Result<bool, features::FeaturesError>,
) {
    // Only XDP ports redirect through the DEVMAP (TC ports use `bpf_redirect`): generic XDP
    // into a device without `ndo_xdp_xmit` still works, so with no native XDP port every
    // device can take the redirected frames.
    let all_generic = inner
        .ports
        .values()
        .filter(|p| p.program == Program::Xdp)
        .all(|p| p.mode == "generic");
    let Some((l, p)) = inner.port_mut(ifindex) else {
        return;
    };
    let Some(port) = p.port else { return };
    if let Some(mac) = mac.filter(|m| *m != p.mac && *m != Mac([0; 6])) {
        p.mac = mac;
        if let Err(e) = l.ports.insert(ifindex, p.conf(port), 0) {
            tracing::warn!(port, "cannot update the kernel's port table: {e}");
        }
    }
    let want = all_generic || *xmit.as_ref().unwrap_or(&true);
    if p.kernel_tx == Some(want) {
        return;
    }
    let first = p.kernel_tx.is_none();
    if want {
        match l.devmap.insert(ifindex, ifindex, None, 0) {
            Ok(()) => {
                p.kernel_tx = Some(true);
                p.kernel_tx_why = None;
                if let Err(e) = &xmit {
                    tracing::debug!(interface = %p.name, "XDP features unknown ({e})");
                }
                if !first {
                    tracing::info!(
                        interface = %p.name,
                        "the device takes frames redirected by XDP now: in-kernel forwarding \
                         into it is on"
                    );
                }
            }
            Err(e) => {
                let why = OffloadError::Devmap(e);
                tracing::warn!(port, "{why}");
                p.kernel_tx_why = Some(why);
            }
        }
    } else {
        removed(l.devmap.remove(ifindex), "the port's DEVMAP entry");
        p.kernel_tx = Some(false);
        let why = OffloadError::NoRedirect {
            device: p.name.clone(),
            peer: p.peer.clone(),
        };
        tracing::warn!(
            interface = %p.name,
            "{why}: frames to it from {} go through userspace",
            if p.program == Program::Tc {
                "XDP ports"
            } else {
                "other offloaded ports"
            }
        );
        p.kernel_tx_why = Some(why);
    }
}

type Prepared = (u32, u32, XdpLinkId, &'static str, Vec<Sock>);

/// Takes a range of `queues` entries of the XSKMAP that no other port uses, opens an AF_XDP
/// socket per queue, attaches the program and puts the sockets in the XSKMAP; undoes what it
/// did if a step fails.
fn prepare_locked(
    inner: &mut Inner,
    ifindex: u32,
    queues: u32,
    mode: AttachMode,
) -> Result<Prepared, OffloadError> {
    // A range of the XSKMAP of its own.
    let mut used = vec![false; XSKS_MAX_ENTRIES as usize];
    for p in inner.ports.values() {
        for q in p.xsk_base..p.xsk_base + p.queues {
            used[q as usize] = true;
        }
    }
    let base = (0..=XSKS_MAX_ENTRIES.saturating_sub(queues))
        .find(|&b| (b..b + queues).all(|i| !used[i as usize]))
        .ok_or(OffloadError::XskmapFull)?;
    let l = inner.loaded.as_mut().expect("loaded by the caller");
    let socks = (0..queues)
        .map(|queue| {
            xsk::open(ifindex, queue).map_err(|error| OffloadError::Socket { queue, error })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (link, mode_name) = attach(l, ifindex, mode)?;
    for (q, s) in socks.iter().enumerate() {
        if let Err(e) = l.xsks.set(base + q as u32, s.0.fd.as_raw_fd(), 0) {
            for q2 in 0..q as u32 {
                removed(l.xsks.unset(base + q2), "an XSKMAP entry");
            }
            if let Err(e) = l.program().detach(link) {
                tracing::warn!(ifindex, "cannot detach the XDP program: {e}");
            }
            return Err(OffloadError::Xskmap(e));
        }
    }
    Ok((queues, base, link, mode_name, socks))
}

/// Attaches the program to `ifindex` in the modes `mode` allows, best first; returns the link
/// and the mode's name.
fn attach(
    l: &mut Loaded,
    ifindex: u32,
    mode: AttachMode,
) -> Result<(XdpLinkId, &'static str), OffloadError> {
    let attempts: &[(XdpMode, &'static str)] = match mode {
        AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
        AttachMode::Native => &[(XdpMode::Driver, "native")],
        AttachMode::Generic => &[(XdpMode::Skb, "generic")],
    };
    let mut errors = Vec::new();
    for &(m, n) in attempts {
        match l.program().attach_to_if_index(ifindex, m) {
            Ok(link) => return Ok((link, n)),
            Err(e) => errors.push(error::attach_failure(n, &e)),
        }
    }
    Err(OffloadError::Attach(errors))
}

/// Observer of the switch's FDB: mirrors it into the kernel's.
impl FdbObserver for Offload {
    fn learned(&mut self, vid: u16, mac: Mac, port: PortNo) {
        let mut inner = self.lock();
        let ifindex = inner.by_port.get(&port).copied().unwrap_or(0);
        let Some(l) = inner.loaded.as_mut() else {
            return;
        };
        let v = FdbValue {
            ifindex,
            port,
            seen_ns: 0,
        };
        match l.fdb.insert(FdbKey { vid, mac: mac.0 }, v, 0) {
            Ok(()) => {
                inner.mirrored.insert((vid, mac), port);
            }
            Err(e) => {
                // Full map: frames of this station keep going through userspace.
                tracing::debug!(vid, %mac, "kernel FDB not updated: {e}");
            }
        }
    }

    fn forgotten(&mut self, vid: u16, mac: Mac) {
        let mut inner = self.lock();
        if inner.mirrored.remove(&(vid, mac)).is_some() {
            if let Some(l) = inner.loaded.as_mut() {
                removed(l.fdb.remove(&FdbKey { vid, mac: mac.0 }), "an FDB entry");
            }
        }
    }

    fn port_flushed(&mut self, port: PortNo) {
        let mut inner = self.lock();
        let Inner {
            loaded, mirrored, ..
        } = &mut *inner;
        mirrored.retain(|k, p| {
            if *p != port {
                return true;
            }
            if let Some(l) = loaded.as_mut() {
                let key = FdbKey {
                    vid: k.0,
                    mac: k.1.0,
                };
                removed(l.fdb.remove(&key), "an FDB entry");
            }
            false
        });
    }

    fn seen_elsewhere(
        &mut self,
        vid: u16,
        mac: Mac,
        port: PortNo,
        now: Instant,
    ) -> Option<Instant> {
        let inner = self.lock();
        if !inner.by_port.contains_key(&port) {
            return None;
        }
        let v = inner
            .loaded
            .as_ref()?
            .fdb
            .get(&FdbKey { vid, mac: mac.0 }, 0)
            .ok()?;
        if v.seen_ns == 0 || v.port != port {
            return None;
        }
        // The kernel stamps entries with the same clock (bpf_ktime_get_ns); without it, the
        // age is unknown.
        let now_ns = sys::time::monotonic().ok()?.as_nanos() as u64;
        let age = Duration::from_nanos(now_ns.saturating_sub(v.seen_ns));
        now.checked_sub(age)
    }
}

/// An AF_XDP socket, its receive half and its transmit half.
type Sock = (xsk::Shared, xsk::Rx, xsk::Tx);

/// Detaches the port's program and clears its map entries when the port goes.
struct Guard {
    offload: Offload,
    ifindex: u32,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.offload.release(self.ifindex);
    }
}

/// An offloaded netdev port: the frames XDP hands to userspace come from its AF_XDP sockets,
/// and the switch's frames for it leave through the socket of queue 0.
pub(crate) struct XdpPort {
    name: String,
    socks: Vec<Sock>,
    /// The packet socket for frames XDP leaves to the stack and frames the host sends.
    companion: Netdev,
    /// Reads the device's MAC address every second (it may change at any time).
    netif: Netif,
    guard: Guard,
}

/// Frames taken from an RX ring per round.
const BATCH: u32 = 64;

/// Finishes the checksum of a frame the sender left "checksum partial" (CHECKSUM_PARTIAL on a
/// local veth/tap sender: the TCP/UDP field only holds the pseudo-header sum). AF_XDP carries
/// no metadata saying so; such a field is recognised as exactly the folded pseudo-header sum
/// of a segment whose full checksum does not verify. Anything else is left alone, and so are
/// IP fragments. The headers are found by [`wire::walk`]: any number of VLAN tags, IPv6
/// extension headers skipped.
fn fix_partial_csum(f: &mut [u8]) -> bool {
    let Ok(h) = wire::walk(f) else {
        return false;
    };
    if h.is_fragment() {
        return false;
    }
    let Some(end) = h.ip_end().filter(|&end| end <= f.len()) else {
        return false;
    };
    let Some(l4_len) = end.checked_sub(h.l4_offset) else {
        return false;
    };
    let field = match h.l4_protocol {
        ip_protocol::TCP if l4_len >= tcp::MIN_HEADER_LEN => tcp::field::CHECKSUM,
        ip_protocol::UDP if l4_len >= udp::HEADER_LEN => udp::field::CHECKSUM,
        _ => return false,
    };
    let (Ok(csum_start), Ok(csum_offset)) =
        (u16::try_from(h.l4_offset), u16::try_from(field.start))
    else {
        return false;
    };
    let l4 = &f[h.l4_offset..end];
    let pseudo = gso::pseudo_sum(f, h.l3_offset(), h.is_ipv6(), h.l4_protocol, l4_len);
    let stored = &l4[field];
    if u16::from_be_bytes([stored[0], stored[1]]) != gso::fold(pseudo) {
        return false;
    }
    if gso::fold(gso::sum(l4, pseudo)) == 0xffff {
        return false; // a real checksum that happens to look partial
    }
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start,
        csum_offset,
        ..VnetHdr::default()
    };
    gso::fix_csum(&hdr, f).is_ok()
}

fn to_frame(f: &[u8]) -> Bytes {
    let mut b = BytesMut::from(f);
    fix_partial_csum(&mut b);
    b.freeze()
}

impl Port for XdpPort {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        let PortIo { egress, ingress } = io;
        let XdpPort {
            name,
            socks,
            companion,
            netif,
            guard,
        } = self;
        let (rxs, (tx_queue, tx)) = register(socks)?;
        // Super-frames leave through the companion socket whole (`write_frames`).
        ingress.set_super_frames(true);
        let ingress = &ingress;
        let readers = rxs
            .into_iter()
            .map(|(queue, rx)| read_queue(queue, rx, ingress));
        tokio::select! {
            r = futures_util::future::try_join_all(readers) => r.map(drop),
            r = companion.receive_only(ingress) => r,
            r = write_frames(&tx_queue, tx, &companion, egress, ingress.port(), &name) => r,
            () = refresh_every_second(&guard, &netif, &name) => Ok(()),
        }
    }
}

/// An AF_XDP socket registered with the reactor, and its UMEM: what its reader and (for the
/// socket of queue 0) the writer share.
struct Queue {
    fd: AsyncFd<OwnedFd>,
    umem: xsk::Umem,
}

/// The receive halves of the sockets, and the transmit half of queue 0's.
type Registered = (Vec<(Arc<Queue>, xsk::Rx)>, (Arc<Queue>, xsk::Tx));

/// Registers the sockets with the reactor. Every frame leaves through the first (queue 0):
/// the transmit halves of the others are dropped.
fn register(socks: Vec<Sock>) -> anyhow::Result<Registered> {
    let mut rxs = Vec::with_capacity(socks.len());
    let mut first_tx = None;
    for (xsk::Shared { fd, umem, .. }, rx, tx) in socks {
        let queue = Arc::new(Queue {
            fd: sys::fd::register(fd)?,
            umem,
        });
        if first_tx.is_none() {
            first_tx = Some((queue.clone(), tx));
        }
        rxs.push((queue, rx));
    }
    let first_tx = first_tx.ok_or_else(|| anyhow::anyhow!("no AF_XDP socket"))?;
    Ok((rxs, first_tx))
}

/// Hands the frames of one AF_XDP socket to the switch as they come, the TCP segments of each
/// batch coalesced into super-frames (`wire::gro`, counted in `rx_gro_merged`); returns only
/// on error.
async fn read_queue(queue: Arc<Queue>, mut rx: xsk::Rx, ingress: &Ingress) -> anyhow::Result<()> {
    let mut frames = Vec::with_capacity(BATCH as usize);
    let mut coalesced = Vec::with_capacity(BATCH as usize);
    loop {
        let mut guard = queue.fd.readable().await?;
        loop {
            rx.recv(&queue.umem, BATCH, |f| frames.push(to_frame(f)));
            if frames.is_empty() {
                break;
            }
            let merged = gro::coalesce(frames.drain(..), MAX_FRAME, &mut coalesced);
            ingress.gro_merged(merged as u64);
            ingress.frames(coalesced.drain(..).map(|(f, hdr)| Frame::new(f, hdr)));
        }
        guard.clear_ready();
    }
}

/// Sends the switch's frames for the port until the switch removes the port: plain frames
/// through the AF_XDP socket of `queue`; super-frames and checksum-partial frames, which AF_XDP
/// cannot carry, whole through the `companion` packet socket with their `virtio_net_hdr` (the
/// kernel segments them only if the device cannot). A batch leaves in order: each run of
/// frames for one socket is out before the next run goes to the other.
async fn write_frames(
    queue: &Queue,
    mut tx: xsk::Tx,
    companion: &Netdev,
    mut egress: EgressRx,
    port: PortNo,
    name: &str,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(64);
    let mut dropped = 0u64;
    while egress.recv_many(&mut batch, 64).await > 0 {
        let mut rest = &batch[..];
        while let Some((xsk, n)) = first_run(rest) {
            let (run, more) = rest.split_at(n);
            if xsk {
                send_xsk(&mut tx, queue, run, name, &mut dropped).await?;
            } else {
                companion.send_offloaded(run, port).await?;
            }
            rest = more;
        }
        batch.clear();
        // Charged to the queue until now (see `EgressRx`).
        egress.written();
    }
    Ok(())
}

/// Whether a frame can leave through AF_XDP: plain (no checksum left to do, not a
/// super-frame) and within a UMEM frame.
fn by_xsk(f: &Frame) -> bool {
    f.offload == VnetHdr::default() && f.len() <= xsk::FRAME_SIZE as usize
}

/// The first run of `frames` that leaves the same way: whether by AF_XDP ([`by_xsk`]), and
/// how many frames; `None` for no frames.
fn first_run(frames: &[Frame]) -> Option<(bool, usize)> {
    let xsk = by_xsk(frames.first()?);
    Some((xsk, frames.iter().take_while(|f| by_xsk(f) == xsk).count()))
}

/// Sends plain `frames` through the AF_XDP socket of `queue`, all out before it returns. A
/// frame that cannot be queued is dropped (counted in `dropped`, and in the log).
async fn send_xsk(
    tx: &mut xsk::Tx,
    queue: &Queue,
    frames: &[Frame],
    name: &str,
    dropped: &mut u64,
) -> Result<(), SyscallError> {
    for frame in frames {
        if !push(tx, queue, &frame.data).await? {
            *dropped += 1;
            if dropped.is_power_of_two() {
                tracing::debug!(
                    interface = %name,
                    dropped = *dropped,
                    len = frame.len(),
                    "AF_XDP: frame not sent"
                );
            }
        }
    }
    flush(tx, queue.fd.get_ref().as_fd()).await
}

/// Queues `frame` in the TX ring, kicking the kernel (and from the third try on yielding) while
/// the ring is full, eight times at most; false if it could not be queued: the ring stayed
/// full, or the frame is larger than a UMEM frame.
async fn push(tx: &mut xsk::Tx, queue: &Queue, frame: &[u8]) -> Result<bool, SyscallError> {
    let mut tries = 0;
    loop {
        match tx.push(&queue.umem, frame) {
            Ok(true) => return Ok(true),
            Ok(false) if tries < 8 => {
                tries += 1;
                tx.kick(queue.fd.get_ref().as_fd())?;
                if tries > 2 {
                    tokio::task::yield_now().await;
                }
            }
            Ok(false) | Err(_) => return Ok(false),
        }
    }
}

/// Kicks the kernel until the TX ring is empty: copy mode sends during the kick; a busy device
/// keeps some frames, retried soon.
async fn flush(tx: &mut xsk::Tx, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), SyscallError> {
    tx.kick(fd)?;
    while tx.busy() {
        tokio::task::yield_now().await;
        tx.kick(fd)?;
        if !tx.busy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Keeps the kernel's view of the port true ([`Offload::refresh`]), every second.
async fn refresh_every_second(guard: &Guard, netif: &Netif, name: &str) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Unreadable now (the device is going away?): the MAC as last known.
        let mac = netif.hardware(name).await.ok().map(|hw| Mac(hw.mac));
        let (offload, ifindex) = (guard.offload.clone(), guard.ifindex);
        let refreshed = tokio::task::spawn_blocking(move || offload.refresh(ifindex, mac)).await;
        if let Err(e) = refreshed {
            tracing::warn!(interface = name, "XDP state not refreshed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_leaves_in_runs_plain_frames_by_af_xdp_the_others_by_the_packet_socket() {
        let plain = |n: usize| Frame::from(Bytes::from(vec![0u8; n]));
        let gso = Frame::new(
            Bytes::from(vec![0u8; 9000]),
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: gso::GSO_TCPV4,
                gso_size: 1448,
                ..VnetHdr::default()
            },
        );
        let partial = Frame::new(
            Bytes::from(vec![0u8; 100]),
            VnetHdr {
                flags: F_NEEDS_CSUM,
                ..VnetHdr::default()
            },
        );
        let batch = [
            plain(60),
            plain(1514),
            gso,
            partial,
            plain(9000), // over a UMEM frame
            plain(60),
        ];
        let mut runs = Vec::new();
        let mut rest = &batch[..];
        while let Some((xsk, n)) = first_run(rest) {
            runs.push((xsk, n));
            rest = &rest[n..];
        }
        assert_eq!(runs, [(true, 2), (false, 3), (true, 1)]);
        assert_eq!(first_run(&[]), None);
    }

    #[test]
    fn attach_mode_parses() {
        assert_eq!("auto".parse(), Ok(AttachMode::Auto));
        assert_eq!("native".parse(), Ok(AttachMode::Native));
        assert_eq!("generic".parse(), Ok(AttachMode::Generic));
        assert!("fast".parse::<AttachMode>().is_err());
    }

    #[test]
    fn partial_checksum_is_finished_and_real_ones_left_alone() {
        // IPv4/TCP, 192.0.2.1 → 192.0.2.2, 4 bytes of payload.
        let mut f = vec![0u8; 14 + 20 + 20 + 4];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&44u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
        f[34 + 12] = 0x50;
        f[54..58].copy_from_slice(b"abcd");
        let pseudo = gso::sum(&f[26..34], 0) + 6 + 24;
        f[34 + 16..34 + 18].copy_from_slice(&gso::fold(pseudo).to_be_bytes());
        assert!(fix_partial_csum(&mut f));
        assert_eq!(gso::fold(gso::sum(&f[34..58], pseudo)), 0xffff);
        // Now complete: left alone.
        let before = f.clone();
        assert!(!fix_partial_csum(&mut f));
        assert_eq!(f, before);
    }

    /// A checksum-partial frame: VLAN tags with these TPIDs, IPv4 or IPv6 (with extension
    /// headers of these types and lengths), a TCP or UDP header and 37 payload bytes, the
    /// checksum field seeded with the folded pseudo-header sum. Returns it with the offset
    /// of the L4 header and the pseudo-header's bytes.
    fn partial_frame(
        tpids: &[u16],
        v6_exts: Option<&[(u8, usize)]>,
        proto: u8,
    ) -> (Vec<u8>, usize, Vec<u8>) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for tpid in tpids {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&10u16.to_be_bytes());
        }
        let mut l4 = vec![0u8; if proto == 6 { 20 } else { 8 }];
        if proto == 6 {
            l4[12] = 0x50;
        }
        l4.extend((0..37u8).map(|i| i.wrapping_mul(41)));
        let l4_len = l4.len();
        if proto == 17 {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let ip = match v6_exts {
            None => {
                let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
                ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
                ip.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
                f.extend_from_slice(&[0x08, 0x00]);
                ip
            }
            Some(exts) => {
                let ext_len: usize = exts.iter().map(|e| e.1).sum();
                let mut ip = vec![0x60, 0, 0, 0, 0, 0, exts.first().map_or(proto, |e| e.0), 64];
                ip[4..6].copy_from_slice(&((ext_len + l4_len) as u16).to_be_bytes());
                for host in [3, 2] {
                    ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]);
                    ip.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, host]);
                }
                for (i, &(kind, len)) in exts.iter().enumerate() {
                    let mut e = vec![0u8; len];
                    e[0] = exts.get(i + 1).map_or(proto, |e| e.0);
                    if kind != 44 {
                        e[1] = (len / 8 - 1) as u8;
                    }
                    ip.extend_from_slice(&e);
                }
                f.extend_from_slice(&[0x86, 0xdd]);
                ip
            }
        };
        let mut pseudo = if v6_exts.is_some() {
            ip[8..40].to_vec()
        } else {
            ip[12..20].to_vec()
        };
        f.extend_from_slice(&ip);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        let at = f.len();
        f.extend_from_slice(&l4);
        let seed = gso::fold(gso::sum(&pseudo, 0));
        let field = at + if proto == 6 { 16 } else { 6 };
        f[field..field + 2].copy_from_slice(&seed.to_be_bytes());
        (f, at, pseudo)
    }

    /// The checksum of the L4 packet at `at` verifies.
    fn verifies(f: &[u8], at: usize, pseudo: &[u8]) -> bool {
        gso::fold(gso::sum(&f[at..], gso::sum(pseudo, 0))) == 0xffff
    }

    #[test]
    fn stacked_vlan_tags_are_looked_through() {
        for tpids in [&[0x88a8, 0x8100][..], &[0x8100, 0x8100, 0x8100]] {
            for v6 in [None, Some(&[][..])] {
                for proto in [6, 17] {
                    let (mut f, at, pseudo) = partial_frame(tpids, v6, proto);
                    assert_eq!(
                        at,
                        14 + 4 * tpids.len() + if v6.is_some() { 40 } else { 20 }
                    );
                    assert!(!verifies(&f, at, &pseudo));
                    assert!(fix_partial_csum(&mut f), "{tpids:x?} {v6:?} {proto}");
                    assert!(verifies(&f, at, &pseudo), "{tpids:x?} {v6:?} {proto}");
                    assert!(!fix_partial_csum(&mut f));
                }
            }
        }
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        for exts in [
            &[(0, 8)][..],
            &[(0, 8), (60, 16)],
            &[(0, 16), (43, 24), (44, 8), (60, 8)],
        ] {
            for tpids in [&[][..], &[0x8100]] {
                for proto in [6, 17] {
                    let (mut f, at, pseudo) = partial_frame(tpids, Some(exts), proto);
                    let ext_len: usize = exts.iter().map(|e| e.1).sum();
                    assert_eq!(at, 14 + 4 * tpids.len() + 40 + ext_len);
                    assert!(fix_partial_csum(&mut f), "{exts:?} {tpids:x?} {proto}");
                    assert!(verifies(&f, at, &pseudo), "{exts:?} {tpids:x?} {proto}");
                }
            }
        }
    }

    #[test]
    fn fragments_and_short_frames_are_left_alone() {
        // A fragment header with more-fragments set: the L4 packet is not all there.
        let (mut f, _, _) = partial_frame(&[], Some(&[(44, 8)]), 17);
        f[14 + 40 + 3] = 1;
        let before = f.clone();
        assert!(!fix_partial_csum(&mut f));
        assert_eq!(f, before);
        // An IPv4 fragment.
        let (mut f, _, _) = partial_frame(&[0x8100], None, 6);
        f[18 + 6] = 0x20;
        assert!(!fix_partial_csum(&mut f));
        // Cut anywhere: never a panic, never a change.
        let (f, _, _) = partial_frame(&[0x88a8, 0x8100], Some(&[(0, 8)]), 6);
        for len in 0..f.len() {
            let mut cut = f[..len].to_vec();
            assert!(!fix_partial_csum(&mut cut), "{len}");
            assert_eq!(cut, f[..len]);
            assert_eq!(to_frame(&f[..len]), f[..len]);
        }
    }
}
