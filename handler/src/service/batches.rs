//! Batch ingestion: judging every record of a batch message, storing the valid ones under ids
//! derived from `(batch_id, index)`, and keeping a report of the outcome.

use crate::domain::decode::record_from_value;
use crate::domain::{
    BatchId, BatchMessage, BatchReport, BatchState, FieldError, Record, RecordId, RejectedRecord,
};
use crate::error::Error;
use crate::store::{Inserted, RecordStore};

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
    body: &[u8],
) -> Result<(BatchMessage, Accepted), Error> {
    if body.len() > BatchMessage::MAX_JSON_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: BatchMessage::MAX_JSON_BYTES,
        });
    }
    let message = BatchMessage::from_slice(body).map_err(Error::Validation)?;
    // The limit is the queue's: it applies to the message as queued, not as the client spelled it.
    if message.to_json().len() > BatchMessage::MAX_JSON_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: BatchMessage::MAX_JSON_BYTES,
        });
    }
    let stored = store.insert_batch(BatchReport::queued(&message)).await?;
    if stored.content_sha256 != message.content_sha256 {
        return Err(Error::BatchConflict);
    }
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
/// `batch_id` was already used for different records is [`Error::BatchConflict`] (permanent).
pub async fn ingest(store: &dyn RecordStore, message: &BatchMessage) -> Result<Ingested, Error> {
    if let Some(stored) = store.get_batch(message.batch_id).await? {
        if stored.content_sha256 != message.content_sha256 {
            return Err(Error::BatchConflict);
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
        match record_from_value(raw) {
            Ok(fields) => {
                let id = RecordId::for_batch_item(message.batch_id.as_uuid(), index);
                valid.push(Record::new(id, fields));
                verdicts.push(Ok(id));
            }
            Err(detail) => verdicts.push(Err(detail)),
        }
    }
    let outcomes = store.insert_many(valid.clone()).await?;
    let report = report(
        message.batch_id,
        &message.content_sha256,
        verdicts,
        &valid,
        &outcomes,
    );
    store.put_batch(report.clone()).await?;
    Ok(Ingested {
        report,
        newly_completed: true,
    })
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
    }
}

/// Records that a batch's message went to the poison queue: its report says `failed` and why.
/// A batch already completed (a copy of its message was poisoned after it was ingested) or
/// registered for other records keeps its report.
pub async fn mark_failed(
    store: &dyn RecordStore,
    message: &BatchMessage,
    failure: String,
) -> Result<(), Error> {
    match store.get_batch(message.batch_id).await? {
        Some(stored)
            if stored.status == BatchState::Completed
                || stored.content_sha256 != message.content_sha256 =>
        {
            Ok(())
        }
        _ => Ok(store
            .put_batch(BatchReport::failed(message, failure))
            .await?),
    }
}

/// GET /batches/{batch_id}.
pub async fn get(store: &dyn RecordStore, raw_id: &str) -> Result<BatchReport, Error> {
    let id = BatchId::parse(raw_id).ok_or(Error::BatchNotFound)?;
    store.get_batch(id).await?.ok_or(Error::BatchNotFound)
}
