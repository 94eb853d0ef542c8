//! Prometheus text exposition of the switch's counters (`GET /metrics` on the control
//! listener): per-port frame counters and the counters of every limit, so a monitoring system
//! sees a storm, a MAC flood or a password guesser as it happens.

use std::fmt::Write;

use crate::switch::PortStat;
use crate::switch::guard::Rule;

/// Switch-wide figures besides the ports.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Globals {
    pub(crate) fdb_entries: usize,
    pub(crate) guard_entries: usize,
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

/// One metric: its name, type and help text, and how its value is read.
struct Metric<T> {
    name: &'static str,
    /// `counter` or `gauge`.
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> u64,
}

/// The metrics of every port, labelled with the port.
const PER_PORT: [Metric<PortStat>; 22] = [
    Metric {
        name: "etherws_port_rx_frames_total",
        kind: "counter",
        help: "Frames received from the port and switched.",
        value: |p| p.rx,
    },
    Metric {
        name: "etherws_port_tx_frames_total",
        kind: "counter",
        help: "Frames queued for transmission on the port.",
        value: |p| p.tx,
    },
    Metric {
        name: "etherws_port_rx_bytes_total",
        kind: "counter",
        help: "Bytes of the frames received from the port and switched.",
        value: |p| p.rx_bytes,
    },
    Metric {
        name: "etherws_port_tx_bytes_total",
        kind: "counter",
        help: "Bytes of the frames queued for transmission on the port.",
        value: |p| p.tx_bytes,
    },
    Metric {
        name: "etherws_port_tx_dropped_total",
        kind: "counter",
        help: "Frames for the port dropped because its queue (or the budget of all queues) was full.",
        value: |p| p.tx_dropped,
    },
    Metric {
        name: "etherws_port_tx_expired_total",
        kind: "counter",
        help: "Frames for the port dropped because they waited longer than --queue-delay.",
        value: |p| p.tx_expired,
    },
    Metric {
        name: "etherws_port_tx_aqm_dropped_total",
        kind: "counter",
        help: "Frames for the port dropped by CoDel to keep its transmit queue short.",
        value: |p| p.tx_aqm_dropped,
    },
    Metric {
        name: "etherws_port_queued_bytes",
        kind: "gauge",
        help: "Bytes waiting in the port's transmit queue.",
        value: |p| p.queued_bytes,
    },
    Metric {
        name: "etherws_port_rx_dropped_total",
        kind: "counter",
        help: "Frames the port's device or socket dropped before the switch read them (a packet socket's full receive buffer, a TAP's full queue).",
        value: |p| p.rx_dropped,
    },
    Metric {
        name: "etherws_port_rx_invalid_total",
        kind: "counter",
        help: "Frames from the port shorter than an Ethernet header.",
        value: |p| p.rx_invalid,
    },
    Metric {
        name: "etherws_port_rx_oversize_total",
        kind: "counter",
        help: "Frames from the port larger than --max-frame.",
        value: |p| p.rx_oversize,
    },
    Metric {
        name: "etherws_port_rx_truncated_total",
        kind: "counter",
        help: "IP frames from the port shorter than their IP length says (the sender's MTU is larger than what it reads); forwarded.",
        value: |p| p.rx_truncated,
    },
    Metric {
        name: "etherws_port_rx_gro_merged_total",
        kind: "counter",
        help: "TCP segments from the port that software GRO appended to an earlier one of their flow (an offloaded port's AF_XDP frames).",
        value: |p| p.rx_gro_merged,
    },
    Metric {
        name: "etherws_port_storm_dropped_total",
        kind: "counter",
        help: "Flooded frames (broadcast, multicast, unknown unicast) from the port dropped by storm control.",
        value: |p| p.storm_dropped,
    },
    Metric {
        name: "etherws_port_macs_refused_total",
        kind: "counter",
        help: "Source addresses not learned because of the MAC limits.",
        value: |p| p.macs_refused,
    },
    Metric {
        name: "etherws_port_vlan_dropped_total",
        kind: "counter",
        help: "Tagged frames received on an access port, dropped.",
        value: |p| p.vlan_dropped,
    },
    Metric {
        name: "etherws_port_rate_in_dropped_total",
        kind: "counter",
        help: "Frames from the port over its rate_in limit, dropped.",
        value: |p| p.rate_in_dropped,
    },
    Metric {
        name: "etherws_port_rate_out_dropped_total",
        kind: "counter",
        help: "Frames to the port over its rate_out limit, dropped.",
        value: |p| p.rate_out_dropped,
    },
    Metric {
        name: "etherws_port_loop_blocks_total",
        kind: "counter",
        help: "Times the loop guard blocked the port.",
        value: |p| p.loop_blocks,
    },
    Metric {
        name: "etherws_port_loop_dropped_total",
        kind: "counter",
        help: "Frames from the port dropped while the loop guard blocked it.",
        value: |p| p.loop_dropped,
    },
    Metric {
        name: "etherws_port_shut",
        kind: "gauge",
        help: "1 if the port is shut.",
        value: |p| u64::from(p.shut),
    },
    Metric {
        name: "etherws_port_link_up",
        kind: "gauge",
        help: "1 if the port's link is up (a client port reconnecting is down).",
        value: |p| u64::from(p.link_up),
    },
];

/// The switch-wide metrics.
const GLOBAL: [Metric<Globals>; 8] = [
    Metric {
        name: "etherws_fdb_entries",
        kind: "gauge",
        help: "Entries in the forwarding database.",
        value: |g| g.fdb_entries as u64,
    },
    Metric {
        name: "etherws_guard_entries",
        kind: "gauge",
        help: "Addresses port security binds to ports (DHCP leases snooped, ARP/ND claims).",
        value: |g| g.guard_entries as u64,
    },
    Metric {
        name: "etherws_ws_connections",
        kind: "gauge",
        help: "Incoming WebSocket connections.",
        value: |g| g.ws_connections as u64,
    },
    Metric {
        name: "etherws_ws_connections_refused_total",
        kind: "counter",
        help: "WebSocket connections refused by --max-conns or --max-conns-per-addr.",
        value: |g| g.ws_connections_refused,
    },
    Metric {
        name: "etherws_auth_failures_total",
        kind: "counter",
        help: "Failed HTTP Basic authentications.",
        value: |g| g.auth_failures,
    },
    Metric {
        name: "etherws_auth_throttled_total",
        kind: "counter",
        help: "Requests refused because their address failed to authenticate too often.",
        value: |g| g.auth_throttled,
    },
    Metric {
        name: "etherws_queued_bytes",
        kind: "gauge",
        help: "Bytes waiting in all transmit queues, against --queue-budget.",
        value: |g| g.queued_bytes as u64,
    },
    Metric {
        name: "etherws_queue_budget_refused_total",
        kind: "counter",
        help: "Frames dropped because all queues together held --queue-budget bytes.",
        value: |g| g.queue_budget_refused,
    },
];

/// Renders the exposition.
pub(crate) fn render(ports: &[PortStat], g: &Globals) -> String {
    let mut out = String::new();
    for m in &PER_PORT {
        header(&mut out, m.name, m.kind, m.help);
        for p in ports {
            let _ = writeln!(
                out,
                "{}{{port=\"{}\",type=\"{}\",target=\"{}\"}} {}",
                m.name,
                p.port,
                p.kind.as_str(),
                label(&p.target),
                (m.value)(p)
            );
        }
    }
    guard(&mut out, ports);
    for m in &GLOBAL {
        header(&mut out, m.name, m.kind, m.help);
        let _ = writeln!(out, "{} {}", m.name, (m.value)(g));
    }
    out
}

/// What port security dropped, per port and rule.
fn guard(out: &mut String, ports: &[PortStat]) {
    const NAME: &str = "etherws_port_guard_dropped_total";
    header(
        out,
        NAME,
        "counter",
        "Frames from the port dropped by a port-security rule (an untrusted port's spoofed \
         station, stations over its max_macs, DHCP server messages, router advertisements, \
         DHCP requests for another's address, ARP or ND for an address it does not hold).",
    );
    for p in ports {
        for rule in Rule::ALL {
            let _ = writeln!(
                out,
                "{NAME}{{port=\"{}\",type=\"{}\",target=\"{}\",rule=\"{}\"}} {}",
                p.port,
                p.kind.as_str(),
                label(&p.target),
                rule.as_str(),
                p.guard.get(rule)
            );
        }
    }
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
            rx_bytes: 500,
            tx_bytes: 700,
            rx_dropped: 6,
            rx_invalid: 0,
            rx_oversize: 0,
            rx_truncated: 0,
            rx_gro_merged: 0,
            storm_dropped: 3,
            macs_refused: 0,
            tx_dropped: 1,
            tx_expired: 0,
            tx_aqm_dropped: 0,
            queued_bytes: 0,
            super_frames: false,
            congestion: None,
            quic: None,
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
            guard: Default::default(),
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
        assert!(text.contains(
            "etherws_port_rx_dropped_total{port=\"2\",type=\"client\",target=\"ws://x/\\\"q\\\"\"} 6\n"
        ));
        assert!(text.contains("etherws_port_tx_bytes_total{port=\"2\",type=\"client\",target=\"ws://x/\\\"q\\\"\"} 700\n"));
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
