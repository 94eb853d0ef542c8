//! Many WebSocket ports on one switch, against the real binary on loopback (no root): the
//! scaled-down, untimed correctness version of `cargo xtask load` (see BENCHMARKS.md).
//!
//! 200 clients, each with its own MAC, seed learning with one broadcast each, then exchange
//! unicast and broadcast frames for about 5 s. Sending is paced in rounds, each round waiting
//! until everything sent has arrived, so that no port queue (512 frames) can overflow: this
//! test is about correctness, not capacity. Every client must receive exactly the unicast
//! frames addressed to it and every broadcast of the others, nothing else and nothing twice;
//! the switch must drop nothing, and `listPort`/`listFdb` (JSON-RPC and `etherws ctl`) must
//! show the 200 ports and MACs with counters matching what the clients sent and received.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etherws_testkit::Switch;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const N: usize = 200;
/// Unicast peers of each client, picked at random.
const PEERS: usize = 4;
/// Unicast frames each client sends per round.
const UNICAST_PER_ROUND: usize = 2;
/// Clients sending a broadcast per round (in turn).
const BCAST_PER_ROUND: usize = 20;
/// Clients seeding learning at once.
const SEED_WAVE: usize = 50;
const TRAFFIC: Duration = Duration::from_secs(5);
const MIN_ROUNDS: u32 = 5;
const UNICAST_LEN: usize = 1000;
const BCAST_LEN: usize = 60;

const KIND_SEED: u8 = 0;
const KIND_UNICAST: u8 = 1;
const KIND_BCAST: u8 = 2;

fn mac(i: usize) -> [u8; 6] {
    [0x02, 0x4c, 0x44, 0x00, (i >> 8) as u8, i as u8]
}

fn mac_str(i: usize) -> String {
    let m = mac(i);
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A frame identifier: sender and its sequence number.
fn id(from: usize, seq: u32) -> u64 {
    (from as u64) << 32 | u64::from(seq)
}

/// dst, src, EtherType 0x88b5, kind, sender index, sequence number, then a pattern that
/// depends on both (so that corruption shows).
fn frame(dst: [u8; 6], from: usize, kind: u8, seq: u32, len: usize) -> Bytes {
    let mut f = dst.to_vec();
    f.extend_from_slice(&mac(from));
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.push(kind);
    f.extend_from_slice(&(from as u32).to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    let fill = (from as u8) ^ (seq as u8);
    f.resize(len, fill);
    Bytes::from(f)
}

/// What one client received.
#[derive(Default)]
struct Rx {
    seeds: BTreeSet<usize>,
    unicast: HashSet<u64>,
    bcast: HashSet<u64>,
    /// Frames that should not have arrived (duplicates, misdelivered, corrupted).
    bad: Vec<String>,
}

struct Shared {
    rx: Vec<Mutex<Rx>>,
    /// Frames received by all clients (valid or not).
    total: AtomicU64,
}

async fn reader(i: usize, mut stream: SplitStream<Ws>, sh: Arc<Shared>) {
    while let Some(msg) = stream.next().await {
        let f = match msg {
            Ok(Message::Binary(f)) => f,
            Ok(_) => continue,
            Err(e) => {
                sh.rx[i]
                    .lock()
                    .unwrap()
                    .bad
                    .push(format!("read error: {e}"));
                break;
            }
        };
        let mut rx = sh.rx[i].lock().unwrap();
        sh.total.fetch_add(1, Ordering::SeqCst);
        if f.len() < 23 {
            rx.bad.push(format!("runt of {} bytes", f.len()));
            continue;
        }
        let kind = f[14];
        let from = u32::from_be_bytes(f[15..19].try_into().unwrap()) as usize;
        let seq = u32::from_be_bytes(f[19..23].try_into().unwrap());
        let (dst, len) = match kind {
            KIND_UNICAST => (mac(i), UNICAST_LEN),
            _ => ([0xff; 6], BCAST_LEN),
        };
        if from >= N || f != frame(dst, from, kind, seq, len) {
            rx.bad.push(format!(
                "unexpected frame kind {kind} from {from} seq {seq}: {:02x?}",
                &f[..23]
            ));
            continue;
        }
        let fresh = match kind {
            KIND_SEED => rx.seeds.insert(from),
            KIND_UNICAST => rx.unicast.insert(id(from, seq)),
            _ => rx.bcast.insert(id(from, seq)),
        };
        if !fresh {
            rx.bad
                .push(format!("duplicate frame kind {kind} from {from} seq {seq}"));
        }
    }
}

/// Waits until the clients have received `expected` frames in total (panics after 30 s,
/// naming who misses what).
async fn delivered(sh: &Shared, expected: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sh.total.load(Ordering::SeqCst);
        if got >= expected {
            return;
        }
        if Instant::now() > deadline {
            let counts: Vec<(usize, usize, usize)> = sh
                .rx
                .iter()
                .map(|r| {
                    let r = r.lock().unwrap();
                    (r.seeds.len(), r.unicast.len(), r.bcast.len())
                })
                .collect();
            panic!(
                "{what}: {got} of {expected} frames delivered after 30 s; per client \
                 (seeds, unicast, broadcast): {counts:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rpc(sw: &Switch, method: &str) -> Vec<Value> {
    let answer = etherws_testkit::rpc(
        sw.ctl_addr(),
        "/ctl",
        &format!(r#"{{"jsonrpc":"2.0","method":"etherws.control.{method}","id":1}}"#),
    );
    answer["result"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{method}: no entries in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ports_get_every_frame() {
    // Storm control off (N seed broadcasts arrive at once), and every client is 127.0.0.1.
    let sw = Switch::local(
        "load",
        &["--storm-pps", "0", "--max-conns-per-addr", "1000"],
    );
    let url = format!("ws://127.0.0.1:{}/", sw.ws_port);
    let conns = futures_util::future::join_all(
        (0..N).map(|_| tokio_tungstenite::connect_async_with_config(url.clone(), None, true)),
    )
    .await;
    let sh = Arc::new(Shared {
        rx: (0..N).map(|_| Mutex::default()).collect(),
        total: AtomicU64::new(0),
    });
    let mut sinks = Vec::with_capacity(N);
    let mut readers = Vec::with_capacity(N);
    for (i, c) in conns.into_iter().enumerate() {
        let (ws, _) = c.unwrap_or_else(|e| panic!("client {i} cannot connect: {e}"));
        let (sink, stream) = ws.split();
        sinks.push(sink);
        readers.push(tokio::spawn(reader(i, stream, sh.clone())));
    }

    // All 200 are server ports, in the JSON-RPC answer and in `etherws ctl listport`. (A
    // client's handshake may end just before the switch has added its port: wait a moment.)
    let ports = etherws_testkit::poll("200 ports", Duration::from_secs(10), || {
        let ports = rpc(&sw, "listPort");
        if ports.len() == N {
            Ok(ports)
        } else {
            Err(format!("{} ports", ports.len()))
        }
    });
    assert!(ports.iter().all(|p| p["type"] == "server"), "{ports:?}");
    let rows = sw.listport();
    assert_eq!(rows.len(), N);
    assert!(rows.iter().all(|r| r.kind == "server"), "{rows:?}");

    // Seed learning: one broadcast per client, in waves.
    let mut expected = 0u64;
    let mut sent = vec![0u64; N];
    for wave in (0..N).collect::<Vec<_>>().chunks(SEED_WAVE) {
        for &i in wave {
            sinks[i]
                .send(Message::Binary(frame(
                    [0xff; 6], i, KIND_SEED, 0, BCAST_LEN,
                )))
                .await
                .unwrap();
            sent[i] += 1;
            expected += (N - 1) as u64;
        }
        delivered(&sh, expected, "seed broadcasts").await;
    }
    let fdb = rpc(&sw, "listFdb");
    assert_eq!(fdb.len(), N, "{fdb:?}");

    // Traffic, in rounds.
    let mut rng = fastrand::Rng::with_seed(200);
    let peers: Vec<Vec<usize>> = (0..N)
        .map(|i| {
            let mut p = Vec::new();
            while p.len() < PEERS {
                let k = rng.usize(..N);
                if k != i && !p.contains(&k) {
                    p.push(k);
                }
            }
            p
        })
        .collect();
    let mut want_unicast: Vec<HashSet<u64>> = vec![HashSet::new(); N];
    let mut bcasts: Vec<(usize, u32)> = Vec::new();
    let mut seq = vec![0u32; N];
    let start = Instant::now();
    let mut rounds = 0u32;
    while rounds < MIN_ROUNDS || start.elapsed() < TRAFFIC {
        for i in 0..N {
            for _ in 0..UNICAST_PER_ROUND {
                let dst = peers[i][rng.usize(..PEERS)];
                seq[i] += 1;
                sinks[i]
                    .feed(Message::Binary(frame(
                        mac(dst),
                        i,
                        KIND_UNICAST,
                        seq[i],
                        UNICAST_LEN,
                    )))
                    .await
                    .unwrap();
                want_unicast[dst].insert(id(i, seq[i]));
                sent[i] += 1;
                expected += 1;
            }
        }
        for k in 0..BCAST_PER_ROUND {
            let i = (rounds as usize * BCAST_PER_ROUND + k) % N;
            seq[i] += 1;
            sinks[i]
                .feed(Message::Binary(frame(
                    [0xff; 6], i, KIND_BCAST, seq[i], BCAST_LEN,
                )))
                .await
                .unwrap();
            bcasts.push((i, seq[i]));
            sent[i] += 1;
            expected += (N - 1) as u64;
        }
        for s in &mut sinks {
            s.flush().await.unwrap();
        }
        delivered(&sh, expected, &format!("round {rounds}")).await;
        rounds += 1;
    }
    // Anything extra (a duplicate, a misdelivered frame) would arrive within moments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = sh.total.load(Ordering::SeqCst);
    assert_eq!(
        total, expected,
        "frames delivered vs sent-to-be-delivered, {rounds} rounds"
    );

    // Every client got exactly what was addressed to it.
    let mut received = vec![0u64; N];
    for i in 0..N {
        let rx = sh.rx[i].lock().unwrap();
        assert!(rx.bad.is_empty(), "client {i}: {:?}", rx.bad);
        let others: BTreeSet<usize> = (0..N).filter(|&k| k != i).collect();
        assert_eq!(rx.seeds, others, "client {i}: seed broadcasts");
        assert!(
            rx.unicast == want_unicast[i],
            "client {i}: {} unicast frames received, {} addressed to it, {} missing",
            rx.unicast.len(),
            want_unicast[i].len(),
            want_unicast[i].difference(&rx.unicast).count()
        );
        let want_bcast: HashSet<u64> = bcasts
            .iter()
            .filter(|(from, _)| *from != i)
            .map(|&(from, s)| id(from, s))
            .collect();
        assert!(
            rx.bcast == want_bcast,
            "client {i}: {} broadcasts received, {} expected",
            rx.bcast.len(),
            want_bcast.len()
        );
        received[i] = (rx.seeds.len() + rx.unicast.len() + rx.bcast.len()) as u64;
    }

    // The switch agrees: one FDB entry per client, on its own port, and per port the frames
    // that client sent (rx) and received (tx), nothing dropped.
    let ports = rpc(&sw, "listPort");
    assert_eq!(ports.len(), N);
    let fdb = rpc(&sw, "listFdb");
    assert_eq!(fdb.len(), N, "{fdb:?}");
    let port_of: HashMap<String, u64> = fdb
        .iter()
        .map(|e| {
            assert_eq!(e["vid"], 0, "{e}");
            (
                e["mac"].as_str().unwrap().to_string(),
                e["port"].as_u64().unwrap(),
            )
        })
        .collect();
    let server_ports: BTreeSet<u64> = ports.iter().map(|p| p["port"].as_u64().unwrap()).collect();
    assert_eq!(
        port_of.values().copied().collect::<BTreeSet<_>>(),
        server_ports,
        "every port has exactly one MAC"
    );
    for i in 0..N {
        let port = *port_of
            .get(&mac_str(i))
            .unwrap_or_else(|| panic!("MAC of client {i} not learned: {fdb:?}"));
        let p = ports.iter().find(|p| p["port"] == port).unwrap();
        assert_eq!(p["tx_dropped"], 0, "{p}");
        assert_eq!(p["rx"], sent[i], "client {i}: {p}");
        assert_eq!(p["tx"], received[i], "client {i}: {p}");
        for k in ["rx_invalid", "rx_oversize", "storm_dropped", "macs_refused"] {
            assert_eq!(p[k], 0, "{k}: {p}");
        }
    }
    // `etherws ctl listfdb` shows the same table.
    let rows = sw.listfdb();
    assert_eq!(rows.len(), N);
    for r in &rows {
        assert_eq!(port_of.get(&r.mac), Some(&u64::from(r.port)), "{r:?}");
    }

    for mut s in sinks {
        let _ = s.close().await;
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    eprintln!("load: {N} clients, {rounds} rounds, {total} frames delivered");
}
