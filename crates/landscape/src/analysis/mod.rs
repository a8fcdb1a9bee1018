//! Analysis: the read-only questions an auditor or an assistant asks of a
//! run — how many rows went where, which nodes were slow, what failed and
//! why, which calls were made — answered with aggregate SQL and paged lists.
//!
//! Every answer is bounded whatever the run's size: aggregates come back
//! grouped (one entry per node, outcome, sink or error kind), lists are
//! paged with at most [`MAX_PAGE`] entries, and no answer issues a query per
//! row. `elspeth mcp` and `elspeth serve` read the Landscape through this
//! module and [`crate::lineage`] only.

mod calls;
mod errors;
mod select;
mod summary;

use serde::Serialize;

pub use calls::{CallUsage, CallsFilter};
pub use errors::{ErrorGroup, ErrorKind, FailureContext};
pub use select::{select, SelectError, SelectResult, SELECT_MAX_ROWS};
pub use summary::{EdgeCount, NodeStats, OutcomeCount, RunCounts, StatusCount};

/// The most entries one page holds.
pub const MAX_PAGE: u64 = 500;

/// Which slice of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

impl Page {
    /// A page of at most `limit` entries (clamped to 1..=[`MAX_PAGE`]) from `offset`.
    pub fn new(offset: u64, limit: u64) -> Page {
        Page { offset, limit: limit.clamp(1, MAX_PAGE) }
    }

    fn sql(self) -> (i64, i64) {
        (i64::try_from(self.offset).unwrap_or(i64::MAX), i64::try_from(self.limit).unwrap_or(1))
    }
}

impl Default for Page {
    fn default() -> Page {
        Page::new(0, 50)
    }
}

/// One page of a list and the list's total length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub offset: u64,
    pub limit: u64,
    pub total: u64,
}

impl<T> Paged<T> {
    fn new(items: Vec<T>, page: Page, total: i64) -> Paged<T> {
        Paged { items, offset: page.offset, limit: page.limit, total: u64::try_from(total).unwrap_or(0) }
    }

    /// The same page with each entry converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged { items: self.items.into_iter().map(f).collect(), offset: self.offset, limit: self.limit, total: self.total }
    }
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The name a node has in the settings, read from its id
/// (`config_gate_amount_threshold_ae120a798879` → `amount_threshold`,
/// `sink_high_values_bc694c699429` → `high_values`); the id itself when it
/// does not have that shape.
pub fn node_name(node_id: &str) -> &str {
    const PREFIXES: &[&str] = &["config_gate_", "aggregation_", "transform_", "coalesce_", "source_", "sink_", "gate_"];
    let Some(rest) = PREFIXES.iter().find_map(|prefix| node_id.strip_prefix(prefix)) else { return node_id };
    match rest.rsplit_once('_') {
        Some((name, hash)) if !name.is_empty() && hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        Some(_) | None => node_id,
    }
}

#[cfg(test)]
mod tests {
    use super::node_name;

    #[test]
    fn node_names_are_read_from_ids() {
        assert_eq!(node_name("config_gate_amount_threshold_ae120a798879"), "amount_threshold");
        assert_eq!(node_name("sink_high_values_bc694c699429"), "high_values");
        assert_eq!(node_name("source_csv_217e3a51b940"), "csv");
        assert_eq!(node_name("coalesce_merge_results_cce6aaebf797"), "merge_results");
        assert_eq!(node_name("transform_x_notahash"), "transform_x_notahash");
        assert_eq!(node_name("custom"), "custom");
    }
}
