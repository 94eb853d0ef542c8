//! `netdev` ports: an existing interface, every frame in and out of it, through an AF_PACKET
//! raw socket bound to it (as etherws 1.3 did; also the fallback when eBPF offload cannot
//! serve).
//!
//! Two things a naive packet socket gets wrong, done right here:
//! - the interface is put in promiscuous mode through a packet-socket membership, so frames
//!   for stations behind other ports reach us on real NICs, and the kernel undoes it when the
//!   socket closes;
//! - the kernel strips the 802.1Q tag of received frames into metadata (VLAN offload); the tag
//!   is read back from `PACKET_AUXDATA` and put back in front of the payload, or tagged traffic
//!   would silently change VLAN;
//! - on interfaces with offloads (veth by default, virtio, TAP with a vnet header) the kernel
//!   hands over frames it has not finished: TCP/UDP checksums left for the "hardware", and GSO
//!   super-frames of up to 64 KB. Forwarded as they are, the far end drops them (ping works,
//!   TCP does not). With `PACKET_VNET_HDR` each frame comes with a `virtio_net_hdr` saying so,
//!   and crosses the switch with it ([`crate::frame::Frame`]): a port that takes super-frames
//!   (a TAP, another packet socket, a WebSocket peer that negotiated them) gets it whole, the
//!   others get it finished (see [`super::gso`]). Frames sent through the socket carry their
//!   `virtio_net_hdr` too, so the kernel segments super-frames from elsewhere.

use std::cell::Cell;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Context;
use tokio::io::unix::AsyncFd;

use super::fd::{HEADROOM, Received, RxBuf, Takes, drive, receive, vnet_iov};
use super::gso::{VNET_HDR_LEN, VnetHdr};
use super::{Ingress, Port, PortIo};
use crate::frame::Frame;
use crate::netif::Netif;

const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
/// `<linux/if_packet.h>`: prefix every frame, both ways, with a `struct virtio_net_hdr`.
const PACKET_VNET_HDR: libc::c_int = 15;

pub struct Netdev {
    sock: AsyncFd<OwnedFd>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: val points to a properly sized, initialised option value.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl Netdev {
    /// Opens a packet socket on interface `name`.
    pub async fn open(name: &str, netif: &Netif) -> anyhow::Result<Netdev> {
        let index = netif.index(name).await?;
        Netdev::open_index(name, index)
    }

    /// Opens a packet socket on interface `name`, whose index is `index`.
    pub fn open_index(name: &str, index: u32) -> anyhow::Result<Netdev> {
        // Protocol 0 until bound: no frames from other interfaces sneak in before bind().
        // SAFETY: socket(2) takes no pointers; the descriptor it returns is checked, then owned.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })
        .context("cannot open packet socket")?;
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_VNET_HDR,
            &1 as &libc::c_int,
        )
        .context("cannot enable PACKET_VNET_HDR")?;

        // SAFETY: sockaddr_ll holds integers and byte arrays only: all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .with_context(|| format!("cannot bind packet socket to {name}"))?;

        // SAFETY: packet_mreq holds integers and a byte array only: all zeroes is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = index as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
        )
        .with_context(|| format!("cannot make {name} promiscuous"))?;
        setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &1 as &libc::c_int,
        )
        .context("cannot enable PACKET_AUXDATA")?;

        // SAFETY: the OwnedFd moves into the AsyncFd, which closes it only when dropped.
        let sock = unsafe { AsyncFd::register(fd)? };
        Ok(Netdev { sock })
    }
}

/// Receives one frame, putting back a VLAN tag the kernel took off. What offloads left undone
/// (a checksum, a super-frame's segmentation) stays undone, described by the frame's
/// `virtio_net_hdr`: the port it goes out of finishes it, or hands it to a kernel that does.
fn recv_frame(fd: RawFd, buf: &mut RxBuf) -> io::Result<Received> {
    let tag: Cell<Option<(u16, u16)>> = Cell::new(None);
    let vnet: Cell<VnetHdr> = Cell::new(VnetHdr::default());
    let frame = buf.read(
        |ptr, len| {
            // The virtio_net_hdr lands on the stack, the frame straight in the receive buffer.
            let mut hdr = [0u8; VNET_HDR_LEN];
            let mut iov = vnet_iov(hdr.as_mut_ptr(), ptr, len);
            // Room for one tpacket_auxdata control message.
            let mut cmsg_buf = [0u64; 8];
            // SAFETY: msghdr holds integers and raw pointers: all zeroes (null pointers, zero
            // lengths) is a valid value. The pointers set below outlive the recvmsg call.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len();
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 8]>();
            // SAFETY: `msg` points at `iov` (the `hdr` array, then the `len` writable bytes that
            // `RxBuf::read` offers at `ptr`) and at `cmsg_buf` with its exact size, all live
            // until after the call; recvmsg writes nowhere else.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return headers within `msg_control` and
            // `msg_controllen` as the kernel set them (`cmsg_buf`, still live), or null; a
            // PACKET_AUXDATA message carries a tpacket_auxdata, read unaligned from its data.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                        );
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                aux.tp_vlan_tpid
                            } else {
                                etherws_common::ETH_P_8021Q
                            };
                            tag.set(Some((tpid, aux.tp_vlan_tci)));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            // The kernel always writes the header (MSG_TRUNC: n is the real size of both).
            let n = (n as usize)
                .checked_sub(VNET_HDR_LEN)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))?;
            vnet.set(VnetHdr::parse(&hdr));
            // A frame larger than the buffer is truncated (MSG_TRUNC gives its real size):
            // such a frame cannot be forwarded whole, so it is not forwarded at all.
            if n > len {
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            Ok(n)
        },
        |frame| {
            match tag.get() {
                // frame = headroom(4) + dst(6) + src(6) + rest: slide the addresses into the
                // headroom and write the tag where they were.
                Some((tpid, tci)) if frame.len() >= HEADROOM + 12 => {
                    frame.copy_within(HEADROOM..HEADROOM + 12, 0);
                    frame[12..14].copy_from_slice(&tpid.to_be_bytes());
                    frame[14..16].copy_from_slice(&tci.to_be_bytes());
                    // The kernel's offsets count from the frame without the tag.
                    vnet.set(vnet.get().shifted(HEADROOM as u16));
                    0
                }
                _ => HEADROOM,
            }
        },
    )?;
    Ok(Received::One(Frame::new(frame, vnet.get())))
}

/// Frames sent per `sendmmsg` at most: the batch a port's writer takes off its queue.
const SEND_BATCH: usize = 64;

/// Sends frames from the front of `frames`, each behind its `virtio_net_hdr`, with one
/// `sendmmsg(2)` for up to [`SEND_BATCH`] of them: a stream of small frames costs a system call
/// per batch rather than per frame. Returns how many were sent (the kernel stops at the first
/// it refuses, whose error the next call returns), or the error of the first.
fn send_frames(fd: RawFd, frames: &[Frame]) -> io::Result<usize> {
    let frames = &frames[..frames.len().min(SEND_BATCH)];
    let hdrs: Vec<[u8; VNET_HDR_LEN]> = frames.iter().map(|f| f.offload.to_bytes()).collect();
    let mut iovs: Vec<[libc::iovec; 2]> = frames
        .iter()
        .zip(&hdrs)
        .map(|(f, h)| {
            vnet_iov(
                h.as_ptr().cast_mut(),
                f.data.as_ptr().cast_mut(),
                f.data.len(),
            )
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr holds integers and raw pointers: all zeroes (no address, no
            // control data) is a valid value.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = iov.as_mut_ptr();
            m.msg_hdr.msg_iovlen = iov.len();
            m
        })
        .collect();
    // SAFETY: `msgs` holds `msgs.len()` headers, each pointing at its two iovecs in `iovs`,
    // which describe the live `hdrs` entries and frame buffers; all outlive the call, and
    // sendmmsg only reads the data (it writes only each header's `msg_len`).
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Netdev {
    /// Hands every frame the socket receives to the switch and sends nothing: the receive half
    /// of an offloaded port, whose frames out leave another way. Returns only on error (the
    /// device went away).
    pub async fn receive_only(self, ingress: &Ingress) -> anyhow::Result<()> {
        receive(&self.sock, ingress, recv_frame).await
    }
}

impl Port for Netdev {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        // The packet socket takes frames with a virtio_net_hdr: the kernel segments a
        // super-frame (in the device, or in software before it) and fills in checksums.
        io.ingress.set_super_frames(true);
        drive(&self.sock, io, recv_frame, Takes::Offloaded, send_frames).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A connected pair of datagram sockets: one `sendmmsg` message is one datagram, as one is
    /// one frame on a packet socket.
    fn datagram_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`, which we then own.
        check(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        })
        .expect("socketpair");
        // SAFETY: both are fresh descriptors nobody else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn recv_datagram(fd: RawFd) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n >= 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    #[test]
    fn a_batch_goes_out_in_order_each_frame_behind_its_header() {
        let (a, b) = datagram_pair();
        let frames: Vec<Frame> = (0..70u8)
            .map(|i| {
                let hdr = VnetHdr {
                    flags: i % 2,
                    ..VnetHdr::default()
                };
                Frame::new(Bytes::from(vec![i; 60 + i as usize]), hdr)
            })
            .collect();
        // One call sends a batch at most; the rest take another.
        assert_eq!(send_frames(a.as_raw_fd(), &frames).unwrap(), SEND_BATCH);
        assert_eq!(
            send_frames(a.as_raw_fd(), &frames[SEND_BATCH..]).unwrap(),
            6
        );
        for (i, f) in frames.iter().enumerate() {
            let got = recv_datagram(b.as_raw_fd()).expect("datagram");
            assert_eq!(got[..VNET_HDR_LEN], f.offload.to_bytes(), "frame {i}");
            assert_eq!(got[VNET_HDR_LEN..], f.data[..], "frame {i}");
        }
        assert!(recv_datagram(b.as_raw_fd()).is_none(), "nothing more");
    }
}
