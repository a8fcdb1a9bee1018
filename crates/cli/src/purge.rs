//! `elspeth purge`: delete the stored payloads of completed and failed runs
//! older than the retention period. Every hash stays in the Landscape;
//! explain shows purged payloads as purged; runs that lose what replay needs
//! drop to `attributable_only`.

use std::process::ExitCode;

use crate::landscape_args::LandscapeArgs;
use crate::Format;

pub(crate) fn purge(landscape: &LandscapeArgs, retention_days: u32, dry_run: bool, format: Format) -> anyhow::Result<ExitCode> {
    let mut recorder = landscape.open()?;
    anyhow::ensure!(
        recorder.payload_store().is_some(),
        "no payload store found: give --payload-dir, or --settings with payload_store.base_path"
    );
    let plan = recorder.plan_purge(retention_days, chrono::Utc::now())?;
    let report = if dry_run { None } else { Some(recorder.execute_purge(&plan)?) };
    match format {
        Format::Json => {
            let mut doc = serde_json::json!({
                "dry_run": dry_run,
                "retention_days": retention_days,
                "cutoff": contracts::time::render(&plan.cutoff),
                "expired_runs": plan.expired_runs.iter().map(contracts::RunId::as_str).collect::<Vec<_>>(),
                "payloads": plan.refs.len(),
                "shared_kept": plan.shared,
            });
            if let Some(report) = &report {
                doc["deleted"] = report.deleted.into();
                doc["missing"] = report.missing.into();
                doc["failed"] = report.failed.iter().map(|(r, e)| serde_json::json!({"ref": r, "error": e})).collect();
                doc["degraded_runs"] = report.degraded.iter().map(contracts::RunId::as_str).collect();
            }
            println!("{doc}");
        }
        Format::Text => {
            let runs = plan.expired_runs.len();
            if plan.refs.is_empty() {
                println!("No payloads older than {retention_days} days to purge ({runs} eligible runs).");
            } else if dry_run {
                println!(
                    "Would delete {} payloads of {runs} runs ended before {} ({} shared with other runs kept).",
                    plan.refs.len(),
                    contracts::time::render(&plan.cutoff),
                    plan.shared
                );
            }
            if let Some(report) = &report {
                if !plan.refs.is_empty() {
                    println!(
                        "Deleted {} payloads of {runs} runs; {} were already gone; {} failed; {} shared kept.",
                        report.deleted,
                        report.missing,
                        report.failed.len(),
                        plan.shared
                    );
                }
                for (payload_ref, error) in &report.failed {
                    println!("  failed {payload_ref}: {error}");
                }
                for run in &report.degraded {
                    println!("  run {run}: reproducibility grade now attributable_only");
                }
            }
        }
    }
    let failed = report.is_some_and(|r| !r.failed.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
