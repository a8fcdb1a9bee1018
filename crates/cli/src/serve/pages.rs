//! The explorer's pages as server-side HTML (maud): a shared layout with
//! search, the runs list, a run, a row's or token's lineage, lists, and
//! errors. Pages take what the handlers read and only render it.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value as J;

use contracts::records::{Batch, BatchState, Run, TransformError, ValidationError};
use landscape::analysis::{node_name, CallUsage, NodeStats, Paged, RunCounts};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#1f3a5f;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}\
header a{color:#fff;text-decoration:none;font-weight:bold}main{padding:16px 20px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}\
th{background:#f0f3f7}pre{background:#f7f7f7;border:1px solid #ddd;padding:10px;white-space:pre-wrap;font-size:13px}\
.stale{color:#b00020;font-weight:bold}.muted{color:#666}.nav a{margin-right:12px}section{margin-bottom:24px}";

/// The page frame: title, header with the search box, body.
pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — ELSPETH Landscape" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { "ELSPETH Landscape" }
                    form action="/search" method="get" {
                        input type="search" name="q" placeholder="run, row or token id" aria-label="search";
                        " "
                        button type="submit" { "Find" }
                    }
                    span.muted { "read-only" }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// Links to the previous and next page of a paged list.
pub(crate) fn pager<T>(list: &Paged<T>, base: &str) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    let last = list.offset + list.items.len() as u64;
    html! {
        p.nav {
            @if list.total == 0 { "none" } @else { (list.offset + 1) "–" (last) " of " (list.total) }
            " "
            @if list.offset > 0 {
                a rel="prev" href=(format!("{base}{sep}offset={}", list.offset.saturating_sub(list.limit))) { "← previous" }
            }
            @if last < list.total {
                a rel="next" href=(format!("{base}{sep}offset={last}")) { "next →" }
            }
        }
    }
}

/// A form that opens row N of a run (row numbers as the sinks and explain show them).
fn row_search(run_id: &str) -> Markup {
    html! {
        form.row-search action="/search" method="get" {
            input type="hidden" name="run" value=(run_id);
            input type="number" name="q" min="0" placeholder="row number" aria-label="row number";
            " "
            button type="submit" { "Go to row" }
        }
    }
}

/// One entry of the runs list.
pub(crate) struct RunLine {
    pub(crate) run: Run,
    pub(crate) status: String,
    pub(crate) stale: Option<String>,
    pub(crate) pipeline: String,
    pub(crate) rows: u64,
    pub(crate) outcomes: Vec<(String, u64)>,
}

fn duration(run: &Run) -> String {
    run.state
        .completed_at()
        .map_or_else(|| "—".to_owned(), |end| format!("{:.1} s", (end - run.started_at).num_milliseconds() as f64 / 1000.0))
}

pub(crate) fn runs(list: &Paged<RunLine>) -> Markup {
    layout(
        "Runs",
        html! {
            table #runs {
                tr { th { "run" } th { "status" } th { "pipeline" } th { "grade" } th { "rows" } th { "outcomes" } th { "started" } th { "duration" } }
                @for line in &list.items {
                    tr {
                        td { a href=(format!("/runs/{}", line.run.run_id)) { (line.run.run_id) } }
                        td {
                            (line.status)
                            @if let Some(stale) = &line.stale { br; span.stale { "stale: " (stale) } }
                        }
                        td { (line.pipeline) }
                        td { (line.run.reproducibility_grade.map_or("—", contracts::ReproducibilityGrade::as_str)) }
                        td { (line.rows) }
                        td { @for (outcome, count) in &line.outcomes { (outcome) " " (count) br; } }
                        td { (contracts::time::render(&line.run.started_at)) }
                        td { (duration(&line.run)) }
                    }
                }
            }
            (pager(list, "/"))
        },
    )
}

/// What the run page shows.
pub(crate) struct RunPage {
    pub(crate) line: RunLine,
    pub(crate) counts: RunCounts,
    pub(crate) dag: String,
    pub(crate) nodes: Vec<NodeStats>,
    pub(crate) usage: Vec<CallUsage>,
    pub(crate) validation: Paged<ValidationError>,
    pub(crate) transform: Paged<TransformError>,
    pub(crate) settings: String,
    pub(crate) checkpoint: Option<contracts::records::Checkpoint>,
    pub(crate) batches: Paged<(Batch, u64)>,
    pub(crate) signed_export: bool,
}

pub(crate) fn run(page: &RunPage) -> Markup {
    let run = &page.line.run;
    let id = run.run_id.as_str();
    layout(
        &format!("Run {id}"),
        html! {
            p.nav {
                a href=(format!("/runs/{id}/rows")) { "source rows" }
                a href=(format!("/runs/{id}/export.jsonl")) download { @if page.signed_export { "signed export" } @else { "export (unsigned: no signing key)" } }
            }
            (row_search(id))
            table #facts {
                tr { th { "status" } td { (page.line.status) @if let Some(stale) = &page.line.stale { " " span.stale { "stale: " (stale) } } } }
                tr { th { "pipeline" } td { (page.line.pipeline) } }
                tr { th { "started" } td { (contracts::time::render(&run.started_at)) } }
                tr { th { "duration" } td { (duration(run)) } }
                tr { th { "grade" } td { (run.reproducibility_grade.map_or("—", contracts::ReproducibilityGrade::as_str)) } }
                tr { th { "rows" } td { (page.counts.rows) } }
                tr { th { "tokens" } td { (page.counts.tokens) } }
                tr { th { "checkpoint" } td {
                    @if let Some(c) = &page.checkpoint {
                        "latest: sequence " (c.sequence_number) " at " (node_name(c.node_id.as_str())) ", " (contracts::time::render(&c.created_at))
                    } @else { "none stored" }
                } }
            }
            section {
                h2 { "Pipeline" }
                (PreEscaped(&page.dag))
                table #nodes {
                    tr { th { "node" } th { "type" } th { "plugin" } th { "determinism" } th { "visits" } th { "mean" } th { "slowest" } }
                    @for node in &page.nodes {
                        tr {
                            td title=(node.node_id) { (node_name(&node.node_id)) }
                            td { (node.node_type) } td { (node.plugin_name) } td { (node.determinism) }
                            td { @for s in &node.states { (s.count) " " (s.status) br; } }
                            td { (ms(node.mean_ms)) } td { (ms(node.max_ms)) }
                        }
                    }
                }
            }
            section {
                h2 { "Outcomes" }
                table #outcomes {
                    tr { th { "outcome" } th { "sink" } th { "terminal" } th { "tokens" } }
                    @for o in &page.counts.outcomes {
                        tr { td { (o.outcome) } td { (o.sink.as_deref().unwrap_or("—")) } td { (if o.terminal { "yes" } else { "no" }) } td { (o.count) } }
                    }
                }
            }
            section {
                h2 { "Batches" }
                (batch_table(&page.batches))
                (pager(&page.batches, &format!("/runs/{id}/batches")))
            }
            section {
                h2 { "External calls" }
                @if page.usage.is_empty() { p { "none" } } @else {
                    table #calls {
                        tr { th { "node" } th { "type" } th { "status" } th { "calls" } th { "mean latency" } th { "slowest" } }
                        @for u in &page.usage {
                            tr { td { (node_name(&u.node_id)) } td { (u.call_type) } td { (u.status) } td { (u.calls) } td { (ms(u.mean_latency_ms)) } td { (ms(u.max_latency_ms)) } }
                        }
                    }
                }
            }
            section #errors {
                h2 { "Validation errors" }
                (error_table(&page.validation.items.iter().map(|e| (e.row_hash.as_str().to_owned(), e.error.clone(), e.destination.clone())).collect::<Vec<_>>()))
                (pager(&page.validation, &format!("/runs/{id}?")))
                h2 { "Transform errors" }
                (error_table(&page.transform.items.iter().map(|e| (node_name(e.transform_id.as_str()).to_owned(), e.error_details_json.clone().unwrap_or_default(), e.destination.clone())).collect::<Vec<_>>()))
                (pager(&page.transform, &format!("/runs/{id}?")))
            }
            section {
                h2 { "Settings" }
                p.muted { "As recorded; secrets appear only as fingerprints." }
                pre { (page.settings) }
            }
        },
    )
}

/// Aggregation batches: node, status, trigger, attempt, members.
fn batch_table(batches: &Paged<(Batch, u64)>) -> Markup {
    let trigger = |batch: &Batch| match &batch.state {
        BatchState::Draft => "still buffering".to_owned(),
        BatchState::Executing { trigger, .. }
        | BatchState::Completed { trigger, .. }
        | BatchState::Failed { flush: Some((trigger, _)), .. } => trigger.trigger_reason.clone(),
        BatchState::Failed { flush: None, .. } => "failed before flushing".to_owned(),
    };
    html! {
        @if batches.items.is_empty() { p { "none" } } @else {
            table #batches {
                tr { th { "batch" } th { "node" } th { "status" } th { "trigger" } th { "attempt" } th { "members" } th { "created" } }
                @for (batch, members) in &batches.items {
                    tr {
                        td { code { (batch.batch_id) } } td { (node_name(batch.aggregation_node_id.as_str())) }
                        td { (batch.state.status().as_str()) } td { (trigger(batch)) } td { (batch.attempt) }
                        td { (members) } td { (contracts::time::render(&batch.created_at)) }
                    }
                }
            }
        }
    }
}

/// The aggregation batches of a run, paged.
pub(crate) fn batches(run_id: &str, list: &Paged<(Batch, u64)>) -> Markup {
    layout(
        &format!("Batches of run {run_id}"),
        html! {
            p.nav { a href=(format!("/runs/{run_id}")) { "← run " (run_id) } }
            (batch_table(list))
            (pager(list, &format!("/runs/{run_id}/batches")))
        },
    )
}

/// A duration as `explain` shows it, or a dash when none was recorded.
fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), crate::explain::duration)
}

fn error_table(errors: &[(String, String, String)]) -> Markup {
    html! {
        @if errors.is_empty() { p { "none" } } @else {
            table {
                tr { th { "where" } th { "error" } th { "sent to" } }
                @for (place, error, destination) in errors { tr { td { (place) } td { (error) } td { (destination) } } }
            }
        }
    }
}

/// The source rows of a run.
pub(crate) fn rows(run_id: &str, list: &Paged<contracts::records::Row>) -> Markup {
    layout(
        &format!("Source rows of run {run_id}"),
        html! {
            p.muted { "Rows are numbered from 0 in the order the source read them, as the sinks, explain and the MCP tools number them." }
            (row_search(run_id))
            table #rows {
                tr { th { "row" } th { "row id" } th { "source data hash" } }
                @for row in &list.items {
                    tr {
                        td { a href=(format!("/runs/{run_id}/rows/{}", row.row_index)) { (row.row_index) } }
                        td { (row.row_id) } td { code { (row.source_data_hash.as_str()) } }
                    }
                }
            }
            (pager(list, &format!("/runs/{run_id}/rows")))
        },
    )
}

/// A lineage page: each output's plain-language story, the tokens to
/// follow and the external calls made on the way (id, description).
pub(crate) fn lineage(title: &str, run_id: &str, text: &str, tokens: &[(String, String)], calls: &[(String, String)]) -> Markup {
    layout(
        title,
        html! {
            p.nav { a href=(format!("/runs/{run_id}")) { "← run " (run_id) } }
            @if !tokens.is_empty() {
                p { "Outputs: " @for (token, outcome) in tokens { a href=(format!("/tokens/{token}")) { (token) } " (" (outcome) ") " } }
            }
            @if !calls.is_empty() {
                p #calls { "External calls (request and response): " @for (call, label) in calls { a href=(format!("/calls/{call}")) { (label) } "; " } }
            }
            pre #lineage { (text) }
        },
    )
}

/// One external call with its request and response.
pub(crate) fn call(
    call: &contracts::records::Call,
    node: &str,
    request: &landscape::lineage::Payload,
    response: &landscape::lineage::Payload,
) -> Markup {
    let payload = |p: &landscape::lineage::Payload| match p {
        landscape::lineage::Payload::Available(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        landscape::lineage::Payload::Purged => "purged by retention (the hash above remains)".to_owned(),
        landscape::lineage::Payload::NotStored => "not stored".to_owned(),
        landscape::lineage::Payload::StoreNotGiven => "not read (the payload store was not found)".to_owned(),
    };
    let origin = match &call.origin {
        contracts::records::CallOrigin::Live => "made live".to_owned(),
        contracts::records::CallOrigin::Replayed { source_call_id } => {
            format!("replayed from call {source_call_id}; no request was sent")
        }
        contracts::records::CallOrigin::Verified { source_call_id, verification, differences } => format!(
            "made live and verified against {}: {}{}",
            source_call_id.as_ref().map_or_else(|| "no recording".to_owned(), ToString::to_string),
            verification.as_str(),
            differences.as_deref().map(|d| format!(", differs at {d}")).unwrap_or_default()
        ),
    };
    layout(
        &format!("Call {}", call.call_id),
        html! {
            table #facts {
                tr { th { "node" } td { (node) } }
                tr { th { "call" } td { "#" (call.call_index) " " (call.call_type.as_str()) } }
                tr { th { "status" } td { (call.status.as_str()) } }
                tr { th { "latency" } td { (ms(call.latency_ms)) } }
                tr { th { "origin" } td { (origin) } }
                tr { th { "request hash" } td { code { (call.request_hash.as_str()) } } }
                tr { th { "response hash" } td { code { (call.response_hash.as_ref().map_or("—", contracts::ContentHash::as_str)) } } }
            }
            @if let Some(error) = &call.error_json { h2 { "Error" } pre { (error) } }
            h2 { "Request" } pre #request { (payload(request)) }
            h2 { "Response" } pre #response { (payload(response)) }
        },
    )
}

/// A page that says what was not found, or what went wrong.
pub(crate) fn problem(title: &str, message: &str) -> Markup {
    layout(title, html! { p #problem { (message) } p { a href="/" { "back to the runs" } } })
}

/// Settings JSON, pretty-printed.
pub(crate) fn pretty(settings: &str) -> String {
    serde_json::from_str::<J>(settings)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| settings.to_owned())
}
