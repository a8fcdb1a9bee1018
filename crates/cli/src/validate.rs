//! `elspeth validate`: the same load and build path as `run`, then the graph
//! is printed instead of executed.

use std::path::Path;
use std::process::ExitCode;

use engine::pipeline::load_pipeline;
use engine::settings::ConfigError;

use crate::Format;

pub(crate) fn run(settings: &Path, format: Format) -> anyhow::Result<ExitCode> {
    match load_pipeline(settings, &plugins::BuiltinPlugins) {
        Ok(pipeline) => {
            match format {
                Format::Text => {
                    println!("{}: valid", settings.display());
                    print!("{}", pipeline.graph.describe());
                }
                Format::Json => {
                    let nodes: Vec<serde_json::Value> = pipeline
                        .graph
                        .nodes
                        .iter()
                        .map(|n| serde_json::json!({"node_id": n.id.as_str(), "name": n.name, "node_type": n.node_type.as_str(), "plugin": n.plugin_name, "step": n.step}))
                        .collect();
                    let edges: Vec<serde_json::Value> = pipeline
                        .graph
                        .edges
                        .iter()
                        .map(|e| serde_json::json!({"from": pipeline.graph.nodes[e.from].id.as_str(), "to": pipeline.graph.nodes[e.to].id.as_str(), "label": e.label, "mode": e.mode.as_str()}))
                        .collect();
                    println!("{}", serde_json::json!({"valid": true, "nodes": nodes, "edges": edges}));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            report(settings, &error, format);
            Ok(ExitCode::from(1))
        }
    }
}

fn report(settings: &Path, error: &ConfigError, format: Format) {
    match format {
        Format::Text => {
            eprintln!("{}: invalid", settings.display());
            eprintln!("{error}");
        }
        Format::Json => {
            let problems = problems_json(error);
            println!("{}", serde_json::json!({"valid": false, "error": error.to_string(), "problems": problems}));
        }
    }
}

/// Each problem of an invalid settings file as JSON: file, line, column,
/// key path and message.
pub(crate) fn problems_json(error: &ConfigError) -> Vec<serde_json::Value> {
    match error {
        ConfigError::Io { file, .. } => {
            vec![serde_json::json!({"file": file.display().to_string(), "message": error.to_string()})]
        }
        ConfigError::Invalid { file, problems } => problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "file": file.display().to_string(),
                    "line": p.location.map(|l| l.0),
                    "column": p.location.map(|l| l.1),
                    "path": p.path,
                    "message": p.message,
                })
            })
            .collect(),
    }
}
