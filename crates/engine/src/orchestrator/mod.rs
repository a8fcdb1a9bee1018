//! The orchestrator: a run from beginning to end. It reads the source on its
//! own thread in chunks; each chunk is one recorder unit of work whose
//! sink-bound rows are written and made durable (flush + fsync) before their
//! delivery outcomes and the checkpoint are recorded and the unit commits.
//! A delivery outcome therefore never exists without its bytes on disk, and
//! a crash before the commit leaves no trace of the chunk. Between rows, and
//! while the source is idle, it fires the timers; at the end of the source it
//! resolves what waits; on an interrupt it parks waiting joins for resume.

mod handoff;
mod source_thread;

use std::time::{Duration, Instant};

use contracts::plugin::PluginContext;
use contracts::{OperationId, RunId, RunStatus};
use landscape::recorder::OperationCompletion;
use landscape::Recorder;

use crate::pipeline::Pipeline;
use crate::processor::Processor;
use crate::runtime::{CrashPoint, EngineError, Progress, RunOptions, RunSummary};
use crate::{recovery, registration};
use source_thread::{Received, SourceOnThread, SourceThread};

/// How long the engine waits for the source before it looks at the clock
/// and the interrupt flag again.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Runs a pipeline to its end (completed, failed or interrupted), recording
/// everything in the Landscape. An `Err` means the run could not even be
/// begun or its failure could not be recorded.
pub fn run_pipeline(pipeline: Pipeline, recorder: &mut Recorder, mut options: RunOptions) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let processor = registration::begin(pipeline, recorder, &options)?;
    conclude(processor, &mut options, started)
}

/// Continues an interrupted or crashed run from its last checkpoint (see
/// [`crate::recovery`] for what is refused).
pub fn resume_pipeline(
    pipeline: Pipeline,
    recorder: &mut Recorder,
    run_id: &RunId,
    mut options: RunOptions,
) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let processor = recovery::resume::prepare(pipeline, recorder, run_id, &options)?;
    conclude(processor, &mut options, started)
}

/// Drives a begun (or resumed) run to its end and records how it ended.
fn conclude(processor: Processor<'_>, options: &mut RunOptions, started: Instant) -> Result<RunSummary, EngineError> {
    let mut run = Orchestrator { processor, source_operation: None, bound_field_resolution: false, commits: 0 };
    let result = run.drive(options, started);
    let status = match &result {
        Ok(true) => RunStatus::Completed,
        Ok(false) => RunStatus::Interrupted,
        Err(_) => RunStatus::Failed,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    let (status, error) = run.finish(status, error)?;
    let ctx = &run.processor.ctx;
    Ok(RunSummary {
        run_id: ctx.run_id.clone(),
        status,
        rows_read: ctx.rows_read,
        outcomes: ctx.counts.clone(),
        per_sink: ctx.per_sink.clone(),
        duration: started.elapsed(),
        error,
        verification: ctx.verify.as_ref().map(|v| v.report.clone()),
    })
}

fn interrupted(options: &RunOptions) -> bool {
    options.interrupt.load(std::sync::atomic::Ordering::Relaxed)
}

/// A run in progress.
struct Orchestrator<'r> {
    processor: Processor<'r>,
    source_operation: Option<OperationId>,
    bound_field_resolution: bool,
    /// Units committed so far (the crash harness counts them).
    commits: u64,
}

/// How one chunk ended.
struct Chunk {
    exhausted: bool,
    failure: Option<EngineError>,
}

impl Orchestrator<'_> {
    /// Reads the source to its end in chunks. `Ok(false)` when interrupted.
    fn drive(&mut self, options: &mut RunOptions, started: Instant) -> Result<bool, EngineError> {
        let ctx = &mut self.processor.ctx;
        let source_id = ctx.graph.nodes[ctx.graph.source()].id.clone();
        let input = serde_json::json!({"source_plugin": ctx.graph.nodes[0].plugin_name});
        let operation =
            ctx.recorder.begin_operation(&ctx.run_id, &source_id, contracts::OperationType::SourceLoad, Some(&input))?;
        self.source_operation = Some(operation.operation_id);
        let chunk_size = options.chunk_size.max(1);
        let source = std::mem::replace(&mut ctx.plugins.source, Box::new(SourceOnThread::placeholder()));
        let mut reader = SourceThread::spawn(source, PluginContext::new(ctx.run_id.clone(), source_id), chunk_size);
        let result = self.drive_chunks(&mut reader, options, started, chunk_size);
        if let Some(source) = reader.into_source() {
            self.processor.ctx.plugins.source = source;
        }
        result
    }

    fn drive_chunks(
        &mut self,
        reader: &mut SourceThread,
        options: &mut RunOptions,
        started: Instant,
        chunk_size: usize,
    ) -> Result<bool, EngineError> {
        loop {
            if interrupted(options) {
                return Ok(false);
            }
            self.processor.ctx.recorder.begin_unit()?;
            let mut chunk = self.read_chunk(reader, options, chunk_size);
            if chunk.failure.is_none() {
                chunk.failure = self.processor.settle_all().err();
            }
            if chunk.exhausted && chunk.failure.is_none() {
                chunk.failure = self.processor.resolve_at_end().err();
            }
            if chunk.failure.is_none() && interrupted(options) && !chunk.exhausted {
                chunk.failure = self.processor.park().err();
            }
            if let Err(error) = self.bind_field_resolution(reader) {
                chunk.failure = chunk.failure.or(Some(error));
            }
            self.commit_chunk(chunk.failure)?;
            if let Some(progress) = options.progress.as_mut() {
                let ctx = &self.processor.ctx;
                progress(&Progress { rows_read: ctx.rows_read, elapsed: started.elapsed(), outcomes: ctx.counts.clone() });
            }
            if chunk.exhausted {
                return Ok(true);
            }
        }
    }

    /// Reads and processes up to `chunk_size` items, firing timers that come
    /// due (also while the source is idle).
    fn read_chunk(&mut self, reader: &mut SourceThread, options: &RunOptions, chunk_size: usize) -> Chunk {
        let mut read = 0;
        // When to look at the timers next: the earliest timer, and at most
        // IDLE_POLL ahead (to notice an interrupt while the source is idle).
        // Computed again only once it has passed, not per row, so a timer
        // created since then fires at most IDLE_POLL late.
        let mut next_check: Option<Instant> = None;
        let clock = std::sync::Arc::clone(&self.processor.ctx.clock);
        while read < chunk_size {
            let deadline = *next_check.get_or_insert_with(|| {
                let poll = clock.now() + IDLE_POLL;
                self.processor.next_timer().map_or(poll, |timer| timer.min(poll))
            });
            // The wait is in real time; the deadline in the triggers' time.
            let wait_until = Instant::now() + deadline.saturating_duration_since(clock.now());
            let item = match reader.next(Some(wait_until)) {
                Received::Idle => {
                    next_check = None;
                    match self.processor.fire_timers() {
                        // What the timers released is written and committed now.
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(error) => return Chunk { exhausted: false, failure: Some(error) },
                    }
                    // An idle source does not keep the unit (and the write
                    // lock another run on this Landscape waits for) open:
                    // what was read is written and committed now.
                    if interrupted(options) || read > 0 {
                        break;
                    }
                    continue;
                }
                Received::Item(item) => item,
            };
            read += 1;
            let timers_due = clock.now() >= deadline;
            match item {
                Ok(None) => return Chunk { exhausted: true, failure: None },
                Ok(Some(item)) => {
                    if let Err(error) = self.processor.process_item(item) {
                        return Chunk { exhausted: false, failure: Some(error) };
                    }
                    self.processor.ctx.crash_if(CrashPoint::AfterRow(self.processor.ctx.rows_read));
                }
                Err(source) => {
                    let node = format!("source {}", self.processor.ctx.graph.nodes[0].plugin_name);
                    return Chunk { exhausted: false, failure: Some(EngineError::Plugin { node, source }) };
                }
            }
            // A busy source does not hold timers back.
            if timers_due {
                next_check = None;
                if let Err(error) = self.processor.fire_timers() {
                    return Chunk { exhausted: false, failure: Some(error) };
                }
            }
            if options.hooks.interrupt_due(self.processor.ctx.rows_read) {
                options.interrupt.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if interrupted(options) {
                break;
            }
        }
        Chunk { exhausted: false, failure: None }
    }

    /// Writes the chunk's sink rows durably, then records their outcomes
    /// and the checkpoint and commits the unit. A failure is recorded (what
    /// waits fails) and returned; an audit write failure rolls the unit back.
    fn commit_chunk(&mut self, failure: Option<EngineError>) -> Result<(), EngineError> {
        let mut failure = failure;
        if let Err(error) = self.processor.flush_sinks() {
            if matches!(error, EngineError::Landscape(_)) {
                let _ = self.processor.ctx.recorder.rollback_unit();
                return Err(error);
            }
            failure.get_or_insert(error);
        }
        if let Some(error) = failure {
            if matches!(error, EngineError::Landscape(_)) {
                let _ = self.processor.ctx.recorder.rollback_unit();
            } else {
                self.processor.abandon(&error.to_string())?;
                self.processor.ctx.recorder.commit_unit()?;
            }
            return Err(error);
        }
        self.processor.write_checkpoint()?;
        let ctx = &mut self.processor.ctx;
        ctx.recorder.heartbeat(&ctx.run_id)?;
        self.commits += 1;
        ctx.crash_if(CrashPoint::BeforeCommit(self.commits));
        // The commit runs on the recorder's flush thread while the next chunk
        // is read and processed; the next statement that needs the database
        // waits for it (and reports it if it failed). Sink writes made
        // meanwhile are covered: resume cuts sinks back to the last committed
        // checkpoint.
        ctx.recorder.commit_unit_in_background()?;
        let after_commit = CrashPoint::AfterCommit(self.commits);
        if ctx.hooks.crashes_at(after_commit) {
            ctx.recorder.wait_for_writes()?;
        }
        ctx.crash_if(after_commit);
        Ok(())
    }

    /// Once the source knows its headers: sinks learn the original names,
    /// and the run records them (original → field name).
    fn bind_field_resolution(&mut self, reader: &SourceThread) -> Result<(), EngineError> {
        if self.bound_field_resolution {
            return Ok(());
        }
        if let Some(resolution) = reader.field_resolution() {
            for sink in self.processor.ctx.plugins.sinks.values_mut() {
                sink.bind_field_resolution(resolution);
            }
            let json: serde_json::Map<String, serde_json::Value> =
                resolution.iter().map(|(original, name)| (original.clone(), serde_json::Value::String(name.clone()))).collect();
            let ctx = &mut self.processor.ctx;
            ctx.recorder.record_source_field_resolution(&ctx.run_id, &serde_json::Value::Object(json))?;
            self.bound_field_resolution = true;
        }
        Ok(())
    }

    /// Ends the run: completes sinks (when the run completed), the source
    /// operation and the run itself. Returns the status and error recorded:
    /// a sink that fails to complete fails a run that had completed.
    fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<(RunStatus, Option<String>), EngineError> {
        let mut status = status;
        let mut message = error;
        if status == RunStatus::Completed {
            if let Err(error) = self.processor.finish_sinks() {
                status = RunStatus::Failed;
                message = Some(error.to_string());
            }
        }
        let ctx = &mut self.processor.ctx;
        if let Some(operation) = self.source_operation.take() {
            let completion = match (&message, status) {
                (None, RunStatus::Completed) => OperationCompletion::Completed { output: None },
                (Some(text), _) => OperationCompletion::Failed { error_message: text, output: None },
                (None, _) => OperationCompletion::Failed { error_message: "interrupted", output: None },
            };
            ctx.recorder.complete_operation(&operation, &completion, 0.0)?;
        }
        ctx.recorder.finalize_run(&ctx.run_id, status)?;
        Ok((status, message))
    }
}
