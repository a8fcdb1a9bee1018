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

use base64::Engine as _;
use contracts::plugin::{CallEnd, PluginContext, PluginError};
use contracts::{CallStatus, CallType};

use super::options::{LlmOptions, Provider};

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
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) content: String,
    pub(crate) model: String,
    pub(crate) usage: serde_json::Map<String, serde_json::Value>,
    pub(crate) finish_reason: Option<String>,
}

/// How a request ended.
#[derive(Debug)]
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

    /// Sends one request and records it as one call.
    pub(crate) fn chat(&self, ctx: &mut PluginContext, ask: &Ask) -> Result<Outcome, PluginError> {
        let body = self.body(ask);
        let request = self.audit_request(ctx, ask, &body)?;
        let payload = serde_json::to_vec(&body).map_err(|e| PluginError::Contract(e.to_string()))?;
        let http = self.http()?;
        let ticket = ctx.begin_call(Some(self.provider.service()));
        let mut builder = http.post(&self.url).body(payload);
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
        let (status, headers, bytes) = match received {
            Ok(parts) => parts,
            Err((timeout, message)) => {
                let kind = if timeout { "TimeoutError" } else { "ConnectionError" };
                let error_json = self.error_json(kind, &message, true, None);
                let end = CallEnd {
                    call_type: self.call_type(),
                    status: CallStatus::Error,
                    request,
                    response: None,
                    error: Some(error_json),
                };
                ctx.end_call(ticket, end);
                return Ok(Outcome::Retryable(format!("{kind}: {message}")));
            }
        };
        let (outcome, response, error) = self.read(status, &headers, &bytes);
        let status = if error.is_none() { CallStatus::Success } else { CallStatus::Error };
        ctx.end_call(ticket, CallEnd { call_type: self.call_type(), status, request, response, error });
        Ok(outcome)
    }

    fn error_json(&self, kind: &str, message: &str, retryable: bool, status: Option<u16>) -> serde_json::Value {
        match self.provider {
            Provider::Openrouter => match status {
                Some(code) => serde_json::json!({"type": kind, "message": message, "status_code": code}),
                None => serde_json::json!({"type": kind, "message": message}),
            },
            Provider::Azure | Provider::Openai => serde_json::json!({"type": kind, "message": message, "retryable": retryable}),
        }
    }

    /// Classifies an answer; returns the outcome and what the call records.
    fn read(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        bytes: &[u8],
    ) -> (Outcome, Option<serde_json::Value>, Option<serde_json::Value>) {
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let body = parse_body(content_type, bytes);
        let outcome = classify(status, headers, &body, bytes.len());
        match self.provider {
            Provider::Openrouter => {
                let response = serde_json::json!({
                    "status_code": status, "headers": response_headers(headers), "body_size": bytes.len(), "body": body,
                });
                let error = (!(200..300).contains(&status))
                    .then(|| self.error_json("HTTPError", &format!("HTTP {status}"), false, Some(status)));
                (outcome, Some(response), error)
            }
            Provider::Azure | Provider::Openai => match &outcome {
                Outcome::Reply(reply) => {
                    let response = serde_json::json!({
                        "content": reply.content, "model": reply.model, "usage": reply.usage, "raw_response": body,
                    });
                    (outcome, Some(response), None)
                }
                Outcome::Capacity { status, .. } => {
                    let error = self.error_json("RateLimitError", &format!("HTTP {status}: {}", excerpt(bytes)), true, None);
                    (outcome, None, Some(error))
                }
                Outcome::Retryable(message) => {
                    let error = self.error_json("ServerError", message, true, None);
                    (outcome, None, Some(error))
                }
                Outcome::Rejected { reason, details } => {
                    let message = details.get("error").and_then(serde_json::Value::as_str).unwrap_or(reason);
                    let kind = if *reason == "content_filtered" { "ContentPolicyError" } else { "LLMClientError" };
                    let error = self.error_json(kind, message, false, None);
                    (outcome, None, Some(error))
                }
            },
        }
    }
}

fn json_content() -> (String, String) {
    ("Content-Type".to_owned(), "application/json".to_owned())
}

fn messages_json(messages: &[Message]) -> serde_json::Value {
    messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect()
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The response body as the reference records it: parsed JSON (strictly),
/// text, or base64 for anything else.
fn parse_body(content_type: &str, bytes: &[u8]) -> serde_json::Value {
    if content_type.contains("application/json") {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => value,
            Err(error) => {
                let text = String::from_utf8_lossy(bytes);
                let raw: String = text.chars().take(10_000).collect();
                serde_json::json!({"_json_parse_failed": true, "_error": error.to_string(), "_raw_text": raw})
            }
        }
    } else if content_type.starts_with("text/") || content_type.contains("xml") || content_type.contains("form-urlencoded") {
        serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
    } else {
        serde_json::json!({"_binary": base64::engine::general_purpose::STANDARD.encode(bytes)})
    }
}

/// Response headers without the sensitive ones.
fn response_headers(headers: &reqwest::header::HeaderMap) -> serde_json::Value {
    let mut copy = serde_json::Map::new();
    for (name, value) in headers {
        if contracts::secrets::is_sensitive_header(name.as_str()) {
            continue;
        }
        copy.insert(name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned().into());
    }
    serde_json::Value::Object(copy)
}

fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}

fn rejected(reason: &'static str, error: impl Into<String>) -> Outcome {
    Outcome::Rejected { reason, details: serde_json::json!({"error": error.into()}) }
}

/// What an answer means for the row.
fn classify(status: u16, headers: &reqwest::header::HeaderMap, body: &serde_json::Value, size: usize) -> Outcome {
    if u64::try_from(size).unwrap_or(u64::MAX) > MAX_BODY {
        return rejected("llm_call_failed", format!("the response is larger than {MAX_BODY} bytes"));
    }
    if matches!(status, 429 | 503 | 529) {
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
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
