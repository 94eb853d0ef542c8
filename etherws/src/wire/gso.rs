//! Offloaded frames made plain: what a packet socket with `PACKET_VNET_HDR` delivers, turned
//! into frames any receiver accepts.
//!
//! On an interface with offloads (veth by default, virtio, TAP with a vnet header), the kernel
//! hands a packet socket frames it has not finished:
//! - *checksum-partial* frames (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the TCP/UDP checksum field
//!   only holds the pseudo-header sum, the rest is left to the "hardware";
//! - *GSO super-frames* (`gso_type` ≠ NONE): one TCP or UDP "packet" of up to 64 KB, to be cut
//!   into `gso_size`-byte segments on the way out.
//!
//! Forwarded as they are, both are lost at the far end (a bad checksum, a frame far over the
//! MTU). The `struct virtio_net_hdr` in front of each frame says which is which; this module
//! finishes the work: [`fix_csum`] fills in a checksum in place, [`segment`] cuts a super-frame
//! into plain frames with their own headers and checksums, as the kernel's software GSO would.
//!
//! Pure functions on byte slices: no sockets, no logging.

use bytes::Bytes;

use crate::wire::{self, ip_protocol, ipv4, ipv6, sctp, tcp, udp};

/// Size of `struct virtio_net_hdr` (without `num_buffers`), as `PACKET_VNET_HDR` uses it.
pub(crate) const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end is still to be computed and stored at
/// `csum_start + csum_offset`.
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified (receive side); nothing to do.
pub(crate) const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub(crate) const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO): the super-frame becomes IP fragments.
pub(crate) const GSO_UDP: u8 = 3;
pub(crate) const GSO_TCPV6: u8 = 4;
/// UDP segmentation offload (USO): the super-frame becomes UDP datagrams.
pub(crate) const GSO_UDP_L4: u8 = 5;
/// Bit of `gso_type`: the TCP flow uses ECN (CWR goes on the first segment only).
pub(crate) const GSO_ECN: u8 = 0x80;

/// Smallest segment size a super-frame may have: Linux's smallest TCP MSS (`tcp_min_snd_mss`).
/// Smaller ones would only make a receiver cut a super-frame into thousands of tiny frames; a
/// `super/1` WebSocket peer refuses them, and software GRO makes none.
pub(crate) const MIN_GSO_SIZE: u16 = 48;

/// More segments than this from one super-frame is not something a sane sender asks for.
const MAX_SEGMENTS: usize = 4096;

/// VLAN tags a super-frame may carry: a customer tag inside a service tag (Q-in-Q). Every
/// segment repeats the headers, so a pile of tags would multiply what a super-frame costs.
const MAX_GSO_TAGS: usize = 2;

/// Longest headers (Ethernet, tags, IP with options or extension headers, L4) a super-frame
/// may have: every segment repeats them.
const MAX_GSO_HEADERS: usize = 512;

/// A `struct virtio_net_hdr`. Packet sockets use little-endian fields on little-endian hosts
/// and native ones otherwise (`vio_le()` in the kernel): native byte order either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    /// Length of the headers (informational; the headers are parsed instead).
    pub(crate) hdr_len: u16,
    /// Payload bytes per segment.
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
}

impl VnetHdr {
    pub(crate) fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    pub(crate) fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    pub(crate) fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    #[cfg(test)]
    /// A frame that can go out as it is.
    pub(crate) fn is_plain(&self) -> bool {
        !self.needs_csum() && !self.is_gso()
    }

    /// The header for the same frame with `n` more bytes in front of it (an 802.1Q tag put
    /// back: the kernel counted offsets from the frame without it).
    pub(crate) fn shifted(self, n: u16) -> VnetHdr {
        VnetHdr {
            csum_start: if self.needs_csum() {
                self.csum_start.saturating_add(n)
            } else {
                self.csum_start
            },
            hdr_len: if self.hdr_len != 0 {
                self.hdr_len.saturating_add(n)
            } else {
                0
            },
            ..self
        }
    }

    /// The header for the same frame with `n` bytes fewer in front of its network header
    /// (an 802.1Q tag popped).
    pub(crate) fn unshifted(self, n: u16) -> VnetHdr {
        VnetHdr {
            csum_start: if self.needs_csum() {
                self.csum_start.saturating_sub(n)
            } else {
                self.csum_start
            },
            hdr_len: self.hdr_len.saturating_sub(n),
            ..self
        }
    }
}

/// Why an offloaded frame could not be made plain (it is then dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("checksum at {start}+{offset} lies outside the {len}-byte frame")]
    CsumOutOfRange { start: u16, offset: u16, len: usize },
    #[error("UDP fragmentation offload (UFO) super-frame: not supported")]
    Ufo,
    #[error("unknown GSO type {0:#04x}")]
    UnknownGsoType(u8),
    #[error("GSO super-frame with a segment size of 0")]
    ZeroGsoSize,
    #[error("GSO super-frame would make more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error("malformed GSO super-frame: {0}")]
    Malformed(&'static str),
    #[error("GSO super-frame with more than {MAX_GSO_TAGS} VLAN tags")]
    TooManyTags,
    #[error("GSO super-frame with {0} bytes of headers (at most {MAX_GSO_HEADERS})")]
    HeadersTooLong(usize),
    #[error("GSO super-frame whose segments would be more than twice its size")]
    Expansion,
    #[error("UDP (USO) super-frame: its datagrams cannot be made smaller")]
    UsoResegment,
    #[error("GSO super-frame with {hdrs} bytes of headers: no room for payload in {max_len}")]
    NoRoom { max_len: usize, hdrs: usize },
    #[error("TCP frame with a bad checksum: not cut")]
    BadChecksum,
}

/// What a super-frame may cost once cut into `n` segments, each repeating its `hdrs` bytes of
/// headers: a few segments more than a sane sender makes, headers no longer than real ones,
/// and at most twice its own size in all (a hostile peer's super-frame of tiny segments behind
/// long headers would otherwise become a hundred times its size in a slow port's queue).
pub(crate) fn bounded(tags: usize, hdrs: usize, n: usize, payload: usize) -> Result<(), Error> {
    if n > MAX_SEGMENTS {
        return Err(Error::TooManySegments);
    }
    if tags > MAX_GSO_TAGS {
        return Err(Error::TooManyTags);
    }
    if hdrs > MAX_GSO_HEADERS {
        return Err(Error::HeadersTooLong(hdrs));
    }
    // n × hdrs + payload ≤ 2 × (hdrs + payload)
    if n.saturating_sub(2).saturating_mul(hdrs) > payload {
        return Err(Error::Expansion);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// checksums

/// Adds `data` to a one's-complement sum accumulator: big-endian 16-bit words, an odd last
/// byte padded with zero. Fold the result with [`fold`]. (32-bit words summed into 64 bits
/// give the same folded sum, since 2^16 ≡ 1 modulo 0xffff; no overflow below 2^32 words.)
pub(crate) fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        i = 2;
    }
    if rest.len() > i {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a [`sum`] accumulator to 16 bits (end-around carry); the checksum is its complement.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// CRC32c (Castagnoli, reflected), as SCTP uses; `crc32c(b"123456789") == 0xe306_9283`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

// ---------------------------------------------------------------------------------------------
// header fields (the headers themselves are found by `wire::walk`)

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The pseudo-header sum (addresses, protocol, length) for an L4 packet of `len` bytes behind
/// the IP header at `l3`, which must lie within `frame` (as [`wire::walk`] finds it).
pub(crate) fn pseudo_sum(frame: &[u8], l3: usize, v6: bool, proto: u8, len: usize) -> u64 {
    let ip = &frame[l3..];
    let addrs = if v6 {
        &ip[ipv6::field::SRC_ADDR.start..ipv6::field::DST_ADDR.end]
    } else {
        &ip[ipv4::field::SRC_ADDR.start..ipv4::field::DST_ADDR.end]
    };
    sum(addrs, 0) + u64::from(proto) + len as u64
}

// ---------------------------------------------------------------------------------------------
// checksum-partial frames

/// Completes the checksum of a `NEEDS_CSUM` frame in place (standard `CHECKSUM_PARTIAL`
/// semantics: the field at `csum_start + csum_offset` holds the pseudo-header sum; the
/// complement of the one's-complement sum from `csum_start` to the end, that field included,
/// goes there). An SCTP packet gets its CRC32c instead, as the kernel flags those the same way.
/// Bytes past the end of the IP packet (Ethernet padding) are left out.
pub(crate) fn fix_csum(hdr: &VnetHdr, frame: &mut [u8]) -> Result<(), Error> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    let out_of_range = Error::CsumOutOfRange {
        start: hdr.csum_start,
        offset: hdr.csum_offset,
        len: frame.len(),
    };
    if field + 2 > frame.len() {
        return Err(out_of_range);
    }
    let headers = wire::walk(frame).ok();
    let end = headers
        .and_then(|h| h.ip_end())
        .filter(|&e| e >= field + 2 && e <= frame.len())
        .unwrap_or(frame.len());
    let proto = headers
        .filter(|h| h.l4_offset == start)
        .map(|h| h.l4_protocol);

    let crc_field = sctp::field::CHECKSUM;
    if proto == Some(ip_protocol::SCTP) && usize::from(hdr.csum_offset) == crc_field.start {
        let crc_at = field..field + crc_field.len();
        if crc_at.end > end {
            return Err(out_of_range);
        }
        frame[crc_at.clone()].fill(0);
        let crc = crc32c(&frame[start..end]);
        frame[crc_at].copy_from_slice(&crc.to_le_bytes());
        return Ok(());
    }
    let mut csum = !fold(sum(&frame[start..end], 0));
    if csum == 0 && proto == Some(ip_protocol::UDP) {
        // 0 means "no checksum" in UDP; 0xffff is the same value in one's complement.
        csum = 0xffff;
    }
    put16(frame, field, csum);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// segmentation

/// Cuts a GSO super-frame into plain frames of at most `gso_size` payload bytes each, every
/// one with its own copy of the Ethernet (and VLAN), IP and TCP/UDP headers, fixed up as the
/// kernel's software GSO does: IPv4 total length, id (+1 per segment) and header checksum;
/// IPv6 payload length; TCP sequence number, FIN/PSH on the last segment only, CWR on the
/// first only; UDP length; and a full TCP/UDP checksum (pseudo-header included).
///
/// `hdr.csum_start`, if set, must already count a VLAN tag put back in front (see
/// [`VnetHdr::shifted`]); the headers are parsed from the frame itself, so only the
/// segmentation parameters of `hdr` are needed.
pub(crate) fn segment(hdr: &VnetHdr, frame: &[u8]) -> Result<Vec<Bytes>, Error> {
    cut(hdr, frame, usize::MAX)
}

/// [`segment`] into frames of at most `max_len` bytes each: a TCP super-frame is cut with a
/// smaller segment size than its `gso_size` where its segments would be longer (TCP allows
/// any segmentation of its byte stream). A UDP (USO) super-frame is refused
/// ([`Error::UsoResegment`]): its segments are datagrams, whose boundaries the application
/// chose. So is a frame whose headers leave no room for payload within `max_len`.
pub(crate) fn segment_to(hdr: &VnetHdr, frame: &[u8], max_len: usize) -> Result<Vec<Bytes>, Error> {
    if hdr.gso_type & !GSO_ECN == GSO_UDP_L4 {
        return Err(Error::UsoResegment);
    }
    cut(hdr, frame, max_len)
}

/// Cuts a plain TCP frame into frames of at most `max_len` bytes, as [`segment_to`] cuts a
/// super-frame (one copy when it fits already): for the segments of a connection whose SYN
/// was not clamped, or whose sender ignored the MSS. Refused: anything but one whole TCP
/// packet that fills the frame (not a fragment, no Ethernet padding, no IPv6 jumbogram); a
/// SYN, RST or URG; and a frame whose TCP checksum does not verify
/// ([`Error::BadChecksum`]: fresh checksums would make a corrupt frame whole).
pub(crate) fn fit_tcp(frame: &[u8], max_len: usize) -> Result<Vec<Bytes>, Error> {
    let h = wire::walk(frame).map_err(|e| Error::Malformed(e.as_str()))?;
    let l4 = h.l4_offset;
    if h.l4_protocol != ip_protocol::TCP || h.l4_header_len.is_err() || h.is_fragment() {
        return Err(Error::Malformed("not a whole TCP packet"));
    }
    if h.ip_end() != Some(frame.len()) {
        return Err(Error::Malformed("IP length other than the frame's"));
    }
    if frame[l4 + tcp::field::FLAGS] & (tcp::SYN | tcp::RST | tcp::URG) != 0 {
        return Err(Error::Malformed("SYN, RST or URG"));
    }
    let v6 = h.is_ipv6();
    let acc = pseudo_sum(frame, h.l3_offset(), v6, ip_protocol::TCP, frame.len() - l4);
    if fold(sum(&frame[l4..], acc)) != 0xffff {
        return Err(Error::BadChecksum);
    }
    let hdr = VnetHdr {
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        gso_size: u16::MAX,
        ..VnetHdr::default()
    };
    segment_to(&hdr, frame, max_len)
}

/// The headers of a super-frame, checked against its GSO type, and that type's L4 protocol.
fn gso_headers(hdr: &VnetHdr, frame: &[u8]) -> Result<(wire::Headers, u8), Error> {
    let (want_v6, want_proto) = match hdr.gso_type & !GSO_ECN {
        GSO_TCPV4 => (Some(false), ip_protocol::TCP),
        GSO_TCPV6 => (Some(true), ip_protocol::TCP),
        GSO_UDP_L4 => (None, ip_protocol::UDP),
        GSO_UDP => return Err(Error::Ufo),
        t => return Err(Error::UnknownGsoType(t)),
    };
    if hdr.gso_size == 0 {
        return Err(Error::ZeroGsoSize);
    }
    let h = wire::walk(frame).map_err(|e| Error::Malformed(e.as_str()))?;
    if want_v6.is_some_and(|v6| v6 != h.is_ipv6()) {
        return Err(Error::Malformed("IP version does not match the GSO type"));
    }
    if h.l4_protocol != want_proto {
        return Err(Error::Malformed("L4 protocol does not match the GSO type"));
    }
    Ok((h, want_proto))
}

/// [`segment`], with segments of at most `max_len` bytes.
fn cut(hdr: &VnetHdr, frame: &[u8], max_len: usize) -> Result<Vec<Bytes>, Error> {
    let (h, want_proto) = gso_headers(hdr, frame)?;
    let (l3, l4, v6) = (h.l3_offset(), h.l4_offset, h.is_ipv6());
    let l4_hlen = h.l4_header_len.map_err(|e| Error::Malformed(e.as_str()))?;
    // All within the frame: the walker checked.
    let hdrs = l4 + l4_hlen;
    let mss = usize::from(hdr.gso_size).min(max_len.saturating_sub(hdrs));
    if mss == 0 {
        return Err(Error::NoRoom { max_len, hdrs });
    }
    // The super-frame's own length fields may be stale (or 0 for BIG TCP): the frame length
    // is what counts.
    let payload = &frame[hdrs..];
    let n = payload.len().div_ceil(mss).max(1);
    bounded(h.vlan_tags, hdrs, n, payload.len())?;
    if hdrs - l3 + mss.min(payload.len()) > 0xffff {
        return Err(Error::Malformed("segment too large for IP"));
    }

    let ip_id = if v6 {
        0
    } else {
        be16(frame, l3 + ipv4::field::IDENT.start)
    };
    let is_tcp = want_proto == ip_protocol::TCP;
    let seq = if is_tcp {
        let s = &frame[l4..][tcp::field::SEQ_NUM];
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    } else {
        0
    };
    let ihl = l4 - l3;

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let off = i * mss;
        let chunk = &payload[off.min(payload.len())..(off + mss).min(payload.len())];
        let mut seg = Vec::with_capacity(hdrs + chunk.len());
        seg.extend_from_slice(&frame[..hdrs]);
        seg.extend_from_slice(chunk);
        let l4_len = l4_hlen + chunk.len();

        if v6 {
            let plen = hdrs - l3 - ipv6::HEADER_LEN + chunk.len();
            put16(&mut seg, l3 + ipv6::field::PAYLOAD_LEN.start, plen as u16);
        } else {
            let at = |f: std::ops::Range<usize>| l3 + f.start;
            put16(
                &mut seg,
                at(ipv4::field::LENGTH),
                (hdrs - l3 + chunk.len()) as u16,
            );
            put16(
                &mut seg,
                at(ipv4::field::IDENT),
                ip_id.wrapping_add(i as u16),
            );
            put16(&mut seg, at(ipv4::field::CHECKSUM), 0);
            let c = !fold(sum(&seg[l3..l3 + ihl], 0));
            put16(&mut seg, at(ipv4::field::CHECKSUM), c);
        }

        let field = if is_tcp {
            let s = seq.wrapping_add(off as u32);
            seg[l4..][tcp::field::SEQ_NUM].copy_from_slice(&s.to_be_bytes());
            let flags = l4 + tcp::field::FLAGS;
            if i + 1 < n {
                seg[flags] &= !(tcp::FIN | tcp::PSH);
            }
            if i > 0 {
                seg[flags] &= !tcp::CWR;
            }
            l4 + tcp::field::CHECKSUM.start
        } else {
            put16(&mut seg, l4 + udp::field::LENGTH.start, l4_len as u16);
            l4 + udp::field::CHECKSUM.start
        };
        put16(&mut seg, field, 0);
        let acc = pseudo_sum(&seg, l3, v6, want_proto, l4_len);
        let mut c = !fold(sum(&seg[l4..], acc));
        if c == 0 && !is_tcp {
            c = 0xffff;
        }
        put16(&mut seg, field, c);
        out.push(Bytes::from(seg));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{ETHERTYPE_IPV4 as ETH_P_IP, ETHERTYPE_IPV6 as ETH_P_IPV6};
    use crate::wire::ip_protocol::{SCTP as IPPROTO_SCTP, TCP as IPPROTO_TCP, UDP as IPPROTO_UDP};
    use crate::wire::tcp::{CWR as TCP_CWR, FIN as TCP_FIN, PSH as TCP_PSH};

    // --- an independent, deliberately naive checksum for verification ---

    fn naive_csum(parts: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(p);
            if bytes.len() % 2 == 1 {
                // parts are summed as if each started on a word boundary
                bytes.push(0);
            }
        }
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += (u32::from(w[0]) << 8) | u32::from(*w.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// True if the L4 checksum of a plain IPv4/IPv6 frame verifies.
    fn l4_csum_ok(f: &[u8], l3: usize, v6: bool) -> bool {
        let (src_dst, proto, l4) = if v6 {
            (&f[l3 + 8..l3 + 40], f[l3 + 6], l3 + 40)
        } else {
            (
                &f[l3 + 12..l3 + 20],
                f[l3 + 9],
                l3 + usize::from(f[l3] & 15) * 4,
            )
        };
        let len = (f.len() - l4) as u32;
        let mut pseudo = src_dst.to_vec();
        pseudo.extend_from_slice(&len.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, proto]);
        naive_csum(&[&pseudo, &f[l4..]]) == 0
    }

    fn ipv4_csum_ok(f: &[u8], l3: usize) -> bool {
        naive_csum(&[&f[l3..l3 + usize::from(f[l3] & 15) * 4]]) == 0
    }

    // --- frame builders ---

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

    fn eth(tag: Option<u16>, ethertype: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        if let Some(tci) = tag {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    const SEQ: u32 = 0xffff_f000; // wraps during the test

    /// A TCP header with the given flags and 12 bytes of options (timestamps).
    fn tcp_hdr(flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 32];
        put16(&mut t, 0, 40000);
        put16(&mut t, 2, 5201);
        t[4..8].copy_from_slice(&SEQ.to_be_bytes());
        t[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = flags;
        put16(&mut t, 14, 501);
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        t
    }

    fn udp_hdr() -> Vec<u8> {
        let mut u = vec![0u8; 8];
        put16(&mut u, 0, 40000);
        put16(&mut u, 2, 4789);
        u
    }

    fn ipv4_hdr(proto: u8, l4_len: usize) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        put16(&mut h, 2, (20 + l4_len) as u16);
        h.extend_from_slice(&[192, 0, 2, 3, 192, 0, 2, 2]);
        let c = naive_csum(&[&h]);
        put16(&mut h, 10, c);
        h
    }

    fn ipv6_hdr(proto: u8, l4_len: usize) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        put16(&mut h, 4, l4_len as u16);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h
    }

    /// A frame as the kernel hands out a CHECKSUM_PARTIAL one: the L4 checksum field holds
    /// the folded pseudo-header sum (not complemented). Returns (frame, header).
    fn partial(
        tag: Option<u16>,
        v6: bool,
        proto: u8,
        l4: Vec<u8>,
        data: &[u8],
        gso: Option<(u8, u16)>,
    ) -> (Vec<u8>, VnetHdr) {
        let l4_len = l4.len() + data.len();
        let mut f = eth(tag, if v6 { ETH_P_IPV6 } else { ETH_P_IP });
        let l3 = f.len();
        if v6 {
            f.extend_from_slice(&ipv6_hdr(proto, l4_len));
        } else {
            f.extend_from_slice(&ipv4_hdr(proto, l4_len));
        }
        let l4_off = f.len();
        let csum_offset: u16 = if proto == IPPROTO_TCP { 16 } else { 6 };
        f.extend_from_slice(&l4);
        if proto == IPPROTO_UDP {
            put16(&mut f, l4_off + 4, l4_len as u16);
        }
        f.extend_from_slice(data);
        let seed = fold(pseudo_sum(&f, l3, v6, proto, l4_len));
        put16(&mut f, l4_off + usize::from(csum_offset), seed);
        let (gso_type, gso_size) = gso.unwrap_or((GSO_NONE, 0));
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: (l4_off + l4.len()) as u16,
            gso_size,
            csum_start: l4_off as u16,
            csum_offset,
        };
        (f, hdr)
    }

    #[test]
    fn vnet_hdr_round_trip() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        #[cfg(target_endian = "little")]
        assert_eq!(h.to_bytes(), [1, 0x81, 66, 0, 0xa8, 5, 34, 0, 16, 0]);
        assert!(VnetHdr::default().is_plain());
        assert!(
            VnetHdr {
                flags: F_DATA_VALID,
                ..VnetHdr::default()
            }
            .is_plain()
        );
        let s = h.shifted(4);
        assert_eq!((s.csum_start, s.hdr_len, s.gso_size), (38, 70, 1448));
        // Without NEEDS_CSUM, csum_start means nothing and stays put.
        let s = VnetHdr { flags: 0, ..h }.shifted(4);
        assert_eq!(s.csum_start, 34);
    }

    #[test]
    fn sum_matches_naive() {
        for len in 0..80 {
            let d = payload(len);
            assert_eq!(!fold(sum(&d, 0)), naive_csum(&[&d]), "len {len}");
        }
        // RFC 1071 example.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    fn check_fix(tag: Option<u16>, v6: bool, proto: u8, l4: Vec<u8>, len: usize) {
        let (mut f, hdr) = partial(tag, v6, proto, l4, &payload(len), None);
        let l3 = if tag.is_some() { 18 } else { 14 };
        assert!(
            !l4_csum_ok(&f, l3, v6),
            "seeded frame should not verify yet"
        );
        fix_csum(&hdr, &mut f).unwrap();
        assert!(
            l4_csum_ok(&f, l3, v6),
            "tag {tag:?} v6 {v6} proto {proto} len {len}"
        );
        if !v6 {
            assert!(ipv4_csum_ok(&f, l3));
        }
    }

    #[test]
    fn fix_csum_tcp_and_udp() {
        for len in [0, 1, 2, 3, 100, 1447, 1448] {
            for tag in [None, Some(0x2064)] {
                for v6 in [false, true] {
                    check_fix(tag, v6, IPPROTO_TCP, tcp_hdr(0x18), len);
                    check_fix(tag, v6, IPPROTO_UDP, udp_hdr(), len);
                }
            }
        }
    }

    #[test]
    fn fix_csum_ignores_ethernet_padding() {
        // A 1-byte UDP payload: 43-byte frame padded to 60 with junk.
        let (mut f, hdr) = partial(None, false, IPPROTO_UDP, udp_hdr(), &[0x42], None);
        let real = f.len();
        f.resize(60, 0xee);
        fix_csum(&hdr, &mut f).unwrap();
        assert!(l4_csum_ok(&f[..real], 14, false));
    }

    #[test]
    fn fix_csum_udp_never_writes_zero() {
        // Find a payload whose checksum comes out as 0 and check it is sent as 0xffff.
        for x in 0..=0xffffu16 {
            let (mut f, hdr) = partial(None, false, IPPROTO_UDP, udp_hdr(), &x.to_be_bytes(), None);
            let at = usize::from(hdr.csum_start + hdr.csum_offset);
            fix_csum(&hdr, &mut f).unwrap();
            if be16(&f, at) == 0xffff {
                assert!(l4_csum_ok(&f, 14, false));
                return;
            }
            assert_ne!(be16(&f, at), 0);
        }
        panic!("no payload with a zero UDP checksum found");
    }

    #[test]
    fn fix_csum_sctp_gets_crc32c() {
        let mut sctp = vec![0u8; 12];
        put16(&mut sctp, 0, 5000);
        put16(&mut sctp, 2, 5001);
        sctp[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let data = payload(64);
        let mut f = eth(None, ETH_P_IP);
        f.extend_from_slice(&ipv4_hdr(IPPROTO_SCTP, 12 + data.len()));
        f.extend_from_slice(&sctp);
        f.extend_from_slice(&data);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 8,
            ..VnetHdr::default()
        };
        fix_csum(&hdr, &mut f).unwrap();
        let stored = u32::from_le_bytes(f[42..46].try_into().unwrap());
        f[42..46].fill(0);
        assert_eq!(stored, crc32c(&f[34..]));
    }

    #[test]
    fn fix_csum_rejects_bad_offsets() {
        let (mut f, hdr) = partial(None, false, IPPROTO_TCP, tcp_hdr(0x10), &[], None);
        let bad = VnetHdr {
            csum_start: f.len() as u16 - 1,
            ..hdr
        };
        assert!(matches!(
            fix_csum(&bad, &mut f),
            Err(Error::CsumOutOfRange { .. })
        ));
    }

    /// Segments a TCP super-frame and checks every segment against the original.
    fn check_tcp_segments(tag: Option<u16>, v6: bool, flags: u8, len: usize, mss: u16, ecn: bool) {
        check_tcp_cut(tag, v6, flags, len, (mss, ecn), usize::MAX);
    }

    /// [`check_tcp_segments`] with segments of at most `max_len` bytes ([`segment_to`]).
    fn check_tcp_cut(
        tag: Option<u16>,
        v6: bool,
        flags: u8,
        len: usize,
        (mss, ecn): (u16, bool),
        max_len: usize,
    ) {
        let data = payload(len);
        let gso_type = (if v6 { GSO_TCPV6 } else { GSO_TCPV4 }) | if ecn { GSO_ECN } else { 0 };
        let (f, hdr) = partial(
            tag,
            v6,
            IPPROTO_TCP,
            tcp_hdr(flags),
            &data,
            Some((gso_type, mss)),
        );
        let l3 = if tag.is_some() { 18 } else { 14 };
        let l4 = l3 + if v6 { 40 } else { 20 };
        let hdrs = l4 + 32;
        let (segs, mss) = if max_len == usize::MAX {
            (segment(&hdr, &f).unwrap(), usize::from(mss))
        } else {
            let segs = segment_to(&hdr, &f, max_len).unwrap();
            (segs, usize::from(mss).min(max_len - hdrs))
        };
        assert!(segs.iter().all(|s| s.len() <= max_len), "segment too long");
        assert_eq!(segs.len(), len.div_ceil(mss).max(1), "segment count");
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let want = if last { len - i * mss } else { mss };
            assert_eq!(s.len(), hdrs + want, "segment {i} length");
            // Ethernet (and VLAN) header copied unchanged.
            assert_eq!(s[..l3], f[..l3]);
            if v6 {
                assert_eq!(
                    usize::from(be16(s, l3 + 4)),
                    32 + want,
                    "IPv6 payload length"
                );
                assert_eq!(s[l3 + 6..l3 + 40], f[l3 + 6..l3 + 40]);
            } else {
                assert_eq!(usize::from(be16(s, l3 + 2)), 20 + 32 + want, "IPv4 length");
                assert_eq!(be16(s, l3 + 4), 0x1234u16.wrapping_add(i as u16), "IPv4 id");
                assert!(ipv4_csum_ok(s, l3), "segment {i} IPv4 checksum");
            }
            let seq = u32::from_be_bytes(s[l4 + 4..l4 + 8].try_into().unwrap());
            assert_eq!(seq, SEQ.wrapping_add((i * mss) as u32), "segment {i} seq");
            let fl = s[l4 + 13];
            let mut want_fl = flags;
            if !last {
                want_fl &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                want_fl &= !TCP_CWR;
            }
            assert_eq!(fl, want_fl, "segment {i} flags");
            // Everything else in the TCP header (ports, ack, window, options) unchanged.
            assert_eq!(s[l4..l4 + 4], f[l4..l4 + 4]);
            assert_eq!(s[l4 + 8..l4 + 13], f[l4 + 8..l4 + 13]);
            assert_eq!(s[l4 + 14..l4 + 16], f[l4 + 14..l4 + 16]);
            assert_eq!(s[l4 + 18..hdrs], f[l4 + 18..hdrs]);
            assert!(l4_csum_ok(s, l3, v6), "segment {i} TCP checksum");
            joined.extend_from_slice(&s[hdrs..]);
        }
        assert_eq!(joined, data, "payload reassembles");
    }

    #[test]
    fn segment_tcpv4() {
        // PSH|ACK|FIN|CWR: flags split between first and last segments.
        check_tcp_segments(None, false, 0x80 | 0x19, 10 * 1448 + 17, 1448, true);
        check_tcp_segments(None, false, 0x18, 64_000, 1448, false);
        check_tcp_segments(None, false, 0x10, 1448 * 3, 1448, false);
        check_tcp_segments(None, false, 0x19, 1, 1448, false);
        check_tcp_segments(None, false, 0x10, 0, 1448, false);
        check_tcp_segments(None, false, 0x18, 9001, 536, false);
    }

    #[test]
    fn segment_tcpv4_vlan() {
        check_tcp_segments(Some(0x2064), false, 0x98, 5 * 1448 + 1, 1448, false);
        check_tcp_segments(Some(100), false, 0x19, 20_000, 1400, false);
    }

    #[test]
    fn segment_tcpv6() {
        check_tcp_segments(None, true, 0x98, 7 * 1428 + 99, 1428, true);
        check_tcp_segments(Some(7), true, 0x18, 60_000, 1428, false);
    }

    #[test]
    fn resegment_tcp_to_a_smaller_size() {
        // 64 KB super-frames (v4 and v6, with and without a tag) into 1400-byte frames:
        // PSH|ACK|FIN|CWR split between first and last segments as `segment` does.
        for (tag, v6) in [
            (None, false),
            (None, true),
            (Some(5), false),
            (Some(5), true),
        ] {
            check_tcp_cut(tag, v6, 0x99, 65_000, (1448, true), 1400);
            check_tcp_cut(tag, v6, 0x18, 65_000, (1448, false), 1400);
        }
        // Already small enough: the super-frame's own gso_size stays; one short segment.
        check_tcp_cut(None, false, 0x18, 30_000, (1000, false), 1400);
        check_tcp_cut(None, true, 0x19, 100, (1448, false), 1400);
        // Headers of 14 + 20 + 32 leave 1 byte in 67 (two segments of 1 byte); none in 66.
        check_tcp_cut(None, false, 0x18, 2, (1448, false), 67);
        let (f, hdr) = partial(
            None,
            false,
            IPPROTO_TCP,
            tcp_hdr(0x18),
            &payload(10),
            Some((GSO_TCPV4, 1448)),
        );
        let no_room = Err(Error::NoRoom {
            max_len: 66,
            hdrs: 66,
        });
        assert_eq!(segment_to(&hdr, &f, 66), no_room);
        // A 64 KB frame cut to tiny segments costs more than twice its size: refused.
        let (f, hdr) = partial(
            None,
            false,
            IPPROTO_TCP,
            tcp_hdr(0x18),
            &payload(65_000),
            Some((GSO_TCPV4, 1448)),
        );
        assert_eq!(segment_to(&hdr, &f, 100), Err(Error::Expansion));
    }

    #[test]
    fn plain_tcp_frames_are_fitted() {
        for (tag, v6) in [(None, false), (Some(9), true), (None, true)] {
            let data = payload(9000);
            let (mut f, hdr) = partial(tag, v6, IPPROTO_TCP, tcp_hdr(0x19), &data, None);
            fix_csum(&hdr, &mut f).unwrap();
            let l3 = if tag.is_some() { 18 } else { 14 };
            let hdrs = l3 + if v6 { 40 } else { 20 } + 32;
            let segs = fit_tcp(&f, 1400).unwrap();
            assert_eq!(segs.len(), 9000usize.div_ceil(1400 - hdrs));
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                assert!(s.len() <= 1400 && l4_csum_ok(s, l3, v6));
                assert!(v6 || ipv4_csum_ok(s, l3));
                let seq = u32::from_be_bytes(s[hdrs - 28..hdrs - 24].try_into().unwrap());
                assert_eq!(seq, SEQ.wrapping_add(joined.len() as u32));
                let fin = i + 1 == segs.len();
                assert_eq!(s[hdrs - 19] & (TCP_FIN | TCP_PSH) != 0, fin);
                joined.extend_from_slice(&s[hdrs..]);
            }
            assert_eq!(joined, data);
            // One that fits comes back as it is.
            assert_eq!(fit_tcp(&f, 9999).unwrap(), [Bytes::from(f.clone())]);
            // A corrupt one is not made whole; a SYN is not cut.
            let mut bad = f.clone();
            bad[hdrs + 77] ^= 1;
            assert_eq!(fit_tcp(&bad, 1400), Err(Error::BadChecksum));
            let mut syn = f.clone();
            syn[hdrs - 19] |= 0x02;
            assert!(matches!(fit_tcp(&syn, 1400), Err(Error::Malformed(_))));
            // Ethernet padding, or an IP length other than the frame's.
            let mut padded = f.clone();
            padded.push(0);
            assert!(matches!(fit_tcp(&padded, 1400), Err(Error::Malformed(_))));
        }
        // UDP.
        let (mut f, hdr) = partial(None, false, IPPROTO_UDP, udp_hdr(), &payload(3000), None);
        fix_csum(&hdr, &mut f).unwrap();
        assert!(matches!(fit_tcp(&f, 1400), Err(Error::Malformed(_))));
    }

    #[test]
    fn uso_is_never_resegmented() {
        let (f, hdr) = partial(
            None,
            false,
            IPPROTO_UDP,
            udp_hdr(),
            &payload(3000),
            Some((GSO_UDP_L4 | GSO_ECN, 1472)),
        );
        assert_eq!(segment_to(&hdr, &f, 1400), Err(Error::UsoResegment));
        assert_eq!(segment_to(&hdr, &f, 9000), Err(Error::UsoResegment));
        assert_eq!(segment(&hdr, &f).map(|s| s.len()), Ok(3));
    }

    #[test]
    fn segment_tcp_with_vlan_put_back() {
        // The kernel counts csum_start from the frame without the tag; after netdev puts the
        // tag back, shifting the header by 4 makes the offsets right again.
        let (untagged, hdr) = partial(
            None,
            false,
            IPPROTO_TCP,
            tcp_hdr(0x18),
            &payload(4000),
            Some((GSO_TCPV4, 1448)),
        );
        let mut tagged = untagged[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&untagged[12..]);
        let segs = segment(&hdr.shifted(4), &tagged).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert_eq!(s[12..16], [0x81, 0x00, 0x00, 0x64]);
            assert!(l4_csum_ok(s, 18, false) && ipv4_csum_ok(s, 18));
        }
        // Same for a checksum-partial frame fixed in place.
        let (f, hdr) = partial(None, false, IPPROTO_TCP, tcp_hdr(0x18), &payload(99), None);
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        t.extend_from_slice(&f[12..]);
        fix_csum(&hdr.shifted(4), &mut t).unwrap();
        assert!(l4_csum_ok(&t, 18, false));
    }

    #[test]
    fn stacked_tags_are_looked_through() {
        // 802.1ad, 802.1Q: Q-in-Q is looked through.
        let tags = [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20];
        let put_tags = |f: &[u8]| [&f[..12], &tags, &f[12..]].concat();
        let (f, hdr) = partial(
            None,
            true,
            IPPROTO_TCP,
            tcp_hdr(0x18),
            &payload(4000),
            Some((GSO_TCPV6, 1428)),
        );
        let segs = segment(&hdr.shifted(8), &put_tags(&f)).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert_eq!(s[12..20], tags);
            assert!(l4_csum_ok(s, 22, true));
        }
        // Ethernet padding behind a UDP datagram is found (and left out) through the tags.
        let (f, hdr) = partial(None, false, IPPROTO_UDP, udp_hdr(), &[0x42], None);
        let mut t = put_tags(&f);
        let real = t.len();
        t.resize(real + 20, 0xee);
        fix_csum(&hdr.shifted(8), &mut t).unwrap();
        assert!(l4_csum_ok(&t[..real], 22, false));
    }

    #[test]
    fn segmenting_is_bounded_in_what_it_costs() {
        let tcp = |data: &[u8], mss| {
            partial(
                None,
                false,
                IPPROTO_TCP,
                tcp_hdr(0x18),
                data,
                Some((GSO_TCPV4, mss)),
            )
        };
        // Tiny segments: 60,000 bytes would become about 1,250 × 102.
        let (f, hdr) = tcp(&payload(60_000), 48);
        assert_eq!(segment(&hdr, &f), Err(Error::Expansion));
        // Small but sane: 536-byte segments add a tenth.
        let (f, hdr) = tcp(&payload(60_000), 536);
        assert_eq!(segment(&hdr, &f).unwrap().len(), 112);
        // Three tags (or a pile of them) in front.
        let three = [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x81, 0x00, 0, 30];
        let (f, hdr) = tcp(&payload(9000), 1448);
        let tagged = [&f[..12], &three, &f[12..]].concat();
        assert_eq!(segment(&hdr.shifted(12), &tagged), Err(Error::TooManyTags));
        // 2 KB of IPv6 extension headers, repeated in every segment.
        let ext: Vec<u8> = [vec![IPPROTO_TCP, 255], vec![0; 2046]].concat();
        let (f, hdr) = partial(
            None,
            true,
            IPPROTO_TCP,
            tcp_hdr(0x18),
            &payload(9000),
            Some((GSO_TCPV6, 1428)),
        );
        let mut long = [&f[..54], &ext, &f[54..]].concat();
        long[20] = 60; // next header: destination options
        let plen = u16::from_be_bytes([long[18], long[19]]) + 2048;
        long[18..20].copy_from_slice(&plen.to_be_bytes());
        let hdr = VnetHdr {
            csum_start: hdr.csum_start + 2048,
            hdr_len: hdr.hdr_len + 2048,
            ..hdr
        };
        assert_eq!(
            segment(&hdr, &long),
            Err(Error::HeadersTooLong(14 + 40 + 2048 + 32))
        );
    }

    fn check_uso(tag: Option<u16>, v6: bool, len: usize, mss: u16) {
        let data = payload(len);
        let (f, hdr) = partial(
            tag,
            v6,
            IPPROTO_UDP,
            udp_hdr(),
            &data,
            Some((GSO_UDP_L4, mss)),
        );
        let segs = segment(&hdr, &f).unwrap();
        let mss = usize::from(mss);
        let l3 = if tag.is_some() { 18 } else { 14 };
        let l4 = l3 + if v6 { 40 } else { 20 };
        assert_eq!(segs.len(), len.div_ceil(mss).max(1));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let want = if i + 1 == segs.len() {
                len - i * mss
            } else {
                mss
            };
            assert_eq!(s.len(), l4 + 8 + want);
            assert_eq!(usize::from(be16(s, l4 + 4)), 8 + want, "UDP length");
            if v6 {
                assert_eq!(usize::from(be16(s, l3 + 4)), 8 + want);
            } else {
                assert_eq!(usize::from(be16(s, l3 + 2)), 28 + want);
                assert_eq!(be16(s, l3 + 4), 0x1234u16.wrapping_add(i as u16));
                assert!(ipv4_csum_ok(s, l3));
            }
            assert_ne!(be16(s, l4 + 6), 0, "UDP checksum present");
            assert!(l4_csum_ok(s, l3, v6), "segment {i} UDP checksum");
            joined.extend_from_slice(&s[l4 + 8..]);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn segment_uso() {
        check_uso(None, false, 8 * 1472 + 5, 1472);
        check_uso(Some(3), false, 3000, 1000);
        check_uso(None, true, 4 * 1452, 1452);
        check_uso(None, true, 10, 1452);
    }

    #[test]
    fn segment_refuses_what_it_cannot_do() {
        let (f, hdr) = partial(
            None,
            false,
            IPPROTO_UDP,
            udp_hdr(),
            &payload(3000),
            Some((GSO_UDP, 1472)),
        );
        assert_eq!(segment(&hdr, &f), Err(Error::Ufo));
        let odd = VnetHdr {
            gso_type: 0x42,
            ..hdr
        };
        assert_eq!(segment(&odd, &f), Err(Error::UnknownGsoType(0x42)));
        let zero = VnetHdr {
            gso_type: GSO_UDP_L4,
            gso_size: 0,
            ..hdr
        };
        assert_eq!(segment(&zero, &f), Err(Error::ZeroGsoSize));
        // TCPv6 type on an IPv4 frame.
        let wrong = VnetHdr {
            gso_type: GSO_TCPV6,
            ..hdr
        };
        assert!(matches!(segment(&wrong, &f), Err(Error::Malformed(_))));
        // TCPv4 type on a UDP packet.
        let wrong = VnetHdr {
            gso_type: GSO_TCPV4,
            ..hdr
        };
        assert!(matches!(segment(&wrong, &f), Err(Error::Malformed(_))));
        // Truncated headers.
        assert!(matches!(
            segment(
                &VnetHdr {
                    gso_type: GSO_TCPV4,
                    gso_size: 1448,
                    ..VnetHdr::default()
                },
                &f[..30]
            ),
            Err(Error::Malformed(_))
        ));
        let (f, hdr) = partial(
            None,
            false,
            IPPROTO_UDP,
            udp_hdr(),
            &payload(5000),
            Some((GSO_UDP_L4, 1)),
        );
        assert_eq!(segment(&hdr, &f), Err(Error::TooManySegments));
    }
}
