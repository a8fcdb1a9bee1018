//! `elspeth-chaosllm`: a fake LLM server for tests, examples and benches.
//! It answers OpenAI (`/v1/chat/completions`) and Azure
//! (`/openai/deployments/{name}/chat/completions`) chat completions after a
//! configured latency, with injected faults (429/529/503 with
//! `Retry-After`, 5xx, hangs, dropped connections, malformed bodies) and
//! canned, templated, echoed or random content. It binds where it is told
//! (127.0.0.1 by default; tests use port 0) and serves `/health` and
//! `/admin/stats`. `web` is its sibling for `web_scrape`: HTML articles
//! with injected faults, redirects and SSRF bait.

#![forbid(unsafe_code)]

pub mod config;
pub mod fault;
pub mod responses;
mod server;
pub mod web;

pub use config::{Config, ConfigError, PRESETS};
pub use server::{start, RunningServer, ServerError};
