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
