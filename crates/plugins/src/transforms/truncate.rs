//! `truncate`: strings longer than a maximum become a prefix plus a suffix
//! (lengths in code points); a non-string value is an error result.

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{Determinism, Row, Value};
use indexmap::IndexMap;
use serde::Deserialize;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "truncate", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TruncateOptions {
    schema: serde_json::Value,
    fields: IndexMap<String, usize>,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct Truncate {
    options: TruncateOptions,
}

impl Truncate {
    pub(crate) fn new(options: &Options) -> Result<Truncate, PluginError> {
        let options: TruncateOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        let suffix_len = options.suffix.chars().count();
        for (field, max) in &options.fields {
            if *max == 0 {
                return Err(PluginError::Config(format!("fields.{field}: the maximum length must be at least 1")));
            }
            if suffix_len >= *max {
                return Err(PluginError::Config(format!(
                    "suffix {:?} must be shorter than the maximum length of {field}",
                    options.suffix
                )));
            }
        }
        Ok(Truncate { options })
    }
}

impl Transform for Truncate {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process(&self, mut row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let mut truncated = Vec::new();
        for (field, max) in &self.options.fields {
            match row.get_mut(field) {
                None if self.options.strict => {
                    return Ok(super::error_result("missing_field", serde_json::json!({"field": field})));
                }
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => {
                    if text.chars().count() > *max {
                        let keep = max - self.options.suffix.chars().count();
                        let mut shortened: String = text.chars().take(keep).collect();
                        shortened.push_str(&self.options.suffix);
                        *text = shortened;
                        truncated.push(field.clone());
                    }
                }
                Some(other) => {
                    return Ok(super::error_result(
                        "type_mismatch",
                        serde_json::json!({"field": field, "expected": "str", "actual": other.type_name()}),
                    ));
                }
            }
        }
        let _ = &self.options.required_input_fields;
        let success_reason = (!truncated.is_empty()).then(|| serde_json::json!({"action": "truncated", "fields": truncated}));
        Ok(TransformResult::Row { row, success_reason })
    }
}
