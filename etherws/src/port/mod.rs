//! Ports: the things frames come from and go to.
//!
//! Every port kind implements [`Port`]: given a [`PortIo`], move frames between the device or
//! peer and the switch until either side is done. The data path is straight — a port's reader
//! hands each frame to [`Ingress::frame`], which runs the switch's forwarding decision and
//! offers the frame to the chosen ports' bounded queues; each port's writer drains its own
//! queue. A full queue drops (and counts) instead of waiting, so one stalled peer never holds
//! up the others. Removing a port from the switch drops its queue's sender, which is how the
//! port's driver learns to close.

pub mod fd;
pub mod gso;
pub mod netdev;
pub mod proxy;
pub mod tap;
pub mod ws;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::escape::Esc;
use crate::fdb::PortNo;
pub use crate::switch::Origin;
use crate::switch::{Egress, PortKind, PortStat, Switch};

/// Frames a port may have queued for transmission before further ones are dropped.
pub const QUEUE_FRAMES: usize = 512;

/// Largest frame read from a device: the largest an MTU of 65535 allows, plus a VLAN tag.
pub const MAX_FRAME: usize = 65536 + 4;

/// A port's transmit queue as the switch core sees it.
pub struct Queue(mpsc::Sender<Bytes>);

impl Queue {
    pub fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Queue(tx)
    }
}

impl Egress for Queue {
    fn offer(&self, frame: &Bytes) -> bool {
        self.0.try_send(frame.clone()).is_ok()
    }
}

/// The switch as shared by the port tasks and the control API.
pub type SharedSwitch = Arc<Mutex<Switch<Queue>>>;

/// Locks the switch. A panic while holding the lock cannot leave the tables half-updated in a
/// way that matters more than losing the switch, so poisoning is ignored.
pub fn lock(switch: &SharedSwitch) -> MutexGuard<'_, Switch<Queue>> {
    switch.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a port delivers the frames it receives.
pub struct Ingress {
    switch: SharedSwitch,
    port: PortNo,
}

impl Ingress {
    /// Switches one received frame.
    pub fn frame(&self, frame: Bytes) {
        if let Err(e) = lock(&self.switch).receive(self.port, &frame, Instant::now()) {
            tracing::debug!(port = self.port, "dropped received frame: {e}");
        }
    }

    pub fn port(&self) -> PortNo {
        self.port
    }

    /// Tells the switch this port's link went down (true: came back).
    pub fn set_link(&self, up: bool) {
        lock(&self.switch).set_link(self.port, up);
    }
}

/// A port's two ends: frames to transmit, and where received frames go.
pub struct PortIo {
    /// Frames the switch wants sent out of this port; ends when the port is removed.
    pub egress: mpsc::Receiver<Bytes>,
    pub ingress: Ingress,
}

/// A kind of port: one device or connection attached to the switch.
pub trait Port: Send + 'static {
    /// Moves frames both ways until the peer or device goes away (an error or `Ok`) or the
    /// switch removes the port (`io.egress` ends; the port should then close politely).
    fn run(self, io: PortIo) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Adds `port` to the switch and runs it on its own task; the port is removed from the switch
/// (and its FDB entries forgotten) when it stops for any reason.
pub fn attach<P: Port>(switch: &SharedSwitch, kind: PortKind, target: String, port: P) -> PortStat {
    attach_from(switch, kind, target, Origin::default(), port)
}

/// [`attach`] for a port a client connected: its stations count against its address.
pub fn attach_from<P: Port>(
    switch: &SharedSwitch,
    kind: PortKind,
    target: String,
    origin: Origin,
    port: P,
) -> PortStat {
    let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
    let stat = {
        let mut sw = lock(switch);
        let no = sw.add_port_from(kind, target, origin, Queue::new(tx));
        sw.port(no).cloned().expect("port just added")
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

/// Every port's task, so that shutdown can wait for them to say goodbye (a WebSocket's close
/// frame, a TAP device's removal) — for as long as that takes and no longer.
pub fn tasks() -> &'static TaskTracker {
    static TASKS: std::sync::OnceLock<TaskTracker> = std::sync::OnceLock::new();
    TASKS.get_or_init(TaskTracker::new)
}

/// Sweeps aged-out FDB entries so the table's memory follows the live stations.
pub async fn expire_loop(switch: SharedSwitch, ageout: Duration) {
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
