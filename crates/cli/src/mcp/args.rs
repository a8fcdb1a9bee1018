//! The arguments of the MCP tools: each a struct whose doc comments become
//! the JSON schema an assistant reads.

use schemars::JsonSchema;
use serde::Deserialize;

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct Nothing {}

/// A run.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct RunArg {
    /// The run id (as `list_runs` shows it), or `latest` (the default) for the most recently started run.
    pub(crate) run_id: Option<String>,
}

/// A page of a run's list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct RunPage {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// How many entries to skip (default 0).
    pub(crate) offset: Option<u64>,
    /// How many entries to return (default 50, at most 500).
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct ListRuns {
    /// Only runs with this recorded status: running, completed, failed or interrupted.
    pub(crate) status: Option<String>,
    /// How many runs to skip, newest first (default 0).
    pub(crate) offset: Option<u64>,
    /// How many runs to return (default 50, at most 500).
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct ListTokens {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// Only the tokens of this source row: its row index (as `list_rows` shows it) or its row id.
    pub(crate) row: Option<String>,
    pub(crate) offset: Option<u64>,
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct OperationArg {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// The operation id, as `list_operations` shows it.
    pub(crate) operation_id: String,
    pub(crate) offset: Option<u64>,
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct ExplainArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// The token to explain. Give this or `row`.
    pub(crate) token_id: Option<String>,
    /// A source row: its row index (as outputs, `list_rows` and explain show it) or its row id; every output of the row is explained.
    pub(crate) row: Option<String>,
    /// With `row`: only the output that reached this sink.
    pub(crate) sink: Option<String>,
    /// `text` (default): the plain-language lineage; `json`: every recorded field.
    pub(crate) format: Option<String>,
    /// With text: also show each visit's node id, state id and recorded step.
    pub(crate) ids: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct ErrorsArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// `validation` (source rows that failed their schema), `transform` (rows a transform rejected) or `all` (default).
    pub(crate) kind: Option<String>,
    pub(crate) offset: Option<u64>,
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct NodeStatesArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// Only visits of this node (its node id, as `list_nodes` shows it).
    pub(crate) node_id: Option<String>,
    /// Only visits with this status: open, pending, completed or failed.
    pub(crate) status: Option<String>,
    pub(crate) offset: Option<u64>,
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct CallsArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// Only the calls of this node state (a node visit, as `get_node_states` and `explain_token` show it).
    pub(crate) state_id: Option<String>,
    /// Only calls of this type: llm, http, http_redirect, sql, vector, filesystem or process.
    pub(crate) call_type: Option<String>,
    /// Only calls with this status: success or error.
    pub(crate) status: Option<String>,
    pub(crate) offset: Option<u64>,
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct QueryArgs {
    /// One read-only SQL query (SELECT, WITH … SELECT) over the Landscape tables (see `describe_schema`). Writes, several statements, ATTACH and PRAGMA are refused.
    pub(crate) sql: String,
    /// The most rows to return (default 100, at most 1000).
    pub(crate) limit: Option<usize>,
    /// Interrupt the query after this many milliseconds (default and at most 5000).
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct FailureArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// How many examples of each kind of failure to show (default 10, at most 100).
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct RecentArgs {
    /// How far back to look, in minutes (default 60).
    pub(crate) minutes: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(crate) struct FieldArgs {
    /// The run id, or `latest` (the default).
    pub(crate) run_id: Option<String>,
    /// The field, by its normalized name or by its original name in the source.
    pub(crate) field: String,
}
