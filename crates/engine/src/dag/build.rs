//! Building and validating the graph from settings (the reference's build
//! algorithm: producers and consumers of named connections, edges, fork
//! branches, divert edges, order, steps, ids, schema contracts).

use indexmap::IndexMap;

use contracts::plugin::{BatchTransform, PluginRegistry, Sink, Source, Transform};
use contracts::schema::{FieldType, SchemaConfig, SchemaMode};
use contracts::{canonical_json, sha256_hex, NodeId, NodeType, RoutingMode};

use super::order::{reachable, topological};
use super::{BranchTarget, Graph, GraphEdge, GraphNode, NodeIdx, NodeKind, RouteTarget};
use crate::settings::{ConfigProblem, LoadedSettings, Settings};

/// Plugin instances for a graph, by settings position.
pub struct PipelinePlugins {
    pub source: Box<dyn Source>,
    pub transforms: Vec<std::sync::Arc<dyn Transform>>,
    pub aggregations: Vec<Box<dyn BatchTransform>>,
    pub sinks: IndexMap<String, Box<dyn Sink>>,
}

struct Builder<'a> {
    loaded: &'a LoadedSettings,
    settings: &'a Settings,
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
    problems: Vec<ConfigProblem>,
}

/// `{prefix}_{name}_{first 12 hex of sha256(canonical config)}`, at most 64 chars.
fn node_id(prefix: &str, name: &str, identity: &serde_json::Value) -> Result<NodeId, String> {
    let canonical = canonical_json(identity).map_err(|e| format!("configuration cannot be canonicalised: {e}"))?;
    let text = format!("{prefix}_{name}_{}", &sha256_hex(canonical.as_bytes())[..12]);
    if text.len() > 64 {
        return Err(format!("node id {text:?} is longer than 64 characters; use a shorter name"));
    }
    NodeId::parse(text).map_err(|e| e.to_string())
}

fn suggestion(candidates: &[&str], wanted: &str) -> String {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(c, wanted), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

impl Builder<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(self.loaded.problem(path, message));
    }

    fn add_node(
        &mut self,
        path: &str,
        kind: NodeKind,
        node_type: NodeType,
        plugin_name: &str,
        name: &str,
        config: serde_json::Value,
        identity: &serde_json::Value,
        schema: SchemaConfig,
    ) -> NodeIdx {
        let prefix = match node_type {
            NodeType::Source => "source",
            NodeType::Transform => "transform",
            NodeType::Gate => "config_gate",
            NodeType::Aggregation => "aggregation",
            NodeType::Coalesce => "coalesce",
            NodeType::Sink => "sink",
        };
        let id = match node_id(prefix, name, identity) {
            Ok(id) => id,
            Err(message) => {
                self.problem(path, message);
                NodeId::parse(format!("{prefix}_invalid_{}", self.nodes.len()))
                    .unwrap_or_else(|_| unreachable!("valid fallback id"))
            }
        };
        self.nodes.push(GraphNode {
            id,
            name: name.to_owned(),
            kind,
            node_type,
            plugin_name: plugin_name.to_owned(),
            config,
            schema,
            step: 0,
        });
        self.nodes.len() - 1
    }

    fn edge(&mut self, from: NodeIdx, to: NodeIdx, label: &str, mode: RoutingMode) {
        if self.edges.iter().any(|e| e.from == from && e.label == label) {
            let name = self.nodes[from].name.clone();
            self.problem("", format!("node {name:?} has two outgoing edges labelled {label:?}"));
            return;
        }
        self.edges.push(GraphEdge { from, to, label: label.to_owned(), mode });
    }

    fn schema_of(&mut self, path: &str, options: &serde_json::Map<String, serde_json::Value>) -> SchemaConfig {
        match SchemaConfig::from_options(options) {
            Ok(schema) => schema,
            Err(message) => {
                self.problem(&format!("{path}.options.schema"), message);
                SchemaConfig::observed()
            }
        }
    }
}

/// The node of every settings entry, by settings position.
struct NodesBySettings {
    source: NodeIdx,
    sinks: IndexMap<String, NodeIdx>,
    transforms: Vec<NodeIdx>,
    aggregations: Vec<NodeIdx>,
    gates: Vec<NodeIdx>,
    coalesces: Vec<NodeIdx>,
}

/// Coalesce branch → (its coalesce, the connection it arrives on).
type BranchCoalesce = IndexMap<String, (NodeIdx, String)>;
/// Connection → (producing node, edge label, settings path).
type Producers = IndexMap<String, (NodeIdx, String, String)>;
/// Connection → (consuming node, settings path).
type Consumers = IndexMap<String, (NodeIdx, String)>;

/// Where tokens go from each node, by node.
struct Routing {
    next: Vec<Option<NodeIdx>>,
    terminal_sink: Vec<Option<NodeIdx>>,
    routes: Vec<IndexMap<String, RouteTarget>>,
    fork_branches: Vec<IndexMap<String, BranchTarget>>,
    quarantine_sink: Option<NodeIdx>,
    error_sink: Vec<Option<NodeIdx>>,
}

/// Builds the graph and the plugins it runs. Every problem found is reported,
/// not only the first.
pub fn build(loaded: &LoadedSettings, registry: &dyn PluginRegistry) -> Result<(Graph, PipelinePlugins), Vec<ConfigProblem>> {
    let mut b = Builder { loaded, settings: &loaded.settings, nodes: Vec::new(), edges: Vec::new(), problems: Vec::new() };
    let nodes = add_nodes(&mut b);
    let branch_coalesce = claim_branches(&mut b, &nodes);
    let (producers, fork_owner) = find_producers(&mut b, &nodes, &branch_coalesce);
    let consumers = find_consumers(&mut b, &nodes, &branch_coalesce);
    check_connections(&mut b, &producers, &consumers, &nodes.sinks);
    let mut routing = connect(&mut b, &nodes, &consumers, &branch_coalesce);
    check_branches_forked(&mut b, &branch_coalesce, &fork_owner);
    add_divert_edges(&mut b, &nodes, &mut routing);
    let pipeline = order_and_number(&mut b, &nodes);
    check_contracts(&mut b);
    check_condition_fields(&mut b);
    // The same constructors a run uses validate the plugins' options.
    let plugins = instantiate(&mut b, registry);
    if !b.problems.is_empty() {
        return Err(b.problems);
    }
    let plugins = plugins.ok_or_else(|| vec![ConfigProblem::new("", "plugins could not be built")])?;
    let Routing { next, terminal_sink, routes, fork_branches, quarantine_sink, error_sink } = routing;
    Ok((
        Graph {
            nodes: b.nodes,
            edges: b.edges,
            pipeline,
            next,
            terminal_sink,
            routes,
            fork_branches,
            branch_coalesce: branch_coalesce.into_iter().map(|(branch, (node, _))| (branch, node)).collect(),
            sinks: nodes.sinks,
            quarantine_sink,
            error_sink,
        },
        plugins,
    ))
}

/// Step 1: one node per settings entry, in the reference's insertion order
/// (source, sinks, transforms, aggregations, gates, coalesces).
fn add_nodes(b: &mut Builder<'_>) -> NodesBySettings {
    let settings = b.settings;
    let source_schema = if settings.source.plugin == "null" && !settings.source.options.contains_key("schema") {
        SchemaConfig::observed()
    } else {
        b.schema_of("source", &settings.source.options)
    };
    let source_config = serde_json::Value::Object(settings.source.options.clone());
    let plugin = &settings.source.plugin;
    let source = b.add_node(
        "source",
        NodeKind::Source,
        NodeType::Source,
        plugin,
        plugin,
        source_config.clone(),
        &source_config,
        source_schema,
    );
    let mut sinks: IndexMap<String, NodeIdx> = IndexMap::new();
    for (name, sink) in &settings.sinks {
        let path = format!("sinks.{name}");
        let schema = b.schema_of(&path, &sink.options);
        let config = serde_json::Value::Object(sink.options.clone());
        let idx =
            b.add_node(&path, NodeKind::Sink(name.clone()), NodeType::Sink, &sink.plugin, name, config.clone(), &config, schema);
        sinks.insert(name.clone(), idx);
    }
    let mut transforms = Vec::new();
    for (i, t) in settings.transforms.iter().enumerate() {
        let path = format!("transforms[{i}]");
        let schema = b.schema_of(&path, &t.options);
        let config = serde_json::Value::Object(t.options.clone());
        transforms.push(b.add_node(
            &path,
            NodeKind::Transform(i),
            NodeType::Transform,
            &t.plugin,
            &t.name,
            config.clone(),
            &config,
            schema,
        ));
    }
    let mut aggregations = Vec::new();
    for (i, a) in settings.aggregations.iter().enumerate() {
        let path = format!("aggregations[{i}]");
        let schema = b.schema_of(&path, &a.options);
        let identity = aggregation_identity(a);
        let config = serde_json::to_value(a).unwrap_or(serde_json::Value::Null);
        aggregations.push(b.add_node(
            &path,
            NodeKind::Aggregation(i),
            NodeType::Aggregation,
            &a.plugin,
            &a.name,
            config,
            &identity,
            schema,
        ));
    }
    let mut gates = Vec::new();
    for (i, g) in settings.gates.iter().enumerate() {
        let mut identity = serde_json::json!({"condition": g.condition, "routes": g.routes});
        if let Some(fork_to) = &g.fork_to {
            identity["fork_to"] = serde_json::json!(fork_to);
        }
        let path = format!("gates[{i}]");
        gates.push(b.add_node(
            &path,
            NodeKind::Gate(i),
            NodeType::Gate,
            &g.name,
            &g.name,
            identity.clone(),
            &identity,
            SchemaConfig::observed(),
        ));
    }
    let mut coalesces = Vec::new();
    for (i, c) in settings.coalesce.iter().enumerate() {
        let identity = coalesce_identity(c);
        let config = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
        let path = format!("coalesce[{i}]");
        coalesces.push(b.add_node(
            &path,
            NodeKind::Coalesce(i),
            NodeType::Coalesce,
            &c.name,
            &c.name,
            config,
            &identity,
            SchemaConfig::observed(),
        ));
    }
    NodesBySettings { source, sinks, transforms, aggregations, gates, coalesces }
}

/// What an aggregation's node id hashes: what changes its behaviour.
fn aggregation_identity(a: &crate::settings::AggregationSettings) -> serde_json::Value {
    serde_json::json!({
        "trigger": {"count": a.trigger.count, "timeout_seconds": a.trigger.timeout_seconds, "condition": a.trigger.condition},
        "output_mode": a.output_mode,
        "options": a.options,
        "schema": a.options.get("schema"),
    })
}

/// What a coalesce's node id hashes: what changes its behaviour.
fn coalesce_identity(c: &crate::settings::CoalesceSettings) -> serde_json::Value {
    let mut identity = serde_json::json!({"branches": c.branches, "policy": c.policy, "merge": c.merge});
    if let Some(t) = c.timeout_seconds {
        identity["timeout_seconds"] = serde_json::json!(t);
    }
    if let Some(q) = c.quorum_count {
        identity["quorum_count"] = serde_json::json!(q);
    }
    if let Some(s) = &c.select_branch {
        identity["select_branch"] = serde_json::json!(s);
    }
    identity
}

/// Step 2: each coalesce branch belongs to exactly one coalesce.
fn claim_branches(b: &mut Builder<'_>, nodes: &NodesBySettings) -> BranchCoalesce {
    let mut branch_coalesce = BranchCoalesce::new();
    for (i, c) in b.settings.coalesce.iter().enumerate() {
        for (branch, input) in c.branches.resolved() {
            if branch_coalesce.insert(branch.clone(), (nodes.coalesces[i], input)).is_some() {
                b.problem(&format!("coalesce[{i}].branches"), format!("branch {branch:?} is claimed by two coalesces"));
            }
        }
    }
    branch_coalesce
}

/// Step 3: the one producer of every named connection, and the gate that
/// forks each branch.
fn find_producers(
    b: &mut Builder<'_>,
    nodes: &NodesBySettings,
    branch_coalesce: &BranchCoalesce,
) -> (Producers, IndexMap<String, usize>) {
    let settings = b.settings;
    let sinks = &nodes.sinks;
    let mut producers = Producers::new();
    let mut produce = |b: &mut Builder<'_>, connection: &str, node: NodeIdx, label: &str, path: String| {
        if let Some((other, _, other_path)) = producers.get(connection) {
            if *other != node {
                let message = format!("connection {connection:?} is produced twice (also at {other_path}); each connection has exactly one producer");
                b.problem(&path, message);
            }
            return;
        }
        producers.insert(connection.to_owned(), (node, label.to_owned(), path));
    };
    if !sinks.contains_key(&settings.source.on_success) {
        produce(b, &settings.source.on_success, nodes.source, "continue", "source.on_success".into());
    }
    for (i, t) in settings.transforms.iter().enumerate() {
        if !sinks.contains_key(&t.on_success) {
            produce(b, &t.on_success, nodes.transforms[i], "continue", format!("transforms[{i}].on_success"));
        }
    }
    for (i, a) in settings.aggregations.iter().enumerate() {
        let output = a.on_success.clone().unwrap_or_else(|| a.name.clone());
        if !sinks.contains_key(&output) {
            produce(b, &output, nodes.aggregations[i], "continue", format!("aggregations[{i}].on_success"));
        }
    }
    for (i, c) in settings.coalesce.iter().enumerate() {
        if c.on_success.is_none() {
            produce(b, &c.name, nodes.coalesces[i], "continue", format!("coalesce[{i}].name"));
        }
    }
    let mut fork_owner: IndexMap<String, usize> = IndexMap::new();
    for (i, g) in settings.gates.iter().enumerate() {
        for (label, destination) in &g.routes {
            if destination != "fork" && !sinks.contains_key(destination) && destination != "continue" {
                produce(b, destination, nodes.gates[i], label, format!("gates[{i}].routes.{label}"));
            }
        }
        for branch in g.fork_to.iter().flatten() {
            if let Some(other) = fork_owner.insert(branch.clone(), i) {
                let message = if other == i {
                    format!("branch {branch:?} appears twice in fork_to")
                } else {
                    format!("branch {branch:?} is also forked by gate {:?}", settings.gates[other].name)
                };
                b.problem(&format!("gates[{i}].fork_to"), message);
            }
            if let Some((_, input)) = branch_coalesce.get(branch) {
                if input != branch {
                    produce(b, branch, nodes.gates[i], branch, format!("gates[{i}].fork_to"));
                }
            }
        }
    }
    (producers, fork_owner)
}

/// Step 4: the one consumer of every named connection (fan-out is a gate's).
fn find_consumers(b: &mut Builder<'_>, nodes: &NodesBySettings, branch_coalesce: &BranchCoalesce) -> Consumers {
    let settings = b.settings;
    let mut consumers = Consumers::new();
    let mut consume = |b: &mut Builder<'_>, connection: &str, node: NodeIdx, path: String| {
        if nodes.sinks.contains_key(connection) {
            b.problem(&path, format!("{connection:?} is a sink name; sinks are not connections (route to the sink instead)"));
            return;
        }
        if let Some((_, other_path)) = consumers.get(connection) {
            b.problem(&path, format!("connection {connection:?} is already consumed at {other_path}; use a gate for fan-out"));
            return;
        }
        consumers.insert(connection.to_owned(), (node, path));
    };
    for (i, t) in settings.transforms.iter().enumerate() {
        consume(b, &t.input, nodes.transforms[i], format!("transforms[{i}].input"));
    }
    for (i, a) in settings.aggregations.iter().enumerate() {
        consume(b, &a.input, nodes.aggregations[i], format!("aggregations[{i}].input"));
    }
    for (i, g) in settings.gates.iter().enumerate() {
        consume(b, &g.input, nodes.gates[i], format!("gates[{i}].input"));
    }
    for (branch, (coalesce, input)) in branch_coalesce {
        if input != branch {
            let i = settings.coalesce.iter().position(|c| c.name == b.nodes[*coalesce].name).unwrap_or(0);
            consume(b, input, *coalesce, format!("coalesce[{i}].branches.{branch}"));
        }
    }
    consumers
}

/// Step 5: every consumed connection has a producer; every produced one a consumer.
fn check_connections(b: &mut Builder<'_>, producers: &Producers, consumers: &Consumers, sinks: &IndexMap<String, NodeIdx>) {
    let produced: Vec<&str> = producers.keys().map(String::as_str).collect();
    for (connection, (_, path)) in consumers {
        if !producers.contains_key(connection) {
            let hint = suggestion(&produced, connection);
            b.problem(path, format!("nothing produces connection {connection:?}{hint}"));
        }
    }
    // A route to a misspelt (or differently cased) sink is a produced
    // connection nobody consumes: sinks are suggested too.
    let consumed: Vec<&str> = consumers.keys().chain(sinks.keys()).map(String::as_str).collect();
    for (connection, (_, _, path)) in producers {
        if !consumers.contains_key(connection) {
            let hint = suggestion(&consumed, connection);
            b.problem(path, format!("connection {connection:?} is produced but nothing consumes it{hint}"));
        }
    }
}

/// Step 6: edges along connections, to sinks, gate routes and fork branches.
fn connect(b: &mut Builder<'_>, nodes: &NodesBySettings, consumers: &Consumers, branch_coalesce: &BranchCoalesce) -> Routing {
    let settings = b.settings;
    let n_nodes = b.nodes.len();
    let mut routing = Routing {
        next: vec![None; n_nodes],
        terminal_sink: vec![None; n_nodes],
        routes: vec![IndexMap::new(); n_nodes],
        fork_branches: vec![IndexMap::new(); n_nodes],
        quarantine_sink: None,
        error_sink: vec![None; n_nodes],
    };
    let sinks = &nodes.sinks;
    let on_success = |b: &mut Builder<'_>, routing: &mut Routing, node: NodeIdx, target: &str| {
        if let Some(sink) = sinks.get(target) {
            b.edge(node, *sink, "on_success", RoutingMode::Move);
            routing.terminal_sink[node] = Some(*sink);
        } else if let Some((consumer, _)) = consumers.get(target) {
            b.edge(node, *consumer, "continue", RoutingMode::Move);
            routing.next[node] = Some(*consumer);
        }
    };
    on_success(b, &mut routing, nodes.source, &settings.source.on_success);
    for (i, t) in settings.transforms.iter().enumerate() {
        on_success(b, &mut routing, nodes.transforms[i], &t.on_success);
    }
    for (i, a) in settings.aggregations.iter().enumerate() {
        let output = a.on_success.clone().unwrap_or_else(|| a.name.clone());
        on_success(b, &mut routing, nodes.aggregations[i], &output);
    }
    for (i, c) in settings.coalesce.iter().enumerate() {
        let output = c.on_success.clone().unwrap_or_else(|| c.name.clone());
        on_success(b, &mut routing, nodes.coalesces[i], &output);
    }
    for (i, g) in settings.gates.iter().enumerate() {
        let gate = nodes.gates[i];
        for (label, destination) in &g.routes {
            if destination == "fork" {
                routing.routes[gate].insert(label.clone(), RouteTarget::Fork);
            } else if let Some(sink) = sinks.get(destination) {
                b.edge(gate, *sink, label, RoutingMode::Move);
                routing.routes[gate].insert(label.clone(), RouteTarget::Sink(*sink));
            } else if let Some((consumer, _)) = consumers.get(destination) {
                b.edge(gate, *consumer, label, RoutingMode::Move);
                routing.routes[gate].insert(label.clone(), RouteTarget::Node(*consumer));
            }
        }
        for branch in g.fork_to.iter().flatten() {
            let target = if let Some((coalesce, input)) = branch_coalesce.get(branch) {
                if input == branch {
                    b.edge(gate, *coalesce, branch, RoutingMode::Copy);
                    Some(BranchTarget::Coalesce(*coalesce))
                } else {
                    consumers.get(branch).map(|(first, _)| {
                        b.edge(gate, *first, branch, RoutingMode::Copy);
                        BranchTarget::Node(*first)
                    })
                }
            } else if let Some(sink) = sinks.get(branch) {
                b.edge(gate, *sink, branch, RoutingMode::Copy);
                Some(BranchTarget::Sink(*sink))
            } else {
                b.problem(
                    &format!("gates[{i}].fork_to"),
                    format!("fork branch {branch:?} is neither a coalesce branch nor a sink"),
                );
                None
            };
            if let Some(target) = target {
                routing.fork_branches[gate].insert(branch.clone(), target);
            }
        }
    }
    routing
}

/// Every coalesce branch is forked by some gate.
fn check_branches_forked(b: &mut Builder<'_>, branch_coalesce: &BranchCoalesce, fork_owner: &IndexMap<String, usize>) {
    for (branch, (coalesce, _)) in branch_coalesce {
        if !fork_owner.contains_key(branch) {
            let name = b.nodes[*coalesce].name.clone();
            let i = b.settings.coalesce.iter().position(|c| c.name == name).unwrap_or(0);
            b.problem(
                &format!("coalesce[{i}].branches"),
                format!("branch {branch:?} of coalesce {name:?} is not forked by any gate"),
            );
        }
    }
}

/// Step 7: divert edges (quarantine, transform and aggregation errors, sink
/// write failures).
fn add_divert_edges(b: &mut Builder<'_>, nodes: &NodesBySettings, routing: &mut Routing) {
    let settings = b.settings;
    let sinks = &nodes.sinks;
    if let Some(target) = settings.source.options.get("on_validation_failure").and_then(serde_json::Value::as_str) {
        if let Some(sink) = sinks.get(target) {
            b.edge(nodes.source, *sink, "__quarantine__", RoutingMode::Divert);
            routing.quarantine_sink = Some(*sink);
        } else if target != "discard" {
            b.problem(
                "source.options.on_validation_failure",
                format!("on_validation_failure {target:?} must be a sink name or 'discard'"),
            );
        }
    }
    for (i, t) in settings.transforms.iter().enumerate() {
        if let Some(sink) = sinks.get(&t.on_error) {
            b.edge(nodes.transforms[i], *sink, &format!("__error_{}__", t.name), RoutingMode::Divert);
            routing.error_sink[nodes.transforms[i]] = Some(*sink);
        }
    }
    for (i, a) in settings.aggregations.iter().enumerate() {
        if let Some(sink) = sinks.get(&a.on_error) {
            b.edge(nodes.aggregations[i], *sink, &format!("__error_{}__", a.name), RoutingMode::Divert);
            routing.error_sink[nodes.aggregations[i]] = Some(*sink);
        }
    }
    for (name, sink) in &settings.sinks {
        if let (Some(from), Some(to)) = (sinks.get(name), sinks.get(&sink.on_write_failure)) {
            b.edge(*from, *to, "__failsink__", RoutingMode::Divert);
        }
    }
}

/// Step 8: topological order (a cycle is a problem), reachability from the
/// source, and step numbers (sinks after every processing node).
fn order_and_number(b: &mut Builder<'_>, nodes: &NodesBySettings) -> Vec<NodeIdx> {
    let settings = b.settings;
    let n_nodes = b.nodes.len();
    let export_sink = settings.landscape.export.sink.clone().filter(|_| settings.landscape.export.enabled);
    let mut pipeline = Vec::new();
    match topological(n_nodes, &b.edges) {
        Err(cycle) => {
            let names: Vec<String> = cycle.iter().map(|n| b.nodes[*n].name.clone()).collect();
            b.problem("", format!("the pipeline has a cycle through {}", names.join(" -> ")));
        }
        Ok(order) => {
            pipeline = order
                .into_iter()
                .filter(|n| {
                    matches!(
                        b.nodes[*n].node_type,
                        NodeType::Transform | NodeType::Gate | NodeType::Aggregation | NodeType::Coalesce
                    )
                })
                .collect();
        }
    }
    let seen = reachable(n_nodes, &b.edges, nodes.source);
    if b.problems.is_empty() {
        for (idx, node) in b.nodes.clone().iter().enumerate() {
            let is_export_sink = matches!(&node.kind, NodeKind::Sink(name) if Some(name) == export_sink.as_ref());
            if !seen[idx] && !is_export_sink {
                b.problem("", format!("{} {:?} is not reachable from the source", node.node_type, node.name));
            }
        }
    }
    for (step, node) in pipeline.iter().enumerate() {
        b.nodes[*node].step = u32::try_from(step + 1).unwrap_or(u32::MAX);
    }
    let sink_step = u32::try_from(pipeline.len() + 1).unwrap_or(u32::MAX);
    for idx in nodes.sinks.values() {
        b.nodes[*idx].step = sink_step;
    }
    pipeline
}

/// Step 9: consumers' required fields must be guaranteed by their producers (looking
/// through gates to the nearest producer with a schema).
fn check_contracts(b: &mut Builder<'_>) {
    let mut problems = Vec::new();
    for edge in &b.edges {
        if edge.mode == RoutingMode::Divert {
            continue;
        }
        let consumer = &b.nodes[edge.to];
        if !matches!(consumer.node_type, NodeType::Transform | NodeType::Aggregation | NodeType::Sink) {
            continue;
        }
        let mut producer = edge.from;
        while b.nodes[producer].node_type == NodeType::Gate {
            match b.edges.iter().find(|e| e.to == producer && e.mode != RoutingMode::Divert) {
                Some(upstream) => producer = upstream.from,
                None => break,
            }
        }
        let producer_node = &b.nodes[producer];
        if matches!(producer_node.node_type, NodeType::Coalesce | NodeType::Gate) {
            continue;
        }
        let path = match &consumer.kind {
            NodeKind::Transform(i) => format!("transforms[{i}]"),
            NodeKind::Aggregation(i) => format!("aggregations[{i}]"),
            NodeKind::Sink(name) => format!("sinks.{name}"),
            NodeKind::Source | NodeKind::Gate(_) | NodeKind::Coalesce(_) => String::new(),
        };
        let required = explicit_requirements(b.settings, consumer);
        let guaranteed = producer_node.schema.guaranteed();
        let missing: Vec<&String> = required.iter().filter(|f| !guaranteed.contains(f)).collect();
        if !missing.is_empty() {
            let observed = if producer_node.schema.mode == SchemaMode::Observed {
                " (an observed schema guarantees nothing unless it lists guaranteed_fields)"
            } else {
                ""
            };
            problems.push(b.loaded.problem(
                &path,
                format!(
                    "schema contract violation: {} {:?} requires {:?}, which {} {:?} does not guarantee{observed}",
                    consumer.node_type, consumer.name, missing, producer_node.node_type, producer_node.name
                ),
            ));
        }
        for (field, wanted, given) in type_conflicts(&producer_node.schema, &consumer.schema) {
            problems.push(b.loaded.problem(
                &path,
                format!(
                    "schema contract violation: {} {:?} declares {field}: {wanted}, but {} {:?} declares {field}: {given}",
                    consumer.node_type, consumer.name, producer_node.node_type, producer_node.name
                ),
            ));
        }
    }
    b.problems.extend(problems);
}

/// Fields both schemas declare (neither observed) with types that do not
/// fit: `(field, consumer's type, producer's type)`. `any` fits everything
/// and an int fits a float.
fn type_conflicts(producer: &SchemaConfig, consumer: &SchemaConfig) -> Vec<(String, &'static str, &'static str)> {
    if producer.mode == SchemaMode::Observed || consumer.mode == SchemaMode::Observed {
        return Vec::new();
    }
    consumer
        .fields
        .iter()
        .filter_map(|wanted| {
            let given = producer.fields.iter().find(|f| f.name == wanted.name)?;
            let fits = wanted.field_type == given.field_type
                || matches!(
                    (wanted.field_type, given.field_type),
                    (FieldType::Any, _) | (_, FieldType::Any) | (FieldType::Float, FieldType::Int)
                );
            (!fits).then(|| (wanted.name.clone(), wanted.field_type.as_str(), given.field_type.as_str()))
        })
        .collect()
}

/// Step 10: a gate condition that reads `row['x']` where its rows come
/// from a fixed schema without `x` would fail on every row; it is refused
/// here instead of failing every token at run time.
fn check_condition_fields(b: &mut Builder<'_>) {
    let mut problems = Vec::new();
    for (gate, node) in b.nodes.iter().enumerate() {
        let NodeKind::Gate(i) = node.kind else { continue };
        let Ok(condition) = crate::expression::Condition::parse(&b.settings.gates[i].condition) else { continue };
        let mut producer = gate;
        while b.nodes[producer].node_type == NodeType::Gate {
            match b.edges.iter().find(|e| e.to == producer && e.mode != RoutingMode::Divert) {
                Some(upstream) => producer = upstream.from,
                None => break,
            }
        }
        let schema = &b.nodes[producer].schema;
        if producer == gate || schema.mode != SchemaMode::Fixed {
            continue;
        }
        let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        for field in condition.expr.fields_read() {
            if !known.contains(&field) {
                let hint = suggestion(&known, field);
                problems.push(b.loaded.problem(
                    &format!("gates[{i}].condition"),
                    format!(
                        "the condition reads row[{field:?}], but its rows come from {} {:?}, whose fixed schema has no such \
                         field{hint} (fields: {}); every row would fail",
                        b.nodes[producer].node_type,
                        b.nodes[producer].name,
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    b.problems.extend(problems);
}

/// What a consumer explicitly needs: `required_input_fields` in its options,
/// else its schema's `required_fields`.
fn explicit_requirements(settings: &Settings, node: &GraphNode) -> Vec<String> {
    let options = match &node.kind {
        NodeKind::Transform(i) => Some(&settings.transforms[*i].options),
        NodeKind::Aggregation(i) => Some(&settings.aggregations[*i].options),
        NodeKind::Sink(name) => settings.sinks.get(name).map(|s| &s.options),
        NodeKind::Source | NodeKind::Gate(_) | NodeKind::Coalesce(_) => None,
    };
    if let Some(fields) = options.and_then(|o| o.get("required_input_fields")).and_then(serde_json::Value::as_array) {
        return fields.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect();
    }
    node.schema.required_fields.clone().unwrap_or_default()
}

fn instantiate(b: &mut Builder<'_>, registry: &dyn PluginRegistry) -> Option<PipelinePlugins> {
    let reported: Vec<String> = b.problems.iter().map(|p| p.message.clone()).collect();
    let mut problems = Vec::new();
    let plugins = instantiate_all(b, registry, &mut problems);
    // A schema problem is reported once, not again by the plugin that parses the same schema.
    for problem in problems {
        if !reported.iter().any(|message| problem.message.ends_with(message.as_str())) {
            b.problems.push(problem);
        }
    }
    plugins
}

fn instantiate_all(
    b: &mut Builder<'_>,
    registry: &dyn PluginRegistry,
    problems: &mut Vec<ConfigProblem>,
) -> Option<PipelinePlugins> {
    let mut report = |path: &str, message: String| problems.push(b.loaded.problem(path, message));
    let settings = b.settings;
    let source = match registry.source(&settings.source.plugin, &settings.source.options) {
        Ok(source) => Some(source),
        Err(error) => {
            report("source.plugin", format!("source {:?}: {error}", settings.source.plugin));
            None
        }
    };
    let mut transforms = Vec::new();
    for (i, t) in settings.transforms.iter().enumerate() {
        if registry.is_batch_aware(&t.plugin) {
            report(
                &format!("transforms[{i}].plugin"),
                format!("{:?} is a batch plugin; declare it under aggregations", t.plugin),
            );
            continue;
        }
        match registry.transform(&t.plugin, &t.options) {
            Ok(plugin) => transforms.push(std::sync::Arc::from(plugin)),
            Err(error) => report(&format!("transforms[{i}].options"), format!("transform {:?} ({}): {error}", t.name, t.plugin)),
        }
    }
    let mut aggregations = Vec::new();
    for (i, a) in settings.aggregations.iter().enumerate() {
        if !registry.is_batch_aware(&a.plugin) {
            report(
                &format!("aggregations[{i}].plugin"),
                format!("{:?} is not a batch-aware plugin, so it cannot aggregate", a.plugin),
            );
            continue;
        }
        match registry.batch_transform(&a.plugin, &a.options) {
            Ok(plugin) => aggregations.push(plugin),
            Err(error) => {
                report(&format!("aggregations[{i}].options"), format!("aggregation {:?} ({}): {error}", a.name, a.plugin));
            }
        }
    }
    let mut sinks = IndexMap::new();
    for (name, sink) in &settings.sinks {
        match registry.sink(&sink.plugin, &sink.options) {
            Ok(plugin) => {
                sinks.insert(name.clone(), plugin);
            }
            Err(error) => report(&format!("sinks.{name}.options"), format!("sink {name:?} ({}): {error}", sink.plugin)),
        }
    }
    Some(PipelinePlugins { source: source?, transforms, aggregations, sinks })
}
