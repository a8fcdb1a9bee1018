//! From fetched HTML to the row's content: `raw` keeps the HTML; otherwise
//! the `strip_elements` are removed and the rest becomes Markdown (links,
//! images, tables and emphasis kept; `htmd`) or plain text (visible text
//! joined by single spaces; `scraper`). The fingerprint is the SHA-256 of
//! the content, whitespace-normalised in `content` mode.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    #[default]
    Markdown,
    Text,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FingerprintMode {
    #[default]
    Content,
    Full,
}

/// The content of a page in `format`.
pub(crate) fn extract(html: &str, format: Format, strip: &[String]) -> Result<String, String> {
    match format {
        Format::Raw => Ok(html.to_owned()),
        Format::Markdown => {
            let skip: Vec<&str> = strip.iter().map(String::as_str).collect();
            htmd::HtmlToMarkdown::builder().skip_tags(skip).build().convert(html).map_err(|e| e.to_string())
        }
        Format::Text => {
            let document = scraper::Html::parse_document(html);
            let mut words = Vec::new();
            collect_text(document.root_element(), strip, &mut words);
            Ok(words.join(" "))
        }
    }
}

fn collect_text(element: scraper::ElementRef<'_>, strip: &[String], words: &mut Vec<String>) {
    if strip.iter().any(|tag| tag.eq_ignore_ascii_case(element.value().name())) {
        return;
    }
    for child in element.children() {
        if let Some(text) = child.value().as_text() {
            words.extend(text.split_whitespace().map(str::to_owned));
        } else if let Some(child) = scraper::ElementRef::wrap(child) {
            collect_text(child, strip, words);
        }
    }
}

/// The content's fingerprint.
pub(crate) fn fingerprint(content: &str, mode: FingerprintMode) -> String {
    match mode {
        FingerprintMode::Full => contracts::sha256_hex(content.as_bytes()),
        FingerprintMode::Content => {
            let normalised: Vec<&str> = content.split_whitespace().collect();
            contracts::sha256_hex(normalised.join(" ").as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><title>T</title><style>p{}</style></head><body><h1>Quarterly</h1>\
        <script>alert(1)</script><p>Revenue <b>rose</b> <a href=\"/x\">sharply</a>.</p></body></html>";

    #[test]
    fn formats() {
        let strip = vec!["script".to_owned(), "style".to_owned()];
        let markdown = extract(PAGE, Format::Markdown, &strip).unwrap_or_default();
        assert!(
            markdown.contains("# Quarterly") && markdown.contains("**rose**") && markdown.contains("[sharply](/x)"),
            "{markdown}"
        );
        assert!(!markdown.contains("alert") && !markdown.contains("p{}"), "{markdown}");
        assert_eq!(extract(PAGE, Format::Text, &strip).unwrap_or_default(), "T Quarterly Revenue rose sharply .");
        assert_eq!(extract(PAGE, Format::Raw, &strip).unwrap_or_default(), PAGE);
    }

    #[test]
    fn fingerprints_ignore_whitespace_in_content_mode_only() {
        assert_eq!(fingerprint(" a  b\n", FingerprintMode::Content), fingerprint("a b", FingerprintMode::Content));
        assert_ne!(fingerprint(" a  b\n", FingerprintMode::Full), fingerprint("a b", FingerprintMode::Full));
    }
}
