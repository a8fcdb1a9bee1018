//! What every audited HTTP call shares: a transport error's full message,
//! a response body as the reference records it, and response headers
//! without secrets.

use base64::Engine as _;

/// A `reqwest` error with its causes (`error sending request: connection
/// refused`).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The response body as the reference records it: parsed JSON (strictly),
/// text, or base64 for anything else.
pub(crate) fn parse_body(content_type: &str, bytes: &[u8]) -> serde_json::Value {
    if content_type.contains("application/json") {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => value,
            Err(error) => {
                let text = String::from_utf8_lossy(bytes);
                let raw: String = text.chars().take(10_000).collect();
                serde_json::json!({"_json_parse_failed": true, "_error": error.to_string(), "_raw_text": raw})
            }
        }
    } else if content_type.starts_with("text/") || content_type.contains("xml") || content_type.contains("form-urlencoded") {
        serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
    } else {
        serde_json::json!({"_binary": base64::engine::general_purpose::STANDARD.encode(bytes)})
    }
}

/// Response headers without the sensitive ones (removed, not fingerprinted).
pub(crate) fn response_headers(headers: &reqwest::header::HeaderMap) -> serde_json::Value {
    let mut copy = serde_json::Map::new();
    for (name, value) in headers {
        if contracts::secrets::is_sensitive_header(name.as_str()) {
            continue;
        }
        copy.insert(name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned().into());
    }
    serde_json::Value::Object(copy)
}
