//! eBPF programs of etherws, built for `bpfel-unknown-none` by `cargo xtask build-ebpf`.
//!
//! One XDP program, `etherws_xdp`, attached to every offloaded netdev port. Per frame it either
//! forwards it in the kernel to another offloaded port (through a DEVMAP), drops it, hands it
//! to the port's AF_XDP socket so the userspace switch deals with it, or passes a frame the host
//! may want (broadcast, multicast, its own address) to the kernel's stack, where the port's
//! packet socket picks it up for the switch. The contract with
//! userspace (maps, keys, values, decisions) is written down in `../README.md`; the types and map
//! names come from `etherws-common`. The decision itself, which does not depend on the program
//! type, is in `decide.rs`; this file carries it out the XDP way.
//!
//! Everything is bounds-checked against `data_end` before it is read (the verifier insists), no
//! code path can panic, and nothing is logged.
#![no_std]
#![no_main]

mod decide;
mod tc;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_xdp_get_buff_len,
    macros::{map, xdp},
    maps::{DevMapHash, HashMap, PerCpuHashMap, XskMap},
    programs::XdpContext,
};
use etherws_common::{
    ETH_HLEN, ETH_P_8021Q, FDB_MAX_ENTRIES, FdbKey, FdbValue, PORT_F_GENERIC, PORTS_MAX_ENTRIES,
    PortConf, PortCounters, VLAN_HLEN, XSKS_MAX_ENTRIES,
};

use crate::decide::{Frame, L2, Verdict, decide, l2_in_packet};

// The statics' names are the map names userspace looks up: keep them equal to the `MAP_*`
// constants of etherws-common (the xtask eBPF tests open every map by those constants).

/// The forwarding database, mirrored from userspace.
#[map]
static ETHERWS_FDB: HashMap<FdbKey, FdbValue> = HashMap::with_max_entries(FDB_MAX_ENTRIES, 0);

/// Offloaded ports by ingress ifindex.
#[map]
static ETHERWS_PORTS: HashMap<u32, PortConf> = HashMap::with_max_entries(PORTS_MAX_ENTRIES, 0);

/// In-kernel forwarding targets, keyed by ifindex.
#[map]
static ETHERWS_DEVMAP: DevMapHash = DevMapHash::with_max_entries(PORTS_MAX_ENTRIES, 0);

/// AF_XDP sockets, at `PortConf::xsk_base + rx_queue_index`.
#[map]
static ETHERWS_XSKS: XskMap = XskMap::with_max_entries(XSKS_MAX_ENTRIES, 0);

/// Per-port counters by ifindex.
#[map]
static ETHERWS_COUNTERS: PerCpuHashMap<u32, PortCounters> =
    PerCpuHashMap::with_max_entries(PORTS_MAX_ENTRIES, 0);

/// The XDP entry point (see the module's doc).
#[xdp]
pub fn etherws_xdp(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // Not an offloaded port: this program has nothing to say about it.
    let Some(conf) = ETHERWS_PORTS.get_ptr(ifindex) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `get_ptr` returned a pointer to the map's value, which stays allocated while the
    // program runs; userspace may rewrite it concurrently, so it is copied once.
    let conf: PortConf = unsafe { core::ptr::read_volatile(conf) };
    // Whole frame length, fragments of a multi-buffer frame included.
    // SAFETY: `ctx.ctx` is the xdp_md the kernel passed this program, valid for its whole run;
    // the helper only reads it.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let rx = counters(ifindex);
    if let Some(c) = rx {
        // SAFETY: `counters` returned a pointer to this CPU's copy of the map value, which stays
        // allocated while the program runs and which no other program run writes meanwhile.
        unsafe {
            (*c).rx_frames += 1;
            (*c).rx_bytes += len;
        }
    }
    let action = xdp_action_of(&ctx, ifindex, &conf, len);
    if let Some(c) = rx {
        // SAFETY: as above: this CPU's copy of the counters, valid for the whole run.
        unsafe {
            match action {
                Action::Drop => (*c).dropped += 1,
                Action::ToUser(xdp_action::XDP_REDIRECT) => (*c).to_user += 1,
                Action::ToUser(_) => (*c).passed += 1,
                Action::Host => (*c).host += 1,
                Action::Partial(xdp_action::XDP_REDIRECT) => {
                    (*c).to_user += 1;
                    (*c).csum_partial += 1;
                }
                Action::Partial(_) => {
                    if conf.flags & PORT_F_GENERIC != 0 {
                        (*c).host += 1; // to the stack on purpose
                    } else {
                        (*c).passed += 1; // no socket bound for the queue
                    }
                    (*c).csum_partial += 1;
                }
                Action::Forward => {}
            }
        }
    }
    match action {
        Action::Drop => xdp_action::XDP_DROP,
        Action::ToUser(a) => a,
        Action::Host => xdp_action::XDP_PASS,
        Action::Partial(a) => a,
        Action::Forward => xdp_action::XDP_REDIRECT,
    }
}

/// What became of a frame of an offloaded port.
#[derive(Clone, Copy)]
enum Action {
    /// Dropped.
    Drop,
    /// Redirected to the AF_XDP socket (`XDP_REDIRECT`), or passed to the stack (`XDP_PASS`)
    /// when no socket is bound for the RX queue.
    ToUser(u32),
    /// Passed to the kernel's stack (`XDP_PASS`): a frame the host may want.
    Host,
    /// Known unicast for another offloaded port, but with its checksum left to the hardware:
    /// to the AF_XDP socket (`XDP_REDIRECT`), or to the stack (`XDP_PASS`) in generic mode.
    Partial(u32),
    /// Redirected into the DEVMAP (counted on the egress port already).
    Forward,
}

/// An XDP frame's addresses are in its packet data, VLAN tags included.
impl Frame for XdpContext {
    #[inline(always)]
    fn l2(&self) -> Option<L2> {
        l2_in_packet(self.data(), self.data_end())
    }
}

/// Carries out the shared [`decide`] the XDP way: to userspace through the AF_XDP socket (or,
/// for a generic-mode port's checksum-partial frame, the stack), forwarding through the DEVMAP
/// after the checksum-partial check. `len` is the frame's length, for the egress counters.
#[inline(always)]
fn xdp_action_of(ctx: &XdpContext, ifindex: u32, conf: &PortConf, len: u64) -> Action {
    // In generic mode a local sender's frames may be GSO super-frames, too big for an AF_XDP
    // frame; they all have their checksum left to the hardware, and the stack's packet socket
    // takes them whole with the metadata saying so.
    let generic = conf.flags & PORT_F_GENERIC != 0;
    let to_user = || {
        if generic && csum_partial_suspect(ctx) {
            Action::Partial(xdp_action::XDP_PASS)
        } else {
            Action::ToUser(xsk_redirect(ctx, conf))
        }
    };
    let out = match decide(ctx, ifindex, conf, 0) {
        Verdict::Drop => return Action::Drop,
        Verdict::Host => return Action::Host,
        Verdict::ToUser => return to_user(),
        Verdict::Forward(out) => out,
    };
    // A checksum a local sender left to the "hardware" would arrive unfinished: XDP carries no
    // such metadata. Userspace finishes it (it knows how: a packet socket's virtio header in
    // generic mode, the checksum itself otherwise).
    if csum_partial_suspect(ctx) {
        return Action::Partial(if generic {
            xdp_action::XDP_PASS
        } else {
            xsk_redirect(ctx, conf)
        });
    }
    match ETHERWS_DEVMAP.redirect(out, 0) {
        Ok(_) => {
            if let Some(c) = counters(out) {
                // SAFETY: `counters` returned a pointer to this CPU's copy of the egress port's
                // counters, valid for the whole run and written by no other run meanwhile.
                unsafe {
                    (*c).tx_frames += 1;
                    (*c).tx_bytes += len;
                }
            }
            Action::Forward
        }
        // Not in the DEVMAP (userspace has not added it, or removed it): userspace forwards.
        Err(_) => to_user(),
    }
}

/// Redirects the frame to the port's AF_XDP socket for its RX queue: returns `XDP_REDIRECT`,
/// or `XDP_PASS` if no socket is bound there.
#[inline(always)]
fn xsk_redirect(ctx: &XdpContext, conf: &PortConf) -> u32 {
    let index = conf.xsk_base.wrapping_add(ctx.rx_queue_index());
    match ETHERWS_XSKS.redirect(index, xdp_action::XDP_PASS as u64) {
        Ok(a) | Err(a) => a,
    }
}

/// The counters of port `ifindex` on this CPU, created (zeroed) if missing.
#[inline(always)]
pub(crate) fn counters(ifindex: u32) -> Option<*mut PortCounters> {
    if let Some(c) = ETHERWS_COUNTERS.get_ptr_mut(ifindex) {
        return Some(c);
    }
    // Userspace may create the entry when it adds the port; if not, the first frame does. A
    // failure (map full, or a race with another CPU) only costs this frame's counts.
    //
    // The zeroes are written with one volatile store per field, and the value is passed by
    // reference: LLVM would otherwise turn the zeroing (or the copy of a zeroed value) into a
    // call to `memset`, a BPF-to-BPF call the verifier rejects (the function has no BTF).
    let mut zero = core::mem::MaybeUninit::<PortCounters>::uninit();
    let words = zero.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<PortCounters>() / 8 {
        // SAFETY: `PortCounters` is made of u64s only, with u64 alignment (asserted in
        // etherws-common), so `words.add(i)` for i < size / 8 is an aligned u64 inside `zero`.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every field was written.
    let zero: &PortCounters = unsafe { zero.assume_init_ref() };
    let _ = ETHERWS_COUNTERS.insert(ifindex, zero, BPF_NOEXIST as u64);
    ETHERWS_COUNTERS.get_ptr_mut(ifindex)
}

/// Whether the frame is an IPv4/IPv6 TCP or UDP segment whose checksum field holds exactly the
/// folded pseudo-header sum: what a sender with checksum offload writes, leaving the rest to
/// the device (`CHECKSUM_PARTIAL`). A complete checksum equals that only by chance (1 in 65536);
/// such a frame merely takes the slower path, where userspace verifies before it changes
/// anything. IPv4 fragments and IPv6 extension headers are not looked into.
#[inline(always)]
fn csum_partial_suspect(ctx: &XdpContext) -> bool {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_HLEN > end {
        return false;
    }
    let p = start as *const u8;
    // Every read below is of bytes whose range was checked against `end` first.
    let be16 = |q: *const u8| {
        // SAFETY: each caller passes a pointer to 2 bytes inside the packet (checked against
        // `end` before the call); `read_unaligned` needs no alignment.
        u16::from_be_bytes(unsafe { core::ptr::read_unaligned(q as *const [u8; 2]) }) as u32
    };
    let mut l3 = start + ETH_HLEN;
    // SAFETY: bytes 12..14 (the EtherType) are inside the ETH_HLEN checked above.
    let mut proto = be16(unsafe { p.add(12) });
    if proto == ETH_P_8021Q as u32 {
        if start + ETH_HLEN + VLAN_HLEN > end {
            return false;
        }
        // SAFETY: bytes 16..18 (the inner EtherType) are inside ETH_HLEN + VLAN_HLEN, checked.
        proto = be16(unsafe { p.add(16) });
        l3 += VLAN_HLEN;
    }
    let (l4, l4_proto, l4_len, mut sum) = if proto == 0x0800 {
        if l3 + 20 > end {
            return false;
        }
        let ip = l3 as *const u8;
        // SAFETY: byte 0 of the 20-byte IPv4 header checked above.
        let vihl = unsafe { *ip };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        // SAFETY: bytes 2..4 (total length) of the checked IPv4 header.
        let total = be16(unsafe { ip.add(2) }) as usize;
        // SAFETY: bytes 6..8 (flags, fragment offset) of the checked IPv4 header.
        let frag = be16(unsafe { ip.add(6) }) & 0x3fff;
        if vihl >> 4 != 4 || ihl < 20 || total < ihl || frag != 0 {
            return false;
        }
        // SAFETY: byte 9 (protocol) of the checked IPv4 header.
        let l4_proto = unsafe { *ip.add(9) } as u32;
        let mut sum = 0u32;
        for i in 0..4 {
            // SAFETY: bytes 12..20 (the addresses) of the checked IPv4 header, i < 4.
            sum += be16(unsafe { ip.add(12 + 2 * i) });
        }
        (l3 + ihl, l4_proto, (total - ihl) as u32, sum)
    } else if proto == 0x86dd {
        if l3 + 40 > end {
            return false;
        }
        let ip = l3 as *const u8;
        // SAFETY: byte 6 (next header) of the 40-byte IPv6 header checked above.
        let l4_proto = unsafe { *ip.add(6) } as u32;
        // SAFETY: bytes 4..6 (payload length) of the checked IPv6 header.
        let plen = be16(unsafe { ip.add(4) });
        let mut sum = 0u32;
        for i in 0..16 {
            // SAFETY: bytes 8..40 (the addresses) of the checked IPv6 header, i < 16.
            sum += be16(unsafe { ip.add(8 + 2 * i) });
        }
        (l3 + 40, l4_proto, plen, sum)
    } else {
        return false;
    };
    let field = match l4_proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if l4 + field + 2 > end {
        return false;
    }
    sum += l4_proto + l4_len;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    // SAFETY: `l4 + field + 2 <= end` was checked above.
    be16(unsafe { (l4 as *const u8).add(field) }) == sum
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
