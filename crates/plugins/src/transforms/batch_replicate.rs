//! `batch_replicate`: each row becomes `copies` copies (from a field, or a
//! default), optionally with a `copy_index`. An invalid count is an error
//! result for the batch.

use contracts::plugin::{BatchResult, BatchTransform, Options, PluginContext, PluginError, PluginInfo};
use contracts::{Determinism, Row, Value};
use serde::Deserialize;

fn default_field() -> String {
    "copies".to_owned()
}

fn one() -> i64 {
    1
}

fn ten_thousand() -> i64 {
    10_000
}

fn default_true() -> bool {
    true
}

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo =
    PluginInfo { name: "batch_replicate", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchReplicateOptions {
    schema: serde_json::Value,
    #[serde(default = "default_field")]
    copies_field: String,
    #[serde(default = "one")]
    default_copies: i64,
    #[serde(default = "ten_thousand")]
    max_copies: i64,
    #[serde(default = "default_true")]
    include_copy_index: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct BatchReplicate {
    options: BatchReplicateOptions,
}

impl BatchReplicate {
    pub(crate) fn new(options: &Options) -> Result<BatchReplicate, PluginError> {
        let options: BatchReplicateOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        for (key, value) in [("default_copies", options.default_copies), ("max_copies", options.max_copies)] {
            if !(1..=10_000).contains(&value) {
                return Err(PluginError::Config(format!("{key} must be between 1 and 10000")));
            }
        }
        Ok(BatchReplicate { options })
    }
}

impl BatchTransform for BatchReplicate {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process_batch(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        let mut out = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let copies = match row.get(&self.options.copies_field) {
                None | Some(Value::Null) => self.options.default_copies,
                Some(Value::Integer(n)) => *n,
                Some(other) => {
                    let mut reason = serde_json::Map::new();
                    reason.insert("reason".into(), "type_mismatch".into());
                    reason.insert("field".into(), self.options.copies_field.clone().into());
                    reason.insert("row_index".into(), index.into());
                    reason.insert("actual".into(), other.type_name().into());
                    return Ok(BatchResult::Error { reason });
                }
            };
            if !(1..=self.options.max_copies).contains(&copies) {
                let mut reason = serde_json::Map::new();
                reason.insert("reason".into(), "invalid_input".into());
                reason.insert("error".into(), format!("copies {copies} is outside 1..={}", self.options.max_copies).into());
                reason.insert("row_index".into(), index.into());
                return Ok(BatchResult::Error { reason });
            }
            for copy in 0..copies {
                let mut copied = row.clone();
                if self.options.include_copy_index {
                    copied.insert("copy_index".into(), Value::Integer(copy));
                }
                out.push(copied);
            }
        }
        let _ = &self.options.required_input_fields;
        Ok(BatchResult::Rows(out))
    }

    fn poll(&mut self, _job: &serde_json::Value, _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        Err(PluginError::Contract("batch_replicate never answers pending, so it cannot be polled".into()))
    }
}
