//! Flat JSON objects: one result line per scenario, written and read back by `report`.
//!
//! Contract: only what the loadgen itself writes is supported — one object per line whose
//! values are strings, numbers, booleans or null (no nesting). Anything else is a parse error,
//! never a panic. No dependency: the whole format is a few dozen lines.

use std::fmt::Write as _;

/// One value of a flat object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(_) | Value::Null => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Num(_) | Value::Bool(_) | Value::Null => None,
        }
    }
}

/// An ordered flat object; keys keep insertion order so lines stay readable.
#[derive(Debug, Clone, Default)]
pub struct Object {
    fields: Vec<(String, Value)>,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Object {
        self.set(key, Value::Str(value.to_string()))
    }

    pub fn num(&mut self, key: &str, value: f64) -> &mut Object {
        // JSON has no NaN or infinity: a measurement that could not be made is null.
        let value = if value.is_finite() { Value::Num(value) } else { Value::Null };
        self.set(key, value)
    }

    pub fn int(&mut self, key: &str, value: u64) -> &mut Object {
        // Counts in this tool stay far below 2^53, where f64 is exact.
        self.set(key, Value::Num(value as f64))
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Object {
        self.set(key, Value::Bool(value))
    }

    pub fn set(&mut self, key: &str, value: Value) -> &mut Object {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key.to_string(), value)),
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The object on one line.
    pub fn to_line(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, key);
            out.push(':');
            match value {
                Value::Str(s) => write_str(&mut out, s),
                Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                    let _ = write!(out, "{}", *n as i64);
                }
                Value::Num(n) => {
                    let _ = write!(out, "{n:.3}");
                }
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Null => out.push_str("null"),
            }
        }
        out.push('}');
        out
    }

    /// Parses one line written by [`Object::to_line`] (or any flat JSON object).
    pub fn parse(line: &str) -> Result<Object, String> {
        let mut p = Parser { chars: line.trim().chars().collect(), pos: 0 };
        p.expect('{')?;
        let mut object = Object::new();
        p.skip_ws();
        if p.peek() == Some('}') {
            p.pos += 1;
            return Ok(object);
        }
        loop {
            p.skip_ws();
            let key = p.string()?;
            p.skip_ws();
            p.expect(':')?;
            p.skip_ws();
            let value = p.value()?;
            object.set(&key, value);
            p.skip_ws();
            match p.next() {
                Some(',') => continue,
                Some('}') => break,
                other => return Err(format!("expected ',' or '}}' at {}, got {other:?}", p.pos)),
            }
        }
        p.skip_ws();
        if p.pos != p.chars.len() {
            return Err(format!("trailing characters at {}", p.pos));
        }
        Ok(object)
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        match self.next() {
            Some(c) if c == wanted => Ok(()),
            other => Err(format!("expected {wanted:?} at {}, got {other:?}", self.pos)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err("unterminated string".to_string()),
                Some('"') => return Ok(out),
                Some('\\') => match self.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.next()).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| format!("bad \\u escape {hex:?}"))?;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    Some(c) => out.push(c),
                    None => return Err("unterminated escape".to_string()),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('"') => self.string().map(Value::Str),
            Some('t') => self.word("true", Value::Bool(true)),
            Some('f') => self.word("false", Value::Bool(false)),
            Some('n') => self.word("null", Value::Null),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                text.parse::<f64>().map(Value::Num).map_err(|_| format!("bad number {text:?}"))
            }
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        for wanted in word.chars() {
            if self.next() != Some(wanted) {
                return Err(format!("expected {word} at {}", self.pos));
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut o = Object::new();
        o.str("scenario", "fanin_q1").int("lost", 0).num("rate", 1234.5678).bool("ok", true);
        o.str("error", "tab\t\"quoted\"\n").num("nan", f64::NAN);
        let line = o.to_line();
        assert_eq!(
            line,
            r#"{"scenario":"fanin_q1","lost":0,"rate":1234.568,"ok":true,"error":"tab\t\"quoted\"\n","nan":null}"#
        );
        let back = Object::parse(&line).unwrap();
        assert_eq!(back.get("scenario").and_then(Value::as_str), Some("fanin_q1"));
        assert_eq!(back.get("rate").and_then(Value::as_f64), Some(1234.568));
        assert_eq!(back.get("error").and_then(Value::as_str), Some("tab\t\"quoted\"\n"));
        assert_eq!(back.get("nan"), Some(&Value::Null));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Object::parse("{\"a\":[1]}").is_err());
        assert!(Object::parse("{\"a\":1} x").is_err());
        assert!(Object::parse("{\"a\"").is_err());
    }
}
