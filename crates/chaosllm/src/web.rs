//! The fake web server for `web_scrape` (`elspeth-chaosllm web`): HTML
//! articles at `/articles/{slug}` after a latency, with injected faults —
//! 429 with `Retry-After`, 403, 404, 500, 503, hangs, slow pages,
//! malformed or empty HTML, redirects (`/redirect/{n}/{slug}` always
//! redirects n times), and redirects to a cloud-metadata address, which a
//! scraper must refuse — plus `/health` and `/admin/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::config::{ConfigError, LatencyConfig, ServerConfig};

/// Percentages (0–100) of article requests answered with each fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebFaults {
    pub rate_limit_pct: f64,
    pub forbidden_pct: f64,
    pub not_found_pct: f64,
    pub internal_error_pct: f64,
    pub service_unavailable_pct: f64,
    pub timeout_pct: f64,
    pub timeout_sec: [f64; 2],
    pub slow_response_pct: f64,
    pub slow_response_sec: [f64; 2],
    pub malformed_html_pct: f64,
    pub empty_body_pct: f64,
    pub redirect_pct: f64,
    pub ssrf_redirect_pct: f64,
    pub retry_after_sec: [u64; 2],
}

impl Default for WebFaults {
    fn default() -> WebFaults {
        WebFaults {
            rate_limit_pct: 0.0,
            forbidden_pct: 0.0,
            not_found_pct: 0.0,
            internal_error_pct: 0.0,
            service_unavailable_pct: 0.0,
            timeout_pct: 0.0,
            timeout_sec: [30.0, 60.0],
            slow_response_pct: 0.0,
            slow_response_sec: [1.0, 3.0],
            malformed_html_pct: 0.0,
            empty_body_pct: 0.0,
            redirect_pct: 0.0,
            ssrf_redirect_pct: 0.0,
            retry_after_sec: [1, 3],
        }
    }
}

/// The web server's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub server: ServerConfig,
    pub latency: LatencyConfig,
    pub error_injection: WebFaults,
    pub seed: Option<u64>,
}

/// The web presets, by name.
pub const WEB_PRESETS: [&str; 4] = ["silent", "gentle", "realistic", "chaos"];

/// A web preset as a partial configuration (port 8200, as the reference's
/// `chaosweb` example expects).
pub fn web_preset(name: &str) -> Result<serde_json::Value, ConfigError> {
    let faults = match name {
        "silent" | "gentle" => serde_json::json!({}),
        "realistic" => serde_json::json!({"rate_limit_pct": 5, "forbidden_pct": 3, "not_found_pct": 5, "internal_error_pct": 2,
            "malformed_html_pct": 5, "redirect_pct": 10, "retry_after_sec": [1, 2], "timeout_pct": 1, "timeout_sec": [2, 3]}),
        "chaos" => serde_json::json!({"rate_limit_pct": 10, "forbidden_pct": 5, "not_found_pct": 10, "internal_error_pct": 5,
            "service_unavailable_pct": 5, "timeout_pct": 3, "timeout_sec": [2, 4], "slow_response_pct": 5, "slow_response_sec": [1, 2],
            "malformed_html_pct": 10, "empty_body_pct": 5, "redirect_pct": 10, "ssrf_redirect_pct": 5, "retry_after_sec": [1, 2]}),
        other => return Err(ConfigError::UnknownPreset(other.to_owned())),
    };
    let latency =
        if name == "silent" { serde_json::json!({"base_ms": 0}) } else { serde_json::json!({"base_ms": 20, "jitter_ms": 20}) };
    Ok(serde_json::json!({"server": {"port": 8200}, "latency": latency, "error_injection": faults}))
}

impl WebConfig {
    pub fn from_value(value: serde_json::Value, origin: &str) -> Result<WebConfig, ConfigError> {
        serde_json::from_value(value).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }
}

struct WebState {
    config: WebConfig,
    rng: Mutex<rand::rngs::StdRng>,
    requests: AtomicU64,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

/// Binds and serves the web server on a background thread.
pub fn start_web(config: WebConfig) -> Result<crate::RunningServer, crate::ServerError> {
    let rng = match config.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let server = config.server.clone();
    let state =
        Arc::new(WebState { config, rng: Mutex::new(rng), requests: AtomicU64::new(0), outcomes: Mutex::new(BTreeMap::new()) });
    let app = Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/admin/stats", get(stats))
        .route("/articles/{slug}", get(article))
        .route("/redirect/{hops}/{slug}", get(redirect))
        .with_state(state);
    crate::server::serve(&server, app)
}

async fn stats(State(state): State<Arc<WebState>>) -> Json<serde_json::Value> {
    let outcomes = state.outcomes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Json(serde_json::json!({"requests": state.requests.load(Ordering::Relaxed), "outcomes": outcomes}))
}

async fn redirect(Path((hops, slug)): Path<(u32, String)>) -> Response {
    let location = if hops <= 1 { format!("/articles/{slug}") } else { format!("/redirect/{}/{slug}", hops - 1) };
    moved(&location)
}

fn moved(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn page(slug: &str) -> String {
    let title = slug.replace('-', " ");
    format!(
        "<!doctype html><html><head><title>{title}</title><style>body {{ font: 12px serif }}</style></head><body>\
         <script>track('{slug}')</script><h1>{title}</h1><p>This article about <b>{title}</b> reports figures for the period, \
         with <a href=\"/articles/{slug}/details\">details</a> and a summary table.</p>\
         <table><tr><th>item</th><th>value</th></tr><tr><td>{slug}</td><td>42</td></tr></table></body></html>"
    )
}

async fn article(State(state): State<Arc<WebState>>, Path(slug): Path<String>) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let faults = &state.config.error_injection;
    let (choice, wait, retry_after) = {
        let mut rng = state.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let shares = [
            ("rate_limit", faults.rate_limit_pct),
            ("forbidden", faults.forbidden_pct),
            ("not_found", faults.not_found_pct),
            ("internal_error", faults.internal_error_pct),
            ("service_unavailable", faults.service_unavailable_pct),
            ("timeout", faults.timeout_pct),
            ("slow_response", faults.slow_response_pct),
            ("malformed_html", faults.malformed_html_pct),
            ("empty_body", faults.empty_body_pct),
            ("redirect", faults.redirect_pct),
            ("ssrf_redirect", faults.ssrf_redirect_pct),
        ];
        let roll = rng.random_range(0.0..100.0);
        let mut upto = 0.0;
        let mut choice = "success";
        for (name, pct) in shares {
            upto += pct;
            if roll < upto {
                choice = name;
                break;
            }
        }
        let span =
            |[low, high]: [f64; 2], rng: &mut rand::rngs::StdRng| if high > low { rng.random_range(low..high) } else { low };
        let latency = state.config.latency.base_ms
            + if state.config.latency.jitter_ms > 0.0 { rng.random_range(0.0..state.config.latency.jitter_ms) } else { 0.0 };
        let extra = match choice {
            "timeout" => span(faults.timeout_sec, &mut rng) * 1000.0,
            "slow_response" => span(faults.slow_response_sec, &mut rng) * 1000.0,
            _ => 0.0,
        };
        let [low, high] = faults.retry_after_sec;
        let retry_after = if high > low { rng.random_range(low..=high) } else { low };
        (choice, Duration::from_secs_f64((latency + extra).max(0.0) / 1000.0), retry_after)
    };
    *state.outcomes.lock().unwrap_or_else(PoisonError::into_inner).entry(choice).or_insert(0) += 1;
    tokio::time::sleep(wait).await;
    let html = |body: String| {
        let mut response = body.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        response
    };
    match choice {
        "rate_limit" | "service_unavailable" => {
            let status = if choice == "rate_limit" { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::SERVICE_UNAVAILABLE };
            let mut response = (status, "slow down").into_response();
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        "forbidden" => (StatusCode::FORBIDDEN, "forbidden").into_response(),
        "not_found" => (StatusCode::NOT_FOUND, "not found").into_response(),
        "internal_error" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "timeout" => (StatusCode::GATEWAY_TIMEOUT, "timed out").into_response(),
        "malformed_html" => html(page(&slug)[..120].to_owned()),
        "empty_body" => html(String::new()),
        "redirect" => moved(&format!("/redirect/2/{slug}")),
        "ssrf_redirect" => moved("http://169.254.169.254/latest/meta-data/"),
        _ => html(page(&slug)),
    }
}
