//! Prometheus text exposition of the switch's counters (`GET /metrics` on the control
//! listener): per-port frame counters and the counters of every limit, so a monitoring system
//! sees a storm, a MAC flood or a password guesser as it happens.

use std::fmt::Write;

use crate::switch::PortStat;

/// Switch-wide figures besides the ports.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Globals {
    pub(crate) fdb_entries: usize,
    pub(crate) ws_connections: usize,
    pub(crate) ws_connections_refused: u64,
    pub(crate) auth_failures: u64,
    pub(crate) auth_throttled: u64,
    pub(crate) queued_bytes: usize,
    pub(crate) queue_budget_refused: u64,
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the exposition.
pub(crate) fn render(ports: &[PortStat], g: &Globals) -> String {
    let mut out = String::new();
    type Field = fn(&PortStat) -> u64;
    let per_port: [(&str, &str, &str, Field); 16] = [
        (
            "etherws_port_rx_frames_total",
            "counter",
            "Frames received from the port and switched.",
            |p| p.rx,
        ),
        (
            "etherws_port_tx_frames_total",
            "counter",
            "Frames queued for transmission on the port.",
            |p| p.tx,
        ),
        (
            "etherws_port_tx_dropped_total",
            "counter",
            "Frames for the port dropped because its queue (or the budget of all queues) was full.",
            |p| p.tx_dropped,
        ),
        (
            "etherws_port_tx_expired_total",
            "counter",
            "Frames for the port dropped because they waited longer than --queue-delay.",
            |p| p.tx_expired,
        ),
        (
            "etherws_port_queued_bytes",
            "gauge",
            "Bytes waiting in the port's transmit queue.",
            |p| p.queued_bytes,
        ),
        (
            "etherws_port_rx_invalid_total",
            "counter",
            "Frames from the port shorter than an Ethernet header.",
            |p| p.rx_invalid,
        ),
        (
            "etherws_port_rx_oversize_total",
            "counter",
            "Frames from the port larger than --max-frame.",
            |p| p.rx_oversize,
        ),
        (
            "etherws_port_storm_dropped_total",
            "counter",
            "Broadcast/multicast frames from the port dropped by storm control.",
            |p| p.storm_dropped,
        ),
        (
            "etherws_port_macs_refused_total",
            "counter",
            "Source addresses not learned because of the MAC limits.",
            |p| p.macs_refused,
        ),
        (
            "etherws_port_vlan_dropped_total",
            "counter",
            "Tagged frames received on an access port, dropped.",
            |p| p.vlan_dropped,
        ),
        (
            "etherws_port_rate_in_dropped_total",
            "counter",
            "Frames from the port over its rate_in limit, dropped.",
            |p| p.rate_in_dropped,
        ),
        (
            "etherws_port_rate_out_dropped_total",
            "counter",
            "Frames to the port over its rate_out limit, dropped.",
            |p| p.rate_out_dropped,
        ),
        (
            "etherws_port_loop_blocks_total",
            "counter",
            "Times the loop guard blocked the port.",
            |p| p.loop_blocks,
        ),
        (
            "etherws_port_loop_dropped_total",
            "counter",
            "Frames from the port dropped while the loop guard blocked it.",
            |p| p.loop_dropped,
        ),
        (
            "etherws_port_shut",
            "gauge",
            "1 if the port is shut.",
            |p| u64::from(p.shut),
        ),
        (
            "etherws_port_link_up",
            "gauge",
            "1 if the port's link is up (a client port reconnecting is down).",
            |p| u64::from(p.link_up),
        ),
    ];
    for (name, kind, help, field) in per_port {
        header(&mut out, name, kind, help);
        for p in ports {
            let _ = writeln!(
                out,
                "{name}{{port=\"{}\",type=\"{}\",target=\"{}\"}} {}",
                p.port,
                p.kind.as_str(),
                label(&p.target),
                field(p)
            );
        }
    }
    let globals: [(&str, &str, &str, u64); 7] = [
        (
            "etherws_fdb_entries",
            "gauge",
            "Entries in the forwarding database.",
            g.fdb_entries as u64,
        ),
        (
            "etherws_ws_connections",
            "gauge",
            "Incoming WebSocket connections.",
            g.ws_connections as u64,
        ),
        (
            "etherws_ws_connections_refused_total",
            "counter",
            "WebSocket connections refused by --max-conns or --max-conns-per-addr.",
            g.ws_connections_refused,
        ),
        (
            "etherws_auth_failures_total",
            "counter",
            "Failed HTTP Basic authentications.",
            g.auth_failures,
        ),
        (
            "etherws_auth_throttled_total",
            "counter",
            "Requests refused because their address failed to authenticate too often.",
            g.auth_throttled,
        ),
        (
            "etherws_queued_bytes",
            "gauge",
            "Bytes waiting in all transmit queues, against --queue-budget.",
            g.queued_bytes as u64,
        ),
        (
            "etherws_queue_budget_refused_total",
            "counter",
            "Frames dropped because all queues together held --queue-budget bytes.",
            g.queue_budget_refused,
        ),
    ];
    for (name, kind, help, value) in globals {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::PortKind;

    #[test]
    fn exposition_format() {
        let port = PortStat {
            port: 2,
            kind: PortKind::Client,
            target: "ws://x/\"q\"".into(),
            shut: false,
            link_up: true,
            rx: 5,
            tx: 7,
            rx_invalid: 0,
            rx_oversize: 0,
            storm_dropped: 3,
            macs_refused: 0,
            tx_dropped: 1,
            tx_expired: 0,
            queued_bytes: 0,
            super_frames: false,
            addr: None,
            user: None,
            loop_blocked_until: None,
            loop_blocks: 0,
            loop_dropped: 0,
            policy: Default::default(),
            path: None,
            vlan_dropped: 0,
            rate_in_dropped: 0,
            rate_out_dropped: 0,
        };
        let g = Globals {
            fdb_entries: 4,
            ws_connections_refused: 9,
            ..Globals::default()
        };
        let text = render(&[port], &g);
        assert!(text.contains(
            "etherws_port_rx_frames_total{port=\"2\",type=\"client\",target=\"ws://x/\\\"q\\\"\"} 5\n"
        ));
        assert!(text.contains("etherws_port_storm_dropped_total{port=\"2\""));
        assert!(text.contains("# TYPE etherws_port_link_up gauge\n"));
        assert!(text.contains("etherws_ws_connections_refused_total 9\n"));
        assert!(text.contains("etherws_fdb_entries 4\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<u64>().is_ok()),
                "{line}"
            );
        }
    }
}
