//! Support for the end-to-end tests: locating and running the `elspeth` binary.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `elspeth` binary, built once per test process.
pub fn elspeth_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .current_dir(&workspace)
                .args(["build", "--quiet", "-p", "cli", "--bin", "elspeth"])
                .status()
                .expect("cargo can be started");
            assert!(status.success(), "building the elspeth binary failed");
            let exe = std::env::current_exe().expect("test binary has a path");
            // target/<profile>/deps/e2e-<hash> -> target/<profile>/elspeth
            exe.parent().and_then(|deps| deps.parent()).expect("test binary lives in target/<profile>/deps").join("elspeth")
        })
        .clone()
}

/// Runs `elspeth` with arguments, returning its output.
pub fn elspeth(args: &[&str]) -> Output {
    Command::new(elspeth_binary()).args(args).output().expect("elspeth can be started")
}

/// Runs `elspeth` in a working directory.
pub fn elspeth_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(elspeth_binary()).current_dir(dir).args(args).output().expect("elspeth can be started")
}
