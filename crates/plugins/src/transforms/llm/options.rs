//! The `llm` transform's options (the reference's names and defaults, plus
//! the `openai` provider) and the checks made when a pipeline is built.

use serde::Deserialize;

use contracts::plugin::PluginError;

/// Who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Provider {
    /// Azure OpenAI: `{endpoint}/openai/deployments/{model}/chat/completions`.
    Azure,
    /// OpenRouter (audited as `http` calls, as the reference does).
    Openrouter,
    /// Any OpenAI-compatible `base_url`: OpenAI, vLLM, Ollama, llama.cpp.
    Openai,
}

impl Provider {
    /// The rate-limit service its calls count against.
    pub(crate) fn service(self) -> &'static str {
        match self {
            Provider::Azure => "azure_openai",
            Provider::Openrouter => "openrouter",
            Provider::Openai => "openai",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResponseFormat {
    #[default]
    Standard,
    Structured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutputType {
    String,
    Integer,
    Number,
    Boolean,
    Enum,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutputField {
    pub(crate) suffix: String,
    #[serde(rename = "type")]
    pub(crate) field_type: OutputType,
    #[serde(default)]
    pub(crate) values: Option<Vec<String>>,
}

/// One query of a multi-query transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuerySpec {
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) input_fields: indexmap::IndexMap<String, String>,
    #[serde(default)]
    pub(crate) response_format: ResponseFormat,
    #[serde(default)]
    pub(crate) output_fields: Vec<OutputField>,
    #[serde(default)]
    pub(crate) template: Option<String>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
}

fn default_response_field() -> String {
    "llm_response".to_owned()
}
fn default_pool_size() -> usize {
    1
}
fn default_max_dispatch() -> u64 {
    5000
}
fn default_backoff() -> f64 {
    2.0
}
fn default_recovery() -> u64 {
    50
}
fn default_max_capacity_retry() -> f64 {
    3600.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LlmOptions {
    pub(crate) provider: Provider,
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) template: String,
    #[serde(default)]
    pub(crate) system_prompt: Option<String>,
    #[serde(default)]
    pub(crate) temperature: f64,
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
    #[serde(default = "default_response_field")]
    pub(crate) response_field: String,
    #[serde(default)]
    pub(crate) queries: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) lookup: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) template_source: Option<String>,
    #[serde(default)]
    pub(crate) lookup_source: Option<String>,
    #[serde(default)]
    pub(crate) system_prompt_source: Option<String>,
    #[serde(default = "default_pool_size")]
    pub(crate) pool_size: usize,
    #[serde(default)]
    pub(crate) min_dispatch_delay_ms: u64,
    #[serde(default = "default_max_dispatch")]
    pub(crate) max_dispatch_delay_ms: u64,
    #[serde(default = "default_backoff")]
    pub(crate) backoff_multiplier: f64,
    #[serde(default = "default_recovery")]
    pub(crate) recovery_step_ms: u64,
    #[serde(default = "default_max_capacity_retry")]
    pub(crate) max_capacity_retry_seconds: f64,
    pub(crate) schema: serde_json::Value,
    #[serde(default)]
    pub(crate) required_input_fields: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) tracing: Option<serde_json::Value>,
    // Azure.
    #[serde(default)]
    pub(crate) deployment_name: Option<String>,
    #[serde(default)]
    pub(crate) endpoint: Option<String>,
    #[serde(default)]
    pub(crate) api_version: Option<String>,
    // Azure, OpenRouter and OpenAI-compatible.
    #[serde(default)]
    pub(crate) api_key: Option<String>,
    // OpenRouter and OpenAI-compatible.
    #[serde(default)]
    pub(crate) base_url: Option<String>,
    #[serde(default)]
    pub(crate) timeout_seconds: Option<f64>,
}

fn config(message: impl Into<String>) -> PluginError {
    PluginError::Config(message.into())
}

impl LlmOptions {
    /// The checks serde cannot make: per-provider keys, ranges, the pool.
    pub(crate) fn check(&mut self) -> Result<(), PluginError> {
        let provider = self.provider;
        let only = |key: &str, present: bool, allowed: &[Provider]| {
            if present && !allowed.contains(&provider) {
                return Err(config(format!("{key} is not an option of provider {provider:?}").to_lowercase()));
            }
            Ok(())
        };
        only("deployment_name", self.deployment_name.is_some(), &[Provider::Azure])?;
        only("endpoint", self.endpoint.is_some(), &[Provider::Azure])?;
        only("api_version", self.api_version.is_some(), &[Provider::Azure])?;
        only("base_url", self.base_url.is_some(), &[Provider::Openrouter, Provider::Openai])?;
        only("timeout_seconds", self.timeout_seconds.is_some(), &[Provider::Openrouter, Provider::Openai])?;
        match provider {
            Provider::Azure => {
                let deployment = self.deployment_name.clone().ok_or_else(|| config("provider azure needs deployment_name"))?;
                if self.endpoint.is_none() || self.api_key.is_none() {
                    return Err(config("provider azure needs endpoint and api_key"));
                }
                self.model.get_or_insert(deployment);
                self.api_version.get_or_insert_with(|| "2024-10-21".to_owned());
            }
            Provider::Openrouter => {
                if self.model.is_none() || self.api_key.is_none() {
                    return Err(config("provider openrouter needs model and api_key"));
                }
                self.base_url.get_or_insert_with(|| "https://openrouter.ai/api/v1".to_owned());
            }
            Provider::Openai => {
                if self.model.is_none() || self.base_url.is_none() {
                    return Err(config("provider openai needs model and base_url (any OpenAI-compatible server)"));
                }
            }
        }
        for url in [&self.base_url, &self.endpoint].into_iter().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(config(format!("{url:?} is not an http(s) URL")));
            }
        }
        if let Some(timeout) = self.timeout_seconds {
            if !(timeout.is_finite() && timeout > 0.0) {
                return Err(config("timeout_seconds must be greater than 0"));
            }
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(config("temperature must be between 0 and 2"));
        }
        if self.max_tokens == Some(0) {
            return Err(config("max_tokens must be greater than 0"));
        }
        if self.template.trim().is_empty() {
            return Err(config("template must not be empty"));
        }
        if !is_identifier(&self.response_field) {
            return Err(config(format!("response_field {:?} must be an identifier", self.response_field)));
        }
        self.check_pool()?;
        match &self.tracing {
            None => {}
            Some(tracing) if tracing.get("provider").and_then(serde_json::Value::as_str) == Some("none") => {}
            Some(_) => return Err(config("tracing: only `provider: none` is supported (the audit trail records every call)")),
        }
        Ok(())
    }

    fn check_pool(&self) -> Result<(), PluginError> {
        if self.pool_size == 0 {
            return Err(config("pool_size must be at least 1"));
        }
        if self.max_dispatch_delay_ms == 0 {
            return Err(config("max_dispatch_delay_ms must be greater than 0"));
        }
        if self.min_dispatch_delay_ms > self.max_dispatch_delay_ms {
            return Err(config("min_dispatch_delay_ms must not exceed max_dispatch_delay_ms"));
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier > 1.0) {
            return Err(config("backoff_multiplier must be greater than 1"));
        }
        if self.min_dispatch_delay_ms == 0 && self.recovery_step_ms == 0 {
            return Err(config("min_dispatch_delay_ms and recovery_step_ms may not both be 0"));
        }
        if !(self.max_capacity_retry_seconds.is_finite() && self.max_capacity_retry_seconds > 0.0) {
            return Err(config("max_capacity_retry_seconds must be greater than 0"));
        }
        Ok(())
    }

    /// The queries of a multi-query transform (a list, or a map by name),
    /// checked; `None` for a single query.
    pub(crate) fn queries(&self) -> Result<Option<Vec<QuerySpec>>, PluginError> {
        let Some(queries) = &self.queries else { return Ok(None) };
        let parse = |value: &serde_json::Value, at: &str| {
            serde_json::from_value::<QuerySpec>(value.clone()).map_err(|e| config(format!("queries.{at}: {e}")))
        };
        let mut specs = Vec::new();
        match queries {
            serde_json::Value::Object(map) => {
                for (name, value) in map {
                    let mut spec = parse(value, name)?;
                    if spec.name.is_empty() {
                        spec.name.clone_from(name);
                    }
                    specs.push(spec);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    specs.push(parse(value, &i.to_string())?);
                }
            }
            serde_json::Value::Null
            | serde_json::Value::Bool(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::String(_) => {
                return Err(config("queries must be a list of queries or a map of them by name"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut outputs = std::collections::BTreeSet::new();
        for spec in &specs {
            if spec.name.is_empty() || !is_identifier(&spec.name) {
                return Err(config(format!("queries: {:?} is not a valid query name", spec.name)));
            }
            if !names.insert(spec.name.clone()) {
                return Err(config(format!("queries: the name {:?} is used twice", spec.name)));
            }
            if spec.input_fields.is_empty() {
                return Err(config(format!("queries.{}: input_fields must not be empty", spec.name)));
            }
            for field in &spec.output_fields {
                match (field.field_type, &field.values) {
                    (OutputType::Enum, None) => {
                        return Err(config(format!("queries.{}.{}: an enum needs values", spec.name, field.suffix)));
                    }
                    (OutputType::String | OutputType::Integer | OutputType::Number | OutputType::Boolean, Some(_)) => {
                        return Err(config(format!("queries.{}.{}: only an enum takes values", spec.name, field.suffix)));
                    }
                    (OutputType::Enum, Some(_))
                    | (OutputType::String | OutputType::Integer | OutputType::Number | OutputType::Boolean, None) => {}
                }
                if !outputs.insert(format!("{}_{}", spec.name, field.suffix)) {
                    return Err(config(format!("queries: output {}_{} is produced twice", spec.name, field.suffix)));
                }
            }
            if spec.template.as_deref().unwrap_or(&self.template).contains("input_") && has_positional(spec) {
                return Err(config(format!("queries.{}: use named input_fields, not positional {{{{ input_N }}}}", spec.name)));
            }
        }
        Ok(Some(specs))
    }
}

/// A template that uses `{{ input_1 }}` directly (not `row.input_1`).
fn has_positional(spec: &QuerySpec) -> bool {
    spec.template.as_deref().is_some_and(|t| {
        t.match_indices("input_").any(|(at, _)| {
            let before = t[..at].trim_end();
            !before.ends_with("row.") && before.ends_with("{{")
        })
    })
}

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
