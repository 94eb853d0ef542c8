//! Faults a deployed switch meets: peers that die or freeze, links that are cut, restarts,
//! shutdown, and broadcast storms. Each test builds its own network in namespaces (root).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

const WS_PORT: u16 = 8080;
const CTL_PORT: u16 = 7867;
const A_VETH: &str = "198.51.100.1";
const B_VETH: &str = "198.51.100.2";
const A_TAP: &str = "192.0.2.1";
const B_TAP: &str = "192.0.2.2";
/// Short keepalive so a dead peer is noticed within seconds.
const KEEPALIVE: &str = "1";

/// Starts the switch of one side with a TAP port 1 carrying `ip`/24.
fn side(ns: &Netns, label: &str, host: &str, tap: &str, ip: &str, extra: &[&str]) -> Switch {
    let mut args = vec!["--keepalive", KEEPALIVE];
    args.extend_from_slice(extra);
    let sw = Switch::in_netns(ns, label, host, WS_PORT, CTL_PORT, &args);
    // Not necessarily port 1: a peer may reconnect to a restarted switch before its TAP is back.
    let port = parse_ports(&sw.ctl_ok(&["addport", "tap", tap]))[0]
        .port
        .to_string();
    ns.wait_link(tap);
    sw.ctl_ok(&[
        "setif",
        &port,
        "--address",
        ip,
        "--netmask",
        "255.255.255.0",
    ]);
    sw
}

/// Two namespaces joined by a veth, each with a switch and a TAP; B connects to A.
fn pair(tag: &str, extra: &[&str]) -> (Netns, Netns, Switch, Switch) {
    let (ns_a, ns_b) = linked(tag, A_VETH, B_VETH);
    let a = side(&ns_a, &format!("{tag}-A"), A_VETH, "ewsA0", A_TAP, extra);
    let b = side(&ns_b, &format!("{tag}-B"), B_VETH, "ewsB0", B_TAP, extra);
    b.ctl_ok(&["addport", "client", &format!("ws://{A_VETH}:{WS_PORT}/")]);
    ping(&ns_a, B_TAP);
    (ns_a, ns_b, a, b)
}

fn state(sw: &Switch, port: u32) -> Option<String> {
    sw.port(port).map(|p| p.state)
}

fn wait_state(sw: &Switch, port: u32, want: &str, timeout: Duration) {
    poll(&format!("port {port} {want}"), timeout, || {
        match state(sw, port) {
            Some(s) if s == want => Ok(()),
            other => Err(format!("{other:?}: {:?}", sw.listport())),
        }
    });
}

/// Waits until interface `ifname` no longer exists in `ns`.
fn wait_gone(ns: &Netns, ifname: &str) {
    poll(&format!("{ifname} to go"), Duration::from_secs(10), || {
        if ns.has_link(ifname) {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
}

fn servers(sw: &Switch) -> Vec<u32> {
    sw.listport()
        .iter()
        .filter(|p| p.kind == "server")
        .map(|p| p.port)
        .collect()
}

#[test]
fn frozen_peer_is_dropped_and_client_reconnects() {
    if !require_root() {
        return;
    }
    let (ns_a, _ns_b, a, b) = pair("fz", &[]);
    assert_eq!(servers(&a), vec![2]);

    // A peer that stops answering (but keeps its TCP connection open) is dropped by
    // keepalive, with its stations.
    b.signal(libc::SIGSTOP);
    poll("A to drop the frozen peer", Duration::from_secs(10), || {
        if servers(&a).is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", a.listport()))
        }
    });
    assert!(a.listfdb().iter().all(|e| e.port != 2), "{:?}", a.listfdb());

    // Thawed, B finds its connection gone and reconnects on the same port number.
    b.signal(libc::SIGCONT);
    poll("B to reconnect", Duration::from_secs(15), || {
        let s = servers(&a);
        if s.len() == 1 && state(&b, 2).as_deref() == Some("up") {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    ping(&ns_a, B_TAP);
}

#[test]
fn killed_peer_restarts_and_client_comes_back_on_its_port() {
    if !require_root() {
        return;
    }
    let (ns_a, ns_b, mut a, b) = pair("kl", &[]);
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(5))
        .expect("killed switch exits");
    // The kernel removes the dead switch's TAP shortly after; a restart reuses its name.
    wait_gone(&ns_a, "ewsA0");
    wait_state(&b, 2, "down", Duration::from_secs(10));
    no_ping(&ns_b, A_TAP);

    // The peer comes back (as systemd would restart it); B reconnects by itself.
    let _a2 = side(&ns_a, "kl-A2", A_VETH, "ewsA0", A_TAP, &[]);
    wait_state(&b, 2, "up", Duration::from_secs(20));
    let ports: Vec<_> = b
        .listport()
        .iter()
        .map(|p| (p.port, p.kind.clone()))
        .collect();
    assert_eq!(ports, vec![(1, "tap".into()), (2, "client".into())]);
    ping(&ns_b, A_TAP);
    ping(&ns_a, B_TAP);
}

#[test]
fn cut_link_is_noticed_and_traffic_resumes() {
    if !require_root() {
        return;
    }
    let (ns_a, ns_b, a, b) = pair("ct", &[]);
    ns_a.ip(&["link", "set", "vAB", "down"]);
    // No FIN crosses a cut link: only keepalive can tell.
    wait_state(&b, 2, "down", Duration::from_secs(10));
    poll(
        "A to drop the unreachable peer",
        Duration::from_secs(10),
        || {
            if servers(&a).is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", a.listport()))
            }
        },
    );
    ns_a.ip(&["link", "set", "vAB", "up"]);
    wait_state(&b, 2, "up", Duration::from_secs(30));
    ping(&ns_b, A_TAP);
}

#[test]
fn sigterm_closes_politely_and_leaves_no_tap() {
    if !require_root() {
        return;
    }
    let (ns_a, _ns_b, mut a, b) = pair("tm", &[]);
    a.signal(libc::SIGTERM);
    let status = a
        .wait_exit(Duration::from_secs(10))
        .expect("switch exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!ns_a.has_link("ewsA0"), "the TAP must go with the switch");
    // The peer got a close frame, not a timeout: it notices at once (well within keepalive).
    wait_state(&b, 2, "down", Duration::from_secs(5));
}

#[test]
fn broadcast_storm_does_not_starve_the_others() {
    if !require_root() {
        return;
    }
    let (ns_a, _ns_b, a, _b) = pair("st", &["--storm-pps", "1000"]);
    // A third namespace on a netdev port of A floods broadcasts as fast as it can.
    let ns_c = Netns::new("stC");
    veth(&ns_c, "vc0", None, &ns_a, "vA1", None);
    a.ctl_ok(&["addport", "netdev", "vA1"]);
    let storm_port = a
        .listport()
        .iter()
        .find(|p| p.kind == "netdev")
        .unwrap()
        .port;
    let raw = RawSock::open(&ns_c, "vc0");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let f = build_frame(
                [0xff; 6],
                [0x02, 0xcc, 0, 0, 0, 1],
                None,
                0x88b5,
                &[0u8; 46],
            );
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 5_000_000 {
                raw.send(&f);
                sent += 1;
            }
            sent
        })
    };
    // Meanwhile the others' traffic gets through.
    ping(&ns_a, B_TAP);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let p = a.port(storm_port).unwrap();
    let answer = rpc_in(
        &ns_a,
        a.ctl_addr(),
        "/ctl",
        r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#,
    );
    let entry = answer["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["port"] == storm_port)
        .cloned()
        .unwrap();
    assert!(
        entry["storm_dropped"].as_u64().unwrap() > 0,
        "sent {sent}: {entry}"
    );
    assert!(p.rx < sent, "storm control let everything through: {p:?}");
}

#[test]
fn config_file_brings_the_switch_back_whole() {
    if !require_root() {
        return;
    }
    let (ns_a, ns_b) = linked("cf", A_VETH, B_VETH);
    let _a = side(&ns_a, "cf-A", A_VETH, "ewsA0", A_TAP, &[]);
    // B is declared entirely in a file: its TAP with address and MTU, and its client port.
    let dir = TempDir::new("cfg");
    let conf = dir.write(
        "etherws.toml",
        &format!(
            "[switch]\nkeepalive = 1\nhost = \"{B_VETH}\"\nport = {WS_PORT}\nctlport = {CTL_PORT}\n\n\
             [[port]]\ntype = \"tap\"\ntarget = \"ewsB0\"\naddress = \"{B_TAP}\"\nnetmask = \"255.255.255.0\"\nmtu = 1400\n\n\
             [[port]]\ntype = \"client\"\ntarget = \"ws://{A_VETH}:{WS_PORT}/\"\n"
        ),
    );
    let start = || {
        Switch::builder("cf-B")
            .netns(&ns_b)
            .host(B_VETH)
            .port(WS_PORT)
            .ctl_port(CTL_PORT)
            .args(&["--config", &conf])
            .start()
    };
    let check = |b: &Switch| {
        wait_state(b, 2, "up", Duration::from_secs(15));
        let ports: Vec<_> = b
            .listport()
            .iter()
            .map(|p| (p.port, p.kind.clone()))
            .collect();
        assert_eq!(ports, vec![(1, "tap".into()), (2, "client".into())]);
        let ifs = b.listif();
        assert_eq!(
            (ifs[0].address.as_str(), ifs[0].mtu),
            (B_TAP, 1400),
            "{ifs:?}"
        );
        ping(&ns_b, A_TAP);
    };
    let mut b = start();
    check(&b);
    // A crash, and the restart systemd would do: everything comes back from the file.
    b.signal(libc::SIGKILL);
    b.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(b);
    wait_gone(&ns_b, "ewsB0");
    let b = start();
    check(&b);
}
