//! Unit tests of the `llm` transform's pure parts: options, fences, the
//! finish-reason policy and output-field checks. End-to-end behaviour
//! against the fake server is tested through the binary (`tests/it/llm.rs`).

use super::*;

fn options(extra: serde_json::Value) -> Options {
    let base = serde_json::json!({
        "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
        "template": "Say {{ row.text }}", "required_input_fields": ["text"], "schema": {"mode": "observed"},
    });
    let mut base = base.as_object().cloned().unwrap_or_default();
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        base.insert(key, value);
    }
    base
}

fn refused(extra: serde_json::Value) -> String {
    Llm::new(&options(extra)).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn options_are_checked_per_provider() {
    assert!(Llm::new(&options(serde_json::json!({}))).is_ok());
    assert!(refused(serde_json::json!({"deployment_name": "d"})).contains("deployment_name is not an option of provider openai"));
    assert!(refused(serde_json::json!({"provider": "openrouter", "api_key": null})).contains("needs model and api_key"));
    assert!(refused(serde_json::json!({"temperature": 3})).contains("temperature"));
    assert!(refused(serde_json::json!({"pool_size": 0})).contains("pool_size"));
    assert!(refused(serde_json::json!({"required_input_fields": null})).contains("required_input_fields"));
    assert!(refused(serde_json::json!({"template": "{{ row.text "})).contains("template"));
    assert!(refused(serde_json::json!({"base_url": "ftp://x"})).contains("http(s)"));
    assert!(refused(serde_json::json!({"tracing": {"provider": "langfuse"}})).contains("tracing"));
}

#[test]
fn queries_are_checked() {
    let query = |fields: serde_json::Value| serde_json::json!({"required_input_fields": [], "queries": {"q": {"input_fields": {"a": "text"}, "output_fields": fields}}});
    assert!(Llm::new(&options(query(serde_json::json!([{"suffix": "score", "type": "integer"}])))).is_ok());
    assert!(refused(query(serde_json::json!([{"suffix": "s", "type": "enum"}]))).contains("needs values"));
    assert!(refused(query(serde_json::json!([{"suffix": "s", "type": "string", "values": ["a"]}]))).contains("only an enum"));
    assert!(refused(query(serde_json::json!([{"suffix": "s", "type": "string"}, {"suffix": "s", "type": "string"}])))
        .contains("twice"));
}

#[test]
fn fences_are_stripped() {
    assert_eq!(strip_fences("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
    assert_eq!(strip_fences("  plain  "), "plain");
    assert_eq!(strip_fences("```\nx"), "x");
}

#[test]
fn the_finish_reason_policy() {
    assert!(finish_reason_error(None).is_none());
    assert!(finish_reason_error(Some("stop")).is_none());
    let reason = |r| match finish_reason_error(Some(r)) {
        Some(TransformResult::Error { reason }) => reason["reason"].as_str().map(str::to_owned),
        _ => None,
    };
    assert_eq!(reason("length").as_deref(), Some("response_truncated"));
    assert_eq!(reason("content_filter").as_deref(), Some("content_filtered"));
    assert_eq!(reason("tool_calls").as_deref(), Some("unexpected_finish_reason"));
}

#[test]
fn outputs_are_untrusted() {
    let fields = vec![
        OutputField { suffix: "score".into(), field_type: OutputType::Integer, values: None },
        OutputField { suffix: "label".into(), field_type: OutputType::Enum, values: Some(vec!["yes".into(), "no".into()]) },
    ];
    let reason = |content: &str| match parse_outputs(content, &fields) {
        Ok(_) => "ok".to_owned(),
        Err(TransformResult::Error { reason }) => reason["reason"].as_str().unwrap_or_default().to_owned(),
        Err(other) => format!("{other:?}"),
    };
    assert_eq!(reason(r#"{"score": 3.0, "label": "yes"}"#), "ok", "an integral float is an integer");
    assert_eq!(reason("not json"), "json_parse_failed");
    assert_eq!(reason("[1]"), "invalid_json_type");
    assert_eq!(reason(r#"{"score": 3}"#), "missing_output_field");
    assert_eq!(reason(r#"{"score": true, "label": "yes"}"#), "field_type_mismatch");
    assert_eq!(reason(r#"{"score": 1, "label": "maybe"}"#), "field_type_mismatch");
    assert_eq!(reason(r#"{"score": 1.5, "label": "no"}"#), "field_type_mismatch");
}
