//! Entry points for the fuzz targets in `fuzz/` (run with `cargo xtask fuzz`). Not an API.
//!
//! Each takes arbitrary bytes, as they would arrive from the network or a file, and must never
//! panic. None of them touches the system: the JSON-RPC target only runs the methods without
//! side effects outside the switch (no TAP devices, no interface changes, no connections).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::control::{self, Control};
use crate::frame::Header;
use crate::port::ws::WsSettings;
use crate::port::{Queue, SharedSwitch};
use crate::switch::{Egress, Limits, PortKind, Switch};

/// A switch whose ports drop everything they are given.
struct Discard;

impl Egress for Discard {
    fn offer(&self, _frame: &Bytes) -> bool {
        true
    }
}

/// Frame parsing and the whole forwarding decision, on a three-port switch with tight limits.
/// The input is split into frames by a one-byte length prefix, each with a one-byte ingress port.
pub fn frames(data: &[u8]) {
    let limits = Limits {
        storm_pps: 3,
        max_frame: 200,
        macs: crate::fdb::MacLimits {
            per_port: 4,
            per_addr: 5,
            total: 6,
        },
        loop_moves: 3,
        loop_block: Duration::from_secs(2),
    };
    let mut sw = Switch::with_limits(Duration::from_secs(5), limits);
    for _ in 0..3 {
        sw.add_port(PortKind::Tap, "fuzz".into(), Discard);
    }
    let t0 = Instant::now();
    let mut rest = data;
    let mut tick = 0u64;
    while let [port, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let frame = Bytes::copy_from_slice(&tail[..n]);
        let _ = Header::parse(&frame);
        tick += 1;
        let now = t0 + Duration::from_millis(tick * 700);
        let _ = sw.receive(u32::from(*port % 4), &frame, now);
        if tick % 7 == 0 {
            sw.expire(now);
        }
        if *port == 0xff {
            sw.remove_port(2);
        }
        rest = &tail[n..];
    }
    let _ = sw.fdb_rows(t0 + Duration::from_secs(3));
}

fn runtime_and_control() -> &'static (tokio::runtime::Runtime, Control) {
    static CELL: OnceLock<(tokio::runtime::Runtime, Control)> = OnceLock::new();
    CELL.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let switch: SharedSwitch = Arc::new(Mutex::new(Switch::new(Duration::from_secs(300))));
        let netif = rt
            .block_on(async { crate::netif::Netif::new() })
            .expect("netlink");
        let control = Control {
            switch,
            netif,
            ws: WsSettings::default(),
            offload: Default::default(),
        };
        // A few ports to act on, without devices behind them.
        for _ in 0..3 {
            let (tx, _rx) = tokio::sync::mpsc::channel(1);
            crate::port::lock(&control.switch).add_port(
                PortKind::Client,
                "ws://fuzz/".into(),
                Queue::new(tx),
            );
        }
        (rt, control)
    })
}

/// The JSON-RPC envelope and the methods without side effects outside the switch.
pub fn jsonrpc(data: &[u8]) {
    let Ok(call) = control::parse_call(data) else {
        return;
    };
    if !matches!(
        call.method.as_str(),
        "listPort" | "setPort" | "listFdb" | "listInterface" | "delPort" | "nosuch"
    ) {
        return;
    }
    let (rt, control) = runtime_and_control();
    let _ = rt.block_on(control.handle(data));
}

/// The htpasswd file parser (no password is verified: a fuzzed bcrypt cost could take hours).
pub fn htpasswd(data: &[u8]) {
    let _ = crate::htpasswd::parse(Path::new("fuzz"), data);
}

/// The configuration file parser.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, "fuzz.toml");
    }
}

#[cfg(test)]
mod tests {
    /// The targets run on a few inputs here too, so they keep compiling and not panicking
    /// between fuzzing runs.
    #[test]
    fn targets_accept_odd_input() {
        let inputs: [&[u8]; 5] = [
            b"",
            b"\x01\x0e\xff\xff\xff\xff\xff\xff\x02\0\0\0\0\x01\x81\x00",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"etherws.control.setPort\",\"params\":{\"port\":1,\"shut\":1}}",
            b"alice:$apr1$x$y\nbob:{SHA}zz\n#c\n:\n",
            b"[switch]\nport = 70000\n[[port]]\ntype = 'tap'\n",
        ];
        for i in inputs {
            super::frames(i);
            super::htpasswd(i);
            super::config(i);
        }
    }
}
