//! The HTTP side of `etherws sw`: WebSocket upgrades on `--path` become `server` ports, and
//! JSON-RPC POSTs on `--ctlpath` go to the control API — on two listeners, or on one when
//! `--host/--port` equal `--ctlhost/--ctlport`.
//!
//! The WebSocket upgrade is done by hand on hyper's upgrade mechanism rather than with axum's
//! extractor so the connection ends up as the same `tokio_tungstenite::WebSocketStream` type a
//! client port has, and both share one port implementation.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::admission::{AuthLimits, AuthThrottle, ConnLimits, ConnPermit, Connections};
use crate::control::Control;
use crate::control::metrics::{Globals, render};
use crate::htpasswd::{Htpasswd, parse_basic};
use crate::port::ws::{BoxIo, WsPort, WsSettings, config};
use crate::port::{Port, PortIo, SharedSwitch, attach};
use crate::switch::PortKind;

/// Time a client gets to send its request headers, and to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The realm of the `401` challenge.
const REALM: &str = "Basic realm=\"etherws\"";

/// Checks HTTP Basic credentials against `htpasswd` (when one is configured).
///
/// The answer to a failure is the same whether the user exists or not, and so is the log line;
/// the password is never logged. Hashing (bcrypt) runs off the async threads.
async fn authorized(
    htpasswd: &Option<Arc<Htpasswd>>,
    throttle: &AuthThrottle,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), Response> {
    let Some(htpasswd) = htpasswd else {
        return Ok(());
    };
    let ip = canonical_ip(peer.ip());
    if throttle.blocked(ip, Instant::now()) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            "Too many failed authentications\n",
        )
            .into_response());
    }
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let ok = match &creds {
        None => false,
        Some((user, passwd)) => {
            let (h, user, passwd) = (htpasswd.clone(), user.clone(), passwd.clone());
            tokio::task::spawn_blocking(move || h.verify(&user, &passwd))
                .await
                .unwrap_or(false)
        }
    };
    if ok {
        throttle.succeeded(ip);
        return Ok(());
    }
    match &creds {
        Some((user, _)) => {
            tracing::warn!(peer = %peer_target(peer), user = %user, "authentication failed");
            if throttle.failed(ip, Instant::now()) {
                tracing::warn!(peer = %ip, "too many failed authentications: address blocked for a while");
            }
        }
        None => tracing::info!(peer = %peer_target(peer), "no credentials given"),
    }
    Err((
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, REALM)],
        "Authorization Required\n",
    )
        .into_response())
}

/// What the WebSocket and control endpoints share about who may come in.
#[derive(Clone)]
pub struct Gate {
    pub conns: Arc<Connections>,
    pub throttle: Arc<AuthThrottle>,
}

impl Gate {
    pub fn new(conns: ConnLimits, auth: AuthLimits) -> Self {
        Gate {
            conns: Connections::new(conns),
            throttle: Arc::new(AuthThrottle::new(auth)),
        }
    }
}

/// A port that holds a connection slot for as long as it lives.
struct Admitted<P> {
    port: P,
    _permit: ConnPermit,
}

impl<P: Port> Port for Admitted<P> {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        self.port.run(io).await
    }
}

#[derive(Clone)]
struct WsState {
    switch: SharedSwitch,
    htpasswd: Option<Arc<Htpasswd>>,
    settings: WsSettings,
    gate: Gate,
}

#[derive(Clone)]
struct CtlState {
    control: Arc<Control>,
    htpasswd: Option<Arc<Htpasswd>>,
    gate: Gate,
}

/// Routes for the WebSocket endpoint.
pub fn ws_routes(
    path: &str,
    switch: SharedSwitch,
    htpasswd: Option<Arc<Htpasswd>>,
    settings: WsSettings,
    gate: Gate,
) -> Router {
    Router::new().route(path, any(upgrade)).with_state(WsState {
        switch,
        htpasswd,
        settings,
        gate,
    })
}

/// Routes for the control endpoint.
pub fn ctl_routes(
    path: &str,
    control: Control,
    htpasswd: Option<Arc<Htpasswd>>,
    gate: Gate,
) -> Router {
    Router::new()
        .route(path, post(control_post))
        .route(METRICS_PATH, get(metrics))
        .with_state(CtlState {
            control: Arc::new(control),
            htpasswd,
            gate,
        })
}

/// Where the control listener serves Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

async fn metrics(
    State(st): State<CtlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorized(&st.htpasswd, &st.gate.throttle, &headers, peer).await {
        return denied;
    }
    let ports = st.control.port_counters();
    let fdb_entries = crate::port::lock(&st.control.switch).fdb_len();
    let globals = Globals {
        fdb_entries,
        ws_connections: st.gate.conns.total(),
        ws_connections_refused: st.gate.conns.refused(),
        auth_failures: st.gate.throttle.failures(),
        auth_throttled: st.gate.throttle.throttled(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&ports, &globals),
    )
        .into_response()
}

async fn control_post(
    State(st): State<CtlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = authorized(&st.htpasswd, &st.gate.throttle, &headers, peer).await {
        return denied;
    }
    let answer = st.control.handle(&body).await;
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        answer.to_string(),
    )
        .into_response()
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// The address of a peer as `listPort` shows it: `198.51.100.2:40000` (IPv4-mapped IPv6
/// addresses of a dual-stack listener are shown as the IPv4 address they are).
pub fn peer_target(peer: SocketAddr) -> String {
    format!("{}:{}", canonical_ip(peer.ip()), peer.port())
}

/// An address as the peer knows itself: IPv4-mapped IPv6 addresses become IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

async fn upgrade(
    State(st): State<WsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let h = req.headers();
    if req.method() != Method::GET
        || !header_has_token(h, header::CONNECTION, "upgrade")
        || !header_has_token(h, header::UPGRADE, "websocket")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Can \"Upgrade\" only to \"WebSocket\".\n",
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 required\n",
        )
            .into_response();
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "Missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    if let Err(denied) = authorized(&st.htpasswd, &st.gate.throttle, h, peer).await {
        return denied;
    }
    let permit = match st.gate.conns.admit(canonical_ip(peer.ip())) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(peer = %peer_target(peer), "WebSocket connection refused: {why}");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
        }
    };
    let (switch, keepalive) = (st.switch, st.settings.keepalive);

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io: BoxIo = Box::new(TokioIo::new(upgraded));
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
                let port = Admitted {
                    port: WsPort::new(ws, keepalive),
                    _permit: permit,
                };
                attach(&switch, PortKind::Server, peer_target(peer), port);
            }
            Err(e) => tracing::warn!(%peer, "WebSocket upgrade failed: {e}"),
        }
    });

    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Serves `app` on `listener` — over TLS when `tls` is given — until the process ends.
///
/// HTTP/1.1 only (WebSocket upgrades need it). A client that is slow to finish its TLS
/// handshake or its request headers is dropped, so half-open connections cannot pile up.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let io: BoxIo = match tls {
                None => Box::new(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::info!(peer = %peer_target(peer), "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(peer = %peer_target(peer), "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    use tower::Service;
                    Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer_target(peer), "HTTP connection ended: {e}");
            }
        });
    }
}
