//! The token processor: one source item at a time, a FIFO work queue of
//! tokens, and the transform and gate executors. Every visit is exactly one
//! node state, recorded completed or failed; no state is ever left open.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use contracts::plugin::{InvalidRecord, PluginContext, PluginError, SourceItem, TransformResult};
use contracts::records::{CallParent, OutcomeDetail, Token};
use contracts::{
    canonical_json, error_hash, stable_hash, ContentHash, EdgeId, ForkGroupId, OperationId, RoutingMode, Row, RowOutcome, RunId,
    StateId, TokenId, Value,
};
use landscape::recorder::{NewCall, NewNodeState, NewTransformError, NewValidationError, OperationCompletion, StateCompletion};
use landscape::{LandscapeError, Recorder};

use super::sinks::{Delivery, DeliveryKind};
use super::source_thread::{Received, SourceOnThread, SourceThread};
use super::{outcome_key, Progress, RunOptions};
use crate::dag::{BranchTarget, Graph, NodeIdx, NodeKind, PipelinePlugins, RouteTarget};
use crate::expression::Condition;
use crate::settings::LoadedSettings;

/// How long the engine waits for the source before it looks at the clock
/// and the interrupt flag again.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Why a run stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("audit trail: {0}")]
    Landscape(#[from] LandscapeError),
    #[error("{node}: {source}")]
    Plugin { node: String, source: PluginError },
    #[error("configuration: {0}")]
    Config(String),
    /// A bug in the engine or a plugin breaking the pipeline's contract.
    #[error("internal invariant violated: {0}")]
    Invariant(String),
    #[error("{0} is not supported by this engine yet")]
    Unsupported(String),
    /// A run cannot be resumed (changed settings or input, live owner, …).
    #[error("cannot resume: {0}")]
    Resume(String),
}

/// A token on its way through the graph, with its current data and hash.
pub(crate) struct Work {
    pub(crate) token: Token,
    pub(crate) row: Row,
    pub(crate) hash: ContentHash,
    pub(crate) at: NodeIdx,
    /// The fork this token's branch came from (inherited through branch
    /// transforms and expansions): what a coalesce joins on.
    pub(crate) fork_group: Option<ForkGroupId>,
}

pub(crate) struct Runtime<'r> {
    pub(crate) loaded: LoadedSettings,
    pub(crate) graph: Graph,
    pub(crate) plugins: PipelinePlugins,
    pub(crate) recorder: &'r mut Recorder,
    pub(crate) run_id: RunId,
    pub(crate) edge_ids: HashMap<(NodeIdx, String), EdgeId>,
    conditions: Vec<Option<Condition>>,
    pub(crate) contexts: Vec<PluginContext>,
    pub(crate) pending: Vec<Vec<Delivery>>,
    /// The last sink state per sink node, for artifacts written at the end.
    pub(crate) last_sink_state: Vec<Option<StateId>>,
    pub(crate) rows_read: u64,
    pub(crate) counts: BTreeMap<&'static str, u64>,
    pub(crate) per_sink: BTreeMap<String, BTreeMap<&'static str, u64>>,
    source_operation: Option<OperationId>,
    bound_field_resolution: bool,
    /// Open aggregation batches, per node.
    pub(crate) buffers: Vec<super::aggregation::AggregationBuffer>,
    /// Flushes whose batch transform answered pending, polled by the timers.
    pub(crate) pending_flushes: Vec<super::aggregation::PendingFlush>,
    /// Branch tokens waiting at coalesces.
    pub(crate) coalesces: super::coalesce::CoalesceState,
    /// The last token created (a checkpoint names one).
    pub(crate) last_token: Option<TokenId>,
    /// Per sink node: its output's length after the last durable write.
    pub(crate) sink_bytes: Vec<Option<u64>>,
    /// Checkpoints written so far (their sequence numbers).
    pub(crate) checkpoints: u64,
    pub(crate) topology_hash: ContentHash,
    pub(crate) config_hash: ContentHash,
    /// Crash-test hook and the counters it looks at.
    pub(crate) crash_at: Option<super::checkpoint::CrashPoint>,
    pub(crate) commits: u64,
    pub(crate) sink_writes: u64,
    /// What time-based triggers read.
    pub(crate) clock: std::sync::Arc<dyn super::Clock>,
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

fn execution_error(message: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({"exception": message, "type": kind})
}

impl<'r> Runtime<'r> {
    pub(crate) fn new(
        loaded: LoadedSettings,
        graph: Graph,
        plugins: PipelinePlugins,
        recorder: &'r mut Recorder,
        run_id: RunId,
        edge_ids: HashMap<(NodeIdx, String), EdgeId>,
        conditions: Vec<Option<Condition>>,
        config_hash: ContentHash,
    ) -> Result<Runtime<'r>, EngineError> {
        let topology_hash = super::checkpoint::topology_hash(&graph)?;
        let contexts = graph.nodes.iter().map(|n| PluginContext::new(run_id.clone(), n.id.clone())).collect();
        let n_nodes = graph.nodes.len();
        Ok(Runtime {
            loaded,
            graph,
            plugins,
            recorder,
            run_id,
            edge_ids,
            conditions,
            contexts,
            pending: (0..n_nodes).map(|_| Vec::new()).collect(),
            last_sink_state: vec![None; n_nodes],
            rows_read: 0,
            counts: BTreeMap::new(),
            per_sink: BTreeMap::new(),
            source_operation: None,
            bound_field_resolution: false,
            buffers: (0..n_nodes).map(|_| super::aggregation::AggregationBuffer::default()).collect(),
            pending_flushes: Vec::new(),
            coalesces: super::coalesce::CoalesceState::default(),
            last_token: None,
            sink_bytes: vec![None; n_nodes],
            checkpoints: 0,
            topology_hash,
            config_hash,
            crash_at: None,
            commits: 0,
            sink_writes: 0,
            clock: std::sync::Arc::new(super::SystemClock),
        })
    }

    /// The crash-test hook: aborts the process (no unwinding, no cleanup,
    /// as a kill would) when `point` is the configured crash point.
    pub(crate) fn crash_if(&self, point: super::checkpoint::CrashPoint) {
        if self.crash_at == Some(point) {
            std::process::abort();
        }
    }

    pub(crate) fn count(&mut self, outcome: RowOutcome, sink: Option<&str>) {
        *self.counts.entry(outcome_key(outcome)).or_insert(0) += 1;
        if let Some(sink) = sink {
            *self.per_sink.entry(sink.to_owned()).or_default().entry(outcome_key(outcome)).or_insert(0) += 1;
        }
    }

    pub(crate) fn edge(&self, from: NodeIdx, label: &str) -> Result<EdgeId, EngineError> {
        self.edge_ids
            .get(&(from, label.to_owned()))
            .cloned()
            .ok_or_else(|| EngineError::Invariant(format!("no registered edge {label:?} from {}", self.graph.nodes[from].name)))
    }

    /// Records one visit of `token` to `node` that opened and ended now.
    fn visit(
        &mut self,
        token: &Token,
        node: NodeIdx,
        attempt: u32,
        input_hash: ContentHash,
        completion: StateCompletion,
        duration_ms: f64,
    ) -> Result<contracts::records::NodeState, EngineError> {
        let graph_node = &self.graph.nodes[node];
        let new = NewNodeState {
            token,
            node_id: &graph_node.id,
            step_index: graph_node.step,
            attempt,
            input_hash,
            context_before_json: None,
        };
        Ok(self.recorder.record_node_state(new, completion, duration_ms)?)
    }

    /// Records a terminal outcome and counts it.
    pub(crate) fn outcome(
        &mut self,
        token: &Token,
        detail: OutcomeDetail,
        context: Option<&serde_json::Value>,
    ) -> Result<(), EngineError> {
        let outcome = detail.outcome();
        let sink = detail.sink_name().map(str::to_owned);
        let lost = match &detail {
            OutcomeDetail::Failed { .. } => Some("failed"),
            OutcomeDetail::Quarantined { sink_name: None, .. } => Some("discarded after an error"),
            OutcomeDetail::Completed { .. }
            | OutcomeDetail::Routed { .. }
            | OutcomeDetail::Diverted { .. }
            | OutcomeDetail::Quarantined { sink_name: Some(_), .. }
            | OutcomeDetail::Forked { .. }
            | OutcomeDetail::ConsumedInBatch { .. }
            | OutcomeDetail::Coalesced { .. }
            | OutcomeDetail::Expanded { .. }
            | OutcomeDetail::Buffered { .. } => None,
        };
        self.recorder.record_token_outcome(&self.run_id, &token.token_id, detail, context)?;
        if outcome.is_terminal() {
            self.count(outcome, sink.as_deref());
        }
        if let Some(reason) = lost {
            self.note_branch_loss(token, || reason.to_owned());
        }
        Ok(())
    }

    pub(crate) fn record_calls(&mut self, node: NodeIdx, state_id: &StateId) -> Result<(), EngineError> {
        let calls = self.contexts[node].take_calls();
        let parent = CallParent::State(state_id.clone());
        for call in &calls {
            self.recorder.record_call(
                &parent,
                &NewCall {
                    call_type: call.call_type,
                    status: call.status,
                    request: &call.request,
                    response: call.response.as_ref(),
                    error: call.error.as_ref(),
                    latency_ms: call.latency_ms,
                },
            )?;
        }
        Ok(())
    }

    /// Reads the source to its end in chunks. `Ok(false)` when interrupted.
    pub(crate) fn drive(&mut self, options: &mut RunOptions, started: Instant) -> Result<bool, EngineError> {
        let source_id = self.graph.nodes[self.graph.source()].id.clone();
        let input = serde_json::json!({"source_plugin": self.graph.nodes[0].plugin_name});
        let operation =
            self.recorder.begin_operation(&self.run_id, &source_id, contracts::OperationType::SourceLoad, Some(&input))?;
        self.source_operation = Some(operation.operation_id);
        let chunk_size = options.chunk_size.max(1);
        let source = std::mem::replace(&mut self.plugins.source, Box::new(SourceOnThread::placeholder()));
        let mut reader = SourceThread::spawn(source, PluginContext::new(self.run_id.clone(), source_id), chunk_size);
        let result = self.drive_chunks(&mut reader, options, started, chunk_size);
        if let Some(source) = reader.into_source() {
            self.plugins.source = source;
        }
        result
    }

    fn drive_chunks(
        &mut self,
        reader: &mut SourceThread,
        options: &mut RunOptions,
        started: Instant,
        chunk_size: usize,
    ) -> Result<bool, EngineError> {
        loop {
            if super::interrupted(&options.interrupt) {
                return Ok(false);
            }
            self.recorder.begin_unit()?;
            let mut exhausted = false;
            let mut failure = None;
            let mut read = 0;
            // When to look at the timers next: the earliest timer, and at most
            // IDLE_POLL ahead (to notice an interrupt while the source is
            // idle). Computed again only once it has passed, not per row, so a
            // timer created since then fires at most IDLE_POLL late.
            let mut next_check: Option<Instant> = None;
            while read < chunk_size {
                let deadline = *next_check.get_or_insert_with(|| {
                    let poll = self.clock.now() + IDLE_POLL;
                    self.next_timer().map_or(poll, |timer| timer.min(poll))
                });
                // The wait is in real time; the deadline in the triggers' time.
                let wait_until = Instant::now() + deadline.saturating_duration_since(self.clock.now());
                let item = match reader.next(Some(wait_until)) {
                    Received::Idle => {
                        next_check = None;
                        match self.fire_timers() {
                            // What the timers released is written and committed now.
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(error) => {
                                failure = Some(error);
                                break;
                            }
                        }
                        if super::interrupted(&options.interrupt) {
                            break;
                        }
                        continue;
                    }
                    Received::Item(item) => item,
                };
                read += 1;
                let timers_due = self.clock.now() >= deadline;
                match item {
                    Ok(None) => {
                        exhausted = true;
                        break;
                    }
                    Ok(Some(item)) => {
                        if let Err(error) = self.process_item(item) {
                            failure = Some(error);
                            break;
                        }
                        self.crash_if(super::checkpoint::CrashPoint::AfterRow(self.rows_read));
                    }
                    Err(source) => {
                        failure =
                            Some(EngineError::Plugin { node: format!("source {}", self.graph.nodes[0].plugin_name), source });
                        break;
                    }
                }
                // A busy source does not hold timers back.
                if timers_due {
                    next_check = None;
                    if let Err(error) = self.fire_timers() {
                        failure = Some(error);
                        break;
                    }
                }
                if options.interrupt_after_rows.is_some_and(|limit| self.rows_read >= limit) {
                    options.interrupt.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if super::interrupted(&options.interrupt) {
                    break;
                }
            }
            if exhausted && failure.is_none() {
                if let Err(error) = self.resolve_at_end() {
                    failure = Some(error);
                }
            }
            if failure.is_none() && super::interrupted(&options.interrupt) && !exhausted {
                if let Err(error) = self.park_coalesces() {
                    failure = Some(error);
                }
            }
            self.bind_field_resolution(reader);
            let flushed = self.flush_sinks();
            if let Err(error) = &flushed {
                if failure.is_none() && !matches!(error, EngineError::Landscape(_)) {
                    failure = flushed.err();
                } else if matches!(error, EngineError::Landscape(_)) {
                    let _ = self.recorder.rollback_unit();
                    return Err(flushed.err().unwrap_or_else(|| EngineError::Invariant("lost error".into())));
                }
            }
            if let Some(error) = failure {
                if matches!(error, EngineError::Landscape(_)) {
                    let _ = self.recorder.rollback_unit();
                } else {
                    self.abandon_buffers(&error.to_string())?;
                    self.abandon_coalesces(&error.to_string())?;
                    self.recorder.commit_unit()?;
                }
                return Err(error);
            }
            self.write_checkpoint()?;
            self.recorder.heartbeat(&self.run_id)?;
            self.commits += 1;
            self.crash_if(super::checkpoint::CrashPoint::BeforeCommit(self.commits));
            // The commit runs on the recorder's flush thread while the next
            // chunk is read and processed; the next statement that needs the
            // database waits for it (and reports it if it failed). Sink
            // writes made meanwhile are covered: resume cuts sinks back to
            // the last committed checkpoint.
            self.recorder.commit_unit_in_background()?;
            let after_commit = super::checkpoint::CrashPoint::AfterCommit(self.commits);
            if self.crash_at == Some(after_commit) {
                self.recorder.wait_for_writes()?;
            }
            self.crash_if(after_commit);
            if let Some(progress) = options.progress.as_mut() {
                progress(&Progress { rows_read: self.rows_read, elapsed: started.elapsed(), outcomes: self.counts.clone() });
            }
            if exhausted {
                return Ok(true);
            }
        }
    }

    /// The earliest time a timer (aggregation timeout or age condition,
    /// coalesce timeout) may fire.
    fn next_timer(&self) -> Option<Instant> {
        [self.next_aggregation_timer(), self.next_coalesce_timer()].into_iter().flatten().min()
    }

    /// Fires every timer that is due; returns whether any did.
    fn fire_timers(&mut self) -> Result<bool, EngineError> {
        let mut queue = VecDeque::new();
        let fired = self.fire_aggregation_timers(&mut queue)? | self.fire_coalesce_timers(&mut queue)?;
        self.drain(queue)?;
        Ok(fired)
    }

    fn bind_field_resolution(&mut self, reader: &SourceThread) {
        if self.bound_field_resolution {
            return;
        }
        if let Some(resolution) = reader.field_resolution() {
            for sink in self.plugins.sinks.values_mut() {
                sink.bind_field_resolution(resolution);
            }
            self.bound_field_resolution = true;
        }
    }

    /// Ends the run: completes sinks (when the run completed), the source
    /// operation and the run itself.
    pub(crate) fn finish(&mut self, status: contracts::RunStatus, error: Option<&str>) -> Result<(), EngineError> {
        let mut status = status;
        let mut message = error.map(str::to_owned);
        if status == contracts::RunStatus::Completed {
            if let Err(error) = self.finish_sinks() {
                status = contracts::RunStatus::Failed;
                message = Some(error.to_string());
            }
        }
        if let Some(operation) = self.source_operation.take() {
            let completion = match (&message, status) {
                (None, contracts::RunStatus::Completed) => OperationCompletion::Completed { output: None },
                (Some(text), _) => OperationCompletion::Failed { error_message: text, output: None },
                (None, _) => OperationCompletion::Failed { error_message: "interrupted", output: None },
            };
            self.recorder.complete_operation(&operation, &completion, 0.0)?;
        }
        self.recorder.finalize_run(&self.run_id, status)?;
        Ok(())
    }

    fn process_item(&mut self, item: SourceItem) -> Result<(), EngineError> {
        let row_index = self.rows_read;
        self.rows_read += 1;
        let source = self.graph.source();
        let source_id = self.graph.nodes[source].id.clone();
        match item {
            SourceItem::Valid(row) => {
                let value = Value::Object(row);
                let record = self.recorder.create_row(&self.run_id, &source_id, row_index, &value)?;
                let Value::Object(row) = value else { unreachable!("constructed as an object") };
                let token = self.recorder.create_token(&record)?;
                self.last_token = Some(token.token_id.clone());
                let hash = record.source_data_hash.clone();
                let completion =
                    StateCompletion::Completed { output_hash: hash.clone(), context_after_json: None, success_reason_json: None };
                self.visit(&token, source, 0, hash.clone(), completion, 0.0)?;
                let mut queue = VecDeque::new();
                self.route_from(Work { token, row, hash, at: source, fork_group: None }, source, &mut queue)?;
                self.drain(queue)
            }
            SourceItem::Invalid(invalid) => self.quarantine(row_index, invalid),
        }
    }

    fn quarantine(&mut self, row_index: u64, invalid: InvalidRecord) -> Result<(), EngineError> {
        let source = self.graph.source();
        let source_id = self.graph.nodes[source].id.clone();
        let record = self.recorder.create_quarantined_row(&self.run_id, &source_id, row_index, &invalid.raw)?;
        let token = self.recorder.create_token(&record)?;
        self.last_token = Some(token.token_id.clone());
        let error = execution_error(&invalid.error, "ValidationError");
        let state = self.visit(&token, source, 0, record.source_data_hash.clone(), StateCompletion::failed(&error)?, 0.0)?;
        let sink = self.graph.quarantine_sink;
        let destination = sink.map_or_else(|| "discard".to_owned(), |s| self.graph.nodes[s].name.clone());
        self.recorder.record_validation_error(
            &self.run_id,
            &NewValidationError {
                node_id: Some(&source_id),
                row_id: Some(&record.row_id),
                raw: &invalid.raw,
                error: &invalid.error,
                schema_mode: &invalid.schema_mode,
                destination: &destination,
                violation: &invalid.violation,
            },
        )?;
        let hash = error_hash(&invalid.error);
        match sink {
            Some(sink) => {
                let edge = self.edge(source, "__quarantine__")?;
                let reason = serde_json::json!({"quarantine_error": invalid.error});
                self.recorder.record_routing_events(&state.common().state_id, &[(edge, RoutingMode::Divert)], Some(&reason))?;
                let row = match invalid.raw {
                    Value::Object(row) => row,
                    other => {
                        let mut row = Row::new();
                        row.insert("_raw".into(), other);
                        row
                    }
                };
                self.deliver(
                    sink,
                    Delivery { token, row, hash: record.source_data_hash, kind: DeliveryKind::Quarantined { error_hash: hash } },
                );
                Ok(())
            }
            None => self.outcome(&token, OutcomeDetail::Quarantined { error_hash: hash, sink_name: None }, None),
        }
    }

    /// Sends a token on from `from`: to the next node, or to its terminal sink.
    pub(crate) fn route_from(&mut self, work: Work, from: NodeIdx, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        if let Some(next) = self.graph.next[from] {
            queue.push_back(Work { at: next, ..work });
            Ok(())
        } else if let Some(sink) = self.graph.terminal_sink[from] {
            self.deliver(sink, Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Completed });
            Ok(())
        } else {
            Err(EngineError::Invariant(format!("node {:?} has neither a next node nor a sink", self.graph.nodes[from].name)))
        }
    }

    /// End of source: coalesces and aggregations resolve until nothing waits
    /// (an aggregation after a coalesce, or the reverse, both settle).
    fn resolve_at_end(&mut self) -> Result<(), EngineError> {
        loop {
            self.resolve_coalesces_at_end()?;
            self.flush_aggregations_at_end()?;
            if !self.pending_flushes.is_empty() {
                // Outstanding async batches decide what is left: wait for them.
                self.wait_for_pending_flushes()?;
                continue;
            }
            if self.coalesces.is_empty() && self.buffers.iter().all(super::aggregation::AggregationBuffer::is_empty) {
                return Ok(());
            }
        }
    }

    pub(crate) fn drain(&mut self, mut queue: VecDeque<Work>) -> Result<(), EngineError> {
        let mut guard = 0_usize;
        loop {
            let Some(work) = queue.pop_front() else {
                // Coalesces a lost branch decided resolve now; what they
                // merge goes on through the queue.
                if self.resolve_decided(&mut queue)? {
                    continue;
                }
                break;
            };
            guard += 1;
            if guard > 100_000 {
                return Err(EngineError::Invariant("work queue did not drain after 100000 steps".into()));
            }
            match self.graph.nodes[work.at].kind.clone() {
                NodeKind::Transform(i) => self.transform(work, i, &mut queue)?,
                NodeKind::Gate(i) => self.gate(work, i, &mut queue)?,
                NodeKind::Source => {
                    let at = work.at;
                    self.route_from(work, at, &mut queue)?;
                }
                NodeKind::Aggregation(i) => self.aggregate(work, i, &mut queue)?,
                NodeKind::Coalesce(i) => self.coalesce(work, i, &mut queue)?,
                NodeKind::Sink(_) => {
                    let sink = work.at;
                    self.deliver(
                        sink,
                        Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Completed },
                    );
                }
            }
        }
        Ok(())
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let retry = &self.loaded.settings.retry;
        let delay = retry.initial_delay_seconds * retry.exponential_base.powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        Duration::from_secs_f64(delay.min(retry.max_delay_seconds).max(0.0))
    }

    fn transform(&mut self, work: Work, index: usize, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        let node = work.at;
        let name = self.graph.nodes[node].name.clone();
        let max_attempts = self.loaded.settings.retry.max_attempts.max(1);
        for attempt in 0..max_attempts {
            let started = Instant::now();
            let result = super::guarded(|| self.plugins.transforms[index].process(work.row.clone(), &mut self.contexts[node]));
            let duration = ms(started.elapsed());
            match result {
                Ok(TransformResult::Row { row, success_reason }) => {
                    let value = Value::Object(row);
                    let output_hash =
                        self.transform_succeeded(&work, node, attempt, duration, &value, success_reason.as_ref())?;
                    let Value::Object(row) = value else { unreachable!("constructed as an object") };
                    return self.route_from(Work { row, hash: output_hash, at: node, ..work }, node, queue);
                }
                Ok(TransformResult::Rows { rows, success_reason }) => {
                    if !self.plugins.transforms[index].creates_tokens() {
                        return Err(self.plugin_bug(
                            &work,
                            node,
                            attempt,
                            duration,
                            "the transform returned several rows but does not create tokens",
                        ));
                    }
                    let list = Value::List(rows.into_iter().map(Value::Object).collect());
                    self.transform_succeeded(&work, node, attempt, duration, &list, success_reason.as_ref())?;
                    let Value::List(values) = list else { unreachable!("constructed as a list") };
                    let count = u32::try_from(values.len()).map_err(|_| EngineError::Invariant("too many rows".into()))?;
                    let (children, _) = self.recorder.expand_token(&work.token, count, self.graph.nodes[node].step, true)?;
                    self.count(RowOutcome::Expanded, None);
                    for (child, value) in children.into_iter().zip(values) {
                        let hash = stable_hash(&value).map_err(LandscapeError::from)?;
                        let Value::Object(row) = value else { unreachable!("constructed from rows") };
                        self.route_from(
                            Work { token: child, row, hash, at: node, fork_group: work.fork_group.clone() },
                            node,
                            queue,
                        )?;
                    }
                    return Ok(());
                }
                Ok(TransformResult::Error { reason }) => {
                    let reason = serde_json::Value::Object(reason);
                    return self.transform_error(work, node, index, attempt, duration, &reason);
                }
                Err(PluginError::Transient(message)) => {
                    let error = execution_error(&message, "TransientError");
                    let state =
                        self.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(&error)?, duration)?;
                    self.record_calls(node, &state.common().state_id)?;
                    if attempt + 1 < max_attempts {
                        std::thread::sleep(self.retry_delay(attempt));
                        continue;
                    }
                    let text = format!("max_retries_exceeded: {message}");
                    return self.outcome(
                        &work.token,
                        OutcomeDetail::Failed { error_hash: error_hash(&text), batch_id: None },
                        None,
                    );
                }
                Err(source) => {
                    let error = execution_error(&source.to_string(), "PluginError");
                    self.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(&error)?, duration)?;
                    self.outcome(
                        &work.token,
                        OutcomeDetail::Failed { error_hash: error_hash(&source.to_string()), batch_id: None },
                        None,
                    )?;
                    return Err(EngineError::Plugin { node: format!("transform {name}"), source });
                }
            }
        }
        Err(EngineError::Invariant(format!("transform {name} made no attempt")))
    }

    /// A plugin broke its contract: the visit is recorded failed, the token
    /// failed, and the run stops with the returned error.
    fn plugin_bug(&mut self, work: &Work, node: NodeIdx, attempt: u32, duration: f64, message: &str) -> EngineError {
        let error = execution_error(message, "PluginContractViolation");
        let recorded = StateCompletion::failed(&error)
            .map_err(EngineError::from)
            .and_then(|failed| self.visit(&work.token, node, attempt, work.hash.clone(), failed, duration))
            .and_then(|_| {
                self.outcome(&work.token, OutcomeDetail::Failed { error_hash: error_hash(message), batch_id: None }, None)
            });
        match recorded {
            Ok(()) => EngineError::Plugin {
                node: self.graph.nodes[node].name.clone(),
                source: PluginError::Contract(message.to_owned()),
            },
            Err(error) => error,
        }
    }

    /// Records a successful transform visit with the hash of its output.
    fn transform_succeeded(
        &mut self,
        work: &Work,
        node: NodeIdx,
        attempt: u32,
        duration: f64,
        output: &Value,
        success_reason: Option<&serde_json::Value>,
    ) -> Result<ContentHash, EngineError> {
        let Ok(output_hash) = stable_hash(output) else {
            return Err(self.plugin_bug(
                work,
                node,
                attempt,
                duration,
                "the transform emitted a value that cannot be canonicalised",
            ));
        };
        let success_reason_json = success_reason.map(canonical_json).transpose().map_err(LandscapeError::from)?;
        let completion =
            StateCompletion::Completed { output_hash: output_hash.clone(), context_after_json: None, success_reason_json };
        let state = self.visit(&work.token, node, attempt, work.hash.clone(), completion, duration)?;
        self.record_calls(node, &state.common().state_id)?;
        Ok(output_hash)
    }

    fn transform_error(
        &mut self,
        work: Work,
        node: NodeIdx,
        index: usize,
        attempt: u32,
        duration: f64,
        reason: &serde_json::Value,
    ) -> Result<(), EngineError> {
        let settings = &self.loaded.settings.transforms[index];
        let destination = settings.on_error.clone();
        let name = settings.name.clone();
        let state = self.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(reason)?, duration)?;
        self.record_calls(node, &state.common().state_id)?;
        self.recorder.record_transform_error(
            &self.run_id,
            &NewTransformError {
                token_id: &work.token.token_id,
                transform_id: &self.graph.nodes[node].id,
                row: &Value::Object(work.row.clone()),
                error_details: reason,
                destination: &destination,
            },
        )?;
        let hash = error_hash(&canonical_json(reason).map_err(LandscapeError::from)?);
        match self.graph.error_sink[node] {
            Some(sink) => {
                let edge = self.edge(node, &format!("__error_{name}__"))?;
                self.recorder.record_routing_events(&state.common().state_id, &[(edge, RoutingMode::Divert)], Some(reason))?;
                self.deliver(sink, Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Routed });
                Ok(())
            }
            None => self.outcome(&work.token, OutcomeDetail::Quarantined { error_hash: hash, sink_name: None }, None),
        }
    }

    fn gate(&mut self, work: Work, index: usize, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        let node = work.at;
        let started = Instant::now();
        let condition = self.conditions[node]
            .clone()
            .ok_or_else(|| EngineError::Invariant(format!("gate {index} has no parsed condition")))?;
        let evaluated = condition.evaluate(&work.row);
        let duration = ms(started.elapsed());
        let value = match evaluated {
            Ok(value) => value,
            Err(error) => {
                let message = error.to_string();
                let failure = execution_error(&message, error.kind);
                self.visit(&work.token, node, 0, work.hash.clone(), StateCompletion::failed(&failure)?, duration)?;
                return self.outcome(
                    &work.token,
                    OutcomeDetail::Failed { error_hash: error_hash(&message), batch_id: None },
                    None,
                );
            }
        };
        let label = Condition::route_label(&value);
        let Some(target) = self.graph.routes[node].get(&label).cloned() else {
            let message = format!("condition returned {label:?}, which is not one of the gate's routes");
            let failure = execution_error(&message, "RouteError");
            self.visit(&work.token, node, 0, work.hash.clone(), StateCompletion::failed(&failure)?, duration)?;
            return self.outcome(&work.token, OutcomeDetail::Failed { error_hash: error_hash(&message), batch_id: None }, None);
        };
        let context = serde_json::json!({"condition": condition.source, "result": value.py_str(), "route_label": label});
        let completion = StateCompletion::Completed {
            output_hash: work.hash.clone(),
            context_after_json: Some(canonical_json(&context).map_err(LandscapeError::from)?),
            success_reason_json: None,
        };
        let state = self.visit(&work.token, node, 0, work.hash.clone(), completion, duration)?;
        let state_id = state.common().state_id.clone();
        let reason = serde_json::json!({"condition": condition.source, "result": label});
        match target {
            RouteTarget::Sink(sink) => {
                let edge = self.edge(node, &label)?;
                self.recorder.record_routing_events(&state_id, &[(edge, RoutingMode::Move)], Some(&reason))?;
                self.deliver(sink, Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Routed });
            }
            RouteTarget::Node(next) => {
                let edge = self.edge(node, &label)?;
                self.recorder.record_routing_events(&state_id, &[(edge, RoutingMode::Move)], Some(&reason))?;
                queue.push_back(Work { at: next, ..work });
            }
            RouteTarget::Fork => {
                let branches: Vec<String> = self.graph.fork_branches[node].keys().cloned().collect();
                let routes = branches
                    .iter()
                    .map(|b| Ok((self.edge(node, b)?, RoutingMode::Copy)))
                    .collect::<Result<Vec<_>, EngineError>>()?;
                self.recorder.record_routing_events(&state_id, &routes, Some(&reason))?;
                let (children, fork_group) = self.recorder.fork_token(&work.token, &branches, self.graph.nodes[node].step)?;
                self.count(RowOutcome::Forked, None);
                for (child, branch) in children.into_iter().zip(&branches) {
                    let child_work = Work {
                        token: child,
                        row: work.row.clone(),
                        hash: work.hash.clone(),
                        at: node,
                        fork_group: Some(fork_group.clone()),
                    };
                    match self.graph.fork_branches[node].get(branch).cloned() {
                        Some(BranchTarget::Sink(sink)) => {
                            self.deliver(
                                sink,
                                Delivery {
                                    token: child_work.token,
                                    row: child_work.row,
                                    hash: child_work.hash,
                                    kind: DeliveryKind::Completed,
                                },
                            );
                        }
                        Some(BranchTarget::Coalesce(target) | BranchTarget::Node(target)) => {
                            queue.push_back(Work { at: target, ..child_work });
                        }
                        None => return Err(EngineError::Invariant(format!("fork branch {branch:?} has no target"))),
                    }
                }
            }
        }
        Ok(())
    }
}
