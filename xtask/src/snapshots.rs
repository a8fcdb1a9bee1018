//! Snapshot hygiene after the test run: no pending snapshot (`.snap.new`,
//! `.pending-snap`) is left, and every committed `.snap` file was used by a
//! test (insta reports each one it reads to `INSTA_SNAPSHOT_REFERENCES_FILE`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `referenced`: the snapshot paths the test run read, one per line.
pub(crate) fn check(root: &Path, referenced: &str) -> anyhow::Result<()> {
    let used: BTreeSet<PathBuf> =
        referenced.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| std::fs::canonicalize(l.trim()).ok()).collect();
    let mut problems = Vec::new();
    for dir in ["crates", "tests"] {
        collect(&root.join(dir), &mut |path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let shown = path.strip_prefix(root).unwrap_or(path).display();
            if name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
                problems.push(format!("{shown}: a pending snapshot (review it, then commit or delete it)"));
            } else if name.ends_with(".snap") && !std::fs::canonicalize(path).is_ok_and(|p| used.contains(&p)) {
                problems.push(format!("{shown}: no test uses this snapshot (delete it)"));
            }
        })?;
    }
    if problems.is_empty() {
        eprintln!("==> snapshots: {} used, none pending or unreferenced", used.len());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("snapshots: {problem}");
    }
    anyhow::bail!("{} snapshot problem(s)", problems.len())
}

fn collect(dir: &Path, f: &mut dyn FnMut(&Path)) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            collect(&path, f)?;
        } else {
            f(&path);
        }
    }
    Ok(())
}
