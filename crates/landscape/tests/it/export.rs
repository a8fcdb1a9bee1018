//! The export: every column of every table in its record, a deterministic
//! byte-identical stream, and a verifier that catches any tampering.

use std::collections::{BTreeMap, BTreeSet};

use contracts::records::{BatchTrigger, OutcomeDetail};
use contracts::{error_hash, CallStatus, CallType, ContentHash, RunStatus, TriggerType};
use landscape::export::{export_run, verify_jsonl, JsonLines, UnsignedExports, VerifyError};
use landscape::recorder::{BatchCompletion, NewCall, StateCompletion};
use landscape::{introspect, Recorder};
use proptest::prelude::*;

use crate::fixtures::{fixture, row_value};

/// A run that touches every table the exporter reads.
#[allow(clippy::too_many_lines, reason = "a fixture recording one of every record type")]
fn recorded_run(recorder: &mut Recorder) -> contracts::RunId {
    let f = fixture(recorder);
    let run = f.run.run_id.clone();
    let state = recorder.begin_node_state(f.state(f.token(), &f.transform, 1, 0)).expect("state");
    let state_id = state.common().state_id.clone();
    recorder
        .record_call(
            &contracts::records::CallParent::State(state_id.clone()),
            &NewCall {
                call_type: CallType::Http,
                status: CallStatus::Success,
                request: &serde_json::json!({"u": 1}),
                response: None,
                error: None,
                latency_ms: Some(1.0),
                origin: &contracts::records::CallOrigin::Live,
            },
        )
        .expect("call");
    let edges = recorder.get_edges(&run).expect("edges");
    recorder.record_routing_events(&state_id, &[(edges[0].edge_id.clone(), contracts::RoutingMode::Move)], None).expect("event");
    let batch = recorder.create_batch(&run, &f.transform).expect("batch");
    recorder.add_batch_member(&batch.batch_id, &run, &f.token.token_id, 0).expect("member");
    recorder
        .start_batch(
            &batch.batch_id,
            &BatchTrigger { trigger_type: TriggerType::Count, trigger_reason: "count reached 1".into() },
            &state_id,
        )
        .expect("start");
    recorder
        .complete_node_state(
            &state_id,
            &StateCompletion::Completed {
                output_hash: ContentHash::of_bytes(b"x"),
                context_after_json: None,
                success_reason_json: None,
            },
            1.0,
        )
        .expect("complete");
    recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed).expect("batch done");
    let (children, _) = recorder.expand_token(f.token(), 2, 2, true).expect("expand");
    for child in &children {
        recorder
            .record_token_outcome(
                &run,
                &child.token_id,
                OutcomeDetail::Failed { error_hash: error_hash("e"), batch_id: None },
                None,
            )
            .expect("outcome");
    }
    let op = recorder.begin_operation(&run, &f.source, contracts::OperationType::SourceLoad, None).expect("op");
    recorder
        .record_call(
            &contracts::records::CallParent::Operation(op.operation_id.clone()),
            &NewCall {
                call_type: CallType::Filesystem,
                status: CallStatus::Success,
                request: &serde_json::json!({}),
                response: None,
                error: None,
                latency_ms: None,
                origin: &contracts::records::CallOrigin::Live,
            },
        )
        .expect("op call");
    recorder.create_row(&run, &f.source, 1, &row_value(1)).expect("row");
    let hash = ContentHash::of_bytes(b"artifact");
    recorder
        .register_artifact(
            &run,
            &landscape::recorder::NewArtifact {
                produced_by_state_id: &state_id,
                sink_node_id: &f.sink,
                artifact_type: "csv",
                path_or_uri: "out.csv",
                content_hash: &hash,
                size_bytes: 8,
                idempotency_key: None,
            },
        )
        .expect("artifact");
    let violation = contracts::plugin::Violation::default();
    recorder
        .record_validation_error(
            &run,
            &landscape::recorder::NewValidationError {
                node_id: Some(&f.source),
                row_id: None,
                raw: &row_value(9),
                error: "bad",
                schema_mode: "fixed",
                destination: "discard",
                violation: &violation,
            },
        )
        .expect("validation error");
    let details = serde_json::json!({"reason": "x"});
    recorder
        .record_transform_error(
            &run,
            &landscape::recorder::NewTransformError {
                token_id: &f.token.token_id,
                transform_id: &f.transform,
                row: &row_value(0),
                error_details: &details,
                destination: "discard",
            },
        )
        .expect("transform error");
    let fingerprint = ContentHash::of_bytes(b"fp");
    recorder
        .record_secret_resolutions(
            &run,
            &[landscape::recorder::NewSecretResolution {
                timestamp: 1.0,
                env_var_name: "API_KEY",
                source: contracts::SecretSource::Env,
                vault_url: None,
                secret_name: None,
                fingerprint: &fingerprint,
                resolution_latency_ms: None,
            }],
        )
        .expect("secret");
    recorder.finalize_run(&run, RunStatus::Completed).expect("finalize");
    run
}

fn export_text(recorder: &mut Recorder, run: &contracts::RunId, key: Option<&[u8]>) -> String {
    let mut out = Vec::new();
    export_run(recorder.connection().expect("connection"), run, key, &mut JsonLines(&mut out)).expect("export");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn every_column_of_every_exported_table_appears_in_its_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("a.db").display()), None).expect("open");
    let run = recorded_run(&mut recorder);
    let text = export_text(&mut recorder, &run, None);
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).expect("json");
        let kind = record["record_type"].as_str().expect("type").to_owned();
        keys.entry(kind).or_default().extend(record.keys().cloned());
    }
    // Tables not exported, and why: checkpoints are resume bookkeeping deleted after a
    // completed run; preflight_results are not produced by this implementation;
    // batch_outputs is never written (the token_parents of batch outputs carry that lineage).
    let not_exported = ["checkpoints", "preflight_results", "batch_outputs"];
    // Columns not exported, and why: runs.export_* change when the run is exported, so an
    // export cannot contain them and stay a pure function of the trail.
    let skipped_columns = ["export_status", "export_error", "exported_at", "export_format", "export_sink"];
    let record_type = |table: &str| -> String {
        match table {
            "batches" => "batch".into(),
            "secret_resolutions" => "secret_resolution".into(),
            other => other.trim_end_matches('s').to_owned(),
        }
    };
    let tables = introspect::tables(recorder.connection().expect("connection")).expect("tables");
    for table in tables.iter().filter(|t| !not_exported.contains(&t.name.as_str())) {
        let kind = record_type(&table.name);
        let exported = keys.get(&kind).unwrap_or_else(|| panic!("no {kind} records exported"));
        for column in &table.columns {
            if skipped_columns.contains(&column.name.as_str()) {
                continue;
            }
            assert!(exported.contains(&column.name), "{}.{} is missing from the {kind} record", table.name, column.name);
        }
    }
}

#[test]
fn exports_are_byte_identical_and_verify_signed_and_unsigned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("a.db").display()), None).expect("open");
    let run = recorded_run(&mut recorder);
    let key = b"a-secret-key-of-32-bytes-or-so!!";
    let first = export_text(&mut recorder, &run, Some(key));
    let second = export_text(&mut recorder, &run, Some(key));
    assert_eq!(first, second, "the same run exports to the same bytes");
    let report = verify_jsonl(&first, Some(key), UnsignedExports::Refuse).expect("verifies");
    assert!(report.signed && report.records > 20);
    assert!(matches!(
        verify_jsonl(&first, Some(b"a wrong key of 16+ bytes"), UnsignedExports::Refuse),
        Err(VerifyError::BadSignature { line: 1, .. })
    ));
    assert!(matches!(verify_jsonl(&first, None, UnsignedExports::Refuse), Err(VerifyError::KeyRequired)));
    let unsigned = export_text(&mut recorder, &run, None);
    assert!(verify_jsonl(&unsigned, None, UnsignedExports::Allow).expect("verifies").records > 20);
    assert!(!unsigned.contains("\"signature\""));
}

/// The downgrade attack: strip every signature, null the algorithm and
/// recompute the chain. With a key set this must not verify; without one it
/// verifies only when unsigned exports are explicitly accepted.
#[test]
fn a_stripped_and_rechained_export_is_refused_when_a_key_is_given() {
    let mut recorder = Recorder::open("sqlite:///:memory:", None).expect("open");
    let run = recorded_run(&mut recorder);
    let key = b"a-secret-key-of-32-bytes-or-so!!";
    let signed = export_text(&mut recorder, &run, Some(key));
    let mut lines: Vec<serde_json::Map<String, serde_json::Value>> =
        signed.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let mut manifest = lines.pop().expect("manifest");
    lines[1].insert("forged".into(), serde_json::json!(true));
    let mut link = "0".repeat(64);
    let mut forged = String::new();
    for record in &mut lines {
        record.remove("signature");
        let canonical = contracts::canonical_json(&serde_json::Value::Object(record.clone())).expect("canonical");
        let mark = contracts::sha256_hex(canonical.as_bytes());
        link = contracts::sha256_hex(format!("{link}{mark}").as_bytes());
        forged.push_str(&serde_json::to_string(record).expect("json"));
        forged.push('\n');
    }
    manifest.remove("signature");
    manifest.remove("key_fingerprint");
    manifest.insert("signature_algorithm".into(), serde_json::Value::Null);
    manifest.insert("final_hash".into(), link.into());
    forged.push_str(&serde_json::to_string(&manifest).expect("json"));
    assert_eq!(verify_jsonl(&forged, Some(key), UnsignedExports::Refuse), Err(VerifyError::UnsignedWithKey));
    assert_eq!(verify_jsonl(&forged, Some(key), UnsignedExports::Allow), Err(VerifyError::UnsignedWithKey));
    assert_eq!(verify_jsonl(&forged, None, UnsignedExports::Refuse), Err(VerifyError::UnsignedNotAllowed));
    // The chain itself is consistent: only consent makes it "valid", and the report says unsigned.
    let report = verify_jsonl(&forged, None, UnsignedExports::Allow).expect("consistent with itself");
    assert!(!report.signed);
    // A key too short to be a secret is refused outright.
    assert_eq!(verify_jsonl(&signed, Some(b"short"), UnsignedExports::Refuse), Err(VerifyError::KeyTooShort { length: 5 }));
    // Half signed, half not: refused at the first record that differs.
    let mut mixed: Vec<String> = signed.lines().map(str::to_owned).collect();
    let mut second: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&mixed[1]).expect("json");
    second.remove("signature");
    mixed[1] = serde_json::to_string(&second).expect("json");
    assert!(matches!(
        verify_jsonl(&mixed.join("\n"), Some(key), UnsignedExports::Refuse),
        Err(VerifyError::MixedSignatures { line: 2, .. })
    ));
}

#[derive(Debug, Clone)]
enum Tamper {
    Edit { line: usize },
    Delete { line: usize },
    Duplicate { line: usize },
    Swap { line: usize },
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_tampering_is_caught(tamper in prop_oneof![
        (0..200_usize).prop_map(|line| Tamper::Edit { line }),
        (0..200_usize).prop_map(|line| Tamper::Delete { line }),
        (0..200_usize).prop_map(|line| Tamper::Duplicate { line }),
        (0..200_usize).prop_map(|line| Tamper::Swap { line }),
    ], signed in any::<bool>()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("a.db").display()), None).expect("open");
        let run = recorded_run(&mut recorder);
        let key: Option<&[u8]> = if signed { Some(b"a-secret-key-of-32-bytes-or-so!!") } else { None };
        let text = export_text(&mut recorder, &run, key);
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let data = lines.len() - 1;
        match tamper {
            Tamper::Edit { line } => {
                let i = line % data;
                let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&lines[i]).expect("json");
                record.insert("record_type".into(), serde_json::Value::String("tampered".into()));
                lines[i] = serde_json::Value::Object(record).to_string();
            }
            Tamper::Delete { line } => {
                lines.remove(line % data);
            }
            Tamper::Duplicate { line } => {
                let copy = lines[line % data].clone();
                lines.insert(line % data, copy);
            }
            Tamper::Swap { line } => {
                let i = line % (data - 1);
                lines.swap(i, i + 1);
            }
        }
        let tampered = lines.join("\n");
        prop_assert!(verify_jsonl(&tampered, key, UnsignedExports::Allow).is_err());
    }
}

/// Statements the exporter issues for a run with `n_rows` rows.
fn export_queries(n_rows: u64) -> usize {
    let (_dir, mut recorder, f) = crate::fixtures::run_of(n_rows);
    let count = crate::fixtures::count_statements(&mut recorder);
    let mut out = Vec::new();
    export_run(recorder.connection().expect("connection"), &f.run.run_id, None, &mut JsonLines(&mut out)).expect("export");
    assert!(String::from_utf8(out).expect("utf-8").lines().count() as u64 > n_rows * 3);
    count.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn the_number_of_export_queries_does_not_depend_on_the_run_size() {
    assert_eq!(export_queries(10), export_queries(2_000));
}

/// A sink that fails on its `fail_at`-th record.
struct FailingSink {
    written: usize,
    fail_at: usize,
}

impl landscape::export::RecordSink for FailingSink {
    fn write_record(&mut self, _record: &serde_json::Map<String, serde_json::Value>, _line: &str) -> landscape::Result<()> {
        self.written += 1;
        if self.written == self.fail_at {
            return Err(landscape::LandscapeError::InvalidWrite("disk full (test)".into()));
        }
        Ok(())
    }
}

/// Records are sealed and written on a thread of their own: a write that
/// fails stops the export with the sink's own error (not the reader's "the
/// writer stopped"), wherever in the stream it happens.
#[test]
fn a_failing_sink_stops_the_export_with_its_own_error() {
    let (_dir, mut recorder, f) = crate::fixtures::run_of(2_000);
    for fail_at in [1, 300, 5_000] {
        let mut sink = FailingSink { written: 0, fail_at };
        let error =
            export_run(recorder.connection().expect("connection"), &f.run.run_id, None, &mut sink).expect_err("the sink fails");
        assert!(error.to_string().contains("disk full (test)"), "{fail_at}: {error}");
        assert_eq!(sink.written, fail_at, "nothing is written after the failure");
    }
    // The connection is still usable, and a later export is whole.
    let mut out = Vec::new();
    export_run(recorder.connection().expect("connection"), &f.run.run_id, None, &mut JsonLines(&mut out)).expect("export");
    assert!(verify_jsonl(&String::from_utf8(out).expect("utf-8"), None, UnsignedExports::Allow).is_ok());
}

/// SQLite timestamps are read with a fast parser for the recorder's own text
/// form; any other form SQLite accepts (written by another tool) still reads.
#[test]
fn timestamps_in_other_sqlite_text_forms_are_read() {
    use diesel::connection::SimpleConnection as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("a.db").display()), None).expect("open");
    let run = recorded_run(&mut recorder);
    for (written, read) in [
        ("2026-03-04 05:06:07.123456", "2026-03-04T05:06:07.123456Z"),
        ("2026-03-04 05:06:07", "2026-03-04T05:06:07.000000Z"),
        ("2026-03-04T05:06:07Z", "2026-03-04T05:06:07.000000Z"),
        ("2026-03-04 05:06", "2026-03-04T05:06:00.000000Z"),
    ] {
        let landscape::DbConnection::Sqlite(sqlite) = recorder.connection().expect("connection") else {
            unreachable!("a SQLite Landscape")
        };
        sqlite.batch_execute(&format!("UPDATE runs SET started_at = '{written}' WHERE run_id = '{run}'")).expect("update");
        let text = export_text(&mut recorder, &run, None);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("run record")).expect("json");
        assert_eq!(first["started_at"], read, "{written}");
    }
}
