//! Checkpoints: at every commit point (the end of a chunk, after the sinks'
//! writes are durable) the engine records, in the same transaction as the
//! outcomes it covers, everything a resumed run needs: how many source rows
//! were read, each sink's length and continuation state, the aggregation
//! buffers and parked flushes (with their rows), the coalesce entries, and
//! the topology hash that refuses a changed pipeline.
//!
//! Also the crash hook the crash-test harness drives (`CrashPoint`): the
//! process aborts at a chosen row, sink write or commit.

use contracts::records::Checkpoint;
use contracts::{stable_hash_json, ContentHash, TokenId, Value};
use landscape::recorder::NewCheckpoint;
use landscape::LandscapeError;

use super::processor::{EngineError, Runtime, Work};
use crate::dag::Graph;

/// Where the crash-test hook aborts the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the n-th source row was processed (before its chunk commits).
    AfterRow(u64),
    /// After the n-th durable sink write (before its states are recorded).
    AfterSinkWrite(u64),
    /// Just before the n-th commit.
    BeforeCommit(u64),
    /// Just after the n-th commit.
    AfterCommit(u64),
}

impl CrashPoint {
    /// Parses `row:N`, `sink:N`, `commit:N:before` or `commit:N:after`.
    pub fn parse(text: &str) -> Option<CrashPoint> {
        let parts: Vec<&str> = text.split(':').collect();
        let n = parts.get(1)?.parse().ok()?;
        match (parts[0], parts.get(2).copied()) {
            ("row", None) => Some(CrashPoint::AfterRow(n)),
            ("sink", None) => Some(CrashPoint::AfterSinkWrite(n)),
            ("commit", Some("before")) => Some(CrashPoint::BeforeCommit(n)),
            ("commit", Some("after")) => Some(CrashPoint::AfterCommit(n)),
            _ => None,
        }
    }
}

/// The hash of the graph's shape: node ids (which embed each node's
/// configuration) and edges. A resumed run must have the same.
pub(crate) fn topology_hash(graph: &Graph) -> Result<ContentHash, EngineError> {
    let nodes: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    let edges: Vec<serde_json::Value> = graph
        .edges
        .iter()
        .map(|e| serde_json::json!([graph.nodes[e.from].id.as_str(), graph.nodes[e.to].id.as_str(), e.label]))
        .collect();
    Ok(stable_hash_json(&serde_json::json!({"nodes": nodes, "edges": edges})).map_err(LandscapeError::from)?)
}

/// A waiting token and its row, as saved in a checkpoint.
pub(crate) fn token_row_json(token: &contracts::records::Token, row: &contracts::Row) -> serde_json::Value {
    serde_json::json!({"token": token.token_id.as_str(), "row": Value::Object(row.clone()).to_json()})
}

/// A token with its row where it waits, as saved in a checkpoint.
pub(crate) fn work_json(work: &Work) -> serde_json::Value {
    let mut json = token_row_json(&work.token, &work.row);
    json["hash"] = serde_json::json!(work.hash.as_str());
    json["at"] = serde_json::json!(work.at);
    json["fork_group"] = serde_json::json!(work.fork_group.as_ref().map(contracts::ForkGroupId::as_str));
    json
}

fn corrupt(what: &str) -> EngineError {
    EngineError::Resume(format!("the checkpoint is damaged: {what}"))
}

impl Runtime<'_> {
    /// Rebuilds a saved token (loaded from the Landscape) and its row.
    pub(crate) fn token_row_from_json(
        &mut self,
        json: &serde_json::Value,
    ) -> Result<(contracts::records::Token, contracts::Row), EngineError> {
        let token_id = TokenId::parse(json["token"].as_str().ok_or_else(|| corrupt("token"))?).map_err(LandscapeError::from)?;
        let token = self.recorder.get_token(&token_id)?;
        let Value::Object(row) = Value::from_json(json["row"].clone()).map_err(LandscapeError::from)? else {
            return Err(corrupt("row"));
        };
        Ok((token, row))
    }

    /// Rebuilds a saved token with its row, hash, place and fork.
    pub(crate) fn work_from_json(&mut self, json: &serde_json::Value) -> Result<Work, EngineError> {
        let (token, row) = self.token_row_from_json(json)?;
        let hash = ContentHash::parse(json["hash"].as_str().ok_or_else(|| corrupt("hash"))?).map_err(LandscapeError::from)?;
        let at = json["at"].as_u64().and_then(|n| usize::try_from(n).ok()).filter(|n| *n < self.graph.nodes.len());
        let fork_group = match json["fork_group"].as_str() {
            Some(group) => Some(contracts::ForkGroupId::parse(group).map_err(LandscapeError::from)?),
            None => None,
        };
        Ok(Work { token, row, hash, at: at.ok_or_else(|| corrupt("node"))?, fork_group })
    }

    /// Records the checkpoint of this commit point (inside the open unit).
    pub(crate) fn write_checkpoint(&mut self) -> Result<(), EngineError> {
        if !self.loaded.settings.checkpoint.enabled {
            return Ok(());
        }
        let Some(token) = self.last_token.clone() else { return Ok(()) };
        let mut sinks = serde_json::Map::new();
        for (name, &node) in &self.graph.sinks {
            let state = self.plugins.sinks.get(name).map_or(serde_json::Value::Null, |s| s.checkpoint_state());
            sinks.insert(
                name.clone(),
                serde_json::json!({
                    "bytes": self.sink_bytes[node],
                    "state": state,
                    "last_state": self.last_sink_state[node].as_ref().map(contracts::StateId::as_str),
                }),
            );
        }
        let engine = serde_json::json!({
            "rows_read": self.rows_read,
            "sinks": sinks,
            "aggregation": self.aggregation_snapshot(),
        });
        let engine = contracts::canonical_json(&engine).map_err(LandscapeError::from)?;
        let coalesce = contracts::canonical_json(&self.coalesce_snapshot()).map_err(LandscapeError::from)?;
        self.checkpoints += 1;
        let source = self.graph.nodes[self.graph.source()].id.clone();
        self.recorder.create_checkpoint(
            &self.run_id,
            &NewCheckpoint {
                token_id: &token,
                node_id: &source,
                sequence_number: self.checkpoints,
                aggregation_state_json: Some(&engine),
                coalesce_state_json: Some(&coalesce),
                upstream_topology_hash: &self.topology_hash,
                checkpoint_node_config_hash: &self.config_hash,
            },
        )?;
        Ok(())
    }

    /// Puts the engine back where `checkpoint` left it: rows read, sinks cut
    /// back and continued, buffers, parked flushes and coalesce entries.
    pub(crate) fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), EngineError> {
        if checkpoint.upstream_topology_hash != self.topology_hash {
            return Err(EngineError::Resume("the pipeline's graph differs from the one the run was checkpointed with".into()));
        }
        let engine: serde_json::Value = serde_json::from_str(checkpoint.aggregation_state_json.as_deref().unwrap_or("null"))
            .map_err(|e| corrupt(&e.to_string()))?;
        let coalesce: serde_json::Value = serde_json::from_str(checkpoint.coalesce_state_json.as_deref().unwrap_or("null"))
            .map_err(|e| corrupt(&e.to_string()))?;
        self.rows_read = engine["rows_read"].as_u64().ok_or_else(|| corrupt("rows_read"))?;
        self.checkpoints = checkpoint.sequence_number;
        self.last_token = Some(checkpoint.token_id.clone());
        for (name, &node) in &self.graph.sinks.clone() {
            let saved = &engine["sinks"][name];
            let bytes = saved["bytes"].as_u64();
            if let Some(last) = saved["last_state"].as_str() {
                self.last_sink_state[node] = Some(contracts::StateId::parse(last).map_err(LandscapeError::from)?);
            }
            self.sink_bytes[node] = bytes;
            let plugin =
                self.plugins.sinks.get_mut(name).ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
            plugin
                .resume(bytes.unwrap_or(0), &saved["state"])
                .map_err(|source| EngineError::Plugin { node: format!("sink {name}"), source })?;
        }
        self.restore_aggregation(&engine["aggregation"])?;
        self.restore_coalesce(&coalesce)?;
        Ok(())
    }
}
