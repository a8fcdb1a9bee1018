//! Contracts: the vocabulary every other ELSPETH crate speaks.
//!
//! This crate owns the audit enums (with their exact stored string forms and
//! allowed transitions), the id newtypes, the audit record types, the row value
//! model, canonical JSON (RFC 8785) with SHA-256 hashing, and the plugin traits.
//!
//! Architecture invariant: `contracts` depends on no other ELSPETH crate and does
//! no I/O. Record types make illegal audit states unrepresentable: a pending node
//! state has no output hash, a call has exactly one parent, a draft batch has no
//! trigger.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod enums;
pub mod errors;
pub mod hashing;
pub mod ids;
pub mod plugin;
pub mod records;
pub mod schema;
pub mod secrets;
pub mod time;
pub mod value;

pub use canonical::{canonical_json, canonical_json_value, CANONICAL_VERSION};
pub use enums::*;
pub use errors::{CanonicalError, ContractError};
pub use hashing::{error_hash, hex_lower, sha256_hex, sink_write_hash, stable_hash, stable_hash_json, ContentHash};
pub use ids::*;
pub use time::Timestamp;
pub use value::{Finite, Row, Value};
