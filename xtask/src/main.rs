//! Project tasks, run as `cargo xtask TASK`.
//!
//! - `run [SW-ARGS…]`: build everything in release mode and start `etherws sw --foreground`.
//! - `test [CARGO-TEST-ARGS…]`: the whole test suite — the eBPF object and its tests, then
//!   formatting, lints, unit and end-to-end tests (the end-to-end ones build network namespaces
//!   and need root; under `CI=true` they refuse to skip).
//! - `build-ebpf`: build the XDP object `target/bpf/etherws-xdp.o` (installing the nightly's
//!   `rust-src` and a matching `bpf-linker` first if missing); see `build_ebpf.rs`.
//! - `test-ebpf`: run the XDP program on test frames with `BPF_PROG_TEST_RUN` and check its
//!   decisions (needs root and the object); see `test_ebpf.rs`.
//! - `bench [--quick] [--only NAME…] [--wan SPEC…] [--write]`: the offload and tunnel
//!   benchmarks (root; network namespaces; OpenVPN and VXLAN for comparison); `--wan 20ms,0.5%`
//!   measures the tunnel rows across the test kit's delay line instead; `--write` updates
//!   `BENCHMARKS.md`. See `bench/mod.rs` and `bench/wan.rs`.
//! - `fuzz [--seconds N] [TARGET…]`: run the fuzz targets for a bounded time each; see
//!   `fuzz.rs`. `test` ends with a short pass (`ETHERWS_FUZZ_SECONDS`, default 10 per target).
//! - `load [--clients N] [--seconds S] [--reload] [--write]`: 1,000 WebSocket clients with
//!   unicast and broadcast traffic on one release-built switch; RSS, CPU, control-API latency,
//!   fairness; `--reload` reloads the switch halfway (SIGHUP) and counts the clients dropped;
//!   `--write` updates `BENCHMARKS.md`. See `load.rs`.
//! - `dist`: shell completions and man pages generated from etherws's command line, into
//!   `target/dist/{completions,man}/`; see `dist.rs` (in the `xtask` library).
//! - `deb [--debug]`: the eBPF object, the release binary and `dist`, packed into
//!   `target/debian/etherws_<version>_<arch>.deb` (`--debug`: the dev build, into
//!   `target/debian/debug/`); see `deb.rs` (in the library, which `tests/package.rs` uses too).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

mod bench;
mod build_ebpf;
mod fuzz;
mod load;
mod report;
mod test_ebpf;
mod test_ebpf_tc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its description if it fails.
fn run(mut cmd: Command) -> anyhow::Result<()> {
    let what = format!("{cmd:?}");
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

fn task_run(args: Vec<String>) -> anyhow::Result<()> {
    build_ebpf::task_build_ebpf()?;
    let mut build = cargo();
    build.args(["build", "--release", "-p", "etherws"]);
    run(build)?;
    let bin = root().join("target/release/etherws");
    let mut sw = Command::new(&bin);
    sw.args(["sw", "--foreground"]).args(args);
    eprintln!("xtask: {sw:?}");
    use std::os::unix::process::CommandExt;
    Err(sw.exec()).with_context(|| format!("cannot start {}", bin.display()))
}

fn task_dist() -> anyhow::Result<xtask::dist::Dist> {
    let dir = root().join("target/dist");
    let dist = xtask::dist::generate(&dir)?;
    eprintln!(
        "xtask: {} completions and {} man pages in {} ({} written)",
        dist.completions.len(),
        dist.man_pages.len(),
        dir.display(),
        dist.written
    );
    Ok(dist)
}

fn task_deb(debug: bool) -> anyhow::Result<()> {
    let object = build_ebpf::task_build_ebpf()?;
    let mut build = cargo();
    build.args(["build", "-p", "etherws", "--bin", "etherws"]);
    if !debug {
        build.arg("--release");
    }
    run(build)?;
    let binary = root()
        .join("target")
        .join(if debug { "debug" } else { "release" })
        .join("etherws");
    // `etherws/build.rs` embeds the object it finds; make sure this binary has this one.
    let (bin_bytes, obj_bytes) = (std::fs::read(&binary)?, std::fs::read(&object)?);
    if !contains(&bin_bytes, &obj_bytes) {
        bail!(
            "{} does not embed {} (is ETHERWS_XDP_OBJECT set?)",
            binary.display(),
            object.display()
        );
    }
    let dist = task_dist()?;
    let built = xtask::deb::build(&xtask::deb::Deb {
        binary: &binary,
        dist: &dist,
        // The dev build's package apart, so that it is never taken for the release one.
        out_dir: &root().join(if debug {
            "target/debian/debug"
        } else {
            "target/debian"
        }),
        compression: if debug {
            xtask::deb::Compression::Fast
        } else {
            xtask::deb::Compression::Xz
        },
    })?;
    let size = std::fs::metadata(&built.path)?.len();
    eprintln!(
        "xtask: {} ({} KiB; version {}, {}; Depends: {} from {}; eBPF object embedded)",
        built.path.display(),
        size.div_ceil(1024),
        built.version,
        built.arch,
        built.depends,
        built.depends_from
    );
    Ok(())
}

/// Whether `needle` occurs in `haystack` (the object is embedded byte for byte).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

fn task_test(args: Vec<String>) -> anyhow::Result<()> {
    // First, so that the object exists for every test that loads it.
    build_ebpf::task_build_ebpf()?;
    test_ebpf::task_test_ebpf()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut test = cargo();
    test.arg("test").args(args);
    let (passed, failed) = run_counting(test)?;
    let seconds = std::env::var("ETHERWS_FUZZ_SECONDS").unwrap_or_else(|_| "10".into());
    fuzz::task_fuzz(vec!["--seconds".into(), seconds])?;
    // One plain closing line for whoever reads the log: cargo's last lines are doc-test
    // summaries of crates without doc tests.
    println!("summary: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, passing its output through, and adds up its `test result:` lines.
fn run_counting(mut cmd: Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    let what = format!("{cmd:?}");
    eprintln!("xtask: {what}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{what} failed: {status} ({passed} passed, {failed} failed)");
    }
    Ok((passed, failed))
}

/// `cargo xtask TASK`: see the module documentation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "etherws project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build everything in release mode (eBPF included) and start `etherws sw --foreground`.
    Run {
        /// Arguments for `etherws sw`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole test suite: eBPF, fmt, clippy, unit and end-to-end tests, a short fuzz pass.
    Test {
        /// Arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the XDP object `target/bpf/etherws-xdp.o`.
    BuildEbpf,
    /// Run the XDP program on test frames with BPF_PROG_TEST_RUN (root).
    TestEbpf,
    /// Run the fuzz targets for a bounded time each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// 1,000 WebSocket clients with traffic on one release-built switch.
    Load(load::LoadArgs),
    /// The offload and tunnel benchmarks (root).
    Bench(bench::Opts),
    /// Shell completions and man pages, into target/dist/.
    Dist,
    /// The Debian package target/debian/etherws_<version>_<arch>.deb.
    Deb {
        /// Pack the dev build instead of the release one (faster; for tests), into
        /// target/debian/debug/.
        #[arg(long)]
        debug: bool,
    },
}

/// The command line as typed, for the reports in BENCHMARKS.md.
fn command_line() -> String {
    std::iter::once("cargo xtask".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Run { args } => task_run(args),
        Task::Test { args } => task_test(args),
        Task::BuildEbpf => build_ebpf::task_build_ebpf().map(drop),
        Task::TestEbpf => test_ebpf::task_test_ebpf(),
        Task::Fuzz { seconds, targets } => fuzz::task_fuzz(
            ["--seconds".to_string(), seconds.to_string()]
                .into_iter()
                .chain(targets)
                .collect(),
        ),
        Task::Load(args) => load::task_load(args),
        Task::Bench(opts) => bench::task_bench(opts),
        Task::Dist => task_dist().map(drop),
        Task::Deb { debug } => task_deb(debug),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    #[test]
    fn arguments_for_the_switch_and_cargo_pass_through() {
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).map(|c| c.task);
        match parse(&["xtask", "run", "--", "--port", "8080"]).unwrap() {
            Task::Run { args } => assert_eq!(args, ["--port", "8080"]),
            other => panic!("{other:?}"),
        }
        match parse(&["xtask", "run", "--port", "8080"]).unwrap() {
            Task::Run { args } => assert_eq!(args, ["--port", "8080"]),
            other => panic!("{other:?}"),
        }
        match parse(&["xtask", "test", "hardening", "--", "--nocapture"]).unwrap() {
            Task::Test { args } => assert_eq!(args, ["hardening", "--", "--nocapture"]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["xtask", "bench", "--only", "offload,ws_tap", "--write"]).is_ok());
        assert!(parse(&["xtask", "load", "--clients", "1"]).is_err());
        assert!(matches!(
            parse(&["xtask", "deb", "--debug"]).unwrap(),
            Task::Deb { debug: true }
        ));
        assert!(matches!(parse(&["xtask", "dist"]).unwrap(), Task::Dist));
    }
}
