//! Scale out on BGP EVPN (docs/networks.md, "Scale out on BGP EVPN"): three etherws servers as
//! VTEP edges of one VXLAN segment, made by `contrib/etherws-evpn-edge` with real FRR (zebra and
//! bgpd) in network namespaces, and a route reflector.
//!
//! ```text
//! nsR: bridge br0 198.51.100.1/24 (the underlay, ports e1..e3); `etherws-evpn-edge rr`
//!   | veth eth0 <-> e{i}
//! nsE{i}, i = 1..3: eth0 198.51.100.1{i}/24, ws0 203.0.113.1/24; switch E{i} on 0.0.0.0;
//!                   `etherws-evpn-edge up --vni 100 --local 198.51.100.1{i} --rr 198.51.100.1`:
//!                   br-evpn with vxlan100 and evpn0b, evpn0 a netdev port of E{i}; zebra, bgpd
//!   | veth ws0 <-> ws0
//! nsV{i}: ws0 203.0.113.2/24; switch V{i} with TAP vm0 192.0.2.1{i}/24 (the "VM") and a
//!         client port to ws://203.0.113.1:PORT/ (E{i})
//! ```
//!
//! After E3 fails, VM3 reconnects to E1 through a second link (mv0, 203.0.113.6/30 in nsV3,
//! 203.0.113.5/30 in nsE1). Runs in about 35 s.

use std::thread;
use std::time::{Duration, Instant};

use etherws_testkit::dhcp::contrib;
use etherws_testkit::relay::{VM_TAP, start_vm};
use etherws_testkit::*;

/// The page that shows the recipe.
const PAGE: &str = "docs/networks.md";
/// The route reflector's underlay address.
const RR: &str = "198.51.100.1";
/// A local experimental EtherType for the hand-made broadcasts.
const ETHERTYPE: u16 = 0x88b5;

/// The script's commands as the page shows them, in order: the route reflector, an edge (the
/// first: 198.51.100.11), and `down`.
fn page_commands() -> Vec<Vec<String>> {
    let page = etherws_testkit::docs::page(PAGE);
    let commands: Vec<Vec<String>> = etherws_testkit::docs::fenced_blocks(&page, "sh")
        .iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| {
            l.strip_prefix("etherws-evpn-edge ")
                .map(|args| args.split_whitespace().map(str::to_string).collect())
        })
        .collect();
    let want: [&[&str]; 3] = [
        &["rr", "--local", RR, "--clients", "198.51.100.0/24"],
        &["up", "--vni", "100", "--local", "198.51.100.11", "--rr", RR],
        &["down"],
    ];
    assert_eq!(
        commands, want,
        "{PAGE} should show the script's commands this test runs"
    );
    etherws_testkit::docs::assert_shows(
        PAGE,
        "sh",
        "vtysh --vty_socket /run/etherws-evpn-edge/br-evpn -c 'show evpn mac vni all'\n",
    );
    commands
}

/// A state directory for FRR that its daemons (user frr) can reach.
fn state_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the state directory's parent");
    dir
}

/// Runs `contrib/etherws-evpn-edge ARGS` in `ns` with its state in `state`; returns what it
/// printed.
fn evpn_edge(ns: &Netns, ctlurl: Option<&str>, state: &TempDir, args: &[String]) -> String {
    let script = contrib("etherws-evpn-edge");
    let etherws = format!("ETHERWS={}", bin().to_string_lossy());
    let state_dir = state.file("run");
    let mut argv = vec![
        "env",
        &etherws,
        "bash",
        script.to_str().unwrap(),
        &args[0],
        "--state-dir",
        &state_dir,
    ];
    if let Some(url) = ctlurl {
        argv.extend(["--ctlurl", url]);
    }
    argv.extend(args[1..].iter().map(String::as_str));
    let out = ns.exec(&argv);
    assert!(
        out.status.success(),
        "etherws-evpn-edge {args:?} failed\n{}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vtysh -c COMMAND` against the daemons whose sockets are in `state`.
fn vtysh(state: &TempDir, command: &str) -> String {
    run_ok(&["vtysh", "--vty_socket", &state.file("run"), "-c", command])
}

/// The pids in `state`'s FRR pid files.
fn frr_pids(state: &TempDir) -> Vec<i32> {
    ["zebra", "bgpd"]
        .iter()
        .filter_map(|d| std::fs::read_to_string(state.file(&format!("run/{d}.pid"))).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// One server of the fabric and its VM. Fields drop in declaration order: the switches before
/// their namespaces (whose drop kills FRR too), the state directory last.
struct Edge {
    vm_sw: Switch,
    sw: Switch,
    vm: Netns,
    ns: Netns,
    state: TempDir,
    /// 1, 2, 3.
    i: usize,
}

impl Edge {
    fn start(i: usize, rr: &Netns, commands: &[Vec<String>]) -> Edge {
        let ns = Netns::new(&format!("evpnE{i}"));
        veth(
            &ns,
            "eth0",
            Some(&format!("{}/24", Edge::vtep(i))),
            rr,
            &format!("e{i}"),
            None,
        );
        rr.ip(&["link", "set", &format!("e{i}"), "master", "br0"]);
        let vm = Netns::new(&format!("evpnV{i}"));
        veth(
            &ns,
            "ws0",
            Some("203.0.113.1/24"),
            &vm,
            "ws0",
            Some("203.0.113.2/24"),
        );
        let sw = Switch::builder(&format!("evpn-E{i}"))
            .netns(&ns)
            // Every address: a VM reaches it later through a second link (a server failed).
            .host("0.0.0.0")
            .start();
        let state = state_dir(&format!("evpn{i}"));
        // The page's command, with this edge's own VTEP address.
        let mut up = commands[1].clone();
        let at = up.iter().position(|a| a == "--local").unwrap() + 1;
        up[at] = Edge::vtep(i);
        let said = evpn_edge(&ns, Some(&sw.ctl_url()), &state, &up);
        // The underlay's MTU (1500) less VXLAN's 50 bytes.
        assert!(
            said.contains("VNI 100") && said.contains("VXLAN MTU 1450"),
            "{said}"
        );
        let url = format!("ws://203.0.113.1:{}/", sw.ws_port);
        let (vm_sw, _) = start_vm(&vm, &format!("evpn-V{i}"), &sw, &url);
        vm.ip(&[
            "addr",
            "add",
            &format!("{}/24", Edge::vm_ip(i)),
            "dev",
            VM_TAP,
        ]);
        Edge {
            vm_sw,
            sw,
            vm,
            ns,
            state,
            i,
        }
    }

    fn vtep(i: usize) -> String {
        format!("198.51.100.1{i}")
    }

    fn vm_ip(i: usize) -> String {
        format!("192.0.2.1{i}")
    }

    fn vm_mac(&self) -> String {
        self.vm.mac(VM_TAP)
    }

    /// `show evpn mac vni all`: (MAC, type, interface or remote VTEP) of each row.
    fn evpn_macs(&self) -> Vec<(String, String, String)> {
        vtysh(&self.state, "show evpn mac vni all")
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 3 && w[0].len() == 17 && w[0].matches(':').count() == 5)
                    .then(|| (w[0].to_string(), w[1].to_string(), w[2].to_string()))
            })
            .collect()
    }

    /// Every port's `loop_blocks`, on the edge's switch and the VM's.
    fn assert_no_loop_guard(&self) {
        for (who, sw) in [("E", &self.sw), ("V", &self.vm_sw)] {
            let ports = sw.rpc("listPort", serde_json::json!({}))["entries"].clone();
            for p in ports.as_array().cloned().unwrap_or_default() {
                assert!(
                    p["loop_blocks"] == 0 && p["loop_blocked"] != true,
                    "{who}{}: the loop guard had to act: {p}",
                    self.i
                );
            }
        }
    }
}

/// The payload of round `round`'s broadcast from VM `i`.
fn marker(round: u8, i: usize) -> Vec<u8> {
    let mut p = b"etherws evpn broadcast".to_vec();
    p.extend_from_slice(&[round, i as u8]);
    p
}

/// Each VM sends one broadcast at once; then every VM's TAP is read for 2 s. Asserts that each
/// VM received each other VM's broadcast exactly once, and never its own.
fn assert_broadcasts_once(edges: &[&Edge], round: u8) {
    let socks: Vec<RawSock> = edges.iter().map(|e| RawSock::open(&e.vm, VM_TAP)).collect();
    for s in &socks {
        s.drain();
    }
    for (k, e) in edges.iter().enumerate() {
        let src = parse_mac(&e.vm_mac());
        socks[k].send(&build_frame(
            [0xff; 6],
            src,
            None,
            ETHERTYPE,
            &marker(round, e.i),
        ));
    }
    // Copies that went round a loop would come within milliseconds; 2 s is plenty.
    thread::sleep(Duration::from_secs(2));
    let mut counts = vec![vec![0; edges.len()]; edges.len()];
    for (r, sock) in socks.iter().enumerate() {
        let from =
            |f: &RxFrame| (0..edges.len()).find(|&s| contains(&f.data, &marker(round, edges[s].i)));
        while let Some(f) = sock.recv_matching(Duration::from_millis(300), |f| {
            (0..edges.len()).any(|s| contains(&f.data, &marker(round, edges[s].i)))
        }) {
            counts[r][from(&f).unwrap()] += 1;
        }
    }
    for (r, row) in counts.iter().enumerate() {
        for (s, &n) in row.iter().enumerate() {
            let want = usize::from(r != s);
            assert_eq!(
                n, want,
                "VM{} received {n} copies of VM{}'s broadcast, expected {want} \
                 (counts[receiver][sender]: {counts:?})",
                edges[r].i, edges[s].i
            );
        }
    }
}

/// Every VM pings every other VM.
fn all_ping(edges: &[&Edge]) {
    for a in edges {
        for b in edges {
            if a.i != b.i {
                ping_within(&a.vm, &Edge::vm_ip(b.i), Duration::from_secs(10));
            }
        }
    }
}

/// Waits until each edge lists the other edges' VMs as remote MACs at their VTEPs, and its own
/// VM as local on the bridge's veth end (and no MAC of a VM in `gone`).
fn wait_evpn_macs(edges: &[&Edge], gone: &[(String, String)]) {
    for e in edges {
        poll(
            &format!("E{}'s EVPN MACs", e.i),
            Duration::from_secs(20),
            || {
                let macs = e.evpn_macs();
                let has = |mac: &str, kind: &str, at: &str| {
                    macs.iter().any(|m| m.0 == mac && m.1 == kind && m.2 == at)
                };
                let mut missing = Vec::new();
                if !has(&e.vm_mac(), "local", "evpn0b") {
                    missing.push(format!("local {}", e.vm_mac()));
                }
                for o in edges.iter().filter(|o| o.i != e.i) {
                    if !has(&o.vm_mac(), "remote", &Edge::vtep(o.i)) {
                        missing.push(format!("remote {} at {}", o.vm_mac(), Edge::vtep(o.i)));
                    }
                }
                for (mac, what) in gone {
                    if macs.iter().any(|m| &m.0 == mac) {
                        missing.push(format!("{what} {mac} still listed"));
                    }
                }
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{missing:?} in {macs:?}"))
                }
            },
        );
    }
}

#[test]
fn three_edges_and_a_route_reflector() {
    if !needs(&["vtysh"]) {
        return;
    }
    if !std::path::Path::new("/usr/lib/frr/bgpd").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "FRR is not installed (/usr/lib/frr/bgpd): apt-get install frr"
        );
        loud(&format!(
            "SKIPPED (needs FRR: apt-get install frr): {}",
            this_test()
        ));
        return;
    }
    let t0 = Instant::now();
    let commands = page_commands();

    // The route reflector, on the underlay's bridge.
    let rr = Netns::new("evpnR");
    rr.bridge("br0", &[]);
    rr.ip(&["addr", "add", &format!("{RR}/24"), "dev", "br0"]);
    let rr_state = state_dir("evpnR");
    let said = evpn_edge(&rr, None, &rr_state, &commands[0]);
    assert!(said.contains("route reflector"), "{said}");

    let e1 = Edge::start(1, &rr, &commands);
    let e2 = Edge::start(2, &rr, &commands);
    let mut e3 = Edge::start(3, &rr, &commands);
    eprintln!("evpn: fabric up in {:?}", t0.elapsed());

    // Running `up` again keeps what did not change (the same one netdev port, the same VXLAN
    // device) and applies what did (ARP/ND suppression on the VXLAN port).
    let port = |e: &Edge| -> Vec<u32> {
        e.sw.listport()
            .into_iter()
            .filter(|p| p.kind.starts_with("netdev") && p.target == "evpn0")
            .map(|p| p.port)
            .collect()
    };
    let before = port(&e1);
    assert_eq!(before.len(), 1, "{:?}", e1.sw.listport());
    let vxlan_index = |e: &Edge| e.ns.ip(&["-o", "link", "show", "dev", "vxlan100"]);
    let vxlan_before = vxlan_index(&e1);
    let mut up = commands[1].clone();
    up[4] = Edge::vtep(1);
    up.push("--arp-suppress".into());
    evpn_edge(&e1.ns, Some(&e1.sw.ctl_url()), &e1.state, &up);
    assert_eq!(port(&e1), before, "the second run reuses the port");
    assert_eq!(
        vxlan_index(&e1).split(':').next(),
        vxlan_before.split(':').next(),
        "the second run made vxlan100 anew"
    );
    let vxlan_port = e1
        .ns
        .exec_ok(&["bridge", "-d", "link", "show", "dev", "vxlan100"]);
    assert!(
        vxlan_port.contains("neigh_suppress on") && vxlan_port.contains("learning off"),
        "{vxlan_port}"
    );

    // The route reflector's three sessions come up (each edge's first BGP connection).
    poll(
        "the route reflector's sessions",
        Duration::from_secs(30),
        || {
            let summary = vtysh(&rr_state, "show bgp l2vpn evpn summary");
            let up = (1..=3)
                .filter(|&i| {
                    summary.lines().any(|l| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        // Neighbor V AS MsgRcvd MsgSent TblVer InQ OutQ Up/Down State/PfxRcd:
                        // a number of prefixes, not a state, once established.
                        l.contains(&format!("({})", Edge::vtep(i)))
                            && w.len() >= 10
                            && w[9].parse::<u32>().is_ok()
                    })
                })
                .count();
            (up == 3).then_some(()).ok_or(summary)
        },
    );
    eprintln!("evpn: BGP sessions up after {:?}", t0.elapsed());
    let edges = [&e1, &e2, &e3];
    all_ping(&edges);
    eprintln!(
        "evpn: every VM reaches every other after {:?}",
        t0.elapsed()
    );
    // The largest packet the VXLAN MTU (1450) takes crosses, unfragmented.
    let big = e1.vm.exec(&[
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1422",
        &Edge::vm_ip(2),
    ]);
    assert!(big.status.success(), "a 1450-byte packet: {}", show(&big));
    // One byte more is dropped (at the bridge, before the VXLAN device), as the page says.
    let bigger = e1.vm.exec(&[
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        "1423",
        &Edge::vm_ip(2),
    ]);
    assert!(!bigger.status.success(), "a 1451-byte packet crossed");
    // The remote VMs' MACs came over BGP, as EVPN type-2 routes.
    wait_evpn_macs(&edges, &[]);
    let routes = vtysh(&e1.state, "show bgp l2vpn evpn route type macip");
    for e in [&e2, &e3] {
        assert!(
            routes.contains(&e.vm_mac()),
            "E1 has no type-2 route for VM{}'s {}:\n{routes}",
            e.i,
            e.vm_mac()
        );
    }

    // No loop: one copy of each broadcast, and no loop guard at work.
    assert_broadcasts_once(&edges, 1);
    for e in edges {
        e.assert_no_loop_guard();
    }
    eprintln!("evpn: checked after {:?}", t0.elapsed());

    // E3 fails: its switch and FRR killed, its namespace gone (VM3's stays). E1 and E2 go on,
    // and VM3's MAC is withdrawn as E3's BGP session ends.
    let vm3 = (e3.vm_mac(), "VM3".to_string());
    e3.sw.signal(libc::SIGKILL);
    assert!(
        e3.sw.wait_exit(Duration::from_secs(5)).is_some(),
        "E3 did not die"
    );
    for pid in frr_pids(&e3.state) {
        // SAFETY: kill(2) on a pid from the pid file of an FRR daemon this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let Edge {
        vm_sw: vm3_sw,
        sw,
        vm: vm3_ns,
        ns,
        state,
        ..
    } = e3;
    drop((sw, ns, state));
    let pair = [&e1, &e2];
    all_ping(&pair);
    assert_broadcasts_once(&pair, 2);
    wait_evpn_macs(&pair, std::slice::from_ref(&vm3));
    eprintln!("evpn: E3's MAC withdrawn after {:?}", t0.elapsed());

    // VM3 reconnects to E1 (as through a shared name or a load balancer): E1 advertises its
    // MAC, and VM2, on E2, reaches it across the fabric again.
    veth(
        &e1.ns,
        "mv0",
        Some("203.0.113.5/30"),
        &vm3_ns,
        "mv0",
        Some("203.0.113.6/30"),
    );
    for p in vm3_sw.listport().iter().filter(|p| p.kind == "client") {
        vm3_sw.ctl_ok(&["delport", &p.port.to_string()]);
    }
    vm3_sw.add_port(
        "client",
        &format!("ws://203.0.113.5:{}/", e1.sw.ws_port),
        &[],
    );
    e1.sw.wait_servers(2);
    ping_within(&vm3_ns, &Edge::vm_ip(2), Duration::from_secs(10));
    ping_within(&e2.vm, &Edge::vm_ip(3), Duration::from_secs(10));
    ping_within(&e1.vm, &Edge::vm_ip(3), Duration::from_secs(10));
    poll("VM3's MAC at E1", Duration::from_secs(20), || {
        let (at1, at2) = (e1.evpn_macs(), e2.evpn_macs());
        let on = |macs: &[(String, String, String)], kind: &str, at: &str| {
            macs.iter()
                .any(|m| m.0 == vm3.0 && m.1 == kind && m.2 == at)
        };
        (on(&at1, "local", "evpn0b") && on(&at2, "remote", &Edge::vtep(1)))
            .then_some(())
            .ok_or(format!("E1: {at1:?}\nE2: {at2:?}"))
    });
    for p in vm3_sw.rpc("listPort", serde_json::json!({}))["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert!(p["loop_blocks"] == 0, "V3: the loop guard had to act: {p}");
    }
    eprintln!("evpn: VM3 back through E1 after {:?}", t0.elapsed());

    // The page's `down` undoes `up` on E1.
    let said = evpn_edge(&e1.ns, Some(&e1.sw.ctl_url()), &e1.state, &commands[2]);
    assert!(said.contains("down"), "{said}");
    assert!(port(&e1).is_empty(), "{:?}", e1.sw.listport());
    for dev in ["br-evpn", "vxlan100", "evpn0", "evpn0b"] {
        assert!(!e1.ns.has_link(dev), "{dev} is still there after down");
    }
    assert!(
        frr_pids(&e1.state).is_empty(),
        "FRR's pid files are still there after down"
    );
    no_ping(&e1.vm, &Edge::vm_ip(2));
    drop((vm3_sw, vm3_ns));

    // --config-only writes FRR's configuration, which bgpd accepts, and starts nothing (E2's
    // daemons are stopped).
    let mut up = commands[1].clone();
    up[4] = Edge::vtep(2);
    up[6] = format!("{RR},198.51.100.2");
    up.push("--config-only".into());
    let said = evpn_edge(&e2.ns, Some(&e2.sw.ctl_url()), &e2.state, &up);
    assert!(said.contains("not started"), "{said}");
    assert!(
        frr_pids(&e2.state).is_empty(),
        "FRR still runs with --config-only"
    );
    let conf = std::fs::read_to_string(e2.state.file("run/frr.conf")).expect("frr.conf");
    for line in [
        "router bgp 65000",
        " bgp router-id 198.51.100.12",
        " neighbor 198.51.100.1 remote-as internal",
        " neighbor 198.51.100.2 remote-as internal",
        "  neighbor 198.51.100.2 activate",
        " address-family l2vpn evpn",
        "  neighbor 198.51.100.1 activate",
        "  advertise-all-vni",
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "no {line:?} in frr.conf:\n{conf}"
        );
    }
    let check = e2.ns.exec(&[
        "/usr/lib/frr/bgpd",
        "-C",
        "-f",
        &e2.state.file("run/frr.conf"),
    ]);
    assert!(check.status.success(), "bgpd -C: {}", show(&check));
    for e in pair {
        e.assert_no_loop_guard();
    }
    // `rr-down` stops the route reflector's daemons, and touches no interface.
    let said = evpn_edge(&rr, None, &rr_state, &["rr-down".to_string()]);
    assert!(said.contains("down"), "{said}");
    assert!(frr_pids(&rr_state).is_empty(), "the RR's FRR runs on");
    assert!(rr.has_link("br0"));
    let took = t0.elapsed();
    eprintln!("evpn: done in {took:?}");
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

/// The script refuses `all` and `default` (no interfaces: /proc/sys/net/*/conf/all holds every
/// interface's settings) and bad names for the devices it creates and deletes, before it runs
/// anything (no root needed): `ip`, `etherws` and FRR are stubs that record their calls and
/// fail, so that nothing is ever changed. `--help` says how to read FRR's state.
#[test]
fn the_script_refuses_host_wide_interface_names() {
    let dir = TempDir::new("evpn-stub");
    let called = dir.file("called");
    let stub = format!("#!/bin/sh\necho \"$0 $*\" >> '{called}'\nexit 1\n");
    for name in ["ip", "etherws", "zebra", "bgpd"] {
        let path = dir.write(name, &stub);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the stub");
    }
    let run = |args: &[&str]| {
        let _ = std::fs::remove_file(&called);
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .arg(contrib("etherws-evpn-edge"))
            .args(args)
            .args(["--state-dir", &dir.file("run")])
            .env("PATH", path)
            .env("ETHERWS", dir.file("etherws"))
            .env("FRR_DIR", dir.path())
            .output()
            .expect("run the script");
        (out, std::fs::read_to_string(&called).unwrap_or_default())
    };
    let up = ["up", "--vni", "100", "--local", "198.51.100.11", "--rr", RR];
    for (opt, name) in [
        ("--bridge", "all"),
        ("--bridge", "default"),
        ("--veth", "all"),
        ("--veth", "default"),
        ("--bridge", ".."),
        ("--veth", "-x"),
        ("--veth", "a-name-too-long"),
    ] {
        for args in [&up[..], &["down"][..]] {
            let (out, calls) = run(&[args, &[opt, name]].concat());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {opt} {name}: {err}");
            assert!(
                calls.is_empty(),
                "{args:?} {opt} {name} went on to run {calls}"
            );
            assert!(
                err.starts_with("etherws-evpn-edge: ") && err.contains(name),
                "{args:?} {opt} {name}: {err}"
            );
        }
    }
    // A good name passes the check, and the script goes on (to the failing `ip` stub).
    let (out, calls) = run(&up);
    assert!(!out.status.success());
    assert!(calls.contains("/ip "), "ip was not called: {calls:?}");

    let (out, _) = run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("vtysh --vty_socket"),
        "{help}"
    );
}
