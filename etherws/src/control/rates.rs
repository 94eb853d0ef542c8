//! The status page's memory between two polls: the last reading of every port's counters, the
//! rates it gave (frames/s and bits/s), and the buffers of `statusSummary`'s pass over the
//! ports (control/summary.rs), kept to be reused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::switch::fdb::PortNo;
use crate::switch::{PortKind, PortStat};

/// Readings closer together than this reuse the last rates.
const RATE_WINDOW: Duration = Duration::from_millis(1000);

/// Frame and byte counters of a port, in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) rx: u64,
    pub(super) tx: u64,
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
}

impl Counts {
    pub(super) fn of(s: &PortStat) -> Counts {
        Counts {
            rx: s.rx,
            tx: s.tx,
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
        }
    }
}

/// Per second, from two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(super) struct Rates {
    pub(super) rx_fps: f64,
    pub(super) tx_fps: f64,
    pub(super) rx_bps: f64,
    pub(super) tx_bps: f64,
}

impl Rates {
    fn between(old: Counts, new: Counts, secs: f64) -> Rates {
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Rates {
            rx_fps: per(old.rx, new.rx),
            tx_fps: per(old.tx, new.tx),
            rx_bps: 8.0 * per(old.rx_bytes, new.rx_bytes),
            tx_bps: 8.0 * per(old.tx_bytes, new.tx_bytes),
        }
    }

    pub(super) fn add(&mut self, o: &Rates) {
        self.rx_fps += o.rx_fps;
        self.tx_fps += o.tx_fps;
        self.rx_bps += o.rx_bps;
        self.tx_bps += o.tx_bps;
    }
}

/// What the pass keeps of a port.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) port: PortNo,
    pub(super) kind: PortKind,
    /// 0 up, 1 down, 2 blocked by the loop guard, 3 shut.
    pub(super) state: u8,
    pub(super) target: Arc<str>,
    pub(super) user: Option<Arc<str>>,
    pub(super) path: Option<Arc<str>>,
    pub(super) counts: Counts,
    pub(super) drops: u64,
    pub(super) queued: u64,
    pub(super) rates: Option<Rates>,
}

/// Every drop counter of a port, added up (the page's "total" column).
pub(super) fn drops(s: &PortStat) -> u64 {
    s.rx_dropped
        + s.rx_invalid
        + s.rx_oversize
        + s.storm_dropped
        + s.macs_refused
        + s.tx_dropped
        + s.tx_expired
        + s.tx_aqm_dropped
        + s.loop_dropped
        + s.vlan_dropped
        + s.rate_in_dropped
        + s.rate_out_dropped
        + s.guard.total()
}

impl Entry {
    pub(super) fn of(s: &PortStat, now: Instant) -> Entry {
        let state = if s.shut {
            3
        } else if s.loop_blocked(now) {
            2
        } else if s.link_up {
            0
        } else {
            1
        };
        Entry {
            port: s.port,
            kind: s.kind,
            state,
            target: s.target.clone(),
            user: s.user.clone(),
            path: s.path.clone(),
            counts: Counts::of(s),
            drops: drops(s),
            queued: s.queued_bytes,
            rates: None,
        }
    }
}

/// The last reading of the counters and the rates it gave, and the pass's buffers.
#[derive(Debug, Default)]
pub(super) struct Memo {
    pub(super) at: Option<Instant>,
    /// The counters read then, by port number (ascending).
    pub(super) prev: Vec<(PortNo, Counts)>,
    /// The rates computed then, by port number (ascending); empty before two readings.
    pub(super) rates: Vec<(PortNo, Rates)>,
    pub(super) entries: Vec<Entry>,
    pub(super) order: Vec<u32>,
}

impl Memo {
    /// Gives `entries` (by port number) their rates: new ones if the last reading is a
    /// [`RATE_WINDOW`] old, else those computed then.
    pub(super) fn rate(&mut self, now: Instant) {
        let due = self
            .at
            .is_none_or(|at| now.duration_since(at) >= RATE_WINDOW);
        if due {
            let secs = self
                .at
                .map(|at| now.duration_since(at).as_secs_f64())
                .filter(|&s| s > 0.0);
            self.rates.clear();
            if let Some(secs) = secs {
                let mut old = self.prev.iter().peekable();
                for e in &self.entries {
                    while old.next_if(|(p, _)| *p < e.port).is_some() {}
                    if let Some((_, c)) = old.next_if(|(p, _)| *p == e.port) {
                        self.rates
                            .push((e.port, Rates::between(*c, e.counts, secs)));
                    }
                }
            }
            self.prev.clear();
            self.prev
                .extend(self.entries.iter().map(|e| (e.port, e.counts)));
            self.at = Some(now);
        }
        let mut rates = self.rates.iter().peekable();
        for e in &mut self.entries {
            while rates.next_if(|(p, _)| *p < e.port).is_some() {}
            e.rates = rates.next_if(|(p, _)| *p == e.port).map(|(_, r)| *r);
        }
    }
}

/// The status page's memory between two polls, shared by every page open on the switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusMemo(pub(super) Arc<Mutex<Memo>>);

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A server port's entry with `rx` frames of 100 bytes received.
    pub(in crate::control) fn entry(
        port: PortNo,
        target: &str,
        user: Option<&str>,
        rx: u64,
    ) -> Entry {
        Entry {
            port,
            kind: PortKind::Server,
            state: 0,
            target: target.into(),
            user: user.map(Into::into),
            path: None,
            counts: Counts {
                rx,
                tx: 0,
                rx_bytes: rx * 100,
                tx_bytes: 0,
            },
            drops: 0,
            queued: 0,
            rates: None,
        }
    }

    #[test]
    fn rates_come_from_two_readings_a_window_apart() {
        let t0 = Instant::now();
        let mut m = Memo {
            entries: vec![entry(1, "a", None, 10), entry(3, "b", None, 0)],
            ..Memo::default()
        };
        m.rate(t0);
        assert!(m.entries.iter().all(|e| e.rates.is_none()));
        // Too soon: still none; port 2 appeared, port 3 went.
        m.entries = vec![entry(1, "a", None, 20), entry(2, "c", None, 5)];
        m.rate(t0 + Duration::from_millis(500));
        assert!(m.entries.iter().all(|e| e.rates.is_none()));
        m.entries = vec![entry(1, "a", None, 30), entry(2, "c", None, 5)];
        m.rate(t0 + Duration::from_secs(2));
        let r = m.entries[0].rates.unwrap();
        assert_eq!(r.rx_fps, 10.0);
        assert_eq!(r.rx_bps, 8000.0);
        assert!(m.entries[1].rates.is_none(), "port 2 was not read then");
        // Within the window the same rates are given again.
        m.rate(t0 + Duration::from_millis(2500));
        assert_eq!(m.entries[0].rates, Some(r));
    }
}
