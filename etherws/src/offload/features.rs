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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `NETDEV_XDP_ACT_NDO_XMIT`: the device takes frames redirected into it by XDP.
pub(crate) const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
/// Attribute types carry flag bits above these.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A generic-netlink request: header, command, attributes.
struct Request(Vec<u8>);

impl Request {
    fn new(family: u16, cmd: u8) -> Request {
        let mut b = vec![0u8; NLMSG_HDRLEN + GENL_HDRLEN];
        b[4..6].copy_from_slice(&family.to_ne_bytes());
        b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
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

/// A `NETLINK_GENERIC` socket.
pub(crate) struct Genl {
    fd: OwnedFd,
    /// The `netdev` family's id, once known.
    netdev: Option<u16>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Genl {
    pub(crate) fn open() -> io::Result<Genl> {
        // SAFETY: socket(2) takes no pointers; the descriptor it returns is checked, then owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is an open descriptor (checked above) that nothing else owns or closes.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A reply that never comes must not hang the caller.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a live timeval and the size passed is its own; setsockopt only reads
        // it.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Genl { fd, netdev: None })
    }

    /// Sends `req` to the kernel and returns the attributes of its one reply.
    fn exchange(&self, req: Vec<u8>) -> io::Result<Vec<(u16, Vec<u8>)>> {
        // SAFETY: sockaddr_nl is plain old data; all zeroes addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `req` is readable for `req.len()` bytes and `kernel` is a live sockaddr_nl of
        // the size passed; sendto only reads both, and the socket is open (owned by `self`).
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 16384];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse_reply(&buf[..n as usize])
    }

    /// The `xdp_features` bits (`NETDEV_XDP_ACT_*`) of device `ifindex`.
    pub(crate) fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        let family = match self.netdev {
            Some(f) => f,
            None => {
                let req = Request::new(GENL_ID_CTRL, CTRL_CMD_GETFAMILY)
                    .attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0")
                    .bytes();
                let attrs = self.exchange(req)?;
                let id = attrs
                    .iter()
                    .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
                    .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
                    .ok_or_else(|| bad("no netdev family id in the reply"))?;
                self.netdev = Some(id);
                id
            }
        };
        let req = Request::new(family, NETDEV_CMD_DEV_GET)
            .attr(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())
            .bytes();
        self.exchange(req)?
            .iter()
            .find(|(k, v)| *k == NETDEV_A_DEV_XDP_FEATURES && v.len() >= 8)
            .map(|(_, v)| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
            .ok_or_else(|| bad("no xdp-features in the reply"))
    }
}

/// The attributes of the first message of a generic-netlink reply, or the error it carries.
fn parse_reply(b: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    if b.len() < NLMSG_HDRLEN {
        return Err(bad("short netlink reply"));
    }
    let len = (u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize).min(b.len());
    let kind = u16::from_ne_bytes([b[4], b[5]]);
    if kind == NLMSG_ERROR {
        let code = b
            .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
            .map(|e| i32::from_ne_bytes(e.try_into().expect("4 bytes")))
            .ok_or_else(|| bad("short netlink error"))?;
        return Err(io::Error::from_raw_os_error(-code));
    }
    let mut attrs = Vec::new();
    let mut off = NLMSG_HDRLEN + GENL_HDRLEN;
    while off + 4 <= len {
        let alen = usize::from(u16::from_ne_bytes([b[off], b[off + 1]]));
        let akind = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & NLA_TYPE_MASK;
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
