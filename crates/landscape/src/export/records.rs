//! One streaming query per record type; every record is the full contract
//! record, destructured field by field, so a new column cannot be forgotten.

use diesel::prelude::*;
use serde_json::{Map, Value as J};

use contracts::records::{
    Artifact, Batch, BatchMember, BatchState, Call, CallOrigin, CallParent, Edge, Node, NodeState, NodeStateCommon, Operation,
    OperationState, OutcomeDetail, PayloadRef, RoutingEvent, Row, Run, RunExport, RunOwner, RunState, SecretResolution, Token,
    TokenLineage, TokenOutcome, TokenParent, TransformError, ValidationError,
};
use contracts::time::render;
use contracts::{RunId, Timestamp};

use super::RecordQueue;
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::loaders;
use crate::models::{
    ArtifactRow, BatchMemberRow, BatchRow, CallRow, EdgeRow, NodeRow, NodeStateRow, OperationRow, RoutingEventRow, RowRow,
    RunRow, SecretResolutionRow, TokenOutcomeRow, TokenParentRow, TokenRow, TransformErrorRow, ValidationErrorRow,
};
use crate::schema::{
    artifacts, batch_members, batches, calls, edges, node_states, nodes, operations, routing_events, rows, runs,
    secret_resolutions, token_outcomes, token_parents, tokens, transform_errors, validation_errors,
};

fn ts(value: Timestamp) -> J {
    J::String(render(&value))
}

fn opt_ts(value: Option<Timestamp>) -> J {
    value.map_or(J::Null, ts)
}

fn s(value: impl ToString) -> J {
    J::String(value.to_string())
}

fn opt_s<T: ToString>(value: Option<T>) -> J {
    value.map_or(J::Null, |v| J::String(v.to_string()))
}

fn record(kind: &str, run_id: &RunId) -> Map<String, J> {
    let mut map = Map::new();
    map.insert("record_type".into(), J::String(kind.to_owned()));
    map.insert("run_id".into(), J::String(run_id.as_str().to_owned()));
    map
}

/// Streams `$query` (ordered) as `$model` rows into `$body`, on the backend's
/// own connection.
macro_rules! stream {
    ($conn:expr, $query:expr, $model:ty, |$item:ident| $body:expr) => {{
        crate::on_backend!($conn, |c| {
            let cursor = $query.select(<$model>::as_select()).load_iter::<$model, diesel::connection::DefaultLoadingMode>(c)?;
            for item in cursor {
                let $item = item?;
                $body?;
            }
            Ok::<(), LandscapeError>(())
        })?;
    }};
}

pub fn run_record(run: Run) -> Map<String, J> {
    let Run {
        run_id,
        started_at,
        state,
        config_hash,
        settings_json,
        reproducibility_grade,
        canonical_version,
        source_schema_json,
        source_field_resolution_json,
        export,
        schema_contract_json,
        schema_contract_hash,
        owner,
    } = run;
    let mut map = record("run", &run_id);
    map.insert("status".into(), s(state.status()));
    map.insert("started_at".into(), ts(started_at));
    map.insert("completed_at".into(), opt_ts(state.completed_at()));
    let _: RunState = state;
    map.insert("config_hash".into(), s(config_hash));
    // Parsed back (the loader already verified it hashes to config_hash).
    map.insert("settings".into(), serde_json::from_str(&settings_json).unwrap_or(J::Null));
    map.insert("settings_json".into(), J::String(settings_json));
    map.insert("reproducibility_grade".into(), opt_s(reproducibility_grade));
    map.insert("canonical_version".into(), J::String(canonical_version));
    map.insert("source_schema_json".into(), opt_s(source_schema_json));
    map.insert("source_field_resolution_json".into(), opt_s(source_field_resolution_json));
    // Export bookkeeping changes when the run is exported, so it is not part of
    // the exported record (an export must not depend on having been exported).
    let _: Option<RunExport> = export;
    map.insert("schema_contract_json".into(), opt_s(schema_contract_json));
    map.insert("schema_contract_hash".into(), opt_s(schema_contract_hash));
    let (host, pid, heartbeat) = match owner {
        Some(RunOwner { host, pid, heartbeat_at }) => (J::String(host), J::from(pid), ts(heartbeat_at)),
        None => (J::Null, J::Null, J::Null),
    };
    map.insert("owner_host".into(), host);
    map.insert("owner_pid".into(), pid);
    map.insert("heartbeat_at".into(), heartbeat);
    map
}

pub fn node_record(node: Node) -> Map<String, J> {
    let Node {
        node_id,
        run_id,
        plugin_name,
        node_type,
        plugin_version,
        determinism,
        config_hash,
        config_json,
        schema_hash,
        sequence_in_pipeline,
        registered_at,
        schema_mode,
        schema_fields_json,
        input_contract_json,
        output_contract_json,
    } = node;
    let mut map = record("node", &run_id);
    map.insert("node_id".into(), s(node_id));
    map.insert("plugin_name".into(), J::String(plugin_name));
    map.insert("node_type".into(), s(node_type));
    map.insert("plugin_version".into(), J::String(plugin_version));
    map.insert("determinism".into(), s(determinism));
    map.insert("config_hash".into(), s(config_hash));
    map.insert("config".into(), serde_json::from_str(&config_json).unwrap_or(J::Null));
    map.insert("config_json".into(), J::String(config_json));
    map.insert("schema_hash".into(), opt_s(schema_hash));
    map.insert("sequence_in_pipeline".into(), sequence_in_pipeline.map_or(J::Null, J::from));
    map.insert("registered_at".into(), ts(registered_at));
    map.insert("schema_mode".into(), opt_s(schema_mode));
    map.insert("schema_fields_json".into(), opt_s(schema_fields_json));
    map.insert("input_contract_json".into(), opt_s(input_contract_json));
    map.insert("output_contract_json".into(), opt_s(output_contract_json));
    map
}

pub fn edge_record(edge: Edge) -> Map<String, J> {
    let Edge { edge_id, run_id, from_node_id, to_node_id, label, default_mode, created_at } = edge;
    let mut map = record("edge", &run_id);
    map.insert("edge_id".into(), s(edge_id));
    map.insert("from_node_id".into(), s(from_node_id));
    map.insert("to_node_id".into(), s(to_node_id));
    map.insert("label".into(), J::String(label));
    map.insert("default_mode".into(), s(default_mode));
    map.insert("created_at".into(), ts(created_at));
    map
}

fn payload(map: &mut Map<String, J>, prefix: &str, value: Option<PayloadRef>) {
    let (hash, data_ref) = match value {
        Some(PayloadRef { hash, data_ref }) => (s(hash), opt_s(data_ref)),
        None => (J::Null, J::Null),
    };
    map.insert(format!("{prefix}_data_hash"), hash);
    map.insert(format!("{prefix}_data_ref"), data_ref);
}

pub fn operation_record(operation: Operation) -> Map<String, J> {
    let Operation { operation_id, run_id, node_id, operation_type, started_at, input, state } = operation;
    let mut map = record("operation", &run_id);
    map.insert("operation_id".into(), s(operation_id));
    map.insert("node_id".into(), s(node_id));
    map.insert("operation_type".into(), s(operation_type));
    map.insert("status".into(), s(state.status()));
    map.insert("started_at".into(), ts(started_at));
    payload(&mut map, "input", input);
    let (completed_at, duration, output, error) = match state {
        OperationState::Open => (None, None, None, None),
        OperationState::Completed { completed_at, duration_ms, output }
        | OperationState::Pending { completed_at, duration_ms, output } => (Some(completed_at), Some(duration_ms), output, None),
        OperationState::Failed { completed_at, duration_ms, output, error_message } => {
            (Some(completed_at), Some(duration_ms), output, Some(error_message))
        }
    };
    map.insert("completed_at".into(), opt_ts(completed_at));
    map.insert("duration_ms".into(), duration.map_or(J::Null, J::from));
    payload(&mut map, "output", output);
    map.insert("error_message".into(), opt_s(error));
    map
}

pub fn call_record(call: Call, run_id: &RunId) -> Map<String, J> {
    let Call {
        call_id,
        parent,
        call_index,
        call_type,
        status,
        request_hash,
        request_ref,
        response_hash,
        response_ref,
        error_json,
        latency_ms,
        created_at,
        origin,
    } = call;
    let mut map = record("call", run_id);
    map.insert("call_id".into(), s(call_id));
    let (state_id, operation_id) = match parent {
        CallParent::State(id) => (s(id), J::Null),
        CallParent::Operation(id) => (J::Null, s(id)),
    };
    map.insert("state_id".into(), state_id);
    map.insert("operation_id".into(), operation_id);
    map.insert("call_index".into(), J::from(call_index));
    map.insert("call_type".into(), s(call_type));
    map.insert("status".into(), s(status));
    map.insert("request_hash".into(), s(request_hash));
    map.insert("request_ref".into(), opt_s(request_ref));
    map.insert("response_hash".into(), opt_s(response_hash));
    map.insert("response_ref".into(), opt_s(response_ref));
    map.insert("error_json".into(), opt_s(error_json));
    map.insert("latency_ms".into(), latency_ms.map_or(J::Null, J::from));
    map.insert("created_at".into(), ts(created_at));
    let (source_call_id, verification, differences) = match origin {
        CallOrigin::Live => (None, None, None),
        CallOrigin::Replayed { source_call_id } => (Some(source_call_id), None, None),
        CallOrigin::Verified { source_call_id, verification, differences } => (source_call_id, Some(verification), differences),
    };
    map.insert("source_call_id".into(), opt_s(source_call_id));
    map.insert("verification_status".into(), opt_s(verification));
    map.insert("verification_json".into(), opt_s(differences));
    map
}

pub fn row_record(row: Row) -> Map<String, J> {
    let Row { row_id, run_id, source_node_id, row_index, source_data_hash, source_data_ref, created_at } = row;
    let mut map = record("row", &run_id);
    map.insert("row_id".into(), s(row_id));
    map.insert("source_node_id".into(), s(source_node_id));
    map.insert("row_index".into(), J::from(row_index));
    map.insert("source_data_hash".into(), s(source_data_hash));
    map.insert("source_data_ref".into(), opt_s(source_data_ref));
    map.insert("created_at".into(), ts(created_at));
    map
}

pub fn token_record(token: Token) -> Map<String, J> {
    let Token { token_id, row_id, run_id, lineage, step_in_pipeline, created_at } = token;
    let mut map = record("token", &run_id);
    map.insert("token_id".into(), s(token_id));
    map.insert("row_id".into(), s(row_id));
    let (fork, join, expand, branch) = match lineage {
        TokenLineage::Initial => (J::Null, J::Null, J::Null, J::Null),
        TokenLineage::Forked { fork_group_id, branch_name } => (s(fork_group_id), J::Null, J::Null, J::String(branch_name)),
        TokenLineage::Joined { join_group_id } => (J::Null, s(join_group_id), J::Null, J::Null),
        TokenLineage::Expanded { expand_group_id, branch_name } => (J::Null, J::Null, s(expand_group_id), opt_s(branch_name)),
    };
    map.insert("fork_group_id".into(), fork);
    map.insert("join_group_id".into(), join);
    map.insert("expand_group_id".into(), expand);
    map.insert("branch_name".into(), branch);
    map.insert("step_in_pipeline".into(), step_in_pipeline.map_or(J::Null, J::from));
    map.insert("created_at".into(), ts(created_at));
    map
}

pub fn token_parent_record(parent: TokenParent, run_id: &RunId) -> Map<String, J> {
    let TokenParent { token_id, parent_token_id, ordinal } = parent;
    let mut map = record("token_parent", run_id);
    map.insert("token_id".into(), s(token_id));
    map.insert("parent_token_id".into(), s(parent_token_id));
    map.insert("ordinal".into(), J::from(ordinal));
    map
}

pub fn outcome_record(outcome: TokenOutcome) -> Map<String, J> {
    let is_terminal = outcome.is_terminal();
    let TokenOutcome { outcome_id, run_id, token_id, recorded_at, detail, context_json } = outcome;
    let mut map = record("token_outcome", &run_id);
    map.insert("outcome_id".into(), s(outcome_id));
    map.insert("token_id".into(), s(token_id));
    map.insert("outcome".into(), s(detail.outcome()));
    map.insert("is_terminal".into(), J::Bool(is_terminal));
    map.insert("recorded_at".into(), ts(recorded_at));
    let mut fields: [(&str, J); 7] = [
        ("sink_name", J::Null),
        ("batch_id", J::Null),
        ("fork_group_id", J::Null),
        ("join_group_id", J::Null),
        ("expand_group_id", J::Null),
        ("error_hash", J::Null),
        ("expected_branches_json", J::Null),
    ];
    let mut set = |name: &str, value: J| {
        if let Some(slot) = fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        }
    };
    match detail {
        OutcomeDetail::Completed { sink_name } | OutcomeDetail::Routed { sink_name } => set("sink_name", J::String(sink_name)),
        OutcomeDetail::Forked { fork_group_id, expected_branches } => {
            set("fork_group_id", s(fork_group_id));
            set("expected_branches_json", J::String(serde_json::to_string(&expected_branches).unwrap_or_default()));
        }
        OutcomeDetail::Failed { error_hash, batch_id } => {
            set("error_hash", J::String(error_hash));
            set("batch_id", opt_s(batch_id));
        }
        OutcomeDetail::Quarantined { error_hash, sink_name } => {
            set("error_hash", J::String(error_hash));
            set("sink_name", opt_s(sink_name));
        }
        OutcomeDetail::Diverted { sink_name, error_hash } => {
            set("sink_name", J::String(sink_name));
            set("error_hash", J::String(error_hash));
        }
        OutcomeDetail::ConsumedInBatch { batch_id } | OutcomeDetail::Buffered { batch_id } => set("batch_id", s(batch_id)),
        OutcomeDetail::Coalesced { join_group_id } => set("join_group_id", s(join_group_id)),
        OutcomeDetail::Expanded { expand_group_id, count } => {
            set("expand_group_id", s(expand_group_id));
            set("expected_branches_json", J::String(serde_json::json!({ "count": count }).to_string()));
        }
    }
    for (name, value) in fields {
        map.insert(name.into(), value);
    }
    map.insert("context_json".into(), opt_s(context_json));
    map
}

pub fn node_state_record(state: NodeState) -> Map<String, J> {
    let status = state.status();
    let (common, output_hash, completed_at, duration_ms, context_after_json, error_json, success_reason_json) = match state {
        NodeState::Open { common } => (common, None, None, None, None, None, None),
        NodeState::Pending { common, completed_at, duration_ms, context_after_json } => {
            (common, None, Some(completed_at), Some(duration_ms), context_after_json, None, None)
        }
        NodeState::Completed { common, output_hash, completed_at, duration_ms, context_after_json, success_reason_json } => {
            (common, Some(output_hash), Some(completed_at), Some(duration_ms), context_after_json, None, success_reason_json)
        }
        NodeState::Failed { common, output_hash, completed_at, duration_ms, error_json, context_after_json } => {
            (common, output_hash, Some(completed_at), Some(duration_ms), context_after_json, Some(error_json), None)
        }
    };
    let NodeStateCommon { state_id, token_id, run_id, node_id, step_index, attempt, input_hash, context_before_json, started_at } =
        common;
    let mut map = record("node_state", &run_id);
    map.insert("state_id".into(), s(state_id));
    map.insert("token_id".into(), s(token_id));
    map.insert("node_id".into(), s(node_id));
    map.insert("step_index".into(), J::from(step_index));
    map.insert("attempt".into(), J::from(attempt));
    map.insert("status".into(), s(status));
    map.insert("input_hash".into(), s(input_hash));
    map.insert("output_hash".into(), opt_s(output_hash));
    map.insert("context_before_json".into(), opt_s(context_before_json));
    map.insert("context_after_json".into(), opt_s(context_after_json));
    map.insert("duration_ms".into(), duration_ms.map_or(J::Null, J::from));
    map.insert("error_json".into(), opt_s(error_json));
    map.insert("success_reason_json".into(), opt_s(success_reason_json));
    map.insert("started_at".into(), ts(started_at));
    map.insert("completed_at".into(), opt_ts(completed_at));
    map
}

pub fn routing_event_record(event: RoutingEvent, run_id: &RunId) -> Map<String, J> {
    let RoutingEvent { event_id, state_id, edge_id, routing_group_id, ordinal, mode, reason_hash, reason_ref, created_at } =
        event;
    let mut map = record("routing_event", run_id);
    map.insert("event_id".into(), s(event_id));
    map.insert("state_id".into(), s(state_id));
    map.insert("edge_id".into(), s(edge_id));
    map.insert("routing_group_id".into(), s(routing_group_id));
    map.insert("ordinal".into(), J::from(ordinal));
    map.insert("mode".into(), s(mode));
    map.insert("reason_hash".into(), opt_s(reason_hash));
    map.insert("reason_ref".into(), opt_s(reason_ref));
    map.insert("created_at".into(), ts(created_at));
    map
}

pub fn batch_record(batch: Batch) -> Map<String, J> {
    let Batch { batch_id, run_id, aggregation_node_id, attempt, retry_of_batch_id, created_at, state } = batch;
    let mut map = record("batch", &run_id);
    map.insert("batch_id".into(), s(batch_id));
    map.insert("aggregation_node_id".into(), s(aggregation_node_id));
    map.insert("attempt".into(), J::from(attempt));
    map.insert("retry_of_batch_id".into(), opt_s(retry_of_batch_id));
    map.insert("status".into(), s(state.status()));
    map.insert("created_at".into(), ts(created_at));
    let (flush, completed_at) = match state {
        BatchState::Draft => (None, None),
        BatchState::Executing { trigger, aggregation_state_id } => (Some((trigger, aggregation_state_id)), None),
        BatchState::Completed { trigger, aggregation_state_id, completed_at } => {
            (Some((trigger, aggregation_state_id)), Some(completed_at))
        }
        BatchState::Failed { flush, completed_at } => (flush, Some(completed_at)),
    };
    let (trigger_type, trigger_reason, state_id) = match flush {
        Some((trigger, state_id)) => (s(trigger.trigger_type), J::String(trigger.trigger_reason), s(state_id)),
        None => (J::Null, J::Null, J::Null),
    };
    map.insert("trigger_type".into(), trigger_type);
    map.insert("trigger_reason".into(), trigger_reason);
    map.insert("aggregation_state_id".into(), state_id);
    map.insert("completed_at".into(), opt_ts(completed_at));
    map
}

pub fn batch_member_record(member: BatchMember) -> Map<String, J> {
    let BatchMember { batch_id, run_id, token_id, ordinal } = member;
    let mut map = record("batch_member", &run_id);
    map.insert("batch_id".into(), s(batch_id));
    map.insert("token_id".into(), s(token_id));
    map.insert("ordinal".into(), J::from(ordinal));
    map
}

pub fn artifact_record(artifact: Artifact) -> Map<String, J> {
    let Artifact {
        artifact_id,
        run_id,
        produced_by_state_id,
        sink_node_id,
        artifact_type,
        path_or_uri,
        content_hash,
        size_bytes,
        idempotency_key,
        created_at,
    } = artifact;
    let mut map = record("artifact", &run_id);
    map.insert("artifact_id".into(), s(artifact_id));
    map.insert("produced_by_state_id".into(), s(produced_by_state_id));
    map.insert("sink_node_id".into(), s(sink_node_id));
    map.insert("artifact_type".into(), J::String(artifact_type));
    map.insert("path_or_uri".into(), J::String(path_or_uri));
    map.insert("content_hash".into(), s(content_hash));
    map.insert("size_bytes".into(), J::from(size_bytes));
    map.insert("idempotency_key".into(), opt_s(idempotency_key));
    map.insert("created_at".into(), ts(created_at));
    map
}

pub fn validation_error_record(error: ValidationError) -> Map<String, J> {
    let ValidationError {
        error_id,
        run_id,
        node_id,
        row_id,
        row_hash,
        row_data_json,
        error,
        schema_mode,
        destination,
        created_at,
        violation_type,
        original_field_name,
        normalized_field_name,
        expected_type,
        actual_type,
    } = error;
    let mut map = record("validation_error", &run_id);
    map.insert("error_id".into(), s(error_id));
    map.insert("node_id".into(), opt_s(node_id));
    map.insert("row_id".into(), opt_s(row_id));
    map.insert("row_hash".into(), s(row_hash));
    map.insert("row_data_json".into(), opt_s(row_data_json));
    map.insert("error".into(), J::String(error));
    map.insert("schema_mode".into(), J::String(schema_mode));
    map.insert("destination".into(), J::String(destination));
    map.insert("created_at".into(), ts(created_at));
    map.insert("violation_type".into(), opt_s(violation_type));
    map.insert("original_field_name".into(), opt_s(original_field_name));
    map.insert("normalized_field_name".into(), opt_s(normalized_field_name));
    map.insert("expected_type".into(), opt_s(expected_type));
    map.insert("actual_type".into(), opt_s(actual_type));
    map
}

pub fn transform_error_record(error: TransformError) -> Map<String, J> {
    let TransformError {
        error_id,
        run_id,
        token_id,
        transform_id,
        row_hash,
        row_data_json,
        error_details_json,
        destination,
        created_at,
    } = error;
    let mut map = record("transform_error", &run_id);
    map.insert("error_id".into(), s(error_id));
    map.insert("token_id".into(), s(token_id));
    map.insert("transform_id".into(), s(transform_id));
    map.insert("row_hash".into(), s(row_hash));
    map.insert("row_data_json".into(), opt_s(row_data_json));
    map.insert("error_details_json".into(), opt_s(error_details_json));
    map.insert("destination".into(), J::String(destination));
    map.insert("created_at".into(), ts(created_at));
    map
}

pub fn secret_resolution_record(resolution: SecretResolution) -> Map<String, J> {
    let SecretResolution {
        resolution_id,
        run_id,
        timestamp,
        env_var_name,
        source,
        vault_url,
        secret_name,
        fingerprint,
        resolution_latency_ms,
    } = resolution;
    let mut map = record("secret_resolution", &run_id);
    map.insert("resolution_id".into(), s(resolution_id));
    map.insert("timestamp".into(), J::from(timestamp));
    map.insert("env_var_name".into(), J::String(env_var_name));
    map.insert("source".into(), J::String(source.as_str().to_owned()));
    map.insert("vault_url".into(), opt_s(vault_url));
    map.insert("secret_name".into(), opt_s(secret_name));
    map.insert("fingerprint".into(), s(fingerprint));
    map.insert("resolution_latency_ms".into(), resolution_latency_ms.map_or(J::Null, J::from));
    map
}

/// Streams every record of a run in the documented order. Returns the
/// run's completion time (the manifest's `exported_at`).
#[allow(
    clippy::too_many_lines,
    reason = "one streamed query per record type, in export order: splitting it would hide the order"
)]
pub(crate) fn export_records(conn: &mut DbConnection, run_id: &RunId, out: &mut RecordQueue) -> Result<String> {
    let id = run_id.as_str();
    let found: Vec<RunRow> = runs::table.filter(runs::run_id.eq(id)).select(RunRow::as_select()).load(conn)?;
    let run = loaders::run(found.into_iter().next().ok_or_else(|| LandscapeError::NotFound(format!("run {run_id}")))?)?;
    let as_of = run.state.completed_at().map_or_else(|| render(&run.started_at), |t| render(&t));
    out.push(run_record(run))?;
    stream!(
        conn,
        secret_resolutions::table
            .filter(secret_resolutions::run_id.eq(id))
            .order((secret_resolutions::timestamp.asc(), secret_resolutions::resolution_id.asc())),
        SecretResolutionRow,
        |row| out.push(secret_resolution_record(loaders::secret_resolution(row)?))
    );
    stream!(
        conn,
        nodes::table.filter(nodes::run_id.eq(id)).order((
            nodes::sequence_in_pipeline.asc(),
            nodes::registered_at.asc(),
            nodes::node_id.asc()
        )),
        NodeRow,
        |row| out.push(node_record(loaders::node(row)?))
    );
    stream!(
        conn,
        edges::table.filter(edges::run_id.eq(id)).order((edges::created_at.asc(), edges::edge_id.asc())),
        EdgeRow,
        |row| out.push(edge_record(loaders::edge(row)?))
    );
    stream!(
        conn,
        operations::table.filter(operations::run_id.eq(id)).order((operations::started_at.asc(), operations::operation_id.asc())),
        OperationRow,
        |row| out.push(operation_record(loaders::operation(row)?))
    );
    stream!(
        conn,
        calls::table
            .inner_join(operations::table.on(calls::operation_id.eq(operations::operation_id.nullable())))
            .filter(operations::run_id.eq(id))
            .order((calls::operation_id.asc(), calls::call_index.asc())),
        CallRow,
        |row| out.push(call_record(loaders::call(row)?, run_id))
    );
    stream!(conn, rows::table.filter(rows::run_id.eq(id)).order(rows::row_index.asc()), RowRow, |row| out
        .push(row_record(loaders::source_row(row)?)));
    stream!(
        conn,
        tokens::table.filter(tokens::run_id.eq(id)).order((tokens::created_at.asc(), tokens::token_id.asc())),
        TokenRow,
        |row| out.push(token_record(loaders::token(row)?))
    );
    stream!(
        conn,
        token_parents::table
            .inner_join(tokens::table.on(tokens::token_id.eq(token_parents::token_id)))
            .filter(tokens::run_id.eq(id))
            .order((token_parents::token_id.asc(), token_parents::ordinal.asc())),
        TokenParentRow,
        |row| out.push(token_parent_record(loaders::token_parent(row)?, run_id))
    );
    stream!(
        conn,
        token_outcomes::table
            .filter(token_outcomes::run_id.eq(id))
            .order((token_outcomes::recorded_at.asc(), token_outcomes::outcome_id.asc())),
        TokenOutcomeRow,
        |row| out.push(outcome_record(loaders::token_outcome(row)?))
    );
    stream!(
        conn,
        node_states::table.filter(node_states::run_id.eq(id)).order((
            node_states::token_id.asc(),
            node_states::step_index.asc(),
            node_states::attempt.asc(),
            node_states::state_id.asc()
        )),
        NodeStateRow,
        |row| out.push(node_state_record(loaders::node_state(row)?))
    );
    stream!(
        conn,
        routing_events::table
            .inner_join(node_states::table.on(node_states::state_id.eq(routing_events::state_id)))
            .filter(node_states::run_id.eq(id))
            .order((routing_events::state_id.asc(), routing_events::ordinal.asc(), routing_events::event_id.asc())),
        RoutingEventRow,
        |row| out.push(routing_event_record(loaders::routing_event(row)?, run_id))
    );
    stream!(
        conn,
        calls::table
            .inner_join(node_states::table.on(calls::state_id.eq(node_states::state_id.nullable())))
            .filter(node_states::run_id.eq(id))
            .order((calls::state_id.asc(), calls::call_index.asc())),
        CallRow,
        |row| out.push(call_record(loaders::call(row)?, run_id))
    );
    stream!(
        conn,
        batches::table.filter(batches::run_id.eq(id)).order((batches::created_at.asc(), batches::batch_id.asc())),
        BatchRow,
        |row| out.push(batch_record(loaders::batch(row)?))
    );
    stream!(
        conn,
        batch_members::table
            .filter(batch_members::run_id.eq(id))
            .order((batch_members::batch_id.asc(), batch_members::ordinal.asc())),
        BatchMemberRow,
        |row| out.push(batch_member_record(loaders::batch_member(row)?))
    );
    stream!(
        conn,
        artifacts::table.filter(artifacts::run_id.eq(id)).order((artifacts::created_at.asc(), artifacts::artifact_id.asc())),
        ArtifactRow,
        |row| out.push(artifact_record(loaders::artifact(row)?))
    );
    stream!(
        conn,
        validation_errors::table
            .filter(validation_errors::run_id.eq(id))
            .order((validation_errors::created_at.asc(), validation_errors::error_id.asc())),
        ValidationErrorRow,
        |row| out.push(validation_error_record(loaders::validation_error(row)?))
    );
    stream!(
        conn,
        transform_errors::table
            .filter(transform_errors::run_id.eq(id))
            .order((transform_errors::created_at.asc(), transform_errors::error_id.asc())),
        TransformErrorRow,
        |row| out.push(transform_error_record(loaders::transform_error(row)?))
    );
    Ok(as_of)
}
