//! The `json` source: a JSON array (optionally under `data_key`) or JSON
//! Lines. Non-object elements, unparseable lines, objects with a duplicate
//! key, NaN/Infinity literals and integers beyond ±(2^53-1) are quarantined;
//! a whole document that cannot be read (not JSON, a duplicate key, the
//! wrong root, a missing `data_key`) is one validation error, no row.

use std::fs::File;
use std::io::{BufRead, BufReader};

use contracts::canonical::MAX_SAFE_INTEGER;
use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Source, SourceItem, SourcePosition};
use contracts::{Determinism, Row, Value};
use serde::Deserialize;

use super::{parse_failure, validated_item};
use crate::row_schema::RowValidator;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "json", version: "1.0.0", determinism: Determinism::IoRead };

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Json,
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSourceOptions {
    path: String,
    schema: serde_json::Value,
    on_validation_failure: String,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    data_key: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

enum Input {
    Lines { reader: BufReader<File>, line: u64, offset: u64 },
    Array { items: std::vec::IntoIter<serde_json::Value>, index: u64 },
    Done,
}

pub(crate) struct JsonSource {
    options: JsonSourceOptions,
    format: Format,
    validator: RowValidator,
    input: Option<Input>,
    items: u64,
}

/// Rejects integers JSON numbers cannot carry exactly.
fn unsafe_integer(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => None,
            Some(_) => Some(n.to_string()),
            None if n.is_u64() => Some(n.to_string()),
            None => None,
        },
        serde_json::Value::Array(items) => items.iter().find_map(unsafe_integer),
        serde_json::Value::Object(map) => map.values().find_map(unsafe_integer),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::String(_) => None,
    }
}

impl JsonSource {
    pub(crate) fn new(options: &Options) -> Result<JsonSource, PluginError> {
        let options: JsonSourceOptions = crate::options::parse(options)?;
        if options.path.is_empty() {
            return Err(PluginError::Config("path must not be empty".into()));
        }
        let format = options.format.unwrap_or(if options.path.ends_with(".jsonl") { Format::Jsonl } else { Format::Json });
        if format == Format::Jsonl && options.data_key.is_some() {
            return Err(PluginError::Config("data_key is not allowed with format jsonl".into()));
        }
        if let Some(encoding) = &options.encoding {
            if !["utf-8", "utf8"].contains(&encoding.to_ascii_lowercase().as_str()) {
                return Err(PluginError::Config(format!("encoding {encoding:?} is not supported (utf-8 only)")));
            }
        }
        if options.on_validation_failure.is_empty() {
            return Err(PluginError::Config("on_validation_failure must name a sink or be 'discard'".into()));
        }
        let schema = crate::options::schema(&options.schema)?;
        Ok(JsonSource { options, format, validator: RowValidator::new(schema), input: None, items: 0 })
    }

    fn open(&mut self) -> Result<Option<SourceItem>, PluginError> {
        let path = &self.options.path;
        let handle =
            File::open(path).map_err(|source| PluginError::Io { context: format!("cannot open JSON source {path}"), source })?;
        if self.format == Format::Jsonl {
            self.input = Some(Input::Lines { reader: BufReader::new(handle), line: 0, offset: 0 });
            return Ok(None);
        }
        let whole_file_problem = |message: String| {
            let mut raw = Row::new();
            raw.insert("file_path".into(), Value::String(path.clone()));
            parse_failure(raw, message)
        };
        let document: serde_json::Value = match super::strict_json::from_reader(BufReader::new(handle)) {
            Ok(document) => document,
            Err(error) => {
                self.input = Some(Input::Done);
                return Ok(Some(whole_file_problem(format!("the file is not valid JSON: {error}"))));
            }
        };
        let array = match (&self.options.data_key, document) {
            (None, serde_json::Value::Array(items)) => items,
            (Some(key), serde_json::Value::Object(mut map)) => {
                if let Some(serde_json::Value::Array(items)) = map.remove(key) {
                    items
                } else {
                    self.input = Some(Input::Done);
                    return Ok(Some(whole_file_problem(format!("data_key {key:?} does not hold an array"))));
                }
            }
            (_, _) => {
                self.input = Some(Input::Done);
                return Ok(Some(whole_file_problem("the top level is not an array (or an object with data_key)".into())));
            }
        };
        self.input = Some(Input::Array { items: array.into_iter(), index: 0 });
        Ok(None)
    }

    #[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every non-object record is invalid the same way")]
    fn item_of(&mut self, value: serde_json::Value, raw_line: Option<(&str, u64)>) -> SourceItem {
        let raw_with_line = |extra: Row| {
            let mut raw = Row::new();
            if let Some((text, line)) = raw_line {
                raw.insert("__raw_line__".into(), Value::String(text.to_owned()));
                raw.insert("__line_number__".into(), Value::Integer(i64::try_from(line).unwrap_or(i64::MAX)));
            }
            raw.extend(extra);
            raw
        };
        if let Some(number) = unsafe_integer(&value) {
            return parse_failure(
                raw_with_line(Row::new()),
                format!("integer {number} is beyond ±(2^53-1) and cannot be represented exactly"),
            );
        }
        let value = match Value::from_json(value) {
            Ok(value) => value,
            Err(error) => return parse_failure(raw_with_line(Row::new()), error.to_string()),
        };
        match value {
            Value::Object(row) => validated_item(&mut self.validator, row, &str::to_owned),
            other => {
                let mut raw = Row::new();
                raw.insert("_raw".into(), other);
                parse_failure(raw, "the element is not a JSON object".into())
            }
        }
    }
}

impl Source for JsonSource {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn next_item(&mut self, _ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError> {
        if self.input.is_none() {
            if let Some(problem) = self.open()? {
                self.items += 1;
                return Ok(Some(problem));
            }
        }
        loop {
            let next = match self.input.as_mut() {
                None | Some(Input::Done) => return Ok(None),
                Some(Input::Array { items, index }) => match items.next() {
                    None => return Ok(None),
                    Some(value) => {
                        *index += 1;
                        (value, None)
                    }
                },
                Some(Input::Lines { reader, line, offset }) => {
                    let mut bytes = Vec::new();
                    let read = reader
                        .read_until(b'\n', &mut bytes)
                        .map_err(|source| PluginError::Io { context: format!("reading {}", self.options.path), source })?;
                    if read == 0 {
                        return Ok(None);
                    }
                    *line += 1;
                    *offset += read as u64;
                    let number = *line;
                    let text = match String::from_utf8(bytes) {
                        Ok(text) => text,
                        Err(error) => {
                            self.items += 1;
                            let mut raw = Row::new();
                            raw.insert("__raw_bytes_hex__".into(), Value::String(hex::encode(error.as_bytes())));
                            raw.insert("__line_number__".into(), Value::Integer(i64::try_from(number).unwrap_or(i64::MAX)));
                            return Ok(Some(parse_failure(raw, format!("line {number} is not valid UTF-8"))));
                        }
                    };
                    let trimmed = text.trim();
                    if trimmed.is_empty() {
                        continue;
                    }
                    match super::strict_json::from_str(trimmed) {
                        Ok(value) => {
                            self.items += 1;
                            return Ok(Some(self.item_of(value, Some((trimmed, number)))));
                        }
                        Err(error) => {
                            self.items += 1;
                            let mut raw = Row::new();
                            raw.insert("__raw_line__".into(), Value::String(trimmed.to_owned()));
                            raw.insert("__line_number__".into(), Value::Integer(i64::try_from(number).unwrap_or(i64::MAX)));
                            return Ok(Some(parse_failure(raw, format!("line {number} is not valid JSON: {error}"))));
                        }
                    }
                }
            };
            self.items += 1;
            return Ok(Some(self.item_of(next.0, next.1)));
        }
    }

    fn position(&self) -> SourcePosition {
        let byte_offset = match &self.input {
            Some(Input::Lines { offset, .. }) => Some(*offset),
            Some(Input::Array { .. } | Input::Done) | None => None,
        };
        SourcePosition { items: self.items, byte_offset }
    }
}
