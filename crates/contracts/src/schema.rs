//! The schema grammar plugins declare in `options.schema`, and the coercion
//! rules sources apply at the boundary (and only there).
//!
//! ```yaml
//! schema:
//!   mode: fixed | flexible | observed
//!   fields: ["id: int", "score: float?", {amount: float}]
//!   guaranteed_fields: [a]
//!   required_fields: [b]
//! ```

use std::fmt;

use crate::value::{Finite, Value};

/// How strictly rows are held to the declared fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Declared fields only; extras are rejected.
    Fixed,
    /// Declared fields typed; extras allowed.
    Flexible,
    /// Nothing declared; types observed.
    Observed,
}

impl SchemaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaMode::Fixed => "fixed",
            SchemaMode::Flexible => "flexible",
            SchemaMode::Observed => "observed",
        }
    }
}

/// A declared field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Str,
    Int,
    Float,
    Bool,
    Any,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Str => "str",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Any => "any",
        }
    }

    fn parse(text: &str) -> Option<FieldType> {
        Some(match text {
            "str" => FieldType::Str,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "any" => FieldType::Any,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub field_type: FieldType,
    pub required: bool,
}

/// A parsed `options.schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaConfig {
    pub mode: SchemaMode,
    pub fields: Vec<FieldSpec>,
    pub guaranteed_fields: Option<Vec<String>>,
    pub required_fields: Option<Vec<String>>,
    pub audit_fields: Vec<String>,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn name_list(value: Option<&serde_json::Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    let Some(value) = value else { return Ok(None) };
    let items = value.as_array().ok_or_else(|| format!("schema.{key} must be a list of field names"))?;
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| format!("schema.{key} must be a list of field names")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[allow(clippy::wildcard_enum_match_arm, reason = "any other YAML shape is the same error")]
fn field_spec(item: &serde_json::Value) -> Result<FieldSpec, String> {
    let (name, type_text) = match item {
        serde_json::Value::String(text) => {
            let (name, type_text) =
                text.split_once(':').ok_or_else(|| format!("schema field {text:?} must look like \"name: type\""))?;
            (name.trim().to_owned(), type_text.trim().to_owned())
        }
        serde_json::Value::Object(map) if map.len() == 1 => {
            let (name, type_value) = map.iter().next().ok_or_else(|| "empty schema field".to_owned())?;
            let type_text = type_value.as_str().ok_or_else(|| format!("schema field {name:?} needs a type name"))?;
            (name.trim().to_owned(), type_text.trim().to_owned())
        }
        other => return Err(format!("schema field {other} must be \"name: type\" or {{name: type}}")),
    };
    if !is_identifier(&name) {
        let suggestion = name.replace(|c: char| !c.is_alphanumeric() && c != '_', "_");
        return Err(format!("schema field name {name:?} is not an identifier (did you mean {suggestion:?}?)"));
    }
    let (type_text, required) = match type_text.strip_suffix('?') {
        Some(base) => (base.trim().to_owned(), false),
        None => (type_text, true),
    };
    let field_type = FieldType::parse(&type_text)
        .ok_or_else(|| format!("schema field {name:?} has unknown type {type_text:?} (expected str, int, float, bool or any)"))?;
    Ok(FieldSpec { name, field_type, required })
}

impl SchemaConfig {
    /// The schema an options map declares; missing `schema` is an error.
    pub fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<SchemaConfig, String> {
        match options.get("schema") {
            Some(schema) => SchemaConfig::parse(schema),
            None => Err("options.schema is required".to_owned()),
        }
    }

    pub fn observed() -> SchemaConfig {
        SchemaConfig {
            mode: SchemaMode::Observed,
            fields: Vec::new(),
            guaranteed_fields: None,
            required_fields: None,
            audit_fields: Vec::new(),
        }
    }

    pub fn parse(value: &serde_json::Value) -> Result<SchemaConfig, String> {
        let map = value.as_object().ok_or_else(|| "schema must be a mapping with a `mode`".to_owned())?;
        for key in map.keys() {
            if !["mode", "fields", "guaranteed_fields", "required_fields", "audit_fields"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown schema key {key:?} (expected mode, fields, guaranteed_fields, required_fields, audit_fields)"
                ));
            }
        }
        let mode = match map.get("mode").and_then(serde_json::Value::as_str) {
            Some("fixed") => SchemaMode::Fixed,
            Some("flexible") => SchemaMode::Flexible,
            Some("observed") => SchemaMode::Observed,
            Some(other) => return Err(format!("schema.mode {other:?} is not one of fixed, flexible, observed")),
            None => return Err("schema.mode is required (fixed, flexible or observed)".to_owned()),
        };
        let fields = match map.get("fields") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items.iter().map(field_spec).collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(format!("schema.fields must be a list, not {other}")),
        };
        let mut seen = std::collections::BTreeSet::new();
        for field in &fields {
            if !seen.insert(field.name.clone()) {
                return Err(format!("schema field {:?} is declared twice", field.name));
            }
        }
        match mode {
            SchemaMode::Fixed | SchemaMode::Flexible if fields.is_empty() => {
                return Err(format!("schema.fields must not be empty in {} mode", mode.as_str()));
            }
            SchemaMode::Observed if !fields.is_empty() => {
                return Err("schema.fields must be absent in observed mode".to_owned());
            }
            SchemaMode::Fixed | SchemaMode::Flexible | SchemaMode::Observed => {}
        }
        let schema = SchemaConfig {
            mode,
            fields,
            guaranteed_fields: name_list(map.get("guaranteed_fields"), "guaranteed_fields")?,
            required_fields: name_list(map.get("required_fields"), "required_fields")?,
            audit_fields: name_list(map.get("audit_fields"), "audit_fields")?.unwrap_or_default(),
        };
        if schema.mode != SchemaMode::Observed {
            for (key, list) in [("guaranteed_fields", &schema.guaranteed_fields), ("required_fields", &schema.required_fields)] {
                for name in list.iter().flatten() {
                    if !schema.fields.iter().any(|f| &f.name == name) {
                        return Err(format!("schema.{key} names {name:?}, which is not a declared field"));
                    }
                }
            }
        }
        Ok(schema)
    }

    /// Fields a producer with this schema promises downstream.
    pub fn guaranteed(&self) -> Vec<String> {
        let mut names: Vec<String> = self.fields.iter().filter(|f| f.required).map(|f| f.name.clone()).collect();
        for name in self.guaranteed_fields.iter().flatten() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Fields a consumer with this schema needs.
    pub fn required(&self) -> Vec<String> {
        match &self.required_fields {
            Some(names) => names.clone(),
            None => self.fields.iter().filter(|f| f.required).map(|f| f.name.clone()).collect(),
        }
    }

    /// `[{"name","type","required"}]` for `nodes.schema_fields_json`.
    pub fn fields_json(&self) -> Option<serde_json::Value> {
        if self.mode == SchemaMode::Observed || self.fields.is_empty() {
            return None;
        }
        Some(serde_json::Value::Array(
            self.fields
                .iter()
                .map(|f| serde_json::json!({"name": f.name, "type": f.field_type.as_str(), "required": f.required}))
                .collect(),
        ))
    }
}

/// Coerces a source value to a declared type (lax rules, sources only).
/// `Err` is the reason the value was rejected.
pub fn coerce(value: &Value, field_type: FieldType) -> Result<Value, String> {
    let reject = || Err(format!("expected {field_type}, got {} {}", value.type_name(), short(value)));
    match (field_type, value) {
        (FieldType::Any, _)
        | (FieldType::Str, Value::String(_))
        | (FieldType::Int, Value::Integer(_))
        | (FieldType::Bool, Value::Bool(_))
        | (FieldType::Float, Value::Float(_)) => Ok(value.clone()),
        #[allow(clippy::cast_precision_loss)]
        (FieldType::Float, Value::Integer(n)) => Ok(Value::Float(Finite::new(*n as f64).ok_or_else(|| "non-finite".to_owned())?)),
        (FieldType::Int, Value::Float(x)) if x.get().fract() == 0.0 && x.get().abs() < 9.0e15 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(Value::Integer(x.get() as i64))
        }
        (FieldType::Int, Value::Bool(flag)) => Ok(Value::Integer(i64::from(*flag))),
        (FieldType::Int, Value::String(text)) => {
            let cleaned = text.trim();
            let digits: String = cleaned.chars().filter(|c| *c != '_').collect();
            let underscores_ok = !cleaned.starts_with('_') && !cleaned.ends_with('_') && !cleaned.contains("__");
            if let (true, Ok(n)) = (underscores_ok, digits.parse::<i64>()) {
                return Ok(Value::Integer(n));
            }
            match digits.parse::<f64>() {
                Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 && digits.contains('.') =>
                {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Value::Integer(x as i64))
                }
                _ => reject(),
            }
        }
        (FieldType::Float, Value::String(text)) => {
            let cleaned = text.trim().to_ascii_lowercase();
            if cleaned.contains("nan") || cleaned.contains("inf") {
                return reject();
            }
            match cleaned.replace('_', "").parse::<f64>().ok().and_then(Finite::new) {
                Some(x) => Ok(Value::Float(x)),
                None => reject(),
            }
        }
        (FieldType::Bool, Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "t" | "y" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" | "f" | "n" => Ok(Value::Bool(false)),
            _ => reject(),
        },
        (FieldType::Bool, Value::Integer(n)) if *n == 0 || *n == 1 => Ok(Value::Bool(*n == 1)),
        (FieldType::Str | FieldType::Int | FieldType::Float | FieldType::Bool, _) => reject(),
    }
}

fn short(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
