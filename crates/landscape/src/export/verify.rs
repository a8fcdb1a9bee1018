//! Offline verification of a JSON Lines export: every record's signature (or
//! hash), the chain over them, the counts and the manifest's own signature.
//! Any edit, deletion, insertion or reordering is reported with the first
//! record where the export stops matching.

use contracts::canonical_json;
use sha2::{Digest, Sha256};

use super::hmac_hex;

/// Why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: not a JSON record ({reason})")]
    Malformed { line: usize, reason: String },
    #[error("the export has no manifest as its last record")]
    NoManifest,
    #[error("line {line} ({record_type}): the signature does not match the record (edited, or a wrong key)")]
    BadSignature { line: usize, record_type: String },
    #[error("the export is signed; set the signing key to verify it")]
    KeyRequired,
    #[error("line {line}: the manifest's signature does not match (edited, or a wrong key)")]
    BadManifest { line: usize },
    #[error(
        "the chain does not match the manifest: a record was edited, inserted, deleted or moved (first differing record: {hint})"
    )]
    BrokenChain { hint: String },
    #[error("the manifest counts {expected} records but the export holds {found}")]
    WrongCount { expected: u64, found: u64 },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub signed: bool,
    pub final_hash: String,
}

/// Verifies the text of a JSON Lines export. Signed exports need `key`.
pub fn verify_jsonl(text: &str, key: Option<&[u8]>) -> Result<VerifyReport, VerifyError> {
    let mut records: Vec<(usize, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    for (idx, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| VerifyError::Malformed { line: idx + 1, reason: e.to_string() })?;
        let serde_json::Value::Object(map) = value else {
            return Err(VerifyError::Malformed { line: idx + 1, reason: "not an object".into() });
        };
        records.push((idx + 1, map));
    }
    let (manifest_line, mut manifest) = records.pop().ok_or(VerifyError::NoManifest)?;
    if manifest.get("record_type").and_then(serde_json::Value::as_str) != Some("manifest") {
        return Err(VerifyError::NoManifest);
    }
    let signed = manifest.get("signature_algorithm").and_then(serde_json::Value::as_str) == Some("hmac-sha256");
    let key = match (signed, key) {
        (true, Some(key)) => Some(key),
        (true, None) => return Err(VerifyError::KeyRequired),
        (false, _) => None,
    };
    if let Some(key) = key {
        let signature = manifest.remove("signature").and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
        let canonical = canonical_json(&serde_json::Value::Object(manifest.clone()))
            .map_err(|e| VerifyError::Malformed { line: manifest_line, reason: e.to_string() })?;
        if hmac_hex(key, canonical.as_bytes()) != signature {
            return Err(VerifyError::BadManifest { line: manifest_line });
        }
    }
    let mut link = "0".repeat(64);
    for (line, mut record) in records.iter().cloned() {
        let record_type = record.get("record_type").and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
        let mark = match key {
            Some(key) => {
                let signature = record.remove("signature").and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
                let canonical = canonical_json(&serde_json::Value::Object(record))
                    .map_err(|e| VerifyError::Malformed { line, reason: e.to_string() })?;
                if hmac_hex(key, canonical.as_bytes()) != signature {
                    return Err(VerifyError::BadSignature { line, record_type });
                }
                signature
            }
            None => {
                let canonical = canonical_json(&serde_json::Value::Object(record))
                    .map_err(|e| VerifyError::Malformed { line, reason: e.to_string() })?;
                contracts::sha256_hex(canonical.as_bytes())
            }
        };
        link = hex::encode(Sha256::digest(format!("{link}{mark}").as_bytes()));
    }
    let expected_count = manifest.get("record_count").and_then(serde_json::Value::as_u64).unwrap_or(u64::MAX);
    let found = records.len() as u64;
    let final_hash = manifest.get("final_hash").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    if link != final_hash {
        let hint = records.first().map_or_else(
            || "none".to_owned(),
            |_| "see per-record signatures; unsigned exports only detect that something changed".to_owned(),
        );
        return Err(VerifyError::BrokenChain { hint });
    }
    if expected_count != found {
        return Err(VerifyError::WrongCount { expected: expected_count, found });
    }
    Ok(VerifyReport { records: found, signed, final_hash })
}
