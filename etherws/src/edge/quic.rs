//! The HTTP/3 listener (`--quic`): an extended CONNECT (`:protocol = webtransport`) on one of
//! the WebSocket paths becomes a `server` port whose frames travel as HTTP Datagrams
//! (`port::quic`), admitted as a WebSocket upgrade is (`edge/server.rs`): the path (404),
//! the loop check (508), htpasswd with the same throttle (401), mutual TLS with the same
//! verifier, the same per-address connection limit (503).
//!
//! No proxy header is read over QUIC: the client is the UDP source (`--trusted-proxy` and
//! the PROXY protocol are for TCP reverse proxies). One CONNECT per connection: later
//! requests are refused (`H3_REQUEST_REJECTED`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use rustls::pki_types::CertificateDer;

use crate::base::escape::printable;
use crate::base::ip::canonical;
use crate::edge::admission::{ConnLimits, ConnPermit, Connections};
use crate::edge::auth::Auth;
use crate::edge::forwarded::Client;
use crate::edge::live::{LiveWs, Session, TlsCell};
use crate::edge::server::Admitted;
use crate::port::quic::{
    CAPSULE_PROTOCOL, CAPSULE_PROTOCOL_ON, ConnectStream, QuicPort, Setup, WT_DRAFT_HEADER,
    says_capsules,
};
use crate::port::websocket::{SWITCH_ID_HEADER, WsSettings, switch_id};
use crate::port::{Origin, SharedSwitch, attach_from};
use crate::switch::PortKind;

/// Time a client gets to finish its QUIC handshake, and to send its CONNECT.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Handshakes under way past which a client whose address is not validated gets a Retry.
const RETRY_ABOVE: usize = 64;

/// HTTP/3's `H3_EXCESSIVE_LOAD`: the connection closed past its address's limit.
const H3_EXCESSIVE_LOAD: u32 = 0x107;

/// Time the answer to a refused CONNECT gets to leave, and its client to go.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of the UDP socket's buffers, both ways.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// A connection over QUIC and HTTP/3 whose CONNECT has not been answered: h3 and the stream.
type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// What the QUIC listener admits peers with: the WebSocket listener's own.
#[derive(Clone)]
pub(crate) struct QuicSide {
    pub(crate) switch: SharedSwitch,
    pub(crate) auth: Arc<Auth>,
    /// The WebSocket sessions' limits: a QUIC session counts against them too.
    pub(crate) conns: Arc<Connections>,
    pub(crate) live: Arc<LiveWs>,
    pub(crate) settings: WsSettings,
}

/// The QUIC server configuration, made again from the WebSocket listener's TLS one when a
/// reload replaced it (checked at each new connection, as a TLS handshake reads its cell).
pub(crate) struct ServerTls {
    cell: TlsCell,
    transport: Arc<quinn::TransportConfig>,
    made_from: Arc<rustls::ServerConfig>,
    config: Arc<quinn::ServerConfig>,
}

impl ServerTls {
    pub(crate) fn new(cell: TlsCell, settings: &WsSettings) -> anyhow::Result<Self> {
        let transport = crate::port::quic::transport(settings.keepalive, settings.quic_congestion);
        let made_from = cell.load();
        let config = crate::port::quic::server_config(&made_from, transport.clone())?;
        Ok(ServerTls {
            cell,
            transport,
            made_from,
            config: Arc::new(config),
        })
    }

    /// The configuration for a new connection: the last one, or one made from the cell's
    /// TLS configuration if a reload replaced it.
    fn current(&mut self) -> Arc<quinn::ServerConfig> {
        let now = self.cell.load();
        if !Arc::ptr_eq(&now, &self.made_from) {
            match crate::port::quic::server_config(&now, self.transport.clone()) {
                Ok(c) => self.config = Arc::new(c),
                Err(e) => tracing::warn!("QUIC keeps its TLS configuration: {e:#}"),
            }
            self.made_from = now;
        }
        self.config.clone()
    }
}

/// Opens the QUIC endpoint on `host` (all addresses if empty) and UDP `port`.
pub(crate) fn bind(host: &str, port: u16, tls: &mut ServerTls) -> anyhow::Result<quinn::Endpoint> {
    let config = (*tls.current()).clone();
    let socket = udp_socket(host, port)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(Default::default(), Some(config), socket, runtime)
        .with_context(|| format!("cannot serve QUIC on UDP port {port}"))
}

/// The listener's UDP socket, dual-stack when `host` is empty, with large buffers.
fn udp_socket(host: &str, port: u16) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: SocketAddr = match host {
        "" => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        h => (h.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {h}"))?
            .next()
            .with_context(|| format!("no address for {h}"))?,
    };
    let open = |addr: SocketAddr| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(!host.is_empty())?;
        }
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
        s.bind(&addr.into())?;
        Ok(s)
    };
    let socket = open(addr)
        .or_else(|e| match host {
            // No IPv6 on this host: every IPv4 address.
            "" => open(SocketAddr::from(([0, 0, 0, 0], port))),
            _ => Err(e),
        })
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(socket.into())
}

/// Serves QUIC on `endpoint` until it closes. Handshakes under way are bounded as HTTP
/// connections are (`limits`): past them a new one is refused at once.
///
/// An Initial's source address is not proven (anyone can send one in another's name), so a
/// handshake counts against the total only until it completes, and then against its
/// address: spoofed Initials cannot take their victim's slots. With more than
/// [`RETRY_ABOVE`] handshakes under way, an address not yet validated gets a Retry first.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    side: QuicSide,
    limits: ConnLimits,
    mut tls: ServerTls,
) -> std::io::Result<()> {
    let pending = Connections::new(limits);
    while let Some(inc) = endpoint.accept().await {
        let config = tls.current();
        if pending.total() > RETRY_ABOVE && !inc.remote_address_validated() {
            let _ = inc.retry();
            continue;
        }
        let slot = match pending.admit_overall() {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(peer = %Client::of(inc.remote_address()), "QUIC connection refused: {why}");
                inc.refuse();
                continue;
            }
        };
        let handshake = Handshake {
            pending: pending.clone(),
            slot,
            config,
        };
        tokio::spawn(side.clone().connection(inc, handshake));
    }
    Ok(())
}

/// A handshake under way: its slot (the total's), and what takes its address's.
struct Handshake {
    pending: Arc<Connections>,
    slot: ConnPermit,
    config: Arc<quinn::ServerConfig>,
}

impl Handshake {
    /// Once the handshake proved the client's address: its slot there, in place of the
    /// total's, or the connection closed (`H3_EXCESSIVE_LOAD`) past the address's limit.
    fn proven(self, conn: &quinn::Connection, peer: &Client) -> Option<ConnPermit> {
        drop(self.slot);
        match self.pending.admit(canonical(conn.remote_address().ip())) {
            Ok(slot) => Some(slot),
            Err(why) => {
                tracing::debug!(%peer, "QUIC connection refused: {why}");
                conn.close(H3_EXCESSIVE_LOAD.into(), b"too many connections");
                None
            }
        }
    }
}

impl QuicSide {
    /// One connection: the QUIC handshake, h3's, the CONNECT, and the port it becomes.
    async fn connection(self, inc: quinn::Incoming, handshake: Handshake) {
        let peer = Client::of(inc.remote_address());
        let config = handshake.config.clone();
        let connected = async {
            let conn = inc.accept_with(config)?.await?;
            let h3 = h3::server::builder()
                .enable_extended_connect(true)
                .enable_datagram(true)
                .enable_webtransport(true)
                .max_webtransport_sessions(1)
                .max_field_section_size(16384)
                .build(h3_quinn::Connection::new(conn.clone()))
                .await?;
            Ok::<_, anyhow::Error>((conn, h3))
        };
        let (conn, mut h3) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connected).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return tracing::info!(%peer, "QUIC handshake failed: {}", printable(&format!("{e:#}")));
            }
            Err(_) => return tracing::info!(%peer, "QUIC handshake timed out"),
        };
        let Some(_slot) = handshake.proven(&conn, &peer) else {
            return;
        };
        let request = async {
            let req = async {
                h3.accept()
                    .await?
                    .context("closed")?
                    .resolve_request()
                    .await
                    .map_err(anyhow::Error::from)
            };
            tokio::select! {
                r = req => r,
                () = drop_datagrams(&conn) => Err(anyhow::anyhow!("closed")),
            }
        };
        let (req, mut stream) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return tracing::info!(%peer, "no HTTP/3 request: {}", printable(&format!("{e:#}")));
            }
            Err(_) => return tracing::info!(%peer, "HTTP/3 request timed out"),
        };
        let certs = peer_certs(&conn);
        match self.admit(&req, &peer, certs).await {
            Err(status) => {
                let answer = Response::builder()
                    .status(status)
                    .body(())
                    .unwrap_or_default();
                // The answer, then the client goes once it has read it; a client that
                // grants no credit for the answer is not waited for.
                let refusal = async {
                    let _ = stream.send_response(answer).await;
                    let _ = stream.finish().await;
                    conn.closed().await;
                };
                let gone = async {
                    tokio::select! {
                        () = refusal => {}
                        () = drop_datagrams(&conn) => {}
                    }
                };
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, gone).await;
            }
            Ok(admitted) => {
                let capsules = says_capsules(req.headers());
                self.attach(admitted, conn, (h3, stream, capsules), peer)
                    .await
            }
        }
    }

    /// Answers 200 and attaches the port; later requests on the connection are refused.
    async fn attach(
        &self,
        (origin, session, permit): (Origin, Arc<Session>, ConnPermit),
        conn: quinn::Connection,
        (h3, mut stream, capsules): (H3Conn, H3Stream, bool),
        peer: Client,
    ) {
        let mut answer = Response::builder()
            .status(StatusCode::OK)
            .header(WT_DRAFT_HEADER, "draft02")
            .header(SWITCH_ID_HEADER, switch_id());
        if capsules {
            answer = answer.header(CAPSULE_PROTOCOL, CAPSULE_PROTOCOL_ON);
        }
        let answer = answer.body(()).unwrap_or_default();
        // A client that grants no credit for the answer is not waited for.
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.send_response(answer)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return tracing::info!(%peer, "CONNECT answer not sent: {}", printable(&e.to_string()));
            }
            Err(_) => return tracing::info!(%peer, "CONNECT answer not sent: timed out"),
        }
        let refuser = tokio::spawn(refuse_more(h3));
        let keep = crate::port::quic::AbortOnDrop(refuser);
        let setup = Setup {
            congestion: self.settings.quic_congestion,
            capsules,
            mss_clamp: self.settings.mss_clamp,
        };
        let stream = ConnectStream::Server(stream);
        let port = QuicPort::new(conn, stream, setup, Mutex::new(Box::new(keep)));
        let port = Admitted {
            port,
            _permit: permit,
            session: (self.live.clone(), session),
        };
        let stat = attach_from(
            &self.switch,
            PortKind::Server,
            peer.to_string(),
            origin,
            port,
        );
        crate::port::lock(&self.switch).set_quic(stat.port, Default::default());
    }

    /// Admits a CONNECT as `edge/server.rs`'s `upgrade` admits a WebSocket upgrade.
    async fn admit(
        &self,
        req: &Request<()>,
        client: &Client,
        (identity, certs): (Option<String>, Option<Arc<[CertificateDer<'static>]>>),
    ) -> Result<(Origin, Arc<Session>, ConnPermit), StatusCode> {
        let generation = self.live.generation();
        let path = self
            .live
            .path(req.uri().path())
            .ok_or(StatusCode::NOT_FOUND)?;
        let protocol = req.extensions().get::<h3::ext::Protocol>();
        if req.method() != Method::CONNECT || protocol != Some(&h3::ext::Protocol::WEB_TRANSPORT) {
            return Err(StatusCode::BAD_REQUEST);
        }
        let h = req.headers();
        if h.get(SWITCH_ID_HEADER)
            .is_some_and(|id| id.as_bytes() == switch_id().as_bytes())
        {
            tracing::warn!(peer = %client, "refused a QUIC connection from this switch itself");
            return Err(StatusCode::LOOP_DETECTED);
        }
        let (user, from) = self
            .auth
            .prove(&path, h, client, identity)
            .await
            .map_err(|denied| denied.status())?;
        let session = Arc::new(Session {
            path: path.path.clone(),
            user,
            from,
            certs,
            generation,
        });
        let profile = session.profile(&path, &self.live.users.load());
        let permit = self.conns.admit(client.ip).map_err(|why| {
            tracing::warn!(peer = %client, "QUIC session refused: {why}");
            StatusCode::SERVICE_UNAVAILABLE
        })?;
        let origin = Origin {
            addr: Some(client.ip),
            user: session.user.clone(),
            path: Some(path.path),
            policy: profile.policy(),
        };
        Ok((origin, session, permit))
    }
}

/// Reads and drops the datagrams of a connection that has no session (yet) until it ends:
/// quinn would otherwise keep up to its receive buffer (1 MiB) of them for each connection
/// that holds back its CONNECT, and a few addresses may hold thousands of such connections.
async fn drop_datagrams(conn: &quinn::Connection) {
    let mut dropped = 0u64;
    while conn.read_datagram().await.is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        tracing::debug!(peer = %Client::of(conn.remote_address()), dropped, "datagrams before a session dropped");
    }
}

/// The client's certificate chain and its name, on a listener that requires one.
fn peer_certs(
    conn: &quinn::Connection,
) -> (Option<String>, Option<Arc<[CertificateDer<'static>]>>) {
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    match chain {
        Some(chain) => (
            crate::base::tls::peer_identity(&chain),
            Some(chain.into_iter().collect()),
        ),
        None => (None, None),
    }
}

/// Refuses every request after the session's CONNECT, keeping h3's control streams read,
/// until the connection ends. A request whose headers do not come within
/// [`REFUSAL_TIMEOUT`] is dropped (its stream reset), so it cannot stop the refusals.
async fn refuse_more(mut h3: H3Conn) {
    while let Ok(Some(resolver)) = h3.accept().await {
        let resolved = tokio::time::timeout(REFUSAL_TIMEOUT, resolver.resolve_request()).await;
        if let Ok(Ok((_, mut stream))) = resolved {
            stream.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
        }
    }
}
