//! What a port starts with: the settings of the WebSocket path a client came in on, of the
//! user it authenticated as, of a `[[port]]` table, or the defaults for server ports — its
//! VLAN, isolation, mesh flag and rate limits ([`Policy`]).
//!
//! Each source gives a [`Profile`], whose fields are all optional; they are laid over each
//! other (a user's over its path's over the defaults) and the result applied to the port. A
//! user's settings ([`UserPin`]) are for a name proved with the credentials the pin names
//! ([`Credentials`]): the switch-wide htpasswd file's by default.
//! One spelling everywhere: `--path /lab=vlan:10,isolated,rate-in:10M` on the command line,
//! the same string or a `[[path]]` table in the configuration file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::settings::values::{BitRate, HttpPath, Num, Vlan};
use crate::switch::{Policy, Rate};

/// Settings a port starts with; `None`: not given here (a lower layer's, or off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Access VLAN (0: trunk).
    pub(crate) vlan: Option<Vlan>,
    pub(crate) isolated: Option<bool>,
    pub(crate) mesh: Option<bool>,
    pub(crate) rate_in: Option<BitRate>,
    pub(crate) rate_out: Option<BitRate>,
    /// Burst of the rate limits, in bytes (0: the default).
    pub(crate) burst: Option<Num<u64>>,
    /// Port security trusts the port's stations (default: unless isolated).
    pub(crate) trusted: Option<bool>,
    /// The port's own limit on its stations (0: none of its own).
    pub(crate) max_macs: Option<Num<u32>>,
}

impl Profile {
    /// Each setting as `self` has it, or else as `lower` has it.
    pub(crate) fn over(&self, lower: &Profile) -> Profile {
        Profile {
            vlan: self.vlan.or(lower.vlan),
            isolated: self.isolated.or(lower.isolated),
            mesh: self.mesh.or(lower.mesh),
            rate_in: self.rate_in.or(lower.rate_in),
            rate_out: self.rate_out.or(lower.rate_out),
            burst: self.burst.or(lower.burst),
            trusted: self.trusted.or(lower.trusted),
            max_macs: self.max_macs.or(lower.max_macs),
        }
    }

    /// Sets in `policy` what this profile gives, leaving the rest (a mirror, say) as it is.
    pub(crate) fn apply(&self, policy: &mut Policy) {
        if let Some(v) = self.vlan {
            policy.vlan = (v.0 != 0).then_some(v.0);
        }
        if let Some(i) = self.isolated {
            policy.isolated = i;
        }
        if let Some(m) = self.mesh {
            policy.mesh = m;
        }
        if let Some(t) = self.trusted {
            policy.trusted = Some(t);
        }
        if let Some(n) = self.max_macs {
            policy.max_macs = Some(n.0);
        }
        let burst = self.burst.map(|b| b.0);
        let rate = |given: Option<BitRate>, old: Option<Rate>| match (given, burst) {
            (Some(BitRate(0)), _) => None,
            (Some(BitRate(r)), b) => Some(Rate::new(r, b.unwrap_or(0))),
            (None, Some(b)) => old.map(|o| Rate::new(o.bits_per_sec, b)),
            (None, None) => old,
        };
        policy.rate_in = rate(self.rate_in, policy.rate_in);
        policy.rate_out = rate(self.rate_out, policy.rate_out);
    }

    /// The policy of a new port with this profile.
    pub(crate) fn policy(&self) -> Policy {
        let mut p = Policy::default();
        self.apply(&mut p);
        p
    }

    /// Reads one `KEY[:VALUE]` setting of a `--path` (`vlan:10`, `isolated`, `rate-in:10M`).
    fn set(&mut self, key: &str, value: Option<&str>) -> Result<bool, String> {
        let need = || value.ok_or_else(|| format!("{key} needs a value ({key}:VALUE)"));
        // `isolated` alone is `isolated:true`; the values are those of the control API and the
        // configuration file's tables, nothing else.
        let flag = || match value {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(v) => Err(format!(
                "{key} must be true or false (or 1 or 0), not {v:?}"
            )),
        };
        let what = |e: String| format!("{key} {e}");
        match key {
            "vlan" => self.vlan = Some(need()?.parse().map_err(what)?),
            "isolated" => self.isolated = Some(flag()?),
            "mesh" => self.mesh = Some(flag()?),
            "rate-in" | "rate_in" => self.rate_in = Some(need()?.parse().map_err(what)?),
            "rate-out" | "rate_out" => self.rate_out = Some(need()?.parse().map_err(what)?),
            "burst" => self.burst = Some(need()?.parse().map_err(what)?),
            "trusted" => self.trusted = Some(flag()?),
            "max-macs" | "max_macs" => self.max_macs = Some(need()?.parse().map_err(what)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// One WebSocket path the switch serves, and what its clients' ports start with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathSpec {
    pub(crate) path: String,
    pub(crate) profile: Profile,
    /// Its own htpasswd file, instead of `--htpasswd`.
    pub(crate) htpasswd: Option<PathBuf>,
}

impl PathSpec {
    /// `/`, with no settings of its own: the path served when none is given.
    pub(crate) fn root() -> PathSpec {
        PathSpec {
            path: "/".into(),
            ..PathSpec::default()
        }
    }
}

impl FromStr for PathSpec {
    type Err = String;

    /// `PATH` or `PATH=SETTING,SETTING…`, settings being `vlan:N`, `isolated`, `mesh`,
    /// `rate-in:RATE`, `rate-out:RATE`, `burst:BYTES`, `trusted`, `max-macs:N` and
    /// `htpasswd:FILE`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, settings) = match s.split_once('=') {
            Some((p, rest)) => (p, Some(rest)),
            None => (s, None),
        };
        let mut spec = PathSpec {
            path: path.parse::<HttpPath>()?.0,
            ..PathSpec::default()
        };
        for item in settings.into_iter().flat_map(|r| r.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once(':') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            if key == "htpasswd" {
                match value {
                    Some(f) if !f.is_empty() => spec.htpasswd = Some(PathBuf::from(f)),
                    _ => return Err("htpasswd needs a file name (htpasswd:FILE)".into()),
                }
            } else if !spec.profile.set(key, value)? {
                return Err(format!(
                    "unknown setting {key:?} of path {path} (vlan, isolated, mesh, rate-in, \
                     rate-out, burst, trusted, max-macs, htpasswd)"
                ));
            }
        }
        Ok(spec)
    }
}

/// A `[[path]]` table of the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathTable {
    path: HttpPath,
    vlan: Option<Vlan>,
    isolated: Option<bool>,
    mesh: Option<bool>,
    rate_in: Option<BitRate>,
    rate_out: Option<BitRate>,
    burst: Option<Num<u64>>,
    trusted: Option<bool>,
    max_macs: Option<Num<u32>>,
    htpasswd: Option<PathBuf>,
}

/// The [`Profile`] of a configuration table that carries its settings (`[[path]]`,
/// `[user.NAME]`): the same keys, laid out once.
macro_rules! profile_of {
    ($t:ident) => {
        Profile {
            vlan: $t.vlan,
            isolated: $t.isolated,
            mesh: $t.mesh,
            rate_in: $t.rate_in,
            rate_out: $t.rate_out,
            burst: $t.burst,
            trusted: $t.trusted,
            max_macs: $t.max_macs,
        }
    };
}

impl From<PathTable> for PathSpec {
    fn from(t: PathTable) -> PathSpec {
        PathSpec {
            path: t.path.0,
            profile: profile_of!(t),
            htpasswd: t.htpasswd,
        }
    }
}

impl<'de> Deserialize<'de> for PathSpec {
    /// A `--path` string, or a table of the same settings.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PathSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path (\"/lab=vlan:10\") or a table")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PathSpec, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PathSpec, A::Error> {
                PathTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(Into::into)
            }
        }
        d.deserialize_any(V)
    }
}

/// Whose name a user pin (`[user.NAME]`) is for: a name means nothing without the credentials
/// it was proved with, and two htpasswd files may each have an alice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// A user of the switch-wide htpasswd file (`--htpasswd`), on a path without a file of its
    /// own: the default.
    #[default]
    Switch,
    /// A user of this path's own htpasswd file (`path = "/lab"`).
    Path(String),
    /// A client certificate's name, where no htpasswd file is asked for (`source =
    /// "certificate"`).
    Certificate,
}

/// A user pinned to settings: `[user.NAME]` of the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserPin {
    /// The credentials the name must come from for the pin to apply.
    pub(crate) credentials: Credentials,
    pub(crate) profile: Profile,
}

impl UserPin {
    /// The pinned settings, if the user proved its name with the credentials the pin is for.
    pub(crate) fn profile_for(&self, from: &Credentials) -> Option<&Profile> {
        (self.credentials == *from).then_some(&self.profile)
    }
}

/// Where a `[user.NAME]`'s name comes from (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    Htpasswd,
    Certificate,
}

/// A `[user.NAME]` table of the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserTable {
    /// The path whose own htpasswd file has the user (default: the switch-wide file).
    path: Option<HttpPath>,
    source: Option<Source>,
    vlan: Option<Vlan>,
    isolated: Option<bool>,
    mesh: Option<bool>,
    rate_in: Option<BitRate>,
    rate_out: Option<BitRate>,
    burst: Option<Num<u64>>,
    trusted: Option<bool>,
    max_macs: Option<Num<u32>>,
}

impl TryFrom<UserTable> for UserPin {
    type Error = String;

    fn try_from(t: UserTable) -> Result<UserPin, String> {
        let credentials = match (t.source, t.path) {
            (Some(Source::Certificate), Some(p)) => {
                return Err(format!(
                    "path = {:?} and source = \"certificate\" do not go together (a client \
                     certificate is the listener's, not a path's)",
                    p.0
                ));
            }
            (Some(Source::Certificate), None) => Credentials::Certificate,
            (_, Some(p)) => Credentials::Path(p.0),
            (_, None) => Credentials::Switch,
        };
        Ok(UserPin {
            credentials,
            profile: profile_of!(t),
        })
    }
}

/// `path = "/"` or `path = ["/a=vlan:10", "/b"]` in `[switch]`.
pub(crate) fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<PathSpec>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let specs = match OneOrMany::deserialize(d)
        .map_err(|_| de::Error::custom("must be a path or an array of paths"))?
    {
        OneOrMany::One(s) => vec![s.parse().map_err(de::Error::custom)?],
        OneOrMany::Many(v) => v
            .iter()
            .map(|s| s.parse().map_err(de::Error::custom))
            .collect::<Result<_, _>>()?,
    };
    Ok(Some(specs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_rates() {
        for (s, n) in [
            ("0", 0),
            ("1500000", 1_500_000),
            ("10M", 10_000_000),
            ("10m", 10_000_000),
            ("1.5G", 1_500_000_000),
            ("100k", 100_000),
        ] {
            assert_eq!(s.parse::<BitRate>(), Ok(BitRate(n)), "{s}");
        }
        for s in ["", "M", "-1", "10X", "1e9", "500G", "nan"] {
            assert!(s.parse::<BitRate>().is_err(), "{s}");
        }
        assert_eq!(BitRate(20_000_000).to_string(), "20M");
        assert_eq!(BitRate(1_234).to_string(), "1234");
    }

    #[test]
    fn path_specs() {
        let p: PathSpec = "/".parse().unwrap();
        assert_eq!(p.path, "/");
        assert_eq!(p.profile, Profile::default());
        let p: PathSpec = "/lab=vlan:10,isolated,rate-in:10M,htpasswd:lab.htpasswd"
            .parse()
            .unwrap();
        assert_eq!(p.path, "/lab");
        assert_eq!(p.profile.vlan, Some(Num(10)));
        assert_eq!(p.profile.isolated, Some(true));
        assert_eq!(p.profile.rate_in, Some(BitRate(10_000_000)));
        assert_eq!(p.htpasswd, Some(PathBuf::from("lab.htpasswd")));
        for bad in [
            "lab",
            "/a=vlan",
            "/a=vlan:5000",
            "/a=colour:red",
            "/a=isolated:maybe",
            "/a=isolated:no",
            "/a=isolated:yes",
            "/a=isolated:",
            "/a=mesh:off",
            "/a=mesh:2",
            "/a=htpasswd:",
            "/a=rate-in:fast",
        ] {
            assert!(bad.parse::<PathSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn path_flags_are_true_false_one_or_zero() {
        for (spec, want) in [
            ("/a=isolated", true),
            ("/a=isolated:true", true),
            ("/a=isolated:1", true),
            ("/a=isolated:false", false),
            ("/a=isolated:0", false),
        ] {
            let p: PathSpec = spec.parse().unwrap();
            assert_eq!(p.profile.isolated, Some(want), "{spec}");
        }
        let e = "/a=mesh:no".parse::<PathSpec>().unwrap_err();
        assert_eq!(e, "mesh must be true or false (or 1 or 0), not \"no\"");
    }

    #[test]
    fn layers_and_policy() {
        let path: PathSpec = "/a=vlan:10,rate-out:8M".parse().unwrap();
        let user = Profile {
            vlan: Some(Num(20)),
            ..Profile::default()
        };
        let p = user.over(&path.profile).policy();
        assert_eq!(p.vlan, Some(20));
        assert_eq!(p.rate_out, Some(Rate::new(8_000_000, 0)));
        assert!(!p.isolated);
        // vlan 0 and rate 0 turn them off.
        let off = Profile {
            vlan: Some(Num(0)),
            rate_out: Some(BitRate(0)),
            ..Profile::default()
        };
        let mut q = p;
        off.apply(&mut q);
        assert_eq!((q.vlan, q.rate_out), (None, None));
    }
}
