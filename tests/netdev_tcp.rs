//! TCP through a `netdev` port on an interface with offloads on (veth: TSO/GSO and transmit
//! checksum offload by default).
//!
//! The packet socket of a netdev port sees what the kernel hands it: GSO super-frames of up to
//! 64 KB and frames whose TCP/UDP checksum is left for the "hardware" to fill in. Forwarded as
//! they are, the far end drops them all, so ping works and TCP does not. These tests run real
//! TCP traffic (iperf3, and checked bulk copies both ways, untagged and 802.1Q-tagged) across
//! such a port:
//!
//! ```text
//! nsC: vc0 192.0.2.3/24, vc0.100 203.0.113.3/24   (offloads left on)
//!   | veth
//! nsA: vA1 = netdev port 1 of switch A; vAB 198.51.100.1/24
//!   | veth, WebSocket (B is A's client, port 2 on both)
//! nsB: vBA 198.51.100.2/24; switch B, TAP port 1 ewsB0 192.0.2.2/24, ewsB0.100 203.0.113.2/24
//! ```

use std::fs::File;
use std::io::Write;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use etherws_testkit::*;

const B_TAP_IP: &str = Sites::B_TAP;
const C_IP: &str = "192.0.2.3";
const VID: u16 = 100;
const B_VLAN_IP: &str = "203.0.113.2";
const C_VLAN_IP: &str = "203.0.113.3";

/// The two sites (A with the netdev port 1 on vA1, B with its TAP, B connected to A) and C on
/// the other end of vA1. Fields drop in declaration order: the sites go before C.
struct Topo {
    s: Sites,
    ns_c: Netns,
}

impl Topo {
    /// The topology with B taking super-frames from A (both switches at their defaults).
    fn new(tag: &str) -> Topo {
        Topo::with_b(tag, &[])
    }

    /// The topology with more `sw` arguments for B (e.g. `--strict-frames`).
    fn with_b(tag: &str, b_args: &[&str]) -> Topo {
        let (ns_a, ns_b) = linked(tag, Sites::A_VETH, Sites::B_VETH);
        let ns_c = Netns::new(&format!("{tag}C"));
        veth(
            &ns_c,
            "vc0",
            Some(&format!("{C_IP}/24")),
            &ns_a,
            "vA1",
            None,
        );
        let s = Sites::builder(tag)
            .a(|a| a.netdev("vA1", &[]))
            .b(|b| b.args(b_args).tap())
            .connect(&[])
            .start_in(ns_a, ns_b);
        eprintln!(
            "vc0 (offloads left as the kernel sets them): {}",
            ns_c.ip(&["-d", "-o", "link", "show", "dev", "vc0"]).trim()
        );
        Topo { s, ns_c }
    }

    /// VLAN 100 on both ends: vc0.100 in C, ewsB0.100 in B (tagged frames cross the netdev
    /// port with the tag stripped into metadata by the kernel and put back by the switch).
    fn add_vlan(&self) -> bool {
        [
            (&self.ns_c, "vc0", C_VLAN_IP),
            (&self.s.b.ns, "ewsB0", B_VLAN_IP),
        ]
        .into_iter()
        .all(|(ns, parent, addr)| {
            let name = format!("{parent}.{VID}");
            ns.add_vlan(parent, &name, VID, &format!("{addr}/24"), None)
        })
    }
}

fn port_counters(sw: &Switch, n: u32) -> String {
    format!("{:?}", sw.port(n))
}

#[test]
fn netdev_port_carries_tcp() {
    if !require_root() || !require_tool("iperf3") {
        return;
    }
    let t = Topo::new("ntcp");
    ping(&t.ns_c, B_TAP_IP);
    ping(&t.s.b.ns, C_IP);

    // iperf3 both ways; C's sends through the netdev port's receive side (super-frames,
    // partial checksums), B's through its transmit side.
    let up = iperf3(&t.s.b.ns, &t.ns_c, B_TAP_IP, 5201, &[]);
    let down = iperf3(&t.s.b.ns, &t.ns_c, B_TAP_IP, 5202, &["-R"]);
    for (what, r) in [("C -> B", &up), ("B -> C (-R)", &down)] {
        assert!(
            r.sent > 0 && r.received > 0,
            "iperf3 {what} moved no data (sent {} B, received {} B)\nA netdev port: {}\nA log:\n{}",
            r.sent,
            r.received,
            port_counters(&t.s.a.sw, 1),
            t.s.a.sw.log()
        );
    }

    // Bulk copies, compared byte for byte.
    let data = random_bytes(5 << 20, 0x5eed_0001);
    copy(&t.ns_c, &t.s.b.ns, B_TAP_IP, 6001, &data);
    copy(&t.s.b.ns, &t.ns_c, C_IP, 6002, &data);

    // The offloads were in play end to end: A's netdev port and both ends of the tunnel
    // carry super-frames, and none was dropped on the way.
    for (site, port, what) in [
        (&t.s.a, 1, "A's netdev port"),
        (&t.s.a, 2, "A's server port"),
        (&t.s.b, 2, "B's client port"),
        (&t.s.b, 1, "B's TAP port"),
    ] {
        let p = site.sw.port_status(port);
        assert_eq!(p["super_frames"], true, "{what}: {p}");
        assert_eq!(p["tx_dropped"], 0, "{what}: {p}");
    }
}

/// A netdev port on a device without TSO: the kernel cuts the switch's super-frames into
/// segments and gives the sending socket to the last one only, so the packet taps would hand
/// the others back to the port as frames the host sent (the switch then saw its own traffic
/// coming from the wrong port, moved the sender's MAC there, and TCP crawled at a few Mbit/s).
/// The port marks what it sends and filters those copies out: what it receives is what C sent.
#[test]
fn netdev_port_without_tso_does_not_hear_its_own_segments() {
    if !require_root() || !require_tool("iperf3") {
        return;
    }
    let t = Topo::new("ntso");
    t.s.a.ns.exec_ok(&["ethtool", "-K", "vA1", "tso", "off"]);
    ping(&t.ns_c, B_TAP_IP);
    let c_tx = || -> u64 {
        let out = t
            .ns_c
            .exec_ok(&["cat", "/sys/class/net/vc0/statistics/tx_packets"]);
        out.trim().parse().unwrap_or(0)
    };
    let a_rx = || t.s.a.sw.port_status(1)["rx"].as_u64().unwrap_or(0);
    // Both counts are read once the port's stays put (what the tunnel still holds for C when
    // iperf3 exits keeps arriving, and C answers it). At the end the port's count is read first,
    // so whatever it counted, C had sent by the time C's count is read; at the start, C's.
    let settle = || {
        let mut last = a_rx();
        for _ in 0..30 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = a_rx();
            if now == last {
                break;
            }
            last = now;
        }
        last
    };
    settle();
    let (c0, a0) = (c_tx(), a_rx());
    // B sends: super-frames leave A's netdev port, and vA1 (no TSO) needs them cut.
    let r = iperf3(&t.s.b.ns, &t.ns_c, B_TAP_IP, 5207, &["-R"]);
    let a1 = settle();
    let c1 = c_tx();
    eprintln!(
        "B -> C through vA1 without TSO: {:.0} Mbit/s; A's port received {} frames, C sent {}",
        r.mbit_s,
        a1 - a0,
        c1 - c0
    );
    assert!(r.received > 1_000_000, "{:?}\n{}", r.error, t.s.a.sw.log());
    // A few frames of the host's own (IPv6 neighbour discovery, MLD) may leave vA1 too.
    assert!(
        a1 - a0 <= c1 - c0 + 50,
        "A's netdev port received {} frames while C sent {}: its own segments came back\n{}",
        a1 - a0,
        c1 - c0,
        port_counters(&t.s.a.sw, 1)
    );
    let fdb = t.s.a.sw.ctl_ok(&["listfdb"]);
    let b_mac = t.s.b.ns.exec_ok(&["cat", "/sys/class/net/ewsB0/address"]);
    assert!(
        !fdb.lines()
            .any(|l| l.contains(b_mac.trim()) && l.split_whitespace().next() == Some("1")),
        "B's MAC was learned on A's netdev port:\n{fdb}"
    );
}

/// TCP over a VLAN through the netdev port: the kernel strips the tag of offloaded frames into
/// metadata and counts the checksum offsets from the untagged frame; the switch puts the tag
/// back. Needs the kernel's 802.1Q support (skipped loudly without it; the injection test
/// below covers the same path with hand-made frames).
#[test]
fn netdev_port_carries_tagged_tcp() {
    if !require_root() {
        return;
    }
    let t = Topo::new("nvln");
    if !t.add_vlan() {
        loud(&format!(
            "SKIPPED (no 802.1Q support in this kernel): {}",
            this_test()
        ));
        return;
    }
    ping(&t.ns_c, B_VLAN_IP);
    ping(&t.s.b.ns, C_VLAN_IP);

    let data = random_bytes(5 << 20, 0x5eed_0002);
    copy(&t.ns_c, &t.s.b.ns, B_VLAN_IP, 6003, &data);
    copy(&t.s.b.ns, &t.ns_c, C_VLAN_IP, 6004, &data);
    // The untagged side still works next to it.
    copy(&t.ns_c, &t.s.b.ns, B_TAP_IP, 6005, &data);

    // The frames crossed tagged: B learned C's MAC on VLAN 100 behind its client port.
    let mac_c = t.ns_c.mac("vc0");
    let fdb = t.s.b.sw.listfdb();
    assert!(
        fdb.iter()
            .any(|e| e.port == 2 && e.vlan == 100 && e.mac == mac_c),
        "B should learn {mac_c} on port 2 VLAN 100: {fdb:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// hand-made offloaded frames, injected through a TAP with a vnet header

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A TAP device with `IFF_VNET_HDR` created inside `ns`: whatever is written to the returned
/// file (a `virtio_net_hdr` and a frame) is received by the interface as if a guest with
/// offloads had sent it. The device goes away with the file.
fn vnet_tap(ns: &Netns, name: &str) -> File {
    let path = PathBuf::from(format!("/run/netns/{}", ns.name()));
    let name_s = name.to_string();
    let file = thread::spawn(move || -> std::io::Result<File> {
        let nsf = File::open(&path)?;
        // SAFETY: setns on a namespace file we opened, for this thread only.
        if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: name[16], flags (short), padding up to 40 bytes.
        let mut ifr = [0u8; 40];
        ifr[..name_s.len()].copy_from_slice(name_s.as_bytes());
        ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).to_ne_bytes());
        // SAFETY: TUNSETIFF reads (and writes back) a struct ifreq, which ifr is big enough for.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(tun)
    })
    .join()
    .expect("tap thread")
    .unwrap_or_else(|e| panic!("cannot create vnet TAP {name} in {}: {e}", ns.name()));
    ns.ip(&["link", "set", name, "up"]);
    file
}

const INJ_SRC: [u8; 6] = [0x02, 0xe7, 0x00, 0x00, 0x0b, 0x09];
const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;

/// One hand-made offloaded frame.
#[derive(Debug, Clone, Copy)]
struct Spec {
    tag: Option<u16>,
    v6: bool,
    udp: bool,
    /// L4 payload bytes.
    len: usize,
    /// Segment size; 0: not a super-frame, only the checksum is left to do.
    mss: u16,
    /// L4 source port, to tell the frames apart.
    sport: u16,
}

/// Naive one's-complement checksum over the concatenation of `parts` (each of even length but
/// the last), independent of the switch's.
fn naive_csum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut s: u32 = 0;
    for w in bytes.chunks(2) {
        s += (u32::from(w[0]) << 8) | u32::from(*w.get(1).unwrap_or(&0));
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn v6_mapped(last: u8) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, last]
}

/// The pseudo-header of an L4 packet of `len` bytes, as bytes.
fn pseudo(f: &[u8], l3: usize, v6: bool, proto: u8, len: usize) -> Vec<u8> {
    let mut p = if v6 {
        f[l3 + 8..l3 + 40].to_vec()
    } else {
        f[l3 + 12..l3 + 20].to_vec()
    };
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// `virtio_net_hdr` + frame as a guest with checksum offload and TSO/USO would send it: the
/// L4 checksum field holds only the (folded, not complemented) pseudo-header sum. Also returns
/// the payload.
fn offloaded(spec: Spec, dst: [u8; 6]) -> (Vec<u8>, Vec<u8>) {
    let data = random_bytes(spec.len, u64::from(spec.sport) * 77 + 1);
    let proto = if spec.udp { 17 } else { 6 };
    let l4_hlen = if spec.udp { 8 } else { 20 };
    let l4_len = l4_hlen + data.len();
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&INJ_SRC);
    if let Some(tci) = spec.tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(if spec.v6 {
        &[0x86, 0xdd]
    } else {
        &[0x08, 0x00]
    });
    let l3 = f.len();
    if spec.v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&v6_mapped(9));
        f.extend_from_slice(&v6_mapped(2));
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[
            0x42, 0x42, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 9, 192, 0, 2, 2,
        ]);
        let c = naive_csum(&[&f[l3..l3 + 20]]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    f.extend_from_slice(&spec.sport.to_be_bytes());
    f.extend_from_slice(&6010u16.to_be_bytes());
    if spec.udp {
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&1000u32.to_be_bytes()); // seq
        f.extend_from_slice(&1u32.to_be_bytes()); // ack
        f.extend_from_slice(&[5 << 4, 0x18, 0x01, 0xf5, 0, 0, 0, 0]);
    }
    f.extend_from_slice(&data);
    let csum_offset: u16 = if spec.udp { 6 } else { 16 };
    let seed = !naive_csum(&[&pseudo(&f, l3, spec.v6, proto, l4_len)]);
    let at = l4 + usize::from(csum_offset);
    f[at..at + 2].copy_from_slice(&seed.to_be_bytes());

    let gso_type = match (spec.mss, spec.udp, spec.v6) {
        (0, _, _) => GSO_NONE,
        (_, true, _) => GSO_UDP_L4,
        (_, false, false) => GSO_TCPV4,
        (_, false, true) => GSO_TCPV6,
    };
    let mut out = vec![F_NEEDS_CSUM, gso_type];
    out.extend_from_slice(&((l4 + l4_hlen) as u16).to_ne_bytes());
    out.extend_from_slice(&spec.mss.to_ne_bytes());
    out.extend_from_slice(&(l4 as u16).to_ne_bytes());
    out.extend_from_slice(&csum_offset.to_ne_bytes());
    out.extend_from_slice(&f);
    (out, data)
}

/// Checks one received segment of `spec`'s frame (tag, lengths, IPv4 header checksum, full
/// L4 checksum) and returns its (stream offset, payload).
fn check_segment(spec: &Spec, f: &RxFrame) -> Result<(usize, Vec<u8>), String> {
    let d = &f.data;
    if f.tci() != spec.tag {
        return Err(format!("tag {:?}, want {:?}", f.tci(), spec.tag));
    }
    let l3 = if spec.tag.is_some() { 18 } else { 14 };
    let (l4, proto) = if spec.v6 {
        let plen = usize::from(be16(d, l3 + 4));
        if l3 + 40 + plen != d.len() {
            return Err(format!(
                "IPv6 payload length {plen} in a {}-byte frame",
                d.len()
            ));
        }
        (l3 + 40, d[l3 + 6])
    } else {
        let tot = usize::from(be16(d, l3 + 2));
        if l3 + tot != d.len() {
            return Err(format!(
                "IPv4 total length {tot} in a {}-byte frame",
                d.len()
            ));
        }
        if naive_csum(&[&d[l3..l3 + 20]]) != 0 {
            return Err("bad IPv4 header checksum".into());
        }
        (l3 + 20, d[l3 + 9])
    };
    let l4_len = d.len() - l4;
    if naive_csum(&[&pseudo(d, l3, spec.v6, proto, l4_len), &d[l4..]]) != 0 {
        return Err(format!(
            "bad {} checksum",
            if spec.udp { "UDP" } else { "TCP" }
        ));
    }
    let (hlen, off) = if spec.udp {
        if usize::from(be16(d, l4 + 4)) != l4_len {
            return Err("bad UDP length".into());
        }
        (8, None)
    } else {
        let seq = u32::from_be_bytes(d[l4 + 4..l4 + 8].try_into().unwrap());
        (20, Some(seq.wrapping_sub(1000) as usize))
    };
    let payload = d[l4 + hlen..].to_vec();
    if spec.mss != 0 && payload.len() > usize::from(spec.mss) {
        return Err(format!(
            "{}-byte segment over mss {}",
            payload.len(),
            spec.mss
        ));
    }
    Ok((off.unwrap_or(usize::MAX), payload))
}

/// Offloaded frames written into a vnet TAP that is a netdev port reach a peer that takes plain
/// frames only (a switch with `--strict-frames`) as plain, checksummed segments; VLAN-tagged
/// ones too (the kernel strips the tag on receive and counts the checksum offsets without it:
/// the switch must shift them when it puts the tag back).
#[test]
fn netdev_port_finishes_injected_offloads() {
    if !require_root() {
        return;
    }
    // B takes plain frames only: A must finish what the injected frames left undone.
    let t = Topo::with_b("ninj", &["--strict-frames"]);
    ping(&t.ns_c, B_TAP_IP); // B's TAP MAC gets learned
    let tap = vnet_tap(&t.s.a.ns, "tinj");
    let rows = parse_ports(&t.s.a.sw.ctl_ok(&["addport", "netdev", "tinj"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let port = rows[0].port;
    let dst = parse_mac(&t.s.b.ns.mac("ewsB0"));
    let rx = RawSock::open(&t.s.b.ns, "ewsB0");
    rx.drain();

    let specs = [
        // (untagged | tagged) x (TCPv4 | TCPv6 | USO) super-frames, and checksum-only frames.
        (None, false, false, 20 * 1448 + 77, 1448),
        (None, true, false, 9 * 1428 + 1, 1428),
        (None, false, true, 5 * 1472 + 3, 1472),
        (Some(100), false, false, 30 * 1448 + 5, 1448),
        (Some((3 << 13) | 100), true, false, 4 * 1428, 1428),
        (Some(100), false, true, 3 * 1000 + 999, 1000),
        (None, false, false, 333, 0),
        (None, false, true, 100, 0),
        (Some(100), false, false, 1, 0),
        (Some(100), true, true, 1000, 0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (tag, v6, udp, len, mss))| Spec {
        tag,
        v6,
        udp,
        len,
        mss,
        sport: 41000 + i as u16,
    })
    .collect::<Vec<_>>();

    let mut tap = tap;
    for spec in &specs {
        let (bytes, data) = offloaded(*spec, dst);
        let n = tap
            .write(&bytes)
            .unwrap_or_else(|e| panic!("writing {spec:?} into the vnet TAP: {e}"));
        assert_eq!(n, bytes.len());

        let want = if spec.mss == 0 {
            1
        } else {
            spec.len.div_ceil(usize::from(spec.mss))
        };
        let mut got: Vec<(usize, Vec<u8>)> = Vec::new();
        let l4_src = |f: &RxFrame| {
            let l3 = if f.tci().is_some() { 18 } else { 14 };
            let l4 = l3 + if spec.v6 { 40 } else { 20 };
            f.data.len() > l4 + 2 && be16(&f.data, l4) == spec.sport
        };
        while got.len() < want {
            let Some(f) = rx.recv_matching(Duration::from_secs(5), |f| {
                f.data[6..12] == INJ_SRC && l4_src(f)
            }) else {
                panic!(
                    "{spec:?}: {} of {want} segments arrived\nA port {port}: {}\nA log:\n{}",
                    got.len(),
                    port_counters(&t.s.a.sw, port),
                    t.s.a.sw.log()
                );
            };
            let seg = check_segment(spec, &f)
                .unwrap_or_else(|e| panic!("{spec:?}, segment {}: {e}", got.len()));
            got.push(seg);
        }
        if !spec.udp {
            got.sort_by_key(|(off, _)| *off);
            let mut expect = 0;
            for (off, p) in &got {
                assert_eq!(*off, expect, "{spec:?}: segment offsets");
                expect += p.len();
            }
        }
        let joined: Vec<u8> = got.into_iter().flat_map(|(_, p)| p).collect();
        assert!(joined == data, "{spec:?}: payload does not reassemble");
        eprintln!("{spec:?}: {want} plain segment(s), checksums and payload OK");
    }
    // A finished them for B, which did not negotiate super-frames; none was dropped.
    let server = t.s.a.sw.port_status(2);
    assert_eq!(server["super_frames"], false, "{server}");
    assert_eq!(server["tx_dropped"], 0, "{server}");
}
