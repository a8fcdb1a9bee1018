//! Node states: one visit of one token to one node, as a discriminated union.
//!
//! | field          | Open | Pending | Completed | Failed   |
//! |----------------|------|---------|-----------|----------|
//! | completed_at   | -    | yes     | yes       | yes      |
//! | duration_ms    | -    | yes     | yes       | yes      |
//! | output_hash    | -    | -       | yes       | optional |
//! | error_json     | -    | -       | -         | yes      |
//! | success_reason | -    | -       | optional  | -        |
//! | context_after  | -    | optional| optional  | optional |

use crate::enums::NodeStateStatus;
use crate::hashing::ContentHash;
use crate::ids::{NodeId, RunId, StateId, TokenId};
use crate::time::Timestamp;

/// Columns every node state has, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStateCommon {
    pub state_id: StateId,
    pub token_id: TokenId,
    pub run_id: RunId,
    pub node_id: NodeId,
    pub step_index: u32,
    pub attempt: u32,
    pub input_hash: ContentHash,
    pub context_before_json: Option<String>,
    pub started_at: Timestamp,
}

/// A node state in exactly one of its four statuses.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    Open {
        common: NodeStateCommon,
    },
    /// Work submitted, result not yet available: closed for now, no output.
    Pending {
        common: NodeStateCommon,
        completed_at: Timestamp,
        duration_ms: f64,
        context_after_json: Option<String>,
    },
    Completed {
        common: NodeStateCommon,
        output_hash: ContentHash,
        completed_at: Timestamp,
        duration_ms: f64,
        context_after_json: Option<String>,
        success_reason_json: Option<String>,
    },
    Failed {
        common: NodeStateCommon,
        output_hash: Option<ContentHash>,
        completed_at: Timestamp,
        duration_ms: f64,
        error_json: String,
        context_after_json: Option<String>,
    },
}

impl NodeState {
    pub fn status(&self) -> NodeStateStatus {
        match self {
            NodeState::Open { .. } => NodeStateStatus::Open,
            NodeState::Pending { .. } => NodeStateStatus::Pending,
            NodeState::Completed { .. } => NodeStateStatus::Completed,
            NodeState::Failed { .. } => NodeStateStatus::Failed,
        }
    }

    pub fn common(&self) -> &NodeStateCommon {
        match self {
            NodeState::Open { common }
            | NodeState::Pending { common, .. }
            | NodeState::Completed { common, .. }
            | NodeState::Failed { common, .. } => common,
        }
    }
}
