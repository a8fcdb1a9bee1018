//! The token processor: one source item at a time becomes a token that
//! moves through a FIFO work queue; each step hands the token to its node's
//! executor, then moves what the step emitted (tokens for the next node,
//! rows for sinks, branch losses for coalesces). Every visit is exactly one
//! node state, recorded completed, failed or pending; no state is left open.
//! A token reaching a pooled transform waits in the node's pool (see
//! `executors/pool.rs`); the processor records pooled rows oldest first,
//! when a pool is full or everything must settle.

use std::time::Instant;

use contracts::plugin::{InvalidRecord, SourceItem};
use contracts::records::OutcomeDetail;
use contracts::{error_hash, RoutingMode, Row, Value};
use landscape::recorder::{NewValidationError, StateCompletion};

use crate::dag::NodeKind;
use crate::executors::aggregation::AggregationExecutor;
use crate::executors::coalesce::CoalesceExecutor;
use crate::executors::gate::GateExecutor;
use crate::executors::pool::Pools;
use crate::executors::sink::SinkExecutor;
use crate::executors::transform;
use crate::runtime::{execution_error, Delivery, DeliveryKind, Emitted, EngineError, RunContext, Work};

/// Steps after which a work queue that still has not drained is a bug.
const MAX_STEPS: usize = 100_000;

/// The run's shared state and its executors.
pub(crate) struct Processor<'r> {
    pub(crate) ctx: RunContext<'r>,
    gates: GateExecutor,
    pub(crate) aggregation: AggregationExecutor,
    pub(crate) coalesce: CoalesceExecutor,
    pub(crate) sinks: SinkExecutor,
    /// Rows in flight at pooled transforms.
    pools: Pools,
    /// Checkpoints written so far (the last one's sequence number).
    pub(crate) checkpoints: u64,
}

impl<'r> Processor<'r> {
    pub(crate) fn new(ctx: RunContext<'r>) -> Result<Processor<'r>, EngineError> {
        let gates = GateExecutor::new(&ctx)?;
        let aggregation = AggregationExecutor::new(&ctx)?;
        let sinks = SinkExecutor::new(ctx.graph.nodes.len());
        let pools = Pools::new(&ctx);
        Ok(Processor { ctx, gates, aggregation, coalesce: CoalesceExecutor::default(), sinks, pools, checkpoints: 0 })
    }

    /// One source item: a valid row becomes a token that runs through the
    /// graph; an invalid record is quarantined.
    pub(crate) fn process_item(&mut self, item: SourceItem) -> Result<(), EngineError> {
        let row_index = self.ctx.rows_read;
        self.ctx.rows_read += 1;
        match item {
            SourceItem::Valid(row) => {
                let ctx = &mut self.ctx;
                let source = ctx.graph.source();
                let value = Value::Object(row);
                let record = ctx.recorder.create_row(&ctx.run_id, &ctx.graph.nodes[source].id, row_index, &value)?;
                let Value::Object(row) = value else { unreachable!("constructed as an object") };
                let token = ctx.recorder.create_token(&record)?;
                ctx.last_token = Some(token.token_id.clone());
                let hash = record.source_data_hash.clone();
                let completion =
                    StateCompletion::Completed { output_hash: hash.clone(), context_after_json: None, success_reason_json: None };
                ctx.visit(&token, source, 0, hash.clone(), completion, 0.0)?;
                let mut out = Emitted::default();
                ctx.route_from(Work { token, row, hash, at: source, fork_group: None }, source, &mut out)?;
                self.drain(out)?;
                self.settle_pools(false)
            }
            SourceItem::Invalid(invalid) => self.quarantine(row_index, invalid),
        }
    }

    /// An invalid source record: a failed source state, a validation error,
    /// and the record diverted to the quarantine sink (or discarded).
    #[allow(clippy::wildcard_enum_match_arm, reason = "a raw record that is not an object is kept whole under `_raw`")]
    fn quarantine(&mut self, row_index: u64, invalid: InvalidRecord) -> Result<(), EngineError> {
        let ctx = &mut self.ctx;
        let source = ctx.graph.source();
        let source_id = ctx.graph.nodes[source].id.clone();
        let record = ctx.recorder.create_quarantined_row(&ctx.run_id, &source_id, row_index, &invalid.raw)?;
        let token = ctx.recorder.create_token(&record)?;
        ctx.last_token = Some(token.token_id.clone());
        let error = execution_error(&invalid.error, "ValidationError");
        let state = ctx.visit(&token, source, 0, record.source_data_hash.clone(), StateCompletion::failed(&error)?, 0.0)?;
        let sink = ctx.graph.quarantine_sink;
        let destination = sink.map_or_else(|| "discard".to_owned(), |s| ctx.graph.nodes[s].name.clone());
        ctx.recorder.record_validation_error(
            &ctx.run_id,
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
                let edge = ctx.edge(source, "__quarantine__")?;
                let reason = serde_json::json!({"quarantine_error": invalid.error});
                ctx.recorder.record_routing_events(&state.common().state_id, &[(edge, RoutingMode::Divert)], Some(&reason))?;
                let row = match invalid.raw {
                    Value::Object(row) => row,
                    other => Row::from_iter([("_raw".to_owned(), other)]),
                };
                let kind = DeliveryKind::Quarantined { error_hash: hash };
                self.sinks.accept(sink, Delivery { token, row, hash: record.source_data_hash, kind });
                Ok(())
            }
            None => ctx.outcome(&token, OutcomeDetail::Quarantined { error_hash: hash, sink_name: None }, None),
        }
    }

    /// Runs the queue until no token is left, then the joins branch losses
    /// decided, until nothing moves.
    pub(crate) fn drain(&mut self, mut out: Emitted) -> Result<(), EngineError> {
        self.settle_step(&mut out)?;
        let mut steps = 0_usize;
        loop {
            let Some(work) = out.queue.pop_front() else {
                // Joins a lost branch decided resolve now; what they merge
                // goes on through the queue.
                if self.coalesce.resolve_decided(&mut self.ctx, &mut out)? {
                    self.settle_step(&mut out)?;
                    continue;
                }
                return Ok(());
            };
            steps += 1;
            if steps > MAX_STEPS {
                return Err(EngineError::Invariant(format!("work queue did not drain after {MAX_STEPS} steps")));
            }
            self.step(work, &mut out)?;
            self.settle_step(&mut out)?;
        }
    }

    /// Hands a token to its node's executor.
    fn step(&mut self, work: Work, out: &mut Emitted) -> Result<(), EngineError> {
        let ctx = &mut self.ctx;
        match ctx.graph.nodes[work.at].kind {
            NodeKind::Transform(_) if self.pools.is_pooled(work.at) => self.pools.submit(work),
            NodeKind::Transform(index) => transform::execute(ctx, work, index, out),
            NodeKind::Gate(_) => self.gates.execute(ctx, work, out),
            NodeKind::Source => {
                let at = work.at;
                ctx.route_from(work, at, out)
            }
            NodeKind::Aggregation(index) => self.aggregation.accept(ctx, work, index, out),
            NodeKind::Coalesce(_) => self.coalesce.accept(ctx, work, out),
            NodeKind::Sink(_) => {
                let sink = work.at;
                ctx.deliver(
                    sink,
                    Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Completed },
                    out,
                );
                Ok(())
            }
        }
    }

    /// Records rows that pooled transforms finished, oldest first: only
    /// from full pools (a row must leave before another is read), or from
    /// every pool until none has a row in flight (`all`: the end of a
    /// chunk, of the source, an interrupt). What they emit runs on at once.
    fn settle_pools(&mut self, all: bool) -> Result<(), EngineError> {
        loop {
            let next = if all { self.pools.busy() } else { self.pools.full() };
            let Some(pool) = next else { return Ok(()) };
            let (work, index, attempts) = self.pools.release(pool)?;
            let mut out = Emitted::default();
            transform::record_attempts(&mut self.ctx, work, index, attempts, &mut out)?;
            self.drain(out)?;
        }
    }

    /// Lets every row in flight finish and move on (before a commit: a
    /// checkpoint never has rows in flight).
    pub(crate) fn settle_all(&mut self) -> Result<(), EngineError> {
        self.settle_pools(true)
    }

    /// After a step: rows go to their sinks' pending writes, branch losses
    /// to the coalesce executor.
    fn settle_step(&mut self, out: &mut Emitted) -> Result<(), EngineError> {
        for (sink, delivery) in out.deliveries.drain(..) {
            self.sinks.accept(sink, delivery);
        }
        self.coalesce.note_losses(&mut self.ctx)
    }

    /// End of source: coalesces and aggregations resolve until nothing waits
    /// (an aggregation after a coalesce, or the reverse, both settle);
    /// outstanding async batches are waited for.
    pub(crate) fn resolve_at_end(&mut self) -> Result<(), EngineError> {
        loop {
            self.settle_pools(true)?;
            for key in self.coalesce.waiting_at_end(&self.ctx) {
                let mut out = Emitted::default();
                self.coalesce.resolve_at_end(&mut self.ctx, key, &mut out)?;
                self.drain(out)?;
            }
            while let Some(node) = self.aggregation.first_buffered(&self.ctx) {
                let mut out = Emitted::default();
                self.aggregation.flush_at_end(&mut self.ctx, node, &mut out)?;
                self.drain(out)?;
            }
            if self.aggregation.has_pending() {
                let mut out = Emitted::default();
                self.aggregation.wait_for_pending(&mut self.ctx, &mut out)?;
                self.drain(out)?;
                continue;
            }
            if self.coalesce.is_empty() && self.aggregation.is_empty() && self.pools.busy().is_none() {
                return Ok(());
            }
        }
    }

    /// The earliest time a timer (aggregation timeout, age condition or
    /// pending poll, coalesce timeout) may fire.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        [self.aggregation.next_timer(&self.ctx), self.coalesce.next_timer(&self.ctx)].into_iter().flatten().min()
    }

    /// Fires every timer that is due; returns whether any did.
    pub(crate) fn fire_timers(&mut self) -> Result<bool, EngineError> {
        let mut out = Emitted::default();
        let fired = self.aggregation.fire_timers(&mut self.ctx, &mut out)?;
        self.settle_step(&mut out)?;
        let fired = fired | self.coalesce.fire_timers(&mut self.ctx, &mut out)?;
        self.drain(out)?;
        self.settle_pools(false)?;
        Ok(fired)
    }

    /// Writes the chunk's rows to their sinks and records their outcomes.
    pub(crate) fn flush_sinks(&mut self) -> Result<(), EngineError> {
        self.sinks.flush(&mut self.ctx)
    }

    /// Completes the sinks at the end of a completed run.
    pub(crate) fn finish_sinks(&mut self) -> Result<(), EngineError> {
        self.sinks.finish(&mut self.ctx)
    }

    /// An interrupted run parks its waiting coalesce branches for resume.
    pub(crate) fn park(&mut self) -> Result<(), EngineError> {
        self.settle_pools(true)?;
        self.coalesce.park(&mut self.ctx)
    }

    /// A failed run: every buffered batch, pending flush and waiting join fails.
    pub(crate) fn abandon(&mut self, reason: &str) -> Result<(), EngineError> {
        self.aggregation.abandon(&mut self.ctx, reason)?;
        self.coalesce.abandon(&mut self.ctx, reason)
    }
}
