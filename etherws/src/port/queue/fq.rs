//! Flow queues for a port's transmit queue (`--queue-discipline fq-codel`, RFC 8290): frames
//! are sorted by a keyed hash of their flow into at most [`BUCKETS`] queues, served by deficit
//! round robin (a flow that just became active goes first, so a ping, a DNS query or a TCP
//! ACK does not wait behind a bulk flow's backlog), and each queue is kept short by CoDel
//! (RFC 8289): while a flow's frames keep waiting longer than the target for an interval, its
//! oldest are dropped at dequeue, at a rate that grows until its sender slows down.
//!
//! Everything here belongs to the port's end of the queue (one task): no lock, no atomics.
//! The byte accounting stays with the caller: what is dropped here is reported in [`Drops`].

use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, Instant};

use super::{Queued, cost};
use crate::switch::frame::Frame;
use crate::wire::{self, Ip, ethernet, ip_protocol};

/// Flow queues per port at most (flows beyond share them, by hash).
pub(super) const BUCKETS: usize = 1024;

/// What a flow may send per round before the others' turn: one MTU-sized frame.
const QUANTUM: i64 = 1514 + super::SLOT as i64;

/// Bytes a flow may hold without CoDel dropping from it, whatever its frames' sojourn: one
/// MTU-sized frame (RFC 8289's MAXPACKET).
const MAX_PACKET: usize = 1514 + super::SLOT;

/// What an open flow costs besides its frames: its entry and its queue's first buffer
/// (charged to the port's queue and the budget while the flow is open, so that the bounds
/// stay bounds on memory however many flows the frames make).
///
/// While a flow holds frames its buffer may be larger: each queued frame is charged its slot
/// ([`super::SLOT`]), and the buffer is shrunk as it empties (see [`shrink`]) so that it never
/// holds more than 4 slots per queued frame (or [`FLOW_SLOTS`]): the spare capacity beyond the
/// slots charged is at most 3 slots per queued frame, uncharged but bounded by what is: a
/// frame charged its slot and at least 60 bytes holds at most 3 slots more, under 2.6 times
/// its charge all told (within the factor 5 `docs/production.md` budgets memory for).
pub(super) const FLOW_COST: usize =
    std::mem::size_of::<Flow>() + FLOW_SLOTS * std::mem::size_of::<Queued>();

/// The slots of a flow's buffer that [`FLOW_COST`] charges (a `VecDeque`'s first allocation).
const FLOW_SLOTS: usize = 4;

/// CoDel's parameters for one dequeue, and the hard cap on a frame's wait (`--queue-delay`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    /// Sojourn time CoDel aims at (5 ms; more on a slow link, see `EgressRx`).
    pub(super) target: Duration,
    /// How long the sojourn must stay above the target before CoDel drops (100 ms).
    pub(super) interval: Duration,
    /// A frame that waited longer is dropped whatever CoDel says (`tx_expired`).
    pub(super) delay: Duration,
}

/// What a dequeue or an overflow dropped, for the caller's accounting.
#[derive(Debug, Default)]
pub(super) struct Drops {
    /// Frames CoDel dropped (`tx_aqm_dropped`).
    pub(super) aqm: u64,
    /// Frames dropped because they waited longer than `--queue-delay` (`tx_expired`).
    pub(super) expired: u64,
    /// Frames dropped from the fattest flow because the queue was full (`tx_dropped`).
    pub(super) overflow: u64,
    /// What all of them were charged.
    pub(super) bytes: usize,
}

/// One flow's CoDel state (RFC 8289, section 5).
#[derive(Debug, Default)]
struct Codel {
    /// When the sojourn time went (and stayed) above the target, plus an interval.
    first_above: Option<Instant>,
    /// When the next drop is due while dropping.
    drop_next: Option<Instant>,
    count: u32,
    last_count: u32,
    dropping: bool,
}

/// What CoDel keeps of a bucket's flow once it closes: RFC 8289's `count`, `lastcount` and
/// `drop_next`, kept per bucket as Linux's fq_codel does, so that a flow that comes back soon
/// after a dropping episode (its queue emptied now and then) starts again where it left off
/// instead of at one drop per interval. Compact (12 bytes, [`BUCKETS`] of them: charged with
/// the flow queues, [`FQ_COST`]); `drop_next` in milliseconds since the flow queues were made
/// (it only says whether the last episode was recent: a millisecond is close enough).
#[derive(Debug, Default, Clone, Copy)]
struct Saved {
    count: u32,
    last_count: u32,
    /// `drop_next` − `Fq::epoch` in ms, plus 1 (0: none).
    drop_next: u32,
}

/// One flow queue.
#[derive(Debug, Default)]
struct Flow {
    frames: VecDeque<Queued>,
    /// What its frames are charged.
    bytes: usize,
    deficit: i64,
    /// Its bucket (the map's entry that points to it).
    bucket: u16,
    /// In the new or the old list.
    listed: bool,
    codel: Codel,
}

/// A port's flow queues.
#[derive(Debug)]
pub(super) struct Fq {
    /// Bucket → index in `flows` + 1 (0: no flow).
    map: Box<[u16; BUCKETS]>,
    /// The flows in use, and the free ones (kept for their buffers).
    flows: Vec<Flow>,
    free: Vec<u16>,
    /// Flows that became active and have not used their quantum yet: served first.
    new: VecDeque<u16>,
    /// The other active flows, round robin.
    old: VecDeque<u16>,
    /// What all the flows' frames are charged.
    bytes: usize,
    /// CoDel's state of each bucket's last flow, while its bucket has none open.
    saved: Box<[Saved; BUCKETS]>,
    /// When the flow queues were made: what `Saved::drop_next` counts from.
    epoch: Instant,
}

/// What the flow queues cost besides their flows, charged while a port has them (they are
/// freed with the port's queue when it empties, [`Saved`] with them).
pub(super) const FQ_COST: usize = std::mem::size_of::<Fq>()
    + std::mem::size_of::<[u16; BUCKETS]>()
    + std::mem::size_of::<[Saved; BUCKETS]>();

/// The flow `data` belongs to, hashed with `key`: its MAC addresses, VLAN tags and EtherType,
/// and for IP its addresses, protocol and (TCP, UDP, SCTP, not fragmented) ports. Reads
/// what is there: a truncated or malformed frame hashes what it has.
pub(super) fn flow_hash(key: &RandomState, data: &[u8]) -> u64 {
    let mut h = key.build_hasher();
    let Ok(hd) = wire::walk(data) else {
        // Not IP (or IP cut short): the Ethernet header and tags, as far as they go.
        let l2 = ethernet::inner(data).map_or(ethernet::HEADER_LEN, |(_, at)| at);
        h.write(data.get(..l2).unwrap_or(data));
        return h.finish();
    };
    let l3 = hd.l3_offset();
    h.write(data.get(..l3).unwrap_or_default());
    let addrs = match hd.ip {
        Ip::V4 { .. } => l3 + 12..l3 + 20,
        Ip::V6 { .. } => l3 + 8..l3 + 40,
    };
    h.write(data.get(addrs).unwrap_or_default());
    h.write_u8(hd.l4_protocol);
    let ported = matches!(
        hd.l4_protocol,
        ip_protocol::TCP | ip_protocol::UDP | ip_protocol::SCTP
    );
    if ported && !hd.is_fragment() {
        let l4 = hd.l4_offset;
        h.write(data.get(l4..l4 + 4).unwrap_or_default());
    }
    h.finish()
}

impl Fq {
    pub(super) fn new() -> Self {
        Fq {
            map: Box::new([0; BUCKETS]),
            flows: Vec::new(),
            free: Vec::new(),
            new: VecDeque::new(),
            old: VecDeque::new(),
            bytes: 0,
            saved: Box::new([Saved::default(); BUCKETS]),
            epoch: Instant::now(),
        }
    }

    /// True if no frame waits.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// What the flows' frames are charged.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the flow of `hash` is open (else queuing a frame opens it, [`FLOW_COST`]).
    pub(super) fn is_open(&self, hash: u64) -> bool {
        self.map[bucket(hash)] != 0
    }

    /// How many flows are open (each charged [`FLOW_COST`]).
    pub(super) fn open_flows(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// Queues `frame` (charged `cost`) in the flow of `hash`.
    pub(super) fn enqueue(&mut self, hash: u64, frame: Frame, at: Instant) {
        let i = match self.map[bucket(hash)] {
            0 => {
                let i = self.free.pop().unwrap_or_else(|| {
                    self.flows.push(Flow::default());
                    (self.flows.len() - 1) as u16
                });
                self.map[bucket(hash)] = i + 1;
                let saved = self.saved[bucket(hash)];
                let flow = &mut self.flows[usize::from(i)];
                flow.bucket = bucket(hash) as u16;
                // Not dropping, nothing above the target yet; the last episode remembered.
                flow.codel = Codel {
                    count: saved.count,
                    last_count: saved.last_count,
                    drop_next: saved
                        .drop_next
                        .checked_sub(1)
                        .map(|ms| self.epoch + Duration::from_millis(u64::from(ms))),
                    ..Codel::default()
                };
                i
            }
            n => n - 1,
        };
        let flow = &mut self.flows[usize::from(i)];
        let c = cost(&frame);
        flow.frames.push_back((frame, at));
        flow.bytes += c;
        self.bytes += c;
        if !flow.listed {
            flow.listed = true;
            flow.deficit = QUANTUM;
            self.new.push_back(i);
        }
    }

    /// The next frame to send at `now`, by deficit round robin over the flows (new ones
    /// first), each flow's CoDel dropping (into `drops`) before it; `None` if none waits.
    pub(super) fn dequeue(&mut self, now: Instant, p: &Params, drops: &mut Drops) -> Option<Frame> {
        loop {
            let (from_new, i) = match self.new.front() {
                Some(&i) => (true, i),
                None => (false, *self.old.front()?),
            };
            let flow = &mut self.flows[usize::from(i)];
            if flow.deficit <= 0 {
                flow.deficit += QUANTUM;
                self.pop_list(from_new);
                self.old.push_back(i);
                continue;
            }
            let before = flow.bytes;
            let got = codel_dequeue(flow, now, p, drops);
            self.bytes -= before - flow.bytes;
            match got {
                Some(frame) => {
                    flow.deficit -= cost(&frame) as i64;
                    return Some(frame);
                }
                None => {
                    self.pop_list(from_new);
                    if from_new && !self.old.is_empty() {
                        // An emptied new flow goes to the back of the old ones, so that a flow
                        // cannot stay new (and first) by emptying now and then.
                        self.old.push_back(i);
                    } else {
                        self.retire(i);
                    }
                }
            }
        }
    }

    fn pop_list(&mut self, from_new: bool) {
        if from_new {
            self.new.pop_front();
        } else {
            self.old.pop_front();
        }
    }

    /// Frees an empty flow off the lists: its bucket forgets it, its buffer is kept if it is
    /// no larger than the [`FLOW_COST`] charged for it (a flow that once held thousands of
    /// frames gives them back, so that the free entries hold at most `BUCKETS` × `FLOW_COST`
    /// while the port stays busy, whatever the flows did).
    fn retire(&mut self, i: u16) {
        let flow = &mut self.flows[usize::from(i)];
        debug_assert!(flow.frames.is_empty());
        if flow.frames.capacity() > FLOW_SLOTS {
            flow.frames = VecDeque::new();
        }
        let c = &flow.codel;
        let ms = |t: Instant| t.saturating_duration_since(self.epoch).as_millis();
        self.saved[usize::from(flow.bucket)] = Saved {
            count: c.count,
            last_count: c.last_count,
            drop_next: c
                .drop_next
                .map_or(0, |t| u32::try_from(ms(t) + 1).unwrap_or(u32::MAX)),
        };
        flow.listed = false;
        self.map[usize::from(flow.bucket)] = 0;
        self.free.push(i);
    }

    /// Drops the oldest frames of the flows holding the most bytes, one frame at a time from
    /// the fattest, until `excess` bytes are freed (fq_codel's answer to a full queue: the
    /// arriving sparse frame is kept, the bulk flows that filled the queue pay, the fattest
    /// first, down to the next one's size). One scan of the flows per call, then a heap:
    /// O(flows + drops × log flows), not a scan per frame dropped; the heap is the call's own
    /// (at most [`BUCKETS`] entries), gone when it returns. Returns what it freed.
    pub(super) fn drop_fattest(&mut self, excess: usize, drops: &mut Drops) -> usize {
        let mut fattest: BinaryHeap<(usize, u16)> = (self.flows.iter().enumerate())
            .filter(|(_, f)| f.bytes > 0)
            .map(|(i, f)| (f.bytes, i as u16))
            .collect();
        let mut freed = 0;
        while freed < excess {
            let Some(mut top) = fattest.peek_mut() else {
                break;
            };
            let flow = &mut self.flows[usize::from(top.1)];
            // The last frame stays: an empty queue takes any frame, however large.
            let c = match flow.frames.front() {
                Some((frame, _)) if self.bytes - freed > cost(frame) => cost(frame),
                _ => break,
            };
            flow.frames.pop_front();
            shrink(&mut flow.frames);
            flow.bytes -= c;
            freed += c;
            drops.overflow += 1;
            if flow.bytes == 0 {
                PeekMut::pop(top);
            } else {
                top.0 = flow.bytes;
            }
        }
        self.bytes -= freed;
        drops.bytes += freed;
        freed
    }
}

/// The bucket of the flow of `hash`.
fn bucket(hash: u64) -> usize {
    (hash % BUCKETS as u64) as usize
}

/// Halves a flow's buffer once it is three quarters empty, so that it holds at most 4 slots
/// per queued frame, or [`FLOW_SLOTS`] (amortized: a halving follows a quarter of the buffer's
/// frames taken). Called after each frame taken off a flow.
fn shrink(frames: &mut VecDeque<Queued>) {
    let cap = frames.capacity();
    if cap > FLOW_SLOTS && frames.len() <= cap / 4 {
        frames.shrink_to((cap / 2).max(FLOW_SLOTS));
    }
}

/// Takes the head of `flow`, dropping it if it waited longer than `--queue-delay`; says
/// whether CoDel may drop it (RFC 8289's `dodequeue`).
fn codel_head(
    flow: &mut Flow,
    now: Instant,
    p: &Params,
    drops: &mut Drops,
) -> Option<(Frame, bool)> {
    loop {
        let Some((frame, at)) = flow.frames.pop_front() else {
            flow.codel.first_above = None;
            return None;
        };
        shrink(&mut flow.frames);
        let c = cost(&frame);
        flow.bytes -= c;
        let sojourn = now.saturating_duration_since(at);
        if sojourn > p.delay {
            drops.expired += 1;
            drops.bytes += c;
            continue;
        }
        let codel = &mut flow.codel;
        if sojourn < p.target || flow.bytes <= MAX_PACKET {
            codel.first_above = None;
            return Some((frame, false));
        }
        let ok = match codel.first_above {
            None => {
                codel.first_above = Some(now + p.interval);
                false
            }
            Some(t) => now >= t,
        };
        return Some((frame, ok));
    }
}

/// The next drop due `count` drops into a dropping state: interval / √count after `t`.
fn control_law(t: Instant, count: u32, interval: Duration) -> Instant {
    t + interval.div_f64(f64::from(count.max(1)).sqrt())
}

/// CoDel's dequeue (RFC 8289, section 5.5): the next frame of `flow` to send, those CoDel
/// drops counted in `drops`.
fn codel_dequeue(flow: &mut Flow, now: Instant, p: &Params, drops: &mut Drops) -> Option<Frame> {
    let Some((mut frame, ok)) = codel_head(flow, now, p, drops) else {
        flow.codel.dropping = false;
        return None;
    };
    if flow.codel.dropping {
        if !ok {
            flow.codel.dropping = false;
            return Some(frame);
        }
        while flow.codel.drop_next.is_some_and(|t| now >= t) {
            shed(frame, drops);
            flow.codel.count += 1;
            match codel_head(flow, now, p, drops) {
                None => {
                    flow.codel.dropping = false;
                    return None;
                }
                Some((f, false)) => {
                    flow.codel.dropping = false;
                    return Some(f);
                }
                Some((f, true)) => {
                    frame = f;
                    let c = &mut flow.codel;
                    c.drop_next = c.drop_next.map(|t| control_law(t, c.count, p.interval));
                }
            }
        }
        return Some(frame);
    }
    if ok {
        shed(frame, drops);
        let next = codel_head(flow, now, p, drops);
        let c = &mut flow.codel;
        c.dropping = true;
        // Dropping again soon after the last episode: start from where it left off.
        let delta = c.count.saturating_sub(c.last_count);
        let recent = c
            .drop_next
            .is_some_and(|t| now.saturating_duration_since(t) < 16 * p.interval);
        c.count = if delta > 1 && recent { delta } else { 1 };
        c.drop_next = Some(control_law(now, c.count, p.interval));
        c.last_count = c.count;
        frame = next?.0;
    }
    Some(frame)
}

/// Counts a frame CoDel dropped.
fn shed(frame: Frame, drops: &mut Drops) {
    drops.aqm += 1;
    drops.bytes += cost(&frame);
}

#[cfg(test)]
pub(super) mod tests {
    use bytes::Bytes;

    use super::*;

    /// An IPv4 frame of `len` bytes from UDP port `sport` (others: the same); the queue's
    /// tests use it too.
    pub(in crate::port::queue) fn udp(sport: u16, len: usize) -> Frame {
        let mut d = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        d.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        d.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        d.extend_from_slice(&sport.to_be_bytes());
        d.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        d.resize(len.max(d.len()), 0);
        Frame::from(Bytes::from(d))
    }

    fn params() -> Params {
        Params {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn flows_hash_apart_and_truncated_frames_hash_without_panic() {
        let key = RandomState::new();
        let (a, b) = (udp(1000, 100), udp(1001, 100));
        assert_eq!(
            flow_hash(&key, &a.data),
            flow_hash(&key, &udp(1000, 200).data)
        );
        assert_ne!(flow_hash(&key, &a.data), flow_hash(&key, &b.data));
        // Every prefix of IPv4/UDP, IPv6, tagged and garbage frames.
        let mut v6 = vec![
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0, 0, 5, 0x86, 0xdd,
        ];
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 44, 64]);
        v6.extend_from_slice(&[0xfe; 32]);
        v6.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 1, 0, 80, 0, 80]);
        for data in [&a.data[..], &v6[..], &[0x81u8; 40][..], &[0xffu8; 64][..]] {
            for n in 0..=data.len() {
                let _ = flow_hash(&key, &data[..n]);
            }
        }
    }

    #[test]
    fn a_sparse_flow_goes_before_a_bulk_backlog() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let now = Instant::now();
        for _ in 0..100 {
            let f = udp(1000, 1514);
            fq.enqueue(flow_hash(&key, &f.data), f, now);
        }
        let mut drops = Drops::default();
        // The bulk flow is served once, then a sparse frame arrives: it goes next.
        assert!(fq.dequeue(now, &params(), &mut drops).is_some());
        let ping = udp(7, 98);
        fq.enqueue(flow_hash(&key, &ping.data), ping, now);
        let next = fq.dequeue(now, &params(), &mut drops).unwrap();
        assert_eq!(next.len(), 98);
        let mut n = 0;
        while fq.dequeue(now, &params(), &mut drops).is_some() {
            n += 1;
        }
        assert_eq!((n, fq.bytes(), drops.aqm), (99, 0, 0));
        assert!(fq.new.is_empty() && fq.old.is_empty());
        assert_eq!(fq.free.len(), fq.flows.len());
        assert!(fq.map.iter().all(|&m| m == 0));
    }

    #[test]
    fn codel_drops_while_the_sojourn_stays_above_target() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let p = params();
        let start = Instant::now();
        let mut drops = Drops::default();
        // A flow fed 2 frames per ms and drained at 1: its sojourn keeps growing.
        let mut sent = 0;
        for ms in 0..400u64 {
            let now = start + Duration::from_millis(ms);
            for _ in 0..2 {
                let f = udp(1000, 1000);
                fq.enqueue(flow_hash(&key, &f.data), f, now);
            }
            if fq.dequeue(now, &p, &mut drops).is_some() {
                sent += 1;
            }
            if ms < 100 {
                assert_eq!(drops.aqm, 0, "no drop within the first interval ({ms} ms)");
            }
        }
        assert!(drops.aqm > 0, "CoDel dropped");
        assert_eq!(drops.expired, 0);
        let left = fq.bytes();
        assert_eq!(
            left + drops.bytes + sent * cost(&udp(1000, 1000)),
            800 * cost(&udp(1000, 1000))
        );
    }

    #[test]
    fn a_flow_gives_back_its_buffer_as_it_empties_and_when_it_closes() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let now = Instant::now();
        for _ in 0..1000 {
            let f = udp(1000, 60);
            fq.enqueue(flow_hash(&key, &f.data), f, now);
        }
        assert!(fq.flows[0].frames.capacity() >= 1000);
        let mut drops = Drops::default();
        while fq.dequeue(now, &params(), &mut drops).is_some() {
            let frames = &fq.flows[0].frames;
            assert!(frames.capacity() <= (4 * frames.len()).max(FLOW_SLOTS));
        }
        // Closed: its entry is free, and holds no more than FLOW_COST charged for it.
        assert_eq!(fq.open_flows(), 0);
        assert!(fq.flows[0].frames.capacity() <= FLOW_SLOTS);
    }

    #[test]
    fn overflow_drops_level_the_fattest_flows() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let now = Instant::now();
        // Three flows in three buckets (the key is random: two ports may share one).
        let mut ports: Vec<u16> = Vec::new();
        for port in 1000.. {
            let b = |p: u16| bucket(flow_hash(&key, &udp(p, 60).data));
            if ports.iter().all(|&q| b(q) != b(port)) {
                ports.push(port);
            }
            if ports.len() == 3 {
                break;
            }
        }
        for (port, n) in ports.into_iter().zip([10, 5, 3]) {
            for _ in 0..n {
                let f = udp(port, 1000);
                fq.enqueue(flow_hash(&key, &f.data), f, now);
            }
        }
        let mut drops = Drops::default();
        let c = cost(&udp(1000, 1000));
        assert_eq!(fq.drop_fattest(8 * c, &mut drops), 8 * c);
        // 10, 5, 3 frames less 8, the fattest first down to the next one's size: 4, 3, 3
        // (whichever of the two larger ones paid last).
        let mut left: Vec<_> = fq.flows.iter().map(|f| f.frames.len()).collect();
        left.sort_unstable();
        assert_eq!(left, [3, 3, 4]);
        assert_eq!(fq.bytes(), 10 * c);
    }

    /// Feeds the flow of `f` 2 frames per ms and drains 1, from `start` for `ms` ms; returns
    /// the flow's CoDel count when CoDel first dropped, if it did.
    fn overload(fq: &mut Fq, key: &RandomState, start: Instant, ms: u64) -> Option<u32> {
        let (p, mut drops, mut first) = (params(), Drops::default(), None);
        for t in 0..ms {
            let now = start + Duration::from_millis(t);
            for _ in 0..2 {
                let f = udp(1000, 1000);
                fq.enqueue(flow_hash(key, &f.data), f, now);
            }
            fq.dequeue(now, &p, &mut drops);
            if drops.aqm > 0 && first.is_none() {
                let f =
                    &fq.flows[usize::from(fq.map[bucket(flow_hash(key, &udp(1000, 0).data))] - 1)];
                first = Some(f.codel.count);
            }
        }
        first
    }

    #[test]
    fn codel_resumes_where_it_left_off_when_a_flow_comes_back_soon() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let start = Instant::now();
        assert_eq!(overload(&mut fq, &key, start, 400), Some(1));
        // The flow's queue runs empty: it closes, its bucket keeps CoDel's count.
        let end = start + Duration::from_millis(400);
        let mut drops = Drops::default();
        while fq.dequeue(end, &params(), &mut drops).is_some() {}
        assert_eq!(fq.open_flows(), 0);
        // Back 100 ms later, as fast: CoDel starts from the count it had reached (RFC 8289's
        // re-entry), not from one drop per interval.
        let again = overload(&mut fq, &key, end + Duration::from_millis(100), 300);
        assert!(again.is_some_and(|count| count > 1), "{again:?}");
    }

    #[test]
    fn a_full_queue_drops_from_the_fattest_flow() {
        let key = RandomState::new();
        let mut fq = Fq::new();
        let now = Instant::now();
        for _ in 0..10 {
            let f = udp(1000, 1514);
            fq.enqueue(flow_hash(&key, &f.data), f, now);
        }
        let ping = udp(7, 98);
        fq.enqueue(flow_hash(&key, &ping.data), ping, now);
        let mut drops = Drops::default();
        let bulk = cost(&udp(1000, 1514));
        let freed = fq.drop_fattest(2 * bulk + 1, &mut drops);
        assert_eq!((drops.overflow, freed), (3, 3 * bulk));
        // The bulk flow, new too, sends its quantum (one frame), then the sparse one.
        assert_eq!(fq.dequeue(now, &params(), &mut drops).unwrap().len(), 1514);
        assert_eq!(fq.dequeue(now, &params(), &mut drops).unwrap().len(), 98);
    }
}
