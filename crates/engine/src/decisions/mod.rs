//! The engine's pure decisions, as plain functions over data: when an
//! aggregation flushes (`trigger`), how a coalesce resolves and merges
//! (`merge`), how long a retry waits (`retry`), and how a verified
//! response differs from its recording (`diff`). They record nothing and
//! read no clock; the executors pass in what they need and record what they
//! get back, so each decision is unit-tested without a Landscape.

pub(crate) mod diff;
pub(crate) mod merge;
pub(crate) mod retry;
pub(crate) mod trigger;
