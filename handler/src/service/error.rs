//! What a use case can fail with, in the service's words. The transports map it: `api` to a
//! status and a body, the queue trigger and the Functions adapter to retry or poison.

use std::time::Duration;

use crate::domain::FieldError;
use crate::domain::identity::Denied;
use crate::domain::record::Status;
use crate::store::StoreError;

/// Why a use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input broke a rule; every problem is listed.
    #[error("validation failed ({} problem(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// No record has this id (malformed ids included).
    #[error("record not found")]
    RecordNotFound,
    /// No batch has this id.
    #[error("batch not found")]
    BatchNotFound,
    /// A batch message larger than `limit` bytes (what fits in one queue message).
    #[error("batch message larger than {limit} bytes")]
    BatchTooLarge { limit: usize },
    /// The `Idempotency-Key` was used before with a different record.
    #[error("idempotency key reused with a different record")]
    IdempotencyConflict,
    /// The `batch_id` was used before for different records (permanent: retrying cannot help).
    #[error("batch id reused with different records")]
    BatchConflict,
    /// The store is still opening: nothing was done; retry after `retry_after`.
    #[error("the store is not open yet")]
    NotReady { retry_after: Duration },
    /// The batch could not be put on the queue: nothing was queued; retry.
    #[error("the batch queue is unavailable: {0}")]
    QueueUnavailable(String),
    /// The caller's roles or sites do not allow this (403, naming what is missing).
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// A review of a record that is no longer `pending` (409).
    #[error("record is not pending")]
    NotPending { status: Status },
    /// `If-Match` names another version of the record than the stored one (412).
    #[error("record changed since it was read")]
    PreconditionFailed,
    /// The audit buffer is full: nothing was done; retry (503 + Retry-After). Events are never
    /// dropped, so requests wait for the audit writer instead.
    #[error("the audit trail is behind")]
    AuditBacklog { retry_after: Duration },
    /// The store failed (unavailable: transient; corrupt: a bug).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A broken invariant (a bug): never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Whether trying again later can succeed (store or queue trouble); `false` for answers that
    /// will not change (bad input, conflicts, bugs).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NotReady { .. }
                | Self::AuditBacklog { .. }
                | Self::QueueUnavailable(_)
                | Self::Store(StoreError::Unavailable { .. })
        )
    }
}
