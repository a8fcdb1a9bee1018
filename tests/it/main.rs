//! End-to-end tests of the `elspeth` binary.

mod aggregation;
mod append;
mod cli;
mod coalesce;
mod crash;
mod database;
mod explain;
mod export;
mod fields;
mod llm;
mod mcp;
mod random_pipelines;
mod replay;
mod resume;
mod run;
mod serve;
mod timers;
mod trust;
mod validate;
mod web_scrape;
