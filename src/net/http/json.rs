//! A small JSON writer for `/api/v1/status`: objects, arrays, strings, numbers, booleans and
//! null, written in one pass into a `String`, commas placed by the writer.
//!
//! Why not serde: one read-only document of a dozen fields does not need a serialization
//! framework in a 2 MB binary; what matters is string escaping, which is here and tested
//! (RFC 8259 §7: `"` and `\` escaped, every control character below U+0020 escaped, the rest
//! of UTF-8 written as is). Client ids are arbitrary UTF-8 chosen by clients, so this is the
//! one thing that must be right. Non-finite numbers, which JSON cannot hold, become `null`.

use std::fmt::Write;

#[derive(Default)]
pub struct Json {
    out: String,
    /// A value was written at this level: the next key or element needs a comma.
    comma: bool,
}

impl Json {
    pub fn new() -> Json {
        Json { out: String::with_capacity(4096), comma: false }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn before_value(&mut self) {
        if self.comma {
            self.out.push(',');
        }
        self.comma = true;
    }

    /// `"name":` inside an object; the value follows.
    pub fn key(&mut self, name: &str) -> &mut Json {
        self.before_value();
        string_into(&mut self.out, name);
        self.out.push(':');
        self.comma = false;
        self
    }

    pub fn begin_object(&mut self) -> &mut Json {
        self.before_value();
        self.out.push('{');
        self.comma = false;
        self
    }

    pub fn end_object(&mut self) -> &mut Json {
        self.out.push('}');
        self.comma = true;
        self
    }

    pub fn begin_array(&mut self) -> &mut Json {
        self.before_value();
        self.out.push('[');
        self.comma = false;
        self
    }

    pub fn end_array(&mut self) -> &mut Json {
        self.out.push(']');
        self.comma = true;
        self
    }

    pub fn string(&mut self, value: &str) -> &mut Json {
        self.before_value();
        string_into(&mut self.out, value);
        self
    }

    pub fn uint(&mut self, value: u64) -> &mut Json {
        self.before_value();
        let _ = write!(self.out, "{value}");
        self
    }

    /// A number with at most `decimals` digits after the point (trailing zeros kept).
    pub fn float(&mut self, value: f64, decimals: usize) -> &mut Json {
        self.before_value();
        if value.is_finite() {
            let _ = write!(self.out, "{value:.decimals$}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Json {
        self.before_value();
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn null(&mut self) -> &mut Json {
        self.before_value();
        self.out.push_str("null");
        self
    }
}

/// `value` as a JSON string literal, quotes included.
fn string_into(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Other controls; U+2028/U+2029 are valid JSON but end a line in older JavaScript.
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        string_into(&mut out, s);
        out
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_controls_and_keep_other_utf8() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("l1\nl2\r\t\u{8}\u{c}"), r#""l1\nl2\r\t\b\f""#);
        assert_eq!(quoted("\u{1}\u{1f}\u{7f}"), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(quoted("é€😀 ü"), "\"é€😀 ü\"");
        assert_eq!(quoted("a\u{2028}b\u{2029}"), r#""a\u2028b\u2029""#);
        assert_eq!(quoted("</script>"), r#""</script>""#);
        assert_eq!(quoted(""), r#""""#);
    }

    #[test]
    fn commas_go_between_members_and_elements_only() {
        let mut j = Json::new();
        j.begin_object();
        j.key("a").uint(1);
        j.key("b").begin_array();
        j.begin_object().key("x").bool(true).key("y").null().end_object();
        j.begin_object().end_object();
        j.uint(7);
        j.end_array();
        j.key("e").begin_array().end_array();
        j.key("f").float(1.0 / 3.0, 2).key("g").float(f64::NAN, 2);
        j.key("s").string("v");
        j.end_object();
        assert_eq!(
            j.finish(),
            r#"{"a":1,"b":[{"x":true,"y":null},{},7],"e":[],"f":0.33,"g":null,"s":"v"}"#
        );
    }
}
