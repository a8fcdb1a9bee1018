//! `elspeth export` and `elspeth verify`, and the export at the end of a run
//! when `landscape.export` is enabled.

use std::path::Path;
use std::process::ExitCode;

use contracts::{ExportStatus, RunId};
use landscape::export::{verify_jsonl, CsvFiles, JsonLines};
use landscape::Recorder;

use crate::{ExportFormat, Format};

const KEY_ENV: &str = "ELSPETH_SIGNING_KEY";

fn signing_key(sign: bool) -> anyhow::Result<Option<Vec<u8>>> {
    if !sign {
        return Ok(None);
    }
    match std::env::var(KEY_ENV) {
        Ok(key) if !key.is_empty() => Ok(Some(key.into_bytes())),
        _ => anyhow::bail!("signing needs the key in {KEY_ENV}"),
    }
}

/// Writes the export of `run_id` to `output`.
pub(crate) fn write_export(
    recorder: &mut Recorder,
    run_id: &RunId,
    format: ExportFormat,
    output: &Path,
    sign: bool,
) -> anyhow::Result<u64> {
    let key = signing_key(sign)?;
    let summary = match format {
        ExportFormat::Jsonl => {
            if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::io::BufWriter::new(std::fs::File::create(output)?);
            let mut sink = JsonLines(file);
            let summary = recorder.export(run_id, key.as_deref(), &mut sink)?;
            std::io::Write::flush(&mut sink.0)?;
            summary
        }
        ExportFormat::Csv => {
            let mut sink = CsvFiles::new(output)?;
            let summary = recorder.export(run_id, key.as_deref(), &mut sink)?;
            sink.finish()?;
            summary
        }
    };
    Ok(summary.record_count)
}

pub(crate) fn export(run: &str, database: &str, format: ExportFormat, output: &Path, sign: bool) -> anyhow::Result<ExitCode> {
    let mut recorder = Recorder::open_existing(database, None)?;
    let run_id = crate::landscape_args::resolve_run(&mut recorder, run)?;
    let records = write_export(&mut recorder, &run_id, format, output, sign)?;
    recorder.set_export_status(&run_id, ExportStatus::Completed, None, Some(format.as_str()), None)?;
    let rss = crate::peak_rss_bytes().map_or_else(String::new, |b| format!(" (peak RSS {:.1} MB)", b as f64 / 1_048_576.0));
    println!("exported run {run_id}: {records} records to {}{rss}", output.display());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(path: &Path, out: Format) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)?;
    let key = std::env::var(KEY_ENV).ok().filter(|k| !k.is_empty()).map(String::into_bytes);
    match verify_jsonl(&text, key.as_deref()) {
        Ok(report) => {
            match out {
                Format::Text => println!(
                    "{}: valid ({} records, {}, final hash {})",
                    path.display(),
                    report.records,
                    if report.signed { "signed" } else { "unsigned, hash-chained" },
                    report.final_hash
                ),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"valid": true, "records": report.records, "signed": report.signed, "final_hash": report.final_hash})
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            match out {
                Format::Text => eprintln!("{}: INVALID: {error}", path.display()),
                Format::Json => println!("{}", serde_json::json!({"valid": false, "error": error.to_string()})),
            }
            Ok(ExitCode::from(2))
        }
    }
}
