//! Tokenizer for the condition language. Every token carries its character
//! offset so errors can point at it.

use super::parser::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    /// Character (not byte) offset, 0-based.
    pub(crate) pos: usize,
}

const OPERATORS: &[&str] = &[
    "//", "==", "!=", "<=", ">=", "**", "<<", ">>", ":=", "->", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]", "{", "}",
    ",", ":", ".", "&", "|", "^", "~", "@", ";", "=", "!",
];

/// Operators that exist in Python but are outside the language.
pub(crate) const FORBIDDEN_OPERATORS: &[&str] = &["**", "<<", ">>", ":=", "->", "&", "|", "^", "~", "@", ";", "=", "!"];

pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
                let prefix = word.to_ascii_lowercase();
                if ["f", "b", "r", "u", "rb", "br", "fr", "rf"].contains(&prefix.as_str()) {
                    return Err(ParseError::new(start, format!("{word}-prefixed string literals are not allowed")));
                }
            }
            tokens.push(Token { tok: Tok::Name(word), pos: start });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (tok, next) = number(&chars, i)?;
            tokens.push(Token { tok, pos: start });
            i = next;
            continue;
        }
        if c == '\'' || c == '"' {
            let (text, next) = string(&chars, i)?;
            tokens.push(Token { tok: Tok::Str(text), pos: start });
            i = next;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
            return Err(ParseError::new(start, format!("unexpected character {c:?}")));
        };
        tokens.push(Token { tok: Tok::Op(op), pos: start });
        i += op.chars().count();
    }
    tokens.push(Token { tok: Tok::End, pos: chars.len() });
    Ok(tokens)
}

fn number(chars: &[char], start: usize) -> Result<(Tok, usize), ParseError> {
    let mut i = start;
    let mut is_float = false;
    let mut text = String::new();
    if chars[i] == '0' && chars.get(i + 1).is_some_and(|c| matches!(c, 'x' | 'X' | 'o' | 'O' | 'b' | 'B')) {
        return Err(ParseError::new(start, "hexadecimal, octal and binary literals are not allowed"));
    }
    let digits = |i: &mut usize, text: &mut String| {
        while *i < chars.len() && (chars[*i].is_ascii_digit() || chars[*i] == '_') {
            if chars[*i] != '_' {
                text.push(chars[*i]);
            }
            *i += 1;
        }
    };
    digits(&mut i, &mut text);
    if i < chars.len() && chars[i] == '.' {
        is_float = true;
        text.push('.');
        i += 1;
        digits(&mut i, &mut text);
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let mut j = i + 1;
        if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
            j += 1;
        }
        if j < chars.len() && chars[j].is_ascii_digit() {
            is_float = true;
            text.push('e');
            text.extend(&chars[i + 1..j]);
            i = j;
            digits(&mut i, &mut text);
        }
    }
    if i < chars.len() && (chars[i] == 'j' || chars[i] == 'J') {
        return Err(ParseError::new(start, "complex literals are not allowed"));
    }
    if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        return Err(ParseError::new(i, "invalid number literal"));
    }
    if is_float {
        let value: f64 = text.parse().map_err(|_| ParseError::new(start, "invalid float literal"))?;
        Ok((Tok::Float(value), i))
    } else {
        let value: i64 = text.parse().map_err(|_| ParseError::new(start, "integer literal is too large"))?;
        Ok((Tok::Int(value), i))
    }
}

fn string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[start];
    if chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote) {
        return Err(ParseError::new(start, "triple-quoted strings are not allowed"));
    }
    let mut i = start + 1;
    let mut text = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((text, i + 1));
        }
        if c == '\n' {
            break;
        }
        if c == '\\' {
            let Some(&escaped) = chars.get(i + 1) else { break };
            i += 2;
            match escaped {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                '0' => text.push('\0'),
                '\\' => text.push('\\'),
                '\'' => text.push('\''),
                '"' => text.push('"'),
                'x' => {
                    let hex: String = chars.get(i..i + 2).map(|s| s.iter().collect()).unwrap_or_default();
                    let code = u32::from_str_radix(&hex, 16).map_err(|_| ParseError::new(i - 2, "invalid \\x escape"))?;
                    text.push(char::from_u32(code).ok_or_else(|| ParseError::new(i - 2, "invalid \\x escape"))?);
                    i += 2;
                }
                'u' => {
                    let hex: String = chars.get(i..i + 4).map(|s| s.iter().collect()).unwrap_or_default();
                    let code = u32::from_str_radix(&hex, 16).map_err(|_| ParseError::new(i - 2, "invalid \\u escape"))?;
                    text.push(char::from_u32(code).ok_or_else(|| ParseError::new(i - 2, "invalid \\u escape"))?);
                    i += 4;
                }
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
            continue;
        }
        text.push(c);
        i += 1;
    }
    Err(ParseError::new(start, "unterminated string literal"))
}
