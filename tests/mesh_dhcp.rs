//! Meshes of switches, and the DHCP and NAT recipe for browser VMs (docs/networks.md, "Meshes",
//! and docs/dhcp-nat.md).
//!
//! `three_switches_in_a_full_mesh`:
//!
//! ```text
//! nsU: Linux bridge br0 joining u1, u2, u3 (the underlay)
//! nsM{i}, i = 1..3: eth0 198.51.100.{i}/24, switch S{i} on 198.51.100.{i}:8080 with
//!                   `--path /mesh=mesh --path /`, TAP mesh0 192.0.2.{i}/24
//! S2 -> S1 and S3 -> S1: `addport client ws://198.51.100.1:8080/mesh --mesh` (mesh by path)
//! S3 -> S2:              `addport client ws://198.51.100.2:8080/ --mesh`, and S2 makes its
//!                        server port a mesh port with `setport N --mesh 1`
//! ```
//!
//! `dhcp_and_nat_for_a_browser_vm`, driving `contrib/etherws-lan-gateway` with the commands
//! docs/dhcp-nat.md shows, read from the page (plus the switch's control URL, a state
//! directory of the test's, and `--range`):
//!
//! ```text
//! nsInet: eth0 198.51.100.2/24 (beyond the NAT; no route back to 192.0.2.0/24)
//!   | veth
//! nsGw: eth0 198.51.100.1/24 (uplink), ws0 203.0.113.1/24; switch S on 0.0.0.0 with
//!       `--path /lab=vlan:10`; the script adds TAP lan0 (VLAN 10, 192.0.2.1/24), dnsmasq on it
//!       and the nftables table `inet etherws-lan-lan0`
//!   | veth
//! nsVm: ws0 203.0.113.2/24; switch C with TAP vm0 (the "browser VM", addressed by udhcpc)
//!       and a client port to ws://203.0.113.1:PORT/lab
//! ```

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use etherws_testkit::dhcp::*;
use etherws_testkit::relay::*;
use etherws_testkit::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// meshes

/// Every mesh switch's TAP.
const MESH_TAP: &str = "mesh0";
/// A local experimental EtherType for the hand-made broadcasts.
const ETHERTYPE: u16 = 0x88b5;

/// One switch of the mesh. Fields drop in declaration order: the switch before its namespace.
struct Node {
    sw: Switch,
    ns: Netns,
    /// 1, 2, 3: the last byte of its underlay and TAP addresses.
    i: usize,
}

impl Node {
    fn start(i: usize, under: &Netns) -> Node {
        let ns = Netns::new(&format!("mesh{i}"));
        let host = format!("198.51.100.{i}");
        veth(
            &ns,
            "eth0",
            Some(&format!("{host}/24")),
            under,
            &format!("u{i}"),
            None,
        );
        let sw = Switch::builder(&format!("mesh-S{i}"))
            .netns(&ns)
            .host(&host)
            .port(8080)
            .ctl_port(7867)
            .args(&["--path", "/mesh=mesh", "--path", "/"])
            .start();
        Node { sw, ns, i }
    }

    fn tap_ip(&self) -> String {
        format!("192.0.2.{}", self.i)
    }

    /// The URL of this switch's WebSocket `path`.
    fn url(&self, path: &str) -> String {
        format!("ws://198.51.100.{}:8080{path}", self.i)
    }

    /// Every port as `listPort` reports it.
    fn ports(&self) -> Vec<Value> {
        self.sw.rpc("listPort", serde_json::json!({}))["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The payload of round `round`'s broadcast from node `i`.
fn marker(round: u8, i: usize) -> Vec<u8> {
    let mut p = b"etherws mesh broadcast".to_vec();
    p.extend_from_slice(&[round, i as u8]);
    p
}

/// Each node in `senders` sends one broadcast frame out of its TAP (into its switch), all at
/// once; then every node's TAP is read for 2 s. Returns `counts[r][s]`: how many copies of
/// node `s`'s broadcast node `r`'s host received (indices into `nodes`).
fn broadcast_counts(nodes: &[&Node], senders: &[usize], round: u8) -> Vec<Vec<usize>> {
    let socks: Vec<RawSock> = nodes
        .iter()
        .map(|n| RawSock::open(&n.ns, MESH_TAP))
        .collect();
    for s in &socks {
        s.drain();
    }
    for &s in senders {
        let src = parse_mac(&nodes[s].ns.mac(MESH_TAP));
        socks[s].send(&build_frame(
            [0xff; 6],
            src,
            None,
            ETHERTYPE,
            &marker(round, nodes[s].i),
        ));
    }
    // Copies that went round a loop would come within milliseconds; 2 s is plenty.
    thread::sleep(Duration::from_secs(2));
    let mut counts = vec![vec![0; nodes.len()]; nodes.len()];
    for (r, sock) in socks.iter().enumerate() {
        while let Some(f) = sock.recv_matching(Duration::from_millis(300), |f| {
            (0..nodes.len()).any(|s| contains(&f.data, &marker(round, nodes[s].i)))
        }) {
            let s = (0..nodes.len())
                .find(|&s| contains(&f.data, &marker(round, nodes[s].i)))
                .unwrap();
            counts[r][s] += 1;
        }
    }
    counts
}

/// Asserts that each sender's broadcast reached every other node's host exactly once, and
/// never came back to its own.
fn assert_each_once(nodes: &[&Node], senders: &[usize], counts: &[Vec<usize>]) {
    for (r, row) in counts.iter().enumerate() {
        for &s in senders {
            let want = usize::from(r != s);
            assert_eq!(
                row[s], want,
                "host {} received {} copies of host {}'s broadcast, expected {want} \
                 (counts[receiver][sender]: {counts:?})",
                nodes[r].i, row[s], nodes[s].i
            );
        }
    }
}

/// Port number -> (rx, tx) of a switch.
fn traffic(node: &Node) -> Vec<(u64, u64, u64)> {
    node.ports()
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["rx"].as_u64().unwrap(),
                p["tx"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn three_switches_in_a_full_mesh() {
    if !require_root() {
        return;
    }
    let under = Netns::new("meshU");
    let mut n1 = Node::start(1, &under);
    let n2 = Node::start(2, &under);
    let n3 = Node::start(3, &under);
    under.bridge("br0", &["u1", "u2", "u3"]);

    // The mesh links, before any host exists (no frame crosses them yet).
    let c21 = n2.sw.add_port("client", &n1.url("/mesh"), &["--mesh"]);
    n1.sw.wait_servers(1);
    let c31 = n3.sw.add_port("client", &n1.url("/mesh"), &["--mesh"]);
    let s1 = n1.sw.wait_servers(2);
    let c32 = n3.sw.add_port("client", &n2.url("/"), &["--mesh"]);
    let s2 = n2.sw.wait_servers(1)[0].port;
    // "/" is a plain path: S2 makes the port a mesh port at run time.
    let p = n2.sw.port_status(s2);
    assert_eq!(
        (&p["path"], &p["mesh"]),
        (&Value::from("/"), &Value::from(false)),
        "{p}"
    );
    n2.sw.ctl_ok(&["setport", &s2.to_string(), "--mesh", "1"]);
    assert_eq!(n2.sw.port_status(s2)["mesh"], true);
    let verbose = n2.sw.ctl_ok(&["listport", "-l"]);
    let head = header(&verbose);
    let col = |name: &str| {
        head.iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no {name} column in listport -l:\n{verbose}"))
    };
    let (flags, path) = (col("Flags"), col("Path"));
    let row = table_cells(&verbose)
        .into_iter()
        .find(|r| r[0] == s2.to_string())
        .unwrap_or_else(|| panic!("no port {s2} in listport -l:\n{verbose}"));
    assert!(
        row[flags].split(',').any(|f| f == "mesh") && row[path] == "/",
        "listport -l should show port {s2} with the mesh flag and path /:\n{verbose}"
    );
    for row in &s1 {
        let p = n1.sw.port_status(row.port);
        assert_eq!(
            (&p["path"], &p["mesh"]),
            (&Value::from("/mesh"), &Value::from(true)),
            "S1's server ports are mesh ports by their path: {p}"
        );
    }
    for (node, port) in [(&n2, c21.port), (&n3, c31.port), (&n3, c32.port)] {
        let p = node.sw.port_status(port);
        assert_eq!(p["mesh"], true, "client ports added with --mesh: {p}");
    }

    let nodes = [&n1, &n2, &n3];
    for n in nodes {
        n.sw.add_tap(&n.ns, MESH_TAP, &n.tap_ip());
    }
    for a in nodes {
        for b in nodes {
            if a.i != b.i {
                ping(&a.ns, &b.tap_ip());
            }
        }
    }

    // One broadcast from each host at once: every other host gets each exactly once, and
    // nothing circulates afterwards.
    let before = nodes.map(traffic);
    let t0 = Instant::now();
    let counts = broadcast_counts(&nodes, &[0, 1, 2], 1);
    assert_each_once(&nodes, &[0, 1, 2], &counts);
    thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    let after = nodes.map(traffic);
    for (k, n) in nodes.iter().enumerate() {
        for &(port, rx, tx) in &after[k] {
            let (rx0, tx0) = before[k]
                .iter()
                .find(|b| b.0 == port)
                .map(|b| (b.1, b.2))
                .unwrap_or((0, 0));
            assert!(
                rx - rx0 <= 20 && tx - tx0 <= 20,
                "S{} port {port}: {} frames in, {} out in the 10 s after three broadcasts \
                 (a storm?)\nbefore {:?}\nafter {:?}",
                n.i,
                rx - rx0,
                tx - tx0,
                before[k],
                after[k]
            );
        }
        for p in n.ports() {
            assert!(
                p["loop_blocks"] == 0 && p["loop_blocked"] != true && p["storm_dropped"] == 0,
                "S{}: the loop guard or storm control had to act: {p}",
                n.i
            );
        }
    }

    // S1 dies: S2 and S3 keep their own link.
    n1.sw.signal(libc::SIGKILL);
    assert!(
        n1.sw.wait_exit(Duration::from_secs(5)).is_some(),
        "S1 did not die"
    );
    ping(&n2.ns, &n3.tap_ip());
    ping(&n3.ns, &n2.tap_ip());
    let pair = [&n2, &n3];
    let counts = broadcast_counts(&pair, &[0, 1], 2);
    assert_each_once(&pair, &[0, 1], &counts);
    assert_eq!(
        n3.sw.port(c32.port).map(|r| r.state),
        Some("up".to_string()),
        "S3's link to S2"
    );
}

// ---------------------------------------------------------------------------------------------
// DHCP and NAT

const BEYOND: &str = "198.51.100.2";

/// The page that shows the recipe.
const DHCP_PAGE: &str = "docs/dhcp-nat.md";

/// The helper's commands as the page shows them, in order: egress closed, egress open, down.
/// Their settings: TAP lan0, VLAN 10, the gateway 192.0.2.1/24, uplink eth0.
fn page_commands() -> Vec<Vec<String>> {
    let page = etherws_testkit::docs::page(DHCP_PAGE);
    let commands: Vec<Vec<String>> = etherws_testkit::docs::fenced_blocks(&page, "sh")
        .iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| {
            l.strip_prefix("etherws-lan-gateway ")
                .map(|args| args.split_whitespace().map(str::to_string).collect())
        })
        .collect();
    let closed = [
        "--tap",
        "lan0",
        "--vlan",
        "10",
        "--address",
        "192.0.2.1/24",
        "--uplink",
        "eth0",
    ];
    let open: Vec<&str> = closed.iter().copied().chain(["--allow-egress"]).collect();
    assert_eq!(
        commands,
        [&closed[..], &open[..], &["--down", "--tap", "lan0"][..]],
        "{DHCP_PAGE} should show the helper's commands this test runs"
    );
    commands
}

/// The leases the test asks for besides the page's settings: 192.0.2.100-150 (the page's
/// commands hand out the default range, 100-199).
const RANGE: [&str; 2] = ["--range", "192.0.2.100,192.0.2.150"];

/// The page's command `command` with the test's [`RANGE`].
fn with_range(command: &[String]) -> Vec<&str> {
    command.iter().map(String::as_str).chain(RANGE).collect()
}

/// Whether a TCP connection from `ns` to `addr` is accepted within 1.5 s.
fn tcp_opens(ns: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.enter(move || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).is_ok()
    })
}

fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec_ok(&["cat", &format!("/proc/sys/net/ipv4/{key}")])
        .trim()
        .to_string()
}

/// The dnsmasq the script started: its pid, from the pid file, if it runs in `gw`.
fn dnsmasq_pid(gw: &Netns, state: &TempDir) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(state.file("run/dnsmasq.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq" && gw.pids().contains(&pid)).then_some(pid)
}

#[test]
fn dhcp_and_nat_for_a_browser_vm() {
    if !needs(&["dnsmasq", "nft", "busybox"]) {
        return;
    }
    let gw = Netns::new("gw");
    let inet = Netns::new("inet");
    let vm = Netns::new("vm");
    veth(
        &gw,
        "eth0",
        Some("198.51.100.1/24"),
        &inet,
        "eth0",
        Some("198.51.100.2/24"),
    );
    veth(
        &gw,
        "ws0",
        Some("203.0.113.1/24"),
        &vm,
        "ws0",
        Some("203.0.113.2/24"),
    );
    let s = Switch::builder("gw")
        .netns(&gw)
        .host("0.0.0.0")
        .args(&["--path", "/lab=vlan:10"])
        .start();
    let state = TempDir::new("lan-gw");
    // IPv6 on in the gateway's namespace, as on a real host (the kit turns it off): the TAP the
    // script makes has the kernel's defaults.
    enable_ipv6(&gw);

    // The page's recipe, egress closed (the default).
    let commands = page_commands();
    assert_eq!(sysctl(&gw, "ip_forward"), "0");
    let said = lan_gateway(&gw, &s, &state, &with_range(&commands[0]));
    assert!(said.contains("egress closed"), "{said}");
    let taps: Vec<PortRow> = s
        .listport()
        .into_iter()
        .filter(|p| p.kind == "tap")
        .collect();
    assert!(
        taps.len() == 1 && taps[0].target == LAN_TAP,
        "one tap port lan0: {taps:?}"
    );
    let lan_port = taps[0].port;
    assert_eq!(s.port_status(lan_port)["vlan"], 10);
    assert!(
        s.listif()
            .iter()
            .any(|i| i.port == lan_port && i.address == GATEWAY && i.netmask == "255.255.255.0"),
        "{:?}",
        s.listif()
    );
    assert!(nft_has_table(&gw, "inet", "etherws-lan-lan0"));
    let dnsmasq = dnsmasq_pid(&gw, &state).expect("dnsmasq runs in the gateway's namespace");
    // Forwarding on the TAP and the uplink only.
    for (key, want) in [
        ("conf/lan0/forwarding", "1"),
        ("conf/eth0/forwarding", "1"),
        ("conf/ws0/forwarding", "0"),
        ("ip_forward", "0"),
    ] {
        assert_eq!(sysctl(&gw, key), want, "{key}");
    }
    // No router advertisements taken on the TAP.
    for key in ["accept_ra", "autoconf"] {
        let path = format!("/proc/sys/net/ipv6/conf/{LAN_TAP}/{key}");
        assert_eq!(gw.exec_ok(&["cat", &path]).trim(), "0", "{path}");
    }

    // The "browser VM": a TAP on a switch of its own, connected to S's path /lab.
    let url = format!("ws://203.0.113.1:{}/lab", s.ws_port);
    let (_c, server) = start_vm(&vm, "vm", &s, &url);
    let p = s.port_status(server);
    assert_eq!(
        (&p["path"], &p["vlan"]),
        (&Value::from("/lab"), &Value::from(10)),
        "{p}"
    );

    let dir = TempDir::new("udhcpc");
    let lease = udhcpc(&vm, VM_TAP, &dir, 10);
    let last: u8 = lease
        .ip
        .strip_prefix("192.0.2.")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("lease outside 192.0.2.0/24: {lease:?}"));
    assert!((100..=150).contains(&last), "{lease:?}");
    assert_eq!(lease.prefix, 24, "{lease:?}");
    assert_eq!(lease.routers, [GATEWAY], "{lease:?}");
    assert_eq!(lease.server, GATEWAY, "{lease:?}");
    assert!(
        lease.dns.is_empty(),
        "no DNS server unless --dns: {lease:?}"
    );
    assert!(vm.addrs(VM_TAP).contains(&format!("{}/24", lease.ip)));
    let leases = std::fs::read_to_string(state.file("run/leases")).unwrap_or_default();
    let vm_mac = vm.mac(VM_TAP);
    assert!(
        leases.contains(&vm_mac) && leases.contains(&lease.ip),
        "dnsmasq's lease file should hold {vm_mac} {}: {leases}",
        lease.ip
    );

    // Egress closed: the gateway answers, nothing beyond it does, and the gateway's own
    // services are closed to the VMs (S listens on every address).
    ping(&vm, GATEWAY);
    no_ping(&vm, BEYOND);
    let ws_on_lan = format!("{GATEWAY}:{}", s.ws_port);
    assert!(tcp_opens(&vm, &format!("203.0.113.1:{}", s.ws_port)));
    assert!(!tcp_opens(&vm, &ws_on_lan), "the VM reached S's listener");

    // A VM's router advertisement reaches the gateway's TAP, and gives the host neither a
    // default route nor an address in its prefix.
    let on_lan = RawSock::open(&gw, LAN_TAP);
    let ra = router_advertisement(parse_mac(&vm_mac));
    let from_vm = RawSock::open(&vm, VM_TAP);
    let mut seen = false;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        from_vm.send(&ra);
        seen |= on_lan
            .recv_matching(Duration::from_millis(300), |f| {
                is_router_advertisement(&f.data)
            })
            .is_some();
        assert_no_route_from_ra(&gw, "a VM");
    }
    assert!(seen, "the router advertisement never reached {LAN_TAP}");

    // Beyond the NAT: a web server and a mail server in nsInet, which has no route back.
    assert!(
        !inet
            .ip_try(&["route", "get", "192.0.2.100"])
            .status
            .success(),
        "nsInet must not route to the VMs: only the masquerade gets replies back"
    );
    let listeners = inet.enter(|| {
        ["198.51.100.2:80", "198.51.100.2:25"]
            .map(|a| std::net::TcpListener::bind(a).expect("listen in nsInet"))
    });
    assert!(
        !tcp_opens(&vm, "198.51.100.2:80"),
        "egress should be closed"
    );

    // Again with --allow-egress: the same port, the lease still good.
    let said = lan_gateway(&gw, &s, &state, &with_range(&commands[1]));
    assert!(said.contains("egress open"), "{said}");
    let taps: Vec<u32> = s
        .listport()
        .into_iter()
        .filter(|p| p.kind == "tap")
        .map(|p| p.port)
        .collect();
    assert_eq!(taps, [lan_port], "the second run reuses the port");
    let dnsmasq2 = dnsmasq_pid(&gw, &state).expect("dnsmasq runs again");
    assert!(
        !gw.pids().contains(&dnsmasq) || dnsmasq == dnsmasq2,
        "the first dnsmasq should be gone"
    );
    ping(&vm, BEYOND);
    assert!(tcp_opens(&vm, "198.51.100.2:80"), "web through the NAT");
    assert!(!tcp_opens(&vm, "198.51.100.2:25"), "SMTP stays closed");
    assert!(!tcp_opens(&vm, &ws_on_lan), "the gateway stays closed");
    drop(listeners);

    // --down undoes it all.
    let down: Vec<&str> = commands[2].iter().map(String::as_str).collect();
    let said = lan_gateway(&gw, &s, &state, &down);
    assert!(said.contains("down"), "{said}");
    assert!(!nft_has_table(&gw, "inet", "etherws-lan-lan0"));
    assert_eq!(dnsmasq_pid(&gw, &state), None, "dnsmasq should be stopped");
    assert!(
        s.listport().iter().all(|p| p.kind != "tap"),
        "{:?}",
        s.listport()
    );
}

/// The shell words of `text`, continuation lines joined.
fn words(text: &str) -> Vec<String> {
    text.replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The page's recipe by hand (steps 3 and 5, and the rules that open the egress) is what the
/// helper does for the page's settings (TAP lan0, uplink eth0, 192.0.2.1/24): the same nftables
/// table, the same egress rules, the same dnsmasq options but for where its files go.
#[test]
fn the_recipe_by_hand_is_what_the_helper_does() {
    let page = etherws_testkit::docs::page(DHCP_PAGE);
    let script = std::fs::read_to_string(contrib("etherws-lan-gateway")).expect("the helper");
    let fill = |s: &str| {
        s.replace("\t", "    ")
            .replace("\\\"", "\"")
            .replace("$table", "etherws-lan-lan0")
            .replace("\"$tap\"", "\"lan0\"")
            .replace("\"$uplink\"", "\"eth0\"")
            .replace("$subnet", "192.0.2.0/24")
            .replace("\"$gw\"", "192.0.2.1")
            .replace(
                "$first,$last,$netmask,$lease_time",
                "192.0.2.100,192.0.2.199,255.255.255.0,1h",
            )
    };
    let between = |text: &str, from: &str, to: &str| -> String {
        let start = text.find(from).unwrap_or_else(|| panic!("no {from:?}")) + from.len();
        let len = text[start..]
            .find(to)
            .unwrap_or_else(|| panic!("no {to:?}"));
        text[start..start + len].to_string()
    };
    let sh = etherws_testkit::docs::fenced_blocks(&page, "sh");

    // Step 3: the table.
    let shown = sh
        .iter()
        .find_map(|b| b.strip_prefix("nft -f - <<'EOF'\n"))
        .and_then(|b| b.strip_suffix("EOF\n"))
        .expect("the page's nftables table");
    // The whole transaction, the table made anew as the helper makes it (so that running it
    // again replaces the table rather than appending to its chains).
    let made =
        fill(&between(&script, "\"$nft\" -f - <<EOF\n", "EOF\n")).replace("$egress_rules\n", "");
    assert!(
        made.starts_with("table inet etherws-lan-lan0 {}\ndelete table inet etherws-lan-lan0\n"),
        "{made}"
    );
    assert_eq!(shown, made, "{DHCP_PAGE}'s table is not the helper's");

    // The rules that open the egress.
    let shown = etherws_testkit::docs::fenced_blocks(&page, "")
        .into_iter()
        .find(|b| b.contains("tcp dport 25 drop"))
        .expect("the page's egress rules");
    let made: String = fill(&between(&script, "egress_rules=\"", "\"\nelse"))
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert_eq!(
        shown, made,
        "{DHCP_PAGE}'s egress rules are not the helper's"
    );

    // Step 4: the TAP's IPv6 settings the helper turns off (no router advertisements taken).
    let keys = between(&script, "for key in ", "; do");
    assert!(keys.contains("accept_ra"), "{keys}");
    for key in keys.split_whitespace() {
        let line = format!("echo 0 > /proc/sys/net/ipv6/conf/lan0/{key}\n");
        assert!(
            sh.iter().any(|b| b.contains(&line)),
            "{DHCP_PAGE} does not turn {key} off by hand as the helper does"
        );
    }

    // Step 5: dnsmasq, its files aside.
    let shown = words(
        sh.iter()
            .find(|b| b.starts_with("dnsmasq "))
            .expect("the page's dnsmasq command"),
    );
    let made: Vec<String> = words(&fill(&between(
        &script,
        "stop_dnsmasq\nset -- ",
        "\nif [ -n \"$dns\" ]",
    )))
    .iter()
    .map(|w| w.replace('"', ""))
    .collect();
    let files = ["--dhcp-leasefile=", "--pid-file="];
    for arg in &shown[1..] {
        match files.iter().find(|f| arg.starts_with(*f)) {
            Some(f) => assert!(made.iter().any(|m| m.starts_with(f)), "{f} {made:?}"),
            None => assert!(made.contains(arg), "{arg}: not in the helper's {made:?}"),
        }
    }
}

/// Step 3 of the page, run again with the egress rules put where the page says, opens the
/// egress: the table is made anew, so the rules stand before `iifname "lan0" drop` (not appended
/// after it, where they would never match), once; run again without them, it closes it again.
#[test]
fn the_recipe_by_hand_can_be_run_again() {
    if !require_root() || !require_tool("nft") {
        return;
    }
    let page = etherws_testkit::docs::page(DHCP_PAGE);
    let step3 = etherws_testkit::docs::fenced_blocks(&page, "sh")
        .into_iter()
        .find(|b| b.starts_with("nft -f - <<'EOF'\n"))
        .expect("the page's nftables table");
    let egress = etherws_testkit::docs::fenced_blocks(&page, "")
        .into_iter()
        .find(|b| b.contains("tcp dport 25 drop"))
        .expect("the page's egress rules");
    // As the page says: right after the forward chain's `ct state established,related accept`.
    let after = "ct state established,related accept\n";
    let at = step3
        .find("chain forward")
        .and_then(|f| step3[f..].find(after).map(|a| f + a + after.len()))
        .expect("the forward chain's established,related line");
    let opened = format!("{}{egress}{}", &step3[..at], &step3[at..]);

    let ns = Netns::new("dnr");
    let forward = || {
        ns.exec_ok(&[
            "nft",
            "list",
            "chain",
            "inet",
            "etherws-lan-lan0",
            "forward",
        ])
    };
    let sh = |script: &str| ns.exec_ok(&["sh", "-c", script]);
    sh(&step3);
    sh(&opened);
    let chain = forward();
    let accept = "ip saddr 192.0.2.0/24 accept";
    assert_eq!(chain.matches(accept).count(), 1, "{chain}");
    let (a, d) = (chain.find(accept), chain.find("iifname \"lan0\" drop"));
    assert!(
        a.is_some() && a < d,
        "the egress accept is not before the drop:\n{chain}"
    );
    sh(&opened);
    assert_eq!(forward(), chain, "run twice, the table is not the same");
    sh(&step3);
    let chain = forward();
    assert!(!chain.contains(accept), "egress still open:\n{chain}");
}

/// The helper refuses `all` and `default` as the uplink or the TAP (no root needed): they are
/// no interfaces, and forwarding turned on in /proc/sys/net/ipv4/conf/all would be on for every
/// interface of the host. Refused before anything runs: the programs it would call (here a
/// stub that records its call and fails, so that nothing is ever changed) are never started.
#[test]
fn the_helper_refuses_host_wide_interface_names() {
    let dir = TempDir::new("lgw");
    let called = dir.file("called");
    let stub = dir.write(
        "stub",
        &format!("#!/bin/sh\necho \"$0 $*\" >> '{called}'\nexit 1\n"),
    );
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the stub");
    let run = |args: &[&str]| {
        let _ = std::fs::remove_file(&called);
        let out = std::process::Command::new("sh")
            .arg(contrib("etherws-lan-gateway"))
            .args(["--state-dir", &dir.file("run")])
            .args(args)
            .env("ETHERWS", &stub)
            .env("NFT", &stub)
            .env("DNSMASQ", &stub)
            .output()
            .expect("run the helper");
        let calls = std::fs::read_to_string(&called).unwrap_or_default();
        (out, calls)
    };
    let gw = ["--address", "192.0.2.1/24"];
    for (tap, uplink) in [
        ("lan0", "all"),
        ("lan0", "default"),
        ("all", "lo"),
        ("default", "lo"),
        ("lan0", ".."),
    ] {
        let (out, calls) = run(&[&["--tap", tap, "--uplink", uplink][..], &gw].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "--tap {tap} --uplink {uplink}: {err}"
        );
        assert!(
            calls.is_empty(),
            "--tap {tap} --uplink {uplink} went on to run {calls}"
        );
        let named = if uplink == "lo" { tap } else { uplink };
        assert!(
            err.starts_with("etherws-lan-gateway: ") && err.contains(named),
            "--tap {tap} --uplink {uplink}: {err}"
        );
    }
    // A real interface passes the check, and the helper goes on (to the failing stub).
    let (out, calls) = run(&[&["--tap", "lan0", "--uplink", "lo"][..], &gw].concat());
    assert!(!out.status.success());
    assert!(calls.contains(" -f -"), "nft was not called: {calls:?}");
    // --down with a host-wide name is refused too.
    let (out, calls) = run(&["--down", "--tap", "all"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(calls.is_empty(), "--down --tap all ran {calls}");
}
