//! Registering a run: `begin` records a new run (stored settings with
//! secrets fingerprinted, nodes with their plugins' versions and
//! determinism, every edge); `attach` joins an existing run for resume
//! (the same graph must already be registered; nothing is written). Both
//! give the processor that executes the run.

use std::collections::HashMap;
use std::sync::Arc;

use contracts::plugin::PluginContext;
use contracts::records::Run;
use contracts::{stable_hash_json, ContentHash, Determinism, EdgeId, NodeType, RunId};
use landscape::recorder::NewNode;
use landscape::Recorder;

use crate::dag::{Graph, NodeIdx, NodeKind, PipelinePlugins};
use crate::pipeline::Pipeline;
use crate::processor::Processor;
use crate::runtime::{EngineError, EngineServices, Recordings, RunContext, RunOptions, Verifier, VerifyReport};
use crate::settings::{fingerprint_secrets, LoadedSettings, RunModeSetting};

const ENGINE_VERSION: &str = concat!("engine:", env!("CARGO_PKG_VERSION"));

/// Begins a new run and registers its graph.
pub(crate) fn begin<'r>(
    pipeline: Pipeline,
    recorder: &'r mut Recorder,
    options: &RunOptions,
) -> Result<Processor<'r>, EngineError> {
    let Pipeline { mut loaded, graph, plugins } = pipeline;
    resolve_source_run(&mut loaded, recorder)?;
    let settings_json = stored_settings(&loaded, options)?;
    let run = recorder.begin_run(&settings_json, Some((crate::ownership::host_name(), std::process::id())))?;
    for node in &graph.nodes {
        let (plugin_version, determinism) = plugin_identity(&node.kind, &plugins)?;
        let mut config = node.config.clone();
        fingerprint_secrets(&mut config, &options.secrets, &node.name).map_err(EngineError::Config)?;
        let fields = node.schema.fields_json();
        let schema_mode = match node.node_type {
            NodeType::Gate | NodeType::Coalesce => None,
            NodeType::Source | NodeType::Transform | NodeType::Aggregation | NodeType::Sink => Some(node.schema.mode.as_str()),
        };
        recorder.register_node(
            &run.run_id,
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
            recorder.register_edge(&run.run_id, &graph.nodes[edge.from].id, &graph.nodes[edge.to].id, &edge.label, edge.mode)?;
        edge_ids.insert((edge.from, edge.label.clone()), stored.edge_id);
    }
    processor(Parts { loaded, graph, plugins }, recorder, run.run_id, run.config_hash, edge_ids, options)
}

/// Attaches to an existing run (resume): the same graph must already be
/// registered; its edges are looked up, nothing is written.
pub(crate) fn attach<'r>(
    pipeline: Pipeline,
    recorder: &'r mut Recorder,
    run: &Run,
    options: &RunOptions,
) -> Result<Processor<'r>, EngineError> {
    let Pipeline { loaded, graph, plugins } = pipeline;
    let registered: HashMap<&str, NodeIdx> = graph.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
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
    processor(Parts { loaded, graph, plugins }, recorder, run.run_id.clone(), run.config_hash.clone(), edge_ids, options)
}

/// `replay_from: latest` becomes the latest completed run, so the stored
/// settings name the run a replay or verification used; a named run must
/// exist in this Landscape.
fn resolve_source_run(loaded: &mut LoadedSettings, recorder: &mut Recorder) -> Result<(), EngineError> {
    let settings = &mut loaded.settings;
    let Some(wanted) = settings.replay_from.clone() else { return Ok(()) };
    if settings.run_mode == RunModeSetting::Live {
        return Ok(());
    }
    let runs = recorder.list_runs()?;
    let found = if wanted == "latest" {
        runs.iter().filter(|r| r.state.status() == contracts::RunStatus::Completed).max_by_key(|r| r.started_at)
    } else {
        runs.iter().find(|r| r.run_id.as_str() == wanted)
    };
    let Some(found) = found else {
        let what = if wanted == "latest" { "no completed run".to_owned() } else { format!("no run {wanted}") };
        return Err(EngineError::Config(format!("replay_from: this Landscape has {what} to replay or verify against")));
    };
    settings.replay_from = Some(found.run_id.as_str().to_owned());
    Ok(())
}

/// The source run's recordings, in replay and verify mode.
fn recordings(loaded: &LoadedSettings, recorder: &mut Recorder) -> Result<Option<Arc<Recordings>>, EngineError> {
    let settings = &loaded.settings;
    match (settings.run_mode, &settings.replay_from) {
        (RunModeSetting::Replay | RunModeSetting::Verify, Some(source)) => {
            let source = contracts::RunId::parse(source.clone())?;
            Ok(Some(Arc::new(Recordings::new(recorder.recorded_calls(&source)?))))
        }
        (RunModeSetting::Replay | RunModeSetting::Verify | RunModeSetting::Live, _) => Ok(None),
    }
}

/// The pipeline, taken apart.
struct Parts {
    loaded: LoadedSettings,
    graph: Graph,
    plugins: PipelinePlugins,
}

fn processor<'r>(
    parts: Parts,
    recorder: &'r mut Recorder,
    run_id: RunId,
    config_hash: ContentHash,
    edge_ids: HashMap<(NodeIdx, String), EdgeId>,
    options: &RunOptions,
) -> Result<Processor<'r>, EngineError> {
    let Parts { loaded, graph, mut plugins } = parts;
    for sink in plugins.sinks.values_mut() {
        sink.bind_run(&run_id);
    }
    let topology_hash = topology_hash(&graph)?;
    let recordings = recordings(&loaded, recorder)?;
    let replaying = loaded.settings.run_mode == RunModeSetting::Replay;
    let verify = match (loaded.settings.run_mode, &recordings) {
        (RunModeSetting::Verify, Some(recordings)) => Some(Verifier {
            recordings: Arc::clone(recordings),
            options: options.verify.clone(),
            report: VerifyReport::default(),
        }),
        (RunModeSetting::Verify | RunModeSetting::Replay | RunModeSetting::Live, _) => None,
    };
    let replay = if replaying { recordings } else { None };
    let services: Arc<dyn contracts::plugin::CallServices> =
        Arc::new(EngineServices::new(&loaded.settings.rate_limit, options.secrets.clone(), replay));
    let contexts =
        graph.nodes.iter().map(|n| PluginContext::with_services(run_id.clone(), n.id.clone(), Arc::clone(&services))).collect();
    Processor::new(RunContext {
        loaded,
        graph,
        plugins,
        recorder,
        run_id,
        edge_ids,
        contexts,
        rows_read: 0,
        counts: std::collections::BTreeMap::new(),
        per_sink: std::collections::BTreeMap::new(),
        last_token: None,
        branch_losses: Vec::new(),
        topology_hash,
        config_hash,
        clock: Arc::clone(&options.clock),
        hooks: options.hooks,
        verify,
        replaying,
    })
}

/// The version and determinism a node records: its plugin's, or the
/// engine's for gates and coalesces.
fn plugin_identity(kind: &NodeKind, plugins: &PipelinePlugins) -> Result<(String, Determinism), EngineError> {
    let info = match kind {
        NodeKind::Source => plugins.source.info(),
        NodeKind::Transform(i) => plugins.transforms[*i].info(),
        NodeKind::Aggregation(i) => plugins.aggregations[*i].info(),
        NodeKind::Sink(name) => plugins
            .sinks
            .get(name)
            .map(|s| s.info())
            .ok_or_else(|| EngineError::Invariant(format!("no plugin for sink {name}")))?,
        NodeKind::Gate(_) | NodeKind::Coalesce(_) => return Ok((ENGINE_VERSION.to_owned(), Determinism::Deterministic)),
    };
    Ok((info.version.to_owned(), info.determinism))
}

/// The hash of the graph's shape: node ids (which embed each node's
/// configuration) and edges. A resumed run must have the same.
fn topology_hash(graph: &Graph) -> Result<ContentHash, EngineError> {
    let nodes: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    let edges: Vec<serde_json::Value> = graph
        .edges
        .iter()
        .map(|e| serde_json::json!([graph.nodes[e.from].id.as_str(), graph.nodes[e.to].id.as_str(), e.label]))
        .collect();
    Ok(stable_hash_json(&serde_json::json!({"nodes": nodes, "edges": edges}))?)
}

/// The settings as a run stores them: secrets fingerprinted.
fn stored_settings(loaded: &LoadedSettings, options: &RunOptions) -> Result<serde_json::Value, EngineError> {
    let mut settings_json = serde_json::to_value(&loaded.settings).map_err(|e| EngineError::Invariant(e.to_string()))?;
    fingerprint_secrets(&mut settings_json, &options.secrets, "").map_err(EngineError::Config)?;
    Ok(settings_json)
}

/// The config hash `begin` records for these settings (the recorder hashes
/// the canonical JSON of the stored settings).
pub(crate) fn settings_hash(loaded: &LoadedSettings, options: &RunOptions) -> Result<ContentHash, EngineError> {
    let canonical = contracts::canonical_json(&stored_settings(loaded, options)?)?;
    Ok(ContentHash::of_bytes(canonical.as_bytes()))
}
