//! Logging: `tracing` to stderr by default; `--logconf FILE` picks the filter and the output.
//!
//! The file is TOML:
//! ```toml
//! filter = "etherws=info,axum=warn"   # tracing-subscriber EnvFilter directives
//! output = "/var/log/etherws.log"     # "stderr" (default), "stdout", or a file to append to
//! ```
//! Debug messages are written only with `--debug`, whatever the filter says, as in etherws 1.3.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConf {
    pub filter: Option<String>,
    pub output: Option<String>,
}

impl LogConf {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = crate::files::read_text(path)?;
        toml::from_str(&text)
            .with_context(|| format!("invalid log configuration {}", path.display()))
    }
}

/// Installs the global subscriber. Call before daemonizing: a file output is opened here, so
/// errors reach the terminal and relative paths mean what the user meant.
pub fn init(conf: &LogConf, debug: bool) -> anyhow::Result<()> {
    let default = if debug {
        "etherws=debug,info"
    } else {
        "etherws=info,warn"
    };
    let directives = conf
        .filter
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::builder()
        .parse(&directives)
        .with_context(|| format!("invalid log filter {directives:?}"))?;
    let cap = if debug {
        LevelFilter::TRACE
    } else {
        LevelFilter::INFO
    };
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    match conf.output.as_deref() {
        // Colours only for a terminal: journald, files and pipes get plain text.
        None | Some("stderr") => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init(),
        Some("stdout") => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(std::io::stdout),
            )
            .init(),
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {path}"))?;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(Mutex::new(file)),
                )
                .init()
        }
    }
    Ok(())
}
