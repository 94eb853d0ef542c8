//! The operating system's interfaces: raw system calls and netlink.

pub(crate) mod netif;
