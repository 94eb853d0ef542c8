//! A port's ingress: frames the kernel dropped before the switch read them (issue #24).
//!
//! A netdev port's packet socket holds what arrives while the switch is busy elsewhere; with the
//! kernel's default receive buffer (about 200 KB, three 64 KB super-frames) a local sender's
//! window overflowed it whenever the switch was a moment late, each drop a loss for the inner
//! TCP. The socket now asks for a buffer sized for a burst, and what the kernel still drops is
//! counted: `rx_dropped` in `listPort` (and `etherws_port_rx_dropped_total` in `/metrics`).
//!
//! ```text
//! ns 1: h1 192.0.2.1/24 --veth-- s1 = netdev port 1 \
//!                                                     switch, ns S
//! ns 2: h2 192.0.2.2/24 --veth-- s2 = netdev port 2 /
//! ```

use std::time::Duration;

use etherws_testkit::*;

const H2: &str = "192.0.2.2";

/// What the kernel keeps for a netdev port's socket: twice the 8 MiB the switch asks for.
const RCVBUF_KEPT: u64 = 16 << 20;

/// How long a drop takes at most to show in `listPort` (a TAP port reads the kernel's count
/// every second, a netdev port every quarter second), with a margin.
const COUNTED_WITHIN: Duration = Duration::from_millis(2500);

/// The switch and the two hosts. Fields drop in declaration order: the switch goes first.
struct Topo {
    sw: Switch,
    h1: Netns,
    h2: Netns,
    s: Netns,
}

impl Topo {
    fn new(tag: &str) -> Topo {
        let s = Netns::new(&format!("{tag}S"));
        let h1 = Netns::new(&format!("{tag}1"));
        let h2 = Netns::new(&format!("{tag}2"));
        veth(&h1, "h1", Some("192.0.2.1/24"), &s, "s1", None);
        veth(&h2, "h2", Some(&format!("{H2}/24")), &s, "s2", None);
        let sw = Switch::builder(tag).netns(&s).start();
        assert_eq!(sw.add_port("netdev", "s1", &[]).port, 1);
        assert_eq!(sw.add_port("netdev", "s2", &[]).port, 2);
        Topo { sw, h1, h2, s }
    }

    /// Port `n`'s `rx_dropped` (a switch without the counter fails here).
    fn rx_dropped(&self, n: u32) -> u64 {
        let p = self.sw.port_status(n);
        p["rx_dropped"]
            .as_u64()
            .unwrap_or_else(|| panic!("port {n} has no rx_dropped: {p}"))
    }

    /// The receive buffers (`skmem` `rb`) of the packet sockets in the switch's namespace.
    fn packet_rcvbufs(&self) -> Vec<u64> {
        let out = self.s.exec_ok(&["ss", "-0", "-a", "-m", "-n"]);
        out.split("rb")
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }
}

#[test]
fn frames_dropped_while_the_switch_stalls_are_counted_at_the_port() {
    if !needs(&["ss"]) {
        return;
    }
    let t = Topo::new("igs");
    let bufs = t.packet_rcvbufs();
    assert!(
        bufs.len() >= 2 && bufs.iter().all(|&b| b >= RCVBUF_KEPT),
        "packet sockets' receive buffers (skmem rb): {bufs:?}"
    );
    assert_eq!((t.rx_dropped(1), t.rx_dropped(2)), (0, 0));

    // The switch stopped, a host sends far more than the socket holds: some 60 MB of 1 KB
    // frames, where the buffer takes about 7,000 of them (each is charged some 2.3 KB).
    let raw = RawSock::open(&t.h1, "h1");
    let frame = build_frame([0xff; 6], [2, 0, 0, 0, 0, 1], None, 0x88b5, &[0x5a; 1000]);
    t.sw.signal(libc::SIGSTOP);
    for _ in 0..60_000 {
        raw.send(&frame);
    }
    t.sw.signal(libc::SIGCONT);

    let dropped = poll("rx_dropped of port 1", COUNTED_WITHIN * 4, || {
        match t.rx_dropped(1) {
            0 => Err(format!("{}", t.sw.port_status(1))),
            n => Ok(n),
        }
    });
    let p = t.sw.port_status(1);
    eprintln!(
        "port 1 after the stall: rx {} rx_dropped {dropped}",
        p["rx"]
    );
    assert!(
        dropped >= 10_000,
        "60,000 frames into a stalled switch, {dropped} dropped: {p}"
    );
    // What was not dropped was switched: the socket held thousands of frames meanwhile.
    poll("the held frames switched", COUNTED_WITHIN, || {
        let rx = t.sw.port_status(1)["rx"].as_u64().unwrap_or(0);
        (rx >= 3000).then_some(()).ok_or(format!("rx {rx}"))
    });
    assert_eq!(t.rx_dropped(2), 0, "port 2 sent, and dropped nothing");
    let metrics = http_get_text(&t, "/metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("etherws_port_rx_dropped_total{port=\"1\"")
                && l.ends_with(&format!(" {}", t.rx_dropped(1)))
        ),
        "{metrics}"
    );
}

#[test]
fn a_window_sized_burst_from_a_local_sender_is_not_dropped() {
    if !needs(&["iperf3", "tc"]) {
        return;
    }
    let t = Topo::new("igb");
    // A WAN's round trip, 40 ms, where the kernel has netem: the sender's window grows to
    // megabytes and leaves in bursts of 64 KB super-frames at the veth's speed. Without it
    // the burst is what a local round trip lets TCP send at once.
    for (ns, dev) in [(&t.h1, "h1"), (&t.h2, "h2")] {
        let out = ns.exec(&[
            "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "20ms",
        ]);
        if !out.status.success() {
            eprintln!("no netem delay on {dev}: {}", show(&out).trim());
        }
    }
    ping(&t.h1, H2);
    let r = iperf3_for(&t.h2, &t.h1, H2, 5201, 2, &[]);
    eprintln!("iperf3 h1 -> h2: {:.0} Mbit/s", r.mbit_s);
    assert!(r.received > 0, "iperf3 moved nothing: {:?}", r.error);
    std::thread::sleep(COUNTED_WITHIN);
    for n in [1, 2] {
        assert_eq!(
            t.rx_dropped(n),
            0,
            "port {n} dropped at its ingress: {}",
            t.sw.port_status(n)
        );
    }
}

/// `GET path` on the switch's control listener (from its namespace), the answer's body.
fn http_get_text(t: &Topo, path: &'static str) -> String {
    let addr = t.sw.ctl_addr();
    let (status, body) = t.s.enter(move || http_get(addr, path));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[test]
fn frames_a_tap_dropped_while_the_switch_stalls_are_counted_at_the_port() {
    if !require_root() {
        return;
    }
    let s = Netns::new("igt");
    let sw = Switch::builder("igt").netns(&s).start();
    let port = sw.add_port("tap", "tp0", &[]).port;
    s.wait_link("tp0");
    let dropped = |sw: &Switch| sw.port_status(port)["rx_dropped"].as_u64();
    assert_eq!(dropped(&sw), Some(0));

    // The switch stopped, the kernel sends more frames out of the TAP than its queue holds
    // (`txqueuelen`, 1000 frames by default): the rest is the TAP's tx_dropped.
    let raw = RawSock::open(&s, "tp0");
    let frame = build_frame([0xff; 6], [2, 0, 0, 0, 0, 1], None, 0x88b5, &[0x5a; 1000]);
    sw.signal(libc::SIGSTOP);
    for _ in 0..5000 {
        raw.send(&frame);
    }
    sw.signal(libc::SIGCONT);
    let n = poll(
        "rx_dropped of the TAP port",
        COUNTED_WITHIN * 4,
        || match dropped(&sw) {
            Some(n) if n > 0 => Ok(n),
            other => Err(format!("{other:?}: {}", sw.port_status(port))),
        },
    );
    let p = sw.port_status(port);
    eprintln!("TAP after the stall: rx {} rx_dropped {n}", p["rx"]);
    assert!((1000..=5000).contains(&n), "{p}");
    drop(sw);
}

#[test]
fn a_tap_without_super_frames_queues_a_window_of_mtu_sized_frames() {
    if !require_root() {
        return;
    }
    let s = Netns::new("igq");
    let sw = Switch::builder("igq")
        .netns(&s)
        .args(&["--strict-frames"])
        .start();
    sw.add_port("tap", "tp0", &[]);
    s.wait_link("tp0");
    let link = s.ip(&["-o", "link", "show", "dev", "tp0"]);
    assert!(link.contains("qlen 4096"), "{link}");
    drop(sw);
}
