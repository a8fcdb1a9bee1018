//! Retention: which payload blobs may go, deleting them, and degrading the
//! reproducibility grade of runs that lost what replay needs.
//!
//! Eligibility is an allow-list: only `completed` and `failed` runs that
//! ended before the cutoff lose payloads; `running` and `interrupted` runs
//! never do, and a blob shared with any other run (the store is
//! content-addressed) is kept. Every hash and every Landscape row stays; the
//! ref columns keep pointing at the deleted blobs and readers report them as
//! purged. Resume re-reads source rows from the source, so purging a failed
//! run never stands in the way of resuming it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::prelude::*;

use contracts::records::RunState;
use contracts::{Determinism, ReproducibilityGrade, RunId, RunStatus, Timestamp};

use super::Recorder;
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::{calls, node_states, nodes, operations, routing_events, rows, runs};

/// What a purge would delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgePlan {
    pub cutoff: Timestamp,
    /// Runs whose payloads are eligible, oldest first.
    pub expired_runs: Vec<RunId>,
    /// Blobs to delete: referenced by eligible runs and by no other run, and
    /// still in the store.
    pub refs: Vec<String>,
    /// Blobs of eligible runs kept because another run still refers to them.
    pub shared: usize,
    /// For each blob, the runs whose replay needs it (a recorded response of
    /// an external call made by a non-deterministic node).
    replay_needs: BTreeMap<String, BTreeSet<RunId>>,
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    pub deleted: usize,
    /// Blobs already absent from the store.
    pub missing: usize,
    /// Blobs that could not be deleted, with the reason.
    pub failed: Vec<(String, String)>,
    /// Runs downgraded to `attributable_only`.
    pub degraded: Vec<RunId>,
}

/// A call's node, request ref, response ref and response hash.
type CallRefs = (Option<String>, Option<String>, Option<String>, Option<String>);

/// One payload reference of a run.
struct RunRef {
    payload_ref: String,
    needed_for_replay: bool,
}

impl Recorder {
    /// Finds the blobs a purge with `retention_days` would delete as of `now`.
    pub fn plan_purge(&mut self, retention_days: u32, now: Timestamp) -> Result<PurgePlan> {
        let cutoff = now - chrono::TimeDelta::days(i64::from(retention_days));
        let runs = self.list_runs()?;
        let mut expired_runs = Vec::new();
        let mut expired: BTreeSet<String> = BTreeSet::new();
        let mut active: BTreeSet<String> = BTreeSet::new();
        let mut replay_needs: BTreeMap<String, BTreeSet<RunId>> = BTreeMap::new();
        for run in runs.iter().rev() {
            let eligible = match run.state {
                RunState::Completed { completed_at } | RunState::Failed { completed_at } => completed_at < cutoff,
                RunState::Running | RunState::Interrupted { .. } => false,
            };
            let refs = run_refs(self.conn()?, &run.run_id)?;
            if eligible {
                expired_runs.push(run.run_id.clone());
                for r in refs {
                    if r.needed_for_replay {
                        replay_needs.entry(r.payload_ref.clone()).or_default().insert(run.run_id.clone());
                    }
                    expired.insert(r.payload_ref);
                }
            } else {
                active.extend(refs.into_iter().map(|r| r.payload_ref));
            }
        }
        let shared = expired.intersection(&active).count();
        let mut refs = Vec::new();
        for candidate in expired.difference(&active) {
            // Blobs an earlier purge deleted are referenced still, but gone.
            let present = match &self.payloads {
                Some(store) => store.exists(candidate)?,
                None => true,
            };
            if present {
                refs.push(candidate.clone());
            }
        }
        replay_needs.retain(|r, _| refs.binary_search(r).is_ok());
        Ok(PurgePlan { cutoff, expired_runs, refs, shared, replay_needs })
    }

    /// Deletes the plan's blobs; a blob that cannot be deleted is reported and
    /// the others go on. Then every run that lost a blob its replay needs
    /// drops from `replay_reproducible` to `attributable_only`.
    pub fn execute_purge(&mut self, plan: &PurgePlan) -> Result<PurgeReport> {
        let store =
            self.payloads.as_ref().ok_or_else(|| LandscapeError::InvalidWrite("a purge needs the payload store".into()))?;
        let mut report = PurgeReport { deleted: 0, missing: 0, failed: Vec::new(), degraded: Vec::new() };
        let mut lost: BTreeSet<RunId> = BTreeSet::new();
        for payload_ref in &plan.refs {
            match store.delete(payload_ref) {
                Ok(true) => {
                    report.deleted += 1;
                    lost.extend(plan.replay_needs.get(payload_ref).into_iter().flatten().cloned());
                }
                Ok(false) => report.missing += 1,
                Err(error) => report.failed.push((payload_ref.clone(), error.to_string())),
            }
        }
        for run_id in lost {
            if self.degrade_grade(&run_id)? {
                report.degraded.push(run_id);
            }
        }
        Ok(report)
    }

    /// `replay_reproducible` → `attributable_only` (compare and swap); other
    /// grades stay. Returns whether the grade changed.
    pub fn degrade_grade(&mut self, run_id: &RunId) -> Result<bool> {
        let run = self.get_run(run_id)?;
        if run.reproducibility_grade.is_none() && run.state.status() != RunStatus::Running {
            return Err(LandscapeError::integrity(format!("ended run {run_id} has no reproducibility grade")));
        }
        let affected = diesel::update(
            runs::table
                .filter(runs::run_id.eq(run_id.as_str()))
                .filter(runs::reproducibility_grade.eq(ReproducibilityGrade::ReplayReproducible.as_str())),
        )
        .set(runs::reproducibility_grade.eq(ReproducibilityGrade::AttributableOnly.as_str()))
        .execute(self.conn()?)?;
        Ok(affected == 1)
    }
}

/// Every payload a run refers to: source rows, operation inputs and outputs,
/// call requests and responses, routing reasons.
fn run_refs(conn: &mut DbConnection, run_id: &RunId) -> Result<Vec<RunRef>> {
    let id = run_id.as_str();
    let plain = |payload_ref: String| RunRef { payload_ref, needed_for_replay: false };
    let mut refs: Vec<RunRef> = Vec::new();
    let found: Vec<Option<String>> = rows::table
        .filter(rows::run_id.eq(id))
        .filter(rows::source_data_ref.is_not_null())
        .select(rows::source_data_ref)
        .load(conn)?;
    refs.extend(found.into_iter().flatten().map(plain));
    let found: Vec<(Option<String>, Option<String>)> = operations::table
        .filter(operations::run_id.eq(id))
        .select((operations::input_data_ref, operations::output_data_ref))
        .load(conn)?;
    refs.extend(found.into_iter().flat_map(|(a, b)| [a, b]).flatten().map(plain));
    let found: Vec<Option<String>> = routing_events::table
        .filter(routing_events::reason_ref.is_not_null())
        .filter(
            routing_events::state_id.eq_any(node_states::table.filter(node_states::run_id.eq(id)).select(node_states::state_id)),
        )
        .select(routing_events::reason_ref)
        .load(conn)?;
    refs.extend(found.into_iter().flatten().map(plain));

    let determinism: HashMap<String, Determinism> = nodes::table
        .filter(nodes::run_id.eq(id))
        .select((nodes::node_id, nodes::determinism))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(node, value)| Ok((node, value.parse::<Determinism>()?)))
        .collect::<Result<_>>()?;
    let state_calls: Vec<CallRefs> = calls::table
        .inner_join(node_states::table.on(calls::state_id.eq(node_states::state_id.nullable())))
        .filter(node_states::run_id.eq(id))
        .select((node_states::node_id.nullable(), calls::request_ref, calls::response_ref, calls::response_hash))
        .load(conn)?;
    let operation_calls: Vec<CallRefs> = calls::table
        .inner_join(operations::table.on(calls::operation_id.eq(operations::operation_id.nullable())))
        .filter(operations::run_id.eq(id))
        .select((operations::node_id.nullable(), calls::request_ref, calls::response_ref, calls::response_hash))
        .load(conn)?;
    for (node, request, response, response_hash) in state_calls.into_iter().chain(operation_calls) {
        refs.extend(request.map(plain));
        if let Some(response) = response {
            let node = node.ok_or_else(|| LandscapeError::integrity("a call without a node".to_owned()))?;
            let limits = determinism
                .get(&node)
                .ok_or_else(|| LandscapeError::integrity(format!("a call of run {run_id} names unknown node {node}")))?
                .limits_reproducibility();
            refs.push(RunRef { payload_ref: response, needed_for_replay: response_hash.is_some() && limits });
        }
    }
    Ok(refs)
}
