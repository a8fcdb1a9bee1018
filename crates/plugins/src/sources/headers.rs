//! CSV header normalisation (version 1.0.0 of the reference's algorithm):
//! NFC, trim, lower-case, runs of non-word characters to `_`, strip `_`,
//! prefix `_` before a digit, suffix `_` after a Python keyword.

use unicode_normalization::UnicodeNormalization;

const PYTHON_KEYWORDS: &[&str] = &[
    "false", "none", "true", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else",
    "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise",
    "return", "try", "while", "with", "yield",
];

/// The normalised field name of a header, or `None` when nothing is left.
pub fn normalize_header(header: &str) -> Option<String> {
    let text: String = header.nfc().collect::<String>().trim().to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' {
            if ch == '_' {
                if !out.ends_with('_') {
                    out.push('_');
                }
            } else {
                out.push(ch);
            }
            in_run = false;
        } else if !in_run {
            if !out.ends_with('_') {
                out.push('_');
            }
            in_run = true;
        }
    }
    let out = out.trim_matches('_').to_owned();
    if out.is_empty() {
        return None;
    }
    let out = if out.starts_with(|c: char| c.is_ascii_digit()) { format!("_{out}") } else { out };
    Some(if PYTHON_KEYWORDS.contains(&out.as_str()) { format!("{out}_") } else { out })
}

#[cfg(test)]
mod tests {
    use super::normalize_header;

    #[test]
    fn reference_examples() {
        let cases = [
            (" ID ", "id"),
            ("Amount (USD)", "amount_usd"),
            ("Customer ID!!", "customer_id"),
            ("Status [Active/Inactive]", "status_active_inactive"),
            ("NOTES & Comments", "notes_comments"),
            ("class", "class_"),
            ("2024 total", "_2024_total"),
        ];
        for (header, expected) in cases {
            assert_eq!(normalize_header(header).as_deref(), Some(expected), "{header}");
        }
        assert_eq!(normalize_header(" !! "), None);
    }
}
