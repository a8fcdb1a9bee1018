//! Token outcomes: the one terminal fact recorded for every token (plus any
//! number of earlier `buffered` facts).

use crate::enums::RowOutcome;
use crate::ids::{BatchId, ExpandGroupId, ForkGroupId, JoinGroupId, OutcomeId, RunId, TokenId};
use crate::time::Timestamp;

/// The outcome together with exactly the fields it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeDetail {
    Completed {
        sink_name: String,
    },
    Routed {
        sink_name: String,
    },
    Forked {
        fork_group_id: ForkGroupId,
        expected_branches: Vec<String>,
    },
    /// A failure; `batch_id` is set when a batch flush failed.
    Failed {
        error_hash: String,
        batch_id: Option<BatchId>,
    },
    /// Quarantined; `sink_name` when the row went to a quarantine sink.
    Quarantined {
        error_hash: String,
        sink_name: Option<String>,
    },
    /// Diverted by a sink to its failsink (or `__discard__`).
    Diverted {
        sink_name: String,
        error_hash: String,
    },
    ConsumedInBatch {
        batch_id: BatchId,
    },
    Coalesced {
        join_group_id: JoinGroupId,
    },
    Expanded {
        expand_group_id: ExpandGroupId,
        count: u32,
    },
    Buffered {
        batch_id: BatchId,
    },
}

impl OutcomeDetail {
    /// The sink the token was delivered (or diverted) to, if any.
    pub fn sink_name(&self) -> Option<&str> {
        match self {
            OutcomeDetail::Completed { sink_name }
            | OutcomeDetail::Routed { sink_name }
            | OutcomeDetail::Diverted { sink_name, .. } => Some(sink_name),
            OutcomeDetail::Quarantined { sink_name, .. } => sink_name.as_deref(),
            OutcomeDetail::Forked { .. }
            | OutcomeDetail::Failed { .. }
            | OutcomeDetail::ConsumedInBatch { .. }
            | OutcomeDetail::Coalesced { .. }
            | OutcomeDetail::Expanded { .. }
            | OutcomeDetail::Buffered { .. } => None,
        }
    }

    pub fn outcome(&self) -> RowOutcome {
        match self {
            OutcomeDetail::Completed { .. } => RowOutcome::Completed,
            OutcomeDetail::Routed { .. } => RowOutcome::Routed,
            OutcomeDetail::Forked { .. } => RowOutcome::Forked,
            OutcomeDetail::Failed { .. } => RowOutcome::Failed,
            OutcomeDetail::Quarantined { .. } => RowOutcome::Quarantined,
            OutcomeDetail::Diverted { .. } => RowOutcome::Diverted,
            OutcomeDetail::ConsumedInBatch { .. } => RowOutcome::ConsumedInBatch,
            OutcomeDetail::Coalesced { .. } => RowOutcome::Coalesced,
            OutcomeDetail::Expanded { .. } => RowOutcome::Expanded,
            OutcomeDetail::Buffered { .. } => RowOutcome::Buffered,
        }
    }
}

/// A recorded outcome (`token_outcomes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOutcome {
    pub outcome_id: OutcomeId,
    pub run_id: RunId,
    pub token_id: TokenId,
    pub recorded_at: Timestamp,
    pub detail: OutcomeDetail,
    /// Canonical JSON context (coalesce merge metadata, for example).
    pub context_json: Option<String>,
}

impl TokenOutcome {
    pub fn is_terminal(&self) -> bool {
        self.detail.outcome().is_terminal()
    }
}
