//! The batch use case, one module for all three entry points (`POST /batches` in either host,
//! the standalone queue trigger, the Functions host's `ingest_batch` invocation):
//!
//! - [`accept`]: checks a submitted message and registers the batch as queued;
//! - [`decode_message`]: the one decoder of a queue message's text;
//! - [`ingest`] / [`ingest_and_count`]: judges every record, stores the valid ones under ids
//!   derived from `(batch_id, index)`, and keeps a report of the outcome;
//! - [`ingest_through_outage`]: [`ingest_and_count`] that rides out a store outage (bounded), for
//!   the Functions host's `ingest_batch`, whose failed attempts count toward poisoning;
//! - [`mark_failed`] and [`FailedMarks`]: a poisoned batch says `failed` and why, at once or, when
//!   the store is down, as soon as it answers again;
//! - [`MessageOutcome`]: what became of a queue message, the `outcome` metric label.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::audit::Call;
use super::{ServiceError, StoreHandle};
use crate::auth::Clients;
use crate::domain::decode::record_from_value;
use crate::domain::identity::Role;
use crate::domain::record::SiteId;
use crate::domain::{AuditAction, AuditDraft, ClientId, NewRecord, Principal};
use crate::domain::{
    BatchId, BatchMessage, BatchReport, BatchState, FieldError, Record, RecordId, RejectedRecord,
};
use crate::metrics::Metrics;
use crate::store::{Inserted, RecordStore, StoreError, StoreHealth};

/// What became of a queue message (the `outcome` label of `mediflow_queue_messages_total`), in
/// either host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Ingested (or found ingested before): done.
    Completed,
    /// Failed (transiently); it will be received again.
    Retried,
    /// Failed `maxDequeueCount` times: moved to the poison queue.
    Poisoned,
    /// Can never succeed (undecodable, or a conflicting `batch_id`).
    Invalid,
}

impl MessageOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Retried => "retried",
            Self::Poisoned => "poisoned",
            Self::Invalid => "invalid",
        }
    }
}

/// A queue message's text → its JSON bytes: base64 of the JSON when `base64` (host.json
/// `messageEncoding`, the Functions default), and plain JSON text always (a producer that did not
/// encode).
pub fn message_json(text: &str, base64: bool) -> Result<Cow<'_, [u8]>, &'static str> {
    let text = text.trim();
    if text.starts_with('{') {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    if base64 && let Ok(bytes) = B64.decode(text) {
        return Ok(Cow::Owned(bytes));
    }
    Err("neither base64 nor JSON")
}

/// A queue message's text → batch message, attributed to the client that proves it sent it
/// ([`message_json`], then [`Clients::attribute`]: a signed envelope, or a plain message where the
/// deployment accepts those, then the envelope rules). `Err` names what is wrong by error kind and
/// field only: never the content. An unattributable message is refused, never stored anonymously.
pub fn decode_message(text: &str, base64: bool, clients: &Clients) -> Result<BatchMessage, String> {
    let bytes = message_json(text, base64)?;
    let (submitter, payload) = clients
        .attribute(&bytes)
        .map_err(|refused| format!("unattributed: {refused}"))?;
    let mut message = BatchMessage::from_slice(&payload).map_err(|errors| {
        let kinds: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.kind,
                    e.field().map(|f| format!(" ({f})")).unwrap_or_default()
                )
            })
            .collect();
        kinds.join(", ")
    })?;
    message.submitter = (*submitter).clone();
    Ok(message)
}

/// The text a batch message is queued as: the plain message for the legacy and anonymous callers
/// (as today), the signed envelope of its client for a client of the table (so the queue trigger
/// can attribute it).
pub fn queued_text(message: &BatchMessage, clients: &Clients) -> Result<String, ServiceError> {
    let json = message.to_json();
    if message.submitter.id_scope().is_none() {
        return Ok(json);
    }
    clients
        .signing_key(&message.submitter)
        .map(|key| key.sign(&json))
        .ok_or_else(|| {
            ServiceError::Internal(format!(
                "client {} has no signing key (removed from the table?)",
                message.submitter.client
            ))
        })
}

/// What the transport must do after [`accept`].
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// New or still queued: put the message on the queue (or ingest it in-process).
    Enqueue(BatchReport),
    /// Already ingested: nothing to do; here is the outcome.
    AlreadyCompleted(BatchReport),
}

/// POST /batches: checks the message and registers the batch as queued.
///
/// Resubmitting the same batch is harmless; reusing a `batch_id` for different records is a 409.
pub async fn accept(
    store: &dyn RecordStore,
    call: Call<'_>,
    body: &[u8],
) -> Result<(BatchMessage, Accepted), ServiceError> {
    call.require(Role::Submit, AuditAction::SubmitBatch)?;
    if body.len() > BatchMessage::MAX_JSON_BYTES {
        return Err(ServiceError::BatchTooLarge {
            limit: BatchMessage::MAX_JSON_BYTES,
        });
    }
    let mut message = BatchMessage::from_slice(body).map_err(ServiceError::Invalid)?;
    if let Some(site) = unheld_site(call.caller, &message) {
        let denied = crate::domain::identity::Denied::Site {
            client: call.caller.client.to_string(),
            site,
        };
        return Err(call.refuse(denied, AuditAction::SubmitBatch, Vec::new()));
    }
    message.submitter = call.caller.clone();
    // The limit is the queue's: it applies to the message as queued, not as the client spelled it.
    if message.to_json().len() > BatchMessage::MAX_JSON_BYTES {
        return Err(ServiceError::BatchTooLarge {
            limit: BatchMessage::MAX_JSON_BYTES,
        });
    }
    let stored = store.insert_batch(BatchReport::queued(&message)).await?;
    if stored.content_sha256 != message.content_sha256 {
        return Err(ServiceError::BatchConflict);
    }
    call.record(
        call.draft(AuditAction::SubmitBatch, "accepted")
            .batch(Some(message.batch_id)),
    )?;
    let accepted = match stored.status {
        BatchState::Queued => Accepted::Enqueue(stored),
        BatchState::Completed => Accepted::AlreadyCompleted(stored),
        // Submitting a failed batch again queues it again.
        BatchState::Failed => {
            let queued = BatchReport::queued(&message);
            store.put_batch(queued.clone()).await?;
            Accepted::Enqueue(queued)
        }
    };
    Ok((message, accepted))
}

/// The first site of a row of `message` that `caller` does not hold (rows whose site is not even
/// valid are judged with the rest of the record, at ingestion).
fn unheld_site(caller: &Principal, message: &BatchMessage) -> Option<String> {
    message.records.iter().find_map(|raw| {
        let site = SiteId::parse(raw.get("site_id")?.as_str()?).ok()?;
        (!caller.holds_site(&site)).then(|| site.as_str().to_owned())
    })
}

/// The outcome of [`ingest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub report: BatchReport,
    /// False when the batch had been completed before (a redelivery): nothing new happened.
    pub newly_completed: bool,
}

/// The queue trigger's work: ingests one batch message, at least once, with effect exactly once.
///
/// Returns the outcome, or a store error (transient: the message must be retried). A message whose
/// `batch_id` was already used for different records is [`ServiceError::BatchConflict`] (permanent).
pub async fn ingest(
    store: &dyn RecordStore,
    message: &BatchMessage,
) -> Result<Ingested, ServiceError> {
    let submitter = &message.submitter;
    let scope = submitter.id_scope().map(ClientId::as_str);
    let stored_id = message.batch_id.scoped(scope);
    if let Some(stored) = store.get_batch(stored_id).await? {
        if stored.content_sha256 != message.content_sha256 {
            return Err(ServiceError::BatchConflict);
        }
        if stored.status == BatchState::Completed {
            return Ok(Ingested {
                report: stored,
                newly_completed: false,
            });
        }
    }
    let mut valid = Vec::new();
    let mut verdicts = Vec::with_capacity(message.records.len());
    for (index, raw) in message.records.iter().enumerate() {
        match record_from_value(raw).and_then(|fields| admit(submitter, fields)) {
            Ok(fields) => {
                let id = RecordId::for_batch_item(stored_id.as_uuid(), index);
                valid.push(Record::new(id, fields));
                verdicts.push(Ok(id));
            }
            Err(detail) => verdicts.push(Err(detail)),
        }
    }
    let template = AuditDraft::new(submitter.client.as_str(), AuditAction::Create, "created")
        .batch(Some(message.batch_id));
    let outcomes = store.insert_many(valid.clone(), &template).await?;
    let mut report = report(
        message.batch_id,
        &message.content_sha256,
        verdicts,
        &valid,
        &outcomes,
    );
    report.client = scope.map(str::to_owned);
    store.put_batch(report.clone()).await?;
    Ok(Ingested {
        report,
        newly_completed: true,
    })
}

/// A row of a batch the submitter may store: a site it holds, and `pending` unless it may review.
/// Otherwise the row is rejected with a field error that says why (the rest of the batch goes on).
fn admit(submitter: &Principal, fields: NewRecord) -> Result<NewRecord, Vec<FieldError>> {
    if !submitter.holds_site(&fields.site_id) {
        return Err(vec![FieldError::body(
            "site_id",
            "site_not_permitted",
            format!(
                "Client {} may not submit records of site {}",
                submitter.client,
                fields.site_id.as_str()
            ),
            &serde_json::Value::from(fields.site_id.as_str()),
        )]);
    }
    super::records::check_status_allowed(submitter, fields.status).map(|()| fields)
}

fn report(
    batch_id: BatchId,
    content_sha256: &str,
    verdicts: Vec<Result<RecordId, Vec<FieldError>>>,
    stored: &[Record],
    outcomes: &[Inserted],
) -> BatchReport {
    // A record already stored under the derived id must be this very record (a redelivery).
    // Anything else would mean the id was taken by different content: report it, never overwrite.
    let conflicting: Vec<RecordId> = stored
        .iter()
        .zip(outcomes)
        .filter_map(|(record, outcome)| match outcome {
            Inserted::Existing(existing) if existing.fields != record.fields => Some(record.id),
            _ => None,
        })
        .collect();
    let received = verdicts.len();
    let mut record_ids = Vec::new();
    let mut rejected_records = Vec::new();
    for (index, verdict) in verdicts.into_iter().enumerate() {
        match verdict {
            Ok(id) if !conflicting.contains(&id) => record_ids.push(id),
            Ok(_) => rejected_records.push(RejectedRecord {
                index,
                detail: vec![FieldError {
                    kind: "record_conflict".into(),
                    loc: vec!["body".into()],
                    msg: "A different record is already stored under this batch position's id"
                        .into(),
                    input: None,
                    ctx: None,
                }],
            }),
            Err(detail) => rejected_records.push(RejectedRecord { index, detail }),
        }
    }
    BatchReport {
        batch_id,
        status: BatchState::Completed,
        received,
        accepted: record_ids.len(),
        rejected: rejected_records.len(),
        record_ids,
        rejected_records,
        content_sha256: content_sha256.to_owned(),
        failure: None,
        client: None,
    }
}

/// Records that a batch's message went to the poison queue: its report says `failed` and why.
/// A batch already completed (a copy of its message was poisoned after it was ingested) or
/// registered for other records keeps its report.
pub async fn mark_failed(
    store: &dyn RecordStore,
    message: &BatchMessage,
    failure: String,
) -> Result<(), ServiceError> {
    mark_report_failed(store, BatchReport::failed(message, failure)).await
}

/// [`mark_failed`] with the failed report already built (it holds no record: small to keep).
///
/// The decision is made on the report as read, and the write happens only if that report is
/// still the stored one (`insert_batch` when there is none, `put_batch_if` otherwise): a batch
/// completed between the read and the write is never overwritten. If another write wins, the
/// report is read again and the decision made again, at most [`MARK_ATTEMPTS`] times.
async fn mark_report_failed(
    store: &dyn RecordStore,
    failed: BatchReport,
) -> Result<(), ServiceError> {
    for _ in 0..MARK_ATTEMPTS {
        match store.get_batch(failed.stored_id()).await? {
            Some(stored)
                if stored.status == BatchState::Completed
                    || stored.content_sha256 != failed.content_sha256 =>
            {
                return Ok(());
            }
            Some(stored) => {
                if store.put_batch_if(failed.clone(), &stored).await? {
                    return Ok(());
                }
            }
            None => {
                if store.insert_batch(failed.clone()).await? == failed {
                    return Ok(());
                }
            }
        }
    }
    Err(StoreError::unavailable(format!(
        "the report of batch {} kept changing while it was being marked failed",
        failed.batch_id
    ))
    .into())
}

/// Reads and compare-and-puts [`mark_report_failed`] tries before it gives up (each retry means
/// another writer changed the report in between: a handful of tries is plenty).
const MARK_ATTEMPTS: usize = 5;

/// Batches to mark `failed` that could not be marked because the store was down: each is marked
/// by a task of its own as soon as the store answers again (retried every 250 ms doubling to
/// [`FailedMarks::MAX_RETRY_INTERVAL`], for the life of the process). At most
/// [`FailedMarks::MAX_PENDING`] wait at once; beyond that, or after a restart, the batch stays
/// `queued` until `handler redrive` brings its message back and ingestion completes it.
#[derive(Debug, Clone)]
pub struct FailedMarks {
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for FailedMarks {
    fn default() -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(Self::MAX_PENDING)),
        }
    }
}

impl FailedMarks {
    /// Marks waiting for the store at once (each holds a report without records: ~1 KiB).
    pub const MAX_PENDING: usize = 1024;
    /// The longest pause between two attempts of a pending mark.
    pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(30);

    /// Marks `message`'s batch failed now if the store takes it, else later (see the type).
    /// Returns whether it was marked now.
    pub async fn mark(
        &self,
        handle: &StoreHandle,
        message: &BatchMessage,
        failure: String,
    ) -> bool {
        let failed = BatchReport::failed(message, failure);
        let now = match handle.get() {
            Ok(store) => mark_report_failed(store.as_ref(), failed.clone()).await,
            Err(err) => Err(err),
        };
        let Err(err) = now else { return true };
        let batch_id = failed.batch_id;
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::error!(%batch_id, error = %err,
                "cannot mark the poisoned batch failed, and too many marks are pending: it stays queued until `handler redrive` brings its message back");
            return false;
        };
        tracing::warn!(%batch_id, error = %err,
            "cannot mark the poisoned batch failed now (store unavailable): it will be marked when the store answers; `handler redrive` also completes it");
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut pause = Duration::from_millis(250);
            loop {
                tokio::time::sleep(pause).await;
                if let Ok(store) = handle.get()
                    && mark_report_failed(store.as_ref(), failed.clone())
                        .await
                        .is_ok()
                {
                    tracing::info!(%batch_id, "the poisoned batch is marked failed (the store answers again)");
                    return;
                }
                pause = (pause * 2).min(Self::MAX_RETRY_INTERVAL);
            }
        });
        false
    }
}

/// Whether the store is open, able to work ([`StoreHealth::Ok`]) and answers its check.
pub async fn store_answers(handle: &StoreHandle) -> bool {
    match handle.get() {
        Ok(store) => store.health() == StoreHealth::Ok && store.check().await.is_ok(),
        Err(_) => false,
    }
}

/// [`ingest_and_count`], riding out a store outage: while the store is still opening, no longer
/// healthy or unavailable (a transient error), waits until it answers its check again (probing
/// every 250 ms doubling to 5 s) and tries again, for at most `wait` in all. Then the last
/// transient error is returned. Permanent outcomes (a conflicting batch, corrupt data) return at
/// once.
pub async fn ingest_through_outage(
    handle: &StoreHandle,
    metrics: &Metrics,
    message: &BatchMessage,
    wait: Duration,
) -> Result<BatchReport, ServiceError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut waited = false;
    loop {
        let attempt = match handle.get() {
            Ok(store) => match store.health() {
                StoreHealth::Ok => ingest_and_count(store.as_ref(), metrics, message).await,
                StoreHealth::Failed(reason) => Err(ServiceError::Store(
                    crate::store::StoreError::unavailable(reason),
                )),
            },
            Err(err) => Err(err),
        };
        let err = match attempt {
            Err(err) if err.is_transient() => err,
            done => {
                if waited && done.is_ok() {
                    tracing::info!(batch_id = %message.batch_id, "the store answers again: batch ingested");
                }
                return done;
            }
        };
        if !waited {
            tracing::warn!(batch_id = %message.batch_id, error = %err, wait_s = wait.as_secs(),
                "store unavailable: waiting for it before failing the attempt");
            waited = true;
        }
        // Probe (cheap) until the store answers, then try the batch again.
        loop {
            if tokio::time::Instant::now() + pause > deadline {
                return Err(err);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            if store_answers(handle).await {
                break;
            }
        }
    }
}

/// [`ingest`], then counts the records and logs the outcome: what every entry point runs.
pub async fn ingest_and_count(
    store: &dyn RecordStore,
    metrics: &Metrics,
    message: &BatchMessage,
) -> Result<BatchReport, ServiceError> {
    let Ingested {
        report,
        newly_completed,
    } = ingest(store, message).await?;
    if !newly_completed {
        tracing::info!(batch_id = %report.batch_id, "batch already ingested (redelivery)");
        return Ok(report);
    }
    metrics.count_batch(report.accepted, report.rejected);
    tracing::info!(
        batch_id = %report.batch_id,
        received = report.received,
        accepted = report.accepted,
        rejected = report.rejected,
        "batch ingested"
    );
    Ok(report)
}

/// GET /batches/{batch_id}: the caller's own batch (batch ids are scoped by client).
pub async fn get(
    store: &dyn RecordStore,
    call: Call<'_>,
    raw_id: &str,
) -> Result<BatchReport, ServiceError> {
    call.require(Role::Submit, AuditAction::ReadBatch)?;
    let id = BatchId::parse(raw_id).ok_or(ServiceError::BatchNotFound)?;
    let scope = call.caller.id_scope().map(ClientId::as_str);
    let report = store
        .get_batch(id.scoped(scope))
        .await?
        .ok_or(ServiceError::BatchNotFound)?;
    call.record(call.draft(AuditAction::ReadBatch, "ok").batch(Some(id)))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_from_base64_or_plain_json_and_never_echo_content() {
        let json = r#"{"batch_id":"0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10","records":[{"site_id":"secret"}]}"#;
        // (what the case proves, text, base64 configured, decodes)
        for (proves, text, base64, ok) in [
            (
                "base64 as the Functions default",
                B64.encode(json),
                true,
                true,
            ),
            (
                "plain JSON is tolerated when base64 is configured",
                json.to_owned(),
                true,
                true,
            ),
            (
                "plain JSON with messageEncoding none",
                json.to_owned(),
                false,
                true,
            ),
            (
                "base64 is not decoded with messageEncoding none",
                B64.encode(json),
                false,
                false,
            ),
            ("not base64, not JSON", "%%%".to_owned(), true, false),
            (
                "base64 of something that is not JSON",
                B64.encode("secret text"),
                true,
                false,
            ),
            (
                "JSON that is not a batch",
                B64.encode(r#"{"records":"secret"}"#),
                true,
                false,
            ),
        ] {
            match decode_message(&text, base64, &Clients::off()) {
                Ok(batch) => assert!(ok, "{proves}: decoded {}", batch.batch_id),
                Err(problem) => {
                    assert!(!ok, "{proves}: {problem}");
                    assert!(
                        !problem.contains("secret"),
                        "{proves}: the problem quotes content: {problem}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_client_table_attributes_signed_messages_and_refuses_the_rest() {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(b"uploader-key").into();
        let other: [u8; 32] = Sha256::digest(b"someone-else").into();
        let hex = crate::domain::audit::hex(&digest);
        let table = format!(
            r#"{{"clients": [{{"id": "site001-uploader", "key_sha256": ["{hex}"], "roles": ["submit"], "sites": ["SITE001"]}}]}}"#
        );
        let clients = Clients::from_content(&table, None).expect("a valid table");
        let payload = r#"{"batch_id":"0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10","records":[{"site_id":"SITE001"}]}"#;
        let client = crate::domain::ClientId::parse("site001-uploader").expect("id");
        let signed = crate::auth::queue::sign(&client, &digest, payload);
        let forged = crate::auth::queue::sign(&client, &other, payload);
        // (what the case proves, message text, attributed to)
        for (proves, text, expected) in [
            (
                "a signed message is its client's",
                signed.clone(),
                Some("site001-uploader"),
            ),
            (
                "base64 of it too",
                B64.encode(&signed),
                Some("site001-uploader"),
            ),
            ("a signature with another key is refused", forged, None),
            ("an unsigned message is refused", payload.to_owned(), None),
            (
                "a changed payload is refused",
                signed.replace("SITE001", "SITE002"),
                None,
            ),
        ] {
            match decode_message(&text, true, &clients) {
                Ok(message) => assert_eq!(
                    Some(message.submitter.client.as_str()),
                    expected,
                    "{proves}"
                ),
                Err(problem) => {
                    assert!(expected.is_none(), "{proves}: {problem}");
                    assert!(problem.starts_with("unattributed"), "{proves}: {problem}");
                }
            }
        }
        let message = decode_message(&signed, false, &clients).expect("attributed");
        let queued = queued_text(&message, &clients).expect("signed");
        let again = decode_message(&queued, false, &clients)
            .expect("what the server queues attributes back");
        assert_eq!(again.submitter, message.submitter);
        assert_eq!(again.content_sha256, message.content_sha256);
    }

    #[test]
    fn outcome_labels_are_the_metric_labels() {
        let labels: Vec<&str> = [
            MessageOutcome::Completed,
            MessageOutcome::Retried,
            MessageOutcome::Poisoned,
            MessageOutcome::Invalid,
        ]
        .map(MessageOutcome::label)
        .to_vec();
        assert_eq!(labels, ["completed", "retried", "poisoned", "invalid"]);
    }
}
