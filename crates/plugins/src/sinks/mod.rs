//! Sinks: append-only files made durable (flush + fsync) on `flush`, with a
//! running SHA-256 of every byte written, so the artifact hash always equals
//! the hash of the file's content.

pub(crate) mod csv_sink;
pub(crate) mod database_sink;
mod durable_file;
pub(crate) mod json_sink;

pub(crate) use csv_sink::CsvSink;
pub(crate) use database_sink::DatabaseSink;
pub(crate) use json_sink::JsonSink;

use contracts::plugin::PluginError;
use contracts::{Row, Value};
use indexmap::IndexMap;
use serde::Deserialize;

/// How output columns are named.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub(crate) enum Headers {
    #[default]
    #[serde(skip)]
    Normalized,
    Named(String),
    Map(IndexMap<String, String>),
}

/// Resolved header naming: field → display name.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderNames {
    original: bool,
    renames: IndexMap<String, String>,
}

impl HeaderNames {
    pub(crate) fn from_option(headers: &Headers) -> Result<HeaderNames, String> {
        match headers {
            Headers::Normalized => Ok(HeaderNames::default()),
            Headers::Named(name) if name == "normalized" => Ok(HeaderNames::default()),
            Headers::Named(name) if name == "original" => Ok(HeaderNames { original: true, renames: IndexMap::new() }),
            Headers::Named(other) => Err(format!("headers must be normalized, original or a map, not {other:?}")),
            Headers::Map(map) => {
                let mut seen = std::collections::BTreeSet::new();
                for target in map.values() {
                    if !seen.insert(target) {
                        return Err(format!("headers maps two fields to {target:?}"));
                    }
                }
                Ok(HeaderNames { original: false, renames: map.clone() })
            }
        }
    }

    /// Learns the source's original headers (for `headers: original`).
    pub(crate) fn bind(&mut self, resolution: &[(String, String)]) {
        if self.original {
            self.renames = resolution.iter().map(|(original, name)| (name.clone(), original.clone())).collect();
        }
    }

    pub(crate) fn display<'a>(&'a self, field: &'a str) -> &'a str {
        self.renames.get(field).map_or(field, String::as_str)
    }
}

/// A row reaching a sink must carry every required declared field, and each
/// declared field it has must be of the declared type (an int fits a float,
/// `any` fits all, null only an optional field): a sink never writes a blank
/// or wrongly typed cell for what its schema promises. A row that does not is
/// the pipeline breaking its contract; nothing of its batch is written. A
/// CSV sink, whose cells are text, takes a number or a flag for a `str`.
pub(crate) fn check_declared(schema: &contracts::schema::SchemaConfig, row: &Row, cells: Cells) -> Result<(), PluginError> {
    use contracts::schema::{FieldType, SchemaMode};
    if schema.mode == SchemaMode::Observed {
        return Ok(());
    }
    for field in &schema.fields {
        let fits = match (row.get(&field.name), field.field_type) {
            (None, _) => !field.required,
            (Some(Value::Null), _) => !field.required,
            (Some(_), FieldType::Any)
            | (Some(Value::String(_)), FieldType::Str)
            | (Some(Value::Integer(_)), FieldType::Int | FieldType::Float)
            | (Some(Value::Float(_)), FieldType::Float)
            | (Some(Value::Bool(_)), FieldType::Bool) => true,
            // A CSV cell is text: a number or a flag is written as the text
            // a `str` field would hold.
            (Some(Value::Integer(_) | Value::Float(_) | Value::Bool(_)), FieldType::Str) => cells == Cells::Text,
            (Some(_), FieldType::Str | FieldType::Int | FieldType::Float | FieldType::Bool) => false,
        };
        if !fits {
            let found = row.get(&field.name).map_or_else(|| "missing".to_owned(), |v| format!("a {}", v.type_name()));
            return Err(PluginError::Contract(format!(
                "a row's field {:?} is {found}, but the sink's schema declares {}{}",
                field.name,
                if field.required { "required " } else { "" },
                field.field_type.as_str()
            )));
        }
    }
    Ok(())
}

/// How a sink writes values: as text (CSV) or typed (JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cells {
    Text,
    Typed,
}

/// The text of a value in a CSV cell: null empty, numbers in their shortest
/// form, nested values as canonical JSON.
pub(crate) fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Integer(_) | Value::Float(_) | Value::List(_) | Value::Object(_) => {
            contracts::canonical_json_value(value).unwrap_or_else(|_| serde_json::to_string(value).unwrap_or_default())
        }
    }
}

/// Renames a row's keys for display.
pub(crate) fn renamed(row: &Row, names: &HeaderNames) -> serde_json::Map<String, serde_json::Value> {
    row.iter().map(|(k, v)| (names.display(k).to_owned(), v.to_json())).collect()
}
