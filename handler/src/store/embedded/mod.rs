//! The embedded store: a write-ahead journal in front of a [redb](https://docs.rs/redb) file, both
//! in `MEDIFLOW_DATA_DIR`.
//!
//! Writes: a bounded queue feeds one writer thread. It takes every write waiting (a group),
//! decides each one's outcome (insert-if-absent against the writes not yet in redb, then redb),
//! appends the resulting puts to the journal and `fdatasync`s once for the whole group; only then
//! does any caller hear back, so every acknowledged write is on the device. The puts then sit in
//! an in-memory pending map (reads see them at once) until the applier thread has committed them
//! to redb in the background, without `fdatasync` (`Durability::None`: the journal has them) except
//! once per [`DURABLE_EVERY_BYTES`] and before the journal is emptied. On open, the journal is
//! replayed into redb (a torn tail, from a write that was never acknowledged, is cut) and
//! emptied. A journal with valid entries after a bad one is damage, not a torn tail: the open
//! fails with [`StoreError::Corrupt`] naming the offset, the file is left as found, and the
//! operator runs `handler store check` / `handler store salvage` (`crate::commands::store`).
//! Reads: the pending map, then redb's MVCC read transactions; they never wait for the writer.
//!
//! Bounds: the queue holds [`QUEUE_CAPACITY`] writes (beyond it: `Unavailable`, 503 +
//! Retry-After); the pending map holds [`MAX_PENDING_BYTES`] (beyond it the writer waits for the
//! applier, so the queue fills and callers get 503). A failed journal or redb write is latched:
//! from then on writes fail fast and [`RecordStore::health`] reports it.
//! See docs/adr/0002-embedded-store.md and docs/adr/0006-durable-write-path.md.

pub(crate) mod journal;
mod site_index;

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use self::journal::{Journal, OpenError, Put, Table};
use self::site_index::IndexKey;
use super::{Inserted, RecordStore, Replaced, StoreError, StoreHealth};
use crate::domain::audit::{AuditCursor, AuditQuery, GENESIS_HASH, event_time};
use crate::domain::{AuditDraft, AuditEvent, BatchId, BatchReport, ListQuery, Record, RecordId};

const RECORDS: TableDefinition<u128, &[u8]> = TableDefinition::new("records");
const BATCHES: TableDefinition<u128, &[u8]> = TableDefinition::new("batches");
/// Audit events by seq (the embedded store has one chain, [`CHAIN`]); append-only: nothing in
/// the store updates or removes an entry.
const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit");
/// `(record key, seq)` of every event naming a record: a record's history without a scan.
const AUDIT_BY_RECORD: TableDefinition<(u128, u128), ()> = TableDefinition::new("audit_by_record");

/// The name of the embedded store's one audit chain.
pub const CHAIN: &str = "embedded";

/// The redb file in the data folder; whoever has it open holds the store (redb locks it).
pub const DATABASE_FILE: &str = "mediflow.redb";

/// The journal in the data folder.
pub const JOURNAL_FILE: &str = "mediflow.journal";

/// redb's page cache. Its default (1 GiB) would outgrow a pod's memory limit as data grows; reads
/// beyond the cache go to the OS page cache, which the kernel can reclaim.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Most writes folded into one journal append (one `fdatasync`).
const MAX_GROUP: usize = 256;

/// Writes waiting for the writer thread; one more is refused as `Unavailable` (503 + Retry-After).
pub const QUEUE_CAPACITY: usize = 1024;

/// Bytes of acknowledged values not yet in redb. Beyond it the writer waits for the applier.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// What the store may hold in memory for the data: redb's cache and the pending map.
pub const MEMORY_BYTES: usize = CACHE_BYTES + MAX_PENDING_BYTES;

/// Journal size beyond which the writer, once redb holds everything in it, empties it.
const JOURNAL_RESET_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes the applier commits without `fdatasync` (`Durability::None`: the journal holds them)
/// before one commit is made durable anyway. The journal is emptied only after a durable commit.
const DURABLE_EVERY_BYTES: usize = 8 * 1024 * 1024;

/// Most journal groups folded into one redb commit by the applier.
const MAX_APPLY_GROUPS: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write as the writer thread receives it: keys and encoded values, ready to journal.
enum Write {
    /// Records to insert if absent; each one created gets its create event from the template.
    Insert(
        Vec<(RecordId, Bytes, IndexKey)>,
        AuditDraft,
        Reply<Vec<Resolved>>,
    ),
    /// A compare-and-replace of one record, with its event.
    Replace(Box<Replacement>, Reply<Resolved>),
    /// Audit events on their own.
    Audit(Vec<AuditDraft>, Reply<()>),
    InsertBatch(u128, Bytes, Reply<Resolved>),
    PutBatch(u128, Bytes, Reply<()>),
    /// A batch report to put only if the stored one is still `expected` (compared decoded, so the
    /// byte layout of an older write cannot make it fail forever).
    PutBatchIf(u128, Bytes, Box<BatchReport>, Reply<bool>),
    /// Test fault injection: the writer thread panics.
    #[cfg(test)]
    Crash,
    /// Test fault injection: the writer thread waits until the sender is dropped.
    #[cfg(test)]
    Block(std_mpsc::Receiver<()>),
}

/// An insert-if-absent's outcome, still encoded (the caller decodes, off the writer thread). For
/// a replace: `Created` is done, `Existing` the record stored instead of the expected one.
enum Resolved {
    Created,
    Existing(Bytes),
    /// A replace found no record.
    Missing,
}

/// A record to replace if it is still stored as `expected`.
struct Replacement {
    key: u128,
    expected: Bytes,
    value: Bytes,
    index: IndexKey,
    event: AuditDraft,
}

/// The writer's end of the audit chain: the last event's seq, hash and time.
struct ChainHead {
    seq: u64,
    hash: String,
    time: String,
}

impl ChainHead {
    /// Stamps `draft` as the next event and returns its put.
    fn append(&mut self, draft: AuditDraft) -> Result<Put, String> {
        let time = event_time(&self.time);
        let audited = draft
            .record_ids
            .iter()
            .map(|id| id.as_uuid().as_u128())
            .collect();
        let event = draft.stamp(CHAIN, self.seq + 1, time, &self.hash);
        let value = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        self.seq = event.seq;
        self.hash = event.hash;
        self.time = event.time;
        Ok(Put {
            table: Table::Audit,
            key: u128::from(self.seq),
            value: Bytes::from(value),
            index: None,
            audited: Some(audited),
        })
    }
}

/// A write's outcome, held until its group is on the device.
enum Answer {
    Insert(Reply<Vec<Resolved>>, Vec<Resolved>),
    Replace(Reply<Resolved>, Resolved),
    Audit(Reply<()>),
    InsertBatch(Reply<Resolved>, Resolved),
    PutBatch(Reply<()>),
    PutBatchIf(Reply<bool>, bool),
    /// This write alone could not be decided (its lookup failed); the rest of its group goes on.
    Refused(Refusal, String),
}

/// The reply of a write refused on its own.
enum Refusal {
    Insert(Reply<Vec<Resolved>>),
    One(Reply<Resolved>),
    Flag(Reply<bool>),
}

impl Answer {
    fn send(self) {
        // A caller that gave up (timeout, disconnect) no longer listens; its write stands.
        match self {
            Self::Insert(reply, outcome) => drop(reply.send(Ok(outcome))),
            Self::InsertBatch(reply, outcome) | Self::Replace(reply, outcome) => {
                drop(reply.send(Ok(outcome)));
            }
            Self::PutBatch(reply) | Self::Audit(reply) => drop(reply.send(Ok(()))),
            Self::PutBatchIf(reply, stored) => drop(reply.send(Ok(stored))),
            Self::Refused(refusal, reason) => refusal.send(&reason),
        }
    }

    fn fail(self, reason: &str) {
        let failed = || StoreError::unavailable(reason);
        match self {
            Self::Insert(reply, _) => drop(reply.send(Err(failed()))),
            Self::InsertBatch(reply, _) | Self::Replace(reply, _) => {
                drop(reply.send(Err(failed())));
            }
            Self::PutBatch(reply) | Self::Audit(reply) => drop(reply.send(Err(failed()))),
            Self::PutBatchIf(reply, _) => drop(reply.send(Err(failed()))),
            Self::Refused(refusal, _) => refusal.send(reason),
        }
    }
}

impl Refusal {
    fn send(self, reason: &str) {
        let failed = StoreError::unavailable(reason);
        match self {
            Self::Insert(reply) => drop(reply.send(Err(failed))),
            Self::One(reply) => drop(reply.send(Err(failed))),
            Self::Flag(reply) => drop(reply.send(Err(failed))),
        }
    }
}

/// A journaled group on its way to redb.
struct Applied {
    seq: u64,
    puts: Vec<Put>,
    /// The writer will empty the journal: the commit holding this group must be durable.
    checkpoint: bool,
}

/// What the writer, the applier and the readers share.
struct Shared {
    db: Database,
    state: Mutex<State>,
    /// Signalled when the applier drains the pending map or a failure is latched.
    progress: Condvar,
    /// Test fault injection: the next journal appends fail as the device would.
    #[cfg(test)]
    fail_appends: std::sync::atomic::AtomicBool,
    /// Test fault injection: looking this key up fails.
    #[cfg(test)]
    fail_lookup: Mutex<Option<u128>>,
}

#[derive(Default)]
struct State {
    /// Acknowledged puts not yet committed to redb, with the group that wrote them.
    pending: HashMap<(Table, u128), (u64, Bytes)>,
    pending_bytes: usize,
    /// The last group the applier committed to redb.
    applied: u64,
    /// The last group redb holds durably (the journal may be emptied up to it).
    durable: u64,
    /// The last group acknowledged to its callers.
    acknowledged: u64,
    /// The first journal or redb failure; latched for the life of the process.
    failure: Option<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking thread cannot leave `State` half-updated in a way readers could misread.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn latch(&self, reason: String) {
        let mut state = self.state();
        if state.failure.is_none() {
            tracing::error!(%reason, "embedded store failed; writes are refused from now on");
            state.failure = Some(reason);
        }
        drop(state);
        self.progress.notify_all();
    }

    /// Waits until `done` holds or a failure is latched (then returns the failure).
    fn wait_until(&self, mut done: impl FnMut(&State) -> bool) -> Result<(), String> {
        let mut state = self.state();
        loop {
            if let Some(reason) = &state.failure {
                return Err(reason.clone());
            }
            if done(&state) {
                return Ok(());
            }
            state = self
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The stored value under `key` as the writer decides a write: the pending map, then redb.
    /// `reader` is the group's read transaction with the applier's progress when it was opened; it
    /// is reopened when the applier has moved on since, because a put the applier has dropped from
    /// the pending map is only in commits newer than an older snapshot (without this, a write
    /// acknowledged a moment ago could be missed and overwritten).
    fn lookup(
        &self,
        reader: &mut Option<(redb::ReadTransaction, u64)>,
        table: Table,
        key: u128,
    ) -> Result<Option<Bytes>, String> {
        #[cfg(test)]
        if *self
            .fail_lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(key)
        {
            return Err("injected lookup failure".to_owned());
        }
        let applied = {
            let state = self.state();
            if let Some((_, value)) = state.pending.get(&(table, key)) {
                return Ok(Some(value.clone()));
            }
            state.applied
        };
        if !matches!(reader, Some((_, seen)) if *seen >= applied) {
            // Opened after reading `applied`: it holds every commit whose puts left the map.
            *reader = Some((self.db.begin_read().map_err(|e| e.to_string())?, applied));
        }
        let (txn, _) = reader.as_ref().ok_or("no read transaction")?;
        let opened = txn
            .open_table(definition(table))
            .map_err(|e| e.to_string())?;
        let value = opened.get(key).map_err(|e| e.to_string())?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn pending(&self, table: Table, key: u128) -> Option<Bytes> {
        self.state()
            .pending
            .get(&(table, key))
            .map(|(_, value)| value.clone())
    }
}

/// Latches a failure if its thread unwinds (a panic on the writer or applier thread).
struct LatchOnPanic<'a>(&'a Shared, &'static str);

impl Drop for LatchOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.latch(self.1.to_owned());
        }
    }
}

/// The embedded backend. Cheap to clone; all clones share one database, one writer and one
/// applier thread. Dropping the last clone lets both threads finish and waits for them.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Option<std_mpsc::SyncSender<Write>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.writer.take());
        for thread in self.threads.drain(..) {
            // A thread that panicked has latched its failure already.
            drop(thread.join());
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` and replays its journal. Fails if another process
    /// holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(DATABASE_FILE))
            .map_err(|e| StoreError::unavailable(format!("cannot open the embedded store: {e}")))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        txn.open_table(BATCHES).map_err(unavailable)?;
        txn.open_table(AUDIT).map_err(unavailable)?;
        txn.open_table(AUDIT_BY_RECORD).map_err(unavailable)?;
        site_index::open_and_backfill(&txn, RECORDS)?;
        txn.commit().map_err(unavailable)?;

        let journal_error =
            |e: std::io::Error| StoreError::unavailable(format!("cannot replay the journal: {e}"));
        // Damage is not a passing failure: it is reported as corruption (never retried) and the
        // journal is left as found, for `handler store check` and `handler store salvage`.
        let (mut journal, replay) =
            Journal::open(&dir.join(JOURNAL_FILE)).map_err(|e| match e {
                OpenError::Io(e) => journal_error(e),
                OpenError::Damaged(damage) => StoreError::Corrupt(damage.to_string()),
            })?;
        if replay.torn_bytes > 0 {
            tracing::warn!(
                torn_bytes = replay.torn_bytes,
                "journal ended in a torn entry (a write never acknowledged); cut"
            );
        }
        if !replay.puts.is_empty() {
            commit_puts(&db, replay.puts.iter(), true)?;
            tracing::info!(
                puts = replay.puts.len(),
                "journal replayed into the embedded store"
            );
        }
        if journal.len() > 0 {
            journal.reset().map_err(journal_error)?;
        }
        let head = chain_head(&db)?;

        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(State::default()),
            progress: Condvar::new(),
            #[cfg(test)]
            fail_appends: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_lookup: Mutex::new(None),
        });
        let (writer, queue) = std_mpsc::sync_channel(QUEUE_CAPACITY);
        let (to_applier, applier_queue) = std_mpsc::sync_channel(MAX_APPLY_GROUPS);
        let spawn_error = |e: std::io::Error| {
            StoreError::unavailable(format!("cannot start a store thread: {e}"))
        };
        let applier_shared = Arc::clone(&shared);
        let applier = std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || run_applier(&applier_shared, &applier_queue))
            .map_err(spawn_error)?;
        let writer_shared = Arc::clone(&shared);
        let writer_thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(&writer_shared, journal, head, &queue, &to_applier))
            .map_err(spawn_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer: Some(writer),
                threads: vec![writer_thread, applier],
            }),
        })
    }

    /// Queues `write` for the writer thread without waiting; a full queue is `Unavailable`.
    fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        if let Some(reason) = &self.inner.shared.state().failure {
            return Err(StoreError::unavailable(reason));
        }
        let Some(writer) = &self.inner.writer else {
            return Err(StoreError::unavailable("the store is closing"));
        };
        writer.try_send(write).map_err(|e| match e {
            std_mpsc::TrySendError::Full(_) => {
                StoreError::unavailable("the store's write queue is full")
            }
            std_mpsc::TrySendError::Disconnected(_) => {
                StoreError::unavailable("the store writer has stopped")
            }
        })
    }

    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.enqueue(make(done))?;
        // The writer drops the reply only if it dies: the caller hears so and does not hang.
        outcome
            .await
            .map_err(|_| StoreError::unavailable("the store writer has stopped"))?
    }

    /// Waits (off the runtime) until the applier has committed every write acknowledged before the
    /// call: what reads of redb-only tables (the indexes, the audit trail) need to see every
    /// acknowledged write.
    async fn applied_everything_acknowledged(&self) -> Result<(), StoreError> {
        let shared = Arc::clone(&self.inner.shared);
        let target = {
            let state = shared.state();
            (state.applied < state.acknowledged).then_some(state.acknowledged)
        };
        if let Some(target) = target {
            tokio::task::spawn_blocking(move || shared.wait_until(|state| state.applied >= target))
                .await
                .map_err(|e| StoreError::unavailable(format!("waiting for the applier: {e}")))?
                .map_err(StoreError::unavailable)?;
        }
        Ok(())
    }

    /// The stored bytes under `key`: the pending map first (acknowledged, maybe not yet in
    /// redb), then redb.
    fn read(&self, table: Table, key: u128) -> Result<Option<Bytes>, StoreError> {
        if let Some(value) = self.inner.shared.pending(table, key) {
            return Ok(Some(value));
        }
        let txn = self.inner.shared.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(definition(table)).map_err(unavailable)?;
        Ok(table
            .get(key)
            .map_err(unavailable)?
            .map(|value| Bytes::copy_from_slice(value.value())))
    }
}

const fn definition(table: Table) -> TableDefinition<'static, u128, &'static [u8]> {
    match table {
        Table::Records => RECORDS,
        Table::Batches => BATCHES,
        Table::Audit => AUDIT,
    }
}

/// The last event of the chain as stored (after the journal's replay), or the chain's start.
fn chain_head(db: &Database) -> Result<ChainHead, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let audit = txn.open_table(AUDIT).map_err(unavailable)?;
    let Some((_, last)) = redb::ReadableTable::last(&audit).map_err(unavailable)? else {
        return Ok(ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            time: String::new(),
        });
    };
    let event: AuditEvent = decode(last.value())?;
    Ok(ChainHead {
        seq: event.seq,
        hash: event.hash,
        time: event.time,
    })
}

/// The first seq whose event time is at or after `from` (events are in time order); one past the
/// last when there is none.
fn first_at_or_after(
    audit: &redb::ReadOnlyTable<u128, &[u8]>,
    from: &str,
) -> Result<u128, StoreError> {
    let Some((last, _)) = redb::ReadableTable::last(audit).map_err(unavailable)? else {
        return Ok(1);
    };
    let (mut low, mut high) = (1_u128, last.value() + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        // The first event at or after `middle` (a salvaged journal can leave a seq missing).
        let Some(entry) = audit.range(middle..high).map_err(unavailable)?.next() else {
            high = middle;
            continue;
        };
        let (key, bytes) = entry.map_err(unavailable)?;
        let event: AuditEvent = decode(bytes.value())?;
        if event.time.as_str() < from {
            low = key.value() + 1;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// The record keys an audit event's JSON names (for the by-record index).
fn audited_records(value: &[u8]) -> Result<Vec<u128>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Named {
        record_ids: Vec<RecordId>,
    }
    let named: Named = decode(value)?;
    Ok(named
        .record_ids
        .iter()
        .map(|id| id.as_uuid().as_u128())
        .collect())
}

fn unavailable(err: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(err.into())
}

fn encode(value: &impl serde::Serialize) -> Result<Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Commits `puts` to redb in one durable transaction, each record with its by-site index entry.
/// `durable`: `fdatasync` on commit; otherwise the commit is visible to readers at once and reaches
/// the file with the next durable one (the journal keeps the puts until then).
fn commit_puts<'a>(
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

/// The writer thread: block for one write, take whatever else is waiting, journal the group
/// with one `fdatasync`, answer everyone, hand the puts to the applier.
fn run_writer(
    shared: &Shared,
    mut journal: Journal,
    mut head: ChainHead,
    queue: &std_mpsc::Receiver<Write>,
    applier: &std_mpsc::SyncSender<Applied>,
) {
    let _latch = LatchOnPanic(shared, "the store writer thread stopped");
    let mut seq = 0;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::writer_group_committing();
        seq += 1;
        write_group(shared, &mut journal, &mut head, applier, seq, group);
    }
}

fn write_group(
    shared: &Shared,
    journal: &mut Journal,
    head: &mut ChainHead,
    applier: &std_mpsc::SyncSender<Applied>,
    seq: u64,
    group: Vec<Write>,
) {
    let fail_all = |answers: Vec<Answer>, reason: &str| {
        for answer in answers {
            answer.fail(reason);
        }
    };
    let Resolution {
        puts,
        answers,
        failure,
    } = resolve(shared, head, group);
    if let Some(reason) = failure {
        return fail_all(answers, &reason);
    }
    if puts.is_empty() {
        // Every write found what it asked for already stored: nothing new to make durable.
        answers.into_iter().for_each(Answer::send);
        return;
    }
    let bytes: usize = puts.iter().map(|put| put.value.len()).sum();
    if let Err(reason) = shared.wait_until(|state| {
        state.pending_bytes == 0 || state.pending_bytes + bytes <= MAX_PENDING_BYTES
    }) {
        return fail_all(answers, &reason);
    }
    if let Err(e) = append(shared, journal, &puts) {
        let reason = format!("journal write failed: {e}");
        shared.latch(reason.clone());
        return fail_all(answers, &reason);
    }
    {
        let mut state = shared.state();
        for put in &puts {
            let previous = state
                .pending
                .insert((put.table, put.key), (seq, put.value.clone()));
            state.pending_bytes += put.value.len();
            if let Some((_, old)) = previous {
                state.pending_bytes -= old.len();
            }
        }
        state.acknowledged = seq;
    }
    // On the device and visible to reads: acknowledge.
    answers.into_iter().for_each(Answer::send);
    let checkpoint = journal.len() > JOURNAL_RESET_BYTES;
    if applier
        .send(Applied {
            seq,
            puts,
            checkpoint,
        })
        .is_err()
    {
        shared.latch("the store applier thread stopped".to_owned());
        return;
    }
    if checkpoint {
        let emptied = shared
            .wait_until(|state| state.durable >= seq)
            .and_then(|()| {
                journal
                    .reset()
                    .map_err(|e| format!("journal reset failed: {e}"))
            });
        if let Err(reason) = emptied {
            shared.latch(reason);
        }
    }
}

fn append(shared: &Shared, journal: &mut Journal, puts: &[Put]) -> std::io::Result<()> {
    #[cfg(test)]
    if shared
        .fail_appends
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(std::io::Error::other("injected fdatasync failure"));
    }
    #[cfg(not(test))]
    let _ = shared;
    journal.append(puts)
}

/// A group's outcome before it is journaled.
struct Resolution {
    /// What to journal and apply.
    puts: Vec<Put>,
    /// What to tell each caller once the puts are durable.
    answers: Vec<Answer>,
    /// Why the group cannot be written (a latched failure).
    failure: Option<String>,
}

/// Decides each write's outcome: the puts to journal, and the answers to send once they are
/// durable. An id is looked up in this group's earlier puts, then the pending map, then redb. A
/// failed lookup fails only the write it was for. The audit events of the writes that go ahead
/// are stamped onto the chain at the end and journaled first, in the same append as the data
/// they describe (so a record is never durable without its create event).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of write; each arm is the rule for that write"
)]
fn resolve(shared: &Shared, head: &mut ChainHead, group: Vec<Write>) -> Resolution {
    let mut puts: Vec<Put> = Vec::new();
    let mut events: Vec<AuditDraft> = Vec::new();
    let mut in_group: HashMap<(Table, u128), usize> = HashMap::new();
    let mut answers = Vec::with_capacity(group.len());
    let failure = shared.state().failure.clone();
    let mut reader = None;
    let mut stored =
        |table: Table, key: u128, puts: &[Put], in_group: &HashMap<_, usize>| match in_group
            .get(&(table, key))
        {
            Some(&at) => Ok(Some(puts[at].value.clone())),
            None => shared.lookup(&mut reader, table, key),
        };
    let put = |puts: &mut Vec<Put>, in_group: &mut HashMap<_, _>, table, key, value, index| {
        in_group.insert((table, key), puts.len());
        puts.push(Put {
            table,
            key,
            value,
            index,
            audited: None,
        });
    };
    for write in group {
        if failure.is_some() {
            // A latched failure: every write of the group is failed with it (by `write_group`).
            answers.extend(undecided(write));
            continue;
        }
        match write {
            Write::Insert(records, template, reply) => {
                // All or nothing for one caller: if a lookup fails, its puts leave the group.
                let mark = puts.len();
                let events_mark = events.len();
                let mut outcomes = Vec::with_capacity(records.len());
                let mut lookup_failed = None;
                for (id, value, index) in records {
                    let key = id.as_uuid().as_u128();
                    match stored(Table::Records, key, &puts, &in_group) {
                        Ok(Some(existing)) => outcomes.push(Resolved::Existing(existing)),
                        Ok(None) => {
                            let index = Some(index);
                            put(&mut puts, &mut in_group, Table::Records, key, value, index);
                            events.push(template.created(id));
                            outcomes.push(Resolved::Created);
                        }
                        Err(reason) => {
                            lookup_failed = Some(reason);
                            break;
                        }
                    }
                }
                match lookup_failed {
                    None => answers.push(Answer::Insert(reply, outcomes)),
                    Some(reason) => {
                        for undone in puts.drain(mark..) {
                            in_group.remove(&(undone.table, undone.key));
                        }
                        events.truncate(events_mark);
                        answers.push(Answer::Refused(Refusal::Insert(reply), reason));
                    }
                }
            }
            Write::Replace(replacement, reply) => {
                let Replacement {
                    key,
                    expected,
                    value,
                    index,
                    event,
                } = *replacement;
                match stored(Table::Records, key, &puts, &in_group) {
                    Ok(Some(current)) if current == expected => {
                        let index = Some(index);
                        put(&mut puts, &mut in_group, Table::Records, key, value, index);
                        events.push(event);
                        answers.push(Answer::Replace(reply, Resolved::Created));
                    }
                    Ok(Some(current)) => {
                        answers.push(Answer::Replace(reply, Resolved::Existing(current)));
                    }
                    Ok(None) => answers.push(Answer::Replace(reply, Resolved::Missing)),
                    Err(reason) => answers.push(Answer::Refused(Refusal::One(reply), reason)),
                }
            }
            Write::Audit(drafts, reply) => {
                events.extend(drafts);
                answers.push(Answer::Audit(reply));
            }
            Write::InsertBatch(key, value, reply) => {
                match stored(Table::Batches, key, &puts, &in_group) {
                    Ok(Some(existing)) => {
                        answers.push(Answer::InsertBatch(reply, Resolved::Existing(existing)));
                    }
                    Ok(None) => {
                        put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                        answers.push(Answer::InsertBatch(reply, Resolved::Created));
                    }
                    Err(reason) => {
                        answers.push(Answer::Refused(Refusal::One(reply), reason));
                    }
                }
            }
            Write::PutBatch(key, value, reply) => {
                put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                answers.push(Answer::PutBatch(reply));
            }
            Write::PutBatchIf(key, value, expected, reply) => {
                let unchanged = stored(Table::Batches, key, &puts, &in_group).map(|current| {
                    current.is_some_and(|bytes| {
                        decode::<BatchReport>(&bytes).is_ok_and(|current| current == *expected)
                    })
                });
                match unchanged {
                    Ok(true) => {
                        put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                        answers.push(Answer::PutBatchIf(reply, true));
                    }
                    Ok(false) => answers.push(Answer::PutBatchIf(reply, false)),
                    Err(reason) => answers.push(Answer::Refused(Refusal::Flag(reply), reason)),
                }
            }
            #[cfg(test)]
            Write::Crash => panic!("injected writer crash"),
            #[cfg(test)]
            Write::Block(until) => drop(until.recv()),
        }
    }
    if failure.is_some() || events.is_empty() {
        return Resolution {
            puts,
            answers,
            failure,
        };
    }
    // The events first: a torn append can keep an event whose data is cut, never the reverse.
    let mut journaled = Vec::with_capacity(events.len() + puts.len());
    for draft in events {
        match head.append(draft) {
            Ok(event) => journaled.push(event),
            Err(reason) => {
                return Resolution {
                    puts: Vec::new(),
                    answers,
                    failure: Some(format!("cannot encode an audit event: {reason}")),
                };
            }
        }
    }
    journaled.extend(puts);
    Resolution {
        puts: journaled,
        answers,
        failure,
    }
}

/// The answer slot of a write that is not decided (its group fails as a whole).
#[cfg_attr(
    not(test),
    expect(
        clippy::unnecessary_wraps,
        reason = "only test-only writes have no answer"
    )
)]
fn undecided(write: Write) -> Option<Answer> {
    match write {
        Write::Insert(_, _, reply) => Some(Answer::Insert(reply, Vec::new())),
        Write::InsertBatch(_, _, reply) => Some(Answer::InsertBatch(reply, Resolved::Created)),
        Write::Replace(_, reply) => Some(Answer::Replace(reply, Resolved::Missing)),
        Write::Audit(_, reply) => Some(Answer::Audit(reply)),
        Write::PutBatch(_, _, reply) => Some(Answer::PutBatch(reply)),
        Write::PutBatchIf(_, _, _, reply) => Some(Answer::PutBatchIf(reply, false)),
        #[cfg(test)]
        Write::Crash | Write::Block(_) => None,
    }
}

/// The applier thread: commit journaled groups to redb (as many as are waiting, in one durable
/// transaction), then drop them from the pending map.
fn run_applier(shared: &Shared, queue: &std_mpsc::Receiver<Applied>) {
    let _latch = LatchOnPanic(shared, "the store applier thread stopped");
    let mut since_durable = 0_usize;
    while let Ok(first) = queue.recv() {
        let mut groups = vec![first];
        while groups.len() < MAX_APPLY_GROUPS {
            match queue.try_recv() {
                Ok(next) => groups.push(next),
                Err(_) => break,
            }
        }
        let bytes: usize = groups
            .iter()
            .flat_map(|g| &g.puts)
            .map(|put| put.value.len())
            .sum();
        since_durable += bytes;
        let durable =
            since_durable >= DURABLE_EVERY_BYTES || groups.iter().any(|group| group.checkpoint);
        if let Err(e) = commit_puts(&shared.db, groups.iter().flat_map(|g| &g.puts), durable) {
            // The puts stay in the journal (replayed on the next open) and in the pending map.
            shared.latch(format!(
                "applying the journal to the embedded store failed: {e}"
            ));
            return;
        }
        let mut state = shared.state();
        for group in &groups {
            for put in &group.puts {
                let entry = (put.table, put.key);
                if state
                    .pending
                    .get(&entry)
                    .is_some_and(|(seq, _)| *seq == group.seq)
                    && let Some((_, value)) = state.pending.remove(&entry)
                {
                    state.pending_bytes -= value.len();
                }
            }
            state.applied = group.seq;
        }
        if durable {
            state.durable = state.applied;
            since_durable = 0;
        }
        drop(state);
        shared.progress.notify_all();
    }
}

#[async_trait]
impl RecordStore for EmbeddedStore {
    async fn insert(&self, record: Record, audit: &AuditDraft) -> Result<Inserted, StoreError> {
        let mut outcomes = self.insert_many(vec![record], audit).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("insert returned no outcome".into()))
    }

    async fn insert_many(
        &self,
        records: Vec<Record>,
        audit: &AuditDraft,
    ) -> Result<Vec<Inserted>, StoreError> {
        // Encoded here, on the caller's thread, so the writer only journals bytes.
        let encoded = records
            .iter()
            .map(|record| Ok((record.id, encode(record)?, IndexKey::of(record))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let template = audit.clone();
        let outcomes = self
            .submit(|done| Write::Insert(encoded, template, done))
            .await?;
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Resolved::Created => Ok(Inserted::Created),
                Resolved::Existing(bytes) => decode(&bytes).map(Inserted::Existing),
                Resolved::Missing => Err(StoreError::Corrupt("an insert found nothing".into())),
            })
            .collect()
    }

    async fn replace(
        &self,
        expected: &Record,
        new: Record,
        event: AuditDraft,
    ) -> Result<Replaced, StoreError> {
        let replacement = Box::new(Replacement {
            key: new.id.as_uuid().as_u128(),
            expected: encode(expected)?,
            value: encode(&new)?,
            index: IndexKey::of(&new),
            event,
        });
        match self
            .submit(|done| Write::Replace(replacement, done))
            .await?
        {
            Resolved::Created => Ok(Replaced::Done),
            Resolved::Existing(current) => Ok(Replaced::Changed(Some(decode(&current)?))),
            Resolved::Missing => Ok(Replaced::Changed(None)),
        }
    }

    async fn append_audit(&self, events: Vec<AuditDraft>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.submit(|done| Write::Audit(events, done)).await
    }

    async fn audit_page(
        &self,
        query: &AuditQuery,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.applied_everything_acknowledged().await?;
        let txn = self.inner.shared.db.begin_read().map_err(unavailable)?;
        let audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let mut page = Vec::new();
        let mut keep = |bytes: &[u8]| -> Result<bool, StoreError> {
            let event: AuditEvent = decode(bytes)?;
            if query.matches(&event) {
                page.push(event);
            }
            Ok(page.len() < max)
        };
        if let Some(record) = query.record_id {
            let key = record.as_uuid().as_u128();
            let by_record = txn.open_table(AUDIT_BY_RECORD).map_err(unavailable)?;
            let first = query
                .after
                .as_ref()
                .map_or(0, |after| u128::from(after.seq) + 1);
            for entry in by_record
                .range((key, first)..=(key, u128::MAX))
                .map_err(unavailable)?
            {
                let (keys, _) = entry.map_err(unavailable)?;
                let (_, seq) = keys.value();
                let bytes = audit.get(seq).map_err(unavailable)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("indexed event {seq} is missing"))
                })?;
                if !keep(bytes.value())? {
                    break;
                }
            }
            return Ok(page);
        }
        // One chain, stamped with times that never go back: seq order is time order, so the first
        // event at or after `from` is found by bisection.
        let mut first = query
            .after
            .as_ref()
            .map_or(1, |after| u128::from(after.seq) + 1);
        if let Some(from) = &query.from {
            first = first.max(first_at_or_after(&audit, from)?);
        }
        for entry in audit.range(first..).map_err(unavailable)? {
            let (_, bytes) = entry.map_err(unavailable)?;
            let value = bytes.value();
            if let Some(to) = &query.to {
                let event: AuditEvent = decode(value)?;
                if event.time > *to {
                    break;
                }
            }
            if !keep(value)? {
                break;
            }
        }
        Ok(page)
    }

    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.applied_everything_acknowledged().await?;
        let txn = self.inner.shared.db.begin_read().map_err(unavailable)?;
        let audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let first = after.map_or(1, |after| u128::from(after.seq) + 1);
        audit
            .range(first..)
            .map_err(unavailable)?
            .take(max)
            .map(|entry| {
                let (_, bytes) = entry.map_err(unavailable)?;
                decode(bytes.value())
            })
            .collect()
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.get_json(id)
            .await?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn get_json(&self, id: RecordId) -> Result<Option<Bytes>, StoreError> {
        self.read(Table::Records, id.as_uuid().as_u128())
    }

    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
        let key = report.stored_id().as_uuid().as_u128();
        let value = encode(&report)?;
        match self
            .submit(|done| Write::InsertBatch(key, value, done))
            .await?
        {
            Resolved::Created | Resolved::Missing => Ok(report),
            Resolved::Existing(bytes) => decode(&bytes),
        }
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        let key = report.stored_id().as_uuid().as_u128();
        let value = encode(&report)?;
        self.submit(|done| Write::PutBatch(key, value, done)).await
    }

    /// Decided by the writer thread, the one place every write passes in order: no other write
    /// can come between the comparison and the put.
    async fn put_batch_if(
        &self,
        report: BatchReport,
        expected: &BatchReport,
    ) -> Result<bool, StoreError> {
        let key = report.batch_id.as_uuid().as_u128();
        let value = encode(&report)?;
        let expected = Box::new(expected.clone());
        self.submit(|done| Write::PutBatchIf(key, value, expected, done))
            .await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.read(Table::Batches, id.as_uuid().as_u128())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// One read transaction: the index page and the records it names are one snapshot. The index
    /// is in redb only, so a list first waits (off the runtime) until the applier has committed
    /// every write acknowledged before the call: a listing sees what was acknowledged.
    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        self.applied_everything_acknowledged().await?;
        let txn = self.inner.shared.db.begin_read().map_err(unavailable)?;
        let ids = site_index::page(&txn, query, max)?;
        let table = txn.open_table(RECORDS).map_err(unavailable)?;
        ids.into_iter()
            .map(|id| {
                let bytes = table
                    .get(id.as_uuid().as_u128())
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("indexed record {id} is missing"))
                    })?;
                serde_json::from_slice(bytes.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn check(&self) -> Result<(), StoreError> {
        if let StoreHealth::Failed(reason) = self.health() {
            return Err(StoreError::unavailable(reason));
        }
        let txn = self.inner.shared.db.begin_read().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        Ok(())
    }

    fn health(&self) -> StoreHealth {
        if let Some(reason) = &self.inner.shared.state().failure {
            return StoreHealth::Failed(reason.clone());
        }
        if self.inner.threads.iter().any(JoinHandle::is_finished) {
            return StoreHealth::Failed("a store thread has stopped".to_owned());
        }
        StoreHealth::Ok
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::NewRecord;

    fn draft() -> AuditDraft {
        AuditDraft::new("test", crate::domain::AuditAction::Create, "created")
    }

    fn record(notes: &str) -> Record {
        let fields: NewRecord = serde_json::from_value(serde_json::json!({
            "site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
            "status": "pending", "patient_count": 42, "notes": notes,
        }))
        .expect("fields");
        Record::new(RecordId::random(), fields)
    }

    /// Bounded in time: a store call that hangs fails the test instead of the suite.
    async fn within<T>(call: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the store answered within 10 s")
    }

    #[tokio::test]
    async fn an_io_error_is_latched_fails_health_and_keeps_acknowledged_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let kept = record("before the fault");
        within(store.insert(kept.clone(), &draft()))
            .await
            .expect("insert");
        assert_eq!(store.health(), StoreHealth::Ok);

        store
            .inner
            .shared
            .fail_appends
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = within(store.insert(record("during the fault"), &draft())).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "{refused:?}"
        );
        assert!(
            matches!(store.health(), StoreHealth::Failed(reason) if reason.contains("journal write failed")),
            "health reports the latched failure"
        );

        // Latched: the device "recovering" does not make unsynced writes look durable again.
        store
            .inner
            .shared
            .fail_appends
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let after = within(store.insert(record("after the fault"), &draft())).await;
        assert!(
            matches!(after, Err(StoreError::Unavailable { .. })),
            "{after:?}"
        );
        assert!(within(store.check()).await.is_err(), "readiness fails too");
        assert_eq!(within(store.get(kept.id)).await.expect("get"), Some(kept));
    }

    #[tokio::test]
    async fn a_dead_writer_fails_health_and_callers_do_not_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store.enqueue(Write::Crash).expect("enqueue the crash");
        let refused = within(store.insert(record("after the crash"), &draft())).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "{refused:?}"
        );
        // The reply of a write queued behind the crash is dropped while the writer unwinds, a
        // moment before the thread's latch: wait (bounded) for health to say so.
        within(async {
            while store.health() == StoreHealth::Ok {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(
            matches!(store.health(), StoreHealth::Failed(reason) if reason.contains("writer")),
            "health reports the dead writer: {:?}",
            store.health()
        );
        let after = within(store.insert(record("after the latch"), &draft())).await;
        assert!(
            matches!(after, Err(StoreError::Unavailable { .. })),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_as_unavailable_then_drains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let (release, blocked) = std_mpsc::channel();
        store
            .enqueue(Write::Block(blocked))
            .expect("enqueue the block");
        // The writer holds the block (and up to a group of writes taken with it) while the queue
        // fills behind it.
        let taken = std::time::Instant::now();
        let mut replies = Vec::new();
        loop {
            let (done, outcome) = oneshot::channel();
            let key = u128::try_from(replies.len()).expect("small") + 1;
            match store.enqueue(Write::PutBatch(key, Bytes::from_static(b"{}"), done)) {
                Ok(()) => replies.push(outcome),
                Err(StoreError::Unavailable { reason, .. }) => {
                    assert!(reason.contains("queue is full"), "{reason}");
                    break;
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
            assert!(
                taken.elapsed() < Duration::from_secs(10),
                "the queue never filled"
            );
        }
        assert!(
            (QUEUE_CAPACITY - 1..=QUEUE_CAPACITY + MAX_GROUP).contains(&replies.len()),
            "the queue held {} writes",
            replies.len()
        );
        drop(release);
        for reply in replies {
            within(reply).await.expect("answered").expect("stored");
        }
        within(store.insert(record("after the drain"), &draft()))
            .await
            .expect("the queue takes writes again");
    }

    /// A journal holding acknowledged writes that never reached redb (the process was killed),
    /// ending in a torn entry: open replays the whole entries, ignores the torn one, and
    /// insert-if-absent still sees the replayed records.
    #[tokio::test]
    async fn open_replays_the_journal_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (acknowledged, torn) = (record("acknowledged"), record("torn"));
        let put_of = |r: &Record| Put {
            table: Table::Records,
            key: r.id.as_uuid().as_u128(),
            value: encode(r).expect("encode"),
            index: None,
            audited: None,
        };
        let path = dir.path().join("mediflow.journal");
        let (mut journal, _) = Journal::open(&path).expect("journal");
        journal.append(&[put_of(&acknowledged)]).expect("append");
        let whole = journal.len();
        journal.append(&[put_of(&torn)]).expect("append");
        drop(journal);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open journal");
        file.set_len(journal_cut(whole)).expect("truncate");
        drop(file);

        let store = EmbeddedStore::open(dir.path()).expect("open");
        assert_eq!(
            within(store.get(acknowledged.id)).await.expect("get"),
            Some(acknowledged.clone())
        );
        assert_eq!(within(store.get(torn.id)).await.expect("get"), None);
        let again = within(store.insert(acknowledged.clone(), &draft()))
            .await
            .expect("insert");
        assert_eq!(again, Inserted::Existing(acknowledged.clone()));
        drop(store);

        // Replayed into redb and the journal emptied: a second open finds the record in redb.
        assert_eq!(std::fs::metadata(&path).expect("journal").len(), 0);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            within(store.get(acknowledged.id)).await.expect("get"),
            Some(acknowledged)
        );
    }

    /// One write whose lookup fails, in a group with others: it alone is refused, the others are
    /// stored, and the store stays healthy.
    #[tokio::test]
    async fn one_bad_write_in_a_group_fails_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let (before, bad, after) = (record("before"), record("bad"), record("after"));
        *store.inner.shared.fail_lookup.lock().expect("lock") = Some(bad.id.as_uuid().as_u128());
        // Hold the writer so that the three writes wait in the queue and form one group.
        let (release, blocked) = std_mpsc::channel();
        store
            .enqueue(Write::Block(blocked))
            .expect("enqueue the block");
        let calls = [before.clone(), bad.clone(), after.clone()].map(|r| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_many(vec![r], &draft()).await })
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        let [first, second, third] = calls;
        assert_eq!(
            within(first).await.expect("join").expect("stored"),
            vec![Inserted::Created]
        );
        assert!(
            matches!(
                within(second).await.expect("join"),
                Err(StoreError::Unavailable { .. })
            ),
            "the bad write is refused"
        );
        assert_eq!(
            within(third).await.expect("join").expect("stored"),
            vec![Inserted::Created]
        );
        assert_eq!(store.health(), StoreHealth::Ok);
        assert_eq!(
            within(store.get(before.id)).await.expect("get"),
            Some(before)
        );
        assert_eq!(within(store.get(after.id)).await.expect("get"), Some(after));
        *store.inner.shared.fail_lookup.lock().expect("lock") = None;
        assert_eq!(within(store.get(bad.id)).await.expect("get"), None);
    }

    /// The writer's lookup of an id just acknowledged, while the applier moves it from the pending
    /// map into redb: it must find it in one or the other (a stale read snapshot once missed it,
    /// and the resubmission overwrote the acknowledged record).
    #[tokio::test]
    async fn a_write_acknowledged_a_moment_ago_is_never_missed_by_the_next_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        for round in 0..1000 {
            let first = record(&format!("first {round}"));
            within(store.insert(first.clone(), &draft()))
                .await
                .expect("insert");
            // A new id first, so that the group opens its read snapshot before the second lookup.
            let again = Record::new(first.id, record("resubmitted").fields);
            let outcomes = within(store.insert_many(vec![record("new"), again], &draft()))
                .await
                .expect("insert_many");
            assert_eq!(
                outcomes,
                vec![Inserted::Created, Inserted::Existing(first)],
                "round {round}"
            );
        }
    }

    /// Halfway into the second entry: its frame is whole, its payload is not.
    fn journal_cut(first_entry_end: u64) -> u64 {
        first_entry_end + 20
    }
}
