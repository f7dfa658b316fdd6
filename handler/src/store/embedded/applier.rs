//! The embedded store's applier thread: it commits the groups the writer has journaled to redb,
//! as many as are waiting in one transaction, without `fdatasync` (the journal has them) except
//! for the commit holding a group that closed a journal segment: that one is durable, and then
//! the closed segment is deleted. Then it drops the groups from the pending map. [`commit_puts`]
//! is also how the journal is replayed at open.
//!
//! The by-record audit index is written in sorted runs: an event's `(record, seq)` entry waits in
//! the engine's deferred list (which a record's history reads too) until
//! [`DEFERRED_INDEX_ENTRIES`] have gathered or a durable commit comes, and then all of them go
//! into redb in key order in one commit. One entry at a time, each read event's random record key
//! rewrote its own leaf of the index (a `pread`, a `pwrite` and a checksum of 4 KiB per event);
//! in a sorted run, entries that share a leaf share its rewrite. A durable commit always holds
//! every deferred entry, so what a crash loses of the index is only ever in the journal, which
//! the replay writes whole.

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

/// Most by-record index entries deferred before the applier writes them in one sorted run
/// (32 B each: 1 MiB). Measured on the store floor's saturated GET (`harness store-floor`, one
/// read event per GET): 31k GET/s one entry at a time, 35k with runs of 4,096, 41k with 32,768
/// (BENCHMARKS.md, stop 25). A run shares leaf rewrites only among entries landing in the same
/// leaf, so the gain shrinks as the index outgrows the run.
pub(super) const DEFERRED_INDEX_ENTRIES: usize = 32 * 1024;

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
        let puts = || groups.iter().flat_map(|g| &g.puts);
        let fresh: usize = puts()
            .filter_map(|put| put.audited.as_ref())
            .map(Vec::len)
            .sum();
        // A durable commit holds the whole index; otherwise the deferred entries wait for a full run.
        let run = durable || engine.deferred_index().len() + fresh >= DEFERRED_INDEX_ENTRIES;
        let index = if run {
            IndexWrites::Run(engine.deferred_index().clone())
        } else {
            IndexWrites::Defer(Vec::with_capacity(fresh))
        };
        let written = commit_puts(&engine.db, puts(), durable, index);
        let deferred = match written {
            Ok(deferred) => deferred,
            Err(e) => {
                // The puts stay in the journal (replayed on the next open) and in the pending map.
                engine.latch(format!(
                    "applying the journal to the embedded store failed: {e}"
                ));
                return;
            }
        };
        // Before `applied` moves (what readers of the index wait for), so a reader that has waited
        // finds every entry of the events it waited for, in redb or in the deferred list.
        {
            let mut list = engine.deferred_index();
            if run {
                // Only this thread changes the list: it still holds exactly the run just written.
                list.clear();
            } else {
                list.extend(deferred);
            }
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

/// What a commit does with the by-record index entries of the audit events it holds.
pub(super) enum IndexWrites {
    /// Writes them with these deferred ones, all in key order (a durable commit, the replay).
    Run(Vec<(u128, u128)>),
    /// Leaves them out of redb: they are collected here and returned.
    Defer(Vec<(u128, u128)>),
}

/// Commits `puts` to redb in one transaction, each record with its by-site index entry, each
/// audit event with its by-record entries as `index` says; returns the entries it deferred.
/// `durable`: `fdatasync` on commit; otherwise the commit is visible to readers at once and reaches
/// the file with the next durable one (the journal keeps the puts until then).
pub(super) fn commit_puts<'a>(
    db: &Database,
    puts: impl Iterator<Item = &'a Put>,
    durable: bool,
    index: IndexWrites,
) -> Result<Vec<(u128, u128)>, StoreError> {
    let (mut entries, run) = match index {
        IndexWrites::Run(deferred) => (deferred, true),
        IndexWrites::Defer(fresh) => (fresh, false),
    };
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
                    entries.extend(records.iter().map(|&record| (record, put.key)));
                }
            }
        }
        if run {
            entries.sort_unstable();
            for &entry in &entries {
                by_record.insert(entry, ()).map_err(unavailable)?;
            }
            entries.clear();
        }
    }
    txn.commit().map_err(unavailable)?;
    Ok(entries)
}
