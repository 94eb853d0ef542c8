//! etherws: an Ethernet over WebSocket software switch, compatible with etherws 1.3.
//!
//! The data path is port → [`switch`] → port: every [`port`] kind implements one small trait,
//! and the switch core ([`fdb`], [`frame`], [`switch`]) knows nothing about sockets.

pub mod admission;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod escape;
pub mod fdb;
pub mod files;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod htpasswd;
pub mod logging;
pub mod netif;
pub mod offload;
pub mod port;
pub mod profile;
pub mod proxied;
pub mod server;
pub mod sw;
pub mod switch;
pub mod tls;
pub mod wire;
