//! CSV and JSON Lines sinks with `mode: append`: what the file held is kept,
//! a CSV header is written only into an empty file (and must match an
//! existing one), and a run killed anywhere — before its first checkpoint
//! too — resumes with each row once after the earlier content.

use std::path::Path;

use tests::{elspeth_binary, output_text};

const SETTINGS: &str = r"
source:
  plugin: csv
  on_success: out
  options: {path: input.csv, schema: {mode: fixed, fields: ['id: int', 'word: str']}, on_validation_failure: discard}
sinks:
  out:
    plugin: PLUGIN
    on_write_failure: discard
    options: {path: out/FILE, mode: append, schema: {mode: fixed, fields: ['id: int', 'word: str']}}
landscape: {url: 'sqlite:///audit.db'}
";

fn prepare(dir: &Path, plugin: &str, file: &str, earlier: &str) {
    let input: String = std::iter::once("id,word\n".to_owned()).chain((0..10).map(|i| format!("{i},w{i}\n"))).collect();
    std::fs::write(dir.join("input.csv"), input).expect("input");
    std::fs::write(dir.join("settings.yaml"), SETTINGS.replace("PLUGIN", plugin).replace("FILE", file)).expect("settings");
    std::fs::create_dir_all(dir.join("out")).expect("out");
    std::fs::write(dir.join("out").join(file), earlier).expect("earlier content");
}

fn run(dir: &Path, crash_at: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(elspeth_binary());
    command.current_dir(dir).args(["run", "--settings", "settings.yaml", "--execute", "--chunk-size", "3"]);
    if let Some(point) = crash_at {
        command.env("ELSPETH_TEST_CRASH_AT", point);
    }
    command.output().expect("elspeth runs")
}

#[test]
fn a_csv_sink_appends_under_the_existing_header_and_refuses_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), "csv", "out.csv", "id,word\n100,earlier\n");
    for _ in 0..2 {
        let output = run(dir.path(), None);
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let text = std::fs::read_to_string(dir.path().join("out/out.csv")).expect("file");
    assert!(text.starts_with("id,word\n100,earlier\n0,w0\n"), "{text}");
    assert_eq!(text.matches("id,word").count(), 1, "one header: {text}");
    assert_eq!(text.lines().count(), 1 + 1 + 20);
    assert!(!dir.path().join("out/out.csv.elspeth-append").exists(), "the pre-run marker goes with a completed run");

    let other = tempfile::tempdir().expect("temp dir");
    prepare(other.path(), "csv", "out.csv", "name,score\nx,1\n");
    let output = run(other.path(), None);
    assert!(!output.status.success());
    assert!(output_text(&output).contains("header"), "{}", output_text(&output));
    assert_eq!(std::fs::read_to_string(other.path().join("out/out.csv")).expect("file"), "name,score\nx,1\n", "left unchanged");
}

#[test]
fn an_appending_run_killed_anywhere_resumes_after_the_earlier_content_with_each_row_once() {
    let earlier = "{\"id\":100,\"word\":\"earlier\"}\n";
    let reference = tempfile::tempdir().expect("temp dir");
    prepare(reference.path(), "json", "out.jsonl", earlier);
    assert!(run(reference.path(), None).status.success());
    let expected = std::fs::read_to_string(reference.path().join("out/out.jsonl")).expect("file");
    assert!(expected.starts_with(earlier) && expected.lines().count() == 11, "{expected}");
    let mut crashed = 0;
    let points =
        ["row:1", "row:2", "row:5", "sink:1", "sink:2", "commit:1:before", "commit:1:after", "commit:2:before", "row:10"];
    for point in points {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path(), "json", "out.jsonl", earlier);
        let output = run(dir.path(), Some(point));
        if output.status.code().is_none() {
            crashed += 1;
            tests::resume_latest(dir.path(), "3", point);
        }
        let got = std::fs::read_to_string(dir.path().join("out/out.jsonl")).expect("file");
        assert_eq!(got, expected, "{point}");
    }
    assert!(crashed >= 7, "{crashed}");
}

#[test]
fn a_json_array_cannot_be_appended_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path(), "json", "out.json", "[]\n");
    let output = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .args(["validate", "--settings", "settings.yaml"])
        .output()
        .expect("elspeth runs");
    assert!(!output.status.success());
    assert!(output_text(&output).contains("mode append needs format jsonl"), "{}", output_text(&output));
}
