//! What a successful answer says: random words, a template, an echo of the
//! last user message, or the next canned response from a JSONL file; and
//! the OpenAI chat-completion body around it.

use std::path::Path;

use rand::Rng;

use crate::config::{ResponseConfig, ResponseMode, Selection};

const WORDS: &[&str] = &[
    "the",
    "model",
    "reviewed",
    "input",
    "carefully",
    "and",
    "found",
    "clear",
    "signal",
    "with",
    "moderate",
    "confidence",
    "overall",
    "positive",
    "negative",
    "neutral",
    "evidence",
    "suggests",
    "a",
    "plausible",
    "reading",
    "of",
    "text",
];

/// Canned responses read from a JSONL file (`{"content": "..."}` per line).
pub fn read_presets(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut contents = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), number + 1))?;
        let Some(content) = value.get("content").and_then(serde_json::Value::as_str) else {
            return Err(format!("{}:{}: each line needs a string \"content\"", path.display(), number + 1));
        };
        contents.push(content.to_owned());
    }
    if contents.is_empty() {
        return Err(format!("{}: no responses", path.display()));
    }
    Ok(contents)
}

/// What one request asked.
pub struct Asked<'a> {
    pub model: &'a str,
    pub last_user_message: &'a str,
    pub request_number: u64,
}

/// The assistant's content for one request.
pub fn content(config: &ResponseConfig, presets: &[String], asked: &Asked<'_>, rng: &mut impl Rng) -> String {
    match config.mode {
        ResponseMode::Echo => asked.last_user_message.to_owned(),
        ResponseMode::Template => config
            .template
            .body
            .replace("{{ model }}", asked.model)
            .replace("{{ last_user_message }}", &asked.last_user_message.replace('"', "\\\""))
            .replace("{{ request_number }}", &asked.request_number.to_string()),
        ResponseMode::Preset => {
            let index = match config.preset.selection {
                Selection::Sequential => usize::try_from(asked.request_number).unwrap_or(0) % presets.len().max(1),
                Selection::Random => rng.random_range(0..presets.len().max(1)),
            };
            presets.get(index).cloned().unwrap_or_default()
        }
        ResponseMode::Random => {
            let count = rng.random_range(config.random.min_words..=config.random.max_words);
            (0..count).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
        }
    }
}

/// An OpenAI chat-completion body.
pub fn completion(model: &str, content: &str, request_number: u64, prompt_chars: usize) -> serde_json::Value {
    let prompt_tokens = prompt_chars.div_ceil(4);
    let completion_tokens = content.len().div_ceil(4);
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    serde_json::json!({
        "id": format!("chatcmpl-chaos-{request_number}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })
}
