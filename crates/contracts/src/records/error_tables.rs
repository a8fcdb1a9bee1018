//! Source validation errors and transform errors.

use crate::hashing::ContentHash;
use crate::ids::{ErrorId, NodeId, RowId, RunId, TokenId};
use crate::time::Timestamp;

/// A source record that failed validation (`validation_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub error_id: ErrorId,
    pub run_id: RunId,
    pub node_id: Option<NodeId>,
    /// The quarantined row this error produced, when one was created.
    pub row_id: Option<RowId>,
    pub row_hash: ContentHash,
    pub row_data_json: Option<String>,
    pub error: String,
    pub schema_mode: String,
    pub destination: String,
    pub created_at: Timestamp,
    pub violation_type: Option<String>,
    pub original_field_name: Option<String>,
    pub normalized_field_name: Option<String>,
    pub expected_type: Option<String>,
    pub actual_type: Option<String>,
}

/// A transform that returned an error result for a token (`transform_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    pub error_id: ErrorId,
    pub run_id: RunId,
    pub token_id: TokenId,
    pub transform_id: NodeId,
    pub row_hash: ContentHash,
    pub row_data_json: Option<String>,
    pub error_details_json: Option<String>,
    pub destination: String,
    pub created_at: Timestamp,
}
