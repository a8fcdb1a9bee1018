//! Enum strings round-trip, parsing is strict, transition tables are as specified.

use std::fmt::Write as _;
use std::str::FromStr;

use super::*;

fn round_trips<E>(all: &[E])
where
    E: Copy + std::fmt::Debug + PartialEq + FromStr + std::fmt::Display,
    <E as FromStr>::Err: std::fmt::Debug,
{
    for variant in all {
        let text = variant.to_string();
        assert_eq!(text, text.to_lowercase());
        assert_eq!(E::from_str(&text).expect("own string parses"), *variant);
        assert!(E::from_str(&text.to_uppercase()).is_err() || text.to_uppercase() == text, "{text} parsed case-insensitively");
        assert!(E::from_str(&format!("{text} ")).is_err());
    }
}

#[test]
fn every_enum_round_trips_its_stored_string() {
    round_trips(RunStatus::ALL);
    round_trips(NodeType::ALL);
    round_trips(Determinism::ALL);
    round_trips(NodeStateStatus::ALL);
    round_trips(BatchStatus::ALL);
    round_trips(TriggerType::ALL);
    round_trips(RoutingKind::ALL);
    round_trips(RoutingMode::ALL);
    round_trips(RowOutcome::ALL);
    round_trips(CallType::ALL);
    round_trips(CallStatus::ALL);
    round_trips(ExportStatus::ALL);
    round_trips(ReproducibilityGrade::ALL);
    round_trips(OutputMode::ALL);
    round_trips(RunMode::ALL);
    round_trips(OperationType::ALL);
    round_trips(OperationStatus::ALL);
    round_trips(SecretSource::ALL);
}

#[test]
fn stored_strings_match_the_reference_schema() {
    let strings: Vec<&str> = RowOutcome::ALL.iter().map(|o| o.as_str()).collect();
    insta::assert_snapshot!(strings.join(" "), @"completed routed forked failed quarantined diverted consumed_in_batch coalesced expanded buffered");
    let strings: Vec<&str> = NodeStateStatus::ALL.iter().map(|o| o.as_str()).collect();
    insta::assert_snapshot!(strings.join(" "), @"open pending completed failed");
    assert_eq!(TriggerType::EndOfSource.as_str(), "end_of_source");
    assert_eq!(Determinism::NonDeterministic.as_str(), "non_deterministic");
}

#[test]
fn unknown_strings_are_errors() {
    assert!("dropped".parse::<RowOutcome>().is_err());
    assert!("".parse::<RunStatus>().is_err());
    assert!("Completed".parse::<NodeStateStatus>().is_err());
    let error = "manual".parse::<TriggerType>().expect_err("manual is not a trigger type");
    assert_eq!(error.to_string(), "unknown TriggerType value \"manual\"");
}

#[test]
fn buffered_is_the_only_non_terminal_outcome() {
    let non_terminal: Vec<RowOutcome> = RowOutcome::ALL.iter().copied().filter(|o| !o.is_terminal()).collect();
    assert_eq!(non_terminal, vec![RowOutcome::Buffered]);
}

fn table<E: Copy + std::fmt::Display>(all: &[E], allowed: impl Fn(E, E) -> bool) -> String {
    let mut out = String::new();
    for from in all {
        let targets: Vec<String> = all.iter().filter(|to| allowed(*from, **to)).map(ToString::to_string).collect();
        let _ = writeln!(out, "{from} -> [{}]", targets.join(", "));
    }
    out
}

#[test]
fn node_state_transitions() {
    insta::assert_snapshot!(table(NodeStateStatus::ALL, NodeStateStatus::can_transition_to), @r"
    open -> [pending, completed, failed]
    pending -> [completed, failed]
    completed -> []
    failed -> []
    ");
}

#[test]
fn batch_transitions() {
    insta::assert_snapshot!(table(BatchStatus::ALL, BatchStatus::can_transition_to), @r"
    draft -> [executing, failed]
    executing -> [completed, failed]
    completed -> []
    failed -> []
    ");
}

#[test]
fn run_transitions() {
    insta::assert_snapshot!(table(RunStatus::ALL, RunStatus::can_transition_to), @r"
    running -> [completed, failed, interrupted]
    completed -> []
    failed -> [running]
    interrupted -> [running]
    ");
}

#[test]
fn operation_transitions() {
    insta::assert_snapshot!(table(OperationStatus::ALL, OperationStatus::can_transition_to), @r"
    open -> [completed, failed, pending]
    completed -> []
    failed -> []
    pending -> []
    ");
}

#[test]
fn terminal_states_have_no_way_out() {
    for from in NodeStateStatus::ALL {
        if from.is_terminal() {
            assert!(NodeStateStatus::ALL.iter().all(|to| !from.can_transition_to(*to)));
        }
    }
    for from in BatchStatus::ALL {
        if from.is_terminal() {
            assert!(BatchStatus::ALL.iter().all(|to| !from.can_transition_to(*to)));
        }
    }
}
