//! The switch's HTTP edge: the listeners, who may connect, authentication, and who a client
//! really is behind a reverse proxy.

pub(crate) mod admission;
pub(crate) mod auth;
pub(crate) mod forwarded;
pub(crate) mod htpasswd;
pub(crate) mod live;
pub(crate) mod quic;
pub(crate) mod server;
