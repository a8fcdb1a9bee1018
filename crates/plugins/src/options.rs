//! Strict option parsing: every plugin's options are a serde struct that
//! rejects unknown keys; `schema` is parsed with the shared grammar.

use contracts::plugin::{Options, PluginError};
use contracts::schema::SchemaConfig;
use serde::de::DeserializeOwned;

/// Parses options into `T`; errors name the offending key.
pub(crate) fn parse<T: DeserializeOwned>(options: &Options) -> Result<T, PluginError> {
    serde_json::from_value(serde_json::Value::Object(options.clone())).map_err(|e| PluginError::Config(e.to_string()))
}

/// The plugin's declared schema.
pub(crate) fn schema(value: &serde_json::Value) -> Result<SchemaConfig, PluginError> {
    SchemaConfig::parse(value).map_err(PluginError::Config)
}
