//! Tier 1: rows corrupted with raw SQL are integrity errors on read, never
//! coerced. SQLite only, because corrupting needs CHECK constraints disabled.

use contracts::records::CallParent;
use contracts::{CallStatus, CallType};
use landscape::recorder::NewCall;
use landscape::{LandscapeError, Recorder};

use crate::fixtures::{fixture, sqlite_recorder};

fn corrupt(recorder: &mut Recorder, sql: &str) {
    landscape::connection::execute_raw(recorder.connection().expect("connection"), "PRAGMA ignore_check_constraints = ON")
        .expect("pragma");
    let changed = landscape::connection::execute_raw(recorder.connection().expect("connection"), sql).expect("corrupting update");
    assert_eq!(changed, 1, "the corruption must hit one row: {sql}");
}

fn assert_integrity<T: std::fmt::Debug>(result: Result<T, LandscapeError>, needle: &str) {
    match result {
        Err(LandscapeError::Integrity(message)) => assert!(message.contains(needle), "{message} lacks {needle}"),
        other => panic!("expected an integrity error mentioning {needle}, got {other:?}"),
    }
}

fn open_state(recorder: &mut Recorder) -> (crate::fixtures::Fixture, contracts::StateId) {
    let f = fixture(recorder);
    let state = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("state");
    let id = state.common().state_id.clone();
    (f, id)
}

#[test]
fn unknown_node_state_status() {
    let mut recorder = sqlite_recorder();
    let (_, id) = open_state(&mut recorder);
    corrupt(&mut recorder, &format!("UPDATE node_states SET status = 'bogus' WHERE state_id = '{id}'"));
    assert_integrity(recorder.get_node_state(&id), "unknown NodeStateStatus value \"bogus\"");
}

#[test]
fn open_state_with_completion_time() {
    let mut recorder = sqlite_recorder();
    let (_, id) = open_state(&mut recorder);
    corrupt(&mut recorder, &format!("UPDATE node_states SET completed_at = '2026-01-01 00:00:00' WHERE state_id = '{id}'"));
    assert_integrity(recorder.get_node_state(&id), "completed_at must be NULL when status is open");
}

#[test]
fn completed_state_without_output_hash() {
    let mut recorder = sqlite_recorder();
    let (_, id) = open_state(&mut recorder);
    corrupt(
        &mut recorder,
        &format!("UPDATE node_states SET status = 'completed', completed_at = '2026-01-01 00:00:00', duration_ms = 1 WHERE state_id = '{id}'"),
    );
    assert_integrity(recorder.get_node_state(&id), "output_hash is NULL but required");
}

#[test]
fn pending_state_with_output_hash() {
    let mut recorder = sqlite_recorder();
    let (_, id) = open_state(&mut recorder);
    let hash = "0".repeat(64);
    corrupt(
        &mut recorder,
        &format!(
            "UPDATE node_states SET status = 'pending', completed_at = '2026-01-01 00:00:00', duration_ms = 1, output_hash = '{hash}' \
             WHERE state_id = '{id}'"
        ),
    );
    assert_integrity(recorder.get_node_state(&id), "output_hash must be NULL when status is pending");
}

#[test]
fn non_boolean_is_terminal() {
    let mut recorder = sqlite_recorder();
    let f = fixture(&mut recorder);
    let outcome = recorder
        .record_token_outcome(
            &f.run.run_id,
            &f.token.token_id,
            contracts::records::OutcomeDetail::Completed { sink_name: "out".into() },
            None,
        )
        .expect("outcome");
    corrupt(&mut recorder, &format!("UPDATE token_outcomes SET is_terminal = 2 WHERE outcome_id = '{}'", outcome.outcome_id));
    assert_integrity(recorder.get_token_outcomes(&f.token.token_id), "is_terminal is 2");
}

#[test]
fn outcome_with_a_foreign_field() {
    let mut recorder = sqlite_recorder();
    let f = fixture(&mut recorder);
    let outcome = recorder
        .record_token_outcome(
            &f.run.run_id,
            &f.token.token_id,
            contracts::records::OutcomeDetail::Completed { sink_name: "out".into() },
            None,
        )
        .expect("outcome");
    corrupt(&mut recorder, &format!("UPDATE token_outcomes SET error_hash = 'abc' WHERE outcome_id = '{}'", outcome.outcome_id));
    assert_integrity(recorder.get_token_outcomes(&f.token.token_id), "error_hash set on a completed outcome");
}

#[test]
fn call_with_two_parents() {
    let mut recorder = sqlite_recorder();
    let (f, id) = open_state(&mut recorder);
    let parent = CallParent::State(id.clone());
    let call = recorder
        .record_call(
            &parent,
            &NewCall {
                call_type: CallType::Llm,
                status: CallStatus::Success,
                request: &serde_json::json!({}),
                response: None,
                error: None,
                latency_ms: None,
                origin: &contracts::records::CallOrigin::Live,
            },
        )
        .expect("call");
    let op = recorder.begin_operation(&f.run.run_id, &f.source, contracts::OperationType::SourceLoad, None).expect("op");
    corrupt(&mut recorder, &format!("UPDATE calls SET operation_id = '{}' WHERE call_id = '{}'", op.operation_id, call.call_id));
    assert_integrity(recorder.get_calls(&parent), "has both a state and an operation parent");
}

#[test]
fn executing_batch_without_trigger() {
    let mut recorder = sqlite_recorder();
    let f = fixture(&mut recorder);
    let batch = recorder.create_batch(&f.run.run_id, &f.transform).expect("batch");
    corrupt(&mut recorder, &format!("UPDATE batches SET status = 'executing' WHERE batch_id = '{}'", batch.batch_id));
    assert_integrity(recorder.get_batch(&batch.batch_id), "trigger_type is NULL but required");
}

#[test]
fn settings_that_no_longer_match_their_hash() {
    let mut recorder = sqlite_recorder();
    let f = fixture(&mut recorder);
    corrupt(&mut recorder, &format!("UPDATE runs SET settings_json = '{{}}' WHERE run_id = '{}'", f.run.run_id));
    assert_integrity(recorder.get_run(&f.run.run_id), "config_hash does not match settings_json");
}

#[test]
fn token_with_two_origin_groups() {
    let mut recorder = sqlite_recorder();
    let f = fixture(&mut recorder);
    corrupt(
        &mut recorder,
        &format!(
            "UPDATE tokens SET fork_group_id = 'f', join_group_id = 'j', branch_name = 'a' WHERE token_id = '{}'",
            f.token.token_id
        ),
    );
    assert_integrity(recorder.get_token(&f.token.token_id), "more than one of fork/join/expand group id is set");
}
