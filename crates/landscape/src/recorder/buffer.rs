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

use contracts::records::{RoutingEvent, Token};

use super::insert::{insert_all, Record};
use super::{i32_of, is_unique_violation};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::models::DbTime;
use crate::schema::{batch_members, batches, node_states, routing_events, rows, token_outcomes, token_parents, tokens};

/// Makes a record type a [`Record`] of `$table`: each listed column is the
/// field of the same name, bound as the schema's SQL type for it. The
/// lists are written by hand, so a test below holds each to its table's
/// columns in a migrated Landscape.
macro_rules! record {
    ($record:ty => $table:ident { $($column:ident),+ $(,)? }) => {
        impl Record for $record {
            const TABLE: &'static str = stringify!($table);
            const COLUMNS: &'static [&'static str] = &[$(<$table::$column as diesel::Column>::NAME),+];

            fn bind_values<'b, B: super::insert::Binds<'b>>(&'b self, out: &mut B) -> diesel::QueryResult<()> {
                $(out.bind::<<$table::$column as diesel::Expression>::SqlType, _>(&self.$column)?;)+
                Ok(())
            }
        }
    };
}

record!(RowInsert => rows { row_id, run_id, source_node_id, row_index, source_data_hash, source_data_ref, created_at });
record!(TokenInsert => tokens {
    token_id, row_id, run_id, fork_group_id, join_group_id, expand_group_id, branch_name, step_in_pipeline, created_at,
});
record!(ParentInsert => token_parents { token_id, parent_token_id, ordinal });
record!(BatchInsert => batches {
    batch_id, run_id, aggregation_node_id, attempt, status, created_at, retry_of_batch_id,
});
record!(MemberInsert => batch_members { batch_id, run_id, token_id, ordinal });
record!(StateInsert => node_states {
    state_id, token_id, run_id, node_id, step_index, attempt, status, input_hash, output_hash, context_before_json,
    context_after_json, duration_ms, error_json, success_reason_json, started_at, completed_at,
});
record!(EventInsert => routing_events {
    event_id, state_id, edge_id, routing_group_id, ordinal, mode, reason_hash, reason_ref, created_at,
});
record!(OutcomeInsert => token_outcomes {
    outcome_id, run_id, token_id, outcome, is_terminal, recorded_at, sink_name, batch_id, fork_group_id,
    join_group_id, expand_group_id, error_hash, context_json, expected_branches_json,
});

pub(crate) struct RowInsert {
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) source_node_id: String,
    pub(crate) row_index: i64,
    pub(crate) source_data_hash: String,
    pub(crate) source_data_ref: Option<String>,
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
    insert_every(conn, &rows, refused("rows"))?;
    insert_every(conn, &tokens, refused("tokens"))?;
    insert_every(conn, &parents, refused("token parents"))?;
    insert_every(conn, &batches, refused("batches"))?;
    insert_every(conn, &members, refused("batch members"))?;
    insert_every(conn, &states, refused("node states"))?;
    insert_every(conn, &events, refused("routing events"))?;
    match insert_every(conn, &outcomes, |_, _| terminal_twice()) {
        Err(LandscapeError::Database(error)) if is_unique_violation(&error) => Err(terminal_twice()),
        other => other,
    }
}

/// Inserts `records`; fails with `refused(refused, expected)` unless the
/// database took every one.
fn insert_every<R: Record>(
    conn: &mut DbConnection,
    records: &[R],
    refused: impl Fn(usize, usize) -> LandscapeError,
) -> Result<()> {
    let expected = records.len();
    let inserted = insert_all(conn, records)?;
    match expected.checked_sub(inserted) {
        Some(0) => Ok(()),
        Some(count) => Err(refused(count, expected)),
        None => Err(LandscapeError::integrity(format!("a batch insert of {expected} records affected {inserted} rows"))),
    }
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

#[cfg(test)]
mod tests {
    use super::{
        BatchInsert, EventInsert, MemberInsert, OutcomeInsert, ParentInsert, Record, RowInsert, StateInsert, TokenInsert,
    };

    /// The columns of `R`'s table in a migrated Landscape that `R` does not write.
    fn unwritten<R: Record>(tables: &[crate::introspect::TableInfo]) -> Vec<String> {
        let table = tables.iter().find(|t| t.name == R::TABLE).unwrap_or_else(|| panic!("no table {}", R::TABLE));
        table.columns.iter().map(|c| c.name.clone()).filter(|name| !R::COLUMNS.contains(&name.as_str())).collect()
    }

    /// A column added to a hot-path table must be added to its insert (or
    /// named here, with why): the inserts list their columns by hand.
    #[test]
    fn every_buffered_insert_writes_every_column_of_its_table() {
        let mut conn = crate::connection::open("sqlite:///:memory:").expect("open");
        let tables = crate::introspect::tables(&mut conn).expect("tables");
        for (table, missing) in [
            ("rows", unwritten::<RowInsert>(&tables)),
            ("tokens", unwritten::<TokenInsert>(&tables)),
            ("token_parents", unwritten::<ParentInsert>(&tables)),
            ("batch_members", unwritten::<MemberInsert>(&tables)),
            ("node_states", unwritten::<StateInsert>(&tables)),
            ("routing_events", unwritten::<EventInsert>(&tables)),
            ("token_outcomes", unwritten::<OutcomeInsert>(&tables)),
        ] {
            assert!(missing.is_empty(), "the buffered insert into {table} does not write {missing:?}");
        }
        // A batch is buffered as a draft: its trigger, its aggregation state
        // and its completion are recorded when it completes (an update).
        assert_eq!(unwritten::<BatchInsert>(&tables), ["aggregation_state_id", "trigger_reason", "trigger_type", "completed_at"]);
    }
}
