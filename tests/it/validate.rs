//! `elspeth validate`: every example validates; every broken settings file
//! under `tests/fixtures/broken` fails with its own, snapshot-tested message.

use tests::{elspeth_in, workspace};

#[test]
fn every_example_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).expect("examples exist") {
        let dir = entry.expect("entry").path();
        for file in std::fs::read_dir(&dir).expect("example dir") {
            let file = file.expect("entry").path();
            let is_settings = file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("settings"));
            if is_settings && file.extension().is_some_and(|e| e == "yaml") {
                let relative = file.strip_prefix(workspace()).expect("inside workspace").to_str().expect("utf-8").to_owned();
                let output = elspeth_in(workspace(), &["validate", "--settings", &relative]);
                assert!(output.status.success(), "{relative}: {}", String::from_utf8_lossy(&output.stderr));
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} examples found");
}

#[test]
fn broken_settings_fail_with_clear_messages() {
    insta::glob!("../fixtures/broken", "*.yaml", |path| {
        let relative =
            path.strip_prefix(workspace().canonicalize().expect("canonical")).unwrap_or(path).to_str().expect("utf-8").to_owned();
        let output = elspeth_in(workspace(), &["validate", "--settings", &relative]);
        assert_eq!(output.status.code(), Some(1), "{relative} must be invalid");
        insta::assert_snapshot!(String::from_utf8_lossy(&output.stderr));
    });
}

#[test]
fn json_format_lists_problems_for_scripts() {
    let output = elspeth_in(
        workspace(),
        &["validate", "--settings", "tests/fixtures/broken/10_unknown_sink_route.yaml", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["valid"], false);
    assert!(report["problems"].as_array().is_some_and(|p| !p.is_empty()));
    let output =
        elspeth_in(workspace(), &["validate", "--settings", "examples/threshold_gate/settings.yaml", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["valid"], true);
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(4));
}
