//! The `json` sink: JSON Lines (one object per line) or a JSON array written
//! incrementally (`[`, elements, and `]` only when the run finishes).

use contracts::plugin::{ArtifactDescriptor, Options, OutputPosition, PluginContext, PluginError, PluginInfo, Sink};
use contracts::{Determinism, Row};
use serde::Deserialize;

use super::durable_file::DurableFile;
use super::{renamed, HeaderNames, Headers};

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "json", version: "1.0.0", determinism: Determinism::IoWrite };

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Json,
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSinkOptions {
    path: String,
    schema: serde_json::Value,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    indent: Option<usize>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    headers: Headers,
    #[serde(default)]
    validate_input: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct JsonSink {
    schema: contracts::schema::SchemaConfig,
    format: Format,
    indent: Option<usize>,
    headers: HeaderNames,
    file: DurableFile,
    elements: u64,
    finished: bool,
}

impl JsonSink {
    pub(crate) fn new(options: &Options) -> Result<JsonSink, PluginError> {
        let options: JsonSinkOptions = crate::options::parse(options)?;
        let schema = crate::options::schema(&options.schema)?;
        let format = options.format.unwrap_or(if options.path.ends_with(".jsonl") { Format::Jsonl } else { Format::Json });
        let append = match options.mode.as_deref() {
            None | Some("write") => false,
            Some("append") if format == Format::Jsonl => true,
            Some("append") => {
                return Err(PluginError::Config("mode append needs format jsonl (a JSON array cannot be appended to)".into()))
            }
            Some(other) => return Err(PluginError::Config(format!("mode {other:?}: expected write or append"))),
        };
        if options.indent.is_some() && format == Format::Jsonl {
            return Err(PluginError::Config("indent is only allowed with format json".into()));
        }
        if let Some(encoding) = &options.encoding {
            if !["utf-8", "utf8"].contains(&encoding.to_ascii_lowercase().as_str()) {
                return Err(PluginError::Config(format!("encoding {encoding:?} is not supported (utf-8 only)")));
            }
        }
        let headers = HeaderNames::from_option(&options.headers).map_err(PluginError::Config)?;
        let _ = (options.validate_input, options.required_input_fields);
        Ok(JsonSink {
            schema,
            format,
            indent: options.indent,
            headers,
            file: DurableFile::new(&options.path, "json", append),
            elements: 0,
            finished: false,
        })
    }

    fn render(&self, row: &Row) -> Result<String, PluginError> {
        let object = serde_json::Value::Object(renamed(row, &self.headers));
        let text = match self.indent {
            Some(width) => {
                let indent = " ".repeat(width);
                let mut out = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
                let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
                serde::Serialize::serialize(&object, &mut serializer).map_err(|e| PluginError::Contract(e.to_string()))?;
                String::from_utf8(out).map_err(|e| PluginError::Contract(e.to_string()))?
            }
            None => serde_json::to_string(&object).map_err(|e| PluginError::Contract(e.to_string()))?,
        };
        Ok(text)
    }
}

impl Sink for JsonSink {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn write(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<(), PluginError> {
        // Every row is checked before anything of the batch is written.
        for row in rows {
            super::check_declared(&self.schema, row, super::Cells::Typed)?;
        }
        let mut out = String::new();
        for row in rows {
            let text = self.render(row)?;
            match self.format {
                Format::Jsonl => {
                    out.push_str(&text);
                    out.push('\n');
                }
                Format::Json => {
                    out.push_str(if self.elements == 0 { "[\n" } else { ",\n" });
                    out.push_str(&text);
                }
            }
            self.elements += 1;
        }
        if out.is_empty() {
            return Ok(());
        }
        self.file.write(out.as_bytes())
    }

    fn flush(&mut self, _ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        self.file.sync()
    }

    fn finish(&mut self, _ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        if self.format == Format::Json && !self.finished {
            self.finished = true;
            let closing: &[u8] = if self.file.is_open() { b"\n]\n" } else { b"[]\n" };
            self.file.write(closing)?;
        }
        let artifact = self.file.sync()?;
        self.file.finish_append();
        Ok(artifact)
    }

    fn bind_field_resolution(&mut self, resolution: &[(String, String)]) {
        self.headers.bind(resolution);
    }

    fn bind_run(&mut self, run_id: &contracts::RunId) {
        self.file.bind_run(run_id.as_str());
    }

    fn checkpoint_state(&self) -> serde_json::Value {
        serde_json::json!({"elements": self.elements})
    }

    fn check_kept_output(&self, kept: &[OutputPosition]) -> Result<(), PluginError> {
        self.file.check_kept(kept)
    }

    fn resume(&mut self, bytes: u64, state: &serde_json::Value) -> Result<(), PluginError> {
        self.file.resume(bytes)?;
        self.finished = false;
        self.elements = if bytes == 0 { 0 } else { state.get("elements").and_then(serde_json::Value::as_u64).unwrap_or(0) };
        Ok(())
    }
}
