//! The Azure Storage queue client (azure_storage_queue). Being written: see the queue issue.

use crate::domain::BatchMessage;
use crate::error::Error;

/// The batch queue and its poison queue.
#[derive(Clone, Debug)]
pub struct BatchQueue {}

impl BatchQueue {
    /// Puts a batch message on the queue.
    pub async fn send(&self, _message: &BatchMessage) -> Result<(), Error> {
        Err(Error::Unavailable { retry_after: std::time::Duration::from_secs(1) })
    }
}

impl BatchQueue {
    /// Connects to the queue named `queue_name` (and `<queue_name>-poison`).
    pub async fn connect(
        _config: &crate::config::QueueConfig,
        _queue_name: &str,
        _base64: bool,
    ) -> Result<Self, Error> {
        Ok(Self {})
    }
}
