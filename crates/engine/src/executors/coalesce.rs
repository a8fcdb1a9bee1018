//! The coalesce executor: branch tokens of one fork wait at the coalesce
//! (each visit an open node state) until the join is decided, then resolve
//! by [`crate::decisions::merge`] into one joined token. Every consumed
//! branch token's state completes with the merge metadata, and its COALESCED
//! outcome carries the same metadata; a failed join fails every arrived
//! token with the reason. Losses (a branch failed, discarded or sent to a
//! sink) are told by the processor after every step.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use contracts::records::{OutcomeDetail, Token, TokenLineage};
use contracts::{canonical_json, error_hash, stable_hash, ForkGroupId, Row, StateId, Value};
use indexmap::IndexMap;
use landscape::recorder::StateCompletion;

use crate::dag::{NodeIdx, NodeKind};
use crate::decisions::merge::{self, merge_name, policy_name};
use crate::runtime::{ms, BranchLoss, Emitted, EngineError, RunContext, Work};
use crate::settings::CoalesceSettings;

/// A join: one fork's branches at one coalesce. Keyed by the fork, not the
/// row: a row can be forked more than once (after an aggregation or an
/// expansion made several tokens of it).
pub(crate) type JoinKey = (NodeIdx, ForkGroupId);

/// A branch token waiting at a coalesce.
pub(crate) struct Arrival {
    pub(crate) token: Token,
    pub(crate) row: Row,
    pub(crate) state_id: StateId,
    pub(crate) arrived_at: Instant,
    /// Its state was closed PENDING (the run was interrupted while it waited).
    pub(crate) parked: bool,
}

/// The branches of one join that arrived so far, by branch name in arrival
/// order.
pub(crate) struct Entry {
    pub(crate) first_arrival: Instant,
    pub(crate) arrivals: IndexMap<String, Arrival>,
}

/// Waiting joins of every coalesce node.
#[derive(Default)]
pub(crate) struct CoalesceExecutor {
    pub(crate) entries: HashMap<JoinKey, Entry>,
    /// Joins resolved before every branch was accounted for: a late arrival fails.
    pub(crate) resolved: HashSet<JoinKey>,
    /// Branches of a fork that will never arrive, with why.
    pub(crate) lost: HashMap<JoinKey, IndexMap<String, String>>,
    /// Joins a branch loss made decidable, resolved when the queue drains.
    decided: Vec<JoinKey>,
}

fn branch_of(token: &Token) -> Option<&str> {
    match &token.lineage {
        TokenLineage::Forked { branch_name, .. } => Some(branch_name),
        TokenLineage::Expanded { branch_name, .. } => branch_name.as_deref(),
        TokenLineage::Initial | TokenLineage::Joined { .. } => None,
    }
}

fn settings<'c>(ctx: &'c RunContext<'_>, node: NodeIdx) -> Result<&'c CoalesceSettings, EngineError> {
    match ctx.graph.nodes[node].kind {
        NodeKind::Coalesce(index) => Ok(&ctx.loaded.settings.coalesce[index]),
        NodeKind::Source | NodeKind::Transform(_) | NodeKind::Gate(_) | NodeKind::Aggregation(_) | NodeKind::Sink(_) => {
            Err(EngineError::Invariant(format!("node {} does not coalesce", ctx.graph.nodes[node].name)))
        }
    }
}

impl CoalesceExecutor {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A branch token arrives at a coalesce.
    pub(crate) fn accept(&mut self, ctx: &mut RunContext<'_>, work: Work, out: &mut Emitted) -> Result<(), EngineError> {
        let node = work.at;
        let policy = policy_name(settings(ctx, node)?.policy);
        let branch = branch_of(&work.token).map(str::to_owned).ok_or_else(|| {
            EngineError::Invariant(format!(
                "token {} reached coalesce {} without a branch",
                work.token.token_id, ctx.graph.nodes[node].name
            ))
        })?;
        let state = ctx.begin_visit(&work.token, node, 0, work.hash.clone(), None)?;
        let now = ctx.clock.now();
        let arrival = Arrival {
            token: work.token,
            row: work.row,
            state_id: state.common().state_id.clone(),
            arrived_at: now,
            parked: false,
        };
        let Some(fork_group) = work.fork_group else {
            let reason = serde_json::json!({
                "failure_reason": "no_single_fork",
                "detail": "the token descends from several forks (a batch of branch tokens), so there is nothing to join it with",
                "branch": branch,
            });
            return fail_arrivals(ctx, vec![arrival], &reason);
        };
        let key = (node, fork_group);
        if self.resolved.contains(&key) {
            let reason = serde_json::json!({"failure_reason": "late_arrival", "branch": branch, "merge_policy": policy});
            return fail_arrivals(ctx, vec![arrival], &reason);
        }
        self.expire_timeouts(ctx, node, out)?;
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry { first_arrival: now, arrivals: IndexMap::new() });
        entry.arrivals.insert(branch, arrival);
        if self.is_decided(ctx, &key)? {
            self.resolve(ctx, key, None, out)?;
        }
        Ok(())
    }

    fn is_decided(&self, ctx: &RunContext<'_>, key: &JoinKey) -> Result<bool, EngineError> {
        let arrived = self.entries.get(key).map_or(0, |e| e.arrivals.len());
        let lost = self.lost.get(key).map_or(0, IndexMap::len);
        Ok(merge::is_decided(settings(ctx, key.0)?, arrived, lost))
    }

    /// Takes the branch losses noted since the last step: a join they decide
    /// resolves when the queue drains.
    pub(crate) fn note_losses(&mut self, ctx: &mut RunContext<'_>) -> Result<(), EngineError> {
        for BranchLoss { token, reason } in std::mem::take(&mut ctx.branch_losses) {
            let TokenLineage::Forked { fork_group_id, branch_name } = &token.lineage else { continue };
            let Some(&node) = ctx.graph.branch_coalesce.get(branch_name) else { continue };
            let expected = settings(ctx, node)?.branches.len();
            let key = (node, fork_group_id.clone());
            if self.resolved.contains(&key) {
                continue;
            }
            let lost = self.lost.entry(key.clone()).or_default();
            lost.insert(branch_name.clone(), reason);
            let all_lost = lost.len() >= expected;
            if !self.entries.contains_key(&key) {
                if all_lost {
                    // Nothing arrived and nothing will: there is nothing to merge.
                    self.lost.remove(&key);
                }
                continue;
            }
            if self.is_decided(ctx, &key)? && !self.decided.contains(&key) {
                self.decided.push(key);
            }
        }
        Ok(())
    }

    /// Resolves the joins branch losses decided; returns whether any did.
    pub(crate) fn resolve_decided(&mut self, ctx: &mut RunContext<'_>, out: &mut Emitted) -> Result<bool, EngineError> {
        let decided = std::mem::take(&mut self.decided);
        let any = !decided.is_empty();
        for key in decided {
            self.resolve(ctx, key, Some("branch lost".to_owned()), out)?;
        }
        Ok(any)
    }

    /// When the next coalesce timeout falls due.
    pub(crate) fn next_timer(&self, ctx: &RunContext<'_>) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|((node, _), entry)| {
                let timeout = settings(ctx, *node).ok()?.timeout_seconds?;
                Some(entry.first_arrival + Duration::from_secs_f64(timeout.max(0.0)))
            })
            .min()
    }

    /// Resolves every join whose timeout passed; returns whether any did.
    pub(crate) fn fire_timers(&mut self, ctx: &mut RunContext<'_>, out: &mut Emitted) -> Result<bool, EngineError> {
        let before = self.entries.len();
        for node in ctx.graph.pipeline.clone() {
            if let NodeKind::Coalesce(_) = ctx.graph.nodes[node].kind {
                self.expire_timeouts(ctx, node, out)?;
            }
        }
        Ok(self.entries.len() < before)
    }

    /// Joins of this coalesce whose timeout passed are resolved now.
    fn expire_timeouts(&mut self, ctx: &mut RunContext<'_>, node: NodeIdx, out: &mut Emitted) -> Result<(), EngineError> {
        let Some(timeout) = settings(ctx, node)?.timeout_seconds else { return Ok(()) };
        let now = ctx.clock.now();
        let expired: Vec<JoinKey> = self
            .entries
            .iter()
            .filter(|((n, _), entry)| *n == node && now.saturating_duration_since(entry.first_arrival).as_secs_f64() >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.resolve(ctx, key, Some(format!("timeout after {timeout} s")), out)?;
        }
        Ok(())
    }

    /// The waiting joins in the order the end of the source resolves them.
    pub(crate) fn waiting_at_end(&self, ctx: &RunContext<'_>) -> Vec<JoinKey> {
        let mut keys: Vec<JoinKey> = self.entries.keys().cloned().collect();
        keys.sort_by(|a, b| (ctx.graph.nodes[a.0].step, a.1.as_str()).cmp(&(ctx.graph.nodes[b.0].step, b.1.as_str())));
        keys
    }

    /// End of source: a waiting join resolves by its policy.
    pub(crate) fn resolve_at_end(
        &mut self,
        ctx: &mut RunContext<'_>,
        key: JoinKey,
        out: &mut Emitted,
    ) -> Result<(), EngineError> {
        self.resolve(ctx, key, Some("end of source".to_owned()), out)
    }

    /// Merges or fails a join. `cause` is why it resolves before every
    /// branch arrived (timeout, end of source, a lost branch).
    fn resolve(
        &mut self,
        ctx: &mut RunContext<'_>,
        key: JoinKey,
        cause: Option<String>,
        out: &mut Emitted,
    ) -> Result<(), EngineError> {
        let Some(entry) = self.entries.remove(&key) else { return Ok(()) };
        let losses = self.lost.remove(&key).unwrap_or_default();
        let node = key.0;
        let settings = settings(ctx, node)?.clone();
        let rows: Vec<(&str, &Row)> = entry.arrivals.iter().map(|(b, a)| (b.as_str(), &a.row)).collect();
        let resolution = merge::resolve(&settings, &rows, &losses, cause.as_deref());
        // Remember the fork only while a branch may still come (to fail it as
        // a late arrival): a fork whose every branch is accounted for costs
        // no memory once resolved.
        if entry.arrivals.len() + losses.len() < resolution.expected.len() {
            self.resolved.insert(key);
        }
        let arrivals: Vec<Arrival> = entry.arrivals.into_values().collect();
        let merged = match resolution.result {
            Ok(merged) => merged,
            Err(error) => return fail_arrivals(ctx, arrivals, &error),
        };
        let merged_value = Value::Object(merged.row);
        let merged_hash = stable_hash(&merged_value)?;
        let Value::Object(merged_row) = merged_value else { unreachable!("constructed as an object") };
        let parents: Vec<&Token> = arrivals.iter().map(|a| &a.token).collect();
        let (joined, join_group_id) = ctx.recorder.coalesce_tokens(&parents, ctx.graph.nodes[node].step)?;
        let now = ctx.clock.now();
        let first = arrivals.iter().map(|a| a.arrived_at).min().unwrap_or(now);
        let arrival_order: Vec<serde_json::Value> = arrivals
            .iter()
            .map(|a| serde_json::json!({"branch": branch_of(&a.token), "arrival_offset_ms": ms(a.arrived_at.duration_since(first))}))
            .collect();
        let mut metadata = serde_json::json!({
            "policy": policy_name(settings.policy),
            "merge_strategy": merge_name(settings.merge),
            "expected_branches": resolution.expected,
            "branches_arrived": resolution.arrived,
            "branches_lost": resolution.lost,
            "arrival_order": arrival_order,
            "wait_duration_ms": ms(now.saturating_duration_since(first)),
            "union_field_collisions": merged.collisions,
            "merged_token_id": joined.token_id.as_str(),
            "merged_output_hash": merged_hash.as_str(),
            "join_group_id": join_group_id.as_str(),
        });
        if let Some(cause) = &cause {
            metadata["reason"] = serde_json::json!(cause);
        }
        if let Some(q) = settings.quorum_count {
            metadata["quorum_required"] = serde_json::json!(q);
        }
        if let Some(t) = settings.timeout_seconds {
            metadata["timeout_seconds"] = serde_json::json!(t);
        }
        if let Some(b) = &settings.select_branch {
            metadata["select_branch"] = serde_json::json!(b);
        }
        let context = canonical_json(&metadata)?;
        for arrival in &arrivals {
            let completion = StateCompletion::Completed {
                output_hash: merged_hash.clone(),
                context_after_json: Some(context.clone()),
                success_reason_json: None,
            };
            let waited = ms(ctx.clock.now().saturating_duration_since(arrival.arrived_at));
            ctx.recorder.end_node_state(&arrival.state_id, &completion, waited)?;
            ctx.outcome(&arrival.token, OutcomeDetail::Coalesced { join_group_id: join_group_id.clone() }, Some(&metadata))?;
        }
        ctx.route_from(Work { token: joined, row: merged_row, hash: merged_hash, at: node, fork_group: None }, node, out)
    }

    /// An interrupted run keeps its waiting branches for resume; their
    /// states close PENDING (waiting for the other branches), so no state is
    /// left open.
    pub(crate) fn park(&mut self, ctx: &mut RunContext<'_>) -> Result<(), EngineError> {
        let now = ctx.clock.now();
        let mut to_park = Vec::new();
        for ((node, _), entry) in &mut self.entries {
            for arrival in entry.arrivals.values_mut().filter(|a| !a.parked) {
                arrival.parked = true;
                to_park.push((*node, arrival.state_id.clone(), now.saturating_duration_since(arrival.arrived_at)));
            }
        }
        for (node, state_id, waited) in to_park {
            let context = serde_json::json!({"waiting_at": ctx.graph.nodes[node].name, "reason": "run interrupted"});
            let completion = StateCompletion::Pending { context_after_json: Some(canonical_json(&context)?) };
            ctx.recorder.end_node_state(&state_id, &completion, ms(waited))?;
        }
        Ok(())
    }

    /// A run that stops leaves no open coalesce state: waiting arrivals fail.
    pub(crate) fn abandon(&mut self, ctx: &mut RunContext<'_>, reason: &str) -> Result<(), EngineError> {
        let entries: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        for entry in entries {
            let error = serde_json::json!({"failure_reason": "run_stopped", "reason": reason});
            fail_arrivals(ctx, entry.arrivals.into_values().collect(), &error)?;
        }
        Ok(())
    }
}

/// Fails every arrived token: its open state and its outcome.
fn fail_arrivals(ctx: &mut RunContext<'_>, arrivals: Vec<Arrival>, error: &serde_json::Value) -> Result<(), EngineError> {
    let error_json = canonical_json(error)?;
    let hash = error_hash(&error_json);
    for arrival in arrivals {
        let completion = StateCompletion::Failed { error_json: error_json.clone(), output_hash: None, context_after_json: None };
        let waited = ms(ctx.clock.now().saturating_duration_since(arrival.arrived_at));
        ctx.recorder.end_node_state(&arrival.state_id, &completion, waited)?;
        ctx.outcome(&arrival.token, OutcomeDetail::Failed { error_hash: hash.clone(), batch_id: None }, None)?;
    }
    Ok(())
}
