//! Settings: the `settings.yaml` model, loading with located errors and
//! environment interpolation, semantic validation, and secret fingerprinting
//! for what is stored in the audit trail.

mod error;
mod load;
mod locate;
mod model;
mod secrets;
mod validate;

pub use error::{ConfigError, ConfigProblem};
pub use load::{load, parse, LoadedSettings};
pub use model::*;
pub(crate) use secrets::fingerprint;
pub use secrets::{fingerprint_secrets, SecretPolicy};
pub use validate::validate_names_and_keys;

#[cfg(test)]
mod tests;
