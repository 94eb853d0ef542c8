//! `cargo xtask dist`: shell completions (bash, zsh, fish) with `clap_complete` and man pages
//! with `clap_mangen`, generated from etherws's own command line (`etherws::command`), so they
//! say what `--help` says: `target/dist/completions/` and `target/dist/man/`.
//!
//! There is one man page per command, as `clap_mangen` names them: `etherws.1`, `etherws-sw.1`,
//! `etherws-ctl.1`, and one for each `ctl` subcommand (`etherws-ctl-listport.1`,
//! `etherws-ctl-addport-tap.1`…), which the SUBCOMMANDS section of their parent refers to.
//!
//! It runs in-process in milliseconds and is idempotent: a file is written only when its
//! contents change, and the pages of commands that no longer exist are removed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::{Generator, Shell};
use clap_mangen::Man;

/// The shells completions are made for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The name of the program the completions and pages are for.
const BIN: &str = "etherws";

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct Dist {
    /// The completion scripts: `etherws.bash`, `_etherws`, `etherws.fish`.
    pub completions: Vec<(Shell, PathBuf)>,
    /// The man pages (section 1), `etherws.1` first.
    pub man_pages: Vec<PathBuf>,
    /// How many files were written because they were new or had changed.
    pub written: usize,
}

/// Generates the completions into `dir/completions/` and the man pages into `dir/man/`.
pub fn generate(dir: &Path) -> anyhow::Result<Dist> {
    let completions_dir = dir.join("completions");
    let man_dir = dir.join("man");
    for d in [&completions_dir, &man_dir] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut written = 0;

    let mut completions = Vec::new();
    for shell in SHELLS {
        let mut cmd = etherws::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, BIN, &mut script);
        let path = completions_dir.join(shell.file_name(BIN));
        written += usize::from(write_if_changed(&path, &script)?);
        completions.push((shell, path));
    }

    let mut pages = Vec::new();
    let mut cmd = etherws::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, &mut pages)?;
    let mut man_pages = Vec::new();
    for (name, text) in &pages {
        let path = man_dir.join(name);
        written += usize::from(write_if_changed(&path, text)?);
        man_pages.push(path);
    }
    // Pages of commands that are gone.
    for entry in fs::read_dir(&man_dir).with_context(|| format!("{}", man_dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") && !man_pages.contains(&path) {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(Dist {
        completions,
        man_pages,
        written,
    })
}

/// The man page of `cmd` (built) and those of its subcommands, depth first, as (file name,
/// roff text).
fn man_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let man = Man::new(cmd.clone())
        .source(format!("{BIN} {version}"))
        .manual("etherws manual");
    let mut text = Vec::new();
    man.render(&mut text)?;
    text.extend_from_slice(extra_sections(&man.get_filename()).as_bytes());
    pages.push((man.get_filename(), text));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, pages)?;
    }
    Ok(())
}

/// FILES and SEE ALSO, which clap does not know about (roff).
fn extra_sections(page: &str) -> String {
    let mut s = String::new();
    if page == "etherws.1" || page == "etherws-sw.1" {
        s.push_str(
            ".SH FILES\n\
             .TP\n\
             \\fI/etc/etherws/etherws.toml\\fR\n\
             The configuration file the systemd unit starts the switch with: its settings and the \
             ports it creates at start.\n\
             .TP\n\
             \\fI/lib/systemd/system/etherws.service\\fR\n\
             The systemd unit (Debian package): \\fBetherws sw \\-\\-foreground \\-\\-config \
             /etc/etherws/etherws.toml\\fR with only the capabilities a switch needs.\n",
        );
    }
    let see_also = match page {
        "etherws.1" => "\\fBetherws\\-sw\\fR(1), \\fBetherws\\-ctl\\fR(1)",
        "etherws-sw.1" => "\\fBetherws\\fR(1), \\fBetherws\\-ctl\\fR(1), \\fBsystemctl\\fR(1)",
        _ => "\\fBetherws\\fR(1), \\fBetherws\\-sw\\fR(1), \\fBetherws\\-ctl\\fR(1)",
    };
    s.push_str(&format!(
        ".SH SEE ALSO\n{see_also}\n.PP\n\
         The README and the pages of \\fIdocs/\\fR it maps \
         (\\fI/usr/share/doc/etherws/README.md\\fR and \\fI/usr/share/doc/etherws/docs/\\fR \
         when installed from the Debian package) cover configuration, TLS, authentication, \
         eBPF offload and deployment.\n"
    ));
    s
}

/// Writes `contents` to `path` unless it already holds exactly that; true if it wrote.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_for_every_command() {
        let dir = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = generate(&dir).unwrap();
        let names: Vec<String> = d
            .man_pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "etherws.1",
            "etherws-sw.1",
            "etherws-ctl.1",
            "etherws-ctl-listport.1",
            "etherws-ctl-addport-client.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let sw = fs::read_to_string(dir.join("man/etherws-sw.1")).unwrap();
        assert!(
            sw.starts_with(".ie") || sw.contains(".TH etherws-sw 1"),
            "{sw}"
        );
        assert!(
            sw.contains("ETHERWS_AGEOUT") && sw.contains(".SH FILES"),
            "{sw}"
        );
        let bash = fs::read_to_string(dir.join("completions/etherws.bash")).unwrap();
        assert!(
            bash.contains("--ctlurl") && bash.contains("listport"),
            "{bash}"
        );
        assert!(dir.join("completions/_etherws").is_file());
        assert!(dir.join("completions/etherws.fish").is_file());
        // Idempotent: a second run writes nothing, and a stale page goes.
        fs::write(dir.join("man/etherws-gone.1"), "").unwrap();
        let again = generate(&dir).unwrap();
        assert_eq!(again.written, 0);
        assert!(!dir.join("man/etherws-gone.1").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
