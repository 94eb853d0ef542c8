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

use std::ffi::CStr;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Context;
use tokio::io::unix::AsyncFd;

use super::fd::{
    HEADROOM, Received, RxBuf, Takes, drive, one_at_a_time, read_fd, vnet_iov, write_fd, write_vnet,
};
use super::{Port, PortIo};
use crate::switch::frame::Frame;
use crate::sys::netif::Netif;
use crate::wire::gso::{VNET_HDR_LEN, VnetHdr};

pub(crate) struct Tap {
    fd: AsyncFd<OwnedFd>,
    /// Opened with `IFF_VNET_HDR` and offloads.
    offloads: bool,
}

/// Checks a name the kernel would accept for a network interface (IFNAMSIZ - 1 bytes, no `/`,
/// no whitespace). An empty name lets the kernel pick `tapN`.
///
/// `%` is refused too: the kernel expands `%d` in a new device's name to a free number, so the
/// device made would not be the one named, and a NUL would cut the name short.
pub(crate) fn check_ifname(name: &str) -> anyhow::Result<()> {
    if name.len() > 15 {
        anyhow::bail!(
            "interface name too long (15 bytes at most): {}",
            crate::base::escape::printable(name)
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
fn open_tap(name: &str, vnet: bool) -> io::Result<(OwnedFd, String)> {
    // SAFETY: the path is a NUL-terminated literal; open(2) returns a descriptor (checked)
    // that is then owned.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq holds integers, byte arrays and a union of such: all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    // check_ifname allowed at most 15 bytes: the name and its NUL fit in IFNAMSIZ (16).
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is, live for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if vnet {
        let mut set = false;
        for offloads in OFFLOADS {
            // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is passed.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads) } == 0 {
                set = true;
                break;
            }
        }
        if !set {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: the kernel NUL-terminates the name it writes back within IFNAMSIZ, and the
    // zeroed array ends in NUL anyway.
    let name = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((fd, name))
}

/// Reads one frame and its `virtio_net_hdr` from a TAP opened with `IFF_VNET_HDR`.
fn read_vnet(fd: RawFd, buf: &mut RxBuf) -> io::Result<Received> {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let data = buf.read(
        |ptr, len| {
            let iov = vnet_iov(hdr.as_mut_ptr(), ptr, len);
            // SAFETY: the iovecs describe `hdr` and the `len` writable bytes `RxBuf::read`
            // offers at `ptr`, both live for the call; readv writes nowhere else.
            let n = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            (n as usize)
                .checked_sub(VNET_HDR_LEN)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))
        },
        |_| HEADROOM,
    )?;
    Ok(Received::One(Frame::new(data, VnetHdr::parse(&hdr))))
}

impl Tap {
    /// Creates or attaches to the TAP device `name` and brings it up; returns the port and the
    /// device's actual name (the kernel picks `tapN` for an empty name). With `offloads`, the
    /// device exchanges super-frames with the switch (see the module's doc).
    pub(crate) async fn open(
        name: &str,
        netif: &Netif,
        offloads: bool,
    ) -> anyhow::Result<(Tap, String)> {
        check_ifname(name)?;
        let (fd, name) =
            open_tap(name, offloads).with_context(|| format!("cannot create TAP device {name}"))?;
        netif
            .link_up(&name)
            .await
            .with_context(|| format!("cannot bring {name} up"))?;
        // SAFETY: the descriptor moves into the AsyncFd and is closed only when that is
        // dropped.
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok((Tap { fd, offloads }, name))
    }
}

impl Port for Tap {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
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
            },
            Takes::Plain,
            one_at_a_time(write_fd),
        )
        .await
    }
}
