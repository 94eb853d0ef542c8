//! The configuration file of `etherws sw --config FILE`: switch settings and ports, in TOML.
//!
//! ```toml
//! [switch]                 # the options of `etherws sw`, `-` spelt `_`; every key optional
//! port = 8080
//! ctlhost = "127.0.0.1"
//! htpasswd = "htpasswd"    # relative paths are relative to the config file's directory
//!
//! [[port]]                 # ports, created at start-up in this order: port 1, 2, 3…
//! type = "tap"             # tap | netdev | client
//! target = "ethws0"
//! address = "192.0.2.10"   # address, netmask, mtu: as `ctl setif` (tap and netdev only)
//! netmask = "255.255.255.0"
//! mtu = 1400
//!
//! [[port]]
//! type = "netdev"
//! target = "eth1"
//! offload = true           # netdev only
//!
//! [[port]]
//! type = "client"
//! target = "wss://198.51.100.1/"
//! user = "alice"
//! passwd_file = "alice.pass"  # its first line is the password
//! # passwd = "..."         # only if the config file is not readable by group or others
//! cacerts = "ca.pem"
//! insecure = false
//! cert = "client.pem"      # a client certificate and its key, for a server requiring one
//! key = "client.key"
//! ```
//!
//! Everything is checked before anything is started, and every error names the file and the
//! line of the offending key or table (`/etc/etherws.toml:12: port 2 (tap): invalid address
//! "300.1.1.1"`), so a switch restarted by systemd either comes back whole or says why not.
//!
//! The document is walked as a [`DeTable`], whose keys and values carry their byte spans,
//! rather than through `#[derive(Deserialize)]`: that keeps every message (unknown keys
//! included) in one style, with the line and the port it is about.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

/// A parsed, validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `[switch]` table; every key optional (`None`: not set in the file).
    pub switch: SwitchConf,
    /// The `[[port]]` tables, in file order; they get port numbers 1, 2, 3… in this order.
    pub ports: Vec<PortConf>,
}

/// The `[switch]` table: the options of `etherws sw` (all but `--foreground` and `--config`),
/// named as on the command line with `-` spelt `_`. `None`: not set in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwitchConf {
    pub debug: Option<bool>,
    pub logconf: Option<PathBuf>,
    pub ageout: Option<i64>,
    pub keepalive: Option<u64>,
    pub reconnect_max: Option<u64>,
    pub max_frame: Option<u32>,
    pub max_macs: Option<usize>,
    pub max_macs_per_port: Option<usize>,
    pub max_macs_per_addr: Option<usize>,
    pub storm_pps: Option<u32>,
    pub loop_moves: Option<u32>,
    pub loop_block: Option<u64>,
    pub max_conns: Option<usize>,
    pub max_conns_per_addr: Option<usize>,
    pub auth_max_failures: Option<u32>,
    pub auth_window: Option<u64>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub htpasswd: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslclientca: Option<PathBuf>,
    pub sslcrl: Option<PathBuf>,
    pub ctlpath: Option<String>,
    pub ctlhost: Option<String>,
    pub ctlport: Option<u16>,
    pub ctlallowhost: Option<Vec<String>>,
    pub trusted_proxy: Option<Vec<String>>,
    pub proxy_protocol: Option<bool>,
    pub ctlhtpasswd: Option<PathBuf>,
    pub ctlsslkey: Option<PathBuf>,
    pub ctlsslcert: Option<PathBuf>,
    pub ctlsslclientca: Option<PathBuf>,
    pub ctlsslcrl: Option<PathBuf>,
}

/// One `[[port]]` table. `line` is where it starts in the file, for later error messages.
#[derive(Debug, Clone, PartialEq)]
pub enum PortConf {
    Tap {
        name: String,
        iface: IfConf,
        line: usize,
    },
    Netdev {
        name: String,
        offload: bool,
        iface: IfConf,
        line: usize,
    },
    Client {
        url: String,
        user: Option<String>,
        /// From `passwd`, or the first line of `passwd_file`.
        passwd: Option<Secret>,
        cacerts: Option<PathBuf>,
        insecure: bool,
        /// Client certificate and its key (both or neither).
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        line: usize,
    },
}

impl PortConf {
    /// The line of the port's table in the configuration file.
    pub fn line(&self) -> usize {
        match self {
            PortConf::Tap { line, .. }
            | PortConf::Netdev { line, .. }
            | PortConf::Client { line, .. } => *line,
        }
    }
}

/// The interface settings of a tap or netdev port, as `etherws ctl setif` takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IfConf {
    pub address: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
}

/// A password; Debug prints "<redacted>".
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Config {
    /// Reads and validates `path`. Errors read like `/etc/etherws.toml:12: port 2 (tap):
    /// invalid address "300.1.1.1"` or `…:3: unknown key "agout" in [switch]`.
    ///
    /// Relative paths in the file are resolved against the file's directory, `passwd_file`s
    /// are read, and an inline `passwd` is refused unless the file's mode denies group and
    /// others all access.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let origin = path.display().to_string();
        // The mode of the file actually read, not of whatever the path names a moment later.
        let (data, meta) = crate::files::read_limited(path).map_err(|e| match e {
            crate::files::FileError::Open { error, .. } => {
                anyhow::anyhow!("{origin}: cannot open: {error}")
            }
            other => other.into(),
        })?;
        let mode = meta.permissions().mode();
        let text = String::from_utf8(data).map_err(|_| anyhow::anyhow!("{origin}: not UTF-8"))?;
        let absolute = std::path::absolute(path).with_context(|| format!("{origin}: bad path"))?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        Doc {
            text: &text,
            origin: &origin,
            base: Some(base),
            mode: Some(mode),
        }
        .config()
    }

    /// Same from text (for tests and fuzzing); `origin` names it in errors. Paths are kept as
    /// given (a `passwd_file` is read relative to the working directory), and an inline
    /// `passwd` is accepted, as there is no file whose permissions could give it away.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        Doc {
            text,
            origin,
            base: None,
            mode: None,
        }
        .config()
    }
}

/// Keys of `[switch]`: `SwArgs` minus `foreground` and `config`.
const SWITCH_KEYS: &[&str] = &[
    "debug",
    "logconf",
    "ageout",
    "keepalive",
    "reconnect_max",
    "max_frame",
    "max_macs",
    "max_macs_per_port",
    "max_macs_per_addr",
    "storm_pps",
    "loop_moves",
    "loop_block",
    "max_conns",
    "max_conns_per_addr",
    "auth_max_failures",
    "auth_window",
    "path",
    "host",
    "port",
    "htpasswd",
    "sslkey",
    "sslcert",
    "sslclientca",
    "sslcrl",
    "ctlpath",
    "ctlhost",
    "ctlport",
    "ctlallowhost",
    "trusted_proxy",
    "proxy_protocol",
    "ctlhtpasswd",
    "ctlsslkey",
    "ctlsslcert",
    "ctlsslclientca",
    "ctlsslcrl",
];

/// Keys of a `[[port]]`, with the port types each applies to.
const PORT_KEYS: &[(&str, &[Kind])] = &[
    ("type", &[Kind::Tap, Kind::Netdev, Kind::Client]),
    ("target", &[Kind::Tap, Kind::Netdev, Kind::Client]),
    ("address", &[Kind::Tap, Kind::Netdev]),
    ("netmask", &[Kind::Tap, Kind::Netdev]),
    ("mtu", &[Kind::Tap, Kind::Netdev]),
    ("offload", &[Kind::Netdev]),
    ("user", &[Kind::Client]),
    ("passwd", &[Kind::Client]),
    ("passwd_file", &[Kind::Client]),
    ("cacerts", &[Kind::Client]),
    ("insecure", &[Kind::Client]),
    ("cert", &[Kind::Client]),
    ("key", &[Kind::Client]),
];

/// The smallest MTU `etherws ctl setif` accepts.
const MIN_MTU: i64 = 576;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tap,
    Netdev,
    Client,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tap => "tap",
            Kind::Netdev => "netdev",
            Kind::Client => "client",
        }
    }

    /// "tap and netdev ports", "client ports"…
    fn describe(kinds: &[Kind]) -> String {
        let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
        format!("{} ports", names.join(" and "))
    }
}

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

/// The text being parsed and what is needed to report on and resolve it.
struct Doc<'a> {
    text: &'a str,
    origin: &'a str,
    /// Directory relative paths are resolved against (`None`: keep them as given).
    base: Option<&'a Path>,
    /// Mode bits of the file (`None`: not a file, inline passwords allowed).
    mode: Option<u32>,
}

impl Doc<'_> {
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: &Range<usize>, msg: impl fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}:{}: {msg}", self.origin, self.line(span.start))
    }

    fn config(&self) -> anyhow::Result<Config> {
        let root = DeTable::parse(self.text).map_err(|e| match e.span() {
            Some(span) => self.err(&span, e.message()),
            None => anyhow::anyhow!("{}: {}", self.origin, e.message()),
        })?;
        let mut switch = SwitchConf::default();
        let mut ports = Vec::new();
        for (key, value) in sorted(root.get_ref()) {
            match key.get_ref().as_ref() {
                "switch" => match value.get_ref() {
                    DeValue::Table(t) => switch = self.switch(t)?,
                    other => {
                        return Err(self.err(
                            &key.span(),
                            format!(
                                "switch must be a table ([switch]), not {}",
                                other.type_str()
                            ),
                        ));
                    }
                },
                "port" => match value.get_ref() {
                    DeValue::Array(a) => {
                        for (i, v) in a.iter().enumerate() {
                            ports.push(self.port(i + 1, v)?);
                        }
                    }
                    DeValue::Table(_) => {
                        return Err(self.err(
                            &key.span(),
                            "ports are declared with [[port]] (an array of tables), not [port]",
                        ));
                    }
                    other => {
                        return Err(self.err(
                            &key.span(),
                            format!(
                                "port must be an array of tables ([[port]]), not {}",
                                other.type_str()
                            ),
                        ));
                    }
                },
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key {other:?}{} (expected [switch] or [[port]])",
                            suggest(other, &["switch", "port"])
                        ),
                    ));
                }
            }
        }
        self.check_duplicates(root.get_ref(), &ports)?;
        Ok(Config { switch, ports })
    }

    fn switch(&self, table: &DeTable<'_>) -> anyhow::Result<SwitchConf> {
        let s = Section {
            doc: self,
            prefix: String::new(),
            table,
        };
        s.check_known(SWITCH_KEYS.iter().copied(), " in [switch]")?;
        let pos = i64::MAX;
        let conf = SwitchConf {
            debug: s.boolean("debug")?,
            logconf: s.path("logconf")?.map(Spanned::into_inner),
            ageout: s.num("ageout", 1, i64::MAX)?,
            keepalive: s.num("keepalive", 0, pos)?,
            reconnect_max: s.num("reconnect_max", 1, pos)?,
            max_frame: s.num("max_frame", 64, 65540)?,
            max_macs: s.num("max_macs", 0, pos)?,
            max_macs_per_port: s.num("max_macs_per_port", 0, pos)?,
            max_macs_per_addr: s.num("max_macs_per_addr", 0, pos)?,
            storm_pps: s.num("storm_pps", 0, u32::MAX.into())?,
            loop_moves: s.num("loop_moves", 0, u32::MAX.into())?,
            loop_block: s.num("loop_block", 1, pos)?,
            max_conns: s.num("max_conns", 0, pos)?,
            max_conns_per_addr: s.num("max_conns_per_addr", 0, pos)?,
            auth_max_failures: s.num("auth_max_failures", 1, u32::MAX.into())?,
            auth_window: s.num("auth_window", 1, pos)?,
            path: s.http_path("path")?,
            host: s.string("host")?.map(Spanned::into_inner),
            port: s.num("port", 0, u16::MAX.into())?,
            htpasswd: s.path("htpasswd")?.map(Spanned::into_inner),
            sslkey: s.path("sslkey")?.map(Spanned::into_inner),
            sslcert: s.path("sslcert")?.map(Spanned::into_inner),
            sslclientca: s.path("sslclientca")?.map(Spanned::into_inner),
            sslcrl: s.path("sslcrl")?.map(Spanned::into_inner),
            ctlpath: s.http_path("ctlpath")?,
            ctlhost: s.string("ctlhost")?.map(Spanned::into_inner),
            ctlport: s.num("ctlport", 0, u16::MAX.into())?,
            ctlallowhost: s.strings("ctlallowhost")?,
            trusted_proxy: s.strings("trusted_proxy")?,
            proxy_protocol: s.boolean("proxy_protocol")?,
            ctlhtpasswd: s.path("ctlhtpasswd")?.map(Spanned::into_inner),
            ctlsslkey: s.path("ctlsslkey")?.map(Spanned::into_inner),
            ctlsslcert: s.path("ctlsslcert")?.map(Spanned::into_inner),
            ctlsslclientca: s.path("ctlsslclientca")?.map(Spanned::into_inner),
            ctlsslcrl: s.path("ctlsslcrl")?.map(Spanned::into_inner),
        };
        s.pair("sslkey", "sslcert")?;
        s.pair("ctlsslkey", "ctlsslcert")?;
        Ok(conf)
    }

    /// The `n`th (from 1) `[[port]]`.
    fn port(&self, n: usize, value: &Value<'_>) -> anyhow::Result<PortConf> {
        let span = value.span();
        let line = self.line(span.start);
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.err(
                &span,
                format!(
                    "port {n} must be a table, not {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        let mut s = Section {
            doc: self,
            prefix: format!("port {n}: "),
            table,
        };
        s.check_known(PORT_KEYS.iter().map(|(k, _)| *k), "")?;
        let ty = s.string("type")?.ok_or_else(|| {
            s.err(
                &span,
                "missing \"type\" (tap, netdev or client)".to_string(),
            )
        })?;
        let kind = match ty.get_ref().as_str() {
            "tap" => Kind::Tap,
            "netdev" => Kind::Netdev,
            "client" => Kind::Client,
            other => {
                return Err(s.err(
                    &ty.span(),
                    format!("invalid type {other:?} (tap, netdev or client)"),
                ));
            }
        };
        s.prefix = format!("port {n} ({}): ", kind.name());
        for (key, _) in sorted(table) {
            let kinds = PORT_KEYS
                .iter()
                .find(|(k, _)| *k == key.get_ref().as_ref())
                .map_or(&[][..], |(_, kinds)| *kinds);
            if !kinds.contains(&kind) {
                return Err(s.err(
                    &key.span(),
                    format!(
                        "{:?} applies only to {}",
                        key.get_ref(),
                        Kind::describe(kinds)
                    ),
                ));
            }
        }
        let target = s
            .string("target")?
            .ok_or_else(|| s.err(&span, "missing \"target\"".to_string()))?;
        if target.get_ref().is_empty() {
            return Err(s.err(&target.span(), "empty target"));
        }
        match kind {
            Kind::Tap | Kind::Netdev => {
                if let Err(why) = check_ifname(target.get_ref()) {
                    return Err(s.err(&target.span(), why));
                }
                let iface = IfConf {
                    address: s.address()?,
                    netmask: s.netmask()?,
                    mtu: s.num("mtu", MIN_MTU, 65535)?,
                };
                let name = target.into_inner();
                Ok(if kind == Kind::Tap {
                    PortConf::Tap { name, iface, line }
                } else {
                    let offload = s.boolean("offload")?.unwrap_or(false);
                    PortConf::Netdev {
                        name,
                        offload,
                        iface,
                        line,
                    }
                })
            }
            Kind::Client => {
                if let Err(why) = check_url(target.get_ref()) {
                    return Err(s.err(&target.span(), why));
                }
                let user = s.string("user")?;
                if let Some(u) = &user {
                    if u.get_ref().is_empty() {
                        return Err(s.err(&u.span(), "empty user (leave it out for none)"));
                    }
                }
                let passwd = s.passwd(user.is_some())?;
                let cacerts = s.path("cacerts")?;
                let insecure = s.boolean_spanned("insecure")?;
                if let (Some(ca), Some(ins)) = (&cacerts, &insecure) {
                    if *ins.get_ref() {
                        let span = later(ins.span(), ca.span());
                        return Err(s.err(
                            &span,
                            "insecure = true contradicts cacerts (with insecure the server's \
                             certificate is not verified at all)",
                        ));
                    }
                }
                s.pair("cert", "key")?;
                Ok(PortConf::Client {
                    url: target.into_inner(),
                    user: user.map(Spanned::into_inner),
                    passwd,
                    cacerts: cacerts.map(Spanned::into_inner),
                    insecure: insecure.is_some_and(|i| i.into_inner()),
                    cert: s.path("cert")?.map(Spanned::into_inner),
                    key: s.path("key")?.map(Spanned::into_inner),
                    line,
                })
            }
        }
    }

    /// Two tap/netdev ports on one interface cannot both work; report the second.
    fn check_duplicates(&self, root: &DeTable<'_>, ports: &[PortConf]) -> anyhow::Result<()> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, port) in ports.iter().enumerate() {
            let (name, kind) = match port {
                PortConf::Tap { name, .. } => (name, "tap"),
                PortConf::Netdev { name, .. } => (name, "netdev"),
                PortConf::Client { .. } => continue,
            };
            if let Some(first) = seen.insert(name, i + 1) {
                // Point at the second port's target if we can find it, else at its table.
                let span = root
                    .get("port")
                    .and_then(|p| p.get_ref().as_array())
                    .and_then(|a| a.get(i))
                    .map(|t| {
                        t.get_ref()
                            .get("target")
                            .map_or_else(|| t.span(), Spanned::span)
                    })
                    .unwrap_or(0..0);
                return Err(self.err(
                    &span,
                    format!(
                        "port {} ({kind}): interface {name:?} is already port {first}",
                        i + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `path` made absolute against the config file's directory, if there is one.
    fn resolve(&self, path: &str) -> PathBuf {
        match self.base {
            Some(base) => base.join(path),
            None => PathBuf::from(path),
        }
    }
}

/// A table's entries in file order (the map itself is sorted by key).
fn sorted<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// One table being read, and how its messages start ("port 2 (tap): ").
struct Section<'a, 'i> {
    doc: &'a Doc<'a>,
    prefix: String,
    table: &'a DeTable<'i>,
}

impl<'i> Section<'_, 'i> {
    fn err(&self, span: &Range<usize>, msg: impl fmt::Display) -> anyhow::Error {
        self.doc.err(span, format_args!("{}{msg}", self.prefix))
    }

    /// Rejects the first (in file order) key not in `known`.
    fn check_known<'k>(
        &self,
        known: impl Iterator<Item = &'k str> + Clone,
        where_: &str,
    ) -> anyhow::Result<()> {
        for (key, _) in sorted(self.table) {
            let name: &str = key.get_ref();
            if !known.clone().any(|k| k == name) {
                let known: Vec<_> = known.collect();
                return Err(self.err(
                    &key.span(),
                    format!("unknown key {name:?}{where_}{}", suggest(name, &known)),
                ));
            }
        }
        Ok(())
    }

    fn entry(&self, key: &str) -> Option<&Value<'i>> {
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, value: &Value<'_>, want: &str) -> anyhow::Error {
        self.err(
            &value.span(),
            format!("{key} must be {want}, not {}", value.get_ref().type_str()),
        )
    }

    fn string(&self, key: &str) -> anyhow::Result<Option<Spanned<String>>> {
        let Some(v) = self.entry(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::String(s) => Ok(Some(Spanned::new(v.span(), s.to_string()))),
            _ => Err(self.wrong_type(key, v, "a string")),
        }
    }

    /// An array of strings.
    fn strings(&self, key: &str) -> anyhow::Result<Option<Vec<String>>> {
        let Some(v) = self.entry(key) else {
            return Ok(None);
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.wrong_type(key, v, "an array of strings"));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                _ => Err(self.wrong_type(key, item, "a string")),
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some)
    }

    fn boolean_spanned(&self, key: &str) -> anyhow::Result<Option<Spanned<bool>>> {
        let Some(v) = self.entry(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(Some(Spanned::new(v.span(), *b))),
            _ => Err(self.wrong_type(key, v, "true or false")),
        }
    }

    fn boolean(&self, key: &str) -> anyhow::Result<Option<bool>> {
        Ok(self.boolean_spanned(key)?.map(Spanned::into_inner))
    }

    /// An integer in `lo..=hi`, converted to `T`.
    fn num<T: TryFrom<i64>>(&self, key: &str, lo: i64, hi: i64) -> anyhow::Result<Option<T>> {
        let Some(v) = self.entry(key) else {
            return Ok(None);
        };
        let DeValue::Integer(i) = v.get_ref() else {
            return Err(self.wrong_type(key, v, "an integer"));
        };
        let range = if hi == i64::MAX {
            format!("at least {lo}")
        } else {
            format!("from {lo} to {hi}")
        };
        let out_of_range = || self.err(&v.span(), format!("{key} must be {range}, not {i}"));
        let n = i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| out_of_range())?;
        if !(lo..=hi).contains(&n) {
            return Err(out_of_range());
        }
        T::try_from(n).map(Some).map_err(|_| out_of_range())
    }

    /// A non-empty file name, resolved against the config file's directory.
    fn path(&self, key: &str) -> anyhow::Result<Option<Spanned<PathBuf>>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        if s.get_ref().is_empty() {
            return Err(self.err(&s.span(), format!("{key}: empty file name")));
        }
        Ok(Some(Spanned::new(s.span(), self.doc.resolve(s.get_ref()))))
    }

    /// An HTTP path to serve on: starts with `/`.
    fn http_path(&self, key: &str) -> anyhow::Result<Option<String>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        if !s.get_ref().starts_with('/') {
            return Err(self.err(
                &s.span(),
                format!("{key} must start with '/', not {:?}", s.get_ref()),
            ));
        }
        Ok(Some(s.into_inner()))
    }

    /// Both keys or neither (a TLS key and its certificate).
    fn pair(&self, a: &str, b: &str) -> anyhow::Result<()> {
        match (self.table.get_key_value(a), self.table.get_key_value(b)) {
            (Some((k, _)), None) => {
                Err(self.err(&k.span(), format!("{a} without {b} (give both or neither)")))
            }
            (None, Some((k, _))) => {
                Err(self.err(&k.span(), format!("{b} without {a} (give both or neither)")))
            }
            _ => Ok(()),
        }
    }

    fn ipv4(&self, key: &str) -> anyhow::Result<Option<Spanned<Ipv4Addr>>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        match s.get_ref().parse::<Ipv4Addr>() {
            Ok(a) => Ok(Some(Spanned::new(s.span(), a))),
            Err(_) => Err(self.err(&s.span(), format!("invalid {key} {:?}", s.get_ref()))),
        }
    }

    fn address(&self) -> anyhow::Result<Option<Ipv4Addr>> {
        let Some(a) = self.ipv4("address")? else {
            return Ok(None);
        };
        let addr = *a.get_ref();
        // What the kernel would refuse as an interface's own address (see `netif`).
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            return Err(self.err(
                &a.span(),
                format!("invalid address \"{addr}\" (not assignable to an interface)"),
            ));
        }
        Ok(Some(addr))
    }

    fn netmask(&self) -> anyhow::Result<Option<Ipv4Addr>> {
        let Some(m) = self.ipv4("netmask")? else {
            return Ok(None);
        };
        let mask = *m.get_ref();
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(self.err(
                &m.span(),
                format!("invalid netmask \"{mask}\": the one bits are not contiguous"),
            ));
        }
        Ok(Some(mask))
    }

    /// A client's password: `passwd` inline, or the first line of `passwd_file`.
    fn passwd(&self, has_user: bool) -> anyhow::Result<Option<Secret>> {
        let inline = self.string("passwd")?;
        let file = self.path("passwd_file")?;
        if let (Some(a), Some(b)) = (&inline, &file) {
            let span = later(a.span(), b.span());
            return Err(self.err(&span, "passwd and passwd_file are exclusive; give one"));
        }
        let given = inline
            .as_ref()
            .map(Spanned::span)
            .or(file.as_ref().map(Spanned::span));
        if let (Some(span), false) = (&given, has_user) {
            return Err(self.err(span, "a password without a user (add user = \"...\")"));
        }
        if let Some(p) = inline {
            if p.get_ref().is_empty() {
                return Err(self.err(&p.span(), "empty passwd (leave it out for none)"));
            }
            if let Some(mode) = self.doc.mode {
                if mode & 0o077 != 0 {
                    return Err(self.err(
                        &p.span(),
                        format!(
                            "passwd in a config file readable by group or others (mode {:04o}); \
                             chmod 600 {}, or move the password to a passwd_file",
                            mode & 0o7777,
                            self.doc.origin
                        ),
                    ));
                }
            }
            return Ok(Some(Secret(p.into_inner())));
        }
        let Some(f) = file else {
            return Ok(None);
        };
        let path = f.get_ref();
        let text = crate::files::read_text(path)
            .map_err(|e| self.err(&f.span(), format!("cannot read passwd_file {e:#}")))?;
        match text.lines().next() {
            Some(first) if !first.is_empty() => Ok(Some(Secret(first.to_string()))),
            _ => Err(self.err(
                &f.span(),
                format!("passwd_file {}: empty first line", path.display()),
            )),
        }
    }
}

/// Whichever of two spans comes later in the file (the key that makes the conflict).
fn later(a: Range<usize>, b: Range<usize>) -> Range<usize> {
    if a.start > b.start { a } else { b }
}

/// An interface name the kernel could accept.
fn check_ifname(name: &str) -> Result<(), String> {
    crate::port::tap::check_ifname(name).map_err(|e| e.to_string())
}

/// A `ws://` or `wss://` URL with a host (as `port::ws::parse_target`, minus the full parse).
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return Err(format!(
            "invalid target URL {url:?} (must start with ws:// or wss://)"
        ));
    };
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid target URL {url:?}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("no host in target URL {url:?}"));
    }
    Ok(())
}

/// ` (did you mean "x"?)` for a near miss among `known`, else nothing.
fn suggest(name: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (distance(name, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance, on chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"# etherws switch
[switch]
debug = true
logconf = "/etc/etherws/log.toml"
ageout = 600
keepalive = 15
reconnect_max = 120
max_frame = 1518
max_macs = 1000
max_macs_per_port = 100
max_macs_per_addr = 200
storm_pps = 0
loop_moves = 50
loop_block = 10
max_conns = 10
max_conns_per_addr = 2
auth_max_failures = 5
auth_window = 30
path = "/ws"
host = "0.0.0.0"
port = 8080
htpasswd = "/etc/etherws/htpasswd"
sslkey = "/etc/etherws/key.pem"
sslcert = "/etc/etherws/cert.pem"
sslclientca = "/etc/etherws/clientca.pem"
sslcrl = "/etc/etherws/clients.crl"
ctlpath = "/control"
ctlhost = "127.0.0.1"
ctlport = 7000
ctlallowhost = ["switch.example", "192.0.2.7"]
trusted_proxy = ["127.0.0.1/32"]
proxy_protocol = true
ctlhtpasswd = "/etc/etherws/ctl.htpasswd"
ctlsslkey = "/etc/etherws/ctlkey.pem"
ctlsslcert = "/etc/etherws/ctlcert.pem"
ctlsslclientca = "/etc/etherws/ctlclientca.pem"
ctlsslcrl = "/etc/etherws/ctlclients.crl"

[[port]]
type = "tap"
target = "ethws0"
address = "192.0.2.10"
netmask = "255.255.255.0"
mtu = 1400

[[port]]
type = "netdev"
target = "eth1"
offload = true

[[port]]
type = "client"
target = "wss://198.51.100.1/"
user = "alice"
passwd = "s3cret"
cacerts = "/etc/ssl/ca.pem"
insecure = false
cert = "/etc/etherws/client.pem"
key = "/etc/etherws/client.key"

[[port]]
type = "client"
target = "ws://198.51.100.2:8080/sw"
"#;

    /// Asserts that `text` fails at `line` with a message containing `needle`.
    #[track_caller]
    fn fails(text: &str, line: usize, needle: &str) {
        let err = match Config::parse(text, "t.toml") {
            Ok(c) => panic!("parsed, expected an error with {needle:?}: {c:?}"),
            Err(e) => e.to_string(),
        };
        let want = format!("t.toml:{line}: ");
        assert!(
            err.starts_with(&want),
            "{err:?} does not start with {want:?}"
        );
        assert!(err.contains(needle), "{err:?} does not contain {needle:?}");
    }

    /// A unique scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("etherws-config-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn full_example() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        let p = |s: &str| Some(PathBuf::from(s));
        let switch = SwitchConf {
            debug: Some(true),
            logconf: p("/etc/etherws/log.toml"),
            ageout: Some(600),
            keepalive: Some(15),
            reconnect_max: Some(120),
            max_frame: Some(1518),
            max_macs: Some(1000),
            max_macs_per_port: Some(100),
            max_macs_per_addr: Some(200),
            storm_pps: Some(0),
            loop_moves: Some(50),
            loop_block: Some(10),
            max_conns: Some(10),
            max_conns_per_addr: Some(2),
            auth_max_failures: Some(5),
            auth_window: Some(30),
            path: Some("/ws".into()),
            host: Some("0.0.0.0".into()),
            port: Some(8080),
            htpasswd: p("/etc/etherws/htpasswd"),
            sslkey: p("/etc/etherws/key.pem"),
            sslcert: p("/etc/etherws/cert.pem"),
            sslclientca: p("/etc/etherws/clientca.pem"),
            sslcrl: p("/etc/etherws/clients.crl"),
            ctlpath: Some("/control".into()),
            ctlhost: Some("127.0.0.1".into()),
            ctlport: Some(7000),
            ctlallowhost: Some(vec!["switch.example".into(), "192.0.2.7".into()]),
            trusted_proxy: Some(vec!["127.0.0.1/32".into()]),
            proxy_protocol: Some(true),
            ctlhtpasswd: p("/etc/etherws/ctl.htpasswd"),
            ctlsslkey: p("/etc/etherws/ctlkey.pem"),
            ctlsslcert: p("/etc/etherws/ctlcert.pem"),
            ctlsslclientca: p("/etc/etherws/ctlclientca.pem"),
            ctlsslcrl: p("/etc/etherws/ctlclients.crl"),
        };
        let ports = vec![
            PortConf::Tap {
                name: "ethws0".into(),
                iface: IfConf {
                    address: Some(Ipv4Addr::new(192, 0, 2, 10)),
                    netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                    mtu: Some(1400),
                },
                line: 39,
            },
            PortConf::Netdev {
                name: "eth1".into(),
                offload: true,
                iface: IfConf::default(),
                line: 46,
            },
            PortConf::Client {
                url: "wss://198.51.100.1/".into(),
                user: Some("alice".into()),
                passwd: Some(Secret("s3cret".into())),
                cacerts: p("/etc/ssl/ca.pem"),
                insecure: false,
                cert: p("/etc/etherws/client.pem"),
                key: p("/etc/etherws/client.key"),
                line: 51,
            },
            PortConf::Client {
                url: "ws://198.51.100.2:8080/sw".into(),
                user: None,
                passwd: None,
                cacerts: None,
                insecure: false,
                cert: None,
                key: None,
                line: 61,
            },
        ];
        assert_eq!(c, Config { switch, ports });
        assert_eq!(c.ports[2].line(), 51);
        // Every key of [switch] is exercised above.
        for key in SWITCH_KEYS {
            assert!(FULL.contains(&format!("\n{key} = ")), "{key} untested");
        }
    }

    #[test]
    fn empty_and_minimal() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.switch, SwitchConf::default());
        assert!(c.ports.is_empty());
        let c = Config::parse("[switch]\n", "t.toml").unwrap();
        assert_eq!(c.switch, SwitchConf::default());
        // Inline tables and dotted keys are TOML too.
        let c = Config::parse(
            "switch.port = 80\nport = [{type = \"tap\", target = \"ews0\"}]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.switch.port, Some(80));
        assert_eq!(
            c.ports,
            vec![PortConf::Tap {
                name: "ews0".into(),
                iface: IfConf::default(),
                line: 2
            }]
        );
    }

    #[test]
    fn syntax_errors() {
        fails("[switch]\nport = 80\nport = 81\n", 3, "duplicate key");
        fails("[switch]\n\nport = \n", 3, "");
        fails("[switch]\n[switch]\n", 2, "");
    }

    #[test]
    fn unknown_keys() {
        fails(
            "[switch]\nport = 1\nagout = 5\n",
            3,
            "unknown key \"agout\" in [switch] (did you mean \"ageout\"?)",
        );
        fails(
            "[switch]\nforeground = true\n",
            2,
            "unknown key \"foreground\"",
        );
        fails("[switch]\nconfig = \"x\"\n", 2, "unknown key \"config\"");
        fails(
            "\n[swtich]\n",
            2,
            "unknown key \"swtich\" (did you mean \"switch\"?)",
        );
        fails("[[ports]]\ntype = \"tap\"\n", 1, "unknown key \"ports\"");
        fails(
            "[[port]]\ntype = \"tap\"\ntarget = \"t0\"\n\n[[port]]\ntype = \"tap\"\ntarget = \"t1\"\nadress = \"192.0.2.1\"\n",
            8,
            "port 2: unknown key \"adress\" (did you mean \"address\"?)",
        );
        fails("[port]\ntype = \"tap\"\n", 1, "[[port]]");
        fails("port = 5\n", 1, "array of tables");
        fails("switch = 5\n", 1, "table");
        fails("port = [1]\n", 1, "port 1 must be a table");
    }

    #[test]
    fn port_type_and_target() {
        fails("[[port]]\ntarget = \"x\"\n", 1, "port 1: missing \"type\"");
        fails(
            "[[port]]\n\ntype = \"bridge\"\n",
            3,
            "port 1: invalid type \"bridge\"",
        );
        fails(
            "[[port]]\ntype = 1\n",
            2,
            "port 1: type must be a string, not integer",
        );
        fails(
            "[[port]]\ntype = \"tap\"\n",
            1,
            "port 1 (tap): missing \"target\"",
        );
        fails(
            "[[port]]\ntype = \"tap\"\ntarget = \"\"\n",
            3,
            "port 1 (tap): empty target",
        );
        fails(
            "[[port]]\ntype = \"tap\"\ntarget = \"sixteen-bytes-xx\"\n",
            3,
            "too long",
        );
        for bad in ["a/b", "a b", "a:1", ".", ".."] {
            fails(
                &format!("[[port]]\ntype = \"netdev\"\ntarget = {bad:?}\n"),
                3,
                "port 1 (netdev): invalid interface name",
            );
        }
        Config::parse(
            "[[port]]\ntype = \"tap\"\ntarget = \"fifteen-bytes-x\"\n",
            "t",
        )
        .unwrap();
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"http://x/\"\n",
            3,
            "port 1 (client): invalid target URL \"http://x/\" (must start with ws:// or wss://)",
        );
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"ws:///x\"\n",
            3,
            "no host",
        );
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"wss://a b/\"\n",
            3,
            "invalid target URL",
        );
    }

    #[test]
    fn keys_for_the_wrong_type() {
        fails(
            "[[port]]\ntype = \"tap\"\ntarget = \"t0\"\noffload = true\n",
            4,
            "port 1 (tap): \"offload\" applies only to netdev ports",
        );
        for key in [
            "address = \"192.0.2.1\"",
            "netmask = \"255.0.0.0\"",
            "mtu = 1500",
        ] {
            fails(
                &format!("[[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\n{key}\n"),
                4,
                "port 1 (client): ",
            );
        }
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\nmtu = 1500\n",
            4,
            "\"mtu\" applies only to tap and netdev ports",
        );
        fails(
            "[[port]]\ntype = \"netdev\"\ntarget = \"eth0\"\nuser = \"u\"\n",
            4,
            "\"user\" applies only to client ports",
        );
        fails(
            "[[port]]\ntype = \"netdev\"\ntarget = \"eth0\"\noffload = \"yes\"\n",
            4,
            "offload must be true or false, not string",
        );
    }

    #[test]
    fn interface_settings() {
        let tap = |extra: &str| format!("[[port]]\ntype = \"tap\"\ntarget = \"t0\"\n{extra}\n");
        fails(
            &tap("address = \"300.1.1.1\""),
            4,
            "port 1 (tap): invalid address \"300.1.1.1\"",
        );
        fails(&tap("address = \"0.0.0.0\""), 4, "not assignable");
        fails(&tap("address = \"224.0.0.1\""), 4, "not assignable");
        fails(
            &tap("netmask = \"255.0.255.0\""),
            4,
            "invalid netmask \"255.0.255.0\"",
        );
        fails(&tap("netmask = \"x\""), 4, "invalid netmask \"x\"");
        fails(
            &tap("mtu = 575"),
            4,
            "mtu must be from 576 to 65535, not 575",
        );
        fails(&tap("mtu = 65536"), 4, "mtu must be from 576 to 65535");
        fails(
            &tap("mtu = \"1500\""),
            4,
            "mtu must be an integer, not string",
        );
        let c = Config::parse(&tap("mtu = 576\nnetmask = \"255.255.255.255\""), "t").unwrap();
        assert_eq!(
            c.ports[0],
            PortConf::Tap {
                name: "t0".into(),
                iface: IfConf {
                    address: None,
                    netmask: Some(Ipv4Addr::BROADCAST),
                    mtu: Some(576)
                },
                line: 1
            }
        );
        Config::parse(&tap("mtu = 65535\nnetmask = \"0.0.0.0\""), "t").unwrap();
    }

    #[test]
    fn client_credentials() {
        let client =
            |extra: &str| format!("[[port]]\ntype = \"client\"\ntarget = \"wss://h/\"\n{extra}\n");
        fails(
            &client("user = \"u\"\npasswd = \"p\"\npasswd_file = \"/f\""),
            6,
            "port 1 (client): passwd and passwd_file are exclusive",
        );
        fails(&client("passwd = \"p\""), 4, "a password without a user");
        fails(
            &client("passwd_file = \"/f\""),
            4,
            "a password without a user",
        );
        fails(&client("user = \"\""), 4, "empty user");
        fails(&client("user = \"u\"\npasswd = \"\""), 5, "empty passwd");
        fails(
            &client("cacerts = \"ca.pem\"\ninsecure = true"),
            5,
            "insecure = true contradicts cacerts",
        );
        fails(
            &client("insecure = true\n\ncacerts = \"ca.pem\""),
            6,
            "contradicts cacerts",
        );
        fails(&client("cacerts = \"\""), 4, "cacerts: empty file name");
        fails(
            &client("cert = \"c.pem\""),
            4,
            "cert without key (give both or neither)",
        );
        fails(&client("\nkey = \"k.pem\""), 5, "key without cert");
        fails(
            "[[port]]\ntype = \"tap\"\ntarget = \"t0\"\ncert = \"c.pem\"\n",
            4,
            "\"cert\" applies only to client ports",
        );
        fails(
            &client("user = \"u\"\npasswd_file = \"/nonexistent/etherws-config-test\""),
            5,
            "cannot read passwd_file /nonexistent/etherws-config-test",
        );
        let c = Config::parse(&client("insecure = true\nuser = \"u\""), "t").unwrap();
        assert_eq!(
            c.ports[0],
            PortConf::Client {
                url: "wss://h/".into(),
                user: Some("u".into()),
                passwd: None,
                cacerts: None,
                insecure: true,
                cert: None,
                key: None,
                line: 1
            }
        );
        // `parse` keeps a relative cacerts as given.
        let c = Config::parse(&client("cacerts = \"ca.pem\"\ninsecure = false"), "t").unwrap();
        let PortConf::Client { cacerts, .. } = &c.ports[0] else {
            panic!()
        };
        assert_eq!(cacerts.as_deref(), Some(Path::new("ca.pem")));
    }

    #[test]
    fn switch_settings() {
        fails(
            "[switch]\nageout = 0\n",
            2,
            "ageout must be at least 1, not 0",
        );
        fails("[switch]\nageout = -5\n", 2, "ageout must be at least 1");
        fails(
            "[switch]\n\npath = \"ws\"\n",
            3,
            "path must start with '/', not \"ws\"",
        );
        fails(
            "[switch]\nctlpath = \"\"\n",
            2,
            "ctlpath must start with '/'",
        );
        fails("[switch]\nsslkey = \"k\"\n", 2, "sslkey without sslcert");
        fails(
            "[switch]\nport = 1\nsslcert = \"c\"\n",
            3,
            "sslcert without sslkey",
        );
        fails(
            "[switch]\nctlsslkey = \"k\"\n",
            2,
            "ctlsslkey without ctlsslcert",
        );
        fails(
            "[switch]\nctlsslcert = \"c\"\n",
            2,
            "ctlsslcert without ctlsslkey",
        );
        fails(
            "[switch]\nport = 65536\n",
            2,
            "port must be from 0 to 65535",
        );
        fails(
            "[switch]\nctlport = -1\n",
            2,
            "ctlport must be from 0 to 65535",
        );
        fails(
            "[switch]\nmax_frame = 63\n",
            2,
            "max_frame must be from 64 to 65540",
        );
        fails(
            "[switch]\nreconnect_max = 0\n",
            2,
            "reconnect_max must be at least 1",
        );
        fails(
            "[switch]\nauth_window = 0\n",
            2,
            "auth_window must be at least 1",
        );
        fails(
            "[switch]\nauth_max_failures = 0\n",
            2,
            "auth_max_failures must be",
        );
        fails(
            "[switch]\nkeepalive = -1\n",
            2,
            "keepalive must be at least 0",
        );
        fails(
            "[switch]\nstorm_pps = 4294967296\n",
            2,
            "storm_pps must be from 0",
        );
        fails(
            "[switch]\ndebug = 1\n",
            2,
            "debug must be true or false, not integer",
        );
        fails("[switch]\nhost = 1\n", 2, "host must be a string");
        fails(
            "[switch]\nhtpasswd = \"\"\n",
            2,
            "htpasswd: empty file name",
        );
        let c = Config::parse("[switch]\nageout = 0x10\nmax_macs = 1_000\n", "t").unwrap();
        assert_eq!(c.switch.ageout, Some(16));
        assert_eq!(c.switch.max_macs, Some(1000));
        // `parse` keeps relative paths as given.
        let c = Config::parse("[switch]\nhtpasswd = \"htpasswd\"\n", "t").unwrap();
        assert_eq!(c.switch.htpasswd, Some(PathBuf::from("htpasswd")));
    }

    #[test]
    fn duplicate_interfaces() {
        let text = "[[port]]\ntype = \"tap\"\ntarget = \"t0\"\n\n\
                    [[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\n\n\
                    [[port]]\ntype = \"netdev\"\n\ntarget = \"t0\"\n";
        fails(
            text,
            12,
            "port 3 (netdev): interface \"t0\" is already port 1",
        );
        // The same client URL twice is fine.
        let text = "[[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\n\
                    [[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\n";
        assert_eq!(Config::parse(text, "t").unwrap().ports.len(), 2);
    }

    #[test]
    fn load_resolves_relative_paths() {
        let dir = TempDir::new("relative");
        dir.write("alice.pass", "pa ss\nsecond line\n", 0o600);
        let conf = dir.write(
            "etherws.toml",
            "[switch]\nlogconf = \"log.toml\"\nhtpasswd = \"sub/htpasswd\"\n\
             sslkey = \"k.pem\"\nsslcert = \"/abs/c.pem\"\n\
             ctlhtpasswd = \"c\"\nctlsslkey = \"ck\"\nctlsslcert = \"cc\"\n\
             [[port]]\ntype = \"client\"\ntarget = \"wss://h/\"\nuser = \"alice\"\n\
             passwd_file = \"alice.pass\"\ncacerts = \"ca.pem\"\n",
            0o644,
        );
        let c = Config::load(&conf).unwrap();
        let d = &dir.0;
        assert_eq!(c.switch.logconf, Some(d.join("log.toml")));
        assert_eq!(c.switch.htpasswd, Some(d.join("sub/htpasswd")));
        assert_eq!(c.switch.sslkey, Some(d.join("k.pem")));
        assert_eq!(c.switch.sslcert, Some(PathBuf::from("/abs/c.pem")));
        assert_eq!(c.switch.ctlhtpasswd, Some(d.join("c")));
        assert_eq!(c.switch.ctlsslkey, Some(d.join("ck")));
        assert_eq!(c.switch.ctlsslcert, Some(d.join("cc")));
        assert_eq!(
            c.ports,
            vec![PortConf::Client {
                url: "wss://h/".into(),
                user: Some("alice".into()),
                passwd: Some(Secret("pa ss".into())),
                cacerts: Some(d.join("ca.pem")),
                insecure: false,
                cert: None,
                key: None,
                line: 9,
            }]
        );

        // Unreadable or empty password files.
        let origin = conf.display().to_string();
        let with_pass = |file: &str| {
            format!(
                "[[port]]\ntype = \"client\"\ntarget = \"wss://h/\"\nuser = \"a\"\npasswd_file = {file:?}\n"
            )
        };
        dir.write("empty.pass", "\nx\n", 0o600);
        dir.write("etherws.toml", &with_pass("empty.pass"), 0o600);
        let err = Config::load(&conf).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{origin}:5: port 1 (client): passwd_file ")),
            "{err}"
        );
        assert!(err.contains("empty first line"), "{err}");
        dir.write("etherws.toml", &with_pass("missing.pass"), 0o600);
        let err = Config::load(&conf).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{origin}:5: ")), "{err}");
        assert!(err.contains("cannot read passwd_file"), "{err}");
        assert!(err.contains("missing.pass"), "{err}");
        // A CRLF file loses its line ending too.
        dir.write("crlf.pass", "pw\r\n", 0o600);
        dir.write("etherws.toml", &with_pass("crlf.pass"), 0o600);
        let c = Config::load(&conf).unwrap();
        let PortConf::Client { passwd, .. } = &c.ports[0] else {
            panic!()
        };
        assert_eq!(passwd, &Some(Secret("pw".into())));

        // A missing config file names itself.
        let err = Config::load(&dir.0.join("nope.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("nope.toml: cannot open"),
            "{err:#}"
        );
    }

    #[test]
    fn inline_passwd_needs_a_private_file() {
        let dir = TempDir::new("perms");
        let text = "[switch]\nport = 80\n\n[[port]]\ntype = \"client\"\n\
                    target = \"ws://h/\"\nuser = \"u\"\npasswd = \"pw\"\n";
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            let conf = dir.write("etherws.toml", text, mode);
            let err = Config::load(&conf).unwrap_err().to_string();
            let want = format!(
                "{}:8: port 1 (client): passwd in a config file",
                conf.display()
            );
            assert!(err.starts_with(&want), "{err}");
            assert!(err.contains(&format!("(mode {mode:04o})")), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
            assert!(err.contains("passwd_file"), "{err}");
            assert!(!err.contains("pw\""), "{err}");
        }
        for mode in [0o600, 0o400] {
            let conf = dir.write("etherws.toml", text, mode);
            let c = Config::load(&conf).unwrap();
            let PortConf::Client { passwd, .. } = &c.ports[0] else {
                panic!()
            };
            assert_eq!(passwd, &Some(Secret("pw".into())));
        }
        // Without an inline password the mode does not matter.
        let conf = dir.write("etherws.toml", "[switch]\nport = 80\n", 0o644);
        Config::load(&conf).unwrap();
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        let c = Config::parse(
            "[[port]]\ntype = \"client\"\ntarget = \"ws://h/\"\nuser = \"u\"\npasswd = \"hunter2\"\n",
            "t",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn line_numbers() {
        let doc = Doc {
            text: "a\nb\n\nc",
            origin: "t",
            base: None,
            mode: None,
        };
        assert_eq!(doc.line(0), 1);
        assert_eq!(doc.line(2), 2);
        assert_eq!(doc.line(5), 4);
        assert_eq!(doc.line(1000), 4);
    }

    #[test]
    fn near_misses() {
        assert_eq!(distance("agout", "ageout"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(suggest("zzzzzz", SWITCH_KEYS), "");
        assert_eq!(
            suggest("ctlprt", SWITCH_KEYS),
            " (did you mean \"ctlport\"?)"
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let bytes = FULL.as_bytes();
        for cut in 0..bytes.len() {
            if let Ok(text) = std::str::from_utf8(&bytes[..cut]) {
                let _ = Config::parse(text, "t");
            }
        }
        for text in [
            "\u{feff}",
            "[[port]]\n[[port]]\n",
            "port = [[]]",
            "a.b.c = 1",
            "\"\" = 1",
        ] {
            let _ = Config::parse(text, "t");
        }
    }
}
