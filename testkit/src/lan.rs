//! An attacked switch and the honest hosts it must keep serving.

use super::*;

/// The network every hardening test attacks: a switch in namespace `{tag}S` (WebSocket on
/// 127.0.0.1:8080, control on 127.0.0.1:7867) with two netdev ports `h1` and `h2`, veths to
/// the honest hosts `{tag}1` (192.0.2.1/24) and `{tag}2` (192.0.2.2/24).
pub struct HonestLan {
    pub sw_ns: Netns,
    pub h1: Netns,
    pub h2: Netns,
    pub sw: Switch,
}

impl HonestLan {
    pub const WS_PORT: u16 = 8080;
    pub const CTL_PORT: u16 = 7867;
    pub const H1: &'static str = "192.0.2.1";
    pub const H2: &'static str = "192.0.2.2";

    /// Builds the network and starts the switch with `extra` `sw` arguments; the honest hosts
    /// can ping each other when this returns.
    pub fn new(tag: &str, extra: &[&str]) -> HonestLan {
        Self::with_ctl_opts(tag, extra, &[])
    }

    /// [`HonestLan::new`] with global ctl options (e.g. `--ctluser U --ctlpasswd P` for a
    /// switch with `--ctlhtpasswd`).
    pub fn with_ctl_opts(tag: &str, extra: &[&str], ctl_opts: &[&str]) -> HonestLan {
        let sw_ns = Netns::new(&format!("{tag}S"));
        let h1 = Netns::new(&format!("{tag}1"));
        let h2 = Netns::new(&format!("{tag}2"));
        veth(&h1, "eth0", Some("192.0.2.1/24"), &sw_ns, "h1", None);
        veth(&h2, "eth0", Some("192.0.2.2/24"), &sw_ns, "h2", None);
        let sw = Switch::builder(tag)
            .netns(&sw_ns)
            .port(Self::WS_PORT)
            .ctl_port(Self::CTL_PORT)
            .args(extra)
            .ctl_opts(ctl_opts)
            .start();
        sw.ctl_ok(&["addport", "netdev", "h1"]);
        sw.ctl_ok(&["addport", "netdev", "h2"]);
        let lan = HonestLan { sw_ns, h1, h2, sw };
        ping(&lan.h1, Self::H2);
        lan
    }

    /// The control API's address inside the switch's namespace.
    pub fn ctl_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], Self::CTL_PORT))
    }

    /// The WebSocket listener's address inside the switch's namespace.
    pub fn ws_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], Self::WS_PORT))
    }

    /// A raw HTTP exchange with `addr` from source address `src` inside the switch's namespace.
    pub fn http(&self, src: Option<&str>, addr: SocketAddr, request: &str) -> HttpResponse {
        let src = src.map(|s| s.parse().expect("source address"));
        let s = self
            .sw_ns
            .tcp_connect_from(src, addr)
            .expect("connect inside the switch namespace");
        http_exchange(s, request, request.lines().next().unwrap_or(""))
    }

    /// The WebSocket URL of the switch, as seen from its own namespace.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", Self::WS_PORT)
    }

    /// What every hardening test ends with: the switch answers a plain `listPort` (through
    /// `ctl`, with the switch's ctl options) within a second, and the honest hosts still reach
    /// each other through it.
    pub fn still_serves(&self) {
        let t0 = Instant::now();
        let out = self.sw.ctl(&["listport"]);
        let took = t0.elapsed();
        assert!(
            lists_ports(&out),
            "listport after the attack\n{}",
            show(&out)
        );
        assert!(
            took < Duration::from_secs(1),
            "listport took {took:?} after the attack"
        );
        ping(&self.h1, Self::H2);
    }
}
