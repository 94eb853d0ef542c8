//! `cargo xtask bench --wan SPEC…`: the tunnel rows across a WAN path.
//!
//! The link between the two switch namespaces is the test kit's delay line
//! (`etherws_testkit::Wan`: packet sockets between two veths in a namespace of its own, one
//! real-time thread per direction, offloads off on its veths) with the path each `--wan` names:
//! a one-way delay, a random loss, optionally a rate. Before the rows of each path the line
//! itself is measured — ping RTT against twice the delay, and TCP between the switch
//! namespaces with no tunnel (the line's ceiling at that delay) — and what the line did in each
//! row (frames lost on purpose, frames it dropped itself, how late it sent) is reported with
//! the row, so a figure is never the emulator's limit in disguise.
//!
//! Per row: iperf3 TCP both ways (`-O 3`, 20 s; 5 s with `--quick`) with `--inner-cc`'s
//! algorithm, ping idle (200 at 10 ms: average, p99, max) and ping during the h1→h2 transfer
//! (every 50 ms); then, each way, one BBR flow (`-C bbr`) and four CUBIC flows (`-C cubic -P
//! 4`, summed), short ones (`FLOW_SECS` after `FLOW_OMIT` omitted), as issue #26's table has
//! them. The targets are checked against VXLAN, OpenVPN over TCP and the best UDP tunnel of
//! the same run; for QUIC rows, issue #26's: a BBR flow and four flows ≥ 0.8× VXLAN's, ping
//! during bulk ≤ 1.5× VXLAN's. Each path also gets a table in the issue's layout (a column per
//! tunnel).

use std::process::Stdio;

use super::*;

pub(super) const WAN_HEADING: &str = "## Bench: across a WAN path (delay line)";

/// The line itself at one path: RTT, TCP between the switch namespaces, what it did.
struct LineCheck {
    spec: WanSpec,
    rtt: Option<Ping>,
    tcp: Option<f64>,
    stats: String,
    error: Option<String>,
}

/// iperf3 seconds and omitted warm-up seconds.
pub(super) fn durations(o: &Opts) -> (u32, u32) {
    if o.quick { (5, 2) } else { (20, 3) }
}

/// The extra flows (one BBR flow, four CUBIC flows): seconds each way, and seconds omitted.
pub(super) const FLOW_SECS: u32 = 5;
pub(super) const FLOW_OMIT: &str = "2";

/// [`iperf_tcp`] across the line: `--inner-cc`'s algorithm, the warm-up omitted.
fn iperf_wan(
    client: &Netns,
    server: &Netns,
    addr: &str,
    o: &Opts,
    reverse: bool,
) -> anyhow::Result<(f64, u64)> {
    let (secs, omit) = durations(o);
    let omit = omit.to_string();
    let mut extra = vec!["-O", omit.as_str()];
    if let Some(cc) = &o.inner_cc {
        extra.extend(["-C", cc.as_str()]);
    }
    iperf_tcp(client, server, addr, secs, reverse, &extra)
}

fn check_line(spec: WanSpec, o: &Opts) -> LineCheck {
    let mut c = LineCheck {
        spec,
        rtt: None,
        tcp: None,
        stats: String::new(),
        error: None,
    };
    eprintln!("bench: ── the line itself at {spec}");
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<()> {
        let na = Netns::new("lineA");
        let nb = Netns::new("lineB");
        let (a, b) = (format!("{A_IP}/24"), format!("{B_IP}/24"));
        let wan = Wan::between(&na, "tA", Some(&a), &nb, "tB", Some(&b), 1550, spec);
        warm_up(&na, B_IP);
        c.rtt = Some(ping_rtt(&na, B_IP)?);
        c.tcp = Some(iperf_wan(&na, &nb, B_IP, o, false)?.0);
        c.stats = wan.stats.summary();
        Ok(())
    }));
    c.error = failure(r);
    eprintln!(
        "bench: line {spec}: RTT {:?} ms, TCP {:?} Mbit/s; {}{}",
        c.rtt.map(|r| r.avg),
        c.tcp,
        c.stats,
        c.error.as_deref().unwrap_or("")
    );
    c
}

/// One tunnel row across the line.
fn measure_wan(s: &Scenario, o: &Opts, env: &Env, spec: WanSpec) -> Res {
    eprintln!("bench: ── {} at {spec} ({})", s.name, s.what);
    caught(s, |r| {
        let t = tunnel_topo(s, env, Some(spec))?;
        r.note = t.note.clone();
        let res = measure_wan_topo(&t, s, o, r);
        if let Some(w) = &t.wan {
            r.line = Some(w.stats.summary());
            if w.stats.unintended_drops() > 0 {
                r.note = format!(
                    "{} the line itself dropped frames: {}",
                    r.note,
                    r.line_text()
                );
            }
        }
        res
    })
}

impl Res {
    fn line_text(&self) -> &str {
        self.line.as_deref().unwrap_or("")
    }
}

fn measure_wan_topo(t: &Topo, s: &Scenario, o: &Opts, r: &mut Res) -> anyhow::Result<()> {
    warm_up(&t.h1.ns, H2_IP);
    warm_up(&t.h2.ns, H1_IP);
    check_super(t, r);
    r.ping = Some(ping_rtt(&t.h1.ns, H2_IP)?);
    let ping =
        t.h1.ns
            .command(&["ping", "-n", "-i", "0.05", "-W", "10", H2_IP])
            .stdout(Stdio::piped())
            .spawn()
            .context("ping")?;
    let up = iperf_wan(&t.h1.ns, &t.h2.ns, H2_IP, o, false);
    // SAFETY: kill(2) of our own child (`ip netns exec` execs ping in place): SIGINT makes
    // ping print its summary and exit.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    let out = ping.wait_with_output().context("ping")?;
    r.ping_load = ping_stats(&String::from_utf8_lossy(&out.stdout), H2_IP).ok();
    let (up, _) = up?;
    let (down, _) = iperf_wan(&t.h1.ns, &t.h2.ns, H2_IP, o, true)?;
    r.up = Some(up);
    r.down = Some(down);
    eprintln!(
        "bench: {}: TCP {up:.1} / {down:.1} Mbit/s, ping during bulk {:?}",
        s.name, r.ping_load
    );
    extra_flows(t, r);
    eprintln!(
        "bench: {}: one BBR flow {:?}, four CUBIC flows {:?} Mbit/s",
        s.name, r.bbr, r.four
    );
    read_outer(t, r);
    Ok(())
}

/// Each way: one BBR flow, then four CUBIC flows (`-P 4`, summed), `FLOW_SECS` s after
/// `FLOW_OMIT` s omitted. A flow that fails stays "—", with a note; the row goes on.
fn extra_flows(t: &Topo, r: &mut Res) {
    for (i, reverse) in [false, true].into_iter().enumerate() {
        let flows: [(&str, &[&str]); 2] = [
            ("one BBR flow", &["-C", "bbr"]),
            ("four CUBIC flows", &["-C", "cubic", "-P", "4"]),
        ];
        for (k, (what, args)) in flows.into_iter().enumerate() {
            let mut extra = vec!["-O", FLOW_OMIT];
            extra.extend_from_slice(args);
            match iperf_tcp(&t.h1.ns, &t.h2.ns, H2_IP, FLOW_SECS, reverse, &extra) {
                Ok((v, _)) if k == 0 => r.bbr[i] = Some(v),
                Ok((v, _)) => r.four[i] = Some(v),
                Err(e) => {
                    let e: String = format!("{e:#}").lines().next().unwrap_or("").into();
                    let way = if reverse { "h2→h1" } else { "h1→h2" };
                    r.note = format!(
                        "{} {what} {way} failed: {};",
                        r.note,
                        e.chars().take(120).collect::<String>()
                    );
                }
            }
        }
    }
}

/// Every chosen tunnel row at every `--wan` path: the section for BENCHMARKS.md and the chart.
pub(super) fn run(o: &Opts, env: &Env, chosen: &[&Scenario]) -> (String, String, bool) {
    let rows: Vec<&Scenario> = chosen
        .iter()
        .copied()
        .filter(|s| s.group == Group::Tunnel && s.name != "bridges")
        .collect();
    let mut text = String::new();
    let mut chart_rows = Vec::new();
    let mut failed = false;
    let cc = inner_cc(o);
    for &spec in &o.wan {
        let line = check_line(spec, o);
        let results: Vec<Res> = rows.iter().map(|s| measure_wan(s, o, env, spec)).collect();
        failed |= line.error.is_some() || results.iter().any(|r| r.error.is_some());
        let refs: Vec<&Res> = results.iter().collect();
        text.push_str(&path_table(&line, &refs, &cc));
        chart_rows.extend(results.iter().map(|r| crate::report::ChartRow {
            label: format!("{spec} {}", r.name),
            values: [r.up.unwrap_or(0.0), r.down.unwrap_or(0.0)],
            failed: r.error.is_some(),
        }));
    }
    let chart = crate::report::bar_chart_svg(
        &format!("etherws across a WAN path, {}: iperf3 TCP", today()),
        "Mbit/s (iperf3 TCP)",
        ["host1 → host2", "host2 → host1"],
        &chart_rows,
    );
    (text, chart, failed)
}

/// The congestion control of the main flows inside the tunnels: `--inner-cc`'s, or the hosts'
/// default.
pub(super) fn inner_cc(o: &Opts) -> String {
    o.inner_cc.clone().unwrap_or_else(|| {
        let d = sh(&["sysctl", "-n", "net.ipv4.tcp_congestion_control"]);
        if d.is_empty() { "default".into() } else { d }
    })
}

/// Average / p99 (lost) of a ping run.
fn ms(p: Option<Ping>) -> String {
    p.map(|p| {
        if p.lost > 0 {
            format!("{:.1} / {:.1} ({} lost)", p.avg, p.p99, p.lost)
        } else {
            format!("{:.1} / {:.1}", p.avg, p.p99)
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// Average / p99 / max (lost) of a ping run.
fn ms_max(p: Option<Ping>) -> String {
    p.map(|p| {
        let lost = if p.lost > 0 {
            format!(" ({} lost)", p.lost)
        } else {
            String::new()
        };
        format!("{:.1} / {:.1} / {:.1}{lost}", p.avg, p.p99, p.max)
    })
    .unwrap_or_else(|| "—".into())
}

fn f1(v: Option<f64>) -> String {
    v.map(|x| {
        if x < 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// Two figures, h1→h2 / h2→h1.
fn pair(v: [Option<f64>; 2]) -> String {
    format!("{} / {}", f1(v[0]), f1(v[1]))
}

/// One path's table: the line, every row, ratios and the targets; then the same in issue
/// #26's layout.
fn path_table(line: &LineCheck, rs: &[&Res], cc: &str) -> String {
    let spec = line.spec;
    let mut t = format!(
        "### {spec}\n\nThe line itself: RTT {} ms (avg / p99; nominal {:.1} ms), TCP across it with \
         no tunnel {} Mbit/s; {}{}\n\n\
         | row | what | frames | outer CC | TCP ({cc}) h1→h2 Mbit/s | TCP ({cc}) h2→h1 Mbit/s | \
         one BBR flow ↑ / ↓ Mbit/s | four CUBIC flows ↑ / ↓ Mbit/s | ping idle ms avg / p99 / max | \
         ping during h1→h2 ms avg / p99 | ×VXLAN ↑ / ↓ | ×OpenVPN TCP ↑ / ↓ |\n\
         | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        ms(line.rtt),
        spec.delay.as_secs_f64() * 2000.0,
        f1(line.tcp),
        line.stats,
        line.error
            .as_ref()
            .map(|e| format!(" **line check failed: {e}**"))
            .unwrap_or_default()
    );
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    };
    let both = |e: &Res, v: Option<&&Res>| match v {
        Some(v) => format!("{} / {}", ratio(e.up, v.up), ratio(e.down, v.down)),
        None => "—".into(),
    };
    for r in rs {
        let _ = writeln!(
            t,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.what,
            frames_kind(r),
            r.outer.as_deref().unwrap_or("—"),
            f1(r.up),
            f1(r.down),
            pair(r.bbr),
            pair(r.four),
            ms_max(r.ping),
            ms(r.ping_load),
            both(r, get("vxlan")),
            both(r, get("openvpn")),
        );
    }
    let _ = writeln!(t, "\n{}", targets(spec, rs));
    let lines: Vec<String> = rs
        .iter()
        .filter_map(|r| r.line.as_ref().map(|l| format!("- `{}`: {l}", r.name)))
        .collect();
    let _ = writeln!(t, "What the line did per row:\n\n{}\n", lines.join("\n"));
    t.push_str(&outer_list(rs));
    t.push_str(&fails(rs));
    t.push('\n');
    t.push_str(&issue_layout(spec, rs, cc));
    t
}

/// The path's figures in issue #26's layout: a column per tunnel, a line per measure.
pub(super) fn issue_layout(spec: WanSpec, rs: &[&Res], cc: &str) -> String {
    let mut t = format!(
        "In issue #26's layout, {spec} (Mbit/s h1→h2 / h2→h1; ping in ms):\n\n| inside the tunnel |"
    );
    for r in rs {
        let _ = write!(t, " `{}` |", r.name);
    }
    t.push_str("\n| --- |");
    t.push_str(&" ---: |".repeat(rs.len()));
    t.push('\n');
    let line = |t: &mut String, what: &str, f: &dyn Fn(&Res) -> String| {
        let _ = write!(t, "| {what} |");
        for r in rs {
            let v = if r.error.is_some() {
                "failed".into()
            } else {
                f(r)
            };
            let _ = write!(t, " {v} |");
        }
        t.push('\n');
    };
    line(&mut t, &format!("one {cc} flow"), &|r| pair([r.up, r.down]));
    line(&mut t, "one BBR flow", &|r| pair(r.bbr));
    line(&mut t, "four CUBIC flows", &|r| pair(r.four));
    line(&mut t, "ping during a bulk transfer: avg", &|r| {
        f1(r.ping_load.map(|p| p.avg))
    });
    line(&mut t, "idle ping: max", &|r| f1(r.ping.map(|p| p.max)));
    line(&mut t, "outer congestion control", &|r| {
        r.outer.clone().unwrap_or_else(|| "—".into())
    });
    t.push('\n');
    t
}

/// Issue #26's targets for each QUIC row against VXLAN of the same path: one BBR flow and
/// four CUBIC flows ≥ 0.8× VXLAN's (the worse way counts), ping during bulk ≤ 1.5× VXLAN's
/// (averages).
fn quic_targets(rs: &[&Res]) -> String {
    let Some(v) = rs.iter().find(|r| r.name == "vxlan" && r.error.is_none()) else {
        return String::new();
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = String::new();
    for q in rs.iter().filter(|r| quic_row(r.name) && r.error.is_none()) {
        for (what, a, b) in [
            ("one BBR flow", q.bbr, v.bbr),
            ("four CUBIC flows", q.four, v.four),
        ] {
            let x = (0..2)
                .map(|i| match (a[i], b[i]) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                })
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
            let _ = match x {
                Some(x) => writeln!(
                    out,
                    "- `{}` {what} ≥ 0.8× VXLAN's both ways: {x:.2}× ({})",
                    q.name,
                    verdict(x >= 0.8)
                ),
                None => writeln!(out, "- `{}` {what} vs VXLAN: not measured", q.name),
            };
        }
        if let (Some(qp), Some(vp)) = (q.ping_load, v.ping_load) {
            let x = qp.avg / vp.avg.max(1e-9);
            let _ = writeln!(
                out,
                "- `{}` ping during bulk ≤ 1.5× VXLAN's: {x:.2}× ({:.1} vs {:.1} ms average; {})",
                q.name,
                qp.avg,
                vp.avg,
                verdict(x <= 1.5)
            );
        }
    }
    out
}

/// The issue's targets at this path, each said met or **missed** with its ratio.
pub(super) fn targets(spec: WanSpec, rs: &[&Res]) -> String {
    let get = |n: &str| rs.iter().find(|r| r.name == n && r.error.is_none());
    let ours = || {
        rs.iter()
            .filter(|r| r.name.starts_with("ws") && r.error.is_none())
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = String::from("Targets:\n\n");
    let worst = |r: &Res, v: &Res| {
        let up = r.up.unwrap_or(0.0) / v.up.unwrap_or(f64::INFINITY).max(1e-9);
        let down = r.down.unwrap_or(0.0) / v.down.unwrap_or(f64::INFINITY).max(1e-9);
        up.min(down)
    };
    if spec.loss == 0.0 {
        for r in ours() {
            let wss = r.name.starts_with("wss");
            if let Some(v) = get("vxlan") {
                let (x, want) = (worst(r, v), if wss { 0.6 } else { 0.8 });
                let _ = writeln!(
                    out,
                    "- `{}` ≥ {want}× VXLAN both ways: {x:.2}× ({})",
                    r.name,
                    verdict(x >= want)
                );
            }
            if let (false, Some(v)) = (wss, get("openvpn")) {
                let x = worst(r, v);
                let _ = writeln!(
                    out,
                    "- `{}` ≥ 1.5× OpenVPN over TCP both ways: {x:.2}× ({})",
                    r.name,
                    verdict(x >= 1.5)
                );
            }
        }
    } else {
        let best = |f: fn(&Res) -> Option<f64>| {
            ["vxlan", "openvpn_udp", "tinc"]
                .iter()
                .filter_map(|n| get(n))
                .filter_map(|r| f(r))
                .fold(0.0_f64, f64::max)
        };
        let (bu, bd) = (best(|r| r.up), best(|r| r.down));
        for r in ours() {
            if bu > 0.0 && bd > 0.0 {
                let x = (r.up.unwrap_or(0.0) / bu).min(r.down.unwrap_or(0.0) / bd);
                let _ = writeln!(
                    out,
                    "- `{}` ≥ 0.9× the best UDP tunnel both ways: {x:.2}× ({})",
                    r.name,
                    verdict(x >= 0.9)
                );
            }
        }
    }
    out.push_str(&quic_targets(rs));
    let rtt = spec.delay.as_secs_f64() * 2000.0;
    for r in ours().filter(|_| rtt > 0.0) {
        if let Some(Ping { avg, p99, .. }) = r.ping_load {
            let _ = writeln!(
                out,
                "- `{}` ping during bulk: average {:.2}× the path's RTT (target ≤ 2×: {}), p99 \
                 {:.2}× (target ≤ 3×: {})",
                r.name,
                avg / rtt,
                verdict(avg <= 2.0 * rtt),
                p99 / rtt,
                verdict(p99 <= 3.0 * rtt)
            );
        }
    }
    out
}
