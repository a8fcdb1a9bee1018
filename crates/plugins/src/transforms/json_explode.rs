//! `json_explode`: one output row per element of an array field (an
//! expansion creating child tokens). An empty array or a missing / non-array
//! field is an error result.

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{Determinism, Row, Value};
use serde::Deserialize;

fn default_output() -> String {
    "item".to_owned()
}

fn default_true() -> bool {
    true
}

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo =
    PluginInfo { name: "json_explode", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonExplodeOptions {
    schema: serde_json::Value,
    array_field: String,
    #[serde(default = "default_output")]
    output_field: String,
    #[serde(default = "default_true")]
    include_index: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct JsonExplode {
    options: JsonExplodeOptions,
}

impl JsonExplode {
    pub(crate) fn new(options: &Options) -> Result<JsonExplode, PluginError> {
        let options: JsonExplodeOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        if options.output_field == options.array_field {
            return Err(PluginError::Config("output_field must differ from array_field".into()));
        }
        Ok(JsonExplode { options })
    }
}

impl Transform for JsonExplode {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn creates_tokens(&self) -> bool {
        true
    }

    fn process(&self, mut row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let field = &self.options.array_field;
        let items = match row.shift_remove(field) {
            Some(Value::List(items)) if items.is_empty() => {
                return Ok(super::error_result("invalid_input", serde_json::json!({"field": field, "error": "empty array"})));
            }
            Some(Value::List(items)) => items,
            Some(other) => {
                return Ok(super::error_result(
                    "type_mismatch",
                    serde_json::json!({"field": field, "expected": "list", "actual": other.type_name()}),
                ));
            }
            None => return Ok(super::error_result("missing_field", serde_json::json!({"field": field}))),
        };
        let rows = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let mut child = row.clone();
                child.insert(self.options.output_field.clone(), item);
                if self.options.include_index {
                    child.insert("item_index".into(), Value::Integer(i64::try_from(index).unwrap_or(i64::MAX)));
                }
                child
            })
            .collect();
        let _ = &self.options.required_input_fields;
        Ok(TransformResult::Rows { rows, success_reason: None })
    }
}
