//! Deployed behind a reverse proxy, as most WebSocket services are: real `nginx` terminating TLS
//! and passing `X-Forwarded-For`, and real `haproxy` sending the PROXY protocol (v2). With
//! `--trusted-proxy`, the switch must see each client's own address — in `listport`, in the
//! per-address connection limit and in the authentication throttle — and a client must not be
//! able to choose its address by sending its own header.
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
const NGINX_SITE: &str = r#"map $http_upgrade $connection_upgrade {
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
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
    }
}
"#;

/// What nginx needs around [`NGINX_SITE`] to run as the test's own process, with its files in
/// `DIR`.
const NGINX_MAIN: &str = r#"
user root;
daemon off;
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
    let mut s = ns.tcp_connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
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
    let pki = Pki::new("pxng");
    let ca = pki.ca("proxy-ca");
    let cert = pki.server(&ca, "proxy", &[S_C1, S_C2], KeyForm::Pkcs8);
    let dir = TempDir::new("pxng");
    std::fs::copy(&cert.cert, dir.file("proxy.crt")).unwrap();
    std::fs::copy(&cert.key, dir.file("proxy.key")).unwrap();
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.file(sub)).unwrap();
    }
    let conf = dir.write(
        "nginx.conf",
        &nginx_conf(&dir.file("")[..dir.file("").len() - 1]),
    );
    let htpasswd = dir.file("htpasswd");
    run_ok(&["htpasswd", "-cbs", &htpasswd, "site", "site-pw"]);

    let sw = Switch::builder("pxng")
        .netns(&net.s)
        .host("127.0.0.1")
        .port(8080)
        .ctl_port(7867)
        .args(&TRUSTED)
        .args(&["--max-conns-per-addr", "2", "--htpasswd", &htpasswd])
        .start();
    let _nginx = net.s.daemon(&["nginx", "-c", &conf]);
    poll("nginx", Duration::from_secs(10), || {
        net.s
            .tcp_connect(SocketAddr::from(([127, 0, 0, 1], 443)))
            .map(drop)
            .map_err(|e| e.to_string())
    });

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

#[test]
fn behind_haproxy_the_proxy_protocol_names_each_client() {
    if !(require_root() && require_tool("haproxy")) {
        return;
    }
    let net = sites("pxha");
    let dir = TempDir::new("pxha");
    // The page's configuration, with a connection limit of the test's own.
    let conf = dir.write(
        "haproxy.cfg",
        &format!("global\n    maxconn 1000\n{HAPROXY}"),
    );
    let sw = Switch::builder("pxha")
        .netns(&net.s)
        .host("127.0.0.1")
        .port(8080)
        .ctl_port(7867)
        .args(&TRUSTED)
        .args(&["--proxy-protocol"])
        .start();
    let _haproxy = net.s.daemon(&["haproxy", "-db", "-f", &conf]);
    poll("haproxy", Duration::from_secs(10), || {
        net.s
            .tcp_connect(SocketAddr::from(([127, 0, 0, 1], 8000)))
            .map(drop)
            .map_err(|e| e.to_string())
    });
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
