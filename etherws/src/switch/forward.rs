//! Forwarding decisions: where received frames go, decided under the switch's lock and
//! carried out after it, so the lock is never held while frames are offered to queues.
//!
//! [`Decisions`] is a buffer the caller keeps and reuses batch after batch: one list of
//! frames, one of the ports each goes to. Once they have grown, deciding where a batch of
//! frames goes allocates nothing, however many ports a flood reaches.

use std::time::Instant;

use crate::switch::fdb::PortNo;
use crate::switch::frame::Frame;
use crate::switch::policy::Edit;
use crate::switch::ports::Egress;

/// One port a frame goes out of, and what it needs first.
pub(crate) struct Target<E> {
    pub(crate) port: PortNo,
    /// The port's queue, cloned so that it is offered the frame once the switch is unlocked.
    pub(crate) egress: E,
    pub(crate) edit: Edit,
}

/// A frame, and how many of the targets (following those of the frames before it) it goes to.
struct Decided {
    frame: Frame,
    now: Instant,
    fanout: usize,
}

/// Where frames go: decided under the switch's lock by [`Switch::decide`], carried out after
/// it by [`Decisions::emit`], which empties it for the next batch (keeping the memory).
///
/// [`Switch::decide`]: crate::switch::Switch::decide
pub(crate) struct Decisions<E> {
    frames: Vec<Decided>,
    targets: Vec<Target<E>>,
}

impl<E> Default for Decisions<E> {
    fn default() -> Self {
        Decisions {
            frames: Vec::new(),
            targets: Vec::new(),
        }
    }
}

impl<E: Egress> Decisions<E> {
    /// How many ports the frames decided so far go to, all together.
    pub(crate) fn fanout(&self) -> usize {
        self.targets.len()
    }

    /// Where the targets of the frame being decided start (see [`Decisions::decided`]).
    pub(crate) fn start(&self) -> usize {
        self.targets.len()
    }

    /// The targets chosen since `start`.
    pub(crate) fn since(&self, start: usize) -> &[Target<E>] {
        &self.targets[start..]
    }

    /// Adds a target to the frame being decided.
    pub(crate) fn add(&mut self, target: Target<E>) {
        self.targets.push(target);
    }

    /// Closes the decision on `frame`: it goes to the targets added since `start` (none: it
    /// is dropped now).
    pub(crate) fn decided(&mut self, frame: Frame, now: Instant, start: usize) {
        let fanout = self.targets.len() - start;
        if fanout > 0 {
            self.frames.push(Decided { frame, now, fanout });
        }
    }

    /// Offers each frame to its ports' egresses (which count what they take or drop), tagged
    /// or untagged as each port wants: each variant of a frame is made once. Leaves the
    /// decisions empty: no frame and no egress is kept.
    pub(crate) fn emit(&mut self) {
        let mut targets = self.targets.drain(..);
        for Decided { frame, now, fanout } in self.frames.drain(..) {
            let (mut tagged, mut untagged) = (None, None);
            for Target { egress, edit, .. } in targets.by_ref().take(fanout) {
                let f = match edit {
                    Edit::AsIs => &frame,
                    Edit::Tag(v) => &*tagged.get_or_insert_with(|| frame.with_tag(v)),
                    Edit::Untag => &*untagged.get_or_insert_with(|| frame.without_tag()),
                };
                egress.offer(f, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use bytes::Bytes;

    use super::*;
    use crate::switch::frame::Header;
    use crate::switch::frame::tests::frame;
    use crate::switch::ports::TxCounters;

    /// What egresses were offered: (the egress's name, the frame's VLAN tag if any).
    type Offers = Rc<RefCell<Vec<(u8, Option<u16>)>>>;

    /// Records what it was offered in the log it shares with the others.
    #[derive(Clone)]
    struct Log(Offers, u8);

    impl Egress for Log {
        fn offer(&self, frame: &Frame, _now: Instant) -> bool {
            let h = Header::parse(&frame.data).unwrap();
            self.0
                .borrow_mut()
                .push((self.1, h.tagged.then_some(h.vid)));
            true
        }

        fn counters(&self) -> TxCounters {
            TxCounters::default()
        }
    }

    #[test]
    fn each_frame_goes_to_its_own_targets_as_each_wants_it() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let port = |n: u8, edit| Target {
            port: PortNo::from(n),
            egress: Log(log.clone(), n),
            edit,
        };
        let f = |tci| Frame::from(Bytes::from(frame([0xff; 6], [2, 0, 0, 0, 0, 1], tci)));
        let now = Instant::now();
        let mut d = Decisions::default();
        for round in 0..2 {
            let start = d.start();
            d.add(port(1, Edit::Tag(7)));
            d.add(port(2, Edit::AsIs));
            d.add(port(3, Edit::Tag(7)));
            d.decided(f(None), now, start);
            // A frame with no target is dropped at once.
            d.decided(f(None), now, d.start());
            let start = d.start();
            d.add(port(4, Edit::Untag));
            assert_eq!(d.since(start).len(), 1);
            d.decided(f(Some(5)), now, start);
            assert_eq!(d.fanout(), 4);
            d.emit();
            assert_eq!(d.fanout(), 0, "round {round}");
            let want = [(1, Some(7)), (2, None), (3, Some(7)), (4, None)];
            assert_eq!(*log.borrow(), want);
            log.borrow_mut().clear();
        }
        // Emitted decisions keep no egress.
        assert_eq!(Rc::strong_count(&log), 1);
    }
}
