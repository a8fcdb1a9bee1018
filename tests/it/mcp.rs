//! `elspeth mcp` end to end: a real MCP client (rmcp over a child process)
//! initialises the server on a Landscape holding runs with forks, batches,
//! transform errors, field normalisation, sink operations with SQL calls and
//! LLM calls, lists the tools, calls every one and checks the answers
//! against the Landscape; refused queries; bad arguments are MCP errors and
//! the server goes on; the database file is byte-identical afterwards.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use landscape::connection::{query_i64, query_pairs};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt as _, TokioChildProcess};
use rmcp::ServiceExt as _;
use serde_json::{json, Value as J};
use tests::{add_example, chaos_server, elspeth_binary, elspeth_in, landscape_at, output_text};

const EXAMPLES: &[&str] = &["fork_coalesce", "batch_aggregation", "error_routing", "schema_contracts_demo", "database_sink"];

/// A scratch directory whose `audit.db` holds one run of each example and
/// one LLM run (against the fake server, some answers malformed); returns
/// the run ids by pipeline name.
fn landscape_with_everything() -> (tempfile::TempDir, BTreeMap<&'static str, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in EXAMPLES {
        add_example(dir.path(), name);
        let settings = dir.path().join("examples").join(name).join("settings.yaml");
        let text = std::fs::read_to_string(&settings).expect("settings");
        let text = text.replace(&format!("sqlite:///examples/{name}/runs/audit.db"), "sqlite:///audit.db");
        std::fs::write(&settings, text).expect("settings");
        let output = elspeth_in(dir.path(), &["run", "--settings", &format!("examples/{name}/settings.yaml"), "--execute"]);
        assert!(output.status.success(), "{name}: {}", output_text(&output));
    }
    // Seeded: unseeded, all 12 answers were valid JSON in about 1 run of 70
    // (0.7^12), leaving the fixture without the errors it must have.
    let server = chaos_server(json!({"seed": 20, "error_injection": {"invalid_json_pct": 30}}));
    let mut input = String::from("id,text\n");
    for id in 0..12 {
        let _ = writeln!(input, "{id},row {id}");
    }
    std::fs::write(dir.path().join("input.csv"), input).expect("input");
    std::fs::write(dir.path().join("llm.yaml"), crate::llm::pipeline(&server.base_url(), 2, "")).expect("settings");
    let output = std::process::Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_FINGERPRINT_KEY", "a-test-fingerprint-key")
        .args(["run", "--settings", "llm.yaml", "--execute"])
        .output()
        .expect("elspeth runs");
    assert!(output.status.success(), "llm: {}", output_text(&output));
    let mut db = landscape_at(dir.path(), "audit.db");
    let ids: Vec<String> = query_pairs(&mut db, "SELECT run_id AS a, '' AS b FROM runs ORDER BY started_at, run_id")
        .expect("runs")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(ids.len(), EXAMPLES.len() + 1);
    let mut runs: BTreeMap<&'static str, String> = EXAMPLES.iter().copied().zip(ids.iter().cloned()).collect();
    runs.insert("llm", ids[EXAMPLES.len()].clone());
    (dir, runs)
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("database file")))
}

struct Session {
    client: RunningService<RoleClient, ()>,
}

impl Session {
    async fn start(database: &Path) -> Session {
        let url = format!("sqlite:///{}", database.display());
        let transport = TokioChildProcess::new(tokio::process::Command::new(elspeth_binary()).configure(|cmd| {
            cmd.args(["mcp", "--database", &url]);
        }))
        .expect("elspeth mcp starts");
        Session { client: ().serve(transport).await.expect("the MCP handshake succeeds") }
    }

    /// Calls `tool`; the answer's text (JSON parsed when it is JSON), or the MCP error message.
    async fn call(&self, tool: &'static str, arguments: J) -> Result<J, String> {
        let J::Object(arguments) = arguments else { panic!("arguments are an object") };
        match self.client.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments)).await {
            Ok(result) => {
                assert_ne!(result.is_error, Some(true), "{tool}");
                let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).expect("text content");
                Ok(serde_json::from_str(&text).unwrap_or(J::String(text)))
            }
            Err(rmcp::ServiceError::McpError(error)) => Err(error.message.to_string()),
            Err(other) => panic!("{tool}: the server failed: {other}"),
        }
    }

    async fn ok(&self, tool: &'static str, arguments: J) -> J {
        self.call(tool, arguments.clone()).await.unwrap_or_else(|e| panic!("{tool}({arguments}): {e}"))
    }
}

fn n(db: &mut landscape::DbConnection, sql: &str) -> u64 {
    u64::try_from(query_i64(db, sql).expect(sql)).expect("a count")
}

/// What the Landscape says, read with SQL before the session.
struct Facts {
    llm_calls: u64,
    llm_states: u64,
    llm_errors: u64,
    routing_errors: u64,
    operation: String,
}

fn facts(dir: &Path, runs: &BTreeMap<&'static str, String>) -> Facts {
    let mut db = landscape_at(dir, "audit.db");
    let llm = &runs["llm"];
    let facts = Facts {
        llm_calls: n(&mut db, &format!("SELECT count(*) AS n FROM calls c JOIN node_states s ON s.state_id = c.state_id WHERE s.run_id = '{llm}' AND c.call_type = 'llm'")),
        llm_states: n(&mut db, &format!("SELECT count(*) AS n FROM node_states WHERE run_id = '{llm}'")),
        llm_errors: n(&mut db, &format!("SELECT count(*) AS n FROM transform_errors WHERE run_id = '{llm}'")),
        routing_errors: n(&mut db, &format!("SELECT count(*) AS n FROM transform_errors WHERE run_id = '{}'", runs["error_routing"])),
        operation: query_pairs(&mut db, &format!("SELECT o.operation_id AS a, '' AS b FROM operations o WHERE o.run_id = '{}' AND EXISTS (SELECT 1 FROM calls c WHERE c.operation_id = o.operation_id)", runs["database_sink"])).expect("operation").remove(0).0,
    };
    let batches = n(&mut db, &format!("SELECT count(*) AS n FROM batches WHERE run_id = '{}'", runs["batch_aggregation"]));
    assert!(
        facts.llm_calls > 0 && facts.llm_errors > 0 && facts.routing_errors > 0 && batches > 0,
        "the fixture has calls, errors and batches"
    );
    facts
}

#[test]
fn every_tool_answers_from_the_landscape_and_nothing_is_written() {
    let (dir, runs) = landscape_with_everything();
    let database = dir.path().join("audit.db");
    let facts = facts(dir.path(), &runs);
    let before = sha256_of(&database);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let session = Session::start(&database).await;
        let tools = session.client.list_all_tools().await.expect("tools");
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names.len(), 25, "{names:?}");
        for tool in &tools {
            assert!(tool.description.as_deref().is_some_and(|d| d.len() > 40), "{} explains itself", tool.name);
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
        }
        runs_and_structure(&session, &runs, &facts).await;
        errors_and_calls(&session, &runs, &facts).await;
        contracts_and_queries(&session, &runs).await;
        session.client.cancel().await.expect("the session closes");
    });
    assert_eq!(sha256_of(&database), before, "the Landscape is byte-identical after the session");
}

async fn runs_and_structure(session: &Session, runs: &BTreeMap<&'static str, String>, facts: &Facts) {
    let (llm, fork) = (runs["llm"].clone(), runs["fork_coalesce"].clone());
    let listed = session.ok("list_runs", json!({})).await;
    assert_eq!(listed["total"], json!(runs.len()));
    assert_eq!(listed["items"][0]["run_id"], json!(llm), "newest first");
    assert!(listed["items"].as_array().expect("items").iter().all(|r| r["shown_status"] == "completed"));
    let one = session.ok("list_runs", json!({"status": "completed", "limit": 1, "offset": 1})).await;
    assert_eq!((one["items"].as_array().map(Vec::len), one["total"].clone()), (Some(1), json!(runs.len())));

    let run = session.ok("get_run", json!({"run_id": fork})).await;
    assert_eq!(run["settings"]["coalesce"][0]["name"], "merge_results");
    let summary = session.ok("get_run_summary", json!({"run_id": fork})).await;
    assert_eq!(summary["counts"]["rows"], 5);
    assert_eq!(summary["counts"]["fork_groups"], 5);
    assert_eq!(summary["counts"]["join_groups"], 5);
    let latest = session.ok("get_run_summary", json!({})).await;
    assert_eq!(latest["run"]["run_id"], json!(llm), "run_id defaults to the latest run");

    let nodes = session.ok("list_nodes", json!({"run_id": fork})).await;
    let names: Vec<&str> = nodes.as_array().expect("nodes").iter().filter_map(|n| n["name"].as_str()).collect();
    assert!(names.contains(&"merge_results") && names.contains(&"fork_gate"), "{names:?}");
    assert!(nodes.as_array().expect("nodes").iter().all(|n| n["visits"].as_u64() > Some(0)));

    let rows = session.ok("list_rows", json!({"run_id": fork, "limit": 2})).await;
    assert_eq!((rows["total"].clone(), rows["items"].as_array().map(Vec::len)), (json!(5), Some(2)));
    assert_eq!(rows["items"][1]["row_index"], 1);
    let tokens = session.ok("list_tokens", json!({"run_id": fork, "row": "0"})).await;
    assert_eq!(tokens["total"], 4, "the row's token, two forked branches and the joined token");

    let operations = session.ok("list_operations", json!({"run_id": runs["database_sink"]})).await;
    assert!(operations["total"].as_u64() >= Some(2), "the source load and the sink writes");
    let calls =
        session.ok("get_operation_calls", json!({"run_id": runs["database_sink"], "operation_id": facts.operation})).await;
    assert!(calls["total"].as_u64() > Some(0));
    assert!(calls["items"].as_array().expect("calls").iter().all(|c| c["call_type"] == "sql"));

    let text = session.ok("explain_token", json!({"run_id": fork, "row": "0"})).await;
    let text = text.as_str().expect("plain text");
    assert!(text.contains("merge_results") && text.contains("COALESCED"), "{text}");
    let lineage = session.ok("explain_token", json!({"run_id": fork, "row": "0", "format": "json"})).await;
    assert_eq!(lineage["outputs"].as_array().map(Vec::len), Some(1));
    let token = lineage["outputs"][0]["token_id"].as_str().expect("token").to_owned();
    let by_token = session.ok("explain_token", json!({"run_id": fork, "token_id": token, "format": "json"})).await;
    assert_eq!(by_token["outputs"][0], lineage["outputs"][0]);
}

async fn errors_and_calls(session: &Session, runs: &BTreeMap<&'static str, String>, facts: &Facts) {
    let (llm, fork) = (runs["llm"].clone(), runs["fork_coalesce"].clone());
    let errors = session.ok("get_errors", json!({"run_id": runs["error_routing"], "kind": "transform"})).await;
    assert_eq!(errors["transform_errors"]["total"], json!(facts.routing_errors));
    assert!(errors.get("validation_errors").is_none());
    let states = session.ok("get_node_states", json!({"run_id": llm, "limit": 500})).await;
    assert_eq!(states["total"], json!(facts.llm_states));
    let llm_calls_listed = session.ok("get_calls", json!({"run_id": llm, "call_type": "llm"})).await;
    assert_eq!(llm_calls_listed["total"], json!(facts.llm_calls));
    let state = llm_calls_listed["items"][0]["state_id"].as_str().expect("a state").to_owned();
    let of_state = session.ok("get_calls", json!({"run_id": llm, "state_id": state})).await;
    assert!(of_state["total"].as_u64() >= Some(1));

    let dag = session.ok("get_dag_structure", json!({"run_id": fork})).await;
    assert!(dag["mermaid"].as_str().is_some_and(|m| m.starts_with("flowchart TD") && m.contains("merge_results")));
    assert_eq!(dag["edges"].as_array().map(Vec::len), Some(8));
    let copies: u64 = dag["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter(|e| e["default_mode"] == "copy")
        .filter_map(|e| e["routed"].as_u64())
        .sum();
    assert_eq!(copies, 10, "five rows forked onto two branches");

    let performance = session.ok("get_performance_report", json!({"run_id": llm})).await;
    let shares: f64 = performance["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["share"].as_f64()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{shares}");
    assert_eq!(performance["bottleneck"]["name"], "ask", "the LLM transform is the slow node");

    let analysis = session.ok("get_error_analysis", json!({"run_id": llm})).await;
    let groups = analysis["groups"].as_array().expect("groups");
    let transform: Vec<&J> = groups.iter().filter(|g| g["kind"] == "transform").collect();
    assert_eq!(transform.len(), 1, "one node, one destination: {analysis}");
    assert_eq!(
        (transform[0]["count"].clone(), transform[0]["classification"].clone()),
        (json!(facts.llm_errors), json!("routed to rejected"))
    );
    assert!(transform[0]["sample"].as_str().is_some_and(|s| s.contains("llm_call_failed")));
    let usage = session.ok("get_llm_usage_report", json!({"run_id": llm})).await;
    assert_eq!(usage["llm_calls"], json!(facts.llm_calls));
    assert!(usage["success_rate"].as_f64().is_some_and(|r| r > 0.0 && r < 1.0), "{usage}");

    let schema = session.ok("describe_schema", json!({})).await;
    assert!(schema.as_str().is_some_and(|s| s.contains("node_states") && s.contains("token_outcomes")));
    let outcomes = session.ok("get_outcome_analysis", json!({"run_id": fork})).await;
    assert_eq!(outcomes["sinks"]["output"], 5);
    assert_eq!(outcomes["fork_groups"], 5);

    let diagnosis = session.ok("diagnose", json!({})).await;
    assert_eq!(diagnosis["runs_scanned"], json!(runs.len()));
    let context = session.ok("get_failure_context", json!({"run_id": llm, "limit": 3})).await;
    assert_eq!(context["transform_errors"]["total"], json!(facts.llm_errors));
    assert!(context["transform_errors"]["items"].as_array().map(Vec::len) <= Some(3));
    let recent = session.ok("get_recent_activity", json!({"minutes": 60})).await;
    assert_eq!(recent["runs"].as_array().map(Vec::len), Some(runs.len()));
}

async fn contracts_and_queries(session: &Session, runs: &BTreeMap<&'static str, String>) {
    let fork = runs["fork_coalesce"].clone();
    let contracts = runs["schema_contracts_demo"].clone();
    let contract = session.ok("get_run_contract", json!({"run_id": contracts})).await;
    assert_eq!(contract["field_resolution"]["Customer ID!!"], "customer_id");
    let field = session.ok("explain_field", json!({"run_id": contracts, "field": "Customer ID!!"})).await;
    assert_eq!(field["normalized_name"], "customer_id");
    assert!(field["declared_by"]
        .as_array()
        .is_some_and(|d| d.iter().any(|n| n["node_type"] == "source" && n["field"]["type"] == "str")));
    let violations = session.ok("list_contract_violations", json!({"run_id": contracts})).await;
    assert_eq!(violations["total"], 0);

    let counted = session.ok("query", json!({"sql": format!("SELECT count(*) AS rows FROM rows WHERE run_id = '{fork}'")})).await;
    assert_eq!((counted["columns"].clone(), counted["rows"].clone()), (json!(["rows"]), json!([[5]])));
    let cut = session.ok("query", json!({"sql": "SELECT state_id, duration_ms FROM node_states", "limit": 3})).await;
    assert_eq!((cut["rows"].as_array().map(Vec::len), cut["truncated"].clone()), (Some(3), json!(true)));

    // Bad arguments and refused queries are MCP errors naming the problem; the server goes on.
    for (sql, expected) in [
        ("DELETE FROM rows", "read-only query"),
        ("UPDATE runs SET status = 'failed'", "read-only query"),
        ("DROP TABLE rows", "read-only query"),
        ("SELECT 1; DELETE FROM rows", "only one statement"),
        ("ATTACH DATABASE 'x.db' AS x", "read-only query"),
        ("PRAGMA user_version = 7", "read-only query"),
        (
            "WITH doomed AS (SELECT row_id FROM rows) DELETE FROM rows WHERE row_id IN (SELECT row_id FROM doomed)",
            "read-only query",
        ),
        ("SELECT * FROM pragma_user_version", "refused"),
        ("SELEC 1", "does not parse"),
    ] {
        let refused = session.call("query", json!({"sql": sql})).await.expect_err(sql);
        assert!(refused.contains(expected), "{sql}: {refused}");
    }
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let stopped = session.call("query", json!({"sql": endless, "timeout_ms": 200})).await.expect_err("endless");
    assert!(stopped.contains("interrupted"), "{stopped}");
    let unknown = session.call("get_run", json!({"run_id": "0".repeat(32)})).await.expect_err("unknown run");
    assert!(unknown.contains("is not in this Landscape"), "{unknown}");
    let bad_field = session.call("explain_field", json!({"run_id": contracts, "field": "nope"})).await.expect_err("field");
    assert!(bad_field.contains("no field"), "{bad_field}");
    let bad_status = session.call("list_runs", json!({"status": "sideways"})).await.expect_err("status");
    assert!(bad_status.contains("sideways"), "{bad_status}");
    assert_eq!(session.ok("get_run_summary", json!({"run_id": fork})).await["counts"]["rows"], 5, "still serving");
}

#[test]
fn a_database_that_is_not_a_landscape_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.db");
    let output = elspeth_in(dir.path(), &["mcp", "--database", &format!("sqlite:///{}", missing.display())]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such database file"), "{}", output_text(&output));
    assert!(!missing.exists());
}
