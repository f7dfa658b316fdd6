//! Batches: the queue message batch submitters send, and the report of what became of it.
//!
//! A batch is ingested at least once (queues redeliver); it takes effect exactly once because
//! every record's id is derived from `(batch_id, index)` and stores only insert absent ids.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::errors::FieldError;
use super::hex;
use super::identity::Principal;
use super::record::RecordId;

/// The id a batch submitter chose for its batch (any UUID), written in lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(Uuid);

impl BatchId {
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::try_parse(raw).ok().map(Self)
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    /// The id the batch is stored (and its records derived) under: the submitter's id for the
    /// legacy and anonymous callers (as before), else one derived from the client and the id, so
    /// two clients' batch ids never meet.
    #[must_use]
    pub fn scoped(self, client: Option<&str>) -> Self {
        match client {
            None => self,
            Some(client) => Self(Uuid::new_v5(&self.0, client.as_bytes())),
        }
    }
}

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A decoded batch message: `{"batch_id": "<uuid>", "records": [<record>, ...]}`. The records stay
/// raw JSON here; each is decoded exactly as POST /records decodes a body.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    pub batch_id: BatchId,
    pub records: Vec<Value>,
    /// SHA-256 of the message's canonical JSON: tells a redelivery from a different batch that
    /// reuses the id.
    pub content_sha256: String,
    /// Who submitted it (set by the transport that attributed it; legacy until then).
    pub submitter: Principal,
}

impl BatchMessage {
    /// The largest message JSON accepted: 48 KiB, which base64-encodes to the 64 KiB limit of an
    /// Azure Storage queue message.
    pub const MAX_JSON_BYTES: usize = 48 * 1024;
    /// At most this many records per batch.
    pub const MAX_RECORDS: usize = 1000;

    /// Decodes and checks the envelope (not the records, which are judged one by one).
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per envelope rule; splitting hides the rules"
    )]
    pub fn from_value(value: Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(mut object) = value else {
            return Err(vec![FieldError {
                kind: "model_attributes_type".into(),
                loc: vec![Value::from("body")],
                msg: "Input should be a valid dictionary or object to extract fields from"
                    .to_owned(),
                input: None,
                ctx: None,
            }]);
        };

        let mut errors = Vec::new();
        let batch_id = match object.remove("batch_id") {
            None => {
                errors.push(FieldError::body(
                    "batch_id",
                    "missing",
                    "Field required",
                    &Value::Null,
                ));
                None
            }
            Some(raw) => {
                let parsed = raw.as_str().and_then(BatchId::parse);
                if parsed.is_none() {
                    errors.push(FieldError::body(
                        "batch_id",
                        "uuid_parsing",
                        "Input should be a valid UUID",
                        &raw,
                    ));
                }
                parsed
            }
        };
        let records = match object.remove("records") {
            None => {
                errors.push(FieldError::body(
                    "records",
                    "missing",
                    "Field required",
                    &Value::Null,
                ));
                None
            }
            Some(Value::Array(records)) if records.is_empty() => {
                errors.push(
                    FieldError::body(
                        "records",
                        "too_short",
                        "List should have at least 1 item after validation, not 0",
                        &json!([]),
                    )
                    .with_ctx(json!({ "min_length": 1 })),
                );
                None
            }
            Some(Value::Array(records)) if records.len() > Self::MAX_RECORDS => {
                errors.push(
                    FieldError::body(
                        "records",
                        "too_long",
                        format!(
                            "List should have at most {} items after validation, not {}",
                            Self::MAX_RECORDS,
                            records.len()
                        ),
                        &Value::Null,
                    )
                    .with_ctx(json!({ "max_length": Self::MAX_RECORDS })),
                );
                None
            }
            Some(Value::Array(records)) => Some(records),
            Some(other) => {
                errors.push(FieldError::body(
                    "records",
                    "list_type",
                    "Input should be a valid list",
                    &other,
                ));
                None
            }
        };
        errors.extend(object.into_iter().map(|(name, input)| {
            FieldError::body(
                &name,
                "extra_forbidden",
                "Extra inputs are not permitted",
                &input,
            )
        }));
        match (batch_id, records) {
            (Some(batch_id), Some(records)) if errors.is_empty() => {
                // Hash a canonical form, not the client's spelling: keys sorted at every depth and
                // the UUID in one case, so neither can make a redelivery look like another batch.
                let canonical =
                    sorted_keys(&json!({ "batch_id": batch_id, "records": records })).to_string();
                let content_sha256 = hex(&Sha256::digest(canonical.as_bytes()));
                Ok(Self {
                    batch_id,
                    records,
                    content_sha256,
                    submitter: Principal::legacy(),
                })
            }
            _ => Err(super::errors::cap_errors(errors)),
        }
    }

    /// The message as canonical JSON text: what goes on the queue.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// The message as a JSON value (the Functions host's queue output binding takes it as is).
    pub fn to_value(&self) -> Value {
        json!({ "batch_id": self.batch_id, "records": self.records })
    }

    /// Decodes raw message JSON (the queue message text, or a POST /batches body).
    pub fn from_slice(json: &[u8]) -> Result<Self, Vec<FieldError>> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|err| vec![super::decode::json_invalid(json, &err)])?;
        Self::from_value(value)
    }
}

/// `value` with the keys of every object, at every depth, in sorted order.
fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|key| (key.clone(), sorted_keys(&object[key])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Accepted over HTTP and on the queue; not ingested yet.
    Queued,
    /// Every record was judged: stored (accepted) or reported (rejected).
    Completed,
    /// Ingestion gave up: the message is in the poison queue (`failure` says why). Redriving the
    /// message (`handler redrive`) or submitting the same batch again completes it.
    Failed,
}

/// A record of a batch that was not stored, with the error POST /records would have given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub detail: Vec<FieldError>,
}

/// What became of a batch; what GET /batches/{batch_id} answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    pub batch_id: BatchId,
    pub status: BatchState,
    pub received: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Ids of the stored records, in input order.
    pub record_ids: Vec<RecordId>,
    pub rejected_records: Vec<RejectedRecord>,
    /// SHA-256 of the batch message's canonical JSON.
    pub content_sha256: String,
    /// Why the batch failed (status `failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The client of the client table that submitted it (absent for legacy and anonymous
    /// callers, whose batch ids are not scoped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl BatchReport {
    /// The report of a batch that is on the queue and not yet ingested.
    pub fn queued(message: &BatchMessage) -> Self {
        Self {
            batch_id: message.batch_id,
            status: BatchState::Queued,
            received: message.records.len(),
            accepted: 0,
            rejected: 0,
            record_ids: Vec::new(),
            rejected_records: Vec::new(),
            content_sha256: message.content_sha256.clone(),
            failure: None,
            client: message.submitter.id_scope().map(ToString::to_string),
        }
    }

    /// The id the report is stored under ([`BatchId::scoped`] by its client).
    pub fn stored_id(&self) -> BatchId {
        self.batch_id.scoped(self.client.as_deref())
    }

    /// The report of a batch whose message went to the poison queue.
    pub fn failed(message: &BatchMessage, failure: String) -> Self {
        Self {
            status: BatchState::Failed,
            failure: Some(failure),
            ..Self::queued(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::BatchMessage;

    #[test]
    fn the_hash_ignores_key_order_at_every_depth() {
        let id = "6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f";
        let one =
            json!({"batch_id": id, "records": [{"a": 1, "b": {"x": [{"p": 1, "q": 2}], "y": 2}}]});
        let other = json!({"records": [{"b": {"y": 2, "x": [{"q": 2, "p": 1}]}, "a": 1}], "batch_id": id.to_uppercase()});
        let different =
            json!({"batch_id": id, "records": [{"a": 1, "b": {"x": [{"p": 2, "q": 1}], "y": 2}}]});
        let hash = |v| {
            BatchMessage::from_value(v)
                .expect("valid envelope")
                .content_sha256
        };
        assert_eq!(hash(one.clone()), hash(other));
        assert_ne!(hash(one), hash(different));
    }
}
