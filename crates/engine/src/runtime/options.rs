//! What a caller sets for a run (`RunOptions`) and what it gets back
//! (`Progress` while it runs, `RunSummary` at its end).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use contracts::{RunId, RunStatus};

use super::clock::{Clock, SystemClock};
use super::hooks::TestHooks;

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
    /// What every time-based decision reads; tests inject a
    /// [`super::ManualClock`].
    pub clock: Arc<dyn Clock>,
    /// Interrupt and crash points for the test harnesses (empty unless the
    /// `test-hooks` feature is on).
    pub hooks: TestHooks,
    /// How verify mode compares live responses with recorded ones.
    pub verify: crate::decisions::diff::DiffOptions,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            chunk_size: 1000,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: None,
            secrets: crate::settings::SecretPolicy::from_env(),
            clock: Arc::new(SystemClock),
            hooks: TestHooks::default(),
            verify: crate::decisions::diff::DiffOptions::default(),
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
    /// Verify mode: how the live calls compared with the recorded ones.
    pub verification: Option<super::VerifyReport>,
}
