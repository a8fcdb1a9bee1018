//! `elspeth run`: validate, then execute with a progress bar and a summary
//! (or one JSON document with `--format json`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use contracts::RunStatus;
use engine::pipeline::load_pipeline;
use engine::{resume_pipeline, run_pipeline, EngineError, Progress, RunOptions, RunSummary, TestHooks};
use landscape::{PayloadStore, Recorder};

use crate::Format;

/// What to execute: a new run, or the resumption of an earlier one.
pub(crate) enum Mode {
    /// Without `--execute`: validate only.
    DryRun,
    Run,
    /// Resume this run (an id or `latest`).
    Resume(String),
}

/// Replay and verify: the settings' `run_mode` and `replay_from`, from the
/// command line (a flag wins over the file).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct CallModeArgs {
    /// Replay: answer every external call from this run's recordings (a run
    /// id or `latest`, the latest completed run); no request is sent. A
    /// request the run never made fails its row (`replay_miss`).
    #[arg(long, value_name = "RUN_ID", conflicts_with = "verify_against")]
    replay_from: Option<String>,
    /// Verify: make every call live and compare each response with this
    /// run's recording; the differences are recorded per call and reported.
    #[arg(long, value_name = "RUN_ID")]
    verify_against: Option<String>,
    /// Verify: a response path whose value may differ (dotted, `*` for any
    /// key or index), added to the defaults (ids, timestamps, sizes).
    #[arg(long, value_name = "PATH")]
    verify_ignore: Vec<String>,
    /// Verify: compare lists in order (default: as multisets).
    #[arg(long)]
    verify_ordered_lists: bool,
    /// Verify: exit 6 when any response differs or has no recording.
    #[arg(long)]
    fail_on_mismatch: bool,
}

impl CallModeArgs {
    fn apply(&self, settings: &mut engine::settings::Settings) {
        if let Some(source) = &self.replay_from {
            settings.run_mode = engine::settings::RunModeSetting::Replay;
            settings.replay_from = Some(source.clone());
        }
        if let Some(source) = &self.verify_against {
            settings.run_mode = engine::settings::RunModeSetting::Verify;
            settings.replay_from = Some(source.clone());
        }
    }
}

pub(crate) fn run(
    settings: &Path,
    mode: Mode,
    format: Format,
    chunk_size: usize,
    calls: &CallModeArgs,
) -> anyhow::Result<ExitCode> {
    let settings = &crate::landscape_args::expand_tilde(settings);
    let out = Report { format, settings };
    if !settings.is_file() {
        return Ok(
            out.invalid(&[serde_json::json!({"message": format!("settings file {} does not exist", settings.display())})], None)
        );
    }
    let mut pipeline = match load_pipeline(settings, &plugins::BuiltinPlugins) {
        Ok(pipeline) => pipeline,
        Err(error) => return Ok(out.invalid(&crate::validate::problems_json(&error), Some(&error.to_string()))),
    };
    calls.apply(&mut pipeline.loaded.settings);
    if matches!(mode, Mode::DryRun) {
        match format {
            Format::Text => println!("{}: valid; dry run, nothing executed (add --execute to run)", settings.display()),
            Format::Json => println!("{}", serde_json::json!({"status": "valid", "valid": true, "executed": false})),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = &pipeline.loaded.settings;
    let landscape_url = loaded.landscape.url.clone();
    let export = loaded.landscape.export.clone();
    let export_path = export
        .sink
        .as_ref()
        .and_then(|sink| loaded.sinks.get(sink))
        .and_then(|sink| sink.options.get("path"))
        .and_then(serde_json::Value::as_str)
        .map(std::path::PathBuf::from);
    let described = describe(loaded);
    let mut notes = Vec::new();
    // A new run may need the Landscape's directory; a resume never creates one.
    if matches!(mode, Mode::Run | Mode::DryRun) {
        if let Err(message) = landscape_directory(&landscape_url, &mut notes) {
            return Ok(out.error(4, &message));
        }
    }
    let payload_dir = loaded.payload_dir();
    if let Err(error) = std::fs::create_dir_all(&payload_dir) {
        return Ok(out.error(4, &format!("cannot create the payload store directory {}: {error}", payload_dir.display())));
    }
    let store = Some(PayloadStore::new(&payload_dir));
    let opened = match mode {
        Mode::Resume(_) => Recorder::open_existing(&landscape_url, store),
        Mode::Run | Mode::DryRun => Recorder::open(&landscape_url, store),
    };
    let mut recorder = match opened {
        Ok(recorder) => recorder,
        Err(error) => return Ok(out.error(4, &format!("cannot open the Landscape: {error}"))),
    };
    if format == Format::Text {
        for note in &notes {
            eprintln!("note: {note}");
        }
    }
    let (mut options, bar) = run_options(chunk_size, format)?;
    options.verify.ignore_paths.extend(calls.verify_ignore.iter().cloned());
    options.verify.ordered_lists = calls.verify_ordered_lists;
    let result = match mode {
        Mode::Resume(run) => match crate::landscape_args::resolve_run(&mut recorder, &run) {
            Ok(run_id) => resume_pipeline(pipeline, &mut recorder, &run_id, options),
            Err(error) => return Ok(out.error(1, &format!("{error:#}"))),
        },
        Mode::Run | Mode::DryRun => run_pipeline(pipeline, &mut recorder, options),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(summary) => {
            // The export is part of the run's last word: the summary reports
            // it (and the process's peak RSS includes it).
            let exported = (export.enabled && summary.status == RunStatus::Completed).then(|| {
                if format == Format::Text {
                    eprintln!("exporting the audit trail of run {} …", summary.run_id);
                }
                crate::export::after_run(&mut recorder, &summary.run_id, &export, export_path.as_deref())
            });
            let code = out.summary(&summary, &described, &notes, exported.as_ref());
            let unverified = summary.verification.as_ref().is_some_and(|v| v.mismatches + v.missing_recordings > 0);
            let code = if calls.fail_on_mismatch && unverified && code == ExitCode::SUCCESS { ExitCode::from(6) } else { code };
            Ok(exported.and_then(|e| e.exit_code()).unwrap_or(code))
        }
        Err(error) => {
            let code = match error {
                EngineError::Landscape(_) => 4,
                EngineError::Plugin { .. }
                | EngineError::Config(_)
                | EngineError::Invariant(_)
                | EngineError::Unsupported(_)
                | EngineError::Resume(_) => 1,
            };
            Ok(out.error(code, &error.to_string()))
        }
    }
}

/// A SQLite Landscape in a directory that does not exist yet: the directory
/// is created, and a note says so; one that cannot be created is an error
/// naming it.
fn landscape_directory(url: &str, notes: &mut Vec<String>) -> Result<(), String> {
    let Ok(landscape::DatabaseUrl::SqliteFile(path)) = landscape::DatabaseUrl::parse(url) else { return Ok(()) };
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) else { return Ok(()) };
    if parent.exists() {
        return Err(format!("cannot create the Landscape's directory {}: a file of that name is in the way", parent.display()));
    }
    std::fs::create_dir_all(parent)
        .map_err(|error| format!("cannot create the Landscape's directory {}: {error}", parent.display()))?;
    notes.push(format!("created the directory {} for the Landscape", parent.display()));
    Ok(())
}

/// What the pipeline is, in one line: its source and its sinks, with the
/// role of sinks that take errors.
struct Described {
    pipeline: String,
    /// Sink name → why rows arrive there besides the graph's routes.
    roles: std::collections::BTreeMap<String, Vec<String>>,
}

fn describe(settings: &engine::settings::Settings) -> Described {
    let source = &settings.source;
    let mut roles: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    if let Some(target) = source.options.get("on_validation_failure").and_then(serde_json::Value::as_str) {
        roles.entry(target.to_owned()).or_default().push("invalid source rows".to_owned());
    }
    for t in &settings.transforms {
        roles.entry(t.on_error.clone()).or_default().push(format!("errors of {}", t.name));
    }
    for a in &settings.aggregations {
        roles.entry(a.on_error.clone()).or_default().push(format!("errors of {}", a.name));
    }
    roles.retain(|sink, _| settings.sinks.contains_key(sink));
    Described { pipeline: settings.label(), roles }
}

/// How `run` reports: text for people, one JSON document for scripts.
struct Report<'a> {
    format: Format,
    settings: &'a Path,
}

impl Report<'_> {
    /// The settings are invalid (exit 1).
    fn invalid(&self, errors: &[serde_json::Value], text: Option<&str>) -> ExitCode {
        match self.format {
            Format::Text => {
                eprintln!("{}: invalid", self.settings.display());
                match text {
                    Some(text) => eprintln!("{text}"),
                    None => {
                        for error in errors {
                            eprintln!("{}", error["message"].as_str().unwrap_or_default());
                        }
                    }
                }
            }
            Format::Json => println!("{}", serde_json::json!({"status": "invalid", "valid": false, "errors": errors})),
        }
        ExitCode::from(1)
    }

    /// The run could not go on (or not begin): `code` 1 or 4.
    fn error(&self, code: u8, message: &str) -> ExitCode {
        match self.format {
            Format::Text => eprintln!("error: {message}"),
            Format::Json => println!("{}", serde_json::json!({"status": "error", "errors": [{"message": message}]})),
        }
        ExitCode::from(code)
    }

    /// The run ended: its summary, what to do next, and the exit code.
    fn summary(
        &self,
        summary: &RunSummary,
        described: &Described,
        notes: &[String],
        exported: Option<&crate::export::AfterRun>,
    ) -> ExitCode {
        let delivered: u64 = summary.per_sink.values().flat_map(|c| c.values()).sum();
        let failed = summary.outcomes.get("failed").copied().unwrap_or(0);
        let mut warnings = Vec::new();
        let all_failed = summary.status == RunStatus::Completed && summary.rows_read > 0 && delivered == 0 && failed > 0;
        if all_failed {
            warnings.push(format!(
                "every row failed: {} rows read, {failed} tokens failed, none reached a sink. The run is recorded as \
                 completed; explain a row to see why (elspeth explain --settings {} --run {} --row 0)",
                summary.rows_read,
                self.settings.display(),
                summary.run_id
            ));
        }
        let resume = (summary.status == RunStatus::Interrupted)
            .then(|| format!("elspeth resume {} --settings {}", summary.run_id, self.settings.display()));
        match self.format {
            Format::Json => {
                let document = serde_json::json!({
                    "run_id": summary.run_id.as_str(),
                    "status": summary.status.as_str(),
                    "pipeline": described.pipeline,
                    "rows_read": summary.rows_read,
                    "outcomes": summary.outcomes,
                    "sinks": summary.per_sink,
                    "duration_seconds": summary.duration.as_secs_f64(),
                    "peak_rss_bytes": crate::peak_rss_bytes(),
                    "error": summary.error,
                    "counters": reference_counters(summary),
                    "all_rows_failed": all_failed,
                    "warnings": warnings,
                    "notes": notes,
                    "resume_command": resume,
                    "verification": summary.verification.as_ref().map(verification_json),
                    "export": exported.map(crate::export::AfterRun::json),
                });
                println!("{document}");
            }
            Format::Text => {
                print_summary(summary, described, &warnings, resume.as_deref());
                if let Some(exported) = exported {
                    exported.print();
                }
            }
        }
        ExitCode::from(match summary.status {
            RunStatus::Completed if all_failed => 5,
            RunStatus::Completed => 0,
            RunStatus::Interrupted => 3,
            RunStatus::Failed | RunStatus::Running => 1,
        })
    }
}

fn verification_json(report: &engine::VerifyReport) -> serde_json::Value {
    let engine::VerifyReport { total, matches, mismatches, missing_recordings, missing_payloads } = report;
    serde_json::json!({
        "total_calls": total, "matches": matches, "mismatches": mismatches,
        "missing_recordings": missing_recordings, "missing_payloads": missing_payloads,
    })
}

/// The reference's run counters, by its names, from the whole run's
/// outcomes (counted once durable, unlike the reference, which counts
/// successes before the sink write).
fn reference_counters(summary: &RunSummary) -> serde_json::Value {
    let get = |outcome: &str| summary.outcomes.get(outcome).copied().unwrap_or(0);
    let routed_destinations: serde_json::Map<String, serde_json::Value> = summary
        .per_sink
        .iter()
        .filter_map(|(sink, counts)| counts.get("routed").map(|n| (sink.clone(), serde_json::json!(n))))
        .collect();
    serde_json::json!({
        "rows_processed": summary.rows_read,
        "rows_succeeded": get("completed"),
        "rows_failed": get("failed"),
        "rows_routed": get("routed"),
        "rows_quarantined": get("quarantined"),
        "rows_forked": get("forked"),
        "rows_expanded": get("expanded"),
        "rows_diverted": get("diverted"),
        "routed_destinations": routed_destinations,
    })
}

fn print_summary(summary: &RunSummary, described: &Described, warnings: &[String], resume: Option<&str>) {
    let rate = summary.rows_read as f64 / summary.duration.as_secs_f64().max(1e-9);
    println!("run {} {}", summary.run_id, summary.status);
    println!("  pipeline: {}", described.pipeline);
    println!("  {} rows read in {:.2} s ({rate:.0} rows/s)", summary.rows_read, summary.duration.as_secs_f64());
    if let Some(v) = &summary.verification {
        println!(
            "  verification: {} calls, {} match, {} differ, {} without a recording, {} with a purged recording \
             (elspeth explain shows each difference on its row)",
            v.total, v.matches, v.mismatches, v.missing_recordings, v.missing_payloads
        );
    }
    if !summary.per_sink.is_empty() {
        let width = summary.per_sink.keys().map(String::len).max().unwrap_or(4).max(4);
        println!("  {:<width$}  outcomes (as recorded in token_outcomes)", "sink");
        for (sink, counts) in &summary.per_sink {
            let outcomes: Vec<String> = counts.iter().map(|(outcome, n)| format!("{outcome} {n}")).collect();
            let role = described.roles.get(sink).map(|r| format!("  [{}]", r.join("; "))).unwrap_or_default();
            println!("  {sink:<width$}  {}{role}", outcomes.join(", "));
        }
    }
    let outcomes: Vec<String> = summary.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  all outcomes: {}", if outcomes.is_empty() { "none".to_owned() } else { outcomes.join(", ") });
    if let Some(error) = &summary.error {
        println!("  error: {error}");
    }
    for warning in warnings {
        eprintln!("WARNING: {warning}");
    }
    if let Some(resume) = resume {
        eprintln!("interrupted; the run is resumable. Continue it with:\n  {resume}");
    }
}

/// The run's options: interrupt on SIGINT/SIGTERM, a progress spinner on a
/// terminal, the test hooks (empty in a release build).
fn run_options(chunk_size: usize, format: Format) -> anyhow::Result<(RunOptions, Option<indicatif::ProgressBar>)> {
    let interrupt = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupt))?;
    }
    let bar = (format == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let progress_bar = bar.clone();
    let options = RunOptions {
        chunk_size,
        interrupt,
        progress: Some(Box::new(move |progress: &Progress| {
            if let Some(bar) = &progress_bar {
                let rate = progress.rows_read as f64 / progress.elapsed.as_secs_f64().max(1e-9);
                let outcomes: Vec<String> = progress.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
                bar.set_message(format!("{} rows read, {rate:.0} rows/s | {}", progress.rows_read, outcomes.join(", ")));
                bar.tick();
            }
        })),
        hooks: TestHooks::from_env(),
        ..RunOptions::default()
    };
    Ok((options, bar))
}
