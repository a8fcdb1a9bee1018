//! External calls (parent: a node state XOR an operation) and source/sink
//! operations with a guarded lifecycle.

use diesel::prelude::*;

use contracts::records::{Call, CallOrigin, CallParent, Operation, OperationState, PayloadRef};
use contracts::{
    canonical_json, CallId, CallStatus, CallType, ContentHash, NodeId, OperationId, OperationStatus, OperationType, RunId,
};

use super::{check_duration, ensure_one, i32_of, now, Recorder};
use crate::error::{LandscapeError, Result};
use crate::schema::{calls, operations};

/// A call to record.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    pub call_type: CallType,
    pub status: CallStatus,
    pub request: &'a serde_json::Value,
    pub response: Option<&'a serde_json::Value>,
    pub error: Option<&'a serde_json::Value>,
    pub latency_ms: Option<f64>,
    pub origin: &'a CallOrigin,
}

/// How an operation ends.
#[derive(Debug, Clone)]
pub enum OperationCompletion<'a> {
    Completed { output: Option<&'a serde_json::Value> },
    Pending { output: Option<&'a serde_json::Value> },
    Failed { error_message: &'a str, output: Option<&'a serde_json::Value> },
}

impl Recorder {
    fn payload(&self, value: &serde_json::Value) -> Result<PayloadRef> {
        let canonical = canonical_json(value)?;
        Ok(PayloadRef { hash: ContentHash::of_bytes(canonical.as_bytes()), data_ref: self.store_payload(canonical.as_bytes())? })
    }

    /// The next call index of a parent: 0, 1, 2, … and, for a parent that
    /// already has calls in the database (a resumed run), max + 1.
    fn allocate_call_index(&mut self, parent: &CallParent) -> Result<u32> {
        let key = match parent {
            CallParent::State(id) => format!("s:{id}"),
            CallParent::Operation(id) => format!("o:{id}"),
        };
        if let Some(next) = self.call_indices.get_mut(&key) {
            let index = *next;
            *next += 1;
            return Ok(index);
        }
        let query = calls::table.select(diesel::dsl::max(calls::call_index)).into_boxed();
        let max: Option<i32> = match parent {
            CallParent::State(id) => query.filter(calls::state_id.eq(id.as_str())).first(self.conn()?)?,
            CallParent::Operation(id) => query.filter(calls::operation_id.eq(id.as_str())).first(self.conn()?)?,
        };
        let index = max.map_or(Ok(0), |m| u32::try_from(m + 1).map_err(|_| LandscapeError::integrity("negative call index")))?;
        self.call_indices.insert(key, index + 1);
        Ok(index)
    }

    /// Records an external call under its parent.
    pub fn record_call(&mut self, parent: &CallParent, call: &NewCall<'_>) -> Result<Call> {
        let request = self.payload(call.request)?;
        let response = call.response.map(|r| self.payload(r)).transpose()?;
        let error_json = call.error.map(canonical_json).transpose()?;
        let call_index = self.allocate_call_index(parent)?;
        let call_id = match parent {
            CallParent::State(_) => CallId::new(),
            CallParent::Operation(op) => CallId::parse(format!("call_{op}_{call_index}"))?,
        };
        let (state_id, operation_id) = match parent {
            CallParent::State(id) => (Some(id.as_str()), None),
            CallParent::Operation(id) => (None, Some(id.as_str())),
        };
        let (source_call_id, verification, differences) = match call.origin {
            CallOrigin::Live => (None, None, None),
            CallOrigin::Replayed { source_call_id } => (Some(source_call_id.as_str()), None, None),
            CallOrigin::Verified { source_call_id, verification, differences } => {
                (source_call_id.as_ref().map(CallId::as_str), Some(verification.as_str()), differences.as_deref())
            }
        };
        let (at, naive) = now();
        let affected = diesel::insert_into(calls::table)
            .values((
                calls::call_id.eq(call_id.as_str()),
                calls::state_id.eq(state_id),
                calls::operation_id.eq(operation_id),
                calls::call_index.eq(i32_of("call_index", call_index)?),
                calls::call_type.eq(call.call_type.as_str()),
                calls::status.eq(call.status.as_str()),
                calls::request_hash.eq(request.hash.as_str()),
                calls::request_ref.eq(request.data_ref.as_deref()),
                calls::response_hash.eq(response.as_ref().map(|r| r.hash.as_str())),
                calls::response_ref.eq(response.as_ref().and_then(|r| r.data_ref.as_deref())),
                calls::error_json.eq(error_json.as_deref()),
                calls::latency_ms.eq(call.latency_ms),
                calls::created_at.eq(naive),
                calls::source_call_id.eq(source_call_id),
                calls::verification_status.eq(verification),
                calls::verification_json.eq(differences),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of call {call_id}"))?;
        Ok(Call {
            call_id,
            parent: parent.clone(),
            call_index,
            call_type: call.call_type,
            status: call.status,
            request_hash: request.hash,
            request_ref: request.data_ref,
            response_hash: response.as_ref().map(|r| r.hash.clone()),
            response_ref: response.and_then(|r| r.data_ref),
            error_json,
            latency_ms: call.latency_ms,
            created_at: at,
            origin: call.origin.clone(),
        })
    }

    /// Opens a source-load or sink-write operation.
    pub fn begin_operation(
        &mut self,
        run_id: &RunId,
        node_id: &NodeId,
        operation_type: OperationType,
        input: Option<&serde_json::Value>,
    ) -> Result<Operation> {
        let input = input.map(|i| self.payload(i)).transpose()?;
        let operation_id = OperationId::new();
        let (at, naive) = now();
        let values = (
            operations::operation_id.eq(operation_id.as_str().to_owned()),
            operations::run_id.eq(run_id.as_str().to_owned()),
            operations::node_id.eq(node_id.as_str().to_owned()),
            operations::operation_type.eq(operation_type.as_str()),
            operations::started_at.eq(naive),
            operations::status.eq(OperationStatus::Open.as_str()),
            operations::input_data_ref.eq(input.as_ref().and_then(|i| i.data_ref.clone())),
            operations::input_data_hash.eq(input.as_ref().map(|i| i.hash.as_str().to_owned())),
        );
        let id = operation_id.clone();
        self.write(move |conn| {
            let affected = diesel::insert_into(operations::table).values(values).execute(conn)?;
            ensure_one(affected, || format!("insert of operation {id}"))
        })?;
        Ok(Operation {
            operation_id,
            run_id: run_id.clone(),
            node_id: node_id.clone(),
            operation_type,
            started_at: at,
            input,
            state: OperationState::Open,
        })
    }

    /// Ends an open operation; any other transition is refused (in a unit,
    /// by the unit's flush).
    pub fn complete_operation(
        &mut self,
        operation_id: &OperationId,
        completion: &OperationCompletion<'_>,
        duration_ms: f64,
    ) -> Result<()> {
        let duration_ms = check_duration(duration_ms)?;
        let (status, output, error_message) = match completion {
            OperationCompletion::Completed { output } => (OperationStatus::Completed, *output, None),
            OperationCompletion::Pending { output } => (OperationStatus::Pending, *output, None),
            OperationCompletion::Failed { error_message, output } => {
                if error_message.is_empty() {
                    return Err(LandscapeError::InvalidWrite("a failed operation needs an error message".into()));
                }
                (OperationStatus::Failed, *output, Some(*error_message))
            }
        };
        let output = output.map(|o| self.payload(o)).transpose()?;
        let from: Vec<&str> = OperationStatus::ALL.iter().filter(|s| s.can_transition_to(status)).map(|s| s.as_str()).collect();
        let changes = (
            operations::status.eq(status.as_str()),
            operations::completed_at.eq(now().1),
            operations::duration_ms.eq(duration_ms),
            operations::error_message.eq(error_message.map(str::to_owned)),
            operations::output_data_ref.eq(output.as_ref().and_then(|o| o.data_ref.clone())),
            operations::output_data_hash.eq(output.as_ref().map(|o| o.hash.as_str().to_owned())),
        );
        let id = operation_id.as_str().to_owned();
        self.write(move |conn| {
            let affected = diesel::update(
                operations::table.filter(operations::operation_id.eq(&id)).filter(operations::status.eq_any(&from)),
            )
            .set(changes)
            .execute(conn)?;
            if affected == 0 {
                let current = super::queries::operation_on(conn, &id)?;
                return Err(LandscapeError::IllegalTransition(format!(
                    "operation {id} is {}; it cannot become {status}",
                    current.state.status()
                )));
            }
            Ok(())
        })
    }
}
