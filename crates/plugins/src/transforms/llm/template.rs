//! Prompt templates: Jinja2 in a sandbox (minijinja: no file or attribute
//! access beyond the data given), undefined names are errors, no
//! autoescaping. The context is `row` (the pipeline row) and `lookup` (the
//! lookup data, `{}` when there is none); Python's `dict.items()` and
//! friends work as in the reference.

use minijinja::{Environment, UndefinedBehavior};

use contracts::plugin::PluginError;

/// The compiled templates of one transform.
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    pub(crate) fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_keep_trailing_newline(true);
        Templates { env }
    }

    /// Compiles `source` as template `name`; a syntax error names the line.
    pub(crate) fn add(&mut self, name: &str, source: &str) -> Result<(), PluginError> {
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|e| PluginError::Config(format!("template {name}: {}", describe(&e))))
    }

    /// Whether template `name` reads any `row` field.
    pub(crate) fn reads_row(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok_and(|t| t.undeclared_variables(false).contains("row"))
    }

    /// Renders template `name` with `row` and `lookup`.
    pub(crate) fn render(&self, name: &str, row: &serde_json::Value, lookup: &serde_json::Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        template
            .render(minijinja::context! { row => minijinja::Value::from_serialize(row), lookup => minijinja::Value::from_serialize(lookup) })
            .map_err(|e| describe(&e))
    }
}

fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("{error} (line {line})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_lookups_and_python_methods_render() {
        let mut templates = Templates::new();
        templates
            .add("t", "{{ row.name }}: {% for k, v in lookup.tags.items() %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}")
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let rendered = templates.render("t", &serde_json::json!({"name": "<b>"}), &serde_json::json!({"tags": {"a": 1, "b": 2}}));
        assert_eq!(rendered.as_deref(), Ok("<b>: a=1, b=2"), "no autoescaping, items() works");
        assert!(templates.reads_row("t"));
    }

    #[test]
    fn undefined_names_and_syntax_errors_are_errors() {
        let mut templates = Templates::new();
        assert!(templates.add("bad", "{{ row.x ").is_err());
        templates.add("t", "{{ row.missing }}").unwrap_or_else(|e| panic!("{e}"));
        let error = templates.render("t", &serde_json::json!({}), &serde_json::json!({})).err().unwrap_or_default();
        assert!(error.contains("undefined"), "{error}");
    }
}
