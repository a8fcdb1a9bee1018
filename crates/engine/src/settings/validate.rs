//! Semantic checks of the settings that do not need the graph: names,
//! reserved words, per-node rules, cross-key rules, unsupported features.

use super::error::ConfigProblem;
use super::load::LoadedSettings;
use super::model::{CheckpointFrequency, CoalescePolicy, LandscapeBackend, MergeStrategy, RunModeSetting};
use super::Settings;
use crate::expression::{Condition, Expr, Literal};

const RESERVED: &[&str] = &["continue", "fork", "on_success"];

fn name_error(kind: &str, name: &str, max: usize, first_must_be_letter: bool) -> Option<String> {
    let trimmed = name.trim();
    if RESERVED.contains(&trimmed) {
        return Some(format!("{kind} {name:?} is a reserved word"));
    }
    if trimmed.starts_with("__") {
        return Some(format!("{kind} {name:?} starts with '__', which is reserved for system edges"));
    }
    let mut chars = trimmed.chars();
    let first_ok = chars.next().is_some_and(|c| {
        if first_must_be_letter {
            c.is_ascii_alphabetic()
        } else {
            c.is_ascii_alphanumeric() || c == '_'
        }
    });
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        let first = if first_must_be_letter { "a letter" } else { "a letter, digit or '_'" };
        return Some(format!("{kind} {name:?} must start with {first} and contain only letters, digits, '_' and '-'"));
    }
    if trimmed.len() > max {
        return Some(format!("{kind} {name:?} is longer than {max} characters"));
    }
    None
}

/// Only `row['batch_count']` and `row['batch_age_seconds']` may be read by a
/// trigger condition.
#[allow(clippy::wildcard_enum_match_arm, reason = "expressions: anything but a string literal key is the same problem")]
fn trigger_field_problem(expr: &Expr) -> Option<String> {
    const ALLOWED: &[&str] = &["batch_count", "batch_age_seconds"];
    let check_key = |key: &Expr| match key {
        Expr::Literal(Literal::Str(name)) if ALLOWED.contains(&name.as_str()) => None,
        Expr::Literal(Literal::Str(name)) => {
            Some(format!("trigger conditions may only read batch_count and batch_age_seconds, not {name:?}"))
        }
        _ => Some("trigger conditions must use string literal keys".to_owned()),
    };
    let walk_all = |items: &[Expr]| items.iter().find_map(trigger_field_problem);
    match expr {
        Expr::Subscript { base, index } if **base == Expr::Row => check_key(index),
        Expr::RowGet { key, default } => check_key(key).or_else(|| default.as_deref().and_then(trigger_field_problem)),
        Expr::Row => Some("trigger conditions may only read batch_count and batch_age_seconds".to_owned()),
        Expr::Literal(_) => None,
        Expr::Subscript { base, index } => trigger_field_problem(base).or_else(|| trigger_field_problem(index)),
        Expr::List(items) | Expr::Tuple(items) | Expr::Set(items) | Expr::And(items) | Expr::Or(items) => walk_all(items),
        Expr::Call { args, .. } => walk_all(args),
        Expr::Dict(pairs) => pairs.iter().find_map(|(k, v)| trigger_field_problem(k).or_else(|| trigger_field_problem(v))),
        Expr::Neg(inner) | Expr::Pos(inner) | Expr::Not(inner) => trigger_field_problem(inner),
        Expr::Binary { left, right, .. } => trigger_field_problem(left).or_else(|| trigger_field_problem(right)),
        Expr::Compare { first, rest } => {
            trigger_field_problem(first).or_else(|| rest.iter().find_map(|(_, e)| trigger_field_problem(e)))
        }
        Expr::IfElse { body, test, orelse } => {
            trigger_field_problem(body).or_else(|| trigger_field_problem(test)).or_else(|| trigger_field_problem(orelse))
        }
    }
}

/// Reports a problem found: the settings path and what is wrong.
type Push<'p> = &'p mut dyn FnMut(String, String);

/// Checks everything about the settings that does not need the graph.
pub fn validate_names_and_keys(loaded: &LoadedSettings) -> Vec<ConfigProblem> {
    let s = &loaded.settings;
    let mut problems = Vec::new();
    let mut push = |path: String, message: String| problems.push(loaded.problem(&path, message));
    check_names(s, &mut push);
    check_transforms(s, &mut push);
    check_gates(s, &mut push);
    check_aggregations(s, &mut push);
    check_coalesces(s, &mut push);
    check_failsinks(s, &mut push);
    check_run_settings(s, &mut push);
    problems
}

/// Node and sink names: well-formed, one namespace, at least one sink.
fn check_names(s: &Settings, push: Push<'_>) {
    // One namespace for every node and sink name.
    let mut names: Vec<(String, String)> = Vec::new();
    for (idx, t) in s.transforms.iter().enumerate() {
        names.push((format!("transforms[{idx}].name"), t.name.clone()));
    }
    for (idx, g) in s.gates.iter().enumerate() {
        names.push((format!("gates[{idx}].name"), g.name.clone()));
    }
    for (idx, a) in s.aggregations.iter().enumerate() {
        names.push((format!("aggregations[{idx}].name"), a.name.clone()));
    }
    for (idx, c) in s.coalesce.iter().enumerate() {
        names.push((format!("coalesce[{idx}].name"), c.name.clone()));
    }
    for (path, name) in &names {
        if let Some(message) = name_error("node name", name, 38, true) {
            push(path.clone(), message);
        }
    }
    if s.sinks.is_empty() {
        push("sinks".into(), "at least one sink is required".into());
    }
    for name in s.sinks.keys() {
        let path = format!("sinks.{name}");
        // Sink names keep their case as written (`Approved` is a name).
        if let Some(message) = name_error("sink name", name, 38, false) {
            push(path.clone(), message);
        }
        names.push((path, name.clone()));
    }
    for (idx, (path, name)) in names.iter().enumerate() {
        if let Some((other_path, _)) = names[..idx].iter().find(|(_, other)| other == name) {
            push(path.clone(), format!("name {name:?} is already used at {other_path}; node and sink names share one namespace"));
        }
    }
}

/// Transforms: connection names, `on_error` a sink or discard.
fn check_transforms(s: &Settings, push: Push<'_>) {
    let sink_or_discard = |value: &str| value == "discard" || s.sinks.contains_key(value);
    for (idx, t) in s.transforms.iter().enumerate() {
        for (key, value) in [("input", &t.input), ("on_success", &t.on_success)] {
            if let Some(message) = name_error("connection", value, 64, false) {
                push(format!("transforms[{idx}].{key}"), message);
            }
        }
        if !sink_or_discard(&t.on_error) {
            push(format!("transforms[{idx}].on_error"), format!("on_error {:?} must be a sink name or 'discard'", t.on_error));
        }
    }
}

/// Gates: the condition parses, routes fit it, fork_to goes with a fork route.
fn check_gates(s: &Settings, push: Push<'_>) {
    for (idx, gate) in s.gates.iter().enumerate() {
        let base = format!("gates[{idx}]");
        match Condition::parse(&gate.condition) {
            Err(error) => push(format!("{base}.condition"), format!("invalid condition {:?}: {error}", gate.condition)),
            Ok(condition) => {
                if condition.is_boolean() {
                    let mut labels: Vec<&str> = gate.routes.keys().map(String::as_str).collect();
                    labels.sort_unstable();
                    if labels != ["false", "true"] {
                        push(
                            format!("{base}.routes"),
                            format!("the condition is boolean, so routes must have exactly the labels 'true' and 'false' (found {labels:?})"),
                        );
                    }
                }
            }
        }
        if gate.routes.is_empty() || gate.routes.len() > 32 {
            push(format!("{base}.routes"), "a gate needs between 1 and 32 routes".into());
        }
        let forks = gate.routes.values().any(|d| d == "fork");
        for (label, destination) in &gate.routes {
            if let Some(message) = name_error("route label", label, 64, false).filter(|_| label != "true" && label != "false") {
                push(format!("{base}.routes.{label}"), message);
            }
            if destination == "continue" {
                push(
                    format!("{base}.routes.{label}"),
                    "'continue' was removed as a route destination; name the next connection".into(),
                );
            }
        }
        match (&gate.fork_to, forks) {
            (Some(_), false) => push(format!("{base}.fork_to"), "fork_to is only allowed when a route targets 'fork'".into()),
            (None, true) => push(format!("{base}.fork_to"), "a route targets 'fork', so fork_to must list the branches".into()),
            (Some(branches), true) if branches.is_empty() || branches.len() > 32 => {
                push(format!("{base}.fork_to"), "fork_to needs between 1 and 32 branches".into());
            }
            (Some(_) | None, _) => {}
        }
    }
}

/// Aggregations: a trigger that can fire, a boolean condition over the batch, `on_error`.
fn check_aggregations(s: &Settings, push: Push<'_>) {
    let sink_or_discard = |value: &str| value == "discard" || s.sinks.contains_key(value);
    for (idx, agg) in s.aggregations.iter().enumerate() {
        let base = format!("aggregations[{idx}]");
        let trigger = &agg.trigger;
        if trigger.count.is_none() && trigger.timeout_seconds.is_none() && trigger.condition.is_none() {
            push(format!("{base}.trigger"), "a trigger needs at least one of count, timeout_seconds, condition".into());
        }
        if trigger.count == Some(0) {
            push(format!("{base}.trigger.count"), "count must be greater than 0".into());
        }
        if trigger.timeout_seconds.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            push(format!("{base}.trigger.timeout_seconds"), "timeout_seconds must be greater than 0".into());
        }
        if let Some(source) = &trigger.condition {
            match Condition::parse(source) {
                Err(error) => push(format!("{base}.trigger.condition"), format!("invalid condition {source:?}: {error}")),
                Ok(condition) => {
                    if !condition.is_boolean() {
                        push(format!("{base}.trigger.condition"), "a trigger condition must be a boolean expression".into());
                    }
                    if let Some(message) = trigger_field_problem(&condition.expr) {
                        push(format!("{base}.trigger.condition"), message);
                    }
                }
            }
        }
        if !sink_or_discard(&agg.on_error) {
            push(format!("{base}.on_error"), format!("on_error {:?} must be a sink name or 'discard'", agg.on_error));
        }
        if agg.max_pending_seconds.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            push(format!("{base}.max_pending_seconds"), "max_pending_seconds must be greater than 0".into());
        }
    }
}

/// Coalesces: branches, the policy's own settings, select_branch, `on_success`.
fn check_coalesces(s: &Settings, push: Push<'_>) {
    for (idx, c) in s.coalesce.iter().enumerate() {
        let base = format!("coalesce[{idx}]");
        let branches = c.branches.resolved();
        if c.branches.len() < 2 {
            push(format!("{base}.branches"), "a coalesce needs at least two branches".into());
        }
        if branches.len() != c.branches.len() {
            push(format!("{base}.branches"), "branch names must be unique".into());
        }
        match c.policy {
            CoalescePolicy::Quorum => match c.quorum_count {
                None => push(format!("{base}.quorum_count"), "policy quorum needs quorum_count".into()),
                Some(n) if n == 0 || usize::try_from(n).unwrap_or(usize::MAX) > branches.len() => {
                    push(format!("{base}.quorum_count"), format!("quorum_count must be between 1 and {}", branches.len()));
                }
                Some(_) => {}
            },
            CoalescePolicy::BestEffort if c.timeout_seconds.is_none() => {
                push(format!("{base}.timeout_seconds"), "policy best_effort needs timeout_seconds".into());
            }
            CoalescePolicy::RequireAll | CoalescePolicy::BestEffort | CoalescePolicy::First => {}
        }
        if c.timeout_seconds.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            push(format!("{base}.timeout_seconds"), "timeout_seconds must be greater than 0".into());
        }
        match (c.merge, &c.select_branch) {
            (MergeStrategy::Select, None) => push(format!("{base}.select_branch"), "merge select needs select_branch".into()),
            (MergeStrategy::Select, Some(branch)) if !branches.contains_key(branch) => {
                push(format!("{base}.select_branch"), format!("select_branch {branch:?} is not one of the branches"));
            }
            (MergeStrategy::Union | MergeStrategy::Nested, Some(_)) => {
                push(format!("{base}.select_branch"), "select_branch is only allowed with merge select".into());
            }
            (MergeStrategy::Union | MergeStrategy::Nested | MergeStrategy::Select, _) => {}
        }
        if let Some(target) = &c.on_success {
            if !s.sinks.contains_key(target) {
                push(format!("{base}.on_success"), format!("a coalesce's on_success must be a sink; {target:?} is not one"));
            }
        }
    }
}

/// Sinks' `on_write_failure`: discard or a csv/json sink that does not chain.
fn check_failsinks(s: &Settings, push: Push<'_>) {
    for (name, sink) in &s.sinks {
        let target = &sink.on_write_failure;
        if target == "discard" {
            continue;
        }
        let path = format!("sinks.{name}.on_write_failure");
        match s.sinks.get(target) {
            None => push(path, format!("on_write_failure {target:?} must be 'discard' or the name of a sink")),
            Some(_) if target == name => push(path, "a sink cannot be its own failsink".into()),
            Some(failsink) if failsink.on_write_failure != "discard" => {
                push(path, format!("failsink {target:?} must itself have on_write_failure: discard (no chains)"));
            }
            Some(failsink) if !["csv", "json"].contains(&failsink.plugin.as_str()) => {
                push(path, format!("failsink {target:?} must use the csv or json plugin"));
            }
            Some(_) => {}
        }
    }
}

/// Run-wide settings: export, checkpoints, retry, payload store, unsupported features.
fn check_run_settings(s: &Settings, push: Push<'_>) {
    let export = &s.landscape.export;
    if export.enabled {
        match &export.sink {
            None => push("landscape.export.sink".into(), "export is enabled, so export.sink must name a sink".into()),
            Some(sink) if !s.sinks.contains_key(sink) => {
                push("landscape.export.sink".into(), format!("export sink {sink:?} is not a defined sink"));
            }
            Some(_) => {}
        }
    }
    if s.checkpoint.frequency == CheckpointFrequency::EveryN && s.checkpoint.checkpoint_interval.is_none_or(|n| n == 0) {
        push("checkpoint.checkpoint_interval".into(), "frequency every_n needs checkpoint_interval greater than 0".into());
    }
    let retry = &s.retry;
    if retry.max_attempts == 0 {
        push("retry.max_attempts".into(), "max_attempts counts tries and must be at least 1".into());
    }
    if !(retry.initial_delay_seconds > 0.0 && retry.max_delay_seconds > 0.0) {
        push("retry".into(), "retry delays must be greater than 0".into());
    }
    if retry.exponential_base.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater) {
        push("retry.exponential_base".into(), "exponential_base must be greater than 1".into());
    }
    if s.payload_store.backend != "filesystem" {
        push(
            "payload_store.backend".into(),
            format!("payload store backend {:?} is not supported (only filesystem)", s.payload_store.backend),
        );
    }
    match (s.run_mode, &s.replay_from) {
        (RunModeSetting::Replay | RunModeSetting::Verify, None) => {
            push("replay_from".into(), "run_mode replay and verify need replay_from: the run whose calls to use".into());
        }
        (RunModeSetting::Replay | RunModeSetting::Verify | RunModeSetting::Live, _) => {}
    }
    let unsupported: [(&str, bool); 6] = [
        ("depends_on", s.depends_on.as_ref().is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))),
        ("commencement_gates", s.commencement_gates.as_ref().is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))),
        ("collection_probes", s.collection_probes.as_ref().is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))),
        ("secrets", s.secrets.as_ref().is_some_and(|v| v.get("source").and_then(|x| x.as_str()).is_some_and(|x| x != "env"))),
        ("telemetry.enabled", s.telemetry.enabled),
        ("landscape.backend", s.landscape.backend == LandscapeBackend::Sqlcipher),
    ];
    for (key, used) in unsupported {
        if used {
            push(key.into(), "this feature of the reference is not supported by this implementation yet".into());
        }
    }
    if s.landscape.dump_to_jsonl {
        push("landscape.dump_to_jsonl".into(), "the JSONL change journal is not supported by this implementation yet".into());
    }
}
