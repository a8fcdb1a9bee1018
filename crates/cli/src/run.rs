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

pub(crate) fn run(settings: &Path, mode: Mode, format: Format, chunk_size: usize) -> anyhow::Result<ExitCode> {
    let settings = &crate::landscape_args::expand_tilde(settings);
    if !settings.is_file() {
        eprintln!("error: settings file {} does not exist", settings.display());
        return Ok(ExitCode::from(1));
    }
    let pipeline = match load_pipeline(settings, &plugins::BuiltinPlugins) {
        Ok(pipeline) => pipeline,
        Err(error) => {
            eprintln!("{}: invalid", settings.display());
            eprintln!("{error}");
            return Ok(ExitCode::from(1));
        }
    };
    if matches!(mode, Mode::DryRun) {
        match format {
            Format::Text => println!("{}: valid; dry run, nothing executed (add --execute to run)", settings.display()),
            Format::Json => println!("{}", serde_json::json!({"valid": true, "executed": false})),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let landscape_url = pipeline.loaded.settings.landscape.url.clone();
    let export = pipeline.loaded.settings.landscape.export.clone();
    let export_path = export
        .sink
        .as_ref()
        .and_then(|sink| pipeline.loaded.settings.sinks.get(sink))
        .and_then(|sink| sink.options.get("path"))
        .and_then(serde_json::Value::as_str)
        .map(std::path::PathBuf::from);
    let payload_dir = pipeline.loaded.settings.payload_dir();
    std::fs::create_dir_all(&payload_dir)
        .map_err(|e| anyhow::format_err!("cannot create the payload store {}: {e}", payload_dir.display()))?;
    let store = Some(PayloadStore::new(&payload_dir));
    let opened = match mode {
        Mode::Resume(_) => Recorder::open_existing(&landscape_url, store),
        Mode::Run | Mode::DryRun => Recorder::open(&landscape_url, store),
    };
    let mut recorder = match opened {
        Ok(recorder) => recorder,
        Err(error) => {
            eprintln!("error: cannot open the Landscape: {error}");
            return Ok(ExitCode::from(4));
        }
    };
    let (options, bar) = run_options(chunk_size, format)?;
    let result = match mode {
        Mode::Resume(run) => match crate::landscape_args::resolve_run(&mut recorder, &run) {
            Ok(run_id) => resume_pipeline(pipeline, &mut recorder, &run_id, options),
            Err(error) => {
                eprintln!("error: {error:#}");
                return Ok(ExitCode::from(1));
            }
        },
        Mode::Run | Mode::DryRun => run_pipeline(pipeline, &mut recorder, options),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(summary) => {
            report(&summary, format);
            if export.enabled && summary.status == RunStatus::Completed {
                if let Some(code) = export_after_run(&mut recorder, &summary, &export, export_path.as_deref()) {
                    return Ok(code);
                }
            }
            Ok(ExitCode::from(match summary.status {
                RunStatus::Completed => 0,
                RunStatus::Interrupted => 3,
                RunStatus::Failed | RunStatus::Running => 1,
            }))
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(match error {
                EngineError::Landscape(_) => 4,
                EngineError::Plugin { .. }
                | EngineError::Config(_)
                | EngineError::Invariant(_)
                | EngineError::Unsupported(_)
                | EngineError::Resume(_) => 1,
            }))
        }
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

fn report(summary: &RunSummary, format: Format) {
    match format {
        Format::Json => {
            let document = serde_json::json!({
                "run_id": summary.run_id.as_str(),
                "status": summary.status.as_str(),
                "rows_read": summary.rows_read,
                "outcomes": summary.outcomes,
                "sinks": summary.per_sink,
                "duration_seconds": summary.duration.as_secs_f64(),
                "peak_rss_bytes": crate::peak_rss_bytes(),
                "error": summary.error,
            });
            println!("{document}");
        }
        Format::Text => {
            let rate = summary.rows_read as f64 / summary.duration.as_secs_f64().max(1e-9);
            println!("run {} {}", summary.run_id, summary.status);
            println!("  {} rows read in {:.2} s ({rate:.0} rows/s)", summary.rows_read, summary.duration.as_secs_f64());
            if !summary.per_sink.is_empty() {
                println!("  {:<24} {:>10} {:>10} {:>12}", "sink", "completed", "routed", "quarantined");
                for (sink, counts) in &summary.per_sink {
                    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
                    println!("  {:<24} {:>10} {:>10} {:>12}", sink, get("completed"), get("routed"), get("quarantined"));
                }
            }
            let outcomes: Vec<String> = summary.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("  outcomes: {}", if outcomes.is_empty() { "none".to_owned() } else { outcomes.join(", ") });
            if let Some(error) = &summary.error {
                println!("  error: {error}");
            }
        }
    }
}

/// The export configured in `landscape.export`, written when the run
/// completed; its status is recorded on the run. `Some(code)` when it failed.
fn export_after_run(
    recorder: &mut Recorder,
    summary: &RunSummary,
    export: &engine::settings::ExportSettings,
    path: Option<&Path>,
) -> Option<ExitCode> {
    let (format, label) = match export.format {
        engine::settings::ExportFormat::Json => (crate::ExportFormat::Jsonl, "json"),
        engine::settings::ExportFormat::Csv => (crate::ExportFormat::Csv, "csv"),
    };
    let sink = export.sink.as_deref();
    let outcome = (|| -> anyhow::Result<u64> {
        recorder.set_export_status(&summary.run_id, contracts::ExportStatus::Pending, None, Some(label), sink)?;
        let path = path.ok_or_else(|| anyhow::format_err!("the export sink has no path option"))?;
        let target = match format {
            crate::ExportFormat::Jsonl => path.to_path_buf(),
            crate::ExportFormat::Csv => path.with_extension(""),
        };
        crate::export::write_export(recorder, &summary.run_id, format, &target, export.sign)
    })();
    match outcome {
        Ok(records) => {
            let recorded =
                recorder.set_export_status(&summary.run_id, contracts::ExportStatus::Completed, None, Some(label), sink);
            eprintln!("audit export: {records} records");
            recorded.err().map(|error| {
                eprintln!("error: recording the export status failed: {error}");
                ExitCode::from(4)
            })
        }
        Err(error) => {
            let message = error.to_string();
            let _ =
                recorder.set_export_status(&summary.run_id, contracts::ExportStatus::Failed, Some(&message), Some(label), sink);
            eprintln!("error: the run completed but its audit export failed: {message}");
            Some(ExitCode::from(1))
        }
    }
}
