//! The fake server's configuration: the reference ChaosLLM file format
//! (`server`, `metrics`, `response`, `latency`, `error_injection`), the named
//! presets, and how a preset, a file and command-line overrides combine
//! (each later one wins, key by key).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("unknown preset {0:?}; the presets are {PRESETS:?}")]
    UnknownPreset(String),
    #[error("{0}")]
    Invalid(String),
}

/// The presets, by name.
pub const PRESETS: [&str; 5] = ["gentle", "realistic", "stress_aimd", "chaos", "silent"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub metrics: MetricsConfig,
    pub response: ResponseConfig,
    pub latency: LatencyConfig,
    pub error_injection: ErrorInjection,
    /// Seed for every random choice (latency jitter, injected errors,
    /// random responses); unset draws one from the operating system.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Accepted for compatibility; one process serves every connection.
    pub workers: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Accepted for compatibility; statistics are kept in memory and served
    /// at `/admin/stats`.
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    #[default]
    Random,
    Template,
    Echo,
    Preset,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    pub mode: ResponseMode,
    pub preset: PresetResponses,
    pub template: TemplateResponses,
    pub random: RandomResponses,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    Sequential,
    Random,
}

/// Canned responses: a JSONL file of `{"content": "..."}` lines.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresetResponses {
    pub file: Option<PathBuf>,
    pub selection: Selection,
}

/// A response body with `{{ model }}`, `{{ last_user_message }}` and
/// `{{ request_number }}` replaced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateResponses {
    pub body: String,
}

impl Default for TemplateResponses {
    fn default() -> TemplateResponses {
        TemplateResponses { body: "{\"echo\": \"{{ last_user_message }}\"}".to_owned() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomResponses {
    pub min_words: usize,
    pub max_words: usize,
}

impl Default for RandomResponses {
    fn default() -> RandomResponses {
        RandomResponses { min_words: 5, max_words: 40 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub base_ms: f64,
    pub jitter_ms: f64,
}

/// Percentages (0–100) of requests answered with each fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorInjection {
    pub rate_limit_pct: f64,
    pub capacity_529_pct: f64,
    pub service_unavailable_pct: f64,
    pub internal_error_pct: f64,
    pub bad_gateway_pct: f64,
    pub gateway_timeout_pct: f64,
    pub forbidden_pct: f64,
    pub not_found_pct: f64,
    /// Seconds sent in `Retry-After` with 429, 503 and 529 (a range).
    pub retry_after_sec: [u64; 2],
    pub timeout_pct: f64,
    /// How long a "timeout" hangs before it answers 504.
    pub timeout_sec: [f64; 2],
    pub connection_reset_pct: f64,
    pub slow_response_pct: f64,
    pub slow_response_sec: [f64; 2],
    pub invalid_json_pct: f64,
    pub truncated_pct: f64,
    pub empty_body_pct: f64,
    pub missing_fields_pct: f64,
    pub wrong_content_type_pct: f64,
    pub burst: Burst,
}

impl Default for ErrorInjection {
    fn default() -> ErrorInjection {
        ErrorInjection {
            rate_limit_pct: 0.0,
            capacity_529_pct: 0.0,
            service_unavailable_pct: 0.0,
            internal_error_pct: 0.0,
            bad_gateway_pct: 0.0,
            gateway_timeout_pct: 0.0,
            forbidden_pct: 0.0,
            not_found_pct: 0.0,
            retry_after_sec: [1, 5],
            timeout_pct: 0.0,
            timeout_sec: [30.0, 60.0],
            connection_reset_pct: 0.0,
            slow_response_pct: 0.0,
            slow_response_sec: [3.0, 10.0],
            invalid_json_pct: 0.0,
            truncated_pct: 0.0,
            empty_body_pct: 0.0,
            missing_fields_pct: 0.0,
            wrong_content_type_pct: 0.0,
            burst: Burst::default(),
        }
    }
}

/// Periodic bursts: for `duration_sec` of every `interval_sec`, the 429 and
/// 529 percentages are replaced by these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Burst {
    pub enabled: bool,
    pub interval_sec: f64,
    pub duration_sec: f64,
    pub rate_limit_pct: f64,
    pub capacity_pct: f64,
}

impl Default for Burst {
    fn default() -> Burst {
        Burst { enabled: false, interval_sec: 30.0, duration_sec: 5.0, rate_limit_pct: 50.0, capacity_pct: 0.0 }
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig { host: "127.0.0.1".to_owned(), port: 8199, workers: 1 }
    }
}

/// A preset as a partial configuration.
pub fn preset(name: &str) -> Result<serde_json::Value, ConfigError> {
    let value = match name {
        "silent" => serde_json::json!({"latency": {"base_ms": 0, "jitter_ms": 0}}),
        "gentle" => serde_json::json!({"latency": {"base_ms": 10, "jitter_ms": 5}}),
        "realistic" => serde_json::json!({
            "latency": {"base_ms": 200, "jitter_ms": 100},
            "error_injection": {"rate_limit_pct": 2.0, "capacity_529_pct": 0.5, "service_unavailable_pct": 0.5,
                                "internal_error_pct": 0.5, "timeout_pct": 0.2, "timeout_sec": [10, 20],
                                "invalid_json_pct": 0.2, "retry_after_sec": [1, 3]}
        }),
        "stress_aimd" => serde_json::json!({
            "latency": {"base_ms": 50, "jitter_ms": 10},
            "error_injection": {"rate_limit_pct": 15.0, "retry_after_sec": [0, 0]}
        }),
        "chaos" => serde_json::json!({
            "latency": {"base_ms": 50, "jitter_ms": 50},
            "error_injection": {"rate_limit_pct": 5.0, "capacity_529_pct": 3.0, "service_unavailable_pct": 2.0,
                                "internal_error_pct": 2.0, "bad_gateway_pct": 2.0, "gateway_timeout_pct": 2.0,
                                "timeout_pct": 1.0, "timeout_sec": [2, 4], "connection_reset_pct": 2.0,
                                "slow_response_pct": 2.0, "slow_response_sec": [1, 2], "invalid_json_pct": 2.0,
                                "truncated_pct": 2.0, "empty_body_pct": 1.0, "missing_fields_pct": 2.0,
                                "retry_after_sec": [1, 2],
                                "burst": {"enabled": true, "interval_sec": 30, "duration_sec": 5,
                                          "rate_limit_pct": 60, "capacity_pct": 20}}
        }),
        other => return Err(ConfigError::UnknownPreset(other.to_owned())),
    };
    Ok(value)
}

/// Reads a YAML configuration file as a partial configuration.
pub fn read_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let value: serde_json::Value = serde_norway::from_str(&text)
        .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
    Ok(if value.is_null() { serde_json::json!({}) } else { value })
}

/// Lays `over` on `base`, key by key (objects merge, anything else replaces).
pub fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

impl Config {
    /// Builds a configuration from merged partial ones, and checks it.
    pub fn from_value(value: serde_json::Value, origin: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_json::from_value(value).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let e = &self.error_injection;
        let pcts = [
            ("rate_limit_pct", e.rate_limit_pct),
            ("capacity_529_pct", e.capacity_529_pct),
            ("service_unavailable_pct", e.service_unavailable_pct),
            ("internal_error_pct", e.internal_error_pct),
            ("bad_gateway_pct", e.bad_gateway_pct),
            ("gateway_timeout_pct", e.gateway_timeout_pct),
            ("forbidden_pct", e.forbidden_pct),
            ("not_found_pct", e.not_found_pct),
            ("timeout_pct", e.timeout_pct),
            ("connection_reset_pct", e.connection_reset_pct),
            ("slow_response_pct", e.slow_response_pct),
            ("invalid_json_pct", e.invalid_json_pct),
            ("truncated_pct", e.truncated_pct),
            ("empty_body_pct", e.empty_body_pct),
            ("missing_fields_pct", e.missing_fields_pct),
            ("wrong_content_type_pct", e.wrong_content_type_pct),
            ("burst.rate_limit_pct", e.burst.rate_limit_pct),
            ("burst.capacity_pct", e.burst.capacity_pct),
        ];
        for (name, pct) in pcts {
            if !(0.0..=100.0).contains(&pct) {
                return Err(ConfigError::Invalid(format!("error_injection.{name} must be between 0 and 100, not {pct}")));
            }
        }
        if self.latency.base_ms < 0.0 || self.latency.jitter_ms < 0.0 {
            return Err(ConfigError::Invalid("latency.base_ms and latency.jitter_ms must not be negative".to_owned()));
        }
        if self.response.mode == ResponseMode::Preset && self.response.preset.file.is_none() {
            return Err(ConfigError::Invalid("response.mode preset needs response.preset.file (a JSONL file)".to_owned()));
        }
        if self.response.random.min_words > self.response.random.max_words {
            return Err(ConfigError::Invalid("response.random.min_words must not exceed max_words".to_owned()));
        }
        Ok(())
    }
}
