//! Random pipelines, driven through the binary: an optional keyword screen,
//! an optional aggregation (either output mode), then either a routing gate
//! or a fork whose branches can lose tokens (screened out, or routed away to
//! a side sink) before a coalesce with a random policy and merge. After each
//! run: the Landscape invariants hold, every token has exactly one terminal
//! outcome, and explain reaches the source rows from every terminal token.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use contracts::records::TokenLineage;
use contracts::{RunId, TokenId};
use landscape::connection::query_pairs;
use landscape::lineage::{explain_token, row_outputs, RowSelector};
use proptest::prelude::*;
use tests::{audit_violations, elspeth_in, landscape_at};

#[derive(Debug, Clone, Copy)]
enum OnError {
    Discard,
    ToSink,
}

#[derive(Debug, Clone)]
struct Fork {
    screen_a: Option<OnError>,
    route_b_away_above: Option<i64>,
    policy: &'static str,
    merge: &'static str,
}

#[derive(Debug, Clone)]
struct Plan {
    rows: Vec<(i64, &'static str)>,
    screen: Option<OnError>,
    aggregation: Option<(u8, &'static str)>,
    fork: Option<Fork>,
    gate_above: i64,
}

fn on_error() -> impl Strategy<Value = Option<OnError>> {
    prop_oneof![Just(None), Just(Some(OnError::Discard)), Just(Some(OnError::ToSink))]
}

fn plan() -> impl Strategy<Value = Plan> {
    let rows = prop::collection::vec((0i64..10, prop_oneof![Just("ok"), Just("bad"), Just("fine")]), 1..10);
    let fork = (
        on_error(),
        prop::option::of(0i64..10),
        prop_oneof![Just("require_all"), Just("best_effort"), Just("first"), Just("quorum 1"), Just("quorum 2")],
        prop_oneof![Just("union"), Just("nested"), Just("select a"), Just("select b")],
    )
        .prop_map(|(screen_a, route_b_away_above, policy, merge)| Fork { screen_a, route_b_away_above, policy, merge });
    (
        rows,
        on_error(),
        prop::option::of((1u8..4, prop_oneof![Just("passthrough"), Just("transform")])),
        prop::option::of(fork),
        0i64..10,
    )
        .prop_map(|(rows, screen, aggregation, fork, gate_above)| Plan { rows, screen, aggregation, fork, gate_above })
}

fn screen(out: &mut String, name: &str, input: &str, output: &str, on_error: OnError) {
    let target = match on_error {
        OnError::Discard => "discard",
        OnError::ToSink => "errors",
    };
    let _ = write!(
        out,
        "- name: {name}\n  plugin: keyword_filter\n  input: {input}\n  on_success: {output}\n  on_error: {target}\n  \
         options: {{fields: word, blocked_patterns: ['^bad$'], schema: {{mode: observed}}}}\n"
    );
}

fn settings(plan: &Plan) -> String {
    let mut transforms = String::new();
    let mut gates = String::new();
    let mut current = "s0";
    if let Some(on_error) = plan.screen {
        screen(&mut transforms, "screen", current, "s1", on_error);
        current = "s1";
    }
    let mut aggregations = String::new();
    if let Some((count, mode)) = plan.aggregation {
        let _ = write!(
            aggregations,
            "aggregations:\n- name: batch\n  plugin: batch_replicate\n  input: {current}\n  on_success: s2\n  on_error: discard\n  \
             output_mode: {mode}\n  trigger: {{count: {count}}}\n  options: {{schema: {{mode: observed}}}}\n"
        );
        current = "s2";
    }
    let mut coalesce = String::new();
    match &plan.fork {
        None => {
            let _ = write!(
                gates,
                "- name: split\n  input: {current}\n  condition: \"row['v'] > {}\"\n  routes: {{'true': high, 'false': low}}\n",
                plan.gate_above
            );
        }
        Some(fork) => {
            let _ = write!(
                gates,
                "- name: split\n  input: {current}\n  condition: 'True'\n  routes: {{'true': fork, 'false': low}}\n  fork_to: [a, b]\n"
            );
            let a_done = match fork.screen_a {
                Some(on_error) => {
                    screen(&mut transforms, "screen_a", "a", "a_done", on_error);
                    "a_done"
                }
                None => "a",
            };
            let b_done = match fork.route_b_away_above {
                Some(threshold) => {
                    let _ = write!(
                        gates,
                        "- name: side_b\n  input: b\n  condition: \"row['v'] > {threshold}\"\n  routes: {{'true': side, 'false': b_done}}\n"
                    );
                    "b_done"
                }
                None => "b",
            };
            let policy = match fork.policy.split_once(' ') {
                Some((policy, n)) => format!("  policy: {policy}\n  quorum_count: {n}\n"),
                None if fork.policy == "best_effort" => "  policy: best_effort\n  timeout_seconds: 60\n".to_owned(),
                None => format!("  policy: {}\n", fork.policy),
            };
            let merge = match fork.merge.split_once(' ') {
                Some((merge, branch)) => format!("  merge: {merge}\n  select_branch: {branch}\n"),
                None => format!("  merge: {}\n", fork.merge),
            };
            let _ = write!(
                coalesce,
                "coalesce:\n- name: join\n  branches: {{a: {a_done}, b: {b_done}}}\n  on_success: high\n{policy}{merge}"
            );
        }
    }
    let sink = |name: &str| {
        format!("  {name}:\n    plugin: json\n    on_write_failure: discard\n    options: {{path: {name}.jsonl, schema: {{mode: observed}}}}\n")
    };
    let transforms = if transforms.is_empty() { String::new() } else { format!("transforms:\n{transforms}") };
    // Only sinks something routes to: an unreachable sink is a settings error.
    let sinks: String = ["high", "low", "side", "errors"]
        .into_iter()
        .filter(|name| *name != "side" || plan.fork.as_ref().is_some_and(|f| f.route_b_away_above.is_some()))
        .filter(|name| *name != "errors" || transforms.contains("on_error: errors"))
        .map(sink)
        .collect();
    format!(
        "source:\n  plugin: json\n  on_success: s0\n  options: {{path: input.jsonl, schema: {{mode: observed}}, on_validation_failure: discard}}\n\
         {transforms}{aggregations}gates:\n{gates}{coalesce}sinks:\n{sinks}\
         landscape: {{url: 'sqlite:///audit.db'}}\npayload_store: {{base_path: payloads}}\n"
    )
}

fn check(dir: &Path, plan: &Plan) -> Result<(), TestCaseError> {
    let input: Vec<String> = plan
        .rows
        .iter()
        .enumerate()
        .map(|(i, (v, word))| serde_json::json!({"id": i, "v": v, "word": word}).to_string())
        .collect();
    std::fs::write(dir.join("input.jsonl"), input.join("\n")).expect("input");
    let settings = settings(plan);
    std::fs::write(dir.join("settings.yaml"), &settings).expect("settings");
    let output = elspeth_in(dir, &["run", "--settings", "settings.yaml", "--execute", "--format", "json"]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| TestCaseError::fail(format!("no summary: {}\n{settings}", String::from_utf8_lossy(&output.stderr))))?;
    prop_assert_eq!(&summary["status"], "completed", "{}\n{}", summary, settings);
    let mut db = landscape_at(dir, "audit.db");
    let violations = audit_violations(&mut db);
    prop_assert!(violations.is_empty(), "{:?}\n{}", violations, settings);
    let run_id = RunId::parse(summary["run_id"].as_str().expect("run id")).expect("run id");
    let terminal =
        query_pairs(&mut db, "SELECT token_id AS a, outcome AS b FROM token_outcomes WHERE is_terminal = 1").expect("outcomes");
    for (token, outcome) in &terminal {
        let token_id = TokenId::parse(token).expect("token id");
        let lineage = explain_token(&mut db, None, &run_id, &token_id)
            .map_err(|e| TestCaseError::fail(format!("explain {token} ({outcome}): {e}\n{settings}")))?;
        prop_assert_eq!(&lineage.target().token.token_id, &token_id);
        // Every ancestor chain ends at a source row's first token, whose row
        // is in the lineage.
        let rows: HashSet<_> = lineage.rows.iter().map(|r| r.row.row_id.clone()).collect();
        prop_assert!(rows.contains(&lineage.target().token.row_id));
        for history in &lineage.tokens {
            match history.token.lineage {
                TokenLineage::Initial => prop_assert!(history.parents.is_empty()),
                TokenLineage::Forked { .. } | TokenLineage::Joined { .. } | TokenLineage::Expanded { .. } => {
                    prop_assert!(!history.parents.is_empty());
                    for parent in &history.parents {
                        prop_assert!(lineage.token(&parent.parent_token_id).is_some(), "parent missing from lineage");
                    }
                }
            }
            prop_assert!(rows.contains(&history.token.row_id));
        }
        prop_assert!(lineage.tokens.iter().any(|t| matches!(t.token.lineage, TokenLineage::Initial)));
    }
    for index in 0..plan.rows.len() {
        let outputs = row_outputs(&mut db, &run_id, &RowSelector::Index(index as u64), None)
            .map_err(|e| TestCaseError::fail(format!("row {index}: {e}")))?;
        prop_assert!(!outputs.is_empty(), "row {} has no output token", index);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_pipelines_keep_the_token_invariants_and_explain_reaches_the_source(plan in plan()) {
        let dir = tempfile::tempdir().expect("temp dir");
        check(dir.path(), &plan)?;
    }
}
