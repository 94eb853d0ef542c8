//! WebSocket peers as they are in the wild, against the real binary on loopback (no root).
//!
//! - Browser emulators send text messages and pings and offer permessage-deflate: none of it
//!   may end their port, and their frames must still be switched.
//! - A peer that stops reading must not stall the others: its queue fills and its frames are
//!   dropped (and counted), while every other port keeps receiving everything.

mod common;

use std::time::Duration;

use common::Switch;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(sw: &Switch, deflate: bool) -> Ws {
    let url = format!("ws://127.0.0.1:{}/", sw.ws_port);
    let mut req = url.into_client_request().unwrap();
    if deflate {
        req.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert!(
        resp.headers().get("Sec-WebSocket-Extensions").is_none(),
        "the switch must decline compression"
    );
    ws
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
    let answer = common::rpc(
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
    let sw = Switch::local("wspeers-slow", &[]);
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
            assert_eq!(f, frame(0xa, b * BATCH + i, 1400), "batch {b} frame {i}");
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
    let (status, _) = common::http_post(sw.ctl_addr(), "/", "{}");
    assert_ne!(status, 200);
}
