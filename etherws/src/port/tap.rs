//! `tap` ports: a TAP device created (or attached to, if it exists and is persistent) by name.
//!
//! The device is made by the `tun-tap` crate, whose own async support is tied to the retired
//! tokio-core; its descriptor is driven here with tokio's `AsyncFd` instead. The device lives
//! as long as the descriptor: removing the port closes it, and the kernel deletes a
//! non-persistent TAP with it.

use std::os::fd::AsRawFd;

use anyhow::Context;
use tokio::io::unix::AsyncFd;
use tun_tap::{Iface, Mode};

use super::fd::{HEADROOM, Received, drive, read_fd, set_nonblocking, write_fd};
use super::{Port, PortIo};
use crate::netif::Netif;

pub struct Tap {
    iface: AsyncFd<Iface>,
}

/// Checks a name the kernel would accept for a network interface (IFNAMSIZ - 1 bytes, no `/`,
/// no whitespace). An empty name lets the kernel pick `tapN`.
///
/// `%` is refused too: the kernel expands `%d` in a new device's name to a free number, so the
/// device made would not be the one named, and a NUL would cut the name short.
pub fn check_ifname(name: &str) -> anyhow::Result<()> {
    if name.len() > 15 {
        anyhow::bail!(
            "interface name too long (15 bytes at most): {}",
            crate::escape::printable(name)
        );
    }
    if name == "."
        || name == ".."
        || name.contains(|c: char| {
            c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control()
        })
    {
        anyhow::bail!("invalid interface name: {name:?}");
    }
    Ok(())
}

impl Tap {
    /// Creates or attaches to the TAP device `name` and brings it up; returns the port and the
    /// device's actual name (the kernel picks `tapN` for an empty name).
    pub async fn open(name: &str, netif: &Netif) -> anyhow::Result<(Tap, String)> {
        check_ifname(name)?;
        let iface = Iface::without_packet_info(name, Mode::Tap)
            .with_context(|| format!("cannot create TAP device {name}"))?;
        set_nonblocking(iface.as_raw_fd())?;
        let name = iface.name().to_string();
        netif
            .link_up(&name)
            .await
            .with_context(|| format!("cannot bring {name} up"))?;
        // SAFETY: the Iface (and its descriptor) moves into the AsyncFd and is closed only
        // when that is dropped.
        let iface = unsafe { AsyncFd::register(iface)? };
        Ok((Tap { iface }, name))
    }
}

impl Port for Tap {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        drive(
            &self.iface,
            io,
            |fd, buf| {
                buf.read(
                    // SAFETY: `RxBuf::read` hands its `read` closure `len` writable bytes.
                    |ptr, len| unsafe { read_fd(fd, ptr, len) },
                    |_| HEADROOM,
                )
                .map(Received::One)
            },
            write_fd,
        )
        .await
    }
}
