//! `web_scrape`: fetches the page a row names and adds its content.
//!
//! Every fetch is audited: the request (original URL, the address it went
//! to, the headers) and the final response are one `http` call; each
//! redirect hop is an `http_redirect` call of its own, checked against the
//! SSRF rules before it is followed (`ssrf.rs`). The connection goes to the
//! address that was checked (pinned: no DNS rebinding), on a fresh client
//! per request. A URL refused by the SSRF rules, or not a URL, is an error
//! result (`validation_failed`); 404/403/401, an unresolved redirect, too
//! many redirects, a refused redirect target or an oversized page are
//! error results (`api_error`); 429, 5xx and transport failures end the
//! attempt for the engine's `retry`. In replay mode the final response is
//! taken from the recording (hops are not replayed).

mod extract;
mod ssrf;

use std::io::Read;
use std::time::Duration;

use contracts::plugin::{CallEnd, Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{stable_hash_json, CallStatus, CallType, Determinism, Row, Value};
use serde::Deserialize;

use super::http::{describe, response_headers};
use extract::{FingerprintMode, Format};
use ssrf::{AllowedHosts, Checked};

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "web_scrape", version: "1.0.0", determinism: Determinism::ExternalCall };

fn default_strip() -> Vec<String> {
    vec!["script".to_owned(), "style".to_owned()]
}
fn default_timeout() -> f64 {
    30.0
}
fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_max_redirects() -> u32 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpOptions {
    abuse_contact: String,
    scraping_reason: String,
    #[serde(default = "default_timeout")]
    timeout: f64,
    #[serde(default)]
    allowed_hosts: Option<serde_json::Value>,
    #[serde(default = "default_max_bytes")]
    max_response_bytes: u64,
    #[serde(default = "default_max_redirects")]
    max_redirects: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebScrapeOptions {
    url_field: String,
    content_field: String,
    fingerprint_field: String,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    fingerprint_mode: FingerprintMode,
    #[serde(default = "default_strip")]
    strip_elements: Vec<String>,
    http: HttpOptions,
    schema: serde_json::Value,
    #[serde(default)]
    #[allow(dead_code, reason = "the engine checks it when the graph is built")]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct WebScrape {
    options: WebScrapeOptions,
    allowed: AllowedHosts,
}

/// One response as received.
struct Received {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// A fetch that did not give a page.
enum Failure {
    /// Worth a new attempt (429, 5xx, transport).
    Transient(String),
    /// An error result with this reason.
    Rejected(&'static str, String),
}

impl WebScrape {
    pub(crate) fn new(options: &Options) -> Result<WebScrape, PluginError> {
        let options: WebScrapeOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        for (key, value) in [
            ("url_field", &options.url_field),
            ("content_field", &options.content_field),
            ("fingerprint_field", &options.fingerprint_field),
            ("http.abuse_contact", &options.http.abuse_contact),
            ("http.scraping_reason", &options.http.scraping_reason),
        ] {
            if value.trim().is_empty() {
                return Err(PluginError::Config(format!("{key} must not be empty")));
            }
        }
        if options.content_field == options.fingerprint_field {
            return Err(PluginError::Config("content_field and fingerprint_field must differ".to_owned()));
        }
        if !(options.http.timeout.is_finite() && options.http.timeout > 0.0) {
            return Err(PluginError::Config("http.timeout must be greater than 0".to_owned()));
        }
        let allowed = match &options.http.allowed_hosts {
            None => AllowedHosts::PublicOnly,
            Some(value) => AllowedHosts::parse(value).map_err(PluginError::Config)?,
        };
        Ok(WebScrape { options, allowed })
    }

    fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("User-Agent".to_owned(), format!("elspeth-web-scrape/{}", INFO.version)),
            ("X-Abuse-Contact".to_owned(), self.options.http.abuse_contact.clone()),
            ("X-Scraping-Reason".to_owned(), self.options.http.scraping_reason.clone()),
        ]
    }

    fn request_json(&self, ctx: &PluginContext, target: &Checked) -> Result<serde_json::Value, PluginError> {
        Ok(serde_json::json!({
            "method": "GET", "url": target.url.as_str(), "resolved_ip": target.pinned.ip().to_string(),
            "headers": ctx.audit_headers(&self.headers())?,
        }))
    }

    /// One GET to a checked target, on a fresh client pinned to its address.
    fn get(&self, target: &Checked) -> Result<Received, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs_f64(self.options.http.timeout))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&target.host, target.pinned)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| describe(&e))?;
        let mut request = client.get(target.url.clone());
        for (name, value) in self.headers() {
            request = request.header(name, value);
        }
        let response = request.send().map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        response
            .take(self.options.http.max_response_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the response: {e}"))?;
        Ok(Received { status, headers, body })
    }

    /// Fetches `first`, following redirects hop by hop; records every call.
    /// Returns the final response and target, or why there is none.
    fn fetch(&self, ctx: &mut PluginContext, first: Checked) -> Result<Result<(Received, Checked), Failure>, PluginError> {
        let request = self.request_json(ctx, &first)?;
        let ticket = ctx.begin_call(Some("web_scrape"));
        let record_failure = |ctx: &mut PluginContext, ticket, request, message: &str| {
            let error = serde_json::json!({"type": "RequestError", "message": message});
            let end =
                CallEnd { call_type: CallType::Http, status: CallStatus::Error, request, response: None, error: Some(error) };
            ctx.end_call(ticket, end);
        };
        let mut current = first.clone();
        let mut received = match self.get(&first) {
            Ok(received) => received,
            Err(message) => {
                record_failure(ctx, ticket, request, &message);
                return Ok(Err(Failure::Transient(message)));
            }
        };
        let mut hops = 0;
        while (300..400).contains(&received.status) {
            let Some(location) = received.headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) else { break };
            if hops == self.options.http.max_redirects {
                let message = format!("more than {} redirects", self.options.http.max_redirects);
                record_failure(ctx, ticket, request, &message);
                return Ok(Err(Failure::Rejected("api_error", message)));
            }
            let next = match current
                .url
                .join(location)
                .map_err(|e| e.to_string())
                .and_then(|u| ssrf::check_url(u.as_str(), &self.allowed))
            {
                Ok(next) => next,
                Err(why) => {
                    let message = format!("redirect refused: {why}");
                    record_failure(ctx, ticket, request, &message);
                    return Ok(Err(Failure::Rejected("api_error", message)));
                }
            };
            hops += 1;
            let mut hop_request = self.request_json(ctx, &next)?;
            hop_request["hop_number"] = hops.into();
            hop_request["redirect_from"] = current.url.as_str().into();
            let hop = ctx.begin_call(Some("web_scrape"));
            match self.get(&next) {
                Ok(answer) => {
                    let status = if answer.status < 400 { CallStatus::Success } else { CallStatus::Error };
                    let response =
                        serde_json::json!({"status_code": answer.status, "headers": response_headers(&answer.headers)});
                    let error = (status == CallStatus::Error).then(|| serde_json::json!({"type": "HTTPError", "message": format!("HTTP {}", answer.status), "status_code": answer.status}));
                    ctx.end_call(
                        hop,
                        CallEnd {
                            call_type: CallType::HttpRedirect,
                            status,
                            request: hop_request,
                            response: Some(response),
                            error,
                        },
                    );
                    received = answer;
                    current = next;
                }
                Err(message) => {
                    let error = serde_json::json!({"type": "RequestError", "message": message});
                    let end = CallEnd {
                        call_type: CallType::HttpRedirect,
                        status: CallStatus::Error,
                        request: hop_request,
                        response: None,
                        error: Some(error),
                    };
                    ctx.end_call(hop, end);
                    record_failure(ctx, ticket, request, &message);
                    return Ok(Err(Failure::Transient(message)));
                }
            }
        }
        let mut response = serde_json::json!({
            "status_code": received.status, "headers": response_headers(&received.headers),
            "body_size": received.body.len(), "body": String::from_utf8_lossy(&received.body),
        });
        if hops > 0 {
            response["redirect_count"] = hops.into();
        }
        let ok = (200..300).contains(&received.status);
        let error = (!ok).then(|| serde_json::json!({"type": "HTTPError", "message": format!("HTTP {}", received.status), "status_code": received.status}));
        let status = if ok { CallStatus::Success } else { CallStatus::Error };
        ctx.end_call(ticket, CallEnd { call_type: CallType::Http, status, request, response: Some(response), error });
        Ok(Ok((received, current)))
    }

    /// In replay mode: the recorded final response of this request.
    fn replayed(
        &self,
        ctx: &mut PluginContext,
        first: &Checked,
    ) -> Result<Option<Result<(Received, Checked), TransformResult>>, PluginError> {
        if !ctx.replaying() {
            return Ok(None);
        }
        let request = self.request_json(ctx, first)?;
        let ticket = ctx.begin_call(None);
        let Some(answer) = ctx.replay(&ticket, CallType::Http, &request) else { return Ok(None) };
        let recording = match answer {
            Ok(recording) => recording,
            Err(error) => return Ok(Some(Err(TransformResult::Error { reason: error.reason() }))),
        };
        let response = recording.response.unwrap_or(serde_json::Value::Null);
        let Some(status) = response.get("status_code").and_then(serde_json::Value::as_u64).and_then(|s| u16::try_from(s).ok())
        else {
            let message = recording.error.map_or_else(|| "no response".to_owned(), |e| e.to_string());
            return Err(PluginError::Transient(format!("the recorded request failed: {message}")));
        };
        let body = response.get("body").and_then(serde_json::Value::as_str).unwrap_or_default().as_bytes().to_vec();
        Ok(Some(Ok((Received { status, headers: reqwest::header::HeaderMap::new(), body }, first.clone()))))
    }
}

fn error(reason: &str, message: impl Into<String>, url: &str) -> TransformResult {
    super::error_result(reason, serde_json::json!({"error": message.into(), "url": url}))
}

impl Transform for WebScrape {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process(&self, mut row: Row, ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let options = &self.options;
        let Some(Value::String(url)) = row.get(&options.url_field).cloned() else {
            return Ok(error("validation_failed", format!("field {:?} is not a string URL", options.url_field), ""));
        };
        let first = match ssrf::check_url(&url, &self.allowed) {
            Ok(checked) => checked,
            Err(why) => return Ok(error("validation_failed", why, &url)),
        };
        let fetched = match self.replayed(ctx, &first)? {
            Some(Ok(fetched)) => fetched,
            Some(Err(result)) => return Ok(result),
            None => match self.fetch(ctx, first)? {
                Ok(fetched) => fetched,
                Err(Failure::Transient(message)) => return Err(PluginError::Transient(message)),
                Err(Failure::Rejected(reason, message)) => return Ok(error(reason, message, &url)),
            },
        };
        let (received, last) = fetched;
        match received.status {
            200..=299 => {}
            429 | 500..=599 => return Err(PluginError::Transient(format!("HTTP {} from {url}", received.status))),
            300..=399 => return Ok(error("api_error", format!("HTTP {} without a usable Location", received.status), &url)),
            status => return Ok(error("api_error", format!("HTTP {status}"), &url)),
        }
        if received.body.len() as u64 > options.http.max_response_bytes {
            return Ok(error("api_error", format!("the page is larger than {} bytes", options.http.max_response_bytes), &url));
        }
        let html = String::from_utf8_lossy(&received.body);
        let content = match extract::extract(&html, options.format, &options.strip_elements) {
            Ok(content) => content,
            Err(why) => return Ok(error("content_extraction_failed", why, &url)),
        };
        let fingerprint = extract::fingerprint(&content, options.fingerprint_mode);
        let processed_hash = contracts::sha256_hex(content.as_bytes());
        let calls_hash = |value: serde_json::Value| stable_hash_json(&value).map(|h| h.as_str().to_owned()).ok();
        let metadata = serde_json::json!({
            "fetch_url": url,
            "fetch_response_processed_hash": processed_hash,
            "fetch_response_raw_hash": calls_hash(serde_json::Value::String(html.to_string())),
        });
        row.insert(options.content_field.clone(), Value::String(content));
        row.insert(options.fingerprint_field.clone(), Value::String(fingerprint));
        row.insert("fetch_status".to_owned(), Value::Integer(i64::from(received.status)));
        row.insert("fetch_url_final".to_owned(), Value::String(last.url.to_string()));
        row.insert("fetch_url_final_ip".to_owned(), Value::String(last.pinned.ip().to_string()));
        let reason = serde_json::json!({"action": "enriched", "fields_added": [options.content_field, options.fingerprint_field,
            "fetch_status", "fetch_url_final", "fetch_url_final_ip"], "metadata": metadata});
        Ok(TransformResult::Row { row, success_reason: Some(reason) })
    }
}
