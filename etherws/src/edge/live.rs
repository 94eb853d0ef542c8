//! What a reload may change while the listeners keep running: the TLS configuration each new
//! handshake takes, the WebSocket paths and pinned users each upgrade reads, and the sessions
//! in course, so that a reload can apply a path's new settings to its clients, or close those
//! it no longer admits.
//!
//! Readers take a snapshot (an `Arc`) per connection or request; a reload stores a new one.
//! A connection keeps what it was admitted with until the reload acts on it by port number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::CertificateDer;

use crate::edge::htpasswd::Htpasswd;
use crate::settings::profile::{Credentials, Profile, UserPin};
use crate::switch::fdb::PortNo;

/// A value read often and replaced whole, rarely: readers get the current `Arc`.
pub(crate) struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Swap(RwLock::new(value))
    }

    /// The value in force.
    pub(crate) fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value; readers that took the old one keep it.
    pub(crate) fn store(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// A listener's TLS configuration, taken by each new handshake.
pub(crate) type TlsCell = Arc<Swap<rustls::ServerConfig>>;

/// One WebSocket path: what its clients' ports start with, and who may connect.
#[derive(Clone)]
pub(crate) struct WsPath {
    pub(crate) path: String,
    /// The path's settings over the defaults for server ports.
    pub(crate) profile: Profile,
    /// Its own htpasswd file; `None`: the listener's (`--htpasswd`), if any.
    pub(crate) htpasswd: Option<Arc<Htpasswd>>,
}

/// Users pinned to settings (`[user.NAME]` in the configuration file), by name, each for the
/// credentials its pin names; theirs win over their path's.
pub(crate) type Users = HashMap<String, UserPin>;

/// The WebSocket side's settings in force, and its sessions.
pub(crate) struct LiveWs {
    pub(crate) paths: Swap<Vec<WsPath>>,
    pub(crate) users: Swap<Users>,
    pub(crate) sessions: Arc<Sessions>,
    /// Reloads applied so far: a connection admitted under an older one than it finds once
    /// registered was admitted by rules a reload may have changed meanwhile.
    generation: AtomicU64,
}

impl LiveWs {
    pub(crate) fn new(paths: Vec<WsPath>, users: Users) -> Arc<Self> {
        Arc::new(LiveWs {
            paths: Swap::new(Arc::new(paths)),
            users: Swap::new(Arc::new(users)),
            sessions: Arc::default(),
            generation: AtomicU64::new(0),
        })
    }

    /// The reloads applied so far; read before the paths, users and htpasswd files are.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A reload stored its paths, users and htpasswd files: connections admitted before are
    /// looked at again (the reload's snapshot of the sessions, or their own check once
    /// registered).
    pub(crate) fn reloaded(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The path `name` as now served, if it is.
    pub(crate) fn path(&self, name: &str) -> Option<WsPath> {
        self.paths.load().iter().find(|p| p.path == name).cloned()
    }
}

/// Who a server port's client is, as the upgrade found: enough to tell, after a reload,
/// whether the new files still admit it.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) path: String,
    pub(crate) user: Option<String>,
    /// What proved `user`: an htpasswd file (the switch-wide one, or the path's) or a
    /// certificate.
    pub(crate) from: Credentials,
    /// The client's certificate chain, on a listener that asks for one.
    pub(crate) certs: Option<Arc<[CertificateDer<'static>]>>,
    /// The [`LiveWs::generation`] it was admitted under.
    pub(crate) generation: u64,
}

impl Session {
    /// What the port starts with under `path` and `users`: the user's pin over the path's.
    pub(crate) fn profile(&self, path: &WsPath, users: &Users) -> Profile {
        let pinned = self
            .user
            .as_ref()
            .and_then(|u| users.get(u))
            .and_then(|pin| pin.profile_for(&self.from));
        match pinned {
            Some(pinned) => pinned.over(&path.profile),
            None => path.profile.clone(),
        }
    }
}

/// The server ports in course, by port number; each entry lives as long as its port's task.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<PortNo, Arc<Session>>>);

impl Sessions {
    /// Records `session` as port `port`'s until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, port: PortNo, session: Arc<Session>) -> Registered {
        self.lock().insert(port, session);
        Registered {
            sessions: self.clone(),
            port,
        }
    }

    /// Every session in course.
    pub(crate) fn snapshot(&self) -> Vec<(PortNo, Arc<Session>)> {
        let mut all: Vec<_> = self.lock().iter().map(|(n, s)| (*n, s.clone())).collect();
        all.sort_by_key(|(n, _)| *n);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PortNo, Arc<Session>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session's entry in [`Sessions`], removed when dropped.
pub(crate) struct Registered {
    sessions: Arc<Sessions>,
    port: PortNo,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_forgotten_with_its_port() {
        let sessions = Arc::new(Sessions::default());
        let s = Arc::new(Session {
            path: "/".into(),
            user: None,
            from: Credentials::Certificate,
            certs: None,
            generation: 0,
        });
        let guard = sessions.register(7, s);
        assert_eq!(sessions.snapshot().len(), 1);
        drop(guard);
        assert!(sessions.snapshot().is_empty());
    }

    #[test]
    fn a_swap_keeps_old_readers_on_the_old_value() {
        let cell = Swap::new(Arc::new(1));
        let old = cell.load();
        cell.store(Arc::new(2));
        assert_eq!((*old, *cell.load()), (1, 2));
    }
}
