//! Settings loading: interpolation, locating problems, and a fuzz-style
//! property: random YAML never panics the loader or the graph builder.

use std::path::Path;

use contracts::plugin::{BatchTransform, Options, PluginError, PluginRegistry, Sink, Source, Transform};
use proptest::prelude::*;

use super::*;

fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "value".to_owned())
}

#[test]
fn interpolation_replaces_set_variables_and_defaults() {
    assert_eq!(load::interpolate_str("a ${SET} b", &env).as_deref(), Ok("a value b"));
    assert_eq!(load::interpolate_str("${UNSET:-fallback}", &env).as_deref(), Ok("fallback"));
    assert_eq!(load::interpolate_str("${SET:-fallback}", &env).as_deref(), Ok("value"));
    assert_eq!(load::interpolate_str("literal $ and ${ not closed", &env).as_deref(), Ok("literal $ and ${ not closed"));
    let error = load::interpolate_str("${UNSET}", &env).expect_err("unset");
    assert!(error.contains("UNSET is not set"), "{error}");
}

#[test]
fn secrets_are_fingerprinted_never_stored_raw() {
    let mut value =
        serde_json::json!({"options": {"api_key": "s3cret", "nested": {"db_password": "pw"}, "url": "postgresql://u:pw@h/db"}});
    let policy = SecretPolicy { key: Some(b"k".to_vec()) };
    fingerprint_secrets(&mut value, &policy, "").expect("fingerprinted");
    let text = value.to_string();
    assert!(!text.contains("s3cret") && !text.contains(":pw@") && !text.contains("\"pw\""), "{text}");
    assert!(value["options"]["api_key_fingerprint"].as_str().is_some_and(|f| f.len() == 64));
    let mut raw = serde_json::json!({"token": "t"});
    let refused = fingerprint_secrets(&mut raw, &SecretPolicy { key: None }, "");
    assert!(refused.expect_err("no key").contains("ELSPETH_FINGERPRINT_KEY"));
}

/// A registry that accepts any plugin name, so the property exercises the
/// loader and the graph builder rather than plugin options.
struct AnyPlugins;

fn refuse() -> PluginError {
    PluginError::Config("test registry builds no plugins".into())
}

impl PluginRegistry for AnyPlugins {
    fn source(&self, _: &str, _: &Options) -> Result<Box<dyn Source>, PluginError> {
        Err(refuse())
    }
    fn transform(&self, _: &str, _: &Options) -> Result<Box<dyn Transform>, PluginError> {
        Err(refuse())
    }
    fn batch_transform(&self, _: &str, _: &Options) -> Result<Box<dyn BatchTransform>, PluginError> {
        Err(refuse())
    }
    fn sink(&self, _: &str, _: &Options) -> Result<Box<dyn Sink>, PluginError> {
        Err(refuse())
    }
    fn is_batch_aware(&self, plugin: &str) -> bool {
        plugin.starts_with("batch")
    }
}

fn yaml_fragment() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("x".to_owned()),
        Just("raw".to_owned()),
        Just("out".to_owned()),
        Just("'true'".to_owned()),
        Just("fork".to_owned()),
        Just("discard".to_owned()),
        Just("row['a'] > 1".to_owned()),
        Just("[a, b]".to_owned()),
        Just("{mode: observed}".to_owned()),
        Just("3".to_owned()),
        "[a-z_]{1,6}",
    ];
    let key = prop::sample::select(vec![
        "source",
        "sinks",
        "transforms",
        "gates",
        "aggregations",
        "coalesce",
        "plugin",
        "on_success",
        "on_error",
        "input",
        "name",
        "condition",
        "routes",
        "fork_to",
        "branches",
        "options",
        "schema",
        "trigger",
        "count",
        "landscape",
        "url",
        "policy",
    ]);
    prop::collection::vec((key, scalar, 0..3_usize), 0..14).prop_map(|entries| {
        let mut text = String::new();
        for (key, value, depth) in entries {
            text.push_str(&"  ".repeat(depth));
            text.push_str(key);
            text.push_str(": ");
            text.push_str(&value);
            text.push('\n');
        }
        text
    })
}

proptest! {
    #[test]
    fn random_text_never_panics_the_loader(text in "\\PC{0,200}") {
        let _ = parse(Path::new("fuzz.yaml"), &text, &env);
    }

    #[test]
    fn random_yaml_is_an_error_or_a_graph(text in yaml_fragment()) {
        if let Ok(loaded) = parse(Path::new("fuzz.yaml"), &text, &env) {
            let _ = validate_names_and_keys(&loaded);
            let _ = crate::dag::build(&loaded, &AnyPlugins);
        }
    }
}
