//! One QUIC session's data phase: the reader that switches the peer's datagrams and the
//! writer that sends what the switch queues for the port, one frame per datagram.
//!
//! A frame larger than a datagram takes (the path's `max_datagram_size` less the prefix, read
//! per batch) is made to fit where TCP allows it: a TCP super-frame or segment is cut into
//! segments that fit (`wire::gso::segment_to`, `fit_tcp`), and TCP SYNs and SYN-ACKs both ways
//! have their MSS clamped to the datagram (`wire::mss`, unless `--no-mss-clamp`). Anything else
//! too large goes on the CONNECT stream as a DATAGRAM capsule when both ends sent
//! `capsule-protocol: ?1` (a bounded queue, so that the stream never holds up the datagrams),
//! or is dropped and counted (`tx_dropped_oversize`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;

use super::capsule::{self, Parser};
use super::codec::Prefix;
use super::stream::{ConnectStream, RecvHalf, SendHalf};
use crate::base::escape::printable;
use crate::port::websocket::{End, Link};
use crate::port::{EgressRx, Ingress, MAX_FRAME, Port, PortIo};
use crate::settings::values::QuicCongestion;
use crate::switch::QuicStat;
use crate::switch::frame::Frame;
use crate::wire::{gro, gso, mss};

/// Datagrams switched per lock of the switch, and frames taken from the queue at once.
const BATCH: usize = 64;

/// How often the connection's state is published for `listPort`.
const STAT_EVERY: Duration = Duration::from_secs(1);

/// Bytes of capsules waiting for the CONNECT stream; past them a capsule is dropped.
const CAPSULE_QUEUE_BYTES: usize = 256 * 1024;

/// Capsules waiting for the CONNECT stream, at most.
const CAPSULE_QUEUE_LEN: usize = 256;

/// Longest capsule taken from the peer: the largest frame, and room for a prefix.
const CAPSULE_CAP: usize = MAX_FRAME + 16;

/// Aborts a task when dropped: the h3 driver of a client connection.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A QUIC connection carrying frames in datagrams, its CONNECT answered.
pub(crate) struct QuicPort {
    conn: quinn::Connection,
    prefix: Prefix,
    congestion: QuicCongestion,
    /// The CONNECT stream, taken apart when the session starts.
    stream: Option<ConnectStream>,
    /// Both ends sent `capsule-protocol: ?1`: oversize frames go on the stream.
    capsules: bool,
    /// TCP SYNs and SYN-ACKs get their MSS clamped to the datagram size.
    mss_clamp: bool,
    /// What must live as long as the session: the h3 connection and the CONNECT stream (and,
    /// for a server port, the task that refuses further requests).
    _keep: std::sync::Mutex<Box<dyn Send>>,
}

/// What the reader and the writer count, published with the connection's state.
#[derive(Default)]
struct Counters {
    /// The widest frame budget the connection has had (what SYNs are clamped to).
    widest_budget: AtomicUsize,
    rx_errors: AtomicU64,
    tx_dropped_oversize: AtomicU64,
    tx_capsuled: AtomicU64,
    rx_capsuled: AtomicU64,
    tx_capsule_dropped: AtomicU64,
    tx_resegmented: AtomicU64,
    mss_clamped: AtomicU64,
    /// Bytes in the capsule queue.
    capsule_bytes: std::sync::atomic::AtomicUsize,
}

/// How a session is set up: from the CONNECT's headers and the switch's settings.
pub(crate) struct Setup {
    pub(crate) congestion: QuicCongestion,
    /// Both ends sent `capsule-protocol: ?1`.
    pub(crate) capsules: bool,
    pub(crate) mss_clamp: bool,
}

impl QuicPort {
    /// A port on `conn`, whose CONNECT went on `stream`.
    pub(crate) fn new(
        conn: quinn::Connection,
        stream: ConnectStream,
        setup: Setup,
        keep: std::sync::Mutex<Box<dyn Send>>,
    ) -> Self {
        QuicPort {
            conn,
            prefix: Prefix::for_stream(stream.id()),
            congestion: setup.congestion,
            stream: Some(stream),
            capsules: setup.capsules,
            mss_clamp: setup.mss_clamp,
            _keep: keep,
        }
    }

    /// Moves frames until the connection ends (the QUIC idle timeout is the keepalive) or the
    /// switch removes the port.
    pub(crate) async fn session(mut self, io: &mut PortIo) -> End {
        let PortIo { egress, ingress } = io;
        let congestion: std::sync::Arc<str> = self.congestion.name().into();
        ingress.set_session(false, Some(congestion));
        let counters = Counters::default();
        let Some((tx, rx)) = self.stream.take().map(ConnectStream::split) else {
            return End::Failed(anyhow::anyhow!("no CONNECT stream"));
        };
        let (queue, queued) = tokio::sync::mpsc::channel(CAPSULE_QUEUE_LEN);
        let this = &self;
        tokio::select! {
            end = this.read(ingress, &counters) => end,
            end = this.write(egress, &counters, &queue) => end,
            never = this.publish(ingress, &counters) => never,
            end = this.send_capsules(tx, queued, &counters) => end,
            end = this.read_capsules(rx, ingress, &counters) => end,
        }
    }

    /// Reads datagrams and switches their frames, a batch at a time, TCP segments coalesced
    /// into super-frames (`rx_gro_merged`); a datagram that is not this session's frame is
    /// dropped and counted, never ends the session.
    async fn read(&self, ingress: &Ingress, counters: &Counters) -> End {
        let mut batch: Vec<Bytes> = Vec::new();
        let mut coalesced = Vec::new();
        loop {
            let first = match self.conn.read_datagram().await {
                Ok(d) => d,
                Err(e) => return ended(e),
            };
            let budget = self.budget().unwrap_or(0);
            let mut next = Some(first);
            // Every datagram read counts, switched or not: a flood of bad ones yields too.
            let mut read = 0;
            while let Some(dg) = next.take() {
                read += 1;
                match self.prefix.payload_at(&dg) {
                    Ok(at) => batch.push(clamped(dg.slice(at..), budget, self.mss_clamp, counters)),
                    Err(e) => {
                        counters.rx_errors.fetch_add(1, Relaxed);
                        tracing::debug!(port = ingress.port(), "datagram dropped: {e}");
                    }
                }
                if read < BATCH {
                    next = self
                        .conn
                        .read_datagram()
                        .now_or_never()
                        .and_then(Result::ok);
                }
            }
            // The TCP segments of the batch coalesced into super-frames (`wire::gro`), as an
            // offloaded netdev port does: a TAP takes them in one write, not one per segment.
            let merged = gro::coalesce(batch.drain(..), MAX_FRAME, &mut coalesced);
            ingress.gro_merged(merged as u64);
            ingress.frames(coalesced.drain(..).map(|(f, hdr)| Frame::new(f, hdr)));
            if batch.capacity() > BATCH {
                batch = Vec::new();
            }
            if coalesced.capacity() > BATCH {
                coalesced = Vec::new();
            }
        }
    }

    /// The frame budget of a datagram: what the path takes now, less the prefix.
    fn budget(&self) -> Option<usize> {
        let max = self.conn.max_datagram_size()?;
        Some(max.saturating_sub(self.prefix.len()))
    }

    /// Sends what the switch queues, waiting for the connection's room (the backpressure:
    /// the port's queue does the dropping).
    async fn write(&self, egress: &mut EgressRx, counters: &Counters, queue: &CapsuleTx) -> End {
        let (mut batch, mut out) = (Vec::new(), Vec::new());
        loop {
            if egress.recv_many(&mut batch, BATCH).await == 0 {
                self.conn.close(0u32.into(), b"port removed");
                return End::Removed;
            }
            let sent = match self.budget() {
                Some(budget) => {
                    for frame in batch.drain(..) {
                        fit(frame, budget, self.mss_clamp, &mut out, counters);
                    }
                    self.send(&out, budget, counters, queue).await
                }
                None => Err(anyhow::anyhow!("the peer takes no datagrams")),
            };
            batch.clear();
            out.clear();
            egress.written();
            if egress.is_empty() {
                (batch, out) = (Vec::new(), Vec::new());
                egress.release();
            }
            if let Err(e) = sent {
                return End::Failed(e);
            }
        }
    }

    /// Sends a batch of frames: those within `budget` as datagrams, the others as capsules
    /// (or dropped and counted, without capsules or with their queue full).
    async fn send(
        &self,
        frames: &[Bytes],
        budget: usize,
        counters: &Counters,
        queue: &CapsuleTx,
    ) -> anyhow::Result<()> {
        for frame in frames {
            if frame.len() > budget {
                self.oversize(frame, counters, queue);
                continue;
            }
            let mut dg = BytesMut::with_capacity(self.prefix.len() + frame.len());
            dg.extend_from_slice(self.prefix.bytes());
            dg.extend_from_slice(frame);
            match self.conn.send_datagram_wait(dg.freeze()).await {
                Ok(()) => {}
                // The path shrank under the batch.
                Err(quinn::SendDatagramError::TooLarge) => self.oversize(frame, counters, queue),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A frame no datagram takes: a capsule on the CONNECT stream if both ends agreed to them
    /// and their queue has room; else dropped and counted.
    fn oversize(&self, frame: &[u8], counters: &Counters, queue: &CapsuleTx) {
        if !self.capsules {
            counters.tx_dropped_oversize.fetch_add(1, Relaxed);
            return;
        }
        let c = capsule::datagram(frame);
        let held = counters.capsule_bytes.fetch_add(c.len(), Relaxed);
        if held + c.len() > CAPSULE_QUEUE_BYTES || queue.try_send(c.clone()).is_err() {
            counters.capsule_bytes.fetch_sub(c.len(), Relaxed);
            counters.tx_capsule_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Writes the queued capsules on the CONNECT stream, one DATA frame each. Without
    /// capsules, holds the stream open (a finished CONNECT stream ends the session).
    async fn send_capsules(
        &self,
        mut tx: SendHalf,
        mut queued: CapsuleRx,
        counters: &Counters,
    ) -> End {
        while let Some(c) = queued.recv().await {
            let len = c.len();
            let sent = tx.send(c).await;
            counters.capsule_bytes.fetch_sub(len, Relaxed);
            if let Err(e) = sent {
                return self.stream_failed(e.into()).await;
            }
            counters.tx_capsuled.fetch_add(1, Relaxed);
        }
        std::future::pending().await
    }

    /// Reads the peer's capsules from the CONNECT stream and switches the frames of its
    /// DATAGRAM capsules. A capsule over the limit closes the session (H3_DATAGRAM_ERROR);
    /// the peer finishing the stream ends it.
    async fn read_capsules(&self, mut rx: RecvHalf, ingress: &Ingress, counters: &Counters) -> End {
        if !self.capsules {
            // Nothing to switch on the stream, but its end is the session's (WebTransport
            // closes a session so): what comes on it is read and dropped.
            loop {
                match rx.recv().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return End::Closed,
                    Err(e) => return self.stream_failed(e.into()).await,
                }
            }
        }
        let mut parser = Parser::new(CAPSULE_CAP);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let chunk = match rx.recv().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return End::Closed,
                Err(e) => return self.stream_failed(e.into()).await,
            };
            let budget = self.budget().unwrap_or(0);
            // Switched a batch at a time: a chunk of tiny capsules holds many.
            let switch = |batch: &mut Vec<Bytes>| {
                counters.rx_capsuled.fetch_add(batch.len() as u64, Relaxed);
                ingress.frames(
                    batch
                        .drain(..)
                        .map(|f| clamped(f, budget, self.mss_clamp, counters)),
                );
            };
            let fed = parser.feed(chunk, |frame| {
                batch.push(frame);
                if batch.len() == BATCH {
                    switch(&mut batch);
                }
            });
            switch(&mut batch);
            if let Err(e) = fed {
                tracing::warn!(port = ingress.port(), "QUIC session closed: {e}");
                let code = capsule::H3_DATAGRAM_ERROR.into();
                self.conn.close(code, b"capsule too long");
                return End::Failed(e.into());
            }
        }
    }

    /// How the session ends when its CONNECT stream fails: as the connection did, if it did.
    async fn stream_failed(&self, e: anyhow::Error) -> End {
        match self.conn.close_reason() {
            Some(reason) => ended(reason),
            None => End::Failed(e.context("the CONNECT stream failed")),
        }
    }

    /// Publishes the connection's state for `listPort` until the session ends.
    async fn publish(&self, ingress: &Ingress, counters: &Counters) -> End {
        let mut tick = tokio::time::interval(STAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ingress.set_quic(QuicStat {
                rtt_ms: self.conn.rtt().as_millis() as u64,
                max_datagram: self.conn.max_datagram_size().unwrap_or(0) as u64,
                lost_packets: self.conn.stats().path.lost_packets,
                rx_errors: counters.rx_errors.load(Relaxed),
                tx_dropped_oversize: counters.tx_dropped_oversize.load(Relaxed),
                tx_capsuled: counters.tx_capsuled.load(Relaxed),
                rx_capsuled: counters.rx_capsuled.load(Relaxed),
                tx_capsule_dropped: counters.tx_capsule_dropped.load(Relaxed),
                tx_resegmented: counters.tx_resegmented.load(Relaxed),
                mss_clamped: counters.mss_clamped.load(Relaxed),
            });
        }
    }
}

/// `frame`, or a copy with its MSS clamped if it is a TCP SYN or SYN-ACK whose MSS is
/// larger (both ways: a peer that does not clamp still gets segments that fit this end's
/// datagrams).
///
/// The clamp is to the widest `budget` the connection has had, not to the one of the
/// moment: a TCP connection keeps its MSS for life, and the datagram size is small while
/// path MTU discovery starts, and again for a while when random loss makes quinn suspect a
/// black hole (seen at 2 % loss). A segment larger than the budget of the moment is cut to
/// fit (`fit`), which costs less than every segment of the connection being small.
fn clamped(frame: Bytes, budget: usize, on: bool, counters: &Counters) -> Bytes {
    if !on || budget == 0 {
        return frame;
    }
    let widest = counters
        .widest_budget
        .fetch_max(budget, Relaxed)
        .max(budget);
    if !mss::is_syn(&frame) {
        return frame;
    }
    let mut copy = frame.to_vec();
    if mss::clamp_mss_to_fit(&mut copy, widest) {
        counters.mss_clamped.fetch_add(1, Relaxed);
        return Bytes::from(copy);
    }
    frame
}

/// Makes `frame` plain frames into `out`, each within `budget` where TCP allows: a
/// super-frame cut into segments that fit, an oversize TCP segment cut again, a SYN's MSS
/// clamped (if `clamp`). What still does not fit is left for `send` to capsule or drop.
fn fit(frame: Frame, budget: usize, clamp: bool, out: &mut Vec<Bytes>, counters: &Counters) {
    let hdr = frame.offload;
    if hdr.is_gso() {
        let cut =
            gso::segment_to(&hdr, &frame.data, budget).or_else(|_| gso::segment(&hdr, &frame.data));
        match cut {
            Ok(segs) => {
                if frame.finished_len().largest > budget {
                    counters.tx_resegmented.fetch_add(1, Relaxed);
                }
                out.extend(segs);
            }
            Err(e) => {
                counters.tx_dropped_oversize.fetch_add(1, Relaxed);
                tracing::debug!(?hdr, "super-frame dropped: {e}");
            }
        }
        return;
    }
    let plain = match frame.into_plain().map(|mut p| p.next()) {
        Ok(Some(plain)) => plain,
        Ok(None) => return,
        Err(e) => {
            counters.tx_dropped_oversize.fetch_add(1, Relaxed);
            return tracing::debug!(?hdr, "offloaded frame dropped: {e}");
        }
    };
    if plain.len() <= budget {
        return out.push(clamped(plain, budget, clamp, counters));
    }
    match gso::fit_tcp(&plain, budget) {
        Ok(segs) => {
            counters.tx_resegmented.fetch_add(1, Relaxed);
            out.extend(segs);
        }
        Err(_) => out.push(plain),
    }
}

/// The writer's end of the capsule queue, and the capsule sender's.
type CapsuleTx = tokio::sync::mpsc::Sender<Bytes>;
type CapsuleRx = tokio::sync::mpsc::Receiver<Bytes>;

/// How a session ends on a connection error: the peer's close is a close, the rest failures.
fn ended(e: quinn::ConnectionError) -> End {
    match e {
        quinn::ConnectionError::ApplicationClosed(_) => End::Closed,
        quinn::ConnectionError::LocallyClosed => End::Removed,
        // The peer's reason phrase is its own text: escaped before it reaches a log.
        e => End::Failed(anyhow::anyhow!("{}", printable(&e.to_string()))),
    }
}

impl Link for QuicPort {
    fn session(self, io: &mut PortIo) -> impl std::future::Future<Output = End> + Send {
        QuicPort::session(self, io)
    }
}

impl Port for QuicPort {
    async fn run(self, mut io: PortIo) -> anyhow::Result<()> {
        match self.session(&mut io).await {
            End::Removed | End::Closed => Ok(()),
            End::Failed(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gso::{GSO_TCPV4, VnetHdr, fold, pseudo_sum, sum};

    /// A TCP/IPv4 frame with `flags`, `options` and `data`, its checksums complete.
    fn tcp4(flags: u8, options: &[u8], data: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + options.len() + data.len();
        let mut f = vec![0u8; 34];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        f[22..24].copy_from_slice(&[64, 6]);
        f[26..34].copy_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        let ip = !fold(sum(&f[14..34], 0));
        f[24..26].copy_from_slice(&ip.to_be_bytes());
        let mut tcp = vec![0u8; 20];
        tcp[12] = (((20 + options.len()) / 4) << 4) as u8;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&[0xff, 0xff]);
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(data);
        f.extend_from_slice(&tcp);
        let c = !fold(sum(&f[34..], pseudo_sum(&f, 14, false, 6, tcp_len)));
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn fitted(frame: Frame, budget: usize, clamp: bool) -> (Vec<Bytes>, Counters) {
        let (mut out, counters) = (Vec::new(), Counters::default());
        fit(frame, budget, clamp, &mut out, &counters);
        (out, counters)
    }

    #[test]
    fn syns_are_clamped_to_the_widest_datagram_the_connection_had() {
        let counters = Counters::default();
        let data = tcp4(0x10, &[], &[0; 100]);
        clamped(Bytes::from(data), 1400, true, &counters);
        // The datagram shrank (a suspected black hole): a new SYN still gets 1400 − 54.
        let syn = tcp4(0x02, &[2, 4, 0x05, 0xb4], &[]);
        let out = clamped(Bytes::from(syn), 1162, true, &counters);
        assert_eq!(out[56..58], 1346u16.to_be_bytes());
    }

    #[test]
    fn syns_are_clamped_to_the_datagram_unless_told_not_to() {
        let syn = tcp4(0x02, &[2, 4, 0x05, 0xb4], &[]);
        let (out, c) = fitted(Frame::from(Bytes::from(syn.clone())), 1200, true);
        // 1200 − 14 − 20 − 20.
        assert_eq!(out[0][56..58], 1146u16.to_be_bytes());
        assert_eq!(c.mss_clamped.load(Relaxed), 1);
        let (out, c) = fitted(Frame::from(Bytes::from(syn.clone())), 1200, false);
        assert_eq!(&out[0][..], &syn[..]);
        assert_eq!(c.mss_clamped.load(Relaxed), 0);
    }

    #[test]
    fn tcp_is_cut_to_fit_and_the_rest_left_whole() {
        let seg = tcp4(0x10, &[], &[7; 1460]);
        let (out, c) = fitted(Frame::from(Bytes::from(seg)), 1200, true);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|f| f.len() <= 1200));
        assert_eq!(c.tx_resegmented.load(Relaxed), 1);
        // A super-frame of three 1448-byte segments, cut smaller than its gso_size.
        let sup = tcp4(0x18, &[], &[9; 3 * 1448]);
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        let (out, c) = fitted(Frame::new(Bytes::from(sup), hdr), 1200, true);
        assert!(out.len() >= 4 && out.iter().all(|f| f.len() <= 1200));
        let payload: usize = out.iter().map(|f| f.len() - 54).sum();
        assert_eq!(payload, 3 * 1448);
        assert_eq!(c.tx_resegmented.load(Relaxed), 1);
        // Not TCP: left as it is, for a capsule.
        let mut udp = tcp4(0x10, &[], &[1; 1400]);
        udp[23] = 17;
        let (out, c) = fitted(Frame::from(Bytes::from(udp.clone())), 1200, true);
        assert_eq!(&out[0][..], &udp[..]);
        assert_eq!(c.tx_resegmented.load(Relaxed), 0);
    }
}
