//! Errors of the Landscape.

use contracts::{CanonicalError, ContractError};

/// Everything that can go wrong reading or writing the audit database.
#[derive(Debug, thiserror::Error)]
pub enum LandscapeError {
    #[error("cannot open the Landscape at {url}: {reason}")]
    Open { url: String, reason: String },
    /// The database holds tables this build does not own, or a newer schema.
    #[error("incompatible Landscape schema: {0}")]
    IncompatibleSchema(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// Tier 1: the audit database holds something impossible, or a write did not
    /// affect exactly the rows it had to.
    #[error("audit integrity error: {0}")]
    Integrity(String),
    /// An illegal lifecycle transition was refused; nothing was written.
    #[error("illegal transition: {0}")]
    IllegalTransition(String),
    /// A write was refused before touching the database because its arguments
    /// contradict the contract (for example a foreign token).
    #[error("invalid audit write: {0}")]
    InvalidWrite(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("payload store: {0}")]
    PayloadStore(#[from] crate::payload_store::PayloadStoreError),
}

impl LandscapeError {
    /// What was looked for and is not there, when that is the error: a
    /// reader's wrong argument rather than a fault of the Landscape.
    pub fn missing(&self) -> Option<&str> {
        match self {
            LandscapeError::NotFound(what) => Some(what),
            LandscapeError::Open { .. }
            | LandscapeError::IncompatibleSchema(_)
            | LandscapeError::Database(_)
            | LandscapeError::Integrity(_)
            | LandscapeError::IllegalTransition(_)
            | LandscapeError::InvalidWrite(_)
            | LandscapeError::Canonical(_)
            | LandscapeError::PayloadStore(_) => None,
        }
    }

    pub(crate) fn integrity(message: impl Into<String>) -> LandscapeError {
        LandscapeError::Integrity(message.into())
    }
}

impl From<ContractError> for LandscapeError {
    fn from(error: ContractError) -> LandscapeError {
        LandscapeError::Integrity(error.to_string())
    }
}

pub type Result<T, E = LandscapeError> = std::result::Result<T, E>;
