//! External calls and the source/sink operations that can own them.

use crate::enums::{CallStatus, CallType, OperationStatus, OperationType, Verification};
use crate::hashing::ContentHash;
use crate::ids::{CallId, NodeId, OperationId, RunId, StateId};
use crate::time::Timestamp;

/// A call belongs to a node state or to an operation, never both, never neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallParent {
    State(StateId),
    Operation(OperationId),
}

/// Where a call's response came from (`calls.source_call_id`,
/// `verification_status`, `verification_json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOrigin {
    /// Made over the network.
    Live,
    /// Answered from an earlier run's recording (replay mode): no request
    /// was sent.
    Replayed { source_call_id: CallId },
    /// Made over the network and compared with an earlier run's recording
    /// (verify mode). `differences` is the JSON list of differing paths.
    Verified { source_call_id: Option<CallId>, verification: Verification, differences: Option<String> },
}

/// An external call (`calls`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub call_id: CallId,
    pub parent: CallParent,
    pub call_index: u32,
    pub call_type: CallType,
    pub status: CallStatus,
    pub request_hash: ContentHash,
    pub request_ref: Option<String>,
    pub response_hash: Option<ContentHash>,
    pub response_ref: Option<String>,
    pub error_json: Option<String>,
    pub latency_ms: Option<f64>,
    pub created_at: Timestamp,
    pub origin: CallOrigin,
}

/// The hash of a payload and, when a payload store holds it, its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRef {
    pub hash: ContentHash,
    pub data_ref: Option<String>,
}

/// Where an operation is in its lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationState {
    Open,
    Completed { completed_at: Timestamp, duration_ms: f64, output: Option<PayloadRef> },
    Pending { completed_at: Timestamp, duration_ms: f64, output: Option<PayloadRef> },
    Failed { completed_at: Timestamp, duration_ms: f64, output: Option<PayloadRef>, error_message: String },
}

impl OperationState {
    pub fn status(&self) -> OperationStatus {
        match self {
            OperationState::Open => OperationStatus::Open,
            OperationState::Completed { .. } => OperationStatus::Completed,
            OperationState::Pending { .. } => OperationStatus::Pending,
            OperationState::Failed { .. } => OperationStatus::Failed,
        }
    }
}

/// A source load or sink write (`operations`).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub operation_id: OperationId,
    pub run_id: RunId,
    pub node_id: NodeId,
    pub operation_type: OperationType,
    pub started_at: Timestamp,
    pub input: Option<PayloadRef>,
    pub state: OperationState,
}
