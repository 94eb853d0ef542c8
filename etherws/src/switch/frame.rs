//! Ethernet frame parsing: just enough of the header to switch on.
//!
//! A frame is what one WebSocket binary message carries and what a TAP or AF_PACKET socket
//! reads: destination MAC, source MAC, EtherType or 802.1Q tag, payload — no preamble, no FCS.
//! The switch only ever needs the two addresses and the VLAN id, so parsing is a few bounds
//! checks over a borrowed slice and never copies.

use core::fmt;

use bytes::Bytes;
use etherws_common::{ETH_ALEN, ETH_P_8021Q};

use crate::wire::gso::{self, VnetHdr};
use crate::wire::{ethernet, vlan};

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Mac(pub(crate) [u8; ETH_ALEN]);

impl Mac {
    #[cfg(test)]
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub(crate) const BROADCAST: Mac = Mac([0xff; ETH_ALEN]);

    /// True for group (multicast and broadcast) addresses: the I/G bit, the least significant
    /// bit of the first octet. Such addresses are never learned and always flooded.
    pub(crate) fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    /// Lower-case, colon separated, as etherws 1.3's `listFdb` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a byte string is not a frame the switch can forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Shorter than an Ethernet header (14 bytes), or than an 802.1Q header (18 bytes) when the
    /// EtherType says a tag follows.
    #[error("runt frame of {0} bytes")]
    Runt(usize),
}

/// The switching-relevant view of an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) dst: Mac,
    pub(crate) src: Mac,
    /// 802.1Q VLAN id, 0 for untagged frames (and for priority-tagged frames, whose VID is 0).
    pub(crate) vid: u16,
    /// The frame carries an 802.1Q tag (a priority tag with VID 0 included).
    pub(crate) tagged: bool,
}

impl Header {
    /// Parses the header of `data`.
    ///
    /// The VLAN id is the low 12 bits of the TCI whatever the priority (PCP) and DEI bits say;
    /// etherws 1.3 only recognised a tag whose TCI high byte was zero, so a frame with priority
    /// bits landed in VLAN 0 — that bug is deliberately not kept.
    ///
    /// # Errors
    ///
    /// [`FrameError::Runt`] if `data` is shorter than its Ethernet (and 802.1Q) header.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, FrameError> {
        if data.len() < ethernet::HEADER_LEN {
            return Err(FrameError::Runt(data.len()));
        }
        let mac = |at: core::ops::Range<usize>| {
            let mut m = [0; ETH_ALEN];
            m.copy_from_slice(&data[at]);
            Mac(m)
        };
        let tagged = ethernet::ethertype(data) == Some(ETH_P_8021Q);
        let vid = if tagged {
            // The tag, and the EtherType after it.
            let (_, tci) = vlan::outer(data)
                .filter(|_| data.len() >= TAGGED_HEADER_LEN)
                .ok_or(FrameError::Runt(data.len()))?;
            tci & vlan::VID_MASK
        } else {
            0
        };
        Ok(Header {
            dst: mac(ethernet::field::DST),
            src: mac(ethernet::field::SRC),
            vid,
            tagged,
        })
    }
}

/// An Ethernet header with one tag: addresses, tag, EtherType.
const TAGGED_HEADER_LEN: usize = ethernet::HEADER_LEN + vlan::HEADER_LEN;

/// What a frame weighs once finished ([`Frame::finished_len`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinishedLen {
    /// The largest frame it becomes.
    pub(crate) largest: usize,
    /// All the bytes it becomes.
    pub(crate) total: usize,
}

/// The destination and source addresses: where an 802.1Q tag is inserted.
const ADDRS_LEN: usize = vlan::OUTER;

/// A frame as it moves through the switch: its bytes, and what is still to be done to it.
///
/// Devices with offloads (TAP with a vnet header, veth and NICs through `PACKET_VNET_HDR`) and
/// peers that negotiated super-frames hand over frames the kernel has not finished: a checksum
/// left to the "hardware", or a GSO super-frame of up to 64 KB to be cut into segments. Such a
/// frame crosses the switch whole, with its `virtio_net_hdr`; only a port that cannot take it
/// (a strict WebSocket peer, an AF_XDP socket) finishes it, with [`Frame::into_plain`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) data: Bytes,
    /// What is left to do; all zero for a plain frame.
    pub(crate) offload: VnetHdr,
}

impl From<Bytes> for Frame {
    fn from(data: Bytes) -> Self {
        Frame {
            data,
            offload: VnetHdr::default(),
        }
    }
}

impl Frame {
    pub(crate) fn new(data: Bytes, offload: VnetHdr) -> Self {
        Frame { data, offload }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// What this frame weighs once finished: the largest frame it becomes (a super-frame's
    /// segments, headers plus `gso_size`: what `--max-frame` is checked against), and all the
    /// bytes it becomes (a super-frame's segments each repeat its headers: what a rate limit
    /// counts for a port that takes plain frames). A plain frame, or a super-frame whose
    /// headers cannot be walked (it will be dropped when finished), is its own length.
    pub(crate) fn finished_len(&self) -> FinishedLen {
        let whole = FinishedLen {
            largest: self.data.len(),
            total: self.data.len(),
        };
        if !self.offload.is_gso() {
            return whole;
        }
        let Ok(h) = crate::wire::walk(&self.data) else {
            return whole;
        };
        let Ok(l4) = h.l4_header_len else {
            return whole;
        };
        let (hdrs, mss) = (h.l4_offset + l4, usize::from(self.offload.gso_size).max(1));
        let payload = self.data.len().saturating_sub(hdrs);
        FinishedLen {
            largest: (hdrs + mss).min(self.data.len()),
            total: payload.div_ceil(mss).max(1) * hdrs + payload,
        }
    }

    /// This frame with an 802.1Q tag for `vid` inserted after the addresses (priority 0): how an
    /// access port's frame leaves by a trunk. A super-frame's offsets move with its headers.
    pub(crate) fn with_tag(&self, vid: u16) -> Frame {
        let d = &self.data;
        let mut out = Vec::with_capacity(d.len() + vlan::HEADER_LEN);
        out.extend_from_slice(&d[..ADDRS_LEN.min(d.len())]);
        out.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        out.extend_from_slice(&(vid & vlan::VID_MASK).to_be_bytes());
        out.extend_from_slice(&d[ADDRS_LEN.min(d.len())..]);
        Frame {
            data: Bytes::from(out),
            offload: self.offload.shifted(vlan::HEADER_LEN as u16),
        }
    }

    /// This frame without its outer 802.1Q tag: how a trunk's frame leaves by an access port.
    /// A frame without a tag is returned as it is.
    pub(crate) fn without_tag(&self) -> Frame {
        let d = &self.data;
        let tagged = d.len() >= TAGGED_HEADER_LEN
            && vlan::outer(d).is_some_and(|(tpid, _)| tpid == ETH_P_8021Q);
        if !tagged {
            return self.clone();
        }
        let mut out = Vec::with_capacity(d.len() - vlan::HEADER_LEN);
        out.extend_from_slice(&d[..ADDRS_LEN]);
        out.extend_from_slice(&d[ADDRS_LEN + vlan::HEADER_LEN..]);
        Frame {
            data: Bytes::from(out),
            offload: self.offload.unshifted(vlan::HEADER_LEN as u16),
        }
    }

    /// The plain frames this one stands for: itself; itself with its checksum filled in (a
    /// copy: the bytes may be shared with other ports' queues); or a super-frame's segments.
    ///
    /// # Errors
    ///
    /// The [`gso::Error`] of offload metadata that does not fit the frame (a peer's mistake):
    /// the frame cannot be sent as it is, and is to be dropped.
    pub(crate) fn into_plain(self) -> Result<Plain, gso::Error> {
        let hdr = self.offload;
        if hdr.is_gso() {
            return Ok(Plain::Many(gso::segment(&hdr, &self.data)?.into_iter()));
        }
        if hdr.needs_csum() {
            let mut data = self.data.to_vec();
            gso::fix_csum(&hdr, &mut data)?;
            return Ok(Plain::One(Some(Bytes::from(data))));
        }
        Ok(Plain::One(Some(self.data)))
    }
}

/// The plain frames of one [`Frame`], in order.
pub(crate) enum Plain {
    One(Option<Bytes>),
    Many(std::vec::IntoIter<Bytes>),
}

impl Iterator for Plain {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        match self {
            Plain::One(f) => f.take(),
            Plain::Many(it) => it.next(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a frame for tests: untagged when `vid` is None.
    pub(crate) fn frame(dst: [u8; 6], src: [u8; 6], tci: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        if let Some(tci) = tci {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

    #[test]
    fn untagged() {
        let h = Header::parse(&frame(B, A, None)).unwrap();
        assert_eq!(h.dst, Mac(B));
        assert_eq!(h.src, Mac(A));
        assert_eq!(h.vid, 0);
    }

    #[test]
    fn tagged_vid() {
        let h = Header::parse(&frame(B, A, Some(10))).unwrap();
        assert_eq!(h.vid, 10);
        let h = Header::parse(&frame(B, A, Some(4095))).unwrap();
        assert_eq!(h.vid, 4095);
    }

    #[test]
    fn priority_bits_do_not_hide_the_vid() {
        // PCP 5, DEI 1, VID 10: etherws 1.3 read this as VLAN 0.
        let tci = (5 << 13) | (1 << 12) | 10;
        assert_eq!(Header::parse(&frame(B, A, Some(tci))).unwrap().vid, 10);
        // Priority tag only (VID 0) stays in VLAN 0.
        assert_eq!(Header::parse(&frame(B, A, Some(3 << 13))).unwrap().vid, 0);
    }

    #[test]
    fn tags_are_pushed_and_popped_with_the_offsets() {
        let plain = Frame::new(
            Bytes::from(frame(B, A, None)),
            VnetHdr {
                flags: 1, // needs checksum
                csum_start: 34,
                csum_offset: 16,
                hdr_len: 54,
                ..VnetHdr::default()
            },
        );
        let tagged = plain.with_tag(10);
        assert_eq!(tagged.data[..], frame(B, A, Some(10))[..]);
        assert_eq!(
            (tagged.offload.csum_start, tagged.offload.hdr_len),
            (38, 58)
        );
        let h = Header::parse(&tagged.data).unwrap();
        assert!(h.tagged && h.vid == 10);
        assert_eq!(tagged.without_tag(), plain);
        // Nothing to pop on an untagged frame.
        assert_eq!(plain.without_tag(), plain);
    }

    #[test]
    fn runts_are_rejected() {
        for len in 0..ethernet::HEADER_LEN {
            assert_eq!(Header::parse(&vec![0; len]), Err(FrameError::Runt(len)));
        }
        let mut tagged_runt = frame(B, A, Some(10));
        tagged_runt.truncate(16);
        assert_eq!(Header::parse(&tagged_runt), Err(FrameError::Runt(16)));
        // A bare 14-byte header is a (useless but) valid frame.
        assert!(Header::parse(&frame(B, A, None)[..14]).is_ok());
    }

    #[test]
    fn multicast_bit_and_format() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac(A).is_multicast());
        assert_eq!(
            Mac([0xde, 0xad, 0xbe, 0xef, 0, 0x0a]).to_string(),
            "de:ad:be:ef:00:0a"
        );
    }
}
