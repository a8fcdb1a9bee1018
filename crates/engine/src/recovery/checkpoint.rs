//! Checkpoints: at every commit point (the end of a chunk, after the sinks'
//! writes are durable) the engine records, in the same transaction as the
//! outcomes it covers, everything a resumed run needs: how many source rows
//! were read, each sink's length, content hash and continuation state, the
//! aggregation buffers and parked flushes (with their rows), the coalesce
//! joins, and the topology hash that refuses a changed pipeline.
//!
//! The saved state is typed (serde structs with `deny_unknown_fields` and a
//! format version): a damaged, incomplete or foreign checkpoint is refused
//! with what is wrong, never read as empty buffers.

use std::collections::{BTreeMap, HashMap, HashSet};

use contracts::plugin::{OutputPosition, PluginError};
use contracts::records::{Checkpoint, Token};
use contracts::{BatchId, ContentHash, ForkGroupId, StateId, TokenId, TriggerType, Value};
use indexmap::IndexMap;
use landscape::recorder::NewCheckpoint;
use serde::{Deserialize, Serialize};

use crate::dag::{NodeIdx, NodeKind};
use crate::executors::aggregation::{AggregationBuffer, PendingFlush};
use crate::executors::coalesce::{Arrival, Entry, JoinKey};
use crate::executors::sink::Written;
use crate::processor::Processor;
use crate::runtime::{EngineError, Work};

/// The version of the checkpoint format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// The engine's state at a commit point (stored in `aggregation_state_json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineCheckpoint {
    pub(crate) format_version: u32,
    pub(crate) rows_read: u64,
    pub(crate) sinks: BTreeMap<String, SinkCheckpoint>,
    pub(crate) buffers: Vec<BufferCheckpoint>,
    pub(crate) pending_flushes: Vec<PendingFlushCheckpoint>,
}

/// A sink's output at a commit point.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkCheckpoint {
    /// Length of the output after the last durable write (none written yet: `None`).
    pub(crate) bytes: Option<u64>,
    /// SHA-256 of those bytes.
    pub(crate) content_hash: Option<ContentHash>,
    /// What the sink plugin needs to continue.
    pub(crate) state: serde_json::Value,
    /// The sink's last node state (the final artifact names it).
    pub(crate) last_state: Option<StateId>,
}

/// An open aggregation batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BufferCheckpoint {
    pub(crate) node: usize,
    pub(crate) batch_id: BatchId,
    pub(crate) members: Vec<SavedWork>,
}

/// A flush whose batch transform answered pending.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PendingFlushCheckpoint {
    pub(crate) node: usize,
    pub(crate) index: usize,
    pub(crate) batch_id: BatchId,
    pub(crate) state_id: StateId,
    pub(crate) trigger_type: String,
    pub(crate) job: serde_json::Value,
    pub(crate) members: Vec<SavedWork>,
}

/// A token with its row, hash, place and fork, where it waits.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedWork {
    pub(crate) token: TokenId,
    pub(crate) row: serde_json::Value,
    pub(crate) hash: ContentHash,
    pub(crate) at: usize,
    pub(crate) fork_group: Option<ForkGroupId>,
}

/// The coalesce joins at a commit point (stored in `coalesce_state_json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoalesceCheckpoint {
    pub(crate) format_version: u32,
    pub(crate) entries: Vec<JoinCheckpoint>,
    /// Joins resolved while a branch may still arrive late.
    pub(crate) resolved: Vec<(usize, ForkGroupId)>,
    pub(crate) lost: Vec<LostCheckpoint>,
}

/// A join waiting for branches.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinCheckpoint {
    pub(crate) node: usize,
    pub(crate) fork_group: ForkGroupId,
    pub(crate) arrivals: Vec<ArrivalCheckpoint>,
}

/// A branch token waiting at a coalesce.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArrivalCheckpoint {
    pub(crate) branch: String,
    pub(crate) token: TokenId,
    pub(crate) row: serde_json::Value,
    pub(crate) state_id: StateId,
}

/// Branches of a join known lost, with why.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LostCheckpoint {
    pub(crate) node: usize,
    pub(crate) fork_group: ForkGroupId,
    pub(crate) branches: IndexMap<String, String>,
}

fn damaged(what: impl std::fmt::Display) -> EngineError {
    EngineError::Resume(format!("the checkpoint is damaged: {what}"))
}

fn save_work(work: &Work) -> SavedWork {
    SavedWork {
        token: work.token.token_id.clone(),
        row: Value::Object(work.row.clone()).to_json(),
        hash: work.hash.clone(),
        at: work.at,
        fork_group: work.fork_group.clone(),
    }
}

/// Parses the engine state of a checkpoint, refusing anything but this
/// format, complete.
fn parse_engine(checkpoint: &Checkpoint) -> Result<EngineCheckpoint, EngineError> {
    let json = checkpoint.aggregation_state_json.as_deref().ok_or_else(|| damaged("it holds no engine state"))?;
    parse(json, "engine state")
}

fn parse_coalesce(checkpoint: &Checkpoint) -> Result<CoalesceCheckpoint, EngineError> {
    let json = checkpoint.coalesce_state_json.as_deref().ok_or_else(|| damaged("it holds no coalesce state"))?;
    parse(json, "coalesce state")
}

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, EngineError> {
    // The version first, so a checkpoint of another format is named as such.
    let value = serde_json::from_str::<serde_json::Value>(json).map_err(|e| damaged(format!("its {what} is not JSON ({e})")))?;
    let version = value.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        let found = version.map_or_else(|| "none".to_owned(), |v| v.to_string());
        return Err(EngineError::Resume(format!(
            "the checkpoint's {what} has format version {found}; this build reads version {FORMAT_VERSION} \
             (resume the run with the build that interrupted it, or start a new run)"
        )));
    }
    serde_json::from_value(value).map_err(|e| damaged(format!("its {what}: {e}")))
}

impl Processor<'_> {
    /// Records the checkpoint of this commit point (inside the open unit).
    pub(crate) fn write_checkpoint(&mut self) -> Result<(), EngineError> {
        if !self.ctx.loaded.settings.checkpoint.enabled {
            return Ok(());
        }
        let Some(token) = self.ctx.last_token.clone() else { return Ok(()) };
        let engine = self.engine_checkpoint();
        let coalesce = self.coalesce_checkpoint();
        self.checkpoints += 1;
        let sequence_number = self.checkpoints;
        let engine = contracts::canonical::canonical_json_of(&engine)?;
        let coalesce = contracts::canonical::canonical_json_of(&coalesce)?;
        let ctx = &mut self.ctx;
        let source = ctx.graph.nodes[ctx.graph.source()].id.clone();
        ctx.recorder.create_checkpoint(
            &ctx.run_id,
            &NewCheckpoint {
                token_id: &token,
                node_id: &source,
                sequence_number,
                aggregation_state_json: Some(&engine),
                coalesce_state_json: Some(&coalesce),
                upstream_topology_hash: &ctx.topology_hash,
                checkpoint_node_config_hash: &ctx.config_hash,
            },
        )?;
        Ok(())
    }

    fn engine_checkpoint(&self) -> EngineCheckpoint {
        let ctx = &self.ctx;
        let sinks = ctx
            .graph
            .sinks
            .iter()
            .map(|(name, &node)| {
                let written = self.sinks.written[node].as_ref();
                let saved = SinkCheckpoint {
                    bytes: written.map(|w| w.bytes),
                    content_hash: written.map(|w| w.content_hash.clone()),
                    state: ctx.plugins.sinks.get(name).map_or(serde_json::Value::Null, |s| s.checkpoint_state()),
                    last_state: self.sinks.last_state[node].clone(),
                };
                (name.clone(), saved)
            })
            .collect();
        let buffers = self
            .aggregation
            .buffers
            .iter()
            .enumerate()
            .filter_map(|(node, buffer)| {
                let batch = buffer.batch.as_ref()?;
                Some(BufferCheckpoint {
                    node,
                    batch_id: batch.batch_id.clone(),
                    members: buffer.members.iter().map(save_work).collect(),
                })
            })
            .collect();
        let pending_flushes = self
            .aggregation
            .pending
            .iter()
            .map(|f| PendingFlushCheckpoint {
                node: f.node,
                index: f.index,
                batch_id: f.batch.batch_id.clone(),
                state_id: f.state_id.clone(),
                trigger_type: f.trigger_type.as_str().to_owned(),
                job: f.job.clone().unwrap_or(serde_json::Value::Null),
                members: f.members.iter().map(save_work).collect(),
            })
            .collect();
        EngineCheckpoint { format_version: FORMAT_VERSION, rows_read: ctx.rows_read, sinks, buffers, pending_flushes }
    }

    fn coalesce_checkpoint(&self) -> CoalesceCheckpoint {
        let coalesce = &self.coalesce;
        let mut entries: Vec<JoinCheckpoint> = coalesce
            .entries
            .iter()
            .map(|((node, group), entry)| JoinCheckpoint {
                node: *node,
                fork_group: group.clone(),
                arrivals: entry
                    .arrivals
                    .iter()
                    .map(|(branch, a)| ArrivalCheckpoint {
                        branch: branch.clone(),
                        token: a.token.token_id.clone(),
                        row: Value::Object(a.row.clone()).to_json(),
                        state_id: a.state_id.clone(),
                    })
                    .collect(),
            })
            .collect();
        entries.sort_by(|a, b| (a.node, &a.fork_group).cmp(&(b.node, &b.fork_group)));
        let mut resolved: Vec<(usize, ForkGroupId)> = coalesce.resolved.iter().cloned().collect();
        resolved.sort();
        let mut lost: Vec<LostCheckpoint> = coalesce
            .lost
            .iter()
            .map(|((node, group), branches)| LostCheckpoint {
                node: *node,
                fork_group: group.clone(),
                branches: branches.clone(),
            })
            .collect();
        lost.sort_by(|a, b| (a.node, &a.fork_group).cmp(&(b.node, &b.fork_group)));
        CoalesceCheckpoint { format_version: FORMAT_VERSION, entries, resolved, lost }
    }

    /// Reads everything `checkpoint` saved and checks it against this
    /// pipeline, writing nothing: a damaged, incomplete or foreign
    /// checkpoint is refused here, before resume changes anything.
    pub(crate) fn load_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<Restored, EngineError> {
        if checkpoint.upstream_topology_hash != self.ctx.topology_hash {
            return Err(EngineError::Resume("the pipeline's graph differs from the one the run was checkpointed with".into()));
        }
        let engine = parse_engine(checkpoint)?;
        let coalesce = parse_coalesce(checkpoint)?;
        let sinks = self.load_sinks(engine.sinks)?;
        self.check_kept_outputs(&sinks)?;
        let (buffers, pending) = self.load_aggregation(engine.buffers, engine.pending_flushes)?;
        let joins = self.load_coalesce(coalesce)?;
        Ok(Restored {
            rows_read: engine.rows_read,
            sequence_number: checkpoint.sequence_number,
            last_token: checkpoint.token_id.clone(),
            sinks,
            buffers,
            pending,
            joins,
        })
    }

    /// Puts the engine back where the checkpoint left it: rows read, sinks
    /// cut back and continued, buffers, parked flushes and coalesce joins.
    pub(crate) fn apply_checkpoint(&mut self, restored: Restored) -> Result<(), EngineError> {
        let Restored { rows_read, sequence_number, last_token, sinks, buffers, pending, joins } = restored;
        self.ctx.rows_read = rows_read;
        self.checkpoints = sequence_number;
        self.ctx.last_token = Some(last_token);
        for (name, node, sink) in sinks {
            let plugin = self
                .ctx
                .plugins
                .sinks
                .get_mut(&name)
                .ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
            plugin
                .resume(sink.written.as_ref().map_or(0, |w| w.bytes), &sink.state)
                .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
            self.sinks.last_state[node] = sink.last_state;
            self.sinks.written[node] = sink.written;
        }
        for (node, buffer) in buffers {
            self.aggregation.buffers[node] = buffer;
        }
        self.aggregation.pending = pending;
        let JoinsRestored { entries, resolved, lost } = joins;
        self.coalesce.entries = entries;
        self.coalesce.resolved = resolved;
        self.coalesce.lost = lost;
        Ok(())
    }

    fn load_sinks(
        &self,
        mut saved: BTreeMap<String, SinkCheckpoint>,
    ) -> Result<Vec<(String, NodeIdx, SinkRestored)>, EngineError> {
        let mut sinks = Vec::new();
        for (name, &node) in &self.ctx.graph.sinks {
            let sink = saved.remove(name).ok_or_else(|| damaged(format!("it has no state for sink {name}")))?;
            let written = match (sink.bytes, sink.content_hash) {
                (Some(bytes), Some(content_hash)) => Some(Written { bytes, content_hash }),
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => {
                    return Err(damaged(format!("sink {name} has a length without a hash or the reverse")));
                }
            };
            sinks.push((name.clone(), node, SinkRestored { written, state: sink.state, last_state: sink.last_state }));
        }
        if let Some(name) = saved.keys().next() {
            return Err(damaged(format!("it has state for a sink {name} this pipeline does not have")));
        }
        Ok(sinks)
    }

    /// Every sink's output must still hold what the run wrote up to its
    /// checkpointed length, at every recorded write (so a change is located).
    fn check_kept_outputs(&mut self, sinks: &[(String, NodeIdx, SinkRestored)]) -> Result<(), EngineError> {
        let artifacts = self.ctx.recorder.get_artifacts(&self.ctx.run_id)?;
        for (name, node, sink) in sinks {
            let Some(written) = &sink.written else { continue };
            let node_id = &self.ctx.graph.nodes[*node].id;
            let mut kept: Vec<OutputPosition> = artifacts
                .iter()
                .filter(|a| &a.sink_node_id == node_id && a.size_bytes < written.bytes)
                .map(|a| OutputPosition { bytes: a.size_bytes, content_hash: a.content_hash.clone() })
                .collect();
            kept.sort_by_key(|p| p.bytes);
            kept.dedup_by_key(|p| p.bytes);
            kept.push(OutputPosition { bytes: written.bytes, content_hash: written.content_hash.clone() });
            let plugin =
                self.ctx.plugins.sinks.get(name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
            plugin.check_kept_output(&kept).map_err(|error| match error {
                PluginError::Changed(message) => EngineError::Resume(message),
                other @ (PluginError::Config(_)
                | PluginError::Io { .. }
                | PluginError::Input(_)
                | PluginError::Transient(_)
                | PluginError::Contract(_)) => EngineError::Plugin { node: format!("sink {name}"), source: other },
            })?;
        }
        Ok(())
    }

    /// Rebuilds a saved token (loaded from the Landscape) with its row.
    fn load_token_row(&mut self, token: &TokenId, row: serde_json::Value) -> Result<(Token, contracts::Row), EngineError> {
        let token = self.ctx.recorder.get_token(token)?;
        let Value::Object(row) = Value::from_json(row)? else { return Err(damaged("a saved row is not an object")) };
        Ok((token, row))
    }

    fn load_work(&mut self, saved: SavedWork) -> Result<Work, EngineError> {
        if saved.at >= self.ctx.graph.nodes.len() {
            return Err(damaged(format!("a token waits at node {}, which the graph does not have", saved.at)));
        }
        let (token, row) = self.load_token_row(&saved.token, saved.row)?;
        Ok(Work { token, row, hash: saved.hash, at: saved.at, fork_group: saved.fork_group })
    }

    fn aggregation_node(&self, node: usize, index: Option<usize>) -> Result<(), EngineError> {
        match self.ctx.graph.nodes.get(node).map(|n| &n.kind) {
            Some(NodeKind::Aggregation(i)) if index.is_none_or(|index| index == *i) => Ok(()),
            _ => Err(damaged(format!("node {node} holds a batch but is not that aggregation"))),
        }
    }

    /// Buffers (their age starts again) and parked flushes (polled at once).
    fn load_aggregation(
        &mut self,
        buffers: Vec<BufferCheckpoint>,
        pending: Vec<PendingFlushCheckpoint>,
    ) -> Result<(Vec<(NodeIdx, AggregationBuffer)>, Vec<PendingFlush>), EngineError> {
        let now = self.ctx.clock.now();
        let mut restored = Vec::new();
        for buffer in buffers {
            self.aggregation_node(buffer.node, None)?;
            let batch = self.ctx.recorder.get_batch(&buffer.batch_id)?;
            let members = buffer.members.into_iter().map(|m| self.load_work(m)).collect::<Result<Vec<_>, _>>()?;
            restored.push((buffer.node, AggregationBuffer { batch: Some(batch), members, first_arrival: Some(now) }));
        }
        let mut flushes = Vec::new();
        for flush in pending {
            self.aggregation_node(flush.node, Some(flush.index))?;
            let batch = self.ctx.recorder.get_batch(&flush.batch_id)?;
            let members = flush.members.into_iter().map(|m| self.load_work(m)).collect::<Result<Vec<_>, _>>()?;
            let trigger_type: TriggerType = flush.trigger_type.parse().map_err(|_| damaged("an unknown trigger type"))?;
            flushes.push(PendingFlush {
                node: flush.node,
                index: flush.index,
                batch,
                state_id: flush.state_id,
                members,
                trigger_type,
                started: now,
                next_poll: now,
                job: Some(flush.job),
            });
        }
        Ok((restored, flushes))
    }

    /// The coalesce joins; waiting times start again.
    fn load_coalesce(&mut self, saved: CoalesceCheckpoint) -> Result<JoinsRestored, EngineError> {
        let now = self.ctx.clock.now();
        let coalesce_node = |ctx: &crate::runtime::RunContext<'_>, node: usize| {
            matches!(ctx.graph.nodes.get(node).map(|n| &n.kind), Some(NodeKind::Coalesce(_)))
                .then_some(())
                .ok_or_else(|| damaged(format!("node {node} holds a join but does not coalesce")))
        };
        let mut joins = JoinsRestored::default();
        for join in saved.entries {
            coalesce_node(&self.ctx, join.node)?;
            let mut arrivals = IndexMap::new();
            for arrival in join.arrivals {
                let (token, row) = self.load_token_row(&arrival.token, arrival.row)?;
                let parked = self.ctx.recorder.get_node_state(&arrival.state_id)?.status() == contracts::NodeStateStatus::Pending;
                arrivals.insert(arrival.branch, Arrival { token, row, state_id: arrival.state_id, arrived_at: now, parked });
            }
            joins.entries.insert((join.node, join.fork_group), Entry { first_arrival: now, arrivals });
        }
        for (node, group) in saved.resolved {
            coalesce_node(&self.ctx, node)?;
            joins.resolved.insert((node, group));
        }
        for lost in saved.lost {
            coalesce_node(&self.ctx, lost.node)?;
            joins.lost.insert((lost.node, lost.fork_group), lost.branches);
        }
        Ok(joins)
    }
}

/// A checkpoint read back and checked, ready to apply.
pub(crate) struct Restored {
    pub(crate) rows_read: u64,
    sequence_number: u64,
    last_token: TokenId,
    sinks: Vec<(String, NodeIdx, SinkRestored)>,
    buffers: Vec<(NodeIdx, AggregationBuffer)>,
    pending: Vec<PendingFlush>,
    joins: JoinsRestored,
}

struct SinkRestored {
    written: Option<Written>,
    state: serde_json::Value,
    last_state: Option<StateId>,
}

#[derive(Default)]
struct JoinsRestored {
    entries: HashMap<JoinKey, Entry>,
    resolved: HashSet<JoinKey>,
    lost: HashMap<JoinKey, IndexMap<String, String>>,
}
