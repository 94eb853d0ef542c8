//! WebSocket ports: `client` (we connected out) and `server` (a peer connected in) are the
//! same thing once the handshake is done — one binary message is one Ethernet frame.
//!
//! What peers in the wild send besides frames must not end the port: text messages (browser
//! emulators' keepalive chatter) are ignored, pings are answered by tungstenite, and
//! permessage-deflate offers are simply not accepted during the handshake (RFC 6455 lets the
//! server ignore an extension), so the peer never compresses.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

use super::{MAX_FRAME, Port, PortIo, proxy};
use crate::tls::Verify;

/// Frames written before the sink is flushed: one flush (and, with TCP_NODELAY, usually one
/// segment train) per burst rather than per frame.
const BATCH: usize = 64;

/// Time allowed for an outgoing connection and its handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Limits for every WebSocket: a message larger than the largest Ethernet frame we can carry
/// is refused by tungstenite instead of being buffered.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

/// A WebSocket connection carrying frames.
pub struct WsPort<S> {
    ws: WebSocketStream<S>,
}

impl<S> WsPort<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsPort { ws }
    }
}

impl<S> Port for WsPort<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        let PortIo {
            mut egress,
            ingress,
        } = io;
        let (mut sink, mut stream) = self.ws.split();

        let reader = async {
            while let Some(msg) = stream.next().await {
                match msg? {
                    Message::Binary(frame) => ingress.frame(frame),
                    Message::Text(t) => {
                        tracing::trace!(
                            port = ingress.port(),
                            len = t.len(),
                            "text message ignored"
                        )
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Ok::<_, anyhow::Error>(())
        };

        let writer = async {
            let mut batch = Vec::with_capacity(BATCH);
            while egress.recv_many(&mut batch, BATCH).await > 0 {
                for frame in batch.drain(..) {
                    sink.feed(Message::Binary(frame)).await?;
                }
                sink.flush().await?;
            }
            // The switch removed the port: say goodbye properly.
            let bye = CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away,
                reason: "port removed".into(),
            };
            let _ =
                tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(bye))))
                    .await;
            Ok(())
        };

        tokio::select! {
            r = reader => r,
            r = writer => r,
        }
    }
}

/// Credentials for HTTP Basic authentication of an outgoing connection.
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: String,
    pub passwd: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How a `client` port connects: credentials and, for `wss://`, how the server is verified.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub creds: Option<Credentials>,
    pub verify: Verify,
}

/// Any byte stream a WebSocket can run over: TCP, TLS over TCP (possibly through a proxy
/// tunnel), or an upgraded HTTP connection.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A type-erased [`Io`], so client and server ports of every transport are one type.
pub type BoxIo = Box<dyn Io>;

/// Validates a `client` target: a `ws://` or `wss://` URL with a host.
pub fn parse_target(url: &str) -> anyhow::Result<Uri> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        anyhow::bail!("Invalid target URL scheme: {url}");
    }
    let uri: Uri = url.parse().with_context(|| format!("invalid URL: {url}"))?;
    if uri.host().is_none_or(str::is_empty) {
        anyhow::bail!("no host in URL: {url}");
    }
    Ok(uri)
}

/// Connects a `client` port to `url`: TCP (directly or through the environment's HTTP proxy),
/// TLS for `wss://`, then the WebSocket handshake.
pub async fn connect(url: &str, opts: &ClientOptions) -> anyhow::Result<WsPort<BoxIo>> {
    let uri = parse_target(url)?;
    let tls = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or_default();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });

    let mut req = url.into_client_request()?;
    if let Some(c) = &opts.creds {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.passwd));
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {token}"))?,
        );
    }
    let tls_config = if tls {
        if opts.verify == Verify::Insecure {
            tracing::warn!(%url, "server certificate NOT verified (--insecure)");
        }
        Some(crate::tls::client_config(&opts.verify)?)
    } else {
        None
    };

    let handshake = async {
        let tcp = proxy::connect(bare_host, port, tls).await?;
        let io: BoxIo = match tls_config {
            None => Box::new(tcp),
            Some(config) => {
                let name = crate::tls::server_name(bare_host)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {host}:{port} failed"))?;
                Box::new(stream)
            }
        };
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, io, Some(config()))
            .await
            .map_err(describe_handshake_error)?;
        Ok::<_, anyhow::Error>(ws)
    };
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to {url}"))??;
    Ok(WsPort::new(ws))
}

/// Turns a failed handshake into a one-line reason (an HTTP status says more than a debug dump).
fn describe_handshake_error(e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(resp) => {
            let status = resp.status();
            anyhow::anyhow!(
                "WebSocket handshake refused: HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        }
        other => anyhow::anyhow!("WebSocket handshake failed: {other}"),
    }
}
