//! Many networks on one switch (issue #14): access VLANs per WebSocket path and per user,
//! trunk ports, isolated and mesh ports, rate limits and port mirroring, end to end in network
//! namespaces (root; skipped loudly otherwise, a failure under `CI=true`).
//!
//! Most tests use a hub switch that spoke switches connect to (see `etherws_testkit::nets`):
//!
//! ```text
//! nsH: hub switch, WebSocket on 0.0.0.0:8080 (--path /a=vlan:10 --path /b=vlan:20 ...),
//!      [TAP ewsG 192.0.2.1/24], [netdev trk: veth to nsT, a trunk]
//!   | veth per spoke (198.51.100.0/24 in /30s)
//! ns{a1,a2,b1,b2,...}: a switch each, TAP ews0 192.0.2.x/24, client port ws://HUB:8080/PATH
//! ```
//!
//! and the rest plain hosts on netdev ports (`HostLan`: host i is 192.0.2.i on port i).
//! This kernel may have no 8021q module, so tagged traffic is made by hand (AF_PACKET).

use std::time::Duration;

use etherws_testkit::nets::*;
use etherws_testkit::*;
use serde_json::Value;

/// The hub's TAP (the gateway of the spokes' subnet).
const GW: &str = "192.0.2.1";
const GW_TAP: &str = "ewsG";
/// Spokes: /a's (VLAN 10) and /b's (VLAN 20), all in one IPv4 subnet, so only the VLANs keep
/// them apart.
const A1: &str = "192.0.2.11";
const A2: &str = "192.0.2.12";
const B1: &str = "192.0.2.21";
const B2: &str = "192.0.2.22";
/// A local experimental EtherType for hand-made frames.
const ETHERTYPE: u16 = 0x88b5;
const BCAST: [u8; 6] = [0xff; 6];

/// A made-up, locally administered source MAC per hand-made frame.
fn mac(n: u8) -> [u8; 6] {
    [0x02, 0x14, 0x0e, 0x00, 0x00, n]
}

fn vid(f: &RxFrame) -> Option<u16> {
    f.tci().map(|t| t & 0x0fff)
}

/// `vlan` as listPort reports it: a number, or None for a trunk (null; 0 tolerated).
fn vlan_of(p: &Value) -> Option<u64> {
    p["vlan"].as_u64().filter(|&v| v != 0)
}

/// A counter of a listPort entry.
fn counter(p: &Value, key: &str) -> u64 {
    p[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {p}"))
}

/// After the frames that had to arrive did: none of `socks` got a frame with `marker` (the
/// first waits half a second; the frame would be queued on the others by then).
fn none_of(socks: &[(&RawSock, &str)], marker: &[u8], what: &str) {
    for (i, (sock, name)) in socks.iter().enumerate() {
        let window = Duration::from_millis(if i == 0 { 500 } else { 100 });
        expect_no_marker(sock, marker, window, &format!("{what}: {name}"));
    }
}

/// `ctl listport --verbose` and `ctl listport -l` print the same extra columns (VLAN among
/// them), and plain `ctl listport` the 1.3 table (checked by `parse_ports`). Returns the
/// verbose table's rows.
fn verbose(sw: &Switch) -> std::collections::BTreeMap<u32, Cells> {
    sw.listport(); // asserts the header is 1.3's: Port Type State RX TX Target
    let long = sw.ctl_ok(&["listport", "--verbose"]);
    let (head, rows) = verbose_ports(&long);
    assert!(
        head.iter().any(|h| h.eq_ignore_ascii_case("VLAN")),
        "listport --verbose has a VLAN column:\n{long}"
    );
    for col in ["USER", "MIRROR"] {
        assert!(
            head.iter().any(|h| h.eq_ignore_ascii_case(col)),
            "listport --verbose has a {col} column:\n{long}"
        );
    }
    let short = sw.ctl_ok(&["listport", "-l"]);
    assert_eq!(
        header(&short),
        head,
        "listport -l and --verbose print the same columns:\n{short}\n{long}"
    );
    rows
}

#[test]
fn paths_put_clients_in_vlans_with_access_and_trunk_ports() {
    if !require_root() {
        return;
    }
    let hub = Hub::new("nv", &["--path", "/a=vlan:10", "--path", "/b=vlan:20"]);
    let gw = hub.sw.add_tap(&hub.ns, GW_TAP, GW).port;
    hub.sw.ctl_ok(&["setport", &gw.to_string(), "--vlan", "10"]);
    let ns_t = Netns::new("nvT");
    veth(&hub.ns, "trk", None, &ns_t, "eth0", None);
    let trunk = hub.sw.add_port("netdev", "trk", &[]).port;
    let a1 = hub.spoke("a1", A1, "/a", &[]);
    let a2 = hub.spoke("a2", A2, "/a", &[]);
    let b1 = hub.spoke("b1", B1, "/b", &[]);
    let b2 = hub.spoke("b2", B2, "/b", &[]);

    // listPort: the access VLAN and the path of each port; the trunk has none.
    for (port, vlan, path, what) in [
        (a1.server_port, Some(10), Some("/a"), "a1's server port"),
        (a2.server_port, Some(10), Some("/a"), "a2's server port"),
        (b1.server_port, Some(20), Some("/b"), "b1's server port"),
        (b2.server_port, Some(20), Some("/b"), "b2's server port"),
        (gw, Some(10), None, "the TAP (setport --vlan 10)"),
        (trunk, None, None, "the trunk"),
    ] {
        let p = hub.sw.port_status(port);
        assert_eq!(vlan_of(&p), vlan, "{what}: vlan in {p}");
        assert_eq!(p["path"].as_str(), path, "{what}: path in {p}");
    }
    let rows = verbose(&hub.sw);
    for (port, vlan) in [(a1.server_port, "10"), (b1.server_port, "20"), (gw, "10")] {
        let row = &rows[&port];
        assert_eq!(cell(row, "VLAN"), Some(vlan), "listport --verbose: {row:?}");
    }

    // Same subnet, two VLANs: /a's clients and the TAP reach each other, /b's each other,
    // never across.
    pings(&[
        (&a1.ns, A2),
        (&a2.ns, A1),
        (&b1.ns, B2),
        (&b2.ns, B1),
        (&a1.ns, GW),
        (&hub.ns, A2),
    ]);
    no_pings(&[
        (&a1.ns, B1),
        (&b1.ns, A1),
        (&a2.ns, B2),
        (&b2.ns, GW),
        (&hub.ns, B1),
    ]);

    // Hand-made frames: what leaves the trunk is tagged, what leaves access ports is not.
    let s_a1 = a1.raw();
    let s_a2 = a2.raw();
    let s_b1 = b1.raw();
    let s_b2 = b2.raw();
    let s_gw = RawSock::open(&hub.ns, GW_TAP);
    let s_t = RawSock::open(&ns_t, "eth0");
    for s in [&s_a1, &s_a2, &s_b1, &s_b2, &s_gw, &s_t] {
        s.drain();
    }

    // (a) A broadcast from a1 (untagged): VLAN 10 only; tagged 10 on the trunk.
    let m = marker("a1-bcast");
    s_a1.send(&build_frame(BCAST, mac(1), None, ETHERTYPE, &m));
    let f = expect_marker(&s_t, &m, "a1's broadcast on the trunk");
    assert_eq!(
        vid(&f),
        Some(10),
        "a1's broadcast leaves the trunk tagged 10"
    );
    for (sock, what) in [(&s_a2, "a2"), (&s_gw, "the TAP")] {
        let f = expect_marker(sock, &m, &format!("a1's broadcast at {what}"));
        assert_eq!(f.tci(), None, "a1's broadcast reaches {what} untagged");
    }
    none_of(
        &[(&s_b1, "b1"), (&s_b2, "b2")],
        &m,
        "a1's broadcast in VLAN 20",
    );

    // (b) A broadcast from b1: VLAN 20 only; tagged 20 on the trunk.
    let m = marker("b1-bcast");
    s_b1.send(&build_frame(BCAST, mac(2), None, ETHERTYPE, &m));
    let f = expect_marker(&s_t, &m, "b1's broadcast on the trunk");
    assert_eq!(
        vid(&f),
        Some(20),
        "b1's broadcast leaves the trunk tagged 20"
    );
    let f = expect_marker(&s_b2, &m, "b1's broadcast at b2");
    assert_eq!(f.tci(), None, "b1's broadcast reaches b2 untagged");
    none_of(
        &[(&s_a1, "a1"), (&s_a2, "a2"), (&s_gw, "the TAP")],
        &m,
        "b1's broadcast in VLAN 10",
    );

    // (c) A frame tagged 20 into the trunk reaches /b's clients untagged, and nobody else.
    let m = marker("trunk-20");
    s_t.send(&build_frame(BCAST, mac(3), Some(20), ETHERTYPE, &m));
    for (sock, what) in [(&s_b1, "b1"), (&s_b2, "b2")] {
        let f = expect_marker(sock, &m, &format!("the trunk's VLAN 20 frame at {what}"));
        assert_eq!(
            f.tci(),
            None,
            "the trunk's VLAN 20 frame reaches {what} untagged"
        );
    }
    none_of(
        &[(&s_a1, "a1"), (&s_a2, "a2"), (&s_gw, "the TAP")],
        &m,
        "the trunk's VLAN 20 frame in VLAN 10",
    );

    // (d) ...and one tagged 10 reaches /a's clients and the TAP untagged.
    let m = marker("trunk-10");
    s_t.send(&build_frame(BCAST, mac(4), Some(10), ETHERTYPE, &m));
    for (sock, what) in [(&s_a1, "a1"), (&s_a2, "a2"), (&s_gw, "the TAP")] {
        let f = expect_marker(sock, &m, &format!("the trunk's VLAN 10 frame at {what}"));
        assert_eq!(
            f.tci(),
            None,
            "the trunk's VLAN 10 frame reaches {what} untagged"
        );
    }
    none_of(
        &[(&s_b1, "b1"), (&s_b2, "b2")],
        &m,
        "the trunk's VLAN 10 frame in VLAN 20",
    );

    // (e) Tagged frames into access ports are dropped and counted: from a1 (through its
    //     switch, a trunk, to its access server port) and into the hub's TAP.
    let before_a1 = counter(&hub.sw.port_status(a1.server_port), "vlan_dropped");
    let before_gw = counter(&hub.sw.port_status(gw), "vlan_dropped");
    let m_a1 = marker("tagged-from-a1");
    s_a1.send(&build_frame(BCAST, mac(5), Some(10), ETHERTYPE, &m_a1));
    let m_gw = marker("tagged-from-gw");
    s_gw.send(&build_frame(BCAST, mac(6), Some(20), ETHERTYPE, &m_gw));
    for m in [&m_a1, &m_gw] {
        none_of(
            &[
                (&s_t, "the trunk"),
                (&s_a2, "a2"),
                (&s_b1, "b1"),
                (&s_b2, "b2"),
            ],
            m,
            "a tagged frame into an access port",
        );
    }
    expect_no_marker(
        &s_gw,
        &m_a1,
        Duration::from_millis(100),
        "tagged from a1: the TAP",
    );
    poll(
        "vlan_dropped on a1's server port and the TAP",
        Duration::from_secs(5),
        || {
            let pa = hub.sw.port_status(a1.server_port);
            let pg = hub.sw.port_status(gw);
            if counter(&pa, "vlan_dropped") > before_a1 && counter(&pg, "vlan_dropped") > before_gw
            {
                Ok(())
            } else {
                Err(format!("{pa}\n{pg}"))
            }
        },
    );

    // setport --vlan 20 moves the TAP to /b's clients; --vlan 0 makes it a trunk again.
    hub.sw.ctl_ok(&["setport", &gw.to_string(), "--vlan", "20"]);
    assert_eq!(vlan_of(&hub.sw.port_status(gw)), Some(20));
    pings(&[(&b1.ns, GW)]);
    no_pings(&[(&a1.ns, GW)]);
    hub.sw.ctl_ok(&["setport", &gw.to_string(), "--vlan", "0"]);
    assert_eq!(vlan_of(&hub.sw.port_status(gw)), None);
}

/// Adds `user` to an htpasswd file with the real `htpasswd` (bcrypt).
fn htpasswd(file: &str, user: &str, passwd: &str) {
    let mut argv = vec!["htpasswd", "-b", "-B"];
    if !std::path::Path::new(file).exists() {
        argv.push("-c");
    }
    argv.extend_from_slice(&[file, user, passwd]);
    run_ok(&argv);
}

#[test]
fn user_pinned_to_a_vlan_lands_there_whatever_the_path() {
    if !needs(&["htpasswd"]) {
        return;
    }
    let dir = TempDir::new("nu");
    let users = dir.file("users.htpasswd");
    for (u, p) in [("alice", "pw-alice"), ("bob", "pw-bob")] {
        htpasswd(&users, u, p);
    }
    // /b has a file of its own.
    htpasswd(&dir.file("b.htpasswd"), "carol", "pw-carol");
    let conf = dir.write(
        "etherws.toml",
        r#"[switch]
htpasswd = "users.htpasswd"

[[port]]
type = "tap"
target = "ewsG"
address = "192.0.2.1"
netmask = "255.255.255.0"
vlan = 20

[[path]]
path = "/a"
vlan = 10

[[path]]
path = "/b"
vlan = 20
htpasswd = "b.htpasswd"

[user.alice]
vlan = 20
"#,
    );
    let hub = Hub::new("nu", &["--config", &conf]);
    let a1 = hub.spoke("a1", A1, "/a", &["--user", "bob", "--passwd", "pw-bob"]);
    let b1 = hub.spoke("b1", B1, "/b", &["--user", "carol", "--passwd", "pw-carol"]);
    let al = hub.spoke("al", B2, "/a", &["--user", "alice", "--passwd", "pw-alice"]);

    let gw = hub.sw.port_status(1);
    assert_eq!(gw["target"], GW_TAP, "{gw}");
    assert_eq!(vlan_of(&gw), Some(20), "the TAP's [[port]] vlan: {gw}");
    for (port, vlan, user, path, what) in [
        (a1.server_port, 10, "bob", "/a", "bob on /a"),
        (b1.server_port, 20, "carol", "/b", "carol on /b"),
        (
            al.server_port,
            20,
            "alice",
            "/a",
            "alice (pinned to VLAN 20) on /a",
        ),
    ] {
        let p = hub.sw.port_status(port);
        assert_eq!(vlan_of(&p), Some(vlan), "{what}: vlan in {p}");
        assert_eq!(p["user"], user, "{what}: user in {p}");
        assert_eq!(p["path"], path, "{what}: path in {p}");
    }
    let rows = verbose(&hub.sw);
    let row = &rows[&al.server_port];
    assert_eq!(cell(row, "VLAN"), Some("20"), "listport --verbose: {row:?}");
    assert_eq!(
        cell(row, "USER"),
        Some("alice"),
        "listport --verbose: {row:?}"
    );

    // /b's own htpasswd file: bob (only in the switch's) is refused there, carol (only in
    // /b's) on /a.
    for (spoke, path, user, passwd) in [
        (&a1, "/b", "bob", "pw-bob"),
        (&b1, "/a", "carol", "pw-carol"),
    ] {
        let url = spoke.hub_url(path);
        let out = spoke.sw.ctl(&[
            "addport", "client", &url, "--user", user, "--passwd", passwd,
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            (!out.status.success() || text.contains("(-3")) && text.contains("401"),
            "{user} on {path} should be refused (401)\n{}",
            show(&out)
        );
    }

    pings(&[(&al.ns, B1), (&b1.ns, B2), (&al.ns, GW)]);
    no_pings(&[(&al.ns, A1), (&a1.ns, B2), (&a1.ns, B1), (&a1.ns, GW)]);
}

/// Two users named alice: one in the switch-wide htpasswd file, on `/a` (VLAN 10), one in
/// `/b`'s own file (VLAN 30), with a gateway on VLAN 20 and `pin` as `[user.alice]`'s keys.
/// Returns the hub, the switch-wide alice's spoke, `/b`'s alice's, and the files' folder.
fn two_alices(tag: &str, pin: &str) -> (Hub, Spoke, Spoke, TempDir) {
    let dir = TempDir::new(tag);
    htpasswd(&dir.file("users.htpasswd"), "alice", "pw-alice");
    htpasswd(&dir.file("b.htpasswd"), "alice", "pw-b-alice");
    let conf = dir.write(
        "etherws.toml",
        &format!(
            r#"[switch]
htpasswd = "users.htpasswd"

[[port]]
type = "tap"
target = "ewsG"
address = "192.0.2.1"
netmask = "255.255.255.0"
vlan = 20

[[path]]
path = "/a"
vlan = 10

[[path]]
path = "/b"
vlan = 30
htpasswd = "b.htpasswd"

[user.alice]
{pin}"#
        ),
    );
    let hub = Hub::new(tag, &["--config", &conf]);
    let switch_wide = hub.spoke("a1", A1, "/a", &["--user", "alice", "--passwd", "pw-alice"]);
    let of_b = hub.spoke(
        "b1",
        B1,
        "/b",
        &["--user", "alice", "--passwd", "pw-b-alice"],
    );
    (hub, switch_wide, of_b, dir)
}

/// A user pin (`[user.alice]`) is for the switch-wide htpasswd file's alice: an alice of a
/// path's own file is someone else, and gets her path's settings, not the pinned VLAN.
#[test]
fn a_paths_own_alice_is_not_the_pinned_alice() {
    if !needs(&["htpasswd"]) {
        return;
    }
    let (hub, pinned, other, _dir) = two_alices("na", "vlan = 20\n");
    for (spoke, vlan, path, what) in [
        (
            &pinned,
            20,
            "/a",
            "the switch-wide alice (pinned to VLAN 20) on /a",
        ),
        (
            &other,
            30,
            "/b",
            "/b's own alice on /b (/b's VLAN, not the pin's)",
        ),
    ] {
        let p = hub.sw.port_status(spoke.server_port);
        assert_eq!(vlan_of(&p), Some(vlan), "{what}: vlan in {p}");
        assert_eq!(p["user"], "alice", "{what}: user in {p}");
        assert_eq!(p["path"], path, "{what}: path in {p}");
    }
    pings(&[(&pinned.ns, GW)]);
    no_pings(&[(&other.ns, GW), (&other.ns, A1)]);
}

/// A path's own users are pinned in the path's name (`path = "/b"`): /b's alice gets the pin,
/// the switch-wide alice does not.
#[test]
fn a_pin_for_a_paths_own_user_applies_on_that_path() {
    if !needs(&["htpasswd"]) {
        return;
    }
    let (hub, switch_wide, of_b, _dir) = two_alices("np", "path = \"/b\"\nvlan = 20\n");
    for (spoke, vlan, what) in [
        (&switch_wide, 10, "the switch-wide alice on /a (/a's VLAN)"),
        (&of_b, 20, "/b's own alice (pinned to VLAN 20)"),
    ] {
        let p = hub.sw.port_status(spoke.server_port);
        assert_eq!(vlan_of(&p), Some(vlan), "{what}: vlan in {p}");
    }
    pings(&[(&of_b.ns, GW)]);
    no_pings(&[(&switch_wide.ns, GW)]);
}

#[test]
fn isolated_clients_reach_the_gateway_not_each_other() {
    if !require_root() {
        return;
    }
    let hub = Hub::new(
        "ni",
        &[
            "--path",
            "/=isolated,rate-in:30M,rate-out:40M",
            "--rate-out",
            "5M",
        ],
    );
    let gw = hub.sw.add_tap(&hub.ns, GW_TAP, GW).port;
    let c1 = hub.spoke("c1", A1, "/", &[]);
    let c2 = hub.spoke("c2", A2, "/", &[]);
    for (port, isolated, what) in [
        (c1.server_port, true, "c1's server port"),
        (c2.server_port, true, "c2's server port"),
        (gw, false, "the TAP"),
    ] {
        let p = hub.sw.port_status(port);
        assert_eq!(p["isolated"], isolated, "{what}: isolated in {p}");
    }
    // The path's own rates win over the switch's default (--rate-out 5M); a TAP has none.
    let c1_st = hub.sw.port_status(c1.server_port);
    assert_eq!(c1_st["rate_in"], 30_000_000, "{c1_st}");
    assert_eq!(c1_st["rate_out"], 40_000_000, "{c1_st}");
    let gw_st = hub.sw.port_status(gw);
    for key in ["rate_in", "rate_out"] {
        assert!(
            gw_st[key].is_null() || gw_st[key] == 0,
            "the TAP's {key}: {gw_st}"
        );
    }
    pings(&[(&c1.ns, GW), (&c2.ns, GW), (&hub.ns, A1), (&hub.ns, A2)]);
    no_pings(&[(&c1.ns, A2), (&c2.ns, A1)]);

    // setport --isolated 1 on the TAP: now everyone is isolated, nobody reaches anybody.
    hub.sw
        .ctl_ok(&["setport", &gw.to_string(), "--isolated", "1"]);
    assert_eq!(hub.sw.port_status(gw)["isolated"], true);
    no_pings(&[(&c1.ns, GW), (&c2.ns, GW)]);
    hub.sw
        .ctl_ok(&["setport", &gw.to_string(), "--isolated", "0"]);
    assert_eq!(hub.sw.port_status(gw)["isolated"], false);
    pings(&[(&c1.ns, GW)]);

    // setport --isolated 0 on c1's server port: c1 and c2 (still isolated) meet.
    hub.sw
        .ctl_ok(&["setport", &c1.server_port.to_string(), "--isolated", "0"]);
    assert_eq!(hub.sw.port_status(c1.server_port)["isolated"], false);
    pings(&[(&c1.ns, A2), (&c2.ns, A1)]);
}

#[test]
fn mesh_ports_never_forward_to_each_other() {
    if !require_root() {
        return;
    }
    let hub = Hub::new(
        "nh",
        &["--path", "/m=mesh", "--path", "/", "--rate-out", "500M"],
    );
    hub.sw.add_tap(&hub.ns, GW_TAP, GW);
    let m1 = hub.spoke("m1", A1, "/m", &[]);
    // A client port can be a mesh port too (addport client URL --mesh).
    let m2 = hub.spoke("m2", A2, "/m", &["--mesh"]);
    let p1 = hub.spoke("p1", B1, "/", &[]);
    for (port, mesh, what) in [
        (m1.server_port, true, "m1 on /m"),
        (p1.server_port, false, "p1 on /"),
    ] {
        let p = hub.sw.port_status(port);
        assert_eq!(p["mesh"], mesh, "{what}: mesh in {p}");
        // Paths without rates of their own take the switch's default (--rate-out 500M).
        assert_eq!(p["rate_out"], 500_000_000, "{what}: rate_out in {p}");
    }
    pings(&[(&m1.ns, GW), (&m2.ns, GW), (&m1.ns, B1), (&p1.ns, A2)]);
    no_pings(&[(&m1.ns, A2), (&m2.ns, A1)]);
    assert_eq!(
        m2.sw.port_status(2)["mesh"],
        true,
        "m2's client port (--mesh)"
    );
    assert_eq!(m1.sw.port_status(2)["mesh"], false, "m1's client port");
}

/// Host i's netdev port in a [`HostLan`].
fn p(i: u32) -> String {
    i.to_string()
}

#[test]
fn rate_limited_port_keeps_to_its_rate_and_spares_its_neighbours() {
    if !needs(&["iperf3"]) {
        return;
    }
    const LIMIT: f64 = 20.0; // Mbit/s
    let lan = HostLan::new("nr", 3, &[]);
    pings(&[(lan.host(1), "192.0.2.2"), (lan.host(1), "192.0.2.3")]);

    // rate-out on port 2: what is sent out of it to host 2.
    lan.sw.ctl_ok(&["setport", &p(2), "--rate-out", "20M"]);
    let st = lan.sw.port_status(2);
    assert_eq!(st["rate_out"], 20_000_000, "{st}");
    // A token bucket lets through at most rate x time + burst (a quarter second at the rate
    // by default), and TCP backing off after a drop lets the bucket fill again: any window
    // of T seconds may read up to burst / T above the rate. The limited TCP runs therefore
    // skip the first second (`-O 1`, the full bucket at start) and last 5 s (at most
    // 1 Mbit/s, 5 %, above the rate), so the 10 % bound checks the limiter, not the window.
    let limited = iperf3_for(
        lan.host(2),
        lan.host(1),
        &HostLan::ip(2),
        5201,
        5,
        &["-O", "1"],
    );
    let free = iperf3(lan.host(3), lan.host(1), &HostLan::ip(3), 5202, &[]);
    eprintln!(
        "rate-out 20M: host 1 -> 2 (limited) {:.1} Mbit/s, host 1 -> 3 (unlimited) {:.1} Mbit/s",
        limited.mbit_s, free.mbit_s
    );
    assert!(
        limited.mbit_s <= LIMIT * 1.1 && limited.mbit_s > LIMIT * 0.8,
        "the limited port moved {:.1} Mbit/s, limit {LIMIT} Mbit/s ({:?})",
        limited.mbit_s,
        limited.error
    );
    assert!(
        free.mbit_s > LIMIT * 2.0,
        "the unlimited neighbour moved only {:.1} Mbit/s ({:?})",
        free.mbit_s,
        free.error
    );
    // UDP at twice the limit: what arrives is the limit (payload of 1,400-byte datagrams:
    // 97% of the frames' bytes), not more.
    let udp = iperf3_for(
        lan.host(2),
        lan.host(1),
        &HostLan::ip(2),
        5205,
        2,
        &["-u", "-b", "40M", "-l", "1400", "-O", "1"],
    );
    eprintln!(
        "rate-out 20M: UDP at 40 Mbit/s host 1 -> 2: {:.1} Mbit/s arrive",
        udp.mbit_s
    );
    assert!(
        udp.mbit_s <= LIMIT * 1.1 && udp.mbit_s > LIMIT * 0.8,
        "UDP at twice the limit through the limited port: {:.1} Mbit/s arrive, limit {LIMIT} \
         Mbit/s ({:?})",
        udp.mbit_s,
        udp.error
    );
    let st2 = lan.sw.port_status(2);
    let st3 = lan.sw.port_status(3);
    assert!(counter(&st2, "rate_out_dropped") > 0, "{st2}");
    assert_eq!(counter(&st3, "rate_out_dropped"), 0, "{st3}");
    assert_eq!(counter(&st3, "rate_in_dropped"), 0, "{st3}");

    // rate-in on port 3: what host 3 sends.
    lan.sw.ctl_ok(&["setport", &p(3), "--rate-in", "20M"]);
    let st = lan.sw.port_status(3);
    assert_eq!(st["rate_in"], 20_000_000, "{st}");
    let limited_in = iperf3_for(
        lan.host(1),
        lan.host(3),
        &HostLan::ip(1),
        5203,
        5,
        &["-O", "1"],
    );
    eprintln!("rate-in 20M: host 3 -> 1 {:.1} Mbit/s", limited_in.mbit_s);
    assert!(
        limited_in.mbit_s <= LIMIT * 1.1 && limited_in.mbit_s > LIMIT * 0.8,
        "the port limited on input moved {:.1} Mbit/s, limit {LIMIT} Mbit/s ({:?})",
        limited_in.mbit_s,
        limited_in.error
    );
    let st3 = lan.sw.port_status(3);
    assert!(counter(&st3, "rate_in_dropped") > 0, "{st3}");

    // --rate-out 0: no limit any more.
    lan.sw.ctl_ok(&["setport", &p(2), "--rate-out", "0"]);
    let st = lan.sw.port_status(2);
    assert!(
        st["rate_out"].is_null() || st["rate_out"] == 0,
        "rate_out after --rate-out 0: {st}"
    );
    let unlimited = iperf3_for(lan.host(2), lan.host(1), &HostLan::ip(2), 5204, 2, &[]);
    eprintln!("rate-out 0: host 1 -> 2 {:.1} Mbit/s", unlimited.mbit_s);
    assert!(
        unlimited.mbit_s > LIMIT * 2.0,
        "after --rate-out 0, host 1 -> 2 moved only {:.1} Mbit/s ({:?})",
        unlimited.mbit_s,
        unlimited.error
    );
}

/// An ICMP echo (request: 8, reply: 0) between two IPv4 addresses in `f` (tagged or not),
/// carrying `pattern`: (type, source, destination).
fn icmp_echo(f: &[u8], pattern: &[u8]) -> Option<(u8, [u8; 4], [u8; 4])> {
    let mut off = 12;
    while f.len() >= off + 2 && f[off..off + 2] == [0x81, 0x00] {
        off += 4;
    }
    if f.len() < off + 2 + 20 + 8 || f[off..off + 2] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[off + 2..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != 1 || ip.len() < ihl + 8 || !contains(&ip[ihl..], pattern) {
        return None;
    }
    let src = ip[12..16].try_into().ok()?;
    let dst = ip[16..20].try_into().ok()?;
    Some((ip[ihl], src, dst))
}

/// `ping -c 2 -p PATTERN` from `ns` to `addr` must succeed.
fn ping_with(ns: &Netns, addr: &str, pattern: &str) {
    ns.exec_ok(&[
        "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-p", pattern, addr,
    ]);
}

#[test]
fn mirror_tap_sees_both_ways_until_switched_off() {
    if !require_root() {
        return;
    }
    let lan = HostLan::new("nm", 2, &[]);
    let mirror = lan.sw.add_port("tap", "ewsM", &[]).port;
    lan.sw_ns.wait_link("ewsM");
    lan.sw_ns.ip(&["link", "set", "ewsM", "up"]);
    ping(lan.host(1), "192.0.2.2");
    let sock = RawSock::open(&lan.sw_ns, "ewsM");

    lan.sw
        .ctl_ok(&["setport", &p(2), "--mirror", &mirror.to_string()]);
    let st = lan.sw.port_status(2);
    assert_eq!(st["mirror"], u64::from(mirror), "{st}");
    sock.drain();
    let pattern = format!("e7{:06x}{:06x}", std::process::id() & 0xff_ffff, next_id());
    let pat: Vec<u8> = (0..pattern.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&pattern[i..i + 2], 16).unwrap())
        .collect();
    ping_with(lan.host(1), "192.0.2.2", &pattern);
    let frames = capture(&sock, Duration::from_secs(1));
    let echoes: Vec<_> = frames
        .iter()
        .filter_map(|f| icmp_echo(&f.data, &pat))
        .collect();
    let (h1, h2) = ([192, 0, 2, 1], [192, 0, 2, 2]);
    assert!(
        echoes.contains(&(8, h1, h2)),
        "the mirror saw no echo request into port 2's host: {echoes:?} ({} frames)",
        frames.len()
    );
    assert!(
        echoes.contains(&(0, h2, h1)),
        "the mirror saw no echo reply from port 2's host: {echoes:?} ({} frames)",
        frames.len()
    );

    lan.sw.ctl_ok(&["setport", &p(2), "--mirror", "0"]);
    let st = lan.sw.port_status(2);
    assert!(
        st["mirror"].is_null() || st["mirror"] == 0,
        "mirror after --mirror 0: {st}"
    );
    sock.drain();
    let pattern = format!("e8{:06x}{:06x}", std::process::id() & 0xff_ffff, next_id());
    let pat: Vec<u8> = (0..pattern.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&pattern[i..i + 2], 16).unwrap())
        .collect();
    ping_with(lan.host(1), "192.0.2.2", &pattern);
    let frames = capture(&sock, Duration::from_millis(700));
    let echoes: Vec<_> = frames
        .iter()
        .filter_map(|f| icmp_echo(&f.data, &pat))
        .collect();
    assert!(
        echoes.is_empty(),
        "the mirror still sees port 2 after --mirror 0: {echoes:?}"
    );
}

/// Offloaded netdev ports with a policy are served in userspace, so the policy holds even
/// where the kernel would switch the frames itself.
#[test]
fn policies_hold_on_offloaded_ports() {
    if !require_root() {
        return;
    }
    let obj = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bpf/etherws-xdp.o");
    if !obj.is_file() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("no {} (run `cargo xtask build-ebpf`)", obj.display());
        }
        loud(&format!(
            "SKIPPED (no eBPF object, run `cargo xtask build-ebpf`): {}",
            this_test()
        ));
        return;
    }
    // The XDP program, and the TC program (`--offload=tc`).
    for (tag, offload) in [("no", "--offload=xdp"), ("not", "--offload=tc")] {
        policies_hold(tag, offload);
    }
}

/// [`policies_hold_on_offloaded_ports`] with the ports offloaded by `offload`.
fn policies_hold(tag: &str, offload: &str) {
    let sw_ns = Netns::new(&format!("{tag}S"));
    let h1 = Netns::new(&format!("{tag}1"));
    let h2 = Netns::new(&format!("{tag}2"));
    veth(&h1, "eth0", Some("192.0.2.1/24"), &sw_ns, "s1", None);
    veth(&h2, "eth0", Some("192.0.2.2/24"), &sw_ns, "s2", None);
    // As in tests/offload.rs: NAPI on the hosts' ends for native XDP redirects, and complete
    // checksums from the hosts.
    for h in [&h1, &h2] {
        h.set_gro("eth0", true);
        h.set_tx_csum("eth0", false);
    }
    let sw = Switch::builder(tag).netns(&sw_ns).ctl_port(7867).start();
    for dev in ["s1", "s2"] {
        let kind = sw.add_port("netdev", dev, &[offload]).kind;
        let want = if offload.ends_with("=tc") {
            "netdev/tc"
        } else {
            "netdev/xdp"
        };
        assert!(kind.starts_with(want), "{kind}");
    }
    pings(&[(&h1, "192.0.2.2")]);

    // Both ports isolated: nothing passes, in the kernel or not.
    for n in [1, 2] {
        sw.ctl_ok(&["setport", &p(n), "--isolated", "1"]);
    }
    no_pings(&[(&h1, "192.0.2.2"), (&h2, "192.0.2.1")]);
    // Port 2 an access port of VLAN 10, port 1 isolated no more but a trunk: untagged frames
    // from host 1 (VLAN 0) do not reach VLAN 10.
    sw.ctl_ok(&["setport", &p(1), "--isolated", "0"]);
    sw.ctl_ok(&["setport", &p(2), "--isolated", "0", "--vlan", "10"]);
    no_pings(&[(&h1, "192.0.2.2")]);
    // No policy left: the ports work again.
    sw.ctl_ok(&["setport", &p(2), "--vlan", "0"]);
    pings(&[(&h1, "192.0.2.2"), (&h2, "192.0.2.1")]);
}

/// A switch in a namespace of its own (`{tag}S`) with two TAP ports (1 and 2), for the
/// control API's checks.
fn two_taps(tag: &str) -> (Switch, Netns) {
    let ns = Netns::new(&format!("{tag}S"));
    let sw = Switch::builder(tag).netns(&ns).start();
    for (n, tap) in [(1, "ewsA"), (2, "ewsB")] {
        assert_eq!(sw.add_port("tap", tap, &[]).port, n, "{tap} is port {n}");
    }
    (sw, ns)
}

/// `setPort` with `params` through the JSON-RPC API: the whole answer, error or result.
fn set_port(sw: &Switch, ns: &Netns, params: Value) -> Value {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "etherws.control.setPort",
        "params": params,
        "id": 7,
    });
    rpc_in(ns, sw.ctl_addr(), "/ctl", &body.to_string())
}

/// A refused `setPort` answers -32602 and changes nothing: every setting is checked before any
/// is applied, `shut` (etherws 1.3's) as much as etherws 2's policy.
#[test]
fn set_port_refused_changes_nothing() {
    if !require_root() {
        return;
    }
    let (sw, ns) = two_taps("nz");
    let before = sw.port_status(1);
    for params in [
        // A mirror that is no port, or the port itself.
        serde_json::json!({"port": 1, "shut": true, "mirror": 9}),
        serde_json::json!({"port": 1, "shut": true, "mirror": 1}),
        serde_json::json!({"port": 1, "shut": true, "isolated": true, "mirror": 9}),
        serde_json::json!({"port": 1, "shut": 1, "vlan": 10, "mirror": 1}),
        serde_json::json!({"port": 1, "shut": true, "vlan": 5000}),
    ] {
        let v = set_port(&sw, &ns, params.clone());
        assert_eq!(v["error"]["code"], -32602, "{params}: {v}");
        let after = sw.port_status(1);
        for key in ["shut", "isolated", "vlan", "mirror"] {
            assert_eq!(after[key], before[key], "{params} changed {key}: {after}");
        }
    }
    // The same with a mirror that is another port: all of it applies.
    let v = set_port(
        &sw,
        &ns,
        serde_json::json!({"port": 1, "shut": true, "mirror": 2}),
    );
    assert!(v["error"].is_null(), "{v}");
    let after = sw.port_status(1);
    assert_eq!(
        (&after["shut"], &after["mirror"]),
        (&true.into(), &2.into()),
        "{after}"
    );
}

/// `isolated` and `mesh` (etherws 2's settings) are `true`/`false` or 1/0 in `setPort`, as `ctl`
/// sends them and the documentation gives them; a string such as `"no"` or `"0"` is refused
/// (-32602, the port as it was), never read as "on". `addPort`'s `mesh` likewise.
#[test]
fn set_port_flags_are_booleans() {
    if !require_root() {
        return;
    }
    let (sw, ns) = two_taps("nb");
    for key in ["isolated", "mesh"] {
        for bad in [
            serde_json::json!("no"),
            serde_json::json!("false"),
            serde_json::json!("0"),
            serde_json::json!("true"),
            serde_json::json!(""),
            serde_json::json!(2),
            serde_json::json!(0.5),
            serde_json::json!([]),
        ] {
            let v = set_port(&sw, &ns, serde_json::json!({"port": 1, key: bad}));
            assert_eq!(v["error"]["code"], -32602, "{key}: {bad}: {v}");
            let data = v["error"]["data"].as_str().unwrap_or_default();
            assert!(
                data.contains(&format!("{key} must be true or false")),
                "{key}: {bad}: {v}"
            );
            assert_eq!(sw.port_status(1)[key], false, "{key}: {bad} turned it on");
        }
        for (good, want) in [
            (serde_json::json!(true), true),
            (serde_json::json!(false), false),
            (serde_json::json!(1), true),
            (serde_json::json!(0), false),
        ] {
            let v = set_port(&sw, &ns, serde_json::json!({"port": 1, key: good}));
            assert!(v["error"].is_null(), "{key}: {good}: {v}");
            assert_eq!(sw.port_status(1)[key], want, "{key}: {good}");
        }
    }
    // addPort's mesh is checked before the port is made.
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "etherws.control.addPort",
        "params": {"type": "client", "target": "ws://127.0.0.1:9/", "options": {"mesh": "no"}},
        "id": 8,
    });
    let v = rpc_in(&ns, sw.ctl_addr(), "/ctl", &body.to_string());
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["data"]
            .as_str()
            .is_some_and(|d| d.contains("mesh must be true or false")),
        "{v}"
    );
    assert_eq!(sw.listport().len(), 2, "no port added");
}

/// `params` to the JSON-RPC method `method`: the whole answer.
fn rpc_method(sw: &Switch, ns: &Netns, method: &str, params: Value) -> Value {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "method": format!("etherws.control.{method}"),
        "params": params,
        "id": 8,
    });
    rpc_in(ns, sw.ctl_addr(), "/ctl", &body.to_string())
}

/// `setPort` and `delPort` answer the port's live counters, `tx` and its queue's included, as
/// `listPort` shows them — not the `tx: 0` of the state the switch stores without its queue.
#[test]
fn set_port_and_del_port_answer_the_live_tx_counters() {
    if !require_root() {
        return;
    }
    let lan = HostLan::new("nt", 2, &[]);
    ping(lan.host(1), "192.0.2.2");
    let listed = lan.sw.port_status(2);
    let tx = listed["tx"].as_u64().unwrap();
    assert!(tx > 0, "port 2 sent nothing after a ping: {listed}");

    let v = set_port(
        &lan.sw,
        &lan.sw_ns,
        serde_json::json!({"port": 2, "shut": true}),
    );
    let entry = &v["result"]["entries"][0];
    assert_eq!(entry["shut"], true, "{v}");
    assert!(
        entry["tx"].as_u64().unwrap() >= tx,
        "setPort's tx, after {tx} listed: {v}"
    );
    for key in ["tx_dropped", "tx_expired", "queued_bytes"] {
        assert_eq!(entry[key], listed[key], "setPort's {key}: {v}");
    }

    let v = rpc_method(
        &lan.sw,
        &lan.sw_ns,
        "delPort",
        serde_json::json!({"port": 2}),
    );
    let entry = &v["result"]["entries"][0];
    assert_eq!(entry["port"], 2, "{v}");
    assert!(
        entry["tx"].as_u64().unwrap() >= tx,
        "delPort's tx, after {tx} listed: {v}"
    );
    for key in ["tx_dropped", "tx_expired", "queued_bytes"] {
        assert_eq!(entry[key], listed[key], "delPort's {key}: {v}");
    }
}
