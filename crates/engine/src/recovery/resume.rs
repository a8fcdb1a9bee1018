//! `resume`: prepares a run that was interrupted or crashed (its process is
//! gone while it still says running) to continue from its last checkpoint.
//!
//! Refused, before anything is written: a run whose process is alive, a
//! completed or failed run, settings that differ from the run's (config
//! hash), a graph that differs from the checkpointed one, an input whose
//! already-read rows no longer hash to what was recorded, and a checkpoint
//! that is damaged or of another format.
//!
//! Work left is exact because every commit point records its checkpoint in
//! the same transaction as the outcomes it covers: after the last commit
//! every token is terminal, buffered in an aggregation, parked in a pending
//! flush or waiting at a coalesce, and the checkpoint holds the last three.
//! Whatever ran after it (sink bytes, payload blobs) is cut back or unused.

use contracts::{canonical_json_value, ContentHash, RunId, RunStatus, Value};
use landscape::Recorder;

use crate::ownership::{liveness, Liveness};
use crate::pipeline::Pipeline;
use crate::processor::Processor;
use crate::recovery::checkpoint::Restored;
use crate::registration;
use crate::runtime::{EngineError, RunOptions};

/// Rows whose recorded hashes are loaded per query while the source is
/// re-read.
const PAGE: u64 = 10_000;

/// Checks that `run_id` may be resumed with this pipeline and puts a
/// processor where its last checkpoint left it.
pub(crate) fn prepare<'r>(
    mut pipeline: Pipeline,
    recorder: &'r mut Recorder,
    run_id: &RunId,
    options: &RunOptions,
) -> Result<Processor<'r>, EngineError> {
    let run = recorder.get_run(run_id)?;
    refuse_unless_resumable(&run)?;
    continue_call_mode(&mut pipeline, &run)?;
    let hash = registration::settings_hash(&pipeline.loaded, options)?;
    if hash != run.config_hash {
        return Err(EngineError::Resume(format!(
            "the settings differ from those run {run_id} was started with (its config hash {}, this file's {}); \
             resume needs the same pipeline",
            &run.config_hash.as_str()[..12],
            &hash.as_str()[..12]
        )));
    }
    let checkpoint = recorder.latest_checkpoint(run_id)?;
    let mut processor = registration::attach(pipeline, recorder, &run, options)?;
    // Everything is read and checked before anything is written.
    let restored = checkpoint.as_ref().map(|c| processor.load_checkpoint(c)).transpose()?;
    let rows_read = match &restored {
        Some(restored) => restored.rows_read,
        None if !processor.ctx.recorder.row_hashes(run_id, 0, 1)?.is_empty() => {
            return Err(EngineError::Resume(format!(
                "run {run_id} recorded rows but no checkpoint (checkpoint.enabled was false); it cannot be continued exactly"
            )));
        }
        None => 0,
    };
    skip_read_rows(&mut processor, rows_read)?;
    let recorder = &mut *processor.ctx.recorder;
    if run.state.status() == RunStatus::Running {
        recorder.complete_run(run_id, RunStatus::Interrupted, None)?;
    }
    recorder.resume_run(run_id, (&crate::ownership::host_name(), std::process::id()))?;
    restore(&mut processor, restored)?;
    // The summary covers the whole run, not only the part after resume.
    for (outcome, sink, count) in processor.ctx.recorder.count_terminal_outcomes(run_id)? {
        *processor.ctx.counts.entry(outcome.as_str()).or_insert(0) += count;
        if let Some(sink) = sink {
            *processor.ctx.per_sink.entry(sink).or_default().entry(outcome.as_str()).or_insert(0) += count;
        }
    }
    Ok(processor)
}

/// A replay or verification continues as it began (its mode and source run
/// are in the run's stored settings, whether they came from the file or
/// from `--replay-from` / `--verify-against`).
fn continue_call_mode(pipeline: &mut Pipeline, run: &contracts::records::Run) -> Result<(), EngineError> {
    let stored: serde_json::Value = serde_json::from_str(&run.settings_json)
        .map_err(|e| EngineError::Resume(format!("run {} has unreadable settings: {e}", run.run_id)))?;
    let settings = &mut pipeline.loaded.settings;
    if let Some(mode) = stored.get("run_mode") {
        settings.run_mode = serde_json::from_value(mode.clone())
            .map_err(|e| EngineError::Resume(format!("run {} has an unknown run_mode: {e}", run.run_id)))?;
    }
    settings.replay_from = stored.get("replay_from").and_then(serde_json::Value::as_str).map(str::to_owned);
    Ok(())
}

fn refuse_unless_resumable(run: &contracts::records::Run) -> Result<(), EngineError> {
    let run_id = &run.run_id;
    match liveness(run) {
        Liveness::Alive => {
            let owner = run.owner.as_ref().map_or_else(String::new, |o| format!(" (process {} on {})", o.pid, o.host));
            Err(EngineError::Resume(format!("run {run_id} is still running{owner}")))
        }
        Liveness::Ended if run.state.status() == RunStatus::Completed => {
            Err(EngineError::Resume(format!("run {run_id} completed; there is nothing to resume")))
        }
        Liveness::Ended if run.state.status() == RunStatus::Failed => Err(EngineError::Resume(format!(
            "run {run_id} failed, and its failed tokens and batches are final; fix the cause and start a new run \
             (interrupted runs and runs whose process died are resumable)"
        ))),
        Liveness::Ended | Liveness::Gone(_) => Ok(()),
    }
}

/// Restores the checkpoint, or with none (nothing was committed) starts
/// every output empty.
fn restore(processor: &mut Processor<'_>, restored: Option<Restored>) -> Result<(), EngineError> {
    if let Some(restored) = restored {
        return processor.apply_checkpoint(restored);
    }
    for (name, plugin) in &mut processor.ctx.plugins.sinks {
        plugin
            .resume(0, &serde_json::Value::Null)
            .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
    }
    Ok(())
}

/// The hash a source item was recorded with.
fn item_hash(value: &Value) -> ContentHash {
    canonical_json_value(value)
        .map_or_else(|_| landscape::recorder::fallback_hash(value), |c| ContentHash::of_bytes(c.as_bytes()))
}

/// Re-reads the `rows` source items the run already recorded, checking each
/// against its recorded hash: a changed input is refused.
fn skip_read_rows(processor: &mut Processor<'_>, rows: u64) -> Result<(), EngineError> {
    let ctx = &mut processor.ctx;
    let mut index = 0;
    while index < rows {
        let recorded = ctx.recorder.row_hashes(&ctx.run_id, index, PAGE.min(rows - index))?;
        for (row_index, hash) in recorded {
            let item = ctx
                .plugins
                .source
                .next_item(&mut ctx.contexts[0])
                .map_err(|source| EngineError::Plugin { node: "source".into(), source })?;
            let value = match item {
                Some(contracts::plugin::SourceItem::Valid(row)) => Value::Object(row),
                Some(contracts::plugin::SourceItem::Invalid(invalid)) => invalid.raw,
                None => {
                    return Err(EngineError::Resume(format!(
                        "the input ends after {row_index} rows, but the run read {rows}: it changed since"
                    )));
                }
            };
            if item_hash(&value) != hash {
                return Err(EngineError::Resume(format!(
                    "source row {row_index} differs from what the run recorded: the input changed since"
                )));
            }
            index = row_index + 1;
        }
        if index < rows && ctx.recorder.row_hashes(&ctx.run_id, index, 1)?.is_empty() {
            return Err(EngineError::Resume(format!("the run recorded {index} rows, not the {rows} its checkpoint says")));
        }
    }
    ctx.rows_read = rows;
    Ok(())
}
