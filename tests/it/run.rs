//! `elspeth run` end to end: real files in, outputs compared with the
//! reference's, and the Landscape inspected with SQL after every run.

use std::fmt::Write as _;
use std::path::Path;

use landscape::connection::query_i64;
use tests::{audit_violations, landscape_at, latest_artifacts, run_example, semantic_rows, workspace};

/// Examples the engine runs today, with their Landscape path.
const EXAMPLES: &[&str] = &[
    "threshold_gate",
    "boolean_routing",
    "explicit_routing",
    "deep_routing",
    "error_routing",
    "json_explode",
    "schema_contracts_demo",
    "checkpoint_resume",
    "batch_aggregation",
    "deaggregation",
    "audit_export",
    "fork_coalesce",
];

fn landscape_path(example: &str) -> String {
    let settings = std::fs::read_to_string(workspace().join("examples").join(example).join("settings.yaml")).expect("settings");
    let url = settings.lines().find_map(|l| l.trim().strip_prefix("url: sqlite:///")).expect("a sqlite landscape url");
    url.trim().to_owned()
}

fn check_run(dir: &Path, example: &str) {
    let mut db = landscape_at(dir, &landscape_path(example));
    let violations = audit_violations(&mut db);
    assert!(violations.is_empty(), "{example}: {violations:?}");
    for (path, hash) in latest_artifacts(&mut db) {
        let bytes = std::fs::read(dir.join(&path)).unwrap_or_else(|e| panic!("{example}: artifact {path}: {e}"));
        assert_eq!(contracts::sha256_hex(&bytes), hash, "{example}: artifact hash of {path}");
    }
}

#[test]
fn examples_produce_the_reference_outputs_with_a_complete_audit_trail() {
    for example in EXAMPLES {
        let (dir, output) = run_example(example, &[]);
        assert!(
            output.status.success(),
            "{example}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let expected_dir = workspace().join("examples").join(example).join("expected");
        for entry in std::fs::read_dir(&expected_dir).expect("expected outputs") {
            let expected = entry.expect("entry").path();
            let produced = dir.path().join("examples").join(example).join("output").join(expected.file_name().expect("name"));
            assert_eq!(semantic_rows(&produced), semantic_rows(&expected), "{example}: {}", expected.display());
        }
        check_run(dir.path(), example);
    }
}

fn write_pipeline(dir: &Path, input: &[u8], gate: &str, transform_options: &str) -> String {
    std::fs::write(dir.join("input.csv"), input).expect("input");
    let settings = format!(
        r#"
source:
  plugin: csv
  on_success: raw
  options:
    path: input.csv
    schema:
      mode: fixed
      fields: ['id: int', 'name: str', 'score: float']
    on_validation_failure: quarantine
transforms:
- name: mapper
  plugin: field_mapper
  input: raw
  on_success: mapped
  on_error: discard
  options:
    schema: {{mode: observed}}
{transform_options}
gates:
- name: scored
  input: mapped
  condition: "{gate}"
  routes:
    'true': high
    'false': low
sinks:
  high:
    plugin: csv
    on_write_failure: discard
    options: {{path: out/high.csv, schema: {{mode: observed}}}}
  low:
    plugin: json
    on_write_failure: discard
    options: {{path: out/low.jsonl, schema: {{mode: observed}}}}
  quarantine:
    plugin: json
    on_write_failure: discard
    options: {{path: out/quarantine.jsonl, schema: {{mode: observed}}}}
landscape:
  url: sqlite:///audit.db
payload_store:
  base_path: payloads
"#
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
    "settings.yaml".to_owned()
}

#[test]
fn malformed_csv_records_are_quarantined_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = b"id,name,score\n1,ok,0.5\n2,wrong type,abc\n3,too,many,columns\n4,nan,NaN\n".to_vec();
    input.extend_from_slice(b"5,bad utf8 \xff\xfe,0.1\n6,fine,0.9\n");
    let settings = write_pipeline(dir.path(), &input, "row['score'] > 0.7", "");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json summary");
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["rows_read"], 6);
    assert_eq!(summary["outcomes"]["quarantined"], 4);
    assert_eq!(summary["sinks"]["high"]["routed"], 1);
    assert_eq!(summary["sinks"]["low"]["routed"], 1);
    // The reference's counters, by its names.
    let counters = &summary["counters"];
    assert_eq!(counters["rows_processed"], 6);
    assert_eq!(counters["rows_quarantined"], 4);
    assert_eq!(counters["rows_routed"], 2);
    assert_eq!(counters["rows_succeeded"], 0);
    assert_eq!(counters["routed_destinations"], serde_json::json!({"high": 1, "low": 1}));
    let quarantined = std::fs::read_to_string(dir.path().join("out/quarantine.jsonl")).expect("quarantine sink");
    assert_eq!(quarantined.lines().count(), 4);
    assert!(quarantined.contains("__raw_bytes_hex__") && quarantined.contains("__raw_line__"));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM validation_errors").expect("query"), 4);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM validation_errors WHERE row_id IS NULL").expect("query"), 0);
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM routing_events e JOIN edges g ON g.edge_id = e.edge_id WHERE g.label = '__quarantine__' AND e.mode = 'divert'").expect("query"),
        4
    );
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn a_gate_error_on_a_rows_data_fails_that_token_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = write_pipeline(dir.path(), b"id,name,score\n1,a,0.5\n2,b,0.9\n", "row['name'] > 1", "");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute", "--format", "json"]);
    // The run goes on and completes; as every row failed, it exits 5.
    assert_eq!(output.status.code(), Some(5), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json summary");
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["all_rows_failed"], true);
    assert_eq!(summary["outcomes"]["failed"], 2);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%TypeError%'")
            .expect("query"),
        2
    );
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn a_plugin_breaking_its_contract_fails_the_run_after_recording_the_failed_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = "    mapping: {'name.first': first}\n";
    let settings = write_pipeline(dir.path(), b"id,name,score\n1,a,0.5\n", "row['score'] > 0.7", options);
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'failed'").expect("query"), 1);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE status = 'failed'").expect("query"), 1);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn a_failing_sink_records_no_delivery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = write_pipeline(dir.path(), b"id,name,score\n1,a,0.9\n2,b,0.8\n", "row['score'] > 0.7", "");
    std::fs::create_dir_all(dir.path().join("out/high.csv")).expect("a directory where the file should be");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(output.status.code(), Some(1));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome IN ('completed', 'routed')").expect("query"),
        0
    );
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed'").expect("query"), 2);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn an_interrupted_run_stops_cleanly_with_status_interrupted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = String::from("id,name,score\n");
    for i in 0..50 {
        let _ = writeln!(input, "{i},n{i},0.{}", i % 10);
    }
    let settings = write_pipeline(dir.path(), input.as_bytes(), "row['score'] > 0.7", "");
    let output = std::process::Command::new(tests::elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_TEST_INTERRUPT_AFTER_ROWS", "10")
        .args(["run", "--settings", &settings, "--execute", "--chunk-size", "4"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stdout));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'interrupted'").expect("query"), 1);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM rows").expect("query"), 10);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE status = 'open'").expect("query"), 0);
}

#[test]
fn without_execute_run_is_a_dry_run() {
    let dir = tests::example_dir("threshold_gate");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", "examples/threshold_gate/settings.yaml"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("dry run"));
    assert!(!dir.path().join("examples/threshold_gate/output").exists());
}

#[test]
fn sink_names_and_route_labels_keep_their_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("input.csv"), "id,amount\n1,5\n2,500\n").expect("input");
    std::fs::write(
        dir.path().join("settings.yaml"),
        "source:\n  plugin: csv\n  on_success: gate_in\n  options: {path: input.csv, schema: {mode: fixed, fields: ['id: int', 'amount: int']}, on_validation_failure: discard}\n\
         gates:\n- name: Review\n  input: gate_in\n  condition: \"'Big' if row['amount'] > 100 else 'Small'\"\n  routes: {Big: Approved, Small: Rejected}\n\
         sinks:\n  Approved:\n    plugin: csv\n    on_write_failure: discard\n    options: {path: out/approved.csv, schema: {mode: observed}}\n\
         \x20 Rejected:\n    plugin: csv\n    on_write_failure: discard\n    options: {path: out/rejected.csv, schema: {mode: observed}}\n\
         landscape: {url: 'sqlite:///audit.db'}\n",
    )
    .expect("settings");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["sinks"]["Approved"]["routed"], 1);
    assert_eq!(summary["sinks"]["Rejected"]["routed"], 1);
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE sink_name = 'Approved'").expect("query"), 1);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM edges WHERE label IN ('Big', 'Small')").expect("query"), 2);
}

/// A JSON source pipeline over `input` (`format` json or jsonl) into one
/// sink, quarantine to another; returns the run's JSON summary.
fn json_source_run(dir: &Path, file: &str, input: &str, format: &str) -> serde_json::Value {
    std::fs::write(dir.join(file), input).expect("input");
    std::fs::write(
        dir.join("settings.yaml"),
        format!(
            "source:\n  plugin: json\n  on_success: out\n  options: {{path: {file}, format: {format}, schema: {{mode: observed}}, on_validation_failure: bad}}\n\
             sinks:\n  out:\n    plugin: json\n    on_write_failure: discard\n    options: {{path: out/rows.jsonl, format: jsonl, schema: {{mode: observed}}}}\n\
             \x20 bad:\n    plugin: json\n    on_write_failure: discard\n    options: {{path: out/bad.jsonl, format: jsonl, schema: {{mode: observed}}}}\n\
             landscape: {{url: 'sqlite:///audit.db'}}\n"
        ),
    )
    .expect("settings");
    let output = tests::elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn duplicate_json_keys_are_never_silently_last_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = json_source_run(dir.path(), "in.jsonl", "{\"id\": 1}\n{\"id\": 2, \"id\": 3}\n{\"id\": 4}\n", "jsonl");
    assert_eq!(summary["rows_read"], 3);
    assert_eq!(summary["sinks"]["out"]["completed"], 2);
    assert_eq!(summary["sinks"]["bad"]["quarantined"], 1);
    let bad = std::fs::read_to_string(dir.path().join("out/bad.jsonl")).expect("quarantine");
    assert!(bad.contains("\"__line_number__\":2"), "{bad}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM validation_errors WHERE error LIKE '%duplicate key \"id\"%'").expect("q"),
        1
    );
    // In a whole array document the duplicate makes the document unreadable:
    // one validation error, no row invented.
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = json_source_run(dir.path(), "in.json", "[{\"id\": 1}, {\"id\": 2, \"id\": 3}]", "json");
    assert_eq!(summary["rows_read"], 1);
    assert_eq!(summary["outcomes"]["quarantined"], 1);
    assert!(summary["outcomes"]["completed"].is_null(), "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM validation_errors WHERE error LIKE '%not valid JSON: duplicate key%'")
            .expect("q"),
        1
    );
}

#[test]
fn a_row_that_breaks_the_sinks_schema_writes_nothing_of_its_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The source declares only `id` and passes `amount` on as text; the sink
    // promises an int column.
    std::fs::write(dir.path().join("input.csv"), "id,amount\n1,5\n2,lots\n3,7\n").expect("input");
    std::fs::write(
        dir.path().join("settings.yaml"),
        "source:\n  plugin: csv\n  on_success: out\n  options: {path: input.csv, schema: {mode: flexible, fields: ['id: int']}, on_validation_failure: discard}\n\
         sinks:\n  out:\n    plugin: csv\n    on_write_failure: discard\n    options: {path: out/rows.csv, schema: {mode: fixed, fields: ['id: int', 'amount: int']}}\n\
         landscape: {url: 'sqlite:///audit.db'}\n",
    )
    .expect("settings");
    let output = tests::elspeth_in(dir.path(), &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(
        summary["error"].as_str().is_some_and(|e| e.contains("\"amount\" is a str") && e.contains("declares required int")),
        "{summary}"
    );
    assert!(!dir.path().join("out/rows.csv").exists(), "nothing of the batch was written");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'completed'").expect("q"), 0);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}
