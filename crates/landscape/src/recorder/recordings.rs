//! An earlier run's calls, read back for replay and verify: every call
//! under the run's node states, in the order the run made them (source row,
//! then step, attempt and call index), with its response from the payload
//! store when the store still holds it.

use diesel::prelude::*;

use contracts::{CallId, CallStatus, CallType, ContentHash, RunId};

use super::Recorder;
use crate::error::{LandscapeError, Result};
use crate::loaders;
use crate::models::CallRow;
use crate::payload_store::PayloadStoreError;
use crate::schema::{calls, node_states, rows, tokens};

/// What became of a recorded call's response.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedResponse {
    /// The response, as recorded.
    Available(serde_json::Value),
    /// Its hash is recorded but the payload is gone (purged).
    Purged { response_hash: ContentHash },
    /// The call had no response (a transport failure, an error-only call).
    None,
}

/// One call of an earlier run.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub call_id: CallId,
    pub call_type: CallType,
    pub status: CallStatus,
    pub request_hash: ContentHash,
    pub response: RecordedResponse,
    pub error: Option<serde_json::Value>,
    pub latency_ms: Option<f64>,
    /// The source row the call was made for.
    pub row_index: u64,
}

impl Recorder {
    /// The calls `run_id` made under its node states, in the order it made
    /// them per source row.
    pub fn recorded_calls(&mut self, run_id: &RunId) -> Result<Vec<RecordedCall>> {
        let found: Vec<(CallRow, i64)> = calls::table
            .inner_join(node_states::table.on(calls::state_id.eq(node_states::state_id.nullable())))
            .inner_join(tokens::table.on(tokens::token_id.eq(node_states::token_id)))
            .inner_join(rows::table.on(rows::row_id.eq(tokens::row_id)))
            .filter(node_states::run_id.eq(run_id.as_str()))
            .order((
                rows::row_index.asc(),
                node_states::step_index.asc(),
                node_states::attempt.asc(),
                node_states::started_at.asc(),
                calls::call_index.asc(),
            ))
            .select((CallRow::as_select(), rows::row_index))
            .load(self.conn()?)?;
        let mut recorded = Vec::with_capacity(found.len());
        for (row, row_index) in found {
            let call = loaders::call(row)?;
            let response = match (&call.response_ref, &call.response_hash) {
                (Some(reference), Some(hash)) => match self.payload_store().map(|store| store.retrieve(reference)) {
                    Some(Ok(bytes)) => RecordedResponse::Available(serde_json::from_slice(&bytes).map_err(|e| {
                        LandscapeError::integrity(format!("the response of call {} is not JSON: {e}", call.call_id))
                    })?),
                    Some(Err(PayloadStoreError::NotFound(_))) | None => RecordedResponse::Purged { response_hash: hash.clone() },
                    Some(Err(error)) => return Err(error.into()),
                },
                (None, Some(hash)) => RecordedResponse::Purged { response_hash: hash.clone() },
                (_, None) => RecordedResponse::None,
            };
            let error = call
                .error_json
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| LandscapeError::integrity(format!("the error of call {} is not JSON: {e}", call.call_id)))?;
            recorded.push(RecordedCall {
                call_id: call.call_id,
                call_type: call.call_type,
                status: call.status,
                request_hash: call.request_hash,
                response,
                error,
                latency_ms: call.latency_ms,
                row_index: u64::try_from(row_index)
                    .map_err(|_| LandscapeError::integrity(format!("negative row index {row_index}")))?,
            });
        }
        Ok(recorded)
    }
}
