//! Secret-like option values are replaced by HMAC-SHA256 fingerprints before
//! any configuration reaches the audit trail (`settings_json`, `config_json`).
//! Raw secrets are never stored.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where the fingerprint key comes from.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// `ELSPETH_FINGERPRINT_KEY`; without it, configurations holding secrets
    /// are refused.
    pub key: Option<Vec<u8>>,
}

impl SecretPolicy {
    pub fn from_env() -> SecretPolicy {
        SecretPolicy { key: std::env::var("ELSPETH_FINGERPRINT_KEY").ok().filter(|k| !k.is_empty()).map(String::into_bytes) }
    }
}

const EXACT: &[&str] =
    &["api_key", "api-key", "authorization", "connection_string", "credential", "password", "secret", "token", "x-api-key"];
const SUFFIXES: &[&str] = &["_secret", "_key", "_token", "_password", "_credential", "_connection_string"];

pub(crate) fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    !lower.ends_with("_fingerprint") && (EXACT.contains(&lower.as_str()) || SUFFIXES.iter().any(|s| lower.ends_with(s)))
}

pub(crate) fn fingerprint(key: &[u8], secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Replaces every secret-like key (recursively) with `<key>_fingerprint`, and
/// the password of a database URL with its fingerprint. Errors name the path
/// of a secret that cannot be fingerprinted (no key set) or that is given
/// both raw and as a fingerprint.
#[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every non-string secret is fingerprinted as its JSON text")]
pub fn fingerprint_secrets(value: &mut serde_json::Value, policy: &SecretPolicy, path: &str) -> Result<(), String> {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if is_secret_key(&key) {
                    let fingerprint_key = format!("{key}_fingerprint");
                    if map.contains_key(&fingerprint_key) {
                        return Err(format!("{child}: give either {key} or {fingerprint_key}, not both"));
                    }
                    let Some(raw) = map.remove(&key) else { continue };
                    let Some(secret_key) = &policy.key else {
                        return Err(format!(
                            "{child} holds a secret; set ELSPETH_FINGERPRINT_KEY so it can be recorded as a fingerprint \
                             (secrets are never stored raw)"
                        ));
                    };
                    let text = match &raw {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    map.insert(fingerprint_key, serde_json::Value::String(fingerprint(secret_key, &text)));
                } else if let Some(item) = map.get_mut(&key) {
                    if key == "url" || key.ends_with("_url") || key == "dsn" {
                        if let serde_json::Value::String(url) = item {
                            *url = scrub_url_password(url, policy).map_err(|message| format!("{child}: {message}"))?;
                        }
                    }
                    fingerprint_secrets(item, policy, &child)?;
                }
            }
            Ok(())
        }
        serde_json::Value::Array(items) => {
            for (idx, item) in items.iter_mut().enumerate() {
                fingerprint_secrets(item, policy, &format!("{path}[{idx}]"))?;
            }
            Ok(())
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) | serde_json::Value::String(_) => {
            Ok(())
        }
    }
}

/// `scheme://user:password@host` → `scheme://user:fp-<hex>@host`.
fn scrub_url_password(url: &str, policy: &SecretPolicy) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else { return Ok(url.to_owned()) };
    let Some((credentials, host)) = rest.split_once('@') else { return Ok(url.to_owned()) };
    let Some((user, password)) = credentials.split_once(':') else { return Ok(url.to_owned()) };
    let Some(key) = &policy.key else {
        return Err("the URL holds a password; set ELSPETH_FINGERPRINT_KEY so it can be recorded as a fingerprint".to_owned());
    };
    Ok(format!("{scheme}://{user}:fp-{}@{host}", fingerprint(key, password)))
}
