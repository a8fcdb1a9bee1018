//! Beginning a run: stored settings (secrets fingerprinted), nodes with their
//! plugins' versions and determinism, and every edge of the graph.

use std::collections::HashMap;

use contracts::{Determinism, NodeType};
use landscape::recorder::NewNode;
use landscape::Recorder;

use super::processor::{EngineError, Runtime};
use super::RunOptions;
use crate::dag::NodeKind;
use crate::expression::Condition;
use crate::pipeline::Pipeline;
use crate::settings::fingerprint_secrets;

const ENGINE_VERSION: &str = concat!("engine:", env!("CARGO_PKG_VERSION"));

pub(crate) fn begin<'r>(
    pipeline: Pipeline,
    recorder: &'r mut Recorder,
    options: &RunOptions,
) -> Result<Runtime<'r>, EngineError> {
    let Pipeline { loaded, graph, plugins } = pipeline;
    let settings_json = stored_settings(&loaded, options)?;
    let run = recorder.begin_run(&settings_json, Some((crate::ownership::host_name(), std::process::id())))?;
    let run_id = run.run_id.clone();

    let mut conditions = vec![None; graph.nodes.len()];
    for (idx, node) in graph.nodes.iter().enumerate() {
        let (plugin_version, determinism) = match &node.kind {
            NodeKind::Source => {
                let info = plugins.source.info();
                (info.version.to_owned(), info.determinism)
            }
            NodeKind::Transform(i) => {
                let info = plugins.transforms[*i].info();
                (info.version.to_owned(), info.determinism)
            }
            NodeKind::Aggregation(i) => {
                let info = plugins.aggregations[*i].info();
                (info.version.to_owned(), info.determinism)
            }
            NodeKind::Sink(name) => {
                let info = plugins
                    .sinks
                    .get(name)
                    .map(|s| s.info())
                    .ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?;
                (info.version.to_owned(), info.determinism)
            }
            NodeKind::Gate(i) => {
                let gate = &loaded.settings.gates[*i];
                conditions[idx] = Some(Condition::parse(&gate.condition).map_err(|e| EngineError::Config(e.to_string()))?);
                (ENGINE_VERSION.to_owned(), Determinism::Deterministic)
            }
            NodeKind::Coalesce(_) => (ENGINE_VERSION.to_owned(), Determinism::Deterministic),
        };
        let mut config = node.config.clone();
        fingerprint_secrets(&mut config, &options.secrets, &node.name).map_err(EngineError::Config)?;
        let fields = node.schema.fields_json();
        let schema_mode = match node.node_type {
            NodeType::Gate | NodeType::Coalesce => None,
            NodeType::Source | NodeType::Transform | NodeType::Aggregation | NodeType::Sink => Some(node.schema.mode.as_str()),
        };
        recorder.register_node(
            &run_id,
            &NewNode {
                node_id: &node.id,
                plugin_name: &node.plugin_name,
                node_type: node.node_type,
                plugin_version: &plugin_version,
                determinism,
                config: &config,
                sequence_in_pipeline: Some(node.step),
                schema_mode,
                schema_fields: fields.as_ref(),
            },
        )?;
    }
    let mut edge_ids = HashMap::new();
    for edge in &graph.edges {
        let stored =
            recorder.register_edge(&run_id, &graph.nodes[edge.from].id, &graph.nodes[edge.to].id, &edge.label, edge.mode)?;
        edge_ids.insert((edge.from, edge.label.clone()), stored.edge_id);
    }
    let mut runtime = Runtime::new(loaded, graph, plugins, recorder, run_id, edge_ids, conditions, run.config_hash)?;
    runtime.crash_at = options.crash_at;
    runtime.clock = std::sync::Arc::clone(&options.clock);
    Ok(runtime)
}

/// Attaches to an existing run (resume): the same graph must already be
/// registered; its edges are looked up, nothing is written.
pub(crate) fn attach<'r>(
    pipeline: Pipeline,
    recorder: &'r mut Recorder,
    run: &contracts::records::Run,
    options: &RunOptions,
) -> Result<Runtime<'r>, EngineError> {
    let Pipeline { loaded, graph, plugins } = pipeline;
    let mut conditions = vec![None; graph.nodes.len()];
    for (idx, node) in graph.nodes.iter().enumerate() {
        if let NodeKind::Gate(i) = &node.kind {
            let gate = &loaded.settings.gates[*i];
            conditions[idx] = Some(Condition::parse(&gate.condition).map_err(|e| EngineError::Config(e.to_string()))?);
        }
    }
    let registered: HashMap<String, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str().to_owned(), i)).collect();
    let mut edge_ids = HashMap::new();
    for edge in recorder.get_edges(&run.run_id)? {
        let from = registered
            .get(edge.from_node_id.as_str())
            .copied()
            .ok_or_else(|| EngineError::Resume(format!("the run has node {} that this pipeline does not", edge.from_node_id)))?;
        edge_ids.insert((from, edge.label.clone()), edge.edge_id);
    }
    for edge in &graph.edges {
        if !edge_ids.contains_key(&(edge.from, edge.label.clone())) {
            return Err(EngineError::Resume(format!(
                "this pipeline has an edge {:?} from {} that the run does not",
                edge.label, graph.nodes[edge.from].id
            )));
        }
    }
    let mut runtime =
        Runtime::new(loaded, graph, plugins, recorder, run.run_id.clone(), edge_ids, conditions, run.config_hash.clone())?;
    runtime.crash_at = options.crash_at;
    runtime.clock = std::sync::Arc::clone(&options.clock);
    Ok(runtime)
}

/// The settings as a run stores them: secrets fingerprinted.
fn stored_settings(loaded: &crate::settings::LoadedSettings, options: &RunOptions) -> Result<serde_json::Value, EngineError> {
    let mut settings_json = serde_json::to_value(&loaded.settings).map_err(|e| EngineError::Invariant(e.to_string()))?;
    fingerprint_secrets(&mut settings_json, &options.secrets, "").map_err(EngineError::Config)?;
    Ok(settings_json)
}

/// The config hash `begin` records for these settings (the recorder hashes
/// the canonical JSON of the stored settings).
pub(crate) fn settings_hash(
    loaded: &crate::settings::LoadedSettings,
    options: &RunOptions,
) -> Result<contracts::ContentHash, EngineError> {
    let canonical = contracts::canonical_json(&stored_settings(loaded, options)?).map_err(landscape::LandscapeError::from)?;
    Ok(contracts::ContentHash::of_bytes(canonical.as_bytes()))
}
