//! `cargo xtask`: the project's only automation.
//!
//! - `ci`: format check, clippy with warnings denied, the whole test suite.
//! - `test`: the whole test suite.
//! - `tidy`: layering law and source hygiene.
//! - `bench`: performance figures as ratios against same-run baselines.
//! - `schema`: the diesel `schema.rs` against the migrations on both backends.
#![forbid(unsafe_code)]

mod bench;
mod schema;
mod snapshots;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    match task {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("tidy") => tidy::check(&workspace_root()),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-inner") => bench::inner(&args[1..]),
        Some("schema") => schema::check(args.iter().any(|a| a == "--write")),
        _ => {
            eprintln!("usage: cargo xtask <ci|test|tidy|schema [--write]>");
            eprintln!();
            eprintln!("  ci    format check, clippy -D warnings, tidy, all tests");
            eprintln!("  test  all tests of the workspace");
            eprintln!("  tidy  layering and source hygiene checks");
            eprintln!("  bench [--quick|--full|--pg-only|--llm-only|--help]  throughput, memory and size figures as ratios against same-run baselines");
            eprintln!("  schema  check landscape/src/schema.rs against the migrations on SQLite and PostgreSQL");
            eprintln!("          (--write regenerates it)");
            std::process::exit(2);
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(workspace_root());
    command
}

fn run(step: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {step}");
    let status = command.status()?;
    if !status.success() {
        anyhow::bail!("{step} failed ({status})");
    }
    Ok(())
}

fn ci() -> anyhow::Result<()> {
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run("cargo clippy -D warnings", cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(
        "cargo clippy -D warnings (test hooks on)",
        cargo().args([
            "clippy",
            "-p",
            "cli",
            "-p",
            "engine",
            "-p",
            "landscape",
            "--features",
            "cli/test-hooks",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    tidy::check(&workspace_root())?;
    no_test_hooks_in_the_binary()?;
    schema::check(false)?;
    test()
}

/// The `elspeth` binary as users build it (no `test-hooks` feature) holds
/// none of the test hooks.
fn no_test_hooks_in_the_binary() -> anyhow::Result<()> {
    run("cargo build -p cli (as users build it)", cargo().args(["build", "--quiet", "-p", "cli", "--bin", "elspeth"]))?;
    let binary = workspace_root().join("target/debug/elspeth");
    let bytes = std::fs::read(&binary)?;
    for needle in ["ELSPETH_TEST_", "commit:N:before"] {
        anyhow::ensure!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{} contains {needle:?}: a test hook leaked into the user build",
            binary.display()
        );
    }
    eprintln!("==> no test hooks in the user build of elspeth");
    Ok(())
}

/// Every test, with snapshots strict: a mismatch fails (nothing is written
/// for review), and a pending (`.snap.new`) or unreferenced `.snap` file fails.
fn test() -> anyhow::Result<()> {
    let references = tempfile_path("insta-references")?;
    let _ = std::fs::remove_file(&references);
    let result = run(
        "cargo test",
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("INSTA_UPDATE", "no")
            .env("INSTA_SNAPSHOT_REFERENCES_FILE", &references),
    );
    let referenced = std::fs::read_to_string(&references).unwrap_or_default();
    let _ = std::fs::remove_file(&references);
    result?;
    snapshots::check(&workspace_root(), &referenced)
}

fn tempfile_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(format!("{name}-{}.txt", std::process::id())))
}
