//! The MCP tools: one method each, answering from the Landscape's analysis
//! and lineage layer.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler};
use serde_json::{json, Map, Value as J};

use contracts::records::Run;
use contracts::{NodeId, RowId, RunId, TokenId};
use landscape::analysis::{self, node_name, CallsFilter, Page, Paged};
use landscape::export::records as rec;
use landscape::lineage::RowSelector;
use landscape::{LandscapeError, Recorder};

use super::args::{
    CallsArgs, ErrorsArgs, ExplainArgs, FailureArgs, FieldArgs, ListRuns, ListTokens, NodeStatesArgs, Nothing, OperationArg,
    QueryArgs, RecentArgs, RunArg, RunPage,
};

/// The MCP server: a read-only Landscape and the tools over it.
#[derive(Clone)]
pub(crate) struct Analyst {
    url: String,
    recorder: Arc<Mutex<Recorder>>,
    tool_router: ToolRouter<Analyst>,
}

/// Why a tool could not answer.
enum Failure {
    /// The arguments name something wrong or absent.
    Bad(String),
    /// Reading the Landscape failed.
    Internal(String),
}

impl From<LandscapeError> for Failure {
    fn from(error: LandscapeError) -> Failure {
        match error.missing() {
            Some(what) => Failure::Bad(format!("not found: {what}")),
            None => Failure::Internal(error.to_string()),
        }
    }
}

type Answer = Result<J, Failure>;

fn reply(answer: Answer) -> Result<CallToolResult, ErrorData> {
    match answer {
        Ok(J::String(text)) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
        }
        Err(Failure::Bad(message)) => Err(ErrorData::invalid_params(message, None)),
        Err(Failure::Internal(message)) => Err(ErrorData::internal_error(message, None)),
    }
}

fn page(offset: Option<u64>, limit: Option<u64>) -> Page {
    Page::new(offset.unwrap_or(0), limit.unwrap_or(50))
}

fn parsed<T: std::str::FromStr>(what: &str, text: Option<&str>) -> Result<Option<T>, Failure>
where
    T::Err: std::fmt::Display,
{
    text.map(|t| t.parse::<T>().map_err(|e| Failure::Bad(format!("{what} {t:?}: {e}")))).transpose()
}

fn paged<T>(list: Paged<T>, f: impl FnMut(T) -> J) -> J {
    let list = list.map(f);
    json!({"items": list.items, "offset": list.offset, "limit": list.limit, "total": list.total})
}

fn object(map: Map<String, J>) -> J {
    J::Object(map)
}

/// A run's record with its status as `elspeth runs` shows it.
fn run_json(run: &Run) -> J {
    let (status, note) = crate::runs::shown_status(run);
    let mut map = rec::run_record(run.clone());
    map.insert("shown_status".into(), J::String(status));
    map.insert("stale".into(), note.map_or(J::Null, J::String));
    map.insert("pipeline".into(), J::String(crate::runs::pipeline_of(run)));
    map.remove("settings_json");
    object(map)
}

fn duration_seconds(run: &Run) -> Option<f64> {
    run.state.completed_at().map(|end| (end - run.started_at).num_milliseconds() as f64 / 1000.0)
}

impl Analyst {
    pub(crate) fn new(url: String, recorder: Arc<Mutex<Recorder>>) -> Analyst {
        Analyst { url, recorder, tool_router: Analyst::tool_router() }
    }

    /// Runs `f` with the recorder (a panic in another call does not lock it for good).
    fn with(&self, f: impl FnOnce(&mut Recorder) -> Answer) -> Result<CallToolResult, ErrorData> {
        let mut recorder = self.recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reply(f(&mut recorder))
    }
}

fn resolve(recorder: &mut Recorder, run: Option<&str>) -> Result<RunId, Failure> {
    match run.unwrap_or("latest") {
        "latest" => recorder
            .runs_page(None, Page::new(0, 1))?
            .items
            .into_iter()
            .next()
            .map(|r| r.run_id)
            .ok_or_else(|| Failure::Bad("the Landscape holds no runs".to_owned())),
        text => {
            let run_id = RunId::parse(text).map_err(|e| Failure::Bad(format!("run_id {text:?}: {e}")))?;
            recorder.get_run(&run_id).map_err(|_| Failure::Bad(format!("run {run_id} is not in this Landscape")))?;
            Ok(run_id)
        }
    }
}

fn row_selector(row: &str) -> Result<RowSelector, Failure> {
    match row.parse::<u64>() {
        Ok(index) => Ok(RowSelector::Index(index)),
        Err(_) => RowId::parse(row)
            .map(RowSelector::Id)
            .map_err(|e| Failure::Bad(format!("row {row:?}: give a row index or a row id ({e})"))),
    }
}

/// The DAG as a Mermaid flowchart: nodes by their settings names, edges by label.
fn mermaid(nodes: &[contracts::records::Node], edges: &[contracts::records::Edge]) -> String {
    let mut text = String::from("flowchart TD\n");
    let key = |id: &NodeId| format!("n{}", nodes.iter().position(|n| &n.node_id == id).unwrap_or(usize::MAX));
    for (i, node) in nodes.iter().enumerate() {
        let name = node_name(node.node_id.as_str()).replace('"', "'");
        let _ = writeln!(text, "    n{i}[\"{} {name}<br/>{}\"]", node.node_type.as_str(), node.plugin_name.replace('"', "'"));
    }
    for edge in edges {
        let arrow = match edge.default_mode {
            contracts::RoutingMode::Move => "-->",
            contracts::RoutingMode::Copy => "==>",
            contracts::RoutingMode::Divert => "-.->",
        };
        let _ =
            writeln!(text, "    {} {arrow}|{}| {}", key(&edge.from_node_id), edge.label.replace('|', "/"), key(&edge.to_node_id));
    }
    text
}

#[tool_router(router = tool_router)]
impl Analyst {
    #[tool(
        description = "List the runs in the Landscape, newest first: status (a `running` run whose process is gone is shown as interrupted and flagged stale), pipeline, start and end, reproducibility grade. Paged."
    )]
    async fn list_runs(&self, Parameters(args): Parameters<ListRuns>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let status = parsed::<contracts::RunStatus>("status", args.status.as_deref())?;
            let runs = recorder.runs_page(status, page(args.offset, args.limit))?;
            Ok(paged(runs, |run| run_json(&run)))
        })
    }

    #[tool(
        description = "One run's full record: status, times, settings (secrets appear only as fingerprints), grade, export status, owner."
    )]
    async fn get_run(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let mut value = run_json(&run);
            value["settings"] = serde_json::from_str(&run.settings_json).unwrap_or(J::Null);
            Ok(value)
        })
    }

    #[tool(
        description = "A run's summary: duration, rows, tokens, node visits per status, terminal outcomes per sink, error counts, calls and batches per status."
    )]
    async fn get_run_summary(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let counts = recorder.run_counts(&run_id)?;
            Ok(json!({
                "run": run_json(&run),
                "duration_seconds": duration_seconds(&run),
                "counts": counts,
            }))
        })
    }

    #[tool(
        description = "The nodes (plugin instances) of a run in pipeline order: settings name, type, plugin, determinism, visits per status and timing."
    )]
    async fn list_nodes(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let stats = recorder.node_stats(&run_id)?;
            Ok(J::Array(
                stats
                    .into_iter()
                    .map(|s| {
                        let mut value = serde_json::to_value(&s).unwrap_or(J::Null);
                        value["name"] = J::String(node_name(&s.node_id).to_owned());
                        value["config"] = serde_json::from_str(&s.node.config_json).unwrap_or(J::Null);
                        value
                    })
                    .collect(),
            ))
        })
    }

    #[tool(
        description = "The source rows of a run by row index (the numbering outputs, explain and the web explorer use), with their source data hash. Paged."
    )]
    async fn list_rows(&self, Parameters(args): Parameters<RunPage>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let rows = recorder.rows_page(&run_id, page(args.offset, args.limit))?;
            Ok(paged(rows, |row| object(rec::row_record(row))))
        })
    }

    #[tool(description = "The tokens of a run, or of one source row (forks, joins and expansions each make new tokens). Paged.")]
    async fn list_tokens(&self, Parameters(args): Parameters<ListTokens>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let row = match args.row.as_deref().map(row_selector).transpose()? {
                None => None,
                Some(RowSelector::Id(id)) => Some(id),
                Some(RowSelector::Index(index)) => {
                    let found = recorder.rows_page(&run_id, Page::new(index, 1))?;
                    let row = found.items.into_iter().find(|r| r.row_index == index);
                    Some(row.ok_or_else(|| Failure::Bad(format!("run {run_id} has no row {index}")))?.row_id)
                }
            };
            let tokens = recorder.tokens_page(&run_id, row.as_ref(), page(args.offset, args.limit))?;
            Ok(paged(tokens, |token| object(rec::token_record(token))))
        })
    }

    #[tool(
        description = "The source and sink operations of a run (source loads, sink writes) with status, duration and error. Paged."
    )]
    async fn list_operations(&self, Parameters(args): Parameters<RunPage>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let operations = recorder.operations_page(&run_id, page(args.offset, args.limit))?;
            Ok(paged(operations, |op| object(rec::operation_record(op))))
        })
    }

    #[tool(
        description = "The external calls (SQL statements, HTTP requests) made inside one source or sink operation, in order. Paged."
    )]
    async fn get_operation_calls(&self, Parameters(args): Parameters<OperationArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let operation = contracts::OperationId::parse(args.operation_id.as_str())
                .map_err(|e| Failure::Bad(format!("operation_id {:?}: {e}", args.operation_id)))?;
            recorder.get_operation(&operation)?;
            let filter = CallsFilter { operation: Some(operation), ..CallsFilter::default() };
            let calls = recorder.calls_page(&run_id, &filter, page(args.offset, args.limit))?;
            Ok(paged(calls, |call| object(rec::call_record(call, &run_id))))
        })
    }

    #[tool(
        description = "The complete lineage of an output back to its source row: every node visit with hashes, routing decisions, external calls, batches, forks and joins, and the terminal outcome. Give a token_id, or a row (index or id) to explain each of its outputs. Text (default) is plain language; format=json has every recorded field."
    )]
    async fn explain_token(&self, Parameters(args): Parameters<ExplainArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let tokens = match (&args.token_id, &args.row) {
                (Some(token), None) => {
                    vec![TokenId::parse(token.as_str()).map_err(|e| Failure::Bad(format!("token_id {token:?}: {e}")))?]
                }
                (None, Some(row)) => recorder
                    .row_outputs(&run_id, &row_selector(row)?, args.sink.as_deref())
                    .map_err(|e| Failure::Bad(e.to_string()))?,
                _ => return Err(Failure::Bad("give exactly one of token_id and row".to_owned())),
            };
            let lineages = tokens.iter().map(|t| recorder.explain(&run_id, t)).collect::<Result<Vec<_>, _>>()?;
            match args.format.as_deref().unwrap_or("text") {
                "text" => Ok(J::String(crate::explain::render_with(&lineages, args.ids.unwrap_or(false)))),
                "json" => Ok(json!({"run_id": run_id.as_str(), "outputs": lineages.iter().map(landscape::lineage::Lineage::to_json).collect::<Vec<_>>()})),
                other => Err(Failure::Bad(format!("format {other:?}: expected text or json"))),
            }
        })
    }

    #[tool(
        description = "The errors a run recorded: validation errors (source rows that failed their schema: the row's data, the error, where it went) and/or transform errors (rows a transform rejected, with details). Paged."
    )]
    async fn get_errors(&self, Parameters(args): Parameters<ErrorsArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let page = page(args.offset, args.limit);
            let kind = args.kind.as_deref().unwrap_or("all");
            let (validation, transform) = match kind {
                "all" => (true, true),
                "validation" => (true, false),
                "transform" => (false, true),
                other => return Err(Failure::Bad(format!("kind {other:?}: expected validation, transform or all"))),
            };
            let mut answer = Map::new();
            if validation {
                let errors = recorder.validation_errors_page(&run_id, false, page)?;
                answer.insert("validation_errors".into(), paged(errors, |e| object(rec::validation_error_record(e))));
            }
            if transform {
                let errors = recorder.transform_errors_page(&run_id, page)?;
                answer.insert("transform_errors".into(), paged(errors, |e| object(rec::transform_error_record(e))));
            }
            Ok(object(answer))
        })
    }

    #[tool(
        description = "Node states (one per token per node visit): status, input/output hashes, duration, context (a gate's condition and result) and error; optionally of one node and/or one status. Paged."
    )]
    async fn get_node_states(&self, Parameters(args): Parameters<NodeStatesArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let node = args
                .node_id
                .as_deref()
                .map(|n| NodeId::parse(n).map_err(|e| Failure::Bad(format!("node_id {n:?}: {e}"))))
                .transpose()?;
            let status = parsed::<contracts::NodeStateStatus>("status", args.status.as_deref())?;
            let states = recorder.node_states_page(&run_id, node.as_ref(), status, page(args.offset, args.limit))?;
            Ok(paged(states, |state| object(rec::node_state_record(state))))
        })
    }

    #[tool(
        description = "External calls (LLM, HTTP, SQL, process) of a run or of one node state: type, status, request/response hashes, latency, error, and whether it was replayed or verified. Paged."
    )]
    async fn get_calls(&self, Parameters(args): Parameters<CallsArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let state = args
                .state_id
                .as_deref()
                .map(|s| contracts::StateId::parse(s).map_err(|e| Failure::Bad(format!("state_id {s:?}: {e}"))))
                .transpose()?;
            let filter = CallsFilter {
                state,
                operation: None,
                call_type: parsed("call_type", args.call_type.as_deref())?,
                status: parsed("status", args.status.as_deref())?,
            };
            let calls = recorder.calls_page(&run_id, &filter, page(args.offset, args.limit))?;
            Ok(paged(calls, |call| object(rec::call_record(call, &run_id))))
        })
    }

    #[tool(
        description = "Run one read-only SQL query (SELECT or WITH … SELECT) over the Landscape tables and get columns and rows (at most `limit`, interrupted after `timeout_ms`, 5 s at most). Anything that writes, a second statement, ATTACH or PRAGMA is refused. See describe_schema for the tables."
    )]
    async fn query(&self, Parameters(args): Parameters<QueryArgs>) -> Result<CallToolResult, ErrorData> {
        let url = self.url.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_millis(args.timeout_ms.unwrap_or(5000).clamp(1, 5000));
            analysis::select(&url, &args.sql, args.limit.unwrap_or(100), timeout)
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        match answer {
            Ok(result) => reply(Ok(serde_json::to_value(result).unwrap_or(J::Null))),
            Err(error) => Err(ErrorData::invalid_params(error.to_string(), None)),
        }
    }

    #[tool(
        description = "The pipeline's graph: nodes (settings name, type, plugin, determinism), edges (label, mode, how many routing decisions took each) and a Mermaid flowchart of it."
    )]
    async fn get_dag_structure(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let nodes = recorder.get_nodes(&run_id)?;
            let edges = recorder.edge_counts(&run_id)?;
            let plain: Vec<contracts::records::Edge> = edges.iter().map(|e| e.edge.clone()).collect();
            Ok(json!({
                "nodes": nodes.iter().map(|n| json!({
                    "node_id": n.node_id.as_str(), "name": node_name(n.node_id.as_str()), "node_type": n.node_type.as_str(),
                    "plugin_name": n.plugin_name, "determinism": n.determinism.as_str(), "sequence": n.sequence_in_pipeline,
                })).collect::<Vec<_>>(),
                "edges": edges,
                "mermaid": mermaid(&nodes, &plain),
            }))
        })
    }

    #[tool(
        description = "Where a run spent its time: each node's visits, total, mean, least and greatest duration and share of all node time, slowest first; the bottleneck and nodes whose slowest visit is far above their mean."
    )]
    async fn get_performance_report(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let mut stats = recorder.node_stats(&run_id)?;
            stats.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
            let all: f64 = stats.iter().map(|s| s.total_ms).sum();
            let nodes: Vec<J> = stats
                .iter()
                .map(|s| {
                    json!({
                        "node_id": s.node_id, "name": node_name(&s.node_id), "plugin_name": s.plugin_name, "visits": s.visits,
                        "total_ms": s.total_ms, "mean_ms": s.mean_ms, "min_ms": s.min_ms, "max_ms": s.max_ms,
                        "share": if all > 0.0 { s.total_ms / all } else { 0.0 },
                        "max_over_mean": s.mean_ms.zip(s.max_ms).filter(|(mean, _)| *mean > 0.0).map(|(mean, max)| max / mean),
                    })
                })
                .collect();
            let erratic: Vec<&J> = nodes.iter().filter(|n| n["max_over_mean"].as_f64().is_some_and(|r| r > 10.0)).collect();
            Ok(json!({
                "duration_seconds": duration_seconds(&run),
                "total_node_ms": all,
                "bottleneck": nodes.first().cloned(),
                "high_variance": erratic,
                "nodes": nodes,
            }))
        })
    }

    #[tool(
        description = "A run's errors grouped by kind (validation, transform, failed node visit), node and classification, most frequent first, each with a count and a sample message."
    )]
    async fn get_error_analysis(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let counts = recorder.run_counts(&run_id)?;
            let groups = recorder.error_groups(&run_id)?;
            let total: u64 = groups.iter().map(|g| g.count).sum();
            Ok(json!({"rows": counts.rows, "errors": total, "groups": groups}))
        })
    }

    #[tool(
        description = "External calls per node, call type and status: counts, success rate, total, mean and greatest latency; for LLM and HTTP plugins especially."
    )]
    async fn get_llm_usage_report(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let usage = recorder.call_usage(&run_id)?;
            let calls: u64 = usage.iter().map(|u| u.calls).sum();
            let succeeded: u64 = usage.iter().filter(|u| u.status == "success").map(|u| u.calls).sum();
            let llm: u64 = usage.iter().filter(|u| u.call_type == "llm").map(|u| u.calls).sum();
            Ok(json!({
                "calls": calls,
                "llm_calls": llm,
                "success_rate": if calls > 0 { Some(succeeded as f64 / calls as f64) } else { None },
                "by_node": usage,
            }))
        })
    }

    #[tool(description = "The Landscape's tables with their columns, types, keys and foreign keys, for writing `query` SQL.")]
    async fn describe_schema(&self, Parameters(_): Parameters<Nothing>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let tables = recorder.describe_tables()?;
            Ok(J::String(landscape::introspect::render_schema(&tables)))
        })
    }

    #[tool(
        description = "How a run's tokens ended: terminal outcomes per outcome and sink, non-terminal outcomes (forked, expanded, buffered), and how many fork, join and expand groups there were."
    )]
    async fn get_outcome_analysis(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let counts = recorder.run_counts(&run_id)?;
            let (terminal, other): (Vec<_>, Vec<_>) = counts.outcomes.iter().partition(|o| o.terminal);
            let mut sinks: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
            for outcome in &terminal {
                if let Some(sink) = &outcome.sink {
                    *sinks.entry(sink.as_str()).or_insert(0) += outcome.count;
                }
            }
            Ok(json!({
                "rows": counts.rows, "tokens": counts.tokens,
                "terminal": terminal, "non_terminal": other, "sinks": sinks,
                "fork_groups": counts.fork_groups, "join_groups": counts.join_groups, "expand_groups": counts.expand_groups,
            }))
        })
    }

    #[tool(
        description = "Scan the 20 most recent runs for trouble: failed runs, stale runs (running but their process is gone), runs with failed node visits, and runs where more than 10% of terminal outcomes are failures, quarantines or diversions."
    )]
    async fn diagnose(&self, Parameters(_): Parameters<Nothing>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let runs = recorder.runs_page(None, Page::new(0, 20))?.items;
            let mut findings = Vec::new();
            for run in &runs {
                let counts = recorder.run_counts(&run.run_id)?;
                let (status, stale) = crate::runs::shown_status(run);
                let terminal: u64 = counts.outcomes.iter().filter(|o| o.terminal).map(|o| o.count).sum();
                let bad: u64 = counts
                    .outcomes
                    .iter()
                    .filter(|o| o.terminal && matches!(o.outcome.as_str(), "failed" | "quarantined" | "diverted"))
                    .map(|o| o.count)
                    .sum();
                let failed_states = counts.node_states.iter().find(|s| s.status == "failed").map_or(0, |s| s.count);
                let mut problems = Vec::new();
                if status == "failed" {
                    problems.push("the run failed".to_owned());
                }
                if let Some(stale) = stale {
                    problems.push(format!("the run is interrupted ({stale}); `elspeth resume` can continue it"));
                }
                if failed_states > 0 {
                    problems.push(format!("{failed_states} node visits failed"));
                }
                if terminal > 0 && bad * 10 > terminal {
                    problems.push(format!("{bad} of {terminal} outputs failed, were quarantined or diverted"));
                }
                if !problems.is_empty() {
                    findings.push(json!({"run_id": run.run_id.as_str(), "status": status, "problems": problems}));
                }
            }
            Ok(json!({"runs_scanned": runs.len(), "healthy": runs.len() - findings.len(), "findings": findings}))
        })
    }

    #[tool(
        description = "A deep dive into one run's failures: errors grouped with counts, and the first examples of failed node visits (with their error), failed calls, transform errors, validation errors and failed batches."
    )]
    async fn get_failure_context(&self, Parameters(args): Parameters<FailureArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let context = recorder.failure_context(&run_id, args.limit.unwrap_or(10).min(100))?;
            Ok(json!({
                "run": run_json(&run),
                "groups": context.groups,
                "failed_node_states": paged(context.failed_states, |s| object(rec::node_state_record(s))),
                "failed_calls": paged(context.failed_calls, |c| object(rec::call_record(c, &run_id))),
                "transform_errors": paged(context.transform_errors, |e| object(rec::transform_error_record(e))),
                "validation_errors": paged(context.validation_errors, |e| object(rec::validation_error_record(e))),
                "failed_batches": context.failed_batches.into_iter().map(|b| object(rec::batch_record(b))).collect::<Vec<_>>(),
            }))
        })
    }

    #[tool(description = "Runs started in the last N minutes (default 60), newest first, with their status and row counts.")]
    async fn get_recent_activity(&self, Parameters(args): Parameters<RecentArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let minutes = args.minutes.unwrap_or(60);
            let since = contracts::time::now() - chrono::TimeDelta::minutes(i64::from(minutes));
            let runs = recorder.runs_since(since)?;
            let mut answer = Vec::with_capacity(runs.len());
            for run in &runs {
                let mut value = run_json(run);
                value["rows"] = J::from(recorder.count_rows(&run.run_id)?);
                value["duration_seconds"] = json!(duration_seconds(run));
                answer.push(value);
            }
            Ok(json!({"minutes": minutes, "since": contracts::time::render(&since), "runs": answer}))
        })
    }

    #[tool(
        description = "A run's schema contract: the source's schema mode and fields with types, how original source headers were normalized to field names, and each node's declared schema and contracts."
    )]
    async fn get_run_contract(&self, Parameters(args): Parameters<RunArg>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let nodes = recorder.get_nodes(&run_id)?;
            let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<J>(t).ok());
            Ok(json!({
                "source_schema": parse(&run.source_schema_json),
                "field_resolution": parse(&run.source_field_resolution_json),
                "schema_contract": parse(&run.schema_contract_json),
                "nodes": nodes.iter().map(|n| json!({
                    "node_id": n.node_id.as_str(), "name": node_name(n.node_id.as_str()), "node_type": n.node_type.as_str(),
                    "schema_mode": n.schema_mode, "schema_fields": parse(&n.schema_fields_json),
                    "input_contract": parse(&n.input_contract_json), "output_contract": parse(&n.output_contract_json),
                })).collect::<Vec<_>>(),
            }))
        })
    }

    #[tool(
        description = "The provenance of one field: its original header in the source, its normalized name, its declared type and whether it is required, and which nodes declare it."
    )]
    async fn explain_field(&self, Parameters(args): Parameters<FieldArgs>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let run = recorder.get_run(&run_id)?;
            let resolution: Map<String, J> =
                run.source_field_resolution_json.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
            let (original, normalized) = match resolution
                .iter()
                .find(|(o, n)| *o == &args.field || n.as_str() == Some(&args.field))
            {
                Some((original, normalized)) => (Some(original.clone()), normalized.as_str().unwrap_or(&args.field).to_owned()),
                None => (None, args.field.clone()),
            };
            let mut declared = Vec::new();
            for node in recorder.get_nodes(&run_id)? {
                let fields: Vec<J> =
                    node.schema_fields_json.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
                if let Some(field) = fields.into_iter().find(|f| f["name"] == J::String(normalized.clone())) {
                    declared.push(json!({
                        "node_id": node.node_id.as_str(), "name": node_name(node.node_id.as_str()),
                        "node_type": node.node_type.as_str(), "schema_mode": node.schema_mode, "field": field,
                    }));
                }
            }
            if original.is_none() && declared.is_empty() {
                return Err(Failure::Bad(format!(
                    "run {run_id} has no field {:?} (neither an original header nor a declared field)",
                    args.field
                )));
            }
            Ok(json!({"field": args.field, "original_name": original, "normalized_name": normalized, "declared_by": declared}))
        })
    }

    #[tool(
        description = "Schema contract violations of a run: source rows with a type mismatch or a missing field, with the field's original and normalized name, expected and actual type. Paged."
    )]
    async fn list_contract_violations(&self, Parameters(args): Parameters<RunPage>) -> Result<CallToolResult, ErrorData> {
        self.with(|recorder| {
            let run_id = resolve(recorder, args.run_id.as_deref())?;
            let errors = recorder.validation_errors_page(&run_id, true, page(args.offset, args.limit))?;
            Ok(paged(errors, |e| object(rec::validation_error_record(e))))
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Analyst {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("elspeth", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Read-only access to an ELSPETH Landscape, the audit trail of pipeline runs. Start with list_runs or \
                 diagnose; get_run_summary and get_dag_structure describe a run; explain_token tells one output's \
                 story back to its source row; query runs one SELECT. Every tool takes run_id (default: the latest run).",
            )
    }
}
