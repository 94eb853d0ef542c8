//! Raw HTTP/1.1 and JSON-RPC, with std only.

use super::*;

/// A `POST path` request for `addr` with a JSON `body` (Connection: close).
fn post_request(addr: SocketAddr, path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// POST `body` to `http://addr{path}` (Connection: close); returns (status, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let resp = http_exchange(s, &post_request(addr, path, body), body);
    (resp.status, resp.body)
}

/// [`http_post`] that returns what went wrong instead of panicking (for a driver that counts
/// failures, e.g. `cargo xtask load`), reading the response for up to `timeout`.
pub fn try_http_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    try_http_exchange(s, &post_request(addr, path, body), timeout)
}

/// The Content-Length of a response head, if it says one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// An HTTP response as read by [`http_exchange`]: header names lower-cased, body de-chunked.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send a raw HTTP/1.1 request (which should say `Connection: close`) on `s` and read the
/// response until the server closes; `what` names the request in panic messages.
pub fn http_exchange(s: TcpStream, request: &str, what: &str) -> HttpResponse {
    try_http_exchange(s, request, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("response to {what:?}: {e}"))
}

/// [`http_exchange`] that returns what went wrong instead of panicking, reading for up to
/// `timeout` at a time.
pub fn try_http_exchange(
    mut s: TcpStream,
    request: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("set read timeout: {e}"))?;
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Until the server closes, or a response with a Content-Length is complete (a server may
    // keep the connection, e.g. after refusing a WebSocket upgrade). The head is looked for
    // only in what each read adds, so a large body is not scanned again and again.
    let mut head_seen = false;
    let mut total: Option<usize> = None;
    while total.is_none_or(|t| raw.len() < t) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let from = raw.len().saturating_sub(3);
                raw.extend_from_slice(&buf[..n]);
                if !head_seen && let Some(p) = raw[from..].windows(4).position(|w| w == b"\r\n\r\n")
                {
                    head_seen = true;
                    let end = from + p + 4;
                    total = content_length(&raw[..end]).map(|len| end + len);
                }
            }
            // A server may reset after a full response; keep what arrived.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in the response:\n{text}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in the response:\n{text}"))?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size =
                usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len).unwrap_or(rest).to_string()
    } else {
        rest.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A plain HTTP GET; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let resp = http_exchange(s, &req, path);
    (resp.status, resp.body)
}

/// The JSON of a JSON-RPC answer, or a panic saying what came instead.
fn json_answer(status: u16, text: &str, body: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        panic!("response to {body:?} is not JSON ({e}); HTTP {status}:\n{text}")
    })
}

/// [`rpc`] to a control API inside a namespace.
pub fn rpc_in(ns: &Netns, addr: SocketAddr, path: &str, body: &str) -> Value {
    let s = ns.tcp_connect(addr).expect("connect to control API");
    let resp = http_exchange(s, &post_request(addr, path, body), body);
    json_answer(resp.status, &resp.body, body)
}

/// POST a JSON-RPC request body and parse the JSON response.
pub fn rpc(addr: SocketAddr, path: &str, body: &str) -> Value {
    let (status, text) = http_post(addr, path, body);
    json_answer(status, &text, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback that answers one request with `response`, then keeps the
    /// connection open for `hold` (a response must be complete without the server closing).
    fn answer_once(response: &'static str, hold: Duration) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            c.write_all(response.as_bytes()).unwrap();
            thread::sleep(hold);
        });
        addr
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let addr = answer_once(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            Duration::ZERO,
        );
        let r = try_http_post(addr, "/ctl", "{}", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    }

    #[test]
    fn a_response_with_a_length_ends_without_the_close() {
        let addr = answer_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":null}",
            Duration::from_secs(30),
        );
        let t0 = Instant::now();
        let (status, body) = http_post(addr, "/ctl", "{}");
        assert_eq!((status, body.as_str()), (200, "{\"id\":null}"));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn no_answer_is_an_error_not_a_panic() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(try_http_post(addr, "/ctl", "{}", Duration::from_secs(1)).is_err());
    }
}
