//! Running in the background as people expect a daemon to: `etherws sw` without
//! `--foreground` returns to the shell only once the switch is up — listening, and with every
//! port of its configuration file created — or with the reason it is not, on the terminal, and
//! a non-zero status. `--pidfile` names the running process.
//!
//! `daemon(3)` cannot do the first part: its parent exits at once, so an error met after it (a
//! TAP the configuration declares but the kernel refuses) went to /dev/null with status 0. Here
//! the parent waits on a pipe until the child writes `ok` (or an error, or dies).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};

use crate::sys;
use crate::sys::process::Fork;

/// The child's end of the start-up pipe, until it has said how start-up went.
static STARTUP: Mutex<Option<File>> = Mutex::new(None);

/// What the child writes when the switch is up.
const READY: &str = "ok\n";

/// Detaches from the terminal: fork, new session, cwd `/`, stdio on /dev/null. Returns in the
/// child only; the parent waits for [`ready`] or [`failed`] and exits with the outcome.
///
/// # Safety
///
/// The process must have one thread (call it before the runtime starts): the child goes on
/// as the switch, which [`sys::process::fork`] allows only then.
pub(crate) unsafe fn detach() -> anyhow::Result<()> {
    let (rx, tx) = sys::process::pipe().context("cannot daemonize")?;
    // SAFETY: the process has one thread (this function's contract), so the child is a whole
    // copy of it; no lock can be held by a thread that does not exist there.
    match unsafe { sys::process::fork() }.context("cannot daemonize")? {
        Fork::Child => {
            drop(rx);
            // A child just forked leads no process group, so this does not fail; if it did,
            // the daemon would keep the terminal's session: refused like any other step.
            sys::process::setsid().context("cannot daemonize")?;
            std::env::set_current_dir("/").context("cannot daemonize: chdir /")?;
            sys::process::stdio_to_dev_null().context("cannot daemonize")?;
            *STARTUP.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(tx));
            Ok(())
        }
        Fork::Parent(_) => {
            drop(tx);
            let mut said = String::new();
            let _ = File::from(rx).take(64 * 1024).read_to_string(&mut said);
            if said == READY {
                std::process::exit(0);
            }
            let why = said.trim_end();
            if why.is_empty() {
                eprintln!("etherws sw: error: the switch exited during start-up (see its log)");
            } else {
                eprintln!("etherws sw: error: {}", crate::base::escape::printable(why));
            }
            std::process::exit(1);
        }
    }
}

/// Tells the waiting parent (if any) that the switch is up.
pub(crate) fn ready() {
    if let Some(mut f) = STARTUP.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = f.write_all(READY.as_bytes());
    }
}

/// Tells the waiting parent (if any) why start-up failed.
pub(crate) fn failed(e: &anyhow::Error) {
    if let Some(mut f) = STARTUP.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = writeln!(f, "{e:#}");
    }
}

/// The `--pidfile`: written once the process that stays is known, removed when it exits.
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Refuses to go on if the file names a live etherws (another switch with this pidfile).
    pub(crate) fn check(path: &Path) -> anyhow::Result<()> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return Ok(()); // Not ours, or half-written: overwritten.
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid > 0 && pid != std::process::id() as i32 && comm.trim() == "etherws" {
            bail!(
                "{} names a running etherws (pid {pid}); stop it first, or use another --pidfile",
                path.display()
            );
        }
        Ok(())
    }

    /// Writes this process's id to `path` (whole or not at all: through a temporary file).
    ///
    /// The pidfile's directory may be shared (`/run`, `/tmp`): the temporary file gets a name
    /// nobody can guess and is created anew (`O_EXCL`), never through a link someone put
    /// there, so the switch (often root) cannot be made to write into another file.
    pub(crate) fn write(path: &Path) -> anyhow::Result<PidFile> {
        let context = || format!("cannot write pidfile {}", path.display());
        let (tmp, mut file) = create_temporary(path).with_context(context)?;
        let written = file
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(context);
        }
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

/// A new file beside `path` with a random name, created exclusively (not a link, not a file
/// that was there), readable by all as pidfiles are.
fn create_temporary(path: &Path) -> std::io::Result<(PathBuf, File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tries = 0;
    loop {
        let tmp = path.with_extension(format!("tmp.{:016x}", fastrand::u64(..)));
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp);
        match created {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only if it still names this process (a second switch may have taken it over).
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pidfile_is_never_written_through_a_planted_link() {
        let dir = std::env::temp_dir().join(format!("etherws-pidfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.join("etherws.pid");
        // Links at the names a guessable temporary file would have had.
        for name in [format!("tmp.{}", std::process::id()), "tmp".to_string()] {
            std::os::unix::fs::symlink(&victim, path.with_extension(name)).unwrap();
        }
        let pidfile = PidFile::write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        drop(pidfile);
        assert!(!path.exists(), "removed when the switch stops");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
