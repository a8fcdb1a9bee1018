//! `elspeth resume` end to end: an interrupted example resumes to the
//! expected outputs; a changed settings file, a changed input, a live run and
//! a completed run are refused with a clear message and nothing is touched.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use landscape::connection::query_i64;
use tests::{audit_violations, elspeth_binary, elspeth_in, example_dir, landscape_at, semantic_rows};

const EXAMPLE: &str = "examples/checkpoint_resume/settings.yaml";

fn interrupted_run(dir: &Path, after_rows: &str) -> Output {
    Command::new(elspeth_binary())
        .current_dir(dir)
        .env("ELSPETH_TEST_INTERRUPT_AFTER_ROWS", after_rows)
        .args(["run", "--settings", EXAMPLE, "--execute", "--chunk-size", "3"])
        .output()
        .expect("elspeth runs")
}

fn resume(dir: &Path, settings: &str) -> Output {
    elspeth_in(dir, &["resume", "latest", "--settings", settings, "--chunk-size", "3"])
}

#[test]
fn an_interrupted_run_resumes_to_the_outputs_of_an_uninterrupted_one() {
    let whole = example_dir("checkpoint_resume");
    let run = elspeth_in(whole.path(), &["run", "--settings", EXAMPLE, "--execute", "--chunk-size", "3"]);
    assert!(run.status.success());
    let dir = example_dir("checkpoint_resume");
    let first = interrupted_run(dir.path(), "7");
    assert_eq!(first.status.code(), Some(3), "interrupted: {}", String::from_utf8_lossy(&first.stdout));
    let resumed = resume(dir.path(), EXAMPLE);
    assert!(
        resumed.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("completed"));
    for file in ["active_customers.csv", "other_customers.csv"] {
        let path = |d: &Path| d.join("examples/checkpoint_resume/output").join(file);
        let got = std::fs::read(path(dir.path())).expect("output");
        assert_eq!(got, std::fs::read(path(whole.path())).expect("reference output"), "{file} differs byte for byte");
        let expected = tests::workspace().join("examples/checkpoint_resume/expected").join(file);
        assert_eq!(semantic_rows(&path(dir.path())), semantic_rows(&expected), "{file}");
    }
    let mut db = landscape_at(dir.path(), "examples/checkpoint_resume/runs/audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs").expect("q"), 1, "resume continues the same run");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'completed'").expect("q"), 1);
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM rows").expect("q"), 20, "every row exactly once");
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}

#[test]
fn resume_refuses_changed_settings_a_changed_input_and_a_completed_run() {
    let dir = example_dir("checkpoint_resume");
    assert_eq!(interrupted_run(dir.path(), "7").status.code(), Some(3));
    let settings_path = dir.path().join(EXAMPLE);
    let original = std::fs::read_to_string(&settings_path).expect("settings");

    std::fs::write(&settings_path, original.replace("row['status'] == 'active'", "row['status'] != 'active'")).expect("edit");
    let refused = resume(dir.path(), EXAMPLE);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("cannot resume") && message.contains("settings differ"), "{message}");
    std::fs::write(&settings_path, &original).expect("restore");

    let input = dir.path().join("examples/checkpoint_resume/input.csv");
    let data = std::fs::read_to_string(&input).expect("input");
    let mut lines: Vec<String> = data.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen(',', ",X", 1);
    std::fs::write(&input, lines.join("\n") + "\n").expect("edit input");
    let refused = resume(dir.path(), EXAMPLE);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("source row 2 differs") && message.contains("input changed"), "{message}");
    std::fs::write(&input, data).expect("restore input");

    let mut db = landscape_at(dir.path(), "examples/checkpoint_resume/runs/audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'interrupted'").expect("q"),
        1,
        "refusals touch nothing"
    );
    drop(db);
    assert!(resume(dir.path(), EXAMPLE).status.success());
    let again = resume(dir.path(), EXAMPLE);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to resume"));
}

#[test]
fn an_output_edited_inside_its_checkpointed_part_is_refused_with_the_place() {
    let dir = example_dir("checkpoint_resume");
    assert_eq!(interrupted_run(dir.path(), "7").status.code(), Some(3));
    let output = dir.path().join("examples/checkpoint_resume/output/active_customers.csv");
    let original = std::fs::read(&output).expect("output");
    let mut tampered = original.clone();
    // One byte of the last line the run wrote (inside the checkpointed part).
    let last_line = tampered[..tampered.len() - 1].iter().rposition(|b| *b == b'\n').expect("lines") + 1;
    tampered[last_line] = if tampered[last_line] == b'9' { b'8' } else { b'9' };
    std::fs::write(&output, &tampered).expect("tamper");
    let refused = resume(dir.path(), EXAMPLE);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(message.contains("cannot resume") && message.contains("active_customers.csv"), "{message}");
    assert!(message.contains("was changed after the run checkpointed it"), "{message}");
    let from: u64 = regex::Regex::new(r"from offset (\d+) to (\d+)")
        .expect("regex")
        .captures(&message)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no offsets in {message}"));
    assert!(from <= last_line as u64, "the change at byte {last_line} lies after offset {from}");
    assert_eq!(std::fs::read(&output).expect("output"), tampered, "a refused resume changes nothing");
    let mut db = landscape_at(dir.path(), "examples/checkpoint_resume/runs/audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'interrupted'").expect("q"), 1);
    drop(db);
    // Put back, it resumes.
    std::fs::write(&output, &original).expect("restore");
    assert!(resume(dir.path(), EXAMPLE).status.success());
}

#[test]
fn a_damaged_or_foreign_checkpoint_is_refused_not_read_as_empty() {
    let dir = example_dir("checkpoint_resume");
    assert_eq!(interrupted_run(dir.path(), "7").status.code(), Some(3));
    let output = dir.path().join("examples/checkpoint_resume/output/active_customers.csv");
    let before = std::fs::read(&output).expect("output");
    let mut db = landscape_at(dir.path(), "examples/checkpoint_resume/runs/audit.db");
    let latest = "(SELECT max(sequence_number) FROM checkpoints)";
    let saved: String = landscape::connection::query_pairs(
        &mut db,
        &format!(
            "SELECT aggregation_state_json AS a, coalesce_state_json AS b FROM checkpoints WHERE sequence_number = {latest}"
        ),
    )
    .expect("checkpoint")
    .remove(0)
    .0;
    let cases = [
        // Buffers and sinks missing: an incomplete checkpoint.
        (r#"{"format_version":2,"rows_read":6}"#.to_owned(), "the checkpoint is damaged"),
        // A field this build does not know.
        (saved.replacen('{', r#"{"surprise":1,"#, 1), "unknown field `surprise`"),
        // Another format.
        (saved.replace(r#""format_version":2"#, r#""format_version":1"#), "format version 1"),
        (saved.replace(r#""format_version":2,"#, ""), "format version none"),
    ];
    for (damaged, expected) in cases {
        let sql = format!(
            "UPDATE checkpoints SET aggregation_state_json = '{}' WHERE sequence_number = {latest}",
            damaged.replace('\'', "''")
        );
        landscape::connection::execute_raw(&mut db, &sql).expect("damage the checkpoint");
        let refused = resume(dir.path(), EXAMPLE);
        let message = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{message}");
        assert!(message.contains("cannot resume") && message.contains(expected), "expected {expected:?}: {message}");
        assert_eq!(std::fs::read(&output).expect("output"), before, "a refused resume touches no output");
    }
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM runs WHERE status = 'interrupted'").expect("q"), 1);
}

#[test]
fn resume_refuses_a_run_whose_process_is_alive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("mkfifo").arg(dir.path().join("input.jsonl")).status().expect("mkfifo");
    assert!(status.success());
    std::fs::write(
        dir.path().join("settings.yaml"),
        "source:\n  plugin: json\n  on_success: out\n  options: {path: input.jsonl, schema: {mode: observed}, on_validation_failure: discard}\n\
         sinks:\n  out:\n    plugin: json\n    on_write_failure: discard\n    options: {path: out.jsonl, schema: {mode: observed}}\n\
         landscape: {url: 'sqlite:///audit.db'}\npayload_store: {base_path: payloads}\n",
    )
    .expect("settings");
    let child = Command::new(elspeth_binary())
        .current_dir(dir.path())
        .args(["run", "--settings", "settings.yaml", "--execute"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("elspeth starts");
    // Opening the pipe for writing waits until the run opened it to read: the
    // run exists and is alive from here on.
    let mut pipe = std::fs::OpenOptions::new().write(true).open(dir.path().join("input.jsonl")).expect("open the pipe");
    let refused = elspeth_in(dir.path(), &["resume", "latest", "--settings", "settings.yaml"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("is still running") && message.contains(&format!("process {}", child.id())), "{message}");
    pipe.write_all(b"{\"id\": 1}\n").expect("write");
    drop(pipe);
    let output = child.wait_with_output().expect("the run ends");
    assert!(output.status.success());
}

#[test]
fn a_batch_pending_when_the_run_was_interrupted_is_finished_by_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: Vec<String> = (1..=4).map(|i| serde_json::json!({"id": i, "amount": i}).to_string()).collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input");
    std::fs::write(
        dir.path().join("settings.yaml"),
        "source:\n  plugin: json\n  on_success: in\n  options: {path: input.jsonl, schema: {mode: observed}, on_validation_failure: discard}\n\
         aggregations:\n- name: job\n  plugin: command_batch\n  input: in\n  on_success: out\n  on_error: discard\n  output_mode: passthrough\n  \
         trigger: {count: 2}\n  options: {command: [sh, -c, 'sleep 0.5; cat'], poll_interval_seconds: 0.05, work_dir: jobs, schema: {mode: observed}}\n\
         sinks:\n  out:\n    plugin: json\n    on_write_failure: discard\n    options: {path: out.jsonl, schema: {mode: observed}}\n\
         landscape: {url: 'sqlite:///audit.db'}\npayload_store: {base_path: payloads}\n",
    )
    .expect("settings");
    // Interrupted right after the first batch was handed to its program.
    let first = Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_TEST_INTERRUPT_AFTER_ROWS", "2")
        .args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", "2"])
        .output()
        .expect("elspeth runs");
    assert_eq!(first.status.code(), Some(3), "{}", String::from_utf8_lossy(&first.stderr));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM batches b JOIN node_states s ON s.state_id = b.aggregation_state_id WHERE b.status = 'executing' AND s.status = 'pending'").expect("q"),
        1,
        "the interrupted run leaves its job pending, not open"
    );
    drop(db);
    let resumed = elspeth_in(dir.path(), &["resume", "latest", "--settings", "settings.yaml", "--chunk-size", "2"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let mut db = landscape_at(dir.path(), "audit.db");
    assert_eq!(query_i64(&mut db, "SELECT count(*) AS n FROM batches WHERE status = 'completed'").expect("q"), 2);
    assert_eq!(
        query_i64(&mut db, "SELECT count(*) AS n FROM calls WHERE call_type = 'process' AND status = 'success'").expect("q"),
        2,
        "the job started before the interruption was collected after it"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out").lines().count(), 4);
    assert!(audit_violations(&mut db).is_empty(), "{:?}", audit_violations(&mut db));
}
