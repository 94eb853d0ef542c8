//! Many networks on one switch: a hub switch that WebSocket "spokes" (other switches, each in
//! a namespace of its own with a TAP carrying an address) connect to, on a path of their choice;
//! a switch with plain hosts on netdev ports; and the checks the policy tests share (pings run
//! side by side, frames captured for a while, `listport --verbose` cells).
//!
//! ```text
//! nsHub: hub switch, WebSocket on 0.0.0.0:8080, control on 127.0.0.1:7867
//!   | veth sp{i} 198.51.100.{4i+1}/30  <->  uplink 198.51.100.{4i+2}/30 in the spoke's namespace
//! nsSpoke{i}: switch, TAP ews0 carrying the spoke's address, client port to
//!             ws://198.51.100.{4i+1}:8080PATH
//! ```

use std::cell::{Cell, RefCell};

use super::*;

/// A hub switch (`etherws sw --host 0.0.0.0 --port 8080 --ctlport 7867 ARGS...` in a namespace
/// of its own) that [`Spoke`]s connect to over veth links. Fields drop in declaration order:
/// the switch goes before its namespace.
pub struct Hub {
    pub sw: Switch,
    pub ns: Netns,
    tag: String,
    spokes: Cell<u32>,
}

/// A site connected to a [`Hub`]: a switch in a namespace of its own, with a TAP `ews0`
/// carrying `ip`/24 (port 1) and a client port to the hub (port 2); `server_port` is the port
/// the connection made on the hub.
pub struct Spoke {
    pub sw: Switch,
    pub ns: Netns,
    pub ip: String,
    pub server_port: u32,
    /// The hub's address on the spoke's veth.
    pub hub_addr: String,
}

impl Spoke {
    /// The spoke's TAP.
    pub const TAP: &'static str = "ews0";

    /// An AF_PACKET socket on the spoke's TAP.
    pub fn raw(&self) -> RawSock {
        RawSock::open(&self.ns, Self::TAP)
    }

    /// The hub's WebSocket URL for `path`, as the spoke reaches it.
    pub fn hub_url(&self, path: &str) -> String {
        format!("ws://{}:{}{path}", self.hub_addr, Hub::WS_PORT)
    }

    /// The MAC address of the spoke's TAP.
    pub fn mac(&self) -> [u8; 6] {
        parse_mac(&self.ns.mac(Self::TAP))
    }
}

impl Hub {
    pub const WS_PORT: u16 = 8080;
    pub const CTL_PORT: u16 = 7867;

    /// The hub switch in namespace `{tag}H`, with more `sw` arguments (e.g. `--path`).
    pub fn new(tag: &str, args: &[&str]) -> Hub {
        Self::with(tag, |b| b.args(args))
    }

    /// [`Hub::new`] with any [`SwitchBuilder`] settings.
    pub fn with(tag: &str, f: impl FnOnce(SwitchBuilder) -> SwitchBuilder) -> Hub {
        let ns = Netns::new(&format!("{tag}H"));
        let sw = f(Switch::builder(&format!("{tag}-hub"))
            .netns(&ns)
            .host("0.0.0.0")
            .port(Self::WS_PORT)
            .ctl_port(Self::CTL_PORT))
        .start();
        Hub {
            sw,
            ns,
            tag: tag.to_string(),
            spokes: Cell::new(0),
        }
    }

    /// The server port numbers on the hub, from `listPort`.
    pub fn server_ports(&self) -> Vec<u32> {
        let ports = self.sw.rpc("listPort", serde_json::json!({}));
        ports["entries"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|p| p["type"] == "server")
                    .filter_map(|p| p["port"].as_u64().map(|n| n as u32))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A new spoke `{tag}{name}` whose TAP carries `ip`/24 and whose switch connects to the hub
    /// on `path` (e.g. `/a`) with more `addport client` options (e.g. `--user U --passwd P`);
    /// returns once the hub has the new server port.
    pub fn spoke(&self, name: &str, ip: &str, path: &str, opts: &[&str]) -> Spoke {
        let i = self.spokes.get() + 1;
        assert!(i < 64, "at most 63 spokes per hub");
        self.spokes.set(i);
        let hub_addr = format!("198.51.100.{}", 4 * i + 1);
        let ns = Netns::new(&format!("{}{name}", self.tag));
        veth(
            &self.ns,
            &format!("sp{i}"),
            Some(&format!("{hub_addr}/30")),
            &ns,
            "uplink",
            Some(&format!("198.51.100.{}/30", 4 * i + 2)),
        );
        let sw = Switch::builder(&format!("{}-{name}", self.tag))
            .netns(&ns)
            .start();
        let tap = sw.add_tap(&ns, Spoke::TAP, ip);
        assert_eq!(tap.port, 1, "spoke {name}: its TAP is port 1");
        let before = self.server_ports();
        let url = format!("ws://{hub_addr}:{}{path}", Self::WS_PORT);
        let client = sw.add_port("client", &url, opts);
        assert_eq!(client.port, 2, "spoke {name}: its client port is port 2");
        let server_port = poll(
            &format!("the hub's server port for spoke {name} ({url})"),
            Duration::from_secs(10),
            || {
                let now = self.server_ports();
                match now.iter().copied().filter(|p| !before.contains(p)).max() {
                    Some(p) => Ok(p),
                    None => Err(format!("server ports {now:?}")),
                }
            },
        );
        Spoke {
            sw,
            ns,
            ip: ip.to_string(),
            server_port,
            hub_addr,
        }
    }
}

/// Plain hosts on netdev ports of one switch:
///
/// ```text
/// ns {tag}S: switch (control on 127.0.0.1:7867), netdev port i on veth h{i}
///   | veth h{i} <-> eth0 192.0.2.{i}/24 in host namespace {tag}{i}
/// ```
///
/// Fields drop in declaration order: the switch before the namespaces.
pub struct HostLan {
    pub sw: Switch,
    pub hosts: Vec<Netns>,
    pub sw_ns: Netns,
}

impl HostLan {
    pub const CTL_PORT: u16 = 7867;

    /// `n` hosts (1..=n), host i on netdev port i with address 192.0.2.{i}/24; `args`: more
    /// `sw` arguments.
    pub fn new(tag: &str, n: usize, args: &[&str]) -> HostLan {
        let sw_ns = Netns::new(&format!("{tag}S"));
        let hosts: Vec<Netns> = (1..=n)
            .map(|i| {
                let h = Netns::new(&format!("{tag}{i}"));
                veth(
                    &h,
                    "eth0",
                    Some(&format!("192.0.2.{i}/24")),
                    &sw_ns,
                    &format!("h{i}"),
                    None,
                );
                h
            })
            .collect();
        let sw = Switch::builder(tag)
            .netns(&sw_ns)
            .ctl_port(Self::CTL_PORT)
            .args(args)
            .start();
        for i in 1..=n {
            let row = sw.add_port("netdev", &format!("h{i}"), &[]);
            assert_eq!(row.port, i as u32, "netdev port numbers");
        }
        HostLan { sw, hosts, sw_ns }
    }

    /// Host i (1-based).
    pub fn host(&self, i: usize) -> &Netns {
        &self.hosts[i - 1]
    }

    /// Host i's address.
    pub fn ip(i: usize) -> String {
        format!("192.0.2.{i}")
    }
}

/// Pings, all at once (each as [`ping`]: until it succeeds, up to 10 s).
pub fn pings(pairs: &[(&Netns, &str)]) {
    thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(ns, addr)| s.spawn(move || ping(ns, addr)))
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

/// Pings that must all fail, tried all at once (each as [`no_ping`]).
pub fn no_pings(pairs: &[(&Netns, &str)]) {
    thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(ns, addr)| s.spawn(move || no_ping(ns, addr)))
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

/// Every frame `sock` receives (outgoing ones aside) for `window`.
pub fn capture(sock: &RawSock, window: Duration) -> Vec<RxFrame> {
    let got = RefCell::new(Vec::new());
    sock.recv_matching(window, |f| {
        got.borrow_mut().push(f.clone());
        false
    });
    got.into_inner()
}

/// A payload no other test sends: `etherws-nets-PID-N-what`.
pub fn marker(what: &str) -> Vec<u8> {
    format!("etherws-nets-{}-{}-{what}", std::process::id(), next_id()).into_bytes()
}

/// A frame carrying `marker` arrives on `sock` within 5 s; returns it.
pub fn expect_marker(sock: &RawSock, marker: &[u8], what: &str) -> RxFrame {
    sock.recv_matching(Duration::from_secs(5), |f| contains(&f.data, marker))
        .unwrap_or_else(|| panic!("{what}: the frame never arrived"))
}

/// No frame carrying `marker` arrives on `sock` within `window`.
pub fn expect_no_marker(sock: &RawSock, marker: &[u8], window: Duration, what: &str) {
    if let Some(f) = sock.recv_matching(window, |f| contains(&f.data, marker)) {
        panic!(
            "{what}: the frame arrived (tag {:?}): {:02x?}",
            f.tci(),
            &f.data[..f.data.len().min(40)]
        );
    }
}

/// One row of a [`verbose_ports`] table: (column name, cell) pairs, in column order.
pub type Cells = Vec<(String, String)>;

/// `ctl listport --verbose` (or another spelling of it) parsed: the header, and per port
/// number the cells by column name.
pub fn verbose_ports(out: &str) -> (Vec<String>, std::collections::BTreeMap<u32, Cells>) {
    let head = header(out);
    let rows = table_cells(out)
        .into_iter()
        .filter_map(|r| {
            let n = r.first()?.parse().ok()?;
            Some((n, head.iter().cloned().zip(r).collect()))
        })
        .collect();
    (head, rows)
}

/// The cell of column `col` in a [`verbose_ports`] row.
pub fn cell<'a>(row: &'a [(String, String)], col: &str) -> Option<&'a str> {
    row.iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(col))
        .map(|(_, v)| v.as_str())
}
