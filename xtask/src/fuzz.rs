//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs the cargo-fuzz targets of `fuzz/` (see
//! `etherws::fuzzing`) for a bounded time each, installing cargo-fuzz first if it is missing.
//! Crashes are left in `fuzz/artifacts/TARGET/`; the corpus grows in `fuzz/corpus/TARGET/`.

use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, root, run};

/// Every target, as named in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "frames",
    "jsonrpc",
    "htpasswd",
    "config",
    "gso",
    "gro",
    "super_frame",
    "strict_egress",
    "websocket",
    "no_proxy",
    "proxy_url",
    "proxy_answer",
    "forwarded",
    "h3_datagram",
];

fn have_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn task_fuzz(args: Vec<String>) -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v.parse().with_context(|| format!("bad --seconds {v}"))?;
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!("unknown fuzz target or option {other:?} (targets: {TARGETS:?})"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    if !have_cargo_fuzz() {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run(install)?;
    }
    for t in &targets {
        // libFuzzer needs nightly (sanitizer flags); -rss_limit_mb leaves room for the
        // sanitizer's shadow memory on this 24 GiB machine.
        let mut fuzz = Command::new("rustup");
        fuzz.current_dir(root())
            .args(["run", "nightly", "cargo", "fuzz", "run", t, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1");
        run(fuzz).with_context(|| format!("fuzz target {t} failed: see fuzz/artifacts/{t}/"))?;
    }
    Ok(())
}
