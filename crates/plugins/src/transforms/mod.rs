//! Transforms (row at a time) and batch transforms (whole aggregation
//! batches). Problems with a row's data are error results routed by
//! `on_error`; a broken plugin contract stops the run.

pub(crate) mod batch_replicate;
pub(crate) mod batch_stats;
pub(crate) mod command_batch;
pub(crate) mod field_mapper;
pub(crate) mod http;
pub(crate) mod json_explode;
pub(crate) mod keyword_filter;
pub(crate) mod llm;
pub(crate) mod passthrough;
pub(crate) mod truncate;
pub(crate) mod web_scrape;

pub(crate) use batch_replicate::BatchReplicate;
pub(crate) use batch_stats::BatchStats;
pub(crate) use command_batch::CommandBatch;
pub(crate) use field_mapper::FieldMapper;
pub(crate) use json_explode::JsonExplode;
pub(crate) use keyword_filter::KeywordFilter;
pub(crate) use llm::Llm;
pub(crate) use passthrough::Passthrough;
pub(crate) use truncate::Truncate;
pub(crate) use web_scrape::WebScrape;

use contracts::plugin::TransformResult;

/// An error result with a reason category and context.
pub(crate) fn error_result(reason: &str, context: serde_json::Value) -> TransformResult {
    let mut map = serde_json::Map::new();
    map.insert("reason".into(), serde_json::Value::String(reason.to_owned()));
    if let serde_json::Value::Object(extra) = context {
        map.extend(extra);
    }
    TransformResult::Error { reason: map }
}

#[cfg(test)]
mod tests;
