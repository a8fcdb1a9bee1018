//! The coalesce executor: branch tokens of one source row wait at the
//! coalesce (each visit an open node state) until the policy is satisfied,
//! then merge (union, nested or select) into one joined token. Every consumed
//! branch token's state completes with the merge metadata, and its COALESCED
//! outcome carries the same metadata; a failed merge fails every arrived
//! token with the reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use contracts::records::{OutcomeDetail, Token, TokenLineage};
use contracts::{canonical_json, error_hash, stable_hash, ContentHash, ForkGroupId, Row, StateId, Value};
use indexmap::IndexMap;
use landscape::recorder::{NewNodeState, StateCompletion};
use landscape::LandscapeError;

use super::processor::{EngineError, Runtime, Work};
use crate::dag::NodeIdx;
use crate::settings::{CoalescePolicy, CoalesceSettings, MergeStrategy, UnionCollisionPolicy};

struct Arrival {
    token: Token,
    row: Row,
    state_id: StateId,
    arrived_at: Instant,
    /// Its state was closed PENDING (the run was interrupted while it waited).
    parked: bool,
}

/// Branches of one fork (one token split into branches) waiting at one
/// coalesce. Keyed by the fork, not the row: a row can be forked more than
/// once (after an aggregation or an expansion made several tokens of it).
struct Entry {
    first_arrival: Instant,
    arrivals: IndexMap<String, Arrival>,
}

/// Waiting entries of every coalesce node.
#[derive(Default)]
pub(crate) struct CoalesceState {
    entries: HashMap<(NodeIdx, ForkGroupId), Entry>,
    resolved: HashSet<(NodeIdx, ForkGroupId)>,
    /// Branches of a fork that will never arrive (failed, discarded, or sent
    /// to a sink), with why.
    lost: HashMap<(NodeIdx, ForkGroupId), IndexMap<String, String>>,
    /// Entries a branch loss made decidable, resolved when the queue drains.
    decided: Vec<(NodeIdx, ForkGroupId)>,
}

impl CoalesceState {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn branch_of(token: &Token) -> Option<&str> {
    match &token.lineage {
        TokenLineage::Forked { branch_name, .. } => Some(branch_name),
        TokenLineage::Expanded { branch_name, .. } => branch_name.as_deref(),
        TokenLineage::Initial | TokenLineage::Joined { .. } => None,
    }
}

fn policy_name(policy: CoalescePolicy) -> &'static str {
    match policy {
        CoalescePolicy::RequireAll => "require_all",
        CoalescePolicy::Quorum => "quorum",
        CoalescePolicy::BestEffort => "best_effort",
        CoalescePolicy::First => "first",
    }
}

fn merge_name(merge: MergeStrategy) -> &'static str {
    match merge {
        MergeStrategy::Union => "union",
        MergeStrategy::Nested => "nested",
        MergeStrategy::Select => "select",
    }
}

impl Runtime<'_> {
    fn coalesce_settings(&self, index: usize) -> CoalesceSettings {
        self.loaded.settings.coalesce[index].clone()
    }

    /// A branch token arrives at a coalesce.
    pub(crate) fn coalesce(&mut self, work: Work, index: usize, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        let node = work.at;
        let settings = self.coalesce_settings(index);
        let branch = branch_of(&work.token).map(str::to_owned).ok_or_else(|| {
            EngineError::Invariant(format!("token {} reached coalesce {} without a branch", work.token.token_id, settings.name))
        })?;
        let graph_node = &self.graph.nodes[node];
        let state = self.recorder.begin_node_state(NewNodeState {
            token: &work.token,
            node_id: &graph_node.id,
            step_index: graph_node.step,
            attempt: 0,
            input_hash: work.hash.clone(),
            context_before_json: None,
        })?;
        let now = self.clock.now();
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
            return self.fail_arrivals(vec![arrival], &reason);
        };
        let key = (node, fork_group);
        if self.coalesces.resolved.contains(&key) {
            let reason = serde_json::json!({"failure_reason": "late_arrival", "branch": branch, "merge_policy": policy_name(settings.policy)});
            return self.fail_arrivals(vec![arrival], &reason);
        }
        self.expire_timeouts(node, index, queue)?;
        let entry =
            self.coalesces.entries.entry(key.clone()).or_insert_with(|| Entry { first_arrival: now, arrivals: IndexMap::new() });
        entry.arrivals.insert(branch, arrival);
        let ready = self.is_decided(&key, index);
        if ready {
            self.resolve(key, index, None, queue)?;
        }
        Ok(())
    }

    /// Whether an entry can resolve now: its policy is met, or the branches
    /// lost so far make it impossible to meet.
    fn is_decided(&self, key: &(NodeIdx, ForkGroupId), index: usize) -> bool {
        let settings = &self.loaded.settings.coalesce[index];
        let arrived = self.coalesces.entries.get(key).map_or(0, |e| e.arrivals.len());
        let lost = self.coalesces.lost.get(key).map_or(0, IndexMap::len);
        let expected = settings.branches.len();
        let quorum = usize::try_from(settings.quorum_count.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        match settings.policy {
            CoalescePolicy::RequireAll => arrived == expected || lost > 0,
            CoalescePolicy::BestEffort => arrived + lost >= expected,
            CoalescePolicy::Quorum => arrived >= quorum || expected.saturating_sub(lost) < quorum,
            CoalescePolicy::First => arrived > 0,
        }
    }

    /// A token on a fork branch will never reach its coalesce. The entry of
    /// its fork resolves as soon as that decides it (at the next queue drain).
    /// `reason` is only built for a branch token (this runs for every
    /// delivery and failure).
    pub(crate) fn note_branch_loss(&mut self, token: &Token, reason: impl FnOnce() -> String) {
        let TokenLineage::Forked { fork_group_id, branch_name } = &token.lineage else { return };
        let Some(&node) = self.graph.branch_coalesce.get(branch_name) else { return };
        let crate::dag::NodeKind::Coalesce(index) = self.graph.nodes[node].kind else { return };
        let key = (node, fork_group_id.clone());
        if self.coalesces.resolved.contains(&key) {
            return;
        }
        let lost = self.coalesces.lost.entry(key.clone()).or_default();
        lost.insert(branch_name.clone(), reason());
        let all_lost = lost.len() >= self.loaded.settings.coalesce[index].branches.len();
        if !self.coalesces.entries.contains_key(&key) {
            if all_lost {
                // Nothing arrived and nothing will: there is nothing to merge.
                self.coalesces.lost.remove(&key);
            }
            return;
        }
        if self.is_decided(&key, index) && !self.coalesces.decided.contains(&key) {
            self.coalesces.decided.push(key);
        }
    }

    /// Resolves the entries branch losses decided; returns whether any did.
    pub(crate) fn resolve_decided(&mut self, queue: &mut VecDeque<Work>) -> Result<bool, EngineError> {
        let decided = std::mem::take(&mut self.coalesces.decided);
        let any = !decided.is_empty();
        for key in decided {
            let crate::dag::NodeKind::Coalesce(index) = self.graph.nodes[key.0].kind else { continue };
            self.resolve(key, index, Some("branch lost".to_owned()), queue)?;
        }
        Ok(any)
    }

    /// When the next coalesce timeout falls due.
    pub(crate) fn next_coalesce_timer(&self) -> Option<Instant> {
        self.coalesces
            .entries
            .iter()
            .filter_map(|((node, _), entry)| {
                let crate::dag::NodeKind::Coalesce(index) = self.graph.nodes[*node].kind else { return None };
                let timeout = self.loaded.settings.coalesce[index].timeout_seconds?;
                Some(entry.first_arrival + std::time::Duration::from_secs_f64(timeout))
            })
            .min()
    }

    /// Resolves every entry whose timeout passed; returns whether any did.
    pub(crate) fn fire_coalesce_timers(&mut self, queue: &mut VecDeque<Work>) -> Result<bool, EngineError> {
        let before = self.coalesces.entries.len();
        for node in self.graph.pipeline.clone() {
            if let crate::dag::NodeKind::Coalesce(index) = self.graph.nodes[node].kind {
                self.expire_timeouts(node, index, queue)?;
            }
        }
        Ok(self.coalesces.entries.len() < before)
    }

    /// Entries of this coalesce whose timeout passed are resolved now.
    fn expire_timeouts(&mut self, node: NodeIdx, index: usize, queue: &mut VecDeque<Work>) -> Result<(), EngineError> {
        let Some(timeout) = self.loaded.settings.coalesce[index].timeout_seconds else { return Ok(()) };
        let now = self.clock.now();
        let expired: Vec<(NodeIdx, ForkGroupId)> = self
            .coalesces
            .entries
            .iter()
            .filter(|((n, _), entry)| *n == node && now.saturating_duration_since(entry.first_arrival).as_secs_f64() >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.resolve(key, index, Some(format!("timeout after {timeout} s")), queue)?;
        }
        Ok(())
    }

    /// End of source: every waiting entry is resolved by its policy.
    pub(crate) fn resolve_coalesces_at_end(&mut self) -> Result<(), EngineError> {
        let mut keys: Vec<(NodeIdx, ForkGroupId)> = self.coalesces.entries.keys().cloned().collect();
        keys.sort_by(|a, b| (self.graph.nodes[a.0].step, a.1.as_str()).cmp(&(self.graph.nodes[b.0].step, b.1.as_str())));
        for key in keys {
            let crate::dag::NodeKind::Coalesce(index) = self.graph.nodes[key.0].kind else {
                return Err(EngineError::Invariant("a coalesce entry on a node that does not coalesce".into()));
            };
            let mut queue = VecDeque::new();
            self.resolve(key, index, Some("end of source".to_owned()), &mut queue)?;
            self.drain(queue)?;
        }
        Ok(())
    }

    /// Merges or fails an entry. `cause` is why it resolves before every
    /// branch arrived (timeout, end of source).
    fn resolve(
        &mut self,
        key: (NodeIdx, ForkGroupId),
        index: usize,
        cause: Option<String>,
        queue: &mut VecDeque<Work>,
    ) -> Result<(), EngineError> {
        let Some(entry) = self.coalesces.entries.remove(&key) else { return Ok(()) };
        let losses = self.coalesces.lost.remove(&key).unwrap_or_default();
        let node = key.0;
        let settings = self.coalesce_settings(index);
        let expected: Vec<String> = settings.branches.resolved().keys().cloned().collect();
        let arrived: Vec<String> = entry.arrivals.keys().cloned().collect();
        let lost: serde_json::Map<String, serde_json::Value> = expected
            .iter()
            .filter(|b| !entry.arrivals.contains_key(*b))
            .map(|b| {
                let why = losses.get(b).cloned().or_else(|| cause.clone()).unwrap_or_else(|| "not arrived".into());
                (b.clone(), serde_json::Value::String(why))
            })
            .collect();
        let complete = lost.is_empty();
        // Remember the fork only while a branch may still come (to fail it as
        // a late arrival): a fork whose every branch is accounted for costs
        // no memory once resolved.
        if entry.arrivals.len() + losses.len() < expected.len() {
            self.coalesces.resolved.insert(key.clone());
        }
        let failure = match settings.policy {
            CoalescePolicy::RequireAll if !complete => Some("incomplete_branches"),
            CoalescePolicy::Quorum if u64::try_from(arrived.len()).unwrap_or(0) < settings.quorum_count.unwrap_or(u64::MAX) => {
                Some("quorum_not_met")
            }
            CoalescePolicy::RequireAll | CoalescePolicy::Quorum | CoalescePolicy::BestEffort | CoalescePolicy::First => None,
        }
        .or_else(|| {
            (settings.merge == MergeStrategy::Select
                && settings.select_branch.as_ref().is_some_and(|b| !entry.arrivals.contains_key(b)))
            .then_some("select_branch_missing")
        });
        let arrivals: Vec<Arrival> = entry.arrivals.into_values().collect();
        if let Some(reason) = failure {
            let mut error = serde_json::json!({
                "failure_reason": reason,
                "expected_branches": expected,
                "branches_arrived": arrived,
                "branches_lost": lost,
                "merge_policy": policy_name(settings.policy),
            });
            if let Some(cause) = &cause {
                error["cause"] = serde_json::json!(cause);
            }
            if let Some(t) = settings.timeout_seconds {
                error["timeout_ms"] = serde_json::json!(t * 1000.0);
            }
            if let Some(b) = &settings.select_branch {
                error["select_branch"] = serde_json::json!(b);
            }
            return self.fail_arrivals(arrivals, &error);
        }
        // Merge in declared branch order.
        let mut by_branch: IndexMap<String, &Arrival> = IndexMap::new();
        for branch in &expected {
            if let Some(arrival) = arrivals.iter().find(|a| branch_of(&a.token) == Some(branch.as_str())) {
                by_branch.insert(branch.clone(), arrival);
            }
        }
        let mut collisions: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        let merged = match settings.merge {
            MergeStrategy::Union => {
                let mut merged = Row::new();
                let mut providers: IndexMap<String, Vec<String>> = IndexMap::new();
                for (branch, arrival) in &by_branch {
                    for (field, value) in &arrival.row {
                        providers.entry(field.clone()).or_default().push(branch.clone());
                        let keep_first =
                            settings.union_collision_policy == UnionCollisionPolicy::FirstWins && merged.contains_key(field);
                        if !keep_first {
                            merged.insert(field.clone(), value.clone());
                        }
                    }
                }
                for (field, branches) in providers.into_iter().filter(|(_, b)| b.len() > 1) {
                    let differ = {
                        let values: Vec<&Value> = by_branch.values().filter_map(|a| a.row.get(&field)).collect();
                        values.windows(2).any(|w| w[0] != w[1])
                    };
                    if differ || settings.union_collision_policy != UnionCollisionPolicy::Fail {
                        collisions.insert(field, serde_json::json!(branches));
                    }
                }
                if settings.union_collision_policy == UnionCollisionPolicy::Fail && !collisions.is_empty() {
                    let error = serde_json::json!({
                        "failure_reason": "union_collision",
                        "expected_branches": expected,
                        "branches_arrived": arrived,
                        "merge_policy": policy_name(settings.policy),
                        "union_field_collisions": collisions,
                    });
                    return self.fail_arrivals(arrivals, &error);
                }
                merged
            }
            MergeStrategy::Nested => by_branch.iter().map(|(branch, a)| (branch.clone(), Value::Object(a.row.clone()))).collect(),
            MergeStrategy::Select => {
                let selected = settings
                    .select_branch
                    .as_ref()
                    .and_then(|b| by_branch.get(b))
                    .ok_or_else(|| EngineError::Invariant("select branch vanished".into()))?;
                selected.row.clone()
            }
        };
        let merged_value = Value::Object(merged);
        let merged_hash: ContentHash = stable_hash(&merged_value).map_err(LandscapeError::from)?;
        let Value::Object(merged) = merged_value else { unreachable!("constructed as an object") };
        let parents: Vec<&Token> = arrivals.iter().map(|a| &a.token).collect();
        let (joined, join_group_id) = self.recorder.coalesce_tokens(&parents, self.graph.nodes[node].step)?;
        let first = arrivals.iter().map(|a| a.arrived_at).min().unwrap_or_else(Instant::now);
        let arrival_order: Vec<serde_json::Value> = arrivals
            .iter()
            .map(|a| serde_json::json!({"branch": branch_of(&a.token), "arrival_offset_ms": a.arrived_at.duration_since(first).as_secs_f64() * 1000.0}))
            .collect();
        let mut metadata = serde_json::json!({
            "policy": policy_name(settings.policy),
            "merge_strategy": merge_name(settings.merge),
            "expected_branches": expected,
            "branches_arrived": arrived,
            "branches_lost": lost,
            "arrival_order": arrival_order,
            "wait_duration_ms": self.clock.now().saturating_duration_since(first).as_secs_f64() * 1000.0,
            "union_field_collisions": collisions,
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
        let context = canonical_json(&metadata).map_err(LandscapeError::from)?;
        for arrival in &arrivals {
            let completion = StateCompletion::Completed {
                output_hash: merged_hash.clone(),
                context_after_json: Some(context.clone()),
                success_reason_json: None,
            };
            self.recorder.complete_node_state(
                &arrival.state_id,
                &completion,
                self.clock.now().saturating_duration_since(arrival.arrived_at).as_secs_f64() * 1000.0,
            )?;
            self.outcome(&arrival.token, OutcomeDetail::Coalesced { join_group_id: join_group_id.clone() }, Some(&metadata))?;
        }
        self.route_from(Work { token: joined, row: merged, hash: merged_hash, at: node, fork_group: None }, node, queue)
    }

    /// Fails every arrived token: its open state and its outcome.
    fn fail_arrivals(&mut self, arrivals: Vec<Arrival>, error: &serde_json::Value) -> Result<(), EngineError> {
        let error_json = canonical_json(error).map_err(LandscapeError::from)?;
        let hash = error_hash(&error_json);
        for arrival in arrivals {
            let completion =
                StateCompletion::Failed { error_json: error_json.clone(), output_hash: None, context_after_json: None };
            self.recorder.complete_node_state(
                &arrival.state_id,
                &completion,
                self.clock.now().saturating_duration_since(arrival.arrived_at).as_secs_f64() * 1000.0,
            )?;
            self.outcome(&arrival.token, OutcomeDetail::Failed { error_hash: hash.clone(), batch_id: None }, None)?;
        }
        Ok(())
    }

    /// A run that stops leaves no open coalesce state: waiting arrivals fail.
    /// An interrupted run keeps its waiting branches for resume; their
    /// states close PENDING (waiting for the other branches), so no state is
    /// left open.
    pub(crate) fn park_coalesces(&mut self) -> Result<(), EngineError> {
        let mut to_park = Vec::new();
        let now = self.clock.now();
        for ((node, _), entry) in &mut self.coalesces.entries {
            for arrival in entry.arrivals.values_mut().filter(|a| !a.parked) {
                arrival.parked = true;
                to_park.push((*node, arrival.state_id.clone(), now.saturating_duration_since(arrival.arrived_at)));
            }
        }
        for (node, state_id, waited) in to_park {
            let context = serde_json::json!({"waiting_at": self.graph.nodes[node].name, "reason": "run interrupted"});
            let context = canonical_json(&context).map_err(landscape::LandscapeError::from)?;
            self.recorder.complete_node_state(
                &state_id,
                &StateCompletion::Pending { context_after_json: Some(context) },
                waited.as_secs_f64() * 1000.0,
            )?;
        }
        Ok(())
    }

    pub(crate) fn abandon_coalesces(&mut self, reason: &str) -> Result<(), EngineError> {
        let entries: Vec<Entry> = self.coalesces.entries.drain().map(|(_, e)| e).collect();
        for entry in entries {
            let error = serde_json::json!({"failure_reason": "run_stopped", "reason": reason});
            self.fail_arrivals(entry.arrivals.into_values().collect(), &error)?;
        }
        Ok(())
    }

    /// The waiting entries, the forks that may still see late arrivals and
    /// the recorded branch losses, for a checkpoint.
    pub(crate) fn coalesce_snapshot(&self) -> serde_json::Value {
        let mut entries: Vec<serde_json::Value> = self
            .coalesces
            .entries
            .iter()
            .map(|((node, group), entry)| {
                let arrivals: Vec<serde_json::Value> = entry
                    .arrivals
                    .iter()
                    .map(|(branch, a)| {
                        let mut json = super::checkpoint::token_row_json(&a.token, &a.row);
                        json["branch"] = serde_json::json!(branch);
                        json["state_id"] = serde_json::json!(a.state_id.as_str());
                        json
                    })
                    .collect();
                serde_json::json!({"node": node, "fork_group": group.as_str(), "arrivals": arrivals})
            })
            .collect();
        entries.sort_by_key(ToString::to_string);
        let mut resolved: Vec<serde_json::Value> =
            self.coalesces.resolved.iter().map(|(node, group)| serde_json::json!([node, group.as_str()])).collect();
        resolved.sort_by_key(ToString::to_string);
        let mut lost: Vec<serde_json::Value> = self
            .coalesces
            .lost
            .iter()
            .map(|((node, group), branches)| serde_json::json!([node, group.as_str(), branches]))
            .collect();
        lost.sort_by_key(ToString::to_string);
        serde_json::json!({"entries": entries, "resolved": resolved, "lost": lost})
    }

    /// Restores the coalesce state; waiting times start again.
    pub(crate) fn restore_coalesce(&mut self, saved: &serde_json::Value) -> Result<(), EngineError> {
        let damaged = || EngineError::Resume("the checkpoint's coalesce state is damaged".into());
        let key_of = |node: &serde_json::Value, group: &serde_json::Value| -> Result<(NodeIdx, ForkGroupId), EngineError> {
            let node = node.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(damaged)?;
            Ok((node, ForkGroupId::parse(group.as_str().ok_or_else(damaged)?).map_err(landscape::LandscapeError::from)?))
        };
        let now = self.clock.now();
        for entry in saved["entries"].as_array().into_iter().flatten() {
            let key = key_of(&entry["node"], &entry["fork_group"])?;
            let mut arrivals = IndexMap::new();
            for arrival in entry["arrivals"].as_array().into_iter().flatten() {
                let (token, row) = self.token_row_from_json(arrival)?;
                let state_id =
                    StateId::parse(arrival["state_id"].as_str().ok_or_else(damaged)?).map_err(landscape::LandscapeError::from)?;
                let branch = arrival["branch"].as_str().ok_or_else(damaged)?.to_owned();
                let parked = self.recorder.get_node_state(&state_id)?.status() == contracts::NodeStateStatus::Pending;
                arrivals.insert(branch, Arrival { token, row, state_id, arrived_at: now, parked });
            }
            self.coalesces.entries.insert(key, Entry { first_arrival: now, arrivals });
        }
        for pair in saved["resolved"].as_array().into_iter().flatten() {
            self.coalesces.resolved.insert(key_of(&pair[0], &pair[1])?);
        }
        for triple in saved["lost"].as_array().into_iter().flatten() {
            let key = key_of(&triple[0], &triple[1])?;
            let branches: IndexMap<String, String> = serde_json::from_value(triple[2].clone()).map_err(|_| damaged())?;
            self.coalesces.lost.insert(key, branches);
        }
        Ok(())
    }
}
