//! `cargo xtask bench [--quick] [--only NAME…] [--write]`: throughput, latency, small-frame
//! rate and CPU cost of etherws against OpenVPN, a kernel VXLAN tunnel and Linux bridges, each
//! scenario in its own network namespaces (addresses from 192.0.2.0/24 and 198.51.100.0/24
//! only; host interfaces are never touched). The namespaces, veths, switches (the release
//! build), daemons, certificates and iperf3 runs come from the test kit (`etherws-testkit`),
//! whose guards delete everything a scenario creates when it ends, on error and on panic too;
//! the kit panics on failure, and each scenario runs under `catch_unwind`, a panic being that
//! scenario's failure. The namespaces are named `ewsb-…` (stale ones, left by a bench run that
//! was killed, are removed by the next run).
//!
//! Two groups of scenarios (`--only` takes scenario or group names). Every row runs with the
//! hosts' interfaces at their defaults (what users have): the bench changes no GRO, checksum or
//! other offload setting, except in the one extra row whose name says so.
//!
//! - `offload` (eBPF offload issue): one switch namespace between two host namespaces, the
//!   hosts on veths. `af_packet` (two plain netdev ports), `af_xdp` (the ingress port
//!   `--offload=xdp`: XDP + AF_XDP into userspace, out through AF_PACKET), `xdp_kernel`,
//!   `tc_kernel` and `auto_kernel` (both ports `--offload=xdp`, `=tc` or `--offload`, auto:
//!   unicast switched in the kernel, before or after GRO), `linux_bridge` (a bridge instead of
//!   etherws), and the extra `xdp_kernel_gro_on` (as `xdp_kernel`, the host veths with GRO
//!   on, which native XDP redirect into a veth needs, and TX checksum offload off).
//! - `tunnel` (fast tunnel issue): host1 — switchA — switchB — host2, the switches joined by one
//!   tunnel over a veth. etherws `ws`/`wss` with TAP ports (the switch namespaces are the
//!   hosts), super-frames (the default) and `_strict` (`--strict-frames` on both switches);
//!   `ws_netdev` rows with netdev ports, offloaded (`--offload`: auto; `_xdp`, `_tc`: that
//!   program) or not (`_nooffload`); `quic_tap` (etherws over QUIC: HTTP/3 datagrams, TAP
//!   ports; `_cubic`, `_newreno`: that `--quic-congestion`), checked against `ws_tap`
//!   (target ≥ 0.5×) and `wss_tap`, `wss_tap_strict` (both encrypt);
//!   OpenVPN 2.6 TAP over TCP plain and TLS (AES-128-GCM), SoftEther VPN (two Debian
//!   `vpnserver`s, B's hub cascaded to A's over one TLS connection, each hub bridged to a TAP)
//!   and a kernel VXLAN tunnel, each bridged to the host veth, and plain Linux bridges (the
//!   upper bound). The report gives each etherws row as ratios to OpenVPN (plain for `ws`, TLS
//!   for `wss`; SoftEther too for `wss`) and to VXLAN of the same run, and draws the TCP
//!   figures as an SVG chart (`bench-tunnel.svg` beside BENCHMARKS.md with `--write`; always
//!   in the log directory).
//!
//! Measurements: iperf3 TCP both ways (`-J`, 10 s, 3 s with `--quick`); ping RTT
//! (`-i 0.01 -c 200`, average and p99 of the per-packet times); small frames (60-byte
//! Ethernet frames sent from host1 by a raw AF_PACKET socket with `sendmmsg`, counted at
//! host2's interface: the most received per second and the loss at that load; for the offload
//! group also the highest paced rate with loss < 0.1 %, found by stepping down); CPU seconds per
//! GB moved by the two TCP runs: utime + stime of the switch/OpenVPN processes (both ends), and
//! of the whole machine (`/proc/stat`, everything but idle/iowait: includes iperf3 and the
//! kernel's softirq work, the only cost of the kernel datapaths).

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etherws_testkit::{
    Ca, Daemon, KeyForm, Netns, Pki, ServerCert, Switch, Wan, WanSpec, build_frame, iperf3_for,
    parse_mac, ping_within, poll, use_binary, use_netns_prefix, veth,
};

use crate::report::{BENCHMARKS_HEADER, loadavg, replace_section};

mod wan;
use crate::{cargo, root, run};

const H1_IP: &str = "192.0.2.1";
const H2_IP: &str = "192.0.2.2";
const A_IP: &str = "198.51.100.1";
const B_IP: &str = "198.51.100.2";
/// The switches' WebSocket port (their control ports they pick themselves).
const WS_PORT: u16 = 8080;
const OFFLOAD_HEADING: &str = "## Bench: eBPF offload (netdev ports, one switch)";
const TUNNEL_HEADING: &str = "## Bench: tunnel (etherws vs OpenVPN TAP over TCP)";

// ---------------------------------------------------------------------------------------------
// options and scenarios

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Offload,
    Tunnel,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    group: Group,
    what: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "af_packet",
        group: Group::Offload,
        what: "etherws, netdev ports via AF_PACKET",
    },
    Scenario {
        name: "af_xdp",
        group: Group::Offload,
        what: "etherws, ingress netdev via XDP + AF_XDP (egress AF_PACKET)",
    },
    Scenario {
        name: "xdp_kernel",
        group: Group::Offload,
        what: "etherws, both netdev `--offload=xdp`: in-kernel netdev↔netdev before GRO",
    },
    Scenario {
        name: "tc_kernel",
        group: Group::Offload,
        what: "etherws, both netdev `--offload=tc`: in-kernel netdev↔netdev after GRO",
    },
    Scenario {
        name: "auto_kernel",
        group: Group::Offload,
        what: "etherws, both netdev `--offload` (auto): in-kernel netdev↔netdev",
    },
    Scenario {
        name: "linux_bridge",
        group: Group::Offload,
        what: "Linux bridge",
    },
    Scenario {
        name: "xdp_kernel_gro_on",
        group: Group::Offload,
        what: "xdp_kernel (gro on): as `xdp_kernel`, host veths with GRO on and TX checksum \
               offload off",
    },
    Scenario {
        name: "ws_tap",
        group: Group::Tunnel,
        what: "etherws ws://, TAP ports, super-frames (default)",
    },
    Scenario {
        name: "ws_tap_strict",
        group: Group::Tunnel,
        what: "etherws ws://, TAP ports, `--strict-frames`",
    },
    Scenario {
        name: "wss_tap",
        group: Group::Tunnel,
        what: "etherws wss://, TAP ports, super-frames (default)",
    },
    Scenario {
        name: "wss_tap_strict",
        group: Group::Tunnel,
        what: "etherws wss://, TAP ports, `--strict-frames`",
    },
    Scenario {
        name: "quic_tap",
        group: Group::Tunnel,
        what: "etherws over QUIC (HTTP/3 datagrams), TAP ports, default controller",
    },
    Scenario {
        name: "quic_tap_cubic",
        group: Group::Tunnel,
        what: "etherws over QUIC, TAP ports, `--quic-congestion cubic`",
    },
    Scenario {
        name: "quic_tap_newreno",
        group: Group::Tunnel,
        what: "etherws over QUIC, TAP ports, `--quic-congestion newreno`",
    },
    Scenario {
        name: "ws_netdev",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload` (auto), super-frames (default)",
    },
    Scenario {
        name: "ws_netdev_xdp",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload=xdp`, super-frames (default)",
    },
    Scenario {
        name: "ws_netdev_tc",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload=tc`, super-frames (default)",
    },
    Scenario {
        name: "ws_netdev_strict",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload` (auto), `--strict-frames`",
    },
    Scenario {
        name: "ws_netdev_nooffload",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports (AF_PACKET), super-frames (default)",
    },
    Scenario {
        name: "wss_netdev",
        group: Group::Tunnel,
        what: "etherws wss://, netdev ports `--offload` (auto), super-frames (default)",
    },
    Scenario {
        name: "openvpn",
        group: Group::Tunnel,
        what: "OpenVPN TAP/TCP, no crypto",
    },
    Scenario {
        name: "openvpn_udp",
        group: Group::Tunnel,
        what: "OpenVPN TAP/UDP, no crypto",
    },
    Scenario {
        name: "tinc",
        group: Group::Tunnel,
        what: "tinc 1.0 switch mode, UDP (its default cipher)",
    },
    Scenario {
        name: "openvpn_tls",
        group: Group::Tunnel,
        what: "OpenVPN TAP/TCP, TLS AES-128-GCM",
    },
    Scenario {
        name: "softether",
        group: Group::Tunnel,
        what: "SoftEther VPN cascade (TLS), local bridges to TAPs",
    },
    Scenario {
        name: "vxlan",
        group: Group::Tunnel,
        what: "kernel VXLAN + bridges",
    },
    Scenario {
        name: "bridges",
        group: Group::Tunnel,
        what: "plain Linux bridges (no tunnel)",
    },
];

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Shorter runs (a smoke test of the benchmarks, not figures to publish).
    #[arg(long)]
    quick: bool,
    /// Update BENCHMARKS.md with the results.
    #[arg(long)]
    write: bool,
    /// Only these scenarios, or groups `offload` and `tunnel` (repeatable, comma-separated).
    #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',', value_parser = scenario_name)]
    only: Vec<String>,
    /// Measure the tunnel rows across a delay line with this path (one-way delay, loss, rate:
    /// `20ms`, `20ms,0.5%`, `50ms,1%,100mbit`), repeatable: the WAN table (see `wan.rs`).
    #[arg(long, value_name = "SPEC")]
    wan: Vec<WanSpec>,
    /// With `--wan`: the congestion control of the iperf3 flows inside the tunnels (`-C`, e.g.
    /// `cubic`, Linux's default); the hosts' default when not given.
    #[arg(long, value_name = "NAME")]
    inner_cc: Option<String>,
    /// One more argument for every etherws switch (repeatable), e.g.
    /// `--sw-arg=--congestion=cubic`: an etherws setting compared across runs.
    #[arg(long = "sw-arg", value_name = "ARG", allow_hyphen_values = true)]
    sw_args: Vec<String>,
    /// The MTU of the QUIC rows' TAPs: `default` (left as created, 1500, as every other
    /// row's: the switch fits TCP to the datagram size and sends the rest as capsules), `fit`
    /// (the largest whose frames fit in one datagram, as `listPort`'s `max_datagram` says once
    /// the path MTU is found), or a number.
    #[arg(long, value_name = "default|fit|MTU", default_value = "default", value_parser = quic_mtu)]
    quic_tap_mtu: QuicMtu,
}

/// `--quic-tap-mtu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QuicMtu {
    Default,
    Fit,
    Fixed(u32),
}

fn quic_mtu(v: &str) -> Result<QuicMtu, String> {
    match v {
        "default" => Ok(QuicMtu::Default),
        "fit" => Ok(QuicMtu::Fit),
        n => n
            .parse()
            .ok()
            .filter(|m| (576..=9000).contains(m))
            .map(QuicMtu::Fixed)
            .ok_or_else(|| format!("{v:?}: `default`, `fit` or an MTU from 576 to 9000")),
    }
}

fn scenario_name(n: &str) -> Result<String, String> {
    if n == "offload" || n == "tunnel" || SCENARIOS.iter().any(|s| s.name == n) {
        Ok(n.to_string())
    } else {
        Err(format!(
            "unknown scenario {n:?} (offload, tunnel, {})",
            SCENARIOS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn selected(o: &Opts, s: &Scenario) -> bool {
    o.only.is_empty()
        || o.only.iter().any(|n| {
            n == s.name
                || (n == "offload" && s.group == Group::Offload)
                || (n == "tunnel" && s.group == Group::Tunnel)
        })
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// `utime + stime` of every process named `comm` in these namespaces, in clock ticks.
fn proc_ticks(nss: &[Rc<Netns>], comm: &str) -> u64 {
    let mut sum = 0;
    for ns in nss {
        for pid in ns.pids() {
            let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if c.trim() != comm {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the ")" that ends the command name: state is field 3, utime 14.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let t = |i: usize| f.get(i - 3).and_then(|x| x.parse::<u64>().ok());
                sum += t(14).unwrap_or(0) + t(15).unwrap_or(0);
            }
        }
    }
    sum
}

/// Busy ticks of the whole machine (all but idle and iowait).
fn sys_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = s.lines().next().unwrap_or("");
    cpu.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

// ---------------------------------------------------------------------------------------------
// measurements

/// A host: an interface in a namespace (shared with the topology that owns it).
struct Endpoint {
    ns: Rc<Netns>,
    ifname: &'static str,
}

/// One iperf3 TCP run from host1 (`client`) to host2 (`server`, `addr`); `reverse`: host2 sends;
/// `more`: other client options. Returns (Mbit/s, bytes received).
fn iperf_tcp(
    client: &Netns,
    server: &Netns,
    addr: &str,
    secs: u32,
    reverse: bool,
    more: &[&str],
) -> anyhow::Result<(f64, u64)> {
    let mut extra = more.to_vec();
    if reverse {
        extra.push("-R");
    }
    let port = if reverse { 5202 } else { 5201 };
    let r = iperf3_for(server, client, addr, port, secs, &extra);
    match r.error {
        None => Ok((r.mbit_s, r.received)),
        Some(e) => bail!("iperf3 {} failed: {e}", extra.join(" ")),
    }
}

/// What a ping run saw, in ms: average, p99 and maximum of the replies' times, and how many
/// got no reply.
#[derive(Clone, Copy, Debug)]
struct Ping {
    avg: f64,
    p99: f64,
    max: f64,
    lost: usize,
}

/// `ping -i 0.01 -c 200`.
fn ping_rtt(from: &Netns, to: &str) -> anyhow::Result<Ping> {
    let out = from.exec(&["ping", "-n", "-i", "0.01", "-c", "200", "-W", "1", to]);
    ping_stats(&String::from_utf8_lossy(&out.stdout), to)
}

/// Average, p99 and maximum of ping's per-reply lines; lost from its summary line.
fn ping_stats(text: &str, to: &str) -> anyhow::Result<Ping> {
    let mut times: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("time="))
        .filter_map(|t| t.parse().ok())
        .collect();
    if times.is_empty() {
        bail!("no ping replies from {to}: {text}");
    }
    let sent = text
        .lines()
        .find_map(|l| l.split_once(" packets transmitted"))
        .and_then(|(n, _)| n.trim().parse::<usize>().ok())
        .unwrap_or(times.len());
    times.sort_by(f64::total_cmp);
    let avg = times.iter().sum::<f64>() / times.len() as f64;
    let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Ping {
        avg,
        p99,
        max: times[times.len() - 1],
        lost: sent.saturating_sub(times.len()),
    })
}

/// Pings until they get through (ARP, learning), up to 15 s.
fn warm_up(from: &Netns, to: &str) {
    ping_within(from, to, Duration::from_secs(15));
}

/// A 60-byte Ethernet frame (64 on a wire with the FCS): IPv4/UDP from host1 to host2's
/// discard port, 18 bytes of payload.
fn small_frame(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut iph = [
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    let mut sum: u32 = iph
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    iph[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut payload = iph.to_vec();
    payload.extend_from_slice(&[0x9c, 0x40, 0, 9, 0, 26, 0, 0]); // 40000 -> 9, no checksum
    build_frame(dst, src, None, 0x0800, &payload)
}

/// Sends `frame` on `ifname` in `ns` for `dur` with `sendmmsg` (qdisc bypassed), at `pps` if
/// given, else as fast as one core can. Returns (frames sent, seconds).
fn blast(
    ns: &Netns,
    ifname: &str,
    frame: Vec<u8>,
    pps: Option<f64>,
    dur: Duration,
) -> anyhow::Result<(u64, f64)> {
    let ifname = std::ffi::CString::new(ifname)?;
    ns.enter(move || -> anyhow::Result<(u64, f64)> {
        const BATCH: usize = 64;
        // SAFETY: plain syscalls on a descriptor owned here (closed on drop); the message
        // headers point into `frame`, `sll` and `iov`, which outlive every sendmmsg call.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                bail!("socket: {}", std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
            if sll.sll_ifindex == 0 {
                bail!("no interface {ifname:?}");
            }
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&frame[..6]);
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                20, // PACKET_QDISC_BYPASS
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let mut iov = libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            };
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                .map(|_| {
                    let mut m: libc::mmsghdr = std::mem::zeroed();
                    m.msg_hdr.msg_name = &mut sll as *mut _ as *mut libc::c_void;
                    m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    m.msg_hdr.msg_iov = &mut iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let start = Instant::now();
            let mut sent = 0u64;
            loop {
                let now = start.elapsed();
                if now >= dur {
                    break;
                }
                if let Some(pps) = pps {
                    let due = Duration::from_secs_f64(sent as f64 / pps);
                    if due > now {
                        let ahead = due - now;
                        if ahead > Duration::from_micros(200) {
                            thread::sleep(ahead);
                        }
                        continue;
                    }
                }
                let n = libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0);
                if n > 0 {
                    sent += n as u64;
                }
            }
            Ok((sent, start.elapsed().as_secs_f64()))
        }
    })
}

/// Small frames host1 → host2 at an offered rate: (received frames/s, loss fraction).
fn frames(h1: &Endpoint, h2: &Endpoint, pps: Option<f64>, secs: f64) -> anyhow::Result<(f64, f64)> {
    let frame = small_frame(
        parse_mac(&h1.ns.mac(h1.ifname)),
        parse_mac(&h2.ns.mac(h2.ifname)),
    );
    let before = h2.ns.rx_packets(h2.ifname);
    let (sent, took) = blast(&h1.ns, h1.ifname, frame, pps, Duration::from_secs_f64(secs))?;
    thread::sleep(Duration::from_millis(300)); // let queues drain
    let got = h2.ns.rx_packets(h2.ifname).saturating_sub(before);
    let loss = if sent == 0 {
        1.0
    } else {
        1.0 - (got.min(sent) as f64 / sent as f64)
    };
    Ok((got as f64 / took, loss))
}

// ---------------------------------------------------------------------------------------------
// topologies

/// A running scenario. Fields drop in declaration order: the processes first, then the
/// namespaces (each with the last of its `Rc`s).
struct Topo {
    _switches: Vec<Switch>,
    _daemons: Vec<Daemon>,
    h1: Endpoint,
    h2: Endpoint,
    /// Processes whose CPU is counted: (name, namespaces to look in).
    cpu: Option<(&'static str, Vec<Rc<Netns>>)>,
    /// The delay line between the switch namespaces (`--wan`).
    wan: Option<Wan>,
    _nss: Vec<Rc<Netns>>,
    note: String,
    /// etherws tunnels: switch B's client port and whether it should carry super-frames
    /// (checked in `listPort` once traffic passed).
    check_super: Option<(u32, bool)>,
}

struct Env {
    logs: PathBuf,
    /// The switch A certificate (`CN=switch-a`, for 198.51.100.1) and its CA, for `wss://` and
    /// OpenVPN TLS.
    pki: Option<BenchPki>,
    /// `--sw-arg`s, given to every etherws switch.
    sw_args: Vec<String>,
    /// `--quic-tap-mtu`.
    quic_tap_mtu: QuicMtu,
}

struct BenchPki {
    /// Owns the files (removed with it).
    _pki: Pki,
    ca: Ca,
    srv: ServerCert,
    /// Switch B's client certificate (`CN=switch-b`), for OpenVPN TLS (whose server checks
    /// its client's certificate).
    cli: ServerCert,
}

fn make_pki() -> BenchPki {
    let pki = Pki::new("bench-pki");
    let ca = pki.ca("bench");
    let srv = pki.server(&ca, "switch-a", &[A_IP], KeyForm::Pkcs8);
    let cli = pki.client(&ca, "switch-b", KeyForm::Pkcs8);
    BenchPki {
        _pki: pki,
        ca,
        srv,
        cli,
    }
}

/// `etherws sw --foreground --host HOST --port 8080 EXTRA…` in `ns` (the release build, its
/// log in the bench's log directory), ready when `ctl listport` answers.
fn start_switch(env: &Env, log: &str, ns: &Netns, host: &str, extra: &[&str]) -> Switch {
    let more: Vec<&str> = env.sw_args.iter().map(String::as_str).collect();
    Switch::builder(log)
        .netns(ns)
        .host(host)
        .port(WS_PORT)
        .args(extra)
        .args(&more)
        .log_file(env.logs.join(format!("{log}.log")))
        .start()
}

/// Whether a netdev port's listport type says an eBPF program is attached (`netdev/xdp`,
/// `netdev/tc`, or their `-user` forms: frames into it through userspace).
fn offloaded(kind: &str) -> bool {
    kind.starts_with("netdev/xdp") || kind.starts_with("netdev/tc")
}

/// A row's `--offload` option from its name: `_xdp`/`xdp_` → `--offload=xdp`, `_tc`/`tc_` →
/// `--offload=tc`, `_nooffload` and `af_packet` → none, otherwise `--offload` (auto).
fn offload_opt(name: &str) -> Option<&'static str> {
    let words: Vec<&str> = name.split('_').collect();
    if words.contains(&"nooffload") || name == "af_packet" {
        None
    } else if words.contains(&"xdp") {
        Some("--offload=xdp")
    } else if words.contains(&"tc") {
        Some("--offload=tc")
    } else {
        Some("--offload")
    }
}

/// Adds a netdev port with this `--offload` option (or none); returns its listport type
/// (`netdev`, or with an offload `netdev/xdp`, `netdev/tc`, their `-user` forms, or
/// `netdev/fallback`).
fn add_netdev(sw: &Switch, dev: &str, offload: Option<&str>) -> String {
    sw.add_port("netdev", dev, offload.as_slice()).kind
}

/// Whether an etherws tunnel row runs TAP ports (the switch namespaces are the hosts) rather
/// than netdev ports on host veths: `ws_tap`, `wss_tap` and their `_strict` rows. (Matching the
/// name's end once made the `_strict` TAP rows run offloaded netdev ports instead.)
fn tap_ports(name: &str) -> bool {
    etherws_row(name) && name.contains("_tap")
}

/// Whether a tunnel row is etherws (`ws…`, `wss…`, `quic…`) rather than a reference.
fn etherws_row(name: &str) -> bool {
    name.starts_with("ws") || quic_row(name)
}

/// Whether a tunnel row is etherws over QUIC (`quic_tap`, `quic_tap_cubic`, …).
fn quic_row(name: &str) -> bool {
    name.starts_with("quic")
}

/// A QUIC row's `--quic-congestion` from its name's last word (`_cubic`, `_newreno`); none
/// (the switch's default) otherwise.
fn quic_congestion(name: &str) -> Option<&'static str> {
    match name.rsplit('_').next() {
        Some("cubic") => Some("cubic"),
        Some("newreno") => Some("newreno"),
        Some("bbr") => Some("bbr"),
        _ => None,
    }
}

/// host1 ── s1 [switch namespace] s2 ── host2.
fn offload_topo(s: &Scenario, env: &Env) -> Topo {
    let mid = Rc::new(Netns::new("mid"));
    let n1 = Rc::new(Netns::new("h1"));
    let n2 = Rc::new(Netns::new("h2"));
    veth(&n1, "h1", Some(&format!("{H1_IP}/24")), &mid, "s1", None);
    veth(&n2, "h2", Some(&format!("{H2_IP}/24")), &mid, "s2", None);
    // Hosts keep a new veth's defaults (what users have) in every row but the extra
    // `xdp_kernel_gro_on`: GRO on (native XDP redirect into a veth needs its peer to have
    // NAPI), TX checksum offload off (frames switched by XDP lose the "checksum partial" state).
    if s.name == "xdp_kernel_gro_on" {
        for (n, i) in [(&n1, "h1"), (&n2, "h2")] {
            n.set_gro(i, true);
            n.set_tx_csum(i, false);
        }
    }
    let mut switches = Vec::new();
    let mut cpu = None;
    let mut note = String::new();
    if s.name == "linux_bridge" {
        mid.bridge("br0", &["s1", "s2"]);
    } else {
        let sw = start_switch(env, &format!("{}-switch", s.name), &mid, "127.0.0.1", &[]);
        let o = offload_opt(s.name);
        // `af_xdp`: only the ingress port is offloaded (XDP + AF_XDP into userspace).
        let (o1, o2) = (o, if s.name == "af_xdp" { None } else { o });
        let t1 = add_netdev(&sw, "s1", o1);
        let t2 = add_netdev(&sw, "s2", o2);
        if (o1.is_some() && !offloaded(&t1)) || (o2.is_some() && !offloaded(&t2)) {
            note = format!("offload fell back to AF_PACKET (ports: {t1}, {t2})");
        } else if o.is_some() {
            note = format!("ports: {t1}, {t2}");
        }
        switches.push(sw);
        cpu = Some(("etherws", vec![mid.clone()]));
    }
    Topo {
        _switches: switches,
        _daemons: Vec::new(),
        h1: Endpoint {
            ns: n1.clone(),
            ifname: "h1",
        },
        h2: Endpoint {
            ns: n2.clone(),
            ifname: "h2",
        },
        cpu,
        wan: None,
        _nss: vec![mid, n1, n2],
        note,
        check_super: None,
    }
}

/// host1 ── a1 [switchA] tA ══ tB [switchB] b1 ── host2 (TAP variants: the switch namespaces
/// are the hosts); with `wan`, tA and tB are joined by a delay line instead of one veth.
fn tunnel_topo(s: &Scenario, env: &Env, wan: Option<WanSpec>) -> anyhow::Result<Topo> {
    let na = Rc::new(Netns::new("swA"));
    let nb = Rc::new(Netns::new("swB"));
    let bridges = s.name == "bridges";
    let (a_addr, b_addr) = (format!("{A_IP}/24"), format!("{B_IP}/24"));
    let (a_addr, b_addr) = (
        (!bridges).then_some(a_addr.as_str()),
        (!bridges).then_some(b_addr.as_str()),
    );
    // Room for VXLAN's 50 bytes around 1500-byte frames; the same link for every scenario.
    let wan = wan.map(|spec| Wan::between(&na, "tA", a_addr, &nb, "tB", b_addr, 1550, spec));
    if wan.is_none() {
        veth(&na, "tA", a_addr, &nb, "tB", b_addr);
        na.set_mtu("tA", 1550);
        nb.set_mtu("tB", 1550);
    }
    let tap = tap_ports(s.name);
    let mut nss = vec![na.clone(), nb.clone()];
    let (h1, h2) = if tap {
        (
            Endpoint {
                ns: na.clone(),
                ifname: "ewsA0",
            },
            Endpoint {
                ns: nb.clone(),
                ifname: "ewsB0",
            },
        )
    } else {
        let n1 = Rc::new(Netns::new("h1"));
        let n2 = Rc::new(Netns::new("h2"));
        veth(&n1, "h1", Some(&format!("{H1_IP}/24")), &na, "a1", None);
        veth(&n2, "h2", Some(&format!("{H2_IP}/24")), &nb, "b1", None);
        // The hosts' veths keep their defaults (no GRO or checksum offload changes).
        nss.push(n1.clone());
        nss.push(n2.clone());
        (
            Endpoint {
                ns: n1,
                ifname: "h1",
            },
            Endpoint {
                ns: n2,
                ifname: "h2",
            },
        )
    };
    let mut switches = Vec::new();
    let mut daemons = Vec::new();
    let mut cpu = None;
    let mut note = String::new();
    let mut check_super = None;
    let log = |n: &str| env.logs.join(format!("{}-{n}.log", s.name));
    match s.name {
        n if n.starts_with("ws") => {
            let tls = n.starts_with("wss");
            let strict = n.ends_with("_strict");
            let offload = offload_opt(n);
            let pki = env.pki.as_ref().context("no certificates")?;
            let mut a_args: Vec<&str> = Vec::new();
            let mut b_args: Vec<&str> = Vec::new();
            if tls {
                a_args.extend(["--sslkey", &pki.srv.key, "--sslcert", &pki.srv.cert]);
            }
            if strict {
                a_args.push("--strict-frames");
                b_args.push("--strict-frames");
            }
            let a = start_switch(env, &format!("{}-switchA", s.name), &na, A_IP, &a_args);
            let b = start_switch(env, &format!("{}-switchB", s.name), &nb, B_IP, &b_args);
            if tap {
                a.add_tap(&na, "ewsA0", H1_IP);
                b.add_tap(&nb, "ewsB0", H2_IP);
            } else {
                let ta = add_netdev(&a, "a1", offload);
                let tb = add_netdev(&b, "b1", offload);
                if offload.is_some() && (!offloaded(&ta) || !offloaded(&tb)) {
                    note = format!("offload fell back to AF_PACKET ({ta}, {tb})");
                } else if offload.is_some() {
                    note = format!("ports: {ta}, {tb}");
                }
            }
            let url = format!("{}://{A_IP}:{}/", if tls { "wss" } else { "ws" }, a.ws_port);
            let ca_opts: &[&str] = if tls {
                &["--cacerts", &pki.ca.cert]
            } else {
                &[]
            };
            let client = b.add_port("client", &url, ca_opts);
            switches.extend([a, b]);
            cpu = Some(("etherws", vec![na.clone(), nb.clone()]));
            check_super = Some((client.port, !strict));
        }
        n if quic_row(n) => {
            switches = quic_switches(s, env, &na, &nb)?;
            note = quic_tap_mtu(env, &switches, &na, &nb);
            cpu = Some(("etherws", vec![na.clone(), nb.clone()]));
        }
        "softether" => {
            daemons = softether(env, s, &na, &nb)?;
            cpu = Some(("vpnserver", vec![na.clone(), nb.clone()]));
        }
        "openvpn" | "openvpn_tls" | "openvpn_udp" => {
            // (A's arguments, B's arguments)
            let crypto = |side_a: bool| -> anyhow::Result<Vec<String>> {
                if s.name != "openvpn_tls" {
                    return Ok(["--cipher", "none", "--auth", "none"]
                        .map(String::from)
                        .to_vec());
                }
                let pki = env.pki.as_ref().context("no certificates")?;
                let (own, peer_name, peer_kind) = if side_a {
                    (&pki.srv, "switch-b", "client")
                } else {
                    (&pki.cli, "switch-a", "server")
                };
                Ok([
                    "--ca",
                    &pki.ca.cert,
                    "--cert",
                    &own.cert,
                    "--key",
                    &own.key,
                    "--dh",
                    "none",
                    "--data-ciphers",
                    "AES-128-GCM",
                    "--cipher",
                    "AES-128-GCM",
                    "--remote-cert-tls",
                    peer_kind,
                    "--verify-x509-name",
                    peer_name,
                    "name",
                ]
                .map(String::from)
                .to_vec())
            };
            let udp = s.name == "openvpn_udp";
            let common = [
                "openvpn",
                "--dev",
                "tap0",
                "--dev-type",
                "tap",
                "--verb",
                "3",
            ];
            let mut a: Vec<String> = common.map(String::from).to_vec();
            let mut b: Vec<String> = common.map(String::from).to_vec();
            let (server, client) = if udp {
                ("udp", "udp")
            } else {
                a.push("--tcp-nodelay".into());
                b.push("--tcp-nodelay".into());
                ("tcp-server", "tcp-client")
            };
            a.extend(["--proto", server, "--local", A_IP, "--lport", "1194"].map(String::from));
            b.extend(["--proto", client, "--remote", A_IP, "1194"].map(String::from));
            if s.name == "openvpn_tls" {
                a.push("--tls-server".into());
                b.push("--tls-client".into());
            }
            a.extend(crypto(true)?);
            b.extend(crypto(false)?);
            let av: Vec<&str> = a.iter().map(String::as_str).collect();
            let bv: Vec<&str> = b.iter().map(String::as_str).collect();
            daemons.push(na.daemon_with_log(&av, &log("openvpnA")));
            thread::sleep(Duration::from_millis(300));
            daemons.push(nb.daemon_with_log(&bv, &log("openvpnB")));
            for (ns, side, host_if) in [(&na, "openvpnA", "a1"), (&nb, "openvpnB", "b1")] {
                let l = log(side);
                poll(
                    &format!("{side} connected ({})", l.display()),
                    Duration::from_secs(20),
                    || {
                        let text = std::fs::read_to_string(&l).map_err(|e| e.to_string())?;
                        if text.contains("Initialization Sequence Completed") {
                            Ok(())
                        } else {
                            Err("not yet".to_string())
                        }
                    },
                );
                ns.ip(&["link", "set", "tap0", "up"]);
                ns.bridge("br0", &[host_if, "tap0"]);
            }
            cpu = Some(("openvpn", vec![na.clone(), nb.clone()]));
        }
        "vxlan" => {
            for (ns, local, remote, dev, host_if) in
                [(&na, A_IP, B_IP, "tA", "a1"), (&nb, B_IP, A_IP, "tB", "b1")]
            {
                ns.ip(&[
                    "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local, "remote",
                    remote, "dstport", "4789", "dev", dev,
                ]);
                ns.ip(&["link", "set", "vx0", "mtu", "1500", "up"]);
                ns.bridge("br0", &[host_if, "vx0"]);
            }
        }
        "tinc" => {
            daemons = tinc(env, s, &na, &nb)?;
            cpu = Some(("tincd", vec![na.clone(), nb.clone()]));
        }
        "bridges" => {
            na.bridge("br0", &["a1", "tA"]);
            nb.bridge("br0", &["b1", "tB"]);
        }
        other => bail!("no topology for {other}"),
    }
    Ok(Topo {
        _switches: switches,
        _daemons: daemons,
        h1,
        h2,
        cpu,
        wan,
        _nss: nss,
        note,
        check_super,
    })
}

/// A QUIC row's switches: A serves HTTP/3 (`--quic`, with the bench's certificate) on UDP at
/// its WebSocket port's number, B dials it (`addport client wss://A/ --transport quic
/// --cacerts CA`); both with the row's `--quic-congestion`, if its name gives one; TAP ports.
fn quic_switches(s: &Scenario, env: &Env, na: &Netns, nb: &Netns) -> anyhow::Result<Vec<Switch>> {
    let pki = env.pki.as_ref().context("no certificates")?;
    let cc: Vec<&str> = quic_congestion(s.name)
        .map(|c| vec!["--quic-congestion", c])
        .unwrap_or_default();
    let mut a_args = vec![
        "--quic",
        "--sslkey",
        &pki.srv.key,
        "--sslcert",
        &pki.srv.cert,
    ];
    a_args.extend(&cc);
    let a = start_switch(env, &format!("{}-switchA", s.name), na, A_IP, &a_args);
    let b = start_switch(env, &format!("{}-switchB", s.name), nb, B_IP, &cc);
    a.add_tap(na, "ewsA0", H1_IP);
    b.add_tap(nb, "ewsB0", H2_IP);
    let url = format!("wss://{A_IP}:{}/", a.ws_port);
    b.add_port(
        "client",
        &url,
        &["--transport", "quic", "--cacerts", &pki.ca.cert],
    );
    Ok(vec![a, b])
}

/// The largest TAP MTU whose frames (Ethernet header and the datagram's 1–2 byte prefix
/// added) fit the smaller `max_datagram` of the two QUIC ports; 0 while either is unknown.
fn fitting_mtu(max_datagrams: &[u64]) -> u32 {
    match max_datagrams.iter().min() {
        Some(&m) if m > 16 => (m - 16).min(1500) as u32,
        _ => 0,
    }
}

/// `--quic-tap-mtu` on both TAPs of a QUIC row (`default` leaves them alone): `fit` waits up to 15 s for the path MTU
/// (`max_datagram` above quinn's initial 1200-byte packets' on both ports, then steady), then sets the
/// MTU whose frames fit one datagram. Returns the row's note.
fn quic_tap_mtu(env: &Env, sw: &[Switch], na: &Netns, nb: &Netns) -> String {
    let quic_max = |s: &Switch| -> Option<u64> {
        let ports = s.rpc("listPort", serde_json::json!({}));
        ports["entries"]
            .as_array()?
            .iter()
            .find(|p| p["transport"] == "quic")
            .and_then(|p| p["max_datagram"].as_u64())
    };
    let (mtu, how) = match env.quic_tap_mtu {
        QuicMtu::Default => return String::new(),
        QuicMtu::Fixed(m) => (m, "`--quic-tap-mtu`".to_string()),
        QuicMtu::Fit => {
            // listPort publishes a QUIC port's state every second: settled once both ports
            // are past the initial 1200-byte packets and unchanged for 3 s.
            let deadline = Instant::now() + Duration::from_secs(15);
            let (mut last, mut since) = (Vec::new(), Instant::now());
            let seen = loop {
                let seen: Vec<u64> = sw.iter().filter_map(quic_max).collect();
                if seen != last {
                    (last, since) = (seen.clone(), Instant::now());
                }
                let up = seen.len() == sw.len() && seen.iter().all(|&m| m > 1200);
                let settled = up && since.elapsed() >= Duration::from_secs(3);
                if settled || Instant::now() > deadline {
                    break seen;
                }
                thread::sleep(Duration::from_millis(250));
            };
            let fit = fitting_mtu(&seen);
            let mtu = if fit == 0 { 1300 } else { fit };
            (mtu, format!("to fit `max_datagram` {seen:?} (A, B)"))
        }
    };
    na.set_mtu("ewsA0", mtu);
    nb.set_mtu("ewsB0", mtu);
    eprintln!("bench: QUIC row: TAP MTU {mtu}, {how}");
    format!("TAP MTU {mtu} ({how})")
}

/// Two tinc 1.0 daemons (Debian's `tinc`) in switch mode, A on 198.51.100.1:655 and B
/// connecting to it, each with its own configuration directory and RSA keys (`tincd -K`) in
/// the log directory, each TAP (`tinc0`) bridged to the host veth. tinc's defaults otherwise
/// (UDP for the data, its default cipher and digest).
fn tinc(env: &Env, s: &Scenario, na: &Netns, nb: &Netns) -> anyhow::Result<Vec<Daemon>> {
    let dir = |side: &str| env.logs.join(format!("{}-tinc{side}", s.name));
    for (ns, side, addr, peer) in [(na, "a", A_IP, "b"), (nb, "b", B_IP, "a")] {
        let d = dir(side);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("hosts"))?;
        std::fs::write(
            d.join("tinc.conf"),
            format!(
                "Name = {side}\nMode = switch\nDeviceType = tap\nInterface = tinc0\n\
                 AddressFamily = ipv4\nBindToAddress = {addr}\nConnectTo = {peer}\n"
            ),
        )?;
        std::fs::write(
            d.join("hosts").join(side),
            format!("Address = {addr}\nPort = 655\n"),
        )?;
        let dstr = d.display().to_string();
        let out = ns.exec(&["tincd", "-c", &dstr, "-K"]);
        if !out.status.success() {
            bail!("tincd -K in {}: {}", ns.name(), etherws_testkit::show(&out));
        }
    }
    for (side, peer) in [("a", "b"), ("b", "a")] {
        std::fs::copy(
            dir(side).join("hosts").join(side),
            dir(peer).join("hosts").join(side),
        )?;
    }
    let mut daemons = Vec::new();
    for (ns, side, host_if) in [(na, "a", "a1"), (nb, "b", "b1")] {
        let d = dir(side).display().to_string();
        let log = env.logs.join(format!("{}-tincd{side}.log", s.name));
        // Each its own pid file (the default one is shared: the second daemon would refuse).
        let pid = format!("--pidfile={d}/tincd.pid");
        daemons.push(ns.daemon_with_log(&["tincd", "-c", &d, &pid, "-D", "-d1"], &log));
        ns.wait_link("tinc0");
        ns.ip(&["link", "set", "tinc0", "up"]);
        ns.bridge("br0", &[host_if, "tinc0"]);
    }
    Ok(daemons)
}

/// SoftEther's admin tool (`vpncmd`) on the server in `ns`, hub `DEFAULT`: fails unless it
/// reports success.
fn vpncmd(ns: &Netns, cmd: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec![
        "vpncmd",
        "localhost:5555",
        "/SERVER",
        "/ADMINHUB:DEFAULT",
        "/CMD",
    ];
    argv.extend_from_slice(cmd);
    let out = ns.exec(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Error occurred") {
        bail!(
            "vpncmd {} in {}: {}",
            cmd.join(" "),
            ns.name(),
            text.lines()
                .filter(|l| l.contains("rror") || l.contains("failed"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(text)
}

/// Two SoftEther VPN servers (Debian's `vpnserver`), A in `na` and B in `nb`, each with its own
/// state directory (a private mount namespace binds directories of the log directory over
/// `/var/lib/softether`, `/var/log/softether` and `/run/softether`, where a server takes a
/// single-instance lock: with one shared, the second server quietly exits): B's hub cascades to A's over one TCP
/// connection (TLS) to 198.51.100.1:443, each hub has a local bridge to a TAP (`tap_se`),
/// and each TAP is joined to the host veth by a Linux bridge. The namespaces' guards kill what
/// is left of the servers (`vpnserver execsvc` forks a worker) after their daemon guards.
fn softether(env: &Env, s: &Scenario, na: &Netns, nb: &Netns) -> anyhow::Result<Vec<Daemon>> {
    let mut daemons = Vec::new();
    const PW: &str = "etherws-bench";
    let server = "/usr/libexec/softether/vpnserver/vpnserver";
    for (ns, side) in [(na, "A"), (nb, "B")] {
        let state = env.logs.join(format!("{}-state{side}", s.name));
        let (lib, logdir, run) = (state.join("lib"), state.join("log"), state.join("run"));
        for d in [&lib, &logdir, &run] {
            std::fs::create_dir_all(d)?;
        }
        let script = format!(
            "set -e; mount --make-rprivate /; \
             mkdir -p /var/lib/softether /var/log/softether /run/softether; \
             mount --bind '{}' /var/lib/softether; mount --bind '{}' /var/log/softether; \
             mount --bind '{}' /run/softether; exec {server} execsvc",
            lib.display(),
            logdir.display(),
            run.display()
        );
        let log = env.logs.join(format!("{}-vpnserver{side}.log", s.name));
        daemons.push(ns.daemon_with_log(&["unshare", "-m", "sh", "-c", &script], &log));
        poll(
            &format!("vpnserver {side} listening on 5555 ({})", log.display()),
            Duration::from_secs(20),
            || {
                let out = ns.exec(&["ss", "-ltnH", "sport = :5555"]);
                if String::from_utf8_lossy(&out.stdout).contains("5555") {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            },
        );
        if side == "A" {
            vpncmd(
                ns,
                &[
                    "UserCreate",
                    "benchuser",
                    "/GROUP:none",
                    "/REALNAME:none",
                    "/NOTE:none",
                ],
            )?;
            vpncmd(
                ns,
                &["UserPasswordSet", "benchuser", &format!("/PASSWORD:{PW}")],
            )?;
        } else {
            vpncmd(
                ns,
                &[
                    "CascadeCreate",
                    "c1",
                    &format!("/SERVER:{A_IP}:443"),
                    "/HUB:DEFAULT",
                    // (`cascade` is a name vpncmd refuses for a user.)
                    "/USERNAME:benchuser",
                ],
            )?;
            vpncmd(
                ns,
                &[
                    "CascadePasswordSet",
                    "c1",
                    &format!("/PASSWORD:{PW}"),
                    "/TYPE:standard",
                ],
            )?;
            vpncmd(
                ns,
                &[
                    "CascadeDetailSet",
                    "c1",
                    "/MAXTCP:1",
                    "/INTERVAL:1",
                    "/TTL:0",
                    "/HALF:no",
                    "/NOQOS:yes",
                ],
            )?;
            vpncmd(ns, &["CascadeOnline", "c1"])?;
        }
        vpncmd(ns, &["BridgeCreate", "DEFAULT", "/DEVICE:se", "/TAP:yes"])?;
    }
    poll(
        "SoftEther cascade B -> A established",
        Duration::from_secs(30),
        || match vpncmd(nb, &["CascadeStatusGet", "c1"]) {
            Ok(t) if t.contains("Session Established") => Ok(()),
            Ok(t) => Err(t
                .lines()
                .find(|l| l.starts_with("Session Status"))
                .unwrap_or("no status")
                .to_string()),
            Err(e) => Err(e.to_string()),
        },
    );
    let status = vpncmd(nb, &["CascadeStatusGet", "c1"])?;
    let _ = std::fs::write(
        env.logs.join(format!("{}-cascade-status.txt", s.name)),
        &status,
    );
    for (ns, host_if) in [(na, "a1"), (nb, "b1")] {
        ns.wait_link("tap_se");
        ns.ip(&["link", "set", "tap_se", "up"]);
        ns.bridge("br0", &[host_if, "tap_se"]);
    }
    Ok(daemons)
}

// ---------------------------------------------------------------------------------------------
// running a scenario

#[derive(Default, Clone)]
struct Res {
    name: &'static str,
    what: &'static str,
    up: Option<f64>,
    down: Option<f64>,
    ping: Option<Ping>,
    /// Most frames/s received, loss at that load.
    fps: Option<(f64, f64)>,
    /// Highest paced rate with loss < 0.1 %; `true` when the sender was the limit.
    zero_loss: Option<(f64, bool)>,
    cpu_proc: Option<f64>,
    cpu_sys: Option<f64>,
    /// `--wan`: pings during the h1→h2 transfer (average, p99, lost), and what the line did.
    ping_load: Option<Ping>,
    line: Option<String>,
    /// etherws tunnels: `listPort`'s `super_frames` of switch B's client port.
    super_frames: Option<bool>,
    /// etherws tunnels: the outer connection's congestion control (`listPort`'s `congestion`
    /// of switch B's client port), and what `listPort` says of the tunnel port at each end
    /// after the runs (QUIC: `transport`, `rtt_ms`, `lost_packets`, …).
    outer: Option<String>,
    outer_info: Vec<String>,
    /// `--wan`: one BBR flow and four CUBIC flows, (h1→h2, h2→h1) Mbit/s.
    bbr: [Option<f64>; 2],
    four: [Option<f64>; 2],
    note: String,
    error: Option<String>,
}

/// What went wrong in a body run under `catch_unwind`: its error, or its panic's message.
fn failure(result: std::thread::Result<anyhow::Result<()>>) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(p) => Some(format!("panicked: {}", panic_message(&*p))),
    }
}

/// What a panic said (the test kit panics on failure).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

fn measure(s: &Scenario, o: &Opts, env: &Env) -> Res {
    eprintln!("bench: ── {} ({})", s.name, s.what);
    caught(s, |r| {
        let t = match s.group {
            Group::Offload => offload_topo(s, env),
            Group::Tunnel => tunnel_topo(s, env, None)?,
        };
        r.note = t.note.clone();
        measure_topo(&t, s, o, r)
    })
}

/// A scenario's result as `body` fills it in, run under `catch_unwind`: its error, or its
/// panic (the test kit panics on failure), becomes the row's error. Everything the scenario
/// made (processes, namespaces) is dropped before this returns, also when it panicked:
/// unwinding drops the topology.
fn caught(s: &Scenario, body: impl FnOnce(&mut Res) -> anyhow::Result<()>) -> Res {
    let mut r = Res {
        name: s.name,
        what: s.what,
        ..Res::default()
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut r)));
    if let Some(e) = failure(result) {
        eprintln!("bench: {} failed: {e}", s.name);
        r.error = Some(e.lines().next().unwrap_or("").chars().take(160).collect());
    }
    r
}

fn measure_topo(t: &Topo, s: &Scenario, o: &Opts, r: &mut Res) -> anyhow::Result<()> {
    let secs = if o.quick { 3 } else { 10 };
    warm_up(&t.h1.ns, H2_IP);
    warm_up(&t.h2.ns, H1_IP);
    check_super(t, r);

    let p0 = t.cpu.as_ref().map(|(c, n)| proc_ticks(n, c));
    let s0 = sys_ticks();
    let (up, b1) = iperf_tcp(&t.h1.ns, &t.h2.ns, H2_IP, secs, false, &[])?;
    let (down, b2) = iperf_tcp(&t.h1.ns, &t.h2.ns, H2_IP, secs, true, &[])?;
    let gb = (b1 + b2) as f64 / 1e9;
    let s1 = sys_ticks();
    if let (Some(p0), Some((c, n))) = (p0, t.cpu.as_ref()) {
        r.cpu_proc = Some(proc_ticks(n, c).saturating_sub(p0) as f64 / clk_tck() / gb);
    }
    r.cpu_sys = Some(s1.saturating_sub(s0) as f64 / clk_tck() / gb);
    r.up = Some(up);
    r.down = Some(down);
    eprintln!("bench: {}: TCP {up:.0} / {down:.0} Mbit/s", s.name);

    r.ping = Some(ping_rtt(&t.h1.ns, H2_IP)?);
    read_outer(t, r);

    warm_up(&t.h1.ns, H2_IP);
    let fsecs = if o.quick { 2.0 } else { 5.0 };
    let (fps, loss) = frames(&t.h1, &t.h2, None, fsecs)?;
    r.fps = Some((fps, loss));
    eprintln!(
        "bench: {}: {fps:.0} frames/s received, loss {:.2} %",
        s.name,
        loss * 100.0
    );
    if s.group == Group::Offload {
        r.zero_loss = Some(if loss < 0.001 {
            (fps, true)
        } else {
            let mut rate = fps;
            let mut found = None;
            for _ in 0..if o.quick { 5 } else { 8 } {
                warm_up(&t.h1.ns, H2_IP);
                let (got, l) = frames(&t.h1, &t.h2, Some(rate), fsecs.min(3.0))?;
                eprintln!(
                    "bench: {}: offered {rate:.0}/s: {got:.0}/s, loss {:.3} %",
                    s.name,
                    l * 100.0
                );
                if l < 0.001 {
                    found = Some(got);
                    break;
                }
                rate *= 0.8;
            }
            (found.unwrap_or(0.0), false)
        });
    }
    Ok(())
}

/// Warm and check: switch B's client port carries super-frames when it should.
fn check_super(t: &Topo, r: &mut Res) {
    if let (Some((port, want)), Some(b)) = (t.check_super, t._switches.get(1)) {
        let got = b.port_status(port)["super_frames"].as_bool();
        r.super_frames = got;
        if got != Some(want) {
            r.note = format!(
                "switch B's client port: super_frames {got:?}, expected {want} (see the logs)"
            );
        }
    }
}

/// The `listPort` fields shown for an etherws row's tunnel ports, when the port has them.
const OUTER_FIELDS: &[&str] = &[
    "transport",
    "congestion",
    "rtt_ms",
    "lost_packets",
    "max_datagram",
    "rx_errors",
    "capsuled",
    "tx_dropped_oversize",
    "mss_clamped",
];

/// After the runs of an etherws row: the tunnel ports (`client`/`server`) of both switches
/// as `listPort` shows them (`OUTER_FIELDS`), into `r.outer_info`; switch B's client port's
/// `congestion` into `r.outer`. A QUIC row whose client port does not say `transport: quic`
/// gets a note (the row would be measuring something else).
fn read_outer(t: &Topo, r: &mut Res) {
    if !etherws_row(r.name) {
        return;
    }
    for (side, sw) in ["A", "B"].iter().zip(&t._switches) {
        let ports = std::panic::catch_unwind(AssertUnwindSafe(|| {
            sw.rpc("listPort", serde_json::json!({}))
        }));
        let Ok(ports) = ports else {
            r.outer_info.push(format!("switch {side}: listPort failed"));
            continue;
        };
        let entries = ports["entries"].as_array().cloned().unwrap_or_default();
        for p in entries
            .iter()
            .filter(|p| matches!(p["type"].as_str(), Some("client" | "server")))
        {
            let kind = p["type"].as_str().unwrap_or_default();
            let fields: Vec<String> = OUTER_FIELDS
                .iter()
                .filter(|f| !p[**f].is_null())
                .map(|f| match p[*f].as_str() {
                    Some(v) => format!("{f} {v}"),
                    None => format!("{f} {}", p[*f]),
                })
                .collect();
            r.outer_info.push(format!(
                "switch {side}'s {kind} port {}: {}",
                p["port"],
                if fields.is_empty() {
                    "(none of the fields)".to_string()
                } else {
                    fields.join(", ")
                }
            ));
            if *side == "B" && kind == "client" {
                r.outer = p["congestion"].as_str().map(String::from);
                let transport = p["transport"].as_str();
                if quic_row(r.name) && transport != Some("quic") {
                    r.note = format!(
                        "{} switch B's client port: transport {transport:?}, expected \"quic\"",
                        r.note
                    );
                }
            }
        }
    }
}

fn env_logs() -> PathBuf {
    std::env::temp_dir().join(format!("etherws-bench-{}", std::process::id()))
}

// ---------------------------------------------------------------------------------------------
// tables

fn f0(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "—".into())
}

fn fk(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

fn f2(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
}

/// The "frames" column: what an etherws tunnel carries per message (B's client port).
fn frames_kind(r: &Res) -> &'static str {
    match r.super_frames {
        _ if quic_row(r.name) => "datagrams",
        Some(true) => "super",
        Some(false) => "strict",
        None => "—",
    }
}

/// The etherws rows' tunnel ports as `listPort` showed them after the runs (the outer
/// connection: its congestion control; QUIC: RTT, lost packets, datagram size).
fn outer_list(rs: &[&Res]) -> String {
    let lines: Vec<String> = rs
        .iter()
        .filter(|r| !r.outer_info.is_empty())
        .map(|r| format!("- `{}`: {}", r.name, r.outer_info.join("; ")))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "The tunnel's outer connection per etherws row (`listPort` of both switches after the \
         runs):\n\n{}\n\n",
        lines.join("\n")
    )
}

/// The zero-delay target for each QUIC row: ≥ 0.5× `ws_tap` both ways; and its ratios to
/// `wss_tap` and `wss_tap_strict`, the honest comparisons (both encrypt), without a target.
fn quic_verdicts(rs: &[&Res]) -> String {
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let r = |a: Option<f64>, b: Option<f64>| a.unwrap_or(0.0) / b.unwrap_or(0.0).max(1e-9);
    let mut v = String::new();
    for q in rs.iter().filter(|r| quic_row(r.name) && r.error.is_none()) {
        if let Some(w) = get("ws_tap") {
            let (up, down) = (r(q.up, w.up), r(q.down, w.down));
            let _ = writeln!(
                v,
                "- `{}` vs `ws_tap`: {up:.2}× h1→h2, {down:.2}× h2→h1 (target ≥ 0.5× both \
                 ways: {}).",
                q.name,
                if up >= 0.5 && down >= 0.5 {
                    "met"
                } else {
                    "**missed**"
                }
            );
        }
        for n in ["wss_tap", "wss_tap_strict"] {
            if let Some(w) = get(n) {
                let _ = writeln!(
                    v,
                    "- `{}` vs `{n}` (both encrypt): {:.2}× h1→h2, {:.2}× h2→h1.",
                    q.name,
                    r(q.up, w.up),
                    r(q.down, w.down)
                );
            }
        }
    }
    v
}

fn fails(rs: &[&Res]) -> String {
    let mut t = String::new();
    for r in rs {
        if let Some(e) = &r.error {
            let _ = writeln!(t, "- `{}` failed: {e}", r.name);
        }
        if !r.note.is_empty() {
            let _ = writeln!(t, "- `{}`: {}", r.name, r.note);
        }
    }
    t
}

fn offload_table(rs: &[&Res]) -> String {
    let mut t = String::from(
        "| scenario | datapath | small frames received/s (loss) | zero-loss frames/s | \
         TCP h1→h2 Mbit/s | TCP h2→h1 Mbit/s | switch CPU s/GB | machine CPU s/GB |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rs {
        let fps = r
            .fps
            .map(|(f, l)| format!("{} ({:.1} %)", fk(f), l * 100.0))
            .unwrap_or_else(|| "—".into());
        let zl = r
            .zero_loss
            .map(|(f, sender_bound)| {
                if f == 0.0 {
                    "not found".into()
                } else if sender_bound {
                    format!("≥ {}", fk(f))
                } else {
                    fk(f)
                }
            })
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            t,
            "| `{}` | {} | {fps} | {zl} | {} | {} | {} | {} |",
            r.name,
            r.what,
            f0(r.up),
            f0(r.down),
            f2(r.cpu_proc),
            f2(r.cpu_sys)
        );
    }
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let mut v = String::new();
    if let (Some(x), Some(a)) = (get("af_xdp"), get("af_packet"))
        && let (Some((zx, x_bound)), Some((za, _))) = (x.zero_loss, a.zero_loss)
        && za > 0.0
    {
        let ratio = zx / za;
        let _ = writeln!(
            v,
            "- Offloaded ingress (XDP + AF_XDP) vs AF_PACKET, zero-loss rate: {}{ratio:.2}× \
             (target ≥ 1.5×: {}).",
            if x_bound { "≥ " } else { "" },
            if ratio >= 1.5 { "met" } else { "**missed**" }
        );
    }
    for k in ["xdp_kernel", "tc_kernel", "auto_kernel"] {
        if let Some(k) = get(k) {
            v.push_str(&kernel_verdict(k, get("linux_bridge"), get("af_packet")));
        }
    }
    format!("{t}\n{v}{}", fails(rs))
}

/// An in-kernel row against the issue's targets: TCP (both directions added) ≥ 0.9× the Linux
/// bridge and ≥ 1× the same switch without offload, small frames/s ≥ 1× without offload.
fn kernel_verdict(k: &Res, bridge: Option<&&Res>, plain: Option<&&Res>) -> String {
    let tcp = |r: &Res| r.up.unwrap_or(0.0) + r.down.unwrap_or(0.0);
    let mark = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut parts = Vec::new();
    if let Some(b) = bridge {
        let r = tcp(k) / tcp(b).max(1e-9);
        parts.push(format!(
            "{r:.2}× the Linux bridge's TCP (target ≥ 0.9×: {})",
            mark(r >= 0.9)
        ));
    }
    if let Some(p) = plain {
        let r = tcp(k) / tcp(p).max(1e-9);
        parts.push(format!(
            "{r:.2}× `af_packet`'s TCP (target ≥ 1×: {})",
            mark(r >= 1.0)
        ));
        if let (Some((fk_, _)), Some((fp, _))) = (k.fps, p.fps) {
            let r = fk_ / fp.max(1e-9);
            parts.push(format!(
                "{r:.2}× its 60-byte frames/s (target ≥ 1×: {})",
                mark(r >= 1.0)
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "- `{}` (both directions added): {}.\n",
        k.name,
        parts.join(", ")
    )
}

/// A tunnel row with offloaded netdev ports against the same tunnel without offload (target:
/// ≥ 1× each way).
fn offload_tunnel_verdict(e: &Res, plain: &Res) -> String {
    let r = |a: Option<f64>, b: Option<f64>| a.unwrap_or(0.0) / b.unwrap_or(0.0).max(1e-9);
    let (up, down) = (r(e.up, plain.up), r(e.down, plain.down));
    format!(
        "- `{}` vs `{}`: {up:.2}× h1→h2, {down:.2}× h2→h1 (target ≥ 1× both ways: {}).\n",
        e.name,
        plain.name,
        if up >= 1.0 && down >= 1.0 {
            "met"
        } else {
            "**missed**"
        }
    )
}

fn tunnel_table(rs: &[&Res]) -> String {
    let mut t = String::from(
        "| scenario | what | frames | TCP h1→h2 Mbit/s | TCP h2→h1 Mbit/s | ping avg ms | \
         ping p99 ms | small frames received/s (loss) | tunnel CPU s/GB | machine CPU s/GB |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rs {
        let fps = r
            .fps
            .map(|(f, l)| format!("{} ({:.1} %)", fk(f), l * 100.0))
            .unwrap_or_else(|| "—".into());
        let frames = frames_kind(r);
        let _ = writeln!(
            t,
            "| `{}` | {} | {frames} | {} | {} | {} | {} | {fps} | {} | {} |",
            r.name,
            r.what,
            f0(r.up),
            f0(r.down),
            r.ping
                .map(|p| format!("{:.3}", p.avg))
                .unwrap_or_else(|| "—".into()),
            r.ping
                .map(|p| format!("{:.3}", p.p99))
                .unwrap_or_else(|| "—".into()),
            f2(r.cpu_proc),
            f2(r.cpu_sys)
        );
    }
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let mut v = String::new();
    if let Some(plain) = get("ws_netdev_nooffload") {
        for n in ["ws_netdev", "ws_netdev_xdp", "ws_netdev_tc"] {
            if let Some(e) = get(n) {
                v.push_str(&offload_tunnel_verdict(e, plain));
            }
        }
    }
    v.push_str(&quic_verdicts(rs));
    format!(
        "{t}\n{v}\n{}\n{}{}",
        tunnel_ratios(rs),
        outer_list(rs),
        fails(rs)
    )
}

/// The etherws rows as ratios to the reference rows of the same run.
fn tunnel_ratios(rs: &[&Res]) -> String {
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    let mut out = String::from(
        "Ratios of each etherws row to references measured in the same run: OpenVPN (`ws` rows \
         ↔ plain OpenVPN, `wss` rows ↔ OpenVPN TLS; `wss` rows also ↔ SoftEther, TLS too) and \
         the kernel VXLAN tunnel. Throughput: higher is better; RTT and CPU per GB: lower is \
         better. \"Tunnel CPU\" compares the etherws processes with the OpenVPN/SoftEther \
         processes; VXLAN has no process, so against it the machine's CPU per GB is compared.\n\n\
         | etherws | vs | TCP h1→h2 | TCP h2→h1 | ping avg | ping p99 | CPU s/GB (tunnel) | \
         CPU s/GB (machine) |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut any = false;
    for e in rs
        .iter()
        .filter(|r| etherws_row(r.name) && r.error.is_none())
    {
        let mut refs = Vec::new();
        if e.name.starts_with("wss") || quic_row(e.name) {
            refs.extend(["openvpn_tls", "softether"]);
        } else {
            refs.push("openvpn");
        }
        refs.push("vxlan");
        for v in refs {
            let Some(v) = get(v) else {
                continue;
            };
            any = true;
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} | {} | {} | {} | {} |",
                e.name,
                v.name,
                ratio(e.up, v.up),
                ratio(e.down, v.down),
                ratio(e.ping.map(|p| p.avg), v.ping.map(|p| p.avg)),
                ratio(e.ping.map(|p| p.p99), v.ping.map(|p| p.p99)),
                ratio(e.cpu_proc, v.cpu_proc),
                ratio(e.cpu_sys, v.cpu_sys),
            );
        }
    }
    if any { out } else { String::new() }
}

/// Rows' TCP throughput as an SVG bar chart (for BENCHMARKS.md).
fn tcp_chart(rs: &[&Res], title: &str) -> String {
    let rows: Vec<crate::report::ChartRow> = rs
        .iter()
        .map(|r| crate::report::ChartRow {
            label: r.name.to_string(),
            values: [r.up.unwrap_or(0.0), r.down.unwrap_or(0.0)],
            failed: r.error.is_some(),
        })
        .collect();
    crate::report::bar_chart_svg(
        title,
        "Mbit/s (iperf3 TCP)",
        ["host1 → host2", "host2 → host1"],
        &rows,
    )
}

// ---------------------------------------------------------------------------------------------
// the task

fn ensure_tools(need_openvpn: bool, need_softether: bool, need_tinc: bool) -> anyhow::Result<()> {
    let have = |t: &str| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(t).is_file())
    };
    let mut missing = Vec::new();
    if need_openvpn && !have("openvpn") {
        missing.push("openvpn");
    }
    if need_tinc && !have("tincd") {
        missing.push("tinc");
    }
    let softether_missing = need_softether
        && !(have("vpncmd") && Path::new("/usr/libexec/softether/vpnserver/vpnserver").is_file());
    if softether_missing {
        missing.extend(["softether-vpnserver", "softether-vpncmd"]);
    }
    if !missing.is_empty() {
        eprintln!("bench: installing {missing:?} with apt-get");
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(c)?;
    }
    if softether_missing && have("systemctl") {
        // The package enables (and, under systemd, starts) its own server on the host's
        // ports: the bench runs its own in namespaces only.
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "softether-vpnserver"])
            .output();
    }
    for t in ["iperf3", "openssl", "ping", "ss"] {
        if !have(t) {
            bail!("`{t}` is needed and not installed");
        }
    }
    Ok(())
}

fn cpu_model() -> String {
    let s = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = s
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("{model}, {n} CPUs")
}

/// A command's output, trimmed (empty if it fails).
fn sh(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn today() -> String {
    sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])
}

pub fn task_bench(o: Opts) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench needs root (network namespaces, XDP, raw sockets)");
    }
    let chosen: Vec<&Scenario> = SCENARIOS.iter().filter(|s| selected(&o, s)).collect();
    ensure_tools(
        chosen.iter().any(|s| s.name.starts_with("openvpn")),
        chosen.iter().any(|s| s.name == "softether"),
        chosen.iter().any(|s| s.name == "tinc"),
    )?;
    crate::build_ebpf::task_build_ebpf()?;
    let mut build = cargo();
    build.args(["build", "--release", "-p", "etherws"]);
    run(build)?;
    use_binary(root().join("target/release/etherws"));
    use_netns_prefix("ewsb");

    let logs = env_logs();
    std::fs::create_dir_all(&logs)?;
    let load = loadavg();
    let started = today();
    let env = Env {
        pki: std::panic::catch_unwind(make_pki)
            .map_err(|p| anyhow::anyhow!("certificates: {}", panic_message(&*p)))
            .map(Some)?,
        logs: logs.clone(),
        sw_args: o.sw_args.clone(),
        quic_tap_mtu: o.quic_tap_mtu,
    };
    if !o.wan.is_empty() {
        return wan_bench(&o, &env, &chosen, &load, &started);
    }
    let results: Vec<Res> = chosen.iter().map(|s| measure(s, &o, &env)).collect();

    let command = crate::command_line().replace(" --write", "");
    let kernel = sh(&["uname", "-r"]);
    let about = format!(
        "Run {started} with `{command}` (root): kernel {kernel}, {}, load average at start \
         {load} (1/5/15 min). {} s iperf3 TCP runs each way, 200 pings at 10 ms, small frames: \
         60-byte Ethernet frames from one raw-socket sender thread (`sendmmsg`, qdisc bypassed) \
         on host1, counted at host2's interface. CPU s/GB: CPU seconds per GB received by the \
         two TCP runs, of the etherws/OpenVPN/SoftEther processes at both ends, and of the whole machine \
         (`/proc/stat`, all but idle: iperf3 and the kernel's softirq work included). Logs: \
         `{}`.\n\n",
        cpu_model(),
        if o.quick { 3 } else { 10 },
        logs.display()
    );
    let mut sections = Vec::new();
    let mut charts = Vec::new();
    let off: Vec<&Res> = results
        .iter()
        .filter(|r| {
            SCENARIOS
                .iter()
                .any(|s| s.name == r.name && s.group == Group::Offload)
        })
        .collect();
    if !off.is_empty() {
        sections.push((
            OFFLOAD_HEADING,
            format!(
                "{OFFLOAD_HEADING}\n\n\
                 host1 ── veth ── [switch namespace] ── veth ── host2; the hosts' veths keep \
                 a new veth's default settings (what users have) in every row but \
                 `xdp_kernel_gro_on`, the extra row with GRO on and TX checksum offload off on \
                 the host veths (native XDP redirect into a veth needs NAPI on its peer). \
                 `xdp` rows: the XDP program, native on the switch's veths (before GRO, frame \
                 by frame); `tc` rows: the TC program (tcx, after GRO: 64 KB super-frames \
                 cross whole); `auto`: the switch's choice per device (the notes below give \
                 the ports' types). \"Zero-loss\": the highest paced offered rate \
                 (stepping down by 20 % from the most received) that lost < 0.1 %; \
                 \"≥\" when the sender itself was the limit.\n\n{about}\
                 ![TCP throughput per offload row](bench-offload.svg)\n\n{}",
                offload_table(&off)
            ),
        ));
        charts.push((
            "bench-offload.svg",
            tcp_chart(
                &off,
                &format!("etherws offload bench, {started}: iperf3 TCP"),
            ),
        ));
    }
    let tun: Vec<&Res> = results
        .iter()
        .filter(|r| {
            SCENARIOS
                .iter()
                .any(|s| s.name == r.name && s.group == Group::Tunnel)
        })
        .collect();
    if !tun.is_empty() {
        let chart = tcp_chart(
            &tun,
            &format!("etherws tunnel bench, {started}: iperf3 TCP"),
        );
        sections.push((
            TUNNEL_HEADING,
            format!(
                "{TUNNEL_HEADING}\n\n\
                 host1 ── switchA ══ one tunnel over a veth (MTU 1550) ══ switchB ── host2. \
                 Every interface keeps its default settings: the bench changes no GRO, \
                 checksum or other offload. TAP rows: the switch namespaces are the hosts \
                 (addresses on etherws's TAPs, which have offloads). Other rows: hosts in \
                 their own namespaces on veths; etherws netdev ports with `--offload` (auto; \
                 `_xdp`: XDP + AF_XDP into userspace; `_tc`: the TC program, frames into \
                 userspace through AF_PACKET; `_nooffload`: AF_PACKET), OpenVPN's, SoftEther's and \
                 VXLAN's devices joined to the host veth by a Linux bridge. etherws: \
                 super-frames (GSO frames up to 64 KB whole over the WebSocket, negotiated; \
                 column \"frames\": `listPort`'s `super_frames` of switch B's client port) \
                 unless `_strict` (both switches `--strict-frames`: one MTU frame per message). \
                 `quic` rows: switch A `--quic` (HTTP/3 on UDP at its WebSocket port's number, \
                 the bench's certificate), switch B `addport client wss://… --transport quic`, \
                 frames as HTTP datagrams; the outer controller is the switches' default unless \
                 the name says (`_cubic`, `_newreno`: `--quic-congestion`). \
                 OpenVPN {}: TAP, TCP, `--tcp-nodelay`; plain = `--cipher none --auth none` \
                 (no TLS), TLS = `--tls-server/--tls-client`, `--data-ciphers AES-128-GCM`. \
                 SoftEther: Debian's `softether-vpnserver` {}, one server per switch \
                 namespace (own state directory), B's hub cascaded to A's over one TCP \
                 connection (TLS, port 443, `/MAXTCP:1`), each hub bridged (local bridge) to a \
                 TAP.\n\n{about}![TCP throughput per tunnel row](bench-tunnel.svg)\n\n{}",
                sh(&["openvpn", "--version"])
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default(),
                sh(&["dpkg-query", "-W", "-f=${Version}", "softether-vpnserver"]),
                tunnel_table(&tun)
            ),
        ));
        charts.push(("bench-tunnel.svg", chart));
    }
    output(&o, &logs, &sections, &charts)?;
    if results.iter().any(|r| r.error.is_some()) {
        bail!("some scenarios failed (see above)");
    }
    Ok(())
}

/// `--wan`: the tunnel rows across each path, one section.
fn wan_bench(
    o: &Opts,
    env: &Env,
    chosen: &[&Scenario],
    load: &str,
    started: &str,
) -> anyhow::Result<()> {
    let (tables, chart, failed) = wan::run(o, env, chosen);
    let command = crate::command_line().replace(" --write", "");
    let (secs, omit) = wan::durations(o);
    let section = format!(
        "{heading}\n\n\
         host1 ── switchA ══ tunnel across a delay line ══ switchB ── host2: the \
         tunnel rows of the tunnel bench, the link between the switch namespaces replaced by \
         the test kit's WAN emulator (packet sockets between two veths in a namespace of its \
         own, one real-time thread per direction; offloads off on its veths, MTU 1550, as on a \
         wire; everything else at its defaults). Congestion control of the main flows inside \
         the tunnels (iperf3): {inner}. Run \
         {started} with `{command}` (root): kernel {}, {}, load average at start {load} (1/5/15 \
         min). iperf3 TCP {secs} s each way after {omit} s omitted; then, each way, one BBR \
         flow (`-C bbr`) and four CUBIC flows (`-C cubic -P 4`, summed), {fsecs} s after \
         {fomit} s omitted; ping idle: 200 at 10 ms (avg / p99 / max); ping during bulk: every \
         50 ms during the h1→h2 run. \"Outer CC\": `listPort`'s `congestion` of switch B's \
         client port (the tunnel's own connection). QUIC rows: switch A `--quic` (HTTP/3 on \
         UDP at its WebSocket port's number, the bench's certificate), switch B `addport client \
         wss://… --transport quic`. Logs: `{}`.\n\n\
         ![TCP throughput across the WAN paths](bench-wan.svg)\n\n{tables}",
        sh(&["uname", "-r"]),
        cpu_model(),
        env.logs.display(),
        heading = wan::WAN_HEADING,
        fsecs = wan::FLOW_SECS,
        fomit = wan::FLOW_OMIT,
        inner = match &o.inner_cc {
            Some(cc) => format!("`{cc}` (`--inner-cc`)"),
            None => format!(
                "the hosts' default, `{}`",
                sh(&["sysctl", "-n", "net.ipv4.tcp_congestion_control"])
            ),
        },
    );
    output(
        o,
        &env.logs,
        &[(wan::WAN_HEADING, section)],
        &[("bench-wan.svg", chart)],
    )?;
    if failed {
        bail!("some WAN rows failed (see above)");
    }
    Ok(())
}

/// Prints the sections, keeps the charts in the log directory, and with `--write` replaces
/// the sections in BENCHMARKS.md and writes the charts beside it.
fn output(
    o: &Opts,
    logs: &Path,
    sections: &[(&str, String)],
    charts: &[(&str, String)],
) -> anyhow::Result<()> {
    for (name, svg) in charts {
        let _ = std::fs::write(logs.join(name), svg);
    }
    for (_, s) in sections {
        println!("{s}");
    }
    if o.write {
        let path = root().join("BENCHMARKS.md");
        // Re-read right before writing: another task may have changed its own section.
        let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| BENCHMARKS_HEADER.into());
        for (heading, s) in sections {
            text = replace_section(&text, heading, s);
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        for (name, svg) in charts {
            let p = root().join(name);
            std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("xtask: wrote {}", p.display());
        }
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frame_is_60_bytes_with_a_valid_ip_checksum() {
        let f = small_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.len(), 60);
        let mut sum: u32 = f[14..34]
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn every_tap_row_runs_tap_ports_and_no_other_does() {
        for s in SCENARIOS {
            assert_eq!(
                tap_ports(s.name),
                s.what.contains("TAP ports"),
                "{}: {}",
                s.name,
                s.what
            );
        }
        for n in ["ws_tap", "ws_tap_strict", "wss_tap", "wss_tap_strict"] {
            assert!(tap_ports(n), "{n}");
        }
    }

    #[test]
    fn quic_rows_are_etherws_tap_rows_with_their_controller() {
        for n in ["quic_tap", "quic_tap_cubic", "quic_tap_newreno"] {
            assert!(quic_row(n) && etherws_row(n) && tap_ports(n), "{n}");
            assert!(SCENARIOS.iter().any(|s| s.name == n), "{n}");
        }
        assert_eq!(quic_congestion("quic_tap"), None);
        assert_eq!(quic_congestion("quic_tap_cubic"), Some("cubic"));
        assert_eq!(quic_congestion("quic_tap_newreno"), Some("newreno"));
        assert!(!quic_row("ws_tap") && etherws_row("wss_tap") && !etherws_row("vxlan"));
    }

    #[test]
    fn quic_tap_mtu_fits_the_smaller_datagram() {
        assert_eq!(fitting_mtu(&[1420, 1431]), 1404);
        assert_eq!(fitting_mtu(&[9000]), 1500);
        assert_eq!(fitting_mtu(&[1420]), 1404);
        assert_eq!(fitting_mtu(&[]), 0);
        assert_eq!(quic_mtu("fit"), Ok(QuicMtu::Fit));
        assert_eq!(quic_mtu("1500"), Ok(QuicMtu::Fixed(1500)));
        assert!(quic_mtu("70000").is_err());
    }

    #[test]
    fn ping_stats_give_average_p99_max_and_lost() {
        let text = "64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=40.1 ms\n\
                    64 bytes from 192.0.2.2: icmp_seq=2 ttl=64 time=80.5 ms\n\
                    64 bytes from 192.0.2.2: icmp_seq=4 ttl=64 time=41.0 ms\n\
                    4 packets transmitted, 3 received, 25% packet loss, time 30ms\n";
        let p = ping_stats(text, H2_IP).unwrap();
        assert!((p.avg - 53.866).abs() < 0.01, "{p:?}");
        assert_eq!((p.p99, p.max, p.lost), (80.5, 80.5, 1));
    }

    fn row(name: &'static str, up: f64, bbr: f64, four: f64, ping: f64) -> Res {
        Res {
            name,
            up: Some(up),
            down: Some(up),
            bbr: [Some(bbr), Some(bbr)],
            four: [Some(four), Some(four)],
            ping_load: Some(Ping {
                avg: ping,
                p99: ping,
                max: ping,
                lost: 0,
            }),
            ..Res::default()
        }
    }

    #[test]
    fn tunnel_verdicts_compare_quic_with_ws_and_wss() {
        let (q, w, s) = (
            row("quic_tap", 1500.0, 0.0, 0.0, 0.0),
            row("ws_tap", 5000.0, 0.0, 0.0, 0.0),
            row("wss_tap", 2000.0, 0.0, 0.0, 0.0),
        );
        let v = quic_verdicts(&[&q, &w, &s]);
        assert!(
            v.contains("`quic_tap` vs `ws_tap`: 0.30× h1→h2, 0.30× h2→h1 (target ≥ 0.5× both ways: **missed**)"),
            "{v}"
        );
        assert!(
            v.contains("`quic_tap` vs `wss_tap` (both encrypt): 0.75×"),
            "{v}"
        );
    }

    #[test]
    fn wan_targets_and_issue_layout_for_quic_rows() {
        let spec: WanSpec = "20ms,2%".parse().unwrap();
        let (q, v) = (
            row("quic_tap", 2.0, 200.0, 5.0, 50.0),
            row("vxlan", 2.0, 240.0, 7.8, 40.0),
        );
        let t = wan::targets(spec, &[&q, &v]);
        assert!(
            t.contains("`quic_tap` one BBR flow ≥ 0.8× VXLAN's both ways: 0.83× (met)"),
            "{t}"
        );
        assert!(
            t.contains("`quic_tap` four CUBIC flows ≥ 0.8× VXLAN's both ways: 0.64× (**missed**)"),
            "{t}"
        );
        assert!(
            t.contains("`quic_tap` ping during bulk ≤ 1.5× VXLAN's: 1.25×"),
            "{t}"
        );
        let l = wan::issue_layout(spec, &[&q, &v], "cubic");
        assert!(
            l.contains("| one BBR flow | 200 / 200 | 240 / 240 |"),
            "{l}"
        );
        assert!(
            l.contains("| four CUBIC flows | 5.0 / 5.0 | 7.8 / 7.8 |"),
            "{l}"
        );
    }

    #[test]
    fn sections_are_replaced_and_others_kept() {
        let doc = "# B\n\n## Load: 1,000 WebSocket clients\n\nload\n\n## Bench: x\n\nold\n";
        let new = replace_section(doc, "## Bench: x", "## Bench: x\n\nnew\n");
        assert_eq!(
            new,
            "# B\n\n## Load: 1,000 WebSocket clients\n\nload\n\n## Bench: x\n\nnew\n"
        );
    }
}
