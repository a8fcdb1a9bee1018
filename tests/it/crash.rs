//! The crash harness: a pipeline with an aggregation, a fork and coalesce and
//! two sinks is killed (the process aborts, as a SIGKILL would leave it) at
//! every source row, every durable sink write and just before and after every
//! commit, then resumed; each time the final sink files and the set of
//! (row, outcome, sink) must equal an uninterrupted run's, with every
//! Landscape invariant intact and every blob the Landscape refers to in the
//! payload store, sealed (no blob left in its unindexed tail). Kill points are enumerated in a fixed order
//! (`ELSPETH_CRASH_POINTS=row:3,commit:2:before` reruns chosen ones).

use std::fmt::Write as _;
use std::path::Path;

use diesel::Connection;
use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_in, landscape_at};

const SETTINGS: &str = r#"
source:
  plugin: csv
  on_success: in
  options:
    path: input.csv
    schema: {mode: fixed, fields: ['id: int', 'v: int', 'word: str']}
    on_validation_failure: discard
gates:
- name: route
  input: in
  condition: "row['v'] > 7"
  routes: {'true': low, 'false': agg_in}
- name: split
  input: batched
  condition: 'True'
  routes: {'true': fork, 'false': merged}
  fork_to: [a, b]
aggregations:
- name: batch
  plugin: batch_replicate
  input: agg_in
  on_success: batched
  on_error: discard
  output_mode: passthrough
  trigger: {count: 3}
  options: {schema: {mode: observed}}
transforms:
- name: screen
  plugin: keyword_filter
  input: b
  on_success: b_done
  on_error: discard
  options: {fields: word, blocked_patterns: ['^bad$'], schema: {mode: observed}}
coalesce:
- name: join
  branches: {a: a, b: b_done}
  policy: require_all
  merge: nested
  on_success: merged
sinks:
  low:
    plugin: csv
    on_write_failure: discard
    options: {path: out/low.csv, schema: {mode: observed}}
  merged:
    plugin: json
    on_write_failure: discard
    options: {path: out/merged.jsonl, schema: {mode: observed}}
landscape: {url: 'sqlite:///audit.db'}
payload_store: {base_path: payloads}
"#;

const ROWS: u64 = 36;
const CHUNK: &str = "4";

/// The seed of the input (which rows go low, which are screened out);
/// `ELSPETH_CRASH_SEED` reproduces another.
fn seed() -> u64 {
    std::env::var("ELSPETH_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7)
}

fn input() -> String {
    let mut state = seed().wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut text = String::from("id,v,word\n");
    for id in 0..ROWS {
        let word = if next() % 6 == 0 { "bad" } else { "ok" };
        let _ = writeln!(text, "{id},{},{word}", next() % 11);
    }
    text
}

fn prepare(dir: &Path) {
    std::fs::write(dir.join("input.csv"), input()).expect("input");
    std::fs::write(dir.join("settings.yaml"), SETTINGS).expect("settings");
}

/// What a finished run produced: both sink files and the sorted
/// (row, outcome, sink) triples of its terminal outcomes.
fn result(dir: &Path) -> (String, String, Vec<(String, String)>) {
    let mut db = landscape_at(dir, "audit.db");
    let violations = audit_violations(&mut db);
    assert!(violations.is_empty(), "{violations:?}");
    let missing = missing_payloads(&mut db, &dir.join("payloads"));
    assert!(missing.is_empty(), "{missing:?}");
    let mut outcomes = query_pairs(
        &mut db,
        "SELECT CAST(r.row_index AS TEXT) AS a, o.outcome || ':' || coalesce(o.sink_name, '') AS b FROM token_outcomes o \
         JOIN tokens t ON t.token_id = o.token_id JOIN rows r ON r.row_id = t.row_id WHERE o.is_terminal = 1",
    )
    .expect("outcomes");
    outcomes.sort();
    let read = |name: &str| std::fs::read_to_string(dir.join("out").join(name)).unwrap_or_default();
    (read("low.csv"), read("merged.jsonl"), outcomes)
}

/// Payload references the store does not return, and blobs the store left
/// unsealed: a completed run (resumed or not) seals them.
fn missing_payloads(db: &mut landscape::DbConnection, payloads: &Path) -> Vec<String> {
    let refs = query_pairs(
        db,
        "SELECT 'rows' AS a, source_data_ref AS b FROM rows WHERE source_data_ref IS NOT NULL \
         UNION ALL SELECT 'routing_events', reason_ref FROM routing_events WHERE reason_ref IS NOT NULL \
         UNION ALL SELECT 'operations', input_data_ref FROM operations WHERE input_data_ref IS NOT NULL \
         UNION ALL SELECT 'operations', output_data_ref FROM operations WHERE output_data_ref IS NOT NULL",
    )
    .expect("payload references");
    assert!(refs.iter().any(|(table, _)| table == "rows"), "the run stored its source rows");
    let store = landscape::PayloadStore::new(payloads);
    let mut missing: Vec<String> =
        refs.iter().filter_map(|(table, key)| store.retrieve(key).err().map(|e| format!("{table}: {e}"))).collect();
    let file = payloads.join("payloads.sqlite");
    let mut own = landscape::DbConnection::Sqlite(
        diesel::SqliteConnection::establish(file.to_str().expect("utf-8")).expect("the payload store opens"),
    );
    let unsealed = query_i64(&mut own, "SELECT count(*) AS n FROM payload_tail").expect("tail");
    if unsealed != 0 {
        missing.push(format!("{unsealed} blobs left in the unindexed tail"));
    }
    missing
}

fn kill_points() -> Vec<String> {
    if let Ok(chosen) = std::env::var("ELSPETH_CRASH_POINTS") {
        return chosen.split(',').map(str::to_owned).collect();
    }
    let mut points: Vec<String> = (1..=ROWS).map(|n| format!("row:{n}")).collect();
    points.extend((1..=20).map(|n| format!("sink:{n}")));
    for n in 1..=11 {
        points.push(format!("commit:{n}:before"));
        points.push(format!("commit:{n}:after"));
    }
    points
}

#[test]
fn a_run_killed_anywhere_resumes_to_the_same_outputs() {
    let reference = tempfile::tempdir().expect("temp dir");
    prepare(reference.path());
    let run = elspeth_in(reference.path(), &["run", "--settings", "settings.yaml", "--execute", "--chunk-size", CHUNK]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = result(reference.path());
    assert!(!expected.0.is_empty() && !expected.1.is_empty(), "both sinks receive rows");

    let mut crashed = 0;
    for point in kill_points() {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path());
        let output = std::process::Command::new(tests::elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_TEST_CRASH_AT", &point)
            .args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", CHUNK])
            .output()
            .expect("elspeth runs");
        let point = format!("{point} (seed {})", seed());
        if output.status.success() {
            // The run ended before reaching this point: nothing to resume.
            assert_eq!(result(dir.path()), expected, "{point}: an uncrashed run differs");
            continue;
        }
        assert!(
            output.status.code().is_none(),
            "{point}: the run failed instead of crashing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        crashed += 1;
        let resumed = elspeth_in(dir.path(), &["resume", "latest", "--settings", "settings.yaml", "--chunk-size", CHUNK]);
        assert!(
            resumed.status.success(),
            "{point}: resume failed\n{}\n{}",
            String::from_utf8_lossy(&resumed.stdout),
            String::from_utf8_lossy(&resumed.stderr)
        );
        let got = result(dir.path());
        assert_eq!(got.0, expected.0, "{point}: low.csv differs");
        assert_eq!(got.1, expected.1, "{point}: merged.jsonl differs");
        assert_eq!(got.2, expected.2, "{point}: outcomes differ");
    }
    if std::env::var("ELSPETH_CRASH_POINTS").is_err() {
        assert!(crashed >= 50, "only {crashed} kill points crashed the run");
    }
}
