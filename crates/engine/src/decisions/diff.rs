//! Verify mode's comparison of a live response with the recorded one: a
//! structural JSON diff that lists the paths that differ
//! (`raw_response.choices[0].message.content`), skipping ignored paths
//! (dotted, `*` for any key or index) and, unless lists are ordered,
//! comparing lists as multisets.

use serde_json::Value;

/// How responses are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOptions {
    /// Paths whose values may differ (ids, timestamps, sizes).
    pub ignore_paths: Vec<String>,
    /// Compare lists element by element in order (default: as multisets).
    pub ordered_lists: bool,
}

impl Default for DiffOptions {
    /// Provider ids, timestamps and sizes change on every call.
    fn default() -> DiffOptions {
        let paths = [
            "raw_response.id",
            "raw_response.created",
            "raw_response.system_fingerprint",
            "body.id",
            "body.created",
            "body.system_fingerprint",
            "body_size",
            "headers.date",
            "headers.content-length",
            "headers.x-request-id",
            "headers.openai-processing-ms",
        ];
        DiffOptions { ignore_paths: paths.iter().map(|p| (*p).to_owned()).collect(), ordered_lists: false }
    }
}

/// The paths at which `live` differs from `recorded`, in a stable order.
pub(crate) fn differences(recorded: &Value, live: &Value, options: &DiffOptions) -> Vec<String> {
    let ignore: Vec<Vec<&str>> = options.ignore_paths.iter().map(|p| p.split('.').collect()).collect();
    let mut found = Vec::new();
    walk(recorded, live, &mut Vec::new(), &ignore, options.ordered_lists, &mut found);
    found
}

fn ignored(path: &[String], ignore: &[Vec<&str>]) -> bool {
    ignore
        .iter()
        .any(|pattern| pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, segment)| *p == "*" || p == segment))
}

fn render(path: &[String]) -> String {
    if path.is_empty() {
        return "(root)".to_owned();
    }
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: any two different kinds differ")]
fn walk(recorded: &Value, live: &Value, path: &mut Vec<String>, ignore: &[Vec<&str>], ordered: bool, found: &mut Vec<String>) {
    if ignored(path, ignore) {
        return;
    }
    match (recorded, live) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                path.push(key.clone());
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, path, ignore, ordered, found),
                    _ if ignored(path, ignore) => {}
                    _ => found.push(render(path)),
                }
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) if ordered || a.len() != b.len() => {
            if a.len() != b.len() {
                found.push(render(path));
                return;
            }
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                path.push(index.to_string());
                walk(x, y, path, ignore, ordered, found);
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            // As multisets: each recorded element needs an unused live one
            // equal to it (ignoring ignored paths); element diffs are
            // reported in order only when no pairing exists.
            let mut used = vec![false; b.len()];
            let mut unmatched = Vec::new();
            for (index, x) in a.iter().enumerate() {
                path.push(index.to_string());
                let partner = b.iter().enumerate().position(|(j, y)| {
                    let mut none = Vec::new();
                    !used[j] && {
                        walk(x, y, path, ignore, ordered, &mut none);
                        none.is_empty()
                    }
                });
                match partner {
                    Some(j) => used[j] = true,
                    None => unmatched.push(index),
                }
                path.pop();
            }
            for index in unmatched {
                path.push(index.to_string());
                let y = &b[index];
                walk(&a[index], y, path, ignore, true, found);
                path.pop();
            }
        }
        (x, y) if x == y => {}
        _ => found.push(render(path)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_responses_have_no_differences_ids_and_dates_aside() {
        let recorded =
            json!({"content": "a", "raw_response": {"id": "x-1", "created": 1, "choices": [{"message": {"content": "a"}}]}});
        let live =
            json!({"content": "a", "raw_response": {"id": "x-2", "created": 9, "choices": [{"message": {"content": "a"}}]}});
        assert!(differences(&recorded, &live, &DiffOptions::default()).is_empty());
    }

    #[test]
    fn differing_paths_are_named() {
        let recorded =
            json!({"content": "a", "usage": {"prompt_tokens": 3}, "raw_response": {"choices": [{"message": {"content": "a"}}]}});
        let live = json!({"content": "b", "usage": {}, "raw_response": {"choices": [{"message": {"content": "b"}}]}});
        assert_eq!(
            differences(&recorded, &live, &DiffOptions::default()),
            vec!["content", "raw_response.choices[0].message.content", "usage.prompt_tokens"]
        );
    }

    #[test]
    fn lists_are_multisets_unless_ordered() {
        let recorded = json!({"tags": ["a", "b", {"k": 1}]});
        let live = json!({"tags": [{"k": 1}, "b", "a"]});
        assert!(differences(&recorded, &live, &DiffOptions::default()).is_empty());
        let ordered = DiffOptions { ordered_lists: true, ..DiffOptions::default() };
        assert_eq!(differences(&recorded, &live, &ordered), vec!["tags[0]", "tags[2]"]);
        assert_eq!(differences(&json!({"tags": [1]}), &json!({"tags": [1, 2]}), &DiffOptions::default()), vec!["tags"]);
    }

    #[test]
    fn wildcards_ignore_any_key_or_index() {
        let options = DiffOptions { ignore_paths: vec!["items.*.at".into()], ordered_lists: true };
        let recorded = json!({"items": [{"at": 1, "v": 1}, {"at": 2, "v": 2}]});
        let live = json!({"items": [{"at": 5, "v": 1}, {"at": 6, "v": 3}]});
        assert_eq!(differences(&recorded, &live, &options), vec!["items[1].v"]);
    }
}
