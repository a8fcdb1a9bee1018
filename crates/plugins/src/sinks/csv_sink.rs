//! The `csv` sink. Columns: fixed → declared fields in order; flexible →
//! declared then the first row's extras; observed → the first row's keys. A
//! later row with a field outside the columns, or without a required declared
//! field, breaks the pipeline's contract and stops the run.

use contracts::plugin::{ArtifactDescriptor, Options, OutputPosition, PluginContext, PluginError, PluginInfo, Sink};
use contracts::schema::{SchemaConfig, SchemaMode};
use contracts::{Determinism, Row};
use serde::Deserialize;

use super::durable_file::DurableFile;
use super::{cell_text, HeaderNames, Headers};

fn default_delimiter() -> String {
    ",".to_owned()
}

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "csv", version: "1.0.0", determinism: Determinism::IoWrite };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvSinkOptions {
    path: String,
    schema: serde_json::Value,
    #[serde(default = "default_delimiter")]
    delimiter: String,
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

pub(crate) struct CsvSink {
    schema: SchemaConfig,
    delimiter: u8,
    headers: HeaderNames,
    file: DurableFile,
    columns: Option<Vec<String>>,
    buffer: Vec<u8>,
}

impl CsvSink {
    pub(crate) fn new(options: &Options) -> Result<CsvSink, PluginError> {
        let options: CsvSinkOptions = crate::options::parse(options)?;
        let schema = crate::options::schema(&options.schema)?;
        let delimiter = match options.delimiter.as_bytes() {
            [byte] => *byte,
            _ => return Err(PluginError::Config("delimiter must be a single character".into())),
        };
        let append = match options.mode.as_deref() {
            None | Some("write") => false,
            Some("append") => true,
            Some(other) => return Err(PluginError::Config(format!("mode {other:?}: expected write or append"))),
        };
        if let Some(encoding) = &options.encoding {
            if !["utf-8", "utf8"].contains(&encoding.to_ascii_lowercase().as_str()) {
                return Err(PluginError::Config(format!("encoding {encoding:?} is not supported (utf-8 only)")));
            }
        }
        let headers = HeaderNames::from_option(&options.headers).map_err(PluginError::Config)?;
        let _ = (options.validate_input, options.required_input_fields);
        Ok(CsvSink {
            schema,
            delimiter,
            headers,
            file: DurableFile::new(&options.path, "csv", append),
            columns: None,
            buffer: Vec::new(),
        })
    }

    fn columns_for(&self, first: &Row) -> Vec<String> {
        let declared: Vec<String> = self.schema.fields.iter().map(|f| f.name.clone()).collect();
        match self.schema.mode {
            SchemaMode::Fixed => declared,
            SchemaMode::Flexible => {
                let mut columns = declared;
                columns.extend(first.keys().filter(|k| !columns.contains(k)).cloned().collect::<Vec<_>>());
                columns
            }
            SchemaMode::Observed => first.keys().cloned().collect(),
        }
    }
}

impl Sink for CsvSink {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn write(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<(), PluginError> {
        let Some(first) = rows.first() else { return Ok(()) };
        // Every row is checked before anything of the batch is written (or
        // the file even created).
        for row in rows {
            super::check_declared(&self.schema, row, super::Cells::Text)?;
        }
        if self.columns.is_none() {
            let columns = self.columns_for(first);
            let header: Vec<String> = columns.iter().map(|c| self.headers.display(c).to_owned()).collect();
            let mut writer = csv::WriterBuilder::new().delimiter(self.delimiter).from_writer(std::mem::take(&mut self.buffer));
            writer.write_record(&header).map_err(|e| PluginError::Contract(format!("csv encoding failed: {e}")))?;
            let header_line = writer.into_inner().map_err(|e| PluginError::Contract(format!("csv encoding failed: {e}")))?;
            // Appending to a file that has content: its header must be ours,
            // and is not written again.
            if self.file.ensure_open()? > 0 {
                let existing = self.file.first_line()?;
                if existing.trim_end_matches(['\r', '\n']).as_bytes()
                    != String::from_utf8_lossy(&header_line).trim_end_matches(['\r', '\n']).as_bytes()
                {
                    return Err(PluginError::Config(format!(
                        "mode append: the file's header {:?} is not the sink's {:?}",
                        existing.trim_end(),
                        header.join(",")
                    )));
                }
            } else {
                self.buffer = header_line;
            }
            self.columns = Some(columns);
        }
        let columns = self.columns.clone().unwrap_or_default();
        // One CSV writer for the whole call, not one per row.
        let mut writer = csv::WriterBuilder::new().delimiter(self.delimiter).from_writer(std::mem::take(&mut self.buffer));
        for row in rows {
            if self.schema.mode != SchemaMode::Fixed {
                if let Some(extra) = row.keys().find(|k| !columns.contains(k)) {
                    return Err(PluginError::Contract(format!(
                        "row has field {extra:?}, which is not one of the sink's columns ({})",
                        columns.join(", ")
                    )));
                }
            }
            let cells: Vec<String> = columns.iter().map(|c| row.get(c).map_or(String::new(), cell_text)).collect();
            writer.write_record(&cells).map_err(|e| PluginError::Contract(format!("csv encoding failed: {e}")))?;
        }
        let bytes = writer.into_inner().map_err(|e| PluginError::Contract(format!("csv encoding failed: {e}")))?;
        self.file.write(&bytes)
    }

    fn flush(&mut self, _ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        self.file.sync()
    }

    fn checkpoint_state(&self) -> serde_json::Value {
        serde_json::json!({"columns": self.columns})
    }

    fn check_kept_output(&self, kept: &[OutputPosition]) -> Result<(), PluginError> {
        self.file.check_kept(kept)
    }

    fn resume(&mut self, bytes: u64, state: &serde_json::Value) -> Result<(), PluginError> {
        self.file.resume(bytes)?;
        self.columns = if bytes == 0 {
            None
        } else {
            let columns = state.get("columns").cloned().unwrap_or_default();
            serde_json::from_value(columns).map_err(|e| PluginError::Contract(format!("csv sink checkpoint state: {e}")))?
        };
        Ok(())
    }

    fn bind_field_resolution(&mut self, resolution: &[(String, String)]) {
        self.headers.bind(resolution);
    }

    fn bind_run(&mut self, run_id: &contracts::RunId) {
        self.file.bind_run(run_id.as_str());
    }

    fn finish(&mut self, ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        let artifact = self.flush(ctx)?;
        self.file.finish_append();
        Ok(artifact)
    }
}
