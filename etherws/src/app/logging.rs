//! Logging: `tracing` to stderr by default; `--logconf FILE` picks the filter and the output,
//! `--log-format` text or JSON lines.
//!
//! The file is TOML:
//! ```toml
//! filter = "etherws=info,axum=warn"   # tracing-subscriber EnvFilter directives
//! output = "/var/log/etherws.log"     # "stderr" (default), "stdout", "syslog", or a file to append to
//! ```
//! A daemonized switch (no `--foreground`) has no terminal: without an `output` it logs to
//! syslog (`/dev/log`, which journald also reads), or where there is none to
//! [`DAEMON_LOG_FILE`]. Debug messages are written only with `--debug`, whatever the filter
//! says, as in etherws 1.3; with it, etherws's own are written whatever the filter says too.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use clap::ValueEnum;
use serde::Deserialize;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConf {
    pub(crate) filter: Option<String>,
    pub(crate) output: Option<String>,
}

impl LogConf {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = crate::base::files::read_text(path)?;
        toml::from_str(&text)
            .with_context(|| format!("invalid log configuration {}", path.display()))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the other fields,
    /// `target`), for log shippers.
    Json,
}

/// Where a daemonized switch logs when there is no syslog socket and no `output` is set.
pub(crate) const DAEMON_LOG_FILE: &str = "/var/log/etherws.log";

/// The syslog socket of the local host.
const SYSLOG_SOCKET: &str = "/dev/log";

/// Installs the global subscriber. Call before daemonizing: a file output is opened here, so
/// errors reach the terminal and relative paths mean what the user meant. `daemon`: the
/// process is about to lose its terminal.
pub(crate) fn init(
    conf: &LogConf,
    debug: bool,
    format: LogFormat,
    daemon: bool,
) -> anyhow::Result<()> {
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
    let directives = if debug {
        with_debug(&directives)
    } else {
        directives
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .with_context(|| format!("invalid log filter {directives:?}"))?;
    let cap = if debug {
        LevelFilter::TRACE
    } else {
        LevelFilter::INFO
    };
    let output = match conf.output.as_deref() {
        Some(o) => o,
        None if daemon && Path::new(SYSLOG_SOCKET).exists() => "syslog",
        None if daemon => DAEMON_LOG_FILE,
        None => "stderr",
    };
    // Colours only for a terminal: journald, files and pipes get plain text.
    let layer = match output {
        "stderr" => output_layer(
            format,
            std::io::stderr().is_terminal(),
            true,
            std::io::stderr,
        ),
        "stdout" => output_layer(
            format,
            std::io::stdout().is_terminal(),
            true,
            std::io::stdout,
        ),
        // syslog stamps the time itself.
        "syslog" => output_layer(format, false, false, Syslog::connect(SYSLOG_SOCKET)?),
        path => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {path}"))?;
            // The fallback file is every daemon's on the host: each text line says whose.
            if path == DAEMON_LOG_FILE && format == LogFormat::Text {
                output_layer(format, false, true, PidLines(Mutex::new(file)))
            } else {
                output_layer(format, false, true, Mutex::new(file))
            }
        }
    };
    // The output first (its type is boxed for the registry alone); the filters are global.
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .with(cap)
        .init();
    Ok(())
}

/// `directives` (the filter's) as `--debug` makes them: it wins over the filter, so every
/// directive on etherws's own messages (`etherws=info`, `etherws::port=warn`) lets its debug
/// messages through, and `etherws=debug` is added where no directive names `etherws` itself.
/// Other targets (`hyper=warn`) and more verbose levels (`etherws=trace`) stay as they are.
fn with_debug(directives: &str) -> String {
    let mut crate_named = false;
    let mut out: Vec<String> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let Some((target, level)) = d.rsplit_once('=') else {
                crate_named |= d == "etherws";
                return d.to_owned();
            };
            let name = target.split('[').next().unwrap_or(target);
            let ours = name == "etherws" || name.starts_with("etherws::");
            crate_named |= target == "etherws";
            match level.parse::<LevelFilter>() {
                Ok(l) if ours && l < LevelFilter::DEBUG => format!("{target}=debug"),
                _ => d.to_owned(),
            }
        })
        .collect();
    if !crate_named {
        out.push("etherws=debug".to_owned());
    }
    out.join(",")
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The formatting layer for `format`, writing to `writer`.
fn output_layer<W>(format: LogFormat, ansi: bool, time: bool, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match (format, time) {
        (LogFormat::Json, _) => fmt.json().with_ansi(false).boxed(),
        (LogFormat::Text, true) => fmt.with_ansi(ansi).boxed(),
        (LogFormat::Text, false) => fmt.with_ansi(ansi).without_time().boxed(),
    }
}

/// A log file whose every line starts as syslog's do, `etherws[PID]: `: several switches may
/// write to [`DAEMON_LOG_FILE`]. The pid is the writing process's (the daemon's, not that of
/// the process that opened the file before it detached).
struct PidLines<W>(Mutex<W>);

/// One event's line, written (with its prefix, in one write) when it is dropped.
struct PidLine<'a, W: Write> {
    out: &'a Mutex<W>,
    line: Vec<u8>,
}

impl<'a, W: Write + 'a> MakeWriter<'a> for PidLines<W> {
    type Writer = PidLine<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        PidLine {
            out: &self.0,
            line: Vec::new(),
        }
    }
}

impl<W: Write> Write for PidLine<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for PidLine<'_, W> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut out = format!("etherws[{}]: ", std::process::id()).into_bytes();
        out.append(&mut self.line);
        // A poisoned lock still holds the file; a log line that cannot be written is lost.
        let mut w = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = w.write_all(&out);
    }
}

/// Log lines as syslog datagrams on a Unix socket, framed as syslog(3) frames them
/// (`<PRI>etherws[PID]: line`, facility daemon). Written by hand: it is one datagram per
/// event, and the crates that do it bring a `log` facade this program does not use.
pub(crate) struct Syslog {
    path: String,
    sock: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    pub(crate) fn connect(path: &str) -> anyhow::Result<Syslog> {
        let sock = UnixDatagram::unbound().context("cannot open a syslog socket")?;
        sock.connect(path)
            .with_context(|| format!("cannot reach syslog at {path}"))?;
        Ok(Syslog {
            path: path.into(),
            sock: Mutex::new(Some(sock)),
        })
    }

    fn send(&self, msg: &[u8]) {
        let mut sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        if sock.as_ref().is_some_and(|s| s.send(msg).is_ok()) {
            return;
        }
        // The syslog daemon restarted: connect again, once per line at most.
        *sock = UnixDatagram::unbound()
            .and_then(|s| s.connect(&self.path).map(|()| s))
            .ok();
        if let Some(s) = sock.as_ref() {
            let _ = s.send(msg);
        }
    }
}

/// One event's line, sent when the formatter is done with it.
pub(crate) struct SyslogLine<'a> {
    to: &'a Syslog,
    pri: u8,
    buf: Vec<u8>,
}

/// Facility `daemon` (3), shifted as syslog wants it.
const LOG_DAEMON: u8 = 3 << 3;

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> SyslogLine<'a> {
        SyslogLine {
            to: self,
            pri: LOG_DAEMON | 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine<'a> {
        let severity = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        SyslogLine {
            to: self,
            pri: LOG_DAEMON | severity,
            buf: Vec::new(),
        }
    }
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let msg = format!("<{}>etherws[{}]: {line}", self.pri, std::process::id());
        self.to.send(msg.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_the_fallback_file_names_its_process() {
        let lines = PidLines(Mutex::new(Vec::new()));
        for text in ["one\n", "two\n"] {
            let mut w = lines.make_writer();
            w.write_all(text.as_bytes()).unwrap();
        }
        let _ = lines.make_writer();
        let pid = std::process::id();
        let got = String::from_utf8(lines.0.into_inner().unwrap()).unwrap();
        assert_eq!(got, format!("etherws[{pid}]: one\netherws[{pid}]: two\n"));
    }

    #[test]
    fn debug_wins_over_the_filter() {
        assert_eq!(
            with_debug("etherws=info,hyper=warn"),
            "etherws=debug,hyper=warn"
        );
        assert_eq!(with_debug("warn"), "warn,etherws=debug");
        assert_eq!(
            with_debug("etherws::port=warn,etherws=trace,h2=off"),
            "etherws::port=debug,etherws=trace,h2=off"
        );
        assert_eq!(
            with_debug("etherws_other=info"),
            "etherws_other=info,etherws=debug"
        );
        assert_eq!(with_debug("etherws"), "etherws");

        // What a subscriber with the file's filter and `--debug` lets through.
        let filter = EnvFilter::builder()
            .parse(with_debug("etherws=info,warn"))
            .unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Counter(seen.clone());
        let subscriber = tracing_subscriber::registry()
            .with(counter)
            .with(filter)
            .with(LevelFilter::TRACE);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "etherws::switch", "learned");
            tracing::debug!(target: "hyper", "not ours");
        });
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Counter {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn syslog_lines_are_framed_with_their_priority() {
        let dir = std::env::temp_dir().join(format!("etherws-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect(path.to_str().unwrap()).unwrap();
        {
            let mut w = syslog.make_writer();
            w.pri = LOG_DAEMON | 4;
            w.write_all(b"port added port=1\n").unwrap();
        }
        let mut buf = [0; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        assert_eq!(
            got,
            format!("<28>etherws[{}]: port added port=1", std::process::id())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
