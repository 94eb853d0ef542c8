//! Software GRO: consecutive TCP segments of one flow, within one receive batch, made into one
//! super-frame — the reverse of [`gso::segment`].
//!
//! An AF_XDP socket hands over MTU-sized frames without any metadata, one by one; a WebSocket
//! tunnel fed by them costs a frame header, a queue slot and a decision per 1,500 bytes where
//! a packet socket gets 64 KB super-frames from the kernel's GRO. [`coalesce`] does the same
//! over one batch, after wireguard-go's `tun/offload_linux.go` and Linux's `tcp_gro_receive`:
//!
//! - a *candidate* is a TCP segment with payload over IPv4 without options or IPv6 without
//!   extension headers, at most [`MAX_TAGS`] VLAN tags, no fragment, an IP length equal to the
//!   frame's, flags exactly ACK or ACK|PSH, and a TCP checksum (and IPv4 header checksum) that
//!   verifies: a corrupt segment is never laundered into a super-frame the receiver trusts;
//! - a *flow* is the Ethernet header (addresses, tags, EtherType: a switch never merges across
//!   stations or VLANs), the IP addresses and the ports;
//! - a segment is appended to its flow's open super-frame if everything but the sequence
//!   number, the IPv4 ID and the checksums is the same (IP TOS/DF/TTL or traffic class, flow
//!   label and hop limit; TCP ACK number, window, header length and options), its sequence
//!   number follows on, the IPv4 ID is the next one (or the same, with DF), every earlier
//!   segment was full-sized (at least [`gso::MIN_GSO_SIZE`] bytes, what a `super/1` peer
//!   takes) and it is no larger, and the result stays within 65,535 bytes of
//!   IP packet, the caller's frame bound, [`MAX_SEGMENTS`] and what [`gso::segment`] takes
//!   back (tiny segments behind long headers would weigh more than twice the super-frame);
//! - a segment with PSH ends its super-frame; any other frame of an open flow (a pure ACK, a
//!   FIN, a segment that cannot be appended) closes it, so nothing overtakes anything within a
//!   flow. A super-frame takes the place of its first segment.
//!
//! The super-frame carries a `virtio_net_hdr` as a packet socket would give it: checksum
//! partial (the TCP checksum field holds the pseudo-header sum), `GSO_TCPV4`/`GSO_TCPV6`,
//! `gso_size` the first segment's payload. Pure functions on byte slices: no sockets, no
//! logging. Memory: each super-frame is one buffer grown as segments are appended (at most
//! twice its length), bounded by the frame bound.

use bytes::Bytes;

use crate::wire::gso::{self, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VnetHdr};
use crate::wire::{self, ip_protocol, ipv4, ipv6, tcp};

/// Most segments in one super-frame (one batch's worth, as Linux's GRO).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// VLAN tags a candidate may carry: as many as [`gso::segment`] takes back.
pub(crate) const MAX_TAGS: usize = 2;

/// The largest IP packet (its length field).
const MAX_IP_LEN: usize = 0xffff;

/// TCP flags: ACK.
const ACK: u8 = 0x10;

/// IPv4 flags: don't fragment.
const DF: u16 = 0x4000;

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Where a TCP packet's headers are: enough to tell its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    l3: usize,
    l4: usize,
    v6: bool,
}

impl Flow {
    /// The flow of any TCP packet whose ports are within the frame (not a later fragment).
    fn of(f: &[u8]) -> Option<Flow> {
        let h = wire::walk(f).ok()?;
        let ok = h.l4_protocol == ip_protocol::TCP
            && !h.is_later_fragment()
            && h.l4_offset + tcp::field::DST_PORT.end <= f.len();
        ok.then(|| Flow {
            l3: h.l3_offset(),
            l4: h.l4_offset,
            v6: h.is_ipv6(),
        })
    }

    fn addrs(self, f: &[u8]) -> &[u8] {
        let r = if self.v6 {
            ipv6::field::SRC_ADDR.start..ipv6::field::DST_ADDR.end
        } else {
            ipv4::field::SRC_ADDR.start..ipv4::field::DST_ADDR.end
        };
        &f[self.l3 + r.start..self.l3 + r.end]
    }

    /// Same Ethernet header (addresses, tags, EtherType), IP addresses and ports.
    fn same(self, a: &[u8], other: Flow, b: &[u8]) -> bool {
        let ports = tcp::field::DST_PORT.end;
        self.l3 == other.l3
            && self.v6 == other.v6
            && a[..self.l3] == b[..other.l3]
            && self.addrs(a) == other.addrs(b)
            && a[self.l4..self.l4 + ports] == b[other.l4..other.l4 + ports]
    }
}

/// A segment that may be merged: its flow and where its payload starts.
#[derive(Clone, Copy, Debug)]
struct Seg {
    flow: Flow,
    /// End of the TCP header: the payload's offset.
    hdrs: usize,
    seq: u32,
    psh: bool,
}

impl Seg {
    /// `f` as a candidate for merging (see the module's doc), or `None`.
    fn candidate(f: &[u8]) -> Option<Seg> {
        let h = wire::walk(f).ok()?;
        if h.l4_protocol != ip_protocol::TCP || h.is_fragment() || h.vlan_tags > MAX_TAGS {
            return None;
        }
        let flow = Flow {
            l3: h.l3_offset(),
            l4: h.l4_offset,
            v6: h.is_ipv6(),
        };
        let ip_hlen = if flow.v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::MIN_HEADER_LEN
        };
        if flow.l4 != flow.l3 + ip_hlen || h.ip_end() != Some(f.len()) {
            return None;
        }
        let hdrs = flow.l4 + h.l4_header_len.ok()?;
        if hdrs >= f.len() {
            return None; // no payload
        }
        let flags = f[flow.l4 + tcp::field::FLAGS];
        if flags != ACK && flags != ACK | tcp::PSH {
            return None;
        }
        if !flow.v6 {
            let ip = &f[flow.l3..flow.l4];
            // Only DF may be set among the flags (no MF, no offset, no reserved bit).
            if be16(ip, ipv4::field::FLG_OFF.start) & !DF != 0 || !checks(ip, 0) {
                return None;
            }
        }
        let l4_len = f.len() - flow.l4;
        let pseudo = gso::pseudo_sum(f, flow.l3, flow.v6, ip_protocol::TCP, l4_len);
        if !checks(&f[flow.l4..], pseudo) {
            return None;
        }
        let s = &f[flow.l4 + tcp::field::SEQ_NUM.start..];
        Some(Seg {
            flow,
            hdrs,
            seq: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            psh: flags & tcp::PSH != 0,
        })
    }

    fn payload(&self, f: &[u8]) -> usize {
        f.len() - self.hdrs
    }
}

/// Whether a checksummed span (its checksum field included) verifies.
fn checks(data: &[u8], acc: u64) -> bool {
    gso::fold(gso::sum(data, acc)) == 0xffff
}

/// How the IPv4 IDs of a super-frame's segments run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ids {
    /// Not known yet (one segment).
    Open,
    /// One more per segment.
    Incrementing,
    /// The same in every segment (DF set).
    Fixed,
}

/// A super-frame being built: its first segment and what is appended to it.
struct Group {
    /// Its place in the output.
    at: usize,
    first: Bytes,
    seg: Seg,
    /// The first segment and the payloads appended, once there is one.
    merged: Option<Vec<u8>>,
    /// The first segment's payload length: the segment size.
    gso_size: usize,
    /// The last segment's payload length.
    last_payload: usize,
    next_seq: u32,
    last_id: u16,
    ids: Ids,
    count: usize,
    len: usize,
}

impl Group {
    fn new(at: usize, first: Bytes, seg: Seg) -> Group {
        let payload = seg.payload(&first);
        let last_id = if seg.flow.v6 {
            0
        } else {
            be16(&first, seg.flow.l3 + ipv4::field::IDENT.start)
        };
        Group {
            at,
            seg,
            merged: None,
            gso_size: payload,
            last_payload: payload,
            next_seq: seg.seq.wrapping_add(payload as u32),
            last_id,
            ids: Ids::Open,
            count: 1,
            len: first.len(),
            first,
        }
    }

    /// Whether segment `s` (`f`), of this group's flow, may be appended; and how the IDs run
    /// then.
    fn fits(&self, f: &[u8], s: &Seg, max_len: usize) -> Option<Ids> {
        let (a, g) = (&self.first[..], &self.seg);
        let (l3, l4) = (g.flow.l3, g.flow.l4);
        let payload = s.payload(f);
        let len = self.len + payload;
        let ok = s.hdrs == g.hdrs
            && s.seq == self.next_seq
            && self.last_payload == self.gso_size
            && self.gso_size >= usize::from(gso::MIN_GSO_SIZE)
            && payload <= self.gso_size
            && self.count < MAX_SEGMENTS
            && len <= max_len
            && len - l3 <= MAX_IP_LEN
            // What `gso::segment` takes back: tiny segments behind long headers are not.
            && gso::bounded(0, g.hdrs, self.count + 1, len - g.hdrs).is_ok()
            // ACK number, data offset; window, urgent pointer (flags are ACK or ACK|PSH).
            && a[l4 + 8..l4 + 13] == f[l4 + 8..l4 + 13]
            && a[l4 + 14..l4 + 16] == f[l4 + 14..l4 + 16]
            && a[l4 + 18..g.hdrs] == f[l4 + 18..g.hdrs];
        if !ok {
            return None;
        }
        if g.flow.v6 {
            // Version, traffic class, flow label; hop limit.
            let same = a[l3..l3 + 4] == f[l3..l3 + 4]
                && a[l3 + ipv6::field::HOP_LIMIT] == f[l3 + ipv6::field::HOP_LIMIT];
            return same.then_some(Ids::Open);
        }
        let same = a[l3 + ipv4::field::DSCP_ECN] == f[l3 + ipv4::field::DSCP_ECN]
            && a[l3 + ipv4::field::TTL] == f[l3 + ipv4::field::TTL]
            && a[l3 + 6..l3 + 8] == f[l3 + 6..l3 + 8];
        if !same {
            return None;
        }
        let id = be16(f, l3 + ipv4::field::IDENT.start);
        let df = be16(f, l3 + ipv4::field::FLG_OFF.start) & DF != 0;
        let next = id == self.last_id.wrapping_add(1);
        let fixed = df && id == self.last_id;
        match self.ids {
            Ids::Open if next => Some(Ids::Incrementing),
            Ids::Open if fixed => Some(Ids::Fixed),
            Ids::Incrementing if next => Some(Ids::Incrementing),
            Ids::Fixed if fixed => Some(Ids::Fixed),
            _ => None,
        }
    }

    /// Appends segment `s` (`f`), which [`Group::fits`].
    fn append(&mut self, f: &[u8], s: &Seg, ids: Ids) {
        let payload = &f[s.hdrs..];
        let first = &self.first;
        let merged = self.merged.get_or_insert_with(|| {
            // Grown as needed: at most twice what it holds.
            let mut v = Vec::with_capacity(first.len() + payload.len());
            v.extend_from_slice(first);
            v
        });
        merged.extend_from_slice(payload);
        if s.psh {
            merged[self.seg.flow.l4 + tcp::field::FLAGS] |= tcp::PSH;
        }
        self.len = merged.len();
        self.last_payload = payload.len();
        self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
        if !self.seg.flow.v6 {
            self.last_id = be16(f, self.seg.flow.l3 + ipv4::field::IDENT.start);
        }
        self.ids = ids;
        self.count += 1;
    }

    /// The frame this group makes: its first segment as it came if nothing was appended,
    /// else the super-frame with its lengths, IPv4 header checksum, TCP pseudo-header sum
    /// and `virtio_net_hdr`.
    fn finish(self) -> (Bytes, VnetHdr) {
        let Some(mut f) = self.merged else {
            return (self.first, VnetHdr::default());
        };
        let Flow { l3, l4, v6 } = self.seg.flow;
        if v6 {
            let plen = f.len() - l3 - ipv6::HEADER_LEN;
            put16(&mut f, l3 + ipv6::field::PAYLOAD_LEN.start, plen as u16);
        } else {
            let len = f.len() - l3;
            put16(&mut f, l3 + ipv4::field::LENGTH.start, len as u16);
            put16(&mut f, l3 + ipv4::field::CHECKSUM.start, 0);
            let c = !gso::fold(gso::sum(&f[l3..l4], 0));
            put16(&mut f, l3 + ipv4::field::CHECKSUM.start, c);
        }
        let l4_len = f.len() - l4;
        let pseudo = gso::fold(gso::pseudo_sum(&f, l3, v6, ip_protocol::TCP, l4_len));
        put16(&mut f, l4 + tcp::field::CHECKSUM.start, pseudo);
        // All within u16: the headers are at most 18 + 40 + 60 bytes, the payload ≤ 65,535.
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: self.seg.hdrs as u16,
            gso_size: self.gso_size as u16,
            csum_start: l4 as u16,
            csum_offset: tcp::field::CHECKSUM.start as u16,
        };
        (Bytes::from(f), hdr)
    }
}

/// Coalesces the TCP segments of one receive batch, in order, into super-frames (see the
/// module's doc), pushing every resulting frame and its `virtio_net_hdr` (all zero for a
/// frame left as it came) to `out`. `max_len` bounds a super-frame's length. Returns how many
/// segments were appended to another (`frames` minus the frames pushed).
///
/// Meant for one batch (tens of frames): the open flows are searched one by one.
pub(crate) fn coalesce(
    frames: impl IntoIterator<Item = Bytes>,
    max_len: usize,
    out: &mut Vec<(Bytes, VnetHdr)>,
) -> usize {
    let mut open: Vec<Group> = Vec::new();
    let mut merged = 0;
    let close = |g: Group, out: &mut Vec<(Bytes, VnetHdr)>| {
        let at = g.at;
        out[at] = g.finish();
    };
    for f in frames {
        let seg = Seg::candidate(&f);
        let flow = seg.map(|s| s.flow).or_else(|| Flow::of(&f));
        let mine = flow.and_then(|fl| open.iter().position(|g| g.seg.flow.same(&g.first, fl, &f)));
        if let (Some(s), Some(i)) = (seg, mine) {
            if let Some(ids) = open[i].fits(&f, &s, max_len) {
                open[i].append(&f, &s, ids);
                merged += 1;
                if s.psh {
                    close(open.swap_remove(i), out);
                }
                continue;
            }
        }
        if let Some(i) = mine {
            close(open.swap_remove(i), out);
        }
        match seg {
            Some(s) if !s.psh => {
                open.push(Group::new(out.len(), f, s));
                out.push((Bytes::new(), VnetHdr::default()));
            }
            _ => out.push((f, VnetHdr::default())),
        }
    }
    for g in open {
        close(g, out);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const OPTS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    const MAX: usize = 65535 + 14 + 4;

    /// What a segment is made of; [`Spec::build`] makes it with good checksums.
    #[derive(Clone, Debug)]
    struct Spec {
        dst: [u8; 6],
        tag: Option<u16>,
        v6: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        id: u16,
        df: bool,
        opts: Vec<u8>,
        sport: u16,
        payload: Vec<u8>,
    }

    fn spec(seq: u32, len: usize) -> Spec {
        Spec {
            dst: MAC_B,
            tag: None,
            v6: false,
            seq,
            ack: 0x0102_0304,
            flags: ACK,
            id: 0x1234,
            df: true,
            opts: OPTS.to_vec(),
            sport: 40000,
            payload: (0..len).map(|i| (i * 7 + seq as usize) as u8).collect(),
        }
    }

    impl Spec {
        fn build(&self) -> Bytes {
            let mut f = Vec::new();
            f.extend_from_slice(&self.dst);
            f.extend_from_slice(&MAC_A);
            if let Some(t) = self.tag {
                f.extend_from_slice(&[0x81, 0x00]);
                f.extend_from_slice(&t.to_be_bytes());
            }
            let l3 = f.len() + 2;
            let thl = 20 + self.opts.len();
            let l4_len = thl + self.payload.len();
            if self.v6 {
                f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0x12, 0x34]);
                f.extend_from_slice(&(l4_len as u16).to_be_bytes());
                f.extend_from_slice(&[6, 64]);
                f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
                f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            } else {
                f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
                f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
                f.extend_from_slice(&self.id.to_be_bytes());
                f.extend_from_slice(&[if self.df { 0x40 } else { 0 }, 0, 64, 6, 0, 0]);
                f.extend_from_slice(&[192, 0, 2, 3, 192, 0, 2, 2]);
                let c = !gso::fold(gso::sum(&f[l3..], 0));
                put16(&mut f, l3 + 10, c);
            }
            let l4 = f.len();
            f.extend_from_slice(&self.sport.to_be_bytes());
            f.extend_from_slice(&5201u16.to_be_bytes());
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&self.ack.to_be_bytes());
            f.extend_from_slice(&[((thl / 4) as u8) << 4, self.flags, 0x01, 0xf5, 0, 0, 0, 0]);
            f.extend_from_slice(&self.opts);
            f.extend_from_slice(&self.payload);
            let pseudo = gso::pseudo_sum(&f, l3, self.v6, 6, f.len() - l4);
            let c = !gso::fold(gso::sum(&f[l4..], pseudo));
            put16(&mut f, l4 + 16, c);
            Bytes::from(f)
        }
    }

    /// A run of `n` full segments of `mss` bytes, then one of `tail` bytes (if any).
    fn run(n: usize, mss: usize, tail: usize, with: impl Fn(&mut Spec)) -> Vec<Spec> {
        let mut seq = 0xffff_f000u32; // wraps
        let mut out = Vec::new();
        for i in 0..n + usize::from(tail > 0) {
            let len = if i < n { mss } else { tail };
            let mut s = spec(seq, len);
            s.id = 0x1234u16.wrapping_add(i as u16);
            with(&mut s);
            seq = seq.wrapping_add(len as u32);
            out.push(s);
        }
        out
    }

    fn gro(specs: &[Spec]) -> (Vec<(Bytes, VnetHdr)>, usize) {
        let mut out = Vec::new();
        let n = coalesce(specs.iter().map(Spec::build), MAX, &mut out);
        (out, n)
    }

    /// The frames `out` stands for, super-frames cut back by `gso::segment`, IPv4 IDs (and
    /// so header checksums) aside.
    fn resegment(out: &[(Bytes, VnetHdr)]) -> Vec<Bytes> {
        out.iter()
            .flat_map(|(f, h)| {
                if h.is_gso() {
                    gso::segment(h, f).expect("segments")
                } else {
                    assert!(h.is_plain());
                    vec![f.clone()]
                }
            })
            .map(|f| without_id(&f))
            .collect()
    }

    /// A frame with its IPv4 ID and header checksum zeroed.
    fn without_id(f: &[u8]) -> Bytes {
        let mut f = f.to_vec();
        if let Some(fl) = Flow::of(&f).filter(|fl| !fl.v6) {
            f[fl.l3 + 4..fl.l3 + 6].fill(0);
            f[fl.l3 + 10..fl.l3 + 12].fill(0);
        }
        Bytes::from(f)
    }

    /// The input as [`resegment`] gives it back.
    fn built(specs: &[Spec]) -> Vec<Bytes> {
        specs.iter().map(|s| without_id(&s.build())).collect()
    }

    /// The frames of `frames` with source port `port`.
    fn of_port(frames: &[Bytes], port: u16) -> Vec<Bytes> {
        let port_of = |f: &Bytes| Flow::of(f).map(|fl| be16(f, fl.l4));
        frames
            .iter()
            .filter(|f| port_of(f) == Some(port))
            .cloned()
            .collect()
    }

    #[test]
    fn full_segments_are_appended_and_a_short_tail_ends_it() {
        let specs = run(5, 1448, 100, |_| {});
        let (out, merged) = gro(&specs);
        assert_eq!((out.len(), merged), (1, 5));
        let (f, h) = &out[0];
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!((h.gso_size, h.csum_start, h.csum_offset), (1448, 34, 16));
        assert_eq!((h.flags, usize::from(h.hdr_len)), (F_NEEDS_CSUM, 34 + 32));
        assert_eq!(f.len(), 66 + 5 * 1448 + 100);
        assert_eq!(resegment(&out), built(&specs));
        // Another full segment after the short one starts afresh.
        let mut more = specs.clone();
        let mut next = spec(specs[5].seq.wrapping_add(100), 1448);
        next.id = specs[5].id.wrapping_add(1);
        more.push(next);
        let (out, merged) = gro(&more);
        assert_eq!((out.len(), merged), (2, 5));
        assert!(out[1].1.is_plain());
        // A longer one than the first does not fit either.
        let mut longer = run(2, 1000, 0, |_| {});
        longer[1].payload.push(0);
        assert_eq!(gro(&longer).1, 0);
    }

    #[test]
    fn psh_ends_a_super_frame() {
        let mut specs = run(4, 1448, 0, |_| {});
        specs[2].flags = ACK | tcp::PSH;
        let (out, merged) = gro(&specs);
        assert_eq!((out.len(), merged), (2, 2));
        assert_eq!(out[0].0[34 + 13], ACK | tcp::PSH);
        assert!(out[1].1.is_plain());
        assert_eq!(resegment(&out), built(&specs));
        // PSH on the first: left alone, and the next one starts afresh.
        specs[0].flags = ACK | tcp::PSH;
        specs[2].flags = ACK;
        let (out, merged) = gro(&specs);
        assert_eq!((out.len(), merged), (2, 2));
        assert!(out[0].1.is_plain() && out[1].1.is_gso());
    }

    #[test]
    fn what_differs_is_not_merged() {
        type Change = fn(&mut Spec);
        let cases: [(&str, Change); 9] = [
            ("options", |s| s.opts[11] = 9),
            ("ack", |s| s.ack += 1),
            ("dst mac", |s| s.dst = [0x02, 0, 0, 0, 0, 0x0c]),
            ("vlan", |s| s.tag = Some(7)),
            ("flags", |s| s.flags = ACK | 0x01),
            ("seq", |s| s.seq = s.seq.wrapping_add(1)),
            ("ip id", |s| s.id = s.id.wrapping_add(1)),
            ("port", |s| s.sport += 1),
            ("urgent", |s| s.flags = ACK | 0x20),
        ];
        for (what, change) in cases {
            let mut specs = run(3, 1448, 0, |_| {});
            change(&mut specs[1]);
            let (out, merged) = gro(&specs);
            assert!(merged <= 1, "{what}: {merged}");
            assert!(out.len() >= 2, "{what}");
            assert_eq!(
                resegment(&out),
                built(&specs),
                "{what}: order and content kept"
            );
        }
    }

    #[test]
    fn a_bad_checksum_is_never_merged() {
        let specs = run(3, 1448, 0, |_| {});
        let mut frames: Vec<Bytes> = specs.iter().map(Spec::build).collect();
        let mut bad = frames[1].to_vec();
        bad[100] ^= 0x40;
        frames[1] = Bytes::from(bad);
        let mut out = Vec::new();
        let merged = coalesce(frames.clone(), MAX, &mut out);
        assert_eq!((out.len(), merged), (3, 0));
        let got: Vec<Bytes> = out.into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, frames, "the corrupt one passes as it came, in order");
        // A bad IPv4 header checksum too.
        let mut frames: Vec<Bytes> = specs.iter().map(Spec::build).collect();
        let mut bad = frames[1].to_vec();
        bad[24] ^= 1; // TTL
        frames[1] = Bytes::from(bad);
        assert_eq!(coalesce(frames, MAX, &mut Vec::new()), 0);
    }

    #[test]
    fn vlan_and_ipv6() {
        for (tag, v6) in [(Some(100), false), (None, true), (Some(5), true)] {
            let specs = run(6, 1428, 7, |s| {
                s.tag = tag;
                s.v6 = v6;
            });
            let (out, merged) = gro(&specs);
            assert_eq!((out.len(), merged), (1, 6), "{tag:?} {v6}");
            let h = out[0].1;
            let l3 = if tag.is_some() { 18 } else { 14 };
            let l4 = l3 + if v6 { 40 } else { 20 };
            assert_eq!(h.csum_start as usize, l4);
            assert_eq!(h.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!(resegment(&out), built(&specs));
        }
        // IPv6 flow label differs.
        let mut specs = run(2, 1428, 0, |s| s.v6 = true);
        let mut b = specs[1].build().to_vec();
        b[17] ^= 1;
        let frames = vec![specs.remove(0).build(), Bytes::from(b)];
        assert_eq!(coalesce(frames, MAX, &mut Vec::new()), 0);
    }

    #[test]
    fn flows_interleave_and_other_frames_close_theirs() {
        // Two flows (different destination stations) interleaved: two super-frames, each at
        // its first segment's place.
        let a = run(3, 1448, 0, |_| {});
        let b = run(3, 1448, 0, |s| s.dst = [0x02, 0, 0, 0, 0, 0x0c]);
        let mixed: Vec<Spec> = a
            .iter()
            .zip(&b)
            .flat_map(|(x, y)| [x.clone(), y.clone()])
            .collect();
        let (out, merged) = gro(&mixed);
        assert_eq!((out.len(), merged), (2, 4));
        assert_eq!(out[0].0[..6], MAC_B);
        assert_eq!(out[1].0[..6], [0x02, 0, 0, 0, 0, 0x0c]);
        // A pure ACK of the flow in the middle closes it: nothing overtakes it, and what
        // follows starts afresh behind it.
        let mut specs = run(5, 1448, 0, |_| {});
        specs[2].payload.clear();
        for s in &mut specs[3..] {
            s.seq = s.seq.wrapping_sub(1448);
        }
        let (out, merged) = gro(&specs);
        assert_eq!((out.len(), merged), (3, 2));
        assert!(out[0].1.is_gso() && out[1].1.is_plain() && out[2].1.is_gso());
        assert_eq!(out[1].0, specs[2].build());
    }

    #[test]
    fn bounds_hold() {
        // 65,535 bytes of IP packet at most.
        let specs = run(60, 1448, 0, |_| {});
        let (out, merged) = gro(&specs);
        assert!(out.iter().all(|(f, _)| f.len() - 14 <= 0xffff));
        assert_eq!(out.len() + merged, 60);
        assert!(out.len() >= 2);
        // 64 segments at most.
        let specs = run(100, 100, 0, |_| {});
        let (out, merged) = gro(&specs);
        assert_eq!((out.len(), merged), (2, 98));
        // Tiny segments: no super-frame that a `super/1` peer would refuse (segments under 48
        // bytes) or that `gso::segment` would (segments weighing more than twice the
        // super-frame).
        let specs = run(40, 47, 0, |_| {});
        assert_eq!(gro(&specs).1, 0);
        let specs = run(64, 48, 0, |_| {});
        let (out, merged) = gro(&specs);
        assert!(merged > 0 && out.len() > 1, "{merged} {}", out.len());
        assert!(
            out.iter()
                .all(|(f, h)| !h.is_gso() || gso::segment(h, f).is_ok())
        );
        assert_eq!(resegment(&out), built(&specs));
        // The caller's bound.
        let mut out = Vec::new();
        let frames = run(10, 1000, 0, |_| {})
            .iter()
            .map(Spec::build)
            .collect::<Vec<_>>();
        coalesce(frames, 3000, &mut out);
        assert!(out.iter().all(|(f, _)| f.len() <= 3000));
    }

    /// A small deterministic generator (xorshift64*) for the property below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
        }
    }

    /// Whatever the mix of three flows (full, short and empty segments, PSH, ACK changes,
    /// IPv6, a VLAN tag), cutting the output back gives each flow's frames in order (IPv4 IDs
    /// aside: `gso::segment` makes them incrementing).
    #[test]
    fn segment_undoes_coalesce() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let mut seqs = [1u32, 0xffff_ff00, 77];
            let mut ids = [1u16, 0xfffe, 9];
            let mut specs = Vec::new();
            for _ in 0..1 + rng.below(64) {
                let flow = rng.below(3) as usize;
                let len = [0, 300, 1200, 1200][rng.below(4) as usize];
                let mut s = spec(seqs[flow], len);
                s.v6 = flow == 1 && case % 2 == 0;
                s.sport = 40000 + flow as u16;
                s.id = ids[flow];
                s.tag = (flow == 2).then_some(42);
                match rng.below(8) {
                    0 => s.flags = ACK | tcp::PSH,
                    1 => s.ack += 1,
                    _ => {}
                }
                seqs[flow] = seqs[flow].wrapping_add(len as u32);
                ids[flow] = ids[flow].wrapping_add(1);
                specs.push(s);
            }
            let (out, merged) = gro(&specs);
            assert_eq!(out.len() + merged, specs.len());
            // Within each flow, the same frames in the same order.
            let (got, want) = (resegment(&out), built(&specs));
            assert_eq!(got.len(), want.len());
            for flow in 0..3 {
                assert_eq!(
                    of_port(&got, 40000 + flow),
                    of_port(&want, 40000 + flow),
                    "{case}"
                );
            }
        }
    }
}
