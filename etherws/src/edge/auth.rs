//! HTTP Basic authentication of one listener (WebSocket or control): the htpasswd file, the
//! throttle of password guessing, and where the hashing runs.
//!
//! Each listener has its own [`Auth`], so bad WebSocket logins never lock the administrator's
//! `ctl` out (and the reverse). Hashing (bcrypt, `$apr1$`) is what an attacker can make the
//! switch spend CPU on, so it is bounded three ways: credentials longer than the htpasswd tool
//! can create are refused before hashing; one address may have only a few verifications under
//! way ([`MAX_IN_FLIGHT_PER_ADDR`](crate::edge::admission::MAX_IN_FLIGHT_PER_ADDR)); and all
//! listeners together verify on at most [`hashing_threads`] blocking threads, leaving a core to
//! the data path.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::base::escape::Esc;
use crate::edge::admission::{AuthLimits, AuthThrottle, Throttled};
use crate::edge::forwarded::Client;
use crate::edge::htpasswd::{Htpasswd, parse_basic};
use crate::edge::live::{Swap, WsPath};
use crate::settings::profile::Credentials;

/// The realm of the `401` challenge.
const REALM: &str = "Basic realm=\"etherws\"";

/// Longest `Authorization` header value considered (base64 of a 255-byte user and password
/// with room to spare); a longer one is a failed attempt, never hashed.
pub(crate) const MAX_AUTHORIZATION: usize = 1024;

/// Longest user name or password considered: the `htpasswd` tool's own limit.
pub(crate) const MAX_CREDENTIAL: usize = 255;

/// How long a request may wait for a hashing thread before it is answered `503`.
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// Threads that verify passwords at once, across all listeners: all cores but one.
pub(crate) fn hashing_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

fn hashing() -> &'static Arc<Semaphore> {
    static HASHING: OnceLock<Arc<Semaphore>> = OnceLock::new();
    HASHING.get_or_init(|| Arc::new(Semaphore::new(hashing_threads())))
}

/// Authentication of one listener.
pub(crate) struct Auth {
    /// Replaced by a reload (a file of another name); `Htpasswd` itself follows its file.
    htpasswd: Swap<Option<Arc<Htpasswd>>>,
    pub(crate) throttle: AuthThrottle,
    /// `websocket` or `control`, for the log.
    listener: &'static str,
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, REALM)],
        "Authorization Required\n",
    )
        .into_response()
}

impl Auth {
    pub(crate) fn new(
        htpasswd: Option<Arc<Htpasswd>>,
        limits: AuthLimits,
        listener: &'static str,
    ) -> Self {
        Auth {
            htpasswd: Swap::new(Arc::new(htpasswd)),
            throttle: AuthThrottle::new(limits),
            listener,
        }
    }

    /// The listener's htpasswd file.
    pub(crate) fn htpasswd(&self) -> Option<Arc<Htpasswd>> {
        (*self.htpasswd.load()).clone()
    }

    /// Replaces the listener's htpasswd file (a reload).
    pub(crate) fn set_htpasswd(&self, htpasswd: Option<Arc<Htpasswd>>) {
        self.htpasswd.store(Arc::new(htpasswd));
    }

    /// True when a password is required.
    pub(crate) fn required(&self) -> bool {
        self.htpasswd.load().is_some()
    }

    /// Checks the request's Basic credentials (when a password is required); returns the
    /// authenticated user, or the response to send instead.
    ///
    /// The answer to a failure is the same whether the user exists or not, and so is the log
    /// line; the password is never logged, the user name only escaped.
    pub(crate) async fn check(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        peer: &str,
    ) -> Result<Option<String>, Response> {
        self.check_with(self.htpasswd().as_ref(), headers, ip, peer)
            .await
    }

    /// Who a peer on `path` proved to be, and with what: its htpasswd user (of the path's own
    /// file, or the switch-wide one), else `identity`, its client certificate's name; the
    /// answer to give it when it proved nothing it had to. WebSocket upgrades and QUIC
    /// CONNECTs alike.
    pub(crate) async fn prove(
        &self,
        path: &WsPath,
        headers: &HeaderMap,
        client: &Client,
        identity: Option<String>,
    ) -> Result<(Option<String>, Credentials), Response> {
        let htpasswd = path.htpasswd.clone().or(self.htpasswd());
        let shown = client.to_string();
        let user = self
            .check_with(htpasswd.as_ref(), headers, client.ip, &shown)
            .await?;
        Ok(match user {
            Some(user) if path.htpasswd.is_some() => {
                (Some(user), Credentials::Path(path.path.clone()))
            }
            Some(user) => (Some(user), Credentials::Switch),
            None => (identity, Credentials::Certificate),
        })
    }

    /// [`Auth::check`] against another htpasswd file (a WebSocket path's own), with this
    /// listener's throttle: guesses spread over several paths count together.
    pub(crate) async fn check_with(
        &self,
        htpasswd: Option<&Arc<Htpasswd>>,
        headers: &HeaderMap,
        ip: IpAddr,
        peer: &str,
    ) -> Result<Option<String>, Response> {
        let Some(htpasswd) = htpasswd else {
            return Ok(None);
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            tracing::info!(peer, listener = self.listener, "no credentials given");
            return Err(challenge());
        };
        let attempt = match self.throttle.begin(ip, Instant::now()) {
            Ok(a) => a,
            Err(why) => {
                tracing::debug!(
                    peer,
                    listener = self.listener,
                    "authentication refused: {why}"
                );
                let (retry, text) = match why {
                    Throttled::Blocked => (
                        self.throttle.window().as_secs(),
                        "Too many failed authentications\n",
                    ),
                    Throttled::Busy => (1, "Too many authentications under way\n"),
                };
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry.to_string())],
                    text,
                )
                    .into_response());
            }
        };
        let creds = (value.len() <= MAX_AUTHORIZATION)
            .then(|| value.to_str().ok().and_then(parse_basic))
            .flatten()
            .filter(|(u, p)| u.len() <= MAX_CREDENTIAL && p.len() <= MAX_CREDENTIAL);
        let ok = match &creds {
            None => false,
            Some((user, passwd)) => {
                let Ok(Ok(permit)) =
                    tokio::time::timeout(HASHING_WAIT, hashing().clone().acquire_owned()).await
                else {
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "5")],
                        "Too busy checking passwords\n",
                    )
                        .into_response());
                };
                let (h, user, passwd) = (htpasswd.clone(), user.clone(), passwd.clone());
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    h.verify(&user, &passwd)
                })
                .await
                .unwrap_or(false)
            }
        };
        match creds {
            Some((user, _)) if ok => {
                attempt.succeeded();
                Ok(Some(user))
            }
            _ => {
                let blocks = attempt.blocks;
                attempt.failed();
                match &creds {
                    Some((user, _)) => tracing::warn!(
                        peer,
                        listener = self.listener,
                        user = %Esc(user),
                        "authentication failed"
                    ),
                    None => tracing::warn!(
                        peer,
                        listener = self.listener,
                        len = value.len(),
                        "authentication failed: malformed or oversized credentials"
                    ),
                }
                if blocks {
                    tracing::warn!(
                        peer = %ip,
                        listener = self.listener,
                        "too many failed authentications: address blocked for a while"
                    );
                }
                Err(challenge())
            }
        }
    }
}
