//! Executing a pipeline: the orchestrator (run lifecycle and the chunk commit
//! protocol), the token processor, and the sink executor.
//!
//! Chunk commit protocol: rows are read and processed in chunks inside one
//! recorder unit of work; the chunk's sink-bound rows are written and made
//! durable (flush + fsync); then delivery outcomes are recorded and the unit
//! commits. A delivery outcome therefore never exists without its bytes on
//! disk, and a crash before the commit leaves no trace of the chunk.

mod aggregation;
mod checkpoint;
mod coalesce;
mod handoff;
mod processor;
mod register;
mod resume;
mod sinks;
mod source_thread;

pub use checkpoint::CrashPoint;
pub use resume::resume_pipeline;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::{RowOutcome, RunId, RunStatus};
use landscape::Recorder;

use crate::pipeline::Pipeline;

pub use processor::EngineError;

/// How a run is executed.
pub struct RunOptions {
    /// Source rows per unit of work (and per sink write).
    pub chunk_size: usize,
    /// Set (for example by a SIGINT handler) to stop gracefully.
    pub interrupt: Arc<AtomicBool>,
    /// Called after every chunk with the progress so far.
    pub progress: Option<Box<dyn FnMut(&Progress)>>,
    /// Fingerprint key for secrets in stored configuration.
    pub secrets: crate::settings::SecretPolicy,
    /// Test hook: behave as if interrupted once this many rows were read.
    pub interrupt_after_rows: Option<u64>,
    /// Test hook: abort the process at this point (the crash harness).
    pub crash_at: Option<CrashPoint>,
    /// What time-based triggers read (aggregation timeouts and batch age,
    /// coalesce timeouts); tests inject a [`ManualClock`].
    pub clock: Arc<dyn Clock>,
}

/// The time the engine's triggers see.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that runs with real time plus whatever a test advanced it by.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: std::sync::Mutex<Duration>,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        if let Ok(mut offset) = self.offset.lock() {
            *offset += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset.lock().map_or(Duration::ZERO, |o| *o)
    }
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            chunk_size: 1000,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: None,
            secrets: crate::settings::SecretPolicy::from_env(),
            interrupt_after_rows: None,
            crash_at: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Progress of a running pipeline.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub rows_read: u64,
    pub elapsed: Duration,
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// What a run did, for the summary and `--format json`.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: RunId,
    pub status: RunStatus,
    pub rows_read: u64,
    /// Terminal outcomes by kind.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Rows delivered per sink, by outcome.
    pub per_sink: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub duration: Duration,
    /// Why the run failed, when it did.
    pub error: Option<String>,
}

/// Runs a pipeline to its end (completed, failed or interrupted), recording
/// everything in the Landscape. An `Err` means the run could not even be
/// begun or its failure could not be recorded.
pub fn run_pipeline(pipeline: Pipeline, recorder: &mut Recorder, mut options: RunOptions) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let runtime = register::begin(pipeline, recorder, &options)?;
    conclude(runtime, &mut options, started)
}

/// Drives a begun (or resumed) run to its end and records how it ended.
pub(crate) fn conclude(
    mut runtime: processor::Runtime<'_>,
    options: &mut RunOptions,
    started: Instant,
) -> Result<RunSummary, EngineError> {
    let result = runtime.drive(options, started);
    let status = match &result {
        Ok(true) => RunStatus::Completed,
        Ok(false) => RunStatus::Interrupted,
        Err(_) => RunStatus::Failed,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    runtime.finish(status, error.as_deref())?;
    let summary = RunSummary {
        run_id: runtime.run_id.clone(),
        status,
        rows_read: runtime.rows_read,
        outcomes: runtime.counts.clone(),
        per_sink: runtime.per_sink.clone(),
        duration: started.elapsed(),
        error,
    };
    Ok(summary)
}

pub(crate) fn outcome_key(outcome: RowOutcome) -> &'static str {
    outcome.as_str()
}

pub(crate) fn interrupted(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Runs plugin code; a panic in it becomes a contract error, so the engine
/// records the failed state (and batch) before the run stops instead of
/// unwinding past the audit trail.
pub(crate) fn guarded<T>(
    call: impl FnOnce() -> Result<T, contracts::plugin::PluginError>,
) -> Result<T, contracts::plugin::PluginError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(contracts::plugin::PluginError::Contract(format!("the plugin panicked: {message}")))
        }
    }
}
