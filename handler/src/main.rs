//! `handler`: reads the environment, starts the application, stops on SIGTERM or Ctrl-C.
//! `handler redrive`: moves every poison batch message back to the batch queue, then exits.
//! `handler redrive --mark-failed`: marks the batch of every poison message `failed` (moving
//! nothing), then exits.

use std::process::ExitCode;

use handler::config::Config;
use handler::server::Application;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("handler: {err}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = handler::telemetry::init(config.json_logs);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("audit") {
        return audit(&config, &args[1..]).await;
    }
    if std::env::args().nth(1).as_deref() == Some("redrive") {
        if std::env::args().nth(2).as_deref() == Some("--mark-failed") {
            return match handler::server::mark_poisoned_failed(&config).await {
                Ok(read) => {
                    tracing::info!(read, "poisoned batches marked failed");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    tracing::error!(error = %err, "marking poisoned batches failed did not finish");
                    ExitCode::FAILURE
                }
            };
        }
        return match handler::server::redrive(&config).await {
            Ok(moved) => {
                tracing::info!(moved, "redrive done");
                ExitCode::SUCCESS
            }
            Err(err) => fail("redrive failed", &err),
        };
    }
    let started = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => return fail("cannot start", &err),
    };
    // The one start-up line that names the real bound addresses (port 0 binds a free port; the
    // tests read their ports from this line): `http_addr`, and `metrics_addr` (the same address
    // when metrics are served on the main port).
    let http_addr = started.local_addr();
    tracing::info!(
        target: handler::telemetry::STARTUP_TARGET,
        http_addr = %http_addr,
        metrics_addr = %started.metrics_addr().unwrap_or(http_addr),
        host = started.host_name(),
        version = handler::api::VERSION,
        "listening"
    );
    match started.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// `handler audit verify`: exit 0 when every chain is intact, 1 naming the first broken event
/// (or when the store cannot be read), 2 for a usage error.
#[expect(clippy::print_stdout, reason = "the command's report is its output")]
async fn audit(config: &Config, args: &[String]) -> ExitCode {
    if args != ["verify"] {
        eprintln!("usage: handler audit verify");
        return ExitCode::from(2);
    }
    match handler::server::verify_audit(config).await {
        Ok(Ok(verified)) => {
            let chains: Vec<String> = verified
                .chains
                .iter()
                .map(|(chain, last)| format!("{chain} (1..={last})"))
                .collect();
            println!(
                "audit trail intact: {} events in {} chain(s): {}",
                verified.events,
                verified.chains.len(),
                chains.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!("handler: {broken}");
            ExitCode::FAILURE
        }
        Err(err) => fail("cannot verify the audit trail", &err),
    }
}

/// A start that cannot go on: the error in the log (for the log pipeline) and on stderr (for
/// whoever started the process: a terminal, the Functions host, a pod's last state), exit 1.
fn fail(what: &str, err: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(error = %err, "{what}");
    eprintln!("handler: {what}: {err}");
    ExitCode::FAILURE
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
