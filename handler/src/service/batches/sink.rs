//! Where `POST /batches` hands a newly accepted batch: a port of the service, implemented by
//! in-process ingestion ([`InProcess`], here), the batch queue (`queue::QueueSink`) and the
//! Functions host's queue output binding (`functions::invoke::OutputBinding`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{BatchMessage, BatchReport};
use crate::metrics::Metrics;
use crate::service::{ServiceError, StoreHandle};

/// Takes a batch [`super::accept`] registered as queued.
#[async_trait]
pub trait BatchSink: Send + Sync + std::fmt::Debug {
    /// Hands the batch on; returns the report to answer with (`queued` as registered, or the
    /// outcome when the sink ingests at once).
    async fn hand_on(
        &self,
        message: &BatchMessage,
        queued: BatchReport,
    ) -> Result<BatchReport, ServiceError>;
}

/// No queue configured (the local default): the batch is ingested at once, in the request.
#[derive(Debug, Clone)]
pub struct InProcess {
    store: StoreHandle,
    metrics: Arc<Metrics>,
}

impl InProcess {
    pub fn new(store: StoreHandle, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }
}

#[async_trait]
impl BatchSink for InProcess {
    async fn hand_on(
        &self,
        message: &BatchMessage,
        _queued: BatchReport,
    ) -> Result<BatchReport, ServiceError> {
        let store = self.store.get()?;
        super::ingest_and_count(store.as_ref(), &self.metrics, message).await
    }
}
