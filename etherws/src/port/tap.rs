//! `tap` ports: a TAP device created (or attached to, if it exists and is persistent) by name.
//!
//! The device is opened here with `TUNSETIFF` rather than through a crate: the `tun-tap` crate
//! cannot ask for a vnet header, and its async support is tied to the retired tokio-core. The
//! descriptor is driven with tokio's `AsyncFd`. The device lives as long as the descriptor:
//! removing the port closes it, and the kernel deletes a non-persistent TAP with it.
//!
//! Unless super-frames are off (`--strict-frames`), the TAP is opened with `IFF_VNET_HDR` and
//! offloads (`TUNSETOFFLOAD`: checksum, TSO, USO where the kernel has it), as a virtio NIC
//! would be: the kernel then hands over TCP/UDP super-frames of up to 64 KB with their
//! `virtio_net_hdr` instead of cutting them into MTU-sized frames first, and takes such
//! frames back. One read and one write per 64 KB instead of per 1.5 KB.
//!
//! Frames the kernel has for the switch wait in the TAP's queue (`txqueuelen` frames); what
//! does not fit while the switch is late reading is dropped there and counted as the device's
//! `tx_dropped`, which the port reads every second into its `rx_dropped`.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use super::fd::{
    HEADROOM, Received, RxBuf, Takes, drive, one_at_a_time, read_fd, vnet_iov, write_fd, write_vnet,
};
use super::{DEVICE_DROPS_EVERY, Port, PortIo, count_rx_dropped};
use crate::base::escape::Esc;
use crate::switch::frame::Frame;
use crate::sys::netif::{Netif, NetifError};
use crate::sys::{self, SyscallError};
use crate::wire::gso::{VNET_HDR_LEN, VnetHdr};

/// Why a TAP port could not be opened.
///
/// Each variant says what failed; the cause is its [`source`](std::error::Error::source),
/// so that `{:#}` (anyhow's chain) reads "cannot create TAP device tap0: ioctl(TUNSETIFF):
/// Operation not permitted (os error 1)".
#[derive(Debug, thiserror::Error)]
pub(crate) enum TapError {
    /// A name the kernel would refuse, or turn into another ([`check_ifname`]).
    #[error("interface name too long (15 bytes at most): {0}")]
    NameTooLong(String),
    /// A name with a character the kernel refuses or expands ([`check_ifname`]).
    #[error("invalid interface name: {0:?}")]
    BadName(String),
    /// Opening `/dev/net/tun` or one of its `ioctl`s failed.
    #[error("cannot create TAP device {name}")]
    Create {
        /// The name asked for (empty: the kernel's choice).
        name: String,
        source: SyscallError,
    },
    /// The device exists but cannot be brought up.
    #[error("cannot bring {name} up")]
    LinkUp { name: String, source: NetifError },
    /// The descriptor cannot be registered with the reactor.
    #[error(transparent)]
    Register(SyscallError),
}

pub(crate) struct Tap {
    fd: AsyncFd<OwnedFd>,
    /// Opened with `IFF_VNET_HDR` and offloads.
    offloads: bool,
    /// Where the device's drops are read, if its index could be looked up.
    drops: Option<Drops>,
}

/// A TAP's `tx_dropped` as the kernel counts it: frames for the switch that did not fit the
/// device's queue.
struct Drops {
    netif: Netif,
    index: u32,
    /// The count when last read (when the port was added, at first); [`Drops::UNKNOWN`] until
    /// a read succeeded.
    last: std::sync::atomic::AtomicU64,
}

impl Drops {
    /// No count read yet: the first one read is the baseline, not drops of the port's (a
    /// persistent TAP keeps its count from before).
    const UNKNOWN: u64 = u64::MAX;

    /// The device's drops from now on (its count so far is not the port's).
    async fn of(netif: &Netif, index: u32) -> Drops {
        let last = netif.tx_dropped(index).await.unwrap_or(Drops::UNKNOWN);
        Drops {
            netif: netif.clone(),
            index,
            last: last.into(),
        }
    }

    /// Frames dropped since the last call (0 when the count cannot be read).
    async fn since(&self) -> u64 {
        match self.netif.tx_dropped(self.index).await {
            Ok(now) => match self.last.swap(now, std::sync::atomic::Ordering::Relaxed) {
                Drops::UNKNOWN => 0,
                before => now.saturating_sub(before),
            },
            Err(e) => {
                tracing::debug!(index = self.index, "TAP drops unknown: {e}");
                0
            }
        }
    }
}

/// Checks a name the kernel would accept for a network interface (IFNAMSIZ - 1 bytes, no `/`,
/// no whitespace). An empty name lets the kernel pick `tapN`.
///
/// `%` is refused too: the kernel expands `%d` in a new device's name to a free number, so the
/// device made would not be the one named, and a NUL would cut the name short.
///
/// # Errors
///
/// [`TapError::NameTooLong`] or [`TapError::BadName`].
pub(crate) fn check_ifname(name: &str) -> Result<(), TapError> {
    if name.len() > 15 {
        return Err(TapError::NameTooLong(
            crate::base::escape::printable(name).to_string(),
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(|c: char| {
            c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control()
        })
    {
        return Err(TapError::BadName(name.to_string()));
    }
    Ok(())
}

/// `TUNSETOFFLOAD` flags asked for, best first: with UDP segmentation (Linux 6.2+), then
/// without it.
const OFFLOADS: [libc::c_uint; 2] = [
    libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_USO4
        | libc::TUN_F_USO6,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN,
];

/// Opens `/dev/net/tun` as TAP device `name` (the kernel picks `tapN` for an empty name);
/// returns the descriptor and the device's name.
fn open_tap(name: &str, vnet: bool) -> Result<(OwnedFd, String), SyscallError> {
    let fd = sys::fd::open(
        c"/dev/net/tun",
        libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        "open(/dev/net/tun)",
    )?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    // check_ifname allowed at most 15 bytes: the name and its NUL fit in IFNAMSIZ (16).
    let name = sys::tun::set_iff(fd.as_fd(), name, flags)?;
    if vnet {
        // The best the kernel takes; if it takes none, the last refusal.
        let mut set = Ok(());
        for offloads in OFFLOADS {
            set = sys::tun::set_offload(fd.as_fd(), offloads);
            if set.is_ok() {
                break;
            }
        }
        set?;
    }
    Ok((fd, name))
}

/// Reads one frame and its `virtio_net_hdr` from a TAP opened with `IFF_VNET_HDR`.
fn read_vnet(fd: RawFd, buf: &mut RxBuf) -> Result<Received, SyscallError> {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let data = buf
        .read(
            |ptr, len| {
                let iov = vnet_iov(hdr.as_mut_ptr(), ptr, len);
                // SAFETY: the iovecs describe `hdr` and the `len` writable bytes `RxBuf::read`
                // offers at `ptr`, both live for the call.
                let n = unsafe { sys::fd::readv(fd, &iov) }.map_err(|e| e.source)?;
                n.checked_sub(VNET_HDR_LEN)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))
            },
            |_| HEADROOM,
        )
        .map_err(SyscallError::of("readv"))?;
    Ok(Received::One(Frame::new(data, VnetHdr::parse(&hdr))))
}

impl Tap {
    /// Creates or attaches to the TAP device `name` and brings it up; returns the port and the
    /// device's actual name (the kernel picks `tapN` for an empty name). With `offloads`, the
    /// device exchanges super-frames with the switch (see the module's doc).
    ///
    /// # Errors
    ///
    /// A [`TapError`] saying which step failed: the name, the device, bringing it up.
    pub(crate) async fn open(
        name: &str,
        netif: &Netif,
        offloads: bool,
    ) -> Result<(Tap, String), TapError> {
        check_ifname(name)?;
        let (fd, name) = open_tap(name, offloads).map_err(|source| TapError::Create {
            name: name.to_string(),
            source,
        })?;
        if let Err(source) = netif.link_up(&name).await {
            return Err(TapError::LinkUp { name, source });
        }
        let index = netif.index(&name).await.ok();
        if let (false, Some(index)) = (offloads, index) {
            plain_queue(netif, index, &name).await;
        }
        let drops = match index {
            Some(index) => Some(Drops::of(netif, index).await),
            None => None,
        };
        let fd = sys::fd::register(fd).map_err(TapError::Register)?;
        Ok((
            Tap {
                fd,
                offloads,
                drops,
            },
            name,
        ))
    }
}

/// The queue of a TAP that takes no super-frames, in frames: room for a window-sized burst of
/// MTU-sized frames (a 6 MiB TCP window is some 4,200 frames of 1,500 bytes), where the
/// kernel's default, 1000, holds a sixth of it. A TAP with offloads keeps its default: its
/// frames are up to 64 KB each, so 1000 of them hold the window many times over already.
const PLAIN_TXQUEUELEN: u32 = 4096;

/// Raises the queue of a TAP without offloads to [`PLAIN_TXQUEUELEN`] (never lowers it); a
/// failure leaves the default, said at debug level.
async fn plain_queue(netif: &Netif, index: u32, name: &str) {
    match netif.raise_txqueuelen(index, PLAIN_TXQUEUELEN).await {
        Ok(len) => tracing::debug!(interface = %Esc(name), len, "TAP queue"),
        Err(e) => tracing::debug!(interface = %Esc(name), "TAP queue left as it was: {e}"),
    }
}

impl Port for Tap {
    async fn run(mut self, io: PortIo) -> anyhow::Result<()> {
        let Some(drops) = self.drops.take() else {
            return self.frames(io).await;
        };
        let ingress = io.ingress.clone();
        let drops = &drops;
        tokio::select! {
            r = self.frames(io) => r,
            () = count_rx_dropped(&ingress, DEVICE_DROPS_EVERY, move || drops.since()) => Ok(()),
        }
    }
}

impl Tap {
    /// Moves frames both ways, as [`Port::run`] asks.
    async fn frames(&self, io: PortIo) -> anyhow::Result<()> {
        if self.offloads {
            io.ingress.set_super_frames(true);
            return drive(
                &self.fd,
                io,
                read_vnet,
                Takes::Offloaded,
                one_at_a_time(write_vnet),
            )
            .await;
        }
        drive(
            &self.fd,
            io,
            |fd, buf| {
                buf.read(
                    // SAFETY: `RxBuf::read` hands its `read` closure `len` writable bytes.
                    |ptr, len| unsafe { read_fd(fd, ptr, len) },
                    |_| HEADROOM,
                )
                .map(|data| Received::One(Frame::from(data)))
                .map_err(SyscallError::of("read"))
            },
            Takes::Plain,
            one_at_a_time(write_fd),
        )
        .await
    }
}
