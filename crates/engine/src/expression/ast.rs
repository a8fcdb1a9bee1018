//! The expression AST and its printer. Printing then re-parsing gives the
//! same AST.

use std::fmt;

/// A literal constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// The six allowed builtins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Len,
    Str,
    Int,
    Float,
    Bool,
    Abs,
}

impl Builtin {
    pub fn from_name(name: &str) -> Option<Builtin> {
        Some(match name {
            "len" => Builtin::Len,
            "str" => Builtin::Str,
            "int" => Builtin::Int,
            "float" => Builtin::Float,
            "bool" => Builtin::Bool,
            "abs" => Builtin::Abs,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Len => "len",
            Builtin::Str => "str",
            Builtin::Int => "int",
            Builtin::Float => "float",
            Builtin::Bool => "bool",
            Builtin::Abs => "abs",
        }
    }
}

/// Binary arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::FloorDiv => "//",
            BinaryOp::Mod => "%",
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
    In,
    NotIn,
    Is,
    IsNot,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::NotEq => "!=",
            CompareOp::Lt => "<",
            CompareOp::LtE => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtE => ">=",
            CompareOp::In => "in",
            CompareOp::NotIn => "not in",
            CompareOp::Is => "is",
            CompareOp::IsNot => "is not",
        }
    }
}

/// An expression of the condition language.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// The bare name `row` (only valid as the base of a subscript or `.get`).
    Row,
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Set(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    /// `base[index]` where base is row-derived.
    Subscript {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `row.get(key[, default])`.
    RowGet {
        key: Box<Expr>,
        default: Option<Box<Expr>>,
    },
    Call {
        func: Builtin,
        args: Vec<Expr>,
    },
    Neg(Box<Expr>),
    Pos(Box<Expr>),
    Not(Box<Expr>),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// `first op1 e1 op2 e2 …` (chained comparison).
    Compare {
        first: Box<Expr>,
        rest: Vec<(CompareOp, Expr)>,
    },
    IfElse {
        body: Box<Expr>,
        test: Box<Expr>,
        orelse: Box<Expr>,
    },
}

impl Expr {
    /// The fields read as `row['name']` (which fails on a row without
    /// them; `row.get` does not), in order of appearance.
    pub fn fields_read(&self) -> Vec<&str> {
        let mut fields = Vec::new();
        self.collect_fields(&mut fields);
        fields
    }

    fn collect_fields<'e>(&'e self, fields: &mut Vec<&'e str>) {
        let all = |items: &'e [Expr], fields: &mut Vec<&'e str>| items.iter().for_each(|e| e.collect_fields(fields));
        match self {
            Expr::Subscript { base, index } => {
                if let (Expr::Row, Expr::Literal(Literal::Str(name))) = (base.as_ref(), index.as_ref()) {
                    if !fields.contains(&name.as_str()) {
                        fields.push(name);
                    }
                }
                base.collect_fields(fields);
                index.collect_fields(fields);
            }
            Expr::Literal(_) | Expr::Row => {}
            Expr::List(items) | Expr::Tuple(items) | Expr::Set(items) | Expr::And(items) | Expr::Or(items) => all(items, fields),
            Expr::Call { args, .. } => all(args, fields),
            Expr::Dict(pairs) => {
                for (key, value) in pairs {
                    key.collect_fields(fields);
                    value.collect_fields(fields);
                }
            }
            Expr::RowGet { key, default } => {
                key.collect_fields(fields);
                if let Some(default) = default {
                    default.collect_fields(fields);
                }
            }
            Expr::Neg(inner) | Expr::Pos(inner) | Expr::Not(inner) => inner.collect_fields(fields),
            Expr::Binary { left, right, .. } => {
                left.collect_fields(fields);
                right.collect_fields(fields);
            }
            Expr::Compare { first, rest } => {
                first.collect_fields(fields);
                for (_, e) in rest {
                    e.collect_fields(fields);
                }
            }
            Expr::IfElse { body, test, orelse } => {
                body.collect_fields(fields);
                test.collect_fields(fields);
                orelse.collect_fields(fields);
            }
        }
    }

    /// Static boolean detection, as the reference does it.
    pub fn is_boolean(&self) -> bool {
        match self {
            Expr::Compare { .. } | Expr::Not(_) | Expr::Literal(Literal::Bool(_)) => true,
            Expr::Call { func: Builtin::Bool, .. } => true,
            Expr::And(items) | Expr::Or(items) => items.iter().all(Expr::is_boolean),
            Expr::IfElse { body, orelse, .. } => body.is_boolean() && orelse.is_boolean(),
            Expr::Literal(_)
            | Expr::Row
            | Expr::List(_)
            | Expr::Tuple(_)
            | Expr::Set(_)
            | Expr::Dict(_)
            | Expr::Subscript { .. }
            | Expr::RowGet { .. }
            | Expr::Call { .. }
            | Expr::Neg(_)
            | Expr::Pos(_)
            | Expr::Binary { .. } => false,
        }
    }

    /// Whether the value is derived from `row` (may be subscripted).
    pub(crate) fn is_row_derived(&self) -> bool {
        matches!(self, Expr::Row | Expr::RowGet { .. }) || matches!(self, Expr::Subscript { base, .. } if base.is_row_derived())
    }
}

fn write_str_literal(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("'")?;
    for ch in text.chars() {
        match ch {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (idx, item) in items.iter().enumerate() {
        if idx > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Fully parenthesised, so printing never depends on precedence.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Literal::None) => f.write_str("None"),
            Expr::Literal(Literal::Bool(true)) => f.write_str("True"),
            Expr::Literal(Literal::Bool(false)) => f.write_str("False"),
            Expr::Literal(Literal::Int(n)) => write!(f, "{n}"),
            Expr::Literal(Literal::Float(x)) => {
                if x.is_finite() {
                    write!(f, "{x:?}")
                } else if x.is_nan() {
                    f.write_str("float('nan')")
                } else if *x > 0.0 {
                    f.write_str("float('inf')")
                } else {
                    f.write_str("(-float('inf'))")
                }
            }
            Expr::Literal(Literal::Str(text)) => write_str_literal(f, text),
            Expr::Row => f.write_str("row"),
            Expr::List(items) => {
                f.write_str("[")?;
                write_list(f, items)?;
                f.write_str("]")
            }
            Expr::Tuple(items) => {
                f.write_str("(")?;
                write_list(f, items)?;
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Expr::Set(items) => {
                f.write_str("{")?;
                write_list(f, items)?;
                f.write_str("}")
            }
            Expr::Dict(pairs) => {
                f.write_str("{")?;
                for (idx, (key, value)) in pairs.iter().enumerate() {
                    if idx > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
            Expr::Subscript { base, index } => write!(f, "{base}[{index}]"),
            Expr::RowGet { key, default: None } => write!(f, "row.get({key})"),
            Expr::RowGet { key, default: Some(default) } => write!(f, "row.get({key}, {default})"),
            Expr::Call { func, args } => {
                write!(f, "{}(", func.name())?;
                write_list(f, args)?;
                f.write_str(")")
            }
            Expr::Neg(inner) => write!(f, "(-{inner})"),
            Expr::Pos(inner) => write!(f, "(+{inner})"),
            Expr::Not(inner) => write!(f, "(not {inner})"),
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::And(items) | Expr::Or(items) => {
                let joiner = if matches!(self, Expr::And(_)) { " and " } else { " or " };
                f.write_str("(")?;
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        f.write_str(joiner)?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            Expr::Compare { first, rest } => {
                write!(f, "({first}")?;
                for (op, operand) in rest {
                    write!(f, " {} {operand}", op.symbol())?;
                }
                f.write_str(")")
            }
            Expr::IfElse { body, test, orelse } => write!(f, "({body} if {test} else {orelse})"),
        }
    }
}
