//! etherws: an Ethernet over WebSocket software switch, compatible with etherws 1.3.
//!
//! The layers, each using only those below it (ARCHITECTURE.md tells more):
//!
//! | layer | what it holds |
//! |---|---|
//! | `app/` | the command line, the configuration file, `etherws sw` and `etherws ctl` |
//! | `edge/` | the HTTP listeners: WebSocket upgrades, the HTTP/3 (QUIC) listener, admission, authentication, reverse proxies |
//! | `control/` | the JSON-RPC control API, `/metrics`, the status page |
//! | `offload/` | eBPF offload of `netdev` ports |
//! | `port/` | the port kinds (TAP, netdev, WebSocket, QUIC) and their queues |
//! | `settings/` | settings' value types and what a port starts with |
//! | `switch/` | the switch core: frames, the forwarding database, the forwarding decision |
//! | `wire/` | header layouts on the wire, GSO, GRO and checksums |
//! | `base/` | escaping, bounded file reads, IP addresses, TLS configuration |
//! | `sys/` | system calls, each behind a safe wrapper that names the call; netlink |
//!
//! The library is not an API: the binary, `cargo xtask` and the fuzz targets use [`main`],
//! [`command`] and [`fuzzing`]; everything else is `pub(crate)`.

// Everything is `pub(crate)` but the few items above; this keeps it so.
#![warn(unreachable_pub)]
// Functions a reader takes in at once (clippy's default: 100 lines); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub(crate) mod app;
pub(crate) mod base;
pub(crate) mod control;
pub(crate) mod edge;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod offload;
pub(crate) mod port;
pub(crate) mod settings;
pub(crate) mod switch;
pub(crate) mod sys;
pub(crate) mod wire;

pub use app::{command, main};
