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
//!   would silently change VLAN.

use std::cell::Cell;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Context;
use bytes::Bytes;
use tokio::io::unix::AsyncFd;

use super::fd::{HEADROOM, RxBuf, drive};
use super::{Port, PortIo};
use crate::netif::Netif;

const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;

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
        // Protocol 0 until bound: no frames from other interfaces sneak in before bind().
        // SAFETY: plain socket(2) call.
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

        // SAFETY: sockaddr_ll is plain old data.
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

        // SAFETY: packet_mreq is plain old data.
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

/// Receives one frame, putting back a VLAN tag the kernel took off.
fn recv_frame(fd: RawFd, buf: &mut RxBuf) -> io::Result<Bytes> {
    let tag: Cell<Option<(u16, u16)>> = Cell::new(None);
    buf.read(
        |ptr, len| {
            let mut iov = libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            };
            // Room for one tpacket_auxdata control message.
            let mut cmsg_buf = [0u64; 8];
            // SAFETY: msghdr is plain old data; the pointers set below outlive the call.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 8]>();
            // SAFETY: msg describes valid buffers.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: walking the control messages the kernel just wrote into cmsg_buf.
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
            // A frame larger than the buffer is truncated (MSG_TRUNC gives its real size):
            // such a frame cannot be forwarded whole, so it is not forwarded at all.
            if n as usize > len {
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            Ok(n as usize)
        },
        |frame| match tag.get() {
            // frame = headroom(4) + dst(6) + src(6) + rest: slide the addresses into the
            // headroom and write the tag where they were.
            Some((tpid, tci)) if frame.len() >= HEADROOM + 12 => {
                frame.copy_within(HEADROOM..HEADROOM + 12, 0);
                frame[12..14].copy_from_slice(&tpid.to_be_bytes());
                frame[14..16].copy_from_slice(&tci.to_be_bytes());
                0
            }
            _ => HEADROOM,
        },
    )
}

impl Port for Netdev {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        drive(&self.sock, io, recv_frame).await
    }
}
