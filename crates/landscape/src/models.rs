//! Database row shapes, one per table, as diesel reads them. The loaders in
//! `loaders.rs` turn these into contract records, strictly.

#![allow(clippy::struct_excessive_bools)]

use chrono::NaiveDateTime;
use diesel::{Queryable, Selectable};

use crate::schema::{
    artifacts, batch_members, batches, calls, checkpoints, edges, node_states, nodes, operations, routing_events, rows, runs,
    secret_resolutions, token_outcomes, token_parents, tokens, transform_errors, validation_errors,
};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) started_at: NaiveDateTime,
    pub(crate) completed_at: Option<NaiveDateTime>,
    pub(crate) config_hash: String,
    pub(crate) settings_json: String,
    pub(crate) reproducibility_grade: Option<String>,
    pub(crate) canonical_version: String,
    pub(crate) source_schema_json: Option<String>,
    pub(crate) source_field_resolution_json: Option<String>,
    pub(crate) status: String,
    pub(crate) export_status: Option<String>,
    pub(crate) export_error: Option<String>,
    pub(crate) exported_at: Option<NaiveDateTime>,
    pub(crate) export_format: Option<String>,
    pub(crate) export_sink: Option<String>,
    pub(crate) schema_contract_json: Option<String>,
    pub(crate) schema_contract_hash: Option<String>,
    pub(crate) owner_host: Option<String>,
    pub(crate) owner_pid: Option<i64>,
    pub(crate) heartbeat_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = nodes)]
pub(crate) struct NodeRow {
    pub(crate) node_id: String,
    pub(crate) run_id: String,
    pub(crate) plugin_name: String,
    pub(crate) node_type: String,
    pub(crate) plugin_version: String,
    pub(crate) determinism: String,
    pub(crate) config_hash: String,
    pub(crate) config_json: String,
    pub(crate) schema_hash: Option<String>,
    pub(crate) sequence_in_pipeline: Option<i32>,
    pub(crate) registered_at: NaiveDateTime,
    pub(crate) schema_mode: Option<String>,
    pub(crate) schema_fields_json: Option<String>,
    pub(crate) input_contract_json: Option<String>,
    pub(crate) output_contract_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = edges)]
pub(crate) struct EdgeRow {
    pub(crate) edge_id: String,
    pub(crate) run_id: String,
    pub(crate) from_node_id: String,
    pub(crate) to_node_id: String,
    pub(crate) label: String,
    pub(crate) default_mode: String,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = rows)]
pub(crate) struct RowRow {
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) source_node_id: String,
    pub(crate) row_index: i64,
    pub(crate) source_data_hash: String,
    pub(crate) source_data_ref: Option<String>,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub(crate) struct TokenRow {
    pub(crate) token_id: String,
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) branch_name: Option<String>,
    pub(crate) step_in_pipeline: Option<i32>,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = token_parents)]
pub(crate) struct TokenParentRow {
    pub(crate) token_id: String,
    pub(crate) parent_token_id: String,
    pub(crate) ordinal: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = node_states)]
pub(crate) struct NodeStateRow {
    pub(crate) state_id: String,
    pub(crate) token_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) step_index: i32,
    pub(crate) attempt: i32,
    pub(crate) status: String,
    pub(crate) input_hash: String,
    pub(crate) output_hash: Option<String>,
    pub(crate) context_before_json: Option<String>,
    pub(crate) context_after_json: Option<String>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) error_json: Option<String>,
    pub(crate) success_reason_json: Option<String>,
    pub(crate) started_at: NaiveDateTime,
    pub(crate) completed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = operations)]
pub(crate) struct OperationRow {
    pub(crate) operation_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) operation_type: String,
    pub(crate) started_at: NaiveDateTime,
    pub(crate) completed_at: Option<NaiveDateTime>,
    pub(crate) status: String,
    pub(crate) input_data_ref: Option<String>,
    pub(crate) input_data_hash: Option<String>,
    pub(crate) output_data_ref: Option<String>,
    pub(crate) output_data_hash: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) duration_ms: Option<f64>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = calls)]
pub(crate) struct CallRow {
    pub(crate) call_id: String,
    pub(crate) state_id: Option<String>,
    pub(crate) operation_id: Option<String>,
    pub(crate) call_index: i32,
    pub(crate) call_type: String,
    pub(crate) status: String,
    pub(crate) request_hash: String,
    pub(crate) request_ref: Option<String>,
    pub(crate) response_hash: Option<String>,
    pub(crate) response_ref: Option<String>,
    pub(crate) error_json: Option<String>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) source_call_id: Option<String>,
    pub(crate) verification_status: Option<String>,
    pub(crate) verification_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = routing_events)]
pub(crate) struct RoutingEventRow {
    pub(crate) event_id: String,
    pub(crate) state_id: String,
    pub(crate) edge_id: String,
    pub(crate) routing_group_id: String,
    pub(crate) ordinal: i32,
    pub(crate) mode: String,
    pub(crate) reason_hash: Option<String>,
    pub(crate) reason_ref: Option<String>,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = batches)]
pub(crate) struct BatchRow {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) aggregation_node_id: String,
    pub(crate) aggregation_state_id: Option<String>,
    pub(crate) trigger_reason: Option<String>,
    pub(crate) trigger_type: Option<String>,
    pub(crate) attempt: i32,
    pub(crate) status: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) completed_at: Option<NaiveDateTime>,
    pub(crate) retry_of_batch_id: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = batch_members)]
pub(crate) struct BatchMemberRow {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) ordinal: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = artifacts)]
pub(crate) struct ArtifactRow {
    pub(crate) artifact_id: String,
    pub(crate) run_id: String,
    pub(crate) produced_by_state_id: String,
    pub(crate) sink_node_id: String,
    pub(crate) artifact_type: String,
    pub(crate) path_or_uri: String,
    pub(crate) content_hash: String,
    pub(crate) size_bytes: i64,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = token_outcomes)]
pub(crate) struct TokenOutcomeRow {
    pub(crate) outcome_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) outcome: String,
    pub(crate) is_terminal: i32,
    pub(crate) recorded_at: NaiveDateTime,
    pub(crate) sink_name: Option<String>,
    pub(crate) batch_id: Option<String>,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) error_hash: Option<String>,
    pub(crate) context_json: Option<String>,
    pub(crate) expected_branches_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = validation_errors)]
pub(crate) struct ValidationErrorRow {
    pub(crate) error_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: Option<String>,
    pub(crate) row_id: Option<String>,
    pub(crate) row_hash: String,
    pub(crate) row_data_json: Option<String>,
    pub(crate) error: String,
    pub(crate) schema_mode: String,
    pub(crate) destination: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) violation_type: Option<String>,
    pub(crate) original_field_name: Option<String>,
    pub(crate) normalized_field_name: Option<String>,
    pub(crate) expected_type: Option<String>,
    pub(crate) actual_type: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = transform_errors)]
pub(crate) struct TransformErrorRow {
    pub(crate) error_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) transform_id: String,
    pub(crate) row_hash: String,
    pub(crate) row_data_json: Option<String>,
    pub(crate) error_details_json: Option<String>,
    pub(crate) destination: String,
    pub(crate) created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = checkpoints)]
pub(crate) struct CheckpointRow {
    pub(crate) checkpoint_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) node_id: String,
    pub(crate) sequence_number: i64,
    pub(crate) aggregation_state_json: Option<String>,
    pub(crate) coalesce_state_json: Option<String>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) upstream_topology_hash: String,
    pub(crate) checkpoint_node_config_hash: String,
    pub(crate) format_version: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = secret_resolutions)]
pub(crate) struct SecretResolutionRow {
    pub(crate) resolution_id: String,
    pub(crate) run_id: String,
    pub(crate) timestamp: f64,
    pub(crate) env_var_name: String,
    pub(crate) source: String,
    pub(crate) vault_url: Option<String>,
    pub(crate) secret_name: Option<String>,
    pub(crate) fingerprint: String,
    pub(crate) resolution_latency_ms: Option<f64>,
}
