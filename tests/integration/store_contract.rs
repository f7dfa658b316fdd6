//! The storage contract: one table of cases, each an async function over `&dyn RecordStore`, run
//! against every backend (the embedded redb store and Cosmos DB through the emulator). A backend
//! is correct when it passes all of them; the service relies on nothing else.

use futures::FutureExt;
use futures::future::BoxFuture;
use handler::domain::audit::{AuditCursor, AuditQuery, ChainCheck};
use handler::domain::batch::{BatchState, RejectedRecord};
use handler::domain::record::Status;
use handler::domain::{
    AuditAction, AuditDraft, AuditEvent, BatchId, BatchReport, FieldError, NewRecord, Record,
    RecordId,
};
use handler::service::ServiceError;
use handler::store::{Inserted, RecordStore, Replaced};
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
    (
        "put_batch_if writes only over the report it was given, never over one written since",
        |s| Box::pin(put_batch_if_is_compare_and_put(s)),
    ),
    (
        "marking a batch failed does not overwrite a report completed after it was read",
        |s| Box::pin(mark_failed_keeps_a_completed_report(s)),
    ),
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
    (
        "a create writes exactly one create event, naming the record, with the draft's client and request id",
        |s| Box::pin(a_create_writes_one_create_event(s)),
    ),
    (
        "a replay of an existing id writes no second create event",
        |s| Box::pin(a_replay_writes_no_create_event(s)),
    ),
    (
        "insert_many writes one create event per created record, with the batch id",
        |s| Box::pin(insert_many_writes_one_event_per_created_record(s)),
    ),
    (
        "a replace of the expected record succeeds with one review event (old, new status, reason)",
        |s| Box::pin(a_replace_writes_its_review_event(s)),
    ),
    (
        "a replace with a stale or missing expected record is Changed and writes no review",
        |s| Box::pin(a_stale_replace_changes_nothing(s)),
    ),
    (
        "appended events page back in order through every filter and a small-page cursor",
        |s| Box::pin(audit_pages_filter_and_page_in_order(s)),
    ),
    (
        "audit_chain returns every event, in chain order, and the chain check passes",
        |s| Box::pin(audit_chain_is_complete_and_verifies(s)),
    ),
    (
        "after concurrent inserts (duplicates racing) every stored record has a create event",
        |s| Box::pin(every_stored_record_has_a_create_event(s)),
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

/// Every event of the store's chains, in chain order.
async fn whole_chain(store: &dyn RecordStore) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = Vec::new();
    loop {
        let after = events.last().map(AuditCursor::of);
        let page = store
            .audit_chain(after.as_ref(), 100)
            .await
            .expect("audit_chain");
        let full = page.len() == 100;
        events.extend(page);
        if !full {
            return events;
        }
    }
}

#[tokio::test]
async fn cosmos_a_changed_audit_item_is_named_by_the_chain_check() {
    let emulator = CosmosEmulator::shared();
    let container = emulator.fresh_container().await;
    let store = container.store().await;
    let client = unique_client();
    store
        .append_audit(
            (0..4)
                .map(|i| {
                    AuditDraft::new(&client, AuditAction::Read, "ok").request(Some(&i.to_string()))
                })
                .collect(),
        )
        .await
        .expect("append");
    let events = whole_chain(&store).await;
    let mut check = ChainCheck::default();
    for event in &events {
        check.check(event).expect("intact before tampering");
    }
    // Someone with write access to the container (here: the emulator's key) changes one field of
    // the third event and leaves its hash as it was.
    let target = &events[2];
    let mut tampered = serde_json::to_value(target).expect("json");
    tampered["client"] = json!("someone-else");
    let id = handler::store::cosmos::audit::item_id(&target.chain, target.seq);
    tampered["id"] = json!(id);
    let audit = handler::store::cosmos::client(&container.config())
        .await
        .expect("key-auth client")
        .database_client(container.database.as_str())
        .container_client(container.audit_container.as_str(), None)
        .await
        .expect("the audit container");
    audit
        .replace_item(target.chain.clone(), &id, &tampered, None)
        .await
        .expect("replace the audit item");
    let mut check = ChainCheck::default();
    let broken = whole_chain(&store)
        .await
        .iter()
        .find_map(|event| check.check(event).err())
        .expect("the tampering is detected");
    assert_eq!(
        (broken.chain.as_str(), broken.seq),
        (target.chain.as_str(), target.seq),
        "{broken}"
    );
}

#[tokio::test]
async fn cosmos_a_failed_audit_write_starts_a_new_chain_and_leaves_no_gap() {
    let emulator = CosmosEmulator::dedicated();
    let container = emulator.fresh_container().await;
    let store = container.store().await;
    let read = || vec![AuditDraft::new("reader", AuditAction::Read, "ok")];
    store.append_audit(read()).await.expect("append");
    store.append_audit(read()).await.expect("append");
    // Every create throttled for longer than the store's retry budget: the append fails.
    emulator.throttle(1000, 1000, Some(&["create_doc"])).await;
    let failed = store.append_audit(read()).await;
    assert!(
        matches!(failed, Err(handler::store::StoreError::Unavailable { .. })),
        "{failed:?}"
    );
    emulator.throttle(0, 0, None).await;
    store.append_audit(read()).await.expect("append after");
    store.append_audit(read()).await.expect("append after");
    let mut check = ChainCheck::default();
    for event in whole_chain(&store).await {
        check
            .check(&event)
            .unwrap_or_else(|broken| panic!("{broken}"));
    }
    let mut lengths: Vec<u64> = check.chains().into_iter().map(|(_, last)| last).collect();
    lengths.sort_unstable();
    assert_eq!(
        lengths,
        vec![2, 2],
        "the first chain ends where its last confirmed event is; a second one goes on"
    );
}

#[tokio::test]
async fn cosmos_an_insert_costs_a_point_read_and_two_creates_and_a_replay_one_read() {
    let emulator = CosmosEmulator::shared();
    let container = emulator.fresh_container().await;
    let store = container.store().await;
    let before = emulator.kinds(&container.database).await;
    let record = record("costed");
    store
        .insert(record.clone(), &draft())
        .await
        .expect("insert");
    let after_create = emulator.kinds(&container.database).await;
    store.insert(record, &draft()).await.expect("replay");
    let after_replay = emulator.kinds(&container.database).await;
    let delta = |from: &std::collections::BTreeMap<String, u64>,
                 to: &std::collections::BTreeMap<String, u64>,
                 kind: &str| {
        to.get(kind).copied().unwrap_or(0) - from.get(kind).copied().unwrap_or(0)
    };
    assert_eq!(
        (
            delta(&before, &after_create, "read_doc"),
            delta(&before, &after_create, "create_doc")
        ),
        (1, 2),
        "a create: the point read, the event, the record"
    );
    assert_eq!(
        (
            delta(&after_create, &after_replay, "read_doc"),
            delta(&after_create, &after_replay, "create_doc")
        ),
        (1, 0),
        "a replay: the point read only"
    );
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
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    handler::service::records::list(store, call, &params).await
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

/// The audit template of a request by a client no other case uses.
fn draft() -> AuditDraft {
    AuditDraft::new(&unique_client(), AuditAction::Create, "created")
        .request(Some(&uuid::Uuid::new_v4().to_string()))
}

fn unique_client() -> String {
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

/// Every event of `query`, page by page (`max` per page), following the cursor.
async fn all_events(store: &dyn RecordStore, query: &AuditQuery, max: usize) -> Vec<AuditEvent> {
    let mut query = query.clone();
    let mut events = Vec::new();
    loop {
        let page = store.audit_page(&query, max).await.expect("audit_page");
        assert!(page.len() <= max, "a page over its max");
        let Some(last) = page.last() else { break };
        query.after = Some(AuditCursor::of(last));
        let full = page.len() == max;
        events.extend(page);
        if !full {
            break;
        }
        assert!(events.len() < 100_000, "paging does not end");
    }
    events
}

/// The events naming `id`.
async fn history(store: &dyn RecordStore, id: RecordId) -> Vec<AuditEvent> {
    let query = AuditQuery {
        record_id: Some(id),
        ..AuditQuery::default()
    };
    all_events(store, &query, 1000).await
}

fn creates(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| e.draft.action == AuditAction::Create && e.draft.outcome == "created")
        .collect()
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

async fn put_batch_if_is_compare_and_put(store: &dyn RecordStore) {
    let id = new_batch_id();
    let queued = report(id, BatchState::Queued, Vec::new());
    let completed = report(id, BatchState::Completed, vec![RecordId::random()]);
    let mut failed = report(id, BatchState::Failed, Vec::new());
    failed.failure = Some("poisoned".into());
    assert!(
        !store
            .put_batch_if(failed.clone(), &queued)
            .await
            .expect("put_batch_if"),
        "no stored report: nothing to compare with, nothing written"
    );
    assert_eq!(store.get_batch(id).await.expect("get_batch"), None);
    store.insert_batch(queued.clone()).await.expect("insert");
    let read = store.get_batch(id).await.expect("get").expect("stored");
    // The race: the batch completes between the read and the compare-and-put.
    store.put_batch(completed.clone()).await.expect("put");
    assert!(
        !store
            .put_batch_if(failed.clone(), &read)
            .await
            .expect("put_batch_if"),
        "the report changed since it was read"
    );
    assert_eq!(
        store.get_batch(id).await.expect("get"),
        Some(completed.clone()),
        "the completed report stands"
    );
    assert!(
        store
            .put_batch_if(failed.clone(), &completed)
            .await
            .expect("put_batch_if"),
        "over the report as stored, it writes"
    );
    assert_eq!(store.get_batch(id).await.expect("get"), Some(failed));
}

async fn mark_failed_keeps_a_completed_report(store: &dyn RecordStore) {
    let message = handler::domain::BatchMessage::from_value(json!({
        "batch_id": uuid::Uuid::new_v4().to_string(), "records": [{}]
    }))
    .expect("valid batch");
    let queued = BatchReport::queued(&message);
    store.insert_batch(queued.clone()).await.expect("insert");
    let mut completed = queued.clone();
    completed.status = BatchState::Completed;
    // Many marks racing one completion: whatever the interleaving, the completion is never lost.
    let marks = (0..8).map(|_| {
        handler::service::batches::mark_failed(store, &message, "poisoned".into()).boxed()
    });
    let complete = async {
        store.put_batch(completed.clone()).await.expect("complete");
        Ok(())
    }
    .boxed();
    for outcome in futures::future::join_all(marks.chain(std::iter::once(complete))).await {
        outcome.expect("mark_failed");
    }
    let stored = store.get_batch(queued.batch_id).await.expect("get");
    // The completion may come before every mark (then it stands) or after them (it overwrites);
    // a mark that read `queued` must never overwrite it.
    assert_eq!(stored, Some(completed), "the completed report stands");
}

async fn a_create_writes_one_create_event(store: &dyn RecordStore) {
    let record = record("audited create");
    let template = draft();
    assert_eq!(
        store
            .insert(record.clone(), &template)
            .await
            .expect("insert"),
        Inserted::Created
    );
    let events = history(store, record.id).await;
    assert_eq!(
        events.len(),
        1,
        "exactly one event names the record: {events:?}"
    );
    let event = &events[0].draft;
    assert_eq!(event.action, AuditAction::Create);
    assert_eq!(event.outcome, "created");
    assert_eq!(event.record_ids, vec![record.id]);
    assert_eq!(event.client, template.client);
    assert_eq!(event.request_id, template.request_id);
}

async fn a_replay_writes_no_create_event(store: &dyn RecordStore) {
    let first = record("first");
    store.insert(first.clone(), &draft()).await.expect("insert");
    let replay = Record::new(first.id, fields("SITE009", 9, "replayed"));
    assert_eq!(
        store.insert(replay, &draft()).await.expect("replay"),
        Inserted::Existing(first.clone())
    );
    assert_eq!(
        store
            .insert_many(vec![first.clone()], &draft())
            .await
            .expect("replay in a batch"),
        vec![Inserted::Existing(first.clone())]
    );
    let events = history(store, first.id).await;
    assert_eq!(creates(&events).len(), 1, "one create event: {events:?}");
    assert_eq!(events.len(), 1, "and nothing else: {events:?}");
}

async fn insert_many_writes_one_event_per_created_record(store: &dyn RecordStore) {
    // 130 records: more than one Cosmos transactional batch (100) of events.
    let records: Vec<Record> = (0..130)
        .map(|i| record(&format!("batch item {i}")))
        .collect();
    for existing in records.iter().step_by(4) {
        store
            .insert(existing.clone(), &draft())
            .await
            .expect("pre-insert");
    }
    let batch_id = new_batch_id();
    let template = draft().batch(Some(batch_id));
    let outcomes = store
        .insert_many(records.clone(), &template)
        .await
        .expect("insert_many");
    let created: Vec<RecordId> = records
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome == Inserted::Created)
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(created.len(), 130 - 33);
    let query = AuditQuery {
        client: Some(template.client.clone()),
        ..AuditQuery::default()
    };
    let events = all_events(store, &query, 1000).await;
    assert_eq!(events.len(), created.len(), "one event per created record");
    let mut named: Vec<RecordId> = events
        .iter()
        .map(|e| {
            assert_eq!(e.draft.action, AuditAction::Create);
            assert_eq!(e.draft.batch_id, Some(batch_id));
            assert_eq!(e.draft.record_ids.len(), 1);
            e.draft.record_ids[0]
        })
        .collect();
    let mut expected = created.clone();
    named.sort_by_key(RecordId::as_uuid);
    expected.sort_by_key(RecordId::as_uuid);
    assert_eq!(
        named, expected,
        "each created record, once; no existing one"
    );
}

fn review(client: &str, record: &Record, to: Status, reason: &str) -> AuditDraft {
    let mut event = AuditDraft::new(client, AuditAction::Review, "reviewed").records([record.id]);
    event.old_status = Some(record.fields.status);
    event.new_status = Some(to);
    event.reason = Some(reason.into());
    event
}

fn with_status(record: &Record, status: Status) -> Record {
    let mut changed = record.clone();
    changed.fields.status = status;
    changed
}

fn reviews(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| e.draft.action == AuditAction::Review && e.draft.outcome == "reviewed")
        .collect()
}

async fn a_replace_writes_its_review_event(store: &dyn RecordStore) {
    let record = record("to review");
    store
        .insert(record.clone(), &draft())
        .await
        .expect("insert");
    let client = unique_client();
    let new = with_status(&record, Status::Validated);
    let event = review(&client, &record, Status::Validated, "source data verified");
    assert_eq!(
        store
            .replace(&record, new.clone(), event)
            .await
            .expect("replace"),
        Replaced::Done
    );
    assert_eq!(store.get(record.id).await.expect("get"), Some(new));
    let events = history(store, record.id).await;
    assert_eq!(events.len(), 2, "the create and the review: {events:?}");
    let found = reviews(&events);
    assert_eq!(found.len(), 1, "{events:?}");
    let event = &found[0].draft;
    assert_eq!(event.client, client);
    assert_eq!(
        (event.old_status, event.new_status, event.reason.as_deref()),
        (
            Some(Status::Pending),
            Some(Status::Validated),
            Some("source data verified")
        )
    );
}

async fn a_stale_replace_changes_nothing(store: &dyn RecordStore) {
    let record = record("reviewed twice");
    store
        .insert(record.clone(), &draft())
        .await
        .expect("insert");
    let client = unique_client();
    let validated = with_status(&record, Status::Validated);
    let first = review(&client, &record, Status::Validated, "first");
    assert_eq!(
        store
            .replace(&record, validated.clone(), first)
            .await
            .expect("replace"),
        Replaced::Done
    );
    // A second reviewer still holds the record as it was before the first review.
    let stale = review(&client, &record, Status::Rejected, "second");
    assert_eq!(
        store
            .replace(&record, with_status(&record, Status::Rejected), stale)
            .await
            .expect("stale replace"),
        Replaced::Changed(Some(validated.clone()))
    );
    assert_eq!(store.get(record.id).await.expect("get"), Some(validated));
    let events = history(store, record.id).await;
    let found = reviews(&events);
    assert_eq!(found.len(), 1, "only the first review: {events:?}");
    assert_eq!(found[0].draft.reason.as_deref(), Some("first"));
    assert!(
        events.iter().all(|e| e.draft.action == AuditAction::Create
            || e.draft.outcome == "reviewed"
            || e.draft.outcome == "not_applied"),
        "nothing but the create, the review and at most a compensating event: {events:?}"
    );
    let missing = record_with_new_id(&record);
    assert_eq!(
        store
            .replace(
                &missing,
                with_status(&missing, Status::Validated),
                review(&client, &missing, Status::Validated, "x")
            )
            .await
            .expect("replace of a missing record"),
        Replaced::Changed(None)
    );
    assert!(reviews(&history(store, missing.id).await).is_empty());
}

fn record_with_new_id(record: &Record) -> Record {
    Record::new(RecordId::random(), record.fields.clone())
}

#[expect(
    clippy::too_many_lines,
    reason = "one filter after another on one set of events"
)]
async fn audit_pages_filter_and_page_in_order(store: &dyn RecordStore) {
    let (a, b) = (unique_client(), unique_client());
    let (r1, r2) = (RecordId::random(), RecordId::random());
    let drafts = |client: &str, n: usize| -> Vec<AuditDraft> {
        (0..n)
            .map(|i| {
                AuditDraft::new(client, AuditAction::Read, "ok")
                    .records(if i % 2 == 0 { vec![r1] } else { vec![r1, r2] })
                    .request(Some(&format!("{client}-{i}")))
            })
            .collect()
    };
    // In three appends, with a pause so that the events span more than one instant.
    store.append_audit(drafts(&a, 4)).await.expect("append");
    store.append_audit(drafts(&b, 3)).await.expect("append");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.append_audit(drafts(&a, 3)).await.expect("append");
    let by_a = AuditQuery {
        client: Some(a.clone()),
        ..AuditQuery::default()
    };
    let all_a = all_events(store, &by_a, 1000).await;
    assert_eq!(all_a.len(), 7, "client filter");
    let requests: Vec<String> = all_a
        .iter()
        .map(|e| e.draft.request_id.clone().expect("request id"))
        .collect();
    let expected: Vec<String> = (0..4).chain(0..3).map(|i| format!("{a}-{i}")).collect();
    assert_eq!(requests, expected, "in append order");
    let in_page_order = all_a
        .windows(2)
        .all(|w| AuditCursor::of(&w[0]).precedes(&w[1]));
    assert!(in_page_order, "ordered by (time, chain, seq)");
    // The oracle for every other filter: the domain's own `matches` over client A's events.
    let (t2, t5) = (all_a[1].time.clone(), all_a[4].time.clone());
    let cases = [
        (
            "record r2",
            AuditQuery {
                record_id: Some(r2),
                ..by_a.clone()
            },
        ),
        (
            "record r1",
            AuditQuery {
                record_id: Some(r1),
                ..by_a.clone()
            },
        ),
        (
            "from",
            AuditQuery {
                from: Some(t2.clone()),
                ..by_a.clone()
            },
        ),
        (
            "to",
            AuditQuery {
                to: Some(t2.clone()),
                ..by_a.clone()
            },
        ),
        (
            "from and to",
            AuditQuery {
                from: Some(t2.clone()),
                to: Some(t5.clone()),
                ..by_a.clone()
            },
        ),
        (
            "after the third",
            AuditQuery {
                after: Some(AuditCursor::of(&all_a[2])),
                ..by_a.clone()
            },
        ),
        (
            "all of them",
            AuditQuery {
                record_id: Some(r2),
                from: Some(t2.clone()),
                to: Some(t5.clone()),
                after: Some(AuditCursor::of(&all_a[0])),
                ..by_a.clone()
            },
        ),
    ];
    for (what, query) in cases {
        let expected: Vec<AuditEvent> =
            all_a.iter().filter(|e| query.matches(e)).cloned().collect();
        assert!(!expected.is_empty(), "{what}: the case selects something");
        for max in [1000, 2, 1] {
            assert_eq!(
                all_events(store, &query, max).await,
                expected,
                "{what}, max {max}"
            );
        }
    }
    let only_r2_of_b = AuditQuery {
        client: Some(b.clone()),
        record_id: Some(r2),
        ..AuditQuery::default()
    };
    assert_eq!(all_events(store, &only_r2_of_b, 1000).await.len(), 1);
    assert!(store.audit_page(&by_a, 0).await.expect("max 0").is_empty());
}

async fn audit_chain_is_complete_and_verifies(store: &dyn RecordStore) {
    let client = unique_client();
    store
        .append_audit(
            (0..5)
                .map(|_| AuditDraft::new(&client, AuditAction::List, "ok"))
                .collect(),
        )
        .await
        .expect("append");
    let mut check = ChainCheck::default();
    let mut after: Option<AuditCursor> = None;
    let mut mine = 0;
    loop {
        let page = store
            .audit_chain(after.as_ref(), 37)
            .await
            .expect("audit_chain");
        assert!(page.len() <= 37);
        for event in &page {
            check
                .check(event)
                .unwrap_or_else(|broken| panic!("{broken}"));
            mine += usize::from(event.draft.client == client);
        }
        match page.last() {
            Some(last) if page.len() == 37 => after = Some(AuditCursor::of(last)),
            _ => break,
        }
    }
    assert_eq!(mine, 5, "every appended event is in the chain");
    assert!(check.events >= 5);
    assert!(
        store.audit_chain(None, 0).await.expect("max 0").is_empty(),
        "max 0 is nothing"
    );
}

async fn every_stored_record_has_a_create_event(store: &dyn RecordStore) {
    let site = unique_site();
    let records: Vec<Record> = (0..24).map(|_| dated(&site, "2025-06-01")).collect();
    // Each record submitted three times at once (one alone, two in batches): duplicates race.
    let singles = records.iter().map(|r| {
        let r = r.clone();
        async move { store.insert(r, &draft()).await.map(|o| vec![o]) }.boxed()
    });
    let batches = [records.clone(), records.iter().rev().cloned().collect()]
        .into_iter()
        .map(|batch| async move { store.insert_many(batch, &draft()).await }.boxed());
    for outcome in futures::future::join_all(singles.chain(batches)).await {
        outcome.expect("insert");
    }
    let stored = all_pages(store, &format!("site_id={site}"), 1000).await;
    assert_eq!(stored.len(), records.len(), "every record is stored");
    for record in &stored {
        let events = history(store, record.id).await;
        assert!(
            !creates(&events).is_empty(),
            "stored record {} has no create event",
            record.id
        );
    }
}
