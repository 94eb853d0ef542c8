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
//!   and crosses the switch with it ([`crate::switch::frame::Frame`]): a port that takes super-frames
//!   (a TAP, another packet socket, a WebSocket peer that negotiated them) gets it whole, the
//!   others get it finished (see [`crate::wire::gso`]). Frames sent through the socket carry their
//!   `virtio_net_hdr` too, so the kernel segments super-frames from elsewhere;
//! - the socket's receive buffer is sized for a burst ([`RCVBUF`]), not left at the default
//!   of about 200 KB (three 64 KB super-frames), which a local sender's window overflows
//!   whenever the switch is a moment late; what the kernel still drops there is counted
//!   (`PACKET_STATISTICS`, the port's `rx_dropped`).

use std::collections::VecDeque;
use std::mem::size_of;
use std::os::fd::{AsFd, RawFd};

use bytes::{Buf, BytesMut};
use tokio::io::unix::AsyncFd;

use super::fd::{
    HEADROOM, Received, Retired, RxBuf, SEND_BATCH, Takes, drive, receive, send_all, vnet_iov,
};
use super::{Ingress, MAX_FRAME, Port, PortIo, SOCKET_DROPS_EVERY, count_rx_dropped};
use crate::switch::fdb::PortNo;
use crate::switch::frame::Frame;
use crate::sys::netif::Netif;
use crate::sys::socket::{
    self, PACKET_ADD_MEMBERSHIP, PACKET_AUXDATA, PACKET_STATISTICS, PACKET_VNET_HDR, Plain,
    SO_ATTACH_FILTER, SO_MARK, SO_RCVBUF, SO_RCVBUFFORCE,
};
use crate::sys::{self, SyscallError};
use crate::wire::gso::{VNET_HDR_LEN, VnetHdr};
use crate::wire::vlan;
use etherws_common::TX_MARK;

const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;

/// The receive buffer a packet socket asks for: 8 MiB, which the kernel doubles to 16 MiB of
/// room for what it charges (`truesize`, payload and bookkeeping). The default (about 200 KB)
/// holds three 64 KB super-frames: a local sender on a veth sends its whole TCP window at once
/// (Linux's largest default window is 6 MiB, `tcp_rmem`), and across a WAN path of tens of
/// milliseconds that window is megabytes, so every moment the switch is late reading the
/// socket (its lock, a busy core) cost the sender a loss. Memory is charged only while frames
/// wait, and at most this much per port.
pub(crate) const RCVBUF: libc::c_int = 8 << 20;

pub(crate) struct Netdev {
    sock: AsyncFd<std::os::fd::OwnedFd>,
}

/// Why a packet socket could not be set up on an interface. The cause is the
/// [`source`](std::error::Error::source), as with anyhow's `context`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetdevError {
    #[error("cannot open packet socket")]
    Open(#[source] SyscallError),
    /// An option every frame depends on (`PACKET_VNET_HDR`, `PACKET_AUXDATA`).
    #[error("cannot enable {option}")]
    Option {
        option: &'static str,
        source: SyscallError,
    },
    #[error("cannot bind packet socket to {name}")]
    Bind { name: String, source: SyscallError },
    #[error("cannot make {name} promiscuous")]
    Promiscuous { name: String, source: SyscallError },
    /// The socket filter could not be attached (the reason, in words).
    #[error("cannot attach the socket filter: {0}")]
    Filter(String),
    /// The socket cannot be registered with the reactor.
    #[error(transparent)]
    Register(SyscallError),
}

impl Netdev {
    /// Opens a packet socket on interface `name`.
    ///
    /// # Errors
    ///
    /// No interface `name`, or a [`NetdevError`].
    pub(crate) async fn open(name: &str, netif: &Netif) -> anyhow::Result<Netdev> {
        let index = netif.index(name).await?;
        Ok(Netdev::open_index(name, index)?)
    }

    /// Opens a packet socket on interface `name`, whose index is `index`.
    ///
    /// # Errors
    ///
    /// A [`NetdevError`] saying which step failed.
    pub(crate) fn open_index(name: &str, index: u32) -> Result<Netdev, NetdevError> {
        Netdev::open_filtered(name, index, |_| Ok(()))
    }

    /// [`Netdev::open_index`], running `before_bind` on the socket before it is bound: a
    /// socket filter attached there sees every frame the socket will ever queue.
    ///
    /// # Errors
    ///
    /// A [`NetdevError`] saying which step failed (`before_bind`'s own included).
    pub(crate) fn open_filtered(
        name: &str,
        index: u32,
        before_bind: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> Result<(), NetdevError>,
    ) -> Result<Netdev, NetdevError> {
        // Protocol 0 until bound: no frames from other interfaces sneak in before bind().
        let fd = socket::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            "socket(AF_PACKET)",
        )
        .map_err(NetdevError::Open)?;
        let option = |option| move |source| NetdevError::Option { option, source };
        socket::setsockopt(fd.as_fd(), PACKET_VNET_HDR, &1).map_err(option("PACKET_VNET_HDR"))?;
        size_receive_buffer(fd.as_fd(), name);
        hide_own_segments(fd.as_fd()).map_err(option("SO_MARK/SO_ATTACH_FILTER"))?;
        before_bind(fd.as_fd())?;

        let mut sll = libc::sockaddr_ll::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index as i32;
        socket::bind(fd.as_fd(), &sll, "bind(AF_PACKET)").map_err(|source| NetdevError::Bind {
            name: name.to_string(),
            source,
        })?;

        let mut mreq = libc::packet_mreq::zeroed();
        mreq.mr_ifindex = index as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        socket::setsockopt(fd.as_fd(), PACKET_ADD_MEMBERSHIP, &mreq).map_err(|source| {
            NetdevError::Promiscuous {
                name: name.to_string(),
                source,
            }
        })?;
        socket::setsockopt(fd.as_fd(), PACKET_AUXDATA, &1).map_err(option("PACKET_AUXDATA"))?;

        let sock = sys::fd::register(fd).map_err(NetdevError::Register)?;
        Ok(Netdev { sock })
    }
}

/// Marks what the socket sends ([`TX_MARK`]) and attaches a classic BPF filter that drops the
/// outgoing frames carrying that mark: the segments the kernel cuts from the switch's own
/// super-frames for a device without TSO, which the packet taps would hand back to this socket
/// (only the last segment keeps the socket that sent it). The host's own outgoing frames stay.
/// A TC port's eBPF filter, attached after this one, replaces it and drops them too.
fn hide_own_segments(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), SyscallError> {
    // `<linux/filter.h>`: ancillary loads, and the instruction classes used.
    const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
    const SKF_AD_PKTTYPE: u32 = 4;
    const SKF_AD_MARK: u32 = 20;
    const LD_ABS_W: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        insn(LD_ABS_W, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),
        insn(JEQ_K, 0, 2, libc::PACKET_OUTGOING as u32),
        insn(LD_ABS_W, 0, 0, SKF_AD_OFF + SKF_AD_MARK),
        insn(JEQ_K, 1, 0, TX_MARK),
        insn(RET_K, 0, 0, u32::MAX),
        insn(RET_K, 0, 0, 0),
    ];
    socket::setsockopt(fd, SO_MARK, &TX_MARK)?;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    socket::setsockopt(fd, SO_ATTACH_FILTER, &fprog)
}

/// Gives the socket a receive buffer of [`RCVBUF`]: past `net.core.rmem_max` where the switch
/// may (`SO_RCVBUFFORCE`, `CAP_NET_ADMIN`), else as much of it as `rmem_max` allows
/// (`SO_RCVBUF`), said at debug level. A socket left with the default still works: nothing
/// here fails the port.
fn size_receive_buffer(fd: std::os::fd::BorrowedFd<'_>, name: &str) {
    let Err(forced) = socket::setsockopt(fd, SO_RCVBUFFORCE, &RCVBUF) else {
        return;
    };
    if let Err(e) = socket::setsockopt(fd, SO_RCVBUF, &RCVBUF) {
        tracing::debug!(
            interface = name,
            "receive buffer left as it was: {forced}; {e}"
        );
        return;
    }
    // Read back: what the kernel keeps, twice what it took.
    let got = socket::getsockopt(fd, SO_RCVBUF).map_or(0, |n| n / 2);
    if got < RCVBUF {
        tracing::debug!(
            interface = name,
            asked = RCVBUF,
            got,
            "receive buffer capped by net.core.rmem_max ({forced})"
        );
    }
}

impl Netdev {
    /// Frames the kernel dropped since the last call because the socket's receive buffer was
    /// full (`PACKET_STATISTICS`, which starts again from zero each time it is read); 0 if it
    /// cannot be read.
    fn dropped(&self) -> u64 {
        match socket::getsockopt(self.sock.get_ref().as_fd(), PACKET_STATISTICS) {
            Ok(stats) => u64::from(stats.tp_drops),
            Err(e) => {
                tracing::debug!("{e}");
                0
            }
        }
    }

    /// Counts what the socket drops into the port's `rx_dropped`, every
    /// [`SOCKET_DROPS_EVERY`], beside the port's I/O; never returns.
    async fn count_drops(&self, ingress: &Ingress) {
        count_rx_dropped(ingress, SOCKET_DROPS_EVERY, || {
            std::future::ready(self.dropped())
        })
        .await;
    }
}

/// Frames received per `recvmmsg` at most.
const RECV_BATCH: usize = 16;

/// A frame at least this long is handed on in the slot it was received in; a shorter one is
/// copied into the port's receive buffer (where it takes only its own length) and the slot
/// used again. So a slot's unused tail never doubles what a queued frame costs in memory,
/// and the copies are of at most half a slot.
const KEEP_SLOT: usize = MAX_FRAME / 2;

/// A packet socket's receive side: up to [`RECV_BATCH`] frames per `recvmmsg(2)`, so a stream
/// of small frames costs a system call per batch rather than per frame.
///
/// Each frame needs room for the largest (a 64 KB super-frame) before it is read, so the
/// batch lands in [`RECV_BATCH`] slots of [`SLOT`] bytes (1 MiB a port, and at most as much
/// again parked), not initialised: the
/// kernel says how many bytes it wrote, and only those are ever exposed. Frames then leave
/// their slot as [`KEEP_SLOT`] says. A slot whose frame left with it is parked; once that frame
/// is gone, the slot's memory is taken again instead of a new 64 KB being allocated per
/// super-frame (as [`RxBuf`]'s blocks are).
struct Receiver {
    port: PortNo,
    slots: Vec<BytesMut>,
    /// Slots whose frames may still be on their way, to be taken again once they are gone.
    parked: Retired,
    /// Frames of the last batch not yet handed on.
    pending: VecDeque<Frame>,
}

/// Capacity of a receive slot: a largest frame behind the headroom.
const SLOT: usize = HEADROOM + MAX_FRAME;

/// Parked slots kept at most (as many again as a batch).
const PARKED: usize = RECV_BATCH;

impl Receiver {
    fn new(port: PortNo) -> Self {
        Receiver {
            port,
            slots: Vec::new(),
            parked: Retired::new(PARKED),
            pending: VecDeque::new(),
        }
    }

    /// One frame for [`receive`]/[`drive`]: the next of the last batch, or the first of a new
    /// one.
    ///
    /// # Safety
    ///
    /// `fd` must be a packet socket (or another datagram socket): with `MSG_TRUNC` such a
    /// socket reports a frame's real length, of which it wrote what fits. On a stream socket
    /// `MSG_TRUNC` discards bytes unwritten and still counts them, which would expose
    /// uninitialised memory.
    ///
    /// # Errors
    ///
    /// `recvmmsg` with the OS error (`WouldBlock` when nothing is waiting).
    unsafe fn recv(&mut self, fd: RawFd, buf: &mut RxBuf) -> Result<Received, SyscallError> {
        if self.pending.is_empty() {
            // SAFETY: the caller's promise, passed on.
            unsafe { self.batch(fd, buf)? };
        }
        Ok(self
            .pending
            .pop_front()
            .map_or(Received::Nothing, Received::One))
    }

    /// Makes every slot empty with room for [`SLOT`] bytes: a parked slot whose frame is gone,
    /// or a new one.
    fn ready_slots(&mut self) {
        self.slots.resize_with(RECV_BATCH, BytesMut::new);
        for slot in &mut self.slots {
            if slot.capacity() - slot.len() >= SLOT || slot.try_reclaim(SLOT) {
                continue;
            }
            let used = std::mem::take(slot);
            *slot = self
                .parked
                .exchange(used, SLOT)
                .unwrap_or_else(|| BytesMut::with_capacity(SLOT));
        }
    }

    /// Receives a batch into `pending`, putting back VLAN tags the kernel took off. What
    /// offloads left undone (a checksum, a super-frame's segmentation) stays undone, described
    /// by each frame's `virtio_net_hdr`: the port it goes out of finishes it, or hands it to a
    /// kernel that does.
    ///
    /// # Safety
    ///
    /// As [`recv`](Self::recv).
    unsafe fn batch(&mut self, fd: RawFd, buf: &mut RxBuf) -> Result<(), SyscallError> {
        self.ready_slots();
        // Per frame: its virtio_net_hdr and room for one tpacket_auxdata control message.
        let mut hdrs = [[0u8; VNET_HDR_LEN]; RECV_BATCH];
        let mut cmsgs = [[0u64; 8]; RECV_BATCH];
        let mut iovs: [[libc::iovec; 2]; RECV_BATCH] = std::array::from_fn(|_| {
            [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2]
        });
        for ((iov, hdr), slot) in iovs.iter_mut().zip(&mut hdrs).zip(&mut self.slots) {
            let room = &mut slot.spare_capacity_mut()[HEADROOM..];
            *iov = vnet_iov(hdr.as_mut_ptr(), room.as_mut_ptr().cast(), MAX_FRAME);
        }
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = std::array::from_fn(|i| {
            // All zeroes: null pointers, zero lengths. The pointers set below outlive the
            // recvmmsg call.
            let mut m = libc::mmsghdr::zeroed();
            m.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            m.msg_hdr.msg_iovlen = 2;
            m.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = size_of::<[u64; 8]>();
            m
        });
        // SAFETY: each header points at its two iovecs (its `hdrs` entry, then MAX_FRAME bytes
        // of its slot's spare capacity, which is at least SLOT - HEADROOM long) and at its
        // `cmsgs` entry with that entry's exact size; all live until after the call, and
        // recvmmsg writes nowhere else. MSG_TRUNC: each `msg_len` is the frame's real size,
        // even if larger than what was written (a datagram socket, as the caller promised).
        let n = unsafe { socket::recvmmsg(fd, &mut msgs, libc::MSG_TRUNC) }?;
        for (i, m) in msgs.iter().take(n).enumerate() {
            let port = self.port;
            // The kernel always writes the header: the rest is the frame.
            let Some(len) = (m.msg_len as usize).checked_sub(VNET_HDR_LEN) else {
                tracing::debug!(port, "frame without its virtio_net_hdr, dropped");
                continue;
            };
            // A frame larger than its slot was truncated: it cannot be forwarded whole, so it
            // is not forwarded at all.
            if len > MAX_FRAME {
                tracing::debug!(port, len, "frame over {MAX_FRAME} bytes, dropped");
                continue;
            }
            // Control data cut short may have lost the VLAN tag: the frame would change VLAN.
            if m.msg_hdr.msg_flags & libc::MSG_CTRUNC != 0 {
                tracing::debug!(port, "frame's control data truncated, dropped");
                continue;
            }
            // SAFETY: the header recvmmsg just filled in; its control buffer (`cmsgs[i]`) is
            // live.
            let tag = unsafe { vlan_tag(&m.msg_hdr) };
            let mut vnet = VnetHdr::parse(&hdrs[i]);
            let slot = &mut self.slots[i];
            let data = if len < KEEP_SLOT {
                // SAFETY: the kernel wrote `len` bytes (msg_len less the header, at most the
                // iovec's MAX_FRAME, see above) at HEADROOM into the slot's spare capacity.
                let got = unsafe {
                    std::slice::from_raw_parts(
                        slot.spare_capacity_mut()[HEADROOM..].as_ptr().cast::<u8>(),
                        len,
                    )
                };
                buf.copy(got, |frame| put_back_tag(frame, tag, &mut vnet))
            } else {
                for b in &mut slot.spare_capacity_mut()[..HEADROOM] {
                    b.write(0);
                }
                // SAFETY: the headroom was just initialised, and the kernel wrote the `len`
                // bytes after it (see above); the slot is empty with at least SLOT >= HEADROOM
                // + len bytes of capacity (`ready_slots`).
                unsafe { slot.set_len(HEADROOM + len) };
                let start = put_back_tag(slot, tag, &mut vnet);
                let mut frame = slot.split();
                frame.advance(start);
                frame.freeze()
            };
            self.pending.push_back(Frame::new(data, vnet));
        }
        Ok(())
    }
}

/// The 802.1Q tag the kernel took off a received frame (VLAN offload), from its
/// `PACKET_AUXDATA` control message: (TPID, TCI).
///
/// # Safety
///
/// `msg` is a header `recvmmsg` just filled in, its control buffer still live.
unsafe fn vlan_tag(msg: &libc::msghdr) -> Option<(u16, u16)> {
    let mut tag = None;
    // SAFETY: the caller's promise, passed on.
    unsafe {
        socket::packet_auxdata(msg, |aux| {
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    etherws_common::ETH_P_8021Q
                };
                tag = Some((tpid, aux.tp_vlan_tci));
            }
        })
    };
    tag
}

/// Puts `tag` back into `frame` (HEADROOM spare bytes, then the frame as received) and returns
/// where the frame now starts: 0 with a tag, HEADROOM without.
fn put_back_tag(frame: &mut [u8], tag: Option<(u16, u16)>, vnet: &mut VnetHdr) -> usize {
    match tag {
        // frame = headroom (a tag's length) + dst + src + rest: slide the addresses into the headroom
        // and write the tag where they were.
        Some((tpid, tci)) if frame.len() >= HEADROOM + vlan::OUTER => {
            frame.copy_within(HEADROOM..HEADROOM + vlan::OUTER, 0);
            vlan::write_outer(frame, tpid, tci);
            // The kernel's offsets count from the frame without the tag.
            *vnet = vnet.shifted(HEADROOM as u16);
            0
        }
        _ => HEADROOM,
    }
}

/// Sends frames from the front of `frames`, each behind its `virtio_net_hdr`, with one
/// `sendmmsg(2)` for up to [`SEND_BATCH`] of them: a stream of small frames costs a system call
/// per batch rather than per frame. Returns how many were sent (the kernel stops at the first
/// it refuses, whose error the next call returns), or the error of the first.
fn send_frames(fd: RawFd, frames: &[Frame]) -> Result<usize, SyscallError> {
    let frames = &frames[..frames.len().min(SEND_BATCH)];
    let hdrs: [[u8; VNET_HDR_LEN]; SEND_BATCH] = std::array::from_fn(|i| {
        frames
            .get(i)
            .map_or([0; VNET_HDR_LEN], |f| f.offload.to_bytes())
    });
    let mut iovs: [[libc::iovec; 2]; SEND_BATCH] = std::array::from_fn(|i| {
        let data = frames.get(i).map_or(&[][..], |f| &f.data[..]);
        vnet_iov(
            hdrs[i].as_ptr().cast_mut(),
            data.as_ptr().cast_mut(),
            data.len(),
        )
    });
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = std::array::from_fn(|i| {
        // All zeroes: no address, no control data.
        let mut m = libc::mmsghdr::zeroed();
        m.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        m.msg_hdr.msg_iovlen = 2;
        m
    });
    // SAFETY: the first `frames.len()` headers each point at their two iovecs in `iovs`, which
    // describe the live `hdrs` entries and frame buffers; all outlive the call, and sendmmsg
    // only reads the data (it writes only each header's `msg_len`).
    unsafe { socket::sendmmsg(fd, &mut msgs[..frames.len()], 0) }
}

impl Netdev {
    /// Hands every frame the socket receives to the switch and sends nothing: the receive half
    /// of an offloaded port, whose frames out leave another way. Returns only on error (the
    /// device went away).
    ///
    /// # Errors
    ///
    /// The error that made the socket useless.
    pub(crate) async fn receive_only(&self, ingress: &Ingress) -> anyhow::Result<()> {
        let mut rx = Receiver::new(ingress.port());
        tokio::select! {
            // SAFETY: `fd` is this port's packet socket.
            r = receive(&self.sock, ingress, |fd, buf| unsafe { rx.recv(fd, buf) }) => r,
            () = self.count_drops(ingress) => Ok(()),
        }
    }
}

impl Netdev {
    /// Sends `frames` in order, each behind its `virtio_net_hdr` (the kernel segments a
    /// super-frame, in the device or in software, and completes checksums), waiting while the
    /// socket's buffer is full: the send half of an offloaded port, for what its AF_XDP socket
    /// cannot carry. A frame the device refuses is dropped and logged at debug level.
    ///
    /// # Errors
    ///
    /// The error that made the socket useless (the device went away), or the reactor's.
    pub(crate) async fn send_offloaded(
        &self,
        frames: &[Frame],
        port: PortNo,
    ) -> anyhow::Result<()> {
        send_all(&self.sock, frames, port, send_frames).await
    }
}

impl Port for Netdev {
    async fn run(self, io: PortIo) -> anyhow::Result<()> {
        // The packet socket takes frames with a virtio_net_hdr: the kernel segments a
        // super-frame (in the device, or in software before it) and fills in checksums.
        io.ingress.set_super_frames(true);
        let mut rx = Receiver::new(io.ingress.port());
        let ingress = io.ingress.clone();
        let frames = drive(
            &self.sock,
            io,
            // SAFETY: `fd` is this port's packet socket.
            |fd, buf| unsafe { rx.recv(fd, buf) },
            Takes::Offloaded,
            send_frames,
        );
        tokio::select! {
            r = frames => r,
            () = self.count_drops(&ingress) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A connected pair of datagram sockets: one `sendmmsg` message is one datagram, as one is
    /// one frame on a packet socket.
    fn datagram_pair() -> (OwnedFd, OwnedFd) {
        crate::sys::socket::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK)
            .expect("socketpair")
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
    fn root_the_receive_buffer_is_sized_for_a_burst_past_rmem_max() {
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root (SO_RCVBUFFORCE)");
            return;
        }
        let (a, _b) = datagram_pair();
        size_receive_buffer(a.as_fd(), "test");
        // What the kernel keeps: twice what it was given, whatever net.core.rmem_max says.
        assert_eq!(
            socket::getsockopt(a.as_fd(), SO_RCVBUF).unwrap(),
            2 * RCVBUF
        );
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

    /// Sends `data` as one datagram.
    fn send_datagram(fd: RawFd, data: &[u8]) {
        // SAFETY: `data` is readable for its length.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) };
        assert_eq!(n, data.len() as isize, "{}", io::Error::last_os_error());
    }

    #[test]
    fn a_batch_comes_in_whole_and_in_order_small_frames_copied_large_ones_kept() {
        let (a, b) = datagram_pair();
        // More than a batch, one of them larger than KEEP_SLOT.
        let sizes: Vec<usize> = (0..RECV_BATCH + 3)
            .map(|i| if i == 5 { KEEP_SLOT + 100 } else { 60 + i * 50 })
            .collect();
        let mut sent = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let hdr = VnetHdr {
                flags: 1,
                csum_start: i as u16,
                ..VnetHdr::default()
            };
            let data: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            let mut wire = hdr.to_bytes().to_vec();
            wire.extend(&data);
            send_datagram(a.as_raw_fd(), &wire);
            sent.push((hdr, data));
        }
        let (mut rx, mut buf) = (Receiver::new(1), RxBuf::default());
        let mut got = Vec::new();
        loop {
            // SAFETY: `b` is a datagram socket.
            match unsafe { rx.recv(b.as_raw_fd(), &mut buf) } {
                Ok(Received::One(f)) => got.push(f),
                Ok(Received::Nothing) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), sent.len());
        for (i, (f, (hdr, data))) in got.iter().zip(&sent).enumerate() {
            assert_eq!(f.offload, *hdr, "frame {i}");
            assert_eq!(f.data[..], data[..], "frame {i}");
        }
    }

    #[test]
    fn a_tag_the_kernel_took_off_goes_back_in_front_of_the_ethertype() {
        let mut frame = vec![0u8; HEADROOM];
        frame.extend([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x08, 0x00, 0x45]);
        let mut vnet = VnetHdr {
            flags: 1, // VIRTIO_NET_HDR_F_NEEDS_CSUM
            csum_start: 34,
            ..VnetHdr::default()
        };
        let start = put_back_tag(&mut frame, Some((0x8100, 10)), &mut vnet);
        assert_eq!(start, 0);
        assert_eq!(
            frame,
            [
                1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x81, 0x00, 0, 10, 0x08, 0x00, 0x45
            ]
        );
        assert_eq!(vnet.csum_start, 38, "offsets move with the tag");
        let mut untagged = vec![0u8; HEADROOM + 15];
        assert_eq!(put_back_tag(&mut untagged, None, &mut vnet), HEADROOM);
    }

    #[test]
    fn a_slot_whose_frame_is_gone_is_used_again() {
        let (a, b) = datagram_pair();
        let big = vec![7u8; VNET_HDR_LEN + KEEP_SLOT + 1];
        let (mut rx, mut buf) = (Receiver::new(1), RxBuf::default());
        let mut next = || {
            send_datagram(a.as_raw_fd(), &big);
            // SAFETY: `b` is a datagram socket.
            match unsafe { rx.recv(b.as_raw_fd(), &mut buf) } {
                Ok(Received::One(f)) => f,
                _ => panic!("no frame"),
            }
        };
        let first = next();
        let at = first.data.as_ptr();
        drop(first);
        let second = next();
        assert_eq!(second.data.as_ptr(), at, "the same memory, taken again");
        // Still held: the next frame gets other memory, and this one stays intact.
        let third = next();
        assert_ne!(third.data.as_ptr(), second.data.as_ptr());
        assert!(second.data.iter().all(|&b| b == 7));
    }
}
