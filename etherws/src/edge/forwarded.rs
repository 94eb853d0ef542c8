//! Who a client really is when a reverse proxy (nginx, HAProxy) sits in front of the switch.
//!
//! Behind a proxy every connection comes from the proxy's address, so per-address limits,
//! authentication throttling and `listPort` would see one client. For a connection from an
//! address the operator trusts (`--trusted-proxy CIDR`), the client is taken from what the
//! proxy says:
//!
//! - the PROXY protocol header (v1 text or v2 binary, HAProxy's `send-proxy`/`send-proxy-v2`)
//!   the connection starts with, on a listener with `--proxy-protocol`;
//! - the `Forwarded: for=` (RFC 7239) or else `X-Forwarded-For` request header: the rightmost
//!   entry that is not itself a trusted proxy. Entries to the left of it were written by the
//!   client (or anyone before it) and prove nothing, which is why the walk goes right to left.
//!
//! What an untrusted peer sends in these headers is ignored: it cannot choose its address. A
//! malformed header from a trusted proxy is an error (the connection is closed with the reason
//! logged) rather than a guess.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
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

/// The proxies whose word about the client is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

/// Why a trusted proxy's account of the client was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(String);

impl TrustedProxies {
    /// From `--trusted-proxy` values: CIDR blocks, or single addresses.
    pub(crate) fn parse(values: &[String]) -> anyhow::Result<Self> {
        values
            .iter()
            .map(|v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "invalid --trusted-proxy {v:?} (want a CIDR such as 127.0.0.1/32)"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(TrustedProxies)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client a request came from: `conn` (the connection's client) unless that is a
    /// trusted proxy, in which case the rightmost untrusted hop of `Forwarded` (or, without
    /// it, `X-Forwarded-For`); the leftmost hop if every one is trusted. No header: `conn`.
    pub(crate) fn client(&self, conn: Client, headers: &HeaderMap) -> Result<Client, Malformed> {
        if !self.trusts(conn.ip) {
            return Ok(conn);
        }
        let hops = if headers.contains_key("forwarded") {
            forwarded_for(headers)?
        } else if headers.contains_key("x-forwarded-for") {
            x_forwarded_for(headers)?
        } else {
            return Ok(conn);
        };
        Ok(hops
            .iter()
            .rev()
            .find(|c| !self.trusts(c.ip))
            .or(hops.first())
            .copied()
            .unwrap_or(conn))
    }
}

/// The hops of every `X-Forwarded-For` header, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Result<Vec<Client>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value
            .to_str()
            .map_err(|_| Malformed("X-Forwarded-For is not ASCII".into()))?;
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            hops.push(node(item).ok_or_else(|| bad("X-Forwarded-For", item))?);
        }
    }
    Ok(hops)
}

/// The `for=` of every element of every `Forwarded` header, left to right.
fn forwarded_for(headers: &HeaderMap) -> Result<Vec<Client>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let text = value
            .to_str()
            .map_err(|_| Malformed("Forwarded is not ASCII".into()))?;
        for element in text.split(',') {
            let Some(node_text) = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            }) else {
                continue;
            };
            let unquoted = node_text.trim_matches('"');
            hops.push(node(unquoted).ok_or_else(|| bad("Forwarded for=", node_text))?);
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

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["127.0.0.1/32".into(), "203.0.113.0/24".into(), "::1".into()])
            .unwrap()
    }

    fn client_of(conn: &str, pairs: &[(&str, &str)]) -> Result<String, Malformed> {
        let conn = Client::of(conn.parse().unwrap());
        trusted()
            .client(conn, &headers(pairs))
            .map(|c| c.to_string())
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
        // Forwarded wins over X-Forwarded-For, with ports and IPv6.
        assert_eq!(
            client_of(
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
    }

    #[test]
    fn malformed_headers_from_trusted_proxies_are_errors() {
        for (k, v) in [
            ("x-forwarded-for", "not-an-address"),
            ("x-forwarded-for", "192.0.2.1, <script>"),
            ("forwarded", "for=unknown"),
            ("forwarded", "for=_hidden"),
        ] {
            assert!(client_of("127.0.0.1:5000", &[(k, v)]).is_err(), "{k}: {v}");
        }
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
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
