//! The catalogue of built-in plugins: what `elspeth plugins list` prints and
//! what the registry accepts. Each entry's options are checked by a test
//! against the option struct the plugin really parses.

use contracts::plugin::PluginInfo;

use crate::{sinks, sources, transforms};

/// Where a plugin can be placed in a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Source,
    Transform,
    /// A batch-aware transform, used under `aggregations`.
    BatchTransform,
    Sink,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Transform => "transform",
            PluginKind::BatchTransform => "batch_transform",
            PluginKind::Sink => "sink",
        }
    }
}

/// One option of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDoc {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
}

/// One plugin: its identity, determinism, purpose and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDoc {
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub summary: &'static str,
    pub options: &'static [OptionDoc],
}

const fn required(name: &'static str, description: &'static str) -> OptionDoc {
    OptionDoc { name, required: true, description }
}

const fn optional(name: &'static str, description: &'static str) -> OptionDoc {
    OptionDoc { name, required: false, description }
}

const SCHEMA: OptionDoc = required("schema", "row schema: {mode: fixed|flexible|observed, fields: ['name: type', ...]}");
const REQUIRED_INPUT: OptionDoc =
    optional("required_input_fields", "fields the upstream schema must guarantee (checked when the graph is built)");
const VALIDATE_INPUT: OptionDoc = optional("validate_input", "check every incoming row against `schema` (default false)");
const ON_VALIDATION_FAILURE: OptionDoc =
    required("on_validation_failure", "sink that receives quarantined records, or `discard`");
const ENCODING: OptionDoc = optional("encoding", "text encoding; only utf-8 is accepted");
const MODE: OptionDoc = optional(
    "mode",
    "`write` (default: the file is created anew) or `append` (kept; a CSV header only into an empty file; JSON: jsonl only)",
);
const HEADERS: OptionDoc =
    optional("headers", "output field names: `normalized` (default), `original`, or a map {field: display name}");

/// Every built-in plugin, sources first, then transforms, batch transforms and sinks.
pub const CATALOGUE: &[PluginDoc] = &[
    PluginDoc {
        kind: PluginKind::Source,
        info: sources::csv_source::INFO,
        summary: "Reads a CSV file; headers normalised (originals kept), values coerced to the schema, bad records quarantined",
        options: &[
            required("path", "the CSV file"),
            SCHEMA,
            ON_VALIDATION_FAILURE,
            optional("delimiter", "field delimiter, one character (default `,`)"),
            ENCODING,
            optional("skip_rows", "lines to skip before the header (default 0)"),
            optional("columns", "column names for a file without a header row"),
            optional("field_mapping", "rename fields after normalisation: {normalised: new name}"),
        ],
    },
    PluginDoc {
        kind: PluginKind::Source,
        info: sources::json_source::INFO,
        summary: "Reads a JSON array or JSON Lines file; each object is a row, bad records quarantined",
        options: &[
            required("path", "the JSON or JSON Lines file"),
            SCHEMA,
            ON_VALIDATION_FAILURE,
            optional("format", "`json` (an array) or `jsonl` (default: from the file extension)"),
            optional("data_key", "for `json`: the key of the array inside a top-level object"),
            ENCODING,
        ],
    },
    PluginDoc {
        kind: PluginKind::Source,
        info: sources::null_source::INFO,
        summary: "Yields no rows",
        options: &[optional("schema", "accepted and ignored"), optional("on_validation_failure", "accepted and ignored")],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::passthrough::INFO,
        summary: "Passes each row on unchanged",
        options: &[SCHEMA, VALIDATE_INPUT, REQUIRED_INPUT],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::field_mapper::INFO,
        summary: "Renames (and optionally selects) fields",
        options: &[
            SCHEMA,
            optional("mapping", "{source field: new name}; dotted paths reach into nested objects"),
            optional("select_only", "keep only the mapped fields (default false)"),
            optional("strict", "a missing source field is an error result instead of being skipped (default false)"),
            VALIDATE_INPUT,
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::truncate::INFO,
        summary: "Shortens string fields to a maximum length",
        options: &[
            SCHEMA,
            required("fields", "{field: maximum length in characters}"),
            optional("suffix", "appended to truncated values, counted in the length (default none)"),
            optional("strict", "a missing field is an error result (default false)"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::keyword_filter::INFO,
        summary: "Returns an error result for rows whose fields match a blocked pattern",
        options: &[
            SCHEMA,
            required("fields", "a field, a list of fields, or `all` (every string field)"),
            required("blocked_patterns", "regular expressions; any match blocks the row"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::json_explode::INFO,
        summary: "Expands an array field into one row per element (child tokens with an expand group)",
        options: &[
            SCHEMA,
            required("array_field", "the array to expand; an empty array or a non-array is an error result"),
            optional("output_field", "field that receives each element (default `item`)"),
            optional("include_index", "add `item_index` with the element's position (default true)"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::llm::INFO,
        summary: "Asks a language model about each row (openrouter, azure, or any OpenAI-compatible server); every request and answer is recorded as a call",
        options: &[
            required("provider", "`openrouter`, `azure` or `openai` (any OpenAI-compatible `base_url`: OpenAI, vLLM, Ollama, llama.cpp)"),
            optional("model", "model name; required for openrouter and openai, defaults to `deployment_name` for azure"),
            required("template", "Jinja2 prompt template over `row` and `lookup` (or `template_file`, relative to the settings file)"),
            optional("system_prompt", "system message sent before the prompt (or `system_prompt_file`)"),
            optional("temperature", "0 to 2 (default 0)"),
            optional("max_tokens", "upper bound on the answer's tokens (default: the provider's)"),
            optional("response_field", "field that receives the answer (default `llm_response`); `_usage` and `_model` fields are added beside it"),
            optional("queries", "multi-query: a list (or map by name) of {input_fields, template, output_fields: [{suffix, type, values}], response_format, max_tokens}"),
            optional("lookup", "data the template reads as `lookup` (or `lookup_file`, YAML)"),
            optional("template_source", "where the template came from (set by `template_file`)"),
            optional("lookup_source", "where the lookup came from (set by `lookup_file`)"),
            optional("system_prompt_source", "where the system prompt came from (set by `system_prompt_file`)"),
            optional("pool_size", "rows in flight at once (default 1); results are recorded in source order"),
            optional("min_dispatch_delay_ms", "smallest gap between two requests of the node, and the least back-off (default 0)"),
            optional("max_dispatch_delay_ms", "largest AIMD back-off delay (default 5000)"),
            optional("backoff_multiplier", "AIMD growth of the back-off delay on 429/503/529 (default 2.0)"),
            optional("recovery_step_ms", "AIMD shrink of the back-off delay per success, and its first step (default 50)"),
            optional("max_capacity_retry_seconds", "how long capacity refusals are retried before the attempt fails (default 3600)"),
            SCHEMA,
            optional("required_input_fields", "row fields the template reads; required when it reads any (`[]` opts out)"),
            optional("tracing", "only `{provider: none}`: every call is in the audit trail"),
            optional("deployment_name", "azure: the deployment"),
            optional("endpoint", "azure: `https://NAME.openai.azure.com`"),
            optional("api_version", "azure: API version (default 2024-10-21)"),
            optional("api_key", "the provider's key; recorded only as an HMAC fingerprint (needs ELSPETH_FINGERPRINT_KEY)"),
            optional("base_url", "openrouter (default https://openrouter.ai/api/v1) and openai: the API root"),
            optional("timeout_seconds", "openrouter and openai: per-request timeout (default 60)"),
        ],
    },
    PluginDoc {
        kind: PluginKind::Transform,
        info: transforms::web_scrape::INFO,
        summary: "Fetches the page a row names (SSRF-checked, redirects followed hop by hop) and adds its content and fingerprint; every request is recorded as a call",
        options: &[
            required("url_field", "field holding the URL"),
            required("content_field", "field that receives the page's content"),
            required("fingerprint_field", "field that receives the SHA-256 of the content"),
            optional("format", "`markdown` (default), `text` (visible text) or `raw` (the HTML)"),
            optional("fingerprint_mode", "`content` (whitespace normalised, default) or `full`"),
            optional("strip_elements", "elements removed before extraction (default [script, style])"),
            required("http", "{abuse_contact, scraping_reason (both required, sent as headers), timeout (30), allowed_hosts (public_only | allow_private | [CIDR, ...]), max_response_bytes (10 MiB), max_redirects (10)}"),
            SCHEMA,
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::BatchTransform,
        info: transforms::batch_stats::INFO,
        summary: "Summarises a batch: count, sum, mean (and min/max) of a numeric field, optionally per group",
        options: &[
            SCHEMA,
            required("value_field", "the numeric field; a non-numeric value is an error result for the batch"),
            optional("group_by", "one output row per distinct value of this field"),
            optional("compute_mean", "include `mean` (default true)"),
            optional("compute_min_max", "include `min` and `max` (default false)"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::BatchTransform,
        info: transforms::batch_replicate::INFO,
        summary: "Emits each row of a batch a number of times taken from a field",
        options: &[
            SCHEMA,
            optional("copies_field", "field holding the number of copies (default `copies`)"),
            optional("default_copies", "copies when the field is missing (default 1)"),
            optional("max_copies", "upper bound; more is an error result (default 10000)"),
            optional("include_copy_index", "add `copy_index` to each copy (default true)"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::BatchTransform,
        info: transforms::command_batch::INFO,
        summary: "Runs a program on the batch in the background: rows as JSON Lines on its stdin, output rows as JSON Lines on its stdout",
        options: &[
            SCHEMA,
            required("command", "the program and its arguments, e.g. [python3, score.py]"),
            optional("poll_interval_seconds", "how often to check whether the program ended (default 0.2)"),
            optional("work_dir", "where the job files live (default: the system temp dir)"),
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Sink,
        info: sinks::csv_sink::INFO,
        summary: "Writes rows to a CSV file, durably (flushed and synced) before outcomes are recorded",
        options: &[
            required("path", "the CSV file"),
            SCHEMA,
            optional("delimiter", "field delimiter, one character (default `,`)"),
            ENCODING,
            MODE,
            HEADERS,
            VALIDATE_INPUT,
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Sink,
        info: sinks::json_sink::INFO,
        summary: "Writes rows as JSON Lines or a JSON array, durably before outcomes are recorded",
        options: &[
            required("path", "the output file"),
            SCHEMA,
            optional("format", "`jsonl` or `json` (default: from the file extension)"),
            optional("indent", "for `json`: spaces of indentation"),
            ENCODING,
            MODE,
            HEADERS,
            VALIDATE_INPUT,
            REQUIRED_INPUT,
        ],
    },
    PluginDoc {
        kind: PluginKind::Sink,
        info: sinks::database_sink::INFO,
        summary: "Writes rows into a SQLite or PostgreSQL table (created from the schema), one transaction per write, each row exactly once across a crash",
        options: &[
            required("url", "`sqlite:///path.db` or `postgresql://user:password@host/db` (the password is stored only as a fingerprint)"),
            required("table", "the table; created on the first write (observed: text columns; fixed: typed, required ones NOT NULL)"),
            optional("if_exists", "`append` (default) or `replace` (dropped once, at the first write; never on resume)"),
            optional("validate_input", "accepted; rows are always checked against the declared fields"),
            SCHEMA,
            REQUIRED_INPUT,
        ],
    },
];

/// The names of the plugins of one kind.
pub(crate) fn names(kind: PluginKind) -> Vec<&'static str> {
    CATALOGUE.iter().filter(|p| p.kind == kind).map(|p| p.info.name).collect()
}

#[cfg(test)]
mod tests;
