//! Harness for the end-to-end tests of `etherws` and for `cargo xtask bench`/`load`, one module
//! per concern (all re-exported, so a test says `use etherws_testkit::*`):
//!
//! * here: `require_root()` (root-only tests skip loudly outside CI, and fail under CI),
//!   `loud()`, `poll()` (wait for a condition, never a fixed sleep), `run()`, `show()`,
//!   `CHROMIUM_HEADLESS` (how the browser tests start Debian's `chromium`);
//! * `netns`: `Netns`, a network namespace guard (unique name, `lo` up, IPv6 off so the kernel
//!   stays quiet; on drop it kills every process inside and deletes the namespace; a name
//!   prefix of the caller's with `use_netns_prefix()`), `veth()`, `linked()`,
//!   `Netns::enter()` (run code inside), `Netns::tcp_connect[_from]()` (a socket made inside a
//!   namespace), `Netns::daemon()` / `daemon_with_log()` (a program killed and reaped with its
//!   guard), `ping()` / `ping_within()` / `no_ping()`;
//! * `links`: interfaces in a namespace: `Netns::mac()`, `mtu()` / `set_mtu()`, `addrs()`,
//!   `rx_packets()`, `set_gro()` / `set_tx_csum()` (ethtool features by ioctl), `bridge()`,
//!   `add_vlan()`, `wait_link()`;
//! * `switch`: `Switch`, an `etherws sw --foreground` process (in a namespace or on loopback),
//!   on ports it picks itself (`--port 0`) unless told, its log printed if the test panics;
//!   `ctl()`, `ctl_ok()`, `listport()`, `listif()`, `listfdb()`, `rpc()` and `port_status()` (the JSON view); `Switch::builder()` for
//!   environment, control address, ctl options, a log file to keep, death with the parent;
//!   `add_port()`, `add_tap()`, `servers()`, `wait_servers()`, `wait_server_port()`;
//!   `etherws()`, `sw_start_fails()`;
//! * `sites`: `Sites`, the two-switch topology: sites A and B in namespaces joined by
//!   `linked()`, a switch in each (`Switch::builder()` settings), optional TAP and netdev ports,
//!   optionally B connected to A as a client; `Site::restart()`;
//! * `tables`: the tables `ctl` prints, parsed into typed rows;
//! * `http`: `http_exchange()`, `http_post()`, `http_get()`, `rpc()` / `rpc_in()` (raw HTTP/1.1
//!   and JSON-RPC with std only); `try_http_exchange()` / `try_http_post()` return errors
//!   instead of panicking;
//! * `packets`: `RawSock`, an AF_PACKET socket inside a namespace for hand-made (e.g. 802.1Q
//!   tagged) frames, `build_frame()`, `ipv4_udp()`, `inet_checksum()`;
//! * `pki`: `require_tool()`, `TempDir`, `Pki` (a CA and server certificates made with the real
//!   `openssl`, keys in PKCS#8, PKCS#1 or SEC1 PEM);
//! * `pty`: `run_on_pty()` (type a password at a prompt on a pseudo-terminal);
//! * `iperf`: `iperf3()` / `iperf3_for()` between namespaces;
//! * `wan`: `Wan`, a delay line (one-way delay, loss, rate: a `WanSpec` such as `20ms,0.5%`)
//!   between two namespaces, on packet sockets in a namespace of its own, with `WanStats`;
//! * `lan`: `HonestLan`, the network every hardening test attacks, and `still_serves()`;
//! * `transfer`: `copy()` (bulk data over TCP between namespaces, checked byte for byte),
//!   `random_bytes()`, `listen_in()`;
//! * `nets` (by path, not re-exported): the topologies of the several-networks tests — a
//!   server switch with client switches on WebSocket paths, hosts on netdev ports, frame
//!   capture, the `listport --verbose` table;
//! * `dhcp` (by path): `udhcpc()` (a real DHCP client's lease), `contrib()` (the scripts of
//!   `contrib/`), `nft_has_table()`;
//! * `relay` (by path): the relay of docs/dhcp-nat.md built with `contrib/etherws-lan-gateway`
//!   (`Relay`, its VMs with `udhcpc` leases, `lan_gateway()`, `start_vm()`), a VM's router
//!   advertisement, `ping_stats()`, `rss_mib()`;
//! * `browser` (by path): `PageServer` (a page served inside a namespace, holding its load
//!   until the page reports), `headless_chromium()` (with or without QUIC);
//! * `docs` (by path): the documentation's pages, `assert_shows()` (a page shows an example as a
//!   test runs it), `fenced_blocks()` (an example read from its page), `links()` and `anchors()`.
//!
//! The binary under test is the `etherws` cargo built next to the running test (or the one
//! `use_binary()` names, e.g. xtask's release build); `ETHERWS_BIN=/path/to/other` overrides
//! both (e.g. a wrapper running the Python etherws 1.3, to check the tests themselves).
//!
//! Functions panic on failure, as a test wants; xtask runs each benchmark scenario under
//! `std::panic::catch_unwind` and reports a panic as that scenario's failure.
//!
//! Addresses used in namespaces: only 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The start of every headless Chromium command line of the tests: no sandbox (root in a
/// namespace), no GPU, and nothing that reaches out on its own (QUIC, background networking,
/// component updates, sync), so the browser talks only to what the test points it at.
pub const CHROMIUM_HEADLESS: &[&str] = &[
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

pub mod browser;
pub mod dhcp;
pub mod docs;
mod http;
mod iperf;
mod lan;
mod links;
mod netns;
pub mod nets;
mod packets;
mod pki;
mod pty;
pub mod relay;
mod sites;
mod switch;
mod tables;
mod transfer;
mod wan;

pub use {
    http::*, iperf::*, lan::*, netns::*, packets::*, pki::*, pty::*, sites::*, switch::*,
    tables::*, transfer::*, wan::*,
};

// ---------------------------------------------------------------------------------------------
// basics

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this test process.
pub fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Makes `bin()` answer `path` (unless `ETHERWS_BIN` is set); the first call wins.
pub fn use_binary(path: PathBuf) {
    let _ = BINARY.set(path);
}

/// The etherws binary under test: `ETHERWS_BIN`, else what `use_binary()` named, else the
/// `etherws` in the cargo target directory this test runs from (`target/<profile>/deps/<test>`;
/// cargo builds a package's binaries before its integration tests).
pub fn bin() -> OsString {
    if let Some(b) = std::env::var_os("ETHERWS_BIN") {
        return b;
    }
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the running test's path");
            exe.ancestors()
                .skip(1)
                .map(|dir| dir.join("etherws"))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("no etherws binary above {}", exe.display()))
        })
        .clone()
        .into()
}

/// The name of the running test: the test harness names each test's thread after it, so no
/// test has to type its own name.
pub fn this_test() -> String {
    thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string()
}

/// True when the test can run: as root, with every tool in `tools` installed. Otherwise it
/// panics under CI (`CI=true`), or prints a loud SKIPPED line and returns false (the caller then
/// returns early).
pub fn needs(tools: &[&str]) -> bool {
    require_root() && tools.iter().all(|t| require_tool(t))
}

/// True when running as root. Otherwise: panics under CI (`CI=true`), or prints a loud SKIPPED
/// line and returns false (the caller then returns early).
pub fn require_root() -> bool {
    let test = this_test();
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

/// Removes the proxy variables (`http_proxy`, `NO_PROXY`, ...) from `c`'s environment.
pub fn clear_proxy_env(c: &mut Command) {
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
