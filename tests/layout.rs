//! The layout of `etherws/src` keeps its architecture (ARCHITECTURE.md): every module belongs
//! to a layer, a layer uses only the layers below it, and no modules import each other in a
//! cycle, tests included.
//!
//! Dependencies are read from the source as text: every `crate::…` path (in `use` lists too)
//! and every `super::…` path, resolved to the longest module it names. Comments are skipped,
//! so a doc link does not count as a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: each may use only those before it (and itself).
const LAYERS: &[&str] = &[
    "sys", "base", "wire", "switch", "settings", "port", "offload", "control", "edge", "app",
    // The fuzz targets' entry points reach into every layer.
    "fuzzing",
];

/// Module path (`port::websocket::framing`) → its source.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let mut mods = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        mods.insert(parts.join("::"), std::fs::read_to_string(&file).unwrap());
    }
    mods
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line comments, doc comments included).
fn code(source: &str) -> String {
    source
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The longest module that `path` (`a::b::c`) names.
fn resolve(mods: &BTreeMap<String, String>, path: &[&str]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Paths following `prefix` (`crate::` or `super::`), brace lists expanded one level.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let head: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
            let list = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |e| end + e)];
            for item in list.split(',') {
                let name = item.trim().split([' ', ':']).next().unwrap_or("");
                if !name.is_empty() {
                    let mut p = head.clone();
                    p.push(name);
                    out.push(p);
                }
            }
        }
        out.push(head);
    }
    out
}

/// Where a file's unit tests start.
const TESTS: &str = "#[cfg(test)]\nmod tests";

/// Module → the modules it uses, its own ancestors and descendants aside.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut deps = BTreeMap::new();
    for (name, source) in &mods {
        let code = code(source);
        // `super::` in a file's `mod tests` is the file's module itself.
        let (main, tests) = code.split_at(code.find(TESTS).unwrap_or(code.len()));
        let own: Vec<&str> = name.split("::").collect();
        let parent = &own[..own.len() - 1];
        let mut uses = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            uses.extend(resolve(&mods, &path));
        }
        for (part, base) in [(main, parent), (tests, &own[..])] {
            for path in paths_after(part, "super::") {
                let full: Vec<&str> = base.iter().copied().chain(path).collect();
                uses.extend(resolve(&mods, &full));
            }
        }
        // A module and its own submodules use each other freely (a trait in `port`, its
        // implementations in `port::tap`): that is one module's inside, not a cycle.
        uses.retain(|u| {
            !u.starts_with(&format!("{name}::")) && !name.starts_with(&format!("{u}::"))
        });
        uses.remove(name);
        deps.insert(name.clone(), uses);
    }
    deps
}

#[test]
fn every_module_is_in_a_layer_and_uses_only_layers_below() {
    let rank = |m: &str| LAYERS.iter().position(|l| m.split("::").next() == Some(*l));
    let mut wrong = Vec::new();
    for (module, uses) in dependencies() {
        let Some(mine) = rank(&module) else {
            wrong.push(format!("{module} is in no layer of {LAYERS:?}"));
            continue;
        };
        for used in uses {
            if rank(&used).is_some_and(|theirs| theirs > mine) {
                wrong.push(format!("{module} uses {used}, a layer above it"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let deps = dependencies();
    // Depth-first search; a module met again while still on the stack closes a cycle.
    fn visit<'a>(
        m: &'a str,
        deps: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            cycles.push(format!("{} -> {m}", stack[at..].join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        stack.push(m);
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, stack, done, cycles);
        }
        stack.pop();
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for m in deps.keys() {
        visit(m, &deps, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_dependencies() {
    // A check that reads nothing would pass forever: the switch core is used by the ports.
    let deps = dependencies();
    assert!(deps["port"].contains("switch"), "{:?}", deps["port"]);
    assert!(deps["port::websocket::session"].contains("port::websocket::framing"));
    assert!(deps["app::cli"].contains("settings::values"));
}
