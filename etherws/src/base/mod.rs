//! What every layer above uses: escaping for logs and terminals, bounded file reads, TLS
//! configuration, self-signed certificates for WebTransport pages.

pub(crate) mod escape;
pub(crate) mod files;
pub(crate) mod ip;
pub(crate) mod selfsigned;
pub(crate) mod tls;
