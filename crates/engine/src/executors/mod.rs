//! The executors: one per kind of node. Each takes a token (or a batch, or a
//! chunk of deliveries), records its node states through the shared
//! [`RunContext`](crate::runtime::RunContext) and sends what comes out on
//! through an [`Emitted`](crate::runtime::Emitted). No executor imports
//! another executor (but the pool, which runs the transform executor's
//! attempts on worker threads), the processor or the orchestrator: the
//! processor moves tokens between them.

pub(crate) mod aggregation;
pub(crate) mod coalesce;
pub(crate) mod gate;
pub(crate) mod pool;
pub(crate) mod sink;
pub(crate) mod transform;
