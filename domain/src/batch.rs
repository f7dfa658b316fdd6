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
                let content_sha256 = hex(&Sha256::digest(canonical_json(batch_id, &records)));
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

/// The bytes `content_sha256` hashes: `{"batch_id":...,"records":[...]}` as compact JSON with the
/// keys of every object, at every depth, in sorted order. Written straight from the decoded
/// message (no sorted copy of it), byte for byte what printing a key-sorted copy wrote before, so
/// a batch stored by an earlier version hashes the same on its redelivery.
fn canonical_json(batch_id: BatchId, records: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 160);
    out.extend_from_slice(br#"{"batch_id":"#);
    write_json(&batch_id, &mut out);
    out.extend_from_slice(br#","records":"#);
    write_sorted_array(records, &mut out);
    out.push(b'}');
    out
}

/// Appends `value` to `out` as compact JSON, the keys of every object sorted.
fn write_sorted(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (n, (key, item)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(key.as_str(), out);
                out.push(b':');
                write_sorted(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => write_sorted_array(items, out),
        scalar => write_json(scalar, out),
    }
}

/// Appends `items` to `out` as a JSON array, each item as [`write_sorted`] writes it.
fn write_sorted_array(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_sorted(item, out);
    }
    out.push(b']');
}

/// A string, number, boolean, null or id as serde_json prints it.
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Printing into memory cannot fail: serde_json fails only on I/O errors and on map keys that
    // are not strings, and neither can occur for these values.
    let _ = serde_json::to_writer(out, value);
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
    use serde_json::{Value, json};

    use super::{BatchId, BatchMessage, canonical_json};

    /// The canonical form as it was first written (a key-sorted copy of the message, printed):
    /// the oracle `canonical_json` must match byte for byte, or stored batches would stop
    /// matching their redeliveries.
    fn printed_sorted_copy(batch_id: BatchId, records: &[Value]) -> Vec<u8> {
        fn sorted_keys(value: &Value) -> Value {
            match value {
                Value::Object(object) => {
                    let mut keys: Vec<&String> = object.keys().collect();
                    keys.sort();
                    let sorted = keys
                        .into_iter()
                        .map(|k| (k.clone(), sorted_keys(&object[k])));
                    Value::Object(sorted.collect())
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
                other => other.clone(),
            }
        }
        sorted_keys(&json!({ "batch_id": batch_id, "records": records }))
            .to_string()
            .into_bytes()
    }

    /// A JSON value of a pseudo-random shape (objects of unordered keys, arrays, every scalar).
    fn shape(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
        match next() % if depth > 3 { 4 } else { 6 } {
            0 => Value::Null,
            1 => Value::from(next().is_multiple_of(3)),
            2 => Value::from(i64::try_from(next() % 2_000).unwrap_or(0) - 1_000),
            3 => Value::from(format!("s{}\u{e9}\n{}", next() % 100, next() % 7)),
            4 => Value::Array((0..next() % 4).map(|_| shape(next, depth + 1)).collect()),
            _ => Value::Object(
                (0..next() % 5)
                    .map(|_| (format!("k{}", next() % 50), shape(next, depth + 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_known_message_has_its_known_canonical_form_and_hash() {
        let message = br#"{"records": [{"b": 1, "a": "\u00e9"}], "batch_id": "6C1F3E1E-7D0A-4A55-9F6E-0D1B2C3D4E5F"}"#;
        let decoded = BatchMessage::from_slice(message).expect("a valid message");
        let canonical =
            r#"{"batch_id":"6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f","records":[{"a":"é","b":1}]}"#;
        assert_eq!(
            String::from_utf8_lossy(&canonical_json(decoded.batch_id, &decoded.records)),
            canonical
        );
        // SHA-256 of the canonical text above, as `sha256sum` computes it.
        assert_eq!(
            decoded.content_sha256,
            "bbdf0d78cedb2e978a986a3531ae1cb9b888cf75374831b410edae09b6fc592b"
        );
    }

    #[test]
    fn the_canonical_form_is_byte_for_byte_the_sorted_copy_printed() {
        let id = BatchId::parse("6C1F3E1E-7D0A-4A55-9F6E-0D1B2C3D4E5F").expect("a uuid");
        let mut records = vec![
            json!({"site_id": "S-1", "notes": "quote \" backslash \\ tab \t nul \u{0} bell \u{7} é ☃ 😀"}),
            json!({"z": 1, "B": 2, "a": -3, "é": 0.1, "Z": 1.5e300, "": null, "aa": [true, false]}),
            json!({"nested": {"y": [{}, [], [[]], {"b": {}, "a": []}], "x": {"d": 1, "c": 2}}}),
            json!([1, "two", null]),
            json!("a bare string"),
            json!(12_345_678_901_234_567_u64),
            json!(-0.0),
        ];
        // Deterministic pseudo-random shapes (xorshift).
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        records.extend((0..300).map(|_| shape(&mut next, 0)));
        for end in [0, 1, 3, records.len()] {
            let part = &records[..end];
            assert_eq!(
                String::from_utf8_lossy(&canonical_json(id, part)),
                String::from_utf8_lossy(&printed_sorted_copy(id, part)),
                "the first {end} records"
            );
        }
    }

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
