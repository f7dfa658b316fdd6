//! The application: binds its listeners first (the Functions host's readiness ping must be
//! answered at once), opens the store in the background, serves until a shutdown signal, then
//! drains in-flight requests and queue messages. The accept loop is in [`http`], opening the store
//! and its watchdog in [`opening`], the callers in force at start in [`clients`]; the one-shot commands that need a store or the queue are in
//! `crate::commands`.

mod clients;
mod http;
mod opening;

pub(crate) use clients::load_clients;
pub use http::{MAX_CONNECTIONS, MAX_HEAD_BYTES};
use http::{bind, serve};
pub use opening::HEALTH_INTERVAL;
pub(crate) use opening::open_store_once;
use opening::{open_store, watch_store_health};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Host};
use crate::config::{Config, Mode, StoreConfig};
use crate::definitions::{Definitions, FunctionDefinition};
use crate::metrics::Metrics;
use crate::queue::{QueueSettings, QueueSink, client::BatchQueue, trigger};
use crate::service::StoreHandle;
use crate::service::batches::lifecycle::{Lifecycle, OutageRule};
use crate::service::batches::{BatchSink, InProcess};
use crate::store::StoreError;

/// The longest a shutdown waits for in-flight work.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// The name of the batch-ingesting function in `function-definitions/`.
pub(crate) const INGEST_FUNCTION: &str = "ingest_batch";

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Definitions(#[from] crate::definitions::DefinitionError),
    #[error(transparent)]
    Router(#[from] api::RouterError),
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyFileError),
    #[error(transparent)]
    KeysRequired(#[from] clients::KeysRequired),
    #[error("the store cannot be opened: {0}")]
    Store(StoreError),
    #[error("the store has failed and cannot recover in this process: {0}")]
    StoreFailed(String),
    #[error("HTTP limits: {0}")]
    Limits(#[from] api::admission::LimitsError),
    #[error("the batch queue cannot be used: {0}")]
    Queue(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A bound, not yet serving, application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    router: axum::Router,
    metrics_router: axum::Router,
    state: AppState,
    store_config: StoreConfig,
    cosmos_max_concurrency: usize,
    queue: Option<(BatchQueue, QueueSettings)>,
    key_watch: Option<JoinHandle<()>>,
    host: Host,
}

impl Application {
    /// Validates the configuration, loads keys and definitions, and binds the listeners.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let definitions = Definitions::embedded_with_overrides(&config)?;
        let (addr, host) = match config.mode {
            Mode::CustomHandler { port } => (
                SocketAddr::from(([127, 0, 0, 1], port)),
                Host::CustomHandler,
            ),
            Mode::Standalone { addr } => (
                addr,
                Host::Standalone {
                    metrics_on_main_port: config.metrics_addr.is_none(),
                },
            ),
        };
        if config.api_keys_file.is_none() {
            clients::may_run_without_keys(&config.mode, config.auth_off)?;
        }
        let listener = bind(addr).await?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let (clients, key_watch) = load_clients(&config)?;
        // The standalone host runs the queue trigger itself; under the Functions host the host does.
        let queue = match (&config.queue, host) {
            (Some(queue_config), Host::Standalone { .. }) => {
                let trigger = definitions
                    .get(INGEST_FUNCTION)
                    .and_then(FunctionDefinition::queue_trigger)
                    .ok_or_else(|| {
                        StartError::Queue(format!("{INGEST_FUNCTION} has no queue trigger"))
                    })?;
                let queue = BatchQueue::connect(
                    queue_config,
                    trigger.queue_name,
                    definitions.queues.base64,
                )
                .await
                .map_err(|e| StartError::Queue(e.to_string()))?
                .with_poison_retention(config.poison_retention);
                Some((queue, definitions.queues.clone()))
            }
            _ => None,
        };
        let limits = api::admission::Limits::from_host_json(
            crate::definitions::host_json(),
            &config.http_overrides,
            config.body_budget_bytes,
        )?;
        tracing::info!(
            max_concurrent = ?limits.max_concurrent,
            max_outstanding = ?limits.max_outstanding,
            body_budget_bytes = limits.body_budget_bytes,
            "admission limits"
        );
        // Standalone: the queue when configured, else in-process; under the Functions host: the
        // invocation's queue output binding.
        let store = StoreHandle::default();
        let metrics = Arc::new(Metrics::default());
        let batches: Arc<dyn BatchSink> = match (&queue, host) {
            (_, Host::CustomHandler) => Arc::new(crate::functions::invoke::OutputBinding::new(
                clients.clone(),
            )),
            (Some((queue, _)), _) => Arc::new(QueueSink::new(queue.clone(), clients.clone())),
            (None, _) => Arc::new(InProcess::new(store.clone(), Arc::clone(&metrics))),
        };
        let state = AppState::new(
            store,
            metrics,
            clients,
            batches,
            limits,
            config.http_timeouts,
        );
        // Its checks begin once the store is open; the runtime ends it with the process.
        drop(crate::service::audit::watch_chain(
            state.store.clone(),
            Arc::clone(&state.metrics),
        ));
        let mut router = api::router(state.clone(), &definitions, host)?;
        if host == Host::CustomHandler {
            // Invocations that carry an HTTP request run through the router of every HTTP function.
            let http = api::router(state.clone(), &definitions, Host::Invocations)?;
            router = router.merge(crate::functions::invoke::router(
                state.clone(),
                http,
                &definitions,
            )?);
        }
        let metrics_router = api::metrics_router(state.clone());
        Ok(Self {
            listener,
            metrics_listener,
            router,
            metrics_router,
            state,
            store_config: config.store,
            cosmos_max_concurrency: config.cosmos_max_concurrency,
            queue,
            key_watch,
            host,
        })
    }

    /// The address HTTP is served on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Which host this process serves: `standalone` or `custom-handler` (under the Functions host).
    pub fn host_name(&self) -> &'static str {
        match self.host {
            Host::Standalone { .. } => "standalone",
            Host::CustomHandler | Host::Invocations => "custom-handler",
        }
    }

    /// The metrics listener's address, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains (at most [`DRAIN_TIMEOUT`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let store_ready = tokio::spawn(open_store(
            self.store_config.clone(),
            self.cosmos_max_concurrency,
            self.state.store.clone(),
            Arc::clone(&self.state.metrics),
        ));

        let header_read = self.state.timeouts.header_read;
        let http = serve(self.listener, self.router, stop_rx.clone(), header_read);
        let metrics = self.metrics_listener.map(|listener| {
            tokio::spawn(serve(
                listener,
                self.metrics_router,
                stop_rx.clone(),
                header_read,
            ))
        });
        let trigger = self.queue.map(|(queue, settings)| {
            let lifecycle = Lifecycle::new(
                self.state.store.clone(),
                Arc::clone(&self.state.metrics),
                self.state.clients.clone(),
                queue.queue_name(),
                queue.base64(),
                settings.max_dequeue_count,
                OutageRule::Requeue,
            );
            tokio::spawn(trigger::run(
                queue,
                settings,
                self.state.store.clone(),
                lifecycle,
                stop_rx.clone(),
            ))
        });
        let mut http = tokio::spawn(http);

        let store_abort = store_ready.abort_handle();
        // Completes only if the store can never open (a fatal local error).
        let store_failed = async move {
            match store_ready.await {
                Ok(Err(err)) => err,
                _ => std::future::pending().await,
            }
        };
        let store_health = watch_store_health(self.state.store.clone());
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            reason = store_health => Err(StartError::StoreFailed(reason)),
            served = &mut http => Err(StartError::Serve(std::io::Error::other(match served {
                Ok(()) => "the HTTP server stopped".to_owned(),
                Err(err) => err.to_string(),
            }))),
            err = store_failed => Err(StartError::Store(err)),
        };
        tracing::info!("shutting down: no new requests or messages; finishing in-flight work");
        let _ = stop_tx.send(true);
        let drain = async {
            let _ = http.await;
            if let Some(trigger) = trigger {
                let _ = trigger.await;
            }
            if let Some(metrics) = metrics {
                let _ = metrics.await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; exiting with work in flight");
        }
        store_abort.abort();
        if let Some(watch) = self.key_watch {
            watch.abort();
        }
        tracing::info!("stopped");
        outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::api::http_functions;
    use crate::definitions::Definitions;
    use crate::functions::invoke::INVOKED_FUNCTIONS;

    /// Every function.json has its handlers and every handler its function.json: a function the
    /// binary cannot serve, or a handler nothing routes to, fails here rather than at start.
    #[test]
    fn every_function_has_a_handler_and_every_handler_a_function() {
        let definitions = Definitions::embedded().expect("definitions parse");
        let http: Vec<&str> = http_functions().iter().map(|(name, _)| *name).collect();
        let invoked: Vec<&str> = INVOKED_FUNCTIONS.iter().map(|(name, _)| *name).collect();
        for function in &definitions.functions {
            let name = function.name.as_str();
            if function.http_trigger().is_some() {
                assert!(http.contains(&name), "{name}: no HTTP handler");
            }
            if !function.is_forwarded() {
                assert!(invoked.contains(&name), "{name}: no invocation handler");
            }
        }
        for name in http {
            assert!(
                definitions
                    .get(name)
                    .is_some_and(|f| f.http_trigger().is_some()),
                "HTTP handler {name}: no function.json with an httpTrigger"
            );
        }
        for name in invoked {
            assert!(
                definitions.get(name).is_some_and(|f| !f.is_forwarded()),
                "invocation handler {name}: no function.json the host invokes"
            );
        }
    }
}
