//! The read-only side of the Landscape: read-only connections refuse
//! writes, and `analysis::select` runs exactly one query, bounded in rows and
//! time, on SQLite and on PostgreSQL.

use std::time::Duration;

use landscape::analysis::{select, SelectError};
use landscape::Recorder;

use crate::fixtures::fixture;

fn recorded(url: &str) {
    let mut recorder = Recorder::open(url, None).expect("Landscape opens");
    fixture(&mut recorder);
}

fn select_suite(url: &str) {
    recorded(url);
    let ok = |sql: &str, rows: usize| select(url, sql, rows, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let counted = ok("SELECT count(*) AS n, min(row_index) AS first FROM rows", 10);
    assert_eq!(counted.columns, ["n", "first"]);
    assert_eq!(counted.rows, vec![vec![serde_json::json!(1), serde_json::json!(0)]]);
    assert!(!counted.truncated);
    let cut = ok("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT x FROM c;", 2);
    assert_eq!((cut.rows.len(), cut.truncated), (2, true));

    for sql in [
        "DELETE FROM rows",
        "INSERT INTO runs (run_id) VALUES ('x')",
        "SELECT 1; DELETE FROM rows",
        "CREATE TABLE x (a INT)",
        "SELECT * INTO stolen FROM rows",
        "WITH d AS (DELETE FROM rows RETURNING row_id) SELECT * FROM d",
        "SELECT * FROM rows FOR UPDATE",
    ] {
        let refused = select(url, sql, 10, Duration::from_secs(5));
        assert!(
            matches!(refused, Err(SelectError::NotAQuery(_) | SelectError::NotOne(_) | SelectError::Parse(_))),
            "{sql}: {refused:?}"
        );
    }
    assert_eq!(ok("SELECT count(*) AS n FROM rows", 1).rows, vec![vec![serde_json::json!(1)]], "nothing was written");
}

#[test]
fn select_on_sqlite_is_one_bounded_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:///{}", dir.path().join("audit.db").display());
    select_suite(&url);
    for sql in ["ATTACH DATABASE 'other.db' AS other", "PRAGMA user_version = 3", "SELECT * FROM pragma_user_version"] {
        assert!(select(&url, sql, 10, Duration::from_secs(5)).is_err(), "{sql}");
    }
    assert!(!dir.path().join("other.db").exists());
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    assert!(matches!(select(&url, endless, 10, Duration::from_millis(100)), Err(SelectError::Timeout(_))));
}

#[test]
fn select_on_postgresql_is_one_bounded_read() {
    let Some(server) = test_support::pg_server_or_skip("select_on_postgresql_is_one_bounded_read") else { return };
    let url = server.fresh_database();
    select_suite(&url);
    assert!(matches!(select(&url, "SELECT pg_sleep(10)", 10, Duration::from_millis(200)), Err(SelectError::Timeout(_))));
    let written = select(&url, "SELECT nextval('x')", 10, Duration::from_secs(5));
    assert!(matches!(written, Err(SelectError::Database(_))), "{written:?}");
}

fn read_only_suite(url: &str) {
    recorded(url);
    let mut reader = Recorder::open_read_only(url, None).expect("opens read-only");
    let runs = reader.list_runs().expect("reads");
    assert_eq!(runs.len(), 1);
    assert!(reader.begin_run(&serde_json::json!({}), None).is_err(), "a read-only Landscape refuses writes");
    assert_eq!(reader.list_runs().expect("reads").len(), 1);
}

#[test]
fn read_only_landscapes_refuse_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    read_only_suite(&format!("sqlite:///{}", dir.path().join("audit.db").display()));
    assert!(Recorder::open_read_only(&format!("sqlite:///{}", dir.path().join("none.db").display()), None).is_err());
    assert!(!dir.path().join("none.db").exists());
    if let Some(server) = test_support::pg_server_or_skip("read_only_landscapes_refuse_writes") {
        read_only_suite(&server.fresh_database());
    }
}

/// Statements the analysis layer issues to answer what the explorer's run
/// page, a page of rows and the MCP summaries ask, for a run of `n_rows` rows.
fn analysis_queries(n_rows: u64) -> usize {
    use landscape::analysis::{CallsFilter, Page};
    let (_dir, mut recorder, f) = crate::fixtures::run_of(n_rows);
    let count = crate::fixtures::count_statements(&mut recorder);
    let run = &f.run.run_id;
    let middle = Page::new(n_rows / 2, 50);
    assert_eq!(recorder.run_counts(run).expect("counts").rows, n_rows);
    recorder.node_stats(run).expect("nodes");
    recorder.edge_counts(run).expect("edges");
    recorder.call_usage(run).expect("usage");
    assert_eq!(recorder.rows_page(run, middle).expect("rows").items.len(), 50);
    recorder.tokens_page(run, None, middle).expect("tokens");
    recorder.node_states_page(run, None, None, middle).expect("states");
    recorder.calls_page(run, &CallsFilter::default(), middle).expect("calls");
    recorder.validation_errors_page(run, false, middle).expect("validation errors");
    recorder.transform_errors_page(run, middle).expect("transform errors");
    recorder.failure_context(run, 10).expect("failures");
    count.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn the_number_of_analysis_queries_does_not_depend_on_the_run_size() {
    assert_eq!(analysis_queries(100), analysis_queries(3_000));
}
