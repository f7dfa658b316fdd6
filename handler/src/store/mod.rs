//! Persistence, in domain words. [`RecordStore`] is what the service needs from a database; each
//! backend lives in its own module and maps its engine's failures to [`StoreError`] at the
//! boundary. `tests/integration/store_contract.rs` runs the same cases against every backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::{AuditDraft, AuditEvent, BatchId, BatchReport, ListQuery, Record, RecordId};

pub mod cosmos;
pub mod embedded;
pub mod limited;
pub mod observed;

/// What happened to an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The record is new and durably stored.
    Created,
    /// A record with this id was already stored; here it is, unchanged.
    Existing(Record),
}

/// What happened to a compare-and-replace ([`RecordStore::replace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The stored record was the expected one; it is replaced and its event is durable.
    Done,
    /// The stored record is no longer the expected one (here is what is stored), or is gone.
    Changed(Option<Record>),
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is down, overloaded or unreachable: try again after `retry_after`.
    /// Clients get 503 with `Retry-After`; queue messages are retried.
    #[error("store unavailable: {reason}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
    /// Stored data could not be read back (a bug or corruption, never the client's fault).
    #[error("store data is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            retry_after: Duration::from_secs(1),
            reason: reason.to_string(),
        }
    }
}

/// Whether a store can still work at all (as opposed to a passing failure of one call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Ok,
    /// The backend can no longer work (writer thread gone, latched I/O error): readiness fails
    /// and the process exits non-zero so that it is restarted. The reason is for operators.
    Failed(String),
}

/// The storage the service needs. Every write is insert-if-absent or a whole-document put, so
/// retries and redeliveries are harmless.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Stores `record` unless a record with the same id exists. When it is created, the create
    /// event (`audit.created(id)`) is durable with it: on the embedded store in the same journal
    /// write; on Cosmos written before the answer (docs/adr/0010).
    async fn insert(&self, record: Record, audit: &AuditDraft) -> Result<Inserted, StoreError>;

    /// Stores many records, each insert-if-absent with its create event as [`RecordStore::insert`];
    /// outcomes are in input order.
    async fn insert_many(
        &self,
        records: Vec<Record>,
        audit: &AuditDraft,
    ) -> Result<Vec<Inserted>, StoreError>;

    /// Replaces the stored record `expected` (same id) with `new` if it is still stored exactly as
    /// `expected`, with `event` durable with the change. Otherwise nothing is written.
    async fn replace(
        &self,
        expected: &Record,
        new: Record,
        event: AuditDraft,
    ) -> Result<Replaced, StoreError>;

    /// Appends audit events (reads, listings, refusals, batch submissions) and waits until they
    /// are durable.
    async fn append_audit(&self, events: Vec<AuditDraft>) -> Result<(), StoreError>;

    /// Up to `max` events matching `query`, oldest first (time, then chain, then seq), strictly
    /// after `query.after`.
    async fn audit_page(
        &self,
        query: &AuditQuery,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// Every event of every chain in chain order (chain, then seq), strictly after `after`, at most
    /// `max`: what `handler audit verify` walks.
    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// Reads a record by id.
    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError>;

    /// Reads a record by id as its JSON document (the `GET /records/{id}` body). A backend that
    /// stores exactly those bytes answers them without decoding.
    async fn get_json(&self, id: RecordId) -> Result<Option<Bytes>, StoreError> {
        self.get(id)
            .await?
            .map(|record| {
                serde_json::to_vec(&record)
                    .map(Bytes::from)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// Stores a batch report unless one exists for its batch; returns the stored report.
    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError>;

    /// Stores a batch report, replacing any earlier one for the batch.
    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError>;

    /// Stores `report` only if the stored report for its batch is still exactly `expected` (a
    /// compare-and-put: nothing else wrote it since `expected` was read). Returns whether it was
    /// stored; `false` when the stored report changed or is gone, and then nothing is written.
    async fn put_batch_if(
        &self,
        report: BatchReport,
        expected: &BatchReport,
    ) -> Result<bool, StoreError>;

    /// Reads a batch report.
    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError>;

    /// Up to `max` of `query.site`'s records within `query.from..=query.to`, newest first
    /// (`submission_date` descending, then id descending), strictly after `query.after`.
    /// (`query.limit` is the page size the service asks for; it passes `limit + 1` as `max` to
    /// learn whether another page follows.)
    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError>;

    /// Succeeds when the store can serve requests (readiness).
    async fn check(&self) -> Result<(), StoreError>;

    /// Whether the backend can still work; checked by readiness and by the server's watchdog.
    fn health(&self) -> StoreHealth {
        StoreHealth::Ok
    }

    /// A short name for logs and metrics.
    fn backend(&self) -> &'static str;
}

/// How the service holds its store.
pub type SharedStore = Arc<dyn RecordStore>;
