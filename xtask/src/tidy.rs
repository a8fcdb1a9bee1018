//! Tidy checks: the crate layering law and source hygiene. Run by
//! `cargo xtask tidy` and, as a `#[test]`, by every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The allowed internal dependency edges (normal and dev): `contracts` ←
/// `landscape` ← `engine`; `plugins` use only `contracts`; `cli` wires
/// everything; `tests` drives the binary and reads the Landscape.
const ALLOWED: &[(&str, &[&str])] = &[
    ("contracts", &[]),
    ("landscape", &["contracts", "test-support"]),
    ("engine", &["contracts", "landscape", "test-support"]),
    ("plugins", &["contracts"]),
    ("cli", &["contracts", "landscape", "engine", "plugins"]),
    ("tests", &["contracts", "landscape", "test-support"]),
    ("test-support", &[]),
    ("xtask", &["contracts", "landscape", "test-support"]),
];

/// Internal dependency edges of the workspace, from `cargo metadata`.
pub(crate) fn internal_edges(root: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"].as_array().ok_or_else(|| anyhow::format_err!("cargo metadata has no packages"))?;
    let members: BTreeSet<String> = packages.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
    let mut edges = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let deps: BTreeSet<String> = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|dep| dep["name"].as_str())
            .filter(|dep| members.contains(*dep))
            .map(str::to_owned)
            .collect();
        edges.insert(name, deps);
    }
    Ok(edges)
}

pub(crate) fn layering_violations(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (krate, deps) in edges {
        let Some(permitted) = allowed.get(krate.as_str()) else {
            problems.push(format!("crate `{krate}` is not in the layering table of xtask/src/tidy.rs"));
            continue;
        };
        for dep in deps {
            if !permitted.contains(&dep.as_str()) {
                problems.push(format!("`{krate}` may not depend on `{dep}` (allowed: {permitted:?})"));
            }
        }
    }
    problems
}

/// Every `.rs` file starts with a `//!` doc comment saying what it owns, and
/// every crate root forbids unsafe code.
pub(crate) fn hygiene_violations(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        visit(&root.join(dir), &mut |path| {
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                return Ok(());
            }
            let text = std::fs::read_to_string(path)?;
            let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{rel}: module does not start with a `//!` doc comment"));
            }
            let is_root = path.ends_with("src/lib.rs") || path.ends_with("src/main.rs");
            if is_root && !text.contains("#![forbid(unsafe_code)]") {
                problems.push(format!("{rel}: crate root lacks #![forbid(unsafe_code)]"));
            }
            if text.contains(concat!("#[", "ignore")) {
                problems.push(format!("{rel}: ignored tests are not allowed (no ignore attribute)"));
            }
            if text.lines().any(|line| line.ends_with(' ') || line.ends_with('\t')) {
                problems.push(format!("{rel}: trailing whitespace"));
            }
            Ok(())
        })?;
    }
    Ok(problems)
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target" || n == "snapshots") {
                continue;
            }
            visit(&path, f)?;
        } else {
            f(&path)?;
        }
    }
    Ok(())
}

pub(crate) fn check(root: &Path) -> anyhow::Result<()> {
    let mut problems = layering_violations(&internal_edges(root)?);
    problems.extend(hygiene_violations(root)?);
    if problems.is_empty() {
        eprintln!("==> tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    anyhow::bail!("{} tidy problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        check(&crate::workspace_root()).expect("tidy");
    }

    #[test]
    fn a_forbidden_edge_is_reported() {
        let mut edges = BTreeMap::new();
        edges.insert("plugins".to_owned(), BTreeSet::from(["landscape".to_owned()]));
        edges.insert("contracts".to_owned(), BTreeSet::new());
        let problems = layering_violations(&edges);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("`plugins` may not depend on `landscape`"));
    }
}
