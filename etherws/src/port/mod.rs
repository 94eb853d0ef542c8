//! Ports: the things frames come from and go to.
//!
//! Every port kind implements [`Port`]: given a [`PortIo`], move frames between the device or
//! peer and the switch until either side is done. The data path is straight — a port's reader
//! hands what it read to [`Ingress::frames`], which takes the switch's forwarding decisions
//! under its lock and, once it is released, offers the frames to the chosen ports' queues
//! (bounded in bytes and in time, [`queue`]); each port's writer drains its own queue. A full
//! queue drops (and counts) instead of waiting, so one stalled peer never holds up the
//! others. Removing a port from the switch drops its queue's sender, which is how the
//! port's driver learns to close.

pub(crate) mod fd;
pub(crate) mod netdev;
pub(crate) mod queue;
pub(crate) mod quic;
pub(crate) mod tap;
pub(crate) mod websocket;

use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use crate::base::escape::Esc;
pub(crate) use crate::switch::Origin;
use crate::switch::fdb::PortNo;
use crate::switch::frame::Frame;
use crate::switch::{Decisions, PortKind, PortStat, QuicStat, Switch};
pub(crate) use queue::{Budget, Discipline, EgressRx, Queue, QueueLimits};

/// Largest frame read from a device or peer: a GSO super-frame's 65535-byte IP packet behind
/// an Ethernet header and a VLAN tag (also more than the largest MTU, 65535, allows).
pub(crate) const MAX_FRAME: usize = 65535 + 14 + 4;

/// The switch as shared by the port tasks and the control API, with what new ports' queues
/// are bounded by.
pub(crate) struct Core {
    switch: Mutex<Switch<Queue>>,
    queues: QueueLimits,
    budget: Arc<Budget>,
}

/// The switch as the port tasks and the control API hold it.
pub(crate) type SharedSwitch = Arc<Core>;

impl Core {
    pub(crate) fn new(switch: Switch<Queue>, queues: QueueLimits) -> SharedSwitch {
        Arc::new(Core {
            switch: Mutex::new(switch),
            budget: Arc::new(Budget::new(queues.budget)),
            queues,
        })
    }

    /// The bytes all ports' queues hold, against `--queue-budget`.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }
}

/// Locks the switch. A panic while holding the lock cannot leave the tables half-updated in a
/// way that matters more than losing the switch, so poisoning is ignored.
pub(crate) fn lock(switch: &SharedSwitch) -> MutexGuard<'_, Switch<Queue>> {
    switch.switch.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frames switched per lock of the switch: a batch read from a device is decided under one
/// lock, then emitted after it.
const DECIDE_BATCH: usize = 64;

/// Destinations decided per lock at most: a batch of broadcasts on a switch of 10,000 ports
/// would otherwise decide 640,000 destinations at once (megabytes, which each thread's
/// reused [`Decisions`] would keep afterwards) and hold the lock that long.
const DECIDE_FANOUT: usize = 4096;

/// Where a port delivers the frames it receives.
#[derive(Clone)]
pub(crate) struct Ingress {
    switch: SharedSwitch,
    port: PortNo,
}

thread_local! {
    /// The decisions of the batch being switched. Each thread keeps its own from batch to
    /// batch, whichever port's, so that switching allocates nothing once it has grown (it is
    /// bounded by [`DECIDE_BATCH`] frames and about [`DECIDE_FANOUT`] destinations); emitting
    /// empties it, so it holds no frame and no port's queue in between.
    static DECISIONS: Cell<Decisions<Queue>> = Cell::new(Decisions::default());
}

impl Ingress {
    /// Switches received frames: the forwarding decisions of up to [`DECIDE_BATCH`] frames
    /// are taken under one lock of the switch, and the frames offered to their queues after
    /// it is released, so a flood to many ports never holds the switch.
    pub(crate) fn frames<F: Into<Frame>>(&self, frames: impl IntoIterator<Item = F>) {
        let mut frames = frames.into_iter().peekable();
        // Taken, not borrowed: a call within this one (there is none) would start afresh.
        let mut decided = DECISIONS.take();
        while frames.peek().is_some() {
            let now = Instant::now();
            {
                let mut sw = lock(&self.switch);
                for frame in frames.by_ref().take(DECIDE_BATCH) {
                    if let Err(e) = sw.decide(self.port, frame.into(), now, &mut decided) {
                        tracing::debug!(port = self.port, "dropped received frame: {e}");
                    }
                    if decided.fanout() >= DECIDE_FANOUT {
                        break;
                    }
                }
            }
            decided.emit();
        }
        DECISIONS.set(decided);
    }

    pub(crate) fn port(&self) -> PortNo {
        self.port
    }

    /// Records whether the port exchanges super-frames with its device or peer (`listPort`
    /// shows it).
    pub(crate) fn set_super_frames(&self, on: bool) {
        lock(&self.switch).set_super_frames(self.port, on);
    }

    /// Records what a WebSocket session runs with (`listPort` shows it): super-frames or not,
    /// and its TCP congestion control algorithm.
    pub(crate) fn set_session(&self, super_frames: bool, congestion: Option<Arc<str>>) {
        let mut sw = lock(&self.switch);
        sw.set_super_frames(self.port, super_frames);
        sw.set_congestion(self.port, congestion);
    }

    /// Records a QUIC session's connection state (`listPort` shows it).
    pub(crate) fn set_quic(&self, quic: QuicStat) {
        lock(&self.switch).set_quic(self.port, quic);
    }

    /// Counts `n` received TCP segments that software GRO appended to an earlier one
    /// (`rx_gro_merged`).
    pub(crate) fn gro_merged(&self, n: u64) {
        if n > 0 {
            lock(&self.switch).count_gro_merged(self.port, n);
        }
    }

    /// Counts `n` frames the port's device or socket dropped before they were read
    /// (`rx_dropped`).
    pub(crate) fn rx_dropped(&self, n: u64) {
        if n > 0 {
            lock(&self.switch).count_rx_dropped(self.port, n);
        }
    }

    /// Tells the switch this port's link went down (true: came back).
    pub(crate) fn set_link(&self, up: bool) {
        lock(&self.switch).set_link(self.port, up);
    }
}

/// How often a netdev port reads what its packet socket dropped (`rx_dropped`): one
/// `getsockopt` a port, so `listPort` and `/metrics` are at most a quarter of a second late.
pub(crate) const SOCKET_DROPS_EVERY: Duration = Duration::from_millis(250);

/// How often a TAP port reads what its device dropped (a netlink request a port).
pub(crate) const DEVICE_DROPS_EVERY: Duration = Duration::from_secs(1);

/// Every `every`, counts what `dropped` says the port's device or socket dropped since its
/// last call (a packet socket's `PACKET_STATISTICS`, a TAP's `tx_dropped`), until the port's
/// task ends (it runs beside the port's I/O and never returns).
pub(crate) async fn count_rx_dropped<F>(
    ingress: &Ingress,
    every: Duration,
    mut dropped: impl FnMut() -> F,
) where
    F: Future<Output = u64>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ingress.rx_dropped(dropped().await);
    }
}

/// A port's two ends: frames to transmit, and where received frames go.
pub(crate) struct PortIo {
    /// Frames the switch wants sent out of this port; ends when the port is removed.
    pub(crate) egress: EgressRx,
    pub(crate) ingress: Ingress,
}

/// A kind of port: one device or connection attached to the switch.
pub(crate) trait Port: Send + 'static {
    /// Moves frames both ways until the peer or device goes away (an error or `Ok`) or the
    /// switch removes the port (`io.egress` ends; the port should then close politely).
    fn run(self, io: PortIo) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Adds `port` to the switch and runs it on its own task; the port is removed from the switch
/// (and its FDB entries forgotten) when it stops for any reason.
pub(crate) fn attach<P: Port>(
    switch: &SharedSwitch,
    kind: PortKind,
    target: String,
    port: P,
) -> PortStat {
    attach_from(switch, kind, target, Origin::default(), port)
}

/// [`attach`] for a port a client connected: its stations count against its address.
pub(crate) fn attach_from<P: Port>(
    switch: &SharedSwitch,
    kind: PortKind,
    target: String,
    origin: Origin,
    port: P,
) -> PortStat {
    // Flow queues toward WebSocket peers: a device's queue stays in order (its frames go
    // to the host's own stack, which keeps its own queues).
    let limits = match kind {
        PortKind::Server | PortKind::Client => switch.queues,
        PortKind::Tap | PortKind::Netdev => QueueLimits {
            discipline: Discipline::Fifo,
            ..switch.queues
        },
    };
    let (queue, rx) = queue::queue(limits, switch.budget.clone());
    let stat = {
        let mut sw = lock(switch);
        let no = sw.add_port_from(kind, target, origin, queue);
        sw.port(no).expect("port just added")
    };
    match &stat.user {
        Some(user) => {
            tracing::info!(port = stat.port, kind = kind.as_str(), target = %Esc(&stat.target), user = %Esc(user), "port added")
        }
        None => {
            tracing::info!(port = stat.port, kind = kind.as_str(), target = %Esc(&stat.target), "port added")
        }
    }
    let io = PortIo {
        egress: rx,
        ingress: Ingress {
            switch: switch.clone(),
            port: stat.port,
        },
    };
    let switch = switch.clone();
    let no = stat.port;
    tasks().spawn(async move {
        let result = port.run(io).await;
        let removed = lock(&switch).remove_port(no);
        match (result, removed) {
            (Err(e), _) => tracing::warn!(port = no, "disconnected: {e:#}"),
            (Ok(()), Some(stat)) => {
                tracing::info!(port = no, target = %Esc(&stat.target), "disconnected")
            }
            (Ok(()), None) => tracing::info!(port = no, "removed"),
        }
    });
    stat
}

/// The runtime that moves frames: ports run there whoever adds them. The control API may run
/// on a thread of its own (so that its latency does not follow the data path's load); what it
/// does that creates ports goes through [`on_data_path`].
static DATA_PATH: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Makes the current runtime the data path's (called once, by `etherws sw`).
pub(crate) fn set_data_path() {
    let _ = DATA_PATH.set(tokio::runtime::Handle::current());
}

/// Runs `fut` on the data path's runtime (here, if this is it, or none was set) and waits.
pub(crate) async fn on_data_path<F>(fut: F) -> Result<F::Output, tokio::task::JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match DATA_PATH.get() {
        Some(h) if tokio::runtime::Handle::try_current().map(|c| c.id()).ok() != Some(h.id()) => {
            h.spawn(fut).await
        }
        _ => Ok(fut.await),
    }
}

/// Every port's task, so that shutdown can wait for them to say goodbye (a WebSocket's close
/// frame, a TAP device's removal) — for as long as that takes and no longer.
pub(crate) fn tasks() -> &'static TaskTracker {
    static TASKS: std::sync::OnceLock<TaskTracker> = std::sync::OnceLock::new();
    TASKS.get_or_init(TaskTracker::new)
}

/// Sweeps aged-out FDB entries so the table's memory follows the live stations.
pub(crate) async fn expire_loop(switch: SharedSwitch, ageout: Duration) {
    let period = (ageout / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = lock(&switch).expire(Instant::now());
        if n > 0 {
            tracing::debug!(entries = n, "fdb aged out");
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::switch::frame::tests::frame;

    #[tokio::test]
    async fn frames_are_switched_in_batches_and_no_queue_is_kept_after() {
        let core = Core::new(
            Switch::new(Duration::from_secs(300)),
            QueueLimits::default(),
        );
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (q, rx) = queue::queue(core.queues, core.budget.clone());
            lock(&core).add_port(PortKind::Tap, "t".into(), q);
            rxs.push(rx);
        }
        let ingress = Ingress {
            switch: core.clone(),
            port: 1,
        };
        // More than a batch of broadcasts, a runt among them, then one to a known station.
        let bcast = Bytes::from(frame([0xff; 6], [2, 0, 0, 0, 0, 1], None));
        let mut frames = vec![bcast; DECIDE_BATCH * 2 + 1];
        frames.insert(3, Bytes::from_static(&[0; 10]));
        ingress.frames(frames);
        let to_1 = frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], None);
        Ingress { port: 2, ..ingress }.frames([Bytes::from(to_1)]);
        let (ports, frames_in) = (lock(&core).port(1), DECIDE_BATCH * 2 + 1);
        assert_eq!(
            ports.map(|p| (p.rx, p.rx_invalid, p.tx)),
            Some((frames_in as u64, 1, 1))
        );
        // Removing the ports closes their queues: the decisions kept nothing of them.
        for n in 1..=3 {
            lock(&core).remove_port(n);
        }
        let mut got = Vec::new();
        for mut rx in rxs {
            let mut n = 0;
            let closed = Duration::from_secs(10);
            while let Some(_frame) = tokio::time::timeout(closed, rx.recv())
                .await
                .expect("closed")
            {
                n += 1;
            }
            got.push(n);
        }
        assert_eq!(got, vec![1, frames_in, frames_in]);
    }
}
