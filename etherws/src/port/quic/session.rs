//! One QUIC session's data phase: the reader that switches the peer's datagrams and the
//! writer that sends what the switch queues for the port, one frame per datagram.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;

use super::codec::Prefix;
use crate::port::websocket::{End, Link};
use crate::port::{EgressRx, Ingress, MAX_FRAME, Port, PortIo};
use crate::settings::values::QuicCongestion;
use crate::switch::QuicStat;
use crate::switch::frame::Frame;
use crate::wire::gro;

/// Datagrams switched per lock of the switch, and frames taken from the queue at once.
const BATCH: usize = 64;

/// How often the connection's state is published for `listPort`.
const STAT_EVERY: Duration = Duration::from_secs(1);

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
    /// What must live as long as the session: the h3 connection and the CONNECT stream (and,
    /// for a server port, the task that refuses further requests).
    _keep: std::sync::Mutex<Box<dyn Send>>,
}

/// What the reader and the writer count, published with the connection's state.
#[derive(Default)]
struct Counters {
    rx_errors: AtomicU64,
    tx_dropped_oversize: AtomicU64,
}

impl QuicPort {
    /// A port on `conn`, whose CONNECT went on request stream `stream_id`.
    pub(crate) fn new(
        conn: quinn::Connection,
        stream_id: u64,
        congestion: QuicCongestion,
        keep: std::sync::Mutex<Box<dyn Send>>,
    ) -> Self {
        QuicPort {
            conn,
            prefix: Prefix::for_stream(stream_id),
            congestion,
            _keep: keep,
        }
    }

    /// Moves frames until the connection ends (the QUIC idle timeout is the keepalive) or the
    /// switch removes the port.
    pub(crate) async fn session(self, io: &mut PortIo) -> End {
        let PortIo { egress, ingress } = io;
        let congestion: std::sync::Arc<str> = self.congestion.name().into();
        ingress.set_session(false, Some(congestion));
        let counters = Counters::default();
        tokio::select! {
            end = self.read(ingress, &counters) => end,
            end = self.write(egress, &counters) => end,
            never = self.publish(ingress, &counters) => never,
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
            let mut next = Some(first);
            while let Some(dg) = next.take() {
                match self.prefix.payload_at(&dg) {
                    Ok(at) => batch.push(dg.slice(at..)),
                    Err(e) => {
                        counters.rx_errors.fetch_add(1, Relaxed);
                        tracing::debug!(port = ingress.port(), "datagram dropped: {e}");
                    }
                }
                if batch.len() < BATCH {
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

    /// Sends what the switch queues, one frame per datagram, waiting for the connection's
    /// room (the backpressure: the port's queue does the dropping).
    async fn write(&self, egress: &mut EgressRx, counters: &Counters) -> End {
        let mut out = Vec::new();
        loop {
            if egress.recv_plain(&mut out, BATCH).await == 0 {
                self.conn.close(0u32.into(), b"port removed");
                return End::Removed;
            }
            let sent = self.send(&out, counters).await;
            out.clear();
            egress.written();
            if egress.is_empty() {
                out = Vec::new();
                egress.release();
            }
            if let Err(e) = sent {
                return End::Failed(e);
            }
        }
    }

    /// Sends a batch of frames; one larger than a datagram is dropped and counted.
    async fn send(&self, frames: &[Bytes], counters: &Counters) -> anyhow::Result<()> {
        for frame in frames {
            let max = self
                .conn
                .max_datagram_size()
                .ok_or_else(|| anyhow::anyhow!("the peer takes no datagrams"))?;
            if frame.len() + self.prefix.len() > max {
                // TODO(#26 S3): resegment TCP super-frames to fit (`wire::gso::segment_to`),
                // clamp the MSS, or send DATAGRAM capsules on the CONNECT stream.
                counters.tx_dropped_oversize.fetch_add(1, Relaxed);
                continue;
            }
            let mut dg = BytesMut::with_capacity(self.prefix.len() + frame.len());
            dg.extend_from_slice(self.prefix.bytes());
            dg.extend_from_slice(frame);
            match self.conn.send_datagram_wait(dg.freeze()).await {
                Ok(()) => {}
                Err(quinn::SendDatagramError::TooLarge) => {
                    counters.tx_dropped_oversize.fetch_add(1, Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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
            });
        }
    }
}

/// How a session ends on a connection error: the peer's close is a close, the rest failures.
fn ended(e: quinn::ConnectionError) -> End {
    match e {
        quinn::ConnectionError::ApplicationClosed(_) => End::Closed,
        quinn::ConnectionError::LocallyClosed => End::Removed,
        e => End::Failed(e.into()),
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
