//! What a run did, counted: rows, tokens, node visits per status, terminal
//! outcomes per sink, errors, calls, batches; per-node timing; per-edge
//! routing counts; and the paged lists of rows, tokens, node states,
//! operations and recent runs.

use diesel::dsl::{count, count_star, max, min, sum};
use diesel::prelude::*;
use serde::Serialize;

use contracts::records::{Edge, Node, NodeState, Operation, Row, Run, Token};
use contracts::{NodeId, RowId, RunId, Timestamp};

use super::{Page, Paged};
use crate::error::Result;
use crate::loaders;
use crate::models::{NodeStateRow, OperationRow, RowRow, RunRow, TokenRow};
use crate::schema::{
    batches, calls, edges, node_states, operations, routing_events, rows, runs, token_outcomes, tokens, transform_errors,
    validation_errors,
};
use crate::Recorder;

/// A status (or outcome) and how many records have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub status: String,
    pub count: u64,
}

/// Outcomes of tokens, per outcome and sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeCount {
    pub outcome: String,
    pub sink: Option<String>,
    pub terminal: bool,
    pub count: u64,
}

/// Everything a run recorded, counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCounts {
    pub rows: u64,
    pub tokens: u64,
    pub node_states: Vec<StatusCount>,
    pub outcomes: Vec<OutcomeCount>,
    pub validation_errors: u64,
    pub transform_errors: u64,
    pub calls: Vec<StatusCount>,
    pub batches: Vec<StatusCount>,
    pub fork_groups: u64,
    pub join_groups: u64,
    pub expand_groups: u64,
}

/// One node with its visits and their timing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStats {
    #[serde(skip)]
    pub node: Node,
    pub node_id: String,
    pub plugin_name: String,
    pub node_type: String,
    pub determinism: String,
    pub visits: u64,
    pub states: Vec<StatusCount>,
    /// Sum, mean, least and greatest visit duration (ms) over visits that ended.
    pub total_ms: f64,
    pub mean_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// An edge and how many routing events (route, fork, divert) took it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeCount {
    #[serde(skip)]
    pub edge: Edge,
    pub edge_id: String,
    pub from_node_id: String,
    pub to_node_id: String,
    pub label: String,
    pub default_mode: String,
    pub routed: u64,
}

fn status_counts(found: Vec<(String, i64)>) -> Vec<StatusCount> {
    found.into_iter().map(|(status, n)| StatusCount { status, count: super::count(n) }).collect()
}

impl Recorder {
    /// Everything `run_id` recorded, counted (one grouped query per table).
    pub fn run_counts(&mut self, run_id: &RunId) -> Result<RunCounts> {
        let run = run_id.as_str();
        let conn = self.conn()?;
        let rows: i64 = rows::table.filter(rows::run_id.eq(run)).count().get_result(conn)?;
        let tokens: i64 = tokens::table.filter(tokens::run_id.eq(run)).count().get_result(conn)?;
        let node_states: Vec<(String, i64)> = node_states::table
            .filter(node_states::run_id.eq(run))
            .group_by(node_states::status)
            .select((node_states::status, count_star()))
            .order(node_states::status.asc())
            .load(conn)?;
        let outcomes: Vec<(String, Option<String>, i32, i64)> = token_outcomes::table
            .filter(token_outcomes::run_id.eq(run))
            .group_by((token_outcomes::outcome, token_outcomes::sink_name, token_outcomes::is_terminal))
            .select((token_outcomes::outcome, token_outcomes::sink_name, token_outcomes::is_terminal, count_star()))
            .order((token_outcomes::is_terminal.desc(), token_outcomes::outcome.asc(), token_outcomes::sink_name.asc()))
            .load(conn)?;
        let validation: i64 = validation_errors::table.filter(validation_errors::run_id.eq(run)).count().get_result(conn)?;
        let transform: i64 = transform_errors::table.filter(transform_errors::run_id.eq(run)).count().get_result(conn)?;
        let state_calls: Vec<(String, i64)> = calls::table
            .inner_join(node_states::table.on(node_states::state_id.nullable().eq(calls::state_id)))
            .filter(node_states::run_id.eq(run))
            .group_by(calls::status)
            .select((calls::status, count_star()))
            .load(conn)?;
        let operation_calls: Vec<(String, i64)> = calls::table
            .inner_join(operations::table.on(operations::operation_id.nullable().eq(calls::operation_id)))
            .filter(operations::run_id.eq(run))
            .group_by(calls::status)
            .select((calls::status, count_star()))
            .load(conn)?;
        let batches: Vec<(String, i64)> = batches::table
            .filter(batches::run_id.eq(run))
            .group_by(batches::status)
            .select((batches::status, count_star()))
            .order(batches::status.asc())
            .load(conn)?;
        let groups: (i64, i64, i64) = tokens::table
            .filter(tokens::run_id.eq(run))
            .select((
                count(tokens::fork_group_id).aggregate_distinct(),
                count(tokens::join_group_id).aggregate_distinct(),
                count(tokens::expand_group_id).aggregate_distinct(),
            ))
            .get_result(conn)?;
        let mut calls: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for (status, n) in state_calls.into_iter().chain(operation_calls) {
            *calls.entry(status).or_insert(0) += n;
        }
        Ok(RunCounts {
            rows: super::count(rows),
            tokens: super::count(tokens),
            node_states: status_counts(node_states),
            outcomes: outcomes
                .into_iter()
                .map(|(outcome, sink, terminal, n)| OutcomeCount {
                    outcome,
                    sink,
                    terminal: terminal == 1,
                    count: super::count(n),
                })
                .collect(),
            validation_errors: super::count(validation),
            transform_errors: super::count(transform),
            calls: status_counts(calls.into_iter().collect()),
            batches: status_counts(batches),
            fork_groups: super::count(groups.0),
            join_groups: super::count(groups.1),
            expand_groups: super::count(groups.2),
        })
    }

    /// Each node of the run (in pipeline order) with its visits per status
    /// and their durations.
    pub fn node_stats(&mut self, run_id: &RunId) -> Result<Vec<NodeStats>> {
        let nodes = self.get_nodes(run_id)?;
        let found: Vec<(String, String, i64, Option<f64>, Option<f64>, Option<f64>)> = node_states::table
            .filter(node_states::run_id.eq(run_id.as_str()))
            .group_by((node_states::node_id, node_states::status))
            .select((
                node_states::node_id,
                node_states::status,
                count_star(),
                sum(node_states::duration_ms),
                min(node_states::duration_ms),
                max(node_states::duration_ms),
            ))
            .load(self.conn()?)?;
        Ok(nodes
            .into_iter()
            .map(|node| {
                let mine: Vec<_> = found.iter().filter(|f| f.0 == node.node_id.as_str()).collect();
                let visits: i64 = mine.iter().map(|f| f.2).sum();
                let total_ms: f64 = mine.iter().filter_map(|f| f.3).sum();
                let timed: i64 = mine.iter().filter(|f| f.3.is_some()).map(|f| f.2).sum();
                let min_ms = mine.iter().filter_map(|f| f.4).reduce(f64::min);
                let max_ms = mine.iter().filter_map(|f| f.5).reduce(f64::max);
                let mut states: Vec<StatusCount> =
                    mine.iter().map(|f| StatusCount { status: f.1.clone(), count: super::count(f.2) }).collect();
                states.sort_by(|a, b| a.status.cmp(&b.status));
                NodeStats {
                    node_id: node.node_id.as_str().to_owned(),
                    plugin_name: node.plugin_name.clone(),
                    node_type: node.node_type.as_str().to_owned(),
                    determinism: node.determinism.as_str().to_owned(),
                    node,
                    visits: super::count(visits),
                    states,
                    total_ms,
                    mean_ms: (timed > 0).then(|| total_ms / timed as f64),
                    min_ms,
                    max_ms,
                }
            })
            .collect())
    }

    /// Each edge of the run with how many routing events took it.
    pub fn edge_counts(&mut self, run_id: &RunId) -> Result<Vec<EdgeCount>> {
        let edges = self.get_edges(run_id)?;
        let found: Vec<(String, i64)> = routing_events::table
            .inner_join(edges::table.on(edges::edge_id.eq(routing_events::edge_id)))
            .filter(edges::run_id.eq(run_id.as_str()))
            .group_by(routing_events::edge_id)
            .select((routing_events::edge_id, count_star()))
            .load(self.conn()?)?;
        Ok(edges
            .into_iter()
            .map(|edge| {
                let routed = found.iter().find(|(id, _)| id == edge.edge_id.as_str()).map_or(0, |(_, n)| super::count(*n));
                EdgeCount {
                    edge_id: edge.edge_id.as_str().to_owned(),
                    from_node_id: edge.from_node_id.as_str().to_owned(),
                    to_node_id: edge.to_node_id.as_str().to_owned(),
                    label: edge.label.clone(),
                    default_mode: edge.default_mode.as_str().to_owned(),
                    edge,
                    routed,
                }
            })
            .collect())
    }

    /// Source rows by index. Row indexes run from 0 without gaps, so the
    /// page starts at row index `offset`, found through the (run, index)
    /// key instead of skipped over: any page costs the same.
    pub fn rows_page(&mut self, run_id: &RunId, page: Page) -> Result<Paged<Row>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let total: i64 = rows::table.filter(rows::run_id.eq(run_id.as_str())).count().get_result(conn)?;
        let found: Vec<RowRow> = rows::table
            .filter(rows::run_id.eq(run_id.as_str()))
            .filter(rows::row_index.ge(offset))
            .order(rows::row_index.asc())
            .limit(limit)
            .select(RowRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::source_row).collect::<Result<_>>()?, page, total))
    }

    /// Tokens of a run, or of one of its rows, in creation order.
    pub fn tokens_page(&mut self, run_id: &RunId, row: Option<&RowId>, page: Page) -> Result<Paged<Token>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let mut total = tokens::table.filter(tokens::run_id.eq(run_id.as_str())).into_boxed();
        let mut query = tokens::table.filter(tokens::run_id.eq(run_id.as_str())).into_boxed();
        if let Some(row) = row {
            total = total.filter(tokens::row_id.eq(row.as_str()));
            query = query.filter(tokens::row_id.eq(row.as_str()));
        }
        let total: i64 = total.count().get_result(conn)?;
        let found: Vec<TokenRow> = query
            .order((tokens::created_at.asc(), tokens::token_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(TokenRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::token).collect::<Result<_>>()?, page, total))
    }

    /// Node states of a run, optionally of one node and/or one status, in
    /// the order they started.
    pub fn node_states_page(
        &mut self,
        run_id: &RunId,
        node: Option<&NodeId>,
        status: Option<contracts::NodeStateStatus>,
        page: Page,
    ) -> Result<Paged<NodeState>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let mut total = node_states::table.filter(node_states::run_id.eq(run_id.as_str())).into_boxed();
        let mut query = node_states::table.filter(node_states::run_id.eq(run_id.as_str())).into_boxed();
        if let Some(node) = node {
            total = total.filter(node_states::node_id.eq(node.as_str()));
            query = query.filter(node_states::node_id.eq(node.as_str()));
        }
        if let Some(status) = status {
            total = total.filter(node_states::status.eq(status.as_str()));
            query = query.filter(node_states::status.eq(status.as_str()));
        }
        let total: i64 = total.count().get_result(conn)?;
        let found: Vec<NodeStateRow> = query
            .order((node_states::started_at.asc(), node_states::state_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(NodeStateRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::node_state).collect::<Result<_>>()?, page, total))
    }

    /// The source and sink operations of a run, in the order they started.
    pub fn operations_page(&mut self, run_id: &RunId, page: Page) -> Result<Paged<Operation>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let total: i64 = operations::table.filter(operations::run_id.eq(run_id.as_str())).count().get_result(conn)?;
        let found: Vec<OperationRow> = operations::table
            .filter(operations::run_id.eq(run_id.as_str()))
            .order((operations::started_at.asc(), operations::operation_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(OperationRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::operation).collect::<Result<_>>()?, page, total))
    }

    /// Runs started at or after `since`, newest first, at most [`super::MAX_PAGE`].
    pub fn runs_since(&mut self, since: Timestamp) -> Result<Vec<Run>> {
        let found: Vec<RunRow> = runs::table
            .filter(runs::started_at.ge(since.naive_utc()))
            .order((runs::started_at.desc(), runs::run_id.desc()))
            .limit(i64::try_from(super::MAX_PAGE).unwrap_or(500))
            .select(RunRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::run).collect()
    }

    /// Runs, newest first, optionally of one recorded status.
    pub fn runs_page(&mut self, status: Option<contracts::RunStatus>, page: Page) -> Result<Paged<Run>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let mut total = runs::table.into_boxed();
        let mut query = runs::table.into_boxed();
        if let Some(status) = status {
            total = total.filter(runs::status.eq(status.as_str()));
            query = query.filter(runs::status.eq(status.as_str()));
        }
        let total: i64 = total.count().get_result(conn)?;
        let found: Vec<RunRow> = query
            .order((runs::started_at.desc(), runs::run_id.desc()))
            .offset(offset)
            .limit(limit)
            .select(RunRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::run).collect::<Result<_>>()?, page, total))
    }
}

impl Recorder {
    /// The Landscape's tables with columns and keys (see [`crate::introspect`]).
    pub fn describe_tables(&mut self) -> Result<Vec<crate::introspect::TableInfo>> {
        crate::introspect::tables(self.conn()?)
    }
}

impl Recorder {
    /// One source row by its id.
    pub fn get_row(&mut self, row_id: &RowId) -> Result<Row> {
        let found: Vec<RowRow> =
            rows::table.filter(rows::row_id.eq(row_id.as_str())).limit(2).select(RowRow::as_select()).load(self.conn()?)?;
        match found.len() {
            1 => loaders::source_row(
                found.into_iter().next().ok_or_else(|| crate::LandscapeError::NotFound(format!("row {row_id}")))?,
            ),
            _ => Err(crate::LandscapeError::NotFound(format!("row {row_id}"))),
        }
    }
}

impl Recorder {
    /// Aggregation batches of a run in the order they were created, each
    /// with its number of members (one grouped query for the page).
    pub fn batches_page(&mut self, run_id: &RunId, page: Page) -> Result<Paged<(contracts::records::Batch, u64)>> {
        use crate::models::BatchRow;
        use crate::schema::batch_members;
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let total: i64 = batches::table.filter(batches::run_id.eq(run_id.as_str())).count().get_result(conn)?;
        let found: Vec<BatchRow> = batches::table
            .filter(batches::run_id.eq(run_id.as_str()))
            .order((batches::created_at.asc(), batches::batch_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(BatchRow::as_select())
            .load(conn)?;
        let ids: Vec<&str> = found.iter().map(|b| b.batch_id.as_str()).collect();
        let members: Vec<(String, i64)> = batch_members::table
            .filter(batch_members::batch_id.eq_any(&ids))
            .group_by(batch_members::batch_id)
            .select((batch_members::batch_id, count_star()))
            .load(conn)?;
        let items = found
            .into_iter()
            .map(|row| {
                let n = members.iter().find(|(id, _)| id == &row.batch_id).map_or(0, |(_, n)| super::count(*n));
                Ok((loaders::batch(row)?, n))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Paged::new(items, page, total))
    }
}
