//! The `null` source: yields nothing (used by resume and tests).

use contracts::plugin::{Options, PluginContext, PluginError, PluginInfo, Source, SourceItem, SourcePosition};
use contracts::Determinism;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "null", version: "1.0.0", determinism: Determinism::Deterministic };

pub(crate) struct NullSource;

impl NullSource {
    pub(crate) fn new(options: &Options) -> Result<NullSource, PluginError> {
        if let Some(key) = options.keys().find(|k| !["schema", "on_validation_failure"].contains(&k.as_str())) {
            return Err(PluginError::Config(format!("unknown option {key:?}")));
        }
        Ok(NullSource)
    }
}

impl Source for NullSource {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn next_item(&mut self, _ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError> {
        Ok(None)
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::default()
    }
}
