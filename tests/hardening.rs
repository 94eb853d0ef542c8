//! Attacks on the switch, each as a hostile user would make it, against the real binary in
//! network namespaces (root). Every test asserts that the attack failed, then that the switch
//! still answers `listport` within a second and two honest hosts still ping each other through
//! it ([`HonestLan::still_serves`]).
//!
//! - a web page's cross-site or DNS-rebinding request to the control API (the browser itself
//!   drives it in `cross_site.rs`; here the raw requests);
//! - device files, FIFOs and huge files named through the control API;
//! - one client address filling the forwarding table;
//! - simultaneous and oversized password guesses, and throttles shared between listeners;
//! - slow and oversized control request bodies, and floods of slow connections;
//! - loops the switch would build itself (an interface twice, a client to its own URL) and
//!   loops through the outside world;
//! - control characters in peer-supplied strings (logs, `ctl` output), redirects to `ctl`;
//! - RFC 6455 and HTTP details: close handshakes, protocol errors, HTTP/1.0 upgrades;
//!   interface settings and TAP names the API must refuse itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use etherws_testkit::*;
use serde_json::Value;

/// `ctl` options for the switches of these tests that protect the control API with a password.
const ADMIN: &[&str] = &["--ctluser", "admin", "--ctlpasswd", "admin-pw"];

fn basic(user: &str, passwd: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{passwd}"))
}

/// A JSON-RPC POST to the control API with the given extra header lines.
fn ctl_post(host: &str, headers: &str, body: &str) -> String {
    format!(
        "POST /ctl HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn add_tap(name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"etherws.control.addPort","params":{{"type":"tap","target":"{name}"}},"id":1}}"#
    )
}

const LIST_PORT: &str = r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#;

/// A WebSocket upgrade request (HTTP/1.1 unless `version` says otherwise).
fn upgrade(version: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    format!(
        "GET / {version}\r\nHost: 127.0.0.1:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    )
}

/// The JSON-RPC answer to `body`, from the control API without credentials.
fn rpc(lan: &HonestLan, body: &str) -> Value {
    rpc_in(&lan.sw_ns, lan.ctl_addr(), "/ctl", body)
}

/// The `error.data` of a JSON-RPC answer that must be an error.
fn rpc_error(answer: &Value) -> String {
    assert!(answer.get("error").is_some(), "expected an error: {answer}");
    answer["error"]["data"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The names of the interfaces in `ns`.
fn links(ns: &Netns) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// An `htpasswd` file made by the real tool.
fn htpasswd(dir: &TempDir, name: &str, flag: &str, user: &str, passwd: &str) -> String {
    let path = dir.file(name);
    run_ok(&["htpasswd", "-cb", flag, &path, user, passwd]);
    path
}

// ---------------------------------------------------------------------------------------------
// 1. cross-site requests and DNS rebinding

#[test]
fn control_api_refuses_what_a_web_page_sends() {
    if !needs(&["ping"]) {
        return;
    }
    let lan = HonestLan::new("hxs", &["--ctlallowhost", "switch.example"]);
    let ctl = lan.ctl_addr();
    let json = "Content-Type: application/json\r\n";
    let attacks = [
        (
            "simple cross-site POST",
            ctl_post(
                "127.0.0.1:7867",
                "Content-Type: text/plain;charset=UTF-8\r\nOrigin: http://attacker.example\r\n",
                &add_tap("evil1"),
            ),
            403,
        ),
        (
            "text/plain POST",
            ctl_post(
                "127.0.0.1:7867",
                "Content-Type: text/plain;charset=UTF-8\r\n",
                &add_tap("evil0"),
            ),
            415,
        ),
        (
            "no Content-Type",
            ctl_post("127.0.0.1:7867", "", &add_tap("evil2")),
            415,
        ),
        (
            "foreign Origin",
            ctl_post(
                "127.0.0.1:7867",
                &format!("{json}Origin: http://attacker.example\r\n"),
                &add_tap("evil3"),
            ),
            403,
        ),
        (
            "opaque Origin",
            ctl_post(
                "127.0.0.1:7867",
                &format!("{json}Origin: null\r\n"),
                &add_tap("evil4"),
            ),
            403,
        ),
        (
            "DNS rebinding",
            ctl_post(
                "rebind.attacker.example:7867",
                &format!("{json}Origin: http://rebind.attacker.example:7867\r\n"),
                &add_tap("evil5"),
            ),
            421,
        ),
    ];
    for (what, request, status) in &attacks {
        let resp = lan.http(None, ctl, request);
        assert_eq!(resp.status, *status, "{what}: {resp:?}");
        assert!(!resp.body.contains("entries"), "{what}: {resp:?}");
    }
    // Nothing was added, and each refusal was logged.
    assert_eq!(lan.sw.listport().len(), 2);
    assert!(!links(&lan.sw_ns).iter().any(|l| l.starts_with("evil")));
    assert!(
        lan.sw.log().matches("control request refused").count() >= attacks.len(),
        "{}",
        lan.sw.log()
    );
    // What ctl and scripts send keeps working: the listener's address, localhost, an allowed
    // name, and the API's own origin.
    for (host, origin) in [
        ("127.0.0.1:7867", None),
        ("localhost:7867", None),
        ("switch.example:7867", None),
        ("127.0.0.1:7867", Some("http://127.0.0.1:7867")),
    ] {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let resp = lan.http(
            None,
            ctl,
            &ctl_post(host, &format!("{json}{origin}"), LIST_PORT),
        );
        assert_eq!(resp.status, 200, "Host {host}: {resp:?}");
        assert!(resp.body.contains("entries"), "Host {host}: {resp:?}");
    }
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 2. files named through the control API

#[test]
fn files_named_through_the_control_api_are_bounded() {
    if !needs(&["ping"]) {
        return;
    }
    let lan = HonestLan::new("hfile", &[]);
    let dir = TempDir::new("hfile");
    let big = dir.write("big.pem", &"-----BEGIN CERTIFICATE-----\n".repeat(80_000));
    let fifo = dir.file("fifo.pem");
    run_ok(&["mkfifo", &fifo]);
    let a_dir = dir.path().to_string_lossy().into_owned();
    let cases = [
        ("/dev/kmsg", "not a regular file"),
        ("/dev/zero", "not a regular file"),
        (fifo.as_str(), "not a regular file"),
        (a_dir.as_str(), "not a regular file"),
        (big.as_str(), "larger than 1048576 bytes"),
    ];
    for (path, reason) in cases {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "method": "etherws.control.addPort", "id": 1,
            "params": {"type": "client", "target": "wss://127.0.0.1:8443/",
                       "options": {"cacerts": path}},
        });
        let t0 = Instant::now();
        let answer = rpc(&lan, &body.to_string());
        let data = rpc_error(&answer);
        assert!(data.contains(reason), "cacerts {path}: {data}");
        // The other requests are answered meanwhile and after.
        assert!(rpc(&lan, LIST_PORT)["result"]["entries"].is_array());
        eprintln!("cacerts {path}: refused in {:?}: {data}", t0.elapsed());
    }
    assert_eq!(lan.sw.listport().len(), 2);
    // Start-up files are held to the same rules.
    let out = sw_start_fails(&["--htpasswd", "/dev/zero", "--port", "0", "--ctlport", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a regular file"), "{}", show(&out));
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 3. one client address filling the forwarding table

/// A WebSocket client in the switch's namespace from source address `src`, on a thread of its
/// own: sends `frames`, then counts the unicast IPv4 frames to `watch` it receives until told
/// to stop.
struct Flooder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: thread::JoinHandle<usize>,
}

impl Flooder {
    fn start(lan: &HonestLan, src: &str, frames: Vec<Vec<u8>>, watch: [u8; 6]) -> Flooder {
        use tokio_tungstenite::tungstenite::{Message, client};
        let tcp = lan
            .sw_ns
            .tcp_connect_from(Some(src.parse().unwrap()), lan.ws_addr())
            .expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (mut ws, _) = client::client("ws://127.0.0.1:8080/", tcp).expect("handshake");
        for f in frames {
            ws.send(Message::Binary(f.into())).expect("send");
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let seen = thread::spawn(move || {
            let mut n = 0;
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Binary(f)) => {
                        if f.len() >= 14 && f[0..6] == watch && f[12..14] == [0x08, 0x00] {
                            n += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio_tungstenite::tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            n
        });
        Flooder { stop, seen }
    }

    fn finish(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.seen.join().expect("flooder thread")
    }
}

#[test]
fn one_address_cannot_fill_the_forwarding_table() {
    if !needs(&["ping"]) {
        return;
    }
    let lan = HonestLan::new(
        "hfdb",
        &[
            "--max-macs",
            "300",
            "--max-macs-per-addr",
            "150",
            "--max-macs-per-port",
            "100",
        ],
    );
    let h2_mac = parse_mac(&lan.h2.mac("eth0"));
    // Two attacker addresses, three connections each, 100 made-up stations per connection.
    let mut flooders = Vec::new();
    for (a, src) in ["127.0.0.1", "127.0.0.2"].iter().enumerate() {
        for c in 0..3u8 {
            let frames = (0..100u8)
                .map(|i| {
                    build_frame(
                        [0xff; 6],
                        [0x02, 0xee, a as u8, c, i, 1],
                        None,
                        0x88b5,
                        &[0; 46],
                    )
                })
                .collect();
            flooders.push(Flooder::start(&lan, src, frames, h2_mac));
        }
    }
    let fdb_len = || lan.sw.listfdb().len();
    poll("the table to fill", Duration::from_secs(10), || {
        let n = fdb_len();
        if n >= 300 {
            Ok(())
        } else {
            Err(format!("{n} entries"))
        }
    });
    // No address holds more than its share.
    let ports = lan.sw.listport();
    let fdb = lan.sw.listfdb();
    for src in ["127.0.0.1:", "127.0.0.2:"] {
        let theirs: Vec<u32> = ports
            .iter()
            .filter(|p| p.target.starts_with(src))
            .map(|p| p.port)
            .collect();
        let held = fdb.iter().filter(|r| theirs.contains(&r.port)).count();
        assert!(held <= 150, "{src} holds {held} entries");
    }
    // h2 is forgotten (its port re-added), then must be learned in the full table: the unicast
    // between the honest hosts reaches h2 alone, not the attackers.
    let h2_port = ports.iter().find(|p| p.target == "h2").unwrap().port;
    lan.sw.ctl_ok(&["delport", &h2_port.to_string()]);
    lan.sw.ctl_ok(&["addport", "netdev", "h2"]);
    lan.h1.ip(&["neigh", "flush", "all"]);
    lan.h2.ip(&["neigh", "flush", "all"]);
    ping(&lan.h1, HonestLan::H2);
    let fdb = lan.sw.listfdb();
    assert!(fdb.len() <= 300);
    assert!(
        fdb.iter().any(|r| r.mac == format_mac(h2_mac)),
        "h2 not learned in a full table: {fdb:?}"
    );
    let leaked: usize = flooders.into_iter().map(Flooder::finish).sum();
    assert_eq!(leaked, 0, "unicast to h2 flooded to the attackers");
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 4, 7, 9. password guessing

#[test]
fn password_guessing_cannot_outrun_the_throttle() {
    if !needs(&["ping", "htpasswd"]) {
        return;
    }
    let dir = TempDir::new("hpw");
    let ws_file = htpasswd(&dir, "ws.htpasswd", "-m", "alice", "right");
    let ctl_file = htpasswd(&dir, "ctl.htpasswd", "-s", "admin", "admin-pw");
    let lan = HonestLan::with_ctl_opts(
        "hpw",
        &["--htpasswd", &ws_file, "--ctlhtpasswd", &ctl_file],
        ADMIN,
    );
    // 200 simultaneous wrong guesses from one address.
    let wrong = basic("alice", "wrong");
    // Each gets a status, or (past the pending-connection limit of its address) is closed
    // at once: None.
    let statuses: Vec<Option<u16>> = thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let req = upgrade("HTTP/1.1", Some(&wrong));
                let lan = &lan;
                s.spawn(move || {
                    let mut c = lan
                        .sw_ns
                        .tcp_connect_from(Some("127.0.0.1".parse().unwrap()), lan.ws_addr())
                        .ok()?;
                    c.write_all(req.as_bytes()).ok()?;
                    status_within(&mut c, 20)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |want: Option<u16>| statuses.iter().filter(|&&s| s == want).count();
    let (checked, throttled, closed) = (count(Some(401)), count(Some(429)), count(None));
    eprintln!(
        "200 simultaneous guesses: {checked} checked (401), {throttled} refused (429), \
         {closed} closed at once"
    );
    assert!(
        checked <= 10,
        "{checked} guesses were checked: {statuses:?}"
    );
    assert_eq!(checked + throttled + closed, 200, "{statuses:?}");
    // The control listener has its own throttle: the administrator is not locked out.
    lan.sw.ctl_ok(&["listport"]);
    // Credentials longer than the htpasswd tool can make are refused without hashing.
    let long = basic("alice", &"x".repeat(4000));
    let resp = lan.http(
        Some("127.0.0.3"),
        lan.ws_addr(),
        &upgrade("HTTP/1.1", Some(&long)),
    );
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(
        lan.sw.log().contains("malformed or oversized credentials"),
        "{}",
        lan.sw.log()
    );
    // The right password from another address still gets in.
    let resp = lan.http(
        Some("127.0.0.4"),
        lan.ws_addr(),
        &upgrade("HTTP/1.1", Some(&basic("alice", "right"))),
    );
    assert_eq!(resp.status, 101, "{resp:?}");
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 5. slow and large control requests

/// Reads a response head within `secs`; None if the server said nothing (or closed).
fn status_within(s: &mut TcpStream, secs: u64) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

#[test]
fn slow_and_large_control_requests_are_bounded() {
    if !needs(&["ping", "htpasswd"]) {
        return;
    }
    let dir = TempDir::new("hslow");
    let ctl_file = htpasswd(&dir, "ctl.htpasswd", "-s", "admin", "admin-pw");
    let lan = HonestLan::with_ctl_opts("hslow", &["--ctlhtpasswd", &ctl_file], ADMIN);
    let connect = |src: &str| {
        lan.sw_ns
            .tcp_connect_from(Some(src.parse().unwrap()), lan.ctl_addr())
            .expect("connect")
    };
    let head = |auth: Option<&str>, len: usize| {
        let auth = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /ctl HTTP/1.1\r\nHost: 127.0.0.1:7867\r\nContent-Type: application/json\r\n\
             {auth}Content-Length: {len}\r\n\r\n"
        )
    };
    // Unauthenticated: refused at once, the 2 MB body never awaited.
    let mut s = connect("127.0.0.2");
    s.write_all(head(None, 2 << 20).as_bytes()).unwrap();
    assert_eq!(status_within(&mut s, 5), Some(401));
    // Authenticated but too large: refused at once.
    let admin = basic("admin", "admin-pw");
    let mut s = connect("127.0.0.2");
    s.write_all(head(Some(&admin), 2 << 20).as_bytes()).unwrap();
    assert_eq!(status_within(&mut s, 5), Some(413));
    // Authenticated, small, but trickled: cut off.
    let mut s = connect("127.0.0.2");
    s.write_all(head(Some(&admin), LIST_PORT.len()).as_bytes())
        .unwrap();
    s.write_all(&LIST_PORT.as_bytes()[..5]).unwrap();
    assert_eq!(status_within(&mut s, 30), Some(408));
    // A flood of connections that never finish their request: most are closed at once, and
    // the administrator (another address) is served meanwhile.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = connect("127.0.0.2");
            s.write_all(b"POST /ctl HTTP/1.1\r\nHost: 127.0.0.1:7867\r\n")
                .unwrap();
            s
        })
        .collect();
    let closed = held
        .iter()
        .filter(|s| {
            let mut s = *s;
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            match s.read(&mut [0u8; 64]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert!(
        closed >= 80,
        "only {closed} of 100 slow connections were closed at once"
    );
    lan.sw.ctl_ok(&["listport"]);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", lan.sw.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap();
    eprintln!("switch RSS with 100 slow connections: {rss} kB");
    assert!(rss < 100 * 1024, "switch RSS {rss} kB");
    drop(held);
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 6. loops

fn port_json(lan: &HonestLan) -> Vec<Value> {
    rpc_in(&lan.sw_ns, lan.ctl_addr(), "/ctl", LIST_PORT)["result"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn loops_are_refused_or_broken() {
    if !needs(&["ping"]) {
        return;
    }
    let lan = HonestLan::new("hloop", &["--loop-block", "120"]);
    // The same interface twice.
    let out = lan.sw.ctl(&["addport", "netdev", "h1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is port 1 already"), "{}", show(&out));
    // A client port to the switch's own URL.
    let out = lan.sw.ctl(&["addport", "client", &lan.ws_url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("itself"), "{}", show(&out));
    assert_eq!(lan.sw.listport().len(), 2);
    // A loop through the outside world: two ports on one wire.
    veth(&lan.sw_ns, "l1", None, &lan.sw_ns, "l2", None);
    lan.sw.ctl_ok(&["addport", "netdev", "l1"]);
    lan.sw.ctl_ok(&["addport", "netdev", "l2"]);
    lan.h1.ip(&["neigh", "flush", "all"]);
    let _ = lan
        .h1
        .exec(&["ping", "-n", "-c", "1", "-W", "1", HonestLan::H2]);
    let blocked = poll("the loop guard", Duration::from_secs(15), || {
        let rows = port_json(&lan);
        let blocked: Vec<Value> = rows
            .iter()
            .filter(|r| r["loop_blocked"] == Value::Bool(true))
            .cloned()
            .collect();
        if blocked.is_empty() {
            Err(format!("{rows:?}"))
        } else {
            Ok(blocked)
        }
    });
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let target = blocked[0]["target"].as_str().unwrap().to_string();
    assert!(target == "l1" || target == "l2", "{blocked:?}");
    assert!(blocked[0]["loop_blocks"].as_u64() >= Some(1));
    let row = lan
        .sw
        .listport()
        .into_iter()
        .find(|p| p.target == target)
        .unwrap();
    assert_eq!(row.state, "blocked");
    assert!(lan.sw.log().contains("loop suspected"), "{}", lan.sw.log());
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 8. log and terminal injection

/// A one-shot HTTP server on loopback (root namespace) answering every request with `answer`.
fn fake_server(answer: String) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (addr, h)
}

fn http_answer(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `etherws ctl listport` against a switch that answers `result` (a JSON-RPC answer): its
/// output, and its standard output as text.
fn ctl_listport_answered(result: &str) -> (std::process::Output, String) {
    let (addr, h) = fake_server(http_answer("200 OK", "", result));
    let out = etherws(None)
        .args(["ctl", "--ctlurl", &format!("http://{addr}/ctl"), "listport"])
        .output()
        .unwrap();
    h.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

#[test]
fn peer_strings_cannot_forge_logs_or_drive_terminals() {
    if !needs(&["ping"]) {
        return;
    }
    let dir = TempDir::new("hesc");
    let ws_file = dir.write("ws.htpasswd", "alice:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=\n");
    let lan = HonestLan::new("hesc", &["--htpasswd", &ws_file]);
    let forged = basic("eve\nINFO etherws forged line\u{1b}[2J", "x");
    let resp = lan.http(None, lan.ws_addr(), &upgrade("HTTP/1.1", Some(&forged)));
    assert_eq!(resp.status, 401);
    let log = lan.sw.log();
    assert!(
        log.contains(r"eve\nINFO etherws forged line\u{1b}[2J"),
        "user name not escaped:\n{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("INFO etherws forged")));
    assert!(!log.contains('\u{1b}'), "raw ESC in the log");
    // A bidirectional override would make the rest of the line read backwards.
    let reversed = basic("mallory\u{202e}nimda", "x");
    let resp = lan.http(None, lan.ws_addr(), &upgrade("HTTP/1.1", Some(&reversed)));
    assert_eq!(resp.status, 401);
    let log = lan.sw.log();
    assert!(
        log.contains(r"mallory\u{202e}nimda"),
        "override not escaped:\n{log}"
    );
    assert!(!log.contains('\u{202e}'), "raw U+202E in the log");

    // ctl shows what a switch sends with its control characters escaped…
    let evil = r#"{"jsonrpc":"2.0","id":0,"result":{"entries":[{"port":1,"type":"tap","target":"\u001b]0;owned\u0007\u001b[2Jevil","tx":0,"rx":0,"shut":false}]}}"#;
    let (out, stdout) = ctl_listport_answered(evil);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(stdout.contains(r"\u{1b}[2Jevil"), "{stdout:?}");
    let evil = r#"{"jsonrpc":"2.0","id":0,"result":{"entries":[{"port":1,"type":"tap","target":"ws://a\u202ecod.exe","tx":0,"rx":0,"shut":false}]}}"#;
    let (_, stdout) = ctl_listport_answered(evil);
    assert!(
        !stdout.contains('\u{202e}') && stdout.contains(r"ws://a\u{202e}cod.exe"),
        "{stdout:?}"
    );
    // …and never follows a redirect to show another server's answer as the switch's.
    let other = r#"{"jsonrpc":"2.0","id":0,"result":{"entries":[{"port":7,"type":"tap","target":"elsewhere","tx":0,"rx":0,"shut":false}]}}"#;
    let (other_addr, other_h) = fake_server(http_answer("200 OK", "", other));
    let (addr, h) = fake_server(http_answer(
        "302 Found",
        &format!("Location: http://{other_addr}/ctl\r\n"),
        "",
    ));
    let out = etherws(None)
        .args(["ctl", "--ctlurl", &format!("http://{addr}/ctl"), "listport"])
        .output()
        .unwrap();
    h.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stdout.contains("HTTP Error 302"), "{}", show(&out));
    assert!(!stdout.contains("elsewhere"), "{}", show(&out));
    // Unblock the unused server.
    let _ = TcpStream::connect(other_addr);
    other_h.join().unwrap();
    lan.still_serves();
}

// ---------------------------------------------------------------------------------------------
// 10. protocol details and the API's own checks

/// Reads one WebSocket frame from the server (unmasked, payload < 126 bytes): opcode and
/// payload.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[1] & 0x7f);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0f, payload))
}

/// Opens a WebSocket by hand and returns the socket after the 101.
fn raw_ws(lan: &HonestLan) -> TcpStream {
    let mut s = lan.sw_ns.tcp_connect(lan.ws_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(upgrade("HTTP/1.1", None).as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[test]
fn protocol_details_and_api_checks() {
    if !needs(&["ping"]) {
        return;
    }
    let lan = HonestLan::new("hproto", &[]);
    // A client's close frame is answered with a close frame (RFC 6455 5.5.1).
    let mut s = raw_ws(&lan);
    // FIN+close, masked, payload 2 (code 1000), mask 0.
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).unwrap();
    let (op, payload) = read_frame(&mut s).expect("a close frame back");
    assert_eq!((op, payload.get(..2)), (0x8, Some(&[0x03, 0xe8][..])));
    // An unmasked client frame is a protocol error: close 1002 before the connection goes.
    let mut s = raw_ws(&lan);
    s.write_all(&[0x82, 0x02, 0xab, 0xcd]).unwrap();
    let (op, payload) = read_frame(&mut s).expect("a close frame");
    assert_eq!((op, payload.get(..2)), (0x8, Some(&[0x03, 0xea][..])));
    // An HTTP/1.0 upgrade is refused.
    let resp = lan.http(None, lan.ws_addr(), &upgrade("HTTP/1.0", None));
    assert_eq!(resp.status, 400, "{resp:?}");
    // The control API checks interface settings itself (not only ctl).
    let setif = |params: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"etherws.control.setInterface","params":{{"port":1,{params}}},"id":1}}"#
        );
        rpc_error(&rpc(&lan, &body))
    };
    assert!(setif(r#""mtu":500"#).contains("Invalid MTU"));
    for a in ["127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0"] {
        let data = setif(&format!(r#""address":"{a}""#));
        assert!(data.contains("Invalid address"), "{a}: {data}");
    }
    assert!(setif(r#""netmask":"255.0.255.0""#).contains("Invalid netmask"));
    // TAP names the kernel would rewrite or cut short.
    for name in ["ews%d", "ews\\u0000x"] {
        let data = rpc_error(&rpc(&lan, &add_tap(name)));
        assert!(data.contains("invalid interface name"), "{name}: {data}");
    }
    let names = links(&lan.sw_ns);
    assert!(!names.iter().any(|l| l.starts_with("ews")), "{names:?}");
    lan.still_serves();
}
