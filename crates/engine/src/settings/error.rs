//! Configuration errors: each problem names the file, the line and column
//! when known, the key path, and what was expected.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line and column, when the problem can be pinned to one.
    pub location: Option<(usize, usize)>,
    /// Key path such as `gates[0].routes` (empty for the whole document).
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { location: None, path: path.into(), message: message.into() }
    }
}

/// Why a settings file could not be turned into a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{}", render(file, problems))]
    Invalid { file: PathBuf, problems: Vec<ConfigProblem> },
}

impl ConfigError {
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(file: &std::path::Path, problems: &[ConfigProblem]) -> String {
    let mut out = String::new();
    for (idx, problem) in problems.iter().enumerate() {
        if idx > 0 {
            out.push('\n');
        }
        out.push_str(&problem.display_in(file).to_string());
    }
    out
}

/// A problem rendered with its file: `file:line:col: path: message`.
pub struct Located<'a> {
    file: &'a std::path::Path,
    problem: &'a ConfigProblem,
}

impl ConfigProblem {
    pub fn display_in<'a>(&'a self, file: &'a std::path::Path) -> Located<'a> {
        Located { file, problem: self }
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.problem.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.problem.path.is_empty() {
            write!(f, ": {}", self.problem.path)?;
        }
        write!(f, ": {}", self.problem.message)
    }
}
