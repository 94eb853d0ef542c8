//! The forwarding database: which port a (VLAN, MAC) was last seen on, and when.
//!
//! Entries age out `ageout` after their source address was last seen. Lookups treat an aged
//! entry as absent at once, so forwarding is exact even between sweeps; [`Fdb::expire`] removes
//! them for good and bounds memory. The clock is passed in, so the table is tested without
//! sleeping.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::switch::frame::Mac;

/// A switch port number: 1, 2, 3… in the order ports are added, never reused.
pub(crate) type PortNo = u32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortNo,
    seen: Instant,
    /// The port the station was first learned on, while it stayed live: moving back there is
    /// no sign of a loop through that port (see [`Learned::Moved`]).
    home: PortNo,
    /// The first station of an untrusted port: it does not age out while the port lives, so
    /// that a quiet client's address cannot be taken over once it has gone quiet.
    sticky: bool,
}

/// What port security asks of a port's learning ([`Fdb::learn_as`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Learning {
    /// An untrusted port takes over no station that lives on another port, and its first
    /// station is sticky.
    pub(crate) untrusted: bool,
    /// The port's own limit on its stations (beyond [`MacLimits`]): a station over it is not
    /// learned, and its frames are dropped by the caller.
    pub(crate) max_macs: Option<usize>,
    /// A port whose stations an untrusted port may take over all the same: the same client's
    /// older connection.
    pub(crate) successor_of: Option<PortNo>,
}

/// What [`Fdb::learn`] did, so callers can log (and mirror into other tables) only changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A new (VLAN, MAC).
    New,
    /// Known on this port already; its age was reset.
    Refreshed,
    /// Was on another port (a station moved, or a loop). `home`: it came back to the port it
    /// was first learned on, so the port that took it over is the one to suspect, not this one.
    Moved { from: PortNo, home: bool },
    /// New, in a full table: room was made by forgetting `victim`, a station of the owner
    /// holding the most entries (on port `from`).
    Evicted { victim: (u16, Mac), from: PortNo },
    /// Not learned: the port, its owner or the whole table holds as many addresses as allowed.
    /// Frames to it are flooded instead, which is safe, merely less efficient.
    Refused,
    /// Not learned: an untrusted port sent the address of a station living on port `owner`.
    /// The caller drops the frame: no port takes over another's station.
    Spoofed { owner: PortNo },
    /// Not learned: a new station over the port's own `max_macs`. The caller drops the frame.
    OverPortLimit,
}

/// How many addresses the table may hold, so a flood of random source MACs cannot grow memory
/// without bound or push out everyone else's stations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MacLimits {
    pub(crate) per_port: usize,
    /// Per owner: all the WebSocket connections from one client address together (any other
    /// port is an owner of its own).
    pub(crate) per_addr: usize,
    pub(crate) total: usize,
}

impl Default for MacLimits {
    fn default() -> Self {
        MacLimits {
            per_port: 4096,
            per_addr: 4096,
            total: 65536,
        }
    }
}

/// Who a port's stations count against: the client address of an incoming WebSocket
/// connection, or the port itself. Ordered only so that [`Ranking`] breaks ties one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Owner {
    Addr(IpAddr),
    Port(PortNo),
}

/// One row of `listFdb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdbRow {
    pub(crate) vid: u16,
    pub(crate) mac: Mac,
    pub(crate) port: PortNo,
    pub(crate) age: Duration,
}

/// The learning table, keyed on (VLAN id, MAC).
///
/// When the table is full, a station new to a port whose owner holds less than its share is
/// still learned: it replaces a station of the owner holding the most entries. So one client
/// address filling the table (up to `per_addr`) or many filling it together can never stop the
/// switch from learning an honest host, whose unicast would otherwise be flooded — to them.
#[derive(Debug)]
pub(crate) struct Fdb {
    ageout: Duration,
    limits: MacLimits,
    table: HashMap<(u16, Mac), Entry>,
    /// The keys on each port, kept in step with `table`: counts for the limits, and a station
    /// to evict without scanning the table.
    by_port: HashMap<PortNo, HashSet<(u16, Mac)>>,
    /// Owner of each port that is not its own.
    owners: HashMap<PortNo, Owner>,
    /// Entries per owner.
    per_owner: HashMap<Owner, usize>,
    /// The same counts in order, so the victim of an eviction is found without a scan.
    ranking: Ranking,
}

/// The owners ordered by how many entries they hold, and each owner's ports by how many they
/// hold: kept in step with [`Fdb`]'s counts (an owner or port holding none is absent), so that
/// the biggest holder and its biggest port are the last of their sets, not the result of a
/// scan under the switch's lock. Ties go to the greatest owner, then the greatest port number.
#[derive(Debug, Default)]
struct Ranking {
    owners: BTreeSet<(usize, Owner)>,
    ports: BTreeSet<(Owner, usize, PortNo)>,
}

impl Ranking {
    /// `owner` held `before` entries and now holds `after`.
    fn owner_count(&mut self, owner: Owner, before: usize, after: usize) {
        if before > 0 {
            self.owners.remove(&(before, owner));
        }
        if after > 0 {
            self.owners.insert((after, owner));
        }
    }

    /// `port` (of `owner`) held `before` entries and now holds `after`.
    fn port_count(&mut self, owner: Owner, port: PortNo, before: usize, after: usize) {
        if before > 0 {
            self.ports.remove(&(owner, before, port));
        }
        if after > 0 {
            self.ports.insert((owner, after, port));
        }
    }

    /// The owner holding the most entries, and how many.
    fn richest(&self) -> Option<(Owner, usize)> {
        self.owners.last().map(|&(n, owner)| (owner, n))
    }

    /// The port of `owner` holding the most entries.
    fn biggest_port(&self, owner: Owner) -> Option<PortNo> {
        let range = (owner, 0, PortNo::MIN)..=(owner, usize::MAX, PortNo::MAX);
        self.ports
            .range(range)
            .next_back()
            .map(|&(_, _, port)| port)
    }
}

impl Fdb {
    #[cfg(test)]
    pub(crate) fn new(ageout: Duration) -> Self {
        Self::with_limits(ageout, MacLimits::default())
    }

    pub(crate) fn with_limits(ageout: Duration, limits: MacLimits) -> Self {
        Fdb {
            ageout,
            limits,
            table: HashMap::new(),
            by_port: HashMap::new(),
            owners: HashMap::new(),
            per_owner: HashMap::new(),
            ranking: Ranking::default(),
        }
    }

    /// Takes new limits (a reload): they apply to what is learned from now on; stations held
    /// beyond them stay until they age out or their port goes.
    pub(crate) fn set_limits(&mut self, limits: MacLimits) {
        self.limits = limits;
    }

    /// Counts the stations of `port` against the client address `addr` from now on (call
    /// before it learns anything).
    pub(crate) fn set_owner(&mut self, port: PortNo, addr: IpAddr) {
        // Counts already made against the port itself would stay there (and in the ranking).
        debug_assert_eq!(self.port_len(port), 0, "owner set after learning");
        self.owners.insert(port, Owner::Addr(addr));
    }

    fn owner(&self, port: PortNo) -> Owner {
        self.owners.get(&port).copied().unwrap_or(Owner::Port(port))
    }

    fn insert(&mut self, key: (u16, Mac), entry: Entry) {
        let keys = self.by_port.entry(entry.port).or_default();
        keys.insert(key);
        let now_on_port = keys.len();
        self.recount(entry.port, now_on_port - 1, now_on_port);
        self.table.insert(key, entry);
    }

    /// Forgets `key`'s bookkeeping on `port` (the table entry itself is the caller's).
    fn uncount(&mut self, key: (u16, Mac), port: PortNo) {
        let Some(keys) = self.by_port.get_mut(&port) else {
            return;
        };
        let before = keys.len();
        keys.remove(&key);
        let after = keys.len();
        if after == 0 {
            self.by_port.remove(&port);
        }
        self.recount(port, before, after);
    }

    /// `port` held `before` entries and now holds `after`: its owner's count and the ranking
    /// follow.
    fn recount(&mut self, port: PortNo, before: usize, after: usize) {
        if before == after {
            return;
        }
        let owner = self.owner(port);
        let had = self.owner_len(owner);
        let has = (had + after).saturating_sub(before);
        if has == 0 {
            self.per_owner.remove(&owner);
        } else {
            self.per_owner.insert(owner, has);
        }
        self.ranking.owner_count(owner, had, has);
        self.ranking.port_count(owner, port, before, after);
    }

    /// Entries (live or not yet swept) on `port`.
    pub(crate) fn port_len(&self, port: PortNo) -> usize {
        self.by_port.get(&port).map_or(0, HashSet::len)
    }

    fn owner_len(&self, owner: Owner) -> usize {
        self.per_owner.get(&owner).copied().unwrap_or(0)
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        e.sticky || now.saturating_duration_since(e.seen) <= self.ageout
    }

    /// A station to forget so that `owner` can learn one in a full table: one of the owner
    /// holding the most entries, if that one holds more than `owner` would after learning;
    /// taken from that owner's port holding the most.
    fn victim(&self, owner: Owner) -> Option<((u16, Mac), PortNo)> {
        let mine = self.owner_len(owner) + 1;
        let (richest, n) = self.ranking.richest()?;
        if n <= mine {
            return None;
        }
        let port = self.ranking.biggest_port(richest)?;
        let keys = self.by_port.get(&port)?;
        keys.iter().next().map(|&k| (k, port))
    }

    /// Records that `mac` in `vid` was seen on `port` at `now` (a trusted port, with no limit
    /// of its own).
    ///
    /// Group addresses must not be passed in: the caller filters them, as only a station's own
    /// (individual) address says where it is.
    #[cfg(test)]
    pub(crate) fn learn(&mut self, vid: u16, mac: Mac, port: PortNo, now: Instant) -> Learned {
        self.learn_as(vid, mac, port, Learning::default(), now)
    }

    /// [`learn`](Self::learn), for a port that learns as `how` says.
    pub(crate) fn learn_as(
        &mut self,
        vid: u16,
        mac: Mac,
        port: PortNo,
        how: Learning,
        now: Instant,
    ) -> Learned {
        debug_assert!(!mac.is_multicast());
        let key = (vid, mac);
        let old = self.table.get(&key).copied();
        let live_old = old.filter(|e| self.live(e, now));
        if let Some(e) = old {
            if e.port == port {
                let home = if live_old.is_some() { e.home } else { port };
                self.table.insert(
                    key,
                    Entry {
                        seen: now,
                        home,
                        ..e
                    },
                );
                return if live_old.is_some() {
                    Learned::Refreshed
                } else {
                    Learned::New
                };
            }
            if how.untrusted && live_old.is_some() && how.successor_of != Some(e.port) {
                return Learned::Spoofed { owner: e.port };
            }
        }
        if how.max_macs.is_some_and(|max| self.port_len(port) >= max) {
            return Learned::OverPortLimit;
        }
        if let Some(e) = old {
            // Leaving its old port: forget it there whatever happens next.
            self.table.remove(&key);
            self.uncount(key, e.port);
        }
        let owner = self.owner(port);
        if self.port_len(port) >= self.limits.per_port
            || (matches!(owner, Owner::Addr(_)) && self.owner_len(owner) >= self.limits.per_addr)
        {
            return Learned::Refused;
        }
        let mut evicted = None;
        if self.table.len() >= self.limits.total {
            let Some((victim, from)) = self.victim(owner) else {
                return Learned::Refused;
            };
            self.table.remove(&victim);
            self.uncount(victim, from);
            evicted = Some((victim, from));
        }
        let entry = Entry {
            port,
            seen: now,
            home: live_old.map_or(port, |e| e.home),
            sticky: how.untrusted && self.port_len(port) == 0,
        };
        self.insert(key, entry);
        match (live_old, evicted) {
            (_, Some((victim, from))) => Learned::Evicted { victim, from },
            (Some(e), None) => Learned::Moved {
                from: e.port,
                home: e.home == port,
            },
            _ => Learned::New,
        }
    }

    /// The port `mac` in `vid` lives on, unless unknown or aged out.
    pub(crate) fn lookup(&self, vid: u16, mac: Mac, now: Instant) -> Option<PortNo> {
        self.table
            .get(&(vid, mac))
            .filter(|e| self.live(e, now))
            .map(|e| e.port)
    }

    /// Forgets every entry on `port` (the port was removed); returns how many.
    pub(crate) fn flush_port(&mut self, port: PortNo) -> usize {
        let keys = self.by_port.remove(&port).unwrap_or_default();
        for key in &keys {
            self.table.remove(key);
        }
        self.recount(port, keys.len(), 0);
        keys.len()
    }

    /// Forgets a removed port's owner (after [`Fdb::flush_port`]).
    pub(crate) fn forget_port(&mut self, port: PortNo) {
        self.flush_port(port);
        self.owners.remove(&port);
    }

    /// Removes aged-out entries; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        self.expire_with(now, |_, _, _| None).len()
    }

    /// Removes aged-out entries and returns their keys. Before an entry goes, `seen_elsewhere`
    /// may report a later sighting of it (e.g. by the kernel's datapath, which forwards frames
    /// userspace never sees); the entry then lives on from that time.
    pub(crate) fn expire_with(
        &mut self,
        now: Instant,
        mut seen_elsewhere: impl FnMut(u16, Mac, PortNo) -> Option<Instant>,
    ) -> Vec<(u16, Mac)> {
        let ageout = self.ageout;
        let mut gone = Vec::new();
        self.table.retain(|&(vid, mac), e| {
            // Young enough to stay live until the next sweep (sweeps run at least every half
            // ageout): nothing to ask.
            if e.sticky || now.saturating_duration_since(e.seen) <= ageout / 2 {
                return true;
            }
            // Ask before the entry goes stale, not after: between ageout and the next sweep,
            // lookups and listings would treat a station only the kernel sees as gone.
            if let Some(t) = seen_elsewhere(vid, mac, e.port) {
                if t > e.seen {
                    e.seen = t;
                }
            }
            if now.saturating_duration_since(e.seen) <= ageout {
                return true;
            }
            gone.push((vid, mac, e.port));
            false
        });
        gone.into_iter()
            .map(|(vid, mac, port)| {
                self.uncount((vid, mac), port);
                (vid, mac)
            })
            .collect()
    }

    /// Live entries sorted by VLAN, then MAC, as etherws 1.3 lists them.
    pub(crate) fn rows(&self, now: Instant) -> Vec<FdbRow> {
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

    /// Live entries on `ports`, at most `max`, in no order: found through the index by port,
    /// so that a caller holding the switch's lock pays for what it shows, not for the table.
    pub(crate) fn rows_of(&self, ports: &[PortNo], max: usize, now: Instant) -> Vec<FdbRow> {
        let keys = ports
            .iter()
            .filter_map(|p| self.by_port.get(p))
            .flat_map(|keys| keys.iter());
        keys.filter_map(|key| {
            let e = self.table.get(key).filter(|e| self.live(e, now))?;
            Some(FdbRow {
                vid: key.0,
                mac: key.1,
                port: e.port,
                age: now.saturating_duration_since(e.seen),
            })
        })
        .take(max)
        .collect()
    }

    /// Number of entries, aged ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
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
        assert_eq!(
            fdb.learn(0, A, 2, t0 + 2 * SEC),
            Learned::Moved {
                from: 1,
                home: false
            }
        );
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

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn per_port_and_total_limits_hold() {
        let t0 = Instant::now();
        let limits = MacLimits {
            per_port: 3,
            per_addr: 3,
            total: 5,
        };
        let mut fdb = Fdb::with_limits(Duration::from_secs(300), limits);
        for i in 0..10 {
            fdb.learn(0, mac(i), 1, t0);
        }
        assert_eq!(fdb.port_len(1), 3);
        assert_eq!(fdb.learn(0, mac(99), 1, t0), Learned::Refused);
        // Known stations still refresh at the limit.
        assert_eq!(fdb.learn(0, mac(0), 1, t0), Learned::Refreshed);
        // Port 2 has its own allowance, within the total (it takes its fair share from port 1:
        // 3 against 2 is fair enough).
        for i in 100..110 {
            fdb.learn(0, mac(i), 2, t0);
        }
        assert_eq!((fdb.port_len(2), fdb.len()), (2, 5));
        // Space comes back when entries go.
        fdb.flush_port(1);
        assert_eq!(fdb.learn(0, mac(200), 2, t0), Learned::New);
        assert_eq!(fdb.port_len(2), 3);
    }

    #[test]
    fn moves_and_expiry_keep_counts_right() {
        let t0 = Instant::now();
        let limits = MacLimits {
            per_port: 1,
            per_addr: 1,
            total: 10,
        };
        let mut fdb = Fdb::with_limits(Duration::from_secs(10), limits);
        fdb.learn(0, A, 1, t0);
        assert_eq!(
            fdb.learn(0, A, 2, t0),
            Learned::Moved {
                from: 1,
                home: false
            }
        );
        assert_eq!((fdb.port_len(1), fdb.port_len(2)), (0, 1));
        // Port 2 is full: B is refused there, but fits on port 1 again.
        assert_eq!(fdb.learn(0, B, 2, t0), Learned::Refused);
        assert_eq!(fdb.learn(0, B, 1, t0), Learned::New);
        fdb.expire(t0 + 11 * SEC);
        assert_eq!((fdb.port_len(1), fdb.port_len(2), fdb.len()), (0, 0, 0));
    }

    #[test]
    fn one_address_is_bounded_and_a_full_table_still_learns_honest_hosts() {
        let t0 = Instant::now();
        let limits = MacLimits {
            per_port: 100,
            per_addr: 150,
            total: 300,
        };
        let mut fdb = Fdb::with_limits(Duration::from_secs(300), limits);
        let attacker: IpAddr = [198, 51, 100, 66].into();
        // Three connections from one address: 150 stations between them, not 300.
        for port in 1..=3 {
            fdb.set_owner(port, attacker);
            for i in 0..100 {
                fdb.learn(0, mac(port * 1000 + i), port, t0);
            }
        }
        assert_eq!(fdb.len(), 150);
        assert_eq!(fdb.learn(0, mac(9999), 3, t0), Learned::Refused);
        // Two more addresses fill the table.
        for (n, port, count) in [(1u8, 4, 100), (2, 5, 50)] {
            fdb.set_owner(port, [203, 0, 113, n].into());
            for i in 0..count {
                fdb.learn(0, mac(port * 1000 + i), port, t0);
            }
        }
        assert_eq!(fdb.len(), 300);
        // An honest host on a port of its own is learned anyway, at the expense of the owner
        // with the most entries (the first address).
        match fdb.learn(0, A, 9, t0) {
            Learned::Evicted { from, .. } => assert!((1..=3).contains(&from)),
            other => panic!("{other:?}"),
        }
        assert_eq!(fdb.lookup(0, A, t0), Some(9));
        assert_eq!(fdb.len(), 300);
        // The biggest holder cannot grow at anyone's expense…
        assert_eq!(fdb.learn(0, mac(7777), 3, t0), Learned::Refused);
        // …a smaller one takes its share from the biggest, never from the honest host.
        match fdb.learn(0, mac(8888), 5, t0) {
            Learned::Evicted { from, .. } => assert!((1..=3).contains(&from)),
            other => panic!("{other:?}"),
        }
        assert_eq!(fdb.lookup(0, A, t0), Some(9));
        // Counts stay right through removal.
        fdb.forget_port(1);
        fdb.forget_port(2);
        let rest = fdb.port_len(3) + fdb.port_len(4) + fdb.port_len(5) + fdb.port_len(9);
        assert_eq!(fdb.len(), rest);
        assert_eq!(fdb.owner_len(Owner::Addr(attacker)), fdb.port_len(3));
        assert_eq!(fdb.learn(0, mac(5555), 3, t0), Learned::New);
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

    #[test]
    fn stations_seen_elsewhere_never_look_gone_between_sweeps() {
        // Ageout 10 s, sweeps every 5 s; the kernel keeps seeing A (1 s ago at each sweep).
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        fdb.learn(0, A, 1, t0);
        fdb.learn(0, B, 1, t0);
        for sweep in 1..=6u32 {
            let now = t0 + 5 * sweep * SEC;
            let gone = fdb.expire_with(now, |_, mac, _| (mac == A).then(|| now - SEC));
            // Until the next sweep, A stays live for lookups and listings.
            assert_eq!(fdb.lookup(0, A, now + 5 * SEC), Some(1), "sweep {sweep}");
            // B, which nobody sees, goes at the first sweep after its ageout (15 s).
            let expect = if sweep == 3 { vec![(0, B)] } else { vec![] };
            assert_eq!(gone, expect, "sweep {sweep}");
        }
        assert_eq!(fdb.rows(t0 + 35 * SEC).len(), 1);
    }

    impl Fdb {
        /// The victim as it was chosen before [`Ranking`]: a scan of every owner, then of
        /// every port (ties broken as `Ranking` breaks them, greatest owner then port).
        fn victim_by_scan(&self, owner: Owner) -> Option<PortNo> {
            let mine = self.owner_len(owner) + 1;
            let (&n, &richest) = self.per_owner.iter().map(|(o, n)| (n, o)).max()?;
            if n <= mine {
                return None;
            }
            self.by_port
                .iter()
                .filter(|(p, _)| self.owner(**p) == richest)
                .map(|(&p, keys)| (keys.len(), p))
                .max()
                .map(|(_, p)| p)
        }

        /// The ranking holds exactly the counts of `per_owner` and `by_port`.
        fn assert_ranking_in_step(&self) {
            let owners: BTreeSet<_> = self.per_owner.iter().map(|(&o, &n)| (n, o)).collect();
            assert_eq!(self.ranking.owners, owners);
            let ports: BTreeSet<_> = (self.by_port.iter())
                .map(|(&p, keys)| (self.owner(p), keys.len(), p))
                .collect();
            assert_eq!(self.ranking.ports, ports);
            assert_eq!(self.per_owner.values().sum::<usize>(), self.len());
        }
    }

    #[test]
    fn the_victim_is_the_one_a_scan_of_every_owner_finds() {
        let t0 = Instant::now();
        // xorshift: random enough, and the same tables on every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let limits = MacLimits {
            per_port: 40,
            per_addr: 60,
            total: 100,
        };
        let (mut victims, mut refusals) = (0, 0);
        for round in 0..20 {
            let mut fdb = Fdb::with_limits(Duration::from_secs(10), limits);
            // Ports 1-4 share one client address, 5-6 another, 7-10 are their own owners.
            for port in 1..=6 {
                fdb.set_owner(port, [192, 0, 2, if port <= 4 { 1 } else { 2 }].into());
            }
            for step in 0..2000u64 {
                let port = 1 + next(10) as PortNo;
                let at = t0 + Duration::from_millis(step * next(20));
                match next(100) {
                    0 => {
                        fdb.flush_port(port);
                    }
                    1 => {
                        fdb.expire(at);
                    }
                    _ => {
                        let owner = fdb.owner(port);
                        let expect = fdb.victim_by_scan(owner);
                        let got = fdb.victim(owner);
                        assert_eq!(got.map(|(_, p)| p), expect, "round {round} step {step}");
                        match got {
                            Some((key, p)) => {
                                assert!(fdb.by_port[&p].contains(&key));
                                victims += 1;
                            }
                            None => refusals += 1,
                        }
                        fdb.learn(next(3) as u16, mac(next(300) as u32), port, at);
                    }
                }
                fdb.assert_ranking_in_step();
            }
        }
        // Both outcomes were met many times.
        assert!(victims > 1000 && refusals > 1000, "{victims} {refusals}");
    }

    const UNTRUSTED: Learning = Learning {
        untrusted: true,
        max_macs: None,
        successor_of: None,
    };

    #[test]
    fn an_untrusted_port_takes_over_no_live_station() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        fdb.learn(0, A, 1, t0);
        assert_eq!(
            fdb.learn_as(0, A, 2, UNTRUSTED, t0 + SEC),
            Learned::Spoofed { owner: 1 }
        );
        assert_eq!(fdb.lookup(0, A, t0 + SEC), Some(1));
        // Once the owner's entry aged out, the address is free again.
        assert_eq!(
            fdb.learn_as(0, A, 2, UNTRUSTED, t0 + 11 * SEC),
            Learned::New
        );
        // A trusted port takes a station from an untrusted one (it moved off the VPN).
        assert_eq!(
            fdb.learn(0, A, 1, t0 + 12 * SEC),
            Learned::Moved {
                from: 2,
                home: false
            }
        );
    }

    #[test]
    fn an_untrusted_ports_first_station_is_sticky() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        assert_eq!(fdb.learn_as(0, A, 2, UNTRUSTED, t0), Learned::New);
        assert_eq!(fdb.learn_as(0, B, 2, UNTRUSTED, t0), Learned::New);
        let later = t0 + 100 * SEC;
        fdb.expire(later);
        assert_eq!(fdb.lookup(0, A, later), Some(2), "sticky");
        assert_eq!(fdb.lookup(0, B, later), None, "ages out");
        assert_eq!(
            fdb.learn_as(0, A, 3, UNTRUSTED, later),
            Learned::Spoofed { owner: 2 }
        );
        // Gone with its port.
        fdb.flush_port(2);
        assert_eq!(fdb.learn_as(0, A, 3, UNTRUSTED, later), Learned::New);
    }

    #[test]
    fn a_ports_own_limit_drops_new_stations() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        let two = Learning {
            untrusted: false,
            max_macs: Some(2),
            successor_of: None,
        };
        assert_eq!(fdb.learn_as(0, mac(1), 1, two, t0), Learned::New);
        assert_eq!(fdb.learn_as(0, mac(2), 1, two, t0), Learned::New);
        assert_eq!(fdb.learn_as(0, mac(3), 1, two, t0), Learned::OverPortLimit);
        assert_eq!(fdb.learn_as(0, mac(1), 1, two, t0), Learned::Refreshed);
        assert_eq!(fdb.lookup(0, mac(3), t0), None);
    }

    #[test]
    fn a_station_coming_home_is_no_move_of_its_home_port() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        fdb.learn(0, A, 1, t0);
        assert_eq!(
            fdb.learn(0, A, 2, t0),
            Learned::Moved {
                from: 1,
                home: false
            }
        );
        assert_eq!(
            fdb.learn(0, A, 1, t0),
            Learned::Moved {
                from: 2,
                home: true
            }
        );
        assert_eq!(
            fdb.learn(0, A, 3, t0),
            Learned::Moved {
                from: 1,
                home: false
            }
        );
    }

    #[test]
    fn rows_of_some_ports_only_and_at_most_so_many() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10));
        for i in 0..10 {
            fdb.learn(0, mac(i), 1 + i % 3, t0);
        }
        let mut rows = fdb.rows_of(&[1, 3], 100, t0);
        rows.sort_by_key(|r| r.mac);
        assert_eq!(rows.len(), 7);
        assert!(rows.iter().all(|r| r.port == 1 || r.port == 3));
        assert_eq!(fdb.rows_of(&[1, 3], 2, t0).len(), 2);
        // Aged entries are not shown.
        assert!(fdb.rows_of(&[1], 100, t0 + 11 * SEC).is_empty());
    }
}
