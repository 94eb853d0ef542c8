//! The operating system's interfaces: raw system calls and netlink.
//!
//! Every system call and `ioctl` the switch makes by hand is wrapped here, once, behind a safe
//! function (or an `unsafe fn` where the caller hands over raw memory, or must keep a contract
//! the call cannot check, like `fork`'s single thread, with its contract in a `# Safety`
//! section), so that `unsafe` code talking to the kernel lives in this module. What
//! stays outside is memory the kernel fills in, each access with its `// SAFETY:` reasoning:
//! the rings and UMEM of AF_XDP sockets (`offload::xsk`) and the receive buffers of device
//! ports (`port::fd`'s blocks, `port::netdev`'s `recvmmsg` slots). Each wrapper checks the
//! call's result and fails with a [`SyscallError`] that names the call, as aya's `sys` does.
//!
//! - [`fd`]: `open`, `read`/`write`, `readv`/`writev`, `fcntl`, registration with tokio;
//! - [`socket`]: `socket`, `bind`, typed `setsockopt`/`getsockopt`, `sendto`/`recv`,
//!   `recvmmsg`/`sendmmsg`;
//! - [`mmap`]: mappings unmapped on drop;
//! - [`tun`]: the TUN/TAP `ioctl`s;
//! - [`process`]: the start-up pipe, `fork` and `setsid` of a daemon, the standard streams on
//!   `/dev/null`, the limit on open files (`getrlimit`/`setrlimit`);
//! - [`term`]: a terminal's echo turned off while a password is typed (`tcgetattr`/`tcsetattr`);
//! - [`time`]: the monotonic clock the kernel stamps eBPF map entries with;
//! - [`netif`]: interfaces through rtnetlink;
//! - [`ethtool`]: what a driver says of itself (`SIOCETHTOOL`: its name, GRO/GSO/TSO);
//! - [`kernel_release`] here: the running kernel's release (`uname`).

pub(crate) mod ethtool;
pub(crate) mod fd;
pub(crate) mod mmap;
pub(crate) mod netif;
pub(crate) mod process;
pub(crate) mod socket;
pub(crate) mod term;
pub(crate) mod time;
pub(crate) mod tun;

use std::fmt;
use std::io;

/// A system call that failed: which one (`setsockopt(SO_RCVTIMEO)`, `mmap(UMEM)`...) and the
/// operating system's error.
///
/// Displayed as `call: error`. The OS error is part of the message, so it is not also given
/// as [`source`](std::error::Error::source): a chain printed with anyhow's `{:#}` shows it
/// once.
#[derive(Debug)]
pub(crate) struct SyscallError {
    /// The call, with what tells it apart where it matters (`socket(AF_XDP)`).
    pub(crate) call: &'static str,
    /// What the kernel said.
    pub(crate) source: io::Error,
}

impl SyscallError {
    /// The error `call` just left in `errno`.
    pub(crate) fn last(call: &'static str) -> SyscallError {
        SyscallError {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// Names `source` as the error of `call` (for `map_err`).
    pub(crate) fn of(call: &'static str) -> impl FnOnce(io::Error) -> SyscallError {
        move |source| SyscallError { call, source }
    }

    /// The kind of the OS error (`WouldBlock`, `Interrupted`...).
    pub(crate) fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The OS error number, if the error came from the OS.
    pub(crate) fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for SyscallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.source)
    }
}

impl std::error::Error for SyscallError {}

/// What a wrapper returns.
pub(crate) type Result<T> = std::result::Result<T, SyscallError>;

/// The running kernel's release (`uname -r`: `6.8.0-45-generic`).
///
/// # Errors
///
/// `uname` with the OS error.
pub(crate) fn kernel_release() -> Result<String> {
    // SAFETY: `utsname` is made of byte arrays: all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) writes one `utsname`, which `u` is, live for the call.
    check(unsafe { libc::uname(&mut u) }, "uname")?;
    let bytes: Vec<u8> = u.release.iter().map(|&c| c as u8).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// A C-style return value: negative means failure, with the cause in `errno`.
fn check<T: Default + PartialOrd>(ret: T, call: &'static str) -> Result<T> {
    if ret < T::default() {
        Err(SyscallError::last(call))
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_call_then_the_os_error() {
        let e = SyscallError {
            call: "setsockopt(SO_RCVTIMEO)",
            source: io::Error::from_raw_os_error(libc::EBADF),
        };
        let os = io::Error::from_raw_os_error(libc::EBADF).to_string();
        assert_eq!(e.to_string(), format!("setsockopt(SO_RCVTIMEO): {os}"));
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // Shown once in a chain: the OS error is in the message, not a source.
        assert!(std::error::Error::source(&e).is_none());
        let chain = format!("{:#}", anyhow::Error::from(e).context("cannot do it"));
        assert_eq!(
            chain,
            format!("cannot do it: setsockopt(SO_RCVTIMEO): {os}")
        );
    }

    #[test]
    fn the_kernel_release_starts_with_its_version() {
        let r = kernel_release().unwrap();
        assert!(r.starts_with(|c: char| c.is_ascii_digit()), "{r}");
        assert!(r.contains('.'), "{r}");
    }

    #[test]
    fn check_passes_non_negative_values_and_names_failures() {
        assert_eq!(check(3, "x").unwrap(), 3);
        assert_eq!(check(0isize, "x").unwrap(), 0);
        // errno is whatever the last failed call left; make one fail for certain.
        // SAFETY: close(2) of a descriptor that cannot be open only fails with EBADF.
        let r = unsafe { libc::close(-1) };
        let e = check(r, "close").unwrap_err();
        assert_eq!(e.call, "close");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
