//! `elspeth explain`, `runs`, `purge` and `plugins list` end to end: explain
//! output snapshots for every kind of pipeline, lineage that always reaches
//! the source rows, integrity errors on broken lineage, read commands that
//! never create a database, retention that keeps hashes.

use std::fmt::Write as _;
use std::path::Path;

use landscape::connection::{execute_raw, query_i64, query_pairs};
use tests::{elspeth_in, landscape_at, run_example};

/// Replaces what differs between runs (ids, times, durations) by markers.
fn redact(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"\b[0-9a-f]{32}\b", "[id]"),
        (r#""\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z""#, "\"[time]\""),
        (r#""(duration_ms|latency_ms|arrival_offset_ms|wait_duration_ms)":[0-9.e+-]+"#, "\"$1\":\"[ms]\""),
        (r"\b(in|waiting) \d+(\.\d+)? (ms|s)\b", "$1 [duration]"),
    ];
    let mut redacted = text.to_owned();
    for (pattern, replacement) in rules {
        redacted = regex::Regex::new(pattern).expect("pattern").replace_all(&redacted, *replacement).into_owned();
    }
    redacted
}

fn explain(dir: &Path, settings: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["explain", "--settings", settings, "--run", "latest"];
    all.extend_from_slice(args);
    elspeth_in(dir, &all)
}

fn stdout_of(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// The rows worth showing: the first two, and every row that ended other
/// than delivered (quarantined, failed, diverted).
fn interesting_rows(db: &mut landscape::DbConnection) -> Vec<i64> {
    let mut rows: Vec<i64> = query_pairs(
        db,
        "SELECT DISTINCT CAST(r.row_index AS TEXT) AS a, '' AS b FROM rows r JOIN tokens t ON t.row_id = r.row_id \
         JOIN token_outcomes o ON o.token_id = t.token_id WHERE o.is_terminal = 1 \
         AND o.outcome IN ('quarantined', 'failed', 'diverted') ORDER BY r.row_index",
    )
    .expect("rows")
    .into_iter()
    .filter_map(|(a, _)| a.parse().ok())
    .collect();
    for first in [0, 1] {
        if !rows.contains(&first)
            && query_i64(db, &format!("SELECT count(*) AS n FROM rows WHERE row_index = {first}")).expect("q") > 0
        {
            rows.push(first);
        }
    }
    rows.sort_unstable();
    rows.truncate(5);
    rows
}

fn explain_example(example: &str) -> String {
    let (dir, output) = run_example(example, &[]);
    assert!(output.status.code() == Some(0), "{example}: {}", String::from_utf8_lossy(&output.stderr));
    let settings = format!("examples/{example}/settings.yaml");
    let text = std::fs::read_to_string(dir.path().join(&settings)).expect("settings");
    let db = text.lines().find_map(|l| l.trim().strip_prefix("url: sqlite:///")).expect("sqlite url").trim().to_owned();
    let mut conn = landscape_at(dir.path(), &db);
    let mut report = String::new();
    for row in interesting_rows(&mut conn) {
        let _ = writeln!(report, "$ elspeth explain --row {row}");
        report.push_str(&stdout_of(&explain(dir.path(), &settings, &["--row", &row.to_string()])));
        report.push('\n');
    }
    redact(&report)
}

#[test]
fn explanations_of_the_examples_match_their_snapshots() {
    for example in [
        "threshold_gate",
        "boolean_routing",
        "deep_routing",
        "error_routing",
        "explicit_routing",
        "batch_aggregation",
        "deaggregation",
        "fork_coalesce",
        "json_explode",
        "schema_contracts_demo",
    ] {
        insta::assert_snapshot!(format!("explain_{example}"), explain_example(example));
    }
}

/// A small pipeline: csv → gate (may fail on a row) → aggregation (mode
/// given) → sink; quarantine sink for bad records.
fn failing_pipeline(dir: &Path, output_mode: &str) {
    std::fs::write(dir.join("input.csv"), "id,score\n1,0.5\n2,oops\n3,0.9\n4,0\n").expect("input");
    let settings = format!(
        r#"
source:
  plugin: csv
  on_success: raw
  options:
    path: input.csv
    schema: {{mode: flexible, fields: ['id: int', 'score: float']}}
    on_validation_failure: quarantine
gates:
- name: ratio
  input: raw
  condition: "1 / row['score'] > 1"
  routes:
    'true': agg_in
    'false': agg_in
aggregations:
- name: pairs
  plugin: batch_replicate
  input: agg_in
  on_success: out
  on_error: discard
  output_mode: {output_mode}
  trigger:
    count: 2
  options:
    default_copies: 1
    schema: {{mode: observed}}
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {{path: out.jsonl, schema: {{mode: observed}}}}
  quarantine:
    plugin: json
    on_write_failure: discard
    options: {{path: quarantine.jsonl, schema: {{mode: observed}}}}
landscape:
  url: sqlite:///audit.db
payload_store:
  base_path: payloads
"#
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
    let output = elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute"]);
    assert!(output.status.code() == Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn failed_tokens_and_both_aggregation_modes_are_explained() {
    let mut report = String::new();
    for mode in ["passthrough", "transform"] {
        let dir = tempfile::tempdir().expect("temp dir");
        failing_pipeline(dir.path(), mode);
        for row in ["0", "1", "3"] {
            let _ = writeln!(report, "$ elspeth explain --row {row}   # output_mode {mode}");
            report.push_str(&stdout_of(&explain(dir.path(), "settings.yaml", &["--row", row])));
            report.push('\n');
        }
    }
    insta::assert_snapshot!("explain_failed_and_aggregated", redact(&report));
}

#[test]
fn json_explain_carries_routing_events_and_absent_values_stay_absent() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let settings = "examples/threshold_gate/settings.yaml";
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&explain(dir.path(), settings, &["--row", "0", "--format", "json"]))).expect("json");
    let token = &json["outputs"][0]["tokens"][0];
    let gate = token["node_states"].as_array().expect("states").iter().find(|s| s["node_type"] == "gate").expect("gate state");
    assert_eq!(gate["routing_events"].as_array().map(Vec::len), Some(1), "{gate}");
    assert!(gate["routing_events"][0]["label"].is_string());
    assert_eq!(gate["calls"], serde_json::json!([]));
    let source = &token["node_states"][0];
    assert!(source["error_json"].is_null(), "absent is null, never invented: {source}");
    assert_eq!(json["outputs"][0]["source_rows"][0]["payload"]["status"], "available");
    // `--json` is shorthand for `--format json`.
    let short: serde_json::Value =
        serde_json::from_str(&stdout_of(&explain(dir.path(), settings, &["--row", "0", "--json"]))).expect("json");
    assert_eq!(short, json);
}

const FORK_TO_SINKS: &str = r#"
source:
  plugin: csv
  on_success: raw
  options:
    path: input.csv
    schema: {mode: observed}
    on_validation_failure: discard
gates:
- name: split
  input: raw
  condition: "True"
  routes:
    'true': fork
    'false': left
  fork_to: [left, right]
sinks:
  left:
    plugin: json
    on_write_failure: discard
    options: {path: left.jsonl, schema: {mode: observed}}
  right:
    plugin: json
    on_write_failure: discard
    options: {path: right.jsonl, schema: {mode: observed}}
landscape:
  url: sqlite:///audit.db
payload_store:
  base_path: payloads
"#;

#[test]
fn a_forked_row_shows_every_branch_and_sink_selects_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("input.csv"), "id,v\n1,x\n2,y\n").expect("input");
    std::fs::write(dir.path().join("settings.yaml"), FORK_TO_SINKS).expect("settings");
    let run = elspeth_in(dir.path(), &["run", "--settings", "settings.yaml", "--execute"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outcome_sink = |output: &serde_json::Value| {
        output["tokens"][0]["outcomes"].as_array().and_then(|o| o.last()).map(|o| o["sink_name"].clone())
    };
    let all: serde_json::Value =
        serde_json::from_str(&stdout_of(&explain(dir.path(), "settings.yaml", &["--row", "1", "--json"]))).expect("json");
    let sinks: Vec<serde_json::Value> = all["outputs"].as_array().expect("outputs").iter().filter_map(outcome_sink).collect();
    assert_eq!(sinks, [serde_json::json!("left"), serde_json::json!("right")], "one output per branch, never an arbitrary one");
    for output in all["outputs"].as_array().expect("outputs") {
        let parent = &output["tokens"][1];
        assert_eq!(parent["outcomes"][0]["outcome"], "forked", "each branch leads back to the forked token");
        assert_eq!(output["tokens"][0]["siblings"].as_array().map(Vec::len), Some(1));
    }
    let chosen: serde_json::Value =
        serde_json::from_str(&stdout_of(&explain(dir.path(), "settings.yaml", &["--row", "1", "--sink", "right", "--json"])))
            .expect("json");
    assert_eq!(chosen["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(outcome_sink(&chosen["outputs"][0]), Some(serde_json::json!("right")));
    let wrong = explain(dir.path(), "settings.yaml", &["--row", "1", "--sink", "nowhere"]);
    assert_eq!(wrong.status.code(), Some(1));
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("at sink nowhere") && message.contains("left, right"), "{message}");
    let text = stdout_of(&explain(dir.path(), "settings.yaml", &["--row", "1"]));
    insta::assert_snapshot!("explain_fork_to_sinks", redact(&text));
}

#[test]
fn broken_lineage_is_an_integrity_error_not_a_partial_answer() {
    let (dir, output) = run_example("fork_coalesce", &[]);
    assert!(output.status.success());
    let settings = "examples/fork_coalesce/settings.yaml";
    let merged = stdout_of(&explain(dir.path(), settings, &["--row", "0", "--json"]));
    let merged: serde_json::Value = serde_json::from_str(&merged).expect("json");
    let token = merged["outputs"][0]["token_id"].as_str().expect("token").to_owned();
    let mut db = landscape_at(dir.path(), "examples/fork_coalesce/runs/audit.db");
    execute_raw(&mut db, "PRAGMA foreign_keys = OFF").expect("pragma");
    execute_raw(&mut db, &format!("DELETE FROM token_parents WHERE token_id = '{token}'")).expect("delete");
    drop(db);
    let broken = explain(dir.path(), settings, &["--token", &token]);
    assert_eq!(broken.status.code(), Some(1));
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains("audit integrity error") && message.contains("no parents"), "{message}");
    assert!(broken.stdout.is_empty(), "no partial lineage is printed");
}

#[test]
fn read_commands_never_create_a_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["explain", "--database", "sqlite:///typo.db", "--run", "latest", "--row", "0"],
        vec!["runs", "--database", "sqlite:///typo.db"],
        vec!["purge", "--database", "sqlite:///typo.db", "--retention-days", "1"],
        vec!["export", "--database", "sqlite:///typo.db", "--run", "latest", "--output", "x.jsonl"],
    ] {
        let output = elspeth_in(dir.path(), &args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("no such database file"), "{args:?}");
        assert!(!dir.path().join("typo.db").exists(), "{args:?} created the database");
    }
    let missing = elspeth_in(dir.path(), &["runs", "--settings", "missing.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.yaml"));
}

#[test]
fn a_running_run_whose_process_is_gone_is_listed_as_interrupted() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = child.id();
    child.wait().expect("wait");
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_owned() } else { host };
    let mut db = landscape_at(dir.path(), "examples/threshold_gate/runs/audit.db");
    execute_raw(
        &mut db,
        &format!("UPDATE runs SET status = 'running', completed_at = NULL, owner_pid = {dead_pid}, owner_host = '{host}'"),
    )
    .expect("update");
    drop(db);
    let listed =
        stdout_of(&elspeth_in(dir.path(), &["runs", "--settings", "examples/threshold_gate/settings.yaml", "--format", "json"]));
    let runs: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    assert_eq!(runs[0]["recorded_status"], "running");
    assert!(runs[0]["note"].as_str().is_some_and(|n| n.contains("is gone")), "{runs}");
    assert_eq!(runs[0]["rows"], 8);
    assert_eq!(runs[0]["outcomes"]["routed"], 8);
}

/// Runs the threshold_gate example once per status with distinct input.
fn runs_with_statuses(dir: &Path, statuses: &[&str]) -> Vec<String> {
    let input = dir.join("examples/threshold_gate/input.csv");
    let original = std::fs::read_to_string(&input).expect("input");
    let mut ids = Vec::new();
    for (k, status) in statuses.iter().enumerate() {
        std::fs::write(&input, original.replace("Alice", &format!("Alice{k}"))).expect("input");
        let output =
            elspeth_in(dir, &["run", "--settings", "examples/threshold_gate/settings.yaml", "--execute", "--format", "json"]);
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary");
        let id = summary["run_id"].as_str().expect("run id").to_owned();
        let mut db = landscape_at(dir, "examples/threshold_gate/runs/audit.db");
        let completed = if *status == "running" { "NULL".to_owned() } else { "'2020-01-01 00:00:00'".to_owned() };
        execute_raw(&mut db, &format!("UPDATE runs SET status = '{status}', completed_at = {completed} WHERE run_id = '{id}'"))
            .expect("age the run");
        ids.push(id);
    }
    ids
}

#[test]
fn purge_deletes_payloads_of_old_completed_and_failed_runs_only_and_keeps_hashes() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let ids = runs_with_statuses(dir.path(), &["completed", "failed", "interrupted", "running"]);
    let settings = "examples/threshold_gate/settings.yaml";
    let plan = stdout_of(&elspeth_in(
        dir.path(),
        &["purge", "--settings", settings, "--retention-days", "30", "--dry-run", "--format", "json"],
    ));
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("json");
    assert_eq!(plan["expired_runs"], serde_json::json!([ids[0], ids[1]]), "{plan}");
    assert!(plan.get("deleted").is_none(), "a dry run deletes nothing");
    // Per run only the row with the changed name and the output of the sink
    // write it went into (the artifact's hash) differ; everything else is
    // shared with the active runs and kept.
    assert_eq!(plan["payloads"], 4, "{plan}");
    let explain_row = |run: &str| -> serde_json::Value {
        let out = elspeth_in(dir.path(), &["explain", "--settings", settings, "--run", run, "--row", "0", "--json"]);
        serde_json::from_str(&stdout_of(&out)).expect("json")
    };
    assert_eq!(explain_row(&ids[0])["outputs"][0]["source_rows"][0]["payload"]["status"], "available");
    let done =
        stdout_of(&elspeth_in(dir.path(), &["purge", "--settings", settings, "--retention-days", "30", "--format", "json"]));
    let done: serde_json::Value = serde_json::from_str(&done).expect("json");
    assert_eq!(done["deleted"], 4, "{done}");
    for (id, expected) in ids.iter().zip(["purged", "purged", "available", "available"]) {
        let lineage = explain_row(id);
        let row = &lineage["outputs"][0]["source_rows"][0];
        assert_eq!(row["payload"]["status"], expected, "run {id}");
        assert_eq!(row["row"]["source_data_hash"].as_str().map(str::len), Some(64), "the hash survives");
    }
    let text = stdout_of(&explain(dir.path(), settings, &["--row", "0"]));
    assert!(!text.contains("purged"), "the latest (running) run keeps its payloads");
    let again = stdout_of(&elspeth_in(dir.path(), &["purge", "--settings", settings, "--retention-days", "30"]));
    assert!(again.contains("No payloads older than 30 days"), "{again}");
}

#[test]
fn plugins_list_names_every_plugin_with_determinism() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = stdout_of(&elspeth_in(dir.path(), &["plugins", "list"]));
    for heading in ["SOURCES", "TRANSFORMS", "BATCH TRANSFORMS", "SINKS"] {
        assert!(text.contains(heading), "{heading}");
    }
    insta::assert_snapshot!("plugins_list", text);
    let sinks: serde_json::Value =
        serde_json::from_str(&stdout_of(&elspeth_in(dir.path(), &["plugins", "list", "--type", "sink", "--format", "json"])))
            .expect("json");
    let names: Vec<&str> = sinks.as_array().expect("array").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["csv", "json", "database"]);
    assert!(sinks.as_array().expect("array").iter().all(|p| p["determinism"] == "io_write"));
}

#[test]
fn node_ids_are_shown_only_on_request() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let settings = "examples/threshold_gate/settings.yaml";
    let plain = stdout_of(&explain(dir.path(), settings, &["--row", "1"]));
    assert!(
        plain.contains("gate amount_threshold — completed") && plain.contains("decided: row['amount'] > 1000 is true"),
        "{plain}"
    );
    assert!(!plain.contains("config_gate_amount_threshold_"), "no node ids by default: {plain}");
    let with_ids = stdout_of(&explain(dir.path(), settings, &["--row", "1", "--ids"]));
    assert!(with_ids.contains("node config_gate_amount_threshold_"), "{with_ids}");
}

#[test]
fn a_malformed_row_is_explained_with_its_line_in_the_input() {
    let dir = tests::example_dir("threshold_gate");
    let input = dir.path().join("examples/threshold_gate/input.csv");
    let text = std::fs::read_to_string(&input).expect("input");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = "3,Carol,250,retail,an extra column".to_owned();
    std::fs::write(&input, lines.join("\n") + "\n").expect("input");
    let settings = "examples/threshold_gate/settings.yaml";
    let run = elspeth_in(dir.path(), &["run", "--settings", settings, "--execute"]);
    assert!(run.status.success(), "{}", tests::output_text(&run));
    let shown = stdout_of(&explain(dir.path(), settings, &["--row", "2"]));
    assert!(shown.contains("QUARANTINED") && shown.contains("source row 2, line 4 of the input"), "{shown}");
}
