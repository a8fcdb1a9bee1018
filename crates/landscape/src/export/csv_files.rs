//! CSV export: one file per record type (`<dir>/<record_type>.csv`), headers
//! from the record's fields. Not the verifiable format (CSV loses JSON types);
//! the JSON Lines export is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::RecordSink;
use crate::error::{LandscapeError, Result};

/// Writes records into one CSV file per record type.
pub struct CsvFiles {
    dir: PathBuf,
    writers: BTreeMap<String, (Vec<String>, csv::Writer<std::fs::File>)>,
}

impl CsvFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Result<CsvFiles> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| LandscapeError::integrity(format!("cannot create {}: {e}", dir.display())))?;
        Ok(CsvFiles { dir, writers: BTreeMap::new() })
    }

    /// Flushes every file.
    pub fn finish(mut self) -> Result<()> {
        for (_, writer) in self.writers.values_mut() {
            writer.flush().map_err(|e| LandscapeError::integrity(format!("export write: {e}")))?;
        }
        Ok(())
    }
}

#[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every non-string value is written as its JSON text")]
fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl RecordSink for CsvFiles {
    fn write_record(&mut self, record: &serde_json::Map<String, serde_json::Value>, _canonical: &str) -> Result<()> {
        let kind = record.get("record_type").and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
        let io = |e: csv::Error| LandscapeError::integrity(format!("export write: {e}"));
        if !self.writers.contains_key(&kind) {
            let path = self.dir.join(format!("{kind}.csv"));
            let mut writer = csv::Writer::from_path(&path).map_err(io)?;
            let header: Vec<String> = record.keys().cloned().collect();
            writer.write_record(&header).map_err(io)?;
            self.writers.insert(kind.clone(), (header, writer));
        }
        let (header, writer) = self.writers.get_mut(&kind).ok_or_else(|| LandscapeError::integrity("writer vanished"))?;
        let cells: Vec<String> = header.iter().map(|h| record.get(h).map_or(String::new(), cell)).collect();
        writer.write_record(&cells).map_err(io)
    }
}
