//! The HTTP side of `etherws sw`: WebSocket upgrades on `--path` become `server` ports, and
//! JSON-RPC POSTs on `--ctlpath` go to the control API — on two listeners, or on one when
//! `--host/--port` equal `--ctlhost/--ctlport`.
//!
//! The WebSocket upgrade is done by hand on hyper's upgrade mechanism rather than with axum's
//! extractor so the connection ends up as the same `tokio_tungstenite::WebSocketStream` type a
//! client port has, and both share one port implementation.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::control::Control;
use crate::port::ws::{WsPort, config};
use crate::port::{SharedSwitch, attach};
use crate::switch::PortKind;

/// Routes for the WebSocket endpoint.
pub fn ws_routes(path: &str, switch: SharedSwitch) -> Router {
    Router::new().route(path, any(upgrade)).with_state(switch)
}

/// Routes for the control endpoint.
pub fn ctl_routes(path: &str, control: Control) -> Router {
    Router::new()
        .route(path, post(control_post))
        .with_state(Arc::new(control))
}

async fn control_post(State(control): State<Arc<Control>>, body: Bytes) -> Response {
    let answer = control.handle(&body).await;
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
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    format!("{ip}:{}", peer.port())
}

async fn upgrade(
    State(switch): State<SharedSwitch>,
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

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
                attach(
                    &switch,
                    PortKind::Server,
                    peer_target(peer),
                    WsPort::new(ws),
                );
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

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
