//! The HTTP Datagram prefix (RFC 9297 §2.1): a QUIC variable-length integer (RFC 9000 §16),
//! the Quarter Stream ID of the request stream the datagram belongs to, before the payload.
//!
//! Every datagram is from the network: decoding is bounded by the slice and never panics.

/// Largest value a QUIC varint holds (2^62 − 1).
pub(crate) const VARINT_MAX: u64 = (1 << 62) - 1;

/// Why a datagram's prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// The datagram ends inside its varint.
    #[error("truncated varint")]
    Truncated,
    /// The datagram names another request stream.
    #[error("quarter stream id {0} is not this session's")]
    WrongStream(u64),
}

/// Bytes the varint encoding of `v` takes (1, 2, 4 or 8); `v` is at most [`VARINT_MAX`].
pub(crate) fn varint_len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Appends the varint encoding of `v` (clamped to [`VARINT_MAX`]) to `out`.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) {
    let v = v.min(VARINT_MAX);
    match varint_len(v) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Reads a varint from the front of `buf`: the value and the bytes it took.
pub(crate) fn get_varint(buf: &[u8]) -> Result<(u64, usize), Error> {
    let first = *buf.first().ok_or(Error::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len).ok_or(Error::Truncated)?;
    let v = bytes[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |v, b| (v << 8) | u64::from(*b));
    Ok((v, len))
}

/// A session's datagram prefix: the Quarter Stream ID of its CONNECT stream, encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefix {
    qsid: u64,
    encoded: Vec<u8>,
}

impl Prefix {
    /// The prefix of the request stream `stream_id` (client-initiated bidirectional: a
    /// multiple of 4, so the quarter is exact).
    pub(crate) fn for_stream(stream_id: u64) -> Self {
        let qsid = (stream_id / 4).min(VARINT_MAX);
        let mut encoded = Vec::with_capacity(varint_len(qsid));
        put_varint(&mut encoded, qsid);
        Prefix { qsid, encoded }
    }

    /// The encoded prefix, to put before each frame.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// Bytes the prefix takes of each datagram.
    pub(crate) fn len(&self) -> usize {
        self.encoded.len()
    }

    /// Where the payload of `datagram` starts, if it is this session's.
    pub(crate) fn payload_at(&self, datagram: &[u8]) -> Result<usize, Error> {
        let (qsid, n) = get_varint(datagram)?;
        if qsid != self.qsid {
            return Err(Error::WrongStream(qsid));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length_boundary() {
        for v in [
            0,
            63,
            64,
            16383,
            16384,
            0x3fff_ffff,
            0x4000_0000,
            VARINT_MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(get_varint(&out), Ok((v, out.len())), "{v}");
        }
        // RFC 9000 A.1's examples.
        assert_eq!(get_varint(&[0x25]), Ok((37, 1)));
        assert_eq!(get_varint(&[0x7b, 0xbd]), Ok((15293, 2)));
        assert_eq!(get_varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Ok((494_878_333, 4)));
        let mut big = Vec::new();
        put_varint(&mut big, u64::MAX);
        assert_eq!(get_varint(&big), Ok((VARINT_MAX, 8)));
    }

    #[test]
    fn truncated_and_foreign_prefixes_are_refused() {
        assert_eq!(get_varint(&[]), Err(Error::Truncated));
        assert_eq!(get_varint(&[0x40]), Err(Error::Truncated));
        assert_eq!(get_varint(&[0xc0, 0, 0, 0, 0, 0, 0]), Err(Error::Truncated));
        let p = Prefix::for_stream(0);
        assert_eq!(p.bytes(), &[0]);
        assert_eq!(p.payload_at(&[0, 1, 2]), Ok(1));
        assert_eq!(p.payload_at(&[1, 1, 2]), Err(Error::WrongStream(1)));
        // Stream 400 (the 101st request stream): quarter 100, two bytes.
        let p = Prefix::for_stream(400);
        assert_eq!(p.len(), 2);
        assert_eq!(p.payload_at(&[0x40, 100, 9]), Ok(2));
        assert_eq!(p.payload_at(&[0x40]), Err(Error::Truncated));
    }
}
