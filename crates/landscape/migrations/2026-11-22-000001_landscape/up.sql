-- The Landscape audit schema, epoch 1 of the Rust implementation.
--
-- Same table and column names as the reference (elspeth 0.4.1), with these fixes:
-- DIVERTED is a recordable outcome; schema_contract_hash, expand_group_id and
-- validation_errors.schema_mode are widened; batches.retry_of_batch_id records retry
-- lineage; foreign keys are run-scoped; one terminal outcome per token is a unique
-- partial index; every enum column has a CHECK constraint; runs record their owner
-- (host, pid, heartbeat) so a stale run can be recognised.
--
-- Every foreign key is DEFERRABLE INITIALLY DEFERRED: checked when the unit's
-- transaction commits (a violation fails the commit and nothing of the unit stays),
-- not per statement. On SQLite an immediate foreign key makes every multi-row insert
-- keep a statement journal so it can abort half-way; deferred, together with the
-- recorder's `INSERT OR IGNORE` (a refused row is counted, not aborted on), the hot
-- path keeps none.
--
-- The same DDL runs on SQLite and PostgreSQL. Timestamps are UTC without zone.

CREATE TABLE runs (
    run_id VARCHAR(64) NOT NULL PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    config_hash VARCHAR(64) NOT NULL,
    settings_json TEXT NOT NULL,
    reproducibility_grade VARCHAR(32)
        CHECK (reproducibility_grade IN ('full_reproducible', 'replay_reproducible', 'attributable_only')),
    canonical_version VARCHAR(64) NOT NULL,
    source_schema_json TEXT,
    source_field_resolution_json TEXT,
    status VARCHAR(32) NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    export_status VARCHAR(32) CHECK (export_status IN ('pending', 'completed', 'failed')),
    export_error TEXT,
    exported_at TIMESTAMP,
    export_format VARCHAR(16),
    export_sink VARCHAR(128),
    schema_contract_json TEXT,
    schema_contract_hash VARCHAR(64),
    owner_host VARCHAR(255),
    owner_pid BIGINT,
    heartbeat_at TIMESTAMP
);

CREATE TABLE nodes (
    node_id VARCHAR(64) NOT NULL,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    plugin_name VARCHAR(128) NOT NULL,
    node_type VARCHAR(32) NOT NULL
        CHECK (node_type IN ('source', 'transform', 'gate', 'aggregation', 'coalesce', 'sink')),
    plugin_version VARCHAR(32) NOT NULL,
    determinism VARCHAR(32) NOT NULL
        CHECK (determinism IN ('deterministic', 'seeded', 'io_read', 'io_write', 'external_call', 'non_deterministic')),
    config_hash VARCHAR(64) NOT NULL,
    config_json TEXT NOT NULL,
    schema_hash VARCHAR(64),
    sequence_in_pipeline INTEGER CHECK (sequence_in_pipeline >= 0),
    registered_at TIMESTAMP NOT NULL,
    schema_mode VARCHAR(16),
    schema_fields_json TEXT,
    input_contract_json TEXT,
    output_contract_json TEXT,
    PRIMARY KEY (node_id, run_id)
);
CREATE INDEX ix_nodes_run_id ON nodes (run_id);

CREATE TABLE edges (
    edge_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    from_node_id VARCHAR(64) NOT NULL,
    to_node_id VARCHAR(64) NOT NULL,
    label VARCHAR(64) NOT NULL,
    default_mode VARCHAR(16) NOT NULL CHECK (default_mode IN ('move', 'copy', 'divert')),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (run_id, from_node_id, label),
    FOREIGN KEY (from_node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (to_node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_edges_run_id ON edges (run_id);

CREATE TABLE rows (
    row_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    source_node_id VARCHAR(64) NOT NULL,
    row_index BIGINT NOT NULL CHECK (row_index >= 0),
    source_data_hash VARCHAR(64) NOT NULL,
    source_data_ref VARCHAR(256),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (run_id, row_index),
    UNIQUE (row_id, run_id),
    FOREIGN KEY (source_node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
-- Lookups by run use the (run_id, row_index) unique index.

CREATE TABLE tokens (
    token_id VARCHAR(64) NOT NULL PRIMARY KEY,
    row_id VARCHAR(64) NOT NULL,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    fork_group_id VARCHAR(64),
    join_group_id VARCHAR(64),
    expand_group_id VARCHAR(64),
    branch_name VARCHAR(64),
    step_in_pipeline INTEGER CHECK (step_in_pipeline >= 0),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (token_id, run_id),
    FOREIGN KEY (row_id, run_id) REFERENCES rows (row_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    CHECK ((CASE WHEN fork_group_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN join_group_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN expand_group_id IS NULL THEN 0 ELSE 1 END) <= 1)
);
CREATE INDEX ix_tokens_row_id ON tokens (row_id);
CREATE INDEX ix_tokens_expand_group_id ON tokens (expand_group_id);

CREATE TABLE token_parents (
    token_id VARCHAR(64) NOT NULL REFERENCES tokens (token_id) DEFERRABLE INITIALLY DEFERRED,
    parent_token_id VARCHAR(64) NOT NULL REFERENCES tokens (token_id) DEFERRABLE INITIALLY DEFERRED,
    ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
    PRIMARY KEY (token_id, parent_token_id),
    UNIQUE (token_id, ordinal)
);
CREATE INDEX ix_token_parents_parent ON token_parents (parent_token_id);

CREATE TABLE node_states (
    state_id VARCHAR(64) NOT NULL PRIMARY KEY,
    token_id VARCHAR(64) NOT NULL,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    node_id VARCHAR(64) NOT NULL,
    step_index INTEGER NOT NULL CHECK (step_index >= 0),
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    status VARCHAR(32) NOT NULL CHECK (status IN ('open', 'pending', 'completed', 'failed')),
    input_hash VARCHAR(64) NOT NULL,
    output_hash VARCHAR(64),
    context_before_json TEXT,
    context_after_json TEXT,
    duration_ms DOUBLE PRECISION,
    error_json TEXT,
    success_reason_json TEXT,
    started_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    UNIQUE (token_id, node_id, attempt),
    UNIQUE (token_id, step_index, attempt),
    UNIQUE (state_id, run_id),
    FOREIGN KEY (token_id, run_id) REFERENCES tokens (token_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
-- Lookups by token use the (token_id, ...) unique indexes; by node, the run-scoped index below.

CREATE TABLE operations (
    operation_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    node_id VARCHAR(64) NOT NULL,
    operation_type VARCHAR(32) NOT NULL CHECK (operation_type IN ('source_load', 'sink_write')),
    started_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    status VARCHAR(16) NOT NULL CHECK (status IN ('open', 'completed', 'failed', 'pending')),
    input_data_ref VARCHAR(256),
    input_data_hash VARCHAR(64),
    output_data_ref VARCHAR(256),
    output_data_hash VARCHAR(64),
    error_message TEXT,
    duration_ms DOUBLE PRECISION,
    FOREIGN KEY (node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_operations_run_id ON operations (run_id);
CREATE INDEX ix_operations_node_run ON operations (node_id, run_id);

CREATE TABLE calls (
    call_id VARCHAR(64) NOT NULL PRIMARY KEY,
    state_id VARCHAR(64) REFERENCES node_states (state_id) DEFERRABLE INITIALLY DEFERRED,
    operation_id VARCHAR(64) REFERENCES operations (operation_id) DEFERRABLE INITIALLY DEFERRED,
    call_index INTEGER NOT NULL CHECK (call_index >= 0),
    call_type VARCHAR(32) NOT NULL
        CHECK (call_type IN ('llm', 'http', 'http_redirect', 'sql', 'vector', 'filesystem', 'process')),
    status VARCHAR(32) NOT NULL CHECK (status IN ('success', 'error')),
    request_hash VARCHAR(64) NOT NULL,
    request_ref VARCHAR(256),
    response_hash VARCHAR(64),
    response_ref VARCHAR(256),
    error_json TEXT,
    latency_ms DOUBLE PRECISION,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT calls_has_parent CHECK ((state_id IS NOT NULL AND operation_id IS NULL)
                                    OR (state_id IS NULL AND operation_id IS NOT NULL))
);
CREATE INDEX ix_calls_state ON calls (state_id);
CREATE INDEX ix_calls_operation ON calls (operation_id);
CREATE UNIQUE INDEX ix_calls_state_call_index_unique ON calls (state_id, call_index) WHERE state_id IS NOT NULL;
CREATE UNIQUE INDEX ix_calls_operation_call_index_unique ON calls (operation_id, call_index) WHERE operation_id IS NOT NULL;

CREATE TABLE routing_events (
    event_id VARCHAR(64) NOT NULL PRIMARY KEY,
    state_id VARCHAR(64) NOT NULL REFERENCES node_states (state_id) DEFERRABLE INITIALLY DEFERRED,
    edge_id VARCHAR(64) NOT NULL REFERENCES edges (edge_id) DEFERRABLE INITIALLY DEFERRED,
    routing_group_id VARCHAR(64) NOT NULL,
    ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
    mode VARCHAR(16) NOT NULL CHECK (mode IN ('move', 'copy', 'divert')),
    reason_hash VARCHAR(64),
    reason_ref VARCHAR(256),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (routing_group_id, ordinal)
);
CREATE INDEX ix_routing_events_state ON routing_events (state_id);
-- Lookups by group use the (routing_group_id, ordinal) unique index.

CREATE TABLE batches (
    batch_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    aggregation_node_id VARCHAR(64) NOT NULL,
    aggregation_state_id VARCHAR(64),
    trigger_reason VARCHAR(256),
    trigger_type VARCHAR(32) CHECK (trigger_type IN ('count', 'timeout', 'condition', 'end_of_source')),
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    status VARCHAR(32) NOT NULL CHECK (status IN ('draft', 'executing', 'completed', 'failed')),
    created_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    retry_of_batch_id VARCHAR(64) UNIQUE,
    UNIQUE (batch_id, run_id),
    FOREIGN KEY (aggregation_node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (aggregation_state_id, run_id) REFERENCES node_states (state_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (retry_of_batch_id, run_id) REFERENCES batches (batch_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_batches_run_status ON batches (run_id, status);

CREATE TABLE batch_members (
    batch_id VARCHAR(64) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    token_id VARCHAR(64) NOT NULL,
    ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
    PRIMARY KEY (batch_id, token_id),
    UNIQUE (batch_id, ordinal),
    FOREIGN KEY (batch_id, run_id) REFERENCES batches (batch_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (token_id, run_id) REFERENCES tokens (token_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_batch_members_batch ON batch_members (batch_id);

CREATE TABLE batch_outputs (
    batch_output_id VARCHAR(64) NOT NULL PRIMARY KEY,
    batch_id VARCHAR(64) NOT NULL REFERENCES batches (batch_id) DEFERRABLE INITIALLY DEFERRED,
    output_type VARCHAR(32) NOT NULL CHECK (output_type IN ('token', 'artifact')),
    output_id VARCHAR(64) NOT NULL,
    UNIQUE (batch_id, output_type, output_id)
);
CREATE INDEX ix_batch_outputs_batch ON batch_outputs (batch_id);

CREATE TABLE artifacts (
    artifact_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    produced_by_state_id VARCHAR(64) NOT NULL,
    sink_node_id VARCHAR(64) NOT NULL,
    artifact_type VARCHAR(64) NOT NULL,
    path_or_uri VARCHAR(512) NOT NULL,
    content_hash VARCHAR(64) NOT NULL,
    size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
    idempotency_key VARCHAR(256),
    created_at TIMESTAMP NOT NULL,
    FOREIGN KEY (produced_by_state_id, run_id) REFERENCES node_states (state_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (sink_node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_artifacts_run ON artifacts (run_id);

CREATE TABLE token_outcomes (
    outcome_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL,
    token_id VARCHAR(64) NOT NULL,
    outcome VARCHAR(32) NOT NULL CHECK (outcome IN ('completed', 'routed', 'forked', 'failed', 'quarantined',
        'diverted', 'consumed_in_batch', 'coalesced', 'expanded', 'buffered')),
    is_terminal INTEGER NOT NULL CHECK (is_terminal IN (0, 1)),
    recorded_at TIMESTAMP NOT NULL,
    sink_name VARCHAR(128),
    batch_id VARCHAR(64),
    fork_group_id VARCHAR(64),
    join_group_id VARCHAR(64),
    expand_group_id VARCHAR(64),
    error_hash VARCHAR(64),
    context_json TEXT,
    expected_branches_json TEXT,
    CHECK ((outcome = 'buffered' AND is_terminal = 0) OR (outcome <> 'buffered' AND is_terminal = 1)),
    FOREIGN KEY (token_id, run_id) REFERENCES tokens (token_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (batch_id, run_id) REFERENCES batches (batch_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_token_outcomes_run_id ON token_outcomes (run_id);
CREATE INDEX ix_token_outcomes_token_id ON token_outcomes (token_id);
CREATE UNIQUE INDEX ix_token_outcomes_terminal_unique ON token_outcomes (token_id) WHERE is_terminal = 1;

CREATE TABLE validation_errors (
    error_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    node_id VARCHAR(64),
    row_id VARCHAR(64) REFERENCES rows (row_id) DEFERRABLE INITIALLY DEFERRED,
    row_hash VARCHAR(64) NOT NULL,
    row_data_json TEXT,
    error TEXT NOT NULL,
    schema_mode VARCHAR(32) NOT NULL,
    destination VARCHAR(255) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    violation_type VARCHAR(32),
    original_field_name VARCHAR(256),
    normalized_field_name VARCHAR(256),
    expected_type VARCHAR(32),
    actual_type VARCHAR(32),
    FOREIGN KEY (node_id, run_id) REFERENCES nodes (node_id, run_id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_validation_errors_run ON validation_errors (run_id);
CREATE INDEX ix_validation_errors_node ON validation_errors (node_id);

CREATE TABLE transform_errors (
    error_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    token_id VARCHAR(64) NOT NULL,
    transform_id VARCHAR(64) NOT NULL,
    row_hash VARCHAR(64) NOT NULL,
    row_data_json TEXT,
    error_details_json TEXT,
    destination VARCHAR(255) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    FOREIGN KEY (token_id, run_id) REFERENCES tokens (token_id, run_id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (transform_id, run_id) REFERENCES nodes (node_id, run_id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_transform_errors_run ON transform_errors (run_id);
CREATE INDEX ix_transform_errors_token ON transform_errors (token_id);
CREATE INDEX ix_transform_errors_transform ON transform_errors (transform_id);

CREATE TABLE checkpoints (
    checkpoint_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    token_id VARCHAR(64) NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    sequence_number BIGINT NOT NULL CHECK (sequence_number >= 0),
    aggregation_state_json TEXT,
    coalesce_state_json TEXT,
    created_at TIMESTAMP NOT NULL,
    upstream_topology_hash VARCHAR(64) NOT NULL,
    checkpoint_node_config_hash VARCHAR(64) NOT NULL,
    format_version INTEGER NOT NULL,
    FOREIGN KEY (token_id, run_id) REFERENCES tokens (token_id, run_id) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (node_id, run_id) REFERENCES nodes (node_id, run_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_checkpoints_run ON checkpoints (run_id);
CREATE INDEX ix_checkpoints_run_seq ON checkpoints (run_id, sequence_number);

CREATE TABLE secret_resolutions (
    resolution_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    timestamp DOUBLE PRECISION NOT NULL,
    env_var_name VARCHAR(256) NOT NULL,
    source VARCHAR(32) NOT NULL CHECK (source IN ('keyvault', 'env', 'user')),
    vault_url TEXT,
    secret_name VARCHAR(256),
    fingerprint VARCHAR(64) NOT NULL,
    resolution_latency_ms DOUBLE PRECISION
);
CREATE INDEX ix_secret_resolutions_run ON secret_resolutions (run_id);

CREATE TABLE preflight_results (
    result_id VARCHAR(64) NOT NULL PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    result_type VARCHAR(32) NOT NULL
        CONSTRAINT ck_preflight_result_type CHECK (result_type IN ('dependency_run', 'commencement_gate', 'readiness_check')),
    name VARCHAR(256) NOT NULL,
    result_json TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_preflight_results_run ON preflight_results (run_id);
