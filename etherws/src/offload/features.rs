//! What a device's driver can do with XDP, as the kernel advertises it (`xdp_features`, through
//! the `netdev` generic-netlink family, Linux ≥ 6.3).
//!
//! The offload needs one fact from it: whether frames redirected *into* a device by XDP are
//! accepted (`NETDEV_XDP_ACT_NDO_XMIT`). A veth accepts them only while its peer has GRO on or
//! an XDP program, and a NIC only if its driver implements `ndo_xdp_xmit`; otherwise the kernel
//! drops every redirected frame without a trace. The kernel keeps the flag current (a veth's
//! flips when its peer's GRO does), so the offload reads it again periodically.
//!
//! Two requests on a `NETLINK_GENERIC` socket, written by hand: the family id of `netdev`
//! (`CTRL_CMD_GETFAMILY`), then `NETDEV_CMD_DEV_GET` for the ifindex. No crate in the tree
//! speaks this family, and the wire format is small and stable.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::SyscallError;
use crate::sys::socket::{self, Plain, SO_RCVTIMEO};

/// `NETDEV_XDP_ACT_BASIC`: the driver runs XDP itself (native XDP; without it, only generic).
pub(crate) const XDP_ACT_BASIC: u64 = 1 << 0;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the device takes frames redirected into it by XDP.
pub(crate) const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: AF_XDP sockets on the device can be zero-copy.
pub(crate) const XDP_ACT_XSK_ZEROCOPY: u64 = 1 << 3;

/// Netlink's message header, then generic netlink's.
const NLMSG_HDRLEN: usize = size_of::<libc::nlmsghdr>();
const GENL_HDRLEN: usize = size_of::<libc::genlmsghdr>();
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;

/// One question to a generic-netlink family: a command with one attribute, and the attribute
/// of the reply that answers it.
struct Query {
    cmd: u8,
    attr: u16,
    answer: u16,
    /// What a reply without the answer says.
    missing: &'static str,
}

/// The controller's `CTRL_CMD_GETFAMILY`: a family's id (`CTRL_ATTR_FAMILY_ID`) by its name
/// (`CTRL_ATTR_FAMILY_NAME`). The controller's own family id is `GENL_ID_CTRL`.
const FAMILY_ID: Query = Query {
    cmd: libc::CTRL_CMD_GETFAMILY as u8,
    attr: libc::CTRL_ATTR_FAMILY_NAME as u16,
    answer: libc::CTRL_ATTR_FAMILY_ID as u16,
    missing: "no netdev family id in the reply",
};

/// The `netdev` family's `NETDEV_CMD_DEV_GET` (1): a device's `NETDEV_A_DEV_XDP_FEATURES` (3)
/// by its `NETDEV_A_DEV_IFINDEX` (1) (`<linux/netdev.h>`).
const XDP_FEATURES: Query = Query {
    cmd: 1,
    attr: 1,
    answer: 3,
    missing: "no xdp-features in the reply",
};

/// A generic-netlink request: header, command, attributes.
struct Request(Vec<u8>);

impl Request {
    fn new(family: u16, cmd: u8) -> Request {
        let mut b = vec![0u8; NLMSG_HDRLEN + GENL_HDRLEN];
        b[4..6].copy_from_slice(&family.to_ne_bytes());
        b[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
        b[NLMSG_HDRLEN] = cmd;
        b[NLMSG_HDRLEN + 1] = 1; // version
        Request(b)
    }

    fn attr(mut self, kind: u16, payload: &[u8]) -> Request {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn bytes(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// Why a device's XDP features are not known.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeaturesError {
    /// The socket could not be opened.
    #[error("no generic netlink socket: {0}")]
    NoSocket(SyscallError),
    /// Sending the request or receiving the reply failed.
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// The kernel answered with an error (no `netdev` family before Linux 6.3, no such device).
    #[error(transparent)]
    Kernel(io::Error),
    /// A reply this code cannot read.
    #[error("{0}")]
    Reply(&'static str),
}

#[cfg(test)]
impl FeaturesError {
    /// The OS error number, if the kernel gave one.
    pub(crate) fn raw_os_error(&self) -> Option<i32> {
        match self {
            FeaturesError::NoSocket(e) | FeaturesError::Syscall(e) => e.raw_os_error(),
            FeaturesError::Kernel(e) => e.raw_os_error(),
            FeaturesError::Reply(_) => None,
        }
    }
}

/// A `NETLINK_GENERIC` socket.
pub(crate) struct Genl {
    fd: OwnedFd,
    /// The `netdev` family's id, once known.
    netdev: Option<u16>,
}

impl Genl {
    /// Opens the socket, with a receive timeout of a second.
    ///
    /// # Errors
    ///
    /// [`FeaturesError::NoSocket`]: `socket(AF_NETLINK)` or `setsockopt(SO_RCVTIMEO)` failed.
    pub(crate) fn open() -> Result<Genl, FeaturesError> {
        let fd = socket::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
            "socket(AF_NETLINK)",
        )
        .map_err(FeaturesError::NoSocket)?;
        // A reply that never comes must not hang the caller.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        socket::setsockopt(fd.as_fd(), SO_RCVTIMEO, &tv).map_err(FeaturesError::NoSocket)?;
        Ok(Genl { fd, netdev: None })
    }

    /// Asks `query` of `family` about `key`; returns the first `N` bytes of the answer.
    fn ask<const N: usize>(
        &self,
        family: u16,
        query: &Query,
        key: &[u8],
    ) -> Result<[u8; N], FeaturesError> {
        let req = Request::new(family, query.cmd)
            .attr(query.attr, key)
            .bytes();
        // All zeroes but the family addresses the kernel.
        let mut kernel = libc::sockaddr_nl::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        socket::sendto(
            self.fd.as_fd(),
            &req,
            0,
            Some(&kernel),
            "sendto(AF_NETLINK)",
        )?;
        let mut buf = vec![0u8; 16384];
        let n = socket::recv(self.fd.as_fd(), &mut buf, 0, "recv(AF_NETLINK)")?;
        parse_reply(&buf[..n])?
            .iter()
            .filter(|(k, _)| *k == query.answer)
            .find_map(|(_, v)| first(v))
            .ok_or(FeaturesError::Reply(query.missing))
    }

    /// The `xdp_features` bits (`NETDEV_XDP_ACT_*`) of device `ifindex`.
    ///
    /// # Errors
    ///
    /// A [`FeaturesError`]: the exchange failed, or the kernel has no answer (no `netdev`
    /// family before Linux 6.3).
    pub(crate) fn xdp_features(&mut self, ifindex: u32) -> Result<u64, FeaturesError> {
        let family = match self.netdev {
            Some(f) => f,
            None => {
                let id = self.ask(libc::GENL_ID_CTRL as u16, &FAMILY_ID, b"netdev\0")?;
                let id = u16::from_ne_bytes(id);
                self.netdev = Some(id);
                id
            }
        };
        self.ask(family, &XDP_FEATURES, &ifindex.to_ne_bytes())
            .map(u64::from_ne_bytes)
    }
}

/// The first `N` bytes of an attribute's payload, if it has that many.
fn first<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.get(..N)?.try_into().ok()
}

/// The attributes of the first message of a generic-netlink reply, or the error it carries.
fn parse_reply(b: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, FeaturesError> {
    if b.len() < NLMSG_HDRLEN {
        return Err(FeaturesError::Reply("short netlink reply"));
    }
    let len = (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize).min(b.len());
    let kind = u16::from_ne_bytes([b[4], b[5]]);
    if kind == NLMSG_ERROR {
        let code = first(&b[NLMSG_HDRLEN..])
            .map(i32::from_ne_bytes)
            .ok_or(FeaturesError::Reply("short netlink error"))?;
        return Err(FeaturesError::Kernel(io::Error::from_raw_os_error(-code)));
    }
    let mut attrs = Vec::new();
    let mut off = NLMSG_HDRLEN + GENL_HDRLEN;
    while off + 4 <= len {
        let alen = usize::from(u16::from_ne_bytes([b[off], b[off + 1]]));
        let akind = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & libc::NLA_TYPE_MASK as u16;
        if alen < 4 || off + alen > len {
            break;
        }
        attrs.push((akind, b[off + 4..off + alen].to_vec()));
        off += alen.next_multiple_of(4);
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let req = Request::new(0x1234, 7).attr(1, &[1, 2, 3]).bytes();
        assert_eq!(req.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), 0x1234);
        assert_eq!(req[16], 7);
        assert_eq!(u16::from_ne_bytes([req[20], req[21]]), 7);
        assert_eq!(&req[24..28], &[1, 2, 3, 0]);
    }

    #[test]
    fn reply_parsing_survives_garbage() {
        assert!(parse_reply(&[0; 3]).is_err());
        let mut err = vec![0u8; 20];
        err[0..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENODEV).to_ne_bytes());
        assert_eq!(
            parse_reply(&err).unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        // An attribute claiming more than the message holds ends the walk.
        let mut r = Request::new(1, 1).attr(3, &[0; 8]).bytes();
        r[20..22].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_reply(&r).unwrap().is_empty());
    }

    #[test]
    fn loopback_has_features_or_a_clear_error() {
        // Index 1 is `lo` in every namespace; older kernels have no netdev family.
        let Ok(mut g) = Genl::open() else { return };
        match g.xdp_features(1) {
            Ok(f) => assert_eq!(f & XDP_ACT_NDO_XMIT, 0, "lo takes no redirected frames"),
            Err(e) => eprintln!("netdev family: {e}"),
        }
    }
}
