//! The embedded store's applier thread: it commits the groups the writer has journaled to redb,
//! as many as are waiting in one transaction, without `fdatasync` (the journal has them) except
//! for the commit holding a group that closed a journal segment: that one is durable, and then
//! the closed segment is deleted. Then it drops the groups from the pending map. [`commit_puts`]
//! is also how the journal is replayed at open.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use redb::Database;

use super::audit::audited_records;
use super::engine::{Engine, LatchOnPanic};
use super::journal::{Put, Table};
use super::site_index::{self, IndexKey};
use super::tables::{AUDIT, AUDIT_BY_RECORD, BATCHES, RECORDS, unavailable};
use crate::store::StoreError;

/// How often the applier writes redb's file back to the device between durable commits. Its
/// commits without `fdatasync` leave their pages in the page cache; left there until the next
/// durable commit (one per journal segment, tens of MB of pages), they went to the device in one
/// burst, and every journal `fdatasync` queued behind it (POST p99.9 at half load 18 ms against
/// 6 ms written back every 20 ms: BENCHMARKS.md, issue 25).
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Most journal groups folded into one redb commit by the applier.
pub(super) const MAX_APPLY_GROUPS: usize = 1024;

/// The files the applier keeps besides redb's own handle.
pub(super) struct ApplierFiles {
    /// Where the writer's closed journal segment is, deleted once redb holds it durably.
    pub(super) closed_segment: PathBuf,
    /// redb's file opened again, to write its pages back early ([`FLUSH_EVERY`]): an
    /// `fdatasync` on any handle of a file writes back all of its dirty pages.
    pub(super) database: File,
}

/// A journaled group on its way to redb.
pub(super) struct JournaledGroup {
    pub(super) seq: u64,
    pub(super) puts: Vec<Put>,
    /// The last group of a journal segment the writer has closed: the commit holding it is made
    /// durable, then the closed segment is deleted.
    pub(super) closes_segment: bool,
}

/// The applier thread: commit journaled groups to redb (as many as are waiting, in one durable
/// transaction), then drop them from the pending map.
pub(super) fn run_applier(
    engine: &Engine,
    queue: &std_mpsc::Receiver<JournaledGroup>,
    files: &ApplierFiles,
) {
    let _latch = LatchOnPanic(engine, "the store applier thread stopped");
    let mut flushed = Instant::now();
    while let Ok(first) = queue.recv() {
        let mut groups = vec![first];
        while groups.len() < MAX_APPLY_GROUPS {
            match queue.try_recv() {
                Ok(next) => groups.push(next),
                Err(_) => break,
            }
        }
        let durable = groups.iter().any(|group| group.closes_segment);
        if let Err(e) = commit_puts(&engine.db, groups.iter().flat_map(|g| &g.puts), durable) {
            // The puts stay in the journal (replayed on the next open) and in the pending map.
            engine.latch(format!(
                "applying the journal to the embedded store failed: {e}"
            ));
            return;
        }
        if !durable && flushed.elapsed() >= FLUSH_EVERY {
            // Only written back early: a crash still recovers from the last durable commit.
            if let Err(e) = files.database.sync_data() {
                engine.latch(format!("writing the embedded store back failed: {e}"));
                return;
            }
            flushed = Instant::now();
        }
        // Everything the closed segment holds is durable in redb now: it may go.
        if durable && let Err(e) = delete_closed(&files.closed_segment) {
            engine.latch(format!("deleting the closed journal segment failed: {e}"));
            return;
        }
        let mut ledger = engine.ledger();
        for group in &groups {
            for put in &group.puts {
                let entry = (put.table, put.key);
                if ledger
                    .pending
                    .get(&entry)
                    .is_some_and(|(seq, _)| *seq == group.seq)
                    && let Some((_, value)) = ledger.pending.remove(&entry)
                {
                    ledger.pending_bytes -= value.len();
                }
            }
            ledger.applied = group.seq;
        }
        if durable {
            ledger.durable = ledger.applied;
            ledger.closed_segment = None;
        }
        drop(ledger);
        engine.progress.notify_all();
    }
}

/// Deletes the closed journal segment and makes its deletion durable.
pub(super) fn delete_closed(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    path.parent().map_or(Ok(()), super::journal::sync_dir)
}

/// Commits `puts` to redb in one durable transaction, each record with its by-site index entry.
/// `durable`: `fdatasync` on commit; otherwise the commit is visible to readers at once and reaches
/// the file with the next durable one (the journal keeps the puts until then).
pub(super) fn commit_puts<'a>(
    db: &Database,
    puts: impl Iterator<Item = &'a Put>,
    durable: bool,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(unavailable)?;
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::unavailable(e.to_string()))?;
    }
    {
        let mut records = txn.open_table(RECORDS).map_err(unavailable)?;
        let mut batches = txn.open_table(BATCHES).map_err(unavailable)?;
        let mut audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let mut by_record = txn.open_table(AUDIT_BY_RECORD).map_err(unavailable)?;
        let mut index = site_index::open(&txn)?;
        for put in puts {
            match put.table {
                Table::Records => {
                    records
                        .insert(put.key, put.value.as_ref())
                        .map_err(unavailable)?;
                    let parsed;
                    let key = if let Some(key) = &put.index {
                        key
                    } else {
                        parsed = IndexKey::from_json(&put.value)?;
                        &parsed
                    };
                    site_index::add(&mut index, key, put.key)?;
                }
                Table::Batches => {
                    batches
                        .insert(put.key, put.value.as_ref())
                        .map_err(unavailable)?;
                }
                Table::Audit => {
                    audit
                        .insert(put.key, put.value.as_ref())
                        .map_err(unavailable)?;
                    let parsed;
                    let records = if let Some(records) = &put.audited {
                        records
                    } else {
                        parsed = audited_records(&put.value)?;
                        &parsed
                    };
                    for &record in records {
                        by_record
                            .insert((record, put.key), ())
                            .map_err(unavailable)?;
                    }
                }
            }
        }
    }
    txn.commit().map_err(unavailable)?;
    Ok(())
}
