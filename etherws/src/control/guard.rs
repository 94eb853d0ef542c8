//! Who may call the control API from where: the checks that keep a web page in the
//! administrator's browser from driving the switch.
//!
//! A page on any site can make the browser POST to `http://127.0.0.1:7867/ctl`; it cannot read
//! the answer, but it does not need to — `addPort client wss://attacker/` is enough to join
//! the LAN. Three checks close that, each cheap and made before anything else:
//!
//! - **Content-Type** must be `application/json` (what etherws 1.3's and this `ctl` send). A
//!   page can only send that cross-site after a CORS preflight, which the switch never grants.
//! - **Origin**, when a browser sends one, must be the control API's own origin.
//! - **Host** must name the control API: an address it listens on, `localhost` on a loopback
//!   listener, the `--ctlhost` name, or a name the operator allowed (`--ctlallowhost`). This is
//!   what defeats DNS rebinding, where the attacker's own name resolves to 127.0.0.1 and the
//!   page is same-origin as far as the browser knows. It applies while the control API has no
//!   password: a rebinding page cannot know one.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode, header};

use crate::base::escape::printable;
use crate::base::ip::canonical;

/// What the guard knows about the control listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// Served over TLS: the API's origin is `https://…`.
    pub(crate) tls: bool,
    /// Host names (lower case, no trailing dot) besides the listener's own addresses.
    pub(crate) allowed_hosts: Vec<String>,
    /// Check `Host` (no control password is configured).
    pub(crate) check_host: bool,
}

/// A refused request: the status and the one-line reason for the caller and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

fn refuse(status: StatusCode, reason: String) -> Refusal {
    Refusal { status, reason }
}

/// `host[:port]` split, brackets of an IPv6 literal removed, name lower-cased and without a
/// trailing dot. None if malformed.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

impl Guard {
    /// Checks a request to the control listener that accepted it on `local` (the address the
    /// client connected to).
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        local: IpAddr,
        post: bool,
    ) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .map(|h| std::str::from_utf8(h.as_bytes()).unwrap_or("\u{fffd}"))
            .unwrap_or("");
        if self.check_host {
            self.check_host(host, local)?;
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = std::str::from_utf8(origin.as_bytes()).unwrap_or("\u{fffd}");
            if !self.same_origin(origin, host) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin request from {} refused", printable(origin)),
                ));
            }
        }
        if post {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Err(refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type must be application/json, not {:?}",
                        printable(ct)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_host(&self, host: &str, local: IpAddr) -> Result<(), Refusal> {
        let misdirected = || {
            refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {:?} is not a name of this control API (allow it with --ctlallowhost)",
                    printable(host)
                ),
            )
        };
        let (name, _port) = split_host_port(host).ok_or_else(misdirected)?;
        let ok = match name.parse::<IpAddr>() {
            Ok(ip) => {
                canonical(ip) == canonical(local) || self.allowed_hosts.contains(&ip.to_string())
            }
            Err(_) => {
                (name == "localhost" && canonical(local).is_loopback())
                    || self.allowed_hosts.contains(&name)
            }
        };
        if ok { Ok(()) } else { Err(misdirected()) }
    }

    /// True if `origin` (`scheme://host[:port]`) is the control API's own origin, reached as
    /// `host` (the request's Host header).
    fn same_origin(&self, origin: &str, host: &str) -> bool {
        let scheme = if self.tls { "https" } else { "http" };
        let default = if self.tls { 443 } else { 80 };
        let Some(authority) = origin
            .strip_prefix(scheme)
            .and_then(|o| o.strip_prefix("://"))
        else {
            return false; // "null", another scheme, garbage
        };
        match (split_host_port(authority), split_host_port(host)) {
            (Some((oh, op)), Some((hh, hp))) => {
                oh == hh && op.unwrap_or(default) == hp.unwrap_or(default)
            }
            _ => false,
        }
    }
}

/// Normalises a `--ctlallowhost` value as the guard compares it.
pub(crate) fn allowed_host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map from name/value pairs (also used by `proxied`'s tests).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn guard() -> Guard {
        Guard {
            tls: false,
            allowed_hosts: vec!["switch.example".into()],
            check_host: true,
        }
    }

    fn status(h: &[(&str, &str)]) -> Option<u16> {
        guard()
            .check(&headers(h), LO, true)
            .err()
            .map(|r| r.status.as_u16())
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn what_ctl_sends_passes() {
        assert_eq!(status(&[("host", "127.0.0.1:7867"), JSON]), None);
        assert_eq!(
            status(&[
                ("host", "localhost:7867"),
                ("content-type", "Application/JSON; charset=utf-8")
            ]),
            None
        );
        assert_eq!(status(&[("host", "Switch.Example."), JSON]), None);
        assert_eq!(
            status(&[
                ("host", "127.0.0.1:7867"),
                ("origin", "http://127.0.0.1:7867"),
                JSON
            ]),
            None
        );
    }

    #[test]
    fn what_a_web_page_sends_is_refused() {
        // A simple cross-site POST.
        assert_eq!(
            status(&[
                ("host", "127.0.0.1:7867"),
                ("content-type", "text/plain;charset=UTF-8")
            ]),
            Some(415)
        );
        assert_eq!(status(&[("host", "127.0.0.1:7867")]), Some(415));
        // Cross-origin, or an opaque origin.
        for origin in [
            "http://attacker.example",
            "null",
            "http://127.0.0.1:8000",
            "https://127.0.0.1:7867",
        ] {
            assert_eq!(
                status(&[("host", "127.0.0.1:7867"), ("origin", origin), JSON]),
                Some(403),
                "{origin}"
            );
        }
        // DNS rebinding: same origin as far as the browser knows, but not our name.
        assert_eq!(
            status(&[
                ("host", "rebind.attacker.example:7867"),
                ("origin", "http://rebind.attacker.example:7867"),
                JSON
            ]),
            Some(421)
        );
        assert_eq!(status(&[("host", "192.0.2.9:7867"), JSON]), Some(421));
        assert_eq!(status(&[JSON]), Some(421));
        assert_eq!(status(&[("host", "[::1"), JSON]), Some(421));
    }

    #[test]
    fn host_is_not_checked_with_a_password_and_localhost_only_on_loopback() {
        let mut g = guard();
        let h = headers(&[("host", "localhost"), JSON]);
        assert!(g.check(&h, "192.0.2.1".parse().unwrap(), true).is_err());
        g.check_host = false;
        assert!(
            g.check(&headers(&[("host", "anything"), JSON]), LO, true)
                .is_ok()
        );
        // GET /metrics has no body to check.
        assert!(
            guard()
                .check(&headers(&[("host", "127.0.0.1")]), LO, false)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let g = guard();
        assert!(
            g.check(&headers(&[("host", "[2001:db8::1]:7867"), JSON]), v6, true)
                .is_ok()
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(
            g.check(&headers(&[("host", "127.0.0.1:7867"), JSON]), mapped, true)
                .is_ok()
        );
    }
}
