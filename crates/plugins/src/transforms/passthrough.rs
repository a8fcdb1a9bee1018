//! `passthrough`: the row, unchanged.

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Transform, TransformResult};
use contracts::{Determinism, Row};
use serde::Deserialize;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "passthrough", version: "1.0.0", determinism: Determinism::Deterministic };

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PassthroughOptions {
    schema: serde_json::Value,
    #[serde(default)]
    validate_input: bool,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

pub(crate) struct Passthrough;

impl Passthrough {
    pub(crate) fn new(options: &Options) -> Result<Passthrough, PluginError> {
        let options: PassthroughOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        let _ = (options.validate_input, options.required_input_fields);
        Ok(Passthrough)
    }
}

impl Transform for Passthrough {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process(&self, row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        Ok(TransformResult::Row { row, success_reason: None })
    }
}
