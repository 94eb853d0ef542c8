//! TCP under the WebSocket connection between two switches: the congestion control algorithm
//! `--congestion` names is the one both ends use (`listPort`'s `congestion`, and `ss`), and one
//! the kernel refuses leaves the system's default, with one warning, and the connection up.
//! (`--notsent-lowat` is not visible from outside the process: the unit tests of
//! `port::websocket::tcp` read it back from the sockets they tune.)
//!
//! ```text
//! nsA: switch A, WebSocket on 198.51.100.1:8080   [TAP ewsA0 192.0.2.1/24]
//!   | veth; B is A's client
//! nsB: switch B                                    [TAP ewsB0 192.0.2.2/24]
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use etherws_testkit::*;

/// What `ns` may pick (`net.ipv4.tcp_allowed_congestion_control`) and its default.
fn algorithms(ns: &Netns) -> (Vec<String>, String) {
    let read = |f: &str| ns.exec_ok(&["cat", &format!("/proc/sys/net/ipv4/{f}")]);
    let allowed = read("tcp_allowed_congestion_control")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (allowed, read("tcp_congestion_control").trim().to_string())
}

/// An allowed algorithm other than the default (cubic or reno if they are), so that seeing it
/// proves the option took; the default itself if nothing else is allowed.
fn pick(allowed: &[String], default: &str) -> String {
    let others: Vec<&String> = allowed.iter().filter(|a| *a != default).collect();
    ["cubic", "reno"]
        .iter()
        .find_map(|want| others.iter().find(|a| a.as_str() == *want))
        .or(others.first())
        .map_or_else(
            || {
                loud(&format!(
                    "only {default} is allowed here: --congestion is tested with the default"
                ));
                default.to_string()
            },
            |a| a.to_string(),
        )
}

/// The `congestion` field of `site`'s port `port`, once it has one.
fn congestion(site: &Site, port: u32) -> String {
    poll(
        &format!("port {port}'s congestion"),
        Duration::from_secs(5),
        || {
            let p = site.sw.port_status(port);
            p["congestion"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| p.to_string())
        },
    )
}

/// What `ss -tin` says of the established connections to or from port 8080 in `ns`.
fn ss(ns: &Netns) -> String {
    let filter = format!("( sport = :{0} or dport = :{0} )", Sites::WS_PORT);
    ns.exec_ok(&["ss", "-tinH", "state", "established", &filter])
}

#[test]
fn both_ends_use_the_named_algorithm() {
    if !needs(&["ss"]) {
        return;
    }
    let (ns_a, ns_b) = linked("ccn", Sites::A_VETH, Sites::B_VETH);
    let (allowed, default) = algorithms(&ns_a);
    let cc = pick(&allowed, &default);
    eprintln!("allowed: {allowed:?}, default {default}: testing --congestion {cc}");
    let s = Sites::builder("ccn")
        .both(|s| s.args(&["--congestion", &cc]))
        .connect(&[])
        .start_in(ns_a, ns_b);
    assert_eq!(congestion(&s.a, 1), cc, "A's server port");
    assert_eq!(congestion(&s.b, 1), cc, "B's client port");
    // The kernel says so too, of both ends.
    for (site, what) in [(&s.a, "A"), (&s.b, "B")] {
        let out = ss(&site.ns);
        assert!(
            out.split_whitespace().any(|w| w == cc),
            "{what}'s connection does not use {cc}:\n{out}"
        );
    }
    for site in [&s.a, &s.b] {
        assert!(!site.sw.log().contains("refused"), "{}", site.sw.log());
    }
    // `listport -l` shows it in its own column.
    let table = s.a.sw.ctl_ok(&["listport", "-l"]);
    let head: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let at = head.iter().position(|h| *h == "Congestion");
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"));
    let cell = at
        .zip(row)
        .and_then(|(at, row)| row.split_whitespace().nth(at));
    assert_eq!(
        cell,
        Some(cc.as_str()),
        "listport -l:
{table}"
    );
}

#[test]
fn an_algorithm_the_kernel_refuses_leaves_the_default() {
    if !needs(&["ping"]) {
        return;
    }
    let (ns_a, ns_b) = linked("ccx", Sites::A_VETH, Sites::B_VETH);
    let (_, default) = algorithms(&ns_a);
    let s = Sites::builder("ccx")
        .both(|s| s.args(&["--congestion", "nonexistent_cc"]).tap())
        .connect(&[])
        .start_in(ns_a, ns_b);
    // The connection is up and carries frames, with the system's default.
    ping(&s.b.ns, Sites::A_TAP);
    assert_eq!(congestion(&s.a, 2), default, "A's server port");
    assert_eq!(congestion(&s.b, 2), default, "B's client port");
    // More connections to A: the warning is not repeated.
    let addr: SocketAddr = format!("{}:{}", Sites::A_VETH, Sites::WS_PORT)
        .parse()
        .unwrap();
    let more: Vec<_> = (0..3)
        .map(|_| s.b.ns.tcp_connect(addr).expect("connect to A"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(more);
    let warning = "TCP congestion control nonexistent_cc refused: the kernel has no such \
                   algorithm";
    for (site, what) in [(&s.a, "A"), (&s.b, "B")] {
        let log = site.sw.log();
        assert_eq!(log.matches(warning).count(), 1, "{what}'s log:\n{log}");
        assert!(
            log.contains("falling back to the system default"),
            "{what}'s log:\n{log}"
        );
    }
}
