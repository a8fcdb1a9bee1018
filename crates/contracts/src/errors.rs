//! Error types of the contracts crate.

/// A value could not be turned into canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("non-finite number {0} cannot be canonicalised")]
    NonFinite(String),
    #[error("integer {0} is outside the safe range ±(2^53-1)")]
    UnsafeInteger(String),
    #[error("number {0} cannot be represented")]
    UnrepresentableNumber(String),
}

/// A contract was violated while building or parsing an audit value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("unknown {kind} value {value:?}")]
    UnknownEnumValue { kind: &'static str, value: String },
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId { kind: &'static str, value: String, reason: &'static str },
    #[error("invalid hash {0:?}: expected 64 lower-case hex characters")]
    InvalidHash(String),
    #[error("illegal {kind} transition from {from} to {to}")]
    IllegalTransition { kind: &'static str, from: &'static str, to: &'static str },
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}
