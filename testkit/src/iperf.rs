//! iperf3 between namespaces.

use super::*;

/// What an [`iperf3`] run moved.
pub struct IperfResult {
    pub sent: u64,
    pub received: u64,
    pub mbit_s: f64,
    /// Why nothing was received, when nothing was: iperf3's own error, or its output.
    pub error: Option<String>,
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
    iperf3_for(server, client, addr, port, 3, extra)
}

/// [`iperf3`] for `secs` seconds (`-t SECS`); the client is given 30 s more before it is
/// killed.
pub fn iperf3_for(
    server: &Netns,
    client: &Netns,
    addr: &str,
    port: u16,
    secs: u32,
    extra: &[&str],
) -> IperfResult {
    let port_s = port.to_string();
    let _srv = server.daemon(&["iperf3", "-s", "-1", "-B", addr, "-p", &port_s]);
    poll("iperf3 server listening", Duration::from_secs(10), || {
        let out = server.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}")) {
            Ok(())
        } else {
            Err(show(&out))
        }
    });
    let secs_s = secs.to_string();
    let limit = (secs + 30).to_string();
    let mut argv = vec![
        "timeout",
        &limit,
        "iperf3",
        "-c",
        addr,
        "-p",
        &port_s,
        "-t",
        &secs_s,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    argv.extend_from_slice(extra);
    let out = client.exec(&argv);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let end = &json["end"];
    let mut r = IperfResult {
        sent: end["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        received: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        mbit_s: end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
        error: None,
    };
    let trouble = match json["error"].as_str() {
        Some(e) => Some(e.to_string()),
        None if !out.status.success() => Some(show(&out)),
        None => None,
    };
    eprintln!(
        "iperf3 {addr} {}: sent {} B, received {} B, {:.1} Mbit/s{}",
        extra.join(" "),
        r.sent,
        r.received,
        r.mbit_s,
        match (&trouble, json["error"].is_string()) {
            (Some(e), true) => format!(" (error: {e})"),
            (Some(e), false) => format!("\n{e}"),
            (None, _) => String::new(),
        }
    );
    if r.received == 0 {
        r.error = Some(trouble.unwrap_or_else(|| "nothing received".into()));
    }
    r
}
