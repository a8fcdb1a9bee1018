//! `elspeth explain`: the lineage of an output as a readable tree (or JSON):
//! what happened to the row, at which node, and why, back to the source row.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use contracts::records::{BatchState, CallOrigin, NodeState, OutcomeDetail, TokenLineage};
use contracts::{ContentHash, RowId, StateId, TokenId};
use landscape::analysis::node_name;
use landscape::lineage::{Lineage, Payload, RowSelector, StateHistory, TokenHistory};
use serde_json::Value as J;

use crate::landscape_args::{resolve_run, LandscapeArgs};
use crate::Format;

/// What to explain.
pub(crate) struct Target {
    /// Show node and state ids on every visit.
    pub(crate) ids: bool,
    pub(crate) row: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) sink: Option<String>,
}

pub(crate) fn explain(landscape: &LandscapeArgs, run: &str, target: &Target, format: Format) -> anyhow::Result<ExitCode> {
    let mut recorder = landscape.open()?;
    let run_id = resolve_run(&mut recorder, run)?;
    let tokens: Vec<TokenId> = match (&target.token, &target.row) {
        (Some(token), None) => vec![TokenId::parse(token).map_err(|e| anyhow::format_err!("--token {token:?}: {e}"))?],
        (None, Some(row)) => {
            let selector =
                match row.parse::<u64>() {
                    Ok(index) => RowSelector::Index(index),
                    Err(_) => RowSelector::Id(RowId::parse(row).map_err(|e| {
                        anyhow::format_err!("--row {row:?}: give the row number explain prints, or a row id ({e})")
                    })?),
                };
            recorder.row_outputs(&run_id, &selector, target.sink.as_deref())?
        }
        _ => anyhow::bail!("name what to explain with --row N or --token ID"),
    };
    let lineages = tokens.iter().map(|t| recorder.explain(&run_id, t)).collect::<Result<Vec<_>, _>>()?;
    match format {
        Format::Json => {
            let outputs: Vec<serde_json::Value> = lineages.iter().map(Lineage::to_json).collect();
            crate::print_out(&format!("{}\n", serde_json::json!({"run_id": run_id.as_str(), "outputs": outputs})))?;
        }
        Format::Text => crate::print_out(&render_with(&lineages, target.ids))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The text report of one or more lineages (the outputs of one row). A
/// token or state shared by several outputs (the forked parent, the members
/// of a batch) is printed in full once and referred to afterwards.
pub(crate) fn render(lineages: &[Lineage]) -> String {
    render_with(lineages, false)
}

/// [`render`], with node and state ids on every visit when `ids` is set.
pub(crate) fn render_with(lineages: &[Lineage], ids: bool) -> String {
    let mut out = String::new();
    let Some(first) = lineages.first() else { return out };
    let _ = writeln!(out, "Run {}", first.run_id);
    let _ = writeln!(out, "(rows are numbered from 0 in the order the source read them, as the sinks write them)");
    if lineages.len() > 1 {
        let _ = writeln!(out, "{} outputs; each is explained below.", lineages.len());
    }
    let mut shown = Shown { ids, ..Shown::default() };
    for lineage in lineages {
        let target = lineage.target();
        let _ = writeln!(out, "\nToken {} — {}", target.token.token_id, outcome_line(target));
        render_token(&mut out, lineage, target, "", &mut shown);
    }
    out
}

fn short(hash: &ContentHash) -> String {
    format!("{}…", &hash.as_str()[..12])
}

fn outcome_line(history: &TokenHistory) -> String {
    let Some(outcome) = history.terminal_outcome() else {
        return match history.outcomes.last() {
            Some(o) => format!("{} (not terminal yet)", o.detail.outcome().as_str().to_uppercase()),
            None => "no outcome recorded".to_owned(),
        };
    };
    let name = outcome.detail.outcome().as_str().to_uppercase();
    match &outcome.detail {
        OutcomeDetail::Completed { sink_name } | OutcomeDetail::Routed { sink_name } => format!("{name} to sink {sink_name}"),
        OutcomeDetail::Diverted { sink_name, error_hash } => format!("{name} to sink {sink_name} (error {error_hash})"),
        OutcomeDetail::Quarantined { error_hash, sink_name } => match sink_name {
            Some(sink) => format!("{name} to sink {sink} (error {error_hash})"),
            None => format!("{name}, discarded (error {error_hash})"),
        },
        OutcomeDetail::Failed { error_hash, batch_id } => match batch_id {
            Some(batch) => format!("{name} in batch {batch} (error {error_hash})"),
            None => format!("{name} (error {error_hash})"),
        },
        OutcomeDetail::Forked { expected_branches, .. } => format!("{name} into branches {}", expected_branches.join(", ")),
        OutcomeDetail::ConsumedInBatch { batch_id } => format!("{name} {batch_id}"),
        OutcomeDetail::Coalesced { join_group_id } => format!("{name} (join group {join_group_id})"),
        OutcomeDetail::Expanded { count, .. } => format!("{name} into {count} tokens"),
        OutcomeDetail::Buffered { batch_id } => format!("{name} in batch {batch_id}"),
    }
}

fn origin(token: &TokenHistory) -> String {
    match &token.token.lineage {
        TokenLineage::Initial => "the source row's first token".to_owned(),
        TokenLineage::Forked { branch_name, .. } => format!("forked onto branch {branch_name}"),
        TokenLineage::Joined { .. } => format!("merged from {} branch tokens", token.parents.len()),
        TokenLineage::Expanded { branch_name, .. } => {
            let from = if token.parents.len() > 1 {
                format!("made by a batch flush from {} tokens", token.parents.len())
            } else {
                "expanded from its parent".to_owned()
            };
            match branch_name {
                Some(branch) => format!("{from}, on branch {branch}"),
                None => from,
            }
        }
    }
}

/// What the report already printed: each token and each state once.
#[derive(Default)]
struct Shown {
    /// Show node and state ids (`--ids`).
    ids: bool,
    tokens: HashSet<TokenId>,
    states: HashSet<StateId>,
}

fn render_token(out: &mut String, lineage: &Lineage, history: &TokenHistory, indent: &str, shown: &mut Shown) {
    shown.tokens.insert(history.token.token_id.clone());
    let _ = writeln!(out, "{indent}  origin: {}", origin(history));
    if !history.siblings.is_empty() {
        let ids: Vec<&str> = history.siblings.iter().map(TokenId::as_str).collect();
        let _ = writeln!(out, "{indent}  siblings: {}", ids.join(", "));
    }
    if let Some(row) = lineage.row(&history.token.row_id) {
        if history.parents.is_empty() {
            // A quarantined row keeps where the source found it: the file's
            // line (header included) and the data row counted from 1, as the
            // quarantine sink writes them.
            let line = match &row.payload {
                Payload::Available(data) => data["__line_number__"].as_u64().map(|n| format!(", line {n} of the input")),
                Payload::Purged | Payload::NotStored | Payload::StoreNotGiven => None,
            };
            let _ = writeln!(
                out,
                "{indent}  source row {}{} (row id {}), hash {}",
                row.row.row_index,
                line.unwrap_or_default(),
                row.row.row_id,
                short(&row.row.source_data_hash)
            );
            let data = match &row.payload {
                Payload::Available(data) => readable(data),
                Payload::Purged => "purged (the hash above remains)".to_owned(),
                Payload::NotStored => "not stored".to_owned(),
                Payload::StoreNotGiven => "not read (no payload store given)".to_owned(),
            };
            let _ = writeln!(out, "{indent}  data: {data}");
            for error in &row.validation_errors {
                let _ =
                    writeln!(out, "{indent}  validation error ({}): {} → {}", error.schema_mode, error.error, error.destination);
            }
        }
    }
    for (visit, state) in history.states.iter().enumerate() {
        shown.states.insert(state.state.common().state_id.clone());
        render_state(out, lineage, state, indent, &format!("{}.", visit + 1), shown.ids);
    }
    for batch in &history.batches {
        let trigger = match &batch.batch.state {
            BatchState::Draft => "still buffering".to_owned(),
            BatchState::Executing { trigger, .. } => format!("executing, {}", trigger.trigger_reason),
            BatchState::Completed { trigger, .. } => format!("completed, {}", trigger.trigger_reason),
            BatchState::Failed { flush: Some((trigger, _)), .. } => format!("failed, {}", trigger.trigger_reason),
            BatchState::Failed { flush: None, .. } => "failed before flushing".to_owned(),
        };
        let _ = writeln!(
            out,
            "{indent}  batch {} member #{} ({trigger}, attempt {})",
            batch.batch.batch_id, batch.member.ordinal, batch.batch.attempt
        );
        if let Some(flush) = &batch.flush {
            if shown.states.insert(flush.state.common().state_id.clone()) {
                render_state(out, lineage, flush, &format!("{indent}  "), "flush:", shown.ids);
            } else {
                let _ = writeln!(out, "{indent}    the flush of this batch is shown above");
            }
        }
    }
    for error in &history.transform_errors {
        let details = error.error_details_json.as_deref().unwrap_or("no details");
        let _ = writeln!(out, "{indent}  transform error at {}: {details} → {}", error.transform_id, error.destination);
    }
    let outcomes: Vec<String> = history.outcomes.iter().map(|o| o.detail.outcome().as_str().to_uppercase()).collect();
    if !outcomes.is_empty() {
        let _ = writeln!(out, "{indent}  outcomes: {}", outcomes.join(", "));
    }
    for parent in &history.parents {
        let Some(parent_history) = lineage.token(&parent.parent_token_id) else { continue };
        if shown.tokens.contains(&parent.parent_token_id) {
            let _ = writeln!(out, "{indent}  ↳ parent token {} (shown above)", parent.parent_token_id);
            continue;
        }
        let _ = writeln!(out, "{indent}  ↳ parent token {} — {}", parent.parent_token_id, outcome_line(parent_history));
        render_token(out, lineage, parent_history, &format!("{indent}    "), shown);
    }
}

/// One node visit, headed by `label` (its number among the token's visits).
fn render_state(out: &mut String, lineage: &Lineage, history: &StateHistory, indent: &str, label: &str, ids: bool) {
    let common = history.state.common();
    let name = node_name(common.node_id.as_str());
    let (kind, plugin) = lineage.node(&common.node_id).map_or(("node", "?"), |n| (n.node_type.as_str(), n.plugin_name.as_str()));
    let what = if plugin == name { format!("{kind} {name}") } else { format!("{kind} {name} ({plugin})") };
    let retry = if common.attempt > 0 { format!(", attempt {}", common.attempt + 1) } else { String::new() };
    let (output, context, error, took) = match &history.state {
        NodeState::Open { .. } => (None, None, None, None),
        NodeState::Pending { context_after_json, duration_ms, .. } => {
            (None, context_after_json.as_deref(), None, Some(*duration_ms))
        }
        NodeState::Completed { output_hash, context_after_json, duration_ms, .. } => {
            (Some(output_hash), context_after_json.as_deref(), None, Some(*duration_ms))
        }
        NodeState::Failed { output_hash, context_after_json, error_json, duration_ms, .. } => {
            (output_hash.as_ref(), context_after_json.as_deref(), Some(error_json.as_str()), Some(*duration_ms))
        }
    };
    let hashes = match output {
        Some(output) if output == &common.input_hash => format!("data unchanged ({})", short(output)),
        Some(output) => format!("data {} → {}", short(&common.input_hash), short(output)),
        None => format!("input {}", short(&common.input_hash)),
    };
    let took = took.map(|ms| format!(" in {}", duration(ms))).unwrap_or_default();
    let status = history.state.status().as_str();
    let _ = writeln!(out, "{indent}  {label} {what} — {status}{took}{retry}; {hashes}");
    let detail = format!("{indent}      ");
    if ids {
        let _ = writeln!(out, "{detail}node {}, state {}, step {}", common.node_id, common.state_id, common.step_index);
    }
    if let Some(decision) = context.and_then(decision) {
        let _ = writeln!(out, "{detail}{decision}");
    } else if let Some(context) = context {
        let _ = writeln!(out, "{detail}{}", readable_text(context));
    }
    if let Some(error) = error {
        let _ = writeln!(out, "{detail}error: {}", readable_text(error));
    }
    for event in &history.routing_events {
        let verb = match event.mode {
            contracts::RoutingMode::Move => "routed",
            contracts::RoutingMode::Copy => "copied",
            contracts::RoutingMode::Divert => "diverted (an error route)",
        };
        match lineage.edge(&event.edge_id) {
            Some(edge) => {
                let to = node_name(edge.to_node_id.as_str());
                let _ = writeln!(out, "{detail}→ {verb} on {:?} to {to}", edge.label);
            }
            None => {
                let _ = writeln!(out, "{detail}→ {verb} on edge {}", event.edge_id);
            }
        }
    }
    for call in &history.calls {
        let latency = call.latency_ms.map_or_else(|| "latency not recorded".to_owned(), |ms| format!("{ms:.3} ms"));
        let response = call.response_hash.as_ref().map_or_else(|| "no response".to_owned(), |h| format!("response {}", short(h)));
        let _ = writeln!(
            out,
            "{detail}call #{} {} {}: {latency}, request {}, {response}",
            call.call_index,
            call.call_type.as_str(),
            call.status.as_str(),
            short(&call.request_hash)
        );
        if let Some(error) = &call.error_json {
            let _ = writeln!(out, "{detail}  error {error}");
        }
        match &call.origin {
            CallOrigin::Live => {}
            CallOrigin::Replayed { source_call_id } => {
                let _ = writeln!(out, "{detail}  replayed: the response is call {source_call_id}'s, no request was sent");
            }
            CallOrigin::Verified { source_call_id, verification, differences } => {
                let against = source_call_id.as_ref().map_or_else(|| "no recording".to_owned(), |id| format!("call {id}"));
                let differing = differences.as_ref().map(|d| format!(", differs at {d}")).unwrap_or_default();
                let _ =
                    writeln!(out, "{detail}  verified against {against}: {}{differing}", verification.as_str().to_uppercase());
            }
        }
    }
    if let Some(artifact) = &history.artifact {
        let _ = writeln!(
            out,
            "{detail}wrote {} ({} bytes, sha256 {})",
            artifact.path_or_uri,
            artifact.size_bytes,
            short(&artifact.content_hash)
        );
    }
}

/// A duration as people read it: ms below a second, seconds above.
pub(crate) fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A gate's or a coalesce's recorded context in words, when it is one.
fn decision(context: &str) -> Option<String> {
    let value: J = serde_json::from_str(context).ok()?;
    if let (Some(condition), Some(result)) = (value["condition"].as_str(), value.get("result")) {
        // Recorded results are "True"/"False" (the reference's Python spelling) or JSON values.
        let result = result.as_str().map_or_else(|| result.to_string(), str::to_lowercase);
        return Some(format!("decided: {condition} is {result}"));
    }
    if let Some(arrived) = value["branches_arrived"].as_array() {
        let names = |list: &[J]| list.iter().filter_map(J::as_str).collect::<Vec<_>>().join(", ");
        let lost: Vec<String> = value["branches_lost"]
            .as_object()
            .map(|m| m.iter().map(|(branch, why)| format!("{branch} ({})", why.as_str().unwrap_or("lost"))).collect())
            .unwrap_or_default();
        let waited = value["wait_duration_ms"].as_f64().map(|ms| format!(" after waiting {}", duration(ms))).unwrap_or_default();
        let lost = if lost.is_empty() { String::new() } else { format!("; lost {}", lost.join(", ")) };
        return Some(format!(
            "merged branches {} ({} policy, {} merge){waited}{lost}",
            names(arrived),
            value["policy"].as_str().unwrap_or("?"),
            value["merge_strategy"].as_str().unwrap_or("?"),
        ));
    }
    None
}

/// Recorded JSON text as a reader wants it (see [`readable`]); other text as it is, cut when long.
fn readable_text(text: &str) -> String {
    match serde_json::from_str::<J>(text) {
        Ok(value) => readable(&value),
        Err(_) => cut(text),
    }
}

/// The most characters of one value shown; longer ones are cut, with their size and hash.
const LONGEST_VALUE: usize = 120;
/// The most characters of one rendered record.
const LONGEST_RECORD: usize = 2000;

/// A recorded value for reading: long strings cut (with their size and
/// hash), floats without representation noise, the whole cut when long.
/// The JSON output keeps every value exactly.
fn readable(value: &J) -> String {
    fn tidy(value: &J) -> J {
        match value {
            J::String(text) if text.chars().count() > LONGEST_VALUE => J::String(cut(text)),
            J::Number(number) if number.is_f64() => {
                let x = number.as_f64().unwrap_or_default();
                let rounded: f64 = format!("{x:.10}").parse().unwrap_or(x);
                serde_json::Number::from_f64(rounded).map_or_else(|| value.clone(), J::Number)
            }
            J::Array(items) => J::Array(items.iter().map(tidy).collect()),
            J::Object(map) => J::Object(map.iter().map(|(k, v)| (k.clone(), tidy(v))).collect()),
            J::Null | J::Bool(_) | J::Number(_) | J::String(_) => value.clone(),
        }
    }
    let text = tidy(value).to_string();
    if text.chars().count() > LONGEST_RECORD {
        let head: String = text.chars().take(LONGEST_RECORD).collect();
        format!("{head}… ({} bytes in all)", text.len())
    } else {
        text
    }
}

/// `text` cut to [`LONGEST_VALUE`] characters, with its size and hash.
fn cut(text: &str) -> String {
    if text.chars().count() <= LONGEST_VALUE {
        return text.to_owned();
    }
    let head: String = text.chars().take(LONGEST_VALUE / 2).collect();
    let hash = ContentHash::of_bytes(text.as_bytes());
    format!("{head}… [{} bytes, sha256 {}]", text.len(), short(&hash))
}

#[cfg(test)]
mod tests {
    use super::{cut, decision, duration, readable};

    #[test]
    fn values_are_shown_for_reading() {
        assert_eq!(readable(&serde_json::json!({"x": 0.154_179_999_999_999_98, "n": 3})), r#"{"n":3,"x":0.15418}"#);
        let long = "a".repeat(10_000);
        let text = cut(&long);
        assert!(text.starts_with(&"a".repeat(60)) && text.contains("[10000 bytes, sha256 ") && text.len() < 120, "{text}");
        assert_eq!(duration(0.129_702), "0.13 ms");
        assert_eq!(duration(2500.0), "2.50 s");
        assert_eq!(
            decision(r#"{"condition":"row['amount'] > 1000","result":"True","route_label":"true"}"#).as_deref(),
            Some("decided: row['amount'] > 1000 is true")
        );
    }
}
