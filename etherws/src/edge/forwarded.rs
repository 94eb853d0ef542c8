//! Who a client really is when a reverse proxy (nginx, HAProxy) sits in front of the switch.
//!
//! Behind a proxy every connection comes from the proxy's address, so per-address limits,
//! authentication throttling and `listPort` would see one client. For a connection from an
//! address the operator trusts (`--trusted-proxy CIDR`), the client is taken from what the
//! proxy says, and from nothing else:
//!
//! - the PROXY protocol header (v1 text or v2 binary, HAProxy's `send-proxy`/`send-proxy-v2`)
//!   the connection starts with, on a listener with `--proxy-protocol`. Then that is the whole
//!   account: no request header is read (a `LOCAL`/`UNKNOWN` header leaves the connection's own
//!   peer address);
//! - else the one request header the operator's proxy writes (`--proxy-header`:
//!   `X-Forwarded-For`, `Forwarded: for=` (RFC 7239) or `X-Real-IP`): its rightmost entry that
//!   is not itself a trusted proxy. Entries to the left of it were written by the client (or
//!   anyone before it) and prove nothing, which is why the walk goes right to left. The other
//!   two headers are ignored: a proxy passes on what the client sent in them.
//!
//! What an untrusted peer sends in these headers is ignored: it cannot choose its address. A
//! malformed header from a trusted proxy (not ASCII, or a hop that is read, up to the client's,
//! naming no address) is an error (the connection is closed with the reason logged) rather
//! than a guess; what is left of the client's hop is not read.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use clap::ValueEnum;
use ipnet::IpNet;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::base::ip::canonical;

/// A client's address as known: the port is missing when a proxy's header gave none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    pub(crate) ip: IpAddr,
    pub(crate) port: Option<u16>,
}

impl Client {
    /// The client at the other end of a socket (IPv4-mapped addresses as IPv4).
    pub(crate) fn of(peer: SocketAddr) -> Client {
        Client {
            ip: canonical(peer.ip()),
            port: Some(peer.port()),
        }
    }
}

impl fmt::Display for Client {
    /// `198.51.100.2:40000`, `[2001:db8::2]:40000`, or the address alone without a port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// The one request header a trusted proxy names the client in (`--proxy-header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx `$remote_addr` or
    /// `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client` (nginx `$remote_addr`), one address per header line.
    XRealIp,
}

impl ProxyHeader {
    /// The header's name, as HTTP spells it in lower case.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
            ProxyHeader::XRealIp => "x-real-ip",
        }
    }

    /// The header's name, as it is written in messages.
    fn title(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "X-Forwarded-For",
            ProxyHeader::Forwarded => "Forwarded for=",
            ProxyHeader::XRealIp => "X-Real-IP",
        }
    }

    /// The hops the header names, left to right (none without the header).
    fn hops(self, headers: &HeaderMap) -> Result<Vec<Hop<'_>>, Malformed> {
        match self {
            ProxyHeader::XForwardedFor => x_forwarded_for(headers),
            ProxyHeader::Forwarded => forwarded_for(headers),
            ProxyHeader::XRealIp => x_real_ip(headers),
        }
    }
}

/// The proxies whose word about the client is taken, and the header they write it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ProxyHeader,
}

/// Why a trusted proxy's account of the client was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(String);

/// What a connection said about its client before any request: its TCP peer and, when it
/// started with a PROXY header, the client that header named (the peer itself for
/// `LOCAL`/`UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Connection {
    pub(crate) peer: Client,
    pub(crate) proxied: Option<Client>,
}

impl Connection {
    /// A connection without a PROXY header.
    pub(crate) fn plain(peer: Client) -> Connection {
        Connection {
            peer,
            proxied: None,
        }
    }

    /// Whom the connection claims to be for, before any request header: what its PROXY header
    /// named, else its peer. For logs about the connection itself.
    pub(crate) fn shown(&self) -> Client {
        self.proxied.unwrap_or(self.peer)
    }
}

impl TrustedProxies {
    /// From the values of `option` (`--trusted-proxy`): CIDR blocks, or single addresses;
    /// their word is read from `header`.
    pub(crate) fn parse(
        option: &str,
        values: &[String],
        header: ProxyHeader,
    ) -> anyhow::Result<Self> {
        let nets = values
            .iter()
            .map(|v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "invalid --{option} {:?} (want a CIDR such as 127.0.0.1/32, or an address)",
                            crate::base::escape::printable(v)
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(TrustedProxies { nets, header })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client a request on `conn` came from: its peer unless that is a trusted proxy; from
    /// a trusted proxy, whom its PROXY header named if it sent one (and no request header is
    /// read), else the rightmost untrusted hop of the `--proxy-header` header (the leftmost if
    /// every one is trusted; the peer without the header).
    pub(crate) fn client(
        &self,
        conn: Connection,
        headers: &HeaderMap,
    ) -> Result<Client, Malformed> {
        if !self.trusts(conn.peer.ip) {
            return Ok(conn.peer);
        }
        if let Some(named) = conn.proxied {
            return Ok(named);
        }
        // From the right, each hop parsed only when the one to its right was trusted: what is
        // left of the client is the client's own to write, and no concern of the switch's.
        let mut leftmost = None;
        for (written, address) in self.header.hops(headers)?.into_iter().rev() {
            let hop = node(address).ok_or_else(|| bad(self.header.title(), written))?;
            if !self.trusts(hop.ip) {
                return Ok(hop);
            }
            leftmost = Some(hop);
        }
        Ok(leftmost.unwrap_or(conn.peer))
    }
}

/// One hop a forwarding header names, not parsed yet: as written (for an error), and the
/// address in it (`for=`'s value unquoted).
type Hop<'a> = (&'a str, &'a str);

/// A header's value as text; a value that is not ASCII is malformed.
fn text<'a>(value: &'a axum::http::HeaderValue, name: &str) -> Result<&'a str, Malformed> {
    value
        .to_str()
        .map_err(|_| Malformed(format!("{name} is not ASCII")))
}

/// The hops of every `X-Forwarded-For` header, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Result<Vec<Hop<'_>>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let items = text(value, "X-Forwarded-For")?.split(',').map(str::trim);
        hops.extend(items.filter(|i| !i.is_empty()).map(|i| (i, i)));
    }
    Ok(hops)
}

/// The address of every `X-Real-IP` header, in order: one address each.
fn x_real_ip(headers: &HeaderMap) -> Result<Vec<Hop<'_>>, Malformed> {
    headers
        .get_all("x-real-ip")
        .iter()
        .map(|value| text(value, "X-Real-IP").map(|t| (t.trim(), t.trim())))
        .collect()
}

/// The `for=` of every element of every `Forwarded` header, left to right.
fn forwarded_for(headers: &HeaderMap) -> Result<Vec<Hop<'_>>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in text(value, "Forwarded")?.split(',') {
            let Some(node_text) = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            }) else {
                continue;
            };
            hops.push((node_text, node_text.trim_matches('"')));
        }
    }
    Ok(hops)
}

fn bad(what: &str, item: &str) -> Malformed {
    let shown: String = item.chars().take(80).collect();
    Malformed(format!(
        "{what} from a trusted proxy names no address: {:?}",
        crate::base::escape::printable(&shown)
    ))
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn node(text: &str) -> Option<Client> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Client {
            ip: canonical(ip),
            port: None,
        });
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(Client::of(sa));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| Client {
        ip: canonical(ip),
        port: None,
    })
}

/// Longest PROXY header read: v1 is at most 107 bytes; v2 is 16 bytes plus its addresses and
/// TLVs, which HAProxy keeps to a few hundred.
const MAX_PROXY_HEADER: usize = 4096;

/// Time a proxy gets to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Parses the PROXY protocol header `seen` starts with: `Ok(None)` while more bytes are
/// needed, else its length and the client it names (None for `LOCAL`/`UNKNOWN`: the proxy's
/// own connection, e.g. a health check).
pub(crate) fn parse_proxy_header(
    seen: &[u8],
) -> Result<Option<(usize, Option<Client>)>, Malformed> {
    let n = seen.len();
    let prefix_ok = |sig: &[u8]| seen[..n.min(sig.len())] == sig[..n.min(sig.len())];
    if !prefix_ok(V1_PREFIX) && !prefix_ok(V2_SIGNATURE) {
        return Err(Malformed(
            "connection from a trusted proxy without a PROXY header".into(),
        ));
    }
    use ppp::PartialResult;
    let header = ppp::HeaderResult::parse(seen);
    if header.is_incomplete() {
        // A v1 header is one line of at most 107 bytes: once its end (or its limit) is there,
        // more bytes cannot make it whole.
        let v1 = seen.starts_with(V1_PREFIX);
        let line_ended = v1 && seen[..n.min(V1_MAX)].windows(2).any(|w| w == b"\r\n");
        if line_ended || (v1 && n >= V1_MAX) || n >= MAX_PROXY_HEADER {
            return Err(Malformed("malformed or overlong PROXY header".into()));
        }
        return Ok(None);
    }
    match header {
        ppp::HeaderResult::V1(Ok(h)) => Ok(Some((h.header.len(), v1_client(&h.addresses)))),
        ppp::HeaderResult::V2(Ok(h)) => Ok(Some((h.header.len(), v2_client(&h)))),
        ppp::HeaderResult::V1(Err(e)) => Err(Malformed(format!("malformed PROXY v1 header: {e}"))),
        ppp::HeaderResult::V2(Err(e)) => Err(Malformed(format!("malformed PROXY v2 header: {e}"))),
    }
}

/// Reads the PROXY protocol header a connection from a trusted proxy must start with, and
/// returns the client it names (see [`parse_proxy_header`]). Consumes exactly the header;
/// nothing after it.
pub(crate) async fn read_proxy_header(tcp: &mut TcpStream) -> Result<Option<Client>, Malformed> {
    let read = async {
        let mut buf = vec![0u8; MAX_PROXY_HEADER];
        loop {
            let n = tcp
                .peek(&mut buf)
                .await
                .map_err(|e| Malformed(format!("reading the PROXY header: {e}")))?;
            if n == 0 {
                return Err(Malformed("connection closed before a PROXY header".into()));
            }
            let Some((len, client)) = parse_proxy_header(&buf[..n])? else {
                // The rest is on its way: the peeked bytes stay queued, so wait a moment.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let mut consumed = vec![0u8; len];
            tcp.read_exact(&mut consumed)
                .await
                .map_err(|e| Malformed(format!("reading the PROXY header: {e}")))?;
            return Ok(client);
        }
    };
    tokio::time::timeout(PROXY_HEADER_TIMEOUT, read)
        .await
        .map_err(|_| Malformed("no PROXY header in time".into()))?
}

fn v1_client(a: &ppp::v1::Addresses) -> Option<Client> {
    match a {
        ppp::v1::Addresses::Tcp4(a) => Some(Client::of(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        ppp::v1::Addresses::Tcp6(a) => Some(Client::of(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_client(h: &ppp::v2::Header<'_>) -> Option<Client> {
    if h.command == ppp::v2::Command::Local {
        return None;
    }
    match &h.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(Client::of(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        ppp::v2::Addresses::IPv6(a) => Some(Client::of(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::guard::tests::headers;

    fn trusted(header: ProxyHeader) -> TrustedProxies {
        TrustedProxies::parse(
            "trusted-proxy",
            &["127.0.0.1/32".into(), "203.0.113.0/24".into(), "::1".into()],
            header,
        )
        .unwrap()
    }

    fn peer(conn: &str) -> Client {
        Client::of(conn.parse().unwrap())
    }

    /// The client of a request with these headers on a connection from `conn`, for a proxy
    /// writing `header`.
    fn seen(header: ProxyHeader, conn: &str, pairs: &[(&str, &str)]) -> Result<String, Malformed> {
        trusted(header)
            .client(Connection::plain(peer(conn)), &headers(pairs))
            .map(|c| c.to_string())
    }

    fn client_of(conn: &str, pairs: &[(&str, &str)]) -> Result<String, Malformed> {
        seen(ProxyHeader::XForwardedFor, conn, pairs)
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        // nginx's $proxy_add_x_forwarded_for: what the client sent, then its real address.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[("x-forwarded-for", "192.0.2.66, 198.51.100.7")]
            ),
            Ok("198.51.100.7".into())
        );
        // Through two trusted proxies.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[
                    ("x-forwarded-for", "198.51.100.7"),
                    ("x-forwarded-for", "203.0.113.9")
                ]
            ),
            Ok("198.51.100.7".into())
        );
        // A client naming a trusted proxy does not skip its own hop.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[("x-forwarded-for", "192.0.2.66, 203.0.113.9, 198.51.100.7")]
            ),
            Ok("198.51.100.7".into())
        );
        // Forwarded, with ports and IPv6, when it is the proxy's header.
        assert_eq!(
            seen(
                ProxyHeader::Forwarded,
                "[::1]:5000",
                &[
                    (
                        "forwarded",
                        r#"for=192.0.2.66, for="[2001:db8::7]:4711";proto=https"#
                    ),
                    ("x-forwarded-for", "192.0.2.1")
                ]
            ),
            Ok("[2001:db8::7]:4711".into())
        );
        assert_eq!(
            seen(
                ProxyHeader::XRealIp,
                "127.0.0.1:5000",
                &[
                    ("x-real-ip", "198.51.100.7"),
                    ("x-forwarded-for", "192.0.2.1")
                ]
            ),
            Ok("198.51.100.7".into())
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[("x-forwarded-for", "203.0.113.1, 203.0.113.2")]
            ),
            Ok("203.0.113.1".into())
        );
    }

    #[test]
    fn only_the_proxys_own_header_is_read() {
        // nginx writes X-Forwarded-For and passes on the client's own Forwarded and X-Real-IP:
        // those are not believed, whatever they say and however malformed.
        let forged = [
            ("forwarded", "for=192.0.2.50"),
            ("x-real-ip", "192.0.2.50"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            client_of("127.0.0.1:5000", &forged),
            Ok("198.51.100.7".into())
        );
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[("forwarded", "for=_hidden"), ("x-real-ip", "garbage")]
            ),
            Ok("127.0.0.1:5000".into())
        );
        // Each header, for a proxy writing it, ignores the other two.
        for (header, want) in [
            (ProxyHeader::Forwarded, "192.0.2.50"),
            (ProxyHeader::XRealIp, "192.0.2.50"),
            (ProxyHeader::XForwardedFor, "198.51.100.7"),
        ] {
            assert_eq!(
                seen(header, "127.0.0.1:5000", &forged),
                Ok(want.into()),
                "{header:?}"
            );
        }
        for (header, present) in [
            (ProxyHeader::Forwarded, ("x-forwarded-for", "192.0.2.1")),
            (ProxyHeader::XRealIp, ("forwarded", "for=192.0.2.1")),
            (ProxyHeader::XForwardedFor, ("x-real-ip", "192.0.2.1")),
        ] {
            assert_eq!(
                seen(header, "127.0.0.1:5000", &[present]),
                Ok("127.0.0.1:5000".into()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn after_a_proxy_header_no_request_header_is_read() {
        let proxies = trusted(ProxyHeader::XForwardedFor);
        let forged = headers(&[
            ("x-forwarded-for", "192.0.2.50"),
            ("forwarded", "for=192.0.2.51"),
        ]);
        // The PROXY header named the client: that is the whole account.
        let named = Connection {
            peer: peer("127.0.0.1:5000"),
            proxied: Some(peer("198.51.100.7:4711")),
        };
        assert_eq!(
            proxies.client(named, &forged),
            Ok(peer("198.51.100.7:4711"))
        );
        // LOCAL/UNKNOWN: the connection's own peer.
        let local = Connection {
            peer: peer("127.0.0.1:5000"),
            proxied: Some(peer("127.0.0.1:5000")),
        };
        assert_eq!(proxies.client(local, &forged), Ok(peer("127.0.0.1:5000")));
        // A malformed header after a PROXY header is no error either: it is not read.
        let garbage = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(
            proxies.client(named, &garbage),
            Ok(peer("198.51.100.7:4711"))
        );
        // From an untrusted peer (the control API's own proxies, say), the PROXY header is not
        // believed either.
        let none = TrustedProxies::default();
        assert_eq!(none.client(named, &forged), Ok(peer("127.0.0.1:5000")));
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        assert_eq!(
            client_of("198.51.100.9:5000", &[("x-forwarded-for", "192.0.2.1")]),
            Ok("198.51.100.9:5000".into())
        );
        assert_eq!(
            client_of("198.51.100.9:5000", &[("x-forwarded-for", "garbage")]),
            Ok("198.51.100.9:5000".into())
        );
        assert_eq!(
            client_of("127.0.0.1:5000", &[]),
            Ok("127.0.0.1:5000".into())
        );
        // No proxies at all (the control API's default): the peer, always.
        let none = TrustedProxies::default();
        let forged = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(
            none.client(Connection::plain(peer("127.0.0.1:5000")), &forged),
            Ok(peer("127.0.0.1:5000"))
        );
    }

    #[test]
    fn what_is_left_of_the_client_is_not_read() {
        // $proxy_add_x_forwarded_for after a client's own garbage: the client is still known.
        assert_eq!(
            client_of(
                "127.0.0.1:5000",
                &[("x-forwarded-for", "garbage, 198.51.100.7")]
            ),
            Ok("198.51.100.7".into())
        );
        assert_eq!(
            seen(
                ProxyHeader::Forwarded,
                "127.0.0.1:5000",
                &[("forwarded", "for=_hidden, for=198.51.100.7")]
            ),
            Ok("198.51.100.7".into())
        );
        // Garbage that a trusted hop vouches for is read, and refused.
        assert!(
            client_of(
                "127.0.0.1:5000",
                &[("x-forwarded-for", "garbage, 203.0.113.9")]
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_headers_from_trusted_proxies_are_errors() {
        for (header, k, v) in [
            (
                ProxyHeader::XForwardedFor,
                "x-forwarded-for",
                "not-an-address",
            ),
            (
                ProxyHeader::XForwardedFor,
                "x-forwarded-for",
                "192.0.2.1, <script>",
            ),
            (ProxyHeader::Forwarded, "forwarded", "for=unknown"),
            (ProxyHeader::Forwarded, "forwarded", "for=_hidden"),
            (ProxyHeader::XRealIp, "x-real-ip", "192.0.2.1, 192.0.2.2"),
            (ProxyHeader::XRealIp, "x-real-ip", ""),
        ] {
            assert!(
                seen(header, "127.0.0.1:5000", &[(k, v)]).is_err(),
                "{k}: {v}"
            );
        }
        let e = TrustedProxies::parse(
            "ctl-trusted-proxy",
            &["10.0.0.0/33".into()],
            ProxyHeader::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--ctl-trusted-proxy \"10.0.0.0/33\""), "{e}");
    }

    #[test]
    fn proxy_header_values() {
        for (text, want) in [
            ("x-forwarded-for", ProxyHeader::XForwardedFor),
            ("forwarded", ProxyHeader::Forwarded),
            ("x-real-ip", ProxyHeader::XRealIp),
        ] {
            assert_eq!(ProxyHeader::from_str(text, false), Ok(want));
            assert_eq!(want.name(), text);
            #[derive(Deserialize)]
            struct T {
                h: ProxyHeader,
            }
            let t: T = toml::from_str(&format!("h = {text:?}")).unwrap();
            assert_eq!(t.h, want);
        }
        assert!(ProxyHeader::from_str("x-forwarded", false).is_err());
        assert_eq!(ProxyHeader::default(), ProxyHeader::XForwardedFor);
    }

    #[tokio::test]
    async fn proxy_headers_v1_and_v2_are_read_exactly() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let v2 = {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(&[0x21, 0x11, 0, 12]);
            h.extend_from_slice(&[198, 51, 100, 7, 192, 0, 2, 1]);
            h.extend_from_slice(&4711u16.to_be_bytes());
            h.extend_from_slice(&443u16.to_be_bytes());
            h
        };
        // What each input must give: Some(client named, if any), or None for an error.
        let cases: Vec<(Vec<u8>, Option<Option<&str>>)> = vec![
            (
                b"PROXY TCP4 198.51.100.7 192.0.2.1 4711 443\r\nGET".to_vec(),
                Some(Some("198.51.100.7:4711")),
            ),
            (b"PROXY UNKNOWN\r\nGET".to_vec(), Some(None)),
            (
                [v2.as_slice(), b"GET"].concat(),
                Some(Some("198.51.100.7:4711")),
            ),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), None),
            (b"PROXY TCP4 1.2.3\r\nGET".to_vec(), None),
        ];
        for (bytes, want) in cases {
            let mut out = TcpStream::connect(addr).await.unwrap();
            let (mut sock, _) = listener.accept().await.unwrap();
            out.write_all(&bytes).await.unwrap();
            let got = read_proxy_header(&mut sock)
                .await
                .map(|c| c.map(|c| c.to_string()))
                .ok();
            let want = want.map(|c| c.map(String::from));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&bytes));
            if got.is_some() {
                let mut rest = [0u8; 3];
                sock.read_exact(&mut rest).await.unwrap();
                assert_eq!(&rest, b"GET");
            }
        }
    }
}
