//! `elspeth runs`: the runs in a Landscape with their status (a `running`
//! run whose process is gone shows as interrupted), times, counts and export
//! status.

use std::fmt::Write as _;
use std::process::ExitCode;

use contracts::records::Run;
use contracts::time::render;
use engine::ownership::{liveness, Liveness};

use crate::landscape_args::LandscapeArgs;
use crate::Format;

/// A run's status as `runs` reports it: stale runs are interrupted.
pub(crate) fn shown_status(run: &Run) -> (String, Option<String>) {
    match liveness(run) {
        Liveness::Ended | Liveness::Alive => (run.state.status().as_str().to_owned(), None),
        Liveness::Gone(reason) => ("interrupted".to_owned(), Some(format!("stale: {reason}"))),
    }
}

pub(crate) fn runs(landscape: &LandscapeArgs, format: Format) -> anyhow::Result<ExitCode> {
    let mut recorder = landscape.open()?;
    let runs = recorder.list_runs()?;
    let mut documents = Vec::with_capacity(runs.len());
    for run in &runs {
        let (status, note) = shown_status(run);
        let rows = recorder.count_rows(&run.run_id)?;
        let outcomes = recorder.count_terminal_outcomes(&run.run_id)?;
        documents.push(serde_json::json!({
            "run_id": run.run_id.as_str(),
            "status": status,
            "recorded_status": run.state.status().as_str(),
            "note": note,
            "started_at": render(&run.started_at),
            "completed_at": run.state.completed_at().map(|t| render(&t)),
            "rows": rows,
            "pipeline": pipeline_of(run),
            "outcomes": totals(&outcomes),
            "reproducibility_grade": run.reproducibility_grade.map(contracts::ReproducibilityGrade::as_str),
            "export_status": run.export.as_ref().map(|e| e.status.as_str()),
        }));
    }
    match format {
        Format::Json => crate::print_out(&format!("{}\n", serde_json::Value::Array(documents)))?,
        Format::Text => crate::print_out(&table(&runs, &documents))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Terminal outcomes summed over sinks, by outcome name.
fn totals(outcomes: &[(contracts::RowOutcome, Option<String>, u64)]) -> serde_json::Map<String, serde_json::Value> {
    let mut totals: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (outcome, _, count) in outcomes {
        *totals.entry(outcome.as_str()).or_insert(0) += count;
    }
    totals.into_iter().map(|(k, v)| (k.to_owned(), serde_json::json!(v))).collect()
}

/// What a run's pipeline was, from its stored settings: its source (and
/// input file) and its sinks.
pub(crate) fn pipeline_of(run: &Run) -> String {
    serde_json::from_str::<engine::settings::Settings>(&run.settings_json).map_or_else(|_| "?".to_owned(), |s| s.label())
}

fn table(runs: &[Run], documents: &[serde_json::Value]) -> String {
    let mut text = String::new();
    if documents.is_empty() {
        text.push_str("no runs recorded\n");
        return text;
    }
    let _ = writeln!(
        text,
        "{:<32}  {:<11}  {:<20}  {:<20}  {:>9}  {:<20}  {:<9}  pipeline",
        "run", "status", "started", "ended", "rows", "grade", "export"
    );
    for (run, doc) in runs.iter().zip(documents) {
        let outcomes: Vec<String> =
            doc["outcomes"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect()).unwrap_or_default();
        let ended = run.state.completed_at().map_or_else(|| "-".to_owned(), |t| render(&t));
        let _ = writeln!(
            text,
            "{:<32}  {:<11}  {:<20}  {:<20}  {:>9}  {:<20}  {:<9}  {}",
            run.run_id,
            doc["status"].as_str().unwrap_or("?"),
            render(&run.started_at),
            ended,
            doc["rows"],
            doc["reproducibility_grade"].as_str().unwrap_or("-"),
            doc["export_status"].as_str().unwrap_or("none"),
            doc["pipeline"].as_str().unwrap_or("?"),
        );
        let note = doc["note"].as_str().map(|n| format!("  ({n})")).unwrap_or_default();
        let outcomes = if outcomes.is_empty() { "none".to_owned() } else { outcomes.join(", ") };
        let _ = writeln!(text, "{:<32}  outcomes: {outcomes}{note}", "");
    }
    text
}
