//! End-to-end tests of the `etherws` binary (1.3-compatible CLI and control API).
//!
//! Tests that need root build their networks inside private network namespaces (see
//! the etherws-testkit crate, testkit/); `jsonrpc_errors` and `ctl_validates_input` run on loopback only.

use std::time::Duration;

use etherws_testkit::*;
use serde_json::{Value, json};

const A_TAP_IP: &str = Sites::A_TAP;
const B_TAP_IP: &str = Sites::B_TAP;
const NETMASK: &str = Sites::NETMASK;

/// Two sites, each with a TAP port 1 (ewsA0 192.0.2.1/24, ewsB0 192.0.2.2/24), and B's switch
/// connected to A's as a client (port 2 on B, server port 2 on A).
fn pair(tag: &str) -> Sites {
    Sites::builder(tag).both(|s| s.tap()).connect(&[]).start()
}

fn row(ports: &[PortRow], n: u32) -> PortRow {
    ports
        .iter()
        .find(|p| p.port == n)
        .cloned()
        .unwrap_or_else(|| panic!("no port {n} in {ports:?}"))
}

fn has_fdb(fdb: &[FdbRow], port: u32, vlan: u16, mac: &str) -> bool {
    fdb.iter()
        .any(|e| e.port == port && e.vlan == vlan && e.mac == mac)
}

#[test]
fn two_switches_tap_ping() {
    if !require_root() {
        return;
    }
    let p = pair("tp");
    ping(&p.a.ns, B_TAP_IP);
    ping(&p.b.ns, A_TAP_IP);

    // listport on A: tap port 1 and the server port 2, both carried traffic.
    let a = p.a.sw.listport();
    assert_eq!(a.len(), 2, "{a:?}");
    let (a1, a2) = (row(&a, 1), row(&a, 2));
    assert_eq!(
        (a1.kind.as_str(), a1.state.as_str(), a1.target.as_str()),
        ("tap", "up", "ewsA0"),
        "{a:?}"
    );
    assert_eq!(
        (a2.kind.as_str(), a2.state.as_str()),
        ("server", "up"),
        "{a:?}"
    );
    for r in [&a1, &a2] {
        assert!(
            r.rx > 0 && r.tx > 0,
            "port counters should have moved after ping: {a:?}"
        );
    }

    // listport on B: tap port 1 and client port 2 with the URL as target.
    let b = p.b.sw.listport();
    assert_eq!(b.len(), 2, "{b:?}");
    let (b1, b2) = (row(&b, 1), row(&b, 2));
    assert_eq!(
        (b1.kind.as_str(), b1.target.as_str()),
        ("tap", "ewsB0"),
        "{b:?}"
    );
    assert_eq!(
        (b2.kind.as_str(), b2.state.as_str(), b2.target.as_str()),
        ("client", "up", p.client_url().as_str())
    );
    assert!(b2.rx > 0 && b2.tx > 0, "{b:?}");

    // listfdb on B: A's TAP MAC behind the client port, B's own TAP MAC on port 1, VLAN 0.
    let mac_a = p.a.ns.mac("ewsA0");
    let mac_b = p.b.ns.mac("ewsB0");
    let fdb = p.b.sw.listfdb();
    assert!(
        has_fdb(&fdb, 2, 0, &mac_a),
        "B should learn {mac_a} on port 2 VLAN 0: {fdb:?}"
    );
    assert!(
        has_fdb(&fdb, 1, 0, &mac_b),
        "B should learn {mac_b} on port 1 VLAN 0: {fdb:?}"
    );
    let fdb_a = p.a.sw.listfdb();
    assert!(has_fdb(&fdb_a, 1, 0, &mac_a), "{fdb_a:?}");
    assert!(has_fdb(&fdb_a, 2, 0, &mac_b), "{fdb_a:?}");

    // listif on A: only the TAP port.
    let ifs = p.a.sw.listif();
    assert_eq!(
        ifs,
        vec![IfRow {
            port: 1,
            kind: "tap".into(),
            address: A_TAP_IP.into(),
            netmask: NETMASK.into(),
            mtu: 1500,
            target: "ewsA0".into()
        }],
        "listif on A"
    );

    // setif --mtu
    let ifs = parse_ifs(&p.a.sw.ctl_ok(&["setif", "1", "--mtu", "1400"]));
    assert_eq!(ifs.len(), 1, "{ifs:?}");
    assert_eq!(ifs[0].mtu, 1400, "{ifs:?}");
    assert_eq!(p.a.sw.listif()[0].mtu, 1400);
    assert_eq!(
        p.a.ns.mtu("ewsA0"),
        1400,
        "the kernel interface MTU follows setif"
    );

    // Shut the client port on B: no traffic, counters frozen.
    let rows = parse_ports(&p.b.sw.ctl_ok(&["setport", "2", "--shut", "1"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].port, rows[0].state.as_str()),
        (2, "shut"),
        "{rows:?}"
    );
    let before = row(&p.b.sw.listport(), 2);
    assert_eq!(before.state, "shut");
    no_ping(&p.b.ns, A_TAP_IP);
    no_ping(&p.a.ns, B_TAP_IP);
    let after = row(&p.b.sw.listport(), 2);
    assert_eq!(
        (after.rx, after.tx),
        (before.rx, before.tx),
        "a shut port's counters stop"
    );

    let rows = parse_ports(&p.b.sw.ctl_ok(&["setport", "2", "--shut", "0"]));
    assert_eq!(
        (rows[0].port, rows[0].state.as_str()),
        (2, "up"),
        "{rows:?}"
    );
    ping(&p.b.ns, A_TAP_IP);
    ping(&p.a.ns, B_TAP_IP);

    // delport 2 on B: gone on B, its FDB entries forgotten; the server port on A goes too.
    let rows = parse_ports(&p.b.sw.ctl_ok(&["delport", "2"]));
    assert_eq!(
        (rows.len(), rows[0].port, rows[0].kind.as_str()),
        (1, 2, "client"),
        "delport prints the port: {rows:?}"
    );
    let b = p.b.sw.listport();
    assert_eq!(
        b.iter().map(|r| r.port).collect::<Vec<_>>(),
        vec![1],
        "{b:?}"
    );
    let fdb = p.b.sw.listfdb();
    assert!(
        fdb.iter().all(|e| e.port != 2),
        "B's FDB still has port 2 entries: {fdb:?}"
    );
    poll(
        "server port to leave switch A",
        Duration::from_secs(10),
        || {
            let a = p.a.sw.listport();
            if a.iter().any(|r| r.kind == "server") {
                Err(format!("{a:?}"))
            } else {
                Ok(())
            }
        },
    );
    let a = p.a.sw.listport();
    assert_eq!(
        a.iter().map(|r| r.port).collect::<Vec<_>>(),
        vec![1],
        "{a:?}"
    );
    let fdb_a = p.a.sw.listfdb();
    assert!(
        fdb_a.iter().all(|e| e.port != 2),
        "A's FDB still has port 2 entries: {fdb_a:?}"
    );

    // Reconnect: port numbers are never reused.
    let rows = parse_ports(&p.b.sw.ctl_ok(&["addport", "client", &p.client_url()]));
    assert_eq!(
        (rows.len(), rows[0].port, rows[0].kind.as_str()),
        (1, 3, "client"),
        "{rows:?}"
    );
    p.a.sw.wait_server_port(3);
    let b = p.b.sw.listport();
    assert_eq!(
        b.iter().map(|r| r.port).collect::<Vec<_>>(),
        vec![1, 3],
        "{b:?}"
    );
    ping(&p.b.ns, A_TAP_IP);
    ping(&p.a.ns, B_TAP_IP);
}

#[test]
fn netdev_port_reaches_remote_tap() {
    if !require_root() {
        return;
    }
    let p = pair("nd");
    let ns_c = Netns::new("ndC");
    veth(&ns_c, "vc0", Some("192.0.2.3/24"), &p.a.ns, "vA1", None);

    let rows = parse_ports(&p.a.sw.ctl_ok(&["addport", "netdev", "vA1"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].port, rows[0].kind.as_str(), rows[0].target.as_str()),
        (3, "netdev", "vA1"),
        "{rows:?}"
    );

    ping(&ns_c, B_TAP_IP);
    ping(&p.b.ns, "192.0.2.3");
    ping(&ns_c, A_TAP_IP);

    let a = p.a.sw.listport();
    let nd = row(&a, 3);
    assert_eq!(
        (nd.kind.as_str(), nd.state.as_str(), nd.target.as_str()),
        ("netdev", "up", "vA1"),
        "{a:?}"
    );
    assert!(nd.rx > 0 && nd.tx > 0, "{a:?}");

    let mac_c = ns_c.mac("vc0");
    let fdb_a = p.a.sw.listfdb();
    assert!(
        has_fdb(&fdb_a, 3, 0, &mac_c),
        "A should learn {mac_c} on the netdev port 3: {fdb_a:?}"
    );
    let fdb_b = p.b.sw.listfdb();
    assert!(
        has_fdb(&fdb_b, 2, 0, &mac_c),
        "B should learn {mac_c} on its client port 2: {fdb_b:?}"
    );

    // netdev ports have interface settings; listif shows them next to the TAP.
    let ifs = p.a.sw.listif();
    let nd_if = ifs
        .iter()
        .find(|r| r.port == 3)
        .unwrap_or_else(|| panic!("no netdev row in listif: {ifs:?}"));
    assert_eq!(
        (nd_if.kind.as_str(), nd_if.target.as_str(), nd_if.mtu),
        ("netdev", "vA1", 1500),
        "{ifs:?}"
    );
    assert!(ifs.iter().all(|r| r.kind != "server"), "{ifs:?}");
}

#[test]
fn vlan_stays_in_its_vlan() {
    if !require_root() {
        return;
    }
    let p = pair("vl");

    // Part 1: hand-made tagged frames on the TAPs (works without the kernel's 8021q support).
    let sa = RawSock::open(&p.a.ns, "ewsA0");
    let sb = RawSock::open(&p.b.ns, "ewsB0");
    sa.drain();
    sb.drain();
    let m1 = [0x02, 0xe7, 0x00, 0x00, 0x0a, 0x01];
    let m1s = format_mac(m1);
    let bcast = [0xff; 6];
    let ethertype = 0x88b5; // local experimental
    let marker = |step: u8| format!("etherws-e2e-{}-{step}", std::process::id()).into_bytes();
    let wait = Duration::from_secs(5);

    // (a) VLAN 10 with priority 5 from A's TAP, broadcast: reaches B with the tag intact and is
    //     learned under VLAN 10 (not 0) on both switches.
    let tci = (5 << 13) | 10;
    sa.send(&build_frame(bcast, m1, Some(tci), ethertype, &marker(1)));
    let got = sb
        .recv_matching(wait, |f| contains(&f.data, &marker(1)))
        .expect("VLAN 10 broadcast from A never reached B's TAP");
    assert_eq!(
        got.tci(),
        Some(tci),
        "the 802.1Q tag (PCP 5, VID 10) must pass unchanged: {:02x?}",
        &got.data[..18]
    );
    let fdb_a = p.a.sw.listfdb();
    let fdb_b = p.b.sw.listfdb();
    assert!(
        has_fdb(&fdb_a, 1, 10, &m1s),
        "A must learn {m1s} on port 1 VLAN 10 (priority bits set): {fdb_a:?}"
    );
    assert!(
        has_fdb(&fdb_b, 2, 10, &m1s),
        "B must learn {m1s} on port 2 VLAN 10 (priority bits set): {fdb_b:?}"
    );
    assert!(
        !fdb_a
            .iter()
            .chain(&fdb_b)
            .any(|e| e.mac == m1s && e.vlan == 0),
        "{m1s} learned as VLAN 0: {fdb_a:?} {fdb_b:?}"
    );

    // (b) The same MAC in VLAN 20 from B's TAP: a separate entry, VLAN 10's stays.
    sb.send(&build_frame(bcast, m1, Some(20), ethertype, &marker(2)));
    let got = sa
        .recv_matching(wait, |f| contains(&f.data, &marker(2)))
        .expect("VLAN 20 broadcast from B never reached A's TAP");
    assert_eq!(got.tci(), Some(20));
    let fdb_b = p.b.sw.listfdb();
    assert!(
        has_fdb(&fdb_b, 1, 20, &m1s) && has_fdb(&fdb_b, 2, 10, &m1s),
        "FDB is keyed on (VLAN, MAC): {fdb_b:?}"
    );
    let fdb_a = p.a.sw.listfdb();
    assert!(
        has_fdb(&fdb_a, 2, 20, &m1s) && has_fdb(&fdb_a, 1, 10, &m1s),
        "FDB is keyed on (VLAN, MAC): {fdb_a:?}"
    );

    // (c) Unicast to m1 from B: in VLAN 10 it goes to the client port and out of A's TAP; in
    //     VLAN 20 m1 lives behind B's own TAP, so nothing crosses to A.
    let src = parse_mac(&p.b.ns.mac("ewsB0"));
    sb.send(&build_frame(m1, src, Some(10), ethertype, &marker(3)));
    let got = sa
        .recv_matching(wait, |f| contains(&f.data, &marker(3)))
        .expect("VLAN 10 unicast to m1 from B never reached A");
    assert_eq!(got.tci(), Some(10));
    sb.send(&build_frame(m1, src, Some(20), ethertype, &marker(4)));
    assert!(
        sa.recv_matching(Duration::from_millis(1500), |f| contains(
            &f.data,
            &marker(4)
        ))
        .is_none(),
        "VLAN 20 unicast to a MAC learned on B's own TAP leaked to A"
    );

    // Part 2: kernel VLAN sub-interfaces (needs 8021q in the kernel).
    if !p
        .a
        .ns
        .add_vlan("ewsA0", "ewsA0.10", 10, "203.0.113.1/24", Some("0:5"))
    {
        loud(&format!(
            "{}: PART SKIPPED: this kernel has no 802.1Q (vlan) links;\n\
             only the raw tagged-frame checks ran.",
            this_test()
        ));
        return;
    }
    assert!(
        p.b.ns
            .add_vlan("ewsB0", "ewsB0.10", 10, "203.0.113.2/24", None)
    );
    ping(&p.a.ns, "203.0.113.2");
    ping(&p.b.ns, "203.0.113.1");
    let mac_a10 = p.a.ns.mac("ewsA0.10");
    let mac_b10 = p.b.ns.mac("ewsB0.10");
    let fdb_b = p.b.sw.listfdb();
    assert!(
        has_fdb(&fdb_b, 2, 10, &mac_a10),
        "A's VLAN 10 frames (egress-qos-map 0:5) learned under VLAN 10: {fdb_b:?}"
    );
    assert!(has_fdb(&fdb_b, 1, 10, &mac_b10), "{fdb_b:?}");
    let fdb_a = p.a.sw.listfdb();
    assert!(
        has_fdb(&fdb_a, 1, 10, &mac_a10) && has_fdb(&fdb_a, 2, 10, &mac_b10),
        "{fdb_a:?}"
    );

    // Same subnet, different VLANs: no way through.
    assert!(
        p.a.ns
            .add_vlan("ewsA0", "ewsA0.20", 20, "192.0.2.129/25", None)
    );
    assert!(
        p.b.ns
            .add_vlan("ewsB0", "ewsB0.30", 30, "192.0.2.130/25", None)
    );
    no_ping(&p.a.ns, "192.0.2.130");
    no_ping(&p.b.ns, "192.0.2.129");
    // ...while VLAN 10 still works.
    ping(&p.a.ns, "203.0.113.2");
}

fn local_switch(label: &str) -> Switch {
    Switch::local(label, &[])
}

fn assert_rpc_error(resp: &Value, code: i64, message: &str, id: Value, what: &str) {
    assert_eq!(resp["jsonrpc"], json!("2.0"), "{what}: {resp}");
    assert_eq!(resp["id"], id, "{what}: id must be echoed: {resp}");
    assert_eq!(resp["error"]["code"], json!(code), "{what}: {resp}");
    assert_eq!(resp["error"]["message"], json!(message), "{what}: {resp}");
    let data = resp["error"]["data"].as_str().unwrap_or("");
    assert!(
        !data.trim().is_empty(),
        "{what}: error.data must be a non-empty string: {resp}"
    );
    assert!(
        resp.get("result").is_none_or(Value::is_null),
        "{what}: no result with an error: {resp}"
    );
}

#[test]
fn jsonrpc_errors() {
    let sw = local_switch("rpc");
    let addr = sw.ctl_addr();
    let call = |body: &str| rpc(addr, "/ctl", body);

    assert_rpc_error(
        &call("{not json"),
        -32700,
        "Parse error",
        Value::Null,
        "body not JSON",
    );
    assert_rpc_error(
        &call(r#"{"jsonrpc":"1.0","method":"etherws.control.listPort","id":7}"#),
        -32600,
        "Invalid Request",
        json!(7),
        "version 1.0",
    );
    assert_rpc_error(
        &call(r#"{"jsonrpc":"2.0","id":8}"#),
        -32600,
        "Invalid Request",
        json!(8),
        "no method",
    );
    assert_rpc_error(
        &call(r#"{"method":"etherws.control.listPort","id":81}"#),
        -32600,
        "Invalid Request",
        json!(81),
        "no jsonrpc member",
    );
    assert_rpc_error(
        &call(r#"{"jsonrpc":"2.0","method":"etherws.control.nope","id":9}"#),
        -32601,
        "Method not found",
        json!(9),
        "unknown method",
    );
    assert_rpc_error(
        &call(r#"{"jsonrpc":"2.0","method":"other.listPort","id":10}"#),
        -32601,
        "Method not found",
        json!(10),
        "wrong namespace",
    );
    assert_rpc_error(
        &call(
            r#"{"jsonrpc":"2.0","method":"etherws.control.setPort","params":{"port":99},"id":11}"#,
        ),
        -32602,
        "Invalid params",
        json!(11),
        "setPort on an unknown port",
    );
    assert_rpc_error(
        &call(
            r#"{"jsonrpc":"2.0","method":"etherws.control.delPort","params":{"port":99},"id":"x-12"}"#,
        ),
        -32602,
        "Invalid params",
        json!("x-12"),
        "delPort on an unknown port (string id)",
    );

    let ok = call(r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#);
    assert_eq!(ok["jsonrpc"], json!("2.0"), "{ok}");
    assert_eq!(ok["id"], json!(1), "{ok}");
    assert_eq!(ok["result"]["entries"], json!([]), "{ok}");
    assert!(ok.get("error").is_none_or(Value::is_null), "{ok}");

    for (method, what) in [("listInterface", "listInterface"), ("listFdb", "listFdb")] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"etherws.control.{method}","id":2}}"#);
        let ok = call(&body);
        assert_eq!(ok["id"], json!(2), "{what}: {ok}");
        assert_eq!(ok["result"]["entries"], json!([]), "{what}: {ok}");
    }

    // The switch survived all of that.
    assert_eq!(sw.listport(), vec![]);
}

/// ctl's combined output, lower-cased.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase()
}

/// ctl refused the command: a non-zero exit (new in etherws 2), or, as etherws 1.3 does, exit 0
/// with an error line `  MESSAGE (-326xx)`.
fn refused(out: &std::process::Output) -> bool {
    !out.status.success()
        || String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            let l = l.trim_end();
            l.starts_with("  ") && l.ends_with(')') && l.contains(" (-32")
        })
}

#[test]
fn ctl_validates_input() {
    let sw = local_switch("ctl");

    // Refused by ctl itself, before asking the switch (which would answer -32602: no port 1).
    for (args, what) in [
        (&["setif", "1", "--mtu", "100"][..], "mtu"),
        (&["setif", "1", "--address", "300.1.1.1"][..], ""),
        (&["setif", "1", "--netmask", "255.255.255.256"][..], ""),
    ] {
        let out = sw.ctl(args);
        assert!(
            refused(&out),
            "ctl {args:?} must be refused\n{}",
            show(&out)
        );
        assert!(
            text(&out).contains(what),
            "the error should mention {what:?}\n{}",
            show(&out)
        );
        assert!(
            !text(&out).contains("(-32602)"),
            "ctl {args:?} must be refused before sending\n{}",
            show(&out)
        );
    }

    let out = sw.ctl(&["addport", "client", "http://x/"]);
    assert!(
        refused(&out),
        "http:// client target must be refused\n{}",
        show(&out)
    );
    assert!(
        text(&out).contains("scheme"),
        "expected an 'Invalid target URL scheme' error\n{}",
        show(&out)
    );
    assert_eq!(sw.listport(), vec![], "nothing may have been added");

    // An error from the switch: `  MESSAGE (CODE)` then `    DATA`.
    let out = sw.ctl(&["setport", "5", "--shut", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.first().map(|l| l.trim_end()) == Some("  Invalid params (-32602)"),
        "expected '  Invalid params (-32602)'\n{}",
        show(&out)
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("    ") && !l.trim().is_empty()),
        "expected the error data on the second line, indented by four spaces\n{}",
        show(&out)
    );

    // Empty tables: just the header rows.
    for (cmd, head) in [
        ("listport", "  Port  Type  State  RX  TX  Target"),
        ("listif", "  Port  Type  Address  Netmask  MTU  Target"),
        ("listfdb", "  Port  VLAN  MAC  Age"),
    ] {
        let stdout = sw.ctl_ok(&[cmd]);
        let lines: Vec<&str> = stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines, vec![head], "ctl {cmd} on an empty switch:\n{stdout}");
    }
}

/// The README's "Basic usage", run as it stands in two namespaces, the switches daemonized as
/// its commands make them. NodeA and NodeB are 203.0.113.10 and 203.0.113.5 here (the
/// README's 10.0.0.10 and 10.0.0.5: the tests use documentation prefixes only); the TAPs'
/// addresses are the README's own.
#[test]
fn readme_basic_usage_as_shown() {
    if !require_root() {
        return;
    }
    let readme = etherws_testkit::docs::page("README.md");
    let basic = readme
        .split("\n## Basic usage\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a section \"Basic usage\"");
    let blocks = etherws_testkit::docs::fenced_blocks(basic, "sh");
    let [node_a, node_b, show_tables] = &blocks[..] else {
        panic!("Basic usage: NodeA's, NodeB's and the tables' commands: {blocks:?}");
    };
    let physical = |s: &str| {
        s.replace("10.0.0.10", "203.0.113.10")
            .replace("10.0.0.5", "203.0.113.5")
    };
    let (a, b) = linked("bu", "203.0.113.10", "203.0.113.5");
    // `etherws` on PATH is the binary under test.
    let on_path = TempDir::new("bu-bin");
    std::os::unix::fs::symlink(bin(), on_path.path().join("etherws")).expect("symlink etherws");
    let path = format!(
        "{}:{}",
        on_path.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |ns: &Netns, script: &str| {
        let mut c = ns.command(&["sh", "-ec", script]);
        c.env("PATH", &path);
        clear_proxy_env(&mut c);
        let out = c.output().expect("run sh");
        assert!(
            out.status.success(),
            "in {}:\n{script}failed\n{}",
            ns.name(),
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(&a, &physical(node_a));
    sh(&b, &physical(node_b));
    // The two TAPs share one segment through the tunnel.
    ping(&b, "192.0.2.10");
    ping(&a, "192.0.2.5");
    let tables = sh(&b, show_tables);
    for want in [
        "ethws0",
        "ws://203.0.113.10/",
        "192.0.2.5",
        "255.255.255.0",
        &a.mac("ethws0"),
    ] {
        assert!(tables.contains(want), "{want} in\n{tables}");
    }
}
