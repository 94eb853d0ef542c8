//! Descriptors: opening, reading and writing, flags, and registration with tokio's reactor.
//!
//! The reads and writes take a [`RawFd`], as the ports' non-blocking loops hold one: a
//! descriptor that is not open only makes the call fail (`EBADF`).

use std::ffi::CStr;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use super::{Result, SyscallError, check};

/// Takes ownership of the descriptor a call returned, or fails with its error.
pub(super) fn owned(raw: libc::c_int, call: &'static str) -> Result<OwnedFd> {
    let raw = check(raw, call)?;
    // SAFETY: `raw` is a descriptor the kernel has just returned (checked above): open, and
    // owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `open(2)` of `path`, with `flags` (`O_RDWR | O_NONBLOCK`...; add `O_CLOEXEC`).
///
/// # Errors
///
/// `call` (e.g. `open(/dev/net/tun)`) with the OS error.
pub(crate) fn open(path: &CStr, flags: libc::c_int, call: &'static str) -> Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string, live for the call, which only reads it.
    owned(unsafe { libc::open(path.as_ptr(), flags) }, call)
}

/// `read(2)` into `len` bytes at `ptr`; returns how many were read.
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes.
///
/// # Errors
///
/// `read` with the OS error (`WouldBlock` on a non-blocking descriptor with nothing to read).
pub(crate) unsafe fn read(fd: RawFd, ptr: *mut u8, len: usize) -> Result<usize> {
    // SAFETY: the caller guarantees `len` writable bytes at `ptr`, and read(2) writes at most
    // `len` bytes there; a bad `fd` only makes it fail.
    let n = unsafe { libc::read(fd, ptr.cast(), len) };
    check(n, "read").map(|n| n as usize)
}

/// `write(2)` of `buf`; returns how many bytes were written.
///
/// # Errors
///
/// `write` with the OS error.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> Result<usize> {
    // SAFETY: `buf` is a live slice, readable for its whole length, and write(2) only reads
    // it; a bad `fd` only makes it fail.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    check(n, "write").map(|n| n as usize)
}

/// `readv(2)` into the buffers `iov` describes; returns how many bytes were read.
///
/// # Safety
///
/// Each iovec must describe memory valid for writes of its length, for the call.
///
/// # Errors
///
/// `readv` with the OS error.
pub(crate) unsafe fn readv(fd: RawFd, iov: &[libc::iovec]) -> Result<usize> {
    // SAFETY: the caller guarantees each iovec describes writable memory; readv(2) writes
    // nowhere else and only reads the `iov` array, live for the call.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    check(n, "readv").map(|n| n as usize)
}

/// `writev(2)` of `bufs`, one after the other; returns how many bytes were written.
///
/// # Errors
///
/// `writev` with the OS error.
pub(crate) fn writev(fd: RawFd, bufs: &[IoSlice<'_>]) -> Result<usize> {
    // SAFETY: an IoSlice is ABI-compatible with an iovec on Unix, and each describes a live
    // slice; writev(2) only reads them.
    let n = unsafe { libc::writev(fd, bufs.as_ptr().cast(), bufs.len() as libc::c_int) };
    check(n, "writev").map(|n| n as usize)
}

/// Makes `fd` non-blocking (`fcntl(2)`: `F_GETFL`, then `F_SETFL` with `O_NONBLOCK`).
///
/// # Errors
///
/// `fcntl(F_GETFL)` or `fcntl(F_SETFL)` with the OS error.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: F_GETFL takes no pointer; `fd` is open (borrowed).
    let flags = check(
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) },
        "fcntl(F_GETFL)",
    )?;
    // SAFETY: F_SETFL takes its flags by value; `fd` is open (borrowed).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    check(r, "fcntl(F_SETFL)").map(drop)
}

/// Registers `fd` with the tokio reactor of the current runtime, which then reports when it is
/// readable or writable; the descriptor is closed when the [`AsyncFd`] is dropped.
///
/// # Errors
///
/// `epoll_ctl(EPOLL_CTL_ADD)` with the OS error.
///
/// # Panics
///
/// Outside a tokio runtime (as [`AsyncFd::new`]).
pub(crate) fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd moves into the AsyncFd: it stays open, the same descriptor, until
    // the AsyncFd drops it.
    unsafe { AsyncFd::register(fd) }
        .map_err(|e| SyscallError::of("epoll_ctl(EPOLL_CTL_ADD)")(e.into_parts().1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    /// Whether `fd` is non-blocking.
    fn is_nonblocking(fd: impl AsFd) -> Result<bool> {
        // SAFETY: F_GETFL takes no pointer; `fd` is open (borrowed).
        let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFL) };
        check(flags, "fcntl(F_GETFL)").map(|f| f & libc::O_NONBLOCK != 0)
    }

    #[test]
    fn a_bad_descriptor_fails_with_the_call_named() {
        let e = write(-1, b"x").unwrap_err();
        assert_eq!((e.call, e.raw_os_error()), ("write", Some(libc::EBADF)));
        let mut b = [0u8; 4];
        // SAFETY: `b` is writable for its length.
        let e = unsafe { read(-1, b.as_mut_ptr(), b.len()) }.unwrap_err();
        assert_eq!((e.call, e.raw_os_error()), ("read", Some(libc::EBADF)));
        assert!(e.to_string().starts_with("read: "), "{e}");
        let e = writev(-1, &[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.call, "writev");
    }

    #[test]
    fn open_names_the_call_it_was_given() {
        let e = open(c"/nonexistent/etherws", libc::O_RDONLY, "open(test)").unwrap_err();
        assert_eq!(e.call, "open(test)");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn write_readv_and_writev_move_bytes_over_a_socketpair() {
        let (a, b) = UnixDatagram::pair().unwrap();
        assert_eq!(write(a.as_raw_fd(), b"hello").unwrap(), 5);
        let (mut head, mut tail) = ([0u8; 2], [0u8; 8]);
        let iov = [
            libc::iovec {
                iov_base: head.as_mut_ptr().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: tail.as_mut_ptr().cast(),
                iov_len: tail.len(),
            },
        ];
        // SAFETY: both iovecs describe live, writable arrays.
        assert_eq!(unsafe { readv(b.as_raw_fd(), &iov) }.unwrap(), 5);
        assert_eq!((&head, &tail[..3]), (b"he", &b"llo"[..]));
        let n = writev(b.as_raw_fd(), &[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).unwrap();
        assert_eq!(n, 4);
        let mut got = [0u8; 8];
        // SAFETY: `got` is writable for its length.
        let n = unsafe { read(a.as_raw_fd(), got.as_mut_ptr(), got.len()) }.unwrap();
        assert_eq!(&got[..n], b"abcd");
    }

    #[test]
    fn set_nonblocking_makes_an_empty_read_would_block() {
        let (_a, b) = UnixDatagram::pair().unwrap();
        assert!(!is_nonblocking(&b).unwrap());
        set_nonblocking(b.as_fd()).unwrap();
        assert!(is_nonblocking(&b).unwrap());
        let mut buf = [0u8; 4];
        // SAFETY: `buf` is writable for its length.
        let e = unsafe { read(b.as_raw_fd(), buf.as_mut_ptr(), buf.len()) }.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
