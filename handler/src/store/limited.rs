//! A decorator that bounds how many calls to a store are in flight at once (the Cosmos backend:
//! each call holds an HTTP connection and memory in the SDK). A call that cannot get a slot within
//! [`SLOT_WAIT`] fails as unavailable (503 + `Retry-After`, or a retried queue message) instead of
//! queueing without end.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::Replaced;
use super::{Inserted, RecordStore, SharedStore, StoreError, StoreHealth};
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::{AuditDraft, AuditEvent, BatchId, BatchReport, ListQuery, Record, RecordId};

/// The longest a call waits for a slot.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// Wraps a store; at most `max` calls run at once.
pub struct LimitedStore {
    wrapped: SharedStore,
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl std::fmt::Debug for LimitedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedStore")
            .field("backend", &self.wrapped.backend())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl LimitedStore {
    /// At most `max` calls at once; a call waits at most `wait` for a slot ([`SLOT_WAIT`]).
    pub fn wrap(wrapped: SharedStore, max: usize, wait: Duration) -> SharedStore {
        Arc::new(Self {
            wrapped,
            slots: Arc::new(Semaphore::new(max)),
            max,
            wait,
        })
    }

    async fn limited<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _slot = tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .map_err(|_| {
                StoreError::unavailable(format!(
                    "{} store calls already in flight (the limit)",
                    self.max
                ))
            })?
            .map_err(StoreError::unavailable)?;
        call.await
    }
}

#[async_trait]
impl RecordStore for LimitedStore {
    async fn insert(&self, record: Record, audit: &AuditDraft) -> Result<Inserted, StoreError> {
        self.limited(self.wrapped.insert(record, audit)).await
    }

    async fn insert_many(
        &self,
        records: Vec<Record>,
        audit: &AuditDraft,
    ) -> Result<Vec<Inserted>, StoreError> {
        self.limited(self.wrapped.insert_many(records, audit)).await
    }

    async fn replace(
        &self,
        expected: &Record,
        new: Record,
        event: AuditDraft,
    ) -> Result<Replaced, StoreError> {
        self.limited(self.wrapped.replace(expected, new, event))
            .await
    }

    async fn append_audit(&self, events: Vec<AuditDraft>) -> Result<(), StoreError> {
        self.limited(self.wrapped.append_audit(events)).await
    }

    async fn audit_page(
        &self,
        query: &AuditQuery,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.limited(self.wrapped.audit_page(query, max)).await
    }

    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.limited(self.wrapped.audit_chain(after, max)).await
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.limited(self.wrapped.get(id)).await
    }

    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
        self.limited(self.wrapped.insert_batch(report)).await
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        self.limited(self.wrapped.put_batch(report)).await
    }

    async fn put_batch_if(
        &self,
        report: BatchReport,
        expected: &BatchReport,
    ) -> Result<bool, StoreError> {
        self.limited(self.wrapped.put_batch_if(report, expected))
            .await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.limited(self.wrapped.get_batch(id)).await
    }

    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        self.limited(self.wrapped.list(query, max)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.limited(self.wrapped.check()).await
    }

    fn health(&self) -> StoreHealth {
        self.wrapped.health()
    }

    fn backend(&self) -> &'static str {
        self.wrapped.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose reads never finish: they hold their slot.
    struct Stuck;

    #[async_trait]
    impl RecordStore for Stuck {
        async fn insert(&self, _: Record, _: &AuditDraft) -> Result<Inserted, StoreError> {
            Ok(Inserted::Created)
        }
        async fn insert_many(
            &self,
            _: Vec<Record>,
            _: &AuditDraft,
        ) -> Result<Vec<Inserted>, StoreError> {
            Ok(Vec::new())
        }
        async fn replace(
            &self,
            _: &Record,
            _: Record,
            _: AuditDraft,
        ) -> Result<Replaced, StoreError> {
            Ok(Replaced::Done)
        }
        async fn append_audit(&self, _: Vec<AuditDraft>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn audit_page(
            &self,
            _: &AuditQuery,
            _: usize,
        ) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(Vec::new())
        }
        async fn audit_chain(
            &self,
            _: Option<&AuditCursor>,
            _: usize,
        ) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(Vec::new())
        }
        async fn get(&self, _: RecordId) -> Result<Option<Record>, StoreError> {
            std::future::pending().await
        }
        async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
            Ok(report)
        }
        async fn put_batch_if(&self, _: BatchReport, _: &BatchReport) -> Result<bool, StoreError> {
            std::future::pending().await
        }
        async fn put_batch(&self, _: BatchReport) -> Result<(), StoreError> {
            Ok(())
        }
        async fn get_batch(&self, _: BatchId) -> Result<Option<BatchReport>, StoreError> {
            Ok(None)
        }
        async fn list(&self, _: &ListQuery, _: usize) -> Result<Vec<Record>, StoreError> {
            Ok(Vec::new())
        }
        async fn check(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn backend(&self) -> &'static str {
            "stuck"
        }
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_fail_as_unavailable_after_the_wait() {
        let store = LimitedStore::wrap(Arc::new(Stuck), 2, Duration::from_millis(50));
        let held: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.get(RecordId::random()).await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        let refused = store.check().await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "a third call finds no slot: {refused:?}"
        );
        for task in held {
            task.abort();
        }
        assert!(
            store.check().await.is_ok(),
            "slots come back when calls end"
        );
    }
}
