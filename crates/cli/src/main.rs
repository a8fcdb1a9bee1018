//! `elspeth`: run, validate, explain and export auditable pipelines.
#![forbid(unsafe_code)]

use clap::Parser;

/// Auditable Sense/Decide/Act pipelines.
///
/// ELSPETH runs a pipeline described by a settings.yaml and records every row,
/// token, node visit, routing decision and outcome in the Landscape audit
/// database.
#[derive(Debug, Parser)]
#[command(name = "elspeth", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
