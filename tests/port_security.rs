//! Port security on a shared segment (#25, item 4): one client of an isolated relay must not
//! cut off or intercept the others. Each attack runs against the relay of docs/dhcp-nat.md
//! built with `contrib/etherws-lan-gateway` ([`Relay`]: a switch with `--path
//! /lab=vlan:10,isolated`, the gateway's TAP lan0 with dnsmasq), two honest VMs that got their
//! addresses with `udhcpc`, and an attacker VM that sends hand-made frames through its TAP.
//! Each test ends with the honest VMs still pinging the gateway, the rule's `listPort` counter
//! on the attacker's port, and the relay's memory in bounds.
//!
//! And the settings' surface: `ctl setport N --trusted B --max-macs M` and `listPort`'s
//! `trusted` and `max_macs`.

use std::thread;
use std::time::{Duration, Instant};

use etherws_testkit::relay::*;
use etherws_testkit::*;
use serde_json::json;

/// What DHCP hands out: a small pool, so that one client can try to take it all.
const RANGE: &str = "192.0.2.100,192.0.2.115";
/// The pool's size.
const POOL: usize = 16;
/// The relay's switch must stay below this (MiB) through every attack.
const RSS_BOUND_MIB: u64 = 200;
/// A local experimental EtherType for the attacker's filler frames.
const ETHERTYPE: u16 = 0x88b5;
const BROADCAST: [u8; 6] = [0xff; 6];
const GATEWAY_IP: [u8; 4] = [192, 0, 2, 1];

/// An attacked relay: the gateway, two honest VMs that got their addresses with `udhcpc` (vm2
/// may come after the attack), and attackers without addresses.
struct Lab {
    relay: Relay,
    vm1: RelayVm,
    ip1: String,
    vm2: Option<RelayVm>,
    attackers: Vec<RelayVm>,
}

impl Lab {
    /// The relay with vm1 (and vm2 if `vm2`) pinging the gateway, and `attackers` attacker VMs;
    /// None when the test cannot run here (not root, a tool missing: it said so loudly).
    fn start(tag: &str, attackers: usize, vm2: bool) -> Option<Lab> {
        if !needs(&["dnsmasq", "nft", "busybox", "ping"]) {
            return None;
        }
        let relay = Relay::start(tag, &[], RANGE);
        let vm1 = relay.vm("vm1");
        let ip1 = vm1.lease().ip;
        ping(&vm1.ns, GATEWAY);
        let attackers = (0..attackers).map(|k| relay.vm(&format!("a{k}"))).collect();
        let mut lab = Lab {
            relay,
            vm1,
            ip1,
            vm2: None,
            attackers,
        };
        if vm2 {
            lab.start_vm2();
        }
        Some(lab)
    }

    /// vm2, with its lease, pinging the gateway.
    fn start_vm2(&mut self) {
        let vm2 = self.relay.vm("vm2");
        vm2.lease();
        ping(&vm2.ns, GATEWAY);
        self.vm2 = Some(vm2);
    }

    /// The honest VMs there are.
    fn honest(&self) -> Vec<&RelayVm> {
        std::iter::once(&self.vm1).chain(&self.vm2).collect()
    }

    /// The (first) attacker.
    fn attacker(&self) -> &RelayVm {
        &self.attackers[0]
    }

    /// The end of every test: the attacker's port counted drops by (the sum of) the `listPort`
    /// counters `rules` (unless none are given), each honest VM's 5 pings to the gateway all
    /// come back, and the relay's memory is bounded.
    fn end(&self, rules: &[&str]) {
        let port = self.attacker().port;
        let sum: u64 = rules.iter().map(|r| self.relay.counter(port, r)).sum();
        assert!(
            rules.is_empty() || sum > 0,
            "{rules:?} on the attacker's port {port}: {sum}"
        );
        for vm in self.honest() {
            assert_all_answered(ping_stats(&vm.ns, GATEWAY, 5, "0.2"), "after the attack");
        }
        self.relay.assert_rss_below(RSS_BOUND_MIB);
    }
}

/// Asserts that every echo request of `run` was answered.
fn assert_all_answered(run: PingRun, when: &str) {
    let what = run.what().to_string();
    let (sent, got) = run.stats();
    assert!(
        sent > 0 && got == sent,
        "{what}: {} of {sent} pings lost {when}",
        sent - got
    );
}

/// Calls `f(i)` every `period` for `total`, `i` counting from 0.
fn paced(total: Duration, period: Duration, mut f: impl FnMut(usize)) {
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < total {
        f(i);
        i += 1;
        let next = t0 + period * i as u32;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// A filler frame from `src` to everyone (the switch learns `src` from it).
fn claim(src: [u8; 6]) -> Vec<u8> {
    build_frame(BROADCAST, src, None, ETHERTYPE, b"etherws port security")
}

fn ipv4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().expect("IPv4").octets()
}

/// An ARP frame from `src` to `dst`: operation `op` (1 request, 2 reply), sender `sha`/`spa`,
/// target `tha`/`tpa`.
fn arp(
    dst: [u8; 6],
    src: [u8; 6],
    op: u16,
    sender: ([u8; 6], [u8; 4]),
    target: ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sender.0);
    p.extend_from_slice(&sender.1);
    p.extend_from_slice(&target.0);
    p.extend_from_slice(&target.1);
    build_frame(dst, src, None, 0x0806, &p)
}

/// A DHCP message (BOOTP `op` 1 from a client, 2 from a server) of type `kind` (option 53)
/// for `chaddr`, with `yiaddr` and the options `opts` (code, value), broadcast flag set.
fn dhcp(
    op: u8,
    kind: u8,
    xid: u32,
    chaddr: [u8; 6],
    yiaddr: [u8; 4],
    opts: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut m = vec![op, 1, 6, 0];
    m.extend_from_slice(&xid.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags: broadcast
    m.extend_from_slice(&[0; 4]); // ciaddr
    m.extend_from_slice(&yiaddr);
    m.extend_from_slice(&[0; 8]); // siaddr, giaddr
    m.extend_from_slice(&chaddr);
    m.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
    m.extend_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, kind]);
    for (code, value) in opts {
        m.push(*code);
        m.push(value.len() as u8);
        m.extend_from_slice(value);
    }
    m.push(255);
    m
}

/// A client's DHCP message `kind` for `chaddr`, in a broadcast frame from `src`.
fn dhcp_client(src: [u8; 6], kind: u8, xid: u32, chaddr: [u8; 6], opts: &[(u8, &[u8])]) -> Vec<u8> {
    let m = dhcp(1, kind, xid, chaddr, [0; 4], opts);
    build_frame(
        BROADCAST,
        src,
        None,
        0x0800,
        &ipv4_udp([0; 4], [255; 4], 68, 67, &m),
    )
}

/// The type (option 53) of the DHCP server's answer in `frame` (untagged IPv4, UDP to port 68).
fn dhcp_answer(frame: &[u8]) -> Option<u8> {
    if frame.len() < 14 + 20 + 8 + 240 || frame[12..14] != [8, 0] || frame[23] != 17 {
        return None;
    }
    let udp = 14 + usize::from(frame[14] & 0x0f) * 4;
    let m = frame.get(udp + 8..)?;
    if frame.get(udp + 2..udp + 4)? != [0, 68] || m.len() < 240 || m[0] != 2 {
        return None;
    }
    let mut at = 240;
    while at + 2 < m.len() && m[at] != 255 {
        if m[at] == 0 {
            at += 1;
            continue;
        }
        if m[at] == 53 && m[at + 1] == 1 {
            return Some(m[at + 2]);
        }
        at += 2 + usize::from(m[at + 1]);
    }
    None
}

/// Whether `frame` is an untagged IPv4 packet to `ip`.
fn ipv4_to(frame: &[u8], ip: [u8; 4]) -> bool {
    frame.len() >= 34 && frame[12..14] == [8, 0] && frame[30..34] == ip
}

/// Whether `frame` is a DHCP server's message (UDP from port 67 to 68).
fn is_dhcp_server(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [8, 0]
        && frame[23] == 17
        && frame[34..38] == [0, 67, 0, 68]
}

/// How many frames matching `pred` `sock` receives until it stays quiet for 300 ms.
fn count_frames(sock: &RawSock, pred: impl Fn(&[u8]) -> bool) -> usize {
    let mut n = 0;
    while sock
        .recv_matching(Duration::from_millis(300), |f| pred(&f.data))
        .is_some()
    {
        n += 1;
    }
    n
}

/// A client takes the gateway's MAC: ~20 frames a second from it for 2 s. Today the isolated
/// port takes the MAC over, and every VM loses the gateway (#25: 100 % loss).
#[test]
fn a_client_cannot_take_the_gateways_mac() {
    let Some(lab) = Lab::start("psA", 1, true) else {
        return;
    };
    let attacker = lab.attacker();
    let raw = attacker.raw();
    let gw_mac = lab.relay.gw_mac();

    let pings: Vec<PingRun> = lab
        .honest()
        .iter()
        .map(|vm| ping_stats(&vm.ns, GATEWAY, 15, "0.2"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    paced(Duration::from_secs(2), Duration::from_millis(50), |_| {
        raw.send(&claim(gw_mac))
    });
    for run in pings {
        assert_all_answered(run, "while a client claimed the gateway's MAC");
    }
    let fdb = lab.relay.sw.listfdb();
    let gw = format_mac(gw_mac);
    assert!(
        fdb.iter()
            .any(|r| r.mac == gw && r.port == lab.relay.lan_port),
        "the gateway's MAC {gw} should stay on its port {}: {fdb:?}",
        lab.relay.lan_port
    );
    lab.end(&["mac_spoof_dropped"]);
}

/// A client poisons the gateway's ARP entry for vm1 with unsolicited replies ("vm1's address
/// is at my MAC"). Today the gateway believes it and sends vm1's traffic to the attacker.
#[test]
fn a_client_cannot_poison_the_gateways_arp_for_another() {
    let Some(lab) = Lab::start("psB", 1, true) else {
        return;
    };
    let attacker = lab.attacker();
    let raw = attacker.raw();
    let (gw_mac, vm1_mac, evil) = (lab.relay.gw_mac(), lab.vm1.mac(), attacker.mac());
    let ip1 = ipv4(&lab.ip1);
    // The gateway has an entry for vm1 (past the kernel's 1 s lock time when the lies come).
    ping(&lab.relay.gw, &lab.ip1);
    thread::sleep(Duration::from_millis(1100));

    let lie = arp(gw_mac, evil, 2, (evil, ip1), (gw_mac, GATEWAY_IP));
    paced(Duration::from_secs(2), Duration::from_millis(100), |_| {
        raw.send(&lie)
    });
    let neigh = lab
        .relay
        .gw
        .ip(&["neigh", "show", &lab.ip1, "dev", LAN_TAP]);
    assert!(
        neigh.contains(&format_mac(vm1_mac)) && !neigh.contains(&format_mac(evil)),
        "the gateway's neighbour entry for vm1 ({}, {}) after the attacker's lies ({}): {neigh}",
        lab.ip1,
        format_mac(vm1_mac),
        format_mac(evil)
    );
    raw.drain();
    assert_all_answered(
        ping_stats(&lab.relay.gw, &lab.ip1, 20, "0.05"),
        "from the gateway to vm1 after the attacker's lies",
    );
    let stolen = count_frames(&raw, |f| ipv4_to(f, ip1));
    assert_eq!(stolen, 0, "packets for vm1 reached the attacker");
    lab.end(&["arp_dropped"]);
}

/// The loop guard as a weapon, from 6 connections each below its threshold (100 moves a second
/// by default): claiming the gateway's MAC while making the gateway answer ARP, then claiming
/// vm1's MAC while vm1 talks. Today the guard blocks the port the MAC is taken back onto — the
/// gateway's (the whole relay down for 30 s), then vm1's.
#[test]
fn the_loop_guard_blocks_the_taker_not_the_owner() {
    let Some(lab) = Lab::start("psC", 6, true) else {
        return;
    };
    let raws: Vec<(RawSock, [u8; 6])> = lab.attackers.iter().map(|a| (a.raw(), a.mac())).collect();
    let gw_mac = lab.relay.gw_mac();
    let vm1_mac = lab.vm1.mac();
    let unblocked = |port: u32, whose: &str| {
        let p = lab.relay.sw.port_status(port);
        assert!(
            p["loop_blocks"] == 0 && p["loop_blocked"] == false,
            "the loop guard blocked {whose}'s port {port}: {p}"
        );
    };

    // The gateway's MAC, each claim followed by an ARP request the gateway answers from it.
    let talk = ping_stats(&lab.vm1.ns, GATEWAY, 100, "0.02");
    paced(Duration::from_secs(2), Duration::from_millis(4), |i| {
        let (raw, mac) = &raws[i % raws.len()];
        let ip = [192, 0, 2, 240 + (i % raws.len()) as u8];
        raw.send(&claim(gw_mac));
        raw.send(&arp(BROADCAST, *mac, 1, (*mac, ip), ([0; 6], GATEWAY_IP)));
    });
    let _ = talk.stats();
    unblocked(lab.relay.lan_port, "the gateway");

    // vm1's MAC, while vm1 pings the gateway 200 times a second.
    let talk = ping_stats(&lab.vm1.ns, GATEWAY, 400, "0.005");
    paced(Duration::from_secs(2), Duration::from_millis(4), |i| {
        raws[i % raws.len()].0.send(&claim(vm1_mac))
    });
    let _ = talk.stats();
    unblocked(lab.vm1.port, "vm1");
    unblocked(lab.relay.lan_port, "the gateway");
    lab.end(&[]);
}

/// DHCP starvation: one client requests every address of the pool for made-up client hardware
/// addresses (from made-up Ethernet sources, and from its own). Today it gets every address,
/// and a VM that comes later gets none.
#[test]
fn dhcp_starvation_is_limited_to_the_clients_own_mac() {
    let Some(mut lab) = Lab::start("psD", 1, false) else {
        return;
    };
    let attacker = lab.attacker();
    let raw = attacker.raw();
    let own = attacker.mac();
    let fake = |k: usize| [0x02, 0x99, 0x25, 0, 0, k as u8];
    let server: &[u8] = &GATEWAY_IP;

    // Every address of the pool requested (as a client does after an offer), twice: for a
    // made-up chaddr from that Ethernet source, and for another from the attacker's own.
    for k in 0..2 * POOL {
        let src = if k % 2 == 0 { fake(k) } else { own };
        let want = [192, 0, 2, 100 + (k / 2) as u8];
        let opts: [(u8, &[u8]); 2] = [(50, &want), (54, server)];
        raw.send(&dhcp_client(src, 3, 0x2500_0000 + k as u32, fake(k), &opts));
    }
    let mut acked = 0;
    while raw
        .recv_matching(Duration::from_millis(1500), |f| {
            dhcp_answer(&f.data) == Some(5)
        })
        .is_some()
    {
        acked += 1;
    }
    let leases = lab.relay.leases();
    let taken = leases.lines().filter(|l| l.contains("02:99:25:")).count();

    // A VM that comes now still gets an address.
    lab.start_vm2();
    assert!(
        taken <= 4,
        "the attacker holds {taken} leases ({acked} acknowledged) with made-up addresses: \
         more than an untrusted port's 4 MACs\n{leases}"
    );
    lab.end(&["dhcp_client_dropped", "max_macs_dropped"]);
}

/// A client's IPv6 router advertisement, and its DHCP offer, never reach the gateway's TAP:
/// even with `accept_ra` forced on there, the gateway gets no default route and no SLAAC
/// address. (Between clients, isolation already held them.)
#[test]
fn a_clients_router_advertisement_is_dropped() {
    let Some(lab) = Lab::start("psE", 1, true) else {
        return;
    };
    let attacker = lab.attacker();
    let raw = attacker.raw();
    let evil = attacker.mac();
    let gw = &lab.relay.gw;
    for key in ["accept_ra=1", "autoconf=1"] {
        gw.exec_ok(&["sysctl", "-qw", &format!("net.ipv6.conf.{LAN_TAP}.{key}")]);
    }
    let on_lan = RawSock::open(gw, LAN_TAP);
    let on_vm1 = lab.vm1.raw();

    let ra = router_advertisement(evil);
    let rogue = dhcp(
        2,
        2,
        0x2500_0001,
        lab.vm1.mac(),
        [192, 0, 2, 200],
        &[
            (54, &[192, 0, 2, 250]),
            (3, &[192, 0, 2, 250]),
            (1, &[255, 255, 255, 0]),
        ],
    );
    let offer = build_frame(
        BROADCAST,
        evil,
        None,
        0x0800,
        &ipv4_udp([192, 0, 2, 250], [255; 4], 67, 68, &rogue),
    );
    paced(Duration::from_secs(2), Duration::from_millis(200), |_| {
        raw.send(&ra);
        raw.send(&offer);
    });
    let ras = count_frames(&on_lan, is_router_advertisement);
    assert_eq!(
        ras, 0,
        "the client's router advertisements reached {LAN_TAP}"
    );
    assert_no_route_from_ra(gw, "a client");
    let dropped = lab.relay.counter(attacker.port, "ra_dropped");
    assert!(dropped > 0, "ra_dropped on the attacker's port: {dropped}");

    raw.send(&offer);
    let offers = count_frames(&on_lan, |f| {
        is_dhcp_server(f) && contains(f, &[192, 0, 2, 250])
    });
    assert_eq!(offers, 0, "the client's DHCP offers reached {LAN_TAP}");
    let leaked = count_frames(&on_vm1, |f| {
        is_dhcp_server(f) && contains(f, &[192, 0, 2, 250])
    });
    assert_eq!(leaked, 0, "the client's DHCP offers reached vm1");
    lab.end(&["dhcp_server_dropped"]);
}

/// `ctl setport N --trusted B --max-macs M` set a port's trust and MAC limit, and `listPort`
/// shows them: a TAP port is trusted with no limit of its own until told otherwise.
#[test]
fn ctl_sets_a_ports_trust_and_mac_limit() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("psF");
    let sw = Switch::builder("psF").netns(&ns).start();
    let port = sw.add_port("tap", "t0", &[]).port;
    let n = port.to_string();
    let p = sw.port_status(port);
    assert!(
        p["trusted"] == true && p["max_macs"].is_null(),
        "a TAP port: trusted, no limit of its own: {p}"
    );
    sw.ctl_ok(&["setport", &n, "--max-macs", "2", "--trusted", "false"]);
    let p = sw.port_status(port);
    assert!(p["trusted"] == false && p["max_macs"] == 2, "{p}");
    sw.rpc(
        "setPort",
        json!({"port": port, "trusted": true, "max_macs": 3}),
    );
    let p = sw.port_status(port);
    assert!(p["trusted"] == true && p["max_macs"] == 3, "{p}");
}
