//! The use cases, as plain async functions over the store. HTTP routes, the Functions invocation
//! envelope and the standalone queue loop are thin adapters over these; tests call them directly.

pub mod batches;
pub mod error;
pub mod records;

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::store::SharedStore;
pub use error::ServiceError;

/// The store, once it is open. The server binds its port before opening the store (the Functions
/// host's readiness ping must be answered at once); until then data routes answer 503.
#[derive(Clone, Default)]
pub struct StoreHandle(Arc<OnceCell<SharedStore>>);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("ready", &self.0.initialized())
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
    }

    /// The store, or [`ServiceError::NotReady`] while it is still opening.
    pub fn get(&self) -> Result<&SharedStore, ServiceError> {
        self.0.get().ok_or(ServiceError::NotReady {
            retry_after: std::time::Duration::from_secs(1),
        })
    }
}

#[cfg(test)]
mod tests;
