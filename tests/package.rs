//! The Debian package of `cargo xtask deb`, built, installed, started and removed.
//!
//! The package is built here with xtask's own code (the `xtask` library: [`xtask::dist`] and
//! [`xtask::deb`]) from the binary cargo has just built for these tests, so no nested cargo runs
//! inside `cargo test`, and the dev build packs in a second (debug info stripped, gzip -1). It is
//! installed with `dpkg --root` into a private directory with an empty dpkg database of its own,
//! never into the host's root: `--force-depends` because that database knows no libc6, and
//! `--force-script-chrootless` because the directory has no shell to chroot into. The maintainer
//! scripts then run with `DPKG_ROOT` set, which they honour. The installed switch is started
//! with its unit's `ExecStart` (paths moved into the private root), in a network namespace of
//! its own, and must answer `etherws ctl listport`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etherws_testkit::*;
use xtask::deb::{Compression, Deb};

/// `dpkg-deb --field`'s fields (continuation lines joined with `\n`).
fn fields(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if let Some(more) = line.strip_prefix(' ') {
            let v: &mut String = map.get_mut(&last).expect("a continuation after a field");
            v.push('\n');
            v.push_str(more);
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_string();
            map.insert(last.clone(), v.trim().to_string());
        }
    }
    map
}

/// `dpkg-deb --contents`: path (`/usr/bin/etherws`, directories with a trailing `/`) → (mode
/// string, owner/group).
fn contents(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let path = cells.get(5)?.strip_prefix('.')?;
            Some((
                path.to_string(),
                (cells[0].to_string(), cells[1].to_string()),
            ))
        })
        .collect()
}

/// `dpkg --root ROOT ARGS…` with its log in the root too: nothing of the host's dpkg is touched.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let root_opt = format!("--root={}", root.display());
    let log_opt = format!("--log={}", root.join("var/log/dpkg.log").display());
    let mut argv = vec!["dpkg", &root_opt, &log_opt, "--force-script-chrootless"];
    argv.extend_from_slice(args);
    run_ok(&argv)
}

#[test]
fn deb_installs_into_a_private_root_and_its_switch_answers() {
    if !needs(&["dpkg", "dpkg-deb", "gzip", "ip"]) {
        return;
    }
    let tmp = TempDir::new("deb");
    let dist = xtask::dist::generate(&tmp.path().join("dist")).expect("cargo xtask dist");
    let binary = PathBuf::from(bin());
    let built = xtask::deb::build(&Deb {
        binary: &binary,
        dist: &dist,
        out_dir: &tmp.path().join("out"),
        compression: Compression::Fast,
    })
    .expect("cargo xtask deb");
    let deb = built.path.to_str().expect("a UTF-8 path").to_string();

    // Its name and control fields.
    let arch = run_ok(&["dpkg", "--print-architecture"]).trim().to_string();
    let version = env!("CARGO_PKG_VERSION").replacen('-', "~", 1);
    assert_eq!(
        built.path.file_name().unwrap().to_string_lossy(),
        format!("etherws_{version}_{arch}.deb")
    );
    let f = fields(&run_ok(&["dpkg-deb", "--field", &deb]));
    for (key, want) in [
        ("Package", "etherws"),
        ("Version", version.as_str()),
        ("Architecture", arch.as_str()),
        ("Section", "net"),
        ("Priority", "optional"),
    ] {
        assert_eq!(f.get(key).map(String::as_str), Some(want), "{key} in {f:?}");
    }
    assert!(f["Maintainer"].contains('@'), "{f:?}");
    assert!(f["Depends"].starts_with("libc6 (>= 2."), "{f:?}");
    assert!(f["Installed-Size"].parse::<u64>().unwrap() > 0, "{f:?}");
    assert!(
        f["Description"].starts_with("Ethernet over WebSocket") && f["Description"].contains('\n'),
        "a synopsis and a long description: {f:?}"
    );
    let info = run_ok(&["dpkg-deb", "--info", &deb]);
    for member in [
        "control",
        "conffiles",
        "md5sums",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(&format!(" {member} ")), "{member} in\n{info}");
    }
    assert_eq!(
        run_ok(&["dpkg-deb", "--info", &deb, "conffiles"]),
        "/etc/etherws/etherws.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = run_ok(&["dpkg-deb", "--info", &deb, script]);
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("\nset -e\n"),
            "{script}:\n{text}"
        );
        let path = tmp.write(script, &text);
        run_ok(&["sh", "-n", &path]);
    }

    // What it holds, with the owners and modes promised.
    let listed = contents(&run_ok(&["dpkg-deb", "--contents", &deb]));
    let mut promised = vec![
        ("/usr/bin/etherws", "-rwxr-xr-x"),
        ("/lib/systemd/system/etherws.service", "-rw-r--r--"),
        ("/etc/etherws/", "drwxr-x---"),
        ("/etc/etherws/etherws.toml", "-rw-------"),
        (
            "/usr/share/bash-completion/completions/etherws",
            "-rw-r--r--",
        ),
        ("/usr/share/zsh/vendor-completions/_etherws", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/etherws.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/etherws/README.md", "-rw-r--r--"),
        ("/usr/share/doc/etherws/copyright", "-rw-r--r--"),
        ("/usr/share/doc/etherws/docs/", "drwxr-xr-x"),
    ];
    // Beside the README, the pages it maps (and their images), so its links work there too.
    let docs: Vec<String> = xtask::deb::doc_pages(&etherws_testkit::docs::root())
        .expect("docs/")
        .iter()
        .map(|name| format!("/usr/share/doc/etherws/docs/{name}"))
        .collect();
    for page in ["tls.md", "production.md", "status.png"] {
        let path = format!("/usr/share/doc/etherws/docs/{page}");
        assert!(docs.contains(&path), "{path} in {docs:?}");
    }
    for page in &docs {
        promised.push((page, "-rw-r--r--"));
    }
    let pages: Vec<String> = dist
        .man_pages
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            format!("/usr/share/man/man1/{name}.gz")
        })
        .collect();
    for page in &pages {
        promised.push((page, "-rw-r--r--"));
    }
    for name in ["etherws", "etherws-sw", "etherws-ctl"] {
        let page = format!("/usr/share/man/man1/{name}.1.gz");
        assert!(pages.contains(&page), "{page} in {pages:?}");
    }
    for (path, mode) in &promised {
        let Some((m, owner)) = listed.get(*path) else {
            panic!("{path} not in the package: {listed:#?}");
        };
        assert_eq!((m.as_str(), owner.as_str()), (*mode, "root/root"), "{path}");
    }
    for (path, (_, owner)) in &listed {
        assert_eq!(owner, "root/root", "{path}");
    }

    // Installed into a private root with an empty dpkg database of its own.
    let root = tmp.path().join("root");
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(dir)).unwrap();
    }
    fs::create_dir_all(root.join("var/log")).unwrap();
    fs::write(admin.join("status"), "").unwrap();
    // `--path-include` undoes a `path-exclude` of the host's dpkg.cfg.d (slim images drop
    // /usr/share/man and /usr/share/doc); here every file must land.
    dpkg(&root, &["--force-depends", "--path-include=/*", "-i", &deb]);
    let status = dpkg(&root, &["--status", "etherws"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    // Every file as packed (md5sums).
    dpkg(&root, &["--verify", "etherws"]);
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    for (path, mode) in &promised {
        let meta = fs::symlink_metadata(at(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let perms = meta.permissions().mode() & 0o777;
        let want = mode
            .chars()
            .skip(1)
            .fold(0, |m, c| m << 1 | u32::from(c != '-'));
        assert_eq!(perms, want, "{path}: {perms:o}");
    }
    let page = at("/usr/share/man/man1/etherws-sw.1.gz");
    let roff = run_ok(&["gzip", "-dc", page.to_str().unwrap()]);
    assert!(roff.contains(".TH etherws-sw 1"), "{roff}");
    let bash = at("/usr/share/bash-completion/completions/etherws");
    run_ok(&["bash", "-n", bash.to_str().unwrap()]);

    // The unit runs the installed binary on the shipped configuration, hardening kept.
    let unit = fs::read_to_string(at("/lib/systemd/system/etherws.service")).unwrap();
    // Its documentation is what the package installs: man pages and files, nothing else.
    let documentation: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("Documentation="))
        .expect("a Documentation line")
        .split_whitespace()
        .collect();
    assert!(!documentation.is_empty(), "{unit}");
    for doc in documentation {
        let installed = if let Some(page) = doc.strip_prefix("man:") {
            let (name, section) = page
                .strip_suffix(')')
                .and_then(|p| p.split_once('('))
                .unwrap_or_else(|| panic!("Documentation={doc}: not man:NAME(N)"));
            format!("/usr/share/man/man{section}/{name}.{section}.gz")
        } else if let Some(path) = doc.strip_prefix("file://") {
            path.to_string()
        } else {
            panic!("Documentation={doc}: not installed by the package");
        };
        assert!(
            listed.contains_key(installed.as_str()),
            "Documentation={doc}: {installed} not in the package"
        );
    }
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(line), "{line} in the unit:\n{unit}");
    }
    let exec_start: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line")
        .split_whitespace()
        .collect();
    assert_eq!(
        exec_start,
        [
            "/usr/bin/etherws",
            "sw",
            "--foreground",
            "--config",
            "/etc/etherws/etherws.toml"
        ]
    );
    let installed = at(exec_start[0]).to_string_lossy().into_owned();
    let argv: Vec<String> = exec_start
        .iter()
        .map(|a| match a.starts_with('/') {
            true => at(a).to_string_lossy().into_owned(),
            false => a.to_string(),
        })
        .collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();

    // Started the way systemd would, in a namespace of its own: it answers on loopback.
    let ns = Netns::new("deb");
    let log = tmp.path().join("switch.log");
    let switch = ns.daemon_with_log(&argv, &log);
    let ports = poll(
        "the installed switch to answer ctl listport",
        Duration::from_secs(10),
        || {
            let mut ctl = ns.command(&[&installed, "ctl", "listport"]);
            clear_proxy_env(&mut ctl);
            let out = ctl.output().map_err(|e| e.to_string())?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && header(&stdout).first().map(String::as_str) == Some("Port") {
                Ok(parse_ports(&stdout))
            } else {
                let log = fs::read_to_string(&log).unwrap_or_default();
                Err(format!("{}\nswitch log:\n{log}", show(&out)))
            }
        },
    );
    assert!(
        ports.is_empty(),
        "the shipped configuration has no ports: {ports:?}"
    );
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("ws_addr=127.0.0.1:8080") && log_text.contains("ctl_addr=127.0.0.1:7867"),
        "the shipped configuration listens on loopback only:\n{log_text}"
    );
    drop(switch);

    // Removed: the configuration stays. Purged: the packaged file and the link `systemctl
    // enable` made go, and /etc/etherws stays only for what the administrator added.
    dpkg(&root, &["--remove", "etherws"]);
    assert!(!at("/usr/bin/etherws").exists());
    assert!(at("/etc/etherws/etherws.toml").is_file());
    let wants = at("/etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/etherws.service",
        wants.join("etherws.service"),
    )
    .unwrap();
    fs::write(at("/etc/etherws/htpasswd"), "alice:x\n").unwrap();
    dpkg(&root, &["--purge", "etherws"]);
    assert!(fs::symlink_metadata(wants.join("etherws.service")).is_err());
    assert!(!at("/etc/etherws/etherws.toml").exists());
    assert!(
        at("/etc/etherws/htpasswd").is_file(),
        "the administrator's file stays"
    );
    let root_opt = format!("--root={}", root.display());
    let status = run(&["dpkg", &root_opt, "--status", "etherws"]);
    assert!(!status.status.success(), "purged:\n{}", show(&status));
}
