//! The use cases in process, on a real embedded store in a temporary folder: what each entry
//! point (HTTP in either host, the queue trigger, a Functions invocation) relies on, without a
//! socket. Each case says what it proves.

use serde_json::{Value, json};

use super::batches::{self, Accepted};
use super::records;
use super::{ServiceError, StoreHandle};
use crate::domain::{BatchMessage, BatchState};
use crate::metrics::Metrics;
use crate::store::embedded::EmbeddedStore;

fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    (dir, store)
}

/// The anonymous caller (auth off) with an audit log writing to `store`.
pub(crate) struct TestCall {
    caller: crate::domain::Principal,
    audit: super::audit::AuditLog,
}

impl TestCall {
    pub(crate) fn as_principal(caller: crate::domain::Principal, store: &EmbeddedStore) -> Self {
        let handle = StoreHandle::ready(std::sync::Arc::new(store.clone()));
        Self {
            caller,
            audit: super::audit::AuditLog::start(handle, std::sync::Arc::default()),
        }
    }

    pub(crate) fn anonymous(store: &EmbeddedStore) -> Self {
        Self::as_principal(crate::domain::Principal::anonymous(), store)
    }

    pub(crate) fn call(&self) -> super::audit::Call<'_> {
        super::audit::Call {
            caller: &self.caller,
            request_id: Some("test-request"),
            audit: &self.audit,
        }
    }
}

fn record(notes: &str) -> Value {
    json!({
        "site_id": "site001",
        "trial_phase": "II",
        "submission_date": "2025-03-15",
        "status": "pending",
        "patient_count": 42,
        "notes": notes
    })
}

fn batch(records: &[Value]) -> Vec<u8> {
    json!({ "batch_id": uuid::Uuid::new_v4(), "records": records })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_created_record_reads_back_and_unknown_or_malformed_ids_are_not_found() {
    let (_dir, store) = store();
    let t = TestCall::anonymous(&store);
    let body = record("first").to_string();
    let created = records::create(&store, t.call(), body.as_bytes(), None)
        .await
        .expect("created");
    assert!(!created.replayed);
    let (read, _etag) = records::get_json(&store, t.call(), &created.record.id.to_string())
        .await
        .expect("read back");
    assert_eq!(
        read,
        serde_json::to_vec(&created.record).expect("encode"),
        "the body is the record as a 201 encodes it"
    );
    for id in ["not-a-uuid", &uuid::Uuid::new_v4().to_string(), ""] {
        assert!(
            matches!(
                records::get_json(&store, t.call(), id).await,
                Err(ServiceError::RecordNotFound)
            ),
            "{id:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_record_lists_every_problem_and_stores_nothing() {
    let (_dir, store) = store();
    let t = TestCall::anonymous(&store);
    let mut body = record("x");
    body["patient_count"] = json!(-1);
    body["trial_phase"] = json!("V");
    let result = records::create(&store, t.call(), body.to_string().as_bytes(), None).await;
    let Err(ServiceError::Invalid(errors)) = result else {
        panic!("expected Invalid, got {result:?}");
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_body_and_refuses_a_different_one() {
    let (_dir, store) = store();
    let t = TestCall::anonymous(&store);
    let key = records::check_idempotency_key(b"key-1").expect("a valid key");
    let body = record("once").to_string();
    let first = records::create(&store, t.call(), body.as_bytes(), Some(key))
        .await
        .expect("created");
    let again = records::create(&store, t.call(), body.as_bytes(), Some(key))
        .await
        .expect("replayed");
    assert_eq!((again.replayed, &again.record), (true, &first.record));
    let other = record("twice").to_string();
    assert!(matches!(
        records::create(&store, t.call(), other.as_bytes(), Some(key)).await,
        Err(ServiceError::IdempotencyConflict)
    ));
    // (key, what the case proves)
    for (raw, proves) in [
        (&b""[..], "an empty key is refused"),
        (b"has space", "a space is not visible ASCII"),
        (&[b'k'; 256][..], "256 bytes is one too many"),
    ] {
        assert!(
            matches!(
                records::check_idempotency_key(raw),
                Err(ServiceError::Invalid(_))
            ),
            "{proves}"
        );
    }
}

#[tokio::test]
async fn a_batch_is_accepted_once_ingested_once_and_its_id_cannot_be_reused() {
    let (_dir, store) = store();
    let t = TestCall::anonymous(&store);
    let metrics = Metrics::default();
    let body = batch(&[record("a"), json!({"site_id": 5})]);
    let (message, accepted) = batches::accept(&store, t.call(), &body)
        .await
        .expect("accepted");
    assert!(matches!(&accepted, Accepted::Enqueue(r) if r.status == BatchState::Queued));
    // Submitting the same batch again is harmless.
    let (_, again) = batches::accept(&store, t.call(), &body)
        .await
        .expect("accepted again");
    assert!(matches!(again, Accepted::Enqueue(_)));

    let report = batches::ingest_and_count(&store, &metrics, &message)
        .await
        .expect("ingested");
    assert_eq!((report.accepted, report.rejected), (1, 1));
    // A redelivery changes nothing.
    let redelivered = batches::ingest(&store, &message).await.expect("redelivery");
    assert!(!redelivered.newly_completed);
    assert_eq!(redelivered.report, report);
    let (_, after) = batches::accept(&store, t.call(), &body)
        .await
        .expect("resubmitted");
    assert!(matches!(after, Accepted::AlreadyCompleted(r) if r == report));

    // The same batch_id with other records is a conflict, at submission and at ingestion.
    let mut other: Value = serde_json::from_slice(&body).expect("json");
    other["records"] = json!([record("different")]);
    let other_bytes = other.to_string().into_bytes();
    assert!(matches!(
        batches::accept(&store, t.call(), &other_bytes).await,
        Err(ServiceError::BatchConflict)
    ));
    let other_message = BatchMessage::from_slice(&other_bytes).expect("a message");
    assert!(matches!(
        batches::ingest(&store, &other_message).await,
        Err(ServiceError::BatchConflict)
    ));
    assert!(matches!(
        batches::get(&store, t.call(), "not-a-batch").await,
        Err(ServiceError::BatchNotFound)
    ));
}

#[tokio::test]
async fn an_oversized_or_malformed_batch_is_refused_before_the_store() {
    let (_dir, store) = store();
    let t = TestCall::anonymous(&store);
    let big = batch(&vec![record(&"n".repeat(400)); 200]);
    assert!(big.len() > BatchMessage::MAX_JSON_BYTES);
    assert!(matches!(
        batches::accept(&store, t.call(), &big).await,
        Err(ServiceError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        batches::accept(&store, t.call(), b"{\"records\": []}").await,
        Err(ServiceError::Invalid(_))
    ));
}

#[test]
fn a_store_that_is_not_open_yet_is_a_transient_error() {
    let handle = StoreHandle::default();
    let Err(err) = handle.get() else {
        panic!("a store that was never set is not open");
    };
    assert!(matches!(err, ServiceError::NotReady { .. }));
    assert!(err.is_transient());
    assert!(!ServiceError::BatchConflict.is_transient());
}
