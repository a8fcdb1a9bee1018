//! External calls: paged lists (of a node state, an operation, or a whole
//! run) and their usage per node, call type and status.

use diesel::dsl::{count_star, max, sum};
use diesel::prelude::*;
use serde::Serialize;

use contracts::records::Call;
use contracts::{CallStatus, CallType, OperationId, RunId, StateId};

use super::{count, Page, Paged};
use crate::error::Result;
use crate::loaders;
use crate::models::CallRow;
use crate::schema::{calls, node_states, operations};

diesel::allow_columns_to_appear_in_same_group_by_clause!(node_states::node_id, calls::call_type, calls::status);
diesel::allow_columns_to_appear_in_same_group_by_clause!(operations::node_id, calls::call_type, calls::status);
use crate::Recorder;

/// Which calls to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallsFilter {
    /// Only the calls of this node state.
    pub state: Option<StateId>,
    /// Only the calls of this source/sink operation.
    pub operation: Option<OperationId>,
    pub call_type: Option<CallType>,
    pub status: Option<CallStatus>,
}

/// Calls of one node (through its node states or its operations), per type and status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallUsage {
    pub node_id: String,
    pub plugin_name: String,
    pub call_type: String,
    pub status: String,
    pub calls: u64,
    pub total_latency_ms: f64,
    pub mean_latency_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

/// Node, call type, status, count, latency sum and greatest latency.
type Grouped = (String, String, String, i64, Option<f64>, Option<f64>);

impl Recorder {
    /// Calls of a run, narrowed by `filter`, by creation time and index.
    pub fn calls_page(&mut self, run_id: &RunId, filter: &CallsFilter, page: Page) -> Result<Paged<Call>> {
        let (offset, limit) = page.sql();
        let run = run_id.as_str();
        let in_run = || {
            calls::state_id
                .eq_any(node_states::table.filter(node_states::run_id.eq(run)).select(node_states::state_id.nullable()))
                .or(calls::operation_id
                    .eq_any(operations::table.filter(operations::run_id.eq(run)).select(operations::operation_id.nullable())))
        };
        let narrowed = || {
            let mut query = calls::table.filter(in_run()).into_boxed();
            if let Some(state) = &filter.state {
                query = query.filter(calls::state_id.eq(state.as_str()));
            }
            if let Some(operation) = &filter.operation {
                query = query.filter(calls::operation_id.eq(operation.as_str()));
            }
            if let Some(call_type) = filter.call_type {
                query = query.filter(calls::call_type.eq(call_type.as_str()));
            }
            if let Some(status) = filter.status {
                query = query.filter(calls::status.eq(status.as_str()));
            }
            query
        };
        let conn = self.conn()?;
        let total: i64 = narrowed().count().get_result(conn)?;
        let found: Vec<CallRow> = narrowed()
            .order((calls::created_at.asc(), calls::call_index.asc(), calls::call_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(CallRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::call).collect::<Result<_>>()?, page, total))
    }

    /// How many calls each node made, per call type and status, with latencies.
    pub fn call_usage(&mut self, run_id: &RunId) -> Result<Vec<CallUsage>> {
        let run = run_id.as_str();
        let nodes = self.get_nodes(run_id)?;
        let conn = self.conn()?;
        // Calls per node, type and status, through the table that owns them.
        macro_rules! grouped {
            ($owner:ident, $key:ident) => {
                calls::table
                    .inner_join($owner::table.on($owner::$key.nullable().eq(calls::$key)))
                    .filter($owner::run_id.eq(run))
                    .group_by(($owner::node_id, calls::call_type, calls::status))
                    .select((
                        $owner::node_id,
                        calls::call_type,
                        calls::status,
                        count_star(),
                        sum(calls::latency_ms),
                        max(calls::latency_ms),
                    ))
                    .load::<Grouped>(conn)?
            };
        }
        let by_state = grouped!(node_states, state_id);
        let by_operation = grouped!(operations, operation_id);
        let mut usage: Vec<CallUsage> = by_state
            .into_iter()
            .chain(by_operation)
            .map(|(node_id, call_type, status, n, total, max)| CallUsage {
                plugin_name: nodes
                    .iter()
                    .find(|node| node.node_id.as_str() == node_id)
                    .map_or_else(String::new, |node| node.plugin_name.clone()),
                node_id,
                call_type,
                status,
                calls: count(n),
                total_latency_ms: total.unwrap_or(0.0),
                mean_latency_ms: total.filter(|_| n > 0).map(|t| t / n as f64),
                max_latency_ms: max,
            })
            .collect();
        usage.sort_by(|a, b| (&a.node_id, &a.call_type, &a.status).cmp(&(&b.node_id, &b.call_type, &b.status)));
        Ok(usage)
    }
}

impl Recorder {
    /// One call with its request and response as the payload store holds them.
    pub fn call_with_payloads(
        &mut self,
        call_id: &contracts::CallId,
    ) -> Result<(Call, crate::lineage::Payload, crate::lineage::Payload)> {
        let found: Vec<CallRow> =
            calls::table.filter(calls::call_id.eq(call_id.as_str())).limit(1).select(CallRow::as_select()).load(self.conn()?)?;
        let row = found.into_iter().next().ok_or_else(|| crate::LandscapeError::NotFound(format!("call {call_id}")))?;
        let call = loaders::call(row)?;
        let what = format!("call {call_id}");
        let request = crate::lineage::load_payload(self.payload_store(), call.request_ref.as_deref(), &what)?;
        let response = crate::lineage::load_payload(self.payload_store(), call.response_ref.as_deref(), &what)?;
        Ok((call, request, response))
    }
}
