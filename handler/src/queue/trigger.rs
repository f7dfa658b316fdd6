//! The standalone host's queue trigger: what the Functions host does for `ingest_batch`, done
//! here, configured from the same host.json (`extensions.queues`).
//!
//! - Polls `mediflow-batches`; when it is empty, waits 100 ms doubling up to `maxPollingInterval`.
//! - Receives up to `batchSize` messages, each leased (invisible to others) for [`LEASE`], renewed
//!   while it is processed; fetches more when at most `newBatchThreshold` are in flight, so at most
//!   `batchSize + newBatchThreshold` run at once.
//! - Each message: [`batches::decode_message`] (base64 when `messageEncoding` says so; plain JSON
//!   text is tolerated) → [`batches::ingest_and_count`] → delete on success.
//! - Poison rule, as azure-webjobs-sdk's `QueueProcessor` does it: a message received with
//!   `DequeueCount > maxDequeueCount` goes to `<queue>-poison` without being processed (an earlier
//!   holder died with it); a failed attempt with `DequeueCount >= maxDequeueCount` goes there too;
//!   an earlier failed attempt is released with `visibilityTimeout` (retried later).
//! - Unlike the Functions host, a message that can never succeed (undecodable, or a `batch_id`
//!   already used for different records) goes to the poison queue at once instead of after
//!   `maxDequeueCount` tries: retrying cannot change the outcome, and nothing is lost (the poison
//!   queue keeps the original text).
//! - A store outage poisons nothing: an attempt that fails because the store is unavailable puts
//!   a fresh copy of the message back (its dequeue count starts again) and the trigger stops
//!   receiving until the store answers its check again.
//! - A batch whose message goes to the poison queue is marked `failed` with the reason (GET
//!   /batches/{id} shows it; when the store cannot take it then, as soon as it answers again:
//!   [`batches::FailedMarks`]); `handler redrive` moves poison messages back.
//! - Queue errors (the service unreachable) are logged and backed off; the loop never ends on its
//!   own. When `stop` turns true it receives nothing more, finishes what is in flight, and returns.
//!
//! Logs carry the message id, dequeue count and batch id, never the message content.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::QueueSettings;
use super::client::{BatchQueue, Received};
use crate::domain::BatchMessage;
use crate::metrics::Metrics;
use crate::service::batches::{self, MessageOutcome as Outcome};
use crate::service::{ServiceError, StoreHandle};

/// How long a received message stays invisible to other consumers; renewed every third of it
/// while the message is processed. After a crash the message reappears this long after it was
/// received (or last renewed).
pub const LEASE: Duration = Duration::from_secs(30);

/// The shortest wait between polls of an empty queue.
const MIN_POLL: Duration = Duration::from_millis(100);

/// The longest a receive may take before it counts as a queue error.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do after an attempt, by the Functions host's rules plus our "never succeeds" case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delete,
    Release,
    Poison,
    /// A fresh copy back on the queue after `visibilityTimeout` (the store was unavailable).
    Requeue,
}

/// The failure side of the rule: `DequeueCount >= maxDequeueCount` → poison, else release.
fn after_failure(dequeue_count: u32, max_dequeue_count: u32) -> Verdict {
    if dequeue_count >= max_dequeue_count {
        Verdict::Poison
    } else {
        Verdict::Release
    }
}

/// The before-processing side: `DequeueCount > maxDequeueCount` → poison without processing.
fn poisoned_on_arrival(dequeue_count: u32, max_dequeue_count: u32) -> bool {
    dequeue_count > max_dequeue_count
}

/// Everything a message's task needs.
struct Context {
    queue: BatchQueue,
    settings: QueueSettings,
    store: StoreHandle,
    metrics: Arc<Metrics>,
    /// Who may send batch messages: each message is attributed to its client or refused.
    clients: crate::auth::Clients,
    /// Set when an attempt failed because the store was unavailable; cleared when its check
    /// passes again. While set, nothing is received.
    store_down: AtomicBool,
    failed_marks: batches::FailedMarks,
}

/// Runs the queue trigger until `stop` turns true, then finishes in-flight messages.
#[expect(
    clippy::too_many_lines,
    reason = "one loop owns the receive state (delay, in-flight set, store waits); pieces of it apart would share all of it"
)]
pub async fn run(
    queue: BatchQueue,
    settings: QueueSettings,
    store: StoreHandle,
    metrics: Arc<Metrics>,
    clients: crate::auth::Clients,
    mut stop: watch::Receiver<bool>,
) {
    let batch_size = settings.batch_size.clamp(1, 32);
    let threshold = usize::try_from(settings.new_batch_threshold).unwrap_or(usize::MAX);
    let max_poll = settings.max_polling_interval.max(MIN_POLL);
    tracing::info!(
        queue = %queue.queue_name(),
        batch_size,
        new_batch_threshold = settings.new_batch_threshold,
        max_dequeue_count = settings.max_dequeue_count,
        visibility_timeout_s = settings.visibility_timeout.as_secs(),
        "queue trigger started"
    );
    let context = Arc::new(Context {
        queue,
        settings,
        store,
        metrics,
        clients,
        store_down: AtomicBool::new(false),
        failed_marks: batches::FailedMarks::default(),
    });
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut delay = Duration::ZERO;
    let mut waiting_for_store = false;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            log_task_failure(done);
        }
        if *stop.borrow() {
            break;
        }
        if in_flight.len() > threshold {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break },
                Some(done) = in_flight.join_next() => log_task_failure(done),
            }
            continue;
        }
        // Receiving while the store cannot be used would only burn dequeue counts.
        if context.store.get().is_err() {
            if !waiting_for_store {
                tracing::info!("queue trigger waiting for the store to open");
                waiting_for_store = true;
            }
            if !pause(&mut stop, Duration::from_millis(250)).await {
                break;
            }
            continue;
        }
        waiting_for_store = false;
        if context.store_down.load(Ordering::SeqCst) {
            if store_answers(&context.store).await {
                tracing::info!("the store answers again: receiving batch messages");
                context.store_down.store(false, Ordering::SeqCst);
                delay = Duration::ZERO;
            } else {
                delay = (delay * 2).clamp(
                    Duration::from_millis(250),
                    max_poll.max(Duration::from_secs(5)),
                );
                tracing::info!(
                    retry_in_ms = delay.as_millis(),
                    "store still unavailable: not receiving batch messages"
                );
                if !pause(&mut stop, delay).await {
                    break;
                }
                continue;
            }
        }
        let received =
            tokio::time::timeout(RECEIVE_TIMEOUT, context.queue.receive(batch_size, LEASE)).await;
        match received {
            Ok(Ok(messages)) if messages.is_empty() => {
                delay = (delay * 2).clamp(MIN_POLL, max_poll);
            }
            Ok(Ok(messages)) => {
                delay = Duration::ZERO;
                for message in messages {
                    in_flight.spawn(handle(Arc::clone(&context), message));
                }
            }
            Ok(Err(err)) => {
                delay = (delay * 2).clamp(
                    Duration::from_secs(1),
                    max_poll.max(Duration::from_secs(10)),
                );
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis(), "cannot receive batch messages");
            }
            Err(_) => {
                delay = (delay * 2).clamp(
                    Duration::from_secs(1),
                    max_poll.max(Duration::from_secs(10)),
                );
                tracing::warn!(
                    retry_in_ms = delay.as_millis(),
                    "receiving batch messages timed out"
                );
            }
        }
        if !delay.is_zero() && !pause(&mut stop, delay).await {
            break;
        }
    }
    tracing::info!(
        in_flight = in_flight.len(),
        "queue trigger stopping: finishing in-flight messages"
    );
    while let Some(done) = in_flight.join_next().await {
        log_task_failure(done);
    }
    tracing::info!("queue trigger stopped");
}

/// Whether the store is open, healthy and answers its check.
async fn store_answers(store: &StoreHandle) -> bool {
    match store.get() {
        Ok(store) => store.health() == crate::store::StoreHealth::Ok && store.check().await.is_ok(),
        Err(_) => false,
    }
}

/// Sleeps for `delay`; `false` when asked to stop meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        changed = stop.changed() => changed.is_ok() && !*stop.borrow(),
        () = tokio::time::sleep(delay) => true,
    }
}

fn log_task_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        tracing::error!(error = %err, "a batch message task failed; the message will be received again");
    }
}

/// Handles one message from receipt to delete, release or poison.
async fn handle(context: Arc<Context>, mut message: Received) {
    let max = context.settings.max_dequeue_count;
    if poisoned_on_arrival(message.dequeue_count, max) {
        tracing::warn!(message_id = %message.id, dequeue_count = message.dequeue_count, max_dequeue_count = max,
            "batch message exceeded maxDequeueCount: moving it to the poison queue unprocessed");
        if let Ok(batch) =
            batches::decode_message(&message.text, context.queue.base64(), &context.clients)
        {
            let failure = format!(
                "ingestion was abandoned {} times (the consumer stopped); the message is in {}",
                message.dequeue_count - 1,
                context.queue.poison_queue_name()
            );
            mark_failed(&context, &batch, failure).await;
        }
        finish(&context, &message, Verdict::Poison, Outcome::Poisoned).await;
        return;
    }
    let batch = match batches::decode_message(
        &message.text,
        context.queue.base64(),
        &context.clients,
    ) {
        Ok(batch) => batch,
        Err(problem) => {
            tracing::warn!(message_id = %message.id, dequeue_count = message.dequeue_count, problem,
                "undecodable batch message: moving it to the poison queue");
            finish(&context, &message, Verdict::Poison, Outcome::Invalid).await;
            return;
        }
    };
    let batch_id = batch.batch_id;
    let result = {
        let work = async {
            let store = context.store.get()?;
            batches::ingest_and_count(store.as_ref(), &context.metrics, &batch).await
        };
        with_lease(&context.queue, &mut message, work).await
    };
    let (verdict, outcome) = match result {
        Ok(_) => {
            tracing::info!(%batch_id, message_id = %message.id, dequeue_count = message.dequeue_count, "batch message completed");
            (Verdict::Delete, Outcome::Completed)
        }
        Err(ServiceError::BatchConflict) => {
            tracing::warn!(%batch_id, message_id = %message.id, dequeue_count = message.dequeue_count,
                "batch_id already used for different records: moving the message to the poison queue");
            (Verdict::Poison, Outcome::Invalid)
        }
        // Transient, and the store does not answer its check either: an outage, not one busy call.
        Err(err) if err.is_transient() && !store_answers(&context.store).await => {
            tracing::warn!(%batch_id, message_id = %message.id, dequeue_count = message.dequeue_count,
                error = %err, "store unavailable: the batch goes back on the queue (not counted toward poisoning); receiving pauses until the store answers");
            context.store_down.store(true, Ordering::SeqCst);
            (Verdict::Requeue, Outcome::Retried)
        }
        Err(err) => match after_failure(message.dequeue_count, max) {
            Verdict::Poison => {
                tracing::warn!(%batch_id, message_id = %message.id, dequeue_count = message.dequeue_count, error = %err,
                    "batch failed maxDequeueCount times: moving it to the poison queue");
                let failure = format!(
                    "ingestion failed {} times; the message is in {}",
                    message.dequeue_count,
                    context.queue.poison_queue_name()
                );
                mark_failed(&context, &batch, failure).await;
                (Verdict::Poison, Outcome::Poisoned)
            }
            verdict => {
                tracing::warn!(%batch_id, message_id = %message.id, dequeue_count = message.dequeue_count, error = %err,
                    retry_in_s = context.settings.visibility_timeout.as_secs(), "batch failed; it will be retried");
                (verdict, Outcome::Retried)
            }
        },
    };
    finish(&context, &message, verdict, outcome).await;
}

/// Marks a poisoned batch `failed`: now, or when the store answers again (the message is in the
/// poison queue either way).
async fn mark_failed(context: &Context, batch: &BatchMessage, failure: String) {
    context
        .failed_marks
        .mark(&context.store, batch, failure)
        .await;
}

/// Runs `work` while renewing the message's lease every third of [`LEASE`].
async fn with_lease<T>(
    queue: &BatchQueue,
    message: &mut Received,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let period = LEASE / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = renew.tick() => match queue.set_visibility(message, LEASE).await {
                Ok(Some(receipt)) => message.pop_receipt = receipt,
                Ok(None) => tracing::warn!(message_id = %message.id, "lease lost: another consumer may process this message too (harmless: ingestion is idempotent)"),
                Err(err) => tracing::warn!(message_id = %message.id, error = %err, "cannot renew the lease"),
            },
        }
    }
}

/// Applies the verdict to the queue and counts the outcome. A queue error here only delays
/// things: the lease runs out and the message is received again (ingestion is idempotent).
async fn finish(context: &Context, message: &Received, verdict: Verdict, outcome: Outcome) {
    let done = match verdict {
        Verdict::Delete => context.queue.delete(message).await,
        Verdict::Release => context
            .queue
            .set_visibility(message, context.settings.visibility_timeout)
            .await
            .map(|_| ()),
        Verdict::Poison => context.queue.poison(message).await,
        Verdict::Requeue => {
            context
                .queue
                .requeue(message, context.settings.visibility_timeout)
                .await
        }
    };
    if let Err(err) = done {
        tracing::warn!(message_id = %message.id, error = %err, ?verdict,
            "queue update failed; the message will be received again when its lease ends");
    }
    context.metrics.count_queue_message(outcome.label());
    tracing::debug!(message_id = %message.id, outcome = outcome.label(), "batch message handled");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poison_rule_is_the_functions_hosts() {
        // (dequeue count, max, poisoned on arrival, verdict after a failed attempt)
        for (count, max, on_arrival, after) in [
            (1, 5, false, Verdict::Release),
            (4, 5, false, Verdict::Release),
            (5, 5, false, Verdict::Poison), // the 5th failed attempt is the last
            (6, 5, true, Verdict::Poison),  // received again after a crash on the 5th
            (1, 1, false, Verdict::Poison), // maxDequeueCount 1: no retry
        ] {
            assert_eq!(poisoned_on_arrival(count, max), on_arrival, "{count}/{max}");
            assert_eq!(after_failure(count, max), after, "{count}/{max}");
        }
    }
}
