//! The write buffer of a unit of work: the hot-path records (rows, tokens,
//! parent links, batches and their members, node states, routing events,
//! token outcomes) are collected and
//! written as multi-row inserts, in foreign-key order, before any other
//! statement runs and before the unit commits. Writes that need no answer
//! (an operation begun or completed, an artifact, a checkpoint, the
//! heartbeat) wait here too, as statements run after the records in the
//! order they were made, so a unit's end does not need the connection on
//! the engine's thread. Outside a unit nothing is buffered. A constraint
//! violation found at flush (a second terminal outcome) fails the flush,
//! and so the unit.
//!
//! On SQLite the inserts are `INSERT OR IGNORE`: a refused row is skipped
//! and counted (the flush then fails), never aborted on half-way, and the
//! schema's foreign keys are deferred to the commit, so SQLite keeps no
//! statement journal for them (`schema::hot_path_inserts_keep_no_statement_journal_on_sqlite`
//! in the crate's tests holds both to it).

use crate::models::DbTime;
use diesel::prelude::*;

use contracts::records::{RoutingEvent, Token};

use super::{i32_of, is_unique_violation};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::{batch_members, batches, node_states, routing_events, rows, token_outcomes, token_parents, tokens};

/// Inserts the values in `$values` (a `VecDeque`) that fill whole
/// statements of `$n` rows, through the cached statement of that size.
macro_rules! insert_fixed {
    ($conn:expr, $table:path, $values:expr, $n:literal) => {{
        let mut affected = 0_usize;
        while $values.len() >= $n {
            let chunk: Vec<_> = $values.drain(..$n).collect();
            let Ok(full) = <Box<[_; $n]>>::try_from(chunk.into_boxed_slice()) else {
                return Err(LandscapeError::integrity("an insert chunk of the wrong size"));
            };
            affected += match &mut *$conn {
                // OR IGNORE: a refused row is skipped instead of aborting the
                // statement, so SQLite keeps no statement journal; the count
                // check after the inserts fails the unit instead.
                DbConnection::Sqlite(c) => diesel::insert_or_ignore_into($table).values(*full).execute(c),
                DbConnection::Postgresql(c) => diesel::insert_into($table).values(*full).execute(c),
            }?;
        }
        affected
    }};
}

/// Inserts `items` (mapped to value tuples by the closure) into `table`:
/// full chunks of 64 rows, then the rest in statements of 32, 16, 8, 4, 2
/// and 1 rows — every statement of a fixed size, so none is prepared anew
/// per flush (a unit flushed once per forked row would otherwise prepare a
/// statement of a new size every time). Fails with `$refused(refused,
/// expected)` unless every item was inserted.
macro_rules! insert_all {
    ($conn:expr, $table:path, $items:expr, $refused:expr, |$item:pat_param| $values:expr) => {{
        let insert = || -> Result<()> {
            let items = $items;
            let expected = items.len();
            let mut values: std::collections::VecDeque<_> = items.into_iter().map(|$item| $values).collect();
            let mut affected = insert_fixed!($conn, $table, values, 64);
            affected += insert_fixed!($conn, $table, values, 32);
            affected += insert_fixed!($conn, $table, values, 16);
            affected += insert_fixed!($conn, $table, values, 8);
            affected += insert_fixed!($conn, $table, values, 4);
            affected += insert_fixed!($conn, $table, values, 2);
            affected += insert_fixed!($conn, $table, values, 1);
            match expected.checked_sub(affected) {
                Some(0) => Ok(()),
                Some(refused) => Err($refused(refused, expected)),
                None => Err(LandscapeError::integrity(format!("a batch insert of {expected} records affected {affected} rows"))),
            }
        };
        insert()
    }};
}

pub(crate) struct RowInsert {
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) source_node_id: String,
    pub(crate) row_index: i64,
    pub(crate) hash: String,
    pub(crate) data_ref: Option<String>,
    pub(crate) created_at: DbTime,
}

pub(crate) struct TokenInsert {
    pub(crate) token_id: String,
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    fork_group_id: Option<String>,
    join_group_id: Option<String>,
    expand_group_id: Option<String>,
    branch_name: Option<String>,
    step_in_pipeline: Option<i32>,
    created_at: DbTime,
}

impl TokenInsert {
    pub(crate) fn of(token: &Token) -> Result<TokenInsert> {
        let (_, fork, join, expand, branch, step) = super::tokens::token_columns(token)?;
        Ok(TokenInsert {
            token_id: token.token_id.as_str().to_owned(),
            row_id: token.row_id.as_str().to_owned(),
            run_id: token.run_id.as_str().to_owned(),
            fork_group_id: fork.map(str::to_owned),
            join_group_id: join.map(str::to_owned),
            expand_group_id: expand.map(str::to_owned),
            branch_name: branch.map(str::to_owned),
            step_in_pipeline: step,
            created_at: DbTime(token.created_at.naive_utc()),
        })
    }
}

pub(crate) struct EventInsert {
    event_id: String,
    state_id: String,
    edge_id: String,
    routing_group_id: String,
    ordinal: i32,
    mode: &'static str,
    reason_hash: Option<String>,
    reason_ref: Option<String>,
    created_at: DbTime,
}

impl EventInsert {
    pub(crate) fn of(event: &RoutingEvent) -> Result<EventInsert> {
        Ok(EventInsert {
            event_id: event.event_id.as_str().to_owned(),
            state_id: event.state_id.as_str().to_owned(),
            edge_id: event.edge_id.as_str().to_owned(),
            routing_group_id: event.routing_group_id.as_str().to_owned(),
            ordinal: i32_of("ordinal", event.ordinal)?,
            mode: event.mode.as_str(),
            reason_hash: event.reason_hash.as_ref().map(|h| h.as_str().to_owned()),
            reason_ref: event.reason_ref.clone(),
            created_at: DbTime(event.created_at.naive_utc()),
        })
    }
}

pub(crate) struct StateInsert {
    pub(crate) state_id: String,
    pub(crate) token_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) step_index: i32,
    pub(crate) attempt: i32,
    pub(crate) status: &'static str,
    pub(crate) input_hash: String,
    pub(crate) output_hash: Option<String>,
    pub(crate) context_before_json: Option<String>,
    pub(crate) context_after_json: Option<String>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) error_json: Option<String>,
    pub(crate) success_reason_json: Option<String>,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
}

pub(crate) struct OutcomeInsert {
    pub(crate) outcome_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) outcome: &'static str,
    pub(crate) is_terminal: i32,
    pub(crate) recorded_at: DbTime,
    pub(crate) sink_name: Option<String>,
    pub(crate) batch_id: Option<String>,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) error_hash: Option<String>,
    pub(crate) context_json: Option<String>,
    pub(crate) expected_branches_json: Option<String>,
}

/// A parent link of a forked, expanded, joined or batch-output token.
pub(crate) struct ParentInsert {
    pub(crate) token_id: String,
    pub(crate) parent_token_id: String,
    pub(crate) ordinal: i32,
}

/// A new (draft) aggregation batch.
pub(crate) struct BatchInsert {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) aggregation_node_id: String,
    pub(crate) attempt: i32,
    pub(crate) status: &'static str,
    pub(crate) created_at: DbTime,
    pub(crate) retry_of_batch_id: Option<String>,
}

/// A token joining a batch.
pub(crate) struct MemberInsert {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) ordinal: i32,
}

/// A write that needs no answer, run on whichever thread flushes the buffer.
/// It refers to nothing recorded after it: records are written first.
pub(crate) type Statement = Box<dyn FnOnce(&mut DbConnection) -> Result<()> + Send>;

#[derive(Default)]
pub(crate) struct WriteBuffer {
    pub(crate) rows: Vec<RowInsert>,
    pub(crate) tokens: Vec<TokenInsert>,
    pub(crate) parents: Vec<ParentInsert>,
    pub(crate) batches: Vec<BatchInsert>,
    pub(crate) members: Vec<MemberInsert>,
    pub(crate) states: Vec<StateInsert>,
    pub(crate) events: Vec<EventInsert>,
    pub(crate) outcomes: Vec<OutcomeInsert>,
    pub(crate) statements: Vec<Statement>,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.tokens.is_empty()
            && self.parents.is_empty()
            && self.batches.is_empty()
            && self.members.is_empty()
            && self.states.is_empty()
            && self.events.is_empty()
            && self.outcomes.is_empty()
            && self.statements.is_empty()
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
            + self.tokens.len()
            + self.parents.len()
            + self.batches.len()
            + self.members.len()
            + self.states.len()
            + self.events.len()
            + self.outcomes.len()
            + self.statements.len()
    }

    pub(crate) fn clear(&mut self) {
        *self = WriteBuffer::default();
    }

    /// A token this buffer will write, with its row and run (searched from
    /// the newest: a fork's or join's parents were mostly just made).
    pub(crate) fn token(&self, token_id: &str) -> Option<&TokenInsert> {
        self.tokens.iter().rev().find(|t| t.token_id == token_id)
    }

    /// A node state this buffer will write, to complete it in place.
    pub(crate) fn state_mut(&mut self, state_id: &str) -> Option<&mut StateInsert> {
        self.states.iter_mut().rev().find(|s| s.state_id == state_id)
    }

    /// Writes everything, parents before children, then runs the
    /// statements in order.
    pub(crate) fn flush(&mut self, conn: &mut DbConnection) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let statements = std::mem::take(&mut self.statements);
        write_records(conn, std::mem::take(self))?;
        statements.into_iter().try_for_each(|statement| statement(conn))
    }
}

/// The multi-row inserts of a flush, in foreign-key order (its statements
/// were taken out first).
fn write_records(conn: &mut DbConnection, records: WriteBuffer) -> Result<()> {
    let WriteBuffer { rows, tokens, parents, batches, members, states, events, outcomes, statements } = records;
    debug_assert!(statements.is_empty(), "statements run after the records");
    insert_all!(conn, rows::table, rows, refused("rows"), |r| (
        rows::row_id.eq(r.row_id),
        rows::run_id.eq(r.run_id),
        rows::source_node_id.eq(r.source_node_id),
        rows::row_index.eq(r.row_index),
        rows::source_data_hash.eq(r.hash),
        rows::source_data_ref.eq(r.data_ref),
        rows::created_at.eq(r.created_at),
    ))?;

    insert_all!(conn, tokens::table, tokens, refused("tokens"), |t| (
        tokens::token_id.eq(t.token_id),
        tokens::row_id.eq(t.row_id),
        tokens::run_id.eq(t.run_id),
        tokens::fork_group_id.eq(t.fork_group_id),
        tokens::join_group_id.eq(t.join_group_id),
        tokens::expand_group_id.eq(t.expand_group_id),
        tokens::branch_name.eq(t.branch_name),
        tokens::step_in_pipeline.eq(t.step_in_pipeline),
        tokens::created_at.eq(t.created_at),
    ))?;

    insert_all!(conn, token_parents::table, parents, refused("token parents"), |p| (
        token_parents::token_id.eq(p.token_id),
        token_parents::parent_token_id.eq(p.parent_token_id),
        token_parents::ordinal.eq(p.ordinal),
    ))?;

    write_batches(conn, batches, members)?;

    insert_all!(conn, node_states::table, states, refused("node states"), |s| (
        (
            node_states::state_id.eq(s.state_id),
            node_states::token_id.eq(s.token_id),
            node_states::run_id.eq(s.run_id),
            node_states::node_id.eq(s.node_id),
            node_states::step_index.eq(s.step_index),
            node_states::attempt.eq(s.attempt),
            node_states::status.eq(s.status),
            node_states::input_hash.eq(s.input_hash),
        ),
        (
            node_states::output_hash.eq(s.output_hash),
            node_states::context_before_json.eq(s.context_before_json),
            node_states::context_after_json.eq(s.context_after_json),
            node_states::duration_ms.eq(s.duration_ms),
            node_states::error_json.eq(s.error_json),
            node_states::success_reason_json.eq(s.success_reason_json),
            node_states::started_at.eq(s.started_at),
            node_states::completed_at.eq(s.completed_at),
        ),
    ))?;

    insert_all!(conn, routing_events::table, events, refused("routing events"), |e| (
        routing_events::event_id.eq(e.event_id),
        routing_events::state_id.eq(e.state_id),
        routing_events::edge_id.eq(e.edge_id),
        routing_events::routing_group_id.eq(e.routing_group_id),
        routing_events::ordinal.eq(e.ordinal),
        routing_events::mode.eq(e.mode),
        routing_events::reason_hash.eq(e.reason_hash),
        routing_events::reason_ref.eq(e.reason_ref),
        routing_events::created_at.eq(e.created_at),
    ))?;

    let result = insert_all!(conn, token_outcomes::table, outcomes, |_, _| terminal_twice(), |o| (
        token_outcomes::outcome_id.eq(o.outcome_id),
        token_outcomes::run_id.eq(o.run_id),
        token_outcomes::token_id.eq(o.token_id),
        token_outcomes::outcome.eq(o.outcome),
        token_outcomes::is_terminal.eq(o.is_terminal),
        token_outcomes::recorded_at.eq(o.recorded_at),
        token_outcomes::sink_name.eq(o.sink_name),
        token_outcomes::batch_id.eq(o.batch_id),
        token_outcomes::fork_group_id.eq(o.fork_group_id),
        token_outcomes::join_group_id.eq(o.join_group_id),
        token_outcomes::expand_group_id.eq(o.expand_group_id),
        token_outcomes::error_hash.eq(o.error_hash),
        token_outcomes::context_json.eq(o.context_json),
        token_outcomes::expected_branches_json.eq(o.expected_branches_json),
    ));
    match result {
        Err(LandscapeError::Database(error)) if is_unique_violation(&error) => Err(terminal_twice()),
        other => other,
    }
}

/// Batches, then their members.
fn write_batches(conn: &mut DbConnection, batches: Vec<BatchInsert>, members: Vec<MemberInsert>) -> Result<()> {
    insert_all!(conn, batches::table, batches, refused("batches"), |b| (
        batches::batch_id.eq(b.batch_id),
        batches::run_id.eq(b.run_id),
        batches::aggregation_node_id.eq(b.aggregation_node_id),
        batches::attempt.eq(b.attempt),
        batches::status.eq(b.status),
        batches::created_at.eq(b.created_at),
        batches::retry_of_batch_id.eq(b.retry_of_batch_id),
    ))?;

    insert_all!(conn, batch_members::table, members, refused("batch members"), |m| (
        batch_members::batch_id.eq(m.batch_id),
        batch_members::run_id.eq(m.run_id),
        batch_members::token_id.eq(m.token_id),
        batch_members::ordinal.eq(m.ordinal),
    ))?;
    Ok(())
}

/// The error for records of a kind that SQLite skipped (`INSERT OR
/// IGNORE`: a duplicate key, a NULL where none may be, a failed CHECK).
fn refused(what: &'static str) -> impl Fn(usize, usize) -> LandscapeError {
    move |refused, expected| {
        LandscapeError::integrity(format!("{refused} of {expected} {what} were refused by the Landscape's constraints"))
    }
}

/// The error for token outcomes refused: the only constraint a well-formed
/// outcome can break is one terminal outcome per token.
fn terminal_twice() -> LandscapeError {
    LandscapeError::IllegalTransition("a token already has a terminal outcome; the unit's outcomes were refused".into())
}
