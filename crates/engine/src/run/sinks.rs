//! The sink executor: per chunk, each sink's rows are written and made
//! durable, then one node state per token and the delivery outcomes are
//! recorded, with the artifact as it now is on disk.

use std::time::Instant;

use contracts::plugin::ArtifactDescriptor;
use contracts::records::{OutcomeDetail, Token, TokenLineage};
use contracts::{error_hash, sink_write_hash, ContentHash, OperationType, Row};
use landscape::recorder::{NewArtifact, NewNodeState, OperationCompletion, StateCompletion};

use super::processor::{EngineError, Runtime};
use crate::dag::NodeIdx;

/// What a delivery asserts once its row is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryKind {
    Completed,
    Routed,
    Quarantined { error_hash: String },
}

/// A token waiting for its sink write.
pub(crate) struct Delivery {
    pub(crate) token: Token,
    pub(crate) row: Row,
    pub(crate) hash: ContentHash,
    pub(crate) kind: DeliveryKind,
}

impl Runtime<'_> {
    /// Queues a token for its sink write. A fork branch token headed for a
    /// coalesce that goes to a sink instead is a lost branch: the coalesce is
    /// told now, not at the end of the source.
    pub(crate) fn deliver(&mut self, sink: NodeIdx, delivery: Delivery) {
        // Only branch tokens can be lost to a coalesce; most deliveries skip this.
        if matches!(delivery.token.lineage, TokenLineage::Forked { .. }) {
            let how = match delivery.kind {
                DeliveryKind::Completed => "delivered",
                DeliveryKind::Routed => "routed",
                DeliveryKind::Quarantined { .. } => "quarantined",
            };
            let reason = format!("{how} to sink {}", self.graph.nodes[sink].name);
            self.note_branch_loss(&delivery.token, || reason);
        }
        self.pending[sink].push(delivery);
    }

    /// Writes every sink's pending rows durably, then records their states
    /// and outcomes. On a sink failure the tokens end failed (never with a
    /// delivery outcome) and the run stops.
    pub(crate) fn flush_sinks(&mut self) -> Result<(), EngineError> {
        let sink_nodes: Vec<NodeIdx> = self.graph.sinks.values().copied().collect();
        for sink in sink_nodes {
            if self.pending[sink].is_empty() {
                continue;
            }
            let deliveries = std::mem::take(&mut self.pending[sink]);
            self.flush_sink(sink, deliveries)?;
        }
        Ok(())
    }

    fn flush_sink(&mut self, sink: NodeIdx, deliveries: Vec<Delivery>) -> Result<(), EngineError> {
        let name = self.graph.nodes[sink].name.clone();
        let node_id = self.graph.nodes[sink].id.clone();
        let input = serde_json::json!({"sink_plugin": self.graph.nodes[sink].plugin_name, "row_count": deliveries.len()});
        let operation = self.recorder.begin_operation(&self.run_id, &node_id, OperationType::SinkWrite, Some(&input))?;
        let rows: Vec<Row> = deliveries.iter().map(|d| d.row.clone()).collect();
        let started = Instant::now();
        let plugin =
            self.plugins.sinks.get_mut(&name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
        let context = &mut self.contexts[sink];
        let result = super::guarded(|| plugin.write(&rows, context).and_then(|()| plugin.flush(context)));
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let per_row = elapsed / rows.len().max(1) as f64;
        match result {
            Ok(artifact) => {
                let artifact =
                    artifact.ok_or_else(|| EngineError::Invariant(format!("sink {name} wrote rows but reports no artifact")))?;
                self.sink_bytes[sink] = Some(artifact.size_bytes);
                self.sink_writes += 1;
                self.crash_if(super::checkpoint::CrashPoint::AfterSinkWrite(self.sink_writes));
                let first = self.record_deliveries(sink, &name, deliveries, &artifact, per_row)?;
                if let Some(first) = first {
                    self.register(sink, &first, &artifact)?;
                }
                let output =
                    serde_json::json!({"artifact_path": artifact.path_or_uri, "content_hash": artifact.content_hash.as_str()});
                self.recorder.complete_operation(
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
                    self.recorder.record_node_state(
                        NewNodeState {
                            token: &delivery.token,
                            node_id: &node_id,
                            step_index: self.graph.nodes[sink].step,
                            attempt: 0,
                            input_hash: delivery.hash.clone(),
                            context_before_json: None,
                        },
                        StateCompletion::failed(&failure)?,
                        per_row,
                    )?;
                    self.outcome(
                        &delivery.token,
                        OutcomeDetail::Failed { error_hash: error_hash(&message), batch_id: None },
                        None,
                    )?;
                }
                self.recorder.complete_operation(
                    &operation.operation_id,
                    &OperationCompletion::Failed { error_message: &message, output: None },
                    elapsed,
                )?;
                Err(EngineError::Plugin { node: format!("sink {name}"), source })
            }
        }
    }

    fn record_deliveries(
        &mut self,
        sink: NodeIdx,
        name: &str,
        deliveries: Vec<Delivery>,
        artifact: &ArtifactDescriptor,
        per_row: f64,
    ) -> Result<Option<contracts::StateId>, EngineError> {
        let node_id = self.graph.nodes[sink].id.clone();
        let step = self.graph.nodes[sink].step;
        let mut first = None;
        for delivery in deliveries {
            let output_hash = sink_write_hash(&delivery.hash, &artifact.path_or_uri, &artifact.content_hash)
                .map_err(landscape::LandscapeError::from)?;
            let state = self.recorder.record_node_state(
                NewNodeState {
                    token: &delivery.token,
                    node_id: &node_id,
                    step_index: step,
                    attempt: 0,
                    input_hash: delivery.hash.clone(),
                    context_before_json: None,
                },
                StateCompletion::Completed { output_hash, context_after_json: None, success_reason_json: None },
                per_row,
            )?;
            if first.is_none() {
                first = Some(state.common().state_id.clone());
            }
            self.last_sink_state[sink] = Some(state.common().state_id.clone());
            let detail = match delivery.kind {
                DeliveryKind::Completed => OutcomeDetail::Completed { sink_name: name.to_owned() },
                DeliveryKind::Routed => OutcomeDetail::Routed { sink_name: name.to_owned() },
                DeliveryKind::Quarantined { error_hash } => {
                    OutcomeDetail::Quarantined { error_hash, sink_name: Some(name.to_owned()) }
                }
            };
            self.outcome(&delivery.token, detail, None)?;
        }
        Ok(first)
    }

    fn register(&mut self, sink: NodeIdx, state: &contracts::StateId, artifact: &ArtifactDescriptor) -> Result<(), EngineError> {
        self.recorder.register_artifact(
            &self.run_id,
            &NewArtifact {
                produced_by_state_id: state,
                sink_node_id: &self.graph.nodes[sink].id,
                artifact_type: &artifact.artifact_type,
                path_or_uri: &artifact.path_or_uri,
                content_hash: &artifact.content_hash,
                size_bytes: artifact.size_bytes,
                idempotency_key: None,
            },
        )?;
        Ok(())
    }

    /// Completes every sink that wrote anything and records the final artifact
    /// when completing changed the file.
    pub(crate) fn finish_sinks(&mut self) -> Result<(), EngineError> {
        let sink_nodes: Vec<NodeIdx> = self.graph.sinks.values().copied().collect();
        self.recorder.begin_unit()?;
        for sink in sink_nodes {
            let name = self.graph.nodes[sink].name.clone();
            let plugin =
                self.plugins.sinks.get_mut(&name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
            let before = plugin
                .flush(&mut self.contexts[sink])
                .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
            let after = plugin
                .finish(&mut self.contexts[sink])
                .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
            if let (Some(after), Some(state)) = (after, self.last_sink_state[sink].clone()) {
                if before.as_ref() != Some(&after) {
                    self.register(sink, &state, &after)?;
                }
            }
        }
        self.recorder.commit_unit()?;
        Ok(())
    }
}
