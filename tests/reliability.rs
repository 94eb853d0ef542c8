//! Faults a deployed switch meets: peers that die or freeze, links that are cut, restarts,
//! shutdown, and broadcast storms. Each test builds its own network in namespaces (root).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etherws_testkit::*;

const A_TAP: &str = Sites::A_TAP;
const B_TAP: &str = Sites::B_TAP;
/// Short keepalive so a dead peer is noticed within seconds.
const KEEPALIVE: &str = "1";

/// Two sites, each switch with a short keepalive, `extra` arguments and a TAP; B connects to
/// A, and A reaches B's TAP.
fn pair(tag: &str, extra: &[&str]) -> Sites {
    let s = Sites::builder(tag)
        .both(|s| s.args(&["--keepalive", KEEPALIVE]).args(extra).tap())
        .connect(&[])
        .start();
    ping(&s.a.ns, B_TAP);
    s
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

/// B's ports are its TAP, port 1, and its client port, 2 (whatever happened meanwhile).
fn assert_tap_and_client(b: &Switch) {
    let ports: Vec<_> = b
        .listport()
        .iter()
        .map(|p| (p.port, p.kind.clone()))
        .collect();
    assert_eq!(ports, vec![(1, "tap".into()), (2, "client".into())]);
}

/// The numbers of the server ports.
fn servers(sw: &Switch) -> Vec<u32> {
    sw.servers().iter().map(|p| p.port).collect()
}

#[test]
fn frozen_peer_is_dropped_and_client_reconnects() {
    if !require_root() {
        return;
    }
    let s = pair("fz", &[]);
    let (a, b) = (&s.a.sw, &s.b.sw);
    assert_eq!(servers(a), vec![2]);

    // A peer that stops answering (but keeps its TCP connection open) is dropped by
    // keepalive, with its stations.
    b.signal(libc::SIGSTOP);
    a.wait_servers(0);
    assert!(a.listfdb().iter().all(|e| e.port != 2), "{:?}", a.listfdb());

    // Thawed, B finds its connection gone and reconnects on the same port number.
    b.signal(libc::SIGCONT);
    poll("B to reconnect", Duration::from_secs(15), || {
        let servers = servers(a);
        if servers.len() == 1 && state(b, 2).as_deref() == Some("up") {
            Ok(())
        } else {
            Err(format!("{servers:?}"))
        }
    });
    ping(&s.a.ns, B_TAP);
}

#[test]
fn killed_peer_restarts_and_client_comes_back_on_its_port() {
    if !require_root() {
        return;
    }
    let mut s = pair("kl", &[]);
    s.a.sw.signal(libc::SIGKILL);
    s.a.sw
        .wait_exit(Duration::from_secs(5))
        .expect("killed switch exits");
    // The kernel removes the dead switch's TAP shortly after; a restart reuses its name.
    wait_gone(&s.a.ns, "ewsA0");
    wait_state(&s.b.sw, 2, "down", Duration::from_secs(10));
    no_ping(&s.b.ns, A_TAP);

    // The peer comes back (as systemd would restart it); B reconnects by itself.
    s.a.restart("kl-A2");
    wait_state(&s.b.sw, 2, "up", Duration::from_secs(20));
    assert_tap_and_client(&s.b.sw);
    ping(&s.b.ns, A_TAP);
    ping(&s.a.ns, B_TAP);
}

#[test]
fn cut_link_is_noticed_and_traffic_resumes() {
    if !require_root() {
        return;
    }
    let s = pair("ct", &[]);
    s.a.ns.ip(&["link", "set", "vAB", "down"]);
    // No FIN crosses a cut link: only keepalive can tell.
    wait_state(&s.b.sw, 2, "down", Duration::from_secs(10));
    // ...and A drops the unreachable peer.
    s.a.sw.wait_servers(0);
    s.a.ns.ip(&["link", "set", "vAB", "up"]);
    wait_state(&s.b.sw, 2, "up", Duration::from_secs(30));
    ping(&s.b.ns, A_TAP);
}

#[test]
fn sigterm_closes_politely_and_leaves_no_tap() {
    if !require_root() {
        return;
    }
    let mut s = pair("tm", &[]);
    s.a.sw.signal(libc::SIGTERM);
    let status =
        s.a.sw
            .wait_exit(Duration::from_secs(10))
            .expect("switch exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!s.a.ns.has_link("ewsA0"), "the TAP must go with the switch");
    // The peer got a close frame, not a timeout: it notices at once (well within keepalive).
    wait_state(&s.b.sw, 2, "down", Duration::from_secs(5));
}

#[test]
fn broadcast_storm_does_not_starve_the_others() {
    if !require_root() {
        return;
    }
    let s = pair("st", &["--storm-pps", "1000"]);
    let (ns_a, a) = (&s.a.ns, &s.a.sw);
    // A third namespace on a netdev port of A floods broadcasts as fast as it can.
    let ns_c = Netns::new("stC");
    veth(&ns_c, "vc0", None, ns_a, "vA1", None);
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
    ping(ns_a, B_TAP);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let p = a.port(storm_port).unwrap();
    let answer = rpc_in(
        ns_a,
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
    // B is declared entirely in a file: its TAP with address and MTU, and its client port.
    let dir = TempDir::new("cfg");
    let (a_veth, b_veth) = (Sites::A_VETH, Sites::B_VETH);
    let (ws_port, ctl_port) = (Sites::WS_PORT, Sites::CTL_PORT);
    let conf = dir.write(
        "etherws.toml",
        &format!(
            "[switch]\nkeepalive = 1\nhost = \"{b_veth}\"\nport = {ws_port}\nctlport = {ctl_port}\n\n\
             [[port]]\ntype = \"tap\"\ntarget = \"ewsB0\"\naddress = \"{B_TAP}\"\nnetmask = \"255.255.255.0\"\nmtu = 1400\n\n\
             [[port]]\ntype = \"client\"\ntarget = \"ws://{a_veth}:{ws_port}/\"\n"
        ),
    );
    // B's switch is started with the same host and ports on the command line, and the file.
    let mut s = Sites::builder("cf")
        .a(|a| a.args(&["--keepalive", KEEPALIVE]).tap())
        .b(|b| b.args(&["--config", &conf]))
        .start();
    let check = |s: &Sites| {
        let b = &s.b.sw;
        wait_state(b, 2, "up", Duration::from_secs(15));
        assert_tap_and_client(b);
        let ifs = b.listif();
        assert_eq!(
            (ifs[0].address.as_str(), ifs[0].mtu),
            (B_TAP, 1400),
            "{ifs:?}"
        );
        ping(&s.b.ns, A_TAP);
    };
    check(&s);
    // A crash, and the restart systemd would do: everything comes back from the file.
    s.b.sw.signal(libc::SIGKILL);
    s.b.sw.wait_exit(Duration::from_secs(5)).expect("killed");
    wait_gone(&s.b.ns, "ewsB0");
    s.b.restart("cf-B");
    check(&s);
}
