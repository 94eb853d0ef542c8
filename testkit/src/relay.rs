//! The relay of docs/dhcp-nat.md ("DHCP and NAT for browser VMs") built with
//! `contrib/etherws-lan-gateway`, and the "browser VMs" that connect to it:
//!
//! * [`lan_gateway`]: runs the contrib script in the gateway's namespace against a switch;
//! * [`start_vm`]: a VM's own switch with a TAP ([`VM_TAP`]) and a client port to the relay;
//! * [`Relay`]: the whole recipe in namespaces of its own — a switch with `--path
//!   /lab=vlan:10,isolated`, the script's TAP [`LAN_TAP`] (VLAN 10, [`GATEWAY`]/24) with
//!   dnsmasq and the nftables table — and [`Relay::vm`], a VM in a namespace of its own
//!   ([`RelayVm`]) that gets its address with `udhcpc` ([`RelayVm::lease`]);
//! * [`router_advertisement`] / [`is_router_advertisement`]: an IPv6 RA a VM could send;
//! * [`ping_stats`], [`rss_mib`]: what the attack tests measure.
//!
//! ```text
//! nsGw: switch S on 0.0.0.0 (`--path /lab=vlan:10,isolated`), TAP lan0 192.0.2.1/24 (VLAN 10),
//!       dnsmasq, the table `inet etherws-lan-lan0`; uplink up0 (a veth to nowhere)
//!   | veth ws{i} 203.0.113.{4i+1}/30 -- ws0 203.0.113.{4i+2}/30, one per VM
//! nsVm{i}: switch with TAP vm0 and a client port to ws://203.0.113.{4i+1}:PORT/lab
//! ```

use std::cell::Cell;

use super::dhcp::*;
use super::*;

/// The gateway's TAP.
pub const LAN_TAP: &str = "lan0";
/// Every VM's TAP.
pub const VM_TAP: &str = "vm0";
/// The gateway's address on [`LAN_TAP`].
pub const GATEWAY: &str = "192.0.2.1";

/// Runs `contrib/etherws-lan-gateway ARGS` in `gw`, on the switch `s` and with its state in
/// `state`; returns what it printed.
pub fn lan_gateway(gw: &Netns, s: &Switch, state: &TempDir, args: &[&str]) -> String {
    let script = contrib("etherws-lan-gateway");
    let etherws = format!("ETHERWS={}", bin().to_string_lossy());
    let ctlurl = s.ctl_url();
    let state_dir = state.file("run");
    let mut argv = vec![
        "env",
        &etherws,
        "sh",
        script.to_str().unwrap(),
        "--ctlurl",
        &ctlurl,
        "--state-dir",
        &state_dir,
    ];
    argv.extend_from_slice(args);
    let out = gw.exec(&argv);
    assert!(
        out.status.success(),
        "etherws-lan-gateway {args:?} failed\n{}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// IPv6 on in `ns`, as on a real host (the kit turns it off): interfaces made afterwards (the
/// script's TAP) have the kernel's defaults.
pub fn enable_ipv6(ns: &Netns) {
    ns.exec_ok(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
    ]);
}

/// A "browser VM" in `ns`: a switch of its own (`label`) with TAP [`VM_TAP`] (up, no address)
/// and a client port to `url`, a path of `relay`. Returns the switch and the server port the
/// connection got on `relay`.
pub fn start_vm(ns: &Netns, label: &str, relay: &Switch, url: &str) -> (Switch, u32) {
    let before: Vec<u32> = relay.servers().iter().map(|p| p.port).collect();
    let c = Switch::builder(label).netns(ns).start();
    c.add_port("tap", VM_TAP, &[]);
    ns.wait_link(VM_TAP);
    ns.ip(&["link", "set", VM_TAP, "up"]);
    c.add_port("client", url, &[]);
    let port = poll(
        &format!("{label}'s server port on the relay"),
        Duration::from_secs(10),
        || {
            let now = relay.servers();
            now.iter()
                .map(|p| p.port)
                .find(|p| !before.contains(p))
                .ok_or_else(|| format!("{now:?}"))
        },
    );
    (c, port)
}

/// The recipe of docs/dhcp-nat.md in namespaces of its own (see the module's picture). Fields
/// drop in declaration order: the switch before its namespace.
pub struct Relay {
    pub sw: Switch,
    pub gw: Netns,
    /// The script's state directory (`run/leases`: dnsmasq's lease file).
    pub state: TempDir,
    /// The gateway's TAP port on the switch.
    pub lan_port: u32,
    tag: String,
    vms: Cell<u8>,
}

impl Relay {
    /// The switch with `--path /lab=vlan:10,isolated` and `extra` arguments, IPv6 on in its
    /// namespace, and the script's gateway (egress closed) handing out `range`
    /// (`FIRST,LAST` in 192.0.2.0/24).
    pub fn start(tag: &str, extra: &[&str], range: &str) -> Relay {
        let gw = Netns::new(&format!("{tag}G"));
        gw.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        gw.ip(&["link", "set", "up0", "up"]);
        let mut args = vec!["--path", "/lab=vlan:10,isolated"];
        args.extend_from_slice(extra);
        let sw = Switch::builder(&format!("{tag}-relay"))
            .netns(&gw)
            .host("0.0.0.0")
            .args(&args)
            .start();
        enable_ipv6(&gw);
        let state = TempDir::new("relay");
        let address = format!("{GATEWAY}/24");
        lan_gateway(
            &gw,
            &sw,
            &state,
            &[
                "--tap",
                LAN_TAP,
                "--vlan",
                "10",
                "--address",
                &address,
                "--uplink",
                "up0",
                "--range",
                range,
            ],
        );
        let lan_port = sw
            .listport()
            .into_iter()
            .find(|p| p.kind == "tap" && p.target == LAN_TAP)
            .unwrap_or_else(|| panic!("no TAP port {LAN_TAP} on the relay"))
            .port;
        Relay {
            sw,
            gw,
            state,
            lan_port,
            tag: tag.to_string(),
            vms: Cell::new(0),
        }
    }

    /// A new VM `name` (its namespace `{tag}{name}`): a veth of its own to the gateway's
    /// namespace, and [`start_vm`] on it. No address yet ([`RelayVm::lease`]).
    pub fn vm(&self, name: &str) -> RelayVm {
        let i = self.vms.get();
        assert!(i < 63, "one /30 of 203.0.113.0/24 a VM");
        self.vms.set(i + 1);
        let ns = Netns::new(&format!("{}{name}", self.tag));
        let (near, far) = (4 * u16::from(i) + 1, 4 * u16::from(i) + 2);
        veth(
            &self.gw,
            &format!("ws{i}"),
            Some(&format!("203.0.113.{near}/30")),
            &ns,
            "ws0",
            Some(&format!("203.0.113.{far}/30")),
        );
        let url = format!("ws://203.0.113.{near}:{}/lab", self.sw.ws_port);
        let (sw, port) = start_vm(&ns, &format!("{}-{name}", self.tag), &self.sw, &url);
        RelayVm {
            sw,
            ns,
            port,
            dir: TempDir::new(name),
        }
    }

    /// The gateway's MAC (of [`LAN_TAP`]).
    pub fn gw_mac(&self) -> [u8; 6] {
        parse_mac(&self.gw.mac(LAN_TAP))
    }

    /// Port `port`'s counter `name` in `listPort`; panics if the switch has no such field.
    pub fn counter(&self, port: u32, name: &str) -> u64 {
        let row = self.sw.port_status(port);
        row[name]
            .as_u64()
            .unwrap_or_else(|| panic!("listPort has no counter {name:?} for port {port}: {row}"))
    }

    /// What dnsmasq's lease file holds.
    pub fn leases(&self) -> String {
        fs::read_to_string(self.state.file("run/leases")).unwrap_or_default()
    }

    /// Asserts that the relay's switch resides in less than `mib` MiB.
    pub fn assert_rss_below(&self, mib: u64) {
        let rss = rss_mib(self.sw.pid());
        assert!(
            rss < mib,
            "the relay's switch resides in {rss} MiB (bound {mib})"
        );
    }
}

/// A VM of a [`Relay`]: its switch (TAP [`VM_TAP`]), its namespace, its server port on the
/// relay.
pub struct RelayVm {
    pub sw: Switch,
    pub ns: Netns,
    /// Its connection's port on the relay.
    pub port: u32,
    dir: TempDir,
}

impl RelayVm {
    /// `udhcpc` on the VM's TAP: the lease, applied (address and default route).
    pub fn lease(&self) -> Lease {
        udhcpc(&self.ns, VM_TAP, &self.dir, 10)
    }

    /// The TAP's MAC.
    pub fn mac(&self) -> [u8; 6] {
        parse_mac(&self.ns.mac(VM_TAP))
    }

    /// A raw socket on the TAP: frames sent on it go to the relay as the VM's own.
    pub fn raw(&self) -> RawSock {
        RawSock::open(&self.ns, VM_TAP)
    }
}

/// A router advertisement, as a VM could send one: from `mac` and the link-local fe80::1 to all
/// nodes (ff02::1), hop limit 255, a default router for 1800 s and a prefix information option
/// (2001:db8:66::/64, on-link and autonomous: SLAAC).
pub fn router_advertisement(mac: [u8; 6]) -> Vec<u8> {
    let src: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut icmp = vec![134, 0, 0, 0, 64, 0];
    icmp.extend_from_slice(&1800u16.to_be_bytes()); // router lifetime
    icmp.extend_from_slice(&[0; 8]); // reachable time, retransmission timer
    icmp.extend_from_slice(&[1, 1]); // source link-layer address
    icmp.extend_from_slice(&mac);
    icmp.extend_from_slice(&[3, 4, 64, 0xc0]); // prefix information: /64, L and A
    icmp.extend_from_slice(&86400u32.to_be_bytes()); // valid lifetime
    icmp.extend_from_slice(&14400u32.to_be_bytes()); // preferred lifetime
    icmp.extend_from_slice(&[0; 4]);
    icmp.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    // The checksum, over the pseudo-header and the message.
    let len = icmp.len() as u32;
    let sum = inet_checksum(&[&src, &dst, &len.to_be_bytes(), &[0, 0, 0, 58], &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(len as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 255]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&icmp);
    build_frame([0x33, 0x33, 0, 0, 0, 1], mac, None, 0x86dd, &ip)
}

/// Whether `frame` is an IPv6 router advertisement (ICMPv6 type 134).
pub fn is_router_advertisement(frame: &[u8]) -> bool {
    frame.len() > 54 && frame[12..14] == [0x86, 0xdd] && frame[20] == 58 && frame[54] == 134
}

/// Asserts that no `who`'s router advertisement gave the gateway's host (`gw`) a default
/// route or a global address on [`LAN_TAP`].
pub fn assert_no_route_from_ra(gw: &Netns, who: &str) {
    let routes = gw.ip(&["-6", "route", "show", "default"]);
    let addrs = gw.ip(&[
        "-6", "-o", "addr", "show", "dev", LAN_TAP, "scope", "global",
    ]);
    assert!(
        routes.trim().is_empty() && addrs.trim().is_empty(),
        "{who}'s router advertisement configured the gateway's host:\n{routes}{addrs}"
    );
}

/// `ping -c COUNT -i INTERVAL -W 1 ADDR` from `ns`, started now (the caller goes on, e.g. to
/// attack meanwhile); [`PingRun::stats`] waits for it.
pub fn ping_stats(ns: &Netns, addr: &str, count: u32, interval: &str) -> PingRun {
    let count = count.to_string();
    let child = ns
        .command(&[
            "ping", "-n", "-q", "-c", &count, "-i", interval, "-W", "1", addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ping in {}: {e}", ns.name()));
    PingRun {
        child,
        what: format!("ping {addr} from {}", ns.name()),
    }
}

/// A ping run of [`ping_stats`].
pub struct PingRun {
    child: Child,
    what: String,
}

impl PingRun {
    /// `ping ADDR from NAMESPACE`, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Waits for the run to end: (echo requests sent, replies received).
    pub fn stats(self) -> (u32, u32) {
        let out = self.child.wait_with_output().expect("wait for ping");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or_else(|| panic!("{}: no summary\n{}", self.what, show(&out)));
        let num = |key: &str| -> u32 {
            line.split(',')
                .find(|p| p.contains(key))
                .and_then(|p| p.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (num("transmitted"), num("received"))
    }
}

/// The resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        / 1024
}
