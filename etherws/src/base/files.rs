//! Reading the files the switch is told to read: configuration, htpasswd, certificates, keys,
//! CRLs, password files — at start-up and on request of the control API.
//!
//! A path that arrives through the control API is chosen by whoever can reach it, so every
//! such read is bounded: only a regular file is read (`/dev/kmsg` would block a thread
//! forever, `/dev/zero` would fill memory, a FIFO would block the `open` itself), and at most
//! [`MAX_FILE`] bytes of it. Callers on the async runtime run these reads on the blocking pool
//! (`tokio::task::spawn_blocking`): even a regular file can sit on a slow network mount.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest file the switch reads: far above any configuration, htpasswd file of a few
/// thousand users, certificate bundle (the Mozilla roots are ~220 KB) or CRL it needs.
pub(crate) const MAX_FILE: u64 = 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("{path}: {error}{hint}")]
    Open {
        path: String,
        error: std::io::Error,
        /// Where the switch looks instead, when it can tell (see [`sandbox_hint`]); or empty.
        hint: &'static str,
    },
    #[error("{path}: not a regular file")]
    NotRegular { path: String },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
}

/// Reads a whole regular file of at most [`MAX_FILE`] bytes; returns its bytes and the
/// metadata of the very file read (its mode and signature, not those of whatever the path names
/// a moment later).
pub(crate) fn read_limited(path: &Path) -> Result<(Vec<u8>, std::fs::Metadata), FileError> {
    let shown = || crate::base::escape::printable(&path.display().to_string()).into_owned();
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It does not
    // change how a regular file reads.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| FileError::Open {
            path: shown(),
            hint: sandbox_hint(
                path,
                &error,
                std::env::var_os("INVOCATION_ID").is_some_and(|v| !v.is_empty()),
            ),
            error,
        })?;
    let meta = file.metadata().map_err(|error| FileError::Read {
        path: shown(),
        error,
    })?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular { path: shown() });
    }
    if meta.len() > MAX_FILE {
        return Err(FileError::TooLarge {
            path: shown(),
            max: MAX_FILE,
        });
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew while being read.
    (&mut file)
        .take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|error| FileError::Read {
            path: shown(),
            error,
        })?;
    if data.len() as u64 > MAX_FILE {
        return Err(FileError::TooLarge {
            path: shown(),
            max: MAX_FILE,
        });
    }
    Ok((data, meta))
}

/// Why a file that is there for the user may be missing for the switch: a service of systemd
/// (`under_systemd`: `INVOCATION_ID` is set) whose unit has `PrivateTmp=yes` sees a `/tmp` and
/// `/var/tmp` of its own, and one with `ProtectHome=yes` no `/home`, `/root` or `/run/user`, as
/// `dist/etherws.service` has. A hint for a missing (or refused) file under those, not a fact:
/// the switch cannot see whether its unit sets them.
fn sandbox_hint(path: &Path, error: &std::io::Error, under_systemd: bool) -> &'static str {
    use std::io::ErrorKind;
    if !under_systemd
        || !matches!(
            error.kind(),
            ErrorKind::NotFound | ErrorKind::PermissionDenied
        )
    {
        return "";
    }
    if ["/tmp", "/var/tmp"].iter().any(|d| path.starts_with(d)) {
        " (the switch runs under systemd: with PrivateTmp=yes, as etherws.service has, its /tmp \
         and /var/tmp are its own, not yours; put the file in /etc/etherws)"
    } else if ["/home", "/root", "/run/user"]
        .iter()
        .any(|d| path.starts_with(d))
    {
        " (the switch runs under systemd: with ProtectHome=yes, as etherws.service has, it cannot \
         see /home, /root or /run/user; put the file in /etc/etherws)"
    } else {
        ""
    }
}

/// [`read_limited`] as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> anyhow::Result<String> {
    let (data, _) = read_limited(path)?;
    String::from_utf8(data).map_err(|_| {
        anyhow::anyhow!(
            "{} is not UTF-8 text",
            crate::base::escape::printable(&path.display().to_string())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_missing_under_systemd_says_where_the_switch_looks() {
        use std::io::{Error, ErrorKind};
        let missing = Error::from(ErrorKind::NotFound);
        let tmp = sandbox_hint(Path::new("/tmp/ca.pem"), &missing, true);
        assert!(tmp.contains("PrivateTmp=yes"), "{tmp}");
        let home = sandbox_hint(Path::new("/home/u/ca.pem"), &missing, true);
        assert!(home.contains("ProtectHome=yes"), "{home}");
        assert_eq!(sandbox_hint(Path::new("/tmp/ca.pem"), &missing, false), "");
        assert_eq!(sandbox_hint(Path::new("/etc/ca.pem"), &missing, true), "");
        assert_eq!(sandbox_hint(Path::new("/tmpx/ca.pem"), &missing, true), "");
        let other = Error::from(ErrorKind::InvalidData);
        assert_eq!(sandbox_hint(Path::new("/tmp/ca.pem"), &other, true), "");
    }

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("etherws-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(read_limited(&small).unwrap().0, b"hello");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; MAX_FILE as usize + 1]).unwrap();
        assert!(matches!(
            read_limited(&big),
            Err(FileError::TooLarge { .. })
        ));
        for dev in ["/dev/zero", "/dev/null", "/tmp"] {
            assert!(
                matches!(
                    read_limited(Path::new(dev)),
                    Err(FileError::NotRegular { .. })
                ),
                "{dev}"
            );
        }
        assert!(matches!(
            read_limited(&dir.join("absent")),
            Err(FileError::Open { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
