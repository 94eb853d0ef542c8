//! QUIC ports: Ethernet frames as HTTP Datagrams (RFC 9297) of an extended CONNECT
//! (`:protocol = webtransport`, the `wt` profile of issue #26) over HTTP/3, beside WebSocket.
//!
//! h3 does the control plane only (SETTINGS, QPACK, the CONNECT request and its answer); the
//! datagrams go on the raw `quinn::Connection`, which gives `send_datagram_wait` (the
//! backpressure) and `max_datagram_size` (the path's datagram size). A datagram is the
//! session's Quarter Stream ID ([`codec`]) and one frame, the same bytes as a WebSocket message.
//!
//! Its parts: [`codec`] (the datagram prefix), [`session`] (one connection's data phase, for
//! server and client ports alike), [`auto`] (`transport auto` client ports: QUIC, falling back
//! to WebSocket); the transport's settings and client ports' dialing are here.

mod auto;
pub(crate) mod capsule;
pub(crate) mod codec;
mod session;
mod stream;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use http::{HeaderValue, Method, Request};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

pub(crate) use auto::AutoDialer;
pub(crate) use session::{AbortOnDrop, QuicPort, Setup};
pub(crate) use stream::ConnectStream;

use super::websocket::{
    CONNECT_TIMEOUT, ClientOptions, Dial, SWITCH_ID_HEADER, WsSettings, parse_target, switch_id,
};
use crate::base::escape::Esc;
use crate::base::tls::Verify;
use crate::settings::values::QuicCongestion;

/// The ALPN token of HTTP/3.
pub(crate) const ALPN: &[u8] = b"h3";

/// The header by which both ends say the CONNECT stream carries capsules (RFC 9297 §3.2),
/// with the value [`CAPSULE_PROTOCOL_ON`]; etherws switches send it, browsers at draft-02 not.
pub(crate) const CAPSULE_PROTOCOL: &str = "capsule-protocol";

/// `capsule-protocol`'s value: the structured-field boolean true.
pub(crate) const CAPSULE_PROTOCOL_ON: &str = "?1";

/// Whether `headers` say `capsule-protocol: ?1`.
pub(crate) fn says_capsules(headers: &http::HeaderMap) -> bool {
    headers
        .get(CAPSULE_PROTOCOL)
        .is_some_and(|v| v.as_bytes().trim_ascii() == CAPSULE_PROTOCOL_ON.as_bytes())
}

/// The header of the 200 a browser at WebTransport draft-02 needs (Chromium).
pub(crate) const WT_DRAFT_HEADER: &str = "sec-webtransport-http3-draft";

/// Datagrams received and not yet read, per connection, in bytes (quinn drops the oldest).
const DATAGRAM_RECV_BUFFER: usize = 1024 * 1024;

/// The keepalive of QUIC connections when `--keepalive` is 0: pings after 30 s of silence,
/// the connection given up after 60 s.
const QUIET_KEEPALIVE: Duration = Duration::from_secs(30);

/// Datagrams waiting to be sent, per connection: the standing queue is the port's own.
const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;

/// The transport settings of every QUIC connection, server and client.
///
/// Keepalive as WebSocket's: a ping after `keepalive` of silence, the connection dropped after
/// twice as long (the idle timeout is the smaller of both ends'). Without keepalive
/// (`--keepalive 0`) QUIC still checks its peer, every [`QUIET_KEEPALIVE`]: a peer that
/// vanished (a power cut, a NAT that forgot the path) is only ever noticed by the idle
/// timeout, and a UDP path left silent loses its NAT mappings.
pub(crate) fn transport(
    keepalive: Option<Duration>,
    congestion: QuicCongestion,
) -> Arc<quinn::TransportConfig> {
    use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
    let mut t = quinn::TransportConfig::default();
    let keepalive = keepalive.unwrap_or(QUIET_KEEPALIVE);
    t.keep_alive_interval(Some(keepalive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(2 * keepalive).ok());
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(8u32.into());
    t.stream_receive_window((256u32 * 1024).into());
    t.receive_window((1024u32 * 1024).into());
    t.send_window(1024 * 1024);
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECV_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    t.initial_mtu(1200);
    t.mtu_discovery_config(Some(quinn::MtuDiscoveryConfig::default()));
    match congestion {
        QuicCongestion::Bbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
        QuicCongestion::Cubic => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
        QuicCongestion::NewReno => {
            t.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
        }
    };
    Arc::new(t)
}

/// A QUIC server configuration from the WebSocket listener's TLS one: ALPN `h3`, no 0-RTT
/// (a CONNECT must not be replayable), the same client certificate verifier.
pub(crate) fn server_config(
    tls: &rustls::ServerConfig,
    transport: Arc<quinn::TransportConfig>,
) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(Arc::new(tls))
        .context("the TLS configuration cannot serve QUIC")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(transport)
        .migration(true)
        .max_incoming(1024)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(8 * 1024 * 1024)
        .retry_token_lifetime(Duration::from_secs(15));
    Ok(config)
}

/// The process's one client endpoint, on `[::]:0` (or `0.0.0.0:0` without IPv6), made on the
/// data path's runtime the first time a client port dials.
fn client_endpoint() -> anyhow::Result<quinn::Endpoint> {
    static ENDPOINT: OnceLock<quinn::Endpoint> = OnceLock::new();
    if let Some(e) = ENDPOINT.get() {
        return Ok(e.clone());
    }
    let v6: SocketAddr = "[::]:0".parse()?;
    let endpoint = client_on(v6)
        .or_else(|_| client_on(SocketAddr::from(([0, 0, 0, 0], 0))))
        .context("cannot open the QUIC client socket")?;
    Ok(ENDPOINT.get_or_init(|| endpoint).clone())
}

/// The client endpoint's UDP socket buffers, as the listener's: the kernel's default (about
/// 200 KB) overflows at a few hundred Mbit/s, and every datagram it drops is a loss to the
/// congestion controller (the kernel caps them at `net.core.rmem_max`/`wmem_max`).
const CLIENT_SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// A client endpoint on `addr` (dual-stack when IPv6), its socket with large buffers.
fn client_on(addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    let _ = s.set_recv_buffer_size(CLIENT_SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(CLIENT_SOCKET_BUFFER);
    s.bind(&addr.into())?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        s.into(),
        Arc::new(quinn::TokioRuntime),
    )
}

/// How a QUIC `client` port reaches its peer, prepared once: the `wss://` URL checked, the
/// credentials encoded, the TLS configuration loaded (with ALPN `h3`).
pub(crate) struct QuicDialer {
    url: String,
    host: String,
    port: u16,
    authorization: Option<HeaderValue>,
    tls: Arc<QuicClientConfig>,
    ca_file: bool,
}

impl QuicDialer {
    /// Checks `url` (`wss://` only: QUIC is always encrypted) and loads its TLS settings.
    pub(crate) async fn new(url: &str, opts: ClientOptions) -> anyhow::Result<Self> {
        let uri = parse_target(url)?;
        if uri.scheme_str() != Some("wss") {
            anyhow::bail!("transport quic needs a wss:// URL (QUIC is always encrypted): {url}");
        }
        let host = uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let authorization = super::websocket::authorization(opts.creds)?;
        let ca_file = matches!(opts.verify, Verify::CaFile(_));
        if opts.verify == Verify::Insecure {
            tracing::warn!(url = %Esc(url), "server certificate NOT verified (--insecure)");
        }
        let (verify, identity) = (opts.verify, opts.identity);
        let mut tls = tokio::task::spawn_blocking(move || {
            crate::base::tls::client_config(&verify, identity.as_ref())
        })
        .await
        .context("loading the TLS settings failed")??;
        Arc::make_mut(&mut tls).alpn_protocols = vec![ALPN.to_vec()];
        let tls = QuicClientConfig::try_from(tls).context("TLS settings unfit for QUIC")?;
        Ok(QuicDialer {
            url: url.to_string(),
            host,
            port: uri.port_u16().unwrap_or(443),
            authorization,
            tls: Arc::new(tls),
            ca_file,
        })
    }

    /// Connects: QUIC to the URL's host and port (UDP), then the CONNECT request.
    async fn dial(&self, settings: &WsSettings) -> anyhow::Result<QuicPort> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", Esc(&self.host)))?
            .next()
            .with_context(|| format!("no address for {}", Esc(&self.host)))?;
        let mut config = quinn::ClientConfig::new(self.tls.clone());
        config.transport_config(transport(settings.keepalive, settings.quic_congestion));
        let conn = client_endpoint()?
            .connect_with(config, addr, &self.host)?
            .await
            .map_err(|e| self.explain(e))?;
        let (mut driver, mut requests) = h3::client::builder()
            .enable_extended_connect(true)
            .enable_datagram(true)
            .build::<_, _, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await
            .context("HTTP/3 set-up failed")?;
        let driving = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let mut stream = requests.send_request(self.request()?).await?;
        let resp = stream
            .recv_response()
            .await
            .context("no answer to CONNECT")?;
        self.check(&resp)?;
        let setup = Setup {
            congestion: settings.quic_congestion,
            capsules: says_capsules(resp.headers()),
            mss_clamp: settings.mss_clamp,
        };
        let keep = (requests, AbortOnDrop(driving));
        let keep = std::sync::Mutex::new(Box::new(keep) as Box<dyn Send>);
        Ok(QuicPort::new(
            conn,
            ConnectStream::Client(stream),
            setup,
            keep,
        ))
    }

    /// The extended CONNECT of the `wt` profile.
    fn request(&self) -> anyhow::Result<Request<()>> {
        let uri = parse_target(&self.url)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or("", |a| a.as_str());
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://{authority}{path}"))
            .header(SWITCH_ID_HEADER, switch_id())
            .header("sec-webtransport-http3-draft02", "1")
            .header(CAPSULE_PROTOCOL, CAPSULE_PROTOCOL_ON)
            .body(())?;
        if let Some(auth) = &self.authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, auth.clone());
        }
        req.extensions_mut()
            .insert(h3::ext::Protocol::WEB_TRANSPORT);
        Ok(req)
    }

    /// Refuses an answer that is not a 2xx, or that comes from this switch itself.
    fn check(&self, resp: &http::Response<()>) -> anyhow::Result<()> {
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!(
                "CONNECT refused: HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
        }
        if resp
            .headers()
            .get(SWITCH_ID_HEADER)
            .is_some_and(|id| id.as_bytes() == switch_id().as_bytes())
        {
            anyhow::bail!(
                "{} is this switch itself: refusing a connection that would loop",
                Esc(&self.url)
            );
        }
        Ok(())
    }

    /// A failed QUIC handshake, explained as a TLS one would be.
    fn explain(&self, e: quinn::ConnectionError) -> anyhow::Error {
        let e = anyhow::Error::from(e).context(format!(
            "QUIC handshake with {}:{} failed",
            self.host, self.port
        ));
        anyhow::anyhow!(
            "{}",
            crate::base::escape::printable(&crate::base::tls::explain(&e, self.ca_file))
        )
    }
}

impl Dial for QuicDialer {
    type Link = QuicPort;

    fn url(&self) -> &str {
        &self.url
    }

    async fn connect(&self, settings: &WsSettings) -> anyhow::Result<QuicPort> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.dial(settings))
            .await
            .map_err(|_| anyhow::anyhow!("timed out connecting to {}", Esc(&self.url)))?
    }
}
