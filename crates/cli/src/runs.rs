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
fn shown_status(run: &Run) -> (String, Option<String>) {
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
            "outcomes": outcomes.iter().map(|(o, n)| (o.as_str().to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "reproducibility_grade": run.reproducibility_grade.map(contracts::ReproducibilityGrade::as_str),
            "export_status": run.export.as_ref().map(|e| e.status.as_str()),
        }));
    }
    match format {
        Format::Json => crate::print_out(&format!("{}\n", serde_json::Value::Array(documents)))?,
        Format::Text => {
            let mut text = String::new();
            if documents.is_empty() {
                text.push_str("no runs recorded\n");
            }
            for (run, doc) in runs.iter().zip(&documents) {
                let outcomes: Vec<String> =
                    doc["outcomes"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect()).unwrap_or_default();
                let ended = run.state.completed_at().map_or_else(|| "-".to_owned(), |t| render(&t));
                let _ = writeln!(
                    text,
                    "{}  {:<11}  started {}  ended {}  rows {}  {}  export {}{}",
                    run.run_id,
                    doc["status"].as_str().unwrap_or("?"),
                    render(&run.started_at),
                    ended,
                    doc["rows"],
                    if outcomes.is_empty() { "no outcomes".to_owned() } else { outcomes.join(", ") },
                    doc["export_status"].as_str().unwrap_or("none"),
                    doc["note"].as_str().map(|n| format!("  ({n})")).unwrap_or_default(),
                );
            }
            crate::print_out(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
