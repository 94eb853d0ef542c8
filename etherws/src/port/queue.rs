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
//! A frame flooded to many ports is one shared buffer, but it counts against each queue it
//! sits in: the bound is conservative, never exceeded. Each frame also counts its slot in the
//! queue ([`SLOT`] bytes), so that the bounds are bounds on memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::switch::frame::Frame;
use crate::switch::{Egress, TxCounters};

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
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            bytes: 4 << 20,
            budget: 128 << 20,
            delay: Duration::from_millis(1000),
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
        self.used.fetch_sub(len, Relaxed);
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
}

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
#[derive(Debug)]
pub(crate) struct EgressRx {
    rx: mpsc::Receiver<Queued>,
    state: Arc<State>,
    batch: Vec<Queued>,
    /// Reused by `recv_plain`.
    plain: Vec<Frame>,
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
        limits,
        budget,
    });
    let rx = EgressRx {
        rx,
        state: state.clone(),
        batch: Vec::new(),
        plain: Vec::new(),
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
            queued_bytes: s.bytes.load(Relaxed) as u64,
            tx_bytes: s.tx_bytes.load(Relaxed),
        }
    }
}

impl EgressRx {
    /// Waits for frames and moves up to `limit` of them into `out`, dropping (and counting)
    /// those that waited longer than the queue's delay bound; returns how many it moved, 0
    /// once the queue is closed and empty.
    pub(crate) async fn recv_many(&mut self, out: &mut Vec<Frame>, limit: usize) -> usize {
        loop {
            if self.rx.recv_many(&mut self.batch, limit).await == 0 {
                return 0;
            }
            let n = self.keep_fresh(out, Instant::now());
            if n > 0 {
                return n;
            }
        }
    }

    /// As [`recv_many`](Self::recv_many), for a port that takes plain frames only: offloaded
    /// frames are finished first (checksum filled in, super-frames cut into segments; see
    /// [`Frame::into_plain`]). One that cannot be finished (malformed metadata from a peer)
    /// is dropped and counted in `tx_dropped`. Returns how many plain frames it moved.
    pub(crate) async fn recv_plain(&mut self, out: &mut Vec<Bytes>, limit: usize) -> usize {
        let mut frames = std::mem::take(&mut self.plain);
        loop {
            if self.recv_many(&mut frames, limit).await == 0 {
                self.plain = frames;
                return 0;
            }
            let before = out.len();
            for frame in frames.drain(..) {
                let offload = frame.offload;
                match frame.into_plain() {
                    Ok(plain) => out.extend(plain),
                    Err(e) => {
                        self.state.dropped.fetch_add(1, Relaxed);
                        tracing::debug!(?offload, "offloaded frame dropped: {e}");
                    }
                }
            }
            if out.len() > before {
                self.plain = frames;
                return out.len() - before;
            }
        }
    }

    /// True if no frame waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Frees the batch buffers (up to a batch of frames' slots each): a port that drained its
    /// queue keeps none, so thousands of idle ports hold nothing here.
    pub(crate) fn release(&mut self) {
        self.batch = Vec::new();
        self.plain = Vec::new();
    }

    /// One frame, as [`recv_many`](Self::recv_many).
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        let mut one = Vec::with_capacity(1);
        (self.recv_many(&mut one, 1).await > 0).then(|| one.pop())?
    }

    /// Moves the frames of `self.batch` that are still fresh at `now` into `out`.
    fn keep_fresh(&mut self, out: &mut Vec<Frame>, now: Instant) -> usize {
        let s = &self.state;
        let before = out.len();
        for (frame, queued) in self.batch.drain(..) {
            s.release(cost(&frame));
            if now.saturating_duration_since(queued) > s.limits.delay {
                s.expired.fetch_add(1, Relaxed);
            } else {
                out.push(frame);
            }
        }
        out.len() - before
    }
}

impl Drop for EgressRx {
    /// Frames still queued give their bytes back to the budget.
    fn drop(&mut self) {
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
        let c = q.counters();
        assert_eq!((c.tx, c.dropped, c.queued_bytes), (2, 1, 0));
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
    async fn late_frames_are_dropped_not_delivered() {
        let budget = Arc::new(Budget::new(1 << 20));
        let (q, mut rx) = queue(limits(1 << 20, 1 << 20), budget.clone());
        let long_ago = Instant::now() - Duration::from_secs(1);
        assert!(q.offer(&frame(100), long_ago));
        assert!(q.offer(&frame(200), Instant::now()));
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 64).await, 1);
        assert_eq!(out[0].len(), 200);
        let c = q.counters();
        assert_eq!((c.tx, c.expired, c.queued_bytes), (2, 1, 0));
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
}
