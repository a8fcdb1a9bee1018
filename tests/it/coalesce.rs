//! Fork and coalesce end to end: each policy's outcomes, merge metadata in
//! both the node states and the outcomes, lineage, and the merged row's hash
//! equal to what the sink received.

use std::path::Path;

use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_in, landscape_at, run_example};

fn pipeline(dir: &Path, coalesce: &str) -> serde_json::Value {
    std::fs::write(dir.join("input.jsonl"), "{\"id\": 1, \"text\": \"good\"}\n{\"id\": 2, \"text\": \"bad\"}\n").expect("input");
    let settings = format!(
        r"
source:
  plugin: json
  on_success: in
  options: {{path: input.jsonl, schema: {{mode: observed}}, on_validation_failure: discard}}
gates:
- name: split
  input: in
  condition: 'True'
  routes: {{'true': fork, 'false': out}}
  fork_to: [a, b]
transforms:
- name: keep
  plugin: passthrough
  input: a
  on_success: a_done
  on_error: discard
  options: {{schema: {{mode: observed}}}}
- name: screen
  plugin: keyword_filter
  input: b
  on_success: b_done
  on_error: discard
  options: {{fields: text, blocked_patterns: [bad], schema: {{mode: observed}}}}
coalesce:
- name: join
  branches: {{a: a_done, b: b_done}}
  on_success: out
{coalesce}
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {{path: out.jsonl, schema: {{mode: observed}}}}
landscape: {{url: 'sqlite:///audit.db'}}
payload_store: {{base_path: payloads}}
"
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
    let output = elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    assert!(output.status.success(), "{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("summary")
}

fn outcome_count(summary: &serde_json::Value, outcome: &str) -> u64 {
    summary["outcomes"][outcome].as_u64().unwrap_or(0)
}

fn check(dir: &Path, database: &str) {
    let mut db = landscape_at(dir, database);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
    // Every merged token has one parent per consumed branch token.
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM tokens t WHERE t.join_group_id IS NOT NULL AND (SELECT count(*) FROM token_parents p WHERE p.token_id = t.token_id) <> (SELECT count(*) FROM token_outcomes o WHERE o.join_group_id = t.join_group_id)").expect("q"),
        0
    );
}

#[test]
fn require_all_fails_the_arrived_branch_when_another_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = pipeline(dir.path(), "  policy: require_all");
    assert_eq!(outcome_count(&summary, "coalesced"), 2);
    assert_eq!(outcome_count(&summary, "failed"), 1);
    assert_eq!(outcome_count(&summary, "quarantined"), 1);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out").lines().count(), 1);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(
            &mut db,
            "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%incomplete_branches%'"
        )
        .expect("q"),
        1
    );
    // The lost branch was reported when it was lost, not found missing at
    // the end of the source.
    assert_eq!(
        query_i64(
            &mut db,
            "SELECT count(*) AS n FROM node_states WHERE status = 'failed' \
             AND error_json LIKE '%\"branches_lost\":{\"b\":\"discarded after an error\"}%' AND error_json NOT LIKE '%end of source%'"
        )
        .expect("q"),
        1
    );
    check(dir.path(), "audit.db");
}

#[test]
fn best_effort_merges_as_soon_as_the_other_branch_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = pipeline(dir.path(), "  policy: best_effort\n  timeout_seconds: 60");
    assert_eq!(outcome_count(&summary, "coalesced"), 3);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out").lines().count(), 2);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'coalesced' AND context_json LIKE '%\"branches_lost\":{\"b\":\"discarded after an error\"}%'").expect("q"), 1);
    check(dir.path(), "audit.db");
}

#[test]
fn first_merges_on_first_arrival_and_fails_late_arrivals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = pipeline(dir.path(), "  policy: first");
    assert_eq!(outcome_count(&summary, "coalesced"), 2);
    assert_eq!(outcome_count(&summary, "failed"), 1, "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE error_json LIKE '%late_arrival%'").expect("q"), 1);
    check(dir.path(), "audit.db");
}

#[test]
fn select_without_its_branch_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = pipeline(dir.path(), "  policy: best_effort\n  timeout_seconds: 60\n  merge: select\n  select_branch: b");
    assert_eq!(outcome_count(&summary, "coalesced"), 2);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE error_json LIKE '%select_branch_missing%'").expect("q"),
        1
    );
    check(dir.path(), "audit.db");
}

#[test]
fn merge_metadata_is_recorded_and_the_merged_hash_is_what_the_sink_received() {
    let (dir, output) = run_example("fork_coalesce", &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut db = landscape_at(dir.path(), "examples/fork_coalesce/runs/audit.db");
    let coalesce_states =
        "FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id WHERE n.node_type = 'coalesce'";
    assert_eq!(query_i64(&mut db, &format!("SELECT count(*) AS n {coalesce_states}")).expect("q"), 10);
    assert_eq!(
        query_i64(&mut db, &format!("SELECT count(*) AS n {coalesce_states} AND s.context_after_json LIKE '%\"policy\":\"require_all\"%' AND s.context_after_json LIKE '%arrival_order%'")).expect("q"),
        10
    );
    assert_eq!(
        query_i64(
            &mut db,
            "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'coalesced' AND context_json LIKE '%merge_strategy%'"
        )
        .expect("q"),
        10
    );
    // The merged row's hash (coalesce output) is the input hash of the merged token's sink visit.
    let pairs = query_pairs(
        &mut db,
        "SELECT DISTINCT s.output_hash AS a, (SELECT k.input_hash FROM node_states k JOIN nodes kn ON kn.node_id = k.node_id AND kn.run_id = k.run_id \
           JOIN tokens t ON t.token_id = k.token_id JOIN token_outcomes o ON o.join_group_id = t.join_group_id \
           WHERE kn.node_type = 'sink' AND o.token_id = s.token_id) AS b \
         FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id WHERE n.node_type = 'coalesce'",
    )
    .expect("q");
    assert_eq!(pairs.len(), 5);
    assert!(pairs.iter().all(|(merged, received)| merged == received), "{pairs:?}");
    check(dir.path(), "examples/fork_coalesce/runs/audit.db");
}

/// Found by the random-pipeline proptest: an aggregation in transform mode
/// makes several tokens of one row; each is forked and each fork must join
/// on its own, not on the row.
#[test]
fn several_forks_of_one_row_join_separately() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("input.jsonl"), "{\"id\": 1}\n{\"id\": 2}\n").expect("input");
    let settings = r"
source:
  plugin: json
  on_success: in
  options: {path: input.jsonl, schema: {mode: observed}, on_validation_failure: discard}
aggregations:
- name: batch
  plugin: batch_replicate
  input: in
  on_success: batched
  on_error: discard
  output_mode: transform
  trigger: {count: 2}
  options: {schema: {mode: observed}}
gates:
- name: split
  input: batched
  condition: 'True'
  routes: {'true': fork, 'false': out}
  fork_to: [a, b]
coalesce:
- name: join
  branches: {a: a, b: b}
  on_success: out
  policy: require_all
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {path: out.jsonl, schema: {mode: observed}}
landscape: {url: 'sqlite:///audit.db'}
payload_store: {base_path: payloads}
";
    std::fs::write(dir.path().join("settings.yaml"), settings).expect("settings");
    let output = elspeth_in(dir.path(), &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(outcome_count(&summary, "coalesced"), 4, "{summary}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out").lines().count(), 2);
    check(dir.path(), "audit.db");
}
