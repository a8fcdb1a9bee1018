//! The `llm` transform end to end, through the binary, against
//! `elspeth-chaosllm` on an ephemeral 127.0.0.1 port: the reference's
//! examples, rows in flight recorded in source order whatever the latency,
//! retries and capacity refusals per node state, untrusted answers as error
//! results, a kill with calls in flight, and secrets never stored raw.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use landscape::connection::{query_i64, query_pairs};
use proptest::prelude::*;
use tests::{audit_violations, chaos_server, elspeth_binary, example_dir, landscape_at, output_text, read_out};

/// The raw API key every test pipeline sends; it must never be stored.
pub(crate) const SECRET: &str = "sk-test-raw-secret-0123456789abcdef";

/// csv → llm (OpenAI-compatible, `pool` rows in flight, the test API key) →
/// json, with `extra` top-level settings.
pub(crate) fn pipeline(base_url: &str, pool: usize, extra: &str) -> String {
    format!(
        r#"
source:
  plugin: csv
  on_success: in
  options:
    path: input.csv
    schema: {{mode: fixed, fields: ['id: int', 'text: str']}}
    on_validation_failure: discard
transforms:
- name: ask
  plugin: llm
  input: in
  on_success: out
  on_error: rejected
  options:
    provider: openai
    model: fake-model
    base_url: {base_url}
    api_key: {SECRET}
    template: "Echo {{{{ row.text }}}}"
    required_input_fields: [text]
    pool_size: {pool}
    schema: {{mode: observed}}
sinks:
  out: {{plugin: json, on_write_failure: discard, options: {{path: out/results.jsonl, schema: {{mode: observed}}}}}}
  rejected: {{plugin: json, on_write_failure: discard, options: {{path: out/rejected.jsonl, schema: {{mode: observed}}}}}}
landscape: {{url: 'sqlite:///audit.db'}}
payload_store: {{base_path: payloads}}
rate_limit: {{enabled: false}}
retry: {{max_attempts: 3, initial_delay_seconds: 0.01, max_delay_seconds: 0.05}}
{extra}
"#
    )
}

fn prepare(dir: &Path, settings: &str, rows: usize) {
    let mut input = String::from("id,text\n");
    for id in 0..rows {
        let _ = writeln!(input, "{id},row number {id} says hello");
    }
    std::fs::write(dir.join("input.csv"), input).expect("input");
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
}

fn elspeth(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(elspeth_binary())
        .current_dir(dir)
        .env("ELSPETH_FINGERPRINT_KEY", "a-test-fingerprint-key")
        .args(args)
        .output()
        .expect("elspeth runs")
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--settings", "settings.yaml", "--execute"];
    args.extend_from_slice(extra);
    elspeth(dir, &args)
}

/// Every node state in the order it was recorded, with its calls: row,
/// step, attempt, status, and each call's index, status and request hash.
fn audit_sequence(dir: &Path) -> Vec<(String, String)> {
    let mut db = landscape_at(dir, "audit.db");
    let violations = audit_violations(&mut db);
    assert!(violations.is_empty(), "{violations:?}");
    query_pairs(
        &mut db,
        "SELECT CAST(r.row_index AS TEXT) AS a, \
         s.step_index || ':' || s.attempt || ':' || s.status || ':' || coalesce(c.call_index, -1) || ':' || \
         coalesce(c.status, '') || ':' || coalesce(c.request_hash, '') AS b \
         FROM node_states s JOIN tokens t ON t.token_id = s.token_id JOIN rows r ON r.row_id = t.row_id \
         LEFT JOIN calls c ON c.state_id = s.state_id ORDER BY s.rowid, c.call_index",
    )
    .expect("node states")
}

type Audit = Vec<(String, String)>;

/// Runs the 40-row pipeline with `pool` rows in flight against a server
/// with `latency`; returns its output and audit sequence.
fn run_pooled(pool: usize, latency: serde_json::Value) -> (String, Audit) {
    let server = chaos_server(latency);
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), &pipeline(&server.base_url(), pool, ""), 40);
    let output = run(dir.path(), &["--chunk-size", "7"]);
    assert!(output.status.success(), "{}", output_text(&output));
    (read_out(dir.path(), "results.jsonl"), audit_sequence(dir.path()))
}

/// The outputs and audit sequence of the same input with one row at a time.
fn sequential_reference() -> &'static (String, Audit) {
    static REFERENCE: OnceLock<(String, Audit)> = OnceLock::new();
    REFERENCE.get_or_init(|| run_pooled(1, serde_json::json!({})))
}

/// The audit sequence with `pool` rows in flight and instant answers.
fn pooled_reference(pool: usize) -> Audit {
    static REFERENCES: OnceLock<std::sync::Mutex<std::collections::HashMap<usize, Audit>>> = OnceLock::new();
    let references = REFERENCES.get_or_init(Default::default);
    let known = references.lock().expect("lock").get(&pool).cloned();
    known.unwrap_or_else(|| {
        let audit = run_pooled(pool, serde_json::json!({})).1;
        references.lock().expect("lock").insert(pool, audit.clone());
        audit
    })
}

/// An audit sequence grouped by row (each row's own states and calls, in order).
fn per_row(audit: &Audit) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut rows = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (row, entry) in audit {
        rows.entry(row.clone()).or_default().push(entry.clone());
    }
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Answers arrive in any order (random latency per request). The
    /// outputs and every row's states and calls are those of a
    /// one-row-at-a-time run, and the whole audit trail, in the order it
    /// was written, is that of the same pool with instant answers: when a
    /// row is recorded depends on the pool size, never on timing.
    #[test]
    fn rows_in_flight_are_recorded_in_source_order(jitter in 0_u32..60, pool in prop_oneof![Just(2_usize), Just(8), Just(16)], seed in any::<u64>()) {
        let (expected_output, expected_audit) = sequential_reference();
        let (output, audit) = run_pooled(pool, serde_json::json!({"latency": {"base_ms": 1, "jitter_ms": jitter}, "seed": seed}));
        prop_assert_eq!(&output, expected_output);
        prop_assert_eq!(per_row(&audit), per_row(expected_audit));
        prop_assert_eq!(audit, pooled_reference(pool));
    }
}

#[test]
fn answers_are_the_echoed_prompts_with_usage_and_model() {
    let (output, _) = sequential_reference();
    let first: serde_json::Value = serde_json::from_str(output.lines().next().expect("a row")).expect("json");
    assert_eq!(first["llm_response"], "Echo row number 0 says hello");
    assert_eq!(first["llm_response_model"], "fake-model");
    assert!(first["llm_response_usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 0), "{first}");
    assert_eq!(output.lines().count(), 40);
}

#[test]
fn server_errors_are_retried_as_new_attempts_and_exhausted_retries_fail_the_row() {
    let server = chaos_server(serde_json::json!({"error_injection": {"internal_error_pct": 100}}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), &pipeline(&server.base_url(), 2, ""), 3);
    let output = run(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(5), "every row failed: {}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let attempts = query_pairs(
        &mut db,
        "SELECT s.attempt || ':' || s.status AS a, count(c.call_id) || ':' || min(c.status) AS b FROM node_states s \
         JOIN calls c ON c.state_id = s.state_id GROUP BY s.state_id ORDER BY s.rowid",
    )
    .expect("attempts");
    let expected: Vec<(String, String)> =
        (0..3).flat_map(|_| (0..3).map(|attempt| (format!("{attempt}:failed"), "1:error".to_owned()))).collect();
    assert_eq!(attempts, expected, "three attempts per row, each a failed state with its own error call");
    let failed = query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed'").expect("outcomes");
    assert_eq!(failed, 3);
    assert!(read_out(dir.path(), "rejected.jsonl").is_empty(), "exhausted retries are not routed to on_error");
}

#[test]
fn capacity_refusals_are_retried_within_the_attempt_and_no_row_is_lost() {
    let server = chaos_server(serde_json::json!({
        "error_injection": {"rate_limit_pct": 40, "capacity_529_pct": 10, "retry_after_sec": [0, 0]}, "seed": 3,
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(&server.base_url(), 4, "")
        .replace("pool_size: 4", "pool_size: 4\n    recovery_step_ms: 5\n    max_dispatch_delay_ms: 20");
    prepare(dir.path(), &settings, 30);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(
        read_out(dir.path(), "results.jsonl"),
        sequential_reference().0.split_inclusive('\n').take(30).collect::<String>()
    );
    let mut db = landscape_at(dir.path(), "audit.db");
    let refused_then_answered = query_i64(
        &mut db,
        "SELECT count(*) AS n FROM node_states s WHERE s.status = 'completed' AND s.attempt = 0 AND \
         (SELECT count(*) FROM calls c WHERE c.state_id = s.state_id AND c.status = 'error') > 0",
    )
    .expect("states");
    assert!(refused_then_answered > 0, "some row was refused, then answered, in one node state");
    let extra_attempts = query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE attempt > 0").expect("attempts");
    assert_eq!(extra_attempts, 0, "capacity refusals do not use the engine's retries");
}

#[test]
fn malformed_answers_are_error_results_routed_to_on_error() {
    for fault in ["invalid_json_pct", "truncated_pct", "empty_body_pct", "missing_fields_pct", "wrong_content_type_pct"] {
        let server = chaos_server(serde_json::json!({"error_injection": {fault: 100}}));
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path(), &pipeline(&server.base_url(), 1, ""), 2);
        let output = run(dir.path(), &[]);
        assert!(output.status.success(), "{fault}: rows routed to on_error, the run completed: {}", output_text(&output));
        assert_eq!(read_out(dir.path(), "rejected.jsonl").lines().count(), 2, "{fault}");
        let mut db = landscape_at(dir.path(), "audit.db");
        let reasons = query_pairs(
            &mut db,
            "SELECT json_extract(error_details_json, '$.reason') AS a, destination AS b FROM transform_errors",
        )
        .expect("transform errors");
        assert_eq!(reasons, vec![("llm_call_failed".to_owned(), "rejected".to_owned()); 2], "{fault}");
    }
}

#[test]
fn a_run_killed_with_calls_in_flight_resumes_to_the_same_outputs() {
    let server = chaos_server(serde_json::json!({"latency": {"base_ms": 2, "jitter_ms": 10}}));
    let reference = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(&server.base_url(), 4, "");
    prepare(reference.path(), &settings, 20);
    let output = run(reference.path(), &["--chunk-size", "5"]);
    assert!(output.status.success(), "{}", output_text(&output));
    let expected = read_out(reference.path(), "results.jsonl");
    for point in ["row:3", "row:7", "row:12"] {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path(), &settings, 20);
        let crashed = std::process::Command::new(elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_FINGERPRINT_KEY", "a-test-fingerprint-key")
            .env("ELSPETH_TEST_CRASH_AT", point)
            .args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", "5"])
            .output()
            .expect("elspeth runs");
        assert!(crashed.status.code().is_none(), "{point}: the run must be killed: {}", output_text(&crashed));
        let resumed = elspeth(dir.path(), &["resume", "latest", "--settings", "settings.yaml", "--chunk-size", "5"]);
        assert!(resumed.status.success(), "{point}: {}", output_text(&resumed));
        assert_eq!(read_out(dir.path(), "results.jsonl"), expected, "{point}: outputs appear once, in order");
        let mut db = landscape_at(dir.path(), "audit.db");
        let violations = audit_violations(&mut db);
        assert!(violations.is_empty(), "{point}: {violations:?}");
    }
}

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path, into: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all_bytes(&path, into);
        } else {
            into.push((path.display().to_string(), std::fs::read(&path).expect("read")));
        }
    }
}

#[test]
fn the_api_key_is_fingerprinted_never_stored() {
    let server = chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), &pipeline(&server.base_url(), 1, ""), 3);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let export =
        elspeth(dir.path(), &["export", "--run", "latest", "--database", "sqlite:///audit.db", "--output", "trail.jsonl"]);
    assert!(export.status.success(), "{}", output_text(&export));
    let mut files = Vec::new();
    all_bytes(dir.path(), &mut files);
    let stored: Vec<&(String, Vec<u8>)> = files.iter().filter(|(name, _)| !name.ends_with("settings.yaml")).collect();
    assert!(
        stored.iter().any(|(name, _)| name.ends_with("trail.jsonl")) && stored.len() >= 4,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in stored {
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!found, "the raw API key is in {name}");
    }
    let mut db = landscape_at(dir.path(), "audit.db");
    let fingerprinted =
        query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE settings_json LIKE '%api_key_fingerprint%'").expect("runs");
    assert_eq!(fingerprinted, 1);
}

#[test]
fn an_openrouter_call_records_its_authorization_header_as_a_fingerprint() {
    let server = chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(&server.base_url(), 1, "").replace("provider: openai", "provider: openrouter");
    prepare(dir.path(), &settings, 1);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let explain = elspeth(dir.path(), &["explain", "--settings", "settings.yaml", "--run", "latest", "--row", "0"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("call #0 http success"), "{text}");
    let mut db = landscape_at(dir.path(), "audit.db");
    let call_types = query_i64(&mut db, "SELECT count(*) AS n FROM calls WHERE call_type = 'http' AND request_ref IS NOT NULL")
        .expect("calls");
    assert_eq!(call_types, 1);
    let payloads = std::fs::read(dir.path().join("payloads/payloads.sqlite")).unwrap_or_default();
    let marker = b"<fingerprint:";
    assert!(payloads.windows(marker.len()).any(|w| w == marker), "the stored request holds a fingerprinted header");
}

#[test]
fn a_secret_without_a_fingerprint_key_is_refused_before_any_call() {
    let server = chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), &pipeline(&server.base_url(), 1, ""), 1);
    let output = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env_remove("ELSPETH_FINGERPRINT_KEY")
        .args(["run", "--settings", "settings.yaml", "--execute"])
        .output()
        .expect("elspeth runs");
    assert!(!output.status.success());
    assert!(output_text(&output).contains("ELSPETH_FINGERPRINT_KEY"), "{}", output_text(&output));
    let client = server.addr();
    let stats: serde_json::Value = serde_json::from_str(&http_get(client, "/admin/stats")).expect("stats");
    assert_eq!(stats["requests"], 0, "no request was sent");
}

/// A GET to the fake server (its `/admin/stats`), over a plain socket.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[test]
fn the_chaosllm_sentiment_example_runs_with_its_settings_unchanged() {
    let dir = example_dir("chaosllm_sentiment");
    let example = dir.path().join("examples/chaosllm_sentiment");
    let mut config = chaosllm::config::read_file(&example.join("chaos_config.yaml")).expect("chaos config");
    chaosllm::config::merge(
        &mut config,
        serde_json::json!({"server": {"port": 0}, "seed": 11,
        "response": {"preset": {"file": example.join("responses.jsonl")}}}),
    );
    let server = chaosllm::start(chaosllm::Config::from_value(config, "chaos_config.yaml").expect("config")).expect("server");
    // The one change: the port the server got (the example names 8199).
    let settings = std::fs::read_to_string(example.join("settings.yaml")).expect("settings");
    let settings = settings.replace("127.0.0.1:8199", &server.addr().to_string());
    std::fs::write(example.join("settings.yaml"), settings).expect("settings");
    let output = elspeth(dir.path(), &["run", "--settings", "examples/chaosllm_sentiment/settings.yaml", "--execute"]);
    assert!(output.status.success(), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "examples/chaosllm_sentiment/runs/audit.db");
    assert!(audit_violations(&mut db).is_empty());
    let terminal =
        query_i64(&mut db, "SELECT count(DISTINCT token_id) AS n FROM token_outcomes WHERE is_terminal = 1").expect("outcomes");
    assert_eq!(terminal, 10, "every row ends somewhere");
    let without_calls = query_i64(
        &mut db,
        "SELECT count(*) AS n FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id \
         WHERE n.plugin_name = 'llm' AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.state_id = s.state_id)",
    )
    .expect("states");
    assert_eq!(without_calls, 0, "every llm visit has its calls");
    let results = std::fs::read_to_string(example.join("output/results.json")).unwrap_or_default();
    assert!(results.contains("sentiment_analysis_model"), "{results}");
}

#[test]
fn the_template_lookups_and_multi_query_examples_run_against_the_fake_server() {
    for (name, output_file, field) in [
        ("template_lookups", "results.json", "classification_model"),
        ("openrouter_multi_query_assessment", "results.csv", "cs2_risk_score"),
    ] {
        let dir = example_dir(name);
        let example = dir.path().join("examples").join(name);
        let mut config = chaosllm::config::read_file(&example.join("chaos_config.yaml")).expect("chaos config");
        chaosllm::config::merge(&mut config, serde_json::json!({"server": {"port": 0}}));
        let server = chaosllm::start(chaosllm::Config::from_value(config, "chaos_config.yaml").expect("config")).expect("server");
        let settings = format!("examples/{name}/settings.yaml");
        let output = std::process::Command::new(elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_FINGERPRINT_KEY", "a-test-fingerprint-key")
            .env("OPENROUTER_BASE_URL", server.base_url())
            .args(["run", "--settings", &settings, "--execute"])
            .output()
            .expect("elspeth runs");
        assert!(output.status.success(), "{name}: {}", output_text(&output));
        let written = std::fs::read_to_string(example.join("output").join(output_file)).unwrap_or_default();
        assert!(written.contains(field), "{name}: {written}");
    }
}

#[test]
fn purge_removes_call_bodies_keeps_their_hashes_and_degrades_the_grade() {
    let server = chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), &pipeline(&server.base_url(), 1, ""), 2);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let grade = |dir: &Path| {
        let mut db = landscape_at(dir, "audit.db");
        query_pairs(&mut db, "SELECT reproducibility_grade AS a, '' AS b FROM runs").expect("runs")[0].0.clone()
    };
    assert_eq!(grade(dir.path()), "replay_reproducible");
    let purged = elspeth(dir.path(), &["purge", "--settings", "settings.yaml", "--retention-days", "0"]);
    assert!(purged.status.success(), "{}", output_text(&purged));
    assert_eq!(grade(dir.path()), "attributable_only", "the recorded answers a replay needs are gone");
    let explain = elspeth(dir.path(), &["explain", "--settings", "settings.yaml", "--run", "latest", "--row", "0"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("call #0 llm success") && text.contains("request ") && text.contains("response "), "{text}");
    let mut db = landscape_at(dir.path(), "audit.db");
    let hashed =
        query_i64(&mut db, "SELECT count(*) AS n FROM calls WHERE request_hash IS NOT NULL AND response_hash IS NOT NULL")
            .expect("calls");
    assert_eq!(hashed, 2, "hashes survive the purge");
}

#[test]
fn an_azure_deployment_is_called_and_recorded_as_an_llm_call_in_the_reference_shape() {
    let server = chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(&server.base_url(), 1, "")
        .replace("provider: openai", "provider: azure")
        .replace("model: fake-model", "deployment_name: my-deployment")
        .replace(&format!("base_url: {}", server.base_url()), &format!("endpoint: http://{}", server.addr()));
    prepare(dir.path(), &settings, 2);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let first: serde_json::Value =
        serde_json::from_str(read_out(dir.path(), "results.jsonl").lines().next().unwrap_or_default()).expect("json");
    assert_eq!(first["llm_response_model"], "my-deployment", "the deployment answered");
    assert_eq!(first["llm_response"], "Echo row number 0 says hello");
    let mut db = landscape_at(dir.path(), "audit.db");
    let types = query_pairs(&mut db, "SELECT call_type AS a, status AS b FROM calls").expect("calls");
    assert_eq!(types, vec![("llm".to_owned(), "success".to_owned()); 2]);
    let payloads = std::fs::read(dir.path().join("payloads/payloads.sqlite")).unwrap_or_default();
    let shape = br#""provider":"azure","response_format":null"#;
    assert!(payloads.windows(shape.len()).any(|w| w == shape), "the request carries provider azure and response_format null");
}
