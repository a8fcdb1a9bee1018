//! Trust holes a new user found, each reproduced through the binary: a
//! database of the user's own, unwritable places, two runs at once, what
//! `--format json` and the summary say, the resume hint, `--help` and
//! `--version`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use diesel::{Connection, RunQueryDsl, SqliteConnection};
use tests::{elspeth_in, example_dir};

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

fn run_json(dir: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let output = elspeth_in(dir, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let document: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}"));
    (output, document)
}

#[test]
fn a_condition_on_a_field_the_fixed_schema_lacks_is_refused_at_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(dir.path(), "audit.db", "out");
    let text_before = std::fs::read_to_string(dir.path().join(&settings)).expect("settings");
    std::fs::write(dir.path().join(&settings), text_before.replace("row['amount'] > 10", "row['amout'] > 10")).expect("edit");
    for command in [vec!["validate", "--settings", &settings], vec!["run", "--settings", &settings, "--execute"]] {
        let output = elspeth_in(dir.path(), &command);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        let message = text(&output);
        assert!(message.contains("settings.yaml:") && message.contains("gates[0].condition"), "{message}");
        assert!(message.contains("row[\"amout\"]") && message.contains("did you mean \"amount\"?"), "{message}");
    }
    assert!(!dir.path().join("audit.db").exists(), "nothing ran");
}

#[test]
fn a_run_whose_every_row_failed_says_so_loudly_and_exits_5() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(dir.path(), "audit.db", "out");
    let original = std::fs::read_to_string(dir.path().join(&settings)).expect("settings");
    // An observed schema cannot be checked at validate time: every row fails at run time.
    let observed = original.replace("schema: {mode: fixed, fields: ['id: int', 'amount: int']}", "schema: {mode: observed}");
    std::fs::write(dir.path().join(&settings), observed.replace("row['amount'] > 10", "row['amout'] > 10")).expect("edit");
    let output = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    assert!(text(&output).contains("WARNING: every row failed: 3 rows read, 3 tokens failed"), "{}", text(&output));
    let (output, document) = run_json(dir.path(), &["run", "--settings", &settings, "--execute", "--format", "json"]);
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(document["status"], "completed");
    assert_eq!(document["all_rows_failed"], true);
    assert_eq!(document["outcomes"]["failed"], 3);
}

#[test]
fn format_json_prints_one_document_whatever_goes_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = pipeline(dir.path(), "audit.db", "out");
    let original = std::fs::read_to_string(dir.path().join(&settings)).expect("settings");
    std::fs::write(dir.path().join(&settings), original.replace("routes:", "routez:")).expect("edit");
    let (output, document) = run_json(dir.path(), &["run", "--settings", &settings, "--execute", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(document["status"], "invalid");
    let first = &document["errors"][0];
    assert!(first["line"].as_u64().is_some() && first["message"].as_str().is_some(), "{document}");
    let (output, document) = run_json(dir.path(), &["run", "--settings", "missing.yaml", "--execute", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(document["status"], "invalid");
    // An unusable Landscape.
    std::fs::write(dir.path().join(&settings), original.replace("sqlite:///audit.db", "sqlite:///notes.db")).expect("edit");
    std::fs::write(dir.path().join("notes.db"), "not a database at all\n".repeat(100)).expect("notes");
    let (output, document) = run_json(dir.path(), &["run", "--settings", &settings, "--execute", "--format", "json"]);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(document["status"], "error");
    assert!(document["errors"][0]["message"].as_str().is_some_and(|m| m.contains("notes.db")), "{document}");
    let (_, document) = run_json(dir.path(), &["run", "--settings", &settings, "--format", "json"]);
    assert_eq!(document["status"], "valid");
}

#[test]
fn unwritable_places_are_named_and_a_new_landscape_directory_is_announced() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a_file"), "x").expect("file");
    // The output directory cannot be created (its parent is a file).
    let settings = pipeline(dir.path(), "audit.db", "a_file/out");
    let output = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("a_file/out/"), "names the output: {}", text(&output));
    // Nor can the Landscape's.
    let settings = pipeline(dir.path(), "a_file/audit.db", "out");
    let output = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    assert!(text(&output).contains("cannot create the Landscape's directory a_file"), "{}", text(&output));
    // A new directory for the Landscape is created, and said so.
    let settings = pipeline(dir.path(), "state/deep/audit.db", "out");
    let output = elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("note: created the directory state/deep for the Landscape"), "{}", text(&output));
    assert!(dir.path().join("state/deep/audit.db").is_file());
    assert!(dir.path().join("state/deep/audit.payloads").is_dir());
}

#[test]
fn an_interrupted_run_prints_its_resume_command_and_the_summary_covers_the_whole_run() {
    let whole = example_dir("checkpoint_resume");
    let settings = "examples/checkpoint_resume/settings.yaml";
    let (_, reference) = run_json(whole.path(), &["run", "--settings", settings, "--execute", "--format", "json"]);
    let dir = example_dir("checkpoint_resume");
    let interrupted = std::process::Command::new(tests::elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_TEST_INTERRUPT_AFTER_ROWS", "7")
        .args(["run", "--settings", settings, "--execute", "--chunk-size", "3"])
        .output()
        .expect("runs");
    assert_eq!(interrupted.status.code(), Some(3));
    let message = text(&interrupted);
    let run_id = message.split_whitespace().nth(1).expect("run id").to_owned();
    let command = format!("elspeth resume {run_id} --settings {settings}");
    assert!(message.contains(&command), "{message}");
    let (resumed, document) =
        run_json(dir.path(), &["resume", &run_id, "--settings", settings, "--chunk-size", "3", "--format", "json"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(document["outcomes"], reference["outcomes"], "totals cover the whole run");
    assert_eq!(document["sinks"], reference["sinks"], "so does the per-sink table");
    assert_eq!(document["resume_command"], serde_json::Value::Null);
}

#[test]
fn help_version_and_runs_tell_what_a_user_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let version = elspeth_in(dir.path(), &["--version"]);
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        regex::Regex::new(r"^elspeth \d+\.\d+\.\d+( \(git [0-9a-f]{12}\))?\n$").expect("re").is_match(&version),
        "{version:?}"
    );
    assert!(!version.contains("0.0.0"), "{version}");
    let export = text(&elspeth_in(dir.path(), &["export", "--help"]));
    assert!(export.contains("--sign") && export.contains("ELSPETH_SIGNING_KEY") && export.contains("16 bytes"), "{export}");
    let verify = text(&elspeth_in(dir.path(), &["verify", "--help"]));
    assert!(verify.contains("<PATH>") && verify.contains("The JSON Lines export to check"), "{verify}");
    assert!(verify.contains("--allow-unsigned"), "{verify}");
    let settings = pipeline(dir.path(), "audit.db", "out");
    assert!(elspeth_in(dir.path(), &["run", "--settings", &settings, "--execute"]).status.success());
    let runs = text(&elspeth_in(dir.path(), &["runs", "--database", "sqlite:///audit.db"]));
    let mut lines = runs.lines();
    let header = lines.next().expect("header");
    for column in ["run", "status", "started", "rows", "grade", "pipeline"] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().expect("a run");
    assert!(
        row.contains("completed") && row.contains("replay_reproducible") && row.contains("csv input.csv -> high, low"),
        "{runs}"
    );
}
