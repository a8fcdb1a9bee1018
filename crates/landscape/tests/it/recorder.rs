//! The recorder suite: every check runs on SQLite (one test each) and, in one
//! test, on a PostgreSQL server the test starts itself.

use contracts::records::{BatchState, BatchTrigger, CallParent, NodeState, OutcomeDetail, Token, TokenLineage};
use contracts::{
    error_hash, stable_hash, CallStatus, CallType, ContentHash, NodeStateStatus, OperationType, ReproducibilityGrade,
    RoutingMode, RunStatus, TriggerType,
};
use landscape::recorder::{BatchCompletion, NewCall, NewTransformError, OperationCompletion, StateCompletion};
use landscape::{LandscapeError, Recorder};

use crate::fixtures::{count, fixture, row_value, sqlite_recorder};

type Check = fn(&mut Recorder);

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&mut crate::fixtures::sqlite_recorder()); } )*
        }
        const SUITE: &[(&str, Check)] = &[$((stringify!($name), $name)),*];
    };
}

suite!(
    run_lifecycle_is_guarded,
    failed_run_resumes,
    node_config_is_canonical_and_hashed,
    fork_expand_and_coalesce_record_lineage,
    explain_walks_every_ancestor_and_purge_plans,
    lineage_operations_refuse_foreign_tokens,
    node_state_lifecycle_is_guarded,
    pending_state_completes_later,
    one_terminal_outcome_per_token,
    outcomes_require_their_fields,
    batch_lifecycle_is_guarded,
    failed_batches_retry_with_lineage,
    batches_in_a_unit_wait_in_its_buffer,
    calls_have_one_parent_and_sequential_indices,
    operation_lifecycle_is_guarded,
    routing_events_share_a_group,
    errors_are_recorded_against_their_run,
    checkpoints_latest_and_delete,
    unit_of_work_rolls_back_completely,
    large_units_flush_in_the_background,
    units_commit_in_the_background,
    a_broken_foreign_key_fails_the_unit_at_commit,
);

#[test]
fn postgresql_recorder_suite() {
    let Some(server) = test_support::pg_server_or_skip("postgresql_recorder_suite") else {
        return;
    };
    for (name, check) in SUITE {
        eprintln!("postgresql: {name}");
        let mut recorder = Recorder::open(&server.fresh_database(), None).expect("PostgreSQL Landscape opens");
        check(&mut recorder);
    }
}

fn completed(output: &str) -> StateCompletion {
    StateCompletion::Completed {
        output_hash: ContentHash::of_bytes(output.as_bytes()),
        context_after_json: None,
        success_reason_json: None,
    }
}

fn run_lifecycle_is_guarded(recorder: &mut Recorder) {
    let f = fixture(recorder);
    assert!(Recorder::verify_run_settings(&f.run));
    assert!(matches!(recorder.complete_run(&f.run.run_id, RunStatus::Running, None), Err(LandscapeError::InvalidWrite(_))));
    let done = recorder.finalize_run(&f.run.run_id, RunStatus::Completed).expect("complete");
    assert_eq!(done.state.status(), RunStatus::Completed);
    assert_eq!(done.reproducibility_grade, Some(ReproducibilityGrade::ReplayReproducible));
    let again = recorder.complete_run(&f.run.run_id, RunStatus::Failed, None);
    assert!(matches!(again, Err(LandscapeError::IllegalTransition(_))), "{again:?}");
    let unchanged = recorder.get_run(&f.run.run_id).expect("run");
    assert_eq!(unchanged.state, done.state);
    assert_eq!(unchanged.reproducibility_grade, Some(ReproducibilityGrade::ReplayReproducible));
    assert!(matches!(recorder.resume_run(&f.run.run_id, ("host", 1)), Err(LandscapeError::IllegalTransition(_))));
}

fn failed_run_resumes(recorder: &mut Recorder) {
    let f = fixture(recorder);
    recorder.complete_run(&f.run.run_id, RunStatus::Failed, Some(ReproducibilityGrade::ReplayReproducible)).expect("fail");
    let resumed = recorder.resume_run(&f.run.run_id, ("host", 42)).expect("resume");
    assert_eq!(resumed.state.status(), RunStatus::Running);
    assert_eq!(resumed.state.completed_at(), None);
    assert_eq!(resumed.owner.as_ref().map(|o| o.pid), Some(42));
    let done = recorder.complete_run(&f.run.run_id, RunStatus::Completed, None).expect("complete after resume");
    assert_eq!(done.reproducibility_grade, Some(ReproducibilityGrade::ReplayReproducible), "grade kept when none given");
}

fn node_config_is_canonical_and_hashed(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let nodes = recorder.get_nodes(&f.run.run_id).expect("nodes");
    assert_eq!(nodes.len(), 3);
    for node in &nodes {
        assert_eq!(contracts::sha256_hex(node.config_json.as_bytes()), node.config_hash.as_str());
        assert!(node.config_json.starts_with("{\"name\":"));
    }
    assert_eq!(recorder.get_edges(&f.run.run_id).expect("edges").len(), 2);
    assert_eq!(recorder.compute_reproducibility_grade(&f.run.run_id).expect("grade"), ReproducibilityGrade::ReplayReproducible);
}

fn fork_expand_and_coalesce_record_lineage(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let branches = vec!["a".to_owned(), "b".to_owned()];
    let (children, fork_group) = recorder.fork_token(f.token(), &branches, 2).expect("fork");
    assert_eq!(children.len(), 2);
    for (i, child) in children.iter().enumerate() {
        let stored = recorder.get_token(&child.token_id).expect("child");
        assert_eq!(stored.lineage, TokenLineage::Forked { fork_group_id: fork_group.clone(), branch_name: branches[i].clone() });
        let parents = recorder.get_token_parents(&child.token_id).expect("parents");
        assert_eq!(parents.len(), 1);
        assert_eq!(parents[0].parent_token_id, f.token.token_id);
        assert_eq!(parents[0].ordinal as usize, i);
    }
    let outcomes = recorder.get_token_outcomes(&f.token.token_id).expect("outcomes");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].detail, OutcomeDetail::Forked { fork_group_id: fork_group, expected_branches: branches });

    let (expanded, expand_group) = recorder.expand_token(&children[0], 3, 3, true).expect("expand");
    assert_eq!(expanded.len(), 3);
    assert!(expanded.iter().all(|t| matches!(&t.lineage, TokenLineage::Expanded { branch_name: Some(b), .. } if b == "a")));
    let parent_outcome = recorder.get_token_outcomes(&children[0].token_id).expect("outcomes");
    assert_eq!(parent_outcome[0].detail, OutcomeDetail::Expanded { expand_group_id: expand_group, count: 3 });

    let (merged, join_group) = recorder.coalesce_tokens(&[&children[1], &expanded[0]], 4).expect("coalesce");
    assert_eq!(recorder.get_token(&merged.token_id).expect("merged").lineage, TokenLineage::Joined { join_group_id: join_group });
    let parents: Vec<_> =
        recorder.get_token_parents(&merged.token_id).expect("parents").into_iter().map(|p| p.parent_token_id).collect();
    assert_eq!(parents, vec![children[1].token_id.clone(), expanded[0].token_id.clone()]);
}

/// The lineage and retention queries, on both backends.
fn explain_walks_every_ancestor_and_purge_plans(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let branches = vec!["a".to_owned(), "b".to_owned()];
    let (children, _) = recorder.fork_token(f.token(), &branches, 2).expect("fork");
    let (expanded, _) = recorder.expand_token(&children[0], 2, 3, true).expect("expand");
    let (merged, _) = recorder.coalesce_tokens(&[&children[1], &expanded[0]], 4).expect("coalesce");
    let lineage = recorder.explain(&f.run.run_id, &merged.token_id).expect("explain");
    let ids: Vec<_> = lineage.tokens.iter().map(|t| t.token.token_id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            merged.token_id.clone(),
            children[1].token_id.clone(),
            expanded[0].token_id.clone(),
            f.token.token_id.clone(),
            children[0].token_id.clone()
        ],
        "the target, then each generation of ancestors in parent order"
    );
    assert_eq!(lineage.rows.len(), 1);
    assert_eq!(lineage.token(&children[1].token_id).expect("branch").siblings, vec![children[0].token_id.clone()]);
    assert_eq!(lineage.token(&expanded[0].token_id).expect("expanded").siblings, vec![expanded[1].token_id.clone()]);
    let outputs = recorder.row_outputs(&f.run.run_id, &landscape::lineage::RowSelector::Index(0), None).expect("outputs");
    assert_eq!(outputs, vec![expanded[1].token_id.clone(), merged.token_id.clone()], "the row's tokens that have no child");
    let plan = recorder.plan_purge(0, chrono::Utc::now()).expect("plan");
    assert!(plan.expired_runs.is_empty(), "a running run is never eligible");
}

fn lineage_operations_refuse_foreign_tokens(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let other_row = recorder.create_row(&f.run.run_id, &f.source, 1, &row_value(1)).expect("row");
    let other = recorder.create_token(&other_row).expect("token");
    let before = count(recorder, "SELECT count(*) AS n FROM tokens");
    let mixed = recorder.coalesce_tokens(&[f.token(), &other], 3);
    assert!(matches!(mixed, Err(LandscapeError::InvalidWrite(_))), "{mixed:?}");
    let mut forged = f.token.clone();
    forged.row_id = other_row.row_id.clone();
    assert!(recorder.fork_token(&forged, &["a".to_owned()], 2).is_err());
    assert!(matches!(recorder.fork_token(f.token(), &[], 2), Err(LandscapeError::InvalidWrite(_))));
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), before, "a refused lineage write writes nothing");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM token_outcomes"), 0);
}

fn node_state_lifecycle_is_guarded(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let open = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("open");
    assert_eq!(open.status(), NodeStateStatus::Open);
    let id = open.common().state_id.clone();
    assert!(matches!(recorder.complete_node_state(&id, &completed("{}"), -1.0), Err(LandscapeError::InvalidWrite(_))));
    assert!(matches!(recorder.complete_node_state(&id, &completed("{}"), f64::NAN), Err(LandscapeError::InvalidWrite(_))));
    let done = recorder.complete_node_state(&id, &completed("{}"), 1.5).expect("complete");
    assert!(matches!(&done, NodeState::Completed { duration_ms, .. } if (*duration_ms - 1.5).abs() < f64::EPSILON));
    let failed = StateCompletion::failed(&serde_json::json!({"exception": "late", "type": "Bug"})).expect("error json");
    let again = recorder.complete_node_state(&id, &failed, 1.0);
    assert!(matches!(again, Err(LandscapeError::IllegalTransition(_))), "{again:?}");
    assert_eq!(recorder.get_node_state(&id).expect("state"), done, "a refused transition writes nothing");
    // The same token cannot visit the same step twice with the same attempt.
    assert!(recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).is_err());
    let retry = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 1)).expect("retry attempt");
    let states = recorder.get_node_states_for_token(&f.token.token_id).expect("states");
    assert_eq!(states.iter().map(|s| s.common().attempt).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(states[1], retry);
}

fn pending_state_completes_later(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let open = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("open");
    let id = open.common().state_id.clone();
    let pending = recorder
        .complete_node_state(&id, &StateCompletion::Pending { context_after_json: Some("{\"job\":1}".into()) }, 2.0)
        .expect("pending");
    assert!(matches!(&pending, NodeState::Pending { .. }));
    let twice = recorder.complete_node_state(&id, &StateCompletion::Pending { context_after_json: None }, 2.0);
    assert!(matches!(twice, Err(LandscapeError::IllegalTransition(_))));
    let done = recorder.complete_node_state(&id, &completed("[]"), 9.0).expect("pending -> completed");
    assert_eq!(done.status(), NodeStateStatus::Completed);
}

fn one_terminal_outcome_per_token(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let batch = recorder.create_batch(&f.run.run_id, &f.transform).expect("batch");
    let run = &f.run.run_id;
    let token = &f.token.token_id;
    recorder
        .record_token_outcome(run, token, OutcomeDetail::Buffered { batch_id: batch.batch_id.clone() }, None)
        .expect("buffered");
    recorder
        .record_token_outcome(run, token, OutcomeDetail::Buffered { batch_id: batch.batch_id.clone() }, None)
        .expect("buffered twice");
    let first = recorder
        .record_token_outcome(
            run,
            token,
            OutcomeDetail::Completed { sink_name: "out".into() },
            Some(&serde_json::json!({"k": 1})),
        )
        .expect("terminal");
    let second =
        recorder.record_token_outcome(run, token, OutcomeDetail::Failed { error_hash: error_hash("x"), batch_id: None }, None);
    assert!(matches!(second, Err(LandscapeError::IllegalTransition(_))), "{second:?}");
    let outcomes = recorder.get_token_outcomes(token).expect("outcomes");
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[2].detail, first.detail);
    assert_eq!(outcomes[2].context_json.as_deref(), Some("{\"k\":1}"));
    // The database enforces it by itself too.
    let raw = landscape::connection::execute_raw(
        recorder.connection().expect("connection"),
        &format!(
            "INSERT INTO token_outcomes (outcome_id, run_id, token_id, outcome, is_terminal, recorded_at, error_hash) \
             VALUES ('rawsecond', '{run}', '{token}', 'failed', 1, '2026-01-01 00:00:00', 'abc')"
        ),
    );
    assert!(raw.is_err(), "the unique partial index must refuse a second terminal outcome");
}

fn outcomes_require_their_fields(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let empty_sink =
        recorder.record_token_outcome(&f.run.run_id, &f.token.token_id, OutcomeDetail::Routed { sink_name: String::new() }, None);
    assert!(matches!(empty_sink, Err(LandscapeError::InvalidWrite(_))));
    let empty_hash = recorder.record_token_outcome(
        &f.run.run_id,
        &f.token.token_id,
        OutcomeDetail::Quarantined { error_hash: String::new(), sink_name: None },
        None,
    );
    assert!(matches!(empty_hash, Err(LandscapeError::InvalidWrite(_))));
    let diverted = OutcomeDetail::Diverted { sink_name: "__discard__".into(), error_hash: error_hash("sink refused") };
    let stored =
        recorder.record_token_outcome(&f.run.run_id, &f.token.token_id, diverted.clone(), None).expect("diverted is recordable");
    assert_eq!(recorder.get_token_outcomes(&f.token.token_id).expect("outcomes")[0].detail, stored.detail);
}

fn trigger() -> BatchTrigger {
    BatchTrigger { trigger_type: TriggerType::Count, trigger_reason: "count reached 2".into() }
}

fn batch_lifecycle_is_guarded(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let batch = recorder.create_batch(&f.run.run_id, &f.transform).expect("batch");
    assert_eq!(batch.state, BatchState::Draft);
    recorder.add_batch_member(&batch.batch_id, &f.run.run_id, &f.token.token_id, 0).expect("member");
    assert!(
        recorder.add_batch_member(&batch.batch_id, &f.run.run_id, &f.token.token_id, 1).is_err(),
        "a token joins a batch once"
    );
    let refused = recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed);
    assert!(matches!(refused, Err(LandscapeError::IllegalTransition(_))), "draft cannot complete without executing");
    let state = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("flush state");
    recorder.start_batch(&batch.batch_id, &trigger(), &state.common().state_id).expect("executing");
    assert_eq!(
        recorder.get_batch(&batch.batch_id).expect("batch").state,
        BatchState::Executing { trigger: trigger(), aggregation_state_id: state.common().state_id.clone() }
    );
    recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed).expect("completed");
    let done = recorder.get_batch(&batch.batch_id).expect("batch");
    assert!(matches!(&done.state, BatchState::Completed { trigger: t, .. } if *t == trigger()));
    assert!(matches!(
        recorder.complete_batch(&batch.batch_id, BatchCompletion::Failed),
        Err(LandscapeError::IllegalTransition(_))
    ));
    assert!(matches!(recorder.retry_batch(&batch.batch_id), Err(LandscapeError::IllegalTransition(_))));
    assert_eq!(recorder.get_batch(&batch.batch_id).expect("batch").state, done.state);
}

fn failed_batches_retry_with_lineage(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let batch = recorder.create_batch(&f.run.run_id, &f.transform).expect("batch");
    recorder.add_batch_member(&batch.batch_id, &f.run.run_id, &f.token.token_id, 0).expect("member");
    recorder.complete_batch(&batch.batch_id, BatchCompletion::Failed).expect("draft -> failed");
    assert!(matches!(recorder.get_batch(&batch.batch_id).expect("batch").state, BatchState::Failed { flush: None, .. }));
    let retry = recorder.retry_batch(&batch.batch_id).expect("retry");
    assert_eq!(retry.attempt, 1);
    assert_eq!(retry.retry_of_batch_id.as_ref(), Some(&batch.batch_id));
    assert_eq!(retry.state, BatchState::Draft);
    let members = recorder.get_batch_members(&retry.batch_id).expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].token_id, f.token.token_id);
    assert_eq!(recorder.retry_batch(&batch.batch_id).expect("idempotent").batch_id, retry.batch_id);
    let incomplete: Vec<_> =
        recorder.get_incomplete_batches(&f.run.run_id).expect("incomplete").into_iter().map(|b| b.batch_id).collect();
    assert_eq!(incomplete, vec![batch.batch_id, retry.batch_id]);
}

/// In a unit a batch, its members, its transitions and its output token
/// wait in the write buffer and are written in foreign-key order; an
/// illegal transition is refused when written and fails the whole unit.
fn batches_in_a_unit_wait_in_its_buffer(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let run = &f.run.run_id;
    recorder.begin_unit().expect("begin");
    let tokens: Vec<Token> = (1..=3)
        .map(|index| {
            let row = recorder.create_row(run, &f.source, index, &row_value(i64::try_from(index).expect("small"))).expect("row");
            recorder.create_token(&row).expect("token")
        })
        .collect();
    let batch = recorder.create_batch(run, &f.transform).expect("batch");
    for (ordinal, token) in (0..).zip(&tokens) {
        recorder.add_batch_member(&batch.batch_id, run, &token.token_id, ordinal).expect("member");
    }
    let state = recorder.begin_node_state(f.state(&tokens[0], &f.transform, 1, 0)).expect("flush state");
    recorder.start_batch(&batch.batch_id, &trigger(), &state.common().state_id).expect("executing");
    recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed).expect("completed");
    let members: Vec<&Token> = tokens.iter().collect();
    let output = recorder.create_batch_output_token(&members, 2).expect("output token");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM batches"), 1, "a query sees what the unit buffered");
    recorder.commit_unit().expect("commit");
    assert!(matches!(recorder.get_batch(&batch.batch_id).expect("batch").state, BatchState::Completed { .. }));
    assert_eq!(recorder.get_batch_members(&batch.batch_id).expect("members").len(), 3);
    assert_eq!(recorder.get_token_parents(&output.token_id).expect("parents").len(), 3, "the output token links to every member");

    recorder.begin_unit().expect("begin");
    let draft = recorder.create_batch(run, &f.transform).expect("batch");
    recorder.add_batch_member(&draft.batch_id, run, &tokens[0].token_id, 0).expect("member");
    recorder.complete_batch(&draft.batch_id, BatchCompletion::Completed).expect("refused only when written");
    let committed = recorder.commit_unit();
    assert!(matches!(committed, Err(LandscapeError::IllegalTransition(_))), "{committed:?}");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM batches"), 1, "nothing of the failed unit stays");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM batch_members"), 3);
}

fn calls_have_one_parent_and_sequential_indices(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let state = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("state");
    let parent = CallParent::State(state.common().state_id.clone());
    let request = serde_json::json!({"url": "https://example.invalid"});
    let call = NewCall {
        call_type: CallType::Http,
        status: CallStatus::Success,
        request: &request,
        response: Some(&serde_json::json!({})),
        error: None,
        latency_ms: Some(3.0),
        origin: &contracts::records::CallOrigin::Live,
    };
    let indices: Vec<u32> = (0..3).map(|_| recorder.record_call(&parent, &call).expect("call").call_index).collect();
    assert_eq!(indices, vec![0, 1, 2]);
    let calls = recorder.get_calls(&parent).expect("calls");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].request_hash, contracts::stable_hash_json(&request).expect("hash"));
    assert_eq!(
        calls[0].response_hash,
        Some(contracts::stable_hash_json(&serde_json::json!({})).expect("hash")),
        "empty payloads are hashed"
    );
    let op = recorder.begin_operation(&f.run.run_id, &f.source, OperationType::SourceLoad, None).expect("op");
    let op_parent = CallParent::Operation(op.operation_id.clone());
    let op_call = recorder.record_call(&op_parent, &call).expect("op call");
    assert_eq!(op_call.call_id.as_str(), format!("call_{}_0", op.operation_id));
    let both = landscape::connection::execute_raw(
        recorder.connection().expect("connection"),
        &format!(
            "INSERT INTO calls (call_id, state_id, operation_id, call_index, call_type, status, request_hash, created_at) \
             VALUES ('both', '{}', '{}', 9, 'http', 'success', 'h', '2026-01-01 00:00:00')",
            state.common().state_id,
            op.operation_id
        ),
    );
    assert!(both.is_err(), "a call with two parents is refused by the database");
}

fn operation_lifecycle_is_guarded(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let op =
        recorder.begin_operation(&f.run.run_id, &f.sink, OperationType::SinkWrite, Some(&serde_json::json!({}))).expect("op");
    assert!(op.input.is_some(), "an empty input payload still gets a hash");
    let refused =
        recorder.complete_operation(&op.operation_id, &OperationCompletion::Failed { error_message: "", output: None }, 1.0);
    assert!(matches!(refused, Err(LandscapeError::InvalidWrite(_))));
    recorder
        .complete_operation(
            &op.operation_id,
            &OperationCompletion::Completed { output: Some(&serde_json::json!({"rows": 1})) },
            1.0,
        )
        .expect("complete");
    let done = recorder.get_operation(&op.operation_id).expect("read back");
    assert_eq!(done.state.status(), contracts::OperationStatus::Completed);
    let again =
        recorder.complete_operation(&op.operation_id, &OperationCompletion::Failed { error_message: "late", output: None }, 1.0);
    assert!(matches!(again, Err(LandscapeError::IllegalTransition(_))));
}

fn routing_events_share_a_group(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let edges = recorder.get_edges(&f.run.run_id).expect("edges");
    let state = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("state");
    let routes = vec![(edges[0].edge_id.clone(), RoutingMode::Copy), (edges[1].edge_id.clone(), RoutingMode::Copy)];
    let reason = serde_json::json!({"condition": "row['x'] > 1", "result": true});
    let events = recorder.record_routing_events(&state.common().state_id, &routes, Some(&reason)).expect("events");
    let stored = recorder.get_routing_events(&state.common().state_id).expect("stored");
    assert_eq!(stored, events);
    assert_eq!(stored[0].routing_group_id, stored[1].routing_group_id);
    assert_eq!(stored.iter().map(|e| e.ordinal).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(stored[0].reason_hash, Some(contracts::stable_hash_json(&reason).expect("hash")));
}

fn errors_are_recorded_against_their_run(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let raw = row_value(7);
    let violation = contracts::plugin::Violation { violation_type: Some("type_mismatch".into()), ..Default::default() };
    let recorded = recorder
        .record_validation_error(
            &f.run.run_id,
            &landscape::recorder::NewValidationError {
                node_id: Some(&f.source),
                row_id: None,
                raw: &raw,
                error: "score: expected float",
                schema_mode: "field_normalization",
                destination: "quarantine",
                violation: &violation,
            },
        )
        .expect("validation error");
    assert_eq!(recorded.row_hash, stable_hash(&raw).expect("hash"));
    let errors = recorder.get_validation_errors(&f.run.run_id).expect("read back");
    assert_eq!(errors, vec![recorded]);
    let details = serde_json::json!({"reason": "missing_field", "field": "x"});
    let new_error = NewTransformError {
        token_id: &f.token.token_id,
        transform_id: &f.transform,
        row: &raw,
        error_details: &details,
        destination: "errors",
    };
    recorder.record_transform_error(&f.run.run_id, &new_error).expect("transform error");
    assert_eq!(recorder.get_transform_errors(&f.run.run_id).expect("read back").len(), 1);
    let other_run = recorder.begin_run(&serde_json::json!({"other": true}), None).expect("other run");
    assert!(recorder.record_transform_error(&other_run.run_id, &new_error).is_err(), "a token of another run is refused");
}

fn checkpoints_latest_and_delete(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let hash = ContentHash::of_bytes(b"topology");
    for sequence in [3_u64, 1, 2] {
        recorder
            .create_checkpoint(
                &f.run.run_id,
                &landscape::recorder::NewCheckpoint {
                    token_id: &f.token.token_id,
                    node_id: &f.sink,
                    sequence_number: sequence,
                    aggregation_state_json: None,
                    coalesce_state_json: None,
                    upstream_topology_hash: &hash,
                    checkpoint_node_config_hash: &hash,
                },
            )
            .expect("checkpoint");
    }
    assert_eq!(recorder.latest_checkpoint(&f.run.run_id).expect("latest").map(|c| c.sequence_number), Some(3));
    assert_eq!(recorder.delete_checkpoints(&f.run.run_id).expect("delete"), 3);
    assert_eq!(recorder.latest_checkpoint(&f.run.run_id).expect("latest"), None);
}

fn unit_of_work_rolls_back_completely(recorder: &mut Recorder) {
    let f = fixture(recorder);
    recorder.begin_unit().expect("begin");
    assert!(recorder.begin_unit().is_err(), "units do not nest");
    for index in 1..=5 {
        let row =
            recorder.create_row(&f.run.run_id, &f.source, index, &row_value(i64::try_from(index).expect("small"))).expect("row");
        let token = recorder.create_token(&row).expect("token");
        recorder.fork_token(&token, &["a".to_owned()], 1).expect("fork inside a unit");
    }
    recorder.rollback_unit().expect("rollback");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM rows"), 1);
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), 1);
    recorder.begin_unit().expect("begin");
    let row = recorder.create_row(&f.run.run_id, &f.source, 9, &row_value(9)).expect("row");
    recorder.create_token(&row).expect("token");
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), 2);
}

/// Units larger than the write buffer: the buffer is written on the flush
/// thread while recording goes on; statements recorded later still see every
/// earlier record, and a refused outcome in a background flush fails the
/// whole unit.
fn large_units_flush_in_the_background(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let run = &f.run.run_id;
    let record = |recorder: &mut Recorder, index: u64| {
        let row = recorder.create_row(run, &f.source, index, &row_value(i64::try_from(index).expect("small"))).expect("row");
        let token = recorder.create_token(&row).expect("token");
        let state = recorder.record_node_state(f.state(&token, &f.transform, 1, 0), completed("out"), 1.0).expect("state");
        recorder
            .record_token_outcome(run, &token.token_id, OutcomeDetail::Completed { sink_name: "out".into() }, None)
            .expect("outcome");
        state
    };
    recorder.begin_unit().expect("begin");
    let mut last = None;
    for index in 1..=1_500 {
        last = Some(record(recorder, index));
    }
    // A statement that is not buffered, referring to the newest buffered state.
    let state_id = last.expect("recorded").common().state_id.clone();
    let call = NewCall {
        call_type: CallType::Http,
        status: CallStatus::Success,
        request: &serde_json::json!({}),
        response: None,
        error: None,
        latency_ms: None,
        origin: &contracts::records::CallOrigin::Live,
    };
    recorder.record_call(&CallParent::State(state_id), &call).expect("a call on a state written in the background");
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM node_states"), 1_500);
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM token_outcomes"), 1_500);

    recorder.begin_unit().expect("begin");
    recorder
        .record_token_outcome(run, &f.token.token_id, OutcomeDetail::Completed { sink_name: "out".into() }, None)
        .expect("buffered, refused when written");
    recorder
        .record_token_outcome(run, &f.token.token_id, OutcomeDetail::Completed { sink_name: "out".into() }, None)
        .expect("buffered, refused when written");
    for index in 2_000..2_600 {
        record(recorder, index);
    }
    let committed = recorder.commit_unit();
    assert!(matches!(committed, Err(LandscapeError::IllegalTransition(_))), "{committed:?}");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM node_states"), 1_500, "nothing of the failed unit stays");
    recorder.begin_unit().expect("the recorder goes on after a failed unit");
    record(recorder, 3_000);
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM node_states"), 1_501);
}

/// A unit committed in the background is durable once the recorder is next
/// used; the next unit records meanwhile; a commit that fails is reported
/// by the next call and leaves nothing of its unit.
fn units_commit_in_the_background(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let run = &f.run.run_id;
    let completed_outcome = || OutcomeDetail::Completed { sink_name: "out".into() };
    recorder.begin_unit().expect("begin");
    let row = recorder.create_row(run, &f.source, 1, &row_value(1)).expect("row");
    let token = recorder.create_token(&row).expect("token");
    recorder.commit_unit_in_background().expect("handed over");
    recorder.begin_unit().expect("the next unit opens while the commit runs");
    recorder.record_token_outcome(run, &token.token_id, completed_outcome(), None).expect("outcome");
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), 2);
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM token_outcomes"), 1);

    recorder.begin_unit().expect("begin");
    let row = recorder.create_row(run, &f.source, 2, &row_value(2)).expect("row");
    recorder.create_token(&row).expect("token");
    recorder.record_token_outcome(run, &token.token_id, completed_outcome(), None).expect("refused only when written");
    recorder.commit_unit_in_background().expect("handed over");
    let reported = recorder.wait_for_writes();
    assert!(matches!(reported, Err(LandscapeError::IllegalTransition(_))), "{reported:?}");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), 2, "nothing of the failed unit stays");
    recorder.begin_unit().expect("the recorder goes on after a failed commit");
    recorder.create_row(run, &f.source, 3, &row_value(3)).expect("row");
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM rows"), 3);
}

#[test]
fn rows_go_to_the_payload_store_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = landscape::PayloadStore::new(dir.path().join("payloads"));
    let mut recorder = Recorder::open("sqlite:///:memory:", Some(store.clone())).expect("open");
    let f = fixture(&mut recorder);
    let data_ref = f.row.source_data_ref.clone().expect("stored");
    assert_eq!(data_ref, f.row.source_data_hash.as_str(), "content-addressed: ref equals hash");
    let bytes = store.retrieve(&data_ref).expect("retrieve");
    assert_eq!(bytes, contracts::canonical_json_value(&row_value(0)).expect("canonical").as_bytes());
}

#[test]
fn sqlite_file_uses_wal_and_foreign_keys() {
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }
    use diesel::RunQueryDsl;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("audit.db").display()), None).expect("open");
    let mode: Vec<Mode> =
        diesel::sql_query("PRAGMA journal_mode").load(recorder.connection().expect("connection")).expect("pragma");
    assert_eq!(mode[0].journal_mode, "wal");
    let orphan = landscape::connection::execute_raw(
        recorder.connection().expect("connection"),
        "INSERT INTO nodes (node_id, run_id, plugin_name, node_type, plugin_version, determinism, config_hash, config_json, registered_at) \
         VALUES ('n', 'no-such-run', 'p', 'source', '1', 'io_read', 'h', '{}', '2026-01-01 00:00:00')",
    );
    assert!(orphan.is_err(), "foreign keys are enforced");
    let _ = sqlite_recorder();
}

/// Foreign keys are deferred (checked at commit, so SQLite keeps no
/// statement journal): a unit naming a row that does not exist fails when it
/// commits, leaves nothing behind, and the recorder goes on.
fn a_broken_foreign_key_fails_the_unit_at_commit(recorder: &mut Recorder) {
    let f = fixture(recorder);
    let run = &f.run.run_id;
    let tokens_before = count(recorder, "SELECT count(*) AS n FROM tokens");
    recorder.begin_unit().expect("begin");
    let row = recorder.create_row(run, &f.source, 7, &row_value(7)).expect("row");
    recorder.create_token(&row).expect("token");
    let missing = contracts::records::Row { row_id: contracts::RowId::new(), ..row };
    recorder.create_token(&missing).expect("buffered, refused when committed");
    let committed = recorder.commit_unit();
    assert!(committed.as_ref().is_err_and(|e| e.to_string().to_lowercase().contains("foreign key")), "{committed:?}");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), tokens_before, "nothing of the failed unit stays");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM rows WHERE row_index = 7"), 0);
    recorder.begin_unit().expect("the recorder goes on after a failed commit");
    let row = recorder.create_row(run, &f.source, 8, &row_value(8)).expect("row");
    recorder.create_token(&row).expect("token");
    recorder.commit_unit().expect("commit");
    assert_eq!(count(recorder, "SELECT count(*) AS n FROM tokens"), tokens_before + 1);
}
