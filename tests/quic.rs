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
/// The TAP hosts' MTU in most tests: their frames fit in one datagram of a 1500-byte path
/// (larger frames: `quic_fits_frames_to_a_narrow_path` and the tests after it).
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
    // `auto` with a ws:// URL is WebSocket only: no QUIC is tried, WebSocket's error is given.
    let out = sw.ctl(&[
        "addport",
        "client",
        "ws://127.0.0.1:1/",
        "--transport",
        "auto",
    ]);
    assert!(!out.status.success());
    assert!(show(&out).contains("cannot connect"), "{}", show(&out));
    assert!(!show(&out).contains("quic"), "{}", show(&out));
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

#[test]
fn quic_paths_give_their_settings_and_unknown_ones_404() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicpa");
    let (s, ca) = sites("qp", &pki, &["--path", "/", "--path", "/v10=vlan:10"]);
    let u = format!("wss://{A_VETH}:{PORT}/v10");
    let quic = ["--transport", "quic", "--cacerts", ca.as_str()];
    s.b.sw.add_port("client", &u, &quic);
    let server = s.a.sw.wait_servers(1)[0].port;
    let row = s.a.sw.port_status(server);
    assert_eq!(
        (&row["path"], &row["vlan"]),
        (&"/v10".into(), &10.into()),
        "{row}"
    );

    let nowhere = format!("wss://{A_VETH}:{PORT}/nowhere");
    let mut argv = vec!["addport", "client", nowhere.as_str()];
    argv.extend_from_slice(&quic);
    let out = s.b.sw.ctl(&argv);
    assert!(
        !out.status.success(),
        "an unknown path must fail\n{}",
        show(&out)
    );
    assert!(show(&out).contains("404"), "{}", show(&out));
}

/// Datagrams a hostile QUIC peer sends after its CONNECT that are not the session's frames: a
/// truncated varint (empty, or cut in its 2-, 4- and 8-byte forms), another Quarter Stream ID.
const BAD_DATAGRAMS: &[&[u8]] = &[&[], &[0x40], &[0x80, 0, 0], &[0xc0, 0, 0, 0], &[1, 2, 3]];

/// A QUIC client by hand (quinn and h3, as a peer would be): CONNECTs to A's `/` trusting
/// `ca_pem`, sends [`BAD_DATAGRAMS`], holds the session for `hold`, and says whether the
/// connection was still open at the end.
fn hostile_client(ca_pem: Vec<u8>, hold: Duration) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(c.expect("CA PEM")).expect("CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        let mut t = quinn::TransportConfig::default();
        t.datagram_receive_buffer_size(Some(64 * 1024));
        cfg.transport_config(Arc::new(t));
        let ep = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).expect("endpoint");
        let addr = format!("{A_VETH}:{PORT}").parse().unwrap();
        let conn = ep
            .connect_with(cfg, addr, A_VETH)
            .unwrap()
            .await
            .expect("QUIC");
        let (mut driver, mut send) = h3::client::builder()
            .enable_extended_connect(true)
            .enable_datagram(true)
            .build::<_, _, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await
            .expect("h3");
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("https://{A_VETH}:{PORT}/"))
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h3::ext::Protocol::WEB_TRANSPORT);
        let mut stream = send.send_request(req).await.expect("CONNECT");
        let resp = stream.recv_response().await.expect("answer");
        assert_eq!(resp.status(), 200, "{resp:?}");
        for d in BAD_DATAGRAMS {
            conn.send_datagram(bytes::Bytes::from_static(d))
                .expect("datagram");
        }
        tokio::time::sleep(hold).await;
        conn.close_reason().is_none()
    })
}

#[test]
fn quic_bad_datagrams_are_counted_and_the_session_lives() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicbd");
    let (s, ca) = sites("qb", &pki, &[]);
    let ca_pem = std::fs::read(&ca).expect("CA file");
    let ns = s.b.ns.name().to_string();
    let client = std::thread::spawn(move || {
        enter_named(&ns, move || hostile_client(ca_pem, Duration::from_secs(5)))
    });
    let server = s.a.sw.wait_servers(1)[0].port;
    poll("rx_errors counted", Duration::from_secs(4), || {
        let row = s.a.sw.port_status(server);
        match row["rx_errors"].as_u64() {
            Some(n) if n == BAD_DATAGRAMS.len() as u64 => Ok(()),
            _ => Err(row.to_string()),
        }
    });
    assert!(
        client.join().expect("client thread"),
        "the session was closed"
    );
    assert!(s.a.sw.log().contains("port added"), "{}", s.a.sw.log());
}

#[test]
fn quic_sessions_count_against_the_per_address_limit() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quiclim");
    let (s, ca) = sites("qn", &pki, &["--max-conns-per-addr", "1"]);
    connect(&s, &ca, &[]);
    let u = url();
    let out = s.b.sw.ctl(&[
        "addport",
        "client",
        &u,
        "--transport",
        "quic",
        "--cacerts",
        &ca,
    ]);
    assert!(
        !out.status.success(),
        "a second session must fail\n{}",
        show(&out)
    );
    assert!(show(&out).contains("503"), "{}", show(&out));
    assert_eq!(s.a.sw.servers().len(), 1);
}

/// The probe interval of B's `auto` port in [`auto_falls_back_to_websocket_and_returns_to_quic`].
const PROBE_SECS: &str = "3";

/// Drops B's UDP to A's QUIC port (`on`), or lets it through again, with nftables in B's
/// namespace (gone with it).
fn block_udp(s: &Sites, on: bool) {
    let ns = &s.b.ns;
    if ns
        .exec(&["nft", "list", "table", "inet", "t"])
        .status
        .success()
    {
        ns.exec_ok(&["nft", "flush", "chain", "inet", "t", "o"]);
    } else {
        ns.exec_ok(&["nft", "add", "table", "inet", "t"]);
        let hook = "{ type filter hook output priority 0; }";
        ns.exec_ok(&["nft", "add", "chain", "inet", "t", "o", hook]);
    }
    if on {
        let port = PORT.to_string();
        ns.exec_ok(&[
            "nft", "add", "rule", "inet", "t", "o", "udp", "dport", &port, "drop",
        ]);
    }
}

/// B's client port's transport and reason, once `transport` is `want` (within `within`).
fn wait_transport(s: &Sites, port: u32, want: &str, within: Duration) -> String {
    switch_transport(&s.b.sw, port, want, within)
}

/// A client port's transport and reason, once `transport` is `want` (within `within`).
fn switch_transport(sw: &Switch, port: u32, want: &str, within: Duration) -> String {
    let t0 = std::time::Instant::now();
    let reason = poll(&format!("transport {want}"), within, || {
        let row = sw.port_status(port);
        match (row["transport"].as_str(), row["link"].as_str()) {
            (Some(t), Some("up")) if t == want => Ok(row["transport_reason"].to_string()),
            _ => Err(row.to_string()),
        }
    });
    eprintln!("transport {want} after {:?}: {reason}", t0.elapsed());
    reason
}

#[test]
fn auto_falls_back_to_websocket_and_returns_to_quic() {
    if !needs(&["openssl", "nft"]) {
        return;
    }
    let pki = Pki::new("quicauto");
    let ca = pki.ca("quic");
    let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Pkcs8);
    let s = Sites::builder("qa")
        .a(|a| {
            a.switch(|b| b.port(PORT)).args(&[
                "--quic",
                "--sslkey",
                &cert.key,
                "--sslcert",
                &cert.cert,
            ])
        })
        .b(|b| b.args(&["--quic-probe-interval", PROBE_SECS]))
        .both(|s| s.args(&["--keepalive", "1"]).tap())
        .start();
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", HOST_MTU]);
    s.b.ns.ip(&["link", "set", "ewsB0", "mtu", HOST_MTU]);

    // UDP blocked: QUIC never answers, WebSocket wins once QUIC's head start is over.
    block_udp(&s, true);
    let args = ["--transport", "auto", "--cacerts", &ca.cert];
    let client = s.b.sw.add_port("client", &url(), &args);
    let reason = wait_transport(&s, client.port, "ws", Duration::from_secs(3));
    assert!(reason.contains("quic failed"), "{reason}");
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    ping(&s.a.ns, B_TAP);

    // UDP let through: within a probe interval (and a blocked probe's handshake), QUIC.
    block_udp(&s, false);
    let reason = wait_transport(&s, client.port, "quic", Duration::from_secs(12));
    assert!(reason.contains("probe succeeded"), "{reason}");
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(5));
    ping(&s.a.ns, B_TAP);
    // The WebSocket session was closed: A has the QUIC server port only.
    poll(
        "A's WebSocket port to go",
        Duration::from_secs(5),
        || match s.a.sw.servers().as_slice() {
            [one] if s.a.sw.port_status(one.port)["transport"] == "quic" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // UDP blocked mid-session: the idle timeout (2 s), then the race again, onto WebSocket.
    block_udp(&s, true);
    let reason = wait_transport(&s, client.port, "ws", Duration::from_secs(12));
    assert!(reason.contains("quic failed"), "{reason}");
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    ping(&s.a.ns, B_TAP);
    // One client port all along, and each switch logged.
    assert_eq!(
        s.b.sw
            .listport()
            .iter()
            .filter(|p| p.kind == "client")
            .count(),
        1
    );
    let log = s.b.sw.log();
    assert!(log.contains("moved from WebSocket to QUIC"), "{log}");
    assert!(log.contains("moved from QUIC to WebSocket"), "{log}");
}

/// `tinyproxy` in a namespace on 127.0.0.1:`port`, CONNECT to [`PORT`] only; killed on drop
/// (its log printed if the test panics).
struct Proxy(std::process::Child, String);

impl Proxy {
    fn start(ns: &Netns, dir: &TempDir, port: u16) -> Proxy {
        let conf = dir.write(
            "tinyproxy.conf",
            &format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
                 LogLevel Info\nConnectPort {PORT}\n"
            ),
        );
        let log = dir.file("tinyproxy.log");
        let out = std::fs::File::create(&log).expect("create the tinyproxy log");
        let child = ns
            .command(&["tinyproxy", "-d", "-c", &conf])
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        poll("tinyproxy", Duration::from_secs(10), || {
            ns.tcp_connect(addr).map(drop).map_err(|e| e.to_string())
        });
        Proxy(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("===== tinyproxy log =====\n{}===== end =====", self.log());
        }
    }
}

#[test]
fn auto_through_an_http_proxy_is_websocket_only() {
    if !needs(&["openssl", "tinyproxy"]) {
        return;
    }
    let pki = Pki::new("quicpx");
    let ca = pki.ca("quic");
    let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Pkcs8);
    let s = Sites::builder("qp")
        .a(|a| {
            a.switch(|b| b.port(PORT)).args(&[
                "--quic",
                "--sslkey",
                &cert.key,
                "--sslcert",
                &cert.cert,
            ])
        })
        .b(|b| {
            b.switch(|b| b.env("https_proxy", "http://127.0.0.1:8888"))
                .args(&["--quic-probe-interval", "1"])
        })
        .both(|s| s.args(&["--keepalive", "1"]).tap())
        .start();
    let proxy = Proxy::start(&s.b.ns, &pki.dir, 8888);

    // UDP is open, but the proxy carries TCP only: WebSocket through it, and no probe.
    let args = ["--transport", "auto", "--cacerts", &ca.cert];
    let client = s.b.sw.add_port("client", &url(), &args);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    let row = s.b.sw.port_status(client.port);
    assert_eq!(row["transport"], "ws", "{row}");
    assert_eq!(row["transport_reason"], "http proxy: ws only", "{row}");
    assert!(
        proxy.log().contains(&format!("CONNECT {A_VETH}:{PORT} ")),
        "{}",
        proxy.log()
    );
    assert_eq!(s.a.sw.servers().len(), 1);

    // The same target from a configuration file's `[[port]]`, on a switch without the proxy:
    // QUIC.
    let conf = pki.dir.write(
        "auto.toml",
        &format!(
            "[[port]]\ntype = \"client\"\ntarget = \"{}\"\ncacerts = \"{}\"\n\
             transport = \"auto\"\n",
            url(),
            ca.cert
        ),
    );
    let sw = Switch::builder("qp-B2")
        .netns(&s.b.ns)
        .host(Sites::B_VETH)
        .port(8081)
        .ctl_port(7868)
        .args(&["--config", &conf])
        .start();
    let reason = switch_transport(&sw, 1, "quic", Duration::from_secs(10));
    assert_eq!(reason, "\"quic\"");
    s.a.sw.wait_servers(2);
}

/// The path between the switches: a 1300-byte MTU on the outer veth, under the hosts' 1500.
const NARROW_PATH_MTU: &str = "1300";

/// A QUIC port's counter, summed over B's client port and A's server port.
fn both_ways(s: &Sites, client: u32, field: &str) -> u64 {
    let server = s.a.sw.servers()[0].port;
    let count = |row: serde_json::Value| row[field].as_u64().unwrap_or(0);
    count(s.b.sw.port_status(client)) + count(s.a.sw.port_status(server))
}

#[test]
fn quic_fits_frames_to_a_narrow_path() {
    if !needs(&["openssl", "iperf3"]) {
        return;
    }
    let pki = Pki::new("quicfit");
    let (s, ca) = sites("qf", &pki, &[]);
    // Hosts at 1500 behind a 1300-byte path: their frames do not fit one datagram.
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", "1500"]);
    s.b.ns.ip(&["link", "set", "ewsB0", "mtu", "1500"]);
    s.a.ns.ip(&["link", "set", "vAB", "mtu", NARROW_PATH_MTU]);
    s.b.ns.ip(&["link", "set", "vBA", "mtu", NARROW_PATH_MTU]);
    let client = connect(&s, &ca, &[]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));

    // Path MTU discovery: from quinn's first 1200-byte packets up to what 1300 bytes take.
    poll("max_datagram to grow", Duration::from_secs(15), || {
        let row = s.b.sw.port_status(client.port);
        match row["max_datagram"].as_u64() {
            Some(n) if n > 1200 && n < 1300 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // TCP: SYNs clamped, so the segments fit datagrams; bulk moves both ways.
    for (extra, what) in [(&[][..], "B to A"), (&["-R"][..], "A to B")] {
        let r = iperf3(&s.a.ns, &s.b.ns, A_TAP, 5201, extra);
        eprintln!(
            "iperf3 over QUIC on a 1300-byte path, {what}: {:.1} Mbit/s",
            r.mbit_s
        );
        assert!(r.received > 0, "iperf3 {what} moved nothing: {:?}", r.error);
    }
    let clamped = both_ways(&s, client.port, "mss_clamped");
    eprintln!("mss_clamped {clamped}");
    assert!(clamped > 0, "no SYN clamped");

    // A 1442-byte frame, not TCP, DF set: through DATAGRAM capsules on the CONNECT stream.
    poll("ping -s 1400 -M do", Duration::from_secs(10), || {
        let out = s.b.ns.exec(&[
            "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-s", "1400", "-M", "do", A_TAP,
        ]);
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
        }
    });
    // Published once a second.
    poll("capsules counted", Duration::from_secs(3), || {
        let (tx, rx) = (
            both_ways(&s, client.port, "tx_capsuled"),
            both_ways(&s, client.port, "rx_capsuled"),
        );
        match tx >= 2 && rx >= 2 {
            true => Ok(()),
            false => Err(format!("tx_capsuled {tx}, rx_capsuled {rx}")),
        }
    });
    for row in [
        s.b.sw.port_status(client.port),
        s.a.sw.port_status(s.a.sw.servers()[0].port),
    ] {
        eprintln!("{row}");
        assert_eq!(row["tx_dropped_oversize"], 0, "{row}");
        assert_eq!(row["tx_capsule_dropped"], 0, "{row}");
        assert_eq!(row["rx_errors"], 0, "{row}");
    }
}

#[test]
fn quic_without_the_mss_clamp_resegments_tcp() {
    if !needs(&["openssl", "iperf3"]) {
        return;
    }
    let pki = Pki::new("quicseg");
    let ca = pki.ca("quic");
    let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Pkcs8);
    let (key, crt) = (cert.key.clone(), cert.cert.clone());
    let s = Sites::builder("qs")
        .a(|a| {
            a.switch(|b| b.port(PORT))
                .args(&["--quic", "--sslkey", &key, "--sslcert", &crt])
        })
        .both(|s| s.args(&["--keepalive", "1", "--no-mss-clamp"]).tap())
        .start();
    let ca = ca.cert;
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", "1500"]);
    s.b.ns.ip(&["link", "set", "ewsB0", "mtu", "1500"]);
    s.a.ns.ip(&["link", "set", "vAB", "mtu", NARROW_PATH_MTU]);
    s.b.ns.ip(&["link", "set", "vBA", "mtu", NARROW_PATH_MTU]);
    let client = connect(&s, &ca, &[]);
    ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
    // No SYN clamped: the hosts' 1448-byte segments are cut to fit by the switches.
    for (extra, what) in [(&[][..], "B to A"), (&["-R"][..], "A to B")] {
        let r = iperf3(&s.a.ns, &s.b.ns, A_TAP, 5201, extra);
        eprintln!("iperf3 over QUIC unclamped, {what}: {:.1} Mbit/s", r.mbit_s);
        assert!(r.received > 0, "iperf3 {what} moved nothing: {:?}", r.error);
    }
    poll("both sides resegment", Duration::from_secs(3), || {
        let a = s.a.sw.port_status(s.a.sw.servers()[0].port);
        let b = s.b.sw.port_status(client.port);
        match a["tx_resegmented"].as_u64() > Some(0) && b["tx_resegmented"].as_u64() > Some(0) {
            true => Ok(()),
            false => Err(format!("A {a}\nB {b}")),
        }
    });
    assert_eq!(both_ways(&s, client.port, "mss_clamped"), 0);
}

/// A QUIC peer by hand that offers capsules: CONNECTs to A's `/` with `capsule-protocol: ?1`,
/// checks that A echoes it, sends `first` on the CONNECT stream, waits `pause`, sends `then`,
/// and returns how the connection ended within 5 s (`None`: still open).
fn capsule_peer(
    ca_pem: Vec<u8>,
    first: Vec<u8>,
    pause: Duration,
    then: Vec<u8>,
) -> Option<quinn::ConnectionError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(c.expect("CA PEM")).expect("CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
        let cfg = quinn::ClientConfig::new(Arc::new(crypto));
        let ep = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).expect("endpoint");
        let addr = format!("{A_VETH}:{PORT}").parse().unwrap();
        let conn = ep
            .connect_with(cfg, addr, A_VETH)
            .unwrap()
            .await
            .expect("QUIC");
        let (mut driver, mut send) = h3::client::builder()
            .enable_extended_connect(true)
            .enable_datagram(true)
            .build::<_, _, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await
            .expect("h3");
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("https://{A_VETH}:{PORT}/"))
            .header("capsule-protocol", "?1")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h3::ext::Protocol::WEB_TRANSPORT);
        let mut stream = send.send_request(req).await.expect("CONNECT");
        let resp = stream.recv_response().await.expect("answer");
        assert_eq!(resp.status(), 200, "{resp:?}");
        assert_eq!(resp.headers()["capsule-protocol"], "?1", "{resp:?}");
        stream
            .send_data(first.into())
            .await
            .expect("first capsules");
        tokio::time::sleep(pause).await;
        let _ = stream.send_data(then.into()).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        closed.ok()
    })
}

#[test]
fn quic_capsules_from_a_peer_are_switched_and_an_overlong_one_closes_the_session() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quiccap");
    let (s, ca) = sites("qc", &pki, &[]);
    let ca_pem = std::fs::read(&ca).expect("CA file");
    // A broadcast frame of an experimental ethertype in a DATAGRAM capsule (type 0, length
    // 60), behind a grease capsule; then a DATAGRAM capsule that says 2^62 − 1 bytes.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x26, 0x88, 0xb5]);
    frame.resize(60, 0);
    let mut first = vec![0x40, 0x17 + 0x29, 3, 1, 2, 3, 0x00, 60];
    first.extend_from_slice(&frame);
    let huge = vec![0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let ns = s.b.ns.name().to_string();
    let peer = std::thread::spawn(move || {
        enter_named(&ns, move || {
            capsule_peer(ca_pem, first, Duration::from_secs(3), huge)
        })
    });
    let server = s.a.sw.wait_servers(1)[0].port;
    poll("rx_capsuled counted", Duration::from_secs(3), || {
        let row = s.a.sw.port_status(server);
        match (row["rx_capsuled"].as_u64(), row["rx"].as_u64()) {
            (Some(1), Some(rx)) if rx >= 1 => Ok(()),
            _ => Err(row.to_string()),
        }
    });
    let end = peer.join().expect("peer thread");
    match end {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(0x33), "{c:?}")
        }
        other => panic!("closed with H3_DATAGRAM_ERROR expected: {other:?}"),
    }
    poll(
        "the server port to go",
        Duration::from_secs(5),
        || match s.a.sw.servers().len() {
            0 => Ok(()),
            n => Err(format!("{n} server ports")),
        },
    );
    assert!(
        s.a.sw.log().contains("capsule of type 0x0"),
        "{}",
        s.a.sw.log()
    );
}

#[test]
fn quic_oversize_frames_to_a_peer_without_capsules_are_dropped_and_counted() {
    if !needs(&["openssl"]) {
        return;
    }
    let pki = Pki::new("quicnc");
    let (s, ca) = sites("qd", &pki, &[]);
    s.a.ns.ip(&["link", "set", "ewsA0", "mtu", "1500"]);
    let ca_pem = std::fs::read(&ca).expect("CA file");
    let ns = s.b.ns.name().to_string();
    // A peer as a browser is: no `capsule-protocol` in its CONNECT.
    let peer = std::thread::spawn(move || {
        enter_named(&ns, move || hostile_client(ca_pem, Duration::from_secs(6)))
    });
    let server = s.a.sw.wait_servers(1)[0].port;
    // 1442-byte broadcast frames from A's host, flooded to the peer: too large for a datagram.
    let bcast = [
        "ping", "-n", "-b", "-c", "3", "-i", "0.2", "-W", "1", "-s", "1400",
    ];
    let _ = s.a.ns.exec(&[&bcast[..], &["192.0.2.255"]].concat());
    poll(
        "tx_dropped_oversize counted",
        Duration::from_secs(3),
        || {
            let row = s.a.sw.port_status(server);
            match row["tx_dropped_oversize"].as_u64() {
                Some(n) if n >= 3 && row["tx_capsuled"] == 0 => Ok(()),
                _ => Err(row.to_string()),
            }
        },
    );
    assert!(peer.join().expect("peer thread"), "the session was closed");
}
