//! The gate and trigger condition language: a strict subset of Python
//! expressions, parsed once at load into an AST ([`Expr`]) and evaluated by an
//! interpreter with Python value semantics. Nothing is ever `eval`ed.
//!
//! Allowed: `row['x']`, `row.get('x'[, default])`, subscripts of row-derived
//! values, comparisons (chained, `in`, `not in`, `is [not] None`), `and`, `or`,
//! `not`, `+ - * / // %`, unary `-`/`+`, literals and list/tuple/set/dict
//! displays, `a if c else b`, and the builtins `len str int float bool abs`.
//! Everything else is rejected at parse time with the position of the
//! offending token.

mod ast;
mod eval;
mod lexer;
mod parser;
mod value;

pub use ast::{BinaryOp, Builtin, CompareOp, Expr, Literal};
pub use eval::{EvalError, RowView};
pub use parser::{parse, ParseError};
pub use value::PyValue;

/// A parsed condition, with its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub source: String,
    pub expr: Expr,
}

impl Condition {
    pub fn parse(source: &str) -> Result<Condition, ParseError> {
        Ok(Condition { source: source.to_owned(), expr: parse(source)? })
    }

    /// Whether the expression is statically boolean (comparison, `not`,
    /// boolean literal, `bool(...)`, `and`/`or` of booleans, or a conditional
    /// whose branches are boolean).
    pub fn is_boolean(&self) -> bool {
        self.expr.is_boolean()
    }

    pub fn evaluate(&self, row: &dyn RowView) -> Result<PyValue, EvalError> {
        eval::evaluate(&self.expr, row)
    }

    /// The route label for a result: `true`/`false` for booleans, strings
    /// verbatim, anything else as Python's `str()`.
    #[allow(clippy::wildcard_enum_match_arm, reason = "expression values: only booleans and strings label routes differently")]
    pub fn route_label(value: &PyValue) -> String {
        match value {
            PyValue::Bool(true) => "true".to_owned(),
            PyValue::Bool(false) => "false".to_owned(),
            PyValue::Str(text) => text.clone(),
            other => other.py_str(),
        }
    }
}

#[cfg(test)]
mod tests;
