//! The TUN/TAP driver's `ioctl`s on a descriptor of `/dev/net/tun`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::socket::Plain;
use super::{Result, check};

/// `TUNSETIFF`: makes the descriptor the device `name` (the kernel picks one for an empty
/// name), of kind and options `flags` (`IFF_TAP | IFF_NO_PI`...); returns the device's name.
/// `name` is cut at `IFNAMSIZ - 1` bytes.
///
/// # Errors
///
/// `ioctl(TUNSETIFF)` with the OS error.
pub(crate) fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> Result<String> {
    let mut ifr = libc::ifreq::zeroed();
    // The last byte stays NUL.
    let room = ifr.ifr_name.len() - 1;
    for (d, s) in ifr.ifr_name[..room].iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is, live for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    check(r, "ioctl(TUNSETIFF)")?;
    // SAFETY: the array ends in NUL (the last byte was left zero, and the kernel
    // NUL-terminates the name it writes back within IFNAMSIZ).
    let name = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// `TUNSETOFFLOAD`: the offloads (`TUN_F_*`) the device's reader takes.
///
/// # Errors
///
/// `ioctl(TUNSETOFFLOAD)` with the OS error (`EINVAL` for flags this kernel does not know).
pub(crate) fn set_offload(fd: BorrowedFd<'_>, offloads: libc::c_uint) -> Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is passed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads) };
    check(r, "ioctl(TUNSETOFFLOAD)").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn an_ioctl_on_a_descriptor_that_is_not_a_tun_names_the_call() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let e = set_iff(a.as_fd(), "etherws-test", libc::IFF_TAP).unwrap_err();
        assert_eq!(e.call, "ioctl(TUNSETIFF)");
        let e = set_offload(a.as_fd(), libc::TUN_F_CSUM).unwrap_err();
        assert_eq!(e.call, "ioctl(TUNSETOFFLOAD)");
        assert!(e.to_string().starts_with("ioctl(TUNSETOFFLOAD): "), "{e}");
    }
}
