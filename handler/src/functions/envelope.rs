//! The custom-handler invocation envelope, decoded defensively.
//!
//! The Functions host serialises binding data with Newtonsoft and sometimes JSON-encodes a value
//! twice (`"\"{...}\""`) and sends metadata numbers as strings (`"DequeueCount": "1"`); this
//! module unwraps those and never panics. A queue message may also arrive as base64 of its text:
//! that is decoded by the one queue-message decoder, `service::batches::decode_message`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// `{"Data": {...}, "Metadata": {...}}` as the host POSTs it to `/<function>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

/// Why an envelope could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the invocation body is not a JSON object")]
    NotAnObject,
    #[error("the invocation has no `{0}` binding data")]
    MissingBinding(String),
    #[error("binding `{0}` is not a usable message")]
    UnusableMessage(String),
}

/// An HTTP request as carried in `Data.<binding>` (`Method`, `Headers`, `Body`, ...).
#[derive(Debug, Clone, Default)]
pub struct HttpRequestData {
    /// `Method`, when present and valid.
    pub method: Option<Method>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Invocation {
    pub fn from_slice(body: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| EnvelopeError::NotAnObject)?;
        let Value::Object(mut object) = unwrap_encoded(value) else {
            return Err(EnvelopeError::NotAnObject);
        };
        let mut take = |key: &str| match object.remove(key).map(unwrap_encoded) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Ok(Self {
            data: take("Data"),
            metadata: take("Metadata"),
        })
    }

    fn binding(&self, name: &str) -> Result<Value, EnvelopeError> {
        self.data
            .get(name)
            .cloned()
            .map(unwrap_encoded)
            .ok_or_else(|| EnvelopeError::MissingBinding(name.to_owned()))
    }

    /// The HTTP request of an HTTP-triggered function.
    pub fn http_request(&self, binding: &str) -> Result<HttpRequestData, EnvelopeError> {
        let Value::Object(request) = self.binding(binding)? else {
            return Err(EnvelopeError::MissingBinding(binding.to_owned()));
        };
        let mut headers = HeaderMap::new();
        if let Some(Value::Object(raw)) = request.get("Headers").cloned().map(unwrap_encoded) {
            for (name, values) in raw {
                let values = match values {
                    Value::Array(values) => values,
                    single => vec![single],
                };
                for value in values.iter().filter_map(Value::as_str) {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) {
                        headers.append(name, value);
                    }
                }
            }
        }
        let body = match request.get("Body") {
            None | Some(Value::Null) => Bytes::new(),
            Some(Value::String(text)) => Bytes::from(text.clone()),
            // Octet-stream bodies arrive as bytes: Newtonsoft writes byte[] as base64.
            Some(other) => Bytes::from(other.to_string()),
        };
        let method = match request.get("Method") {
            Some(Value::String(method)) => Method::from_bytes(method.as_bytes()).ok(),
            _ => None,
        };
        Ok(HttpRequestData {
            method,
            headers,
            body,
        })
    }

    /// The message text of a queue-triggered function: a JSON object as its JSON text, a string
    /// (once or twice JSON-encoded) as the text it holds. Decoding the text (JSON or base64) is
    /// `service::batches::decode_message`'s, the one decoder both hosts use.
    pub fn queue_message_text(&self, binding: &str) -> Result<String, EnvelopeError> {
        match self.binding(binding)? {
            Value::Object(object) => Ok(Value::Object(object).to_string()),
            Value::String(text) => Ok(text),
            _ => Err(EnvelopeError::UnusableMessage(binding.to_owned())),
        }
    }

    /// `Metadata.DequeueCount`, as a number or a string; a count beyond `u32` (never seen in
    /// practice) reads as `u32::MAX`, past any `maxDequeueCount`.
    pub fn dequeue_count(&self) -> Option<u32> {
        let count: u64 = match self
            .metadata
            .get("DequeueCount")
            .cloned()
            .map(unwrap_encoded)?
        {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        Some(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// `Metadata.Id`, the queue message id.
    pub fn message_id(&self) -> Option<String> {
        match self.metadata.get("Id").cloned().map(unwrap_encoded)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Undoes the host's extra JSON encoding: a string that holds JSON is parsed, at most twice.
/// A plain string (not JSON) stays a string.
pub fn unwrap_encoded(value: Value) -> Value {
    let mut value = value;
    for _ in 0..2 {
        let Value::String(text) = &value else { break };
        let looks_encoded = matches!(
            text.trim_start().as_bytes().first(),
            Some(b'{' | b'[' | b'"')
        );
        match serde_json::from_str::<Value>(text) {
            Ok(decoded) if looks_encoded => value = decoded,
            _ => break,
        }
    }
    value
}

/// `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResult {
    pub outputs: Map<String, Value>,
    pub logs: Vec<String>,
    pub return_value: Value,
}

impl InvocationResult {
    /// Sets the HTTP output binding `binding` from a status, headers and a body (text). The status
    /// is a string, as the host's `HttpOutputBindingResponse` expects.
    #[must_use]
    pub fn with_http(
        mut self,
        binding: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Self {
        let headers: Map<String, Value> = headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), Value::from(value.to_str().ok()?)))
            })
            .collect();
        let response = serde_json::json!({
            "statusCode": status.as_u16().to_string(),
            "body": body,
            "headers": headers,
        });
        self.outputs.insert(binding.to_owned(), response);
        self
    }

    #[must_use]
    pub fn with_output(mut self, binding: &str, value: Value) -> Self {
        self.outputs.insert(binding.to_owned(), value);
        self
    }

    #[must_use]
    pub fn with_log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn double_encoded_values_are_unwrapped_and_plain_strings_kept() {
        let message = json!({"batch_id": "x"});
        let once = Value::from(message.to_string());
        let twice = Value::from(once.to_string());
        assert_eq!(unwrap_encoded(once), message);
        assert_eq!(unwrap_encoded(twice), message);
        assert_eq!(unwrap_encoded(json!("hello")), json!("hello"));
        assert_eq!(unwrap_encoded(json!("\"hello\"")), json!("hello"));
        assert_eq!(unwrap_encoded(json!(5)), json!(5));
    }

    #[test]
    fn dequeue_count_is_read_as_number_or_string() {
        for (metadata, expected) in [
            (json!({"DequeueCount": 3}), Some(3)),
            (json!({"DequeueCount": "2"}), Some(2)),
            (json!({"DequeueCount": "\"4\""}), Some(4)),
            (json!({"DequeueCount": "many"}), None),
            (json!({}), None),
        ] {
            let body = json!({"Data": {}, "Metadata": metadata}).to_string();
            let invocation = Invocation::from_slice(body.as_bytes()).expect("envelope");
            assert_eq!(invocation.dequeue_count(), expected, "{metadata}");
        }
    }

    #[test]
    fn queue_messages_decode_from_every_shape_the_host_sends() {
        use base64::Engine as _;
        let message = json!({"batch_id": "0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10", "records": [{}]});
        let text = message.to_string();
        // (the shape, as the host may deliver it)
        for data in [
            json!(message),
            json!(text),
            json!(Value::from(text.clone()).to_string()),
            json!(base64::engine::general_purpose::STANDARD.encode(&text)),
        ] {
            let body = json!({"Data": {"batch": data}, "Metadata": {}}).to_string();
            let invocation = Invocation::from_slice(body.as_bytes()).expect("envelope");
            let text = invocation.queue_message_text("batch").expect("message");
            let decoded =
                crate::service::batches::decode_message(&text, true, &crate::auth::Clients::off())
                    .expect("a batch message");
            assert_eq!(decoded.to_value(), message, "{data}");
        }
    }

    #[test]
    fn broken_envelopes_are_errors_not_panics() {
        for body in [&b""[..], b"[]", b"\"x\"", b"{", b"null"] {
            let result = Invocation::from_slice(body);
            assert!(
                result.is_err() || result.is_ok_and(|i| i.queue_message_text("batch").is_err())
            );
        }
    }

    #[test]
    fn http_request_headers_accept_arrays_and_single_strings() {
        let body = json!({"Data": {"req": {
            "Method": "POST",
            "Headers": {"Content-Type": ["application/json"], "X-API-Key": "k1", "Bad Header": ["x"]},
            "Body": "{\"a\":1}"
        }}, "Metadata": {}})
        .to_string();
        let request = Invocation::from_slice(body.as_bytes())
            .expect("envelope")
            .http_request("req")
            .expect("req");
        assert_eq!(
            request
                .headers
                .get("content-type")
                .map(axum::http::HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
        assert_eq!(
            request
                .headers
                .get("x-api-key")
                .map(axum::http::HeaderValue::as_bytes),
            Some(&b"k1"[..])
        );
        assert_eq!(&request.body[..], b"{\"a\":1}");
    }
}
