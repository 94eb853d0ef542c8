//! The documentation held to its word: README.md, ARCHITECTURE.md and the pages of `docs/`.
//!
//! A test that runs an example the documentation shows either reads it from the page
//! ([`fenced_blocks`]) or asserts that the page shows it as the test runs it ([`assert_shows`]),
//! so that the page and the test cannot drift apart. [`links`] and [`anchors`] let
//! `tests/docs.rs` check that every relative link between the pages resolves.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The repository's root (the workspace this kit lives in).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit crate lives in the workspace")
        .to_path_buf()
}

/// The text of a page, named from the repository's root (`"docs/tls.md"`).
pub fn page(name: &str) -> String {
    let p = root().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Every page: README.md, ARCHITECTURE.md and `docs/*.md`, named from the repository's root.
pub fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Asserts that `page` shows `block` (which ends with a newline) as a fenced block of the
/// language `lang` (`"sh"`, `"toml"`, `""` for none), exactly as written.
#[track_caller]
pub fn assert_shows(page_name: &str, lang: &str, block: &str) {
    let fenced = format!("```{lang}\n{block}```\n");
    assert!(
        page(page_name).contains(&fenced),
        "{page_name} does not show this example as the test runs it:\n{fenced}"
    );
}

/// The fenced blocks of `lang` in `text`, in order, each with its final newline (a block
/// indented in a list item without that indentation).
pub fn fenced_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // Inside a fence: its indentation, and the block if it is of `lang`.
    let mut inside: Option<(usize, Option<String>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match inside.take() {
            Some((_, block)) if trimmed.starts_with("```") => blocks.extend(block),
            Some((at, mut block)) => {
                if let Some(block) = &mut block {
                    block.push_str(if indent >= at { &line[at..] } else { trimmed });
                    block.push('\n');
                }
                inside = Some((at, block));
            }
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    inside = Some((indent, (info.trim() == lang).then(String::new)));
                }
            }
        }
    }
    blocks
}

/// The lines of `text` outside fenced code blocks.
pub fn outside_fences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if !fence {
            out.push(line);
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces
/// made `-`.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of `text`'s headings (a repeated heading's later ones as GitHub numbers them:
/// `-1`, `-2`…).
pub fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in outside_fences(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of `text`'s Markdown links and images (`[text](target)`), outside code blocks
/// and code spans.
pub fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in outside_fences(text) {
        // Code spans hold brackets that are no links (`[[port]]`).
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            plain.push_str(if i % 2 == 0 { part } else { "code" });
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            match after.find(')') {
                Some(end) => {
                    out.push(after[..end].to_string());
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    out
}
