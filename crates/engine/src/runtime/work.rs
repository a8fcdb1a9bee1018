//! What moves between the processor and the executors: a token on its way
//! (`Work`), a token waiting for its sink write (`Delivery`), and what one
//! step of an executor sent on (`Emitted`).

use std::collections::VecDeque;

use contracts::records::Token;
use contracts::{ContentHash, ForkGroupId, Row};

use crate::dag::NodeIdx;

/// A token on its way through the graph, with its current data and hash.
pub(crate) struct Work {
    pub(crate) token: Token,
    pub(crate) row: Row,
    pub(crate) hash: ContentHash,
    pub(crate) at: NodeIdx,
    /// The fork this token's branch came from (inherited through branch
    /// transforms and expansions): what a coalesce joins on.
    pub(crate) fork_group: Option<ForkGroupId>,
}

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

/// What executor steps sent on: tokens for the next node (a FIFO queue the
/// processor drains) and rows for sinks, in the order they were emitted.
#[derive(Default)]
pub(crate) struct Emitted {
    pub(crate) queue: VecDeque<Work>,
    pub(crate) deliveries: Vec<(NodeIdx, Delivery)>,
}
