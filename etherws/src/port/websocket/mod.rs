//! WebSocket ports: `client` (we connected out) and `server` (a peer connected in) are the
//! same thing once the handshake is done — one binary message is one Ethernet frame.
//!
//! What peers in the wild send besides frames must not end the port: text messages (browser
//! emulators' keepalive chatter) are ignored, pings are answered (see [`session`], which runs
//! the data phase, and [`framing`], which frames it; tungstenite does the handshakes), and
//! permessage-deflate offers are simply not accepted during the handshake (RFC 6455 lets the
//! server ignore an extension), so the peer never compresses.
//!
//! Its parts: [`session`] (one connection's reader and writer), [`framing`] (RFC 6455 frames),
//! [`super_frame`] (GSO super-frames between etherws peers), [`http_proxy`] (HTTP CONNECT
//! proxies for client ports), [`tcp`] (the TCP socket's unsent backlog and congestion
//! control); client ports' dialing and reconnecting are here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) mod framing;
pub(crate) mod http_proxy;
mod session;
pub(crate) mod super_frame;
pub(crate) mod tcp;

pub(crate) use session::{End, WsPort};

use super::{EgressRx, MAX_FRAME, Port, PortIo};
use crate::base::escape::Esc;
use crate::base::tls::{Identity, Verify};
pub(crate) use framing::Role;

/// Time allowed for an outgoing connection and its handshake.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Limits for a client port's handshake (the data phase is [`framing`]'s): a message larger
/// than the largest Ethernet frame we can carry is refused.
pub(crate) fn config(super_frames: bool) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(read_chunk(super_frames))
}

/// The largest message a peer may send: the largest frame behind a super-frame header
/// (whether or not super-frames were negotiated: one limit for every peer).
const MAX_MESSAGE: usize = MAX_FRAME + super_frame::HDR_LEN;

/// Bytes a read asks for: a connection that carries plain frames holds a couple of them (a
/// switch of 10,000 idle peers holds 40 MB of these), one that carries super-frames a quarter
/// of one (a larger frame gets room for all of it as its header arrives).
fn read_chunk(super_frames: bool) -> usize {
    if super_frames { 16 * 1024 } else { 4 * 1024 }
}

/// Connection upkeep shared by every WebSocket port of a switch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSettings {
    /// Ping a peer that has been silent this long; drop it after twice as long. None: never.
    pub(crate) keepalive: Option<Duration>,
    /// Longest wait between reconnection attempts of a client port.
    pub(crate) reconnect_max: Duration,
    /// Offer and accept super-frames with WebSocket peers, and open TAP devices with offloads
    /// (`--strict-frames` turns both off).
    pub(crate) super_frames: bool,
    /// What every connection's TCP socket is given: its unsent backlog, its congestion control.
    pub(crate) tcp: tcp::TcpTuning,
    /// The congestion controller of QUIC connections (`--quic-congestion`).
    pub(crate) quic_congestion: crate::settings::values::QuicCongestion,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            keepalive: Some(Duration::from_secs(30)),
            reconnect_max: Duration::from_secs(60),
            super_frames: true,
            tcp: tcp::TcpTuning::default(),
            quic_congestion: Default::default(),
        }
    }
}

/// A `client` port: a connection (WebSocket, or QUIC with `port::quic`) that is
/// re-established when it drops.
///
/// The port keeps its number while the link is down; the switch sends it nothing and forgets
/// its stations meanwhile. Attempts back off exponentially (1 s, 2 s, 4 s… up to
/// `reconnect_max`) with jitter, so a switch restarting under many clients is not hit by all
/// of them at once. Removing the port stops the attempts, even one in progress.
pub(crate) struct ClientPort<D: Dial = Dialer> {
    dialer: D,
    settings: WsSettings,
    first: Option<D::Link>,
}

/// How a client port reaches its peer: one transport's dialer, prepared once.
pub(crate) trait Dial: Send + Sync + 'static {
    /// A connection made, its handshake done.
    type Link: Link;
    /// The target URL, for logs.
    fn url(&self) -> &str;
    /// Connects once.
    fn connect(
        &self,
        settings: &WsSettings,
    ) -> impl std::future::Future<Output = anyhow::Result<Self::Link>> + Send;
}

/// One connection's data phase, until it ends.
pub(crate) trait Link: Send + 'static {
    /// Moves frames until the peer goes or the switch removes the port.
    fn session(self, io: &mut PortIo) -> impl std::future::Future<Output = End> + Send;
}

impl<D: Dial> ClientPort<D> {
    /// A port on `dialer`: connected first (failing here fails `addPort`, as in etherws 1.3)
    /// with `connect_first`, else down and connecting in the background.
    pub(crate) async fn start(
        dialer: D,
        settings: WsSettings,
        connect_first: bool,
    ) -> anyhow::Result<Self> {
        let first = match connect_first {
            true => Some(dialer.connect(&settings).await?),
            false => None,
        };
        Ok(ClientPort {
            dialer,
            settings,
            first,
        })
    }
}

impl ClientPort<Dialer> {
    /// Connects for the first time; failing here fails `addPort`, as in etherws 1.3.
    pub(crate) async fn connect(
        url: &str,
        opts: ClientOptions,
        settings: WsSettings,
    ) -> anyhow::Result<Self> {
        Self::start(Dialer::new(url, opts).await?, settings, true).await
    }

    /// A port that starts down and connects in the background (checking the URL and loading
    /// its TLS settings now).
    pub(crate) async fn pending(
        url: &str,
        opts: ClientOptions,
        settings: WsSettings,
    ) -> anyhow::Result<Self> {
        Self::start(Dialer::new(url, opts).await?, settings, false).await
    }
}

/// Waits until `egress` is closed (true) or `delay` passed (false), discarding frames: a
/// down link gets nothing, and nothing stale is sent once it is back.
async fn closed_within(egress: &mut EgressRx, delay: Duration) -> bool {
    let deadline = tokio::time::sleep(delay);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return false,
            f = egress.recv() => if f.is_none() { return true },
        }
    }
}

impl<D: Dial> Port for ClientPort<D> {
    async fn run(self, mut io: PortIo) -> anyhow::Result<()> {
        let port = io.ingress.port();
        let url = self.dialer.url();
        let mut ws = self.first;
        if ws.is_none() {
            io.ingress.set_link(false);
        }
        // The first attempt of a pending port is immediate; later ones back off.
        let mut delay = if ws.is_none() {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        loop {
            if let Some(w) = ws.take() {
                match w.session(&mut io).await {
                    End::Removed => return Ok(()),
                    End::Closed => {
                        tracing::warn!(port, url = %Esc(url), "peer closed the connection; reconnecting")
                    }
                    End::Failed(e) => {
                        tracing::warn!(port, url = %Esc(url), "connection lost: {e:#}; reconnecting")
                    }
                }
                io.ingress.set_link(false);
                delay = Duration::from_secs(1);
            }
            // Full-ish jitter: somewhere between half and all of the current delay.
            let wait = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
            if closed_within(&mut io.egress, wait).await {
                return Ok(());
            }
            let attempt = self.dialer.connect(&self.settings);
            let result = tokio::select! {
                r = attempt => r,
                true = closed_within(&mut io.egress, CONNECT_TIMEOUT * 2) => return Ok(()),
            };
            match result {
                Ok(w) => {
                    tracing::info!(port, url = %Esc(url), "reconnected");
                    io.ingress.set_link(true);
                    ws = Some(w);
                }
                Err(e) => {
                    delay = (delay * 2)
                        .max(Duration::from_secs(1))
                        .min(self.settings.reconnect_max);
                    tracing::info!(port, url = %Esc(url), "reconnect failed: {e:#}");
                }
            }
        }
    }
}

/// Credentials for HTTP Basic authentication of an outgoing connection.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) passwd: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How a `client` port connects: credentials and, for `wss://`, how the server is verified
/// and the certificate presented to a server that asks for one.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) creds: Option<Credentials>,
    pub(crate) verify: Verify,
    pub(crate) identity: Option<Identity>,
}

/// Any byte stream a WebSocket can run over: TCP, TLS over TCP (possibly through a proxy
/// tunnel), or an upgraded HTTP connection.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A type-erased [`Io`], so client and server ports of every transport are one type.
pub(crate) type BoxIo = Box<dyn Io>;

/// Validates a `client` target: a `ws://` or `wss://` URL with a host.
pub(crate) fn parse_target(url: &str) -> anyhow::Result<Uri> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        anyhow::bail!("Invalid target URL scheme: {url}");
    }
    let uri: Uri = url.parse().with_context(|| format!("invalid URL: {url}"))?;
    if uri.host().is_none_or(str::is_empty) {
        anyhow::bail!("no host in URL: {url}");
    }
    Ok(uri)
}

/// The header in which a switch names itself when it connects out and when it accepts a
/// connection: a switch that meets its own id has connected to itself (a `client` port to its
/// own URL, directly or through a proxy), which would loop every frame it floods.
pub(crate) const SWITCH_ID_HEADER: &str = "x-etherws-switch";

/// This process's switch id: random, made once.
pub(crate) fn switch_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{:016x}", fastrand::u64(..)))
}

/// The `Authorization` header of HTTP Basic authentication with `creds`.
pub(crate) fn authorization(creds: Option<Credentials>) -> anyhow::Result<Option<HeaderValue>> {
    creds
        .map(|c| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.user, c.passwd));
            HeaderValue::from_str(&format!("Basic {token}"))
                .context("credentials that cannot be sent in a header")
        })
        .transpose()
}

/// How a `client` port reaches its peer, prepared once: the URL checked, the credentials
/// encoded and, for `wss://`, the TLS configuration loaded (CA file or system roots, read on
/// the blocking pool — never again on each reconnection).
pub(crate) struct Dialer {
    url: String,
    authorization: Option<HeaderValue>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The server is checked against a certificate file (`cacerts`), not the system's roots.
    ca_file: bool,
}

impl Dialer {
    async fn new(url: &str, opts: ClientOptions) -> anyhow::Result<Self> {
        let uri = parse_target(url)?;
        let authorization = authorization(opts.creds)?;
        let ca_file = matches!(opts.verify, Verify::CaFile(_));
        let tls = if uri.scheme_str() == Some("wss") {
            if opts.verify == Verify::Insecure {
                tracing::warn!(url = %Esc(url), "server certificate NOT verified (--insecure)");
            }
            let (verify, identity) = (opts.verify, opts.identity);
            let config = tokio::task::spawn_blocking(move || {
                crate::base::tls::client_config(&verify, identity.as_ref())
            })
            .await
            .context("loading the TLS settings failed")??;
            Some(config)
        } else {
            None
        };
        Ok(Dialer {
            url: url.to_string(),
            authorization,
            tls,
            ca_file,
        })
    }

    /// Connects: TCP (directly or through the environment's HTTP proxy), TLS for `wss://`,
    /// then the WebSocket handshake.
    async fn connect(&self, settings: &WsSettings) -> anyhow::Result<WsPort> {
        let url = &self.url;
        let uri = parse_target(url)?;
        let host = uri.host().unwrap_or_default();
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });

        let mut req = url.as_str().into_client_request()?;
        if let Some(auth) = &self.authorization {
            req.headers_mut().insert("Authorization", auth.clone());
        }
        req.headers_mut()
            .insert(SWITCH_ID_HEADER, HeaderValue::from_static(switch_id()));
        if settings.super_frames {
            req.headers_mut().insert(
                super_frame::HEADER,
                HeaderValue::from_static(super_frame::VERSION),
            );
        }

        let ca_file = self.ca_file;
        let handshake = async {
            let tcp = http_proxy::connect(bare_host, port, self.tls.is_some()).await?;
            // The socket is the same through a proxy's tunnel and under TLS.
            let congestion = tcp::tune(&tcp, &settings.tcp);
            let io: BoxIo = match &self.tls {
                None => Box::new(tcp),
                Some(config) => {
                    let name = crate::base::tls::server_name(bare_host)?;
                    let stream = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| {
                            let e = anyhow::Error::from(e)
                                .context(format!("TLS handshake with {host}:{port} failed"));
                            // Escaped: it may quote the names of the server's certificate.
                            anyhow::anyhow!(
                                "{}",
                                crate::base::escape::printable(&crate::base::tls::explain(
                                    &e, ca_file
                                ))
                            )
                        })?;
                    Box::new(stream)
                }
            };
            let (ws, resp) = tokio_tungstenite::client_async_with_config(
                req,
                Recorder::new(io),
                Some(config(settings.super_frames)),
            )
            .await
            .map_err(describe_handshake_error)?;
            let (io, tail) = ws.into_inner().finish()?;
            if resp
                .headers()
                .get(SWITCH_ID_HEADER)
                .is_some_and(|id| id.as_bytes() == switch_id().as_bytes())
            {
                anyhow::bail!("{url} is this switch itself: refusing a connection that would loop");
            }
            // Super-frames only if the server accepted them (and they were offered).
            let super_frames = settings.super_frames && super_frame::offered(resp.headers());
            Ok::<_, anyhow::Error>((io, tail, super_frames, congestion))
        };
        let (io, tail, super_frames, congestion) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| anyhow::anyhow!("timed out connecting to {}", Esc(url)))??;
        Ok(
            WsPort::new(io, Role::Client, tail, settings.keepalive, super_frames)
                .with_congestion(congestion),
        )
    }
}

impl Dial for Dialer {
    type Link = WsPort;

    fn url(&self) -> &str {
        &self.url
    }

    fn connect(
        &self,
        settings: &WsSettings,
    ) -> impl std::future::Future<Output = anyhow::Result<WsPort>> + Send {
        Dialer::connect(self, settings)
    }
}

impl Link for WsPort {
    fn session(self, io: &mut PortIo) -> impl std::future::Future<Output = End> + Send {
        WsPort::session(self, io)
    }
}

/// A connection that keeps what its client handshake read: tungstenite reads the server's
/// answer in chunks, and the frames the server sent right behind it may be in the last one.
/// The data phase starts with those bytes ([`WsPort::new`]'s tail), so none is lost.
struct Recorder {
    io: BoxIo,
    seen: Vec<u8>,
}

/// Bytes of handshake answer recorded at most (tungstenite refuses long answers sooner).
const MAX_ANSWER: usize = 64 * 1024;

impl Recorder {
    fn new(io: BoxIo) -> Self {
        Recorder {
            io,
            seen: Vec::new(),
        }
    }

    /// The connection, and what was read past the end of the handshake answer.
    fn finish(self) -> anyhow::Result<(BoxIo, Vec<u8>)> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&self.seen) {
            Ok(httparse::Status::Complete(n)) => Ok((self.io, self.seen[n..].to_vec())),
            _ => anyhow::bail!("WebSocket handshake answer not understood"),
        }
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.io).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if me.seen.len() + new.len() > MAX_ANSWER {
            return Poll::Ready(Err(std::io::Error::other(
                "WebSocket handshake answer too long",
            )));
        }
        me.seen.extend_from_slice(new);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Turns a failed handshake into a one-line reason (an HTTP status says more than a debug dump).
fn describe_handshake_error(e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(resp) => {
            let status = resp.status();
            // The server's one-line reason, if it gave one (shortened, and escaped: it is the
            // peer's text and ends up in logs and on the operator's terminal).
            let body = resp.body().as_deref().unwrap_or_default();
            let reason = String::from_utf8_lossy(body);
            let reason: String = reason
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            let reason = crate::base::escape::printable(reason.trim());
            anyhow::anyhow!(
                "WebSocket handshake refused: HTTP {} {}{}{}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                if reason.is_empty() { "" } else { ": " },
                reason
            )
        }
        // A server that refuses our client certificate says so with a TLS alert, which TLS 1.3
        // delivers only once the handshake is over: on the first read of the upgrade answer.
        other => match crate::base::tls::alert_received(&other) {
            Some(alert) => {
                anyhow::anyhow!(
                    "TLS session refused: {}",
                    crate::base::tls::describe_alert(alert)
                )
            }
            None => anyhow::anyhow!("WebSocket handshake failed: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit docs/production.md's Limits table gives is the one enforced.
    #[test]
    fn the_limits_table_states_the_message_limit() {
        let page = include_str!("../../../../docs/production.md");
        let n = MAX_MESSAGE.to_string();
        let (thousands, rest) = n.split_at(n.len() - 3);
        let said = format!("a WebSocket message over {thousands},{rest} bytes");
        assert!(
            page.contains(&said),
            "docs/production.md does not say {said:?}"
        );
    }
    use bytes::Bytes;
    use framing::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that sends its first frame in the same segment as its handshake answer: the
    /// frame must reach the client port's data phase, not be lost with tungstenite.
    #[tokio::test]
    async fn a_frame_right_behind_the_handshake_answer_is_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "request cut short");
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            let key = req
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Sec-WebSocket-Key: ")
                        .or(l.strip_prefix("sec-websocket-key: "))
                })
                .expect("key")
                .trim();
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&[0x82, 3, 1, 2, 3]);
            s.write_all(&answer).await.unwrap();
            s
        });
        let opts = ClientOptions {
            creds: None,
            verify: Verify::System,
            identity: None,
        };
        let dialer = Dialer::new(&format!("ws://{addr}/"), opts).await.unwrap();
        let port = dialer.connect(&WsSettings::default()).await.unwrap();
        let _server = server.await.unwrap();
        assert_eq!(port.tail, [0x82, 3, 1, 2, 3]);
        assert!(!port.super_frames, "the server did not accept super-frames");
        // The socket was tuned, and its algorithm read back for `listPort`.
        assert!(port.congestion.is_some());
        let mut r = framing::Reader::new(Role::Client, MAX_MESSAGE, 64, &port.tail);
        assert_eq!(
            r.parse().unwrap(),
            Some(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        );
    }
}
