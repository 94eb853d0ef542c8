//! `transport auto` client ports: QUIC first, WebSocket when QUIC does not answer, as browsers
//! do ("happy eyeballs": WebSocket starts once QUIC has had [`HEAD_START`], or at once when
//! QUIC fails; the first handshake done wins, the other attempt is dropped). A port that fell
//! back to WebSocket tries QUIC again every `--quic-probe-interval`; a probe that gets through
//! closes the WebSocket session, and the port goes on over the probe's connection, keeping its
//! number. A `ws://` URL (QUIC needs TLS) and an HTTP proxy for the URL mean WebSocket only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{QuicDialer, QuicPort};
use crate::base::escape::{Esc, printable};
use crate::port::PortIo;
use crate::port::websocket::{
    ClientOptions, Dial, Dialer, End, Link, WsPort, WsSettings, http_proxy, parse_target,
};

/// QUIC's head start: WebSocket is tried too once QUIC has not answered in this long.
const HEAD_START: Duration = Duration::from_millis(300);

/// The longest `transport_reason` kept (a reason quotes errors, which may quote the peer).
const MAX_REASON: usize = 300;

/// A port's last session, for logging each change of transport once: none yet.
const NONE: u8 = 0;
/// The last session was WebSocket.
const WS: u8 = 1;
/// The last session was QUIC.
const QUIC: u8 = 2;

/// How a `transport auto` client port reaches its peer: both dialers, prepared once.
pub(crate) struct AutoDialer {
    ws: Dialer,
    /// QUIC's dialer, or why there is none (a `ws://` URL).
    quic: Result<Arc<QuicDialer>, &'static str>,
    /// The URL's host (unbracketed) and port, to see whether an HTTP proxy applies.
    host: String,
    port: u16,
    /// The transport of the last session ([`NONE`], [`WS`], [`QUIC`]).
    last: Arc<AtomicU8>,
}

impl AutoDialer {
    /// Checks `url` and loads its TLS settings, for WebSocket and (`wss://` only) QUIC.
    pub(crate) async fn new(url: &str, opts: ClientOptions) -> anyhow::Result<Self> {
        let uri = parse_target(url)?;
        let tls = uri.scheme_str() == Some("wss");
        let quic = match tls {
            true => Ok(Arc::new(QuicDialer::new(url, opts.clone()).await?)),
            false => Err("ws:// URL: ws only"),
        };
        let host = uri.host().unwrap_or_default();
        Ok(AutoDialer {
            ws: Dialer::new(url, opts).await?,
            quic,
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            last: Arc::new(AtomicU8::new(NONE)),
        })
    }

    /// QUIC's dialer, or why WebSocket is the only way now: a `ws://` URL, or an HTTP proxy
    /// in the environment for the URL (a proxy that cannot be read counts: WebSocket will say
    /// what is wrong with it).
    fn quic(&self) -> Result<&Arc<QuicDialer>, &'static str> {
        self.quic_with(|name| std::env::var(name).ok())
    }

    /// [`quic`](Self::quic) with the environment read through `env`.
    fn quic_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<&Arc<QuicDialer>, &'static str> {
        let quic = self.quic.as_ref().map_err(|why| *why)?;
        match http_proxy::proxy_for(env, true, &self.host, self.port) {
            Ok(None) => Ok(quic),
            Ok(Some(_)) | Err(_) => Err("http proxy: ws only"),
        }
    }

    /// A link on `via`, for `reason`.
    fn link(&self, via: Via, reason: &str) -> AutoLink {
        AutoLink {
            via,
            reason: reason_text(reason),
            last: self.last.clone(),
        }
    }

    /// The race of both transports (QUIC first), then the link on the winner; on WebSocket,
    /// with a probe back to QUIC unless `--quic-probe-interval` is 0.
    async fn race(
        &self,
        quic: &Arc<QuicDialer>,
        settings: &WsSettings,
    ) -> anyhow::Result<AutoLink> {
        let (won, reason) = race(&**quic, &self.ws, settings).await?;
        let via = match won {
            Won::Quic(q) => Via::Quic(Box::new(q)),
            Won::Ws(ws) => Via::Ws(ws, Probe::new(quic, settings)),
        };
        Ok(self.link(via, &reason))
    }
}

impl Dial for AutoDialer {
    type Link = AutoLink;

    fn url(&self) -> &str {
        Dial::url(&self.ws)
    }

    async fn connect(&self, settings: &WsSettings) -> anyhow::Result<AutoLink> {
        match self.quic() {
            Ok(quic) => self.race(quic, settings).await,
            Err(why) => {
                let ws = Dial::connect(&self.ws, settings).await?;
                Ok(self.link(Via::Ws(ws, None), why))
            }
        }
    }
}

/// A reason as `listPort` shows it: printable, and bounded.
fn reason_text(reason: &str) -> Arc<str> {
    let reason: String = reason.chars().take(MAX_REASON).collect();
    printable(&reason).into()
}

/// The winner of a race: QUIC's link or WebSocket's.
enum Won<Q, W> {
    /// QUIC's handshake and CONNECT were done first.
    Quic(Q),
    /// WebSocket's handshake was done first (or QUIC failed).
    Ws(W),
}

/// Happy eyeballs: QUIC alone for [`HEAD_START`] (or until it fails), then both; the first
/// handshake done wins, and the other attempt is dropped. Gives the winner and why.
async fn race<Q: Dial, W: Dial>(
    quic: &Q,
    ws: &W,
    settings: &WsSettings,
) -> anyhow::Result<(Won<Q::Link, W::Link>, String)> {
    let start = Instant::now();
    let q = Dial::connect(quic, settings);
    tokio::pin!(q);
    tokio::select! {
        r = &mut q => return match r {
            Ok(p) => Ok((Won::Quic(p), "quic".into())),
            Err(qe) => fall_back(Dial::connect(ws, settings).await, &qe),
        },
        () = tokio::time::sleep(HEAD_START) => {}
    }
    let w = Dial::connect(ws, settings);
    tokio::pin!(w);
    tokio::select! {
        r = &mut q => match r {
            Ok(p) => Ok((Won::Quic(p), "quic".into())),
            Err(qe) => fall_back(w.await, &qe),
        },
        r = &mut w => match r {
            Ok(s) => {
                let ms = start.elapsed().as_millis();
                Ok((Won::Ws(s), format!("quic failed: no answer in {ms} ms; ws")))
            }
            Err(we) => match q.await {
                Ok(p) => Ok((Won::Quic(p), "quic".into())),
                Err(qe) => Err(both_failed(&qe, &we)),
            },
        },
    }
}

/// WebSocket's result once QUIC failed with `qe`.
fn fall_back<Q, W>(
    ws: anyhow::Result<W>,
    qe: &anyhow::Error,
) -> anyhow::Result<(Won<Q, W>, String)> {
    match ws {
        Ok(s) => Ok((Won::Ws(s), format!("quic failed: {qe:#}; ws"))),
        Err(we) => Err(both_failed(qe, &we)),
    }
}

/// The error of a race both transports lost.
fn both_failed(qe: &anyhow::Error, we: &anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!("quic: {qe:#}; ws: {we:#}")
}

/// What an `auto` port's session runs on.
enum Via {
    /// A QUIC connection.
    Quic(Box<QuicPort>),
    /// WebSocket, and the probe back to QUIC (none: WebSocket only, or no probing).
    Ws(WsPort, Option<Probe>),
}

/// A connection of a `transport auto` client port, its handshake done, and why it is on the
/// transport it is on.
pub(crate) struct AutoLink {
    via: Via,
    reason: Arc<str>,
    last: Arc<AtomicU8>,
}

impl Link for AutoLink {
    fn session(self, io: &mut PortIo) -> impl std::future::Future<Output = End> + Send {
        self.run(io)
    }
}

impl AutoLink {
    /// Whether the link is QUIC, and why (`addPort`'s answer shows both).
    pub(crate) fn transport(&self) -> (bool, Arc<str>) {
        (matches!(self.via, Via::Quic(_)), self.reason.clone())
    }

    /// Records the transport, then moves frames; on WebSocket, until a probe gets through,
    /// then on over the probe's QUIC connection.
    async fn run(self, io: &mut PortIo) -> End {
        let AutoLink { via, reason, last } = self;
        let quic = matches!(via, Via::Quic(_));
        announce(io, quic, reason, &last);
        let (ws, probe) = match via {
            Via::Quic(q) => return q.session(io).await,
            Via::Ws(ws, None) => return ws.session(io).await,
            Via::Ws(ws, Some(probe)) => (ws, probe),
        };
        let mut found = None;
        let end = ws
            .session_until(io, async { found = Some(probe.run().await) })
            .await;
        let Some(q) = found else { return end };
        announce(io, true, "probe succeeded".into(), &last);
        q.session(io).await
    }
}

/// Records the port's transport for `listPort`, and logs a change of transport once.
fn announce(io: &PortIo, quic: bool, reason: Arc<str>, last: &AtomicU8) {
    let port = io.ingress.port();
    io.ingress.set_transport(quic, reason.clone());
    let now = if quic { QUIC } else { WS };
    let before = last.swap(now, Relaxed);
    let reason = Esc(&reason);
    match (before, quic) {
        (b, _) if b == now => {}
        (NONE, true) => tracing::info!(port, "on QUIC"),
        (NONE, false) => tracing::info!(port, %reason, "on WebSocket"),
        (_, true) => tracing::info!(port, %reason, "moved from WebSocket to QUIC"),
        (_, false) => tracing::warn!(port, %reason, "moved from QUIC to WebSocket"),
    }
}

/// The probe of a port on WebSocket: a QUIC connection tried every `every`.
struct Probe {
    quic: Arc<QuicDialer>,
    settings: WsSettings,
    every: Duration,
}

impl Probe {
    /// A probe on `quic`, if `--quic-probe-interval` is not 0.
    fn new(quic: &Arc<QuicDialer>, settings: &WsSettings) -> Option<Probe> {
        Some(Probe {
            quic: quic.clone(),
            settings: *settings,
            every: settings.quic_probe?,
        })
    }

    /// Tries QUIC every `every` until it answers; gives the connection.
    async fn run(&self) -> QuicPort {
        loop {
            tokio::time::sleep(self.every).await;
            match Dial::connect(&*self.quic, &self.settings).await {
                Ok(q) => return q,
                Err(e) => {
                    tracing::debug!(url = %Esc(Dial::url(&*self.quic)), "QUIC probe failed: {e:#}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::tls::Verify;

    fn opts() -> ClientOptions {
        ClientOptions {
            creds: None,
            verify: Verify::Insecure,
            identity: None,
        }
    }

    /// QUIC only where it can go: not for ws://, not through an HTTP proxy for the URL.
    #[tokio::test]
    async fn ws_urls_and_http_proxies_mean_websocket_only() {
        let plain = AutoDialer::new("ws://192.0.2.1:8080/", opts())
            .await
            .unwrap();
        assert_eq!(plain.quic_with(|_| None).err(), Some("ws:// URL: ws only"));

        let tls = AutoDialer::new("wss://[2001:db8::1]:8443/p", opts())
            .await
            .unwrap();
        assert_eq!((tls.host.as_str(), tls.port), ("2001:db8::1", 8443));
        assert!(tls.quic_with(|_| None).is_ok());
        let proxy = |name: &str| (name == "https_proxy").then(|| "http://192.0.2.9:3128".into());
        assert_eq!(tls.quic_with(proxy).err(), Some("http proxy: ws only"));
        // A proxy for ws:// only, or one no_proxy exempts the target from, changes nothing.
        let http_only = |name: &str| (name == "http_proxy").then(|| "http://192.0.2.9:3128".into());
        assert!(tls.quic_with(http_only).is_ok());
        let exempt = |name: &str| match name {
            "https_proxy" => Some("http://192.0.2.9:3128".into()),
            "no_proxy" => Some("2001:db8::/32".into()),
            _ => None,
        };
        assert!(tls.quic_with(exempt).is_ok());
    }

    /// A dialer that answers after `after`, or fails then; it notes when it was asked.
    struct Fake {
        after: Duration,
        ok: bool,
        asked: std::sync::Mutex<Option<Instant>>,
    }

    /// A link of [`Fake`].
    struct FakeLink;

    impl Link for FakeLink {
        async fn session(self, _io: &mut PortIo) -> End {
            End::Removed
        }
    }

    fn fake(after_ms: u64, ok: bool) -> Fake {
        Fake {
            after: Duration::from_millis(after_ms),
            ok,
            asked: std::sync::Mutex::new(None),
        }
    }

    impl Dial for Fake {
        type Link = FakeLink;

        fn url(&self) -> &str {
            "wss://192.0.2.1/"
        }

        async fn connect(&self, _settings: &WsSettings) -> anyhow::Result<FakeLink> {
            *self.asked.lock().unwrap() = Some(Instant::now());
            tokio::time::sleep(self.after).await;
            match self.ok {
                true => Ok(FakeLink),
                false => anyhow::bail!("refused after {:?}", self.after),
            }
        }
    }

    /// Races `quic` and `ws`: the winner ("quic" or "ws"), its reason, and when WebSocket
    /// was asked (from the start).
    async fn run(
        quic: Fake,
        ws: Fake,
    ) -> (anyhow::Result<(&'static str, String)>, Option<Duration>) {
        let start = Instant::now();
        let r = race(&quic, &ws, &WsSettings::default()).await;
        let r = r.map(|(won, why)| match won {
            Won::Quic(_) => ("quic", why),
            Won::Ws(_) => ("ws", why),
        });
        let asked = *ws.asked.lock().unwrap();
        (r, asked.map(|t| t - start))
    }

    /// Happy eyeballs: QUIC's head start, WebSocket at once when QUIC fails, the first
    /// handshake done wins, both errors when both fail.
    #[tokio::test]
    async fn the_race_gives_quic_a_head_start_and_takes_the_first_done() {
        // QUIC answers within its head start: WebSocket is never tried.
        let (r, asked) = run(fake(50, true), fake(0, true)).await;
        assert_eq!(r.unwrap(), ("quic", "quic".into()));
        assert_eq!(asked, None);
        // QUIC does not answer: WebSocket after the head start wins.
        let (r, asked) = run(fake(60_000, true), fake(50, true)).await;
        let (won, why) = r.unwrap();
        assert_eq!(won, "ws");
        assert!(why.starts_with("quic failed: no answer in "), "{why}");
        assert!(asked.unwrap() >= HEAD_START, "{asked:?}");
        // QUIC fails: WebSocket at once, and the reason quotes QUIC's error.
        let (r, asked) = run(fake(20, false), fake(0, true)).await;
        assert_eq!(
            r.unwrap(),
            ("ws", "quic failed: refused after 20ms; ws".into())
        );
        assert!(asked.unwrap() < HEAD_START, "{asked:?}");
        // QUIC slower than its head start, but sooner than WebSocket: QUIC.
        let (r, _) = run(fake(500, true), fake(2000, true)).await;
        assert_eq!(r.unwrap().0, "quic");
        // WebSocket fails first: QUIC is still waited for.
        let (r, _) = run(fake(600, true), fake(0, false)).await;
        assert_eq!(r.unwrap().0, "quic");
        // Both fail: both errors.
        let (r, _) = run(fake(400, false), fake(0, false)).await;
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.starts_with("quic: refused after 400ms; ws: refused"),
            "{e}"
        );
    }

    /// A reason is printable and bounded, whatever an error quoted.
    #[test]
    fn reasons_are_escaped_and_bounded() {
        let r = reason_text("quic failed: \u{1b}[31mred\n; ws");
        assert!(!r.contains('\u{1b}') && !r.contains('\n'), "{r}");
        assert!(reason_text(&"x".repeat(10_000)).len() <= MAX_REASON);
    }
}
