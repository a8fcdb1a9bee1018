//! The shared state of one run and the error type: what every executor
//! reads and records through (`RunContext`: settings, graph, plugins, the
//! recorder, registered edges, outcome counts, the clock, replay and verify
//! state). It imports no executor, the processor, recovery or the
//! orchestrator (of `decisions`, only the verify diff).
//!
//! Every terminal outcome goes through [`RunContext::outcome`], which counts
//! it and notes a fork branch that will never reach its coalesce; every
//! visit is one node state recorded by [`RunContext::visit`].

mod clock;
mod error;
mod hooks;
mod options;
mod recordings;
mod services;
mod work;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use contracts::plugin::{CallRecord, PluginContext, PluginError};
use contracts::records::{CallOrigin, CallParent, NodeState, OutcomeDetail, Token, TokenLineage};
use contracts::{ContentHash, EdgeId, OperationId, RowOutcome, RunId, StateId, TokenId};
use landscape::recorder::{NewCall, NewNodeState, StateCompletion};
use landscape::Recorder;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::EngineError;
pub use hooks::{CrashPoint, TestHooks};
pub use options::{Progress, RunOptions, RunSummary};
pub(crate) use recordings::Recordings;
pub use recordings::VerifyReport;
pub(crate) use services::EngineServices;
pub(crate) use work::{Delivery, DeliveryKind, Emitted, Work};

use crate::dag::{Graph, NodeIdx, PipelinePlugins};
use crate::settings::LoadedSettings;

/// A fork branch token that will never reach its coalesce, and why.
pub(crate) struct BranchLoss {
    pub(crate) token: Token,
    pub(crate) reason: String,
}

/// The state every part of a run shares.
pub(crate) struct RunContext<'r> {
    pub(crate) loaded: LoadedSettings,
    pub(crate) graph: Graph,
    pub(crate) plugins: PipelinePlugins,
    pub(crate) recorder: &'r mut Recorder,
    pub(crate) run_id: RunId,
    pub(crate) edge_ids: HashMap<(NodeIdx, String), EdgeId>,
    /// One plugin context per node (calls are collected there).
    pub(crate) contexts: Vec<PluginContext>,
    pub(crate) rows_read: u64,
    pub(crate) counts: BTreeMap<&'static str, u64>,
    pub(crate) per_sink: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// The last token created (a checkpoint names one).
    pub(crate) last_token: Option<TokenId>,
    /// Branch losses noted since the processor last handed them to the
    /// coalesce executor (after every step).
    pub(crate) branch_losses: Vec<BranchLoss>,
    pub(crate) topology_hash: ContentHash,
    pub(crate) config_hash: ContentHash,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hooks: TestHooks,
    /// Verify mode: the source run's recordings, how to compare, and what
    /// was found so far.
    pub(crate) verify: Option<Verifier>,
    /// Replay mode: pooled transforms run one row at a time (no network to
    /// wait for, and recordings are matched in source order).
    pub(crate) replaying: bool,
}

/// Verify mode's state.
pub(crate) struct Verifier {
    pub(crate) recordings: Arc<Recordings>,
    pub(crate) options: crate::decisions::diff::DiffOptions,
    pub(crate) report: VerifyReport,
}

/// The JSON of a failed visit: the message and the kind of error.
pub(crate) fn execution_error(message: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({"exception": message, "type": kind})
}

/// Milliseconds of a duration, as node states record them.
pub(crate) fn ms(elapsed: std::time::Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// The node state a visit of `token` to `node` opens.
fn new_state<'a>(
    graph: &'a Graph,
    token: &'a Token,
    node: NodeIdx,
    attempt: u32,
    input_hash: ContentHash,
    context_before_json: Option<String>,
) -> NewNodeState<'a> {
    let graph_node = &graph.nodes[node];
    NewNodeState { token, node_id: &graph_node.id, step_index: graph_node.step, attempt, input_hash, context_before_json }
}

/// What the recorder writes of a call a plugin made.
fn new_call<'a>(call: &'a CallRecord, origin: &'a CallOrigin) -> NewCall<'a> {
    NewCall {
        call_type: call.call_type,
        status: call.status,
        request: &call.request,
        response: call.response.as_ref(),
        error: call.error.as_ref(),
        latency_ms: call.latency_ms,
        origin,
    }
}

/// Runs plugin code; a panic in it becomes a contract error, so the engine
/// records the failed state (and batch) before the run stops instead of
/// unwinding past the audit trail.
pub(crate) fn guarded<T>(call: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(PluginError::Contract(format!("the plugin panicked: {message}")))
        }
    }
}

impl RunContext<'_> {
    pub(crate) fn crash_if(&self, point: CrashPoint) {
        self.hooks.crash_if(point);
    }

    pub(crate) fn count(&mut self, outcome: RowOutcome, sink: Option<&str>) {
        *self.counts.entry(outcome.as_str()).or_insert(0) += 1;
        if let Some(sink) = sink {
            *self.per_sink.entry(sink.to_owned()).or_default().entry(outcome.as_str()).or_insert(0) += 1;
        }
    }

    pub(crate) fn edge(&self, from: NodeIdx, label: &str) -> Result<EdgeId, EngineError> {
        self.edge_ids
            .get(&(from, label.to_owned()))
            .cloned()
            .ok_or_else(|| EngineError::Invariant(format!("no registered edge {label:?} from {}", self.graph.nodes[from].name)))
    }

    /// Records one visit of `token` to `node` that opened and ended now.
    pub(crate) fn visit(
        &mut self,
        token: &Token,
        node: NodeIdx,
        attempt: u32,
        input_hash: ContentHash,
        completion: StateCompletion,
        duration_ms: f64,
    ) -> Result<NodeState, EngineError> {
        let new = new_state(&self.graph, token, node, attempt, input_hash, None);
        Ok(self.recorder.record_node_state(new, completion, duration_ms)?)
    }

    /// Opens a node state for a visit that ends later (a flush, a coalesce
    /// arrival).
    pub(crate) fn begin_visit(
        &mut self,
        token: &Token,
        node: NodeIdx,
        attempt: u32,
        input_hash: ContentHash,
        context_before_json: Option<String>,
    ) -> Result<NodeState, EngineError> {
        let graph_node = &self.graph.nodes[node];
        let new = NewNodeState {
            token,
            node_id: &graph_node.id,
            step_index: graph_node.step,
            attempt,
            input_hash,
            context_before_json,
        };
        Ok(self.recorder.begin_node_state(new)?)
    }

    /// Records an outcome and counts it when terminal. A fork branch token
    /// that fails or is discarded is noted as lost to its coalesce.
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

    /// Notes that a fork branch token will never reach a coalesce. `reason`
    /// is only built for a branch token (this runs for every delivery and
    /// failure).
    fn note_branch_loss(&mut self, token: &Token, reason: impl FnOnce() -> String) {
        if matches!(token.lineage, TokenLineage::Forked { .. }) {
            self.branch_losses.push(BranchLoss { token: token.clone(), reason: reason() });
        }
    }

    /// Records the calls the node's plugin made during a visit, under its state.
    pub(crate) fn record_calls(&mut self, node: NodeIdx, state_id: &StateId) -> Result<(), EngineError> {
        let calls = self.contexts[node].take_calls();
        self.write_calls(state_id, calls)
    }

    /// Records the calls a source or sink made under its operation (a
    /// database sink's statements), in the order of their indices.
    pub(crate) fn write_operation_calls(
        &mut self,
        operation: &OperationId,
        mut calls: Vec<CallRecord>,
    ) -> Result<(), EngineError> {
        calls.sort_by_key(|call| call.call_index);
        let parent = CallParent::Operation(operation.clone());
        for call in &calls {
            self.recorder.record_call(&parent, &new_call(call, &call.origin))?;
        }
        Ok(())
    }

    /// Records calls under a node state, in the order of their indices
    /// (taken by the plugin before each call was made).
    pub(crate) fn write_calls(&mut self, state_id: &StateId, mut calls: Vec<CallRecord>) -> Result<(), EngineError> {
        // A call may end after calls it began before (a redirect's logical
        // request ends after its hops): written by index.
        calls.sort_by_key(|call| call.call_index);
        let parent = CallParent::State(state_id.clone());
        for call in &calls {
            let origin = match (&mut self.verify, &call.origin) {
                (Some(verifier), CallOrigin::Live) => {
                    let request_hash = contracts::stable_hash_json(&call.request)?;
                    verifier.recordings.verify(
                        call.call_type,
                        request_hash.as_str(),
                        call.response.as_ref(),
                        &verifier.options,
                        &mut verifier.report,
                    )
                }
                (None | Some(_), origin) => origin.clone(),
            };
            let recorded = self.recorder.record_call(&parent, &new_call(call, &origin))?;
            if recorded.call_index != call.call_index {
                return Err(EngineError::Invariant(format!(
                    "call index {} recorded as {} under state {state_id}",
                    call.call_index, recorded.call_index
                )));
            }
        }
        Ok(())
    }

    /// Sends a token on from `from`: to the next node, or to its terminal sink.
    pub(crate) fn route_from(&mut self, work: Work, from: NodeIdx, out: &mut Emitted) -> Result<(), EngineError> {
        if let Some(next) = self.graph.next[from] {
            out.queue.push_back(Work { at: next, ..work });
            Ok(())
        } else if let Some(sink) = self.graph.terminal_sink[from] {
            let delivery = Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Completed };
            self.deliver(sink, delivery, out);
            Ok(())
        } else {
            Err(EngineError::Invariant(format!("node {:?} has neither a next node nor a sink", self.graph.nodes[from].name)))
        }
    }

    /// Queues a token for its sink write. A fork branch token headed for a
    /// coalesce that goes to a sink instead is a lost branch: the coalesce is
    /// told after this step, not at the end of the source.
    pub(crate) fn deliver(&mut self, sink: NodeIdx, delivery: Delivery, out: &mut Emitted) {
        if matches!(delivery.token.lineage, TokenLineage::Forked { .. }) {
            let how = match delivery.kind {
                DeliveryKind::Completed => "delivered",
                DeliveryKind::Routed => "routed",
                DeliveryKind::Quarantined { .. } => "quarantined",
            };
            let reason = format!("{how} to sink {}", self.graph.nodes[sink].name);
            self.branch_losses.push(BranchLoss { token: delivery.token.clone(), reason });
        }
        out.deliveries.push((sink, delivery));
    }
}
