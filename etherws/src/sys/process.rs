//! The process itself: the start-up pipe and `fork(2)` of a daemon, a new session, the standard
//! streams on `/dev/null`, and the limit on open files.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::fd::open;
use super::{Result, check};

/// A pipe: its read end, then its write end, both close-on-exec (`pipe2(2)` with `O_CLOEXEC`).
///
/// # Errors
///
/// `pipe` with the OS error (`EMFILE`...).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two ints, the only memory pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r, "pipe")?;
    // SAFETY: pipe2 succeeded (checked above): both descriptors are open, and owned by nothing
    // else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Which side of a [`fork`] this is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fork {
    /// The new process.
    Child,
    /// The process that called `fork`, with the child's id.
    Parent(libc::pid_t),
}

/// `fork(2)`: a copy of this process, which goes on from here in both.
///
/// # Safety
///
/// The child is a copy of the calling thread only. The process must have one thread (the
/// caller's), so that no lock (of the allocator, of stdio...) is held in the child by a thread
/// that does not exist there; or else the child must call only async-signal-safe functions
/// until it calls `_exit` or `execve`. Nothing here can check it: there is no call that says
/// how many threads a process has (only `/proc`, which need not be mounted).
///
/// # Errors
///
/// `fork` with the OS error (`EAGAIN`: too many processes; `ENOMEM`).
pub(crate) unsafe fn fork() -> Result<Fork> {
    // SAFETY: fork takes no arguments; what the child may do is the caller's contract.
    match check(unsafe { libc::fork() }, "fork")? {
        0 => Ok(Fork::Child),
        child => Ok(Fork::Parent(child)),
    }
}

/// `setsid(2)`: makes this process the leader of a new session and process group, without a
/// controlling terminal; returns the session's id.
///
/// # Errors
///
/// `setsid` with the OS error: `EPERM` if the process leads a process group already (a child
/// just forked never does).
pub(crate) fn setsid() -> Result<libc::pid_t> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() }, "setsid")
}

/// Ignores SIGHUP (`signal(2)` with `SIG_IGN`) until the switch takes it as "reload": one
/// sent while it starts (`systemctl reload` right after `start`) must not kill it.
///
/// # Errors
///
/// `signal(SIGHUP)` with the OS error (none for a valid signal).
pub(crate) fn ignore_hangup() -> Result<()> {
    // SAFETY: SIG_IGN is a valid disposition for SIGHUP: no handler of ours runs.
    let previous = unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    check(
        if previous == libc::SIG_ERR { -1 } else { 0 },
        "signal(SIGHUP)",
    )
    .map(drop)
}

/// Points standard input, output and error at `/dev/null` (`open(2)`, then `dup2(2)` onto
/// descriptors 0, 1 and 2).
///
/// # Errors
///
/// `open(/dev/null)` or `dup2` with the OS error.
pub(crate) fn stdio_to_dev_null() -> Result<()> {
    let null = open(
        c"/dev/null",
        libc::O_RDWR | libc::O_CLOEXEC,
        "open(/dev/null)",
    )?;
    for fd in 0..=2 {
        // SAFETY: `null` is open; dup2 replaces `fd` atomically. Descriptors 0 to 2 are the
        // standard streams, which no `OwnedFd` of the program owns: Rust's runtime keeps them
        // open from the start (on /dev/null if they were closed), so nothing else is closed
        // under its owner. The new descriptors are not close-on-exec (dup2 clears the flag).
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) }, "dup2")?;
    }
    Ok(())
}

/// A limit on a resource: what the process may use now (`soft`), and how far it may raise
/// that itself (`hard`). `RLIM_INFINITY` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) soft: u64,
    pub(crate) hard: u64,
}

/// The limit on open files (`getrlimit(RLIMIT_NOFILE)`).
///
/// # Errors
///
/// `getrlimit(RLIMIT_NOFILE)` with the OS error (which Linux never gives for a valid pointer).
pub(crate) fn open_files_limit() -> Result<Limit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live, writable rlimit, the only memory getrlimit writes.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    check(r, "getrlimit(RLIMIT_NOFILE)")?;
    Ok(Limit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Sets the limit on open files (`setrlimit(RLIMIT_NOFILE)`).
///
/// # Errors
///
/// `setrlimit(RLIMIT_NOFILE)` with the OS error: `EPERM` to raise the hard limit without
/// `CAP_SYS_RESOURCE` (or above `fs.nr_open`), `EINVAL` for a soft limit above the hard one.
pub(crate) fn set_open_files_limit(limit: Limit) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: limit.soft,
        rlim_max: limit.hard,
    };
    // SAFETY: `lim` is a live rlimit, which setrlimit only reads.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    check(r, "setrlimit(RLIMIT_NOFILE)").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Runs `child` in a forked child and returns its exit status. The test harness has many
    /// threads, so `child` must call only async-signal-safe functions (no allocation, no
    /// locks, no printing), and reports through its status alone.
    fn in_child(child: fn() -> i32) -> i32 {
        // SAFETY: the child runs `child`, which keeps to async-signal-safe calls, then
        // `_exit`s without running anything of the parent's (no destructors, no atexit).
        match unsafe { fork() }.unwrap() {
            Fork::Child => {
                let status = child();
                // SAFETY: _exit ends the process at once, as the contract of `fork` asks.
                unsafe { libc::_exit(status) }
            }
            Fork::Parent(pid) => {
                assert!(pid > 0);
                let mut status = 0;
                // SAFETY: `status` is a live int that waitpid writes; `pid` is our child.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(r, pid);
                assert!(libc::WIFEXITED(status), "status {status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    /// The device numbers of what `fd` is, or `None`.
    fn device_of(fd: i32) -> Option<(libc::dev_t, libc::mode_t)> {
        // SAFETY: stat is plain data (integers), for which zeroes are valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a live stat that fstat writes; a bad `fd` only makes it fail.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_rdev, st.st_mode))
    }

    #[test]
    fn a_pipe_carries_bytes_and_is_close_on_exec() {
        let (rx, tx) = pipe().unwrap();
        for fd in [&rx, &tx] {
            // SAFETY: F_GETFD takes no pointer; `fd` is open.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
        std::fs::File::from(tx).write_all(b"ok\n").unwrap();
        let mut said = String::new();
        std::fs::File::from(rx).read_to_string(&mut said).unwrap();
        assert_eq!(said, "ok\n");
    }

    #[test]
    fn the_child_of_fork_runs_and_its_status_reaches_the_parent() {
        assert_eq!(in_child(|| 7), 7);
    }

    #[test]
    fn a_forked_child_can_lead_a_new_session() {
        let status = in_child(|| match setsid() {
            // SAFETY: getpid and getsid take no pointers.
            Ok(sid) if sid == unsafe { libc::getpid() } && unsafe { libc::getsid(0) } == sid => 0,
            Ok(_) => 1,
            Err(_) => 2,
        });
        assert_eq!(status, 0);
    }

    #[test]
    fn a_process_group_leader_cannot_start_a_session() {
        let status = in_child(|| {
            // A new session makes the child lead its group: a second setsid must fail.
            if setsid().is_err() {
                return 1;
            }
            match setsid() {
                Err(e) if e.call == "setsid" && e.raw_os_error() == Some(libc::EPERM) => 0,
                _ => 2,
            }
        });
        assert_eq!(status, 0);
    }

    #[test]
    fn stdio_goes_to_dev_null() {
        let null = device_of(
            open(c"/dev/null", libc::O_RDONLY, "open")
                .unwrap()
                .as_raw_fd(),
        );
        assert!(null.is_some());
        // The child compares its standard streams with /dev/null by device numbers; it gets
        // them again itself (no allocation, nothing captured from here).
        let status = in_child(|| {
            if stdio_to_dev_null().is_err() {
                return 1;
            }
            let Ok(null) = open(c"/dev/null", libc::O_RDONLY, "open") else {
                return 2;
            };
            let null = device_of(null.as_raw_fd());
            let all = (0..=2).all(|fd| null.is_some() && device_of(fd) == null);
            if all { 0 } else { 3 }
        });
        assert_eq!(status, 0);
    }

    #[test]
    fn the_open_files_limit_reads_and_sets_and_names_its_calls() {
        let lim = open_files_limit().unwrap();
        assert!(lim.soft <= lim.hard && lim.soft > 0, "{lim:?}");
        // Setting what is there already changes nothing, and needs no privilege.
        set_open_files_limit(lim).unwrap();
        assert_eq!(open_files_limit().unwrap(), lim);
        if lim.hard != libc::RLIM_INFINITY {
            // A soft limit above the hard one is refused, root or not.
            let e = set_open_files_limit(Limit {
                soft: lim.hard + 1,
                hard: lim.hard,
            })
            .unwrap_err();
            assert_eq!(e.call, "setrlimit(RLIMIT_NOFILE)");
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        }
        assert_eq!(open_files_limit().unwrap(), lim);
    }
}
