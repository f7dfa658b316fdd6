//! A decorator that times every store operation into the store-latency metric.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::Replaced;
use super::{Inserted, RecordStore, SharedStore, StoreError, StoreHealth};
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::{AuditDraft, AuditEvent, BatchId, BatchReport, ListQuery, Record, RecordId};
use crate::metrics::Metrics;

/// Wraps a store and records `mediflow_store_operation_duration_seconds`.
#[derive(Clone)]
pub struct ObservedStore {
    wrapped: SharedStore,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStore")
            .field("backend", &self.wrapped.backend())
            .finish_non_exhaustive()
    }
}

impl ObservedStore {
    pub fn wrap(wrapped: SharedStore, metrics: Arc<Metrics>) -> SharedStore {
        Arc::new(Self { wrapped, metrics })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .observe_store(operation, result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl RecordStore for ObservedStore {
    async fn insert(&self, record: Record, audit: &AuditDraft) -> Result<Inserted, StoreError> {
        self.timed("insert", self.wrapped.insert(record, audit))
            .await
    }

    async fn insert_many(
        &self,
        records: Vec<Record>,
        audit: &AuditDraft,
    ) -> Result<Vec<Inserted>, StoreError> {
        self.timed("insert_many", self.wrapped.insert_many(records, audit))
            .await
    }

    async fn replace(
        &self,
        expected: &Record,
        new: Record,
        event: AuditDraft,
    ) -> Result<Replaced, StoreError> {
        self.timed("replace", self.wrapped.replace(expected, new, event))
            .await
    }

    async fn append_audit(&self, events: Vec<AuditDraft>) -> Result<(), StoreError> {
        self.timed("append_audit", self.wrapped.append_audit(events))
            .await
    }

    async fn audit_page(
        &self,
        query: &AuditQuery,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.timed("audit_page", self.wrapped.audit_page(query, max))
            .await
    }

    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.timed("audit_chain", self.wrapped.audit_chain(after, max))
            .await
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.timed("get", self.wrapped.get(id)).await
    }

    async fn get_json(&self, id: RecordId) -> Result<Option<Bytes>, StoreError> {
        // The same operation as `get` to an operator: one label, one latency series.
        self.timed("get", self.wrapped.get_json(id)).await
    }

    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
        self.timed("insert_batch", self.wrapped.insert_batch(report))
            .await
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        self.timed("put_batch", self.wrapped.put_batch(report))
            .await
    }

    async fn put_batch_if(
        &self,
        report: BatchReport,
        expected: &BatchReport,
    ) -> Result<bool, StoreError> {
        self.timed("put_batch_if", self.wrapped.put_batch_if(report, expected))
            .await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.timed("get_batch", self.wrapped.get_batch(id)).await
    }

    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        self.timed("list", self.wrapped.list(query, max)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.timed("check", self.wrapped.check()).await
    }

    fn health(&self) -> StoreHealth {
        self.wrapped.health()
    }

    fn backend(&self) -> &'static str {
        self.wrapped.backend()
    }
}
