//! `etherws sw`: check the options, bind the listeners, daemonize, run the switch.
//!
//! Everything that can fail because of what the user typed — options, the log file, binding
//! the ports — happens before daemonizing, so the error reaches the terminal. The tokio
//! runtime starts only after the fork (a forked multi-threaded runtime would be broken).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use socket2::{Domain, Socket, Type};

use crate::edge::admission::{AuthLimits, ConnLimits};
use clap::ArgMatches;

use crate::app::cli::{EffectiveOptions, QueueDiscipline, SwArgs, SwOptions};
use crate::app::config::{Config, PortConf};
use crate::app::daemon;
use crate::app::logging::{self, LogConf};
use crate::base::escape::Esc;
use crate::base::tls::ClientAuth;
use crate::control::Control;
use crate::control::guard::{Guard, allowed_host};
use crate::edge::auth::Auth;
use crate::edge::forwarded::TrustedProxies;
use crate::edge::htpasswd::Htpasswd;
use crate::edge::live::{LiveWs, Swap, TlsCell, WsPath};
use crate::edge::quic::QuicSide;
use crate::edge::server::{self, Listening, WsSide};
use crate::port::websocket::WsSettings;
use crate::port::websocket::tcp::TcpTuning;
use crate::port::websocket::{ClientOptions, Credentials};
use crate::port::{Core, Discipline, QueueLimits, SharedSwitch, expire_loop, lock};
use crate::settings::profile::{self, PathSpec, Profile, UserPin};
use crate::settings::values::Num;
use crate::switch::PortStat;
use crate::switch::fdb::{MacLimits, PortNo};
use crate::switch::{Limits, Switch};
use crate::sys;
use crate::sys::netif::{IfChange, Netif};
use crate::sys::process::Limit;

mod reload;

/// Validated `sw` settings, with TLS configurations and htpasswd files loaded.
pub(crate) struct Settings {
    pub(crate) ageout: Duration,
    pub(crate) ws: WsSettings,
    pub(crate) limits: Limits,
    pub(crate) queues: QueueLimits,
    pub(crate) conns: ConnLimits,
    pub(crate) auth: AuthLimits,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) ctltls: Option<Arc<rustls::ServerConfig>>,
    /// How the WebSocket listener checks client certificates (mutual TLS), if it does.
    pub(crate) client_auth: Option<ClientAuth>,
    pub(crate) htpasswd: Option<Arc<Htpasswd>>,
    pub(crate) ctlhtpasswd: Option<Arc<Htpasswd>>,
    /// The WebSocket paths, each with its settings; the first is the main one.
    pub(crate) paths: Vec<WsPath>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) ctlpath: String,
    pub(crate) ctlhost: String,
    pub(crate) ctlport: u16,
    /// Host names the control API answers to besides its addresses (`--ctlhost` included).
    pub(crate) ctlallowhost: Vec<String>,
    /// Reverse proxies whose forwarding headers name a WebSocket client.
    pub(crate) trusted_proxies: Arc<TrustedProxies>,
    /// Reverse proxies whose forwarding headers name a control client (none by default).
    pub(crate) ctl_trusted_proxies: Arc<TrustedProxies>,
    /// The WebSocket listener reads a PROXY protocol header from trusted proxies.
    pub(crate) proxy_protocol: bool,
    /// The UDP port to serve QUIC on (`--quic`), if any.
    pub(crate) quic: Option<u16>,
}

/// The UDP port of `--quic`: `--quic-port`, else `--port`'s number; QUIC has no form without
/// TLS, so it needs `--sslkey`/`--sslcert`.
fn quic_port(o: &EffectiveOptions, tls: bool) -> anyhow::Result<Option<u16>> {
    if !o.quic {
        return Ok(None);
    }
    if !tls {
        bail!("--quic needs --sslkey and --sslcert: QUIC is always encrypted");
    }
    Ok(Some(o.quic_port.or(o.port).map_or(443, |p| p.0)))
}

fn absolute(p: &Option<PathBuf>, what: &str) -> anyhow::Result<Option<PathBuf>> {
    p.as_ref()
        .map(|p| {
            std::fs::canonicalize(p).with_context(|| format!("cannot read {what} {}", p.display()))
        })
        .transpose()
}

/// Turns the options in force ([`SwOptions::layered`]) into settings, with etherws 1.3's
/// rules. Ranges and the form of the HTTP paths were checked when the options were read
/// ([`crate::settings::values::Num`], [`crate::settings::values::HttpPath`]).
pub(crate) fn settings(o: &EffectiveOptions) -> anyhow::Result<Settings> {
    let [ws_tls, ctl_tls] = ListenerTls::both(o)?;
    // What every server port starts with, under its path's own settings.
    let defaults = Profile {
        rate_in: o.rate_in,
        rate_out: o.rate_out,
        ..Profile::default()
    };
    let s = Settings {
        ageout: Duration::from_secs(o.ageout.0),
        ws: WsSettings {
            keepalive: (o.keepalive.0 > 0).then(|| Duration::from_secs(o.keepalive.0)),
            reconnect_max: Duration::from_secs(o.reconnect_max.0),
            super_frames: !o.strict_frames,
            tcp: TcpTuning {
                notsent_lowat: o.notsent_lowat.0,
                congestion: o.congestion,
            },
            quic_congestion: o.quic_congestion,
        },
        limits: limits(o),
        queues: QueueLimits {
            bytes: o.queue_bytes.0,
            budget: o.queue_budget.0,
            delay: Duration::from_millis(o.queue_delay.0),
            discipline: match o.queue_discipline {
                QueueDiscipline::Fifo => Discipline::Fifo,
                QueueDiscipline::FqCodel => Discipline::FqCodel,
            },
        },
        conns: ConnLimits {
            total: o.max_conns.0,
            per_addr: o.max_conns_per_addr.0,
        },
        auth: AuthLimits {
            max_failures: o.auth_max_failures.0,
            window: Duration::from_secs(o.auth_window.0),
        },
        tls: ws_tls.server_config()?,
        ctltls: ctl_tls.server_config()?,
        client_auth: ws_tls.auth.clone(),
        htpasswd: load_htpasswd(&o.htpasswd, "htpasswd")?,
        ctlhtpasswd: load_htpasswd(&o.ctlhtpasswd, "ctlhtpasswd")?,
        paths: ws_paths(&o.path, &defaults)?,
        host: o.host.clone().unwrap_or_default(),
        port: o
            .port
            .map_or(if ws_tls.pair.is_some() { 443 } else { 80 }, |p| p.0),
        ctlpath: o.ctlpath.0.clone(),
        ctlhost: o.ctlhost.clone(),
        ctlport: o.ctlport.0,
        ctlallowhost: allowed_hosts(o),
        trusted_proxies: Arc::new(TrustedProxies::parse(
            "trusted-proxy",
            o.trusted_proxy.as_deref().unwrap_or_default(),
            o.proxy_header,
        )?),
        ctl_trusted_proxies: Arc::new(TrustedProxies::parse(
            "ctl-trusted-proxy",
            o.ctl_trusted_proxy.as_deref().unwrap_or_default(),
            o.proxy_header,
        )?),
        proxy_protocol: o.proxy_protocol,
        quic: quic_port(o, ws_tls.pair.is_some())?,
    };
    s.check(&ws_tls, &ctl_tls)?;
    Ok(s)
}

/// The switch's limits: MAC addresses learned, storms, loops, frame size.
fn limits(o: &EffectiveOptions) -> Limits {
    Limits {
        macs: MacLimits {
            per_port: o.max_macs_per_port.0,
            per_addr: o.max_macs_per_addr.0,
            total: o.max_macs.0,
        },
        storm_pps: o.storm_pps.0,
        loop_moves: o.loop_moves.0,
        loop_block: Duration::from_secs(o.loop_block.0),
        max_frame: o.max_frame.0 as usize,
    }
}

/// Host names the control API answers to besides its addresses: `--ctlallowhost`, and
/// `--ctlhost` unless it is every address.
fn allowed_hosts(o: &EffectiveOptions) -> Vec<String> {
    o.ctlallowhost
        .iter()
        .flatten()
        .chain((!o.ctlhost.is_empty()).then_some(&o.ctlhost))
        .map(|h| allowed_host(h))
        .collect()
}

/// An htpasswd file, loaded; `what` names it in errors.
fn load_htpasswd(file: &Option<PathBuf>, what: &str) -> anyhow::Result<LoadedHtpasswd> {
    absolute(file, what)?
        .map(|p| Htpasswd::open(p).map(Arc::new))
        .transpose()
}

/// The TLS options of one listener (WebSocket or control): its key, certificate, client CA
/// and CRL files, and their names for messages.
struct TlsOptions<'a> {
    files: [&'a Option<PathBuf>; 4],
    names: [&'static str; 4],
}

/// What one listener's TLS options say, checked: its key and certificate (absolute), and how
/// it checks client certificates.
struct ListenerTls {
    pair: Option<(PathBuf, PathBuf)>,
    auth: Option<ClientAuth>,
}

impl ListenerTls {
    /// The WebSocket listener's and the control listener's. Keys and certificates of both are
    /// checked before client certificates, so that the first error told is the same as ever.
    fn both(o: &EffectiveOptions) -> anyhow::Result<[ListenerTls; 2]> {
        let ws = TlsOptions {
            files: [&o.sslkey, &o.sslcert, &o.sslclientca, &o.sslcrl],
            names: ["sslkey", "sslcert", "sslclientca", "sslcrl"],
        };
        let ctl = TlsOptions {
            files: [&o.ctlsslkey, &o.ctlsslcert, &o.ctlsslclientca, &o.ctlsslcrl],
            names: ["ctlsslkey", "ctlsslcert", "ctlsslclientca", "ctlsslcrl"],
        };
        let (ws_pair, ctl_pair) = (ListenerTls::pair(&ws), ListenerTls::pair(&ctl));
        let (ws_pair, ctl_pair) = (ws_pair?, ctl_pair?);
        let ws_auth = ListenerTls::client_auth(&ws, &ws_pair)?;
        let ctl_auth = ListenerTls::client_auth(&ctl, &ctl_pair)?;
        Ok([(ws_pair, ws_auth), (ctl_pair, ctl_auth)]
            .map(|(pair, auth)| ListenerTls { pair, auth }))
    }

    /// A key and its certificate, or neither.
    fn pair(o: &TlsOptions<'_>) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        let ([key, cert, ..], [kn, cn, ..]) = (o.files, o.names);
        match (absolute(key, kn)?, absolute(cert, cn)?) {
            (Some(k), Some(c)) => Ok(Some((k, c))),
            (None, None) => Ok(None),
            _ => bail!("Both --{kn} and --{cn} are required"),
        }
    }

    /// Client certificates (mutual TLS): a CA file, and optionally CRLs, for a TLS listener.
    fn client_auth(
        o: &TlsOptions<'_>,
        pair: &Option<(PathBuf, PathBuf)>,
    ) -> anyhow::Result<Option<ClientAuth>> {
        let ([.., ca, crl], [kn, cn, can, crln]) = (o.files, o.names);
        match (absolute(ca, can)?, absolute(crl, crln)?) {
            (None, Some(_)) => bail!("--{crln} needs --{can}"),
            (Some(_), _) if pair.is_none() => bail!("--{can} needs --{kn} and --{cn}"),
            (ca, crl) => Ok(ca.map(|ca| ClientAuth { ca, crl })),
        }
    }

    /// The listener's TLS configuration, its files loaded; `None` without TLS.
    fn server_config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        self.pair
            .as_ref()
            .map(|(k, c)| crate::base::tls::server_config(k, c, self.auth.as_ref()))
            .transpose()
    }
}

impl Settings {
    /// What the settings must not say together: PROXY headers without trusted proxies, a
    /// reserved path, and two listeners on one that differ.
    fn check(&self, ws_tls: &ListenerTls, ctl_tls: &ListenerTls) -> anyhow::Result<()> {
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            bail!(
                "--proxy-protocol needs --trusted-proxy: the addresses whose PROXY header is believed"
            );
        }
        // Metrics and the status page live on the control listener, beside the control path.
        let on_ws = |p: &str| self.paths.iter().any(|w| w.path == p);
        let reserved = [(server::METRICS_PATH, "metrics")]
            .into_iter()
            .chain(crate::control::status::PATHS.map(|p| (p, "the status page")));
        for (path, what) in reserved {
            if self.ctlpath == path || (self.shared_listener() && on_ws(path)) {
                bail!("{path} is reserved for {what}");
            }
        }
        if self.shared_listener() {
            if on_ws(&self.ctlpath) {
                bail!("Same path/ctlpath on same host: {}", self.ctlpath);
            }
            ws_tls.same_as(ctl_tls)?;
        }
        Ok(())
    }
}

impl ListenerTls {
    /// One listener has one certificate, and one way of checking client certificates: the
    /// WebSocket and control options must agree when they share one.
    fn same_as(&self, ctl: &ListenerTls) -> anyhow::Result<()> {
        let (ws_pair, ctl_pair) = (self.pair.as_ref(), ctl.pair.as_ref());
        if ws_pair.map(|p| &p.0) != ctl_pair.map(|p| &p.0) {
            bail!("Different sslkey/ctlsslkey on same host");
        }
        if ws_pair.map(|p| &p.1) != ctl_pair.map(|p| &p.1) {
            bail!("Different sslcert/ctlsslcert on same host");
        }
        let (ws_auth, ctl_auth) = (self.auth.as_ref(), ctl.auth.as_ref());
        if ws_auth.map(|a| &a.ca) != ctl_auth.map(|a| &a.ca) {
            bail!("Different sslclientca/ctlsslclientca on same host");
        }
        if ws_auth.map(|a| &a.crl) != ctl_auth.map(|a| &a.crl) {
            bail!("Different sslcrl/ctlsslcrl on same host");
        }
        Ok(())
    }
}

type LoadedHtpasswd = Option<Arc<Htpasswd>>;

/// The WebSocket paths of `--path`, with their htpasswd files loaded; each path once.
fn ws_paths(specs: &[PathSpec], defaults: &Profile) -> anyhow::Result<Vec<WsPath>> {
    let mut paths: Vec<WsPath> = Vec::new();
    for spec in specs {
        if paths.iter().any(|p| p.path == spec.path) {
            bail!("--path {} given twice", spec.path);
        }
        let htpasswd = load_htpasswd(&spec.htpasswd, "path's htpasswd")
            .with_context(|| format!("path {}", spec.path))?;
        paths.push(WsPath {
            path: spec.path.clone(),
            profile: spec.profile.over(defaults),
            htpasswd,
        });
    }
    if paths.is_empty() {
        bail!("--path: no WebSocket path given");
    }
    Ok(paths)
}

impl Settings {
    /// The paths served, for the log: `/, /lab1`.
    pub(crate) fn path_list(&self) -> String {
        let names: Vec<&str> = self.paths.iter().map(|p| p.path.as_str()).collect();
        names.join(", ")
    }

    /// WebSocket and control on one listener, as etherws 1.3 does when host and port match.
    /// Port 0 asks for any free port, separately for each listener.
    pub(crate) fn shared_listener(&self) -> bool {
        self.host == self.ctlhost && self.port == self.ctlport && self.port != 0
    }
}

/// Binds a listening socket. An empty host means every address: IPv6 and IPv4 on one
/// dual-stack socket, or IPv4 alone where IPv6 is unavailable.
pub(crate) fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = if host.is_empty() {
        vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
        ]
    } else {
        (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .collect()
    };
    let mut last = None;
    for addr in addrs {
        match bind_one(addr, host.is_empty()) {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(anyhow::Error::from(e).context(format!("cannot listen on {addr}")))
            }
        }
        // For the wildcard, only fall back to IPv4 when IPv6 itself is missing.
        if host.is_empty()
            && !matches!(
                last.as_ref()
                    .and_then(|e| e.downcast_ref::<std::io::Error>())
                    .and_then(|e| e.raw_os_error()),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
            )
        {
            break;
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no address for {host}")))
}

fn bind_one(addr: SocketAddr, dual: bool) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if dual && addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Raises the soft limit on open files to the hard one: every WebSocket peer is a descriptor,
/// and the usual soft limit of 1024 would cap a switch far below what it can serve.
fn raise_nofile_limit() {
    // getrlimit does not fail (a valid pointer, a resource Linux knows): nothing to raise then.
    let Ok(limit) = sys::process::open_files_limit() else {
        return;
    };
    if limit.soft < limit.hard {
        let raised = sys::process::set_open_files_limit(Limit {
            soft: limit.hard,
            ..limit
        });
        if let Err(e) = raised {
            tracing::warn!("cannot raise the open files limit: {e}");
        }
    }
}

/// Runs `etherws sw`. `matches` (`sw`'s) tell options given on the command line or in the
/// environment from clap's defaults, so that the configuration file goes between them
/// ([`SwOptions::layered`]).
pub(crate) fn run(args: SwArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        return check_config(path, args.options, matches);
    }
    // SIGHUP reloads once the switch runs; until then it is ignored, never fatal.
    sys::process::ignore_hangup()?;
    let options = args.options.clone();
    let (config, opts, logconf) = read_options(args.config.as_deref(), args.options, matches)?;
    // The pidfile need not exist yet; its name is taken from here, before `/` becomes the cwd.
    let pidfile = opts
        .pidfile
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .context("--pidfile")?;
    if let Some(p) = &pidfile {
        daemon::PidFile::check(p)?;
    }
    logging::init(&logconf, opts.debug, opts.log_format, !args.foreground)?;
    // An option refused here names the environment variable it came from, if it did.
    let settings = settings(&opts).map_err(|e| {
        anyhow::anyhow!(crate::app::cli::name_environment(
            &format!("{e:#}"),
            matches
        ))
    })?;
    check_users(config.as_ref(), &settings)?;
    raise_nofile_limit();

    let ws_listener = bind(&settings.host, settings.port)?;
    let ctl_listener = if settings.shared_listener() {
        None
    } else {
        Some(bind(&settings.ctlhost, settings.ctlport)?)
    };

    if !args.foreground {
        // Returns in the daemon only; the shell gets its answer once it is up (or why not).
        // SAFETY: the process has one thread still: the runtime starts below, and nothing
        // before (options, logging, binding) starts a thread.
        unsafe { daemon::detach() }?;
    }
    let started = (|| {
        let _pidfile = pidfile.as_deref().map(daemon::PidFile::write).transpose()?;
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        if let Num(n @ 1..) = opts.threads {
            runtime.worker_threads(n);
        }
        let runtime = runtime
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let start = Start {
            options,
            matches: matches.cloned(),
            opts,
        };
        runtime.block_on(serve(
            settings,
            [Some(ws_listener), ctl_listener],
            config,
            start,
        ))
    })();
    if let Err(e) = &started {
        tracing::error!("{e:#}");
        daemon::failed(e);
    }
    started
}

/// Refuses a `[user.NAME]` pin that no one can match, so that it is never taken for one
/// that works: for a path not served, for a path without its own htpasswd file (its users are
/// the switch-wide file's: the pin says `path` for nothing), or for the switch-wide file's
/// users where there is none (a certificate's name must say so, `source = "certificate"`).
pub(crate) fn check_users(config: Option<&(PathBuf, Config)>, s: &Settings) -> anyhow::Result<()> {
    let Some((origin, conf)) = config else {
        return Ok(());
    };
    let mut pins: Vec<(usize, &String, &UserPin)> = conf
        .users
        .iter()
        .map(|(name, pin)| (conf.user_lines.get(name).copied().unwrap_or(0), name, pin))
        .collect();
    pins.sort_by_key(|(line, ..)| *line);
    let switch_wide = s.htpasswd.is_some() && s.paths.iter().any(|p| p.htpasswd.is_none());
    for (line, name, pin) in pins {
        let why = match &pin.credentials {
            profile::Credentials::Certificate => continue,
            profile::Credentials::Switch if switch_wide => continue,
            profile::Credentials::Switch => format!(
                "pins {name} of the switch-wide htpasswd file, and {}: say path = \"/PATH\" \
                 for a user of a path's own htpasswd file, or source = \"certificate\" for a \
                 client certificate's name",
                if s.htpasswd.is_none() {
                    "there is none ([switch] htpasswd, --htpasswd)"
                } else {
                    "every path has a file of its own"
                },
                name = Esc(name),
            ),
            profile::Credentials::Path(path) => match s.paths.iter().find(|p| p.path == *path) {
                Some(p) if p.htpasswd.is_some() => continue,
                Some(_) => format!(
                    "path {} has no htpasswd file of its own (its users are the switch-wide \
                     file's: leave path out)",
                    Esc(path)
                ),
                None => format!(
                    "path {} is not served (the paths: {})",
                    Esc(path),
                    s.path_list()
                ),
            },
        };
        bail!("{}:{line}: user {}: {why}", origin.display(), Esc(name));
    }
    Ok(())
}

/// A configuration file read, with its absolute path.
type ConfigFile = Option<(PathBuf, Config)>;

/// What `run` and `--check-config` read first: the configuration file (with its absolute
/// path), the options in force (command line over environment over file), and the log
/// configuration.
fn read_options(
    config: Option<&Path>,
    options: SwOptions,
    matches: Option<&ArgMatches>,
) -> anyhow::Result<(ConfigFile, EffectiveOptions, LogConf)> {
    let config = match config {
        Some(path) => Some((std::path::absolute(path)?, Config::load(path)?)),
        None => None,
    };
    let file = config.as_ref().map(|(_, c)| c.switch.clone());
    let opts = options.layered(matches, file.unwrap_or_default())?;
    let logconf = match absolute(&opts.logconf, "logconf")? {
        Some(p) => LogConf::load(&p)?,
        None => LogConf::default(),
    };
    Ok((config, opts, logconf))
}

/// [`read_options`] for a reload: the log configuration checked, not kept.
pub(crate) fn read_checked(
    config: Option<&Path>,
    options: SwOptions,
    matches: &Option<ArgMatches>,
) -> anyhow::Result<(ConfigFile, EffectiveOptions)> {
    let (config, opts, _) = read_options(config, options, matches.as_ref())?;
    Ok((config, opts))
}

/// `--check-config FILE`: everything `run` checks before it binds, and nothing else.
fn check_config(
    path: &Path,
    options: SwOptions,
    matches: Option<&ArgMatches>,
) -> anyhow::Result<()> {
    let (config, opts, _) = read_options(Some(path), options, matches)?;
    let s = settings(&opts)?;
    check_users(config.as_ref(), &s)?;
    let conf = config.map(|(_, c)| c).unwrap_or_default();
    println!(
        "{}: OK ({} port{}, WebSocket path{} {}, {} pinned user{})",
        crate::base::escape::printable(&path.display().to_string()),
        conf.ports.len(),
        if conf.ports.len() == 1 { "" } else { "s" },
        if s.paths.len() == 1 { "" } else { "s" },
        s.path_list(),
        conf.users.len(),
        if conf.users.len() == 1 { "" } else { "s" },
    );
    Ok(())
}

/// Creates the ports the configuration file declares, in order (so they get numbers 1, 2…).
async fn create_ports(
    control: &Control,
    origin: &Path,
    ports: &[PortConf],
) -> anyhow::Result<Vec<(PortConf, Option<PortNo>)>> {
    let mut created = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let what = format!("{}:{}: port {}", origin.display(), p.line(), i + 1);
        let no = create_one(control, p, &what).await.with_context(|| what)?;
        created.push((p.clone(), Some(no)));
    }
    Ok(created)
}

/// Creates one port of the configuration file with its settings; `what` names it.
pub(crate) async fn create_one(
    control: &Control,
    p: &PortConf,
    what: &str,
) -> anyhow::Result<PortNo> {
    let stat = create_port(control, p, what).await?;
    if *p.profile() != Profile::default() {
        control.apply_profile(stat.port, p.profile())?;
    }
    Ok(stat.port)
}

/// Gives port `no` the interface settings and settings of `p` (a reload changed them); the
/// mirror set by hand stays.
pub(crate) async fn configure_one(
    control: &Control,
    no: PortNo,
    p: &PortConf,
    what: &str,
) -> anyhow::Result<()> {
    if let PortConf::Tap { iface, .. } | PortConf::Netdev { iface, .. } = p {
        configure_iface(control, no, iface).await?;
    }
    let mut policy = p.profile().policy();
    policy.mirror = lock(&control.switch).port(no).and_then(|s| s.policy.mirror);
    control
        .set_policy(no, policy)
        .with_context(|| what.to_string())?;
    Ok(())
}

/// Sets what `iface` says of a port's interface (address, netmask, MTU), if anything.
async fn configure_iface(
    control: &Control,
    no: PortNo,
    iface: &crate::app::config::IfConf,
) -> anyhow::Result<()> {
    let change = IfChange {
        address: iface.address,
        netmask: iface.netmask,
        mtu: iface.mtu,
    };
    if change != IfChange::default() {
        control
            .configure_interface(no, &change)
            .await
            .map_err(|e| anyhow::anyhow!(e.data))?;
    }
    Ok(())
}

/// Creates one port of the configuration file, with its interface settings; `what` names it
/// in warnings.
async fn create_port(control: &Control, p: &PortConf, what: &str) -> anyhow::Result<PortStat> {
    let (added, iface) = match p {
        PortConf::Tap { name, iface, .. } => (control.add_tap(name).await, iface),
        PortConf::Netdev {
            name,
            iface,
            offload,
            ..
        } => (add_netdev(control, name, *offload, what).await, iface),
        PortConf::Client {
            url,
            user,
            passwd,
            transport,
            ..
        } => {
            let creds = user.as_ref().map(|u| Credentials {
                user: u.clone(),
                passwd: passwd.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
            });
            // Always `Some` for a client port.
            let tls = p.client_tls().transpose()?.unwrap_or_default();
            let opts = ClientOptions {
                creds,
                verify: tls.verify,
                identity: tls.identity,
            };
            return control.add_client(url, opts, *transport, false).await;
        }
    };
    let stat = added?;
    configure_iface(control, stat.port, iface).await?;
    Ok(stat)
}

/// Adds a netdev port, offloaded if `offload` (and the eBPF object is built in: a
/// configuration file written for an offload build still starts, with a warning).
async fn add_netdev(
    control: &Control,
    name: &str,
    offload: Option<crate::offload::Requested>,
    what: &str,
) -> anyhow::Result<PortStat> {
    match offload {
        Some(_) if !crate::offload::available() => {
            tracing::warn!("{what}: {}; using AF_PACKET", crate::offload::NO_OBJECT);
            control.add_netdev(name).await
        }
        Some(requested) => {
            control
                .add_netdev_offloaded(name, requested, crate::offload::AttachMode::Auto)
                .await
        }
        None => control.add_netdev(name).await,
    }
}

/// How the switch was started, for reloads: the command line's options (the file goes
/// under them again) and the options in force.
struct Start {
    options: SwOptions,
    matches: Option<ArgMatches>,
    opts: EffectiveOptions,
}

/// The listeners' TLS configurations, each in a cell a reload replaces.
fn tls_cell(config: &Option<Arc<rustls::ServerConfig>>) -> Option<TlsCell> {
    config.clone().map(|c| Arc::new(Swap::new(c)))
}

async fn serve(
    s: Settings,
    [ws_listener, ctl_listener]: [Option<TcpListener>; 2],
    config: Option<(PathBuf, Config)>,
    start: Start,
) -> anyhow::Result<()> {
    crate::port::set_data_path();
    let (signals, hup) = Signals::new()?;
    let switch: SharedSwitch = Core::new(Switch::with_limits(s.ageout, s.limits), s.queues);
    let proxies = s.trusted_proxies.clone();
    let ws_side = WsSide::new(s.htpasswd.clone(), s.conns, s.auth, proxies);
    let netif = Netif::new().context("cannot open rtnetlink")?;
    let offload = crate::offload::Offload::default();
    lock(&switch).set_fdb_observer(Box::new(offload.clone()));
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let control = Control {
        switch: switch.clone(),
        netif,
        ws: s.ws,
        offload,
        reload: Some(reload_tx),
        status: Default::default(),
    };
    let mut ports = Vec::new();
    if let Some((origin, conf)) = &config {
        match create_ports(&control, origin, &conf.ports).await {
            Ok(created) => ports = created,
            Err(e) => {
                close_all(&switch).await;
                return Err(e);
            }
        }
    }
    tokio::spawn(expire_loop(switch.clone(), s.ageout));

    let users = config
        .as_ref()
        .map(|(_, c)| c.users.clone())
        .unwrap_or_default();
    let live = LiveWs::new(s.paths.clone(), users);
    let ws = server::ws_routes(live.clone(), switch.clone(), &ws_side, s.ws);
    let guard = Guard {
        tls: s.ctltls.is_some(),
        allowed_hosts: s.ctlallowhost.clone(),
        check_host: true,
    };
    let ctl_auth = Arc::new(Auth::new(s.ctlhtpasswd.clone(), s.auth, "control"));
    let ctl_proxies = s.ctl_trusted_proxies.clone();
    let ctl = server::ctl_routes(
        &s.ctlpath,
        control.clone(),
        ctl_auth.clone(),
        ctl_proxies,
        guard,
        &ws_side,
    );
    let (ws_tls, ctl_tls) = (tls_cell(&s.tls), tls_cell(&s.ctltls));
    let shared = ctl_listener.is_none();
    let routes = [ws, ctl];
    let mut servers = spawn_servers(&s, [ws_listener, ctl_listener], routes, [&ws_tls, &ctl_tls])?;
    if let (Some(port), Some(tls)) = (s.quic, &ws_tls) {
        let side = QuicSide {
            switch: switch.clone(),
            auth: ws_side.auth.clone(),
            conns: ws_side.conns.clone(),
            live: live.clone(),
            settings: s.ws,
        };
        servers.spawn(serve_quic(&s, port, tls.clone(), side)?);
    }
    let reloader = reload::Reloader {
        config: config.map(|(p, _)| p),
        options: start.options,
        matches: start.matches,
        opts: start.opts,
        ports,
        live,
        ws_auth: ws_side.auth.clone(),
        ctl_auth,
        ws_tls,
        ctl_tls: if shared { None } else { ctl_tls },
        control,
    };

    // Listening, and every declared port created: a daemonizing parent may return now.
    daemon::ready();
    let events = Events {
        servers,
        signals,
        hup,
        reloads: reload_rx,
    };
    events.run(reloader, &switch).await
}

/// Opens the QUIC listener (`--quic`) on `port`; gives what serves it.
fn serve_quic(
    s: &Settings,
    port: u16,
    tls: TlsCell,
    side: QuicSide,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>> + use<>> {
    let mut tls = crate::edge::quic::ServerTls::new(tls, &s.ws)?;
    let endpoint = crate::edge::quic::bind(&s.host, port, &mut tls)?;
    let quic_addr = endpoint.local_addr()?;
    let congestion = s.ws.quic_congestion.name();
    tracing::info!(%quic_addr, path = %s.path_list(), congestion, "serving QUIC (HTTP/3)");
    Ok(crate::edge::quic::serve(endpoint, side, s.conns, tls))
}

/// Starts serving: WebSocket and control on one listener, or each on its own (the control
/// API on a thread of its own).
fn spawn_servers(
    s: &Settings,
    [ws_listener, ctl_listener]: [Option<TcpListener>; 2],
    [ws, ctl]: [axum::Router; 2],
    [ws_tls, ctl_tls]: [&Option<TlsCell>; 2],
) -> anyhow::Result<tokio::task::JoinSet<std::io::Result<()>>> {
    let listening = |tls: &Option<TlsCell>, limits, proxy_protocol| Listening {
        tls: tls.clone(),
        limits,
        proxies: s.trusted_proxies.clone(),
        proxy_protocol,
        tcp: Some(s.ws.tcp),
    };
    let ws_listener = ws_listener.context("no WebSocket listener")?;
    let ws_addr = ws_listener.local_addr()?;
    let ws_listener = tokio::net::TcpListener::from_std(ws_listener)?;
    let mut servers = tokio::task::JoinSet::new();
    match ctl_listener {
        None => {
            tracing::info!(%ws_addr, tls = s.tls.is_some(), path = %s.path_list(), ctlpath = %s.ctlpath, "serving WebSocket and control");
            let how = listening(ws_tls, s.conns, s.proxy_protocol);
            servers.spawn(server::serve(ws_listener, how, ws.merge(ctl)));
        }
        Some(l) => {
            let ctl_addr = l.local_addr()?;
            tracing::info!(%ws_addr, tls = s.tls.is_some(), path = %s.path_list(), "serving WebSocket");
            tracing::info!(%ctl_addr, tls = s.ctltls.is_some(), path = %s.ctlpath, "serving control");
            let how = listening(ws_tls, s.conns, s.proxy_protocol);
            servers.spawn(server::serve(ws_listener, how, ws));
            let how = Listening {
                proxies: s.ctl_trusted_proxies.clone(),
                tcp: None,
                ..listening(ctl_tls, server::CONTROL_CONNS, false)
            };
            let done = serve_control_apart(l, how, ctl)?;
            servers.spawn(async move {
                done.await
                    .unwrap_or_else(|_| Err(std::io::Error::other("the control thread died")))
            });
        }
    }
    Ok(servers)
}

/// What the running switch waits for: its servers' end, a stopping signal, a reload.
struct Events {
    servers: tokio::task::JoinSet<std::io::Result<()>>,
    signals: Signals,
    hup: tokio::signal::unix::Signal,
    reloads: tokio::sync::mpsc::Receiver<crate::control::ReloadAsk>,
}

impl Events {
    /// Serves until a server fails or a signal stops the switch; reloads one at a time.
    async fn run(
        mut self,
        mut reloader: reload::Reloader,
        switch: &SharedSwitch,
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                Some(r) = self.servers.join_next() => {
                    r.context("server task failed")?.context("server failed")?;
                    return Ok(());
                }
                sig = self.signals.shutdown() => {
                    tracing::info!("{sig}: shutting down");
                    close_all(switch).await;
                    return Ok(());
                }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let _ = reloader.reload().await;
                }
                Some(ask) = self.reloads.recv() => {
                    let _ = ask.send(reloader.reload().await);
                }
            }
        }
    }
}

/// Serves the control API on a thread and runtime of its own, so that an administrator's
/// `listport` (or a monitoring scrape) is answered in milliseconds however busy the data path's
/// runtime is; what it does that creates ports still runs there ([`crate::port::on_data_path`]).
/// The receiver gets the server's end.
fn serve_control_apart(
    listener: TcpListener,
    how: Listening,
    app: axum::Router,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control API's runtime")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("etherws-ctl".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                server::serve(tokio::net::TcpListener::from_std(listener)?, how, app).await
            });
            let _ = tx.send(served);
        })
        .context("cannot start the control API's thread")?;
    Ok(rx)
}

/// The signals the switch acts on: SIGTERM and SIGINT stop it, SIGHUP reloads it. Taken at
/// start, so that a SIGHUP never kills a running switch.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// The stopping signals, and SIGHUP apart.
    fn new() -> anyhow::Result<(Self, tokio::signal::unix::Signal)> {
        use tokio::signal::unix::{SignalKind, signal};
        let take = |kind: SignalKind| signal(kind).context("cannot handle signals");
        let stop = Signals {
            term: take(SignalKind::terminate())?,
            int: take(SignalKind::interrupt())?,
        };
        Ok((stop, take(SignalKind::hangup())?))
    }

    /// The first stopping signal's name.
    async fn shutdown(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Longest wait at shutdown for the ports to finish: a WebSocket's close frame has 2 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Removes every port so WebSockets get a close frame and TAP devices go away, and waits
/// until every port task has finished (at most [`SHUTDOWN_GRACE`]).
async fn close_all(switch: &SharedSwitch) {
    let ports: Vec<_> = lock(switch).port_numbers().collect();
    for p in ports {
        lock(switch).remove_port(p);
    }
    let tasks = crate::port::tasks();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = tasks.len(),
            "ports still closing after {}s; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_starts_with_the_defaults() {
        let s = settings(&EffectiveOptions::default()).unwrap();
        assert_eq!((s.port, s.ctlport, s.ctlpath.as_str()), (80, 7867, "/ctl"));
        assert_eq!(s.ageout, std::time::Duration::from_secs(300));
    }
}
