//! Raw HTTP/1.1 and JSON-RPC, with std only.

use super::*;

/// POST `body` to `http://addr{path}` (Connection: close); returns (status, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = http_exchange(s, &req, body);
    (resp.status, resp.body)
}

/// True when `raw` holds a whole response head and a body as long as its Content-Length says.
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| rest.len() >= len)
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
pub fn http_exchange(mut s: TcpStream, request: &str, what: &str) -> HttpResponse {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Until the server closes, or a response with a Content-Length is complete (a server may
    // keep the connection, e.g. after refusing a WebSocket upgrade).
    while !response_complete(&raw) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => {
                // A server may reset after a full response; keep what arrived.
                assert!(!raw.is_empty(), "reading response to {what:?}: {e}");
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in response to {what:?}:\n{text}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in response to {what:?}:\n{text}"));
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
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A plain HTTP GET; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let resp = http_exchange(s, &req, path);
    (resp.status, resp.body)
}

/// [`rpc`] to a control API inside a namespace.
pub fn rpc_in(ns: &Netns, addr: SocketAddr, path: &str, body: &str) -> Value {
    let s = ns.tcp_connect(addr).expect("connect to control API");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = http_exchange(s, &req, body);
    serde_json::from_str(&resp.body).unwrap_or_else(|e| {
        panic!(
            "response to {body:?} is not JSON ({e}); HTTP {}:\n{}",
            resp.status, resp.body
        )
    })
}

/// POST a JSON-RPC request body and parse the JSON response.
pub fn rpc(addr: SocketAddr, path: &str, body: &str) -> Value {
    let (status, text) = http_post(addr, path, body);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("response to {body:?} is not JSON ({e}); HTTP {status}:\n{text}")
    })
}
