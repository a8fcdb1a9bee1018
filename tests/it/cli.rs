//! The command line itself: help and version.

use tests::elspeth;

#[test]
fn help_names_the_tool() {
    let output = elspeth(&["--help"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Auditable Sense/Decide/Act pipelines"), "{stdout}");
}
