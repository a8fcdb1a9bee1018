//! SHA-256 hashing of canonical JSON (`stable_hash`) and the hash newtype.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::canonical::{canonical_json, canonical_json_value};
use crate::errors::{CanonicalError, ContractError};
use crate::value::Value;

/// A SHA-256 digest as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

impl ContentHash {
    /// Parses a hash read from outside; anything but 64 lower-case hex is an error.
    pub fn parse(text: impl Into<String>) -> Result<Self, ContractError> {
        let text = text.into();
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(ContentHash(text))
        } else {
            Err(ContractError::InvalidHash(text))
        }
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        ContentHash(sha256_hex(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = ContractError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        ContentHash::parse(text)
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> String {
        hash.0
    }
}

/// Lower-case hex SHA-256 of raw bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

/// Lower-case hex of bytes, written in one pass (`hex::encode` collects an
/// iterator of chars, which showed in profiles of hashing and export).
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, so this cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// SHA-256 of the canonical JSON of a row value.
pub fn stable_hash(value: &Value) -> Result<ContentHash, CanonicalError> {
    Ok(ContentHash::of_bytes(canonical_json_value(value)?.as_bytes()))
}

/// SHA-256 of the canonical JSON of any serialisable value.
pub fn stable_hash_json(value: &serde_json::Value) -> Result<ContentHash, CanonicalError> {
    Ok(ContentHash::of_bytes(canonical_json(value)?.as_bytes()))
}

/// The output hash of a sink node state: it commits to the row written and to
/// the artifact (path and content hash) as it was right after the write, so
/// lineage can name the artifact a row went into and prove it.
pub fn sink_write_hash(
    row_hash: &ContentHash,
    artifact_path: &str,
    artifact_hash: &ContentHash,
) -> Result<ContentHash, CanonicalError> {
    stable_hash_json(&serde_json::json!({
        "row": row_hash.as_str(),
        "artifact_path": artifact_path,
        "content_hash": artifact_hash.as_str(),
    }))
}

/// The error hash recorded on failed, quarantined and diverted outcomes: the
/// first 16 hex characters of the SHA-256 of the error message.
pub fn error_hash(message: &str) -> String {
    let mut hash = sha256_hex(message.as_bytes());
    hash.truncate(16);
    hash
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn hex_lower_is_hex_encode() {
        for bytes in [&b""[..], b"\x00\xff\x10", b"elspeth"] {
            assert_eq!(super::hex_lower(bytes), hex::encode(bytes));
        }
    }
}
