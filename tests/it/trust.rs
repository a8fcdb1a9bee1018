//! Trust holes a new user found, each reproduced through the binary: a
//! database of the user's own, unwritable places, two runs at once, what
//! `--format json` and the summary say, the resume hint, `--help` and
//! `--version`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use diesel::{Connection, RunQueryDsl, SqliteConnection};
use tests::elspeth_in;

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A small gate pipeline whose Landscape is at `db`.
fn pipeline(dir: &Path, db: &str, output_dir: &str) -> String {
    std::fs::write(dir.join("input.csv"), "id,amount\n1,5\n2,50\n3,500\n").expect("input");
    let settings = format!(
        "source:\n  plugin: csv\n  on_success: gate_in\n  options:\n    path: input.csv\n    schema: {{mode: fixed, fields: ['id: int', 'amount: int']}}\n    on_validation_failure: discard\n\
         gates:\n- name: big\n  input: gate_in\n  condition: \"row['amount'] > 10\"\n  routes: {{'true': high, 'false': low}}\n\
         sinks:\n  high:\n    plugin: csv\n    on_write_failure: discard\n    options: {{path: {output_dir}/high.csv, schema: {{mode: observed}}}}\n\
         \x20 low:\n    plugin: csv\n    on_write_failure: discard\n    options: {{path: {output_dir}/low.csv, schema: {{mode: observed}}}}\n\
         landscape: {{url: 'sqlite:///{db}'}}\n"
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
    "settings.yaml".to_owned()
}

#[test]
fn a_database_of_the_users_own_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("customers.db");
    let mut own = SqliteConnection::establish(db.to_str().expect("utf-8")).expect("sqlite");
    diesel::sql_query("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)").execute(&mut own).expect("create");
    diesel::sql_query("INSERT INTO customers VALUES (1, 'Ada')").execute(&mut own).expect("insert");
    drop(own);
    let before = std::fs::read(&db).expect("db");
    let settings = pipeline(dir.path(), "customers.db", "out");
    let run = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run));
    let message = text(&run);
    assert!(message.contains("customers.db") && message.contains("tables of its own (customers)"), "{message}");
    assert_eq!(std::fs::read(&db).expect("db"), before, "the user's database is byte for byte unchanged");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!files.iter().any(|f| f.starts_with("customers.db-")), "no journal beside it: {files:?}");
    assert!(!dir.path().join("out").exists(), "nothing was run");
}

#[test]
fn a_file_that_is_not_a_database_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("notes.db"), "these are my notes, not a database\n".repeat(200)).expect("notes");
    let settings = pipeline(dir.path(), "notes.db", "out");
    let run = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run));
    let message = text(&run);
    assert!(message.contains("notes.db") && message.contains("not a database"), "{message}");
}

/// `rows` rows for the gate pipeline.
fn big_input(dir: &Path, rows: u32) {
    let mut text = String::from("id,amount\n");
    for i in 0..rows {
        let _ = writeln!(text, "{i},{}", i % 1000);
    }
    std::fs::write(dir.join("input.csv"), text).expect("input");
}

fn spawn(dir: &Path, settings: &str) -> std::process::Child {
    std::process::Command::new(tests::elspeth_binary())
        .current_dir(dir)
        .args(["run", "--settings", settings, "--execute", "--chunk-size", "200", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("elspeth starts")
}

#[test]
fn two_runs_at_once_work_on_one_landscape_and_on_two() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Two pipelines sharing one Landscape, two with their own, all at once,
    // all in the same working directory.
    let shared_a = pipeline(dir.path(), "shared.db", "out_a");
    std::fs::rename(dir.path().join(&shared_a), dir.path().join("a.yaml")).expect("rename");
    pipeline(dir.path(), "shared.db", "out_b");
    std::fs::rename(dir.path().join("settings.yaml"), dir.path().join("b.yaml")).expect("rename");
    pipeline(dir.path(), "own_c.db", "out_c");
    std::fs::rename(dir.path().join("settings.yaml"), dir.path().join("c.yaml")).expect("rename");
    pipeline(dir.path(), "own_d.db", "out_d");
    std::fs::rename(dir.path().join("settings.yaml"), dir.path().join("d.yaml")).expect("rename");
    big_input(dir.path(), 20_000);
    let children: Vec<_> = ["a.yaml", "b.yaml", "c.yaml", "d.yaml"].iter().map(|s| (s, spawn(dir.path(), s))).collect();
    for (settings, child) in children {
        let output = child.wait_with_output().expect("elspeth ends");
        assert!(output.status.success(), "{settings}: {}", text(&output));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
        assert_eq!(summary["rows_read"], 20_000, "{settings}");
    }
    let mut shared = tests::landscape_at(dir.path(), "shared.db");
    let completed = landscape::connection::query_i64(&mut shared, "SELECT count(*) AS n FROM runs WHERE status = 'completed'");
    assert_eq!(completed.expect("runs"), 2);
    let rows = landscape::connection::query_i64(&mut shared, "SELECT count(*) AS n FROM rows");
    assert_eq!(rows.expect("rows"), 40_000);
    assert!(tests::audit_violations(&mut shared).is_empty());
    for store in ["shared.payloads", "own_c.payloads", "own_d.payloads"] {
        assert!(dir.path().join(store).join("payloads.sqlite").is_file(), "{store}: each Landscape has its own payload store");
    }
    assert!(!dir.path().join(".elspeth").exists(), "no store in the working directory");
}
