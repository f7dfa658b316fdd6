//! Failures on demand, for the tests that prove a failure is noticed (built only with the
//! `fault-injection` feature, which the test command enables and a release build never has).
//!
//! `MEDIFLOW_FAULT_KILL_WRITER_AFTER=<n>`: the embedded store's writer thread dies (panics) when
//! it is about to commit its `n+1`-th group of writes: the first `n` groups are committed, the
//! rest are never answered by that thread.
//!
//! `MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS=<ms>`: opening the store (either backend) starts only after
//! this long, so that a test can send requests while the store is provably still opening (the
//! start gate of `api::admission` and the Functions host's ping).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

fn kill_writer_after() -> Option<u64> {
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    *AFTER.get_or_init(|| {
        std::env::var("MEDIFLOW_FAULT_KILL_WRITER_AFTER")
            .ok()
            .and_then(|n| n.parse().ok())
    })
}

/// Called by the writer thread before each commit; panics once the configured count is reached.
pub fn writer_group_committing() {
    static COMMITTED: AtomicU64 = AtomicU64::new(0);
    if let Some(after) = kill_writer_after() {
        assert!(
            COMMITTED.fetch_add(1, Ordering::SeqCst) < after,
            "fault injection: the store writer thread is killed (MEDIFLOW_FAULT_KILL_WRITER_AFTER={after})"
        );
    }
}

/// Called by the server before it opens the store: waits `MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS`.
pub async fn store_opening() {
    let delay = std::env::var("MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = delay {
        tracing::warn!(
            delay_ms = ms,
            "fault injection: opening the store is delayed (MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
