//! The aggregation executor: buffering (batch in draft, members with
//! ordinals, BUFFERED outcomes), triggers (count, timeout, condition, end of
//! source), and the one flush path every trigger takes: exactly one node state
//! at the aggregation node, the batch moving draft → executing → completed |
//! failed with its trigger, and the outputs continuing downstream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use contracts::plugin::{BatchResult, PluginError};
use contracts::records::{Batch, BatchTrigger, OutcomeDetail, Token};
use contracts::{canonical_json, error_hash, stable_hash, Row, TriggerType, Value};
use landscape::recorder::{BatchCompletion, NewNodeState, StateCompletion};
use landscape::LandscapeError;

use super::processor::{EngineError, Runtime, Work};
use crate::dag::NodeIdx;
use crate::expression::Condition;
use crate::settings::OutputModeSetting;

/// The open batch of one aggregation node.
#[derive(Default)]
pub(crate) struct AggregationBuffer {
    batch: Option<Batch>,
    members: Vec<Work>,
    first_arrival: Option<Instant>,
    /// The node's parsed trigger condition, kept across batches.
    condition: Option<Condition>,
}

impl AggregationBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// A flush whose batch transform is still working: its node state is
/// PENDING and its batch executing until a poll brings the answer.
pub(crate) struct PendingFlush {
    node: NodeIdx,
    index: usize,
    batch: Batch,
    state_id: contracts::StateId,
    members: Vec<Work>,
    trigger_type: TriggerType,
    started: Instant,
    next_poll: Instant,
    /// What the plugin needs to find its work again; `None` until it first
    /// answered pending.
    job: Option<serde_json::Value>,
}

/// How often a buffer whose trigger condition may depend on its age is
/// re-evaluated while the source is idle.
const CONDITION_POLL: Duration = Duration::from_millis(100);

/// A batch row map `{batch_count, batch_age_seconds}` for trigger conditions.
fn trigger_row(count: usize, age: Duration) -> Row {
    let mut row = Row::new();
    row.insert("batch_count".into(), Value::Integer(i64::try_from(count).unwrap_or(i64::MAX)));
    row.insert("batch_age_seconds".into(), contracts::Finite::new(age.as_secs_f64()).map_or(Value::Null, Value::Float));
    row
}

impl Runtime<'_> {
    /// A token reaches an aggregation: it joins the node's batch, which may
    /// then flush.
    pub(crate) fn aggregate(&mut self, work: Work, index: usize, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        let node = work.at;
        let trigger = self.loaded.settings.aggregations[index].trigger.clone();
        // Time-based triggers are checked before a new row joins (and by the
        // timer while the source is idle).
        if let Some((trigger_type, reason)) = self.due_time_trigger(node, index)? {
            self.flush_aggregation(node, index, trigger_type, reason, queue)?;
        }
        if self.buffers[node].batch.is_none() {
            let batch = self.recorder.create_batch(&self.run_id, &self.graph.nodes[node].id)?;
            self.buffers[node].batch = Some(batch);
            self.buffers[node].first_arrival = Some(self.clock.now());
        }
        let batch_id = self.buffers[node]
            .batch
            .as_ref()
            .map(|b| b.batch_id.clone())
            .ok_or_else(|| EngineError::Invariant("no batch".into()))?;
        let ordinal =
            u32::try_from(self.buffers[node].members.len()).map_err(|_| EngineError::Invariant("batch too large".into()))?;
        self.recorder.add_batch_member(&batch_id, &self.run_id, &work.token.token_id, ordinal)?;
        self.outcome(&work.token, OutcomeDetail::Buffered { batch_id }, None)?;
        self.buffers[node].members.push(work);
        let count = self.buffers[node].members.len();
        if let Some(limit) = trigger.count {
            if u64::try_from(count).unwrap_or(u64::MAX) >= limit {
                return self.flush_aggregation(node, index, TriggerType::Count, format!("count reached {limit}"), queue);
            }
        }
        if let Some(reason) = self.condition_fired(node, index)? {
            return self.flush_aggregation(node, index, TriggerType::Condition, reason, queue);
        }
        Ok(())
    }

    /// Evaluates the trigger condition on the buffer's count and age; the
    /// reason when it holds.
    fn condition_fired(&mut self, node: NodeIdx, index: usize) -> Result<Option<String>, EngineError> {
        let Some(source) = self.loaded.settings.aggregations[index].trigger.condition.clone() else { return Ok(None) };
        if self.buffers[node].is_empty() {
            return Ok(None);
        }
        // Parsed once per node, not once per arriving row.
        if self.buffers[node].condition.is_none() {
            self.buffers[node].condition = Some(Condition::parse(&source).map_err(|e| EngineError::Config(e.to_string()))?);
        }
        let condition =
            self.buffers[node].condition.clone().ok_or_else(|| EngineError::Invariant("no trigger condition".into()))?;
        let now = self.clock.now();
        let age = self.buffers[node].first_arrival.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let fired = condition
            .evaluate(&trigger_row(self.buffers[node].members.len(), age))
            .map_err(|e| EngineError::Invariant(format!("trigger condition: {e}")))?;
        Ok(fired.truthy().then(|| format!("condition {source} became true")))
    }

    /// The timeout or age condition that is due for a non-empty buffer.
    fn due_time_trigger(&mut self, node: NodeIdx, index: usize) -> Result<Option<(TriggerType, String)>, EngineError> {
        let Some(first) = self.buffers[node].first_arrival.filter(|_| !self.buffers[node].is_empty()) else { return Ok(None) };
        if let Some(timeout) = self.loaded.settings.aggregations[index].trigger.timeout_seconds {
            if self.clock.now().saturating_duration_since(first).as_secs_f64() >= timeout {
                return Ok(Some((TriggerType::Timeout, format!("timeout after {timeout} s"))));
            }
        }
        Ok(self.condition_fired(node, index)?.map(|reason| (TriggerType::Condition, reason)))
    }

    /// When the next aggregation timer may fire: a buffer's timeout, or soon
    /// for a buffer whose condition may turn true as it ages.
    pub(crate) fn next_aggregation_timer(&self) -> Option<Instant> {
        self.graph
            .pipeline
            .iter()
            .filter_map(|&node| {
                let crate::dag::NodeKind::Aggregation(index) = self.graph.nodes[node].kind else { return None };
                let first = self.buffers[node].first_arrival.filter(|_| !self.buffers[node].is_empty())?;
                let trigger = &self.loaded.settings.aggregations[index].trigger;
                let timeout = trigger.timeout_seconds.map(|t| first + Duration::from_secs_f64(t));
                let condition = trigger.condition.as_ref().map(|_| self.clock.now() + CONDITION_POLL);
                [timeout, condition].into_iter().flatten().min()
            })
            .chain(self.pending_flushes.iter().map(|f| f.next_poll))
            .min()
    }

    /// Flushes every buffer whose timeout or age condition is due.
    pub(crate) fn fire_aggregation_timers(&mut self, queue: &mut VecDeque<Work>) -> Result<bool, EngineError> {
        let mut fired = self.poll_pending_flushes(queue)?;
        for node in self.graph.pipeline.clone() {
            let crate::dag::NodeKind::Aggregation(index) = self.graph.nodes[node].kind else { continue };
            if let Some((trigger_type, reason)) = self.due_time_trigger(node, index)? {
                self.flush_aggregation(node, index, trigger_type, reason, queue)?;
                fired = true;
            }
        }
        Ok(fired)
    }

    /// End of source: every non-empty buffer flushes, in topological order,
    /// until none is left (a flush may feed a later aggregation).
    pub(crate) fn flush_aggregations_at_end(&mut self) -> Result<(), EngineError> {
        loop {
            let pending: Vec<NodeIdx> = self.graph.pipeline.iter().copied().filter(|n| !self.buffers[*n].is_empty()).collect();
            let Some(node) = pending.first().copied() else { return Ok(()) };
            let crate::dag::NodeKind::Aggregation(index) = self.graph.nodes[node].kind else {
                return Err(EngineError::Invariant("a buffer on a node that does not aggregate".into()));
            };
            let mut queue = VecDeque::new();
            let size = self.buffers[node].members.len();
            self.flush_aggregation(
                node,
                index,
                TriggerType::EndOfSource,
                format!("end of source with {size} buffered rows"),
                &mut queue,
            )?;
            self.drain(queue)?;
        }
    }

    fn flush_aggregation(
        &mut self,
        node: NodeIdx,
        index: usize,
        trigger_type: TriggerType,
        reason: String,
        queue: &mut VecDeque<Work>,
    ) -> Result<(), EngineError> {
        let condition = self.buffers[node].condition.take();
        let buffer = std::mem::replace(&mut self.buffers[node], AggregationBuffer { condition, ..AggregationBuffer::default() });
        let Some(batch) = buffer.batch else { return Ok(()) };
        if buffer.members.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = buffer.members.iter().map(|w| w.row.clone()).collect();
        let batch_rows = Value::Object(Row::from_iter([(
            "batch_rows".to_owned(),
            Value::List(rows.iter().cloned().map(Value::Object).collect()),
        )]));
        let input_hash = stable_hash(&batch_rows).map_err(LandscapeError::from)?;
        let representative = buffer.members[0].token.clone();
        let member_ids: Vec<&str> = buffer.members.iter().map(|w| w.token.token_id.as_str()).collect();
        let context_before =
            canonical_json(&serde_json::json!({"batch_id": batch.batch_id.as_str(), "member_token_ids": member_ids}))
                .map_err(LandscapeError::from)?;
        let graph_node = &self.graph.nodes[node];
        let state = self.recorder.begin_node_state(NewNodeState {
            token: &representative,
            node_id: &graph_node.id,
            step_index: graph_node.step,
            attempt: batch.attempt,
            input_hash,
            context_before_json: Some(context_before),
        })?;
        let state_id = state.common().state_id.clone();
        let trigger = BatchTrigger { trigger_type, trigger_reason: reason };
        self.recorder.start_batch(&batch.batch_id, &trigger, &state_id)?;
        let started = Instant::now();
        let result = super::guarded(|| self.plugins.aggregations[index].process_batch(&rows, &mut self.contexts[node]));
        self.record_calls(node, &state_id)?;
        let flush = PendingFlush {
            node,
            index,
            batch,
            state_id,
            members: buffer.members,
            trigger_type,
            started,
            next_poll: started,
            job: None,
        };
        self.settle_flush(flush, result, queue)
    }

    /// Handles what the batch transform answered: pending parks the flush
    /// (its state PENDING, the batch executing) until the next poll; rows or
    /// an error end it.
    fn settle_flush(
        &mut self,
        mut flush: PendingFlush,
        result: Result<BatchResult, PluginError>,
        queue: &mut VecDeque<Work>,
    ) -> Result<(), EngineError> {
        let Ok(BatchResult::Pending { check_after, job }) = result else { return self.finish_flush(flush, result, queue) };
        if flush.job.is_none() {
            let context = canonical_json(&serde_json::json!({"job": job, "batch_id": flush.batch.batch_id.as_str()}))
                .map_err(LandscapeError::from)?;
            self.recorder.complete_node_state(
                &flush.state_id,
                &StateCompletion::Pending { context_after_json: Some(context) },
                flush.started.elapsed().as_secs_f64() * 1000.0,
            )?;
        }
        let max_pending = self.loaded.settings.aggregations[flush.index].max_pending_seconds.map(Duration::from_secs_f64);
        if max_pending.is_some_and(|limit| flush.started.elapsed() >= limit) {
            let mut map = serde_json::Map::new();
            map.insert("reason".into(), "batch_failed".into());
            map.insert("error".into(), format!("still pending after {} s", flush.started.elapsed().as_secs()).into());
            self.plugins.aggregations[flush.index].cancel(&job);
            flush.job = Some(job);
            return self.finish_flush(flush, Ok(BatchResult::Error { reason: map }), queue);
        }
        flush.job = Some(job);
        flush.next_poll = Instant::now() + check_after;
        self.pending_flushes.push(flush);
        Ok(())
    }

    /// Polls every pending flush that is due; returns whether any ended.
    pub(crate) fn poll_pending_flushes(&mut self, queue: &mut VecDeque<Work>) -> Result<bool, EngineError> {
        let now = Instant::now();
        let (due, waiting): (Vec<PendingFlush>, Vec<PendingFlush>) =
            std::mem::take(&mut self.pending_flushes).into_iter().partition(|f| f.next_poll <= now);
        self.pending_flushes = waiting;
        let before = self.pending_flushes.len() + due.len();
        for flush in due {
            let job = flush.job.clone().unwrap_or(serde_json::Value::Null);
            let result = super::guarded(|| self.plugins.aggregations[flush.index].poll(&job, &mut self.contexts[flush.node]));
            self.record_calls(flush.node, &flush.state_id)?;
            self.settle_flush(flush, result, queue)?;
        }
        Ok(self.pending_flushes.len() < before)
    }

    /// At the end of the source: waits for the next pending flush to be due,
    /// polls it and lets its outputs go on.
    pub(crate) fn wait_for_pending_flushes(&mut self) -> Result<(), EngineError> {
        if let Some(next) = self.pending_flushes.iter().map(|f| f.next_poll).min() {
            // A real wait for external work, not synchronisation.
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let mut queue = VecDeque::new();
        self.poll_pending_flushes(&mut queue)?;
        self.drain(queue)
    }

    /// Ends a flush with the transform's final answer.
    fn finish_flush(
        &mut self,
        flush: PendingFlush,
        result: Result<BatchResult, PluginError>,
        queue: &mut VecDeque<Work>,
    ) -> Result<(), EngineError> {
        let PendingFlush { node, index, batch, state_id, members, trigger_type, started, .. } = flush;
        let settings = &self.loaded.settings.aggregations[index];
        let name = settings.name.clone();
        let passthrough = settings.output_mode == OutputModeSetting::Passthrough;
        let expected_output_count = settings.expected_output_count;
        let duration = started.elapsed().as_secs_f64() * 1000.0;
        let context_after = serde_json::json!({"trigger_type": trigger_type.as_str(), "buffer_size": members.len(), "batch_id": batch.batch_id.as_str()});
        let context_json = Some(canonical_json(&context_after).map_err(LandscapeError::from)?);
        match result {
            Ok(BatchResult::Rows(out)) => {
                let count_mismatch = expected_output_count.is_some_and(|n| u64::try_from(out.len()).unwrap_or(u64::MAX) != n);
                if (passthrough && out.len() != members.len()) || count_mismatch {
                    let message = format!("the batch transform returned {} rows for {} buffered rows", out.len(), members.len());
                    self.fail_flush(
                        &state_id,
                        &batch,
                        &members,
                        &serde_json::json!({"exception": message, "type": "PluginContractViolation"}),
                        duration,
                        context_json,
                    )?;
                    return Err(EngineError::Plugin { node: name, source: PluginError::Contract(message) });
                }
                let values: Vec<Value> = out.into_iter().map(Value::Object).collect();
                let list = Value::List(values);
                let output_hash = stable_hash(&list).map_err(LandscapeError::from)?;
                self.recorder.complete_node_state(
                    &state_id,
                    &StateCompletion::Completed { output_hash, context_after_json: context_json, success_reason_json: None },
                    duration,
                )?;
                self.recorder.complete_batch(&batch.batch_id, BatchCompletion::Completed)?;
                let Value::List(values) = list else { unreachable!("constructed as a list") };
                if passthrough {
                    for (member, value) in members.into_iter().zip(values) {
                        let hash = stable_hash(&value).map_err(LandscapeError::from)?;
                        let Value::Object(row) = value else { unreachable!("rows are objects") };
                        self.route_from(Work { row, hash, at: node, ..member }, node, queue)?;
                    }
                } else {
                    let tokens: Vec<&Token> = members.iter().map(|w| &w.token).collect();
                    // Outputs stay joinable downstream only when every member
                    // came from the same fork.
                    let fork_group = members[0]
                        .fork_group
                        .clone()
                        .filter(|group| members.iter().all(|w| w.fork_group.as_ref() == Some(group)));
                    for value in values {
                        let hash = stable_hash(&value).map_err(LandscapeError::from)?;
                        let Value::Object(row) = value else { unreachable!("rows are objects") };
                        let token = self.recorder.create_batch_output_token(&tokens, self.graph.nodes[node].step)?;
                        self.route_from(Work { token, row, hash, at: node, fork_group: fork_group.clone() }, node, queue)?;
                    }
                    for Work { token, .. } in &members {
                        self.outcome(token, OutcomeDetail::ConsumedInBatch { batch_id: batch.batch_id.clone() }, None)?;
                    }
                }
                Ok(())
            }
            Ok(BatchResult::Error { reason }) => {
                let reason = serde_json::Value::Object(reason);
                self.fail_flush(&state_id, &batch, &members, &reason, duration, context_json)
            }
            Ok(BatchResult::Pending { .. }) => Err(EngineError::Invariant("a pending answer reached the end of a flush".into())),
            Err(source) => {
                let error = serde_json::json!({"exception": source.to_string(), "type": "PluginError"});
                self.fail_flush(&state_id, &batch, &members, &error, duration, context_json)?;
                Err(EngineError::Plugin { node: name, source })
            }
        }
    }

    /// The flush state and batch fail; every member token ends FAILED with the batch id.
    fn fail_flush(
        &mut self,
        state_id: &contracts::StateId,
        batch: &Batch,
        members: &[Work],
        error: &serde_json::Value,
        duration: f64,
        context_after_json: Option<String>,
    ) -> Result<(), EngineError> {
        let error_json = canonical_json(error).map_err(LandscapeError::from)?;
        let hash = error_hash(&error_json);
        self.recorder.complete_node_state(
            state_id,
            &StateCompletion::Failed { error_json, output_hash: None, context_after_json },
            duration,
        )?;
        self.fail_batch(batch, members, &hash)
    }

    /// The batch fails and every member token ends FAILED with its id.
    fn fail_batch(&mut self, batch: &Batch, members: &[Work], error_hash: &str) -> Result<(), EngineError> {
        self.recorder.complete_batch(&batch.batch_id, BatchCompletion::Failed)?;
        for Work { token, .. } in members {
            self.outcome(
                token,
                OutcomeDetail::Failed { error_hash: error_hash.to_owned(), batch_id: Some(batch.batch_id.clone()) },
                None,
            )?;
        }
        Ok(())
    }

    /// A run that failed leaves no draft batch behind: open buffers fail and
    /// their members end FAILED.
    pub(crate) fn abandon_buffers(&mut self, reason: &str) -> Result<(), EngineError> {
        let hash = error_hash(reason);
        for flush in std::mem::take(&mut self.pending_flushes) {
            if let Some(job) = &flush.job {
                self.plugins.aggregations[flush.index].cancel(job);
            }
            let error = serde_json::json!({"exception": format!("the run ended while the batch was pending: {reason}"), "type": "RunFailed"});
            let duration = flush.started.elapsed().as_secs_f64() * 1000.0;
            self.fail_flush(&flush.state_id, &flush.batch, &flush.members, &error, duration, None)?;
        }
        for node in 0..self.buffers.len() {
            let buffer = std::mem::take(&mut self.buffers[node]);
            let Some(batch) = buffer.batch else { continue };
            self.fail_batch(&batch, &buffer.members, &hash)?;
        }
        Ok(())
    }

    /// The buffers and parked flushes, for a checkpoint.
    pub(crate) fn aggregation_snapshot(&self) -> serde_json::Value {
        let buffers: Vec<serde_json::Value> = self
            .buffers
            .iter()
            .enumerate()
            .filter_map(|(node, buffer)| {
                let batch = buffer.batch.as_ref()?;
                Some(serde_json::json!({
                    "node": node,
                    "batch_id": batch.batch_id.as_str(),
                    "members": buffer.members.iter().map(super::checkpoint::work_json).collect::<Vec<_>>(),
                }))
            })
            .collect();
        let pending: Vec<serde_json::Value> = self
            .pending_flushes
            .iter()
            .map(|f| {
                serde_json::json!({
                    "node": f.node,
                    "index": f.index,
                    "batch_id": f.batch.batch_id.as_str(),
                    "state_id": f.state_id.as_str(),
                    "trigger_type": f.trigger_type.as_str(),
                    "job": f.job,
                    "members": f.members.iter().map(super::checkpoint::work_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({"buffers": buffers, "pending_flushes": pending})
    }

    /// Restores buffers (their age starts again) and parked flushes (polled
    /// at once).
    pub(crate) fn restore_aggregation(&mut self, saved: &serde_json::Value) -> Result<(), EngineError> {
        let damaged = || EngineError::Resume("the checkpoint's aggregation state is damaged".into());
        let node_of = |v: &serde_json::Value| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(damaged);
        let batch_of = |v: &serde_json::Value| -> Result<contracts::BatchId, EngineError> {
            Ok(contracts::BatchId::parse(v.as_str().ok_or_else(damaged)?).map_err(LandscapeError::from)?)
        };
        for buffer in saved["buffers"].as_array().into_iter().flatten() {
            let node = node_of(&buffer["node"])?;
            let batch = self.recorder.get_batch(&batch_of(&buffer["batch_id"])?)?;
            let members = buffer["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| self.work_from_json(m))
                .collect::<Result<Vec<_>, _>>()?;
            let slot = self.buffers.get_mut(node).ok_or_else(damaged)?;
            *slot = AggregationBuffer { batch: Some(batch), members, first_arrival: Some(self.clock.now()), condition: None };
        }
        for flush in saved["pending_flushes"].as_array().into_iter().flatten() {
            let batch = self.recorder.get_batch(&batch_of(&flush["batch_id"])?)?;
            let members = flush["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| self.work_from_json(m))
                .collect::<Result<Vec<_>, _>>()?;
            let state_id =
                contracts::StateId::parse(flush["state_id"].as_str().ok_or_else(damaged)?).map_err(LandscapeError::from)?;
            let trigger_type: TriggerType =
                flush["trigger_type"].as_str().ok_or_else(damaged)?.parse().map_err(LandscapeError::from)?;
            let now = Instant::now();
            self.pending_flushes.push(PendingFlush {
                node: node_of(&flush["node"])?,
                index: node_of(&flush["index"])?,
                batch,
                state_id,
                members,
                trigger_type,
                started: now,
                next_poll: now,
                job: Some(flush["job"].clone()),
            });
        }
        Ok(())
    }
}
