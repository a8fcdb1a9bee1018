//! Runs of small pipelines over the test plugins.

use std::path::Path;

use contracts::RunStatus;
use engine::pipeline::build_pipeline;
use engine::{run_pipeline, RunOptions, RunSummary};
use std::sync::Arc;

use engine::ManualClock;
use landscape::connection::{query_i64, query_pairs};
use landscape::Recorder;

use crate::plugins::TestPlugins;

fn run(settings: &str) -> (RunSummary, Recorder) {
    run_with_clock(settings, None)
}

/// Runs with the trigger clock shared with the test source, which moves it
/// on between rows.
fn run_with_clock(settings: &str, clock: Option<Arc<ManualClock>>) -> (RunSummary, Recorder) {
    let loaded = engine::settings::parse(Path::new("test.yaml"), settings, &|_| None).expect("settings");
    let pipeline = build_pipeline(loaded, &TestPlugins { clock: clock.clone() }).expect("pipeline");
    let mut recorder = Recorder::open("sqlite:///:memory:", None).expect("Landscape");
    let mut options = RunOptions::default();
    if let Some(clock) = clock {
        options.clock = clock;
    }
    let summary = run_pipeline(pipeline, &mut recorder, options).expect("run recorded");
    (summary, recorder)
}

fn triggers(recorder: &mut Recorder) -> Vec<(String, String)> {
    query_pairs(
        recorder.connection().expect("connection"),
        "SELECT trigger_type AS a, trigger_reason AS b FROM batches ORDER BY created_at, batch_id",
    )
    .expect("batches")
}

fn count(recorder: &mut Recorder, sql: &str) -> i64 {
    query_i64(recorder.connection().expect("connection"), sql).expect(sql)
}

fn settings(rows: i64, body: &str) -> String {
    format!(
        "source:\n  plugin: counting\n  on_success: in\n  options: {{count: {rows}, schema: {{mode: observed}}, on_validation_failure: discard}}\n\
         {body}\nsinks:\n  out:\n    plugin: memory\n    on_write_failure: discard\n    options: {{schema: {{mode: observed}}}}\n\
         landscape: {{url: 'sqlite:///:memory:'}}\n"
    )
}

const AGGREGATION: &str = "aggregations:\n- name: batch\n  plugin: slow\n  input: in\n  on_success: out\n  on_error: discard\n  output_mode: passthrough\n  trigger: {count: 2}\n";

/// counting → tick (3 s between rows) → an aggregation with `trigger`.
fn ticking(trigger: &str) -> String {
    let body = format!(
        "transforms:\n- name: clock\n  plugin: tick\n  input: in\n  on_success: timed\n  on_error: discard\n  \
         options: {{tick_seconds: 3, schema: {{mode: observed}}}}\n\
         aggregations:\n- name: batch\n  plugin: slow\n  input: timed\n  on_success: out\n  on_error: discard\n  \
         output_mode: passthrough\n  trigger: {trigger}\n  options: {{schema: {{mode: observed}}}}"
    );
    settings(4, &body)
}

#[test]
fn a_timeout_is_checked_before_a_new_row_joins_on_the_injected_clock() {
    let (summary, mut recorder) =
        run_with_clock(&ticking("{count: 100, timeout_seconds: 5}"), Some(Arc::new(ManualClock::default())));
    assert_eq!(summary.status, RunStatus::Completed, "{:?}", summary.error);
    // Rows at 0, 3, 6, 9 s: the third finds the batch 6 s old and flushes it first.
    assert_eq!(
        triggers(&mut recorder),
        vec![
            ("timeout".to_owned(), "timeout after 5 s".to_owned()),
            ("end_of_source".to_owned(), "end of source with 2 buffered rows".to_owned()),
        ]
    );
}

#[test]
fn a_condition_on_batch_age_fires_on_the_injected_clock() {
    let (summary, mut recorder) =
        run_with_clock(&ticking("{condition: \"row['batch_age_seconds'] >= 4\"}"), Some(Arc::new(ManualClock::default())));
    assert_eq!(summary.status, RunStatus::Completed, "{:?}", summary.error);
    assert_eq!(
        triggers(&mut recorder),
        vec![
            ("condition".to_owned(), "condition row['batch_age_seconds'] >= 4 became true".to_owned()),
            ("end_of_source".to_owned(), "end of source with 2 buffered rows".to_owned()),
        ]
    );
}

#[test]
fn a_panicking_transform_fails_its_state_and_token_then_the_run() {
    let body = "transforms:\n- name: boom\n  plugin: panic_on\n  input: in\n  on_success: out\n  on_error: discard\n  options: {panic_on: 2, schema: {mode: observed}}";
    let (summary, mut recorder) = run(&settings(5, body));
    assert_eq!(summary.status, RunStatus::Failed);
    assert!(summary.error.as_deref().is_some_and(|e| e.contains("panicked")), "{:?}", summary.error);
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM node_states WHERE status = 'open'"), 0);
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%the plugin panicked: test transform panics on purpose%'"),
        1
    );
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed'"), 1);
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM runs WHERE status = 'failed'"), 1);
}

#[test]
fn a_panicking_batch_transform_leaves_a_failed_state_and_batch() {
    let body = format!("{AGGREGATION}  options: {{panic: true, schema: {{mode: observed}}}}");
    let (summary, mut recorder) = run(&settings(4, &body));
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM node_states WHERE status IN ('open', 'pending')"), 0);
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE b.status = 'failed' AND s.status = 'failed' AND s.error_json LIKE '%panicked%'"),
        1
    );
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM batches WHERE status IN ('draft', 'executing')"), 0);
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed' AND batch_id IS NOT NULL"),
        2
    );
}

#[test]
fn a_pending_batch_goes_pending_then_completed_while_other_rows_go_on() {
    let body = format!("{AGGREGATION}  options: {{polls: 10, schema: {{mode: observed}}}}");
    let (summary, mut recorder) = run(&settings(6, &body));
    assert_eq!(summary.status, RunStatus::Completed, "{:?}", summary.error);
    assert_eq!(summary.outcomes.get("completed"), Some(&6));
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM node_states WHERE status IN ('open', 'pending')"), 0);
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE b.status = 'completed' AND s.status = 'completed' AND s.output_hash IS NOT NULL"),
        3
    );
    // Every batch was created before the first one completed: the engine did
    // not wait for a pending job before reading on.
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM batches WHERE created_at < (SELECT min(completed_at) FROM batches)"),
        3
    );
}

#[test]
fn pending_polls_wait_on_the_injected_clock() {
    // Polled every hour, twice: on the manual clock the run takes no real
    // time, and the flush state records the two hours it was pending.
    let body = format!("{AGGREGATION}  options: {{polls: 2, check_after_seconds: 3600, schema: {{mode: observed}}}}");
    let clock = Arc::new(ManualClock::default());
    let started = std::time::Instant::now();
    let (summary, mut recorder) = run_with_clock(&settings(2, &body), Some(Arc::clone(&clock)));
    assert_eq!(summary.status, RunStatus::Completed, "{:?}", summary.error);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the waits were real: {:?}", started.elapsed());
    assert!(clock.advanced() >= std::time::Duration::from_secs(7199), "advanced {:?}", clock.advanced());
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM node_states s JOIN batches b ON b.aggregation_state_id = s.state_id WHERE s.status = 'completed' AND s.duration_ms >= 7200000"),
        1
    );
}

#[test]
fn max_pending_seconds_cancels_a_job_on_the_injected_clock() {
    let body = format!(
        "{AGGREGATION}  max_pending_seconds: 60\n  options: {{polls: 1000, check_after_seconds: 10, schema: {{mode: observed}}}}"
    );
    let clock = Arc::new(ManualClock::default());
    let (summary, mut recorder) = run_with_clock(&settings(2, &body), Some(Arc::clone(&clock)));
    assert_eq!(summary.status, RunStatus::Completed, "a batch that fails fails its rows, not the run: {:?}", summary.error);
    assert_eq!(count(&mut recorder, "SELECT count(*) AS n FROM batches WHERE status = 'failed'"), 1);
    assert_eq!(
        count(
            &mut recorder,
            "SELECT count(*) AS n FROM node_states WHERE status = 'failed' AND error_json LIKE '%still pending after 60 s%'"
        ),
        1
    );
    assert_eq!(
        count(&mut recorder, "SELECT count(*) AS n FROM token_outcomes WHERE outcome = 'failed' AND batch_id IS NOT NULL"),
        2
    );
    assert!(clock.advanced() >= std::time::Duration::from_secs(59), "advanced {:?}", clock.advanced());
}

/// counting → jitter (pooled) → memory, in chunks of 7.
fn pooled(pool: usize, seed: u64, max_delay_ms: u64) -> Vec<(String, String)> {
    let body = format!(
        "transforms:\n- name: ask\n  plugin: jitter\n  input: in\n  on_success: out\n  on_error: discard\n  \
         options: {{pool_size: {pool}, seed: {seed}, max_delay_ms: {max_delay_ms}, schema: {{mode: observed}}}}"
    );
    let loaded = engine::settings::parse(Path::new("test.yaml"), &settings(30, &body), &|_| None).expect("settings");
    let pipeline = build_pipeline(loaded, &TestPlugins::default()).expect("pipeline");
    let mut recorder = Recorder::open("sqlite:///:memory:", None).expect("Landscape");
    let options = RunOptions { chunk_size: 7, ..RunOptions::default() };
    let summary = run_pipeline(pipeline, &mut recorder, options).expect("run recorded");
    assert_eq!(summary.status, RunStatus::Completed, "{:?}", summary.error);
    query_pairs(
        recorder.connection().expect("connection"),
        "SELECT CAST(r.row_index AS TEXT) AS a, s.step_index || ':' || s.status || ':' || s.output_hash || ':' || \
         coalesce(c.call_index, -1) || ':' || coalesce(c.request_hash, '') AS b \
         FROM node_states s JOIN tokens t ON t.token_id = s.token_id JOIN rows r ON r.row_id = t.row_id \
         LEFT JOIN calls c ON c.state_id = s.state_id ORDER BY s.rowid",
    )
    .expect("states")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..proptest::prelude::ProptestConfig::default() })]

    /// Whatever order the answers arrive in, a pool records the same audit
    /// trail, in the same order, as with instant answers; and every row's
    /// states and calls are those of one row at a time.
    #[test]
    fn pooled_rows_are_recorded_in_source_order(pool in 2_usize..12, seed in 0_u64..1_000_000) {
        let instant = pooled(pool, seed, 0);
        let jittered = pooled(pool, seed, 15);
        proptest::prop_assert_eq!(&jittered, &instant);
        let by_row = |audit: &[(String, String)]| {
            let mut rows = std::collections::BTreeMap::<String, Vec<String>>::new();
            for (row, entry) in audit {
                rows.entry(row.clone()).or_default().push(entry.clone());
            }
            rows
        };
        proptest::prop_assert_eq!(by_row(&jittered), by_row(&pooled(1, seed, 0)));
        proptest::prop_assert_eq!(jittered.len(), 30 * 3);
    }
}
