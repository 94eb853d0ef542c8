//! Hostile input for the QUIC listener (`--quic`, issue #26 step S7), against the real binary in
//! network namespaces (root). The lab is `tests/quic.rs`'s: switch A serves `--quic` with a TAP
//! host, switch B's honest QUIC client port joins it, and B's host pings A's through it. The
//! attacker is a raw client built here on quinn, h3 and h3-quinn, from a second address of B's
//! namespace ([`EVIL`]), so the per-address limits it hits are its own.
//!
//! Every test ends with [`Lab::still_serves`]: A answers `listport`, the honest session is up
//! and the honest hosts ping. Memory is A's VmRSS, as `tests/hardening.rs` reads it.
//!
//! On a binary without QUIC these fail at once: `etherws sw` refuses `--quic`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etherws_testkit::*;
use serde_json::Value;

const A_VETH: &str = Sites::A_VETH;
const A_TAP: &str = Sites::A_TAP;
/// A's listener: WebSocket over TCP and QUIC over UDP, one port number.
const PORT: u16 = 8443;
/// The attacker's address, on B's veth beside the honest client's 198.51.100.2.
const EVIL: &str = "198.51.100.3";
/// The TAP hosts' MTU, as in `tests/quic.rs`: their frames fit in one datagram.
const HOST_MTU: &str = "1300";
/// A's `--max-frame` here: small, so that one datagram carries a frame over it.
const MAX_FRAME: usize = 600;

/// The lab: A (QUIC server, TAP), B (TAP, honest QUIC client port), the attacker's runtime.
struct Lab {
    s: Sites,
    ca: String,
    _pki: Pki,
    rt: tokio::runtime::Runtime,
}

impl Lab {
    /// Root, `openssl` and `nft`, or a loud skip (a failure under CI=true).
    fn needs() -> bool {
        require_root() && require_tool("openssl") && require_tool("nft")
    }

    /// The lab with `extra` arguments for A; the honest hosts ping when this returns.
    fn new(tag: &str, extra: &[&str]) -> Lab {
        Self::with_keepalive(tag, "1", extra)
    }

    /// [`Lab::new`] with A's `--keepalive` (B's is 1 s).
    fn with_keepalive(tag: &str, keepalive: &str, extra: &[&str]) -> Lab {
        let pki = Pki::new(tag);
        let ca = pki.ca("quic");
        // P-256: the handshakes of many sessions are cheap on a busy machine.
        let cert = pki.server(&ca, "switch-a", &[A_VETH], KeyForm::Sec1);
        let mf = MAX_FRAME.to_string();
        let s = Sites::builder(tag)
            .a(|a| {
                a.switch(|b| b.port(PORT))
                    .args(&["--quic", "--sslkey", &cert.key, "--sslcert", &cert.cert])
                    .args(&["--max-frame", &mf, "--keepalive", keepalive])
                    .args(extra)
                    .tap()
            })
            .b(|s| s.args(&["--keepalive", "1"]).tap())
            .start();
        s.a.ns.ip(&["link", "set", "ewsA0", "mtu", HOST_MTU]);
        s.b.ns.ip(&["link", "set", "ewsB0", "mtu", HOST_MTU]);
        s.b.ns
            .ip(&["addr", "add", &format!("{EVIL}/24"), "dev", "vBA"]);
        let url = format!("wss://{A_VETH}:{PORT}/");
        s.b.sw.add_port(
            "client",
            &url,
            &["--transport", "quic", "--cacerts", &ca.cert],
        );
        s.a.sw.wait_servers(1);
        ping_within(&s.b.ns, A_TAP, Duration::from_secs(10));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Lab {
            s,
            ca: ca.cert,
            _pki: pki,
            rt,
        }
    }

    /// A's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.s.a.sw.pid()))
            .expect("read the switch's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The honest session's row on A (the server port whose peer is not [`EVIL`]).
    fn honest_row(&self) -> Value {
        let honest = self
            .s
            .a
            .sw
            .servers()
            .into_iter()
            .find(|p| !p.target.starts_with(EVIL))
            .expect("the honest server port");
        self.s.a.sw.port_status(honest.port)
    }

    /// The attacker's server ports on A.
    fn evil_ports(&self) -> Vec<PortRow> {
        let servers = self.s.a.sw.servers();
        servers
            .into_iter()
            .filter(|p| p.target.starts_with(EVIL))
            .collect()
    }

    /// What every test ends with: A answers `listport` within a second, the honest QUIC
    /// session is up, and the honest hosts still ping through it.
    fn still_serves(&self) {
        let t0 = Instant::now();
        self.s.a.sw.ctl_ok(&["listport"]);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "listport took {:?}",
            t0.elapsed()
        );
        assert_eq!(self.honest_row()["link"], "up");
        ping(&self.s.b.ns, A_TAP);
        ping(&self.s.a.ns, Sites::B_TAP);
    }

    /// The attacker's QUIC endpoint: a UDP socket on [`EVIL`] in B's namespace.
    fn evil(&self) -> Evil {
        let socket = self
            .s
            .b
            .ns
            .enter(|| UdpSocket::bind((EVIL, 0)).expect("bind the attacker's socket"));
        let _guard = self.rt.enter();
        let runtime = Arc::new(quinn::TokioRuntime);
        let ep = quinn::Endpoint::new(Default::default(), None, socket, runtime)
            .expect("the attacker's endpoint");
        Evil {
            ep,
            client: client_config(&self.ca),
        }
    }

    /// A UDP socket on [`EVIL`] in B's namespace, for raw packets.
    fn evil_udp(&self) -> UdpSocket {
        self.s
            .b
            .ns
            .enter(|| UdpSocket::bind((EVIL, 0)).expect("bind a raw UDP socket"))
    }

    /// Runs `f` on the attacker's runtime.
    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Polls A's port `n` until `ok` holds for its `listPort` row (counters are published
    /// every second).
    fn wait_row(&self, n: u32, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        poll(what, Duration::from_secs(10), || {
            let row = self.s.a.sw.port_status(n);
            if ok(&row) {
                Ok(row)
            } else {
                Err(row.to_string())
            }
        })
    }
}

/// A TLS client configuration for A's QUIC listener: its CA, ALPN `h3`.
fn client_config(ca: &str) -> quinn::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("QUIC");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    config.transport_config(Arc::new(t));
    config
}

/// The attacker: a quinn endpoint on [`EVIL`].
struct Evil {
    ep: quinn::Endpoint,
    client: quinn::ClientConfig,
}

/// An HTTP/3 connection of the attacker's: the QUIC connection, h3's request sender, the task
/// that drives h3's connection.
struct H3 {
    conn: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for H3 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

fn server() -> SocketAddr {
    SocketAddr::new(A_VETH.parse().expect("A's address"), PORT)
}

impl Evil {
    /// A QUIC connection to A (the handshake only).
    async fn quic(&self) -> Result<quinn::Connection, quinn::ConnectionError> {
        let connecting = self
            .ep
            .connect_with(self.client.clone(), server(), A_VETH)
            .expect("connect_with");
        connecting.await
    }

    /// A QUIC connection to A with h3 set up on it.
    async fn h3(&self) -> H3 {
        h3_on(self.quic().await.expect("QUIC handshake")).await
    }

    /// A session: an h3 connection whose CONNECT A answered 200.
    async fn session(&self) -> (H3, Stream) {
        self.h3_session(connect()).await
    }

    /// A session opened with `req`.
    async fn h3_session(&self, req: http::Request<()>) -> (H3, Stream) {
        let mut h3 = self.h3().await;
        let (status, stream) = h3.request(req).await;
        assert_eq!(status, Ok(200), "the attacker's CONNECT");
        (h3, stream.expect("the CONNECT stream"))
    }
}

/// h3 set up on the attacker's QUIC connection `conn`.
async fn h3_on(conn: quinn::Connection) -> H3 {
    let (mut driver, send) = h3::client::builder()
        .enable_extended_connect(true)
        .enable_datagram(true)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .expect("HTTP/3 set-up");
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    H3 { conn, send, driver }
}

impl H3 {
    /// Sends `req` (finished at once unless it is a CONNECT); the status A answered, or the
    /// error that came instead.
    async fn request(&mut self, req: http::Request<()>) -> (Result<u16, String>, Option<Stream>) {
        let connect = req.method() == http::Method::CONNECT;
        let mut stream = match self.send.send_request(req).await {
            Ok(s) => s,
            Err(e) => return (Err(e.to_string()), None),
        };
        if !connect {
            let _ = stream.finish().await;
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), stream.recv_response()).await;
        match answer {
            Ok(Ok(resp)) => (Ok(resp.status().as_u16()), Some(stream)),
            Ok(Err(e)) => (Err(e.to_string()), None),
            Err(_) => (Err("no answer within 5 s".into()), None),
        }
    }
}

/// The extended CONNECT an etherws client sends (`:protocol = webtransport`, path `/`).
fn connect() -> http::Request<()> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{A_VETH}:{PORT}/"))
        .header("sec-webtransport-http3-draft02", "1")
        .body(())
        .expect("request");
    req.extensions_mut()
        .insert(h3::ext::Protocol::WEB_TRANSPORT);
    req
}

/// A plain request: `method` on `/`, no `:protocol`.
fn plain(method: http::Method) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("https://{A_VETH}:{PORT}/"))
        .body(())
        .expect("request")
}

/// A broadcast ARP request for A's TAP host from a made-up station: a frame the switch takes.
fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x66, 0x08, 0x06]);
    f.extend_from_slice(&[
        0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x66, 192, 0, 2, 66,
    ]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[192, 0, 2, 1]);
    f.resize(60, 0);
    f
}

/// `frame` as a datagram of the session on request stream 0 (Quarter Stream ID 0).
fn datagram(frame: &[u8]) -> Bytes {
    let mut d = vec![0u8];
    d.extend_from_slice(frame);
    d.into()
}

/// nftables in `ns`: runs one `nft` command line, must succeed.
fn nft(ns: &Netns, rule: &str) -> String {
    let argv: Vec<&str> = ["nft"].into_iter().chain(rule.split_whitespace()).collect();
    ns.exec_ok(&argv)
}

/// A named counter's (packets, bytes) in table `inet t` of `ns`.
fn counter(ns: &Netns, name: &str) -> (u64, u64) {
    let out = ns.exec_ok(&["nft", "list", "counter", "inet", "t", name]);
    let field = |key: &str| {
        out.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {out}"))
    };
    (field("packets"), field("bytes"))
}

// ---------------------------------------------------------------------------------------------
// datagrams

#[test]
fn quic_malformed_datagrams_are_dropped_and_counted() {
    if !Lab::needs() {
        return;
    }
    let lab = Lab::new("qhd", &[]);
    let evil = lab.evil();
    let (h3, _stream) = lab.run(evil.session());
    let port = lab.evil_ports()[0].port;
    let max = h3.conn.max_datagram_size().expect("datagrams");
    eprintln!("the attacker's max datagram: {max} bytes");

    let mut bad: Vec<(Bytes, &str)> = vec![
        (Bytes::new(), "empty"),
        (Bytes::from_static(&[0x40]), "varint cut after 1 of 2 bytes"),
        (
            Bytes::from_static(&[0xc0, 0, 0, 0]),
            "varint cut after 4 of 8",
        ),
        (datagram_with(&[0x01], &arp_frame()), "quarter stream id 1"),
        (
            datagram_with(&[0x80, 0, 0x10, 0], &arp_frame()),
            "quarter stream id 4096",
        ),
    ];
    let prefix_errors = bad.len() as u64;
    for n in 0..14 {
        bad.push((datagram(&vec![0xee; n]), "a frame under 14 bytes"));
    }
    let big = MAX_FRAME + 200;
    assert!(big < max, "a frame over --max-frame must fit a datagram");
    let mut over = arp_frame();
    over.resize(big, 0);
    bad.push((datagram(&over), "a frame over --max-frame"));
    lab.run(async {
        for (d, what) in bad {
            h3.conn
                .send_datagram_wait(d)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        // The session still switches: a well-formed frame after them.
        h3.conn
            .send_datagram_wait(datagram(&arp_frame()))
            .await
            .expect("good frame");
    });
    let row = lab.wait_row(port, "the drops counted", |r| {
        r["rx_errors"] == prefix_errors && r["rx"].as_u64() >= Some(1)
    });
    eprintln!(
        "rx_errors {} rx_invalid {} rx_oversize {} rx {}",
        row["rx_errors"], row["rx_invalid"], row["rx_oversize"], row["rx"]
    );
    assert_eq!(row["rx_invalid"], 14, "{row}");
    assert_eq!(row["rx_oversize"], 1, "{row}");
    assert_eq!(row["rx"], 1, "only the good frame is switched: {row}");
    assert_eq!(row["link"], "up", "{row}");
    assert!(
        h3.conn.close_reason().is_none(),
        "{:?}",
        h3.conn.close_reason()
    );

    // 20,000 datagrams of another session as fast as quinn sends them: counted (those quinn's
    // 1 MiB receive buffer had to drop are not); A's memory bounded (a burst held in quinn's
    // buffers and the allocator's, about 1 MiB at 60,000 sent more slowly).
    const FLOOD: u64 = 20_000;
    let rss0 = lab.rss_kib();
    let t0 = Instant::now();
    lab.run(async {
        let foreign = datagram_with(&[0x07], &[0xab; 1000]);
        for _ in 0..FLOOD {
            h3.conn
                .send_datagram_wait(foreign.clone())
                .await
                .expect("flood");
        }
    });
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let row = lab.s.a.sw.port_status(port);
    let rss1 = lab.rss_kib();
    eprintln!(
        "{FLOOD} foreign datagrams in {took:?}: rx_errors {}, RSS {rss0} -> {rss1} KiB",
        row["rx_errors"]
    );
    let errors = row["rx_errors"].as_u64().unwrap_or(0) - prefix_errors;
    assert!(errors > 0 && errors <= FLOOD, "{row}");
    assert_eq!(row["rx"], 1, "{row}");
    assert!(rss1 < rss0 + 16 * 1024, "A grew from {rss0} to {rss1} KiB");
    assert!(
        h3.conn.close_reason().is_none(),
        "{:?}",
        h3.conn.close_reason()
    );
    // The datagram over A's max_datagram_frame_size cannot be sent: A announces 65535 (quinn
    // caps its receive buffer's size there), more than any UDP packet's payload.
    lab.still_serves();
}

/// `frame` behind a hand-made prefix.
fn datagram_with(prefix: &[u8], frame: &[u8]) -> Bytes {
    let mut d = prefix.to_vec();
    d.extend_from_slice(frame);
    d.into()
}

// ---------------------------------------------------------------------------------------------
// streams and requests

#[test]
fn quic_streams_are_capped_and_other_requests_refused() {
    if !Lab::needs() {
        return;
    }
    let lab = Lab::new("qhs", &[]);
    let evil = lab.evil();
    let rss0 = lab.rss_kib();

    // GET, POST and a plain CONNECT, each on a connection of its own: 4xx.
    for method in [http::Method::GET, http::Method::POST, http::Method::CONNECT] {
        let (status, _) = lab.run(async {
            let mut h3 = evil.h3().await;
            h3.request(plain(method.clone())).await
        });
        eprintln!("{method}: {status:?}");
        match status {
            Ok(code) => assert!((400..500).contains(&code), "{method}: {code}"),
            // h3 refuses to send a CONNECT without :protocol or authority as it is.
            Err(e) => assert_eq!(method, http::Method::CONNECT, "{method}: {e}"),
        }
    }
    assert!(lab.evil_ports().is_empty());

    let (mut h3, _stream) = lab.run(evil.session());
    // A second CONNECT on the session's connection: refused, the first session goes on.
    let (second, _) = lab.run(h3.request(connect()));
    eprintln!("second CONNECT: {second:?}");
    assert!(
        second.is_err(),
        "a second CONNECT must be refused: {second:?}"
    );
    assert_eq!(lab.evil_ports().len(), 1);
    // 1000 more requests, one after the other: each refused, its stream's credit given back.
    let t0 = Instant::now();
    let refused = lab.run(async {
        let mut refused = 0;
        for i in 0..1000 {
            let req = if i % 2 == 0 {
                connect()
            } else {
                plain(http::Method::GET)
            };
            let (status, _) = h3.request(req).await;
            match status {
                Err(e) if e.contains("H3_REQUEST_REJECTED") => refused += 1,
                other => panic!("request {i}: {other:?}"),
            }
        }
        refused
    });
    eprintln!(
        "1000 requests on the session's connection refused in {:?}",
        t0.elapsed()
    );
    assert_eq!(refused, 1000);
    assert_eq!(lab.evil_ports().len(), 1);

    // 1000 bidirectional and 1000 unidirectional streams: quinn opens only what A's
    // transport settings allow (4 bidi, 8 uni in all), each given 1 KiB.
    let (bidi, uni) = lab.run(async {
        let mut kept = Vec::new();
        let mut opened = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(3);
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, h3.conn.open_bi()).await {
                Ok(Ok((mut tx, rx))) => {
                    // A HEADERS frame announcing 16383 bytes, 1 KiB of them sent.
                    let _ = tx.write_all(&[0x01, 0x7f, 0xff]).await;
                    let _ = tx.write_all(&[0xaa; 1024]).await;
                    kept.push((Some(tx), Some(rx)));
                    opened.0 += 1;
                }
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Open streams with partial requests do not end the session.
        assert_eq!(lab.evil_ports().len(), 1);
        let deadline = Instant::now() + Duration::from_secs(3);
        for i in 0..1000u64 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, h3.conn.open_uni()).await {
                Ok(Ok(mut tx)) => {
                    // Reserved stream types (0x1f * N + 0x21), then bytes.
                    let ty = 0x21 + 0x1f * i;
                    let _ = tx.write_all(&[0x40 | (ty >> 8) as u8, ty as u8]).await;
                    let _ = tx.write_all(&[0xbb; 1024]).await;
                    kept.push((Some(tx), None));
                    opened.1 += 1;
                }
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(kept);
        opened
    });
    eprintln!("streams opened out of 1000 each: {bidi} bidi, {uni} uni");
    assert!(bidi <= 4 && uni <= 8, "{bidi} bidi, {uni} uni");

    // A gives a request 2 s for its headers, then resets its stream: the partial ones hold
    // nothing and stop no later refusal. One more request is refused as the others were,
    // and the attacker's session goes on.
    let (again, _) = lab.run(h3.request(connect()));
    eprintln!("a request after the partial ones: {again:?}");
    assert!(
        matches!(&again, Err(e) if e.contains("H3_REQUEST_REJECTED")),
        "{again:?}"
    );
    assert_eq!(lab.evil_ports().len(), 1);
    let rss1 = lab.rss_kib();
    eprintln!("A's RSS: {rss0} KiB before, {rss1} KiB after");
    assert!(rss1 < rss0 + 16 * 1024, "A grew from {rss0} to {rss1} KiB");
    lab.still_serves();
}

// ---------------------------------------------------------------------------------------------
// handshakes

#[test]
fn quic_handshakes_past_the_address_limit_are_refused_and_stalled_ones_dropped() {
    if !Lab::needs() {
        return;
    }
    // The honest client has another address: 16 for the attacker's.
    let lab = Lab::new("qhh", &["--max-conns-per-addr", "16"]);
    let evil = lab.evil();
    let rss0 = lab.rss_kib();
    let t0 = Instant::now();
    // 50 connections that never send their CONNECT, each filling A's datagram buffer.
    let outcomes = lab.run(async {
        let tries = (0..50).map(|_| async {
            let conn = evil.quic().await?;
            Ok::<_, quinn::ConnectionError>(conn)
        });
        futures_util::future::join_all(tries).await
    });
    // The handshakes all finish (an Initial proves no address, so none is refused for its
    // address before); A then closes those past the address's limit (H3_EXCESSIVE_LOAD).
    let outcomes = lab.run(async {
        let settle = outcomes.into_iter().map(|o| async move {
            let conn = o?;
            match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
                Ok(why) => Err(why),
                Err(_) => Ok(conn),
            }
        });
        futures_util::future::join_all(settle).await
    });
    let (conns, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    let conns: Vec<quinn::Connection> = conns.into_iter().map(Result::unwrap).collect();
    eprintln!(
        "50 handshakes from one address: {} kept, {} closed ({:?})",
        conns.len(),
        refused.len(),
        refused.first()
    );
    assert_eq!(conns.len(), 16);
    assert_eq!(refused.len(), 34);
    assert!(
        refused.iter().all(|r| matches!(r,
            Err(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == 0x107u32.into())),
        "{refused:?}"
    );
    // Datagrams before any CONNECT: 1.5 MiB per connection.
    let sent = lab.run(async {
        let mut sent = 0u64;
        for c in &conns {
            let n = c.max_datagram_size().unwrap_or(1000).min(1100);
            for _ in 0..(1536 * 1024 / n) {
                if c.send_datagram_wait(datagram(&vec![0x55; n - 1]))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += n as u64;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = lab.rss_kib();
    eprintln!(
        "A's RSS: {rss0} KiB, {rss1} KiB with 16 stalled connections and {} KiB of datagrams",
        sent / 1024
    );
    assert!(rss1 < rss0 + 8 * 1024, "A grew from {rss0} to {rss1} KiB");
    assert!(lab.evil_ports().is_empty());

    // A drops them within its handshake timeout (15 s after the handshake).
    lab.run(async {
        for c in &conns {
            let left = Duration::from_secs(25).saturating_sub(t0.elapsed());
            let why = tokio::time::timeout(left, c.closed()).await;
            assert!(
                why.is_ok(),
                "a stalled connection still open after {:?}",
                t0.elapsed()
            );
        }
    });
    eprintln!(
        "stalled connections closed by A after {:?}: {:?}",
        t0.elapsed(),
        conns[0].close_reason()
    );
    // Their slots are free again: a session from the same address.
    let (_h3, _stream) = lab.run(evil.session());
    assert_eq!(lab.evil_ports().len(), 1);
    lab.still_serves();
}

// ---------------------------------------------------------------------------------------------
// random packets and amplification

#[test]
fn quic_random_packets_leave_no_state() {
    if !Lab::needs() {
        return;
    }
    let lab = Lab::new("qhr", &[]);
    let a = &lab.s.a.ns;
    nft(a, "add table inet t");
    nft(a, "add counter inet t in");
    nft(a, "add counter inet t out");
    nft(
        a,
        "add chain inet t i { type filter hook input priority 0 ; }",
    );
    nft(
        a,
        "add chain inet t o { type filter hook output priority 0 ; }",
    );
    nft(
        a,
        &format!("add rule inet t i ip saddr {EVIL} udp dport {PORT} counter name in"),
    );
    nft(
        a,
        &format!("add rule inet t o ip daddr {EVIL} udp sport {PORT} counter name out"),
    );
    let rss0 = lab.rss_kib();
    let sock = lab.evil_udp();
    let mut buf = [0u8; 1200];
    const PACKETS: usize = 50_000;
    let t0 = Instant::now();
    for i in 0..PACKETS {
        fastrand::fill(&mut buf);
        if i % 2 == 0 {
            // Half look like long-header QUIC v1 Initials.
            buf[0] = 0xc0 | (buf[0] & 0x0f);
            buf[1..5].copy_from_slice(&[0, 0, 0, 1]);
        }
        let _ = sock.send_to(&buf, server());
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    eprintln!("{PACKETS} random packets in {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let (in_p, in_b) = counter(a, "in");
    let (out_p, out_b) = counter(a, "out");
    let rss1 = lab.rss_kib();
    eprintln!(
        "A got {in_p} packets ({in_b} bytes), sent {out_p} packets ({out_b} bytes) back; \
         RSS {rss0} KiB before, {rss1} KiB after"
    );
    assert!(lab.evil_ports().is_empty());
    assert!(out_b <= in_b, "A answered {out_b} bytes to {in_b}");
    assert!(rss1 < rss0 + 16 * 1024, "A grew from {rss0} to {rss1} KiB");
    lab.still_serves();
}

#[test]
fn quic_unvalidated_address_gets_at_most_three_times_what_it_sent() {
    if !Lab::needs() {
        return;
    }
    // Room for more than 64 handshakes from one address: past 64 pending, a Retry.
    let lab = Lab::new("qha", &["--max-conns-per-addr", "256"]);
    let (a, b) = (&lab.s.a.ns, &lab.s.b.ns);
    // A counts what it gets from and sends to the attacker's address.
    nft(a, "add table inet t");
    nft(a, "add counter inet t in");
    nft(a, "add counter inet t out");
    nft(a, "add counter inet t retry");
    nft(
        a,
        "add chain inet t i { type filter hook input priority 0 ; }",
    );
    nft(
        a,
        "add chain inet t o { type filter hook output priority 0 ; }",
    );
    nft(
        a,
        &format!("add rule inet t i ip saddr {EVIL} udp dport {PORT} counter name in"),
    );
    nft(
        a,
        &format!("add rule inet t o ip daddr {EVIL} udp sport {PORT} counter name out"),
    );
    // A Retry: a long header of type 3 (first byte 0b1111xxxx).
    nft(
        a,
        &format!(
            "add rule inet t o ip daddr {EVIL} udp sport {PORT} @th,64,8 & 0xf0 == 0xf0 counter name retry"
        ),
    );
    // The attacker's address is spoofed: it never hears A, and sends one Initial only.
    nft(b, "add table inet t");
    nft(
        b,
        "add chain inet t i { type filter hook input priority 0 ; }",
    );
    nft(
        b,
        "add chain inet t o { type filter hook output priority 0 ; }",
    );
    nft(
        b,
        &format!("add rule inet t i ip daddr {EVIL} udp sport {PORT} drop"),
    );
    nft(
        b,
        &format!("add rule inet t o ip saddr {EVIL} udp dport {PORT} quota over 1300 bytes drop"),
    );
    let evil = lab.evil();
    let got = lab.run(async { tokio::time::timeout(Duration::from_secs(6), evil.quic()).await });
    assert!(!matches!(got, Ok(Ok(_))), "the handshake cannot finish");
    let (in_p, in_b) = counter(a, "in");
    let (out_p, out_b) = counter(a, "out");
    // UDP payloads: less the IPv4 and UDP headers.
    let (in_u, out_u) = (in_b - 28 * in_p, out_b - 28 * out_p);
    eprintln!(
        "before validation A got {in_p} packets ({in_u} bytes of UDP payload) and sent \
         {out_p} ({out_u} bytes): {:.2}x",
        out_u as f64 / in_u as f64
    );
    assert_eq!(in_p, 1, "one Initial");
    // RFC 9000 §8.1 says three times; quinn-proto 0.11 lets the last datagram of a flight
    // start while any budget is left ("we always allow a full MTU to be sent", quinn#1082,
    // connection/mod.rs), so one datagram of at most the initial MTU (1200) more.
    assert!(out_u <= 3 * in_u + 1200, "A sent {out_u} bytes for {in_u}");
    assert!(out_p >= 1, "A answered");
    // Then A gives up on it (its idle timeout, 2 s here): nothing more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counter(a, "out"),
        (out_p, out_b),
        "A still sends to an unvalidated address"
    );
    drop(evil);

    // 70 handshakes pending at once from many ports of the address: past 64, a Retry.
    nft(b, "flush chain inet t o");
    let evil = lab.evil();
    lab.run(async {
        let tries = (0..70).map(|_| tokio::time::timeout(Duration::from_secs(2), evil.quic()));
        futures_util::future::join_all(tries).await
    });
    let (retries, _) = counter(a, "retry");
    eprintln!("Retry packets with 70 handshakes pending: {retries}");
    assert!(retries >= 1, "no Retry");
    lab.still_serves();
}

// ---------------------------------------------------------------------------------------------
// memory per session

#[test]
fn quic_idle_sessions_memory_is_bounded() {
    if !Lab::needs() {
        return;
    }
    const SESSIONS: usize = 200;
    let lab = Lab::new("qhm", &["--max-conns-per-addr", "256"]);
    let evil = lab.evil();
    std::thread::sleep(Duration::from_secs(1));
    let rss0 = lab.rss_kib();
    let t0 = Instant::now();
    let sessions = lab.run(async {
        let mut all = Vec::new();
        for _ in 0..SESSIONS {
            all.push(evil.session().await);
        }
        all
    });
    eprintln!("{SESSIONS} sessions in {:?}", t0.elapsed());
    poll(
        "every session's port",
        Duration::from_secs(10),
        || match lab.evil_ports().len() {
            SESSIONS => Ok(()),
            n => Err(format!("{n}")),
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = lab.rss_kib();
    let per = (rss1.saturating_sub(rss0)) / SESSIONS as u64;
    eprintln!("A's RSS: {rss0} KiB, {rss1} KiB with {SESSIONS} idle sessions: {per} KiB each");
    // The documented bound (docs/production.md): 200 KiB per idle session.
    assert!(per <= 200, "{per} KiB per idle QUIC session");
    lab.still_serves();
    drop(sessions);
}

// ---------------------------------------------------------------------------------------------
// capsules on the CONNECT stream

/// A's cap on one capsule from a peer: the largest frame (65535 + 14 + 4) and 16 bytes.
const CAPSULE_CAP: u64 = 65553 + 16;

/// The QUIC varint encoding of `v` (at most 2^62 − 1).
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=0x3f => vec![v as u8],
        0x40..=0x3fff => (v as u16 | 0x4000).to_be_bytes().to_vec(),
        0x4000..=0x3fff_ffff => (v as u32 | 0x8000_0000).to_be_bytes().to_vec(),
        _ => (v | 0xc000_0000_0000_0000).to_be_bytes().to_vec(),
    }
}

/// A capsule (RFC 9297 §3.2): type, length, payload.
fn capsule(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut c = varint(kind);
    c.extend(varint(payload.len() as u64));
    c.extend_from_slice(payload);
    c
}

/// The CONNECT of a switch that takes capsules (`capsule-protocol: ?1`).
fn connect_capsules() -> http::Request<()> {
    let mut req = connect();
    req.headers_mut()
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    req
}

#[test]
fn quic_capsules_are_bounded() {
    if !Lab::needs() {
        return;
    }
    let lab = Lab::new("qhc", &[]);
    let evil = lab.evil();
    let rss0 = lab.rss_kib();

    // A DATAGRAM capsule sent before the 200, then 100,000 empty capsules of unknown types,
    // a 1000-byte grease capsule in 1000 DATA frames and a DATAGRAM capsule in one DATA
    // frame per byte: two frames switched.
    let (h3, mut stream) = lab.run(async {
        let mut h3 = evil.h3().await;
        let mut stream = h3
            .send
            .send_request(connect_capsules())
            .await
            .expect("CONNECT");
        let early = capsule(0x00, &datagram(&arp_frame()));
        stream
            .send_data(early.into())
            .await
            .expect("a capsule before the 200");
        let resp = stream.recv_response().await.expect("the answer");
        assert_eq!(resp.status(), 200);
        (h3, stream)
    });
    let port = lab.evil_ports()[0].port;
    let t0 = Instant::now();
    lab.run(async {
        let mut unknown = Vec::new();
        for i in 0..100_000u64 {
            // Not DATAGRAM (0x00): WT_CLOSE_SESSION's neighbours and grease.
            unknown.extend(capsule(0x2844 + i % 1000, &[]));
        }
        for chunk in unknown.chunks(16 * 1024) {
            let chunk = Bytes::copy_from_slice(chunk);
            stream.send_data(chunk).await.expect("unknown capsules");
        }
        let grease = capsule(0x29 * 3 + 0x17, &[0x77; 1000]);
        let mut frame = arp_frame();
        frame.resize(MAX_FRAME - 10, 0);
        let split = capsule(0x00, &datagram(&frame));
        for byte in grease.iter().chain(split.iter()) {
            stream
                .send_data(Bytes::copy_from_slice(&[*byte]))
                .await
                .expect("one byte per DATA frame");
        }
    });
    eprintln!(
        "100,000 unknown capsules and 1,600 one-byte DATA frames in {:?}",
        t0.elapsed()
    );
    let row = lab.wait_row(port, "two frames from capsules", |r| r["rx_capsuled"] == 2);
    eprintln!(
        "rx_capsuled {} rx {} rx_errors {}",
        row["rx_capsuled"], row["rx"], row["rx_errors"]
    );
    assert_eq!(row["rx"], 2, "{row}");
    assert_eq!(row["link"], "up", "{row}");
    assert!(h3.conn.close_reason().is_none());

    // A session without capsule-protocol: A reads and drops what comes on its CONNECT
    // stream (whose end would be the session's, as WebTransport ends one): nothing is kept
    // (A's memory is checked below) and nothing switched.
    let written = lab.run(async {
        let (_h3, mut stream) = evil.session().await;
        let mut written = 0usize;
        let chunk = Bytes::from(vec![0x11u8; 16 * 1024]);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && written < 4 << 20 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.send_data(chunk.clone())).await {
                Ok(Ok(())) => written += chunk.len(),
                _ => break,
            }
        }
        written
    });
    eprintln!(
        "written on a CONNECT stream without capsules: {} KiB",
        written / 1024
    );
    assert!(written > 0, "{written} bytes");

    // Lengths over the cap, whatever the type: A closes the session (H3_DATAGRAM_ERROR).
    for (kind, len) in [
        (0x00, CAPSULE_CAP + 1),
        (0x00, (1 << 62) - 1),
        (0x29 * 5 + 0x17, CAPSULE_CAP + 1),
    ] {
        let why = lab.run(async {
            let (h3, mut stream) = evil.h3_session(connect_capsules()).await;
            let mut head = varint(kind);
            head.extend(varint(len));
            head.extend_from_slice(&[0; 100]);
            stream.send_data(head.into()).await.expect("the header");
            tokio::time::timeout(Duration::from_secs(5), h3.conn.closed()).await
        });
        eprintln!("capsule type {kind:#x} of {len} bytes: {why:?}");
        assert!(
            matches!(&why, Ok(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == 0x33u32.into()),
            "{why:?}"
        );
    }
    poll(
        "the refused sessions' ports to go",
        Duration::from_secs(5),
        || match lab.evil_ports().len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        },
    );
    let rss1 = lab.rss_kib();
    eprintln!("A's RSS: {rss0} KiB before, {rss1} KiB after");
    assert!(rss1 < rss0 + 16 * 1024, "A grew from {rss0} to {rss1} KiB");
    lab.still_serves();
    drop((h3, stream));
}

#[test]
fn quic_stalled_handshakes_are_dropped_before_the_idle_timeout() {
    if !Lab::needs() {
        return;
    }
    // No keepalive on A: QUIC's idle timeout is then 60 s, so the listener's 15 s handshake
    // timeout is what ends a handshake that stalls. Two handshakes under way at most (and
    // two sessions: the honest switch's and one more).
    let lab = Lab::with_keepalive("qhk", "0", &["--max-conns", "2"]);
    let (a, b) = (&lab.s.a.ns, &lab.s.b.ns);
    nft(a, "add table inet t");
    nft(a, "add counter inet t out");
    nft(
        a,
        "add chain inet t o { type filter hook output priority 0 ; }",
    );
    nft(
        a,
        &format!("add rule inet t o ip daddr {EVIL} udp sport {PORT} counter name out"),
    );
    // One Initial from the attacker's address, which never hears A.
    nft(b, "add table inet t");
    nft(
        b,
        "add chain inet t i { type filter hook input priority 0 ; }",
    );
    nft(
        b,
        "add chain inet t o { type filter hook output priority 0 ; }",
    );
    nft(
        b,
        &format!("add rule inet t i ip daddr {EVIL} udp sport {PORT} drop"),
    );
    nft(
        b,
        &format!("add rule inet t o ip saddr {EVIL} udp dport {PORT} quota over 2600 bytes drop"),
    );
    // Two Initials (one each, their retransmissions over the quota), at once.
    let t0 = Instant::now();
    let stalled = lab.run(async {
        let (e1, e2) = (lab.evil(), lab.evil());
        let wait = Duration::from_secs(2);
        let (a, b) = tokio::join!(
            tokio::time::timeout(wait, e1.quic()),
            tokio::time::timeout(wait, e2.quic())
        );
        [a, b]
    });
    assert!(
        stalled.iter().all(|r| !matches!(r, Ok(Ok(_)))),
        "the handshakes cannot finish"
    );
    nft(b, "flush table inet t");

    // The stalled handshakes hold both slots: a real client is refused.
    let evil = lab.evil();
    let refused = lab.run(evil.quic());
    eprintln!("a second connection while the first stalls: {refused:?}");
    assert!(
        matches!(&refused, Err(quinn::ConnectionError::ConnectionClosed(c))
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{refused:?}"
    );
    // After the handshake timeout the slot is free again.
    let (out_p, _) = counter(a, "out");
    // The first connection A lets in carries the session (its slot is the address's one).
    let (_h3, _stream) = lab.run(async {
        let conn = loop {
            match tokio::time::timeout(Duration::from_secs(3), evil.quic()).await {
                Ok(Ok(c)) => break c,
                _ if t0.elapsed() > Duration::from_secs(25) => panic!("still refused"),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let mut h3 = h3_on(conn).await;
        let (status, stream) = h3.request(connect()).await;
        assert_eq!(status, Ok(200), "the attacker's CONNECT");
        (h3, stream)
    });
    eprintln!(
        "the address's slot free again after {:?}; A had sent {out_p} packets to it meanwhile",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(14),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(lab.evil_ports().len(), 1);
    lab.still_serves();
}

/// Initials sent in another's name: they prove no address, so they take none of that
/// address's slots (here its only one), and the real client behind it gets its session.
#[test]
fn quic_unproven_handshakes_take_no_slot_of_their_address() {
    if !Lab::needs() {
        return;
    }
    let lab = Lab::new("qhu", &["--max-conns-per-addr", "1"]);
    let b = &lab.s.b.ns;
    // Initials from the attacker's address that never hear A, as spoofed ones would not.
    nft(b, "add table inet t");
    nft(
        b,
        "add chain inet t i { type filter hook input priority 0 ; }",
    );
    nft(
        b,
        &format!("add rule inet t i ip daddr {EVIL} udp sport {PORT} drop"),
    );
    let spoofed = lab.run(async {
        let tries = (0..3).map(|_| async {
            let evil = lab.evil();
            tokio::time::timeout(Duration::from_secs(2), evil.quic()).await
        });
        futures_util::future::join_all(tries).await
    });
    assert!(
        spoofed.iter().all(|r| !matches!(r, Ok(Ok(_)))),
        "no handshake can finish: {spoofed:?}"
    );
    nft(b, "flush table inet t");
    // The address's one slot is free: a real client from it gets its session at once.
    let evil = lab.evil();
    let t0 = Instant::now();
    let (_h3, _stream) = lab.run(evil.session());
    eprintln!(
        "a session while 3 unproven handshakes stall: {:?}",
        t0.elapsed()
    );
    assert_eq!(lab.evil_ports().len(), 1);
    lab.still_serves();
}
