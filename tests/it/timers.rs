//! Timers fire while the source is idle: the source is a named pipe the test
//! writes to, so the run cannot read another row until the test sees what
//! the timer released (polling the output with a deadline) and writes more.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_binary, landscape_at};

fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
}

fn start_run(dir: &Path) -> Child {
    Command::new(elspeth_binary())
        .current_dir(dir)
        .args(["run", "--settings", "settings.yaml", "--execute", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("elspeth starts")
}

/// Waits until `path` holds `lines` lines (the run wrote and committed them).
fn wait_for_lines(path: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = std::fs::read_to_string(path).map_or(0, |text| text.lines().count());
        if found >= lines {
            return;
        }
        assert!(Instant::now() < deadline, "{} never reached {lines} lines (has {found})", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> serde_json::Value {
    let output = child.wait_with_output().expect("elspeth ends");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("json summary: {}", String::from_utf8_lossy(&output.stderr)))
}

fn line(id: i64, amount: i64) -> String {
    format!("{}\n", serde_json::json!({"id": id, "amount": amount, "kind": "a"}))
}

#[test]
fn an_aggregation_timeout_fires_while_the_source_is_idle() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_fifo(&dir.path().join("input.jsonl"));
    std::fs::write(
        dir.path().join("settings.yaml"),
        r"
source:
  plugin: json
  on_success: in
  options: {path: input.jsonl, schema: {mode: observed}, on_validation_failure: discard}
aggregations:
- name: totals
  plugin: batch_stats
  input: in
  on_success: out
  on_error: discard
  trigger: {count: 100, timeout_seconds: 0.3}
  options: {value_field: amount, schema: {mode: observed}}
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {path: out.jsonl, schema: {mode: observed}}
landscape: {url: 'sqlite:///audit.db'}
payload_store: {base_path: payloads}
",
    )
    .expect("settings");
    let child = start_run(dir.path());
    let mut pipe = std::fs::OpenOptions::new().write(true).open(dir.path().join("input.jsonl")).expect("open the pipe");
    pipe.write_all((line(1, 10) + &line(2, 20)).as_bytes()).expect("write");
    pipe.flush().expect("flush");
    // Nothing more arrives: only the timer can flush the batch.
    wait_for_lines(&dir.path().join("out.jsonl"), 1);
    pipe.write_all(line(3, 5).as_bytes()).expect("write");
    drop(pipe);
    let summary = finish(child);
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    let batches =
        query_pairs(&mut db, "SELECT trigger_type AS a, trigger_reason AS b FROM batches ORDER BY created_at, batch_id")
            .expect("q");
    assert_eq!(
        batches,
        vec![
            ("timeout".to_owned(), "timeout after 0.3 s".to_owned()),
            ("end_of_source".to_owned(), "end of source with 1 buffered rows".to_owned()),
        ]
    );
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out");
    assert!(out.lines().next().is_some_and(|l| l.contains("\"sum\":30")), "{out}");
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn a_coalesce_timeout_fires_while_the_source_is_idle() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_fifo(&dir.path().join("input.jsonl"));
    // Branch b waits in a buffer that only the end of the source flushes, so
    // the coalesce can only resolve by its own timeout.
    std::fs::write(
        dir.path().join("settings.yaml"),
        r"
source:
  plugin: json
  on_success: in
  options: {path: input.jsonl, schema: {mode: observed}, on_validation_failure: discard}
gates:
- name: split
  input: in
  condition: 'True'
  routes: {'true': fork, 'false': out}
  fork_to: [a, b]
aggregations:
- name: hold
  plugin: batch_replicate
  input: b
  on_success: b_done
  on_error: discard
  output_mode: passthrough
  trigger: {count: 1000}
  options: {schema: {mode: observed}}
coalesce:
- name: join
  branches: {a: a, b: b_done}
  policy: best_effort
  timeout_seconds: 0.3
  merge: nested
  on_success: out
sinks:
  out:
    plugin: json
    on_write_failure: discard
    options: {path: out.jsonl, schema: {mode: observed}}
landscape: {url: 'sqlite:///audit.db'}
payload_store: {base_path: payloads}
",
    )
    .expect("settings");
    let child = start_run(dir.path());
    let mut pipe = std::fs::OpenOptions::new().write(true).open(dir.path().join("input.jsonl")).expect("open the pipe");
    pipe.write_all(line(1, 10).as_bytes()).expect("write");
    pipe.flush().expect("flush");
    wait_for_lines(&dir.path().join("out.jsonl"), 1);
    drop(pipe);
    let summary = finish(child);
    assert_eq!(summary["status"], "completed", "{summary}");
    let mut db = landscape_at(dir.path(), "audit.db");
    // The merge happened on the timer with branch a only; b came at the end
    // and failed as a late arrival.
    assert_eq!(
        query_i64(
            &mut db,
            "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'coalesced' AND context_json LIKE '%timeout after 0.3 s%'"
        )
        .expect("q"),
        1
    );
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%late_arrival%'")
            .expect("q"),
        1
    );
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}
