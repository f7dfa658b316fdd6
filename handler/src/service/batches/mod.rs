//! The batch use cases, one module for every entry point (`POST /batches` in either host, the
//! standalone queue trigger, the Functions host's `ingest_batch` invocation):
//!
//! - [`accept`]: checks a submitted message and registers the batch as queued; the transport
//!   then hands it to the deployment's [`BatchSink`] (the queue, in-process ingestion, or the
//!   Functions queue output);
//! - [`ingest`] / [`ingest_and_count`]: judges every record, stores the valid ones under ids
//!   derived from `(batch_id, index)`, and keeps a report of the outcome;
//! - [`lifecycle`]: the life of one queue message in either host (decoded, attempted, judged,
//!   its batch marked failed when poisoned);
//! - [`mark_failed`] and [`FailedMarks`]: a poisoned batch says `failed` and why, at once or, when
//!   the store is down, as soon as it answers again;
//! - [`get`]: `GET /batches/{batch_id}`.

mod failed_marks;
pub mod lifecycle;
mod sink;

use super::ServiceError;
use super::audit::Call;
use crate::domain::decode::record_from_value;
use crate::domain::identity::Role;
use crate::domain::record::SiteId;
use crate::domain::{AuditAction, AuditDraft, ClientId, NewRecord, Principal};
use crate::domain::{
    BatchId, BatchMessage, BatchReport, BatchState, FieldError, Record, RecordId, RejectedRecord,
};
use crate::metrics::Metrics;
use crate::store::{Inserted, RecordStore, StoreError};

pub use failed_marks::FailedMarks;
pub use lifecycle::{MessageOutcome, decode_message, message_json, queued_text};
pub use sink::{BatchSink, InProcess};

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
    let item_id = RecordId::batch_items(stored_id.as_uuid());
    for (index, raw) in message.records.iter().enumerate() {
        match record_from_value(raw).and_then(|fields| admit(submitter, fields)) {
            Ok(fields) => {
                let id = item_id(index);
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
