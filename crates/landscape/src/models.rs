//! Database row shapes, one per table, as diesel reads them. The loaders in
//! `loaders.rs` turn these into contract records, strictly.

#![allow(clippy::struct_excessive_bools)]

use chrono::format::{Fixed, Item, Numeric, Pad, Parsed};
use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;
use diesel::{Queryable, Selectable};

use crate::schema::{
    artifacts, batch_members, batches, calls, checkpoints, edges, node_states, nodes, operations, routing_events, rows, runs,
    secret_resolutions, token_outcomes, token_parents, tokens, transform_errors, validation_errors,
};

/// A timestamp column as read. On SQLite the recorder writes one text form
/// (`YYYY-MM-DD HH:MM:SS.ffffff`); it is parsed with pre-built `chrono`
/// items instead of diesel's list of format strings, which are compiled
/// again for every value (a few percent of an export). Any other form falls
/// back to diesel's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub(crate) struct DbTime(pub(crate) NaiveDateTime);

/// `%Y-%m-%d %H:%M:%S%.f` as parsed items.
const RECORDED_TIME: [Item<'static>; 12] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal(" "),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
    Item::Fixed(Fixed::Nanosecond),
];

impl FromSql<Timestamp, Sqlite> for DbTime {
    fn from_sql(mut value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let mut parsed = Parsed::new();
        let fast = chrono::format::parse(&mut parsed, value.read_text(), RECORDED_TIME.iter())
            .and_then(|()| parsed.to_naive_datetime_with_offset(0));
        match fast {
            Ok(time) => Ok(DbTime(time)),
            Err(_) => <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(DbTime),
        }
    }
}

/// Reading through the two-backend connection dispatches to the two above.
impl FromSql<Timestamp, Backend> for DbTime {
    fn from_sql(value: <Backend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, Timestamp>()
    }
}

/// The backend of [`crate::DbConnection`].
type Backend = <crate::DbConnection as diesel::Connection>::Backend;

impl FromSql<Timestamp, Pg> for DbTime {
    fn from_sql(value: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(DbTime)
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
    pub(crate) config_hash: String,
    pub(crate) settings_json: String,
    pub(crate) reproducibility_grade: Option<String>,
    pub(crate) canonical_version: String,
    pub(crate) source_schema_json: Option<String>,
    pub(crate) source_field_resolution_json: Option<String>,
    pub(crate) status: String,
    pub(crate) export_status: Option<String>,
    pub(crate) export_error: Option<String>,
    pub(crate) exported_at: Option<DbTime>,
    pub(crate) export_format: Option<String>,
    pub(crate) export_sink: Option<String>,
    pub(crate) schema_contract_json: Option<String>,
    pub(crate) schema_contract_hash: Option<String>,
    pub(crate) owner_host: Option<String>,
    pub(crate) owner_pid: Option<i64>,
    pub(crate) heartbeat_at: Option<DbTime>,
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
    pub(crate) registered_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = operations)]
pub(crate) struct OperationRow {
    pub(crate) operation_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) operation_type: String,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
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
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = token_outcomes)]
pub(crate) struct TokenOutcomeRow {
    pub(crate) outcome_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) outcome: String,
    pub(crate) is_terminal: i32,
    pub(crate) recorded_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
    pub(crate) created_at: DbTime,
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
