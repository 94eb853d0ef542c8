//! The documentation itself: README.md, ARCHITECTURE.md and `docs/*.md`.
//!
//! Every relative link between the pages (and to the repository's files) resolves, anchors
//! included; the README stays short; and the configuration file examples the pages show are
//! files `etherws sw --check-config` accepts, read from the pages as they stand (with the files
//! they name made beside them). The other examples are checked where they are run: the
//! certificate recipes of `docs/tls.md` by `tests/mtls.rs`, the nginx and HAProxy
//! configurations of `docs/reverse-proxies.md` by `tests/proxies.rs`, the DHCP and NAT recipe of
//! `docs/dhcp-nat.md` by `tests/mesh_dhcp.rs`, the BGP EVPN recipe of `docs/networks.md` by
//! `tests/evpn.rs` (each asserts that the page shows what it runs, with
//! `etherws_testkit::docs::assert_shows` or by reading the commands from the page).

use std::collections::HashMap;
use std::path::Path;

use etherws_testkit::docs::{self, anchors, links, page, pages, root};
use etherws_testkit::*;

/// The README's length, at most: what it is, the quick start, the basic example, the map of
/// the documentation and the security warning; everything else is in `docs/`.
const README_MAX_LINES: usize = 400;

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = root();
    let mut anchors_of: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    let pages = pages();
    assert!(
        pages.len() > 10,
        "README, ARCHITECTURE and the docs/ pages: {pages:?}"
    );
    for name in &pages {
        let text = page(name);
        let dir = Path::new(name).parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            // The target, named from the root ("" for the page itself).
            let target = if path.is_empty() {
                name.clone()
            } else {
                let joined = dir.join(path);
                let mut parts: Vec<String> = Vec::new();
                for c in joined.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            if parts.pop().is_none() {
                                broken.push(format!("{name}: {link} leaves the repository"));
                            }
                        }
                        std::path::Component::CurDir => {}
                        c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
                    }
                }
                parts.join("/")
            };
            if !root.join(&target).exists() {
                broken.push(format!("{name}: {link}: no {target}"));
                continue;
            }
            if let Some(anchor) = anchor {
                if !target.ends_with(".md") {
                    broken.push(format!(
                        "{name}: {link}: an anchor in a file that is no page"
                    ));
                    continue;
                }
                let known = anchors_of
                    .entry(target.clone())
                    .or_insert_with(|| anchors(&page(&target)));
                if !known.contains(anchor) {
                    broken.push(format!("{name}: {link}: no heading #{anchor} in {target}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_reachable_from_the_readme() {
    let readme = links(&page("README.md"));
    for name in pages().iter().filter(|p| p.as_str() != "README.md") {
        assert!(
            readme
                .iter()
                .any(|l| l.split('#').next() == Some(name.as_str())),
            "README.md's map of the documentation does not link {name}"
        );
    }
}

#[test]
fn the_readme_stays_short() {
    let n = page("README.md").lines().count();
    assert!(
        n <= README_MAX_LINES,
        "README.md has {n} lines, more than {README_MAX_LINES}: move the details into docs/"
    );
}

#[test]
fn anchors_are_those_github_makes() {
    let text = "# etherws\n## Using SSL/TLS\n### One command: `contrib/etherws-lan-gateway`\n\
                ## Caveats (veth and other virtual devices)\n```sh\n# a comment\n```\n## Limits\n## Limits\n";
    let mut got: Vec<String> = anchors(text).into_iter().collect();
    got.sort();
    assert_eq!(
        got,
        [
            "caveats-veth-and-other-virtual-devices",
            "etherws",
            "limits",
            "limits-1",
            "one-command-contribetherws-lan-gateway",
            "using-ssltls",
        ]
    );
    assert_eq!(
        links("see [`/metrics`](#metrics), `[[port]](x)` and ![a](b.png)\n```\n[c](d)\n```\n"),
        ["#metrics", "b.png"]
    );
    assert_eq!(
        docs::fenced_blocks(
            "1. a\n\n   ```sh\n   x \\\n       y\n   ```\n```toml\nz\n```\n",
            "sh"
        ),
        ["x \\\n    y\n"]
    );
}

/// The files a configuration example names, made in `dir`: keys and certificates from a CA of
/// the test's, htpasswd files, password files.
fn make_named_files(dir: &TempDir, config: &str) {
    let pki = Pki::new("docs-pki");
    let ca = pki.ca("docs");
    let server = pki.server(&ca, "sw", &["198.51.100.1"], KeyForm::Pkcs8);
    let client = pki.client(&ca, "nodeb", KeyForm::Pkcs8);
    let copy = |from: &str, to: &str| {
        std::fs::copy(from, dir.file(to)).unwrap_or_else(|e| panic!("copy {from}: {e}"));
    };
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        match key.trim() {
            "sslkey" | "ctlsslkey" => copy(&server.key, value),
            "sslcert" | "ctlsslcert" => copy(&server.cert, value),
            "cacerts" | "sslclientca" | "ctlsslclientca" => copy(&ca.cert, value),
            "cert" => copy(&client.cert, value),
            "key" => copy(&client.key, value),
            "htpasswd" | "ctlhtpasswd" => {
                run_ok(&["htpasswd", "-cbB", &dir.file(value), "alice", "alice-pw"]);
            }
            "passwd_file" => {
                dir.write(value, "alice-pw\n");
            }
            _ => {}
        }
    }
}

/// Runs `etherws sw --check-config FILE ARGS` and asserts that it accepts the file.
fn check_config(file: &str, args: &[&str]) -> String {
    let out = etherws(None)
        .args(["sw", "--check-config", file])
        .args(args)
        .output()
        .expect("run etherws sw --check-config");
    assert!(
        out.status.success(),
        "etherws sw --check-config {file} refuses the example:\n{}\n{}",
        std::fs::read_to_string(file).unwrap_or_default(),
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_configuration_file_examples_pass_check_config() {
    if !(require_tool("openssl") && require_tool("htpasswd")) {
        return;
    }
    // Each page's configuration file examples: the TOML blocks with a table.
    let mut checked = 0;
    for name in ["docs/production.md", "docs/networks.md"] {
        let configs: Vec<String> = docs::fenced_blocks(&page(name), "toml")
            .into_iter()
            .filter(|b| b.lines().any(|l| l.starts_with('[')))
            .collect();
        assert!(!configs.is_empty(), "{name} shows no configuration file");
        for (i, config) in configs.iter().enumerate() {
            let dir = TempDir::new("docs-config");
            make_named_files(&dir, config);
            let file = dir.write("etherws.toml", config);
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod 0600");
            let said = check_config(&file, &[]);
            assert!(said.contains(": OK ("), "{name}, example {i}: {said}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} configuration file examples");
}

#[test]
fn the_logging_configuration_example_is_accepted() {
    // The TOML block of "Logging" without a table: `filter` and `output`.
    let logconf = docs::fenced_blocks(&page("docs/production.md"), "toml")
        .into_iter()
        .find(|b| b.contains("filter = "))
        .expect("docs/production.md shows a logging configuration");
    let dir = TempDir::new("docs-logconf");
    let file = dir.write("logconf.toml", &logconf);
    let config = dir.write("etherws.toml", "[switch]\n");
    check_config(&config, &["--logconf", &file]);
}

/// A shell example that serves a path with its own htpasswd file (`htpasswd:FILE`) creates that
/// file in the same block (`htpasswd -c … FILE user`): copied as it is, it starts.
#[test]
fn shell_examples_create_the_htpasswd_files_they_name() {
    for name in pages() {
        let text = page(&name);
        let mut in_sh = false;
        let mut block = String::new();
        for line in text.lines() {
            let fence = line.trim_start();
            if !in_sh && (fence == "```sh" || fence == "```bash" || fence == "```console") {
                in_sh = true;
                block.clear();
            } else if in_sh && fence == "```" {
                in_sh = false;
                for (at, _) in block.match_indices("htpasswd:") {
                    let file: String = block[at + "htpasswd:".len()..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '\\' | '"'))
                        .collect();
                    let created = block.lines().any(|l| {
                        let l = l.trim_start();
                        l.starts_with("htpasswd ") && l.split_whitespace().any(|w| w == file)
                    });
                    assert!(
                        created,
                        "{name}: an example serves htpasswd:{file} but never creates it:\n{block}"
                    );
                }
            } else if in_sh {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
}
