//! Which HTTP header names carry secrets (the reference's rules): their
//! values are fingerprinted in the audit copy of a request and removed from
//! the audit copy of a response.

const EXACT: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "ocp-apim-subscription-key",
    "set-cookie",
    "www-authenticate",
    "proxy-authenticate",
];

const WORDS: &[&str] = &[
    "auth",
    "authkey",
    "authtoken",
    "accesstoken",
    "apikey",
    "authorization",
    "key",
    "secret",
    "token",
    "password",
    "credential",
];

/// Whether a header's value is a secret: an exact name from the list, a
/// name with a secret word as one of its segments (split on anything not
/// alphanumeric), or `x` followed by such a word (`xapikey`).
pub fn is_sensitive_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if EXACT.contains(&lower.as_str()) {
        return true;
    }
    if lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|segment| WORDS.contains(&segment)) {
        return true;
    }
    lower.strip_prefix('x').is_some_and(|rest| WORDS.contains(&rest))
}

#[cfg(test)]
mod tests {
    use super::is_sensitive_header;

    #[test]
    fn the_reference_examples_hold() {
        for sensitive in
            ["Authorization", "api-key", "X-Auth-Token", "x-api-key", "xapikey", "My-Secret", "Ocp-Apim-Subscription-Key"]
        {
            assert!(is_sensitive_header(sensitive), "{sensitive}");
        }
        for plain in ["X-Author", "Content-Type", "HTTP-Referer", "Accept", "keyboard"] {
            assert!(!is_sensitive_header(plain), "{plain}");
        }
    }
}
