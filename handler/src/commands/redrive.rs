//! `handler redrive`: moves every poison batch message back to the batch queue, then exits.
//! `handler redrive --mark-failed`: marks the batch of every poison message `failed` (moving
//! nothing), then exits. Same environment as the service (docs/hardening.md).

use std::process::ExitCode;

use crate::config::Config;
use crate::definitions::{Definitions, FunctionDefinition};
use crate::queue::client::BatchQueue;
use crate::server::StartError;

pub async fn run(config: &Config, mark_failed: bool) -> ExitCode {
    let _log_guard = crate::telemetry::init(config.json_logs);
    if mark_failed {
        return match mark_poisoned_failed(config).await {
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
    match redrive(config).await {
        Ok(moved) => {
            tracing::info!(moved, "redrive done");
            ExitCode::SUCCESS
        }
        Err(err) => super::fail("redrive failed", &err),
    }
}

/// `handler redrive`: moves every message of the poison queue back to the batch queue, where the
/// trigger (ours or the Functions host's) ingests it again; returns how many were moved. Uses the
/// same queue settings as the service (`MEDIFLOW_QUEUE…`, host.json).
async fn redrive(config: &Config) -> Result<usize, StartError> {
    let queue = redrive_queue(config).await?;
    crate::queue::redrive(&queue)
        .await
        .map_err(|e| StartError::Queue(e.to_string()))
}

/// The batch queue (and its poison queue) for the `redrive` commands.
async fn redrive_queue(config: &Config) -> Result<BatchQueue, StartError> {
    let definitions = Definitions::embedded()?;
    let queue_config = config.queue.as_ref().ok_or_else(|| {
        StartError::Queue(
            "no queue configured (MEDIFLOW_QUEUE or MEDIFLOW_QUEUE__queueServiceUri)".into(),
        )
    })?;
    let trigger = definitions
        .get(crate::server::INGEST_FUNCTION)
        .and_then(FunctionDefinition::queue_trigger)
        .ok_or_else(|| {
            StartError::Queue(format!(
                "{} has no queue trigger",
                crate::server::INGEST_FUNCTION
            ))
        })?;
    BatchQueue::connect(queue_config, trigger.queue_name, definitions.queues.base64)
        .await
        .map_err(|e| StartError::Queue(e.to_string()))
}

/// `handler redrive --mark-failed`: opens the configured store (a local one only while no service
/// holds it) and marks the batch of every poison message `failed`
/// ([`crate::queue::mark_poisoned_failed`]); returns how many messages were read.
async fn mark_poisoned_failed(config: &Config) -> Result<usize, StartError> {
    let queue = redrive_queue(config).await?;
    let store = crate::server::open_store_once(config).await?;
    let (clients, _) = crate::server::load_clients(config)?;
    crate::queue::mark_poisoned_failed(&queue, store.as_ref(), &clients)
        .await
        .map_err(|e| StartError::Queue(e.to_string()))
}
