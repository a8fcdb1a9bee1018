//! The run record and its lifecycle state.

use crate::enums::{ExportStatus, ReproducibilityGrade, RunStatus};
use crate::hashing::ContentHash;
use crate::ids::RunId;
use crate::time::Timestamp;

/// Where a run is in its lifecycle. A running run has no completion time; an
/// ended run always has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Completed { completed_at: Timestamp },
    Failed { completed_at: Timestamp },
    Interrupted { completed_at: Timestamp },
}

impl RunState {
    pub fn status(&self) -> RunStatus {
        match self {
            RunState::Running => RunStatus::Running,
            RunState::Completed { .. } => RunStatus::Completed,
            RunState::Failed { .. } => RunStatus::Failed,
            RunState::Interrupted { .. } => RunStatus::Interrupted,
        }
    }

    pub fn completed_at(&self) -> Option<Timestamp> {
        match self {
            RunState::Running => None,
            RunState::Completed { completed_at } | RunState::Failed { completed_at } | RunState::Interrupted { completed_at } => {
                Some(*completed_at)
            }
        }
    }

    /// Builds the state for a terminal status; `None` for `running`.
    pub fn ended(status: RunStatus, completed_at: Timestamp) -> Option<RunState> {
        match status {
            RunStatus::Running => None,
            RunStatus::Completed => Some(RunState::Completed { completed_at }),
            RunStatus::Failed => Some(RunState::Failed { completed_at }),
            RunStatus::Interrupted => Some(RunState::Interrupted { completed_at }),
        }
    }
}

/// Export bookkeeping of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExport {
    pub status: ExportStatus,
    pub error: Option<String>,
    pub exported_at: Option<Timestamp>,
    pub format: Option<String>,
    pub sink: Option<String>,
}

/// The process that executes (or executed) a run, for stale-run detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    pub host: String,
    pub pid: u32,
    pub heartbeat_at: Timestamp,
}

/// One execution of a pipeline configuration (`runs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub run_id: RunId,
    pub started_at: Timestamp,
    pub state: RunState,
    /// `sha256(settings_json)`.
    pub config_hash: ContentHash,
    /// Canonical JSON of the resolved settings, secrets fingerprinted.
    pub settings_json: String,
    pub reproducibility_grade: Option<ReproducibilityGrade>,
    pub canonical_version: String,
    pub source_schema_json: Option<String>,
    pub source_field_resolution_json: Option<String>,
    pub export: Option<RunExport>,
    pub schema_contract_json: Option<String>,
    pub schema_contract_hash: Option<String>,
    pub owner: Option<RunOwner>,
}
