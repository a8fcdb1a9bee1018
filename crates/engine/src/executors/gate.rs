//! The gate executor: evaluates a gate's condition on a token's row, records
//! one node state (completed with the condition, its result and the route
//! label; failed when the row's data makes the condition fail), the routing
//! event, and sends the token on: to the next node, a sink, or forked into
//! one child token per branch.

use std::time::Instant;

use contracts::records::OutcomeDetail;
use contracts::{canonical_json, error_hash, RoutingMode, RowOutcome};
use landscape::recorder::StateCompletion;

use crate::dag::{BranchTarget, NodeIdx, RouteTarget};
use crate::expression::Condition;
use crate::runtime::{execution_error, ms, Delivery, DeliveryKind, Emitted, EngineError, RunContext, Work};

/// The parsed conditions of every gate node.
pub(crate) struct GateExecutor {
    conditions: Vec<Option<Condition>>,
}

impl GateExecutor {
    /// Parses every gate's condition (indexed by node).
    pub(crate) fn new(ctx: &RunContext<'_>) -> Result<GateExecutor, EngineError> {
        let mut conditions = vec![None; ctx.graph.nodes.len()];
        for (idx, node) in ctx.graph.nodes.iter().enumerate() {
            if let crate::dag::NodeKind::Gate(i) = node.kind {
                let source = &ctx.loaded.settings.gates[i].condition;
                conditions[idx] = Some(Condition::parse(source).map_err(|e| EngineError::Config(e.to_string()))?);
            }
        }
        Ok(GateExecutor { conditions })
    }

    /// Routes a token by the gate's condition.
    pub(crate) fn execute(&self, ctx: &mut RunContext<'_>, work: Work, out: &mut Emitted) -> Result<(), EngineError> {
        let node = work.at;
        let started = Instant::now();
        let condition = self.conditions[node]
            .as_ref()
            .ok_or_else(|| EngineError::Invariant(format!("gate {} has no parsed condition", ctx.graph.nodes[node].name)))?;
        let evaluated = condition.evaluate(&work.row);
        let duration = ms(started.elapsed());
        let value = match evaluated {
            Ok(value) => value,
            Err(error) => {
                let message = error.to_string();
                return fail(ctx, &work, node, &message, error.kind, duration);
            }
        };
        let label = Condition::route_label(&value);
        let Some(target) = ctx.graph.routes[node].get(&label).cloned() else {
            let message = format!("condition returned {label:?}, which is not one of the gate's routes");
            return fail(ctx, &work, node, &message, "RouteError", duration);
        };
        let context = serde_json::json!({"condition": condition.source, "result": value.py_str(), "route_label": label});
        let completion = StateCompletion::Completed {
            output_hash: work.hash.clone(),
            context_after_json: Some(canonical_json(&context)?),
            success_reason_json: None,
        };
        let state = ctx.visit(&work.token, node, 0, work.hash.clone(), completion, duration)?;
        let state_id = state.common().state_id.clone();
        let reason = serde_json::json!({"condition": condition.source, "result": label});
        match target {
            RouteTarget::Sink(sink) => {
                let edge = ctx.edge(node, &label)?;
                ctx.recorder.record_routing_events(&state_id, &[(edge, RoutingMode::Move)], Some(&reason))?;
                let delivery = Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Routed };
                ctx.deliver(sink, delivery, out);
            }
            RouteTarget::Node(next) => {
                let edge = ctx.edge(node, &label)?;
                ctx.recorder.record_routing_events(&state_id, &[(edge, RoutingMode::Move)], Some(&reason))?;
                out.queue.push_back(Work { at: next, ..work });
            }
            RouteTarget::Fork => fork(ctx, work, node, &state_id, &reason, out)?,
        }
        Ok(())
    }
}

/// The condition failed on this row's data: the token fails, the run goes on.
fn fail(
    ctx: &mut RunContext<'_>,
    work: &Work,
    node: NodeIdx,
    message: &str,
    kind: &str,
    duration: f64,
) -> Result<(), EngineError> {
    let failure = execution_error(message, kind);
    ctx.visit(&work.token, node, 0, work.hash.clone(), StateCompletion::failed(&failure)?, duration)?;
    ctx.outcome(&work.token, OutcomeDetail::Failed { error_hash: error_hash(message), batch_id: None }, None)
}

/// One child token per branch, each sent to its branch's target.
fn fork(
    ctx: &mut RunContext<'_>,
    work: Work,
    node: NodeIdx,
    state_id: &contracts::StateId,
    reason: &serde_json::Value,
    out: &mut Emitted,
) -> Result<(), EngineError> {
    let branches: Vec<String> = ctx.graph.fork_branches[node].keys().cloned().collect();
    let routes = branches.iter().map(|b| Ok((ctx.edge(node, b)?, RoutingMode::Copy))).collect::<Result<Vec<_>, EngineError>>()?;
    ctx.recorder.record_routing_events(state_id, &routes, Some(reason))?;
    let (children, fork_group) = ctx.recorder.fork_token(&work.token, &branches, ctx.graph.nodes[node].step)?;
    ctx.count(RowOutcome::Forked, None);
    for (child, branch) in children.into_iter().zip(&branches) {
        let child_work =
            Work { token: child, row: work.row.clone(), hash: work.hash.clone(), at: node, fork_group: Some(fork_group.clone()) };
        match ctx.graph.fork_branches[node].get(branch).cloned() {
            Some(BranchTarget::Sink(sink)) => {
                let Work { token, row, hash, .. } = child_work;
                ctx.deliver(sink, Delivery { token, row, hash, kind: DeliveryKind::Completed }, out);
            }
            Some(BranchTarget::Coalesce(target) | BranchTarget::Node(target)) => {
                out.queue.push_back(Work { at: target, ..child_work });
            }
            None => return Err(EngineError::Invariant(format!("fork branch {branch:?} has no target"))),
        }
    }
    Ok(())
}
