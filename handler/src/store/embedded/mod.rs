//! The embedded store: a write-ahead journal in front of a [redb](https://docs.rs/redb) file, both
//! in `MEDIFLOW_DATA_DIR`.
//!
//! Writes: a bounded queue feeds one writer thread. It takes every write waiting (a group),
//! decides each one's outcome (insert-if-absent against the writes not yet in redb, then redb),
//! appends the resulting puts to the journal and `fdatasync`s once for the whole group; only then
//! does any caller hear back, so every acknowledged write is on the device. The puts then sit in
//! an in-memory pending map (reads see them at once) until the applier thread has committed them
//! to redb in the background, without `fdatasync` (`Durability::None`: the journal has them). The
//! journal is kept in segments: past [`writer::JOURNAL_ROLL_BYTES`] the writer renames it to
//! [`CLOSED_JOURNAL_FILE`] and goes on in a new file without waiting; the applier makes the commit
//! holding the closed segment's last group durable, then deletes the segment. On open, the closed
//! segment (if any) and the journal are replayed into redb in that order (a torn tail, from a write
//! that was never acknowledged, is cut) and emptied. A journal with valid entries after a bad one is damage, not a torn tail: the open
//! fails with [`StoreError::Corrupt`] naming the offset, the file is left as found, and the
//! operator runs `handler store check` / `handler store salvage` (`crate::commands::store`).
//! Reads: the pending map, then redb's MVCC read transactions; they never wait for the writer.
//!
//! Bounds: the queue holds [`QUEUE_CAPACITY`] writes (beyond it: `Unavailable`, 503 +
//! Retry-After); the pending map holds [`MAX_PENDING_BYTES`] (beyond it the writer waits for the
//! applier, so the queue fills and callers get 503). A failed journal or redb write is latched:
//! from then on writes fail fast and [`RecordStore::health`] reports it.
//! See docs/adr/0002-embedded-store.md and docs/adr/0006-durable-write-path.md.
//!
//! Where each part lives: this file holds the facade (opening, queueing a write, reads, the
//! [`RecordStore`] implementation); [`writer`] the writer thread and the rules that decide each
//! write; [`applier`] the applier thread and the commit of puts to redb; [`engine`] what the
//! threads and the readers share (the database, the pending map, the latched failure);
//! [`journal`] the journal's file format; [`tables`] the redb tables and how values are kept in
//! them; [`audit`] the audit chain and its reads; [`site_index`] the index of records by site.

mod applier;
mod audit;
mod engine;
pub(crate) mod journal;
mod site_index;
mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase};
use tokio::sync::oneshot;

use self::applier::{ApplierFiles, MAX_APPLY_GROUPS, commit_puts, delete_closed, run_applier};
use self::audit::chain_head;
use self::engine::Engine;
use self::journal::{Journal, OpenError, Table};
use self::site_index::IndexKey;
use self::tables::{RECORDS, decode, definition, encode, unavailable};
use self::writer::{EncodedOutcome, Replacement, Reply, Write, run_writer};
use super::{Inserted, RecordStore, Replaced, StoreError, StoreHealth};
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::{AuditDraft, AuditEvent, BatchId, BatchReport, ListQuery, Record, RecordId};

pub use self::audit::CHAIN;

/// The redb file in the data folder; whoever has it open holds the store (redb locks it).
pub const DATABASE_FILE: &str = "mediflow.redb";

/// The journal in the data folder.
pub const JOURNAL_FILE: &str = "mediflow.journal";
/// The journal segment the writer closed last, while redb does not yet hold it durably.
pub const CLOSED_JOURNAL_FILE: &str = "mediflow.journal.closed";

/// redb's page cache. Its default (1 GiB) would outgrow a pod's memory limit as data grows; reads
/// beyond the cache go to the OS page cache, which the kernel can reclaim. 2 MiB since issue 25:
/// against 4 MiB it cut RSS after the benchmark's load by 1.8 MB with no measurable change in GET
/// or POST throughput (`scripts/bench-paced.sh`, BENCHMARKS.md); 1 MiB cost 8% of GET throughput.
pub const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Writes waiting for the writer thread; one more is refused as `Unavailable` (503 + Retry-After).
pub const QUEUE_CAPACITY: usize = 1024;

/// Bytes of acknowledged values not yet in redb. Beyond it the writer waits for the applier.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// What the store may hold in memory for the data: redb's cache and the pending map.
pub const MEMORY_BYTES: usize = CACHE_BYTES + MAX_PENDING_BYTES;

/// The embedded backend. Cheap to clone; all clones share one database, one writer and one
/// applier thread. Dropping the last clone lets both threads finish and waits for them.
#[derive(Clone)]
pub struct EmbeddedStore {
    engine: Arc<Engine>,
    threads: Arc<Threads>,
}

/// The writer's queue and the two threads' handles. Dropping it (with the last clone of the
/// store) closes the queue, so the writer and then the applier finish, and waits for both.
struct Threads {
    queue: Option<std_mpsc::SyncSender<Write>>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        drop(self.queue.take());
        for thread in self.handles.drain(..) {
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
        tables::create(&db)?;

        let journal_error =
            |e: std::io::Error| StoreError::unavailable(format!("cannot replay the journal: {e}"));
        // Damage is not a passing failure: it is reported as corruption (never retried) and the
        // journal is left as found, for `handler store check` and `handler store salvage`.
        let open_segment = |path: &Path| {
            Journal::open(path).map_err(|e| match e {
                OpenError::Io(e) => journal_error(e),
                OpenError::Damaged(damage) => StoreError::Corrupt(damage.to_string()),
            })
        };
        // A closed segment still there (the process stopped before redb held it durably) holds
        // older puts than the journal: it is replayed first.
        let closed_path = dir.join(CLOSED_JOURNAL_FILE);
        // Only its replay is kept: the file is deleted below, never appended to.
        let closed = if closed_path.try_exists().map_err(journal_error)? {
            Some(open_segment(&closed_path)?.1)
        } else {
            None
        };
        let (mut journal, replay) = open_segment(&dir.join(JOURNAL_FILE))?;
        let segments = closed.iter().chain([&replay]);
        let torn_bytes: u64 = segments.clone().map(|r| r.torn_bytes).sum();
        if torn_bytes > 0 {
            tracing::warn!(
                torn_bytes,
                "journal ended in a torn entry (a write never acknowledged); cut"
            );
        }
        let puts: usize = segments.clone().map(|r| r.puts.len()).sum();
        if puts > 0 {
            commit_puts(&db, segments.flat_map(|r| r.puts.iter()), true)?;
            tracing::info!(puts, "journal replayed into the embedded store");
        }
        delete_closed(&closed_path).map_err(journal_error)?;
        if journal.len() > 0 {
            journal.reset().map_err(journal_error)?;
        }
        let head = chain_head(&db)?;

        let engine = Arc::new(Engine::new(db));
        let (writer, queue) = std_mpsc::sync_channel(QUEUE_CAPACITY);
        let (to_applier, applier_queue) = std_mpsc::sync_channel(MAX_APPLY_GROUPS);
        let spawn_error = |e: std::io::Error| {
            StoreError::unavailable(format!("cannot start a store thread: {e}"))
        };
        let applier_engine = Arc::clone(&engine);
        let applier_files = ApplierFiles {
            closed_segment: closed_path.clone(),
            database: std::fs::File::open(dir.join(DATABASE_FILE)).map_err(|e| {
                StoreError::unavailable(format!("cannot open the embedded store's file: {e}"))
            })?,
        };
        let applier = std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || run_applier(&applier_engine, &applier_queue, &applier_files))
            .map_err(spawn_error)?;
        let writer_engine = Arc::clone(&engine);
        let writer_thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run_writer(
                    &writer_engine,
                    journal,
                    head,
                    &queue,
                    &to_applier,
                    &closed_path,
                );
            })
            .map_err(spawn_error)?;
        Ok(Self {
            engine,
            threads: Arc::new(Threads {
                queue: Some(writer),
                handles: vec![writer_thread, applier],
            }),
        })
    }

    /// Queues `write` for the writer thread without waiting; a full queue is `Unavailable`.
    fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        if let Some(reason) = &self.engine.ledger().failure {
            return Err(StoreError::unavailable(reason));
        }
        let Some(writer) = &self.threads.queue else {
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
        let engine = Arc::clone(&self.engine);
        let target = {
            let ledger = engine.ledger();
            (ledger.applied < ledger.acknowledged).then_some(ledger.acknowledged)
        };
        if let Some(target) = target {
            tokio::task::spawn_blocking(move || {
                engine.wait_until(|ledger| ledger.applied >= target)
            })
            .await
            .map_err(|e| StoreError::unavailable(format!("waiting for the applier: {e}")))?
            .map_err(StoreError::unavailable)?;
        }
        Ok(())
    }

    /// The stored bytes under `key`: the pending map first (acknowledged, maybe not yet in
    /// redb), then redb.
    fn read(&self, table: Table, key: u128) -> Result<Option<Bytes>, StoreError> {
        if let Some(value) = self.engine.pending(table, key) {
            return Ok(Some(value));
        }
        let txn = self.engine.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(definition(table)).map_err(unavailable)?;
        Ok(table
            .get(key)
            .map_err(unavailable)?
            .map(|value| Bytes::copy_from_slice(value.value())))
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
                EncodedOutcome::Created => Ok(Inserted::Created),
                EncodedOutcome::Existing(bytes) => decode(&bytes).map(Inserted::Existing),
                EncodedOutcome::Missing => {
                    Err(StoreError::Corrupt("an insert found nothing".into()))
                }
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
            EncodedOutcome::Created => Ok(Replaced::Done),
            EncodedOutcome::Existing(current) => Ok(Replaced::Changed(Some(decode(&current)?))),
            EncodedOutcome::Missing => Ok(Replaced::Changed(None)),
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
        let txn = self.engine.db.begin_read().map_err(unavailable)?;
        audit::page(&txn, query, max)
    }

    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.applied_everything_acknowledged().await?;
        let txn = self.engine.db.begin_read().map_err(unavailable)?;
        audit::chain(&txn, after, max)
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
            EncodedOutcome::Created | EncodedOutcome::Missing => Ok(report),
            EncodedOutcome::Existing(bytes) => decode(&bytes),
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
        let txn = self.engine.db.begin_read().map_err(unavailable)?;
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
        let txn = self.engine.db.begin_read().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        Ok(())
    }

    fn health(&self) -> StoreHealth {
        if let Some(reason) = &self.engine.ledger().failure {
            return StoreHealth::Failed(reason.clone());
        }
        if self.threads.handles.iter().any(JoinHandle::is_finished) {
            return StoreHealth::Failed("a store thread has stopped".to_owned());
        }
        StoreHealth::Ok
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::journal::Put;
    use super::writer::MAX_GROUP;
    use super::*;
    use crate::domain::NewRecord;

    pub(super) fn draft() -> AuditDraft {
        AuditDraft::new("test", crate::domain::AuditAction::Create, "created")
    }

    pub(super) fn record(notes: &str) -> Record {
        let fields: NewRecord = serde_json::from_value(serde_json::json!({
            "site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
            "status": "pending", "patient_count": 42, "notes": notes,
        }))
        .expect("fields");
        Record::new(RecordId::random(), fields)
    }

    /// `r` as the journal holds a record put.
    fn put_of(r: &Record) -> Put {
        Put {
            table: Table::Records,
            key: r.id.as_uuid().as_u128(),
            value: encode(r).expect("encode"),
            index: None,
            audited: None,
        }
    }

    /// Bounded in time: a store call that hangs fails the test instead of the suite.
    pub(super) async fn within<T>(call: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the store answered within 10 s")
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

    /// A closed segment is still there when the process stops before redb holds it durably. The
    /// next open replays it before the journal (whose puts are newer) and deletes it.
    #[tokio::test]
    async fn a_closed_segment_left_behind_is_replayed_before_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = record("first version");
        let mut second = first.clone();
        second.fields.notes = crate::domain::record::Notes::parse("second version").expect("notes");
        let other = record("only in the closed segment");
        let (path, closed) = (
            dir.path().join(JOURNAL_FILE),
            dir.path().join(CLOSED_JOURNAL_FILE),
        );
        let (mut journal, _) = Journal::open(&path).expect("journal");
        journal
            .append(&[put_of(&first), put_of(&other)])
            .expect("append");
        journal.roll(&closed).expect("roll");
        journal.append(&[put_of(&second)]).expect("append");
        drop(journal);

        let store = EmbeddedStore::open(dir.path()).expect("open");
        assert_eq!(
            within(store.get(first.id)).await.expect("get"),
            Some(second.clone())
        );
        assert_eq!(
            within(store.get(other.id)).await.expect("get"),
            Some(other.clone())
        );
        assert!(
            !closed.exists(),
            "the closed segment is deleted once replayed"
        );
        assert_eq!(std::fs::metadata(&path).expect("journal").len(), 0);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            within(store.get(first.id)).await.expect("get"),
            Some(second)
        );
        assert_eq!(within(store.get(other.id)).await.expect("get"), Some(other));
    }

    /// Past its size limit the journal is closed and a new segment begun while writes go on; once
    /// redb holds the closed segment durably it is deleted, and every write survives a reopen.
    #[tokio::test]
    async fn the_journal_rolls_past_its_limit_and_the_closed_segment_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let value = Bytes::from(vec![b'x'; 1024 * 1024]);
        let writes =
            usize::try_from(writer::JOURNAL_ROLL_BYTES / (1024 * 1024)).expect("small") + 2;
        for key in 1..=writes {
            let (done, outcome) = oneshot::channel();
            let key = u128::try_from(key).expect("small");
            store
                .enqueue(Write::PutBatch(key, value.clone(), done))
                .expect("enqueue");
            within(outcome).await.expect("answered").expect("stored");
        }
        let (journal, closed) = (
            dir.path().join(JOURNAL_FILE),
            dir.path().join(CLOSED_JOURNAL_FILE),
        );
        let rolled = std::fs::metadata(&journal).expect("journal").len();
        assert!(
            rolled < writer::JOURNAL_ROLL_BYTES,
            "the journal holds {rolled} bytes after {writes} MiB: it never rolled"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while closed.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the closed segment stayed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        for key in 1..=writes {
            let key = u128::try_from(key).expect("small");
            assert_eq!(
                store.read(Table::Batches, key).expect("read"),
                Some(value.clone())
            );
        }
    }

    /// Halfway into the second entry: its frame is whole, its payload is not.
    fn journal_cut(first_entry_end: u64) -> u64 {
        first_entry_end + 20
    }
}
