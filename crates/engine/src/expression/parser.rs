//! Recursive-descent parser with Python's precedence, enforcing the allowed
//! subset as it goes: a construct outside the language is an error pointing
//! at its first token.

use std::fmt;

use super::ast::{BinaryOp, Builtin, CompareOp, Expr, Literal};
use super::lexer::{tokenize, Tok, Token, FORBIDDEN_OPERATORS};

/// Why an expression was rejected, and where (character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError { position, message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.position + 1)
    }
}

impl std::error::Error for ParseError {}

const FORBIDDEN_KEYWORDS: &[&str] = &[
    "lambda", "await", "yield", "for", "async", "import", "from", "del", "global", "nonlocal", "assert", "class", "def",
    "return", "with", "while",
];

/// Parses and validates an expression.
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(source)?;
    let mut parser = Parser { tokens, pos: 0 };
    if matches!(parser.peek().tok, Tok::End) {
        return Err(ParseError::new(0, "empty expression"));
    }
    let expr = parser.expr()?;
    let token = parser.peek();
    if !matches!(token.tok, Tok::End) {
        return Err(Parser::unexpected(&token));
    }
    if !row_usage_ok(&expr) {
        let position = parser
            .tokens
            .windows(2)
            .find(|pair| matches!(&pair[0].tok, Tok::Name(n) if n == "row") && !matches!(pair[1].tok, Tok::Op("[" | ".")))
            .map_or(0, |pair| pair[0].pos);
        return Err(bare_row(position));
    }
    Ok(expr)
}

fn bare_row(position: usize) -> ParseError {
    ParseError::new(position, "'row' must be subscripted (row['field']), used as row.get(...), or be the right side of 'in'")
}

/// `row` on its own is only meaningful as the container of `in` / `not in`.
fn row_usage_ok(expr: &Expr) -> bool {
    let all = |items: &[Expr]| items.iter().all(row_usage_ok);
    match expr {
        Expr::Row => false,
        Expr::Literal(_) => true,
        Expr::List(items) | Expr::Tuple(items) | Expr::Set(items) | Expr::And(items) | Expr::Or(items) => all(items),
        Expr::Dict(pairs) => pairs.iter().all(|(k, v)| row_usage_ok(k) && row_usage_ok(v)),
        Expr::Subscript { base, index } => (**base == Expr::Row || row_usage_ok(base)) && row_usage_ok(index),
        Expr::RowGet { key, default } => row_usage_ok(key) && default.as_deref().is_none_or(row_usage_ok),
        Expr::Call { args, .. } => all(args),
        Expr::Neg(inner) | Expr::Pos(inner) | Expr::Not(inner) => row_usage_ok(inner),
        Expr::Binary { left, right, .. } => row_usage_ok(left) && row_usage_ok(right),
        Expr::Compare { first, rest } => {
            let mut ok = row_usage_ok(first);
            for (op, operand) in rest {
                let container_ok = matches!(op, CompareOp::In | CompareOp::NotIn) && *operand == Expr::Row;
                ok &= container_ok || row_usage_ok(operand);
            }
            ok
        }
        Expr::IfElse { body, test, orelse } => row_usage_ok(body) && row_usage_ok(test) && row_usage_ok(orelse),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.pos].clone()
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(&self.tokens[self.pos].tok, Tok::Op(o) if *o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(&self.tokens[self.pos].tok, Tok::Name(n) if n == name)
    }

    fn is_name_at(&self, offset: usize, name: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset).map(|t| &t.tok), Some(Tok::Name(n)) if n == name)
    }

    fn expect_op(&mut self, op: &str) -> Result<Token, ParseError> {
        if self.is_op(op) {
            Ok(self.advance())
        } else {
            let token = self.peek();
            Err(ParseError::new(token.pos, format!("expected '{op}', found {}", describe(&token.tok))))
        }
    }

    #[allow(clippy::wildcard_enum_match_arm, reason = "tokens: every other token is unexpected here")]
    fn unexpected(token: &Token) -> ParseError {
        match &token.tok {
            Tok::Op(op) if FORBIDDEN_OPERATORS.contains(op) => {
                ParseError::new(token.pos, format!("operator '{op}' is not allowed in conditions"))
            }
            Tok::Name(name) if FORBIDDEN_KEYWORDS.contains(&name.as_str()) => {
                ParseError::new(token.pos, format!("'{name}' is not allowed in conditions"))
            }
            other => ParseError::new(token.pos, format!("unexpected {}", describe(other))),
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        if self.is_name("lambda") {
            return Err(Self::unexpected(&self.peek()));
        }
        let body = self.or_expr()?;
        if self.is_name("if") {
            self.advance();
            let test = self.or_expr()?;
            if !self.is_name("else") {
                let token = self.peek();
                return Err(ParseError::new(token.pos, "conditional expression needs 'else'"));
            }
            self.advance();
            let orelse = self.expr()?;
            return Ok(Expr::IfElse { body: Box::new(body), test: Box::new(test), orelse: Box::new(orelse) });
        }
        if self.is_name("for") {
            let token = self.peek();
            return Err(ParseError::new(token.pos, "comprehensions and generator expressions are not allowed"));
        }
        if self.is_op(":=") {
            let token = self.peek();
            return Err(ParseError::new(token.pos, "assignment expressions (:=) are not allowed"));
        }
        Ok(body)
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.and_expr()?;
        if !self.is_name("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_name("or") {
            self.advance();
            items.push(self.and_expr()?);
        }
        Ok(Expr::Or(items))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.not_expr()?;
        if !self.is_name("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_name("and") {
            self.advance();
            items.push(self.not_expr()?);
        }
        Ok(Expr::And(items))
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        if self.is_name("not") {
            self.advance();
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    #[allow(clippy::wildcard_enum_match_arm, reason = "tokens: every other token is not a comparison operator")]
    fn compare_op(&mut self) -> Option<(CompareOp, usize)> {
        let token = self.peek();
        let op = match &token.tok {
            Tok::Op("==") => CompareOp::Eq,
            Tok::Op("!=") => CompareOp::NotEq,
            Tok::Op("<") => CompareOp::Lt,
            Tok::Op("<=") => CompareOp::LtE,
            Tok::Op(">") => CompareOp::Gt,
            Tok::Op(">=") => CompareOp::GtE,
            Tok::Name(n) if n == "in" => CompareOp::In,
            Tok::Name(n) if n == "not" && self.is_name_at(1, "in") => {
                self.advance();
                CompareOp::NotIn
            }
            Tok::Name(n) if n == "is" => {
                if self.is_name_at(1, "not") {
                    self.advance();
                    CompareOp::IsNot
                } else {
                    CompareOp::Is
                }
            }
            _ => return None,
        };
        self.advance();
        Some((op, token.pos))
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let first = self.arith()?;
        let mut rest = Vec::new();
        let mut previous = first.clone();
        while let Some((op, pos)) = self.compare_op() {
            let operand = self.arith()?;
            if matches!(op, CompareOp::Is | CompareOp::IsNot) {
                let none = Expr::Literal(Literal::None);
                if previous != none && operand != none {
                    return Err(ParseError::new(pos, "'is' and 'is not' are only allowed with None"));
                }
            }
            previous = operand.clone();
            rest.push((op, operand));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Compare { first: Box::new(first), rest })
        }
    }

    fn arith(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        loop {
            let op = if self.is_op("+") {
                BinaryOp::Add
            } else if self.is_op("-") {
                BinaryOp::Sub
            } else {
                return Ok(left);
            };
            self.advance();
            let right = self.term()?;
            left = Expr::Binary { op, left: Box::new(left), right: Box::new(right) };
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.factor()?;
        loop {
            let op = if self.is_op("*") {
                BinaryOp::Mul
            } else if self.is_op("//") {
                BinaryOp::FloorDiv
            } else if self.is_op("/") {
                BinaryOp::Div
            } else if self.is_op("%") {
                BinaryOp::Mod
            } else {
                return Ok(left);
            };
            self.advance();
            let right = self.factor()?;
            left = Expr::Binary { op, left: Box::new(left), right: Box::new(right) };
        }
    }

    fn factor(&mut self) -> Result<Expr, ParseError> {
        if self.is_op("-") {
            self.advance();
            return Ok(Expr::Neg(Box::new(self.factor()?)));
        }
        if self.is_op("+") {
            self.advance();
            return Ok(Expr::Pos(Box::new(self.factor()?)));
        }
        if self.is_op("~") {
            return Err(Self::unexpected(&self.peek()));
        }
        let base = self.postfix()?;
        if self.is_op("**") {
            return Err(Self::unexpected(&self.peek()));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let start = self.peek();
        let mut expr = self.atom()?;
        loop {
            if self.is_op("[") {
                let bracket = self.advance();
                if !expr.is_row_derived() {
                    return Err(ParseError::new(bracket.pos, "only values read from the row can be subscripted"));
                }
                if self.is_op(":") {
                    return Err(ParseError::new(self.peek().pos, "slices are not allowed"));
                }
                let index = self.expr()?;
                if self.is_op(":") {
                    return Err(ParseError::new(self.peek().pos, "slices are not allowed"));
                }
                self.expect_op("]")?;
                expr = Expr::Subscript { base: Box::new(expr), index: Box::new(index) };
            } else if self.is_op(".") {
                let dot = self.advance();
                let attribute = self.advance();
                let is_get = matches!(&attribute.tok, Tok::Name(n) if n == "get");
                if expr != Expr::Row || !is_get {
                    return Err(ParseError::new(dot.pos, "attribute access is not allowed (only row.get(...))"));
                }
                if !self.is_op("(") {
                    return Err(ParseError::new(attribute.pos, "row.get must be called"));
                }
                let paren = self.advance();
                let args = self.call_args()?;
                if args.is_empty() || args.len() > 2 {
                    return Err(ParseError::new(paren.pos, "row.get takes a key and an optional default"));
                }
                let mut args = args.into_iter();
                let key = args.next().map(Box::new).ok_or_else(|| ParseError::new(paren.pos, "row.get needs a key"))?;
                expr = Expr::RowGet { key, default: args.next().map(Box::new) };
            } else if self.is_op("(") {
                return Err(ParseError::new(
                    self.peek().pos,
                    "only the builtins len, str, int, float, bool and abs can be called",
                ));
            } else {
                break;
            }
        }
        if expr == Expr::Row && !self.is_op(")") && !matches!(self.peek().tok, Tok::End | Tok::Name(_)) {
            return Err(bare_row(start.pos));
        }
        Ok(expr)
    }

    /// Arguments after '(' up to and including ')'. Positional only.
    fn call_args(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        while !self.is_op(")") {
            if self.is_op("*") || self.is_op("**") {
                return Err(ParseError::new(self.peek().pos, "starred arguments are not allowed"));
            }
            if matches!(self.peek().tok, Tok::Name(_))
                && matches!(self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Op("=")))
            {
                return Err(ParseError::new(self.peek().pos, "keyword arguments are not allowed"));
            }
            args.push(self.expr()?);
            if self.is_op(",") {
                self.advance();
            } else if !self.is_op(")") {
                let token = self.peek();
                return Err(ParseError::new(token.pos, format!("expected ',' or ')', found {}", describe(&token.tok))));
            }
        }
        self.expect_op(")")?;
        Ok(args)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let token = self.advance();
        match token.tok {
            Tok::Int(n) => Ok(Expr::Literal(Literal::Int(n))),
            Tok::Float(x) => Ok(Expr::Literal(Literal::Float(x))),
            Tok::Str(mut text) => {
                while let Tok::Str(more) = &self.peek().tok {
                    text.push_str(more);
                    self.advance();
                }
                Ok(Expr::Literal(Literal::Str(text)))
            }
            Tok::Name(name) => match name.as_str() {
                "True" => Ok(Expr::Literal(Literal::Bool(true))),
                "False" => Ok(Expr::Literal(Literal::Bool(false))),
                "None" => Ok(Expr::Literal(Literal::None)),
                "row" => Ok(Expr::Row),
                other => {
                    if let Some(func) = Builtin::from_name(other) {
                        if !self.is_op("(") {
                            return Err(ParseError::new(token.pos, format!("builtin '{other}' must be called")));
                        }
                        self.advance();
                        let args = self.call_args()?;
                        if args.len() != 1
                            && !(func == Builtin::Str || func == Builtin::Int || func == Builtin::Float || func == Builtin::Bool)
                        {
                            return Err(ParseError::new(token.pos, format!("{other}() takes exactly one argument")));
                        }
                        if args.len() > 1 {
                            return Err(ParseError::new(token.pos, format!("{other}() takes at most one argument")));
                        }
                        return Ok(Expr::Call { func, args });
                    }
                    if FORBIDDEN_KEYWORDS.contains(&other) || ["and", "or", "not", "in", "is", "if", "else"].contains(&other) {
                        return Err(Self::unexpected(&Token { tok: Tok::Name(name.clone()), pos: token.pos }));
                    }
                    Err(ParseError::new(token.pos, format!("forbidden name '{other}'")))
                }
            },
            Tok::Op("(") => {
                if self.is_op(")") {
                    self.advance();
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let first = self.expr()?;
                if self.is_op(")") {
                    self.advance();
                    return Ok(first);
                }
                let mut items = vec![first];
                while self.is_op(",") {
                    self.advance();
                    if self.is_op(")") {
                        break;
                    }
                    items.push(self.expr()?);
                }
                self.expect_op(")")?;
                Ok(Expr::Tuple(items))
            }
            Tok::Op("[") => {
                let items = self.sequence("]")?;
                Ok(Expr::List(items))
            }
            Tok::Op("{") => self.brace(),
            Tok::Op("*") => Err(ParseError::new(token.pos, "starred expressions are not allowed")),
            Tok::End => Err(ParseError::new(token.pos, "unexpected end of expression")),
            other @ Tok::Op(_) => Err(Self::unexpected(&Token { tok: other, pos: token.pos })),
        }
    }

    fn sequence(&mut self, close: &str) -> Result<Vec<Expr>, ParseError> {
        let mut items = Vec::new();
        while !self.is_op(close) {
            if self.is_op("*") || self.is_op("**") {
                return Err(ParseError::new(self.peek().pos, "unpacking is not allowed"));
            }
            items.push(self.expr()?);
            if self.is_op(",") {
                self.advance();
            } else if !self.is_op(close) {
                let token = self.peek();
                return Err(ParseError::new(token.pos, format!("expected ',' or '{close}', found {}", describe(&token.tok))));
            }
        }
        self.expect_op(close)?;
        Ok(items)
    }

    fn brace(&mut self) -> Result<Expr, ParseError> {
        if self.is_op("}") {
            self.advance();
            return Ok(Expr::Dict(Vec::new()));
        }
        if self.is_op("**") {
            return Err(ParseError::new(self.peek().pos, "unpacking is not allowed"));
        }
        let first = self.expr()?;
        if self.is_op(":") {
            self.advance();
            let value = self.expr()?;
            let mut pairs = vec![(first, value)];
            while self.is_op(",") {
                self.advance();
                if self.is_op("}") {
                    break;
                }
                if self.is_op("**") {
                    return Err(ParseError::new(self.peek().pos, "unpacking is not allowed"));
                }
                let key = self.expr()?;
                self.expect_op(":")?;
                pairs.push((key, self.expr()?));
            }
            self.expect_op("}")?;
            return Ok(Expr::Dict(pairs));
        }
        let mut items = vec![first];
        while self.is_op(",") {
            self.advance();
            if self.is_op("}") {
                break;
            }
            items.push(self.expr()?);
        }
        self.expect_op("}")?;
        Ok(Expr::Set(items))
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Name(name) => format!("name '{name}'"),
        Tok::Int(n) => format!("number {n}"),
        Tok::Float(x) => format!("number {x}"),
        Tok::Str(_) => "a string".to_owned(),
        Tok::Op(op) => format!("'{op}'"),
        Tok::End => "end of expression".to_owned(),
    }
}
