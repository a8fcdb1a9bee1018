//! Build script: `ELSPETH_VERSION` is the workspace version, followed by the
//! git commit the binary was built from when the build can tell.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "unknown".to_owned());
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    // Rebuild when the checked-out commit changes (only files that exist, so
    // a build outside a git checkout is not redone every time).
    for file in ["HEAD", "refs/heads", "packed-refs"] {
        if git.join(file).exists() {
            println!("cargo:rerun-if-changed={}", git.join(file).display());
        }
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let full = match commit {
        Some(commit) => format!("{version} (git {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=ELSPETH_VERSION={full}");
}
