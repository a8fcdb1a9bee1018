//! Canonical JSON: RFC 8785 test vectors byte for byte, and properties.

use proptest::prelude::*;

use super::{canonical_json, canonical_json_value};
use crate::errors::CanonicalError;
use crate::hashing::stable_hash;
use crate::value::{Finite, Row, Value};

fn canon(text: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(text).expect("test input is valid JSON");
    canonical_json(&json).expect("test input is canonicalisable")
}

#[test]
fn rfc8785_main_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    assert_eq!(canon(input), expected);
}

#[test]
fn rfc8785_sorting_example_uses_utf16_code_units() {
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon(input), expected);
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let vectors: &[(u64, &str)] = &[
        (0x0000_0000_0000_0000, "0"),
        (0x8000_0000_0000_0000, "0"),
        (0x0000_0000_0000_0001, "5e-324"),
        (0x8000_0000_0000_0001, "-5e-324"),
        (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
        (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
        (0x4340_0000_0000_0000, "9007199254740992"),
        (0xc340_0000_0000_0000, "-9007199254740992"),
        (0x4430_0000_0000_0000, "295147905179352830000"),
        (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
        (0x44b5_2d02_c7e1_4af6, "1e+23"),
        (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
        (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
        (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
        (0x444b_1ae4_d6e2_ef50, "1e+21"),
        (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
        (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
        (0x41b3_de43_5555_5553, "333333333.3333332"),
        (0x41b3_de43_5555_5554, "333333333.33333325"),
        (0x41b3_de43_5555_5555, "333333333.3333333"),
        (0x41b3_de43_5555_5556, "333333333.3333334"),
        (0x41b3_de43_5555_5557, "333333333.33333343"),
        (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
        (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
    ];
    for (bits, expected) in vectors {
        let number = f64::from_bits(*bits);
        let value = Value::Float(Finite::new(number).expect("vector is finite"));
        assert_eq!(canonical_json_value(&value).as_deref(), Ok(*expected), "bits {bits:016x}");
    }
}

#[test]
fn non_finite_numbers_cannot_enter_a_value() {
    for bits in [0x7fff_ffff_ffff_ffff_u64, 0x7ff0_0000_0000_0000, 0xfff0_0000_0000_0000] {
        assert!(Finite::new(f64::from_bits(bits)).is_none());
    }
    assert!(serde_json::from_str::<Value>("NaN").is_err());
}

#[test]
fn unsafe_integers_are_rejected_not_rounded() {
    assert_eq!(canonical_json_value(&Value::Integer(9_007_199_254_740_991)).as_deref(), Ok("9007199254740991"));
    assert!(matches!(canonical_json_value(&Value::Integer(9_007_199_254_740_992)), Err(CanonicalError::UnsafeInteger(_))));
    assert!(matches!(canon_result("18446744073709551615"), Err(CanonicalError::UnsafeInteger(_))));
}

fn canon_result(text: &str) -> Result<String, CanonicalError> {
    canonical_json(&serde_json::from_str(text).expect("valid JSON"))
}

#[test]
fn large_integer_literals_read_as_the_doubles_canonical_json_prints() {
    let value: Value = serde_json::from_str("6006575884643061000").expect("parses");
    assert!(matches!(value, Value::Float(_)));
    assert_eq!(canonical_json_value(&value).as_deref(), Ok("6006575884643061000"));
}

#[test]
fn integral_float_and_integer_canonicalise_identically() {
    let float = Value::Float(Finite::new(1.0).expect("finite"));
    assert_eq!(canonical_json_value(&float), canonical_json_value(&Value::Integer(1)));
}

#[test]
fn control_characters_escape_in_lower_case_hex() {
    let value = Value::String("\u{1}\u{1f}\u{7f}\t".to_owned());
    assert_eq!(canonical_json_value(&value).as_deref(), Ok("\"\\u0001\\u001f\u{7f}\\t\""));
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-9_007_199_254_740_991_i64..=9_007_199_254_740_991).prop_map(Value::Integer),
        any::<f64>().prop_filter_map("finite", Finite::new).prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Row>())),
        ]
    })
}

proptest! {
    #[test]
    fn canonicalisation_is_idempotent(value in arb_value()) {
        let once = canonical_json_value(&value).expect("generated values are canonicalisable");
        let reparsed: Value = serde_json::from_str(&once).expect("canonical JSON parses");
        prop_assert_eq!(canonical_json_value(&reparsed).expect("reparsed"), once);
    }

    #[test]
    fn key_order_does_not_change_the_hash(members in prop::collection::vec((".{0,8}", arb_value()), 0..8)) {
        let forward: Row = members.iter().cloned().collect();
        let mut reversed_members = members.clone();
        reversed_members.reverse();
        // Keep the last duplicate's value in both maps, as `collect` does forwards.
        let mut backward = Row::new();
        for (key, item) in reversed_members {
            backward.entry(key).or_insert(item);
        }
        prop_assert_eq!(stable_hash(&Value::Object(forward)), stable_hash(&Value::Object(backward)));
    }

    #[test]
    fn a_row_value_and_its_json_canonicalise_to_the_same_bytes(value in arb_value()) {
        let json = value.to_json();
        prop_assert_eq!(canonical_json_value(&value).expect("value"), canonical_json(&json).expect("json"));
    }

    #[test]
    fn values_round_trip_through_canonical_json(value in arb_value()) {
        let text = canonical_json_value(&value).expect("canonicalisable");
        let back: Value = serde_json::from_str(&text).expect("parses into the value model");
        prop_assert_eq!(canonical_json_value(&back).expect("again"), text);
    }

    #[test]
    fn floats_print_in_ecmascript_form_and_round_trip(number in any::<f64>().prop_filter("finite", |n| n.is_finite())) {
        let text = canonical_json_value(&Value::Float(Finite::new(number).expect("finite"))).expect("finite");
        let parsed: f64 = text.parse().expect("a JavaScript number literal parses as f64");
        if number.to_bits() << 1 == 0 {
            prop_assert_eq!(text.as_str(), "0");
        } else {
            prop_assert_eq!(parsed.to_bits(), number.to_bits(), "{} does not read back as {}", text, number);
        }
        prop_assert!(!text.ends_with(".0"));
        prop_assert!(!text.contains("e+0") && !text.contains("e-0") && !text.contains('E'));
        let magnitude = number.abs();
        if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
            prop_assert!(text.contains('e'), "{} should use exponent form", text);
        } else {
            prop_assert!(!text.contains('e'), "{} should use plain decimal form", text);
        }
    }
}
