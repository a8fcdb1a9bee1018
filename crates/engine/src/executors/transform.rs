//! The transform executor: one node state per attempt (completed with the
//! output hash, or failed), the calls the plugin made attached to it, retries
//! of transient errors after the retry delay, 1→N expansion into child
//! tokens, and error results routed to `on_error` (diverted to a sink or
//! discarded) with a `transform_errors` row.
//!
//! Running a row ([`run_attempts`]) is apart from recording it
//! ([`record_attempts`]): a pooled transform runs rows on worker threads
//! (the pool, `executors/pool.rs`) and the processor records them in
//! source order.

use std::time::Instant;

use contracts::plugin::{CallRecord, PluginContext, PluginError, Transform, TransformResult};
use contracts::records::OutcomeDetail;
use contracts::{canonical_json, error_hash, stable_hash, ContentHash, RoutingMode, Row, RowOutcome, Value};
use landscape::recorder::{NewTransformError, StateCompletion};

use crate::dag::NodeIdx;
use crate::decisions::retry;
use crate::runtime::{execution_error, guarded, ms, Clock, Delivery, DeliveryKind, Emitted, EngineError, RunContext, Work};
use crate::settings::RetrySettings;

/// One attempt at one row: what the plugin returned, the calls it made,
/// and how long it took. Each becomes one node state.
pub(crate) struct Attempt {
    pub(crate) result: Result<TransformResult, PluginError>,
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) duration_ms: f64,
}

/// Runs a transform on a row until it returns, fails for good or runs out
/// of attempts; a transient failure is tried again after the retry delay.
pub(crate) fn run_attempts(
    plugin: &dyn Transform,
    row: &Row,
    context: &mut PluginContext,
    retry: &RetrySettings,
    clock: &dyn Clock,
) -> Vec<Attempt> {
    let max_attempts = retry.max_attempts.max(1);
    let mut attempts = Vec::with_capacity(1);
    for attempt in 0..max_attempts {
        let started = Instant::now();
        let result = guarded(|| plugin.process(row.clone(), context));
        let transient = matches!(result, Err(PluginError::Transient(_)));
        attempts.push(Attempt { result, calls: context.take_calls(), duration_ms: ms(started.elapsed()) });
        if !transient || attempt + 1 == max_attempts {
            break;
        }
        // A replay has nothing to wait for.
        if !context.replaying() {
            clock.sleep(retry::delay(retry, attempt));
        }
    }
    attempts
}

/// Runs transform `index` on a token here and now, and records it.
pub(crate) fn execute(ctx: &mut RunContext<'_>, work: Work, index: usize, out: &mut Emitted) -> Result<(), EngineError> {
    let node = work.at;
    let plugin = std::sync::Arc::clone(&ctx.plugins.transforms[index]);
    let clock = std::sync::Arc::clone(&ctx.clock);
    let attempts = run_attempts(&*plugin, &work.row, &mut ctx.contexts[node], &ctx.loaded.settings.retry, &*clock);
    record_attempts(ctx, work, index, attempts, out)
}

/// Records a row's attempts, one node state each, in order, and sends the
/// token on (or ends it) by the last one.
pub(crate) fn record_attempts(
    ctx: &mut RunContext<'_>,
    work: Work,
    index: usize,
    attempts: Vec<Attempt>,
    out: &mut Emitted,
) -> Result<(), EngineError> {
    let node = work.at;
    let count = attempts.len();
    for (number, Attempt { result, calls, duration_ms: duration }) in attempts.into_iter().enumerate() {
        let attempt = u32::try_from(number).map_err(|_| EngineError::Invariant("too many attempts".into()))?;
        match result {
            Ok(TransformResult::Row { row, success_reason }) => {
                let value = Value::Object(row);
                let output_hash = succeeded(ctx, &work, node, attempt, duration, &value, success_reason.as_ref(), calls)?;
                let Value::Object(row) = value else { unreachable!("constructed as an object") };
                return ctx.route_from(Work { row, hash: output_hash, at: node, ..work }, node, out);
            }
            Ok(TransformResult::Rows { rows, success_reason }) => {
                if !ctx.plugins.transforms[index].creates_tokens() {
                    let message = "the transform returned several rows but does not create tokens";
                    return Err(plugin_bug(ctx, &work, node, attempt, duration, message));
                }
                let list = Value::List(rows.into_iter().map(Value::Object).collect());
                succeeded(ctx, &work, node, attempt, duration, &list, success_reason.as_ref(), calls)?;
                let Value::List(values) = list else { unreachable!("constructed as a list") };
                return expand(ctx, work, node, values, out);
            }
            Ok(TransformResult::Error { reason }) => {
                let reason = serde_json::Value::Object(reason);
                return error_result(ctx, work, node, index, attempt, duration, &reason, calls, out);
            }
            Err(PluginError::Transient(message)) => {
                let error = execution_error(&message, "TransientError");
                let state =
                    ctx.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(&error)?, duration)?;
                ctx.write_calls(&state.common().state_id, calls)?;
                if number + 1 < count {
                    continue;
                }
                let text = format!("max_retries_exceeded: {message}");
                return ctx.outcome(&work.token, OutcomeDetail::Failed { error_hash: error_hash(&text), batch_id: None }, None);
            }
            Err(source) => {
                let error = execution_error(&source.to_string(), "PluginError");
                let state =
                    ctx.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(&error)?, duration)?;
                ctx.write_calls(&state.common().state_id, calls)?;
                let failed = OutcomeDetail::Failed { error_hash: error_hash(&source.to_string()), batch_id: None };
                ctx.outcome(&work.token, failed, None)?;
                let name = &ctx.graph.nodes[node].name;
                return Err(EngineError::Plugin { node: format!("transform {name}"), source });
            }
        }
    }
    Err(EngineError::Invariant(format!("transform {} made no attempt", ctx.graph.nodes[node].name)))
}

/// 1→N: the parent ends EXPANDED, each child token goes on with its row.
fn expand(ctx: &mut RunContext<'_>, work: Work, node: NodeIdx, values: Vec<Value>, out: &mut Emitted) -> Result<(), EngineError> {
    let count = u32::try_from(values.len()).map_err(|_| EngineError::Invariant("too many rows".into()))?;
    let (children, _) = ctx.recorder.expand_token(&work.token, count, ctx.graph.nodes[node].step, true)?;
    ctx.count(RowOutcome::Expanded, None);
    for (child, value) in children.into_iter().zip(values) {
        let hash = stable_hash(&value)?;
        let Value::Object(row) = value else { unreachable!("constructed from rows") };
        ctx.route_from(Work { token: child, row, hash, at: node, fork_group: work.fork_group.clone() }, node, out)?;
    }
    Ok(())
}

/// A plugin broke its contract: the visit is recorded failed, the token
/// failed, and the run stops with the returned error.
fn plugin_bug(ctx: &mut RunContext<'_>, work: &Work, node: NodeIdx, attempt: u32, duration: f64, message: &str) -> EngineError {
    let error = execution_error(message, "PluginContractViolation");
    let recorded = StateCompletion::failed(&error)
        .map_err(EngineError::from)
        .and_then(|failed| ctx.visit(&work.token, node, attempt, work.hash.clone(), failed, duration))
        .and_then(|_| ctx.outcome(&work.token, OutcomeDetail::Failed { error_hash: error_hash(message), batch_id: None }, None));
    match recorded {
        Ok(()) => {
            EngineError::Plugin { node: ctx.graph.nodes[node].name.clone(), source: PluginError::Contract(message.to_owned()) }
        }
        Err(error) => error,
    }
}

/// Records a successful visit with the hash of its output.
#[allow(clippy::too_many_arguments, reason = "the visit's identity, its output and its calls")]
fn succeeded(
    ctx: &mut RunContext<'_>,
    work: &Work,
    node: NodeIdx,
    attempt: u32,
    duration: f64,
    output: &Value,
    success_reason: Option<&serde_json::Value>,
    calls: Vec<CallRecord>,
) -> Result<ContentHash, EngineError> {
    let Ok(output_hash) = stable_hash(output) else {
        return Err(plugin_bug(ctx, work, node, attempt, duration, "the transform emitted a value that cannot be canonicalised"));
    };
    let success_reason_json = success_reason.map(canonical_json).transpose()?;
    let completion =
        StateCompletion::Completed { output_hash: output_hash.clone(), context_after_json: None, success_reason_json };
    let state = ctx.visit(&work.token, node, attempt, work.hash.clone(), completion, duration)?;
    ctx.write_calls(&state.common().state_id, calls)?;
    Ok(output_hash)
}

/// An error result: the visit fails with the reason, a `transform_errors`
/// row is written, and the token is diverted to the error sink or
/// discarded (QUARANTINED without a sink).
#[allow(clippy::too_many_arguments, reason = "the visit's identity and the emitter; grouping them would only rename them")]
fn error_result(
    ctx: &mut RunContext<'_>,
    work: Work,
    node: NodeIdx,
    index: usize,
    attempt: u32,
    duration: f64,
    reason: &serde_json::Value,
    calls: Vec<CallRecord>,
    out: &mut Emitted,
) -> Result<(), EngineError> {
    let settings = &ctx.loaded.settings.transforms[index];
    let destination = settings.on_error.clone();
    let name = settings.name.clone();
    let state = ctx.visit(&work.token, node, attempt, work.hash.clone(), StateCompletion::failed(reason)?, duration)?;
    ctx.write_calls(&state.common().state_id, calls)?;
    ctx.recorder.record_transform_error(
        &ctx.run_id,
        &NewTransformError {
            token_id: &work.token.token_id,
            transform_id: &ctx.graph.nodes[node].id,
            row: &Value::Object(work.row.clone()),
            error_details: reason,
            destination: &destination,
        },
    )?;
    let hash = error_hash(&canonical_json(reason)?);
    match ctx.graph.error_sink[node] {
        Some(sink) => {
            let edge = ctx.edge(node, &format!("__error_{name}__"))?;
            ctx.recorder.record_routing_events(&state.common().state_id, &[(edge, RoutingMode::Divert)], Some(reason))?;
            let delivery = Delivery { token: work.token, row: work.row, hash: work.hash, kind: DeliveryKind::Routed };
            ctx.deliver(sink, delivery, out);
            Ok(())
        }
        None => ctx.outcome(&work.token, OutcomeDetail::Quarantined { error_hash: hash, sink_name: None }, None),
    }
}
