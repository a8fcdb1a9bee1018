//! Lineage and retention at the recorder level: the grade after a purge,
//! shared payloads, parents in another run.

use contracts::records::{CallParent, OutcomeDetail};
use contracts::{CallStatus, CallType, Determinism, NodeType, ReproducibilityGrade, RunStatus};
use diesel::RunQueryDsl;
use landscape::lineage::Payload;
use landscape::recorder::{NewCall, NewNode, StateCompletion};
use landscape::{LandscapeError, PayloadStore, Recorder};

use crate::fixtures::{count, fixture, node_id, row_value};

fn recorder_with_store(dir: &std::path::Path) -> Recorder {
    let url = format!("sqlite:///{}", dir.join("audit.db").display());
    Recorder::open(&url, Some(PayloadStore::new(dir.join("payloads")))).expect("Landscape opens")
}

/// A completed run whose transform (of `determinism`) made one call with a
/// recorded response; returns the run.
fn run_with_call(recorder: &mut Recorder, determinism: Determinism, n: i64) -> contracts::RunId {
    let f = fixture(recorder);
    let caller = node_id("transform_llm");
    recorder
        .register_node(
            &f.run.run_id,
            &NewNode {
                node_id: &caller,
                plugin_name: "llm",
                node_type: NodeType::Transform,
                plugin_version: "1.0.0",
                determinism,
                config: &serde_json::json!({}),
                sequence_in_pipeline: None,
                schema_mode: None,
                schema_fields: None,
            },
        )
        .expect("node");
    let row = recorder.create_row(&f.run.run_id, &f.source, 1, &row_value(n)).expect("row");
    let token = recorder.create_token(&row).expect("token");
    let state = recorder.begin_node_state(f.state(&token, &caller, 1, 0)).expect("state");
    let parent = CallParent::State(state.common().state_id.clone());
    let response = serde_json::json!({"answer": format!("reply {n}")});
    recorder
        .record_call(
            &parent,
            &NewCall {
                call_type: CallType::Llm,
                status: CallStatus::Success,
                request: &serde_json::json!({"prompt": format!("row {n}")}),
                response: Some(&response),
                error: None,
                latency_ms: Some(12.0),
                origin: &contracts::records::CallOrigin::Live,
            },
        )
        .expect("call");
    let completion = StateCompletion::Completed {
        output_hash: row.source_data_hash.clone(),
        context_after_json: None,
        success_reason_json: None,
    };
    recorder.complete_node_state(&state.common().state_id, &completion, 1.0).expect("complete");
    for t in [&f.token, &token] {
        recorder
            .record_token_outcome(&f.run.run_id, &t.token_id, OutcomeDetail::Completed { sink_name: "out".into() }, None)
            .expect("outcome");
    }
    recorder.finalize_run(&f.run.run_id, RunStatus::Completed).expect("finalize");
    f.run.run_id
}

#[test]
fn a_run_that_loses_a_replay_response_becomes_attributable_only_and_keeps_its_hashes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = recorder_with_store(dir.path());
    let calling = run_with_call(&mut recorder, Determinism::ExternalCall, 7);
    assert_eq!(recorder.get_run(&calling).expect("run").reproducibility_grade, Some(ReproducibilityGrade::ReplayReproducible));
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    let plan = recorder.plan_purge(0, later).expect("plan");
    assert_eq!(plan.expired_runs, vec![calling.clone()]);
    // Two source rows, the request and the response.
    assert_eq!(plan.refs.len(), 4, "{plan:?}");
    let report = recorder.execute_purge(&plan).expect("purge");
    assert_eq!((report.deleted, report.missing, report.failed.len()), (4, 0, 0));
    assert_eq!(report.degraded, vec![calling.clone()]);
    assert_eq!(recorder.get_run(&calling).expect("run").reproducibility_grade, Some(ReproducibilityGrade::AttributableOnly));
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM calls WHERE response_hash IS NOT NULL AND response_ref IS NOT NULL"),
        1
    );
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM rows WHERE length(source_data_hash) = 64"), 2);
    // Nothing is left to purge; a second purge plans nothing.
    assert!(recorder.plan_purge(0, later).expect("plan").refs.is_empty());
}

#[test]
fn losing_only_source_rows_or_deterministic_call_responses_keeps_the_grade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = recorder_with_store(dir.path());
    let run = run_with_call(&mut recorder, Determinism::Deterministic, 3);
    let before = recorder.get_run(&run).expect("run").reproducibility_grade;
    let plan = recorder.plan_purge(0, chrono::Utc::now() + chrono::TimeDelta::seconds(5)).expect("plan");
    let report = recorder.execute_purge(&plan).expect("purge");
    assert_eq!(report.deleted, 4);
    assert!(report.degraded.is_empty());
    assert_eq!(recorder.get_run(&run).expect("run").reproducibility_grade, before);
}

#[test]
fn payloads_shared_with_a_running_run_are_kept_and_explain_marks_purged_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = recorder_with_store(dir.path());
    let old = run_with_call(&mut recorder, Determinism::ExternalCall, 1);
    // A running run that read the same first row (content-addressed: one blob).
    let running = fixture(&mut recorder);
    let plan = recorder.plan_purge(0, chrono::Utc::now() + chrono::TimeDelta::seconds(5)).expect("plan");
    assert_eq!(plan.expired_runs, vec![old.clone()]);
    assert_eq!(plan.shared, 1, "row 0 is shared with the running run");
    recorder.execute_purge(&plan).expect("purge");
    let old_tokens = crate::fixtures::count(&mut recorder, &format!("SELECT count(*) AS n FROM tokens WHERE run_id = '{old}'"));
    assert_eq!(old_tokens, 2);
    let lineage = recorder.explain(&running.run.run_id, &running.token.token_id).expect("explain");
    assert!(matches!(lineage.rows[0].payload, Payload::Available(_)), "the running run keeps its row");
    let old_rows = recorder.get_rows(&old).expect("rows");
    let old_token = recorder.get_tokens_for_row(&old_rows[1].row_id).expect("tokens").remove(0);
    let lineage = recorder.explain(&old, &old_token.token_id).expect("explain");
    assert_eq!(lineage.rows[0].payload, Payload::Purged);
    assert_eq!(lineage.target().states[0].calls.len(), 1, "the call stays explained, its hashes intact");
}

#[test]
fn a_parent_in_another_run_is_an_integrity_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = recorder_with_store(dir.path());
    let first = fixture(&mut recorder);
    let second = fixture(&mut recorder);
    let (children, _) = recorder.fork_token(&second.token, &["a".into(), "b".into()], 1).expect("fork");
    let child = &children[0];
    diesel::sql_query("PRAGMA foreign_keys = OFF").execute(recorder.connection().expect("connection")).expect("pragma");
    diesel::sql_query(format!(
        "UPDATE token_parents SET parent_token_id = '{}' WHERE token_id = '{}'",
        first.token.token_id, child.token_id
    ))
    .execute(recorder.connection().expect("connection"))
    .expect("corrupt");
    match recorder.explain(&second.run.run_id, &child.token_id) {
        Err(LandscapeError::Integrity(message)) => assert!(message.contains("belongs to run"), "{message}"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
    // The token of another run is not found in this one (never explained as if it were).
    assert!(matches!(recorder.explain(&second.run.run_id, &first.token.token_id), Err(LandscapeError::NotFound(_))));
}
