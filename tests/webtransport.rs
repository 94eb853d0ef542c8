//! End-to-end test: a web page joins the switch over WebTransport datagrams, as a browser VM
//! (v86) would, and pings a host on the switch's LAN.
//!
//! The switch runs in a namespace with a TAP port carrying [`TAP_IP`], its WebSocket listener
//! on 127.0.0.1:[`WS_PORT`] (plain HTTP) and its QUIC listener on UDP [`QUIC_PORT`] with
//! `--webtransport-selfsigned`. The real `chromium`, headless and with QUIC on (the other
//! browser tests turn it off), loads a page this test serves at `http://127.0.0.1:8000/` (a
//! secure context, as WebTransport requires). The page:
//!
//! 1. fetches the certificate's hashes from the switch's `/.well-known/etherws/wt-cert-hash`
//!    (another origin: the answer's `Access-Control-Allow-Origin: *` lets the page read it);
//! 2. opens `new WebTransport('https://127.0.0.1:QUIC_PORT/', {serverCertificateHashes})` and
//!    waits for `ready`;
//! 3. sends, as datagrams, a hand-built ARP request for the TAP's address from a made-up
//!    station ([`PAGE_MAC`], [`PAGE_IP`]), answers the kernel's ARP requests for that address,
//!    then sends a hand-built ICMP echo request (Ethernet, IPv4 and ICMP, checksums computed);
//! 4. reads datagrams until the echo reply comes, and writes `pong` into the DOM.
//!
//! While the page runs, the test polls `listPort` for the QUIC session's `server` port. A
//! second page pins a wrong hash: its session must fail with a `WebTransportError`. A third
//! test gives the switch certificates made by `openssl` and the page their hashes: Chromium
//! takes an ECDSA one valid 10 days, and refuses an RSA one and an ECDSA one valid 15 days.
//!
//! The page holds its load event (`<img src="/hold">`) until it posted its outcome to `/done`,
//! so `--dump-dom` shows the end; there is no `--virtual-time-budget`, whose virtual clock would
//! run the page's timers ahead of the real network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use etherws_testkit::browser::{PageServer, headless_chromium};
use etherws_testkit::*;
use serde_json::Value;

const WS_PORT: u16 = 8080;
const QUIC_PORT: u16 = 4433;
const PAGE_PORT: u16 = 8000;
const WRONG_PAGE_PORT: u16 = 8001;
const TAP: &str = "wt0";
const TAP_IP: &str = "192.0.2.10";
const PAGE_IP: &str = "192.0.2.99";
const PAGE_MAC: &str = "02:00:5e:10:00:99";

/// The page (`@WS_PORT@`, `@TAP_IP@`, `@PAGE_IP@`, `@PAGE_MAC@`, `@WRONG@` and `@PINNED@` are
/// filled in by [`page`]).
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>wt</title></head>
<body>
<img src="/hold" alt="">
<pre id="log"></pre>
<p id="result">running</p>
<script>
"use strict";
const HASH_URL = "http://127.0.0.1:@WS_PORT@/.well-known/etherws/wt-cert-hash";
const WRONG = @WRONG@;
const PINNED = @PINNED@;
const ip = s => s.split(".").map(Number);
const TAP_IP = ip("@TAP_IP@"), MY_IP = ip("@PAGE_IP@");
const MY_MAC = "@PAGE_MAC@".split(":").map(h => parseInt(h, 16));
const BCAST = [255, 255, 255, 255, 255, 255];
function log(s) { document.getElementById("log").textContent += s + "\n"; }
function b64(s) { return Uint8Array.from(atob(s), c => c.charCodeAt(0)); }
function csum(b) {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return (~s) & 0xffff;
}
function put16(b, at, v) { b[at] = v >> 8; b[at + 1] = v & 0xff; }
function eth(dst, type, payload) {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0); f.set(MY_MAC, 6); put16(f, 12, type); f.set(payload, 14);
  return f;
}
function arp(op, tha, tpa) {
  const a = new Uint8Array(28);
  put16(a, 0, 1); put16(a, 2, 0x0800); a[4] = 6; a[5] = 4; put16(a, 6, op);
  a.set(MY_MAC, 8); a.set(MY_IP, 14); a.set(tha, 18); a.set(tpa, 24);
  return eth(op === 1 ? BCAST : tha, 0x0806, a);
}
function echo(dstMac) {
  const data = new TextEncoder().encode("etherws-webtransport");
  const icmp = new Uint8Array(8 + data.length);
  icmp[0] = 8; put16(icmp, 4, 0x4557); put16(icmp, 6, 1); icmp.set(data, 8);
  put16(icmp, 2, csum(icmp));
  const h = new Uint8Array(20);
  h[0] = 0x45; put16(h, 2, 20 + icmp.length); put16(h, 4, 0x1234); h[8] = 64; h[9] = 1;
  h.set(MY_IP, 12); h.set(TAP_IP, 16); put16(h, 10, csum(h));
  const p = new Uint8Array(20 + icmp.length); p.set(h, 0); p.set(icmp, 20);
  return eth(dstMac, 0x0800, p);
}
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const type = f => (f[12] << 8) | f[13];
function arpReplyFor(f) {
  // An ARP reply from the TAP's address to us: its sender's MAC.
  if (f.length < 42 || type(f) !== 0x0806 || ((f[20] << 8) | f[21]) !== 2) return null;
  return same(f.slice(28, 32), TAP_IP) ? f.slice(22, 28) : null;
}
function isArpRequestForUs(f) {
  return f.length >= 42 && type(f) === 0x0806 && ((f[20] << 8) | f[21]) === 1 &&
    same(f.slice(38, 42), MY_IP);
}
function isEchoReply(f) {
  return f.length >= 42 && type(f) === 0x0800 && f[23] === 1 && same(f.slice(26, 30), TAP_IP) &&
    same(f.slice(30, 34), MY_IP) && f[34] === 0;
}
let pending = null;
async function next(rd, ms) {
  if (!pending) pending = rd.read();
  const t = new Promise(r => setTimeout(() => r(null), ms));
  const v = await Promise.race([pending, t]);
  if (v === null) return null;
  pending = null;
  if (v.done) throw new Error("datagrams ended");
  return new Uint8Array(v.value);
}
// Sends `frame` every half second until a datagram satisfies `want` (20 s at most).
async function exchange(w, rd, frame, want) {
  for (let tries = 0; tries < 40; tries++) {
    await w.write(frame);
    const until = Date.now() + 500;
    while (Date.now() < until) {
      const f = await next(rd, until - Date.now());
      if (f === null) break;
      if (isArpRequestForUs(f)) await w.write(arp(2, f.slice(22, 28), f.slice(28, 32)));
      const got = want(f);
      if (got) return got;
    }
  }
  throw new Error("no answer to " + Array.from(frame.slice(12, 14)).join(","));
}
async function run() {
  const j = PINNED || await (await fetch(HASH_URL, {cache: "no-store"})).json();
  log("hashes " + JSON.stringify(j));
  const hashes = WRONG ? [new Uint8Array(32).fill(7)] : j.hashes.map(b64);
  const url = "https://127.0.0.1:" + j.port + "/";
  const wt = new WebTransport(url, {
    serverCertificateHashes: hashes.map(value => ({algorithm: "sha-256", value})),
  });
  await wt.ready;
  log("ready, maxDatagramSize " + wt.datagrams.maxDatagramSize);
  const w = wt.datagrams.writable.getWriter();
  const rd = wt.datagrams.readable.getReader();
  const tapMac = await exchange(w, rd, arp(1, [0, 0, 0, 0, 0, 0], TAP_IP), arpReplyFor);
  log("arp " + Array.from(tapMac).map(x => x.toString(16)).join(":"));
  await exchange(w, rd, echo(tapMac), isEchoReply);
  // Held open a little, so that the test sees the session's port.
  await new Promise(r => setTimeout(r, 1500));
  wt.close();
  return "pong";
}
(async () => {
  let outcome;
  try { outcome = await run(); }
  catch (e) { outcome = "error " + (e && e.name) + ": " + (e && e.message); }
  document.getElementById("result").textContent = outcome;
  await fetch("/done", {method: "POST", body: outcome});
})();
</script>
</body></html>
"#;

/// The page; `wrong`: it pins a made-up hash; `pinned`: the hash it pins (base64) instead of
/// those the switch serves.
fn page(wrong: bool, pinned: Option<&str>) -> String {
    let pinned = pinned.map_or("null".to_string(), |h| {
        serde_json::json!({"hashes": [h], "port": QUIC_PORT}).to_string()
    });
    PAGE.replace("@WS_PORT@", &WS_PORT.to_string())
        .replace("@WRONG@", if wrong { "true" } else { "false" })
        .replace("@PINNED@", &pinned)
        .replace("@TAP_IP@", TAP_IP)
        .replace("@PAGE_IP@", PAGE_IP)
        .replace("@PAGE_MAC@", PAGE_MAC)
}

/// Whether a `listPort` entry is a session of the QUIC listener that carried the page's ARP
/// and ICMP requests (and more, if the page had to send them again) and their answers.
fn is_quic_server(p: &Value) -> bool {
    p["type"] == "server"
        && p["transport"] == "quic"
        && p["rx"].as_u64() >= Some(2)
        && p["tx"].as_u64() >= Some(2)
}

/// What the page logged (`<pre id="log">`), for the test's output.
fn page_log(dom: &str) -> &str {
    dom.split("<pre id=\"log\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or("")
}

/// Loads the page of `port` in headless chromium (QUIC on) while polling `listPort`; returns
/// the DOM, chromium's log, what the page posted, and whether a QUIC server port was seen.
fn load(lan: &Lan, port: u16, page_text: String) -> (String, String, Option<String>, Vec<Value>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let site = PageServer::start(&lan.ns, addr, page_text, None);
    let done = AtomicBool::new(false);
    let seen = thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let ports = lan.sw.rpc("listPort", serde_json::json!({}));
                for p in ports["entries"].as_array().into_iter().flatten() {
                    if p["type"] != "server" {
                        continue;
                    }
                    // The latest reading of each server port.
                    match seen
                        .iter_mut()
                        .find(|s: &&mut Value| s["port"] == p["port"])
                    {
                        Some(s) => *s = p.clone(),
                        None => seen.push(p.clone()),
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        let url = format!("http://127.0.0.1:{port}/");
        let out = headless_chromium(&lan.ns, &url, &[], true);
        done.store(true, Ordering::SeqCst);
        (out, poller.join().expect("listPort poller"))
    });
    let ((dom, log), servers) = seen;
    (dom, log, site.results(), servers)
}

/// The switch in its namespace, with its TAP host.
struct Lan {
    ns: Netns,
    sw: Switch,
}

impl Lan {
    /// The switch with `--webtransport-selfsigned`.
    fn new() -> Lan {
        Self::with(&["--webtransport-selfsigned"])
    }

    /// The switch with its QUIC listener and `tls` (its certificate options).
    fn with(tls: &[&str]) -> Lan {
        let ns = Netns::new("wtS");
        let quic_port = QUIC_PORT.to_string();
        let sw = Switch::builder("wt")
            .netns(&ns)
            .host("127.0.0.1")
            .port(WS_PORT)
            .args(&["--quic", "--quic-port", &quic_port])
            .args(tls)
            .start();
        sw.add_tap(&ns, TAP, TAP_IP);
        Lan { ns, sw }
    }
}

/// A page pings the TAP host over WebTransport datagrams, with the hashes the switch serves.
#[test]
fn a_web_page_pings_a_tap_host_over_webtransport() {
    if !require_root() || !require_tool("chromium") {
        return;
    }
    let lan = Lan::new();
    let (dom, log, posted, servers) = load(&lan, PAGE_PORT, page(false, None));
    eprintln!(
        "webtransport: the page posted {posted:?}; it logged:\n{}",
        page_log(&dom)
    );
    let shown: Vec<String> = servers
        .iter()
        .map(|p| {
            let f = |k: &str| p[k].to_string();
            let keys = [
                "port",
                "transport",
                "target",
                "rx",
                "tx",
                "max_datagram",
                "rtt_ms",
            ];
            keys.map(|k| format!("{k}={}", f(k))).join(" ")
        })
        .collect();
    eprintln!("webtransport: server ports seen: {shown:?}");
    assert!(
        dom.contains("<p id=\"result\">pong</p>"),
        "the page did not get its echo reply (posted: {posted:?})\n--- dumped DOM ---\n{dom}\n\
         --- chromium log ---\n{log}\n--- switch log ---\n{}",
        lan.sw.log()
    );
    assert!(
        servers.iter().any(is_quic_server),
        "listPort never showed the page's QUIC server port with its frames: {shown:?}"
    );
    // A reload gives the QUIC listener its certificate again (with the client CAs read
    // again): a page still joins with the hashes served.
    let said = lan.sw.ctl_ok(&["reload"]);
    eprintln!("webtransport: reload: {}", said.trim());
    let (dom, log, posted, _) = load(&lan, PAGE_PORT + 2, page(false, None));
    assert!(
        dom.contains("<p id=\"result\">pong</p>"),
        "after a reload, the page did not get its echo reply (posted: {posted:?})\n\
         --- dumped DOM ---\n{dom}\n--- chromium log ---\n{log}"
    );
}

/// A page that pins a hash the switch's certificate does not have cannot open a session.
#[test]
fn a_web_page_pinning_a_wrong_hash_is_refused() {
    if !require_root() || !require_tool("chromium") {
        return;
    }
    let lan = Lan::new();
    let (dom, log, posted, servers) = load(&lan, WRONG_PAGE_PORT, page(true, None));
    eprintln!("webtransport: the page posted {posted:?}");
    assert!(
        dom.contains("<p id=\"result\">error WebTransportError"),
        "the page with a wrong hash should end in a WebTransportError (posted: {posted:?})\n\
         --- dumped DOM ---\n{dom}\n--- chromium log ---\n{log}"
    );
    assert!(servers.is_empty(), "a session was admitted: {servers:?}");
}

/// A certificate made by `openssl req -x509` with `newkey` (`rsa:2048`, `ec`) valid for `days`,
/// in `dir`: its key and certificate files, and the SHA-256 of its DER in base64.
fn openssl_cert(dir: &TempDir, name: &str, newkey: &str, days: &str) -> (String, String, String) {
    let (key, cert) = (
        dir.file(&format!("{name}.key")),
        dir.file(&format!("{name}.crt")),
    );
    let mut argv = vec!["openssl", "req", "-x509", "-newkey", newkey];
    if newkey == "ec" {
        argv.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1"]);
    }
    argv.extend(["-days", days, "-nodes", "-subj", "/CN=etherws-wt-test"]);
    argv.extend(["-keyout", &key, "-out", &cert]);
    run_ok(&argv);
    let hash = format!(
        "openssl x509 -in {cert} -outform DER | openssl dgst -sha256 -binary | openssl base64 -A"
    );
    let hash = run_ok(&["sh", "-c", &hash]).trim().to_string();
    assert_eq!(hash.len(), 44, "a SHA-256 in base64: {hash:?}");
    (key, cert, hash)
}

/// Chromium's rules for a pinned certificate, with the certificate given to the switch
/// (`--sslkey`/`--sslcert`): an ECDSA one valid 10 days is taken (the page pings), an RSA one
/// and an ECDSA one valid 15 days are not, whatever their hash (a `WebTransportError`). Why
/// `--webtransport-selfsigned` makes ECDSA certificates valid 12 days and an hour.
#[test]
fn chromium_pins_only_short_lived_ecdsa_certificates() {
    if !require_root() || !require_tool("chromium") || !require_tool("openssl") {
        return;
    }
    let dir = TempDir::new("wt-certs");
    let cases = [
        ("ecdsa-10d", "ec", "10", true),
        ("rsa-10d", "rsa:2048", "10", false),
        ("ecdsa-15d", "ec", "15", false),
    ];
    for (name, newkey, days, pings) in cases {
        let (key, cert, hash) = openssl_cert(&dir, name, newkey, days);
        let lan = Lan::with(&["--sslkey", &key, "--sslcert", &cert]);
        let (dom, log, posted, servers) = load(&lan, PAGE_PORT, page(false, Some(&hash)));
        eprintln!("webtransport: {name}: the page posted {posted:?}");
        let (want, result) = match pings {
            true => ("pong", "<p id=\"result\">pong</p>"),
            false => (
                "a WebTransportError",
                "<p id=\"result\">error WebTransportError",
            ),
        };
        assert!(
            dom.contains(result),
            "{name}: the page should end in {want} (posted: {posted:?})\n--- dumped DOM ---\n\
             {dom}\n--- chromium log ---\n{log}"
        );
        assert_eq!(
            servers.is_empty(),
            !pings,
            "{name}: server ports {servers:?}"
        );
    }
}
