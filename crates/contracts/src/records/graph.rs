//! Nodes and edges registered for a run.

use crate::enums::{Determinism, NodeType, RoutingMode};
use crate::hashing::ContentHash;
use crate::ids::{EdgeId, NodeId, RunId};
use crate::time::Timestamp;

/// One plugin instance of a run (`nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub node_id: NodeId,
    pub run_id: RunId,
    pub plugin_name: String,
    pub node_type: NodeType,
    pub plugin_version: String,
    pub determinism: Determinism,
    /// `sha256(config_json)`.
    pub config_hash: ContentHash,
    /// Canonical JSON of the node configuration, secrets fingerprinted.
    pub config_json: String,
    pub schema_hash: Option<ContentHash>,
    pub sequence_in_pipeline: Option<u32>,
    pub registered_at: Timestamp,
    pub schema_mode: Option<String>,
    pub schema_fields_json: Option<String>,
    pub input_contract_json: Option<String>,
    pub output_contract_json: Option<String>,
}

/// A connection between two nodes (`edges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub edge_id: EdgeId,
    pub run_id: RunId,
    pub from_node_id: NodeId,
    pub to_node_id: NodeId,
    pub label: String,
    pub default_mode: RoutingMode,
    pub created_at: Timestamp,
}
