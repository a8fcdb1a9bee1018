//! The engine's error type: why a run stopped abnormally.

use contracts::plugin::PluginError;
use landscape::LandscapeError;

/// Why a run stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("audit trail: {0}")]
    Landscape(#[from] LandscapeError),
    #[error("{node}: {source}")]
    Plugin { node: String, source: PluginError },
    #[error("configuration: {0}")]
    Config(String),
    /// A bug in the engine or a plugin breaking the pipeline's contract.
    #[error("internal invariant violated: {0}")]
    Invariant(String),
    #[error("{0} is not supported by this engine yet")]
    Unsupported(String),
    /// A run cannot be resumed (changed settings or input, live owner, a
    /// damaged checkpoint, …).
    #[error("cannot resume: {0}")]
    Resume(String),
}

impl From<contracts::ContractError> for EngineError {
    fn from(error: contracts::ContractError) -> EngineError {
        EngineError::Landscape(LandscapeError::from(error))
    }
}

impl From<contracts::CanonicalError> for EngineError {
    fn from(error: contracts::CanonicalError) -> EngineError {
        EngineError::Landscape(LandscapeError::from(error))
    }
}
