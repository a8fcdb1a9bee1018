//! `elspeth export` / `elspeth verify` and the export at the end of a run.

use landscape::connection::query_pairs;
use tests::{elspeth_in, landscape_at, run_example};

#[test]
fn the_configured_export_is_written_verified_and_recorded() {
    let (dir, output) = run_example("audit_export", &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let trail = "examples/audit_export/output/audit_trail.json";
    let verified = elspeth_in(dir.path(), &["verify", trail]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let text = std::fs::read_to_string(dir.path().join(trail)).expect("export");
    for record_type in [
        "\"record_type\":\"run\"",
        "\"record_type\":\"node\"",
        "\"record_type\":\"node_state\"",
        "\"record_type\":\"token_outcome\"",
        "\"record_type\":\"manifest\"",
    ] {
        assert!(text.contains(record_type), "missing {record_type}");
    }
    let mut db = landscape_at(dir.path(), "examples/audit_export/runs/audit.db");
    let status = query_pairs(&mut db, "SELECT export_status AS a, export_format AS b FROM runs").expect("query");
    assert_eq!(status, vec![("completed".to_owned(), "json".to_owned())]);
}

#[test]
fn signed_exports_are_byte_identical_and_tampering_is_caught() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let database = "sqlite:///examples/threshold_gate/runs/audit.db";
    let export = |name: &str| {
        let output = std::process::Command::new(tests::elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_SIGNING_KEY", "test-key")
            .args(["export", "--run", "latest", "--database", database, "--output", name, "--sign"])
            .output()
            .expect("export runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        std::fs::read_to_string(dir.path().join(name)).expect("export file")
    };
    let first = export("a.jsonl");
    let second = export("b.jsonl");
    assert_eq!(first, second);
    let verify = |name: &str, key: &str| {
        std::process::Command::new(tests::elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_SIGNING_KEY", key)
            .args(["verify", name])
            .output()
            .expect("verify runs")
    };
    assert!(verify("a.jsonl", "test-key").status.success());
    assert_eq!(verify("a.jsonl", "wrong-key").status.code(), Some(2));
    let mut lines: Vec<String> = first.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("\"record_type\":\"", "\"record_type\":\"x", 1);
    std::fs::write(dir.path().join("edited.jsonl"), lines.join("\n")).expect("write");
    let edited = verify("edited.jsonl", "test-key");
    assert_eq!(edited.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&edited.stderr).contains("line 4"), "{}", String::from_utf8_lossy(&edited.stderr));
    let csv = elspeth_in(
        dir.path(),
        &["export", "--run", "latest", "--database", database, "--format", "csv", "--output", "csv-export"],
    );
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    for file in ["run.csv", "node.csv", "token.csv", "node_state.csv", "manifest.csv"] {
        assert!(dir.path().join("csv-export").join(file).exists(), "{file}");
    }
}

/// The export of an example run with everything that differs between runs
/// (generated ids, times, durations, process, chain) replaced by a marker.
fn redacted_export(example: &str) -> String {
    let (dir, output) = run_example(example, &[]);
    assert!(output.status.success(), "{example}: {}", String::from_utf8_lossy(&output.stderr));
    let settings = std::fs::read_to_string(dir.path().join("examples").join(example).join("settings.yaml")).expect("settings");
    let db = settings.lines().find_map(|l| l.trim().strip_prefix("url: sqlite:///")).expect("sqlite url").trim().to_owned();
    let export = elspeth_in(
        dir.path(),
        &["export", "--run", "latest", "--database", &format!("sqlite:///{db}"), "--output", "export.jsonl"],
    );
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let text = std::fs::read_to_string(dir.path().join("export.jsonl")).expect("export");
    let rules: &[(&str, &str)] = &[
        (r"\b[0-9a-f]{32}\b", "[id]"),
        (r"call_\[id\]_\d+", "call_[id]_n"),
        (r#""\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z""#, "\"[time]\""),
        (r#""(duration_ms|latency_ms|arrival_offset_ms|wait_duration_ms)":[0-9.e+-]+"#, "\"$1\":\"[ms]\""),
        (r#"\\"(arrival_offset_ms|wait_duration_ms)\\":[0-9.e+-]+"#, "\\\"$1\\\":\\\"[ms]\\\""),
        (r#""owner_pid":\d+"#, "\"owner_pid\":\"[pid]\""),
        (r#""owner_host":"[^"]*""#, "\"owner_host\":\"[host]\""),
        (r#""final_hash":"[0-9a-f]{64}""#, "\"final_hash\":\"[chain]\""),
    ];
    let mut redacted = text;
    for (pattern, replacement) in rules {
        redacted = regex::Regex::new(pattern).expect("pattern").replace_all(&redacted, *replacement).into_owned();
    }
    redacted
}

#[test]
fn example_exports_match_their_snapshots() {
    for example in [
        "threshold_gate",
        "error_routing",
        "batch_aggregation",
        "deaggregation",
        "fork_coalesce",
        "json_explode",
        "schema_contracts_demo",
    ] {
        insta::assert_snapshot!(format!("export_{example}"), redacted_export(example));
    }
}
