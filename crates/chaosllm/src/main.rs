//! `elspeth-chaosllm serve`: runs the fake LLM server until interrupted.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A fake LLM server (OpenAI and Azure chat completions) with configurable
/// latency, injected faults and canned responses. It is for tests, examples
/// and benchmarks: point an `llm` transform's `base_url` (or Azure
/// `endpoint`) at it.
#[derive(Parser)]
#[command(name = "elspeth-chaosllm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until interrupted. A preset is the base, the file is laid over
    /// it, and flags win over both.
    Serve(ServeArgs),
    /// List the presets.
    Presets,
    /// Serve the fake web server for `web_scrape` (HTML articles at
    /// /articles/{slug}, with faults, redirects and SSRF bait) until
    /// interrupted.
    Web(WebArgs),
}

#[derive(clap::Args)]
struct WebArgs {
    /// A configuration file (YAML: server, latency, error_injection, seed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// silent, gentle, realistic or chaos (default gentle).
    #[arg(long, default_value = "gentle")]
    preset: String,
    /// Address to bind (default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind; 0 picks a free one (default 8200).
    #[arg(long)]
    port: Option<u16>,
    /// Seed for every random choice.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A configuration file in the reference ChaosLLM format (YAML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// gentle, realistic, stress_aimd, chaos or silent.
    #[arg(long)]
    preset: Option<String>,
    /// Address to bind (default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind; 0 picks a free one (default 8199).
    #[arg(long)]
    port: Option<u16>,
    /// Base latency of every answer, in milliseconds.
    #[arg(long)]
    base_ms: Option<f64>,
    /// Random extra latency, up to this many milliseconds.
    #[arg(long)]
    jitter_ms: Option<f64>,
    /// Percentage of requests answered 429 with Retry-After.
    #[arg(long)]
    rate_limit_pct: Option<f64>,
    /// Percentage of requests answered 500.
    #[arg(long)]
    internal_error_pct: Option<f64>,
    /// Percentage of requests answered 200 with a body that is not JSON.
    #[arg(long)]
    invalid_json_pct: Option<f64>,
    /// random, template, echo or preset.
    #[arg(long)]
    mode: Option<String>,
    /// Seed for every random choice, for a repeatable session.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Presets => {
            for name in chaosllm::PRESETS {
                println!("{name}");
            }
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Web(args) => web(args),
    }
}

fn web(args: WebArgs) -> anyhow::Result<()> {
    let mut value = chaosllm::web::web_preset(&args.preset)?;
    if let Some(path) = &args.config {
        chaosllm::config::merge(&mut value, chaosllm::config::read_file(path)?);
    }
    let mut flags = serde_json::json!({"server": {}});
    if let Some(host) = args.host {
        flags["server"]["host"] = host.into();
    }
    if let Some(port) = args.port {
        flags["server"]["port"] = port.into();
    }
    if let Some(seed) = args.seed {
        flags["seed"] = seed.into();
    }
    chaosllm::config::merge(&mut value, flags);
    let config = chaosllm::web::WebConfig::from_value(value, "web configuration")?;
    let server = chaosllm::web::start_web(config).context("starting the web server")?;
    println!("elspeth-chaosllm web listening on http://{}", server.addr());
    server.wait();
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut value = serde_json::json!({});
    if let Some(name) = &args.preset {
        chaosllm::config::merge(&mut value, chaosllm::config::preset(name)?);
    }
    if let Some(path) = &args.config {
        chaosllm::config::merge(&mut value, chaosllm::config::read_file(path)?);
    }
    let mut flags = serde_json::json!({});
    let mut set = |path: &[&str], item: serde_json::Value| {
        let nested = path.iter().rev().fold(item, |inner, key| serde_json::json!({ *key: inner }));
        chaosllm::config::merge(&mut flags, nested);
    };
    if let Some(host) = args.host {
        set(&["server", "host"], host.into());
    }
    if let Some(port) = args.port {
        set(&["server", "port"], port.into());
    }
    for (path, item) in [
        (&["latency", "base_ms"][..], args.base_ms),
        (&["latency", "jitter_ms"][..], args.jitter_ms),
        (&["error_injection", "rate_limit_pct"][..], args.rate_limit_pct),
        (&["error_injection", "internal_error_pct"][..], args.internal_error_pct),
        (&["error_injection", "invalid_json_pct"][..], args.invalid_json_pct),
    ] {
        if let Some(item) = item {
            set(path, item.into());
        }
    }
    if let Some(mode) = args.mode {
        set(&["response", "mode"], mode.into());
    }
    if let Some(seed) = args.seed {
        set(&["seed"], seed.into());
    }
    chaosllm::config::merge(&mut value, flags);
    let origin = args.config.as_ref().map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
    let config = chaosllm::Config::from_value(value, &origin)?;
    let server = chaosllm::start(config).context("starting the server")?;
    // Tests and scripts read this line to learn the port.
    println!("elspeth-chaosllm listening on http://{}", server.addr());
    server.wait();
    Ok(())
}
