//! The HTTP server: routes, one handler for both chat-completion dialects,
//! statistics, and a handle that stops the server when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};

use crate::config::{Config, ResponseMode};
use crate::fault::{self, Fault};
use crate::responses::{self, Asked};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Responses(String),
    #[error("cannot start the server runtime: {0}")]
    Runtime(std::io::Error),
}

struct AppState {
    config: Config,
    presets: Vec<String>,
    rng: Mutex<rand::rngs::StdRng>,
    started: Instant,
    requests: AtomicU64,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

/// A server running on its own threads; dropping it stops it.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, the `base_url` an OpenAI-compatible client wants.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Waits until the server stops (it never does on its own).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds (port 0 picks a free one) and serves on a background thread.
pub fn start(config: Config) -> Result<RunningServer, ServerError> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    let presets = match (&config.response.mode, &config.response.preset.file) {
        (ResponseMode::Preset, Some(file)) => responses::read_presets(file).map_err(ServerError::Responses)?,
        _ => Vec::new(),
    };
    let rng = match config.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let state = Arc::new(AppState {
        config,
        presets,
        rng: Mutex::new(rng),
        started: Instant::now(),
        requests: AtomicU64::new(0),
        outcomes: Mutex::new(BTreeMap::new()),
    });
    let app = router(state);
    run(listener, bound, app)
}

/// Binds `server`'s address and serves `app` on a background thread.
pub(crate) fn serve(server: &crate::config::ServerConfig, app: Router) -> Result<RunningServer, ServerError> {
    let addr = format!("{}:{}", server.host, server.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    run(listener, bound, app)
}

fn run(listener: std::net::TcpListener, bound: SocketAddr, app: Router) -> Result<RunningServer, ServerError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(ServerError::Runtime)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = stopped => {}
            }
        });
        runtime.shutdown_background();
    });
    Ok(RunningServer { addr: bound, stop: Some(stop), thread: Some(thread) })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/admin/stats", get(stats))
        .route("/v1/chat/completions", post(openai))
        .route("/chat/completions", post(openai))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure))
        .with_state(state)
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let outcomes = state.outcomes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Json(serde_json::json!({
        "requests": state.requests.load(Ordering::Relaxed),
        "outcomes": outcomes,
        "uptime_sec": state.started.elapsed().as_secs_f64(),
    }))
}

async fn openai(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(&state, None, &body).await
}

async fn azure(State(state): State<Arc<AppState>>, Path(deployment): Path<String>, body: Bytes) -> Response {
    answer(&state, Some(deployment), &body).await
}

/// What the handler decided before it waits.
struct Plan {
    fault: Fault,
    latency: Duration,
    hang: Duration,
    retry_after: u64,
    content: String,
}

async fn answer(state: &AppState, deployment: Option<String>, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the request body is not JSON", None);
    };
    let Some(messages) = request.get("messages").and_then(serde_json::Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "messages is required", None);
    };
    let model = deployment.or_else(|| request.get("model").and_then(serde_json::Value::as_str).map(str::to_owned));
    let model = model.unwrap_or_else(|| "chaosllm".to_owned());
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(serde_json::Value::as_str) == Some("user"))
        .and_then(|m| m.get("content").and_then(serde_json::Value::as_str))
        .unwrap_or_default();
    let prompt_chars: usize =
        messages.iter().filter_map(|m| m.get("content").and_then(serde_json::Value::as_str)).map(str::len).sum();
    let number = state.requests.fetch_add(1, Ordering::Relaxed);
    let plan = plan(state, &model, last_user, number);
    *state.outcomes.lock().unwrap_or_else(PoisonError::into_inner).entry(plan.fault.name()).or_insert(0) += 1;
    tokio::time::sleep(plan.latency + plan.hang).await;
    let success = responses::completion(&model, &plan.content, number, prompt_chars);
    match plan.fault {
        Fault::None | Fault::SlowResponse => Json(success).into_response(),
        Fault::RateLimit | Fault::Capacity529 | Fault::ServiceUnavailable => {
            let status = StatusCode::from_u16(plan.fault.status().unwrap_or(429)).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            error(status, plan.fault.name(), "injected capacity error", Some(plan.retry_after))
        }
        Fault::InternalError
        | Fault::BadGateway
        | Fault::GatewayTimeout
        | Fault::Timeout
        | Fault::Forbidden
        | Fault::NotFound => {
            let status = StatusCode::from_u16(plan.fault.status().unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, plan.fault.name(), "injected error", None)
        }
        Fault::ConnectionReset => {
            // Headers go out, then the body fails: the connection is dropped.
            let stream = futures_util::stream::iter([Err::<Bytes, std::io::Error>(std::io::Error::other("connection reset"))]);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Fault::InvalidJson => {
            json_text("{\"id\": \"chatcmpl-broken\", \"choices\": [{\"message\": {\"content\": oops".to_owned())
        }
        Fault::Truncated => {
            let text = success.to_string();
            json_text(text[..text.len() / 2].to_owned())
        }
        Fault::EmptyBody => json_text(String::new()),
        Fault::MissingFields => {
            Json(serde_json::json!({"id": format!("chatcmpl-chaos-{number}"), "object": "chat.completion", "model": model}))
                .into_response()
        }
        Fault::WrongContentType => {
            let mut response = "<html><body>502 upstream says hello</body></html>".into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
    }
}

fn plan(state: &AppState, model: &str, last_user: &str, number: u64) -> Plan {
    let config = &state.config;
    let injection = &config.error_injection;
    let mut rng = state.rng.lock().unwrap_or_else(PoisonError::into_inner);
    let in_burst = fault::in_burst(injection, state.started.elapsed().as_secs_f64());
    let fault = fault::choose(injection, in_burst, &mut *rng);
    let jitter = if config.latency.jitter_ms > 0.0 { rng.random_range(0.0..config.latency.jitter_ms) } else { 0.0 };
    let latency = Duration::from_secs_f64((config.latency.base_ms + jitter).max(0.0) / 1000.0);
    let range = |[low, high]: [f64; 2], rng: &mut rand::rngs::StdRng| {
        if high > low {
            rng.random_range(low..high)
        } else {
            low
        }
    };
    let hang = match fault {
        Fault::Timeout => Duration::from_secs_f64(range(injection.timeout_sec, &mut rng).max(0.0)),
        Fault::SlowResponse => Duration::from_secs_f64(range(injection.slow_response_sec, &mut rng).max(0.0)),
        Fault::None
        | Fault::RateLimit
        | Fault::Capacity529
        | Fault::ServiceUnavailable
        | Fault::InternalError
        | Fault::BadGateway
        | Fault::GatewayTimeout
        | Fault::Forbidden
        | Fault::NotFound
        | Fault::ConnectionReset
        | Fault::InvalidJson
        | Fault::Truncated
        | Fault::EmptyBody
        | Fault::MissingFields
        | Fault::WrongContentType => Duration::ZERO,
    };
    let [low, high] = injection.retry_after_sec;
    let retry_after = if high > low { rng.random_range(low..=high) } else { low };
    let asked = Asked { model, last_user_message: last_user, request_number: number };
    let content = responses::content(&config.response, &state.presets, &asked, &mut *rng);
    Plan { fault, latency, hang, retry_after, content }
}

fn json_text(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, kind: &str, message: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({"error": {"message": format!("{message} ({kind})"), "type": kind, "code": status.as_u16()}});
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
