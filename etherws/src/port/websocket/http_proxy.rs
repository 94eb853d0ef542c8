//! HTTP CONNECT proxies for outgoing WebSocket connections.
//!
//! Like etherws 1.3 (which let `urllib2.getproxies()` and `proxy_bypass()` decide), a `client`
//! port honours the switch process's environment: `http_proxy` for `ws://` targets,
//! `https_proxy` for `wss://` ones (the upper-case spellings too; a lower-case variable that is
//! set wins over the upper-case one, even when empty, as with curl), and `no_proxy`/`NO_PROXY`
//! exempts hosts with curl's rules. Both schemes tunnel through the proxy with `CONNECT`; for
//! `wss://` the TLS session then runs end to end inside the tunnel, set up by the caller on the
//! returned stream. Only `http://` proxy URLs are supported (no TLS to the proxy itself).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Port of an `http://` proxy URL that names none (curl's default; 1080 is for SOCKS).
const DEFAULT_PORT: u16 = 80;

/// Largest proxy answer head (status line and headers) read before giving up.
const MAX_HEAD: usize = 8 * 1024;

/// A proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Host name or IP address, IPv6 without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// User name and password, percent-decoded.
    pub(crate) auth: Option<(String, String)>,
}

impl Proxy {
    /// Parses a proxy URL from the environment: `[http://][user[:password]@]host[:port][/]`,
    /// IPv6 hosts bracketed. Error messages never repeat the credentials.
    pub(crate) fn parse(url: &str) -> Result<Proxy> {
        let url = url.trim();
        if url.is_empty() {
            bail!("empty proxy URL");
        }
        // A scheme is letters, digits, `+`, `-` and `.` (RFC 3986): `user:pa://ss@host` has
        // none, and its text must not be quoted back as one (it holds the password).
        let scheme_end = url.find("://").filter(|&i| {
            i > 0
                && url[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let rest = match scheme_end {
            None => url,
            Some(i) => match url[..i].to_ascii_lowercase().as_str() {
                "http" => &url[i + 3..],
                "https" => bail!(
                    "https:// proxy URLs (TLS to the proxy) are not supported; \
                     use an http:// proxy (wss:// still runs TLS end to end through it)"
                ),
                scheme => bail!(
                    "unsupported proxy URL scheme {:?}: only http:// proxies are supported",
                    format!("{scheme}://")
                ),
            },
        };
        // The last '@' ends the credentials, so that a password with a raw '/' or '@' in it
        // still parses (and is not quoted back in an error).
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let hostport = match hostpart.find(['/', '?', '#']) {
            Some(end) => &hostpart[..end],
            None => hostpart,
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let Some((inner, after)) = bracketed.split_once(']') else {
                bail!("proxy URL has an unclosed '[' in its host");
            };
            if inner.parse::<Ipv6Addr>().is_err() {
                bail!("proxy URL host [{inner}] is not an IPv6 address");
            }
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => bail!("proxy URL has {after:?} after its IPv6 host"),
                },
            };
            (inner, port)
        } else {
            if hostport.matches(':').count() > 1 {
                bail!("IPv6 proxy addresses must be bracketed: http://[address]:port");
            }
            let (host, port) = match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            };
            if host.is_empty() {
                bail!("proxy URL has no host");
            }
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                bail!("proxy URL host {host:?} is not a valid host name or address");
            }
            (host, port)
        };
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => bail!("proxy URL port {port:?} is not a port number"),
            },
        };
        let auth = match userinfo {
            None | Some("") => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((percent_decode(user)?, percent_decode(password)?))
            }
        };
        Ok(Proxy {
            host: host.to_owned(),
            port,
            auth,
        })
    }
}

/// `host:port`, as logged and quoted in errors; never the credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&authority(&self.host, self.port))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Result<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| anyhow!("proxy URL credentials are not UTF-8 once percent-decoded"))
}

/// `host:port`, an IPv6 host bracketed (whether or not it came bracketed).
fn authority(host: &str, port: u16) -> String {
    let host = unbracket(host);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The proxy for a connection to `host:port` (`tls` = wss://), reading variables through `env`
/// (so tests don't touch the process env). None when unset, empty, or bypassed by no_proxy.
///
/// A bypassed target never looks at the proxy URL, so a malformed one only fails the targets
/// that would use it.
pub(crate) fn proxy_for(
    env: impl Fn(&str) -> Option<String>,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<Option<Proxy>> {
    let names = if tls {
        ["https_proxy", "HTTPS_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY"]
    };
    let Some((name, url)) = names
        .iter()
        .find_map(|&name| env(name).map(|value| (name, value)))
    else {
        return Ok(None);
    };
    if url.trim().is_empty() {
        return Ok(None);
    }
    let no_proxy = env("no_proxy").or_else(|| env("NO_PROXY"));
    if bypass(no_proxy.as_deref().unwrap_or(""), host, port) {
        tracing::debug!(
            target = %authority(host, port),
            "no_proxy exempts the target from {name}"
        );
        return Ok(None);
    }
    Proxy::parse(&url)
        .map(Some)
        .map_err(|e| anyhow!("bad proxy in ${name}: {e}"))
}

/// Does `no_proxy` (the variable's value) exempt host:port?
///
/// curl's rules: comma-separated entries, whitespace around them ignored; `*` exempts
/// everything; a name matches the host exactly or as a domain suffix (a leading `.` or `*.`
/// changes nothing), ignoring case; an IP address or CIDR block matches IP hosts (a name entry
/// never does); `entry:port` (`[v6]:port`) matches only that port.
pub(crate) fn bypass(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = unbracket(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(entry, &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    let (name, entry_port) = if let Some(bracketed) = entry.strip_prefix('[') {
        let Some((inner, after)) = bracketed.split_once(']') else {
            return false;
        };
        match after {
            "" => (inner, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (inner, Some(p)),
                None => return false,
            },
        }
    } else if entry.matches(':').count() == 1 {
        let (name, p) = entry.split_once(':').expect("one colon");
        (name, Some(p))
    } else {
        // No colon, or a bare IPv6 address (or block), which cannot carry a port.
        (entry, None)
    };
    if let Some(p) = entry_port {
        if p.parse::<u16>() != Ok(port) {
            return false;
        }
    }
    if let Some((addr, bits)) = name.split_once('/') {
        return match (ip, addr.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(addr) = name.parse::<IpAddr>() {
        return ip == Some(addr);
    }
    if ip.is_some() {
        return false;
    }
    let name = name.to_ascii_lowercase();
    let name = name
        .strip_prefix("*.")
        .unwrap_or(&name)
        .trim_start_matches('.')
        .trim_end_matches('.');
    if name.is_empty() {
        return false;
    }
    host == name
        || host
            .strip_suffix(name)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Opens a TCP connection to host:port: through the proxy the process environment names
/// (std::env::var), or directly. Sets TCP_NODELAY. Errors are one-line and readable. Logs
/// which proxy is used, never credentials.
pub(crate) async fn connect(host: &str, port: u16, tls: bool) -> Result<TcpStream> {
    connect_env(|name| std::env::var(name).ok(), host, port, tls).await
}

/// [`connect`] with the environment read through `env`.
async fn connect_env(
    env: impl Fn(&str) -> Option<String>,
    host: &str,
    port: u16,
    tls: bool,
) -> Result<TcpStream> {
    let host = unbracket(host);
    let target = authority(host, port);
    let proxy = proxy_for(env, tls, host, port)?;
    let Some(proxy) = proxy else {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| anyhow!("cannot connect to {target}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| anyhow!("cannot set TCP_NODELAY on connection to {target}: {e}"))?;
        return Ok(stream);
    };
    tracing::info!(%proxy, %target, "connecting through proxy");
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| anyhow!("cannot connect to proxy {proxy}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| anyhow!("cannot set TCP_NODELAY on connection to proxy {proxy}: {e}"))?;
    handshake(&mut stream, &proxy, host, port).await?;
    Ok(stream)
}

/// The CONNECT handshake on an already-open stream to the proxy: sends `CONNECT host:port
/// HTTP/1.1` with `Host` and, when the proxy has credentials, `Proxy-Authorization: Basic`;
/// reads the answer's head without consuming any tunnel byte after it; requires a 2xx status.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<()> {
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.auth {
        let token = STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| anyhow!("cannot send CONNECT to {target} to proxy {proxy}: {e}"))?;
    let head = read_head(stream)
        .await
        .map_err(|e| anyhow!("proxy {proxy} did not answer CONNECT to {target}: {e}"))?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = printable(line);
    let mut words = line.split_whitespace();
    let code = match (words.next(), words.next()) {
        (Some(version), Some(code))
            if version.starts_with("HTTP/")
                && code.len() == 3
                && code.bytes().all(|b| b.is_ascii_digit()) =>
        {
            code
        }
        _ => bail!("proxy {proxy} answered CONNECT to {target} with a non-HTTP line: {line:?}"),
    };
    if !code.starts_with('2') {
        let hint = match (code, &proxy.auth) {
            ("407", None) => " (the proxy wants credentials: http://user:password@host:port)",
            ("401" | "407", Some(_)) => " (check the credentials in the proxy URL)",
            _ => "",
        };
        bail!("proxy {proxy} refused CONNECT to {target}: {line}{hint}");
    }
    tracing::debug!(%proxy, %target, "proxy tunnel open: {line}");
    Ok(())
}

/// The status line, trimmed, control characters replaced and length capped, for messages.
fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect()
}

/// Reads an HTTP answer head, up to and including the empty line that ends it. Bytes are
/// peeked first and only the head's own are consumed, so tunnel data the proxy sent in the
/// same segment stays in the socket for the caller.
async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let room = (MAX_HEAD - head.len()).min(buf.len());
        let n = stream.peek(&mut buf[..room]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the answer headers",
            ));
        }
        // The end marker may straddle what was consumed before and what is peeked now.
        let keep = head.len().min(2);
        let mut window = head[head.len() - keep..].to_vec();
        window.extend_from_slice(&buf[..n]);
        let (take, done) = match head_end(&window) {
            Some(end) => (end - keep, true),
            None => (n, false),
        };
        stream.read_exact(&mut buf[..take]).await?;
        head.extend_from_slice(&buf[..take]);
        if done {
            return Ok(head);
        }
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("answer headers exceed {MAX_HEAD} bytes"),
            ));
        }
    }
}

/// Where the head ends in `bytes`: just past the first empty line (`\n\r\n` or `\n\n`).
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i] != b'\n' {
            None
        } else if bytes.get(i + 1) == Some(&b'\n') {
            Some(i + 2)
        } else if bytes.get(i + 1..i + 3) == Some(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    fn proxy(host: &str, port: u16, auth: Option<(&str, &str)>) -> Proxy {
        Proxy {
            host: host.into(),
            port,
            auth: auth.map(|(u, p)| (u.into(), p.into())),
        }
    }

    #[test]
    fn parse_accepts() {
        let cases: &[(&str, Proxy)] = &[
            ("proxy:3128", proxy("proxy", 3128, None)),
            ("http://proxy:3128", proxy("proxy", 3128, None)),
            ("http://proxy:3128/", proxy("proxy", 3128, None)),
            (
                "  HTTP://Proxy.example:8080  ",
                proxy("Proxy.example", 8080, None),
            ),
            ("http://proxy", proxy("proxy", 80, None)),
            ("proxy", proxy("proxy", 80, None)),
            ("http://proxy:/", proxy("proxy", 80, None)),
            ("http://10.0.0.1:3128", proxy("10.0.0.1", 3128, None)),
            (
                "http://[2001:db8::1]:3128",
                proxy("2001:db8::1", 3128, None),
            ),
            ("[::1]", proxy("::1", 80, None)),
            (
                "http://user:pa%3Ass@proxy:3128",
                proxy("proxy", 3128, Some(("user", "pa:ss"))),
            ),
            (
                "user:secret@proxy:3128",
                proxy("proxy", 3128, Some(("user", "secret"))),
            ),
            (
                "http://us%40er%2fx:p%25%zz@proxy",
                proxy("proxy", 80, Some(("us@er/x", "p%%zz"))),
            ),
            ("http://user@proxy", proxy("proxy", 80, Some(("user", "")))),
            (
                "http://u:p@ss/w#rd@proxy:1/path",
                proxy("proxy", 1, Some(("u", "p@ss/w#rd"))),
            ),
            (
                "http://%C3%A9t%C3%A9:x@[::1]:8",
                proxy("::1", 8, Some(("été", "x"))),
            ),
            // A password with `://` in it is not a scheme (nor quoted back as one).
            (
                "alice:s3cret://x@proxy.example:3128",
                proxy("proxy.example", 3128, Some(("alice", "s3cret://x"))),
            ),
        ];
        for (url, want) in cases {
            let got = Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(&got, want, "{url}");
        }
    }

    #[test]
    fn parse_refuses() {
        let cases: &[(&str, &str)] = &[
            ("https://proxy:443", "https:// proxy URLs"),
            ("HTTPS://user:secret@proxy", "not supported"),
            ("socks5://proxy:1080", "unsupported proxy URL scheme"),
            ("", "empty"),
            ("   ", "empty"),
            ("http://", "no host"),
            ("http://:3128", "no host"),
            ("http://user:secret@", "no host"),
            ("http://proxy:port", "not a port"),
            ("http://proxy:99999", "not a port"),
            ("http://proxy:0", "not a port"),
            ("http://pro xy:1", "not a valid host"),
            ("http://pro\"xy", "not a valid host"),
            ("2001:db8::1:3128", "bracketed"),
            ("http://[::1", "unclosed"),
            ("http://[host]:1", "not an IPv6"),
            ("http://[::1]x", "after its IPv6"),
            ("http://u:%ff@proxy", "UTF-8"),
        ];
        for (url, want) in cases {
            let err = Proxy::parse(url).expect_err(url).to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: leaks the password: {err}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_password() {
        let p = Proxy::parse("http://user:topsecret@proxy:3128").unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert!(debug.contains("user") && debug.contains("3128"), "{debug}");
        assert_eq!(p.to_string(), "proxy:3128");
        assert_eq!(proxy("::1", 8080, None).to_string(), "[::1]:8080");
    }

    #[test]
    fn bypass_table() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 80, false),
            ("  ,  , ", "example.com", 80, false),
            ("*", "example.com", 80, true),
            ("*", "192.0.2.1", 443, true),
            ("example.com", "example.com", 80, true),
            ("example.com", "a.example.com", 80, true),
            ("example.com", "a.b.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            ("example.com", "example.com.evil", 80, false),
            ("example.com", "example.org", 80, false),
            (".example.com", "example.com", 80, true),
            (".example.com", "a.example.com", 80, true),
            (".example.com", "badexample.com", 80, false),
            ("*.example.com", "a.example.com", 80, true),
            ("EXAMPLE.Com", "a.example.COM", 80, true),
            ("example.com.", "example.com", 80, true),
            ("example.com", "example.com.", 80, true),
            ("foo, example.com ,bar", "www.example.com", 80, true),
            ("\texample.com\t", "example.com", 80, true),
            ("foo,bar", "example.com", 80, false),
            ("localhost", "localhost", 8080, true),
            ("192.0.2.1", "192.0.2.1", 80, true),
            ("192.0.2.1", "192.0.2.10", 80, false),
            ("2.1", "192.0.2.1", 80, false),
            ("example.com", "192.0.2.1", 80, false),
            ("192.0.2.0/24", "192.0.2.77", 80, true),
            ("192.0.2.0/24", "192.0.3.1", 80, false),
            ("192.0.2.0/24", "example.com", 80, false),
            ("10.0.0.0/8", "10.255.1.2", 80, true),
            ("0.0.0.0/0", "203.0.113.9", 80, true),
            ("192.0.2.1/32", "192.0.2.1", 80, true),
            ("192.0.2.1/33", "192.0.2.1", 80, false),
            ("192.0.2.0/24", "2001:db8::1", 80, false),
            ("2001:db8::1", "2001:db8::1", 80, true),
            ("2001:db8::1", "[2001:db8::1]", 80, true),
            ("2001:DB8:0::1", "2001:db8::1", 80, true),
            ("[2001:db8::1]", "[2001:db8::1]", 80, true),
            ("2001:db8::/32", "2001:db8:ffff::5", 80, true),
            ("2001:db8::/32", "[2001:db8::5]", 80, true),
            ("2001:db8::/32", "2001:db9::5", 80, false),
            ("::/0", "::1", 80, true),
            ("example.com:8080", "example.com", 8080, true),
            ("example.com:8080", "a.example.com", 8080, true),
            ("example.com:8080", "example.com", 80, false),
            ("192.0.2.1:443", "192.0.2.1", 443, true),
            ("192.0.2.1:443", "192.0.2.1", 80, false),
            ("[2001:db8::1]:443", "2001:db8::1", 443, true),
            ("[2001:db8::1]:443", "2001:db8::1", 80, false),
            ("example.com:x", "example.com", 80, false),
            ("[2001:db8::1", "2001:db8::1", 80, false),
        ];
        for &(no_proxy, host, port, want) in cases {
            assert_eq!(
                bypass(no_proxy, host, port),
                want,
                "no_proxy={no_proxy:?} host={host:?} port={port}"
            );
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn proxy_for_reads_the_right_variable() {
        let p = |vars: &[(&str, &str)], tls: bool, host: &str| {
            proxy_for(env(vars), tls, host, 443)
                .unwrap()
                .map(|p| p.to_string())
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(p(&[], false, "example.com"), None);
        assert_eq!(
            p(&[("http_proxy", "a:1")], false, "example.com"),
            some("a:1")
        );
        assert_eq!(
            p(&[("HTTP_PROXY", "b:2")], false, "example.com"),
            some("b:2")
        );
        let both = [("http_proxy", "a:1"), ("HTTP_PROXY", "b:2")];
        assert_eq!(p(&both, false, "example.com"), some("a:1"));
        // A set but empty lower-case variable turns the proxy off (curl, Python 3).
        let off = [("http_proxy", ""), ("HTTP_PROXY", "b:2")];
        assert_eq!(p(&off, false, "example.com"), None);
        assert_eq!(p(&[("http_proxy", "  ")], false, "example.com"), None);
        // ws:// uses http_proxy, wss:// https_proxy, never the other.
        let split = [("http_proxy", "h:1"), ("https_proxy", "s:2")];
        assert_eq!(p(&split, false, "example.com"), some("h:1"));
        assert_eq!(p(&split, true, "example.com"), some("s:2"));
        assert_eq!(p(&[("http_proxy", "h:1")], true, "example.com"), None);
        assert_eq!(
            p(&[("HTTPS_PROXY", "S:3")], true, "example.com"),
            some("S:3")
        );
        assert_eq!(p(&[("https_proxy", "s:2")], false, "example.com"), None);
        // no_proxy / NO_PROXY, lower case first.
        let np = |no: (&str, &str), host: &str| p(&[("https_proxy", "s:2"), no], true, host);
        assert_eq!(np(("no_proxy", "example.com"), "a.example.com"), None);
        assert_eq!(np(("NO_PROXY", "example.com"), "a.example.com"), None);
        assert_eq!(np(("NO_PROXY", "example.com"), "example.org"), some("s:2"));
        assert_eq!(np(("no_proxy", "*"), "anything"), None);
        let both_np = [
            ("https_proxy", "s:2"),
            ("no_proxy", "example.org"),
            ("NO_PROXY", "example.com"),
        ];
        assert_eq!(p(&both_np, true, "example.com"), some("s:2"));
        assert_eq!(p(&both_np, true, "example.org"), None);
        let port = [("http_proxy", "h:1"), ("no_proxy", "example.com:80")];
        assert_eq!(
            proxy_for(env(&port), false, "example.com", 80).unwrap(),
            None
        );
        assert!(
            proxy_for(env(&port), false, "example.com", 81)
                .unwrap()
                .is_some()
        );
        // Credentials come through; a bad URL is an error naming the variable, unless bypassed.
        let cred = [("http_proxy", "http://u:p%40ss@h:1")];
        let got = proxy_for(env(&cred), false, "x", 80).unwrap().unwrap();
        assert_eq!(got.auth, Some(("u".into(), "p@ss".into())));
        let bad = [("https_proxy", "https://h:1"), ("no_proxy", "good.example")];
        let err = proxy_for(env(&bad), true, "x", 443)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("$https_proxy") && err.contains("https://"),
            "{err}"
        );
        assert_eq!(
            proxy_for(env(&bad), true, "good.example", 443).unwrap(),
            None
        );
    }

    #[test]
    fn head_end_finds_the_empty_line() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nrest"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b"\n\r\n"), Some(3));
        assert_eq!(head_end(b"\n\r"), None);
    }

    /// A fake proxy: accepts one connection, reads the request head, sends `answer` in pieces
    /// (a short pause between them), and returns the request as received.
    async fn fake_proxy(answer: Vec<&'static [u8]>) -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            for (i, piece) in answer.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                conn.write_all(piece).await.unwrap();
            }
            // Keep the connection open until the client is done with it.
            let _ = conn.read(&mut buf).await;
            String::from_utf8(request).unwrap()
        });
        (addr, task)
    }

    async fn open(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn handshake_sends_connect_and_keeps_tunnel_bytes() {
        let answer: &[u8] = b"HTTP/1.1 200 Connection established\r\n\
            Proxy-Agent: fake\r\n\r\nTUNNEL-FIRST-BYTES";
        let (addr, task) = fake_proxy(vec![answer]).await;
        let p = proxy("127.0.0.1", addr.port(), Some(("user", "pa:ss")));
        let mut stream = open(addr).await;
        handshake(&mut stream, &p, "198.51.100.1", 8080)
            .await
            .unwrap();
        let mut first = [0u8; 18];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"TUNNEL-FIRST-BYTES");
        drop(stream);
        assert_eq!(
            task.await.unwrap(),
            "CONNECT 198.51.100.1:8080 HTTP/1.1\r\n\
             Host: 198.51.100.1:8080\r\n\
             Proxy-Authorization: Basic dXNlcjpwYTpzcw==\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn handshake_ipv6_target_without_auth() {
        let (addr, task) = fake_proxy(vec![b"HTTP/1.0 200 OK\r\n\r\n"]).await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        handshake(&mut stream, &p, "2001:db8::1", 443)
            .await
            .unwrap();
        drop(stream);
        assert_eq!(
            task.await.unwrap(),
            "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n"
        );
        // An already bracketed host is not bracketed twice.
        let (addr, task) = fake_proxy(vec![b"HTTP/1.0 200 OK\r\n\r\n"]).await;
        let mut stream = open(addr).await;
        handshake(&mut stream, &p, "[::1]", 80).await.unwrap();
        drop(stream);
        assert!(
            task.await
                .unwrap()
                .starts_with("CONNECT [::1]:80 HTTP/1.1\r\n")
        );
    }

    #[tokio::test]
    async fn handshake_answer_split_across_segments() {
        // The end marker straddles two writes; the tunnel bytes come with the second.
        let (addr, task) = fake_proxy(vec![
            b"HTTP/1.1 200 Connection established\r\nVia: x\r",
            b"\n\r",
            b"\nDATA",
        ])
        .await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        handshake(&mut stream, &p, "example.com", 443)
            .await
            .unwrap();
        let mut data = [0u8; 4];
        stream.read_exact(&mut data).await.unwrap();
        assert_eq!(&data, b"DATA");
        drop(stream);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn handshake_refused() {
        let (addr, task) = fake_proxy(vec![
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
        ])
        .await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        let err = handshake(&mut stream, &p, "198.51.100.1", 8080)
            .await
            .unwrap_err()
            .to_string();
        let want = format!(
            "proxy 127.0.0.1:{} refused CONNECT to 198.51.100.1:8080: \
             HTTP/1.1 407 Proxy Authentication Required",
            addr.port()
        );
        assert!(err.starts_with(&want), "{err}");
        assert!(!err.contains('\n'), "{err}");
        drop(stream);
        task.await.unwrap();

        let (addr, task) = fake_proxy(vec![b"HTTP/1.1 403 Access violation\r\n\r\n"]).await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        let err = handshake(&mut stream, &p, "198.51.100.1", 8080)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "proxy 127.0.0.1:{} refused CONNECT to 198.51.100.1:8080: \
                 HTTP/1.1 403 Access violation",
                addr.port()
            )
        );
        drop(stream);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn handshake_bad_answers() {
        // Closed before the head ends.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf).await.unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        });
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        let err = handshake(&mut stream, &p, "h", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did not answer") && err.contains("closed"),
            "{err}"
        );
        server.await.unwrap();

        // Endless headers.
        let (addr, task) = fake_proxy(vec![&[b'x'; 9000][..]]).await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        let err = handshake(&mut stream, &p, "h", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceed 8192"), "{err}");
        drop(stream);
        task.await.unwrap();

        // Not HTTP.
        let (addr, task) = fake_proxy(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]).await;
        let p = proxy("127.0.0.1", addr.port(), None);
        let mut stream = open(addr).await;
        let err = handshake(&mut stream, &p, "h", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-HTTP line: \"SSH-2.0-OpenSSH\""), "{err}");
        drop(stream);
        task.await.unwrap();
    }

    /// An echo server on 127.0.0.1.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echo_through(stream: &mut TcpStream) {
        stream.write_all(b"ping through the tunnel").await.unwrap();
        let mut back = [0u8; 23];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping through the tunnel");
    }

    #[tokio::test]
    async fn connect_env_direct_and_through_fake_proxy() {
        let echo = echo_server().await;
        // Direct: no variable, or bypassed.
        let mut direct = connect_env(env(&[]), "127.0.0.1", echo.port(), false)
            .await
            .unwrap();
        assert!(direct.nodelay().unwrap());
        echo_through(&mut direct).await;
        let vars = [
            ("http_proxy", "http://127.0.0.1:9"),
            ("no_proxy", "127.0.0.0/8"),
        ];
        let mut bypassed = connect_env(env(&vars), "127.0.0.1", echo.port(), false)
            .await
            .unwrap();
        echo_through(&mut bypassed).await;

        // Through the fake proxy (wss:// reads https_proxy).
        let (addr, task) = fake_proxy(vec![b"HTTP/1.1 200 OK\r\n\r\nhi"]).await;
        let url = format!("http://u:p@127.0.0.1:{}", addr.port());
        let vars = [("https_proxy", url.as_str())];
        let mut stream = connect_env(env(&vars), "[2001:db8::2]", 443, true)
            .await
            .unwrap();
        assert!(stream.nodelay().unwrap());
        let mut hi = [0u8; 2];
        stream.read_exact(&mut hi).await.unwrap();
        assert_eq!(&hi, b"hi");
        drop(stream);
        assert!(
            task.await
                .unwrap()
                .starts_with("CONNECT [2001:db8::2]:443 HTTP/1.1\r\n")
        );

        // A proxy that is not there.
        let gone = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = gone.local_addr().unwrap().port();
        drop(gone);
        let url = format!("127.0.0.1:{port}");
        let err = connect_env(env(&[("http_proxy", &url)]), "example.com", 80, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot connect to proxy 127.0.0.1:{port}: ")),
            "{err}"
        );
    }

    // --- the real tinyproxy ---

    fn find_tinyproxy() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("tinyproxy"))
            .find(|p| p.is_file())
    }

    /// A tinyproxy running in the foreground on 127.0.0.1, killed on drop.
    struct TinyProxy {
        child: Child,
        dir: PathBuf,
        port: u16,
    }

    impl TinyProxy {
        /// Starts tinyproxy with the given extra config lines, or None (skipping the test)
        /// when it is not installed.
        async fn start(extra: &str) -> Option<TinyProxy> {
            let Some(bin) = find_tinyproxy() else {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("tinyproxy is not installed, and CI=true");
                }
                eprintln!("!!!!! SKIPPED: tinyproxy is not installed; install it to run this test");
                return None;
            };
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("etherws-proxy-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let port = {
                let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                l.local_addr().unwrap().port()
            };
            let conf = dir.join("tinyproxy.conf");
            std::fs::write(
                &conf,
                format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 10\n\
                     Allow 127.0.0.1\nLogLevel Info\n{extra}"
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("tinyproxy.log")).unwrap();
            let child = Command::new(bin)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut tp = TinyProxy { child, dir, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = tp.child.try_wait().unwrap() {
                    panic!(
                        "tinyproxy exited ({status}) before listening:\n{}",
                        tp.log()
                    );
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok()
                {
                    return Some(tp);
                }
                assert!(
                    Instant::now() < deadline,
                    "tinyproxy never listened:\n{}",
                    tp.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
        }

        fn proxy(&self, auth: Option<(&str, &str)>) -> Proxy {
            proxy("127.0.0.1", self.port, auth)
        }

        async fn tunnel(
            &self,
            auth: Option<(&str, &str)>,
            target: SocketAddr,
        ) -> Result<TcpStream> {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await?;
            handshake(&mut stream, &self.proxy(auth), "127.0.0.1", target.port()).await?;
            Ok(stream)
        }
    }

    impl Drop for TinyProxy {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn tinyproxy_tunnel() {
        let Some(tp) = TinyProxy::start("").await else {
            return;
        };
        let echo = echo_server().await;
        // No ConnectPort lines: CONNECT to any port (the echo server's is random) is allowed.
        let mut stream = tp
            .tunnel(None, echo)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", tp.log()));
        echo_through(&mut stream).await;
        drop(stream);

        // Through connect_env, as a client port would.
        let url = format!("http://127.0.0.1:{}", tp.port);
        let mut stream = connect_env(
            env(&[("http_proxy", &url)]),
            "127.0.0.1",
            echo.port(),
            false,
        )
        .await
        .unwrap();
        echo_through(&mut stream).await;

        // A target that refuses: tinyproxy answers with an error status.
        let gone = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let err = tp.tunnel(None, gone_addr).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "proxy 127.0.0.1:{} refused CONNECT to 127.0.0.1:{}: HTTP/1.",
                tp.port,
                gone_addr.port()
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn tinyproxy_basic_auth() {
        let Some(tp) = TinyProxy::start("BasicAuth user secret\n").await else {
            return;
        };
        let echo = echo_server().await;
        let mut stream = tp
            .tunnel(Some(("user", "secret")), echo)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", tp.log()));
        echo_through(&mut stream).await;
        drop(stream);

        // Through a URL with percent-encoded credentials.
        let url = format!("http://us%65r:s%65cret@127.0.0.1:{}", tp.port);
        let mut stream = connect_env(
            env(&[("http_proxy", &url)]),
            "127.0.0.1",
            echo.port(),
            false,
        )
        .await
        .unwrap();
        echo_through(&mut stream).await;
        drop(stream);

        // tinyproxy 1.11 answers 407 without credentials but 401 (sic) to wrong ones.
        let err = tp.tunnel(None, echo).await.unwrap_err().to_string();
        assert!(
            err.contains("refused CONNECT") && err.contains(" 407 "),
            "{err}"
        );
        let err = tp
            .tunnel(Some(("user", "wrong")), echo)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refused CONNECT") && err.contains(" 401 Unauthorized"),
            "{err}"
        );
        assert!(!err.contains("wrong"), "{err}");
    }
}
