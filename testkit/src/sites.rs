//! Two sites joined by a veth, each with its own switch: the topology of the two-switch tests.
//!
//! ```text
//! nsA: switch A on 198.51.100.1:8080 (ctl 127.0.0.1:7867), [TAP ewsA0 192.0.2.1/24]
//!   | veth: vAB 198.51.100.1/24 in A, vBA 198.51.100.2/24 in B
//!   | [B's client port to ws://198.51.100.1:8080/, a server port on A]
//! nsB: switch B on 198.51.100.2:8080 (ctl 127.0.0.1:7867), [TAP ewsB0 192.0.2.2/24]
//! ```
//!
//! ```ignore
//! let s = Sites::builder("tp")
//!     .both(|s| s.args(&["--keepalive", "1"]).tap())
//!     .connect(&[])
//!     .start();
//! ping(&s.a.ns, Sites::B_TAP);
//! ```

use super::*;

/// A port a site's switch gets as soon as it runs.
#[derive(Clone, Debug)]
enum SitePort {
    /// `addport tap NAME`, then `setif` with `IP`/24 ([`Switch::add_tap`]).
    Tap { name: String, ip: String },
    /// `addport netdev IFNAME OPTS...`.
    Netdev { ifname: String, opts: Vec<String> },
}

/// How one site's switch starts: its `sw` settings, then its ports, in order.
#[derive(Clone)]
pub struct SiteBuilder {
    switch: SwitchBuilder,
    /// The site's TAP: name and address.
    tap: (&'static str, &'static str),
    ports: Vec<SitePort>,
}

impl SiteBuilder {
    /// More `sw` settings: anything [`SwitchBuilder`] offers, e.g. `|b| b.host("0.0.0.0")`.
    /// Already set: the label `{tag}-A`/`{tag}-B`, `--host` the site's veth address, `--port
    /// 8080`, `--ctlport 7867`.
    pub fn switch(mut self, f: impl FnOnce(SwitchBuilder) -> SwitchBuilder) -> Self {
        self.switch = f(self.switch);
        self
    }

    /// More `sw` arguments (`switch(|b| b.args(args))`).
    pub fn args(self, args: &[&str]) -> Self {
        self.switch(|b| b.args(args))
    }

    /// A TAP port: `ewsA0` carrying 192.0.2.1/24 on A, `ewsB0` carrying 192.0.2.2/24 on B.
    pub fn tap(mut self) -> Self {
        let (name, ip) = self.tap;
        self.ports.push(SitePort::Tap {
            name: name.into(),
            ip: ip.into(),
        });
        self
    }

    /// A netdev port on `ifname`, which must be in the site's namespace when the switch starts
    /// (see [`SitesBuilder::start_in`]), with more `addport` options (e.g. `--offload`).
    pub fn netdev(mut self, ifname: &str, opts: &[&str]) -> Self {
        self.ports.push(SitePort::Netdev {
            ifname: ifname.into(),
            opts: opts.iter().map(|o| o.to_string()).collect(),
        });
        self
    }

    /// Starts the switch in `ns` and adds the ports; returns it with the `addport` rows.
    fn launch(&self, ns: &Netns) -> (Switch, Vec<PortRow>) {
        let sw = self.switch.clone().netns(ns).start();
        let rows = self
            .ports
            .iter()
            .map(|p| match p {
                SitePort::Tap { name, ip } => sw.add_tap(ns, name, ip),
                SitePort::Netdev { ifname, opts } => {
                    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                    sw.add_port("netdev", ifname, &opts)
                }
            })
            .collect();
        (sw, rows)
    }
}

/// One site: a namespace and the switch in it. Fields drop in declaration order: the switch
/// goes before its namespace.
pub struct Site {
    pub sw: Switch,
    pub ns: Netns,
    /// What `addport` printed for the site's own ports, in the order they were added.
    pub ports: Vec<PortRow>,
    spec: SiteBuilder,
}

impl Site {
    /// Starts the site's switch again as it was built (settings and ports), e.g. after the
    /// test killed it, as systemd would; the new switch, labelled `label`, replaces the old one.
    /// The port numbers may differ: a peer may reconnect before the ports are back.
    pub fn restart(&mut self, label: &str) {
        let spec = self.spec.clone().switch(|b| b.label(label));
        (self.sw, self.ports) = spec.launch(&self.ns);
    }
}

/// Sites A and B (see the module's picture), built by [`Sites::builder`].
pub struct Sites {
    pub a: Site,
    pub b: Site,
}

impl Sites {
    pub const A_VETH: &'static str = "198.51.100.1";
    pub const B_VETH: &'static str = "198.51.100.2";
    pub const A_TAP: &'static str = "192.0.2.1";
    pub const B_TAP: &'static str = "192.0.2.2";
    pub const NETMASK: &'static str = "255.255.255.0";
    pub const WS_PORT: u16 = 8080;
    pub const CTL_PORT: u16 = 7867;

    /// Two sites named `{tag}A`/`{tag}B` (switches `{tag}-A`/`{tag}-B`), with no port and not
    /// connected unless told.
    pub fn builder(tag: &str) -> SitesBuilder {
        let site = |side: &str, host: &str, tap| SiteBuilder {
            switch: Switch::builder(&format!("{tag}-{side}"))
                .host(host)
                .port(Self::WS_PORT)
                .ctl_port(Self::CTL_PORT),
            tap,
            ports: Vec::new(),
        };
        SitesBuilder {
            tag: tag.to_string(),
            a: site("A", Self::A_VETH, ("ewsA0", Self::A_TAP)),
            b: site("B", Self::B_VETH, ("ewsB0", Self::B_TAP)),
            connect: None,
        }
    }

    /// The URL B's client port connects to: `ws://198.51.100.1:PORT/`, A's WebSocket port.
    pub fn client_url(&self) -> String {
        format!("ws://{}:{}/", Self::A_VETH, self.a.sw.ws_port)
    }
}

/// See [`Sites::builder`].
pub struct SitesBuilder {
    tag: String,
    a: SiteBuilder,
    b: SiteBuilder,
    /// B connects to A with these `addport client` options.
    connect: Option<Vec<String>>,
}

impl SitesBuilder {
    /// Site A's settings and ports, e.g. `.a(|a| a.tap())`.
    pub fn a(mut self, f: impl FnOnce(SiteBuilder) -> SiteBuilder) -> Self {
        self.a = f(self.a);
        self
    }

    /// Site B's settings and ports.
    pub fn b(mut self, f: impl FnOnce(SiteBuilder) -> SiteBuilder) -> Self {
        self.b = f(self.b);
        self
    }

    /// The same settings and ports on both sites, e.g. `.both(|s| s.tap())`.
    pub fn both(self, f: impl Fn(SiteBuilder) -> SiteBuilder) -> Self {
        self.a(&f).b(&f)
    }

    /// Once both switches have their ports, B connects to A (`addport client URL OPTS...`,
    /// [`Sites::client_url`]) and the build waits until A lists the server port.
    pub fn connect(mut self, opts: &[&str]) -> Self {
        self.connect = Some(opts.iter().map(|o| o.to_string()).collect());
        self
    }

    /// Builds the sites in new namespaces: [`linked`]`(tag, A_VETH, B_VETH)`.
    pub fn start(self) -> Sites {
        let (ns_a, ns_b) = linked(&self.tag, Sites::A_VETH, Sites::B_VETH);
        self.start_in(ns_a, ns_b)
    }

    /// Builds the sites in namespaces the test made (e.g. with [`linked`], then a third
    /// namespace on a veth for a netdev port), which they then own.
    ///
    /// Both switches get their ports in order, numbered from 1 (checked), then B connects (its
    /// client port and A's server port each come next).
    pub fn start_in(self, ns_a: Netns, ns_b: Netns) -> Sites {
        let site = |spec: SiteBuilder, ns: Netns| {
            let (sw, ports) = spec.launch(&ns);
            let numbers: Vec<u32> = ports.iter().map(|p| p.port).collect();
            let expected: Vec<u32> = (1..=ports.len() as u32).collect();
            assert_eq!(numbers, expected, "a new switch numbers its ports from 1");
            Site {
                sw,
                ns,
                ports,
                spec,
            }
        };
        let sites = Sites {
            a: site(self.a, ns_a),
            b: site(self.b, ns_b),
        };
        if let Some(opts) = self.connect {
            let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
            let client = sites.b.sw.add_port("client", &sites.client_url(), &opts);
            let next = |site: &Site| site.ports.len() as u32 + 1;
            assert_eq!(client.port, next(&sites.b), "B's client port: {client:?}");
            sites.a.sw.wait_server_port(next(&sites.a));
        }
        sites
    }
}
