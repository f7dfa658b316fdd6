//! The use cases, as plain async functions over the store. HTTP routes, the Functions invocation
//! envelope and the standalone queue loop are thin adapters over these; tests call them directly.

pub mod audit;
pub mod batches;
pub mod error;
pub mod records;

use std::sync::Arc;

use tokio::sync::{OnceCell, watch};

use crate::store::SharedStore;
pub use error::ServiceError;

/// The store, once it is open. The server binds its port before opening the store; requests that
/// arrive meanwhile wait for it ([`StoreHandle::opened`], bounded), then answer 503.
#[derive(Clone)]
pub struct StoreHandle(Arc<OnceCell<SharedStore>>, watch::Sender<Opening>);

/// Where opening the store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// The first attempt is under way: worth waiting for.
    FirstAttempt,
    /// An attempt failed (a remote store unreachable); it is retried, waiting is pointless.
    Retrying,
    Open,
}

impl Default for StoreHandle {
    fn default() -> Self {
        Self(Arc::default(), watch::Sender::new(Opening::FirstAttempt))
    }
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("ready", &self.0.initialized())
            .field("opening", &*self.1.borrow())
            .finish()
    }
}

impl StoreHandle {
    pub fn ready(store: SharedStore) -> Self {
        let handle = Self::default();
        handle.set(store);
        handle
    }

    /// Makes the store available; later calls are ignored.
    pub fn set(&self, store: SharedStore) {
        let _ = self.0.set(store);
        self.1.send_replace(Opening::Open);
    }

    /// Records that an attempt to open the store failed (it is being retried).
    pub fn set_retrying(&self) {
        self.1.send_if_modified(|state| {
            let first = *state == Opening::FirstAttempt;
            if first {
                *state = Opening::Retrying;
            }
            first
        });
    }

    /// True when the store is open; while the first attempt to open it is under way, waits for
    /// it, at most `wait` (once an attempt has failed, answers at once).
    pub async fn opened(&self, wait: std::time::Duration) -> bool {
        let mut state = self.1.subscribe();
        let settled = tokio::time::timeout(
            wait,
            state.wait_for(|state| *state != Opening::FirstAttempt),
        )
        .await;
        matches!(settled, Ok(Ok(state)) if *state == Opening::Open)
    }

    /// The store, or [`ServiceError::NotReady`] while it is still opening.
    pub fn get(&self) -> Result<&SharedStore, ServiceError> {
        self.0.get().ok_or(ServiceError::NotReady {
            retry_after: std::time::Duration::from_secs(1),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
