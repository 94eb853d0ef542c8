//! End-to-end tests of `etherws` TLS (wss:// tunnels, the control API over HTTPS), HTTP Basic
//! authentication (htpasswd files), password prompts and HTTP proxies.
//!
//! Certificates are made per test with the real `openssl`, htpasswd files with the real
//! `htpasswd`, and the proxy is the real `tinyproxy`; a test whose tool is missing skips loudly
//! (and fails under CI=true). Tests that need root build their networks inside private network
//! namespaces (see the etherws-testkit crate, testkit/); the others run on loopback.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use etherws_testkit::*;
use serde_json::Value;

const A_VETH: &str = Sites::A_VETH;
const B_VETH: &str = Sites::B_VETH;
const A_TAP_IP: &str = Sites::A_TAP;
const B_TAP_IP: &str = Sites::B_TAP;

// ---------------------------------------------------------------------------------------------
// helpers

/// Root and every tool the test needs, or a loud skip (a failure under CI).
fn needs(root: bool, tools: &[&str]) -> bool {
    if root && !require_root() {
        return false;
    }
    tools.iter().all(|t| require_tool(t))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr, lower-cased.
fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr)).to_lowercase()
}

/// The non-empty lines of stdout.
fn lines(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// A ctl run that must have succeeded with a listport table.
fn assert_listport(out: &Output, what: &str) -> Vec<PortRow> {
    assert!(
        out.status.success() && !stdout(out).contains("(-3"),
        "{what}: ctl should succeed\n{}",
        show(out)
    );
    parse_ports(&stdout(out))
}

/// A ctl run that must have failed as etherws reports a failed HTTP exchange with the control
/// API (`  Internal error (-32603)`, then the reason), with exit status 1. Returns the reason.
fn assert_ctl_internal_error(out: &Output, what: &str) -> String {
    let l = lines(out);
    assert!(
        !out.status.success(),
        "{what}: ctl must exit non-zero\n{}",
        show(out)
    );
    assert_eq!(
        l.first().map(String::as_str),
        Some("  Internal error (-32603)"),
        "{what}: expected '  Internal error (-32603)' first\n{}",
        show(out)
    );
    let reason = l.get(1).map(|r| r.trim().to_string()).unwrap_or_default();
    assert!(
        !reason.is_empty(),
        "{what}: expected a reason line after the error\n{}",
        show(out)
    );
    assert!(
        !stdout(out).contains("Port"),
        "{what}: no table may be printed\n{}",
        show(out)
    );
    reason
}

/// Control API refused the credentials: `HTTP Error 401...`.
fn assert_ctl_401(out: &Output, what: &str) {
    let reason = assert_ctl_internal_error(out, what);
    assert!(
        reason.contains("401"),
        "{what}: the reason should mention 401: {reason:?}\n{}",
        show(out)
    );
}

fn addport_client_args<'a>(url: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["addport", "client", url];
    args.extend_from_slice(opts);
    args
}

/// The ports of a switch as (port, type, target), counters left out.
fn port_ids(sw: &Switch) -> Vec<(u32, String, String)> {
    sw.listport()
        .into_iter()
        .map(|p| (p.port, p.kind, p.target))
        .collect()
}

/// `ctl addport client URL OPTS...` that the switch must refuse: exit 1, `  Invalid params
/// (-32602)`, then a one-line reason (returned), and no port added.
fn add_client_fails(sw: &Switch, url: &str, opts: &[&str]) -> String {
    let before = port_ids(sw);
    let out = sw.ctl(&addport_client_args(url, opts));
    let what = format!("addport client {url} {opts:?}");
    let l = lines(&out);
    assert!(
        !out.status.success(),
        "{what} must fail (exit 1)\n{}",
        show(&out)
    );
    assert_eq!(
        l.first().map(String::as_str),
        Some("  Invalid params (-32602)"),
        "{what}: expected '  Invalid params (-32602)'\n{}",
        show(&out)
    );
    let reason = l.get(1).cloned().unwrap_or_default();
    assert!(
        reason.starts_with("    ") && !reason.trim().is_empty() && l.len() == 2,
        "{what}: expected one reason line, indented by four spaces\n{}",
        show(&out)
    );
    assert_eq!(
        port_ids(sw),
        before,
        "{what}: a failed addport adds nothing"
    );
    reason.trim().to_string()
}

fn del_port(sw: &Switch, port: u32) {
    sw.ctl_ok(&["delport", &port.to_string()]);
}

/// Add `user` with `passwd` to an htpasswd file with the real `htpasswd` (`-c` when the file
/// does not exist yet); `flags` choose the hash (`-s` {SHA}, `-B` bcrypt, `-m` apr1, none:
/// the tool's default).
fn htpasswd(file: &str, flags: &[&str], user: &str, passwd: &str) {
    let mut argv = vec!["htpasswd", "-b"];
    if !Path::new(file).exists() {
        argv.push("-c");
    }
    argv.extend_from_slice(flags);
    argv.extend_from_slice(&[file, user, passwd]);
    run_ok(&argv);
}

/// The hash stored for `user` in an htpasswd file.
fn htpasswd_hash(file: &str, user: &str) -> String {
    fs::read_to_string(file)
        .expect("read htpasswd file")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {user} in {file}"))
}

/// Users made with the three hash formats of the real `htpasswd`, in a new file.
const USERS: [(&str, &str, &str, &str); 3] = [
    // (user, password, htpasswd flag, hash prefix)
    ("alice", "pw-sha1", "-s", "{SHA}"),
    ("bob", "pw-bcrypt", "-B", "$2y$"),
    ("carol", "pw-apr1", "-m", "$apr1$"),
];

fn htpasswd_file(dir: &TempDir, name: &str) -> String {
    let file = dir.file(name);
    for (user, passwd, flag, prefix) in USERS {
        htpasswd(&file, &[flag], user, passwd);
        assert!(
            htpasswd_hash(&file, user).starts_with(prefix),
            "htpasswd {flag} should write a {prefix} hash: {}",
            htpasswd_hash(&file, user)
        );
    }
    file
}

fn basic(user: &str, passwd: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{passwd}"))
}

/// A raw JSON-RPC listPort POST with optional extra headers.
fn raw_listport(addr: SocketAddr, extra_headers: &str) -> HttpResponse {
    let body = r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#;
    let req = format!(
        "POST /ctl HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to control API");
    http_exchange(s, &req, "listPort POST")
}

/// A raw WebSocket upgrade request with optional extra headers.
fn raw_upgrade(addr: SocketAddr, extra_headers: &str) -> HttpResponse {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to WebSocket server");
    // A 101 keeps the connection open: read with a short timeout then.
    http_exchange(s, &req, "WebSocket upgrade")
}

fn assert_401_challenge(resp: &HttpResponse, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("Basic") && challenge.contains("realm=\"etherws\""),
        "{what}: expected WWW-Authenticate: Basic realm=\"etherws\", got {challenge:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// wss:// tunnels

#[test]
fn wss_tunnel_with_cacerts() {
    if !needs(true, &["openssl"]) {
        return;
    }
    let pki = Pki::new("wss");
    let ca = pki.ca("good");
    let wrong = pki.ca("wrong");
    let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Pkcs8);

    let s = Sites::builder("wss")
        .a(|a| {
            a.switch(|b| b.host("0.0.0.0").port(8443)).args(&[
                "--sslkey",
                &cert.key,
                "--sslcert",
                &cert.cert,
            ])
        })
        .both(|s| s.tap())
        .start();
    let (ns_a, ns_b, sw_a, sw_b) = (&s.a.ns, &s.b.ns, &s.a.sw, &s.b.sw);
    // A second address on A (which listens on every address), that its certificate does not
    // name.
    ns_a.ip(&["addr", "add", "198.51.100.11/24", "dev", "vAB"]);
    let url = format!("wss://{A_VETH}:8443/");

    // Verified against the private CA: the tunnel carries traffic both ways.
    let client = sw_b.add_port("client", &url, &["--cacerts", &ca.cert]);
    sw_a.wait_servers(1);
    ping(ns_b, A_TAP_IP);
    ping(ns_a, B_TAP_IP);
    let srv = &sw_a.servers()[0];
    assert!(srv.rx > 0 && srv.tx > 0, "{srv:?}");
    let cli = sw_b.port(client.port).expect("client port still there");
    assert!(cli.rx > 0 && cli.tx > 0, "{cli:?}");
    del_port(sw_b, client.port);
    sw_a.wait_servers(0);

    // Certificates that do not verify.
    let alias = "wss://198.51.100.11:8443/";
    for (target, opts, what) in [
        (
            url.as_str(),
            vec!["--cacerts", wrong.cert.as_str()],
            "a CA that did not sign the server's certificate",
        ),
        (
            url.as_str(),
            vec![],
            "the system roots (the private CA is not one of them)",
        ),
        (
            alias,
            vec!["--cacerts", ca.cert.as_str()],
            "the right CA, but a URL host the certificate does not name",
        ),
    ] {
        let reason = add_client_fails(sw_b, target, &opts);
        assert!(
            reason.to_lowercase().contains("certificate"),
            "{what}: the reason should be about the certificate: {reason:?}"
        );
        assert_eq!(sw_a.servers(), vec![], "{what}: no server port may appear");
    }
    // Plain ws:// to the TLS listener does not get through either.
    add_client_fails(sw_b, &format!("ws://{A_VETH}:8443/"), &[]);

    // --insecure: no verification (neither the CA nor the name), still a working tunnel.
    for target in [url.as_str(), alias] {
        let client = sw_b.add_port("client", target, &["--insecure"]);
        sw_a.wait_servers(1);
        ping(ns_b, A_TAP_IP);
        ping(ns_a, B_TAP_IP);
        del_port(sw_b, client.port);
        sw_a.wait_servers(0);
    }
}

/// Every PEM key form OpenSSL writes serves wss:// and the HTTPS control API (loopback).
#[test]
fn wss_key_forms_loopback() {
    if !needs(false, &["openssl"]) {
        return;
    }
    let pki = Pki::new("keys");
    let ca = pki.ca("keys");
    let client = Switch::local("keys-client", &[]);
    for form in [KeyForm::Pkcs8, KeyForm::Pkcs1, KeyForm::Sec1] {
        let name = format!("{form:?}").to_lowercase();
        let cert = pki.server(&ca, &name, &["127.0.0.1"], form);
        let ctl_port = free_port();
        let ctl_url = format!("https://127.0.0.1:{ctl_port}/ctl");
        // The readiness probe itself goes over HTTPS, verified against the CA.
        let server = Switch::builder(&format!("keys-{name}"))
            .ctl_port(ctl_port)
            .args(&["--sslkey", &cert.key, "--sslcert", &cert.cert])
            .args(&["--ctlsslkey", &cert.key, "--ctlsslcert", &cert.cert])
            .ctl_url(&ctl_url)
            .ctl_opts(&["--ctlsslcert", &ca.cert])
            .start();
        let url = format!("wss://127.0.0.1:{}/", server.ws_port);
        let port = client.add_port("client", &url, &["--cacerts", &ca.cert]);
        server.wait_servers(1);
        del_port(&client, port.port);
        server.wait_servers(0);
        // Plain HTTP to the HTTPS control API fails.
        let out = etherws(None)
            .args([
                "ctl",
                "--ctlurl",
                &format!("http://127.0.0.1:{ctl_port}/ctl"),
            ])
            .arg("listport")
            .output()
            .expect("run ctl");
        assert!(
            !out.status.success(),
            "{form:?}: http:// to the HTTPS control API must fail\n{}",
            show(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// htpasswd

#[test]
fn htpasswd_on_websocket() {
    if !needs(false, &["htpasswd"]) {
        return;
    }
    let dir = TempDir::new("htws");
    let file = htpasswd_file(&dir, "ws.htpasswd");
    // A password with colons in it (only the first colon of Basic credentials separates).
    htpasswd(&file, &["-s"], "dave", "p:w:x");
    let server = Switch::local("htws-server", &["--htpasswd", &file]);
    let client = Switch::local("htws-client", &[]);
    let url = format!("ws://127.0.0.1:{}/", server.ws_port);
    let users: Vec<(&str, &str)> = USERS
        .iter()
        .map(|(u, p, _, _)| (*u, *p))
        .chain([("dave", "p:w:x")])
        .collect();

    for (user, passwd) in &users {
        let port = client.add_port("client", &url, &["--user", user, "--passwd", passwd]);
        server.wait_servers(1);
        del_port(&client, port.port);
        server.wait_servers(0);
    }

    // (At most five failed checks in a row here: the switch blocks an address after ten.)
    for (opts, what) in [
        (
            vec!["--user", "alice", "--passwd", "wrong"],
            "a wrong password",
        ),
        (
            vec!["--user", "bob", "--passwd", "pw-sha1"],
            "another user's password",
        ),
        (
            vec!["--user", "nobody", "--passwd", "pw-sha1"],
            "an unknown user",
        ),
        (
            vec!["--user", "dave", "--passwd", "p"],
            "a password cut at its first colon",
        ),
        (vec![], "no credentials"),
    ] {
        let reason = add_client_fails(&client, &url, &opts);
        assert!(
            reason.contains("401"),
            "{what}: the reason should mention 401: {reason:?}"
        );
    }
    assert_eq!(server.servers(), vec![]);

    // The challenge on the wire.
    let addr = SocketAddr::from(([127, 0, 0, 1], server.ws_port));
    assert_401_challenge(&raw_upgrade(addr, ""), "upgrade without credentials");
    let bad = format!("Authorization: Basic {}\r\n", basic("alice", "nope"));
    assert_401_challenge(&raw_upgrade(addr, &bad), "upgrade with a wrong password");

    // The file is read again when it changes: a new user (the tool's default hash), and a new
    // password for an existing one, work without a restart.
    htpasswd(&file, &[], "erin", "pw-new");
    htpasswd(&file, &["-s"], "alice", "pw-changed");
    let port = client.add_port("client", &url, &["--user", "erin", "--passwd", "pw-new"]);
    server.wait_servers(1);
    del_port(&client, port.port);
    server.wait_servers(0);
    let port = client.add_port(
        "client",
        &url,
        &["--user", "alice", "--passwd", "pw-changed"],
    );
    server.wait_servers(1);
    del_port(&client, port.port);
    server.wait_servers(0);
    let reason = add_client_fails(&client, &url, &["--user", "alice", "--passwd", "pw-sha1"]);
    assert!(reason.contains("401"), "old password: {reason:?}");
}

#[test]
fn htpasswd_on_control_api() {
    if !needs(false, &["htpasswd"]) {
        return;
    }
    let dir = TempDir::new("htctl");
    let file = htpasswd_file(&dir, "ctl.htpasswd");
    let sw = Switch::builder("htctl")
        .args(&["--ctlhtpasswd", &file])
        .ctl_opts(&["--ctluser", "alice", "--ctlpasswd", "pw-sha1"])
        .start();

    for (user, passwd, flag, _) in USERS {
        let out = sw.ctl_with(&["--ctluser", user, "--ctlpasswd", passwd], &["listport"]);
        assert_eq!(assert_listport(&out, &format!("{user} ({flag})")), vec![]);
    }
    for (opts, what) in [
        (
            vec!["--ctluser", "alice", "--ctlpasswd", "wrong"],
            "a wrong password",
        ),
        (
            vec!["--ctluser", "nobody", "--ctlpasswd", "pw-sha1"],
            "an unknown user",
        ),
        (vec![], "no credentials"),
    ] {
        assert_ctl_401(&sw.ctl_with(&opts, &["listport"]), what);
    }
    // Nothing happened on the switch because of the refused calls.
    let out = sw.ctl_with(&[], &["addport", "tap", "ewsNope0"]);
    assert_ctl_401(&out, "addport without credentials");
    assert_eq!(sw.listport(), vec![]);

    // On the wire: 401 with the challenge, or 200 with the JSON-RPC answer.
    let addr = sw.ctl_addr();
    assert_401_challenge(&raw_listport(addr, ""), "POST without credentials");
    let wrong = format!("Authorization: Basic {}\r\n", basic("bob", "pw-sha1"));
    assert_401_challenge(&raw_listport(addr, &wrong), "POST with a wrong password");
    let right = format!("Authorization: Basic {}\r\n", basic("bob", "pw-bcrypt"));
    let resp = raw_listport(addr, &right);
    assert_eq!(resp.status, 200, "{resp:?}");
    let v: Value = serde_json::from_str(&resp.body).expect("JSON answer");
    assert_eq!(v["result"]["entries"], serde_json::json!([]), "{v}");

    // A user added later logs in without a restart.
    htpasswd(&file, &[], "erin", "pw-new");
    let out = sw.ctl_with(
        &["--ctluser", "erin", "--ctlpasswd", "pw-new"],
        &["listport"],
    );
    assert_listport(&out, "erin, added while running");
}

// ---------------------------------------------------------------------------------------------
// remote control over HTTPS

#[test]
fn remote_control_over_https() {
    if !needs(true, &["openssl", "htpasswd"]) {
        return;
    }
    let pki = Pki::new("rctl");
    let ca = pki.ca("good");
    let wrong = pki.ca("wrong");
    let cert = pki.server(&ca, "ctl-a", &[A_VETH], KeyForm::Pkcs1);
    let file = pki.dir.file("ctl.htpasswd");
    htpasswd(&file, &["-B"], "admin", "pw-admin");

    let (ns_a, ns_b) = linked("rctl", A_VETH, B_VETH);
    let url = format!("https://{A_VETH}:7443/ctl");
    let creds = ["--ctluser", "admin", "--ctlpasswd", "pw-admin"];
    let sw_a = Switch::builder("rctl-A")
        .netns(&ns_a)
        .host(A_VETH)
        .port(8080)
        .ctl_host(A_VETH)
        .ctl_port(7443)
        .args(&["--ctlsslkey", &cert.key, "--ctlsslcert", &cert.cert])
        .args(&["--ctlhtpasswd", &file])
        .ctl_url(&url)
        .ctl_opts(&["--ctlsslcert", &ca.cert])
        .ctl_opts(&creds)
        .start();

    // `etherws ctl --ctlurl URL OPTS... ARGS...` from the other namespace.
    let remote = |url: &str, opts: &[&str], args: &[&str]| -> Output {
        etherws(Some(&ns_b))
            .args(["ctl", "--ctlurl", url])
            .args(opts)
            .args(args)
            .output()
            .expect("run ctl in nsB")
    };
    let (ca_cert, wrong_cert) = (ca.cert.as_str(), wrong.cert.as_str());
    let verified = [
        "--ctlsslcert",
        ca_cert,
        "--ctluser",
        "admin",
        "--ctlpasswd",
        "pw-admin",
    ];

    // Verified against the CA, authenticated: list, and change something.
    let out = remote(&url, &verified, &["listport"]);
    assert_eq!(assert_listport(&out, "remote listport"), vec![]);
    let out = remote(&url, &verified, &["addport", "tap", "ewsA0"]);
    let rows = assert_listport(&out, "remote addport tap");
    assert_eq!(
        (rows.len(), rows[0].kind.as_str(), rows[0].target.as_str()),
        (1, "tap", "ewsA0"),
        "{rows:?}"
    );
    ns_a.wait_link("ewsA0");
    assert_eq!(sw_a.listport().len(), 1);

    // Not verifiable: another CA, or the system roots.
    for (opts, what) in [
        (
            vec![
                "--ctlsslcert",
                wrong_cert,
                "--ctluser",
                "admin",
                "--ctlpasswd",
                "pw-admin",
            ],
            "the wrong CA",
        ),
        (
            vec!["--ctluser", "admin", "--ctlpasswd", "pw-admin"],
            "the system roots",
        ),
    ] {
        let out = remote(&url, &opts, &["listport"]);
        let reason = assert_ctl_internal_error(&out, what);
        assert!(
            reason.to_lowercase().contains("certificate"),
            "{what}: the reason should be about the certificate: {reason:?}"
        );
    }

    // --ctlinsecure: no verification, still authenticated.
    let out = remote(
        &url,
        &[
            "--ctlinsecure",
            "--ctluser",
            "admin",
            "--ctlpasswd",
            "pw-admin",
        ],
        &["listport"],
    );
    assert_eq!(assert_listport(&out, "--ctlinsecure").len(), 1);
    let out = remote(
        &url,
        &[
            "--ctlinsecure",
            "--ctluser",
            "admin",
            "--ctlpasswd",
            "wrong",
        ],
        &["listport"],
    );
    assert_ctl_401(&out, "a wrong password over HTTPS");
    let out = remote(&url, &["--ctlinsecure"], &["listport"]);
    assert_ctl_401(&out, "no credentials over HTTPS");

    // Plain HTTP to the HTTPS port gets nowhere.
    let out = remote(
        &format!("http://{A_VETH}:7443/ctl"),
        &["--ctluser", "admin", "--ctlpasswd", "pw-admin"],
        &["listport"],
    );
    assert_ctl_internal_error(&out, "http:// to the HTTPS control API");
    assert_eq!(sw_a.listport().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// password prompts

#[test]
fn password_prompts() {
    if !needs(false, &["htpasswd"]) {
        return;
    }
    let dir = TempDir::new("prompt");
    let file = dir.file("users.htpasswd");
    htpasswd(&file, &["-B"], "alice", "pw-ctl");
    htpasswd(&file, &["-m"], "bob", "pw-ws");
    let server = Switch::local("prompt-server", &["--htpasswd", &file]);
    let sw = Switch::builder("prompt-client")
        .args(&["--ctlhtpasswd", &file])
        .ctl_opts(&["--ctluser", "alice", "--ctlpasswd", "pw-ctl"])
        .start();
    let ctl_url = sw.ctl_url();
    let ctl = |args: &[&str]| {
        let mut c = etherws(None);
        c.args(["ctl", "--ctlurl", &ctl_url]).args(args);
        c
    };

    // --ctluser without --ctlpasswd: `Control Password: ` on the terminal, not echoed.
    let run = run_on_pty(
        ctl(&["--ctluser", "alice", "listport"]),
        "Control Password: ",
        "pw-ctl",
    );
    assert!(run.status.success(), "{run:?}");
    let (prompt_at, table_at) = (
        run.output.find("Control Password: "),
        run.output.find("Port"),
    );
    assert!(
        prompt_at.is_some() && table_at.is_some() && prompt_at < table_at,
        "expected the prompt, then the listport table: {run:?}"
    );
    assert!(
        !run.output.contains("pw-ctl"),
        "the password must not be echoed: {run:?}"
    );
    let run = run_on_pty(
        ctl(&["--ctluser", "alice", "listport"]),
        "Control Password: ",
        "not-it",
    );
    assert!(!run.status.success(), "{run:?}");
    assert!(
        run.output.contains("401") && !run.output.contains("Port"),
        "a wrong typed password must be refused with 401: {run:?}"
    );

    // addport client --user without --passwd: `Client Password: `.
    let url = format!("ws://127.0.0.1:{}/", server.ws_port);
    let run = run_on_pty(
        ctl(&[
            "--ctluser",
            "alice",
            "--ctlpasswd",
            "pw-ctl",
            "addport",
            "client",
            &url,
            "--user",
            "bob",
        ]),
        "Client Password: ",
        "pw-ws",
    );
    assert!(run.status.success(), "{run:?}");
    assert!(
        !run.output.contains("pw-ws") && run.output.contains(&url),
        "expected the new port, and no echo of the password: {run:?}"
    );
    server.wait_servers(1);
    assert_eq!(sw.listport().len(), 1);
    let run = run_on_pty(
        ctl(&[
            "--ctluser",
            "alice",
            "--ctlpasswd",
            "pw-ctl",
            "addport",
            "client",
            &url,
            "--user",
            "bob",
        ]),
        "Client Password: ",
        "not-it",
    );
    assert!(
        !run.status.success() && run.output.contains("(-32602)") && run.output.contains("401"),
        "a wrong typed client password must fail with 401: {run:?}"
    );
    assert_eq!(sw.listport().len(), 1);

    // --passwd without --user: refused by ctl itself.
    let out = sw.ctl(&["addport", "client", "ws://192.0.2.9/", "--passwd", "p"]);
    assert!(
        !out.status.success() && text(&out).contains("user"),
        "--passwd without --user must be refused, naming the missing user name\n{}",
        show(&out)
    );
    assert!(
        !text(&out).contains("(-32602)"),
        "refused before asking the switch\n{}",
        show(&out)
    );
    assert_eq!(sw.listport().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// HTTP proxy

/// A tinyproxy in a namespace, killed on drop (its log printed if the test panics).
struct TinyProxy {
    child: Child,
    log: String,
    addr: SocketAddr,
}

impl TinyProxy {
    /// `tinyproxy -d` on `listen:port` in `ns`, allowing 203.0.113.0/24 and CONNECT to 8080
    /// and 8443, with `extra` config lines; ready when `probe` (a namespace of the allowed
    /// network) can connect to it.
    fn start(
        ns: &Netns,
        dir: &TempDir,
        listen: &str,
        port: u16,
        extra: &str,
        probe: &Netns,
    ) -> Self {
        let conf = dir.write(
            &format!("tinyproxy-{port}.conf"),
            &format!(
                "Port {port}\nListen {listen}\nTimeout 30\nMaxClients 20\n\
                 Allow 203.0.113.0/24\nLogLevel Info\nConnectPort 8080\nConnectPort 8443\n{extra}"
            ),
        );
        let log = dir.file(&format!("tinyproxy-{port}.log"));
        let logf = fs::File::create(&log).expect("create tinyproxy log");
        let child = ns
            .command(&["tinyproxy", "-d", "-c", &conf])
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let addr: SocketAddr = format!("{listen}:{port}").parse().unwrap();
        let mut tp = TinyProxy { child, log, addr };
        poll(
            &format!("tinyproxy on {addr}"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(status)) = tp.child.try_wait() {
                    panic!("tinyproxy exited ({status}):\n{}", tp.log());
                }
                probe.tcp_connect(addr).map(drop).map_err(|e| e.to_string())
            },
        );
        tp
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many CONNECTs to `target` the proxy has logged.
    fn connects(&self, target: &str) -> usize {
        self.log().matches(&format!("CONNECT {target} ")).count()
    }

    /// Wait until the proxy has logged a CONNECT to `target`.
    fn wait_connect(&self, target: &str) {
        poll(
            &format!(
                "a CONNECT to {target} in the log of the proxy on {}",
                self.addr
            ),
            Duration::from_secs(5),
            || match self.connects(target) {
                0 => Err(self.log()),
                _ => Ok(()),
            },
        )
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== tinyproxy {} log =====\n{}===== end =====",
                self.addr,
                self.log()
            );
        }
    }
}

#[test]
fn client_through_tinyproxy() {
    if !needs(true, &["tinyproxy", "openssl"]) {
        return;
    }
    // nsB (client switch) -- nsP (proxy, no forwarding) -- nsA (server switches).
    let ns_a = Netns::new("pxA");
    let ns_p = Netns::new("pxP");
    let ns_b = Netns::new("pxB");
    veth(
        &ns_a,
        "vAP",
        Some(&format!("{A_VETH}/24")),
        &ns_p,
        "vPA",
        Some("198.51.100.3/24"),
    );
    veth(
        &ns_p,
        "vPB",
        Some("203.0.113.1/24"),
        &ns_b,
        "vBP",
        Some("203.0.113.2/24"),
    );
    ns_p.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    // B has no way to A but the proxy.
    no_ping(&ns_b, A_VETH);

    let dir = TempDir::new("proxy");
    let pki = Pki::new("proxy");
    let ca = pki.ca("good");
    let cert = pki.server(&ca, "switch-a-tls", &[A_VETH], KeyForm::Sec1);
    let open = TinyProxy::start(&ns_p, &dir, "203.0.113.1", 8888, "", &ns_b);
    let auth = TinyProxy::start(
        &ns_p,
        &dir,
        "203.0.113.1",
        8889,
        "BasicAuth puser ppass\n",
        &ns_b,
    );

    let sw_a = Switch::builder("px-A-ws")
        .netns(&ns_a)
        .host(A_VETH)
        .port(8080)
        .ctl_port(7867)
        .start();
    let sw_a_tls = Switch::builder("px-A-wss")
        .netns(&ns_a)
        .host(A_VETH)
        .port(8443)
        .ctl_port(7868)
        .args(&["--sslkey", &cert.key, "--sslcert", &cert.cert])
        .start();
    let sw_b = Switch::builder("px-B")
        .netns(&ns_b)
        .host("203.0.113.2")
        .port(8080)
        .ctl_port(7867)
        .env("http_proxy", "http://203.0.113.1:8888")
        .env("HTTPS_PROXY", "http://puser:ppass@203.0.113.1:8889")
        .start();
    sw_a.add_tap(&ns_a, "ewsA0", A_TAP_IP);
    sw_b.add_tap(&ns_b, "ewsB0", B_TAP_IP);

    // ws:// through the open proxy ($http_proxy).
    let ws_url = format!("ws://{A_VETH}:8080/");
    let ws_target = format!("{A_VETH}:8080");
    let client = sw_b.add_port("client", &ws_url, &[]);
    sw_a.wait_servers(1);
    ping(&ns_b, A_TAP_IP);
    ping(&ns_a, B_TAP_IP);
    open.wait_connect(&ws_target);
    del_port(&sw_b, client.port);
    sw_a.wait_servers(0);
    // Take the first A TAP out of nsA's routing, for the next one's replies.
    ns_a.ip(&["link", "set", "ewsA0", "down"]);

    // wss:// through the proxy that wants credentials ($HTTPS_PROXY, upper case), TLS verified
    // end to end against the CA (the proxy only sees an opaque tunnel).
    sw_a_tls.add_tap(&ns_a, "ewsA1", "192.0.2.3");
    let wss_url = format!("wss://{A_VETH}:8443/");
    let wss_target = format!("{A_VETH}:8443");
    let client = sw_b.add_port("client", &wss_url, &["--cacerts", &ca.cert]);
    sw_a_tls.wait_servers(1);
    ping(&ns_b, "192.0.2.3");
    ping(&ns_a, B_TAP_IP);
    auth.wait_connect(&wss_target);
    del_port(&sw_b, client.port);
    sw_a_tls.wait_servers(0);

    // Wrong or missing proxy credentials: the proxy refuses, and the reason says so.
    let sw_b2 = Switch::builder("px-B2")
        .netns(&ns_b)
        .host("203.0.113.2")
        .port(8081)
        .ctl_port(7868)
        .env("https_proxy", "http://puser:wrong@203.0.113.1:8889")
        .env("http_proxy", "http://203.0.113.1:8889")
        .start();
    for (url, opts, what) in [
        (
            wss_url.as_str(),
            vec!["--cacerts", ca.cert.as_str()],
            "wrong proxy password",
        ),
        (ws_url.as_str(), vec![], "no proxy credentials"),
    ] {
        let reason = add_client_fails(&sw_b2, url, &opts);
        assert!(
            reason.to_lowercase().contains("proxy")
                && (reason.contains("407") || reason.contains("401")),
            "{what}: the reason should be the proxy's refusal: {reason:?}"
        );
        assert!(
            !reason.contains("wrong") && !reason.contains("ppass"),
            "{what}: the reason must not quote the proxy password: {reason:?}"
        );
    }

    // no_proxy exempts A: B3 tries directly, which cannot work from nsB — and says so without
    // a word about a proxy.
    let sw_b3 = Switch::builder("px-B3")
        .netns(&ns_b)
        .host("203.0.113.2")
        .port(8082)
        .ctl_port(7869)
        .env("http_proxy", "http://203.0.113.1:8888")
        .env("https_proxy", "http://203.0.113.1:8888")
        .env("no_proxy", A_VETH)
        .start();
    let (ws_before, wss_before) = (open.connects(&ws_target), open.connects(&wss_target));
    for (url, opts) in [
        (ws_url.as_str(), vec![]),
        (wss_url.as_str(), vec!["--cacerts", ca.cert.as_str()]),
    ] {
        let reason = add_client_fails(&sw_b3, url, &opts);
        assert!(
            !reason.to_lowercase().contains("proxy"),
            "{url} with no_proxy={A_VETH}: the direct connection should fail, not a proxy: {reason:?}"
        );
    }
    assert_eq!(
        (open.connects(&ws_target), open.connects(&wss_target)),
        (ws_before, wss_before),
        "no_proxy: the proxy must not have been asked:\n{}",
        open.log()
    );
}

// ---------------------------------------------------------------------------------------------
// start-up errors

/// `sw` must refuse to start: exit non-zero with one plain line `etherws sw: error: REASON`
/// on stderr (the reason is returned), not a JSON-RPC error.
fn assert_start_fails(args: &[&str], what: &str) -> String {
    let out = sw_start_fails(args);
    assert!(
        !out.status.success(),
        "{what}: sw must exit non-zero\n{}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .find_map(|l| l.strip_prefix("etherws sw: error: "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert!(!reason.is_empty(), "{what}: no reason\n{}", show(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Internal error"),
        "{what}: a start-up error is not a JSON-RPC error\n{}",
        show(&out)
    );
    reason
}

#[test]
fn tls_start_up_errors() {
    if !needs(false, &["openssl"]) {
        return;
    }
    let pki = Pki::new("tlserr");
    let ca = pki.ca("good");
    let a = pki.server(&ca, "a", &["127.0.0.1"], KeyForm::Pkcs8);
    let b = pki.server(&ca, "b", &["127.0.0.1"], KeyForm::Sec1);
    let garbage = pki.dir.write("garbage.key", "this is not a key\n");
    let missing = pki.dir.file("missing.key");
    let (port, ctl_port) = (free_port().to_string(), free_port().to_string());
    let with = |extra: &[&str]| -> Vec<String> {
        ["--host", "127.0.0.1", "--port", port.as_str()]
            .iter()
            .chain(&["--ctlhost", "127.0.0.1", "--ctlport", ctl_port.as_str()])
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let fails = |extra: &[&str], what: &str| -> String {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_start_fails(&args, what)
    };

    for (extra, want) in [
        (
            ["--sslkey", a.key.as_str()],
            "Both --sslkey and --sslcert are required",
        ),
        (
            ["--sslcert", a.cert.as_str()],
            "Both --sslkey and --sslcert are required",
        ),
        (
            ["--ctlsslkey", a.key.as_str()],
            "Both --ctlsslkey and --ctlsslcert are required",
        ),
        (
            ["--ctlsslcert", a.cert.as_str()],
            "Both --ctlsslkey and --ctlsslcert are required",
        ),
    ] {
        let reason = fails(&extra, want);
        assert!(
            reason.contains(want),
            "{extra:?}: expected {want:?}, got {reason:?}"
        );
    }

    for (extra, what) in [
        (
            ["--sslkey", b.key.as_str(), "--sslcert", a.cert.as_str()],
            "a key that does not go with the certificate",
        ),
        (
            [
                "--ctlsslkey",
                a.key.as_str(),
                "--ctlsslcert",
                b.cert.as_str(),
            ],
            "a control key that does not go with the certificate",
        ),
        (
            ["--sslkey", garbage.as_str(), "--sslcert", a.cert.as_str()],
            "a key file without a key",
        ),
        (
            ["--sslkey", a.key.as_str(), "--sslcert", garbage.as_str()],
            "a certificate file without a certificate",
        ),
        (
            ["--sslkey", missing.as_str(), "--sslcert", a.cert.as_str()],
            "a key file that does not exist",
        ),
    ] {
        fails(&extra, what);
    }

    // One listener (same host and port) has one certificate.
    let shared = |extra: &[&str]| -> Vec<String> {
        ["--host", "127.0.0.1", "--port", port.as_str()]
            .iter()
            .chain(&["--ctlhost", "127.0.0.1", "--ctlport", port.as_str()])
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    for (extra, what) in [
        (
            vec![
                "--sslkey",
                a.key.as_str(),
                "--sslcert",
                a.cert.as_str(),
                "--ctlsslkey",
                b.key.as_str(),
                "--ctlsslcert",
                b.cert.as_str(),
            ],
            "different keys on one listener",
        ),
        (
            vec!["--sslkey", a.key.as_str(), "--sslcert", a.cert.as_str()],
            "TLS for WebSocket only, on one listener",
        ),
    ] {
        let args = shared(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reason = assert_start_fails(&args, what);
        assert!(
            reason.contains("ssl"),
            "{what}: the reason should name the TLS options: {reason:?}"
        );
    }

    // The same pair on both is fine: one HTTPS listener for WebSocket and control.
    let p: u16 = port.parse().unwrap();
    let url = format!("https://127.0.0.1:{p}/ctl");
    let sw = Switch::builder("tlserr-shared")
        .port(p)
        .ctl_port(p)
        .args(&["--sslkey", &a.key, "--sslcert", &a.cert])
        .args(&["--ctlsslkey", &a.key, "--ctlsslcert", &a.cert])
        .ctl_url(&url)
        .ctl_opts(&["--ctlsslcert", &ca.cert])
        .start();
    let client = Switch::local("tlserr-client", &[]);
    client.add_port(
        "client",
        &format!("wss://127.0.0.1:{p}/"),
        &["--cacerts", &ca.cert],
    );
    sw.wait_servers(1);
}

/// docs/troubleshooting.md quotes what `ctl` prints when the control API's certificate is not
/// signed by a CA it was given: every message its row names is in `ctl`'s answer, none made up.
#[test]
fn troubleshooting_quotes_what_ctl_says_of_an_unknown_issuer() {
    if !needs(false, &["openssl"]) {
        return;
    }
    let pki = Pki::new("tsui");
    let ca = pki.ca("ts");
    let cert = pki.server(&ca, "ctl-ts", &["127.0.0.1"], KeyForm::Pkcs8);
    let ctl_port = free_port();
    let url = format!("https://127.0.0.1:{ctl_port}/ctl");
    let sw = Switch::builder("tsui")
        .ctl_port(ctl_port)
        .args(&["--ctlsslkey", &cert.key, "--ctlsslcert", &cert.cert])
        .ctl_url(&url)
        .ctl_opts(&["--ctlsslcert", &ca.cert])
        .start();
    let out = sw.ctl_with(&[], &["listport"]);
    let said = assert_ctl_internal_error(&out, "ctl without the CA");

    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/troubleshooting.md"),
    )
    .expect("read docs/troubleshooting.md");
    let row = page
        .lines()
        .find(|l| l.starts_with("| `ctl`") && l.contains("UnknownIssuer"))
        .unwrap_or_else(|| panic!("no row for ctl's UnknownIssuer in troubleshooting.md"));
    let what = row.split(" | ").next().unwrap_or_default();
    let quoted: Vec<&str> = what.split('`').skip(1).step_by(2).collect();
    assert!(quoted.len() > 1, "{what}");
    // What ctl printed, `…` in a quote standing for what varies (the URL).
    let printed = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains(&said));
    for q in quoted.iter().filter(|q| **q != "ctl") {
        let mut rest = printed.as_str();
        for piece in q.split('…') {
            let at = rest.find(piece).unwrap_or_else(|| {
                panic!("troubleshooting.md quotes {q:?}, ctl printed {printed:?}")
            });
            rest = &rest[at + piece.len()..];
        }
    }
}
