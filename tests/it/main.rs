//! End-to-end tests of the `elspeth` binary.

mod aggregation;
mod cli;
mod coalesce;
mod crash;
mod database;
mod explain;
mod export;
mod llm;
mod random_pipelines;
mod replay;
mod resume;
mod run;
mod timers;
mod trust;
mod validate;
mod web_scrape;
