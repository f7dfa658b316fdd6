//! Batch queue: where accepted batches go ([`BatchSink`]), the Azure Storage queue client, and the
//! standalone host's queue trigger (the Functions host runs its own).

pub mod client;
pub mod trigger;

use crate::domain::{BatchMessage, BatchReport};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::service::batches;
use crate::store::RecordStore;

/// Where POST /batches sends a batch in the standalone host.
#[derive(Clone, Debug)]
pub enum BatchSink {
    /// No queue configured (the local default): ingest at once, in the request.
    InProcess,
    /// Put it on the batch queue; the queue trigger ingests it.
    Queue(client::BatchQueue),
}

impl BatchSink {
    /// Hands a newly accepted batch on; returns the report to answer with.
    pub async fn dispatch(
        &self,
        store: &dyn RecordStore,
        metrics: &Metrics,
        message: &BatchMessage,
        queued: BatchReport,
    ) -> Result<BatchReport, Error> {
        match self {
            Self::InProcess => ingest(store, metrics, message).await,
            Self::Queue(queue) => {
                queue.send(message).await?;
                Ok(queued)
            }
        }
    }
}

/// How long a message being redriven is hidden from other redrives.
const REDRIVE_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Moves every message of the poison queue back to the batch queue (a fresh dequeue count);
/// returns how many were moved. Each message is added there before it is deleted here, so a
/// failure part-way leaves a copy in both (ingestion is idempotent), never in neither.
pub async fn redrive(queue: &client::BatchQueue) -> Result<usize, client::QueueError> {
    let mut moved = 0;
    loop {
        let messages = queue.receive_poison(32, REDRIVE_LEASE).await?;
        if messages.is_empty() {
            return Ok(moved);
        }
        for message in &messages {
            queue.redrive(message).await?;
            moved += 1;
        }
        tracing::info!(moved, queue = %queue.poison_queue_name(), "poison messages redriven");
    }
}

/// Ingests a batch and counts its records; every host's ingestion goes through here.
pub async fn ingest(
    store: &dyn RecordStore,
    metrics: &Metrics,
    message: &BatchMessage,
) -> Result<BatchReport, Error> {
    let batches::Ingested {
        report,
        newly_completed,
    } = batches::ingest(store, message).await?;
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
