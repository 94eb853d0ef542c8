//! TC ports (`--offload=tc`): the TC program of `etherws-ebpf` at the interface's TC ingress,
//! the socket filter on its packet socket, and the packet socket itself as the port's I/O.
//!
//! - The TC program sees frames after GRO (64 KB super-frames with their checksum and GSO
//!   metadata) and forwards known unicast between TC ports with `bpf_redirect`: the egress
//!   device segments only if it must, so veth-to-veth forwarding keeps GSO;
//! - the port's packet socket (`port/netdev.rs`: vnet header, super-frames) carries everything
//!   else to and from the switch. Its socket filter, attached before `bind`, drops the frames
//!   the TC program forwards or drops (the socket sees them first: taps run before TC) and the
//!   outgoing copies of frames it forwarded into this port, so userspace gets each frame once;
//! - attached with tcx (`BPF_LINK_CREATE`, first in the chain): the link lives as long as its
//!   descriptor, so delport, exit and SIGKILL all detach it. Without tcx (Linux < 6.6), a
//!   clsact qdisc and a netlink filter, which outlive a crash: stale filters of ours are
//!   removed before attaching. `ETHERWS_TC_NETLINK=1` forces netlink (for the tests).

use aya::programs::tc::{
    NlOptions, SchedClassifierLinkId, TcAttachOptions, qdisc_add_clsact, qdisc_detach_program,
};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use etherws_common::TC_PROGRAM;

use super::{
    Guard, Inner, Loaded, Offload, OffloadError, PortInfo, Program, load_object,
    refresh_every_second,
};
use crate::port::netdev::{Netdev, NetdevError};
use crate::port::{Port, PortIo};
use crate::sys::netif::{Hardware, Netif};

/// An offloaded TC port: its packet socket (filtered) carries the frames the TC program leaves
/// to userspace and the switch's frames for it.
pub(crate) struct TcPort {
    name: String,
    dev: Netdev,
    /// Reads the device's MAC address every second (it may change at any time).
    netif: Netif,
    guard: Guard,
}

impl Offload {
    /// Attaches the TC program to `name` (whose index and MAC `hw` says) and opens its packet
    /// socket with the socket filter; `why` says why TC was chosen. The port is not switched
    /// in the kernel until [`Offload::activate`] gives it its number.
    ///
    /// # Errors
    ///
    /// An [`OffloadError`] saying why TC cannot serve the port (the caller falls back to
    /// AF_PACKET); nothing of the attempt is left behind.
    pub(crate) fn prepare_tc(
        &self,
        name: &str,
        hw: Hardware,
        netif: Netif,
        why: &str,
    ) -> Result<TcPort, OffloadError> {
        let ifindex = hw.index;
        let mut inner = self.lock();
        if inner.ports.contains_key(&ifindex) {
            return Err(OffloadError::Offloaded(name.to_string()));
        }
        if inner.loaded.is_none() {
            inner.loaded = Some(load_object()?);
        }
        let r = prepare_locked(&mut inner, name, ifindex);
        if r.is_err() && inner.ports.is_empty() {
            inner.loaded = None;
        }
        let (dev, link, mode) = r?;
        let why = match (mode, foreign_tcx(name)) {
            ("tcx", Some(others)) => {
                tracing::warn!(
                    interface = name,
                    "other tcx programs on the interface: {others}; ours runs first, one \
                     attached first later would run before it"
                );
                format!("{why}; other tcx programs: {others}")
            }
            _ => why.to_string(),
        };
        inner.ports.insert(
            ifindex,
            PortInfo {
                tc_link: Some(link),
                ..PortInfo::new(name, hw, Program::Tc, why, mode)
            },
        );
        drop(inner);
        tracing::info!(interface = name, attach = mode, "TC program attached");
        Ok(TcPort {
            name: name.to_string(),
            dev,
            netif,
            guard: Guard {
                offload: self.clone(),
                ifindex,
            },
        })
    }
}

/// Loads the TC programs if needed, opens the filtered packet socket and attaches the TC
/// program; undoes what it did if a step fails.
fn prepare_locked(
    inner: &mut Inner,
    name: &str,
    ifindex: u32,
) -> Result<(Netdev, SchedClassifierLinkId, &'static str), OffloadError> {
    let l = inner.loaded.as_mut().expect("loaded by the caller");
    l.load_tc().map_err(OffloadError::Load)?;
    let sock = l.sock_program().map_err(OffloadError::Load)?;
    let dev = Netdev::open_filtered(name, ifindex, |fd| {
        sock.attach(fd)
            .map_err(|e| NetdevError::Filter(e.to_string()))
    })
    .map_err(OffloadError::Companion)?;
    let (link, mode) = attach(l, name)?;
    Ok((dev, link, mode))
}

/// Attaches the TC program at `name`'s ingress: with tcx, first in the chain, else (or with
/// `ETHERWS_TC_NETLINK=1`) as a netlink filter of a clsact qdisc, after removing stale filters
/// of ours (a crashed switch leaves them). Returns the link and the mode's name.
fn attach(
    l: &mut Loaded,
    name: &str,
) -> Result<(SchedClassifierLinkId, &'static str), OffloadError> {
    // Netlink filters outlive their process: one of ours left by a crash would run after our
    // tcx program (or first) with the maps of a switch that is gone.
    remove_stale_filters(name);
    let prog = l.tc_program().map_err(OffloadError::Load)?;
    let mut errors = Vec::new();
    if std::env::var("ETHERWS_TC_NETLINK").as_deref() != Ok("1") {
        let tcx = TcAttachOptions::TcxOrder(LinkOrder::first());
        match prog.attach_with_options(name, TcAttachType::Ingress, tcx) {
            Ok(link) => return Ok((link, "tcx")),
            Err(e) => errors.push(failure("tcx", &e)),
        }
    }
    // Exists already (EEXIST) or cannot be made: the attach says which.
    let _ = qdisc_add_clsact(name);
    let nl = TcAttachOptions::Netlink(NlOptions::default());
    match prog.attach_with_options(name, TcAttachType::Ingress, nl) {
        Ok(link) => Ok((link, "netlink")),
        Err(e) => {
            errors.push(failure("netlink", &e));
            Err(OffloadError::AttachTc(errors))
        }
    }
}

/// Removes the netlink TC filters named after our program from `name`'s ingress, which a
/// switch killed while it had a TC port attached that way leaves behind (none is the usual
/// case: the error that says so is no news).
pub(super) fn remove_stale_filters(name: &str) {
    if qdisc_detach_program(name, TcAttachType::Ingress, TC_PROGRAM).is_ok() {
        tracing::info!(interface = name, "removed a stale TC filter of ours");
    }
}

/// The other tcx ingress programs of `name` (their names), if any: one that runs before ours
/// would decide first, and the socket filter's prediction of our verdict would be wrong.
fn foreign_tcx(name: &str) -> Option<String> {
    let (_, progs) = SchedClassifier::query_tcx(name, TcAttachType::Ingress).ok()?;
    let others: Vec<String> = progs
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_string())
        .filter(|n| n != TC_PROGRAM)
        .collect();
    (!others.is_empty()).then(|| others.join(", "))
}

/// Detaches the TC program's `link` from port `ifindex`.
pub(super) fn detach(l: &mut Loaded, link: SchedClassifierLinkId, ifindex: u32) {
    match l.tc_program() {
        Ok(p) => {
            if let Err(e) = p.detach(link) {
                tracing::warn!(ifindex, "cannot detach the TC program: {e}");
            }
        }
        Err(e) => tracing::warn!(ifindex, "cannot detach the TC program: {e}"),
    }
}

impl Port for TcPort {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        let TcPort {
            name,
            dev,
            netif,
            guard,
        } = self;
        tokio::select! {
            r = dev.run(io) => r,
            () = refresh_every_second(&guard, &netif, &name) => Ok(()),
        }
    }
}

/// `mode: error: cause: …`, the kernel's answer included.
fn failure(mode: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = format!("{mode}: {err}");
    let mut cause = err.source();
    while let Some(e) = cause {
        s.push_str(&format!(": {e}"));
        cause = e.source();
    }
    s
}
