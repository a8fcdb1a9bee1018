//! Reads through the strict loaders: single records by id and the per-run or
//! per-token lists the engine and tests need, in a total deterministic order.

use diesel::prelude::*;

use contracts::records::{
    Artifact, Batch, BatchMember, Call, CallParent, Edge, Node, NodeState, Operation, RoutingEvent, Row, Run, Token,
    TokenOutcome, TokenParent, TransformError, ValidationError,
};
use contracts::{BatchId, BatchStatus, OperationId, RowId, RowOutcome, RunId, StateId, TokenId};

use super::Recorder;
use crate::error::{LandscapeError, Result};
use crate::loaders;
use crate::models::{
    ArtifactRow, BatchMemberRow, BatchRow, CallRow, EdgeRow, NodeRow, NodeStateRow, OperationRow, RoutingEventRow, RowRow,
    RunRow, TokenOutcomeRow, TokenParentRow, TokenRow, TransformErrorRow, ValidationErrorRow,
};
use crate::schema::{
    artifacts, batch_members, batches, calls, edges, node_states, nodes, operations, routing_events, rows, runs, token_outcomes,
    token_parents, tokens, transform_errors, validation_errors,
};

fn exactly_one<T>(mut found: Vec<T>, what: impl FnOnce() -> String) -> Result<T> {
    match found.len() {
        0 => Err(LandscapeError::NotFound(what())),
        1 => Ok(found.remove(0)),
        n => Err(LandscapeError::integrity(format!("{} matched {n} rows", what()))),
    }
}

impl Recorder {
    pub fn get_run(&mut self, run_id: &RunId) -> Result<Run> {
        let found: Vec<RunRow> =
            runs::table.filter(runs::run_id.eq(run_id.as_str())).select(RunRow::as_select()).limit(2).load(self.conn()?)?;
        loaders::run(exactly_one(found, || format!("run {run_id}"))?)
    }

    /// All runs, newest first.
    pub fn list_runs(&mut self) -> Result<Vec<Run>> {
        let found: Vec<RunRow> =
            runs::table.order((runs::started_at.desc(), runs::run_id.desc())).select(RunRow::as_select()).load(self.conn()?)?;
        found.into_iter().map(loaders::run).collect()
    }

    pub fn get_nodes(&mut self, run_id: &RunId) -> Result<Vec<Node>> {
        let found: Vec<NodeRow> = nodes::table
            .filter(nodes::run_id.eq(run_id.as_str()))
            .order((nodes::sequence_in_pipeline.asc(), nodes::registered_at.asc(), nodes::node_id.asc()))
            .select(NodeRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::node).collect()
    }

    pub fn get_edges(&mut self, run_id: &RunId) -> Result<Vec<Edge>> {
        let found: Vec<EdgeRow> = edges::table
            .filter(edges::run_id.eq(run_id.as_str()))
            .order((edges::created_at.asc(), edges::edge_id.asc()))
            .select(EdgeRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::edge).collect()
    }

    pub fn get_rows(&mut self, run_id: &RunId) -> Result<Vec<Row>> {
        let found: Vec<RowRow> = rows::table
            .filter(rows::run_id.eq(run_id.as_str()))
            .order(rows::row_index.asc())
            .select(RowRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::source_row).collect()
    }

    pub fn get_token(&mut self, token_id: &TokenId) -> Result<Token> {
        let found: Vec<TokenRow> = tokens::table
            .filter(tokens::token_id.eq(token_id.as_str()))
            .select(TokenRow::as_select())
            .limit(2)
            .load(self.conn()?)?;
        loaders::token(exactly_one(found, || format!("token {token_id}"))?)
    }

    pub fn get_tokens_for_row(&mut self, row_id: &RowId) -> Result<Vec<Token>> {
        let found: Vec<TokenRow> = tokens::table
            .filter(tokens::row_id.eq(row_id.as_str()))
            .order((tokens::created_at.asc(), tokens::token_id.asc()))
            .select(TokenRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::token).collect()
    }

    pub fn get_token_parents(&mut self, token_id: &TokenId) -> Result<Vec<TokenParent>> {
        let found: Vec<TokenParentRow> = token_parents::table
            .filter(token_parents::token_id.eq(token_id.as_str()))
            .order(token_parents::ordinal.asc())
            .select(TokenParentRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::token_parent).collect()
    }

    pub fn get_node_state(&mut self, state_id: &StateId) -> Result<NodeState> {
        let found: Vec<NodeStateRow> = node_states::table
            .filter(node_states::state_id.eq(state_id.as_str()))
            .select(NodeStateRow::as_select())
            .limit(2)
            .load(self.conn()?)?;
        loaders::node_state(exactly_one(found, || format!("node state {state_id}"))?)
    }

    /// A token's states by (step_index, attempt, state_id).
    pub fn get_node_states_for_token(&mut self, token_id: &TokenId) -> Result<Vec<NodeState>> {
        let found: Vec<NodeStateRow> = node_states::table
            .filter(node_states::token_id.eq(token_id.as_str()))
            .order((node_states::step_index.asc(), node_states::attempt.asc(), node_states::state_id.asc()))
            .select(NodeStateRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::node_state).collect()
    }

    pub fn get_routing_events(&mut self, state_id: &StateId) -> Result<Vec<RoutingEvent>> {
        let found: Vec<RoutingEventRow> = routing_events::table
            .filter(routing_events::state_id.eq(state_id.as_str()))
            .order((routing_events::ordinal.asc(), routing_events::event_id.asc()))
            .select(RoutingEventRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::routing_event).collect()
    }

    pub fn get_calls(&mut self, parent: &CallParent) -> Result<Vec<Call>> {
        let query = calls::table.order(calls::call_index.asc()).select(CallRow::as_select()).into_boxed();
        let found: Vec<CallRow> = match parent {
            CallParent::State(id) => query.filter(calls::state_id.eq(id.as_str())).load(self.conn()?)?,
            CallParent::Operation(id) => query.filter(calls::operation_id.eq(id.as_str())).load(self.conn()?)?,
        };
        found.into_iter().map(loaders::call).collect()
    }

    pub fn get_operation(&mut self, operation_id: &OperationId) -> Result<Operation> {
        operation_on(self.conn()?, operation_id.as_str())
    }

    pub fn get_batch(&mut self, batch_id: &BatchId) -> Result<Batch> {
        let found: Vec<BatchRow> = batches::table
            .filter(batches::batch_id.eq(batch_id.as_str()))
            .select(BatchRow::as_select())
            .limit(2)
            .load(self.conn()?)?;
        loaders::batch(exactly_one(found, || format!("batch {batch_id}"))?)
    }

    /// Batches of a run not completed (draft, executing, failed), oldest first.
    pub fn get_incomplete_batches(&mut self, run_id: &RunId) -> Result<Vec<Batch>> {
        let statuses = [BatchStatus::Draft.as_str(), BatchStatus::Executing.as_str(), BatchStatus::Failed.as_str()];
        let found: Vec<BatchRow> = batches::table
            .filter(batches::run_id.eq(run_id.as_str()))
            .filter(batches::status.eq_any(statuses))
            .order((batches::created_at.asc(), batches::batch_id.asc()))
            .select(BatchRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::batch).collect()
    }

    pub fn get_batch_members(&mut self, batch_id: &BatchId) -> Result<Vec<BatchMember>> {
        let found: Vec<BatchMemberRow> = batch_members::table
            .filter(batch_members::batch_id.eq(batch_id.as_str()))
            .order(batch_members::ordinal.asc())
            .select(BatchMemberRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::batch_member).collect()
    }

    /// A token's outcomes, terminal last, by (recorded_at, outcome_id).
    pub fn get_token_outcomes(&mut self, token_id: &TokenId) -> Result<Vec<TokenOutcome>> {
        let found: Vec<TokenOutcomeRow> = token_outcomes::table
            .filter(token_outcomes::token_id.eq(token_id.as_str()))
            .order((token_outcomes::is_terminal.asc(), token_outcomes::recorded_at.asc(), token_outcomes::outcome_id.asc()))
            .select(TokenOutcomeRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::token_outcome).collect()
    }

    pub fn get_artifacts(&mut self, run_id: &RunId) -> Result<Vec<Artifact>> {
        let found: Vec<ArtifactRow> = artifacts::table
            .filter(artifacts::run_id.eq(run_id.as_str()))
            .order((artifacts::created_at.asc(), artifacts::artifact_id.asc()))
            .select(ArtifactRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::artifact).collect()
    }

    pub fn get_validation_errors(&mut self, run_id: &RunId) -> Result<Vec<ValidationError>> {
        let found: Vec<ValidationErrorRow> = validation_errors::table
            .filter(validation_errors::run_id.eq(run_id.as_str()))
            .order((validation_errors::created_at.asc(), validation_errors::error_id.asc()))
            .select(ValidationErrorRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::validation_error).collect()
    }

    pub fn get_transform_errors(&mut self, run_id: &RunId) -> Result<Vec<TransformError>> {
        let found: Vec<TransformErrorRow> = transform_errors::table
            .filter(transform_errors::run_id.eq(run_id.as_str()))
            .order((transform_errors::created_at.asc(), transform_errors::error_id.asc()))
            .select(TransformErrorRow::as_select())
            .load(self.conn()?)?;
        found.into_iter().map(loaders::transform_error).collect()
    }

    /// How many source rows a run recorded.
    pub fn count_rows(&mut self, run_id: &RunId) -> Result<u64> {
        let count: i64 = rows::table.filter(rows::run_id.eq(run_id.as_str())).count().get_result(self.conn()?)?;
        u64::try_from(count).map_err(|_| LandscapeError::integrity("negative row count"))
    }

    /// Terminal outcomes of a run, counted per outcome and sink (`None`
    /// for outcomes that name no sink).
    pub fn count_terminal_outcomes(&mut self, run_id: &RunId) -> Result<Vec<(RowOutcome, Option<String>, u64)>> {
        let found: Vec<(String, Option<String>, i64)> = token_outcomes::table
            .filter(token_outcomes::run_id.eq(run_id.as_str()))
            .filter(token_outcomes::is_terminal.eq(1))
            .group_by((token_outcomes::outcome, token_outcomes::sink_name))
            .select((token_outcomes::outcome, token_outcomes::sink_name, diesel::dsl::count_star()))
            .order((token_outcomes::outcome.asc(), token_outcomes::sink_name.asc()))
            .load(self.conn()?)?;
        found
            .into_iter()
            .map(|(outcome, sink, count)| {
                let count = u64::try_from(count).map_err(|_| LandscapeError::integrity("negative outcome count"))?;
                Ok((outcome.parse()?, sink, count))
            })
            .collect()
    }

    /// Recorded source-row hashes from row index `from`, at most `limit`, by index.
    pub fn row_hashes(&mut self, run_id: &RunId, from: u64, limit: u64) -> Result<Vec<(u64, contracts::ContentHash)>> {
        let from = i64::try_from(from).map_err(|_| LandscapeError::InvalidWrite("row index too large".into()))?;
        let limit = i64::try_from(limit).map_err(|_| LandscapeError::InvalidWrite("limit too large".into()))?;
        let found: Vec<(i64, String)> = rows::table
            .filter(rows::run_id.eq(run_id.as_str()))
            .filter(rows::row_index.ge(from))
            .order(rows::row_index.asc())
            .limit(limit)
            .select((rows::row_index, rows::source_data_hash))
            .load(self.conn()?)?;
        found
            .into_iter()
            .map(|(index, hash)| {
                let index = u64::try_from(index).map_err(|_| LandscapeError::integrity("negative row index"))?;
                Ok((index, contracts::ContentHash::parse(hash)?))
            })
            .collect()
    }
}

/// The operation `operation_id`, read on `conn` (also by a statement that
/// runs on the flush thread).
pub(crate) fn operation_on(conn: &mut crate::connection::DbConnection, operation_id: &str) -> Result<Operation> {
    let found: Vec<OperationRow> = operations::table
        .filter(operations::operation_id.eq(operation_id))
        .select(OperationRow::as_select())
        .limit(2)
        .load(conn)?;
    loaders::operation(exactly_one(found, || format!("operation {operation_id}"))?)
}
