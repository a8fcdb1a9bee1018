//! Support for the end-to-end tests: building and running the `elspeth`
//! binary, copying examples into scratch directories, comparing outputs
//! semantically, and checking the Landscape's invariants with SQL.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use landscape::connection::{query_i64, query_pairs};
use landscape::DbConnection;

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Path of the `elspeth` binary, built once per test process.
pub fn elspeth_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let exe = std::env::current_exe().expect("test binary has a path");
            let profile_dir =
                exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_path_buf();
            let mut command = Command::new(cargo);
            command.current_dir(workspace()).args([
                "build",
                "--quiet",
                "-p",
                "cli",
                "--bin",
                "elspeth",
                "--features",
                "test-hooks",
            ]);
            if profile_dir.ends_with("release") {
                command.arg("--release");
            }
            let status = command.status().expect("cargo can be started");
            assert!(status.success(), "building the elspeth binary failed");
            profile_dir.join("elspeth")
        })
        .clone()
}

/// Runs `elspeth` with arguments, returning its output.
pub fn elspeth(args: &[&str]) -> Output {
    Command::new(elspeth_binary()).args(args).output().expect("elspeth can be started")
}

/// Runs `elspeth` in a working directory.
pub fn elspeth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(elspeth_binary()).current_dir(dir).args(args).output().expect("elspeth can be started")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !["output", "runs", "expected"].contains(&name) {
                copy_dir(&path, &target);
            }
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// A scratch directory holding `examples/<name>` (inputs and settings only),
/// so the example's relative paths work from its root.
pub fn example_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    add_example(dir.path(), name);
    dir
}

/// Copies `examples/<name>` (inputs and settings only) into `dir/examples/<name>`.
pub fn add_example(dir: &Path, name: &str) {
    copy_dir(&workspace().join("examples").join(name), &dir.join("examples").join(name));
}

/// Runs an example with `--execute` in a scratch directory.
pub fn run_example(name: &str, extra: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = example_dir(name);
    let settings = format!("examples/{name}/settings.yaml");
    let mut args = vec!["run", "--settings", settings.as_str(), "--execute"];
    args.extend_from_slice(extra);
    let output = elspeth_in(dir.path(), &args);
    (dir, output)
}

/// Opens the Landscape a settings file points at (relative to `dir`).
pub fn landscape_at(dir: &Path, relative_db: &str) -> DbConnection {
    let url = format!("sqlite:///{}", dir.join(relative_db).display());
    landscape::open(&url).expect("the Landscape opens")
}

/// A cell or JSON value normalised for semantic comparison: numbers as
/// numbers, booleans as booleans (any case), everything else as text.
fn normalise_text(cell: &str) -> serde_json::Value {
    let trimmed = cell.trim_end_matches('\r');
    match trimmed {
        "True" | "true" => serde_json::Value::Bool(true),
        "False" | "false" => serde_json::Value::Bool(false),
        "" => serde_json::Value::Null,
        other => match other.parse::<f64>() {
            Ok(number) if number.is_finite() => serde_json::json!(number),
            _ => serde_json::Value::String(other.to_owned()),
        },
    }
}

#[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every other value compares as it is")]
fn normalise_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => serde_json::json!(n.as_f64()),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(normalise_json).collect()),
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), normalise_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Rows of a CSV or JSON / JSON Lines file, normalised and sorted.
pub fn semantic_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<String> = if path.extension().is_some_and(|e| e == "csv") {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers: Vec<String> =
            reader.headers().expect("headers").iter().map(|h| h.trim_end_matches('\r').to_owned()).collect();
        reader
            .records()
            .map(|record| {
                let record = record.expect("record");
                let map: BTreeMap<String, serde_json::Value> =
                    headers.iter().cloned().zip(record.iter().map(normalise_text)).collect();
                serde_json::to_string(&map).expect("json")
            })
            .collect()
    } else {
        let values: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => {
                text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("json line")).collect()
            }
        };
        values.iter().map(|v| normalise_json(v).to_string()).collect()
    };
    rows.sort();
    rows
}

/// The Landscape invariants every finished run must satisfy; returns the
/// violations found.
pub fn audit_violations(db: &mut DbConnection) -> Vec<String> {
    let checks: &[(&str, &str)] = &[
        ("open node states", "SELECT count(*) AS n FROM node_states WHERE status = 'open'"),
        (
            "tokens without exactly one terminal outcome",
            "SELECT count(*) AS n FROM tokens t WHERE (SELECT count(*) FROM token_outcomes o WHERE o.token_id = t.token_id AND o.is_terminal = 1) <> 1",
        ),
        (
            "completed gate states without a routing event",
            "SELECT count(*) AS n FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id \
             WHERE n.node_type = 'gate' AND s.status = 'completed' AND NOT EXISTS (SELECT 1 FROM routing_events e WHERE e.state_id = s.state_id)",
        ),
        (
            "delivery outcomes without a completed sink state",
            "SELECT count(*) AS n FROM token_outcomes o WHERE o.outcome IN ('completed', 'routed') AND NOT EXISTS \
             (SELECT 1 FROM node_states s JOIN nodes n ON n.node_id = s.node_id AND n.run_id = s.run_id \
              WHERE s.token_id = o.token_id AND n.node_type = 'sink' AND s.status = 'completed')",
        ),
        ("rows without a token", "SELECT count(*) AS n FROM rows r WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.row_id = r.row_id)"),
        ("batches left draft or executing", "SELECT count(*) AS n FROM batches b JOIN runs r ON r.run_id = b.run_id WHERE r.status = 'completed' AND b.status IN ('draft', 'executing')"),
        ("tokens with two origin groups or orphan lineage",
            "SELECT count(*) AS n FROM tokens t WHERE (t.fork_group_id IS NOT NULL OR t.join_group_id IS NOT NULL OR t.expand_group_id IS NOT NULL) \
             <> EXISTS (SELECT 1 FROM token_parents p WHERE p.token_id = t.token_id)"),
    ];
    let mut violations = Vec::new();
    for (what, sql) in checks {
        let n = query_i64(db, sql).unwrap_or_else(|e| panic!("{what}: {e}"));
        if n != 0 {
            violations.push(format!("{n} {what}"));
        }
    }
    violations
}

/// The latest artifact of every sink as (path, content hash).
pub fn latest_artifacts(db: &mut DbConnection) -> Vec<(String, String)> {
    query_pairs(
        db,
        "SELECT a.path_or_uri AS a, a.content_hash AS b FROM artifacts a WHERE a.created_at = \
         (SELECT max(x.created_at) FROM artifacts x WHERE x.sink_node_id = a.sink_node_id AND x.run_id = a.run_id) \
         AND a.artifact_id = (SELECT max(y.artifact_id) FROM artifacts y WHERE y.sink_node_id = a.sink_node_id AND y.run_id = a.run_id)",
    )
    .expect("artifacts query")
}

/// A fake LLM server on an ephemeral 127.0.0.1 port: the `silent` preset
/// (no latency, no faults, echoed prompts) with `overrides` laid over it
/// (the reference ChaosLLM config format). It stops when dropped.
pub fn chaos_server(overrides: serde_json::Value) -> chaosllm::RunningServer {
    let mut config = chaosllm::config::preset("silent").expect("preset");
    chaosllm::config::merge(&mut config, serde_json::json!({"response": {"mode": "echo"}}));
    chaosllm::config::merge(&mut config, overrides);
    chaosllm::config::merge(&mut config, serde_json::json!({"server": {"host": "127.0.0.1", "port": 0}}));
    let config = chaosllm::Config::from_value(config, "test").expect("a valid chaos config");
    chaosllm::start(config).expect("the fake LLM server starts")
}

/// The fake web server on an ephemeral 127.0.0.1 port: the `silent` web
/// preset with `overrides` laid over it. It stops when dropped.
pub fn web_server(overrides: serde_json::Value) -> chaosllm::RunningServer {
    let mut config = chaosllm::web::web_preset("silent").expect("preset");
    chaosllm::config::merge(&mut config, overrides);
    chaosllm::config::merge(&mut config, serde_json::json!({"server": {"host": "127.0.0.1", "port": 0}}));
    let config = chaosllm::web::WebConfig::from_value(config, "test").expect("a valid web config");
    chaosllm::web::start_web(config).expect("the fake web server starts")
}

/// A command's stdout and stderr, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `dir/out/name` as text (empty when the sink wrote nothing).
pub fn read_out(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("out").join(name)).unwrap_or_default()
}

/// `elspeth resume latest` in `dir` with `--chunk-size chunk`; asserts it
/// succeeded (`what` names the case in the message).
pub fn resume_latest(dir: &Path, chunk: &str, what: &str) {
    let resumed = elspeth_in(dir, &["resume", "latest", "--settings", "settings.yaml", "--chunk-size", chunk]);
    assert!(resumed.status.success(), "{what}: {}", output_text(&resumed));
}
