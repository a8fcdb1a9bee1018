//! Source rows, tokens, token lineage and routing events.

use crate::enums::RoutingMode;
use crate::hashing::ContentHash;
use crate::ids::{
    EdgeId, EventId, ExpandGroupId, ForkGroupId, JoinGroupId, NodeId, RoutingGroupId, RowId, RunId, StateId, TokenId,
};
use crate::time::Timestamp;

/// One record produced by the source (`rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub row_id: RowId,
    pub run_id: RunId,
    pub source_node_id: NodeId,
    pub row_index: u64,
    pub source_data_hash: ContentHash,
    pub source_data_ref: Option<String>,
    pub created_at: Timestamp,
}

/// How a token came to exist. A token has at most one origin group, so the
/// three group-id columns can never be set together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLineage {
    /// The first token of a source row: no parents.
    Initial,
    /// A child of a fork: one parent, a branch.
    Forked { fork_group_id: ForkGroupId, branch_name: String },
    /// The merged token of a coalesce: one parent per consumed branch token.
    Joined { join_group_id: JoinGroupId },
    /// A child of an expansion (or of a transform-mode aggregation flush);
    /// inherits its parent's branch.
    Expanded { expand_group_id: ExpandGroupId, branch_name: Option<String> },
}

/// One instance of a row on one DAG path (`tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token_id: TokenId,
    pub row_id: RowId,
    pub run_id: RunId,
    pub lineage: TokenLineage,
    pub step_in_pipeline: Option<u32>,
    pub created_at: Timestamp,
}

/// A parent link of a forked, joined or expanded token (`token_parents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParent {
    pub token_id: TokenId,
    pub parent_token_id: TokenId,
    pub ordinal: u32,
}

/// One edge taken by one routing decision (`routing_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingEvent {
    pub event_id: EventId,
    pub state_id: StateId,
    pub edge_id: EdgeId,
    pub routing_group_id: RoutingGroupId,
    pub ordinal: u32,
    pub mode: RoutingMode,
    pub reason_hash: Option<ContentHash>,
    pub reason_ref: Option<String>,
    pub created_at: Timestamp,
}
