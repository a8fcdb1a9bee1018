//! Sources: where rows come from. Bad records are quarantined
//! (`SourceItem::Invalid`), never fatal; only an unreadable input stops a run.

pub(crate) mod csv_source;
mod headers;
pub(crate) mod json_source;
pub(crate) mod null_source;
mod strict_json;

pub(crate) use csv_source::CsvSource;
pub use headers::normalize_header;
pub(crate) use json_source::JsonSource;
pub(crate) use null_source::NullSource;

use contracts::plugin::{InvalidRecord, SourceItem, Violation};
use contracts::{Row, Value};

use crate::row_schema::RowValidator;

/// Validates a parsed row, turning a rejection into a quarantined item that
/// carries the raw (pre-coercion) row.
pub(crate) fn validated_item(validator: &mut RowValidator, row: Row, original_name: &dyn Fn(&str) -> String) -> SourceItem {
    let raw = row.clone();
    match validator.validate(row, original_name) {
        Ok(valid) => SourceItem::Valid(valid),
        Err(rejection) => SourceItem::Invalid(InvalidRecord {
            raw: Value::Object(raw),
            error: rejection.message,
            schema_mode: validator.mode().as_str().to_owned(),
            violation: rejection.violation,
        }),
    }
}

/// A record that could not even be parsed.
pub(crate) fn parse_failure(raw: Row, error: String) -> SourceItem {
    SourceItem::Invalid(InvalidRecord {
        raw: Value::Object(raw),
        error,
        schema_mode: "parse".to_owned(),
        violation: Violation::default(),
    })
}
