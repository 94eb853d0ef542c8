//! End-to-end tests of the QUIC transport (issue #26, profile `wt`): two switches in network
//! namespaces, A serving `--quic` beside WebSocket, B's client port `--transport quic`, TAP
//! hosts on both. Certificates are made with the real `openssl`, htpasswd files with the real
//! `htpasswd`; a test whose tool is missing, or that is not root, skips loudly (a failure under
//! CI=true).
//!
//! On a binary without QUIC these fail at once: `etherws sw` refuses `--quic`.

use std::time::Duration;

use etherws_testkit::*;

const A_VETH: &str = Sites::A_VETH;
const A_TAP: &str = Sites::A_TAP;
const B_TAP: &str = Sites::B_TAP;
/// A's listener: WebSocket over TCP and QUIC over UDP, one port number.
const PORT: u16 = 8443;
/// The TAP hosts' MTU: their frames fit in one datagram of a 1500-byte path (the MSS clamp
/// and capsules for larger frames are a later step).
const HOST_MTU: &str = "1300";

/// Root and every tool the test needs, or a loud skip (a failure under CI).
fn needs(tools: &[&str]) -> bool {
    require_root() && tools.iter().all(|t| require_tool(t))
}

/// A serving `--quic` with a certificate for its veth address (and `extra`), B without; both
/// with a TAP whose host has a [`HOST_MTU`] MTU. Not connected yet. Keepalive 1 s: a dead
/// peer is noticed within 2 s.
fn sites(tag: &str, pki: &Pki, extra: &[&str]) -> (Sites, String) {
    let ca = pki.ca("quic");
    let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Pkcs8);
    let (key, crt) = (cert.key.clone(), cert.cert.clone());
    let s = Sites::builder(tag)
        .a(|a| {
            a.switch(|b| b.port(PORT))
                .args(&["--quic", "--sslkey", &key, "--sslcert", &crt])
                .args(extra)
        })
        .both(|s| s.args(&["--keepalive", "1"]).tap())
        .start();
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", HOST_MTU]);
    s.b.ns.ip(&["link", "set", "ewsB0", "mtu", HOST_MTU]);
    (s, ca.cert)
}

fn url() -> String {
    format!("wss://{A_VETH}:{PORT}/")
}

/// B's QUIC client port to A, with `opts`; waits for A's server port.
fn connect(s: &Sites, ca: &str, opts: &[&str]) -> PortRow {
    let mut args = vec!["--transport", "quic", "--cacerts", ca];
    args.extend_from_slice(opts);
    let client = s.b.sw.add_port("client", &url(), &args);
    s.a.sw.wait_servers(1);
    client
}

#[test]
fn quic_tunnel_pings_moves_bulk_and_lists_its_transport() {
    if !needs(&["openssl", "iperf3"]) {
        return;
    }
    let pki = Pki::new("quic");
    let (s, ca) = sites("qt", &pki, &[]);
    let client = connect(&s, &ca, &[]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    ping(&s.a.ns, B_TAP);

    for (extra, what) in [(&[][..], "B to A"), (&["-R"][..], "A to B")] {
        let r = iperf3(&s.a.ns, &s.b.ns, A_TAP, 5201, extra);
        eprintln!("iperf3 over QUIC, {what}: {:.1} Mbit/s", r.mbit_s);
        assert!(r.received > 0, "iperf3 {what} moved nothing: {:?}", r.error);
    }

    let server = s.a.sw.servers()[0].port;
    for (sw, port, kind) in [
        (&s.b.sw, client.port, "client"),
        (&s.a.sw, server, "server"),
    ] {
        let row = sw.port_status(port);
        assert_eq!(row["type"], kind, "{row}");
        assert_eq!(row["transport"], "quic", "{row}");
        assert_eq!(row["congestion"], "bbr", "{row}");
        assert!(row["max_datagram"].as_u64() > Some(1200), "{row}");
        assert!(
            row["rtt_ms"].is_u64() && row["lost_packets"].is_u64(),
            "{row}"
        );
        assert_eq!(row["rx_errors"], 0, "{row}");
    }
    // The TAP stays a TAP.
    assert!(s.a.sw.port_status(1)["transport"].is_null());
}

#[test]
fn quic_client_comes_back_after_the_server_restarts() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicre");
    let (mut s, ca) = sites("qr", &pki, &[]);
    let client = connect(&s, &ca, &[]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));

    s.a.sw.signal(libc::SIGKILL);
    s.a.sw
        .wait_exit(Duration::from_secs(5))
        .expect("killed switch exits");
    poll("B's client port down", Duration::from_secs(10), || {
        match s.b.sw.port_status(client.port)["link"].as_str() {
            Some("down") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // The kernel removes the dead switch's TAP shortly after; a restart reuses its name.
    poll("ewsA0 to go", Duration::from_secs(10), || {
        match s.a.ns.has_link("ewsA0") {
            true => Err("still there".into()),
            false => Ok(()),
        }
    });
    s.a.restart("qr-A2");
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", HOST_MTU]);
    // The first retries back off 1, 2, 4 s (with jitter).
    s.a.sw.wait_servers(1);
    // A's new TAP has a new MAC address: A's host asks first (ARP), so B's host learns it
    // (B's entry for the old one may stay "reachable" for up to 45 s).
    ping_within(&s.a.ns, B_TAP, Duration::from_secs(20));
    ping(&s.b.ns, A_TAP);
    assert_eq!(s.b.sw.port_status(client.port)["transport"], "quic");
}

#[test]
fn quic_htpasswd_accepted_and_refused() {
    if !needs(&["openssl", "htpasswd"]) {
        return;
    }
    let pki = Pki::new("quicht");
    let file = pki.dir.file("quic.htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-c", "-b", "-B", &file, "alice", "s3cret"])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "{}", show(&out));
    let (s, ca) = sites("qh", &pki, &["--htpasswd", &file]);

    // Refused: the port never comes up, and A says why.
    let u = url();
    let out = s.b.sw.ctl(&[
        "addport",
        "client",
        &u,
        "--transport",
        "quic",
        "--cacerts",
        &ca,
        "--user",
        "alice",
        "--passwd",
        "wrong",
    ]);
    assert!(
        !out.status.success(),
        "a wrong password must fail\n{}",
        show(&out)
    );
    assert!(show(&out).contains("401"), "{}", show(&out));
    assert_eq!(s.a.sw.servers(), vec![]);
    assert!(s.b.sw.listport().iter().all(|p| p.kind != "client"));
    assert!(
        s.a.sw.log().contains("authentication failed"),
        "A logs the failure:\n{}",
        s.a.sw.log()
    );

    // Accepted: the tunnel carries traffic.
    connect(&s, &ca, &["--user", "alice", "--passwd", "s3cret"]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    let server = s.a.sw.servers()[0].port;
    assert_eq!(s.a.sw.port_status(server)["user"], "alice");
}

#[test]
fn quic_needs_tls_and_a_wss_url() {
    let out = sw_start_fails(&["--quic", "--port", "0"]);
    assert!(
        show(&out).contains("--quic needs --sslkey and --sslcert"),
        "{}",
        show(&out)
    );
    let sw = Switch::local("quic-ws", &[]);
    let out = sw.ctl(&[
        "addport",
        "client",
        "ws://127.0.0.1:1/",
        "--transport",
        "quic",
    ]);
    assert!(!out.status.success());
    assert!(show(&out).contains("needs a wss:// URL"), "{}", show(&out));
    let out = sw.ctl(&[
        "addport",
        "client",
        "wss://127.0.0.1:1/",
        "--transport",
        "auto",
    ]);
    assert!(show(&out).contains("not supported yet"), "{}", show(&out));
}

#[test]
fn quic_client_certificates_and_the_loop_check() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicmt");
    let clients = pki.ca("clients");
    let other = pki.ca("other");
    let good = pki.client(&clients, "node-b", KeyForm::Pkcs8);
    let bad = pki.client(&other, "mallory", KeyForm::Pkcs8);
    let (s, ca) = sites("qm", &pki, &["--sslclientca", &clients.cert]);
    let u = url();
    let add = |sw: &Switch, cert: Option<&ServerCert>| {
        let mut argv = vec![
            "addport",
            "client",
            &u,
            "--transport",
            "quic",
            "--cacerts",
            &ca,
        ];
        if let Some(c) = cert {
            argv.extend_from_slice(&["--cert", &c.cert, "--key", &c.key]);
        }
        sw.ctl(&argv)
    };

    // No certificate, or one of another CA: refused, and no port comes up.
    for (cert, what) in [(None, "no certificate"), (Some(&bad), "another CA's")] {
        let out = add(&s.b.sw, cert);
        assert!(!out.status.success(), "{what}: must fail\n{}", show(&out));
        assert_eq!(s.a.sw.servers(), vec![], "{what}");
    }

    // The CA's client certificate: the port's user is its name.
    let out = add(&s.b.sw, Some(&good));
    assert!(out.status.success(), "{}", show(&out));
    s.a.sw.wait_servers(1);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    let server = s.a.sw.servers()[0].port;
    assert_eq!(s.a.sw.port_status(server)["user"], "node-b");

    // A's client port to its own QUIC listener: refused with 508.
    let out = add(&s.a.sw, Some(&good));
    assert!(!out.status.success(), "a loop must fail\n{}", show(&out));
    assert!(show(&out).contains("508"), "{}", show(&out));
    assert_eq!(s.a.sw.servers().len(), 1);
}

#[test]
fn quic_takes_a_reloaded_certificate_and_keeps_its_sessions() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicrl");
    let (s, ca) = sites("ql", &pki, &[]);
    let first = connect(&s, &ca, &[]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));

    // A new certificate from another CA, in place of the files A was started with.
    let ca2 = pki.ca("rotated");
    let cert2 = pki.server(&ca2, "switch-a2", &[A_VETH], KeyForm::Pkcs8);
    let key = pki.dir.file("switch-a.key");
    let crt = pki.dir.file("switch-a.pem");
    for (from, to) in [(&cert2.key, &key), (&cert2.cert, &crt)] {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {from} to {to}: {e}"));
    }
    let out = s.a.sw.ctl_ok(&["reload"]);
    eprintln!("reload: {out}");

    // The session in course goes on; a new one is verified against the new CA only.
    ping(&s.b.ns, A_TAP);
    let u = url();
    let old = s.b.sw.ctl(&[
        "addport",
        "client",
        &u,
        "--transport",
        "quic",
        "--cacerts",
        &ca,
    ]);
    assert!(
        !old.status.success(),
        "the old CA must fail now\n{}",
        show(&old)
    );
    s.b.sw.add_port(
        "client",
        &u,
        &["--transport", "quic", "--cacerts", &ca2.cert],
    );
    s.a.sw.wait_servers(2);
    assert_eq!(s.b.sw.port_status(first.port)["link"], "up");
}
