//! The forwarding decision every entry point shares: ports, learning (only the refresh of a
//! known source's age), own and group addresses, the FDB lookup of the destination and the
//! checks on the egress port. What differs per program type (how the frame's addresses and VLAN
//! id are read) comes through [`Frame`]; what each entry point does with the verdict (how it
//! redirects, what it counts, what it hands to userspace) stays with the entry point.
//!
//! Every function is `#[inline(always)]`: the verifier sees one flat program per entry point,
//! as before this module existed.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use etherws_common::{
    ETH_ALEN, ETH_HLEN, ETH_P_8021Q, FdbKey, FdbValue, PORT_F_SHUT, PORT_F_USER, PortConf,
    SEEN_REFRESH_NS, VLAN_HLEN, VLAN_VID_MASK,
};

use crate::{ETHERWS_FDB, ETHERWS_PORTS};

/// Destination MAC, source MAC and VLAN id (0 if untagged) of a frame.
pub(crate) type L2 = ([u8; ETH_ALEN], [u8; ETH_ALEN], u16);

/// What a program type provides to [`decide`].
pub(crate) trait Frame {
    /// The frame's [`L2`] addresses and VLAN id, or `None` if it is too short for them (a runt).
    fn l2(&self) -> Option<L2>;

    /// The clock `FdbValue::seen_ns` is kept in (`bpf_ktime_get_ns`, as userspace expects).
    #[inline(always)]
    fn now(&self) -> u64 {
        // SAFETY: the helper has no arguments and no preconditions.
        unsafe { bpf_ktime_get_ns() }
    }

    /// Whether [`decide`] may refresh a known source's `seen_ns` (false: a read-only caller,
    /// such as the socket filter that predicts the TC program's verdict).
    #[inline(always)]
    fn refreshes(&self) -> bool {
        true
    }
}

/// The decision on a frame of an offloaded port.
#[derive(Clone, Copy)]
pub(crate) enum Verdict {
    /// Drop it (port shut, runt, or its destination is on the ingress port).
    Drop,
    /// Hand it to userspace (the switch forwards, floods or learns).
    ToUser,
    /// A frame the host may want (group bit, or the port's own address): to the kernel's stack.
    Host,
    /// Known unicast for the offloaded port with this ifindex, which is neither shut nor left
    /// to userspace: the entry point forwards it its own way (or hands it to userspace if it
    /// cannot).
    Forward(u32),
}

/// Decides what becomes of frame `frame` that arrived on the offloaded port `ifindex`, whose
/// configuration is `conf`. Refreshes the age of a known source that is still on this port
/// (unless [`Frame::refreshes`] says not to). The egress port of a [`Verdict::Forward`] has
/// every `PORT_F_*` bit of `need` set (0 for XDP, `PORT_F_TC` for the TC program, which
/// forwards only into TC ports); otherwise the frame goes to userspace.
#[inline(always)]
pub(crate) fn decide<F: Frame>(frame: &F, ifindex: u32, conf: &PortConf, need: u32) -> Verdict {
    if conf.flags & PORT_F_SHUT != 0 {
        return Verdict::Drop;
    }
    let Some((dst, src, vid)) = frame.l2() else {
        // Shorter than its Ethernet (and VLAN) header: userspace would discard it too.
        return Verdict::Drop;
    };

    // Frames the host's own stack may want (broadcast, multicast, the interface's address) go
    // to the stack as they would without the offload; the port's packet socket, which sees
    // what the stack receives, hands them to the switch too. (XDP cannot copy a frame, and
    // sending them to the AF_XDP socket instead would leave the host deaf on this interface:
    // no ARP, no neighbour discovery.)
    let host = dst[0] & 1 != 0 || is_own(&dst, &conf.mac);
    let user = if host { Verdict::Host } else { Verdict::ToUser };
    if conf.flags & PORT_F_USER != 0 {
        return user;
    }

    // Learning. The kernel only refreshes the age of a source it already knows on this very
    // port; a new source or a moved one goes to userspace, which learns it and updates the map,
    // whatever the destination.
    let Some(src) = ETHERWS_FDB.get_ptr_mut(FdbKey { vid, mac: src }) else {
        return user;
    };
    // SAFETY: a valid map value (userspace may rewrite it concurrently; a stale read only sends
    // one frame to userspace, or forwards it as the old entry said).
    unsafe {
        if (*src).port != conf.port || (*src).ifindex != ifindex {
            return user;
        }
        if frame.refreshes() {
            let now = frame.now();
            if now.wrapping_sub((*src).seen_ns) >= SEEN_REFRESH_NS {
                (*src).seen_ns = now;
            }
        }
    }
    if host {
        return Verdict::Host;
    }

    let Some(dst) = ETHERWS_FDB.get_ptr(FdbKey { vid, mac: dst }) else {
        return Verdict::ToUser; // unknown unicast: flooded by userspace
    };
    // SAFETY: `get_ptr` returned a pointer to the map's value, which stays allocated while the
    // program runs; copied once, since userspace may rewrite it.
    let dst: FdbValue = unsafe { core::ptr::read_volatile(dst) };
    if dst.port == conf.port || dst.ifindex == ifindex {
        return Verdict::Drop; // never back out of the ingress port
    }
    if dst.ifindex == 0 {
        return Verdict::ToUser; // on a port only userspace reaches
    }
    // The egress port must be an offloaded port that is neither shut nor left to userspace
    // (see `PORT_F_USER`); otherwise userspace decides.
    let Some(out) = ETHERWS_PORTS.get_ptr(dst.ifindex) else {
        return Verdict::ToUser;
    };
    // SAFETY: `get_ptr` returned a pointer to the map's value, which stays allocated while the
    // program runs; the field is read once.
    let flags = unsafe { core::ptr::read_volatile(&(*out).flags) };
    if flags & (PORT_F_SHUT | PORT_F_USER) != 0 || flags & need != need {
        return Verdict::ToUser;
    }
    Verdict::Forward(dst.ifindex)
}

/// Whether `dst` is the interface's own address `own` (all zeroes: unknown, never matches).
/// Written out byte by byte: an array comparison may become a call to `bcmp`, which BPF has
/// not got.
#[inline(always)]
fn is_own(dst: &[u8; ETH_ALEN], own: &[u8; ETH_ALEN]) -> bool {
    let mut diff = 0u8;
    let mut any = 0u8;
    for i in 0..ETH_ALEN {
        diff |= dst[i] ^ own[i];
        any |= own[i];
    }
    diff == 0 && any != 0
}

/// The [`L2`] of the frame in packet memory `start..end` (the first 802.1Q tag's VLAN id, 0 if
/// untagged), or `None` if the frame is too short for them. For program types that see the
/// Ethernet header, tags included, in their packet data.
#[inline(always)]
pub(crate) fn l2_in_packet(start: usize, end: usize) -> Option<L2> {
    if start + ETH_HLEN > end {
        return None;
    }
    let p = start as *const u8;
    // SAFETY: the ETH_HLEN bytes at `start` are inside the packet (checked above).
    let (dst, src, proto) = unsafe {
        (
            core::ptr::read_unaligned(p as *const [u8; ETH_ALEN]),
            core::ptr::read_unaligned(p.add(ETH_ALEN) as *const [u8; ETH_ALEN]),
            u16::from_be_bytes(core::ptr::read_unaligned(p.add(12) as *const [u8; 2])),
        )
    };
    let vid = if proto == ETH_P_8021Q {
        if start + ETH_HLEN + VLAN_HLEN > end {
            return None;
        }
        // SAFETY: the TCI is inside the packet (checked above).
        let tci = unsafe { core::ptr::read_unaligned(p.add(ETH_HLEN) as *const [u8; 2]) };
        u16::from_be_bytes(tci) & VLAN_VID_MASK
    } else {
        0
    };
    Some((dst, src, vid))
}
