//! A small registered run to record against.

use contracts::records::{Row, Run, Token};
use contracts::{Determinism, NodeId, NodeType, RoutingMode, Value};
use landscape::recorder::{NewNode, NewNodeState};
use landscape::Recorder;

pub(crate) struct Fixture {
    pub(crate) run: Run,
    pub(crate) source: NodeId,
    pub(crate) transform: NodeId,
    pub(crate) sink: NodeId,
    pub(crate) row: Row,
    pub(crate) token: Token,
}

pub(crate) fn sqlite_recorder() -> Recorder {
    Recorder::open("sqlite:///:memory:", None).expect("in-memory Landscape opens")
}

pub(crate) fn node_id(name: &str) -> NodeId {
    NodeId::parse(name).expect("valid node id")
}

pub(crate) fn row_value(n: i64) -> Value {
    let mut row = contracts::Row::new();
    row.insert("id".into(), Value::Integer(n));
    row.insert("name".into(), Value::String(format!("row {n}")));
    Value::Object(row)
}

pub(crate) fn fixture(recorder: &mut Recorder) -> Fixture {
    let run = recorder.begin_run(&serde_json::json!({"source": {"plugin": "csv"}}), None).expect("begin run");
    let mut register = |name: &str, node_type: NodeType, determinism: Determinism| {
        let id = node_id(name);
        recorder
            .register_node(
                &run.run_id,
                &NewNode {
                    node_id: &id,
                    plugin_name: name,
                    node_type,
                    plugin_version: "1.0.0",
                    determinism,
                    config: &serde_json::json!({"name": name}),
                    sequence_in_pipeline: None,
                    schema_mode: Some("observed"),
                    schema_fields: None,
                },
            )
            .expect("register node");
        id
    };
    let source = register("source_csv", NodeType::Source, Determinism::IoRead);
    let transform = register("transform_passthrough", NodeType::Transform, Determinism::Deterministic);
    let sink = register("sink_csv", NodeType::Sink, Determinism::IoWrite);
    recorder.register_edge(&run.run_id, &source, &transform, "continue", RoutingMode::Move).expect("edge");
    recorder.register_edge(&run.run_id, &transform, &sink, "continue", RoutingMode::Move).expect("edge");
    let row = recorder.create_row(&run.run_id, &source, 0, &row_value(0)).expect("row");
    let token = recorder.create_token(&row).expect("token");
    Fixture { run, source, transform, sink, row, token }
}

impl Fixture {
    pub(crate) fn state<'a>(&'a self, token: &'a Token, node: &'a NodeId, step: u32, attempt: u32) -> NewNodeState<'a> {
        NewNodeState {
            token,
            node_id: node,
            step_index: step,
            attempt,
            input_hash: self.row.source_data_hash.clone(),
            context_before_json: None,
        }
    }

    pub(crate) fn token(&self) -> &Token {
        &self.token
    }
}

/// Counts rows with raw SQL.
pub(crate) fn count(recorder: &mut Recorder, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let rows: Vec<Count> = diesel::sql_query(sql).load(recorder.connection().expect("connection")).expect("count query");
    rows[0].n
}

/// A file Landscape holding the fixture's run plus `n_rows - 1` more rows,
/// each with a token and a completed outcome, committed.
pub(crate) fn run_of(n_rows: u64) -> (tempfile::TempDir, Recorder, Fixture) {
    use contracts::records::OutcomeDetail;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::open(&format!("sqlite:///{}", dir.path().join("a.db").display()), None).expect("open");
    let f = fixture(&mut recorder);
    recorder.begin_unit().expect("unit");
    for index in 1..n_rows {
        let row =
            recorder.create_row(&f.run.run_id, &f.source, index, &row_value(i64::try_from(index).expect("small"))).expect("row");
        let token = recorder.create_token(&row).expect("token");
        recorder
            .record_token_outcome(&f.run.run_id, &token.token_id, OutcomeDetail::Completed { sink_name: "out".into() }, None)
            .expect("outcome");
    }
    recorder.commit_unit().expect("commit");
    (dir, recorder, f)
}

/// Counts the statements `recorder`'s connection starts from now on.
pub(crate) fn count_statements(recorder: &mut Recorder) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use diesel::connection::{Connection, InstrumentationEvent};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    recorder.connection().expect("connection").set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}
