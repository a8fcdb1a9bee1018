//! One chat completion, audited: the request goes out through `reqwest`
//! (rustls, no redirects), and exactly one call is recorded per request —
//! success, HTTP error or transport failure — with its index taken before
//! the request was sent. OpenRouter calls are recorded as `http` (the
//! reference's shape: method, URL, fingerprinted headers, JSON body; the
//! response's status, headers without secrets, body); Azure and
//! OpenAI-compatible calls as `llm` (model, messages, temperature,
//! provider; content, model, usage, raw response). The answer is Tier-3
//! data: whatever it holds, the result is a reply, a capacity refusal, a
//! retryable failure, or a rejection the row carries to `on_error`.

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use contracts::plugin::{CallEnd, PluginContext, PluginError, ReplayError};
use contracts::{CallStatus, CallType};

use super::options::{LlmOptions, Provider};
use crate::transforms::http::{describe, parse_body, response_headers};

/// Answers larger than this are refused (a misbehaving server must not
/// exhaust memory).
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// A chat message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) role: &'static str,
    pub(crate) content: String,
}

/// What one request asks beyond the transform's fixed settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ask {
    pub(crate) messages: Vec<Message>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) response_format: Option<serde_json::Value>,
}

/// A usable answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) content: String,
    pub(crate) model: String,
    pub(crate) usage: serde_json::Map<String, serde_json::Value>,
    pub(crate) finish_reason: Option<String>,
}

/// How a request ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    Reply(Reply),
    /// 429, 503 or 529: slow down and ask again.
    Capacity {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// A server error or a network failure: worth a new attempt.
    Retryable(String),
    /// The row cannot get an answer: an error result with this reason.
    Rejected {
        reason: &'static str,
        details: serde_json::Value,
    },
    /// Replay mode had no recorded answer: the row fails.
    Replay(ReplayError),
}

/// The HTTP side of one transform.
pub(crate) struct Client {
    provider: Provider,
    url: String,
    model: String,
    temperature: f64,
    headers: Vec<(String, String)>,
    timeout: Duration,
    pool: usize,
    http: OnceLock<Result<reqwest::blocking::Client, String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("provider", &self.provider).field("url", &self.url).finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(options: &LlmOptions) -> Client {
        let model = options.model.clone().unwrap_or_default();
        let key = options.api_key.clone();
        let (url, headers) = match options.provider {
            Provider::Azure => {
                let endpoint = options.endpoint.as_deref().unwrap_or_default().trim_end_matches('/');
                let version = options.api_version.as_deref().unwrap_or("2024-10-21");
                let url = format!("{endpoint}/openai/deployments/{model}/chat/completions?api-version={version}");
                (url, vec![("api-key".to_owned(), key.unwrap_or_default()), json_content()])
            }
            Provider::Openrouter | Provider::Openai => {
                let base = options.base_url.as_deref().unwrap_or_default().trim_end_matches('/');
                let mut headers = Vec::new();
                if let Some(key) = key {
                    headers.push(("Authorization".to_owned(), format!("Bearer {key}")));
                }
                if options.provider == Provider::Openrouter {
                    headers.push(("HTTP-Referer".to_owned(), "https://github.com/elspeth-rapid".to_owned()));
                }
                headers.push(json_content());
                (format!("{base}/chat/completions"), headers)
            }
        };
        Client {
            provider: options.provider,
            url,
            model,
            temperature: options.temperature,
            headers,
            timeout: Duration::from_secs_f64(options.timeout_seconds.unwrap_or(60.0)),
            pool: options.pool_size,
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<&reqwest::blocking::Client, PluginError> {
        let built = self.http.get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(self.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(self.pool.max(1))
                .build()
                .map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| PluginError::Config(format!("cannot build the HTTP client: {e}")))
    }

    /// The request body sent over the wire.
    fn body(&self, ask: &Ask) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), self.model.clone().into());
        body.insert("messages".into(), messages_json(&ask.messages));
        body.insert("temperature".into(), self.temperature.into());
        if let Some(max) = ask.max_tokens {
            body.insert("max_tokens".into(), max.into());
        }
        if let Some(format) = &ask.response_format {
            body.insert("response_format".into(), format.clone());
        }
        serde_json::Value::Object(body)
    }

    /// The request as the audit trail records it (the reference's shapes).
    fn audit_request(&self, ctx: &PluginContext, ask: &Ask, body: &serde_json::Value) -> Result<serde_json::Value, PluginError> {
        match self.provider {
            Provider::Openrouter => Ok(serde_json::json!({
                "method": "POST", "url": self.url, "headers": ctx.audit_headers(&self.headers)?, "json": body,
            })),
            Provider::Azure | Provider::Openai => {
                let mut request = serde_json::Map::new();
                request.insert("model".into(), self.model.clone().into());
                request.insert("messages".into(), messages_json(&ask.messages));
                request.insert("temperature".into(), self.temperature.into());
                request.insert("provider".into(), if self.provider == Provider::Azure { "azure" } else { "openai" }.into());
                if let Some(max) = ask.max_tokens {
                    request.insert("max_tokens".into(), max.into());
                }
                // The reference's Azure path always passes response_format (null
                // when unset); its hash depends on it, so it is kept.
                if self.provider == Provider::Azure || ask.response_format.is_some() {
                    request.insert("response_format".into(), ask.response_format.clone().unwrap_or(serde_json::Value::Null));
                }
                Ok(serde_json::Value::Object(request))
            }
        }
    }

    fn call_type(&self) -> CallType {
        match self.provider {
            Provider::Openrouter => CallType::Http,
            Provider::Azure | Provider::Openai => CallType::Llm,
        }
    }

    /// Sends one request and records it as one call; in replay mode the
    /// source run's answer is recorded and used instead. Either way the
    /// outcome is read from the call as recorded, so a replay decides
    /// exactly as the recorded run did.
    pub(crate) fn chat(&self, ctx: &mut PluginContext, ask: &Ask) -> Result<Outcome, PluginError> {
        let body = self.body(ask);
        let request = self.audit_request(ctx, ask, &body)?;
        let ticket = ctx.begin_call(Some(self.provider.service()));
        if let Some(answer) = ctx.replay(&ticket, self.call_type(), &request) {
            return Ok(match answer {
                Ok(recording) => self.interpret(recording.response.as_ref(), recording.error.as_ref()),
                Err(error) => Outcome::Replay(error),
            });
        }
        let payload = serde_json::to_vec(&body).map_err(|e| PluginError::Contract(e.to_string()))?;
        let mut builder = self.http()?.post(&self.url).body(payload);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let received = builder.send().map_err(|e| (e.is_timeout(), describe(&e))).and_then(|response| {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let mut bytes = Vec::new();
            match response.take(MAX_BODY + 1).read_to_end(&mut bytes) {
                Ok(_) => Ok((status, headers, bytes)),
                Err(e) => Err((e.kind() == std::io::ErrorKind::TimedOut, format!("reading the response: {e}"))),
            }
        });
        let (status, response, error) = match received {
            Ok((status, headers, bytes)) => self.record_answer(status, &headers, &bytes),
            Err((timeout, message)) => {
                let kind = if timeout { "TimeoutError" } else { "ConnectionError" };
                (CallStatus::Error, None, Some(self.error_json(kind, &message, true)))
            }
        };
        let outcome = self.interpret(response.as_ref(), error.as_ref());
        ctx.end_call(ticket, CallEnd { call_type: self.call_type(), status, request, response, error });
        Ok(outcome)
    }

    fn error_json(&self, kind: &str, message: &str, retryable: bool) -> serde_json::Value {
        match self.provider {
            Provider::Openrouter => serde_json::json!({"type": kind, "message": message}),
            Provider::Azure | Provider::Openai => serde_json::json!({"type": kind, "message": message, "retryable": retryable}),
        }
    }

    /// What the call records of an answer: its status, response and error
    /// (the reference's shapes; see the module comment).
    fn record_answer(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        bytes: &[u8],
    ) -> (CallStatus, Option<serde_json::Value>, Option<serde_json::Value>) {
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let body = parse_body(content_type, bytes);
        match self.provider {
            Provider::Openrouter => {
                let response = serde_json::json!({
                    "status_code": status, "headers": response_headers(headers), "body_size": bytes.len(), "body": body,
                });
                if (200..300).contains(&status) {
                    (CallStatus::Success, Some(response), None)
                } else {
                    let error =
                        serde_json::json!({"type": "HTTPError", "message": format!("HTTP {status}"), "status_code": status});
                    (CallStatus::Error, Some(response), Some(error))
                }
            }
            Provider::Azure | Provider::Openai => {
                let retry_after = retry_after(headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()));
                self.record_llm_outcome(classify(status, retry_after, &body, bytes.len()), body, bytes)
            }
        }
    }

    /// An `llm` call records a reply as {content, model, usage,
    /// raw_response} and a failure as an error only, typed so that
    /// [`Client::interpret`] reads back the same outcome.
    fn record_llm_outcome(
        &self,
        outcome: Outcome,
        body: serde_json::Value,
        bytes: &[u8],
    ) -> (CallStatus, Option<serde_json::Value>, Option<serde_json::Value>) {
        match outcome {
            Outcome::Reply(reply) => {
                let response = serde_json::json!({
                    "content": reply.content, "model": reply.model, "usage": reply.usage, "raw_response": body,
                });
                (CallStatus::Success, Some(response), None)
            }
            Outcome::Capacity { status, retry_after } => {
                let mut error = self.error_json("RateLimitError", &format!("HTTP {status}: {}", excerpt(bytes)), true);
                error["status_code"] = status.into();
                if let Some(wait) = retry_after {
                    error["retry_after_seconds"] = wait.as_secs_f64().into();
                }
                (CallStatus::Error, None, Some(error))
            }
            Outcome::Retryable(message) => (CallStatus::Error, None, Some(self.error_json("ServerError", &message, true))),
            Outcome::Rejected { reason, details } => {
                let message = details.get("error").and_then(serde_json::Value::as_str).unwrap_or(reason);
                let kind = match reason {
                    "content_filtered" => "ContentPolicyError",
                    "context_length_exceeded" => "ContextLengthError",
                    _ => "LLMClientError",
                };
                (CallStatus::Error, None, Some(self.error_json(kind, message, false)))
            }
            Outcome::Replay(error) => (CallStatus::Error, None, Some(self.error_json("ReplayError", &error.to_string(), false))),
        }
    }

    /// The outcome of a call as recorded (live or replayed).
    pub(crate) fn interpret(&self, response: Option<&serde_json::Value>, error: Option<&serde_json::Value>) -> Outcome {
        let field = |key: &str| error.and_then(|e| e.get(key));
        let text = |key: &str| field(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        match (self.provider, response) {
            (Provider::Openrouter, Some(response)) => {
                let status = response.get("status_code").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let header = response.get("headers").and_then(|h| h.get("retry-after")).and_then(serde_json::Value::as_str);
                let size = response.get("body_size").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let body = response.get("body").cloned().unwrap_or(serde_json::Value::Null);
                classify(
                    u16::try_from(status).unwrap_or(0),
                    retry_after(header),
                    &body,
                    usize::try_from(size).unwrap_or(usize::MAX),
                )
            }
            (Provider::Azure | Provider::Openai, Some(response)) => {
                reply(response.get("raw_response").unwrap_or(&serde_json::Value::Null))
            }
            (Provider::Openrouter | Provider::Azure | Provider::Openai, None) => {
                let kind = text("type");
                let message = text("message");
                match kind.as_str() {
                    "RateLimitError" => Outcome::Capacity {
                        status: field("status_code")
                            .and_then(serde_json::Value::as_u64)
                            .and_then(|s| u16::try_from(s).ok())
                            .unwrap_or(429),
                        retry_after: field("retry_after_seconds")
                            .and_then(serde_json::Value::as_f64)
                            .map(Duration::from_secs_f64),
                    },
                    "ServerError" => Outcome::Retryable(message),
                    "TimeoutError" | "ConnectionError" => Outcome::Retryable(format!("{kind}: {message}")),
                    "ContentPolicyError" => rejected("content_filtered", message),
                    "ContextLengthError" => rejected("context_length_exceeded", message),
                    _ => rejected("llm_call_failed", message),
                }
            }
        }
    }
}

fn json_content() -> (String, String) {
    ("Content-Type".to_owned(), "application/json".to_owned())
}

fn messages_json(messages: &[Message]) -> serde_json::Value {
    messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect()
}

fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}

fn rejected(reason: &'static str, error: impl Into<String>) -> Outcome {
    Outcome::Rejected { reason, details: serde_json::json!({"error": error.into()}) }
}

/// A `Retry-After` header's seconds (the HTTP-date form is ignored).
fn retry_after(header: Option<&str>) -> Option<Duration> {
    header
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// What an answer means for the row.
fn classify(status: u16, retry_after: Option<Duration>, body: &serde_json::Value, size: usize) -> Outcome {
    if u64::try_from(size).unwrap_or(u64::MAX) > MAX_BODY {
        return rejected("llm_call_failed", format!("the response is larger than {MAX_BODY} bytes"));
    }
    if matches!(status, 429 | 503 | 529) {
        return Outcome::Capacity { status, retry_after };
    }
    if status >= 500 {
        return Outcome::Retryable(format!("HTTP {status}"));
    }
    if !(200..300).contains(&status) {
        let text = body.to_string().to_lowercase();
        if ["context_length_exceeded", "context length", "maximum context"].iter().any(|p| text.contains(p)) {
            return rejected("context_length_exceeded", format!("HTTP {status}: the prompt is too long for the model"));
        }
        return rejected("llm_call_failed", format!("HTTP {status}: {}", excerpt(body.to_string().as_bytes())));
    }
    reply(body)
}

/// A 2xx body as a reply, checked field by field.
fn reply(body: &serde_json::Value) -> Outcome {
    let serde_json::Value::Object(object) = body else {
        return rejected("llm_call_failed", "the response is not a JSON object");
    };
    if object.get("_json_parse_failed").is_some() {
        return rejected("llm_call_failed", "the response is not valid JSON");
    }
    let Some(choice) = object.get("choices").and_then(serde_json::Value::as_array).and_then(|c| c.first()) else {
        return rejected("llm_call_failed", "the response has no choices");
    };
    let finish_reason = choice.get("finish_reason").and_then(serde_json::Value::as_str).map(str::to_owned);
    let content = match choice.get("message").and_then(|m| m.get("content")) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Null) | None if finish_reason.as_deref() == Some("tool_calls") => String::new(),
        Some(serde_json::Value::Null) | None => {
            return rejected("content_filtered", "the model returned no content (likely filtered by the provider)");
        }
        Some(_) => return rejected("llm_call_failed", "choices[0].message.content is not a string"),
    };
    let model = object.get("model").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let mut usage = serde_json::Map::new();
    if let Some(reported) = object.get("usage") {
        for key in ["prompt_tokens", "completion_tokens"] {
            if let Some(count) = reported.get(key).and_then(serde_json::Value::as_u64) {
                usage.insert(key.to_owned(), count.into());
            }
        }
    }
    Outcome::Reply(Reply { content, model, usage, finish_reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(provider: &str) -> Client {
        let mut options: LlmOptions = serde_json::from_value(serde_json::json!({
            "provider": provider, "model": "m", "api_key": "k", "template": "t", "schema": {"mode": "observed"},
            "deployment_name": if provider == "azure" { Some("d") } else { None },
            "endpoint": if provider == "azure" { Some("http://127.0.0.1:9") } else { None },
            "base_url": if provider == "azure" { None } else { Some("http://127.0.0.1:9/v1") },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        options.check().unwrap_or_else(|e| panic!("{e}"));
        Client::new(&options)
    }

    /// What a replay reads back from a recorded call is what the live run
    /// decided, for every kind of answer and every call shape.
    #[test]
    fn a_recorded_answer_reads_back_as_the_same_outcome() {
        let ok = br#"{"model": "m-1", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}}"#;
        let answers: [(u16, &[u8], Option<&str>); 8] = [
            (200, ok, None),
            (429, br#"{"error": "slow down"}"#, Some("2")),
            (529, b"{}", None),
            (503, b"{}", Some("0")),
            (500, b"{}", None),
            (400, br#"{"error": {"code": "context_length_exceeded"}}"#, None),
            (200, br#"{"choices": []}"#, None),
            (200, br#"{"choices": [{"message": {"content": null}}]}"#, None),
        ];
        for provider in ["openrouter", "azure", "openai"] {
            let client = client(provider);
            for (status, bytes, retry) in answers {
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/json"));
                if let Some(seconds) = retry {
                    headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static(seconds));
                }
                let live = classify(status, retry_after(retry), &parse_body("application/json", bytes), bytes.len());
                let (_, response, error) = client.record_answer(status, &headers, bytes);
                let replayed = client.interpret(response.as_ref(), error.as_ref());
                assert_eq!(replayed, live, "{provider} {status} {}", String::from_utf8_lossy(bytes));
            }
        }
    }
}
