//! Built-in plugins: sources (`csv`, `json`, `null`), transforms
//! (`passthrough`, `field_mapper`, `truncate`, `keyword_filter`,
//! `json_explode`, `llm`, `web_scrape`), batch transforms (`batch_stats`, `batch_replicate`,
//! `command_batch`) and
//! sinks (`csv`, `json`).
//!
//! Architecture invariant: plugins depend on `contracts` only and never see a
//! database handle; what they want recorded they return to the engine.
//! Constructors validate options and touch no files: files are opened on
//! first use.
#![forbid(unsafe_code)]

mod catalogue;
mod options;
mod row_schema;
mod sinks;
mod sources;
mod transforms;

use contracts::plugin::{BatchTransform, Options, PluginError, PluginRegistry, Sink, Source, Transform};

pub use catalogue::{OptionDoc, PluginDoc, PluginKind, CATALOGUE};
pub use sources::normalize_header;

/// The registry of built-in plugins.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinPlugins;

fn unknown(kind: PluginKind, name: &str) -> PluginError {
    let known = catalogue::names(kind).join(", ");
    PluginError::Config(format!("unknown {} plugin {name:?} (available: {known})", kind.as_str().replace('_', " ")))
}

impl PluginRegistry for BuiltinPlugins {
    fn source(&self, plugin: &str, options: &Options) -> Result<Box<dyn Source>, PluginError> {
        match plugin {
            "csv" => Ok(Box::new(sources::CsvSource::new(options)?)),
            "json" => Ok(Box::new(sources::JsonSource::new(options)?)),
            "null" => Ok(Box::new(sources::NullSource::new(options)?)),
            other => Err(unknown(PluginKind::Source, other)),
        }
    }

    fn transform(&self, plugin: &str, options: &Options) -> Result<Box<dyn Transform>, PluginError> {
        match plugin {
            "passthrough" => Ok(Box::new(transforms::Passthrough::new(options)?)),
            "field_mapper" => Ok(Box::new(transforms::FieldMapper::new(options)?)),
            "truncate" => Ok(Box::new(transforms::Truncate::new(options)?)),
            "keyword_filter" => Ok(Box::new(transforms::KeywordFilter::new(options)?)),
            "json_explode" => Ok(Box::new(transforms::JsonExplode::new(options)?)),
            "llm" => Ok(Box::new(transforms::Llm::new(options)?)),
            "web_scrape" => Ok(Box::new(transforms::WebScrape::new(options)?)),
            other => Err(unknown(PluginKind::Transform, other)),
        }
    }

    fn batch_transform(&self, plugin: &str, options: &Options) -> Result<Box<dyn BatchTransform>, PluginError> {
        match plugin {
            "batch_stats" => Ok(Box::new(transforms::BatchStats::new(options)?)),
            "batch_replicate" => Ok(Box::new(transforms::BatchReplicate::new(options)?)),
            "command_batch" => Ok(Box::new(transforms::CommandBatch::new(options)?)),
            other => Err(unknown(PluginKind::BatchTransform, other)),
        }
    }

    fn sink(&self, plugin: &str, options: &Options) -> Result<Box<dyn Sink>, PluginError> {
        match plugin {
            "csv" => Ok(Box::new(sinks::CsvSink::new(options)?)),
            "json" => Ok(Box::new(sinks::JsonSink::new(options)?)),
            "database" => Ok(Box::new(sinks::DatabaseSink::new(options)?)),
            other => Err(unknown(PluginKind::Sink, other)),
        }
    }

    fn is_batch_aware(&self, plugin: &str) -> bool {
        catalogue::names(PluginKind::BatchTransform).contains(&plugin)
    }
}
