//! The device's own limit for a durable write: append `bytes` to a file in `dir` and
//! `fdatasync`, `rounds` times, one at a time. One sync is what one group commit costs at best, so
//! `1 / median` is the most groups per second any durable writer can commit on this disk.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// What [`fsync`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Sync {
    pub rounds: usize,
    pub bytes: usize,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn fsync(dir: &Path, rounds: usize, bytes: usize) -> Result<Sync, String> {
    let probe = tempfile::NamedTempFile::new_in(dir);
    let mut probe = probe.map_err(|e| format!("probe file in {}: {e}", dir.display()))?;
    // A fresh file written from its start: each write appends.
    let file = probe.as_file_mut();
    let payload = vec![b'x'; bytes];
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        file.write_all(&payload)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("append + fdatasync: {e}"))?;
        took.push(started.elapsed());
    }
    took.sort_unstable();
    let at = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)];
    Ok(Sync {
        rounds: took.len(),
        bytes,
        p50: at(50),
        p99: at(99),
    })
}
