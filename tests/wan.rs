//! Across a WAN path: two switches joined by a WebSocket over the test kit's delay line
//! (`etherws_testkit::Wan`, a delay line on packet sockets in a namespace of its own).
//!
//! ```text
//! h1: h1 192.0.2.1 ── a1 [swA: netdev port] tA 198.51.100.1 ── wan (20 ms each way) ──
//!     tB 198.51.100.2 [swB: netdev port, client of A] b1 ── h2: h2 192.0.2.2
//! ```
//!
//! The hosts' veths keep their defaults (TSO, GSO: a local sender hands the switch 64 KB
//! super-frames in bursts of a window). A frame the switch drops at its ingress (its packet
//! socket's receive buffer, or its queues) is a loss the inner TCP pays for with a whole RTT of
//! the path, so across a WAN a switch must drop none of a window-sized burst.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use etherws_testkit::*;

const H1_IP: &str = "192.0.2.1";
const H2_IP: &str = "192.0.2.2";
const A_IP: &str = "198.51.100.1";
const B_IP: &str = "198.51.100.2";

/// The path: namespaces for the two hosts and the two switch sites, the delay line between the
/// sites. Fields drop in declaration order: switches, then the line, then the namespaces.
struct Path {
    a: Switch,
    b: Switch,
    wan: Wan,
    h1: Netns,
    h2: Netns,
    sa: Netns,
    sb: Netns,
}

impl Path {
    fn new(spec: &str, a_args: &[&str], b_args: &[&str]) -> Path {
        let spec: WanSpec = spec.parse().expect("a WAN spec");
        let (h1, h2) = (Netns::new("wanh1"), Netns::new("wanh2"));
        let (sa, sb) = (Netns::new("wanA"), Netns::new("wanB"));
        veth(&h1, "h1", Some(&format!("{H1_IP}/24")), &sa, "a1", None);
        veth(&h2, "h2", Some(&format!("{H2_IP}/24")), &sb, "b1", None);
        let wan = Wan::between(
            &sa,
            "tA",
            Some(&format!("{A_IP}/24")),
            &sb,
            "tB",
            Some(&format!("{B_IP}/24")),
            1500,
            spec,
        );
        let a = Switch::builder("wanA")
            .netns(&sa)
            .host(A_IP)
            .args(a_args)
            .start();
        let b = Switch::builder("wanB")
            .netns(&sb)
            .host(B_IP)
            .args(b_args)
            .start();
        a.add_port("netdev", "a1", &[]);
        b.add_port("netdev", "b1", &[]);
        b.add_port("client", &format!("ws://{A_IP}:{}/", a.ws_port), &[]);
        ping_within(&h1, H2_IP, Duration::from_secs(20));
        Path {
            a,
            b,
            wan,
            h1,
            h2,
            sa,
            sb,
        }
    }
}

/// Frames the packet sockets of the etherws process in `ns` dropped (`ss -0 -m`: skmem `d`),
/// as the kernel counts them, whatever the switch reports.
fn packet_socket_drops(ns: &Netns) -> u64 {
    let out = ns.exec_ok(&["ss", "-0", "-a", "-m", "-p"]);
    let mut drops = 0;
    let mut ours = false;
    for line in out.lines() {
        if line.contains("skmem:(") {
            if ours {
                drops += line
                    .split(['(', ')', ','])
                    .find_map(|f| f.trim().strip_prefix('d'))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if !line.starts_with(' ') && !line.starts_with('\t') {
            ours = line.contains("\"etherws\"");
        }
    }
    drops
}

/// What a switch dropped that it should not have: (port, counter, value) of every non-zero
/// ingress or queue drop counter in `listPort`.
fn switch_drops(sw: &Switch) -> Vec<(u64, String, u64)> {
    let ports = sw.rpc("listPort", serde_json::json!({}));
    let mut bad = Vec::new();
    let entries = ports["entries"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "no ports in {ports}");
    for p in entries {
        let n = p["port"].as_u64().unwrap_or(0);
        for key in ["rx_dropped", "tx_dropped", "tx_expired"] {
            match p[key].as_u64() {
                Some(0) => {}
                Some(v) => bad.push((n, key.to_string(), v)),
                None => bad.push((n, format!("{key} (missing)"), 0)),
            }
        }
    }
    bad
}

#[test]
fn the_delay_line_delays_and_loses_what_it_is_told() {
    if !require_root() {
        return;
    }
    let (a, b) = (Netns::new("wlA"), Netns::new("wlB"));
    let wan = Wan::between(
        &a,
        "la",
        Some("198.51.100.1/24"),
        &b,
        "lb",
        Some("198.51.100.2/24"),
        1500,
        "20ms,10%".parse().unwrap(),
    );
    // ARP first: a request lost to the line's loss would hold the pings queued behind it for
    // the kernel's one-second retry.
    ping_within(&a, "198.51.100.2", Duration::from_secs(10));
    let out = a.exec(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.01",
        "-c",
        "300",
        "198.51.100.2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", wan.stats.summary());
    // rtt min/avg/max/mdev = 40.1/40.3/41.0/0.2 ms
    let rtt: Vec<f64> = text
        .lines()
        .find_map(|l| l.split_once(" = "))
        .map(|(_, v)| v.split(['/', ' ']).filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    assert!(rtt.len() >= 3, "no RTT in ping's output: {text}");
    assert!(
        rtt[0] >= 40.0 && rtt[1] < 44.0,
        "RTT min {} avg {} ms across a 20 ms line (want 40..44)",
        rtt[0],
        rtt[1]
    );
    let ab = &wan.stats.ab;
    let (rx, lost) = (
        ab.received.load(std::sync::atomic::Ordering::Relaxed),
        ab.lost.load(std::sync::atomic::Ordering::Relaxed),
    );
    let share = lost as f64 / rx.max(1) as f64;
    assert!(
        rx >= 250 && (0.04..0.18).contains(&share),
        "10 % loss configured: {lost} of {rx} frames lost"
    );
    assert_eq!(wan.stats.unintended_drops(), 0, "{}", wan.stats.summary());
}

/// A rate-limited line passes what is under its rate whatever its delay (its buffer holds what
/// waits to be serialized, not what is on the wire), and no more than its rate.
#[test]
fn a_rate_limited_line_carries_its_rate() {
    if !require_root() {
        return;
    }
    let (a, b) = (Netns::new("wrA"), Netns::new("wrB"));
    let wan = Wan::between(
        &a,
        "ra",
        Some("198.51.100.1/24"),
        &b,
        "rb",
        Some("198.51.100.2/24"),
        1500,
        "150ms,0%,20mbit".parse().unwrap(),
    );
    ping_within(&a, "198.51.100.2", Duration::from_secs(10));
    let ab = &wan.stats.ab;
    let load = |a: &AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    // Under the rate: all of it arrives, with 300 ms of it in flight.
    let _srv = b.daemon(&["iperf3", "-s", "-B", "198.51.100.2", "-p", "5301"]);
    poll("iperf3 server", Duration::from_secs(10), || {
        let out = b.exec(&["ss", "-Hltn", "sport = :5301"]);
        if String::from_utf8_lossy(&out.stdout).contains("5301") {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    let udp = |rate: &str, secs: &str| {
        a.exec(&[
            "iperf3",
            "-c",
            "198.51.100.2",
            "-p",
            "5301",
            "-u",
            "-b",
            rate,
            "-t",
            secs,
            "-l",
            "1400",
        ])
    };
    udp("15M", "2");
    assert_eq!(load(&ab.overflow), 0, "{}", wan.stats.summary());
    // Over the rate: it carries its rate, not more (measured over two seconds of a five-second
    // run at twice the rate).
    let (b0, t0, b1, t1) = std::thread::scope(|s| {
        s.spawn(|| udp("40M", "5"));
        // iperf3's control connection takes a few of the line's 300 ms round trips first.
        std::thread::sleep(Duration::from_millis(2500));
        let (b0, t0) = (load(&ab.sent_bytes), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(2000));
        (b0, t0, load(&ab.sent_bytes), std::time::Instant::now())
    });
    let mbit = (b1 - b0) as f64 * 8.0 / (t1 - t0).as_secs_f64() / 1e6;
    eprintln!(
        "{mbit:.1} Mbit/s at a 20 Mbit/s line; {}",
        wan.stats.summary()
    );
    assert!(
        (17.0..21.0).contains(&mbit),
        "{mbit:.1} Mbit/s through a 20 Mbit/s line"
    );
    assert!(load(&ab.overflow) > 0, "{}", wan.stats.summary());
}

/// A 5 s transfer (CUBIC, Linux's usual default, which fills every buffer it is given) across a
/// 20 ms path: neither switch drops a frame at its ingress (the kernel's count for its packet
/// sockets, the switch's own `rx_dropped`) or in its queues for want of room or time
/// (`tx_dropped`, `tx_expired`). (What fq-codel drops on purpose, `tx_aqm_dropped`, is the
/// congestion signal a CUBIC flow needs at its bottleneck, and is allowed.)
#[test]
fn a_transfer_across_20ms_loses_nothing_at_the_switches() {
    if !require_root() {
        return;
    }
    let p = Path::new("20ms", &[], &[]);
    let r = iperf3_for(&p.h2, &p.h1, H2_IP, 5201, 5, &["-C", "cubic"]);
    // The switches read their sockets' and devices' drop counts every 250 ms (netdev) and
    // every second (TAP): what they dropped is in listPort after that.
    std::thread::sleep(Duration::from_millis(1500));
    let (a_drops, b_drops) = (packet_socket_drops(&p.sa), packet_socket_drops(&p.sb));
    let (a_bad, b_bad) = (switch_drops(&p.a), switch_drops(&p.b));
    eprintln!(
        "{:.0} Mbit/s; packet socket drops A {a_drops} B {b_drops}; line: {}",
        r.mbit_s,
        p.wan.stats.summary()
    );
    assert!(r.error.is_none(), "iperf3: {:?}", r.error);
    assert_eq!(
        (a_drops, b_drops),
        (0, 0),
        "frames dropped by the switches' packet sockets (A, B)"
    );
    assert!(
        a_bad.is_empty() && b_bad.is_empty(),
        "drop counters: A {a_bad:?}, B {b_bad:?}"
    );
    let _ = (&p.h1, &p.h2);
}
