//! Field errors in the shape existing MediFlow clients parse (FastAPI/pydantic's `detail` items).
//!
//! Every message is fixed text (no sets, no addresses, no timestamps), so the same input gives the
//! same error in every process.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One entry of a 422 `detail` list: `{"type","loc","msg","input","ctx"}` in that key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Machine-readable error type (pydantic's vocabulary, e.g. `missing`, `string_too_long`).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: Cow<'static, str>,
    /// Where the error is: `["body", "<field>"]`, `["body", <byte offset>]` for malformed JSON, or
    /// `["header", "<name>"]`.
    #[schema(value_type = Vec<LocStep>, inline)]
    pub loc: Vec<Value>,
    /// Human-readable, stable message.
    pub msg: String,
    /// The offending value as the client sent it: any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub input: Option<Value>,
    /// The rule's parameters, e.g. `{"max_length": 20}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub ctx: Option<Value>,
}

/// One step of a `loc` path: a name (`"body"`, `"header"`, a field or header name) or a byte
/// offset into a malformed body. Describes `FieldError::loc` in the OpenAPI document, which holds
/// the steps as plain JSON values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LocStep {
    Name(String),
    Offset(u64),
}

impl FieldError {
    /// An error on a body field.
    pub fn body(field: &str, kind: &'static str, msg: impl Into<String>, input: Value) -> Self {
        Self {
            kind: Cow::Borrowed(kind),
            loc: vec![Value::from("body"), Value::from(field)],
            msg: msg.into(),
            input: Some(input),
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
