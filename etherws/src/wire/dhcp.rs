//! DHCPv4 (RFC 2131, options RFC 2132) as port security reads it, and the DHCP ports of both IP
//! versions. The message is read behind the UDP header ([`super::udp::datagram`]).

use std::net::Ipv4Addr;

/// UDP port of DHCPv4 servers and relays.
pub(crate) const SERVER_PORT: u16 = 67;
/// UDP port of DHCPv4 clients.
#[allow(dead_code, reason = "the ports as numbered")]
pub(crate) const CLIENT_PORT: u16 = 68;
/// UDP port of DHCPv6 servers and relay agents (RFC 8415).
pub(crate) const V6_SERVER_PORT: u16 = 547;
/// UDP port of DHCPv6 clients.
#[allow(dead_code, reason = "the ports as numbered")]
pub(crate) const V6_CLIENT_PORT: u16 = 546;

/// The fixed part of a DHCPv4 message (BOOTP's), then the magic cookie and the options.
#[allow(dead_code, reason = "the whole header as drawn")]
pub(crate) mod field {
    use core::ops::Range;

    /// 1: BOOTREQUEST (client to server), 2: BOOTREPLY.
    pub(crate) const OP: usize = 0;
    pub(crate) const HTYPE: usize = 1;
    pub(crate) const HLEN: usize = 2;
    pub(crate) const HOPS: usize = 3;
    pub(crate) const XID: Range<usize> = 4..8;
    pub(crate) const SECS: Range<usize> = 8..10;
    pub(crate) const FLAGS: Range<usize> = 10..12;
    /// The client's address, when it has one (in a RELEASE, the address released).
    pub(crate) const CIADDR: Range<usize> = 12..16;
    /// "Your" address: the one the server gives.
    pub(crate) const YIADDR: Range<usize> = 16..20;
    pub(crate) const SIADDR: Range<usize> = 20..24;
    pub(crate) const GIADDR: Range<usize> = 24..28;
    /// The client's hardware address, `HLEN` bytes of 16.
    pub(crate) const CHADDR: Range<usize> = 28..44;
    pub(crate) const SNAME: Range<usize> = 44..108;
    pub(crate) const FILE: Range<usize> = 108..236;
    pub(crate) const MAGIC: Range<usize> = 236..240;
}
/// The BOOTP part, without cookie and options.
pub(crate) const FIXED_LEN: usize = field::FILE.end;
/// Where the options start, behind the magic cookie.
pub(crate) const OPTIONS: usize = field::MAGIC.end;
pub(crate) const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

pub(crate) const OP_REQUEST: u8 = 1;
pub(crate) const OP_REPLY: u8 = 2;
pub(crate) const HTYPE_ETHERNET: u8 = 1;

/// Option codes.
pub(crate) mod option {
    pub(crate) const PAD: u8 = 0;
    pub(crate) const LEASE_TIME: u8 = 51;
    /// Client identifier: a hardware type and address when its first byte is a type (1:
    /// Ethernet), which servers may key their leases on instead of `chaddr`.
    pub(crate) const CLIENT_ID: u8 = 61;
    pub(crate) const MESSAGE_TYPE: u8 = 53;
    pub(crate) const END: u8 = 255;
}

/// Message types (option 53).
#[allow(dead_code, reason = "the message types as numbered")]
pub(crate) mod message {
    pub(crate) const DISCOVER: u8 = 1;
    pub(crate) const OFFER: u8 = 2;
    pub(crate) const REQUEST: u8 = 3;
    pub(crate) const DECLINE: u8 = 4;
    pub(crate) const ACK: u8 = 5;
    pub(crate) const NAK: u8 = 6;
    pub(crate) const RELEASE: u8 = 7;
    pub(crate) const INFORM: u8 = 8;
}

/// Options read at most (pads included), so a 64 KB message costs no more than a real one.
pub(crate) const MAX_OPTIONS: usize = 256;

/// What port security reads of a DHCPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dhcpv4 {
    pub(crate) op: u8,
    pub(crate) htype: u8,
    pub(crate) hlen: u8,
    pub(crate) ciaddr: Ipv4Addr,
    pub(crate) yiaddr: Ipv4Addr,
    /// The first 6 bytes of `chaddr`: the whole of it when `htype`/`hlen` say Ethernet.
    pub(crate) chaddr: [u8; 6],
    /// Option 53; `None` in plain BOOTP (no cookie) or when the options do not carry it.
    pub(crate) message_type: Option<u8>,
    /// Option 51, in seconds (`u32::MAX`: infinite).
    pub(crate) lease_time: Option<u32>,
    /// Option 61 when it names an Ethernet address (type 1 and 6 bytes).
    pub(crate) client_mac: Option<[u8; 6]>,
}

impl Dhcpv4 {
    /// Reads the message at the start of `msg` (the UDP payload). `None` when it is shorter
    /// than the fixed part. Options are read only behind the magic cookie, at most
    /// [`MAX_OPTIONS`] of them, and never past `msg`; option overload (52) is not followed.
    pub(crate) fn parse(msg: &[u8]) -> Option<Dhcpv4> {
        let fixed = msg.get(..FIXED_LEN)?;
        let addr = |r: core::ops::Range<usize>| -> Option<Ipv4Addr> {
            Some(<[u8; 4]>::try_from(fixed.get(r)?).ok()?.into())
        };
        let mut d = Dhcpv4 {
            op: fixed[field::OP],
            htype: fixed[field::HTYPE],
            hlen: fixed[field::HLEN],
            ciaddr: addr(field::CIADDR)?,
            yiaddr: addr(field::YIADDR)?,
            chaddr: fixed
                .get(field::CHADDR.start..field::CHADDR.start + 6)?
                .try_into()
                .ok()?,
            message_type: None,
            lease_time: None,
            client_mac: None,
        };
        if msg.get(field::MAGIC) == Some(&MAGIC_COOKIE[..]) {
            d.read_options(msg.get(OPTIONS..).unwrap_or_default());
        }
        Some(d)
    }

    /// Whether `chaddr` is an Ethernet address (and so all of it is in [`Dhcpv4::chaddr`]).
    pub(crate) fn has_ethernet_chaddr(&self) -> bool {
        self.htype == HTYPE_ETHERNET && self.hlen == 6
    }

    /// Whether `chaddr` is the Ethernet address `mac`.
    pub(crate) fn chaddr_is(&self, mac: [u8; 6]) -> bool {
        self.has_ethernet_chaddr() && self.chaddr == mac
    }

    /// Takes the message type and lease time from `opts`; the first of each counts.
    fn read_options(&mut self, opts: &[u8]) {
        let mut at = 0;
        for _ in 0..MAX_OPTIONS {
            let Some(&code) = opts.get(at) else { return };
            match code {
                option::END => return,
                option::PAD => at += 1,
                _ => {
                    let Some(&len) = opts.get(at + 1) else { return };
                    let Some(data) = opts.get(at + 2..at + 2 + usize::from(len)) else {
                        return;
                    };
                    self.take(code, data);
                    at += 2 + usize::from(len);
                }
            }
        }
    }

    /// Keeps the option `code` if it is one of those read, well-formed and the first.
    fn take(&mut self, code: u8, data: &[u8]) {
        match (code, data) {
            (option::MESSAGE_TYPE, &[t]) if self.message_type.is_none() => {
                self.message_type = Some(t);
            }
            (option::LEASE_TIME, &[a, b, c, d]) if self.lease_time.is_none() => {
                self.lease_time = Some(u32::from_be_bytes([a, b, c, d]));
            }
            (option::CLIENT_ID, &[HTYPE_ETHERNET, a, b, c, d, e, f])
                if self.client_mac.is_none() =>
            {
                self.client_mac = Some([a, b, c, d, e, f]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCP message: `op`, Ethernet `chaddr`, `yiaddr`, then the options given (cookie
    /// included when `opts` is `Some`).
    fn message(op: u8, chaddr: [u8; 6], yiaddr: [u8; 4], opts: Option<&[u8]>) -> Vec<u8> {
        let mut m = vec![0u8; FIXED_LEN];
        m[field::OP] = op;
        m[field::HTYPE] = HTYPE_ETHERNET;
        m[field::HLEN] = 6;
        m[field::YIADDR].copy_from_slice(&yiaddr);
        m[field::CHADDR.start..field::CHADDR.start + 6].copy_from_slice(&chaddr);
        if let Some(opts) = opts {
            m.extend_from_slice(&MAGIC_COOKIE);
            m.extend_from_slice(opts);
        }
        m
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];

    #[test]
    fn reads_the_fixed_part_and_the_options() {
        let opts = [
            0, 0, 53, 1, 5, 1, 4, 255, 255, 255, 0, 51, 4, 0, 0, 0x0e, 0x10, 255, 53, 1, 6,
        ];
        let m = message(OP_REPLY, MAC, [192, 0, 2, 10], Some(&opts));
        let d = Dhcpv4::parse(&m).unwrap();
        assert_eq!((d.op, d.yiaddr), (OP_REPLY, Ipv4Addr::new(192, 0, 2, 10)));
        assert!(d.chaddr_is(MAC) && !d.chaddr_is([2, 0, 0, 0, 0, 0x0b]));
        // The first message type counts; what follows END does not.
        assert_eq!(
            (d.message_type, d.lease_time),
            (Some(message::ACK), Some(3600))
        );
        assert_eq!((OPTIONS, field::CHADDR.end), (240, 44));
    }

    #[test]
    fn bootp_and_odd_options() {
        let d = Dhcpv4::parse(&message(OP_REQUEST, MAC, [0; 4], None)).unwrap();
        assert_eq!((d.message_type, d.lease_time), (None, None));
        // A lease time of the wrong length is ignored; a length past the end stops the walk.
        let m = message(OP_REPLY, MAC, [0; 4], Some(&[51, 2, 0, 1, 53, 9, 5]));
        let d = Dhcpv4::parse(&m).unwrap();
        assert_eq!((d.message_type, d.lease_time), (None, None));
        // Only MAX_OPTIONS options are read: a message type behind 300 pads is not seen.
        let mut opts = vec![0u8; 300];
        opts.extend_from_slice(&[53, 1, 7]);
        let d = Dhcpv4::parse(&message(OP_REQUEST, MAC, [0; 4], Some(&opts))).unwrap();
        assert_eq!(d.message_type, None);
        let mut m = message(OP_REQUEST, MAC, [0; 4], None);
        m[field::HLEN] = 16;
        assert!(!Dhcpv4::parse(&m).unwrap().chaddr_is(MAC));
    }

    #[test]
    fn truncations_never_panic() {
        let opts = [53, 1, 5, 51, 4, 0, 0, 0x0e, 0x10, 255];
        let m = message(OP_REPLY, MAC, [192, 0, 2, 10], Some(&opts));
        for len in 0..m.len() {
            let d = Dhcpv4::parse(&m[..len]);
            assert_eq!(d.is_some(), len >= FIXED_LEN, "{len}");
        }
    }
}
