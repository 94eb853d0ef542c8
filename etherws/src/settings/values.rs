//! The value types of settings: integers in a range, HTTP paths, bit rates. The command line,
//! the environment, the configuration file and the control API all read values through these,
//! so a bad value gets the same words wherever it comes from.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// An integer option and the range it must be in: `LO..=HI`, within what `T` holds. The
/// command line, the environment and the configuration file all read it through here, so a
/// bad value gets the same words (`must be at least 1, not 0`) wherever it comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Num<T, const LO: u64 = 0, const HI: u64 = { u64::MAX }>(pub(crate) T);

/// The integer types of [`Num`].
pub(crate) trait Int: Copy + fmt::Display + TryFrom<u64> {
    const MAX: u64;
}

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const MAX: u64 = <$t>::MAX as u64;
        }
    )*};
}
int!(u16, u32, u64, usize);

impl<T: Int, const LO: u64, const HI: u64> Num<T, LO, HI> {
    fn new(n: i128) -> Result<Self, String> {
        let hi = HI.min(T::MAX);
        u64::try_from(n)
            .ok()
            .filter(|n| (LO..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .map(Num)
            .ok_or_else(|| match hi {
                u64::MAX => format!("must be at least {LO}, not {n}"),
                _ => format!("must be from {LO} to {hi}, not {n}"),
            })
    }
}

impl<T: Int, const LO: u64, const HI: u64> FromStr for Num<T, LO, HI> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n = s.parse().map_err(|_| "must be an integer".to_string())?;
        Self::new(n)
    }
}

impl<T: Int, const LO: u64, const HI: u64> fmt::Display for Num<T, LO, HI> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de, T: Int, const LO: u64, const HI: u64> Deserialize<'de> for Num<T, LO, HI> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Integer<N>(PhantomData<N>);

        impl<N: TryFrom<i128, Error = String>> Visitor<'_> for Integer<N> {
            type Value = N;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<N, E> {
                N::try_from(n.into()).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<N, E> {
                N::try_from(n.into()).map_err(E::custom)
            }

            fn visit_i128<E: serde::de::Error>(self, n: i128) -> Result<N, E> {
                N::try_from(n).map_err(E::custom)
            }
        }

        d.deserialize_i64(Integer(PhantomData))
    }
}

impl<T: Int, const LO: u64, const HI: u64> TryFrom<i128> for Num<T, LO, HI> {
    type Error = String;

    fn try_from(n: i128) -> Result<Self, String> {
        Self::new(n)
    }
}

/// An HTTP path to serve on, served as it is written (never a pattern): it starts with `/`
/// and holds only what RFC 3986 allows in a path — `/`, letters, digits, `-._~!$&'()*+,;=:@`
/// and `%XX` escapes — so no space, control character, `?`, `#`, `{` or `}`. A segment may
/// not start with `:` or `*`, which the web server's router would take for a pattern (`%3A`
/// and `%2A` say them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HttpPath(pub(crate) String);

/// A character RFC 3986 allows in a path as it is: `pchar` but `%`, and `/`.
fn path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b)
}

impl FromStr for HttpPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("must start with '/', not {s:?}"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'%' {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(format!(
                        "'%' must start a %XX escape (two hex digits): {s:?}"
                    ));
                }
                i += 3;
            } else if path_char(b) {
                i += 1;
            } else {
                let c = s[i..].chars().next().unwrap_or_default();
                return Err(format!(
                    "must hold only '/', letters, digits, -._~!$&'()*+,;=:@ and %XX escapes \
                     (RFC 3986), not {c:?} in {s:?}"
                ));
            }
        }
        if let Some(seg) = s
            .split('/')
            .find(|seg| seg.starts_with(':') || seg.starts_with('*'))
        {
            return Err(format!(
                "a segment must not start with ':' or '*' ({seg:?} in {s:?}; write %3A or %2A)"
            ));
        }
        Ok(HttpPath(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for HttpPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A rate in bits per second: an integer, optionally with a decimal SI suffix (`k`, `M`, `G`:
/// powers of 1000, as `tc` and `iperf3` count), e.g. `10M` or `1.5G`; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BitRate(pub(crate) u64);

impl FromStr for BitRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1e3),
            Some((i, 'm' | 'M')) => (&t[..i], 1e6),
            Some((i, 'g' | 'G')) => (&t[..i], 1e9),
            _ => (t, 1.0),
        };
        let bad = || format!("must be bits per second, e.g. 10M or 1500000, not {s:?}");
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        let bits = v * mult;
        // 400 Gbit/s is more than any port moves; a larger number is a typo.
        if !(0.0..=4e11).contains(&bits) {
            return Err(format!("must be at most 400G, not {s:?}"));
        }
        Ok(BitRate(bits.round() as u64))
    }
}

impl fmt::Display for BitRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            0 => f.write_str("0"),
            _ if b % 1_000_000_000 == 0 => write!(f, "{}G", b / 1_000_000_000),
            _ if b % 1_000_000 == 0 => write!(f, "{}M", b / 1_000_000),
            _ if b % 1_000 == 0 => write!(f, "{}k", b / 1_000),
            _ => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for BitRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BitRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bits per second (an integer, or a string like \"10M\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<BitRate, E> {
                u64::try_from(n)
                    .map(BitRate)
                    .map_err(|_| E::custom(format!("must be at least 0, not {n}")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<BitRate, E> {
                Ok(BitRate(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BitRate, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An access VLAN: 1 to 4094, or 0 for a trunk.
pub(crate) type Vlan = Num<u16, 0, 4094>;

/// The TCP congestion control algorithm of WebSocket connections: `system` (the system's
/// default, `net.ipv4.tcp_congestion_control`) or an algorithm's name as the kernel knows it
/// (`bbr`, `cubic`, `reno`: 1 to 15 letters, digits, `_` or `-`). Kept in place, so that it is
/// `Copy` as the settings that hold it are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Congestion {
    /// The name, NUL-padded; all NULs: `system`.
    name: [u8; Congestion::MAX_NAME],
}

impl Congestion {
    /// The longest name: the kernel's `TCP_CA_NAME_MAX` (16) but its NUL.
    pub(crate) const MAX_NAME: usize = 15;

    /// The system's default.
    pub(crate) const SYSTEM: Congestion = Congestion {
        name: [0; Congestion::MAX_NAME],
    };

    /// `name`, checked at compile time when used in a constant.
    ///
    /// # Panics
    ///
    /// When `name` is not 1 to 15 letters, digits, `_` or `-`.
    #[allow(dead_code, reason = "for a default that names an algorithm")]
    pub(crate) const fn named(name: &str) -> Congestion {
        match Congestion::parse(name.as_bytes()) {
            Some(c) => c,
            None => panic!("not a congestion control algorithm's name"),
        }
    }

    const fn parse(b: &[u8]) -> Option<Congestion> {
        if b.is_empty() || b.len() > Congestion::MAX_NAME {
            return None;
        }
        let mut name = [0; Congestion::MAX_NAME];
        let mut i = 0;
        while i < b.len() {
            if !(b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                return None;
            }
            name[i] = b[i];
            i += 1;
        }
        Some(Congestion { name })
    }

    /// The algorithm's name; `None`: the system's default.
    pub(crate) fn name(&self) -> Option<&str> {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        // Only ASCII was ever stored.
        std::str::from_utf8(&self.name[..len])
            .ok()
            .filter(|n| !n.is_empty())
    }
}

impl FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "system" {
            return Ok(Congestion::SYSTEM);
        }
        Congestion::parse(s.as_bytes()).ok_or_else(|| {
            format!(
                "must be `system` or an algorithm's name (`bbr`, `cubic`, `reno`: 1 to {} \
                 letters, digits, `_` or `-`), not {s:?}",
                Congestion::MAX_NAME
            )
        })
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("system"))
    }
}

impl fmt::Debug for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Congestion({self})")
    }
}

impl<'de> Deserialize<'de> for Congestion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_is_system_or_a_kernel_name() {
        assert_eq!("system".parse(), Ok(Congestion::SYSTEM));
        assert_eq!(Congestion::SYSTEM.name(), None);
        assert_eq!(Congestion::SYSTEM.to_string(), "system");
        for good in [
            "bbr",
            "cubic",
            "reno",
            "dctcp",
            "bbr_2",
            "tcp-x",
            "fifteen_chars_x",
        ] {
            let c: Congestion = good.parse().unwrap();
            assert_eq!((c.name(), c.to_string()), (Some(good), good.into()));
            assert_eq!(Congestion::named(good), c);
        }
        for bad in [
            "",
            "sixteen_chars_xx",
            "bb r",
            "bbr\0",
            "c\u{e9}",
            "a/b",
            "a.b",
        ] {
            let e = bad.parse::<Congestion>().unwrap_err();
            assert!(
                e.starts_with("must be `system` or an algorithm's name"),
                "{bad:?}: {e}"
            );
        }
        const BBR: Congestion = Congestion::named("bbr");
        assert_eq!(BBR.name(), Some("bbr"));
        let t: toml::Value = toml::from_str("c = \"cubic\"").unwrap();
        let c: Congestion = t["c"].clone().try_into().unwrap();
        assert_eq!(c.name(), Some("cubic"));
    }

    #[test]
    fn http_paths_are_literal_uri_paths() {
        for good in [
            "/",
            "/ws",
            "/a/b/",
            "/lab-1_x.y~z",
            "/a%20b",
            "/%7Bx%7D",
            "/%3Ax",
            "/a:b",
            "/a*b",
            "/a@b!$&'()+,;",
        ] {
            assert_eq!(good.parse(), Ok(HttpPath(good.into())), "{good}");
        }
        for (bad, why) in [
            ("", "must start with '/'"),
            ("ws", "must start with '/'"),
            ("/{x}", "not '{'"),
            ("/a{", "not '{'"),
            ("/{*x}", "not '{'"),
            ("/a}", "not '}'"),
            ("/:x", "must not start with ':'"),
            ("/a/*x", "must not start with ':' or '*' (\"*x\""),
            ("/*", "must not start"),
            ("/a\0b", "not '\\0'"),
            ("/a\nb", "not '\\n'"),
            ("/a b", "not ' '"),
            ("/a\tb", "not '\\t'"),
            ("/a?b", "not '?'"),
            ("/a#b", "not '#'"),
            ("/a\\b", "not '\\\\'"),
            ("/\u{e9}", "not '\u{e9}'"),
            ("/\u{202e}x", "not '\\u{202e}'"),
            ("/a%", "%XX escape"),
            ("/a%2", "%XX escape"),
            ("/a%zz", "%XX escape"),
        ] {
            let e = bad.parse::<HttpPath>().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}

/// How a `client` port reaches its peer (`addport … --transport`, `transport` in a file's
/// `[[port]]` and in `addPort`'s options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Transport {
    /// WebSocket over TCP (`ws://`, `wss://`), as always.
    #[default]
    Ws,
    /// HTTP/3 datagrams over QUIC (UDP), to the URL's port; `wss://` URLs only.
    Quic,
    /// QUIC, falling back to WebSocket: not yet (a later step of issue #26).
    Auto,
}

impl Transport {
    /// The name `listPort` and the options use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Quic => "quic",
            Transport::Auto => "auto",
        }
    }

    /// Reads a transport's name; `auto` is refused for now.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ws" => Ok(Transport::Ws),
            "quic" => Ok(Transport::Quic),
            "auto" => Err("transport \"auto\" is not supported yet: use ws or quic".into()),
            other => Err(format!("unknown transport {other:?}: ws or quic")),
        }
    }

    /// Checks that the transport can carry `url`: QUIC needs TLS (`wss://`).
    pub(crate) fn check(self, url: &str) -> Result<Self, String> {
        match self {
            Transport::Auto => Transport::parse("auto"),
            Transport::Quic if !url.starts_with("wss://") => Err(format!(
                "transport quic needs a wss:// URL (QUIC is always encrypted): {url}"
            )),
            t => Ok(t),
        }
    }
}

/// The congestion controller of QUIC connections (`--quic-congestion`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum QuicCongestion {
    /// BBR (quinn's, BBRv1): keeps its rate through random loss.
    #[default]
    Bbr,
    /// CUBIC.
    Cubic,
    /// NewReno.
    #[value(name = "newreno")]
    #[serde(rename = "newreno")]
    NewReno,
}

impl QuicCongestion {
    /// Its name, as `listPort` and the options give it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            QuicCongestion::Bbr => "bbr",
            QuicCongestion::Cubic => "cubic",
            QuicCongestion::NewReno => "newreno",
        }
    }
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    #[test]
    fn quic_needs_wss_and_auto_is_not_yet() {
        assert_eq!(Transport::parse("quic"), Ok(Transport::Quic));
        assert!(
            Transport::parse("auto")
                .unwrap_err()
                .contains("not supported yet")
        );
        assert!(Transport::Quic.check("ws://h/").is_err());
        assert_eq!(Transport::Quic.check("wss://h:1/p"), Ok(Transport::Quic));
        assert_eq!(Transport::Ws.check("ws://h/"), Ok(Transport::Ws));
    }
}
