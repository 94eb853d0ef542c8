//! The TC entry point, `etherws_tc`, and the socket filter of a TC port's packet socket,
//! `etherws_sock`: the GSO-preserving in-kernel path (`--offload tc`).
//!
//! The TC program runs at TC ingress, after GRO: it sees socket buffers, 64 KB super-frames
//! included, with their checksum and GSO metadata, and forwards them with `bpf_redirect` into
//! the egress device, which finishes or segments them only if it must. It shares the decision
//! (`decide.rs`) with XDP; it forwards only into ports with `PORT_F_TC`.
//!
//! The port's packet socket sees every ingress frame *before* TC decides (the taps run first),
//! and a frame TC redirects into another port's device again as `PACKET_OUTGOING` on that
//! port's socket. The socket filter predicts TC's verdict from the same maps (read-only) and
//! drops those copies, so userspace gets each frame once. Contract: `../README.md`.

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_hdr_start_off::BPF_HDR_START_MAC},
    helpers::{bpf_redirect, bpf_skb_load_bytes_relative},
    macros::{classifier, socket_filter},
    programs::{SkBuffContext, TcContext},
};
use etherws_common::{
    ETH_HLEN, ETH_P_8021Q, FdbKey, PORT_F_TC, PortConf, TX_MARK, VLAN_HLEN, VLAN_VID_MASK,
};

use crate::decide::{Frame, L2, Verdict, decide};
use crate::{ETHERWS_FDB, ETHERWS_PORTS, counters};

/// `skb->pkt_type` of a frame a device sends (what a packet tap sees on egress).
const PACKET_OUTGOING: u32 = 4;

/// What the socket filter returns to keep a frame whole.
const KEEP: i64 = 0xffff_ffff;

/// A socket buffer, read through `bpf_skb_load_bytes_relative` from its MAC header (which works
/// at TC ingress, in a packet socket's filter, and in `BPF_PROG_TEST_RUN` alike), its VLAN tag
/// from the metadata if the kernel has taken it out of the frame.
struct Skb {
    skb: *mut __sk_buff,
    /// Whether `decide` may refresh `seen_ns` (the TC program) or not (the socket filter).
    write: bool,
}

impl Skb {
    /// Copies `N` bytes at `offset` from the MAC header, or `None` if the frame is shorter.
    #[inline(always)]
    fn load<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        // Not zeroed first: LLVM would call `memset`, which BPF has not got.
        let mut b = core::mem::MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: `self.skb` is the context the kernel passed the program; the helper writes
        // `N` bytes into `b`, which has room for them (all of them, or zeroes on failure).
        let r = unsafe {
            bpf_skb_load_bytes_relative(
                self.skb as *const _,
                offset,
                b.as_mut_ptr() as *mut _,
                N as u32,
                BPF_HDR_START_MAC,
            )
        };
        // SAFETY: the helper initialised all `N` bytes (it succeeded).
        (r == 0).then(|| unsafe { b.assume_init() })
    }

    /// The `__sk_buff` field `f`.
    #[inline(always)]
    fn field(&self, f: impl FnOnce(&__sk_buff) -> u32) -> u32 {
        // SAFETY: the context the kernel passed the program, valid for its whole run; the
        // fields read are readable by both program types (the verifier checks each access).
        f(unsafe { &*self.skb })
    }
}

impl Frame for Skb {
    #[inline(always)]
    fn l2(&self) -> Option<L2> {
        let h = self.load::<ETH_HLEN>(0)?;
        // Byte by byte: a slice copy may become a call to `memcpy`.
        let dst = [h[0], h[1], h[2], h[3], h[4], h[5]];
        let src = [h[6], h[7], h[8], h[9], h[10], h[11]];
        let vid = if self.field(|s| s.vlan_present) != 0 {
            // The outer tag is metadata now (taken out before the taps and TC run); only an
            // 802.1Q one counts, as in the frame.
            if u16::from_be(self.field(|s| s.vlan_proto) as u16) == ETH_P_8021Q {
                self.field(|s| s.vlan_tci) as u16 & VLAN_VID_MASK
            } else {
                0
            }
        } else if u16::from_be_bytes([h[12], h[13]]) == ETH_P_8021Q {
            // The whole tag must be there, as for XDP.
            let tag = self.load::<VLAN_HLEN>(ETH_HLEN as u32)?;
            u16::from_be_bytes([tag[0], tag[1]]) & VLAN_VID_MASK
        } else {
            0
        };
        Some((dst, src, vid))
    }

    #[inline(always)]
    fn refreshes(&self) -> bool {
        self.write
    }
}

/// The TC entry point: forwards known unicast between TC ports with `bpf_redirect` (GSO and
/// checksum metadata kept), drops what the decision drops, and passes everything else on
/// (`TC_ACT_UNSPEC`: the port's packet socket already has the frame for userspace).
#[classifier]
pub fn etherws_tc(ctx: TcContext) -> i32 {
    let skb = Skb {
        skb: ctx.skb.skb,
        write: true,
    };
    let ifindex = skb.field(|s| s.ifindex);
    // Not a TC port (or not yet): nothing to say about it.
    let Some(conf) = tc_conf(ifindex) else {
        return TC_ACT_UNSPEC;
    };
    // A GSO super-frame counts as the frames it stands for; its length has the MAC header but
    // not a VLAN tag the kernel has taken out into metadata.
    let segs = skb.field(|s| s.gso_segs).max(1) as u64;
    let len = ctx.len() as u64
        + if skb.field(|s| s.vlan_present) != 0 {
            VLAN_HLEN as u64
        } else {
            0
        };
    let rx = counters(ifindex);
    if let Some(c) = rx {
        // SAFETY: this CPU's copy of the map value, valid for the whole run, written by no
        // other run meanwhile.
        unsafe {
            (*c).rx_frames += segs;
            (*c).rx_bytes += len;
        }
    }
    let verdict = decide(&skb, ifindex, &conf, PORT_F_TC);
    if let Verdict::Forward(out) = verdict {
        if let Some(c) = counters(out) {
            // SAFETY: as above, the egress port's counters.
            unsafe {
                (*c).tx_frames += segs;
                (*c).tx_bytes += len;
            }
        }
        // SAFETY: the helper only records the target device; no pointer is passed.
        return unsafe { bpf_redirect(out, 0) } as i32;
    }
    if let Some(c) = rx {
        // SAFETY: as above.
        unsafe {
            // In segments too, as `rx_frames`: userspace's `listPort` subtracts them from it.
            match verdict {
                Verdict::Drop => (*c).dropped += segs,
                Verdict::ToUser => (*c).to_user += segs,
                Verdict::Host => (*c).host += segs,
                Verdict::Forward(_) => {}
            }
        }
    }
    match verdict {
        Verdict::Drop => TC_ACT_SHOT as i32,
        _ => TC_ACT_UNSPEC,
    }
}

/// The socket filter of a TC port's packet socket: drops (returns 0) the ingress frames the
/// TC program will forward or drop, and the outgoing copies of frames it forwarded into this
/// port; keeps everything else. Read-only: no counter, no `seen_ns`.
#[socket_filter]
pub fn etherws_sock(ctx: SkBuffContext) -> i64 {
    let skb = Skb {
        skb: ctx.skb.skb,
        write: false,
    };
    let ifindex = skb.field(|s| s.ifindex);
    if skb.field(|s| s.pkt_type) != PACKET_OUTGOING {
        return match tc_verdict(&skb, ifindex) {
            Some(Verdict::Drop | Verdict::Forward(_)) => 0,
            _ => KEEP,
        };
    }
    // Sent out of this port. A frame our TC program redirected here from TC port S still says
    // it came in on S (`skb_iif`, kept by the redirect; 0 for the host's own frames), and its
    // source station is behind S. That is read from the frame itself, not predicted from the
    // maps, so an FDB or port change between the redirect and this copy (made when the frame
    // leaves the device's queue, which can be much later) does not let it through.
    // The switch's own frame: a segment the kernel cut from a super-frame it sent through
    // this socket (see `TX_MARK`).
    if skb.field(|s| s.mark) == TX_MARK {
        return 0;
    }
    let from = skb.field(|s| s.ingress_ifindex);
    if from == 0 || from == ifindex || tc_conf(from).is_none() {
        return KEEP;
    }
    let Some((_, src, vid)) = skb.l2() else {
        return KEEP;
    };
    let Some(s) = ETHERWS_FDB.get_ptr(FdbKey { vid, mac: src }) else {
        return KEEP;
    };
    // SAFETY: `get_ptr` returned a pointer to the map's value, valid while the program runs;
    // the field is read once.
    if unsafe { core::ptr::read_volatile(&(*s).ifindex) } == from {
        0
    } else {
        KEEP
    }
}

/// What the TC program decides for `skb` arriving on TC port `ifindex` (`None`: not a TC port).
#[inline(always)]
fn tc_verdict(skb: &Skb, ifindex: u32) -> Option<Verdict> {
    let conf = tc_conf(ifindex)?;
    Some(decide(skb, ifindex, &conf, PORT_F_TC))
}

/// The configuration of `ifindex` if it is a TC port (`PORT_F_TC`).
#[inline(always)]
fn tc_conf(ifindex: u32) -> Option<PortConf> {
    let conf = ETHERWS_PORTS.get_ptr(ifindex)?;
    // SAFETY: `get_ptr` returned a pointer to the map's value, which stays allocated while the
    // program runs; userspace may rewrite it concurrently, so it is copied once.
    let conf: PortConf = unsafe { core::ptr::read_volatile(conf) };
    (conf.flags & PORT_F_TC != 0).then_some(conf)
}
