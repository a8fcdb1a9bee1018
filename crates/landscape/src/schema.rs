//! Diesel table definitions of the Landscape.
//!
//! Generated from the migrations by `cargo xtask schema --write`; `cargo xtask schema`
//! fails when this file and the migrated schema of either backend disagree.

diesel::table! {
    artifacts (artifact_id) {
        artifact_id -> Text,
        run_id -> Text,
        produced_by_state_id -> Text,
        sink_node_id -> Text,
        artifact_type -> Text,
        path_or_uri -> Text,
        content_hash -> Text,
        size_bytes -> BigInt,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    batch_members (batch_id, token_id) {
        batch_id -> Text,
        run_id -> Text,
        token_id -> Text,
        ordinal -> Integer,
    }
}

diesel::table! {
    batch_outputs (batch_output_id) {
        batch_output_id -> Text,
        batch_id -> Text,
        output_type -> Text,
        output_id -> Text,
    }
}

diesel::table! {
    batches (batch_id) {
        batch_id -> Text,
        run_id -> Text,
        aggregation_node_id -> Text,
        aggregation_state_id -> Nullable<Text>,
        trigger_reason -> Nullable<Text>,
        trigger_type -> Nullable<Text>,
        attempt -> Integer,
        status -> Text,
        created_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        retry_of_batch_id -> Nullable<Text>,
    }
}

diesel::table! {
    calls (call_id) {
        call_id -> Text,
        state_id -> Nullable<Text>,
        operation_id -> Nullable<Text>,
        call_index -> Integer,
        call_type -> Text,
        status -> Text,
        request_hash -> Text,
        request_ref -> Nullable<Text>,
        response_hash -> Nullable<Text>,
        response_ref -> Nullable<Text>,
        error_json -> Nullable<Text>,
        latency_ms -> Nullable<Double>,
        created_at -> Timestamp,
        source_call_id -> Nullable<Text>,
        verification_status -> Nullable<Text>,
        verification_json -> Nullable<Text>,
    }
}

diesel::table! {
    checkpoints (checkpoint_id) {
        checkpoint_id -> Text,
        run_id -> Text,
        token_id -> Text,
        node_id -> Text,
        sequence_number -> BigInt,
        aggregation_state_json -> Nullable<Text>,
        coalesce_state_json -> Nullable<Text>,
        created_at -> Timestamp,
        upstream_topology_hash -> Text,
        checkpoint_node_config_hash -> Text,
        format_version -> Integer,
    }
}

diesel::table! {
    edges (edge_id) {
        edge_id -> Text,
        run_id -> Text,
        from_node_id -> Text,
        to_node_id -> Text,
        label -> Text,
        default_mode -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    node_states (state_id) {
        state_id -> Text,
        token_id -> Text,
        run_id -> Text,
        node_id -> Text,
        step_index -> Integer,
        attempt -> Integer,
        status -> Text,
        input_hash -> Text,
        output_hash -> Nullable<Text>,
        context_before_json -> Nullable<Text>,
        context_after_json -> Nullable<Text>,
        duration_ms -> Nullable<Double>,
        error_json -> Nullable<Text>,
        success_reason_json -> Nullable<Text>,
        started_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    nodes (node_id, run_id) {
        node_id -> Text,
        run_id -> Text,
        plugin_name -> Text,
        node_type -> Text,
        plugin_version -> Text,
        determinism -> Text,
        config_hash -> Text,
        config_json -> Text,
        schema_hash -> Nullable<Text>,
        sequence_in_pipeline -> Nullable<Integer>,
        registered_at -> Timestamp,
        schema_mode -> Nullable<Text>,
        schema_fields_json -> Nullable<Text>,
        input_contract_json -> Nullable<Text>,
        output_contract_json -> Nullable<Text>,
    }
}

diesel::table! {
    operations (operation_id) {
        operation_id -> Text,
        run_id -> Text,
        node_id -> Text,
        operation_type -> Text,
        started_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        status -> Text,
        input_data_ref -> Nullable<Text>,
        input_data_hash -> Nullable<Text>,
        output_data_ref -> Nullable<Text>,
        output_data_hash -> Nullable<Text>,
        error_message -> Nullable<Text>,
        duration_ms -> Nullable<Double>,
    }
}

diesel::table! {
    preflight_results (result_id) {
        result_id -> Text,
        run_id -> Text,
        result_type -> Text,
        name -> Text,
        result_json -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    routing_events (event_id) {
        event_id -> Text,
        state_id -> Text,
        edge_id -> Text,
        routing_group_id -> Text,
        ordinal -> Integer,
        mode -> Text,
        reason_hash -> Nullable<Text>,
        reason_ref -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    rows (row_id) {
        row_id -> Text,
        run_id -> Text,
        source_node_id -> Text,
        row_index -> BigInt,
        source_data_hash -> Text,
        source_data_ref -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    runs (run_id) {
        run_id -> Text,
        started_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        config_hash -> Text,
        settings_json -> Text,
        reproducibility_grade -> Nullable<Text>,
        canonical_version -> Text,
        source_schema_json -> Nullable<Text>,
        source_field_resolution_json -> Nullable<Text>,
        status -> Text,
        export_status -> Nullable<Text>,
        export_error -> Nullable<Text>,
        exported_at -> Nullable<Timestamp>,
        export_format -> Nullable<Text>,
        export_sink -> Nullable<Text>,
        schema_contract_json -> Nullable<Text>,
        schema_contract_hash -> Nullable<Text>,
        owner_host -> Nullable<Text>,
        owner_pid -> Nullable<BigInt>,
        heartbeat_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    secret_resolutions (resolution_id) {
        resolution_id -> Text,
        run_id -> Text,
        timestamp -> Double,
        env_var_name -> Text,
        source -> Text,
        vault_url -> Nullable<Text>,
        secret_name -> Nullable<Text>,
        fingerprint -> Text,
        resolution_latency_ms -> Nullable<Double>,
    }
}

diesel::table! {
    token_outcomes (outcome_id) {
        outcome_id -> Text,
        run_id -> Text,
        token_id -> Text,
        outcome -> Text,
        is_terminal -> Integer,
        recorded_at -> Timestamp,
        sink_name -> Nullable<Text>,
        batch_id -> Nullable<Text>,
        fork_group_id -> Nullable<Text>,
        join_group_id -> Nullable<Text>,
        expand_group_id -> Nullable<Text>,
        error_hash -> Nullable<Text>,
        context_json -> Nullable<Text>,
        expected_branches_json -> Nullable<Text>,
    }
}

diesel::table! {
    token_parents (token_id, parent_token_id) {
        token_id -> Text,
        parent_token_id -> Text,
        ordinal -> Integer,
    }
}

diesel::table! {
    tokens (token_id) {
        token_id -> Text,
        row_id -> Text,
        run_id -> Text,
        fork_group_id -> Nullable<Text>,
        join_group_id -> Nullable<Text>,
        expand_group_id -> Nullable<Text>,
        branch_name -> Nullable<Text>,
        step_in_pipeline -> Nullable<Integer>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    transform_errors (error_id) {
        error_id -> Text,
        run_id -> Text,
        token_id -> Text,
        transform_id -> Text,
        row_hash -> Text,
        row_data_json -> Nullable<Text>,
        error_details_json -> Nullable<Text>,
        destination -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    validation_errors (error_id) {
        error_id -> Text,
        run_id -> Text,
        node_id -> Nullable<Text>,
        row_id -> Nullable<Text>,
        row_hash -> Text,
        row_data_json -> Nullable<Text>,
        error -> Text,
        schema_mode -> Text,
        destination -> Text,
        created_at -> Timestamp,
        violation_type -> Nullable<Text>,
        original_field_name -> Nullable<Text>,
        normalized_field_name -> Nullable<Text>,
        expected_type -> Nullable<Text>,
        actual_type -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    artifacts,
    batch_members,
    batch_outputs,
    batches,
    calls,
    checkpoints,
    edges,
    node_states,
    nodes,
    operations,
    preflight_results,
    routing_events,
    rows,
    runs,
    secret_resolutions,
    token_outcomes,
    token_parents,
    tokens,
    transform_errors,
    validation_errors,
);
