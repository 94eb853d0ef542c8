//! The part of xtask the tests share: what an installation is made of.
//!
//! - [`dist`]: shell completions and man pages, generated from etherws's own command line
//!   (`etherws::command`) — `cargo xtask dist`;
//! - [`deb`]: the Debian package assembled from a built binary, `dist/` and those pages —
//!   `cargo xtask deb`.
//!
//! They are a library (the `xtask` binary's other tasks are not) so that `tests/package.rs`
//! builds and installs the package with the very code `cargo xtask deb` runs, on the binary
//! cargo has just built for the tests, without starting a nested cargo.

pub mod deb;
pub mod dist;

use std::path::PathBuf;

/// The workspace root (xtask lives in `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
