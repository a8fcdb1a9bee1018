//! `elspeth export` and `elspeth verify`, and the export at the end of a run
//! when `landscape.export` is enabled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use contracts::{ExportStatus, RunId};
use landscape::export::{check_signing_key, verify_reader, CsvFiles, JsonLines, UnsignedExports, MIN_KEY_BYTES};
use landscape::Recorder;

use crate::{ExportFormat, Format};

pub(crate) const KEY_ENV: &str = "ELSPETH_SIGNING_KEY";

fn signing_key(sign: bool) -> anyhow::Result<Option<Vec<u8>>> {
    if !sign {
        return Ok(None);
    }
    match std::env::var(KEY_ENV) {
        Ok(key) if !key.is_empty() => {
            check_signing_key(key.as_bytes()).map_err(|e| anyhow::format_err!("{KEY_ENV}: {e}"))?;
            Ok(Some(key.into_bytes()))
        }
        _ => anyhow::bail!("--sign needs the signing key in the environment variable {KEY_ENV} (at least {MIN_KEY_BYTES} bytes)"),
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

/// The export configured in `landscape.export`, written when a run
/// completed, and what became of it; its status is recorded on the run.
pub(crate) struct AfterRun {
    path: Option<PathBuf>,
    seconds: f64,
    outcome: AfterRunOutcome,
}

enum AfterRunOutcome {
    /// Written, and its status recorded on the run.
    Completed { records: u64 },
    /// Written, but recording its status failed (exit 4).
    Unrecorded { records: u64, error: String },
    /// Not written; its status recorded as failed where that worked (exit 1).
    Failed { error: String },
}

pub(crate) fn after_run(
    recorder: &mut Recorder,
    run_id: &RunId,
    export: &engine::settings::ExportSettings,
    path: Option<&Path>,
) -> AfterRun {
    let started = Instant::now();
    let (format, label) = match export.format {
        engine::settings::ExportFormat::Json => (ExportFormat::Jsonl, "json"),
        engine::settings::ExportFormat::Csv => (ExportFormat::Csv, "csv"),
    };
    let sink = export.sink.as_deref();
    let target = path.map(|path| match format {
        ExportFormat::Jsonl => path.to_path_buf(),
        ExportFormat::Csv => path.with_extension(""),
    });
    let written = (|| -> anyhow::Result<u64> {
        recorder.set_export_status(run_id, ExportStatus::Pending, None, Some(label), sink)?;
        let target = target.as_deref().ok_or_else(|| anyhow::format_err!("the export sink has no path option"))?;
        write_export(recorder, run_id, format, target, export.sign)
    })();
    let outcome = match written {
        Ok(records) => match recorder.set_export_status(run_id, ExportStatus::Completed, None, Some(label), sink) {
            Ok(()) => AfterRunOutcome::Completed { records },
            Err(error) => AfterRunOutcome::Unrecorded { records, error: error.to_string() },
        },
        Err(error) => {
            let error = format!("{error:#}");
            let _ = recorder.set_export_status(run_id, ExportStatus::Failed, Some(&error), Some(label), sink);
            AfterRunOutcome::Failed { error }
        }
    };
    AfterRun { path: target, seconds: started.elapsed().as_secs_f64(), outcome }
}

impl AfterRun {
    /// The `export` member of `elspeth run --format json`'s summary.
    pub(crate) fn json(&self) -> serde_json::Value {
        let (status, records, error) = match &self.outcome {
            AfterRunOutcome::Completed { records } => ("completed", Some(records), None),
            AfterRunOutcome::Unrecorded { records, error } => ("unrecorded", Some(records), Some(error)),
            AfterRunOutcome::Failed { error } => ("failed", None, Some(error)),
        };
        serde_json::json!({
            "status": status, "records": records, "path": self.path, "seconds": self.seconds, "error": error,
        })
    }

    /// The export's line of the text summary.
    pub(crate) fn print(&self) {
        let path = self.path.as_deref().map_or_else(String::new, |p| format!(" to {}", p.display()));
        match &self.outcome {
            AfterRunOutcome::Completed { records } | AfterRunOutcome::Unrecorded { records, .. } => {
                println!("  audit export: {records} records{path} in {:.2} s", self.seconds);
            }
            AfterRunOutcome::Failed { error } => eprintln!("error: the run completed but its audit export failed: {error}"),
        }
        if let AfterRunOutcome::Unrecorded { error, .. } = &self.outcome {
            eprintln!("error: recording the export status failed: {error}");
        }
    }

    /// The exit code when the export did not complete.
    pub(crate) fn exit_code(&self) -> Option<ExitCode> {
        match self.outcome {
            AfterRunOutcome::Completed { .. } => None,
            AfterRunOutcome::Unrecorded { .. } => Some(ExitCode::from(4)),
            AfterRunOutcome::Failed { .. } => Some(ExitCode::from(1)),
        }
    }
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

pub(crate) fn verify(path: &Path, allow_unsigned: bool, out: Format) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::format_err!("cannot open {}: {e}", path.display()))?;
    let key = std::env::var(KEY_ENV).ok().filter(|k| !k.is_empty()).map(String::into_bytes);
    let unsigned = if allow_unsigned { UnsignedExports::Allow } else { UnsignedExports::Refuse };
    match verify_reader(std::io::BufReader::with_capacity(1 << 20, file), key.as_deref(), unsigned) {
        Ok(report) => {
            match out {
                Format::Text if report.signed => println!(
                    "{}: valid ({} records, signed (HMAC-SHA256, every record and the manifest), final hash {})",
                    path.display(),
                    report.records,
                    report.final_hash
                ),
                Format::Text => println!(
                    "{}: valid but UNSIGNED ({} records, hash-chained, final hash {}): this shows the file is consistent \
                     with itself, not who wrote it",
                    path.display(),
                    report.records,
                    report.final_hash
                ),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "valid": true,
                        "records": report.records,
                        "signed": report.signed,
                        "final_hash": report.final_hash,
                        "peak_rss_bytes": crate::peak_rss_bytes(),
                    })
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
