//! Poisoned batches whose `failed` mark has to wait for the store.

use std::sync::Arc;
use std::time::Duration;

use super::mark_report_failed;
use crate::domain::{BatchMessage, BatchReport};
use crate::service::StoreHandle;

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
