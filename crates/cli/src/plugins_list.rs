//! `elspeth plugins list`: every built-in plugin with its determinism and
//! options, by kind.

use std::fmt::Write as _;
use std::process::ExitCode;

use plugins::{PluginKind, CATALOGUE};

use crate::Format;

/// Which plugins to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KindFilter {
    Source,
    Transform,
    /// Batch-aware transforms (for `aggregations`).
    BatchTransform,
    Sink,
}

impl KindFilter {
    fn kind(self) -> PluginKind {
        match self {
            KindFilter::Source => PluginKind::Source,
            KindFilter::Transform => PluginKind::Transform,
            KindFilter::BatchTransform => PluginKind::BatchTransform,
            KindFilter::Sink => PluginKind::Sink,
        }
    }
}

pub(crate) fn list(filter: Option<KindFilter>, format: Format) -> anyhow::Result<ExitCode> {
    let chosen: Vec<_> = CATALOGUE.iter().filter(|d| filter.is_none_or(|f| f.kind() == d.kind)).collect();
    let text = match format {
        Format::Json => {
            let docs: Vec<serde_json::Value> = chosen
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "kind": d.kind.as_str(),
                        "name": d.info.name,
                        "version": d.info.version,
                        "determinism": d.info.determinism.as_str(),
                        "summary": d.summary,
                        "options": d.options.iter().map(|o| serde_json::json!({
                            "name": o.name, "required": o.required, "description": o.description,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            format!("{}\n", serde_json::Value::Array(docs))
        }
        Format::Text => {
            let mut text = String::new();
            let mut kind = None;
            for doc in chosen {
                if kind != Some(doc.kind) {
                    let heading = match doc.kind {
                        PluginKind::Source => "SOURCES",
                        PluginKind::Transform => "TRANSFORMS",
                        PluginKind::BatchTransform => "BATCH TRANSFORMS (aggregations)",
                        PluginKind::Sink => "SINKS",
                    };
                    let _ = writeln!(text, "{}{heading}", if kind.is_some() { "\n" } else { "" });
                    kind = Some(doc.kind);
                }
                let _ = writeln!(
                    text,
                    "  {:<16} {} [{}, v{}]",
                    doc.info.name,
                    doc.summary,
                    doc.info.determinism.as_str(),
                    doc.info.version
                );
                for option in doc.options {
                    let marker = if option.required { "*" } else { " " };
                    let _ = writeln!(text, "    {marker} {:<24} {}", option.name, option.description);
                }
            }
            text.push_str("\n* required option\n");
            text
        }
    };
    crate::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
