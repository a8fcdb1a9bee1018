//! The interpreter. Runtime problems (a missing field, a type error, division
//! by zero) are `EvalError` values, never panics; the engine decides what they
//! mean for the token.

use std::fmt;

use contracts::Value;

use super::ast::{BinaryOp, Builtin, CompareOp, Expr, Literal};
use super::value::{float_repr, Number, PyValue};

/// A runtime evaluation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// Python-style error class: `KeyError`, `TypeError`, `ZeroDivisionError`, `ValueError`, `OverflowError`.
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for EvalError {}

fn err<T>(kind: &'static str, message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError { kind, message: message.into() })
}

/// What `row` means during evaluation: field lookup by name (an
/// implementation may also accept original header names).
pub trait RowView {
    fn field(&self, name: &str) -> Option<Value>;
    fn has_field(&self, name: &str) -> bool {
        self.field(name).is_some()
    }
    fn field_names(&self) -> Vec<String>;
}

impl RowView for contracts::Row {
    fn field(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }

    fn field_names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

#[allow(
    clippy::too_many_lines,
    clippy::wildcard_enum_match_arm,
    reason = "expression values: one arm per kind the operation accepts, every other kind is the same type error; one arm per expression kind"
)]
pub(crate) fn evaluate(expr: &Expr, row: &dyn RowView) -> Result<PyValue, EvalError> {
    Ok(match expr {
        Expr::Literal(Literal::None) => PyValue::None,
        Expr::Literal(Literal::Bool(flag)) => PyValue::Bool(*flag),
        Expr::Literal(Literal::Int(n)) => PyValue::Int(*n),
        Expr::Literal(Literal::Float(x)) => PyValue::Float(*x),
        Expr::Literal(Literal::Str(text)) => PyValue::Str(text.clone()),
        Expr::Row => {
            let names = row.field_names();
            PyValue::Dict(
                names
                    .iter()
                    .map(|n| (PyValue::Str(n.clone()), row.field(n).map_or(PyValue::None, |v| PyValue::from_value(&v))))
                    .collect(),
            )
        }
        Expr::List(items) => PyValue::List(items.iter().map(|i| evaluate(i, row)).collect::<Result<_, _>>()?),
        Expr::Tuple(items) => PyValue::Tuple(items.iter().map(|i| evaluate(i, row)).collect::<Result<_, _>>()?),
        Expr::Set(items) => {
            let mut set: Vec<PyValue> = Vec::new();
            for item in items {
                let value = evaluate(item, row)?;
                hashable(&value)?;
                if !set.iter().any(|existing| existing.py_eq(&value)) {
                    set.push(value);
                }
            }
            PyValue::Set(set)
        }
        Expr::Dict(pairs) => {
            let mut dict: Vec<(PyValue, PyValue)> = Vec::new();
            for (key, value) in pairs {
                let key = evaluate(key, row)?;
                hashable(&key)?;
                let value = evaluate(value, row)?;
                if let Some(slot) = dict.iter_mut().find(|(k, _)| k.py_eq(&key)) {
                    slot.1 = value;
                } else {
                    dict.push((key, value));
                }
            }
            PyValue::Dict(dict)
        }
        Expr::Subscript { base, index } => {
            let index = evaluate(index, row)?;
            if **base == Expr::Row {
                let PyValue::Str(name) = &index else {
                    return err("KeyError", index.py_repr());
                };
                return match row.field(name) {
                    Some(value) => Ok(PyValue::from_value(&value)),
                    None => err("KeyError", format!("'{name}' (row has no such field)")),
                };
            }
            subscript(&evaluate(base, row)?, &index)?
        }
        Expr::RowGet { key, default } => {
            let key = evaluate(key, row)?;
            let found = match &key {
                PyValue::Str(name) => row.field(name),
                _ => None,
            };
            match (found, default) {
                (Some(value), _) => PyValue::from_value(&value),
                (None, Some(default)) => evaluate(default, row)?,
                (None, None) => PyValue::None,
            }
        }
        Expr::Call { func, args } => {
            let args: Vec<PyValue> = args.iter().map(|a| evaluate(a, row)).collect::<Result<_, _>>()?;
            call(*func, args.first())?
        }
        Expr::Neg(inner) => match evaluate(inner, row)?.number() {
            Some(Number::Int(n)) => PyValue::Int(n.checked_neg().ok_or_else(overflow)?),
            Some(Number::Float(x)) => PyValue::Float(-x),
            None => return err("TypeError", "bad operand type for unary -"),
        },
        Expr::Pos(inner) => match evaluate(inner, row)?.number() {
            Some(Number::Int(n)) => PyValue::Int(n),
            Some(Number::Float(x)) => PyValue::Float(x),
            None => return err("TypeError", "bad operand type for unary +"),
        },
        Expr::Not(inner) => PyValue::Bool(!evaluate(inner, row)?.truthy()),
        Expr::And(items) => {
            let mut last = PyValue::Bool(true);
            for item in items {
                last = evaluate(item, row)?;
                if !last.truthy() {
                    return Ok(last);
                }
            }
            last
        }
        Expr::Or(items) => {
            let mut last = PyValue::Bool(false);
            for item in items {
                last = evaluate(item, row)?;
                if last.truthy() {
                    return Ok(last);
                }
            }
            last
        }
        Expr::Binary { op, left, right } => binary(*op, &evaluate(left, row)?, &evaluate(right, row)?)?,
        Expr::Compare { first, rest } => {
            let mut left = evaluate(first, row)?;
            for (op, operand) in rest {
                let right = evaluate(operand, row)?;
                if !compare(*op, &left, &right)? {
                    return Ok(PyValue::Bool(false));
                }
                left = right;
            }
            PyValue::Bool(true)
        }
        Expr::IfElse { body, test, orelse } => {
            if evaluate(test, row)?.truthy() {
                evaluate(body, row)?
            } else {
                evaluate(orelse, row)?
            }
        }
    })
}

fn overflow() -> EvalError {
    EvalError { kind: "OverflowError", message: "integer result out of range".into() }
}

fn hashable(value: &PyValue) -> Result<(), EvalError> {
    match value {
        PyValue::List(_) | PyValue::Dict(_) | PyValue::Set(_) => {
            err("TypeError", format!("unhashable type: '{}'", value.type_name()))
        }
        PyValue::None | PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) | PyValue::Str(_) | PyValue::Tuple(_) => Ok(()),
    }
}

fn subscript(base: &PyValue, index: &PyValue) -> Result<PyValue, EvalError> {
    match base {
        PyValue::Dict(pairs) => match pairs.iter().find(|(k, _)| k.py_eq(index)) {
            Some((_, value)) => Ok(value.clone()),
            None => err("KeyError", index.py_repr()),
        },
        PyValue::List(items) | PyValue::Tuple(items) => {
            let Some(Number::Int(i)) = index.number() else {
                return err("TypeError", format!("{} indices must be integers, not {}", base.type_name(), index.type_name()));
            };
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let resolved = if i < 0 { i + len } else { i };
            match usize::try_from(resolved).ok().and_then(|r| items.get(r)) {
                Some(item) => Ok(item.clone()),
                None => err("IndexError", format!("{} index out of range", base.type_name())),
            }
        }
        PyValue::Str(text) => {
            let Some(Number::Int(i)) = index.number() else {
                return err("TypeError", format!("string indices must be integers, not {}", index.type_name()));
            };
            let chars: Vec<char> = text.chars().collect();
            let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
            let resolved = if i < 0 { i + len } else { i };
            match usize::try_from(resolved).ok().and_then(|r| chars.get(r)) {
                Some(c) => Ok(PyValue::Str(c.to_string())),
                None => err("IndexError", "string index out of range"),
            }
        }
        PyValue::None | PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) | PyValue::Set(_) => {
            err("TypeError", format!("'{}' object is not subscriptable", base.type_name()))
        }
    }
}

#[allow(clippy::wildcard_enum_match_arm, reason = "expression values: every other kind is the same type error")]
fn call(func: Builtin, arg: Option<&PyValue>) -> Result<PyValue, EvalError> {
    let Some(arg) = arg else {
        return Ok(match func {
            Builtin::Str => PyValue::Str(String::new()),
            Builtin::Int => PyValue::Int(0),
            Builtin::Float => PyValue::Float(0.0),
            Builtin::Bool => PyValue::Bool(false),
            Builtin::Len | Builtin::Abs => return err("TypeError", format!("{}() takes exactly one argument", func.name())),
        });
    };
    match func {
        Builtin::Len => match arg {
            PyValue::Str(text) => Ok(PyValue::Int(i64::try_from(text.chars().count()).unwrap_or(i64::MAX))),
            PyValue::List(items) | PyValue::Tuple(items) | PyValue::Set(items) => {
                Ok(PyValue::Int(i64::try_from(items.len()).unwrap_or(i64::MAX)))
            }
            PyValue::Dict(pairs) => Ok(PyValue::Int(i64::try_from(pairs.len()).unwrap_or(i64::MAX))),
            PyValue::None | PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) => {
                err("TypeError", format!("object of type '{}' has no len()", arg.type_name()))
            }
        },
        Builtin::Str => Ok(PyValue::Str(arg.py_str())),
        Builtin::Bool => Ok(PyValue::Bool(arg.truthy())),
        Builtin::Abs => match arg.number() {
            Some(Number::Int(n)) => Ok(PyValue::Int(n.checked_abs().ok_or_else(overflow)?)),
            Some(Number::Float(x)) => Ok(PyValue::Float(x.abs())),
            None => err("TypeError", format!("bad operand type for abs(): '{}'", arg.type_name())),
        },
        Builtin::Int => match arg {
            PyValue::Bool(flag) => Ok(PyValue::Int(i64::from(*flag))),
            PyValue::Int(n) => Ok(PyValue::Int(*n)),
            PyValue::Float(x) => {
                if !x.is_finite() {
                    return err("ValueError", format!("cannot convert float {} to integer", float_repr(*x)));
                }
                let truncated = x.trunc();
                if truncated.abs() >= 9.223_372_036_854_776e18 {
                    return Err(overflow());
                }
                #[allow(clippy::cast_possible_truncation)]
                Ok(PyValue::Int(truncated as i64))
            }
            PyValue::Str(text) => {
                let cleaned = text.trim();
                let valid = !cleaned.is_empty()
                    && !cleaned.starts_with('_')
                    && !cleaned.ends_with('_')
                    && !cleaned.contains("__")
                    && cleaned.trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit() || c == '_');
                let digits: String = cleaned.chars().filter(|c| *c != '_').collect();
                match digits.parse::<i64>() {
                    Ok(n) if valid => Ok(PyValue::Int(n)),
                    _ => err("ValueError", format!("invalid literal for int() with base 10: {}", arg.py_repr())),
                }
            }
            PyValue::None | PyValue::List(_) | PyValue::Tuple(_) | PyValue::Set(_) | PyValue::Dict(_) => {
                err("TypeError", format!("int() argument must be a string or a number, not '{}'", arg.type_name()))
            }
        },
        Builtin::Float => match arg {
            PyValue::Str(text) => {
                let cleaned = text.trim().to_ascii_lowercase();
                let value = match cleaned.as_str() {
                    "nan" | "+nan" | "-nan" => Some(f64::NAN),
                    "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
                    "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
                    other if !other.is_empty() && other.chars().all(|c| c.is_ascii_digit() || "+-.e_".contains(c)) => {
                        other.replace('_', "").parse::<f64>().ok()
                    }
                    _ => None,
                };
                match value {
                    Some(x) => Ok(PyValue::Float(x)),
                    None => err("ValueError", format!("could not convert string to float: {}", arg.py_repr())),
                }
            }
            other => match other.number() {
                Some(number) => Ok(PyValue::Float(number.as_f64())),
                None => err("TypeError", format!("float() argument must be a string or a number, not '{}'", other.type_name())),
            },
        },
    }
}

fn repeat<T: Clone>(items: &[T], times: i64) -> Result<Vec<T>, EvalError> {
    let times = usize::try_from(times.max(0)).unwrap_or(0);
    if items.len().saturating_mul(times) > 10_000_000 {
        return err("MemoryError", "repetition result too large");
    }
    Ok(items.iter().cloned().cycle().take(items.len() * times).collect())
}

fn binary(op: BinaryOp, left: &PyValue, right: &PyValue) -> Result<PyValue, EvalError> {
    if let (Some(a), Some(b)) = (left.number(), right.number()) {
        return numeric(op, a, b);
    }
    match (op, left, right) {
        (BinaryOp::Add, PyValue::Str(a), PyValue::Str(b)) => Ok(PyValue::Str(format!("{a}{b}"))),
        (BinaryOp::Add, PyValue::List(a), PyValue::List(b)) => Ok(PyValue::List(a.iter().chain(b).cloned().collect())),
        (BinaryOp::Add, PyValue::Tuple(a), PyValue::Tuple(b)) => Ok(PyValue::Tuple(a.iter().chain(b).cloned().collect())),
        (BinaryOp::Mul, PyValue::Str(s), n) | (BinaryOp::Mul, n, PyValue::Str(s))
            if matches!(n.number(), Some(Number::Int(_))) =>
        {
            let Some(Number::Int(times)) = n.number() else { unreachable!("guarded by the match arm") };
            let chars: Vec<char> = s.chars().collect();
            Ok(PyValue::Str(repeat(&chars, times)?.into_iter().collect()))
        }
        (BinaryOp::Mul, PyValue::List(items), n) | (BinaryOp::Mul, n, PyValue::List(items))
            if matches!(n.number(), Some(Number::Int(_))) =>
        {
            let Some(Number::Int(times)) = n.number() else { unreachable!("guarded by the match arm") };
            Ok(PyValue::List(repeat(items, times)?))
        }
        _ => err(
            "TypeError",
            format!("unsupported operand type(s) for {}: '{}' and '{}'", op.symbol(), left.type_name(), right.type_name()),
        ),
    }
}

#[allow(clippy::float_cmp)]
fn numeric(op: BinaryOp, a: Number, b: Number) -> Result<PyValue, EvalError> {
    if let (Number::Int(x), Number::Int(y)) = (a, b) {
        return Ok(PyValue::Int(match op {
            BinaryOp::Add => x.checked_add(y).ok_or_else(overflow)?,
            BinaryOp::Sub => x.checked_sub(y).ok_or_else(overflow)?,
            BinaryOp::Mul => x.checked_mul(y).ok_or_else(overflow)?,
            BinaryOp::Div => {
                if y == 0 {
                    return err("ZeroDivisionError", "division by zero");
                }
                return Ok(PyValue::Float(Number::Int(x).as_f64() / Number::Int(y).as_f64()));
            }
            BinaryOp::FloorDiv => {
                if y == 0 {
                    return err("ZeroDivisionError", "integer division or modulo by zero");
                }
                let quotient = x.checked_div(y).ok_or_else(overflow)?;
                if x % y != 0 && ((x % y < 0) != (y < 0)) {
                    quotient - 1
                } else {
                    quotient
                }
            }
            BinaryOp::Mod => {
                if y == 0 {
                    return err("ZeroDivisionError", "integer division or modulo by zero");
                }
                let r = x.checked_rem(y).ok_or_else(overflow)?;
                if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }
            }
        }));
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    Ok(PyValue::Float(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => {
            if y == 0.0 {
                return err("ZeroDivisionError", "float division by zero");
            }
            x / y
        }
        BinaryOp::FloorDiv => {
            if y == 0.0 {
                return err("ZeroDivisionError", "float floor division by zero");
            }
            (x / y).floor()
        }
        BinaryOp::Mod => {
            if y == 0.0 {
                return err("ZeroDivisionError", "float modulo");
            }
            let r = x % y;
            if r != 0.0 && ((r < 0.0) != (y < 0.0)) {
                r + y
            } else {
                r
            }
        }
    }))
}

#[allow(clippy::wildcard_enum_match_arm, reason = "expression values: every other kind is the same type error")]
fn contains(container: &PyValue, item: &PyValue) -> Result<bool, EvalError> {
    match container {
        PyValue::Str(text) => match item {
            PyValue::Str(needle) => Ok(text.contains(needle.as_str())),
            other => err("TypeError", format!("'in <string>' requires string as left operand, not {}", other.type_name())),
        },
        PyValue::List(items) | PyValue::Tuple(items) | PyValue::Set(items) => Ok(items.iter().any(|x| x.py_eq(item))),
        PyValue::Dict(pairs) => Ok(pairs.iter().any(|(k, _)| k.py_eq(item))),
        PyValue::None | PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) => {
            err("TypeError", format!("argument of type '{}' is not iterable", container.type_name()))
        }
    }
}

fn compare(op: CompareOp, left: &PyValue, right: &PyValue) -> Result<bool, EvalError> {
    let order = |wanted: fn(std::cmp::Ordering) -> bool| -> Result<bool, EvalError> {
        if let (Some(a), Some(b)) = (left.number(), right.number()) {
            // NaN compares false, as in Python.
            return Ok(match (a, b) {
                (Number::Int(x), Number::Int(y)) => wanted(x.cmp(&y)),
                (a, b) => a.as_f64().partial_cmp(&b.as_f64()).is_some_and(wanted),
            });
        }
        match left.py_cmp(right) {
            Some(ordering) => Ok(wanted(ordering)),
            None => err(
                "TypeError",
                format!(
                    "'{}' not supported between instances of '{}' and '{}'",
                    op.symbol(),
                    left.type_name(),
                    right.type_name()
                ),
            ),
        }
    };
    match op {
        CompareOp::Eq => Ok(left.py_eq(right)),
        CompareOp::NotEq => Ok(!left.py_eq(right)),
        CompareOp::Lt => order(std::cmp::Ordering::is_lt),
        CompareOp::LtE => order(std::cmp::Ordering::is_le),
        CompareOp::Gt => order(std::cmp::Ordering::is_gt),
        CompareOp::GtE => order(std::cmp::Ordering::is_ge),
        CompareOp::In => contains(right, left),
        CompareOp::NotIn => contains(right, left).map(|found| !found),
        CompareOp::Is => Ok(matches!((left, right), (PyValue::None, PyValue::None))),
        CompareOp::IsNot => Ok(!matches!((left, right), (PyValue::None, PyValue::None))),
    }
}
