//! A WAN emulator for the tests and the bench: a delay line on packet sockets between two veths
//! in a namespace of its own (this kernel has no netem).
//!
//! ```text
//!   [a] a_if ── w0 [wan namespace: delay line] w1 ── b_if [b]
//! ```
//!
//! Each direction is one thread inside the wan namespace: it reads every frame arriving on one
//! veth (an `AF_PACKET` socket with a large receive buffer, outgoing frames ignored), drops a
//! configured share at random, holds the rest for the one-way delay (and, with a rate, for its
//! serialization time behind the frames before it, with a bounded backlog), and writes them
//! out of the other veth. Offloads (TSO, GSO, GRO, scatter-gather, TX checksum) are off on the
//! four veths, so frames cross at MTU size with complete checksums, as on a wire.
//!
//! The threads run at a real-time priority (`SCHED_FIFO`), as netem works in softirq ahead
//! of every process, so the path keeps its timing while the endpoints load every CPU.
//!
//! [`WanStats`] says what the line did — frames lost on purpose, frames its own socket dropped
//! (it was too slow: its ceiling), how late frames left — so that a run can show that the path
//! was what it claimed to be.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;

use super::*;

/// What the path does: one-way delay, random loss (a fraction, 0.005 for 0.5 %), an optional
/// rate in bit/s, and an optional slot: frames leave only at multiples of it, in bursts, as
/// on Wi-Fi, LTE or DOCSIS links that deliver in transmission opportunities (netem's `slot`).
/// Written `20ms`, `20ms,0.5%`, `50ms,1%,100mbit`, `20ms,slot=5ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WanSpec {
    pub delay: Duration,
    pub loss: f64,
    pub rate: Option<u64>,
    pub slot: Option<Duration>,
}

impl FromStr for WanSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<WanSpec, String> {
        let mut spec = WanSpec {
            delay: Duration::ZERO,
            loss: 0.0,
            rate: None,
            slot: None,
        };
        let mut parts = s.split(',').map(str::trim);
        let delay = parts.next().unwrap_or_default();
        let ms: f64 = delay
            .strip_suffix("ms")
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| v.is_finite() && (0.0..=10_000.0).contains(v))
            .ok_or_else(|| format!("{delay:?}: a one-way delay like 20ms (0 to 10000)"))?;
        spec.delay = Duration::from_secs_f64(ms / 1000.0);
        for p in parts {
            if let Some(slot) = p.strip_prefix("slot=") {
                let ms: f64 = slot
                    .strip_suffix("ms")
                    .and_then(|v| v.parse().ok())
                    .filter(|v: &f64| v.is_finite() && (0.01..=1000.0).contains(v))
                    .ok_or_else(|| format!("{p:?}: a slot like slot=5ms (0.01 to 1000)"))?;
                spec.slot = Some(Duration::from_secs_f64(ms / 1000.0));
            } else if let Some(pct) = p.strip_suffix('%') {
                let v: f64 = pct
                    .parse()
                    .ok()
                    .filter(|v: &f64| (0.0..=100.0).contains(v))
                    .ok_or_else(|| format!("{p:?}: a loss like 0.5% (0 to 100)"))?;
                spec.loss = v / 100.0;
            } else {
                spec.rate = Some(parse_rate(p)?);
            }
        }
        Ok(spec)
    }
}

/// `100mbit`, `1gbit`, `500kbit` → bit/s.
fn parse_rate(p: &str) -> Result<u64, String> {
    let lower = p.to_ascii_lowercase();
    let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .ok_or_else(|| format!("{p:?}: a loss (0.5%) or a rate (100mbit, 1gbit)"))?;
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| (v * mult) as u64)
        .ok_or_else(|| format!("{p:?}: a positive rate"))
}

impl fmt::Display for WanSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", fmt_num(self.delay.as_secs_f64() * 1000.0))?;
        if self.loss > 0.0 {
            write!(f, ",{}%", fmt_num(self.loss * 100.0))?;
        }
        if let Some(r) = self.rate {
            write!(f, ",{}mbit", fmt_num(r as f64 / 1e6))?;
        }
        if let Some(s) = self.slot {
            write!(f, ",slot={}ms", fmt_num(s.as_secs_f64() * 1000.0))?;
        }
        Ok(())
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What one direction of the line did.
#[derive(Default, Debug)]
pub struct DirStats {
    /// Frames read from the ingress veth.
    pub received: AtomicU64,
    /// Frames dropped on purpose (the configured loss).
    pub lost: AtomicU64,
    /// Frames dropped because the rate-limited backlog was full.
    pub overflow: AtomicU64,
    /// Frames written to the egress veth, and their bytes.
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Frames the egress write refused (counted, not retried).
    pub send_errors: AtomicU64,
    /// Frames the line's own receive socket dropped (`PACKET_STATISTICS`): it could not keep up.
    pub socket_drops: AtomicU64,
    /// The latest any frame left after its due time, in µs (the line's accuracy).
    pub max_late_us: AtomicU64,
    /// Sum of every frame's lateness in µs (with `sent`: the mean).
    pub late_us_sum: AtomicU64,
}

/// Both directions: `ab` is a → b.
#[derive(Default, Debug)]
pub struct WanStats {
    pub ab: DirStats,
    pub ba: DirStats,
}

impl WanStats {
    /// One line for a log or a report: frames, realized loss, the line's own drops and
    /// lateness.
    pub fn summary(&self) -> String {
        let one = |name: &str, d: &DirStats| {
            let rx = d.received.load(Relaxed);
            let lost = d.lost.load(Relaxed);
            let sent = d.sent.load(Relaxed).max(1);
            format!(
                "{name}: {rx} frames, lost {lost} ({:.2} %), overflow {}, line drops {}, \
                 send errors {}, late mean {} µs max {} µs",
                lost as f64 * 100.0 / rx.max(1) as f64,
                d.overflow.load(Relaxed),
                d.socket_drops.load(Relaxed),
                d.send_errors.load(Relaxed),
                d.late_us_sum.load(Relaxed) / sent,
                d.max_late_us.load(Relaxed),
            )
        };
        format!("{}; {}", one("a→b", &self.ab), one("b→a", &self.ba))
    }

    /// Frames the line dropped that it was not told to (its socket, its send path): a run
    /// with any is a run of the emulator's ceiling, not of the path.
    pub fn unintended_drops(&self) -> u64 {
        [&self.ab, &self.ba]
            .iter()
            .map(|d| d.socket_drops.load(Relaxed) + d.send_errors.load(Relaxed))
            .sum()
    }
}

/// A running delay line. Dropping it stops the threads, then deletes the namespace (and with
/// it the veths).
pub struct Wan {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<WanStats>,
    pub spec: WanSpec,
    ns: Netns,
}

impl Wan {
    /// Joins `a_if` in `a` to `b_if` in `b` through a delay line (interfaces created here,
    /// with `a_addr`/`b_addr` (`x.y.z.w/len`) if given, MTU `mtu`, offloads off).
    #[allow(clippy::too_many_arguments)]
    pub fn between(
        a: &Netns,
        a_if: &str,
        a_addr: Option<&str>,
        b: &Netns,
        b_if: &str,
        b_addr: Option<&str>,
        mtu: u32,
        spec: WanSpec,
    ) -> Wan {
        let ns = Netns::new("wan");
        veth(a, a_if, a_addr, &ns, "w0", None);
        veth(b, b_if, b_addr, &ns, "w1", None);
        for (n, i) in [(a, a_if), (&ns, "w0"), (&ns, "w1"), (b, b_if)] {
            n.set_mtu(i, mtu);
            n.set_offloads(i, false);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WanStats::default());
        let w0 = ns.ifindex("w0");
        let w1 = ns.ifindex("w1");
        let mut threads = Vec::new();
        for (from, to, dir) in [(w0, w1, 0), (w1, w0, 1)] {
            let (stop, stats) = (stop.clone(), stats.clone());
            let path = format!("/run/netns/{}", ns.name());
            let seed = 0x9e37_79b9_7f4a_7c15 ^ (std::process::id() as u64) << 8 ^ dir;
            threads.push(thread::spawn(move || {
                enter_path(&path);
                let d = if dir == 0 { &stats.ab } else { &stats.ba };
                run_direction(from, to, spec, seed, &stop, d);
            }));
        }
        Wan {
            stop,
            threads,
            stats,
            spec,
            ns,
        }
    }

    /// The wan namespace (e.g. to count frames on its veths).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_path(path: &str) {
    let nsf = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a namespace file we opened, for this thread only.
    if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!("setns {path}: {}", std::io::Error::last_os_error());
    }
}

/// A frame held by the line until `due`.
struct Held {
    due: Instant,
    data: Vec<u8>,
}

/// The largest frame read (the veths' MTU is at most a few KB; a bigger read is truncated and
/// still forwarded whole-length-wise as read).
const MAX_READ: usize = 16 << 10;
/// Socket buffers of the line: large enough that the line is never the one that drops.
const LINE_BUF: libc::c_int = 64 << 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// One direction: read `from`, hold, write `to`, until `stop`.
fn run_direction(from: i32, to: i32, spec: WanSpec, seed: u64, stop: &AtomicBool, d: &DirStats) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) on this thread only: wake-ups at the due time, not up
    // to 50 µs later.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    // A real-time thread, as netem works in softirq ahead of every process: the line keeps its
    // timing while the tunnel's processes and iperf3 load both CPUs (best effort: a failure
    // shows up as lateness in the stats).
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    let rx = packet_socket(from, true);
    let tx = packet_socket(to, false);
    let mut rng = seed | 1;
    let mut queue: VecDeque<Held> = VecDeque::new();
    // With a rate: when the previous frame has finished leaving.
    let mut free_at = Instant::now();
    let mut buf = vec![0u8; MAX_READ];
    let epoch = Instant::now();
    // The socket's drop count (a syscall) is read every 100 ms, and once more at the end.
    let mut next_stats = epoch;
    while !stop.load(Relaxed) {
        let now = Instant::now();
        while queue.front().is_some_and(|h| h.due <= now) {
            let h = queue.pop_front().expect("front checked");
            send_frame(&tx, to, &h, d);
        }
        // At most 20 ms: a stop is seen that soon whatever the delay.
        let wait = queue
            .front()
            .map(|h| h.due.saturating_duration_since(now))
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(20));
        if !readable(&rx, wait) {
            continue;
        }
        for _ in 0..256 {
            // SAFETY: recv into a buffer we own, of its length.
            let n = unsafe {
                libc::recv(
                    rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            let now = Instant::now();
            d.received.fetch_add(1, Relaxed);
            if spec.loss > 0.0 && next_unit(&mut rng) < spec.loss {
                d.lost.fetch_add(1, Relaxed);
                continue;
            }
            let len = n as usize;
            let mut due = now + spec.delay;
            if let Some(rate) = spec.rate {
                // The router's buffer holds what waits to be serialized, not what is already
                // on the wire (in the delay).
                let waiting =
                    free_at.saturating_duration_since(now).as_secs_f64() * rate as f64 / 8.0;
                if waiting as usize + len > backlog_limit(rate) {
                    d.overflow.fetch_add(1, Relaxed);
                    continue;
                }
                free_at =
                    free_at.max(now) + Duration::from_nanos(len as u64 * 8 * 1_000_000_000 / rate);
                due = free_at + spec.delay;
            }
            if let Some(slot) = spec.slot {
                due = next_slot(epoch, due, slot);
            }
            queue.push_back(Held {
                due,
                data: buf[..len].to_vec(),
            });
        }
        if now >= next_stats {
            d.socket_drops.fetch_add(socket_drops(&rx), Relaxed);
            next_stats = now + Duration::from_millis(100);
        }
    }
    d.socket_drops.fetch_add(socket_drops(&rx), Relaxed);
}

/// The first slot boundary (multiples of `slot` since `epoch`) at or after `t`.
fn next_slot(epoch: Instant, t: Instant, slot: Duration) -> Instant {
    let since = t.saturating_duration_since(epoch).as_nanos();
    let n = since.div_ceil(slot.as_nanos());
    epoch + Duration::from_nanos((n * slot.as_nanos()) as u64)
}

/// A rate-limited line buffers at most 100 ms of its rate waiting to be serialized (at least 64
/// frames): a router's buffer, so a sender above the rate sees drops, not unbounded delay.
fn backlog_limit(rate: u64) -> usize {
    ((rate / 8 / 10) as usize).max(64 * 1514)
}

/// xorshift64*, in [0, 1).
fn next_unit(s: &mut u64) -> f64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

fn send_frame(tx: &OwnedFd, ifindex: i32, h: &Held, d: &DirStats) {
    let late = Instant::now().saturating_duration_since(h.due).as_micros() as u64;
    d.max_late_us.fetch_max(late, Relaxed);
    d.late_us_sum.fetch_add(late, Relaxed);
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_protocol = h
        .data
        .get(12..14)
        .map(|t| u16::from_ne_bytes([t[0], t[1]]))
        .unwrap_or(0);
    // SAFETY: sendto of a buffer we own with a sockaddr_ll of the right size.
    let n = unsafe {
        libc::sendto(
            tx.as_raw_fd(),
            h.data.as_ptr().cast(),
            h.data.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        d.send_errors.fetch_add(1, Relaxed);
    } else {
        d.sent.fetch_add(1, Relaxed);
        d.sent_bytes.fetch_add(h.data.len() as u64, Relaxed);
    }
}

/// A packet socket on interface `ifindex`: receiving every frame (`rx`) or none (send only).
fn packet_socket(ifindex: i32, rx: bool) -> OwnedFd {
    let proto = if rx {
        (libc::ETH_P_ALL as u16).to_be()
    } else {
        0
    };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(
        fd >= 0,
        "socket(AF_PACKET): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, opt, val: libc::c_int| {
        // SAFETY: setsockopt with a c_int value of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                (&val as *const libc::c_int).cast(),
                4,
            )
        }
    };
    set(
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        if rx { LINE_BUF } else { 4096 },
    );
    set(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, LINE_BUF);
    if rx {
        set(libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    }
    // SAFETY: an all-zero sockaddr_ll is valid; family, protocol and index are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "bind(AF_PACKET): {}", std::io::Error::last_os_error());
    if rx {
        socket_drops(&fd); // reset the counter: frames before the line ran are not its drops
    }
    fd
}

/// Waits up to `wait` for `fd` to be readable, or in error (the veth went down or away): the
/// `recv` that follows then takes the error, so a real-time thread never spins on it.
fn readable(fd: &OwnedFd, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: ppoll on one pollfd we own, a valid timespec, no signal mask.
    let r = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    if r > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        // Nothing to read until the veth is back: pause rather than spin at a real-time
        // priority (the recv after this clears a pending socket error).
        thread::sleep(Duration::from_millis(5));
        return true;
    }
    r > 0 && p.revents & libc::POLLIN != 0
}

/// Frames the socket dropped since the last call (`PACKET_STATISTICS` resets on read).
fn socket_drops(fd: &OwnedFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt into a tpacket_stats we own, with its size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 { u64::from(st.tp_drops) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let s: WanSpec = "20ms,0.5%".parse().unwrap();
        assert_eq!(s.delay, Duration::from_millis(20));
        assert!((s.loss - 0.005).abs() < 1e-12);
        assert_eq!(s.rate, None);
        assert_eq!(s.to_string(), "20ms,0.5%");
        let s: WanSpec = "50ms,1%,100mbit".parse().unwrap();
        assert_eq!(s.rate, Some(100_000_000));
        assert_eq!(s.to_string(), "50ms,1%,100mbit");
        let s: WanSpec = "20ms,slot=2.5ms".parse().unwrap();
        assert_eq!(s.slot, Some(Duration::from_micros(2500)));
        assert_eq!(s.to_string(), "20ms,slot=2.5ms");
        assert_eq!("0ms".parse::<WanSpec>().unwrap().delay, Duration::ZERO);
        for bad in [
            "20ms,slot=0ms",
            "20ms,slot=5",
            "20",
            "20s",
            "-1ms",
            "20ms,101%",
            "20ms,fast",
            "20ms,0mbit",
            "nanms",
        ] {
            assert!(bad.parse::<WanSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slots_round_up_to_their_boundaries() {
        let e = Instant::now();
        let slot = Duration::from_millis(5);
        assert_eq!(next_slot(e, e, slot), e);
        assert_eq!(next_slot(e, e + Duration::from_millis(1), slot), e + slot);
        assert_eq!(next_slot(e, e + slot, slot), e + slot);
        assert_eq!(
            next_slot(e, e + Duration::from_millis(11), slot),
            e + 3 * slot
        );
    }

    #[test]
    fn loss_is_drawn_uniformly() {
        let mut s = 12345u64;
        let n = 200_000;
        let below = (0..n).filter(|_| next_unit(&mut s) < 0.02).count();
        let share = below as f64 / n as f64;
        assert!((0.018..0.022).contains(&share), "{share}");
    }
}
