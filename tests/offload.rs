//! eBPF offload of netdev ports (`etherws ctl addport netdev X --offload`), in network
//! namespaces (root; skipped loudly otherwise, a failure under `CI=true`).
//!
//! ```text
//! nsH1: h1 192.0.2.1/24 ── veth ── s1 ┐
//!                                     ├ nsS: switch S, ports 1, 2 = netdev s1, s2 (--offload)
//! nsH2: h2 192.0.2.2/24 ── veth ── s2 ┘
//! ```
//!
//! The object must have been built (`cargo xtask build-ebpf`): without it etherws builds
//! without offload and these tests say so loudly (a failure under `CI=true`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use etherws_testkit::*;
use serde_json::{Value, json};

const WS_PORT: u16 = 8080;
const CTL_PORT: u16 = 7867;
const H1: &str = "192.0.2.1";
const H2: &str = "192.0.2.2";

fn ready() -> bool {
    let test = this_test();
    if !require_root() {
        return false;
    }
    let obj = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bpf/etherws-xdp.o");
    if !obj.is_file() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: no {} (run `cargo xtask build-ebpf`)",
                obj.display()
            );
        }
        loud(&format!(
            "SKIPPED (no eBPF object, run `cargo xtask build-ebpf`): {test}"
        ));
        return false;
    }
    true
}

/// `listPort` as JSON rows.
fn list_port(ns: &Netns, sw: &Switch) -> Vec<Value> {
    let body = json!({"jsonrpc": "2.0", "method": "etherws.control.listPort", "id": 1}).to_string();
    let v = rpc_in(ns, sw.ctl_addr(), "/ctl", &body);
    v["result"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("listPort: {v}"))
        .clone()
}

fn row(rows: &[Value], port: u64) -> Value {
    rows.iter()
        .find(|r| r["port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("no port {port} in {rows:?}"))
        .clone()
}

fn k(r: &Value, key: &str) -> u64 {
    r["kernel"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no kernel.{key} in {r}"))
}

/// Whether `ifname` in `ns` has an XDP program attached (`ip link` shows `xdp…` / `prog/xdp`).
fn has_xdp(ns: &Netns, ifname: &str) -> bool {
    let out = ns.ip(&["-d", "link", "show", ifname]);
    out.contains("prog/xdp") || out.contains(" xdp")
}

/// The switch namespace, two host namespaces on veths, the switch (not started).
struct Topo {
    sw: Option<Switch>,
    ns_s: Netns,
    h1: Netns,
    h2: Netns,
}

impl Topo {
    /// `kernel_tcp`: the hosts send complete checksums (TX checksum offload off).
    fn new(tag: &str, extra: &[&str], kernel_tcp: bool) -> Topo {
        let ns_s = Netns::new(&format!("{tag}S"));
        let h1 = Netns::new(&format!("{tag}1"));
        let h2 = Netns::new(&format!("{tag}2"));
        veth(&h1, "h1", Some(&format!("{H1}/24")), &ns_s, "s1", None);
        veth(&h2, "h2", Some(&format!("{H2}/24")), &ns_s, "s2", None);
        // A veth only takes frames redirected into its peer by native XDP when it has NAPI:
        // GRO or an XDP program of its own (the hosts' ends have neither by default).
        h1.set_gro("h1", true);
        h2.set_gro("h2", true);
        // Frames switched in the kernel by native XDP lose the skb's "checksum partial"
        // state, so a local sender with TX checksum offload on would have its TCP segments
        // dropped by the receiver (bad checksum); from a real NIC frames are complete anyway.
        if kernel_tcp {
            h1.set_tx_csum("h1", false);
            h2.set_tx_csum("h2", false);
        }
        let sw = Switch::in_netns(&ns_s, tag, "127.0.0.1", WS_PORT, CTL_PORT, extra);
        Topo {
            sw: Some(sw),
            ns_s,
            h1,
            h2,
        }
    }

    fn sw(&self) -> &Switch {
        self.sw.as_ref().expect("switch running")
    }

    fn rows(&self) -> Vec<Value> {
        list_port(&self.ns_s, self.sw())
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.sw.take();
    }
}

#[test]
fn two_offloaded_ports_switch_unicast_in_the_kernel() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let mut t = Topo::new("ol", &["--ageout", "4"], true);
    let mode = std::env::var("OFFLOAD_MODE").unwrap_or_else(|_| "auto".into());
    for dev in ["s1", "s2"] {
        let rows = parse_ports(&t.sw().ctl_ok(&[
            "addport",
            "netdev",
            dev,
            "--offload=xdp",
            "--xdp-mode",
            &mode,
        ]));
        assert_eq!(rows[0].kind, "netdev/xdp", "{rows:?}\n{}", t.sw().log());
    }
    let rows = parse_ports(&t.sw().ctl_ok(&["listport"]));
    assert!(rows.iter().all(|r| r.kind == "netdev/xdp"), "{rows:?}");
    let json = t.rows();
    for r in &json {
        assert_eq!(r["type"], "netdev", "{r}");
        assert_eq!(r["datapath"], "xdp", "{r}");
    }
    assert!(has_xdp(&t.ns_s, "s1") && has_xdp(&t.ns_s, "s2"));

    // ARP (broadcast) goes through userspace, then unicast is switched in the kernel.
    ping(&t.h1, H2);
    let before = t.rows();
    let IperfResult {
        received: bytes,
        mbit_s: mbit,
        ..
    } = iperf3(&t.h2, &t.h1, H2, 5201, &[]);
    assert!(
        bytes > 1_000_000,
        "iperf3 moved {bytes} B\n{:#?}\n{}\n{}",
        t.rows(),
        t.h2.exec_ok(&["ip", "-s", "link", "show", "h2"]),
        t.h2.exec_ok(&[
            "nstat",
            "-az",
            "TcpInCsumErrors",
            "IpInReceives",
            "TcpExtTCPRcvCoalesce"
        ])
    );
    let after = t.rows();
    let (p1, p2) = (row(&after, 1), row(&after, 2));
    let (b1, b2) = (row(&before, 1), row(&before, 2));
    eprintln!("after iperf3 ({mbit:.0} Mbit/s): port 1 {p1}\nport 2 {p2}");
    let kernel_fwd = k(&p2, "tx_frames") - k(&b2, "tx_frames");
    let user_rx = p1["user_rx"].as_u64().unwrap() - b1["user_rx"].as_u64().unwrap();
    assert!(
        kernel_fwd > 1000,
        "kernel forwarded only {kernel_fwd} frames to port 2"
    );
    assert!(
        user_rx < kernel_fwd / 20,
        "userspace saw {user_rx} frames from port 1 for {kernel_fwd} forwarded in the kernel"
    );
    // listport's rx/tx include the kernel's frames.
    assert!(p2["tx"].as_u64().unwrap() >= k(&p2, "tx_frames"));
    assert!(p1["rx"].as_u64().unwrap() >= kernel_fwd);

    // The stations stay known while only the kernel sees them (ageout 4 s; seen_ns).
    let h1_mac = t.h1.mac("h1");
    let h2_mac = t.h2.mac("h2");
    let mut pinger =
        t.h1.command(&["ping", "-n", "-i", "0.2", "-w", "9", H2])
            .stdout(Stdio::null())
            .spawn()
            .expect("ping");
    std::thread::sleep(Duration::from_secs(8));
    let fdb = t.sw().listfdb();
    let _ = pinger.kill();
    let _ = pinger.wait();
    for mac in [&h1_mac, &h2_mac] {
        assert!(
            fdb.iter().any(|e| &e.mac == mac),
            "{mac} aged out although the kernel forwards its frames: {fdb:?}"
        );
    }

    // delport detaches, the other port stays.
    t.sw().ctl_ok(&["delport", "1"]);
    poll("XDP detached from s1", Duration::from_secs(5), || {
        if has_xdp(&t.ns_s, "s1") {
            Err(t.ns_s.ip(&["-d", "link", "show", "s1"]))
        } else {
            Ok(())
        }
    });
    assert!(has_xdp(&t.ns_s, "s2"));
    // Switch exit (SIGTERM): nothing left attached.
    {
        let sw = t.sw.as_mut().unwrap();
        sw.signal(libc::SIGTERM);
        sw.wait_exit(Duration::from_secs(10))
            .expect("switch exits on SIGTERM");
    }
    assert!(!has_xdp(&t.ns_s, "s2"), "{}", t.ns_s.ip(&["-d", "link"]));
    let out = t.ns_s.exec_ok(&["bpftool", "net", "show"]);
    assert!(!out.contains("etherws"), "bpftool net: {out}");
}

#[test]
fn crash_leaves_nothing_attached() {
    if !ready() {
        return;
    }
    let mut t = Topo::new("oc", &[], false);
    t.sw().ctl_ok(&["addport", "netdev", "s1", "--offload=xdp"]);
    assert!(has_xdp(&t.ns_s, "s1"));
    let sw = t.sw.as_mut().unwrap();
    sw.signal(libc::SIGKILL);
    sw.wait_exit(Duration::from_secs(10))
        .expect("switch killed");
    poll("XDP gone after SIGKILL", Duration::from_secs(5), || {
        if has_xdp(&t.ns_s, "s1") {
            Err(t.ns_s.ip(&["-d", "link", "show", "s1"]))
        } else {
            Ok(())
        }
    });
}

#[test]
fn vlans_stay_separate_in_the_kernel_path() {
    if !ready() {
        return;
    }
    for (tag, offload) in [("ov", "--offload=xdp"), ("ovt", "--offload=tc")] {
        vlans_stay_separate(tag, offload);
    }
}

/// [`vlans_stay_separate_in_the_kernel_path`] with the ports offloaded by `offload`.
fn vlans_stay_separate(tag: &str, offload: &str) {
    let t = Topo::new(tag, &[], false);
    t.sw().ctl_ok(&["addport", "netdev", "s1", offload]);
    t.sw().ctl_ok(&["addport", "netdev", "s2", offload]);
    let r1 = RawSock::open(&t.h1, "h1");
    let r2 = RawSock::open(&t.h2, "h2");
    r1.drain();
    r2.drain();
    let m1 = [0x02, 0xe7, 0, 0, 0x0b, 0x01];
    let m2 = [0x02, 0xe7, 0, 0, 0x0b, 0x02];
    let bcast = [0xff; 6];
    let et = 0x88b5;
    let mark = |s: u8| format!("etherws-offload-{}-{s}", std::process::id()).into_bytes();
    let wait = Duration::from_secs(5);
    // Both stations announce themselves in VLAN 10 (broadcast: through userspace).
    r2.send(&build_frame(bcast, m2, Some(10), et, &mark(1)));
    r1.recv_matching(wait, |f| contains(&f.data, &mark(1)))
        .expect("VLAN 10 broadcast from h2 never reached h1");
    r1.send(&build_frame(bcast, m1, Some(10), et, &mark(2)));
    r2.recv_matching(wait, |f| contains(&f.data, &mark(2)))
        .expect("VLAN 10 broadcast from h1 never reached h2");
    // Unicast in VLAN 10: switched in the kernel, tag intact.
    let before = k(&row(&t.rows(), 2), "tx_frames");
    let mut got = None;
    for i in 0..20u8 {
        r1.send(&build_frame(m2, m1, Some(10), et, &mark(10 + i)));
        if let Some(f) = r2.recv_matching(Duration::from_millis(500), |f| {
            contains(&f.data, &mark(10 + i))
        }) {
            got = Some(f);
            break;
        }
    }
    let got = got.expect("VLAN 10 unicast never reached h2");
    assert_eq!(got.tci(), Some(10));
    assert!(
        k(&row(&t.rows(), 2), "tx_frames") > before,
        "VLAN 10 unicast not switched in the kernel: {:?}",
        t.rows()
    );
    // In VLAN 20 m2 sits behind port 1 (h1's side): unicast to it from h1 stays there, in
    // the kernel path too; VLAN 10 is untouched.
    r1.send(&build_frame(bcast, m2, Some(20), et, &mark(40)));
    r2.recv_matching(wait, |f| contains(&f.data, &mark(40)))
        .expect("VLAN 20 broadcast from h1 never reached h2");
    r2.drain();
    let fwd = k(&row(&t.rows(), 2), "tx_frames");
    for i in 0..5u8 {
        r1.send(&build_frame(m2, m1, Some(20), et, &mark(50 + i)));
    }
    assert!(
        r2.recv_matching(Duration::from_secs(1), |f| (50..55)
            .any(|i| contains(&f.data, &mark(i))))
            .is_none(),
        "VLAN 20 frame for a station on the ingress side leaked to h2"
    );
    assert_eq!(
        k(&row(&t.rows(), 2), "tx_frames"),
        fwd,
        "VLAN 20 frames forwarded"
    );
    r1.send(&build_frame(m2, m1, Some(10), et, &mark(60)));
    let got = r2
        .recv_matching(wait, |f| contains(&f.data, &mark(60)))
        .expect("VLAN 10 unicast stopped working");
    assert_eq!(got.tci(), Some(10));
    let fdb = t.sw().listfdb();
    let m2s = format_mac(m2);
    assert!(
        fdb.iter()
            .any(|e| e.mac == m2s && e.vlan == 10 && e.port == 2)
            && fdb
                .iter()
                .any(|e| e.mac == m2s && e.vlan == 20 && e.port == 1),
        "{fdb:?}"
    );
}

#[test]
fn attach_failure_falls_back_to_af_packet() {
    if !ready() {
        return;
    }
    let t = Topo::new("of", &[], false);
    // Native XDP on a veth refuses a peer MTU above a page: ask for native only.
    t.ns_s.ip(&["link", "set", "s1", "mtu", "9000"]);
    t.h1.ip(&["link", "set", "h1", "mtu", "9000"]);
    let out = t.sw().ctl_ok(&[
        "addport",
        "netdev",
        "s1",
        "--offload=xdp",
        "--xdp-mode",
        "native",
    ]);
    let rows = parse_ports(&out);
    // The table says it fell back, and below it why, in the switch's words.
    assert_eq!(rows[0].kind, "netdev/fallback", "{out}\n{}", t.sw().log());
    assert!(
        out.contains("\n  port 1: offload fell back to AF_PACKET: "),
        "{out}"
    );
    // Why, in the kernel's words (not just "`bpf_link_create` failed"), and what to do.
    let kernel = std::io::Error::from_raw_os_error(libc::ERANGE).to_string();
    assert!(
        out.contains(&format!("native: `bpf_link_create` failed: {kernel}"))
            && out.contains("the MTU is too large for native XDP")
            && out.contains("`--xdp-mode generic`"),
        "{out}"
    );
    t.sw().ctl_ok(&["addport", "netdev", "s2", "--offload=xdp"]);
    let json = t.rows();
    assert_eq!(row(&json, 1)["datapath"], "af_packet", "{json:?}");
    assert!(row(&json, 1)["offload_fallback"].is_string(), "{json:?}");
    assert_eq!(row(&json, 2)["datapath"], "xdp", "{json:?}");
    assert!(!has_xdp(&t.ns_s, "s1"));
    ping(&t.h1, H2);
    ping(&t.h2, H1);
    assert!(
        t.sw().log().contains("using AF_PACKET instead"),
        "no logged reason:\n{}",
        t.sw().log()
    );
}

#[test]
fn offloaded_port_and_websocket_peer() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    // Both attach modes: in generic mode a local sender's GSO super-frames reach the switch
    // through the packet socket (too big for AF_XDP).
    let xdp = |mode: &'static str| -> Vec<&'static str> { vec!["--offload", "--xdp-mode", mode] };
    for (tag, mode, args) in [
        ("ow", "native", xdp("native")),
        ("owg", "generic", xdp("generic")),
        ("owt", "tc", vec!["--offload=tc"]),
    ] {
        // Site A: the switch with the offloaded s1 (h1 behind it) and the WebSocket server;
        // site B: a TAP 192.0.2.2 and a client port to A over the veth between them.
        let (ns_a, ns_b) = linked(tag, Sites::A_VETH, Sites::B_VETH);
        let h1 = Netns::new(&format!("{tag}1"));
        veth(&h1, "h1", Some(&format!("{H1}/24")), &ns_a, "s1", None);
        h1.set_gro("h1", true);
        let s = Sites::builder(tag)
            .a(|a| a.netdev("s1", &args))
            .b(|b| b.tap())
            .connect(&[])
            .start_in(ns_a, ns_b);
        let rows = s.a.sw.listport();
        let want = if mode == "tc" {
            "netdev/tc"
        } else {
            "netdev/xdp"
        };
        assert!(rows[0].kind.starts_with(want), "{rows:?}");
        ping(&h1, H2);
        let bytes = iperf3(&s.b.ns, &h1, H2, 5202, &[]).received;
        assert!(
            bytes > 1_000_000,
            "{mode}: iperf3 h1 → B moved {bytes} B\n{}",
            s.a.sw.log()
        );
        let bytes = iperf3(&h1, &s.b.ns, H1, 5203, &[]).received;
        assert!(
            bytes > 1_000_000,
            "{mode}: iperf3 B → h1 moved {bytes} B\n{}",
            s.a.sw.log()
        );
        let started = Instant::now();
        drop(s.b.sw);
        drop(s.a.sw);
        eprintln!("{mode}: stopped in {:?}", started.elapsed());
    }
}

/// The switch's own host on an offloaded interface: it keeps talking to the stations on that
/// interface (XDP leaves broadcasts and frames for it to the stack), and what it sends out of
/// the interface is switched like any frame on it, exactly as on an AF_PACKET port (checked
/// both ways, so the parity itself is what is tested).
#[test]
fn host_on_an_offloaded_interface_works_as_without_offload() {
    if !ready() {
        return;
    }
    const HOST: &str = "192.0.2.100";
    for (tag, program) in [
        ("ohx", Some("--offload=xdp")),
        ("oht", Some("--offload=tc")),
        ("ohp", None),
    ] {
        let offload = program.is_some();
        let t = Topo::new(tag, &[], false);
        t.ns_s
            .ip(&["addr", "add", &format!("{HOST}/24"), "dev", "s1"]);
        for dev in ["s1", "s2"] {
            let mut args = vec!["addport", "netdev", dev];
            args.extend(program);
            let rows = parse_ports(&t.sw().ctl_ok(&args));
            // XDP or TC attached (`netdev/xdp`, or `netdev/xdp-user` where frames into it go
            // through userspace; `netdev/tc`), or not asked for.
            let kind = &rows[0].kind;
            let attached = kind.starts_with("netdev/xdp") || kind.starts_with("netdev/tc");
            assert_eq!(attached, offload, "{rows:?}\n{}", t.sw().log());
        }
        // A station on s1's segment reaches the host (ARP broadcast, then unicast to it).
        ping(&t.h1, HOST);
        // The host's own frames out of s1 are switched: its ARP request reaches h2 across the
        // switch, and h2 answers it (the answer goes out of s1, onto the wire, as in 1.3).
        let _ = t
            .ns_s
            .exec(&["ping", "-n", "-c", "1", "-W", "1", "-I", "s1", H2]);
        let s1_mac = t.ns_s.mac("s1");
        poll(
            "h2 learned the host from its ARP request",
            Duration::from_secs(5),
            || {
                let out = t.h2.ip(&["neigh", "show", HOST]);
                if out.contains(&s1_mac) {
                    Ok(())
                } else {
                    Err(format!("{out}\n{:#?}\n{}", t.rows(), t.sw().log()))
                }
            },
        );
        // The host and h1 are both on port 1; h2 on port 2. Nothing flapped.
        let fdb = t.sw().listfdb();
        let port_of = |mac: &str| fdb.iter().find(|e| e.mac == mac).map(|e| e.port);
        assert_eq!(port_of(&s1_mac), Some(1), "{fdb:?}");
        assert_eq!(port_of(&t.h1.mac("h1")), Some(1), "{fdb:?}");
        assert_eq!(port_of(&t.h2.mac("h2")), Some(2), "{fdb:?}");
        if offload {
            let p1 = row(&t.rows(), 1);
            assert!(k(&p1, "host") > 0, "{p1}");
        }
    }
}

/// A veth whose peer has neither GRO nor an XDP program drops every frame XDP redirects into
/// it, silently. The switch reads the device's XDP features, keeps such a port out of in-kernel
/// forwarding (its frames go through userspace: ping works) and says so; once the peer turns
/// GRO on, the kernel forwards into it again.
#[test]
fn port_that_cannot_take_redirected_frames_is_served_by_userspace() {
    if !ready() {
        return;
    }
    let t = Topo::new("og", &[], false);
    t.h1.set_gro("h1", false);
    t.h2.set_gro("h2", false);
    for (dev, peer) in [("s1", "h1"), ("s2", "h2")] {
        let args = [
            "addport",
            "netdev",
            dev,
            "--offload=xdp",
            "--xdp-mode",
            "native",
        ];
        let out = t.sw().ctl_ok(&args);
        let rows = parse_ports(&out);
        // Attached, but served by userspace, and the table says why and what to do: which
        // interface needs GRO, and where it is (the peer is in the host's namespace).
        assert_eq!(
            rows[0].kind,
            "netdev/xdp-user",
            "{rows:?}\n{}",
            t.sw().log()
        );
        assert!(
            out.contains("XDP attached, frames into it go through userspace")
                && out.contains(&format!("its veth peer {peer} (ifindex "))
                && out.contains(&format!("`ip -d link show {dev}` names after link-netns"))
                && out.contains(&format!("ip netns exec NETNS ethtool -K {peer} gro on")),
            "{out}"
        );
    }
    ping(&t.h1, H2);
    let rows = t.rows();
    for r in &rows {
        assert_eq!(r["kernel_tx"], false, "{r}");
        assert_eq!(r["offload"], "userspace", "{r}");
        assert_eq!(k(r, "tx_frames"), 0, "{r}");
    }
    assert!(
        t.sw()
            .log()
            .contains("does not take frames redirected by XDP"),
        "{}",
        t.sw().log()
    );
    // The peer of s2 turns GRO on: s2 takes redirected frames again, h1 → h2 goes in-kernel.
    t.h2.set_gro("h2", true);
    poll("s2 back in the DEVMAP", Duration::from_secs(5), || {
        let r = row(&t.rows(), 2);
        if r["kernel_tx"] == true {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });
    ping(&t.h1, H2);
    let (r1, r2) = (row(&t.rows(), 1), row(&t.rows(), 2));
    assert!(k(&r2, "tx_frames") > 0, "{r2}");
    assert_eq!(r1["kernel_tx"], false, "{r1}");
    assert_eq!(
        (&r2["offload"], &r2["offload_reason"]),
        (&json!("kernel"), &Value::Null)
    );
    let kinds: Vec<String> = parse_ports(&t.sw().ctl_ok(&["listport"]))
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["netdev/xdp-user", "netdev/xdp"]);
}

/// A multi-queue device: one AF_XDP socket per RX queue, each bound in the XSKMAP. With
/// several TCP flows spread over a 4-queue veth, frames arrive on several queues and every one
/// of them reaches the switch through its own socket (none falls back to the stack).
#[test]
fn every_rx_queue_of_a_multi_queue_device_has_its_socket() {
    if !ready() || !require_tool("iperf3") || !require_tool("ethtool") {
        return;
    }
    let (ns_s, h1, h2) = multi_queue_topo("omq");
    h1.set_gro("h1", true);
    let sw = Switch::in_netns(&ns_s, "omq", "127.0.0.1", WS_PORT, CTL_PORT, &[]);
    let rows = parse_ports(&sw.ctl_ok(&["addport", "netdev", "s1", "--offload=xdp"]));
    assert_eq!(rows[0].kind, "netdev/xdp", "{rows:?}\n{}", sw.log());
    sw.ctl_ok(&["addport", "netdev", "s2"]);
    let log = sw.log();
    assert!(log.contains("queues=4"), "{log}");

    ping(&h1, H2);
    let IperfResult {
        received: bytes,
        mbit_s: mbit,
        ..
    } = iperf3(&h2, &h1, H2, 5203, &["-P", "8"]);
    let r1 = row(&list_port(&ns_s, &sw), 1);
    eprintln!("8 flows over 4 queues ({mbit:.0} Mbit/s): port 1 {r1}");
    assert!(
        bytes > 1_000_000,
        "iperf3 moved {bytes} B\n{r1}\n{}",
        sw.log()
    );
    assert!(k(&r1, "to_user") > 1000, "{r1}");
    assert_eq!(
        k(&r1, "passed"),
        0,
        "frames found no socket on their queue: {r1}"
    );
    // The driver's own per-queue counters: frames were redirected on more than one queue.
    let stats = ns_s.exec_ok(&["ethtool", "-S", "s1"]);
    let busy: Vec<&str> = stats
        .lines()
        .filter(|l| l.contains("_xdp_redirect:"))
        .filter(|l| {
            l.rsplit(':')
                .next()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|v| v > 100)
        })
        .collect();
    assert!(busy.len() >= 2, "frames on one queue only:\n{stats}");
}

/// Local senders with TX checksum offload (a veth's default: containers) leave TCP checksums
/// to the "hardware"; XDP redirection would deliver them unfinished and the receiver would drop
/// every segment. The program sends such frames to userspace, which finishes them: TCP works
/// with the defaults, in both attach modes.
#[test]
fn tcp_from_senders_with_checksum_offload_works() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    for (tag, mode) in [("ocn", "native"), ("ocg", "generic")] {
        let t = Topo::new(tag, &[], false);
        for dev in ["s1", "s2"] {
            let args = ["addport", "netdev", dev, "--offload", "--xdp-mode", mode];
            let rows = parse_ports(&t.sw().ctl_ok(&args));
            assert!(
                rows[0].kind.starts_with("netdev/xdp"),
                "{rows:?}\n{}",
                t.sw().log()
            );
        }
        ping(&t.h1, H2);
        let IperfResult {
            received: bytes,
            mbit_s: mbit,
            ..
        } = iperf3(&t.h2, &t.h1, H2, 5204, &[]);
        let r1 = row(&t.rows(), 1);
        eprintln!("{mode}, TX checksum offload on ({mbit:.0} Mbit/s): port 1 {r1}");
        assert!(bytes > 1_000_000, "{mode}: iperf3 moved {bytes} B\n{r1}");
        assert!(k(&r1, "csum_partial") > 100, "{mode}: {r1}");
    }
}

/// The names of the tcx ingress programs of `ifname` in `ns` (asked with aya from a thread
/// that enters the namespace: bpftool before 7.3 does not show tcx).
fn tcx_programs(ns: &Netns, ifname: &str) -> Vec<String> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{}", ns.name());
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("netns file");
        // SAFETY: setns(2) on a descriptor we own; CLONE_NEWNET moves only this thread.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let ingress = aya::programs::TcAttachType::Ingress;
        match aya::programs::SchedClassifier::query_tcx(&ifname, ingress) {
            Ok((_, progs)) => progs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_string())
                .collect(),
            Err(e) => vec![format!("query_tcx failed: {e}")],
        }
    })
    .join()
    .expect("tcx query thread")
}

/// Whether `ifname` in `ns` has our TC program attached (tcx or a netlink filter).
fn has_tc(ns: &Netns, ifname: &str) -> bool {
    let nl = ns.exec(&["tc", "filter", "show", "dev", ifname, "ingress"]);
    tcx_programs(ns, ifname).iter().any(|p| p == "etherws_tc")
        || String::from_utf8_lossy(&nl.stdout).contains("etherws_tc")
}

/// Polls until `ifname` has no TC program of ours.
fn tc_gone(ns: &Netns, ifname: &str, what: &str) {
    poll(what, Duration::from_secs(5), || {
        if has_tc(ns, ifname) {
            Err(format!("{:?}", tcx_programs(ns, ifname)))
        } else {
            Ok(())
        }
    });
}

/// `count` pings from `ns` to `addr`, which must all come back, each once (`DUP!`: a frame
/// delivered twice, by the kernel and by userspace).
fn ping_once_each(ns: &Netns, addr: &str, count: u32) {
    let out = ns.exec(&[
        "ping",
        "-n",
        "-c",
        &count.to_string(),
        "-i",
        "0.2",
        "-W",
        "2",
        addr,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ping {addr}: {text}");
    assert!(!text.contains("DUP!"), "duplicates: {text}");
    assert!(
        text.contains(&format!("{count} packets transmitted, {count} received")),
        "{text}"
    );
}

/// iperf3 from `client` to `server_ns` (`addr`): the receiving port's kernel `tx_frames`
/// must far exceed the frames userspace read from the sending port.
fn iperf_in_kernel(t: &Topo, server: &Netns, client: &Netns, addr: &str, from: u64, to: u64) {
    let before = t.rows();
    let r = iperf3(server, client, addr, 5210, &[]);
    let after = t.rows();
    let (a, b) = (row(&after, from), row(&after, to));
    let kernel = k(&b, "tx_frames") - k(&row(&before, to), "tx_frames");
    let user = a["user_rx"].as_u64().unwrap() - row(&before, from)["user_rx"].as_u64().unwrap();
    eprintln!(
        "tc, port {from} → {to}: {:.0} Mbit/s, kernel {kernel} frames, userspace {user}",
        r.mbit_s
    );
    assert!(
        r.received > 1_000_000,
        "iperf3 moved {} B\n{a}\n{b}",
        r.received
    );
    assert!(kernel > 1000, "kernel forwarded {kernel} frames\n{a}\n{b}");
    assert!(
        user < kernel / 20,
        "userspace read {user} frames for {kernel}\n{a}"
    );
}

/// `--offload=tc`: the TC program forwards GSO super-frames between two ports in the kernel,
/// with the hosts' defaults (TX checksum offload on: partial checksums cross as metadata);
/// the socket filter keeps userspace from getting a second copy (no `DUP!`); a policy sends
/// the port's frames through userspace (`netdev/tc-user`) and it still works; delport and
/// exit detach.
#[test]
fn tc_ports_switch_super_frames_in_the_kernel() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let mut t = Topo::new("otc", &[], false);
    for dev in ["s1", "s2"] {
        let out = t.sw().ctl_ok(&["addport", "netdev", dev, "--offload=tc"]);
        let rows = parse_ports(&out);
        assert_eq!(rows[0].kind, "netdev/tc", "{out}\n{}", t.sw().log());
        assert!(out.contains("TC program (tcx), asked for"), "{out}");
    }
    for r in &t.rows() {
        assert_eq!(r["datapath"], "tc", "{r}");
        assert_eq!(r["offload_program"], "tc", "{r}");
        assert_eq!(r["offload_attach"], "tcx", "{r}");
        assert_eq!(r["offload"], "kernel", "{r}");
    }
    assert!(has_tc(&t.ns_s, "s1") && has_tc(&t.ns_s, "s2"));
    assert!(!has_xdp(&t.ns_s, "s1"));

    ping(&t.h1, H2);
    ping_once_each(&t.h1, H2, 10);
    ping_once_each(&t.h2, H1, 10);
    iperf_in_kernel(&t, &t.h2, &t.h1, H2, 1, 2);
    iperf_in_kernel(&t, &t.h1, &t.h2, H1, 2, 1);

    // A policy only userspace applies: everything of port 1 goes through userspace.
    t.sw().ctl_ok(&["setport", "1", "--isolated", "1"]);
    let rows = parse_ports(&t.sw().ctl_ok(&["listport"]));
    assert_eq!(rows[0].kind, "netdev/tc-user", "{rows:?}");
    assert_eq!(rows[1].kind, "netdev/tc", "{rows:?}");
    let fwd = k(&row(&t.rows(), 2), "tx_frames");
    ping_once_each(&t.h1, H2, 5);
    let r = iperf3(&t.h2, &t.h1, H2, 5211, &[]);
    assert!(
        r.received > 1_000_000,
        "isolated: iperf3 moved {} B",
        r.received
    );
    assert_eq!(
        k(&row(&t.rows(), 2), "tx_frames"),
        fwd,
        "forwarded in the kernel"
    );
    t.sw().ctl_ok(&["setport", "1", "--isolated", "0"]);
    assert_eq!(
        parse_ports(&t.sw().ctl_ok(&["listport"]))[0].kind,
        "netdev/tc"
    );

    t.sw().ctl_ok(&["delport", "1"]);
    tc_gone(&t.ns_s, "s1", "TC program detached from s1");
    assert!(has_tc(&t.ns_s, "s2"));
    {
        let sw = t.sw.as_mut().unwrap();
        sw.signal(libc::SIGTERM);
        sw.wait_exit(Duration::from_secs(10))
            .expect("switch exits on SIGTERM");
    }
    assert!(
        !has_tc(&t.ns_s, "s2"),
        "{}",
        t.ns_s.exec_ok(&["bpftool", "net"])
    );
}

/// SIGKILL detaches a tcx program (its link dies with the process). Without tcx (forced here),
/// the netlink filter outlives the switch; the next switch removes it before attaching its own.
#[test]
fn tc_crash_leaves_nothing_attached() {
    if !ready() {
        return;
    }
    let mut t = Topo::new("otk", &[], false);
    t.sw().ctl_ok(&["addport", "netdev", "s1", "--offload=tc"]);
    assert!(has_tc(&t.ns_s, "s1"));
    let sw = t.sw.as_mut().unwrap();
    sw.signal(libc::SIGKILL);
    sw.wait_exit(Duration::from_secs(10))
        .expect("switch killed");
    tc_gone(&t.ns_s, "s1", "tcx program gone after SIGKILL");

    let netlink = |label: &str| {
        Switch::builder(label)
            .netns(&t.ns_s)
            .host("127.0.0.1")
            .port(WS_PORT)
            .ctl_port(CTL_PORT)
            .env("ETHERWS_TC_NETLINK", "1")
            .start()
    };
    let filters = || {
        let out = t
            .ns_s
            .exec_ok(&["tc", "filter", "show", "dev", "s1", "ingress"]);
        out.lines().filter(|l| l.contains("etherws_tc")).count()
    };
    let mut sw = netlink("otk2");
    let out = sw.ctl_ok(&["addport", "netdev", "s1", "--offload=tc"]);
    assert!(out.contains("TC program (netlink)"), "{out}\n{}", sw.log());
    assert_eq!(filters(), 1);
    sw.signal(libc::SIGKILL);
    sw.wait_exit(Duration::from_secs(10))
        .expect("switch killed");
    assert_eq!(filters(), 1, "a netlink filter outlives its process");
    let sw = netlink("otk3");
    sw.ctl_ok(&["addport", "netdev", "s1", "--offload=tc"]);
    assert_eq!(filters(), 1, "the stale filter was not removed");
    sw.ctl_ok(&["delport", "1"]);
    // The port's task ends, then its program is detached.
    poll(
        "delport removes the netlink filter",
        Duration::from_secs(5),
        || match filters() {
            0 => Ok(()),
            n => Err(format!("{n} filters left")),
        },
    );
}

/// Two switches, each with a TC-offloaded netdev port, joined by a ws:// tunnel: the frames
/// the TC program leaves to userspace (everything for the remote site) cross it, both ways.
#[test]
fn tc_ports_on_both_ends_of_a_websocket_tunnel() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let tag = "owtt";
    let (ns_a, ns_b) = linked(tag, Sites::A_VETH, Sites::B_VETH);
    let h1 = Netns::new(&format!("{tag}1"));
    let h2 = Netns::new(&format!("{tag}2"));
    veth(&h1, "h1", Some(&format!("{H1}/24")), &ns_a, "s1", None);
    veth(&h2, "h2", Some(&format!("{H2}/24")), &ns_b, "s2", None);
    let s = Sites::builder(tag)
        .a(|a| a.netdev("s1", &["--offload=tc"]))
        .b(|b| b.netdev("s2", &["--offload=tc"]))
        .connect(&[])
        .start_in(ns_a, ns_b);
    for sw in [&s.a.sw, &s.b.sw] {
        let rows = sw.listport();
        assert!(rows.iter().any(|r| r.kind == "netdev/tc"), "{rows:?}");
    }
    ping_within(&h1, H2, Duration::from_secs(15));
    ping_once_each(&h1, H2, 5);
    for (server, client, addr, port) in [(&h2, &h1, H2, 5220), (&h1, &h2, H1, 5221)] {
        let r = iperf3(server, client, addr, port, &[]);
        eprintln!("tc ⇄ ws:// ⇄ tc, to {addr}: {:.0} Mbit/s", r.mbit_s);
        assert!(
            r.received > 1_000_000,
            "iperf3 to {addr} moved {} B\n{}\n{}",
            r.received,
            s.a.sw.log(),
            s.b.sw.log()
        );
    }
}

/// An XDP port and a TC port on one switch: XDP still redirects into the TC port in the
/// kernel; the TC port's frames for the XDP port go through userspace; each frame once.
#[test]
fn xdp_and_tc_ports_together() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let t = Topo::new("oxt", &[], true);
    let k1 = parse_ports(&t.sw().ctl_ok(&["addport", "netdev", "s1", "--offload=xdp"]));
    // The control API: a program it does not know is refused; "tc" is the TC program.
    let call = |offload: Value| {
        json!({"jsonrpc": "2.0", "method": "etherws.control.addPort", "id": 1, "params":
               {"type": "netdev", "target": "s2", "options": {"offload": offload}}})
        .to_string()
    };
    let v = rpc_in(&t.ns_s, t.sw().ctl_addr(), "/ctl", &call(json!("bpf")));
    assert!(v["error"].to_string().contains("invalid offload"), "{v}");
    let v = rpc_in(&t.ns_s, t.sw().ctl_addr(), "/ctl", &call(json!("tc")));
    let added = &v["result"]["entries"][0];
    assert_eq!(
        (&added["datapath"], &added["offload_program"]),
        (&json!("tc"), &json!("tc")),
        "{v}"
    );
    assert_eq!(k1[0].kind, "netdev/xdp");
    ping(&t.h1, H2);
    ping_once_each(&t.h1, H2, 10);
    ping_once_each(&t.h2, H1, 10);
    for (server, client, addr, port) in [(&t.h2, &t.h1, H2, 5230), (&t.h1, &t.h2, H1, 5231)] {
        let r = iperf3(server, client, addr, port, &[]);
        eprintln!("xdp ⇄ tc, to {addr}: {:.0} Mbit/s", r.mbit_s);
        assert!(
            r.received > 1_000_000,
            "to {addr}: {} B\n{:#?}",
            r.received,
            t.rows()
        );
    }
}

/// A 4-queue veth as a TC port: TC runs per skb whatever the queue, so 8 flows over 4 queues
/// are all switched in the kernel, each frame once.
#[test]
fn tc_on_a_multi_queue_device() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let (ns_s, h1, h2) = multi_queue_topo("otm");
    let sw = Switch::in_netns(&ns_s, "otm", "127.0.0.1", WS_PORT, CTL_PORT, &[]);
    for dev in ["s1", "s2"] {
        let rows = parse_ports(&sw.ctl_ok(&["addport", "netdev", dev, "--offload=tc"]));
        assert_eq!(rows[0].kind, "netdev/tc", "{rows:?}\n{}", sw.log());
    }
    ping(&h1, H2);
    ping_once_each(&h1, H2, 5);
    ping_once_each(&h2, H1, 5);
    let r = iperf3(&h2, &h1, H2, 5240, &["-P", "8"]);
    let rows = list_port(&ns_s, &sw);
    let (r1, r2) = (row(&rows, 1), row(&rows, 2));
    eprintln!(
        "tc, 8 flows over 4 queues ({:.0} Mbit/s): {r1}\n{r2}",
        r.mbit_s
    );
    assert!(
        r.received > 1_000_000,
        "iperf3 moved {} B\n{}",
        r.received,
        sw.log()
    );
    let kernel = k(&r2, "tx_frames");
    let user = r1["user_rx"].as_u64().unwrap();
    assert!(
        kernel > 1000 && user < kernel / 20,
        "kernel {kernel}, userspace {user}"
    );
}

/// `--offload` alone is auto: on a veth the switch picks the TC program and says why in
/// `listport`'s note and the JSON row; an XDP attach mode asked for means XDP; the control API's
/// `"offload": true` is auto too. Frames still cross in the kernel, each once.
#[test]
fn auto_picks_tc_on_veths_and_says_why() {
    if !ready() {
        return;
    }
    let t = Topo::new("oau", &[], true);
    let out = t.sw().ctl_ok(&["addport", "netdev", "s1", "--offload"]);
    let rows = parse_ports(&out);
    assert_eq!(rows[0].kind, "netdev/tc", "{out}\n{}", t.sw().log());
    assert!(
        out.contains("port 1: TC program (tcx), chosen by auto: veth:"),
        "{out}"
    );
    let call = |offload: Value| {
        json!({"jsonrpc": "2.0", "method": "etherws.control.addPort", "id": 1, "params":
               {"type": "netdev", "target": "s2", "options": {"offload": offload}}})
        .to_string()
    };
    let v = rpc_in(&t.ns_s, t.sw().ctl_addr(), "/ctl", &call(json!(true)));
    let added = &v["result"]["entries"][0];
    assert_eq!(added["datapath"], "tc", "{v}");
    assert!(
        added["offload_why"]
            .as_str()
            .is_some_and(|w| w.starts_with("veth: XDP sees frames before GRO")),
        "{v}"
    );
    assert_eq!(added["offload_attach"], "tcx", "{v}");
    ping(&t.h1, H2);
    ping_once_each(&t.h1, H2, 10);
    ping_once_each(&t.h2, H1, 10);
    let k: u64 = t
        .rows()
        .iter()
        .map(|r| r["kernel"]["tx_frames"].as_u64().unwrap_or(0))
        .sum();
    assert!(k > 0, "nothing switched in the kernel: {:#?}", t.rows());
    // An XDP attach mode asked for with `--offload` alone means XDP.
    t.sw().ctl_ok(&["delport", "2"]);
    let out = t.sw().ctl_ok(&[
        "addport",
        "netdev",
        "s2",
        "--offload",
        "--xdp-mode",
        "generic",
    ]);
    assert!(
        parse_ports(&out)
            .iter()
            .any(|r| r.kind.starts_with("netdev/xdp")),
        "{out}"
    );
}

/// Two switches joined by ws://, each with an offloaded port to a host: TCP both ways through
/// the tunnel. What XDP hands userspace over AF_XDP is MTU-sized frames; the port coalesces each
/// batch's segments into super-frames (software GRO) before the switch, which its
/// `rx_gro_merged` counts (a switch without GRO has no such field, and fails here).
///
/// ```text
/// nsH1: h1 192.0.2.1 ── veth ── s1 [A --offload] ══ ws:// ══ [B --offload] s2 ── veth ── h2 192.0.2.2 :nsH2
/// ```
#[test]
fn websocket_tunnel_between_offloaded_ports_gets_super_frames() {
    if !ready() || !require_tool("iperf3") {
        return;
    }
    let tag = "og";
    let (ns_a, ns_b) = linked(tag, Sites::A_VETH, Sites::B_VETH);
    let h1 = Netns::new(&format!("{tag}1"));
    let h2 = Netns::new(&format!("{tag}2"));
    veth(&h1, "h1", Some(&format!("{H1}/24")), &ns_a, "s1", None);
    veth(&h2, "h2", Some(&format!("{H2}/24")), &ns_b, "s2", None);
    h1.set_gro("h1", true);
    h2.set_gro("h2", true);
    let s = Sites::builder(tag)
        .a(|a| a.netdev("s1", &["--offload=xdp"]))
        .b(|b| b.netdev("s2", &["--offload=xdp"]))
        .connect(&[])
        .start_in(ns_a, ns_b);
    for site in [&s.a, &s.b] {
        let rows = site.sw.listport();
        assert!(rows[0].kind.starts_with("netdev/xdp"), "{rows:?}");
    }
    ping(&h1, H2);
    let merged = |site: &Site| {
        let p = site.sw.port_status(1);
        p["rx_gro_merged"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx_gro_merged in {p}"))
    };
    let r = iperf3(&h2, &h1, H2, 5205, &[]);
    let (a, b) = (merged(&s.a), merged(&s.b));
    eprintln!(
        "h1 → h2: {:.0} Mbit/s; rx_gro_merged A {a}, B {b}",
        r.mbit_s
    );
    assert!(
        r.received > 1_000_000,
        "h1 → h2: {:?}\n{}",
        r.error,
        s.a.sw.log()
    );
    assert!(
        a > 100,
        "A's offloaded port merged {a} segments\n{}",
        s.a.sw.log()
    );
    let r = iperf3(&h1, &h2, H1, 5206, &[]);
    let b2 = merged(&s.b);
    eprintln!("h2 → h1: {:.0} Mbit/s; rx_gro_merged B {b2}", r.mbit_s);
    assert!(
        r.received > 1_000_000,
        "h2 → h1: {:?}\n{}",
        r.error,
        s.b.sw.log()
    );
    assert!(
        b2 > b + 100,
        "B's offloaded port merged {b2} segments\n{}",
        s.b.sw.log()
    );
}

/// Namespaces `{tag}S` (the switch), `{tag}1` and `{tag}2`: s1/h1 a veth with 4 queues each
/// way, s2/h2 a plain veth; the hosts have their addresses.
fn multi_queue_topo(tag: &str) -> (Netns, Netns, Netns) {
    let ns_s = Netns::new(&format!("{tag}S"));
    let h1 = Netns::new(&format!("{tag}1"));
    let h2 = Netns::new(&format!("{tag}2"));
    let q = ["numtxqueues", "4", "numrxqueues", "4"];
    let mut add = vec!["link", "add", "s1"];
    add.extend(q);
    add.extend(["netns", ns_s.name(), "type", "veth", "peer", "name", "h1"]);
    add.extend(q);
    add.extend(["netns", h1.name()]);
    ns_s.ip(&["link", "set", "lo", "up"]);
    run_ok(&[&["ip"][..], &add].concat());
    h1.ip(&["addr", "add", &format!("{H1}/24"), "dev", "h1"]);
    h1.ip(&["link", "set", "h1", "up"]);
    ns_s.ip(&["link", "set", "s1", "up"]);
    veth(&h2, "h2", Some(&format!("{H2}/24")), &ns_s, "s2", None);
    (ns_s, h1, h2)
}
