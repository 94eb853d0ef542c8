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
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::admission::{AuthLimits, ConnLimits, ConnPermit, Connections};
use crate::auth::Auth;
use crate::control::Control;
use crate::control::guard::Guard;
use crate::control::metrics::{Globals, render};
use crate::htpasswd::Htpasswd;
use crate::port::ws::{BoxIo, SWITCH_ID_HEADER, WsPort, WsSettings, config, switch_id};
use crate::port::{Port, PortIo, SharedSwitch, attach_from};
use crate::switch::PortKind;

/// Time a client gets to send its request headers, and to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time a control client gets to send its request body, once its headers are accepted.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest control request body: a JSON-RPC call is a few hundred bytes.
pub const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Largest request head (request line and headers) a listener buffers.
const MAX_HEAD: usize = 64 * 1024;

/// Concurrent connections the control listener serves, overall and from one address: enough
/// for any number of administrators and scripts, too few for a slow-request flood to matter.
pub const CONTROL_CONNS: ConnLimits = ConnLimits {
    total: 64,
    per_addr: 16,
};

/// The address the client connected to (this end of the connection).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// What the WebSocket endpoint needs to admit a peer.
#[derive(Clone)]
struct WsState {
    switch: SharedSwitch,
    auth: Arc<Auth>,
    settings: WsSettings,
    conns: Arc<Connections>,
}

/// What the control endpoint needs; the WebSocket side's counters are there for `/metrics`.
#[derive(Clone)]
struct CtlState {
    control: Arc<Control>,
    auth: Arc<Auth>,
    guard: Arc<Guard>,
    ws_auth: Arc<Auth>,
    ws_conns: Arc<Connections>,
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

/// The WebSocket side: who may connect, and how many.
pub struct WsSide {
    pub auth: Arc<Auth>,
    pub conns: Arc<Connections>,
}

impl WsSide {
    pub fn new(htpasswd: Option<Arc<Htpasswd>>, conns: ConnLimits, auth: AuthLimits) -> Self {
        WsSide {
            auth: Arc::new(Auth::new(htpasswd, auth, "websocket")),
            conns: Connections::new(conns),
        }
    }
}

/// Routes for the WebSocket endpoint.
pub fn ws_routes(path: &str, switch: SharedSwitch, side: &WsSide, settings: WsSettings) -> Router {
    Router::new().route(path, any(upgrade)).with_state(WsState {
        switch,
        auth: side.auth.clone(),
        settings,
        conns: side.conns.clone(),
    })
}

/// Routes for the control endpoint (with its own authentication and throttle).
pub fn ctl_routes(
    path: &str,
    control: Control,
    auth: Auth,
    mut guard: Guard,
    ws: &WsSide,
) -> Router {
    guard.check_host = !auth.required();
    Router::new()
        .route(path, post(control_post))
        .route(METRICS_PATH, get(metrics))
        .with_state(CtlState {
            control: Arc::new(control),
            auth: Arc::new(auth),
            guard: Arc::new(guard),
            ws_auth: ws.auth.clone(),
            ws_conns: ws.conns.clone(),
        })
}

/// Where the control listener serves Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The guard and authentication every control request passes first.
async fn admit_control(
    st: &CtlState,
    headers: &HeaderMap,
    local: IpAddr,
    peer: SocketAddr,
    post: bool,
) -> Result<(), Response> {
    let shown = peer_target(peer);
    if let Err(r) = st.guard.check(headers, local, post) {
        tracing::warn!(peer = %shown, "control request refused: {}", r.reason);
        return Err((r.status, format!("{}\n", r.reason)).into_response());
    }
    st.auth
        .check(headers, canonical_ip(peer.ip()), &shown)
        .await
        .map(drop)
}

/// The address a request's client connected to.
fn local_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<LocalAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |l| l.0.ip())
}

async fn metrics(
    State(st): State<CtlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let local = local_ip(&req);
    if let Err(denied) = admit_control(&st, req.headers(), local, peer, false).await {
        return denied;
    }
    let ports = st.control.port_counters();
    let fdb_entries = crate::port::lock(&st.control.switch).fdb_len();
    let (ws, ctl) = (&st.ws_auth.throttle, &st.auth.throttle);
    let globals = Globals {
        fdb_entries,
        ws_connections: st.ws_conns.total(),
        ws_connections_refused: st.ws_conns.refused(),
        auth_failures: ws.failures() + ctl.failures(),
        auth_throttled: ws.throttled() + ctl.throttled(),
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
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let local = parts
        .extensions
        .get::<LocalAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |l| l.0.ip());
    if let Err(denied) = admit_control(&st, &parts.headers, local, peer, true).await {
        return denied;
    }
    // Only now, authenticated, is the body read: bounded in size and in time.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CONTROL_BODY as u64) {
        tracing::warn!(peer = %peer_target(peer), length = declared, "control request body too large");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body over {MAX_CONTROL_BODY} bytes\n"),
        )
            .into_response();
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, MAX_CONTROL_BODY),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer_target(peer), "control request body refused: {e}");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body unreadable or over {MAX_CONTROL_BODY} bytes\n"),
            )
                .into_response();
        }
        Err(_) => {
            tracing::warn!(peer = %peer_target(peer), "control request body too slow");
            return (StatusCode::REQUEST_TIMEOUT, "Request body too slow\n").into_response();
        }
    };
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

/// The address of a peer as `listPort` shows it: `198.51.100.2:40000` or `[2001:db8::2]:40000`
/// (IPv4-mapped IPv6 addresses of a dual-stack listener are shown as the IPv4 address they
/// are).
pub fn peer_target(peer: SocketAddr) -> String {
    // SocketAddr's own form brackets an IPv6 address: `[2001:db8::2]:48968`.
    SocketAddr::new(canonical_ip(peer.ip()), peer.port()).to_string()
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
    // RFC 6455 4.1: the opening handshake is an HTTP/1.1 (or later) GET.
    if req.version() < Version::HTTP_11 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "WebSocket needs HTTP/1.1 or later.\n",
        );
    }
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
    if h.get(SWITCH_ID_HEADER)
        .is_some_and(|id| id.as_bytes() == switch_id().as_bytes())
    {
        tracing::warn!(peer = %peer_target(peer), "refused a connection from this switch itself (a client port to its own URL)");
        return refuse(
            StatusCode::LOOP_DETECTED,
            "This is the switch that connects: a connection to itself would loop every frame.\n",
        );
    }
    if let Err(denied) = st
        .auth
        .check(h, canonical_ip(peer.ip()), &peer_target(peer))
        .await
    {
        return denied;
    }
    let permit = match st.conns.admit(canonical_ip(peer.ip())) {
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
                let addr = Some(canonical_ip(peer.ip()));
                attach_from(&switch, PortKind::Server, peer_target(peer), addr, port);
            }
            Err(e) => tracing::warn!(%peer, "WebSocket upgrade failed: {e}"),
        }
    });

    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(SWITCH_ID_HEADER, switch_id())
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Serves `app` on `listener` — over TLS when `tls` is given — until the process ends.
///
/// HTTP/1.1 only (WebSocket upgrades need it). A client that is slow to finish its TLS
/// handshake or its request headers is dropped, so half-open connections cannot pile up.
///
/// Connections still speaking HTTP (not yet upgraded to WebSocket) are bounded by `limits`,
/// overall and per address: past them a new connection is closed at once, so a flood of slow
/// requests cannot take memory or starve the administrator's `ctl`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let pending = Connections::new(limits);
    let local_default = listener.local_addr()?;
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
        let slot = match pending.admit(canonical_ip(peer.ip())) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(peer = %peer_target(peer), "connection closed at once: {why}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(local_default);
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            // Held until the connection ends or becomes a WebSocket (which has its own limits).
            let _slot = slot;
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
                req.extensions_mut().insert(LocalAddr(local));
                let mut app = app.clone();
                async move {
                    use tower::Service;
                    Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer_target(peer), "HTTP connection ended: {e}");
            }
        });
    }
}
