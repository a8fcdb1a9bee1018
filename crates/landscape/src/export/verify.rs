//! Offline verification of a JSON Lines export: every record's signature (or
//! hash), the chain over them, the counts and the manifest's own signature.
//! Any edit, deletion, insertion or reordering is reported with the first
//! record where the export stops matching.
//!
//! The file is read line by line (memory does not grow with its size).
//!
//! Trust: a signed export proves, to whoever holds the key, that ELSPETH
//! wrote these records in this order. An unsigned export's hash chain only
//! shows that the file is consistent with itself — anyone who can edit it
//! can recompute the chain. So when a key is given, an unsigned export is an
//! error (a stripped signature is a downgrade, not a weaker success), and
//! without a key an unsigned export verifies only when the caller says
//! unsigned is acceptable.

use std::io::BufRead;

use contracts::canonical_json;
use sha2::{Digest, Sha256};

use super::Signer;

/// The shortest signing key accepted, in bytes: anything shorter is not a
/// secret worth the name.
pub const MIN_KEY_BYTES: usize = 16;

/// Checks that a signing key is long enough to be a secret.
pub fn check_signing_key(key: &[u8]) -> Result<(), VerifyError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(VerifyError::KeyTooShort { length: key.len() });
    }
    Ok(())
}

/// Whether an unsigned export may verify (only without a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsignedExports {
    /// An unsigned export is an error.
    Refuse,
    /// An unsigned export verifies by its hash chain alone (the report says so).
    Allow,
}

/// Why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the export: {0}")]
    Read(String),
    #[error("line {line}: not a JSON record ({reason})")]
    Malformed { line: usize, reason: String },
    #[error("the export has no manifest as its last record")]
    NoManifest,
    #[error("line {line} ({record_type}): the signature does not match the record (edited, or a wrong key)")]
    BadSignature { line: usize, record_type: String },
    #[error("the export is signed; set the signing key (ELSPETH_SIGNING_KEY) to verify it")]
    KeyRequired,
    #[error(
        "the signing key is {length} bytes long; a key shorter than {MIN_KEY_BYTES} bytes is not a secret (use a long random value)"
    )]
    KeyTooShort { length: usize },
    #[error(
        "the export is UNSIGNED but a signing key was given: a signed export was expected. An unsigned hash chain can be \
         recomputed by anyone who can edit the file, so a missing signature is refused, not accepted as a weaker proof"
    )]
    UnsignedWithKey,
    #[error(
        "the export is UNSIGNED: its hash chain shows only that the file is consistent with itself, not that ELSPETH wrote \
         it. Verify a signed export with its key, or accept this with --allow-unsigned"
    )]
    UnsignedNotAllowed,
    #[error("line {line} ({record_type}): {problem}")]
    MixedSignatures { line: usize, record_type: String, problem: &'static str },
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

/// Verifies the text of a JSON Lines export.
pub fn verify_jsonl(text: &str, key: Option<&[u8]>, unsigned: UnsignedExports) -> Result<VerifyReport, VerifyError> {
    verify_reader(text.as_bytes(), key, unsigned)
}

/// Verifies a JSON Lines export read line by line.
pub fn verify_reader(reader: impl BufRead, key: Option<&[u8]>, unsigned: UnsignedExports) -> Result<VerifyReport, VerifyError> {
    if let Some(key) = key {
        check_signing_key(key)?;
    }
    let mut chain = ChainCheck { signer: key.map(Signer::new), unsigned, signed: None, link: "0".repeat(64), records: 0 };
    // The manifest is the last line: each line is checked once the next one
    // shows it was not the last.
    let mut pending: Option<(usize, String)> = None;
    for (idx, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| VerifyError::Read(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((number, text)) = pending.replace((idx + 1, line)) {
            chain.record(number, &text)?;
        }
    }
    let (line, text) = pending.ok_or(VerifyError::NoManifest)?;
    chain.manifest(line, &text)
}

fn parse(line: usize, text: &str) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(VerifyError::Malformed { line, reason: "not an object".into() }),
        Err(e) => Err(VerifyError::Malformed { line, reason: e.to_string() }),
    }
}

fn canonical(line: usize, map: serde_json::Map<String, serde_json::Value>) -> Result<String, VerifyError> {
    canonical_json(&serde_json::Value::Object(map)).map_err(|e| VerifyError::Malformed { line, reason: e.to_string() })
}

/// The running check over the records.
struct ChainCheck {
    /// The key's HMAC state, made once for every record.
    signer: Option<Signer>,
    unsigned: UnsignedExports,
    /// Whether the records are signed, once the first one said.
    signed: Option<bool>,
    link: String,
    records: u64,
}

impl ChainCheck {
    fn record(&mut self, line: usize, text: &str) -> Result<(), VerifyError> {
        let mut record = parse(line, text)?;
        let record_type = record.get("record_type").and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
        if record_type == "manifest" {
            return Err(VerifyError::Malformed { line, reason: "a manifest before the last line".into() });
        }
        let signature = record.remove("signature").map(|s| s.as_str().map(str::to_owned).unwrap_or_default());
        self.mode(line, &record_type, signature.is_some())?;
        let canonical = canonical(line, record)?;
        let mark = match (signature, &self.signer) {
            (Some(signature), Some(signer)) => {
                if signer.sign(canonical.as_bytes()) != signature {
                    return Err(VerifyError::BadSignature { line, record_type });
                }
                signature
            }
            (None, _) => contracts::sha256_hex(canonical.as_bytes()),
            (Some(_), None) => return Err(VerifyError::KeyRequired),
        };
        self.link = contracts::hex_lower(&Sha256::digest(format!("{}{mark}", self.link).as_bytes()));
        self.records += 1;
        Ok(())
    }

    /// Every record signed or none; a signed export needs the key, an
    /// unsigned one is refused with a key and needs consent without one.
    fn mode(&mut self, line: usize, record_type: &str, signed: bool) -> Result<(), VerifyError> {
        match self.signed {
            Some(expected) if expected != signed => {
                let problem = if expected {
                    "has no signature, but the records before it are signed"
                } else {
                    "is signed, but the records before it are not"
                };
                return Err(VerifyError::MixedSignatures { line, record_type: record_type.to_owned(), problem });
            }
            Some(_) => return Ok(()),
            None => self.signed = Some(signed),
        }
        match (signed, &self.signer, self.unsigned) {
            (true, Some(_), _) | (false, None, UnsignedExports::Allow) => Ok(()),
            (true, None, _) => Err(VerifyError::KeyRequired),
            (false, Some(_), _) => Err(VerifyError::UnsignedWithKey),
            (false, None, UnsignedExports::Refuse) => Err(VerifyError::UnsignedNotAllowed),
        }
    }

    fn manifest(mut self, line: usize, text: &str) -> Result<VerifyReport, VerifyError> {
        let mut manifest = parse(line, text)?;
        if manifest.get("record_type").and_then(serde_json::Value::as_str) != Some("manifest") {
            return Err(VerifyError::NoManifest);
        }
        let signed = match manifest.get("signature_algorithm") {
            Some(serde_json::Value::String(algorithm)) if algorithm == "hmac-sha256" => true,
            None | Some(serde_json::Value::Null) => false,
            Some(other) => {
                return Err(VerifyError::Malformed { line, reason: format!("unknown signature_algorithm {other}") });
            }
        };
        self.mode(line, "manifest", signed)?;
        if let Some(signer) = &self.signer {
            let signature = manifest.remove("signature").and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
            if signer.sign(canonical(line, manifest.clone())?.as_bytes()) != signature {
                return Err(VerifyError::BadManifest { line });
            }
        }
        let expected = manifest.get("record_count").and_then(serde_json::Value::as_u64).unwrap_or(u64::MAX);
        let final_hash = manifest.get("final_hash").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        if self.link != final_hash {
            let hint = "see per-record signatures; unsigned exports only detect that something changed".to_owned();
            return Err(VerifyError::BrokenChain { hint });
        }
        if expected != self.records {
            return Err(VerifyError::WrongCount { expected, found: self.records });
        }
        Ok(VerifyReport { records: self.records, signed, final_hash })
    }
}
