//! WebSocket peers as they are in the wild, against the real binary on loopback (no root).
//!
//! - Browser emulators send text messages and pings and offer permessage-deflate: none of it
//!   may end their port, and their frames must still be switched.
//! - A peer that stops reading must not stall the others: its queue fills and its frames are
//!   dropped (and counted), while every other port keeps receiving everything.
//! - Hostile or broken peers — runts, oversize frames, floods of made-up MAC addresses,
//!   connection floods, password guessing, malformed JSON-RPC — each meet their limit, are
//!   counted, and the switch keeps forwarding for everyone else.

use std::time::Duration;

use etherws_testkit::Switch;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(sw: &Switch, deflate: bool) -> Ws {
    try_connect(sw, deflate, None).await.expect("connect")
}

/// Connects with optional Basic credentials; the error is the handshake's.
async fn try_connect(
    sw: &Switch,
    deflate: bool,
    creds: Option<(&str, &str)>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://127.0.0.1:{}/", sw.ws_port);
    let mut req = url.into_client_request().unwrap();
    if let Some((u, p)) = creds {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
    }
    if deflate {
        req.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert!(
        resp.headers().get("Sec-WebSocket-Extensions").is_none(),
        "the switch must decline compression"
    );
    Ok(ws)
}

/// The HTTP status a refused handshake got.
fn refused_status(e: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// A unicast frame from `src` to `dst`.
fn unicast(dst: [u8; 6], src: [u8; 6], len: usize) -> Bytes {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.resize(len, 0x5a);
    Bytes::from(f)
}

/// The `listPort` entry of port `n`.
fn port_entry(sw: &Switch, n: u64) -> Value {
    server_ports(sw)
        .into_iter()
        .find(|p| p["port"] == n)
        .unwrap_or_else(|| panic!("no port {n}"))
}

/// Proves the switch still forwards: a fresh pair of peers exchanges a frame.
async fn still_forwarding(sw: &Switch) {
    let mut a = connect(sw, false).await;
    let mut b = connect(sw, false).await;
    a.send(Message::Binary(frame(0x71, 1, 60))).await.unwrap();
    assert_eq!(next_frame(&mut b, 5).await, frame(0x71, 1, 60));
}

/// A broadcast frame from `src` with a recognisable payload.
fn frame(src: u8, seq: u32, len: usize) -> Bytes {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src]);
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // local experimental EtherType
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(len, 0xab);
    Bytes::from(f)
}

/// Next binary message, skipping anything else; panics after `secs`.
async fn next_frame(ws: &mut Ws, secs: u64) -> Bytes {
    let wait = async {
        loop {
            match ws.next().await.expect("connection open").expect("read") {
                Message::Binary(b) => return b,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), wait)
        .await
        .expect("frame in time")
}

fn server_ports(sw: &Switch) -> Vec<Value> {
    let answer = etherws_testkit::rpc(
        sw.ctl_addr(),
        "/ctl",
        r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#,
    );
    answer["result"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_peer_messages_do_not_kill_the_port() {
    let sw = Switch::local("wspeers-odd", &[]);
    let mut emu = connect(&sw, true).await;
    let mut other = connect(&sw, false).await;

    emu.send(Message::text("keepalive chatter")).await.unwrap();
    emu.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Message::Pong(p) = emu.next().await.unwrap().unwrap() {
                return p;
            }
        }
    })
    .await
    .expect("pong");
    assert_eq!(&pong[..], b"are you there");

    emu.send(Message::Binary(frame(0xa, 1, 60))).await.unwrap();
    assert_eq!(next_frame(&mut other, 5).await, frame(0xa, 1, 60));

    let ports = server_ports(&sw);
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(
        ports
            .iter()
            .all(|p| p["type"] == "server" && p["shut"] == false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peer_does_not_stall_the_others() {
    // Storm control off: this test is about queues, and floods broadcasts on purpose.
    let sw = Switch::local("wspeers-slow", &["--storm-pps", "0"]);
    // Connects and then never reads: its socket buffers fill, then its switch queue.
    let _stalled = connect(&sw, false).await;
    let mut sender = connect(&sw, false).await;
    let mut reader = connect(&sw, false).await;

    const BATCH: u32 = 400;
    const BATCHES: u32 = 80; // 32,000 frames of 1,400 bytes: ~45 MB, far beyond socket buffers
    for b in 0..BATCHES {
        for i in 0..BATCH {
            sender
                .feed(Message::Binary(frame(0xa, b * BATCH + i, 1400)))
                .await
                .unwrap();
        }
        sender.flush().await.unwrap();
        // The reader gets every frame, in order, however stuck the stalled peer is.
        for i in 0..BATCH {
            let f = next_frame(&mut reader, 10).await;
            assert!(
                f == frame(0xa, b * BATCH + i, 1400),
                "batch {b} frame {i}: got seq {:?}",
                f.get(14..18)
            );
        }
    }

    let ports = server_ports(&sw);
    let stalled = ports.iter().find(|p| p["port"] == 1).expect("stalled port");
    let dropped = stalled["tx_dropped"].as_u64().unwrap();
    let queued = stalled["tx"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "the stalled peer's frames must be dropped: {stalled}"
    );
    assert_eq!(queued + dropped, u64::from(BATCH * BATCHES), "{stalled}");
    let reader_port = ports.iter().find(|p| p["port"] == 3).expect("reader port");
    assert_eq!(reader_port["tx_dropped"], 0, "{reader_port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_serves_websocket_and_control() {
    let sw = Switch::local_shared("wspeers-shared");
    assert_eq!(sw.ws_port, sw.ctl_port);
    let mut a = connect(&sw, false).await;
    let mut b = connect(&sw, false).await;
    a.send(Message::Binary(frame(0xa, 7, 60))).await.unwrap();
    assert_eq!(next_frame(&mut b, 5).await, frame(0xa, 7, 60));
    assert_eq!(server_ports(&sw).len(), 2);
    // The WebSocket path is not the control API.
    let (status, _) = etherws_testkit::http_post(sw.ctl_addr(), "/", "{}");
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runts_oversize_and_text_are_counted_not_fatal() {
    let sw = Switch::local("wspeers-bad", &["--max-frame", "1518"]);
    let mut bad = connect(&sw, false).await;
    let mut other = connect(&sw, false).await;
    for len in [0usize, 1, 13] {
        bad.send(Message::Binary(Bytes::from(vec![0xffu8; len])))
            .await
            .unwrap();
    }
    bad.send(Message::Binary(frame(0xb, 1, 1519)))
        .await
        .unwrap();
    bad.send(Message::text("{\"not\": \"a frame\"}"))
        .await
        .unwrap();
    // The same connection still carries a good frame afterwards.
    bad.send(Message::Binary(frame(0xb, 2, 1518)))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut other, 5).await, frame(0xb, 2, 1518));
    let p = port_entry(&sw, 1);
    assert_eq!(p["rx_invalid"], 3, "{p}");
    assert_eq!(p["rx_oversize"], 1, "{p}");
    assert_eq!(p["rx"], 1, "{p}");
    still_forwarding(&sw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_source_mac_flood_stays_bounded() {
    let sw = Switch::local(
        "wspeers-macs",
        &[
            "--max-macs-per-port",
            "100",
            "--max-macs",
            "150",
            "--storm-pps",
            "0",
        ],
    );
    let mut flooder = connect(&sw, false).await;
    let mut other = connect(&sw, false).await;
    // Paced in batches that fit the other peer's queue: this test is about the FDB, not
    // about queues.
    const N: u32 = 20_000;
    const BATCH: u32 = 400;
    for b in 0..N / BATCH {
        for i in b * BATCH..(b + 1) * BATCH {
            let o = i.to_be_bytes();
            let src = [0x02, 0xfe, o[0], o[1], o[2], o[3]];
            flooder
                .feed(Message::Binary(unicast([0x02, 0, 0, 0, 0, 0x99], src, 60)))
                .await
                .unwrap();
        }
        flooder.flush().await.unwrap();
        // Every flood frame is an unknown unicast: the other peer receives them all.
        for _ in 0..BATCH {
            next_frame(&mut other, 10).await;
        }
    }
    let fdb = etherws_testkit::rpc(
        sw.ctl_addr(),
        "/ctl",
        r#"{"jsonrpc":"2.0","method":"etherws.control.listFdb","id":1}"#,
    );
    let entries = fdb["result"]["entries"].as_array().unwrap();
    assert!(entries.len() <= 100, "{} entries", entries.len());
    let p = port_entry(&sw, 1);
    assert_eq!(
        p["macs_refused"].as_u64().unwrap() + entries.len() as u64,
        u64::from(N),
        "{p}"
    );
    still_forwarding(&sw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let sw = Switch::local("wspeers-conns", &["--max-conns-per-addr", "50"]);
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match try_connect(&sw, false, None).await {
            Ok(ws) => open.push(ws),
            Err(e) => {
                assert_eq!(refused_status(&e), Some(503), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((open.len(), refused), (50, 150));
    assert_eq!(server_ports(&sw).len(), 50);
    // The refusals are counted for monitoring.
    let (status, metrics) = etherws_testkit::http_get(sw.ctl_addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("etherws_ws_connections_refused_total 150\n"),
        "{metrics}"
    );
    assert!(metrics.contains("etherws_ws_connections 50\n"), "{metrics}");
    // Slots come back when connections go.
    open.truncate(40);
    etherws_testkit::poll("ports to go", Duration::from_secs(10), || {
        let n = server_ports(&sw).len();
        if n == 40 {
            Ok(())
        } else {
            Err(format!("{n} ports"))
        }
    });
    still_forwarding(&sw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled() {
    let dir = std::env::temp_dir().join(format!("ews-throttle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let htpasswd = dir.join("htpasswd");
    // {SHA} of "right", as `htpasswd -s` writes it.
    let sha = {
        use base64::Engine;
        use sha1::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"right"))
    };
    std::fs::write(&htpasswd, format!("alice:{{SHA}}{sha}\n")).unwrap();
    let path = htpasswd.to_str().unwrap().to_string();
    let sw = Switch::local(
        "wspeers-throttle",
        &[
            "--htpasswd",
            &path,
            "--auth-max-failures",
            "5",
            "--auth-window",
            "60",
        ],
    );
    assert!(
        try_connect(&sw, false, Some(("alice", "right")))
            .await
            .is_ok()
    );
    for i in 0..5 {
        let e = try_connect(&sw, false, Some(("alice", "wrong")))
            .await
            .unwrap_err();
        assert_eq!(refused_status(&e), Some(401), "attempt {i}: {e}");
    }
    // Blocked now: even the right password is refused without being checked.
    let e = try_connect(&sw, false, Some(("alice", "right")))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&e), Some(429), "{e}");
    let (_, metrics) = etherws_testkit::http_get(sw.ctl_addr(), "/metrics");
    assert!(
        metrics.contains("etherws_auth_failures_total 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("etherws_auth_throttled_total 1\n"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jsonrpc_is_answered_and_harmless() {
    let sw = Switch::local("wspeers-rpc", &[]);
    // Deeply nested, yet within the 64 KiB a control request body may have.
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let cases: Vec<(String, i64)> = vec![
        ("".into(), -32700),
        ("\u{0}\u{1}binary".into(), -32700),
        ("{\"jsonrpc\":\"2.0\",".into(), -32700),
        (deep, -32700),
        ("null".into(), -32600),
        ("[{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.listPort\"}]".into(), -32600),
        ("{\"jsonrpc\":[],\"method\":\"etherws.control.listPort\"}".into(), -32600),
        ("{\"jsonrpc\":\"2.0\",\"method\":null}".into(), -32600),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.\"}".into(), -32601),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.listPort.x\"}".into(), -32601),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.setPort\",\"params\":[1]}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.setPort\",\"params\":{\"port\":-1}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.setPort\",\"params\":{\"port\":1e300}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.delPort\",\"params\":{\"port\":\"x\"}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.addPort\",\"params\":{\"type\":\"tap\"}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.addPort\",\"params\":{\"type\":7,\"target\":\"x\"}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.addPort\",\"params\":{\"type\":\"client\",\"target\":\"ws://\"}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.addPort\",\"params\":{\"type\":\"tap\",\"target\":\"../../etc\"}}".into(), -32602),
        ("{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.setInterface\",\"params\":{\"port\":99,\"mtu\":\"big\"}}".into(), -32602),
    ];
    for (body, code) in &cases {
        let answer = etherws_testkit::rpc(sw.ctl_addr(), "/ctl", body);
        assert_eq!(
            answer["error"]["code"], *code,
            "body {:.80}: {answer}",
            body
        );
        assert!(
            answer["error"]["data"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
    }
    still_forwarding(&sw).await;
}

/// vpn-ws's client (and others) leave `Sec-WebSocket-Version` out: taken as 13, the only
/// version there is, while another version still gets `426`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_without_a_version_joins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sw = Switch::local("wspeers-noversion", &[]);
    let handshake = |version: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version}\r\n"
        )
    };
    async fn head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }
    let addr = format!("127.0.0.1:{}", sw.ws_port);
    let mut old = TcpStream::connect(&addr).await.unwrap();
    old.write_all(handshake("Sec-WebSocket-Version: 8\r\n").as_bytes())
        .await
        .unwrap();
    assert!(head(&mut old).await.starts_with("HTTP/1.1 426"));

    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(handshake("").as_bytes()).await.unwrap();
    let answer = head(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let mut other = connect(&sw, false).await;
    // One masked binary frame (mask 0) carrying a broadcast frame.
    let f = frame(0x42, 7, 60);
    let mut wire = vec![0x82, 0x80 | f.len() as u8, 0, 0, 0, 0];
    wire.extend_from_slice(&f);
    raw.write_all(&wire).await.unwrap();
    assert_eq!(next_frame(&mut other, 5).await, f);
    // And back: the raw client receives the other's broadcast.
    other
        .send(Message::Binary(frame(0x43, 8, 60)))
        .await
        .unwrap();
    let mut hdr = [0u8; 2];
    raw.read_exact(&mut hdr).await.unwrap();
    assert_eq!(hdr, [0x82, 60]);
    let mut payload = [0u8; 60];
    raw.read_exact(&mut payload).await.unwrap();
    assert_eq!(&payload[..], &frame(0x43, 8, 60)[..]);
}
