//! Capsules (RFC 9297 §3) on the CONNECT stream: what carries a frame too large for one
//! datagram, as a DATAGRAM capsule (type 0x00), when both ends sent `capsule-protocol: ?1`.
//!
//! A capsule is a varint type, a varint length and that many bytes. The stream's DATA comes in
//! chunks of any size from the network: [`Parser`] reads them one at a time, keeps at most one
//! capsule (a DATAGRAM capsule's payload, at most `cap` bytes), skips every other type (grease,
//! unknown) without keeping it, and refuses a length over `cap` whatever the type.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{get_varint, put_varint};

/// The DATAGRAM capsule type (RFC 9297 §3.5).
pub(crate) const DATAGRAM: u64 = 0x00;

/// The HTTP/3 error code a session is closed with when its capsules go wrong (H3_DATAGRAM_ERROR).
pub(crate) const H3_DATAGRAM_ERROR: u32 = 0x33;

/// Longest capsule header: two 8-byte varints.
const HEADER_MAX: usize = 16;

/// Why the capsules of a stream were refused: the session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// A capsule longer than any frame (plus room for a prefix) would be.
    #[error("capsule of type {kind:#x} with {len} bytes, over the limit of {cap}")]
    TooLong { kind: u64, len: u64, cap: usize },
}

/// A DATAGRAM capsule holding `payload`: its header and the payload, in one buffer.
pub(crate) fn datagram(payload: &[u8]) -> Bytes {
    let mut head = Vec::with_capacity(HEADER_MAX);
    put_varint(&mut head, DATAGRAM);
    put_varint(&mut head, payload.len() as u64);
    let mut out = BytesMut::with_capacity(head.len() + payload.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out.freeze()
}

/// What the parser is in the middle of.
#[derive(Debug)]
enum State {
    /// A capsule's header: the bytes of it seen so far (at most [`HEADER_MAX`]).
    Header(Vec<u8>),
    /// A DATAGRAM capsule's payload: what came so far, and how much is still to come.
    Keep(BytesMut, usize),
    /// Another capsule's payload, skipped: how much is still to come.
    Skip(u64),
}

/// Reads the capsules of one stream from its DATA chunks, bounded by `cap` bytes per capsule.
#[derive(Debug)]
pub(crate) struct Parser {
    state: State,
    cap: usize,
}

impl Parser {
    /// A parser that refuses capsules longer than `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Parser {
            state: State::Header(Vec::with_capacity(HEADER_MAX)),
            cap,
        }
    }

    /// Reads `chunk` (all of it, unless it fails), handing each DATAGRAM capsule's payload
    /// to `each` as soon as it is whole.
    pub(crate) fn feed(
        &mut self,
        mut chunk: impl Buf,
        mut each: impl FnMut(Bytes),
    ) -> Result<(), Error> {
        while chunk.has_remaining() {
            match &mut self.state {
                State::Header(head) => {
                    head.push(chunk.get_u8());
                    if let Some(next) = self.header()? {
                        self.state = next;
                    }
                }
                State::Keep(buf, left) => {
                    let n = (*left).min(chunk.remaining());
                    if buf.is_empty() && n == *left {
                        // The whole payload is in this chunk: no copy for a `Bytes` chunk.
                        each(chunk.copy_to_bytes(n));
                        self.state = State::Header(Vec::with_capacity(HEADER_MAX));
                        continue;
                    }
                    buf.extend_from_slice(&chunk.chunk()[..n.min(chunk.chunk().len())]);
                    let took = n.min(chunk.chunk().len());
                    chunk.advance(took);
                    *left -= took;
                    if *left == 0 {
                        each(std::mem::take(buf).freeze());
                        self.state = State::Header(Vec::with_capacity(HEADER_MAX));
                    }
                }
                State::Skip(left) => {
                    let n = (*left).min(chunk.remaining() as u64) as usize;
                    chunk.advance(n);
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(HEADER_MAX));
                    }
                }
            }
        }
        // A zero-length DATAGRAM capsule is whole as soon as its header is.
        if let State::Keep(buf, 0) = &mut self.state {
            each(std::mem::take(buf).freeze());
            self.state = State::Header(Vec::with_capacity(HEADER_MAX));
        }
        Ok(())
    }

    /// The state after a header byte: `None` while the header is incomplete.
    fn header(&self) -> Result<Option<State>, Error> {
        let State::Header(head) = &self.state else {
            return Ok(None);
        };
        let Ok((kind, n)) = get_varint(head) else {
            return Ok(None);
        };
        let Ok((len, m)) = get_varint(&head[n..]) else {
            return Ok(None);
        };
        debug_assert_eq!(n + m, head.len());
        if len > self.cap as u64 {
            return Err(Error::TooLong {
                kind,
                len,
                cap: self.cap,
            });
        }
        Ok(Some(match kind {
            DATAGRAM => State::Keep(BytesMut::new(), len as usize),
            _ if len == 0 => State::Header(Vec::with_capacity(HEADER_MAX)),
            _ => State::Skip(len),
        }))
    }

    /// Bytes held for the capsule under way (its header or payload so far).
    pub(crate) fn held(&self) -> usize {
        match &self.state {
            State::Header(h) => h.len(),
            State::Keep(b, _) => b.len(),
            State::Skip(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::quic::codec;

    /// Feeds `chunks` and returns the payloads, or the error.
    fn parse(cap: usize, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, Error> {
        let mut p = Parser::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(*c, |b| out.push(b.to_vec()))?;
        }
        Ok(out)
    }

    fn capsule(kind: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, kind);
        put_varint(&mut v, payload.len() as u64);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_datagram_capsule_round_trips_split_at_every_byte() {
        let frame: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let mut stream = datagram(&frame).to_vec();
        // A grease capsule (0x29·N + 0x17) and an unknown one between two frames.
        stream.extend(capsule(0x29 * 7 + 0x17, b"grease"));
        stream.extend(capsule(0x2843, &[]));
        stream.extend(datagram(b"second").to_vec());
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let got = parse(1000, &[a, b]).unwrap();
            assert_eq!(
                got,
                vec![frame.clone(), b"second".to_vec()],
                "split at {at}"
            );
        }
        // One byte per chunk.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(1000, &bytes).unwrap().len(), 2);
    }

    #[test]
    fn lengths_over_the_cap_are_refused_whatever_the_type() {
        let over = capsule(DATAGRAM, &[0; 101]);
        assert_eq!(
            parse(100, &[&over]),
            Err(Error::TooLong {
                kind: 0,
                len: 101,
                cap: 100
            })
        );
        assert!(parse(100, &[&capsule(DATAGRAM, &[0; 100])]).is_ok());
        assert!(parse(100, &[&capsule(0x1234, &[0; 101])]).is_err());
        // 2^62 − 1: refused from its header alone, nothing allocated.
        let mut huge = Vec::new();
        put_varint(&mut huge, DATAGRAM);
        put_varint(&mut huge, codec::VARINT_MAX);
        let mut p = Parser::new(100);
        assert!(p.feed(&huge[..], |_| panic!("no frame")).is_err());
        assert!(p.held() <= HEADER_MAX);
    }

    #[test]
    fn empty_and_unknown_capsules() {
        // A zero-length DATAGRAM capsule is an empty payload (the switch drops it as a runt).
        assert_eq!(
            parse(10, &[&capsule(DATAGRAM, &[])]).unwrap(),
            vec![Vec::<u8>::new()]
        );
        // Unknown types, empty or not, are skipped; a frame behind them still comes.
        let mut s = Vec::new();
        for kind in [1, 0x3f, 0x4000, codec::VARINT_MAX] {
            s.extend(capsule(kind, &[]));
            s.extend(capsule(kind, b"xyz"));
        }
        s.extend(capsule(DATAGRAM, b"ok"));
        assert_eq!(parse(10, &[&s]).unwrap(), vec![b"ok".to_vec()]);
        // A partial capsule keeps no more than itself.
        let mut p = Parser::new(1000);
        p.feed(&capsule(DATAGRAM, &[7; 500])[..300], |_| {
            panic!("not whole")
        })
        .unwrap();
        assert!(p.held() < 300);
    }
}
