//! Batch queue: where accepted batches go ([`BatchSink`]), the Azure Storage queue client, and the
//! standalone host's queue trigger (the Functions host runs its own).

pub mod client;
#[cfg(feature = "emulator")]
pub mod connection;
pub mod settings;
pub mod trigger;

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::domain::{BatchMessage, BatchReport};
use crate::metrics::Metrics;
use crate::service::ServiceError;
use crate::service::batches;
use crate::store::RecordStore;

pub use settings::QueueSettings;

/// Where `POST /batches` sends a newly accepted batch, in either host.
#[derive(Clone, Debug)]
pub enum BatchSink {
    /// No queue configured (the local default): ingest at once, in the request.
    InProcess,
    /// Put it on the batch queue; the standalone queue trigger ingests it.
    Queue(client::BatchQueue),
    /// Under the Functions host: the message goes to the invocation's queue output binding (the
    /// request's [`QueueOutput`]), and the host puts it on the queue.
    OutputBinding,
}

/// The queue output of one Functions invocation: set by [`BatchSink::OutputBinding`] while the
/// request runs through the router, read by the invocation adapter afterwards. Travels as a
/// request extension.
#[derive(Clone, Debug, Default)]
pub struct QueueOutput(Arc<Mutex<Option<Value>>>);

impl QueueOutput {
    fn set(&self, message: Value) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }

    /// The message to put on the queue, if the request produced one.
    pub fn take(&self) -> Option<Value> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl BatchSink {
    /// Hands a newly accepted batch on; returns the report to answer with. `output` is the
    /// invocation's queue output (only under the Functions host).
    pub async fn dispatch(
        &self,
        store: &dyn RecordStore,
        metrics: &Metrics,
        clients: &crate::auth::Clients,
        message: &BatchMessage,
        queued: BatchReport,
        output: Option<&QueueOutput>,
    ) -> Result<BatchReport, ServiceError> {
        match self {
            Self::InProcess => batches::ingest_and_count(store, metrics, message).await,
            Self::Queue(queue) => {
                let text = batches::queued_text(message, clients)?;
                queue.send(text).await.map_err(|err| {
                    tracing::warn!(batch_id = %message.batch_id, error = %err, "batch not queued");
                    ServiceError::QueueUnavailable(err.to_string())
                })?;
                Ok(queued)
            }
            Self::OutputBinding => {
                let output = output.ok_or_else(|| {
                    ServiceError::Internal("a batch outside a Functions invocation".into())
                })?;
                let text = batches::queued_text(message, clients)?;
                let value = serde_json::from_str(&text)
                    .map_err(|e| ServiceError::Internal(format!("queued text is not JSON: {e}")))?;
                output.set(value);
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

/// How long a poison message read by [`mark_poisoned_failed`] stays hidden (it is not moved).
const MARK_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why [`mark_poisoned_failed`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error(transparent)]
    Queue(#[from] client::QueueError),
    #[error("a batch could not be marked: {0}")]
    Store(#[from] ServiceError),
}

/// `handler redrive --mark-failed`: marks the batch of every message in the poison queue `failed`
/// (one already completed, or registered for other records, keeps its report), moving nothing:
/// for batches left `queued` because their mark could not be written when their message was
/// poisoned (the store down, then a restart). Each message is read under a lease of
/// [`MARK_LEASE`] and stays in the poison queue. Returns how many messages were read.
pub async fn mark_poisoned_failed(
    queue: &client::BatchQueue,
    store: &dyn RecordStore,
    clients: &crate::auth::Clients,
) -> Result<usize, MarkError> {
    let mut seen = std::collections::HashSet::new();
    loop {
        let messages = queue.receive_poison(32, MARK_LEASE).await?;
        let fresh: Vec<_> = messages
            .iter()
            .filter(|m| seen.insert(m.id.clone()))
            .collect();
        if fresh.is_empty() {
            return Ok(seen.len());
        }
        for message in fresh {
            match batches::decode_message(&message.text, queue.base64(), clients) {
                Ok(batch) => {
                    let failure = format!(
                        "ingestion failed; the message is in {}",
                        queue.poison_queue_name()
                    );
                    batches::mark_failed(store, &batch, failure).await?;
                    tracing::info!(batch_id = %batch.batch_id, message_id = %message.id, "poisoned batch marked failed");
                }
                Err(problem) => {
                    tracing::warn!(message_id = %message.id, problem, "undecodable poison message: no batch to mark");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::BatchState;
    use crate::service::batches::Accepted;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn the_sinks_ingest_in_process_or_hand_the_message_to_the_output_binding() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
        let metrics = Metrics::default();
        let body = json!({
            "batch_id": uuid::Uuid::new_v4(),
            "records": [{"site_id": "site001", "trial_phase": "II", "submission_date": "2025-03-15",
                         "status": "pending", "patient_count": 1}]
        })
        .to_string();
        let t = crate::service::tests::TestCall::anonymous(&store);
        let (message, accepted) = batches::accept(&store, t.call(), body.as_bytes())
            .await
            .expect("accepted");
        let Accepted::Enqueue(queued) = accepted else {
            panic!("a new batch is enqueued");
        };

        let output = QueueOutput::default();
        let answered = BatchSink::OutputBinding
            .dispatch(
                &store,
                &metrics,
                &crate::auth::Clients::off(),
                &message,
                queued.clone(),
                Some(&output),
            )
            .await
            .expect("handed to the output binding");
        assert_eq!(answered.status, BatchState::Queued);
        assert_eq!(output.take(), Some(message.to_value()));
        // Outside an invocation there is no output binding to hand it to: a bug, said so.
        assert!(matches!(
            BatchSink::OutputBinding
                .dispatch(
                    &store,
                    &metrics,
                    &crate::auth::Clients::off(),
                    &message,
                    queued.clone(),
                    None
                )
                .await,
            Err(ServiceError::Internal(_))
        ));

        let ingested = BatchSink::InProcess
            .dispatch(
                &store,
                &metrics,
                &crate::auth::Clients::off(),
                &message,
                queued,
                None,
            )
            .await
            .expect("ingested in process");
        assert_eq!(ingested.status, BatchState::Completed);
    }
}
