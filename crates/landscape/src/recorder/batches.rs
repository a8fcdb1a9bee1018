//! Aggregation batches: draft → executing → completed | failed (and draft →
//! failed), guarded; members with ordinals; retries with `retry_of_batch_id`.

use diesel::prelude::*;

use contracts::records::{Batch, BatchMember, BatchState, BatchTrigger};
use contracts::{BatchId, BatchStatus, NodeId, RunId, StateId, TokenId};

use super::buffer::{BatchInsert, MemberInsert, WriteBuffer};
use super::{ensure_one, i32_of, is_unique_violation, now, Recorder};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::models::DbTime;
use crate::schema::batches;

/// How a batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCompletion {
    Completed,
    Failed,
}

impl BatchCompletion {
    fn status(self) -> BatchStatus {
        match self {
            BatchCompletion::Completed => BatchStatus::Completed,
            BatchCompletion::Failed => BatchStatus::Failed,
        }
    }
}

impl Recorder {
    /// Creates a draft batch. In a unit it waits in the write buffer.
    pub fn create_batch(&mut self, run_id: &RunId, node_id: &NodeId) -> Result<Batch> {
        let (batch, row) = new_batch(run_id, node_id, 0, None)?;
        self.buffer.batches.push(row);
        self.pushed()?;
        Ok(batch)
    }

    /// A token joins a batch at `ordinal`. In a unit it waits in the write
    /// buffer (a second member at one ordinal then fails the unit's flush).
    pub fn add_batch_member(
        &mut self,
        batch_id: &BatchId,
        run_id: &RunId,
        token_id: &TokenId,
        ordinal: u32,
    ) -> Result<BatchMember> {
        let member = BatchMember { batch_id: batch_id.clone(), run_id: run_id.clone(), token_id: token_id.clone(), ordinal };
        self.buffer.members.push(member_insert(&member)?);
        self.pushed()?;
        Ok(member)
    }

    /// draft → executing, setting the trigger and the flush state together.
    /// In a unit it runs after the unit's records, and a batch that is not
    /// a draft then fails the unit; outside one it is refused at once.
    pub fn start_batch(&mut self, batch_id: &BatchId, trigger: &BatchTrigger, state_id: &StateId) -> Result<()> {
        if trigger.trigger_reason.is_empty() {
            return Err(LandscapeError::InvalidWrite("a batch trigger needs a reason".into()));
        }
        let (batch_id, trigger, state_id) = (batch_id.clone(), trigger.clone(), state_id.clone());
        self.write(move |conn| transition_batch(conn, &batch_id, BatchStatus::Executing, Some((&trigger, &state_id))))
    }

    /// executing → completed, or draft | executing → failed; deferred in a
    /// unit like [`Recorder::start_batch`].
    pub fn complete_batch(&mut self, batch_id: &BatchId, completion: BatchCompletion) -> Result<()> {
        let batch_id = batch_id.clone();
        self.write(move |conn| transition_batch(conn, &batch_id, completion.status(), None))
    }

    /// A new draft batch retrying a failed one (attempt + 1, same members and
    /// ordinals, `retry_of_batch_id` set). Idempotent: a second call returns
    /// the same retry.
    pub fn retry_batch(&mut self, batch_id: &BatchId) -> Result<Batch> {
        let original = self.get_batch(batch_id)?;
        if original.state.status() != BatchStatus::Failed {
            return Err(LandscapeError::IllegalTransition(format!(
                "batch {batch_id} is {}; only failed batches are retried",
                original.state.status()
            )));
        }
        if let Some(existing) = self.find_retry_of(batch_id)? {
            return Ok(existing);
        }
        let members = self.get_batch_members(batch_id)?;
        let result = self.atomic_retry(&original, &members);
        match result {
            Err(LandscapeError::Database(error)) if is_unique_violation(&error) => {
                self.find_retry_of(batch_id)?.ok_or_else(|| LandscapeError::integrity("retry vanished"))
            }
            other => other,
        }
    }

    /// The retry and its members, written now in a savepoint of their own.
    fn atomic_retry(&mut self, original: &Batch, members: &[BatchMember]) -> Result<Batch> {
        let (retry, row) =
            new_batch(&original.run_id, &original.aggregation_node_id, original.attempt + 1, Some(&original.batch_id))?;
        let mut records = WriteBuffer::default();
        records.batches.push(row);
        for member in members {
            records.members.push(member_insert(&BatchMember { batch_id: retry.batch_id.clone(), ..member.clone() })?);
        }
        self.begin_savepoint()?;
        let result = records.flush(self.conn()?);
        self.end_savepoint(result.is_ok())?;
        result.map(|()| retry)
    }

    fn find_retry_of(&mut self, batch_id: &BatchId) -> Result<Option<Batch>> {
        let id: Option<String> = batches::table
            .filter(batches::retry_of_batch_id.eq(batch_id.as_str()))
            .select(batches::batch_id)
            .first(self.conn()?)
            .optional()?;
        id.map(|id| self.get_batch(&BatchId::parse(id)?)).transpose()
    }
}

/// A draft batch and the record that writes it.
fn new_batch(run_id: &RunId, node_id: &NodeId, attempt: u32, retry_of: Option<&BatchId>) -> Result<(Batch, BatchInsert)> {
    let batch_id = BatchId::new();
    let (at, naive) = now();
    let row = BatchInsert {
        batch_id: batch_id.as_str().to_owned(),
        run_id: run_id.as_str().to_owned(),
        aggregation_node_id: node_id.as_str().to_owned(),
        attempt: i32_of("attempt", attempt)?,
        status: BatchStatus::Draft.as_str(),
        created_at: DbTime(naive),
        retry_of_batch_id: retry_of.map(|id| id.as_str().to_owned()),
    };
    let batch = Batch {
        batch_id,
        run_id: run_id.clone(),
        aggregation_node_id: node_id.clone(),
        attempt,
        retry_of_batch_id: retry_of.cloned(),
        created_at: at,
        state: BatchState::Draft,
    };
    Ok((batch, row))
}

fn member_insert(member: &BatchMember) -> Result<MemberInsert> {
    Ok(MemberInsert {
        batch_id: member.batch_id.as_str().to_owned(),
        run_id: member.run_id.as_str().to_owned(),
        token_id: member.token_id.as_str().to_owned(),
        ordinal: i32_of("ordinal", member.ordinal)?,
    })
}

/// Moves a batch to `to` from a status that may precede it; refused (with
/// the status it is in) otherwise.
fn transition_batch(
    conn: &mut DbConnection,
    batch_id: &BatchId,
    to: BatchStatus,
    flush: Option<(&BatchTrigger, &StateId)>,
) -> Result<()> {
    let from: Vec<&str> = BatchStatus::ALL.iter().filter(|s| s.can_transition_to(to)).map(|s| s.as_str()).collect();
    let completed_at = to.is_terminal().then(|| now().1);
    let target = batches::table.filter(batches::batch_id.eq(batch_id.as_str())).filter(batches::status.eq_any(&from));
    let affected = match flush {
        Some((trigger, state_id)) => diesel::update(target)
            .set((
                batches::status.eq(to.as_str()),
                batches::trigger_type.eq(trigger.trigger_type.as_str()),
                batches::trigger_reason.eq(&trigger.trigger_reason),
                batches::aggregation_state_id.eq(state_id.as_str()),
            ))
            .execute(conn)?,
        None => {
            diesel::update(target).set((batches::status.eq(to.as_str()), batches::completed_at.eq(completed_at))).execute(conn)?
        }
    };
    if affected == 0 {
        let current: Option<String> =
            batches::table.filter(batches::batch_id.eq(batch_id.as_str())).select(batches::status).first(conn).optional()?;
        return Err(match current {
            Some(status) => LandscapeError::IllegalTransition(format!("batch {batch_id} is {status}; it cannot become {to}")),
            None => LandscapeError::NotFound(format!("batch {batch_id}")),
        });
    }
    ensure_one(affected, || format!("transition of batch {batch_id} to {to}"))
}
