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
//!   offloaded: XDP + AF_XDP into userspace, out through AF_PACKET), `xdp_kernel` (both ports
//!   offloaded: unicast switched in the kernel), `tc_kernel` (both ports `--offload=tc`: the TC
//!   program, GSO super-frames switched in the kernel), `linux_bridge` (a bridge instead of etherws),
//!   and the extra `xdp_kernel_gro_on` (as `xdp_kernel`, the host veths with GRO on, which
//!   native XDP redirect into a veth needs, and TX checksum offload off).
//! - `tunnel` (fast tunnel issue): host1 — switchA — switchB — host2, the switches joined by one
//!   tunnel over a veth. etherws `ws`/`wss` with TAP ports (the switch namespaces are the
//!   hosts), super-frames (the default) and `_strict` (`--strict-frames` on both switches);
//!   `ws_netdev` rows with netdev ports, offloaded (`--offload`) or not (`_nooffload`);
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
        what: "etherws, both netdev offloaded: in-kernel netdev↔netdev",
    },
    Scenario {
        name: "tc_kernel",
        group: Group::Offload,
        what: "etherws, both netdev `--offload=tc`: in-kernel netdev↔netdev, GSO kept",
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
        name: "ws_netdev",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload`, super-frames (default)",
    },
    Scenario {
        name: "ws_netdev_strict",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports `--offload`, `--strict-frames`",
    },
    Scenario {
        name: "ws_netdev_nooffload",
        group: Group::Tunnel,
        what: "etherws ws://, netdev ports (AF_PACKET), super-frames (default)",
    },
    Scenario {
        name: "wss_netdev",
        group: Group::Tunnel,
        what: "etherws wss://, netdev ports `--offload`, super-frames (default)",
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

/// `ping -i 0.01 -c 200`: (average, p99, lost) in ms.
fn ping_rtt(from: &Netns, to: &str) -> anyhow::Result<(f64, f64, usize)> {
    let out = from.exec(&["ping", "-n", "-i", "0.01", "-c", "200", "-W", "1", to]);
    ping_stats(&String::from_utf8_lossy(&out.stdout), to)
}

/// (average, p99, lost) in ms of ping's per-reply lines; lost from its summary line.
fn ping_stats(text: &str, to: &str) -> anyhow::Result<(f64, f64, usize)> {
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
    Ok((avg, p99, sent.saturating_sub(times.len())))
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

/// Whether a netdev port's listport type says XDP is attached (forwarding into it in the
/// kernel or not).
fn xdp(kind: &str) -> bool {
    kind.starts_with("netdev/xdp")
}

/// Adds a netdev port; returns its listport type (`netdev`, or with `--offload` `netdev/xdp`,
/// `netdev/xdp-user` (XDP, frames into it through userspace) or `netdev/fallback`).
fn add_netdev(sw: &Switch, dev: &str, offload: Option<&str>) -> String {
    let opts: Vec<&str> = offload.into_iter().collect();
    sw.add_port("netdev", dev, &opts).kind
}

/// Whether an etherws tunnel row runs TAP ports (the switch namespaces are the hosts) rather
/// than netdev ports on host veths: `ws_tap`, `wss_tap` and their `_strict` rows. (Matching the
/// name's end once made the `_strict` TAP rows run offloaded netdev ports instead.)
fn tap_ports(name: &str) -> bool {
    name.starts_with("ws") && name.contains("_tap")
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
        let (o1, o2) = match s.name {
            "af_packet" => (None, None),
            "af_xdp" => (Some("--offload"), None),
            "tc_kernel" => (Some("--offload=tc"), Some("--offload=tc")),
            _ => (Some("--offload"), Some("--offload")),
        };
        let t1 = add_netdev(&sw, "s1", o1);
        let t2 = add_netdev(&sw, "s2", o2);
        let offloaded = |t: &str| xdp(t) || t.starts_with("netdev/tc");
        if (o1.is_some() && !offloaded(&t1)) || (o2.is_some() && !offloaded(&t2)) {
            note = format!("offload fell back to AF_PACKET (ports: {t1}, {t2})");
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
            let offload = !n.ends_with("_nooffload");
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
                let ta = add_netdev(&a, "a1", offload.then_some("--offload"));
                let tb = add_netdev(&b, "b1", offload.then_some("--offload"));
                if offload && (!xdp(&ta) || !xdp(&tb)) {
                    note = format!("offload fell back to AF_PACKET ({ta}, {tb})");
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
    ping: Option<(f64, f64, usize)>,
    /// Most frames/s received, loss at that load.
    fps: Option<(f64, f64)>,
    /// Highest paced rate with loss < 0.1 %; `true` when the sender was the limit.
    zero_loss: Option<(f64, bool)>,
    cpu_proc: Option<f64>,
    cpu_sys: Option<f64>,
    /// `--wan`: pings during the h1→h2 transfer (average, p99, lost), and what the line did.
    ping_load: Option<(f64, f64, usize)>,
    line: Option<String>,
    /// etherws tunnels: `listPort`'s `super_frames` of switch B's client port.
    super_frames: Option<bool>,
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
    if let (Some(k), Some(b)) = (get("xdp_kernel"), get("linux_bridge"))
        && let (Some((fk_, lk)), Some((fb, lb))) = (k.fps, b.fps)
    {
        let r1 = fk_ / fb;
        let tcp = |r: &Res| r.up.unwrap_or(0.0) + r.down.unwrap_or(0.0);
        let r2 = tcp(k) / tcp(b).max(1e-9);
        let sender_bound = lk < 0.001 && lb < 0.001;
        let verdict = if r2 >= 1.0 && (r1 >= 1.0 || sender_bound) {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(
            v,
            "- In-kernel forwarding vs Linux bridge: {r1:.2}× the small-frame rate{}, \
             {r2:.2}× the TCP throughput (both directions added) (target ≥ 1×: {verdict}).",
            if sender_bound {
                " (both lossless: the sender was the limit, so this compares the whole \
                 send + forward + receive cost on one CPU)"
            } else {
                ""
            }
        );
    }
    format!("{t}\n{v}{}", fails(rs))
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
        let frames = match r.super_frames {
            Some(true) => "super",
            Some(false) => "strict",
            None => "—",
        };
        let _ = writeln!(
            t,
            "| `{}` | {} | {frames} | {} | {} | {} | {} | {fps} | {} | {} |",
            r.name,
            r.what,
            f0(r.up),
            f0(r.down),
            r.ping
                .map(|p| format!("{:.3}", p.0))
                .unwrap_or_else(|| "—".into()),
            r.ping
                .map(|p| format!("{:.3}", p.1))
                .unwrap_or_else(|| "—".into()),
            f2(r.cpu_proc),
            f2(r.cpu_sys)
        );
    }
    format!("{t}\n{}\n{}", tunnel_ratios(rs), fails(rs))
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
        .filter(|r| r.name.starts_with("ws") && r.error.is_none())
    {
        let mut refs = Vec::new();
        if e.name.starts_with("wss") {
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
                ratio(e.ping.map(|p| p.0), v.ping.map(|p| p.0)),
                ratio(e.ping.map(|p| p.1), v.ping.map(|p| p.1)),
                ratio(e.cpu_proc, v.cpu_proc),
                ratio(e.cpu_sys, v.cpu_sys),
            );
        }
    }
    if any { out } else { String::new() }
}

/// The tunnel rows' TCP throughput as an SVG bar chart (for BENCHMARKS.md).
fn tunnel_chart(rs: &[&Res], title: &str) -> String {
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
                 Native XDP on the switch's veths when offloaded. \"Zero-loss\": the highest paced offered rate \
                 (stepping down by 20 % from the most received) that lost < 0.1 %; \
                 \"≥\" when the sender itself was the limit.\n\n{about}{}",
                offload_table(&off)
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
        let chart = tunnel_chart(
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
                 their own namespaces on veths; etherws netdev ports with `--offload` (XDP + \
                 AF_XDP into userspace; `_nooffload`: AF_PACKET), OpenVPN's, SoftEther's and \
                 VXLAN's devices joined to the host veth by a Linux bridge. etherws: \
                 super-frames (GSO frames up to 64 KB whole over the WebSocket, negotiated; \
                 column \"frames\": `listPort`'s `super_frames` of switch B's client port) \
                 unless `_strict` (both switches `--strict-frames`: one MTU frame per message). \
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
         wire; everything else at its defaults). Congestion control inside the tunnels \
         (iperf3): {inner}. Run \
         {started} with `{command}` (root): kernel {}, {}, load average at start {load} (1/5/15 \
         min). iperf3 TCP {secs} s each way after {omit} s omitted; ping idle: 200 at 10 ms; \
         ping during bulk: every 50 ms during the h1→h2 run. Logs: `{}`.\n\n\
         ![TCP throughput across the WAN paths](bench-wan.svg)\n\n{tables}",
        sh(&["uname", "-r"]),
        cpu_model(),
        env.logs.display(),
        heading = wan::WAN_HEADING,
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
    fn sections_are_replaced_and_others_kept() {
        let doc = "# B\n\n## Load: 1,000 WebSocket clients\n\nload\n\n## Bench: x\n\nold\n";
        let new = replace_section(doc, "## Bench: x", "## Bench: x\n\nnew\n");
        assert_eq!(
            new,
            "# B\n\n## Load: 1,000 WebSocket clients\n\nload\n\n## Bench: x\n\nnew\n"
        );
    }
}
