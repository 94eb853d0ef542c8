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
