//! The Azure Storage batch queue: the client, the service's [`BatchSink`] over it
//! ([`QueueSink`]), the standalone host's queue trigger (the Functions host runs its own), and the
//! poison queue's redrive commands.

pub mod client;
#[cfg(feature = "emulator")]
pub mod connection;
pub mod settings;
pub mod trigger;

use async_trait::async_trait;

use crate::auth::Clients;
use crate::domain::{BatchMessage, BatchReport};
use crate::service::ServiceError;
use crate::service::batches::{self, BatchSink, lifecycle};
use crate::store::RecordStore;

pub use settings::QueueSettings;

/// The batch queue as the service's [`BatchSink`] (standalone, with a queue configured): the
/// message is queued (signed for a client of the table) and the queue trigger ingests it.
#[derive(Clone, Debug)]
pub struct QueueSink {
    queue: client::BatchQueue,
    clients: Clients,
}

impl QueueSink {
    pub fn new(queue: client::BatchQueue, clients: Clients) -> Self {
        Self { queue, clients }
    }
}

#[async_trait]
impl BatchSink for QueueSink {
    async fn hand_on(
        &self,
        message: &BatchMessage,
        queued: BatchReport,
    ) -> Result<BatchReport, ServiceError> {
        let text = batches::queued_text(message, &self.clients)?;
        self.queue.send(text).await.map_err(|err| {
            tracing::warn!(batch_id = %message.batch_id, error = %err, "batch not queued");
            ServiceError::QueueUnavailable(err.to_string())
        })?;
        Ok(queued)
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
    clients: &Clients,
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
                    let failure = lifecycle::failure_text(
                        &lifecycle::Failure::FoundPoisoned,
                        None,
                        queue.poison_queue_name(),
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
