//! What `cargo xtask load` and `cargo xtask bench` share: the `BENCHMARKS.md` file they each
//! write a section of, and the machine facts every section records.

/// The top of a new `BENCHMARKS.md`.
pub const BENCHMARKS_HEADER: &str = "# Benchmarks\n\n\
Measurements of the `etherws` switch, each section written by the command it names (with \
`--write`) and stating the machine, the date and the load it ran under. Numbers from a shared \
2-core machine are indicative only: compare runs from the same machine, and never turn them \
into test assertions (the test suite checks correctness; `tests/load.rs` is the scaled-down, \
untimed version of the load test).\n";

/// The 1-, 5- and 15-minute load averages, as `a / b / c`: a benchmark records the load it ran
/// under.
pub fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
}

/// Replaces (or appends) the section starting with `heading` in `text`; a section ends at the
/// next `## ` heading.
pub fn replace_section(text: &str, heading: &str, section: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut replaced = false;
    while let Some(l) = lines.next() {
        if l.trim_end() == heading {
            while lines.peek().is_some_and(|n| !n.starts_with("## ")) {
                lines.next();
            }
            out.push_str(section);
            if lines.peek().is_some() {
                out.push('\n');
            }
            replaced = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !replaced {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(section);
    }
    out
}

/// One row of [`bar_chart_svg`]: a label and two values (a failed row is drawn empty).
pub struct ChartRow {
    pub label: String,
    pub values: [f64; 2],
    pub failed: bool,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step of 1, 2 or 5 times a power of ten giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A horizontal grouped bar chart, two bars per row (`series` names them), as a standalone
/// SVG document: linear axis from 0, each bar labelled with its value.
pub fn bar_chart_svg(title: &str, axis: &str, series: [&str; 2], rows: &[ChartRow]) -> String {
    use std::fmt::Write as _;
    const LEFT: f64 = 170.0;
    const PLOT_W: f64 = 620.0;
    const TOP: f64 = 58.0;
    const ROW_H: f64 = 30.0;
    const BAR_H: f64 = 11.0;
    const COLORS: [&str; 2] = ["#3b75af", "#ef8636"];
    let width = LEFT + PLOT_W + 90.0;
    let height = TOP + ROW_H * rows.len() as f64 + 50.0;
    let max = rows
        .iter()
        .flat_map(|r| r.values)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let step = tick_step(max);
    let top_tick = (max / step).ceil() * step;
    let x = |v: f64| LEFT + PLOT_W * (v / top_tick).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{:.0}\" y=\"22\" font-size=\"15\" font-weight=\"bold\" \
         text-anchor=\"middle\">{}</text>",
        width / 2.0,
        xml_escape(title)
    );
    for (i, name) in series.iter().enumerate() {
        let lx = LEFT + i as f64 * 160.0;
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.0}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.0}\" y=\"42\">{}</text>",
            COLORS[i],
            lx + 17.0,
            xml_escape(name)
        );
    }
    let bottom = TOP + ROW_H * rows.len() as f64;
    let mut t = 0.0;
    while t <= top_tick + step / 2.0 {
        let tx = x(t);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{TOP:.0}\" x2=\"{tx:.1}\" y2=\"{bottom:.0}\" \
             stroke=\"#ddd\"/><text x=\"{tx:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{t:.0}</text>",
            bottom + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>",
        LEFT + PLOT_W / 2.0,
        bottom + 36.0,
        xml_escape(axis)
    );
    for (i, r) in rows.iter().enumerate() {
        let y0 = TOP + ROW_H * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 8.0,
            y0 + ROW_H / 2.0 + 4.0,
            xml_escape(&r.label)
        );
        if r.failed {
            let _ = writeln!(
                s,
                "<text x=\"{:.0}\" y=\"{:.1}\" fill=\"#a00\">failed</text>",
                LEFT + 4.0,
                y0 + ROW_H / 2.0 + 4.0
            );
            continue;
        }
        for (j, v) in r.values.iter().enumerate() {
            let by = y0 + 4.0 + j as f64 * BAR_H;
            let w = x(*v) - LEFT;
            let _ = writeln!(
                s,
                "<rect x=\"{LEFT:.0}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{v:.0}</text>",
                BAR_H - 1.0,
                COLORS[j],
                LEFT + w + 4.0,
                by + BAR_H - 2.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT:.0}\" y1=\"{TOP:.0}\" x2=\"{LEFT:.0}\" y2=\"{bottom:.0}\" \
         stroke=\"#333\"/>\n</svg>"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(20_000.0), 5_000.0);
        assert_eq!(tick_step(900.0), 200.0);
        assert_eq!(tick_step(3.0), 1.0);
    }

    #[test]
    fn chart_has_a_bar_per_value_and_escapes_labels() {
        let rows = [
            ChartRow {
                label: "a<b".into(),
                values: [100.0, 50.0],
                failed: false,
            },
            ChartRow {
                label: "x".into(),
                values: [0.0, 0.0],
                failed: true,
            },
        ];
        let svg = bar_chart_svg("T", "Mbit/s", ["up", "down"], &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b") && svg.contains("failed"));
        // two legend swatches + two bars + the background
        assert_eq!(svg.matches("<rect").count(), 5);
    }
}
