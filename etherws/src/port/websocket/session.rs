//! One WebSocket session: the reader that switches what the peer sends and the writer that
//! sends what the switch queues for it, pongs and keepalive pings, until either ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::framing::{self, Message, Outgoing, Role};
use super::{BoxIo, MAX_MESSAGE, read_chunk, super_frame};
use crate::port::{EgressRx, Ingress, Port, PortIo};
use crate::switch::frame::Frame;

/// Frames written before the sink is flushed: one flush (and, with TCP_NODELAY, usually one
/// segment train) per burst rather than per frame.
const BATCH: usize = 64;

/// How a WebSocket session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The switch removed the port; a close frame was sent.
    Removed,
    /// The peer closed the connection (its close frame was answered).
    Closed,
    /// The connection failed or the peer stopped answering.
    Failed(anyhow::Error),
}

/// The close frame a session owes its peer: code (none: an empty close) and reason.
type Owed = (Option<u16>, &'static str);

/// Time allowed for a close frame to go out before the connection is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A WebSocket connection carrying frames, its handshake done.
pub(crate) struct WsPort {
    io: BoxIo,
    role: Role,
    /// What was read past the handshake: the peer's first frames may have come with it.
    pub(super) tail: Vec<u8>,
    keepalive: Option<Duration>,
    /// Both ends negotiated super-frames ([`super_frame`]): every message has its header.
    pub(super) super_frames: bool,
    /// The TCP congestion control algorithm in effect (`listPort` shows it).
    pub(super) congestion: Option<Arc<str>>,
}

/// The frames a batch sends, as the writer takes them.
enum Batch {
    /// Plain frames (super-frames segmented): one message each.
    Plain(Vec<Bytes>),
    /// Frames with their super-frame headers.
    Super(Vec<Frame>, Vec<[u8; super_frame::HDR_LEN]>),
}

impl Batch {
    /// Waits for frames to send. Returns 0 once the switch removed the port.
    async fn next(&mut self, egress: &mut EgressRx) -> usize {
        match self {
            Batch::Plain(out) => {
                out.clear();
                egress.recv_plain(out, BATCH).await
            }
            Batch::Super(frames, heads) => {
                frames.clear();
                let n = egress.recv_many(frames, BATCH).await;
                heads.clear();
                heads.extend(frames.iter().map(super_frame::header));
                n
            }
        }
    }

    fn messages(&self) -> Vec<Outgoing<'_>> {
        match self {
            Batch::Plain(out) => out.iter().map(|b| Outgoing::binary(&[], b)).collect(),
            Batch::Super(frames, heads) => frames
                .iter()
                .zip(heads)
                .map(|(f, h)| Outgoing::binary(h, &f.data))
                .collect(),
        }
    }

    /// Drops the frames of the last batch (written), keeping the buffers.
    fn clear(&mut self) {
        match self {
            Batch::Plain(out) => out.clear(),
            Batch::Super(frames, heads) => {
                frames.clear();
                heads.clear();
            }
        }
    }

    /// Lets go of what the last batch held: thousands of idle peers keep no batch buffers.
    fn release(&mut self) {
        match self {
            Batch::Plain(out) => *out = Vec::new(),
            Batch::Super(frames, heads) => {
                *frames = Vec::new();
                *heads = Vec::new();
            }
        }
    }
}

impl WsPort {
    /// A port on a connection whose handshake is done; `tail` is what was read past it.
    pub(crate) fn new(
        io: BoxIo,
        role: Role,
        tail: Vec<u8>,
        keepalive: Option<Duration>,
        super_frames: bool,
    ) -> Self {
        WsPort {
            io,
            role,
            tail,
            keepalive,
            super_frames,
            congestion: None,
        }
    }

    /// The port, with the congestion control algorithm its TCP socket uses
    /// ([`super::tcp::tune`]).
    pub(crate) fn with_congestion(mut self, congestion: Option<Arc<str>>) -> Self {
        self.congestion = congestion;
        self
    }

    /// Moves frames until the peer goes or the switch removes the port.
    ///
    /// With keepalive on, a peer silent for one interval gets a ping, and one silent for two
    /// intervals (no pong either) is given up on: a peer that vanished without a FIN (power
    /// cut, NAT timeout) would otherwise hold its port and its stations forever.
    pub(crate) async fn session(self, io: &mut PortIo) -> End {
        self.session_until(io, std::future::pending()).await
    }

    /// [`session`](Self::session), ended early when `stop` completes: the peer is then sent a
    /// close (1001, going away), and the session ends as [`End::Closed`].
    pub(crate) async fn session_until(
        self,
        io: &mut PortIo,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> End {
        let PortIo { egress, ingress } = io;
        ingress.set_session(self.super_frames, self.congestion.clone());
        let (mut rd, mut wr) = tokio::io::split(self.io);
        let chunk = read_chunk(self.super_frames);
        let mut reader = framing::Reader::new(self.role, MAX_MESSAGE, chunk, &self.tail);
        drop(self.tail);
        let mut writer = framing::Writer::new(self.role);
        let shared = Shared::new(self.keepalive, self.super_frames);
        // What the reader owes the peer when it stops: the answer to its close frame, or a
        // close for its error (code, reason).
        let mut owed: Option<Owed> = None;
        let end = tokio::select! {
            end = shared.read(&mut reader, &mut rd, ingress, &mut owed) => Some(end),
            end = shared.write(&mut writer, &mut wr, egress) => Some(end),
            () = stop => None,
        };
        let end = end.unwrap_or_else(|| {
            owed = Some((Some(1001), "going away"));
            End::Closed
        });
        // A close frame cannot follow half a message.
        if let Some((code, reason)) = owed.filter(|_| !shared.writing.load(Relaxed)) {
            let bye = writer.close(&mut wr, code, reason);
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, bye).await;
        }
        end
    }
}

/// What the reader and the writer of one session share.
struct Shared {
    keepalive: Option<Duration>,
    /// Both ends negotiated super-frames: every message has its header.
    super_frames: bool,
    start: Instant,
    /// Milliseconds since `start` at which the peer last sent anything.
    last_rx: AtomicU64,
    /// The pong owed for the peer's latest ping (RFC 6455 5.5.3: only the latest needs one),
    /// handed from the reader to the writer.
    pong: std::sync::Mutex<Option<Bytes>>,
    pong_due: Notify,
    /// Whether the writer is in the middle of a message: if the session ends then, the
    /// connection cannot carry a close frame any more.
    writing: AtomicBool,
}

impl Shared {
    fn new(keepalive: Option<Duration>, super_frames: bool) -> Self {
        Shared {
            keepalive,
            super_frames,
            start: Instant::now(),
            last_rx: AtomicU64::new(0),
            pong: std::sync::Mutex::new(None),
            pong_due: Notify::new(),
            writing: AtomicBool::new(false),
        }
    }

    /// How long the peer has been silent.
    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_rx.load(Relaxed)))
    }

    /// Reads messages and switches their frames until the peer closes or fails.
    ///
    /// Messages already read are switched together (one lock of the switch): after each
    /// awaited message, those buffered join it.
    async fn read(
        &self,
        reader: &mut framing::Reader,
        rd: &mut ReadHalf<BoxIo>,
        ingress: &Ingress,
        owed: &mut Option<Owed>,
    ) -> End {
        // Grown on first use: thousands of idle peers hold no batch.
        let mut batch = Vec::new();
        loop {
            let mut next = match reader.next(rd).await {
                Ok(Some(m)) => Some(m),
                Ok(None) => return End::Closed,
                Err(e) => return read_failed(e, owed),
            };
            self.last_rx
                .store(self.start.elapsed().as_millis() as u64, Relaxed);
            while let Some(msg) = next.take() {
                if let Some(end) = self.take(msg, &mut batch, ingress, owed) {
                    ingress.frames(batch.drain(..));
                    return end;
                }
                if batch.len() < BATCH {
                    match reader.parse() {
                        Ok(m) => next = m,
                        Err(e) => {
                            ingress.frames(batch.drain(..));
                            return read_failed(e, owed);
                        }
                    }
                }
            }
            ingress.frames(batch.drain(..));
            if batch.capacity() > BATCH {
                batch = Vec::new();
            }
        }
    }

    /// Takes one message: a frame joins `batch`, a ping owes a pong; a close or a malformed
    /// super-frame ends the session.
    fn take(
        &self,
        msg: Message,
        batch: &mut Vec<Frame>,
        ingress: &Ingress,
        owed: &mut Option<Owed>,
    ) -> Option<End> {
        match msg {
            Message::Binary(msg) if self.super_frames => match super_frame::decode(msg) {
                Ok(frame) => batch.push(frame),
                Err(e) => {
                    *owed = Some((Some(1002), "malformed super-frame"));
                    return Some(End::Failed(anyhow::anyhow!("malformed super-frame: {e}")));
                }
            },
            Message::Binary(frame) => batch.push(Frame::from(frame)),
            Message::Text(len) => {
                tracing::trace!(port = ingress.port(), len, "text message ignored")
            }
            Message::Ping(payload) => {
                *self.pong.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
                self.pong_due.notify_one();
            }
            Message::Pong => {}
            Message::Close(c) => {
                // Echo the peer's code, as RFC 6455 5.5.1 suggests.
                *owed = Some((c.map(|(code, _)| code), ""));
                return Some(End::Closed);
            }
        }
        None
    }

    /// Sends what the switch queues for the port, pongs and keepalive pings, until the port
    /// is removed, the peer stops answering or a send fails.
    async fn write(
        &self,
        writer: &mut framing::Writer,
        wr: &mut WriteHalf<BoxIo>,
        egress: &mut EgressRx,
    ) -> End {
        let mut batch = if self.super_frames {
            Batch::Super(Vec::new(), Vec::new())
        } else {
            Batch::Plain(Vec::new())
        };
        // Check a few times per interval so a dead peer is noticed soon after 2 intervals.
        let period = self.keepalive.map_or(Duration::from_secs(3600), |k| k / 4);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut last_ping = Instant::now();
        loop {
            let done = tokio::select! {
                n = batch.next(egress) => self.send_batch(n, &mut batch, writer, wr, egress).await,
                _ = self.pong_due.notified() => self.send_pong(writer, wr).await,
                _ = tick.tick(), if self.keepalive.is_some() => {
                    self.keep_alive(period, &mut last_ping, writer, wr).await
                }
            };
            if let Err(end) = done {
                return end;
            }
        }
    }

    /// Sends a batch of `n` frames; none: the switch removed the port, so says goodbye.
    async fn send_batch(
        &self,
        n: usize,
        batch: &mut Batch,
        writer: &mut framing::Writer,
        wr: &mut WriteHalf<BoxIo>,
        egress: &mut EgressRx,
    ) -> Result<(), End> {
        if n == 0 {
            // Say goodbye properly. Nothing may follow a close frame, not even half of one:
            // the session sends no other close after it.
            self.writing.store(true, Relaxed);
            let bye = writer.close(wr, Some(1001), "port removed");
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, bye).await;
            return Err(End::Removed);
        }
        let sent = self.sending(writer.send(wr, &batch.messages())).await;
        // The batch's bytes stay charged to the queue until written: a peer that stops
        // reading holds its port's bound, not memory beyond it.
        batch.clear();
        egress.written();
        if egress.is_empty() {
            batch.release();
            egress.release();
        }
        sent.map_err(|e| End::Failed(e.into()))
    }

    /// Sends the pong owed, if any.
    async fn send_pong(
        &self,
        writer: &mut framing::Writer,
        wr: &mut WriteHalf<BoxIo>,
    ) -> Result<(), End> {
        let owed_pong = self.pong.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = owed_pong {
            let pong = writer.control(wr, framing::opcode::PONG, &p);
            self.sending(pong)
                .await
                .map_err(|e| End::Failed(e.into()))?;
        }
        Ok(())
    }

    /// Pings a peer silent for an interval; gives up on one silent for two.
    async fn keep_alive(
        &self,
        period: Duration,
        last_ping: &mut Instant,
        writer: &mut framing::Writer,
        wr: &mut WriteHalf<BoxIo>,
    ) -> Result<(), End> {
        let k = self.keepalive.unwrap_or(period);
        let idle = self.idle();
        if idle >= 2 * k {
            return Err(End::Failed(anyhow::anyhow!(
                "peer silent for {}s (keepalive {}s)",
                idle.as_secs(),
                k.as_secs()
            )));
        }
        if idle >= k && last_ping.elapsed() >= k {
            *last_ping = Instant::now();
            let ping = writer.control(wr, framing::opcode::PING, &[]);
            self.sending(ping)
                .await
                .map_err(|e| End::Failed(e.into()))?;
        }
        Ok(())
    }

    /// A send, with `writing` set while it is under way (if the session ends then, the
    /// connection cannot carry a close frame any more), given up after two keepalive
    /// intervals: a peer that stopped reading (its receive window shut for good, no FIN) would
    /// otherwise hold its port, and its stations, forever. Without keepalive, the send waits
    /// as long as it takes.
    async fn sending(
        &self,
        send: impl std::future::Future<Output = std::io::Result<()>>,
    ) -> std::io::Result<()> {
        self.writing.store(true, Relaxed);
        let sent = match self.keepalive {
            None => send.await,
            Some(k) => tokio::time::timeout(2 * k, send).await.unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("peer not reading for {}s", (2 * k).as_secs()),
                ))
            }),
        };
        self.writing.store(false, Relaxed);
        sent
    }
}

/// How a session ends on a read error, with the close frame it owes the peer for it.
fn read_failed(e: framing::Error, owed: &mut Option<Owed>) -> End {
    *owed = e.close().map(|(code, why)| (Some(code), why));
    End::Failed(e.into())
}

impl Port for WsPort {
    async fn run(self, mut io: PortIo) -> anyhow::Result<()> {
        match self.session(&mut io).await {
            End::Removed | End::Closed => Ok(()),
            End::Failed(e) => Err(e),
        }
    }
}
