//! The value model for row data: null, bool, integer, finite float, string,
//! list and object.
//!
//! NaN and ±Infinity cannot be represented (`Finite` refuses them), so once a
//! value exists it can always be canonicalised, except for integers beyond
//! ±(2^53-1), which canonical JSON rejects explicitly.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::MAX_SAFE_INTEGER;
use crate::errors::CanonicalError;

/// A row: field name to value, in the order the source produced the fields.
pub type Row = IndexMap<String, Value>;

/// A finite `f64`: never NaN, never infinite.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Finite(f64);

impl Finite {
    pub fn new(number: f64) -> Option<Finite> {
        number.is_finite().then_some(Finite(number))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Finite {
    type Error = CanonicalError;
    fn try_from(number: f64) -> Result<Self, Self::Error> {
        Finite::new(number).ok_or_else(|| CanonicalError::NonFinite(number.to_string()))
    }
}

/// One value inside a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Float(Finite),
    String(String),
    List(Vec<Value>),
    Object(Row),
}

impl Value {
    /// The type name used in validation messages and schema contracts.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Integer(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "str",
            Value::List(_) => "list",
            Value::Object(_) => "object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Float(_) | Value::List(_) | Value::Object(_) => None,
        }
    }

    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(number) => Some(*number as f64),
            Value::Float(number) => Some(number.get()),
            Value::Null | Value::Bool(_) | Value::String(_) | Value::List(_) | Value::Object(_) => None,
        }
    }

    /// Converts an arbitrary JSON value; numbers outside i64/f64 are rejected.
    pub fn from_json(json: serde_json::Value) -> Result<Value, CanonicalError> {
        Ok(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(flag) => Value::Bool(flag),
            serde_json::Value::Number(number) => {
                if let Some(integer) = number.as_i64() {
                    integer_literal(integer)
                } else {
                    let float = number.as_f64().ok_or_else(|| CanonicalError::UnrepresentableNumber(number.to_string()))?;
                    Value::Float(Finite::try_from(float)?)
                }
            }
            serde_json::Value::String(text) => Value::String(text),
            serde_json::Value::Array(items) => Value::List(items.into_iter().map(Value::from_json).collect::<Result<_, _>>()?),
            serde_json::Value::Object(map) => Value::Object(
                map.into_iter().map(|(key, item)| Ok((key, Value::from_json(item)?))).collect::<Result<_, CanonicalError>>()?,
            ),
        })
    }

    /// Converts to a `serde_json` value (lossless).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::Value::Bool(*flag),
            Value::Integer(number) => serde_json::Value::from(*number),
            Value::Float(number) => {
                serde_json::Number::from_f64(number.get()).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(row) => {
                serde_json::Value::Object(row.iter().map(|(key, item)| (key.clone(), item.to_json())).collect())
            }
        }
    }
}

/// JSON numbers are IEEE doubles (RFC 8785, I-JSON): an integer literal
/// beyond ±(2^53-1) is the double it denotes, which is also how canonical JSON
/// prints such doubles. Sources that must not round large integers check for
/// them before building values.
#[allow(clippy::cast_precision_loss)]
fn integer_literal(number: i64) -> Value {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&number) {
        Value::Integer(number)
    } else {
        Value::Float(Finite(number as f64))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Value {
        Value::Integer(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Value {
        Value::Bool(flag)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(flag) => serializer.serialize_bool(*flag),
            Value::Integer(number) => serializer.serialize_i64(*number),
            Value::Float(number) => serializer.serialize_f64(number.get()),
            Value::String(text) => serializer.serialize_str(text),
            Value::List(items) => items.serialize(serializer),
            Value::Object(row) => row.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value with finite numbers")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Value, E> {
        Ok(integer_literal(number))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Value, E> {
        Ok(i64::try_from(number).map_or_else(|_| Value::Float(Finite(number as f64)), integer_literal))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Value, E> {
        Finite::new(number).map(Value::Float).ok_or_else(|| E::custom(format!("non-finite number {number} is not allowed")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut row = Row::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, item)) = map.next_entry::<String, Value>()? {
            row.insert(key, item);
        }
        Ok(Value::Object(row))
    }
}
