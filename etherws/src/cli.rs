//! The command line: `etherws sw` and `etherws ctl`, with etherws 1.3's options and defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "etherws",
    version,
    about = "Ethernet over WebSocket software switch"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the virtual switch.
    Sw(Box<SwArgs>),
    /// Control a virtual switch.
    Ctl(Box<CtlArgs>),
}

#[derive(Debug, Args)]
pub struct SwArgs {
    /// Log debug messages (off otherwise, whatever the log configuration says).
    #[arg(long)]
    pub debug: bool,
    /// Logging configuration file (TOML: `filter`, `output`; see README).
    #[arg(long, value_name = "FILE")]
    pub logconf: Option<PathBuf>,
    /// Stay in the foreground instead of daemonizing.
    #[arg(long)]
    pub foreground: bool,
    /// Configuration file (TOML): switch settings and the ports to create at start. Options
    /// given on the command line override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// FDB ageout time in seconds.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true)]
    pub ageout: i64,

    /// Ping WebSocket peers idle this many seconds; drop those silent twice as long (0: off).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub keepalive: u64,
    /// Longest wait between a client port's reconnection attempts, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_max: u64,

    /// Largest frame switched, in bytes (larger ones are dropped and counted).
    #[arg(long, default_value_t = 9216, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(64..=65540))]
    pub max_frame: u32,
    /// Most MAC addresses learned in total (more are flooded to, not learned).
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub max_macs: usize,
    /// Most MAC addresses learned on one port.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_macs_per_port: usize,
    /// Most MAC addresses learned from one client address, all its WebSocket connections
    /// together (a full table still learns other ports' stations, in place of the biggest
    /// holder's).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_macs_per_addr: usize,
    /// Loop guard: a port onto which stations move this many times within a second is
    /// blocked for --loop-block seconds (0: off).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub loop_moves: u32,
    /// How long the loop guard blocks a port, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub loop_block: u64,
    /// Broadcast/multicast frames per second one port may send (storm control; 0: off).
    #[arg(long, default_value_t = 5000, value_name = "PPS")]
    pub storm_pps: u32,
    /// Most concurrent incoming WebSocket connections.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_conns: usize,
    /// Most concurrent incoming WebSocket connections from one address.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_conns_per_addr: usize,
    /// Failed authentications after which an address is refused for --auth-window seconds.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_max_failures: u32,
    /// Window of --auth-max-failures, and how long a throttled address is refused, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_window: u64,

    /// A reverse proxy (CIDR or address) whose word about the client is taken: its
    /// `Forwarded`/`X-Forwarded-For` header, or PROXY header with --proxy-protocol (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub trusted_proxy: Vec<String>,
    /// Connections from a --trusted-proxy to the WebSocket listener start with a PROXY
    /// protocol header (v1 or v2, HAProxy's send-proxy/send-proxy-v2).
    #[arg(long)]
    pub proxy_protocol: bool,

    /// HTTP path to serve WebSocket on.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Address to serve WebSocket on (default: all addresses).
    #[arg(long, default_value = "")]
    pub host: String,
    /// Port to serve WebSocket on (default 80, or 443 with TLS).
    #[arg(long)]
    pub port: Option<u16>,
    /// htpasswd file to authenticate WebSocket clients with.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// TLS private key for WebSocket (PEM).
    #[arg(long, value_name = "FILE")]
    pub sslkey: Option<PathBuf>,
    /// TLS certificate (chain) for WebSocket (PEM).
    #[arg(long, value_name = "FILE")]
    pub sslcert: Option<PathBuf>,
    /// Require a client certificate on wss:// issued by a CA of this file (PEM; mutual TLS).
    #[arg(long, value_name = "FILE")]
    pub sslclientca: Option<PathBuf>,
    /// Refuse client certificates revoked by these CRLs (PEM; needs --sslclientca).
    #[arg(long, value_name = "FILE")]
    pub sslcrl: Option<PathBuf>,

    /// HTTP path to serve the control API on.
    #[arg(long, default_value = "/ctl")]
    pub ctlpath: String,
    /// Address to serve the control API on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ctlhost: String,
    /// Port to serve the control API on.
    #[arg(long, default_value_t = 7867)]
    pub ctlport: u16,
    /// A host name the control API answers to (repeatable). Without --ctlhtpasswd, a request
    /// whose Host is not an address the control API listens on, `localhost` (on loopback), the
    /// --ctlhost name or one of these names is refused: that defeats DNS rebinding.
    #[arg(long, value_name = "NAME")]
    pub ctlallowhost: Vec<String>,
    /// htpasswd file to authenticate control clients with.
    #[arg(long, value_name = "FILE")]
    pub ctlhtpasswd: Option<PathBuf>,
    /// TLS private key for the control API (PEM).
    #[arg(long, value_name = "FILE")]
    pub ctlsslkey: Option<PathBuf>,
    /// TLS certificate (chain) for the control API (PEM).
    #[arg(long, value_name = "FILE")]
    pub ctlsslcert: Option<PathBuf>,
    /// Require a client certificate on the HTTPS control API issued by a CA of this file (PEM).
    #[arg(long, value_name = "FILE")]
    pub ctlsslclientca: Option<PathBuf>,
    /// Refuse control clients' certificates revoked by these CRLs (PEM; needs --ctlsslclientca).
    #[arg(long, value_name = "FILE")]
    pub ctlsslcrl: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// URL of the control API.
    #[arg(long, default_value = "http://127.0.0.1:7867/ctl")]
    pub ctlurl: String,
    /// User name for the control API (prompts for the password if --ctlpasswd is not given).
    #[arg(long)]
    pub ctluser: Option<String>,
    /// Password for the control API.
    #[arg(long)]
    pub ctlpasswd: Option<String>,
    /// CA certificate to verify the control API's certificate with (or that very certificate).
    #[arg(long, value_name = "FILE")]
    pub ctlsslcert: Option<PathBuf>,
    /// Do not verify the control API's certificate.
    #[arg(long)]
    pub ctlinsecure: bool,
    /// Client certificate (PEM) for a control API that requires one.
    #[arg(long, value_name = "FILE", requires = "ctlkey")]
    pub ctlcert: Option<PathBuf>,
    /// Private key (PEM) of --ctlcert.
    #[arg(long, value_name = "FILE", requires = "ctlcert")]
    pub ctlkey: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Create and add a port.
    Addport {
        #[command(subcommand)]
        kind: AddPort,
    },
    /// Set a port's configuration.
    Setport {
        /// Port number.
        #[arg(allow_negative_numbers = true)]
        port: i64,
        /// Shut the port down (1) or bring it back (0).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
        shut: Option<u8>,
    },
    /// Delete a port.
    Delport {
        /// Port number.
        #[arg(allow_negative_numbers = true)]
        port: i64,
    },
    /// Show the port list.
    Listport,
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
}

#[derive(Debug, Subcommand)]
pub enum AddPort {
    /// An existing network device.
    Netdev {
        /// Device name.
        target: String,
        /// Offload with eBPF: XDP program + AF_XDP sockets, in-kernel forwarding between
        /// offloaded ports (falls back to AF_PACKET, with the reason logged, where XDP cannot
        /// serve). Needs a build with the XDP object (`cargo xtask build-ebpf`).
        #[arg(long)]
        offload: bool,
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
    },
}
