//! Memory mappings (`mmap(2)`), unmapped (`munmap(2)`) when their owner drops them.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use super::{Result, SyscallError};

/// A readable and writable mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an `Mmap` is the only owner of its mapping (nothing else unmaps it), and the mapping
// is not tied to the thread that made it: moving the owner to another thread is sound.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` only hands out the pointer and length; the memory behind them is accessed by
// code with its own synchronisation (for AF_XDP: ring indices through atomics, each UMEM frame
// and ring slot owned by one side at a time, as the indices say).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// `len` bytes of private, zero-filled memory.
    ///
    /// # Errors
    ///
    /// `call` (`mmap(UMEM)`) with the OS error.
    pub(crate) fn anonymous(len: usize, call: &'static str) -> Result<Mmap> {
        Mmap::new(None, len, 0, call)
    }

    /// `len` bytes of what `fd` maps at `offset` (an AF_XDP ring...), shared with the kernel
    /// and populated at once.
    ///
    /// # Errors
    ///
    /// `call` with the OS error.
    pub(crate) fn shared(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: libc::off_t,
        call: &'static str,
    ) -> Result<Mmap> {
        Mmap::new(Some(fd), len, offset, call)
    }

    fn new(
        fd: Option<BorrowedFd<'_>>,
        len: usize,
        offset: libc::off_t,
        call: &'static str,
    ) -> Result<Mmap> {
        let (flags, fd) = match fd {
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd()),
        };
        // SAFETY: a new mapping at an address the kernel picks (null hint, no MAP_FIXED), so no
        // existing memory is affected; a bad fd, offset or length gives MAP_FAILED, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SyscallError::last(call));
        }
        // mmap(2) never maps page 0 on success (`vm.mmap_min_addr`), but a null would make
        // every pointer derived from it invalid: refused rather than assumed away.
        let ptr = NonNull::new(p.cast()).ok_or_else(|| SyscallError {
            call,
            source: std::io::Error::from_raw_os_error(libc::EFAULT),
        })?;
        Ok(Mmap { ptr, len })
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length asked for.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are what mmap returned and was asked for, and this is the
        // only unmap. Whoever derives pointers from the mapping keeps them no longer than the
        // `Mmap` (for AF_XDP: the `Ring` or UMEM that owns it).
        let r = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if r != 0 {
            // Only arguments mmap did not return fail: a bug, but nothing to undo here.
            tracing::error!(
                len = self.len,
                "munmap: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_mapping_is_zeroed_and_writable() {
        let m = Mmap::anonymous(8192, "mmap(test)").unwrap();
        assert_eq!(m.len(), 8192);
        // SAFETY: the mapping is 8192 readable and writable bytes, owned by `m`.
        let s = unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), m.len()) };
        assert!(s.iter().all(|&b| b == 0));
        s[8191] = 7;
        assert_eq!(s[8191], 7);
    }

    #[test]
    fn a_failed_mapping_names_the_call() {
        let e = Mmap::anonymous(0, "mmap(test)").unwrap_err();
        assert_eq!(
            (e.call, e.raw_os_error()),
            ("mmap(test)", Some(libc::EINVAL))
        );
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        use std::os::fd::AsFd;
        let e = Mmap::shared(a.as_fd(), 4096, 0, "mmap(ring)").unwrap_err();
        assert_eq!(e.call, "mmap(ring)");
    }
}
