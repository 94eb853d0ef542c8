//! Deployed behind a reverse proxy, as most WebSocket services are: real `nginx` terminating TLS
//! and writing `X-Forwarded-For`, and real `haproxy` sending the PROXY protocol (v2). With
//! `--trusted-proxy`, the switch must see each client's own address — in `listport`, in the
//! per-address connection limit and in the authentication throttle — and a client must not be
//! able to choose its address by sending its own header: not `Forwarded` or `X-Real-IP`, which
//! nginx passes on as the client sent them, not a header after a PROXY header, and not, from a
//! process on the proxy's host, towards the control API's throttle.
//!
//! The network: the switch and the proxy in namespace S (the switch on 127.0.0.1, the proxy on
//! every address), two client sites C1 (198.51.100.11) and C2 (203.0.113.12), each a namespace
//! with a veth to S and an `etherws sw` connecting out through the proxy. The switch's command
//! line and the nginx and HAProxy configurations are those docs/reverse-proxies.md shows: the
//! tests assert that the page shows them, and build what they run from them.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use etherws_testkit::*;

const S_C1: &str = "198.51.100.1";
const C1: &str = "198.51.100.11";
const S_C2: &str = "203.0.113.1";
const C2: &str = "203.0.113.12";

/// The page whose examples these are.
const PAGE: &str = "docs/reverse-proxies.md";

/// The switch behind the proxy, as the page starts it; the tests start it so (`Switch`'s
/// `--host 127.0.0.1`, `.port(8080)`, and [`TRUSTED`]).
const SWITCH: &str = "\
etherws sw --host 127.0.0.1 --port 8080 --trusted-proxy 127.0.0.1/32
";

/// The `--trusted-proxy` of [`SWITCH`].
const TRUSTED: [&str; 2] = ["--trusted-proxy", "127.0.0.1/32"];

/// The nginx configuration of the page: TLS on 443, WebSocket upgrades passed to etherws on
/// 127.0.0.1:8080.
const NGINX_SITE: &str = r#"# inside nginx's http {} block: e.g. /etc/nginx/conf.d/etherws.conf, which nginx.conf includes there
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
server {
    listen 443 ssl;
    ssl_certificate     /etc/etherws/proxy.crt;
    ssl_certificate_key /etc/etherws/proxy.key;
    location / {
        proxy_pass http://127.0.0.1:8080;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
    }
}
"#;

/// The line of [`NGINX_SITE`] that writes the client's address.
const XFF_LINE: &str = "proxy_set_header X-Forwarded-For $remote_addr;";

/// What nginx needs around [`NGINX_SITE`] to run as the test's own process (one process, gone
/// when it is killed), with its files in `DIR`.
const NGINX_MAIN: &str = r#"
user root;
daemon off;
master_process off;
pid DIR/nginx.pid;
error_log DIR/error.log;
events {}
http {
    access_log off;
    client_body_temp_path DIR/body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
SITE}
"#;

/// The configuration nginx runs with: the page's, its files in `dir`, and plain HTTP on 80 as
/// well (for raw requests).
fn nginx_conf(dir: &str) -> String {
    let site = NGINX_SITE.replace("/etc/etherws/", "DIR/").replace(
        "    listen 443 ssl;\n",
        "    listen 443 ssl;\n    listen 80;\n",
    );
    assert!(site.contains("listen 80;"), "{site}");
    NGINX_MAIN.replace("SITE", &site).replace("DIR", dir)
}

/// The HAProxy configuration of the page: TCP on 8000, PROXY protocol v2 to etherws.
const HAPROXY: &str = "\
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend websocket
    bind :8000
    default_backend etherws
backend etherws
    server sw1 127.0.0.1:8080 send-proxy-v2
";

#[test]
fn docs_show_the_examples_tested_here() {
    etherws_testkit::docs::assert_shows(PAGE, "sh", SWITCH);
    assert_eq!(
        SWITCH,
        format!(
            "etherws sw --host 127.0.0.1 --port 8080 {}\n",
            TRUSTED.join(" ")
        )
    );
    etherws_testkit::docs::assert_shows(PAGE, "nginx", NGINX_SITE);
    // `map` and `server` are refused anywhere but in `http {}`: the snippet says where it goes.
    assert!(
        NGINX_SITE.starts_with("# inside nginx's http {} block"),
        "{NGINX_SITE}"
    );
    etherws_testkit::docs::assert_shows(PAGE, "", HAPROXY);
}

/// The switch namespace with the two client sites linked to it.
struct ClientSites {
    s: Netns,
    c1: Netns,
    c2: Netns,
}

fn sites(tag: &str) -> ClientSites {
    let s = Netns::new(&format!("{tag}S"));
    let c1 = Netns::new(&format!("{tag}1"));
    let c2 = Netns::new(&format!("{tag}2"));
    veth(
        &c1,
        "up0",
        Some(&format!("{C1}/24")),
        &s,
        "c1",
        Some(&format!("{S_C1}/24")),
    );
    veth(
        &c2,
        "up0",
        Some(&format!("{C2}/24")),
        &s,
        "c2",
        Some(&format!("{S_C2}/24")),
    );
    ClientSites { s, c1, c2 }
}

/// A site's own switch, with no port yet.
fn site_switch(ns: &Netns, label: &str) -> Switch {
    Switch::builder(label)
        .netns(ns)
        .port(8080)
        .ctl_port(7867)
        .start()
}

/// The server ports' targets as `listport` shows them.
fn server_targets(sw: &Switch) -> Vec<String> {
    sw.listport()
        .into_iter()
        .filter(|p| p.kind == "server")
        .map(|p| p.target)
        .collect()
}

fn wait_targets(sw: &Switch, n: usize) -> Vec<String> {
    poll("server ports", Duration::from_secs(10), || {
        let t = server_targets(sw);
        if t.len() == n {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
}

/// Opens a WebSocket by hand from `ns` to `addr` with extra header lines; returns the status
/// and the socket (kept open by the caller for as long as the port should live).
fn raw_upgrade(ns: &Netns, addr: SocketAddr, extra: &str) -> (u16, std::net::TcpStream) {
    raw_upgrade_after(ns, None, addr, b"", extra)
}

/// [`raw_upgrade`] from source address `src`, with `prefix` sent first (a PROXY header).
fn raw_upgrade_after(
    ns: &Netns,
    src: Option<&str>,
    addr: SocketAddr,
    prefix: &[u8],
    extra: &str,
) -> (u16, std::net::TcpStream) {
    let src = src.map(|a| a.parse().unwrap());
    let s = ns.tcp_connect_from(src, addr).expect("connect");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    (send_for_status(&s, &[prefix, req.as_bytes()].concat()), s)
}

/// Sends `bytes` on `s` and reads the response head; its status (0 if none came).
fn send_for_status(mut s: &std::net::TcpStream, bytes: &[u8]) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// nginx's files: the page's configuration ([`nginx_conf`]), a certificate for the client
/// sites' addresses from `ca`, and an htpasswd file with the user `site` (`site-pw`), for the
/// switch.
struct Nginx {
    _pki: Pki,
    ca: Ca,
    dir: TempDir,
    htpasswd: String,
}

impl Nginx {
    fn files(tag: &str) -> Nginx {
        let pki = Pki::new(tag);
        let ca = pki.ca("proxy-ca");
        let cert = pki.server(&ca, "proxy", &[S_C1, S_C2], KeyForm::Pkcs8);
        let dir = TempDir::new(tag);
        std::fs::copy(&cert.cert, dir.file("proxy.crt")).unwrap();
        std::fs::copy(&cert.key, dir.file("proxy.key")).unwrap();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.file(sub)).unwrap();
        }
        let htpasswd = dir.file("htpasswd");
        run_ok(&["htpasswd", "-cbs", &htpasswd, "site", "site-pw"]);
        Nginx {
            _pki: pki,
            ca,
            dir,
            htpasswd,
        }
    }

    /// Runs nginx in `ns` until the daemon is dropped.
    fn start(&self, ns: &Netns) -> Daemon {
        self.start_writing(ns, XFF_LINE)
    }

    /// [`Nginx::start`] with `line` (a `proxy_set_header` directive) in place of the page's
    /// [`XFF_LINE`].
    fn start_writing(&self, ns: &Netns, line: &str) -> Daemon {
        let conf = nginx_conf(&self.dir.file("")[..self.dir.file("").len() - 1]);
        assert!(conf.contains(XFF_LINE), "{conf}");
        let conf = self.dir.write("nginx.conf", &conf.replace(XFF_LINE, line));
        let nginx = ns.daemon(&["nginx", "-c", &conf]);
        poll("nginx", Duration::from_secs(10), || {
            ns.tcp_connect(SocketAddr::from(([127, 0, 0, 1], 443)))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        nginx
    }
}

fn basic(user: &str, passwd: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{passwd}"))
}

#[test]
fn behind_nginx_each_client_keeps_its_address() {
    if !(require_root()
        && require_tool("nginx")
        && require_tool("openssl")
        && require_tool("htpasswd"))
    {
        return;
    }
    let net = sites("pxng");
    let nginx = Nginx::files("pxng");
    let (ca, htpasswd) = (&nginx.ca, &nginx.htpasswd);
    let sw = Switch::builder("pxng")
        .netns(&net.s)
        .host("127.0.0.1")
        .port(8080)
        .ctl_port(7867)
        .args(&TRUSTED)
        .args(&["--max-conns-per-addr", "2", "--htpasswd", htpasswd])
        .start();
    let _nginx = nginx.start(&net.s);

    // Each site's switch connects through nginx (wss://, the proxy's certificate).
    let site1 = site_switch(&net.c1, "pxng-c1");
    let site2 = site_switch(&net.c2, "pxng-c2");
    let auth = [
        "--user",
        "site",
        "--passwd",
        "site-pw",
        "--cacerts",
        &ca.cert,
    ];
    let url1 = format!("wss://{S_C1}/");
    let url2 = format!("wss://{S_C2}/");
    let mut args1 = vec!["addport", "client", url1.as_str()];
    args1.extend_from_slice(&auth);
    let mut args2 = vec!["addport", "client", url2.as_str()];
    args2.extend_from_slice(&auth);
    site1.ctl_ok(&args1);
    site2.ctl_ok(&args2);
    let targets = wait_targets(&sw, 2);
    assert!(targets.iter().any(|t| t == C1), "{targets:?}");
    assert!(targets.iter().any(|t| t == C2), "{targets:?}");
    // Each port names who logged in.
    let answer = rpc_in(
        &net.s,
        sw.ctl_addr(),
        "/ctl",
        r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#,
    );
    let users: Vec<_> = answer["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].clone())
        .collect();
    assert_eq!(users, vec![serde_json::json!("site"); 2], "{answer}");

    // A client that sends its own X-Forwarded-For is still listed with its real address.
    let via_nginx = SocketAddr::new(S_C1.parse().unwrap(), 80);
    let creds = format!("Authorization: Basic {}\r\n", basic("site", "site-pw"));
    let (status, _spoofer) = raw_upgrade(
        &net.c1,
        via_nginx,
        &format!("X-Forwarded-For: 192.0.2.66\r\n{creds}"),
    );
    assert_eq!(status, 101);
    let targets = wait_targets(&sw, 3);
    assert_eq!(
        targets.iter().filter(|t| *t == C1).count(),
        2,
        "{targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.contains("192.0.2.66")),
        "{targets:?}"
    );

    // The per-address limit (2) holds for C1, not for C2.
    let (status, _) = raw_upgrade(&net.c1, via_nginx, &creds);
    assert_eq!(status, 503, "a third connection from C1");
    let via_nginx2 = SocketAddr::new(S_C2.parse().unwrap(), 80);
    let (status, _c2_second) = raw_upgrade(&net.c2, via_nginx2, &creds);
    assert_eq!(status, 101, "a second connection from C2");

    // Failed logins from C1 throttle C1, not C2.
    let wrong = format!("Authorization: Basic {}\r\n", basic("site", "wrong"));
    for _ in 0..10 {
        let (status, _) = raw_upgrade(&net.c1, via_nginx, &wrong);
        assert_eq!(status, 401);
    }
    let (status, _) = raw_upgrade(&net.c1, via_nginx, &wrong);
    assert_eq!(status, 429, "C1 is throttled");
    drop(_c2_second);
    poll("C2's second port to go", Duration::from_secs(10), || {
        let n = server_targets(&sw).iter().filter(|t| *t == C2).count();
        if n == 1 { Ok(()) } else { Err(format!("{n}")) }
    });
    let (status, _c2_again) = raw_upgrade(&net.c2, via_nginx2, &creds);
    assert_eq!(status, 101, "C2 is not throttled by C1's failures");
    assert!(sw.log().contains(&format!("peer={C1}")), "{}", sw.log());
    sw.ctl_ok(&["listport"]);
}

/// The switch in `S` on 127.0.0.1:8080 with `--proxy-protocol`, trusting loopback, behind
/// the page's HAProxy (with a connection limit of the test's own) on :8000, which answers.
fn behind_haproxy(tag: &str) -> (ClientSites, Switch, Daemon) {
    let net = sites(tag);
    let dir = TempDir::new(tag);
    let conf = dir.write(
        "haproxy.cfg",
        &format!("global\n    maxconn 1000\n{HAPROXY}"),
    );
    let sw = Switch::builder(tag)
        .netns(&net.s)
        .host("127.0.0.1")
        .port(8080)
        .ctl_port(7867)
        .args(&TRUSTED)
        .args(&["--proxy-protocol"])
        .start();
    let haproxy = net.s.daemon(&["haproxy", "-db", "-f", &conf]);
    poll("haproxy", Duration::from_secs(10), || {
        net.s
            .tcp_connect(SocketAddr::from(([127, 0, 0, 1], 8000)))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    (net, sw, haproxy)
}

#[test]
fn behind_haproxy_the_proxy_protocol_names_each_client() {
    if !(require_root() && require_tool("haproxy")) {
        return;
    }
    let (net, sw, _haproxy) = behind_haproxy("pxha");
    let site1 = site_switch(&net.c1, "pxha-c1");
    let site2 = site_switch(&net.c2, "pxha-c2");
    site1.ctl_ok(&["addport", "client", &format!("ws://{S_C1}:8000/")]);
    site2.ctl_ok(&["addport", "client", &format!("ws://{S_C2}:8000/")]);
    let targets = wait_targets(&sw, 2);
    assert!(
        targets.iter().any(|t| t.starts_with(&format!("{C1}:"))),
        "{targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.starts_with(&format!("{C2}:"))),
        "{targets:?}"
    );
    // A direct connection from a trusted address without a PROXY header is closed, with the
    // reason in the log; the switch keeps serving.
    let mut direct = net
        .s
        .tcp_connect(SocketAddr::from(([127, 0, 0, 1], 8080)))
        .unwrap();
    direct
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    direct
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(direct.read(&mut buf), Ok(0) | Err(_)));
    poll("the refusal in the log", Duration::from_secs(5), || {
        if sw.log().contains("without a PROXY header") {
            Ok(())
        } else {
            Err(sw.log())
        }
    });
    assert_eq!(server_targets(&sw).len(), 2);
    sw.ctl_ok(&["listport"]);
}

/// The address a client of the tests below claims to be, as the attack in issue #25 did, and
/// where a real client (C3) sits: failures "from" it must not lock it out.
const FORGED: &str = "192.0.2.50";
const S_C3: &str = "192.0.2.1";

/// Header lines naming `ip` as the client in each of the three ways a proxy could.
fn claiming(ip: &str) -> String {
    format!("Forwarded: for={ip}\r\nX-Forwarded-For: {ip}\r\nX-Real-IP: {ip}\r\n")
}

/// The page's nginx in front of a switch with `--max-conns-per-addr 2`,
/// `--auth-max-failures 5` and an htpasswd file, the client sites, and C3: a real client at
/// [`FORGED`].
struct Forging {
    net: ClientSites,
    c3: Netns,
    sw: Switch,
    _nginx: Daemon,
    _files: Nginx,
    /// nginx as C1 reaches it (plain HTTP).
    via_nginx: SocketAddr,
    /// The right and a wrong `Authorization` header line.
    creds: String,
    wrong: String,
}

fn forging(tag: &str) -> Option<Forging> {
    if !(require_root()
        && require_tool("nginx")
        && require_tool("openssl")
        && require_tool("htpasswd"))
    {
        return None;
    }
    let net = sites(tag);
    let c3 = Netns::new(&format!("{tag}3"));
    veth(
        &c3,
        "up0",
        Some(&format!("{FORGED}/24")),
        &net.s,
        "c3",
        Some(&format!("{S_C3}/24")),
    );
    let files = Nginx::files(tag);
    let sw = Switch::builder(tag)
        .netns(&net.s)
        .host("127.0.0.1")
        .port(8080)
        .ctl_port(7867)
        .args(&TRUSTED)
        .args(&["--max-conns-per-addr", "2", "--auth-max-failures", "5"])
        .args(&["--htpasswd", &files.htpasswd])
        .start();
    let nginx = files.start(&net.s);
    Some(Forging {
        net,
        c3,
        sw,
        _nginx: nginx,
        _files: files,
        via_nginx: SocketAddr::new(S_C1.parse().unwrap(), 80),
        creds: format!("Authorization: Basic {}\r\n", basic("site", "site-pw")),
        wrong: format!("Authorization: Basic {}\r\n", basic("site", "wrong")),
    })
}

impl Forging {
    /// An upgrade from C1 through nginx claiming to be `ip`, with the right password or not.
    fn c1_claiming(&self, ip: &str, right: bool) -> (u16, std::net::TcpStream) {
        let auth = if right { &self.creds } else { &self.wrong };
        raw_upgrade(
            &self.net.c1,
            self.via_nginx,
            &format!("{}{auth}", claiming(ip)),
        )
    }
}

#[test]
fn behind_nginx_a_client_is_listed_as_itself_whatever_it_claims() {
    let Some(f) = forging("pxfa") else { return };
    // Whatever C1 claims in Forwarded, X-Forwarded-For or X-Real-IP, it is listed as C1.
    let (status, _first) = f.c1_claiming("192.0.2.60", true);
    assert_eq!(status, 101);
    assert_eq!(wait_targets(&f.sw, 1), [C1], "the client named itself");
    let (status, _second) = f.c1_claiming(FORGED, true);
    assert_eq!(status, 101);
    assert_eq!(wait_targets(&f.sw, 2), [C1, C1], "the client named itself");
    // Nor does the log name the addresses it claimed.
    assert!(!f.sw.log().contains("192.0.2."), "{}", f.sw.log());
}

#[test]
fn behind_nginx_the_per_address_limit_holds_whatever_a_client_claims() {
    let Some(f) = forging("pxfb") else { return };
    let (status, _first) = f.c1_claiming("192.0.2.61", true);
    assert_eq!(status, 101);
    let (status, _second) = f.c1_claiming("192.0.2.62", true);
    assert_eq!(status, 101);
    // Its per-address limit (2) holds, however fresh the address it claims.
    let (status, _third) = f.c1_claiming("192.0.2.63", true);
    assert_eq!(
        status,
        503,
        "a third connection from C1 claiming a fresh address: {:?}",
        server_targets(&f.sw)
    );
    // C3 has a limit of its own.
    let (status, _c3) = raw_upgrade(&f.c3, SocketAddr::new(S_C3.parse().unwrap(), 80), &f.creds);
    assert_eq!(status, 101);
}

#[test]
fn behind_nginx_failed_logins_in_another_name_lock_out_only_their_sender() {
    let Some(f) = forging("pxfc") else { return };
    // Six failed logins "from" 192.0.2.50: they count against C1 (5 allowed, the sixth is
    // refused), and the real 192.0.2.50 still gets in.
    let statuses: Vec<u16> = (0..6).map(|_| f.c1_claiming(FORGED, false).0).collect();
    let via_nginx3 = SocketAddr::new(S_C3.parse().unwrap(), 80);
    let (status, _real) = raw_upgrade(&f.c3, via_nginx3, &f.creds);
    assert_eq!(
        status, 101,
        "the real {FORGED} is locked out by failures claimed in its name ({statuses:?})"
    );
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // C1 is throttled, whatever address it claims.
    let (status, _) = f.c1_claiming("192.0.2.64", true);
    assert_eq!(status, 429, "C1 claiming a fresh address");
    assert_eq!(wait_targets(&f.sw, 1), [FORGED]);
}

#[test]
fn behind_haproxy_no_request_header_is_read_after_a_proxy_header() {
    if !(require_root() && require_tool("haproxy")) {
        return;
    }
    let (net, sw, _haproxy) = behind_haproxy("pxpp");
    let haproxy = SocketAddr::from(([127, 0, 0, 1], 8000));
    let switch = SocketAddr::from(([127, 0, 0, 1], 8080));
    let targets_now = |n| {
        let mut t = wait_targets(&sw, n);
        t.sort();
        t
    };

    // A process on the proxy's host goes through HAProxy, whose PROXY header names 127.0.0.1
    // (a trusted address), and names another client in its own headers: not believed.
    let (status, _local) = raw_upgrade(&net.s, haproxy, &claiming("192.0.2.66"));
    assert_eq!(status, 101);
    targets_now(1);

    // A PROXY header of its own, naming a trusted address, then a header naming another.
    let (status, _named) = raw_upgrade_after(
        &net.s,
        None,
        switch,
        b"PROXY TCP4 127.0.0.1 127.0.0.1 5555 8080\r\n",
        &claiming("192.0.2.67"),
    );
    assert_eq!(status, 101);
    targets_now(2);

    // PROXY UNKNOWN (and v2 LOCAL, as HAProxy's health checks send): the connection's own
    // peer, and still no request header.
    let (status, _unknown) = raw_upgrade_after(
        &net.s,
        None,
        switch,
        b"PROXY UNKNOWN\r\n",
        &claiming("192.0.2.68"),
    );
    assert_eq!(status, 101);
    let mut v2_local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2_local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let (status, _local2) =
        raw_upgrade_after(&net.s, None, switch, &v2_local, &claiming("192.0.2.69"));
    assert_eq!(status, 101);
    // Each of the four is who its PROXY header says: 127.0.0.1 (from HAProxy, LOCAL and
    // UNKNOWN with the port the connection came from).
    let t = targets_now(4);
    assert!(
        t.iter().all(|t| t.starts_with("127.0.0.1:")),
        "clients named themselves after a PROXY header: {t:?}"
    );
    assert!(t.contains(&"127.0.0.1:5555".to_string()), "{t:?}");

    // A client through HAProxy is its PROXY header's source, whatever it sends.
    let (status, _c1) = raw_upgrade(
        &net.c1,
        SocketAddr::new(S_C1.parse().unwrap(), 8000),
        &claiming("192.0.2.70"),
    );
    assert_eq!(status, 101);
    let t = targets_now(5);
    assert!(t.iter().any(|t| t.starts_with(&format!("{C1}:"))), "{t:?}");
    assert!(!t.iter().any(|t| t.starts_with("192.0.2.")), "{t:?}");
}

/// A control request from `ns` (source `src`) with `prefix` sent first (a PROXY header) and
/// extra header lines; its status.
fn ctl_status(ns: &Netns, src: &str, addr: SocketAddr, prefix: &[u8], extra: &str) -> u16 {
    let s = ns
        .tcp_connect_from(Some(src.parse().unwrap()), addr)
        .expect("connect to the control API");
    let body = r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#;
    let req = format!(
        "POST /ctl HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_for_status(&s, &[prefix, req.as_bytes()].concat())
}

/// Seven wrong passwords to the control API from `src`, each naming a fresh client
/// (`192.0.2.N`) in its headers and, with `proxy_v1`, in a PROXY header first; their statuses.
fn ctl_guesses(ns: &Netns, src: &str, addr: SocketAddr, proxy_v1: bool, first: u8) -> Vec<u16> {
    let wrong = format!("Authorization: Basic {}\r\n", basic("admin", "wrong"));
    (first..first + 7)
        .map(|n| {
            let ip = format!("192.0.2.{n}");
            let prefix = if proxy_v1 {
                format!("PROXY TCP4 {ip} 127.0.0.1 4000 {}\r\n", addr.port())
            } else {
                String::new()
            };
            let extra = format!("{}{wrong}", claiming(&ip));
            ctl_status(ns, src, addr, prefix.as_bytes(), &extra)
        })
        .collect()
}

#[test]
fn the_control_api_throttles_the_tcp_peer_unless_told_otherwise() {
    let Some((ns, _dir, htpasswd)) = control_namespace("pxctl") else {
        return;
    };
    let start =
        |label: &str, ports, extra: &[&str]| ctl_switch(&ns, &htpasswd, label, ports, extra);

    // The control listener apart: a process on the trusted proxy's address naming a fresh
    // client in every request is throttled as itself.
    let sw = start("pxctl1", (8080, 7867), &TRUSTED);
    let throttled = [401, 401, 401, 401, 401, 429, 429];
    let statuses = ctl_guesses(&ns, "127.0.0.1", sw.ctl_addr(), false, 100);
    assert_eq!(
        statuses, throttled,
        "forwarding headers from a local process skipped the control API's throttle"
    );
    drop(sw);

    // Told to (--ctl-trusted-proxy), the control API takes the proxy's word: each client named
    // has its own count.
    let mut told = TRUSTED.to_vec();
    told.extend(["--ctl-trusted-proxy", "127.0.0.1/32"]);
    let sw = start("pxctl3", (8080, 7867), &told);
    let statuses = ctl_guesses(&ns, "127.0.0.1", sw.ctl_addr(), false, 120);
    assert_eq!(statuses, [401; 7]);
    assert!(sw.log().contains("192.0.2.126"), "{}", sw.log());
}

/// A namespace for a switch whose control API has the user `admin` (`admin-pw`) in the
/// htpasswd file given.
fn control_namespace(tag: &str) -> Option<(Netns, TempDir, String)> {
    if !(require_root() && require_tool("htpasswd")) {
        return None;
    }
    let dir = TempDir::new(tag);
    let htpasswd = dir.file("ctl.htpasswd");
    run_ok(&["htpasswd", "-cbs", &htpasswd, "admin", "admin-pw"]);
    Some((Netns::new(tag), dir, htpasswd))
}

/// The switch `label` in `ns` with the WebSocket and control listeners on `ports`, the control
/// API's password in `htpasswd` and 5 failed logins allowed per address.
fn ctl_switch(
    ns: &Netns,
    htpasswd: &str,
    label: &str,
    ports: (u16, u16),
    extra: &[&str],
) -> Switch {
    Switch::builder(label)
        .netns(ns)
        .host("127.0.0.1")
        .port(ports.0)
        .ctl_port(ports.1)
        .ctl_opts(&["--ctluser", "admin", "--ctlpasswd", "admin-pw"])
        .args(&["--ctlhtpasswd", htpasswd, "--auth-max-failures", "5"])
        .args(extra)
        .start()
}

#[test]
fn the_control_api_throttles_the_tcp_peer_whatever_its_proxy_header_says() {
    let Some((ns, _dir, htpasswd)) = control_namespace("pxctp") else {
        return;
    };
    // One listener for both, with --proxy-protocol: a local process on a trusted proxy's
    // address sending PROXY headers that name a fresh client each time is throttled as itself.
    // (127.0.0.2: ctl, from 127.0.0.1, sends no PROXY header.)
    let sw = ctl_switch(
        &ns,
        &htpasswd,
        "pxctp",
        (7870, 7870),
        &["--proxy-protocol", "--trusted-proxy", "127.0.0.2/32"],
    );
    let statuses = ctl_guesses(&ns, "127.0.0.2", sw.ctl_addr(), true, 110);
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429],
        "PROXY headers from a local process skipped the control API's throttle"
    );
    // The WebSocket side still takes the PROXY header's word.
    let (status, _ws) = raw_upgrade_after(
        &ns,
        Some("127.0.0.2"),
        sw.ctl_addr(),
        b"PROXY TCP4 198.51.100.77 127.0.0.1 4000 7870\r\n",
        "",
    );
    assert_eq!(status, 101);
    assert_eq!(wait_targets(&sw, 1), ["198.51.100.77:4000"]);
}

#[test]
fn behind_nginx_only_the_proxy_header_named_is_read() {
    if !(require_root() && require_tool("nginx") && require_tool("openssl")) {
        return;
    }
    let net = sites("pxph");
    let files = Nginx::files("pxph");
    let via_nginx = SocketAddr::new(S_C1.parse().unwrap(), 80);
    // nginx writing each header of the page's table in turn, and the switch told so (through
    // the environment, the command line, and the default); C1 sends all three, naming others.
    let cases: [(&str, &str, &[&str]); 3] = [
        ("x-real-ip", "proxy_set_header X-Real-IP $remote_addr;", &[]),
        (
            "",
            "proxy_set_header Forwarded \"for=$remote_addr\";",
            &["--proxy-header", "forwarded"],
        ),
        ("", XFF_LINE, &[]),
    ];
    for (i, (env, line, args)) in cases.into_iter().enumerate() {
        let mut sw = Switch::builder(&format!("pxph{i}"))
            .netns(&net.s)
            .host("127.0.0.1")
            .port(8080)
            .ctl_port(7867)
            .args(&TRUSTED)
            .args(args);
        if !env.is_empty() {
            sw = sw.env("ETHERWS_PROXY_HEADER", env);
        }
        let sw = sw.start();
        let nginx = files.start_writing(&net.s, line);
        let (status, _c1) = raw_upgrade(&net.c1, via_nginx, &claiming(&format!("192.0.2.7{i}")));
        assert_eq!(status, 101, "{line}");
        assert_eq!(wait_targets(&sw, 1), [C1], "nginx: {line}");
        drop(nginx);
    }
}
