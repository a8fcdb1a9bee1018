//! Node and edge registration.

use diesel::prelude::*;

use contracts::records::{Edge, Node};
use contracts::{canonical_json, ContentHash, Determinism, EdgeId, NodeId, NodeType, RoutingMode, RunId};

use super::{ensure_one, i32_of, now, Recorder};
use crate::error::Result;
use crate::schema::{edges, nodes};

/// A node to register. `config` must already have its secrets fingerprinted.
#[derive(Debug, Clone)]
pub struct NewNode<'a> {
    pub node_id: &'a NodeId,
    pub plugin_name: &'a str,
    pub node_type: NodeType,
    pub plugin_version: &'a str,
    pub determinism: Determinism,
    pub config: &'a serde_json::Value,
    pub sequence_in_pipeline: Option<u32>,
    pub schema_mode: Option<&'a str>,
    /// Declared schema fields (`[{"name","type","required"}]`), if any.
    pub schema_fields: Option<&'a serde_json::Value>,
}

impl Recorder {
    pub fn register_node(&mut self, run_id: &RunId, node: &NewNode<'_>) -> Result<Node> {
        let config_json = canonical_json(node.config)?;
        let config_hash = ContentHash::of_bytes(config_json.as_bytes());
        let schema_fields_json = node.schema_fields.map(canonical_json).transpose()?;
        let sequence = node.sequence_in_pipeline.map(|s| i32_of("sequence_in_pipeline", s)).transpose()?;
        let (at, naive) = now();
        let affected = diesel::insert_into(nodes::table)
            .values((
                nodes::node_id.eq(node.node_id.as_str()),
                nodes::run_id.eq(run_id.as_str()),
                nodes::plugin_name.eq(node.plugin_name),
                nodes::node_type.eq(node.node_type.as_str()),
                nodes::plugin_version.eq(node.plugin_version),
                nodes::determinism.eq(node.determinism.as_str()),
                nodes::config_hash.eq(config_hash.as_str()),
                nodes::config_json.eq(&config_json),
                nodes::sequence_in_pipeline.eq(sequence),
                nodes::registered_at.eq(naive),
                nodes::schema_mode.eq(node.schema_mode),
                nodes::schema_fields_json.eq(schema_fields_json.as_deref()),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of node {}", node.node_id))?;
        Ok(Node {
            node_id: node.node_id.clone(),
            run_id: run_id.clone(),
            plugin_name: node.plugin_name.to_owned(),
            node_type: node.node_type,
            plugin_version: node.plugin_version.to_owned(),
            determinism: node.determinism,
            config_hash,
            config_json,
            schema_hash: None,
            sequence_in_pipeline: node.sequence_in_pipeline,
            registered_at: at,
            schema_mode: node.schema_mode.map(str::to_owned),
            schema_fields_json,
            input_contract_json: None,
            output_contract_json: None,
        })
    }

    pub fn register_edge(&mut self, run_id: &RunId, from: &NodeId, to: &NodeId, label: &str, mode: RoutingMode) -> Result<Edge> {
        let edge_id = EdgeId::new();
        let (at, naive) = now();
        let affected = diesel::insert_into(edges::table)
            .values((
                edges::edge_id.eq(edge_id.as_str()),
                edges::run_id.eq(run_id.as_str()),
                edges::from_node_id.eq(from.as_str()),
                edges::to_node_id.eq(to.as_str()),
                edges::label.eq(label),
                edges::default_mode.eq(mode.as_str()),
                edges::created_at.eq(naive),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of edge {from} -[{label}]-> {to}"))?;
        Ok(Edge {
            edge_id,
            run_id: run_id.clone(),
            from_node_id: from.clone(),
            to_node_id: to.clone(),
            label: label.to_owned(),
            default_mode: mode,
            created_at: at,
        })
    }
}
