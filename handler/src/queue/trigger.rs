//! The standalone host's queue trigger: what the Functions host does for `ingest_batch`, done
//! here, configured from the same host.json (`extensions.queues`).
//!
//! - Polls `mediflow-batches`; when it is empty, waits 100 ms doubling up to `maxPollingInterval`.
//! - Receives up to `batchSize` messages, each leased (invisible to others) for [`LEASE`], renewed
//!   while it is processed; fetches more when at most `newBatchThreshold` are in flight, so at most
//!   `batchSize + newBatchThreshold` run at once.
//! - Each message goes to the service's [`Lifecycle::handle`] (decoded, attempted, judged, its
//!   batch marked `failed` when poisoned: the rule is written there, once, for both hosts) while
//!   its lease is renewed; the trigger carries out the verdict: delete, release for
//!   `visibilityTimeout`, move to `<queue>-poison`, or put a fresh copy back (a store outage, not
//!   counted). After a requeue the trigger stops receiving until the store answers its check.
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
use crate::service::StoreHandle;
use crate::service::batches::lifecycle::{Delivery, Lifecycle, Verdict, store_answers};

/// How long a received message stays invisible to other consumers; renewed every third of it
/// while the message is processed. After a crash the message reappears this long after it was
/// received (or last renewed).
pub const LEASE: Duration = Duration::from_secs(30);

/// The shortest wait between polls of an empty queue.
const MIN_POLL: Duration = Duration::from_millis(100);

/// The longest a receive may take before it counts as a queue error.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a message's task needs.
struct Context {
    queue: BatchQueue,
    settings: QueueSettings,
    store: StoreHandle,
    /// What becomes of each message ([`crate::service::batches::lifecycle::OutageRule::Requeue`]).
    lifecycle: Lifecycle,
    /// Set when an attempt failed because the store was unavailable; cleared when its check
    /// passes again. While set, nothing is received.
    store_down: AtomicBool,
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
    lifecycle: Lifecycle,
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
        lifecycle,
        store_down: AtomicBool::new(false),
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

/// Handles one message from receipt to delete, release, poison or requeue.
async fn handle(context: Arc<Context>, mut message: Received) {
    let (message_id, text) = (message.id.clone(), message.text.clone());
    let delivery = Delivery {
        message_id: &message_id,
        text: Ok(&text),
        dequeue_count: message.dequeue_count,
    };
    let handled = with_lease(
        &context.queue,
        &mut message,
        context.lifecycle.handle(delivery),
    )
    .await;
    if handled.verdict == Verdict::Requeue {
        context.store_down.store(true, Ordering::SeqCst);
    }
    finish(&context, &message, handled.verdict).await;
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

/// Applies the verdict to the queue. A queue error here only delays things: the lease runs out
/// and the message is received again (ingestion is idempotent).
async fn finish(context: &Context, message: &Received, verdict: Verdict) {
    let done = match verdict {
        Verdict::Delete => context.queue.delete(message).await,
        Verdict::Retry => context
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
}
