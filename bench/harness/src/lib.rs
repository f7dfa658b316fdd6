//! What the `harness` binary and the criterion benches (`benches/in_process.rs`) share: the batch
//! message and the custom-handler invocation they measure. The orchestration is the binary's
//! (`src/main.rs`).

use serde_json::{Value, json};

/// Records per batch: the largest count whose message fits the 48 KiB queue-message limit.
pub const RECORDS_PER_BATCH: usize = 375;

/// A batch message of `records` valid records with a fresh batch id, as JSON bytes.
pub fn batch_message(records: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..records)
        .map(|n| {
            json!({
                "site_id": "SITE001",
                "trial_phase": "II",
                "submission_date": "2025-03-15",
                "status": "pending",
                "patient_count": 42,
                "notes": format!("r{n}"),
            })
        })
        .collect();
    json!({ "batch_id": uuid::Uuid::new_v4(), "records": items })
        .to_string()
        .into_bytes()
}

/// An `ingest_batch` invocation as the Functions host sends it: the message text as a JSON string
/// (how the host passes a queue message that is JSON), metadata with string numbers.
pub fn invocation(message: &[u8]) -> Vec<u8> {
    json!({
        "Data": { "batch": String::from_utf8_lossy(message) },
        "Metadata": {
            "DequeueCount": "1",
            "ExpirationTime": "2019-10-16T17:58:31+00:00",
            "Id": "800ae4b3-bdd2-4c08-badd-f08e5a34b865",
            "InsertionTime": "2019-10-09T17:58:31+00:00",
            "NextVisibleTime": "2019-10-09T18:08:32+00:00",
            "PopReceipt": "AgAAAAMAAAAAAAAAz3pfc9R+1QE=",
            "sys": { "MethodName": "ingest_batch", "UtcNow": "2019-10-09T17:58:32.2205399Z", "RandGuid": "24ad4c06-24ad-4e5b-8294-3da9714877e9" }
        }
    })
    .to_string()
    .into_bytes()
}
