//! The aggregation executor: buffering (a batch in draft, members with
//! ordinals, BUFFERED outcomes), triggers (decided by
//! [`crate::decisions::trigger`]), and the one flush path every trigger
//! takes: exactly one node state at the aggregation node, the batch moving
//! draft → executing → completed | failed with its trigger, and the outputs
//! going on downstream. A batch transform that answers pending parks the
//! flush (state PENDING, batch executing) until a poll brings the answer.

use std::time::{Duration, Instant};

use contracts::plugin::{BatchResult, PluginError};
use contracts::records::{Batch, BatchTrigger, OutcomeDetail, Token};
use contracts::{canonical_json, error_hash, stable_hash, Row, StateId, TriggerType, Value};
use landscape::recorder::{BatchCompletion, StateCompletion};

use crate::dag::{NodeIdx, NodeKind};
use crate::decisions::trigger::{BatchView, Fired, Trigger};
use crate::runtime::{guarded, ms, Emitted, EngineError, RunContext, Work};
use crate::settings::OutputModeSetting;

/// How often a buffer whose trigger condition may depend on its age is
/// re-evaluated while the source is idle.
const CONDITION_POLL: Duration = Duration::from_millis(100);

/// The open batch of one aggregation node.
#[derive(Default)]
pub(crate) struct AggregationBuffer {
    pub(crate) batch: Option<Batch>,
    pub(crate) members: Vec<Work>,
    pub(crate) first_arrival: Option<Instant>,
}

impl AggregationBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn view(&self, now: Instant) -> BatchView {
        let age = self.first_arrival.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        BatchView { count: self.members.len(), age }
    }
}

/// A flush whose batch transform is still working: its node state is
/// PENDING and its batch executing until a poll brings the answer.
pub(crate) struct PendingFlush {
    pub(crate) node: NodeIdx,
    pub(crate) index: usize,
    pub(crate) batch: Batch,
    pub(crate) state_id: StateId,
    pub(crate) members: Vec<Work>,
    pub(crate) trigger_type: TriggerType,
    pub(crate) started: Instant,
    pub(crate) next_poll: Instant,
    /// What the plugin needs to find its work again; `None` until it first
    /// answered pending.
    pub(crate) job: Option<serde_json::Value>,
}

/// Buffers, parked flushes and triggers of every aggregation node.
pub(crate) struct AggregationExecutor {
    /// Open batches, by node.
    pub(crate) buffers: Vec<AggregationBuffer>,
    /// Flushes whose batch transform answered pending, polled by the timers.
    pub(crate) pending: Vec<PendingFlush>,
    /// Triggers with parsed conditions, by node.
    triggers: Vec<Option<Trigger>>,
}

impl AggregationExecutor {
    pub(crate) fn new(ctx: &RunContext<'_>) -> Result<AggregationExecutor, EngineError> {
        let mut triggers = vec![None; ctx.graph.nodes.len()];
        for (node, graph_node) in ctx.graph.nodes.iter().enumerate() {
            if let NodeKind::Aggregation(index) = graph_node.kind {
                let settings = &ctx.loaded.settings.aggregations[index].trigger;
                triggers[node] = Some(Trigger::new(settings).map_err(EngineError::Config)?);
            }
        }
        let buffers = (0..ctx.graph.nodes.len()).map(|_| AggregationBuffer::default()).collect();
        Ok(AggregationExecutor { buffers, pending: Vec::new(), triggers })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buffers.iter().all(AggregationBuffer::is_empty)
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn trigger(&self, node: NodeIdx) -> Result<&Trigger, EngineError> {
        self.triggers[node].as_ref().ok_or_else(|| EngineError::Invariant(format!("node {node} is not an aggregation")))
    }

    /// A token reaches an aggregation: it joins the node's batch, which may
    /// then flush.
    pub(crate) fn accept(
        &mut self,
        ctx: &mut RunContext<'_>,
        work: Work,
        index: usize,
        out: &mut Emitted,
    ) -> Result<(), EngineError> {
        let node = work.at;
        // Time-based triggers are checked before a new row joins (and by the
        // timer while the source is idle).
        let now = ctx.clock.now();
        if let Some(fired) = self.trigger(node)?.on_timer(self.buffers[node].view(now)).map_err(EngineError::Invariant)? {
            self.flush(ctx, node, index, fired, out)?;
        }
        let buffer = &mut self.buffers[node];
        if buffer.batch.is_none() {
            buffer.batch = Some(ctx.recorder.create_batch(&ctx.run_id, &ctx.graph.nodes[node].id)?);
            buffer.first_arrival = Some(ctx.clock.now());
        }
        let batch_id =
            buffer.batch.as_ref().map(|b| b.batch_id.clone()).ok_or_else(|| EngineError::Invariant("no batch".into()))?;
        let ordinal = u32::try_from(buffer.members.len()).map_err(|_| EngineError::Invariant("batch too large".into()))?;
        ctx.recorder.add_batch_member(&batch_id, &ctx.run_id, &work.token.token_id, ordinal)?;
        ctx.outcome(&work.token, OutcomeDetail::Buffered { batch_id }, None)?;
        self.buffers[node].members.push(work);
        let view = self.buffers[node].view(ctx.clock.now());
        if let Some(fired) = self.trigger(node)?.on_arrival(view).map_err(EngineError::Invariant)? {
            self.flush(ctx, node, index, fired, out)?;
        }
        Ok(())
    }

    /// When the next aggregation timer may fire: a buffer's timeout, soon for
    /// a buffer whose condition may turn true as it ages, a pending poll.
    pub(crate) fn next_timer(&self, ctx: &RunContext<'_>) -> Option<Instant> {
        let now = ctx.clock.now();
        self.buffers
            .iter()
            .zip(&self.triggers)
            .filter_map(|(buffer, trigger)| {
                let first = buffer.first_arrival.filter(|_| !buffer.is_empty())?;
                Some(first + trigger.as_ref()?.next_timer(now.saturating_duration_since(first), CONDITION_POLL)?)
            })
            .chain(self.pending.iter().map(|f| f.next_poll))
            .min()
    }

    /// Polls due pending flushes and flushes every buffer whose timeout or
    /// age condition is due; returns whether anything ended.
    pub(crate) fn fire_timers(&mut self, ctx: &mut RunContext<'_>, out: &mut Emitted) -> Result<bool, EngineError> {
        let mut fired = self.poll_pending(ctx, out)?;
        for node in ctx.graph.pipeline.clone() {
            let NodeKind::Aggregation(index) = ctx.graph.nodes[node].kind else { continue };
            let view = self.buffers[node].view(ctx.clock.now());
            if let Some(trigger) = self.trigger(node)?.on_timer(view).map_err(EngineError::Invariant)? {
                self.flush(ctx, node, index, trigger, out)?;
                fired = true;
            }
        }
        Ok(fired)
    }

    /// The first non-empty buffer in topological order (end of source).
    pub(crate) fn first_buffered(&self, ctx: &RunContext<'_>) -> Option<NodeIdx> {
        ctx.graph.pipeline.iter().copied().find(|n| !self.buffers[*n].is_empty())
    }

    /// End of source: the buffer of `node` flushes whatever it holds.
    pub(crate) fn flush_at_end(&mut self, ctx: &mut RunContext<'_>, node: NodeIdx, out: &mut Emitted) -> Result<(), EngineError> {
        let NodeKind::Aggregation(index) = ctx.graph.nodes[node].kind else {
            return Err(EngineError::Invariant("a buffer on a node that does not aggregate".into()));
        };
        let fired = Trigger::at_end(self.buffers[node].view(ctx.clock.now()));
        self.flush(ctx, node, index, fired, out)
    }

    fn flush(
        &mut self,
        ctx: &mut RunContext<'_>,
        node: NodeIdx,
        index: usize,
        fired: Fired,
        out: &mut Emitted,
    ) -> Result<(), EngineError> {
        let buffer = std::mem::take(&mut self.buffers[node]);
        let Some(batch) = buffer.batch else { return Ok(()) };
        if buffer.members.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = buffer.members.iter().map(|w| w.row.clone()).collect();
        let batch_rows = Value::Object(Row::from_iter([(
            "batch_rows".to_owned(),
            Value::List(rows.iter().cloned().map(Value::Object).collect()),
        )]));
        let input_hash = stable_hash(&batch_rows)?;
        let representative = buffer.members[0].token.clone();
        let member_ids: Vec<&str> = buffer.members.iter().map(|w| w.token.token_id.as_str()).collect();
        let context_before =
            canonical_json(&serde_json::json!({"batch_id": batch.batch_id.as_str(), "member_token_ids": member_ids}))?;
        let state = ctx.begin_visit(&representative, node, batch.attempt, input_hash, Some(context_before))?;
        let state_id = state.common().state_id.clone();
        let trigger = BatchTrigger { trigger_type: fired.trigger_type, trigger_reason: fired.reason };
        ctx.recorder.start_batch(&batch.batch_id, &trigger, &state_id)?;
        let started = ctx.clock.now();
        let result = guarded(|| ctx.plugins.aggregations[index].process_batch(&rows, &mut ctx.contexts[node]));
        ctx.record_calls(node, &state_id)?;
        let flush = PendingFlush {
            node,
            index,
            batch,
            state_id,
            members: buffer.members,
            trigger_type: fired.trigger_type,
            started,
            next_poll: started,
            job: None,
        };
        self.settle(ctx, flush, result, out)
    }

    /// Handles what the batch transform answered: pending parks the flush
    /// until the next poll; rows or an error end it.
    fn settle(
        &mut self,
        ctx: &mut RunContext<'_>,
        mut flush: PendingFlush,
        result: Result<BatchResult, PluginError>,
        out: &mut Emitted,
    ) -> Result<(), EngineError> {
        let Ok(BatchResult::Pending { check_after, job }) = result else { return finish(ctx, flush, result, out) };
        let now = ctx.clock.now();
        let waited = now.saturating_duration_since(flush.started);
        if flush.job.is_none() {
            let context = canonical_json(&serde_json::json!({"job": job, "batch_id": flush.batch.batch_id.as_str()}))?;
            ctx.recorder.end_node_state(
                &flush.state_id,
                &StateCompletion::Pending { context_after_json: Some(context) },
                ms(waited),
            )?;
        }
        let max_pending = ctx.loaded.settings.aggregations[flush.index].max_pending_seconds.map(Duration::from_secs_f64);
        if max_pending.is_some_and(|limit| waited >= limit) {
            let mut map = serde_json::Map::new();
            map.insert("reason".into(), "batch_failed".into());
            map.insert("error".into(), format!("still pending after {} s", waited.as_secs()).into());
            ctx.plugins.aggregations[flush.index].cancel(&job);
            flush.job = Some(job);
            return finish(ctx, flush, Ok(BatchResult::Error { reason: map }), out);
        }
        flush.job = Some(job);
        flush.next_poll = now + check_after;
        self.pending.push(flush);
        Ok(())
    }

    /// Polls every pending flush that is due; returns whether any ended.
    fn poll_pending(&mut self, ctx: &mut RunContext<'_>, out: &mut Emitted) -> Result<bool, EngineError> {
        let now = ctx.clock.now();
        let (due, waiting): (Vec<PendingFlush>, Vec<PendingFlush>) =
            std::mem::take(&mut self.pending).into_iter().partition(|f| f.next_poll <= now);
        self.pending = waiting;
        let before = self.pending.len() + due.len();
        for flush in due {
            let job = flush.job.clone().unwrap_or(serde_json::Value::Null);
            let result = guarded(|| ctx.plugins.aggregations[flush.index].poll(&job, &mut ctx.contexts[flush.node]));
            ctx.record_calls(flush.node, &flush.state_id)?;
            self.settle(ctx, flush, result, out)?;
        }
        Ok(self.pending.len() < before)
    }

    /// At the end of the source: waits (on the clock) for the next pending
    /// flush to be due and polls it.
    pub(crate) fn wait_for_pending(&mut self, ctx: &mut RunContext<'_>, out: &mut Emitted) -> Result<(), EngineError> {
        if let Some(next) = self.pending.iter().map(|f| f.next_poll).min() {
            ctx.clock.sleep(next.saturating_duration_since(ctx.clock.now()));
        }
        self.poll_pending(ctx, out)?;
        Ok(())
    }

    /// A run that failed leaves no draft or executing batch behind: parked
    /// flushes are cancelled and fail, open buffers fail, their members end
    /// FAILED.
    pub(crate) fn abandon(&mut self, ctx: &mut RunContext<'_>, reason: &str) -> Result<(), EngineError> {
        let hash = error_hash(reason);
        for flush in std::mem::take(&mut self.pending) {
            if let Some(job) = &flush.job {
                ctx.plugins.aggregations[flush.index].cancel(job);
            }
            let error = serde_json::json!({"exception": format!("the run ended while the batch was pending: {reason}"), "type": "RunFailed"});
            let duration = ms(ctx.clock.now().saturating_duration_since(flush.started));
            fail_flush(ctx, &flush.state_id, &flush.batch, &flush.members, &error, duration, None)?;
        }
        for buffer in &mut self.buffers {
            let buffer = std::mem::take(buffer);
            let Some(batch) = buffer.batch else { continue };
            fail_batch(ctx, &batch, &buffer.members, &hash)?;
        }
        Ok(())
    }
}

/// Ends a flush with the transform's final answer.
fn finish(
    ctx: &mut RunContext<'_>,
    flush: PendingFlush,
    result: Result<BatchResult, PluginError>,
    out: &mut Emitted,
) -> Result<(), EngineError> {
    let PendingFlush { node, index, batch, state_id, members, trigger_type, started, .. } = flush;
    let settings = &ctx.loaded.settings.aggregations[index];
    let name = settings.name.clone();
    let passthrough = settings.output_mode == OutputModeSetting::Passthrough;
    let expected_output_count = settings.expected_output_count;
    let duration = ms(ctx.clock.now().saturating_duration_since(started));
    let context_after = serde_json::json!({"trigger_type": trigger_type.as_str(), "buffer_size": members.len(), "batch_id": batch.batch_id.as_str()});
    let context_json = Some(canonical_json(&context_after)?);
    match result {
        Ok(BatchResult::Rows(rows)) => {
            let count_mismatch = expected_output_count.is_some_and(|n| u64::try_from(rows.len()).unwrap_or(u64::MAX) != n);
            if (passthrough && rows.len() != members.len()) || count_mismatch {
                let message = format!("the batch transform returned {} rows for {} buffered rows", rows.len(), members.len());
                let error = serde_json::json!({"exception": message, "type": "PluginContractViolation"});
                fail_flush(ctx, &state_id, &batch, &members, &error, duration, context_json)?;
                return Err(EngineError::Plugin { node: name, source: PluginError::Contract(message) });
            }
            let list = Value::List(rows.into_iter().map(Value::Object).collect());
            let output_hash = stable_hash(&list)?;
            ctx.recorder.end_node_state(
                &state_id,
                &StateCompletion::Completed { output_hash, context_after_json: context_json, success_reason_json: None },
                duration,
            )?;
            ctx.recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed)?;
            let Value::List(values) = list else { unreachable!("constructed as a list") };
            if passthrough {
                for (member, value) in members.into_iter().zip(values) {
                    let hash = stable_hash(&value)?;
                    let Value::Object(row) = value else { unreachable!("rows are objects") };
                    ctx.route_from(Work { row, hash, at: node, ..member }, node, out)?;
                }
            } else {
                let tokens: Vec<&Token> = members.iter().map(|w| &w.token).collect();
                // Outputs stay joinable downstream only when every member
                // came from the same fork.
                let fork_group =
                    members[0].fork_group.clone().filter(|group| members.iter().all(|w| w.fork_group.as_ref() == Some(group)));
                for value in values {
                    let hash = stable_hash(&value)?;
                    let Value::Object(row) = value else { unreachable!("rows are objects") };
                    let token = ctx.recorder.create_batch_output_token(&tokens, ctx.graph.nodes[node].step)?;
                    ctx.route_from(Work { token, row, hash, at: node, fork_group: fork_group.clone() }, node, out)?;
                }
                for Work { token, .. } in &members {
                    ctx.outcome(token, OutcomeDetail::ConsumedInBatch { batch_id: batch.batch_id.clone() }, None)?;
                }
            }
            Ok(())
        }
        Ok(BatchResult::Error { reason }) => {
            let reason = serde_json::Value::Object(reason);
            fail_flush(ctx, &state_id, &batch, &members, &reason, duration, context_json)
        }
        Ok(BatchResult::Pending { .. }) => Err(EngineError::Invariant("a pending answer reached the end of a flush".into())),
        Err(source) => {
            let error = serde_json::json!({"exception": source.to_string(), "type": "PluginError"});
            fail_flush(ctx, &state_id, &batch, &members, &error, duration, context_json)?;
            Err(EngineError::Plugin { node: name, source })
        }
    }
}

/// The flush state and batch fail; every member token ends FAILED with the batch id.
fn fail_flush(
    ctx: &mut RunContext<'_>,
    state_id: &StateId,
    batch: &Batch,
    members: &[Work],
    error: &serde_json::Value,
    duration: f64,
    context_after_json: Option<String>,
) -> Result<(), EngineError> {
    let error_json = canonical_json(error)?;
    let hash = error_hash(&error_json);
    ctx.recorder.end_node_state(
        state_id,
        &StateCompletion::Failed { error_json, output_hash: None, context_after_json },
        duration,
    )?;
    fail_batch(ctx, batch, members, &hash)
}

/// The batch fails and every member token ends FAILED with its id.
fn fail_batch(ctx: &mut RunContext<'_>, batch: &Batch, members: &[Work], error_hash: &str) -> Result<(), EngineError> {
    ctx.recorder.complete_batch(&batch.batch_id, BatchCompletion::Failed)?;
    for Work { token, .. } in members {
        let failed = OutcomeDetail::Failed { error_hash: error_hash.to_owned(), batch_id: Some(batch.batch_id.clone()) };
        ctx.outcome(token, failed, None)?;
    }
    Ok(())
}
