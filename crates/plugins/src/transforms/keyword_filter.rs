//! `keyword_filter`: the first blocked pattern found in a checked field is an
//! error result (`blocked_content`) with where it matched.

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{Determinism, Row, Value};
use regex::Regex;
use serde::Deserialize;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo =
    PluginInfo { name: "keyword_filter", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Fields {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordFilterOptions {
    schema: serde_json::Value,
    fields: Fields,
    blocked_patterns: Vec<String>,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct KeywordFilter {
    /// `None`: every string field.
    fields: Option<Vec<String>>,
    patterns: Vec<(String, Regex)>,
}

/// Nested quantifiers such as `(a+)+` are refused (catastrophic in
/// backtracking engines; kept out for parity with the reference).
fn nested_quantifier(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut depth_has_quantifier: Vec<bool> = Vec::new();
    let mut idx = 0;
    while idx < bytes.len() {
        match bytes[idx] {
            b'\\' => idx += 1,
            b'(' => depth_has_quantifier.push(false),
            b')' => {
                let inner = depth_has_quantifier.pop().unwrap_or(false);
                if inner && matches!(bytes.get(idx + 1), Some(b'+' | b'*' | b'{')) {
                    return true;
                }
                if let Some(outer) = depth_has_quantifier.last_mut() {
                    *outer |= inner;
                }
            }
            b'+' | b'*' => {
                if let Some(top) = depth_has_quantifier.last_mut() {
                    *top = true;
                }
            }
            _ => {}
        }
        idx += 1;
    }
    false
}

impl KeywordFilter {
    pub(crate) fn new(options: &Options) -> Result<KeywordFilter, PluginError> {
        let options: KeywordFilterOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        let fields = match options.fields {
            Fields::One(name) if name == "all" => None,
            Fields::One(name) => Some(vec![name]),
            Fields::Many(names) if names.is_empty() => return Err(PluginError::Config("fields must not be empty".into())),
            Fields::Many(names) => Some(names),
        };
        if options.blocked_patterns.is_empty() {
            return Err(PluginError::Config("blocked_patterns must not be empty".into()));
        }
        let mut patterns = Vec::new();
        for pattern in options.blocked_patterns {
            if pattern.is_empty() || pattern.len() > 1000 {
                return Err(PluginError::Config(format!("pattern {pattern:?} must have 1 to 1000 characters")));
            }
            if nested_quantifier(&pattern) {
                return Err(PluginError::Config(format!("pattern {pattern:?} nests quantifiers (a ReDoS risk)")));
            }
            let regex =
                Regex::new(&pattern).map_err(|e| PluginError::Config(format!("pattern {pattern:?} does not compile: {e}")))?;
            patterns.push((pattern, regex));
        }
        let _ = options.required_input_fields;
        Ok(KeywordFilter { fields, patterns })
    }
}

impl Transform for KeywordFilter {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process(&self, row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let checked: Vec<(String, &Value)> = match &self.fields {
            None => row.iter().filter(|(_, v)| matches!(v, Value::String(_))).map(|(k, v)| (k.clone(), v)).collect(),
            Some(names) => names.iter().filter_map(|n| row.get(n).map(|v| (n.clone(), v))).collect(),
        };
        for (field, value) in checked {
            let Value::String(text) = value else {
                if matches!(value, Value::Null) {
                    continue;
                }
                return Ok(super::error_result(
                    "non_string_field",
                    serde_json::json!({"field": field, "actual": value.type_name()}),
                ));
            };
            for (pattern, regex) in &self.patterns {
                if let Some(found) = regex.find(text) {
                    let position = text[..found.start()].chars().count();
                    return Ok(super::error_result(
                        "blocked_content",
                        serde_json::json!({
                            "field": field,
                            "matched_pattern": pattern,
                            "match_position": position,
                            "match_length": found.as_str().chars().count(),
                            "field_length": text.chars().count(),
                        }),
                    ));
                }
            }
        }
        Ok(TransformResult::Row { row, success_reason: None })
    }
}
