//! The in-process figures of BENCHMARKS.md, with criterion and the handler library (no HTTP).
//! `scripts/bench.sh` runs this through the harness, pinned to one core with the store's own
//! threads, and the harness reads `estimates.json` (mean per iteration).
//!
//! - `batch/one_at_a_time`, `batch/eight_at_a_time`: `BatchMessage::from_slice` +
//!   `service::batches::ingest` of 375-record messages on the durable embedded store, on a
//!   current-thread runtime; one message per iteration, or eight concurrently (as the queue
//!   trigger runs them, sharing commits). Every message has a fresh batch id, so each is stored.
//! - `envelope/envelope_N`, `envelope/bare_N`: decoding an `ingest_batch` invocation as the
//!   Functions host sends it (`Invocation::from_slice`, `dequeue_count`, `message_id`, the queue
//!   message text, then the message) against decoding the bare message, for 1 and 375 records.
//!
//! `cargo bench -p harness --bench in_process` runs it alone (reports in
//! `$CARGO_TARGET_DIR/criterion`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use handler::domain::BatchMessage;
use handler::functions::envelope::Invocation;
use handler::service::batches;
use handler::store::embedded::EmbeddedStore;
use harness::{RECORDS_PER_BATCH, batch_message, invocation};

async fn ingest(store: &EmbeddedStore, bytes: &[u8]) -> usize {
    let message = BatchMessage::from_slice(bytes).expect("a valid batch message");
    let ingested = batches::ingest(store, &message).await.expect("ingested");
    ingested.report.accepted
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group.sampling_mode(SamplingMode::Flat);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = runtime.expect("runtime");
    for (name, at_once) in [("one_at_a_time", 1), ("eight_at_a_time", 8)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let records = RECORDS_PER_BATCH * at_once;
        group.throughput(Throughput::Elements(records.try_into().expect("small")));
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let count = usize::try_from(iterations).expect("small") * at_once;
                let messages = (0..count).map(|_| batch_message(RECORDS_PER_BATCH));
                let messages: Vec<Vec<u8>> = messages.collect();
                let started = Instant::now();
                runtime.block_on(async {
                    for chunk in messages.chunks(at_once) {
                        let ingested = chunk.iter().map(|message| ingest(&store, message));
                        let stored = futures::future::join_all(ingested).await;
                        assert_eq!(stored.iter().sum::<usize>(), records, "every record stored");
                    }
                });
                started.elapsed()
            });
        });
    }
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    // Auth off: the message is attributed to the anonymous caller (no signature to check).
    let clients = handler::auth::Clients::off();
    for records in [1, RECORDS_PER_BATCH] {
        let message = batch_message(records);
        let envelope = invocation(&message);
        group.bench_function(format!("envelope_{records}"), |b| {
            b.iter(|| {
                let invocation = Invocation::from_slice(&envelope).expect("an invocation");
                black_box(invocation.dequeue_count());
                black_box(invocation.message_id());
                let text = invocation.queue_message_text("batch").expect("a message");
                let message = batches::decode_message(&text, true, &clients).expect("decoded");
                black_box(message.records.len())
            });
        });
        group.bench_function(format!("bare_{records}"), |b| {
            b.iter(|| {
                let message = BatchMessage::from_slice(&message).expect("decoded");
                black_box(message.records.len())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Shorter than criterion's defaults (3 s + 5 s, 100 samples): a batch iteration takes
    // milliseconds. The command line (`--warm-up-time`, `--measurement-time`) overrides these.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = batch, envelope
}
criterion_main!(benches);
