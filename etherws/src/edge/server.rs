//! The HTTP side of `etherws sw`: WebSocket upgrades on `--path` become `server` ports, and
//! JSON-RPC POSTs on `--ctlpath` go to the control API — on two listeners, or on one when
//! `--host/--port` equal `--ctlhost/--ctlport`.
//!
//! The WebSocket upgrade is done by hand on hyper's upgrade mechanism rather than with axum's
//! extractor: the upgraded connection becomes a [`WsPort`] exactly as a client port's connection
//! does once its handshake is done, and both share one port implementation (the data phase is
//! framed by `port::websocket::framing`, not by tungstenite).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::base::ip::canonical;
use crate::control::Control;
use crate::control::guard::Guard;
use crate::control::metrics::{Globals, render};
use crate::edge::admission::{AuthLimits, ConnLimits, ConnPermit, Connections};
use crate::edge::auth::Auth;
use crate::edge::forwarded::{Client, Connection, Malformed, TrustedProxies, read_proxy_header};
use crate::edge::htpasswd::Htpasswd;
use crate::edge::live::{LiveWs, Session, TlsCell};
use crate::edge::wt_cert::{self, WtCerts};
use crate::port::websocket::super_frame;
use crate::port::websocket::tcp::{TcpTuning, tune};
use crate::port::websocket::{BoxIo, Role, SWITCH_ID_HEADER, WsPort, WsSettings, switch_id};
use crate::port::{Origin, Port, PortIo, SharedSwitch, attach_from};
use crate::switch::PortKind;

/// Time a client gets to send its request headers, and to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time a control client gets to send its request body, once its headers are accepted.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest control request body: a JSON-RPC call is a few hundred bytes.
pub(crate) const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Largest request head (request line and headers) a listener buffers.
const MAX_HEAD: usize = 64 * 1024;

/// Concurrent connections the control listener serves, overall and from one address: enough
/// for any number of administrators and scripts, too few for a slow-request flood to matter.
pub(crate) const CONTROL_CONNS: ConnLimits = ConnLimits {
    total: 64,
    per_addr: 16,
};

/// Who is at the other end of a connection, set by [`serve`] on every request.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The TCP peer, and whom its PROXY header named if it sent one.
    pub(crate) conn: Connection,
    /// The address the client connected to (this end).
    pub(crate) local: SocketAddr,
    /// The subject name of the client's certificate, on a listener that requires one.
    pub(crate) identity: Option<String>,
    /// The client's certificate chain, on a listener that requires one.
    pub(crate) certs: Option<Arc<[CertificateDer<'static>]>>,
    /// The TCP congestion control algorithm of the connection, on the WebSocket listener.
    pub(crate) congestion: Option<Arc<str>>,
}

impl Peer {
    /// The peer of a request. One that did not come through [`serve`] has none and is taken
    /// as from and to `0.0.0.0`: no Host names that, so the control API's checks fail closed.
    fn of(extensions: &axum::http::Extensions) -> Peer {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        extensions.get::<Peer>().cloned().unwrap_or_else(|| Peer {
            conn: Connection::plain(Client::of(nowhere)),
            local: nowhere,
            identity: None,
            certs: None,
            congestion: None,
        })
    }

    /// The client a request came from, as `proxies` (the endpoint's) tell it.
    fn client(&self, proxies: &TrustedProxies, headers: &HeaderMap) -> Result<Client, Malformed> {
        proxies.client(self.conn, headers)
    }

    /// The answer to a malformed forwarding header from a trusted proxy: `400`, and the
    /// connection closes.
    fn refuse(&self, e: Malformed) -> Response {
        tracing::warn!(peer = %self.conn.shown(), "request refused: {e}");
        (
            StatusCode::BAD_REQUEST,
            [(header::CONNECTION, "close")],
            format!("{e}\n"),
        )
            .into_response()
    }
}

/// How a listener admits and reads connections.
#[derive(Clone)]
pub(crate) struct Listening {
    /// Serve TLS with this (as it is at each handshake: a reload may replace it).
    pub(crate) tls: Option<TlsCell>,
    /// Connections still speaking HTTP, overall and per client address.
    pub(crate) limits: ConnLimits,
    /// Addresses that speak for many clients: admitted against the overall limit only.
    pub(crate) proxies: Arc<TrustedProxies>,
    /// Connections from `proxies` start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// What the TCP socket of every connection is given: the WebSocket listener's (also when
    /// it serves the control API); none on the control API's own listener.
    pub(crate) tcp: Option<TcpTuning>,
}

/// What the WebSocket endpoint needs to admit a peer.
#[derive(Clone)]
struct WsState {
    switch: SharedSwitch,
    auth: Arc<Auth>,
    settings: WsSettings,
    conns: Arc<Connections>,
    /// The paths served and the users pinned, as the last reload left them.
    live: Arc<LiveWs>,
    proxies: Arc<TrustedProxies>,
}

/// What the control endpoint needs; the WebSocket side's counters are there for `/metrics`.
#[derive(Clone)]
struct CtlState {
    control: Arc<Control>,
    auth: Arc<Auth>,
    guard: Arc<Guard>,
    ws_auth: Arc<Auth>,
    ws_conns: Arc<Connections>,
    status: Arc<crate::control::status::StatusPage>,
    /// Whose word about the client the control API takes (`--ctl-trusted-proxy`): by default
    /// nobody's, so its throttle and log see the TCP peer.
    proxies: Arc<TrustedProxies>,
}

/// A port that holds a connection slot for as long as it lives, and is in the sessions a
/// reload looks at meanwhile.
pub(crate) struct Admitted<P> {
    pub(crate) port: P,
    pub(crate) _permit: ConnPermit,
    pub(crate) session: (Arc<LiveWs>, Arc<Session>),
}

impl<P: Port> Port for Admitted<P> {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        let (live, session) = self.session;
        let admitted_under = session.generation;
        let _registered = live.sessions.register(io.ingress.port(), session);
        // A reload came between its admission and now, and may have missed it: it connects
        // again, under the rules in force.
        if live.generation() != admitted_under {
            tracing::info!(
                port = io.ingress.port(),
                "a reload came while the connection was being set up: closed, to be made again"
            );
            return Ok(());
        }
        self.port.run(io).await
    }
}

/// The WebSocket side: who may connect, and how many.
pub(crate) struct WsSide {
    pub(crate) auth: Arc<Auth>,
    pub(crate) conns: Arc<Connections>,
    /// Whose word about the client is taken (`--trusted-proxy`, `--proxy-header`).
    pub(crate) proxies: Arc<TrustedProxies>,
}

impl WsSide {
    pub(crate) fn new(
        htpasswd: Option<Arc<Htpasswd>>,
        conns: ConnLimits,
        auth: AuthLimits,
        proxies: Arc<TrustedProxies>,
    ) -> Self {
        WsSide {
            auth: Arc::new(Auth::new(htpasswd, auth, "websocket")),
            conns: Connections::new(conns),
            proxies,
        }
    }
}

/// Routes for the WebSocket endpoint: every path not the control API's, looked up per request
/// in the paths served now (a reload may add, change or remove them); an unknown path is `404`.
/// With `wt_certs` (`--webtransport-selfsigned`), [`wt_cert::HASH_PATH`] answers their hashes.
pub(crate) fn ws_routes(
    live: Arc<LiveWs>,
    switch: SharedSwitch,
    side: &WsSide,
    settings: WsSettings,
    wt_certs: Option<Arc<WtCerts>>,
) -> Router {
    let mut router = Router::new();
    if let Some(certs) = wt_certs {
        router = router.route(
            wt_cert::HASH_PATH,
            get(move || std::future::ready(certs.answer())),
        );
    }
    router.fallback(upgrade).with_state(WsState {
        switch,
        auth: side.auth.clone(),
        settings,
        conns: side.conns.clone(),
        live,
        proxies: side.proxies.clone(),
    })
}

/// Routes for the control endpoint (with its own authentication and throttle, and its own
/// trusted proxies).
pub(crate) fn ctl_routes(
    path: &str,
    control: Control,
    auth: Arc<Auth>,
    proxies: Arc<TrustedProxies>,
    mut guard: Guard,
    ws: &WsSide,
) -> Router {
    guard.check_host = !auth.required();
    Router::new()
        .route(path, post(control_post))
        .route(METRICS_PATH, get(metrics))
        .route(crate::control::status::PAGE_PATH, get(status_page))
        .route(crate::control::status::SCRIPT_PATH, get(status_page))
        .route(crate::control::status::STYLE_PATH, get(status_page))
        .with_state(CtlState {
            status: Arc::new(crate::control::status::StatusPage::new(path)),
            control: Arc::new(control),
            auth,
            guard: Arc::new(guard),
            ws_auth: ws.auth.clone(),
            ws_conns: ws.conns.clone(),
            proxies,
        })
}

/// Where the control listener serves Prometheus metrics.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The guard and authentication every control request passes first.
/// Checks a control request; returns its client.
async fn admit_control(
    st: &CtlState,
    headers: &HeaderMap,
    peer: &Peer,
    post: bool,
) -> Result<Client, Response> {
    let client = peer
        .client(&st.proxies, headers)
        .map_err(|e| peer.refuse(e))?;
    let shown = client.to_string();
    if let Err(r) = st.guard.check(headers, peer.local.ip(), post) {
        tracing::warn!(peer = %shown, "control request refused: {}", r.reason);
        return Err((r.status, format!("{}\n", r.reason)).into_response());
    }
    st.auth.check(headers, client.ip, &shown).await?;
    Ok(client)
}

async fn metrics(State(st): State<CtlState>, req: Request) -> Response {
    let peer = Peer::of(req.extensions());
    if let Err(denied) = admit_control(&st, req.headers(), &peer, false).await {
        return denied;
    }
    let ports = st.control.port_counters();
    let (fdb_entries, guard_entries) = {
        let sw = crate::port::lock(&st.control.switch);
        (sw.fdb_len(), sw.guard_len())
    };
    let (ws, ctl) = (&st.ws_auth.throttle, &st.auth.throttle);
    let globals = Globals {
        fdb_entries,
        guard_entries,
        ws_connections: st.ws_conns.total(),
        ws_connections_refused: st.ws_conns.refused(),
        auth_failures: ws.failures() + ctl.failures(),
        auth_throttled: ws.throttled() + ctl.throttled(),
        queued_bytes: st.control.switch.budget().used(),
        queue_budget_refused: st.control.switch.budget().refused(),
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

/// The status page, its script and its style (`control::status`): admitted as `/metrics` is,
/// and every answer, a refusal too, with the page's security headers.
async fn status_page(State(st): State<CtlState>, req: Request) -> Response {
    let peer = Peer::of(req.extensions());
    let answer = match admit_control(&st, req.headers(), &peer, false).await {
        Ok(_) => st.status.asset(req.uri().path()),
        Err(denied) => denied,
    };
    crate::control::status::secured(answer)
}

async fn control_post(State(st): State<CtlState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = Peer::of(&parts.extensions);
    let client = match admit_control(&st, &parts.headers, &peer, true).await {
        Ok(c) => c,
        Err(denied) => return denied,
    };
    // Only now, authenticated, is the body read: bounded in size and in time.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CONTROL_BODY as u64) {
        tracing::warn!(peer = %client, length = declared, "control request body too large");
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
            tracing::warn!(peer = %client, "control request body refused: {e}");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body unreadable or over {MAX_CONTROL_BODY} bytes\n"),
            )
                .into_response();
        }
        Err(_) => {
            tracing::warn!(peer = %client, "control request body too slow");
            return (StatusCode::REQUEST_TIMEOUT, "Request body too slow\n").into_response();
        }
    };
    let answer = st.control.handle(&body).await;
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        answer,
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

async fn upgrade(State(st): State<WsState>, mut req: Request) -> Response {
    let generation = st.live.generation();
    let Some(path) = st.live.path(req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let peer = Peer::of(req.extensions());
    let client = match peer.client(&st.proxies, req.headers()) {
        Ok(c) => c,
        Err(e) => return peer.refuse(e),
    };
    let accept = match handshake(&req, &client) {
        Ok(accept) => accept,
        Err(refused) => return refused.into_response(),
    };
    let h = req.headers();
    let (user, from) = match st
        .auth
        .prove(&path, h, &client, peer.identity.clone())
        .await
    {
        Ok(proved) => proved,
        Err(denied) => return denied,
    };
    let session = Arc::new(Session {
        path: path.path.clone(),
        user,
        from,
        certs: peer.certs.clone(),
        generation,
    });
    // What the port starts with: the user's pinned settings over the path's, if the pin is for
    // the credentials the name was proved with.
    let profile = session.profile(&path, &st.live.users.load());
    let permit = match st.conns.admit(client.ip) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(peer = %client, "WebSocket connection refused: {why}");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
        }
    };
    // Super-frames if the client offers them and this switch may (see `port::super_frame`).
    let super_frames = st.settings.super_frames && super_frame::offered(h);
    let origin = Origin {
        addr: Some(client.ip),
        user: session.user.clone(),
        path: Some(path.path),
        policy: profile.policy(),
    };
    let port = Upgrading {
        session: (st.live.clone(), session),
        switch: st.switch,
        keepalive: st.settings.keepalive,
        super_frames,
        congestion: peer.congestion.clone(),
        permit,
        client,
        origin,
    };
    tokio::spawn(port.attach(hyper::upgrade::on(&mut req)));
    switching_protocols(accept, super_frames)
}

/// Checks an upgrade request as RFC 6455 4.1 and 4.2.2 ask, and refuses a connection from this
/// switch itself; gives the `Sec-WebSocket-Accept` value, or why the request is refused.
fn handshake(req: &Request, client: &Client) -> Result<String, Refused> {
    let h = req.headers();
    // RFC 6455 4.1: the opening handshake is an HTTP/1.1 (or later) GET.
    if req.version() < Version::HTTP_11 {
        return Err(Refused::Bad("WebSocket needs HTTP/1.1 or later.\n"));
    }
    if req.method() != Method::GET
        || !header_has_token(h, header::CONNECTION, "upgrade")
        || !header_has_token(h, header::UPGRADE, "websocket")
    {
        return Err(Refused::Bad("Can \"Upgrade\" only to \"WebSocket\".\n"));
    }
    // A handshake without a version is taken as 13, the only one there is: vpn-ws's client
    // omits the header.
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        return Err(Refused::Version);
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refused::Bad("Missing Sec-WebSocket-Key\n"));
    };
    if h.get(SWITCH_ID_HEADER)
        .is_some_and(|id| id.as_bytes() == switch_id().as_bytes())
    {
        tracing::warn!(peer = %client, "refused a connection from this switch itself (a client port to its own URL)");
        return Err(Refused::Loop);
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Why an upgrade request is refused.
enum Refused {
    /// 400, with the reason.
    Bad(&'static str),
    /// 426: not WebSocket version 13.
    Version,
    /// 508: the switch's own client port.
    Loop,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Bad(why) => refuse(StatusCode::BAD_REQUEST, why),
            Refused::Version => (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "WebSocket version 13 required\n",
            )
                .into_response(),
            Refused::Loop => refuse(
                StatusCode::LOOP_DETECTED,
                "This is the switch that connects: a connection to itself would loop every frame.\n",
            ),
        }
    }
}

/// An admitted WebSocket connection whose upgrade is under way: once hyper hands over the
/// connection, it becomes a `server` port.
struct Upgrading {
    session: (Arc<LiveWs>, Arc<Session>),
    switch: SharedSwitch,
    keepalive: Option<Duration>,
    super_frames: bool,
    congestion: Option<Arc<str>>,
    permit: ConnPermit,
    client: Client,
    origin: Origin,
}

impl Upgrading {
    async fn attach(self, on_upgrade: hyper::upgrade::OnUpgrade) {
        match on_upgrade.await {
            Ok(upgraded) => {
                // hyper keeps what it read past the request in `upgraded` itself: no tail.
                let io: BoxIo = Box::new(TokioIo::new(upgraded));
                let port = Admitted {
                    port: WsPort::new(
                        io,
                        Role::Server,
                        Vec::new(),
                        self.keepalive,
                        self.super_frames,
                    )
                    .with_congestion(self.congestion),
                    _permit: self.permit,
                    session: self.session,
                };
                let name = self.client.to_string();
                attach_from(&self.switch, PortKind::Server, name, self.origin, port);
            }
            Err(e) => tracing::warn!(peer = %self.client, "WebSocket upgrade failed: {e}"),
        }
    }
}

/// The `101 Switching Protocols` answer.
fn switching_protocols(accept: String, super_frames: bool) -> Response {
    let mut answer = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(SWITCH_ID_HEADER, switch_id());
    if super_frames {
        answer = answer.header(super_frame::HEADER, super_frame::VERSION);
    }
    answer
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Serves `app` on `listener` — over TLS when asked — until the process ends.
///
/// HTTP/1.1 only (WebSocket upgrades need it). A client that is slow to finish its TLS
/// handshake or its request headers is dropped, so half-open connections cannot pile up.
///
/// Connections still speaking HTTP (not yet upgraded to WebSocket) are bounded by
/// `how.limits`, overall and per address (a trusted proxy, which speaks for many clients, only
/// overall): past them a new connection is closed at once, so a flood of slow requests cannot
/// take memory or starve the administrator's `ctl`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    how: Listening,
    app: Router,
) -> std::io::Result<()> {
    let pending = Connections::new(how.limits);
    let local_default = listener.local_addr()?;
    loop {
        let (mut tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let from_proxy = how.proxies.trusts(peer.ip());
        let admitted = if from_proxy {
            pending.admit_overall()
        } else {
            pending.admit(canonical(peer.ip()))
        };
        let slot = match admitted {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(peer = %Client::of(peer), "connection closed at once: {why}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let congestion = how.tcp.and_then(|t| tune(&tcp, &t));
        let local = tcp.local_addr().unwrap_or(local_default);
        let (app, how) = (app.clone(), how.clone());
        tokio::spawn(async move {
            // Held until the connection ends or becomes a WebSocket (which has its own limits).
            let _slot = slot;
            let mut conn = Connection::plain(Client::of(peer));
            if how.proxy_protocol && from_proxy {
                // The proxy's word for the whole connection: no request header is read after it.
                match read_proxy_header(&mut tcp).await {
                    Ok(named) => conn.proxied = Some(named.unwrap_or(conn.peer)),
                    Err(e) => {
                        tracing::warn!(peer = %conn.peer, "connection closed: {e}");
                        return;
                    }
                }
            }
            let (mut identity, mut certs) = (None, None);
            let io: BoxIo = match how.tls {
                None => Box::new(tcp),
                Some(cell) => {
                    let acceptor = TlsAcceptor::from(cell.load());
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            // Verified by the handshake when the listener requires it.
                            let chain = s.get_ref().1.peer_certificates();
                            identity = chain.and_then(crate::base::tls::peer_identity);
                            certs =
                                chain.map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
                            Box::new(s)
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = %conn.shown(), "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(peer = %conn.shown(), "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let who = Peer {
                conn,
                local,
                identity,
                certs,
                congestion,
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(who.clone());
                let mut app = app.clone();
                async move {
                    use tower::Service;
                    Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            if let Err(e) = http.await {
                tracing::debug!(peer = %conn.shown(), "HTTP connection ended: {e}");
            }
        });
    }
}
