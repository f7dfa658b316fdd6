//! The embedded store: a write-ahead journal in front of an LSM tree ([fjall](https://docs.rs/fjall)),
//! both in `MEDIFLOW_DATA_DIR`.
//!
//! Writes: a bounded queue feeds one writer thread. It takes every write waiting (a group),
//! decides each one's outcome (insert-if-absent against the group's earlier writes, then the
//! tree), appends the resulting puts to the journal and `fdatasync`s once for the whole group,
//! then applies them to the tree in one atomic batch (an in-memory memtable insert; the tree's
//! own journal is not synced per group). Only then does any caller hear back: every
//! acknowledged write is on the device (in the journal) and visible to reads (in the tree).
//! Once the journal passes [`JOURNAL_RESET_BYTES`], the tree is persisted (`fsync`) and the
//! journal emptied. On open, the journal is replayed into the tree (a torn tail, from a write
//! that was never acknowledged, is cut) and emptied. Reads go to the tree and never wait for the
//! writer; the tree's flushes and compactions run on its own background threads.
//!
//! Bounds: the queue holds [`QUEUE_CAPACITY`] writes (beyond it: `Unavailable`, 503 +
//! Retry-After); the tree's memory is its block cache ([`CACHE_BYTES`]) plus its memtables
//! ([`WRITE_BUFFER_BYTES`]), beyond which writes wait for a flush (so the queue fills and callers
//! get 503). A failed journal or tree write is latched: from then on writes fail fast and
//! [`RecordStore::health`] reports it.
//!
//! A data directory written by an earlier version (a redb file, `mediflow.redb`) is migrated into
//! the tree on the first open and the file renamed `mediflow.redb.migrated`.
//! See docs/adr/0002-embedded-store.md and docs/adr/0006-durable-write-path.md.

mod journal;
mod migrate;

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use tokio::sync::oneshot;

use self::journal::{Journal, Put, Table};
use super::embedded_site_index::{self as site_index, IndexKey};
use super::{Inserted, RecordStore, StoreError, StoreHealth};
use crate::domain::{BatchId, BatchReport, ListQuery, Record, RecordId};

/// The tree's block cache. Reads beyond it go to the OS page cache, which the kernel can reclaim.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The tree's memtables, all partitions together; beyond it writes wait for a flush.
pub const WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// One partition's memtable, flushed to a sorted segment once it is this large.
const MEMTABLE_BYTES: u32 = 2 * 1024 * 1024;

/// What the tree may hold in memory: its cache and its memtables.
pub const MEMORY_BYTES: usize = CACHE_BYTES + WRITE_BUFFER_BYTES;

/// Most writes folded into one journal append (one `fdatasync`).
const MAX_GROUP: usize = 256;

/// Writes waiting for the writer thread; one more is refused as `Unavailable` (503 + Retry-After).
pub const QUEUE_CAPACITY: usize = 1024;

/// Journal size beyond which the writer persists the tree and empties the journal.
const JOURNAL_RESET_BYTES: u64 = 16 * 1024 * 1024;

const RECORDS: &str = "records";
const BATCHES: &str = "batches";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write as the writer thread receives it: keys and encoded values, ready to journal.
enum Write {
    Insert(Vec<(u128, Bytes, IndexKey)>, Reply<Vec<Resolved>>),
    InsertBatch(u128, Bytes, Reply<Resolved>),
    PutBatch(u128, Bytes, Reply<()>),
    /// Test fault injection: the writer thread panics.
    #[cfg(test)]
    Crash,
    /// Test fault injection: the writer thread waits until the sender is dropped.
    #[cfg(test)]
    Block(std_mpsc::Receiver<()>),
}

/// An insert-if-absent's outcome, still encoded (the caller decodes, off the writer thread).
enum Resolved {
    Created,
    Existing(Bytes),
}

/// A write's outcome, held until its group is on the device.
enum Answer {
    Insert(Reply<Vec<Resolved>>, Vec<Resolved>),
    InsertBatch(Reply<Resolved>, Resolved),
    PutBatch(Reply<()>),
    /// This write alone could not be decided (its lookup failed); the rest of its group goes on.
    Refused(Refusal, String),
}

/// The reply of a write refused on its own.
enum Refusal {
    Insert(Reply<Vec<Resolved>>),
    InsertBatch(Reply<Resolved>),
}

impl Answer {
    fn send(self) {
        // A caller that gave up (timeout, disconnect) no longer listens; its write stands.
        match self {
            Self::Insert(reply, outcome) => drop(reply.send(Ok(outcome))),
            Self::InsertBatch(reply, outcome) => drop(reply.send(Ok(outcome))),
            Self::PutBatch(reply) => drop(reply.send(Ok(()))),
            Self::Refused(refusal, reason) => refusal.send(&reason),
        }
    }

    fn fail(self, reason: &str) {
        let failed = || StoreError::unavailable(reason);
        match self {
            Self::Insert(reply, _) => drop(reply.send(Err(failed()))),
            Self::InsertBatch(reply, _) => drop(reply.send(Err(failed()))),
            Self::PutBatch(reply) => drop(reply.send(Err(failed()))),
            Self::Refused(refusal, _) => refusal.send(reason),
        }
    }
}

impl Refusal {
    fn send(self, reason: &str) {
        let failed = StoreError::unavailable(reason);
        match self {
            Self::Insert(reply) => drop(reply.send(Err(failed))),
            Self::InsertBatch(reply) => drop(reply.send(Err(failed))),
        }
    }
}

/// The tree and its partitions.
#[derive(Clone)]
struct Tree {
    keyspace: Keyspace,
    records: PartitionHandle,
    batches: PartitionHandle,
    by_site: PartitionHandle,
}

impl Tree {
    fn open(dir: &Path) -> Result<Self, StoreError> {
        let failed = |e: fjall::Error| {
            StoreError::unavailable(format!("cannot open the embedded store: {e}"))
        };
        let keyspace = fjall::Config::new(dir.join("tree"))
            .cache_size(CACHE_BYTES as u64)
            .max_write_buffer_size(WRITE_BUFFER_BYTES as u64)
            .flush_workers(1)
            .compaction_workers(1)
            // The write-ahead journal in front makes writes durable; the tree's own journal is
            // synced only before that journal is emptied.
            .manual_journal_persist(true)
            .open()
            .map_err(failed)?;
        let partition = |name: &str| {
            let options = PartitionCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
            keyspace.open_partition(name, options).map_err(failed)
        };
        Ok(Self {
            records: partition(RECORDS)?,
            batches: partition(BATCHES)?,
            by_site: partition(site_index::PARTITION)?,
            keyspace,
        })
    }

    fn partition(&self, table: Table) -> &PartitionHandle {
        match table {
            Table::Records => &self.records,
            Table::Batches => &self.batches,
        }
    }

    fn get(&self, table: Table, key: u128) -> Result<Option<Bytes>, String> {
        self.partition(table)
            .get(key.to_be_bytes())
            .map(|value| value.map(Bytes::from))
            .map_err(|e| e.to_string())
    }

    /// Applies `puts` in one atomic batch, each record with its by-site index entry.
    fn apply<'a>(&self, puts: impl Iterator<Item = &'a Put>) -> Result<(), String> {
        let mut batch = self.keyspace.batch();
        for put in puts {
            let key = put.key.to_be_bytes();
            batch.insert(self.partition(put.table), key, put.value.clone());
            if put.table == Table::Records {
                let entry = match &put.index {
                    Some(index) => index.entry(put.key),
                    None => IndexKey::from_json(&put.value)
                        .map_err(|e| e.to_string())?
                        .entry(put.key),
                };
                batch.insert(&self.by_site, entry, Bytes::new());
            }
        }
        batch.commit().map_err(|e| e.to_string())
    }

    /// Makes everything applied so far durable in the tree itself.
    fn persist(&self) -> Result<(), String> {
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(|e| e.to_string())
    }
}

/// What the writer and the readers share.
struct Shared {
    tree: Tree,
    /// The first journal or tree failure; latched for the life of the process.
    failure: Mutex<Option<String>>,
    /// Test fault injection: the next journal appends fail as the device would.
    #[cfg(test)]
    fail_appends: std::sync::atomic::AtomicBool,
    /// Test fault injection: looking this key up fails.
    #[cfg(test)]
    fail_lookup: Mutex<Option<u128>>,
}

impl Shared {
    fn failure(&self) -> MutexGuard<'_, Option<String>> {
        // A panicking thread cannot leave an `Option<String>` half-updated.
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn latch(&self, reason: String) {
        let mut failure = self.failure();
        if failure.is_none() {
            tracing::error!(%reason, "embedded store failed; writes are refused from now on");
            *failure = Some(reason);
        }
    }
}

/// Latches a failure if its thread unwinds (a panic on the writer thread).
struct LatchOnPanic<'a>(&'a Shared, &'static str);

impl Drop for LatchOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.latch(self.1.to_owned());
        }
    }
}

/// The embedded backend. Cheap to clone; all clones share one tree and one writer thread.
/// Dropping the last clone lets the writer finish and waits for it.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Option<std_mpsc::SyncSender<Write>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
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
    /// Opens (or creates) the store in `dir`, migrates an earlier version's redb file, and
    /// replays the journal. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let tree = Tree::open(dir)?;
        migrate::from_redb(dir, &tree)?;

        let journal_error =
            |e: std::io::Error| StoreError::unavailable(format!("cannot replay the journal: {e}"));
        let (mut journal, replay) =
            Journal::open(&dir.join("mediflow.journal")).map_err(journal_error)?;
        if replay.torn_bytes > 0 {
            tracing::warn!(
                torn_bytes = replay.torn_bytes,
                "journal ended in a torn entry (a write never acknowledged); cut"
            );
        }
        if !replay.puts.is_empty() {
            tree.apply(replay.puts.iter())
                .and_then(|()| tree.persist())
                .map_err(|e| StoreError::unavailable(format!("cannot replay the journal: {e}")))?;
            tracing::info!(
                puts = replay.puts.len(),
                "journal replayed into the embedded store"
            );
        }
        if journal.len() > 0 {
            journal.reset().map_err(journal_error)?;
        }

        let shared = Arc::new(Shared {
            tree,
            failure: Mutex::new(None),
            #[cfg(test)]
            fail_appends: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_lookup: Mutex::new(None),
        });
        let (writer, queue) = std_mpsc::sync_channel(QUEUE_CAPACITY);
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(&writer_shared, journal, &queue))
            .map_err(|e| StoreError::unavailable(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer: Some(writer),
                thread: Some(thread),
            }),
        })
    }

    /// Queues `write` for the writer thread without waiting; a full queue is `Unavailable`.
    fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        if let Some(reason) = &*self.inner.shared.failure() {
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

    /// The stored bytes under `key`.
    fn read(&self, table: Table, key: u128) -> Result<Option<Bytes>, StoreError> {
        self.inner
            .shared
            .tree
            .get(table, key)
            .map_err(StoreError::unavailable)
    }
}

fn encode(value: &impl serde::Serialize) -> Result<Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The writer thread: block for one write, take whatever else is waiting, journal the group
/// with one `fdatasync`, apply it to the tree, answer everyone.
fn run_writer(shared: &Shared, mut journal: Journal, queue: &std_mpsc::Receiver<Write>) {
    let _latch = LatchOnPanic(shared, "the store writer thread stopped");
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
        write_group(shared, &mut journal, group);
    }
}

fn write_group(shared: &Shared, journal: &mut Journal, group: Vec<Write>) {
    let fail_all = |answers: Vec<Answer>, reason: &str| {
        for answer in answers {
            answer.fail(reason);
        }
    };
    let Resolution {
        puts,
        answers,
        failure,
    } = resolve(shared, group);
    if let Some(reason) = failure {
        return fail_all(answers, &reason);
    }
    if puts.is_empty() {
        // Every write found what it asked for already stored: nothing new to make durable.
        answers.into_iter().for_each(Answer::send);
        return;
    }
    if let Err(e) = append(shared, journal, &puts) {
        let reason = format!("journal write failed: {e}");
        shared.latch(reason.clone());
        return fail_all(answers, &reason);
    }
    if let Err(e) = shared.tree.apply(puts.iter()) {
        // On the device, but not readable: the outcome is unknown to the callers (a restart
        // replays the journal; a retry with the same id finds the write).
        let reason = format!("applying a journaled write to the store failed: {e}");
        shared.latch(reason.clone());
        return fail_all(answers, &reason);
    }
    // On the device and visible to reads: acknowledge.
    answers.into_iter().for_each(Answer::send);
    if journal.len() > JOURNAL_RESET_BYTES {
        let emptied = shared.tree.persist().and_then(|()| {
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
/// durable. An id is looked up in this group's earlier puts, then the tree. A failed lookup
/// fails only the write it was for.
fn resolve(shared: &Shared, group: Vec<Write>) -> Resolution {
    let mut puts: Vec<Put> = Vec::new();
    let mut in_group: HashMap<(Table, u128), usize> = HashMap::new();
    let mut answers = Vec::with_capacity(group.len());
    let failure = shared.failure().clone();
    let stored = |table: Table, key: u128, puts: &[Put], in_group: &HashMap<_, usize>| {
        #[cfg(test)]
        if *shared
            .fail_lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(key)
        {
            return Err("injected lookup failure".to_owned());
        }
        match in_group.get(&(table, key)) {
            Some(&at) => Ok(Some(puts[at].value.clone())),
            None => shared.tree.get(table, key),
        }
    };
    let put = |puts: &mut Vec<Put>, in_group: &mut HashMap<_, _>, table, key, value, index| {
        in_group.insert((table, key), puts.len());
        puts.push(Put {
            table,
            key,
            value,
            index,
        });
    };
    for write in group {
        if failure.is_some() {
            match write {
                Write::Insert(_, reply) => answers.push(Answer::Insert(reply, Vec::new())),
                Write::InsertBatch(_, _, reply) => {
                    answers.push(Answer::InsertBatch(reply, Resolved::Created));
                }
                Write::PutBatch(_, _, reply) => answers.push(Answer::PutBatch(reply)),
                #[cfg(test)]
                Write::Crash | Write::Block(_) => {}
            }
            continue;
        }
        match write {
            Write::Insert(records, reply) => {
                // All or nothing for one caller: if a lookup fails, its puts leave the group.
                let mark = puts.len();
                let mut outcomes = Vec::with_capacity(records.len());
                let mut lookup_failed = None;
                for (key, value, index) in records {
                    match stored(Table::Records, key, &puts, &in_group) {
                        Ok(Some(existing)) => outcomes.push(Resolved::Existing(existing)),
                        Ok(None) => {
                            let index = Some(index);
                            put(&mut puts, &mut in_group, Table::Records, key, value, index);
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
                        answers.push(Answer::Refused(Refusal::Insert(reply), reason));
                    }
                }
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
                        answers.push(Answer::Refused(Refusal::InsertBatch(reply), reason));
                    }
                }
            }
            Write::PutBatch(key, value, reply) => {
                put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                answers.push(Answer::PutBatch(reply));
            }
            #[cfg(test)]
            Write::Crash => panic!("injected writer crash"),
            #[cfg(test)]
            Write::Block(until) => drop(until.recv()),
        }
    }
    Resolution {
        puts,
        answers,
        failure,
    }
}

#[async_trait]
impl RecordStore for EmbeddedStore {
    async fn insert(&self, record: Record) -> Result<Inserted, StoreError> {
        let mut outcomes = self.insert_many(vec![record]).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("insert returned no outcome".into()))
    }

    async fn insert_many(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError> {
        // Encoded here, on the caller's thread, so the writer only journals bytes.
        let encoded = records
            .iter()
            .map(|record| {
                let key = record.id.as_uuid().as_u128();
                Ok((key, encode(record)?, IndexKey::of(record)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let outcomes = self.submit(|done| Write::Insert(encoded, done)).await?;
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Resolved::Created => Ok(Inserted::Created),
                Resolved::Existing(bytes) => decode(&bytes).map(Inserted::Existing),
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
        let key = report.batch_id.as_uuid().as_u128();
        let value = encode(&report)?;
        match self
            .submit(|done| Write::InsertBatch(key, value, done))
            .await?
        {
            Resolved::Created => Ok(report),
            Resolved::Existing(bytes) => decode(&bytes),
        }
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        let key = report.batch_id.as_uuid().as_u128();
        let value = encode(&report)?;
        self.submit(|done| Write::PutBatch(key, value, done)).await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.read(Table::Batches, id.as_uuid().as_u128())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// One instant: the index page and the records it names are read from snapshots taken at
    /// the same sequence number, and every acknowledged write is in the tree already.
    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        let tree = &self.inner.shared.tree;
        let at = tree.keyspace.instant();
        let ids = site_index::page(&tree.by_site.snapshot_at(at), query, max)?;
        let records = tree.records.snapshot_at(at);
        ids.into_iter()
            .map(|id| {
                let bytes = records
                    .get(id.as_uuid().as_u128().to_be_bytes())
                    .map_err(StoreError::unavailable)?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("indexed record {id} is missing"))
                    })?;
                decode(&bytes)
            })
            .collect()
    }

    async fn check(&self) -> Result<(), StoreError> {
        if let StoreHealth::Failed(reason) = self.health() {
            return Err(StoreError::unavailable(reason));
        }
        self.read(Table::Records, 0).map(drop)
    }

    fn health(&self) -> StoreHealth {
        if let Some(reason) = &*self.inner.shared.failure() {
            return StoreHealth::Failed(reason.clone());
        }
        if self
            .inner
            .thread
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            return StoreHealth::Failed("the store writer thread has stopped".to_owned());
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
        within(store.insert(kept.clone())).await.expect("insert");
        assert_eq!(store.health(), StoreHealth::Ok);

        store
            .inner
            .shared
            .fail_appends
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = within(store.insert(record("during the fault"))).await;
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
        let after = within(store.insert(record("after the fault"))).await;
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
        let refused = within(store.insert(record("after the crash"))).await;
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
        let after = within(store.insert(record("after the latch"))).await;
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
        within(store.insert(record("after the drain")))
            .await
            .expect("the queue takes writes again");
    }

    /// A journal holding acknowledged writes that never reached the tree's disk (killed),
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
        let again = within(store.insert(acknowledged.clone()))
            .await
            .expect("insert");
        assert_eq!(again, Inserted::Existing(acknowledged.clone()));
        drop(store);

        // Replayed into the tree and the journal emptied: a second open finds the record there.
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
            tokio::spawn(async move { store.insert_many(vec![r]).await })
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

    /// A data directory of the redb era: its records and batches are copied into the tree (the
    /// records listed by site too), the redb file is kept under a new name, and a second open
    /// does not migrate again.
    #[tokio::test]
    async fn a_redb_data_directory_is_migrated_once() {
        use redb::TableDefinition;
        let dir = tempfile::tempdir().expect("tempdir");
        let old = record("written by the redb version");
        let report = serde_json::json!({"batch_id": "9b2e6c1e-5b0a-4c55-9f3e-1c2d3e4f5a6b"});
        {
            let db = redb::Database::create(dir.path().join("mediflow.redb")).expect("redb");
            let txn = db.begin_write().expect("txn");
            {
                let records: TableDefinition<u128, &[u8]> = TableDefinition::new("records");
                let batches: TableDefinition<u128, &[u8]> = TableDefinition::new("batches");
                let value = serde_json::to_vec(&old).expect("encode");
                let mut table = txn.open_table(records).expect("records");
                table
                    .insert(old.id.as_uuid().as_u128(), value.as_slice())
                    .expect("insert");
                let mut table = txn.open_table(batches).expect("batches");
                let value = serde_json::to_vec(&report).expect("encode");
                table.insert(7_u128, value.as_slice()).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let store = EmbeddedStore::open(dir.path()).expect("open migrates");
        assert_eq!(
            within(store.get(old.id)).await.expect("get"),
            Some(old.clone())
        );
        let batch = store
            .read(Table::Batches, 7)
            .expect("read")
            .expect("batch copied");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&batch).expect("json"),
            report
        );
        let query =
            ListQuery::from_query_string(Some(&format!("site_id={}", old.fields.site_id.as_str())))
                .expect("query");
        let listed = within(store.list(&query, 10)).await.expect("list");
        assert_eq!(listed, vec![old.clone()]);
        assert!(!dir.path().join("mediflow.redb").exists());
        assert!(dir.path().join("mediflow.redb.migrated").exists());
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(within(store.get(old.id)).await.expect("get"), Some(old));
    }

    /// Halfway into the second entry: its frame is whole, its payload is not.
    fn journal_cut(first_entry_end: u64) -> u64 {
        first_entry_end + 20
    }
}
