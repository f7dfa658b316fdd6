//! Field errors in the shape existing MediFlow clients parse (FastAPI/pydantic's `detail` items).
//!
//! Every message is fixed text (no sets, no addresses, no timestamps), so the same input gives the
//! same error in every process.
//!
//! Errors never copy a whole body: `input` echoes a value as sent only while its JSON text is at
//! most [`MAX_ECHO_BYTES`] (the old shape, which clients rely on); a longer value is echoed as a
//! string holding the start of its JSON text and [`TRUNCATED`]. A field name in `loc` is cut the
//! same way, and [`cap_errors`] keeps a whole `detail` list under [`MAX_DETAIL_BYTES`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of a 422 `detail` list: `{"type","loc","msg","input","ctx"}` in that key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// Machine-readable error type (pydantic's vocabulary, e.g. `missing`, `string_too_long`).
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// Where the error is: `["body", "<field>"]`, `["body", <byte offset>]` for malformed JSON, or
    /// `["header", "<name>"]`.
    pub loc: Vec<Value>,
    /// Human-readable, stable message.
    pub msg: String,
    /// The offending value as the client sent it: any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The rule's parameters, e.g. `{"max_length": 20}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

/// The longest JSON text of an `input` echoed as sent.
pub const MAX_ECHO_BYTES: usize = 2 * 1024;

/// How much of a longer value's JSON text (or of a long field name) is echoed.
pub const ECHO_PREFIX_BYTES: usize = 256;

/// Ends an echo that was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// The largest `detail` list (its JSON text) [`cap_errors`] lets through: an error answer stays
/// under 64 KiB.
pub const MAX_DETAIL_BYTES: usize = 60 * 1024;

/// A writer that refuses to grow past its limit, so measuring a huge value stops early.
struct Bounded {
    text: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > self.limit {
            let room = self.limit - self.text.len();
            self.text.extend_from_slice(&buf[..room]);
            return Err(std::io::Error::other("limit reached"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as an error may echo it: itself when its JSON text is at most [`MAX_ECHO_BYTES`],
/// otherwise the start of that text followed by [`TRUNCATED`]. Never serialises more than
/// `MAX_ECHO_BYTES` bytes, whatever the value's size.
pub fn echo(value: &Value) -> Value {
    let mut out = Bounded {
        text: Vec::new(),
        limit: MAX_ECHO_BYTES,
    };
    if serde_json::to_writer(&mut out, value).is_ok() {
        return value.clone();
    }
    Value::String(format!(
        "{}{TRUNCATED}",
        prefix(&String::from_utf8_lossy(&out.text), ECHO_PREFIX_BYTES)
    ))
}

/// A raw body as an error may echo it: the start of its text followed by [`TRUNCATED`] (used for
/// bodies refused before they are parsed, which are never small).
pub fn echo_prefix(raw: &[u8]) -> Value {
    let cut = &raw[..raw.len().min(ECHO_PREFIX_BYTES)];
    Value::String(format!(
        "{}{TRUNCATED}",
        prefix(&String::from_utf8_lossy(cut), ECHO_PREFIX_BYTES)
    ))
}

/// A client-chosen name as it may appear in an error: cut to [`ECHO_PREFIX_BYTES`].
pub fn echo_name(name: &str) -> String {
    if name.len() <= ECHO_PREFIX_BYTES {
        name.to_owned()
    } else {
        format!("{}{TRUNCATED}", prefix(name, ECHO_PREFIX_BYTES))
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Keeps the errors whose JSON text fits in [`MAX_DETAIL_BYTES`] together; when some do not fit,
/// they are replaced by one `too_many_errors` item that says how many were left out.
pub fn cap_errors(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    // Room for the closing item itself.
    let budget = MAX_DETAIL_BYTES - 512;
    let mut used = 0;
    let mut kept = 0;
    for error in &errors {
        let size = serde_json::to_vec(error).map_or(usize::MAX, |text| text.len() + 1);
        if used + size > budget {
            break;
        }
        used += size;
        kept += 1;
    }
    let left_out = errors.len() - kept;
    if left_out > 0 {
        errors.truncate(kept);
        errors.push(FieldError {
            kind: Cow::Borrowed("too_many_errors"),
            loc: vec![Value::from("body")],
            msg: format!("{left_out} more errors are not listed; fix these and send again"),
            input: None,
            ctx: Some(serde_json::json!({ "not_listed": left_out })),
        });
    }
    errors
}

impl FieldError {
    /// An error on a body field; `input` is echoed within [`MAX_ECHO_BYTES`] (see [`echo`]).
    pub fn body(field: &str, kind: &'static str, msg: impl Into<String>, input: &Value) -> Self {
        Self {
            kind: Cow::Borrowed(kind),
            loc: vec![Value::from("body"), Value::from(echo_name(field))],
            msg: msg.into(),
            input: Some(echo(input)),
            ctx: None,
        }
    }

    /// An error on a request header.
    pub fn header(name: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            kind: Cow::Borrowed(kind),
            loc: vec![Value::from("header"), Value::from(name)],
            msg: msg.into(),
            input: None,
            ctx: None,
        }
    }

    /// An error on a query parameter (its value is not echoed).
    pub fn query(name: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            kind: Cow::Borrowed(kind),
            loc: vec![Value::from("query"), Value::from(echo_name(name))],
            msg: msg.into(),
            input: None,
            ctx: None,
        }
    }

    #[must_use]
    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// The field this error is about, when it is about a body field.
    pub fn field(&self) -> Option<&str> {
        match self.loc.as_slice() {
            [_, Value::String(field)] => Some(field),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn small_inputs_are_echoed_as_sent_and_large_ones_cut() {
        let long_text = "é".repeat(MAX_ECHO_BYTES);
        let cases = [
            (json!("site001"), true, "a short string keeps its shape"),
            (
                json!({"a": [1, 2, 3]}),
                true,
                "a small object keeps its shape",
            ),
            (
                json!(vec![0; 2000]),
                false,
                "an array of 4 KB of text is cut",
            ),
            (
                json!(long_text),
                false,
                "a long string is cut on a char boundary",
            ),
        ];
        for (value, kept, what) in cases {
            let echoed = echo(&value);
            if kept {
                assert_eq!(echoed, value, "{what}");
            } else {
                let text = echoed.as_str().expect(what);
                assert!(text.ends_with(TRUNCATED), "{what}: {text}");
                assert!(text.len() <= ECHO_PREFIX_BYTES + TRUNCATED.len(), "{what}");
            }
        }
    }

    #[test]
    fn a_value_at_the_limit_is_echoed_whole() {
        // JSON text of exactly MAX_ECHO_BYTES: a string of MAX_ECHO_BYTES - 2 plus two quotes.
        let value = Value::String("x".repeat(MAX_ECHO_BYTES - 2));
        assert_eq!(echo(&value), value);
        let over = Value::String("x".repeat(MAX_ECHO_BYTES - 1));
        assert_ne!(echo(&over), over);
    }

    #[test]
    fn long_field_names_are_cut_in_loc() {
        let name = "k".repeat(100_000);
        let error = FieldError::body(&name, "extra_forbidden", "x", &Value::Null);
        assert_eq!(
            error.field().map(str::len),
            Some(ECHO_PREFIX_BYTES + TRUNCATED.len())
        );
    }

    #[test]
    fn a_long_error_list_is_capped_with_a_count_of_the_rest() {
        let many: Vec<FieldError> = (0..25_000)
            .map(|i| FieldError::body(&format!("field{i}"), "extra_forbidden", "x", &json!(i)))
            .collect();
        let capped = cap_errors(many);
        let text = serde_json::to_vec(&json!({ "detail": capped })).expect("json");
        assert!(text.len() <= 64 * 1024, "{}", text.len());
        let last = capped.last().expect("not empty");
        assert_eq!(last.kind, "too_many_errors");
        let listed = capped.len() - 1;
        assert_eq!(last.ctx, Some(json!({ "not_listed": 25_000 - listed })));
        let few = vec![FieldError::body("a", "missing", "x", &Value::Null)];
        assert_eq!(cap_errors(few.clone()), few, "a short list is unchanged");
    }
}
