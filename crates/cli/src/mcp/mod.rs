//! `elspeth mcp`: a read-only Model Context Protocol server over the
//! Landscape, on stdio, for assistants investigating runs.
//!
//! The connection is opened read-only; every tool answers through the
//! Landscape's analysis and lineage layer (`landscape::analysis`,
//! `landscape::lineage`) and the plain-language rendering `explain` uses, so
//! no query lives here. Lists are paged and aggregates grouped, so each call
//! does bounded work and returns a bounded answer whatever the run's size.
//! A bad argument is an MCP invalid-params error naming the argument; a
//! failure while answering is an MCP internal error; neither ends the server.

mod args;
mod tools;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rmcp::ServiceExt as _;

/// Serves the Landscape at `url` over stdin/stdout until the client closes the connection.
pub(crate) fn serve(url: &str, payload_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let recorder = landscape::Recorder::open_read_only(url, payload_dir.map(landscape::PayloadStore::new))
        .context("cannot open the Landscape")?;
    let server = tools::Analyst::new(url.to_owned(), Arc::new(Mutex::new(recorder)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let running = server.serve(rmcp::transport::stdio()).await.context("MCP handshake failed")?;
        running.waiting().await.context("MCP session ended abnormally")?;
        anyhow::Ok(())
    })
}
