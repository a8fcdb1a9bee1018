//! `llm`: asks a language model about each row and adds its answer.
//!
//! Single query: the template renders a prompt from `row` (and `lookup`);
//! the answer's content, usage and model become `<response_field>`,
//! `<response_field>_usage` and `<response_field>_model`, and the audit
//! hashes (template, variables, lookup) go to the node state's success
//! reason. Multi-query (`queries`): each query renders its own prompt from
//! named input fields, and its JSON answer is checked field by field
//! against `output_fields`; any failing query fails the whole row.
//!
//! The answer is untrusted: malformed, truncated, filtered or mistyped
//! answers are error results (to `on_error`, recorded in
//! `transform_errors`), never a crash. Capacity refusals (429/503/529) are
//! retried within the attempt after the node's AIMD back-off delay (or
//! `Retry-After`, if longer), for up to `max_capacity_retry_seconds`; server and
//! network failures end the attempt as transient, for the engine's `retry`.
//! Rows run `pool_size` at a time (the engine's pool keeps source order).

mod client;
mod options;
mod template;
mod throttle;

use std::time::{Duration, Instant};

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{sha256_hex, stable_hash, stable_hash_json, Determinism, Row, Value};

use client::{Ask, Client, Message, Outcome, Reply};
use options::{LlmOptions, OutputField, OutputType, QuerySpec, ResponseFormat};
use template::Templates;
use throttle::Throttle;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "llm", version: "1.0.0", determinism: Determinism::NonDeterministic };

/// The main template's name.
const MAIN: &str = "template";

pub(crate) struct Llm {
    options: LlmOptions,
    queries: Option<Vec<QuerySpec>>,
    templates: Templates,
    client: Client,
    throttle: Throttle,
    lookup: serde_json::Value,
    template_hash: String,
    lookup_hash: Option<String>,
}

impl Llm {
    pub(crate) fn new(options: &Options) -> Result<Llm, PluginError> {
        let mut options: LlmOptions = crate::options::parse(options)?;
        options.check()?;
        crate::options::schema(&options.schema)?;
        let queries = options.queries()?;
        let mut templates = Templates::new();
        templates.add(MAIN, &options.template)?;
        if options.required_input_fields.is_none() && templates.reads_row(MAIN) {
            return Err(PluginError::Config(
                "the template reads row fields: list them in required_input_fields (or give [] to opt out)".to_owned(),
            ));
        }
        for query in queries.iter().flatten() {
            if let Some(text) = &query.template {
                templates.add(&query.name, text)?;
            }
        }
        let lookup = options.lookup.clone().unwrap_or_else(|| serde_json::json!({}));
        let lookup_hash =
            options.lookup.as_ref().map(stable_hash_json).transpose().map_err(|e| PluginError::Config(format!("lookup: {e}")))?;
        let throttle = Throttle::new(
            options.min_dispatch_delay_ms,
            options.max_dispatch_delay_ms,
            options.backoff_multiplier,
            options.recovery_step_ms,
        );
        Ok(Llm {
            client: Client::new(&options),
            template_hash: sha256_hex(options.template.as_bytes()),
            lookup_hash: lookup_hash.map(|h| h.as_str().to_owned()),
            queries,
            templates,
            throttle,
            lookup,
            options,
        })
    }

    fn messages(&self, prompt: String) -> Vec<Message> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.options.system_prompt {
            messages.push(Message { role: "system", content: system.clone() });
        }
        messages.push(Message { role: "user", content: prompt });
        messages
    }

    /// Asks until answered, refused for good, or out of capacity time.
    /// `Err(Transient)` hands the row to the engine's retry.
    fn ask(&self, ctx: &mut PluginContext, ask: &Ask) -> Result<Result<Reply, TransformResult>, PluginError> {
        let started = Instant::now();
        let limit = Duration::from_secs_f64(self.options.max_capacity_retry_seconds);
        let replaying = ctx.replaying();
        loop {
            if !replaying {
                self.throttle.wait_turn();
            }
            match self.client.chat(ctx, ask)? {
                Outcome::Reply(reply) => {
                    self.throttle.on_success();
                    return Ok(Ok(reply));
                }
                Outcome::Capacity { .. } if replaying => {}
                Outcome::Capacity { status, retry_after } => {
                    let gap = self.throttle.on_capacity();
                    if started.elapsed() >= limit {
                        return Err(PluginError::Transient(format!(
                            "HTTP {status}: still refused after {:.0} s of capacity retries",
                            limit.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(retry_after.map_or(gap, |wait| wait.max(gap)));
                }
                Outcome::Retryable(message) => return Err(PluginError::Transient(message)),
                Outcome::Rejected { reason, details } => return Ok(Err(super::error_result(reason, details))),
                Outcome::Replay(error) => return Ok(Err(TransformResult::Error { reason: error.reason() })),
            }
        }
    }

    fn audit_metadata(&self, prefix: &str, variables_hash: &str, metadata: &mut serde_json::Map<String, serde_json::Value>) {
        let rf = &self.options.response_field;
        metadata.insert(format!("{prefix}{rf}_template_hash"), self.template_hash.clone().into());
        metadata.insert(format!("{prefix}{rf}_variables_hash"), variables_hash.into());
        metadata.insert(format!("{prefix}{rf}_template_source"), self.options.template_source.clone().into());
        metadata.insert(format!("{prefix}{rf}_lookup_hash"), self.lookup_hash.clone().into());
        metadata.insert(format!("{prefix}{rf}_lookup_source"), self.options.lookup_source.clone().into());
        metadata.insert(format!("{prefix}{rf}_system_prompt_source"), self.options.system_prompt_source.clone().into());
    }

    fn single(&self, mut row: Row, ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let rf = self.options.response_field.clone();
        check_collisions(&row, &[rf.clone(), format!("{rf}_usage"), format!("{rf}_model")])?;
        let row_json = Value::Object(row.clone());
        let variables_hash = match stable_hash(&row_json) {
            Ok(hash) => hash.as_str().to_owned(),
            Err(e) => return Ok(self.template_failed(&e.to_string())),
        };
        let prompt = match self.templates.render(MAIN, &row_json.to_json(), &self.lookup) {
            Ok(prompt) => prompt,
            Err(error) => return Ok(self.template_failed(&error)),
        };
        let ask = Ask { messages: self.messages(prompt), max_tokens: self.options.max_tokens, response_format: None };
        let reply = match self.ask(ctx, &ask)? {
            Ok(reply) => reply,
            Err(result) => return Ok(result),
        };
        if let Some(result) = finish_reason_error(reply.finish_reason.as_deref()) {
            return Ok(result);
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("model".into(), reply.model.clone().into());
        metadata.insert("finish_reason".into(), reply.finish_reason.clone().into());
        metadata.extend(reply.usage.clone());
        self.audit_metadata("", &variables_hash, &mut metadata);
        row.insert(rf.clone(), Value::String(strip_fences(&reply.content)));
        row.insert(format!("{rf}_usage"), usage_value(&reply.usage));
        row.insert(format!("{rf}_model"), Value::String(reply.model));
        let reason = serde_json::json!({"action": "enriched", "fields_added": [rf], "metadata": metadata});
        Ok(TransformResult::Row { row, success_reason: Some(reason) })
    }

    fn template_failed(&self, error: &str) -> TransformResult {
        let mut details = serde_json::json!({"error": error, "template_hash": self.template_hash});
        if let (Some(source), Some(map)) = (&self.options.template_source, details.as_object_mut()) {
            map.insert("template_file_path".into(), source.clone().into());
        }
        super::error_result("template_rendering_failed", details)
    }

    fn multi(&self, mut row: Row, queries: &[QuerySpec], ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let rf = self.options.response_field.clone();
        let produced: Vec<String> = queries
            .iter()
            .flat_map(|q| {
                let mut names: Vec<String> = q.output_fields.iter().map(|f| format!("{}_{}", q.name, f.suffix)).collect();
                names.extend([format!("{}_{rf}", q.name), format!("{}_{rf}_usage", q.name), format!("{}_{rf}_model", q.name)]);
                names
            })
            .collect();
        check_collisions(&row, &produced)?;
        let mut added = Row::new();
        let mut metadata = serde_json::Map::new();
        metadata.insert("model".into(), self.options.model.clone().into());
        let mut fields_added = Vec::new();
        for (index, query) in queries.iter().enumerate() {
            let fail = |mut result: TransformResult| {
                if let TransformResult::Error { reason } = &mut result {
                    reason.insert("failed_query_name".into(), query.name.clone().into());
                    reason.insert("discarded_successful_queries".into(), index.into());
                }
                Ok(result)
            };
            let mut context = serde_json::Map::new();
            for (variable, column) in &query.input_fields {
                let Some(value) = row.get(column) else {
                    let details =
                        serde_json::json!({"error": format!("input field {column:?} is not in the row"), "query": query.name});
                    return fail(super::error_result("template_context_failed", details));
                };
                context.insert(variable.clone(), value.to_json());
            }
            context.insert("source_row".into(), Value::Object(row.clone()).to_json());
            let context = serde_json::Value::Object(context);
            let variables_hash = stable_hash_json(&context).map_err(|e| PluginError::Contract(e.to_string()))?;
            let name = if query.template.is_some() { query.name.as_str() } else { MAIN };
            let prompt = match self.templates.render(name, &context, &self.lookup) {
                Ok(prompt) => prompt,
                Err(error) => return fail(self.template_failed(&error)),
            };
            let ask = Ask {
                messages: self.messages(prompt),
                max_tokens: query.max_tokens.or(self.options.max_tokens),
                response_format: response_format(query),
            };
            let reply = match self.ask(ctx, &ask)? {
                Ok(reply) => reply,
                Err(result) => return fail(result),
            };
            if let Some(result) = finish_reason_error(reply.finish_reason.as_deref()) {
                return fail(result);
            }
            let content = strip_fences(&reply.content);
            if !query.output_fields.is_empty() {
                match parse_outputs(&content, &query.output_fields) {
                    Ok(values) => {
                        for (suffix, value) in values {
                            let field = format!("{}_{suffix}", query.name);
                            fields_added.push(field.clone());
                            added.insert(field, value);
                        }
                    }
                    Err(result) => return fail(result),
                }
            }
            let prefix = format!("{}_", query.name);
            added.insert(format!("{prefix}{rf}"), Value::String(content));
            added.insert(format!("{prefix}{rf}_usage"), usage_value(&reply.usage));
            added.insert(format!("{prefix}{rf}_model"), Value::String(reply.model.clone()));
            fields_added.push(format!("{prefix}{rf}"));
            metadata.insert(format!("{prefix}finish_reason"), reply.finish_reason.clone().into());
            self.audit_metadata(&prefix, variables_hash.as_str(), &mut metadata);
        }
        row.extend(added);
        let reason = serde_json::json!({
            "action": "multi_query_enriched", "queries_completed": queries.len(), "fields_added": fields_added, "metadata": metadata,
        });
        Ok(TransformResult::Row { row, success_reason: Some(reason) })
    }
}

impl Transform for Llm {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn pool_size(&self) -> usize {
        self.options.pool_size
    }

    fn process(&self, row: Row, ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        match &self.queries {
            Some(queries) => self.multi(row, queries, ctx),
            None => self.single(row, ctx),
        }
    }
}

/// An output field that already exists would be overwritten: a
/// configuration error that stops the run.
fn check_collisions(row: &Row, produced: &[String]) -> Result<(), PluginError> {
    match produced.iter().find(|field| row.contains_key(field.as_str())) {
        Some(field) => Err(PluginError::Contract(format!("the llm output field {field:?} already exists in the input row"))),
        None => Ok(()),
    }
}

/// The finish-reason policy: `stop` (or none) is fine; anything else is an
/// error result.
fn finish_reason_error(finish_reason: Option<&str>) -> Option<TransformResult> {
    let reason = match finish_reason {
        None | Some("stop") => return None,
        Some("length") => "response_truncated",
        Some("content_filter") => "content_filtered",
        Some(_) => "unexpected_finish_reason",
    };
    Some(super::error_result(reason, serde_json::json!({"finish_reason": finish_reason})))
}

/// Content without a surrounding markdown code fence.
fn strip_fences(content: &str) -> String {
    let trimmed = content.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed.to_owned() };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim().to_owned()
}

fn usage_value(usage: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from_json(serde_json::Value::Object(usage.clone())).unwrap_or(Value::Null)
}

fn response_format(query: &QuerySpec) -> Option<serde_json::Value> {
    if query.output_fields.is_empty() {
        return None;
    }
    Some(match query.response_format {
        ResponseFormat::Standard => serde_json::json!({"type": "json_object"}),
        ResponseFormat::Structured => {
            let mut properties = serde_json::Map::new();
            for field in &query.output_fields {
                let schema = match field.field_type {
                    OutputType::String => serde_json::json!({"type": "string"}),
                    OutputType::Integer => serde_json::json!({"type": "integer"}),
                    OutputType::Number => serde_json::json!({"type": "number"}),
                    OutputType::Boolean => serde_json::json!({"type": "boolean"}),
                    OutputType::Enum => serde_json::json!({"type": "string", "enum": field.values}),
                };
                properties.insert(field.suffix.clone(), schema);
            }
            let required: Vec<&str> = query.output_fields.iter().map(|f| f.suffix.as_str()).collect();
            serde_json::json!({"type": "json_schema", "json_schema": {"name": format!("{}_output", query.name),
                "schema": {"type": "object", "properties": properties, "required": required}}})
        }
    })
}

/// A query's JSON answer, checked against its output fields.
fn parse_outputs(content: &str, fields: &[OutputField]) -> Result<Vec<(String, Value)>, TransformResult> {
    let preview: String = content.chars().take(500).collect();
    let parsed: serde_json::Value = serde_json::from_str(content).map_err(|e| {
        super::error_result("json_parse_failed", serde_json::json!({"error": e.to_string(), "raw_response_preview": preview}))
    })?;
    let serde_json::Value::Object(object) = parsed else {
        return Err(super::error_result("invalid_json_type", serde_json::json!({"raw_response_preview": preview})));
    };
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let Some(value) = object.get(&field.suffix) else {
            let available: Vec<&String> = object.keys().collect();
            return Err(super::error_result(
                "missing_output_field",
                serde_json::json!({"field": field.suffix, "available_fields": available}),
            ));
        };
        let fits = match field.field_type {
            OutputType::String => value.is_string(),
            OutputType::Boolean => value.is_boolean(),
            OutputType::Integer => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
            OutputType::Number => value.is_number(),
            OutputType::Enum => value.as_str().is_some_and(|s| field.values.iter().flatten().any(|v| v == s)),
        };
        let converted = if fits { Value::from_json(value.clone()).ok() } else { None };
        let Some(converted) = converted else {
            let shown: String = value.to_string().chars().take(200).collect();
            return Err(super::error_result(
                "field_type_mismatch",
                serde_json::json!({"field": field.suffix, "expected": format!("{:?}", field.field_type).to_lowercase(), "value": shown}),
            ));
        };
        values.push((field.suffix.clone(), converted));
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
