//! `cargo xtask load [--clients N] [--seconds S] [--reload] [--write]`: the load test of the
//! switch.
//!
//! Builds `etherws` in release mode, starts one switch on loopback (storm control off,
//! connection caps lifted), connects N WebSocket clients (default 1,000) from this process,
//! each with its own locally administered MAC, and runs broadcast and unicast traffic between
//! them for S seconds (default 60). Meanwhile it samples the switch's RSS every second, its CPU
//! time, and the latency of the control API (`listPort` and `listFdb`, alternately every
//! 100 ms, each on a new connection as `etherws ctl` makes them). Every client counts what it
//! receives, so fairness is exact: per client, frames received against frames addressed to it.
//!
//! The results are printed as a markdown table; `--write` also replaces the section of
//! `BENCHMARKS.md` for this number of clients (creating the file if needed).
//!
//! Traffic mix (defaults; tunable with `--unicast-pps`, `--frame-bytes`, `--bcast-every`,
//! `--bcast-bytes`, `--peers`; `--no-build` runs the existing `target/release/etherws`):
//! - learning is seeded with one 60-byte broadcast per client before the traffic phase, sent
//!   in waves of up to 100 clients (fewer with more clients: 100,000 deliveries a wave at
//!   most), each wave waiting until every client has received it (so no queue overflows and no
//!   seed waits longer than the switch's `--queue-delay` while N·(N−1) seed frames are flooded);
//! - then every client sends 10 unicast frames/s of 1,000 bytes, each to one of 4 peers picked
//!   at random at start (by then every MAC is learned: no flooding), and one 60-byte broadcast
//!   every 30 s (at a random phase), so with 1,000 clients ~10,000 unicast frames/s in and out
//!   and ~33 broadcasts/s in, ~33,000 broadcast deliveries/s out.
//!
//! That mix was sized on the 2-core machine the driver and the switch share: it keeps it ~90 %
//! busy with every send on schedule. 20 unicast frames/s per client saturated it (99 % busy,
//! delivery latency p50 ~30 ms), and a broadcast every 10 s per client (~100,000 deliveries/s)
//! could not be offered at all: the driver and the switch fell to ~60 % of the schedule. Sends
//! are scheduled by a timer per client that catches up after a late tick (`Burst`), so
//! "sent / scheduled" below 1 means the driver could not offer the load.
//!
//! `--reload` starts the switch with a configuration file and, halfway through the traffic,
//! adds a path to it and sends SIGHUP: the report's first row then says how long the reload
//! took and how many clients it dropped (server ports gone, connections the switch ended).
//!
//! All traffic is on 127.0.0.1. The switch is killed at the end, also on error (and by the
//! kernel if this process dies: `PR_SET_PDEATHSIG`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etherws_testkit::{Switch, bin, try_http_post, use_binary};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream as TokioTcpStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::report::{BENCHMARKS_HEADER, loadavg, replace_section};
use crate::{cargo, root, run};

type Ws = WebSocketStream<MaybeTlsStream<TokioTcpStream>>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// Local experimental EtherType.
const ETHERTYPE: u16 = 0x88b5;
const KIND_SEED: u8 = 0;
const KIND_UNICAST: u8 = 1;
const KIND_BCAST: u8 = 2;
/// Ethernet header + kind + sender index + sequence number + send time (µs).
const HDR: usize = 14 + 1 + 4 + 4 + 8;
/// Clients seeding learning at once, at most: each wave puts this many frames in every port's
/// queue.
const SEED_WAVE: usize = 100;
/// Seed deliveries per wave, at most: a wave must reach every client well within the switch's
/// `--queue-delay` (1 s), or its frames expire in the queues instead of being delivered
/// (about 1,000,000 deliveries/s on a 2-core machine).
const SEED_DELIVERIES: usize = 100_000;
/// A seed wave is given up on after this long without a delivery (longer than the switch
/// keeps a frame queued): what has not arrived was dropped.
const SEED_STALL: Duration = Duration::from_secs(3);
/// WebSocket handshakes in flight at once (the switch listens with a backlog of 1024).
const CONNECT_CONCURRENCY: usize = 128;
const SECTION_PREFIX: &str = "## Load: ";

/// `cargo xtask load` options.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// WebSocket clients (2 to 65535).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=65535))]
    clients: u64,
    /// How long the traffic runs, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Update BENCHMARKS.md with the results.
    #[arg(long)]
    write: bool,
    /// Use the release binary as it is.
    #[arg(long)]
    no_build: bool,
    /// Unicast frames per second each client sends.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    unicast_pps: u32,
    /// Size of the unicast frames, in bytes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(HDR as u64..=9000))]
    frame_bytes: u64,
    /// Seconds between a client's broadcasts.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    bcast_every: u32,
    /// Size of the broadcast frames, in bytes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(HDR as u64..=9000))]
    bcast_bytes: u64,
    /// Peers each client sends unicast to.
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Halfway through the traffic, change the switch's configuration file (a new path) and
    /// reload it with SIGHUP; the report says how many clients were dropped.
    #[arg(long)]
    reload: bool,
}

#[derive(Debug, Clone)]
struct Opts {
    clients: usize,
    seconds: u64,
    write: bool,
    no_build: bool,
    unicast_pps: u32,
    frame_bytes: usize,
    bcast_every: u32,
    bcast_bytes: usize,
    peers: usize,
    reload: bool,
    command: String,
}

impl From<LoadArgs> for Opts {
    fn from(a: LoadArgs) -> Opts {
        let clients = a.clients as usize;
        Opts {
            clients,
            seconds: a.seconds,
            write: a.write,
            no_build: a.no_build,
            unicast_pps: a.unicast_pps,
            frame_bytes: a.frame_bytes as usize,
            bcast_every: a.bcast_every,
            bcast_bytes: a.bcast_bytes as usize,
            peers: a.peers.clamp(1, clients - 1),
            reload: a.reload,
            command: crate::command_line(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the switch process and what /proc says about it

/// The release-built switch on loopback (the test kit's [`Switch`] on ports it picks itself),
/// storm control off and connection caps lifted, its log in `target/load/etherws-sw.log`; killed
/// when dropped, and by the kernel if this process dies first.
fn start_switch(reload: bool) -> anyhow::Result<Switch> {
    let dir = root().join("target/load");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("etherws-sw.log");
    let config = config_path();
    std::fs::write(&config, CONFIG)?;
    let config = config.to_string_lossy().into_owned();
    let with_config = ["--config", config.as_str()];
    let args = [
        "--max-conns-per-addr",
        "100000",
        "--max-conns",
        "100000",
        "--storm-pps",
        "0",
        // Every client comes from 127.0.0.1: the per-address MAC limit is for hostile clients.
        "--max-macs-per-addr",
        "100000",
        // Seeding 10,000 clients takes minutes: the first ones must not age out meanwhile.
        "--ageout",
        "3600",
    ];
    // `--reload` changes the file halfway: the switch must have been started with one.
    let args: Vec<&str> = args
        .into_iter()
        .chain(with_config.into_iter().filter(|_| reload))
        .collect();
    eprintln!(
        "xtask: {} sw --foreground --host 127.0.0.1 --port 0 --ctlhost 127.0.0.1 --ctlport 0 {} \
         (log: {})",
        bin().to_string_lossy(),
        args.join(" "),
        log.display()
    );
    // The kit panics if the switch does not start (and prints its log).
    Ok(Switch::builder("load")
        .args(&args)
        .log_file(&log)
        .die_with_parent()
        .start())
}

/// The configuration file of `--reload`: one path at start, a second one after the reload.
fn config_path() -> std::path::PathBuf {
    root().join("target/load/etherws.toml")
}

const CONFIG: &str = "[[path]]\npath = \"/\"\n";
const CONFIG_RELOADED: &str =
    "[[path]]\npath = \"/\"\n\n[[path]]\npath = \"/reloaded\"\nvlan = 10\n";

/// What the reload halfway through the traffic did.
struct Reloaded {
    /// The server ports before it.
    before: Vec<u64>,
    /// From SIGHUP to the switch's `reloaded:` line.
    took: Duration,
}

/// The server ports of a `listPort` answer, by number.
fn server_ports(ports: &Value) -> Vec<u64> {
    entries(ports)
        .iter()
        .filter(|p| p["type"] == "server")
        .filter_map(|p| p["port"].as_u64())
        .collect()
}

/// The traffic phase's wait; with `--reload`, a changed file and SIGHUP halfway.
async fn traffic_wait(o: &Opts, sw: &Switch) -> anyhow::Result<Option<Reloaded>> {
    let total = Duration::from_secs(o.seconds);
    if !o.reload {
        tokio::time::sleep(total).await;
        return Ok(None);
    }
    tokio::time::sleep(total / 2).await;
    let before = server_ports(&rpc(sw.ctl_addr(), "listPort")?.1);
    std::fs::write(config_path(), CONFIG_RELOADED)?;
    let t0 = Instant::now();
    eprintln!("xtask: reloading the switch (SIGHUP)");
    sw.signal(libc::SIGHUP);
    while !sw.log().contains("reloaded:") {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the switch did not log `reloaded:` within 10 s of SIGHUP");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    tokio::time::sleep(total - total / 2).await;
    Ok(Some(Reloaded { before, took }))
}

/// Fails, with the end of its log, when the switch is no longer running.
fn check_alive(sw: &mut Switch) -> anyhow::Result<()> {
    if let Some(status) = sw.wait_exit(Duration::ZERO) {
        let text = sw.log();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "the switch exited ({status}); end of its log {}:\n{}",
            sw.log_path().display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    Ok(())
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, may hold spaces): state is field 3, utime 14.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// CPU time of this process (all threads), in seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn raise_nofile() -> anyhow::Result<u64> {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                bail!("setrlimit: {}", std::io::Error::last_os_error());
            }
            lim = want;
        }
        Ok(lim.rlim_cur)
    }
}

// ---------------------------------------------------------------------------------------------
// control API

/// POSTs `etherws.control.METHOD` on a new connection (as `etherws ctl` does); returns the
/// time from connect to the whole response read, and the `result`.
fn rpc(addr: SocketAddr, method: &str) -> anyhow::Result<(Duration, Value)> {
    let body = format!(r#"{{"jsonrpc":"2.0","method":"etherws.control.{method}","id":1}}"#);
    let t0 = Instant::now();
    let resp = try_http_post(addr, "/ctl", &body, Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("{method}: {e}"))?;
    let took = t0.elapsed();
    if resp.status != 200 {
        bail!("{method}: HTTP {}", resp.status);
    }
    let v: Value =
        serde_json::from_str(&resp.body).with_context(|| format!("{method}: not JSON"))?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok((took, v["result"].clone()))
}

fn entries(v: &Value) -> &[Value] {
    v["entries"].as_array().map_or(&[], Vec::as_slice)
}

/// Control-API latencies of one method.
#[derive(Default)]
struct CtlSamples {
    took: Vec<Duration>,
    /// Answers whose number of entries was not the number of clients.
    wrong_count: usize,
    errors: Vec<String>,
}

/// `n` rounds of `listPort` then `listFdb`, `period` apart (each method every `period`).
fn ctl_round(
    addr: SocketAddr,
    clients: usize,
    lp: &mut CtlSamples,
    lf: &mut CtlSamples,
    period: Duration,
    stop: &dyn Fn() -> bool,
) {
    let mut next = Instant::now();
    while !stop() {
        for (method, s) in [("listPort", &mut *lp), ("listFdb", &mut *lf)] {
            match rpc(addr, method) {
                Ok((took, v)) => {
                    s.took.push(took);
                    let n = entries(&v).len();
                    if n != clients {
                        s.wrong_count += 1;
                    }
                }
                Err(e) => s.errors.push(format!("{e:#}")),
            }
            next += period / 2;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                thread::sleep(d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// clients

fn mac(i: usize) -> [u8; 6] {
    [0x02, 0x4c, 0x44, 0x00, (i >> 8) as u8, i as u8]
}

fn frame(dst: [u8; 6], src: usize, kind: u8, seq: u32, t_us: u64, len: usize) -> Bytes {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.push(kind);
    f.extend_from_slice(&(src as u32).to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&t_us.to_be_bytes());
    f.resize(len, 0x5a);
    Bytes::from(f)
}

/// Counters of one client, shared by its reader and writer tasks and the main task.
#[derive(Default)]
struct Client {
    uni_tx: AtomicU64,
    bc_tx: AtomicU64,
    /// Unicast frames sent to this client by the others.
    uni_expected: AtomicU64,
    uni_rx: AtomicU64,
    bc_rx: AtomicU64,
    seed_rx: AtomicU64,
    /// Unicast frames not addressed to this client (flooded or misdelivered).
    stray_rx: AtomicU64,
    send_errors: AtomicU64,
    /// The connection ended while the test still ran.
    closed: AtomicBool,
}

struct Shared {
    epoch: Instant,
    clients: Vec<Client>,
    /// µs since `epoch` when the traffic phase started / stopped (0: not yet).
    traffic_start_us: AtomicU64,
    traffic_stop_us: AtomicU64,
    stop_sending: AtomicBool,
    /// The driver is closing the connections.
    closing: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// What one reader measured during the traffic phase.
#[derive(Default)]
struct ReaderOut {
    uni_lat_us: Vec<u32>,
    bc_lat_us: Vec<u32>,
    /// Longest time without receiving anything, within the traffic phase.
    max_gap_us: u64,
}

/// Reads until the connection ends (the driver closes it at the end).
async fn reader(i: usize, mut stream: Stream, sh: Arc<Shared>) -> ReaderOut {
    let me = mac(i);
    let c = &sh.clients[i];
    let mut out = ReaderOut::default();
    let mut last_us = 0u64;
    loop {
        let f = match stream.next().await {
            Some(Ok(Message::Binary(f))) => f,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                if !sh.closing.load(Ordering::Relaxed) {
                    c.closed.store(true, Ordering::Relaxed);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        if f.len() < HDR {
            continue;
        }
        let now = sh.now_us();
        let sent = u64::from_be_bytes(f[23..31].try_into().unwrap());
        let start = sh.traffic_start_us.load(Ordering::Relaxed);
        let stop = sh.traffic_stop_us.load(Ordering::Relaxed);
        let in_traffic = start != 0 && sent >= start && (stop == 0 || now <= stop);
        if start != 0 && now >= start && (stop == 0 || now <= stop) {
            out.max_gap_us = out.max_gap_us.max(now - last_us.max(start));
            last_us = now;
        }
        let lat = (now.saturating_sub(sent)).min(u64::from(u32::MAX)) as u32;
        match f[14] {
            KIND_SEED => {
                c.seed_rx.fetch_add(1, Ordering::Relaxed);
            }
            KIND_UNICAST if f[..6] == me => {
                c.uni_rx.fetch_add(1, Ordering::Relaxed);
                if in_traffic {
                    out.uni_lat_us.push(lat);
                }
            }
            KIND_UNICAST => {
                c.stray_rx.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                c.bc_rx.fetch_add(1, Ordering::Relaxed);
                if in_traffic {
                    out.bc_lat_us.push(lat);
                }
            }
        }
    }
    // The silence at the end of the traffic phase counts too.
    let start = sh.traffic_start_us.load(Ordering::Relaxed);
    let stop = sh.traffic_stop_us.load(Ordering::Relaxed);
    if start != 0 && stop != 0 {
        out.max_gap_us = out.max_gap_us.max(stop.saturating_sub(last_us.max(start)));
    }
    out
}

async fn writer(
    i: usize,
    mut sink: Sink,
    peers: Vec<usize>,
    o: Opts,
    sh: Arc<Shared>,
    seed: u64,
) -> Sink {
    let mut rng = fastrand::Rng::with_seed(seed);
    let period = Duration::from_secs_f64(1.0 / f64::from(o.unicast_pps));
    let first = tokio::time::Instant::now() + period.mul_f64(rng.f64());
    let mut iv = tokio::time::interval_at(first, period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let bcast_ticks = u64::from(o.unicast_pps) * u64::from(o.bcast_every);
    let bcast_at = rng.u64(..bcast_ticks);
    let c = &sh.clients[i];
    let mut tick = 0u64;
    loop {
        iv.tick().await;
        if sh.stop_sending.load(Ordering::Relaxed) {
            break;
        }
        let dst = peers[rng.usize(..peers.len())];
        let f = frame(
            mac(dst),
            i,
            KIND_UNICAST,
            tick as u32,
            sh.now_us(),
            o.frame_bytes,
        );
        if sink.send(Message::Binary(f)).await.is_err() {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        c.uni_tx.fetch_add(1, Ordering::Relaxed);
        sh.clients[dst].uni_expected.fetch_add(1, Ordering::Relaxed);
        if tick % bcast_ticks == bcast_at {
            let f = frame(
                [0xff; 6],
                i,
                KIND_BCAST,
                tick as u32,
                sh.now_us(),
                o.bcast_bytes,
            );
            if sink.send(Message::Binary(f)).await.is_err() {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            c.bc_tx.fetch_add(1, Ordering::Relaxed);
        }
        tick += 1;
    }
    sink
}

async fn connect(port: u16) -> anyhow::Result<(Ws, Duration)> {
    let t0 = Instant::now();
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://127.0.0.1:{port}/"), None, true)
            .await?;
    Ok((ws, t0.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// statistics and the report

fn pct<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us_ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1e3)
}

fn lat_summary(mut v: Vec<Duration>) -> String {
    v.sort();
    match (pct(&v, 50.0), pct(&v, 99.0), v.last()) {
        (Some(a), Some(b), Some(c)) => format!(
            "p50 {} · p99 {} · max {} ({} samples)",
            ms(a),
            ms(b),
            ms(*c),
            v.len()
        ),
        _ => "no samples".into(),
    }
}

fn ctl_summary(s: CtlSamples, clients: usize) -> String {
    let mut out = lat_summary(s.took);
    if s.wrong_count > 0 {
        let _ = write!(out, "; {} answers without {clients} entries", s.wrong_count);
    }
    if !s.errors.is_empty() {
        let _ = write!(out, "; {} errors (first: {})", s.errors.len(), s.errors[0]);
    }
    out
}

fn us_summary(mut v: Vec<u32>) -> String {
    v.sort_unstable();
    match (pct(&v, 50.0), pct(&v, 99.0), v.last()) {
        (Some(a), Some(b), Some(c)) => format!(
            "p50 {} · p99 {} · max {} ({} frames)",
            us_ms(a),
            us_ms(b),
            us_ms(*c),
            thousands(v.len() as u64)
        ),
        _ => "no samples".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (k, ch) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs ({model}), {:.0} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn command_output(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// the task

pub fn task_load(args: LoadArgs) -> anyhow::Result<()> {
    let o = Opts::from(args);
    if !o.no_build {
        let mut build = cargo();
        build.args(["build", "--release", "-p", "etherws"]);
        run(build)?;
    }
    use_binary(root().join("target/release/etherws"));
    let nofile = raise_nofile()?;
    if nofile < o.clients as u64 + 64 {
        bail!(
            "open files limit {nofile} is too low for {} clients",
            o.clients
        );
    }
    let load_at_start = loadavg();
    let mut sw = start_switch(o.reload)?;
    let rss_idle = rss_kib(sw.pid()).unwrap_or(0);

    // RSS, every second, for the whole run.
    let rss_samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop, pid) = (rss_samples.clone(), sampler_stop.clone(), sw.pid());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    samples.lock().unwrap().push((Instant::now(), k));
                }
                thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(drive(&o, &mut sw, &rss_samples, rss_idle, load_at_start));
    sampler_stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    rt.shutdown_timeout(Duration::from_secs(2));
    let alive = check_alive(&mut sw);
    drop(sw);
    let report = result?;
    alive?;

    println!("{report}");
    if o.write {
        let path = root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_else(|_| BENCHMARKS_HEADER.into());
        let heading = format!(
            "{SECTION_PREFIX}{} WebSocket clients",
            thousands(o.clients as u64)
        );
        std::fs::write(&path, replace_section(&old, &heading, &report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("xtask: wrote the section {heading:?} of {}", path.display());
    }
    Ok(())
}

async fn drive(
    o: &Opts,
    sw: &mut Switch,
    rss_samples: &Arc<Mutex<Vec<(Instant, u64)>>>,
    rss_idle: u64,
    load_at_start: String,
) -> anyhow::Result<String> {
    let n = o.clients;
    let sh = Arc::new(Shared {
        epoch: Instant::now(),
        clients: (0..n).map(|_| Client::default()).collect(),
        traffic_start_us: AtomicU64::new(0),
        traffic_stop_us: AtomicU64::new(0),
        stop_sending: AtomicBool::new(false),
        closing: AtomicBool::new(false),
    });

    // --- connect
    eprintln!("xtask: connecting {n} WebSocket clients");
    let t_connect = Instant::now();
    let port = sw.ws_port;
    let mut conns: Vec<(usize, Ws, Duration)> =
        futures_util::stream::iter((0..n).map(|i| async move {
            connect(port)
                .await
                .map(|(ws, d)| (i, ws, d))
                .with_context(|| format!("client {i} cannot connect"))
        }))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_all = t_connect.elapsed();
    conns.sort_by_key(|c| c.0);
    let connect_each: Vec<Duration> = conns.iter().map(|c| c.2).collect();
    let mut sinks = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for (i, ws, _) in conns {
        let (sink, stream) = ws.split();
        sinks.push(sink);
        readers.push(tokio::spawn(reader(i, stream, sh.clone())));
    }
    // A handshake ends (101) just before the switch adds the port: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ports = rpc(sw.ctl_addr(), "listPort")?.1;
        let servers = entries(&ports)
            .iter()
            .filter(|p| p["type"] == "server")
            .count();
        if servers == n {
            break;
        }
        if Instant::now() > deadline {
            bail!("listPort shows {servers} server ports, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_connected = rss_kib(sw.pid()).unwrap_or(0);

    // --- seed learning: one broadcast per client, in waves that fit every port's queue
    eprintln!("xtask: seeding MAC learning");
    let t_seed = Instant::now();
    let wave_size = (SEED_DELIVERIES / n).clamp(1, SEED_WAVE);
    for wave in (0..n).collect::<Vec<_>>().chunks(wave_size) {
        for &i in wave {
            let f = frame([0xff; 6], i, KIND_SEED, 0, sh.now_us(), 60);
            sinks[i].send(Message::Binary(f)).await?;
        }
        let sent = wave[wave.len() - 1] + 1;
        // The wave is done when every client has every seed but its own, or when nothing more
        // arrives for longer than the switch keeps a frame queued (an overloaded switch drops
        // late frames: those seeds are lost, and counted).
        let total = || -> u64 {
            sh.clients
                .iter()
                .map(|c| c.seed_rx.load(Ordering::Relaxed))
                .sum()
        };
        let want = (sent * (n - 1)) as u64;
        let (mut last, mut since) = (total(), Instant::now());
        loop {
            let now = total();
            if now >= want {
                break;
            }
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() > SEED_STALL {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let seed_time = t_seed.elapsed();
    let seeds_lost = ((n * (n - 1)) as u64).saturating_sub(
        sh.clients
            .iter()
            .map(|c| c.seed_rx.load(Ordering::Relaxed))
            .sum(),
    );
    if seeds_lost > 0 {
        eprintln!("xtask: seeding: {seeds_lost} seed deliveries lost (overload)");
    }
    let fdb = rpc(sw.ctl_addr(), "listFdb")?.1;
    if entries(&fdb).len() != n {
        bail!(
            "listFdb has {} entries after seeding, not {n}",
            entries(&fdb).len()
        );
    }

    // --- control API at rest (all clients connected, no traffic)
    let addr = sw.ctl_addr();
    let (idle_lp, idle_lf) = tokio::task::spawn_blocking(move || {
        let (mut lp, mut lf) = (CtlSamples::default(), CtlSamples::default());
        let t = Instant::now();
        let stop = move || t.elapsed() >= Duration::from_secs(3);
        ctl_round(addr, n, &mut lp, &mut lf, Duration::from_millis(200), &stop);
        (lp, lf)
    })
    .await?;

    // --- traffic
    eprintln!("xtask: traffic for {} s", o.seconds);
    let mut rng = fastrand::Rng::with_seed(0x10ad);
    let cpu0 = cpu_seconds(sw.pid()).context("switch CPU time")?;
    let own0 = own_cpu_seconds();
    let mach0 = machine_jiffies();
    let t_traffic = Instant::now();
    sh.traffic_start_us
        .store(sh.now_us().max(1), Ordering::Relaxed);
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let ctl_thread = {
        let stop = ctl_stop.clone();
        thread::spawn(move || {
            let (mut lp, mut lf) = (CtlSamples::default(), CtlSamples::default());
            let stop = move || stop.load(Ordering::Relaxed);
            ctl_round(addr, n, &mut lp, &mut lf, Duration::from_millis(200), &stop);
            (lp, lf)
        })
    };
    let mut writers = Vec::with_capacity(n);
    for (i, sink) in sinks.into_iter().enumerate() {
        let mut peers = Vec::with_capacity(o.peers);
        while peers.len() < o.peers {
            let p = rng.usize(..n);
            if p != i && !peers.contains(&p) {
                peers.push(p);
            }
        }
        writers.push(tokio::spawn(writer(
            i,
            sink,
            peers,
            o.clone(),
            sh.clone(),
            rng.u64(..),
        )));
    }
    let reloaded = traffic_wait(o, sw).await;
    sh.stop_sending.store(true, Ordering::Relaxed);
    let reloaded = reloaded?;
    let mut sinks = Vec::with_capacity(n);
    for w in writers {
        sinks.push(w.await?);
    }
    let traffic_wall = t_traffic.elapsed();
    sh.traffic_stop_us.store(sh.now_us(), Ordering::Relaxed);
    let cpu1 = cpu_seconds(sw.pid()).context("switch CPU time")?;
    let own1 = own_cpu_seconds();
    let mach1 = machine_jiffies();
    ctl_stop.store(true, Ordering::Relaxed);
    let (load_lp, load_lf) = tokio::task::spawn_blocking(move || ctl_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the control-API thread panicked"))?;

    // --- drain: wait until everything sent has arrived, or nothing moves for 3 s
    let expected_total = |sh: &Shared| -> u64 {
        let bc: u64 = sh
            .clients
            .iter()
            .map(|c| c.bc_tx.load(Ordering::Relaxed))
            .sum();
        sh.clients
            .iter()
            .map(|c| c.uni_expected.load(Ordering::Relaxed) + bc - c.bc_tx.load(Ordering::Relaxed))
            .sum()
    };
    let received_total = |sh: &Shared| -> u64 {
        sh.clients
            .iter()
            .map(|c| c.uni_rx.load(Ordering::Relaxed) + c.bc_rx.load(Ordering::Relaxed))
            .sum()
    };
    let t_drain = Instant::now();
    let (mut last, mut last_change) = (received_total(&sh), Instant::now());
    while received_total(&sh) < expected_total(&sh)
        && last_change.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = received_total(&sh);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    let drain = t_drain.elapsed();
    check_alive(sw)?;
    let final_ports = rpc(sw.ctl_addr(), "listPort")?.1;
    let rss_end = rss_kib(sw.pid()).unwrap_or(0);

    // --- close the connections; the readers end with them
    sh.closing.store(true, Ordering::Relaxed);
    for mut s in sinks {
        let _ = s.close().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut outs = Vec::with_capacity(n);
    let mut not_closed = 0;
    for r in readers {
        let abort = r.abort_handle();
        match tokio::time::timeout_at(deadline, r).await {
            Ok(out) => outs.push(out?),
            Err(_) => {
                abort.abort();
                not_closed += 1;
                outs.push(ReaderOut::default());
            }
        }
    }

    // --- the numbers
    let traffic_range = (t_traffic, t_traffic + traffic_wall);
    let (rss_max, rss_samples_n) = {
        let s = rss_samples.lock().unwrap();
        let during: Vec<u64> = s
            .iter()
            .filter(|(t, _)| *t >= traffic_range.0 && *t <= traffic_range.1)
            .map(|(_, k)| *k)
            .collect();
        (during.iter().copied().max().unwrap_or(0), during.len())
    };
    let wall = traffic_wall.as_secs_f64();
    let sw_cpu = cpu1 - cpu0;
    let own_cpu = own1 - own0;
    let (busy, total) = (mach1.0 - mach0.0, mach1.1 - mach0.1);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let busy_frac = busy as f64 / total.max(1) as f64;

    let bc_total: u64 = sh
        .clients
        .iter()
        .map(|c| c.bc_tx.load(Ordering::Relaxed))
        .sum();
    let uni_total: u64 = sh
        .clients
        .iter()
        .map(|c| c.uni_tx.load(Ordering::Relaxed))
        .sum();
    let mut ratios = Vec::with_capacity(n);
    let mut sent_ratios = Vec::with_capacity(n);
    let (mut lost, mut extra, mut received) = (0u64, 0u64, 0u64);
    let scheduled = o.seconds as f64 * f64::from(o.unicast_pps);
    for c in &sh.clients {
        let want =
            c.uni_expected.load(Ordering::Relaxed) + bc_total - c.bc_tx.load(Ordering::Relaxed);
        let got = c.uni_rx.load(Ordering::Relaxed) + c.bc_rx.load(Ordering::Relaxed);
        received += got;
        lost += want.saturating_sub(got);
        extra += got.saturating_sub(want);
        ratios.push(if want == 0 {
            1.0
        } else {
            got as f64 / want as f64
        });
        sent_ratios.push(c.uni_tx.load(Ordering::Relaxed) as f64 / scheduled);
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let ratios = sorted(ratios);
    let sent_ratios = sorted(sent_ratios);
    let below90 = ratios.iter().filter(|&&r| r < 0.9).count();
    let stray: u64 = sh
        .clients
        .iter()
        .map(|c| c.stray_rx.load(Ordering::Relaxed))
        .sum();
    let send_errors: u64 = sh
        .clients
        .iter()
        .map(|c| c.send_errors.load(Ordering::Relaxed))
        .sum();
    let closed = sh
        .clients
        .iter()
        .filter(|c| c.closed.load(Ordering::Relaxed))
        .count();
    let mut gaps: Vec<u64> = outs.iter().map(|r| r.max_gap_us).collect();
    gaps.sort_unstable();
    // Per client, the 99th percentile of the delivery latency of all it received.
    let mut client_p99: Vec<u32> = outs
        .iter()
        .map(|r| {
            let mut v: Vec<u32> = r.uni_lat_us.iter().chain(&r.bc_lat_us).copied().collect();
            v.sort_unstable();
            pct(&v, 99.0).unwrap_or(0)
        })
        .collect();
    client_p99.sort_unstable();
    let mut uni_lat = Vec::new();
    let mut bc_lat = Vec::new();
    for r in &mut outs {
        uni_lat.append(&mut r.uni_lat_us);
        bc_lat.append(&mut r.bc_lat_us);
    }
    let mut port_sums: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ports_dropping = 0;
    for p in entries(&final_ports) {
        for k in ["tx_dropped", "rx_invalid", "storm_dropped", "macs_refused"] {
            *port_sums.entry(k).or_default() += p[k].as_u64().unwrap_or(0);
        }
        if p["tx_dropped"].as_u64().unwrap_or(0) > 0 {
            ports_dropping += 1;
        }
    }
    let mut connect_each = connect_each;
    connect_each.sort();

    let f2 = |x: f64| format!("{x:.3}");
    let mut t = String::new();
    let heading = format!("{SECTION_PREFIX}{} WebSocket clients", thousands(n as u64));
    let _ = writeln!(t, "{heading}\n");
    let _ = writeln!(
        t,
        "- Machine: {}; `{}`.",
        machine(),
        command_output(&["rustc", "--version"])
    );
    let _ = writeln!(
        t,
        "- Date: {}; command: `{}` (release build, driver and switch on the same machine).",
        command_output(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        o.command
    );
    let _ = writeln!(
        t,
        "- Load average at start (1/5/15 min): {load_at_start}. The machine is shared: other \
         processes (e.g. compilers) may have run during the measurement."
    );
    let _ = writeln!(
        t,
        "- Switch: `etherws sw --foreground --host 127.0.0.1 --max-conns-per-addr 100000 \
         --max-conns 100000 --storm-pps 0 --max-macs-per-addr 100000 --ageout 3600` (defaults otherwise: \
         transmit queues of 4 MiB per port, 128 MiB in all, 1 s at most). \
         Driver: this process, {n} tokio-tungstenite clients on 2 tokio worker threads, \
         TCP_NODELAY, all on 127.0.0.1."
    );
    let _ = writeln!(
        t,
        "- Traffic: each client has its own MAC (02:4c:44:00:xx:xx). Learning is seeded with \
         one {}-byte broadcast per client (waves of {wave_size} clients, each wave delivered \
         before the next). Then for {} s every client sends {} unicast frames/s of {} bytes, \
         each to one of {} peers it picked at random, and one {}-byte broadcast every {} s \
         (random phase): {} unicast frames/s and {:.0} broadcasts/s in, {} broadcast \
         deliveries/s out (nominal).",
        60,
        o.seconds,
        o.unicast_pps,
        thousands(o.frame_bytes as u64),
        o.peers,
        o.bcast_bytes,
        o.bcast_every,
        thousands(n as u64 * u64::from(o.unicast_pps)),
        n as f64 / f64::from(o.bcast_every),
        thousands((n * (n - 1)) as u64 / u64::from(o.bcast_every)),
    );
    let _ = writeln!(
        t,
        "- Control API: a separate thread POSTs `listPort` and `listFdb` (each every 200 ms, \
         100 ms apart), one new HTTP connection per call like `etherws ctl`; latency is from \
         connect to the last byte of the answer. Every answer is checked to hold {n} entries."
    );
    let _ = writeln!(
        t,
        "- Fairness: per client, frames received / frames addressed to it (unicast sent to it \
         + broadcasts sent by the others), counted after a drain once sending stopped."
    );
    let _ = writeln!(t);
    let median_sent = sent_ratios[sent_ratios.len() / 2];
    if median_sent < 0.95 || busy_frac > 0.95 {
        let _ = writeln!(
            t,
            "**The machine was saturated** ({:.0} % busy; median client sent {:.0} % of its \
             schedule): latencies include waiting for a CPU, and the offered load was {}.\n",
            100.0 * busy_frac,
            100.0 * median_sent,
            if median_sent < 0.95 {
                "not reached"
            } else {
                "reached"
            }
        );
    }
    let _ = writeln!(t, "| Measure | Result |");
    let _ = writeln!(t, "|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(t, "| {k} | {v} |");
    };
    if let Some(r) = &reloaded {
        let after = server_ports(&final_ports);
        let kept = r.before.iter().filter(|p| after.contains(p)).count();
        row(
            "Reload halfway (SIGHUP, a new path)",
            format!(
                "applied {} after the signal; {} of {n} clients dropped ({kept} server ports \
                 kept, {closed} connections ended by the switch)",
                ms(r.took),
                n - kept,
            ),
        );
    }
    row(
        "Connect all clients",
        format!(
            "{} for {n} ({} handshakes in flight); per handshake p50 {} · p99 {} · max {}",
            ms(connect_all),
            CONNECT_CONCURRENCY,
            ms(pct(&connect_each, 50.0).unwrap_or_default()),
            ms(pct(&connect_each, 99.0).unwrap_or_default()),
            ms(connect_each.last().copied().unwrap_or_default()),
        ),
    );
    row(
        "Seeding (one broadcast per client)",
        format!(
            "{} for {} deliveries ({}/s), {} lost; FDB then holds {} entries",
            ms(seed_time),
            thousands((n * (n - 1)) as u64),
            thousands(((n * (n - 1)) as f64 / seed_time.as_secs_f64()) as u64),
            thousands(seeds_lost),
            entries(&fdb).len()
        ),
    );
    row(
        "Frames sent (traffic phase)",
        format!(
            "{} unicast ({}/s), {} broadcast ({:.1}/s)",
            thousands(uni_total),
            thousands((uni_total as f64 / wall) as u64),
            thousands(bc_total),
            bc_total as f64 / wall
        ),
    );
    row(
        "Unicast sent / scheduled, per client",
        format!(
            "min {} · median {} (a client whose sends block sends less)",
            f2(sent_ratios[0]),
            f2(sent_ratios[sent_ratios.len() / 2])
        ),
    );
    row(
        "Frames delivered to clients",
        format!(
            "{} ({}/s over the traffic phase)",
            thousands(received),
            thousands((received as f64 / wall) as u64)
        ),
    );
    row(
        "Switch CPU (traffic phase)",
        format!(
            "{sw_cpu:.1} s in {wall:.1} s = **{:.2} cores** (of {cpus})",
            sw_cpu / wall
        ),
    );
    row(
        "Driver CPU / whole machine busy",
        format!(
            "driver {:.2} cores; machine {:.0} % busy, of which {:.2} cores neither the switch \
             nor the driver (other processes, unattributed kernel time)",
            own_cpu / wall,
            100.0 * busy_frac,
            (busy_frac * cpus as f64 - sw_cpu / wall - own_cpu / wall).max(0.0)
        ),
    );
    row(
        "Switch RSS",
        format!(
            "started {}; {n} clients connected {}; traffic max **{}** ({} samples, 1/s); \
             at end {}",
            mib(rss_idle),
            mib(rss_connected),
            mib(rss_max),
            rss_samples_n,
            mib(rss_end)
        ),
    );
    row("`listPort` latency at rest", ctl_summary(idle_lp, n));
    row("`listFdb` latency at rest", ctl_summary(idle_lf, n));
    row(
        "`listPort` latency under load",
        format!("**{}**", ctl_summary(load_lp, n)),
    );
    row(
        "`listFdb` latency under load",
        format!("**{}**", ctl_summary(load_lf, n)),
    );
    row("Unicast delivery latency", us_summary(uni_lat));
    row("Broadcast delivery latency", us_summary(bc_lat));
    row(
        "Per-client p99 delivery latency",
        format!(
            "best client {} · median client {} · worst client {}",
            us_ms(client_p99[0]),
            us_ms(client_p99[client_p99.len() / 2]),
            us_ms(client_p99[client_p99.len() - 1])
        ),
    );
    row(
        "Received / expected, per client",
        format!(
            "min **{}** · median {}; **{below90} clients below 90 %**",
            f2(ratios[0]),
            f2(ratios[ratios.len() / 2])
        ),
    );
    row(
        "Frames lost (expected − received)",
        format!(
            "{} (of {}); unexpected extra {}; unicast to the wrong client {}",
            thousands(lost),
            thousands(received + lost - extra),
            thousands(extra),
            thousands(stray)
        ),
    );
    row(
        "Switch `tx_dropped` (queue full)",
        format!(
            "**{}** total, on {ports_dropping} ports; rx_invalid {}, storm_dropped {}, \
             macs_refused {}",
            thousands(port_sums.get("tx_dropped").copied().unwrap_or(0)),
            port_sums.get("rx_invalid").copied().unwrap_or(0),
            port_sums.get("storm_dropped").copied().unwrap_or(0),
            port_sums.get("macs_refused").copied().unwrap_or(0),
        ),
    );
    row(
        "Longest silence of one client (traffic phase)",
        format!(
            "max {} · median over clients {} (a client expects ~{:.0} frames/s)",
            us_ms(gaps.last().copied().unwrap_or(0).min(u64::from(u32::MAX)) as u32),
            us_ms(gaps[gaps.len() / 2].min(u64::from(u32::MAX)) as u32),
            received as f64 / wall / n as f64
        ),
    );
    row(
        "Drain after sending stopped",
        format!(
            "{}; send errors {send_errors}; connections closed by the switch {closed}; \
             not closed within 15 s of the driver's Close {not_closed}",
            ms(drain)
        ),
    );
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_or_appended() {
        let doc = "# B\n\nintro\n\n## Load: 1,000 WebSocket clients\n\nold\n\n## Other\n\nx\n";
        let new = replace_section(
            doc,
            "## Load: 1,000 WebSocket clients",
            "## Load: 1,000 WebSocket clients\n\nnew\n",
        );
        assert_eq!(
            new,
            "# B\n\nintro\n\n## Load: 1,000 WebSocket clients\n\nnew\n\n## Other\n\nx\n"
        );
        let added = replace_section(
            "# B\n\nintro\n",
            "## Load: 2 WebSocket clients",
            "## Load: 2 WebSocket clients\n\nt\n",
        );
        assert_eq!(added, "# B\n\nintro\n\n## Load: 2 WebSocket clients\n\nt\n");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
