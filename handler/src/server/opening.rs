//! Opening the configured store (in the background for the service, once for a one-shot command)
//! and the watchdog that stops the process when the open store can no longer work.

use std::sync::Arc;
use std::time::Duration;

use super::StartError;
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
use crate::service::StoreHandle;
use crate::store::limited::LimitedStore;
use crate::store::observed::ObservedStore;
use crate::store::{SharedStore, StoreError, StoreHealth, embedded::EmbeddedStore};

/// Opens the configured store and makes it available. A local store that cannot open is fatal;
/// a remote one is retried with backoff (readiness answers 503 meanwhile).
pub(super) async fn open_store(
    config: StoreConfig,
    cosmos_max_concurrency: usize,
    handle: StoreHandle,
    metrics: Arc<Metrics>,
) -> Result<(), StoreError> {
    #[cfg(feature = "fault-injection")]
    crate::fault::store_opening().await;
    let mut backoff = Duration::from_millis(250);
    loop {
        let opened: Result<SharedStore, StoreError> = match &config {
            StoreConfig::Embedded { data_dir } => {
                let dir = data_dir.clone();
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                    .await
                    .map_err(StoreError::unavailable)??;
                tracing::info!(data_dir = %data_dir.display(), "embedded store open");
                Ok(Arc::new(store) as SharedStore)
            }
            StoreConfig::Cosmos(cosmos) => {
                crate::store::cosmos::connect(cosmos).await.map(|store| {
                    LimitedStore::wrap(
                        store,
                        cosmos_max_concurrency,
                        crate::store::limited::SLOT_WAIT,
                    )
                })
            }
        };
        match opened {
            Ok(store) => {
                handle.set(ObservedStore::wrap(store, metrics));
                return Ok(());
            }
            Err(err) if matches!(config, StoreConfig::Embedded { .. }) => return Err(err),
            Err(err) => {
                handle.set_retrying();
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis(), "store not reachable yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Opens the configured store for a one-shot command (a local one only while no service holds
/// it), waiting at most 60 s for a remote one.
pub(crate) async fn open_store_once(config: &Config) -> Result<SharedStore, StartError> {
    let handle = StoreHandle::default();
    let opening = open_store(
        config.store.clone(),
        config.cosmos_max_concurrency,
        handle.clone(),
        Arc::new(Metrics::default()),
    );
    tokio::time::timeout(Duration::from_secs(60), opening)
        .await
        .map_err(|_| StartError::Store(StoreError::unavailable("not reachable within 60 s")))?
        .map_err(StartError::Store)?;
    let store = handle
        .get()
        .map_err(|e| StartError::StoreFailed(e.to_string()))?;
    Ok(Arc::clone(store))
}

/// How often the watchdog asks the store whether it can still work.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Completes with the reason once the open store reports [`StoreHealth::Failed`]: the process then
/// stops with a non-zero code so that Kubernetes or the Functions host restarts it.
pub(super) async fn watch_store_health(handle: StoreHandle) -> String {
    let mut ticker = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        ticker.tick().await;
        if let Ok(store) = handle.get()
            && let StoreHealth::Failed(reason) = store.health()
        {
            tracing::error!(%reason, "the store can no longer work; stopping so that the process is restarted");
            return reason;
        }
    }
}
