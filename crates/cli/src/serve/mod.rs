//! `elspeth serve`: a read-only web explorer of the Landscape for auditors.
//!
//! Server-side HTML (maud) over axum; the DAG is drawn as SVG on the
//! server; no JavaScript and no external assets, so it works offline. The
//! Landscape is opened read-only and every page answers through
//! `landscape::analysis` and `landscape::lineage` with a number of queries
//! that depends on the page size, never on the run's size. Only GET exists:
//! any other method on a page is 405. Listening anywhere but loopback
//! requires a bearer token.

mod dag;
mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use serde::Deserialize;

use contracts::{RowId, RunId, TokenId};
use landscape::analysis::{Page, Paged};
use landscape::lineage::{Lineage, RowSelector};
use landscape::{LandscapeError, Recorder};

/// How the explorer is reached.
pub(crate) struct ServeOptions {
    pub(crate) bind: SocketAddr,
    pub(crate) token: Option<String>,
}

#[derive(Clone)]
struct Explorer {
    recorder: Arc<Mutex<Recorder>>,
    /// What the pages aggregate over a whole run, kept for runs that have
    /// ended (their records no longer change) and valid while the run's
    /// record is as it was when it was computed.
    summaries: Arc<Mutex<HashMap<RunId, Arc<Summary>>>>,
    token: Option<Arc<str>>,
    signing_key: Option<Arc<[u8]>>,
}

/// Why a page could not be shown.
enum Problem {
    NotFound(String),
    Bad(String),
    Internal(String),
}

impl From<LandscapeError> for Problem {
    fn from(error: LandscapeError) -> Problem {
        match error.missing() {
            Some(what) => Problem::NotFound(format!("{what} is not in this Landscape")),
            None => Problem::Internal(error.to_string()),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Problem::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            Problem::Bad(message) => (StatusCode::BAD_REQUEST, "Not understood", message),
            Problem::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, "The Landscape could not be read", message),
        };
        (status, Html(pages::problem(title, &message).into_string())).into_response()
    }
}

type Answer = Result<Response, Problem>;

fn html(markup: &Markup) -> Answer {
    Ok(Html(markup.clone().into_string()).into_response())
}

/// Serves the Landscape at `url` until Ctrl-C or SIGTERM.
pub(crate) fn serve(url: &str, payload_dir: Option<std::path::PathBuf>, options: ServeOptions) -> anyhow::Result<()> {
    if !options.bind.ip().is_loopback() && options.token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without --token: anyone who can reach it could read the audit trail. \
             Give --token SECRET (clients send `Authorization: Bearer SECRET`), or bind to 127.0.0.1",
            options.bind
        );
    }
    let recorder =
        Recorder::open_read_only(url, payload_dir.map(landscape::PayloadStore::new)).context("cannot open the Landscape")?;
    let signing_key = std::env::var(crate::export::KEY_ENV).ok().filter(|k| !k.is_empty()).map(|k| Arc::from(k.into_bytes()));
    if let Some(key) = &signing_key {
        landscape::export::check_signing_key(key).map_err(|e| anyhow::format_err!("{}: {e}", crate::export::KEY_ENV))?;
    }
    let explorer = Explorer {
        recorder: Arc::new(Mutex::new(recorder)),
        summaries: Arc::default(),
        token: options.token.map(Arc::from),
        signing_key,
    };
    warm(url, &explorer);
    let app = router(explorer);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(options.bind).await.with_context(|| format!("cannot listen on {}", options.bind))?;
        let address = listener.local_addr()?;
        crate::print_out(&format!("elspeth serve: listening on http://{address}/ (read-only; Ctrl-C stops)\n"))?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the web server failed")
    })
}

/// Computes the summaries of the 50 most recent ended runs on a second
/// read-only connection in the background, so that their pages answer from
/// memory when first opened. A failure here only means pages compute their
/// summaries when asked.
fn warm(url: &str, explorer: &Explorer) {
    let (url, explorer) = (url.to_owned(), explorer.clone());
    std::thread::spawn(move || {
        let Ok(mut recorder) = Recorder::open_read_only(&url, None) else { return };
        let Ok(runs) = recorder.runs_page(None, Page::new(0, 50)) else { return };
        for run in runs.items.iter().filter(|r| engine::ownership::liveness(r) == engine::ownership::Liveness::Ended) {
            if summary(&mut recorder, &explorer, run).is_err() {
                return;
            }
        }
    });
}

fn router(explorer: Explorer) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/search", get(search))
        .route("/runs/{run_id}", get(run_page))
        .route("/runs/{run_id}/rows", get(rows_page))
        .route("/runs/{run_id}/batches", get(batches_page))
        .route("/runs/{run_id}/rows/{row_index}", get(row_page))
        .route("/runs/{run_id}/export.jsonl", get(export))
        .route("/tokens/{token_id}", get(token_page))
        .route("/calls/{call_id}", get(call_page))
        .fallback(|| async { Problem::NotFound("no such page".to_owned()) })
        .layer(axum::middleware::from_fn_with_state(explorer.clone(), authorize))
        .with_state(explorer)
}

/// With a token configured, every request must carry it as a bearer token.
async fn authorize(State(explorer): State<Explorer>, request: Request, next: Next) -> Response {
    let Some(token) = &explorer.token else { return next.run(request).await };
    let given =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n").into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs `f` on the Landscape off the async threads.
async fn with_landscape(explorer: Explorer, f: impl FnOnce(&mut Recorder, &Explorer) -> Answer + Send + 'static) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let mut recorder = explorer.recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut recorder, &explorer)
    })
    .await;
    match answer {
        Ok(Ok(response)) => response,
        Ok(Err(problem)) => problem.into_response(),
        Err(error) => Problem::Internal(error.to_string()).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Offset {
    offset: Option<u64>,
}

impl Offset {
    fn page(&self) -> Page {
        Page::new(self.offset.unwrap_or(0), 50)
    }
}

fn run_id(text: &str) -> Result<RunId, Problem> {
    RunId::parse(text).map_err(|e| Problem::Bad(format!("run {text:?}: {e}")))
}

/// A run's aggregates, as the runs list and the run page show them.
struct Summary {
    /// The run's record when this was computed.
    run: contracts::records::Run,
    counts: landscape::analysis::RunCounts,
    nodes: Vec<landscape::analysis::NodeStats>,
    edges: Vec<landscape::analysis::EdgeCount>,
    usage: Vec<landscape::analysis::CallUsage>,
}

impl Summary {
    /// Terminal outcomes summed over sinks.
    fn outcomes(&self) -> Vec<(String, u64)> {
        let mut outcomes: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for outcome in self.counts.outcomes.iter().filter(|o| o.terminal) {
            *outcomes.entry(outcome.outcome.clone()).or_insert(0) += outcome.count;
        }
        outcomes.into_iter().collect()
    }
}

/// The aggregates of `run`: from memory when the run has ended and is
/// unchanged since they were computed, else computed (and kept when ended).
fn summary(recorder: &mut Recorder, explorer: &Explorer, run: &contracts::records::Run) -> Result<Arc<Summary>, Problem> {
    let summaries = || explorer.summaries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(kept) = summaries().get(&run.run_id).filter(|s| &s.run == run) {
        return Ok(Arc::clone(kept));
    }
    let computed = Arc::new(Summary {
        run: run.clone(),
        counts: recorder.run_counts(&run.run_id)?,
        nodes: recorder.node_stats(&run.run_id)?,
        edges: recorder.edge_counts(&run.run_id)?,
        usage: recorder.call_usage(&run.run_id)?,
    });
    if engine::ownership::liveness(run) == engine::ownership::Liveness::Ended {
        summaries().insert(run.run_id.clone(), Arc::clone(&computed));
    }
    Ok(computed)
}

fn run_line(
    recorder: &mut Recorder,
    explorer: &Explorer,
    run: contracts::records::Run,
) -> Result<(pages::RunLine, Arc<Summary>), Problem> {
    let (status, stale) = crate::runs::shown_status(&run);
    let summary = summary(recorder, explorer, &run)?;
    let pipeline = crate::runs::pipeline_of(&run);
    let line = pages::RunLine { status, stale, pipeline, rows: summary.counts.rows, outcomes: summary.outcomes(), run };
    Ok((line, summary))
}

async fn runs_page(State(explorer): State<Explorer>, Query(offset): Query<Offset>) -> Response {
    with_landscape(explorer, move |recorder, explorer| {
        let runs = recorder.runs_page(None, offset.page())?;
        let (offset, limit, total) = (runs.offset, runs.limit, runs.total);
        let items = runs
            .items
            .into_iter()
            .map(|run| run_line(recorder, explorer, run).map(|(line, _)| line))
            .collect::<Result<Vec<_>, _>>()?;
        html(&pages::runs(&Paged { items, offset, limit, total }))
    })
    .await
}

async fn run_page(State(explorer): State<Explorer>, Path(run): Path<String>, Query(offset): Query<Offset>) -> Response {
    with_landscape(explorer, move |recorder, explorer| {
        let run_id = run_id(&run)?;
        let record = recorder.get_run(&run_id)?;
        let settings = pages::pretty(&record.settings_json);
        let (line, summary) = run_line(recorder, explorer, record)?;
        let page = pages::RunPage {
            counts: summary.counts.clone(),
            dag: dag::svg(&summary.nodes, &summary.edges),
            nodes: summary.nodes.clone(),
            usage: summary.usage.clone(),
            validation: recorder.validation_errors_page(&run_id, false, offset.page())?,
            transform: recorder.transform_errors_page(&run_id, offset.page())?,
            settings,
            checkpoint: recorder.latest_checkpoint(&run_id)?,
            batches: recorder.batches_page(&run_id, Page::new(0, 20))?,
            signed_export: explorer.signing_key.is_some(),
            line,
        };
        html(&pages::run(&page))
    })
    .await
}

async fn rows_page(State(explorer): State<Explorer>, Path(run): Path<String>, Query(offset): Query<Offset>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let run_id = run_id(&run)?;
        recorder.get_run(&run_id)?;
        let rows = recorder.rows_page(&run_id, offset.page())?;
        html(&pages::rows(run_id.as_str(), &rows))
    })
    .await
}

async fn batches_page(State(explorer): State<Explorer>, Path(run): Path<String>, Query(offset): Query<Offset>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let run_id = run_id(&run)?;
        recorder.get_run(&run_id)?;
        let batches = recorder.batches_page(&run_id, offset.page())?;
        html(&pages::batches(run_id.as_str(), &batches))
    })
    .await
}

fn outcome_of(lineage: &Lineage) -> String {
    lineage.target().terminal_outcome().map_or_else(|| "not finished".to_owned(), |o| o.detail.outcome().as_str().to_owned())
}

async fn row_page(State(explorer): State<Explorer>, Path((run, row_index)): Path<(String, u64)>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let run_id = run_id(&run)?;
        let tokens = recorder
            .row_outputs(&run_id, &RowSelector::Index(row_index), None)
            .map_err(|e| Problem::NotFound(format!("row {row_index} of run {run_id}: {e}")))?;
        let lineages = tokens.iter().map(|t| recorder.explain(&run_id, t)).collect::<Result<Vec<_>, _>>()?;
        let outputs: Vec<(String, String)> = lineages.iter().map(|l| (l.target.as_str().to_owned(), outcome_of(l))).collect();
        let text = crate::explain::render(&lineages);
        let title = format!("Row {row_index} of run {run_id}");
        html(&pages::lineage(&title, run_id.as_str(), &text, &outputs, &calls_of(&lineages)))
    })
    .await
}

async fn token_page(State(explorer): State<Explorer>, Path(token): Path<String>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let token_id = TokenId::parse(token.as_str()).map_err(|e| Problem::Bad(format!("token {token:?}: {e}")))?;
        let record = recorder.get_token(&token_id)?;
        let lineage = recorder.explain(&record.run_id, &token_id)?;
        let lineages = [lineage];
        let text = crate::explain::render(&lineages);
        let title = format!("Token {token_id}");
        html(&pages::lineage(&title, record.run_id.as_str(), &text, &[], &calls_of(&lineages)))
    })
    .await
}

/// Every call made on the way to the outputs, once each: (call id, what it was).
fn calls_of(lineages: &[Lineage]) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut calls = Vec::new();
    for lineage in lineages {
        for token in &lineage.tokens {
            let flushes = token.batches.iter().filter_map(|b| b.flush.as_ref());
            for state in token.states.iter().chain(flushes) {
                let node = landscape::analysis::node_name(state.state.common().node_id.as_str());
                for call in &state.calls {
                    if seen.insert(call.call_id.clone()) {
                        let label = format!("{node} #{} {} {}", call.call_index, call.call_type.as_str(), call.status.as_str());
                        calls.push((call.call_id.as_str().to_owned(), label));
                    }
                }
            }
        }
    }
    calls
}

async fn call_page(State(explorer): State<Explorer>, Path(call): Path<String>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let call_id = contracts::CallId::parse(call.as_str()).map_err(|e| Problem::Bad(format!("call {call:?}: {e}")))?;
        let (record, request, response) = recorder.call_with_payloads(&call_id)?;
        let node = match &record.parent {
            contracts::records::CallParent::State(state) => recorder.get_node_state(state)?.common().node_id.as_str().to_owned(),
            contracts::records::CallParent::Operation(operation) => {
                recorder.get_operation(operation)?.node_id.as_str().to_owned()
            }
        };
        html(&pages::call(&record, landscape::analysis::node_name(&node), &request, &response))
    })
    .await
}

async fn export(State(explorer): State<Explorer>, Path(run): Path<String>) -> Response {
    with_landscape(explorer, move |recorder, explorer| {
        let run_id = run_id(&run)?;
        recorder.get_run(&run_id)?;
        let mut sink = landscape::export::JsonLines(Vec::new());
        recorder.export(&run_id, explorer.signing_key.as_deref(), &mut sink)?;
        let name = format!("attachment; filename=\"{run_id}.jsonl\"");
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson".to_owned()), (header::CONTENT_DISPOSITION, name)], sink.0)
            .into_response())
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
struct Search {
    q: Option<String>,
    run: Option<String>,
}

/// A run id, token id or row id (or, with `run`, a row number) → its page.
async fn search(State(explorer): State<Explorer>, Query(search): Query<Search>) -> Response {
    with_landscape(explorer, move |recorder, _| {
        let q = search.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
        if let (Some(run), Ok(index)) = (&search.run, q.parse::<u64>()) {
            return Ok(Redirect::to(&format!("/runs/{}/rows/{index}", run_id(run)?)).into_response());
        }
        if let Ok(run) = RunId::parse(q.as_str()) {
            if recorder.get_run(&run).is_ok() {
                return Ok(Redirect::to(&format!("/runs/{run}")).into_response());
            }
        }
        if let Ok(token) = TokenId::parse(q.as_str()) {
            if recorder.get_token(&token).is_ok() {
                return Ok(Redirect::to(&format!("/tokens/{token}")).into_response());
            }
        }
        if let Ok(row) = RowId::parse(q.as_str()) {
            if let Ok(found) = recorder.get_row(&row) {
                return Ok(Redirect::to(&format!("/runs/{}/rows/{}", found.run_id, found.row_index)).into_response());
            }
        }
        Err(Problem::NotFound(format!("no run, row or token has the id {q:?} (a row number needs its run: open the run's rows)")))
    })
    .await
}
