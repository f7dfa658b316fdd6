//! `loadgen fsync`: the device's own limit for a durable write. Appends `bytes` to a file in `dir`
//! and calls `fdatasync`, `rounds` times, one at a time; the latency of each round in an HDR
//! histogram. One sync per round is what one group commit costs at best, so `1 / median` is the
//! most groups per second any durable writer can commit on this disk.
//!
//! `loadgen redb`: the same question asked of the B-tree engine the store applies to: one durable
//! redb commit of `records` random-key 250-byte values, `rounds` times (docs/adr/0006).

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

/// A histogram of 1 µs to 60 s at 3 significant digits.
fn histogram() -> Result<hdrhistogram::Histogram<u64>, String> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))
}

fn record(histogram: &mut hdrhistogram::Histogram<u64>, started: Instant) {
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

pub fn fsync(dir: &Path, rounds: usize, bytes: usize) -> Result<Value, String> {
    let path = tempfile::Builder::new()
        .prefix("fsync-probe")
        .tempfile_in(dir)
        .map_err(|e| format!("probe file in {}: {e}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path.path())
        .map_err(|e| format!("probe file: {e}"))?;
    let payload = vec![b'x'; bytes];
    let mut histogram = histogram()?;
    for _ in 0..rounds {
        let started = Instant::now();
        file.write_all(&payload)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("append + fdatasync: {e}"))?;
        record(&mut histogram, started);
    }
    Ok(json!({
        "rounds": rounds,
        "bytes": bytes,
        "p50_us": histogram.value_at_quantile(0.5),
        "p99_us": histogram.value_at_quantile(0.99),
    }))
}

pub fn redb(dir: &Path, rounds: usize, records: usize) -> Result<Value, String> {
    const TABLE: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("records");
    let dir = tempfile::tempdir_in(dir).map_err(|e| format!("temp dir: {e}"))?;
    let db = redb::Database::builder()
        .set_cache_size(4 * 1024 * 1024)
        .create(dir.path().join("probe.redb"))
        .map_err(|e| format!("redb: {e}"))?;
    let value = [b'x'; 250];
    let mut histogram = histogram()?;
    for _ in 0..rounds {
        let started = Instant::now();
        let txn = db.begin_write().map_err(|e| format!("redb: {e}"))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| format!("redb: {e}"))?;
            for _ in 0..records {
                table
                    .insert(uuid::Uuid::new_v4().as_u128(), value.as_slice())
                    .map_err(|e| format!("redb: {e}"))?;
            }
        }
        txn.commit().map_err(|e| format!("redb: {e}"))?;
        record(&mut histogram, started);
    }
    Ok(json!({
        "rounds": rounds,
        "records_per_commit": records,
        "p50_us": histogram.value_at_quantile(0.5),
        "p99_us": histogram.value_at_quantile(0.99),
    }))
}
