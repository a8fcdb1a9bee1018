//! Loading a pipeline: settings file → validated settings → graph and
//! plugins. `elspeth validate` and `elspeth run` both come through here, so
//! validation checks exactly what a run will execute.

use std::path::Path;

use contracts::plugin::PluginRegistry;

use crate::dag::{build, Graph, PipelinePlugins};
use crate::settings::{load, validate_names_and_keys, ConfigError, LoadedSettings};

/// A pipeline ready to run.
pub struct Pipeline {
    pub loaded: LoadedSettings,
    pub graph: Graph,
    pub plugins: PipelinePlugins,
}

/// Loads, validates and builds the pipeline of a settings file, reporting
/// every problem found.
pub fn load_pipeline(file: &Path, registry: &dyn PluginRegistry) -> Result<Pipeline, ConfigError> {
    let loaded = load(file)?;
    build_pipeline(loaded, registry)
}

/// Validates and builds already-parsed settings.
pub fn build_pipeline(loaded: LoadedSettings, registry: &dyn PluginRegistry) -> Result<Pipeline, ConfigError> {
    let mut problems = validate_names_and_keys(&loaded);
    match build(&loaded, registry) {
        Ok((graph, plugins)) if problems.is_empty() => Ok(Pipeline { loaded, graph, plugins }),
        Ok(_) => Err(loaded.invalid(problems)),
        Err(more) => {
            for problem in more {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
            Err(loaded.invalid(problems))
        }
    }
}
