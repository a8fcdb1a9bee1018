//! The condition language: accepted and rejected constructs, Python value
//! semantics, and parser properties.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

fn row() -> contracts::Row {
    let mut row = contracts::Row::new();
    row.insert("amount".into(), contracts::Value::Integer(1500));
    row.insert("score".into(), contracts::Value::Float(contracts::Finite::new(0.5).expect("finite")));
    row.insert("name".into(), contracts::Value::String("Alice".into()));
    row.insert("tags".into(), contracts::Value::List(vec!["a".into(), "b".into()]));
    row.insert("missing_value".into(), contracts::Value::Null);
    let mut nested = contracts::Row::new();
    nested.insert("k".into(), contracts::Value::Integer(7));
    row.insert("d".into(), contracts::Value::Object(nested));
    row
}

fn eval(source: &str) -> Result<PyValue, EvalError> {
    Condition::parse(source).expect("parses").evaluate(&row())
}

fn label(source: &str) -> String {
    Condition::route_label(&eval(source).expect("evaluates"))
}

#[test]
fn accepted_expressions_evaluate_like_python() {
    let cases: &[(&str, &str)] = &[
        ("row['amount'] > 1000", "true"),
        ("1 < row['amount'] < 2000", "true"),
        ("row.get('nope', 0) > 5", "false"),
        ("row.get('nope') is None", "true"),
        ("row['missing_value'] is not None", "false"),
        ("row['d']['k'] == 7", "true"),
        ("row.get('d')['k'] + 1", "8"),
        ("row['tags'][-1]", "b"),
        ("'b' in row['tags']", "true"),
        ("'lic' in row['name']", "true"),
        ("'amount' in row", "true"),
        ("'x' not in row", "true"),
        ("len(row['name']) > 3", "true"),
        ("str(row['amount']) == '1500'", "true"),
        ("int('42') + int(' 1_0 ')", "52"),
        ("float('1e3')", "1000.0"),
        ("-7 % 3", "2"),
        ("7 % -3", "-2"),
        ("-7 // 2", "-4"),
        ("7 / 2", "3.5"),
        ("'ab' * 2", "abab"),
        ("True == 1", "true"),
        ("1 == 1.0", "true"),
        ("1 == '1'", "false"),
        ("'high' if row['amount'] > 1000 else 'low'", "high"),
        ("row.get('x') or 'default'", "default"),
        ("0 and 1", "0"),
        ("abs(-3.5)", "3.5"),
        ("bool([])", "false"),
        ("[1, 2] + [3]", "[1, 2, 3]"),
        ("(1,)", "(1,)"),
        ("{'a': 1}", "{'a': 1}"),
        ("row['score'] * 2", "1.0"),
        ("1e16", "1e+16"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("float('nan') == float('nan')", "false"),
        ("float('nan') < 1", "false"),
        ("not row['name']", "false"),
    ];
    for (source, expected) in cases {
        assert_eq!(label(source), *expected, "{source}");
    }
}

#[test]
fn runtime_errors_are_values() {
    let cases: &[(&str, &str)] = &[
        ("row['nope'] > 1", "KeyError"),
        ("row['name'] > 1", "TypeError"),
        ("1 / 0", "ZeroDivisionError"),
        ("1 // 0", "ZeroDivisionError"),
        ("int('abc')", "ValueError"),
        ("int('42.5')", "ValueError"),
        ("row['tags'][5]", "IndexError"),
        ("None < 1", "TypeError"),
        ("len(5)", "TypeError"),
        ("9223372036854775807 + 1", "OverflowError"),
        ("1 in 5", "TypeError"),
        ("{[1]: 2}", "TypeError"),
    ];
    for (source, kind) in cases {
        let error = eval(source).expect_err(source);
        assert_eq!(error.kind, *kind, "{source}: {error}");
    }
}

#[test]
fn rejected_constructs_name_the_offender() {
    let cases: &[&str] = &[
        "max(row['a'], 1)",
        "os.system('x')",
        "row.keys()",
        "row.get",
        "row.s",
        "row['a'] ** 2",
        "row['a'] & 1",
        "~row['a']",
        "row['a'][1:3]",
        "[1, 2][0]",
        "lambda x: x",
        "[x for x in row['tags']]",
        "(y := 1)",
        "f'{row}'",
        "b'bytes'",
        "1j",
        "row['a'] is 1",
        "len(x=1)",
        "row",
        "__import__('os')",
        "row['a'] if row['b']",
        "",
        "row['a'] ==",
        "'unterminated",
        "0x10",
        "{**row}",
        "[*row['tags']]",
        "len(row['a'], 2)",
        "row.get()",
        "int(row['a'])(1)",
    ];
    let mut rendered = String::new();
    for source in cases {
        let error = parse(source).expect_err(source);
        let _ = writeln!(rendered, "{source:?}: {error}");
    }
    insta::assert_snapshot!(rendered);
}

#[test]
fn static_boolean_detection() {
    let boolean = [
        "row['a'] > 1",
        "not row['a']",
        "True",
        "bool(row['a'])",
        "row['a'] > 1 and row['b'] < 2",
        "(row['a'] > 1) if row['c'] else False",
    ];
    let non_boolean =
        ["row['a']", "row.get('x') or 'd'", "'a' if row['b'] else 'c'", "row['a'] + 1", "row['a'] > 1 and row['b']"];
    for source in boolean {
        assert!(Condition::parse(source).expect(source).is_boolean(), "{source}");
    }
    for source in non_boolean {
        assert!(!Condition::parse(source).expect(source).is_boolean(), "{source}");
    }
}

#[test]
fn float_repr_matches_python() {
    use super::value::float_repr;
    let cases = [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (123.456, "123.456"),
        (1e-5, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        (0.0001, "0.0001"),
    ];
    for (x, expected) in cases {
        assert_eq!(float_repr(x), expected);
    }
}

fn source_fragment() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("row['a']".to_owned()),
        Just("row.get('b', 1)".to_owned()),
        Just("row['d']['k']".to_owned()),
        (0..1000_i64).prop_map(|n| n.to_string()),
        (0.0..100.0_f64).prop_map(|x| format!("{x}")),
        "[a-z ]{0,5}".prop_map(|s| format!("'{s}'")),
        Just("True".to_owned()),
        Just("None".to_owned()),
    ];
    atoms.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "//", "%", "==", "!=", "<", ">=", "and", "or", "in", "not in"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("not {a}")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("len({a})")),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a} if {b} else {c}")),
            prop::collection::vec(inner, 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
        ]
    })
}

proptest! {
    #[test]
    fn the_parser_never_panics_on_arbitrary_text(source in "\\PC{0,40}") {
        let _ = parse(&source);
    }

    #[test]
    fn the_parser_never_panics_on_python_like_text(source in "[a-z()\\[\\]'\"0-9 .,:+*/%<>=!-]{0,40}") {
        let _ = parse(&source);
    }

    #[test]
    fn printing_and_reparsing_is_stable(source in source_fragment()) {
        if let Ok(expr) = parse(&source) {
            let printed = expr.to_string();
            let reparsed = parse(&printed).expect("printed expressions parse");
            prop_assert_eq!(&reparsed, &expr, "{} printed as {}", source, printed);
            let _ = eval::evaluate(&expr, &row());
        }
    }
}
