//! Sockets: `socket`, `bind`, typed socket options, datagrams in and out, and the batched
//! `recvmmsg`/`sendmmsg` of packet sockets.

use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::fd::owned;
use super::{Result, check};

/// `socket(2)`; `call` names it in errors (`socket(AF_PACKET)`). Add `SOCK_CLOEXEC` to `ty`.
///
/// # Errors
///
/// `call` with the OS error.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
    call: &'static str,
) -> Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    owned(unsafe { libc::socket(domain, ty, protocol) }, call)
}

/// A socket option whose value is a `T`, with the names of its calls.
#[derive(Debug)]
pub(crate) struct Opt<T> {
    level: libc::c_int,
    name: libc::c_int,
    set: &'static str,
    get: &'static str,
    value: PhantomData<fn() -> T>,
}

// Not derived: `T` itself need not be `Copy`.
impl<T> Clone for Opt<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Opt<T> {}

/// Declares the socket options the switch uses, each with its level and value type.
macro_rules! options {
    ($($(#[$doc:meta])* $name:ident: $t:ty = $level:expr, $opt:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) const $name: Opt<$t> = Opt {
            level: $level,
            name: $opt,
            set: concat!("setsockopt(", stringify!($name), ")"),
            get: concat!("getsockopt(", stringify!($name), ")"),
            value: PhantomData,
        };
    )*};
}

/// `<linux/if_packet.h>`: prefix every frame, both ways, with a `struct virtio_net_hdr`.
const PACKET_VNET_HDR_OPT: libc::c_int = 15;

/// `<linux/tcp.h>`: room for a congestion control algorithm's name, its final NUL included.
pub(crate) const TCP_CA_NAME_MAX: usize = 16;

/// A congestion control algorithm's name as `TCP_CONGESTION` takes and gives it: NUL-padded.
pub(crate) type CaName = [u8; TCP_CA_NAME_MAX];

options! {
    /// How long a `recv` waits before it fails with `EAGAIN`.
    SO_RCVTIMEO: libc::timeval = libc::SOL_SOCKET, libc::SO_RCVTIMEO;
    /// Receive buffer, in bytes (the kernel doubles what it is given, for its overhead, and
    /// caps it at `net.core.rmem_max`); read back, the doubled size in effect.
    SO_RCVBUF: libc::c_int = libc::SOL_SOCKET, libc::SO_RCVBUF;
    /// [`SO_RCVBUF`] past `net.core.rmem_max`: needs `CAP_NET_ADMIN` (`EPERM` without).
    SO_RCVBUFFORCE: libc::c_int = libc::SOL_SOCKET, libc::SO_RCVBUFFORCE;
    /// The mark of every packet the socket sends (`skb->mark`); needs `CAP_NET_ADMIN`.
    SO_MARK: u32 = libc::SOL_SOCKET, libc::SO_MARK;
    /// A classic BPF socket filter (replaced by a later one, eBPF's `SO_ATTACH_BPF` included).
    SO_ATTACH_FILTER: libc::sock_fprog = libc::SOL_SOCKET, libc::SO_ATTACH_FILTER;
    /// Packet socket: frames received and frames dropped (the receive buffer was full) since
    /// the last read; reading it starts both again from zero.
    PACKET_STATISTICS: libc::tpacket_stats = libc::SOL_PACKET, libc::PACKET_STATISTICS;
    /// Packet socket: a `virtio_net_hdr` in front of every frame, both ways.
    PACKET_VNET_HDR: libc::c_int = libc::SOL_PACKET, PACKET_VNET_HDR_OPT;
    /// Packet socket: a membership (promiscuous mode...), undone when the socket closes.
    PACKET_ADD_MEMBERSHIP: libc::packet_mreq = libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP;
    /// Packet socket: a `tpacket_auxdata` control message with every frame.
    PACKET_AUXDATA: libc::c_int = libc::SOL_PACKET, libc::PACKET_AUXDATA;
    /// TCP: the unsent bytes above which the socket is not writable (0: the system's
    /// `net.ipv4.tcp_notsent_lowat`).
    TCP_NOTSENT_LOWAT: libc::c_int = libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT;
    /// TCP: the congestion control algorithm, by name (at most 15 bytes, NUL-padded).
    TCP_CONGESTION: CaName = libc::IPPROTO_TCP, libc::TCP_CONGESTION;
    /// AF_XDP: the UMEM.
    XDP_UMEM_REG: libc::xdp_umem_reg = libc::SOL_XDP, libc::XDP_UMEM_REG;
    /// AF_XDP: entries of the fill ring.
    XDP_UMEM_FILL_RING: libc::c_int = libc::SOL_XDP, libc::XDP_UMEM_FILL_RING;
    /// AF_XDP: entries of the completion ring.
    XDP_UMEM_COMPLETION_RING: libc::c_int = libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING;
    /// AF_XDP: entries of the RX ring.
    XDP_RX_RING: libc::c_int = libc::SOL_XDP, libc::XDP_RX_RING;
    /// AF_XDP: entries of the TX ring.
    XDP_TX_RING: libc::c_int = libc::SOL_XDP, libc::XDP_TX_RING;
    /// AF_XDP: where the rings lie in the socket's mappings.
    XDP_MMAP_OFFSETS: libc::xdp_mmap_offsets = libc::SOL_XDP, libc::XDP_MMAP_OFFSETS;
}

/// `setsockopt(2)` of `opt` to `val`.
///
/// # Errors
///
/// `setsockopt(NAME)` with the OS error.
pub(crate) fn setsockopt<T>(fd: BorrowedFd<'_>, opt: Opt<T>, val: &T) -> Result<()> {
    // SAFETY: `val` is a live `T` and the size passed is its own; setsockopt(2) only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            opt.level,
            opt.name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(r, opt.set).map(drop)
}

/// Plain C data: every bit pattern is a valid value, so it may start all zeroes and the kernel
/// may fill it in.
///
/// # Safety
///
/// Implement it only for types made of integers and raw pointers (and arrays, structs and
/// unions of them).
pub(crate) unsafe trait Plain: Sized {
    /// All zeroes.
    fn zeroed() -> Self {
        // SAFETY: the implementer promises every bit pattern, all zeroes included, is valid.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: an integer.
unsafe impl Plain for libc::c_int {}
// SAFETY: an array of bytes.
unsafe impl Plain for CaName {}
// SAFETY: structs of u64 offsets.
unsafe impl Plain for libc::xdp_mmap_offsets {}
// SAFETY: two integers.
unsafe impl Plain for libc::tpacket_stats {}
// SAFETY: integers and a byte array.
unsafe impl Plain for libc::sockaddr_ll {}
// SAFETY: integers.
unsafe impl Plain for libc::sockaddr_nl {}
// SAFETY: integers and a byte array.
unsafe impl Plain for libc::packet_mreq {}
// SAFETY: integers and raw pointers (null when zero).
unsafe impl Plain for libc::mmsghdr {}
// SAFETY: a byte array and a union of integers, byte arrays and structs of them.
unsafe impl Plain for libc::ifreq {}

/// `getsockopt(2)` of `opt`.
///
/// # Errors
///
/// `getsockopt(NAME)` with the OS error.
pub(crate) fn getsockopt<T: Plain>(fd: BorrowedFd<'_>, opt: Opt<T>) -> Result<T> {
    let mut val = T::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is writable for `len` bytes (its own size) and `len` is a live socklen_t
    // that the kernel updates; any bytes it writes make a valid `T` (`Plain`).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            opt.level,
            opt.name,
            (&raw mut val).cast(),
            &mut len,
        )
    };
    check(r, opt.get).map(|_| val)
}

/// A socket address the kernel reads as a whole (`bind`, `sendto`).
pub(crate) trait SockAddr: private::Sealed {}
impl SockAddr for libc::sockaddr_ll {}
impl SockAddr for libc::sockaddr_nl {}
impl SockAddr for libc::sockaddr_xdp {}

mod private {
    pub(crate) trait Sealed {}
    impl Sealed for libc::sockaddr_ll {}
    impl Sealed for libc::sockaddr_nl {}
    impl Sealed for libc::sockaddr_xdp {}
}

/// `bind(2)` to `addr`.
///
/// # Errors
///
/// `call` (`bind(AF_PACKET)`) with the OS error.
pub(crate) fn bind<A: SockAddr>(fd: BorrowedFd<'_>, addr: &A, call: &'static str) -> Result<()> {
    // SAFETY: `addr` is a live socket address and the length given is its size; bind only
    // reads it.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const A).cast(),
            size_of::<A>() as libc::socklen_t,
        )
    };
    check(r, call).map(drop)
}

/// `sendto(2)` of `buf` to `to` (a connected or AF_XDP socket: `None`); returns the bytes sent.
///
/// # Errors
///
/// `call` with the OS error.
pub(crate) fn sendto<A: SockAddr>(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    flags: libc::c_int,
    to: Option<&A>,
    call: &'static str,
) -> Result<usize> {
    let (addr, len) = match to {
        Some(a) => ((a as *const A).cast(), size_of::<A>() as libc::socklen_t),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `buf` is readable for its length and `addr`, if not null, is a live socket
    // address of `len` bytes; sendto(2) only reads both.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
            addr,
            len,
        )
    };
    check(n, call).map(|n| n as usize)
}

/// `recv(2)` of one datagram into `buf`; returns its length (at most `buf.len()`).
///
/// # Errors
///
/// `call` with the OS error.
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
    call: &'static str,
) -> Result<usize> {
    // SAFETY: `buf` is writable for its length, and recv(2) writes nowhere else.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    check(n, call).map(|n| n as usize)
}

/// Hands `each` the `tpacket_auxdata` of every `PACKET_AUXDATA` control message of `msg`, a
/// header a packet socket's `recvmsg`/`recvmmsg` filled in with `PACKET_AUXDATA` on.
///
/// # Safety
///
/// `msg.msg_control` and `msg.msg_controllen` must describe a live buffer as the kernel set
/// them (control messages it wrote), or be null and zero.
pub(crate) unsafe fn packet_auxdata(
    msg: &libc::msghdr,
    mut each: impl FnMut(libc::tpacket_auxdata),
) {
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return headers within `msg_control` and
    // `msg_controllen` (the caller's promise of a live buffer), or null; a PACKET_AUXDATA
    // message carries a tpacket_auxdata, read unaligned from its data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                each(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// `recvmmsg(2)`: receives up to `msgs.len()` datagrams, each into the buffers its header
/// describes; returns how many. No timeout.
///
/// # Safety
///
/// Each header's iovecs and control buffer must describe memory valid for writes of their
/// lengths, for the call.
///
/// # Errors
///
/// `recvmmsg` with the OS error.
pub(crate) unsafe fn recvmmsg(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> Result<usize> {
    // SAFETY: the caller guarantees what each header points at; the headers themselves are a
    // live, writable slice of the length passed.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    check(n, "recvmmsg").map(|n| n as usize)
}

/// `sendmmsg(2)`: sends up to `msgs.len()` datagrams; returns how many were sent (the kernel
/// stops at the first it refuses, whose error the next call returns).
///
/// # Safety
///
/// Each header's iovecs must describe memory valid for reads of their lengths, for the call;
/// no address, no control data (or valid ones).
///
/// # Errors
///
/// `sendmmsg` with the OS error.
pub(crate) unsafe fn sendmmsg(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> Result<usize> {
    // SAFETY: the caller guarantees what each header points at; sendmmsg(2) only reads that
    // and writes each header's `msg_len`, in a live, writable slice of the length passed.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, flags) };
    check(n, "sendmmsg").map(|n| n as usize)
}

/// `socketpair(2)`: two connected sockets.
///
/// # Errors
///
/// `socketpair` with the OS error.
#[cfg(test)]
pub(crate) fn socketpair(domain: libc::c_int, ty: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: socketpair(2) writes two descriptors into `fds`, which is writable for both.
    let r = unsafe { libc::socketpair(domain, ty, 0, fds.as_mut_ptr()) };
    check(r, "socketpair")?;
    // Both are fresh descriptors nobody else owns.
    Ok((owned(fds[0], "socketpair")?, owned(fds[1], "socketpair")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK).expect("socketpair")
    }

    #[test]
    fn datagrams_go_through_a_socketpair() {
        let (a, b) = pair();
        let n = sendto::<libc::sockaddr_nl>(a.as_fd(), b"ping", 0, None, "sendto").unwrap();
        assert_eq!(n, 4);
        let mut buf = [0u8; 16];
        assert_eq!(recv(b.as_fd(), &mut buf, 0, "recv").unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
        let e = recv(b.as_fd(), &mut buf, 0, "recv(test)").unwrap_err();
        assert_eq!(
            (e.call, e.kind()),
            ("recv(test)", io::ErrorKind::WouldBlock)
        );
    }

    #[test]
    fn a_receive_timeout_is_accepted() {
        let (a, _b) = pair();
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        setsockopt(a.as_fd(), SO_RCVTIMEO, &tv).unwrap();
    }

    #[test]
    fn an_option_the_socket_does_not_know_names_the_call() {
        let (a, _b) = pair();
        // A Unix socket has no packet-socket options.
        let e = setsockopt(a.as_fd(), PACKET_AUXDATA, &1).unwrap_err();
        assert_eq!(e.call, "setsockopt(PACKET_AUXDATA)");
        assert!(
            e.to_string().starts_with("setsockopt(PACKET_AUXDATA): "),
            "{e}"
        );
        let e = getsockopt(a.as_fd(), XDP_MMAP_OFFSETS).unwrap_err();
        assert_eq!(e.call, "getsockopt(XDP_MMAP_OFFSETS)");
    }

    /// A connected TCP socket on loopback (the listener's end dropped: the options stay).
    fn tcp() -> std::net::TcpStream {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap()
    }

    #[test]
    fn tcp_options_are_set_and_read_back() {
        let s = tcp();
        setsockopt(s.as_fd(), TCP_NOTSENT_LOWAT, &(128 << 10)).unwrap();
        assert_eq!(getsockopt(s.as_fd(), TCP_NOTSENT_LOWAT).unwrap(), 128 << 10);
        // Whatever the system's default is, it has a name, and setting that name keeps it.
        let name = getsockopt(s.as_fd(), TCP_CONGESTION).unwrap();
        assert!(name[0].is_ascii_alphanumeric(), "{name:?}");
        assert_eq!(name[TCP_CA_NAME_MAX - 1], 0, "{name:?}");
        setsockopt(s.as_fd(), TCP_CONGESTION, &name).unwrap();
        assert_eq!(getsockopt(s.as_fd(), TCP_CONGESTION).unwrap(), name);
        let mut bogus = [0u8; TCP_CA_NAME_MAX];
        bogus[..13].copy_from_slice(b"nonexistent_c");
        let e = setsockopt(s.as_fd(), TCP_CONGESTION, &bogus).unwrap_err();
        assert_eq!(e.call, "setsockopt(TCP_CONGESTION)");
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOENT), "{e}");
    }

    #[test]
    fn a_receive_buffer_is_set_and_read_back_doubled() {
        let (a, _b) = pair();
        setsockopt(a.as_fd(), SO_RCVBUF, &65536).unwrap();
        // The kernel keeps twice what it was given (its bookkeeping), below rmem_max.
        assert_eq!(getsockopt(a.as_fd(), SO_RCVBUF).unwrap(), 2 * 65536);
        let e = getsockopt(a.as_fd(), PACKET_STATISTICS).unwrap_err();
        assert_eq!(e.call, "getsockopt(PACKET_STATISTICS)");
    }

    #[test]
    fn bind_of_a_foreign_address_family_names_the_call() {
        let (a, _b) = pair();
        let mut nl = libc::sockaddr_nl::zeroed();
        nl.nl_family = libc::AF_NETLINK as u16;
        let e = bind(a.as_fd(), &nl, "bind(test)").unwrap_err();
        assert_eq!(e.call, "bind(test)");
    }

    #[test]
    fn batches_go_out_and_in_whole() {
        let (a, b) = pair();
        let data: Vec<[u8; 3]> = (0..4u8).map(|i| [i; 3]).collect();
        let mut iovs: Vec<libc::iovec> = data
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr().cast_mut().cast(),
                iov_len: d.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                let mut m = libc::mmsghdr::zeroed();
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: each header points at one iovec describing a live array.
        assert_eq!(unsafe { sendmmsg(a.as_raw_fd(), &mut msgs, 0) }.unwrap(), 4);
        let mut bufs = [[0u8; 8]; 4];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        for (m, iov) in msgs.iter_mut().zip(&mut iovs) {
            m.msg_hdr.msg_iov = iov;
            m.msg_len = 0;
        }
        // SAFETY: each header points at one iovec describing a live, writable array.
        assert_eq!(unsafe { recvmmsg(b.as_raw_fd(), &mut msgs, 0) }.unwrap(), 4);
        for (i, (m, b)) in msgs.iter().zip(&bufs).enumerate() {
            assert_eq!(m.msg_len, 3);
            assert_eq!(&b[..3], &[i as u8; 3]);
        }
        // SAFETY: as above; nothing is waiting.
        let e = unsafe { recvmmsg(b.as_raw_fd(), &mut msgs, 0) }.unwrap_err();
        assert_eq!((e.call, e.kind()), ("recvmmsg", io::ErrorKind::WouldBlock));
    }
}
