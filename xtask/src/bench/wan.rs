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
//! Per row: iperf3 TCP both ways (`-O 3`, 20 s; 5 s with `--quick`), ping idle (200 at 10 ms)
//! and ping during the h1→h2 transfer (every 50 ms), with the targets checked against
//! VXLAN, OpenVPN over TCP and the best UDP tunnel of the same run.

use std::process::Stdio;

use super::*;

pub(super) const WAN_HEADING: &str = "## Bench: across a WAN path (delay line)";

/// The line itself at one path: RTT, TCP between the switch namespaces, what it did.
struct LineCheck {
    spec: WanSpec,
    rtt: Option<(f64, f64, usize)>,
    tcp: Option<f64>,
    stats: String,
    error: Option<String>,
}

/// iperf3 seconds and omitted warm-up seconds.
pub(super) fn durations(o: &Opts) -> (u32, u32) {
    if o.quick { (5, 2) } else { (20, 3) }
}

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
        c.rtt.map(|r| r.0),
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
    Ok(())
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
    for &spec in &o.wan {
        let line = check_line(spec, o);
        let results: Vec<Res> = rows.iter().map(|s| measure_wan(s, o, env, spec)).collect();
        failed |= line.error.is_some() || results.iter().any(|r| r.error.is_some());
        let refs: Vec<&Res> = results.iter().collect();
        text.push_str(&path_table(&line, &refs));
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

fn ms(p: Option<(f64, f64, usize)>) -> String {
    p.map(|(a, p99, lost)| {
        if lost > 0 {
            format!("{a:.1} / {p99:.1} ({lost} lost)")
        } else {
            format!("{a:.1} / {p99:.1}")
        }
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

/// One path's table: the line, every row, ratios and the targets.
fn path_table(line: &LineCheck, rs: &[&Res]) -> String {
    let spec = line.spec;
    let mut t = format!(
        "### {spec}\n\nThe line itself: RTT {} ms (avg / p99; nominal {:.1} ms), TCP across it with \
         no tunnel {} Mbit/s; {}{}\n\n\
         | row | what | frames | TCP h1→h2 Mbit/s | TCP h2→h1 Mbit/s | ping idle ms avg / p99 | \
         ping during h1→h2 ms avg / p99 | ×VXLAN ↑ / ↓ | ×OpenVPN TCP ↑ / ↓ |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
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
        let frames = match r.super_frames {
            Some(true) => "super",
            Some(false) => "strict",
            None => "—",
        };
        let _ = writeln!(
            t,
            "| `{}` | {} | {frames} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.what,
            f1(r.up),
            f1(r.down),
            ms(r.ping),
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
    t.push_str(&fails(rs));
    t.push('\n');
    t
}

/// The targets at this path, each said met or **missed** with its ratio.
fn targets(spec: WanSpec, rs: &[&Res]) -> String {
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
    let rtt = spec.delay.as_secs_f64() * 2000.0;
    for r in ours().filter(|_| rtt > 0.0) {
        if let Some((avg, p99, _)) = r.ping_load {
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
