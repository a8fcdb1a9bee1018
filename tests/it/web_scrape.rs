//! `web_scrape` end to end, through the binary, against the fake web server
//! (`elspeth-chaosllm web`) on an ephemeral 127.0.0.1 port: redirects
//! followed and recorded hop by hop, SSRF refusals (a private address, a
//! redirect to cloud metadata), retries, replay, and the reference's
//! `chaosweb` example.

use std::path::Path;
use std::process::Output;

use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_binary, example_dir, landscape_at, output_text, web_server};

fn settings(allowed: &str) -> String {
    format!(
        r"
source:
  plugin: csv
  on_success: in
  options: {{path: input.csv, schema: {{mode: fixed, fields: ['id: int', 'url: str']}}, on_validation_failure: discard}}
transforms:
- name: scrape
  plugin: web_scrape
  input: in
  on_success: out
  on_error: failures
  options:
    url_field: url
    content_field: page
    fingerprint_field: fingerprint
    format: text
    http: {{abuse_contact: audit@example.com, scraping_reason: tests, timeout: 5{allowed}}}
    schema: {{mode: observed}}
sinks:
  out: {{plugin: json, on_write_failure: discard, options: {{path: out/pages.jsonl, schema: {{mode: observed}}}}}}
  failures: {{plugin: json, on_write_failure: discard, options: {{path: out/failures.jsonl, schema: {{mode: observed}}}}}}
landscape: {{url: 'sqlite:///audit.db'}}
rate_limit: {{enabled: false}}
retry: {{max_attempts: 2, initial_delay_seconds: 0.01, max_delay_seconds: 0.02}}
"
    )
}

const LOOPBACK: &str = ", allowed_hosts: ['127.0.0.0/8']";

fn prepare(dir: &Path, allowed: &str, urls: &[String]) {
    let input: String =
        std::iter::once("id,url\n".to_owned()).chain(urls.iter().enumerate().map(|(i, u)| format!("{i},{u}\n"))).collect();
    std::fs::write(dir.join("input.csv"), input).expect("input");
    std::fs::write(dir.join("settings.yaml"), settings(allowed)).expect("settings");
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--settings", "settings.yaml", "--execute"];
    args.extend_from_slice(extra);
    std::process::Command::new(elspeth_binary()).current_dir(dir).args(&args).output().expect("elspeth runs")
}

fn lines(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out").join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn redirects_are_followed_hop_by_hop_and_every_hop_is_recorded() {
    let server = web_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), LOOPBACK, &[format!("http://{}/redirect/3/annual-report", server.addr())]);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let pages = lines(dir.path(), "pages.jsonl");
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["fetch_url_final"], format!("http://{}/articles/annual-report", server.addr()));
    assert_eq!(pages[0]["fetch_status"], 200);
    assert_eq!(pages[0]["fetch_url_final_ip"], "127.0.0.1");
    let page = pages[0]["page"].as_str().unwrap_or_default();
    assert!(page.contains("annual report") && !page.contains("track("), "scripts are stripped: {page}");
    let mut db = landscape_at(dir.path(), "audit.db");
    assert!(audit_violations(&mut db).is_empty());
    let calls = query_pairs(&mut db, "SELECT call_index || ':' || call_type AS a, status AS b FROM calls ORDER BY call_index")
        .expect("calls");
    let expected: Vec<(String, String)> = ["0:http", "1:http_redirect", "2:http_redirect", "3:http_redirect"]
        .iter()
        .map(|c| ((*c).to_owned(), "success".to_owned()))
        .collect();
    assert_eq!(calls, expected, "the logical request takes its index first; each hop its own");
}

#[test]
fn private_addresses_and_redirects_to_metadata_are_refused() {
    let server = web_server(serde_json::json!({"error_injection": {"ssrf_redirect_pct": 100}}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), LOOPBACK, &[format!("http://{}/articles/board-minutes", server.addr())]);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let failures = lines(dir.path(), "failures.jsonl");
    assert_eq!(failures.len(), 1, "the row goes to on_error");
    let mut db = landscape_at(dir.path(), "audit.db");
    let reason = query_pairs(&mut db, "SELECT json_extract(error_details_json, '$.reason') AS a, json_extract(error_details_json, '$.error') AS b FROM transform_errors")
        .expect("errors");
    assert_eq!(reason[0].0, "api_error");
    assert!(reason[0].1.contains("redirect refused") && reason[0].1.contains("169.254.169.254"), "{}", reason[0].1);

    // Without an allowlist, loopback is refused before anything is sent.
    let quiet = web_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), "", &[format!("http://{}/articles/board-minutes", quiet.addr())]);
    let output = run(dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let reason = query_pairs(&mut db, "SELECT json_extract(error_details_json, '$.reason') AS a, '' AS b FROM transform_errors")
        .expect("errors");
    assert_eq!(reason[0].0, "validation_failed");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM calls").expect("calls"), 0, "no request was made");
}

#[test]
fn server_errors_are_retried_and_exhausted_retries_fail_the_row() {
    let server = web_server(serde_json::json!({"error_injection": {"internal_error_pct": 100}}));
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), LOOPBACK, &[format!("http://{}/articles/x", server.addr())]);
    let output = run(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(5), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let attempts = query_pairs(
        &mut db,
        "SELECT s.attempt || ':' || s.status AS a, c.status AS b FROM node_states s JOIN calls c ON c.state_id = s.state_id ORDER BY s.attempt",
    )
    .expect("attempts");
    assert_eq!(attempts, vec![("0:failed".to_owned(), "error".to_owned()), ("1:failed".to_owned(), "error".to_owned())]);
}

#[test]
fn a_scrape_replays_without_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let server = web_server(serde_json::json!({}));
        let urls: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("http://{}/articles/{s}", server.addr())).collect();
        prepare(dir.path(), LOOPBACK, &urls);
        let output = run(dir.path(), &[]);
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let live = std::fs::read_to_string(dir.path().join("out/pages.jsonl")).expect("pages");
    let output = run(dir.path(), &["--replay-from", "latest"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(std::fs::read_to_string(dir.path().join("out/pages.jsonl")).expect("pages"), live);
}

#[test]
fn the_chaosweb_example_runs_against_the_fake_web_server() {
    let dir = example_dir("chaosweb");
    let example = dir.path().join("examples/chaosweb");
    let server = web_server(serde_json::json!({"error_injection": {"forbidden_pct": 20, "malformed_html_pct": 20}, "seed": 8}));
    // The one change: the port the server got (the example names 8200).
    let input =
        std::fs::read_to_string(example.join("input.csv")).expect("input").replace("127.0.0.1:8200", &server.addr().to_string());
    std::fs::write(example.join("input.csv"), input).expect("input");
    let output = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .args(["run", "--settings", "examples/chaosweb/settings.yaml", "--execute"])
        .output()
        .expect("elspeth runs");
    assert!(output.status.success(), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "examples/chaosweb/runs/audit.db");
    assert!(audit_violations(&mut db).is_empty());
    let routed = query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE is_terminal = 1").expect("outcomes");
    assert_eq!(routed, 10, "every row reaches output, review or scrape_failures");
    let scraped = std::fs::read_to_string(example.join("output/scraped_pages.csv")).unwrap_or_default();
    assert!(scraped.lines().count() > 1, "{scraped}");
}
