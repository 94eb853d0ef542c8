//! Header layouts on the wire — Ethernet, VLAN tags, IPv4, IPv6 and its extension headers,
//! TCP, UDP, SCTP; and, for port security, ARP ([`arp`]), DHCPv4 ([`dhcp`]) and ICMPv6
//! neighbor discovery ([`icmpv6`]) — as named field offsets (smoltcp's `field::` style: each
//! header's fields as ranges counted from the start of that header), and [`walk`], the one
//! walker that finds a frame's L3 and L4 headers.
//!
//! The userspace data path looks past the Ethernet header through [`walk`]: [`gso`]
//! (segmentation and checksum completion of frames behind a virtio-net header), [`gro`],
//! [`mss`] (the MSS option of TCP SYNs) and `offload` (checksum-partial frames the XDP
//! program hands to AF_XDP). The XDP program in
//! `etherws-ebpf` keeps a walker of its own: the verifier wants it written its own way.
//!
//! Every read is checked against the slice: a frame too short for what its headers announce
//! is an [`Error`], never a panic.

pub(crate) mod arp;
pub(crate) mod dhcp;
pub(crate) mod gro;
pub(crate) mod gso;
pub(crate) mod icmpv6;
pub(crate) mod mss;

use core::fmt;
use core::ops::Range;

/// Ethernet II header: addresses, then the EtherType (or the TPID of a VLAN tag).
pub(crate) mod ethernet {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const DST: Range<usize> = 0..6;
        pub(crate) const SRC: Range<usize> = 6..12;
        pub(crate) const ETHERTYPE: Range<usize> = 12..14;
    }
    pub(crate) const HEADER_LEN: usize = field::ETHERTYPE.end;

    pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
    pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
    /// IEEE 802.1Q customer tag.
    pub(crate) const ETHERTYPE_VLAN: u16 = etherws_common::ETH_P_8021Q;
    /// IEEE 802.1ad service tag (Q-in-Q).
    pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;
    /// The pre-standard Q-in-Q TPID some switches still send.
    pub(crate) const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

    /// The EtherType (or a tag's TPID) of `frame`, if it is long enough to have one.
    pub(crate) fn ethertype(frame: &[u8]) -> Option<u16> {
        super::be16(frame, 0, field::ETHERTYPE)
    }

    /// The EtherType behind all of `frame`'s VLAN tags, and the offset of what it announces
    /// (the L3 header); `None` when the frame ends first. [`super::walk`] does the same for
    /// IP; this is for the others (ARP).
    pub(crate) fn inner(frame: &[u8]) -> Option<(u16, usize)> {
        let mut at = field::ETHERTYPE.start;
        loop {
            let ethertype = super::be16(frame, at, super::vlan::field::TPID)?;
            if !is_vlan_tag(ethertype) {
                return Some((ethertype, at + super::vlan::field::TPID.end));
            }
            at += super::vlan::HEADER_LEN;
        }
    }

    /// Whether `ethertype` is the TPID of a VLAN tag.
    pub(crate) fn is_vlan_tag(ethertype: u16) -> bool {
        matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        )
    }
}

/// A VLAN tag: the TPID stands where the EtherType was, the TCI follows, and the real
/// EtherType (or the next tag's TPID) comes after it. Fields count from the TPID.
pub(crate) mod vlan {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const TPID: Range<usize> = 0..2;
        pub(crate) const TCI: Range<usize> = 2..4;
    }
    pub(crate) const HEADER_LEN: usize = field::TCI.end;
    /// The VLAN id: the low 12 bits of the TCI (priority and DEI above it).
    pub(crate) const VID_MASK: u16 = 0x0fff;

    /// Where a frame's outer tag starts: after the two addresses, where the EtherType was.
    pub(crate) const OUTER: usize = super::ethernet::field::ETHERTYPE.start;

    /// The outer tag of `frame` as (TPID, TCI), if the frame has room for one (whether the
    /// TPID is a tag's is the caller's question).
    pub(crate) fn outer(frame: &[u8]) -> Option<(u16, u16)> {
        Some((
            super::be16(frame, OUTER, field::TPID)?,
            super::be16(frame, OUTER, field::TCI)?,
        ))
    }

    /// Writes a tag into the four bytes at `OUTER`.
    pub(crate) fn write_outer(frame: &mut [u8], tpid: u16, tci: u16) {
        frame[OUTER + field::TPID.start..OUTER + field::TPID.end]
            .copy_from_slice(&tpid.to_be_bytes());
        frame[OUTER + field::TCI.start..OUTER + field::TCI.end].copy_from_slice(&tci.to_be_bytes());
    }
}

/// IP protocol numbers (IPv4's protocol, IPv6's next header).
pub(crate) mod ip_protocol {
    pub(crate) const HOP_BY_HOP: u8 = 0;
    pub(crate) const TCP: u8 = 6;
    pub(crate) const UDP: u8 = 17;
    pub(crate) const IPV6_ROUTING: u8 = 43;
    pub(crate) const IPV6_FRAGMENT: u8 = 44;
    pub(crate) const ICMPV6: u8 = 58;
    pub(crate) const IPV6_DST_OPTS: u8 = 60;
    pub(crate) const SCTP: u8 = 132;
}

pub(crate) mod ipv4 {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        /// Version (high nibble) and header length in 32-bit words (low nibble).
        pub(crate) const VER_IHL: usize = 0;
        pub(crate) const DSCP_ECN: usize = 1;
        pub(crate) const LENGTH: Range<usize> = 2..4;
        pub(crate) const IDENT: Range<usize> = 4..6;
        pub(crate) const FLG_OFF: Range<usize> = 6..8;
        pub(crate) const TTL: usize = 8;
        pub(crate) const PROTOCOL: usize = 9;
        pub(crate) const CHECKSUM: Range<usize> = 10..12;
        pub(crate) const SRC_ADDR: Range<usize> = 12..16;
        pub(crate) const DST_ADDR: Range<usize> = 16..20;
    }
    pub(crate) const MIN_HEADER_LEN: usize = field::DST_ADDR.end;
    /// The bits of `FLG_OFF` set in any fragment: more-fragments and the offset (not DF).
    pub(crate) const FRAGMENT_MASK: u16 = 0x3fff;
    /// The fragment offset's bits of `FLG_OFF`: non-zero in every fragment but the first.
    pub(crate) const OFFSET_MASK: u16 = 0x1fff;
}

pub(crate) mod ipv6 {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        /// Version (high nibble of the first byte), traffic class, flow label.
        pub(crate) const VER_TC_FLOW: Range<usize> = 0..4;
        /// Length of everything behind this header, extension headers included.
        pub(crate) const PAYLOAD_LEN: Range<usize> = 4..6;
        pub(crate) const NXT_HDR: usize = 6;
        pub(crate) const HOP_LIMIT: usize = 7;
        pub(crate) const SRC_ADDR: Range<usize> = 8..24;
        pub(crate) const DST_ADDR: Range<usize> = 24..40;
    }
    pub(crate) const HEADER_LEN: usize = field::DST_ADDR.end;

    /// The source address of the IPv6 header at `l3`, if it lies within `frame`.
    pub(crate) fn src_addr(frame: &[u8], l3: usize) -> Option<std::net::Ipv6Addr> {
        let b = frame.get(l3 + field::SRC_ADDR.start..l3 + field::SRC_ADDR.end)?;
        Some(<[u8; 16]>::try_from(b).ok()?.into())
    }

    /// The generic extension header (hop-by-hop, routing, destination options): its length
    /// counts 8-byte units beyond the first.
    pub(crate) mod ext {
        #[allow(dead_code, reason = "the whole header as drawn")]
        pub(crate) mod field {
            pub(crate) const NXT_HDR: usize = 0;
            pub(crate) const LENGTH: usize = 1;
        }
        pub(crate) const UNIT: usize = 8;
    }

    /// The fragment header, of fixed length.
    pub(crate) mod frag {
        #[allow(dead_code, reason = "the whole header as drawn")]
        pub(crate) mod field {
            use core::ops::Range;

            pub(crate) const NXT_HDR: usize = 0;
            /// Offset (13 bits, in 8-byte units), 2 reserved bits, more-fragments.
            pub(crate) const OFF_M: Range<usize> = 2..4;
            pub(crate) const IDENT: Range<usize> = 4..8;
        }
        pub(crate) const HEADER_LEN: usize = field::IDENT.end;
        /// The bits of `OFF_M` set in any fragment (not in an atomic fragment).
        pub(crate) const FRAGMENT_MASK: u16 = 0xfff9;
        /// The offset's bits of `OFF_M`: non-zero in every fragment but the first.
        pub(crate) const OFFSET_MASK: u16 = 0xfff8;
    }
}

pub(crate) mod tcp {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const SRC_PORT: Range<usize> = 0..2;
        pub(crate) const DST_PORT: Range<usize> = 2..4;
        pub(crate) const SEQ_NUM: Range<usize> = 4..8;
        pub(crate) const ACK_NUM: Range<usize> = 8..12;
        /// Header length in 32-bit words (high nibble).
        pub(crate) const DATA_OFF: usize = 12;
        pub(crate) const FLAGS: usize = 13;
        pub(crate) const WIN_SIZE: Range<usize> = 14..16;
        pub(crate) const CHECKSUM: Range<usize> = 16..18;
        pub(crate) const URGENT: Range<usize> = 18..20;
    }
    pub(crate) const MIN_HEADER_LEN: usize = field::URGENT.end;

    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    pub(crate) const RST: u8 = 0x04;
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const URG: u8 = 0x20;
    pub(crate) const CWR: u8 = 0x80;
}

pub(crate) mod udp {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const SRC_PORT: Range<usize> = 0..2;
        pub(crate) const DST_PORT: Range<usize> = 2..4;
        pub(crate) const LENGTH: Range<usize> = 4..6;
        pub(crate) const CHECKSUM: Range<usize> = 6..8;
    }
    pub(crate) const HEADER_LEN: usize = field::CHECKSUM.end;

    /// A UDP datagram as [`super::walk`] found it: its ports, and where its payload lies.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Datagram {
        pub(crate) src_port: u16,
        pub(crate) dst_port: u16,
        /// Behind the header, up to the end the UDP length and the IP length give, each only
        /// where it is shorter than the frame (so Ethernet padding is left out, and a length
        /// field past the frame's end never reaches beyond it).
        pub(crate) payload: core::ops::Range<usize>,
    }

    /// The UDP datagram of `frame`, whose headers [`super::walk`] found as `h`: `None` unless
    /// the L4 protocol is UDP, its header is whole and the packet is not a later fragment (whose
    /// L4 header is in the first).
    pub(crate) fn datagram(frame: &[u8], h: &super::Headers) -> Option<Datagram> {
        if h.l4_protocol != super::ip_protocol::UDP
            || h.is_later_fragment()
            || h.l4_header_len.is_err()
        {
            return None;
        }
        let l4 = h.l4_offset;
        let start = l4 + HEADER_LEN;
        let mut end = frame.len().min(h.ip_end().unwrap_or(usize::MAX));
        let len = usize::from(super::be16(frame, l4, field::LENGTH)?);
        if len >= HEADER_LEN {
            end = end.min(l4 + len);
        }
        Some(Datagram {
            src_port: super::be16(frame, l4, field::SRC_PORT)?,
            dst_port: super::be16(frame, l4, field::DST_PORT)?,
            payload: start..end.max(start),
        })
    }
}

pub(crate) mod sctp {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const SRC_PORT: Range<usize> = 0..2;
        pub(crate) const DST_PORT: Range<usize> = 2..4;
        pub(crate) const VERIFICATION_TAG: Range<usize> = 4..8;
        /// CRC32c, little-endian.
        pub(crate) const CHECKSUM: Range<usize> = 8..12;
    }
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) const HEADER_LEN: usize = field::CHECKSUM.end;
}

/// IPv6 extension headers walked at most before the L4 header; a longer chain is an error.
pub(crate) const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Why [`walk`] found no L3/L4 headers, or no L4 header length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    EthernetTruncated,
    VlanTruncated,
    NotIp,
    Ipv4Truncated,
    Ipv4Version,
    Ipv4HeaderLen,
    Ipv6Truncated,
    Ipv6Version,
    Ipv6ExtTruncated,
    Ipv6ExtTooMany,
    TcpTruncated,
    TcpDataOffset,
    UdpTruncated,
    NotTcpOrUdp,
}

impl Error {
    /// What went wrong, as a fixed string (for errors that carry a `&'static str`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Error::EthernetTruncated => "truncated Ethernet header",
            Error::VlanTruncated => "truncated VLAN tag",
            Error::NotIp => "neither IPv4 nor IPv6",
            Error::Ipv4Truncated => "truncated IPv4 header",
            Error::Ipv4Version => "IPv4 EtherType on another IP version",
            Error::Ipv4HeaderLen => "bad IPv4 header length",
            Error::Ipv6Truncated => "truncated IPv6 header",
            Error::Ipv6Version => "IPv6 EtherType on another IP version",
            Error::Ipv6ExtTruncated => "truncated IPv6 extension header",
            Error::Ipv6ExtTooMany => "too many IPv6 extension headers",
            Error::TcpTruncated => "truncated TCP header",
            Error::TcpDataOffset => "bad TCP data offset",
            Error::UdpTruncated => "truncated UDP header",
            Error::NotTcpOrUdp => "neither TCP nor UDP",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

/// The IP header of a frame, as [`walk`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ip {
    V4 {
        /// IHL × 4: 20 to 60, all of it within the frame.
        header_len: usize,
        /// The total length field, as it stands (it may disagree with the frame).
        total_len: usize,
        /// More-fragments set or a non-zero offset.
        fragment: bool,
        /// A non-zero offset: what stands at the L4 offset is data, not the L4 header.
        later: bool,
    },
    V6 {
        /// The payload length field, as it stands (0 for jumbograms and BIG TCP).
        payload_len: usize,
        /// A fragment header with more-fragments set or a non-zero offset.
        fragment: bool,
        /// A fragment header with a non-zero offset: what stands at the L4 offset is data.
        later: bool,
    },
}

/// Where a frame's headers are, as [`walk`] found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    /// Length of the Ethernet header with all its VLAN tags: the offset of the IP header.
    pub(crate) l2_len: usize,
    /// How many VLAN tags (802.1Q, 802.1ad or 0x9100, in any order) stand before the IP header.
    pub(crate) vlan_tags: usize,
    pub(crate) ip: Ip,
    /// Offset of the L4 header: behind the IPv4 options or the IPv6 extension headers.
    pub(crate) l4_offset: usize,
    /// IPv4's protocol, or the next header of the last IPv6 (extension) header.
    pub(crate) l4_protocol: u8,
    /// Length of the TCP (its data offset) or UDP header, all of it within the frame; or why
    /// there is none. The IP header is sound either way.
    pub(crate) l4_header_len: Result<usize, Error>,
}

impl Headers {
    /// Offset of the IP header.
    pub(crate) fn l3_offset(&self) -> usize {
        self.l2_len
    }

    pub(crate) fn is_ipv6(&self) -> bool {
        matches!(self.ip, Ip::V6 { .. })
    }

    /// Whether the packet is an IP fragment (an atomic IPv6 fragment is not).
    pub(crate) fn is_fragment(&self) -> bool {
        match self.ip {
            Ip::V4 { fragment, .. } | Ip::V6 { fragment, .. } => fragment,
        }
    }

    /// Whether the packet is a fragment other than the first: its L4 header is in the first,
    /// and what stands at [`Headers::l4_offset`] is data, to be looked at by nobody.
    pub(crate) fn is_later_fragment(&self) -> bool {
        match self.ip {
            Ip::V4 { later, .. } | Ip::V6 { later, .. } => later,
        }
    }

    /// Where the IP packet ends as its header says (it may lie beyond the frame, or before
    /// the L4 header); `None` when the header gives no usable length: an IPv4 total length
    /// shorter than the header, an IPv6 payload length of 0.
    pub(crate) fn ip_end(&self) -> Option<usize> {
        let l3 = self.l3_offset();
        match self.ip {
            Ip::V4 {
                header_len,
                total_len,
                ..
            } => (total_len >= header_len).then_some(l3 + total_len),
            Ip::V6 { payload_len, .. } => {
                (payload_len != 0).then_some(l3 + ipv6::HEADER_LEN + payload_len)
            }
        }
    }
}

fn byte(frame: &[u8], at: usize) -> Option<u8> {
    frame.get(at).copied()
}

fn be16(frame: &[u8], at: usize, field: Range<usize>) -> Option<u16> {
    let b = frame.get(at + field.start..at + field.end)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

/// Finds the headers of an Ethernet frame (no preamble, no FCS): any number of VLAN tags, an
/// IPv4 header (options included) or an IPv6 header and up to [`MAX_IPV6_EXT_HEADERS`]
/// extension headers (hop-by-hop, routing, destination options, fragment), then the L4
/// header's offset and, for TCP and UDP, its length.
///
/// What it checks: every header it steps over lies within `frame`, the IP version matches
/// the EtherType, and an IPv4 header is at least 20 bytes. It trusts no length field beyond
/// that: the IP lengths are reported as they stand ([`Headers::ip_end`]), for the caller to
/// compare with the frame.
pub(crate) fn walk(frame: &[u8]) -> Result<Headers, Error> {
    let mut at = ethernet::field::ETHERTYPE.start;
    let mut vlan_tags = 0;
    // The EtherType, or the TPID of a tag standing in its place: then the TCI follows, and
    // the real EtherType (or the next tag) 4 bytes on.
    let ethertype = loop {
        let ethertype = be16(frame, at, vlan::field::TPID).ok_or(if vlan_tags == 0 {
            Error::EthernetTruncated
        } else {
            Error::VlanTruncated
        })?;
        if !ethernet::is_vlan_tag(ethertype) {
            break ethertype;
        }
        at += vlan::HEADER_LEN;
        vlan_tags += 1;
    };
    let l3 = at + ethernet::field::ETHERTYPE.len();
    let (ip, l4_offset, l4_protocol) = match ethertype {
        ethernet::ETHERTYPE_IPV4 => ipv4_of(frame, l3)?,
        ethernet::ETHERTYPE_IPV6 => ipv6_of(frame, l3)?,
        _ => return Err(Error::NotIp),
    };
    Ok(Headers {
        l2_len: l3,
        vlan_tags,
        ip,
        l4_offset,
        l4_protocol,
        l4_header_len: l4_header_len(frame, l4_offset, l4_protocol),
    })
}

fn ipv4_of(frame: &[u8], l3: usize) -> Result<(Ip, usize, u8), Error> {
    use ipv4::field;

    if frame.len() < l3 + ipv4::MIN_HEADER_LEN {
        return Err(Error::Ipv4Truncated);
    }
    let truncated = Error::Ipv4Truncated;
    let ver_ihl = byte(frame, l3 + field::VER_IHL).ok_or(truncated)?;
    if ver_ihl >> 4 != 4 {
        return Err(Error::Ipv4Version);
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < ipv4::MIN_HEADER_LEN {
        return Err(Error::Ipv4HeaderLen);
    }
    if frame.len() < l3 + header_len {
        return Err(truncated);
    }
    let total_len = be16(frame, l3, field::LENGTH).ok_or(truncated)?;
    let flg_off = be16(frame, l3, field::FLG_OFF).ok_or(truncated)?;
    let protocol = byte(frame, l3 + field::PROTOCOL).ok_or(truncated)?;
    let ip = Ip::V4 {
        header_len,
        total_len: usize::from(total_len),
        fragment: flg_off & ipv4::FRAGMENT_MASK != 0,
        later: flg_off & ipv4::OFFSET_MASK != 0,
    };
    Ok((ip, l3 + header_len, protocol))
}

fn ipv6_of(frame: &[u8], l3: usize) -> Result<(Ip, usize, u8), Error> {
    use ipv6::field;

    if frame.len() < l3 + ipv6::HEADER_LEN {
        return Err(Error::Ipv6Truncated);
    }
    let truncated = Error::Ipv6Truncated;
    if byte(frame, l3 + field::VER_TC_FLOW.start).ok_or(truncated)? >> 4 != 6 {
        return Err(Error::Ipv6Version);
    }
    let payload_len = be16(frame, l3, field::PAYLOAD_LEN).ok_or(truncated)?;
    let mut next = byte(frame, l3 + field::NXT_HDR).ok_or(truncated)?;
    let mut at = l3 + ipv6::HEADER_LEN;
    let mut fragment = false;
    let mut later = false;
    let mut walked = 0;
    loop {
        let len = match next {
            ip_protocol::HOP_BY_HOP | ip_protocol::IPV6_ROUTING | ip_protocol::IPV6_DST_OPTS => {
                let units = byte(frame, at + ipv6::ext::field::LENGTH);
                (usize::from(units.ok_or(Error::Ipv6ExtTruncated)?) + 1) * ipv6::ext::UNIT
            }
            ip_protocol::IPV6_FRAGMENT => {
                let off_m = be16(frame, at, ipv6::frag::field::OFF_M);
                let off_m = off_m.ok_or(Error::Ipv6ExtTruncated)?;
                fragment |= off_m & ipv6::frag::FRAGMENT_MASK != 0;
                later |= off_m & ipv6::frag::OFFSET_MASK != 0;
                ipv6::frag::HEADER_LEN
            }
            _ => break,
        };
        if walked == MAX_IPV6_EXT_HEADERS {
            return Err(Error::Ipv6ExtTooMany);
        }
        if frame.len() < at + len {
            return Err(Error::Ipv6ExtTruncated);
        }
        // The next-header field is the first byte of every extension header.
        next = byte(frame, at + ipv6::ext::field::NXT_HDR).ok_or(Error::Ipv6ExtTruncated)?;
        at += len;
        walked += 1;
    }
    let ip = Ip::V6 {
        payload_len: usize::from(payload_len),
        fragment,
        later,
    };
    Ok((ip, at, next))
}

fn l4_header_len(frame: &[u8], l4: usize, protocol: u8) -> Result<usize, Error> {
    match protocol {
        ip_protocol::TCP => {
            if frame.len() < l4 + tcp::MIN_HEADER_LEN {
                return Err(Error::TcpTruncated);
            }
            let off = byte(frame, l4 + tcp::field::DATA_OFF).ok_or(Error::TcpTruncated)?;
            let len = usize::from(off >> 4) * 4;
            if len < tcp::MIN_HEADER_LEN {
                return Err(Error::TcpDataOffset);
            }
            if frame.len() < l4 + len {
                return Err(Error::TcpTruncated);
            }
            Ok(len)
        }
        ip_protocol::UDP => {
            if frame.len() < l4 + udp::HEADER_LEN {
                return Err(Error::UdpTruncated);
            }
            Ok(udp::HEADER_LEN)
        }
        _ => Err(Error::NotTcpOrUdp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- builders ---

    fn eth(tpids: &[u16], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0c];
        for (i, tpid) in tpids.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4(options: usize, protocol: u8, l4_len: usize, flg_off: u16) -> Vec<u8> {
        let header_len = 20 + options;
        let mut h = vec![0u8; header_len];
        h[0] = 0x40 | (header_len / 4) as u8;
        h[2..4].copy_from_slice(&((header_len + l4_len) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&flg_off.to_be_bytes());
        h[8] = 64;
        h[9] = protocol;
        h[12..20].copy_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        h
    }

    /// An IPv6 header and extension headers: (type, total length) each, then `protocol`.
    fn ipv6(exts: &[(u8, usize)], protocol: u8, l4_len: usize) -> Vec<u8> {
        let ext_len: usize = exts.iter().map(|e| e.1).sum();
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&((ext_len + l4_len) as u16).to_be_bytes());
        h[7] = 64;
        h[8] = 0x20;
        h[24] = 0x20;
        let mut types: Vec<u8> = exts.iter().map(|e| e.0).collect();
        types.push(protocol);
        h[6] = types[0];
        for (i, &(kind, len)) in exts.iter().enumerate() {
            let mut e = vec![0u8; len];
            e[0] = types[i + 1];
            if kind == ip_protocol::IPV6_FRAGMENT {
                assert_eq!(len, 8);
            } else {
                e[1] = (len / 8 - 1) as u8;
            }
            h.extend_from_slice(&e);
        }
        h
    }

    fn tcp(options: usize) -> Vec<u8> {
        let mut t = vec![0u8; 20 + options];
        t[12] = (((20 + options) / 4) as u8) << 4;
        t
    }

    fn frame(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const HOP: u8 = ip_protocol::HOP_BY_HOP;
    const RT: u8 = ip_protocol::IPV6_ROUTING;
    const FRAG: u8 = ip_protocol::IPV6_FRAGMENT;
    const DST: u8 = ip_protocol::IPV6_DST_OPTS;
    const TCP: u8 = ip_protocol::TCP;
    const UDP: u8 = ip_protocol::UDP;

    /// Frames of every kind the walker knows, with their headers' length.
    fn samples() -> Vec<(Vec<u8>, usize)> {
        let tcp32 = tcp(12);
        let udp = [0u8; 8];
        let data = [0x5a; 10];
        vec![
            (
                frame(&[&eth(&[], 0x0800), &ipv4(0, TCP, 30, 0), &tcp(0), &data]),
                54,
            ),
            (
                frame(&[&eth(&[0x8100], 0x0800), &ipv4(8, UDP, 18, 0), &udp, &data]),
                54,
            ),
            (
                frame(&[
                    &eth(&[0x88a8, 0x8100], 0x86dd),
                    &ipv6(&[], TCP, 42),
                    &tcp32,
                    &data,
                ]),
                22 + 40 + 32,
            ),
            (
                frame(&[
                    &eth(&[0x88a8, 0x8100, 0x9100], 0x86dd),
                    &ipv6(&[(HOP, 8), (RT, 24), (FRAG, 8), (DST, 16)], UDP, 18),
                    &udp,
                    &data,
                ]),
                26 + 40 + 56 + 8,
            ),
        ]
    }

    // --- each header kind ---

    #[test]
    fn untagged_ipv4_tcp() {
        let (f, _) = &samples()[0];
        let h = walk(f).unwrap();
        assert_eq!(
            h,
            Headers {
                l2_len: 14,
                vlan_tags: 0,
                ip: Ip::V4 {
                    header_len: 20,
                    total_len: 50,
                    fragment: false,
                    later: false,
                },
                l4_offset: 34,
                l4_protocol: TCP,
                l4_header_len: Ok(20),
            }
        );
        assert_eq!((h.l3_offset(), h.ip_end()), (14, Some(64)));
        assert!(!h.is_ipv6() && !h.is_fragment());
    }

    #[test]
    fn tagged_ipv4_with_options_udp() {
        let (f, _) = &samples()[1];
        let h = walk(f).unwrap();
        assert_eq!((h.l2_len, h.vlan_tags), (18, 1));
        assert_eq!(
            h.ip,
            Ip::V4 {
                header_len: 28,
                total_len: 46,
                fragment: false,
                later: false,
            }
        );
        assert_eq!(
            (h.l4_offset, h.l4_protocol, h.l4_header_len),
            (46, UDP, Ok(8))
        );
        assert_eq!(h.ip_end(), Some(f.len()));
    }

    #[test]
    fn stacked_tags() {
        for tpids in [
            &[0x88a8, 0x8100][..],
            &[0x8100, 0x8100],
            &[0x9100, 0x88a8, 0x8100],
            &[0x8100; 7],
        ] {
            let f = frame(&[&eth(tpids, 0x0800), &ipv4(0, TCP, 20, 0), &tcp(0)]);
            let h = walk(&f).unwrap();
            assert_eq!(h.vlan_tags, tpids.len(), "{tpids:x?}");
            assert_eq!(h.l2_len, 14 + 4 * tpids.len());
            assert_eq!(h.l4_offset, h.l2_len + 20);
            assert_eq!(h.l4_header_len, Ok(20));
        }
    }

    #[test]
    fn ipv6_tcp_and_extension_chains() {
        let (f, _) = &samples()[2];
        let h = walk(f).unwrap();
        assert_eq!((h.l2_len, h.vlan_tags), (22, 2));
        assert_eq!(
            h.ip,
            Ip::V6 {
                payload_len: 42,
                fragment: false,
                later: false,
            }
        );
        assert_eq!(
            (h.l4_offset, h.l4_protocol, h.l4_header_len),
            (62, TCP, Ok(32))
        );
        assert_eq!(h.ip_end(), Some(f.len()));

        let (f, _) = &samples()[3];
        let h = walk(f).unwrap();
        assert_eq!((h.l2_len, h.vlan_tags), (26, 3));
        assert_eq!((h.l4_offset, h.l4_protocol), (26 + 40 + 56, UDP));
        assert_eq!(h.ip_end(), Some(f.len()));
        // An atomic fragment (offset 0, no more fragments) is a whole packet.
        assert!(h.is_ipv6() && !h.is_fragment());

        for (exts, l4) in [
            (&[(HOP, 8)][..], 48),
            (&[(DST, 8), (RT, 16)], 64),
            (&[(HOP, 8); 8], 104),
        ] {
            let f = frame(&[&eth(&[], 0x86dd), &ipv6(exts, TCP, 20), &tcp(0)]);
            let h = walk(&f).unwrap();
            assert_eq!((h.l4_offset, h.l4_protocol), (14 + l4, TCP), "{exts:?}");
        }
        // Nine is one too many.
        let f = frame(&[&eth(&[], 0x86dd), &ipv6(&[(HOP, 8); 9], TCP, 20), &tcp(0)]);
        assert_eq!(walk(&f), Err(Error::Ipv6ExtTooMany));
    }

    #[test]
    fn fragments_are_flagged() {
        for (flg_off, fragment) in [(0x4000, false), (0x2000, true), (0x0001, true)] {
            let f = frame(&[&eth(&[], 0x0800), &ipv4(0, UDP, 8, flg_off), &[0; 8]]);
            assert_eq!(walk(&f).unwrap().is_fragment(), fragment, "{flg_off:#x}");
        }
        for (off_m, fragment) in [
            (0x0000, false),
            (0x0001, true),
            (0x00b8, true),
            (0x0006, false),
        ] {
            let mut f = frame(&[&eth(&[], 0x86dd), &ipv6(&[(FRAG, 8)], UDP, 8), &[0; 8]]);
            f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&u16::to_be_bytes(off_m));
            let h = walk(&f).unwrap();
            assert_eq!(h.is_fragment(), fragment, "{off_m:#x}");
            assert_eq!(h.l4_offset, 14 + 48);
        }
    }

    #[test]
    fn later_fragments_are_told_from_the_first() {
        for (flg_off, later) in [
            (0x2000, false),
            (0x4000, false),
            (0x2001, true),
            (0x0001, true),
        ] {
            let f = frame(&[&eth(&[], 0x0800), &ipv4(0, UDP, 8, flg_off), &[0; 8]]);
            assert_eq!(walk(&f).unwrap().is_later_fragment(), later, "{flg_off:#x}");
        }
        for (off_m, later) in [
            (0x0001, false),
            (0x0006, false),
            (0x0008, true),
            (0x00b8, true),
        ] {
            let mut f = frame(&[&eth(&[], 0x86dd), &ipv6(&[(FRAG, 8)], UDP, 8), &[0; 8]]);
            f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&u16::to_be_bytes(off_m));
            assert_eq!(walk(&f).unwrap().is_later_fragment(), later, "{off_m:#x}");
        }
    }

    #[test]
    fn the_ethertype_behind_the_tags() {
        assert_eq!(ethernet::inner(&eth(&[], 0x0806)), Some((0x0806, 14)));
        let f = eth(&[0x8100, 0x88a8], 0x0806);
        assert_eq!(ethernet::inner(&f), Some((0x0806, 22)));
        for len in 0..f.len() {
            assert_eq!(ethernet::inner(&f[..len]), None, "{len}");
        }
    }

    #[test]
    fn udp_datagrams_end_where_the_shortest_length_says() {
        let udp = |len: u16| [&[0, 67, 0, 68][..], &len.to_be_bytes(), &[0, 0]].concat();
        let datagram = |f: &[u8]| udp::datagram(f, &walk(f).unwrap());
        // 4 bytes of payload, then Ethernet padding.
        let good = frame(&[
            &eth(&[0x8100], 0x0800),
            &ipv4(0, UDP, 12, 0),
            &udp(12),
            &[1; 4],
            &[0; 6],
        ]);
        let d = datagram(&good).unwrap();
        assert_eq!((d.src_port, d.dst_port, d.payload), (67, 68, 46..50));
        // A UDP length past the packet: the IP length ends it; both past: the frame does.
        let mut f = good.clone();
        f[42..44].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(datagram(&f).unwrap().payload, 46..50);
        f[20..22].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(datagram(&f).unwrap().payload, 46..56);
        // A UDP length below the header's is not believed.
        f[42..44].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(datagram(&f).unwrap().payload, 46..56);
        // An IP length inside the UDP header: an empty payload, never a backward range.
        f[20..22].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(datagram(&f).unwrap().payload, 46..46);
        // No datagram in a later fragment, in TCP, or in a cut UDP header.
        let later = frame(&[
            &eth(&[], 0x0800),
            &ipv4(0, UDP, 12, 0x0001),
            &udp(12),
            &[1; 4],
        ]);
        assert_eq!(datagram(&later), None);
        let tcp = frame(&[&eth(&[], 0x0800), &ipv4(0, TCP, 20, 0), &tcp(0)]);
        assert_eq!(datagram(&tcp), None);
        assert_eq!(datagram(&good[..18 + 20 + 7]), None);
        let v6 = frame(&[
            &eth(&[], 0x86dd),
            &ipv6(&[(HOP, 8)], UDP, 12),
            &udp(12),
            &[1; 4],
        ]);
        assert_eq!(datagram(&v6).unwrap().payload, 14 + 48 + 8..v6.len());
        let src = ipv6::src_addr(&v6, 14).unwrap();
        assert_eq!(src, "2000::".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(ipv6::src_addr(&v6[..14 + 23], 14), None);
    }

    #[test]
    fn ip_end_when_the_header_gives_none() {
        let mut f = frame(&[&eth(&[], 0x0800), &ipv4(0, TCP, 20, 0), &tcp(0)]);
        f[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(walk(&f).unwrap().ip_end(), None);
        let mut f = frame(&[&eth(&[], 0x86dd), &ipv6(&[], TCP, 20), &tcp(0)]);
        f[18..20].fill(0);
        assert_eq!(walk(&f).unwrap().ip_end(), None);
    }

    #[test]
    fn bad_headers_are_errors() {
        let v4 = frame(&[&eth(&[], 0x0800), &ipv4(0, TCP, 20, 0), &tcp(0)]);
        let v6 = frame(&[&eth(&[], 0x86dd), &ipv6(&[], TCP, 20), &tcp(0)]);
        let with = |f: &[u8], at: usize, b: u8| {
            let mut f = f.to_vec();
            f[at] = b;
            walk(&f)
        };
        // ARP, and IP versions that do not match the EtherType.
        assert_eq!(with(&v4, 13, 0x06), Err(Error::NotIp));
        assert_eq!(with(&v4, 14, 0x65), Err(Error::Ipv4Version));
        assert_eq!(with(&v6, 14, 0x45), Err(Error::Ipv6Version));
        // IHL below 5, or past the frame.
        assert_eq!(with(&v4, 14, 0x44), Err(Error::Ipv4HeaderLen));
        assert_eq!(with(&v4, 14, 0x4f), Err(Error::Ipv4Truncated));
        // TCP data offset below 5, or past the frame.
        let h = with(&v4, 34 + 12, 0x40).unwrap();
        assert_eq!(h.l4_header_len, Err(Error::TcpDataOffset));
        let h = with(&v4, 34 + 12, 0x60).unwrap();
        assert_eq!(h.l4_header_len, Err(Error::TcpTruncated));
        // Neither TCP nor UDP: the IP headers still count.
        let h = with(&v4, 14 + 9, ip_protocol::SCTP).unwrap();
        assert_eq!((h.l4_offset, h.l4_protocol), (34, ip_protocol::SCTP));
        assert_eq!(h.l4_header_len, Err(Error::NotTcpOrUdp));
        // An extension header whose length runs past the frame.
        let f = frame(&[&eth(&[], 0x86dd), &ipv6(&[(HOP, 8)], TCP, 20), &tcp(0)]);
        let mut long = f.clone();
        long[14 + 40 + 1] = 200;
        assert_eq!(walk(&long), Err(Error::Ipv6ExtTruncated));
        assert_eq!(Error::TcpTruncated.to_string(), "truncated TCP header");
    }

    // --- truncation and junk: errors, never panics ---

    #[test]
    fn truncated_frames_at_every_length() {
        for (f, hdrs) in samples() {
            let full = walk(&f).unwrap();
            assert_eq!(full.l4_offset + full.l4_header_len.unwrap(), hdrs);
            for len in 0..f.len() {
                let got = walk(&f[..len]);
                if len < full.l4_offset {
                    assert!(got.is_err(), "{len} of {hdrs}: {got:?}");
                } else if len < hdrs {
                    // The IP headers are whole; the L4 header is not.
                    let h = got.unwrap();
                    assert!(h.l4_header_len.is_err(), "{len} of {hdrs}");
                    assert_eq!(
                        Headers {
                            l4_header_len: full.l4_header_len,
                            ..h
                        },
                        full
                    );
                } else {
                    assert_eq!(got, Ok(full), "{len} of {hdrs}");
                }
            }
        }
        // Cut inside a tag.
        let f = eth(&[0x8100, 0x88a8], 0x0800);
        assert_eq!(walk(&f[..13]), Err(Error::EthernetTruncated));
        assert_eq!(walk(&f[..16]), Err(Error::VlanTruncated));
        assert_eq!(walk(&f[..19]), Err(Error::VlanTruncated));
        assert_eq!(walk(&f[..21]), Err(Error::VlanTruncated));
    }

    #[test]
    fn junk_never_panics_and_reports_only_what_fits() {
        // A small xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = [
            0x00, 0xff, 0x08, 0x81, 0x86, 0x88, 0xa8, 0xdd, 0x2c, 0x3c, 0x2b,
        ];
        let samples = samples();
        for _ in 0..20_000 {
            let r = next();
            let mut f = samples[r as usize % samples.len()].0.clone();
            for k in 0..(r >> 8) % 4 + 1 {
                let at = (next() as usize) % f.len();
                let v = next();
                f[at] = if k % 2 == 0 {
                    interesting[v as usize % interesting.len()]
                } else {
                    v as u8
                };
            }
            let len = (next() as usize) % (f.len() + 1);
            let f = &f[..len];
            if let Ok(h) = walk(f) {
                assert!(h.l2_len == 14 + 4 * h.vlan_tags);
                assert!(h.l2_len < h.l4_offset && h.l4_offset <= f.len());
                if let Ok(n) = h.l4_header_len {
                    assert!(h.l4_offset + n <= f.len());
                }
            }
        }
    }

    #[test]
    fn field_layouts_are_contiguous() {
        assert_eq!(
            (ethernet::HEADER_LEN, vlan::HEADER_LEN, ipv4::MIN_HEADER_LEN),
            (14, 4, 20)
        );
        assert_eq!((ipv6::HEADER_LEN, ipv6::frag::HEADER_LEN), (40, 8));
        assert_eq!(
            (tcp::MIN_HEADER_LEN, udp::HEADER_LEN, sctp::HEADER_LEN),
            (20, 8, 12)
        );
        assert_eq!(ethernet::field::SRC.end, ethernet::field::ETHERTYPE.start);
        assert_eq!(ipv6::field::SRC_ADDR.end, ipv6::field::DST_ADDR.start);
        assert_eq!(tcp::field::CHECKSUM.start, 16);
        assert_eq!(udp::field::CHECKSUM.start, 6);
        assert_eq!(sctp::field::CHECKSUM.start, 8);
    }
}
