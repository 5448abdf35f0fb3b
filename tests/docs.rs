//! The documentation in `docs/` stays in step with the code: every config key the reader
//! accepts is documented in docs/configuration.md, and every reference to a docs page (in the
//! code's comments, the README and the pages themselves) names a page and a heading that exist.
//! No comment cites the out-of-tree product contract (`SPEC §N`) any more.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation other than `-` and `_`
/// dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(page).unwrap();
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `docs/<page>.md[#anchor]` in `text`, as (page, anchor).
fn docs_refs(text: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let page: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let after = &tail[page.len()..];
        if let Some(after) = after.strip_prefix(".md") {
            let anchor = after.strip_prefix('#').map(|a| {
                a.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            });
            out.push((format!("{page}.md"), anchor));
        }
        rest = tail;
    }
    out
}

/// Checks every docs reference in `text` (found after `prefix`), recording what is wrong.
fn check_refs(from: &Path, text: &str, prefix: &str, problems: &mut Vec<String>) -> usize {
    let refs = docs_refs(text, prefix);
    for (page, anchor) in &refs {
        let target = root().join("docs").join(page);
        if !target.exists() {
            problems.push(format!("{}: docs/{page} does not exist", from.display()));
        } else if let Some(a) = anchor.as_ref().filter(|a| !a.is_empty())
            && !anchors(&target).contains(a)
        {
            problems.push(format!(
                "{}: docs/{page} has no heading #{a}",
                from.display()
            ));
        }
    }
    refs.len()
}

#[test]
fn docs_references_name_existing_pages_and_headings() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        if f.ends_with("tests/docs.rs") {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        checked += check_refs(f, &text, "docs/", &mut problems);
        for (n, line) in text.lines().enumerate() {
            if line.contains("SPEC §") {
                problems.push(format!(
                    "{}:{}: cites SPEC §; point to the docs/ page instead",
                    f.display(),
                    n + 1
                ));
            }
        }
    }
    let readme = root().join("README.md");
    let text = fs::read_to_string(&readme).unwrap();
    checked += check_refs(&readme, &text, "docs/", &mut problems);
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let page = entry.unwrap().path();
        // Pages link each other as `(other.md#anchor)`.
        let text = fs::read_to_string(&page).unwrap().replace("](", "](docs/");
        checked += check_refs(&page, &text, "](docs/", &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 40,
        "only {checked} references found: is the scan broken?"
    );
}

/// Every key a config section reader matches on (`"key" =>` arms in src/config/) appears as
/// `` `key` `` in docs/configuration.md, so a new key cannot land undocumented.
#[test]
fn every_config_key_is_documented() {
    let doc = fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src/config"), &mut files);
    let mut keys = BTreeSet::new();
    for f in files {
        for line in fs::read_to_string(&f).unwrap().lines() {
            let t = line.trim_start();
            let Some(body) = t.strip_prefix('"') else {
                continue;
            };
            let Some(end) = body.find('"') else { continue };
            let (key, after) = body.split_at(end);
            let arm = after[1..].trim_start();
            if (arm.starts_with("=>") || arm.starts_with("if "))
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                keys.insert(key.to_string());
            }
        }
    }
    assert!(
        keys.len() > 40 && keys.contains("max_body_bytes") && keys.contains("responses_mcp_items"),
        "the key scan found only {keys:?}"
    );
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| {
            !doc.contains(&format!("`{k}`"))
                && !doc.contains(&format!(".{k}`"))
                && !doc.contains(&format!("`{k}."))
                && !doc.contains(&format!("`{k}[]`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config keys missing from docs/configuration.md: {missing:?}"
    );
}

/// Every repository path the pages name in backticks (`src/…`, `tests/…`, `deploy/…`, …)
/// exists, so a moved file cannot leave the docs pointing nowhere.
#[test]
fn paths_named_in_the_docs_exist() {
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.push(root().join("README.md"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for page in pages {
        let text = fs::read_to_string(&page).unwrap();
        for quoted in text.split('`').skip(1).step_by(2) {
            let dir = quoted.split('/').next().unwrap_or("");
            let is_path = quoted.contains('/')
                && ["src", "tests", "deploy", "fuzz", "bench", "scripts"].contains(&dir)
                && quoted
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b));
            if is_path {
                seen += 1;
                if !root().join(quoted).exists() {
                    missing.push(format!("{}: {quoted}", page.display()));
                }
            }
        }
    }
    assert!(seen > 20, "only {seen} paths found: is the scan broken?");
    assert!(missing.is_empty(), "paths that do not exist: {missing:#?}");
}
