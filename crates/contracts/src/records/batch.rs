//! Aggregation batches, their members and outputs.

use crate::enums::{BatchStatus, TriggerType};
use crate::ids::{BatchId, BatchOutputId, NodeId, RunId, StateId, TokenId};
use crate::time::Timestamp;

/// Why a batch flushed: the trigger that fired first and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTrigger {
    pub trigger_type: TriggerType,
    /// For example "count reached 100" or "timeout after 30 s".
    pub trigger_reason: String,
}

/// Where a batch is in its lifecycle. Trigger fields exist only once the batch
/// left draft; a batch can fail straight from draft (no trigger, no state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchState {
    Draft,
    Executing { trigger: BatchTrigger, aggregation_state_id: StateId },
    Completed { trigger: BatchTrigger, aggregation_state_id: StateId, completed_at: Timestamp },
    Failed { flush: Option<(BatchTrigger, StateId)>, completed_at: Timestamp },
}

impl BatchState {
    pub fn status(&self) -> BatchStatus {
        match self {
            BatchState::Draft => BatchStatus::Draft,
            BatchState::Executing { .. } => BatchStatus::Executing,
            BatchState::Completed { .. } => BatchStatus::Completed,
            BatchState::Failed { .. } => BatchStatus::Failed,
        }
    }
}

/// An aggregation batch (`batches`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_id: BatchId,
    pub run_id: RunId,
    pub aggregation_node_id: NodeId,
    pub attempt: u32,
    /// The failed batch this one retries.
    pub retry_of_batch_id: Option<BatchId>,
    pub created_at: Timestamp,
    pub state: BatchState,
}

/// A token buffered into a batch (`batch_members`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMember {
    pub batch_id: BatchId,
    pub run_id: RunId,
    pub token_id: TokenId,
    pub ordinal: u32,
}

/// What a batch produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutputType {
    Token,
    Artifact,
}

impl BatchOutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchOutputType::Token => "token",
            BatchOutputType::Artifact => "artifact",
        }
    }
}

/// A link from a batch to something it produced (`batch_outputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutput {
    pub batch_output_id: BatchOutputId,
    pub batch_id: BatchId,
    pub output_type: BatchOutputType,
    pub output_id: String,
}
