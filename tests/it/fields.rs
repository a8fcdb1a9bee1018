//! Field names at the source: CSV headers normalised to identifiers (the
//! reference's rules), renamed by `field_mapping` or given by `columns` for
//! a header-less file; the original → final names recorded in
//! `runs.source_field_resolution_json`; a sink writing the original headers.

use std::path::Path;

use landscape::connection::query_pairs;
use tests::{elspeth_in, landscape_at, output_text};

fn run(dir: &Path, source_options: &str, input: &str) -> std::process::Output {
    std::fs::write(dir.join("input.csv"), input).expect("input");
    let settings = format!(
        "source:\n  plugin: csv\n  on_success: out\n  options: {{path: input.csv, schema: {{mode: observed}}, \
         on_validation_failure: discard{source_options}}}\nsinks:\n  out: {{plugin: csv, on_write_failure: discard, \
         options: {{path: out/original.csv, headers: original, schema: {{mode: observed}}}}}}\n\
         landscape: {{url: 'sqlite:///audit.db'}}\n"
    );
    std::fs::write(dir.join("settings.yaml"), settings).expect("settings");
    elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute"])
}

#[test]
fn messy_headers_are_normalised_recorded_and_written_back_as_they_were() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(
        dir.path(),
        ", field_mapping: {customer_name: customer}",
        "Customer Name,2024 Total,class,Amount (USD)\nAcme,10,a,5\n",
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let resolution = query_pairs(&mut db, "SELECT source_field_resolution_json AS a, '' AS b FROM runs").expect("runs");
    let resolution: serde_json::Value = serde_json::from_str(&resolution[0].0).expect("json");
    assert_eq!(
        resolution,
        serde_json::json!({"Customer Name": "customer", "2024 Total": "_2024_total", "class": "class_", "Amount (USD)": "amount_usd"})
    );
    let written = std::fs::read_to_string(dir.path().join("out/original.csv")).expect("csv");
    assert_eq!(written, "Customer Name,2024 Total,class,Amount (USD)\nAcme,10,a,5\n", "original headers");
}

#[test]
fn colliding_headers_stop_the_run_naming_them_and_columns_name_a_headerless_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), "", "Total Amount,total_amount\n1,2\n");
    assert!(!output.status.success());
    let text = output_text(&output);
    assert!(text.contains("total_amount") && text.contains("Total Amount"), "{text}");

    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), ", columns: [id, label]", "1,first\n2,second\n");
    assert!(output.status.success(), "{}", output_text(&output));
    let written = std::fs::read_to_string(dir.path().join("out/original.csv")).expect("csv");
    assert_eq!(written, "id,label\n1,first\n2,second\n");
}
