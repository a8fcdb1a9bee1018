//! Strict (Tier 1) read-back: database rows become contract records or an
//! integrity error. An unknown enum string, a NULL a status requires, a value a
//! status forbids, or an impossible combination is never coerced.

use chrono::{TimeZone, Utc};
use contracts::records::{
    Artifact, Batch, BatchMember, BatchState, BatchTrigger, Call, CallOrigin, CallParent, Checkpoint, Edge, Node, NodeState,
    NodeStateCommon, Operation, OperationState, OutcomeDetail, PayloadRef, RoutingEvent, Row, Run, RunExport, RunOwner, RunState,
    SecretResolution, Token, TokenLineage, TokenOutcome, TokenParent, TransformError, ValidationError,
};
use contracts::{
    ArtifactId, BatchId, CallId, CheckpointId, ContentHash, EdgeId, ErrorId, EventId, ExpandGroupId, ForkGroupId, JoinGroupId,
    NodeId, OperationId, OutcomeId, ResolutionId, RoutingGroupId, RowId, RowOutcome, RunId, StateId, Timestamp, TokenId,
};

use crate::error::{LandscapeError, Result};
use crate::models::{
    ArtifactRow, BatchMemberRow, BatchRow, CallRow, CheckpointRow, DbTime, EdgeRow, NodeRow, NodeStateRow, OperationRow,
    RoutingEventRow, RowRow, RunRow, SecretResolutionRow, TokenOutcomeRow, TokenParentRow, TokenRow, TransformErrorRow,
    ValidationErrorRow,
};

pub(crate) fn ts(time: DbTime) -> Timestamp {
    Utc.from_utc_datetime(&time.0)
}

fn bad(table: &str, id: &str, message: impl std::fmt::Display) -> LandscapeError {
    LandscapeError::integrity(format!("{table} {id}: {message}"))
}

fn required<T>(table: &str, id: &str, column: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| bad(table, id, format!("{column} is NULL but required")))
}

fn forbidden<T>(table: &str, id: &str, column: &str, value: Option<&T>, status: &str) -> Result<()> {
    match value {
        Some(_) => Err(bad(table, id, format!("{column} must be NULL when status is {status}"))),
        None => Ok(()),
    }
}

fn unsigned(table: &str, id: &str, column: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| bad(table, id, format!("{column} is negative ({value})")))
}

fn small(table: &str, id: &str, column: &str, value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| bad(table, id, format!("{column} is negative ({value})")))
}

fn hash(table: &str, id: &str, column: &str, value: String) -> Result<ContentHash> {
    ContentHash::parse(value).map_err(|error| bad(table, id, format!("{column}: {error}")))
}

fn opt_hash(table: &str, id: &str, column: &str, value: Option<String>) -> Result<Option<ContentHash>> {
    value.map(|v| hash(table, id, column, v)).transpose()
}

fn parse_enum<E: std::str::FromStr<Err = contracts::ContractError>>(table: &str, id: &str, value: &str) -> Result<E> {
    value.parse().map_err(|error: contracts::ContractError| bad(table, id, error))
}

fn duration(table: &str, id: &str, value: Option<f64>) -> Result<f64> {
    let duration = required(table, id, "duration_ms", value)?;
    if duration.is_finite() && duration >= 0.0 {
        Ok(duration)
    } else {
        Err(bad(table, id, format!("duration_ms {duration} is not a finite non-negative number")))
    }
}

pub(crate) fn run(row: RunRow) -> Result<Run> {
    let RunRow {
        run_id,
        started_at,
        completed_at,
        config_hash,
        settings_json,
        reproducibility_grade,
        canonical_version,
        source_schema_json,
        source_field_resolution_json,
        status,
        export_status,
        export_error,
        exported_at,
        export_format,
        export_sink,
        schema_contract_json,
        schema_contract_hash,
        owner_host,
        owner_pid,
        heartbeat_at,
    } = row;
    let id = run_id.as_str();
    let status: contracts::RunStatus = parse_enum("run", id, &status)?;
    let state = match status {
        contracts::RunStatus::Running => {
            forbidden("run", id, "completed_at", completed_at.as_ref(), "running")?;
            RunState::Running
        }
        contracts::RunStatus::Completed | contracts::RunStatus::Failed | contracts::RunStatus::Interrupted => {
            let completed_at = ts(required("run", id, "completed_at", completed_at)?);
            RunState::ended(status, completed_at).ok_or_else(|| bad("run", id, "terminal status without state"))?
        }
    };
    let export = match export_status {
        None => {
            if export_error.is_some() || exported_at.is_some() {
                return Err(bad("run", id, "export fields set without export_status"));
            }
            None
        }
        Some(text) => Some(RunExport {
            status: parse_enum("run", id, &text)?,
            error: export_error,
            exported_at: exported_at.map(ts),
            format: export_format,
            sink: export_sink,
        }),
    };
    let owner = match (owner_host, owner_pid, heartbeat_at) {
        (None, None, None) => None,
        (Some(host), Some(pid), Some(heartbeat_at)) => Some(RunOwner {
            host,
            pid: u32::try_from(pid).map_err(|_| bad("run", id, format!("owner_pid {pid} out of range")))?,
            heartbeat_at: ts(heartbeat_at),
        }),
        _ => return Err(bad("run", id, "owner_host, owner_pid and heartbeat_at must be set together")),
    };
    let config_hash = hash("run", id, "config_hash", config_hash)?;
    if contracts::sha256_hex(settings_json.as_bytes()) != config_hash.as_str() {
        return Err(bad("run", id, "config_hash does not match settings_json"));
    }
    Ok(Run {
        run_id: RunId::parse(run_id.clone())?,
        started_at: ts(started_at),
        state,
        config_hash,
        settings_json,
        reproducibility_grade: reproducibility_grade.map(|g| parse_enum("run", id, &g)).transpose()?,
        canonical_version,
        source_schema_json,
        source_field_resolution_json,
        export,
        schema_contract_json,
        schema_contract_hash,
        owner,
    })
}

pub(crate) fn node(row: NodeRow) -> Result<Node> {
    let NodeRow {
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
    } = row;
    let id = node_id.as_str();
    let config_hash = hash("node", id, "config_hash", config_hash)?;
    if contracts::sha256_hex(config_json.as_bytes()) != config_hash.as_str() {
        return Err(bad("node", id, "config_hash does not match config_json"));
    }
    if let Some(fields) = &schema_fields_json {
        let parsed: serde_json::Value =
            serde_json::from_str(fields).map_err(|e| bad("node", id, format!("schema_fields_json: {e}")))?;
        if !parsed.as_array().is_some_and(|items| items.iter().all(serde_json::Value::is_object)) {
            return Err(bad("node", id, "schema_fields_json is not a list of objects"));
        }
    }
    Ok(Node {
        node_type: parse_enum("node", id, &node_type)?,
        determinism: parse_enum("node", id, &determinism)?,
        schema_hash: opt_hash("node", id, "schema_hash", schema_hash)?,
        sequence_in_pipeline: sequence_in_pipeline.map(|s| small("node", id, "sequence_in_pipeline", s)).transpose()?,
        node_id: NodeId::parse(node_id.clone())?,
        run_id: RunId::parse(run_id)?,
        plugin_name,
        plugin_version,
        config_hash,
        config_json,
        registered_at: ts(registered_at),
        schema_mode,
        schema_fields_json,
        input_contract_json,
        output_contract_json,
    })
}

pub(crate) fn edge(row: EdgeRow) -> Result<Edge> {
    let EdgeRow { edge_id, run_id, from_node_id, to_node_id, label, default_mode, created_at } = row;
    Ok(Edge {
        default_mode: parse_enum("edge", &edge_id, &default_mode)?,
        edge_id: EdgeId::parse(edge_id)?,
        run_id: RunId::parse(run_id)?,
        from_node_id: NodeId::parse(from_node_id)?,
        to_node_id: NodeId::parse(to_node_id)?,
        label,
        created_at: ts(created_at),
    })
}

pub(crate) fn source_row(row: RowRow) -> Result<Row> {
    let RowRow { row_id, run_id, source_node_id, row_index, source_data_hash, source_data_ref, created_at } = row;
    let id = row_id.as_str();
    Ok(Row {
        row_index: unsigned("row", id, "row_index", row_index)?,
        source_data_hash: hash("row", id, "source_data_hash", source_data_hash)?,
        row_id: RowId::parse(row_id.clone())?,
        run_id: RunId::parse(run_id)?,
        source_node_id: NodeId::parse(source_node_id)?,
        source_data_ref,
        created_at: ts(created_at),
    })
}

pub(crate) fn token(row: TokenRow) -> Result<Token> {
    let TokenRow {
        token_id,
        row_id,
        run_id,
        fork_group_id,
        join_group_id,
        expand_group_id,
        branch_name,
        step_in_pipeline,
        created_at,
    } = row;
    let id = token_id.as_str();
    let lineage = match (fork_group_id, join_group_id, expand_group_id) {
        (None, None, None) => {
            if branch_name.is_some() {
                return Err(bad("token", id, "branch_name set on a token without a fork or expand group"));
            }
            TokenLineage::Initial
        }
        (Some(fork), None, None) => TokenLineage::Forked {
            fork_group_id: ForkGroupId::parse(fork)?,
            branch_name: required("token", id, "branch_name", branch_name)?,
        },
        (None, Some(join), None) => {
            if branch_name.is_some() {
                return Err(bad("token", id, "branch_name set on a joined token"));
            }
            TokenLineage::Joined { join_group_id: JoinGroupId::parse(join)? }
        }
        (None, None, Some(expand)) => TokenLineage::Expanded { expand_group_id: ExpandGroupId::parse(expand)?, branch_name },
        _ => return Err(bad("token", id, "more than one of fork/join/expand group id is set")),
    };
    Ok(Token {
        step_in_pipeline: step_in_pipeline.map(|s| small("token", id, "step_in_pipeline", s)).transpose()?,
        token_id: TokenId::parse(token_id.clone())?,
        row_id: RowId::parse(row_id)?,
        run_id: RunId::parse(run_id)?,
        lineage,
        created_at: ts(created_at),
    })
}

pub(crate) fn token_parent(row: TokenParentRow) -> Result<TokenParent> {
    let TokenParentRow { token_id, parent_token_id, ordinal } = row;
    Ok(TokenParent {
        ordinal: small("token_parent", &token_id, "ordinal", ordinal)?,
        token_id: TokenId::parse(token_id)?,
        parent_token_id: TokenId::parse(parent_token_id)?,
    })
}

pub(crate) fn node_state(row: NodeStateRow) -> Result<NodeState> {
    let NodeStateRow {
        state_id,
        token_id,
        run_id,
        node_id,
        step_index,
        attempt,
        status,
        input_hash,
        output_hash,
        context_before_json,
        context_after_json,
        duration_ms,
        error_json,
        success_reason_json,
        started_at,
        completed_at,
    } = row;
    let t = "node_state";
    let id = state_id.clone();
    let id = id.as_str();
    let status: contracts::NodeStateStatus = parse_enum(t, id, &status)?;
    let common = NodeStateCommon {
        step_index: small(t, id, "step_index", step_index)?,
        attempt: small(t, id, "attempt", attempt)?,
        input_hash: hash(t, id, "input_hash", input_hash)?,
        state_id: StateId::parse(state_id)?,
        token_id: TokenId::parse(token_id)?,
        run_id: RunId::parse(run_id)?,
        node_id: NodeId::parse(node_id)?,
        context_before_json,
        started_at: ts(started_at),
    };
    Ok(match status {
        contracts::NodeStateStatus::Open => {
            forbidden(t, id, "completed_at", completed_at.as_ref(), "open")?;
            forbidden(t, id, "duration_ms", duration_ms.as_ref(), "open")?;
            forbidden(t, id, "output_hash", output_hash.as_ref(), "open")?;
            forbidden(t, id, "error_json", error_json.as_ref(), "open")?;
            forbidden(t, id, "success_reason_json", success_reason_json.as_ref(), "open")?;
            forbidden(t, id, "context_after_json", context_after_json.as_ref(), "open")?;
            NodeState::Open { common }
        }
        contracts::NodeStateStatus::Pending => {
            forbidden(t, id, "output_hash", output_hash.as_ref(), "pending")?;
            forbidden(t, id, "error_json", error_json.as_ref(), "pending")?;
            forbidden(t, id, "success_reason_json", success_reason_json.as_ref(), "pending")?;
            NodeState::Pending {
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                context_after_json,
                common,
            }
        }
        contracts::NodeStateStatus::Completed => {
            forbidden(t, id, "error_json", error_json.as_ref(), "completed")?;
            NodeState::Completed {
                output_hash: hash(t, id, "output_hash", required(t, id, "output_hash", output_hash)?)?,
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                context_after_json,
                success_reason_json,
                common,
            }
        }
        contracts::NodeStateStatus::Failed => {
            forbidden(t, id, "success_reason_json", success_reason_json.as_ref(), "failed")?;
            NodeState::Failed {
                output_hash: opt_hash(t, id, "output_hash", output_hash)?,
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                error_json: required(t, id, "error_json", error_json)?,
                context_after_json,
                common,
            }
        }
    })
}

fn payload_ref(
    t: &str,
    id: &str,
    column: &str,
    hash_value: Option<String>,
    data_ref: Option<String>,
) -> Result<Option<PayloadRef>> {
    match (hash_value, data_ref) {
        (None, None) => Ok(None),
        (Some(h), data_ref) => Ok(Some(PayloadRef { hash: hash(t, id, column, h)?, data_ref })),
        (None, Some(_)) => Err(bad(t, id, format!("{column} ref without its hash"))),
    }
}

pub(crate) fn operation(row: OperationRow) -> Result<Operation> {
    let OperationRow {
        operation_id,
        run_id,
        node_id,
        operation_type,
        started_at,
        completed_at,
        status,
        input_data_ref,
        input_data_hash,
        output_data_ref,
        output_data_hash,
        error_message,
        duration_ms,
    } = row;
    let t = "operation";
    let id = operation_id.clone();
    let id = id.as_str();
    let status: contracts::OperationStatus = parse_enum(t, id, &status)?;
    let output = payload_ref(t, id, "output_data_hash", output_data_hash, output_data_ref)?;
    let state = match status {
        contracts::OperationStatus::Open => {
            forbidden(t, id, "completed_at", completed_at.as_ref(), "open")?;
            forbidden(t, id, "duration_ms", duration_ms.as_ref(), "open")?;
            forbidden(t, id, "error_message", error_message.as_ref(), "open")?;
            forbidden(t, id, "output_data_hash", output.as_ref(), "open")?;
            OperationState::Open
        }
        contracts::OperationStatus::Completed => {
            forbidden(t, id, "error_message", error_message.as_ref(), "completed")?;
            OperationState::Completed {
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                output,
            }
        }
        contracts::OperationStatus::Pending => {
            forbidden(t, id, "error_message", error_message.as_ref(), "pending")?;
            OperationState::Pending {
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                output,
            }
        }
        contracts::OperationStatus::Failed => {
            let error_message = required(t, id, "error_message", error_message)?;
            if error_message.is_empty() {
                return Err(bad(t, id, "error_message is empty"));
            }
            OperationState::Failed {
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
                duration_ms: duration(t, id, duration_ms)?,
                output,
                error_message,
            }
        }
    };
    Ok(Operation {
        operation_type: parse_enum(t, id, &operation_type)?,
        input: payload_ref(t, id, "input_data_hash", input_data_hash, input_data_ref)?,
        operation_id: OperationId::parse(operation_id)?,
        run_id: RunId::parse(run_id)?,
        node_id: NodeId::parse(node_id)?,
        started_at: ts(started_at),
        state,
    })
}

pub(crate) fn call(row: CallRow) -> Result<Call> {
    let CallRow {
        call_id,
        state_id,
        operation_id,
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
        source_call_id,
        verification_status,
        verification_json,
    } = row;
    let t = "call";
    let id = call_id.clone();
    let id = id.as_str();
    let source_call_id = source_call_id.map(CallId::parse).transpose()?;
    let origin = match (source_call_id, verification_status, verification_json) {
        (None, None, None) => CallOrigin::Live,
        (Some(source_call_id), None, None) => CallOrigin::Replayed { source_call_id },
        (source_call_id, Some(verification), differences) => {
            CallOrigin::Verified { source_call_id, verification: parse_enum(t, id, &verification)?, differences }
        }
        (_, None, Some(_)) => return Err(bad(t, id, "has verification differences but no verification status")),
    };
    let parent = match (state_id, operation_id) {
        (Some(state), None) => CallParent::State(StateId::parse(state)?),
        (None, Some(operation)) => CallParent::Operation(OperationId::parse(operation)?),
        (Some(_), Some(_)) => return Err(bad(t, id, "has both a state and an operation parent")),
        (None, None) => return Err(bad(t, id, "has neither a state nor an operation parent")),
    };
    Ok(Call {
        call_index: small(t, id, "call_index", call_index)?,
        call_type: parse_enum(t, id, &call_type)?,
        status: parse_enum(t, id, &status)?,
        request_hash: hash(t, id, "request_hash", request_hash)?,
        response_hash: opt_hash(t, id, "response_hash", response_hash)?,
        call_id: CallId::parse(call_id)?,
        parent,
        request_ref,
        response_ref,
        error_json,
        latency_ms,
        created_at: ts(created_at),
        origin,
    })
}

pub(crate) fn routing_event(row: RoutingEventRow) -> Result<RoutingEvent> {
    let RoutingEventRow { event_id, state_id, edge_id, routing_group_id, ordinal, mode, reason_hash, reason_ref, created_at } =
        row;
    let t = "routing_event";
    let id = event_id.clone();
    Ok(RoutingEvent {
        ordinal: small(t, &id, "ordinal", ordinal)?,
        mode: parse_enum(t, &id, &mode)?,
        reason_hash: opt_hash(t, &id, "reason_hash", reason_hash)?,
        event_id: EventId::parse(event_id)?,
        state_id: StateId::parse(state_id)?,
        edge_id: EdgeId::parse(edge_id)?,
        routing_group_id: RoutingGroupId::parse(routing_group_id)?,
        reason_ref,
        created_at: ts(created_at),
    })
}

pub(crate) fn batch(row: BatchRow) -> Result<Batch> {
    let BatchRow {
        batch_id,
        run_id,
        aggregation_node_id,
        aggregation_state_id,
        trigger_reason,
        trigger_type,
        attempt,
        status,
        created_at,
        completed_at,
        retry_of_batch_id,
    } = row;
    let t = "batch";
    let id = batch_id.clone();
    let id = id.as_str();
    let status: contracts::BatchStatus = parse_enum(t, id, &status)?;
    let flush = match (trigger_type, trigger_reason, aggregation_state_id) {
        (None, None, None) => None,
        (Some(trigger_type), Some(trigger_reason), Some(state)) => {
            Some((BatchTrigger { trigger_type: parse_enum(t, id, &trigger_type)?, trigger_reason }, StateId::parse(state)?))
        }
        _ => return Err(bad(t, id, "trigger_type, trigger_reason and aggregation_state_id must be set together")),
    };
    let state = match status {
        contracts::BatchStatus::Draft => {
            forbidden(t, id, "completed_at", completed_at.as_ref(), "draft")?;
            forbidden(t, id, "trigger_type", flush.as_ref(), "draft")?;
            BatchState::Draft
        }
        contracts::BatchStatus::Executing => {
            forbidden(t, id, "completed_at", completed_at.as_ref(), "executing")?;
            let (trigger, aggregation_state_id) = required(t, id, "trigger_type", flush)?;
            BatchState::Executing { trigger, aggregation_state_id }
        }
        contracts::BatchStatus::Completed => {
            let (trigger, aggregation_state_id) = required(t, id, "trigger_type", flush)?;
            BatchState::Completed {
                trigger,
                aggregation_state_id,
                completed_at: ts(required(t, id, "completed_at", completed_at)?),
            }
        }
        contracts::BatchStatus::Failed => {
            BatchState::Failed { flush, completed_at: ts(required(t, id, "completed_at", completed_at)?) }
        }
    };
    Ok(Batch {
        attempt: small(t, id, "attempt", attempt)?,
        batch_id: BatchId::parse(batch_id)?,
        run_id: RunId::parse(run_id)?,
        aggregation_node_id: NodeId::parse(aggregation_node_id)?,
        retry_of_batch_id: retry_of_batch_id.map(BatchId::parse).transpose()?,
        created_at: ts(created_at),
        state,
    })
}

pub(crate) fn batch_member(row: BatchMemberRow) -> Result<BatchMember> {
    let BatchMemberRow { batch_id, run_id, token_id, ordinal } = row;
    Ok(BatchMember {
        ordinal: small("batch_member", &batch_id, "ordinal", ordinal)?,
        batch_id: BatchId::parse(batch_id)?,
        run_id: RunId::parse(run_id)?,
        token_id: TokenId::parse(token_id)?,
    })
}

pub(crate) fn artifact(row: ArtifactRow) -> Result<Artifact> {
    let ArtifactRow {
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
    } = row;
    let id = artifact_id.clone();
    Ok(Artifact {
        content_hash: hash("artifact", &id, "content_hash", content_hash)?,
        size_bytes: unsigned("artifact", &id, "size_bytes", size_bytes)?,
        artifact_id: ArtifactId::parse(artifact_id)?,
        run_id: RunId::parse(run_id)?,
        produced_by_state_id: StateId::parse(produced_by_state_id)?,
        sink_node_id: NodeId::parse(sink_node_id)?,
        artifact_type,
        path_or_uri,
        idempotency_key,
        created_at: ts(created_at),
    })
}

pub(crate) fn token_outcome(row: TokenOutcomeRow) -> Result<TokenOutcome> {
    let TokenOutcomeRow {
        outcome_id,
        run_id,
        token_id,
        outcome,
        is_terminal,
        recorded_at,
        sink_name,
        batch_id,
        fork_group_id,
        join_group_id,
        expand_group_id,
        error_hash,
        context_json,
        expected_branches_json,
    } = row;
    let t = "token_outcome";
    let id = outcome_id.clone();
    let id = id.as_str();
    let outcome: RowOutcome = parse_enum(t, id, &outcome)?;
    let terminal = match is_terminal {
        0 => false,
        1 => true,
        other => return Err(bad(t, id, format!("is_terminal is {other}, not 0 or 1"))),
    };
    if terminal != outcome.is_terminal() {
        return Err(bad(t, id, format!("is_terminal {is_terminal} contradicts outcome {outcome}")));
    }
    let fields = OutcomeFields {
        t,
        id,
        sink_name,
        batch_id,
        fork_group_id,
        join_group_id,
        expand_group_id,
        error_hash,
        expected_branches_json,
    };
    Ok(TokenOutcome {
        detail: fields.detail(outcome)?,
        outcome_id: OutcomeId::parse(outcome_id)?,
        run_id: RunId::parse(run_id)?,
        token_id: TokenId::parse(token_id)?,
        recorded_at: ts(recorded_at),
        context_json,
    })
}

/// The optional columns of a token outcome, consumed by the one variant that
/// owns them; any column left over is an integrity error.
struct OutcomeFields<'a> {
    t: &'a str,
    id: &'a str,
    sink_name: Option<String>,
    batch_id: Option<String>,
    fork_group_id: Option<String>,
    join_group_id: Option<String>,
    expand_group_id: Option<String>,
    error_hash: Option<String>,
    expected_branches_json: Option<String>,
}

impl OutcomeFields<'_> {
    fn take(&mut self, column: &str) -> Option<String> {
        match column {
            "sink_name" => self.sink_name.take(),
            "batch_id" => self.batch_id.take(),
            "fork_group_id" => self.fork_group_id.take(),
            "join_group_id" => self.join_group_id.take(),
            "expand_group_id" => self.expand_group_id.take(),
            "error_hash" => self.error_hash.take(),
            "expected_branches_json" => self.expected_branches_json.take(),
            other => unreachable!("unknown outcome column {other}"),
        }
    }

    fn need(&mut self, column: &str) -> Result<String> {
        let value = self.take(column);
        let value = required(self.t, self.id, column, value)?;
        if value.is_empty() {
            return Err(bad(self.t, self.id, format!("{column} is empty")));
        }
        Ok(value)
    }

    fn detail(mut self, outcome: RowOutcome) -> Result<OutcomeDetail> {
        let detail = match outcome {
            RowOutcome::Completed => OutcomeDetail::Completed { sink_name: self.need("sink_name")? },
            RowOutcome::Routed => OutcomeDetail::Routed { sink_name: self.need("sink_name")? },
            RowOutcome::Forked => {
                let fork_group_id = ForkGroupId::parse(self.need("fork_group_id")?)?;
                let branches = self.need("expected_branches_json")?;
                let expected_branches: Vec<String> = serde_json::from_str(&branches)
                    .map_err(|e| bad(self.t, self.id, format!("expected_branches_json is not a list of names: {e}")))?;
                OutcomeDetail::Forked { fork_group_id, expected_branches }
            }
            RowOutcome::Failed => OutcomeDetail::Failed {
                error_hash: self.need("error_hash")?,
                batch_id: self.take("batch_id").map(BatchId::parse).transpose()?,
            },
            RowOutcome::Quarantined => {
                OutcomeDetail::Quarantined { error_hash: self.need("error_hash")?, sink_name: self.take("sink_name") }
            }
            RowOutcome::Diverted => {
                OutcomeDetail::Diverted { sink_name: self.need("sink_name")?, error_hash: self.need("error_hash")? }
            }
            RowOutcome::ConsumedInBatch => OutcomeDetail::ConsumedInBatch { batch_id: BatchId::parse(self.need("batch_id")?)? },
            RowOutcome::Coalesced => OutcomeDetail::Coalesced { join_group_id: JoinGroupId::parse(self.need("join_group_id")?)? },
            RowOutcome::Expanded => {
                let expand_group_id = ExpandGroupId::parse(self.need("expand_group_id")?)?;
                let expected = self.need("expected_branches_json")?;
                let parsed: serde_json::Value =
                    serde_json::from_str(&expected).map_err(|e| bad(self.t, self.id, format!("expected_branches_json: {e}")))?;
                let count = parsed
                    .get("count")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|c| u32::try_from(c).ok())
                    .ok_or_else(|| bad(self.t, self.id, "expected_branches_json lacks a count"))?;
                OutcomeDetail::Expanded { expand_group_id, count }
            }
            RowOutcome::Buffered => OutcomeDetail::Buffered { batch_id: BatchId::parse(self.need("batch_id")?)? },
        };
        let leftovers: Vec<&str> = [
            ("sink_name", self.sink_name.is_some()),
            ("batch_id", self.batch_id.is_some()),
            ("fork_group_id", self.fork_group_id.is_some()),
            ("join_group_id", self.join_group_id.is_some()),
            ("expand_group_id", self.expand_group_id.is_some()),
            ("error_hash", self.error_hash.is_some()),
            ("expected_branches_json", self.expected_branches_json.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(column, _)| column)
        .collect();
        if leftovers.is_empty() {
            Ok(detail)
        } else {
            Err(bad(self.t, self.id, format!("{} set on a {outcome} outcome", leftovers.join(", "))))
        }
    }
}

pub(crate) fn validation_error(row: ValidationErrorRow) -> Result<ValidationError> {
    let ValidationErrorRow {
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
    } = row;
    let id = error_id.clone();
    Ok(ValidationError {
        row_hash: hash("validation_error", &id, "row_hash", row_hash)?,
        error_id: ErrorId::parse(error_id)?,
        run_id: RunId::parse(run_id)?,
        node_id: node_id.map(NodeId::parse).transpose()?,
        row_id: row_id.map(RowId::parse).transpose()?,
        row_data_json,
        error,
        schema_mode,
        destination,
        created_at: ts(created_at),
        violation_type,
        original_field_name,
        normalized_field_name,
        expected_type,
        actual_type,
    })
}

pub(crate) fn transform_error(row: TransformErrorRow) -> Result<TransformError> {
    let TransformErrorRow {
        error_id,
        run_id,
        token_id,
        transform_id,
        row_hash,
        row_data_json,
        error_details_json,
        destination,
        created_at,
    } = row;
    let id = error_id.clone();
    Ok(TransformError {
        row_hash: hash("transform_error", &id, "row_hash", row_hash)?,
        error_id: ErrorId::parse(error_id)?,
        run_id: RunId::parse(run_id)?,
        token_id: TokenId::parse(token_id)?,
        transform_id: NodeId::parse(transform_id)?,
        row_data_json,
        error_details_json,
        destination,
        created_at: ts(created_at),
    })
}

pub(crate) fn checkpoint(row: CheckpointRow) -> Result<Checkpoint> {
    let CheckpointRow {
        checkpoint_id,
        run_id,
        token_id,
        node_id,
        sequence_number,
        aggregation_state_json,
        coalesce_state_json,
        created_at,
        upstream_topology_hash,
        checkpoint_node_config_hash,
        format_version,
    } = row;
    let id = checkpoint_id.clone();
    Ok(Checkpoint {
        sequence_number: unsigned("checkpoint", &id, "sequence_number", sequence_number)?,
        upstream_topology_hash: hash("checkpoint", &id, "upstream_topology_hash", upstream_topology_hash)?,
        checkpoint_node_config_hash: hash("checkpoint", &id, "checkpoint_node_config_hash", checkpoint_node_config_hash)?,
        format_version: small("checkpoint", &id, "format_version", format_version)?,
        checkpoint_id: CheckpointId::parse(checkpoint_id)?,
        run_id: RunId::parse(run_id)?,
        token_id: TokenId::parse(token_id)?,
        node_id: NodeId::parse(node_id)?,
        aggregation_state_json,
        coalesce_state_json,
        created_at: ts(created_at),
    })
}

pub(crate) fn secret_resolution(row: SecretResolutionRow) -> Result<SecretResolution> {
    let SecretResolutionRow {
        resolution_id,
        run_id,
        timestamp,
        env_var_name,
        source,
        vault_url,
        secret_name,
        fingerprint,
        resolution_latency_ms,
    } = row;
    let id = resolution_id.clone();
    if !timestamp.is_finite() {
        return Err(bad("secret_resolution", &id, "timestamp is not finite"));
    }
    if resolution_latency_ms.is_some_and(|l| !l.is_finite() || l < 0.0) {
        return Err(bad("secret_resolution", &id, "resolution_latency_ms is not a non-negative number"));
    }
    Ok(SecretResolution {
        source: parse_enum("secret_resolution", &id, &source)?,
        fingerprint: hash("secret_resolution", &id, "fingerprint", fingerprint)?,
        resolution_id: ResolutionId::parse(resolution_id)?,
        run_id: RunId::parse(run_id)?,
        timestamp,
        env_var_name,
        vault_url,
        secret_name,
        resolution_latency_ms,
    })
}
