//! The settings model: the reference `settings.yaml` format, strict (unknown
//! keys are errors), with the reference's defaults.

#![allow(clippy::struct_excessive_bools)]

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub type Options = serde_json::Map<String, serde_json::Value>;

/// A whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub source: SourceSettings,
    pub sinks: IndexMap<String, SinkSettings>,
    #[serde(default)]
    pub transforms: Vec<TransformSettings>,
    #[serde(default)]
    pub gates: Vec<GateSettings>,
    #[serde(default)]
    pub aggregations: Vec<AggregationSettings>,
    #[serde(default)]
    pub coalesce: Vec<CoalesceSettings>,
    #[serde(default)]
    pub landscape: LandscapeSettings,
    #[serde(default)]
    pub checkpoint: CheckpointSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub payload_store: PayloadStoreSettings,
    #[serde(default)]
    pub concurrency: ConcurrencySettings,
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub run_mode: RunModeSetting,
    /// Reference features this implementation does not run yet; accepted by
    /// the parser so the error can say so clearly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commencement_gates: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_probes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub plugin: String,
    pub on_success: String,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSettings {
    pub name: String,
    pub plugin: String,
    pub input: String,
    pub on_success: String,
    pub on_error: String,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    pub name: String,
    pub input: String,
    pub condition: String,
    pub routes: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputModeSetting {
    #[default]
    Transform,
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationSettings {
    pub name: String,
    pub plugin: String,
    pub input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    pub on_error: String,
    pub trigger: TriggerSettings,
    #[serde(default)]
    pub output_mode: OutputModeSetting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output_count: Option<u64>,
    /// How long a pending (async) batch may stay pending before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_seconds: Option<f64>,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CoalescePolicy {
    #[default]
    RequireAll,
    Quorum,
    BestEffort,
    First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    #[default]
    Union,
    Nested,
    Select,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnionCollisionPolicy {
    #[default]
    LastWins,
    FirstWins,
    Fail,
}

/// Coalesce branches: a list of names (each arriving straight from its fork)
/// or a map branch → input connection (the branch runs transforms first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Branches {
    List(Vec<String>),
    Map(IndexMap<String, String>),
}

impl Branches {
    /// Branch name → input connection, in declared order.
    pub fn resolved(&self) -> IndexMap<String, String> {
        match self {
            Branches::List(names) => names.iter().map(|n| (n.clone(), n.clone())).collect(),
            Branches::Map(map) => map.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Branches::List(names) => names.len(),
            Branches::Map(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalesceSettings {
    pub name: String,
    pub branches: Branches,
    #[serde(default)]
    pub policy: CoalescePolicy,
    #[serde(default)]
    pub merge: MergeStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default)]
    pub union_collision_policy: UnionCollisionPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    pub plugin: String,
    pub on_write_failure: String,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Csv,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(default)]
    pub format: ExportFormat,
    #[serde(default)]
    pub sign: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LandscapeBackend {
    #[default]
    Sqlite,
    Sqlcipher,
    Postgresql,
}

fn default_landscape_url() -> String {
    "sqlite:///./state/audit.db".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_encryption_key_env() -> String {
    "ELSPETH_AUDIT_KEY".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandscapeSettings {
    #[serde(default = "default_landscape_url")]
    pub url: String,
    #[serde(default)]
    pub backend: LandscapeBackend,
    #[serde(default = "default_encryption_key_env")]
    pub encryption_key_env: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub export: ExportSettings,
    #[serde(default)]
    pub dump_to_jsonl: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_to_jsonl_path: Option<String>,
    #[serde(default)]
    pub dump_to_jsonl_fail_on_error: bool,
    #[serde(default)]
    pub dump_to_jsonl_include_payloads: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_to_jsonl_payload_base_path: Option<String>,
}

impl Default for LandscapeSettings {
    fn default() -> LandscapeSettings {
        LandscapeSettings {
            url: default_landscape_url(),
            backend: LandscapeBackend::Sqlite,
            encryption_key_env: default_encryption_key_env(),
            enabled: true,
            export: ExportSettings::default(),
            dump_to_jsonl: false,
            dump_to_jsonl_path: None,
            dump_to_jsonl_fail_on_error: false,
            dump_to_jsonl_include_payloads: false,
            dump_to_jsonl_payload_base_path: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointFrequency {
    #[default]
    EveryRow,
    EveryN,
    AggregationOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub frequency: CheckpointFrequency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<u64>,
    #[serde(default = "default_true")]
    pub aggregation_boundaries: bool,
}

impl Default for CheckpointSettings {
    fn default() -> CheckpointSettings {
        CheckpointSettings {
            enabled: true,
            frequency: CheckpointFrequency::EveryRow,
            checkpoint_interval: None,
            aggregation_boundaries: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    #[serde(default = "RetrySettings::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "RetrySettings::default_initial_delay")]
    pub initial_delay_seconds: f64,
    #[serde(default = "RetrySettings::default_max_delay")]
    pub max_delay_seconds: f64,
    #[serde(default = "RetrySettings::default_base")]
    pub exponential_base: f64,
}

impl RetrySettings {
    fn default_max_attempts() -> u32 {
        3
    }
    fn default_initial_delay() -> f64 {
        1.0
    }
    fn default_max_delay() -> f64 {
        60.0
    }
    fn default_base() -> f64 {
        2.0
    }
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings { max_attempts: 3, initial_delay_seconds: 1.0, max_delay_seconds: 60.0, exponential_base: 2.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadStoreSettings {
    #[serde(default = "PayloadStoreSettings::default_backend")]
    pub backend: String,
    /// Where payloads are stored; unset, the store belongs to the Landscape
    /// (see [`Settings::payload_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    #[serde(default = "PayloadStoreSettings::default_retention")]
    pub retention_days: u32,
}

impl PayloadStoreSettings {
    fn default_backend() -> String {
        "filesystem".to_owned()
    }
    fn default_retention() -> u32 {
        90
    }
}

impl Settings {
    /// The pipeline in one line, for people: its source (and input file)
    /// and its sinks, e.g. `csv input.csv -> high, low`.
    pub fn label(&self) -> String {
        let input =
            self.source.options.get("path").and_then(serde_json::Value::as_str).map(|p| format!(" {p}")).unwrap_or_default();
        let sinks: Vec<&str> = self.sinks.keys().map(String::as_str).collect();
        format!("{}{input} -> {}", self.source.plugin, sinks.join(", "))
    }

    /// The payload store's directory: `payload_store.base_path` when set;
    /// otherwise beside a SQLite Landscape file (`runs/audit.db` →
    /// `runs/audit.payloads`), so two Landscapes never share a store; for a
    /// PostgreSQL or in-memory Landscape, `.elspeth/payloads`.
    pub fn payload_dir(&self) -> std::path::PathBuf {
        match &self.payload_store.base_path {
            Some(base) => std::path::PathBuf::from(base),
            None => landscape::connection::default_payload_dir(&self.landscape.url)
                .unwrap_or_else(|| std::path::PathBuf::from(".elspeth/payloads")),
        }
    }
}

impl Default for PayloadStoreSettings {
    fn default() -> PayloadStoreSettings {
        PayloadStoreSettings { backend: "filesystem".to_owned(), base_path: None, retention_days: 90 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySettings {
    #[serde(default = "ConcurrencySettings::default_workers")]
    pub max_workers: u32,
}

impl ConcurrencySettings {
    fn default_workers() -> u32 {
        4
    }
}

impl Default for ConcurrencySettings {
    fn default() -> ConcurrencySettings {
        ConcurrencySettings { max_workers: 4 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "RateLimitSettings::default_rpm")]
    pub default_requests_per_minute: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_path: Option<String>,
    #[serde(default)]
    pub services: IndexMap<String, serde_json::Value>,
}

impl RateLimitSettings {
    fn default_rpm() -> u32 {
        60
    }
}

impl Default for RateLimitSettings {
    fn default() -> RateLimitSettings {
        RateLimitSettings { enabled: true, default_requests_per_minute: 60, persistence_path: None, services: IndexMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backpressure_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_total_exporter_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<u32>,
    #[serde(default)]
    pub exporters: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunModeSetting {
    #[default]
    Live,
    Replay,
    Verify,
}
