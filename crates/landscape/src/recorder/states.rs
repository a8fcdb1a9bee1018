//! Node states (open → pending | completed | failed, pending → completed |
//! failed, all guarded) and routing events.

use diesel::prelude::*;

use contracts::records::{NodeState, NodeStateCommon, RoutingEvent, Token};
use contracts::{canonical_json, ContentHash, EdgeId, EventId, NodeId, NodeStateStatus, RoutingGroupId, RoutingMode, StateId};

use super::{check_duration, ensure_one, i32_of, now, Recorder};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::node_states;

/// How a node state ends (or pauses). Each variant carries exactly what its
/// status allows, so a contradictory completion cannot be expressed.
#[derive(Debug, Clone, PartialEq)]
pub enum StateCompletion {
    Completed {
        output_hash: ContentHash,
        context_after_json: Option<String>,
        success_reason_json: Option<String>,
    },
    /// Work submitted, result later.
    Pending {
        context_after_json: Option<String>,
    },
    Failed {
        error_json: String,
        output_hash: Option<ContentHash>,
        context_after_json: Option<String>,
    },
}

impl StateCompletion {
    pub fn status(&self) -> NodeStateStatus {
        match self {
            StateCompletion::Completed { .. } => NodeStateStatus::Completed,
            StateCompletion::Pending { .. } => NodeStateStatus::Pending,
            StateCompletion::Failed { .. } => NodeStateStatus::Failed,
        }
    }

    /// A failure from an error payload (`{"exception", "type", ...}` or a
    /// transform's reason object).
    pub fn failed(error: &serde_json::Value) -> Result<StateCompletion> {
        Ok(StateCompletion::Failed { error_json: canonical_json(error)?, output_hash: None, context_after_json: None })
    }
}

/// A node state to open.
#[derive(Debug, Clone)]
pub struct NewNodeState<'a> {
    pub token: &'a Token,
    pub node_id: &'a NodeId,
    pub step_index: u32,
    pub attempt: u32,
    pub input_hash: ContentHash,
    pub context_before_json: Option<String>,
}

impl Recorder {
    /// Opens a node state.
    pub fn begin_node_state(&mut self, new: NewNodeState<'_>) -> Result<NodeState> {
        let common = common_of(new);
        if self.in_unit {
            let insert = state_insert(&common, NodeStateStatus::Open, None, None, None)?;
            self.buffer.states.push(insert);
            self.buffered();
        } else {
            insert_state(self.conn()?, &common, NodeStateStatus::Open, None, None, None)?;
        }
        Ok(NodeState::Open { common })
    }

    /// Records a visit that opened and ended within one unit of work, as one
    /// insert. Equivalent to `begin_node_state` then `complete_node_state`.
    pub fn record_node_state(
        &mut self,
        new: NewNodeState<'_>,
        completion: StateCompletion,
        duration_ms: f64,
    ) -> Result<NodeState> {
        let duration_ms = check_duration(duration_ms)?;
        let common = common_of(new);
        let (at, naive) = now();
        if self.in_unit {
            let insert = state_insert(&common, completion.status(), Some(&completion), Some(duration_ms), Some(naive))?;
            self.buffer.states.push(insert);
            self.buffered();
        } else {
            insert_state(self.conn()?, &common, completion.status(), Some(&completion), Some(duration_ms), Some(naive))?;
        }
        Ok(state_of(common, completion, at, duration_ms))
    }

    /// Ends (or pauses) an open or pending state and returns it as now
    /// recorded. Any other transition is refused and nothing is written.
    pub fn complete_node_state(
        &mut self,
        state_id: &StateId,
        completion: &StateCompletion,
        duration_ms: f64,
    ) -> Result<NodeState> {
        self.end_node_state(state_id, completion, duration_ms)?;
        self.get_node_state(state_id)
    }

    /// [`Recorder::complete_node_state`] without reading the state back
    /// (the engine's hot path: it knows what it wrote).
    pub fn end_node_state(&mut self, state_id: &StateId, completion: &StateCompletion, duration_ms: f64) -> Result<()> {
        let duration_ms = check_duration(duration_ms)?;
        let target = completion.status();
        // A state begun in this unit and not written yet is completed where
        // it waits: one insert instead of an insert and an update.
        if let Some(state) = self.buffer.state_mut(state_id.as_str()).filter(|_| self.in_unit) {
            let current: NodeStateStatus = state.status.parse()?;
            if !current.can_transition_to(target) {
                return Err(LandscapeError::IllegalTransition(format!(
                    "node state {state_id} is {current}; it cannot become {target}"
                )));
            }
            let (output_hash, error_json, success_reason_json, context_after_json) = completion_columns(completion);
            state.status = target.as_str();
            state.output_hash = output_hash.map(str::to_owned);
            state.error_json = error_json.map(str::to_owned);
            state.success_reason_json = success_reason_json.map(str::to_owned);
            state.context_after_json = context_after_json.map(str::to_owned);
            state.duration_ms = Some(duration_ms);
            state.completed_at = Some(crate::models::DbTime(now().1));
            return Ok(());
        }
        // The states `target` may follow, as a fixed two-value filter (a
        // statement of fixed shape is prepared once); a third is unused.
        let mut from = NodeStateStatus::ALL.iter().filter(|s| s.can_transition_to(target)).map(|s| s.as_str());
        let (first, second) = (from.next().unwrap_or(""), from.next().unwrap_or(""));
        if from.next().is_some() {
            return Err(LandscapeError::integrity(format!("{target} follows more than two states")));
        }
        let (_, naive) = now();
        let (output_hash, error_json, success_reason_json, context_after_json) = completion_columns(completion);
        let affected = diesel::update(
            node_states::table
                .filter(node_states::state_id.eq(state_id.as_str()))
                .filter(node_states::status.eq(first).or(node_states::status.eq(second))),
        )
        .set((
            node_states::status.eq(target.as_str()),
            node_states::output_hash.eq(output_hash),
            node_states::error_json.eq(error_json),
            node_states::success_reason_json.eq(success_reason_json),
            node_states::context_after_json.eq(context_after_json),
            node_states::duration_ms.eq(duration_ms),
            node_states::completed_at.eq(naive),
        ))
        .execute(self.conn()?)?;
        if affected == 0 {
            let current = self.get_node_state(state_id)?;
            return Err(LandscapeError::IllegalTransition(format!(
                "node state {state_id} is {}; it cannot become {target}",
                current.status()
            )));
        }
        ensure_one(affected, || format!("completion of node state {state_id}"))
    }

    /// Records one routing decision: one event per edge, sharing a group id,
    /// ordinals in order, one reason hash. Atomic.
    pub fn record_routing_events(
        &mut self,
        state_id: &StateId,
        routes: &[(EdgeId, RoutingMode)],
        reason: Option<&serde_json::Value>,
    ) -> Result<Vec<RoutingEvent>> {
        if routes.is_empty() {
            return Ok(Vec::new());
        }
        let (reason_hash, reason_ref) = match reason {
            Some(reason) => {
                let canonical = canonical_json(reason)?;
                (Some(ContentHash::of_bytes(canonical.as_bytes())), self.store_payload(canonical.as_bytes())?)
            }
            None => (None, None),
        };
        let group = RoutingGroupId::new();
        let (at, _) = now();
        let events: Vec<RoutingEvent> = routes
            .iter()
            .enumerate()
            .map(|(ordinal, (edge_id, mode))| RoutingEvent {
                event_id: EventId::new(),
                state_id: state_id.clone(),
                edge_id: edge_id.clone(),
                routing_group_id: group.clone(),
                ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                mode: *mode,
                reason_hash: reason_hash.clone(),
                reason_ref: reason_ref.clone(),
                created_at: at,
            })
            .collect();
        // One write path: converted first (all or nothing), buffered in a
        // unit, written at once (one statement) outside one.
        let inserts = events.iter().map(super::buffer::EventInsert::of).collect::<Result<Vec<_>>>()?;
        self.buffer.events.extend(inserts);
        self.pushed()?;
        Ok(events)
    }
}

/// A node state as the write buffer holds it.
fn state_insert(
    common: &NodeStateCommon,
    status: NodeStateStatus,
    completion: Option<&StateCompletion>,
    duration_ms: Option<f64>,
    completed_at: Option<chrono::NaiveDateTime>,
) -> Result<super::buffer::StateInsert> {
    let (output_hash, error_json, success_reason_json, context_after_json) =
        completion.map_or((None, None, None, None), completion_columns);
    Ok(super::buffer::StateInsert {
        state_id: common.state_id.as_str().to_owned(),
        token_id: common.token_id.as_str().to_owned(),
        run_id: common.run_id.as_str().to_owned(),
        node_id: common.node_id.as_str().to_owned(),
        step_index: i32_of("step_index", common.step_index)?,
        attempt: i32_of("attempt", common.attempt)?,
        status: status.as_str(),
        input_hash: common.input_hash.as_str().to_owned(),
        output_hash: output_hash.map(str::to_owned),
        context_before_json: common.context_before_json.clone(),
        context_after_json: context_after_json.map(str::to_owned),
        duration_ms,
        error_json: error_json.map(str::to_owned),
        success_reason_json: success_reason_json.map(str::to_owned),
        started_at: crate::models::DbTime(common.started_at.naive_utc()),
        completed_at: completed_at.map(crate::models::DbTime),
    })
}

fn common_of(new: NewNodeState<'_>) -> NodeStateCommon {
    NodeStateCommon {
        state_id: StateId::new(),
        token_id: new.token.token_id.clone(),
        run_id: new.token.run_id.clone(),
        node_id: new.node_id.clone(),
        step_index: new.step_index,
        attempt: new.attempt,
        input_hash: new.input_hash,
        context_before_json: new.context_before_json,
        started_at: now().0,
    }
}

type Columns<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn completion_columns(completion: &StateCompletion) -> Columns<'_> {
    match completion {
        StateCompletion::Completed { output_hash, context_after_json, success_reason_json } => {
            (Some(output_hash.as_str()), None, success_reason_json.as_deref(), context_after_json.as_deref())
        }
        StateCompletion::Pending { context_after_json } => (None, None, None, context_after_json.as_deref()),
        StateCompletion::Failed { error_json, output_hash, context_after_json } => {
            (output_hash.as_ref().map(ContentHash::as_str), Some(error_json.as_str()), None, context_after_json.as_deref())
        }
    }
}

fn insert_state(
    conn: &mut DbConnection,
    common: &NodeStateCommon,
    status: NodeStateStatus,
    completion: Option<&StateCompletion>,
    duration_ms: Option<f64>,
    completed_at: Option<chrono::NaiveDateTime>,
) -> Result<()> {
    let (output_hash, error_json, success_reason_json, context_after_json) =
        completion.map_or((None, None, None, None), completion_columns);
    let affected = crate::on_backend!(conn, |c| diesel::insert_into(node_states::table)
        .values((
            node_states::state_id.eq(common.state_id.as_str()),
            node_states::token_id.eq(common.token_id.as_str()),
            node_states::run_id.eq(common.run_id.as_str()),
            node_states::node_id.eq(common.node_id.as_str()),
            node_states::step_index.eq(i32_of("step_index", common.step_index)?),
            node_states::attempt.eq(i32_of("attempt", common.attempt)?),
            node_states::status.eq(status.as_str()),
            node_states::input_hash.eq(common.input_hash.as_str()),
            node_states::output_hash.eq(output_hash),
            node_states::context_before_json.eq(common.context_before_json.as_deref()),
            node_states::context_after_json.eq(context_after_json),
            node_states::duration_ms.eq(duration_ms),
            node_states::error_json.eq(error_json),
            node_states::success_reason_json.eq(success_reason_json),
            node_states::started_at.eq(common.started_at.naive_utc()),
            node_states::completed_at.eq(completed_at),
        ))
        .execute(c))?;
    ensure_one(affected, || format!("insert of node state {}", common.state_id))
}

fn state_of(
    common: NodeStateCommon,
    completion: StateCompletion,
    completed_at: contracts::Timestamp,
    duration_ms: f64,
) -> NodeState {
    match completion {
        StateCompletion::Completed { output_hash, context_after_json, success_reason_json } => {
            NodeState::Completed { common, output_hash, completed_at, duration_ms, context_after_json, success_reason_json }
        }
        StateCompletion::Pending { context_after_json } => {
            NodeState::Pending { common, completed_at, duration_ms, context_after_json }
        }
        StateCompletion::Failed { error_json, output_hash, context_after_json } => {
            NodeState::Failed { common, output_hash, completed_at, duration_ms, error_json, context_after_json }
        }
    }
}
