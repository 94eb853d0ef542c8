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
    #[error("{path}: {error}")]
    Open { path: String, error: std::io::Error },
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
