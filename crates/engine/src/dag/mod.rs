//! The execution graph: nodes and labelled edges built from named
//! connections, validated (wiring, cycles, reachability, schema contracts),
//! with deterministic node ids and the reference's step numbering.

mod build;
mod order;

use indexmap::IndexMap;

use contracts::schema::SchemaConfig;
use contracts::{NodeId, NodeType, RoutingMode};

pub use build::{build, PipelinePlugins};

/// Index of a node in [`Graph::nodes`].
pub type NodeIdx = usize;

/// What a node is, pointing back at its settings entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Transform(usize),
    Gate(usize),
    Aggregation(usize),
    Coalesce(usize),
    Sink(String),
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub struct GraphNode {
    pub id: NodeId,
    /// The user's name (sink key, transform name, …; the plugin name for the source).
    pub name: String,
    pub kind: NodeKind,
    pub node_type: NodeType,
    pub plugin_name: String,
    /// The configuration recorded for the node (options, or the structural
    /// settings of gates, aggregations and coalesces).
    pub config: serde_json::Value,
    pub schema: SchemaConfig,
    /// Audit step: source 0, processing nodes 1.., sinks last.
    pub step: u32,
}

/// A labelled edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEdge {
    pub from: NodeIdx,
    pub to: NodeIdx,
    pub label: String,
    pub mode: RoutingMode,
}

/// Where a gate's route label leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Sink(NodeIdx),
    Node(NodeIdx),
    /// Fork into the gate's `fork_to` branches.
    Fork,
}

/// Where a fork branch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchTarget {
    /// Straight to a coalesce (identity branch).
    Coalesce(NodeIdx),
    /// Through transforms, starting at this node, to a coalesce.
    Node(NodeIdx),
    Sink(NodeIdx),
}

/// A validated execution graph.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Processing nodes (transforms, gates, aggregations, coalesces) in topological order.
    pub pipeline: Vec<NodeIdx>,
    /// The node after each node on its `continue` path (None: terminal).
    pub next: Vec<Option<NodeIdx>>,
    /// The sink a node's `on_success` leads to.
    pub terminal_sink: Vec<Option<NodeIdx>>,
    /// Per gate node: route label → target.
    pub routes: Vec<IndexMap<String, RouteTarget>>,
    /// Per gate node: fork branch → target.
    pub fork_branches: Vec<IndexMap<String, BranchTarget>>,
    /// Per node: the coalesce (and branch) a token on a fork branch arrives at.
    pub branch_coalesce: IndexMap<String, NodeIdx>,
    /// Sink node indices by name.
    pub sinks: IndexMap<String, NodeIdx>,
    /// Quarantine sink for invalid source rows (None: discard).
    pub quarantine_sink: Option<NodeIdx>,
    /// Per transform/aggregation node: its error sink (None: discard).
    pub error_sink: Vec<Option<NodeIdx>>,
}

impl Graph {
    pub fn source(&self) -> NodeIdx {
        0
    }

    pub fn edge_index(&self, from: NodeIdx, label: &str) -> Option<usize> {
        self.edges.iter().position(|e| e.from == from && e.label == label)
    }

    /// Human-readable rendering for `elspeth validate`.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("nodes (step, type, id):\n");
        let mut ordered: Vec<&GraphNode> = self.nodes.iter().collect();
        ordered.sort_by_key(|n| n.step);
        for node in ordered {
            let _ = writeln!(out, "  {:>3}  {:<11} {}", node.step, node.node_type.as_str(), node.id);
        }
        out.push_str("edges:\n");
        for edge in &self.edges {
            let _ = writeln!(
                out,
                "  {} -[{} {}]-> {}",
                self.nodes[edge.from].name,
                edge.label,
                edge.mode.as_str(),
                self.nodes[edge.to].name
            );
        }
        out
    }
}
