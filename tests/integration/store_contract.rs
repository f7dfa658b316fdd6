//! The storage contract: one table of cases, each an async function over `&dyn RecordStore`, run
//! against every backend (the embedded redb store and Cosmos DB through the emulator). A backend
//! is correct when it passes all of them; the service relies on nothing else.

use futures::future::BoxFuture;
use handler::domain::batch::{BatchState, RejectedRecord};
use handler::domain::{BatchId, BatchReport, FieldError, NewRecord, Record, RecordId};
use handler::service::ServiceError;
use handler::store::{Inserted, RecordStore};
use serde_json::{Value, json};

use crate::support::cosmos_emulator::CosmosEmulator;

type Case = for<'a> fn(&'a dyn RecordStore) -> BoxFuture<'a, ()>;

/// (what the case proves, the case)
const CASES: &[(&str, Case)] = &[
    ("an inserted record reads back identical", |s| {
        Box::pin(insert_then_get_round_trips(s))
    }),
    (
        "inserting an existing id stores nothing and returns the stored record",
        |s| Box::pin(insert_of_existing_id_returns_existing_unchanged(s)),
    ),
    (
        "insert_many answers in input order, new and existing mixed, past one concurrency window",
        |s| Box::pin(insert_many_keeps_order_with_mixed_outcomes(s)),
    ),
    ("insert_many of nothing is nothing", |s| {
        Box::pin(insert_many_of_nothing(s))
    }),
    ("an unknown record id reads as absent", |s| {
        Box::pin(get_of_unknown_id_is_none(s))
    }),
    (
        "insert_batch stores only when absent and returns the stored report",
        |s| Box::pin(insert_batch_is_insert_if_absent(s)),
    ),
    ("put_batch replaces the stored report", |s| {
        Box::pin(put_batch_overwrites(s))
    }),
    ("an unknown batch id reads as absent", |s| {
        Box::pin(get_batch_of_unknown_id_is_none(s))
    }),
    (
        "a record and a batch with the same UUID do not collide",
        |s| Box::pin(records_and_batches_do_not_collide(s)),
    ),
    ("check succeeds on a working store", |s| {
        Box::pin(check_succeeds(s))
    }),
    (
        "listing pages through 1,000 records of a site: each once, newest date first, then id",
        |s| Box::pin(listing_pages_through_every_record_once_in_order(s)),
    ),
    ("listing keeps to the site and the date range", |s| {
        Box::pin(listing_filters_by_site_and_dates(s))
    }),
    ("a site with no records lists an empty last page", |s| {
        Box::pin(listing_an_empty_site(s))
    }),
    (
        "a tampered or mismatched continuation token is a validation error",
        |s| Box::pin(listing_refuses_tampered_tokens(s)),
    ),
];

async fn run_contract(backend: &str, store: &dyn RecordStore) {
    for (proves, case) in CASES {
        eprintln!("[{backend}] {proves}");
        case(store).await;
    }
}

#[tokio::test]
async fn embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        handler::store::embedded::EmbeddedStore::open(dir.path()).expect("open embedded store");
    run_contract("embedded", &store).await;
}

#[tokio::test]
async fn cosmos() {
    let emulator = CosmosEmulator::shared();
    let store = emulator.fresh_container().await.store().await;
    assert_eq!(store.backend(), "cosmos");
    run_contract("cosmos", &store).await;
}

// ------------------------------------------------------------------------------------ fixtures

fn fields(site: &str, patients: i64, notes: &str) -> NewRecord {
    serde_json::from_value(json!({
        "site_id": site, "trial_phase": "II", "submission_date": "2025-03-15",
        "status": "pending", "patient_count": patients, "notes": notes
    }))
    .expect("valid record fields")
}

fn record(notes: &str) -> Record {
    Record::new(RecordId::random(), fields("SITE001", 42, notes))
}

/// The listing use case as the anonymous caller (the audit trail is not what this suite checks).
async fn list(
    store: &dyn RecordStore,
    raw: Option<&str>,
) -> Result<handler::domain::RecordPage, ServiceError> {
    let caller = handler::domain::Principal::anonymous();
    let audit = handler::service::audit::AuditLog::discarding();
    let call = handler::service::audit::Call {
        caller: &caller,
        request_id: None,
        audit: &audit,
    };
    handler::service::records::list(store, call, raw).await
}

fn draft() -> handler::domain::AuditDraft {
    handler::domain::AuditDraft::new("contract", handler::domain::AuditAction::Create, "created")
}

fn report(batch_id: BatchId, state: BatchState, record_ids: Vec<RecordId>) -> BatchReport {
    let accepted = record_ids.len();
    BatchReport {
        batch_id,
        status: state,
        received: accepted + 1,
        accepted,
        rejected: 1,
        record_ids,
        rejected_records: vec![RejectedRecord {
            index: accepted,
            detail: vec![FieldError::body(
                "patient_count",
                "greater_than_equal",
                "Input should be >= 1",
                &Value::from(0),
            )],
        }],
        content_sha256: "0".repeat(64),
        failure: None,
        client: None,
    }
}

fn new_batch_id() -> BatchId {
    BatchId::parse(&uuid::Uuid::new_v4().to_string()).expect("uuid")
}

// ---------------------------------------------------------------------------------------- cases

async fn insert_then_get_round_trips(store: &dyn RecordStore) {
    let record =
        record("round trip: ünïcödé, \"quotes\", 500-char limit is the API's, not the store's");
    assert_eq!(
        store
            .insert(record.clone(), &draft())
            .await
            .expect("insert"),
        Inserted::Created
    );
    assert_eq!(store.get(record.id).await.expect("get"), Some(record));
}

async fn insert_of_existing_id_returns_existing_unchanged(store: &dyn RecordStore) {
    let first = record("first");
    store.insert(first.clone(), &draft()).await.expect("insert");
    let second = Record::new(first.id, fields("SITE999", 7, "second"));
    assert_eq!(
        store.insert(second, &draft()).await.expect("insert again"),
        Inserted::Existing(first.clone())
    );
    assert_eq!(
        store.get(first.id).await.expect("get"),
        Some(first),
        "the second insert must not overwrite"
    );
}

async fn insert_many_keeps_order_with_mixed_outcomes(store: &dyn RecordStore) {
    // 40 records (more than the Cosmos backend's 16 in flight); every third already stored.
    let records: Vec<Record> = (0..40).map(|i| record(&format!("item {i}"))).collect();
    for existing in records.iter().step_by(3) {
        store
            .insert(existing.clone(), &draft())
            .await
            .expect("pre-insert");
    }
    // The resubmission carries different content under the same ids: the stored one must win.
    let resubmitted: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 3 == 0 {
                Record::new(r.id, fields("SITE002", 1, "resubmitted"))
            } else {
                r.clone()
            }
        })
        .collect();
    let outcomes = store
        .insert_many(resubmitted, &draft())
        .await
        .expect("insert_many");
    let expected: Vec<Inserted> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 3 == 0 {
                Inserted::Existing(r.clone())
            } else {
                Inserted::Created
            }
        })
        .collect();
    assert_eq!(outcomes, expected);
    for record in &records {
        assert_eq!(
            store.get(record.id).await.expect("get").as_ref(),
            Some(record)
        );
    }
}

async fn insert_many_of_nothing(store: &dyn RecordStore) {
    assert_eq!(
        store
            .insert_many(Vec::new(), &draft())
            .await
            .expect("insert_many"),
        Vec::new()
    );
}

async fn get_of_unknown_id_is_none(store: &dyn RecordStore) {
    assert_eq!(store.get(RecordId::random()).await.expect("get"), None);
}

async fn insert_batch_is_insert_if_absent(store: &dyn RecordStore) {
    let id = new_batch_id();
    let first = report(id, BatchState::Queued, Vec::new());
    assert_eq!(
        store
            .insert_batch(first.clone())
            .await
            .expect("insert_batch"),
        first
    );
    let second = report(id, BatchState::Completed, vec![RecordId::random()]);
    assert_eq!(
        store
            .insert_batch(second)
            .await
            .expect("insert_batch again"),
        first,
        "the stored report is returned"
    );
    assert_eq!(
        store.get_batch(id).await.expect("get_batch"),
        Some(first),
        "and left unchanged"
    );
}

async fn put_batch_overwrites(store: &dyn RecordStore) {
    let id = new_batch_id();
    store
        .put_batch(report(id, BatchState::Queued, Vec::new()))
        .await
        .expect("put_batch");
    let completed = report(
        id,
        BatchState::Completed,
        vec![RecordId::random(), RecordId::random()],
    );
    store
        .put_batch(completed.clone())
        .await
        .expect("put_batch again");
    assert_eq!(
        store.get_batch(id).await.expect("get_batch"),
        Some(completed)
    );
}

async fn get_batch_of_unknown_id_is_none(store: &dyn RecordStore) {
    assert_eq!(
        store.get_batch(new_batch_id()).await.expect("get_batch"),
        None
    );
}

async fn records_and_batches_do_not_collide(store: &dyn RecordStore) {
    let uuid = uuid::Uuid::new_v4().to_string();
    let record = Record::new(
        RecordId::parse(&uuid).expect("uuid"),
        fields("SITE003", 3, "same uuid as a batch"),
    );
    let batch = report(
        BatchId::parse(&uuid).expect("uuid"),
        BatchState::Queued,
        Vec::new(),
    );
    assert_eq!(
        store
            .insert(record.clone(), &draft())
            .await
            .expect("insert"),
        Inserted::Created
    );
    assert_eq!(
        store
            .insert_batch(batch.clone())
            .await
            .expect("insert_batch"),
        batch,
        "the batch is new, not the record"
    );
    assert_eq!(store.get(record.id).await.expect("get"), Some(record));
    assert_eq!(
        store.get_batch(batch.batch_id).await.expect("get_batch"),
        Some(batch)
    );
}

async fn check_succeeds(store: &dyn RecordStore) {
    store.check().await.expect("check");
}

// ------------------------------------------------------------------------------------- listing

/// A site id no other case (or earlier run against the same store) uses.
fn unique_site() -> String {
    format!("L{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).to_ascii_uppercase()
}

fn dated(site: &str, date: &str) -> Record {
    let mut fields = fields(site, 1, "listed");
    fields.submission_date = serde_json::from_value(json!(date)).expect("valid date");
    Record::new(RecordId::random(), fields)
}

/// `(date, id)` descending: the listing order.
fn listing_order(records: &mut [Record]) {
    records.sort_by(|a, b| {
        (b.fields.submission_date.as_str(), b.id.as_uuid())
            .cmp(&(a.fields.submission_date.as_str(), a.id.as_uuid()))
    });
}

/// Every page of `query`, following continuation tokens; asserts each page's size.
async fn all_pages(store: &dyn RecordStore, query: &str, limit: usize) -> Vec<Record> {
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    for page_number in 0.. {
        let raw = match &token {
            None => format!("{query}&limit={limit}"),
            Some(t) => format!("{query}&limit={limit}&continuation={t}"),
        };
        let page = list(store, Some(&raw)).await.expect("list");
        assert!(
            page.records.len() <= limit,
            "page {page_number} over the limit"
        );
        listed.extend(page.records);
        match page.continuation {
            Some(next) => {
                assert_eq!(listed.len() % limit, 0, "only a full page has a successor");
                token = Some(next);
            }
            None => break,
        }
        assert!(page_number < 2000, "paging does not end");
    }
    listed
}

async fn listing_pages_through_every_record_once_in_order(store: &dyn RecordStore) {
    let site = unique_site();
    // 1,000 records over 40 dates (25 per date: ties broken by id), one other site's interleaved.
    let mut records: Vec<Record> = (0..1000)
        .map(|i| {
            dated(
                &site,
                &format!("2025-{:02}-{:02}", 1 + i % 10, 1 + i % 4 * 7),
            )
        })
        .collect();
    let other = unique_site();
    let noise: Vec<Record> = (0..30)
        .map(|i| dated(&other, &format!("2025-01-{:02}", 1 + i % 28)))
        .collect();
    store
        .insert_many(records.clone(), &draft())
        .await
        .expect("insert");
    store
        .insert_many(noise, &draft())
        .await
        .expect("insert noise");
    listing_order(&mut records);
    for limit in [1000, 137] {
        let listed = all_pages(
            store,
            &format!("site_id={}", site.to_ascii_lowercase()),
            limit,
        )
        .await;
        assert_eq!(listed.len(), 1000, "limit {limit}: every record, once");
        assert!(
            listed == records,
            "limit {limit}: in listing order, nothing repeated or missing"
        );
    }
    // A page of exactly the remaining records has no successor.
    let page = list(store, Some(&format!("site_id={site}&limit=1000")))
        .await
        .expect("list");
    assert_eq!((page.records.len(), page.continuation), (1000, None));
}

async fn listing_filters_by_site_and_dates(store: &dyn RecordStore) {
    let site = unique_site();
    let dates = [
        "2024-12-31",
        "2025-01-01",
        "2025-01-15",
        "2025-01-31",
        "2025-02-01",
    ];
    let mut records: Vec<Record> = dates.iter().map(|d| dated(&site, d)).collect();
    store
        .insert_many(records.clone(), &draft())
        .await
        .expect("insert");
    listing_order(&mut records);
    let listed = all_pages(
        store,
        &format!("site_id={site}&from=2025-01-01&to=2025-01-31"),
        2,
    )
    .await;
    let expected: Vec<Record> = records
        .into_iter()
        .filter(|r| r.fields.submission_date.as_str().starts_with("2025-01"))
        .collect();
    assert_eq!(listed, expected, "inclusive bounds, other dates left out");
    let one_day = all_pages(
        store,
        &format!("site_id={site}&from=2025-01-15&to=2025-01-15"),
        10,
    )
    .await;
    assert_eq!(one_day.len(), 1);
}

async fn listing_an_empty_site(store: &dyn RecordStore) {
    let page = list(store, Some(&format!("site_id={}", unique_site())))
        .await
        .expect("list");
    assert!(page.records.is_empty());
    assert_eq!(page.continuation, None);
}

async fn listing_refuses_tampered_tokens(store: &dyn RecordStore) {
    let site = unique_site();
    store
        .insert_many(
            (0..3).map(|_| dated(&site, "2025-05-05")).collect(),
            &draft(),
        )
        .await
        .expect("insert");
    let page = list(store, Some(&format!("site_id={site}&limit=1")))
        .await
        .expect("list");
    let token = page.continuation.expect("a next page");
    let mut tampered = token.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for raw in [
        format!("site_id={site}&continuation={tampered}"),
        format!("site_id=SITE001&continuation={token}"),
        format!("site_id={site}&from=2025-01-01&continuation={token}"),
        format!("site_id={site}&continuation={token}x"),
        format!("site_id={site}&continuation="),
    ] {
        match list(store, Some(&raw)).await {
            Err(ServiceError::Invalid(errors)) => assert_eq!(
                errors[0].loc,
                vec![json!("query"), json!("continuation")],
                "{raw}"
            ),
            other => panic!("{raw}: expected a validation error, got {other:?}"),
        }
    }
}
