//! Super-frames between etherws peers: one WebSocket message carries a GSO super-frame of up
//! to 64 KB whole, with its offload metadata, instead of 45 MTU-sized frames.
//!
//! # Negotiation
//!
//! A client that can send and take super-frames says so in its upgrade request with the
//! header `X-Etherws-Frames: super/1`; a server that can too answers with the same header.
//! Only then does the connection carry super-frames, both ways. Everyone else — etherws 1.3,
//! v86, vpn-ws, browsers, a switch started with `--strict-frames`, a server that does not
//! answer the header — gets exactly what etherws 1.3 sends: one plain Ethernet frame per
//! binary message, never larger than the sender's MTU allowed.
//!
//! # Wire format (`super/1`)
//!
//! Every binary message starts with an 8-byte header, fields big-endian, then the Ethernet
//! frame (destination MAC first):
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 1 | `flags` | bit 0: the checksum from `csum_start` to the end is still to be computed and stored at `csum_start + csum_offset`; bit 1: the checksum was verified; other bits 0 |
//! | 1 | 1 | `gso_type` | 0: a single frame; 1: TCP/IPv4, 4: TCP/IPv6, 5: UDP (segmentation, not fragmentation) super-frame; bit 7: the TCP flow uses ECN |
//! | 2 | 2 | `gso_size` | payload bytes per segment (0 for a single frame) |
//! | 4 | 2 | `csum_start` | offset of the L4 header in the frame |
//! | 6 | 2 | `csum_offset` | offset of the checksum field from `csum_start` |
//!
//! These are the fields of Linux's `struct virtio_net_hdr` (without `hdr_len`, which the
//! receiver recomputes), in network byte order: the receiver hands the frame to a TAP device
//! or packet socket with that header, so the kernel finishes it, or finishes it in software
//! for a port that cannot take it. A message whose header breaks these rules closes the
//! connection (1002).

use bytes::{BufMut, Bytes, BytesMut};
use hyper::http::HeaderMap;

use crate::switch::frame::Frame;
use crate::wire::gso::{
    F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, MIN_GSO_SIZE,
    VnetHdr,
};

/// The upgrade header that offers (request) and accepts (response) super-frames.
pub(crate) const HEADER: &str = "x-etherws-frames";
/// Its value for this version of the wire format.
pub(crate) const VERSION: &str = "super/1";
/// Bytes in front of each frame.
pub(crate) const HDR_LEN: usize = 8;

/// True if `headers` offer (or accept) `super/1` (a comma-separated list may hold others).
pub(crate) fn offered(headers: &HeaderMap) -> bool {
    headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(VERSION))
}

/// The header of the message that carries `frame` (the frame follows it).
pub(crate) fn header(frame: &Frame) -> [u8; HDR_LEN] {
    let h = &frame.offload;
    let mut m = [0u8; HDR_LEN];
    m[0] = h.flags & (F_NEEDS_CSUM | F_DATA_VALID);
    m[1] = h.gso_type;
    m[2..4].copy_from_slice(&(if h.is_gso() { h.gso_size } else { 0 }).to_be_bytes());
    m[4..6].copy_from_slice(&h.csum_start.to_be_bytes());
    m[6..8].copy_from_slice(&h.csum_offset.to_be_bytes());
    m
}

/// The message that carries `frame`: its header, then the frame.
pub(crate) fn encode(frame: &Frame) -> Bytes {
    let mut m = BytesMut::with_capacity(HDR_LEN + frame.data.len());
    m.put_slice(&header(frame));
    m.put_slice(&frame.data);
    m.freeze()
}

/// Why a message is not a `super/1` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("message shorter than the super-frame header")]
    Short,
    #[error("unknown super-frame flags {0:#04x}")]
    Flags(u8),
    #[error("unknown GSO type {0:#04x}")]
    GsoType(u8),
    #[error("GSO super-frame without a checksum to compute")]
    GsoWithoutCsum,
    #[error("GSO segment size {0} below {MIN_GSO_SIZE}")]
    GsoSize(u16),
    #[error("checksum field at {0} outside the frame")]
    Csum(usize),
}

/// The frame a message carries, checked against the rules above (the bytes are shared, not
/// copied).
pub(crate) fn decode(msg: Bytes) -> Result<Frame, Error> {
    if msg.len() < HDR_LEN {
        return Err(Error::Short);
    }
    let be = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (flags, gso_type) = (msg[0], msg[1]);
    let hdr = VnetHdr {
        flags,
        gso_type,
        hdr_len: 0,
        gso_size: be(2),
        csum_start: be(4),
        csum_offset: be(6),
    };
    if flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(Error::Flags(flags));
    }
    let kind = gso_type & !GSO_ECN;
    let tcp = matches!(kind, GSO_TCPV4 | GSO_TCPV6);
    if !(tcp || kind == GSO_UDP_L4 || gso_type == GSO_NONE) {
        return Err(Error::GsoType(gso_type));
    }
    let len = msg.len() - HDR_LEN;
    if hdr.is_gso() {
        if !hdr.needs_csum() {
            return Err(Error::GsoWithoutCsum);
        }
        if hdr.gso_size < MIN_GSO_SIZE {
            return Err(Error::GsoSize(hdr.gso_size));
        }
    }
    if hdr.needs_csum() {
        let field = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset);
        if field + 2 > len {
            return Err(Error::Csum(field));
        }
    }
    // Fields that mean nothing for this frame are not carried on: a segment size without
    // segmentation, checksum offsets without a checksum to compute.
    let hdr = VnetHdr {
        gso_size: if hdr.is_gso() { hdr.gso_size } else { 0 },
        csum_start: if hdr.needs_csum() { hdr.csum_start } else { 0 },
        csum_offset: if hdr.needs_csum() { hdr.csum_offset } else { 0 },
        ..hdr
    };
    Ok(Frame::new(msg.slice(HDR_LEN..), hdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(hdr: VnetHdr, len: usize) -> Frame {
        Frame::new(
            Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
            hdr,
        )
    }

    #[test]
    fn round_trip() {
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 0,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let f = frame(hdr, 20_000);
        let m = encode(&f);
        assert_eq!(&m[..HDR_LEN], &[1, 0x81, 0x05, 0xa8, 0, 34, 0, 16]);
        assert_eq!(decode(m), Ok(f));
        let plain = frame(VnetHdr::default(), 60);
        assert_eq!(decode(encode(&plain)), Ok(plain.clone()));
        // Meaningless fields of a plain frame are dropped (found by the fuzzer).
        let mut m = encode(&plain).to_vec();
        m[2..8].copy_from_slice(&[0xa4, 0, 0, 9, 0x0a, 0xab]);
        assert_eq!(decode(Bytes::from(m)), Ok(plain));
    }

    #[test]
    fn refuses_what_no_etherws_sends() {
        let m = |h: [u8; 8], len: usize| {
            let mut v = h.to_vec();
            v.resize(HDR_LEN + len, 0);
            decode(Bytes::from(v))
        };
        assert_eq!(decode(Bytes::from_static(&[0; 7])), Err(Error::Short));
        assert_eq!(m([4, 0, 0, 0, 0, 0, 0, 0], 60), Err(Error::Flags(4)));
        assert_eq!(m([1, 3, 0, 100, 0, 34, 0, 6], 60), Err(Error::GsoType(3)));
        assert_eq!(
            m([0, 1, 5, 0, 0, 34, 0, 16], 3000),
            Err(Error::GsoWithoutCsum)
        );
        assert_eq!(m([1, 1, 0, 1, 0, 34, 0, 16], 3000), Err(Error::GsoSize(1)));
        assert_eq!(m([1, 0, 0, 0, 0, 50, 0, 16], 60), Err(Error::Csum(66)));
    }

    #[test]
    fn negotiation_header() {
        let mut h = HeaderMap::new();
        assert!(!offered(&h));
        h.insert(HEADER, "other/2, Super/1".parse().unwrap());
        assert!(offered(&h));
        h.insert(HEADER, "super/2".parse().unwrap());
        assert!(!offered(&h));
    }
}
