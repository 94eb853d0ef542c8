//! Network namespaces (a guard that deletes them), veth pairs, and ping between them.

use super::*;

/// A network namespace `ews-<tag>-<pid>-<n>`, deleted (with everything in it) on drop.
pub struct Netns {
    name: String,
}

static STALE_CLEANUP: Once = Once::new();

/// Delete `ews-*-<pid>-<n>` namespaces left behind by test processes that no longer exist.
fn cleanup_stale_namespaces() {
    let out = run(&["ip", "netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with("ews-") {
            continue;
        }
        let parts: Vec<&str> = name.rsplitn(3, '-').collect();
        if parts.len() != 3 || parts[0].parse::<u64>().is_err() {
            continue;
        }
        let Ok(pid) = parts[1].parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            eprintln!("e2e: removing stale network namespace {name}");
            kill_netns_pids(name);
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

fn netns_pids(name: &str) -> Vec<i32> {
    let out = run(&["ip", "netns", "pids", name]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn kill_netns_pids(name: &str) {
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let pids: Vec<i32> = netns_pids(name).into_iter().filter(|&p| p != me).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: plain kill(2) on a pid that `ip netns pids` reported inside our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(100));
    }
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        STALE_CLEANUP.call_once(cleanup_stale_namespaces);
        let name = format!("ews-{tag}-{}-{}", std::process::id(), next_id());
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // Keep the kernel quiet (no IPv6 ND / router solicitations on the test interfaces).
        let _ = ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME argv...` as a Command (not started).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name))
    }

    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed\n{}",
            self.name,
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A long-running program (a proxy, a server) in the namespace, killed and reaped when
    /// the returned guard is dropped (or, at the latest, with the namespace).
    pub fn daemon(&self, argv: &[&str]) -> Daemon {
        Daemon(self.spawn(argv))
    }

    /// Start a process in the namespace (stdout/stderr discarded); it is killed when the
    /// namespace is dropped.
    pub fn spawn(&self, argv: &[&str]) -> Child {
        self.command(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {argv:?} in {}: {e}", self.name))
    }

    /// `ip -n NAME args...`, must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(&argv)
    }

    /// `ip -n NAME args...`, returned as is.
    pub fn ip_try(&self, args: &[&str]) -> Output {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run(&argv)
    }

    pub fn has_link(&self, ifname: &str) -> bool {
        self.ip_try(&["link", "show", "dev", ifname])
            .status
            .success()
    }

    /// The MAC address of an interface in this namespace, lower case `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self, ifname: &str) -> String {
        let out = self.ip(&["-o", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "link/ether" {
                return words.next().expect("mac after link/ether").to_lowercase();
            }
        }
        panic!("no link/ether address for {ifname} in {}: {out}", self.name);
    }

    /// The MTU of an interface in this namespace.
    pub fn mtu(&self, ifname: &str) -> u32 {
        let out = self.ip(&["-o", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "mtu" {
                return words
                    .next()
                    .and_then(|m| m.parse().ok())
                    .expect("mtu value");
            }
        }
        panic!("no mtu for {ifname} in {}: {out}", self.name);
    }

    /// IPv4 addresses (`a.b.c.d/len`) on an interface in this namespace.
    pub fn addrs(&self, ifname: &str) -> Vec<String> {
        let out = self.ip(&["-o", "-4", "addr", "show", "dev", ifname]);
        let mut v = Vec::new();
        for line in out.lines() {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "inet"
                    && let Some(a) = words.next()
                {
                    v.push(a.to_string());
                }
            }
        }
        v
    }

    /// A TCP connection made from inside this namespace (the socket stays in it), e.g. to
    /// check that a server listens on an address only the namespace can reach.
    pub fn tcp_connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        self.tcp_connect_from(None, addr)
    }

    /// [`Netns::tcp_connect`] from source address `src` (e.g. 127.0.0.2, to be another client
    /// address on loopback).
    pub fn tcp_connect_from(
        &self,
        src: Option<std::net::IpAddr>,
        addr: SocketAddr,
    ) -> std::io::Result<TcpStream> {
        let path = format!("/run/netns/{}", self.name);
        // setns(CLONE_NEWNET) only moves the calling thread: do it in a throw-away thread.
        thread::spawn(move || {
            let nsf = File::open(&path)?;
            // SAFETY: setns on a namespace file we opened, for this thread only.
            if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            if let Some(src) = src {
                sock.bind(&SocketAddr::new(src, 0).into())?;
            }
            sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
            Ok(sock.into())
        })
        .join()
        .expect("tcp_connect thread")
    }

    /// An 802.1Q sub-interface `name` of `parent` with VLAN id `vid`, carrying `addr`
    /// (`a.b.c.d/len`), up; `qos`: an `egress-qos-map` (e.g. `0:5`). False when the kernel has
    /// no 802.1Q support (the caller skips that part loudly).
    pub fn add_vlan(
        &self,
        parent: &str,
        name: &str,
        vid: u16,
        addr: &str,
        qos: Option<&str>,
    ) -> bool {
        let vid_s = vid.to_string();
        let mut args = vec![
            "link", "add", "link", parent, "name", name, "type", "vlan", "id", &vid_s,
        ];
        if let Some(q) = qos {
            args.extend_from_slice(&["egress-qos-map", q]);
        }
        let out = self.ip_try(&args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("Unknown device type") || err.contains("not supported") {
                return false;
            }
            panic!("creating {name} in {}: {}", self.name, show(&out));
        }
        self.ip(&["addr", "add", addr, "dev", name]);
        self.ip(&["link", "set", name, "up"]);
        true
    }

    /// Wait until the interface exists in this namespace.
    pub fn wait_link(&self, ifname: &str) {
        poll(
            &format!("{ifname} in {}", self.name),
            Duration::from_secs(10),
            || {
                if self.has_link(ifname) {
                    Ok(())
                } else {
                    Err("not there".into())
                }
            },
        )
    }
}

/// See [`Netns::daemon`].
pub struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_netns_pids(&self.name);
        let out = run(&["ip", "netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!("e2e: could not delete netns {}\n{}", self.name, show(&out));
        }
    }
}

/// A veth pair created directly inside the two namespaces (never in the root namespace), both
/// ends up, optional IPv4 address (`a.b.c.d/len`) on each end.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addr: Option<&str>,
    b: &Netns,
    b_if: &str,
    b_addr: Option<&str>,
) {
    assert!(
        a_if.len() <= 15 && b_if.len() <= 15,
        "interface names must be <= 15 chars"
    );
    run_ok(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        if let Some(addr) = addr {
            ns.ip(&["addr", "add", addr, "dev", ifname]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// Two namespaces, `{tag}A` and `{tag}B`, joined by a veth: `vAB` in A carrying `a_addr`/24 and
/// `vBA` in B carrying `b_addr`/24 (what [`Sites`] starts from).
pub fn linked(tag: &str, a_addr: &str, b_addr: &str) -> (Netns, Netns) {
    let ns_a = Netns::new(&format!("{tag}A"));
    let ns_b = Netns::new(&format!("{tag}B"));
    veth(
        &ns_a,
        "vAB",
        Some(&format!("{a_addr}/24")),
        &ns_b,
        "vBA",
        Some(&format!("{b_addr}/24")),
    );
    (ns_a, ns_b)
}

// ---------------------------------------------------------------------------------------------
// ping

/// Ping from `ns` until it succeeds (ARP and MAC learning need a moment), up to ~10 s.
pub fn ping(ns: &Netns, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.exec(&["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", addr]);
        if out.status.success() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "ping {addr} from {} never succeeded\n{}",
                ns.name(),
                show(&out)
            );
        }
        thread::sleep(Duration::from_millis(300));
    }
}

/// Assert that a ping from `ns` to `addr` fails.
pub fn no_ping(ns: &Netns, addr: &str) {
    let out = ns.exec(&["ping", "-n", "-c", "2", "-W", "1", addr]);
    assert!(
        !out.status.success(),
        "ping {addr} from {} unexpectedly succeeded\n{}",
        ns.name(),
        show(&out)
    );
}
