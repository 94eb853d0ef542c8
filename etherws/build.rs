//! Embeds the XDP object of `cargo xtask build-ebpf` (`target/bpf/etherws-xdp.o`) when it exists.
//!
//! With the object, `cfg(etherws_xdp_object)` is set and `src/offload` `include_bytes!`s it from
//! `ETHERWS_XDP_OBJECT_PATH`; without it, etherws still builds and `--offload` answers with an
//! error saying how to build the object. `ETHERWS_XDP_OBJECT` overrides the path (an empty or
//! missing file: build without the object).

use std::path::PathBuf;

fn main() {
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
