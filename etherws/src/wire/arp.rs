//! ARP (RFC 826) for IPv4 over Ethernet: the one layout the switch reads, for port security.

use std::net::Ipv4Addr;

/// The EtherType of ARP.
pub(crate) const ETHERTYPE: u16 = 0x0806;

/// The packet behind the Ethernet header (and its VLAN tags).
#[allow(dead_code, reason = "the whole header as drawn")]
pub(crate) mod field {
    use core::ops::Range;

    pub(crate) const HTYPE: Range<usize> = 0..2;
    pub(crate) const PTYPE: Range<usize> = 2..4;
    pub(crate) const HLEN: usize = 4;
    pub(crate) const PLEN: usize = 5;
    pub(crate) const OPER: Range<usize> = 6..8;
    /// Sender hardware (MAC) address.
    pub(crate) const SHA: Range<usize> = 8..14;
    /// Sender protocol (IPv4) address.
    pub(crate) const SPA: Range<usize> = 14..18;
    /// Target hardware (MAC) address.
    pub(crate) const THA: Range<usize> = 18..24;
    /// Target protocol (IPv4) address.
    pub(crate) const TPA: Range<usize> = 24..28;
}
/// An Ethernet/IPv4 ARP packet, without the padding up to the Ethernet minimum.
pub(crate) const PACKET_LEN: usize = field::TPA.end;

#[allow(dead_code, reason = "the operations as numbered")]
pub(crate) const OP_REQUEST: u16 = 1;
#[allow(dead_code, reason = "the operations as numbered")]
pub(crate) const OP_REPLY: u16 = 2;

/// What port security reads of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arp {
    pub(crate) op: u16,
    pub(crate) sender_mac: [u8; 6],
    /// 0.0.0.0 in a probe (RFC 5227): a host asking whether an address is free.
    pub(crate) sender_ip: Ipv4Addr,
    pub(crate) target_ip: Ipv4Addr,
}

impl Arp {
    /// Reads the ARP packet at the start of `packet` (what follows the Ethernet header).
    ///
    /// `None` when it is truncated or is not about IPv4 over 6-byte addresses: hosts drop such
    /// packets, so the caller may too. The hardware type is not checked: Linux takes Ethernet (1)
    /// and IEEE 802 (6) alike on an Ethernet device, so both must be judged the same.
    pub(crate) fn parse(packet: &[u8]) -> Option<Arp> {
        let p = packet.get(..PACKET_LEN)?;
        let ptype = u16::from_be_bytes([p[field::PTYPE.start], p[field::PTYPE.start + 1]]);
        if ptype != super::ethernet::ETHERTYPE_IPV4 || p[field::HLEN] != 6 || p[field::PLEN] != 4 {
            return None;
        }
        Some(Arp {
            op: u16::from_be_bytes(p[field::OPER].try_into().ok()?),
            sender_mac: p[field::SHA].try_into().ok()?,
            sender_ip: <[u8; 4]>::try_from(&p[field::SPA]).ok()?.into(),
            target_ip: <[u8; 4]>::try_from(&p[field::TPA]).ok()?.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gratuitous ARP reply of 02:00:00:00:00:0a for 192.0.2.10.
    fn packet() -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 2];
        p.extend_from_slice(&[2, 0, 0, 0, 0, 0x0a, 192, 0, 2, 10]);
        p.extend_from_slice(&[0xff; 6]);
        p.extend_from_slice(&[192, 0, 2, 10]);
        p
    }

    #[test]
    fn reads_the_fields() {
        let a = Arp::parse(&packet()).unwrap();
        assert_eq!(a.op, OP_REPLY);
        assert_eq!(a.sender_mac, [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(a.sender_ip, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(a.target_ip, Ipv4Addr::new(192, 0, 2, 10));
        // Padding behind it is no part of it.
        let mut padded = packet();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(Arp::parse(&padded), Some(a));
        assert_eq!(field::THA.start, field::SPA.end);
    }

    #[test]
    fn other_layouts_and_truncations_are_none() {
        let p = packet();
        for len in 0..p.len() {
            assert_eq!(Arp::parse(&p[..len]), None, "{len}");
        }
        for (at, b) in [(2, 0x86), (4, 8), (5, 16)] {
            let mut q = p.clone();
            q[at] = b;
            assert_eq!(Arp::parse(&q), None, "{at}");
        }
        let mut ieee802 = p.clone();
        ieee802[1] = 6;
        assert!(Arp::parse(&ieee802).is_some());
    }
}
