//! The `csv` source: RFC 4180 records, normalised headers (original names
//! kept for the audit trail), schema validation with coercion, and
//! quarantine of records with the wrong column count or invalid UTF-8.

use std::fs::File;
use std::io::BufReader;

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Source, SourceItem, SourcePosition};
use contracts::{Determinism, Row, Value};
use indexmap::IndexMap;
use serde::Deserialize;

use super::{headers::normalize_header, parse_failure, validated_item};
use crate::row_schema::RowValidator;

fn default_delimiter() -> String {
    ",".to_owned()
}

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "csv", version: "1.0.0", determinism: Determinism::IoRead };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvSourceOptions {
    path: String,
    schema: serde_json::Value,
    on_validation_failure: String,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    skip_rows: u64,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    field_mapping: Option<IndexMap<String, String>>,
}

struct OpenFile {
    reader: csv::Reader<BufReader<File>>,
    /// Final field names, in column order.
    names: Vec<String>,
    /// Final name → original header text.
    originals: IndexMap<String, String>,
}

pub(crate) struct CsvSource {
    options: CsvSourceOptions,
    delimiter: u8,
    validator: RowValidator,
    file: Option<OpenFile>,
    items: u64,
    data_rows: u64,
}

impl CsvSource {
    pub(crate) fn new(options: &Options) -> Result<CsvSource, PluginError> {
        let options: CsvSourceOptions = crate::options::parse(options)?;
        if options.path.is_empty() {
            return Err(PluginError::Config("path must not be empty".into()));
        }
        let delimiter = match options.delimiter.as_bytes() {
            [byte] => *byte,
            _ => return Err(PluginError::Config(format!("delimiter must be a single character, not {:?}", options.delimiter))),
        };
        if let Some(encoding) = &options.encoding {
            let lower = encoding.to_ascii_lowercase().replace('_', "-");
            if !["utf-8", "utf8", "utf-8-sig"].contains(&lower.as_str()) {
                return Err(PluginError::Config(format!("encoding {encoding:?} is not supported (utf-8 only)")));
            }
        }
        if options.on_validation_failure.is_empty() {
            return Err(PluginError::Config("on_validation_failure must name a sink or be 'discard'".into()));
        }
        let schema = crate::options::schema(&options.schema)?;
        Ok(CsvSource { options, delimiter, validator: RowValidator::new(schema), file: None, items: 0, data_rows: 0 })
    }

    fn open(&mut self) -> Result<(), PluginError> {
        let path = &self.options.path;
        let handle =
            File::open(path).map_err(|source| PluginError::Io { context: format!("cannot open CSV source {path}"), source })?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::new(handle));
        let mut record = csv::ByteRecord::new();
        for _ in 0..self.options.skip_rows {
            if !reader.read_byte_record(&mut record).map_err(|e| PluginError::Input(format!("{path}: {e}")))? {
                break;
            }
        }
        let (names, originals) = if let Some(columns) = &self.options.columns {
            (columns.clone(), columns.iter().map(|c| (c.clone(), c.clone())).collect())
        } else {
            if !reader.read_byte_record(&mut record).map_err(|e| PluginError::Input(format!("{path}: {e}")))? {
                self.set_open(reader, Vec::new(), IndexMap::new());
                return Ok(());
            }
            let mut names = Vec::new();
            let mut originals = IndexMap::new();
            for (idx, raw) in record.iter().enumerate() {
                let raw = String::from_utf8_lossy(raw);
                let raw = raw.trim_start_matches('\u{feff}').to_owned();
                let name = normalize_header(&raw).ok_or_else(|| {
                    PluginError::Input(format!("{path}: header {} ({raw:?}) is empty after normalisation", idx + 1))
                })?;
                if let Some(first) = originals.get(&name) {
                    return Err(PluginError::Input(format!("{path}: headers {first:?} and {raw:?} both normalise to {name:?}")));
                }
                originals.insert(name.clone(), raw);
                names.push(name);
            }
            (names, originals)
        };
        let (names, originals) = self.apply_mapping(names, originals)?;
        self.set_open(reader, names, originals);
        Ok(())
    }

    fn apply_mapping(
        &self,
        names: Vec<String>,
        originals: IndexMap<String, String>,
    ) -> Result<(Vec<String>, IndexMap<String, String>), PluginError> {
        let Some(mapping) = &self.options.field_mapping else { return Ok((names, originals)) };
        for key in mapping.keys() {
            if !names.contains(key) {
                return Err(PluginError::Input(format!(
                    "field_mapping names {key:?}, which is not a column (columns: {})",
                    names.join(", ")
                )));
            }
        }
        let renamed: Vec<String> = names.iter().map(|n| mapping.get(n).cloned().unwrap_or_else(|| n.clone())).collect();
        let mut seen = std::collections::BTreeSet::new();
        for name in &renamed {
            if !seen.insert(name) {
                return Err(PluginError::Input(format!("field_mapping produces the column {name:?} twice")));
            }
        }
        let originals = names
            .iter()
            .zip(&renamed)
            .map(|(old, new)| (new.clone(), originals.get(old).cloned().unwrap_or_else(|| old.clone())))
            .collect();
        Ok((renamed, originals))
    }

    fn set_open(&mut self, reader: csv::Reader<BufReader<File>>, names: Vec<String>, originals: IndexMap<String, String>) {
        self.file = Some(OpenFile { reader, names, originals });
    }
}

impl Source for CsvSource {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn next_item(&mut self, _ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError> {
        if self.file.is_none() {
            self.open()?;
        }
        let Some(file) = self.file.as_mut() else { return Ok(None) };
        let mut record = csv::ByteRecord::new();
        let more =
            file.reader.read_byte_record(&mut record).map_err(|e| PluginError::Input(format!("{}: {e}", self.options.path)))?;
        if !more {
            return Ok(None);
        }
        self.items += 1;
        self.data_rows += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let delimiter = char::from(self.delimiter).to_string();
        if record.len() != file.names.len() {
            let fields: Vec<String> = record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
            let mut raw = Row::new();
            raw.insert("__raw_line__".into(), Value::String(fields.join(&delimiter)));
            raw.insert("__line_number__".into(), Value::Integer(i64::try_from(line).unwrap_or(i64::MAX)));
            raw.insert("__row_number__".into(), Value::Integer(i64::try_from(self.data_rows).unwrap_or(i64::MAX)));
            let error = format!("line {line}: expected {} columns, found {}", file.names.len(), record.len());
            return Ok(Some(parse_failure(raw, error)));
        }
        let mut row = Row::with_capacity(record.len());
        for (name, field) in file.names.iter().zip(record.iter()) {
            if let Ok(text) = std::str::from_utf8(field) {
                row.insert(name.clone(), Value::String(text.to_owned()));
            } else {
                let bytes: Vec<u8> = record.iter().collect::<Vec<_>>().join(&self.delimiter);
                let mut raw = Row::new();
                raw.insert("__raw_bytes_hex__".into(), Value::String(hex::encode(bytes)));
                raw.insert("__line_number__".into(), Value::Integer(i64::try_from(line).unwrap_or(i64::MAX)));
                raw.insert("__row_number__".into(), Value::Integer(i64::try_from(self.data_rows).unwrap_or(i64::MAX)));
                let error = format!("line {line}: column {name:?} is not valid UTF-8");
                return Ok(Some(parse_failure(raw, error)));
            }
        }
        let originals = &file.originals;
        Ok(Some(validated_item(&mut self.validator, row, &|name| {
            originals.get(name).cloned().unwrap_or_else(|| name.to_owned())
        })))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition { items: self.items, byte_offset: self.file.as_ref().map(|f| f.reader.position().byte()) }
    }

    fn field_resolution(&self) -> Option<Vec<(String, String)>> {
        let file = self.file.as_ref()?;
        Some(file.originals.iter().map(|(name, original)| (original.clone(), name.clone())).collect())
    }
}
