//! `jsonb_hash` (PG `jsonb_op.c`), ROUTING.md §3.8.
//!
//! The hash walks the jsonb tokens in *storage* order, so the JSON text is parsed into a small
//! tree first: object keys are stored sorted by (byte length, bytes) with duplicates removed
//! (the last one wins), numbers are `numeric` (hashed with `hash_numeric`, so `1.0` equals `1`),
//! strings are hashed unescaped. Per token: a container start XORs its flag into the hash
//! (`0x40000000` array, `0x20000000` object); every scalar key, value or element rotates the hash
//! left by one and XORs its own hash (null `0x01`, true `0x02`, false `0x04`, string
//! `hash_bytes`, number `hash_numeric`). A scalar root is stored as a one-element "raw scalar"
//! array; an empty root container hashes to 0.
//!
//! Binary form (`jsonb_send`): version byte 1 followed by the JSON text. Text form: the JSON text.

use std::borrow::Cow;

use super::lookup3::hash_bytes;
use super::{HashError, numeric};

const TY: &str = "jsonb";
const JB_FARRAY: u32 = 0x4000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
/// Deeper documents are refused rather than risking the stack.
const MAX_DEPTH: usize = 1000;

enum Value<'a> {
    Null,
    Bool(bool),
    Number(&'a [u8]),
    String(Cow<'a, [u8]>),
    Array(Vec<Value<'a>>),
    Object(Vec<(Cow<'a, [u8]>, Value<'a>)>),
}

fn err(reason: &'static str) -> HashError {
    HashError::text(TY, reason)
}

pub(super) fn binary(b: &[u8]) -> Result<u32, HashError> {
    match b {
        [1, json @ ..] => text(json).map_err(|e| e.as_binary()),
        _ => Err(HashError::binary(TY, "unsupported jsonb version")),
    }
}

pub(super) fn text(s: &[u8]) -> Result<u32, HashError> {
    std::str::from_utf8(s).map_err(|_| err("invalid UTF-8"))?;
    let mut p = Parser { s, i: 0 };
    p.ws();
    let root = p.value(0)?;
    p.ws();
    if p.i != s.len() {
        return Err(err("trailing characters"));
    }
    let mut hash = 0u32;
    match root {
        Value::Array(ref items) if items.is_empty() => Ok(0),
        Value::Object(ref pairs) if pairs.is_empty() => Ok(0),
        Value::Array(_) | Value::Object(_) => {
            container(root, &mut hash)?;
            Ok(hash)
        }
        scalar => {
            hash ^= JB_FARRAY;
            element(scalar, &mut hash)?;
            Ok(hash)
        }
    }
}

fn scalar_hash(v: &Value<'_>) -> Result<u32, HashError> {
    Ok(match v {
        Value::Null => 0x01,
        Value::Bool(true) => 0x02,
        Value::Bool(false) => 0x04,
        Value::String(s) => hash_bytes(s),
        Value::Number(n) => numeric::text(n)?,
        Value::Array(_) | Value::Object(_) => 0,
    })
}

fn element(v: Value<'_>, hash: &mut u32) -> Result<(), HashError> {
    match v {
        Value::Array(_) | Value::Object(_) => container(v, hash),
        scalar => {
            *hash = hash.rotate_left(1) ^ scalar_hash(&scalar)?;
            Ok(())
        }
    }
}

fn container(v: Value<'_>, hash: &mut u32) -> Result<(), HashError> {
    match v {
        Value::Array(items) => {
            *hash ^= JB_FARRAY;
            for item in items {
                element(item, hash)?;
            }
        }
        Value::Object(mut pairs) => {
            *hash ^= JB_FOBJECT;
            // Storage order: shorter keys first, then bytewise; the last duplicate wins.
            pairs.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            let mut pairs = pairs.into_iter().peekable();
            while let Some((key, value)) = pairs.next() {
                if pairs.peek().is_some_and(|(next, _)| *next == key) {
                    continue;
                }
                *hash = hash.rotate_left(1) ^ hash_bytes(&key);
                element(value, hash)?;
            }
        }
        _ => {}
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8], v: Value<'a>) -> Result<Value<'a>, HashError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(err("invalid token"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, HashError> {
        if depth > MAX_DEPTH {
            return Err(err("nesting too deep"));
        }
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut pairs = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::Object(pairs));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(err("object key expected"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(err("':' expected"));
                    }
                    self.i += 1;
                    self.ws();
                    pairs.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Object(pairs));
                        }
                        _ => return Err(err("',' or '}' expected")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(err("',' or ']' expected")),
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(err("value expected")),
        }
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<Value<'a>, HashError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i - from
        };
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(err("invalid number"));
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(err("invalid number"));
            }
        }
        Ok(Value::Number(&self.s[start..self.i]))
    }

    /// A string starting at the opening quote, unescaped to UTF-8.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, HashError> {
        self.i += 1;
        let start = self.i;
        // Fast path: no escapes.
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'"' => {
                    let out = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(out));
                }
                b'\\' => break,
                0..=0x1F => return Err(err("control character in string")),
                _ => self.i += 1,
            }
        }
        let mut out = self.s[start..self.i].to_vec();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(Cow::Owned(out)),
                0..=0x1F => return Err(err("control character in string")),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(err("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0C),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(err("invalid escape")),
                    }
                }
                _ => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, HashError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or(err("invalid unicode escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| err("invalid unicode escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| err("invalid unicode escape"))?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err("invalid unicode escape"));
        }
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: one code point, joining a surrogate pair. `\u0000` is refused, as jsonb does.
    fn unicode_escape(&mut self) -> Result<char, HashError> {
        let first = self.hex4()?;
        let cp = match first {
            0 => return Err(err("unsupported unicode escape \\u0000")),
            0xD800..=0xDBFF => {
                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err(err("unpaired surrogate"));
                }
                self.i += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(err("unpaired surrogate"));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(err("unpaired surrogate")),
            cp => cp,
        };
        char::from_u32(cp).ok_or(err("invalid unicode escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> i32 {
        text(s.as_bytes()).unwrap() as i32
    }

    #[test]
    fn csv_vectors() {
        assert_eq!(h("[]"), 0);
        assert_eq!(h("{}"), 0);
        assert_eq!(h("1"), -822615224);
        assert_eq!(h("\"a\""), -1072467791);
        assert_eq!(
            h(r#"{"k": 1000, "s": "d97e2680caaf02c96f14128dde824ac9"}"#),
            432238279
        );
    }

    #[test]
    fn storage_order_and_equivalences() {
        assert_eq!(h(r#"{"b":1,"a":2}"#), h(r#"{"a":2,"b":1}"#));
        assert_eq!(h(r#"{"aa":1,"b":2}"#), h(r#"{"b":2,"aa":1}"#));
        assert_eq!(h(r#"{"a":1,"a":2}"#), h(r#"{"a":2}"#));
        assert_eq!(h("1.0"), h("1"));
        assert_eq!(h("1e2"), h("100"));
        assert_eq!(h(r#""\u00e9""#), h("\"é\""));
        assert_eq!(h(r#""\ud83d\ude00""#), h("\"😀\""));
        assert_eq!(h(" [1, 2] "), h("[1,2]"));
        assert_ne!(h("[1,2]"), h("[2,1]"));
        assert_eq!(binary(b"\x01[1,2]").unwrap(), text(b"[1,2]").unwrap());
    }

    #[test]
    fn invalid_json_is_an_error() {
        for bad in [
            "",
            "[",
            "{\"a\"}",
            "01",
            "1.",
            "-",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "tru",
            "[1,]",
            "{} x",
        ] {
            assert!(text(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(binary(b"\x02{}").is_err());
        let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
        assert!(text(deep.as_bytes()).is_err());
    }
}
