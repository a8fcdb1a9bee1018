//! Id newtypes, one per kind of audit entity.
//!
//! Generated ids are UUIDv7 (time-ordered, so inserts land on the right-hand
//! edge of every index) rendered as 32 lower-case hex characters. Node ids are
//! not generated here: the DAG builder derives them deterministically from the
//! node's configuration.

use std::fmt;

use crate::errors::ContractError;

/// Widest id any Landscape id column holds.
pub const MAX_ID_LEN: usize = 64;

/// Ids are read back for every record of an export: the character check
/// folds without branching so it compiles to vector code.
#[allow(clippy::needless_bitwise_bool, reason = "no short-circuit: the loop vectorises (measured on the export)")]
fn validate_id(kind: &'static str, text: &str) -> Result<(), ContractError> {
    let reason = if text.is_empty() {
        "empty"
    } else if text.len() > MAX_ID_LEN {
        "longer than 64 characters"
    } else if !text.bytes().fold(true, |valid, b| valid & (b.is_ascii_alphanumeric() | (b == b'_') | (b == b'-'))) {
        "only ASCII letters, digits, '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(ContractError::InvalidId { kind, value: text.to_owned(), reason })
}

/// A fresh UUIDv7 as 32 lower-case hex characters.
pub fn new_uuid_hex() -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    uuid::Uuid::now_v7().simple().encode_lower(&mut buffer).to_owned()
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, generated = $generated:tt) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses an id read from outside (database, command line, caller).
            pub fn parse(text: impl Into<String>) -> Result<Self, ContractError> {
                let text = text.into();
                validate_id(stringify!($name), &text)?;
                Ok($name(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        id_type!(@generate $name, $generated);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ContractError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                $name::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
    (@generate $name:ident, true) => {
        impl $name {
            /// A fresh time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(new_uuid_hex())
            }
        }
    };
    (@generate $name:ident, false) => {};
}

id_type!(/** A run. */ RunId, generated = true);
id_type!(/** A node, derived from its configuration by the DAG builder. */ NodeId, generated = false);
id_type!(/** An edge between two nodes of a run. */ EdgeId, generated = true);
id_type!(/** A source row. */ RowId, generated = true);
id_type!(/** A token: one instance of a row on one DAG path. */ TokenId, generated = true);
id_type!(/** A node state: one visit of a token to a node. */ StateId, generated = true);
id_type!(/** A routing event. */ EventId, generated = true);
id_type!(/** The events of one routing decision. */ RoutingGroupId, generated = true);
id_type!(/** An external call. */ CallId, generated = true);
id_type!(/** An aggregation batch. */ BatchId, generated = true);
id_type!(/** A batch output link. */ BatchOutputId, generated = true);
id_type!(/** An artifact written by a sink. */ ArtifactId, generated = true);
id_type!(/** A token outcome. */ OutcomeId, generated = true);
id_type!(/** A validation or transform error. */ ErrorId, generated = true);
id_type!(/** A checkpoint. */ CheckpointId, generated = true);
id_type!(/** A source or sink operation. */ OperationId, generated = true);
id_type!(/** A secret resolution. */ ResolutionId, generated = true);
id_type!(/** The children of one fork. */ ForkGroupId, generated = true);
id_type!(/** The merged token of one coalesce. */ JoinGroupId, generated = true);
id_type!(/** The children of one expansion. */ ExpandGroupId, generated = true);

#[cfg(test)]
mod tests;
