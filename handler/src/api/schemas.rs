//! The OpenAPI shapes of the domain's wire types (the domain crate knows nothing of OpenAPI): one
//! schema-only type per domain type the API answers with, under the domain type's name. They are
//! never built (like the input schemas in `openapi.rs`); a test below serializes each domain value and holds it against its schema, so a
//! field added to the domain and not here (or the other way round) fails the build's tests.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The trial phase, exactly `I`, `II`, `III` or `IV`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TrialPhase)]
pub enum TrialPhaseSchema {
    I,
    II,
    III,
    IV,
}

/// The submission's review status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Status, rename_all = "lowercase")]
pub enum StatusSchema {
    Pending,
    Validated,
    Rejected,
}

/// A valid submission, before it has an id. Field order is the wire order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct NewRecordSchema {
    #[schema(pattern = "^[A-Z0-9]{3,20}$", example = "SITE001")]
    site_id: String,
    trial_phase: TrialPhaseSchema,
    #[schema(format = Date, example = "2025-03-15")]
    submission_date: String,
    status: StatusSchema,
    #[schema(minimum = 1, maximum = 10000, example = 42)]
    patient_count: i64,
    #[schema(max_length = 500, example = "Initial submission")]
    notes: String,
}

/// A stored record: the submission plus its id, serialised in the contract's key order
/// `site_id, trial_phase, submission_date, status, patient_count, notes, id`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Record, example = json!({"site_id":"SITE001","trial_phase":"II","submission_date":"2025-03-15",
    "status":"pending","patient_count":42,"notes":"Initial submission",
    "id":"1d0d5edd-9738-453c-8966-aaa2be88a9f5"}))]
pub struct RecordSchema {
    #[serde(flatten)]
    #[schema(inline)]
    fields: NewRecordSchema,
    #[schema(format = Uuid)]
    id: String,
}

/// One page of `GET /records?site_id=...`: `{"records": [...], "continuation": "<token>" | null}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = RecordPage)]
pub struct RecordPageSchema {
    /// Newest `submission_date` first, then id descending.
    records: Vec<RecordSchema>,
    /// Pass as `continuation` (with the same `site_id`, `from` and `to`) for the next page;
    /// `null` on the last page.
    continuation: Option<String>,
}

/// One step of a `loc` path: a name (`"body"`, `"header"`, a field or header name) or a byte
/// offset into a malformed body. Describes `FieldError::loc` in the OpenAPI document, which holds
/// the steps as plain JSON values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
enum LocStep {
    Name(String),
    Offset(u64),
}

/// One entry of a 422 `detail` list: `{"type","loc","msg","input","ctx"}` in that key order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorSchema {
    /// Machine-readable error type (pydantic's vocabulary, e.g. `missing`, `string_too_long`).
    #[serde(rename = "type")]
    kind: String,
    /// Where the error is: `["body", "<field>"]`, `["body", <byte offset>]` for malformed JSON, or
    /// `["header", "<name>"]`.
    #[schema(inline)]
    loc: Vec<LocStep>,
    /// Human-readable, stable message.
    msg: String,
    /// The offending value as the client sent it: any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    input: Option<serde_json::Value>,
    /// The rule's parameters, e.g. `{"max_length": 20}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    ctx: Option<serde_json::Value>,
}

/// Where a batch is in its life.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = BatchState, rename_all = "lowercase")]
pub enum BatchStateSchema {
    /// Accepted over HTTP and on the queue; not ingested yet.
    Queued,
    /// Every record was judged: stored (accepted) or reported (rejected).
    Completed,
    /// Ingestion gave up: the message is in the poison queue (`failure` says why). Redriving the
    /// message (`handler redrive`) or submitting the same batch again completes it.
    Failed,
}

/// A record of a batch that was not stored, with the error POST /records would have given.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = RejectedRecord)]
pub struct RejectedRecordSchema {
    index: usize,
    detail: Vec<FieldErrorSchema>,
}

/// What became of a batch; what GET /batches/{batch_id} answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = BatchReport)]
pub struct BatchReportSchema {
    #[schema(format = Uuid)]
    batch_id: String,
    status: BatchStateSchema,
    received: usize,
    accepted: usize,
    rejected: usize,
    /// Ids of the stored records, in input order.
    record_ids: Vec<String>,
    rejected_records: Vec<RejectedRecordSchema>,
    /// SHA-256 of the batch message's canonical JSON.
    content_sha256: String,
    /// Why the batch failed (status `failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// The client of the client table that submitted it (absent for legacy and anonymous
    /// callers, whose batch ids are not scoped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::domain::{BatchMessage, BatchReport, FieldError, Record, RecordPage};

    /// The properties a schema of the document declares (following `allOf`), and the required ones.
    fn declared(schema: &Value) -> (Vec<String>, Vec<String>) {
        let mut properties = Vec::new();
        let mut required = Vec::new();
        let parts = schema["allOf"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![schema.clone()]);
        for part in parts {
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.keys().cloned());
            }
            if let Some(r) = part["required"].as_array() {
                required.extend(r.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
        }
        (properties, required)
    }

    #[test]
    fn each_domain_value_has_exactly_the_fields_its_schema_declares() {
        let record: Record = serde_json::from_value(json!({
            "site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
            "status": "pending", "patient_count": 42, "notes": "n",
            "id": "1d0d5edd-9738-453c-8966-aaa2be88a9f5"
        }))
        .expect("a record");
        let message = BatchMessage::from_slice(
            br#"{"batch_id": "0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10", "records": [{}]}"#,
        )
        .expect("a batch");
        let mut failed = BatchReport::failed(&message, "why".into());
        failed.client = Some("site001-uploader".into());
        let error = FieldError::body("site_id", "missing", "Field required", &Value::Null)
            .with_ctx(json!({"min_length": 1}));
        let page = RecordPage {
            records: vec![record.clone()],
            continuation: Some("t".into()),
        };
        let spec = super::super::openapi::spec();
        // (schema name, a domain value with every optional field present)
        for (name, value) in [
            ("Record", serde_json::to_value(&record)),
            ("BatchReport", serde_json::to_value(&failed)),
            ("FieldError", serde_json::to_value(&error)),
            ("RecordPage", serde_json::to_value(&page)),
        ] {
            let value = value.expect("serializes");
            let (mut properties, required) = declared(&spec["components"]["schemas"][name]);
            let mut keys: Vec<String> = value
                .as_object()
                .expect("an object")
                .keys()
                .cloned()
                .collect();
            keys.sort();
            properties.sort();
            assert_eq!(keys, properties, "{name}: fields against the schema");
            for field in required {
                assert!(keys.contains(&field), "{name}: required {field} is absent");
            }
        }
        // The enums list exactly the domain's spellings.
        for (name, spellings) in [
            ("Status", json!(["pending", "validated", "rejected"])),
            ("TrialPhase", json!(["I", "II", "III", "IV"])),
            ("BatchState", json!(["queued", "completed", "failed"])),
        ] {
            assert_eq!(
                spec["components"]["schemas"][name]["enum"], spellings,
                "{name}"
            );
        }
        for (spelling, status) in crate::domain::record::Status::ALL {
            assert_eq!(serde_json::to_value(status).expect("json"), json!(spelling));
        }
        for (spelling, phase) in crate::domain::record::TrialPhase::ALL {
            assert_eq!(serde_json::to_value(phase).expect("json"), json!(spelling));
        }
        for (spelling, state) in [
            ("queued", crate::domain::BatchState::Queued),
            ("completed", crate::domain::BatchState::Completed),
            ("failed", crate::domain::BatchState::Failed),
        ] {
            assert_eq!(serde_json::to_value(state).expect("json"), json!(spelling));
        }
    }
}
