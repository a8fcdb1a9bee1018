//! Artifacts written by sinks, checkpoints and secret resolutions.

use crate::enums::SecretSource;
use crate::hashing::ContentHash;
use crate::ids::{ArtifactId, CheckpointId, NodeId, ResolutionId, RunId, StateId, TokenId};
use crate::time::Timestamp;

/// A file or resource a sink wrote (`artifacts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub artifact_id: ArtifactId,
    pub run_id: RunId,
    pub produced_by_state_id: StateId,
    pub sink_node_id: NodeId,
    pub artifact_type: String,
    pub path_or_uri: String,
    pub content_hash: ContentHash,
    pub size_bytes: u64,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
}

/// A resumable point of a run (`checkpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub checkpoint_id: CheckpointId,
    pub run_id: RunId,
    pub token_id: TokenId,
    pub node_id: NodeId,
    pub sequence_number: u64,
    pub aggregation_state_json: Option<String>,
    pub coalesce_state_json: Option<String>,
    pub created_at: Timestamp,
    pub upstream_topology_hash: ContentHash,
    pub checkpoint_node_config_hash: ContentHash,
    pub format_version: u32,
}

/// A secret resolved for a run; only its HMAC fingerprint is kept
/// (`secret_resolutions`).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretResolution {
    pub resolution_id: ResolutionId,
    pub run_id: RunId,
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    pub env_var_name: String,
    pub source: SecretSource,
    pub vault_url: Option<String>,
    pub secret_name: Option<String>,
    pub fingerprint: ContentHash,
    pub resolution_latency_ms: Option<f64>,
}
