//! Loading a settings file: strict YAML parse with located errors, then
//! `${NAME}` / `${NAME:-default}` interpolation in every string value.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigProblem};
use super::model::Settings;

/// A parsed settings file, with its text kept for locating later problems.
#[derive(Debug, Clone)]
pub struct LoadedSettings {
    pub file: PathBuf,
    pub text: String,
    pub settings: Settings,
}

impl LoadedSettings {
    /// A problem at a key path, located in the file when possible.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { location: super::locate::locate(&self.text, path), path: path.to_owned(), message: message.into() }
    }

    pub fn invalid(&self, problems: Vec<ConfigProblem>) -> ConfigError {
        ConfigError::Invalid { file: self.file.clone(), problems }
    }
}

/// Reads and parses a settings file.
pub fn load(file: &Path) -> Result<LoadedSettings, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io { file: file.to_path_buf(), source })?;
    parse(file, &text, &|name| std::env::var(name).ok())
}

/// Parses settings text; `env` resolves variables for interpolation.
pub fn parse(file: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<LoadedSettings, ConfigError> {
    let invalid = |problem: ConfigProblem| ConfigError::Invalid { file: file.to_path_buf(), problems: vec![problem] };
    let deserializer = serde_norway::Deserializer::from_str(text);
    let settings: Settings = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.into_inner();
        let location = inner.location().map(|l| (l.line(), l.column()));
        let full = explain_serde_message(&inner.to_string());
        // serde_norway prefixes the enclosing path itself; keep ours only.
        let message = match full.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') && path.starts_with(prefix) => rest.to_owned(),
            Some(_) | None => full.clone(),
        };
        let location = location.or_else(|| super::locate::locate(text, &path));
        invalid(ConfigProblem { location, path, message })
    })?;
    // JSON (and so the stored settings and every plugin's options) has no
    // infinity or NaN: name each such value where it was written.
    let mut problems = Vec::new();
    if let Ok(document) = serde_norway::from_str::<serde_norway::Value>(text) {
        non_finite_numbers(&document, "", &mut problems);
    }
    if !problems.is_empty() {
        for problem in &mut problems {
            problem.location = super::locate::locate(text, &problem.path);
        }
        return Err(ConfigError::Invalid { file: file.to_path_buf(), problems });
    }
    let mut json = serde_json::to_value(&settings).map_err(|e| invalid(ConfigProblem::new("", e.to_string())))?;
    interpolate(&mut json, "", env, &mut problems);
    expand_files(&mut json, file.parent().unwrap_or_else(|| Path::new("")), &mut problems);
    if !problems.is_empty() {
        for problem in &mut problems {
            problem.location = super::locate::locate(text, &problem.path);
        }
        return Err(ConfigError::Invalid { file: file.to_path_buf(), problems });
    }
    let settings: Settings = serde_json::from_value(json)
        .map_err(|e| invalid(ConfigProblem::new("", format!("after environment interpolation: {e}"))))?;
    Ok(LoadedSettings { file: file.to_path_buf(), text: text.to_owned(), settings })
}

/// Drops serde_norway's own location suffix (we print it in front) and
/// rewords the messages users meet most.
fn explain_serde_message(message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(idx) => &message[..idx],
        None => message,
    };
    let message = message.trim_start_matches(|c: char| c == '.' || c == ':' || c.is_whitespace());
    if message.contains("did not match any variant of untagged enum Branches") {
        return "branches must be a list of branch names or a map of branch name to input connection".to_owned();
    }
    message
        .replace("invalid type: boolean `true`, expected a string", "expected a string; quote YAML booleans ('true')")
        .replace("invalid type: boolean `false`, expected a string", "expected a string; quote YAML booleans ('false')")
}

/// Every number in the document that is infinite or NaN, by settings path.
fn non_finite_numbers(value: &serde_norway::Value, path: &str, problems: &mut Vec<ConfigProblem>) {
    match value {
        serde_norway::Value::Number(number) => {
            if number.as_f64().is_some_and(|f| !f.is_finite()) {
                problems.push(ConfigProblem::new(path, format!("{number} is not a finite number; give a finite value")));
            }
        }
        serde_norway::Value::Sequence(items) => {
            for (idx, item) in items.iter().enumerate() {
                non_finite_numbers(item, &format!("{path}[{idx}]"), problems);
            }
        }
        serde_norway::Value::Mapping(map) => {
            for (key, item) in map {
                let key = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                non_finite_numbers(item, &child, problems);
            }
        }
        serde_norway::Value::Tagged(tagged) => non_finite_numbers(&tagged.value, path, problems),
        serde_norway::Value::Null | serde_norway::Value::Bool(_) | serde_norway::Value::String(_) => {}
    }
}

fn interpolate(
    value: &mut serde_json::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigProblem>,
) {
    match value {
        serde_json::Value::String(text) => {
            if text.contains("${") {
                match interpolate_str(text, env) {
                    Ok(replaced) => *text = replaced,
                    Err(message) => problems.push(ConfigProblem::new(path, message)),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (idx, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{idx}]"), env, problems);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                interpolate(item, &child, env, problems);
            }
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// Plugin option keys that name a file whose content becomes another key
/// (paths relative to the settings file): `template_file` → `template` and
/// `template_source`, `system_prompt_file` → `system_prompt` and
/// `system_prompt_source`, `lookup_file` (YAML; empty is `{}`) → `lookup`
/// and `lookup_source`. The stored settings therefore hold the content.
const FILE_KEYS: [(&str, &str, &str); 3] = [
    ("template_file", "template", "template_source"),
    ("system_prompt_file", "system_prompt", "system_prompt_source"),
    ("lookup_file", "lookup", "lookup_source"),
];

fn expand_files(json: &mut serde_json::Value, base: &Path, problems: &mut Vec<ConfigProblem>) {
    for section in ["transforms", "aggregations"] {
        let Some(items) = json.get_mut(section).and_then(serde_json::Value::as_array_mut) else { continue };
        for (idx, item) in items.iter_mut().enumerate() {
            let Some(options) = item.get_mut("options").and_then(serde_json::Value::as_object_mut) else { continue };
            for (file_key, key, source_key) in FILE_KEYS {
                let Some(named) = options.remove(file_key) else { continue };
                let path = format!("{section}[{idx}].options.{file_key}");
                let Some(name) = named.as_str() else {
                    problems.push(ConfigProblem::new(&path, "expected a file path"));
                    continue;
                };
                if options.contains_key(key) {
                    problems.push(ConfigProblem::new(&path, format!("give either {key} or {file_key}, not both")));
                    continue;
                }
                let full = base.join(name);
                let text = match std::fs::read_to_string(&full) {
                    Ok(text) => text,
                    Err(e) => {
                        problems.push(ConfigProblem::new(&path, format!("cannot read {}: {e}", full.display())));
                        continue;
                    }
                };
                let value = if file_key == "lookup_file" {
                    match serde_norway::from_str::<serde_json::Value>(&text) {
                        Ok(serde_json::Value::Null) => serde_json::json!({}),
                        Ok(value) => value,
                        Err(e) => {
                            problems.push(ConfigProblem::new(&path, format!("{} is not valid YAML: {e}", full.display())));
                            continue;
                        }
                    }
                } else {
                    serde_json::Value::String(text)
                };
                options.insert(key.to_owned(), value);
                options.insert(source_key.to_owned(), serde_json::Value::String(name.to_owned()));
            }
        }
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${NAME}` and `${NAME:-default}`.
pub(crate) fn interpolate_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if is_name(name) {
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set; set it or give a default with ${{{name}:-default}}"
                    ));
                }
            }
        } else {
            out.push_str(&rest[start..=(start + 2 + end)]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
