//! Schema grammar and coercion rules.

use super::*;

#[test]
fn the_grammar_accepts_both_field_forms_and_optionals() {
    let schema =
        SchemaConfig::parse(&serde_json::json!({"mode": "fixed", "fields": ["id: int", {"score": "float?"}]})).expect("valid");
    assert_eq!(schema.fields[0], FieldSpec { name: "id".into(), field_type: FieldType::Int, required: true });
    assert_eq!(schema.fields[1], FieldSpec { name: "score".into(), field_type: FieldType::Float, required: false });
    assert_eq!(schema.guaranteed(), vec!["id".to_owned()]);
}

#[test]
fn the_grammar_rejects_legacy_and_broken_schemas() {
    let cases = [
        serde_json::json!({"fields": ["id: int"]}),
        serde_json::json!({"mode": "strict", "fields": ["id: int"]}),
        serde_json::json!({"mode": "fixed", "fields": "dynamic"}),
        serde_json::json!({"mode": "fixed", "fields": []}),
        serde_json::json!({"mode": "fixed", "fields": ["user-id: int"]}),
        serde_json::json!({"mode": "fixed", "fields": ["when: datetime"]}),
        serde_json::json!({"mode": "fixed", "fields": ["a: int", "a: str"]}),
        serde_json::json!({"mode": "fixed", "fields": ["a: int"], "required_fields": ["b"]}),
        serde_json::json!({"mode": "observed", "extra": 1}),
    ];
    let messages: Vec<String> = cases.iter().map(|c| SchemaConfig::parse(c).expect_err("invalid")).collect();
    insta::assert_snapshot!(messages.join("\n"));
}

#[test]
fn coercion_follows_the_lax_rules() {
    let ok = |v: Value, t: FieldType| coerce(&v, t).expect("coerces");
    assert_eq!(ok(Value::from(" 42 "), FieldType::Int), Value::Integer(42));
    assert_eq!(ok(Value::from("1_000"), FieldType::Int), Value::Integer(1000));
    assert_eq!(ok(Value::from("42.0"), FieldType::Int), Value::Integer(42));
    assert_eq!(ok(Value::from("1e3"), FieldType::Float), Value::Float(Finite::new(1000.0).expect("finite")));
    assert_eq!(ok(Value::from("Yes"), FieldType::Bool), Value::Bool(true));
    for (value, field_type) in [
        (Value::from("42.5"), FieldType::Int),
        (Value::from(""), FieldType::Int),
        (Value::from("0x10"), FieldType::Int),
        (Value::from("nan"), FieldType::Float),
        (Value::from("inf"), FieldType::Float),
        (Value::Integer(5), FieldType::Str),
        (Value::Integer(2), FieldType::Bool),
    ] {
        assert!(coerce(&value, field_type).is_err(), "{value:?} as {field_type}");
    }
}
