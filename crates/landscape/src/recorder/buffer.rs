//! The write buffer of a unit of work: the hot-path records (rows, tokens,
//! completed node states, routing events, token outcomes) are collected and
//! written as multi-row inserts, in foreign-key order, before any other
//! statement runs and before the unit commits. Outside a unit nothing is
//! buffered. A constraint violation found at flush (a second terminal
//! outcome) fails the flush, and so the unit.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use contracts::records::{RoutingEvent, Token};

use super::{i32_of, is_unique_violation};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::{node_states, routing_events, rows, token_outcomes, tokens};

/// Rows per INSERT statement.
const CHUNK: usize = 250;

pub(crate) struct RowInsert {
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) source_node_id: String,
    pub(crate) row_index: i64,
    pub(crate) hash: String,
    pub(crate) data_ref: Option<String>,
    pub(crate) created_at: NaiveDateTime,
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
    pub(crate) started_at: NaiveDateTime,
    pub(crate) completed_at: Option<NaiveDateTime>,
}

pub(crate) struct OutcomeInsert {
    pub(crate) outcome_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) outcome: &'static str,
    pub(crate) is_terminal: i32,
    pub(crate) recorded_at: NaiveDateTime,
    pub(crate) sink_name: Option<String>,
    pub(crate) batch_id: Option<String>,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) error_hash: Option<String>,
    pub(crate) context_json: Option<String>,
    pub(crate) expected_branches_json: Option<String>,
}

#[derive(Default)]
pub(crate) struct WriteBuffer {
    pub(crate) rows: Vec<RowInsert>,
    pub(crate) tokens: Vec<Token>,
    pub(crate) states: Vec<StateInsert>,
    pub(crate) events: Vec<RoutingEvent>,
    pub(crate) outcomes: Vec<OutcomeInsert>,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.tokens.is_empty()
            && self.states.is_empty()
            && self.events.is_empty()
            && self.outcomes.is_empty()
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() + self.tokens.len() + self.states.len() + self.events.len() + self.outcomes.len()
    }

    pub(crate) fn clear(&mut self) {
        *self = WriteBuffer::default();
    }

    /// Writes everything, parents before children.
    pub(crate) fn flush(&mut self, conn: &mut DbConnection) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(self);
        for chunk in buffer.rows.chunks(CHUNK) {
            let values: Vec<_> = chunk
                .iter()
                .map(|r| {
                    (
                        rows::row_id.eq(r.row_id.as_str()),
                        rows::run_id.eq(r.run_id.as_str()),
                        rows::source_node_id.eq(r.source_node_id.as_str()),
                        rows::row_index.eq(r.row_index),
                        rows::source_data_hash.eq(r.hash.as_str()),
                        rows::source_data_ref.eq(r.data_ref.as_deref()),
                        rows::created_at.eq(r.created_at),
                    )
                })
                .collect();
            expect_all(
                crate::on_backend!(&mut *conn, |c| diesel::insert_into(rows::table).values(&values).execute(c))?,
                chunk.len(),
                "rows",
            )?;
        }
        for chunk in buffer.tokens.chunks(CHUNK) {
            let prepared: Vec<_> = chunk.iter().map(super::tokens::token_columns).collect::<Result<_>>()?;
            let values: Vec<_> = prepared
                .iter()
                .map(|(t, fork, join, expand, branch, step)| {
                    (
                        tokens::token_id.eq(t.token_id.as_str()),
                        tokens::row_id.eq(t.row_id.as_str()),
                        tokens::run_id.eq(t.run_id.as_str()),
                        tokens::fork_group_id.eq(*fork),
                        tokens::join_group_id.eq(*join),
                        tokens::expand_group_id.eq(*expand),
                        tokens::branch_name.eq(*branch),
                        tokens::step_in_pipeline.eq(*step),
                        tokens::created_at.eq(t.created_at.naive_utc()),
                    )
                })
                .collect();
            expect_all(
                crate::on_backend!(&mut *conn, |c| diesel::insert_into(tokens::table).values(&values).execute(c))?,
                chunk.len(),
                "tokens",
            )?;
        }
        for chunk in buffer.states.chunks(CHUNK) {
            let values: Vec<_> = chunk
                .iter()
                .map(|s| {
                    (
                        (
                            node_states::state_id.eq(s.state_id.as_str()),
                            node_states::token_id.eq(s.token_id.as_str()),
                            node_states::run_id.eq(s.run_id.as_str()),
                            node_states::node_id.eq(s.node_id.as_str()),
                            node_states::step_index.eq(s.step_index),
                            node_states::attempt.eq(s.attempt),
                            node_states::status.eq(s.status),
                            node_states::input_hash.eq(s.input_hash.as_str()),
                        ),
                        (
                            node_states::output_hash.eq(s.output_hash.as_deref()),
                            node_states::context_before_json.eq(s.context_before_json.as_deref()),
                            node_states::context_after_json.eq(s.context_after_json.as_deref()),
                            node_states::duration_ms.eq(s.duration_ms),
                            node_states::error_json.eq(s.error_json.as_deref()),
                            node_states::success_reason_json.eq(s.success_reason_json.as_deref()),
                            node_states::started_at.eq(s.started_at),
                            node_states::completed_at.eq(s.completed_at),
                        ),
                    )
                })
                .collect();
            expect_all(
                crate::on_backend!(&mut *conn, |c| diesel::insert_into(node_states::table).values(&values).execute(c))?,
                chunk.len(),
                "node states",
            )?;
        }
        for chunk in buffer.events.chunks(CHUNK) {
            let prepared: Vec<(&RoutingEvent, i32)> =
                chunk.iter().map(|e| Ok((e, i32_of("ordinal", e.ordinal)?))).collect::<Result<_>>()?;
            let values: Vec<_> = prepared
                .iter()
                .map(|(e, ordinal)| {
                    (
                        routing_events::event_id.eq(e.event_id.as_str()),
                        routing_events::state_id.eq(e.state_id.as_str()),
                        routing_events::edge_id.eq(e.edge_id.as_str()),
                        routing_events::routing_group_id.eq(e.routing_group_id.as_str()),
                        routing_events::ordinal.eq(*ordinal),
                        routing_events::mode.eq(e.mode.as_str()),
                        routing_events::reason_hash.eq(e.reason_hash.as_ref().map(contracts::ContentHash::as_str)),
                        routing_events::reason_ref.eq(e.reason_ref.as_deref()),
                        routing_events::created_at.eq(e.created_at.naive_utc()),
                    )
                })
                .collect();
            expect_all(
                crate::on_backend!(&mut *conn, |c| diesel::insert_into(routing_events::table).values(&values).execute(c))?,
                chunk.len(),
                "routing events",
            )?;
        }
        for chunk in buffer.outcomes.chunks(CHUNK) {
            let values: Vec<_> = chunk
                .iter()
                .map(|o| {
                    (
                        token_outcomes::outcome_id.eq(o.outcome_id.as_str()),
                        token_outcomes::run_id.eq(o.run_id.as_str()),
                        token_outcomes::token_id.eq(o.token_id.as_str()),
                        token_outcomes::outcome.eq(o.outcome),
                        token_outcomes::is_terminal.eq(o.is_terminal),
                        token_outcomes::recorded_at.eq(o.recorded_at),
                        token_outcomes::sink_name.eq(o.sink_name.as_deref()),
                        token_outcomes::batch_id.eq(o.batch_id.as_deref()),
                        token_outcomes::fork_group_id.eq(o.fork_group_id.as_deref()),
                        token_outcomes::join_group_id.eq(o.join_group_id.as_deref()),
                        token_outcomes::expand_group_id.eq(o.expand_group_id.as_deref()),
                        token_outcomes::error_hash.eq(o.error_hash.as_deref()),
                        token_outcomes::context_json.eq(o.context_json.as_deref()),
                        token_outcomes::expected_branches_json.eq(o.expected_branches_json.as_deref()),
                    )
                })
                .collect();
            let result =
                crate::on_backend!(&mut *conn, |c| diesel::insert_into(token_outcomes::table).values(&values).execute(c));
            match result {
                Ok(affected) => expect_all(affected, chunk.len(), "token outcomes")?,
                Err(error) if is_unique_violation(&error) => {
                    return Err(LandscapeError::IllegalTransition(
                        "a token already has a terminal outcome; the unit's outcomes were refused".into(),
                    ));
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

fn expect_all(affected: usize, expected: usize, what: &str) -> Result<()> {
    if affected == expected {
        Ok(())
    } else {
        Err(LandscapeError::integrity(format!("batch insert of {expected} {what} affected {affected} rows")))
    }
}
