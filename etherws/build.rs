//! Embeds the XDP object of `cargo xtask build-ebpf` (`target/bpf/etherws-xdp.o`) when it exists.
//!
//! With the object, `cfg(etherws_xdp_object)` is set and `src/offload` `include_bytes!`s it from
//! `ETHERWS_XDP_OBJECT_PATH`; without it, etherws still builds and `--offload` answers with an
//! error saying how to build the object. `ETHERWS_XDP_OBJECT` overrides the path (an empty or
//! missing file: build without the object).

use std::path::PathBuf;

fn main() {
    git_revision();
    println!("cargo::rustc-check-cfg=cfg(etherws_xdp_object)");
    println!("cargo::rerun-if-env-changed=ETHERWS_XDP_OBJECT");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let default = manifest.join("../target/bpf/etherws-xdp.o");
    let path = match std::env::var_os("ETHERWS_XDP_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            // Watch the directory (created empty if need be) rather than a missing file, so a
            // later `cargo xtask build-ebpf` triggers a rebuild and its absence does not rebuild
            // etherws every time.
            if let Some(dir) = default.parent() {
                let _ = std::fs::create_dir_all(dir);
                println!("cargo::rerun-if-changed={}", dir.display());
            }
            default
        }
    };
    println!("cargo::rerun-if-changed={}", path.display());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.len() > 0 => {
            let path = path.canonicalize().unwrap_or(path);
            println!("cargo::rustc-cfg=etherws_xdp_object");
            println!(
                "cargo::rustc-env=ETHERWS_XDP_OBJECT_PATH={}",
                path.display()
            );
        }
        _ => println!(
            "cargo::warning=no eBPF object at {}: building without netdev offload (run `cargo xtask build-ebpf` first)",
            path.display()
        ),
    }
}

/// `ETHERWS_GIT_REV` for `--version`: the commit built, or `ETHERWS_GIT_REV` from the
/// environment (a package built outside a clone), or `unknown`.
fn git_revision() {
    println!("cargo::rerun-if-env-changed=ETHERWS_GIT_REV");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let git = manifest.join("../.git");
    // A new commit or checkout changes HEAD or the branch it points to.
    for f in ["HEAD", "index", "packed-refs"] {
        if git.join(f).exists() {
            println!("cargo::rerun-if-changed={}", git.join(f).display());
        }
    }
    let rev = std::env::var("ETHERWS_GIT_REV").ok().or_else(|| {
        let run = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&manifest)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        run(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo::rustc-env=ETHERWS_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
