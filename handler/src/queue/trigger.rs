//! The standalone queue trigger. Being written: see the queue issue.

use std::sync::Arc;

use tokio::sync::watch;

use super::client::BatchQueue;
use crate::functions::definitions::QueueSettings;
use crate::metrics::Metrics;
use crate::service::StoreHandle;

/// Runs the queue trigger until `stop` turns true, then finishes in-flight messages.
pub async fn run(
    _queue: BatchQueue,
    _settings: QueueSettings,
    _store: StoreHandle,
    _metrics: Arc<Metrics>,
    _stop: watch::Receiver<bool>,
) {
}
