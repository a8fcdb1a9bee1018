//! The `database` sink end to end: the reference's `database_sink` example,
//! statements recorded as `sql` calls under the sink's operation, a run
//! killed anywhere resuming with each row in the table exactly once, and
//! the same on a real PostgreSQL server.

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use landscape::connection::{query_i64, query_pairs};
use tests::{audit_violations, elspeth_binary, example_dir, landscape_at, output_text, run_example};

#[test]
fn the_database_sink_example_writes_its_table_and_records_every_statement() {
    let (dir, output) = run_example("database_sink", &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let deals = dir.path().join("examples/database_sink/output/deals.db");
    let mut target = landscape::DbConnection::Sqlite(
        diesel::SqliteConnection::establish(&deals.to_string_lossy()).expect("the sink's database opens"),
    );
    let rows = query_pairs(
        &mut target,
        "SELECT CAST(id AS TEXT) AS a, customer || ':' || amount AS b FROM high_value_deals ORDER BY id",
    )
    .expect("table");
    assert!(
        !rows.is_empty()
            && rows.iter().all(|(_, b)| b.rsplit(':').next().and_then(|n| n.parse::<i64>().ok()).is_some_and(|n| n >= 5000))
    );
    let mut db = landscape_at(dir.path(), "examples/database_sink/runs/audit.db");
    assert!(audit_violations(&mut db).is_empty());
    let calls = query_pairs(
        &mut db,
        "SELECT c.call_type || ':' || c.status AS a, o.operation_type AS b FROM calls c \
         JOIN operations o ON o.operation_id = c.operation_id ORDER BY c.call_index",
    )
    .expect("calls");
    assert_eq!(
        calls.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["sql:success", "sql:success", "sql:success"],
        "drop, create, insert"
    );
    let routed =
        query_i64(&mut db, "SELECT count(*) AS n FROM token_outcomes WHERE sink_name = 'high_value_db'").expect("outcomes");
    assert_eq!(usize::try_from(routed).unwrap_or(0), rows.len());
    let artifact =
        query_pairs(&mut db, "SELECT artifact_type AS a, path_or_uri AS b FROM artifacts WHERE artifact_type = 'database'")
            .expect("artifacts");
    assert!(artifact[0].1.starts_with("db://high_value_deals@sqlite:///"), "{artifact:?}");
}

const SETTINGS: &str = r"
source:
  plugin: csv
  on_success: out
  options: {path: input.csv, schema: {mode: fixed, fields: ['id: int', 'name: str', 'score: float']}, on_validation_failure: discard}
sinks:
  out:
    plugin: database
    on_write_failure: discard
    options: {url: 'URL', table: results, if_exists: append, schema: {mode: fixed, fields: ['id: int', 'name: str', 'score: float']}}
landscape: {url: 'sqlite:///audit.db'}
";

fn prepare(dir: &Path, url: &str) {
    let input: String = std::iter::once("id,name,score\n".to_owned())
        .chain((0..14).map(|i| format!("{i},name {},{}.5\n", i % 3, i % 5)))
        .collect();
    std::fs::write(dir.join("input.csv"), input).expect("input");
    std::fs::write(dir.join("settings.yaml"), SETTINGS.replace("URL", url)).expect("settings");
}

fn table(url: &str) -> Vec<(String, String)> {
    let mut target = match url.strip_prefix("sqlite:///") {
        Some(path) => landscape::DbConnection::Sqlite(diesel::SqliteConnection::establish(path).expect("sqlite")),
        None => landscape::DbConnection::Postgresql(diesel::PgConnection::establish(url).expect("postgres")),
    };
    query_pairs(
        &mut target,
        "SELECT CAST(id AS TEXT) AS a, name || ':' || CAST(score AS TEXT) AS b FROM results ORDER BY id, name",
    )
    .expect("table")
}

fn run(dir: &Path, crash_at: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(elspeth_binary());
    command.current_dir(dir).args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", "3"]);
    if let Some(point) = crash_at {
        command.env("ELSPETH_TEST_CRASH_AT", point);
    }
    command.output().expect("elspeth runs")
}

/// Kills a run at every row, sink write and commit, resumes it, and checks
/// the table holds each row once — the rows an uninterrupted run writes,
/// after what an earlier run had written.
fn killed_anywhere_resumes_exactly_once(mut url_for: impl FnMut(&Path) -> String) {
    let reference = tempfile::tempdir().expect("temp dir");
    let url = url_for(reference.path());
    prepare(reference.path(), &url);
    for _ in 0..2 {
        let output = run(reference.path(), None);
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let expected = table(&url);
    assert_eq!(expected.len(), 28);
    let mut points: Vec<String> = (1..=14).map(|n| format!("row:{n}")).collect();
    points.extend((1..=5).map(|n| format!("sink:{n}")));
    points.extend((1..=5).flat_map(|n| [format!("commit:{n}:before"), format!("commit:{n}:after")]));
    let mut crashed = 0;
    for point in points {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = url_for(dir.path());
        prepare(dir.path(), &url);
        let earlier = run(dir.path(), None);
        assert!(earlier.status.success(), "the earlier run: {}", output_text(&earlier));
        let output = run(dir.path(), Some(&point));
        if output.status.code().is_none() {
            crashed += 1;
            tests::resume_latest(dir.path(), "3", &point);
        } else {
            assert!(output.status.success(), "{point}: {}", output_text(&output));
        }
        assert_eq!(table(&url), expected, "{point}: each row once");
        let mut db = landscape_at(dir.path(), "audit.db");
        assert!(audit_violations(&mut db).is_empty(), "{point}");
    }
    assert!(crashed >= 20, "only {crashed} points crashed the run");
}

#[test]
fn a_database_sink_killed_anywhere_resumes_with_each_row_once() {
    killed_anywhere_resumes_exactly_once(|dir| format!("sqlite:///{}", dir.join("target.db").display()));
}

#[test]
fn a_database_sink_writes_to_postgresql_exactly_once_too() {
    let Some(server) = test_support::pg_server_or_skip("database sink on PostgreSQL") else { return };
    let mut admin = diesel::PgConnection::establish(&server.url()).expect("postgres");
    let mut counter = 0;
    killed_anywhere_resumes_exactly_once(|_| {
        counter += 1;
        let name = format!("sink{counter}");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        server.database_url(&name)
    });
}

#[test]
fn the_password_of_a_database_url_is_never_stored() {
    let dir = example_dir("database_sink");
    let settings = dir.path().join("examples/database_sink/settings.yaml");
    let text = std::fs::read_to_string(&settings).expect("settings").replace(
        "url: sqlite:///examples/database_sink/output/deals.db",
        "url: postgresql://writer:hunter2-secret@127.0.0.1:9/deals",
    );
    std::fs::write(&settings, text).expect("settings");
    let output = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env_remove("ELSPETH_FINGERPRINT_KEY")
        .args(["run", "--settings", "examples/database_sink/settings.yaml", "--execute"])
        .output()
        .expect("elspeth runs");
    assert!(!output.status.success(), "a password needs a fingerprint key");
    assert!(output_text(&output).contains("ELSPETH_FINGERPRINT_KEY"), "{}", output_text(&output));
}
