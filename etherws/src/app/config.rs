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
//! offload = true           # netdev only: true (auto), "auto", "xdp" or "tc"
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
//! transport = "ws"         # or "quic": HTTP/3 datagrams over UDP (wss:// only)
//! ```
//!
//! Everything is checked before anything is started, and every error names the file and the
//! line of the offending key or table (`/etc/etherws.toml:12: port 2 (tap): invalid address
//! "300.1.1.1"`), so a switch restarted by systemd either comes back whole or says why not.
//!
//! The `[switch]` table is [`SwOptions`] itself, the struct `etherws sw` also reads its command
//! line and environment into; the file is the lowest of those layers (file < environment <
//! command line, [`SwOptions::layered`]). A `[[port]]` is a `TapTable`, `NetdevTable` or
//! `ClientTable`, chosen by its `type`. All derive `Deserialize` with `deny_unknown_fields`;
//! serde's messages are put in the words of the checks made here (`unknown key "agout" in
//! [switch] (did you mean "ageout"?)`, `mtu must be an integer, not string`), with the line
//! of the key.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::offload::Requested;
use anyhow::Context;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Visitor};
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use crate::app::cli::SwOptions;
use crate::base::tls::{ClientTls, HalfIdentity};
use crate::settings::profile::{PathSpec, PathTable, Profile, UserPin, UserTable};
use crate::settings::values::{Num, Transport};
use crate::switch::PortKind;

/// A parsed, validated configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Config {
    /// The `[switch]` table; every key optional (`None`: not set in the file).
    pub(crate) switch: SwOptions,
    /// The `[[port]]` tables, in file order; they get port numbers 1, 2, 3… in this order.
    pub(crate) ports: Vec<PortConf>,
    /// The `[user.NAME]` tables: users pinned to a VLAN (and other settings).
    pub(crate) users: HashMap<String, UserPin>,
    /// The line of each `[user.NAME]` table, for the checks made once the paths are known.
    pub(crate) user_lines: HashMap<String, usize>,
}

/// One `[[port]]` table, checked. `line` is where it starts in the file, for later error
/// messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortConf {
    Tap {
        name: String,
        iface: IfConf,
        profile: Profile,
        line: usize,
    },
    Netdev {
        name: String,
        /// `offload = true` (the switch chooses), `"auto"`, `"xdp"`, `"tc"`; `None`: off.
        offload: Option<Requested>,
        iface: IfConf,
        profile: Profile,
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
        /// `transport`: `ws` (the default) or `quic`.
        transport: Transport,
        profile: Profile,
        line: usize,
    },
}

impl PortConf {
    /// The VLAN, isolation, mesh and rate settings the port starts with.
    pub(crate) fn profile(&self) -> &Profile {
        match self {
            PortConf::Tap { profile, .. }
            | PortConf::Netdev { profile, .. }
            | PortConf::Client { profile, .. } => profile,
        }
    }
}

impl PortConf {
    /// The line of the port's table in the configuration file.
    pub(crate) fn line(&self) -> usize {
        match self {
            PortConf::Tap { line, .. }
            | PortConf::Netdev { line, .. }
            | PortConf::Client { line, .. } => *line,
        }
    }

    /// How a client port checks its server and what it presents ([`ClientTls::new`]); `None`
    /// for a TAP or netdev port. A file's client port has a certificate and its key, or
    /// neither (checked when the file is read).
    pub(crate) fn client_tls(&self) -> Option<Result<ClientTls, HalfIdentity>> {
        let PortConf::Client {
            cacerts,
            insecure,
            cert,
            key,
            ..
        } = self
        else {
            return None;
        };
        let ca = cacerts.as_deref();
        Some(ClientTls::new(
            *insecure,
            ca,
            cert.as_deref(),
            key.as_deref(),
        ))
    }
}

/// The interface settings of a tap or netdev port, as `etherws ctl setif` takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IfConf {
    pub(crate) address: Option<Ipv4Addr>,
    pub(crate) netmask: Option<Ipv4Addr>,
    pub(crate) mtu: Option<u32>,
}

/// A password; Debug prints "<redacted>".
#[derive(Clone, PartialEq)]
pub(crate) struct Secret(pub(crate) String);

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
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        let origin = path.display().to_string();
        // The mode of the file actually read, not of whatever the path names a moment later.
        let (data, meta) = crate::base::files::read_limited(path).map_err(|e| match e {
            crate::base::files::FileError::Open { error, .. } => {
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
    pub(crate) fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        Doc {
            text,
            origin,
            base: None,
            mode: None,
        }
        .config()
    }
}

/// The MTUs `etherws ctl setif` accepts.
const MIN_MTU: u64 = 576;
const MAX_MTU: u64 = 65535;

/// An interface's MTU.
type Mtu = Num<u32, MIN_MTU, MAX_MTU>;

/// A `[[port]]` of type `tap`: the keys it takes besides `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TapTable {
    target: Spanned<String>,
    address: Option<Spanned<String>>,
    netmask: Option<Spanned<String>>,
    mtu: Option<Mtu>,
}

/// A `[[port]]` of type `netdev`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetdevTable {
    target: Spanned<String>,
    address: Option<Spanned<String>>,
    netmask: Option<Spanned<String>>,
    mtu: Option<Mtu>,
    offload: Option<OffloadSetting>,
}

/// A netdev port's `offload`: `true`/`false`, or the program: `"auto"`, `"xdp"` or `"tc"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffloadSetting(Option<Requested>);

impl<'de> Deserialize<'de> for OffloadSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OffloadSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, \"auto\", \"xdp\" or \"tc\"")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<OffloadSetting, E> {
                Ok(OffloadSetting(on.then_some(Requested::Auto)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OffloadSetting, E> {
                s.parse()
                    .map(|r| OffloadSetting(Some(r)))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A `[[port]]` of type `client`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTable {
    target: Spanned<String>,
    user: Option<Spanned<String>>,
    passwd: Option<Spanned<String>>,
    passwd_file: Option<Spanned<PathBuf>>,
    cacerts: Option<Spanned<PathBuf>>,
    insecure: Option<Spanned<bool>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    transport: Option<Spanned<String>>,
}

/// A `[[port]]` table, by its `type`.
///
/// Not `#[serde(tag = "type")]`: serde reads the fields of an internally tagged enum into a
/// buffer before it picks the variant, and they lose there the spans toml gives them, so that
/// `Spanned` fields fail and errors would point at the table rather than the key
/// (toml-rs/toml#535). [`Doc::port`] reads `type` first and hands the rest of the table to the
/// variant's own `Deserialize` ([`PORT_TYPES`]).
enum PortTable {
    Tap(TapTable),
    Netdev(NetdevTable),
    Client(Box<ClientTable>),
}

/// A `type` a `[[port]]` may have.
struct PortType {
    kind: PortKind,
    /// The keys its table takes (serde's list of the fields), `type` aside.
    keys: fn() -> &'static [&'static str],
    /// Reads its table, `type` taken out.
    read: fn(ValueDeserializer<'_>) -> Result<PortTable, toml::de::Error>,
}

const PORT_TYPES: [PortType; 3] = [
    PortType {
        kind: PortKind::Tap,
        keys: keys_of::<TapTable>,
        read: |d| TapTable::deserialize(d).map(PortTable::Tap),
    },
    PortType {
        kind: PortKind::Netdev,
        keys: keys_of::<NetdevTable>,
        read: |d| NetdevTable::deserialize(d).map(PortTable::Netdev),
    },
    PortType {
        kind: PortKind::Client,
        keys: keys_of::<ClientTable>,
        read: |d| ClientTable::deserialize(d).map(|c| PortTable::Client(Box::new(c))),
    },
];

/// "tap, netdev or client".
fn port_types() -> String {
    let names: Vec<_> = PORT_TYPES.iter().map(|t| t.kind.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The keys of a table type deriving `Deserialize`, as serde lists its fields, so that no list
/// of keys is kept by hand: a deserializer that asks for a struct and records its fields.
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a table"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut keys));
    keys
}

type Entry<'i> = (Spanned<DeString<'i>>, Spanned<DeValue<'i>>);

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
        let mut switch = SwOptions::default();
        let mut ports = Vec::new();
        let mut paths: Vec<PathSpec> = Vec::new();
        let mut users = HashMap::new();
        let mut user_lines = HashMap::new();
        for (key, value) in in_file_order(root.into_inner()) {
            match key.get_ref().as_ref() {
                "switch" => switch = self.switch(&key, value)?,
                "path" => {
                    let found = value.get_ref().type_str();
                    let DeValue::Array(a) = value.into_inner() else {
                        return Err(self.err(
                            &key.span(),
                            format!("path must be an array of tables ([[path]]), not {found}"),
                        ));
                    };
                    for (i, v) in a.into_iter().enumerate() {
                        paths.push(self.path(i + 1, v)?);
                    }
                }
                "user" => (users, user_lines) = self.users(&key, value)?,
                "port" => {
                    let found = value.get_ref().type_str();
                    match value.into_inner() {
                        DeValue::Array(a) => {
                            for (i, v) in a.into_iter().enumerate() {
                                ports.push(self.port(i + 1, v)?);
                            }
                        }
                        DeValue::Table(_) => {
                            return Err(self.err(
                                &key.span(),
                                "ports are declared with [[port]] (an array of tables), not [port]",
                            ));
                        }
                        _ => {
                            return Err(self.err(
                                &key.span(),
                                format!("port must be an array of tables ([[port]]), not {found}"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key {other:?}{} (expected [switch], [[port]], [[path]] or \
                             [user.NAME])",
                            suggest(other, &["switch", "port", "path", "user"])
                        ),
                    ));
                }
            }
        }
        self.check_duplicates(&ports)?;
        if !paths.is_empty() {
            let mut all = switch.path.take().unwrap_or_default();
            all.extend(paths);
            switch.path = Some(all);
        }
        Ok(Config {
            switch,
            ports: ports.into_iter().map(|(port, _)| port).collect(),
            users,
            user_lines,
        })
    }

    /// The `n`th (from 1) `[[path]]`.
    fn path(&self, n: usize, value: Spanned<DeValue<'_>>) -> anyhow::Result<PathSpec> {
        let span = value.span();
        let found = value.get_ref().type_str();
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.err(&span, format!("path {n} must be a table, not {found}")));
        };
        let s = Section {
            doc: self,
            prefix: format!("path {n}: "),
            place: Place::Path,
            table: table.clone(),
            span: span.clone(),
        };
        let mut spec: PathSpec = PathTable::deserialize(ValueDeserializer::from(value))
            .map_err(|e| s.serde(&e))?
            .into();
        if let Some(h) = spec.htpasswd.as_mut() {
            *h = self.resolve(h);
        }
        Ok(spec)
    }

    /// The `[user.NAME]` tables, and the line of each.
    fn users(
        &self,
        key: &Spanned<DeString<'_>>,
        value: Spanned<DeValue<'_>>,
    ) -> anyhow::Result<(HashMap<String, UserPin>, HashMap<String, usize>)> {
        let found = value.get_ref().type_str();
        let DeValue::Table(table) = value.into_inner() else {
            return Err(self.err(
                &key.span(),
                format!("user must be tables of users ([user.NAME]), not {found}"),
            ));
        };
        let mut users = HashMap::new();
        let mut lines = HashMap::new();
        for (name, v) in in_file_order(table) {
            let name = name.get_ref().to_string();
            let span = v.span();
            let DeValue::Table(t) = v.get_ref() else {
                return Err(self.err(
                    &span,
                    format!("user {name:?} must be a table ([user.{name}])"),
                ));
            };
            let s = Section {
                doc: self,
                prefix: format!("user {}: ", crate::base::escape::Esc(&name)),
                place: Place::User,
                table: t.clone(),
                span: span.clone(),
            };
            let pin = UserTable::deserialize(ValueDeserializer::from(v))
                .map_err(|e| s.serde(&e))?
                .try_into()
                .map_err(|e: String| s.err(&span, e))?;
            lines.insert(name.clone(), self.line(span.start));
            users.insert(name, pin);
        }
        Ok((users, lines))
    }

    /// The `[switch]` table.
    fn switch(
        &self,
        key: &Spanned<DeString<'_>>,
        value: Spanned<DeValue<'_>>,
    ) -> anyhow::Result<SwOptions> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.err(
                &key.span(),
                format!(
                    "switch must be a table ([switch]), not {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        let s = Section {
            doc: self,
            prefix: String::new(),
            place: Place::Switch,
            table: table.clone(),
            span: value.span(),
        };
        let mut opts =
            SwOptions::deserialize(ValueDeserializer::from(value)).map_err(|e| s.serde(&e))?;
        for (key, path) in opts.paths_mut() {
            if path.as_os_str().is_empty() {
                return Err(s.err(&s.key_span(key), format!("{key}: empty file name")));
            }
            *path = self.resolve(path);
        }
        for spec in opts.path.iter_mut().flatten() {
            if let Some(h) = spec.htpasswd.as_mut() {
                *h = self.resolve(h);
            }
        }
        s.pair("sslkey", "sslcert")?;
        s.pair("ctlsslkey", "ctlsslcert")?;
        Ok(opts)
    }

    /// The `n`th (from 1) `[[port]]`, and the span of its target.
    fn port(
        &self,
        n: usize,
        value: Spanned<DeValue<'_>>,
    ) -> anyhow::Result<(PortConf, Range<usize>)> {
        let span = value.span();
        let line = self.line(span.start);
        let found = value.get_ref().type_str();
        let DeValue::Table(mut table) = value.into_inner() else {
            return Err(self.err(&span, format!("port {n} must be a table, not {found}")));
        };
        let Some(ty) = table.remove("type") else {
            return Err(self.err(
                &span,
                format!("port {n}: missing \"type\" ({})", port_types()),
            ));
        };
        let DeValue::String(name) = ty.get_ref() else {
            return Err(self.err(
                &ty.span(),
                format!(
                    "port {n}: type must be a string, not {}",
                    ty.get_ref().type_str()
                ),
            ));
        };
        let Some(ty) = PORT_TYPES.iter().find(|t| t.kind.as_str() == name.as_ref()) else {
            return Err(self.err(
                &ty.span(),
                format!("port {n}: invalid type {name:?} ({})", port_types()),
            ));
        };
        let s = Section {
            doc: self,
            prefix: format!("port {n} ({}): ", ty.kind.as_str()),
            place: Place::Port,
            table: table.clone(),
            span: span.clone(),
        };
        // The settings every kind of port takes (VLAN, isolation, mesh, rates), read apart.
        let mut settings = DeTable::new();
        for key in keys_of::<Profile>() {
            if let Some((k, v)) = table.remove_entry(*key) {
                settings.insert(k, v);
            }
        }
        let profile = Profile::deserialize(ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(settings),
        )))
        .map_err(|e| s.serde(&e))?;
        let port = (ty.read)(ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(table),
        )))
        .map_err(|e| s.serde(&e))?;
        Ok(match port {
            PortTable::Tap(t) => (
                PortConf::Tap {
                    name: s.ifname(&t.target)?,
                    iface: s.iface(t.address, t.netmask, t.mtu)?,
                    profile,
                    line,
                },
                t.target.span(),
            ),
            PortTable::Netdev(t) => (
                PortConf::Netdev {
                    name: s.ifname(&t.target)?,
                    offload: t.offload.and_then(|o| o.0),
                    iface: s.iface(t.address, t.netmask, t.mtu)?,
                    profile,
                    line,
                },
                t.target.span(),
            ),
            PortTable::Client(c) => {
                let target = c.target.span();
                let mut client = s.client(*c, line)?;
                if let PortConf::Client { profile: p, .. } = &mut client {
                    *p = profile;
                }
                (client, target)
            }
        })
    }

    /// Two tap/netdev ports on one interface cannot both work; report the second.
    fn check_duplicates(&self, ports: &[(PortConf, Range<usize>)]) -> anyhow::Result<()> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, (port, target)) in ports.iter().enumerate() {
            let (name, kind) = match port {
                PortConf::Tap { name, .. } => (name, PortKind::Tap),
                PortConf::Netdev { name, .. } => (name, PortKind::Netdev),
                PortConf::Client { .. } => continue,
            };
            if let Some(first) = seen.insert(name, i + 1) {
                return Err(self.err(
                    target,
                    format!(
                        "port {} ({}): interface {name:?} is already port {first}",
                        i + 1,
                        kind.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `path` made absolute against the config file's directory, if there is one.
    fn resolve(&self, path: &Path) -> PathBuf {
        match self.base {
            Some(base) => base.join(path),
            None => path.to_path_buf(),
        }
    }
}

/// A table's entries in file order (the map itself is sorted by key).
fn in_file_order(table: DeTable<'_>) -> Vec<Entry<'_>> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// Which table a [`Section`] is.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Switch,
    Port,
    Path,
    User,
}

/// One table being read: how its messages start ("port 2 (tap): "), and its entries, to find
/// the key an error is about.
struct Section<'a, 'i> {
    doc: &'a Doc<'a>,
    prefix: String,
    place: Place,
    table: DeTable<'i>,
    /// The whole table's.
    span: Range<usize>,
}

impl Section<'_, '_> {
    fn err(&self, span: &Range<usize>, msg: impl fmt::Display) -> anyhow::Error {
        self.doc.err(span, format_args!("{}{msg}", self.prefix))
    }

    /// Where `key` is, or else the table.
    fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .get_key_value(key)
            .map_or_else(|| self.span.clone(), |(k, _)| k.span())
    }

    /// The key whose value (or an item of whose array) is at `span`, and the type there.
    fn locate(&self, span: &Range<usize>) -> Option<(&str, &'static str)> {
        let within = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
        self.table.iter().find_map(|(k, v)| {
            if within(k.span()) {
                return Some((k.get_ref().as_ref(), v.get_ref().type_str()));
            }
            if !within(v.span()) {
                return None;
            }
            let item = match v.get_ref() {
                DeValue::Array(a) => a.iter().find(|i| i.span() == *span),
                _ => None,
            };
            Some((k.get_ref().as_ref(), item.unwrap_or(v).get_ref().type_str()))
        })
    }

    /// A serde error, in the words of the checks made here.
    fn serde(&self, e: &toml::de::Error) -> anyhow::Error {
        let span = e.span().unwrap_or_else(|| self.span.clone());
        let msg = e.message();
        let quoted = |prefix: &str| {
            msg.strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
        };
        if let Some(key) = quoted("unknown field `") {
            return self.err(&span, self.unknown(key));
        }
        if let Some(key) = quoted("missing field `") {
            return self.err(&span, format!("missing {key:?}"));
        }
        let Some((key, found)) = self.locate(&span) else {
            return self.err(&span, msg);
        };
        let wanted = msg
            .strip_prefix("invalid type: ")
            .and_then(|m| m.split_once(", expected "))
            .map(|(_, wanted)| match wanted {
                "a boolean" => "true or false",
                "path string" => "a string",
                "a sequence" => "an array",
                other => other,
            });
        match wanted {
            Some(wanted) => self.err(&span, format!("{key} must be {wanted}, not {found}")),
            None if msg.starts_with("must ") => self.err(&span, format!("{key} {msg}")),
            None => self.err(&span, format!("{key}: {msg}")),
        }
    }

    /// What to say of a key the table does not take.
    fn unknown(&self, key: &str) -> String {
        match self.place {
            Place::Switch => {
                return format!(
                    "unknown key {key:?} in [switch]{}",
                    suggest(key, keys_of::<SwOptions>())
                );
            }
            Place::Path => {
                return format!(
                    "unknown key {key:?} in [[path]]{}",
                    suggest(key, keys_of::<PathTable>())
                );
            }
            Place::User => {
                return format!(
                    "unknown key {key:?}{}",
                    suggest(key, keys_of::<UserTable>())
                );
            }
            Place::Port => {}
        }
        let takers: Vec<_> = PORT_TYPES
            .iter()
            .filter(|t| (t.keys)().contains(&key))
            .map(|t| t.kind.as_str())
            .collect();
        if takers.is_empty() {
            let known: Vec<_> = PORT_TYPES
                .iter()
                .flat_map(|t| (t.keys)().iter().copied())
                .chain(["type"])
                .chain(keys_of::<Profile>().iter().copied())
                .collect();
            format!("unknown key {key:?}{}", suggest(key, &known))
        } else {
            format!("{key:?} applies only to {} ports", takers.join(" and "))
        }
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

    /// A non-empty file name, resolved against the config file's directory.
    fn path(&self, key: &str, path: Spanned<PathBuf>) -> anyhow::Result<Spanned<PathBuf>> {
        if path.get_ref().as_os_str().is_empty() {
            return Err(self.err(&path.span(), format!("{key}: empty file name")));
        }
        Ok(Spanned::new(path.span(), self.doc.resolve(path.get_ref())))
    }

    /// The interface of a tap or netdev port.
    fn ifname(&self, target: &Spanned<String>) -> anyhow::Result<String> {
        let name = target.get_ref();
        if name.is_empty() {
            return Err(self.err(&target.span(), "empty target"));
        }
        crate::port::tap::check_ifname(name).map_err(|e| self.err(&target.span(), e))?;
        Ok(name.clone())
    }

    /// The interface settings of a tap or netdev port.
    fn iface(
        &self,
        address: Option<Spanned<String>>,
        netmask: Option<Spanned<String>>,
        mtu: Option<Mtu>,
    ) -> anyhow::Result<IfConf> {
        let ipv4 = |key: &str, s: &Spanned<String>| {
            s.get_ref()
                .parse::<Ipv4Addr>()
                .map_err(|_| self.err(&s.span(), format!("invalid {key} {:?}", s.get_ref())))
        };
        let address = address
            .map(|a| {
                let addr = ipv4("address", &a)?;
                // What the kernel would refuse as an interface's own address (see `netif`).
                if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
                    return Err(self.err(
                        &a.span(),
                        format!("invalid address \"{addr}\" (not assignable to an interface)"),
                    ));
                }
                Ok(addr)
            })
            .transpose()?;
        let netmask = netmask
            .map(|m| {
                let mask = ipv4("netmask", &m)?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(self.err(
                        &m.span(),
                        format!("invalid netmask \"{mask}\": the one bits are not contiguous"),
                    ));
                }
                Ok(mask)
            })
            .transpose()?;
        Ok(IfConf {
            address,
            netmask,
            mtu: mtu.map(|m| m.0),
        })
    }

    /// A client port.
    fn client(&self, c: ClientTable, line: usize) -> anyhow::Result<PortConf> {
        let url = c.target.get_ref();
        if url.is_empty() {
            return Err(self.err(&c.target.span(), "empty target"));
        }
        crate::port::websocket::parse_target(url).map_err(|e| {
            self.err(
                &c.target.span(),
                format!("{e:#} (expected a ws:// or wss:// URL with a host)"),
            )
        })?;
        if let Some(u) = &c.user {
            if u.get_ref().is_empty() {
                return Err(self.err(&u.span(), "empty user (leave it out for none)"));
            }
        }
        let passwd = self.passwd(c.passwd, c.passwd_file, c.user.is_some())?;
        let cacerts = c.cacerts.map(|p| self.path("cacerts", p)).transpose()?;
        if let (Some(ca), Some(insecure)) = (&cacerts, &c.insecure) {
            if *insecure.get_ref() {
                return Err(self.err(
                    &later(insecure.span(), ca.span()),
                    "insecure = true contradicts cacerts (with insecure the server's \
                     certificate is not verified at all)",
                ));
            }
        }
        match (&c.cert, &c.key) {
            (Some(cert), None) => {
                return Err(self.err(&cert.span(), "cert without key (give both or neither)"));
            }
            (None, Some(key)) => {
                return Err(self.err(&key.span(), "key without cert (give both or neither)"));
            }
            _ => {}
        }
        let transport = match &c.transport {
            None => Transport::Ws,
            Some(t) => Transport::parse(t.get_ref())
                .and_then(|t| t.check(url))
                .map_err(|e| self.err(&t.span(), e))?,
        };
        Ok(PortConf::Client {
            transport,
            url: c.target.into_inner(),
            user: c.user.map(Spanned::into_inner),
            passwd,
            cacerts: cacerts.map(Spanned::into_inner),
            insecure: c.insecure.is_some_and(|i| i.into_inner()),
            cert: c
                .cert
                .map(|p| self.path("cert", p))
                .transpose()?
                .map(Spanned::into_inner),
            key: c
                .key
                .map(|p| self.path("key", p))
                .transpose()?
                .map(Spanned::into_inner),
            profile: Profile::default(),
            line,
        })
    }

    /// A client's password: `passwd` inline, or the first line of `passwd_file`.
    fn passwd(
        &self,
        inline: Option<Spanned<String>>,
        file: Option<Spanned<PathBuf>>,
        has_user: bool,
    ) -> anyhow::Result<Option<Secret>> {
        let file = file.map(|f| self.path("passwd_file", f)).transpose()?;
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
        let text = crate::base::files::read_text(path)
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
    use crate::settings::profile::Credentials;
    use crate::settings::values::BitRate;
    use crate::settings::values::HttpPath;

    const FULL: &str = r#"# etherws switch
[switch]
debug = true
logconf = "/etc/etherws/log.toml"
log_format = "json"
pidfile = "/run/etherws.pid"
ageout = 600
keepalive = 15
reconnect_max = 120
notsent_lowat = 65536
congestion = "cubic"
quic = true
quic_port = 4433
quic_congestion = "cubic"
max_frame = 1518
max_macs = 1000
max_macs_per_port = 100
max_macs_per_addr = 200
storm_pps = 0
loop_moves = 50
loop_block = 10
queue_bytes = 262144
queue_budget = 67108864
queue_delay = 50
queue_discipline = "fifo"
strict_frames = true
threads = 2
max_conns = 10
max_conns_per_addr = 2
auth_max_failures = 5
auth_window = 30
path = "/ws"
rate_in = "10M"
rate_out = 20000000
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
proxy_header = "x-real-ip"
proxy_protocol = true
ctl_trusted_proxy = ["192.0.2.8"]
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
mesh = true

[[path]]
path = "/lab"
vlan = 10
isolated = true
htpasswd = "lab.htpasswd"

[user.bob]
vlan = 20

[user.carol]
path = "/lab"
vlan = 30

[user."node-b"]
source = "certificate"
vlan = 40
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
    fn quic_keys() {
        let c = Config::parse(
            "[switch]\nquic = true\nquic_port = 4433\nquic_congestion = \"newreno\"\n\n\
             [[port]]\ntype = \"client\"\ntarget = \"wss://192.0.2.1/\"\ntransport = \"quic\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.switch.quic, Some(true));
        assert_eq!(c.switch.quic_port, Some(Num(4433)));
        let newreno = crate::settings::values::QuicCongestion::NewReno;
        assert_eq!(c.switch.quic_congestion, Some(newreno));
        assert!(matches!(
            c.ports[0],
            PortConf::Client {
                transport: Transport::Quic,
                ..
            }
        ));
        let ws =
            "[[port]]\ntype = \"client\"\ntarget = \"ws://192.0.2.1/\"\ntransport = \"quic\"\n";
        let e = Config::parse(ws, "t").unwrap_err().to_string();
        assert!(e.contains("needs a wss:// URL"), "{e}");
        let auto = ws
            .replace("ws://", "wss://")
            .replace("\"quic\"", "\"auto\"");
        let e = Config::parse(&auto, "t").unwrap_err().to_string();
        assert!(e.contains("not supported yet"), "{e}");
    }

    #[test]
    fn full_example() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        let p = |s: &str| Some(PathBuf::from(s));
        let switch = SwOptions {
            debug: Some(true),
            logconf: p("/etc/etherws/log.toml"),
            log_format: Some(crate::app::logging::LogFormat::Json),
            pidfile: p("/run/etherws.pid"),
            ageout: Some(Num(600)),
            keepalive: Some(Num(15)),
            reconnect_max: Some(Num(120)),
            notsent_lowat: Some(Num(65536)),
            congestion: Some("cubic".parse().unwrap()),
            quic: Some(true),
            quic_port: Some(Num(4433)),
            quic_congestion: Some(crate::settings::values::QuicCongestion::Cubic),
            max_frame: Some(Num(1518)),
            max_macs: Some(Num(1000)),
            max_macs_per_port: Some(Num(100)),
            max_macs_per_addr: Some(Num(200)),
            storm_pps: Some(Num(0)),
            loop_moves: Some(Num(50)),
            loop_block: Some(Num(10)),
            queue_bytes: Some(Num(262144)),
            queue_budget: Some(Num(67108864)),
            queue_delay: Some(Num(50)),
            queue_discipline: Some(crate::app::cli::QueueDiscipline::Fifo),
            strict_frames: Some(true),
            threads: Some(Num(2)),
            max_conns: Some(Num(10)),
            max_conns_per_addr: Some(Num(2)),
            auth_max_failures: Some(Num(5)),
            auth_window: Some(Num(30)),
            path: Some(vec![
                "/ws".parse().unwrap(),
                "/lab=vlan:10,isolated,htpasswd:lab.htpasswd"
                    .parse()
                    .unwrap(),
            ]),
            rate_in: Some(BitRate(10_000_000)),
            rate_out: Some(BitRate(20_000_000)),
            host: Some("0.0.0.0".into()),
            port: Some(Num(8080)),
            htpasswd: p("/etc/etherws/htpasswd"),
            sslkey: p("/etc/etherws/key.pem"),
            sslcert: p("/etc/etherws/cert.pem"),
            sslclientca: p("/etc/etherws/clientca.pem"),
            sslcrl: p("/etc/etherws/clients.crl"),
            ctlpath: Some(HttpPath("/control".into())),
            ctlhost: Some("127.0.0.1".into()),
            ctlport: Some(Num(7000)),
            ctlallowhost: Some(vec!["switch.example".into(), "192.0.2.7".into()]),
            trusted_proxy: Some(vec!["127.0.0.1/32".into()]),
            proxy_header: Some(crate::edge::forwarded::ProxyHeader::XRealIp),
            proxy_protocol: Some(true),
            ctl_trusted_proxy: Some(vec!["192.0.2.8".into()]),
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
                profile: Profile::default(),
                line: 56,
            },
            PortConf::Netdev {
                name: "eth1".into(),
                offload: Some(Requested::Auto),
                iface: IfConf::default(),
                profile: Profile::default(),
                line: 63,
            },
            PortConf::Client {
                url: "wss://198.51.100.1/".into(),
                user: Some("alice".into()),
                passwd: Some(Secret("s3cret".into())),
                cacerts: p("/etc/ssl/ca.pem"),
                insecure: false,
                cert: p("/etc/etherws/client.pem"),
                key: p("/etc/etherws/client.key"),
                transport: Transport::Ws,
                profile: Profile::default(),
                line: 68,
            },
            PortConf::Client {
                url: "ws://198.51.100.2:8080/sw".into(),
                user: None,
                passwd: None,
                cacerts: None,
                insecure: false,
                cert: None,
                key: None,
                transport: Transport::Ws,
                profile: Profile {
                    mesh: Some(true),
                    ..Profile::default()
                },
                line: 78,
            },
        ];
        let pin = |credentials, vlan| UserPin {
            credentials,
            profile: Profile {
                vlan: Some(Num(vlan)),
                ..Profile::default()
            },
        };
        let users = HashMap::from([
            ("bob".to_string(), pin(Credentials::Switch, 20)),
            (
                "carol".to_string(),
                pin(Credentials::Path("/lab".into()), 30),
            ),
            ("node-b".to_string(), pin(Credentials::Certificate, 40)),
        ]);
        let user_lines = HashMap::from([
            ("bob".to_string(), 89),
            ("carol".to_string(), 92),
            ("node-b".to_string(), 96),
        ]);
        assert_eq!(
            c,
            Config {
                switch,
                ports,
                users,
                user_lines,
            }
        );
        assert_eq!(c.ports[2].line(), 68);
        // Every key of [switch] is exercised above.
        let keys = keys_of::<SwOptions>();
        assert_eq!(keys.len(), 52);
        for key in keys {
            assert!(FULL.contains(&format!("\n{key} = ")), "{key} untested");
        }
    }

    #[test]
    fn switch_keys_are_the_sw_options() {
        use clap::Args;
        let cmd = SwOptions::augment_args(clap::Command::new("sw"));
        let ids: Vec<_> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
        assert_eq!(keys_of::<SwOptions>(), ids);
        // Each port type's keys, as serde lists them.
        let keys = |kind| {
            let t = PORT_TYPES.iter().find(|t| t.kind == kind).unwrap();
            (t.keys)()
        };
        assert_eq!(keys(PortKind::Tap), ["target", "address", "netmask", "mtu"]);
        assert_eq!(keys(PortKind::Netdev).last(), Some(&"offload"));
        assert_eq!(keys(PortKind::Client).len(), 9);
        assert_eq!(port_types(), "tap, netdev or client");
    }

    #[test]
    fn empty_and_minimal() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.switch, SwOptions::default());
        assert!(c.ports.is_empty());
        let c = Config::parse("[switch]\n", "t.toml").unwrap();
        assert_eq!(c.switch, SwOptions::default());
        // Inline tables and dotted keys are TOML too.
        let c = Config::parse(
            "switch.port = 80\nport = [{type = \"tap\", target = \"ews0\"}]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.switch.port, Some(Num(80)));
        assert_eq!(
            c.ports,
            vec![PortConf::Tap {
                name: "ews0".into(),
                iface: IfConf::default(),
                profile: Profile::default(),
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
            "port 2 (tap): unknown key \"adress\" (did you mean \"address\"?)",
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
            "port 1 (client): Invalid target URL scheme: http://x/ \
             (expected a ws:// or wss:// URL with a host)",
        );
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"ws:///x\"\n",
            3,
            "invalid URL: ws:///x",
        );
        fails(
            "[[port]]\ntype = \"client\"\ntarget = \"wss://a b/\"\n",
            3,
            "invalid URL: wss://a b/",
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
            "invalid offload \"yes\" (auto, xdp or tc)",
        );
    }

    /// `offload` is `true`/`false` or the program.
    #[test]
    fn offload_names_the_program() {
        for (value, want) in [
            ("true", Some(Requested::Auto)),
            ("false", None),
            ("\"auto\"", Some(Requested::Auto)),
            ("\"xdp\"", Some(Requested::Xdp)),
            ("\"tc\"", Some(Requested::Tc)),
        ] {
            let text =
                format!("[[port]]\ntype = \"netdev\"\ntarget = \"eth0\"\noffload = {value}\n");
            let c = Config::parse(&text, "t.toml").unwrap();
            match &c.ports[0] {
                PortConf::Netdev { offload, .. } => assert_eq!(*offload, want, "{value}"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// `isolated` and `mesh` are TOML booleans in every table: a string or a number is refused
    /// (as the control API and `--path` refuse anything but true/false, 1/0), never read as on.
    #[test]
    fn flags_are_booleans_in_every_table() {
        for value in ["\"no\"", "\"false\"", "\"0\"", "0", "1"] {
            for key in ["isolated", "mesh"] {
                let what = if value.starts_with('"') {
                    "string"
                } else {
                    "integer"
                };
                let want = format!("{key} must be true or false, not {what}");
                fails(
                    &format!("[[port]]\ntype = \"tap\"\ntarget = \"t0\"\n{key} = {value}\n"),
                    4,
                    &want,
                );
                fails(
                    &format!("[[path]]\npath = \"/a\"\n{key} = {value}\n"),
                    3,
                    &want,
                );
                fails(&format!("[user.alice]\n{key} = {value}\n"), 2, &want);
            }
        }
    }

    /// A user pin says whose name it is for: `path` (a path's own htpasswd file) or `source`
    /// (`htpasswd`, the default, or `certificate`), not both at once.
    #[test]
    fn user_pins_name_their_credentials() {
        fails(
            "[user.alice]\npath = \"/lab\"\nsource = \"certificate\"\n",
            1,
            "user alice: path = \"/lab\" and source = \"certificate\" do not go together",
        );
        fails("[user.alice]\nsource = \"cert\"\n", 2, "source");
        fails("[user.alice]\npath = \"lab\"\n", 2, "must start with '/'");
        fails(
            "[user.alice]\npaths = \"/lab\"\n",
            2,
            "(did you mean \"path\"?)",
        );
        let c = Config::parse(
            "[user.alice]\nsource = \"htpasswd\"\npath = \"/lab\"\n",
            "t.toml",
        )
        .expect("parses");
        assert_eq!(
            c.users["alice"].credentials,
            Credentials::Path("/lab".into())
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
                profile: Profile::default(),
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
                transport: Transport::Ws,
                profile: Profile::default(),
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
            "[switch]\nnotsent_lowat = 2147483648\n",
            2,
            "notsent_lowat must be from 0 to 2147483647",
        );
        fails(
            "[switch]\ncongestion = \"bb r\"\n",
            2,
            "congestion must be `system` or an algorithm's name",
        );
        fails("[switch]\ncongestion = 1\n", 2, "congestion");
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
        assert_eq!(c.switch.ageout, Some(Num(16)));
        assert_eq!(c.switch.max_macs, Some(Num(1000)));
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
                transport: Transport::Ws,
                profile: Profile::default(),
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
        assert_eq!(suggest("zzzzzz", keys_of::<SwOptions>()), "");
        assert_eq!(
            suggest("ctlprt", keys_of::<SwOptions>()),
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
