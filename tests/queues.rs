//! Transmit queues toward a WebSocket peer under load (`--queue-discipline`): with flow queues
//! (the default) a ping does not wait behind a flood that fills the queue toward a slow peer;
//! in one FIFO queue it waits for all of it.
//!
//! Two sites ([`Sites`]) whose link A → B is 20 Mbit/s (`tbf`) and whose TCP send buffers are
//! small, so that frames wait in the switch's queue rather than in the kernel's: a UDP flood
//! of 60 Mbit/s from A's TAP to B's fills A's queue toward B.

use std::process::Child;
use std::time::Duration;

use etherws_testkit::*;

/// Kills the child (iperf3) when dropped, so a failed assertion leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ping -c COUNT -i 0.05` from `ns`: (average RTT in ms of the replies, replies).
fn ping_avg(ns: &Netns, addr: &str, count: u32) -> (f64, usize) {
    let count = count.to_string();
    let out = ns.exec(&["ping", "-n", "-c", &count, "-i", "0.05", "-W", "2", addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text
        .split("time=")
        .skip(1)
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    let avg = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    (avg, rtts.len())
}

/// Ping average (ms) from A to B's TAP during a flood A → B, and A's server port's counters.
fn ping_during_flood(discipline: &str) -> (f64, usize, serde_json::Value) {
    let s = Sites::builder("aqm")
        .both(|s| s.args(&["--queue-discipline", discipline]).tap())
        .connect(&[])
        .start();
    ping(&s.a.ns, Sites::B_TAP);
    s.a.ns.exec_ok(&[
        "tc", "qdisc", "add", "dev", "vAB", "root", "tbf", "rate", "20mbit", "burst", "16k",
        "latency", "20ms",
    ]);
    s.a.ns
        .exec_ok(&["sysctl", "-qw", "net.ipv4.tcp_wmem=4096 32768 65536"]);
    let _server = Killed(s.b.ns.spawn(&["iperf3", "-s", "-1", "-B", Sites::B_TAP]));
    std::thread::sleep(Duration::from_millis(500));
    let _flood =
        Killed(
            s.a.ns
                .spawn(&["iperf3", "-c", Sites::B_TAP, "-u", "-b", "60M", "-t", "8"]),
        );
    std::thread::sleep(Duration::from_secs(3));
    let (avg, replies) = ping_avg(&s.a.ns, Sites::B_TAP, 60);
    let server = s.a.sw.wait_servers(1).remove(0);
    let counters = s.a.sw.port_status(server.port);
    (avg, replies, counters)
}

#[test]
fn a_ping_does_not_wait_behind_a_flood_toward_a_slow_peer() {
    if !needs(&["ping", "iperf3", "tc"]) {
        return;
    }
    let (fifo, fifo_replies, _) = ping_during_flood("fifo");
    let (fair, fair_replies, counters) = ping_during_flood("fq-codel");
    eprintln!(
        "ping during the flood: fifo {fifo:.1} ms ({fifo_replies}/60), \
         fq-codel {fair:.1} ms ({fair_replies}/60); {counters}"
    );
    assert!(
        fair_replies >= 55,
        "pings lost behind the flood: {fair_replies}/60"
    );
    assert!(
        fair * 3.0 < fifo || fifo_replies < 30,
        "flow queues: {fair:.1} ms, one queue: {fifo:.1} ms"
    );
    assert!(
        counters["tx_aqm_dropped"].as_u64().unwrap_or(0) > 0,
        "CoDel dropped from the flood: {counters}"
    );
}
