//! `--webtransport-selfsigned`: the QUIC listener's self-signed certificate, renewed before it
//! expires, and the page that tells browsers its hashes.
//!
//! The QUIC listener serves the newest certificate; a renewal makes a new one every
//! [`RENEW_EVERY`] and stores its TLS configuration in the listener's cell, which each new
//! connection reads (sessions in course keep theirs); a reload stores one with its client CAs
//! and CRLs there too. `GET` [`HASH_PATH`] on the WebSocket listener
//! answers the SHA-256 of every certificate still valid, newest first, and the QUIC port:
//! `{"algorithm":"sha-256","hashes":["base64…",…],"port":4433}`. The listener serves the
//! newest certificate only: a page that pinned the hashes before a renewal fetches them again
//! when its connection fails.
//!
//! The answer carries `Access-Control-Allow-Origin: *`: a page served from elsewhere (a v86
//! page on another host) may read it. That gives a page nothing it could not learn without it:
//! the certificate is what the listener shows anyone who opens a QUIC handshake, the hashes
//! grant no access (a session is admitted by its path, htpasswd or client certificate, as a
//! WebSocket is), and the answer depends on no credential (`*` never lets a browser send
//! cookies or `Authorization` with the request).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::base::selfsigned::SelfSigned;
use crate::base::tls::{ClientAuth, server_config_with};
use crate::edge::live::{Swap, TlsCell};

/// Where the WebSocket listener answers the hashes.
pub(crate) const HASH_PATH: &str = "/.well-known/etherws/wt-cert-hash";

/// How often a new certificate is made: half its lifetime, so the one before stays valid (and
/// listed) for as long again.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(6 * 24 * 3600);

/// Certificates kept at most: the one served and the one before.
const KEPT: usize = 2;

/// The self-signed certificates and the QUIC listener's TLS configuration made of them.
pub(crate) struct WtCerts {
    /// One lock, so that a renewal and a reload install their configurations one at a time.
    state: Mutex<State>,
    /// The QUIC listener's TLS configuration, its own: the newest certificate's.
    cell: TlsCell,
    /// The UDP port the QUIC listener serves, told to pages (set once it is bound).
    port: AtomicU16,
}

/// The certificates, newest first, and the client certificates asked for.
struct State {
    certs: Vec<Arc<SelfSigned>>,
    /// The client certificates the QUIC listener requires (`--sslclientca`), if any.
    client_auth: Option<ClientAuth>,
}

/// The TLS configuration of `cert` (ALPN left for the listener to set). Reads the client CAs
/// and CRLs of `client_auth`: on the blocking pool, or at start-up.
fn tls_config(
    cert: &SelfSigned,
    client_auth: Option<&ClientAuth>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_with(vec![cert.cert.clone()], cert.private_key(), client_auth)
}

impl WtCerts {
    /// A first certificate, made now, and its TLS configuration in a cell of its own.
    pub(crate) fn new(port: u16, client_auth: Option<ClientAuth>) -> anyhow::Result<Arc<WtCerts>> {
        let first = SelfSigned::generate(SystemTime::now())?;
        let config = tls_config(&first, client_auth.as_ref())?;
        Ok(Arc::new(WtCerts {
            state: Mutex::new(State {
                certs: vec![Arc::new(first)],
                client_auth,
            }),
            cell: Arc::new(Swap::new(config)),
            port: AtomicU16::new(port),
        }))
    }

    /// The QUIC listener's TLS configuration, as the last renewal or reload left it.
    pub(crate) fn cell(&self) -> TlsCell {
        self.cell.clone()
    }

    /// The QUIC listener's port, once bound (`--quic-port 0` picks one).
    pub(crate) fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a new certificate at `now`, keeps the one before while it is valid, and installs
    /// the new one's TLS configuration. On the blocking pool.
    pub(crate) fn renew(&self, now: SystemTime) -> anyhow::Result<()> {
        let new = Arc::new(SelfSigned::generate(now)?);
        let mut state = self.state();
        let config = tls_config(&new, state.client_auth.as_ref())?;
        state.certs.insert(0, new);
        state.certs.truncate(KEPT);
        state.certs.retain(|c| c.valid_at(now));
        self.cell.store(config);
        Ok(())
    }

    /// A reload's client CAs and CRLs (`--sslclientca`, `--sslcrl`), for new connections from
    /// now on. On the blocking pool.
    pub(crate) fn set_client_auth(&self, client_auth: Option<ClientAuth>) -> anyhow::Result<()> {
        let mut state = self.state();
        let config = tls_config(&state.certs[0], client_auth.as_ref())?;
        state.client_auth = client_auth;
        self.cell.store(config);
        Ok(())
    }

    /// The SHA-256 of each certificate valid at `now`, newest first, in base64.
    pub(crate) fn hashes(&self, now: SystemTime) -> Vec<String> {
        let state = self.state();
        state
            .certs
            .iter()
            .filter(|c| c.valid_at(now))
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c.sha256))
            .collect()
    }

    /// The answer of [`HASH_PATH`]: JSON, never cached, readable from any origin.
    pub(crate) fn answer(&self) -> Response {
        let body = serde_json::json!({
            "algorithm": "sha-256",
            "hashes": self.hashes(SystemTime::now()),
            "port": self.port.load(Ordering::Relaxed),
        });
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// Renews the certificate `every` ([`RENEW_EVERY`]) for as long as the switch runs, each new
/// one the QUIC listener's from then on (connections in course keep theirs). A failed renewal
/// is logged and tried again in a minute; the certificate before stays in use meanwhile.
pub(crate) async fn renew_loop(certs: Arc<WtCerts>, every: Duration) {
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let made = {
            let certs = certs.clone();
            tokio::task::spawn_blocking(move || certs.renew(SystemTime::now())).await
        };
        wait = match made {
            Ok(Ok(())) => {
                tracing::info!("WebTransport: new self-signed certificate");
                every
            }
            Ok(Err(e)) => {
                tracing::warn!("WebTransport: the certificate could not be renewed: {e:#}");
                Duration::from_secs(60)
            }
            Err(e) => {
                tracing::warn!("WebTransport: the renewal failed: {e}");
                Duration::from_secs(60)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::selfsigned::LIFETIME;

    #[test]
    fn renewal_keeps_the_one_before_while_it_is_valid() {
        let certs = WtCerts::new(4433, None).unwrap();
        let t0 = SystemTime::now();
        let first = certs.hashes(t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].len(), 44, "32 bytes in base64: {first:?}");
        certs.renew(t0 + RENEW_EVERY).unwrap();
        let two = certs.hashes(t0 + RENEW_EVERY);
        assert_eq!(two.len(), 2);
        assert_eq!(two[1], first[0], "the one before, after the new one");
        // Once the first has expired it is no longer listed.
        assert_eq!(
            certs.hashes(t0 + LIFETIME + Duration::from_secs(5)).len(),
            1
        );
        certs.renew(t0 + RENEW_EVERY * 2).unwrap();
        let three = certs.hashes(t0 + RENEW_EVERY * 2);
        assert_eq!(three.len(), 2);
        assert!(!three.contains(&first[0]));
        assert_eq!(three[1], two[0]);
        assert!(RENEW_EVERY * 2 <= LIFETIME);
    }

    #[tokio::test]
    async fn the_loop_installs_each_new_certificate() {
        let certs = WtCerts::new(4433, None).unwrap();
        let first = certs.hashes(SystemTime::now())[0].clone();
        let cell = certs.cell();
        let mut installed = cell.load();
        let task = tokio::spawn(renew_loop(certs.clone(), Duration::from_millis(50)));
        for round in 1..=2 {
            let t0 = std::time::Instant::now();
            while Arc::ptr_eq(&installed, &cell.load()) {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "round {round}: no renewal"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            installed = cell.load();
            let hashes = certs.hashes(SystemTime::now());
            assert_eq!(
                hashes.len(),
                2,
                "round {round}: the new one and the one before"
            );
            assert_ne!(hashes[0], first);
        }
        task.abort();
        // A reload's client CAs: a new configuration, of the same certificate.
        let before = certs.hashes(SystemTime::now());
        certs.set_client_auth(None).unwrap();
        assert!(!Arc::ptr_eq(&installed, &cell.load()));
        assert_eq!(certs.hashes(SystemTime::now()), before);
    }

    #[tokio::test]
    async fn the_answer_is_json_uncached_and_public() {
        let certs = WtCerts::new(0, None).unwrap();
        certs.set_port(4433);
        let r = certs.answer();
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["port"], 4433);
        assert_eq!(v["algorithm"], "sha-256");
        assert_eq!(v["hashes"].as_array().unwrap().len(), 1);
    }
}
