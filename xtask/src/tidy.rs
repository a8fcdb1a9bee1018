//! Tidy checks: the crate layering law and source hygiene. Run by
//! `cargo xtask tidy` and, as a `#[test]`, by every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The allowed internal dependency edges (normal and dev): `contracts` ←
/// `landscape` ← `engine`; `plugins` use only `contracts`; `cli` wires
/// everything; `tests` drives the binary and reads the Landscape;
/// `chaosllm` (the fake LLM server) stands alone, used by tests and benches.
const ALLOWED: &[(&str, &[&str])] = &[
    ("contracts", &[]),
    // `landscape` dev-depends on itself to turn on `test-hooks` for its own tests.
    ("landscape", &["contracts", "landscape", "test-support"]),
    ("engine", &["contracts", "landscape"]),
    ("plugins", &["contracts"]),
    ("cli", &["contracts", "landscape", "engine", "plugins"]),
    ("tests", &["chaosllm", "contracts", "landscape", "test-support"]),
    ("test-support", &[]),
    ("chaosllm", &[]),
    ("xtask", &["chaosllm", "contracts", "landscape", "test-support"]),
];

/// The engine's modules (executors one by one) and the engine modules each
/// may import: `runtime` is the leaf every run module shares, executors see
/// no other executor, the processor moves tokens between them, recovery and
/// registration build on the processor, the orchestrator on everything.
/// An import not listed here, or any circle among the imports, fails tidy.
const ENGINE_MODULES: &[(&str, &[&str])] = &[
    ("expression", &[]),
    ("settings", &["expression"]),
    ("dag", &["expression", "settings"]),
    ("ownership", &[]),
    ("pipeline", &["dag", "settings"]),
    ("runtime", &["dag", "decisions", "settings"]),
    ("decisions", &["expression", "settings"]),
    ("executors", &["runtime"]),
    ("executors/transform", &["dag", "decisions", "runtime", "settings"]),
    ("executors/pool", &["dag", "executors/transform", "runtime", "settings"]),
    ("executors/gate", &["dag", "expression", "runtime"]),
    ("executors/aggregation", &["dag", "decisions", "runtime", "settings"]),
    ("executors/coalesce", &["dag", "decisions", "runtime", "settings"]),
    ("executors/sink", &["dag", "runtime"]),
    (
        "processor",
        &[
            "dag",
            "executors/aggregation",
            "executors/coalesce",
            "executors/gate",
            "executors/pool",
            "executors/sink",
            "executors/transform",
            "runtime",
        ],
    ),
    ("registration", &["dag", "ownership", "pipeline", "processor", "runtime", "settings"]),
    (
        "recovery",
        &[
            "dag",
            "executors/aggregation",
            "executors/coalesce",
            "executors/sink",
            "ownership",
            "pipeline",
            "processor",
            "registration",
            "runtime",
        ],
    ),
    ("orchestrator", &["pipeline", "processor", "recovery", "registration", "runtime"]),
];

/// The engine module a file under `crates/engine/src` belongs to: its first
/// path component, or `executors/<name>` for an executor.
fn engine_module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    match parts.as_slice() {
        [root] if root == "lib" => None,
        [top, executor, ..] if top == "executors" && executor != "mod" => Some(format!("executors/{executor}")),
        [top, ..] => Some(top.clone()),
        [] => None,
    }
}

/// The engine modules a file refers to through `crate::` (and `super::`
/// inside `executors`), with `executors::x` as `executors/x`.
fn engine_imports(module: &str, text: &str) -> BTreeSet<String> {
    let mut imports = BTreeSet::new();
    let mut add = |first: &str, second: Option<&str>| {
        let target = match (first, second) {
            ("executors", Some(executor)) if executor.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                format!("executors/{executor}")
            }
            _ => first.to_owned(),
        };
        if target != module {
            imports.insert(target);
        }
    };
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':' || *c == '{' || *c == ',' || *c == ' ')
            .collect();
        if let Some(group) = path.strip_prefix('{') {
            for item in group.split(',') {
                let item = item.trim();
                let mut parts = item.split("::");
                if let Some(first) = parts.next().filter(|f| !f.is_empty()) {
                    add(first, parts.next());
                }
            }
        } else {
            let mut parts = path.split("::");
            if let Some(first) = parts.next().filter(|f| !f.is_empty()) {
                add(first.trim(), parts.next().map(|p| p.split(['{', ',', ' ']).next().unwrap_or(p)));
            }
        }
    }
    if module.starts_with("executors/") {
        let mut rest = text;
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                imports.insert(format!("executors/{name}"));
            }
        }
    }
    imports
}

/// Imports between engine modules, from the source.
pub(crate) fn engine_edges(root: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let src = root.join("crates/engine/src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    visit(&src, &mut |path| {
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            return Ok(());
        }
        let relative = path.strip_prefix(&src).unwrap_or(path);
        // Unit tests (a module's `tests.rs` or `tests/`) may reach anywhere.
        if relative.iter().any(|p| p == "tests" || p == "tests.rs") {
            return Ok(());
        }
        let Some(module) = engine_module_of(relative) else { return Ok(()) };
        let text = std::fs::read_to_string(path)?;
        let imports = engine_imports(&module, &text);
        edges.entry(module).or_default().extend(imports);
        Ok(())
    })?;
    Ok(edges)
}

/// Engine imports the table does not allow, and circles among the imports.
pub(crate) fn engine_module_violations(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ENGINE_MODULES.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, imports) in edges {
        let Some(permitted) = allowed.get(module.as_str()) else {
            problems.push(format!("engine module `{module}` is not in the module table of xtask/src/tidy.rs"));
            continue;
        };
        for import in imports {
            if !permitted.contains(&import.as_str()) {
                problems.push(format!("engine module `{module}` may not import `{import}` (allowed: {permitted:?})"));
            }
        }
    }
    if let Some(circle) = find_circle(edges) {
        problems.push(format!("engine modules import each other in a circle: {}", circle.join(" -> ")));
    }
    problems
}

/// A circle in a directed graph, as the modules along it.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = walk(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| walk(start, edges, &mut Vec::new(), &mut done))
}

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
    problems.extend(engine_module_violations(&engine_edges(root)?));
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
    fn engine_imports_are_found_in_paths_and_groups() {
        let text = "use crate::runtime::{Work};\nuse crate::{recovery, registration};\nuse crate::executors::gate::GateExecutor;\nlet x = super::sink::f();";
        let imports = engine_imports("executors/coalesce", text);
        let expected: BTreeSet<String> =
            ["runtime", "recovery", "registration", "executors/gate", "executors/sink"].into_iter().map(str::to_owned).collect();
        assert_eq!(imports, expected);
    }

    #[test]
    fn an_engine_import_circle_and_a_forbidden_import_are_reported() {
        let mut edges = BTreeMap::new();
        edges.insert("runtime".to_owned(), BTreeSet::from(["processor".to_owned()]));
        edges.insert("processor".to_owned(), BTreeSet::from(["runtime".to_owned()]));
        let problems = engine_module_violations(&edges);
        assert!(problems.iter().any(|p| p.contains("`runtime` may not import `processor`")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("circle: processor -> runtime -> processor")), "{problems:?}");
    }

    #[test]
    fn one_executor_importing_another_is_reported() {
        let mut edges = BTreeMap::new();
        edges.insert("executors/gate".to_owned(), BTreeSet::from(["executors/sink".to_owned()]));
        let problems = engine_module_violations(&edges);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`executors/gate` may not import `executors/sink`"));
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
