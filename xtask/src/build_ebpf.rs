//! `cargo xtask build-ebpf`: builds the XDP object `target/bpf/etherws-xdp.o`.
//!
//! It installs what it needs by itself, and only what is missing, so that it works on a fresh
//! Debian machine that has rustup's stable and nightly toolchains, and takes seconds when
//! everything is already in place:
//!
//! 1. the nightly's `rust-src` component (`-Z build-std=core`: no `core` ships for the tier-3
//!    `bpfel-unknown-none` target, so cargo compiles it from source);
//! 2. `bpf-linker`, built against the nightly's own libLLVM (see [`ensure_bpf_linker`]);
//! 3. the eBPF crate, built by the nightly with `bpf-linker` as its linker;
//! 4. a copy of the object at a stable path for the loader and the tests.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{root, run};

/// The bpf-linker release known to build (with `--locked`) on the workspace's stable toolchain
/// and to support the LLVM versions of current nightlies (`llvm-21`, `llvm-22`, `llvm-23`).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// LLVM major versions [`BPF_LINKER_VERSION`] has a cargo feature for.
const BPF_LINKER_LLVM: &[u32] = &[21, 22, 23];

/// Where the built object is copied, relative to the workspace root.
pub fn object_path() -> PathBuf {
    root().join("target/bpf").join(etherws_common::XDP_OBJECT)
}

/// A rustup-driven command with no trace of the toolchain `cargo xtask` itself runs under:
/// cargo and rustup export variables (`RUSTUP_TOOLCHAIN`, `RUSTC`, `CARGO`, flags…) that would
/// otherwise pin a nested cargo to stable or leak stable's settings into the nightly build.
fn clean_command(program: &str) -> Command {
    let mut c = Command::new(program);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
    ] {
        c.env_remove(var);
    }
    c.current_dir(root());
    c
}

/// Runs a command and returns its standard output, failing if it fails.
fn output(mut cmd: Command) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Facts about the nightly toolchain the eBPF crate is built with.
struct Nightly {
    /// `rustc +nightly --print sysroot`.
    sysroot: PathBuf,
    /// Major version of the LLVM rustc is built on (`LLVM version:` of `rustc -vV`).
    llvm_major: u32,
    /// File name of its shared libLLVM in `sysroot/lib` (which is also its soname, e.g.
    /// `libLLVM.so.22.1-rust-1.97.0-nightly`).
    libllvm: String,
}

impl Nightly {
    fn lib_dir(&self) -> PathBuf {
        self.sysroot.join("lib")
    }

    fn probe() -> anyhow::Result<Self> {
        let mut c = clean_command("rustc");
        c.args(["+nightly", "--print", "sysroot"]);
        const HINT: &str =
            "no nightly toolchain: install it with `rustup toolchain install nightly -c rust-src`";
        let sysroot = PathBuf::from(output(c).context(HINT)?.trim());
        let mut c = clean_command("rustc");
        c.args(["+nightly", "-vV"]);
        let version = output(c)?;
        let llvm_major = version
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version:"))
            .and_then(|v| v.trim().split('.').next()?.parse().ok())
            .with_context(|| format!("no LLVM version in `rustc +nightly -vV`:\n{version}"))?;
        // rustup's toolchains ship libLLVM as `libLLVM.so.<major>.<minor>-rust-<version>-nightly`
        // (plus a `libLLVM-<major>-rust-…` alias); take the soname-style one.
        let prefix = format!("libLLVM.so.{llvm_major}.");
        let mut found: Vec<String> = fs::read_dir(sysroot.join("lib"))
            .with_context(|| format!("cannot list {}/lib", sysroot.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix) && n.contains("-rust-"))
            .collect();
        found.sort();
        let Some(libllvm) = found.pop() else {
            bail!(
                "no {prefix}*-rust-* in {}/lib: is the nightly toolchain complete?",
                sysroot.display()
            );
        };
        Ok(Self {
            sysroot,
            llvm_major,
            libllvm,
        })
    }

    /// `LD_LIBRARY_PATH` with the nightly's lib directory first, so `bpf-linker` (which links
    /// libLLVM dynamically) finds the nightly's libLLVM wherever it was built.
    fn ld_library_path(&self) -> OsString {
        let mut paths = vec![self.lib_dir()];
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(paths).expect("library paths contain no ':'")
    }
}

/// Step 1: `-Z build-std=core` compiles `core` from the nightly's source component.
fn ensure_rust_src(nightly: &Nightly) -> anyhow::Result<()> {
    let core = nightly
        .sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok(());
    }
    let mut c = clean_command("rustup");
    c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    run(c)
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

/// Whether `linker` is a bpf-linker that loads exactly the nightly's libLLVM.
///
/// bpf-linker hands rustc's LLVM bitcode to libLLVM, which must be the very LLVM that produced
/// it: a bpf-linker built against another LLVM (say the default `llvm-23` feature, or a previous
/// nightly's) fails, or worse, miscompiles. `ldd` shows which libLLVM the binary needs (its
/// soname names the rust version it came with) and where the loader finds it.
fn linker_is_right(linker: &Path, nightly: &Nightly) -> bool {
    if !linker.is_file() {
        return false;
    }
    let mut c = Command::new("ldd");
    c.arg(linker)
        .env("LD_LIBRARY_PATH", nightly.ld_library_path());
    let Ok(out) = output(c) else {
        return false;
    };
    let wanted = fs::canonicalize(nightly.lib_dir().join(&nightly.libllvm)).ok();
    out.lines().any(|l| {
        let mut parts = l.trim().split(" => ");
        let (Some(name), Some(path)) = (parts.next(), parts.next()) else {
            return false;
        };
        let path = path.split(" (").next().unwrap_or_default();
        name == nightly.libllvm && wanted.is_some() && fs::canonicalize(path).ok() == wanted
    })
}

/// Step 2: a `bpf-linker` built against the nightly's own libLLVM.
///
/// rustup ships the nightly's LLVM as a shared library, but without the `libLLVM.so` development
/// symlink that `-lLLVM` needs, nor an `llvm-config`. bpf-linker's build script accepts an
/// `LLVM_PREFIX` whose `lib/` holds the library, so we make such a prefix of symlinks under
/// `target/llvm-nightly` (`libLLVM.so` for the link, and the soname for the rpath the build
/// script records) and build bpf-linker with the cargo feature of the nightly's LLVM major. A
/// compatible bpf-linker already on `PATH` (or in cargo's bin directory) is used as is.
fn ensure_bpf_linker(nightly: &Nightly) -> anyhow::Result<PathBuf> {
    let installed = cargo_bin_dir().join("bpf-linker");
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("bpf-linker"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(good) = on_path
        .into_iter()
        .chain([installed.clone()])
        .find(|l| linker_is_right(l, nightly))
    {
        return Ok(good);
    }
    let major = nightly.llvm_major;
    if !BPF_LINKER_LLVM.contains(&major) {
        bail!(
            "the nightly uses LLVM {major}, bpf-linker {BPF_LINKER_VERSION} supports LLVM \
             {BPF_LINKER_LLVM:?}: update BPF_LINKER_VERSION in xtask/src/build_ebpf.rs"
        );
    }
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} for the nightly's LLVM {major} \
         ({})",
        nightly.libllvm
    );
    let prefix = root().join("target/llvm-nightly");
    let lib = prefix.join("lib");
    // Start from scratch: a previous nightly's symlinks must not linger.
    if lib.exists() {
        fs::remove_dir_all(&lib).with_context(|| format!("cannot remove {}", lib.display()))?;
    }
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let target = nightly.lib_dir().join(&nightly.libllvm);
    for name in ["libLLVM.so", nightly.libllvm.as_str()] {
        std::os::unix::fs::symlink(&target, lib.join(name))
            .with_context(|| format!("cannot link {name} in {}", lib.display()))?;
    }
    // Stable cargo builds it (it is ordinary host code); `--locked` takes the dependency
    // versions bpf-linker was released with, `--force` replaces a wrong build.
    let mut c = clean_command("cargo");
    c.args(["+stable", "install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        // bpf-linker's release profile asks for debug info: skip it, the build is faster.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("LLVM_PREFIX", &prefix)
        .env("LD_LIBRARY_PATH", nightly.ld_library_path());
    run(c)?;
    if !linker_is_right(&installed, nightly) {
        bail!(
            "{} was installed but does not load {}",
            installed.display(),
            nightly.libllvm
        );
    }
    Ok(installed)
}

/// Steps 3 and 4: builds the eBPF crate and copies the object to [`object_path`].
fn build(nightly: &Nightly, linker: &Path) -> anyhow::Result<PathBuf> {
    // A target directory of its own: the nightly's artefacts never mix with stable's, and this
    // build does not wait for (or block) the stable builds going on in `target/`.
    let target_dir = root().join("target/bpf-build");
    // `rustup run nightly` puts the nightly first for every tool cargo starts (rustc, and the
    // linker, which must load this nightly's libLLVM: hence `LD_LIBRARY_PATH`).
    let mut c = clean_command("rustup");
    c.args(["run", "nightly", "cargo", "build"])
        .args(["--package", "etherws-ebpf", "--bins", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // The target's default linker is `bpf-linker` from PATH; name ours explicitly.
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker)
        // `--btf`: bpf-linker turns the debug info into BTF, so the verifier's log names
        // source lines and types.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=--btf")
        .env("LD_LIBRARY_PATH", nightly.ld_library_path());
    run(c)?;
    let built = target_dir.join("bpfel-unknown-none/release/etherws-xdp");
    let dest = object_path();
    let dir = dest.parent().expect("object path has a directory");
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // An unchanged object keeps its modification time: etherws/build.rs watches it, and a fresh
    // copy would rebuild etherws (minutes in release) for nothing.
    let unchanged = fs::read(&built)
        .ok()
        .is_some_and(|new| fs::read(&dest).is_ok_and(|old| old == new));
    if unchanged {
        return Ok(dest);
    }
    // Copy then rename, so that a loader never sees a half-written object.
    let tmp = dir.join(format!(".{}.tmp", etherws_common::XDP_OBJECT));
    fs::copy(&built, &tmp)
        .with_context(|| format!("cannot copy {} to {}", built.display(), tmp.display()))?;
    fs::rename(&tmp, &dest).with_context(|| format!("cannot rename to {}", dest.display()))?;
    Ok(dest)
}

pub fn task_build_ebpf() -> anyhow::Result<PathBuf> {
    let nightly = Nightly::probe()?;
    ensure_rust_src(&nightly)?;
    let linker = ensure_bpf_linker(&nightly)?;
    let object = build(&nightly, &linker)?;
    eprintln!("xtask: eBPF object: {}", object.display());
    Ok(object)
}
