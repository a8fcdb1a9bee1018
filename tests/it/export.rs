//! `elspeth export` / `elspeth verify` and the export at the end of a run.

use landscape::connection::query_pairs;
use tests::{elspeth_in, landscape_at, output_text, run_example};

#[test]
fn the_configured_export_is_written_verified_and_recorded() {
    let (dir, output) = run_example("audit_export", &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let trail = "examples/audit_export/output/audit_trail.json";
    let verified = elspeth_in(dir.path(), &["verify", trail, "--allow-unsigned"]);
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
    let summary = output_text(&output);
    assert!(summary.contains("audit export: 70 records to examples/audit_export/output/audit_trail.json in "), "{summary}");
}

/// The export is part of the run's summary: a script reading `--format json`
/// learns whether it was written, and a failed export fails the command
/// with the run itself recorded as completed.
#[test]
fn the_summary_reports_the_export_and_a_failed_export_exits_1() {
    let (dir, output) = run_example("audit_export", &["--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json summary");
    assert_eq!(summary["export"]["status"], "completed");
    assert_eq!(summary["export"]["records"], 70);
    assert_eq!(summary["export"]["path"], "examples/audit_export/output/audit_trail.json");

    // A signed export with no signing key in the environment cannot be written.
    let (failed, summary) = rerun_audit_export_with(dir.path(), "sign: false", "sign: true");
    assert_eq!(failed.status.code(), Some(1), "{}", output_text(&failed));
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["export"]["status"], "failed");
    assert!(summary["export"]["records"].is_null());
    assert!(summary["export"]["error"].as_str().is_some_and(|e| e.contains("ELSPETH_SIGNING_KEY")), "{summary}");
    let mut db = landscape_at(dir.path(), "examples/audit_export/runs/audit.db");
    let runs = query_pairs(&mut db, "SELECT status AS a, export_status AS b FROM runs ORDER BY started_at").expect("query");
    assert_eq!(runs, [("completed".to_owned(), "completed".to_owned()), ("completed".to_owned(), "failed".to_owned())]);
}

/// Runs the `audit_export` example in `dir` with `from` replaced by `to` in
/// its settings: the output and its JSON summary.
fn rerun_audit_export_with(dir: &std::path::Path, from: &str, to: &str) -> (std::process::Output, serde_json::Value) {
    let settings = dir.join("examples/audit_export/settings.yaml");
    let text = std::fs::read_to_string(&settings).expect("settings");
    std::fs::write(&settings, text.replace(from, to)).expect("write");
    let output = elspeth_in(dir, &["run", "--settings", "examples/audit_export/settings.yaml", "--execute", "--format", "json"]);
    let summary = serde_json::from_slice(&output.stdout).expect("json summary");
    (output, summary)
}

/// A sink that cannot complete (here: its file would lie under a file)
/// fails the run, and the Landscape says so: the unit the sinks complete
/// in is closed on every path, so the failure and the run's end are
/// committed (they were lost, and the run left `running`, while the
/// summary said `completed`).
#[test]
fn a_sink_that_cannot_complete_fails_the_run_in_the_summary_and_the_landscape() {
    let dir = tests::example_dir("audit_export");
    let (output, summary) = rerun_audit_export_with(dir.path(), "output/audit_trail.json", "input.csv/audit_trail.json");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().is_some_and(|e| e.contains("sink audit_export")), "{summary}");
    assert!(summary["export"].is_null(), "a failed run is not exported: {summary}");
    let mut db = landscape_at(dir.path(), "examples/audit_export/runs/audit.db");
    let runs = query_pairs(&mut db, "SELECT status AS a, coalesce(export_status, 'none') AS b FROM runs").expect("query");
    assert_eq!(runs, [("failed".to_owned(), "none".to_owned())]);
}

const KEY: &str = "an-export-signing-key-for-the-tests";

#[test]
fn signed_exports_are_byte_identical_and_tampering_is_caught() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let database = "sqlite:///examples/threshold_gate/runs/audit.db";
    let export = |name: &str| {
        let output = std::process::Command::new(tests::elspeth_binary())
            .current_dir(dir.path())
            .env("ELSPETH_SIGNING_KEY", KEY)
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
    assert!(verify("a.jsonl", KEY).status.success());
    assert_eq!(verify("a.jsonl", "a-wrong-key-just-as-long-as-the-right-one").status.code(), Some(2));
    let mut lines: Vec<String> = first.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("\"record_type\":\"", "\"record_type\":\"x", 1);
    std::fs::write(dir.path().join("edited.jsonl"), lines.join("\n")).expect("write");
    let edited = verify("edited.jsonl", KEY);
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

/// Strips every signature, nulls the algorithm and recomputes the chain (a
/// few lines of script, as an attacker would).
fn downgrade(signed: &str) -> String {
    let mut records: Vec<serde_json::Map<String, serde_json::Value>> =
        signed.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let mut manifest = records.pop().expect("manifest");
    records[2].insert("row_index".into(), serde_json::json!(999));
    let mut link = "0".repeat(64);
    let mut out = String::new();
    for record in &mut records {
        record.remove("signature");
        let mark =
            contracts::sha256_hex(contracts::canonical_json(&serde_json::Value::Object(record.clone())).expect("c").as_bytes());
        link = contracts::sha256_hex(format!("{link}{mark}").as_bytes());
        out.push_str(&serde_json::to_string(record).expect("json"));
        out.push('\n');
    }
    manifest.remove("signature");
    manifest.remove("key_fingerprint");
    manifest.insert("signature_algorithm".into(), serde_json::Value::Null);
    manifest.insert("final_hash".into(), link.into());
    out + &serde_json::to_string(&manifest).expect("json") + "\n"
}

#[test]
fn a_downgraded_export_does_not_verify_and_unsigned_needs_consent() {
    let (dir, output) = run_example("threshold_gate", &[]);
    assert!(output.status.success());
    let database = "sqlite:///examples/threshold_gate/runs/audit.db";
    let elspeth = |key: Option<&str>, args: &[&str]| {
        let mut command = std::process::Command::new(tests::elspeth_binary());
        command.current_dir(dir.path()).env_remove("ELSPETH_SIGNING_KEY").args(args);
        if let Some(key) = key {
            command.env("ELSPETH_SIGNING_KEY", key);
        }
        command.output().expect("elspeth runs")
    };
    let short = elspeth(Some("short"), &["export", "--run", "latest", "--database", database, "--output", "s.jsonl", "--sign"]);
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 16 bytes")
            || String::from_utf8_lossy(&short.stderr).contains("shorter than 16 bytes"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let signed = elspeth(Some(KEY), &["export", "--run", "latest", "--database", database, "--output", "signed.jsonl", "--sign"]);
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let text = std::fs::read_to_string(dir.path().join("signed.jsonl")).expect("export");
    std::fs::write(dir.path().join("forged.jsonl"), downgrade(&text)).expect("forge");

    let with_key = elspeth(Some(KEY), &["verify", "forged.jsonl"]);
    assert_eq!(with_key.status.code(), Some(2), "{}", String::from_utf8_lossy(&with_key.stdout));
    assert!(String::from_utf8_lossy(&with_key.stderr).contains("UNSIGNED but a signing key was given"));
    let with_key = elspeth(Some(KEY), &["verify", "forged.jsonl", "--allow-unsigned"]);
    assert_eq!(with_key.status.code(), Some(2), "consent does not override a key");
    let without = elspeth(None, &["verify", "forged.jsonl"]);
    assert_eq!(without.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without.stderr).contains("--allow-unsigned"));
    let consented = elspeth(None, &["verify", "forged.jsonl", "--allow-unsigned"]);
    assert!(consented.status.success());
    assert!(
        String::from_utf8_lossy(&consented.stdout).contains("valid but UNSIGNED"),
        "{}",
        String::from_utf8_lossy(&consented.stdout)
    );
    let json = elspeth(None, &["verify", "forged.jsonl", "--allow-unsigned", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(report["signed"], false);
    let short = elspeth(Some("short"), &["verify", "signed.jsonl"]);
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("not a secret"));
}
