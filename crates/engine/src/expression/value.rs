//! Runtime values with Python semantics: truthiness, equality across numeric
//! types, ordering that refuses incompatible types, and Python's `str()`.

use contracts::Value;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    Set(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

impl PyValue {
    pub fn from_value(value: &Value) -> PyValue {
        match value {
            Value::Null => PyValue::None,
            Value::Bool(flag) => PyValue::Bool(*flag),
            Value::Integer(n) => PyValue::Int(*n),
            Value::Float(x) => PyValue::Float(x.get()),
            Value::String(text) => PyValue::Str(text.clone()),
            Value::List(items) => PyValue::List(items.iter().map(PyValue::from_value).collect()),
            Value::Object(row) => {
                PyValue::Dict(row.iter().map(|(k, v)| (PyValue::Str(k.clone()), PyValue::from_value(v))).collect())
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Set(_) => "set",
            PyValue::Dict(_) => "dict",
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(flag) => *flag,
            PyValue::Int(n) => *n != 0,
            PyValue::Float(x) => *x != 0.0,
            PyValue::Str(text) => !text.is_empty(),
            PyValue::List(items) | PyValue::Tuple(items) | PyValue::Set(items) => !items.is_empty(),
            PyValue::Dict(pairs) => !pairs.is_empty(),
        }
    }

    /// The numeric view of bools, ints and floats.
    pub(crate) fn number(&self) -> Option<Number> {
        match self {
            PyValue::Bool(flag) => Some(Number::Int(i64::from(*flag))),
            PyValue::Int(n) => Some(Number::Int(*n)),
            PyValue::Float(x) => Some(Number::Float(*x)),
            PyValue::None | PyValue::Str(_) | PyValue::List(_) | PyValue::Tuple(_) | PyValue::Set(_) | PyValue::Dict(_) => None,
        }
    }

    /// Python `==`.
    pub fn py_eq(&self, other: &PyValue) -> bool {
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return a.eq(b);
        }
        match (self, other) {
            (PyValue::None, PyValue::None) => true,
            (PyValue::Str(a), PyValue::Str(b)) => a == b,
            (PyValue::List(a), PyValue::List(b)) | (PyValue::Tuple(a), PyValue::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            (PyValue::Set(a), PyValue::Set(b)) => a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.py_eq(y))),
            (PyValue::Dict(a), PyValue::Dict(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k.py_eq(k2) && v.py_eq(v2)))
            }
            _ => false,
        }
    }

    /// Python ordering; `None` when the types cannot be ordered (a TypeError).
    pub fn py_cmp(&self, other: &PyValue) -> Option<std::cmp::Ordering> {
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return a.partial_cmp(b);
        }
        match (self, other) {
            (PyValue::Str(a), PyValue::Str(b)) => Some(a.cmp(b)),
            (PyValue::List(a), PyValue::List(b)) | (PyValue::Tuple(a), PyValue::Tuple(b)) => {
                for (x, y) in a.iter().zip(b) {
                    if !x.py_eq(y) {
                        return x.py_cmp(y);
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            _ => None,
        }
    }

    /// Python `repr()` (used inside containers).
    #[allow(clippy::wildcard_enum_match_arm, reason = "expression values: only strings print differently")]
    pub fn py_repr(&self) -> String {
        match self {
            PyValue::Str(text) => {
                let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
                let mut out = String::new();
                out.push(quote);
                for ch in text.chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c == quote => {
                            out.push('\\');
                            out.push(c);
                        }
                        c => out.push(c),
                    }
                }
                out.push(quote);
                out
            }
            other => other.py_str(),
        }
    }

    /// Python `str()`.
    pub fn py_str(&self) -> String {
        let join = |items: &[PyValue]| items.iter().map(PyValue::py_repr).collect::<Vec<_>>().join(", ");
        match self {
            PyValue::None => "None".to_owned(),
            PyValue::Bool(true) => "True".to_owned(),
            PyValue::Bool(false) => "False".to_owned(),
            PyValue::Int(n) => n.to_string(),
            PyValue::Float(x) => float_repr(*x),
            PyValue::Str(text) => text.clone(),
            PyValue::List(items) => format!("[{}]", join(items)),
            PyValue::Tuple(items) if items.len() == 1 => format!("({},)", items[0].py_repr()),
            PyValue::Tuple(items) => format!("({})", join(items)),
            PyValue::Set(items) if items.is_empty() => "set()".to_owned(),
            PyValue::Set(items) => format!("{{{}}}", join(items)),
            PyValue::Dict(pairs) => {
                let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{}: {}", k.py_repr(), v.py_repr())).collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}

/// Python's float repr: shortest round-trip digits, exponent form when the
/// exponent is below -4 or at least 16, always with a fractional part or
/// exponent.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".to_owned() } else { "-inf".to_owned() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".to_owned() } else { "0.0".to_owned() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits in scientific form.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() { first.to_owned() } else { format!("{first}.{rest}") };
        return format!("{sign}{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
    }
    let point = exponent + 1;
    if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = usize::try_from(point).unwrap_or(0);
    if digits.len() <= point {
        format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(x) => x,
        }
    }

    #[allow(clippy::float_cmp)]
    fn eq(self, other: Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (a, b) => a.as_f64() == b.as_f64(),
        }
    }

    fn partial_cmp(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}
