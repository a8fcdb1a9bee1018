//! Holding source rows to their declared schema: coercion of declared fields,
//! fixed-mode extras, optional fields, and observed-mode type locking (the
//! first valid row fixes each field's type; later drift is quarantined).

use contracts::plugin::Violation;
use contracts::schema::{coerce, SchemaConfig, SchemaMode};
use contracts::{Row, Value};
use indexmap::IndexMap;

/// A row that failed validation: the message and the structured violation.
pub(crate) struct Rejection {
    pub(crate) message: String,
    pub(crate) violation: Violation,
}

/// Validates rows against a schema, remembering observed types.
pub(crate) struct RowValidator {
    schema: SchemaConfig,
    observed: Option<IndexMap<String, &'static str>>,
}

fn observed_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Integer(_) => "int",
        Value::Float(_) => "float",
        Value::String(_) => "str",
        Value::List(_) | Value::Object(_) => "any",
    }
}

impl RowValidator {
    pub(crate) fn new(schema: SchemaConfig) -> RowValidator {
        RowValidator { schema, observed: None }
    }

    pub(crate) fn mode(&self) -> SchemaMode {
        self.schema.mode
    }

    /// The validated (coerced) row, or why it was rejected.
    pub(crate) fn validate(&mut self, row: Row, original_name: &dyn Fn(&str) -> String) -> Result<Row, Rejection> {
        match self.schema.mode {
            SchemaMode::Observed => self.observe(row, original_name),
            SchemaMode::Fixed | SchemaMode::Flexible => self.declared(row, original_name),
        }
    }

    fn declared(&mut self, mut row: Row, original_name: &dyn Fn(&str) -> String) -> Result<Row, Rejection> {
        let mut out = Row::with_capacity(row.len());
        for field in &self.schema.fields {
            match row.shift_remove(&field.name) {
                Some(Value::Null) if !field.required => {
                    out.insert(field.name.clone(), Value::Null);
                }
                Some(value) => match coerce(&value, field.field_type) {
                    Ok(coerced) => {
                        out.insert(field.name.clone(), coerced);
                    }
                    Err(reason) => {
                        return Err(Rejection {
                            message: format!("{}: {reason}", field.name),
                            violation: Violation {
                                violation_type: Some("type_mismatch".into()),
                                original_field_name: Some(original_name(&field.name)),
                                normalized_field_name: Some(field.name.clone()),
                                expected_type: Some(field.field_type.as_str().into()),
                                actual_type: Some(value.type_name().into()),
                            },
                        });
                    }
                },
                None if field.required => {
                    return Err(Rejection {
                        message: format!("{}: required field is missing", field.name),
                        violation: Violation {
                            violation_type: Some("missing_field".into()),
                            original_field_name: Some(original_name(&field.name)),
                            normalized_field_name: Some(field.name.clone()),
                            expected_type: Some(field.field_type.as_str().into()),
                            actual_type: None,
                        },
                    });
                }
                None => {
                    out.insert(field.name.clone(), Value::Null);
                }
            }
        }
        match self.schema.mode {
            SchemaMode::Fixed => {
                if let Some((extra, _)) = row.first() {
                    return Err(Rejection {
                        message: format!("{extra}: field is not declared in the fixed schema"),
                        violation: Violation {
                            violation_type: Some("extra_field".into()),
                            original_field_name: Some(original_name(extra)),
                            normalized_field_name: Some(extra.clone()),
                            expected_type: None,
                            actual_type: None,
                        },
                    });
                }
            }
            SchemaMode::Flexible | SchemaMode::Observed => out.extend(row),
        }
        Ok(out)
    }

    fn observe(&mut self, row: Row, original_name: &dyn Fn(&str) -> String) -> Result<Row, Rejection> {
        if let Some(types) = &self.observed {
            for (name, value) in &row {
                let actual = observed_type(value);
                if let Some(expected) = types.get(name) {
                    if actual != "null" && *expected != "null" && *expected != "any" && *expected != actual {
                        return Err(Rejection {
                            message: format!("{name}: expected type '{expected}', got '{actual}'"),
                            violation: Violation {
                                violation_type: Some("type_mismatch".into()),
                                original_field_name: Some(original_name(name)),
                                normalized_field_name: Some(name.clone()),
                                expected_type: Some((*expected).into()),
                                actual_type: Some(actual.into()),
                            },
                        });
                    }
                }
            }
            let types = self.observed.get_or_insert_with(IndexMap::new);
            for (name, value) in &row {
                let slot = types.entry(name.clone()).or_insert("null");
                if *slot == "null" {
                    *slot = observed_type(value);
                }
            }
        } else {
            self.observed = Some(row.iter().map(|(k, v)| (k.clone(), observed_type(v))).collect());
        }
        Ok(row)
    }
}
