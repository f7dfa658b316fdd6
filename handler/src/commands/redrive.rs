//! `handler redrive`: moves every poison batch message back to the batch queue, then exits.
//! `handler redrive --mark-failed`: marks the batch of every poison message `failed` (moving
//! nothing), then exits. Same environment as the service (docs/hardening.md).

use std::process::ExitCode;

use crate::config::Config;

pub async fn run(config: &Config, mark_failed: bool) -> ExitCode {
    let _log_guard = crate::telemetry::init(config.json_logs);
    if mark_failed {
        return match crate::server::mark_poisoned_failed(config).await {
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
    match crate::server::redrive(config).await {
        Ok(moved) => {
            tracing::info!(moved, "redrive done");
            ExitCode::SUCCESS
        }
        Err(err) => super::fail("redrive failed", &err),
    }
}
