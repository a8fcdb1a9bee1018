//! Aggregation batches: draft → executing → completed | failed (and draft →
//! failed), guarded; members with ordinals; retries with `retry_of_batch_id`.

use diesel::prelude::*;

use contracts::records::{Batch, BatchMember, BatchState, BatchTrigger};
use contracts::{BatchId, BatchStatus, NodeId, RunId, StateId, TokenId};

use super::{ensure_one, i32_of, is_unique_violation, now, Recorder};
use crate::error::{LandscapeError, Result};
use crate::schema::{batch_members, batches};

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
    /// Creates a draft batch.
    pub fn create_batch(&mut self, run_id: &RunId, node_id: &NodeId) -> Result<Batch> {
        self.insert_batch(run_id, node_id, 0, None)
    }

    fn insert_batch(&mut self, run_id: &RunId, node_id: &NodeId, attempt: u32, retry_of: Option<&BatchId>) -> Result<Batch> {
        let batch_id = BatchId::new();
        let (at, naive) = now();
        let affected = diesel::insert_into(batches::table)
            .values((
                batches::batch_id.eq(batch_id.as_str()),
                batches::run_id.eq(run_id.as_str()),
                batches::aggregation_node_id.eq(node_id.as_str()),
                batches::attempt.eq(i32_of("attempt", attempt)?),
                batches::status.eq(BatchStatus::Draft.as_str()),
                batches::created_at.eq(naive),
                batches::retry_of_batch_id.eq(retry_of.map(BatchId::as_str)),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of batch {batch_id}"))?;
        Ok(Batch {
            batch_id,
            run_id: run_id.clone(),
            aggregation_node_id: node_id.clone(),
            attempt,
            retry_of_batch_id: retry_of.cloned(),
            created_at: at,
            state: BatchState::Draft,
        })
    }

    pub fn add_batch_member(
        &mut self,
        batch_id: &BatchId,
        run_id: &RunId,
        token_id: &TokenId,
        ordinal: u32,
    ) -> Result<BatchMember> {
        let affected = diesel::insert_into(batch_members::table)
            .values((
                batch_members::batch_id.eq(batch_id.as_str()),
                batch_members::run_id.eq(run_id.as_str()),
                batch_members::token_id.eq(token_id.as_str()),
                batch_members::ordinal.eq(i32_of("ordinal", ordinal)?),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of member {token_id} of batch {batch_id}"))?;
        Ok(BatchMember { batch_id: batch_id.clone(), run_id: run_id.clone(), token_id: token_id.clone(), ordinal })
    }

    /// draft → executing, setting the trigger and the flush state together.
    pub fn start_batch(&mut self, batch_id: &BatchId, trigger: &BatchTrigger, state_id: &StateId) -> Result<Batch> {
        if trigger.trigger_reason.is_empty() {
            return Err(LandscapeError::InvalidWrite("a batch trigger needs a reason".into()));
        }
        self.transition_batch(batch_id, BatchStatus::Executing, Some((trigger, state_id)))
    }

    /// executing → completed, or draft | executing → failed.
    pub fn complete_batch(&mut self, batch_id: &BatchId, completion: BatchCompletion) -> Result<Batch> {
        self.transition_batch(batch_id, completion.status(), None)
    }

    fn transition_batch(
        &mut self,
        batch_id: &BatchId,
        to: BatchStatus,
        flush: Option<(&BatchTrigger, &StateId)>,
    ) -> Result<Batch> {
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
                .execute(self.conn()?)?,
            None => diesel::update(target)
                .set((batches::status.eq(to.as_str()), batches::completed_at.eq(completed_at)))
                .execute(self.conn()?)?,
        };
        if affected == 0 {
            let current = self.get_batch(batch_id)?;
            return Err(LandscapeError::IllegalTransition(format!(
                "batch {batch_id} is {}; it cannot become {to}",
                current.state.status()
            )));
        }
        self.get_batch(batch_id)
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

    fn atomic_retry(&mut self, original: &Batch, members: &[BatchMember]) -> Result<Batch> {
        self.begin_savepoint()?;
        let result = (|| {
            let retry = self.insert_batch(
                &original.run_id,
                &original.aggregation_node_id,
                original.attempt + 1,
                Some(&original.batch_id),
            )?;
            for member in members {
                self.add_batch_member(&retry.batch_id, &member.run_id, &member.token_id, member.ordinal)?;
            }
            Ok(retry)
        })();
        self.end_savepoint(result.is_ok())?;
        result
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
