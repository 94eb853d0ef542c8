//! Harness for the end-to-end tests of `etherws`.
//!
//! * `require_root()`: root-only tests skip loudly outside CI, and fail under CI.
//! * `Netns`: a network namespace guard (unique name, `lo` up, IPv6 off so the kernel stays
//!   quiet); on drop it SIGKILLs every process inside and deletes the namespace.
//! * `veth()`: a veth pair created directly inside two namespaces.
//! * `Switch`: an `etherws sw --foreground` process (inside a namespace, or on loopback in the
//!   root namespace), stderr logged to a file that is printed if the test panics; `ctl()`,
//!   `ctl_ok()`, `listport()`, `listif()`, `listfdb()`.
//! * `table()` and the typed row parsers, `ping()` / `no_ping()`, `poll()`.
//! * `rpc()`: raw HTTP/1.1 JSON-RPC POST with std only.
//! * `RawSock`: an AF_PACKET socket on an interface inside a namespace, to send and receive
//!   hand-made (e.g. 802.1Q tagged) Ethernet frames.
//! * `Switch::builder()`: a switch with extra environment variables (e.g. `http_proxy`), another
//!   control address, and global ctl options (credentials, https:// URL, CA) that `ctl()` and
//!   the readiness probe use; `ctl_with()` for other ctl options; `etherws()` for any other
//!   command line; `sw_start_fails()` for start-up errors.
//! * `http_exchange()`: a raw HTTP request on a connected socket, status and headers returned;
//!   `Netns::tcp_connect()` connects from inside a namespace.
//! * `require_tool()` (skip loudly, or fail under CI), `TempDir`, `Pki` (a CA and server
//!   certificates made with the real `openssl`, keys in PKCS#8, PKCS#1 or SEC1 PEM),
//!   `run_on_pty()` (type a password at a prompt on a pseudo-terminal).
//!
//! The binary under test is `CARGO_BIN_EXE_etherws`; `ETHERWS_BIN=/path/to/other` overrides it
//! (e.g. a wrapper running the Python etherws 1.3, to check the tests themselves).
//!
//! Addresses used in namespaces: only 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// basics

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this test process.
pub fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// The etherws binary under test.
pub fn bin() -> OsString {
    std::env::var_os("ETHERWS_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_etherws").into())
}

/// True when running as root. Otherwise: panics under CI (`CI=true`), or prints a loud SKIPPED
/// line and returns false (the caller then returns early).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: needs root (network namespaces, TAP devices); it must run under CI as root"
        );
    }
    loud(&format!("SKIPPED (needs root): {test}"));
    false
}

/// A message framed in `!!!` lines, written straight to stderr so that the test harness's
/// output capture does not hide it (e.g. a skipped test or a skipped part of one).
pub fn loud(msg: &str) {
    let bar = "!".repeat(78);
    let mut text = format!("\n{bar}\n");
    for line in msg.lines() {
        text.push_str(&format!("!!! {line}\n"));
    }
    text.push_str(&format!("{bar}\n\n"));
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Poll `f` until it returns Ok, every 100 ms, up to `timeout`; then panic with the last error.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn command(argv: &[&str]) -> Command {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]);
    c
}

/// Run a command to completion (stdin closed).
pub fn run(argv: &[&str]) -> Output {
    command(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Run a command, panic unless it succeeds; returns stdout.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(out.status.success(), "{argv:?} failed\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn clear_proxy_env(c: &mut Command) {
    for k in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    ] {
        c.env_remove(k);
    }
}

/// A fresh log file path in the temp dir (kept, and printed, only when a test fails).
fn log_path(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "etherws-e2e-{}-{label}-{}.log",
        std::process::id(),
        next_id()
    ))
}

// ---------------------------------------------------------------------------------------------
// network namespaces

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
                if w == "inet" {
                    if let Some(a) = words.next() {
                        v.push(a.to_string());
                    }
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

// ---------------------------------------------------------------------------------------------
// tables printed by `etherws ctl`

/// The rows of a ctl table (header skipped), each split on whitespace.
pub fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The header row of a ctl table, split on whitespace.
pub fn header(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Rows with exactly as many cells as the header. When a row has fewer words than the header
/// (an empty cell, e.g. an unset address), the row is cut at the header's column starts, which
/// works because every column is left-aligned and padded to its widest cell.
pub fn table_cells(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, ch) in head.char_indices() {
        if !ch.is_whitespace() && prev_space {
            starts.push(i);
        }
        prev_space = ch.is_whitespace();
    }
    lines
        .map(|l| {
            let words: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            if words.len() == starts.len() {
                return words;
            }
            (0..starts.len())
                .map(|c| {
                    let s = starts[c].min(l.len());
                    let e = if c + 1 < starts.len() {
                        starts[c + 1].min(l.len())
                    } else {
                        l.len()
                    };
                    l.get(s..e).unwrap_or("").trim().to_string()
                })
                .collect()
        })
        .collect()
}

fn num<T: std::str::FromStr>(s: &str, what: &str, out: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("bad {what} {s:?} in ctl output:\n{out}"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub port: u32,
    pub kind: String,
    pub state: String,
    pub rx: u64,
    pub tx: u64,
    pub target: String,
}

pub fn parse_ports(out: &str) -> Vec<PortRow> {
    assert_eq!(
        header(out),
        ["Port", "Type", "State", "RX", "TX", "Target"],
        "listport header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| PortRow {
            port: num(&r[0], "port", out),
            kind: r[1].clone(),
            state: r[2].clone(),
            rx: num(&r[3], "rx", out),
            tx: num(&r[4], "tx", out),
            target: r[5].clone(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct IfRow {
    pub port: u32,
    pub kind: String,
    pub address: String,
    pub netmask: String,
    pub mtu: u32,
    pub target: String,
}

pub fn parse_ifs(out: &str) -> Vec<IfRow> {
    assert_eq!(
        header(out),
        ["Port", "Type", "Address", "Netmask", "MTU", "Target"],
        "listif header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| IfRow {
            port: num(&r[0], "port", out),
            kind: r[1].clone(),
            address: r[2].clone(),
            netmask: r[3].clone(),
            mtu: num(&r[4], "mtu", out),
            target: r[5].clone(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct FdbRow {
    pub port: u32,
    pub vlan: u16,
    pub mac: String,
    pub age: u64,
}

pub fn parse_fdb(out: &str) -> Vec<FdbRow> {
    assert_eq!(
        header(out),
        ["Port", "VLAN", "MAC", "Age"],
        "listfdb header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| FdbRow {
            port: num(&r[0], "port", out),
            vlan: num(&r[1], "vlan", out),
            mac: r[2].to_lowercase(),
            age: num(&r[3], "age", out),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// the switch under test

/// A running `etherws sw --foreground`, killed on drop; its log is printed if the test panics.
pub struct Switch {
    label: String,
    netns: Option<String>,
    child: Child,
    log: PathBuf,
    pub host: String,
    pub ws_port: u16,
    pub ctl_port: u16,
    /// `--ctlurl` for `ctl()`; None: `http://127.0.0.1:CTLPORT/ctl`.
    ctl_url: Option<String>,
    /// Global ctl options (e.g. credentials, CA) that `ctl()` passes before the command.
    ctl_opts: Vec<String>,
}

/// A port that was free a moment ago (only for a shared listener, which needs one number for
/// both `--port` and `--ctlport`; everything else asks the switch for `--port 0`).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// The port of `key=ADDR:PORT` in a line of the switch's log.
fn logged_port(log: &str, key: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains("serving"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)))
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
}

impl Switch {
    /// `etherws sw --foreground --host HOST --port PORT --ctlhost 127.0.0.1 --ctlport CTLPORT
    /// EXTRA...` inside `ns`.
    pub fn in_netns(
        ns: &Netns,
        label: &str,
        host: &str,
        port: u16,
        ctl_port: u16,
        extra: &[&str],
    ) -> Switch {
        Self::start(
            Some(ns.name().to_string()),
            label,
            host,
            port,
            ctl_port,
            extra,
        )
    }

    /// A switch in the root namespace on loopback only (no root needed), on two free ports.
    pub fn local(label: &str, extra: &[&str]) -> Switch {
        SwitchBuilder::new(label).args(extra).start()
    }

    /// A switch on loopback whose WebSocket and control API share one listener (same host and
    /// port), as `--host/--port` equal to `--ctlhost/--ctlport` asks for.
    pub fn local_shared(label: &str) -> Switch {
        let p = free_port();
        Self::start(None, label, "127.0.0.1", p, p, &[])
    }

    fn cmd(netns: &Option<String>) -> Command {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        clear_proxy_env(&mut c);
        c.stdin(Stdio::null());
        c
    }

    fn start(
        netns: Option<String>,
        label: &str,
        host: &str,
        port: u16,
        ctl_port: u16,
        extra: &[&str],
    ) -> Switch {
        let mut b = SwitchBuilder::new(label)
            .host(host)
            .port(port)
            .ctl_port(ctl_port);
        b.netns = netns;
        b.args(extra).start()
    }

    /// A switch with more settings than `in_netns`/`local` offer (environment, control
    /// address, ctl options); see [`SwitchBuilder`].
    pub fn builder(label: &str) -> SwitchBuilder {
        SwitchBuilder::new(label)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("switch {} exited during start-up: {status}", self.label);
            }
            let out = self.ctl(&["listport"]);
            if out.status.success()
                && header(&String::from_utf8_lossy(&out.stdout))
                    .first()
                    .map(String::as_str)
                    == Some("Port")
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "switch {} control API never answered\nlast ctl listport:\n{}",
                    self.label,
                    show(&out)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ctl_url(&self) -> String {
        self.ctl_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/ctl", self.ctl_port))
    }

    /// The control API address as seen from inside the switch's namespace.
    pub fn ctl_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ctl_port))
    }

    /// `etherws ctl --ctlurl URL [CTL-OPTS...] ARGS...` (in the switch's namespace), with the
    /// ctl options the switch was built with (none unless [`SwitchBuilder::ctl_opts`]).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let opts: Vec<&str> = self.ctl_opts.iter().map(String::as_str).collect();
        self.ctl_with(&opts, args)
    }

    /// `etherws ctl --ctlurl URL OPTS... ARGS...` (in the switch's namespace): `opts` replace
    /// the switch's own ctl options (e.g. other or no credentials).
    pub fn ctl_with(&self, opts: &[&str], args: &[&str]) -> Output {
        let url = self.ctl_url();
        let mut c = Self::cmd(&self.netns);
        c.args(["ctl", "--ctlurl", &url]).args(opts).args(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run ctl {opts:?} {args:?}: {e}"))
    }

    /// `ctl` that must succeed without a JSON-RPC error; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !stdout.contains("(-3"),
            "switch {}: ctl {args:?} failed\n{}",
            self.label,
            show(&out)
        );
        stdout
    }

    pub fn listport(&self) -> Vec<PortRow> {
        parse_ports(&self.ctl_ok(&["listport"]))
    }

    pub fn listif(&self) -> Vec<IfRow> {
        parse_ifs(&self.ctl_ok(&["listif"]))
    }

    pub fn listfdb(&self) -> Vec<FdbRow> {
        parse_fdb(&self.ctl_ok(&["listfdb"]))
    }

    pub fn port(&self, n: u32) -> Option<PortRow> {
        self.listport().into_iter().find(|p| p.port == n)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The switch's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`, `SIGKILL`, `SIGTERM`) to the switch process (`ip
    /// netns exec` execs, so the child is the switch itself).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `timeout` for the switch to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "===== log of switch {} ({}) =====\n{}===== end of log of switch {} =====",
                self.label,
                self.log.display(),
                self.log(),
                self.label
            );
        } else {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// Settings for a [`Switch`] beyond `in_netns`/`local`: `etherws sw --foreground --host HOST
/// --port PORT --ctlhost CTLHOST --ctlport CTLPORT ARGS...` with extra environment variables,
/// and the `--ctlurl` and global ctl options that `ctl()` (and the readiness probe) use.
///
/// Defaults: root namespace, host and ctlhost 127.0.0.1, two free loopback ports, no extra
/// environment (the proxy variables are always cleared first, then `env` is applied).
pub struct SwitchBuilder {
    label: String,
    netns: Option<String>,
    host: String,
    port: Option<u16>,
    ctl_host: String,
    ctl_port: Option<u16>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ctl_url: Option<String>,
    ctl_opts: Vec<String>,
}

impl SwitchBuilder {
    pub fn new(label: &str) -> SwitchBuilder {
        SwitchBuilder {
            label: label.to_string(),
            netns: None,
            host: "127.0.0.1".into(),
            port: None,
            ctl_host: "127.0.0.1".into(),
            ctl_port: None,
            args: Vec::new(),
            env: Vec::new(),
            ctl_url: None,
            ctl_opts: Vec::new(),
        }
    }

    /// Run inside this namespace (the switch dies with it).
    pub fn netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// `--host` (WebSocket listener address).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// `--port` (WebSocket listener port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--ctlhost` (control API address).
    pub fn ctl_host(mut self, host: &str) -> Self {
        self.ctl_host = host.to_string();
        self
    }

    /// `--ctlport` (control API port).
    pub fn ctl_port(mut self, port: u16) -> Self {
        self.ctl_port = Some(port);
        self
    }

    /// More `sw` arguments (e.g. `--sslkey K --sslcert C`, `--htpasswd F`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable for the switch process (e.g. `http_proxy`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The `--ctlurl` ctl uses (default `http://127.0.0.1:CTLPORT/ctl`), e.g. an https:// one.
    pub fn ctl_url(mut self, url: &str) -> Self {
        self.ctl_url = Some(url.to_string());
        self
    }

    /// Global ctl options for `ctl()` and the readiness probe, e.g. `--ctluser U --ctlpasswd
    /// P`, `--ctlsslcert CA`.
    pub fn ctl_opts(mut self, opts: &[&str]) -> Self {
        self.ctl_opts.extend(opts.iter().map(|a| a.to_string()));
        self
    }

    /// Start the switch and wait until its control API answers `ctl listport`. Ports not
    /// given are `0`: the switch binds free ones, and says which in its log.
    pub fn start(self) -> Switch {
        let port = self.port.unwrap_or(0);
        let ctl_port = self.ctl_port.unwrap_or(0);
        let log = log_path(&self.label);
        let logf = File::create(&log).expect("create switch log");
        let port_s = port.to_string();
        let ctl_s = ctl_port.to_string();
        let mut c = Switch::cmd(&self.netns);
        c.args([
            "sw",
            "--foreground",
            "--host",
            &self.host,
            "--port",
            &port_s,
        ])
        .args(["--ctlhost", &self.ctl_host, "--ctlport", &ctl_s])
        .args(&self.args)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(logf);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", bin()));
        let mut sw = Switch {
            label: self.label,
            netns: self.netns,
            child,
            log,
            host: self.host,
            ws_port: port,
            ctl_port,
            ctl_url: self.ctl_url,
            ctl_opts: self.ctl_opts,
        };
        if port == 0 || ctl_port == 0 {
            let (ws, ctl) = poll(
                &format!("switch {} to say where it listens", sw.label),
                Duration::from_secs(10),
                || {
                    if let Ok(Some(status)) = sw.child.try_wait() {
                        panic!(
                            "switch {} exited during start-up: {status}\n{}",
                            sw.label,
                            sw.log()
                        );
                    }
                    let log = sw.log();
                    match (
                        logged_port(&log, "ws_addr="),
                        logged_port(&log, "ctl_addr="),
                    ) {
                        (Some(w), Some(c)) => Ok((w, c)),
                        _ => Err(log),
                    }
                },
            );
            sw.ws_port = ws;
            sw.ctl_port = ctl;
        }
        sw.wait_ready();
        sw
    }
}

/// An `etherws` command (not started), in `ns` or the root namespace, with the proxy
/// variables cleared and stdin on /dev/null.
pub fn etherws(ns: Option<&Netns>) -> Command {
    Switch::cmd(&ns.map(|n| n.name().to_string()))
}

/// `etherws sw --foreground ARGS...` that must fail at start-up: waits up to 15 s for it to
/// exit (killing it and panicking if it is still running), returns its output.
pub fn sw_start_fails(args: &[&str]) -> Output {
    let mut c = etherws(None);
    c.args(["sw", "--foreground"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", bin()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "etherws sw {args:?} kept running, expected a start-up error\n{}",
                show(&out)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

// ---------------------------------------------------------------------------------------------
// raw JSON-RPC over HTTP/1.1

/// POST `body` to `http://addr{path}` (Connection: close); returns (status, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = http_exchange(s, &req, body);
    (resp.status, resp.body)
}

/// True when `raw` holds a whole response head and a body as long as its Content-Length says.
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| rest.len() >= len)
}

/// An HTTP response as read by [`http_exchange`]: header names lower-cased, body de-chunked.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send a raw HTTP/1.1 request (which should say `Connection: close`) on `s` and read the
/// response until the server closes; `what` names the request in panic messages.
pub fn http_exchange(mut s: TcpStream, request: &str, what: &str) -> HttpResponse {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Until the server closes, or a response with a Content-Length is complete (a server may
    // keep the connection, e.g. after refusing a WebSocket upgrade).
    while !response_complete(&raw) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => {
                // A server may reset after a full response; keep what arrived.
                assert!(!raw.is_empty(), "reading response to {what:?}: {e}");
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in response to {what:?}:\n{text}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in response to {what:?}:\n{text}"));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size =
                usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len).unwrap_or(rest).to_string()
    } else {
        rest.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// POST a JSON-RPC request body and parse the JSON response.
/// A plain HTTP GET; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let resp = http_exchange(s, &req, path);
    (resp.status, resp.body)
}

/// The two-site topology most tests start from: namespaces `{tag}A` and `{tag}B` joined by a
/// veth, `vAB` in A carrying `a_addr`/24 and `vBA` in B carrying `b_addr`/24.
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

/// [`rpc`] to a control API inside a namespace.
pub fn rpc_in(ns: &Netns, addr: SocketAddr, path: &str, body: &str) -> Value {
    let s = ns.tcp_connect(addr).expect("connect to control API");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = http_exchange(s, &req, body);
    serde_json::from_str(&resp.body).unwrap_or_else(|e| {
        panic!(
            "response to {body:?} is not JSON ({e}); HTTP {}:\n{}",
            resp.status, resp.body
        )
    })
}

pub fn rpc(addr: SocketAddr, path: &str, body: &str) -> Value {
    let (status, text) = http_post(addr, path, body);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("response to {body:?} is not JSON ({e}); HTTP {status}:\n{text}")
    })
}

// ---------------------------------------------------------------------------------------------
// raw Ethernet frames (AF_PACKET) inside a namespace

const ETH_P_ALL: u16 = 0x0003;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// A received frame, with an 802.1Q tag the kernel had stripped put back in place.
#[derive(Debug, Clone)]
pub struct RxFrame {
    pub data: Vec<u8>,
    pub pkttype: u8,
}

impl RxFrame {
    /// The TCI of the outer 802.1Q tag, if any.
    pub fn tci(&self) -> Option<u16> {
        frame_tci(&self.data)
    }
}

/// The TCI of an 802.1Q (0x8100) tag at offset 12, if present.
pub fn frame_tci(f: &[u8]) -> Option<u16> {
    (f.len() >= 16 && f[12] == 0x81 && f[13] == 0x00).then(|| u16::from_be_bytes([f[14], f[15]]))
}

/// Build an Ethernet frame: dst, src, optional 802.1Q TCI, ethertype, payload (padded to 60 bytes).
pub fn build_frame(
    dst: [u8; 6],
    src: [u8; 6],
    tci: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = tci {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex mac"))
        .collect();
    v.try_into().expect("6-byte mac")
}

pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An AF_PACKET socket bound to one interface inside a namespace.
pub struct RawSock {
    fd: OwnedFd,
    what: String,
}

impl RawSock {
    pub fn open(ns: &Netns, ifname: &str) -> RawSock {
        let path = format!("/run/netns/{}", ns.name());
        let ifname_s = ifname.to_string();
        // setns(CLONE_NEWNET) only moves the calling thread: do it in a throw-away thread. The
        // socket keeps the namespace it was created in.
        let fd = thread::spawn(move || -> Result<OwnedFd, String> {
            let nsf = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
            // SAFETY: setns/socket/if_nametoindex/bind/setsockopt get live locals (`nsf`, the
            // NUL-terminated `cname`, `sll`, `one`, `tv`) with their exact sizes and only read
            // them; the checked socket() result is owned at once; all-zero sockaddr_ll is valid;
            // setns moves only this throw-away thread.
            unsafe {
                if libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
                }
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    ETH_P_ALL.to_be() as libc::c_int,
                );
                if fd < 0 {
                    return Err(format!(
                        "socket(AF_PACKET): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let cname = CString::new(ifname_s.clone()).unwrap();
                let idx = libc::if_nametoindex(cname.as_ptr());
                if idx == 0 {
                    return Err(format!(
                        "if_nametoindex({ifname_s}): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ETH_P_ALL.to_be();
                sll.sll_ifindex = idx as i32;
                if libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                ) != 0
                {
                    return Err(format!(
                        "bind to {ifname_s}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_AUXDATA,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 100_000,
                };
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                Ok(fd)
            }
        })
        .join()
        .expect("raw socket thread")
        .unwrap_or_else(|e| panic!("raw socket on {ifname} in {}: {e}", ns.name()));
        RawSock {
            fd,
            what: format!("{ifname}@{}", ns.name()),
        }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a live slice, readable for the length passed, and send(2) only reads
        // it; the socket stays open as long as `self`.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "send on {}: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// One received (not outgoing) frame, or None after the socket's 100 ms timeout.
    fn recv_one(&self) -> Option<RxFrame> {
        let mut buf = vec![0u8; 65536];
        let mut ctrl = [0u64; 64];
        // SAFETY: sockaddr_ll holds integers and byte arrays only: all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: all pointers refer to live local buffers of the stated sizes.
        let (n, aux) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
            let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return None;
            }
            let mut aux = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c) as *const TpacketAuxdata
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            (n as usize, aux)
        };
        let mut data = buf[..n].to_vec();
        if let Some(a) = aux {
            if (a.tp_status & TP_STATUS_VLAN_VALID != 0 || a.tp_vlan_tci != 0) && data.len() >= 12 {
                let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    a.tp_vlan_tpid
                } else {
                    0x8100
                };
                let mut tag = tpid.to_be_bytes().to_vec();
                tag.extend_from_slice(&a.tp_vlan_tci.to_be_bytes());
                data.splice(12..12, tag);
            }
        }
        Some(RxFrame {
            data,
            pkttype: sll.sll_pkttype,
        })
    }

    /// Wait up to `timeout` for a received frame matching `pred`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        pred: impl Fn(&RxFrame) -> bool,
    ) -> Option<RxFrame> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(f) = self.recv_one() {
                if f.pkttype != PACKET_OUTGOING && pred(&f) {
                    return Some(f);
                }
            }
        }
        None
    }

    /// Throw away whatever is queued.
    pub fn drain(&self) {
        while self.recv_one().is_some() {}
    }
}

/// Distinct values, for readable assertion messages.
pub fn distinct<T: std::hash::Hash + Eq + Clone>(v: &[T]) -> HashSet<T> {
    v.iter().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// external tools, temporary files, certificates

/// True when `tool` is on PATH. Otherwise: panics under CI (`CI=true`), or prints a loud
/// SKIPPED line and returns false (the caller then returns early).
pub fn require_tool(test: &str, tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
    {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs `{tool}`, which is not installed; it must be installed under CI");
    }
    loud(&format!("SKIPPED (needs `{tool}`): {test}"));
    false
}

/// A fresh directory in the temp dir, removed on drop (kept, and named, if the test panics).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "etherws-e2e-{}-{tag}-{}",
            std::process::id(),
            next_id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `dir/name` as a string (for command lines).
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }

    /// Write `dir/name`; returns its path as a string.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.file(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {p}: {e}"));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("e2e: keeping {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The PEM form a private key is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `-----BEGIN PRIVATE KEY-----` (RSA 2048, `openssl genpkey`).
    Pkcs8,
    /// `-----BEGIN RSA PRIVATE KEY-----` (RSA 2048, `openssl genrsa -traditional`).
    Pkcs1,
    /// `-----BEGIN EC PRIVATE KEY-----` (P-256, `openssl ecparam -genkey`, preceded by the
    /// `EC PARAMETERS` block that command writes too).
    Sec1,
}

impl KeyForm {
    /// The PEM label the key file must carry.
    pub fn pem_label(self) -> &'static str {
        match self {
            KeyForm::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            KeyForm::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
            KeyForm::Sec1 => "-----BEGIN EC PRIVATE KEY-----",
        }
    }
}

/// A certificate authority made with the real `openssl` (self-signed, CA:TRUE).
pub struct Ca {
    pub name: String,
    /// The CA certificate (PEM): what `--cacerts` / `--ctlsslcert` (ctl) take.
    pub cert: String,
    key: String,
}

/// A server key and certificate (PEM files).
pub struct ServerCert {
    pub key: String,
    pub cert: String,
}

/// Certificates made with the real `openssl` in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed\n{}",
        show(&out)
    );
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        Pki {
            dir: TempDir::new(tag),
        }
    }

    /// A self-signed CA `CN=etherws test CA <name>` (RSA 2048, valid 2 days).
    pub fn ca(&self, name: &str) -> Ca {
        let cnf = self.dir.write(
            &format!("{name}-ca.cnf"),
            &format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n\
                 [dn]\nCN = etherws test CA {name}\n\
                 [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid:always\n"
            ),
        );
        let key = self.dir.file(&format!("{name}-ca.key"));
        let cert = self.dir.file(&format!("{name}-ca.pem"));
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-config",
                &cnf,
                "-extensions",
                "v3_ca",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
            ],
        );
        Ca {
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// A private key in the given form, `dir/<name>.key`.
    pub fn key(&self, name: &str, form: KeyForm) -> String {
        let key = self.dir.file(&format!("{name}.key"));
        match form {
            KeyForm::Pkcs8 => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
            KeyForm::Pkcs1 => openssl(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
            KeyForm::Sec1 => openssl(
                &self.dir,
                &["ecparam", "-name", "prime256v1", "-genkey", "-out", &key],
            ),
        }
        let pem = fs::read_to_string(&key).expect("read the new key");
        assert!(
            pem.contains(form.pem_label()),
            "openssl wrote {key} not as {form:?}:\n{}",
            pem.lines()
                .filter(|l| l.starts_with("-----"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        key
    }

    /// A server certificate `CN=<name>` signed by `ca`, for these IP addresses
    /// (`subjectAltName=IP:...`), with a new key in the given form.
    pub fn server(&self, ca: &Ca, name: &str, ips: &[&str], form: KeyForm) -> ServerCert {
        let key = self.key(name, form);
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        let cnf = self.dir.write(
            &format!("{name}.cnf"),
            &format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n\
                 [dn]\nCN = {name}\n\
                 [v3_srv]\nbasicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 extendedKeyUsage = serverAuth\n\
                 subjectAltName = {}\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n",
                sans.join(", ")
            ),
        );
        let csr = self.dir.file(&format!("{name}.csr"));
        let cert = self.dir.file(&format!("{name}.pem"));
        openssl(
            &self.dir,
            &["req", "-new", "-config", &cnf, "-key", &key, "-out", &csr],
        );
        let serial = format!("{}", 1000 + next_id());
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca.cert,
                "-CAkey",
                &ca.key,
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &cnf,
                "-extensions",
                "v3_srv",
                "-out",
                &cert,
            ],
        );
        ServerCert { key, cert }
    }
}

// ---------------------------------------------------------------------------------------------
// a pseudo-terminal, for password prompts

/// What a command run on a pseudo-terminal did: its exit status and everything it wrote to the
/// terminal (stdout, stderr and /dev/tty are all the terminal).
#[derive(Debug)]
pub struct PtyRun {
    pub status: std::process::ExitStatus,
    pub output: String,
}

/// Run `cmd` with a new pseudo-terminal as its controlling terminal and stdio; when `prompt`
/// appears in its output, type `input` and Enter. Panics if the command does not end within
/// 30 s (it is killed) or the prompt never appears before it ends.
pub fn run_on_pty(mut cmd: Command, prompt: &str, input: &str) -> PtyRun {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex, mpsc};

    // SAFETY: posix_openpt/grantpt/unlockpt take no pointers; the descriptor is checked and
    // owned at once, so it is open for the two calls after it.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd.as_raw_fd()), 0, "unlockpt");
        fd
    };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ptsname_r");
    // SAFETY: ptsname_r wrote a NUL-terminated string into the buffer.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)
        .unwrap_or_else(|e| panic!("open {slave_path}: {e}"));
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn on a pty");
    // Close our copies of the terminal's slave side, so that reading the master ends (EIO)
    // once the child is gone.
    drop(cmd);

    let master = File::from(master);
    let mut reader = master.try_clone().expect("dup pty master");
    let mut writer = master;
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let seen = seen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = done_tx.send(());
        });
    }
    let text =
        |seen: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut typed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the pty child") {
            break status;
        }
        if !typed && text(&seen).contains(prompt) {
            writer
                .write_all(format!("{input}\n").as_bytes())
                .expect("type on the pty");
            typed = true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "command on the pty did not finish (prompt {prompt:?} typed: {typed}); output:\n{}",
                text(&seen)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    let output = text(&seen);
    assert!(
        output.contains(prompt),
        "the prompt {prompt:?} never appeared; the command ended with {status}, output:\n{output}"
    );
    PtyRun { status, output }
}

// ---------------------------------------------------------------------------------------------
// iperf3

/// What an [`iperf3`] run moved.
pub struct IperfResult {
    pub sent: u64,
    pub received: u64,
    pub mbit_s: f64,
}

/// One `iperf3 -t 3` run from `client` to a one-shot server in `server` on `addr`, with `extra`
/// client options (`-R`: the server sends; `-P N`: N flows). A run that cannot connect or
/// stalls counts as zero bytes.
pub fn iperf3(
    server: &Netns,
    client: &Netns,
    addr: &str,
    port: u16,
    extra: &[&str],
) -> IperfResult {
    let port_s = port.to_string();
    let mut srv = server
        .command(&["iperf3", "-s", "-1", "-B", addr, "-p", &port_s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 -s");
    poll("iperf3 server listening", Duration::from_secs(10), || {
        let out = server.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}")) {
            Ok(())
        } else {
            Err(show(&out))
        }
    });
    let mut argv = vec![
        "timeout",
        "30",
        "iperf3",
        "-c",
        addr,
        "-p",
        &port_s,
        "-t",
        "3",
        "-J",
        "--connect-timeout",
        "5000",
    ];
    argv.extend_from_slice(extra);
    let out = client.exec(&argv);
    let _ = srv.kill();
    let _ = srv.wait();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let end = &json["end"];
    let r = IperfResult {
        sent: end["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        received: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        mbit_s: end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
    };
    eprintln!(
        "iperf3 {addr} {}: sent {} B, received {} B, {:.1} Mbit/s{}",
        extra.join(" "),
        r.sent,
        r.received,
        r.mbit_s,
        match json["error"].as_str() {
            Some(e) => format!(" (error: {e})"),
            None if !out.status.success() => format!("\n{}", show(&out)),
            None => String::new(),
        }
    );
    r
}

// ---------------------------------------------------------------------------------------------
// an attacked switch and the honest hosts it must keep serving

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
            out.status.success()
                && header(&String::from_utf8_lossy(&out.stdout))
                    .first()
                    .map(String::as_str)
                    == Some("Port"),
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
