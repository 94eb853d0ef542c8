//! Network namespaces (a guard that deletes them), programs inside them, veth pairs, and ping
//! between them.

use super::*;

/// A network namespace `<prefix>-<tag>-<pid>-<n>` (prefix `ews` unless [`use_netns_prefix`]
/// says otherwise), deleted (with everything in it) on drop.
pub struct Netns {
    name: String,
}

static STALE_CLEANUP: Once = Once::new();
static PREFIX: OnceLock<&'static str> = OnceLock::new();

/// Names the namespaces this process makes `<prefix>-<tag>-<pid>-<n>` instead of
/// `ews-<tag>-<pid>-<n>` (e.g. `ewsb` for `cargo xtask bench`, so that its namespaces are told
/// apart from the tests'); the stale ones cleaned up are then those with this prefix. Call it
/// before the first [`Netns::new`]; the first call wins.
pub fn use_netns_prefix(prefix: &'static str) {
    let _ = PREFIX.set(prefix);
}

fn prefix() -> &'static str {
    PREFIX.get().copied().unwrap_or("ews")
}

/// Delete `<prefix>-*-<pid>-<n>` namespaces left behind by processes that no longer exist.
fn cleanup_stale_namespaces() {
    let out = run(&["ip", "netns", "list"]);
    let prefix = format!("{}-", prefix());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with(&prefix) {
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
        let name = format!("{}-{tag}-{}-{}", prefix(), std::process::id(), next_id());
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

    /// The processes inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        netns_pids(&self.name)
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

    /// [`Netns::daemon`] with its stdout and stderr written to the file `log` (created, or
    /// truncated), e.g. to wait for a line it prints when ready.
    pub fn daemon_with_log(&self, argv: &[&str], log: &Path) -> Daemon {
        let f = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = self
            .command(argv)
            .stdout(f.try_clone().expect("dup the log file"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {argv:?} in {}: {e}", self.name));
        Daemon(child)
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

    /// Runs `f` on a thread of its own that has entered this namespace (`setns` moves only the
    /// calling thread), and returns what it returns: the sockets it makes stay in the namespace
    /// after the thread ends. A panic in `f` is raised again here.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        enter_named(&self.name, f)
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
        self.enter(move || {
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
    }
}

/// See [`Netns::daemon`].
pub struct Daemon(Child);

impl Daemon {
    /// The process id (of `ip netns exec`, which execs the program: the program's own).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

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
    ping_within(ns, addr, Duration::from_secs(10));
}

/// [`ping`], up to `timeout` (e.g. longer through a tunnel that is still connecting).
pub fn ping_within(ns: &Netns, addr: &str, timeout: Duration) {
    poll(&format!("ping {addr} from {}", ns.name()), timeout, || {
        let out = ns.exec(&["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", addr]);
        if out.status.success() {
            Ok(())
        } else {
            thread::sleep(Duration::from_millis(200));
            Err(show(&out))
        }
    })
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

/// Runs `f` on a throw-away thread inside the namespace called `name` ([`Netns::enter`] for a
/// namespace known by name only, e.g. a switch's).
pub fn enter_named<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    let joined = thread::spawn(move || {
        let nsf = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a namespace file we opened, for this thread only.
        if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns {path}: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join();
    joined.unwrap_or_else(|p| std::panic::resume_unwind(p))
}
