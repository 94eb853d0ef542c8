//! Terminals: their echo turned off for as long as a password is typed (`tcgetattr(3)` and
//! `tcsetattr(3)`, the `TCGETS`/`TCSETS` ioctls).

use std::os::fd::{AsRawFd, OwnedFd};

use super::{Result, check};

/// A terminal whose echo is off, until this is dropped: then it gets back the modes it had.
#[derive(Debug)]
pub(crate) struct EchoOff {
    tty: OwnedFd,
    saved: libc::termios,
}

/// The modes of the terminal `tty`.
fn modes(tty: &OwnedFd) -> Result<libc::termios> {
    // SAFETY: termios is plain data (integers and an array of them), for which zeroes are valid.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `tty` is open for the call, and `t` is a live termios that tcgetattr only writes.
    let r = unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) };
    check(r, "tcgetattr")?;
    Ok(t)
}

/// Gives the terminal `tty` the modes `t`, at once (`TCSANOW`).
fn set_modes(tty: &OwnedFd, t: &libc::termios) -> Result<()> {
    // SAFETY: `tty` is open for the call, and `t` is a live termios that tcsetattr only reads.
    let r = unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, t) };
    check(r, "tcsetattr").map(drop)
}

impl EchoOff {
    /// Turns off the echo of the terminal `tty` (an open `/dev/tty`), which the guard keeps
    /// open until it has put the modes back.
    ///
    /// # Errors
    ///
    /// `tcgetattr` (`ENOTTY`: `tty` is no terminal) or `tcsetattr` with the OS error; the
    /// terminal's modes are then as they were.
    pub(crate) fn new(tty: OwnedFd) -> Result<EchoOff> {
        let saved = modes(&tty)?;
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        set_modes(&tty, &quiet)?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff {
    /// Puts back the modes the terminal had.
    ///
    /// A failure cannot be handled here: a drop cannot return it, and by then the password has
    /// been read (or reading it failed) and the command goes on without the terminal. On a
    /// terminal whose modes were just read and set, `tcsetattr` fails only when the terminal
    /// is gone (`EIO` after a hangup), and then there is no echo left to restore; the user of
    /// a terminal that stays quiet has `stty echo`. So it is logged, and nothing more: as a
    /// warning, which `etherws ctl` (no log subscriber) does not show.
    fn drop(&mut self) {
        if let Err(e) = set_modes(&self.tty, &self.saved) {
            tracing::warn!("cannot turn the terminal's echo back on: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::os::fd::FromRawFd;

    /// A pseudo-terminal: its controller, and its terminal end, open.
    fn pty() -> (OwnedFd, OwnedFd) {
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: posix_openpt takes no pointers.
        let controller = unsafe { libc::posix_openpt(flags) };
        assert!(
            controller >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `controller` was just opened, and is owned by nothing else.
        let controller = unsafe { OwnedFd::from_raw_fd(controller) };
        // SAFETY: grantpt and unlockpt take a descriptor, open.
        unsafe {
            assert_eq!(libc::grantpt(controller.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(controller.as_raw_fd()), 0);
        }
        let mut name = [0 as libc::c_char; 64];
        // SAFETY: `name` is a live array of its length, which ptsname_r fills NUL-terminated.
        let r = unsafe { libc::ptsname_r(controller.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(r, 0);
        // SAFETY: ptsname_r succeeded: `name` holds a NUL-terminated path.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) };
        let tty = super::super::fd::open(name, flags, "open(pts)").unwrap();
        (controller, tty)
    }

    fn echoes(tty: &OwnedFd) -> bool {
        modes(tty).unwrap().c_lflag & libc::ECHO != 0
    }

    #[test]
    fn echo_is_off_while_the_guard_lives_and_back_after() {
        let (_controller, tty) = pty();
        assert!(echoes(&tty), "a new terminal echoes");
        let before = modes(&tty).unwrap();
        let guard = EchoOff::new(tty.try_clone().unwrap()).unwrap();
        assert!(!echoes(&tty));
        let during = modes(&tty).unwrap();
        assert_eq!(
            during.c_lflag,
            before.c_lflag & !libc::ECHO,
            "only ECHO changes"
        );
        drop(guard);
        assert!(echoes(&tty));
        assert_eq!(modes(&tty).unwrap().c_lflag, before.c_lflag);
    }

    #[test]
    fn what_is_not_a_terminal_names_the_call() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let e = EchoOff::new(a.into()).unwrap_err();
        assert_eq!(
            (e.call, e.raw_os_error()),
            ("tcgetattr", Some(libc::ENOTTY))
        );
    }
}
