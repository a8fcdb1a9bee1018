//! The catalogue matches what the plugins really accept.

use contracts::plugin::{Options, PluginError, PluginRegistry};

use super::{PluginKind, CATALOGUE};
use crate::BuiltinPlugins;

fn construct(kind: PluginKind, name: &str, options: &Options) -> Result<(), PluginError> {
    let registry = BuiltinPlugins;
    match kind {
        PluginKind::Source => registry.source(name, options).map(drop),
        PluginKind::Transform => registry.transform(name, options).map(drop),
        PluginKind::BatchTransform => registry.batch_transform(name, options).map(drop),
        PluginKind::Sink => registry.sink(name, options).map(drop),
    }
}

/// The option names serde lists after "expected one of" for an unknown key.
fn accepted_options(message: &str) -> Option<Vec<String>> {
    let (_, list) = message.split_once("expected one of ")?;
    Some(list.split(", ").map(|name| name.trim_matches(|c: char| c == '`' || c.is_whitespace()).to_owned()).collect())
}

#[test]
fn every_documented_option_is_accepted_and_every_accepted_option_documented() {
    for doc in CATALOGUE {
        let mut probe = Options::new();
        probe.insert("__probe__".into(), true.into());
        let error = construct(doc.kind, doc.info.name, &probe).expect_err("an unknown option must be refused");
        let message = error.to_string();
        assert!(message.contains("__probe__"), "{}: {message}", doc.info.name);
        let mut documented: Vec<String> = doc.options.iter().map(|o| o.name.to_owned()).collect();
        documented.sort();
        match accepted_options(&message) {
            Some(mut accepted) => {
                accepted.sort();
                assert_eq!(documented, accepted, "options of {} {}", doc.kind.as_str(), doc.info.name);
            }
            None => {
                for option in doc.options {
                    let mut one = Options::new();
                    one.insert(option.name.into(), serde_json::json!({"mode": "observed"}));
                    if let Err(error) = construct(doc.kind, doc.info.name, &one) {
                        assert!(!error.to_string().contains("unknown option"), "{}: {error}", doc.info.name);
                    }
                }
            }
        }
    }
}

#[test]
fn names_are_unique_per_kind_and_every_plugin_is_documented() {
    for doc in CATALOGUE {
        let same = CATALOGUE.iter().filter(|d| d.kind == doc.kind && d.info.name == doc.info.name).count();
        assert_eq!(same, 1, "{} {} listed twice", doc.kind.as_str(), doc.info.name);
        assert!(!doc.summary.is_empty() && doc.options.iter().all(|o| !o.description.is_empty()));
    }
    let error = construct(PluginKind::Sink, "nope", &Options::new()).expect_err("unknown plugin");
    assert_eq!(error.to_string(), "invalid options: unknown sink plugin \"nope\" (available: csv, json, database)");
}

/// `docs/settings.md` lists every option of every plugin: its "Built-in
/// plugins" section is the catalogue's own rendering (`UPDATE_DOCS=1`
/// rewrites it).
#[test]
fn the_settings_reference_lists_every_option_of_every_plugin() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/settings.md");
    let docs = std::fs::read_to_string(path).expect("docs/settings.md");
    let (begin, end) = ("<!-- plugins:begin -->\n", "<!-- plugins:end -->");
    let start = docs.find(begin).expect("the plugins section's begin marker") + begin.len();
    let stop = docs.find(end).expect("the plugins section's end marker");
    let rendered = markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, format!("{}{rendered}{}", &docs[..start], &docs[stop..])).expect("write docs");
        return;
    }
    assert_eq!(&docs[start..stop], rendered, "docs/settings.md's plugin section is stale: run with UPDATE_DOCS=1");
}

/// The catalogue as the settings reference prints it: one table per
/// plugin, every option with whether it is required and what it does.
fn markdown() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for kind in [PluginKind::Source, PluginKind::Transform, PluginKind::BatchTransform, PluginKind::Sink] {
        for doc in CATALOGUE.iter().filter(|d| d.kind == kind) {
            let _ = writeln!(
                out,
                "### {} `{}` ({}, {})\n\n{}\n\n| option | | what |\n|---|---|---|",
                kind.as_str(),
                doc.info.name,
                doc.info.version,
                doc.info.determinism.as_str(),
                doc.summary
            );
            for option in doc.options {
                let required = if option.required { "required" } else { "optional" };
                let _ = writeln!(out, "| `{}` | {required} | {} |", option.name, option.description.replace('|', "\\|"));
            }
            out.push('\n');
        }
    }
    out
}
