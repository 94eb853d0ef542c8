//! The forwarding database: which port a (VLAN, MAC) was last seen on, and when.
//!
//! Entries age out `ageout` after their source address was last seen. Lookups treat an aged
//! entry as absent at once, so forwarding is exact even between sweeps; [`Fdb::expire`] removes
//! them for good and bounds memory. The clock is passed in, so the table is tested without
//! sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::frame::Mac;

/// A switch port number: 1, 2, 3… in the order ports are added, never reused.
pub type PortNo = u32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortNo,
    seen: Instant,
}

/// What [`Fdb::learn`] did, so callers can log (and mirror into other tables) only changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new (VLAN, MAC).
    New,
    /// Known on this port already; its age was reset.
    Refreshed,
    /// Was on another port (a station moved, or a loop).
    Moved { from: PortNo },
}

/// One row of `listFdb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbRow {
    pub vid: u16,
    pub mac: Mac,
    pub port: PortNo,
    pub age: Duration,
}

/// The learning table, keyed on (VLAN id, MAC).
#[derive(Debug)]
pub struct Fdb {
    ageout: Duration,
    table: HashMap<(u16, Mac), Entry>,
}

impl Fdb {
    pub fn new(ageout: Duration) -> Self {
        Fdb {
            ageout,
            table: HashMap::new(),
        }
    }

    pub fn ageout(&self) -> Duration {
        self.ageout
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.seen) <= self.ageout
    }

    /// Records that `mac` in `vid` was seen on `port` at `now`.
    ///
    /// Group addresses must not be passed in: the caller filters them, as only a station's own
    /// (individual) address says where it is.
    pub fn learn(&mut self, vid: u16, mac: Mac, port: PortNo, now: Instant) -> Learned {
        debug_assert!(!mac.is_multicast());
        let ageout = self.ageout;
        match self.table.insert((vid, mac), Entry { port, seen: now }) {
            Some(old) if now.saturating_duration_since(old.seen) > ageout => Learned::New,
            Some(old) if old.port == port => Learned::Refreshed,
            Some(old) => Learned::Moved { from: old.port },
            None => Learned::New,
        }
    }

    /// The port `mac` in `vid` lives on, unless unknown or aged out.
    pub fn lookup(&self, vid: u16, mac: Mac, now: Instant) -> Option<PortNo> {
        self.table
            .get(&(vid, mac))
            .filter(|e| self.live(e, now))
            .map(|e| e.port)
    }

    /// Forgets every entry on `port` (the port was removed); returns how many.
    pub fn flush_port(&mut self, port: PortNo) -> usize {
        let before = self.table.len();
        self.table.retain(|_, e| e.port != port);
        before - self.table.len()
    }

    /// Removes aged-out entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.table.len();
        let ageout = self.ageout;
        self.table
            .retain(|_, e| now.saturating_duration_since(e.seen) <= ageout);
        before - self.table.len()
    }

    /// Live entries sorted by VLAN, then MAC, as etherws 1.3 lists them.
    pub fn rows(&self, now: Instant) -> Vec<FdbRow> {
        let mut rows: Vec<FdbRow> = self
            .table
            .iter()
            .filter(|(_, e)| self.live(e, now))
            .map(|(&(vid, mac), e)| FdbRow {
                vid,
                mac,
                port: e.port,
                age: now.saturating_duration_since(e.seen),
            })
            .collect();
        rows.sort_by_key(|r| (r.vid, r.mac));
        rows
    }

    /// Number of entries, aged ones not yet swept included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn learns_refreshes_and_moves() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(300));
        assert_eq!(fdb.lookup(0, A, t0), None);
        assert_eq!(fdb.learn(0, A, 1, t0), Learned::New);
        assert_eq!(fdb.lookup(0, A, t0), Some(1));
        assert_eq!(fdb.learn(0, A, 1, t0 + SEC), Learned::Refreshed);
        assert_eq!(fdb.learn(0, A, 2, t0 + 2 * SEC), Learned::Moved { from: 1 });
        assert_eq!(fdb.lookup(0, A, t0 + 2 * SEC), Some(2));
    }

    #[test]
    fn vlans_are_separate() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(300));
        fdb.learn(10, A, 1, t0);
        fdb.learn(20, A, 2, t0);
        assert_eq!(fdb.lookup(10, A, t0), Some(1));
        assert_eq!(fdb.lookup(20, A, t0), Some(2));
        assert_eq!(fdb.lookup(0, A, t0), None);
        let rows = fdb.rows(t0);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].vid, rows[0].port), (10, 1));
        assert_eq!((rows[1].vid, rows[1].port), (20, 2));
    }

    #[test]
    fn ageout_hides_then_expires() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        fdb.learn(0, A, 1, t0);
        fdb.learn(0, B, 2, t0 + 5 * SEC);
        assert_eq!(fdb.lookup(0, A, t0 + 10 * SEC), Some(1));
        // Aged out: gone from lookups and listings before any sweep…
        assert_eq!(fdb.lookup(0, A, t0 + 11 * SEC), None);
        assert_eq!(fdb.rows(t0 + 11 * SEC).len(), 1);
        assert_eq!(fdb.rows(t0 + 11 * SEC)[0].age, 6 * SEC);
        // …and relearning it counts as new, not as a move.
        let mut again = Fdb::new(Duration::from_secs(10));
        again.learn(0, A, 1, t0);
        assert_eq!(again.learn(0, A, 2, t0 + 11 * SEC), Learned::New);
        // The sweep frees the memory.
        assert_eq!(fdb.expire(t0 + 11 * SEC), 1);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(300));
        fdb.learn(0, A, 1, t0);
        fdb.learn(5, A, 1, t0);
        fdb.learn(0, B, 2, t0);
        assert_eq!(fdb.flush_port(1), 2);
        assert_eq!(fdb.lookup(0, A, t0), None);
        assert_eq!(fdb.lookup(0, B, t0), Some(2));
    }

    #[test]
    fn rows_are_sorted_by_vlan_then_mac() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(300));
        fdb.learn(7, B, 1, t0);
        fdb.learn(7, A, 1, t0);
        fdb.learn(0, B, 2, t0);
        let keys: Vec<_> = fdb.rows(t0).iter().map(|r| (r.vid, r.mac)).collect();
        assert_eq!(keys, vec![(0, B), (7, A), (7, B)]);
    }
}
