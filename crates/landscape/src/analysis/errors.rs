//! What went wrong in a run: paged validation and transform errors, errors
//! grouped by kind and node with a sample each, and the failure context an
//! investigation starts from.

use diesel::dsl::{count_star, min};
use diesel::prelude::*;
use serde::Serialize;

use contracts::records::{Batch, Call, NodeState, TransformError, ValidationError};
use contracts::{CallStatus, NodeStateStatus, RunId};

use super::{count, CallsFilter, Page, Paged};
use crate::error::Result;
use crate::loaders;
use crate::models::{BatchRow, TransformErrorRow, ValidationErrorRow};
use crate::schema::{batches, node_states, transform_errors, validation_errors};
use crate::Recorder;

/// The three places a run records errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A source row that failed its schema (`validation_errors`).
    Validation,
    /// A row a transform rejected (`transform_errors`).
    Transform,
    /// A node visit that failed (`node_states` with status failed).
    FailedState,
}

/// Errors of one kind at one node with one classification, counted, with a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    pub kind: ErrorKind,
    pub node_id: Option<String>,
    /// Validation: schema mode and violation type; transform: destination.
    pub classification: String,
    pub count: u64,
    pub sample: Option<String>,
}

/// The first failures of each kind in a run, and all of them grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureContext {
    pub groups: Vec<ErrorGroup>,
    pub failed_states: Paged<NodeState>,
    pub failed_calls: Paged<Call>,
    pub transform_errors: Paged<TransformError>,
    pub validation_errors: Paged<ValidationError>,
    pub failed_batches: Vec<Batch>,
}

impl Recorder {
    /// Validation errors of a run by time; `contract_only` keeps those with
    /// a recorded violation type (type mismatches, missing fields).
    pub fn validation_errors_page(&mut self, run_id: &RunId, contract_only: bool, page: Page) -> Result<Paged<ValidationError>> {
        let (offset, limit) = page.sql();
        let narrowed = || {
            let mut query = validation_errors::table.filter(validation_errors::run_id.eq(run_id.as_str())).into_boxed();
            if contract_only {
                query = query.filter(validation_errors::violation_type.is_not_null());
            }
            query
        };
        let conn = self.conn()?;
        let total: i64 = narrowed().count().get_result(conn)?;
        let found: Vec<ValidationErrorRow> = narrowed()
            .order((validation_errors::created_at.asc(), validation_errors::error_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(ValidationErrorRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::validation_error).collect::<Result<_>>()?, page, total))
    }

    /// Transform errors of a run by time.
    pub fn transform_errors_page(&mut self, run_id: &RunId, page: Page) -> Result<Paged<TransformError>> {
        let (offset, limit) = page.sql();
        let conn = self.conn()?;
        let total: i64 = transform_errors::table.filter(transform_errors::run_id.eq(run_id.as_str())).count().get_result(conn)?;
        let found: Vec<TransformErrorRow> = transform_errors::table
            .filter(transform_errors::run_id.eq(run_id.as_str()))
            .order((transform_errors::created_at.asc(), transform_errors::error_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(TransformErrorRow::as_select())
            .load(conn)?;
        Ok(Paged::new(found.into_iter().map(loaders::transform_error).collect::<Result<_>>()?, page, total))
    }

    /// Every error of a run, grouped by kind, node and classification, most frequent first.
    pub fn error_groups(&mut self, run_id: &RunId) -> Result<Vec<ErrorGroup>> {
        let run = run_id.as_str();
        let conn = self.conn()?;
        let validation: Vec<(Option<String>, String, Option<String>, i64, Option<String>)> = validation_errors::table
            .filter(validation_errors::run_id.eq(run))
            .group_by((validation_errors::node_id, validation_errors::schema_mode, validation_errors::violation_type))
            .select((
                validation_errors::node_id,
                validation_errors::schema_mode,
                validation_errors::violation_type,
                count_star(),
                min(validation_errors::error),
            ))
            .load(conn)?;
        let transform: Vec<(String, String, i64, Option<String>)> = transform_errors::table
            .filter(transform_errors::run_id.eq(run))
            .group_by((transform_errors::transform_id, transform_errors::destination))
            .select((
                transform_errors::transform_id,
                transform_errors::destination,
                count_star(),
                min(transform_errors::error_details_json),
            ))
            .load(conn)?;
        let failed: Vec<(String, i64, Option<String>)> = node_states::table
            .filter(node_states::run_id.eq(run))
            .filter(node_states::status.eq(NodeStateStatus::Failed.as_str()))
            .group_by(node_states::node_id)
            .select((node_states::node_id, count_star(), min(node_states::error_json)))
            .load(conn)?;
        let mut groups: Vec<ErrorGroup> = validation
            .into_iter()
            .map(|(node, mode, violation, n, sample)| ErrorGroup {
                kind: ErrorKind::Validation,
                node_id: node,
                classification: match violation {
                    Some(violation) => format!("{mode}: {violation}"),
                    None => mode,
                },
                count: count(n),
                sample,
            })
            .chain(transform.into_iter().map(|(node, destination, n, sample)| ErrorGroup {
                kind: ErrorKind::Transform,
                node_id: Some(node),
                classification: format!("routed to {destination}"),
                count: count(n),
                sample,
            }))
            .chain(failed.into_iter().map(|(node, n, sample)| ErrorGroup {
                kind: ErrorKind::FailedState,
                node_id: Some(node),
                classification: "node visit failed".to_owned(),
                count: count(n),
                sample,
            }))
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.node_id.cmp(&b.node_id)));
        Ok(groups)
    }

    /// The first `per_kind` failures of each kind, the failed batches and all errors grouped.
    pub fn failure_context(&mut self, run_id: &RunId, per_kind: u64) -> Result<FailureContext> {
        let page = Page::new(0, per_kind);
        let groups = self.error_groups(run_id)?;
        let failed_states = self.node_states_page(run_id, None, Some(NodeStateStatus::Failed), page)?;
        let failed_calls =
            self.calls_page(run_id, &CallsFilter { status: Some(CallStatus::Error), ..CallsFilter::default() }, page)?;
        let transform_errors = self.transform_errors_page(run_id, page)?;
        let validation_errors = self.validation_errors_page(run_id, false, page)?;
        let found: Vec<BatchRow> = batches::table
            .filter(batches::run_id.eq(run_id.as_str()))
            .filter(batches::status.eq(contracts::BatchStatus::Failed.as_str()))
            .order((batches::created_at.asc(), batches::batch_id.asc()))
            .limit(i64::try_from(page.limit).unwrap_or(1))
            .select(BatchRow::as_select())
            .load(self.conn()?)?;
        let failed_batches = found.into_iter().map(loaders::batch).collect::<Result<_>>()?;
        Ok(FailureContext { groups, failed_states, failed_calls, transform_errors, validation_errors, failed_batches })
    }
}
