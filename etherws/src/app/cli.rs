//! The command line: `etherws sw` and `etherws ctl`, with etherws 1.3's options and defaults.
//!
//! `sw`'s options are also read from the environment and from the configuration file: they are
//! defined once, in [`SwOptions`].

use std::any::Any;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{
    ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};
use serde::Deserialize;

use crate::app::logging::LogFormat;
use crate::edge::forwarded::ProxyHeader;
use crate::port::websocket::tcp::{DEFAULT_CONGESTION, DEFAULT_NOTSENT_LOWAT};
use crate::settings::profile::PathSpec;
use crate::settings::values::{BitRate, Congestion, HttpPath, Int, Num, QuicCongestion, Transport};

#[derive(Debug, Parser)]
#[command(
    name = "etherws",
    version,
    propagate_version = true,
    about = "Ethernet over WebSocket software switch"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What `--version` says: the version, the commit it was built from, and whether the eBPF
/// object (netdev offload) is built in.
pub(crate) fn long_version() -> String {
    format!(
        "{} (git {}; eBPF offload: {})",
        env!("CARGO_PKG_VERSION"),
        env!("ETHERWS_GIT_REV"),
        if crate::offload::available() {
            "built in"
        } else {
            "not built in (cargo xtask build-ebpf, then rebuild)"
        }
    )
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the virtual switch.
    Sw(Box<SwArgs>),
    /// Control a virtual switch.
    Ctl(Box<CtlArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct SwArgs {
    /// Stay in the foreground instead of daemonizing.
    #[arg(long)]
    pub(crate) foreground: bool,
    /// Configuration file (TOML): switch settings and the ports to create at start. Its
    /// `[switch]` table takes the options below, `-` spelt `_`; an option set in the
    /// environment (ETHERWS_…) overrides the file, and one on the command line both.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Check a configuration file (and the files it names: TLS keys, htpasswd…) and exit: 0 if
    /// the switch would start with it, 1 with the reason if not. Binds nothing, creates nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub(crate) check_config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) options: SwOptions,
}

/// Declares [`SwOptions`] and [`EffectiveOptions`] from one list of fields, and derives from it
/// what neither clap nor serde can: [`SwOptions::over`], which lays one set of options over
/// another and fills in the defaults, and [`SwOptions::paths_mut`], the file names among them.
///
/// A field is `name: Type` or `name: Type = default`. In [`SwOptions`] every field is an
/// `Option<Type>` (`None`: that source does not give it). In [`EffectiveOptions`] a field with a
/// default is a `Type`, one without stays an `Option<Type>`, whose `None` its struct
/// documentation explains. A default is written once, as a value: clap shows it in `--help`
/// ([`DefaultText`]) and fills it in when it parses.
///
/// A listener's files, the same five for the WebSocket and the control listener, are declared
/// once, as `listener_files { htpasswd, key, cert, clientca, crl; … }`, with the names of the
/// five options and the words their help texts differ by (see the invocation).
macro_rules! sw_options {
    // The fields are read one by one into a list of `{ [attributes] name: Type = default }`,
    // a listener's files expanded into their five fields; `@emit` declares what they make.
    (@fields $header:tt [$($done:tt)*]) => {
        sw_options!(@emit $header $($done)*);
    };
    (@fields $header:tt [$($done:tt)*]
        listener_files {
            $htpasswd:ident, $key:ident, $cert:ident, $clientca:ident, $crl:ident;
            env: $env:literal, clients: $clients:literal, listener: $listener:literal,
            on: $on:literal, mutual: $mutual:literal, revoked: $revoked:literal $(,)?
        }
        $($rest:tt)*
    ) => {
        sw_options!(@fields $header [$($done)*
            { [
                #[doc = concat!("htpasswd file to authenticate ", $clients, " clients with.")]
                #[arg(long, env = concat!($env, "HTPASSWD"), value_name = "FILE")]
                #[arg(help = concat!("htpasswd file to authenticate ", $clients, " clients with"))]
            ] $htpasswd: PathBuf }
            { [
                #[doc = concat!("TLS private key for ", $listener, " (PEM).")]
                #[arg(long, env = concat!($env, "SSLKEY"), value_name = "FILE")]
                #[arg(help = concat!("TLS private key for ", $listener, " (PEM)"))]
            ] $key: PathBuf }
            { [
                #[doc = concat!("TLS certificate (chain) for ", $listener, " (PEM).")]
                #[arg(long, env = concat!($env, "SSLCERT"), value_name = "FILE")]
                #[arg(help = concat!("TLS certificate (chain) for ", $listener, " (PEM)"))]
            ] $cert: PathBuf }
            { [
                #[doc = concat!("Require a client certificate on ", $on,
                    " issued by a CA of this file (PEM", $mutual, ").")]
                #[arg(long, env = concat!($env, "SSLCLIENTCA"), value_name = "FILE")]
                #[arg(help = concat!("Require a client certificate on ", $on,
                    " issued by a CA of this file (PEM", $mutual, ")"))]
            ] $clientca: PathBuf }
            { [
                #[doc = concat!("Refuse ", $revoked, " revoked by these CRLs (PEM; needs --",
                    stringify!($clientca), ").")]
                #[arg(long, env = concat!($env, "SSLCRL"), value_name = "FILE")]
                #[arg(help = concat!("Refuse ", $revoked, " revoked by these CRLs (PEM; needs --",
                    stringify!($clientca), ")"))]
            ] $crl: PathBuf }
        ] $($rest)*);
    };
    (@fields $header:tt [$($done:tt)*]
        $(#[$field_meta:meta])* pub(crate) $field:ident: $ty:ty $(= $default:expr)?,
        $($rest:tt)*
    ) => {
        sw_options!(@fields $header [$($done)*
            { [$(#[$field_meta])*] $field: $ty $(= $default)? }
        ] $($rest)*);
    };
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident;
        $(#[$effective_meta:meta])*
        pub(crate) struct $effective:ident {
            $($fields:tt)*
        }
    ) => {
        sw_options!(@fields {
            $(#[$meta])*
            pub(crate) struct $name;
            $(#[$effective_meta])*
            pub(crate) struct $effective;
        } [] $($fields)*);
    };
    (@emit {
        $(#[$meta:meta])*
        pub(crate) struct $name:ident;
        $(#[$effective_meta:meta])*
        pub(crate) struct $effective:ident;
    } $( { [$(#[$field_meta:meta])*] $field:ident: $ty:ty $(= $default:expr)? } )*) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $(
                $(#[$field_meta])*
                $(#[arg(default_value = {
                    static TEXT: OnceLock<String> = OnceLock::new();
                    TEXT.get_or_init(|| {
                        let default: $ty = $default;
                        DefaultText::text(&default)
                    })
                    .as_str()
                })])?
                pub(crate) $field: Option<$ty>,
            )*
        }

        $(#[$effective_meta])*
        pub(crate) struct $effective {
            $( pub(crate) $field: effective_type!($ty $(, $default)?), )*
        }

        impl $name {
            /// Each option as `self` has it, or else as `lower` has it, or else its default.
            pub(crate) fn over(self, lower: $name) -> $effective {
                $effective {
                    $( $field: effective_value!(self.$field.or(lower.$field) $(, $default)?), )*
                }
            }

            /// The file names given, each with its option's name.
            pub(crate) fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
                let mut paths = Vec::new();
                $(
                    let field: &mut dyn Any = &mut self.$field;
                    if let Some(Some(path)) = field.downcast_mut::<Option<PathBuf>>() {
                        paths.push((stringify!($field), path));
                    }
                )*
                paths
            }
        }
    };
}

/// The type of an [`EffectiveOptions`] field: the option's type if it has a default, an
/// `Option` of it if not.
macro_rules! effective_type {
    ($ty:ty) => { Option<$ty> };
    ($ty:ty, $default:expr) => { $ty };
}

/// The value of an [`EffectiveOptions`] field: the option as given, or else its default.
macro_rules! effective_value {
    ($given:expr) => {
        $given
    };
    ($given:expr, $default:expr) => {
        $given.unwrap_or_else(|| $default)
    };
}

/// How `--help` shows a default, and what clap reads back as that default.
trait DefaultText {
    fn text(&self) -> String;
}

impl<T: Int, const LO: u64, const HI: u64> DefaultText for Num<T, LO, HI> {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl DefaultText for bool {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl DefaultText for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl DefaultText for Congestion {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl DefaultText for QuicCongestion {
    fn text(&self) -> String {
        self.name().to_owned()
    }
}

impl DefaultText for HttpPath {
    fn text(&self) -> String {
        self.0.clone()
    }
}

impl DefaultText for LogFormat {
    fn text(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// How the transmit queues toward WebSocket peers order and shed frames
/// (`--queue-discipline`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum QueueDiscipline {
    /// One queue, first in first out.
    Fifo,
    /// Flow queues served in turn, each kept short by CoDel.
    #[default]
    FqCodel,
}

impl DefaultText for QueueDiscipline {
    fn text(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

impl DefaultText for ProxyHeader {
    fn text(&self) -> String {
        self.name().to_owned()
    }
}

/// The paths, without settings (a default has none). `--path` takes no list: a default is one
/// path.
impl DefaultText for Vec<PathSpec> {
    fn text(&self) -> String {
        let paths: Vec<&str> = self.iter().map(|p| p.path.as_str()).collect();
        paths.join(",")
    }
}

sw_options! {
    /// The options of `etherws sw`, defined once for its three sources: the command line and the
    /// environment (clap: `--max-frame`, `ETHERWS_MAX_FRAME`) and the configuration file's
    /// `[switch]` table (serde: `max_frame`). `--foreground` and `--config` are not among them.
    ///
    /// Every field is an `Option`, `None` when that source does not give it, so that the sources
    /// can be laid over each other; [`SwOptions::layered`] does it, and fills in the defaults
    /// last, into [`EffectiveOptions`]. clap fills the defaults in when it parses (so that
    /// `--help` shows them), and `layered` tells them from given values by their
    /// [`ValueSource`]. Ranges and the form of paths are checked by the types ([`Num`],
    /// [`HttpPath`]), with the same words whichever the source.
    #[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct SwOptions;

    /// The options `etherws sw` runs with: the command line over the environment over the
    /// configuration file over the defaults ([`SwOptions::layered`]). Each field is the option
    /// of [`SwOptions`] of that name; those without a default are `Option`s:
    ///
    /// - `logconf`, `pidfile`, `htpasswd`, `ctlhtpasswd`: `None`, no such file;
    /// - `sslkey`, `sslcert`, `sslclientca`, `sslcrl` and their `ctl` twins: `None`, no TLS
    ///   (no client certificates, no CRLs);
    /// - `trusted_proxy`, `ctl_trusted_proxy`, `ctlallowhost`: `None`, none (as an empty list);
    /// - `rate_in`, `rate_out`: `None`, no limit but a path's own;
    /// - `host`: `None`, every address;
    /// - `port`: `None`, 443 with TLS (`sslkey`), 80 without;
    /// - `quic_port`: `None`, the port's number.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct EffectiveOptions {
        /// Log debug messages (off otherwise, whatever the log configuration says).
        #[arg(long, env = "ETHERWS_DEBUG", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
        pub(crate) debug: bool = false,
        /// Logging configuration file (TOML: `filter`, `output`; see docs/production.md, "Logging").
        #[arg(long, env = "ETHERWS_LOGCONF", value_name = "FILE")]
        pub(crate) logconf: PathBuf,
        /// Log format: `text`, or `json` (one object per line, for log shippers).
        #[arg(long, env = "ETHERWS_LOG_FORMAT", value_name = "FORMAT")]
        pub(crate) log_format: LogFormat = LogFormat::Text,
        /// Write the switch's process id to this file (removed when it stops); a file naming a
        /// running etherws stops a second one from starting.
        #[arg(long, env = "ETHERWS_PIDFILE", value_name = "FILE")]
        pub(crate) pidfile: PathBuf,
        /// FDB ageout time in seconds.
        #[arg(long, env = "ETHERWS_AGEOUT", value_name = "SECS", allow_negative_numbers = true)]
        pub(crate) ageout: Num<u64, 1> = Num(300),

        /// Ping WebSocket peers idle this many seconds; drop those silent twice as long (0: off).
        #[arg(long, env = "ETHERWS_KEEPALIVE", value_name = "SECS")]
        pub(crate) keepalive: Num<u64> = Num(30),
        /// Longest wait between a client port's reconnection attempts, in seconds.
        #[arg(long, env = "ETHERWS_RECONNECT_MAX", value_name = "SECS")]
        pub(crate) reconnect_max: Num<u64, 1> = Num(60),
        /// Bytes a WebSocket connection's TCP socket may hold unsent (TCP_NOTSENT_LOWAT; 0: the
        /// system's): frames beyond wait in the port's queue, where newer ones are not stuck
        /// behind them in the socket.
        #[arg(long, env = "ETHERWS_NOTSENT_LOWAT", value_name = "BYTES")]
        pub(crate) notsent_lowat: Num<u32, 0, { i32::MAX as u64 }> = Num(DEFAULT_NOTSENT_LOWAT),
        /// TCP congestion control of WebSocket connections, both ways: an algorithm's name
        /// (`bbr`, the default; `cubic`, `reno`) or `system` (the system's default); one the
        /// kernel refuses is logged once and the system's default used.
        #[arg(long, env = "ETHERWS_CONGESTION", value_name = "NAME")]
        pub(crate) congestion: Congestion = DEFAULT_CONGESTION,

        /// Largest frame switched, in bytes (larger ones are dropped and counted).
        #[arg(long, env = "ETHERWS_MAX_FRAME", value_name = "BYTES")]
        pub(crate) max_frame: Num<u32, 64, 65540> = Num(9216),
        /// Most MAC addresses learned in total (more are flooded to, not learned).
        #[arg(long, env = "ETHERWS_MAX_MACS", value_name = "N")]
        pub(crate) max_macs: Num<usize> = Num(65536),
        /// Most MAC addresses learned on one port.
        #[arg(long, env = "ETHERWS_MAX_MACS_PER_PORT", value_name = "N")]
        pub(crate) max_macs_per_port: Num<usize> = Num(4096),
        /// Most MAC addresses learned from one client address, all its WebSocket connections
        /// together (a full table still learns other ports' stations, in place of the biggest
        /// holder's).
        #[arg(long, env = "ETHERWS_MAX_MACS_PER_ADDR", value_name = "N")]
        pub(crate) max_macs_per_addr: Num<usize> = Num(4096),
        /// Loop guard: a port onto which stations move this many times within a second is
        /// blocked for --loop-block seconds (0: off).
        #[arg(long, env = "ETHERWS_LOOP_MOVES", value_name = "N")]
        pub(crate) loop_moves: Num<u32> = Num(100),
        /// How long the loop guard blocks a port, in seconds.
        #[arg(long, env = "ETHERWS_LOOP_BLOCK", value_name = "SECS")]
        pub(crate) loop_block: Num<u64, 1> = Num(30),
        /// Flooded frames (broadcast, multicast, unknown unicast) per second one port may send
        /// (storm control; 0: off).
        #[arg(long, env = "ETHERWS_STORM_PPS", value_name = "PPS")]
        pub(crate) storm_pps: Num<u32> = Num(5000),
        /// Never exchange super-frames: WebSocket peers are not offered them (one MTU-sized
        /// frame per message, as etherws 1.3), and TAP devices are opened without offloads.
        #[arg(long, env = "ETHERWS_STRICT_FRAMES", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
        pub(crate) strict_frames: bool = false,
        /// Threads that move frames and serve connections (0: one per CPU core).
        #[arg(long, env = "ETHERWS_THREADS", value_name = "N")]
        pub(crate) threads: Num<usize, 0, 1024> = Num(0),
        /// Bytes one port's transmit queue may hold (more are dropped and counted).
        #[arg(long, env = "ETHERWS_QUEUE_BYTES", value_name = "BYTES")]
        pub(crate) queue_bytes: Num<usize, 1> = Num(4_194_304),
        /// Bytes all ports' transmit queues together may hold.
        #[arg(long, env = "ETHERWS_QUEUE_BUDGET", value_name = "BYTES")]
        pub(crate) queue_budget: Num<usize, 1> = Num(134_217_728),
        /// Longest a frame may wait in a transmit queue, in milliseconds; later it is dropped
        /// (and counted) instead of delivered late.
        #[arg(long, env = "ETHERWS_QUEUE_DELAY", value_name = "MS")]
        pub(crate) queue_delay: Num<u64, 1> = Num(1000),
        /// How transmit queues toward WebSocket peers order and shed frames: `fq-codel` (flow
        /// queues served in turn, so a ping does not wait behind a bulk transfer, each kept
        /// short by CoDel) or `fifo` (one queue in order). TAP and netdev ports keep `fifo`.
        #[arg(long, env = "ETHERWS_QUEUE_DISCIPLINE", value_name = "DISCIPLINE")]
        pub(crate) queue_discipline: QueueDiscipline = QueueDiscipline::FqCodel,
        /// Most concurrent incoming WebSocket connections.
        #[arg(long, env = "ETHERWS_MAX_CONNS", value_name = "N")]
        pub(crate) max_conns: Num<usize> = Num(4096),
        /// Most concurrent incoming WebSocket connections from one address.
        #[arg(long, env = "ETHERWS_MAX_CONNS_PER_ADDR", value_name = "N")]
        pub(crate) max_conns_per_addr: Num<usize> = Num(64),
        /// Failed authentications after which an address is refused for --auth-window seconds.
        #[arg(long, env = "ETHERWS_AUTH_MAX_FAILURES", value_name = "N")]
        pub(crate) auth_max_failures: Num<u32, 1> = Num(10),
        /// Window of --auth-max-failures, and how long a throttled address is refused, in seconds.
        #[arg(long, env = "ETHERWS_AUTH_WINDOW", value_name = "SECS")]
        pub(crate) auth_window: Num<u64, 1> = Num(60),

        /// A reverse proxy (CIDR or address) whose word about a WebSocket client is taken: its
        /// --proxy-header header, or PROXY header with --proxy-protocol (repeatable;
        /// comma-separated in the environment).
        #[arg(long, env = "ETHERWS_TRUSTED_PROXY", value_name = "CIDR", value_delimiter = ',')]
        pub(crate) trusted_proxy: Vec<String>,
        /// The one header a trusted proxy names the client in; only its rightmost hop that is
        /// not a trusted proxy is taken, and the other two headers are ignored.
        #[arg(long, env = "ETHERWS_PROXY_HEADER", value_name = "HEADER")]
        pub(crate) proxy_header: ProxyHeader = ProxyHeader::XForwardedFor,
        /// Connections from a --trusted-proxy to the WebSocket listener start with a PROXY
        /// protocol header (v1 or v2, HAProxy's send-proxy/send-proxy-v2).
        #[arg(long, env = "ETHERWS_PROXY_PROTOCOL", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
        pub(crate) proxy_protocol: bool = false,

        /// HTTP path to serve WebSocket on, with what its clients' ports start with:
        /// `PATH[=SETTING,…]`, settings `vlan:N`, `isolated`, `mesh`, `rate-in:RATE`,
        /// `rate-out:RATE`, `burst:BYTES`, `htpasswd:FILE` (repeatable: several paths on one
        /// listener, e.g. `--path /lab1=vlan:10 --path /lab2=vlan:20,isolated`; space-separated
        /// in the environment: `ETHERWS_PATH="/lab1=vlan:10 /lab2"`).
        #[arg(long, env = "ETHERWS_PATH", value_name = "PATH[=SETTINGS]")]
        #[serde(default, deserialize_with = "crate::settings::profile::one_or_many")]
        pub(crate) path: Vec<PathSpec> = vec![PathSpec::root()],
        /// Rate limit of the frames each incoming WebSocket connection sends, in bits per
        /// second (`10M`; 0: none); a path's own wins.
        #[arg(long, env = "ETHERWS_RATE_IN", value_name = "RATE")]
        pub(crate) rate_in: BitRate,
        /// Rate limit of the frames sent to each incoming WebSocket connection (bits/s).
        #[arg(long, env = "ETHERWS_RATE_OUT", value_name = "RATE")]
        pub(crate) rate_out: BitRate,
        /// Address to serve WebSocket on (default: all addresses).
        #[arg(long, env = "ETHERWS_HOST")]
        pub(crate) host: String,
        /// Port to serve WebSocket on (default 80, or 443 with TLS; 0: any free port).
        #[arg(long, env = "ETHERWS_PORT")]
        pub(crate) port: Num<u16>,
        /// Also serve HTTP/3 over QUIC (UDP) on --host, for QUIC client ports: the same
        /// paths, certificates, htpasswd and limits as WebSocket (needs --sslkey/--sslcert).
        #[arg(long, env = "ETHERWS_QUIC", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
        pub(crate) quic: bool = false,
        /// UDP port to serve QUIC on (default: the --port number).
        #[arg(long, env = "ETHERWS_QUIC_PORT", value_name = "PORT")]
        pub(crate) quic_port: Num<u16>,
        /// Congestion control of QUIC connections, both ways: `bbr` (keeps its rate through
        /// random loss), `cubic` or `newreno`.
        #[arg(long, env = "ETHERWS_QUIC_CONGESTION", value_name = "NAME")]
        pub(crate) quic_congestion: QuicCongestion = QuicCongestion::Bbr,
        // --htpasswd, --sslkey, --sslcert, --sslclientca, --sslcrl.
        listener_files {
            htpasswd, sslkey, sslcert, sslclientca, sslcrl;
            env: "ETHERWS_", clients: "WebSocket", listener: "WebSocket", on: "wss://",
            mutual: "; mutual TLS", revoked: "client certificates",
        }

        /// HTTP path to serve the control API on.
        #[arg(long, env = "ETHERWS_CTLPATH")]
        pub(crate) ctlpath: HttpPath = HttpPath("/ctl".into()),
        /// Address to serve the control API on.
        #[arg(long, env = "ETHERWS_CTLHOST")]
        pub(crate) ctlhost: String = "127.0.0.1".into(),
        /// Port to serve the control API on (0: any free port).
        #[arg(long, env = "ETHERWS_CTLPORT")]
        pub(crate) ctlport: Num<u16> = Num(7867),
        /// A host name the control API answers to (repeatable; comma-separated in the
        /// environment). Without --ctlhtpasswd, a request whose Host is not an address the
        /// control API listens on, `localhost` (on loopback), the --ctlhost name or one of these
        /// names is refused: that defeats DNS rebinding.
        #[arg(long, env = "ETHERWS_CTLALLOWHOST", value_name = "NAME", value_delimiter = ',')]
        pub(crate) ctlallowhost: Vec<String>,
        /// A reverse proxy (CIDR or address) in front of the control API whose --proxy-header
        /// header (or PROXY header, on a listener shared with --proxy-protocol) names the
        /// client for the control API's throttle and log (repeatable; comma-separated in the
        /// environment). Without it the control API sees the TCP peer, whatever it sends.
        #[arg(long, env = "ETHERWS_CTL_TRUSTED_PROXY", value_name = "CIDR", value_delimiter = ',')]
        pub(crate) ctl_trusted_proxy: Vec<String>,
        // --ctlhtpasswd, --ctlsslkey, --ctlsslcert, --ctlsslclientca, --ctlsslcrl.
        listener_files {
            ctlhtpasswd, ctlsslkey, ctlsslcert, ctlsslclientca, ctlsslcrl;
            env: "ETHERWS_CTL", clients: "control", listener: "the control API",
            on: "the HTTPS control API", mutual: "", revoked: "control clients' certificates",
        }
    }
}

/// `message`, an error about `sw`'s options, with each option whose value came from the
/// environment (as `matches`, `sw`'s, say) named by its variable, which is what the user set:
/// `invalid --trusted-proxy …` becomes `invalid ETHERWS_TRUSTED_PROXY …`.
pub(crate) fn name_environment(message: &str, matches: Option<&ArgMatches>) -> String {
    let mut out = message.to_owned();
    let Some(matches) = matches else {
        return out;
    };
    let cli = Cli::command();
    let Some(sw) = cli.find_subcommand("sw") else {
        return out;
    };
    for arg in sw.get_arguments() {
        let id = arg.get_id().as_str();
        if !matches.ids().any(|i| i.as_str() == id)
            || matches.value_source(id) != Some(ValueSource::EnvVariable)
        {
            continue;
        }
        if let (Some(long), Some(var)) = (arg.get_long(), arg.get_env().and_then(|e| e.to_str())) {
            out = replace_option(&out, &format!("--{long}"), var);
        }
    }
    out
}

/// `text` with the option `flag` (`--path`, not `--path-x`) replaced by `by`.
fn replace_option(text: &str, flag: &str, by: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(flag) {
        let after = &rest[at + flag.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { by } else { flag });
        rest = after;
    }
    out.push_str(rest);
    out
}

impl SwOptions {
    /// The options in force: the command line over the environment over the configuration
    /// file's `[switch]` table (`file`) over the defaults.
    ///
    /// clap has already put the command line over the environment (`env = "ETHERWS_…"`) and
    /// filled in its defaults; `matches` (`sw`'s) says which values are defaults
    /// ([`ArgMatches::value_source`]), and those go under the file instead of over it. Without
    /// `matches`, every value `self` has counts as given.
    pub(crate) fn layered(
        self,
        matches: Option<&ArgMatches>,
        file: SwOptions,
    ) -> Result<EffectiveOptions, clap::Error> {
        let given = match matches {
            Some(matches) => {
                let mut given = matches.clone();
                let defaulted: Vec<String> = matches
                    .ids()
                    .filter(|id| {
                        matches.value_source(id.as_str()) == Some(ValueSource::DefaultValue)
                    })
                    .map(|id| id.as_str().to_owned())
                    .collect();
                for id in defaulted {
                    // The id comes from these very matches: it cannot be unknown.
                    let _ = given.try_clear_id(&id);
                }
                SwOptions::from_arg_matches(&given)?
            }
            None => self,
        };
        Ok(given.over(file))
    }

    /// The defaults as clap fills them in: what it makes of an empty command line, the
    /// environment aside. Options without a default (`--port`: 80 or 443, `--host`: every
    /// address) stay `None`.
    #[cfg(test)]
    pub(crate) fn defaults() -> Result<SwOptions, clap::Error> {
        let cmd = SwOptions::augment_args(clap::Command::new("sw")).mut_args(|a| a.env(None));
        SwOptions::from_arg_matches(&cmd.try_get_matches_from(["sw"])?)
    }
}

impl Default for EffectiveOptions {
    /// Every option at its default: what `etherws sw` runs with when given nothing.
    fn default() -> Self {
        SwOptions::default().over(SwOptions::default())
    }
}

#[derive(Debug, Args)]
pub(crate) struct CtlArgs {
    /// URL of the control API.
    #[arg(long, default_value = "http://127.0.0.1:7867/ctl")]
    pub(crate) ctlurl: String,
    /// User name for the control API (prompts for the password if --ctlpasswd is not given).
    #[arg(long)]
    pub(crate) ctluser: Option<String>,
    /// Password for the control API.
    #[arg(long)]
    pub(crate) ctlpasswd: Option<String>,
    /// CA certificate to verify the control API's certificate with (or that very certificate).
    #[arg(long, value_name = "FILE")]
    pub(crate) ctlsslcert: Option<PathBuf>,
    /// Do not verify the control API's certificate.
    #[arg(long)]
    pub(crate) ctlinsecure: bool,
    /// Client certificate (PEM) for a control API that requires one.
    #[arg(long, value_name = "FILE", requires = "ctlkey")]
    pub(crate) ctlcert: Option<PathBuf>,
    /// Private key (PEM) of --ctlcert.
    #[arg(long, value_name = "FILE", requires = "ctlcert")]
    pub(crate) ctlkey: Option<PathBuf>,
    /// Print the JSON-RPC result as the switch sent it (one JSON document: `{"entries": […]}`),
    /// or `{"error": {code, message, data}}`, instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CtlCommand {
    /// Create and add a port.
    Addport {
        #[command(subcommand)]
        kind: AddPort,
    },
    /// Set a port's configuration.
    Setport(SetPort),
    /// Delete a port.
    Delport {
        /// Port number.
        #[arg(allow_negative_numbers = true)]
        port: i64,
    },
    /// Show the port list.
    Listport {
        /// More columns: VLAN, user, path, isolation/mesh flags, mirror, rate limits, drops.
        #[arg(long, short = 'l')]
        verbose: bool,
    },
    /// Set an interface's configuration (tap and netdev ports).
    Setif {
        /// Port number.
        #[arg(allow_negative_numbers = true)]
        port: i64,
        /// IPv4 address.
        #[arg(long)]
        address: Option<String>,
        /// IPv4 netmask.
        #[arg(long)]
        netmask: Option<String>,
        /// MTU (576 or more).
        #[arg(long, allow_negative_numbers = true)]
        mtu: Option<i64>,
    },
    /// Show the interface list.
    Listif,
    /// Show the forwarding database.
    Listfdb,
    /// Re-read the switch's configuration file and the files it names, and apply the
    /// difference (as SIGHUP does); prints what changed, or fails with why nothing did.
    Reload,
}

// `ctl setport`'s arguments (the variant's doc comment is its help).
#[derive(Debug, Args)]
pub(crate) struct SetPort {
    /// Port number.
    #[arg(allow_negative_numbers = true)]
    pub(crate) port: i64,
    /// Shut the port down (1) or bring it back (0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) shut: Option<u8>,
    /// Make it an access port of this VLAN (1-4094): untagged frames in belong to it,
    /// frames out leave untagged, tagged frames in are dropped; 0: a trunk again.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=4094))]
    pub(crate) vlan: Option<u16>,
    /// Isolate the port (1): it exchanges frames only with ports that are not isolated.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) isolated: Option<u8>,
    /// Mark the port a mesh link (1): frames from one mesh port never leave by another.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) mesh: Option<u8>,
    /// Copy every frame into and out of the port to port M (0: stop).
    #[arg(long, value_name = "M")]
    pub(crate) mirror: Option<u32>,
    /// Limit the frames received from the port, in bits per second (`10M`; 0: none).
    #[arg(long, value_name = "RATE")]
    pub(crate) rate_in: Option<BitRate>,
    /// Limit the frames sent out of the port, in bits per second (0: none).
    #[arg(long, value_name = "RATE")]
    pub(crate) rate_out: Option<BitRate>,
    /// Burst of the rate limits, in bytes (0: a quarter of a second's worth, at least 128 KiB).
    #[arg(long, value_name = "BYTES")]
    pub(crate) burst: Option<u64>,
    /// Trust the port's stations (1 or true) or not (0 or false): an untrusted port takes over
    /// no other port's station and sends no DHCP server messages, router advertisements or
    /// ARP/ND for addresses it does not hold. Default: untrusted if isolated.
    #[arg(long, value_name = "BOOL", value_parser = parse_flag)]
    pub(crate) trusted: Option<bool>,
    /// The port's own limit on its stations (0: none of its own; untrusted ports have 4
    /// unless told otherwise).
    #[arg(long, value_name = "M")]
    pub(crate) max_macs: Option<u32>,
}

/// `1`, `0`, `true` or `false`.
fn parse_flag(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("must be true or false (or 1 or 0), not {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AddPort {
    /// An existing network device.
    Netdev {
        /// Device name.
        target: String,
        /// Offload with eBPF, in-kernel forwarding between offloaded ports: `xdp` (XDP
        /// program + AF_XDP sockets), `tc` (TC program + the packet socket: keeps GSO
        /// super-frames whole), or `auto` (the default: the switch chooses). Falls back to
        /// AF_PACKET, with the reason logged, where the program cannot serve. Needs a build
        /// with the eBPF object (`cargo xtask build-ebpf`).
        #[arg(long, value_name = "PROGRAM", num_args = 0..=1, require_equals = true,
              default_missing_value = "auto", value_parser = ["auto", "xdp", "tc"])]
        offload: Option<String>,
        /// XDP attach mode for --offload: auto (native, else generic), native or generic.
        #[arg(long, value_name = "MODE", requires = "offload", value_parser = ["auto", "native", "generic"])]
        xdp_mode: Option<String>,
    },
    /// A TAP device (created if it does not exist).
    Tap {
        /// Device name.
        target: String,
    },
    /// A WebSocket client connection.
    Client {
        /// URL to connect to (ws:// or wss://).
        target: String,
        /// User name for the server (prompts for the password if --passwd is not given).
        #[arg(long)]
        user: Option<String>,
        /// Password for the server.
        #[arg(long)]
        passwd: Option<String>,
        /// CA certificate file to verify the server with (or the server's very certificate).
        #[arg(long, value_name = "FILE")]
        cacerts: Option<PathBuf>,
        /// Do not verify the server's certificate.
        #[arg(long)]
        insecure: bool,
        /// Client certificate (PEM) for a server that requires one (read by the switch).
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// Private key (PEM) of --cert (read by the switch).
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// A mesh link: frames from it never leave by another mesh port (split horizon).
        #[arg(long)]
        mesh: bool,
        /// How to reach the server: `ws` (WebSocket, the default) or `quic` (HTTP/3
        /// datagrams over UDP to the URL's port; wss:// only).
        #[arg(long, value_name = "TRANSPORT", value_parser = Transport::parse)]
        transport: Option<Transport>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `sw`'s matches for `args`.
    fn sw(args: &[&str]) -> ArgMatches {
        let argv = ["etherws", "sw"].iter().chain(args);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        matches.subcommand_matches("sw").unwrap().clone()
    }

    fn layered(args: &[&str], file: SwOptions) -> EffectiveOptions {
        let matches = sw(args);
        let given = SwOptions::from_arg_matches(&matches).unwrap();
        given.layered(Some(&matches), file).unwrap()
    }

    #[test]
    fn an_option_from_the_environment_is_named_by_its_variable() {
        assert_eq!(
            replace_option(
                "--max-macs or --max-macs-per-port, not --max-macs",
                "--max-macs",
                "ETHERWS_MAX_MACS"
            ),
            "ETHERWS_MAX_MACS or --max-macs-per-port, not ETHERWS_MAX_MACS"
        );
        // Nothing from the environment: the message as it was.
        let m = sw(&["--trusted-proxy", "x"]);
        assert_eq!(
            name_environment("invalid --trusted-proxy \"x\"", Some(&m)),
            "invalid --trusted-proxy \"x\""
        );
    }

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_has_its_environment_variable() {
        let cmd = SwOptions::augment_args(clap::Command::new("sw"));
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()));
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(format!("ETHERWS_{}", id.to_uppercase()).as_str()));
        }
    }

    #[test]
    fn defaults() {
        let d = SwOptions::defaults().unwrap();
        assert_eq!(d.ageout, Some(Num(300)));
        assert_eq!(d.keepalive, Some(Num(30)));
        assert_eq!(d.max_frame, Some(Num(9216)));
        assert_eq!(d.path, Some(vec!["/".parse().unwrap()]));
        assert_eq!(d.ctlhost.as_deref(), Some("127.0.0.1"));
        assert_eq!(d.ctlport, Some(Num(7867)));
        assert_eq!((d.debug, d.proxy_protocol), (Some(false), Some(false)));
        // Options whose default depends on others, or is "none".
        assert_eq!((&d.host, d.port, &d.logconf), (&None, None, &None));
        assert_eq!((&d.trusted_proxy, &d.ctlallowhost), (&None, &None));
        assert_eq!(d.ctl_trusted_proxy, None);
        assert_eq!(d.proxy_header, Some(ProxyHeader::XForwardedFor));
        // `--help` shows them.
        let help = Cli::command()
            .find_subcommand_mut("sw")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 300]"), "{help}");
        assert!(help.contains("[env: ETHERWS_AGEOUT="), "{help}");
        assert!(help.contains("[default: x-forwarded-for]"), "{help}");
        assert!(help.contains("- x-real-ip:"), "{help}");
    }

    #[test]
    fn notsent_lowat_and_congestion() {
        let o = layered(&[], SwOptions::default());
        assert_eq!(o.notsent_lowat, Num(128 * 1024));
        assert_eq!(o.congestion.name(), Some("bbr"));
        assert_eq!(
            (o.notsent_lowat.0, o.congestion),
            (DEFAULT_NOTSENT_LOWAT, DEFAULT_CONGESTION)
        );
        let file = SwOptions {
            notsent_lowat: Some(Num(0)),
            congestion: Some("reno".parse().unwrap()),
            ..SwOptions::default()
        };
        let o = layered(&[], file.clone());
        assert_eq!(
            (o.notsent_lowat, o.congestion.name()),
            (Num(0), Some("reno"))
        );
        let o = layered(
            &["--congestion", "cubic", "--notsent-lowat", "65536"],
            file.clone(),
        );
        assert_eq!(
            (o.notsent_lowat, o.congestion.name()),
            (Num(65536), Some("cubic"))
        );
        // `system` given on the command line wins over the file's algorithm.
        let o = layered(&["--congestion", "system"], file);
        assert_eq!(o.congestion, Congestion::SYSTEM);
        for (args, want) in [
            (
                &["--congestion", "bb r"][..],
                "invalid value 'bb r' for '--congestion <NAME>': must be `system` or an algorithm's name",
            ),
            (
                &["--congestion", "a_very_long_name"],
                "1 to 15 letters, digits, `_` or `-`), not \"a_very_long_name\"",
            ),
            (
                &["--notsent-lowat", "2147483648"],
                "for '--notsent-lowat <BYTES>': must be from 0 to 2147483647, not 2147483648",
            ),
        ] {
            let argv = ["etherws", "sw"].iter().chain(args);
            let e = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let help = Cli::command()
            .find_subcommand_mut("sw")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--congestion <NAME>"), "{help}");
        assert!(help.contains("[default: bbr]"), "{help}");
        assert!(help.contains("[env: ETHERWS_NOTSENT_LOWAT="), "{help}");
        assert!(help.contains("[default: 131072]"), "{help}");
    }

    #[test]
    fn proxy_header_and_ctl_trusted_proxy() {
        let file = SwOptions {
            proxy_header: Some(ProxyHeader::Forwarded),
            ..SwOptions::default()
        };
        let o = layered(&[], file.clone());
        assert_eq!(o.proxy_header, ProxyHeader::Forwarded);
        let o = layered(&["--proxy-header", "x-real-ip"], file);
        assert_eq!(o.proxy_header, ProxyHeader::XRealIp);
        let o = layered(
            &["--ctl-trusted-proxy", "192.0.2.1,192.0.2.2"],
            SwOptions::default(),
        );
        let want = vec!["192.0.2.1".to_string(), "192.0.2.2".to_string()];
        assert_eq!(o.ctl_trusted_proxy, Some(want));
        let e = Cli::try_parse_from(["etherws", "sw", "--proxy-header", "x-forwarded"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid value 'x-forwarded' for '--proxy-header"),
            "{e}"
        );
        assert!(e.contains("x-forwarded-for, forwarded, x-real-ip"), "{e}");
        let e = toml::from_str::<SwOptions>("proxy_header = \"X-Forwarded\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `X-Forwarded`"), "{e}");
    }

    #[test]
    fn command_line_over_file_over_defaults() {
        let file = SwOptions {
            ageout: Some(Num(7)),
            keepalive: Some(Num(9)),
            ctlport: Some(Num(7000)),
            debug: Some(true),
            trusted_proxy: Some(vec!["10.0.0.0/8".into()]),
            ..SwOptions::default()
        };
        let o = layered(&["--ageout", "5", "--ctlport", "7867"], file.clone());
        assert_eq!(o.ageout, Num(5));
        // Given on the command line, even if it is the default.
        assert_eq!(o.ctlport, Num(7867));
        assert_eq!(o.keepalive, Num(9));
        assert!(o.debug);
        assert_eq!(o.trusted_proxy, Some(vec!["10.0.0.0/8".to_string()]));
        assert_eq!(o.max_frame, Num(9216));
        assert_eq!(o.port, None);
        // A list on the command line replaces the file's.
        let o = layered(&["--trusted-proxy", "192.0.2.1,192.0.2.2"], file.clone());
        let want = vec!["192.0.2.1".to_string(), "192.0.2.2".to_string()];
        assert_eq!(o.trusted_proxy, Some(want));
        let o = layered(&["--proxy-protocol"], SwOptions::default());
        assert_eq!((o.proxy_protocol, o.debug), (true, false));
        // Without matches, what `self` holds counts as given.
        let given = SwOptions {
            ageout: Some(Num(1)),
            ..SwOptions::default()
        };
        let o = given.layered(None, file).unwrap();
        assert_eq!((o.ageout, o.keepalive), (Num(1), Num(9)));
    }

    #[test]
    fn environment_over_file() {
        // An environment variable that is surely set stands in for ETHERWS_HOST.
        let Some(value) = std::env::var("PATH").ok().filter(|v| !v.is_empty()) else {
            return;
        };
        let cmd =
            SwOptions::augment_args(clap::Command::new("sw")).mut_arg("host", |a| a.env("PATH"));
        let file = SwOptions {
            host: Some("file".into()),
            ..SwOptions::default()
        };
        let layer = |argv: &[&str]| {
            let m = cmd.clone().try_get_matches_from(argv).unwrap();
            let given = SwOptions::from_arg_matches(&m).unwrap();
            given.layered(Some(&m), file.clone()).unwrap().host
        };
        assert_eq!(layer(&["sw"]), Some(value));
        assert_eq!(layer(&["sw", "--host", "cli"]), Some("cli".into()));
    }

    #[test]
    fn command_line_over_environment_over_file_over_defaults() {
        // An environment variable that is surely set stands in for ETHERWS_CTLHOST, an option
        // with a default.
        let Some(value) = std::env::var("PATH").ok().filter(|v| !v.is_empty()) else {
            return;
        };
        let layer = |env: bool, argv: &[&str], file: SwOptions| {
            let cmd = SwOptions::augment_args(clap::Command::new("sw"))
                .mut_args(|a| a.env(None))
                .mut_arg("ctlhost", |a| if env { a.env("PATH") } else { a });
            let m = cmd.try_get_matches_from(argv).unwrap();
            let given = SwOptions::from_arg_matches(&m).unwrap();
            given.layered(Some(&m), file).unwrap().ctlhost
        };
        let file = SwOptions {
            ctlhost: Some("file".into()),
            ..SwOptions::default()
        };
        let cli = ["sw", "--ctlhost", "cli"];
        assert_eq!(layer(true, &cli, file.clone()), "cli");
        assert_eq!(layer(true, &["sw"], file.clone()), value);
        assert_eq!(layer(false, &["sw"], file), "file");
        assert_eq!(layer(false, &["sw"], SwOptions::default()), "127.0.0.1");
    }

    #[test]
    fn clap_fills_in_the_same_defaults() {
        // The default texts `--help` shows read back as the defaults `over` fills in.
        let clap = SwOptions::defaults().unwrap().over(SwOptions::default());
        assert_eq!(clap, EffectiveOptions::default());
        let o = EffectiveOptions::default();
        assert_eq!(
            (o.ageout, o.queue_bytes, o.threads),
            (Num(300), Num(4_194_304), Num(0))
        );
        assert_eq!(
            (o.log_format, o.path),
            (LogFormat::Text, vec![PathSpec::root()])
        );
        assert_eq!(
            (o.ctlpath.0.as_str(), o.ctlhost.as_str()),
            ("/ctl", "127.0.0.1")
        );
        assert_eq!((o.host, o.port, o.sslkey), (None, None, None));
    }

    #[test]
    fn numbers_and_paths() {
        type Secs = Num<u64, 1>;
        assert_eq!("5".parse::<Secs>(), Ok(Num(5)));
        assert_eq!(
            "0".parse::<Secs>().unwrap_err(),
            "must be at least 1, not 0"
        );
        assert_eq!(
            "-5".parse::<Secs>().unwrap_err(),
            "must be at least 1, not -5"
        );
        assert_eq!("x".parse::<Secs>().unwrap_err(), "must be an integer");
        assert_eq!(
            "65536".parse::<Num<u16>>().unwrap_err(),
            "must be from 0 to 65535, not 65536"
        );
        assert_eq!(
            "63".parse::<Num<u32, 64, 65540>>().unwrap_err(),
            "must be from 64 to 65540, not 63"
        );
        assert_eq!(
            "18446744073709551616".parse::<Num<u64>>().unwrap_err(),
            "must be at least 0, not 18446744073709551616"
        );
        assert_eq!("/ws".parse(), Ok(HttpPath("/ws".into())));
        assert_eq!(
            "ws".parse::<HttpPath>().unwrap_err(),
            "must start with '/', not \"ws\""
        );
        let mut o = SwOptions {
            sslkey: Some("k".into()),
            ctlsslcrl: Some("c".into()),
            host: Some("h".into()),
            ..SwOptions::default()
        };
        let keys: Vec<_> = o.paths_mut().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["sslkey", "ctlsslcrl"]);
    }
}
