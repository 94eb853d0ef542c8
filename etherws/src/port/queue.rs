//! Ports' transmit queues, bounded in bytes and in time.
//!
//! A queue counted in frames holds 512 × 60 bytes or 512 × 64 KiB alike, and thousands of
//! slow peers together could hold gigabytes. So every queue is bounded three ways:
//!
//! * its own bytes ([`QueueLimits::bytes`]): one slow peer fills only its own queue;
//! * a budget shared by all queues ([`QueueLimits::budget`]): many slow peers together cannot
//!   take the machine's memory;
//! * time ([`QueueLimits::delay`]): a frame that waited longer is dropped when it comes out,
//!   not delivered late (a frame seconds old only confuses the protocols above, as
//!   bufferbloat does).
//!
//! Each refusal is counted (`tx_dropped`; `tx_expired` for the late ones), never waited on.
//! The counters are atomics in the queue, so the switch counts transmissions without holding
//! its lock while it offers frames.
//!
//! Toward WebSocket peers the queue is, by default, fair between flows and kept short
//! (`--queue-discipline fq-codel`, [`fq`]): frames wait in per-flow queues served in turn, so
//! that a ping does not wait behind a bulk transfer's backlog, and each flow's queue is kept
//! near a few milliseconds of sojourn by CoDel, whose drops are counted apart
//! (`tx_aqm_dropped`). The port then also takes smaller batches off the queue on a slow link
//! (a few milliseconds' worth at the rate it writes), since a frame that arrives while a batch
//! is written waits for all of it. The bounds above hold either way.
//!
//! A frame flooded to many ports is one shared buffer, but it counts against each queue it
//! sits in: the bound is conservative, never exceeded. Each frame also counts its slot in the
//! queue ([`SLOT`] bytes), so that the bounds are bounds on memory.

mod fq;

use std::collections::VecDeque;
use std::hash::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::switch::frame::Frame;
use crate::switch::{Egress, TxCounters};
use crate::wire::gso::{self, VnetHdr};

/// Frames a queue holds at most whatever their size: tokio's channel needs a bound in items,
/// set so high that the byte bound is the one that matters (60-byte frames: 245 KB).
const QUEUE_FRAMES: usize = 4096;

/// How the transmit queues are bounded (`--queue-bytes`, `--queue-budget`, `--queue-delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Bytes one port's queue may hold (a frame larger than that still passes an empty queue).
    pub(crate) bytes: usize,
    /// Bytes all queues together may hold.
    pub(crate) budget: usize,
    /// Longest a frame may wait in a queue before it is dropped instead of sent.
    pub(crate) delay: Duration,
    /// How the queue orders and sheds frames (`--queue-discipline`).
    pub(crate) discipline: Discipline,
}

/// How a transmit queue orders and sheds frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Discipline {
    /// One queue, first in first out; frames are dropped only when it is full or they are
    /// older than [`QueueLimits::delay`].
    Fifo,
    /// Flow queues served in turn, each kept short by CoDel ([`fq`]).
    #[default]
    FqCodel,
}

/// The sojourn time CoDel aims at, at least (more on a slow link: 1.5 MTU-sized frames).
const CODEL_TARGET: Duration = Duration::from_millis(5);

/// How long the sojourn must stay above the target before CoDel drops.
const CODEL_INTERVAL: Duration = Duration::from_millis(100);

/// Room the flow queues keep below their bound for a sparse flow's frames (the producer
/// refuses a frame that does not fit): one super-frame. More only drops a bulk flow's frames
/// before it has filled the queue.
const TRIM_ROOM: usize = 64 * 1024;

/// The time a batch taken off a flow-queued port takes to write, at most, at the rate the
/// port writes: a frame that arrives meanwhile waits for it.
const BATCH_TIME: Duration = CODEL_TARGET;

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            bytes: 4 << 20,
            budget: 128 << 20,
            delay: Duration::from_millis(1000),
            discipline: Discipline::FqCodel,
        }
    }
}

/// The bytes held by all queues, against [`QueueLimits::budget`].
#[derive(Debug, Default)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Frames refused because the budget was spent (also counted in their port's `tx_dropped`).
    refused: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            limit,
            ..Budget::default()
        }
    }

    /// Bytes queued now, all ports together.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Frames refused so far because the budget was spent.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    fn reserve(&self, len: usize) -> bool {
        if self.used.fetch_add(len, Relaxed) + len > self.limit {
            self.used.fetch_sub(len, Relaxed);
            self.refused.fetch_add(1, Relaxed);
            return false;
        }
        true
    }

    fn release(&self, len: usize) {
        let before = self.used.fetch_sub(len, Relaxed);
        debug_assert!(before >= len, "budget released {len} of {before}");
    }
}

/// What a queue's two ends share: its byte count and counters.
#[derive(Debug)]
struct State {
    bytes: AtomicUsize,
    tx: AtomicU64,
    /// Bytes of the frames counted in `tx` (the status page's bits/s).
    tx_bytes: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
    /// Frames CoDel dropped (flow queues only).
    aqm_dropped: AtomicU64,
    limits: QueueLimits,
    budget: Arc<Budget>,
}

impl State {
    /// Takes `len` bytes from the queue's bound and the budget, or refuses.
    fn reserve(&self, len: usize) -> bool {
        let before = self.bytes.fetch_add(len, Relaxed);
        // An empty queue takes any frame, so a frame larger than the bound is not lost forever.
        if before > 0 && before + len > self.limits.bytes {
            self.bytes.fetch_sub(len, Relaxed);
            return false;
        }
        if !self.budget.reserve(len) {
            self.bytes.fetch_sub(len, Relaxed);
            return false;
        }
        true
    }

    fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Relaxed);
        self.budget.release(len);
    }

    /// Takes `more` bytes for frames already charged (a super-frame's segments beyond what it
    /// cost): from the budget always, from the queue's bound only while the port holds a
    /// batch (`busy`): a port with nothing in hand may cut its next super-frame whatever its
    /// queue holds, as an empty queue takes any frame.
    fn reserve_more(&self, more: usize, busy: bool) -> bool {
        let before = self.bytes.fetch_add(more, Relaxed);
        if busy && before + more > self.limits.bytes {
            self.bytes.fetch_sub(more, Relaxed);
            return false;
        }
        if !self.budget.reserve(more) {
            self.bytes.fetch_sub(more, Relaxed);
            return false;
        }
        true
    }
}

/// Bytes a port takes off its queue at a time (and one frame more at most): a batch stays
/// charged to the queue until it is written, so a batch as large as the queue's bound would
/// leave no room for the frames that follow while it is written. A quarter of the default
/// bound: 256 KiB (four super-frames) cost ws_tap 15 % of its TCP throughput in
/// `cargo xtask bench`, 1 MiB nothing measurable.
const BATCH_BYTES: usize = 1024 * 1024;

/// A queued frame and when it was queued.
type Queued = (Frame, Instant);

/// What one queued frame costs besides its bytes: its slot in the channel. Counted against the
/// bounds, so that they bound memory: 60-byte frames flooded to 10,000 slow peers are mostly
/// slots (the frame itself is one buffer shared by every queue).
const SLOT: usize = std::mem::size_of::<Queued>();

/// What `frame` counts against a queue's bound and the budget.
fn cost(frame: &Frame) -> usize {
    frame.len() + SLOT
}

/// What one plain frame a port holds costs besides its bytes: its handle in the batch and its
/// buffer's allocation (a super-frame's segments are each a buffer of their own).
pub(crate) const PLAIN_SLOT: usize = std::mem::size_of::<Bytes>() + 16;

/// What a plain frame (a segment) counts against a queue's bound and the budget.
pub(crate) fn plain_cost(frame: &Bytes) -> usize {
    frame.len() + PLAIN_SLOT
}

/// The switch's end of a port's transmit queue. Cloned for every frame the switch decides to
/// send to the port, so it is one `Arc`: a clone is one atomic increment (a channel sender's
/// costs two, and the state's `Arc` one more). The queue closes once the switch has dropped
/// every clone (the port was removed and the frames decided before were offered).
#[derive(Debug, Clone)]
pub(crate) struct Queue(Arc<Sending>);

/// What a [`Queue`] holds: the channel's sending end and the state both ends share.
#[derive(Debug)]
struct Sending {
    tx: mpsc::Sender<Queued>,
    state: Arc<State>,
}

/// The port's end of its transmit queue: frames in order, late ones dropped and counted. It
/// ends (`recv_many` returns 0) when the switch drops the [`Queue`], which is how a port
/// learns it was removed.
///
/// A frame stays charged to the queue's bound and the budget until it is written, not only
/// while it waits in the channel: a port whose peer stopped reading holds its last batch (and
/// a stalled writer holds it for as long as it likes). The charge of a batch is given back by
/// [`written`](Self::written), or by the next `recv_*` call (a caller takes its next batch
/// only once it is done with the last). Super-frames are cut into segments one at a time, as
/// the port takes them, and the segments are charged for what they are (their bytes and
/// buffers; at most twice the super-frame, see `gso::segment`) until they are written.
#[derive(Debug)]
pub(crate) struct EgressRx {
    rx: mpsc::Receiver<Queued>,
    state: Arc<State>,
    batch: Vec<Queued>,
    /// Fresh frames taken off the channel and not yet handed out (still charged).
    pending: VecDeque<Frame>,
    /// The segments of the super-frame being handed out (still charged).
    segments: std::vec::IntoIter<Bytes>,
    /// What `pending` and `segments` are charged.
    held: usize,
    /// What the frames handed out in the last batch are charged, until they are written.
    sent: usize,
    /// The flow queues (`--queue-discipline fq-codel`): `None` for a FIFO queue, and while
    /// the port has nothing queued (an idle port holds none).
    fq: Option<Box<fq::Fq>>,
    /// The key flows are hashed with, the queue's own (a peer cannot aim collisions).
    key: RandomState,
    /// The rate the port writes at, bytes/s (a moving average over batches; flow queues
    /// only): bounds the batches and scales CoDel's target on a slow link.
    rate: f64,
    /// What the flow queues are charged while the port has them ([`fq::FQ_COST`]) and the
    /// open flows ([`fq::FLOW_COST`] each).
    flow_charge: usize,
    /// When the batch in hand was handed out, and whether frames were left behind.
    handed: Option<(Instant, bool)>,
}

/// A new transmit queue bounded by `limits`, drawing on `budget`.
pub(crate) fn queue(limits: QueueLimits, budget: Arc<Budget>) -> (Queue, EgressRx) {
    let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
    let state = Arc::new(State {
        bytes: AtomicUsize::new(0),
        tx: AtomicU64::new(0),
        tx_bytes: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        expired: AtomicU64::new(0),
        aqm_dropped: AtomicU64::new(0),
        limits,
        budget,
    });
    let rx = EgressRx {
        rx,
        state: state.clone(),
        batch: Vec::new(),
        pending: VecDeque::new(),
        segments: Vec::new().into_iter(),
        held: 0,
        sent: 0,
        fq: None,
        key: RandomState::new(),
        rate: f64::INFINITY,
        flow_charge: 0,
        handed: None,
    };
    (Queue(Arc::new(Sending { tx, state })), rx)
}

impl Egress for Queue {
    fn offer(&self, frame: &Frame, now: Instant) -> bool {
        let s = &self.0.state;
        let len = cost(frame);
        if !s.reserve(len) {
            s.dropped.fetch_add(1, Relaxed);
            return false;
        }
        match self.0.tx.try_send((frame.clone(), now)) {
            Ok(()) => {
                s.tx.fetch_add(1, Relaxed);
                s.tx_bytes.fetch_add(frame.len() as u64, Relaxed);
                true
            }
            Err(_) => {
                s.release(len);
                s.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    fn counters(&self) -> TxCounters {
        let s = &self.0.state;
        TxCounters {
            tx: s.tx.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            expired: s.expired.load(Relaxed),
            aqm_dropped: s.aqm_dropped.load(Relaxed),
            queued_bytes: s.bytes.load(Relaxed) as u64,
            tx_bytes: s.tx_bytes.load(Relaxed),
        }
    }
}

impl EgressRx {
    /// Waits for frames and moves up to `limit` of them (and about [`BATCH_BYTES`]) into
    /// `out`, dropping (and counting) those that waited longer than the queue's delay bound;
    /// returns how many it moved, 0 once the queue is closed and empty. What the last call
    /// handed out counts as written.
    pub(crate) async fn recv_many(&mut self, out: &mut Vec<Frame>, limit: usize) -> usize {
        self.written();
        self.take_arrived();
        let before = out.len();
        loop {
            if !self.has_frames() && self.fill(limit).await == 0 {
                return 0;
            }
            let (now, cap, p) = (Instant::now(), self.batch_cap(), self.params());
            while out.len() - before < limit && self.sent < cap {
                let Some(frame) = self.next_frame(now, &p) else {
                    break;
                };
                // From pending to the batch in hand: charged as handed out, no longer as held.
                self.held -= cost(&frame);
                self.hand_out(cost(&frame));
                out.push(frame);
            }
            // None: CoDel dropped all that waited (flow queues), so wait for more.
            if out.len() > before {
                self.handed_out(now);
                return out.len() - before;
            }
        }
    }

    /// As [`recv_many`](Self::recv_many), for a port that takes plain frames only: offloaded
    /// frames are finished first (checksum filled in, super-frames cut into segments; see
    /// [`Frame::into_plain`]). One that cannot be finished (malformed metadata from a peer),
    /// or whose segments do not fit the queue's bound or the budget, is dropped and counted
    /// in `tx_dropped`. Returns how many plain frames it moved (at most `limit`).
    pub(crate) async fn recv_plain(&mut self, out: &mut Vec<Bytes>, limit: usize) -> usize {
        self.written();
        self.take_arrived();
        let before = out.len();
        loop {
            let (now, cap, p) = (Instant::now(), self.batch_cap(), self.params());
            while out.len() - before < limit && self.sent < cap {
                if let Some(seg) = self.segments.next() {
                    self.held -= plain_cost(&seg);
                    self.hand_out(plain_cost(&seg));
                    out.push(seg);
                    continue;
                }
                let Some(frame) = self.next_frame(now, &p) else {
                    break;
                };
                match self.finish(frame, out.len() > before) {
                    Ok(Some(plain)) => out.push(plain),
                    Ok(None) => {}
                    Err(()) => break,
                }
            }
            if out.len() > before {
                self.handed_out(now);
                return out.len() - before;
            }
            if self.fill(limit).await == 0 {
                return 0;
            }
        }
    }

    /// Makes one pending frame plain: returns it, or (a super-frame) keeps its segments in
    /// `segments`, charged for what they are instead of what the super-frame was. Segments
    /// that do not fit the queue's bound or the budget wait for the batch the port holds
    /// (`busy`) to be written: the super-frame goes back to the front of `pending` (`Err`).
    /// A port that holds nothing else cuts it if the budget has room (the queue's own bound
    /// gives way for one super-frame, as an empty queue takes any frame), or drops it.
    fn finish(&mut self, frame: Frame, busy: bool) -> Result<Option<Bytes>, ()> {
        let (offload, charged) = (frame.offload, cost(&frame));
        self.held -= charged;
        if !offload.is_gso() {
            return Ok(match frame.into_plain() {
                Ok(mut plain) => {
                    self.hand_out(charged);
                    plain.next()
                }
                Err(e) => self.refuse(charged, offload, &e),
            });
        }
        let segs = match gso::segment(&offload, &frame.data) {
            Ok(segs) => segs,
            Err(e) => return Ok(self.refuse(charged, offload, &e)),
        };
        let need: usize = segs.iter().map(plain_cost).sum();
        let fits = match need.checked_sub(charged) {
            Some(0) | None => {
                self.state.release(charged - need);
                true
            }
            Some(more) => self.state.reserve_more(more, busy),
        };
        if fits {
            self.held += need;
            self.segments = segs.into_iter();
            return Ok(None);
        }
        if busy {
            self.held += charged;
            self.pending.push_front(frame);
            return Err(());
        }
        self.state.release(charged);
        self.state.dropped.fetch_add(1, Relaxed);
        tracing::debug!(?offload, need, "segments over the queue's bounds: dropped");
        Ok(None)
    }

    /// Drops a frame that cannot be made plain, giving its charge back.
    fn refuse(&mut self, charged: usize, offload: VnetHdr, e: &gso::Error) -> Option<Bytes> {
        self.state.release(charged);
        self.state.dropped.fetch_add(1, Relaxed);
        tracing::debug!(?offload, "offloaded frame dropped: {e}");
        None
    }

    /// Counts `charge` as handed out in the current batch.
    fn hand_out(&mut self, charge: usize) {
        self.sent += charge;
    }

    /// The frames handed out so far were written (or dropped): their bytes leave the queue's
    /// bound and the budget.
    pub(crate) fn written(&mut self) {
        if self.sent > 0 {
            if let Some((at, cut)) = self.handed.take() {
                self.measure(at, cut);
            }
            self.state.release(self.sent);
            self.sent = 0;
        }
    }

    /// Whether the queue sorts frames into flow queues.
    fn fair(&self) -> bool {
        self.state.limits.discipline == Discipline::FqCodel
    }

    /// True if frames wait outside the channel.
    fn has_frames(&self) -> bool {
        !self.pending.is_empty() || self.fq.as_ref().is_some_and(|fq| !fq.is_empty())
    }

    /// The next frame to hand out: one put back first, then the flow queues' next (CoDel's
    /// drops counted), or the next in order.
    fn next_frame(&mut self, now: Instant, p: &fq::Params) -> Option<Frame> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        let fq = self.fq.as_mut()?;
        let mut drops = fq::Drops::default();
        let frame = fq.dequeue(now, p, &mut drops);
        self.account(drops);
        self.settle_flows();
        frame
    }

    /// Gives back the charge of the flows closed since (all of them, and the flow queues',
    /// once they are gone).
    fn settle_flows(&mut self) {
        let open = self
            .fq
            .as_ref()
            .map_or(0, |fq| fq::FQ_COST + fq.open_flows() * fq::FLOW_COST);
        if self.flow_charge > open {
            self.state.release(self.flow_charge - open);
            self.flow_charge = open;
        }
    }

    /// Gives back the charge of frames the flow queues dropped, and counts them.
    fn account(&mut self, d: fq::Drops) {
        if d.bytes == 0 {
            return;
        }
        let s = &self.state;
        self.held -= d.bytes;
        s.release(d.bytes);
        s.aqm_dropped.fetch_add(d.aqm, Relaxed);
        s.expired.fetch_add(d.expired, Relaxed);
        s.dropped.fetch_add(d.overflow, Relaxed);
    }

    /// Flow queues: moves the frames waiting in the channel into them, so that a sparse
    /// flow's frame that arrived while the last batch was written goes in the next one.
    fn take_arrived(&mut self) {
        if !self.fair() {
            return;
        }
        self.take_channel();
        if !self.batch.is_empty() {
            self.keep_fresh(Instant::now());
        }
    }

    /// Moves what waits in the channel into `batch`, without waiting.
    fn take_channel(&mut self) {
        while self.batch.len() < QUEUE_FRAMES {
            match self.rx.try_recv() {
                Ok(queued) => self.batch.push(queued),
                Err(_) => break,
            }
        }
    }

    /// Flow queues: a queue within [`TRIM_ROOM`] (or an eighth of its bound, if less) of its
    /// bound drops from its fattest flow, so that room is left for a sparse flow's frames (the
    /// producer refuses what does not fit).
    fn trim(&mut self) {
        let Some(fq) = self.fq.as_mut() else {
            return;
        };
        let bound = self.state.limits.bytes;
        let used = self.state.bytes.load(Relaxed);
        let room = (bound / 8).min(TRIM_ROOM);
        let Some(excess) = used.checked_sub(bound - room).filter(|&e| e > 0) else {
            return;
        };
        let mut drops = fq::Drops::default();
        fq.drop_fattest(excess, &mut drops);
        self.account(drops);
    }

    /// CoDel's parameters at the rate the port writes: on a slow link, a target of at least
    /// 1.5 MTU-sized frames' time (a frame takes that long to go), the interval as much
    /// longer.
    fn params(&self) -> fq::Params {
        let frame_time = 1.5 * 1514.0 / self.rate;
        let floor = Duration::try_from_secs_f64(frame_time.min(1.0)).unwrap_or_default();
        let target = CODEL_TARGET.max(floor);
        fq::Params {
            target,
            interval: CODEL_INTERVAL + (target - CODEL_TARGET),
            delay: self.state.limits.delay,
        }
    }

    /// Bytes to take off the queue for one batch: [`BATCH_BYTES`], or with flow queues
    /// [`BATCH_TIME`] at the rate the port writes (at least one frame).
    fn batch_cap(&self) -> usize {
        if !self.fair() {
            return BATCH_BYTES;
        }
        let cap = (self.rate * BATCH_TIME.as_secs_f64()).min(BATCH_BYTES as f64);
        (cap as usize).max(1)
    }

    /// Notes when a batch was handed out (flow queues), and whether frames were left behind
    /// (then its write measures the port's rate; otherwise it only shows the rate is at
    /// least that).
    fn handed_out(&mut self, now: Instant) {
        if self.fair() {
            let cut = self.has_frames() || self.segments.len() > 0 || !self.rx.is_empty();
            self.handed = Some((now, cut));
        }
    }

    /// Updates the port's rate with the batch just written, handed out at `at`.
    fn measure(&mut self, at: Instant, cut: bool) {
        // A write that took no time says the port is fast, not how fast.
        let secs = at.elapsed().as_secs_f64().max(50e-6);
        let sample = self.sent as f64 / secs;
        let avg = if self.rate.is_finite() {
            0.75 * self.rate + 0.25 * sample
        } else {
            sample
        };
        self.rate = if cut { avg } else { self.rate.max(avg) };
    }

    /// Waits for frames on the channel and keeps the fresh ones in `pending` (still charged),
    /// dropping (and counting) those that waited too long. Returns how many it kept, 0 once the
    /// channel is closed and empty.
    async fn fill(&mut self, limit: usize) -> usize {
        loop {
            if self.rx.recv_many(&mut self.batch, limit).await == 0 {
                return 0;
            }
            // Flow queues: all that waits, so that the flows are trimmed for what the queue
            // holds, not the fattest flow of the few frames taken (the bulk flow's frames
            // left in the channel would be kept, the sparse ones taken dropped).
            if self.fair() {
                self.take_channel();
            }
            let n = self.keep_fresh(Instant::now());
            if n > 0 {
                return n;
            }
        }
    }

    /// True if no frame waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty() && !self.has_frames() && self.segments.len() == 0
    }

    /// Gives back the last batch's charge and, if nothing waits, frees the batch buffers (up
    /// to a batch of frames' slots each): a port that drained its queue keeps none, so
    /// thousands of idle ports hold nothing here.
    pub(crate) fn release(&mut self) {
        self.written();
        if self.is_empty() {
            self.batch = Vec::new();
            self.pending = VecDeque::new();
            self.segments = Vec::new().into_iter();
            self.fq = None;
            self.settle_flows();
        }
    }

    /// One frame, as [`recv_many`](Self::recv_many).
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        let mut one = Vec::with_capacity(1);
        (self.recv_many(&mut one, 1).await > 0).then(|| one.pop())?
    }

    /// Moves the frames of `self.batch` that are still fresh at `now` into `pending` (or the
    /// flow queues), still charged; the late ones are dropped and their charge given back.
    fn keep_fresh(&mut self, now: Instant) -> usize {
        let fair = self.fair();
        let s = &self.state;
        let mut n = 0;
        for (frame, queued) in self.batch.drain(..) {
            if now.saturating_duration_since(queued) > s.limits.delay {
                s.release(cost(&frame));
                s.expired.fetch_add(1, Relaxed);
                continue;
            }
            if !fair {
                self.held += cost(&frame);
                self.pending.push_back(frame);
                n += 1;
                continue;
            }
            let hash = fq::flow_hash(&self.key, &frame.data);
            // A new flow is charged for what it costs, and so are the flow queues the first
            // frame makes, from the budget (the port's own bound gives way: the frame was
            // admitted, and the fattest flow pays below).
            if !self.fq.as_ref().is_some_and(|fq| fq.is_open(hash)) {
                let made = if self.fq.is_none() { fq::FQ_COST } else { 0 };
                if !s.reserve_more(fq::FLOW_COST + made, false) {
                    s.release(cost(&frame));
                    s.dropped.fetch_add(1, Relaxed);
                    continue;
                }
                self.flow_charge += fq::FLOW_COST + made;
            }
            let fq = self.fq.get_or_insert_with(|| Box::new(fq::Fq::new()));
            self.held += cost(&frame);
            fq.enqueue(hash, frame, queued);
            n += 1;
        }
        self.trim();
        n
    }
}

impl Drop for EgressRx {
    /// Frames still queued give their bytes back to the budget.
    fn drop(&mut self) {
        self.state.release(self.held + self.sent + self.flow_charge);
        self.rx.close();
        while let Ok((frame, _)) = self.rx.try_recv() {
            self.state.release(cost(&frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: usize, budget: usize) -> QueueLimits {
        QueueLimits {
            bytes,
            budget,
            delay: Duration::from_millis(200),
            discipline: Discipline::Fifo,
        }
    }

    fn frame(len: usize) -> Frame {
        Frame::from(Bytes::from(vec![0u8; len]))
    }

    #[tokio::test]
    async fn bounded_in_bytes_per_queue() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(limits(3000, 1 << 20), budget.clone());
        let now = Instant::now();
        assert!(q.offer(&frame(1500 - SLOT), now));
        assert!(q.offer(&frame(1500 - SLOT), now));
        assert!(!q.offer(&frame(60), now), "3000 bytes queued: full");
        assert_eq!(q.counters().queued_bytes, 3000);
        assert_eq!(budget.used(), 3000);
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 64).await, 2);
        // Taken, not yet written: still charged, so the queue stays full.
        assert_eq!(q.counters().queued_bytes, 3000);
        assert!(!q.offer(&frame(60), now), "the batch in hand still counts");
        out.clear();
        rx.written();
        let c = q.counters();
        assert_eq!((c.tx, c.dropped, c.queued_bytes), (2, 2, 0));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn an_empty_queue_takes_a_frame_larger_than_its_bound() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, _rx) = queue(limits(1000, 1 << 20), budget);
        let now = Instant::now();
        assert!(q.offer(&frame(65536), now));
        assert!(!q.offer(&frame(60), now));
    }

    #[tokio::test]
    async fn the_budget_bounds_all_queues_together() {
        let budget = Arc::new(Budget::new(4000));
        let (a, _ra) = queue(limits(3000, 4000), budget.clone());
        let (b, rb) = queue(limits(3000, 4000), budget.clone());
        let now = Instant::now();
        assert!(a.offer(&frame(3000 - SLOT), now));
        assert!(b.offer(&frame(1000 - SLOT), now));
        assert!(
            !b.offer(&frame(1000 - SLOT), now),
            "budget spent though b has room"
        );
        assert_eq!(budget.refused(), 1);
        assert_eq!(b.counters().dropped, 1);
        // A removed port's queued frames go back to the budget.
        drop(rb);
        assert_eq!(budget.used(), 3000);
    }

    #[tokio::test]
    async fn a_removed_port_gives_back_exactly_what_it_was_charged() {
        let budget = Arc::new(Budget::new(1 << 20));
        let fifo = limits(1 << 20, 1 << 20);
        let fair = QueueLimits {
            discipline: Discipline::FqCodel,
            ..fifo
        };
        for (plain, limits) in [(false, fifo), (true, fifo), (false, fair), (true, fair)] {
            let (q, mut rx) = queue(limits, budget.clone());
            let now = Instant::now();
            for _ in 0..10 {
                assert!(q.offer(&frame(100), now));
            }
            // Some taken and written, some taken and in hand, some still queued.
            if plain {
                let mut out = Vec::new();
                rx.recv_plain(&mut out, 3).await;
                rx.written();
                out.clear();
                rx.recv_plain(&mut out, 3).await;
            } else {
                let mut out = Vec::new();
                rx.recv_many(&mut out, 3).await;
                rx.written();
                out.clear();
                rx.recv_many(&mut out, 3).await;
            }
            drop(rx);
            assert_eq!(budget.used(), 0, "plain: {plain}");
        }
    }

    #[tokio::test]
    async fn late_frames_are_dropped_not_delivered() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(limits(1 << 20, 1 << 20), budget.clone());
        let long_ago = Instant::now() - Duration::from_secs(1);
        assert!(q.offer(&frame(100), long_ago));
        assert!(q.offer(&frame(200), Instant::now()));
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 64).await, 1);
        assert_eq!(out[0].len(), 200);
        rx.written();
        let c = q.counters();
        assert_eq!((c.tx, c.expired, c.queued_bytes), (2, 1, 0));
        assert_eq!(budget.used(), 0);
    }

    use super::fq::tests::udp;

    fn fair(bytes: usize) -> QueueLimits {
        QueueLimits {
            discipline: Discipline::FqCodel,
            ..limits(bytes, 1 << 20)
        }
    }

    #[tokio::test]
    async fn a_sparse_flow_overtakes_a_bulk_backlog_and_charges_return_to_zero() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(fair(1 << 20), budget.clone());
        let now = Instant::now();
        for _ in 0..200 {
            assert!(q.offer(&udp(1000, 1514), now));
        }
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 1).await, 1);
        // A ping arrives while the bulk flow's first frame is written: it goes next.
        assert!(q.offer(&udp(7, 98), now));
        rx.written();
        out.clear();
        assert_eq!(rx.recv_many(&mut out, 1).await, 1);
        assert_eq!(out[0].len(), 98);
        let mut n = 1;
        while !rx.is_empty() {
            out.clear();
            n += rx.recv_plain(&mut Vec::new(), 64).await;
        }
        rx.release();
        let c = q.counters();
        assert_eq!(
            (n, c.dropped, c.aqm_dropped, c.queued_bytes),
            (200, 0, 0, 0)
        );
        assert_eq!(budget.used(), 0);
        assert!(rx.fq.is_none(), "an idle port keeps no flow queues");
    }

    #[tokio::test]
    async fn a_full_queue_drops_from_the_fattest_flow_not_the_sparse_one() {
        let budget = Arc::new(Budget::new(1 << 20));
        let bound = 100 * cost(&udp(1000, 1514));
        let (q, mut rx) = queue(fair(bound), budget.clone());
        let now = Instant::now();
        for _ in 0..95 {
            assert!(q.offer(&udp(1000, 1514), now));
        }
        assert!(q.offer(&udp(7, 98), now));
        let mut out = Vec::new();
        // The bulk flow, new too, sends its quantum (one frame), then the sparse one.
        assert_eq!(rx.recv_many(&mut out, 2).await, 2);
        assert_eq!(out[1].len(), 98, "the sparse frame was kept, and goes next");
        let c = q.counters();
        assert!(c.dropped > 0, "the bulk flow paid");
        assert!(c.queued_bytes as usize <= bound - bound / 8);
        drop(rx);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_sparse_frame_survives_trimming_with_the_bulk_still_in_the_channel() {
        let budget = Arc::new(Budget::new(1 << 20));
        let bulk = cost(&udp(1000, 1514));
        let bound = 100 * bulk;
        let (q, mut rx) = queue(fair(bound), budget.clone());
        let now = Instant::now();
        // A port waiting for frames (nothing taken yet) when a burst arrives: a few taken by
        // the wait (4 here), the bulk of it still in the channel.
        assert!(q.offer(&udp(1000, 1514), now));
        assert!(q.offer(&udp(7, 98), now));
        assert!(q.offer(&udp(8, 98), now));
        for _ in 0..97 {
            assert!(q.offer(&udp(1000, 1514), now));
        }
        assert!(rx.fill(4).await > 0);
        // 98 bulk frames, two pings, three flows and the flow queues against seven eighths of the bound: the
        // bulk flow pays for the excess, to the frame (12).
        let held = 98 * bulk + 2 * cost(&udp(7, 98)) + 3 * fq::FLOW_COST + fq::FQ_COST;
        let excess = held - (bound - bound / 8);
        assert_eq!(q.counters().dropped as usize, excess.div_ceil(bulk));
        let (mut pings, mut out) = (0, Vec::new());
        while !rx.is_empty() {
            out.clear();
            rx.recv_many(&mut out, 64).await;
            pings += out.iter().filter(|f| f.len() == 98).count();
            rx.written();
        }
        assert_eq!(pings, 2, "the sparse frames were kept");
        drop(rx);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_slow_port_takes_small_batches() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(fair(1 << 20), budget.clone());
        let now = Instant::now();
        for _ in 0..10 {
            assert!(q.offer(&udp(1000, 1500), now));
        }
        let mut out = Vec::new();
        // Fast (nothing measured yet): a full batch.
        assert_eq!(rx.recv_many(&mut out, 4).await, 4);
        // That batch took a second to write, with frames left behind: 6 kB/s.
        rx.handed = Some((Instant::now() - Duration::from_secs(1), true));
        rx.written();
        assert!(rx.rate < 10_000.0, "{}", rx.rate);
        assert!(
            rx.params().target > CODEL_TARGET,
            "the target grows on a slow link"
        );
        out.clear();
        assert_eq!(rx.recv_many(&mut out, 4).await, 1, "one frame at a time");
        drop(rx);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn closes_when_the_switch_drops_the_queue() {
        let (q, mut rx) = queue(QueueLimits::default(), Arc::new(Budget::new(1 << 20)));
        assert!(q.offer(&frame(60), Instant::now()));
        drop(q);
        assert_eq!(rx.recv().await.map(|f| f.len()), Some(60));
        assert_eq!(rx.recv().await, None);
    }

    /// A TCP/IPv4 super-frame of `payload` bytes cut into `mss`-byte segments, its headers
    /// padded with `ip_opt` words of IP options.
    fn super_frame(payload: usize, mss: u16, ip_opt: usize) -> Frame {
        let ihl = 5 + ip_opt as u8;
        let mut data = vec![0x01, 0, 0x5e, 0, 0, 1, 0x02, 0, 0, 0, 0, 0xa, 0x08, 0x00];
        data.extend_from_slice(&[0x40 | ihl, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        data.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        data.resize(data.len() + 4 * ip_opt, 1);
        data.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0]);
        data.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        data.resize(data.len() + payload, 0);
        let hdr = VnetHdr {
            gso_type: gso::GSO_TCPV4,
            gso_size: mss,
            ..VnetHdr::default()
        };
        Frame::new(Bytes::from(data), hdr)
    }

    #[tokio::test]
    async fn segments_stay_charged_until_written() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(limits(1 << 20, 1 << 20), budget.clone());
        let sf = super_frame(20_000, 100, 10);
        let charged = cost(&sf);
        assert!(q.offer(&sf, Instant::now()));
        let mut out = Vec::new();
        assert_eq!(rx.recv_plain(&mut out, 64).await, 64);
        // All 200 segments are charged (the 136 not handed out yet too), not the super-frame.
        let segs = gso::segment(&sf.offload, &sf.data).unwrap();
        let need: usize = segs.iter().map(plain_cost).sum();
        assert!(need > charged);
        assert_eq!(q.counters().queued_bytes as usize, need);
        assert_eq!(budget.used(), need);
        let mut n = 64;
        loop {
            out.clear();
            let got = rx.recv_plain(&mut out, 64).await;
            n += got;
            if rx.is_empty() {
                break;
            }
        }
        assert_eq!(n, 200);
        assert!(budget.used() > 0, "the last batch is still in hand");
        rx.written();
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn segments_wait_for_room_or_are_dropped() {
        // Room for two super-frames queued, or for the segments of one: not for both.
        let sf = super_frame(20_000, 100, 10);
        let segs = gso::segment(&sf.offload, &sf.data).unwrap();
        let need: usize = segs.iter().map(plain_cost).sum();
        assert!(need > 2 * cost(&sf) && need < 3 * cost(&sf));
        let limit = need + 1000;
        let budget = Arc::new(Budget::new(limit));
        let (q, mut rx) = queue(limits(1 << 20, 1 << 20), budget.clone());
        let now = Instant::now();
        let plain = frame(100);
        assert!(q.offer(&plain, now));
        assert!(q.offer(&sf, now));
        assert!(q.offer(&sf, now));
        let mut out = Vec::new();
        // The plain frame goes alone: the first super-frame's segments wait for room.
        assert_eq!(rx.recv_plain(&mut out, 64).await, 1);
        assert_eq!(out[0].len(), 100);
        out.clear();
        // Nothing in hand: the budget has no room for the first one's segments (the second
        // is queued), so it is dropped; that gives room to cut the second.
        assert_eq!(rx.recv_plain(&mut out, 64).await, 64);
        assert_eq!(q.counters().dropped, 1);
        assert_eq!(budget.used(), need);
        assert!(budget.used() <= limit);
        drop(rx);
        assert_eq!(budget.used(), 0);
    }
}
