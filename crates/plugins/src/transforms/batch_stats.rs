//! `batch_stats`: count, sum, mean (and optionally min/max) of a numeric field
//! over a batch, one output row per `group_by` value (in first-seen order).
//! A non-numeric value is an error result for the batch, never skipped.

use contracts::plugin::{BatchResult, BatchTransform, Options, PluginContext, PluginError, PluginInfo};
use contracts::{Determinism, Finite, Row, Value};
use indexmap::IndexMap;
use serde::Deserialize;

fn default_true() -> bool {
    true
}

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "batch_stats", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchStatsOptions {
    schema: serde_json::Value,
    value_field: String,
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default = "default_true")]
    compute_mean: bool,
    #[serde(default)]
    compute_min_max: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct BatchStats {
    options: BatchStatsOptions,
}

const RESERVED: &[&str] = &["count", "sum", "batch_size", "mean", "min", "max"];

impl BatchStats {
    pub(crate) fn new(options: &Options) -> Result<BatchStats, PluginError> {
        let options: BatchStatsOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        if let Some(group) = &options.group_by {
            if RESERVED.contains(&group.as_str()) {
                return Err(PluginError::Config(format!("group_by {group:?} collides with an output field")));
            }
        }
        Ok(BatchStats { options })
    }
}

#[derive(Default)]
struct Accumulator {
    batch_size: i64,
    count: i64,
    int_sum: Option<i64>,
    float_sum: f64,
    all_ints: bool,
    min: Option<f64>,
    max: Option<f64>,
}

fn error(reason: &str, context: serde_json::Value) -> BatchResult {
    let mut map = serde_json::Map::new();
    map.insert("reason".into(), serde_json::Value::String(reason.into()));
    if let serde_json::Value::Object(extra) = context {
        map.extend(extra);
    }
    BatchResult::Error { reason: map }
}

impl BatchTransform for BatchStats {
    fn info(&self) -> PluginInfo {
        INFO
    }

    #[allow(clippy::cast_precision_loss)]
    fn process_batch(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        if rows.is_empty() {
            return Ok(error("batch_failed", serde_json::json!({"error": "empty batch"})));
        }
        let field = &self.options.value_field;
        let mut groups: IndexMap<String, (Value, Accumulator)> = IndexMap::new();
        for (index, row) in rows.iter().enumerate() {
            let group_value = match &self.options.group_by {
                Some(group) => row.get(group).cloned().unwrap_or(Value::Null),
                None => Value::Null,
            };
            let key = contracts::canonical_json_value(&group_value).unwrap_or_default();
            let (_, acc) = groups
                .entry(key)
                .or_insert_with(|| (group_value, Accumulator { all_ints: true, int_sum: Some(0), ..Accumulator::default() }));
            acc.batch_size += 1;
            let number = match row.get(field) {
                Some(Value::Integer(n)) => {
                    acc.int_sum = acc.int_sum.and_then(|s| s.checked_add(*n));
                    *n as f64
                }
                Some(Value::Float(x)) => {
                    acc.all_ints = false;
                    x.get()
                }
                Some(other) => {
                    return Ok(error(
                        "type_mismatch",
                        serde_json::json!({"field": field, "row_index": index, "expected": "int or float", "actual": other.type_name()}),
                    ));
                }
                None => return Ok(error("missing_field", serde_json::json!({"field": field, "row_index": index}))),
            };
            acc.count += 1;
            acc.float_sum += number;
            acc.min = Some(acc.min.map_or(number, |m| m.min(number)));
            acc.max = Some(acc.max.map_or(number, |m| m.max(number)));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (group_value, acc) in groups.into_values() {
            let float = |x: f64| Finite::new(x).map(Value::Float).ok_or(());
            let sum = match (acc.all_ints, acc.int_sum) {
                (true, Some(sum)) => Value::Integer(sum),
                _ => match float(acc.float_sum) {
                    Ok(value) => value,
                    Err(()) => return Ok(error("batch_failed", serde_json::json!({"error": "float overflow in sum"}))),
                },
            };
            let mut row = Row::new();
            row.insert("count".into(), Value::Integer(acc.count));
            row.insert("sum".into(), sum);
            row.insert("batch_size".into(), Value::Integer(acc.batch_size));
            if self.options.compute_mean {
                let mean = float(acc.float_sum / acc.count as f64).unwrap_or(Value::Null);
                row.insert("mean".into(), mean);
            }
            if self.options.compute_min_max {
                row.insert("min".into(), acc.min.and_then(|m| float(m).ok()).unwrap_or(Value::Null));
                row.insert("max".into(), acc.max.and_then(|m| float(m).ok()).unwrap_or(Value::Null));
            }
            if let Some(group) = &self.options.group_by {
                row.insert(group.clone(), group_value);
            }
            out.push(row);
        }
        let _ = &self.options.required_input_fields;
        Ok(BatchResult::Rows(out))
    }

    fn poll(&mut self, _job: &serde_json::Value, _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        Err(PluginError::Contract("batch_stats never answers pending, so it cannot be polled".into()))
    }
}
