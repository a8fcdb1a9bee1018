//! `field_mapper`: renames (and with `select_only`, selects) fields; dotted
//! sources read nested objects. A missing source is skipped, or an error
//! result with `strict`.

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{Determinism, Row, Value};
use indexmap::IndexMap;
use serde::Deserialize;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo =
    PluginInfo { name: "field_mapper", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldMapperOptions {
    schema: serde_json::Value,
    #[serde(default)]
    mapping: IndexMap<String, String>,
    #[serde(default)]
    select_only: bool,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    validate_input: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct FieldMapper {
    options: FieldMapperOptions,
}

impl FieldMapper {
    pub(crate) fn new(options: &Options) -> Result<FieldMapper, PluginError> {
        let options: FieldMapperOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        let mut targets = std::collections::BTreeSet::new();
        for target in options.mapping.values() {
            if !targets.insert(target) {
                return Err(PluginError::Config(format!("mapping has the target {target:?} twice")));
            }
        }
        Ok(FieldMapper { options })
    }
}

#[allow(clippy::wildcard_enum_match_arm, reason = "row values: only objects have fields")]
fn lookup<'a>(row: &'a Row, source: &str) -> Result<Option<&'a Value>, String> {
    if row.contains_key(source) || !source.contains('.') {
        return Ok(row.get(source));
    }
    let mut parts = source.split('.');
    let Some(mut current) = parts.next().and_then(|first| row.get(first)) else {
        return Ok(None);
    };
    for part in parts {
        current = match current {
            Value::Object(map) => match map.get(part) {
                Some(value) => value,
                None => return Ok(None),
            },
            other => return Err(format!("{source}: cannot read {part:?} inside a {}", other.type_name())),
        };
    }
    Ok(Some(current))
}

impl Transform for FieldMapper {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process(&self, row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let mut out = if self.options.select_only { Row::new() } else { row.clone() };
        for (source, target) in &self.options.mapping {
            let value = lookup(&row, source).map_err(PluginError::Contract)?;
            match value {
                Some(value) => {
                    if !self.options.select_only && source != target && row.contains_key(source) {
                        out.shift_remove(source);
                    }
                    out.insert(target.clone(), value.clone());
                }
                None if self.options.strict => {
                    return Ok(super::error_result(
                        "missing_field",
                        serde_json::json!({"field": source, "message": format!("field {source:?} is missing")}),
                    ));
                }
                None => {}
            }
        }
        let _ = (self.options.validate_input, &self.options.required_input_fields);
        Ok(TransformResult::Row { row: out, success_reason: None })
    }
}
