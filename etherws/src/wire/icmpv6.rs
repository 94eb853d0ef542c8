//! ICMPv6 (RFC 4443) and its neighbor discovery messages (RFC 4861) as port security reads
//! them: the type of any message, and the target and link-layer address options of neighbor
//! solicitations and advertisements.

use std::net::Ipv6Addr;

#[allow(dead_code, reason = "the whole header as drawn")]
pub(crate) mod field {
    use core::ops::Range;

    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Range<usize> = 2..4;
}

/// Message types.
#[allow(dead_code, reason = "the message types as numbered")]
pub(crate) mod kind {
    pub(crate) const ROUTER_SOLICIT: u8 = 133;
    pub(crate) const ROUTER_ADVERT: u8 = 134;
    pub(crate) const NEIGHBOR_SOLICIT: u8 = 135;
    pub(crate) const NEIGHBOR_ADVERT: u8 = 136;
    pub(crate) const REDIRECT: u8 = 137;
}

/// A neighbor solicitation or advertisement: the ICMPv6 header, 4 bytes of flags (NA) or
/// reserved (NS), the target address, then options.
pub(crate) mod nd {
    #[allow(dead_code, reason = "the whole header as drawn")]
    pub(crate) mod field {
        use core::ops::Range;

        pub(crate) const FLAGS: Range<usize> = 4..8;
        pub(crate) const TARGET: Range<usize> = 8..24;
    }
    pub(crate) const OPTIONS: usize = field::TARGET.end;
    /// Where a router solicitation's options start (type, code, checksum, reserved).
    pub(crate) const RS_OPTIONS: usize = field::FLAGS.end;

    /// An option: type, length in 8-byte units (never 0), data.
    pub(crate) mod option {
        pub(crate) const SOURCE_LL_ADDR: u8 = 1;
        pub(crate) const TARGET_LL_ADDR: u8 = 2;
        pub(crate) const UNIT: usize = 8;
        /// Where an Ethernet address stands in a link-layer address option.
        pub(crate) const LL_ADDR: core::ops::Range<usize> = 2..8;
    }

    /// Options read at most; a message with more is treated as malformed.
    pub(crate) const MAX_OPTIONS: usize = 32;
}

/// The type of the ICMPv6 message at the start of `msg`, if it has one.
pub(crate) fn msg_type(msg: &[u8]) -> Option<u8> {
    msg.get(field::TYPE).copied()
}

/// A neighbor solicitation or advertisement whose options have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nd<'a> {
    pub(crate) msg_type: u8,
    pub(crate) target: Ipv6Addr,
    options: &'a [u8],
}

impl<'a> Nd<'a> {
    /// Reads the NS or NA at the start of `msg` (the ICMPv6 message, up to the IPv6 packet's
    /// end). `None` when it is another type, truncated, or its options are malformed (one of
    /// length 0 or past the end, or more than [`nd::MAX_OPTIONS`]): receivers drop those
    /// (RFC 4861, 7.1.1 and 7.1.2).
    pub(crate) fn parse(msg: &'a [u8]) -> Option<Nd<'a>> {
        let msg_type = msg_type(msg)?;
        let (target, options) = match msg_type {
            kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT => (
                <[u8; 16]>::try_from(msg.get(nd::field::TARGET)?)
                    .ok()?
                    .into(),
                msg.get(nd::OPTIONS..)?,
            ),
            // No target: reserved bytes, then options. Its source link-layer address option
            // updates the router's neighbor entry for the source as an NS's does.
            kind::ROUTER_SOLICIT => (Ipv6Addr::UNSPECIFIED, msg.get(nd::RS_OPTIONS..)?),
            _ => return None,
        };
        let nd = Nd {
            msg_type,
            target,
            options,
        };
        let mut walked = 0;
        for opt in nd.options() {
            walked += 1;
            if opt.is_none() || walked > nd::MAX_OPTIONS {
                return None;
            }
        }
        Some(nd)
    }

    /// Every source and target link-layer address option's Ethernet address. Hosts differ
    /// in which of several they believe (Linux takes the first), so a checker checks all.
    pub(crate) fn link_layer_addrs(&self) -> impl Iterator<Item = [u8; 6]> + 'a {
        self.options().map_while(|o| o).filter_map(|(t, data)| {
            matches!(t, nd::option::SOURCE_LL_ADDR | nd::option::TARGET_LL_ADDR)
                .then(|| data.get(nd::option::LL_ADDR)?.try_into().ok())
                .flatten()
        })
    }

    /// The options as (type, whole option), `None` for a malformed one (and nothing after it).
    fn options(&self) -> impl Iterator<Item = Option<(u8, &'a [u8])>> + 'a {
        let mut rest = self.options;
        let mut broken = false;
        core::iter::from_fn(move || {
            if rest.is_empty() || broken {
                return None;
            }
            let len = usize::from(*rest.get(1).unwrap_or(&0)) * nd::option::UNIT;
            let Some(opt) = rest.get(..len).filter(|_| len > 0) else {
                broken = true;
                return Some(None);
            };
            rest = &rest[len..];
            Some(Some((opt[0], opt)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];

    /// A neighbor message of `msg_type` for 2001:db8::a with the options given.
    fn message(msg_type: u8, options: &[&[u8]]) -> Vec<u8> {
        let mut m = vec![msg_type, 0, 0, 0, 0x60, 0, 0, 0];
        m.extend_from_slice(&"2001:db8::a".parse::<Ipv6Addr>().unwrap().octets());
        for o in options {
            m.extend_from_slice(o);
        }
        m
    }

    fn lla(t: u8, mac: [u8; 6]) -> Vec<u8> {
        [&[t, 1][..], &mac].concat()
    }

    #[test]
    fn reads_target_and_link_layer_addresses() {
        let other = [2, 0, 0, 0, 0, 0x0b];
        let nonce = [14u8, 1, 1, 2, 3, 4, 5, 6];
        let m = message(
            kind::NEIGHBOR_ADVERT,
            &[
                &lla(2, MAC),
                &nonce,
                &lla(1, other),
                &[9, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ],
        );
        let nd = Nd::parse(&m).unwrap();
        assert_eq!(nd.target, "2001:db8::a".parse::<Ipv6Addr>().unwrap());
        assert_eq!(nd.link_layer_addrs().collect::<Vec<_>>(), [MAC, other]);
        assert_eq!(msg_type(&m), Some(kind::NEIGHBOR_ADVERT));
        assert_eq!((nd::OPTIONS, msg_type(&[])), (24, None));
    }

    #[test]
    fn malformed_is_none() {
        // Another type; a zero-length option; an option past the end; too many options.
        assert_eq!(Nd::parse(&message(kind::ROUTER_ADVERT, &[])), None);
        assert_eq!(
            Nd::parse(&message(
                kind::NEIGHBOR_SOLICIT,
                &[&[1, 0, 0, 0, 0, 0, 0, 0]]
            )),
            None
        );
        assert_eq!(
            Nd::parse(&message(kind::NEIGHBOR_SOLICIT, &[&lla(1, MAC)[..7]])),
            None
        );
        let many = vec![lla(1, MAC); nd::MAX_OPTIONS + 1];
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(Nd::parse(&message(kind::NEIGHBOR_SOLICIT, &many)), None);
        assert!(Nd::parse(&message(kind::NEIGHBOR_SOLICIT, &many[1..])).is_some());
    }

    #[test]
    fn truncations_never_panic() {
        let m = message(kind::NEIGHBOR_SOLICIT, &[&lla(1, MAC), &lla(2, MAC)]);
        for len in 0..m.len() {
            // Whole options only: cut at an option boundary it is well-formed, else not.
            let ok = len == 24 || len == 32;
            assert_eq!(Nd::parse(&m[..len]).is_some(), ok, "{len}");
        }
    }
}
