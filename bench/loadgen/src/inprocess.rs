//! In-process benches of the batch path, calling the service's own functions (no HTTP):
//! - `batch`: records/s through `BatchMessage::from_slice` + `service::batches::ingest` on the
//!   durable embedded store, on a current-thread runtime (the runner pins the process, and so the
//!   store's writer thread, to one core). Every batch is two fsynced commits (records, report).
//! - `envelope`: what the custom-handler invocation envelope adds per `ingest_batch` invocation:
//!   decoding it (`Invocation::from_slice`, `dequeue_count`, `message_id`, `queue_message`) and
//!   then the message, versus decoding the bare message.

use std::hint::black_box;
use std::time::{Duration, Instant};

use handler::domain::BatchMessage;
use handler::functions::envelope::Invocation;
use handler::service::batches;
use handler::store::embedded::EmbeddedStore;
use serde_json::{Value, json};

/// A batch message of `records` valid records, as canonical JSON bytes.
pub fn batch_message(records: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..records)
        .map(|n| {
            json!({
                "site_id": "SITE001",
                "trial_phase": "II",
                "submission_date": "2025-03-15",
                "status": "pending",
                "patient_count": 42,
                "notes": format!("r{n}"),
            })
        })
        .collect();
    json!({ "batch_id": uuid::Uuid::new_v4(), "records": items })
        .to_string()
        .into_bytes()
}

/// `records` per batch, `batches` batches, `concurrency` batches in flight (1: one after another;
/// more: as the queue trigger runs them, sharing commits). Returns the JSON result line.
pub fn batch(records: usize, batches: usize, concurrency: usize) -> Result<Value, String> {
    let messages: Vec<Vec<u8>> = (0..batches).map(|_| batch_message(records)).collect();
    let largest = messages.iter().map(Vec::len).max().unwrap_or(0);
    if largest > BatchMessage::MAX_JSON_BYTES {
        return Err(format!(
            "a {records}-record message is {largest} bytes, over the {} byte queue limit",
            BatchMessage::MAX_JSON_BYTES
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let store = EmbeddedStore::open(dir.path()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let started = Instant::now();
    let accepted = runtime.block_on(async {
        let mut accepted = 0;
        for chunk in messages.chunks(concurrency.max(1)) {
            let work = chunk.iter().map(|bytes| ingest_one(&store, bytes));
            for result in futures_join(work).await {
                accepted += result?;
            }
        }
        Ok::<usize, String>(accepted)
    })?;
    let elapsed = started.elapsed();
    if accepted != records * batches {
        return Err(format!(
            "{accepted} records accepted of {}",
            records * batches
        ));
    }
    Ok(json!({
        "bench": "batch",
        "records_per_batch": records,
        "batches": batches,
        "concurrency": concurrency,
        "message_bytes": largest,
        "seconds": elapsed.as_secs_f64(),
        "records_per_s": per_second(accepted, elapsed),
    }))
}

async fn ingest_one(store: &EmbeddedStore, bytes: &[u8]) -> Result<usize, String> {
    let message = BatchMessage::from_slice(bytes).map_err(|e| format!("{e:?}"))?;
    let ingested = batches::ingest(store, &message)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ingested.report.accepted)
}

/// Awaits every future, concurrently on this task (no spawn: the store is borrowed).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// An `ingest_batch` invocation as the Functions host sends it: the message text as a JSON string
/// (how the host passes a queue message that is JSON), metadata with string numbers.
pub fn invocation(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    json!({
        "Data": { "batch": text },
        "Metadata": {
            "DequeueCount": "1",
            "ExpirationTime": "2019-10-16T17:58:31+00:00",
            "Id": "800ae4b3-bdd2-4c08-badd-f08e5a34b865",
            "InsertionTime": "2019-10-09T17:58:31+00:00",
            "NextVisibleTime": "2019-10-09T18:08:32+00:00",
            "PopReceipt": "AgAAAAMAAAAAAAAAz3pfc9R+1QE=",
            "sys": { "MethodName": "ingest_batch", "UtcNow": "2019-10-09T17:58:32.2205399Z", "RandGuid": "24ad4c06-24ad-4e5b-8294-3da9714877e9" }
        }
    })
    .to_string()
    .into_bytes()
}

/// Nanoseconds per decode of the envelope + message and of the bare message, for a message of
/// `records` records, over `iterations` runs each (after a tenth as warm-up).
pub fn envelope(records: usize, iterations: u32) -> Result<Value, String> {
    let message = batch_message(records);
    let envelope = invocation(&message);
    // Auth off: the message is attributed to the anonymous caller (no signature to check).
    let clients = handler::auth::Clients::off();
    let through_envelope = || -> Result<usize, String> {
        let invocation = Invocation::from_slice(&envelope).map_err(|e| e.to_string())?;
        black_box(invocation.dequeue_count());
        black_box(invocation.message_id());
        let text = invocation
            .queue_message_text("batch")
            .map_err(|e| e.to_string())?;
        let message = batches::decode_message(&text, true, &clients)?;
        Ok(message.records.len())
    };
    let bare = || -> Result<usize, String> {
        let message = BatchMessage::from_slice(&message).map_err(|e| format!("{e:?}"))?;
        Ok(message.records.len())
    };
    let envelope_ns = time_per_call(iterations, through_envelope)?;
    let bare_ns = time_per_call(iterations, bare)?;
    Ok(json!({
        "bench": "envelope",
        "records": records,
        "message_bytes": message.len(),
        "envelope_bytes": envelope.len(),
        "iterations": iterations,
        "envelope_and_message_ns": envelope_ns,
        "bare_message_ns": bare_ns,
        "envelope_cost_ns": envelope_ns - bare_ns,
    }))
}

fn time_per_call(
    iterations: u32,
    mut call: impl FnMut() -> Result<usize, String>,
) -> Result<f64, String> {
    for _ in 0..iterations.div_ceil(10) {
        black_box(call()?);
    }
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(call()?);
    }
    Ok(started.elapsed().as_secs_f64() * 1e9 / f64::from(iterations.max(1)))
}
