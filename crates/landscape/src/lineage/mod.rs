//! Lineage: everything the Landscape knows about one token, back to every
//! source row it came from — what `elspeth explain` shows and what an auditor
//! reconstructs an output from.
//!
//! Loading is bounded: one query per generation of ancestors while walking
//! `token_parents`, then one query per record type for the whole set (chunked
//! `IN` lists), never a round trip per node or per state. Broken lineage (a
//! token with an origin group but no parents, a parent that does not exist or
//! belongs to another run or row) is an integrity error, never a partial
//! answer.

mod json;
mod load;

use contracts::records::{
    Artifact, Batch, BatchMember, Call, Edge, Node, NodeState, RoutingEvent, Row, Token, TokenOutcome, TokenParent,
    TransformError, ValidationError,
};
use contracts::{RowId, RunId, TokenId};

pub(crate) use load::load_payload;
pub use load::{explain_token, row_outputs, RowSelector};

/// The complete history of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub run_id: RunId,
    pub target: TokenId,
    /// The target first, then its ancestors, nearest generation first; each
    /// token once.
    pub tokens: Vec<TokenHistory>,
    /// Every source row the tokens came from, by row index.
    pub rows: Vec<SourceRow>,
    /// The run's nodes and edges, to name what the states and routing events
    /// refer to.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Lineage {
    pub fn target(&self) -> &TokenHistory {
        &self.tokens[0]
    }

    pub fn node(&self, node_id: &contracts::NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.node_id == node_id)
    }

    pub fn edge(&self, edge_id: &contracts::EdgeId) -> Option<&Edge> {
        self.edges.iter().find(|e| &e.edge_id == edge_id)
    }

    pub fn token(&self, token_id: &TokenId) -> Option<&TokenHistory> {
        self.tokens.iter().find(|t| &t.token.token_id == token_id)
    }

    pub fn row(&self, row_id: &RowId) -> Option<&SourceRow> {
        self.rows.iter().find(|r| &r.row.row_id == row_id)
    }
}

/// One token: where it came from and every node it visited.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenHistory {
    pub token: Token,
    /// Its parent links, by ordinal (empty for a source row's first token).
    pub parents: Vec<TokenParent>,
    /// Other tokens of the same fork or expand group.
    pub siblings: Vec<TokenId>,
    /// Node visits by (step, attempt).
    pub states: Vec<StateHistory>,
    /// Outcomes, the terminal one last.
    pub outcomes: Vec<TokenOutcome>,
    /// Batches the token was buffered into, with the flush that consumed it.
    pub batches: Vec<BatchHistory>,
    pub transform_errors: Vec<TransformError>,
}

impl TokenHistory {
    pub fn terminal_outcome(&self) -> Option<&TokenOutcome> {
        self.outcomes.iter().find(|o| o.detail.outcome().is_terminal())
    }
}

/// One node visit with what it decided and called.
#[derive(Debug, Clone, PartialEq)]
pub struct StateHistory {
    pub state: NodeState,
    pub routing_events: Vec<RoutingEvent>,
    pub calls: Vec<Call>,
    /// For a sink visit: the artifact as it was right after this row was
    /// written (its output hash commits to that artifact's path and hash).
    pub artifact: Option<Artifact>,
}

/// A batch membership and the flush of that batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchHistory {
    pub member: BatchMember,
    pub batch: Batch,
    /// The aggregation node state of the flush, once the batch flushed.
    pub flush: Option<StateHistory>,
}

/// A source row and, when still stored, its data.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub row: Row,
    pub payload: Payload,
    pub validation_errors: Vec<ValidationError>,
}

/// What the payload store can say about a source row's data.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The stored bytes, re-hashed on read, as JSON.
    Available(serde_json::Value),
    /// The row referenced a blob that retention has deleted; the hash remains.
    Purged,
    /// The row was recorded without a payload reference.
    NotStored,
    /// No payload store was given to read from.
    StoreNotGiven,
}
