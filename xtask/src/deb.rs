//! `cargo xtask deb [--debug]`: the Debian package `target/debian/etherws_<version>_<arch>.deb`.
//!
//! [`build`] stages a tree and packs it with `dpkg-deb --build --root-owner-group`. It does not
//! use cargo-deb. cargo-deb is one more tool to install, and it builds the binary itself with
//! its own idea of the profile and features. But the binary wanted here has the eBPF object
//! embedded, built first by `cargo xtask build-ebpf` (nightly) and picked up by
//! `etherws/build.rs`. And `tests/package.rs` packs the binary cargo has just built for the
//! tests, from inside `cargo test`, where a nested cargo is no good. What cargo-deb would add
//! (Depends from `dpkg-shlibdeps`, conffiles, maintainer scripts, md5sums) is a few lines here,
//! and `dpkg-deb` is part of dpkg, present on every Debian machine.
//!
//! The package:
//!
//! | path | from |
//! | --- | --- |
//! | `/usr/bin/etherws` | the binary given (debug info stripped, as `dh_strip` does) |
//! | `/lib/systemd/system/etherws.service` | `dist/etherws.service`, `ExecStart` on `/usr/bin/etherws` |
//! | `/etc/etherws/etherws.toml` | `dist/etherws.toml` (a conffile; loopback only; mode 0600 in a 0750 directory) |
//! | `/usr/share/man/man1/*.1.gz` | `cargo xtask dist` ([`crate::dist`]), `gzip -9n` |
//! | `/usr/share/bash-completion/completions/etherws`, `/usr/share/zsh/vendor-completions/_etherws`, `/usr/share/fish/vendor_completions.d/etherws.fish` | the same |
//! | `/usr/share/doc/etherws/README.md`, `copyright` | `README.md`; `LICENSE-MIT` in Debian's machine-readable format |
//! | `/usr/share/doc/etherws/docs/` | the pages of `docs/` the README maps, and their images ([`doc_pages`]), so its links work there too |
//!
//! Its control fields: the workspace's version made Debian-safe ([`debian_version`]),
//! the architecture of `dpkg --print-architecture`, and Depends as `dpkg-shlibdeps` (dpkg-dev)
//! says, or, without it, as the binary's ELF dynamic section and symbol versions say
//! ([`elf_depends`]).
//!
//! The maintainer scripts are `dist/debian/{postinst,prerm,postrm}`. Unlike most Debian
//! packages of daemons, installing it does not enable or start the service: the shipped
//! configuration is a loopback-only example with no ports, and a switch is wanted once it has
//! been given its ports (`systemctl enable --now etherws` then). postinst reloads systemd, and on
//! an upgrade restarts a running switch on the new binary; prerm stops it on removal; postrm
//! on purge removes `/etc/etherws` if nothing is left in it. Each honours `DPKG_ROOT`, so an
//! installation into another root (`dpkg --root`, as the test does) never touches the host's
//! systemd.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail, ensure};

use crate::dist::Dist;

/// The package's name.
pub const PACKAGE: &str = "etherws";

/// Where the binary is installed, and what the unit's `ExecStart` runs.
pub const BINARY_PATH: &str = "/usr/bin/etherws";

/// The configuration file, a conffile.
pub const CONFIG_PATH: &str = "/etc/etherws/etherws.toml";

/// The systemd unit.
pub const UNIT_PATH: &str = "/lib/systemd/system/etherws.service";

const MAINTAINER: &str = "The etherws developers <etherws@example.invalid>";

const DESCRIPTION: &str = "\
Ethernet over WebSocket software switch
 etherws sw is a learning Ethernet switch whose ports are TAP devices, existing
 network interfaces (optionally offloaded to the kernel with eBPF/XDP) and
 WebSocket connections, incoming and outgoing: two switches joined over any
 HTTP path form one Ethernet segment. etherws ctl drives a switch over
 JSON-RPC, locally or remotely.
 .
 It works with etherws 1.3 (Python) on the wire, in the control API and on the
 command line. The systemd unit runs the switch declared in
 /etc/etherws/etherws.toml; it is not enabled on installation.";

/// How the package's contents are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// xz, dpkg-deb's default: the smallest package (a release binary takes seconds).
    Xz,
    /// gzip -1: the fastest, for test packages of the debug build.
    Fast,
}

/// What [`build`] packs.
#[derive(Debug, Clone, Copy)]
pub struct Deb<'a> {
    /// The etherws binary.
    pub binary: &'a Path,
    /// Its completions and man pages ([`crate::dist::generate`]).
    pub dist: &'a Dist,
    /// Where the package goes; the tree it is packed from is staged under `build/` there.
    pub out_dir: &'a Path,
    pub compression: Compression,
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// `OUT_DIR/etherws_<version>_<arch>.deb`.
    pub path: PathBuf,
    pub version: String,
    pub arch: String,
    pub depends: String,
    /// Who computed `depends`: `dpkg-shlibdeps` or `ELF`.
    pub depends_from: &'static str,
}

/// The Debian version of a Cargo (semver) version: a pre-release sorts before its release in
/// both, which in Debian takes `~` (`2.0.0-alpha.1` → `2.0.0~alpha.1`; there is no Debian
/// revision, so no `-` may remain: later ones become `.`). Build metadata (`+…`) stays.
pub fn debian_version(semver: &str) -> anyhow::Result<String> {
    let (main, build) = match semver.split_once('+') {
        Some((m, b)) => (m, Some(b)),
        None => (semver, None),
    };
    let mut v = match main.split_once('-') {
        Some((release, pre)) => format!("{release}~{}", pre.replace('-', ".")),
        None => main.to_string(),
    };
    if let Some(b) = build {
        v = format!("{v}+{}", b.replace('-', "."));
    }
    ensure!(
        v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')),
        "{semver:?} makes no Debian version ({v:?})"
    );
    Ok(v)
}

/// The workspace's version, which etherws's is (`version.workspace = true`).
pub fn workspace_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `dpkg --print-architecture`.
pub fn architecture() -> anyhow::Result<String> {
    let out = output(Command::new("dpkg").arg("--print-architecture"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Stages the package's tree and packs it: see the module documentation.
pub fn build(deb: &Deb) -> anyhow::Result<Built> {
    let root_dir = crate::workspace_root();
    let version = debian_version(workspace_version())?;
    let arch = architecture()?;

    // `build/debian/control` and the tree in `build/debian/etherws/` are the layout
    // dpkg-shlibdeps expects of a source package being built.
    let build_dir = deb.out_dir.join("build");
    if build_dir.exists() {
        fs::remove_dir_all(&build_dir)
            .with_context(|| format!("cannot remove {}", build_dir.display()))?;
    }
    let tree = build_dir.join("debian").join(PACKAGE);
    let at = |path: &str| tree.join(path.trim_start_matches('/'));

    // The binary, without its debug info (a dev build's is mostly that).
    let bin = at(BINARY_PATH);
    mkdirs(&tree, bin.parent().expect("a directory"))?;
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&bin)
        .arg(deb.binary)
        .output();
    if !stripped.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "xtask: cannot strip {} (is binutils installed?): packed as it is",
            deb.binary.display()
        );
        fs::copy(deb.binary, &bin)
            .with_context(|| format!("cannot copy {}", deb.binary.display()))?;
    }
    set_mode(&bin, 0o755)?;

    let unit = read(&root_dir.join("dist/etherws.service"))?;
    put(
        &tree,
        &at(UNIT_PATH),
        packaged_unit(&unit)?.as_bytes(),
        0o644,
    )?;

    let config = at(CONFIG_PATH);
    put(
        &tree,
        &config,
        read(&root_dir.join("dist/etherws.toml"))?.as_bytes(),
        0o600,
    )?;
    set_mode(config.parent().expect("a directory"), 0o750)?;

    for page in &deb.dist.man_pages {
        let name = page.file_name().expect("a file name").to_string_lossy();
        let gz = output(Command::new("gzip").args(["-9n", "-c"]).arg(page))?;
        let dest = at(&format!("/usr/share/man/man1/{name}.gz"));
        put(&tree, &dest, &gz.stdout, 0o644)?;
    }
    for (shell, script) in &deb.dist.completions {
        let dest = match shell {
            clap_complete::Shell::Bash => "/usr/share/bash-completion/completions/etherws",
            clap_complete::Shell::Zsh => "/usr/share/zsh/vendor-completions/_etherws",
            clap_complete::Shell::Fish => "/usr/share/fish/vendor_completions.d/etherws.fish",
            other => bail!("no place for {other} completions"),
        };
        put(&tree, &at(dest), &fs::read(script)?, 0o644)?;
    }
    let doc = "/usr/share/doc/etherws";
    let readme = fs::read(root_dir.join("README.md")).context("README.md")?;
    put(&tree, &at(&format!("{doc}/README.md")), &readme, 0o644)?;
    for name in doc_pages(&root_dir)? {
        let page =
            fs::read(root_dir.join("docs").join(&name)).with_context(|| format!("docs/{name}"))?;
        put(&tree, &at(&format!("{doc}/docs/{name}")), &page, 0o644)?;
    }
    let copyright = copyright(&read(&root_dir.join("LICENSE-MIT"))?, homepage().as_deref())?;
    put(
        &tree,
        &at(&format!("{doc}/copyright")),
        copyright.as_bytes(),
        0o644,
    )?;

    // DEBIAN/: the maintainer scripts first (dpkg-shlibdeps recognises the tree by it).
    let control_dir = tree.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        let text = read(&root_dir.join("dist/debian").join(script))?;
        put(&tree, &control_dir.join(script), text.as_bytes(), 0o755)?;
    }
    put(
        &tree,
        &control_dir.join("conffiles"),
        format!("{CONFIG_PATH}\n").as_bytes(),
        0o644,
    )?;
    let md5sums = md5sums(&tree)?;
    put(
        &tree,
        &control_dir.join("md5sums"),
        md5sums.as_bytes(),
        0o644,
    )?;

    let (depends, depends_from) = match shlibdeps(&build_dir, &bin) {
        Ok(d) => (d, "dpkg-shlibdeps"),
        Err(why) => {
            eprintln!("xtask: {why:#}; Depends from the binary's ELF symbol versions instead");
            (elf_depends(&fs::read(&bin)?)?, "ELF")
        }
    };
    let mut control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n",
        installed_size(&tree)?
    );
    if let Some(home) = homepage() {
        control.push_str(&format!("Homepage: {home}\n"));
    }
    control.push_str(&format!("Description: {DESCRIPTION}\n"));
    put(
        &tree,
        &control_dir.join("control"),
        control.as_bytes(),
        0o644,
    )?;

    let path = deb.out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let partial = deb.out_dir.join(format!(".{PACKAGE}.deb.partial"));
    let mut pack = Command::new("dpkg-deb");
    pack.args(["--build", "--root-owner-group"]);
    match deb.compression {
        Compression::Xz => pack.arg("-Zxz"),
        Compression::Fast => pack.args(["-Zgzip", "-z1"]),
    };
    // The same commit packs the same way: dpkg-deb clamps the files' times to it.
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        let mut git = Command::new("git");
        git.args(["log", "-1", "--format=%ct"])
            .current_dir(&root_dir);
        if let Ok(out) = output(&mut git) {
            pack.env(
                "SOURCE_DATE_EPOCH",
                String::from_utf8_lossy(&out.stdout).trim(),
            );
        }
    }
    pack.arg(&tree).arg(&partial);
    output(&mut pack)?;
    fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Built {
        path,
        version,
        arch,
        depends,
        depends_from,
    })
}

/// The unit of `dist/etherws.service` for the package: `ExecStart` runs [`BINARY_PATH`], the
/// man page joins `Documentation`, and the opening comment (how to install it by hand) says
/// how to use it instead. The rest, hardening included, is left as it is.
pub fn packaged_unit(src: &str) -> anyhow::Result<String> {
    let mut out = String::from(
        "# systemd unit of the etherws package: the switch declared in /etc/etherws/etherws.toml.\n\
         #\n\
         #   $EDITOR /etc/etherws/etherws.toml\n\
         #   systemctl enable --now etherws\n\
         #\n\
         # Runtime changes made with `etherws ctl` last until the switch stops; what is in the file is\n\
         # what comes back after a restart. Local changes to this unit go in a drop-in\n\
         # (`systemctl edit etherws`), which upgrades keep.\n",
    );
    let mut exec_start = 0;
    let body = src
        .lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty());
    for line in body {
        let exec = ["ExecStartPre", "ExecStart"]
            .into_iter()
            .find_map(|k| line.strip_prefix(k)?.strip_prefix('=').map(|c| (k, c)));
        if let Some((key, command)) = exec {
            let (program, args) = command.split_once(' ').unwrap_or((command, ""));
            ensure!(
                program.ends_with("/etherws"),
                "dist/etherws.service: {key} runs {program:?}, not etherws"
            );
            out.push_str(format!("{key}={BINARY_PATH} {args}").trim_end());
            exec_start += usize::from(key == "ExecStart");
        } else if let Some(docs) = line.strip_prefix("Documentation=") {
            out.push_str(&format!("Documentation={docs} man:etherws-sw(1)"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    ensure!(
        exec_start == 1,
        "dist/etherws.service has {exec_start} ExecStart lines, not 1"
    );
    Ok(out)
}

/// `debian/copyright` in Debian's machine-readable format, from `LICENSE-MIT`.
fn copyright(mit: &str, homepage: Option<&str>) -> anyhow::Result<String> {
    let mut lines = mit.lines();
    let holder = lines
        .by_ref()
        .find_map(|l| l.trim().strip_prefix("Copyright"))
        .context("LICENSE-MIT has no Copyright line")?;
    let holder = holder.trim().trim_start_matches("(c)").trim();
    let mut body: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
    let mut s = String::from(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: etherws\n",
    );
    if let Some(home) = homepage {
        s.push_str(&format!("Source: {home}\n"));
    }
    s.push_str(&format!(
        "Comment: The binary is statically linked with Rust crates from crates.io, each under\n \
         its own licence (MIT, Apache-2.0 and the like); `cargo tree` in the source lists them.\n\
         \n\
         Files: *\n\
         Copyright: {holder}\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: MIT\n"
    ));
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    for line in body {
        if line.trim().is_empty() {
            s.push_str(" .\n");
        } else {
            s.push_str(&format!(" {line}\n"));
        }
    }
    s.push_str(
        "\nLicense: Apache-2.0\n \
         On Debian systems, the full text of the Apache License, Version 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n",
    );
    Ok(s)
}

/// The workspace's `repository` (`[workspace.package]` of the root Cargo.toml), if any.
fn homepage() -> Option<String> {
    let manifest = fs::read_to_string(crate::workspace_root().join("Cargo.toml")).ok()?;
    manifest.lines().find_map(|l| {
        let value = l
            .trim()
            .strip_prefix("repository")?
            .trim()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// Depends as `dpkg-shlibdeps` computes it for `binary`, in `build_dir/debian/etherws/` (it
/// reads `build_dir/debian/control`, written here).
fn shlibdeps(build_dir: &Path, binary: &Path) -> anyhow::Result<String> {
    fs::write(
        build_dir.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )?;
    let relative = binary.strip_prefix(build_dir).unwrap_or(binary);
    let out = Command::new("dpkg-shlibdeps")
        .arg("-O")
        .arg(relative)
        .current_dir(build_dir)
        .output();
    let out = match out {
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("no dpkg-shlibdeps (dpkg-dev)"),
        other => other.context("cannot run dpkg-shlibdeps")?,
    };
    ensure!(
        out.status.success(),
        "dpkg-shlibdeps failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .with_context(|| format!("dpkg-shlibdeps said no shlibs:Depends: {stdout}"))
}

/// Depends from the binary itself, for a machine without dpkg-shlibdeps: the libraries of its
/// dynamic section (`DT_NEEDED`), each with the newest symbol version it needs of it
/// (`.gnu.version_r`): glibc's libraries (`GLIBC_2.34`) make `libc6 (>= 2.34)`, `libgcc_s`
/// (`GCC_4.2.0`) `libgcc-s1 (>= 4.2)`, as Debian's symbols files have it. Any other library is
/// an error: which package has it is dpkg-shlibdeps's business.
pub fn elf_depends(elf: &[u8]) -> anyhow::Result<String> {
    let needs = elf_needs(elf)?;
    let mut packages: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (lib, versions) in &needs {
        let glibc = [
            "libc.so.",
            "libm.so.",
            "libpthread.so.",
            "libdl.so.",
            "librt.so.",
            "libutil.so.",
            "libresolv.so.",
            "ld-linux",
            "ld64.so.",
        ];
        let (package, prefix) = if glibc.iter().any(|p| lib.starts_with(p)) {
            ("libc6", "GLIBC_")
        } else if lib.starts_with("libgcc_s.so.") {
            ("libgcc-s1", "GCC_")
        } else {
            bail!("{lib}: which package has it? Install dpkg-dev (dpkg-shlibdeps) to find out");
        };
        let newest = versions
            .iter()
            .filter_map(|v| v.strip_prefix(prefix))
            .filter_map(|v| {
                v.split('.')
                    .map(|n| n.parse().ok())
                    .collect::<Option<Vec<u32>>>()
            })
            .max();
        let entry = packages.entry(package).or_default();
        if let Some(newest) = newest {
            *entry = newest.max(entry.clone());
        }
    }
    Ok(packages
        .into_iter()
        .map(|(package, mut version)| {
            // GCC_4.2.0 is libgcc-s1 (>= 4.2).
            while version.len() > 2 && version.last() == Some(&0) {
                version.pop();
            }
            if version.is_empty() {
                package.to_string()
            } else {
                let v: Vec<String> = version.iter().map(u32::to_string).collect();
                format!("{package} (>= {})", v.join("."))
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// The libraries a 64-bit little-endian ELF file needs, each with the symbol versions it needs
/// of it.
fn elf_needs(elf: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    fn bytes<const N: usize>(elf: &[u8], at: u64) -> anyhow::Result<[u8; N]> {
        usize::try_from(at)
            .ok()
            .and_then(|at| elf.get(at..at.checked_add(N)?))
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("ELF file truncated at {at}"))
    }
    let u16_at = |at| bytes::<2>(elf, at).map(u16::from_le_bytes);
    let u32_at = |at| bytes::<4>(elf, at).map(u32::from_le_bytes);
    let u64_at = |at| bytes::<8>(elf, at).map(u64::from_le_bytes);
    ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a 64-bit little-endian ELF file"
    );
    struct Section {
        kind: u32,
        offset: u64,
        size: u64,
        link: u32,
        info: u32,
    }
    let (shoff, shentsize, shnum) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?);
    let sections = (0..u64::from(shnum))
        .map(|i| {
            let at = shoff + i * u64::from(shentsize);
            Ok(Section {
                kind: u32_at(at + 4)?,
                offset: u64_at(at + 24)?,
                size: u64_at(at + 32)?,
                link: u32_at(at + 40)?,
                info: u32_at(at + 44)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let string = |table: u32, at: u32| -> anyhow::Result<String> {
        let table = sections
            .get(table as usize)
            .context("no such string table")?;
        let start = usize::try_from(table.offset + u64::from(at))?;
        let s = elf.get(start..).context("string out of the file")?;
        let end = s
            .iter()
            .position(|&b| b == 0)
            .context("unterminated string")?;
        Ok(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    const SHT_DYNAMIC: u32 = 6;
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    const DT_NEEDED: u64 = 1;
    let mut needs = BTreeMap::new();
    for s in &sections {
        match s.kind {
            SHT_DYNAMIC => {
                for at in (s.offset..s.offset + s.size).step_by(16) {
                    match u64_at(at)? {
                        0 => break,
                        DT_NEEDED => {
                            let name = string(s.link, u32::try_from(u64_at(at + 8)?)?)?;
                            needs.entry(name).or_insert_with(Vec::new);
                        }
                        _ => {}
                    }
                }
            }
            SHT_GNU_VERNEED => {
                let mut at = s.offset;
                for _ in 0..s.info {
                    let file = string(s.link, u32_at(at + 4)?)?;
                    let mut aux = at + u64::from(u32_at(at + 8)?);
                    for _ in 0..u16_at(at + 2)? {
                        let version = string(s.link, u32_at(aux + 8)?)?;
                        needs
                            .entry(file.clone())
                            .or_insert_with(Vec::new)
                            .push(version);
                        aux += u64::from(u32_at(aux + 12)?);
                    }
                    at += u64::from(u32_at(at + 12)?);
                }
            }
            _ => {}
        }
    }
    Ok(needs)
}

/// `DEBIAN/md5sums`: every file of the tree but the conffiles (dpkg keeps their sums itself),
/// for `dpkg --verify`.
fn md5sums(tree: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    walk(tree, &mut |path, meta| {
        if meta.is_file() {
            let relative = path.strip_prefix(tree).expect("under the tree");
            if !relative.starts_with("DEBIAN")
                && Path::new("/").join(relative) != Path::new(CONFIG_PATH)
            {
                files.push(relative.to_path_buf());
            }
        }
    })?;
    files.sort();
    let out = output(
        Command::new("md5sum")
            .arg("--")
            .args(&files)
            .current_dir(tree),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installed-Size in KiB, as dpkg-gencontrol counts it: each file rounded up to a KiB, each
/// other entry (directory, link) one.
fn installed_size(tree: &Path) -> anyhow::Result<u64> {
    let mut kib = 0;
    walk(tree, &mut |path, meta| {
        if !path
            .strip_prefix(tree)
            .is_ok_and(|p| p.starts_with("DEBIAN"))
        {
            kib += if meta.is_file() {
                meta.len().div_ceil(1024)
            } else {
                1
            };
        }
    })?;
    Ok(kib)
}

/// Calls `f` on everything below `dir` (not `dir` itself), without following links.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        f(&path, &meta);
        if meta.is_dir() {
            walk(&path, f)?;
        }
    }
    Ok(())
}

/// Creates `dir` and its parents below `tree`, mode 0755 whatever the umask.
fn mkdirs(tree: &Path, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for d in dir.ancestors().take_while(|d| d.starts_with(tree)) {
        set_mode(d, 0o755)?;
    }
    Ok(())
}

/// The files of `docs/` the package installs beside the README, sorted: its pages (`.md`) and
/// the images they show (`.png`).
///
/// # Errors
///
/// When `docs/` cannot be read.
pub fn doc_pages(root_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root_dir.join("docs");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") || name.ends_with(".png") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `path` (its directories made by [`mkdirs`]) with `mode`.
fn put(tree: &Path, path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    if !dir.exists() {
        mkdirs(tree, dir)?;
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs a command to completion, failing with its standard error if it fails.
fn output(cmd: &mut Command) -> anyhow::Result<Output> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions() {
        let v = |s| debian_version(s).unwrap();
        assert_eq!(v("2.0.0"), "2.0.0");
        assert_eq!(v("2.0.0-alpha.1"), "2.0.0~alpha.1");
        assert_eq!(v("2.0.0-rc-2+git.5"), "2.0.0~rc.2+git.5");
        assert!(debian_version("v2").is_err());
        debian_version(workspace_version()).unwrap();
    }

    #[test]
    fn the_packaged_unit_runs_the_packaged_binary() {
        let src = read(&crate::workspace_root().join("dist/etherws.service")).unwrap();
        let unit = packaged_unit(&src).unwrap();
        assert!(
            unit.contains(
                "\nExecStart=/usr/bin/etherws sw --foreground --config /etc/etherws/etherws.toml\n"
            ) && unit.contains(
                "\nExecStartPre=/usr/bin/etherws sw --check-config /etc/etherws/etherws.toml\n"
            ),
            "{unit}"
        );
        // Everything else of the [Unit], [Service] and [Install] sections is as it was.
        let settings = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("ExecStart"))
                .filter(|l| !l.starts_with("Documentation="))
                .map(str::to_string)
                .collect()
        };
        let kept = settings(&unit);
        let source = settings(&src);
        let first = |v: &[String]| v.iter().position(|l| l == "[Unit]").unwrap();
        assert_eq!(kept[first(&kept)..], source[first(&source)..]);
        assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("CapabilityBoundingSet="));
        assert!(packaged_unit("[Service]\nExecStart=/bin/true\n").is_err());
    }

    #[test]
    fn depends_from_elf_agrees_with_dpkg_shlibdeps() {
        let exe = std::env::current_exe().unwrap();
        let ours = elf_depends(&fs::read(&exe).unwrap()).unwrap();
        assert!(ours.starts_with("libc6 (>= 2."), "{ours}");
        let dir = std::env::temp_dir().join(format!("xtask-shlibdeps-{}", std::process::id()));
        let tree = dir.join("debian").join(PACKAGE);
        fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        fs::copy(&exe, tree.join("prog")).unwrap();
        let theirs = shlibdeps(&dir, &tree.join("prog"));
        fs::remove_dir_all(&dir).unwrap();
        match theirs {
            Ok(theirs) => assert_eq!(ours, theirs),
            Err(e) => eprintln!("not compared with dpkg-shlibdeps: {e:#}"),
        }
    }

    #[test]
    fn copyright_is_machine_readable() {
        let mit = read(&crate::workspace_root().join("LICENSE-MIT")).unwrap();
        let c = copyright(&mit, Some("https://example.invalid/etherws")).unwrap();
        assert!(c.starts_with("Format: https://www.debian.org/doc/packaging-manuals/"));
        assert!(
            c.contains("\nCopyright: 2026 The etherws developers\n"),
            "{c}"
        );
        assert!(c.contains("\n Permission is hereby granted"), "{c}");
        // Continuation lines are never empty: a blank line ends a paragraph.
        let mit_paragraph = c
            .split("\n\n")
            .find(|p| p.starts_with("License: MIT"))
            .unwrap();
        assert!(mit_paragraph.lines().skip(1).all(|l| l.starts_with(' ')));
    }
}
