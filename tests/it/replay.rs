//! Replay and verify end to end, through the binary, against
//! `elspeth-chaosllm`: a replay with the server gone gives byte-identical
//! outputs and points every call at its recording; a changed request or a
//! purged recording fails only its row; verify compares live answers with
//! the recordings and reports, records and explains every difference.

use std::path::Path;
use std::process::Output;

use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, chaos_server, elspeth_binary, landscape_at, output_text, read_out};

/// The llm tests' pipeline, without an API key, with fast AIMD steps and
/// four attempts.
fn settings(base_url: &str) -> String {
    crate::llm::pipeline(base_url, 4, "")
        .replace(&format!("    api_key: {}\n", crate::llm::SECRET), "")
        .replace("pool_size: 4", "pool_size: 4\n    recovery_step_ms: 5\n    max_dispatch_delay_ms: 10")
        .replace("max_attempts: 3", "max_attempts: 4")
}

fn prepare(dir: &Path, base_url: &str, rows: usize) {
    let input: String = std::iter::once("id,text\n".to_owned()).chain((0..rows).map(|i| format!("{i},message {i}\n"))).collect();
    std::fs::write(dir.join("input.csv"), input).expect("input");
    std::fs::write(dir.join("settings.yaml"), settings(base_url)).expect("settings");
}

fn elspeth(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(elspeth_binary()).current_dir(dir).args(args).output().expect("elspeth runs")
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--settings", "settings.yaml", "--execute"];
    args.extend_from_slice(extra);
    elspeth(dir, &args)
}

fn latest_run(dir: &Path) -> String {
    let mut db = landscape_at(dir, "audit.db");
    query_pairs(&mut db, "SELECT run_id AS a, '' AS b FROM runs ORDER BY started_at DESC LIMIT 1").expect("runs")[0].0.clone()
}

/// A live run with retried 500s and refused 429s, recorded.
fn recorded_run(dir: &Path, rows: usize) -> (String, String) {
    let server = chaos_server(serde_json::json!({
        "error_injection": {"rate_limit_pct": 15, "internal_error_pct": 10, "retry_after_sec": [0, 0]}, "seed": 21,
    }));
    prepare(dir, &server.base_url(), rows);
    let output = run(dir, &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    (latest_run(dir), read_out(dir, "results.jsonl"))
}

#[test]
fn a_replay_without_the_server_gives_byte_identical_outputs_from_the_recordings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, live) = recorded_run(dir.path(), 24);
    assert_eq!(live.lines().count(), 24);
    // The server is gone: any request would fail.
    let output = run(dir.path(), &["--replay-from", "latest", "--format", "json"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(read_out(dir.path(), "results.jsonl"), live, "byte-identical outputs");
    let replay = latest_run(dir.path());
    let mut db = landscape_at(dir.path(), "audit.db");
    assert!(audit_violations(&mut db).is_empty());
    let count = |db: &mut landscape::DbConnection, run: &str, extra: &str| {
        query_i64(
            db,
            &format!(
                "SELECT count(*) AS n FROM calls c JOIN node_states s ON s.state_id = c.state_id WHERE s.run_id = '{run}' {extra}"
            ),
        )
        .expect("calls")
    };
    let recorded = count(&mut db, &source, "");
    assert!(recorded > 24, "the live run retried some calls: {recorded}");
    assert_eq!(count(&mut db, &replay, ""), recorded, "every recorded call is replayed, retries included");
    let pointing = count(
        &mut db,
        &replay,
        &format!("AND c.source_call_id IN (SELECT c2.call_id FROM calls c2 JOIN node_states s2 ON s2.state_id = c2.state_id WHERE s2.run_id = '{source}')"),
    );
    assert_eq!(pointing, recorded, "each replayed call points at the call it came from");
    let same_requests = query_i64(
        &mut db,
        "SELECT count(*) AS n FROM calls c JOIN calls o ON o.call_id = c.source_call_id \
         WHERE c.request_hash = o.request_hash AND coalesce(c.response_hash, '') = coalesce(o.response_hash, '')",
    )
    .expect("calls");
    assert_eq!(same_requests, recorded);
    let stored =
        query_pairs(&mut db, &format!("SELECT settings_json AS a, '' AS b FROM runs WHERE run_id = '{replay}'")).expect("run");
    let stored: serde_json::Value = serde_json::from_str(&stored[0].0).expect("settings json");
    assert_eq!(stored["run_mode"], "replay", "the effective mode is recorded in the run");
    assert_eq!(stored["replay_from"], source.as_str(), "`latest` is recorded as the run it meant");
    let explain = elspeth(dir.path(), &["explain", "--settings", "settings.yaml", "--run", &replay, "--row", "3"]);
    assert!(String::from_utf8_lossy(&explain.stdout).contains("replayed: the response is call"), "{}", output_text(&explain));
}

#[test]
fn a_changed_request_or_a_purged_recording_fails_only_its_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, _) = recorded_run(dir.path(), 6);
    let input = std::fs::read_to_string(dir.path().join("input.csv")).expect("input").replace("2,message 2", "2,message two");
    std::fs::write(dir.path().join("input.csv"), input).expect("input");
    let output = run(dir.path(), &["--replay-from", &source]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(read_out(dir.path(), "results.jsonl").lines().count(), 5, "the other rows replay");
    let rejected: serde_json::Value =
        serde_json::from_str(read_out(dir.path(), "rejected.jsonl").trim()).expect("one rejected row");
    assert_eq!(rejected["id"], 2);
    let mut db = landscape_at(dir.path(), "audit.db");
    let reasons = query_pairs(
        &mut db,
        "SELECT json_extract(error_details_json, '$.reason') AS a, json_extract(error_details_json, '$.request_hash') AS b \
         FROM transform_errors",
    )
    .expect("errors");
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].0, "replay_miss");
    assert_eq!(reasons[0].1.len(), 64, "the miss names the request hash");

    let purged = elspeth(dir.path(), &["purge", "--settings", "settings.yaml", "--retention-days", "0"]);
    assert!(purged.status.success(), "{}", output_text(&purged));
    let output = run(dir.path(), &["--replay-from", &source]);
    assert!(output.status.success(), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let missing = query_i64(
        &mut db,
        "SELECT count(*) AS n FROM transform_errors WHERE json_extract(error_details_json, '$.reason') = 'replay_payload_missing'",
    )
    .expect("errors");
    assert!(missing >= 5, "rows whose recorded answer was purged fail: {missing}");
}

#[test]
fn verify_compares_live_answers_with_the_recordings_and_records_each_difference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = chaos_server(serde_json::json!({"seed": 4}));
    prepare(dir.path(), &server.base_url(), 8);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let source = latest_run(dir.path());

    let output = run(dir.path(), &["--verify-against", &source, "--format", "json", "--fail-on-mismatch"]);
    assert!(output.status.success(), "{}", output_text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        report["verification"],
        serde_json::json!({"total_calls": 8, "matches": 8, "mismatches": 0, "missing_recordings": 0, "missing_payloads": 0}),
        "ids and timestamps differ on every call and are ignored"
    );

    drop(server);
    let changed = chaos_server(serde_json::json!({"response": {"mode": "template", "template": {"body": "something else"}}}));
    std::fs::write(dir.path().join("settings.yaml"), settings(&changed.base_url())).expect("settings");
    let output = run(dir.path(), &["--verify-against", &source, "--format", "json", "--fail-on-mismatch"]);
    assert_eq!(output.status.code(), Some(6), "{}", output_text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["verification"]["mismatches"], 8);
    let verify = latest_run(dir.path());
    let mut db = landscape_at(dir.path(), "audit.db");
    let verdicts = query_pairs(
        &mut db,
        &format!(
            "SELECT c.verification_status AS a, c.verification_json AS b FROM calls c JOIN node_states s ON s.state_id = c.state_id \
             WHERE s.run_id = '{verify}' LIMIT 1"
        ),
    )
    .expect("calls");
    assert_eq!(verdicts[0].0, "mismatch");
    assert!(verdicts[0].1.contains("content"), "{}", verdicts[0].1);
    let explain = elspeth(dir.path(), &["explain", "--settings", "settings.yaml", "--run", &verify, "--row", "0"]);
    let explained = String::from_utf8_lossy(&explain.stdout);
    assert!(explained.contains("verified against call") && explained.contains("MISMATCH, differs at"), "{explained}");
}

#[test]
fn replay_needs_a_source_run_that_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), "http://127.0.0.1:9/v1", 1);
    let with_mode = settings("http://127.0.0.1:9/v1") + "run_mode: replay\n";
    std::fs::write(dir.path().join("settings.yaml"), with_mode).expect("settings");
    let output = elspeth(dir.path(), &["validate", "--settings", "settings.yaml"]);
    assert!(!output.status.success());
    assert!(output_text(&output).contains("replay_from"), "{}", output_text(&output));
    prepare(dir.path(), "http://127.0.0.1:9/v1", 1);
    let output = run(dir.path(), &["--replay-from", "latest"]);
    assert!(!output.status.success());
    assert!(output_text(&output).contains("no completed run"), "{}", output_text(&output));
}

#[test]
fn a_replay_killed_midway_resumes_as_a_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, live) = recorded_run(dir.path(), 12);
    let crashed = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_TEST_CRASH_AT", "row:7")
        .args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", "3", "--replay-from", &source])
        .output()
        .expect("elspeth runs");
    assert!(crashed.status.code().is_none(), "killed: {}", output_text(&crashed));
    let resumed = elspeth(dir.path(), &["resume", "latest", "--settings", "settings.yaml", "--chunk-size", "3"]);
    assert!(resumed.status.success(), "{}", output_text(&resumed));
    assert_eq!(read_out(dir.path(), "results.jsonl"), live, "the resumed replay still answers from the recordings");
}
