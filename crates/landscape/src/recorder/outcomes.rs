//! Token outcomes (at most one terminal per token), artifacts, validation
//! errors and transform errors.

use diesel::prelude::*;

use contracts::records::{Artifact, OutcomeDetail, TokenOutcome, TransformError, ValidationError};
use contracts::{
    canonical::canonical_json_value, canonical_json, plugin::Violation, ArtifactId, ContentHash, ErrorId, NodeId, OutcomeId,
    RowId, RunId, StateId, TokenId, Value,
};

use super::{ensure_one, i64_of, is_unique_violation, non_empty, now, Recorder};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::{artifacts, token_outcomes, transform_errors, validation_errors};

/// An artifact a sink wrote.
#[derive(Debug, Clone)]
pub struct NewArtifact<'a> {
    pub produced_by_state_id: &'a StateId,
    pub sink_node_id: &'a NodeId,
    pub artifact_type: &'a str,
    pub path_or_uri: &'a str,
    pub content_hash: &'a ContentHash,
    pub size_bytes: u64,
    pub idempotency_key: Option<&'a str>,
}

/// A source record that failed validation.
#[derive(Debug, Clone)]
pub struct NewValidationError<'a> {
    pub node_id: Option<&'a NodeId>,
    pub row_id: Option<&'a RowId>,
    pub raw: &'a Value,
    pub error: &'a str,
    pub schema_mode: &'a str,
    pub destination: &'a str,
    pub violation: &'a Violation,
}

/// A transform's error result for a token.
#[derive(Debug, Clone)]
pub struct NewTransformError<'a> {
    pub token_id: &'a TokenId,
    pub transform_id: &'a NodeId,
    pub row: &'a Value,
    pub error_details: &'a serde_json::Value,
    pub destination: &'a str,
}

/// Canonical JSON and hash of Tier 3 data, with the documented fallback when
/// the data cannot be canonicalised. Never fails.
fn tier3_json(value: &Value) -> (ContentHash, String) {
    match canonical_json_value(value) {
        Ok(canonical) => (ContentHash::of_bytes(canonical.as_bytes()), canonical),
        Err(error) => {
            let text = serde_json::to_string(value).unwrap_or_default();
            let fallback =
                serde_json::json!({ "__repr__": text, "__type__": value.type_name(), "__canonical_error__": error.to_string() });
            (super::tokens::fallback_hash(value), fallback.to_string())
        }
    }
}

/// The outcome's row, validated (required fields present and non-empty).
pub(crate) fn outcome_row(
    outcome_id: &OutcomeId,
    run_id: &RunId,
    token_id: &TokenId,
    detail: &OutcomeDetail,
    context_json: Option<&str>,
) -> Result<super::buffer::OutcomeInsert> {
    let mut sink_name = None;
    let mut batch_id = None;
    let mut fork_group_id = None;
    let mut join_group_id = None;
    let mut expand_group_id = None;
    let mut error_hash = None;
    let mut expected_branches_json = None;
    match detail {
        OutcomeDetail::Completed { sink_name: sink } | OutcomeDetail::Routed { sink_name: sink } => {
            non_empty("sink_name", sink)?;
            sink_name = Some(sink.as_str());
        }
        OutcomeDetail::Forked { fork_group_id: group, expected_branches } => {
            fork_group_id = Some(group.as_str());
            expected_branches_json =
                Some(serde_json::to_string(expected_branches).map_err(|e| LandscapeError::InvalidWrite(e.to_string()))?);
        }
        OutcomeDetail::Failed { error_hash: hash, batch_id: batch } => {
            non_empty("error_hash", hash)?;
            error_hash = Some(hash.as_str());
            batch_id = batch.as_ref().map(contracts::BatchId::as_str);
        }
        OutcomeDetail::Quarantined { error_hash: hash, sink_name: sink } => {
            non_empty("error_hash", hash)?;
            error_hash = Some(hash.as_str());
            sink_name = sink.as_deref();
        }
        OutcomeDetail::Diverted { sink_name: sink, error_hash: hash } => {
            non_empty("sink_name", sink)?;
            non_empty("error_hash", hash)?;
            sink_name = Some(sink.as_str());
            error_hash = Some(hash.as_str());
        }
        OutcomeDetail::ConsumedInBatch { batch_id: batch } | OutcomeDetail::Buffered { batch_id: batch } => {
            batch_id = Some(batch.as_str());
        }
        OutcomeDetail::Coalesced { join_group_id: group } => join_group_id = Some(group.as_str()),
        OutcomeDetail::Expanded { expand_group_id: group, count } => {
            expand_group_id = Some(group.as_str());
            expected_branches_json = Some(serde_json::json!({ "count": count }).to_string());
        }
    }
    let outcome = detail.outcome();
    Ok(super::buffer::OutcomeInsert {
        outcome_id: outcome_id.as_str().to_owned(),
        run_id: run_id.as_str().to_owned(),
        token_id: token_id.as_str().to_owned(),
        outcome: outcome.as_str(),
        is_terminal: i32::from(outcome.is_terminal()),
        recorded_at: crate::models::DbTime(now().1),
        sink_name: sink_name.map(str::to_owned),
        batch_id: batch_id.map(str::to_owned),
        fork_group_id: fork_group_id.map(str::to_owned),
        join_group_id: join_group_id.map(str::to_owned),
        expand_group_id: expand_group_id.map(str::to_owned),
        error_hash: error_hash.map(str::to_owned),
        context_json: context_json.map(str::to_owned),
        expected_branches_json,
    })
}

pub(crate) fn insert_outcome(
    conn: &mut DbConnection,
    outcome_id: &OutcomeId,
    run_id: &RunId,
    token_id: &TokenId,
    detail: &OutcomeDetail,
    context_json: Option<&str>,
) -> Result<()> {
    let row = outcome_row(outcome_id, run_id, token_id, detail, context_json)?;
    let result = crate::on_backend!(conn, |c| diesel::insert_into(token_outcomes::table)
        .values((
            token_outcomes::outcome_id.eq(&row.outcome_id),
            token_outcomes::run_id.eq(&row.run_id),
            token_outcomes::token_id.eq(&row.token_id),
            token_outcomes::outcome.eq(row.outcome),
            token_outcomes::is_terminal.eq(row.is_terminal),
            token_outcomes::recorded_at.eq(row.recorded_at),
            token_outcomes::sink_name.eq(row.sink_name.as_deref()),
            token_outcomes::batch_id.eq(row.batch_id.as_deref()),
            token_outcomes::fork_group_id.eq(row.fork_group_id.as_deref()),
            token_outcomes::join_group_id.eq(row.join_group_id.as_deref()),
            token_outcomes::expand_group_id.eq(row.expand_group_id.as_deref()),
            token_outcomes::error_hash.eq(row.error_hash.as_deref()),
            token_outcomes::context_json.eq(row.context_json.as_deref()),
            token_outcomes::expected_branches_json.eq(row.expected_branches_json.as_deref()),
        ))
        .execute(c));
    match result {
        Ok(affected) => ensure_one(affected, || format!("insert of outcome for token {token_id}")),
        Err(error) if is_unique_violation(&error) => Err(LandscapeError::IllegalTransition(format!(
            "token {token_id} already has a terminal outcome; {} refused",
            row.outcome
        ))),
        Err(error) => Err(error.into()),
    }
}

impl Recorder {
    /// Records an outcome. A second terminal outcome for a token is refused
    /// (the database enforces it too) and leaves the first untouched.
    pub fn record_token_outcome(
        &mut self,
        run_id: &RunId,
        token_id: &TokenId,
        detail: OutcomeDetail,
        context: Option<&serde_json::Value>,
    ) -> Result<TokenOutcome> {
        let context_json = context.map(canonical_json).transpose()?;
        let outcome_id = OutcomeId::new();
        if self.in_unit {
            let row = outcome_row(&outcome_id, run_id, token_id, &detail, context_json.as_deref())?;
            self.buffer.outcomes.push(row);
            self.buffered();
        } else {
            insert_outcome(self.conn()?, &outcome_id, run_id, token_id, &detail, context_json.as_deref())?;
        }
        Ok(TokenOutcome {
            outcome_id,
            run_id: run_id.clone(),
            token_id: token_id.clone(),
            recorded_at: now().0,
            detail,
            context_json,
        })
    }

    pub fn register_artifact(&mut self, run_id: &RunId, artifact: &NewArtifact<'_>) -> Result<Artifact> {
        let artifact_id = ArtifactId::new();
        let (at, naive) = now();
        let values = (
            artifacts::artifact_id.eq(artifact_id.as_str().to_owned()),
            artifacts::run_id.eq(run_id.as_str().to_owned()),
            artifacts::produced_by_state_id.eq(artifact.produced_by_state_id.as_str().to_owned()),
            artifacts::sink_node_id.eq(artifact.sink_node_id.as_str().to_owned()),
            artifacts::artifact_type.eq(artifact.artifact_type.to_owned()),
            artifacts::path_or_uri.eq(artifact.path_or_uri.to_owned()),
            artifacts::content_hash.eq(artifact.content_hash.as_str().to_owned()),
            artifacts::size_bytes.eq(i64_of("size_bytes", artifact.size_bytes)?),
            artifacts::idempotency_key.eq(artifact.idempotency_key.map(str::to_owned)),
            artifacts::created_at.eq(naive),
        );
        let path = artifact.path_or_uri.to_owned();
        self.write(move |conn| {
            let affected = diesel::insert_into(artifacts::table).values(values).execute(conn)?;
            ensure_one(affected, || format!("insert of artifact {path}"))
        })?;
        Ok(Artifact {
            artifact_id,
            run_id: run_id.clone(),
            produced_by_state_id: artifact.produced_by_state_id.clone(),
            sink_node_id: artifact.sink_node_id.clone(),
            artifact_type: artifact.artifact_type.to_owned(),
            path_or_uri: artifact.path_or_uri.to_owned(),
            content_hash: artifact.content_hash.clone(),
            size_bytes: artifact.size_bytes,
            idempotency_key: artifact.idempotency_key.map(str::to_owned),
            created_at: at,
        })
    }

    /// Records a source validation failure. The raw data is Tier 3: it is
    /// hashed with the documented fallback when it cannot be canonicalised.
    pub fn record_validation_error(&mut self, run_id: &RunId, error: &NewValidationError<'_>) -> Result<ValidationError> {
        let (row_hash, row_data_json) = tier3_json(error.raw);
        let error_id = ErrorId::new();
        let (at, naive) = now();
        let violation = error.violation;
        let affected = diesel::insert_into(validation_errors::table)
            .values((
                validation_errors::error_id.eq(error_id.as_str()),
                validation_errors::run_id.eq(run_id.as_str()),
                validation_errors::node_id.eq(error.node_id.map(NodeId::as_str)),
                validation_errors::row_id.eq(error.row_id.map(RowId::as_str)),
                validation_errors::row_hash.eq(row_hash.as_str()),
                validation_errors::row_data_json.eq(&row_data_json),
                validation_errors::error.eq(error.error),
                validation_errors::schema_mode.eq(error.schema_mode),
                validation_errors::destination.eq(error.destination),
                validation_errors::created_at.eq(naive),
                validation_errors::violation_type.eq(violation.violation_type.as_deref()),
                validation_errors::original_field_name.eq(violation.original_field_name.as_deref()),
                validation_errors::normalized_field_name.eq(violation.normalized_field_name.as_deref()),
                validation_errors::expected_type.eq(violation.expected_type.as_deref()),
                validation_errors::actual_type.eq(violation.actual_type.as_deref()),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || "insert of validation error".to_owned())?;
        Ok(ValidationError {
            error_id,
            run_id: run_id.clone(),
            node_id: error.node_id.cloned(),
            row_id: error.row_id.cloned(),
            row_hash,
            row_data_json: Some(row_data_json),
            error: error.error.to_owned(),
            schema_mode: error.schema_mode.to_owned(),
            destination: error.destination.to_owned(),
            created_at: at,
            violation_type: violation.violation_type.clone(),
            original_field_name: violation.original_field_name.clone(),
            normalized_field_name: violation.normalized_field_name.clone(),
            expected_type: violation.expected_type.clone(),
            actual_type: violation.actual_type.clone(),
        })
    }

    /// Records a transform error result. The token must belong to the run
    /// (enforced by a run-scoped foreign key).
    pub fn record_transform_error(&mut self, run_id: &RunId, error: &NewTransformError<'_>) -> Result<TransformError> {
        let (row_hash, row_data_json) = tier3_json(error.row);
        let details = canonical_json(error.error_details).unwrap_or_else(|e| {
            serde_json::json!({ "__non_canonical__": true, "serialization_error": e.to_string() }).to_string()
        });
        let error_id = ErrorId::new();
        let (at, naive) = now();
        let affected = diesel::insert_into(transform_errors::table)
            .values((
                transform_errors::error_id.eq(error_id.as_str()),
                transform_errors::run_id.eq(run_id.as_str()),
                transform_errors::token_id.eq(error.token_id.as_str()),
                transform_errors::transform_id.eq(error.transform_id.as_str()),
                transform_errors::row_hash.eq(row_hash.as_str()),
                transform_errors::row_data_json.eq(&row_data_json),
                transform_errors::error_details_json.eq(&details),
                transform_errors::destination.eq(error.destination),
                transform_errors::created_at.eq(naive),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of transform error for token {}", error.token_id))?;
        Ok(TransformError {
            error_id,
            run_id: run_id.clone(),
            token_id: error.token_id.clone(),
            transform_id: error.transform_id.clone(),
            row_hash,
            row_data_json: Some(row_data_json),
            error_details_json: Some(details),
            destination: error.destination.to_owned(),
            created_at: at,
        })
    }
}
