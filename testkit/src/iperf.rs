//! iperf3 between namespaces.

use super::*;

/// What an [`iperf3`] run moved.
pub struct IperfResult {
    pub sent: u64,
    pub received: u64,
    pub mbit_s: f64,
}

/// One `iperf3 -t 3` run from `client` to a one-shot server in `server` on `addr`, with `extra`
/// client options (`-R`: the server sends; `-P N`: N flows). A run that cannot connect or
/// stalls counts as zero bytes.
pub fn iperf3(
    server: &Netns,
    client: &Netns,
    addr: &str,
    port: u16,
    extra: &[&str],
) -> IperfResult {
    let port_s = port.to_string();
    let mut srv = server
        .command(&["iperf3", "-s", "-1", "-B", addr, "-p", &port_s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 -s");
    poll("iperf3 server listening", Duration::from_secs(10), || {
        let out = server.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}")) {
            Ok(())
        } else {
            Err(show(&out))
        }
    });
    let mut argv = vec![
        "timeout",
        "30",
        "iperf3",
        "-c",
        addr,
        "-p",
        &port_s,
        "-t",
        "3",
        "-J",
        "--connect-timeout",
        "5000",
    ];
    argv.extend_from_slice(extra);
    let out = client.exec(&argv);
    let _ = srv.kill();
    let _ = srv.wait();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let end = &json["end"];
    let r = IperfResult {
        sent: end["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        received: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        mbit_s: end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
    };
    eprintln!(
        "iperf3 {addr} {}: sent {} B, received {} B, {:.1} Mbit/s{}",
        extra.join(" "),
        r.sent,
        r.received,
        r.mbit_s,
        match json["error"].as_str() {
            Some(e) => format!(" (error: {e})"),
            None if !out.status.success() => format!("\n{}", show(&out)),
            None => String::new(),
        }
    );
    r
}
