//! `resume`: continues a run that was interrupted or crashed (its process is
//! gone while it still says running) from its last checkpoint, so that its
//! outputs end up as an uninterrupted run's would, each row once.
//!
//! Refused, before anything is written: a run whose process is alive, a
//! completed or failed run, settings that differ from the run's (config
//! hash), a graph that differs from the checkpointed one, and an input whose
//! already-read rows no longer hash to what was recorded.
//!
//! Work left is exact because every commit point records its checkpoint in
//! the same transaction as the outcomes it covers: after the last commit
//! every token is terminal, buffered in an aggregation, parked in a pending
//! flush or waiting at a coalesce, and the checkpoint holds the last three.
//! Whatever ran after it (sink bytes, payload blobs) is cut back or unused.

use std::time::Instant;

use contracts::{canonical_json_value, ContentHash, RunId, RunStatus, Value};
use landscape::Recorder;

use super::processor::{EngineError, Runtime};
use super::{register, RunOptions, RunSummary};
use crate::ownership::{liveness, Liveness};
use crate::pipeline::Pipeline;

/// Rows whose recorded hashes are loaded per query while the source is
/// re-read.
const PAGE: u64 = 10_000;

pub fn resume_pipeline(
    pipeline: Pipeline,
    recorder: &mut Recorder,
    run_id: &RunId,
    mut options: RunOptions,
) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let run = recorder.get_run(run_id)?;
    match liveness(&run) {
        Liveness::Alive => {
            let owner = run.owner.as_ref().map_or_else(String::new, |o| format!(" (process {} on {})", o.pid, o.host));
            return Err(EngineError::Resume(format!("run {run_id} is still running{owner}")));
        }
        Liveness::Ended if run.state.status() == RunStatus::Completed => {
            return Err(EngineError::Resume(format!("run {run_id} completed; there is nothing to resume")));
        }
        Liveness::Ended if run.state.status() == RunStatus::Failed => {
            return Err(EngineError::Resume(format!(
                "run {run_id} failed, and its failed tokens and batches are final; fix the cause and start a new run \
                 (interrupted runs and runs whose process died are resumable)"
            )));
        }
        Liveness::Ended | Liveness::Gone(_) => {}
    }
    let hash = register::settings_hash(&pipeline.loaded, &options)?;
    if hash != run.config_hash {
        return Err(EngineError::Resume(format!(
            "the settings differ from those run {run_id} was started with (its config hash {}, this file's {}); \
             resume needs the same pipeline",
            &run.config_hash.as_str()[..12],
            &hash.as_str()[..12]
        )));
    }
    let checkpoint = recorder.latest_checkpoint(run_id)?;
    let mut runtime = register::attach(pipeline, recorder, &run, &options)?;
    let rows_read = match &checkpoint {
        Some(checkpoint) => checkpointed_rows(checkpoint)?,
        None if !runtime.recorder.row_hashes(run_id, 0, 1)?.is_empty() => {
            return Err(EngineError::Resume(format!(
                "run {run_id} recorded rows but no checkpoint (checkpoint.enabled was false); it cannot be continued exactly"
            )));
        }
        None => 0,
    };
    runtime.skip_read_rows(rows_read)?;
    if run.state.status() == RunStatus::Running {
        runtime.recorder.complete_run(run_id, RunStatus::Interrupted, None)?;
    }
    runtime.recorder.resume_run(run_id, (&crate::ownership::host_name(), std::process::id()))?;
    match &checkpoint {
        Some(checkpoint) => runtime.restore(checkpoint)?,
        None => runtime.start_sinks_afresh()?,
    }
    for (outcome, count) in runtime.recorder.count_terminal_outcomes(run_id)? {
        runtime.counts.insert(outcome.as_str(), count);
    }
    super::conclude(runtime, &mut options, started)
}

/// How many source rows the checkpoint covers.
fn checkpointed_rows(checkpoint: &contracts::records::Checkpoint) -> Result<u64, EngineError> {
    let engine: serde_json::Value = serde_json::from_str(checkpoint.aggregation_state_json.as_deref().unwrap_or("null"))
        .map_err(|e| EngineError::Resume(format!("the checkpoint is damaged: {e}")))?;
    engine["rows_read"].as_u64().ok_or_else(|| EngineError::Resume("the checkpoint has no row count".into()))
}

/// The hash a source item was recorded with.
fn item_hash(value: &Value) -> ContentHash {
    canonical_json_value(value)
        .map_or_else(|_| landscape::recorder::fallback_hash(value), |c| ContentHash::of_bytes(c.as_bytes()))
}

impl Runtime<'_> {
    /// Re-reads the `rows` source items the run already recorded, checking
    /// each against its recorded hash: a changed input is refused.
    fn skip_read_rows(&mut self, rows: u64) -> Result<(), EngineError> {
        let mut index = 0;
        while index < rows {
            let recorded = self.recorder.row_hashes(&self.run_id, index, PAGE.min(rows - index))?;
            for (row_index, hash) in recorded {
                let item = self
                    .plugins
                    .source
                    .next_item(&mut self.contexts[0])
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
            if index < rows && self.recorder.row_hashes(&self.run_id, index, 1)?.is_empty() {
                return Err(EngineError::Resume(format!("the run recorded {index} rows, not the {rows} its checkpoint says")));
            }
        }
        self.rows_read = rows;
        Ok(())
    }

    /// No checkpoint: nothing was committed, every output starts empty.
    fn start_sinks_afresh(&mut self) -> Result<(), EngineError> {
        for (name, plugin) in &mut self.plugins.sinks {
            plugin
                .resume(0, &serde_json::Value::Null)
                .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
        }
        Ok(())
    }
}
