//! `handler serve` (and `handler` alone): starts the application, stops on SIGTERM or Ctrl-C.
//! A start that fails (the store cannot open, a damaged journal among them) ends the process
//! with the reason on stderr and exit 1.

use std::process::ExitCode;

use crate::config::Config;
use crate::server::{Application, StartError};

pub async fn run(config: Config) -> ExitCode {
    let _log_guard = crate::telemetry::init(config.json_logs);
    let started = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => return super::fail("cannot start", &err),
    };
    // The one start-up line that names the real bound addresses (port 0 binds a free port; the
    // tests read their ports from this line): `http_addr`, and `metrics_addr` (the same address
    // when metrics are served on the main port).
    let http_addr = started.local_addr();
    tracing::info!(
        target: crate::telemetry::STARTUP_TARGET,
        http_addr = %http_addr,
        metrics_addr = %started.metrics_addr().unwrap_or(http_addr),
        host = started.host_name(),
        version = crate::api::VERSION,
        "listening"
    );
    match started.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The store opens after the listener is up; a store that can never open is still a
        // start that failed.
        Err(err @ StartError::Store(_)) => super::fail("cannot start", &err),
        Err(err) => super::fail("stopped with an error", &err),
    }
}

/// Completes on SIGTERM (Kubernetes, the Functions host) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
