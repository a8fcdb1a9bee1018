//! Canonical JSON per RFC 8785 (JCS), byte-compatible with the reference's
//! `sha256-rfc8785-v1` scheme.
//!
//! Rules: no whitespace; integers within ±(2^53-1); floats in ECMAScript
//! Number-to-String form (`-0` prints `0`, integral floats print without `.0`);
//! strings escape only `"`, `\` and control characters; object members sorted
//! by the UTF-16 code units of their keys.

use std::fmt::Write as _;

use crate::errors::CanonicalError;
use crate::value::Value;

/// The hashing scheme id stored in `runs.canonical_version`.
pub const CANONICAL_VERSION: &str = "sha256-rfc8785-v1";

/// Largest integer magnitude canonical JSON accepts (2^53 - 1).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Canonical JSON of a row value.
pub fn canonical_json_value(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Canonical JSON of a `serde_json` value.
pub fn canonical_json(value: &serde_json::Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(128);
    write_json(value, &mut out)?;
    Ok(out)
}

/// Canonical JSON of a `serde_json` object, and the byte offset at which
/// each member (`"key":value`) starts, in canonical order — so a member can
/// be spliced in without writing the object again.
pub fn canonical_json_members(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<(String, Vec<(&str, usize)>), CanonicalError> {
    let mut members: Vec<(&String, &serde_json::Value)> = map.iter().collect();
    members.sort_by(|a, b| compare_keys(a.0, b.0));
    let mut out = String::with_capacity(256);
    let mut starts = Vec::with_capacity(members.len());
    out.push('{');
    for (idx, (key, item)) in members.into_iter().enumerate() {
        if idx > 0 {
            out.push(',');
        }
        starts.push((key.as_str(), out.len()));
        write_string(key, &mut out);
        out.push(':');
        write_canonical(item, &mut out)?;
    }
    out.push('}');
    Ok((out, starts))
}

/// Canonical JSON of a string (quoted and escaped).
pub fn canonical_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_string(text, &mut out);
    out
}

/// Orders object keys as canonical JSON does: by UTF-16 code units.
pub fn canonical_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    compare_keys(a, b)
}

/// Canonical JSON of anything serialisable to JSON.
pub fn canonical_json_of<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    let json = serde_json::to_value(value).map_err(|error| CanonicalError::UnrepresentableNumber(error.to_string()))?;
    canonical_json(&json)
}

/// Appends the canonical JSON of `value` to `out`.
pub fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    write_canonical(value, out)
}

fn write_json(value: &serde_json::Value, out: &mut String) -> Result<(), CanonicalError> {
    write_canonical(value, out)
}

/// One JSON value as the single writer sees it, whichever tree it is from.
enum Node<'a, T> {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(&'a str),
    List(&'a [T]),
    Object(Vec<(&'a String, &'a T)>),
}

/// A JSON tree the canonical writer can walk: row values and `serde_json`
/// values go through the same code, so their hashed bytes cannot drift apart.
trait Canonical: Sized {
    fn node(&self) -> Result<Node<'_, Self>, CanonicalError>;
}

impl Canonical for Value {
    fn node(&self) -> Result<Node<'_, Self>, CanonicalError> {
        Ok(match self {
            Value::Null => Node::Null,
            Value::Bool(flag) => Node::Bool(*flag),
            Value::Integer(number) => Node::Integer(*number),
            Value::Float(number) => Node::Float(number.get()),
            Value::String(text) => Node::String(text),
            Value::List(items) => Node::List(items),
            Value::Object(row) => Node::Object(row.iter().collect()),
        })
    }
}

impl Canonical for serde_json::Value {
    fn node(&self) -> Result<Node<'_, Self>, CanonicalError> {
        Ok(match self {
            serde_json::Value::Null => Node::Null,
            serde_json::Value::Bool(flag) => Node::Bool(*flag),
            serde_json::Value::Number(number) => {
                if let Some(integer) = number.as_i64() {
                    Node::Integer(integer)
                } else if number.is_u64() {
                    return Err(CanonicalError::UnsafeInteger(number.to_string()));
                } else {
                    Node::Float(number.as_f64().ok_or_else(|| CanonicalError::UnrepresentableNumber(number.to_string()))?)
                }
            }
            serde_json::Value::String(text) => Node::String(text),
            serde_json::Value::Array(items) => Node::List(items),
            serde_json::Value::Object(map) => Node::Object(map.iter().collect()),
        })
    }
}

/// The one canonical writer (RFC 8785).
fn write_canonical<T: Canonical>(value: &T, out: &mut String) -> Result<(), CanonicalError> {
    match value.node()? {
        Node::Null => out.push_str("null"),
        Node::Bool(flag) => out.push_str(if flag { "true" } else { "false" }),
        Node::Integer(number) => write_integer(number, out)?,
        Node::Float(number) => write_float(number, out)?,
        Node::String(text) => write_string(text, out),
        Node::List(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Node::Object(mut members) => {
            members.sort_by(|a, b| compare_keys(a.0, b.0));
            out.push('{');
            for (idx, (key, item)) in members.into_iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Orders keys by their UTF-16 code units, as RFC 8785 requires.
fn compare_keys(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_integer(number: i64, out: &mut String) -> Result<(), CanonicalError> {
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&number) {
        return Err(CanonicalError::UnsafeInteger(number.to_string()));
    }
    let _ = write!(out, "{number}");
    Ok(())
}

fn write_float(number: f64, out: &mut String) -> Result<(), CanonicalError> {
    if !number.is_finite() {
        return Err(CanonicalError::NonFinite(number.to_string()));
    }
    if number == 0.0 {
        out.push('0');
        return Ok(());
    }
    let mut buffer = ryu_js::Buffer::new();
    out.push_str(buffer.format_finite(number));
    Ok(())
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (idx, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0a => Some("\\n"),
            0x0c => Some("\\f"),
            0x0d => Some("\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[start..idx]);
        match escape {
            Some(sequence) => out.push_str(sequence),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        start = idx + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests;
