//! The status page (`GET /status` on the control listener) in a real browser: Debian's headless
//! Chromium, driven through its DevTools protocol, against a switch with a TAP port, a netdev
//! port and a client port to a second switch.
//!
//! ```text
//! nsA: switch A (peer), TAP ewsA0 192.0.2.1/24
//!   | veth vAB/vBA (198.51.100.1 / .2)
//! nsB: switch S under test, --htpasswd and --ctlhtpasswd:
//!        port 1 TAP ewsB0 192.0.2.2/24, port 2 netdev vH, port 3 client to A,
//!        port 4 server: switch Q (on loopback in nsB) whose user name is markup;
//!      Chromium, on S's control API at 127.0.0.1:7867
//!   | veth vH/eth0
//! nsH: host 192.0.2.3/24
//! ```
//!
//! It checks that the page shows every port and forwarding entry the control API lists, that
//! its counters and rates move while pings run, that a hostile user name stays text, that the
//! page runs without a script error or policy violation, that it fits a phone's width, and
//! that without credentials all three paths answer 401. Screenshots (laptop and phone) are kept
//! under `target/test-artifacts/`.
//!
//! `ten_thousand_ports` connects 10,000 WebSocket clients (this process, from a namespace of
//! their own: the cheapest real ports) to a switch, twenty of them talking and one sending a
//! runt, and loads the page: it checks that one poll stays under 100 KB, the first render under
//! 10 s and the tab's script heap under 50 MB (all three printed), and that paging, sorting,
//! the filter, "only ports with drops", the top talkers and pinning work.
//!
//! `STATUS_PAGE_HOLD=SECONDS` adds a third screenshot, `status-docs.png` (`docs/status.png`,
//! the image of docs/production.md): that long later, with bursts of traffic meanwhile and
//! without the hostile user's port.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use etherws_testkit::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

const ADMIN: &[&str] = &["--ctluser", "admin", "--ctlpasswd", "admin-pw"];

/// A peer's user name that is markup: it must show as these very characters.
const HOSTILE: &str = r#"<img src=x onerror=document.title='pwned'>"&amp;<b>bold</b>"#;

/// The drop counters every port shows (and `listPort` reports).
const DROPS: [&str; 14] = [
    "rx_dropped",
    "rx_invalid",
    "rx_oversize",
    "storm_dropped",
    "macs_refused",
    "tx_dropped",
    "tx_expired",
    "tx_aqm_dropped",
    "loop_blocks",
    "loop_dropped",
    "vlan_dropped",
    "rate_in_dropped",
    "rate_out_dropped",
    "guard_dropped",
];

fn basic(user: &str, passwd: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{passwd}"))
}

/// Where the screenshots go: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------------------------
// HTTP to the control listener, from inside the switch's namespace

fn get(ns: &Netns, addr: SocketAddr, path: &str, extra: &str) -> HttpResponse {
    let s = ns.tcp_connect(addr).expect("connect to the control API");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    http_exchange(s, &req, path)
}

/// An authenticated JSON-RPC call; returns `result.entries`.
fn entries(ns: &Netns, addr: SocketAddr, method: &str) -> Vec<Value> {
    let body = json!({"jsonrpc": "2.0", "method": format!("etherws.control.{method}"), "id": 1})
        .to_string();
    let req = format!(
        "POST /ctl HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Basic {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        basic("admin", "admin-pw"),
        body.len()
    );
    let s = ns.tcp_connect(addr).expect("connect to the control API");
    let r = http_exchange(s, &req, method);
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method}: HTTP {}, not JSON ({e}): {}", r.status, r.body));
    v["result"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{method}: {v}"))
        .clone()
}

/// The headers every answer on the status paths carries.
fn assert_secured(r: &HttpResponse, what: &str) {
    for (name, want) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(r.header(name), Some(want), "{what}: {name}\n{r:?}");
    }
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.starts_with("access-control-")),
        "{what}: no CORS header\n{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Chromium and its DevTools protocol

/// Headless Chromium in a namespace, with a fresh profile; killed on drop.
struct Browser {
    child: Child,
    _profile: TempDir,
    log: PathBuf,
}

impl Browser {
    /// Starts Chromium in `ns` and connects to its DevTools endpoint (on loopback there).
    fn start(ns: &Netns) -> (Browser, Cdp) {
        let profile = TempDir::new("chromium");
        let log = profile.path().join("chromium.log");
        let logf = fs::File::create(&log).expect("create chromium.log");
        let user_data = format!("--user-data-dir={}", profile.file("profile"));
        let mut argv = CHROMIUM_HEADLESS.to_vec();
        argv.extend([
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            &user_data,
            "about:blank",
        ]);
        let child = ns
            .command(&argv)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start chromium");
        let mut browser = Browser {
            child,
            _profile: profile,
            log,
        };
        let active = PathBuf::from(browser._profile.file("profile")).join("DevToolsActivePort");
        let (port, path) = poll(
            "Chromium's DevTools endpoint",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = browser.child.try_wait() {
                    panic!("chromium exited: {status}\n{}", browser.log());
                }
                let text = fs::read_to_string(&active).map_err(|e| e.to_string())?;
                let mut lines = text.lines();
                match (
                    lines.next().and_then(|p| p.parse::<u16>().ok()),
                    lines.next(),
                ) {
                    (Some(port), Some(path)) => Ok((port, path.to_string())),
                    _ => Err(format!("DevToolsActivePort not complete: {text:?}")),
                }
            },
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = ns.tcp_connect(addr).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let (ws, _) = tungstenite::client::client(format!("ws://{addr}{path}"), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket handshake: {e}"));
        let cdp = Cdp {
            ws,
            next: 0,
            events: Vec::new(),
        };
        (browser, cdp)
    }

    /// Chromium's log, without its complaints about the missing D-Bus.
    fn log(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains(":ERROR:dbus/"))
            .collect();
        lines.join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("===== chromium's log =====\n{}=====", self.log());
        }
    }
}

/// A DevTools protocol connection (to the browser; page commands go to a session).
struct Cdp {
    ws: WebSocket<TcpStream>,
    next: u64,
    /// Events received so far (`method`, `params`, `sessionId`).
    events: Vec<Value>,
}

impl Cdp {
    /// Sends a command and waits for its answer, keeping the events that come meanwhile.
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("{method}: send: {e}"))?;
        loop {
            let m = self.ws.read().map_err(|e| format!("{method}: read: {e}"))?;
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("{method}: not JSON ({e}): {text}"))?;
            if v["id"] == json!(id) {
                if !v["error"].is_null() {
                    return Err(format!("{method}: {}", v["error"]));
                }
                return Ok(v["result"].clone());
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|e| panic!("DevTools {e}"))
    }
}

/// A page (tab) of the browser.
struct Page<'a> {
    cdp: &'a mut Cdp,
    session: String,
}

impl Page<'_> {
    fn open(cdp: &mut Cdp) -> Page<'_> {
        let target = cdp.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = cdp.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        let mut page = Page { cdp, session };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(domain, json!({}));
        }
        page.viewport(1280, 900, 1.0, false);
        page
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.cdp.call(Some(&session), method, params)
    }

    fn viewport(&mut self, width: u32, height: u32, scale: f64, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}),
        );
    }

    /// What the page shows, read from its DOM (see [`SNAPSHOT`]); an error while the page is
    /// still loading.
    fn snapshot(&mut self) -> Result<Value, String> {
        let session = self.session.clone();
        let r = self.cdp.try_call(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": SNAPSHOT, "returnByValue": true}),
        )?;
        let text = r["result"]["value"]
            .as_str()
            .ok_or_else(|| format!("no value: {r}"))?;
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
        if let Some(e) = v.get("notready") {
            return Err(e.to_string());
        }
        Ok(v)
    }

    /// Waits until the page has refreshed at least `n` times; returns what it shows then.
    fn refreshed(&mut self, n: u64, timeout: Duration) -> Value {
        poll(&format!("the page's refresh #{n}"), timeout, || {
            let s = self.snapshot()?;
            match s["refreshed"].as_u64() {
                Some(r) if r >= n => Ok(s),
                _ => Err(format!("{s:#}")),
            }
        })
    }

    fn screenshot(&mut self, file: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = artifacts().join(file);
        fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Script errors, console errors and logged errors (a refused resource or a policy
    /// violation) so far.
    fn errors(&self) -> Vec<String> {
        self.cdp
            .events
            .iter()
            .filter(|e| e["sessionId"] == json!(self.session))
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => {
                    matches!(e["params"]["type"].as_str(), Some("error" | "warning"))
                }
                Some("Log.entryAdded") => {
                    matches!(
                        e["params"]["entry"]["level"].as_str(),
                        Some("error" | "warning")
                    )
                }
                _ => false,
            })
            .map(|e| e.to_string())
            .collect()
    }
}

/// The page's tables as JSON: every `data-field` cell of every row, the graphs' current rates,
/// elements that markup would have made, the serialized DOM, and how wide the document is.
const SNAPSHOT: &str = r##"(() => {
  try {
    if (!document.body || !document.getElementById("ports")) return JSON.stringify({notready: "loading"});
    const rows = (sel) => [...document.querySelectorAll(sel)].map((tr) =>
      Object.fromEntries([...tr.querySelectorAll("td[data-field]")].map((td) => [td.dataset.field, td.textContent])));
    const error = document.getElementById("error");
    const scrollers = [...document.querySelectorAll(".scroll")].map((s) => ({
      table: s.querySelector("table").id, scrolls: s.scrollWidth > s.clientWidth }));
    return JSON.stringify({
      refreshed: Number(document.body.dataset.refreshed || 0),
      error: error.hidden ? null : error.textContent,
      ports: rows("#ports tbody tr[data-port]"),
      counters: rows("#counters tbody tr[data-port]"),
      fdb: rows("#fdb tbody tr[data-mac]"),
      graphs: [...document.querySelectorAll("#graphs figure")].map((f) => ({
        port: f.dataset.port, now: f.querySelector(".now").textContent,
        caption: f.querySelector("figcaption").textContent,
        canvas: f.querySelector("canvas").width })),
      markup: document.querySelectorAll("img, b, iframe, object, embed, script:not([src])").length,
      title: document.title,
      html: document.documentElement.outerHTML,
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      scrollers,
    });
  } catch (e) {
    return JSON.stringify({notready: String(e)});
  }
})()"##;

/// The row of `port` in a snapshot table.
fn row(table: &Value, port: u64) -> &Value {
    table
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["port"] == json!(port.to_string())))
        .unwrap_or_else(|| panic!("no row for port {port}: {table:#}"))
}

/// A count as the page shows it ("1,234").
fn number(cell: &Value) -> u64 {
    let text = cell.as_str().unwrap_or_else(|| panic!("no cell: {cell}"));
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

/// A rate as the page shows it ("12.5"; "—" before two samples).
fn rate(cell: &Value) -> f64 {
    let text = cell.as_str().unwrap_or_else(|| panic!("no cell: {cell}"));
    text.replace(',', "").parse().unwrap_or(0.0)
}

fn fdb_set(rows: &Value) -> BTreeSet<(String, String, String)> {
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let cell = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (cell("vid"), cell("mac"), cell("port"))
        })
        .collect()
}

fn fdb_of(entries: &[Value]) -> BTreeSet<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["vid"].to_string(),
                e["mac"].as_str().unwrap_or_default().to_string(),
                e["port"].to_string(),
            )
        })
        .collect()
}

/// The three paths over plain HTTP: refused without credentials (with the page's headers all
/// the same), served with them, refused to another origin even with them.
fn check_http(ns: &Netns, ctl: SocketAddr) {
    // Without credentials, all three paths are refused, with the page's headers all the same.
    for path in ["/status", "/status.js", "/status.css"] {
        let r = get(ns, ctl, path, "");
        assert_eq!(r.status, 401, "GET {path} without credentials\n{r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic")),
            "{r:?}"
        );
        assert!(
            !r.body.contains("etherws"),
            "GET {path}: nothing of the page\n{r:?}"
        );
        assert_secured(&r, path);
    }
    let wrong = format!("Authorization: Basic {}\r\n", basic("admin", "wrong"));
    assert_eq!(get(ns, ctl, "/status", &wrong).status, 401);
    // With them: the page, its script and style, each with its type and the security headers.
    let admin = format!("Authorization: Basic {}\r\n", basic("admin", "admin-pw"));
    for (path, ct) in [
        ("/status", "text/html; charset=utf-8"),
        ("/status.js", "text/javascript; charset=utf-8"),
        ("/status.css", "text/css; charset=utf-8"),
    ] {
        let r = get(ns, ctl, path, &admin);
        assert_eq!(r.status, 200, "GET {path}\n{r:?}");
        assert_eq!(r.header("content-type"), Some(ct), "{path}");
        assert_secured(&r, path);
    }
    let page = get(ns, ctl, "/status", &admin);
    assert!(
        page.body
            .contains(r#"<meta name="etherws-ctlpath" content="/ctl">"#),
        "{}",
        page.body
    );
    // A page on another origin gets nothing, even with the administrator's credentials.
    let cross = format!("{admin}Origin: http://attacker.example\r\n");
    assert_eq!(get(ns, ctl, "/status", &cross).status, 403);
}

#[test]
fn status_page_in_a_browser() {
    if !needs(&["ping", "htpasswd", "chromium"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = TempDir::new("status");
    let ws_htpasswd = dir.file("ws.htpasswd");
    run_ok(&["htpasswd", "-cbB", &ws_htpasswd, HOSTILE, "q-pw"]);
    let ctl_htpasswd = dir.file("ctl.htpasswd");
    run_ok(&["htpasswd", "-cbB", &ctl_htpasswd, "admin", "admin-pw"]);

    // The network: A and S joined by a veth, a host on S's netdev port.
    let (ns_a, ns_s) = linked("stat", Sites::A_VETH, Sites::B_VETH);
    let host = Netns::new("statH");
    veth(&host, "eth0", Some("192.0.2.3/24"), &ns_s, "vH", None);
    let sites = Sites::builder("stat")
        .a(|a| a.tap())
        .b(|s| {
            s.tap()
                .netdev("vH", &[])
                .args(&["--htpasswd", &ws_htpasswd, "--ctlhtpasswd", &ctl_htpasswd])
                .switch(|b| b.ctl_opts(ADMIN))
        })
        .connect(&[])
        .start_in(ns_a, ns_s);
    let (s, ns) = (&sites.b.sw, &sites.b.ns);
    // Q, on loopback in S's namespace, connects to S as the hostile user: S's port 4.
    let q = Switch::builder("stat-Q").netns(ns).start();
    q.add_port(
        "client",
        &format!("ws://{}:{}/", Sites::B_VETH, Sites::WS_PORT),
        &["--user", HOSTILE, "--passwd", "q-pw"],
    );
    s.wait_server_port(4);
    ping(ns, Sites::A_TAP);
    ping(&host, Sites::A_TAP);
    eprintln!("network ready after {:?}", t0.elapsed());

    check_http(ns, s.ctl_addr());

    // The browser, on the page, while both hosts ping A's TAP through S.
    let (browser, mut cdp) = Browser::start(ns);
    let mut tab = Page::open(&mut cdp);
    // Ports 1 to 4 pinned: a graph each, after the whole switch's.
    let url = format!(
        "http://admin:admin-pw@127.0.0.1:{}/status#pin=1,2,3,4",
        s.ctl_port
    );
    let ctl = s.ctl_addr();
    tab.call("Page.navigate", json!({"url": url}));
    let first = tab.refreshed(1, Duration::from_secs(15));
    eprintln!("page shown after {:?}", t0.elapsed());
    let _pings = [
        sites
            .b
            .ns
            .daemon(&["ping", "-n", "-q", "-i", "0.2", "-c", "9999", Sites::A_TAP]),
        host.daemon(&["ping", "-n", "-q", "-i", "0.2", "-c", "9999", Sites::A_TAP]),
    ];
    assert_eq!(first["error"], Value::Null, "{first:#}");

    // Every port the control API lists, as it lists it.
    let ports = entries(ns, ctl, "listPort");
    assert_eq!(ports.len(), 4, "{ports:#?}");
    for p in &ports {
        let n = p["port"].as_u64().expect("port number");
        let shown = row(&first["ports"], n);
        let text = |k: &str| shown[k].as_str().unwrap_or_default().to_string();
        let or_dash = |v: &Value| v.as_str().map_or("—".to_string(), str::to_string);
        assert_eq!(
            text("type"),
            p["type"].as_str().unwrap(),
            "port {n}: {shown:#}"
        );
        assert_eq!(text("state"), "up", "port {n}: {shown:#}");
        assert!(
            text("target").starts_with(p["target"].as_str().unwrap()),
            "port {n}: target {:?}, shown {shown:#}",
            p["target"]
        );
        assert_eq!(text("user"), or_dash(&p["user"]), "port {n}");
        assert_eq!(text("path"), or_dash(&p["path"]), "port {n}");
        assert_eq!(text("vlan"), "trunk", "port {n}");
        let datapath = if p["type"] == "netdev" {
            p["datapath"].as_str().unwrap().to_string()
        } else {
            "—".to_string()
        };
        assert_eq!(text("datapath"), datapath, "port {n}");
        let counters = row(&first["counters"], n);
        for field in ["rx", "tx", "queued_bytes"].iter().chain(DROPS.iter()) {
            number(&counters[*field]);
        }
        for field in DROPS {
            assert_eq!(
                number(&counters[field]),
                p[field].as_u64().unwrap(),
                "port {n} {field}"
            );
        }
    }
    let kinds: Vec<&str> = ports.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tap", "netdev", "client", "server"], "{ports:#?}");
    assert_eq!(row(&first["ports"], 2)["datapath"], "af_packet");
    assert_eq!(
        first["graphs"].as_array().map(Vec::len),
        Some(5),
        "{first:#}"
    );

    // The hostile user name is text: no element came of it, the DOM holds it escaped.
    assert_eq!(row(&first["ports"], 4)["user"], HOSTILE);
    assert_eq!(first["markup"], 0, "elements made from a peer's string");
    assert_ne!(first["title"], "pwned");
    let html = first["html"].as_str().unwrap();
    assert!(
        html.contains(
            r#"&lt;img src=x onerror=document.title='pwned'&gt;"&amp;amp;&lt;b&gt;bold&lt;/b&gt;"#
        ),
        "the user name, escaped, in the DOM:\n{html}"
    );
    assert!(!html.contains("<img") && !html.contains("<b>"), "{html}");

    // Every forwarding entry: the three hosts' MACs, where the control API has them.
    let macs = [
        (sites.b.ns.mac("ewsB0"), "1"),
        (host.mac("eth0"), "2"),
        (sites.a.ns.mac("ewsA0"), "3"),
    ];
    poll(
        "the page's forwarding table",
        Duration::from_secs(10),
        || {
            let shown = tab.snapshot()?;
            let listed = fdb_of(&entries(ns, ctl, "listFdb"));
            let page = fdb_set(&shown["fdb"]);
            for (mac, port) in &macs {
                if !page.contains(&("0".to_string(), mac.clone(), port.to_string())) {
                    return Err(format!("{mac} on port {port} not shown: {page:?}"));
                }
            }
            if page == listed {
                Ok(())
            } else {
                Err(format!("page {page:?}\nlistFdb {listed:?}"))
            }
        },
    );

    // The counters move, and the graphs show the traffic.
    let before = tab.snapshot().expect("snapshot");
    let n = before["refreshed"].as_u64().unwrap();
    let after = tab.refreshed(n + 3, Duration::from_secs(10));
    for port in 1..=3 {
        let (b, a) = (
            row(&before["counters"], port),
            row(&after["counters"], port),
        );
        for field in ["rx", "tx"] {
            assert!(
                number(&a[field]) > number(&b[field]),
                "port {port} {field} should move while pings run: {b:#} then {a:#}"
            );
        }
        assert!(
            rate(&a["rx_rate"]) > 0.0 && rate(&a["tx_rate"]) > 0.0,
            "port {port}: frames/s {a:#}"
        );
        let graph = after["graphs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["port"] == json!(port.to_string()))
            .unwrap_or_else(|| panic!("no graph for port {port}: {after:#}"));
        let now = graph["now"].as_str().unwrap();
        assert!(!now.contains('—') && now.contains("rx "), "{graph}");
        assert!(
            graph["canvas"].as_u64() > Some(100),
            "the graph is drawn: {graph}"
        );
    }
    assert_eq!(after["error"], Value::Null, "{after:#}");
    assert_eq!(after["overflow"], 0, "the page fits a laptop's width");

    // A screenshot once the graphs have some history.
    tab.refreshed(7, Duration::from_secs(15));
    tab.screenshot("status.png");

    // On a phone: nothing wider than the screen but the tables, which scroll sideways.
    tab.viewport(390, 844, 2.0, true);
    let n = tab.snapshot().expect("snapshot")["refreshed"]
        .as_u64()
        .unwrap();
    let phone = tab.refreshed(n + 1, Duration::from_secs(10));
    assert_eq!(
        phone["overflow"], 0,
        "the page fits a phone's width: {phone:#}"
    );
    let scrolls = |table: &str| {
        phone["scrollers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["table"] == table && s["scrolls"] == true)
    };
    assert!(
        scrolls("counters"),
        "the counters scroll sideways on a phone"
    );
    tab.screenshot("status-phone.png");

    if let Some(hold) = std::env::var("STATUS_PAGE_HOLD")
        .ok()
        .and_then(|h| h.parse::<u64>().ok())
    {
        tab.viewport(1280, 900, 1.0, false);
        q.ctl_ok(&["delport", "1"]);
        let end = Instant::now() + Duration::from_secs(hold);
        for count in ["60", "150", "30"].iter().cycle() {
            if Instant::now() >= end {
                break;
            }
            host.exec(&["ping", "-n", "-q", "-i", "0.05", "-c", count, Sites::A_TAP]);
            thread::sleep(Duration::from_secs(5));
        }
        // Taken in the middle of a burst.
        let _burst = host.daemon(&["ping", "-n", "-q", "-i", "0.05", "-c", "100", Sites::A_TAP]);
        thread::sleep(Duration::from_secs(3));
        tab.screenshot("status-docs.png");
    }

    let errors = tab.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    drop(cdp);
    drop(browser);
    drop(q);
    eprintln!("status page checked in {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 10,000 ports

/// Ports of the big switch: each a WebSocket client of the test.
const MANY: usize = 10_000;
/// Of them, the first that send traffic (each at its own rate).
const TALKERS: usize = 20;
/// The one that sends a runt: its `rx_invalid` is its only drop.
const RUNT: usize = 4_242;

/// A JSON-RPC call without credentials (the big switch has none); the answer's size in bytes
/// and its `result`.
fn call(ns: &Netns, addr: SocketAddr, method: &str, params: Value) -> (usize, Value) {
    let body = json!({"jsonrpc": "2.0", "method": format!("etherws.control.{method}"),
        "params": params, "id": 1})
    .to_string();
    let req = format!(
        "POST /ctl HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let s = ns.tcp_connect(addr).expect("connect to the control API");
    let r = try_http_exchange(s, &req, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method}: HTTP {}, not JSON ({e}): {}", r.status, r.body));
    assert!(v["error"].is_null(), "{method}: {v}");
    (r.body.len(), v["result"].clone())
}

/// A client's MAC: locally administered, its index in the last four bytes.
fn client_mac(i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, 0x5a, b[0], b[1], b[2], b[3]]
}

fn eth(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f
}

/// Raises this process's soft limit on open files to the hard one (10,000 sockets).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// `MANY` WebSocket clients of `url`, from a thread in `ns` (the sockets are made there), kept
/// connected and read until `stop` says so. The first `TALKERS` each send unicast frames to
/// the next talker, the `i`-th every `i + 1` tenths of a second; `RUNT` sends one runt.
/// Returns, once all are connected, how long that took and each client's address (the
/// target of its port).
fn clients(
    ns: &Netns,
    url: String,
    stop: std::sync::mpsc::Receiver<()>,
) -> (thread::JoinHandle<()>, Duration, Vec<String>) {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let handle = ns.enter(move || {
        // A thread made here is in the namespace too: its sockets are.
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run_clients(url, stop, ready_tx));
        })
    });
    let (took, addrs) = ready
        .recv_timeout(Duration::from_secs(120))
        .expect("the clients to connect");
    (handle, took, addrs)
}

async fn run_clients(
    url: String,
    stop: std::sync::mpsc::Receiver<()>,
    ready: std::sync::mpsc::Sender<(Duration, Vec<String>)>,
) {
    use futures_util::{SinkExt, StreamExt};
    let t0 = Instant::now();
    let conns: Vec<_> = futures_util::stream::iter(0..MANY)
        .map(|i| {
            let url = url.clone();
            async move {
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .unwrap_or_else(|e| panic!("client {i} cannot connect: {e}"));
                ws
            }
        })
        .buffered(200)
        .collect()
        .await;
    let mut sinks = Vec::new();
    let mut addrs = Vec::new();
    for (i, ws) in conns.into_iter().enumerate() {
        if let tokio_tungstenite::MaybeTlsStream::Plain(s) = ws.get_ref() {
            addrs.push(s.local_addr().expect("local address").to_string());
        }
        let (mut sink, mut stream) = ws.split();
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        if i < TALKERS {
            let (me, peer) = (client_mac(i), client_mac((i + 1) % TALKERS));
            tokio::spawn(async move {
                // Learned without a flood: a frame to itself goes nowhere.
                let _ = sink.send(Message::binary(eth(me, me, 60))).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut tick = tokio::time::interval(Duration::from_millis(100 * (i as u64 + 1)));
                loop {
                    tick.tick().await;
                    for _ in 0..5 {
                        let len = 200 + 60 * i;
                        if sink
                            .send(Message::binary(eth(peer, me, len)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        } else if i == RUNT {
            let _ = sink.send(Message::binary(vec![0u8; 10])).await;
            sinks.push(sink);
        } else {
            sinks.push(sink);
        }
    }
    let _ = ready.send((t0.elapsed(), addrs));
    // Until told to stop (or the test is gone).
    let _ = tokio::task::spawn_blocking(move || stop.recv()).await;
    drop(sinks);
}

impl Page<'_> {
    /// The value of a script expression (returned by value).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until the page has refreshed past `n` and `ok` holds of what it shows.
    fn until(&mut self, what: &str, n: u64, ok: impl Fn(&Value) -> bool) -> Value {
        poll(what, Duration::from_secs(20), || {
            let s = self.snapshot()?;
            if s["refreshed"].as_u64().unwrap_or(0) > n && ok(&s) {
                Ok(s)
            } else {
                Err(format!(
                    "refreshed {} ports {}",
                    s["refreshed"],
                    s["ports"].as_array().map_or(0, Vec::len)
                ))
            }
        })
    }

    fn refreshes(&mut self) -> u64 {
        self.snapshot().expect("snapshot")["refreshed"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn port_numbers(rows: &Value) -> Vec<u64> {
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| number(&r["port"]))
        .collect()
}

#[test]
fn ten_thousand_ports() {
    if !needs(&["chromium"]) {
        return;
    }
    let t0 = Instant::now();
    let nofile = raise_nofile();
    assert!(
        nofile > MANY as u64 + 500,
        "RLIMIT_NOFILE {nofile}: too low"
    );
    let ns = Netns::new("st10k");
    let many = MANY.to_string();
    let sw = Switch::builder("st10k")
        .netns(&ns)
        .args(&["--max-conns", &many, "--max-conns-per-addr", &many])
        .die_with_parent()
        .start();
    let ctl = sw.ctl_addr();
    let (stop, stop_rx) = std::sync::mpsc::channel();
    let url = format!("ws://127.0.0.1:{}/", sw.ws_port);
    let (clients, connect, addrs) = clients(&ns, url, stop_rx);
    assert_eq!(addrs.len(), MANY);
    let (_, all) = poll("10,000 ports", Duration::from_secs(30), || {
        let (n, r) = call(&ns, ctl, "statusSummary", json!({"limit": 0}));
        match r["totals"]["ports"].as_u64() {
            Some(p) if p == MANY as u64 => Ok((n, r)),
            p => Err(format!("{p:?} ports")),
        }
    });
    eprintln!(
        "{MANY} clients connected in {connect:?} ({:?} since the start)",
        t0.elapsed()
    );
    assert_eq!(all["matched"], MANY);
    let rss = fs::read_to_string(format!("/proc/{}/status", sw.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_default();
    eprintln!("the switch with {MANY} ports: VmRSS {rss} kB");

    // The switch's own numbers. listPort's whole answer, for scale, and what the page polls.
    let started = Instant::now();
    let (list_size, _) = call(&ns, ctl, "listPort", Value::Null);
    let list_time = started.elapsed();
    let numbers = |r: &Value| -> Vec<u64> {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["port"].as_u64().unwrap())
            .collect()
    };
    let by_port = numbers(&call(&ns, ctl, "statusSummary", json!({"limit": 100})).1);
    let ports = by_port[..50].to_vec();
    // A client's port, found by its address (the port's target).
    let port_of = |addr: &str| -> u64 {
        let (_, r) = call(
            &ns,
            ctl,
            "statusSummary",
            json!({"filter": addr, "limit": 2}),
        );
        assert_eq!(r["matched"], 1, "{addr}: {r}");
        r["rows"][0]["port"].as_u64().unwrap()
    };
    let talkers: Vec<u64> = addrs[..TALKERS].iter().map(|a| port_of(a)).collect();
    let talker = talkers[3];
    let runt = port_of(&addrs[RUNT]);
    let params = json!({"sort": "port", "order": "asc", "filter": "", "drops": false,
        "offset": 0, "limit": 50, "pinned": [talker], "top": 10, "fdb": true});
    let started = Instant::now();
    let (poll_size, answer) = call(&ns, ctl, "statusSummary", params);
    let poll_time = started.elapsed();
    eprintln!(
        "listPort: {list_size} bytes in {list_time:?}; the page's statusSummary: {poll_size} bytes in {poll_time:?}"
    );
    assert!(poll_size < 100_000, "one poll: {poll_size} bytes");
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(50));
    assert_eq!(answer["pinned"][0]["port"], talker);

    // The page, with the talker pinned.
    let (browser, mut cdp) = Browser::start(&ns);
    let mut tab = Page::open(&mut cdp);
    tab.call("Performance.enable", json!({}));
    let url = format!("http://127.0.0.1:{}/status#pin={talker}", sw.ctl_port);
    let shown = Instant::now();
    tab.call("Page.navigate", json!({"url": url}));
    let s = poll("the first render", Duration::from_secs(30), || {
        let s = tab.snapshot()?;
        if s["ports"].as_array().map_or(0, Vec::len) == 50 {
            Ok(s)
        } else {
            Err(format!("refreshed {}", s["refreshed"]))
        }
    });
    let first_render = shown.elapsed();
    assert_eq!(s["error"], Value::Null, "{s:#}");
    assert_eq!(port_numbers(&s["ports"]), ports, "page 1, by port");
    assert_eq!(port_numbers(&s["counters"]), ports);

    // Rates, top talkers and the pinned port's graph, a few refreshes on.
    let n = tab.refreshes();
    let s = tab.until("the pinned port's graph", n + 2, |s| {
        s["graphs"].as_array().is_some_and(|g| {
            g.iter().any(|g| {
                g["port"] == json!(talker.to_string())
                    && g["now"]
                        .as_str()
                        .is_some_and(|t| t.contains("rx ") && !t.contains('—'))
            })
        })
    });
    let graphs: Vec<&str> = s["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["port"].as_str().unwrap())
        .collect();
    assert_eq!(
        graphs,
        ["all", &talker.to_string()],
        "the whole switch, then the pin"
    );
    let top: Vec<u64> = tab
        .eval(r##"[...document.querySelectorAll("#top-bits tbody tr[data-port]")].map((r) => Number(r.dataset.port))"##)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(top.len(), 10, "ten top talkers: {top:?}");
    assert!(
        top.iter().all(|p| talkers.contains(p)),
        "the top talkers are talkers: {top:?}"
    );

    // Paging: the next page is the next 50 ports.
    let n = tab.refreshes();
    tab.eval(r#"document.getElementById("next").click()"#);
    let s = tab.until("page 2", n, |s| {
        port_numbers(&s["ports"]).first() == Some(&by_port[50])
    });
    assert_eq!(port_numbers(&s["ports"]), by_port[50..]);

    // Sorting: by received bits/s, largest first; a talker heads it.
    tab.eval(r##"document.querySelector('#counters th[data-sort="rx_bps"]').click()"##);
    let s = tab.until("sorted by rx bit/s", 0, |s| {
        port_numbers(&s["counters"])
            .first()
            .is_some_and(|p| talkers.contains(p))
    });
    assert_eq!(s["counters"].as_array().map(Vec::len), Some(50));

    // Filtering on one port's target: that port only.
    let target = answer["rows"][7]["target"].as_str().unwrap().to_string();
    let n = tab.refreshes();
    tab.eval(&format!(
        r#"(() => {{ const f = document.getElementById("filter"); f.value = {};
            f.dispatchEvent(new Event("input")); }})()"#,
        json!(target)
    ));
    let s = tab.until("the filter", n, |s| {
        s["ports"].as_array().map(Vec::len) == Some(1)
    });
    assert_eq!(port_numbers(&s["ports"]), [ports[7]]);
    assert_eq!(s["ports"][0]["target"], target.as_str());

    // Only ports with drops: the one that sent a runt.
    let n = tab.refreshes();
    tab.eval(
        r#"(() => { const f = document.getElementById("filter"); f.value = "";
            f.dispatchEvent(new Event("input"));
            const d = document.getElementById("drops-only"); d.checked = true;
            d.dispatchEvent(new Event("change")); })()"#,
    );
    let s = tab.until("only ports with drops", n, |s| {
        port_numbers(&s["ports"]) == [runt]
    });
    assert_eq!(number(&row(&s["counters"], runt)["rx_invalid"]), 1);
    assert_eq!(number(&row(&s["counters"], runt)["dropped"]), 1);

    // A click on its row pins it: its graph appears, and the URL keeps it.
    let n = tab.refreshes();
    tab.eval(&format!(
        r##"document.querySelector('#ports tr[data-port="{runt}"] td[data-field="type"]').click()"##
    ));
    let s = tab.until("the new pin's graph", n, |s| {
        s["graphs"].as_array().map(Vec::len) == Some(3)
    });
    assert_eq!(s["graphs"][2]["port"], runt.to_string());
    let hash = tab.eval("window.location.hash");
    assert_eq!(hash, format!("#pin={talker},{runt}"));

    // The tab's memory.
    tab.eval("window.gc && window.gc()");
    let metrics = tab.call("Performance.getMetrics", json!({}));
    let metric = |name: &str| {
        metrics["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("no {name}: {metrics}"))
    };
    let (heap, nodes) = (metric("JSHeapUsedSize"), metric("Nodes"));
    let usage = tab.call("Runtime.getHeapUsage", json!({}));
    eprintln!(
        "status page, {MANY} ports: first render {first_render:?}, JS heap {:.1} MB used \
         (Runtime.getHeapUsage: {:.1} MB used of {:.1} MB), {nodes} DOM nodes, one poll \
         {poll_size} bytes (listPort: {list_size} bytes)",
        heap / 1e6,
        usage["usedSize"].as_f64().unwrap_or(0.0) / 1e6,
        usage["totalSize"].as_f64().unwrap_or(0.0) / 1e6,
    );
    assert!(first_render < Duration::from_secs(10), "{first_render:?}");
    assert!(heap < 50e6, "JS heap {heap} bytes");
    tab.screenshot("status-10k.png");
    let errors = tab.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    drop(cdp);
    drop(browser);
    let _ = stop.send(());
    let _ = clients.join();
    eprintln!("10,000 ports checked in {:?}", t0.elapsed());
}
