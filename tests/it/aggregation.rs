//! Aggregations end to end: every flush is one node state with its batch
//! linked and trigger fields filled; batches never stay draft or executing in
//! a finished run; error results fail the batch and its members.

use std::path::Path;

use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_in, landscape_at};

fn write(dir: &Path, rows: &[serde_json::Value], trigger: &str, plugin_options: &str, output_mode: &str) {
    let lines: Vec<String> = rows.iter().map(ToString::to_string).collect();
    std::fs::write(dir.join("input.jsonl"), lines.join("\n")).expect("input");
    let settings = format!(
        r"
source:
  plugin: json
  on_success: in
  options:
    path: input.jsonl
    schema: {{mode: flexible, fields: ['kind: str']}}
    on_validation_failure: discard
aggregations:
- name: totals
  plugin: {plugin_options}
  input: in
  on_success: out
  on_error: discard
  output_mode: {output_mode}
  trigger:
{trigger}
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {{path: out.jsonl, schema: {{mode: observed}}}}
landscape:
  url: sqlite:///audit.db
payload_store:
  base_path: payloads
"
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
}

fn run(dir: &Path) -> serde_json::Value {
    let output = elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    assert!(output.status.code().is_some(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("json summary: {}", String::from_utf8_lossy(&output.stderr)))
}

fn amounts(values: &[i64]) -> Vec<serde_json::Value> {
    values.iter().map(|v| serde_json::json!({"amount": v, "kind": "a"})).collect()
}

const STATS: &str = "batch_stats\n  options:\n    value_field: amount\n    schema: {mode: observed}";

#[test]
fn count_and_end_of_source_flushes_are_each_one_node_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), &amounts(&[1, 2, 3, 4, 5, 6, 7]), "    count: 3", STATS, "transform");
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    let triggers =
        query_pairs(&mut db, "SELECT trigger_type AS a, trigger_reason AS b FROM batches ORDER BY created_at, batch_id")
            .expect("batches");
    assert_eq!(
        triggers,
        vec![
            ("count".to_owned(), "count reached 3".to_owned()),
            ("count".to_owned(), "count reached 3".to_owned()),
            ("end_of_source".to_owned(), "end of source with 1 buffered rows".to_owned()),
        ]
    );
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE status <> 'completed'").expect("q"), 0);
    let flush_states = "SELECT count(*) AS n FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id WHERE n.node_type = 'aggregation'";
    assert_eq!(query_i64(&mut db, flush_states).expect("q"), 3);
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE s.status = 'completed' AND s.output_hash IS NOT NULL").expect("q"),
        3
    );
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'buffered'").expect("q"), 7);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'consumed_in_batch'").expect("q"), 7);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batch_members").expect("q"), 7);
    // Output tokens descend from every member of their batch.
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_parents").expect("q"), 7);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output");
    assert_eq!(out.lines().count(), 3);
    assert!(out.lines().next().is_some_and(|l| l.contains("\"sum\":6")), "{out}");
}

#[test]
fn a_condition_trigger_fires_on_batch_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), &amounts(&[1, 2, 3, 4]), "    condition: row['batch_count'] >= 2", STATS, "transform");
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE trigger_type = 'condition'").expect("q"), 2);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn an_error_result_fails_the_batch_and_its_members_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = amounts(&[1, 2]);
    rows.push(serde_json::json!({"amount": "not a number", "kind": "a"}));
    rows.extend(amounts(&[4, 5, 6]));
    write(dir.path(), &rows, "    count: 3", STATS, "transform");
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE status = 'failed'").expect("q"), 1);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE status = 'completed'").expect("q"), 1);
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed' AND batch_id IS NOT NULL")
            .expect("q"),
        3
    );
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE b.status = 'failed' AND s.status = 'failed' AND s.error_json LIKE '%type_mismatch%'").expect("q"),
        1
    );
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn passthrough_mode_keeps_the_member_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = "batch_replicate\n  options:\n    include_copy_index: false\n    schema: {mode: observed}";
    write(dir.path(), &amounts(&[1, 2, 3, 4, 5]), "    count: 2", plugin, "passthrough");
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["outcomes"]["completed"], 5);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM tokens").expect("q"), 5, "no new tokens in passthrough mode");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'consumed_in_batch'").expect("q"), 0);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

fn command_batch(command: &str, extra: &str) -> String {
    format!("command_batch\n  options:\n    command: {command}\n    poll_interval_seconds: 0.05\n    work_dir: jobs\n    schema: {{mode: observed}}{extra}")
}

#[test]
fn a_command_batch_runs_in_the_background_pending_then_completed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = command_batch("[sh, -c, 'sleep 0.3; cat']", "");
    write(dir.path(), &amounts(&[1, 2, 3, 4, 5, 6]), "    count: 2", &plugin, "passthrough");
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out").lines().count(), 6);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE status = 'completed'").expect("q"), 3);
    // Each flush is one state, completed after its job; the job is a process call of that state.
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE s.status = 'completed' AND s.output_hash IS NOT NULL AND s.duration_ms >= 300").expect("q"),
        3
    );
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM calls c JOIN batches b ON b.aggregation_state_id = c.state_id WHERE c.call_type = 'process' AND c.status = 'success' AND c.response_hash IS NOT NULL").expect("q"),
        3
    );
    // The engine went on while a job ran: the next batch began before the previous one ended.
    let times =
        query_pairs(&mut db, "SELECT created_at AS a, completed_at AS b FROM batches ORDER BY created_at, batch_id").expect("q");
    assert!(times[1].0 < times[0].1, "batch 2 began at {} after batch 1 ended at {}", times[1].0, times[0].1);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
    assert!(std::fs::read_dir(dir.path().join("jobs")).expect("jobs").next().is_none(), "job files are removed");
}

#[test]
fn a_failing_or_malformed_command_fails_its_batch_with_the_reason() {
    for (command, reason, detail) in [
        ("[sh, -c, 'echo boom >&2; exit 3']", "command_failed", "\"exit_status\":3"),
        ("[echo, not json]", "malformed_output", "\"line\":1"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &amounts(&[1, 2]), "    count: 2", &command_batch(command, ""), "transform");
        let summary = run(dir.path());
        assert_eq!(summary["status"], "completed", "{summary}");
        let mut db = landscape_at(dir.path(), "audit.db");
        assert_eq!(
            query_i64(&mut db, &format!("SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE b.status = 'failed' AND s.status = 'failed' AND s.error_json LIKE '%{reason}%' AND s.error_json LIKE '%{detail}%'")).expect("q"),
            1,
            "{command}"
        );
        assert_eq!(
            query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed' AND batch_id IS NOT NULL")
                .expect("q"),
            2
        );
        assert_eq!(
            query_i64(&mut db, "SELECT count(*) AS n FROM calls WHERE call_type = 'process' AND status = 'error'").expect("q"),
            1
        );
        assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
    }
}

#[test]
fn a_batch_pending_longer_than_allowed_fails_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        &amounts(&[1, 2]),
        "    count: 2\n  max_pending_seconds: 0.3",
        &command_batch("[sleep, '30']", ""),
        "transform",
    );
    let summary = run(dir.path());
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(
            &mut db,
            "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%still pending after%'"
        )
        .expect("q"),
        1
    );
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn a_command_batch_replays_from_its_recorded_output_without_running_the_program() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = command_batch("[sh, -c, 'cat']", "");
    write(dir.path(), &amounts(&[1, 2, 3, 4]), "    count: 2", &plugin, "passthrough");
    assert_eq!(run(dir.path())["status"], "completed");
    let live = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out");
    // The program now writes a marker file: a replay must not run it.
    let settings = std::fs::read_to_string(dir.path().join("settings.yaml")).expect("settings");
    std::fs::write(dir.path().join("settings.yaml"), settings.replace("'cat'", "'touch ran; cat'")).expect("settings");
    let output = elspeth_in(
        dir.path(),
        &["run", "--settings", "settings.yaml", "--execute", "--format", "json", "--replay-from", "latest"],
    );
    assert_eq!(output.status.code(), Some(5), "every batch misses: {}", String::from_utf8_lossy(&output.stdout));
    // The command changed, so its requests changed: every batch misses, and says so.
    let mut db = landscape_at(dir.path(), "audit.db");
    assert!(query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE error_json LIKE '%replay_miss%'").expect("q") >= 2);
    assert!(!dir.path().join("ran").exists());
    // The same command replays its recorded output.
    std::fs::write(dir.path().join("settings.yaml"), settings).expect("settings");
    let first =
        query_pairs(&mut db, "SELECT run_id AS a, '' AS b FROM runs ORDER BY started_at LIMIT 1").expect("runs")[0].0.clone();
    let output =
        elspeth_in(dir.path(), &["run", "--settings", "settings.yaml", "--execute", "--format", "json", "--replay-from", &first]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out"), live);
    let replayed =
        query_i64(&mut db, "SELECT count(*) AS n FROM calls WHERE call_type = 'process' AND source_call_id IS NOT NULL")
            .expect("q");
    assert_eq!(replayed, 2, "each batch of the matching replay points at its recording; a miss records no call");
}
