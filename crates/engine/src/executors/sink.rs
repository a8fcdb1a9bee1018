//! The sink executor: per chunk, each sink's rows are written and made
//! durable, then one node state per token and the delivery outcomes are
//! recorded, with the artifact as it now is on disk. On a write failure the
//! tokens end failed (never with a delivery outcome) and the run stops.

use std::time::Instant;

use contracts::plugin::ArtifactDescriptor;
use contracts::records::OutcomeDetail;
use contracts::{error_hash, sink_write_hash, ContentHash, OperationType, Row, StateId};
use landscape::recorder::{NewArtifact, OperationCompletion, StateCompletion};

use crate::dag::NodeIdx;
use crate::runtime::{guarded, ms, CrashPoint, Delivery, DeliveryKind, EngineError, RunContext};

/// What a sink's output held after a durable write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) content_hash: ContentHash,
}

/// Rows waiting for their write, and what each sink wrote so far.
pub(crate) struct SinkExecutor {
    /// Deliveries waiting for the chunk's write, by sink node.
    pending: Vec<Vec<Delivery>>,
    /// The last sink state per sink node, for artifacts written at the end.
    pub(crate) last_state: Vec<Option<StateId>>,
    /// Per sink node: its output after the last durable write (length and
    /// the hash of those bytes).
    pub(crate) written: Vec<Option<Written>>,
    /// Durable writes so far (the crash harness counts them).
    writes: u64,
}

impl SinkExecutor {
    pub(crate) fn new(nodes: usize) -> SinkExecutor {
        SinkExecutor {
            pending: (0..nodes).map(|_| Vec::new()).collect(),
            last_state: vec![None; nodes],
            written: vec![None; nodes],
            writes: 0,
        }
    }

    /// Queues a token for the next write of its sink.
    pub(crate) fn accept(&mut self, sink: NodeIdx, delivery: Delivery) {
        self.pending[sink].push(delivery);
    }

    /// Writes every sink's pending rows durably, then records their states
    /// and outcomes.
    pub(crate) fn flush(&mut self, ctx: &mut RunContext<'_>) -> Result<(), EngineError> {
        let sink_nodes: Vec<NodeIdx> = ctx.graph.sinks.values().copied().collect();
        for sink in sink_nodes {
            if self.pending[sink].is_empty() {
                continue;
            }
            let deliveries = std::mem::take(&mut self.pending[sink]);
            self.write(ctx, sink, deliveries)?;
        }
        Ok(())
    }

    fn write(&mut self, ctx: &mut RunContext<'_>, sink: NodeIdx, deliveries: Vec<Delivery>) -> Result<(), EngineError> {
        let name = ctx.graph.nodes[sink].name.clone();
        let node_id = ctx.graph.nodes[sink].id.clone();
        let input = serde_json::json!({"sink_plugin": ctx.graph.nodes[sink].plugin_name, "row_count": deliveries.len()});
        let operation = ctx.recorder.begin_operation(&ctx.run_id, &node_id, OperationType::SinkWrite, Some(&input))?;
        let rows: Vec<Row> = deliveries.iter().map(|d| d.row.clone()).collect();
        let started = Instant::now();
        let plugin =
            ctx.plugins.sinks.get_mut(&name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
        let context = &mut ctx.contexts[sink];
        let result = guarded(|| plugin.write(&rows, context).and_then(|()| plugin.flush(context)));
        let elapsed = ms(started.elapsed());
        let calls = ctx.contexts[sink].take_calls();
        ctx.write_operation_calls(&operation.operation_id, calls)?;
        let per_row = elapsed / rows.len().max(1) as f64;
        match result {
            Ok(artifact) => {
                let artifact =
                    artifact.ok_or_else(|| EngineError::Invariant(format!("sink {name} wrote rows but reports no artifact")))?;
                self.written[sink] = Some(Written { bytes: artifact.size_bytes, content_hash: artifact.content_hash.clone() });
                self.writes += 1;
                ctx.crash_if(CrashPoint::AfterSinkWrite(self.writes));
                if let Some(first) = self.record_deliveries(ctx, sink, &name, deliveries, &artifact, per_row)? {
                    register_artifact(ctx, sink, &first, &artifact)?;
                }
                let output =
                    serde_json::json!({"artifact_path": artifact.path_or_uri, "content_hash": artifact.content_hash.as_str()});
                ctx.recorder.complete_operation(
                    &operation.operation_id,
                    &OperationCompletion::Completed { output: Some(&output) },
                    elapsed,
                )?;
                Ok(())
            }
            Err(source) => {
                let message = source.to_string();
                let failure = serde_json::json!({"exception": message, "type": "SinkError"});
                for delivery in deliveries {
                    ctx.visit(&delivery.token, sink, 0, delivery.hash.clone(), StateCompletion::failed(&failure)?, per_row)?;
                    ctx.outcome(
                        &delivery.token,
                        OutcomeDetail::Failed { error_hash: error_hash(&message), batch_id: None },
                        None,
                    )?;
                }
                let failed = OperationCompletion::Failed { error_message: &message, output: None };
                ctx.recorder.complete_operation(&operation.operation_id, &failed, elapsed)?;
                Err(EngineError::Plugin { node: format!("sink {name}"), source })
            }
        }
    }

    /// One completed state per delivered token and its delivery outcome;
    /// returns the first state (the artifact names it).
    fn record_deliveries(
        &mut self,
        ctx: &mut RunContext<'_>,
        sink: NodeIdx,
        name: &str,
        deliveries: Vec<Delivery>,
        artifact: &ArtifactDescriptor,
        per_row: f64,
    ) -> Result<Option<StateId>, EngineError> {
        let mut first = None;
        for delivery in deliveries {
            let output_hash = sink_write_hash(&delivery.hash, &artifact.path_or_uri, &artifact.content_hash)?;
            let completion = StateCompletion::Completed { output_hash, context_after_json: None, success_reason_json: None };
            let state = ctx.visit(&delivery.token, sink, 0, delivery.hash.clone(), completion, per_row)?;
            let state_id = state.common().state_id.clone();
            if first.is_none() {
                first = Some(state_id.clone());
            }
            self.last_state[sink] = Some(state_id);
            let detail = match delivery.kind {
                DeliveryKind::Completed => OutcomeDetail::Completed { sink_name: name.to_owned() },
                DeliveryKind::Routed => OutcomeDetail::Routed { sink_name: name.to_owned() },
                DeliveryKind::Quarantined { error_hash } => {
                    OutcomeDetail::Quarantined { error_hash, sink_name: Some(name.to_owned()) }
                }
            };
            ctx.outcome(&delivery.token, detail, None)?;
        }
        Ok(first)
    }

    /// Completes every sink and records the final artifact when completing
    /// changed the file. The unit is closed on every path: committed when a
    /// sink failed (what the sinks before it recorded stands, and the run's
    /// failure is recorded next), rolled back when the audit write failed.
    pub(crate) fn finish(&mut self, ctx: &mut RunContext<'_>) -> Result<(), EngineError> {
        ctx.recorder.begin_unit()?;
        match self.finish_each(ctx) {
            Err(error @ EngineError::Landscape(_)) => {
                let _ = ctx.recorder.rollback_unit();
                Err(error)
            }
            finished => {
                ctx.recorder.commit_unit()?;
                finished
            }
        }
    }

    fn finish_each(&mut self, ctx: &mut RunContext<'_>) -> Result<(), EngineError> {
        let sink_nodes: Vec<NodeIdx> = ctx.graph.sinks.values().copied().collect();
        for sink in sink_nodes {
            let name = ctx.graph.nodes[sink].name.clone();
            let plugin_error = |source| EngineError::Plugin { node: format!("sink {name}"), source };
            let plugin =
                ctx.plugins.sinks.get_mut(&name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
            let before = plugin.flush(&mut ctx.contexts[sink]).map_err(plugin_error)?;
            let after = plugin.finish(&mut ctx.contexts[sink]).map_err(plugin_error)?;
            if let (Some(after), Some(state)) = (after, self.last_state[sink].clone()) {
                if before.as_ref() != Some(&after) {
                    register_artifact(ctx, sink, &state, &after)?;
                }
            }
        }
        Ok(())
    }
}

fn register_artifact(
    ctx: &mut RunContext<'_>,
    sink: NodeIdx,
    state: &StateId,
    artifact: &ArtifactDescriptor,
) -> Result<(), EngineError> {
    ctx.recorder.register_artifact(
        &ctx.run_id,
        &NewArtifact {
            produced_by_state_id: state,
            sink_node_id: &ctx.graph.nodes[sink].id,
            artifact_type: &artifact.artifact_type,
            path_or_uri: &artifact.path_or_uri,
            content_hash: &artifact.content_hash,
            size_bytes: artifact.size_bytes,
            idempotency_key: None,
        },
    )?;
    Ok(())
}
