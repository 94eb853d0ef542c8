//! `statusSummary` (an etherws 2 extension): what the status page shows of a switch of any
//! size, in one answer sized to the page rather than to the switch.
//!
//! One pass over the ports under the switch's lock reads a few numbers and names of each
//! (no `listPort` row); the totals, the filter, the sort and the top talkers are computed on
//! those, and only the rows of the page asked for and of the pinned ports are written out in
//! full. Rates (frames/s and bits/s) come from the last reading kept in [`StatusMemo`](super::rates::StatusMemo), taken at
//! most once a second whoever asks, so two pages open at once see the same rates.
//!
//! Every parameter is bounded ([`MAX_LIMIT`], [`MAX_FILTER`], [`MAX_PINNED`], [`MAX_TOP`]), and
//! the buffers of the pass are kept in the memo and reused: a poll allocates little more than
//! its answer.

use std::cmp::Ordering;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::methods::{Control, PortRow, with_kernel};
use super::rates::{Counts, Entry, Rates, drops};
use super::{RpcError, response};
use crate::port::lock;
use crate::switch::fdb::PortNo;
use crate::switch::{PortKind, PortStat};

/// Most rows in one page.
pub(crate) const MAX_LIMIT: usize = 500;
/// Longest filter, in bytes.
pub(crate) const MAX_FILTER: usize = 256;
/// Most pinned ports.
pub(crate) const MAX_PINNED: usize = 64;
/// Most top talkers in each list.
pub(crate) const MAX_TOP: usize = 50;
/// Most forwarding entries in one answer (those of the shown ports).
const MAX_FDB: usize = 1000;

/// What the page may sort on: the names of its columns (`data-field`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Port,
    Type,
    State,
    Target,
    User,
    Path,
    Rx,
    Tx,
    RxRate,
    TxRate,
    RxBps,
    TxBps,
    Drops,
    Queued,
}

impl SortKey {
    fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "port" => SortKey::Port,
            "type" => SortKey::Type,
            "state" => SortKey::State,
            "target" => SortKey::Target,
            "user" => SortKey::User,
            "path" => SortKey::Path,
            "rx" => SortKey::Rx,
            "tx" => SortKey::Tx,
            "rx_rate" => SortKey::RxRate,
            "tx_rate" => SortKey::TxRate,
            "rx_bps" => SortKey::RxBps,
            "tx_bps" => SortKey::TxBps,
            "dropped" => SortKey::Drops,
            "queued_bytes" => SortKey::Queued,
            _ => return None,
        })
    }
}

/// `statusSummary`'s parameters, checked and bounded.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    sort: SortKey,
    desc: bool,
    /// Matched against target, user and path, ASCII case ignored; empty: every port.
    filter: String,
    drops_only: bool,
    offset: usize,
    limit: usize,
    pinned: Vec<PortNo>,
    top: usize,
    fdb: bool,
}

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::invalid_params(msg)
}

/// A count in `0..=max`, `default` when absent.
fn count(p: &Map<String, Value>, key: &str, default: usize, max: usize) -> Result<usize, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= max)
            .ok_or_else(|| bad(format!("{key} must be an integer from 0 to {max}: {n}"))),
        Some(v) => Err(bad(format!("{key} must be an integer: {v}"))),
    }
}

fn boolean(p: &Map<String, Value>, key: &str) -> Result<bool, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(format!("{key} must be true or false: {v}"))),
    }
}

fn text<'a>(p: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(format!("{key} must be a string: {v}"))),
    }
}

impl Query {
    fn parse(params: &Value) -> Result<Query, RpcError> {
        let empty = Map::new();
        let p = match params {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => return Err(bad(format!("params must be an object, not {other}"))),
        };
        let sort = match text(p, "sort")? {
            None => SortKey::Port,
            Some(s) => SortKey::parse(s).ok_or_else(|| bad("unknown sort key"))?,
        };
        let desc = match text(p, "order")? {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(bad("order must be \"asc\" or \"desc\"")),
        };
        let filter = text(p, "filter")?.unwrap_or_default();
        if filter.len() > MAX_FILTER {
            return Err(bad(format!("filter longer than {MAX_FILTER} bytes")));
        }
        let pinned = match p.get("pinned") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_PINNED => a
                .iter()
                .map(|v| v.as_u64().and_then(|n| PortNo::try_from(n).ok()))
                .collect::<Option<Vec<PortNo>>>()
                .ok_or_else(|| bad("pinned must be port numbers"))?,
            Some(_) => return Err(bad(format!("pinned: at most {MAX_PINNED} port numbers"))),
        };
        Ok(Query {
            sort,
            desc,
            filter: filter.trim().to_string(),
            drops_only: boolean(p, "drops")?,
            offset: count(p, "offset", 0, usize::MAX)?,
            limit: count(p, "limit", 50, MAX_LIMIT)?,
            pinned,
            top: count(p, "top", 10, MAX_TOP)?,
            fdb: boolean(p, "fdb")?,
        })
    }
}

impl Entry {
    /// Whether `filter` (ASCII case ignored) is in the target, the user or the path.
    fn matches(&self, filter: &str) -> bool {
        let has = |hay: &str| {
            let (h, n) = (hay.as_bytes(), filter.as_bytes());
            n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
        };
        filter.is_empty()
            || has(&self.target)
            || self.user.as_deref().is_some_and(has)
            || self.path.as_deref().is_some_and(has)
    }

    fn rate(&self, f: impl Fn(&Rates) -> f64) -> f64 {
        self.rates.as_ref().map_or(-1.0, f)
    }

    fn cmp_by(&self, o: &Entry, key: SortKey) -> Ordering {
        let by = match key {
            SortKey::Port => Ordering::Equal,
            SortKey::Type => self.kind.as_str().cmp(o.kind.as_str()),
            SortKey::State => self.state.cmp(&o.state),
            SortKey::Target => self.target.cmp(&o.target),
            SortKey::User => self.user.cmp(&o.user),
            SortKey::Path => self.path.cmp(&o.path),
            SortKey::Rx => self.counts.rx.cmp(&o.counts.rx),
            SortKey::Tx => self.counts.tx.cmp(&o.counts.tx),
            SortKey::RxRate => self.rate(|r| r.rx_fps).total_cmp(&o.rate(|r| r.rx_fps)),
            SortKey::TxRate => self.rate(|r| r.tx_fps).total_cmp(&o.rate(|r| r.tx_fps)),
            SortKey::RxBps => self.rate(|r| r.rx_bps).total_cmp(&o.rate(|r| r.rx_bps)),
            SortKey::TxBps => self.rate(|r| r.tx_bps).total_cmp(&o.rate(|r| r.tx_bps)),
            SortKey::Drops => self.drops.cmp(&o.drops),
            SortKey::Queued => self.queued.cmp(&o.queued),
        };
        by.then(self.port.cmp(&o.port))
    }
}

/// The switch as a whole.
#[derive(Debug, Default, Serialize)]
struct Totals {
    ports: usize,
    up: usize,
    rx: u64,
    tx: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    dropped: u64,
    ports_with_drops: usize,
    queued_bytes: u64,
    /// Every port's rates added up; `null` before two readings.
    rates: Option<Rates>,
}

impl Totals {
    /// The ports' counters and rates, added up.
    fn of(entries: &[Entry]) -> Totals {
        let mut totals = Totals::default();
        for e in entries {
            totals.ports += 1;
            totals.up += usize::from(e.state == 0);
            totals.rx += e.counts.rx;
            totals.tx += e.counts.tx;
            totals.rx_bytes += e.counts.rx_bytes;
            totals.tx_bytes += e.counts.tx_bytes;
            totals.dropped += e.drops;
            totals.ports_with_drops += usize::from(e.drops > 0);
            totals.queued_bytes += e.queued;
            if let Some(r) = &e.rates {
                totals.rates.get_or_insert_with(Rates::default).add(r);
            }
        }
        totals
    }
}

/// A top talker.
#[derive(Serialize)]
struct Top<'a> {
    port: PortNo,
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a str,
    user: Option<&'a str>,
    rates: Rates,
}

/// A row of the page or a pinned port: its `listPort` row, its rates and its drops added up.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    row: PortRow<'a>,
    dropped: u64,
    rates: Option<Rates>,
}

/// A forwarding entry of a shown port.
#[derive(Serialize)]
struct Fdb {
    vid: u16,
    mac: String,
    port: PortNo,
    age: u64,
}

#[derive(Serialize)]
struct Summary<'a> {
    totals: Totals,
    /// Ports that pass the filter.
    matched: usize,
    offset: usize,
    limit: usize,
    rows: Vec<Shown<'a>>,
    pinned: Vec<Shown<'a>>,
    top_bits: Vec<Top<'a>>,
    top_frames: Vec<Top<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fdb: Option<Vec<Fdb>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fdb_total: Option<usize>,
}

#[derive(Serialize)]
struct Reply<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: Summary<'a>,
}

/// Indices of the `n` entries with the largest `key` (over zero), largest first.
fn top_by(entries: &[Entry], n: usize, key: impl Fn(&Rates) -> f64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].rates.as_ref().is_some_and(|r| key(r) > 0.0))
        .collect();
    let by = |a: &usize, b: &usize| {
        entries[*b]
            .rate(&key)
            .total_cmp(&entries[*a].rate(&key))
            .then(entries[*a].port.cmp(&entries[*b].port))
    };
    if idx.len() > n && n > 0 {
        idx.select_nth_unstable_by(n - 1, by);
    }
    idx.truncate(n);
    idx.sort_unstable_by(by);
    idx
}

impl Control {
    /// `statusSummary`'s whole answer, as text.
    pub(super) fn status_summary(&self, id: &Value, params: &Value) -> String {
        let q = match Query::parse(params) {
            Ok(q) => q,
            Err(e) => return response(id.clone(), Err(e)).to_string(),
        };
        let memo = self.status.0.clone();
        let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // The pass: a few numbers and names of each port, under the lock; netdev ports' own
        // stats kept whole, to add what the kernel switched once the lock is released.
        let mut netdevs = Vec::new();
        memo.entries.clear();
        {
            let sw = lock(&self.switch);
            for s in sw.ports() {
                memo.entries.push(Entry::of(&s, now));
                if s.kind == PortKind::Netdev {
                    netdevs.push(s);
                }
            }
        }
        for s in &netdevs {
            let full = with_kernel(s, self.view(s).as_ref());
            if let Ok(i) = memo.entries.binary_search_by_key(&s.port, |e| e.port) {
                memo.entries[i].counts = Counts::of(&full);
            }
        }
        memo.rate(now);
        let memo = &mut *memo;
        let out = self.answer(id, &q, &memo.entries, &mut memo.order, now);
        // The names are not kept between polls.
        memo.entries.clear();
        out
    }

    /// The answer once the entries have their rates.
    fn answer(
        &self,
        id: &Value,
        q: &Query,
        entries: &[Entry],
        order: &mut Vec<u32>,
        now: Instant,
    ) -> String {
        let totals = Totals::of(entries);
        order.clear();
        order.extend(
            (0..entries.len())
                .filter(|&i| {
                    let e = &entries[i];
                    (!q.drops_only || e.drops > 0) && e.matches(&q.filter)
                })
                .filter_map(|i| u32::try_from(i).ok()),
        );
        if q.sort != SortKey::Port || q.desc {
            order.sort_unstable_by(|&a, &b| {
                let o = entries[a as usize].cmp_by(&entries[b as usize], q.sort);
                if q.desc { o.reverse() } else { o }
            });
        }
        let page: Vec<&Entry> = order
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|&i| &entries[i as usize])
            .collect();
        let pinned: Vec<&Entry> = q
            .pinned
            .iter()
            .filter_map(|p| {
                entries
                    .binary_search_by_key(p, |e| e.port)
                    .ok()
                    .map(|i| &entries[i])
            })
            .collect();
        // The full rows of the shown ports, read again (one lock for all of them).
        let stats: Vec<Option<PortStat>> = {
            let sw = lock(&self.switch);
            page.iter()
                .chain(&pinned)
                .map(|e| sw.port(e.port))
                .collect()
        };
        let views: Vec<_> = stats
            .iter()
            .map(|s| s.as_ref().and_then(|s| self.view(s)))
            .collect();
        let mut shown: Vec<Shown> = page
            .iter()
            .chain(&pinned)
            .zip(stats.iter().zip(&views))
            .filter_map(|(e, (s, v))| {
                s.as_ref().map(|s| Shown {
                    row: PortRow::new(s, v.as_ref(), now),
                    dropped: drops(s),
                    rates: e.rates,
                })
            })
            .collect();
        let pinned_rows = shown.split_off(shown.len().min(page.len()));
        let tops = |key: fn(&Rates) -> f64| {
            top_by(entries, q.top, key)
                .into_iter()
                .map(|i| {
                    let e = &entries[i];
                    Top {
                        port: e.port,
                        kind: e.kind.as_str(),
                        target: &e.target,
                        user: e.user.as_deref(),
                        rates: e.rates.unwrap_or_default(),
                    }
                })
                .collect::<Vec<_>>()
        };
        let (fdb, fdb_total) = if q.fdb {
            let (f, t) = self.fdb_of(page.iter().chain(&pinned).map(|e| e.port), now);
            (Some(f), Some(t))
        } else {
            (None, None)
        };
        let reply = Reply {
            jsonrpc: "2.0",
            id,
            result: Summary {
                totals,
                matched: order.len(),
                offset: q.offset,
                limit: q.limit,
                rows: shown,
                pinned: pinned_rows,
                top_bits: tops(|r| r.rx_bps + r.tx_bps),
                top_frames: tops(|r| r.rx_fps + r.tx_fps),
                fdb,
                fdb_total,
            },
        };
        serde_json::to_string(&reply).unwrap_or_else(|e| {
            response(id.clone(), Err(RpcError::internal(e.to_string()))).to_string()
        })
    }

    /// The forwarding entries of `ports` (at most [`MAX_FDB`]), and how many the switch holds.
    fn fdb_of(&self, ports: impl Iterator<Item = PortNo>, now: Instant) -> (Vec<Fdb>, usize) {
        let mut wanted: Vec<PortNo> = ports.collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Under the lock, only the entries shown: the table may hold 65,536.
        let (mut rows, total) = {
            let sw = lock(&self.switch);
            (sw.fdb_rows_of(&wanted, MAX_FDB, now), sw.fdb_len())
        };
        rows.sort_by_key(|r| (r.vid, r.mac));
        let fdb = rows
            .iter()
            .map(|r| Fdb {
                vid: r.vid,
                mac: r.mac.to_string(),
                port: r.port,
                age: r.age.as_secs(),
            })
            .collect();
        (fdb, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::rates::tests::entry;
    use serde_json::json;

    #[test]
    fn parameters_are_bounded() {
        let q = Query::parse(&Value::Null).unwrap();
        assert_eq!(
            (q.sort, q.desc, q.offset, q.limit, q.top),
            (SortKey::Port, false, 0, 50, 10)
        );
        let q = Query::parse(
            &json!({"sort": "rx_bps", "order": "desc", "filter": " Alice ",
            "drops": true, "offset": 100, "limit": 500, "pinned": [1, 2], "top": 5, "fdb": true}),
        )
        .unwrap();
        assert_eq!(q.sort, SortKey::RxBps);
        assert!(q.desc && q.drops_only && q.fdb);
        assert_eq!(q.filter, "Alice");
        assert_eq!((q.offset, q.limit, q.top), (100, 500, 5));
        assert_eq!(q.pinned, vec![1, 2]);
        for refused in [
            json!({"limit": 501}),
            json!({"limit": -1}),
            json!({"top": 51}),
            json!({"sort": "nope"}),
            json!({"order": "up"}),
            json!({"filter": "x".repeat(MAX_FILTER + 1)}),
            json!({"pinned": (0..=MAX_PINNED).collect::<Vec<_>>()}),
            json!({"pinned": ["1"]}),
            json!({"drops": "yes"}),
            json!([1]),
        ] {
            assert!(Query::parse(&refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_filter_ignores_ascii_case_and_looks_at_target_user_and_path() {
        let e = entry(1, "192.0.2.1:4000", Some("Alice"), 0);
        for yes in ["", "192.0.2.1", "ALICE", "lic", "2.1:4000"] {
            assert!(e.matches(yes), "{yes}");
        }
        for no in ["bob", "192.0.2.10", "alice-"] {
            assert!(!e.matches(no), "{no}");
        }
    }

    #[test]
    fn top_talkers_are_the_largest_first() {
        let mut entries: Vec<Entry> = (1..=100).map(|p| entry(p, "t", None, 0)).collect();
        for e in &mut entries {
            e.rates = Some(Rates {
                rx_bps: f64::from((e.port * 37) % 101),
                ..Rates::default()
            });
        }
        let top = top_by(&entries, 3, |r| r.rx_bps);
        let rates: Vec<f64> = top
            .iter()
            .map(|&i| entries[i].rates.unwrap().rx_bps)
            .collect();
        assert_eq!(rates, [100.0, 99.0, 98.0]);
        assert!(top_by(&entries, 0, |r| r.rx_bps).is_empty());
        assert_eq!(top_by(&entries, 500, |r| r.rx_bps).len(), 100);
    }
}
