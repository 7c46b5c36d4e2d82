//! A tiny JSON writer for the admin tools' `--json` output (no serde_json dependency needed for
//! flat reports).

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Bytes as a JSON string: UTF-8 text as is, other bytes as `\u00XX` of their Latin-1 value
/// (so a byte string round-trips through `chars() as u8` when it is not UTF-8).
pub fn bytes(out: &mut String, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => string(out, s),
        Err(_) => {
            let s: String = b.iter().map(|&x| x as char).collect();
            string(out, &s);
        }
    }
}

/// A JSON object built from (key, already-encoded value) pairs.
#[derive(Default)]
pub struct Object {
    buf: String,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }
    fn key(&mut self, k: &str) {
        self.buf.push(if self.buf.is_empty() { '{' } else { ',' });
        string(&mut self.buf, k);
        self.buf.push(':');
    }
    pub fn str(mut self, k: &str, v: &str) -> Object {
        self.key(k);
        string(&mut self.buf, v);
        self
    }
    pub fn num(mut self, k: &str, v: impl std::fmt::Display) -> Object {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }
    pub fn bool(mut self, k: &str, v: bool) -> Object {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }
    /// `v` must already be valid JSON.
    pub fn raw(mut self, k: &str, v: &str) -> Object {
        self.key(k);
        self.buf.push_str(v);
        self
    }
    pub fn finish(mut self) -> String {
        if self.buf.is_empty() {
            self.buf.push('{');
        }
        self.buf.push('}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_objects() {
        let o = Object::new()
            .str("a", "x\"y\n\u{1}")
            .num("n", 5)
            .bool("b", true)
            .raw("l", "[1,2]")
            .finish();
        assert_eq!(o, r#"{"a":"x\"y\n\u0001","n":5,"b":true,"l":[1,2]}"#);
        assert_eq!(Object::new().finish(), "{}");
        let mut s = String::new();
        bytes(&mut s, b"\xff");
        assert_eq!(s, "\"\u{ff}\"");
    }
}
